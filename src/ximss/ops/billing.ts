import type { BillingActor, PostResult } from '../../services/billing.js';
import { ServiceError } from '../../services/errors.js';
import type { LedgerEntry } from '../../store/billing.js';
import { el } from '../../xml/element.js';
import { appendValue, isDictionary, readValue, type XimssValue } from '../../xml/objects.js';
import { formatGmt, formatLocal } from '../../xml/time.js';
import { inSession, type OperationTable, type SessionContext } from '../engine.js';

/**
 * Spec section "Billing": `balance` carries the XML presentation of a dictionary whose `op`
 * element names the Billing operation, the other elements its parameters; a result comes back
 * as `balanceData` (with the request's `accountName`, if it had one) holding the result
 * dictionary. The seeds name no `op` values; these are CommuniGate Pro's Billing names:
 *
 *   read     [balance]                                     → balance, amount
 *   readAll                                                → { <balance>: amount, ... }
 *   list                                                   → balance: [names]
 *   history  [balance ('*': all)] [limit] [before]         → records: [{ id, time, balance, amount, description, reference, actor }]
 *   credit   amount [balance] [description] [reference]    → balance, amount (after), id, repeated
 *   charge   amount [balance] [description] [reference]    → the same; "insufficient funds" when it does not hold
 *
 * Amounts are whole numbers of minor units (cents); `balance` names a balance (a currency code,
 * the server's billing.currency when absent); `reference` is an idempotency key: a credit or
 * charge repeated with it changes nothing and answers the first one (`repeated` yes). Times in
 * history are in the user's time zone unless the request says `localTime="no"` (then GMT).
 * Rights: see src/services/billing.ts (changing needs the CanManageBalances Domain
 * Administrator right; the account cannot credit itself).
 */

const PARAMETERS: Readonly<Record<string, readonly string[]>> = {
  read: ['balance'],
  readAll: [],
  list: [],
  history: ['balance', 'limit', 'before'],
  credit: ['balance', 'amount', 'description', 'reference'],
  charge: ['balance', 'amount', 'description', 'reference'],
};

/** CommuniGate Pro operations this server does not keep (reservations, removal). */
const UNSUPPORTED = new Set(['reserve', 'release', 'remove']);

/** The request's dictionary as op and string parameters; anything else is a clear error. */
function parseRequest(ctx: SessionContext): { op: string; params: Record<string, string> } {
  let value: XimssValue;
  try {
    value = readValue(ctx.request);
  } catch (err) {
    throw new ServiceError(`bad billing request: ${(err as Error).message}`);
  }
  if (!isDictionary(value)) throw new ServiceError('the billing operation dictionary (with its op element) is missing');
  const op = value.op;
  if (op === undefined) throw new ServiceError('the op element is missing');
  if (typeof op !== 'string') throw new ServiceError('op must be a string');
  const known = PARAMETERS[op];
  if (!Object.prototype.hasOwnProperty.call(PARAMETERS, op) || known === undefined) {
    const shown = JSON.stringify(op.slice(0, 40));
    if (UNSUPPORTED.has(op)) throw new ServiceError(`billing operation ${shown} is not supported (reservations are not kept)`);
    throw new ServiceError(`unknown billing operation ${shown} (known: ${Object.keys(PARAMETERS).join(', ')})`);
  }
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const key of Object.keys(value)) {
    if (key === 'op') continue;
    if (!known.includes(key)) throw new ServiceError(`unknown parameter ${JSON.stringify(key.slice(0, 40))} for ${op} (known: ${known.join(', ') || 'none'})`);
    const v = value[key];
    if (typeof v !== 'string') throw new ServiceError(`parameter ${key} must be a string`);
    params[key] = v;
  }
  return { op, params };
}

function posted(result: PostResult): { [key: string]: XimssValue } {
  return {
    balance: result.entry.currency,
    amount: String(result.balance),
    id: String(result.entry.id),
    repeated: result.repeated ? 'yes' : 'no',
  };
}

function record(entry: LedgerEntry, time: (ms: number) => string): { [key: string]: XimssValue } {
  const r: { [key: string]: XimssValue } = {
    id: String(entry.id),
    time: time(entry.time),
    balance: entry.currency,
    amount: String(entry.amount),
    description: entry.reason,
    actor: entry.actor,
  };
  if (entry.key !== null) r.reference = entry.key;
  return r;
}

export const billingOperations: OperationTable = {
  balance: inSession(async (ctx) => {
    const { op, params } = parseRequest(ctx);
    const billing = ctx.server.billing;
    const accountName = ctx.request.attrs.accountName;
    const actor: BillingActor = { account: ctx.session.account };
    const target = await billing.target(actor, accountName);
    const gmt = ctx.request.attrs.localTime === 'no';
    const time = (ms: number): string => (gmt ? formatGmt(new Date(ms)) : formatLocal(new Date(ms), ctx.session.timeZone));
    let result: { [key: string]: XimssValue };
    switch (op) {
      case 'read': {
        const { currency, amount } = await billing.read(actor, target, params.balance);
        result = { balance: currency, amount: String(amount) };
        break;
      }
      case 'readAll': {
        result = Object.create(null) as { [key: string]: XimssValue };
        for (const b of await billing.balances(actor, target)) result[b.currency] = String(b.amount);
        break;
      }
      case 'list':
        result = { balance: (await billing.balances(actor, target)).map((b) => b.currency) };
        break;
      case 'history': {
        const entries = await billing.history(actor, target, { currency: params.balance, limit: params.limit, before: params.before });
        result = { records: entries.map((e) => record(e, time)) };
        break;
      }
      case 'credit':
      case 'charge': {
        if (params.amount === undefined) throw new ServiceError('the amount parameter is missing');
        const request = { currency: params.balance, amount: params.amount, reason: params.description, key: params.reference };
        result = posted(op === 'credit' ? await billing.credit(actor, target, request) : await billing.charge(actor, target, request));
        break;
      }
      default:
        throw new ServiceError(`unknown billing operation ${op}`);
    }
    const message = el('balanceData', accountName !== undefined ? { accountName } : {});
    ctx.send(appendValue(message, result));
  }),
};
