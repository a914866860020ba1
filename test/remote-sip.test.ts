/**
 * Remote SIP registrations (rsipList, rsipUpdate; src/services/remote-sip/) against Kamailio
 * (Debian's package, test/fixtures/kamailio.ts) as a registrar that challenges every REGISTER
 * (Digest, realm = the domain) and logs what it takes. A record of an account registers there
 * with its credentials and refreshes; a phone calling the remote number through Kamailio
 * reaches the account's XIMSS session (callIncoming); deleting the record un-registers it (the
 * number is then unknown there); a wrong password and a registrar that cannot be reached show
 * as errorText in rsipList, with back-off between attempts; shutdown un-registers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ensureKamailio, startKamailio, type Kamailio } from './fixtures/kamailio.js';
import { SipPhone } from './fixtures/sip-phone.js';
import { capturingLogger, eventually, fails, freePort, freeSipPort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';
import type { XmlElement } from '../src/xml/element.js';

const PASSWORD = 'rsip-secret';
const DOMAIN = 'remote.test';
/** Short intervals so that refreshes and retries come within a test; the agent scans every second. */
const REMOTE_SIP = { minExpires: 1, defaultExpires: 60, scanSeconds: 1, leaseSeconds: 3, retryMinSeconds: 1, retryMaxSeconds: 2, recordsPerAccount: 3 };

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

  test('shutdown un-registers (Expires: 0) and gives the leases up', async () => {
    const other = await startTestServer({ ports: { sip: await freeSipPort() }, remoteSip: REMOTE_SIP });
    let stopped = false;
    try {
      const carol = await other.newAccount('carol');
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
