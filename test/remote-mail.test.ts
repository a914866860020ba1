/**
 * Remote POP and IMAP accounts (rpopList/rpopUpdate, rimapList/rimapUpdate, the poller), against
 * a real Dovecot (POP3 and IMAP, started once for the file on loopback, test/fixtures/dovecot.ts):
 * messages put into the remote Maildir arrive once, through the Mail Rules, into the record's
 * mailbox; leave-on-server on and off; a server restart between polls fetches nothing twice;
 * a port with nothing listening, a server that accepts and never answers, and a wrong password
 * each leave their error in the list. The record dictionaries are checked (and refused with
 * clear errors), the password never listed back nor stored in clear.
 *
 * Nothing here depends on how long anything takes: polls are observed through the records'
 * lastPoll and the stored messages, with deadlines only so that a lost poll fails.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import type { RemoteMailKind } from '../src/store/remote-mail.js';
import { startDovecot, type DovecotServer } from './fixtures/dovecot.js';
import { capturingLogger, eventually, fails, freePort, ok, startTestServer, storedMessages, type TestServer, type XimssClient } from './helpers.js';

const REMOTE_CONFIG = {
  remoteMail: { allowPrivate: true, minIntervalSeconds: 1, defaultIntervalSeconds: 1, timeoutSeconds: 2, leaseSeconds: 10, maxBackoffSeconds: 2, recordsPerAccount: 4, caFile: '' },
};
/** The remote server's certificate (for 127.0.0.1), trusted through remoteMail.caFile. */
const caDir = mkdtempSync(join(tmpdir(), 'rmail-ca-'));
const CA_FILE = join(caDir, 'ca.pem');

let dovecot: DovecotServer;
let server: TestServer;
let remoteUsers = 0;
const REMOTE_PASSWORD = 'remote-Secret-4471';

before(async () => {
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'remote.test' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  });
  writeFileSync(CA_FILE, pems.cert);
  REMOTE_CONFIG.remoteMail.caFile = CA_FILE;
  dovecot = await startDovecot(Array.from({ length: 16 }, (_, i) => ({ name: `r${i + 1}`, password: REMOTE_PASSWORD })), { cert: pems.cert, key: pems.private });
  server = await startTestServer(REMOTE_CONFIG);
});
after(async () => {
  await server?.stop();
  await dovecot?.stop();
  rmSync(caDir, { recursive: true, force: true });
});

/** A remote user of its own (a fresh Maildir). */
function remoteUser(): string {
  remoteUsers++;
  assert.ok(remoteUsers <= 16, 'the fixture has 16 remote users');
  return `r${remoteUsers}`;
}

function message(subject: string, extra = ''): string {
  return `From: Sender <sender@remote.test>\r\nTo: someone@remote.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@remote.test>\r\n${extra}\r\nBody of ${subject}.\r\n`;
}

/** A local account allowed to keep remote accounts, logged in. */
async function localUser(target = server): Promise<{ address: string; client: XimssClient }> {
  const address = await target.newAccount('fetcher');
  const account = (await target.services.accounts.find(address))!;
  await target.services.accounts.setSettings(account, { RPOPAllowed: 'Yes' });
  const { client } = await target.login(address, 'secret');
  return { address, client };
}

function recordElement(kind: RemoteMailKind, name: string, dict: Record<string, string> | undefined, mode?: string): XmlElement {
  const record = new XmlElement(kind === 'pop' ? 'rpopRecord' : 'rimapRecord', { name, mode });
  for (const [key, value] of Object.entries(dict ?? {})) record.add('subKey', { key }, value);
  return record;
}

function update(kind: RemoteMailKind, ...records: XmlElement[]): XmlElement {
  const request = new XmlElement(kind === 'pop' ? 'rpopUpdate' : 'rimapUpdate');
  for (const r of records) request.children.push(r);
  return request;
}

function dict(kind: RemoteMailKind, user: string, extra: Record<string, string> = {}): Record<string, string> {
  return { domain: `127.0.0.1:${kind === 'pop' ? dovecot.pop3Port : dovecot.imapPort}`, authName: user, password: REMOTE_PASSWORD, period: '1', ...extra };
}

async function listRecords(client: XimssClient, kind: RemoteMailKind): Promise<XmlElement[]> {
  return (await ok(client, new XmlElement(kind === 'pop' ? 'rpopList' : 'rimapList'))).messages;
}

/** The stored record (for its lastPoll: a poll ended). */
async function stored(target: TestServer, address: string, kind: RemoteMailKind, name: string) {
  const account = (await target.services.accounts.find(address))!;
  return target.services.store.remoteMail.get(account.id, kind, name);
}

/** Waits for a poll of the record that starts after this call (so everything before it was seen). */
async function nextPoll(target: TestServer, address: string, kind: RemoteMailKind, name: string): Promise<void> {
  const before = (await stored(target, address, kind, name))?.lastPoll ?? 0;
  // One that may be running now ends first; the one after it started after this call.
  const first = await eventually(async () => ((await stored(target, address, kind, name))?.lastPoll ?? 0) > before && (await stored(target, address, kind, name))!.lastPoll!, 'a poll', 20_000);
  await eventually(async () => ((await stored(target, address, kind, name))?.lastPoll ?? 0) > first, 'the poll after it', 20_000);
}

function subjects(messages: { raw: Buffer }[]): string[] {
  return messages.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString('latin1'))?.[1]?.trim() ?? '?').sort();
}

for (const kind of ['pop', 'imap'] as const) {
  describe(`${kind === 'pop' ? 'remote POP' : 'remote IMAP'} against Dovecot`, () => {
    test('leave on server: each message arrives once, later ones too; the remote keeps them all', async () => {
      const remote = remoteUser();
      dovecot.deliver(remote, message(`${kind} one`));
      dovecot.deliver(remote, message(`${kind} two`));
      const { address, client } = await localUser();
      await ok(client, update(kind, recordElement(kind, 'work', dict(kind, remote, { leave: 'YES' }))));
      await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 2, 'two messages fetched', 20_000);
      dovecot.deliver(remote, message(`${kind} three`));
      await eventually(async () => (await storedMessages(server, address, 'INBOX')).length >= 3, 'the third message', 20_000);
      await nextPoll(server, address, kind, 'work');
      const local = await storedMessages(server, address, 'INBOX');
      assert.deepEqual(subjects(local), [`${kind} one`, `${kind} three`, `${kind} two`], 'each once, after more polls');
      assert.equal(dovecot.remaining(remote), 3, 'left on the server');
      const raw = local[0]!.raw.toString('latin1');
      assert.match(raw, /^Return-Path: <sender@remote\.test>\r\n/, 'delivered with the sender as the reverse path');
      assert.match(raw, new RegExp(`^Received: from 127\\.0\\.0\\.1 .* with ${kind === 'pop' ? 'POP3' : 'IMAP'} for <`, 'm'));
      const [record] = await listRecords(client, kind);
      assert.equal(record!.attrs.name, 'work');
      assert.ok(record!.attrs.timeCompleted, 'timeCompleted');
      assert.equal(record!.attrs.errorText, undefined);
    });

    test('leave off: fetched messages are deleted on the remote server; the mailbox key and Mail Rules are applied', async () => {
      const remote = remoteUser();
      dovecot.deliver(remote, message(`${kind} keep`));
      dovecot.deliver(remote, message(`${kind} ruled`));
      const { address, client } = await localUser();
      const rule = new XmlElement('ruleSet', { type: 'mailIn', name: 'R', priority: 5 });
      rule.add('condition', { opCode: 'Subject', operator: 'is' }, `${kind} ruled`);
      rule.add('action', { opCode: 'Store in' }, 'Ruled');
      rule.add('action', { opCode: 'Discard' });
      await ok(client, rule);
      await ok(client, update(kind, recordElement(kind, 'gone', dict(kind, remote, { leave: 'NO', mailbox: 'Fetched' }))));
      await eventually(() => dovecot.remaining(remote) === 0, 'the remote emptied', 20_000);
      await eventually(async () => (await storedMessages(server, address, 'Fetched')).length === 1, 'delivered into Fetched', 20_000);
      assert.deepEqual(subjects(await storedMessages(server, address, 'Fetched')), [`${kind} keep`]);
      assert.deepEqual(subjects(await storedMessages(server, address, 'Ruled')), [`${kind} ruled`], 'the Mail Rule stored it');
      assert.deepEqual(await storedMessages(server, address, 'INBOX'), []);
      dovecot.deliver(remote, message(`${kind} later`));
      await eventually(() => dovecot.remaining(remote) === 0, 'the later one fetched and deleted', 20_000);
      assert.deepEqual(subjects(await storedMessages(server, address, 'Fetched')), [`${kind} keep`, `${kind} later`]);
    });

    test('a wrong password: the error is in the list, and nothing is fetched', async () => {
      const remote = remoteUser();
      dovecot.deliver(remote, message(`${kind} locked`));
      const { address, client } = await localUser();
      await ok(client, update(kind, recordElement(kind, 'bad', dict(kind, remote, { password: 'wrong-password' }))));
      const record = await eventually(async () => (await listRecords(client, kind)).find((r) => r.attrs.errorText !== undefined), 'an error', 20_000);
      assert.match(record.attrs.errorText!, /login refused|authentication failed/i);
      assert.ok(record.attrs.timeCompleted);
      assert.deepEqual(await storedMessages(server, address, 'INBOX'), []);
      assert.equal(dovecot.remaining(remote), 1);
      // The right password (a replacement) clears the error on the next poll.
      await ok(client, update(kind, recordElement(kind, 'bad', dict(kind, remote))));
      await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 1, 'fetched with the right password', 20_000);
      await eventually(async () => (await listRecords(client, kind))[0]!.attrs.errorText === undefined, 'the error cleared', 20_000);
    });

    test('a port with nothing listening, and a server that accepts and never answers: errors in the list', async () => {
      const { client } = await localUser();
      const closedPort = await freePort();
      const silent = net.createServer(() => {});
      const sockets = new Set<net.Socket>();
      silent.on('connection', (s) => sockets.add(s));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const silentPort = (silent.address() as net.AddressInfo).port;
      try {
        await ok(
          client,
          update(
            kind,
            recordElement(kind, 'closed', { ...dict(kind, 'nobody'), domain: `127.0.0.1:${closedPort}` }),
            recordElement(kind, 'silent', { ...dict(kind, 'nobody'), domain: `127.0.0.1:${silentPort}` }),
          ),
        );
        const errors = await eventually(async () => {
          const list = await listRecords(client, kind);
          const texts = Object.fromEntries(list.map((r) => [r.attrs.name, r.attrs.errorText]));
          return texts.closed !== undefined && texts.silent !== undefined && texts;
        }, 'both errors', 30_000);
        assert.match(errors.closed!, /refused/i);
        assert.match(errors.silent!, /did not answer|time/i);
        // The server stays up and answers.
        await ok(client, '<noop id="n"/>');
      } finally {
        for (const s of sockets) s.destroy();
        silent.close();
      }
    });
  });
}

describe('TLS', () => {
  for (const kind of ['pop', 'imap'] as const) {
    test(`${kind}: STARTTLS on the plain port and TLS from the first byte, the certificate checked against remoteMail.caFile`, async () => {
      const remote = remoteUser();
      dovecot.deliver(remote, message(`${kind} over tls`));
      const { address, client } = await localUser();
      const tlsPort = kind === 'pop' ? dovecot.pop3sPort! : dovecot.imapsPort!;
      await ok(
        client,
        update(
          kind,
          recordElement(kind, 'starttls', dict(kind, remote, { TLS: 'STARTTLS' })),
          recordElement(kind, 'tls', { ...dict(kind, remote, { TLS: 'YES' }), domain: `127.0.0.1:${tlsPort}` }),
        ),
      );
      await eventually(async () => {
        const list = await listRecords(client, kind);
        return list.length === 2 && list.every((r) => r.attrs.timeCompleted !== undefined && r.attrs.errorText === undefined);
      }, 'both polled without an error', 20_000);
      // Both records fetched the one message; each record delivers it (they are two records).
      await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 2, 'a copy per record', 20_000);
      // A server whose certificate is not trusted (another server's CA): refused.
      const strict = await startTestServer({ ...REMOTE_CONFIG, remoteMail: { ...REMOTE_CONFIG.remoteMail, caFile: '' } });
      try {
        const other = await localUser(strict);
        await ok(other.client, update(kind, recordElement(kind, 'untrusted', { ...dict(kind, remote, { TLS: 'YES' }), domain: `127.0.0.1:${tlsPort}` })));
        const error = await eventually(async () => (await listRecords(other.client, kind))[0]?.attrs.errorText, 'the certificate error', 20_000);
        assert.match(error, /certificate/i);
        assert.deepEqual(await storedMessages(strict, other.address, 'INBOX'), []);
      } finally {
        await strict.stop();
      }
    });
  }
});

describe('a restart between polls', () => {
  test('a server restarted on the same data fetches nothing twice (POP3 and IMAP, leave on server)', async () => {
    const popRemote = remoteUser();
    const imapRemote = remoteUser();
    dovecot.deliver(popRemote, message('restart pop one'));
    dovecot.deliver(imapRemote, message('restart imap one'));
    let first = await startTestServer(REMOTE_CONFIG);
    const dataDir = first.dataDir;
    const { address, client } = await localUser(first);
    await ok(client, update('pop', recordElement('pop', 'p', dict('pop', popRemote))));
    await ok(client, update('imap', recordElement('imap', 'i', dict('imap', imapRemote))));
    await eventually(async () => (await storedMessages(first, address, 'INBOX')).length === 2, 'both fetched', 20_000);
    client.close();
    await first.close();
    first = await startTestServer({ ...REMOTE_CONFIG, dataDir });
    try {
      await nextPoll(first, address, 'pop', 'p');
      await nextPoll(first, address, 'imap', 'i');
      assert.deepEqual(subjects(await storedMessages(first, address, 'INBOX')), ['restart imap one', 'restart pop one'], 'nothing again after the restart');
      dovecot.deliver(popRemote, message('restart pop two'));
      dovecot.deliver(imapRemote, message('restart imap two'));
      await eventually(async () => (await storedMessages(first, address, 'INBOX')).length >= 4, 'the new ones', 20_000);
      await nextPoll(first, address, 'pop', 'p');
      await nextPoll(first, address, 'imap', 'i');
      assert.deepEqual(subjects(await storedMessages(first, address, 'INBOX')), ['restart imap one', 'restart imap two', 'restart pop one', 'restart pop two']);
    } finally {
      await first.stop();
    }
  });
});

describe('limits while polling', () => {
  for (const kind of ['pop', 'imap'] as const) {
    test(`${kind}: at most messagesPerPoll per poll (the rest soon after); a message over maxMessageBytes stays on the server, named in the error`, async () => {
      const capture = capturingLogger('info');
      const limited = await startTestServer({ remoteMail: { ...REMOTE_CONFIG.remoteMail, messagesPerPoll: 2, maxMessageBytes: 1024 } }, { log: capture.log });
      try {
        const remote = remoteUser();
        for (let i = 1; i <= 5; i++) dovecot.deliver(remote, message(`${kind} small ${i}`));
        dovecot.deliver(remote, message(`${kind} big`, `X-Filler: ${'z'.repeat(2000)}\r\n`));
        const { address, client } = await localUser(limited);
        await ok(client, update(kind, recordElement(kind, 'lim', dict(kind, remote, { leave: 'NO' }))));
        await eventually(async () => (await storedMessages(limited, address, 'INBOX')).length === 5, 'the five small ones', 30_000);
        const record = await eventually(async () => (await listRecords(client, kind))[0]!.attrs.errorText, 'the size error', 30_000);
        assert.match(record, /^1 message\(s\) larger than 1024 bytes left on the server/);
        await eventually(() => dovecot.remaining(remote) === 1, 'only the big one left', 30_000);
        assert.deepEqual(subjects(await storedMessages(limited, address, 'INBOX')), [1, 2, 3, 4, 5].map((i) => `${kind} small ${i}`));
        const polls = capture.events('remoteMail.polled').concat(capture.events('remoteMail.poll_failed'));
        assert.ok(polls.length >= 3, `several polls: ${polls.length}`);
        for (const p of polls) assert.ok((p.fetched as number) <= 2, `fetched ${String(p.fetched)} in one poll`);
        assert.ok(capture.events('remoteMail.polled').some((p) => p.more === true), 'a poll said more was waiting');
        const metrics = await limited.services.metrics.text();
        assert.match(metrics, new RegExp(`^ximssd_remote_mail_fetched_total\\{kind="${kind}"\\} 5$`, 'm'));
        assert.match(metrics, new RegExp(`^ximssd_remote_mail_errors_total\\{kind="${kind}"\\} [1-9]`, 'm'), 'the size errors counted');
      } finally {
        await limited.stop();
      }
    });
  }
});

describe('IMAP UIDVALIDITY', () => {
  test('a new UIDVALIDITY of the remote INBOX fetches it again from the start (logged), and goes on from there', async () => {
    const capture = capturingLogger('info');
    const watched = await startTestServer(REMOTE_CONFIG, { log: capture.log });
    try {
      const remote = remoteUser();
      dovecot.deliver(remote, message('validity one'));
      const { address, client } = await localUser(watched);
      await ok(client, update('imap', recordElement('imap', 'v', dict('imap', remote))));
      await eventually(async () => (await storedMessages(watched, address, 'INBOX')).length === 1, 'the first', 20_000);
      const before = (await stored(watched, address, 'imap', 'v'))!;
      assert.ok(before.uidValidity !== null && before.lastUid >= 1);
      // Dovecot numbers a Maildir afresh when its uidlist and indexes are gone: a new UIDVALIDITY
      // from the clock's second, so a second after the first one.
      await eventually(() => Math.floor(Date.now() / 1000) > before.uidValidity!, 'a later second', 5000);
      dovecot.resetUids(remote);
      dovecot.deliver(remote, message('validity two'));
      await eventually(() => capture.events('remoteMail.uidvalidity_changed').length > 0, 'the change noticed', 20_000);
      await eventually(async () => (await storedMessages(watched, address, 'INBOX')).length === 3, 'both fetched again under the new UIDVALIDITY', 20_000);
      const after = (await stored(watched, address, 'imap', 'v'))!;
      assert.notEqual(after.uidValidity, before.uidValidity);
      await nextPoll(watched, address, 'imap', 'v');
      assert.deepEqual(subjects(await storedMessages(watched, address, 'INBOX')), ['validity one', 'validity one', 'validity two'], 'then nothing more');
    } finally {
      await watched.stop();
    }
  });
});

describe('records: rpopUpdate / rimapUpdate / lists', () => {
  test('the list shows the dictionary without the password; an update without a password keeps it; delete mode removes', async () => {
    const { address, client } = await localUser();
    const closedPort = await freePort();
    await ok(client, update('pop', recordElement('pop', 'a', { domain: `127.0.0.1:${closedPort}`, authName: 'u', password: 'pw-in-clear-8812', period: '10m', leave: 'NO', TLS: 'NO' })));
    const [record] = await listRecords(client, 'pop');
    const keys = Object.fromEntries(record!.elements('subKey').map((k) => [k.attrs.key, k.text()]));
    assert.deepEqual(keys, { domain: '127.0.0.1', port: String(closedPort), TLS: 'NO', authName: 'u', mailbox: 'INBOX', leave: 'NO', period: '600' });
    assert.ok(!JSON.stringify(record!).includes('pw-in-clear-8812'));
    const storedRecord = (await stored(server, address, 'pop', 'a'))!;
    assert.ok(!storedRecord.sealedPassword.includes('pw-in-clear-8812'), 'sealed in the store');
    assert.equal(server.services.secrets.open(storedRecord.sealedPassword, `rpop:${storedRecord.accountId}:a`), 'pw-in-clear-8812');
    // Without a password: kept (same server and user), refused for another user.
    await ok(client, update('pop', recordElement('pop', 'a', { domain: `127.0.0.1:${closedPort}`, authName: 'u', period: '20m' })));
    assert.equal((await stored(server, address, 'pop', 'a'))!.sealedPassword, storedRecord.sealedPassword);
    await fails(client, update('pop', recordElement('pop', 'a', { domain: `127.0.0.1:${closedPort}`, authName: 'other' })), /needs a password/);
    assert.deepEqual(await listRecords(client, 'imap'), [], 'RIMAP records are apart');
    await ok(client, update('pop', recordElement('pop', 'a', undefined, 'delete')));
    assert.deepEqual(await listRecords(client, 'pop'), []);
  });

  test('bad dictionaries are refused with clear errors, and nothing is stored', async () => {
    const { client } = await localUser();
    const base = { domain: 'pop.example.test', authName: 'u', password: 'p' };
    const cases: [Record<string, string>, RegExp][] = [
      [{ authName: 'u', password: 'p' }, /no domain/],
      [{ ...base, domain: 'bad host!' }, /not a host name/],
      [{ ...base, port: '70000' }, /port must be a number, 1 to 65535/],
      [{ ...base, domain: 'pop.example.test:0' }, /port must be a number/],
      [{ ...base, period: '0' }, /period must be 1 to/],
      [{ ...base, period: '99999999d' }, /period must be|period value/],
      [{ ...base, period: 'soon' }, /period value must be/],
      [{ ...base, TLS: 'maybe' }, /TLS value/],
      [{ ...base, leave: 'perhaps' }, /leave value/],
      [{ ...base, APOP: 'YES' }, /APOP/],
      [{ domain: 'pop.example.test', password: 'p' }, /no authName/],
      [{ ...base, mailbox: 'a//b' }, /invalid mailbox name/],
    ];
    for (const [d, expected] of cases) await fails(client, update('pop', recordElement('pop', 'x', d)), expected, JSON.stringify(d));
    await fails(client, update('pop', recordElement('pop', '', base)), /no name attribute/);
    await fails(client, update('pop', recordElement('pop', 'n'.repeat(65), base)), /longer than 64/);
    await fails(client, update('pop'), /no rpopRecord/);
    await fails(client, '<rpopUpdate id="w"><rsipRecord name="a"/></rpopUpdate>', /unexpected <rsipRecord>/);
    await fails(client, '<rimapUpdate id="v"><rimapRecord name="a"><subValue>x</subValue></rimapRecord></rimapUpdate>', /must be a dictionary/);
    await fails(client, '<rimapUpdate id="v"><rimapRecord name="a"><subKey key="domain"><subValue>x</subValue></subKey></rimapRecord></rimapUpdate>', /must be a string/);
    // One bad record of two: neither is stored.
    await fails(client, update('pop', recordElement('pop', 'good', base), recordElement('pop', 'bad', { ...base, port: 'x' })), /port/);
    assert.deepEqual(await listRecords(client, 'pop'), []);
  });

  test('the limit of records per account (both kinds), and RPOPAllowed', async () => {
    const { client } = await localUser();
    const base = { domain: 'pop.example.test', authName: 'u', password: 'p' };
    await ok(client, update('pop', recordElement('pop', 'a', base), recordElement('pop', 'b', base)));
    await ok(client, update('imap', recordElement('imap', 'c', base), recordElement('imap', 'd', base)));
    await fails(client, update('imap', recordElement('imap', 'e', base)), /too many remote account records \(at most 4 per account\)/);
    await ok(client, update('imap', recordElement('imap', 'd', { ...base, period: '2h' })), 'a replacement is fine at the limit');
    const other = await server.newAccount('plain');
    const { client: plain } = await server.login(other, 'secret');
    await fails(plain, update('pop', recordElement('pop', 'a', base)), /not allowed/);
    await ok(plain, '<rpopList id="l"/>');
  });
});
