/**
 * Two-factor login (spec 003: login x2auth, x2AuthStart, x2AuthComplete): TOTP enrolment
 * with an otpauth:// URI, the second-factor session state over TCP and HTTP, one-use codes
 * (also across the store: the step is taken there), recovery codes, turning it off, and
 * the clients that cannot do it. Codes are made here with the same library the server uses,
 * for the current time step and its neighbours (the server takes one step either way).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { fileURLToPath } from 'node:url';
import { capturingLogger, eventually, exampleRequest, fails, hmacMd5Hex, httpRequest, ok, startTestServer, XimssClient, type TestServer } from './helpers.js';

const EXAMPLE = fileURLToPath(new URL('../../shared/spec/examples/046-login.txt', import.meta.url));

const PASSWORD = 'pass-word-1';
const SECOND_FACTOR_REQUIRED = 'two-factor authentication is not complete: use x2AuthStart and x2AuthComplete';
const UNSUPPORTED = /requires two-factor authentication/;

/** The code of `secret` for now plus `offsetSteps` time steps. */
function code(secret: string, offsetSteps = 0): string {
  return new TOTP({ secret: Secret.fromBase32(secret), period: 30, digits: 6, algorithm: 'SHA1' }).generate({ timestamp: Date.now() + offsetSteps * 30_000 });
}

/** A code that is wrong whenever it is checked: none of the steps the server takes now (±1), with a step to spare either way. */
function wrongCode(secret: string): string {
  const near = new Set([-2, -1, 0, 1, 2].map((o) => code(secret, o)));
  for (let n = 0; ; n++) {
    const candidate = String((n * 271_829) % 1_000_000).padStart(6, '0');
    if (!near.has(candidate)) return candidate;
  }
}

function x2(name: string, body: string): XmlElement {
  return new XmlElement(name, {}, [body]);
}

interface Enrolled {
  address: string;
  secret: string;
  recovery: string[];
}

describe('two-factor login', () => {
  let server: TestServer;
  const logged = capturingLogger('info');
  before(async () => {
    server = await startTestServer({}, { log: logged.log });
  });
  after(async () => {
    await server.stop();
  });

  /** A new account with TOTP on (confirmed with the previous step's code, so that the current one still logs in). */
  async function enrolled(): Promise<Enrolled> {
    const address = await server.newAccount('tf', { password: PASSWORD, realName: 'Real Name Of The Owner' });
    const { client } = await server.login(address, PASSWORD);
    const started = await ok(client, new XmlElement('x2AuthStart', { password: PASSWORD }, ['totp']));
    const message = started.messages.find((m) => m.name === 'x2auth');
    assert.ok(message?.attrs.secret && message.attrs.uri, 'x2auth carries the secret and its URI');
    const done = await ok(client, x2('x2AuthComplete', code(message.attrs.secret, -1)));
    const completed = done.messages.find((m) => m.name === 'x2AuthCompleted');
    const recovery = completed?.elements().filter((e) => e.name === 'recoveryCode').map((e) => e.text()) ?? [];
    client.close();
    return { address, secret: message.attrs.secret, recovery };
  }

  async function passwordStep(address: string): Promise<{ client: XimssClient; session: XmlElement }> {
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await ok(client, new XmlElement('login', { authData: address, password: PASSWORD, x2auth: '1' }));
    const session = reply.messages.find((m) => m.name === 'session');
    assert.ok(session);
    return { client, session };
  }

  test('enrolment: a secret with an otpauth URI, confirmed by a code, ten recovery codes shown once; the secret is kept sealed', async () => {
    const address = await server.newAccount('enrol', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    await fails(client, x2('x2AuthComplete', '123456'), /x2AuthStart first/);
    await fails(client, x2('x2AuthStart', 'off'), 'two-factor authentication is off');
    await fails(client, x2('x2AuthStart', 'totp'), 'the password attribute (the current password of the account) is missing');
    await fails(client, new XmlElement('x2AuthStart', { password: 'wrong-password' }, ['totp']), 'incorrect password or account name');
    const started = await ok(client, new XmlElement('x2AuthStart', { password: PASSWORD }, ['totp']));
    const message = started.messages.find((m) => m.name === 'x2auth')!;
    const { secret, uri } = message.attrs;
    assert.equal(message.attrs.user, '1');
    assert.match(secret!, /^[A-Z2-7]{32}$/);
    const parsed = new URL(uri!);
    assert.equal(parsed.protocol, 'otpauth:');
    assert.equal(parsed.host, 'totp');
    assert.equal(decodeURIComponent(parsed.pathname), `/example.test:${address}`);
    assert.equal(parsed.searchParams.get('secret'), secret);
    assert.equal(parsed.searchParams.get('issuer'), 'example.test');
    // A wrong code does not turn it on.
    await fails(client, x2('x2AuthComplete', wrongCode(secret!)), /incorrect one-time code/);
    const account = (await server.services.accounts.find(address))!;
    assert.equal(await server.services.store.twoFactor.get(account.id), undefined);
    const done = await ok(client, x2('x2AuthComplete', code(secret!)));
    const codes = done.messages.find((m) => m.name === 'x2AuthCompleted')!.elements().map((e) => e.text());
    assert.equal(codes.length, 10);
    for (const c of codes) assert.match(c, /^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$/);
    assert.equal(new Set(codes).size, 10);
    const stored = await server.services.store.twoFactor.get(account.id);
    assert.ok(stored);
    assert.ok(!stored.secret.includes(secret!), 'the secret is not in the store in clear');
    assert.equal(await server.services.store.twoFactor.recoveryCodesLeft(account.id), 10);
    await fails(client, x2('x2AuthStart', 'totp'), /on already/);
    // This session goes on: it logged in before.
    await ok(client, '<noop/>');
  });

  test('over TCP: the session waits for the second factor; only x2AuthStart, x2AuthComplete and bye work until then', async () => {
    const { address, secret } = await enrolled();
    const { client, session } = await passwordStep(address);
    assert.ok(session.attrs.urlID);
    const dictionary = session.elements().find((e) => e.name === 'x2auth');
    assert.ok(dictionary, 'the session message carries the x2auth dictionary');
    const methods = dictionary.elements().map((e) => e.attrs.key);
    assert.deepEqual(methods, ['totp', 'recovery']);
    await fails(client, '<noop/>', SECOND_FACTOR_REQUIRED);
    await fails(client, '<folderOpen folder="INBOX" mailbox="INBOX"/>', SECOND_FACTOR_REQUIRED);
    await fails(client, '<passwordModify oldPassword="pass-word-1" newPassword="other-one"/>', SECOND_FACTOR_REQUIRED);
    await fails(client, x2('x2AuthComplete', code(secret)), /x2AuthStart first/);
    await fails(client, x2('x2AuthStart', 'sms'), /unknown two-factor method/);
    const started = await ok(client, x2('x2AuthStart', 'totp'));
    assert.equal(started.messages.find((m) => m.name === 'x2auth')?.attrs.user, '1');
    const current = code(secret);
    await fails(client, x2('x2AuthComplete', wrongCode(secret)), 'incorrect or already used one-time code');
    await fails(client, '<noop/>', SECOND_FACTOR_REQUIRED);
    await ok(client, x2('x2AuthComplete', current));
    await ok(client, '<noop/>');
    await ok(client, '<folderOpen folder="INBOX" mailbox="INBOX"/>');
    client.close();

    // The same code again (another login): refused, however right it is.
    const again = await passwordStep(address);
    await ok(again.client, x2('x2AuthStart', 'totp'));
    await fails(again.client, x2('x2AuthComplete', current), 'incorrect or already used one-time code');
    // The next step's code (one step of clock drift) is taken.
    await ok(again.client, x2('x2AuthComplete', code(secret, 1)));
    await ok(again.client, '<noop/>');
    again.client.close();
    const mine = (event: string) => logged.events(event).filter((r) => r.user === address);
    assert.equal(mine('auth.x2auth.enabled').length, 1);
    assert.equal(mine('auth.x2auth.pending').length, 2);
    assert.equal(mine('auth.x2auth.failed').length, 2, 'the wrong code and the replayed one');
    assert.equal(mine('auth.x2auth.replayed').length, 1);
    assert.equal(mine('auth.x2auth.ok').length, 2);
    assert.equal(mine('auth.x2auth.completed').length, 2);
    // Each login is recorded once, when its second factor is right (the enrolling login's too).
    assert.equal(mine('login.ok').filter((r) => r.mechanism !== 'current-password').length, 3);
    assert.equal(mine('auth.x2auth.password_ok').length, 2);
    // Neither the secret nor a code (as a JSON string value) is logged.
    const text = JSON.stringify(logged.records);
    assert.ok(!text.includes(secret) && !text.includes(`"${current}"`), 'neither the secret nor a code is logged');
  });

  test('a stale enrolment does not replace the second factor turned on meanwhile; enrolment takes the current password', async () => {
    const address = await server.newAccount('race', { password: PASSWORD });
    const a = await server.login(address, PASSWORD);
    const b = await server.login(address, PASSWORD);
    const start = async (client: XimssClient) =>
      (await ok(client, new XmlElement('x2AuthStart', { password: PASSWORD }, ['totp']))).messages.find((m) => m.name === 'x2auth')!.attrs.secret!;
    const secretA = await start(a.client);
    const secretB = await start(b.client);
    await ok(b.client, x2('x2AuthComplete', code(secretB, -1)));
    const account = (await server.services.accounts.find(address))!;
    const stored = await server.services.store.twoFactor.get(account.id);
    // Turning it on ends the account's other sessions (opened without a second factor).
    await eventually(async () => (await a.client.request('<noop/>').then((r) => r.response.attrs.errorText !== undefined, () => true)) || undefined, 'the other session ended');
    // A completes later: refused, or its session is gone; nothing replaced.
    const late = await a.client.request(x2('x2AuthComplete', code(secretA, -1))).catch(() => undefined);
    assert.notEqual(late?.response.attrs.errorText ?? 'ended', undefined, 'the stale enrolment is not taken');
    assert.deepEqual(await server.services.store.twoFactor.get(account.id), stored);
    // The owner's factor still logs in.
    const { client } = await passwordStep(address);
    await ok(client, x2('x2AuthStart', 'totp'));
    await ok(client, x2('x2AuthComplete', code(secretB, 1)));
    client.close();
    a.client.close();
    b.client.close();
  });

  test('the password step records no login: prevLogin and the log change only once the second factor is right', async () => {
    const { address, recovery } = await enrolled();
    const account = async () => (await server.services.accounts.find(address))!;
    const before = (await account()).prevLogin;
    const { client } = await passwordStep(address);
    assert.deepEqual((await account()).prevLogin, before, 'the password step is not recorded');
    const okBefore = logged.events('login.ok').filter((r) => r.user === address).length;
    await ok(client, x2('x2AuthStart', 'recovery'));
    await ok(client, x2('x2AuthComplete', recovery[0]!));
    assert.notDeepEqual((await account()).prevLogin, before, 'the completed login is recorded');
    assert.equal(logged.events('login.ok').filter((r) => r.user === address).length, okBefore + 1);
    client.close();
  });

  test('example 046: the login with x2auth="1" is answered as the spec shows, a session message carrying the x2auth dictionary of methods', async () => {
    const { address } = await enrolled();
    const { request } = exampleRequest(EXAMPLE);
    const login = parseXml(request);
    assert.equal(login.attrs.x2auth, '1');
    // The example's account is the spec's; ours logs in the same way.
    login.attrs.authData = address;
    login.attrs.password = PASSWORD;
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await client.request(login);
    assert.equal(reply.response.toString(), '<response id="A001"/>');
    assert.deepEqual(reply.messages.map((m) => m.name), ['session']);
    const session = reply.messages[0]!;
    assert.equal(session.attrs.id, 'A001');
    assert.match(session.attrs.urlID ?? '', /^\d+-[A-Za-z0-9]{20}$/);
    assert.equal(session.attrs.userName, address);
    assert.ok(session.attrs.version);
    // Nothing of the account (its real name) before the second factor.
    assert.equal(session.attrs.realName, undefined);
    const [dictionary, ...rest] = session.elements();
    assert.equal(rest.length, 0);
    assert.equal(dictionary?.name, 'x2auth');
    // One subKey per method, each a dictionary of the example's parameters (humanName, humanTag).
    for (const method of dictionary.elements()) {
      assert.equal(method.name, 'subKey');
      const parameters = method.elements();
      assert.ok(parameters.length > 0);
      for (const p of parameters) {
        assert.equal(p.name, 'subKey');
        assert.ok(['humanName', 'humanTag', 'icon', 'address'].includes(p.attrs.key ?? ''), p.toString());
        assert.ok(p.text().length > 0);
      }
    }
    client.close();
  });

  test('a wrong password still fails as before; a client without x2auth gets a clear error and no session', async () => {
    const { address } = await enrolled();
    const client = await XimssClient.connect(server.ports.ximss);
    await fails(client, new XmlElement('login', { authData: address, password: 'wrong-one', x2auth: '1' }), 'incorrect password or account name');
    await fails(client, new XmlElement('login', { authData: address, password: PASSWORD }), UNSUPPORTED);
    await fails(client, '<noop/>', 'this operation requires login');
    // SASL PLAIN keeps the login's x2auth for its auth step.
    const plain = Buffer.from(`\0${address}\0${PASSWORD}`).toString('base64');
    const reply = await ok(client, new XmlElement('login', { method: 'PLAIN', authData: plain, x2auth: '1' }));
    assert.ok(reply.messages.find((m) => m.name === 'session')?.elements().some((e) => e.name === 'x2auth'));
    client.close();
    // So does CRAM-MD5; without x2auth its auth step is refused the same way.
    for (const x2auth of ['1', undefined]) {
      const cram = await XimssClient.connect(server.ports.ximss);
      const id = cram.newId();
      cram.sendRaw(new XmlElement('login', { id, method: 'CRAM-MD5', ...(x2auth ? { x2auth } : {}) }).toString());
      const challenge = await cram.until(() => cram.received.find((m) => m.name === 'challenge'));
      const answer = Buffer.from(`${address} ${hmacMd5Hex(PASSWORD, Buffer.from(challenge.attrs.value!, 'base64').toString())}`).toString('base64');
      const done = await cram.request(new XmlElement('auth', { id, value: answer }));
      if (x2auth) {
        assert.equal(done.response.attrs.errorText, undefined);
        assert.ok(done.messages.find((m) => m.name === 'session')?.elements().some((e) => e.name === 'x2auth'));
        await fails(cram, '<noop/>', SECOND_FACTOR_REQUIRED);
      } else {
        assert.match(done.response.attrs.errorText ?? '', UNSUPPORTED);
      }
      cram.close();
    }
  });

  test('recovery codes: each logs in once', async () => {
    const { address, recovery } = await enrolled();
    const [first] = recovery;
    const one = await passwordStep(address);
    await ok(one.client, x2('x2AuthStart', 'recovery'));
    // As typed: small letters and without dashes are the same code.
    await ok(one.client, x2('x2AuthComplete', first!.replace(/-/g, '').toLowerCase()));
    await ok(one.client, '<noop/>');
    const two = await passwordStep(address);
    await ok(two.client, x2('x2AuthStart', 'recovery'));
    await fails(two.client, x2('x2AuthComplete', first!), 'incorrect or already used recovery code');
    // A TOTP code is no recovery code.
    one.client.close();
    two.client.close();
    const account = (await server.services.accounts.find(address))!;
    assert.equal(await server.services.store.twoFactor.recoveryCodesLeft(account.id), 9);
  });

  test('over HTTP: /XIMSSLogin/ with x2auth=1 gives a waiting session; its requests and resources wait for the code', async () => {
    const { address, secret } = await enrolled();
    const port = server.ports.http;
    const query = (extra: string) => `/XIMSSLogin/?userName=${encodeURIComponent(address)}&password=${PASSWORD}&errorAsXML=1${extra}`;
    // The owner's session, which a password alone (killOld before the second factor) must not end.
    const owner = await passwordStep(address);
    await ok(owner.client, x2('x2AuthStart', 'totp'));
    await ok(owner.client, x2('x2AuthComplete', code(secret)));
    const refused = parseXml((await httpRequest(port, query(''))).text);
    assert.match(refused.elements()[0]?.attrs.errorText ?? '', UNSUPPORTED);
    const login = await httpRequest(port, query('&x2auth=1&killOld=1'));
    assert.equal(login.status, 200);
    const session = parseXml(login.text).elements()[0]!;
    assert.equal(session.name, 'session');
    assert.ok(session.elements().some((e) => e.name === 'x2auth'));
    const urlID = session.attrs.urlID!;
    const sync = async (body: string): Promise<XmlElement[]> => {
      const reply = await httpRequest(port, `/Session/${urlID}/sync`, { body: `<XIMSS>${body}</XIMSS>`, headers: { 'Content-Type': 'text/xml' } });
      assert.equal(reply.status, 200, reply.text);
      return parseXml(reply.text).elements();
    };
    const blocked = await sync('<noop id="1"/>');
    assert.equal(blocked[0]?.attrs.errorText, SECOND_FACTOR_REQUIRED);
    const mime = await httpRequest(port, `/Session/${urlID}/MIME/INBOX/1/`);
    assert.equal(mime.status, 403);
    await ok(owner.client, '<noop/>', 'the password step with killOld ends nothing yet');
    const done = await sync(`<x2AuthStart id="2">totp</x2AuthStart><x2AuthComplete id="3">${code(secret, 1)}</x2AuthComplete><noop id="4"/>`);
    assert.deepEqual(
      done.map((e) => [e.name, e.attrs.id, e.attrs.errorText]),
      [
        ['x2auth', '2', undefined],
        ['response', '2', undefined],
        ['response', '3', undefined],
        ['response', '4', undefined],
      ],
    );
    // killOld=1 waited for the second factor, and has ended the owner's TCP session now.
    await eventually(async () => (await owner.client.request('<noop/>').then((r) => r.response.attrs.errorText !== undefined, () => true)) || undefined, 'killOld done at completion');
    await httpRequest(port, `/Session/${urlID}/KILL`);
    owner.client.close();
  });

  test('over HTTP: a password with the sessionid of a complete session gets a new waiting session, not that one', async () => {
    const { address, recovery } = await enrolled();
    const port = server.ports.http;
    const query = (extra: string) => `/XIMSSLogin/?userName=${encodeURIComponent(address)}&password=${PASSWORD}&errorAsXML=1&x2auth=1${extra}`;
    const sync = async (urlID: string, body: string): Promise<XmlElement[]> => {
      const reply = await httpRequest(port, `/Session/${urlID}/sync`, { body: `<XIMSS>${body}</XIMSS>`, headers: { 'Content-Type': 'text/xml' } });
      assert.equal(reply.status, 200, reply.text);
      return parseXml(reply.text).elements();
    };
    // The owner's HTTP session, complete (a recovery code: no time step taken).
    const owner = parseXml((await httpRequest(port, query(''))).text).elements()[0]!;
    const urlID = owner.attrs.urlID!;
    const done = await sync(urlID, `<x2AuthStart id="1">recovery</x2AuthStart><x2AuthComplete id="2">${recovery[0]}</x2AuthComplete>`);
    assert.ok(done.every((e) => e.attrs.errorText === undefined), JSON.stringify(done.map(String)));
    // The password alone, naming the owner's session: a new session, waiting for the code.
    const other = parseXml((await httpRequest(port, query(`&sessionid=${urlID}`))).text).elements()[0]!;
    assert.equal(other.name, 'session');
    assert.notEqual(other.attrs.urlID, urlID);
    assert.ok(other.elements().some((e) => e.name === 'x2auth'), 'the new session waits for the second factor');
    // The owner's session keeps working, from the owner's address (its guards were not moved).
    const still = await sync(urlID, '<noop id="3"/>');
    assert.equal(still[0]?.attrs.errorText, undefined);
    // A waiting session named by a login that also waits is reused (a client retrying its login).
    const again = parseXml((await httpRequest(port, query(`&sessionid=${other.attrs.urlID}`))).text).elements()[0]!;
    assert.equal(again.attrs.urlID, other.attrs.urlID);
    await httpRequest(port, `/Session/${other.attrs.urlID}/KILL`);
    await httpRequest(port, `/Session/${urlID}/KILL`);
  });

  test('turning it off takes a code; then logins need no second factor', async () => {
    const { address, secret, recovery } = await enrolled();
    const { client } = await passwordStep(address);
    await ok(client, x2('x2AuthStart', 'totp'));
    await ok(client, x2('x2AuthComplete', code(secret)));
    const started = await ok(client, x2('x2AuthStart', 'off'));
    assert.equal(started.messages.find((m) => m.name === 'x2auth')?.attrs.user, '1');
    await fails(client, x2('x2AuthComplete', recovery[0]!.replace(/[A-Z]/g, 'A').replace(/[2-7]/g, '2')), 'incorrect or already used recovery code');
    await ok(client, x2('x2AuthComplete', recovery[1]!));
    client.close();
    const account = (await server.services.accounts.find(address))!;
    assert.equal(await server.services.store.twoFactor.get(account.id), undefined);
    const plain = await XimssClient.connect(server.ports.ximss);
    const reply = await ok(plain, new XmlElement('login', { authData: address, password: PASSWORD }));
    assert.ok(!reply.messages.find((m) => m.name === 'session')?.elements().some((e) => e.name === 'x2auth'));
    await ok(plain, '<noop/>');
    plain.close();
  });
});

describe('two-factor login: the waiting session has an absolute deadline', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ limits: { loginSeconds: 2 } });
  });
  after(async () => {
    await server.stop();
  });

  test('requests (even refused ones) do not keep a waiting session alive past limits.loginSeconds', async () => {
    const address = await server.newAccount('deadline', { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    const secret = (await ok(client, new XmlElement('x2AuthStart', { password: PASSWORD }, ['totp']))).messages.find((m) => m.name === 'x2auth')!.attrs.secret!;
    await ok(client, x2('x2AuthComplete', code(secret, -1)));
    client.close();
    const waiting = await XimssClient.connect(server.ports.ximss);
    await ok(waiting, new XmlElement('login', { authData: address, password: PASSWORD, x2auth: '1' }));
    const accountId = (await server.services.accounts.find(address))!.id;
    // The client keeps asking (each request touches the session) until the server ends it.
    await eventually(
      async () => {
        if (!waiting.closed) await waiting.request('<noop/>').catch(() => undefined);
        return server.services.sessions.forAccount(accountId).length === 0 || undefined;
      },
      'the waiting session ended at its deadline',
      20_000,
    );
    waiting.close();
  });
});
