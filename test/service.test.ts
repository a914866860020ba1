/**
 * Service operations (and the pre-login signup / recoverPassword) over TCP, plus the
 * server-initiated messages: alerts and bye.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { AccountRecord } from '../src/store/store.js';
import { XmlElement } from '../src/xml/element.js';
import { eventually, expectError, expectOk, hmacMd5Hex, loggedInClient, startTestServer, XimssClient, type Reply, type TestServer } from './helpers.js';

const TIME = /^\d{8}T\d{6}$/;

/** `YYYYMMDDTHHMMSS` read as if it were UTC, in milliseconds. */
function wallClock(value: string | undefined): number {
  assert.match(value ?? '', TIME);
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})$/.exec(value!)!;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
}

function failed(reply: Reply, what?: string): string {
  return expectError(reply, undefined, what);
}

let server: TestServer;

/** A fresh account for one test, so that tests do not disturb each other. */
async function newAccount(password = 'secret', realName?: string): Promise<{ address: string; password: string; account: () => Promise<AccountRecord> }> {
  const address = await server.newAccount('svc', { password, realName });
  return { address, password, account: async () => (await server.services.accounts.find(address))! };
}

before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

describe('noop and bye', () => {
  test('noop always succeeds with a bare response', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const reply = await client.request('<noop id="A001"/>');
    assert.equal(reply.messages.length, 0);
    assert.deepEqual(reply.response.attrs, { id: 'A001' });
    client.close();
  });

  test('bye: the response, then the server closes the connection and ends the session', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const urlID = client.received.find((m) => m.name === 'session')!.attrs.urlID!;
    assert.ok(server.services.sessions.get(urlID));
    const reply = await client.request('<bye id="B1"/>');
    assert.deepEqual(reply.response.attrs, { id: 'B1' });
    await client.waitClosed(2000);
    assert.equal(server.services.sessions.get(urlID), undefined);
    assert.equal(client.asyncMessages.length, 0, 'no async bye after a client bye');
  });
});

describe('passwordModify', () => {
  test('a wrong old password is refused and changes nothing', async () => {
    const { address, password } = await newAccount('old-pw');
    const client = await loggedInClient(server.ports.ximss, address, password);
    failed(await client.request('<passwordModify oldPassword="nope" newPassword="new-pw"/>'));
    failed(await client.request('<passwordModify newPassword="new-pw"/>'), 'passwordModify without oldPassword');
    client.close();
    const again = await loggedInClient(server.ports.ximss, address, 'old-pw');
    again.close();
  });

  test('the new password works for the next login and the old one does not (clear text and CRAM-MD5)', async () => {
    const { address } = await newAccount('old-pw');
    const client = await loggedInClient(server.ports.ximss, address, 'old-pw');
    expectOk(await client.request('<passwordModify oldPassword="old-pw" newPassword="new-pw"/>'));
    client.close();
    const oldLogin = await XimssClient.connect(server.ports.ximss);
    const refused = await oldLogin.request(new XmlElement('login', { authData: address, password: 'old-pw' }));
    assert.equal(refused.response.attrs.errorText, 'incorrect password or account name');
    const fresh = await oldLogin.request(new XmlElement('login', { authData: address, password: 'new-pw' }));
    expectOk(fresh, 'login with the new password');
    oldLogin.close();
    const auth = server.services.auth;
    const challenge = auth.newChallenge();
    await auth.checkCramMd5(challenge, `${address} ${hmacMd5Hex('new-pw', challenge)}`, undefined, '10.0.0.1');
  });

  test('the recovery E-mail address can be changed; a malformed one is refused', async () => {
    const { address, password, account } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    expectOk(await client.request(`<passwordModify oldPassword="${password}" recoveryEMail="me@elsewhere.test"/>`));
    assert.equal((await account()).recoveryEmail, 'me@elsewhere.test');
    failed(await client.request(`<passwordModify oldPassword="${password}" recoveryEMail="not an address"/>`));
    assert.equal((await account()).recoveryEmail, 'me@elsewhere.test');
    client.close();
  });

  test('PWDAllowed=No refuses a password change', async () => {
    const { address, password, account } = await newAccount();
    await server.services.accounts.setSettings(await account(), { PWDAllowed: 'No' });
    const client = await loggedInClient(server.ports.ximss, address, password);
    failed(await client.request(`<passwordModify oldPassword="${password}" newPassword="other"/>`));
    const status = (await client.request('<readStatus/>')).messages[0]!;
    assert.equal(status.element('PWDAllowed')?.text(), 'No');
    client.close();
    const again = await loggedInClient(server.ports.ximss, address, password);
    again.close();
  });
});

describe('setSessionOption', () => {
  test('idleTimeout is reported by readStatus; reportMailboxChanges is accepted; bad options are refused', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const initial = (await client.request('<readStatus/>')).messages[0]!;
    assert.equal(initial.element('timeout')?.attrs.idle, String(server.config.limits.idleTimeoutSeconds));
    expectOk(await client.request('<setSessionOption name="idleTimeout" value="120"/>'));
    assert.equal((await client.request('<readStatus/>')).messages[0]!.element('timeout')?.attrs.idle, '120');
    expectOk(await client.request('<setSessionOption name="idleTimeout" value="1"/>'));
    const small = Number((await client.request('<readStatus/>')).messages[0]!.element('timeout')?.attrs.idle);
    assert.ok(small >= 1, 'the idle time-out is the value asked or a larger one');
    expectOk(await client.request('<setSessionOption name="reportMailboxChanges" value="yes"/>'));
    expectOk(await client.request('<setSessionOption name="reportMailboxChanges" value="no"/>'));
    failed(await client.request('<setSessionOption name="idleTimeout" value="soon"/>'));
    failed(await client.request('<setSessionOption name="idleTimeout" value="-5"/>'));
    failed(await client.request('<setSessionOption name="noSuchOption" value="1"/>'));
    failed(await client.request('<setSessionOption value="1"/>'));
    client.close();
  });

  test('a longer idleTimeout keeps the session beyond the server default', async () => {
    const short = await startTestServer({ limits: { idleTimeoutSeconds: 1 } });
    try {
      await short.addAccount('u@example.test', 'pw');
      const patient = await loggedInClient(short.ports.ximss, 'u@example.test', 'pw');
      const plain = await loggedInClient(short.ports.ximss, 'u@example.test', 'pw');
      expectOk(await patient.request('<setSessionOption name="idleTimeout" value="30"/>'));
      await plain.nextAsync('bye', 3000);
      await sleep(500);
      assert.equal(patient.closed, false);
      assert.equal(patient.asyncMessages.length, 0);
      expectOk(await patient.request('<noop/>'));
      patient.close();
    } finally {
      await short.stop();
    }
  });
});

describe('readTime, readStatus, readSession, listKnownValues', () => {
  test('readTime: gmtTime is now and localTime follows the TimeZone preference', async () => {
    const { address, password, account } = await newAccount();
    await server.services.accounts.updatePrefs(await account(), { TimeZone: 'Asia/Tokyo' });
    const client = await loggedInClient(server.ports.ximss, address, password);
    const reply = await client.request('<readTime id="t"/>');
    const time = reply.messages[0]!;
    assert.equal(time.name, 'currentTime');
    assert.equal(time.attrs.id, 't');
    const gmt = wallClock(time.attrs.gmtTime);
    assert.ok(Math.abs(gmt - Date.now()) < 5000, 'gmtTime is the current time');
    assert.equal(wallClock(time.attrs.localTime) - gmt, 9 * 3600_000, 'Tokyo is GMT+9');
    client.close();
  });

  test('readTime follows a TimeZone change made while the session is open', async () => {
    const { address, password, account } = await newAccount();
    await server.services.accounts.updatePrefs(await account(), { TimeZone: 'Etc/GMT+5' });
    const client = await loggedInClient(server.ports.ximss, address, password);
    const before = (await client.request('<readTime/>')).messages[0]!;
    assert.equal(wallClock(before.attrs.localTime) - wallClock(before.attrs.gmtTime), -5 * 3600_000);
    await server.services.accounts.updatePrefs(await account(), { TimeZone: 'Asia/Tokyo' });
    let offset = 0;
    for (let i = 0; i < 20; i++) {
      const t = (await client.request('<readTime/>')).messages[0]!;
      offset = wallClock(t.attrs.localTime) - wallClock(t.attrs.gmtTime);
      if (offset === 9 * 3600_000) break;
      await sleep(50);
    }
    assert.equal(offset, 9 * 3600_000);
    client.close();
  });

  test('readStatus: no PrevLogin on the first login, PrevLogin on the next, LastFailedLogin after a failure', async () => {
    const { address, password } = await newAccount();
    const first = await loggedInClient(server.ports.ximss, address, password);
    const status1 = (await first.request('<readStatus id="s1"/>')).messages[0]!;
    assert.equal(status1.name, 'currentStatus');
    assert.equal(status1.attrs.id, 's1');
    assert.equal(status1.element('PrevLogin'), undefined);
    assert.equal(status1.element('LastFailedLogin'), undefined);
    assert.equal(status1.element('messageStore')?.attrs.used, '0');
    for (const key of ['RulesAllowed', 'SignalRulesAllowed', 'RPOPAllowed', 'PWDAllowed']) {
      assert.ok(status1.element(key)?.text(), `${key} has a value`);
    }
    first.close();

    const started = Date.now();
    const second = await loggedInClient(server.ports.ximss, address, password);
    const prev = (await second.request('<readStatus/>')).messages[0]!.element('PrevLogin');
    assert.ok(prev, 'PrevLogin after a second login');
    assert.equal(prev.attrs.ip, '127.0.0.1');
    const prevTime = wallClock(prev.attrs.gmtTime);
    assert.ok(prevTime <= started + 1000 && prevTime > started - 60_000, 'PrevLogin is the first login');
    assert.match(prev.attrs.localTime ?? '', TIME);
    second.close();

    const failing = await XimssClient.connect(server.ports.ximss);
    failed(await failing.request(new XmlElement('login', { authData: address, password: 'wrong' })));
    expectOk(await failing.request(new XmlElement('login', { authData: address, password })));
    const status3 = (await failing.request('<readStatus/>')).messages[0]!;
    const lastFailed = status3.element('LastFailedLogin');
    assert.ok(lastFailed, 'LastFailedLogin after a failure');
    assert.equal(lastFailed.attrs.ip, '127.0.0.1');
    assert.ok(Math.abs(wallClock(lastFailed.attrs.gmtTime) - Date.now()) < 60_000);
    failing.close();
  });

  test('readSession resends the session message with the request id', async () => {
    const { address, password } = await newAccount('secret', 'Real Name');
    const client = await loggedInClient(server.ports.ximss, address, password);
    const original = client.received.find((m) => m.name === 'session')!;
    const reply = await client.request('<readSession id="rs"/>');
    assert.equal(reply.messages.length, 1);
    const again = reply.messages[0]!;
    assert.equal(again.name, 'session');
    assert.equal(again.attrs.id, 'rs');
    for (const key of ['urlID', 'userName', 'realName', 'version']) assert.equal(again.attrs[key], original.attrs[key], key);
    assert.equal(again.attrs.realName, 'Real Name');
    client.close();
  });

  test('listKnownValues lists time zones and charsets', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const values = (await client.request('<listKnownValues/>')).messages[0]!;
    assert.equal(values.name, 'knownValues');
    const tz = values.elements('tzid').map((e) => e.attrs.name);
    const charsets = values.elements('charset').map((e) => e.attrs.name?.toLowerCase());
    assert.ok(tz.includes('Asia/Tokyo'));
    assert.ok(tz.includes('Europe/Berlin'));
    assert.ok(charsets.includes('utf-8'));
    assert.ok(charsets.includes('iso-8859-1'));
    client.close();
  });
});

describe('session data and language', () => {
  test('setSessionData / getSessionData: whole dictionary, one key, delete', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const empty = (await client.request('<getSessionData id="g0"/>')).messages[0]!;
    assert.equal(empty.name, 'sessionData');
    assert.equal(empty.attrs.id, 'g0');
    assert.equal(empty.children.length, 0);

    expectOk(
      await client.request(
        '<setSessionData><subKey key="a">1</subKey><subKey key="list"><subValue>x</subValue><subValue>y</subValue></subKey></setSessionData>',
      ),
    );
    const all = (await client.request('<getSessionData/>')).messages[0]!;
    assert.equal(all.toString().replace(/ id="[^"]*"/, ''), '<sessionData><subKey key="a">1</subKey><subKey key="list"><subValue>x</subValue><subValue>y</subValue></subKey></sessionData>');

    expectOk(await client.request('<setSessionData name="b">hello</setSessionData>'));
    const one = (await client.request('<getSessionData name="b"/>')).messages[0]!;
    assert.equal(one.attrs.name, 'b');
    assert.equal(one.text(), 'hello');
    const listOnly = (await client.request('<getSessionData name="list"/>')).messages[0]!;
    assert.deepEqual(listOnly.elements('subValue').map((e) => e.text()), ['x', 'y']);

    expectOk(await client.request('<setSessionData name="a" delete="yes"/>'));
    const afterDelete = (await client.request('<getSessionData/>')).messages[0]!;
    assert.deepEqual(afterDelete.elements('subKey').map((e) => e.attrs.key), ['list', 'b']);
    const missing = await client.request('<getSessionData name="a"/>');
    assert.equal(missing.messages[0]?.children.length ?? 0, 0);

    failed(await client.request('<setSessionData><bogus/></setSessionData>'));

    // Keys are the client's: names of Object.prototype members are plain keys.
    expectOk(await client.request('<setSessionData name="__proto__">p</setSessionData>'));
    assert.equal((await client.request('<getSessionData name="__proto__"/>')).messages[0]!.text(), 'p');
    assert.equal((await client.request('<getSessionData name="constructor"/>')).messages[0]!.children.length, 0);
    expectOk(await client.request('<setSessionData name="__proto__" delete="yes"/>'));

    // Session data belongs to the session, not the account.
    const other = await loggedInClient(server.ports.ximss, address, password);
    assert.equal((await other.request('<getSessionData/>')).messages[0]!.children.length, 0);
    other.close();

    expectOk(await client.request('<setSessionData delete="yes"/>'));
    assert.equal((await client.request('<getSessionData/>')).messages[0]!.children.length, 0);
    client.close();
  });

  test('getLanguage / setLanguage', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const initial = (await client.request('<getLanguage id="l"/>')).messages[0]!;
    assert.equal(initial.name, 'language');
    assert.equal(initial.attrs.id, 'l');
    assert.equal(initial.text(), 'English');
    expectOk(await client.request('<setLanguage language="German"/>'));
    assert.equal((await client.request('<getLanguage/>')).messages[0]!.text(), 'German');
    failed(await client.request('<setLanguage/>'));
    failed(await client.request('<setLanguage language="../../etc/passwd"/>'));
    assert.equal((await client.request('<getLanguage/>')).messages[0]!.text(), 'German');
    client.close();
  });
});

describe('readStrings', () => {
  test('strings with a body; with a future timeModified, no body', async () => {
    const { address, password } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const full = (await client.request('<readStrings id="r1"/>')).messages[0]!;
    assert.equal(full.name, 'strings');
    assert.equal(full.attrs.id, 'r1');
    assert.equal(full.attrs.language, '');
    assert.match(full.attrs.timeModified ?? '', TIME);
    assert.ok(full.elements().length > 0, 'the vocabulary has entries');
    assert.equal(full.elements('string').find((e) => e.attrs.name === 'AppendButton')?.text(), 'Append');
    for (const entry of full.elements()) {
      assert.ok(entry.name === 'string' || entry.name === 'strings', `unexpected <${entry.name}>`);
      assert.ok(entry.attrs.name, 'top-level entries are named');
    }

    const future = (await client.request('<readStrings timeModified="29991231T235959"/>')).messages[0]!;
    assert.equal(future.name, 'strings');
    assert.equal(future.children.length, 0, 'no body when the client copy is newer');
    assert.equal(future.attrs.timeModified, full.attrs.timeModified);

    const same = (await client.request(`<readStrings timeModified="${full.attrs.timeModified}"/>`)).messages[0]!;
    assert.equal(same.children.length, 0, 'no body when the client copy is as new');

    const past = (await client.request('<readStrings timeModified="20000101T000000"/>')).messages[0]!;
    assert.equal(past.elements().length, full.elements().length);

    const language = (await client.request('<readStrings language="English"/>')).messages[0]!;
    assert.equal(language.attrs.language, 'English');
    assert.ok(language.elements().length > 0);

    failed(await client.request('<readStrings timeModified="yesterday"/>'));
    client.close();
  });
});

describe('signup and recoverPassword', () => {
  test('signup is refused unless the domain allows it', async () => {
    const client = await XimssClient.connect(server.ports.ximss);
    const features = (await client.request('<listFeatures/>')).messages[0]!;
    assert.equal(features.element('signup'), undefined);
    failed(await client.request('<signup userName="newbie" password="pw"/>'));
    assert.equal(await server.services.accounts.find('newbie@example.test'), undefined);
    client.close();
  });

  test('with SignupAllowed=Yes, signup creates an account that can log in (and does not log in)', async () => {
    await server.services.accounts.createDomain('signup.test');
    await server.services.accounts.updateDomainSettings('signup.test', { SignupAllowed: 'Yes' });
    const client = await XimssClient.connect(server.ports.ximss);
    const features = (await client.request('<listFeatures domain="signup.test"/>')).messages[0]!;
    assert.ok(features.element('signup'), 'listFeatures advertises signup');
    expectOk(await client.request('<signup userName="joiner" password="join-pw" realName="Jo Iner" recoverPassword="jo@elsewhere.test"/>'));
    failed(await client.request('<noop/>'), 'noop right after signup (signup does not log in)');
    failed(await client.request('<signup userName="joiner" password="other"/>'), 'a second signup with the same name');
    failed(await client.request('<signup userName="nopass"/>'));
    const created = await server.services.accounts.find('joiner@signup.test');
    assert.ok(created);
    assert.equal(created.recoveryEmail, 'jo@elsewhere.test');
    const session = (await client.login('joiner@signup.test', 'join-pw')).messages[0]!;
    assert.equal(session.attrs.userName, 'joiner@signup.test');
    assert.equal(session.attrs.realName, 'Jo Iner');
    client.close();
    // The permission is per domain: the default domain still refuses.
    const other = await XimssClient.connect(server.ports.ximss);
    failed(await other.request('<signup domain="example.test" userName="sneaky" password="pw"/>'));
    other.close();
  });

  test('signup is rate-limited per client address, apart from logins, until the window passes', async () => {
    const limited = await startTestServer({ limits: { loginFailuresPerAddress: 3, loginFailureWindowSeconds: 0.6, loginFailureDelayMs: 0 } });
    try {
      await limited.services.accounts.createDomain('open.test');
      await limited.services.accounts.updateDomainSettings('open.test', { SignupAllowed: 'Yes' });
      await limited.addAccount('user@open.test', 'user-pw');
      const client = await XimssClient.connect(limited.ports.ximss);
      const signup = (name: string) => client.request(`<signup domain="open.test" userName="${name}" password="pw"/>`);
      expectOk(await signup('first'));
      failed(await signup('first'), 'a taken name'); // attempts count, not only the successful ones
      expectOk(await signup('third'));
      const refused = failed(await signup('fourth'), 'a sign-up past the limit');
      assert.equal(refused, 'too many sign-ups from this address; try again later');
      assert.equal(await limited.services.accounts.find('fourth@open.test'), undefined);
      // Logins from the address are not affected.
      const other = await loggedInClient(limited.ports.ximss, 'user@open.test', 'user-pw');
      other.close();
      await sleep(700);
      expectOk(await signup('fourth'), 'a sign-up after the window');
      assert.ok(await limited.services.accounts.find('fourth@open.test'));
      client.close();
    } finally {
      await limited.stop();
    }
  });

  test('recoverPassword answers with an honest error', async () => {
    const { address } = await newAccount();
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await client.request(`<recoverPassword userName="${address}"/>`);
    assert.equal(reply.messages.length, 0);
    failed(reply);
    assert.equal(reply.response.attrs.errorNum, '500');
    assert.ok((await client.request('<listFeatures/>')).messages[0], 'the connection is still usable');
    client.close();
  });
});

describe('alerts and server-initiated bye', () => {
  test('an alert posted to a logged-in account arrives as an async <alert gmtTime localTime>', async () => {
    const { address, password, account } = await newAccount();
    await server.services.accounts.updatePrefs(await account(), { TimeZone: 'Asia/Tokyo' });
    const client = await loggedInClient(server.ports.ximss, address, password);
    const second = await loggedInClient(server.ports.ximss, address, password);
    const text = 'Please <logout> & "come back" later — ☺';
    await server.services.alerts.post(await account(), text);
    const alert = await client.nextAsync('alert', 2000);
    assert.equal(alert.attrs.id, undefined);
    assert.deepEqual(Object.keys(alert.attrs).sort(), ['gmtTime', 'localTime']);
    assert.equal(alert.text(), text);
    assert.ok(Math.abs(wallClock(alert.attrs.gmtTime) - Date.now()) < 5000);
    assert.equal(wallClock(alert.attrs.localTime) - wallClock(alert.attrs.gmtTime), 9 * 3600_000);
    assert.equal((await second.nextAsync('alert', 2000)).text(), text, 'every session of the account gets it');
    // The confirmation is written after the alert is sent: it lands soon after.
    const accountId = (await account()).id;
    await eventually(async () => (await server.services.alerts.pending(accountId)).length === 0, 'shown alerts are confirmed');
    // Async messages interleave with responses but never carry an id.
    expectOk(await client.request('<noop/>'));
    client.close();
    second.close();
  });

  test('alerts posted in quick succession are all delivered, in order', async () => {
    const { address, password, account } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const record = await account();
    const expected: string[] = [];
    const got: string[] = [];
    // The second alert of each pair is posted while the delivery of the first is under way;
    // nothing else happens until both have arrived (or not).
    for (let ticks = 0; ticks < 8; ticks++) {
      expected.push(`first ${ticks}`, `second ${ticks}`);
      void server.services.alerts.post(record, `first ${ticks}`);
      for (let i = 0; i < ticks; i++) await Promise.resolve();
      void server.services.alerts.post(record, `second ${ticks}`);
      for (let i = 0; i < 2; i++) got.push((await client.nextAsync('alert', 500).catch(() => undefined))?.text() ?? '(missing)');
    }
    assert.deepEqual(got, expected);
    client.close();
  });

  test('an alert posted while logged out arrives after the next login, exactly once', async () => {
    const { address, password, account } = await newAccount();
    await server.services.alerts.post(await account(), 'while you were away');
    await server.services.alerts.post(await account(), 'and another one');
    const client = await loggedInClient(server.ports.ximss, address, password);
    const first = await client.nextAsync('alert', 2000);
    const second = await client.nextAsync('alert', 2000);
    assert.deepEqual([first.text(), second.text()], ['while you were away', 'and another one']);
    const response = client.received.findIndex((m) => m.name === 'response');
    assert.ok(client.received.indexOf(first) > response, 'alerts come after the login response');
    expectOk(await client.request('<bye/>'));
    await client.waitClosed();
    const again = await loggedInClient(server.ports.ximss, address, password);
    await sleep(300);
    expectOk(await again.request('<noop/>'));
    assert.equal(again.received.filter((m) => m.name === 'alert').length, 0, 'not shown twice');
    again.close();
  });

  test('removing an account ends its sessions with <bye/>', async () => {
    const { address, password, account } = await newAccount();
    const client = await loggedInClient(server.ports.ximss, address, password);
    const bystander = await newAccount();
    const other = await loggedInClient(server.ports.ximss, bystander.address, bystander.password);
    await server.services.accounts.remove(await account());
    const bye = await client.nextAsync('bye', 2000);
    assert.deepEqual(bye.attrs, {});
    await client.waitClosed(2000);
    assert.equal(other.closed, false);
    expectOk(await other.request('<noop/>'));
    other.close();
    const relogin = await XimssClient.connect(server.ports.ximss);
    const reply = await relogin.request(new XmlElement('login', { authData: address, password }));
    assert.equal(reply.response.attrs.errorText, 'incorrect password or account name');
    relogin.close();
  });
});
