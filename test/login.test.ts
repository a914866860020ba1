/**
 * Login operations over TCP: clear text, CRAM-MD5, SASL PLAIN; failures, delays and
 * rate limits; what is allowed before and after login; the session data message.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { hmacMd5Hex, loggedInClient, startTestServer, XimssClient, type Reply, type TestServer } from './helpers.js';

const BAD = 'incorrect password or account name';
const URL_ID = /^\d+-[A-Za-z0-9]{20}$/;

function loginRequest(authData: string, password: string, extra: Record<string, string> = {}): XmlElement {
  return new XmlElement('login', { authData, password, version: '6.1', ...extra });
}

function assertSession(reply: Reply, id: string, userName: string, realName?: string): XmlElement {
  assert.equal(reply.response.attrs.errorText, undefined, `login failed: ${reply.response.attrs.errorText}`);
  assert.deepEqual(reply.response.attrs, { id });
  assert.equal(reply.messages.length, 1);
  const session = reply.messages[0]!;
  assert.equal(session.name, 'session');
  assert.equal(session.attrs.id, id);
  assert.match(session.attrs.urlID ?? '', URL_ID);
  assert.equal(session.attrs.userName, userName);
  assert.equal(session.attrs.realName, realName);
  assert.match(session.attrs.version ?? '', /^\d+(\.\d+)+$/);
  return session;
}

function assertBadCredentials(reply: Reply): void {
  assert.equal(reply.messages.length, 0, 'no session message');
  assert.equal(reply.response.attrs.errorText, BAD);
  assert.match(reply.response.attrs.errorNum ?? '', /^\d+$/);
}

/** Runs the CRAM-MD5 exchange of the spec: login, untagged challenge, auth with the login's id. */
async function cramMd5(client: XimssClient, id: string, user: string, password: string, method = 'CRAM-MD5'): Promise<{ challenge: XmlElement; reply: Reply }> {
  client.sendRaw(`<login id="${id}" method="${method}"/>`);
  const challenge = await client.nextAsync('challenge');
  const text = Buffer.from(challenge.attrs.value ?? '', 'base64').toString('utf8');
  const answer = `${user} ${hmacMd5Hex(password, text)}`;
  const reply = await client.request(new XmlElement('auth', { id, value: Buffer.from(answer).toString('base64') }));
  return { challenge, reply };
}

describe('login', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    await server.addAccount('user1@example.test', 'secret', 'User One');
    await server.addAccount('user2@other.test', 'pw2');
  });
  after(() => server.stop());

  test('clear text with the full account name: session message, then response', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await client.request(loginRequest('user1@example.test', 'secret', { id: 'A001' }));
    assertSession(reply, 'A001', 'user1@example.test', 'User One');
    assert.equal(client.received.indexOf(reply.messages[0]!) + 1, client.received.indexOf(reply.response));
    client.close();
  });

  test('clear text without a domain part logs into the default domain; names are case-insensitive', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    assertSession(await client.request(loginRequest('user1', 'secret', { id: 'b' })), 'b', 'user1@example.test', 'User One');
    client.close();
    const upper = await XimssClient.connect(server.ports.ximss);
    assertSession(await upper.request(loginRequest('USER1@Example.TEST', 'secret', { id: 'c' })), 'c', 'user1@example.test', 'User One');
    upper.close();
  });

  test('accounts of another domain: full name, the domain attribute, or a domain chosen by listFeatures', async () => {
    const bare = await XimssClient.connect(server.ports.ximss);
    assertBadCredentials(await bare.request(loginRequest('user2', 'pw2')));
    bare.close();
    const full = await XimssClient.connect(server.ports.ximss);
    assertSession(await full.request(loginRequest('user2@other.test', 'pw2', { id: 'f' })), 'f', 'user2@other.test', undefined);
    full.close();
    const withAttr = await XimssClient.connect(server.ports.ximss);
    assertSession(await withAttr.request(loginRequest('user2', 'pw2', { id: 'g', domain: 'other.test' })), 'g', 'user2@other.test');
    withAttr.close();
    const chosen = await XimssClient.connect(server.ports.ximss);
    const features = await chosen.request('<listFeatures domain="other.test"/>');
    assert.equal(features.messages[0]?.element('domain')?.text(), 'other.test');
    assertSession(await chosen.request(loginRequest('user2', 'pw2', { id: 'h' })), 'h', 'user2@other.test');
    chosen.close();
  });

  test('a wrong password and an unknown account both answer exactly "incorrect password or account name"', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const wrong = await client.request(loginRequest('user1@example.test', 'nope'));
    const unknown = await client.request(loginRequest('nobody@example.test', 'secret'));
    const unknownDomain = await client.request(loginRequest('user1@nowhere.test', 'secret'));
    const invalid = await client.request(loginRequest('bad name!', 'secret'));
    for (const reply of [wrong, unknown, unknownDomain, invalid]) assertBadCredentials(reply);
    assert.equal(wrong.response.attrs.errorNum, unknown.response.attrs.errorNum);
    // The connection is still usable and a correct login succeeds.
    assertSession(await client.request(loginRequest('user1@example.test', 'secret', { id: 'ok' })), 'ok', 'user1@example.test', 'User One');
    client.close();
  });

  test('login without authData or password is an error, not a crash', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const noPassword = await client.request('<login authData="user1@example.test"/>');
    assert.ok(noPassword.response.attrs.errorText);
    const noUser = await client.request('<login password="secret"/>');
    assert.ok(noUser.response.attrs.errorText);
    const method = await client.request('<login method="GSSAPI" authData="eA=="/>');
    assert.ok(method.response.attrs.errorText);
    assert.equal(client.received.filter((m) => m.name === 'session').length, 0);
    client.close();
  });

  test('CRAM-MD5 exactly as in the spec: untagged challenge, auth with the login id, session and response', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const { challenge, reply } = await cramMd5(client, 'A001', 'user1@example.test', 'secret');
    assert.deepEqual(Object.keys(challenge.attrs), ['value'], 'the challenge carries no id');
    const text = Buffer.from(challenge.attrs.value!, 'base64').toString('utf8');
    assert.match(text, /^<[^<>@\s]+@[^<>@\s]+>$/, 'an RFC 2195 style challenge');
    assertSession(reply, 'A001', 'user1@example.test', 'User One');
    assert.equal((await client.request('<noop/>')).response.attrs.errorText, undefined);
    client.close();
  });

  test('CRAM-MD5: challenges differ; a bare name uses the default domain; the method name is case-insensitive', async () => {
    const a = await XimssClient.connect(server.ports.ximss);
    const b = await XimssClient.connect(server.ports.ximss);
    const first = await cramMd5(a, 'x1', 'user1', 'secret', 'cram-md5');
    const second = await cramMd5(b, 'x2', 'user2@other.test', 'pw2');
    assert.notEqual(first.challenge.attrs.value, second.challenge.attrs.value);
    assertSession(first.reply, 'x1', 'user1@example.test', 'User One');
    assertSession(second.reply, 'x2', 'user2@other.test');
    a.close();
    b.close();
  });

  test('CRAM-MD5 with a wrong digest fails with the standard text; the exchange cannot be retried', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const { reply } = await cramMd5(client, 'w1', 'user1@example.test', 'wrong');
    assertBadCredentials(reply);
    const retry = await client.request(new XmlElement('auth', { id: 'w1', value: Buffer.from('user1@example.test 00').toString('base64') }));
    assert.ok(retry.response.attrs.errorText);
    assert.equal(retry.messages.length, 0);
    client.close();
  });

  test('auth with a different id than the login is refused', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    client.sendRaw('<login id="L1" method="CRAM-MD5"/>');
    const challenge = await client.nextAsync('challenge');
    const text = Buffer.from(challenge.attrs.value!, 'base64').toString('utf8');
    const value = Buffer.from(`user1@example.test ${hmacMd5Hex('secret', text)}`).toString('base64');
    const start = client.received.length;
    const reply = await client.request(new XmlElement('auth', { id: 'L2', value }));
    assert.ok(reply.response.attrs.errorText);
    assert.equal(reply.messages.length, 0);
    assert.equal(client.received.filter((m) => m.name === 'session').length, 0);
    // The abandoned login is not left without a response.
    const answers = client.received.slice(start).map((m) => `${m.name}:${m.attrs.id}:${m.attrs.errorText ? 'error' : 'ok'}`);
    assert.deepEqual(answers, ['response:L1:error', 'response:L2:error']);
    client.close();
  });

  test('another request during a SASL exchange abandons it: the login gets an error response first', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    client.sendRaw('<login id="L1" method="CRAM-MD5"/>');
    await client.nextAsync('challenge');
    const start = client.received.length;
    const features = await client.request('<listFeatures id="F"/>');
    assert.equal(features.messages[0]?.name, 'features');
    const answers = client.received.slice(start).map((m) => `${m.name}:${m.attrs.id}:${m.attrs.errorText ? 'error' : 'ok'}`);
    assert.deepEqual(answers, ['response:L1:error', 'features:F:ok', 'response:F:ok']);
    assertSession(await client.request(loginRequest('user1', 'secret', { id: 'after' })), 'after', 'user1@example.test', 'User One');
    client.close();
  });

  test('SASL PLAIN with the initial response in authData', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const authData = Buffer.from('\0user1@example.test\0secret').toString('base64');
    assertSession(await client.request(`<login id="p1" method="PLAIN" authData="${authData}"/>`), 'p1', 'user1@example.test', 'User One');
    client.close();
    const withAuthzid = await XimssClient.connect(server.ports.ximss);
    const data2 = Buffer.from('user1@example.test\0user1@example.test\0secret').toString('base64');
    assertSession(await withAuthzid.request(`<login id="p2" method="PLAIN" authData="${data2}"/>`), 'p2', 'user1@example.test', 'User One');
    withAuthzid.close();
    const wrong = await XimssClient.connect(server.ports.ximss);
    const bad = Buffer.from('\0user1@example.test\0nope').toString('base64');
    assertBadCredentials(await wrong.request(`<login method="PLAIN" authData="${bad}"/>`));
    const other = Buffer.from('user2@other.test\0user1@example.test\0secret').toString('base64');
    const impersonation = await wrong.request(`<login method="PLAIN" authData="${other}"/>`);
    assert.ok(impersonation.response.attrs.errorText, 'an authzid other than the authcid is refused');
    assert.equal(impersonation.messages.length, 0);
    wrong.close();
  });

  test('SASL PLAIN with an empty challenge', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    client.sendRaw('<login id="e1" method="PLAIN"/>');
    const challenge = await client.nextAsync('challenge');
    assert.deepEqual(challenge.attrs, { value: '' });
    const value = Buffer.from('\0user1\0secret').toString('base64');
    assertSession(await client.request(`<auth id="e1" value="${value}"/>`), 'e1', 'user1@example.test', 'User One');
    client.close();
  });

  test('before login only the pre-login operations work', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    for (const op of ['noop', 'readTime', 'readStatus', 'readSession', 'listKnownValues', 'passwordModify', 'getSessionData', 'bye']) {
      const reply = await client.request(`<${op}/>`);
      assert.equal(reply.messages.length, 0, `${op} sent data before login`);
      assert.ok(reply.response.attrs.errorText, `${op} succeeded before login`);
      assert.equal(reply.response.attrs.errorNum, '500');
    }
    assert.equal(client.closed, false);
    const features = await client.request('<listFeatures/>');
    assert.equal(features.messages[0]?.name, 'features');
    const strings = await client.request('<readStrings/>');
    assert.equal(strings.messages[0]?.name, 'strings');
    client.close();
  });

  test('after login the pre-login operations are refused', async () => {
    const client = await loggedInClient(server.ports.ximss, 'user1@example.test', 'secret');
    for (const request of [
      '<listFeatures/>',
      '<login authData="user1@example.test" password="secret"/>',
      '<starttls/>',
      '<signup userName="zz" password="zz"/>',
      '<recoverPassword userName="user1"/>',
      '<auth value="eA=="/>',
    ]) {
      const reply = await client.request(request);
      assert.equal(reply.messages.length, 0, `${request} sent data after login`);
      assert.ok(reply.response.attrs.errorText, `${request} succeeded after login`);
      assert.equal(reply.response.attrs.errorNum, '500');
    }
    assert.equal((await client.request('<readStrings/>')).messages[0]?.name, 'strings');
    assert.equal((await client.request('<noop/>')).response.attrs.errorText, undefined);
    client.close();
  });

  test('every session gets its own urlID; readSession repeats the session message', async () => {
    const a = await loggedInClient(server.ports.ximss, 'user1@example.test', 'secret');
    const b = await loggedInClient(server.ports.ximss, 'user1@example.test', 'secret');
    const sa = (await a.request('<readSession id="r"/>')).messages[0]!;
    const sb = (await b.request('<readSession id="r"/>')).messages[0]!;
    assert.equal(sa.name, 'session');
    assert.equal(sa.attrs.id, 'r');
    assert.match(sa.attrs.urlID!, URL_ID);
    assert.notEqual(sa.attrs.urlID, sb.attrs.urlID);
    const first = a.received.find((m) => m.name === 'session')!;
    assert.deepEqual({ ...sa.attrs, id: undefined }, { ...first.attrs, id: undefined });
    a.close();
    b.close();
  });
});

describe('failed-login delay and rate limits', () => {
  test('a failed login is answered only after the configured delay', async () => {
    const server = await startTestServer({ limits: { loginFailureDelayMs: 300 } });
    try {
      await server.addAccount('user1@example.test', 'secret');
      const client = await XimssClient.connect(server.ports.ximss);
      for (const name of ['user1@example.test', 'ghost@example.test']) {
        const started = Date.now();
        assertBadCredentials(await client.request(loginRequest(name, 'wrong')));
        const took = Date.now() - started;
        assert.ok(took >= 280, `failure for ${name} answered after ${took} ms`);
      }
      client.close();
    } finally {
      await server.stop();
    }
  });

  test('too many failures from one address lock it out, even with the right password, until the window passes', async () => {
    const server = await startTestServer({
      limits: { loginFailuresPerAddress: 3, loginFailuresPerAccount: 100, loginFailureWindowSeconds: 1 },
    });
    try {
      await server.addAccount('user1@example.test', 'secret');
      const client = await XimssClient.connect(server.ports.ximss);
      for (const name of ['a@example.test', 'b@example.test', 'c@example.test']) assertBadCredentials(await client.request(loginRequest(name, 'x')));
      const locked = await client.request(loginRequest('user1@example.test', 'secret'));
      assert.equal(locked.messages.length, 0, 'no session while locked out');
      assert.ok(locked.response.attrs.errorText);
      // Another connection from the same address is locked out too, CRAM-MD5 included.
      const other = await XimssClient.connect(server.ports.ximss);
      assert.equal((await other.request(loginRequest('user1', 'secret'))).messages.length, 0);
      const cram = await cramMd5(other, 'c1', 'user1@example.test', 'secret');
      assert.equal(cram.reply.messages.length, 0);
      assert.ok(cram.reply.response.attrs.errorText);
      await sleep(1100);
      assertSession(await other.request(loginRequest('user1@example.test', 'secret', { id: 'late' })), 'late', 'user1@example.test');
      client.close();
      other.close();
    } finally {
      await server.stop();
    }
  });

  test('too many failures for one account slow that account down, never lock it: the right password still gets in', async () => {
    const server = await startTestServer({
      limits: { loginFailuresPerAddress: 100, loginFailuresPerAccount: 2, accountSlowdownMs: 50, loginFailureWindowSeconds: 60 },
    });
    try {
      await server.addAccount('user1@example.test', 'secret');
      await server.addAccount('user2@example.test', 'secret2');
      const client = await XimssClient.connect(server.ports.ximss);
      assertBadCredentials(await client.request(loginRequest('user1@example.test', 'x')));
      assertBadCredentials(await client.request(loginRequest('user1', 'y')));
      // Past the account's budget: slowed down (test/login-limits.test.ts), not refused.
      assertBadCredentials(await client.request(loginRequest('user1', 'z')));
      assertSession(await client.request(loginRequest('user1@example.test', 'secret', { id: 'u1' })), 'u1', 'user1@example.test');
      const other = await XimssClient.connect(server.ports.ximss);
      const plain = Buffer.from('\0user1@example.test\0secret').toString('base64');
      assert.equal((await other.request(`<login method="PLAIN" authData="${plain}"/>`)).messages.length, 1, 'SASL PLAIN gets in too');
      const third = await XimssClient.connect(server.ports.ximss);
      assertSession(await third.request(loginRequest('user2@example.test', 'secret2', { id: 'u2' })), 'u2', 'user2@example.test');
      client.close();
      other.close();
      third.close();
    } finally {
      await server.stop();
    }
  });

  test('sessions per account are limited', async () => {
    const server = await startTestServer({ limits: { sessionsPerAccount: 2 } });
    try {
      await server.addAccount('user1@example.test', 'secret');
      const a = await loggedInClient(server.ports.ximss, 'user1', 'secret');
      const b = await loggedInClient(server.ports.ximss, 'user1', 'secret');
      const c = await XimssClient.connect(server.ports.ximss);
      const refused = await c.request(loginRequest('user1', 'secret'));
      assert.equal(refused.messages.length, 0);
      assert.ok(refused.response.attrs.errorText);
      a.close();
      await sleep(100);
      assertSession(await c.request(loginRequest('user1', 'secret', { id: 'again' })), 'again', 'user1@example.test');
      b.close();
      c.close();
    } finally {
      await server.stop();
    }
  });
});
