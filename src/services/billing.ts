/**
 * Account balances (the spec's "Billing" section: the XIMSS `balance` operation; the
 * `ximssd balance` commands). An account has a balance per currency (or balance name), kept
 * as a ledger in the store (src/store/billing.ts): every credit and debit is an entry, and the
 * store decides each one (funds, the ceiling, a repeated idempotency key) inside the
 * transaction that writes it, on the balance as stored then.
 *
 * Who may do what:
 *   - read (read, readAll, list, history): the account itself; another account with the `a`
 *     Account Access Right over it (its domain's postmaster holds it) or the
 *     CanManageBalances Domain Administrator right;
 *   - change (credit, charge): a Domain Administrator of the account's domain holding
 *     CanManageBalances (the postmaster holds it), or the command line. No account changes
 *     its own balance over XIMSS, not even an administrator.
 *
 * Amounts are whole numbers of minor units (cents), positive, at most `maxAmount`; a balance
 * never goes below 0 through a charge nor above `maxBalance` through a credit.
 */
import { silentLogger, type Logger } from '../log.js';
import type { BalanceRecord, LedgerEntry, LedgerPostResult } from '../store/billing.js';
import { NotFoundError, type AccountRecord, type Store } from '../store/store.js';
import type { AccountRightsService } from './account-rights.js';
import { fullName, type AccountService } from './accounts.js';
import { ServiceError } from './errors.js';

/** The Domain Administrator right (DomainAdminRights) that lets an account change and read other accounts' balances. */
export const BILLING_ADMIN_RIGHT = 'CanManageBalances';

export interface BillingLimits {
  /** The balance used when a request names none. */
  currency: string;
  maxAmount: number;
  maxBalance: number;
  historyLimit: number;
}

/** The texts of account-rights.ts (ACCESS_DENIED, UNKNOWN_ACCOUNT), kept here so that the command line loads no rights module. */
const ACCESS_DENIED = 'access denied';
const UNKNOWN_ACCOUNT = 'unknown account';

/** Characters a reason (description) may have; longer is refused. */
export const MAX_REASON_CHARS = 256;
/** Characters an idempotency key (reference) may have. */
export const MAX_KEY_CHARS = 128;

/** Who asks: a logged-in account, or the administrator at the command line. */
export type BillingActor = { account: AccountRecord } | 'cli';

/** A balance name: a currency code (USD) or a short name (minutes). */
const BALANCE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface PostRequest {
  /** The balance; the default currency when undefined. */
  currency?: string;
  /** Minor units, as text (what a client or the command line gave). */
  amount: string;
  reason?: string;
  /** The idempotency key. */
  key?: string;
}

export interface PostResult {
  entry: LedgerEntry;
  /** The balance after the entry. */
  balance: number;
  /** True when the key was posted before: nothing changed now. */
  repeated: boolean;
}

export class BillingService {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    /** The Account Access Rights of the accounts; undefined for the command line, which acts as 'cli' only. */
    private readonly rights: AccountRightsService | undefined,
    private readonly limits: BillingLimits,
    private readonly log: Logger = silentLogger,
  ) {}

  /** The account a request's `accountName` names (the actor's own when absent). */
  async target(actor: BillingActor, accountName: string | undefined): Promise<AccountRecord> {
    if (actor === 'cli') {
      if (accountName === undefined) throw new ServiceError('the account is missing');
      const found = await this.accounts.find(accountName, undefined, { aliases: false });
      if (!found) throw new ServiceError(`unknown account ${accountName}`);
      return found;
    }
    if (!this.rights) throw new ServiceError(ACCESS_DENIED);
    return this.rights.target(actor.account, accountName);
  }

  /** The balance name a request means: its own, checked, or the default currency. */
  currency(name: string | undefined): string {
    if (name === undefined || name === '') return this.limits.currency;
    if (!BALANCE_NAME.test(name)) {
      throw new ServiceError(`bad balance name ${JSON.stringify(name.slice(0, 40))}: a currency code or a name of letters, digits, _ . - (at most 32)`);
    }
    return name;
  }

  /** A positive whole number of minor units, at most maxAmount. */
  amount(text: string): number {
    const t = text.trim();
    if (!/^\d{1,16}$/.test(t)) throw new ServiceError(`bad amount ${JSON.stringify(text.slice(0, 40))}: a positive whole number of minor units (cents) is expected`);
    const n = Number(t);
    if (n <= 0) throw new ServiceError('bad amount: it must be greater than 0');
    if (n > this.limits.maxAmount) throw new ServiceError(`bad amount: at most ${this.limits.maxAmount} in one operation`);
    return n;
  }

  private async mayRead(actor: BillingActor, target: AccountRecord): Promise<void> {
    if (actor === 'cli' || actor.account.id === target.id) return;
    if (!this.rights || !(await this.rights.has(actor.account, target, 'a', BILLING_ADMIN_RIGHT))) throw new ServiceError(ACCESS_DENIED);
  }

  private async mayChange(actor: BillingActor, target: AccountRecord): Promise<void> {
    if (actor === 'cli') return;
    // Not even an administrator changes its own balance over XIMSS (the command line does).
    if (actor.account.id === target.id) throw new ServiceError(`${ACCESS_DENIED}: an account cannot change its own balance`);
    if (!(await this.accounts.hasDomainAdminRight(actor.account, target, BILLING_ADMIN_RIGHT))) {
      throw new ServiceError(`${ACCESS_DENIED}: changing a balance needs the ${BILLING_ADMIN_RIGHT} Domain Administrator right`);
    }
  }

  /** One balance (0 when it has no entries). */
  async read(actor: BillingActor, target: AccountRecord, currency: string | undefined): Promise<{ currency: string; amount: number }> {
    const name = this.currency(currency);
    await this.mayRead(actor, target);
    return { currency: name, amount: await this.store.billing.balance(target.id, name) };
  }

  /** Every balance that has entries; the default one (0) when there is none. */
  async balances(actor: BillingActor, target: AccountRecord): Promise<BalanceRecord[]> {
    await this.mayRead(actor, target);
    const all = await this.store.billing.balances(target.id);
    return all.length > 0 ? all : [{ currency: this.limits.currency, amount: 0, entries: 0 }];
  }

  /** Entries newest first: of one balance, or of all (`currency` '*'); at most `limit` (historyLimit by default). */
  async history(actor: BillingActor, target: AccountRecord, options: { currency?: string; before?: string; limit?: string }): Promise<LedgerEntry[]> {
    const currency = options.currency === '*' ? undefined : this.currency(options.currency);
    const limit = options.limit === undefined ? this.limits.historyLimit : wholeNumber(options.limit, 'limit');
    if (limit < 1 || limit > this.limits.historyLimit) throw new ServiceError(`bad limit: 1 to ${this.limits.historyLimit}`);
    const before = options.before === undefined ? undefined : wholeNumber(options.before, 'before');
    await this.mayRead(actor, target);
    return this.store.billing.history(target.id, { ...(currency !== undefined ? { currency } : {}), ...(before !== undefined ? { before } : {}), limit });
  }

  /** Adds funds. */
  async credit(actor: BillingActor, target: AccountRecord, request: PostRequest): Promise<PostResult> {
    return this.post(actor, target, request, 1);
  }

  /** Takes funds; refused ("insufficient funds") when the balance does not hold them. */
  async charge(actor: BillingActor, target: AccountRecord, request: PostRequest): Promise<PostResult> {
    return this.post(actor, target, request, -1);
  }

  private async post(actor: BillingActor, target: AccountRecord, request: PostRequest, sign: 1 | -1): Promise<PostResult> {
    const currency = this.currency(request.currency);
    const amount = this.amount(request.amount);
    const reason = request.reason ?? '';
    if (reason.length > MAX_REASON_CHARS) throw new ServiceError(`the description is too long (at most ${MAX_REASON_CHARS} characters)`);
    if (CONTROL.test(reason)) throw new ServiceError('the description may not contain control characters');
    const key = request.key === undefined || request.key === '' ? null : request.key;
    if (key !== null && (key.length > MAX_KEY_CHARS || CONTROL.test(key))) {
      throw new ServiceError(`bad reference: at most ${MAX_KEY_CHARS} characters, no control characters`);
    }
    await this.mayChange(actor, target);
    const by = actor === 'cli' ? 'cli' : fullName(actor.account);
    let result: LedgerPostResult;
    try {
      result = await this.store.billing.post({
        accountId: target.id,
        currency,
        amount: sign * amount,
        reason,
        actor: by,
        time: Date.now(),
        key,
        floor: sign < 0 ? 0 : null,
        ceiling: this.limits.maxBalance,
      });
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError(UNKNOWN_ACCOUNT);
      throw err;
    }
    const account = fullName(target);
    const op = sign > 0 ? 'credit' : 'charge';
    switch (result.outcome) {
      case 'posted':
        this.log.info(
          { event: 'billing.posted', account, actor: by, op, currency, amount: result.entry.amount, balance: result.balance, entry: result.entry.id, ...(key !== null ? { reference: key } : {}) },
          `${op} of ${amount} ${currency} for ${account}`,
        );
        return { entry: result.entry, balance: result.balance, repeated: false };
      case 'duplicate':
        this.log.info({ event: 'billing.repeated', account, actor: by, op, currency, entry: result.entry.id, reference: key }, `repeated ${op} for ${account} (reference already posted)`);
        return { entry: result.entry, balance: result.balance, repeated: true };
      case 'key-conflict':
        throw new ServiceError('this reference was already used for another operation');
      case 'insufficient':
        this.log.info({ event: 'billing.refused', account, actor: by, op, currency, amount, balance: result.balance, reason: 'insufficient funds' }, `${op} refused for ${account}: insufficient funds`);
        throw new ServiceError('insufficient funds');
      case 'ceiling':
        this.log.info({ event: 'billing.refused', account, actor: by, op, currency, amount, balance: result.balance, reason: 'ceiling' }, `${op} refused for ${account}: over the balance limit`);
        throw new ServiceError(`the balance would exceed its limit (${this.limits.maxBalance})`);
    }
  }
}

function wholeNumber(text: string, what: string): number {
  const t = text.trim();
  if (!/^\d{1,15}$/.test(t)) throw new ServiceError(`bad ${what} ${JSON.stringify(text.slice(0, 40))}: a whole number is expected`);
  return Number(t);
}
