/**
 * Account balances kept as a ledger (the spec's "Billing" section: the `balance` operation;
 * `ximssd balance`). An account has one balance per currency; every change is a ledger entry
 * (a signed amount in integer minor units: cents, not dollars), and a balance is the sum of
 * its entries, computed inside the transaction that posts a new one. Nothing is read first
 * and written back from a copy: `post` decides (funds, ceiling, idempotency) and writes in one
 * transaction, so two processes debiting one account at once never overdraw it.
 *
 * An entry may carry an idempotency key, unique per account: posting the same key again
 * changes nothing and answers the entry already posted ('duplicate'), so a client (or an
 * administrator) that retries after a lost answer does not charge twice.
 */

export interface LedgerEntry {
  id: number;
  accountId: number;
  /** The balance the entry belongs to: a currency code (or a balance name). */
  currency: string;
  /** Minor units; positive credits, negative debits; never 0. */
  amount: number;
  /** Why (free text, bounded by the service). */
  reason: string;
  /** Who posted it: an account's address, or `cli`. */
  actor: string;
  /** ms since the epoch. */
  time: number;
  /** The idempotency key, unique per account; null when none was given. */
  key: string | null;
}

export interface LedgerWrite {
  accountId: number;
  currency: string;
  /** Minor units, a safe integer other than 0. */
  amount: number;
  reason: string;
  actor: string;
  time: number;
  key: string | null;
  /** The balance may not end below this (0: no overdraft); null: no floor. Only debits are checked. */
  floor: number | null;
  /** The balance may not end above this (keeps sums far below 2^53). Only credits are checked. */
  ceiling: number;
}

export type LedgerPostResult =
  /** Posted; `balance` is the balance after it. */
  | { outcome: 'posted'; entry: LedgerEntry; balance: number }
  /** The key was posted before with the same currency and amount: nothing changed; that entry and the balance now. */
  | { outcome: 'duplicate'; entry: LedgerEntry; balance: number }
  /** The key was posted before with another currency or amount: nothing changed. */
  | { outcome: 'key-conflict'; entry: LedgerEntry; balance: number }
  /** A debit below the floor: nothing changed; the balance now. */
  | { outcome: 'insufficient'; balance: number }
  /** A credit above the ceiling: nothing changed; the balance now. */
  | { outcome: 'ceiling'; balance: number };

export interface BalanceRecord {
  currency: string;
  amount: number;
  /** Entries posted to it. */
  entries: number;
}

export interface BillingStore {
  /**
   * Posts one entry in one transaction, deciding from the balance as stored at that moment.
   * NotFoundError when the account is not there.
   */
  post(write: LedgerWrite): Promise<LedgerPostResult>;
  /** The balance of one currency (0 when it has no entries). */
  balance(accountId: number, currency: string): Promise<number>;
  /** Every balance of the account that has entries, by currency. */
  balances(accountId: number): Promise<BalanceRecord[]>;
  /**
   * Entries newest first (by id): of one currency, or of all when `currency` is undefined;
   * only those with an id below `before` when given; at most `limit`.
   */
  history(accountId: number, options: { currency?: string; before?: number; limit: number }): Promise<LedgerEntry[]>;
}

/** A row of the `ledger` table, as both engines define it. */
export interface LedgerRow {
  id: number;
  account_id: number;
  currency: string;
  amount: number;
  reason: string;
  actor: string;
  time: number;
  idem_key: string | null;
}

export const LEDGER_COLUMNS = 'id, account_id, currency, amount, reason, actor, time, idem_key';

export function toLedgerEntry(r: LedgerRow): LedgerEntry {
  return { id: r.id, accountId: r.account_id, currency: r.currency, amount: r.amount, reason: r.reason, actor: r.actor, time: r.time, key: r.idem_key };
}

/**
 * What a post decides, given the entry already posted under its key (if any) and the balance
 * before it: the same decision on both engines.
 */
export function decidePost(write: LedgerWrite, existing: LedgerEntry | undefined, balance: number): LedgerPostResult | 'post' {
  if (existing) {
    const same = existing.currency === write.currency && existing.amount === write.amount;
    return { outcome: same ? 'duplicate' : 'key-conflict', entry: existing, balance };
  }
  const after = balance + write.amount;
  if (write.amount < 0 && write.floor !== null && after < write.floor) return { outcome: 'insufficient', balance };
  if (write.amount > 0 && after > write.ceiling) return { outcome: 'ceiling', balance };
  return 'post';
}
