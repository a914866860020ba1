import Database from 'better-sqlite3';
import type { Database as SqliteDatabase } from 'better-sqlite3';
import { closeSync, existsSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  AlreadyExistsError,
  type AccountRecord,
  type AccountStore,
  type AlertRecord,
  type AlertStore,
  type DomainRecord,
  type DomainStore,
  type LoginRecord,
  type MetaStore,
  type NewAccount,
  type Settings,
  type SettingsChanges,
  type AccountColumnChanges,
  mergeSettings,
  mergeNestedSettings,
  NotFoundError,
  NoStoreError,
  StoreVersionError,
  type Store,
} from '../store.js';
import { SqliteCluster, SqliteSharedState } from './cluster.js';
import { SqliteDatasets } from './datasets.js';
import { SqliteFiles } from './files.js';
import { SqliteAccountAcl } from './account-acl.js';
import { SqliteCalendarIndex } from './calendar-index.js';
import { SqliteDavNames } from './dav-names.js';
import { SqliteAppPasswords, SqliteTwoFactor } from './login-security.js';
import { SqliteArchive, SqliteBlocking, SqliteMuc, SqliteOffline, SqliteResources, SqliteRoster } from './im.js';
import { DataDirLock } from '../lock.js';
import { privateDirectory, privateFile } from '../modes.js';
import { SqliteMail } from './mail.js';
import { SqliteMeetings } from './meetings.js';
import { SqliteRemoteSip } from './remote-sip.js';
import { SqliteBilling } from './billing.js';
import { SqliteSmime } from './smime.js';
import { SqliteRemoteMail } from './remote-mail.js';
import { SqliteQueue } from './queue.js';
import { SqliteRegistrations } from './registrations.js';
import { SqliteRelay } from './relay.js';
import { SqliteRules } from './rules.js';
import { migrations } from './migrations.js';
import { isUniqueViolation, prepareAll, relaxedCommit } from './util.js';
import { toAccount, toDomain, type AccountRow, type DomainRow } from '../rows.js';

export interface SqliteOpenOptions {
  /**
   * The data directory a serving process locks (DataDirLock: `<lockDir>/ximssd.pid`), so
   * that a second server refuses to start (StoreLockedError). Without it (the command line)
   * the store opens beside a running server.
   */
  lockDir?: string;
  /**
   * Open an existing store only (`where` names it in errors): NoStoreError when the file is
   * missing or holds no schema (nothing is created), StoreVersionError when its schema is not
   * this version's (no migration runs).
   */
  existing?: { where: string };
}

/**
 * The embedded store: one SQLite file in WAL mode, shared by at most one serving process
 * (which locks the data directory) and any number of command-line processes beside it.
 *
 * Every change is one transaction; those that decide it from what is stored (flags,
 * quotas, queue claims, session limits, shared counters) are IMMEDIATE transactions, which
 * take SQLite's single write lock before they read, so processes sharing the file never
 * interleave inside one (a busy one waits up to `busy_timeout`). Every commit is synced
 * before the call resolves, except login bookkeeping and the shared login-failure state
 * (see `relaxedCommit`); appends share one commit per turn of the event loop (groupCommit).
 *
 * The command line tells the server what it changed through the relay (SqliteRelay: a
 * table the server polls); the server's own sends cost nothing, as nobody else listens.
 * The cluster tables hold a cluster of one: the serving process.
 */
export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  readonly db: SqliteDatabase;
  readonly domains: DomainStore;
  readonly accounts: AccountStore;
  readonly alerts: AlertStore;
  readonly meta: MetaStore;
  readonly mail: SqliteMail;
  readonly queue: SqliteQueue;
  readonly rules: SqliteRules;
  readonly datasets: SqliteDatasets;
  readonly files: SqliteFiles;
  readonly accountAcl: SqliteAccountAcl;
  readonly davNames: SqliteDavNames;
  readonly twoFactor: SqliteTwoFactor;
  readonly appPasswords: SqliteAppPasswords;
  readonly calendarIndex: SqliteCalendarIndex;
  readonly roster: SqliteRoster;
  readonly offline: SqliteOffline;
  readonly archive: SqliteArchive;
  readonly blocking: SqliteBlocking;
  readonly resources: SqliteResources;
  readonly muc: SqliteMuc;
  readonly registrations: SqliteRegistrations;
  readonly meetings: SqliteMeetings;
  readonly remoteSip: SqliteRemoteSip;
  readonly billing: SqliteBilling;
  readonly smime: SqliteSmime;
  readonly remoteMail: SqliteRemoteMail;
  readonly cluster: SqliteCluster;
  readonly shared: SqliteSharedState;
  readonly relay: SqliteRelay;

  /** Opens (creating and migrating) the store in `file`; StoreLockedError when `lockDir` is served already. */
  static open(file: string, options: SqliteOpenOptions = {}): SqliteStore {
    if (options.existing && !existsSync(file)) throw new NoStoreError(options.existing.where);
    if (!options.existing) privateDirectory(dirname(file));
    let lock: DataDirLock | undefined;
    if (options.lockDir !== undefined) {
      privateDirectory(options.lockDir);
      lock = DataDirLock.acquire(options.lockDir);
    }
    try {
      return new SqliteStore(file, lock, options.existing);
    } catch (err) {
      lock?.release();
      throw err;
    }
  }

  private constructor(
    file: string,
    private readonly lock: DataDirLock | undefined,
    existing: { where: string } | undefined,
  ) {
    // 0600 before SQLite writes anything: it gives the -wal and -shm files the database's mode.
    if (!existing) closeSync(openSync(file, 'a', 0o600));
    for (const path of [file, `${file}-wal`, `${file}-shm`]) privateFile(path);
    const db = new Database(file, { fileMustExist: existing !== undefined });
    this.db = db;
    try {
      if (existing) {
        // Looked at before anything is written (journal_mode would turn an empty file into a WAL database).
        const version = db.pragma('user_version', { simple: true }) as number;
        if (version === 0) throw new NoStoreError(existing.where);
        if (version !== migrations.length) throw new StoreVersionError(existing.where, version, migrations.length);
      }
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      if (!existing) this.migrate();
    } catch (err) {
      db.close();
      throw err;
    }
    this.domains = new SqliteDomains(db);
    this.accounts = new SqliteAccounts(db);
    this.alerts = new SqliteAlerts(db);
    this.meta = new SqliteMeta(db);
    this.mail = new SqliteMail(db);
    this.queue = new SqliteQueue(db);
    this.rules = new SqliteRules(db);
    this.datasets = new SqliteDatasets(db);
    this.files = new SqliteFiles(db);
    this.accountAcl = new SqliteAccountAcl(db);
    this.davNames = new SqliteDavNames(db);
    this.twoFactor = new SqliteTwoFactor(db);
    this.appPasswords = new SqliteAppPasswords(db);
    this.calendarIndex = new SqliteCalendarIndex(db);
    this.roster = new SqliteRoster(db);
    this.offline = new SqliteOffline(db);
    this.archive = new SqliteArchive(db);
    this.blocking = new SqliteBlocking(db);
    this.resources = new SqliteResources(db);
    this.muc = new SqliteMuc(db);
    this.registrations = new SqliteRegistrations(db);
    this.meetings = new SqliteMeetings(db);
    this.remoteSip = new SqliteRemoteSip(db);
    this.billing = new SqliteBilling(db);
    this.smime = new SqliteSmime(db);
    this.remoteMail = new SqliteRemoteMail(db);
    this.cluster = new SqliteCluster(db);
    this.shared = new SqliteSharedState(db);
    this.relay = new SqliteRelay(db, lock !== undefined);
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    for (let version = current + 1; version <= migrations.length; version++) {
      this.db.transaction(() => {
        // Another process may have migrated since user_version was read: check under the lock.
        if ((this.db.pragma('user_version', { simple: true }) as number) >= version) return;
        this.db.exec(migrations[version - 1]!);
        this.db.pragma(`user_version = ${version}`);
      }).immediate();
    }
  }

  /** Stops the relay's listeners, closes the database, then gives the data directory up. */
  async close(): Promise<void> {
    this.relay.stop();
    if (this.db.open) this.db.close();
    this.lock?.release();
  }
}

class SqliteDomains implements DomainStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      insert: 'INSERT INTO domains (name, settings, created) VALUES (?, ?, ?)',
      byName: 'SELECT * FROM domains WHERE name = ?',
      all: 'SELECT * FROM domains ORDER BY name',
      update: 'UPDATE domains SET settings = ? WHERE name = ?',
      remove: 'DELETE FROM domains WHERE name = ? AND NOT EXISTS (SELECT 1 FROM accounts WHERE domain = ?)',
    });
  }

  async create(name: string, settings: Settings = {}): Promise<DomainRecord> {
    const created = Date.now();
    try {
      this.sql.insert.run(name, JSON.stringify(settings), created);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`domain ${name} already exists`);
      throw err;
    }
    return { name, settings, created: new Date(created) };
  }

  async get(name: string): Promise<DomainRecord | undefined> {
    const row = this.sql.byName.get(name) as DomainRow | undefined;
    return row && toDomain(row);
  }

  async list(): Promise<DomainRecord[]> {
    return (this.sql.all.all() as DomainRow[]).map(toDomain);
  }

  async updateSettings(name: string, settings: Settings): Promise<void> {
    this.sql.update.run(JSON.stringify(settings), name);
  }

  async mergeSettings(name: string, changes: SettingsChanges, nested?: Readonly<Record<string, SettingsChanges>>): Promise<Settings> {
    return this.db.transaction(() => {
      const row = this.sql.byName.get(name) as DomainRow | undefined;
      if (!row) throw new NotFoundError(`domain ${name} does not exist`);
      const merged = mergeNestedSettings(JSON.parse(row.settings) as Settings, changes, nested);
      this.sql.update.run(JSON.stringify(merged), name);
      return merged;
    }).immediate();
  }

  async remove(name: string): Promise<boolean> {
    return this.sql.remove.run(name, name).changes > 0;
  }
}

class SqliteAccounts implements AccountStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      insert: `INSERT INTO accounts (domain, name, real_name, password_hash, cram_md5, scram_credentials, digest_credentials, recovery_email, settings, created)
               VALUES (@domain, @name, @realName, @passwordHash, @cramMd5Context, @scramCredentials, @digestCredentials, @recoveryEmail, @settings, @created)`,
      byName: 'SELECT * FROM accounts WHERE domain = ? AND name = ?',
      byId: 'SELECT * FROM accounts WHERE id = ?',
      all: 'SELECT * FROM accounts ORDER BY domain, name',
      inDomain: 'SELECT * FROM accounts WHERE domain = ? ORDER BY name',
      count: 'SELECT count(*) AS n FROM accounts WHERE domain = ?',
      remove: 'DELETE FROM accounts WHERE id = ?',
      setPassword: `UPDATE accounts SET password_hash = ?, cram_md5 = ?, scram_credentials = ?, digest_credentials = ?,
                    credentials_version = credentials_version + 1 WHERE id = ?`,
      setScramCredentials: 'UPDATE accounts SET scram_credentials = ? WHERE id = ? AND credentials_version = ?',
      setDigestCredentials: 'UPDATE accounts SET digest_credentials = ? WHERE id = ? AND credentials_version = ?',
      setRecoveryEmail: 'UPDATE accounts SET recovery_email = ? WHERE id = ?',
      setRealName: 'UPDATE accounts SET real_name = ? WHERE id = ?',
      setSettings: 'UPDATE accounts SET settings = ? WHERE id = ?',
      setPrefs: 'UPDATE accounts SET prefs = ? WHERE id = ?',
      setPublicInfo: 'UPDATE accounts SET public_info = ? WHERE id = ?',
      recordLogin: 'UPDATE accounts SET prev_login_time = ?, prev_login_ip = ? WHERE id = ?',
      recordFailedLogin: 'UPDATE accounts SET failed_login_time = ?, failed_login_ip = ? WHERE id = ?',
      byAlias: 'SELECT accounts.* FROM account_aliases JOIN accounts ON accounts.id = account_aliases.account_id WHERE account_aliases.domain = ? AND account_aliases.name = ?',
      aliases: 'SELECT name FROM account_aliases WHERE account_id = ? ORDER BY name',
      clearAliases: 'DELETE FROM account_aliases WHERE account_id = ?',
      addAlias: 'INSERT INTO account_aliases (domain, name, account_id) SELECT domain, ?, id FROM accounts WHERE id = ?',
      addReset: 'INSERT INTO password_resets (token_hash, account_id, expires) VALUES (?, ?, ?)',
      findReset: 'SELECT account_id FROM password_resets WHERE token_hash = ? AND expires > ?',
      takeReset: 'DELETE FROM password_resets WHERE token_hash = ? AND expires > ? RETURNING account_id',
      pruneResets: 'DELETE FROM password_resets WHERE expires <= ?',
      dropResets: 'DELETE FROM password_resets WHERE account_id = ?',
    });
  }

  async create(account: NewAccount): Promise<AccountRecord> {
    try {
      const info = this.sql.insert.run({
        domain: account.domain,
        name: account.name,
        realName: account.realName ?? null,
        passwordHash: account.passwordHash,
        cramMd5Context: account.cramMd5Context,
        scramCredentials: account.scramCredentials ?? null,
        digestCredentials: account.digestCredentials ?? null,
        recoveryEmail: account.recoveryEmail ?? null,
        settings: JSON.stringify(account.settings ?? {}),
        created: Date.now(),
      });
      return toAccount(this.sql.byId.get(info.lastInsertRowid) as AccountRow);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`account ${account.name}@${account.domain} already exists`);
      throw err;
    }
  }

  async get(domain: string, name: string): Promise<AccountRecord | undefined> {
    const row = this.sql.byName.get(domain, name) as AccountRow | undefined;
    return row && toAccount(row);
  }

  async getById(id: number): Promise<AccountRecord | undefined> {
    const row = this.sql.byId.get(id) as AccountRow | undefined;
    return row && toAccount(row);
  }

  async list(domain?: string): Promise<AccountRecord[]> {
    const rows = domain === undefined ? this.sql.all.all() : this.sql.inDomain.all(domain);
    return (rows as AccountRow[]).map(toAccount);
  }

  async count(domain: string): Promise<number> {
    return (this.sql.count.get(domain) as { n: number }).n;
  }

  async remove(id: number): Promise<boolean> {
    return this.sql.remove.run(id).changes > 0;
  }

  async setPassword(
    id: number,
    passwordHash: string,
    cramMd5Context: string | null,
    scramCredentials: string | null,
    digestCredentials: string | null,
  ): Promise<void> {
    this.sql.setPassword.run(passwordHash, cramMd5Context, scramCredentials, digestCredentials, id);
  }

  async setScramCredentials(id: number, scramCredentials: string, credentialsVersion: number): Promise<boolean> {
    return this.sql.setScramCredentials.run(scramCredentials, id, credentialsVersion).changes > 0;
  }

  async setDigestCredentials(id: number, digestCredentials: string, credentialsVersion: number): Promise<boolean> {
    return this.sql.setDigestCredentials.run(digestCredentials, id, credentialsVersion).changes > 0;
  }

  async getByAlias(domain: string, name: string): Promise<AccountRecord | undefined> {
    const row = this.sql.byAlias.get(domain, name) as AccountRow | undefined;
    return row && toAccount(row);
  }

  async aliases(id: number): Promise<string[]> {
    return (this.sql.aliases.all(id) as { name: string }[]).map((r) => r.name);
  }

  async setAliases(id: number, names: readonly string[]): Promise<void> {
    try {
      this.db.transaction(() => {
        this.sql.clearAliases.run(id);
        for (const name of names) this.sql.addAlias.run(name, id);
      }).immediate();
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError('the alias is already used by another account');
      throw err;
    }
  }

  async addPasswordReset(tokenHash: string, accountId: number, expires: number): Promise<void> {
    this.db.transaction(() => {
      this.sql.pruneResets.run(Date.now());
      this.sql.addReset.run(tokenHash, accountId, expires);
    }).immediate();
  }

  async findPasswordReset(tokenHash: string, now: number): Promise<number | undefined> {
    return (this.sql.findReset.get(tokenHash, now) as { account_id: number } | undefined)?.account_id;
  }

  async takePasswordReset(tokenHash: string, now: number): Promise<number | undefined> {
    return this.db.transaction(() => {
      const row = this.sql.takeReset.get(tokenHash, now) as { account_id: number } | undefined;
      // The password is being reset: the account's other links stop working too.
      if (row) this.sql.dropResets.run(row.account_id);
      this.sql.pruneResets.run(now);
      return row?.account_id;
    }).immediate();
  }

  async setRecoveryEmail(id: number, email: string | null): Promise<void> {
    this.sql.setRecoveryEmail.run(email, id);
  }

  async setRealName(id: number, realName: string | null): Promise<void> {
    this.sql.setRealName.run(realName, id);
  }

  async setSettings(id: number, settings: Settings): Promise<void> {
    this.sql.setSettings.run(JSON.stringify(settings), id);
  }

  async setPrefs(id: number, prefs: Settings): Promise<void> {
    this.sql.setPrefs.run(JSON.stringify(prefs), id);
  }

  async mergeSettings(id: number, changes: SettingsChanges, columns: AccountColumnChanges = {}): Promise<Settings> {
    return this.merge(id, changes, 'settings', columns);
  }

  async mergePrefs(id: number, changes: SettingsChanges): Promise<Settings> {
    return this.merge(id, changes, 'prefs');
  }

  async mergePublicInfo(id: number, changes: SettingsChanges): Promise<Settings> {
    return this.merge(id, changes, 'public_info');
  }

  private merge(id: number, changes: SettingsChanges, column: 'settings' | 'prefs' | 'public_info', columns: AccountColumnChanges = {}): Settings {
    return this.db.transaction(() => {
      const row = this.sql.byId.get(id) as AccountRow | undefined;
      if (!row) throw new NotFoundError('account not found');
      const merged = mergeSettings(JSON.parse(row[column]) as Settings, changes);
      ({ settings: this.sql.setSettings, prefs: this.sql.setPrefs, public_info: this.sql.setPublicInfo })[column].run(JSON.stringify(merged), id);
      if (columns.realName !== undefined) this.sql.setRealName.run(columns.realName, id);
      if (columns.recoveryEmail !== undefined) this.sql.setRecoveryEmail.run(columns.recoveryEmail, id);
      return merged;
    }).immediate();
  }

  async recordLogin(id: number, record: LoginRecord): Promise<void> {
    relaxedCommit(this.db, () => this.sql.recordLogin.run(record.time.getTime(), record.address, id));
  }

  async recordFailedLogin(id: number, record: LoginRecord): Promise<void> {
    relaxedCommit(this.db, () => this.sql.recordFailedLogin.run(record.time.getTime(), record.address, id));
  }
}

interface AlertRow {
  id: number;
  account_id: number;
  posted: number;
  text: string;
}

class SqliteAlerts implements AlertStore {
  private readonly sql;

  constructor(db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      post: 'INSERT INTO alerts (account_id, posted, text) VALUES (?, ?, ?)',
      pending: 'SELECT * FROM alerts WHERE account_id = ? AND confirmed = 0 ORDER BY id',
      accountsWithPending: 'SELECT DISTINCT account_id FROM alerts WHERE confirmed = 0',
      confirm: 'UPDATE alerts SET confirmed = 1 WHERE id = ?',
    });
  }

  async post(accountId: number, text: string, posted: Date): Promise<AlertRecord> {
    const info = this.sql.post.run(accountId, posted.getTime(), text);
    return { id: Number(info.lastInsertRowid), accountId, posted, text };
  }

  async pending(accountId: number): Promise<AlertRecord[]> {
    const rows = this.sql.pending.all(accountId) as AlertRow[];
    return rows.map((r) => ({ id: r.id, accountId: r.account_id, posted: new Date(r.posted), text: r.text }));
  }

  async accountsWithPending(): Promise<number[]> {
    return (this.sql.accountsWithPending.all() as { account_id: number }[]).map((r) => r.account_id);
  }

  async confirm(id: number): Promise<void> {
    this.sql.confirm.run(id);
  }
}

class SqliteMeta implements MetaStore {
  private readonly sql;

  constructor(db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      get: 'SELECT value FROM meta WHERE key = ?',
      set: 'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
    });
  }

  async get(key: string): Promise<string | undefined> {
    return (this.sql.get.get(key) as { value: string } | undefined)?.value;
  }

  async set(key: string, value: string): Promise<void> {
    this.sql.set.run(key, value);
  }
}
