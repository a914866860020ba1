/**
 * The PostgreSQL engine: the store contract (test/store/contract.ts) on a private server
 * started once for the file (test/fixtures/postgres.ts), a new database for each describe
 * block, every handle its own openStore (as another cluster node would open it).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { NoStoreError, openStore } from '../src/store/open.js';
import { startPostgres } from './fixtures/postgres.js';
import { storeContract } from './store/contract.js';

let server: Awaited<ReturnType<typeof startPostgres>> | undefined;

before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

storeContract('postgres', async () => {
  if (!server) throw new Error('the PostgreSQL server did not start (see the before hook)');
  const created = await server.createDatabase();
  // createDatabase gives the new database's URL (a name, with older fixtures).
  const url = /^postgres(ql)?:\/\//i.test(created) ? created : server.url(created);
  return {
    harness: { open: () => openStore(url, '/unused') },
    // Every handle is closed by then; the server (and its databases) goes when the file ends.
    async destroy() {},
  };
});

test('create: false opens an existing database only: one without the schema is refused and left as it was', async () => {
  if (!server) throw new Error('the PostgreSQL server did not start (see the before hook)');
  const created = await server.createDatabase();
  const url = /^postgres(ql)?:\/\//i.test(created) ? created : server.url(created);
  await assert.rejects(openStore(url, '/unused', { create: false }), (err: unknown) => err instanceof NoStoreError && /there is no ximssd store in database postgres/.test(err.message) && !/:[^@/]*@/.test(err.message.replace(/^.*postgres(ql)?:\/\//, '')));
  await assert.rejects(openStore(url, '/unused', { create: false }), NoStoreError, 'still none: nothing was created');
  const made = await openStore(url, '/unused');
  await made.domains.create('there.test');
  await made.close();
  const existing = await openStore(url, '/unused', { create: false });
  try {
    assert.deepEqual((await existing.domains.list()).map((d) => d.name), ['there.test']);
  } finally {
    await existing.close();
  }
});
