import type { AppPasswordRecord, AppPasswordSet, AppPasswordStore, TwoFactorEnable, TwoFactorRecord, TwoFactorStore } from '../login-security.js';
import { fromText, isForeignKeyViolation, toText, type Db, type Sql } from './db.js';

interface TwoFactorRow {
  account_id: string | number;
  secret: string;
  enabled: string | number;
  last_step: string | number;
}

interface AppPasswordRow {
  account_id: string | number;
  name: string;
  hash: string;
  scram: string | null;
  digest: string | null;
  created: string | number;
  last_used: string | number | null;
}

const SQL = {
  get: { name: 'twoFactor.get', text: 'SELECT account_id, secret, enabled, last_step FROM two_factor WHERE account_id = $1' },
  insert: {
    name: 'twoFactor.insert',
    text: `INSERT INTO two_factor (account_id, secret, enabled, last_step) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id) DO NOTHING`,
  },
  delete: { name: 'twoFactor.delete', text: 'DELETE FROM two_factor WHERE account_id = $1' },
  deleteCodes: { name: 'twoFactor.deleteCodes', text: 'DELETE FROM recovery_codes WHERE account_id = $1' },
  addCodes: {
    name: 'twoFactor.addCodes',
    text: 'INSERT INTO recovery_codes (account_id, hash) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING',
  },
  useStep: { name: 'twoFactor.useStep', text: 'UPDATE two_factor SET last_step = $2 WHERE account_id = $1 AND last_step < $2' },
  useCode: {
    name: 'twoFactor.useCode',
    text: 'UPDATE recovery_codes SET used = $3 WHERE account_id = $1 AND hash = $2 AND used IS NULL',
  },
  codesLeft: { name: 'twoFactor.codesLeft', text: 'SELECT count(*)::int AS n FROM recovery_codes WHERE account_id = $1 AND used IS NULL' },

  appList: {
    name: 'appPasswords.list',
    text: 'SELECT account_id, name, hash, scram, digest, created, last_used FROM app_passwords WHERE account_id = $1 ORDER BY name',
  },
  appLockAccount: { name: 'appPasswords.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR UPDATE' },
  appGet: { name: 'appPasswords.get', text: 'SELECT 1 AS one FROM app_passwords WHERE account_id = $1 AND name = $2' },
  appCount: { name: 'appPasswords.count', text: 'SELECT count(*)::int AS n FROM app_passwords WHERE account_id = $1' },
  appUpsert: {
    name: 'appPasswords.upsert',
    text: `INSERT INTO app_passwords (account_id, name, hash, scram, digest, created, last_used) VALUES ($1, $2, $3, $4, $5, $6, NULL)
           ON CONFLICT (account_id, name) DO UPDATE SET hash = excluded.hash, scram = excluded.scram, digest = excluded.digest,
             created = excluded.created, last_used = NULL`,
  },
  appRemove: { name: 'appPasswords.remove', text: 'DELETE FROM app_passwords WHERE account_id = $1 AND name = $2' },
  appTouch: {
    name: 'appPasswords.touch',
    text: 'UPDATE app_passwords SET last_used = $3 WHERE account_id = $1 AND name = $2 AND (last_used IS NULL OR last_used < $4)',
  },
} satisfies Record<string, Sql>;

/** Two-factor authentication state in PostgreSQL (see src/store/login-security.ts). */
export class PgTwoFactor implements TwoFactorStore {
  constructor(private readonly db: Db) {}

  async get(accountId: number): Promise<TwoFactorRecord | undefined> {
    const row = await this.db.row<TwoFactorRow>(SQL.get, [accountId]);
    return row && { accountId: Number(row.account_id), secret: row.secret, enabled: Number(row.enabled), lastStep: Number(row.last_step) };
  }

  async enable(accountId: number, secret: string, lastStep: number, recoveryHashes: readonly string[], now: number): Promise<TwoFactorEnable> {
    try {
      return await this.db.tx(async (tx): Promise<TwoFactorEnable> => {
        // The account row locked first: enrolments of one account run one after the other, as
        // in SQLite (a second one sees the first's row and codes, and changes nothing).
        if (!(await tx.row(SQL.appLockAccount, [accountId]))) return 'no-account';
        if ((await tx.run(SQL.insert, [accountId, secret, now, lastStep])) === 0) return 'on-already';
        await tx.run(SQL.deleteCodes, [accountId]);
        if (recoveryHashes.length > 0) await tx.run(SQL.addCodes, [accountId, recoveryHashes]);
        return 'enabled';
      });
    } catch (err) {
      if (isForeignKeyViolation(err)) return 'no-account';
      throw err;
    }
  }

  async disable(accountId: number): Promise<boolean> {
    return this.db.tx(async (tx) => {
      await tx.run(SQL.deleteCodes, [accountId]);
      return (await tx.run(SQL.delete, [accountId])) > 0;
    });
  }

  async useStep(accountId: number, step: number): Promise<boolean> {
    return (await this.db.run(SQL.useStep, [accountId, step])) > 0;
  }

  async useRecoveryCode(accountId: number, hash: string, now: number): Promise<boolean> {
    return (await this.db.run(SQL.useCode, [accountId, hash, now])) > 0;
  }

  async recoveryCodesLeft(accountId: number): Promise<number> {
    return (await this.db.row<{ n: number }>(SQL.codesLeft, [accountId]))?.n ?? 0;
  }
}

/** Application passwords in PostgreSQL (see src/store/login-security.ts). */
export class PgAppPasswords implements AppPasswordStore {
  constructor(private readonly db: Db) {}

  async list(accountId: number): Promise<AppPasswordRecord[]> {
    const rows = await this.db.rows<AppPasswordRow>(SQL.appList, [accountId]);
    return rows.map((row) => ({
      accountId: Number(row.account_id),
      name: fromText(row.name),
      hash: row.hash,
      scram: row.scram,
      digest: row.digest,
      created: Number(row.created),
      lastUsed: row.last_used === null ? null : Number(row.last_used),
    }));
  }

  async set(record: Omit<AppPasswordRecord, 'lastUsed'>, limit: number): Promise<AppPasswordSet> {
    const name = toText(record.name);
    return this.db.tx(async (tx): Promise<AppPasswordSet> => {
      // The account's row is the lock: two processes adding at once count one after the other.
      if (!(await tx.row(SQL.appLockAccount, [record.accountId]))) return 'no-account';
      const existing = (await tx.row(SQL.appGet, [record.accountId, name])) !== undefined;
      if (!existing && ((await tx.row<{ n: number }>(SQL.appCount, [record.accountId]))?.n ?? 0) >= limit) return 'limit';
      await tx.run(SQL.appUpsert, [record.accountId, name, record.hash, record.scram, record.digest, record.created]);
      return existing ? 'replaced' : 'added';
    });
  }

  async remove(accountId: number, name: string): Promise<boolean> {
    return (await this.db.run(SQL.appRemove, [accountId, toText(name)])) > 0;
  }

  async touch(accountId: number, name: string, now: number, granularityMs: number): Promise<void> {
    await this.db.run(SQL.appTouch, [accountId, toText(name), now, now - granularityMs]);
  }
}
