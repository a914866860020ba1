import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loggedInClient, startTestServer, type TestServer } from './helpers.js';

let server: TestServer;
before(async () => {
  server = await startTestServer();
  await server.addAccount('user1@example.test', 'secret', 'User One');
});
after(() => server.stop());

test('login and noop over TCP', async () => {
  const client = await loggedInClient(server.ports.ximss, 'user1@example.test', 'secret');
  const reply = await client.request('<noop/>');
  assert.equal(reply.response.attrs.errorText, undefined);
  client.close();
});
