/**
 * XIMSS over TCP: zero-byte framing, pipelining, ordering of data messages and responses,
 * error responses for bad input, size limits, idle time-outs, STARTTLS and implicit TLS.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { parseXml } from '../src/xml/parser.js';
import { connectPlain, firstMessage, freePort, loggedInClient, startTestServer, startTlsClient, XimssClient, type TestServer } from './helpers.js';

const USER = 'user1@example.test';
const PASSWORD = 'secret';

/** Opens a plain socket and collects the zero-terminated messages the server sends. */
async function rawConnection(port: number): Promise<{ socket: net.Socket; messages: string[]; closed: Promise<void> }> {
  const socket = await connectPlain(port);
  const messages: string[] = [];
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    let zero: number;
    while ((zero = buffer.indexOf(0)) >= 0) {
      messages.push(buffer.subarray(0, zero).toString('utf8'));
      buffer = buffer.subarray(zero + 1);
    }
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, messages, closed };
}

describe('framing and pipelining', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    await server.addAccount(USER, PASSWORD, 'User One');
  });
  after(() => server.stop());

  test('10,000 noops pipelined in one write are all answered, in order', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const count = 10_000;
    let batch = '';
    for (let i = 0; i < count; i++) batch += `<noop id="N${i}"/>\0`;
    const start = client.received.length;
    client.socket.write(batch);
    await client.until(() => client.received.length - start >= count || undefined, 20_000);
    const answers = client.received.slice(start);
    assert.equal(answers.length, count, 'exactly one message per noop');
    for (let i = 0; i < count; i++) {
      const m = answers[i]!;
      assert.equal(m.name, 'response');
      assert.deepEqual(m.attrs, { id: `N${i}` }, `response ${i} in order and successful`);
    }
    client.close();
  });

  test('data messages carry the request id and come before its response; responses keep request order', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const start = client.received.length;
    client.socket.write('<readSession id="a"/>\0<noop id="b"/>\0<readTime id="c"/>\0<readStatus id="d"/>\0');
    await client.until(() => client.received.slice(start).some((m) => m.name === 'response' && m.attrs.id === 'd') || undefined);
    const got = client.received.slice(start).map((m) => `${m.name}:${m.attrs.id ?? ''}`);
    assert.deepEqual(got, ['session:a', 'response:a', 'response:b', 'currentTime:c', 'response:c', 'currentStatus:d', 'response:d']);
    client.close();
  });

  test('an unknown operation answers exactly errorText="unknown command" errorNum="500"', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const reply = await client.request('<myCommand id="A002" myParam="user1@example.dom"/>');
    assert.equal(reply.messages.length, 0);
    assert.deepEqual(reply.response.attrs, { id: 'A002', errorText: 'unknown command', errorNum: '500' });
    // The same before login.
    const fresh = await XimssClient.connect(server.ports.ximss);
    const pre = await fresh.request('<fooBar id="x1"/>');
    assert.deepEqual(pre.response.attrs, { id: 'x1', errorText: 'unknown command', errorNum: '500' });
    client.close();
    fresh.close();
  });

  test('exeTime is reported when asked with a non-zero value, and only then', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const plain = await client.request('<noop id="e1"/>');
    assert.deepEqual(plain.response.attrs, { id: 'e1' });
    const timed = await client.request('<noop id="e2" exeTime="1"/>');
    assert.match(timed.response.attrs.exeTime ?? '', /^\d+$/);
    assert.equal(timed.response.attrs.errorText, undefined);
    const zero = await client.request('<noop id="e3" exeTime="0"/>');
    assert.equal(zero.response.attrs.exeTime, undefined);
    const failed = await client.request('<myCommand id="e4" exeTime="1"/>');
    assert.equal(failed.response.attrs.errorText, 'unknown command');
    assert.equal(failed.response.attrs.errorNum, '500');
    assert.match(failed.response.attrs.exeTime ?? '', /^\d+$/);
    client.close();
  });

  test('malformed XML gets an error response and the connection stays usable', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    for (const bad of ['<noop id="m1">', 'not xml at all', '<noop id="m2"/><noop id="m3"/>', '<a b="1></a>', '<noop id="m4" id="m5"/>']) {
      const before = client.received.length;
      client.sendRaw(bad);
      const error = await client.until(() => client.received[before]);
      assert.equal(error.name, 'response', `reply to ${JSON.stringify(bad)}`);
      assert.ok(error.attrs.errorText, `errorText for ${JSON.stringify(bad)}`);
      assert.equal(error.attrs.errorNum, '500');
      const ok = await client.request('<noop/>');
      assert.equal(ok.response.attrs.errorText, undefined, `still usable after ${JSON.stringify(bad)}`);
    }
    assert.equal(client.closed, false);
    client.close();
  });

  test('a request without an id gets an error response and the connection stays usable', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const before = client.received.length;
    client.sendRaw('<noop/>');
    const error = await client.until(() => client.received[before]);
    assert.equal(error.name, 'response');
    assert.equal(error.attrs.id, undefined);
    assert.match(error.attrs.errorText ?? '', /\bid\b/);
    assert.equal(error.attrs.errorNum, '500');
    client.sendRaw('<noop id=""/>');
    const empty = await client.until(() => client.received[before + 1]);
    assert.ok(empty.attrs.errorText);
    const ok = await client.request('<noop id="after"/>');
    assert.deepEqual(ok.response.attrs, { id: 'after' });
    client.close();
  });

  test('a message split across many writes, and a UTF-8 character split between writes, arrive intact', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const message = Buffer.from('<setSessionData id="s1" name="grüße">Grüße, 世界</setSessionData>\0', 'utf8');
    for (let i = 0; i < message.length; i += 3) {
      client.socket.write(message.subarray(i, i + 3));
      await sleep(1);
    }
    await client.until(() => client.received.find((m) => m.name === 'response' && m.attrs.id === 's1'));
    const reply = await client.request('<getSessionData name="grüße"/>');
    assert.equal(reply.messages[0]?.name, 'sessionData');
    assert.equal(reply.messages[0]?.text(), 'Grüße, 世界');
    // Stray zero bytes (keep-alives) are ignored.
    const before = client.received.length;
    client.socket.write('\0\0\0');
    const ok = await client.request('<noop id="z"/>');
    assert.deepEqual(ok.response.attrs, { id: 'z' });
    assert.equal(client.received.length, before + 1);
    client.close();
  });

  test('requests pipelined right behind login run in the new session', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    client.socket.write(`<login id="l" authData="${USER}" password="${PASSWORD}"/>\0<readTime id="t"/>\0<noop id="n"/>\0`);
    await client.until(() => client.received.find((m) => m.name === 'response' && m.attrs.id === 'n'));
    const got = client.received.map((m) => `${m.name}:${m.attrs.id}:${m.attrs.errorText ?? ''}`);
    assert.deepEqual(got, ['session:l:', 'response:l:', 'currentTime:t:', 'response:t:', 'response:n:']);
    client.close();
  });

  test('a client that half-closes after its last requests still gets every answer', async () => {
    const raw = await rawConnection(server.ports.ximss);
    raw.socket.end('<listFeatures id="h1"/>\0<readStrings id="h2"/>\0');
    await raw.closed;
    const names = raw.messages.map((m) => parseXml(m)).map((m) => `${m.name}:${m.attrs.id}`);
    assert.deepEqual(names, ['features:h1', 'response:h1', 'strings:h2', 'response:h2']);
  });

  test('a misbehaving client does not disturb another session', async () => {
    const good = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const bad = await rawConnection(server.ports.ximss);
    bad.socket.write('<login id="1" authData="user1@example.test" password="secret"/>\0');
    bad.socket.write('garbage\0<<<\0');
    bad.socket.write('<noop id="unterminated" attr="' + 'x'.repeat(100_000)); // never finished
    for (let i = 0; i < 20; i++) {
      const reply = await good.request(`<noop id="g${i}"/>`, 2000);
      assert.deepEqual(reply.response.attrs, { id: `g${i}` });
    }
    bad.socket.destroy();
    const reply = await good.request('<readTime/>');
    assert.equal(reply.messages[0]?.name, 'currentTime');
    good.close();
  });
});

describe('request size limit', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ limits: { maxRequestBytes: 1024 } });
    await server.addAccount(USER, PASSWORD);
  });
  after(() => server.stop());

  test('a message just under the limit is served', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const head = '<noop id="u1" pad="';
    const tail = '"/>';
    const reply = await client.request(head + 'x'.repeat(1024 - head.length - tail.length) + tail);
    assert.equal(reply.response.attrs.errorText, undefined);
    client.close();
  });

  test('a message over the limit gets an error and the connection is closed', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const before = client.received.length;
    client.sendRaw(`<noop id="big" pad="${'x'.repeat(2000)}"/>`);
    await client.waitClosed(3000);
    const error = client.received[before];
    assert.ok(error, 'an error response before the close');
    assert.equal(error.name, 'response');
    assert.ok(error.attrs.errorText);
    assert.equal(error.attrs.errorNum, '500');
  });

  test('requests sent before an oversized message are still answered, in order, before the error', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    client.socket.write(
      `<login id="l" authData="${USER}" password="${PASSWORD}"/>\0<readTime id="t"/>\0<noop id="big" pad="${'x'.repeat(2000)}"/>\0`,
    );
    await client.waitClosed(3000);
    const got = client.received.map((m) => `${m.name}:${m.attrs.id ?? ''}:${m.attrs.errorText ? 'error' : 'ok'}`);
    assert.deepEqual(got, ['session:l:ok', 'response:l:ok', 'currentTime:t:ok', 'response:t:ok', 'response::error']);
  });

  test('an unterminated message growing past the limit closes the connection', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    client.socket.write(`<noop id="big" pad="${'x'.repeat(1500)}`);
    await client.waitClosed(3000);
    assert.equal(client.received[0]?.name, 'response');
    assert.ok(client.received[0]?.attrs.errorText);
  });

  test('other sessions continue', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const other = await XimssClient.connect(server.ports.ximss);
    other.sendRaw('x'.repeat(5000));
    await other.waitClosed(3000);
    const reply = await client.request('<noop/>');
    assert.equal(reply.response.attrs.errorText, undefined);
    client.close();
  });
});

describe('idle time-out', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ limits: { idleTimeoutSeconds: 1 } });
    await server.addAccount(USER, PASSWORD);
  });
  after(() => server.stop());

  test('an idle logged-in session gets an asynchronous <bye/> and is closed', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    const started = Date.now();
    const bye = await client.nextAsync('bye', 4000);
    const waited = Date.now() - started;
    assert.deepEqual(bye.attrs, {});
    assert.ok(waited >= 800, `bye came after ${waited} ms, before the 1 s time-out`);
    await client.waitClosed(2000);
    assert.equal(server.services.sessions.size, 0);
  });

  test('requests keep a session alive', async () => {
    const client = await loggedInClient(server.ports.ximss, USER, PASSWORD);
    for (let i = 0; i < 4; i++) {
      await sleep(350);
      const reply = await client.request('<noop/>');
      assert.equal(reply.response.attrs.errorText, undefined);
    }
    assert.equal(client.closed, false);
    assert.equal(client.asyncMessages.length, 0);
    client.close();
  });

  test('an idle connection that never logs in is closed', async () => {
    const raw = await rawConnection(server.ports.ximss);
    const started = Date.now();
    const outcome = await Promise.race([raw.closed.then(() => 'closed'), sleep(4000).then(() => 'still open')]);
    assert.equal(outcome, 'closed');
    assert.ok(Date.now() - started >= 800);
    assert.deepEqual(raw.messages, []);
  });
});

describe('STARTTLS', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    await server.addAccount(USER, PASSWORD, 'User One');
  });
  after(() => server.stop());

  test('listFeatures advertises starttls on a clear-text connection', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await client.request('<listFeatures/>');
    const features = reply.messages[0]!;
    assert.equal(features.name, 'features');
    assert.ok(features.element('starttls'), 'a <starttls/> element');
    client.close();
  });

  test('starttls then a TLS handshake on the same socket; login works over TLS', async () => {
    const { client, response } = await startTlsClient(server.ports.ximss);
    assert.deepEqual(response.attrs, { id: 'tls1' });
    assert.ok((client.socket as tls.TLSSocket).encrypted);
    const features = (await client.request('<listFeatures/>')).messages[0]!;
    assert.equal(features.element('starttls'), undefined, 'no starttls once TLS is on');
    const again = await client.request('<starttls/>');
    assert.ok(again.response.attrs.errorText, 'a second starttls is refused');
    const login = await client.login(USER, PASSWORD);
    assert.equal(login.messages[0]?.name, 'session');
    const reply = await client.request('<readTime/>');
    assert.equal(reply.messages[0]?.name, 'currentTime');
    client.close();
  });

  test('the generated certificate is kept in <dataDir>/tls and is the one presented', async () => {
    const certFile = join(server.dataDir, 'tls', 'cert.pem');
    assert.ok(existsSync(certFile));
    assert.ok(existsSync(join(server.dataDir, 'tls', 'key.pem')));
    const { client } = await startTlsClient(server.ports.ximss);
    const presented = (client.socket as tls.TLSSocket).getPeerX509Certificate();
    assert.ok(presented);
    assert.equal(presented.fingerprint256, new X509Certificate(readFileSync(certFile)).fingerprint256);
    client.close();
  });

  test('clear text pipelined after starttls is never executed (no command injection)', async () => {
    const plain = await connectPlain(server.ports.ximss);
    plain.on('error', () => {});
    const { text: response, rest } = await firstMessage(plain, '<starttls id="s"/>\0<listFeatures id="injected"/>\0');
    assert.deepEqual(parseXml(response).attrs, { id: 's' });
    assert.equal(rest.length, 0, 'nothing in clear text after the starttls response');
    // Whatever happens to the TLS handshake now, the injected request must not be answered.
    const received: string[] = [];
    await new Promise<void>((resolve) => {
      const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
      secure.on('data', (chunk: Buffer) => received.push(chunk.toString('utf8')));
      secure.on('error', () => resolve());
      secure.on('close', () => resolve());
      setTimeout(() => {
        secure.destroy();
        resolve();
      }, 300);
    });
    assert.ok(!received.join('').includes('injected'), `the injected listFeatures was executed: ${received.join('')}`);
  });

  test('without a usable certificate starttls is not offered, is refused, and what follows it is served in clear text', async () => {
    const noTls = await startTestServer({ tls: { certFile: '/nonexistent/cert.pem', keyFile: '/nonexistent/key.pem' } });
    try {
      const client = await XimssClient.connect(noTls.ports.ximss);
      const features = (await client.request('<listFeatures/>')).messages[0]!;
      assert.equal(features.element('starttls'), undefined);
      const start = client.received.length;
      client.socket.write('<starttls id="s"/>\0<listFeatures id="f"/>\0');
      await client.until(() => client.received.find((m) => m.name === 'response' && m.attrs.id === 'f'));
      const got = client.received.slice(start).map((m) => `${m.name}:${m.attrs.id}:${m.attrs.errorText ? 'error' : 'ok'}`);
      assert.deepEqual(got, ['response:s:error', 'features:f:ok', 'response:f:ok']);
      client.close();
    } finally {
      await noTls.stop();
    }
  });

  test('implicit TLS listener on ports.ximssTls', async () => {
    const tlsPort = await freePort();
    const tlsServer = await startTestServer({ ports: { ximssTls: tlsPort } });
    try {
      assert.equal(tlsServer.ports.ximssTls, tlsPort);
      await tlsServer.addAccount(USER, PASSWORD);
      const client = await XimssClient.connectTls(tlsPort);
      const features = (await client.request('<listFeatures/>')).messages[0]!;
      assert.equal(features.element('starttls'), undefined);
      const login = await client.login(USER, PASSWORD);
      assert.equal(login.messages[0]?.attrs.userName, USER);
      assert.deepEqual((await client.request('<noop id="n"/>')).response.attrs, { id: 'n' });
      client.close();
    } finally {
      await tlsServer.stop();
    }
  });
});
