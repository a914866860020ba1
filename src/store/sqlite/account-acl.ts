import type { Database as SqliteDatabase } from 'better-sqlite3';
import {
  AccountAclLimitError,
  applyAccountAclChange,
  NotFoundError,
  type AccountAclChange,
  type AccountAclStore,
  type AclEntryRecord,
} from '../store.js';
import { prepareAll } from './util.js';

/**
 * Account ACLs in SQLite: one row per (account, pattern). An update is one IMMEDIATE
 * transaction that reads each entry as stored, applies the change, and writes it back, so
 * that two processes granting letters at once both keep theirs.
 */
export class SqliteAccountAcl implements AccountAclStore {
  private readonly sql: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareStatements(db);
  }

  async list(accountId: number): Promise<AclEntryRecord[]> {
    return this.sql.list.all(accountId) as AclEntryRecord[];
  }

  async update(accountId: number, changes: readonly AccountAclChange[], maxEntries: number): Promise<AclEntryRecord[]> {
    return this.db.transaction(() => {
      if (this.sql.account.get(accountId) === undefined) throw new NotFoundError(`account ${accountId} does not exist`);
      for (const change of changes) {
        const row = this.sql.get.get(accountId, change.pattern) as { rights: string } | undefined;
        const next = applyAccountAclChange(row?.rights ?? null, change);
        if (next === null) this.sql.remove.run(accountId, change.pattern);
        else this.sql.put.run(accountId, change.pattern, next);
      }
      const { n } = this.sql.count.get(accountId) as { n: number };
      if (n > maxEntries) throw new AccountAclLimitError(`too many ACL entries (at most ${maxEntries})`);
      return this.sql.list.all(accountId) as AclEntryRecord[];
    }).immediate();
  }
}

function prepareStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    account: 'SELECT 1 FROM accounts WHERE id = ?',
    list: 'SELECT pattern, rights FROM account_acl WHERE account_id = ? ORDER BY pattern',
    get: 'SELECT rights FROM account_acl WHERE account_id = ? AND pattern = ?',
    count: 'SELECT count(*) AS n FROM account_acl WHERE account_id = ?',
    put: `INSERT INTO account_acl (account_id, pattern, rights) VALUES (?, ?, ?)
          ON CONFLICT (account_id, pattern) DO UPDATE SET rights = excluded.rights`,
    remove: 'DELETE FROM account_acl WHERE account_id = ? AND pattern = ?',
  });
}
