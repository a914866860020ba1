import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { AppPasswordRecord, AppPasswordSet, AppPasswordStore, TwoFactorEnable, TwoFactorRecord, TwoFactorStore } from '../login-security.js';
import { isForeignKeyViolation, prepareAll } from './util.js';

interface TwoFactorRow {
  account_id: number;
  secret: string;
  enabled: number;
  last_step: number;
}

interface AppPasswordRow {
  account_id: number;
  name: string;
  hash: string;
  scram: string | null;
  digest: string | null;
  created: number;
  last_used: number | null;
}

/** Two-factor authentication state in SQLite (see src/store/login-security.ts). */
export class SqliteTwoFactor implements TwoFactorStore {
  private readonly sql: ReturnType<typeof twoFactorStatements>;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = twoFactorStatements(db);
  }

  async get(accountId: number): Promise<TwoFactorRecord | undefined> {
    const row = this.sql.get.get(accountId) as TwoFactorRow | undefined;
    return row && { accountId: row.account_id, secret: row.secret, enabled: row.enabled, lastStep: row.last_step };
  }

  async enable(accountId: number, secret: string, lastStep: number, recoveryHashes: readonly string[], now: number): Promise<TwoFactorEnable> {
    try {
      return this.db.transaction((): TwoFactorEnable => {
        if (this.sql.insert.run({ account: accountId, secret, enabled: now, step: lastStep }).changes === 0) return 'on-already';
        this.sql.deleteCodes.run(accountId);
        for (const hash of recoveryHashes) this.sql.addCode.run(accountId, hash);
        return 'enabled';
      })();
    } catch (err) {
      if (isForeignKeyViolation(err)) return 'no-account';
      throw err;
    }
  }

  async disable(accountId: number): Promise<boolean> {
    return this.db.transaction(() => {
      this.sql.deleteCodes.run(accountId);
      return this.sql.delete.run(accountId).changes > 0;
    })();
  }

  async useStep(accountId: number, step: number): Promise<boolean> {
    return this.sql.useStep.run(step, accountId, step).changes > 0;
  }

  async useRecoveryCode(accountId: number, hash: string, now: number): Promise<boolean> {
    return this.sql.useCode.run(now, accountId, hash).changes > 0;
  }

  async recoveryCodesLeft(accountId: number): Promise<number> {
    return (this.sql.codesLeft.get(accountId) as { n: number }).n;
  }
}

function twoFactorStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    get: 'SELECT account_id, secret, enabled, last_step FROM two_factor WHERE account_id = ?',
    insert: `INSERT INTO two_factor (account_id, secret, enabled, last_step) VALUES (@account, @secret, @enabled, @step)
             ON CONFLICT (account_id) DO NOTHING`,
    delete: 'DELETE FROM two_factor WHERE account_id = ?',
    deleteCodes: 'DELETE FROM recovery_codes WHERE account_id = ?',
    addCode: 'INSERT INTO recovery_codes (account_id, hash) VALUES (?, ?) ON CONFLICT DO NOTHING',
    useStep: 'UPDATE two_factor SET last_step = ? WHERE account_id = ? AND last_step < ?',
    useCode: 'UPDATE recovery_codes SET used = ? WHERE account_id = ? AND hash = ? AND used IS NULL',
    codesLeft: 'SELECT count(*) AS n FROM recovery_codes WHERE account_id = ? AND used IS NULL',
  });
}

/** Application passwords in SQLite (see src/store/login-security.ts). */
export class SqliteAppPasswords implements AppPasswordStore {
  private readonly sql: ReturnType<typeof appPasswordStatements>;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = appPasswordStatements(db);
  }

  async list(accountId: number): Promise<AppPasswordRecord[]> {
    return (this.sql.list.all(accountId) as AppPasswordRow[]).map(fromRow);
  }

  async set(record: Omit<AppPasswordRecord, 'lastUsed'>, limit: number): Promise<AppPasswordSet> {
    try {
      return this.db.transaction((): AppPasswordSet => {
        const existing = this.sql.get.get(record.accountId, record.name) !== undefined;
        if (!existing && (this.sql.count.get(record.accountId) as { n: number }).n >= limit) return 'limit';
        this.sql.upsert.run({
          account: record.accountId,
          name: record.name,
          hash: record.hash,
          scram: record.scram,
          digest: record.digest,
          created: record.created,
        });
        return existing ? 'replaced' : 'added';
      })();
    } catch (err) {
      if (isForeignKeyViolation(err)) return 'no-account';
      throw err;
    }
  }

  async remove(accountId: number, name: string): Promise<boolean> {
    return this.sql.remove.run(accountId, name).changes > 0;
  }

  async touch(accountId: number, name: string, now: number, granularityMs: number): Promise<void> {
    this.sql.touch.run(now, accountId, name, now - granularityMs);
  }
}

function fromRow(row: AppPasswordRow): AppPasswordRecord {
  return {
    accountId: row.account_id,
    name: row.name,
    hash: row.hash,
    scram: row.scram,
    digest: row.digest,
    created: row.created,
    lastUsed: row.last_used,
  };
}

function appPasswordStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    list: 'SELECT account_id, name, hash, scram, digest, created, last_used FROM app_passwords WHERE account_id = ? ORDER BY name',
    get: 'SELECT 1 FROM app_passwords WHERE account_id = ? AND name = ?',
    count: 'SELECT count(*) AS n FROM app_passwords WHERE account_id = ?',
    upsert: `INSERT INTO app_passwords (account_id, name, hash, scram, digest, created, last_used)
             VALUES (@account, @name, @hash, @scram, @digest, @created, NULL)
             ON CONFLICT (account_id, name) DO UPDATE SET hash = excluded.hash, scram = excluded.scram, digest = excluded.digest,
               created = excluded.created, last_used = NULL`,
    remove: 'DELETE FROM app_passwords WHERE account_id = ? AND name = ?',
    touch: 'UPDATE app_passwords SET last_used = ? WHERE account_id = ? AND name = ? AND (last_used IS NULL OR last_used < ?)',
  });
}
