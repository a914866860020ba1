/**
 * The SIP registrar (src/transports/sip/registrar.ts) driven directly: REGISTER requests
 * parsed by the message layer from text written here, answered against a real store (SQLite
 * in a temporary directory) with the server's own account, login-guard and Digest services;
 * a clock moved by hand. The phone's Digest answers are computed here from RFC 7616 3.4.1 on
 * their own (not through the server's expectedResponse), so the round trips check the server
 * against a separate client.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EventBus } from '../src/bus/bus.js';
import { defaultConfig } from '../src/config.js';
import { Metrics } from '../src/metrics.js';
import { AccountService } from '../src/services/accounts.js';
import { AuthService } from '../src/services/auth.js';
import { DigestAuthenticator } from '../src/services/digest.js';
import { decideRegistration, type ContactChange, type RegisterChange } from '../src/store/registrations.js';
import type { AccountRecord, Store } from '../src/store/store.js';
import { openStore } from '../src/store/open.js';
import { parseAuthHeader } from '../src/transports/sip/headers.js';
import { parseSipMessage, type SipRequest, type SipResponse } from '../src/transports/sip/message.js';
import { contactKey, contactParamsText, grantedExpires, Registrar, type RegistrarOptions } from '../src/transports/sip/registrar.js';
import type { SipEndpoint } from '../src/transports/sip/transactions.js';
import { parseUri } from '../src/transports/sip/uri.js';
import { capturingLogger } from './helpers.js';

const DOMAIN = 'voice.test';
const NODE = 'node-1';
const T0 = Date.UTC(2026, 11, 7, 9, 0, 0);
const SECRET = Buffer.from('the registrar test secret, 32 b.');
const PHONE: SipEndpoint = { host: '192.0.2.10', port: 5060, transport: 'udp' };

type Hash = 'MD5' | 'SHA-256';

function h(hash: Hash, data: string): string {
  return createHash(hash === 'MD5' ? 'md5' : 'sha256').update(data).digest('hex');
}

/** A phone's Authorization for one WWW-Authenticate value (qop=auth, nc 1, a fresh cnonce). */
function authorization(challenge: string, user: string, password: string, uri: string): string {
  const c = parseAuthHeader(challenge).params;
  const hash = c.get('algorithm') as Hash;
  const realm = c.get('realm')!;
  const nonce = c.get('nonce')!;
  const cnonce = randomBytes(6).toString('hex');
  const ha1 = h(hash, `${user}:${realm}:${password}`);
  const ha2 = h(hash, `REGISTER:${uri}`);
  const response = h(hash, `${ha1}:${nonce}:00000001:${cnonce}:auth:${ha2}`);
  return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=${hash}, qop=auth, nc=00000001, cnonce="${cnonce}", opaque="${c.get('opaque')}"`;
}

interface RequestOptions {
  /** The AoR user (To and From). */
  user?: string;
  domain?: string;
  uri?: string;
  callId?: string;
  cseq?: number;
  contacts?: string[];
  expires?: number;
  headers?: string[];
}

/** A REGISTER as a phone writes it, parsed by the message layer. */
function registerRequest(o: RequestOptions = {}): SipRequest {
  const domain = o.domain ?? DOMAIN;
  const aor = `sip:${o.user ?? 'alice'}@${domain}`;
  const lines = [
    `REGISTER ${o.uri ?? `sip:${domain}`} SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK${randomBytes(5).toString('hex')};rport`,
    'Max-Forwards: 70',
    `From: <${aor}>;tag=${randomBytes(4).toString('hex')}`,
    `To: <${aor}>`,
    `Call-ID: ${o.callId ?? 'reg-call-1@192.0.2.10'}`,
    `CSeq: ${o.cseq ?? 1} REGISTER`,
    ...(o.contacts ?? ['<sip:alice@192.0.2.10:5060>']).map((c) => `Contact: ${c}`),
    ...(o.expires === undefined ? [] : [`Expires: ${o.expires}`]),
    'User-Agent: TestPhone/2.1',
    ...(o.headers ?? []),
    'Content-Length: 0',
    '',
    '',
  ];
  const message = parseSipMessage(Buffer.from(lines.join('\r\n')));
  assert.equal(message.kind, 'request');
  return message;
}

function contactsOf(response: SipResponse): string[] {
  return response.headers.getAll('Contact');
}

describe('SIP registrar', () => {
  let dir: string;
  let store: Store;
  let bus: EventBus;
  let accounts: AccountService;
  let auth: AuthService;
  let alice: AccountRecord;
  let bob: AccountRecord;
  let time = T0;
  const clock = (): number => time;
  const logged = capturingLogger('info');
  const published: number[] = [];
  const metrics = new Metrics({ defaults: false });
  let registrar: Registrar;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ximssd-registrar-'));
    store = await openStore(undefined, dir);
    bus = new EventBus();
    bus.on('sipRegistration', ({ accountId }) => published.push(accountId));
    accounts = new AccountService(store, bus, DOMAIN);
    await accounts.createDomain(DOMAIN);
    await accounts.createDomain('other.test');
    alice = await accounts.create({ address: `alice@${DOMAIN}`, password: 'alice secret' });
    bob = await accounts.create({ address: `bob@${DOMAIN}`, password: 'bob secret' });
    await accounts.setAliases(alice, ['ali']);
    const limits = { ...defaultConfig().limits, loginFailureDelayMs: 0, loginFailuresPerAddress: 4 };
    auth = new AuthService(accounts, store, limits, DOMAIN, { log: logged.log });
    await store.cluster.heartbeat({ id: NODE, httpUrl: 'http://127.0.0.1:8100', aliveUntil: T0 + 1000 * 86_400_000 });
    registrar = newRegistrar({ metrics });
  });
  after(async () => {
    await registrar.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function newRegistrar(options: RegistrarOptions = {}): Registrar {
    const digest = new DigestAuthenticator(SECRET, { now: clock });
    return new Registrar({ store, accounts, auth, digest, bus, node: NODE }, { now: clock, log: logged.log, ...options });
  }

  /** Clears an account's bindings (each test starts from none). */
  async function clear(account: AccountRecord, callId = 'clear'): Promise<void> {
    const response = await authed({ user: account.name, callId, cseq: 1_000_000, contacts: ['*'], expires: 0 }, account.name === 'alice' ? 'alice secret' : 'bob secret');
    assert.equal(response.status, 200);
  }

  /**
   * A REGISTER sent twice, as a phone does: without credentials (a 401 expected), then with
   * the answer to the challenge of `algorithm`, the CSeq one higher.
   */
  async function authed(o: RequestOptions, password = 'alice secret', options: { algorithm?: Hash; user?: string; source?: SipEndpoint; via?: Registrar } = {}): Promise<SipResponse> {
    const r = options.via ?? registrar;
    const source = options.source ?? PHONE;
    const first = await r.register(registerRequest(o), source);
    assert.equal(first.status, 401, first.reason);
    const challenge = first.headers.getAll('WWW-Authenticate').find((v) => v.includes(`algorithm=${options.algorithm ?? 'SHA-256'}`))!;
    const uri = o.uri ?? `sip:${o.domain ?? DOMAIN}`;
    const credentials = authorization(challenge, options.user ?? o.user ?? 'alice', password, uri);
    return r.register(registerRequest({ ...o, cseq: (o.cseq ?? 1) + 1, headers: [...(o.headers ?? []), `Authorization: ${credentials}`] }), source);
  }

  test('without credentials: 401 with a SHA-256 then an MD5 challenge for the domain, a To tag, nothing registered', async () => {
    const response = await registrar.register(registerRequest(), PHONE);
    assert.equal(response.status, 401);
    const challenges = response.headers.getAll('WWW-Authenticate').map((v) => parseAuthHeader(v));
    assert.deepEqual(challenges.map((c) => c.params.get('algorithm')), ['SHA-256', 'MD5']);
    for (const c of challenges) {
      assert.equal(c.scheme, 'Digest');
      assert.equal(c.params.get('realm'), DOMAIN);
      assert.equal(c.params.get('qop'), 'auth');
      assert.equal(c.params.has('stale'), false);
    }
    assert.match(response.headers.get('To')!, /;tag=/);
    assert.equal(response.headers.get('Call-ID'), 'reg-call-1@192.0.2.10');
    assert.deepEqual(await registrar.locate(alice.id), []);
  });

  test('the answer to either challenge registers: 200 lists the contact with its expires, and Date; the bus and the log hear it', async () => {
    for (const algorithm of ['SHA-256', 'MD5'] as const) {
      await clear(alice, `clear-${algorithm}`);
      published.length = 0;
      const response = await authed({ callId: `call-${algorithm}`, contacts: ['<sip:alice@192.0.2.10:5060;transport=udp>'] }, 'alice secret', { algorithm });
      assert.equal(response.status, 200, response.reason);
      assert.deepEqual(contactsOf(response), ['<sip:alice@192.0.2.10:5060;transport=udp>;expires=3600']);
      assert.equal(response.headers.get('Date'), 'Mon, 07 Dec 2026 09:00:00 GMT');
      assert.equal(response.headers.has('Require'), false);
      const [binding] = await registrar.locate(alice.id);
      assert.equal(binding!.contact, 'sip:alice@192.0.2.10:5060;transport=udp');
      assert.equal(binding!.expires, T0 + 3_600_000);
      assert.deepEqual([binding!.transport, binding!.host, binding!.port, binding!.flow, binding!.node], ['udp', '192.0.2.10', 5060, null, NODE]);
      assert.equal(binding!.userAgent, 'TestPhone/2.1');
      assert.deepEqual(published, [alice.id]);
    }
    const registered = logged.events('sip.registered').at(-1)!;
    assert.equal(registered.user, `alice@${DOMAIN}`);
    assert.equal(registered.contact, 'sip:alice@192.0.2.10:5060;transport=udp');
    assert.ok(logged.events('login.ok').some((r) => r.protocol === 'sip' && r.mechanism === 'digest'), 'a login like any other');
  });

  test('a wrong password: 401 with a new challenge, logged; nothing registered; past the address budget, 403 without verification', async () => {
    await clear(alice);
    const source: SipEndpoint = { host: '198.51.100.66', port: 5060 };
    const wrong = await authed({ callId: 'guess' }, 'not the password', { source });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.getAll('WWW-Authenticate').length, 2);
    assert.ok(!wrong.headers.get('WWW-Authenticate')!.includes('stale'));
    assert.deepEqual(await registrar.locate(alice.id), []);
    const failed = logged.events('sip.auth_failed').at(-1)!;
    assert.deepEqual([failed.user, failed.address, failed.reason], ['alice', '198.51.100.66', 'wrong credentials']);
    assert.ok(logged.events('login.failed').some((r) => r.protocol === 'sip' && r.address === '198.51.100.66'));
    // The test's budget is 4 failures per address: three more, then refused.
    for (let i = 0; i < 3; i++) assert.equal((await authed({ callId: `guess${i}` }, `guess ${i}`, { source })).status, 401);
    const refused = await authed({ callId: 'guess-last' }, 'alice secret', { source });
    assert.equal(refused.status, 403);
    assert.match(refused.reason, /too many failed attempts/);
    assert.equal((await authed({ callId: 'elsewhere' }, 'alice secret')).status, 200, 'another address is not blocked');
  });

  test('an answer that proves nothing (a nonce not ours) is challenged again and counts nowhere; a Digest uri not the Request-URI is a 400', async () => {
    await clear(alice);
    const source: SipEndpoint = { host: '198.51.100.77', port: 5060 };
    const first = await registrar.register(registerRequest({ callId: 'forged' }), source);
    const forged = first.headers.getAll('WWW-Authenticate')[0]!.replace(/nonce="[^"]*"/, `nonce="${'A'.repeat(48)}"`);
    // More than the address's budget of failures, had they counted.
    for (let i = 0; i < 6; i++) {
      const response = await registrar.register(registerRequest({ callId: 'forged', cseq: 2 + i, headers: [`Authorization: ${authorization(forged, 'alice', 'alice secret', `sip:${DOMAIN}`)}`] }), source);
      assert.equal(response.status, 401);
    }
    assert.ok(logged.events('sip.auth_failed').some((r) => r.address === '198.51.100.77' && /nonce/.test(String(r.reason))));
    assert.equal((await authed({ callId: 'forged-then-right', cseq: 20 }, 'alice secret', { source })).status, 200, 'the address is not blocked');

    const challenge = first.headers.getAll('WWW-Authenticate')[0]!;
    const elsewhere = await registrar.register(registerRequest({ callId: 'uri', cseq: 2, headers: [`Authorization: ${authorization(challenge, 'alice', 'alice secret', 'sip:other.test')}`] }), source);
    assert.equal(elsewhere.status, 400);
    assert.match(elsewhere.reason, /Digest uri/);
  });

  test('a right answer on an expired nonce: 401 with stale=true; the fresh challenge then registers', async () => {
    await clear(alice);
    const first = await registrar.register(registerRequest({ callId: 'late' }), PHONE);
    const challenge = first.headers.getAll('WWW-Authenticate')[0]!;
    time += 301_000;
    try {
      const late = await registrar.register(registerRequest({ callId: 'late', cseq: 2, headers: [`Authorization: ${authorization(challenge, 'alice', 'alice secret', `sip:${DOMAIN}`)}`] }), PHONE);
      assert.equal(late.status, 401);
      assert.deepEqual(late.headers.getAll('WWW-Authenticate').map((v) => parseAuthHeader(v).params.get('stale')), ['true', 'true']);
      const again = await registrar.register(
        registerRequest({ callId: 'late', cseq: 3, headers: [`Authorization: ${authorization(late.headers.getAll('WWW-Authenticate')[0]!, 'alice', 'alice secret', `sip:${DOMAIN}`)}`] }),
        PHONE,
      );
      assert.equal(again.status, 200);
      // A wrong answer to an expired nonce is not stale (RFC 7616 3.3: only a valid digest is).
      const wrongLate = await registrar.register(registerRequest({ callId: 'late', cseq: 4, headers: [`Authorization: ${authorization(challenge, 'alice', 'wrong', `sip:${DOMAIN}`)}`] }), PHONE);
      assert.equal(wrongLate.status, 401);
      assert.ok(!wrongLate.headers.get('WWW-Authenticate')!.includes('stale'));
    } finally {
      time = T0;
    }
  });

  test('another account\'s credentials: 403; an unknown address-of-record is challenged like a known one, then 403', async () => {
    await clear(alice);
    const asBob = await authed({ callId: 'bob-for-alice' }, 'bob secret', { user: 'bob' });
    assert.equal(asBob.status, 403);
    assert.match(asBob.reason, /only its own address-of-record/);
    assert.deepEqual(await registrar.locate(alice.id), []);
    assert.equal((await registrar.register(registerRequest({ user: 'nobody' }), PHONE)).status, 401);
    assert.equal((await authed({ user: 'nobody', callId: 'nobody' }, 'bob secret', { user: 'bob' })).status, 403);
    // An alias of the account is its address-of-record too; the Digest user is the account's name.
    const alias = await authed({ user: 'ali', callId: 'alias' }, 'alice secret', { user: 'alice' });
    assert.equal(alias.status, 200);
    assert.equal((await registrar.locate(alice.id)).length, 1);
  });

  test('the Request-URI and To must name one of our domains, the same one: 404 otherwise', async () => {
    const foreign = await registrar.register(registerRequest({ uri: 'sip:elsewhere.example', callId: 'foreign' }), PHONE);
    assert.equal(foreign.status, 404);
    const mismatch = await registrar.register(registerRequest({ uri: 'sip:other.test', callId: 'mismatch' }), PHONE);
    assert.equal(mismatch.status, 404);
    assert.match(mismatch.reason, /not in the domain of the Request-URI/);
    // A phone configured with the server's address as its registrar.
    const byAddress = newRegistrar({ serverHosts: ['192.0.2.1'] });
    await clear(alice);
    assert.equal((await authed({ uri: 'sip:192.0.2.1', callId: 'by-address' }, 'alice secret', { via: byAddress })).status, 200);
    assert.equal((await byAddress.register(registerRequest({ uri: 'sip:192.0.2.1', domain: 'elsewhere.example' }), PHONE)).status, 404);
  });

  test('expiry: the contact\'s parameter, else Expires, else 3600; shortened to the maximum; below 60, 423 with Min-Expires', async () => {
    await clear(alice);
    const response = await authed({
      callId: 'expiry',
      expires: 1800,
      contacts: ['<sip:a@192.0.2.10>;expires=120', '<sip:b@192.0.2.10>', '<sip:c@192.0.2.10>;expires=86400'],
    });
    assert.equal(response.status, 200);
    assert.deepEqual(contactsOf(response).sort(), ['<sip:a@192.0.2.10>;expires=120', '<sip:b@192.0.2.10>;expires=1800', '<sip:c@192.0.2.10>;expires=3600']);
    time += 100_500;
    try {
      const query = await authed({ callId: 'expiry', cseq: 5, contacts: [] });
      assert.equal(query.status, 200, 'no Contact: the bindings are listed, nothing changes');
      assert.deepEqual(contactsOf(query).sort(), ['<sip:a@192.0.2.10>;expires=20', '<sip:b@192.0.2.10>;expires=1700', '<sip:c@192.0.2.10>;expires=3500']);
    } finally {
      time = T0;
    }
    const brief = await authed({ callId: 'expiry', cseq: 10, contacts: ['<sip:d@192.0.2.10>;expires=30', '<sip:e@192.0.2.10>'] });
    assert.equal(brief.status, 423);
    assert.equal(brief.headers.get('Min-Expires'), '60');
    assert.equal((await registrar.locate(alice.id)).length, 3, 'nothing changed');
    const removed = await authed({ callId: 'expiry', cseq: 20, contacts: ['<sip:a@192.0.2.10>'], expires: 0 });
    assert.equal(removed.status, 200);
    assert.equal(contactsOf(removed).length, 2);
    assert.ok(logged.events('sip.unregistered').some((r) => r.contact === 'sip:a@192.0.2.10'));
    const defaulted = await authed({ callId: 'expiry', cseq: 30, contacts: ['<sip:f@192.0.2.10>'] });
    assert.ok(contactsOf(defaulted).includes('<sip:f@192.0.2.10>;expires=3600'));

    assert.equal(grantedExpires(undefined, undefined, { minExpires: 60, maxExpires: 600, defaultExpires: 300 }), 300);
    assert.equal(grantedExpires(0, 3600, { minExpires: 60, maxExpires: 600, defaultExpires: 300 }), 0);
    assert.equal(grantedExpires(59, undefined, { minExpires: 60, maxExpires: 600, defaultExpires: 300 }), 'too-brief');
    assert.equal(grantedExpires(undefined, 2 ** 32 - 1, { minExpires: 60, maxExpires: 600, defaultExpires: 300 }), 600);
  });

  test('Contact "*" with Expires 0 removes every binding; with another Expires it is a 400', async () => {
    await clear(alice);
    assert.equal((await authed({ callId: 'star', contacts: ['<sip:a@192.0.2.10>', '<sip:b@192.0.2.11>'] })).status, 200);
    const bad = await authed({ callId: 'star', cseq: 5, contacts: ['*'], expires: 60 });
    assert.equal(bad.status, 400);
    assert.match(bad.reason, /Expires: 0/);
    assert.equal((await registrar.locate(alice.id)).length, 2);
    published.length = 0;
    const all = await authed({ callId: 'star', cseq: 10, contacts: ['*'], expires: 0 });
    assert.equal(all.status, 200);
    assert.deepEqual(contactsOf(all), []);
    assert.deepEqual(await registrar.locate(alice.id), []);
    assert.deepEqual(published, [alice.id]);
  });

  test('an older CSeq of the same Call-ID fails with 500 and changes nothing; a new Call-ID replaces the binding', async () => {
    await clear(alice);
    assert.equal((await authed({ callId: 'order', cseq: 20, contacts: ['<sip:alice@192.0.2.10>;expires=600'] })).status, 200);
    const older = await authed({ callId: 'order', cseq: 5, contacts: ['<sip:alice@192.0.2.10>;expires=120'] });
    assert.equal(older.status, 500);
    assert.match(older.reason, /out of order/);
    assert.equal((await registrar.locate(alice.id))[0]!.expires, T0 + 600_000);
    // The same URI written differently is the same binding (RFC 3261 19.1.4): a host's case, an unknown parameter.
    const rebooted = await authed({ callId: 'order-after-reboot', cseq: 1, contacts: ['<sip:alice@192.0.2.10;x-line=1>;expires=120'] });
    assert.equal(rebooted.status, 200);
    const [binding, ...none] = await registrar.locate(alice.id);
    assert.deepEqual(none, []);
    assert.equal(binding!.callId, 'order-after-reboot');
    assert.equal(binding!.expires, T0 + 120_000);
  });

  test('several contacts: each a binding, located by q then the most recent', async () => {
    await clear(alice);
    const response = await authed({ callId: 'many', contacts: ['<sip:desk@192.0.2.20>;q=0.5', '<sip:mobile@192.0.2.21>;q=1', '<sip:old@192.0.2.22>;q=0.1', '<sip:soft@192.0.2.23>'] });
    assert.equal(response.status, 200);
    assert.ok(contactsOf(response).includes('<sip:desk@192.0.2.20>;q=0.5;expires=3600'));
    assert.deepEqual((await registrar.locate(alice.id)).map((b) => b.contact), ['sip:mobile@192.0.2.21', 'sip:soft@192.0.2.23', 'sip:desk@192.0.2.20', 'sip:old@192.0.2.22']);
  });

  test('the binding limit: 403 past it, saying so; nothing of the request is kept', async () => {
    await clear(bob);
    const small = newRegistrar({ maxBindings: 2 });
    assert.equal((await authed({ user: 'bob', callId: 'lim', contacts: ['<sip:b1@192.0.2.30>'] }, 'bob secret', { via: small })).status, 200);
    const over = await authed({ user: 'bob', callId: 'lim2', contacts: ['<sip:b2@192.0.2.30>', '<sip:b3@192.0.2.30>'] }, 'bob secret', { via: small });
    assert.equal(over.status, 403);
    assert.match(over.reason, /at most 2 per account/);
    assert.deepEqual((await small.locate(bob.id)).map((b) => b.contact), ['sip:b1@192.0.2.30']);
    assert.equal((await authed({ user: 'bob', callId: 'lim3', contacts: ['<sip:b1@192.0.2.31>', '<sip:b2@192.0.2.31>', '<sip:b3@192.0.2.31>'] }, 'bob secret', { via: small })).status, 403);
  });

  test('outbound: instance and reg-id with Supported: outbound get Require: outbound and keep the flow; the same pair from a new flow replaces it', async () => {
    await clear(alice);
    const instance = '"<urn:uuid:6f9a1c2e-0b7d-4e59-9a3c-2d1f0e8b7a64>"';
    const tcp: SipEndpoint = { host: '203.0.113.5', port: 40001, transport: 'tcp', flow: 'flow-a' };
    const first = await authed({ callId: 'ob-1', contacts: [`<sip:alice@10.0.0.5:5060;transport=tcp;ob>;+sip.instance=${instance};reg-id=1`], headers: ['Supported: outbound, path'] }, 'alice secret', { source: tcp });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('Require'), 'outbound');
    assert.deepEqual(contactsOf(first), [`<sip:alice@10.0.0.5:5060;transport=tcp;ob>;+sip.instance=${instance};reg-id=1;expires=3600`]);
    const [binding] = await registrar.locate(alice.id);
    assert.deepEqual([binding!.outbound, binding!.regId, binding!.flow, binding!.host, binding!.port, binding!.transport, binding!.node], [true, 1, 'flow-a', '203.0.113.5', 40001, 'tcp', NODE]);
    assert.equal(binding!.instance, '<urn:uuid:6f9a1c2e-0b7d-4e59-9a3c-2d1f0e8b7a64>');

    // The device reconnected (a new connection, a new address, a new Call-ID): the flow is replaced.
    const moved: SipEndpoint = { host: '203.0.113.9', port: 40100, transport: 'tcp', flow: 'flow-b' };
    const second = await authed({ callId: 'ob-2', contacts: [`<sip:alice@10.0.0.9:5060;transport=tcp;ob>;+sip.instance=${instance};reg-id=1`], headers: ['Supported: outbound'] }, 'alice secret', { source: moved });
    assert.equal(second.status, 200);
    const bindings = await registrar.locate(alice.id);
    assert.equal(bindings.length, 1);
    assert.deepEqual([bindings[0]!.contact, bindings[0]!.flow, bindings[0]!.host], ['sip:alice@10.0.0.9:5060;transport=tcp;ob', 'flow-b', '203.0.113.9']);

    // Another reg-id of the same instance is a second flow.
    assert.equal((await authed({ callId: 'ob-3', contacts: [`<sip:alice@10.0.0.9:5062;transport=tcp;ob>;+sip.instance=${instance};reg-id=2`], headers: ['Supported: outbound'] }, 'alice secret', { source: moved })).status, 200);
    assert.equal((await registrar.locate(alice.id)).length, 2);

    // Without Supported: outbound the reg-id is not ours to act on: no Require, the instance alone is the key.
    await clear(alice);
    const plain = await authed({ callId: 'no-ob', contacts: [`<sip:alice@10.0.0.5>;+sip.instance=${instance};reg-id=1`] }, 'alice secret', { source: tcp });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.has('Require'), false);
    assert.deepEqual([(await registrar.locate(alice.id))[0]!.outbound, (await registrar.locate(alice.id))[0]!.regId], [false, null]);
    const twoRegIds = await authed(
      { callId: 'two-ob', contacts: [`<sip:alice@10.0.0.5>;+sip.instance=${instance};reg-id=1`, `<sip:alice@10.0.0.6>;+sip.instance=${instance};reg-id=2`], headers: ['Supported: outbound'] },
      'alice secret',
      { source: tcp },
    );
    assert.equal(twoRegIds.status, 400);
  });

  test('Path is kept with the binding and echoed to a UA that supports it; an edge proxy without ob keeps the flow itself', async () => {
    await clear(alice);
    const response = await authed({ callId: 'path', contacts: ['<sip:alice@10.0.0.5>;+sip.instance="<urn:uuid:1>";reg-id=1'], headers: ['Supported: path, outbound', 'Path: <sip:edge.voice.test;lr>'] });
    assert.equal(response.status, 200);
    assert.deepEqual(response.headers.getAll('Path'), ['<sip:edge.voice.test;lr>']);
    assert.equal(response.headers.has('Require'), false, 'the edge does not say ob: outbound is not ours');
    assert.deepEqual((await registrar.locate(alice.id))[0]!.path, ['<sip:edge.voice.test;lr>']);
    const withOb = await authed({ callId: 'path2', contacts: ['<sip:alice@10.0.0.5>;+sip.instance="<urn:uuid:1>";reg-id=1'], headers: ['Supported: outbound', 'Path: <sip:edge.voice.test;lr;ob>'] });
    assert.equal(withOb.headers.get('Require'), 'outbound');
    assert.deepEqual(withOb.headers.getAll('Path'), [], 'not echoed without Supported: path');
  });

  test('Require with an extension we lack: 420 naming it', async () => {
    const response = await registrar.register(registerRequest({ headers: ['Require: path, x-teleport'] }), PHONE);
    assert.equal(response.status, 420);
    assert.equal(response.headers.get('Unsupported'), 'x-teleport');
  });

  test('the sweep removes expired bindings, logs them and tells the bus; locate never shows them', async () => {
    await clear(bob);
    assert.equal((await authed({ user: 'bob', callId: 'sweep', contacts: ['<sip:bob@192.0.2.40>;expires=60', '<sip:bob@192.0.2.41>;expires=600'] }, 'bob secret')).status, 200);
    time += 60_000;
    try {
      assert.deepEqual((await registrar.locate(bob.id)).map((b) => b.contact), ['sip:bob@192.0.2.41'], 'expired at once, swept or not');
      published.length = 0;
      assert.ok((await registrar.sweep()) >= 1);
      assert.ok(logged.events('sip.registration_expired').some((r) => r.contact === 'sip:bob@192.0.2.40'));
      assert.ok(published.includes(bob.id));
      assert.equal(await registrar.sweep(), 0);
    } finally {
      time = T0;
    }
    assert.deepEqual((await registrar.locate(bob.id)).map((b) => b.contact), ['sip:bob@192.0.2.41'], 'gone from the store, not only hidden');
  });

  test('removeNode forgets the bindings bound to the flows of a node that stopped, and tells the bus; UDP ones outlive it', async () => {
    await clear(bob);
    const tcp: SipEndpoint = { host: '192.0.2.50', port: 41000, transport: 'tcp', flow: 'conn-7' };
    assert.equal((await authed({ user: 'bob', callId: 'node', contacts: ['<sip:bob@192.0.2.50;transport=tcp>'] }, 'bob secret', { source: tcp })).status, 200);
    assert.equal((await authed({ user: 'bob', callId: 'node-udp', contacts: ['<sip:bob@192.0.2.51>'] }, 'bob secret')).status, 200);
    published.length = 0;
    await registrar.removeNode(NODE);
    assert.deepEqual((await registrar.locate(bob.id)).map((b) => b.contact), ['sip:bob@192.0.2.51']);
    assert.ok(published.includes(bob.id));
    assert.ok(logged.events('sip.node_bindings_removed').some((r) => r.node === NODE));
  });

  test('metrics: REGISTER results counted, live registrations read at scrape', async () => {
    await clear(alice);
    assert.equal((await authed({ callId: 'metrics', contacts: ['<sip:alice@192.0.2.60>'] })).status, 200);
    const text = await metrics.text();
    assert.match(text, /ximssd_sip_register_total\{result="ok"\} \d+/);
    assert.match(text, /ximssd_sip_register_total\{result="challenged"\} \d+/);
    assert.match(text, /ximssd_sip_registrations \d+/);
  });

  test('contact keys compare URIs as RFC 3261 19.1.4 does, as far as one string can', () => {
    const key = (text: string): string => contactKey(parseUri(text));
    assert.equal(key('sip:alice@EXAMPLE.test:5060'), key('sip:alice@example.test:5060'));
    assert.equal(key('sip:%61lice@example.test'), key('sip:alice@example.test'), 'escapes decoded');
    assert.notEqual(key('sip:Alice@example.test'), key('sip:alice@example.test'), 'the user part is case-sensitive');
    assert.notEqual(key('sip:alice@example.test'), key('sip:alice@example.test:5060'), 'a port is not its default');
    assert.notEqual(key('sips:alice@example.test'), key('sip:alice@example.test'));
    assert.notEqual(key('sip:alice@example.test;transport=tcp'), key('sip:alice@example.test'), 'transport counts when only one has it');
    assert.equal(key('sip:alice@example.test;transport=TCP;x=1'), key('sip:alice@example.test;x=2;transport=tcp'), 'other parameters are left out');
    assert.equal(key('tel:+1-201-555-0123'), key('tel:+12015550123'));
    assert.equal(contactParamsText(new Map<string, string | null>([['+sip.instance', '<urn:uuid:1>'], ['expires', '60'], ['reg-id', '1'], ['audio', null]])), ';+sip.instance="<urn:uuid:1>";reg-id=1;audio');
  });
});

describe('decideRegistration (pure: what both store engines apply)', () => {
  const flow = { transport: 'udp', host: '192.0.2.10', port: 5060, flow: null, node: NODE };
  const change = (callId: string, cseq: number, contacts: ContactChange[], removeAll = false): RegisterChange => ({
    accountId: 7,
    callId,
    cseq,
    removeAll,
    contacts,
    source: flow,
    path: [],
    userAgent: '',
  });
  const c = (key: string, expires = 3600): ContactChange => ({ key, contact: `sip:${key}@192.0.2.10`, contactParams: '', instance: null, regId: null, expires, q: null, outbound: false });

  test('a key given twice in one request: the later Contact wins; added, updated and removed are told apart', () => {
    const first = decideRegistration([], change('x', 1, [c('a', 60), c('a', 120), c('b')]), T0, 10);
    assert.equal(first.outcome, 'ok');
    if (first.outcome !== 'ok') return;
    assert.deepEqual(first.added.map((b) => [b.key, b.expires]), [['a', T0 + 120_000], ['b', T0 + 3_600_000]]);
    const second = decideRegistration(first.bindings, change('x', 2, [c('a', 0), c('b', 600), c('new')]), T0 + 1, 10);
    assert.equal(second.outcome, 'ok');
    if (second.outcome !== 'ok') return;
    assert.deepEqual([second.added.map((b) => b.key), second.updated.map((b) => b.key), second.removed.map((b) => b.key)], [['new'], ['b'], ['a']]);
    assert.deepEqual(second.bindings.map((b) => b.key), ['b', 'new'], 'equal q, written at once: by key');
  });

  test('"*" and a Contact are refused alike by an equal CSeq of the same Call-ID, not by another Call-ID', () => {
    const made = decideRegistration([], change('x', 5, [c('a')]), T0, 10);
    if (made.outcome !== 'ok') return assert.fail();
    assert.equal(decideRegistration(made.bindings, change('x', 5, [], true), T0, 10).outcome, 'out-of-order');
    assert.equal(decideRegistration(made.bindings, change('x', 5, [c('a', 0)]), T0, 10).outcome, 'out-of-order');
    assert.equal(decideRegistration(made.bindings, change('y', 1, [], true), T0, 10).outcome, 'ok');
    assert.deepEqual(decideRegistration(made.bindings, change('y', 1, [c('b'), c('c')]), T0, 2), { outcome: 'too-many', limit: 2 });
  });
});
