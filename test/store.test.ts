/**
 * The SQLite store, used directly: migrations, domains, accounts, alerts, meta, password
 * storage, the external-change watch the command line relies on, and a mailbox's messages
 * read in pages (keyset by UID) with the changes since a modseq.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { AccountService } from '../src/services/accounts.js';
import { ServiceError } from '../src/services/errors.js';
import { verifyPassword } from '../src/services/passwords.js';
import { openStore } from '../src/store/open.js';
import { migrations } from '../src/store/sqlite/migrations.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { AlreadyExistsError, type MessageMeta, type NewAccount, type NewMessage, type Store } from '../src/store/store.js';

let dir: string;
let store: Store;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ximssd-store-'));
  store = openStore(dir);
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function newAccount(domain: string, name: string, extra: Partial<NewAccount> = {}): NewAccount {
  return { domain, name, passwordHash: '$scrypt$fake', cramMd5Context: null, ...extra };
}

describe('migrations', () => {
  test('a new store is migrated to the latest version; reopening runs nothing again and keeps the data', async () => {
    assert.equal(store.engine, 'sqlite');
    assert.ok(store instanceof SqliteStore);
    assert.equal(store.db.pragma('user_version', { simple: true }), migrations.length);
    const tables = (store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map(
      (r) => r.name,
    );
    for (const table of ['accounts', 'alerts', 'domains', 'meta']) assert.ok(tables.includes(table), table);
    await store.domains.create('kept.test');
    await store.close();

    for (let i = 0; i < 2; i++) {
      store = openStore(dir); // would throw ("table already exists") if a migration ran twice
      assert.ok(store instanceof SqliteStore);
      assert.equal(store.db.pragma('user_version', { simple: true }), migrations.length);
      assert.deepEqual((await store.domains.list()).map((d) => d.name), ['kept.test']);
      await store.close();
    }
    store = openStore(dir);
  });

  test('the store uses WAL and enforces foreign keys', () => {
    assert.ok(store instanceof SqliteStore);
    assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(store.db.pragma('foreign_keys', { simple: true }), 1);
  });

  test('every commit is synced (FULL); login bookkeeping commits NORMAL and survives reopening', async () => {
    const sqlite = store;
    assert.ok(sqlite instanceof SqliteStore);
    const { db } = sqlite;
    const FULL = 2;
    assert.equal(db.pragma('synchronous', { simple: true }), FULL);

    await sqlite.domains.create('one.test');
    const a = await sqlite.accounts.create(newAccount('one.test', 'alice'));
    const login = { time: new Date(1_700_000_000_000), address: '192.0.2.1' };
    const failed = { time: new Date(1_700_000_100_000), address: '192.0.2.2' };
    await sqlite.accounts.recordLogin(a.id, login);
    await sqlite.accounts.recordFailedLogin(a.id, failed);
    assert.equal(db.pragma('synchronous', { simple: true }), FULL, 'FULL again after the relaxed commits');
    const read = (await sqlite.accounts.getById(a.id))!;
    assert.deepEqual(read.prevLogin, login);
    assert.deepEqual(read.lastFailedLogin, failed);

    await sqlite.close();
    assert.equal(db.open, false);
    await sqlite.close(); // idempotent
    store = openStore(dir);
    assert.deepEqual((await store.accounts.getById(a.id))!.prevLogin, login);
  });
});

describe('domains', () => {
  test('create, get, list, update settings, remove', async () => {
    const created = await store.domains.create('b.test', { SignupAllowed: 'Yes' });
    assert.equal(created.name, 'b.test');
    assert.ok(created.created instanceof Date);
    await store.domains.create('a.test');
    assert.deepEqual((await store.domains.list()).map((d) => d.name), ['a.test', 'b.test']);
    assert.deepEqual((await store.domains.get('b.test'))?.settings, { SignupAllowed: 'Yes' });
    assert.equal(await store.domains.get('nope.test'), undefined);
    await store.domains.updateSettings('b.test', { SignupAllowed: 'No', AccountDefaults: { PWDAllowed: 'No' } });
    assert.deepEqual((await store.domains.get('b.test'))?.settings, { SignupAllowed: 'No', AccountDefaults: { PWDAllowed: 'No' } });
    assert.equal(await store.domains.remove('a.test'), true);
    assert.equal(await store.domains.remove('a.test'), false);
    assert.deepEqual((await store.domains.list()).map((d) => d.name), ['b.test']);
  });

  test('a duplicate domain is an AlreadyExistsError', async () => {
    await store.domains.create('dup.test');
    await assert.rejects(store.domains.create('dup.test'), AlreadyExistsError);
  });

  test('a domain with accounts is not removed', async () => {
    await store.domains.create('busy.test');
    const account = await store.accounts.create(newAccount('busy.test', 'u'));
    assert.equal(await store.domains.remove('busy.test'), false);
    assert.ok(await store.domains.get('busy.test'));
    await store.accounts.remove(account.id);
    assert.equal(await store.domains.remove('busy.test'), true);
  });
});

describe('accounts', () => {
  beforeEach(async () => {
    await store.domains.create('one.test');
    await store.domains.create('two.test');
  });

  test('create, get by name and id, list, count', async () => {
    const a = await store.accounts.create(newAccount('one.test', 'alice', { realName: 'Alice', recoveryEmail: 'a@x.test', settings: { PWDAllowed: 'No' } }));
    assert.equal(a.domain, 'one.test');
    assert.equal(a.name, 'alice');
    assert.equal(a.realName, 'Alice');
    assert.equal(a.recoveryEmail, 'a@x.test');
    assert.deepEqual(a.settings, { PWDAllowed: 'No' });
    assert.deepEqual(a.prefs, {});
    assert.equal(a.prevLogin, null);
    assert.equal(a.lastFailedLogin, null);
    assert.equal(a.credentialsVersion, 1);
    const b = await store.accounts.create(newAccount('one.test', 'bob'));
    const c = await store.accounts.create(newAccount('two.test', 'alice'));
    assert.notEqual(a.id, b.id);
    assert.deepEqual(await store.accounts.get('one.test', 'alice'), a);
    assert.deepEqual(await store.accounts.getById(c.id), c);
    assert.equal(await store.accounts.get('one.test', 'carol'), undefined);
    assert.equal(await store.accounts.getById(99999), undefined);
    assert.deepEqual((await store.accounts.list()).map((x) => `${x.name}@${x.domain}`), ['alice@one.test', 'bob@one.test', 'alice@two.test']);
    assert.deepEqual((await store.accounts.list('one.test')).map((x) => x.name), ['alice', 'bob']);
    assert.equal(await store.accounts.count('one.test'), 2);
    assert.equal(await store.accounts.count('two.test'), 1);
  });

  test('a duplicate name in the same domain is an AlreadyExistsError; in another domain it is fine', async () => {
    await store.accounts.create(newAccount('one.test', 'alice'));
    await assert.rejects(store.accounts.create(newAccount('one.test', 'alice')), AlreadyExistsError);
    await store.accounts.create(newAccount('two.test', 'alice'));
    assert.equal(await store.accounts.count('one.test'), 1);
  });

  test('an account in a domain that does not exist is refused (and is not a duplicate)', async () => {
    await assert.rejects(store.accounts.create(newAccount('ghost.test', 'x')), (err: unknown) => !(err instanceof AlreadyExistsError));
  });

  test('updates: password (bumps credentialsVersion), recovery E-mail, real name, settings, prefs, logins', async () => {
    const a = await store.accounts.create(newAccount('one.test', 'alice'));
    await store.accounts.setPassword(a.id, '$scrypt$other', 'abcd');
    await store.accounts.setRecoveryEmail(a.id, 'r@x.test');
    await store.accounts.setRealName(a.id, 'Alice A.');
    await store.accounts.setSettings(a.id, { RulesAllowed: 'No' });
    await store.accounts.setPrefs(a.id, { TimeZone: 'Asia/Tokyo', Nested: { a: ['1', '2'] } });
    const login = new Date(1_700_000_000_000);
    const failedAt = new Date(1_700_000_100_000);
    await store.accounts.recordLogin(a.id, { time: login, address: '192.0.2.1' });
    await store.accounts.recordFailedLogin(a.id, { time: failedAt, address: '192.0.2.2' });
    const b = (await store.accounts.getById(a.id))!;
    assert.equal(b.passwordHash, '$scrypt$other');
    assert.equal(b.cramMd5Context, 'abcd');
    assert.equal(b.credentialsVersion, a.credentialsVersion + 1);
    assert.equal(b.recoveryEmail, 'r@x.test');
    assert.equal(b.realName, 'Alice A.');
    assert.deepEqual(b.settings, { RulesAllowed: 'No' });
    assert.deepEqual(b.prefs, { TimeZone: 'Asia/Tokyo', Nested: { a: ['1', '2'] } });
    assert.deepEqual(b.prevLogin, { time: login, address: '192.0.2.1' });
    assert.deepEqual(b.lastFailedLogin, { time: failedAt, address: '192.0.2.2' });
    await store.accounts.setRecoveryEmail(a.id, null);
    await store.accounts.setRealName(a.id, null);
    const c = (await store.accounts.getById(a.id))!;
    assert.equal(c.recoveryEmail, null);
    assert.equal(c.realName, null);
  });

  test('remove', async () => {
    const a = await store.accounts.create(newAccount('one.test', 'alice'));
    assert.equal(await store.accounts.remove(a.id), true);
    assert.equal(await store.accounts.remove(a.id), false);
    assert.equal(await store.accounts.get('one.test', 'alice'), undefined);
    // The name can be taken again.
    await store.accounts.create(newAccount('one.test', 'alice'));
  });
});

describe('passwords at rest', () => {
  test('the store files never contain a password in clear', async () => {
    const accounts = new AccountService(store, undefined, 'one.test');
    const first = 'Clear-Text-Canary-Password-7731';
    const second = 'Second-Canary-Password-9920';
    const account = await accounts.create({ address: 'alice@one.test', password: first, createDomain: true });
    await accounts.setPassword(account, second);
    const stored = (await store.accounts.getById(account.id))!;
    assert.ok(await verifyPassword(second, stored.passwordHash), 'the stored hash verifies the password');
    assert.equal(await verifyPassword(first, stored.passwordHash), false);
    assert.ok(!stored.passwordHash.includes(second));
    assert.ok(!(stored.cramMd5Context ?? '').includes(second));
    assert.ok(!(stored.cramMd5Context ?? '').includes(Buffer.from(second).toString('hex')));
    // Look at the bytes of every file of the store (the WAL included) before and after a close.
    const check = (): void => {
      for (const file of readdirSync(dir)) {
        const bytes = readFileSync(join(dir, file));
        for (const password of [first, second]) {
          for (const encoding of ['utf8', 'utf16le', 'base64', 'hex'] as const) {
            const needle = encoding === 'utf8' || encoding === 'utf16le' ? Buffer.from(password, encoding) : Buffer.from(Buffer.from(password).toString(encoding));
            assert.equal(bytes.includes(needle), false, `${file} contains the password (${encoding})`);
          }
        }
      }
    };
    check();
    await store.close();
    check();
    store = openStore(dir);
  });

  test('AccountService refuses a duplicate account and an empty password with a ServiceError', async () => {
    const accounts = new AccountService(store, undefined, 'one.test');
    await accounts.create({ address: 'bob@one.test', password: 'pw', createDomain: true });
    await assert.rejects(accounts.create({ address: 'BOB@one.test', password: 'pw' }), ServiceError);
    await assert.rejects(accounts.create({ address: 'carol@one.test', password: '' }), ServiceError);
    await assert.rejects(accounts.createDomain('one.test'), ServiceError);
    await assert.rejects(accounts.create({ address: 'dave@missing.test', password: 'pw' }), ServiceError);
  });
});

describe('alerts', () => {
  test('pending until confirmed, oldest first; accountsWithPending; removed with their account', async () => {
    await store.domains.create('one.test');
    const a = await store.accounts.create(newAccount('one.test', 'alice'));
    const b = await store.accounts.create(newAccount('one.test', 'bob'));
    assert.deepEqual(await store.alerts.pending(a.id), []);
    assert.deepEqual(await store.alerts.accountsWithPending(), []);
    const t1 = new Date(1_700_000_000_000);
    const first = await store.alerts.post(a.id, 'first', t1);
    const second = await store.alerts.post(a.id, 'second ☺', new Date(t1.getTime() + 1000));
    await store.alerts.post(b.id, 'for bob', t1);
    assert.deepEqual(await store.alerts.pending(a.id), [first, second]);
    assert.deepEqual((await store.alerts.accountsWithPending()).sort(), [a.id, b.id].sort());
    await store.alerts.confirm(first.id);
    assert.deepEqual(await store.alerts.pending(a.id), [second]);
    await store.alerts.confirm(second.id);
    assert.deepEqual(await store.alerts.pending(a.id), []);
    assert.deepEqual(await store.alerts.accountsWithPending(), [b.id]);
    await store.accounts.remove(b.id);
    assert.deepEqual(await store.alerts.accountsWithPending(), []);
    assert.deepEqual(await store.alerts.pending(b.id), []);
  });
});

describe('meta', () => {
  test('get and upsert', async () => {
    assert.equal(await store.meta.get('secret'), undefined);
    await store.meta.set('secret', 'one');
    await store.meta.set('secret', 'two');
    assert.equal(await store.meta.get('secret'), 'two');
  });
});

describe('external changes', () => {
  test('a commit by another connection is noticed; our own commits are not', async () => {
    let calls = 0;
    const stop = store.watchExternalChanges(() => calls++);
    try {
      await store.domains.create('own.test');
      const own = await store.accounts.create(newAccount('own.test', 'u'));
      await sleep(300); // the watch polls every 250 ms
      // Login bookkeeping goes through the store's second connection: still its own commits.
      await store.accounts.recordLogin(own.id, { time: new Date(), address: '192.0.2.1' });
      await store.accounts.recordFailedLogin(own.id, { time: new Date(), address: '192.0.2.1' });
      await sleep(300);
      await store.meta.set('k', 'v');
      await sleep(400);
      assert.equal(calls, 0, 'own commits do not count as external');
      const other = openStore(dir);
      try {
        await other.domains.create('other.test');
      } finally {
        await other.close();
      }
      const deadline = Date.now() + 2000;
      while (calls === 0 && Date.now() < deadline) await sleep(25);
      assert.ok(calls > 0, 'another connection committed');
      assert.ok(await store.domains.get('other.test'));
    } finally {
      stop();
    }
  });
});

describe('messages in pages', () => {
  function message(i: number): NewMessage {
    const raw = Buffer.from(`Subject: m${i}\r\n\r\nbody ${i}\r\n`);
    return {
      raw,
      flags: 0,
      keywords: [],
      internalDate: 1_700_000_000_000 + i,
      header: `Subject: m${i}\r\n`,
      envelope: { date: null, dateShift: 0, from: '', to: '', cc: '', subject: `m${i}`, priority: 0 },
    };
  }

  test('keyset pages by UID add up to the whole mailbox, through removals; the changes since a modseq complete them', async () => {
    await store.domains.create('pages.test');
    const account = await store.accounts.create(newAccount('pages.test', 'box'));
    const box = await store.mail.createMailbox(account.id, 'INBOX', '', false);
    const other = await store.mail.createMailbox(account.id, 'Other', '', false);
    await store.mail.append(other.id, [message(-1)]);
    const appended = await store.mail.append(box.id, Array.from({ length: 250 }, (_, i) => message(i)));
    await store.mail.expunge(box.id, [3, 4, 100]);
    const all = await store.mail.listMessages(box.id);
    assert.equal(all.length, 247);

    const paged: MessageMeta[] = [];
    let reads = 0;
    for (let afterUid = 0; ; reads++) {
      const page = await store.mail.listMessages(box.id, { afterUid, limit: 40 });
      assert.ok(page.every((m, i) => m.uid > afterUid && (i === 0 || m.uid > page[i - 1]!.uid)), 'above afterUid, ascending');
      paged.push(...page);
      if (page.length < 40) break;
      afterUid = page[page.length - 1]!.uid;
    }
    assert.deepEqual(paged, all, 'the pages are the mailbox, in UID order');
    assert.equal(reads, 6);
    assert.deepEqual(await store.mail.listMessages(box.id, { afterUid: 250, limit: 10 }), []);
    assert.deepEqual((await store.mail.listMessages(box.id, { afterUid: 2, limit: 3 })).map((m) => m.uid), [5, 6, 7], 'a removed UID is skipped');

    // Keyset, not OFFSET: a seek on the primary key (mailbox_id, uid).
    assert.ok(store instanceof SqliteStore);
    const plan = (store.db.prepare('EXPLAIN QUERY PLAN SELECT uid FROM messages WHERE mailbox_id = ? AND uid > ? ORDER BY uid LIMIT ?').all(box.id, 10, 5) as { detail: string }[])
      .map((r) => r.detail)
      .join('; ');
    assert.match(plan, /SEARCH messages USING PRIMARY KEY \(mailbox_id=\? AND uid>\?\)/, plan);
    assert.doesNotMatch(plan, /TEMP B-TREE/, 'no sort');

    // What a paged reader catches up with: changes and removals after the modseq it noted, with the uidNext of that snapshot.
    const noted = (await store.mail.getMailboxById(box.id))!;
    await store.mail.setFlags(box.id, [{ uid: 7, flags: 1, keywords: [] }]);
    await store.mail.expunge(box.id, [8]);
    const added = await store.mail.append(box.id, [message(250)]);
    const changes = await store.mail.changesSince(box.id, noted.highestModseq);
    assert.deepEqual(changes.changed.map((m) => m.uid), [7, added.messages[0]!.uid]);
    assert.deepEqual(changes.removed.map((r) => r.uid), [8]);
    assert.equal(changes.uidNext, added.uidNext);
    assert.equal(changes.uidNext, appended.uidNext + 1);
    assert.equal(changes.modseq, (await store.mail.getMailboxById(box.id))!.highestModseq);
    assert.equal(changes.complete, true);
  });
});
