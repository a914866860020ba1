import type { Database as SqliteDatabase } from 'better-sqlite3';
import {
  decidePost,
  LEDGER_COLUMNS,
  toLedgerEntry,
  type BalanceRecord,
  type BillingStore,
  type LedgerEntry,
  type LedgerPostResult,
  type LedgerRow,
  type LedgerWrite,
} from '../billing.js';
import { NotFoundError } from '../store.js';
import { isForeignKeyViolation, prepareAll } from './util.js';

/**
 * The ledger in SQLite (see src/store/billing.ts). A post is one IMMEDIATE transaction: the
 * write lock is taken before the balance is summed, so no other process sharing the file
 * (the command line beside a server) posts between the decision and the insert.
 */
export class SqliteBilling implements BillingStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      byKey: `SELECT ${LEDGER_COLUMNS} FROM ledger WHERE account_id = ? AND idem_key = ?`,
      sum: 'SELECT coalesce(sum(amount), 0) AS n FROM ledger WHERE account_id = ? AND currency = ?',
      insert: `INSERT INTO ledger (account_id, currency, amount, reason, actor, time, idem_key)
               VALUES (@accountId, @currency, @amount, @reason, @actor, @time, @key)`,
      balances: 'SELECT currency, sum(amount) AS amount, count(*) AS entries FROM ledger WHERE account_id = ? GROUP BY currency ORDER BY currency',
      history: `SELECT ${LEDGER_COLUMNS} FROM ledger WHERE account_id = @account AND (@currency IS NULL OR currency = @currency)
                AND id < @before ORDER BY id DESC LIMIT @limit`,
    });
  }

  async post(write: LedgerWrite): Promise<LedgerPostResult> {
    return this.db
      .transaction((): LedgerPostResult => {
        const row = write.key === null ? undefined : (this.sql.byKey.get(write.accountId, write.key) as LedgerRow | undefined);
        const existing = row && toLedgerEntry(row);
        const balance = (this.sql.sum.get(write.accountId, existing ? existing.currency : write.currency) as { n: number }).n;
        const decided = decidePost(write, existing, balance);
        if (decided !== 'post') return decided;
        let id: number;
        try {
          id = Number(this.sql.insert.run({ accountId: write.accountId, currency: write.currency, amount: write.amount, reason: write.reason, actor: write.actor, time: write.time, key: write.key }).lastInsertRowid);
        } catch (err) {
          if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
          throw err;
        }
        const entry: LedgerEntry = { id, accountId: write.accountId, currency: write.currency, amount: write.amount, reason: write.reason, actor: write.actor, time: write.time, key: write.key };
        return { outcome: 'posted', entry, balance: balance + write.amount };
      })
      .immediate();
  }

  async balance(accountId: number, currency: string): Promise<number> {
    return (this.sql.sum.get(accountId, currency) as { n: number }).n;
  }

  async balances(accountId: number): Promise<BalanceRecord[]> {
    return this.sql.balances.all(accountId) as BalanceRecord[];
  }

  async history(accountId: number, options: { currency?: string; before?: number; limit: number }): Promise<LedgerEntry[]> {
    const rows = this.sql.history.all({
      account: accountId,
      currency: options.currency ?? null,
      before: options.before ?? Number.MAX_SAFE_INTEGER,
      limit: options.limit,
    }) as LedgerRow[];
    return rows.map(toLedgerEntry);
  }
}
