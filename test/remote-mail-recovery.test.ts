/**
 * Remote mail polling when things go wrong (review of issue 17): messages too large stay named
 * in the record's errorText across polls until they are gone; a POP3 server that lists no
 * UIDLs for a session does not make the poller fetch everything again; an IMAP server without
 * UIDPLUS never gets an EXPUNGE (which would remove other clients' deleted messages); stopping
 * the server cuts a poll waiting on a silent server at once; an account no longer allowed to
 * keep remote accounts is not polled; an update is applied all or nothing; a wake-up during a
 * scan is not lost.
 *
 * Against a real Dovecot (test/fixtures/dovecot.ts) where it can show the behaviour, else
 * small scripted POP3 and IMAP servers over node:net that record the commands they get.
 * Nothing here depends on how long anything takes: deadlines only make a lost event fail.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { EventBus } from '../src/bus/bus.js';
import { defaultConfig } from '../src/config.js';
import type { AccountService } from '../src/services/accounts.js';
import { RemoteMailService } from '../src/services/remote-mail/service.js';
import type { SecretBox } from '../src/services/secret-box.js';
import type { RemoteMailKind, RemoteMailRecord } from '../src/store/remote-mail.js';
import type { Store } from '../src/store/store.js';
import type { LocalDelivery } from '../src/transports/smtp/local-delivery.js';
import { XmlElement } from '../src/xml/element.js';
import { startDovecot, type DovecotServer } from './fixtures/dovecot.js';
import { listRecords, localUser, nextPoll, stored, subjects } from './fixtures/remote-mail.js';
import { capturingLogger, eventually, fails, ok, startTestServer, storedMessages, type TestServer } from './helpers.js';

const MAX_BYTES = 4096;
const REMOTE_CONFIG = {
  remoteMail: { allowPrivate: true, minIntervalSeconds: 1, defaultIntervalSeconds: 1, timeoutSeconds: 5, leaseSeconds: 10, maxBackoffSeconds: 2, recordsPerAccount: 4, maxMessageBytes: MAX_BYTES },
};
const REMOTE_PASSWORD = 'remote-Secret-9012';

let dovecot: DovecotServer;
let server: TestServer;

before(async () => {
  dovecot = await startDovecot([{ name: 'big1', password: REMOTE_PASSWORD }, { name: 'off1', password: REMOTE_PASSWORD }]);
  server = await startTestServer(REMOTE_CONFIG);
});
after(async () => {
  await server?.stop();
  await dovecot?.stop();
});

function message(subject: string, bodyBytes = 40): string {
  return `From: Sender <sender@remote.test>\r\nTo: someone@remote.test\r\nSubject: ${subject}\r\n\r\n${'x'.repeat(bodyBytes)}\r\n`;
}

function update(kind: RemoteMailKind, records: Record<string, Record<string, string>>): XmlElement {
  const request = new XmlElement(kind === 'pop' ? 'rpopUpdate' : 'rimapUpdate');
  for (const [name, dict] of Object.entries(records)) {
    const record = new XmlElement(kind === 'pop' ? 'rpopRecord' : 'rimapRecord', { name });
    for (const [key, value] of Object.entries(dict)) record.add('subKey', { key }, value);
    request.children.push(record);
  }
  return request;
}

function dict(port: number, user: string, extra: Record<string, string> = {}): Record<string, string> {
  return { domain: `127.0.0.1:${port}`, authName: user, password: REMOTE_PASSWORD, period: '1', ...extra };
}

// ------------------------------------------------------------------ scripted servers

interface Scripted {
  port: number;
  /** Every command line received, by session (1, 2, …). */
  commands: { session: number; line: string }[];
  sessions: number;
  /** Sockets closed by the other side (the poller). */
  closedByPeer: number;
  close(): Promise<void>;
}

async function listen(onSession: (socket: net.Socket, session: number, record: (line: string) => void) => void): Promise<Scripted> {
  const sockets = new Set<net.Socket>();
  const state: Scripted = {
    port: 0,
    commands: [],
    sessions: 0,
    closedByPeer: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
  const srv = net.createServer((socket) => {
    sockets.add(socket);
    const session = ++state.sessions;
    socket.on('end', () => state.closedByPeer++);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onSession(socket, session, (line) => state.commands.push({ session, line }));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  state.port = (srv.address() as net.AddressInfo).port;
  return state;
}

/** Calls `onLine` for each CRLF line the socket sends. */
function lines(socket: net.Socket, onLine: (line: string) => void): void {
  let buffer = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      onLine(line);
    }
  });
}

/** A POP3 server whose maildrop each session is `listing(session)` (number order), never deleting anything. */
function fakePop3(listing: (session: number) => { uidl: string; raw: string }[]): Promise<Scripted> {
  return listen((socket, session, record) => {
    const messages = listing(session);
    socket.write('+OK scripted POP3 ready\r\n');
    lines(socket, (line) => {
      record(line);
      const [verb, arg] = line.split(' ');
      const n = Number(arg);
      switch ((verb ?? '').toUpperCase()) {
        case 'USER':
        case 'PASS':
        case 'DELE':
          return void socket.write('+OK\r\n');
        case 'UIDL':
          return void socket.write(`+OK\r\n${messages.map((m, i) => `${i + 1} ${m.uidl}\r\n`).join('')}.\r\n`);
        case 'LIST':
          return void socket.write(`+OK\r\n${messages.map((m, i) => `${i + 1} ${m.raw.length}\r\n`).join('')}.\r\n`);
        case 'RETR': {
          const m = messages[n - 1];
          if (!m) return void socket.write('-ERR no such message\r\n');
          return void socket.write(`+OK\r\n${m.raw.replace(/^\./gm, '..')}.\r\n`);
        }
        case 'QUIT':
          return void socket.end('+OK bye\r\n');
        default:
          return void socket.write('-ERR unknown\r\n');
      }
    });
  });
}

/** The UIDs of an IMAP sequence set (`3`, `1,4`, `2:5`, `7:*`) among `uids`. */
function inSet(set: string, uids: number[]): number[] {
  const max = Math.max(0, ...uids);
  const chosen = new Set<number>();
  for (const part of set.split(',')) {
    const [a, b] = part.split(':');
    const lo = a === '*' ? max : Number(a);
    const hi = b === undefined ? lo : b === '*' ? max : Number(b);
    for (const uid of uids) if (uid >= Math.min(lo, hi) && uid <= Math.max(lo, hi)) chosen.add(uid);
  }
  return uids.filter((u) => chosen.has(u));
}

/** An IMAP server (IMAP4rev1, no UIDPLUS) with these INBOX messages by UID; EXPUNGE and CLOSE are answered and recorded, and expunge nothing. */
function fakeImap(messages: { uid: number; raw: string }[]): Promise<Scripted> {
  const uids = messages.map((m) => m.uid);
  return listen((socket, _session, record) => {
    socket.write('* OK [CAPABILITY IMAP4rev1] scripted IMAP ready\r\n');
    lines(socket, (line) => {
      record(line);
      const m = /^(\S+) (UID )?(\S+) ?(.*)$/i.exec(line);
      if (!m) return void socket.write('* BAD what\r\n');
      const [, tag, uid, verb, rest] = m as unknown as [string, string, string | undefined, string, string];
      const command = verb.toUpperCase();
      if (command === 'CAPABILITY') return void socket.write(`* CAPABILITY IMAP4rev1\r\n${tag} OK done\r\n`);
      if (command === 'LOGIN') return void socket.write(`${tag} OK [CAPABILITY IMAP4rev1] logged in\r\n`);
      if (command === 'LIST') return void socket.write(`* LIST (\\Noselect) "/" ""\r\n${tag} OK done\r\n`);
      if (command === 'SELECT' || command === 'EXAMINE') {
        return void socket.write(
          `* FLAGS (\\Seen \\Deleted)\r\n* ${messages.length} EXISTS\r\n* OK [UIDVALIDITY 77] ok\r\n* OK [UIDNEXT ${Math.max(0, ...uids) + 1}] ok\r\n${tag} OK [READ-WRITE] selected\r\n`,
        );
      }
      if (command === 'FETCH' && uid) {
        const [set, ...what] = rest.split(' ');
        const wantsBody = /BODY/i.test(what.join(' '));
        let out = '';
        for (const u of inSet(set!, uids)) {
          const i = uids.indexOf(u);
          const raw = messages[i]!.raw;
          out += wantsBody ? `* ${i + 1} FETCH (UID ${u} BODY[] {${Buffer.byteLength(raw)}}\r\n${raw})\r\n` : `* ${i + 1} FETCH (UID ${u} RFC822.SIZE ${Buffer.byteLength(raw)})\r\n`;
        }
        return void socket.write(`${out}${tag} OK fetched\r\n`);
      }
      if (command === 'STORE' && uid) {
        const set = rest.split(' ')[0]!;
        const out = inSet(set, uids).map((u) => `* ${uids.indexOf(u) + 1} FETCH (UID ${u} FLAGS (\\Deleted))\r\n`).join('');
        return void socket.write(`${out}${tag} OK stored\r\n`);
      }
      if (command === 'LOGOUT') return void socket.end(`* BYE bye\r\n${tag} OK bye\r\n`);
      return void socket.write(`${tag} OK done\r\n`);
    });
  });
}

// ------------------------------------------------------------------ 1. messages too large

describe('IMAP messages larger than remoteMail.maxMessageBytes', () => {
  test('stay named in errorText across polls that fetch other messages, are not fetched, and the note goes when they are gone', async () => {
    const remote = 'big1';
    dovecot.deliver(remote, message('small one'));
    dovecot.deliver(remote, message('huge one', MAX_BYTES * 2));
    const { address, client } = await localUser(server);
    await ok(client, update('imap', { big: dict(dovecot.imapPort, remote) }));
    await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 1, 'the small message', 20_000);
    const first = await eventually(async () => (await listRecords(client, 'imap'))[0]?.attrs.errorText, 'the note', 20_000);
    assert.match(first, /^1 message\(s\) larger than 4096 bytes left on the server \(UID \d+\)$/);
    // Another message arrives and is fetched: the note stays.
    dovecot.deliver(remote, message('small two'));
    await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 2, 'the second small message', 20_000);
    await nextPoll(server, address, 'imap', 'big');
    const [record] = await listRecords(client, 'imap');
    assert.match(record!.attrs.errorText ?? '', /^1 message\(s\) larger than 4096 bytes left on the server/, 'still shown after a poll that fetched another message');
    assert.deepEqual(subjects(await storedMessages(server, address, 'INBOX')), ['small one', 'small two'], 'the large one never fetched');
    const state = (await stored(server, address, 'imap', 'big'))!;
    assert.equal(state.lastError, null, 'not a failure (no back-off)');
    assert.equal(state.failures, 0);
    assert.equal(state.skipped.length, 1);
    // The messages go from the remote INBOX: so does the note.
    dovecot.clear(remote);
    await eventually(async () => (await listRecords(client, 'imap'))[0]!.attrs.errorText === undefined, 'the note gone', 20_000);
    assert.deepEqual((await stored(server, address, 'imap', 'big'))!.skipped, []);
  });
});

// ------------------------------------------------------------------ 2. POP3 listings that drop UIDLs

describe('POP3: a session listing no UIDLs', () => {
  test('forgets nothing: with leave on the server, nothing is fetched again when the messages are listed again', async () => {
    const maildrop = [
      { uidl: 'uidl-aaa', raw: message('pop first') },
      { uidl: 'uidl-bbb', raw: message('pop second') },
    ];
    // Session 2 finds the maildrop empty (locked by another client, say); the others list both.
    const pop = await fakePop3((session) => (session === 2 ? [] : maildrop));
    try {
      const { address, client } = await localUser(server);
      await ok(client, update('pop', { drop: dict(pop.port, 'someone', { leave: 'YES' }) }));
      await eventually(() => pop.sessions >= 4 && pop.commands.filter((c) => c.session === 4 && c.line === 'QUIT').length > 0, 'four sessions', 30_000);
      const retrieved = pop.commands.filter((c) => c.line.startsWith('RETR'));
      assert.deepEqual(
        retrieved.map((c) => c.session),
        [1, 1],
        'each message retrieved once, in the first session',
      );
      assert.deepEqual(subjects(await storedMessages(server, address, 'INBOX')), ['pop first', 'pop second']);
      assert.equal(pop.commands.filter((c) => c.line.startsWith('DELE')).length, 0, 'leave on the server');
      assert.equal((await listRecords(client, 'pop'))[0]!.attrs.errorText, undefined);
    } finally {
      await pop.close();
    }
  });
});

// ------------------------------------------------------------------ 3. IMAP without UIDPLUS

describe('IMAP leave=NO on a server without UIDPLUS', () => {
  test('fetched messages are marked \\Deleted by UID, never expunged (EXPUNGE would remove other clients\' deleted mail); the list says so', async () => {
    const imap = await fakeImap([
      { uid: 3, raw: message('imap plain one') },
      { uid: 5, raw: message('imap plain two') },
    ]);
    try {
      const { address, client } = await localUser(server);
      await ok(client, update('imap', { plain: dict(imap.port, 'someone', { leave: 'NO' }) }));
      await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 2, 'both messages', 20_000);
      await nextPoll(server, address, 'imap', 'plain');
      const lines = imap.commands.map((c) => c.line.replace(/^\S+ /, '').toUpperCase());
      assert.deepEqual(
        lines.filter((l) => l.startsWith('UID STORE')).map((l) => l.replace(/\s+/g, ' ')),
        ['UID STORE 3 +FLAGS (\\DELETED)', 'UID STORE 5 +FLAGS (\\DELETED)'],
        'each fetched message marked by its UID',
      );
      assert.deepEqual(lines.filter((l) => /^(UID )?EXPUNGE|^CLOSE/.test(l)), [], 'no EXPUNGE, no CLOSE');
      assert.match((await listRecords(client, 'imap'))[0]!.attrs.errorText ?? '', /no UIDPLUS: fetched messages are marked deleted there, not expunged/);
      assert.deepEqual(subjects(await storedMessages(server, address, 'INBOX')), ['imap plain one', 'imap plain two'], 'each once');
    } finally {
      await imap.close();
    }
  });
});

// ------------------------------------------------------------------ 4. shutdown

describe('stopping the server while a poll waits on a silent remote server', () => {
  for (const kind of ['pop', 'imap'] as const) {
    test(`${kind}: the connection is cut at once (timeoutSeconds is an hour), and the poll records nothing`, { timeout: 120_000 }, async () => {
      const silent = await listen(() => {});
      const captured = capturingLogger('info');
      const target = await startTestServer({ remoteMail: { ...REMOTE_CONFIG.remoteMail, timeoutSeconds: 3600, leaseSeconds: 7200 } }, { log: captured.log });
      let stopped = false;
      try {
        const { client } = await localUser(target);
        await ok(client, update(kind, { silent: dict(silent.port, 'someone') }));
        await eventually(() => silent.sessions === 1, 'the poll connected', 20_000);
        await target.stop();
        stopped = true;
        // Only close() cutting the connection explains this before the hour-long timeout.
        await eventually(() => silent.closedByPeer === 1, 'the poller closed the connection', 20_000);
        assert.equal(captured.events('remoteMail.poll_stopped').length, 1, 'the poll ended as stopped');
        assert.deepEqual(captured.events('remoteMail.poll_failed'), [], 'and recorded no failure');
      } finally {
        if (!stopped) await target.stop();
        await silent.close();
      }
    });
  }
});

// ------------------------------------------------------------------ 5. RPOPAllowed turned off

describe('RPOPAllowed turned off for an account with records', () => {
  test('its records are no longer polled, and say why', async () => {
    const remote = 'off1';
    dovecot.deliver(remote, message('allowed'));
    const { address, client } = await localUser(server);
    await ok(client, update('pop', { off: dict(dovecot.pop3Port, remote) }));
    await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 1, 'fetched while allowed', 20_000);
    const account = (await server.services.accounts.find(address))!;
    await server.services.accounts.setSettings(account, { RPOPAllowed: 'No' });
    dovecot.deliver(remote, message('not allowed'));
    const error = await eventually(async () => (await listRecords(client, 'pop'))[0]?.attrs.errorText, 'the refusal', 20_000);
    assert.equal(error, 'remote account polling is not allowed for this account');
    await nextPoll(server, address, 'pop', 'off');
    assert.deepEqual(subjects(await storedMessages(server, address, 'INBOX')), ['allowed'], 'nothing fetched since');
    // Allowed again: polled again.
    await server.services.accounts.setSettings(account, { RPOPAllowed: 'Yes' });
    await eventually(async () => (await storedMessages(server, address, 'INBOX')).length === 2, 'fetched once allowed again', 20_000);
  });
});

// ------------------------------------------------------------------ 6. updates all or nothing

describe('rpopUpdate and rimapUpdate apply all of a request or none', () => {
  for (const kind of ['pop', 'imap'] as const) {
    test(`${kind}: a record failing after a good one leaves nothing applied`, async () => {
      const { client } = await localUser(server);
      await ok(client, update(kind, { kept: dict(1, 'old') }));
      // The second record is new and has no password: refused after the first was read.
      const noPassword = dict(2, 'user');
      delete noPassword.password;
      const error = await fails(client, update(kind, { fresh: dict(3, 'user'), nopass: noPassword }));
      assert.match(error, /needs a password/);
      assert.deepEqual((await listRecords(client, kind)).map((r) => r.attrs.name), ['kept'], 'the first record of the request not stored');
      // Past the limit (4 records) in the middle of a request: nothing stored, removals undone too.
      const many = await fails(client, update(kind, { a: dict(4, 'u'), b: dict(5, 'u'), c: dict(6, 'u'), d: dict(7, 'u') }));
      assert.match(many, /too many remote account records/);
      assert.deepEqual((await listRecords(client, kind)).map((r) => r.attrs.name), ['kept']);
      const remove = new XmlElement(kind === 'pop' ? 'rpopUpdate' : 'rimapUpdate');
      remove.add(kind === 'pop' ? 'rpopRecord' : 'rimapRecord', { name: 'kept', mode: 'delete' });
      const tooMany = update(kind, { a: dict(4, 'u'), b: dict(5, 'u'), c: dict(6, 'u'), d: dict(7, 'u'), e: dict(8, 'u') });
      tooMany.children.unshift(remove.children[0]!);
      await fails(client, tooMany, /too many remote account records/);
      assert.deepEqual((await listRecords(client, kind)).map((r) => r.attrs.name), ['kept'], 'the removal undone with the rest');
    });
  }
});

// ------------------------------------------------------------------ 7. a wake-up during a scan

describe('the poller', () => {
  test('a kick() while a scan finishes (after its last look for due records) starts another scan', async () => {
    let claims = 0;
    let inNextDue = false;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const store = {
      remoteMail: {
        claimDue: async (): Promise<RemoteMailRecord[]> => {
          claims++;
          return [];
        },
        nextDue: async (): Promise<number | undefined> => {
          if (claims === 1) {
            inNextDue = true;
            await gate;
          }
          return undefined;
        },
      },
    } as unknown as Store;
    const bus = { on: () => () => {}, publish: () => {} } as unknown as EventBus;
    // An hour's lease: without a scan at once, the next one would come in half an hour.
    const config = { ...defaultConfig().remoteMail, leaseSeconds: 3600 };
    const service = new RemoteMailService({
      store,
      bus,
      accounts: {} as AccountService,
      secrets: {} as SecretBox,
      config,
      node: 'unit',
      hostName: 'unit.test',
      log: capturingLogger().log,
    });
    service.start({} as LocalDelivery);
    try {
      await eventually(() => inNextDue, 'the first scan past its claim');
      service.kick(); // e.g. a record added meanwhile
      open();
      await eventually(() => claims >= 2, 'a second look for due records');
    } finally {
      await service.close();
    }
  });
});
