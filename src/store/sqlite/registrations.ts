import type { Database as SqliteDatabase } from 'better-sqlite3';
import { NotFoundError } from '../store.js';
import {
  BINDING_COLUMNS,
  bindingValues,
  decideRegistration,
  fromBindingRow,
  orderBindings,
  type Binding,
  type BindingRow,
  type RegisterChange,
  type RegisterOutcome,
  type RegistrationStore,
} from '../registrations.js';
import { isForeignKeyViolation, prepareAll } from './util.js';

/** What isFlowBound says, in SQL, of the columns of `table` (an alias, or '' for the table's own). */
export function flowBound(table = 'b'): string {
  const t = table === '' ? '' : `${table}.`;
  return `(${t}outbound <> 0 OR ${t}transport <> 'udp')`;
}
/** The live bindings: not expired at `now`; flow-bound ones on a node alive at `now` (the node's row must exist). */
const LIVE = `FROM sip_bindings b LEFT JOIN nodes n ON n.id = b.node WHERE b.expires > @now AND (NOT ${flowBound()} OR n.alive_until >= @now)`;
const B_COLUMNS = BINDING_COLUMNS.replace(/(\w+)/g, 'b.$1');

/**
 * SIP registrations in SQLite (see src/store/registrations.ts). `apply` is an IMMEDIATE
 * transaction: the write lock is taken before the account's bindings are read, so no other
 * process changes them between the decision and its writes. Commits are synced like any
 * change a client was told of (a 200 to a REGISTER promises the binding).
 */
export class SqliteRegistrations implements RegistrationStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    const placeholders = BINDING_COLUMNS.split(', ').map(() => '?').join(', ');
    this.sql = prepareAll(db, {
      live: `SELECT ${B_COLUMNS} ${LIVE} AND b.account_id = @account`,
      count: `SELECT count(*) AS n ${LIVE}`,
      put: `INSERT INTO sip_bindings (${BINDING_COLUMNS}) VALUES (${placeholders})
            ON CONFLICT (account_id, binding_key) DO UPDATE SET
              contact = excluded.contact, contact_params = excluded.contact_params, instance = excluded.instance,
              reg_id = excluded.reg_id, call_id = excluded.call_id, cseq = excluded.cseq, expires = excluded.expires,
              q = excluded.q, transport = excluded.transport, host = excluded.host, port = excluded.port,
              flow = excluded.flow, node = excluded.node, outbound = excluded.outbound, path = excluded.path,
              user_agent = excluded.user_agent, updated = excluded.updated`,
      remove: 'DELETE FROM sip_bindings WHERE account_id = ? AND binding_key = ?',
      expired: `DELETE FROM sip_bindings WHERE rowid IN (SELECT rowid FROM sip_bindings WHERE expires <= ? ORDER BY expires LIMIT ?) RETURNING ${BINDING_COLUMNS}`,
      nodeAccounts: `DELETE FROM sip_bindings WHERE node = ? AND ${flowBound('')} RETURNING account_id`,
    });
  }

  async apply(change: RegisterChange, now: number, maxBindings: number): Promise<RegisterOutcome> {
    return this.db
      .transaction((): RegisterOutcome => {
        const current = (this.sql.live.all({ account: change.accountId, now }) as BindingRow[]).map(fromBindingRow);
        const decided = decideRegistration(current, change, now, maxBindings);
        if (decided.outcome !== 'ok') return decided;
        for (const b of decided.removed) this.sql.remove.run(b.accountId, b.key);
        try {
          for (const b of [...decided.added, ...decided.updated]) this.sql.put.run(bindingValues(b, Number));
        } catch (err) {
          if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
          throw err;
        }
        return decided;
      })
      .immediate();
  }

  async list(accountId: number, now: number): Promise<Binding[]> {
    return orderBindings((this.sql.live.all({ account: accountId, now }) as BindingRow[]).map(fromBindingRow));
  }

  async count(now: number): Promise<number> {
    return (this.sql.count.get({ now }) as { n: number }).n;
  }

  async sweep(now: number, limit: number): Promise<Binding[]> {
    return (this.sql.expired.all(now, limit) as BindingRow[]).map(fromBindingRow);
  }

  async removeNode(node: string): Promise<number[]> {
    const rows = this.sql.nodeAccounts.all(node) as { account_id: number }[];
    return [...new Set(rows.map((r) => r.account_id))].sort((a, b) => a - b);
  }
}
