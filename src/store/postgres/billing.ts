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
import { fromText, toText, type Db, type Sql } from './db.js';

const SQL = {
  // Serializes the posts of one account on every node: each sums the balance after the last one committed.
  lockAccount: { name: 'billing.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  byKey: { name: 'billing.byKey', text: `SELECT ${LEDGER_COLUMNS} FROM ledger WHERE account_id = $1 AND idem_key = $2` },
  sum: { name: 'billing.sum', text: 'SELECT coalesce(sum(amount), 0)::bigint AS n FROM ledger WHERE account_id = $1 AND currency = $2' },
  insert: {
    name: 'billing.insert',
    text: `INSERT INTO ledger (account_id, currency, amount, reason, actor, time, idem_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
  },
  balances: {
    name: 'billing.balances',
    text: `SELECT currency, sum(amount)::bigint AS amount, count(*)::bigint AS entries FROM ledger
           WHERE account_id = $1 GROUP BY currency ORDER BY currency`,
  },
  history: {
    name: 'billing.history',
    text: `SELECT ${LEDGER_COLUMNS} FROM ledger WHERE account_id = $1 AND ($2::text IS NULL OR currency = $2)
           AND id < $3 ORDER BY id DESC LIMIT $4`,
  },
} satisfies Record<string, Sql>;

function entryOf(r: LedgerRow): LedgerEntry {
  return toLedgerEntry({ ...r, currency: fromText(r.currency), reason: fromText(r.reason), actor: fromText(r.actor), idem_key: r.idem_key === null ? null : fromText(r.idem_key) });
}

/**
 * The ledger in PostgreSQL (see src/store/billing.ts). A post locks the account's row first,
 * so the posts of one account decide one after the other across nodes, each on the balance
 * the previous one left.
 */
export class PgBilling implements BillingStore {
  constructor(private readonly db: Db) {}

  async post(write: LedgerWrite): Promise<LedgerPostResult> {
    const currency = toText(write.currency);
    const key = write.key === null ? null : toText(write.key);
    return this.db.tx(async (tx): Promise<LedgerPostResult> => {
      if (!(await tx.row(SQL.lockAccount, [write.accountId]))) throw new NotFoundError('account not found');
      const row = key === null ? undefined : await tx.row<LedgerRow>(SQL.byKey, [write.accountId, key]);
      const existing = row && entryOf(row);
      const { n: balance } = (await tx.row<{ n: number }>(SQL.sum, [write.accountId, existing ? toText(existing.currency) : currency]))!;
      const decided = decidePost(write, existing, balance);
      if (decided !== 'post') return decided;
      const inserted = await tx.row<{ id: number }>(SQL.insert, [write.accountId, currency, write.amount, toText(write.reason), toText(write.actor), write.time, key]);
      const entry: LedgerEntry = { id: inserted!.id, accountId: write.accountId, currency: write.currency, amount: write.amount, reason: write.reason, actor: write.actor, time: write.time, key: write.key };
      return { outcome: 'posted', entry, balance: balance + write.amount };
    });
  }

  async balance(accountId: number, currency: string): Promise<number> {
    return (await this.db.row<{ n: number }>(SQL.sum, [accountId, toText(currency)]))!.n;
  }

  async balances(accountId: number): Promise<BalanceRecord[]> {
    const rows = await this.db.rows<BalanceRecord>(SQL.balances, [accountId]);
    return rows.map((r) => ({ currency: fromText(r.currency), amount: r.amount, entries: r.entries }));
  }

  async history(accountId: number, options: { currency?: string; before?: number; limit: number }): Promise<LedgerEntry[]> {
    const currency = options.currency === undefined ? null : toText(options.currency);
    const rows = await this.db.rows<LedgerRow>(SQL.history, [accountId, currency, options.before ?? Number.MAX_SAFE_INTEGER, options.limit]);
    return rows.map(entryOf);
  }
}
