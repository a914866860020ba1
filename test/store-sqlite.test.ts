/**
 * The embedded SQLite engine: the store contract (test/store/contract.ts) on a temporary
 * data directory, each handle a non-serving open of the same file (as the command line
 * opens it beside a server); then what only SQLite has: migrations, WAL, synced commits
 * (login bookkeeping relaxed), no password in clear in the files, the serving lock and the
 * keyset plan of a page read.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { AccountService } from '../src/services/accounts.js';
import { ServiceError } from '../src/services/errors.js';
import { verifyPassword } from '../src/services/passwords.js';
import { NoStoreError, openStore, StoreLockedError, StoreVersionError } from '../src/store/open.js';
import { migrations } from '../src/store/sqlite/migrations.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import type { NewAccount, NewMessage, Store } from '../src/store/store.js';
import { storeContract } from './store/contract.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'ximssd-store-'));
}

storeContract('sqlite', async () => {
  const dir = tempDir();
  return {
    harness: { open: () => openStore(undefined, dir) },
    async destroy() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

function newAccount(domain: string, name: string): NewAccount {
  return { domain, name, passwordHash: '$scrypt$fake', cramMd5Context: null };
}

function sqlite(store: Store): SqliteStore {
  assert.ok(store instanceof SqliteStore, 'the SQLite engine');
  return store;
}

describe('SQLite engine', () => {
  let dir: string;
  let store: Store;

  beforeEach(async () => {
    dir = tempDir();
    store = await openStore(undefined, dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a new store is migrated to the latest version; reopening runs nothing again and keeps the data', async () => {
    assert.equal(store.engine, 'sqlite');
    const { db } = sqlite(store);
    assert.equal(db.pragma('user_version', { simple: true }), migrations.length);
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    for (const table of ['accounts', 'alerts', 'domains', 'meta', 'mailboxes', 'messages', 'queue_messages']) assert.ok(tables.includes(table), table);
    await store.domains.create('kept.test');
    await store.close();

    for (let i = 0; i < 2; i++) {
      store = await openStore(undefined, dir); // would throw ("table already exists") if a migration ran twice
      assert.equal(sqlite(store).db.pragma('user_version', { simple: true }), migrations.length);
      assert.deepEqual((await store.domains.list()).map((d) => d.name), ['kept.test']);
      await store.close();
    }
    store = await openStore(undefined, dir);
  });

  test('create: false opens an existing store only: none creates nothing; another schema version is refused, not migrated', async () => {
    const missing = join(dir, 'not-here');
    await assert.rejects(openStore(undefined, missing, { create: false }), (err: unknown) => err instanceof NoStoreError && err.message.includes(missing));
    assert.equal(existsSync(missing), false, 'no directory made');
    const beside = await openStore(undefined, dir, { create: false });
    assert.equal(beside.engine, 'sqlite');
    await beside.domains.create('existing.test');
    await beside.close();
    sqlite(store).db.pragma(`user_version = ${migrations.length - 1}`);
    await assert.rejects(openStore(undefined, dir, { create: false }), (err: unknown) => err instanceof StoreVersionError && /run `ximssd serve`/.test(err.message));
    assert.equal(sqlite(store).db.pragma('user_version', { simple: true }), migrations.length - 1, 'not migrated');
    sqlite(store).db.pragma(`user_version = ${migrations.length}`);
  });

  test('migration 11 (queue ids never reused) keeps queued messages, their recipients and the cascade', async () => {
    const old = join(tempDir(), 'ximssd.sqlite');
    const db = new Database(old);
    db.pragma('foreign_keys = ON');
    for (let version = 1; version <= 10; version++) db.exec(migrations[version - 1]!);
    db.pragma('user_version = 10');
    db.prepare("INSERT INTO queue_messages (id, sender, raw, created, expires, source, lease_owner, lease_until) VALUES (7, 's@x.test', x'41', 1, 2, 'remote', 'n1', 5)").run();
    db.prepare("INSERT INTO queue_recipients (message_id, address, state, next_attempt) VALUES (7, 'r@x.test', 'pending', 3)").run();
    db.close();
    const migrated = await openStore(undefined, join(old, '..'));
    try {
      const entry = (await migrated.queue.get(7))!;
      assert.equal(entry.message.sender, 's@x.test');
      assert.deepEqual(entry.lease, { owner: 'n1', until: 5 });
      assert.deepEqual(entry.recipients.map((r) => [r.address, r.state, r.nextAttempt]), [['r@x.test', 'pending', 3]]);
      const { db: after } = sqlite(migrated);
      assert.deepEqual(after.pragma('foreign_key_check'), []);
      assert.match((after.prepare("SELECT sql FROM sqlite_master WHERE name = 'queue_recipients'").get() as { sql: string }).sql, /REFERENCES "?queue_messages"?\(id\)/);
      assert.equal(await migrated.queue.remove(7), true);
      assert.equal((after.prepare('SELECT count(*) AS n FROM queue_recipients').get() as { n: number }).n, 0, 'recipients cascade');
      const next = (await migrated.queue.enqueue({ sender: '', raw: Buffer.from('x'), created: 1, expires: 2, ret: null, envid: null, source: 'remote', key: null, recipients: [{ address: 'a@x.test', notify: null, orcpt: null }] }))!;
      assert.ok(next > 7, `id ${next} after the removed 7`);
    } finally {
      await migrated.close();
      rmSync(join(old, '..'), { recursive: true, force: true });
    }
  });

  test('the store uses WAL and enforces foreign keys', () => {
    const { db } = sqlite(store);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  });

  test('every commit is synced (FULL); login bookkeeping commits NORMAL and survives reopening', async () => {
    const { db } = sqlite(store);
    const FULL = 2;
    assert.equal(db.pragma('synchronous', { simple: true }), FULL);

    await store.domains.create('one.test');
    const a = await store.accounts.create(newAccount('one.test', 'alice'));
    const login = { time: new Date(1_700_000_000_000), address: '192.0.2.1' };
    const failed = { time: new Date(1_700_000_100_000), address: '192.0.2.2' };
    await store.accounts.recordLogin(a.id, login);
    await store.accounts.recordFailedLogin(a.id, failed);
    assert.equal(db.pragma('synchronous', { simple: true }), FULL, 'FULL again after the relaxed commits');
    const read = (await store.accounts.getById(a.id))!;
    assert.deepEqual(read.prevLogin, login);
    assert.deepEqual(read.lastFailedLogin, failed);

    await store.close();
    assert.equal(db.open, false);
    await store.close(); // idempotent
    store = await openStore(undefined, dir);
    assert.deepEqual((await store.accounts.getById(a.id))!.prevLogin, login);
    assert.deepEqual((await store.accounts.getById(a.id))!.lastFailedLogin, failed);
  });

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
    store = await openStore(undefined, dir);
  });

  test('AccountService refuses a duplicate account and an empty password with a ServiceError', async () => {
    const accounts = new AccountService(store, undefined, 'one.test');
    await accounts.create({ address: 'bob@one.test', password: 'pw', createDomain: true });
    await assert.rejects(accounts.create({ address: 'BOB@one.test', password: 'pw' }), ServiceError);
    await assert.rejects(accounts.create({ address: 'carol@one.test', password: '' }), ServiceError);
    await assert.rejects(accounts.createDomain('one.test'), ServiceError);
    await assert.rejects(accounts.create({ address: 'dave@missing.test', password: 'pw' }), ServiceError);
  });

  test('one serving process per data directory; non-serving opens beside it are fine', async () => {
    const server = await openStore(undefined, dir, { serve: true });
    try {
      await assert.rejects(openStore(undefined, dir, { serve: true }), StoreLockedError);
      const cli = await openStore(undefined, dir);
      await cli.domains.create('beside.test');
      await cli.close();
      assert.ok(await server.domains.get('beside.test'));
    } finally {
      await server.close();
    }
    const again = await openStore(undefined, dir, { serve: true });
    await again.close();
  });

  test('a page of messages is a keyset seek on the primary key, not an OFFSET or a sort', async () => {
    await store.domains.create('pages.test');
    const account = await store.accounts.create(newAccount('pages.test', 'box'));
    const box = await store.mail.createMailbox(account.id, 'INBOX', '', false);
    const message = (i: number): NewMessage => ({
      raw: Buffer.from(`Subject: m${i}\r\n\r\nbody ${i}\r\n`),
      flags: 0,
      keywords: [],
      internalDate: 1_700_000_000_000 + i,
      header: `Subject: m${i}\r\n`,
      envelope: { date: null, dateShift: 0, from: '', to: '', cc: '', subject: `m${i}`, priority: 0 },
    });
    await store.mail.append(box.id, Array.from({ length: 20 }, (_, i) => message(i)));
    const { db } = sqlite(store);
    const plan = (db.prepare('EXPLAIN QUERY PLAN SELECT uid FROM messages WHERE mailbox_id = ? AND uid > ? ORDER BY uid LIMIT ?').all(box.id, 10, 5) as { detail: string }[])
      .map((r) => r.detail)
      .join('; ');
    assert.match(plan, /SEARCH messages USING PRIMARY KEY \(mailbox_id=\? AND uid>\?\)/, plan);
    assert.doesNotMatch(plan, /TEMP B-TREE/, 'no sort');
  });
});
