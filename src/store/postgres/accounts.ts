import {
  AlreadyExistsError,
  NotFoundError,
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
} from '../store.js';
import { isForeignKeyViolation, isUniqueViolation, type Db } from './db.js';
import { toAccount, toDomain, type AccountRow, type DomainRow } from '../rows.js';

const ACCOUNT_COLUMNS = `id, domain, name, real_name, password_hash, cram_md5, scram_credentials, digest_credentials, recovery_email, settings, prefs, public_info, created,
  prev_login_time, prev_login_ip, failed_login_time, failed_login_ip, credentials_version`;


const DOMAIN_SQL = {
  insert: { name: 'domains.insert', text: 'INSERT INTO domains (name, settings, created) VALUES ($1, $2, $3)' },
  byName: { name: 'domains.byName', text: 'SELECT name, settings, created FROM domains WHERE name = $1' },
  lockSettings: { name: 'domains.lockSettings', text: 'SELECT settings FROM domains WHERE name = $1 FOR NO KEY UPDATE' },
  all: { name: 'domains.all', text: 'SELECT name, settings, created FROM domains ORDER BY name' },
  update: { name: 'domains.update', text: 'UPDATE domains SET settings = $1 WHERE name = $2' },
  remove: {
    name: 'domains.remove',
    text: 'DELETE FROM domains WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM accounts WHERE domain = $1)',
  },
};

export class PgDomains implements DomainStore {
  constructor(private readonly db: Db) {}

  async create(name: string, settings: Settings = {}): Promise<DomainRecord> {
    const created = Date.now();
    try {
      await this.db.run(DOMAIN_SQL.insert, [name, JSON.stringify(settings), created]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`domain ${name} already exists`);
      throw err;
    }
    return { name, settings, created: new Date(created) };
  }

  async get(name: string): Promise<DomainRecord | undefined> {
    const row = await this.db.row<DomainRow>(DOMAIN_SQL.byName, [name]);
    return row && toDomain(row);
  }

  async list(): Promise<DomainRecord[]> {
    return (await this.db.rows<DomainRow>(DOMAIN_SQL.all)).map(toDomain);
  }

  async updateSettings(name: string, settings: Settings): Promise<void> {
    await this.db.run(DOMAIN_SQL.update, [JSON.stringify(settings), name]);
  }

  async mergeSettings(name: string, changes: SettingsChanges, nested?: Readonly<Record<string, SettingsChanges>>): Promise<Settings> {
    return this.db.tx(async (tx) => {
      const row = await tx.row<{ settings: string }>(DOMAIN_SQL.lockSettings, [name]);
      if (!row) throw new NotFoundError(`domain ${name} does not exist`);
      const merged = mergeNestedSettings(JSON.parse(row.settings) as Settings, changes, nested);
      await tx.run(DOMAIN_SQL.update, [JSON.stringify(merged), name]);
      return merged;
    });
  }

  async remove(name: string): Promise<boolean> {
    try {
      return (await this.db.run(DOMAIN_SQL.remove, [name])) > 0;
    } catch (err) {
      // An account was created in the domain meanwhile (its foreign key holds the domain).
      if (isForeignKeyViolation(err)) return false;
      throw err;
    }
  }
}

const ACCOUNT_SQL = {
  insert: {
    name: 'accounts.insert',
    text: `INSERT INTO accounts (domain, name, real_name, password_hash, cram_md5, recovery_email, settings, created, scram_credentials,
             digest_credentials)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${ACCOUNT_COLUMNS}`,
  },
  byName: { name: 'accounts.byName', text: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE domain = $1 AND name = $2` },
  byId: { name: 'accounts.byId', text: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = $1` },
  all: { name: 'accounts.all', text: `SELECT ${ACCOUNT_COLUMNS} FROM accounts ORDER BY domain, name` },
  inDomain: { name: 'accounts.inDomain', text: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE domain = $1 ORDER BY name` },
  count: { name: 'accounts.count', text: 'SELECT count(*) AS n FROM accounts WHERE domain = $1' },
  remove: { name: 'accounts.remove', text: 'DELETE FROM accounts WHERE id = $1' },
  setPassword: {
    name: 'accounts.setPassword',
    text: `UPDATE accounts SET password_hash = $1, cram_md5 = $2, scram_credentials = $3, digest_credentials = $4,
             credentials_version = credentials_version + 1 WHERE id = $5`,
  },
  setScramCredentials: {
    name: 'accounts.setScramCredentials',
    text: 'UPDATE accounts SET scram_credentials = $1 WHERE id = $2 AND credentials_version = $3',
  },
  setDigestCredentials: {
    name: 'accounts.setDigestCredentials',
    text: 'UPDATE accounts SET digest_credentials = $1 WHERE id = $2 AND credentials_version = $3',
  },
  setRecoveryEmail: { name: 'accounts.setRecoveryEmail', text: 'UPDATE accounts SET recovery_email = $1 WHERE id = $2' },
  setRealName: { name: 'accounts.setRealName', text: 'UPDATE accounts SET real_name = $1 WHERE id = $2' },
  setSettings: { name: 'accounts.setSettings', text: 'UPDATE accounts SET settings = $1 WHERE id = $2' },
  setPrefs: { name: 'accounts.setPrefs', text: 'UPDATE accounts SET prefs = $1 WHERE id = $2' },
  setPublicInfo: { name: 'accounts.setPublicInfo', text: 'UPDATE accounts SET public_info = $1 WHERE id = $2' },
  lockSettings: { name: 'accounts.lockSettings', text: 'SELECT settings, prefs, public_info FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  recordLogin: { name: 'accounts.recordLogin', text: 'UPDATE accounts SET prev_login_time = $1, prev_login_ip = $2 WHERE id = $3' },
  recordFailedLogin: {
    name: 'accounts.recordFailedLogin',
    text: 'UPDATE accounts SET failed_login_time = $1, failed_login_ip = $2 WHERE id = $3',
  },
  byAlias: {
    name: 'accounts.byAlias',
    text: `SELECT ${ACCOUNT_COLUMNS.replace(/(\w+)/g, 'a.$1')} FROM account_aliases l JOIN accounts a ON a.id = l.account_id
           WHERE l.domain = $1 AND l.name = $2`,
  },
  aliases: { name: 'accounts.aliases', text: 'SELECT name FROM account_aliases WHERE account_id = $1 ORDER BY name' },
  clearAliases: { name: 'accounts.clearAliases', text: 'DELETE FROM account_aliases WHERE account_id = $1' },
  addAliases: {
    name: 'accounts.addAliases',
    text: `INSERT INTO account_aliases (domain, name, account_id)
           SELECT a.domain, n.name, a.id FROM accounts a CROSS JOIN unnest($2::text[]) AS n(name) WHERE a.id = $1`,
  },
  addReset: { name: 'accounts.addReset', text: 'INSERT INTO password_resets (token_hash, account_id, expires) VALUES ($1, $2, $3)' },
  findReset: { name: 'accounts.findReset', text: 'SELECT account_id FROM password_resets WHERE token_hash = $1 AND expires > $2' },
  takeReset: {
    name: 'accounts.takeReset',
    text: 'DELETE FROM password_resets WHERE token_hash = $1 AND expires > $2 RETURNING account_id',
  },
  pruneResets: { name: 'accounts.pruneResets', text: 'DELETE FROM password_resets WHERE expires <= $1' },
  dropResets: { name: 'accounts.dropResets', text: 'DELETE FROM password_resets WHERE account_id = $1' },
};

export class PgAccounts implements AccountStore {
  constructor(private readonly db: Db) {}

  async create(account: NewAccount): Promise<AccountRecord> {
    try {
      const row = await this.db.row<AccountRow>(ACCOUNT_SQL.insert, [
        account.domain,
        account.name,
        account.realName ?? null,
        account.passwordHash,
        account.cramMd5Context,
        account.recoveryEmail ?? null,
        JSON.stringify(account.settings ?? {}),
        Date.now(),
        account.scramCredentials ?? null,
        account.digestCredentials ?? null,
      ]);
      return toAccount(row!);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`account ${account.name}@${account.domain} already exists`);
      if (isForeignKeyViolation(err)) throw new NotFoundError(`domain ${account.domain} does not exist`);
      throw err;
    }
  }

  async get(domain: string, name: string): Promise<AccountRecord | undefined> {
    const row = await this.db.row<AccountRow>(ACCOUNT_SQL.byName, [domain, name]);
    return row && toAccount(row);
  }

  async getById(id: number): Promise<AccountRecord | undefined> {
    const row = await this.db.row<AccountRow>(ACCOUNT_SQL.byId, [id]);
    return row && toAccount(row);
  }

  async list(domain?: string): Promise<AccountRecord[]> {
    const rows = domain === undefined ? await this.db.rows<AccountRow>(ACCOUNT_SQL.all) : await this.db.rows<AccountRow>(ACCOUNT_SQL.inDomain, [domain]);
    return rows.map(toAccount);
  }

  async count(domain: string): Promise<number> {
    return (await this.db.row<{ n: number }>(ACCOUNT_SQL.count, [domain]))!.n;
  }

  async remove(id: number): Promise<boolean> {
    return (await this.db.run(ACCOUNT_SQL.remove, [id])) > 0;
  }

  async setPassword(
    id: number,
    passwordHash: string,
    cramMd5Context: string | null,
    scramCredentials: string | null,
    digestCredentials: string | null,
  ): Promise<void> {
    await this.db.run(ACCOUNT_SQL.setPassword, [passwordHash, cramMd5Context, scramCredentials, digestCredentials, id]);
  }

  async setScramCredentials(id: number, scramCredentials: string, credentialsVersion: number): Promise<boolean> {
    return (await this.db.run(ACCOUNT_SQL.setScramCredentials, [scramCredentials, id, credentialsVersion])) > 0;
  }

  async setDigestCredentials(id: number, digestCredentials: string, credentialsVersion: number): Promise<boolean> {
    return (await this.db.run(ACCOUNT_SQL.setDigestCredentials, [digestCredentials, id, credentialsVersion])) > 0;
  }

  async setRecoveryEmail(id: number, email: string | null): Promise<void> {
    await this.db.run(ACCOUNT_SQL.setRecoveryEmail, [email, id]);
  }

  async setRealName(id: number, realName: string | null): Promise<void> {
    await this.db.run(ACCOUNT_SQL.setRealName, [realName, id]);
  }

  async setSettings(id: number, settings: Settings): Promise<void> {
    await this.db.run(ACCOUNT_SQL.setSettings, [JSON.stringify(settings), id]);
  }

  async setPrefs(id: number, prefs: Settings): Promise<void> {
    await this.db.run(ACCOUNT_SQL.setPrefs, [JSON.stringify(prefs), id]);
  }

  mergeSettings(id: number, changes: SettingsChanges, columns: AccountColumnChanges = {}): Promise<Settings> {
    return this.merge(id, changes, 'settings', columns);
  }

  mergePrefs(id: number, changes: SettingsChanges): Promise<Settings> {
    return this.merge(id, changes, 'prefs');
  }

  mergePublicInfo(id: number, changes: SettingsChanges): Promise<Settings> {
    return this.merge(id, changes, 'public_info');
  }

  private merge(id: number, changes: SettingsChanges, column: 'settings' | 'prefs' | 'public_info', columns: AccountColumnChanges = {}): Promise<Settings> {
    return this.db.tx(async (tx) => {
      const row = await tx.row<{ settings: string; prefs: string; public_info: string }>(ACCOUNT_SQL.lockSettings, [id]);
      if (!row) throw new NotFoundError('account not found');
      const merged = mergeSettings(JSON.parse(row[column]) as Settings, changes);
      await tx.run({ settings: ACCOUNT_SQL.setSettings, prefs: ACCOUNT_SQL.setPrefs, public_info: ACCOUNT_SQL.setPublicInfo }[column], [JSON.stringify(merged), id]);
      if (columns.realName !== undefined) await tx.run(ACCOUNT_SQL.setRealName, [columns.realName, id]);
      if (columns.recoveryEmail !== undefined) await tx.run(ACCOUNT_SQL.setRecoveryEmail, [columns.recoveryEmail, id]);
      return merged;
    });
  }

  /** Login bookkeeping commits without waiting for the WAL flush (like SQLite's relaxed commit). */
  async recordLogin(id: number, record: LoginRecord): Promise<void> {
    await this.db.tx((tx) => tx.run(ACCOUNT_SQL.recordLogin, [record.time.getTime(), record.address, id]), { relaxed: true });
  }

  async recordFailedLogin(id: number, record: LoginRecord): Promise<void> {
    await this.db.tx((tx) => tx.run(ACCOUNT_SQL.recordFailedLogin, [record.time.getTime(), record.address, id]), { relaxed: true });
  }

  async getByAlias(domain: string, name: string): Promise<AccountRecord | undefined> {
    const row = await this.db.row<AccountRow>(ACCOUNT_SQL.byAlias, [domain, name]);
    return row && toAccount(row);
  }

  async aliases(id: number): Promise<string[]> {
    return (await this.db.rows<{ name: string }>(ACCOUNT_SQL.aliases, [id])).map((r) => r.name);
  }

  async setAliases(id: number, names: readonly string[]): Promise<void> {
    try {
      await this.db.tx(async (tx) => {
        await tx.run(ACCOUNT_SQL.clearAliases, [id]);
        if (names.length > 0) await tx.run(ACCOUNT_SQL.addAliases, [id, names]);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError('the alias is already used by another account');
      throw err;
    }
  }

  async addPasswordReset(tokenHash: string, accountId: number, expires: number): Promise<void> {
    await this.db.tx(async (tx) => {
      await tx.run(ACCOUNT_SQL.pruneResets, [Date.now()]);
      await tx.run(ACCOUNT_SQL.addReset, [tokenHash, accountId, expires]);
    });
  }

  async findPasswordReset(tokenHash: string, now: number): Promise<number | undefined> {
    return (await this.db.row<{ account_id: number }>(ACCOUNT_SQL.findReset, [tokenHash, now]))?.account_id;
  }

  async takePasswordReset(tokenHash: string, now: number): Promise<number | undefined> {
    return this.db.tx(async (tx) => {
      const row = await tx.row<{ account_id: number }>(ACCOUNT_SQL.takeReset, [tokenHash, now]);
      // The password is being reset: the account's other links stop working too.
      if (row) await tx.run(ACCOUNT_SQL.dropResets, [row.account_id]);
      await tx.run(ACCOUNT_SQL.pruneResets, [now]);
      return row?.account_id;
    });
  }
}

interface AlertRow {
  id: number;
  account_id: number;
  posted: number;
  text: string;
}

const ALERT_SQL = {
  post: { name: 'alerts.post', text: 'INSERT INTO alerts (account_id, posted, text) VALUES ($1, $2, $3) RETURNING id' },
  pending: {
    name: 'alerts.pending',
    text: 'SELECT id, account_id, posted, text FROM alerts WHERE account_id = $1 AND NOT confirmed ORDER BY id',
  },
  accountsWithPending: { name: 'alerts.accountsWithPending', text: 'SELECT DISTINCT account_id FROM alerts WHERE NOT confirmed' },
  confirm: { name: 'alerts.confirm', text: 'UPDATE alerts SET confirmed = true WHERE id = $1' },
};

export class PgAlerts implements AlertStore {
  constructor(private readonly db: Db) {}

  async post(accountId: number, text: string, posted: Date): Promise<AlertRecord> {
    try {
      const row = await this.db.row<{ id: number }>(ALERT_SQL.post, [accountId, posted.getTime(), text]);
      return { id: row!.id, accountId, posted, text };
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
      throw err;
    }
  }

  async pending(accountId: number): Promise<AlertRecord[]> {
    const rows = await this.db.rows<AlertRow>(ALERT_SQL.pending, [accountId]);
    return rows.map((r) => ({ id: r.id, accountId: r.account_id, posted: new Date(r.posted), text: r.text }));
  }

  async accountsWithPending(): Promise<number[]> {
    return (await this.db.rows<{ account_id: number }>(ALERT_SQL.accountsWithPending)).map((r) => r.account_id);
  }

  async confirm(id: number): Promise<void> {
    await this.db.run(ALERT_SQL.confirm, [id]);
  }
}

const META_SQL = {
  get: { name: 'meta.get', text: 'SELECT value FROM meta WHERE key = $1' },
  set: { name: 'meta.set', text: 'INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value' },
};

export class PgMeta implements MetaStore {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | undefined> {
    return (await this.db.row<{ value: string }>(META_SQL.get, [key]))?.value;
  }

  async set(key: string, value: string): Promise<void> {
    await this.db.run(META_SQL.set, [key, value]);
  }
}
