/**
 * Application passwords (spec 003: passwordModify `name`/`remove`, listSpecPasswords) over
 * real sockets: taken by SMTP AUTH, XMPP SASL PLAIN and SCRAM, DAV Basic, SIP REGISTER with
 * Digest and the XIMSS login of an account without two-factor authentication; refused by the
 * XIMSS login of one with it (whose main password the other protocols then refuse); gone at once when removed, also for
 * another process sharing the store.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { openStore } from '../src/store/open.js';
import { parseAuthHeader } from '../src/transports/sip/headers.js';
import { parseSipMessage } from '../src/transports/sip/message.js';
import { XmlElement } from '../src/xml/element.js';
import { capturingLogger, eventually, fails, freePort, freeSipPort, httpRequest, ok, startTestServer, XimssClient, type TestServer } from './helpers.js';
import { authPlain, SmtpWire } from './fixtures/smtp-wire.js';

const PASSWORD = 'main-password-1';
const x2Complete = (code: string): XmlElement => new XmlElement('x2AuthComplete', {}, [code]);
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';

/** A minimal XMPP client: enough of a stream for STARTTLS and SASL. */
class Xmpp {
  private text = '';
  private constructor(private socket: net.Socket) {
    this.listen(socket);
  }

  static async connect(port: number): Promise<Xmpp> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new Xmpp(socket);
    await client.open();
    return client;
  }

  private listen(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => (this.text += chunk.toString('utf8')));
    socket.on('close', () => (this.closed = true));
  }

  closed = false;

  /** After a SASL success: the stream again, and a resource bound; resolves with the full JID. */
  async bind(): Promise<string> {
    await this.open();
    this.socket.write(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    return (await this.until(/<jid>([^<]+)<\/jid>/))[1]!;
  }

  /** Whether the server ended the stream (its closing tag, or the connection closed). */
  ended(): boolean {
    return this.closed || this.text.includes('</stream:stream>');
  }

  private async until(pattern: RegExp): Promise<RegExpExecArray> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const match = pattern.exec(this.text);
      if (match) {
        this.text = this.text.slice(match.index + match[0].length);
        return match;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; have ${this.text}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async open(): Promise<string> {
    this.socket.write(`<?xml version='1.0'?><stream:stream to='example.test' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`);
    return (await this.until(/<stream:features>([\s\S]*?)<\/stream:features>/))[1]!;
  }

  async starttls(): Promise<string> {
    this.socket.write(`<starttls xmlns='${NS_TLS}'/>`);
    await this.until(/<proceed[^>]*\/>/);
    const plain = this.socket;
    plain.removeAllListeners('data');
    this.socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const secure = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve(secure));
      secure.once('error', reject);
    });
    this.text = '';
    this.listen(this.socket);
    return this.open();
  }

  /** success or failure */
  async plain(user: string, password: string): Promise<string> {
    this.socket.write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
    return (await this.until(/<(success|failure)[\s\S]*?(\/>|<\/\1>)/))[1]!;
  }

  async scram(hash: 'SHA-1' | 'SHA-256', user: string, password: string): Promise<string> {
    const alg = hash === 'SHA-1' ? 'sha1' : 'sha256';
    const nonce = randomBytes(12).toString('base64');
    const bare = `n=${user},r=${nonce}`;
    this.socket.write(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-${hash}'>${Buffer.from(`n,,${bare}`).toString('base64')}</auth>`);
    const challenge = await this.until(/<(challenge|failure)[^>]*>([\s\S]*?)<\/\1>/);
    if (challenge[1] === 'failure') return 'failure';
    const serverFirst = Buffer.from(challenge[2]!, 'base64').toString();
    const fields = Object.fromEntries(serverFirst.split(',').map((f) => [f[0], f.slice(2)]));
    const salted = pbkdf2Sync(password, Buffer.from(fields.s!, 'base64'), Number(fields.i), hash === 'SHA-1' ? 20 : 32, alg);
    const clientKey = createHmac(alg, salted).update('Client Key').digest();
    const storedKey = createHash(alg).update(clientKey).digest();
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${fields.r}`;
    const signature = createHmac(alg, storedKey).update(`${bare},${serverFirst},${withoutProof}`).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!)).toString('base64');
    this.socket.write(`<response xmlns='${NS_SASL}'>${Buffer.from(`${withoutProof},p=${proof}`).toString('base64')}</response>`);
    return (await this.until(/<(success|failure)[\s\S]*?(\/>|<\/\1>)/))[1]!;
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('application passwords', () => {
  let server: TestServer;
  const logged = capturingLogger('info');
  before(async () => {
    // Free ports are picked before the server binds them: another test file may take one in between.
    for (let attempt = 1; ; attempt++) {
      try {
        server = await startTestServer({ ports: { smtp: await freePort(), xmpp: await freePort(), sip: await freeSipPort() }, xmpp: { requireTls: false } }, { log: logged.log });
        break;
      } catch (err) {
        if (attempt >= 3 || !/the port is in use/.test((err as Error).message)) throw err;
      }
    }
  });
  after(async () => {
    await server.stop();
  });

  async function smtpAuth(user: string, password: string): Promise<number> {
    const wire = await SmtpWire.connect(server.ports.smtp!);
    await wire.command('EHLO client.test');
    const reply = await wire.command(authPlain(user, password));
    wire.socket.destroy();
    return reply.code;
  }

  async function davStatus(user: string, password: string): Promise<number> {
    const name = user.split('@')[0]!;
    const reply = await httpRequest(server.ports.http, `/dav/addressbooks/${name}/`, {
      method: 'PROPFIND',
      headers: { Depth: '0', Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
    });
    return reply.status;
  }

  async function xmppPlain(user: string, password: string): Promise<string> {
    const client = await Xmpp.connect(server.ports.xmpp!);
    await client.starttls();
    const result = await client.plain(user, password);
    client.close();
    return result;
  }

  async function xmppScram(hash: 'SHA-1' | 'SHA-256', user: string, password: string): Promise<string> {
    const client = await Xmpp.connect(server.ports.xmpp!);
    const result = await client.scram(hash, user, password);
    client.close();
    return result;
  }

  /** A phone's REGISTER over UDP, challenged, then answered with Digest (MD5, qop=auth): the final status. */
  async function sipRegister(address: string, password: string): Promise<number> {
    const [user, domain] = address.split('@') as [string, string];
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const replies: Buffer[] = [];
    socket.on('message', (data) => replies.push(data));
    const next = async () => {
      const deadline = Date.now() + 10_000;
      while (replies.length === 0) {
        if (Date.now() > deadline) throw new Error('no SIP answer');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const message = parseSipMessage(replies.shift()!);
      assert.equal(message.kind, 'response');
      return message;
    };
    const callId = `${randomBytes(6).toString('hex')}@127.0.0.1`;
    const send = (cseq: number, extra: string[]) => {
      const lines = [
        `REGISTER sip:${domain} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${socket.address().port};branch=z9hG4bK${randomBytes(5).toString('hex')};rport`,
        'Max-Forwards: 70',
        `From: <sip:${address}>;tag=${randomBytes(4).toString('hex')}`,
        `To: <sip:${address}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: <sip:${user}@127.0.0.1:${socket.address().port}>`,
        'Expires: 60',
        ...extra,
        'Content-Length: 0',
        '',
        '',
      ];
      socket.send(lines.join('\r\n'), server.ports.sip!, '127.0.0.1');
    };
    try {
      send(1, []);
      const challenged = await next();
      if (challenged.status !== 401) return challenged.status;
      const challenge = challenged.headers.getAll('WWW-Authenticate').find((c) => /algorithm=MD5\b/i.test(c))!;
      const c = parseAuthHeader(challenge).params;
      const md5 = (data: string) => createHash('md5').update(data).digest('hex');
      const cnonce = randomBytes(6).toString('hex');
      const uri = `sip:${domain}`;
      const ha1 = md5(`${user}:${c.get('realm')}:${password}`);
      const response = md5(`${ha1}:${c.get('nonce')}:00000001:${cnonce}:auth:${md5(`REGISTER:${uri}`)}`);
      send(2, [
        `Authorization: Digest username="${user}", realm="${c.get('realm')}", nonce="${c.get('nonce')}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}", opaque="${c.get('opaque')}"`,
      ]);
      for (;;) {
        const answer = await next();
        if (answer.status >= 200) return answer.status;
      }
    } finally {
      socket.close();
    }
  }

  async function ximssLogin(user: string, password: string): Promise<string | undefined> {
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await client.request(new XmlElement('login', { authData: user, password }));
    client.close();
    return reply.response.attrs.errorText;
  }

  function add(name: string, password: string): XmlElement {
    return new XmlElement('passwordModify', { oldPassword: PASSWORD, name, newPassword: password });
  }

  test('added, listed without the secret, replaced and removed through passwordModify and listSpecPasswords', async () => {
    const address = await server.newAccount('list', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    assert.deepEqual((await ok(client, '<listSpecPasswords/>')).messages, []);
    await fails(client, new XmlElement('passwordModify', { oldPassword: 'wrong', name: 'phone', newPassword: 'phone-pass-1' }), 'incorrect password or account name');
    await fails(client, new XmlElement('passwordModify', { name: 'phone', newPassword: 'phone-pass-1' }), 'the oldPassword attribute is missing');
    await fails(client, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'phone' }), /newPassword attribute/);
    await fails(client, add('phone', 'short'), /at least 8 characters/);
    await fails(client, add('phone', PASSWORD), 'an application password must differ from the account password');
    await ok(client, add('phone', 'phone-pass-1'));
    await ok(client, add('Thunderbird', 'mail-pass-1'));
    const listed = (await ok(client, '<listSpecPasswords/>')).messages;
    assert.deepEqual(listed.map((m) => m.name), ['specPassword', 'specPassword']);
    assert.deepEqual(listed.map((m) => m.attrs.name).sort(), ['Thunderbird', 'phone']);
    for (const m of listed) {
      assert.match(m.attrs.created ?? '', /^\d{8}T\d{6}$/);
      assert.ok(!m.toString().includes('pass-1'), 'never the secret');
    }
    const account = (await server.services.accounts.find(address))!;
    const stored = await server.services.store.appPasswords.list(account.id);
    assert.ok(stored.every((r) => r.hash.startsWith('$scrypt$') && !JSON.stringify(r).includes('pass-1')), 'kept hashed');
    // The main password still changes nothing of them, and vice versa.
    assert.equal(await ximssLogin(address, PASSWORD), undefined);
    await ok(client, add('phone', 'phone-pass-2'));
    assert.equal(await smtpAuth(address, 'phone-pass-1'), 535);
    assert.equal(await smtpAuth(address, 'phone-pass-2'), 235);
    // Removing takes the account password too.
    await fails(client, new XmlElement('passwordModify', { name: 'phone', remove: 'yes' }), 'the oldPassword attribute (the account password) is missing');
    await fails(client, new XmlElement('passwordModify', { oldPassword: 'wrong', name: 'phone', remove: 'yes' }), 'incorrect password or account name');
    await ok(client, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'phone', remove: 'yes' }));
    await fails(client, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'phone', remove: 'yes' }), 'no application password of this name');
    assert.deepEqual((await ok(client, '<listSpecPasswords/>')).messages.map((m) => m.attrs.name), ['Thunderbird']);
  });

  test('taken by SMTP AUTH, XMPP PLAIN and SCRAM, DAV Basic, SIP Digest and XIMSS; the last use is recorded', async () => {
    const address = await server.newAccount('every', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await ok(client, add('clients', 'app-secret-1'));
    assert.equal(await smtpAuth(address, 'app-secret-1'), 235);
    assert.equal(await xmppPlain(address, 'app-secret-1'), 'success');
    assert.equal(await xmppScram('SHA-256', address, 'app-secret-1'), 'success');
    assert.equal(await xmppScram('SHA-1', address, 'app-secret-1'), 'success');
    assert.equal(await xmppScram('SHA-256', address, PASSWORD), 'success', 'the main password too, with the same salt');
    assert.equal(await davStatus(address, 'app-secret-1'), 207);
    assert.equal(await ximssLogin(address, 'app-secret-1'), undefined);
    assert.equal(await sipRegister(address, 'app-secret-1'), 200);
    assert.equal(await sipRegister(address, PASSWORD), 200);
    assert.equal(await sipRegister(address, 'app-secret-2'), 401, 'challenged again');
    // Wrong ones fail everywhere.
    assert.equal(await smtpAuth(address, 'app-secret-2'), 535);
    assert.equal(await xmppScram('SHA-256', address, 'app-secret-2'), 'failure');
    assert.equal(await davStatus(address, 'app-secret-2'), 401);
    const listed = (await ok(client, '<listSpecPasswords/>')).messages;
    assert.match(listed[0]?.attrs.lastUsed ?? '', /^\d{8}T\d{6}$/);
    const used = logged.events('auth.appPassword.used').filter((r) => r.user === address);
    assert.deepEqual([...new Set(used.map((r) => r.protocol))].sort(), ['dav', 'sip', 'smtp', 'ximss', 'xmpp']);
    assert.ok(used.every((r) => r.name === 'clients'));
    assert.equal(logged.events('auth.appPassword.added').filter((r) => r.user === address).length, 1);
    assert.ok(!JSON.stringify(logged.records).includes('app-secret-1'), 'the password is never logged');
  });

  test('with two-factor authentication: refused by the XIMSS login, the only one the main password still opens', async () => {
    const address = await server.newAccount('tfa', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await ok(client, add('phone', 'phone-secret-1'));
    const started = await ok(client, new XmlElement('x2AuthStart', { password: PASSWORD }, ['totp']));
    const secret = started.messages.find((m) => m.name === 'x2auth')!.attrs.secret!;
    const totp = new TOTP({ secret: Secret.fromBase32(secret) });
    await ok(client, new XmlElement('x2AuthComplete', {}, [totp.generate()]));
    assert.equal(await ximssLogin(address, 'phone-secret-1'), 'incorrect password or account name');
    assert.match((await ximssLogin(address, PASSWORD)) ?? '', /requires two-factor authentication/);
    // The other protocols cannot ask for a second factor: application passwords only.
    assert.equal(await smtpAuth(address, PASSWORD), 535);
    assert.equal(await smtpAuth(address, 'phone-secret-1'), 235);
    assert.equal(await xmppScram('SHA-256', address, PASSWORD), 'failure');
    assert.equal(await xmppScram('SHA-256', address, 'phone-secret-1'), 'success');
    assert.equal(await xmppPlain(address, 'phone-secret-1'), 'success');
    assert.equal(await davStatus(address, PASSWORD), 401);
    assert.equal(await davStatus(address, 'phone-secret-1'), 207);
    assert.equal(await sipRegister(address, PASSWORD), 401, 'challenged again: the main password does not register');
    assert.equal(await sipRegister(address, 'phone-secret-1'), 200);
  });

  test('a session opened with an application password manages no credentials', async () => {
    const address = await server.newAccount('appsession', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await ok(client, add('phone', 'phone-secret-1'));
    await ok(client, add('tablet', 'tablet-secret-1'));
    client.close();
    const app = await XimssClient.connect(server.ports.ximss);
    await ok(app, new XmlElement('login', { authData: address, password: 'phone-secret-1' }));
    await ok(app, '<noop/>');
    const refused = /a session opened with an application password cannot/;
    await fails(app, new XmlElement('x2AuthStart', { password: 'phone-secret-1' }, ['totp']), refused);
    await fails(app, new XmlElement('x2AuthStart', { password: PASSWORD }, ['totp']), refused);
    await fails(app, x2Complete('123456'), refused);
    await fails(app, new XmlElement('passwordModify', { oldPassword: PASSWORD, newPassword: 'taken-over-1' }), refused);
    await fails(app, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'tablet', remove: 'yes' }), refused);
    await fails(app, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'mine', newPassword: 'attacker-1' }), refused);
    await fails(app, new XmlElement('passwordModify', { oldPassword: PASSWORD, recoveryEMail: 'attacker@example.test' }), refused);
    app.close();
    const account = (await server.services.accounts.find(address))!;
    assert.equal(await server.services.store.twoFactor.get(account.id), undefined);
    assert.deepEqual((await server.services.store.appPasswords.list(account.id)).map((r) => r.name), ['phone', 'tablet']);
    assert.equal(await ximssLogin(address, PASSWORD), undefined, 'the main password is unchanged');
    assert.equal(logged.events('auth.appPassword.refused_management').filter((r) => r.user === address).length, 7);
  });

  test('revocation reaches what is open: sessions opened with a removed password, a DAV keep-alive connection; a new main password removes them all', async () => {
    const address = await server.newAccount('openrevoke', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await ok(client, add('phone', 'phone-secret-1'));
    await ok(client, add('tablet', 'tablet-secret-1'));
    const open = async (password: string) => {
      const c = await XimssClient.connect(server.ports.ximss);
      await ok(c, new XmlElement('login', { authData: address, password }));
      return c;
    };
    const phone = await open('phone-secret-1');
    const tablet = await open('tablet-secret-1');
    // An XMPP client bound with the tablet's password.
    const xmpp = await Xmpp.connect(server.ports.xmpp!);
    await xmpp.starttls();
    assert.equal(await xmpp.plain(address, 'tablet-secret-1'), 'success');
    assert.match(await xmpp.bind(), /\//);
    // A DAV client on one kept-alive connection, its credentials checked (and cached) once.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const propfind = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: server.ports.http,
            path: `/dav/addressbooks/${address.split('@')[0]}/`,
            method: 'PROPFIND',
            agent,
            headers: { Depth: '0', Authorization: `Basic ${Buffer.from(`${address}:phone-secret-1`).toString('base64')}` },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    try {
      assert.equal(await propfind(), 207);
      await ok(client, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'phone', remove: 'yes' }));
      assert.equal(await propfind(), 401, 'the kept-alive DAV connection no longer takes it');
    } finally {
      agent.destroy();
    }
    await eventually(async () => (await phone.request('<noop/>').then((r) => r.response.attrs.errorText !== undefined, () => true)) || undefined, 'the phone session ended');
    await ok(tablet, '<noop/>', 'a session of another application password goes on');
    await ok(client, '<noop/>', 'the main password session goes on');
    // A new main password: the application passwords go, and their sessions.
    await ok(client, new XmlElement('passwordModify', { oldPassword: PASSWORD, newPassword: 'main-password-2' }));
    const account = (await server.services.accounts.find(address))!;
    assert.deepEqual(await server.services.store.appPasswords.list(account.id), []);
    assert.equal(await smtpAuth(address, 'tablet-secret-1'), 535);
    await eventually(async () => (await tablet.request('<noop/>').then((r) => r.response.attrs.errorText !== undefined, () => true)) || undefined, 'the tablet session ended');
    await eventually(() => xmpp.ended() || undefined, 'the XMPP stream ended');
    xmpp.close();
    await ok(client, '<noop/>', 'the session that changed it goes on');
    phone.close();
    tablet.close();
    client.close();
  });

  test('a password reset removes the application passwords', async () => {
    const address = await server.newAccount('resetapps', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await ok(client, add('phone', 'phone-secret-1'));
    const account = (await server.services.accounts.find(address))!;
    const token = 'reset-token-for-the-test-0123456789';
    await server.services.store.accounts.addPasswordReset(createHash('sha256').update(token).digest('hex'), account.id, Date.now() + 60_000);
    await server.services.passwordRecovery.reset(token, 'main-password-3');
    assert.deepEqual(await server.services.store.appPasswords.list(account.id), []);
    assert.equal(await smtpAuth(address, 'phone-secret-1'), 535);
    await eventually(async () => (await client.request('<noop/>').then((r) => r.response.attrs.errorText !== undefined, () => true)) || undefined, 'the sessions ended');
    client.close();
  });

  test('a removed password stops working at once, also when another process removes it', async () => {
    const address = await server.newAccount('revoke', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await ok(client, add('dav', 'dav-secret-1'));
    await ok(client, add('mail', 'mail-secret-1'));
    // Verified (and remembered as verified) before the removal.
    assert.equal(await davStatus(address, 'dav-secret-1'), 207);
    assert.equal(await smtpAuth(address, 'mail-secret-1'), 235);
    await ok(client, new XmlElement('passwordModify', { oldPassword: PASSWORD, name: 'dav', remove: 'yes' }));
    assert.equal(await davStatus(address, 'dav-secret-1'), 401);
    // Another process on the same store (as a second node would) removes the other one.
    const other = await openStore(server.config.store || undefined, server.config.dataDir);
    try {
      const account = (await server.services.accounts.find(address))!;
      assert.equal(await other.appPasswords.remove(account.id, 'mail'), true);
    } finally {
      await other.close();
    }
    assert.equal(await smtpAuth(address, 'mail-secret-1'), 535);
    assert.equal(await xmppPlain(address, 'mail-secret-1'), 'failure');
    assert.equal(await smtpAuth(address, PASSWORD), 235);
  });
});
