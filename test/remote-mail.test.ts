/**
 * Remote POP and IMAP accounts (rpopList/rpopUpdate, rimapList/rimapUpdate, the poller), against
 * a real Dovecot (POP3 and IMAP, started once for the file on loopback, test/fixtures/dovecot.ts):
 * messages put into the remote Maildir arrive once, through the Mail Rules, into the record's
 * mailbox; leave-on-server on and off; a server restart between polls fetches nothing twice;
 * a port with nothing listening, a server that accepts and never answers, and a wrong password
 * each leave their error in the list. The record dictionaries are checked (and refused with
 * clear errors), the password never listed back nor stored in clear.
 *
 * Then a cluster (built server processes on one PostgreSQL, test/fixtures/cluster.ts, one shared
 * secrets.keyFile): both nodes poll a POP3 and an IMAP record and every message arrives once; the
 * node holding a record's lease is killed in the middle of a poll (a proxy before Dovecot holds
 * its fifth RETR), the other takes the record over when the lease runs out and fetches the rest,
 * nothing twice; and a record made on a node with remoteMail.poll false is polled at once by the
 * other, which hears remoteMailChanged on the bus (its own scan is half an hour away).
 *
 * Nothing here depends on how long anything takes: polls are observed through the records'
 * lastPoll and the stored messages, with deadlines only so that a lost poll fails.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { openStore } from '../src/store/open.js';
import type { RemoteMailKind } from '../src/store/remote-mail.js';
import type { Store } from '../src/store/store.js';
import { startNode, ximssd, type ClusterNodeProcess } from './fixtures/cluster.js';
import { startDovecot, type DovecotServer } from './fixtures/dovecot.js';
import { listRecords, localUser, nextPoll, stored, subjects } from './fixtures/remote-mail.js';
import { startPostgres, type PostgresServer } from './fixtures/postgres.js';
import { capturingLogger, eventually, fails, freePort, loginWithUrlId, ok, startTestServer, storedMessages, type TestServer, type XimssClient } from './helpers.js';

const REMOTE_CONFIG = {
  remoteMail: { allowPrivate: true, minIntervalSeconds: 1, defaultIntervalSeconds: 1, timeoutSeconds: 2, leaseSeconds: 10, maxBackoffSeconds: 2, recordsPerAccount: 4, caFile: '' },
};
/** The remote server's certificate (for 127.0.0.1), trusted through remoteMail.caFile. */
const caDir = mkdtempSync(join(tmpdir(), 'rmail-ca-'));
const CA_FILE = join(caDir, 'ca.pem');

let dovecot: DovecotServer;
let server: TestServer;
let remoteUsers = 0;
const REMOTE_USERS = 20;
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
  dovecot = await startDovecot(Array.from({ length: REMOTE_USERS }, (_, i) => ({ name: `r${i + 1}`, password: REMOTE_PASSWORD })), { cert: pems.cert, key: pems.private });
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
  assert.ok(remoteUsers <= REMOTE_USERS, `the fixture has ${REMOTE_USERS} remote users`);
  return `r${remoteUsers}`;
}

function message(subject: string, extra = ''): string {
  return `From: Sender <sender@remote.test>\r\nTo: someone@remote.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@remote.test>\r\n${extra}\r\nBody of ${subject}.\r\n`;
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

for (const kind of ['pop', 'imap'] as const) {
  describe(`${kind === 'pop' ? 'remote POP' : 'remote IMAP'} against Dovecot`, () => {
    test('leave on server: each message arrives once, later ones too; the remote keeps them all', async () => {
      const remote = remoteUser();
      dovecot.deliver(remote, message(`${kind} one`));
      dovecot.deliver(remote, message(`${kind} two`));
      const { address, client } = await localUser(server);
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
      const { address, client } = await localUser(server);
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
      const { address, client } = await localUser(server);
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
      const { client } = await localUser(server);
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
      const { address, client } = await localUser(server);
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
    const { address, client } = await localUser(server);
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
    const { client } = await localUser(server);
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
    const { client } = await localUser(server);
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


describe('remote mail in a cluster', () => {
  let pg: PostgresServer;
  let keyDir: string;
  const nodes: ClusterNodeProcess[] = [];
  const clients: XimssClient[] = [];
  const stores: Store[] = [];
  const proxies: { close(): void }[] = [];
  /** The cluster of the first test (the second kills one of its nodes). */
  let main: Awaited<ReturnType<typeof cluster>> | undefined;

  before(async () => {
    pg = await startPostgres();
    // Every node opens what another sealed: one key file for all.
    keyDir = mkdtempSync(join(tmpdir(), 'rmail-key-'));
    writeFileSync(join(keyDir, 'secret.key'), `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  });

  after(async () => {
    for (const client of clients) client.close();
    for (const proxy of proxies) proxy.close();
    await Promise.all(nodes.map((n) => n.stop()));
    for (const store of stores) await store.close();
    await pg?.stop();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  /** A database, two nodes on it with these remoteMail settings, a store to look with, and an account allowed to keep remote accounts. */
  async function cluster(database: string, remoteMail: [Record<string, unknown>, Record<string, unknown>], ids: [string, string]) {
    const url = await pg.createDatabase(database);
    const config = (settings: Record<string, unknown>): Record<string, unknown> => ({
      remoteMail: { allowPrivate: true, minIntervalSeconds: 1, defaultIntervalSeconds: 1, maxBackoffSeconds: 2, caFile: '', ...settings },
      secrets: { keyFile: join(keyDir, 'secret.key') },
    });
    const pair = await Promise.all([startNode(ids[0], url, config(remoteMail[0])), startNode(ids[1], url, config(remoteMail[1]))]);
    nodes.push(...pair);
    const address = `fetcher@example.test`;
    for (const args of [['account', 'add', address, '--password', 'secret'], ['account', 'set', address, 'RPOPAllowed=Yes']]) {
      const result = await ximssd([...args, '--store', url]);
      assert.equal(result.code, 0, result.stderr);
    }
    const store = await openStore(url, '/nonexistent');
    stores.push(store);
    const accountId = (await store.accounts.get('example.test', 'fetcher'))!.id;
    const sessions = await Promise.all(pair.map(async (node) => (await loginWithUrlId(node.ports.ximss, address, 'secret')).client));
    clients.push(...sessions);
    return { pair, store, accountId, sessions };
  }

  /** The subjects in a mailbox of the account, as a node shows them (folderOpen, folderBrowse); none while it does not exist. */
  let views = 0;
  async function inboxSubjects(client: XimssClient, mailbox = 'INBOX'): Promise<string[]> {
    const folder = `view${++views}`;
    if (mailbox !== 'INBOX' && !(await ok(client, '<mailboxList/>')).messages.some((m) => m.attrs.mailbox === mailbox)) return [];
    await ok(client, `<folderOpen folder="${folder}" mailbox="${mailbox}" sortField="INTERNALDATE"><field>Subject</field></folderOpen>`);
    try {
      const reports = (await ok(client, `<folderBrowse folder="${folder}"><index from="0" till="100000"/></folderBrowse>`)).messages.filter((m) => m.name === 'folderReport');
      return reports.map((r) => r.element('Subject')?.text() ?? '?').sort();
    } finally {
      await ok(client, `<folderClose folder="${folder}"/>`);
    }
  }

  /** Waits for a poll of the record (on any node) that starts after this call. */
  async function nextClusterPoll(store: Store, accountId: number, kind: RemoteMailKind, name: string): Promise<void> {
    const lastPoll = async (): Promise<number> => (await store.remoteMail.get(accountId, kind, name))?.lastPoll ?? 0;
    const before = await lastPoll();
    const first = await eventually(async () => (await lastPoll()) > before && (await lastPoll()), 'a poll', 30_000);
    await eventually(async () => (await lastPoll()) > first, 'the poll after it', 30_000);
  }

  /** The nodes' log lines of this event (JSON, one a line). */
  function events(node: ClusterNodeProcess, event: string): Record<string, unknown>[] {
    const found: Record<string, unknown>[] = [];
    for (const line of node.output().split('\n')) {
      if (!line.includes(`"event":"${event}"`)) continue;
      try {
        found.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // the last line, still being written
      }
    }
    return found;
  }

  function numbered(prefix: string, from: number, to: number): string[] {
    return Array.from({ length: to - from + 1 }, (_, i) => `${prefix} ${from + i}`);
  }

  test('both nodes poll a POP3 and an IMAP record (leave on server): every message arrives once, and more polls add nothing', async (t) => {
    // One poll at a time per node, five messages a poll: the records go back and forth between the nodes.
    const settings = { timeoutSeconds: 5, leaseSeconds: 10, concurrency: 1, messagesPerPoll: 5 };
    main = await cluster('rmail', [settings, settings], ['1', '2']);
    const { pair, store, accountId, sessions } = main;
    const popRemote = remoteUser();
    const imapRemote = remoteUser();
    for (const subject of numbered('cluster pop', 1, 20)) dovecot.deliver(popRemote, message(subject));
    for (const subject of numbered('cluster imap', 1, 20)) dovecot.deliver(imapRemote, message(subject));
    await ok(sessions[0]!, update('pop', recordElement('pop', 'p', dict('pop', popRemote, { leave: 'YES' }))));
    await ok(sessions[0]!, update('imap', recordElement('imap', 'i', dict('imap', imapRemote, { leave: 'YES' }))));
    const expected = [...numbered('cluster imap', 1, 20), ...numbered('cluster pop', 1, 20)].sort();
    await eventually(async () => (await inboxSubjects(sessions[1]!)).length >= 40, 'the forty messages', 60_000);
    await nextClusterPoll(store, accountId, 'pop', 'p');
    await nextClusterPoll(store, accountId, 'imap', 'i');
    for (const session of sessions) assert.deepEqual(await inboxSubjects(session), expected, 'each message once, as both nodes show it');
    // More mail, more polls: the new ones once, nothing again.
    for (const subject of numbered('cluster pop', 21, 25)) dovecot.deliver(popRemote, message(subject));
    for (const subject of numbered('cluster imap', 21, 25)) dovecot.deliver(imapRemote, message(subject));
    await eventually(async () => (await inboxSubjects(sessions[0]!)).length >= 50, 'the ten new ones', 60_000);
    await nextClusterPoll(store, accountId, 'pop', 'p');
    await nextClusterPoll(store, accountId, 'imap', 'i');
    assert.deepEqual(await inboxSubjects(sessions[0]!), [...numbered('cluster imap', 1, 25), ...numbered('cluster pop', 1, 25)].sort());
    assert.equal(dovecot.remaining(popRemote), 25, 'left on the server');
    assert.equal(dovecot.remaining(imapRemote), 25, 'left on the server');
    const polls = pair.map((node) => events(node, 'remoteMail.polled').length);
    t.diagnostic(`polls by node 1 and node 2: ${polls.join(', ')}`);
    assert.ok(polls[0]! + polls[1]! >= 10, `several polls: ${polls.join(', ')}`);
    await ok(sessions[0]!, update('pop', recordElement('pop', 'p', undefined, 'delete')));
    await ok(sessions[0]!, update('imap', recordElement('imap', 'i', undefined, 'delete')));
  });

  test('the node holding the lease is killed in the middle of a poll: the other takes the record when the lease runs out, and nothing arrives twice', async () => {
    assert.ok(main, 'the cluster of the test before');
    const { pair, store, accountId, sessions } = main;
    const remote = remoteUser();
    for (const subject of numbered('killed pop', 1, 20)) dovecot.deliver(remote, message(subject));
    // Between the nodes and Dovecot: the fifth RETR is held (never sent on, never answered).
    const proxy = await stallingProxy(dovecot.pop3Port, 5);
    proxies.push(proxy);
    await ok(sessions[0]!, update('pop', recordElement('pop', 'k', { ...dict('pop', remote, { leave: 'YES' }), domain: `127.0.0.1:${proxy.port}`, mailbox: 'Killed' })));
    await proxy.stalled;
    const held = (await store.remoteMail.get(accountId, 'pop', 'k'))!;
    const holding = pair.findIndex((n) => n.id === held.leaseOwner);
    assert.ok(holding >= 0, `the lease is held by a node: ${String(held.leaseOwner)}`);
    const holder = pair[holding]!;
    const survivor = pair[1 - holding]!;
    const survivorClient = sessions[1 - holding]!;
    assert.equal(held.lastPoll, null, 'the first poll is under way');
    await holder.kill();
    // Four messages were delivered and recorded before the fifth RETR; the survivor fetches the rest.
    await eventually(async () => (await inboxSubjects(survivorClient, 'Killed')).length >= 20, 'the twenty messages, by the survivor', 90_000);
    await nextClusterPoll(store, accountId, 'pop', 'k');
    assert.deepEqual(await inboxSubjects(survivorClient, 'Killed'), numbered('killed pop', 1, 20).sort(), 'each once');
    assert.ok(!events(holder, 'remoteMail.polled').some((e) => e.name === 'k'), 'the killed node never finished a poll of it');
    assert.ok(events(survivor, 'remoteMail.polled').some((e) => e.name === 'k' && (e.fetched as number) > 0), 'the survivor fetched');
    assert.equal(dovecot.remaining(remote), 20);
  });

  test('a record made on a node that does not poll (remoteMail.poll false) is polled at once by the other, told on the bus', async () => {
    // The polling node's own scan comes every leaseSeconds/2, half an hour: only remoteMailChanged explains a prompt poll.
    const { pair, sessions } = await cluster(
      'rmail_bus',
      [
        { poll: false, timeoutSeconds: 5, leaseSeconds: 3600 },
        { timeoutSeconds: 5, leaseSeconds: 3600 },
      ],
      ['3', '4'],
    );
    const remote = remoteUser();
    dovecot.deliver(remote, message('bus one'));
    await ok(sessions[0]!, update('pop', recordElement('pop', 'b', dict('pop', remote, { leave: 'YES' }))));
    await eventually(async () => (await inboxSubjects(sessions[0]!)).length === 1, 'the message, fetched by the other node', 20_000);
    assert.deepEqual(await inboxSubjects(sessions[0]!), ['bus one']);
    assert.equal(events(pair[0], 'remoteMail.polled').length, 0, 'the node that does not poll polled nothing');
    assert.ok(events(pair[1], 'remoteMail.polled').some((e) => e.name === 'b'));
  });
});

/**
 * A TCP proxy to a POP3 server on loopback `port` that holds the first connection whose client
 * sends its `stallAt`-th RETR: that command is not sent on, nothing more goes either way, and
 * `stalled` resolves. Every other connection (and that one until then) is passed through.
 */
async function stallingProxy(port: number, stallAt: number): Promise<{ port: number; stalled: Promise<void>; close(): void }> {
  let stall!: () => void;
  const stalled = new Promise<void>((resolve) => (stall = resolve));
  let done = false;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let held = false;
    let retrs = 0;
    let pending = '';
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
    upstream.on('data', (chunk: Buffer) => {
      if (!held) client.write(chunk);
    });
    client.on('data', (chunk: Buffer) => {
      if (held) return;
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n'); end >= 0 && !held; end = pending.indexOf('\r\n')) {
        const line = pending.slice(0, end + 2);
        pending = pending.slice(end + 2);
        if (!done && /^RETR /i.test(line) && ++retrs === stallAt) {
          held = done = true;
          stall();
          break;
        }
        upstream.write(line);
      }
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    stalled,
    close() {
      for (const s of sockets) s.destroy();
      proxy.close();
    },
  };
}
