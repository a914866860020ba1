/**
 * Login attempts under attack, over real sockets: attempts are reserved before they are
 * verified (parallel bursts cannot slip past the per-address budget), one budget for every
 * protocol (XIMSS over TCP, /XIMSSLogin/, SMTP AUTH, passwordModify), per-account budgets
 * shared by aliases, the owner never locked out by someone else's failures, unknown names
 * verified like known ones. Client addresses: any of 127.0.0.0/8 (the client socket is bound
 * to it) plays another client; each test has addresses of its own, on one server.
 *
 * Nothing here measures time: what was verified is counted by an observable password
 * verifier, and what the guard decided (straight through, or which account slot an attempt
 * waited for) is reported by its observer. The guard and the fair limiter are also driven
 * directly with a fake clock.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BAD_CREDENTIALS, TOO_MANY_ATTEMPTS } from '../src/services/errors.js';
import { FairLimiter } from '../src/services/fair-limiter.js';
import { addressKey } from '../src/services/client-address.js';
import { LoginGuard, type GuardEvent, type GuardLimits } from '../src/services/login-guard.js';
import { passwordVerifier, type PasswordVerifier } from '../src/services/passwords.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { authPlain, SmtpWire } from './fixtures/smtp-wire.js';
import { eventually, freePort, hmacMd5Hex, startTestServer, XimssClient, type Reply, type TestServer } from './helpers.js';

const PER_ADDRESS = 20;
const PER_ACCOUNT = 10;
const SLOWDOWN_MS = 100;
const DOMAIN = 'example.test';

/** Counts (and on demand holds) the password checks the server makes. */
class ObservedVerifier implements PasswordVerifier {
  readonly passwords: { password: string; stored: string }[] = [];
  readonly digests: { context: string; challenge: string }[] = [];
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  /** From now on, password checks wait until `release`. */
  hold(): void {
    let open = (): void => {};
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open };
  }

  release(): void {
    this.gate?.open();
    this.gate = undefined;
  }

  async verifyPassword(password: string, stored: string): Promise<boolean> {
    this.passwords.push({ password, stored });
    const gate = this.gate;
    if (gate) await gate.promise;
    return passwordVerifier.verifyPassword(password, stored);
  }

  verifyDigest(context: string, challenge: string, digest: string): boolean {
    this.digests.push({ context, challenge });
    return passwordVerifier.verifyDigest(context, challenge, digest);
  }

  /** Password checks made with a password starting with `prefix`. */
  verified(prefix: string): number {
    return this.passwords.filter((p) => p.password.startsWith(prefix)).length;
  }
}

const verifier = new ObservedVerifier();
const events: GuardEvent[] = [];
let server: TestServer;

before(async () => {
  server = await startTestServer(
    {
      ports: { smtp: await freePort() },
      limits: {
        loginFailuresPerAddress: PER_ADDRESS,
        loginFailuresPerAccount: PER_ACCOUNT,
        accountSlowdownMs: SLOWDOWN_MS,
        // Hundreds of connections from one address are the point here.
        connectionsPerAddress: 1000,
      },
    },
    { auth: { verifier, observe: (event) => events.push(event) } },
  );
});

after(() => server.stop());

// ---------------------------------------------------------------------------------------
// Clients bound to a chosen loopback address

function ximssFrom(localAddress: string): Promise<XimssClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: server.ports.ximss, host: '127.0.0.1', localAddress }, () => resolve(XimssClient.fromSocket(socket)));
    socket.once('error', reject);
  });
}

function ximssClients(count: number, localAddress: string): Promise<XimssClient[]> {
  return Promise.all(Array.from({ length: count }, () => ximssFrom(localAddress)));
}

function closeAll(clients: readonly XimssClient[]): void {
  for (const c of clients) c.close();
}

/** A clear-text login: the request is written before this returns. */
function login(client: XimssClient, userName: string, password: string): Promise<Reply> {
  return client.request(new XmlElement('login', { authData: userName, password }), 30_000);
}

/** 'session', or the errorText. */
function outcome(reply: Reply): string {
  if (reply.messages.some((m) => m.name === 'session')) return 'session';
  return reply.response.attrs.errorText ?? '(no errorText)';
}

async function cramMd5(client: XimssClient, userName: string, password: string): Promise<string> {
  const id = client.newId();
  client.sendRaw(`<login id="${id}" method="CRAM-MD5"/>`);
  const challenge = Buffer.from((await client.nextAsync('challenge')).attrs.value ?? '', 'base64').toString('utf8');
  const answer = Buffer.from(`${userName} ${hmacMd5Hex(password, challenge)}`).toString('base64');
  return outcome(await client.request(new XmlElement('auth', { id, value: answer })));
}

function httpRequest(localAddress: string, path: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: server.ports.http, path, localAddress, agent: false, method: body === undefined ? 'GET' : 'POST' },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** 'session', or the errorText of /XIMSSLogin/ (errorAsXML). */
function httpOutcome(text: string): string {
  const root = parseXml(text);
  if (root.element('session')) return 'session';
  return root.element('response')?.attrs.errorText ?? text;
}

async function httpLogin(localAddress: string, userName: string, password: string): Promise<string> {
  const query = new URLSearchParams({ userName, password, errorAsXML: '1' });
  return httpOutcome(await httpRequest(localAddress, `/XIMSSLogin/?${query}`));
}

/** The /XIMSSLogin/ nonce login: a nonce from a listFeatures batch, then its HMAC-MD5 digest. */
async function httpNonceLogin(localAddress: string, userName: string, password: string): Promise<string> {
  const features = parseXml(await httpRequest(localAddress, '/XIMSSLogin/', '<XIMSS><listFeatures id="1"/></XIMSS>')).element('features');
  const nonce = features?.element('nonce')?.text();
  assert.ok(nonce, 'listFeatures gives a nonce');
  const authData = Buffer.from(hmacMd5Hex(password, nonce)).toString('base64');
  const query = new URLSearchParams({ nonce, userName, authData, errorAsXML: '1' });
  return httpOutcome(await httpRequest(localAddress, `/XIMSSLogin/?${query}`));
}

async function smtpFrom(localAddress: string): Promise<SmtpWire> {
  const wire = await SmtpWire.connect(server.ports.smtp!, localAddress);
  assert.equal((await wire.command('EHLO client.example')).code, 250);
  return wire;
}

/** Guard events about `account` (its full name) from `address`. */
function admissions(account: string, address?: string): Extract<GuardEvent, { kind: 'admitted' }>[] {
  return events.filter((e): e is Extract<GuardEvent, { kind: 'admitted' }> => e.kind === 'admitted' && e.account === account && (address === undefined || e.address === address));
}

function lastAdmission(account: string, address: string): Extract<GuardEvent, { kind: 'admitted' }> {
  const list = admissions(account, address);
  assert.ok(list.length > 0, `an admission for ${account} from ${address}`);
  return list[list.length - 1]!;
}

// ---------------------------------------------------------------------------------------

describe('attempts are reserved before they are verified', () => {
  test('200 parallel XIMSS logins from one address, the right password last: at most 20 are verified, the right one is refused', async () => {
    const account = await server.newAccount('burst', { password: 'burst-right' });
    const clients = await ximssClients(200, '127.0.0.2');
    // All 200 requests are written in one go, before any answer can come back.
    const replies = clients.map((c, i) => login(c, account, i === 199 ? 'burst-right' : `burst-wrong-${i}`));
    const outcomes = (await Promise.all(replies)).map(outcome);
    const verified = verifier.verified('burst-');
    assert.ok(verified <= PER_ADDRESS, `${verified} attempts verified`);
    assert.equal(verifier.verified('burst-right'), 0, 'the right password was never verified');
    assert.equal(outcomes[199], TOO_MANY_ATTEMPTS, 'the right password is refused');
    assert.equal(outcomes.filter((o) => o === BAD_CREDENTIALS).length, verified, 'every verified attempt failed');
    assert.equal(outcomes.filter((o) => o === TOO_MANY_ATTEMPTS).length, 200 - verified, 'every other one was refused');
    closeAll(clients);
  });

  test('attempts under way hold their places: while they are being verified, even the right password is refused unverified', async () => {
    const account = await server.newAccount('held', { password: 'held-right' });
    const clients = await ximssClients(30, '127.0.0.3');
    verifier.hold();
    try {
      let answered = 0;
      const replies = clients.map((c, i) => login(c, account, `held-wrong-${i}`).finally(() => answered++));
      // The ten without a place are answered while the twenty with one are held in verification.
      await eventually(() => answered >= 30 - PER_ADDRESS, 'the refusals');
      assert.equal(answered, 30 - PER_ADDRESS, 'nothing verified has been answered yet');
      const late = await ximssFrom('127.0.0.3');
      assert.equal(outcome(await login(late, account, 'held-right')), TOO_MANY_ATTEMPTS);
      assert.equal(verifier.verified('held-right'), 0);
      verifier.release();
      const outcomes = (await Promise.all(replies)).map(outcome);
      assert.equal(outcomes.filter((o) => o === BAD_CREDENTIALS).length, PER_ADDRESS);
      assert.equal(outcomes.filter((o) => o === TOO_MANY_ATTEMPTS).length, 30 - PER_ADDRESS);
      assert.equal(verifier.verified('held-wrong'), PER_ADDRESS, 'exactly the reserved attempts were verified');
      late.close();
    } finally {
      verifier.release();
      closeAll(clients);
    }
  });

  test('a success gives its place back; the failure that reaches the limit blocks the address', async () => {
    const account = await server.newAccount('giveback', { password: 'giveback-right' });
    const clients = await ximssClients(PER_ADDRESS - 1, '127.0.0.4');
    // Unknown names: the address's budget alone is at stake.
    const wrong = await Promise.all(clients.map((c, i) => login(c, `nobody-giveback-${i}`, 'giveback-wrong')));
    assert.deepEqual(new Set(wrong.map(outcome)), new Set([BAD_CREDENTIALS]));
    const [a, b, c, d] = await ximssClients(4, '127.0.0.4');
    assert.equal(outcome(await login(a!, account, 'giveback-right')), 'session');
    assert.equal(outcome(await login(b!, account, 'giveback-right')), 'session', 'the first success did not use up the last place');
    assert.equal(outcome(await login(c!, 'nobody-giveback-last', 'giveback-wrong')), BAD_CREDENTIALS);
    assert.equal(outcome(await login(d!, account, 'giveback-right')), TOO_MANY_ATTEMPTS, 'blocked for the window');
    // Another address is not affected.
    const elsewhere = await ximssFrom('127.0.0.40');
    assert.equal(outcome(await login(elsewhere, account, 'giveback-right')), 'session');
    closeAll([...clients, a!, b!, c!, d!, elsewhere]);
  });
});

describe('one budget for every protocol', () => {
  test('failures over XIMSS TCP, /XIMSSLogin/ (parameters and nonce) and SMTP AUTH count together', async () => {
    const from = '127.0.0.5';
    const account = await server.newAccount('shared', { password: 'shared-right' });
    const clients = await ximssClients(7, from);
    const tcp = await Promise.all(clients.map((c, i) => login(c, `nobody-tcp-${i}`, 'shared-wrong')));
    assert.deepEqual(new Set(tcp.map(outcome)), new Set([BAD_CREDENTIALS]));
    for (let i = 0; i < 4; i++) assert.equal(await httpLogin(from, `nobody-http-${i}`, 'shared-wrong'), BAD_CREDENTIALS);
    for (let i = 0; i < 3; i++) assert.equal(await httpNonceLogin(from, `nobody-nonce-${i}`, 'shared-wrong'), BAD_CREDENTIALS);
    const smtp = await smtpFrom(from);
    for (let i = 0; i < 6; i++) {
      const reply = await smtp.command(authPlain(`nobody-smtp-${i}@${DOMAIN}`, 'shared-wrong'));
      assert.equal(reply.code, 535, reply.text);
    }
    // 7 + 4 + 3 + 6 = 20 failures from the address: every protocol refuses it now.
    const [x, y] = await ximssClients(2, from);
    assert.equal(outcome(await login(x!, account, 'shared-right')), TOO_MANY_ATTEMPTS, 'XIMSS clear text');
    assert.equal(await cramMd5(y!, account, 'shared-right'), TOO_MANY_ATTEMPTS, 'XIMSS CRAM-MD5');
    assert.equal(await httpLogin(from, account, 'shared-right'), TOO_MANY_ATTEMPTS, '/XIMSSLogin/');
    assert.equal(await httpNonceLogin(from, account, 'shared-right'), TOO_MANY_ATTEMPTS, '/XIMSSLogin/ nonce');
    const refused = await smtp.command(authPlain(account, 'shared-right'));
    assert.equal(refused.code, 454, 'SMTP AUTH: a temporary refusal');
    assert.equal(refused.text, `4.7.0 ${TOO_MANY_ATTEMPTS}`);
    assert.equal(verifier.verified('shared-right'), 0);
    smtp.close();
    closeAll([...clients, x!, y!]);
  });

  test("passwordModify's current-password check counts on the same budget", async () => {
    const from = '127.0.0.6';
    const account = await server.newAccount('modder', { password: 'modder-right' });
    const session = await ximssFrom(from);
    assert.equal(outcome(await login(session, account, 'modder-right')), 'session');
    for (let i = 0; i < PER_ADDRESS / 2; i++) {
      const reply = await session.request(new XmlElement('passwordModify', { oldPassword: `modder-wrong-${i}`, newPassword: 'new-one' }));
      assert.equal(reply.response.attrs.errorText, BAD_CREDENTIALS);
    }
    const clients = await ximssClients(PER_ADDRESS / 2, from);
    await Promise.all(clients.map((c, i) => login(c, `nobody-modder-${i}`, 'modder-wrong')));
    const modify = await session.request(new XmlElement('passwordModify', { oldPassword: 'modder-right', newPassword: 'new-one' }));
    assert.equal(modify.response.attrs.errorText, TOO_MANY_ATTEMPTS);
    const late = await ximssFrom(from);
    assert.equal(outcome(await login(late, account, 'modder-right')), TOO_MANY_ATTEMPTS);
    closeAll([session, ...clients, late]);
  });
});

describe('per-account budgets: every name of the account, and the owner never locked out', () => {
  test('aliases share the account budget: failures by its name and by two aliases slow down the third alias', async () => {
    const account = await server.newAccount('aliased', { password: 'aliased-right' });
    const local = account.slice(0, account.indexOf('@'));
    const record = (await server.services.accounts.find(account))!;
    await server.services.accounts.setAliases(record, [`${local}-aka1`, `${local}-aka2`, `${local}-aka3`]);
    const names = [account, account, account, account, `${local}-aka1`, `${local}-aka1`, `${local}-aka1`, `${local}-AKA2@${DOMAIN.toUpperCase()}`, ` ${local}-aka2`, `${local}-aka2@${DOMAIN}`];
    const clients = await ximssClients(names.length, '127.0.0.7');
    const outcomes = (await Promise.all(clients.map((c, i) => login(c, names[i]!, `aliased-wrong-${i}`)))).map(outcome);
    assert.deepEqual(new Set(outcomes), new Set([BAD_CREDENTIALS]));
    assert.equal(admissions(account, '127.0.0.7').length, PER_ACCOUNT, 'every name was counted on the account');
    const other = await ximssFrom('127.0.0.8');
    assert.equal(outcome(await login(other, `${local}-aka3`, 'aliased-wrong-x')), BAD_CREDENTIALS);
    assert.notEqual(lastAdmission(account, '127.0.0.8').slot, undefined, 'the third alias waited for the account slot');
    // The owner, with the right password through an alias, gets in all the same.
    assert.equal(outcome(await login(other, `${local}-aka3`, 'aliased-right')), 'session');
    closeAll([...clients, other]);
  });

  test('past the account budget the owner still gets in: straight through from a known address, after the slow-down from a new one', async () => {
    const account = await server.newAccount('owner', { password: 'owner-right' });
    const home = await ximssFrom('127.0.0.9');
    assert.equal(outcome(await login(home, account, 'owner-right')), 'session');
    assert.equal(lastAdmission(account, '127.0.0.9').slot, undefined);
    // Someone else makes the account's failures exceed its budget.
    const attacker = await ximssClients(PER_ACCOUNT + 2, '127.0.0.10');
    const wrong = await Promise.all(attacker.map((c, i) => login(c, account, `owner-wrong-${i}`)));
    assert.deepEqual(new Set(wrong.map(outcome)), new Set([BAD_CREDENTIALS]));
    assert.equal(admissions(account, '127.0.0.10').filter((e) => e.slot !== undefined).length, 2, 'the attempts past the budget waited for slots');

    const again = await ximssFrom('127.0.0.9');
    assert.equal(outcome(await login(again, account, 'owner-right')), 'session', 'from a known address');
    assert.equal(lastAdmission(account, '127.0.0.9').slot, undefined, 'straight through');

    const travelling = await ximssFrom('127.0.0.11');
    assert.equal(outcome(await login(travelling, account, 'owner-right')), 'session', 'from a new address');
    assert.notEqual(lastAdmission(account, '127.0.0.11').slot, undefined, 'after the slow-down');

    // The address of the stored last login counts as the owner's too (the guard's memory
    // does not know it: it was recorded elsewhere, e.g. before a restart).
    const id = (await server.services.accounts.find(account))!.id;
    await server.services.store.accounts.recordLogin(id, { time: new Date(), address: '127.0.0.12' });
    const stored = await ximssFrom('127.0.0.12');
    assert.equal(outcome(await login(stored, account, 'owner-right')), 'session');
    assert.equal(lastAdmission(account, '127.0.0.12').slot, undefined, 'the stored last login address goes straight through');
    closeAll([home, ...attacker, again, travelling, stored]);
  });

  test('parallel attempts on a slowed-down account never share a slot', async () => {
    const account = await server.newAccount('slots', { password: 'slots-right' });
    const first = await ximssClients(PER_ACCOUNT, '127.0.0.13');
    await Promise.all(first.map((c, i) => login(c, account, `slots-wrong-${i}`)));
    const burst = [...(await ximssClients(3, '127.0.0.13')), ...(await ximssClients(3, '127.0.0.14'))];
    const outcomes = (await Promise.all(burst.map((c, i) => login(c, account, `slots-more-${i}`)))).map(outcome);
    assert.deepEqual(new Set(outcomes), new Set([BAD_CREDENTIALS]));
    const slots = admissions(account)
      .map((e) => e.slot)
      .filter((s): s is number => s !== undefined)
      .sort((x, y) => x - y);
    assert.equal(slots.length, 6);
    for (let i = 1; i < slots.length; i++) assert.ok(slots[i]! - slots[i - 1]! >= SLOWDOWN_MS, `slots ${slots.join(', ')}`);
    closeAll([...first, ...burst]);
  });
});

describe('unknown names cost what a wrong password costs', () => {
  test('an unknown account is verified against a dummy scrypt hash, an unknown or context-less CRAM-MD5 against a dummy context', async () => {
    const from = '127.0.0.15';
    const account = await server.newAccount('known', { password: 'known-right' });
    const client = await ximssFrom(from);
    assert.equal(outcome(await login(client, `ghost-${Date.now()}@${DOMAIN}`, 'ghost-wrong')), BAD_CREDENTIALS);
    assert.equal(outcome(await login(client, account, 'known-wrong')), BAD_CREDENTIALS);
    const ghost = verifier.passwords.filter((p) => p.password === 'ghost-wrong');
    const known = verifier.passwords.filter((p) => p.password === 'known-wrong');
    assert.equal(ghost.length, 1, 'the unknown name reached the verifier');
    assert.equal(known.length, 1);
    const params = (stored: string): string => stored.split('$').slice(0, 3).join('$');
    assert.equal(params(ghost[0]!.stored), params(known[0]!.stored), 'with the same scrypt parameters');
    assert.notEqual(ghost[0]!.stored, known[0]!.stored);

    const digests = verifier.digests.length;
    assert.equal(await cramMd5(client, `ghost-cram@${DOMAIN}`, 'whatever'), BAD_CREDENTIALS);
    const contextless = await server.newAccount('nocram', { password: 'nocram-right' });
    const record = (await server.services.accounts.find(contextless))!;
    await server.services.store.accounts.setPassword(record.id, record.passwordHash, null, null, null);
    assert.equal(await cramMd5(client, contextless, 'nocram-right'), BAD_CREDENTIALS, 'no context: CRAM-MD5 cannot succeed');
    const made = verifier.digests.slice(digests);
    assert.equal(made.length, 2, 'both reached the digest check');
    assert.equal(made[0]!.context, made[1]!.context, 'the same dummy context');
    assert.equal(outcome(await login(client, contextless, 'nocram-right')), 'session', 'clear text still works');
    client.close();
  });
});

// ---------------------------------------------------------------------------------------
// The guard and the fair limiter on their own, with a clock of the test's

describe('LoginGuard with a fake clock', () => {
  function fakeGuard(limits: Partial<GuardLimits> = {}): { guard: LoginGuard; clock: { now: number }; waits: number[]; seen: GuardEvent[] } {
    const clock = { now: 1_000_000 };
    const waits: number[] = [];
    const seen: GuardEvent[] = [];
    const guard = new LoginGuard(
      { perAddress: 5, perAccount: 2, windowMs: 60_000, slowdownMs: 1000, horizonMs: 2500, ...limits },
      {
        now: () => clock.now,
        wait: async (ms) => {
          waits.push(ms);
        },
        observe: (e) => seen.push(e),
      },
    );
    return { guard, clock, waits, seen };
  }

  test('parallel begins: only the budget is admitted; failures block the address for the window, successes do not count', async () => {
    const { guard, clock } = fakeGuard();
    const attempts = await Promise.all(Array.from({ length: 8 }, () => guard.begin('10.0.0.1')));
    const admitted = attempts.filter((a) => a !== undefined);
    assert.equal(admitted.length, 5);
    await admitted[0]!.succeeded();
    const extra = await guard.begin('10.0.0.1');
    assert.ok(extra, 'the success gave its place back');
    for (const a of [...admitted.slice(1), extra]) await a.failed();
    assert.equal(await guard.begin('10.0.0.1'), undefined, 'five failures: blocked');
    assert.ok(await guard.begin('10.0.0.2'), 'another address is not');
    clock.now += 59_999;
    assert.equal(await guard.begin('10.0.0.1'), undefined, 'still blocked within the window');
    clock.now += 1;
    assert.ok(await guard.begin('10.0.0.1'), 'a fresh budget after the window');
  });

  test('an account past its budget: slots in order, known addresses straight through, nothing beyond the horizon', async () => {
    const { guard, clock, waits, seen } = fakeGuard({ perAddress: 100 });
    const start = clock.now;
    const owner = (await guard.begin('10.0.1.1'))!;
    assert.equal(await owner.forAccount('acct'), true);
    await owner.succeeded();
    for (let i = 0; i < 2; i++) {
      const a = (await guard.begin('10.0.2.1'))!;
      await a.forAccount('acct');
      await a.failed();
    }
    assert.deepEqual(waits, [], 'within the budget nobody waits');
    // Four attackers at once: slots now, +1000, +2000; the fourth (+3000) is past the horizon.
    const attackers = await Promise.all(Array.from({ length: 4 }, async () => (await guard.begin('10.0.2.1'))!));
    const admitted = await Promise.all(attackers.map((a) => a.forAccount('acct')));
    assert.deepEqual(admitted, [true, true, true, false]);
    assert.deepEqual(waits, [0, 1000, 2000]);
    assert.deepEqual(
      seen.filter((e) => e.kind === 'admitted' && e.slot !== undefined).map((e) => (e.kind === 'admitted' ? e.slot! - start : -1)),
      [0, 1000, 2000],
    );
    assert.deepEqual(
      seen.filter((e) => e.kind === 'refused'),
      [{ kind: 'refused', address: '10.0.2.1', reason: 'account busy' }],
    );
    await attackers[3]!.abandon();
    // The owner's address goes straight through, and so does an address given as the owner's.
    const home = (await guard.begin('10.0.1.1'))!;
    assert.equal(await home.forAccount('acct'), true);
    const stored = (await guard.begin('10.0.3.1'))!;
    assert.equal(await stored.forAccount('acct', ['10.0.3.1']), true);
    assert.deepEqual(waits, [0, 1000, 2000], 'neither waited');
  });

  test('addresses: IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:DB8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:0001:0002::9%eth0'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
  });
});

describe('FairLimiter', () => {
  test('a freed place goes to the waiting addresses in turn, not to the oldest task', async () => {
    const limiter = new FairLimiter(1);
    const order: string[] = [];
    let releaseFirst = (): void => {};
    let started = (): void => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    const first = limiter.run(
      'A',
      () =>
        new Promise<void>((resolve) => {
          releaseFirst = resolve;
          started();
        }),
    );
    const queued = ['A2', 'A3', 'A4', 'B1', 'C1', 'B2'].map((name) =>
      limiter.run(name[0]!, async () => {
        order.push(name);
      }),
    );
    assert.equal(limiter.waiting, 6);
    await running;
    releaseFirst();
    await Promise.all([first, ...queued]);
    assert.deepEqual(order, ['A2', 'B1', 'C1', 'A3', 'B2', 'A4']);
  });
});
