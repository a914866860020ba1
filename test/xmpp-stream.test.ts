/**
 * XMPP client streams over real sockets: a raw client written here (node:net and node:tls;
 * SCRAM proofs computed with node:crypto) against XmppListener built from a running test
 * server's services, with a small recording StanzaSessions in place of the real one.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { silentLogger } from '../src/log.js';
import { ConnectionLimiter } from '../src/services/connections.js';
import { ensureDebianPackages } from './fixtures/debian.js';
import { ReadThrottle } from '../src/transports/xmpp/throttle.js';
import { MAX_UNACKED } from '../src/transports/xmpp/stream-management.js';
import { parseClientFinal, parseClientFirst, ScramError } from '../src/services/scram.js';
import type { AccountRecord } from '../src/store/store.js';
import { XmppListener } from '../src/transports/xmpp/listener.js';
import { BindError, type StanzaOut, type StanzaSession, type StanzaSessions } from '../src/transports/xmpp/stanza-session.js';
import { NS_STREAMS, XmppStreamParser, completeUtf8, namespaceOf } from '../src/transports/xmpp/stream.js';
import { el, XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { HttpListener } from '../src/ximss/bindings/http.js';
import { TcpListener } from '../src/ximss/bindings/tcp.js';
import { Engine } from '../src/ximss/engine.js';
import { registerOperations } from '../src/ximss/ops/index.js';
import { startTestServer, type TestServer } from './helpers.js';

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const NS_SM = 'urn:xmpp:sm:3';
const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const HEADER = (to = 'example.test') =>
  `<?xml version='1.0'?><stream:stream to='${to}' version='1.0' xmlns='jabber:client' xmlns:stream='${NS_STREAMS}'>`;

// ---------------------------------------------------------------------------------------
// A recording StanzaSessions: stanzas to `echo@…` come back, everything is kept.

interface Bound {
  jid: string;
  out: StanzaOut;
  received: XmlElement[];
  ended: XmlElement[][] | undefined;
}

class RecordingSessions implements StanzaSessions {
  readonly bound: Bound[] = [];
  private counter = 0;
  private waiters: (() => void)[] = [];

  async bind(account: AccountRecord, requested: string | undefined, out: StanzaOut): Promise<StanzaSession> {
    if (requested === 'forbidden') throw new BindError('not-allowed', 'this resource is not allowed');
    const jid = `${account.name}@${account.domain}/${requested ?? `r${++this.counter}`}`;
    const record: Bound = { jid, out, received: [], ended: undefined };
    // Sent while binding (as a real session may, say its offline messages): the client sees it after the bind result.
    if (requested === 'eager') out.send(el('message', { from: 'early@example.test', to: jid, id: 'early' }));
    this.bound.push(record);
    this.wake();
    return {
      jid,
      receive: (stanza) => {
        record.received.push(stanza);
        if (stanza.name === 'message' && stanza.attrs.to?.startsWith('echo@')) {
          out.send(el('message', { from: stanza.attrs.to, to: jid, id: stanza.attrs.id }, ...stanza.children));
        }
        this.wake();
      },
      ended: (unacknowledged) => {
        record.ended = [unacknowledged ?? []];
        this.wake();
      },
    };
  }

  streamFeatures(): XmlElement[] {
    return [el('sm', { xmlns: NS_SM }), el('ver', { xmlns: 'urn:xmpp:features:rosterver' })];
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  async until<T>(predicate: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = predicate();
      if (value !== undefined && value !== false) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the sessions');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  byJid(jid: string): Bound {
    const found = this.bound.find((b) => b.jid === jid);
    assert.ok(found, `no session bound for ${jid}`);
    return found;
  }
}

// ---------------------------------------------------------------------------------------
// A raw XMPP client.

class RawClient {
  socket: net.Socket;
  readonly elements: XmlElement[] = [];
  /** `name#id` of every element received, in order. */
  readonly arrivals: string[] = [];
  header: Record<string, string> | undefined;
  ended = false;
  closed = false;
  private parser!: XmppStreamParser;
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.restart();
    this.listen(socket);
  }

  private listen(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.parser.write(chunk);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  /** A new stream from the server is expected (after STARTTLS and SASL). */
  restart(): void {
    this.header = undefined;
    const big = { depth: 64, elements: 100_000, attributes: 64, attributeChars: 1 << 20, textChars: 1 << 24, rootChildren: Infinity };
    this.parser = new XmppStreamParser({
      streamHeader: (attrs) => (this.header = attrs),
      stanza: (element) => {
        this.elements.push(element);
        this.arrivals.push(`${element.name}#${element.attrs.id ?? ''}`);
      },
      streamEnd: () => (this.ended = true),
      limits: { xml: big, bytes: 1 << 24 },
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  static connectTls(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  async until<T>(predicate: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = predicate();
      if (value !== undefined && value !== false) return value;
      if (this.closed) throw new Error(`connection closed while waiting; received: ${this.elements.map(String).join(' ')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; received: ${this.elements.map(String).join(' ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(text: string | XmlElement): void {
    this.socket.write(typeof text === 'string' ? text : text.toString());
  }

  /** The next element named `name` (taken off the list). */
  next(name: string): Promise<XmlElement> {
    return this.until(() => {
      const index = this.elements.findIndex((e) => e.name === name);
      return index < 0 ? undefined : this.elements.splice(index, 1)[0];
    });
  }

  /** Opens a stream; resolves with its features. */
  async open(to = 'example.test'): Promise<XmlElement> {
    this.send(HEADER(to));
    return this.next('stream:features');
  }

  /** Waits for a stream error: its condition; then for the end of the stream and the close. */
  async streamError(): Promise<string> {
    const error = await this.next('stream:error');
    await this.until(() => this.ended || undefined);
    await this.waitClosed();
    const condition = error.elements().find((e) => e.name !== 'text');
    assert.equal(condition?.attrs.xmlns, 'urn:ietf:params:xml:ns:xmpp-streams');
    return condition!.name;
  }

  async waitClosed(): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('the server did not close the connection');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async starttls(): Promise<XmlElement> {
    this.send(`<starttls xmlns='${NS_TLS}'/>`);
    await this.next('proceed');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.restart();
    this.listen(secure);
    return this.open();
  }

  async plain(user: string, password: string): Promise<XmlElement> {
    this.send(el('auth', { xmlns: NS_SASL, mechanism: 'PLAIN' }, Buffer.from(`\0${user}\0${password}`).toString('base64')));
    const result = await this.until(() => {
      const index = this.elements.findIndex((e) => e.name === 'success' || e.name === 'failure');
      return index < 0 ? undefined : this.elements.splice(index, 1)[0];
    });
    if (result.name === 'success') this.restart();
    return result;
  }

  /** A SCRAM exchange; resolves with the last element (success or failure) and the salt the server gave. */
  async scram(hash: 'SHA-1' | 'SHA-256', user: string, password: string): Promise<{ result: XmlElement; salt: string; serverSignatureOk: boolean }> {
    const client = scramClient(hash, user, password);
    this.send(el('auth', { xmlns: NS_SASL, mechanism: `SCRAM-${hash}` }, Buffer.from(client.first).toString('base64')));
    const challenge = await this.until(() => {
      const index = this.elements.findIndex((e) => e.name === 'challenge' || e.name === 'failure');
      return index < 0 ? undefined : this.elements.splice(index, 1)[0];
    });
    if (challenge.name === 'failure') return { result: challenge, salt: '', serverSignatureOk: false };
    const serverFirst = Buffer.from(challenge.text(), 'base64').toString();
    const final = client.final(serverFirst);
    this.send(el('response', { xmlns: NS_SASL }, Buffer.from(final.message).toString('base64')));
    const result = await this.until(() => {
      const index = this.elements.findIndex((e) => e.name === 'success' || e.name === 'failure');
      return index < 0 ? undefined : this.elements.splice(index, 1)[0];
    });
    // After <success/> the server's next words open a new stream.
    if (result.name === 'success') this.restart();
    const serverFinal = Buffer.from(result.text(), 'base64').toString();
    return { result, salt: final.salt, serverSignatureOk: serverFinal === `v=${final.serverSignature}` };
  }

  /** After SASL success: the new stream's features. */
  async restartStream(): Promise<XmlElement> {
    return this.open();
  }

  async bind(resource?: string): Promise<XmlElement> {
    const id = `bind${randomBytes(3).toString('hex')}`;
    this.send(el('iq', { type: 'set', id }, el('bind', { xmlns: NS_BIND }, resource === undefined ? undefined : el('resource', {}, resource))));
    return this.until(() => {
      const index = this.elements.findIndex((e) => e.name === 'iq' && e.attrs.id === id);
      return index < 0 ? undefined : this.elements.splice(index, 1)[0];
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

function scramClient(hash: 'SHA-1' | 'SHA-256', user: string, password: string) {
  const alg = hash === 'SHA-1' ? 'sha1' : 'sha256';
  const length = hash === 'SHA-1' ? 20 : 32;
  const nonce = randomBytes(12).toString('base64');
  const bare = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${nonce}`;
  return {
    first: `n,,${bare}`,
    final(serverFirst: string) {
      const fields = Object.fromEntries(serverFirst.split(',').map((f) => [f[0], f.slice(2)]));
      assert.ok(fields.r!.startsWith(nonce), 'the server nonce extends the client one');
      const salted = pbkdf2Sync(password, Buffer.from(fields.s!, 'base64'), Number(fields.i), length, alg);
      const clientKey = createHmac(alg, salted).update('Client Key').digest();
      const storedKey = createHash(alg).update(clientKey).digest();
      const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${fields.r}`;
      const authMessage = `${bare},${serverFirst},${withoutProof}`;
      const signature = createHmac(alg, storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
      const serverKey = createHmac(alg, salted).update('Server Key').digest();
      return {
        message: `${withoutProof},p=${proof.toString('base64')}`,
        salt: fields.s!,
        serverSignature: createHmac(alg, serverKey).update(authMessage).digest('base64'),
      };
    },
  };
}

function mechanisms(features: XmlElement): string[] {
  return features.element('mechanisms')?.elements('mechanism').map((m) => m.text()) ?? [];
}

/**
 * A real client: slixmpp (Debian's python3-slixmpp) logs in over STARTTLS with the SCRAM
 * mechanism it prefers, binds, sends a message to the echo and prints what comes back.
 */
const SLIXMPP_LOGIN = `
import asyncio, ssl, sys
from slixmpp import ClientXMPP
jid, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = ClientXMPP(jid + '/slix', password)
client.ssl_context = ssl.create_default_context()
client.ssl_context.check_hostname = False
client.ssl_context.verify_mode = ssl.CERT_NONE
client.enable_direct_tls = False
def started(event):
    print('MECHANISM', client['feature_mechanisms'].mech.name, flush=True)
    client.send_message(mto='echo@example.test', mbody='hello from slixmpp')
def message(msg):
    print('ECHO', msg['from'].bare, msg['to'].full, msg['body'], flush=True)
    client.disconnect()
client.add_event_handler('session_start', started)
client.add_event_handler('message', message)
client.add_event_handler('failed_auth', lambda event: (print('FAILED_AUTH', flush=True), client.disconnect()))
client.connect(('127.0.0.1', port), force_starttls=True, disable_starttls=False)
client.loop.call_later(20, client.disconnect)
client.loop.run_until_complete(client.disconnected)
`;

const PYTHON = '/usr/bin/python3';

function python(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(PYTHON, args, { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );
}

// ---------------------------------------------------------------------------------------

describe('XMPP client streams', () => {
  let server: TestServer;
  let sessions: RecordingSessions;
  let xmpp: XmppListener;
  let port: number;
  let tlsPort: number;
  /** The HTTPS listener, its WebSocket upgrades on /xmpp-websocket handed to the XMPP service. */
  let https: HttpListener;
  let wsPort: number;
  const clients: RawClient[] = [];

  const connect = async (): Promise<RawClient> => {
    const client = await RawClient.connect(port);
    clients.push(client);
    return client;
  };

  /** Another listener on the same services, with changed settings; closed by the test. */
  const ownListener = async (
    xmppChanges: Partial<TestServer['config']['xmpp']> = {},
    limitChanges: Partial<TestServer['config']['limits']> = {},
    connections = server.services.connections,
  ): Promise<{ listener: XmppListener; port: number }> => {
    const config = { ...server.config, xmpp: { ...server.config.xmpp, ...xmppChanges }, limits: { ...server.config.limits, ...limitChanges } };
    const listener = new XmppListener({
      sessions,
      auth: server.services.auth,
      tls: server.services.tls,
      config,
      isLocalDomain: async () => true,
      log: silentLogger,
      connections,
    });
    return { listener, port: await listener.listen(0, '127.0.0.1') };
  };

  /** A fresh account logged in with SCRAM-SHA-1 over clear text, then bound: the client and its JID. */
  const boundClient = async (resource?: string): Promise<{ client: RawClient; jid: string; user: string }> => {
    const user = await server.newAccount('x');
    const client = await connect();
    await client.open();
    const { result } = await client.scram('SHA-1', user, 'secret');
    assert.equal(result.name, 'success', String(result));
    await client.restartStream();
    const bound = await client.bind(resource);
    assert.equal(bound.attrs.type, 'result', String(bound));
    return { client, jid: bound.element('bind')!.element('jid')!.text(), user };
  };

  before(async () => {
    // Most cases speak SCRAM in clear text for brevity: allowed once requireTls (on by default) is off.
    server = await startTestServer({ xmpp: { requireTls: false, resumeSeconds: 30, preAuthStanzaBytes: 4096, maxStanzaBytes: 65536 } });
    sessions = new RecordingSessions();
    const { services } = server;
    xmpp = new XmppListener({
      sessions,
      auth: services.auth,
      tls: services.tls,
      config: server.config,
      isLocalDomain: async (domain) => (await services.store.domains.get(domain)) !== undefined,
      log: silentLogger,
      metrics: services.metrics,
      connections: services.connections,
    });
    port = await xmpp.listen(0, '127.0.0.1');
    tlsPort = await xmpp.listenTls(0, '127.0.0.1');
    const engine = new Engine(services);
    registerOperations(engine);
    https = new HttpListener(engine, new TcpListener(engine), services.tls);
    https.xmppUpgrade = (req, socket, head, options) => xmpp.upgrade(req, socket, head, options);
    wsPort = await https.listen(0, '127.0.0.1');
  });

  after(async () => {
    for (const client of clients) client.close();
    await xmpp.close();
    await https.close();
    await server.stop();
  });

  test('features before TLS: STARTTLS and SCRAM, no PLAIN; PLAIN is refused in clear text', async () => {
    const client = await connect();
    const features = await client.open();
    assert.equal(client.header?.from, 'example.test');
    assert.ok(client.header?.id);
    assert.equal(features.element('starttls')?.attrs.xmlns, NS_TLS);
    assert.deepEqual(mechanisms(features), ['SCRAM-SHA-256', 'SCRAM-SHA-1']);
    const user = await server.newAccount('x');
    const failure = await client.plain(user, 'secret');
    assert.equal(failure.name, 'failure');
    assert.ok(failure.element('encryption-required'), String(failure));
  });

  test('with requireTls (the default), nothing but STARTTLS is offered before TLS', async () => {
    const { listener, port: strictPort } = await ownListener({ requireTls: true });
    try {
      const client = await RawClient.connect(strictPort);
      clients.push(client);
      const features = await client.open();
      assert.ok(features.element('starttls')?.element('required'), String(features));
      assert.deepEqual(mechanisms(features), []);
    } finally {
      await listener.close();
    }
  });

  test('STARTTLS, PLAIN, bind with a resource: stanzas reach the session with from stamped, in order', async () => {
    const user = await server.newAccount('x');
    const client = await connect();
    await client.open();
    const features = await client.starttls();
    assert.equal(features.element('starttls'), undefined);
    assert.deepEqual(mechanisms(features), ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
    const success = await client.plain(user, 'secret');
    assert.equal(success.name, 'success', String(success));
    const bindFeatures = await client.restartStream();
    assert.equal(bindFeatures.element('bind')?.attrs.xmlns, NS_BIND);
    assert.ok(bindFeatures.element('session')?.element('optional'));
    assert.equal(bindFeatures.elements('sm').length, 1, 'sm offered once although the session offers it too');
    assert.ok(bindFeatures.element('csi'));
    assert.ok(bindFeatures.element('ver'));
    const bound = await client.bind('laptop');
    const jid = bound.element('bind')!.element('jid')!.text();
    assert.equal(jid, `${user}/laptop`);
    // The legacy session iq is answered by the stream.
    client.send(`<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`);
    const session = await client.next('iq');
    assert.equal(session.attrs.type, 'result');
    assert.equal(session.attrs.id, 's1');
    client.send(`<message to='echo@example.test' id='m1'><body>one</body></message><message to='echo@example.test' from='${user}' id='m2'><body>two</body></message>`);
    const echo1 = await client.next('message');
    const echo2 = await client.next('message');
    assert.deepEqual([echo1.attrs.id, echo2.attrs.id], ['m1', 'm2']);
    assert.equal(echo1.element('body')?.text(), 'one');
    const record = sessions.byJid(jid);
    assert.deepEqual(record.received.map((s) => [s.attrs.id, s.attrs.from]), [['m1', jid], ['m2', jid]]);
    assert.equal(record.received[0]!.attrs.xmlns, undefined);
  });

  test('SCRAM-SHA-1 in clear text, bind without a resource: the server chooses one', async () => {
    const { jid, user } = await boundClient();
    assert.match(jid, new RegExp(`^${user}/r\\d+$`));
  });

  test('SCRAM-SHA-256 after STARTTLS: the server proves it holds the verifier too', async () => {
    const user = await server.newAccount('x', { password: 'pässwörd 1' });
    const client = await connect();
    await client.open();
    await client.starttls();
    const { result, serverSignatureOk } = await client.scram('SHA-256', user, 'pässwörd 1');
    assert.equal(result.name, 'success', String(result));
    assert.ok(serverSignatureOk, 'the server signature matches');
    await client.restartStream();
    const bound = await client.bind();
    assert.equal(bound.attrs.type, 'result');
  });

  test('wrong passwords are not-authorized (SCRAM and PLAIN); an unknown name gets the same salt each time', async () => {
    const user = await server.newAccount('x');
    const client = await connect();
    await client.open();
    const wrong = await client.scram('SHA-256', user, 'wrong');
    assert.equal(wrong.result.name, 'failure');
    assert.ok(wrong.result.element('not-authorized'), String(wrong.result));
    const unknown1 = await client.scram('SHA-1', 'nobody-here@example.test', 'x');
    assert.ok(unknown1.result.element('not-authorized'));
    // A third failure ends the stream (RFC 6120 6.4.5).
    const unknown2 = await client.scram('SHA-1', 'nobody-here@example.test', 'x');
    assert.ok(unknown2.result.element('not-authorized'));
    assert.equal(unknown1.salt, unknown2.salt, 'the fake salt is deterministic');
    assert.equal(Buffer.from(unknown1.salt, 'base64').length, 16);
    assert.equal(await client.streamError(), 'policy-violation');

    const tlsClient = await RawClient.connectTls(tlsPort);
    clients.push(tlsClient);
    await tlsClient.open();
    const plain = await tlsClient.plain(user, 'wrong');
    assert.ok(plain.element('not-authorized'), String(plain));
  });

  test('direct TLS: no STARTTLS offered, PLAIN is', async () => {
    const user = await server.newAccount('x');
    const client = await RawClient.connectTls(tlsPort);
    clients.push(client);
    const features = await client.open();
    assert.equal(features.element('starttls'), undefined);
    assert.deepEqual(mechanisms(features), ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
    assert.equal((await client.plain(user, 'secret')).name, 'success');
  });

  test('an account without SCRAM verifiers is refused SCRAM, logs in with PLAIN (or XIMSS), and has them from then on', async () => {
    const user = await server.newAccount('x');
    const account = (await server.services.accounts.find(user))!;
    // As an account made before verifiers were kept.
    await server.services.store.accounts.setPassword(account.id, account.passwordHash, account.cramMd5Context, null, null);
    const before = (await server.services.accounts.find(user))!;
    assert.equal(before.scramCredentials, null);
    const client = await RawClient.connectTls(tlsPort);
    clients.push(client);
    await client.open();
    const refused = await client.scram('SHA-256', user, 'secret');
    assert.ok(refused.result.element('not-authorized'), String(refused.result));
    assert.equal((await client.plain(user, 'secret')).name, 'success');
    const after = (await server.services.accounts.find(user))!;
    assert.ok(after.scramCredentials, 'verifiers kept after PLAIN');
    const again = await RawClient.connect(port);
    clients.push(again);
    await again.open();
    assert.equal((await again.scram('SHA-1', user, 'secret')).result.name, 'success');

    // A XIMSS clear-text login keeps them too.
    const ximssUser = await server.newAccount('x');
    const ximssAccount = (await server.services.accounts.find(ximssUser))!;
    await server.services.store.accounts.setPassword(ximssAccount.id, ximssAccount.passwordHash, ximssAccount.cramMd5Context, null, null);
    await server.login(ximssUser, 'secret');
    assert.ok((await server.services.accounts.find(ximssUser))!.scramCredentials, 'verifiers kept after a XIMSS login');
  });

  test('bind refused by the sessions: an iq error; what a session sends while binding comes after the result', async () => {
    const user = await server.newAccount('x');
    const client = await connect();
    await client.open();
    await client.scram('SHA-1', user, 'secret');
    await client.restartStream();
    const refused = await client.bind('forbidden');
    assert.equal(refused.attrs.type, 'error');
    assert.ok(refused.element('error')?.element('not-allowed'), String(refused));
    const bound = await client.bind('eager');
    assert.equal(bound.attrs.type, 'result');
    assert.equal((await client.next('message')).attrs.id, 'early');
    const order = client.arrivals.slice(-2);
    assert.deepEqual(order, [`iq#${bound.attrs.id}`, 'message#early'], 'the bind result first');
  });

  test('stream errors: malformed XML, stanza too large, bad namespace, restricted XML, unknown host, invalid-from, stanza before auth', async () => {
    const malformed = await connect();
    await malformed.open();
    malformed.send('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN"></oops>');
    assert.equal(await malformed.streamError(), 'not-well-formed');

    const large = await connect();
    await large.open();
    large.send(`<auth xmlns="${NS_SASL}" mechanism="SCRAM-SHA-1">${'A'.repeat(5000)}</auth>`);
    assert.equal(await large.streamError(), 'policy-violation');

    const namespace = await connect();
    namespace.send(`<?xml version='1.0'?><stream:stream to='example.test' version='1.0' xmlns='jabber:client' xmlns:stream='urn:wrong'>`);
    assert.equal(await namespace.streamError(), 'invalid-namespace');

    const comment = await connect();
    await comment.open();
    comment.send('<!-- a comment -->');
    assert.equal(await comment.streamError(), 'restricted-xml');

    const host = await connect();
    host.send(HEADER('elsewhere.example'));
    assert.equal(await host.streamError(), 'host-unknown');

    const early = await connect();
    await early.open();
    early.send(`<message to='echo@example.test'><body>hi</body></message>`);
    assert.equal(await early.streamError(), 'not-authorized');

    const noDefault = await connect();
    noDefault.send(`<?xml version='1.0'?><stream:stream to='example.test' version='1.0' xmlns:stream='${NS_STREAMS}'>`);
    assert.equal(await noDefault.streamError(), 'invalid-namespace');

    const serverStanza = await boundClient();
    serverStanza.client.send(`<message xmlns='jabber:server' to='echo@example.test'><body>hi</body></message>`);
    assert.equal(await serverStanza.client.streamError(), 'invalid-namespace');

    const { client, jid } = await boundClient();
    client.send(`<message to='echo@example.test' from='someone@example.test/x'><body>spoof</body></message>`);
    assert.equal(await client.streamError(), 'invalid-from');
    assert.equal(sessions.byJid(jid).received.length, 0);
    await sessions.until(() => sessions.byJid(jid).ended);
  });

  test('a large stanza after authentication: refused past maxStanzaBytes while it arrives', async () => {
    const { client, jid } = await boundClient();
    client.send(`<message to='echo@example.test' id='ok'><body>${'b'.repeat(30_000)}</body></message>`);
    const echoed = await client.next('message');
    assert.equal(echoed.element('body')?.text().length, 30_000);
    // Sent in pieces and never finished: the limit ends it all the same.
    client.send(`<message to='echo@example.test'><body>`);
    for (let i = 0; i < 8; i++) client.send('c'.repeat(10_000));
    assert.equal(await client.streamError(), 'policy-violation');
    assert.equal(sessions.byJid(jid).received.length, 1);
  });

  test('closing handshake: </stream:stream> answered in kind, the resource ends', async () => {
    const { client, jid } = await boundClient();
    client.send('</stream:stream>');
    await client.until(() => client.ended || undefined);
    await client.waitClosed();
    const record = await sessions.until(() => sessions.byJid(jid).ended && sessions.byJid(jid));
    assert.deepEqual(record.ended, [[]]);
  });

  test('white space keep-alives between stanzas are accepted', async () => {
    const { client, jid } = await boundClient();
    client.send('\n \n');
    client.send(`<message to='echo@example.test' id='k'><body>after keep-alive</body></message> \n`);
    assert.equal((await client.next('message')).attrs.id, 'k');
    assert.equal(sessions.byJid(jid).received.length, 1);
  });

  test('WebSocket (RFC 7395) on the HTTPS listener: open, SCRAM, bind, stanzas in jabber:client frames, close', async () => {
    const user = await server.newAccount('x');
    const ws = new WebSocket(`wss://127.0.0.1:${wsPort}/xmpp-websocket`, 'xmpp', { rejectUnauthorized: false });
    const frames: XmlElement[] = [];
    let wake: (() => void) | undefined;
    ws.on('message', (data) => {
      frames.push(parseXml(data.toString()));
      wake?.();
    });
    const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    assert.equal(ws.protocol, 'xmpp');
    const next = async (name: string): Promise<XmlElement> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const index = frames.findIndex((f) => f.name === name);
        if (index >= 0) return frames.splice(index, 1)[0]!;
        if (Date.now() > deadline) throw new Error(`no ${name}: ${frames.map(String).join(' ')}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
    };
    const open = `<open xmlns='${NS_FRAMING}' to='example.test' version='1.0'/>`;
    ws.send(open);
    const opened = await next('open');
    assert.equal(opened.attrs.xmlns, NS_FRAMING);
    const features = await next('stream:features');
    assert.equal(features.attrs['xmlns:stream'], NS_STREAMS);
    assert.equal(features.element('starttls'), undefined);
    assert.deepEqual(mechanisms(features), ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'], 'HTTPS: the stream is encrypted');
    const scram = scramClient('SHA-256', user, 'secret');
    ws.send(el('auth', { xmlns: NS_SASL, mechanism: 'SCRAM-SHA-256' }, Buffer.from(scram.first).toString('base64')).toString());
    const challenge = await next('challenge');
    const final = scram.final(Buffer.from(challenge.text(), 'base64').toString());
    ws.send(el('response', { xmlns: NS_SASL }, Buffer.from(final.message).toString('base64')).toString());
    const success = await next('success');
    assert.equal(Buffer.from(success.text(), 'base64').toString(), `v=${final.serverSignature}`);
    ws.send(open);
    await next('open');
    await next('stream:features');
    ws.send(`<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='${NS_BIND}'><resource>web</resource></bind></iq>`);
    const bound = await next('iq');
    assert.equal(bound.attrs.xmlns, 'jabber:client');
    const jid = bound.element('bind')!.element('jid')!.text();
    ws.send(`<message xmlns='jabber:client' to='echo@example.test' id='w1'><body>over ws</body></message>`);
    const echo = await next('message');
    assert.equal(echo.attrs.xmlns, 'jabber:client');
    assert.equal(echo.element('body')?.text(), 'over ws');
    const received = sessions.byJid(jid).received[0]!;
    assert.equal(received.attrs.xmlns, undefined, 'the framing namespace is dropped');
    assert.equal(received.attrs.from, jid);
    ws.send(`<close xmlns='${NS_FRAMING}'/>`);
    await next('close');
    await closed;
    await sessions.until(() => sessions.byJid(jid).ended);
  });

  test('WebSocket without the xmpp subprotocol, or on another path, is refused', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${wsPort}/xmpp-websocket`, { rejectUnauthorized: false });
    const error = await new Promise<Error>((resolve) => ws.once('error', resolve));
    assert.match(error.message, /400/);
    const elsewhere = new WebSocket(`wss://127.0.0.1:${wsPort}/other`, 'xmpp', { rejectUnauthorized: false });
    const refused = await new Promise<Error>((resolve) => elsewhere.once('error', resolve));
    assert.match(refused.message, /404/);
  });

  test('stream management: enable, acks both ways, resume after a lost connection with the unacknowledged stanzas', async () => {
    const { client, jid, user } = await boundClient('phone');
    client.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const enabled = await client.next('enabled');
    assert.equal(enabled.attrs.resume, 'true');
    const previd = enabled.attrs.id!;
    assert.ok(previd);
    client.send(`<message to='echo@example.test' id='e1'><body>1</body></message><message to='echo@example.test' id='e2'><body>2</body></message>`);
    await client.next('message');
    await client.next('message');
    client.send(`<r xmlns='${NS_SM}'/>`);
    assert.equal((await client.next('a')).attrs.h, '2');
    // The client acknowledges the first echo only; then the connection is lost.
    client.send(`<a xmlns='${NS_SM}' h='1'/>`);
    client.send(`<r xmlns='${NS_SM}'/>`);
    assert.equal((await client.next('a')).attrs.h, '2', 'an <a/> or an <r/> is no stanza');
    client.close();
    const record = sessions.byJid(jid);
    // Sent while the client is away: kept for it.
    await new Promise((resolve) => setTimeout(resolve, 50));
    record.out.send(el('message', { from: 'someone@example.test', to: jid, id: 'away' }, el('body', {}, 'while away')));
    assert.equal(record.ended, undefined, 'the resource waits to be resumed');

    const again = await connect();
    await again.open();
    assert.equal((await again.scram('SHA-1', user, 'secret')).result.name, 'success');
    await again.restartStream();
    again.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='1'/>`);
    const resumed = await again.next('resumed');
    assert.equal(resumed.attrs.h, '2');
    const replayed = [await again.next('message'), await again.next('message')];
    assert.deepEqual(replayed.map((m) => m.attrs.id), ['e2', 'away']);
    again.send(`<message to='echo@example.test' id='e3'><body>3</body></message>`);
    assert.equal((await again.next('message')).attrs.id, 'e3');
    assert.equal(record.received.at(-1)?.attrs.from, jid);
    assert.equal(record.ended, undefined);
    again.send('</stream:stream>');
    await sessions.until(() => record.ended);
    assert.deepEqual(record.ended![0]!.map((m) => m.attrs.id), ['e2', 'away', 'e3'], 'the unacknowledged stanzas go to the session');
  });

  test('stream management: an unknown resumption id is item-not-found; the client binds afresh', async () => {
    const user = await server.newAccount('x');
    const client = await connect();
    await client.open();
    await client.scram('SHA-1', user, 'secret');
    await client.restartStream();
    client.send(`<resume xmlns='${NS_SM}' previd='from-another-node' h='0'/>`);
    const failed = await client.next('failed');
    assert.ok(failed.element('item-not-found'), String(failed));
    assert.equal((await client.bind()).attrs.type, 'result');
  });

  test('stream management: a lost session not resumed in time ends with its unacknowledged stanzas', async () => {
    const quick = new XmppListener({
      sessions,
      auth: server.services.auth,
      tls: server.services.tls,
      config: { ...server.config, xmpp: { ...server.config.xmpp, resumeSeconds: 0.2 } },
      isLocalDomain: async () => true,
      log: silentLogger,
      connections: server.services.connections,
    });
    const quickPort = await quick.listen(0, '127.0.0.1');
    try {
      const user = await server.newAccount('x');
      const client = await RawClient.connect(quickPort);
      clients.push(client);
      await client.open();
      await client.scram('SHA-1', user, 'secret');
      await client.restartStream();
      const jid = (await client.bind()).element('bind')!.element('jid')!.text();
      client.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
      await client.next('enabled');
      client.send(`<message to='echo@example.test' id='lost'><body>x</body></message>`);
      await client.next('message');
      client.close();
      const record = await sessions.until(() => sessions.byJid(jid).ended && sessions.byJid(jid));
      assert.deepEqual(record.ended![0]!.map((m) => m.attrs.id), ['lost']);
    } finally {
      await quick.close();
    }
  });

  test('stream management: a client that never acknowledges is ended past the limit, its stanzas handed back', async () => {
    const { client, jid } = await boundClient();
    client.send(`<enable xmlns='${NS_SM}'/>`);
    const enabled = await client.next('enabled');
    assert.equal(enabled.attrs.resume, undefined, 'not asked for: not resumable');
    const record = sessions.byJid(jid);
    for (let i = 0; i <= MAX_UNACKED; i++) record.out.send(el('message', { from: 'a@example.test', to: jid, id: `n${i}` }));
    assert.equal(await client.streamError(), 'resource-constraint');
    await sessions.until(() => record.ended);
    assert.equal(record.ended![0]!.length, MAX_UNACKED + 1);
  });

  test('client state indication: presence held (the latest per sender) and chat states, until active', async () => {
    const { client, jid } = await boundClient();
    const out = sessions.byJid(jid).out;
    client.send(`<inactive xmlns='urn:xmpp:csi:0'/>`);
    client.send(`<iq type='get' id='sync1' to='example.test'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await sessions.until(() => sessions.byJid(jid).received.length === 1);
    out.send(el('presence', { from: 'a@example.test/1', id: 'a1' }));
    out.send(el('message', { from: 'a@example.test/1', id: 'typing' }, el('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    out.send(el('presence', { from: 'b@example.test/1', id: 'b1' }));
    out.send(el('presence', { from: 'a@example.test/1', id: 'a2' }));
    out.send(el('iq', { type: 'result', id: 'passes' }));
    const iq = await client.next('iq');
    assert.equal(iq.attrs.id, 'passes');
    assert.equal(client.elements.filter((e) => e.name === 'presence' || e.name === 'message').length, 0, 'held while inactive');
    client.send(`<active xmlns='urn:xmpp:csi:0'/>`);
    const first = await client.next('message');
    assert.equal(first.attrs.id, 'typing');
    const presences = [await client.next('presence'), await client.next('presence')];
    assert.deepEqual(presences.map((p) => p.attrs.id), ['b1', 'a2']);
    // A real message flushes what is held, before it.
    client.send(`<inactive xmlns='urn:xmpp:csi:0'/>`);
    client.send(`<iq type='get' id='sync2' to='example.test'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await sessions.until(() => sessions.byJid(jid).received.length === 2);
    out.send(el('presence', { from: 'c@example.test/1', id: 'c1' }));
    out.send(el('message', { from: 'c@example.test/1', id: 'hello' }, el('body', {}, 'hi')));
    const [held, message] = [await client.next('presence'), await client.next('message')];
    assert.equal(held.attrs.id, 'c1');
    assert.equal(message.attrs.id, 'hello');
  });

  test('the server stops: system-shutdown', async () => {
    const own = new XmppListener({
      sessions,
      auth: server.services.auth,
      tls: server.services.tls,
      config: server.config,
      isLocalDomain: async () => true,
      log: silentLogger,
      connections: server.services.connections,
    });
    const ownPort = await own.listen(0, '127.0.0.1');
    const client = await RawClient.connect(ownPort);
    clients.push(client);
    await client.open();
    const closing = own.close();
    assert.equal(await client.streamError(), 'system-shutdown');
    await closing;
    assert.equal(own.connections.size, 0);
  });

  test('no authentication within loginSeconds: connection-timeout', async () => {
    const { listener, port: quickPort } = await ownListener({}, { loginSeconds: 0.2 });
    try {
      const client = await RawClient.connect(quickPort);
      clients.push(client);
      await client.open();
      assert.equal(await client.streamError(), 'connection-timeout');
    } finally {
      await listener.close();
    }
  });

  test('a silent bound client is pinged, then closed with connection-timeout; an answered ping keeps it', async () => {
    const { listener, port: pingPort } = await ownListener({ pingSeconds: 0.2 });
    try {
      const user = await server.newAccount('x');
      const client = await RawClient.connect(pingPort);
      clients.push(client);
      await client.open();
      await client.scram('SHA-1', user, 'secret');
      await client.restartStream();
      const jid = (await client.bind()).element('bind')!.element('jid')!.text();
      const ping = await client.next('iq');
      assert.equal(ping.attrs.type, 'get');
      assert.equal(ping.attrs.to, jid);
      assert.equal(ping.element('ping')?.attrs.xmlns, 'urn:xmpp:ping');
      client.send(el('iq', { type: 'result', id: ping.attrs.id, to: 'example.test' }));
      const second = await client.next('iq');
      assert.notEqual(second.attrs.id, ping.attrs.id);
      assert.equal(sessions.byJid(jid).received.length, 0, 'the answer to the ping is the stream\'s');
      assert.equal(await client.streamError(), 'connection-timeout');
    } finally {
      await listener.close();
    }
  });

  test('connections per address: past the limit a new stream is refused (policy-violation); an authenticated one no longer counts', async () => {
    const limiter = new ConnectionLimiter({ connectionsPerAddress: 1, preLoginConnections: 100, abusePerAddress: 0, abuseBlockSeconds: 1 });
    const { listener, port: limitedPort } = await ownListener({}, {}, limiter);
    try {
      const user = await server.newAccount('x');
      const first = await RawClient.connect(limitedPort);
      clients.push(first);
      await first.open();
      const second = await RawClient.connect(limitedPort);
      clients.push(second);
      assert.equal(await second.streamError(), 'policy-violation');
      assert.equal((await first.scram('SHA-1', user, 'secret')).result.name, 'success');
      const third = await RawClient.connect(limitedPort);
      clients.push(third);
      const features = await third.open();
      assert.ok(features.element('mechanisms'));
    } finally {
      await listener.close();
    }
  });

  test('stanza metrics and the connections gauge', async () => {
    const { client } = await boundClient();
    client.send(`<message to='echo@example.test' id='metric'><body>count me</body></message>`);
    await client.next('message');
    const text = await server.services.metrics.text();
    assert.match(text, /ximssd_xmpp_stanzas_total\{direction="in"\} [1-9]/);
    assert.match(text, /ximssd_xmpp_stanzas_total\{direction="out"\} [1-9]/);
    assert.match(text, /ximssd_xmpp_connections\{transport="tcp"\} [1-9]/);
  });

  test('the read throttle pauses past the burst and resumes once the debt is paid', async () => {
    const events: boolean[] = [];
    let resumed: () => void = () => {};
    const resumedOnce = new Promise<void>((resolve) => (resumed = resolve));
    const throttle = new ReadThrottle(1000, 1, {
      throttled: (paused) => {
        events.push(paused);
        if (!paused) resumed();
      },
    });
    throttle.read(900);
    assert.deepEqual(events, [], 'within the burst');
    throttle.read(200);
    assert.deepEqual(events, [true], 'over it: paused');
    throttle.read(500);
    assert.deepEqual(events, [true], 'paused once');
    await resumedOnce;
    assert.deepEqual(events, [true, false]);
    throttle.stop();
  });

  test('slixmpp logs in with STARTTLS and SCRAM, binds and gets its echo', async () => {
    await ensureDebianPackages(['python3-slixmpp'], async () => {
      try {
        await python(['-c', 'import slixmpp']);
        return true;
      } catch {
        return false;
      }
    });
    const user = await server.newAccount('slix');
    const output = await python(['-c', SLIXMPP_LOGIN, user, 'secret', String(port)]);
    assert.match(output, /^MECHANISM SCRAM-SHA-(256|1)$/m, output);
    assert.match(output, new RegExp(`^ECHO echo@example.test ${user}/slix hello from slixmpp$`, 'm'), output);
    const record = sessions.byJid(`${user}/slix`);
    assert.equal(record.received.find((s) => s.name === 'message')?.attrs.from, `${user}/slix`);
    assert.equal(record.out.secure, true, 'over STARTTLS');
  });

  test('SCRAM messages: gs2 headers n and y accepted, channel binding (p=) and mandatory extensions refused', async () => {
    assert.deepEqual(parseClientFirst('n,,n=al=2Cice,r=abc'), { gs2Header: 'n,,', authzid: undefined, user: 'al,ice', clientNonce: 'abc', bare: 'n=al=2Cice,r=abc' });
    assert.equal(parseClientFirst('y,,n=bob,r=xyz').gs2Header, 'y,,');
    assert.equal(parseClientFirst('n,a=bob@example.test,n=bob,r=xyz').authzid, 'bob@example.test');
    for (const bad of ['p=tls-unique,,n=bob,r=x', 'n,,m=ext,n=bob,r=x', 'n,,n=bob', 'x,,n=bob,r=x', 'n,,n=b=2Dob,r=x', 'n,,n=bob,r=a,b']) {
      assert.throws(() => parseClientFirst(bad), (err) => err instanceof ScramError && err.condition === 'malformed-request', bad);
    }
    assert.throws(() => parseClientFinal('c=biws,r=abc'), ScramError);
    assert.equal(parseClientFinal('c=biws,r=abc,p=AAAA').withoutProof, 'c=biws,r=abc');

    // Over the wire: the client asking for channel binding is refused, and a y flag succeeds.
    const user = await server.newAccount('x');
    const client = await connect();
    await client.open();
    client.send(el('auth', { xmlns: NS_SASL, mechanism: 'SCRAM-SHA-1' }, Buffer.from(`p=tls-unique,,n=${user},r=abcdef`).toString('base64')));
    const failure = await client.next('failure');
    assert.ok(failure.element('malformed-request'), String(failure));
  });

  test('the stream parser: namespaces of top-level elements', () => {
    const found: XmlElement[] = [];
    const parser = new XmppStreamParser({
      streamHeader: () => {},
      stanza: (e) => found.push(e),
      streamEnd: () => {},
      limits: { xml: { depth: 8, elements: 100, attributes: 8, attributeChars: 100, textChars: 100, rootChildren: Infinity }, bytes: 1000 },
    });
    parser.write(`<s:stream xmlns:s='${NS_STREAMS}' xmlns='jabber:client'><message/><s:error/><a xmlns='${NS_SM}'/>`);
    assert.deepEqual(found.map((e) => namespaceOf(e, parser.prefix)), ['jabber:client', NS_STREAMS, NS_SM]);
  });

  test('the stream parser: characters split between reads at every byte arrive whole', () => {
    const body = 'é€𝄞 ok';
    const bytes = Buffer.from(`<stream:stream xmlns:stream='${NS_STREAMS}' xmlns='jabber:client'><message><body>${body}</body></message><message><body>${body}</body></message></stream:stream>`);
    for (let cut = 1; cut < bytes.length; cut++) {
      const bodies: string[] = [];
      let ended = false;
      const parser = new XmppStreamParser({
        streamHeader: () => {},
        stanza: (e) => bodies.push(e.element('body')?.text() ?? ''),
        streamEnd: () => (ended = true),
        limits: { xml: { depth: 8, elements: 100, attributes: 8, attributeChars: 100, textChars: 100, rootChildren: Infinity }, bytes: 1000 },
      });
      // Three reads: the cut, and a one-byte read right after it (a lone continuation byte).
      parser.write(bytes.subarray(0, cut));
      parser.write(bytes.subarray(cut, cut + 1));
      parser.write(bytes.subarray(cut + 1));
      assert.deepEqual(bodies, [body, body], `cut at ${cut}`);
      assert.ok(ended, `cut at ${cut}: the end of the stream is read`);
    }
    assert.equal(completeUtf8(Buffer.from([0x61, 0xf0, 0x9d, 0x84])), 1, 'a four-byte character missing its last byte waits');
    assert.equal(completeUtf8(Buffer.from([0x61, 0xf0, 0x9d, 0x84, 0x9e])), 5);
    assert.equal(completeUtf8(Buffer.from([0xc3])), 0);
    assert.equal(completeUtf8(Buffer.from([0x80, 0x80, 0x80, 0x80])), 4, 'stray continuation bytes are passed on (the decoder replaces them)');
  });
});
