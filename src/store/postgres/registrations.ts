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
import { isForeignKeyViolation, type Db, type Sql, type Tx } from './db.js';

/** The advisory-lock namespace of an account's bindings ('xsip'; the account id is the second key). */
const BINDINGS_LOCK = 0x78736970;

/** What isFlowBound says, in SQL. */
const FLOW_BOUND = "(b.outbound OR b.transport <> 'udp')";
const B_COLUMNS = BINDING_COLUMNS.replace(/(\w+)/g, 'b.$1');
const PLACEHOLDERS = BINDING_COLUMNS.split(', ')
  .map((_, i) => `$${i + 1}`)
  .join(', ');

const SQL = {
  // Serializes the applies of one account on every node (whether or not it has rows to lock).
  lock: { name: 'sip.lockAccount', text: 'SELECT pg_advisory_xact_lock($1::int, ($2::bigint % 2147483647)::int)' },
  live: {
    name: 'sip.live',
    text: `SELECT ${B_COLUMNS} FROM sip_bindings b LEFT JOIN nodes n ON n.id = b.node
           WHERE b.account_id = $1 AND b.expires > $2 AND (NOT ${FLOW_BOUND} OR n.alive_until >= $2)`,
  },
  count: {
    name: 'sip.count',
    text: `SELECT count(*) AS n FROM sip_bindings b LEFT JOIN nodes n ON n.id = b.node
           WHERE b.expires > $1 AND (NOT ${FLOW_BOUND} OR n.alive_until >= $1)`,
  },
  put: {
    name: 'sip.put',
    text: `INSERT INTO sip_bindings (${BINDING_COLUMNS}) VALUES (${PLACEHOLDERS})
           ON CONFLICT (account_id, binding_key) DO UPDATE SET
             contact = excluded.contact, contact_params = excluded.contact_params, instance = excluded.instance,
             reg_id = excluded.reg_id, call_id = excluded.call_id, cseq = excluded.cseq, expires = excluded.expires,
             q = excluded.q, transport = excluded.transport, host = excluded.host, port = excluded.port,
             flow = excluded.flow, node = excluded.node, outbound = excluded.outbound, path = excluded.path,
             user_agent = excluded.user_agent, updated = excluded.updated`,
  },
  remove: { name: 'sip.remove', text: 'DELETE FROM sip_bindings WHERE account_id = $1 AND binding_key = $2' },
  // SKIP LOCKED: nodes sweeping at once take different rows, and none waits for another.
  sweep: {
    name: 'sip.sweep',
    text: `DELETE FROM sip_bindings WHERE (account_id, binding_key) IN (
             SELECT account_id, binding_key FROM sip_bindings WHERE expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING ${BINDING_COLUMNS}`,
  },
  removeNode: { name: 'sip.removeNode', text: `DELETE FROM sip_bindings b WHERE b.node = $1 AND ${FLOW_BOUND} RETURNING b.account_id` },
} satisfies Record<string, Sql>;

/** Removes a node's bindings inside another transaction (ClusterStore.removeNode's). */
export async function removeNodeBindings(tx: Tx, node: string): Promise<void> {
  await tx.run(SQL.removeNode, [node]);
}

/**
 * SIP registrations in PostgreSQL (see src/store/registrations.ts). `apply` takes an advisory
 * lock on the account first, so two nodes registering it at once decide one after the other,
 * each on what the other committed.
 */
export class PgRegistrations implements RegistrationStore {
  constructor(private readonly db: Db) {}

  async apply(change: RegisterChange, now: number, maxBindings: number): Promise<RegisterOutcome> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lock, [BINDINGS_LOCK, change.accountId]);
      const current = (await tx.rows<BindingRow>(SQL.live, [change.accountId, now])).map(fromBindingRow);
      const decided = decideRegistration(current, change, now, maxBindings);
      if (decided.outcome !== 'ok') return decided;
      for (const b of decided.removed) await tx.run(SQL.remove, [b.accountId, b.key]);
      try {
        for (const b of [...decided.added, ...decided.updated]) await tx.run(SQL.put, bindingValues(b, Boolean));
      } catch (err) {
        if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
        throw err;
      }
      return decided;
    });
  }

  async list(accountId: number, now: number): Promise<Binding[]> {
    return orderBindings((await this.db.rows<BindingRow>(SQL.live, [accountId, now])).map(fromBindingRow));
  }

  async count(now: number): Promise<number> {
    return (await this.db.row<{ n: number }>(SQL.count, [now]))!.n;
  }

  async sweep(now: number, limit: number): Promise<Binding[]> {
    return (await this.db.rows<BindingRow>(SQL.sweep, [now, limit])).map(fromBindingRow);
  }

  async removeNode(node: string): Promise<number[]> {
    const rows = await this.db.rows<{ account_id: number }>(SQL.removeNode, [node]);
    return [...new Set(rows.map((r) => r.account_id))].sort((a, b) => a - b);
  }
}
