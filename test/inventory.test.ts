/**
 * The inventory (issue 17): every operation of the XIMSS specification is in the server's
 * operation table, and none answers "not implemented" over the wire. The names are those of
 * the specification's operation list (../shared/spec/ximss-operations.tsv), copied into
 * test/fixtures/ximss-operations.txt for clones without ../shared.
 *
 * Each operation is sent after login with no attributes and no body: any answer passes but an
 * errorText starting "not implemented" (and "unknown command" or an internal error, which
 * would mean the table or the handler is broken).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../src/ximss/engine.js';
import { registerOperations } from '../src/ximss/ops/index.js';
import { XmlElement } from '../src/xml/element.js';
import { startTestServer, type TestServer } from './helpers.js';

const NAMES = readFileSync(new URL('./fixtures/ximss-operations.txt', import.meta.url), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

/** Operations that end the session: sent last, each on a session of its own. */
const ENDING = new Set(['bye']);

let server: TestServer;

before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server?.stop();
});

describe('inventory of the specification operations', () => {
  test('the operation list is the specification one (no duplicates, the known ones are there)', () => {
    assert.ok(NAMES.length > 150, `${NAMES.length} names`);
    assert.equal(new Set(NAMES).size, NAMES.length);
    for (const name of ['listFeatures', 'login', 'folderOpen', 'cliExecute', 'spellerCheck']) assert.ok(NAMES.includes(name), name);
  });

  test("the server's operation table has every operation of the specification", () => {
    const engine = new Engine(server.services);
    registerOperations(engine);
    const missing = NAMES.filter((name) => !engine.has(name));
    assert.deepEqual(missing, [], `not in the operation table: ${missing.join(' ')}`);
  });

  test('no operation answers "not implemented" over the wire', async () => {
    const address = await server.newAccount('inventory');
    let { client } = await server.login(address, 'secret');
    const pending: string[] = [];
    const broken: string[] = [];
    const names = [...NAMES.filter((n) => !ENDING.has(n)), ...NAMES.filter((n) => ENDING.has(n))];
    for (const name of names) {
      if (ENDING.has(name)) ({ client } = await server.login(address, 'secret'));
      const reply = await client.request(new XmlElement(name), 20_000);
      const error = reply.response.attrs.errorText ?? '';
      if (/^not implemented/i.test(error)) pending.push(name);
      else if (error === 'unknown command' || error === 'internal server error') broken.push(`${name}: ${error}`);
    }
    assert.deepEqual(broken, [], `answered as broken: ${broken.join('; ')}`);
    assert.deepEqual(pending, [], `answer "not implemented": ${pending.join(' ')}`);
  });
});
