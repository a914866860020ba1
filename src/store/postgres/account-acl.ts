import {
  AccountAclLimitError,
  applyAccountAclChange,
  NotFoundError,
  type AccountAclChange,
  type AccountAclStore,
  type AclEntryRecord,
} from '../store.js';
import type { Db, Sql } from './db.js';

const SQL = {
  // The account's row, locked: ACL updates of one account follow each other (and the entry count holds).
  lockAccount: { name: 'accountAcl.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  list: { name: 'accountAcl.list', text: 'SELECT pattern, rights FROM account_acl WHERE account_id = $1 ORDER BY pattern' },
  get: { name: 'accountAcl.get', text: 'SELECT rights FROM account_acl WHERE account_id = $1 AND pattern = $2' },
  count: { name: 'accountAcl.count', text: 'SELECT count(*) AS n FROM account_acl WHERE account_id = $1' },
  put: {
    name: 'accountAcl.put',
    text: `INSERT INTO account_acl (account_id, pattern, rights) VALUES ($1, $2, $3)
           ON CONFLICT (account_id, pattern) DO UPDATE SET rights = excluded.rights`,
  },
  remove: { name: 'accountAcl.remove', text: 'DELETE FROM account_acl WHERE account_id = $1 AND pattern = $2' },
} satisfies Record<string, Sql>;

/**
 * Account ACLs in PostgreSQL: one row per (account, pattern). An update is one transaction
 * that first locks the account's row, then applies each change to the entry as stored.
 */
export class PgAccountAcl implements AccountAclStore {
  constructor(private readonly db: Db) {}

  async list(accountId: number): Promise<AclEntryRecord[]> {
    return this.db.rows<AclEntryRecord>(SQL.list, [accountId]);
  }

  async update(accountId: number, changes: readonly AccountAclChange[], maxEntries: number): Promise<AclEntryRecord[]> {
    return this.db.tx(async (tx) => {
      if ((await tx.rows(SQL.lockAccount, [accountId])).length === 0) throw new NotFoundError(`account ${accountId} does not exist`);
      for (const change of changes) {
        const row = await tx.row<{ rights: string }>(SQL.get, [accountId, change.pattern]);
        const next = applyAccountAclChange(row?.rights ?? null, change);
        if (next === null) await tx.run(SQL.remove, [accountId, change.pattern]);
        else await tx.run(SQL.put, [accountId, change.pattern, next]);
      }
      const { n } = (await tx.row<{ n: number }>(SQL.count, [accountId]))!;
      if (n > maxEntries) throw new AccountAclLimitError(`too many ACL entries (at most ${maxEntries})`);
      return tx.rows<AclEntryRecord>(SQL.list, [accountId]);
    });
  }
}
