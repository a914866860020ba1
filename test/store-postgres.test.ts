/**
 * The PostgreSQL engine: the store contract (test/store/contract.ts) on a private server
 * started once for the file (test/fixtures/postgres.ts), a new database for each describe
 * block, every handle its own openStore (as another cluster node would open it).
 */
import { after, before } from 'node:test';
import { openStore } from '../src/store/open.js';
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
