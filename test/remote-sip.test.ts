/**
 * Remote SIP registrations (rsipList, rsipUpdate; src/services/remote-sip/) against Kamailio
 * (Debian's package, test/fixtures/kamailio.ts) as a registrar that challenges every REGISTER
 * (Digest, realm = the domain) and logs what it takes. A record of an account registers there
 * with its credentials and refreshes; a phone calling the remote number through Kamailio
 * reaches the account's XIMSS session (callIncoming); deleting the record un-registers it (the
 * number is then unknown there); a wrong password and a registrar that cannot be reached show
 * as errorText in rsipList, with back-off between attempts; shutdown un-registers. Then two
 * nodes of a cluster (built server processes on one PostgreSQL, test/fixtures/cluster.ts): one
 * registers the record; killed, the other takes the lease, registers, and takes the calls.
 * RSIPAllowed: rsipUpdate is refused unless the account (or its domain's default) says Yes; set
 * to No, the node registering the account's records un-registers them (told on the bus: in the
 * cluster, with scans an hour apart, by the command line's `account set`).
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mergeConfig, defaultConfig } from '../src/config.js';
import { startNode, ximssd, type ClusterNodeProcess } from './fixtures/cluster.js';
import { startPostgres, type PostgresServer } from './fixtures/postgres.js';
import { ensureKamailio, startKamailio, type Kamailio } from './fixtures/kamailio.js';
import { SipPhone } from './fixtures/sip-phone.js';
import { capturingLogger, eventually, fails, freePort, freeSipPort, httpRequest, loginWithUrlId, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';
import type { XmlElement } from '../src/xml/element.js';

const PASSWORD = 'rsip-secret';
const DOMAIN = 'remote.test';
/** Short intervals so that refreshes and retries come within a test; the agent scans every second. */
const REMOTE_SIP = { minExpires: 1, defaultExpires: 60, scanSeconds: 1, leaseSeconds: 3, retryMinSeconds: 1, retryMaxSeconds: 2, recordsPerAccount: 3, allowPrivate: true };

const availability = await ensureKamailio();

function record(name: string, fields: Record<string, string>, mode?: string): string {
  const body = Object.entries(fields)
    .map(([key, value]) => `<subKey key="${key}">${value}</subKey>`)
    .join('');
  return `<rsipRecord name="${name}"${mode ? ` mode="${mode}"` : ''}>${body}</rsipRecord>`;
}

async function list(client: XimssClient): Promise<XmlElement[]> {
  return (await ok(client, '<rsipList/>')).messages.filter((m) => m.name === 'rsipRecord');
}

function settingsOf(message: XmlElement): Record<string, string> {
  return Object.fromEntries(message.elements('subKey').map((k) => [k.attrs.key!, k.text()]));
}

/** Lets the account keep RSIP records (RSIPAllowed=Yes; the default is No). */
async function allowRsip(target: TestServer, address: string, value = 'Yes'): Promise<void> {
  await target.services.accounts.setSettings((await target.services.accounts.find(address))!, { RSIPAllowed: value });
}

/** Lines of Kamailio's log for `user` of the kind `REGISTER-IN` or `REGISTER-OK`. */
function registerLines(kamailio: Kamailio, kind: 'REGISTER-IN' | 'REGISTER-OK', user: string): string[] {
  return kamailio.log().split('\n').filter((line) => line.includes(`${kind} user=${user} `));
}

describe('remote SIP registrations with Kamailio as the registrar', { skip: availability.available ? false : availability.reason }, () => {
  let kamailio: Kamailio;
  let server: TestServer;
  let capture: ReturnType<typeof capturingLogger>;
  let alice: string;
  let client: XimssClient;

  before(async () => {
    kamailio = await startKamailio({ domain: DOMAIN, registrarPassword: PASSWORD, children: 2, sharedMemoryMb: 64 });
    capture = capturingLogger('debug');
    server = await startTestServer({ ports: { sip: await freeSipPort() }, remoteSip: REMOTE_SIP }, { log: capture.log });
    alice = await server.newAccount('alice');
    await allowRsip(server, alice);
    ({ client } = await server.login(alice, 'secret'));
    await ok(client, `<signalBind><sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n</sdpText></signalBind>`);
  });

  after(async () => {
    await server?.stop();
    await kamailio?.stop();
  });

  test('a record registers with Digest, refreshes before it runs out, and rsipList shows it registered', async () => {
    await ok(client, `<rsipUpdate>${record('main', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551001', password: PASSWORD, expires: '4' })}</rsipUpdate>`);
    // The first REGISTER is challenged; the one sent again carries the credentials and is taken.
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551001').length >= 1, 'the registration at Kamailio', 10_000);
    const incoming = registerLines(kamailio, 'REGISTER-IN', '5551001');
    assert.ok(incoming.some((line) => line.includes('auth=5551001 ')), `a REGISTER with credentials: ${incoming.join(' | ')}`);
    const ok1 = registerLines(kamailio, 'REGISTER-OK', '5551001')[0]!;
    assert.match(ok1, /contact=<sip:rsip-[0-9a-f]+@127\.0\.0\.1:\d+>/, 'the Contact names the record by its token');
    // A refresh: another accepted REGISTER while the record stays (4 s asked: refreshed after about 2).
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551001').length >= 2, 'a refresh', 15_000);
    const [entry] = await eventually(async () => {
      const records = await list(client);
      return records[0]?.attrs.registeredUntil ? records : undefined;
    }, 'rsipList showing the registration', 10_000);
    assert.equal(entry!.attrs.name, 'main');
    assert.equal(entry!.attrs.errorText, undefined);
    assert.ok(entry!.attrs.timeCompleted, 'the time of the last attempt');
    const settings = settingsOf(entry!);
    assert.equal(settings.domain, DOMAIN);
    assert.equal(settings.fromName, '5551001');
    assert.equal(settings.expires, '4');
    assert.equal(settings.enabled, 'YES');
    assert.equal(settings.password, undefined, 'the password is never shown');
    assert.ok(capture.events('remoteSip.registered').length >= 1);
    const metrics = await httpRequest(server.ports.http, '/metrics');
    assert.match(metrics.text, /^ximssd_remote_sip_registrations 1$/m, 'the gauge counts the registration in force');
  });

  test('a call to the remote number through the registrar reaches the account (callIncoming), from the caller there', async () => {
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551001').length >= 1, 'the registration', 10_000);
    const phone = await SipPhone.open(kamailio.port, `caller@${DOMAIN}`, 'none');
    try {
      const calling = phone.invite(`sip:5551001@${DOMAIN}`, `<sip:5551001@${DOMAIN}>`, 40000);
      const incoming = await client.takeAsync('callIncoming', () => true, 10_000);
      assert.equal(incoming.attrs.peer, `caller@${DOMAIN}`);
      await ok(client, `<callReject callLeg="${incoming.attrs.callLeg}" signalCode="486"/>`);
      const { response } = await calling;
      assert.equal(response.status, 486, 'the rejection goes back through the registrar');
    } finally {
      phone.close();
    }
  });

  test('a caller through the registrar who names one of our domains in From is not shown as our user', async () => {
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551001').length >= 1, 'the registration', 10_000);
    const phone = await SipPhone.open(kamailio.port, 'boss@example.test', 'none');
    try {
      const calling = phone.invite(`sip:5551001@${DOMAIN}`, `<sip:5551001@${DOMAIN}>`, 40010);
      const incoming = await client.takeAsync('callIncoming', () => true, 10_000);
      // Kamailio relays it from 127.0.0.1: the unverified caller is shown by that address.
      assert.equal(incoming.attrs.peer, 'boss@127.0.0.1');
      await ok(client, `<callReject callLeg="${incoming.attrs.callLeg}" signalCode="486"/>`);
      await calling;
    } finally {
      phone.close();
    }
  });

  test('deleting the record un-registers it (Expires: 0): the number is then unknown at the registrar', async () => {
    await ok(client, `<rsipUpdate>${record('gone', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551002', password: PASSWORD, expires: '30' })}</rsipUpdate>`);
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551002').length >= 1, 'the registration', 10_000);
    await ok(client, '<rsipUpdate><rsipRecord name="gone" mode="delete"/></rsipUpdate>');
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551002').some((line) => line.includes('expires=0 ')), 'the un-REGISTER', 10_000);
    assert.ok(!(await list(client)).some((r) => r.attrs.name === 'gone'));
    const phone = await SipPhone.open(kamailio.port, `caller@${DOMAIN}`, 'none');
    try {
      const { response } = await phone.invite(`sip:5551002@${DOMAIN}`, `<sip:5551002@${DOMAIN}>`, 40002);
      assert.equal(response.status, 404);
    } finally {
      phone.close();
    }
    assert.ok(capture.events('remoteSip.unregistered').some((r) => r.record === 'gone'));
  });

  test('a wrong password shows as errorText in rsipList, and the attempts back off', async () => {
    await ok(client, `<rsipUpdate>${record('bad', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551003', password: 'wrong', expires: '30' })}</rsipUpdate>`);
    const bad = await eventually(async () => (await list(client)).find((r) => r.attrs.name === 'bad' && r.attrs.errorText), 'the error in rsipList', 10_000);
    assert.match(bad.attrs.errorText!, /authentication failed: 401/);
    assert.equal(bad.attrs.registeredUntil, undefined);
    assert.equal(registerLines(kamailio, 'REGISTER-OK', '5551003').length, 0);
    await eventually(() => capture.events('remoteSip.failed').filter((r) => r.record === 'bad').length >= 2, 'a second attempt', 10_000);
    const failures = capture.events('remoteSip.failed').filter((r) => r.record === 'bad');
    assert.deepEqual(failures.slice(0, 2).map((r) => [r.failures, r.retrySeconds]), [[1, 1], [2, 2]], 'the delay doubles');
    await ok(client, '<rsipUpdate><rsipRecord name="bad" mode="delete"/></rsipUpdate>');
  });

  test('a registrar that cannot be reached: errorText, back-off up to retryMaxSeconds; fixed, the record registers', async () => {
    const closed = await freePort();
    await ok(client, `<rsipUpdate>${record('down', { domain: DOMAIN, proxy: `127.0.0.1:${closed};transport=tcp`, fromName: '5551004', password: PASSWORD })}</rsipUpdate>`);
    const down = await eventually(async () => (await list(client)).find((r) => r.attrs.name === 'down' && r.attrs.errorText), 'the error in rsipList', 10_000);
    assert.match(down.attrs.errorText!, /cannot be reached/);
    await eventually(() => capture.events('remoteSip.failed').filter((r) => r.record === 'down').length >= 3, 'three attempts', 15_000);
    const delays = capture.events('remoteSip.failed').filter((r) => r.record === 'down').slice(0, 3).map((r) => r.retrySeconds);
    assert.deepEqual(delays, [1, 2, 2], 'doubling, capped at retryMaxSeconds');
    // The record set again with the right proxy: registered, the error gone.
    await ok(client, `<rsipUpdate>${record('down', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551004', password: PASSWORD })}</rsipUpdate>`);
    const fixed = await eventually(async () => (await list(client)).find((r) => r.attrs.name === 'down' && r.attrs.registeredUntil), 'the registration', 10_000);
    assert.equal(fixed.attrs.errorText, undefined);
    await ok(client, '<rsipUpdate><rsipRecord name="down" mode="delete"/></rsipUpdate>');
  });

  test('a disabled record does not register; the limit per account; bad records are refused with a clear error', async () => {
    const bob = await server.newAccount('bob');
    await allowRsip(server, bob);
    const { client: b } = await server.login(bob, 'secret');
    await ok(b, `<rsipUpdate>${record('off', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551005', password: PASSWORD, enabled: 'NO' })}</rsipUpdate>`);
    await fails(b, `<rsipUpdate>${record('x1', { domain: DOMAIN, fromName: 'a' })}${record('x2', { domain: DOMAIN, fromName: 'b' })}${record('x3', { domain: DOMAIN, fromName: 'c' })}</rsipUpdate>`, /too many RSIP records \(at most 3/);
    assert.deepEqual((await list(b)).map((r) => r.attrs.name), ['off'], 'nothing of a refused update is kept');
    await fails(b, `<rsipUpdate>${record('y', { fromName: 'a' })}</rsipUpdate>`, /the domain is missing/);
    await fails(b, `<rsipUpdate>${record('y', { domain: 'bad domain', fromName: 'a' })}</rsipUpdate>`, /domain must be a host name/);
    await fails(b, `<rsipUpdate>${record('y', { domain: DOMAIN, fromName: 'a', expires: '0' })}</rsipUpdate>`, /expires must be a whole number of seconds, 1 to 86400/);
    await fails(b, `<rsipUpdate>${record('y', { domain: DOMAIN, fromName: 'a', color: 'red' })}</rsipUpdate>`, /unknown key "color"/);
    await fails(b, `<rsipUpdate>${record('y', { domain: DOMAIN, fromName: 'a b' })}</rsipUpdate>`, /fromName must be a SIP user name/);
    await fails(b, '<rsipUpdate/>', /rsipRecord elements are missing/);
    // Still not registered: disabled.
    assert.equal(registerLines(kamailio, 'REGISTER-IN', '5551005').length, 0);
    const [off] = await list(b);
    assert.equal(settingsOf(off!).enabled, 'NO');
  });

  test('RSIPAllowed set to No: the registration stops (un-REGISTER), rsipList says why, the number is unknown there; Yes again: registered', async () => {
    const frank = await server.newAccount('frank');
    await allowRsip(server, frank);
    const { client: f } = await server.login(frank, 'secret');
    await ok(f, `<rsipUpdate>${record('main', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551007', password: PASSWORD, expires: '30' })}</rsipUpdate>`);
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551007').length >= 1, 'the registration', 10_000);
    await allowRsip(server, frank, 'No');
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551007').some((line) => line.includes('expires=0 ')), 'the un-REGISTER', 10_000);
    const refused = await eventually(async () => (await list(f)).find((r) => r.attrs.errorText !== undefined), 'the reason in rsipList', 10_000);
    assert.match(refused.attrs.errorText!, /not allowed for this account \(RSIPAllowed\)/);
    assert.equal(refused.attrs.registeredUntil, undefined);
    assert.ok(capture.events('remoteSip.not_allowed').some((r) => r.record === 'main'), 'logged');
    const phone = await SipPhone.open(kamailio.port, `caller@${DOMAIN}`, 'none');
    try {
      const { response } = await phone.invite(`sip:5551007@${DOMAIN}`, `<sip:5551007@${DOMAIN}>`, 40003);
      assert.equal(response.status, 404, 'no registration at the registrar any more');
    } finally {
      phone.close();
    }
    // The account may no longer change its records either.
    await fails(f, '<rsipUpdate><rsipRecord name="main" mode="delete"/></rsipUpdate>', /not allowed for this account \(RSIPAllowed\)/);
    const unregisteredAt = registerLines(kamailio, 'REGISTER-OK', '5551007').length;
    await allowRsip(server, frank, 'Yes');
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551007').slice(unregisteredAt).some((line) => !line.includes('expires=0 ')), 'registered again', 10_000);
    await eventually(async () => (await list(f))[0]?.attrs.registeredUntil !== undefined && (await list(f))[0]?.attrs.errorText === undefined, 'rsipList: registered, no error', 10_000);
    await ok(f, '<rsipUpdate><rsipRecord name="main" mode="delete"/></rsipUpdate>');
  });

  test('shutdown un-registers (Expires: 0) and gives the leases up', async () => {
    const other = await startTestServer({ ports: { sip: await freeSipPort() }, remoteSip: REMOTE_SIP });
    let stopped = false;
    try {
      const carol = await other.newAccount('carol');
      await allowRsip(other, carol);
      const { client: c } = await other.login(carol, 'secret');
      await ok(c, `<rsipUpdate>${record('main', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551006', password: PASSWORD, expires: '30' })}</rsipUpdate>`);
      await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551006').length >= 1, 'the registration', 10_000);
      await other.stop();
      stopped = true;
      assert.ok(registerLines(kamailio, 'REGISTER-OK', '5551006').some((line) => line.includes('expires=0 ')), 'un-registered before the server stopped');
    } finally {
      if (!stopped) await other.stop();
    }
  });
});

test('RSIPAllowed: rsipUpdate is refused unless Yes (the account\'s own setting, else its domain\'s default; default No); rsipList answers', async () => {
  const target = await startTestServer({ remoteSip: REMOTE_SIP });
  try {
    const address = await target.newAccount('gina', { domain: 'rsip-allowed.test' });
    const { client: g } = await target.login(address, 'secret');
    const set = `<rsipUpdate>${record('a', { domain: DOMAIN, fromName: '5551030', password: PASSWORD })}</rsipUpdate>`;
    await fails(g, set, /^remote SIP registration is not allowed for this account \(RSIPAllowed\)$/);
    assert.deepEqual(await list(g), [], 'rsipList answers, and nothing was stored');
    // The domain's default for its accounts.
    await target.services.accounts.updateDomainSettings('rsip-allowed.test', {}, { RSIPAllowed: 'Yes' });
    await ok(g, set);
    assert.deepEqual((await list(g)).map((r) => r.attrs.name), ['a']);
    // The account's own No wins over the domain's Yes.
    await allowRsip(target, address, 'No');
    await fails(g, `<rsipUpdate><rsipRecord name="a" mode="delete"/></rsipUpdate>`, /not allowed for this account/);
    assert.deepEqual((await list(g)).map((r) => r.attrs.name), ['a'], 'kept');
  } finally {
    await target.stop();
  }
});

describe('remote SIP registrars at private addresses', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ ports: { sip: await freeSipPort() }, remoteSip: { ...REMOTE_SIP, allowPrivate: false } });
  });
  after(() => server.stop());

  test('are not reached unless remoteSip.allowPrivate: the record shows why', async () => {
    const address = await server.newAccount('inside');
    await allowRsip(server, address);
    const { client } = await server.login(address, 'secret');
    const registrar = createSocket('udp4');
    let received = 0;
    registrar.on('message', () => received++);
    await new Promise<void>((resolve) => registrar.bind(0, '127.0.0.1', resolve));
    try {
      const port = (registrar.address() as { port: number }).port;
      await ok(client, `<rsipUpdate>${record('lan', { domain: DOMAIN, proxy: `127.0.0.1:${port}`, fromName: '5552000', password: PASSWORD })}</rsipUpdate>`);
      const [entry] = await eventually(async () => {
        const records = await list(client);
        return records[0]?.attrs.errorText ? records : undefined;
      }, 'the refusal in rsipList', 10_000);
      assert.match(entry!.attrs.errorText!, /the registrar's address 127\.0\.0\.1 is private or local/);
      assert.equal(received, 0, 'nothing was sent there');
    } finally {
      registrar.close();
      client.close();
    }
  });
});

test('configuration: the remoteSip intervals are checked against each other', () => {
  const bad = (remoteSip: Record<string, number>, expected: RegExp): void => {
    assert.throws(() => mergeConfig(defaultConfig(), { remoteSip }, 'test'), expected);
  };
  bad({ leaseSeconds: 10, scanSeconds: 6 }, /remoteSip\.leaseSeconds.*must be at least twice remoteSip\.scanSeconds/s);
  bad({ minExpires: 100, maxExpires: 50, defaultExpires: 60 }, /remoteSip\.maxExpires.*must be at least remoteSip\.minExpires/s);
  bad({ retryMinSeconds: 60, retryMaxSeconds: 30 }, /remoteSip\.retryMaxSeconds/);
  bad({ recordsPerAccount: -1 }, /remoteSip\.recordsPerAccount/);
  assert.equal(mergeConfig(defaultConfig(), { remoteSip: { recordsPerAccount: 0 } }, 'test').remoteSip.recordsPerAccount, 0);
});

describe('remote SIP registrations in a cluster: a node dies, another takes its records', { skip: availability.available ? false : availability.reason }, () => {
  let kamailio: Kamailio;
  let pg: PostgresServer;
  let keyDir: string;
  const nodes: ClusterNodeProcess[] = [];
  const sipPorts: number[] = [];
  const clients: XimssClient[] = [];

  before(async () => {
    kamailio = await startKamailio({ domain: DOMAIN, registrarPassword: PASSWORD, children: 2, sharedMemoryMb: 64 });
    pg = await startPostgres();
    const url = await pg.createDatabase('rsip');
    // Every node opens what another sealed: one key file for all.
    keyDir = mkdtempSync(join(tmpdir(), 'rsip-key-'));
    writeFileSync(join(keyDir, 'secret.key'), `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    for (let i = 0; i < 2; i++) sipPorts.push(await freeSipPort());
    const config = (sip: number): Record<string, unknown> => ({ ports: { sip }, remoteSip: REMOTE_SIP, secrets: { keyFile: join(keyDir, 'secret.key') } });
    nodes.push(...(await Promise.all([startNode('1', url, config(sipPorts[0]!)), startNode('2', url, config(sipPorts[1]!))])));
    const result = await ximssd(['account', 'add', 'dana@example.test', '--password', 'secret', '--store', url]);
    assert.equal(result.code, 0, result.stderr);
    const allowed = await ximssd(['account', 'set', 'dana@example.test', 'RSIPAllowed=Yes', '--store', url]);
    assert.equal(allowed.code, 0, allowed.stderr);
  });

  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await pg?.stop();
    await kamailio?.stop();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  /** The SIP port of the node whose Contact the last accepted REGISTER of `user` named. */
  function registeredFrom(user: string): number | undefined {
    const last = registerLines(kamailio, 'REGISTER-OK', user).filter((line) => !line.includes('expires=0 ')).pop();
    const match = last === undefined ? null : /contact=<sip:rsip-[0-9a-f]+@127\.0\.0\.1:(\d+)>/.exec(last);
    return match ? Number(match[1]) : undefined;
  }

  test('one node registers the record; killed, the other takes the lease, registers it and takes the calls', async () => {
    const { client } = await loginWithUrlId(nodes[0]!.ports.ximss, 'dana@example.test', 'secret');
    clients.push(client);
    await ok(client, `<rsipUpdate>${record('main', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551010', password: PASSWORD, expires: '30' })}</rsipUpdate>`);
    const first = await eventually(() => registeredFrom('5551010'), 'the first registration', 15_000);
    const holder = sipPorts.indexOf(first);
    assert.ok(holder >= 0, `registered from ${first}, one of ${sipPorts.join(', ')}`);
    const survivor = nodes[1 - holder]!;
    // Only the holder registers it: the survivor's Contact has not been seen.
    assert.ok(!registerLines(kamailio, 'REGISTER-OK', '5551010').some((line) => line.includes(`:${sipPorts[1 - holder]}>`)));
    await nodes[holder]!.kill();
    const taken = await eventually(() => (registeredFrom('5551010') === sipPorts[1 - holder] ? true : undefined), 'the survivor registering the record', 30_000);
    assert.ok(taken);
    const { client: other } = await loginWithUrlId(survivor.ports.ximss, 'dana@example.test', 'secret');
    clients.push(other);
    const [entry] = await eventually(async () => {
      const records = await list(other);
      return records[0]?.attrs.registeredUntil ? records : undefined;
    }, 'rsipList showing the registration', 10_000);
    assert.equal(entry!.attrs.errorText, undefined);
    // A call through the registrar now reaches the account on the survivor. (Kamailio forks it to
    // the dead node's binding too, until that runs out, and answers the caller only when that
    // branch times out: the caller's final response is not waited for here.)
    await ok(other, `<signalBind><sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n</sdpText></signalBind>`);
    const phone = await SipPhone.open(kamailio.port, `caller@${DOMAIN}`, 'none');
    try {
      const calling = phone.invite(`sip:5551010@${DOMAIN}`, `<sip:5551010@${DOMAIN}>`, 40004);
      calling.catch(() => undefined);
      const incoming = await other.takeAsync('callIncoming', () => true, 10_000);
      assert.equal(incoming.attrs.peer, `caller@${DOMAIN}`);
      await ok(other, `<callReject callLeg="${incoming.attrs.callLeg}" signalCode="603"/>`);
    } finally {
      phone.close();
    }
  });

  test('a change made on the node that does not hold the record reaches the holder on the bus, not at its next scan (the record, and RSIPAllowed by the command line)', async () => {
    // Scans an hour apart: only the bus event (remoteSipChanged) can make the holder act within the test.
    const url = await pg.createDatabase('rsip_bus');
    const slow = { ...REMOTE_SIP, scanSeconds: 3600, leaseSeconds: 7200 };
    const ports = [await freeSipPort(), await freeSipPort()];
    const config = (sip: number): Record<string, unknown> => ({ ports: { sip }, remoteSip: slow, secrets: { keyFile: join(keyDir, 'secret.key') } });
    const pair = await Promise.all([startNode('3', url, config(ports[0]!)), startNode('4', url, config(ports[1]!))]);
    nodes.push(...pair);
    const added = await ximssd(['account', 'add', 'erin@example.test', '--password', 'secret', '--store', url]);
    assert.equal(added.code, 0, added.stderr);
    const allowed = await ximssd(['account', 'set', 'erin@example.test', 'RSIPAllowed=Yes', '--store', url]);
    assert.equal(allowed.code, 0, allowed.stderr);
    const sessions = await Promise.all(pair.map(async (node) => (await loginWithUrlId(node.ports.ximss, 'erin@example.test', 'secret')).client));
    clients.push(...sessions);
    await ok(sessions[0]!, `<rsipUpdate>${record('bus', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551020', password: PASSWORD, expires: '3600' })}</rsipUpdate>`);
    const from = await eventually(() => registeredFrom('5551020'), 'the registration', 15_000);
    const holder = ports.indexOf(from);
    assert.ok(holder >= 0, `registered from ${from}, one of ${ports.join(', ')}`);
    // Disabled through the session on the other node: the holder un-registers.
    await ok(sessions[1 - holder]!, `<rsipUpdate>${record('bus', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551020', password: PASSWORD, expires: '3600', enabled: 'NO' })}</rsipUpdate>`);
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551020').some((line) => line.includes('expires=0 ')), 'the un-REGISTER by the holder', 15_000);
    // Enabled again: registered (by whichever node claims it).
    const enabledAt = registerLines(kamailio, 'REGISTER-OK', '5551020').length;
    await ok(sessions[holder]!, `<rsipUpdate>${record('bus', { domain: DOMAIN, proxy: `127.0.0.1:${kamailio.port}`, fromName: '5551020', password: PASSWORD, expires: '3600', enabled: 'YES' })}</rsipUpdate>`);
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551020').slice(enabledAt).some((line) => !line.includes('expires=0 ')), 'registered again', 15_000);
    // RSIPAllowed=No set by the command line (another process): the holder hears accountChanged and un-registers.
    const unregisteredAt = registerLines(kamailio, 'REGISTER-OK', '5551020').length;
    const refused = await ximssd(['account', 'set', 'erin@example.test', 'RSIPAllowed=No', '--store', url]);
    assert.equal(refused.code, 0, refused.stderr);
    await eventually(() => registerLines(kamailio, 'REGISTER-OK', '5551020').slice(unregisteredAt).some((line) => line.includes('expires=0 ')), 'the un-REGISTER after RSIPAllowed=No', 15_000);
    const [entry] = await eventually(async () => {
      const records = await list(sessions[0]!);
      return records[0]?.attrs.errorText ? records : undefined;
    }, 'the reason in rsipList', 15_000);
    assert.match(entry!.attrs.errorText!, /RSIPAllowed/);
  });
});
