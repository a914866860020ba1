import type {
  NewQueuedMessage,
  QueueEntry,
  QueueSettlement,
  QueueStats,
  QueueLease,
  QueuedMessageRecord,
  QueuedRecipientRecord,
  QueueStore,
  RecipientUpdate,
} from '../queue.js';
import { withoutNul, type Db, type Sql, type Tx } from './db.js';
import { toLease, toQueuedMessage, toRecipient, type LeaseRow, type QueuedMessageRow, type RecipientRow } from '../rows.js';

const MESSAGE_COLUMNS = 'id, sender, created, expires, ret, envid, source, size';
const RECIPIENT_COLUMNS = 'address, notify, orcpt, state, attempts, next_attempt, last_attempt, status, diagnostic, remote_mta';

/** The earliest next attempt of a message's pending recipients, as queue_messages.next_due keeps it. */
const NEXT_DUE = `(SELECT min(next_attempt) FROM queue_recipients r WHERE r.message_id = queue_messages.id AND r.state = 'pending')`;

const SQL = {
  recordKey: { name: 'queue.recordKey', text: 'INSERT INTO delivery_keys (key, created) VALUES ($1, $2) ON CONFLICT DO NOTHING' },
  insertMessage: {
    name: 'queue.insertMessage',
    text: `INSERT INTO queue_messages (sender, raw, size, created, expires, ret, envid, source, key, next_due)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $10 THEN $4::bigint END)
           ON CONFLICT (key) DO NOTHING RETURNING id`,
  },
  insertRecipients: {
    name: 'queue.insertRecipients',
    text: `INSERT INTO queue_recipients (message_id, address, notify, orcpt, state, next_attempt)
           SELECT $1, address, notify, orcpt, 'pending', $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS r(address, notify, orcpt)
           ON CONFLICT DO NOTHING`,
  },
  // The longest due first; locked rows (another process claiming them now) are skipped.
  claim: {
    name: 'queue.claim',
    text: `WITH c AS (
             SELECT id FROM queue_messages
             WHERE next_due <= $1 AND (lease_until IS NULL OR lease_until <= $1)
             ORDER BY next_due, id LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE queue_messages q SET lease_owner = $3, lease_until = $4 FROM c WHERE q.id = c.id
           RETURNING q.id, q.sender, q.created, q.expires, q.ret, q.envid, q.source, q.size, q.next_due`,
  },
  nextDue: {
    name: 'queue.nextDue',
    text: `SELECT least(
             (SELECT next_due FROM queue_messages WHERE next_due IS NOT NULL AND (lease_until IS NULL OR lease_until <= $1)
              ORDER BY next_due LIMIT 1),
             (SELECT min(greatest(next_due, lease_until)) FROM queue_messages WHERE lease_until > $1 AND next_due IS NOT NULL)
           ) AS t`,
  },
  renew: {
    name: 'queue.renew',
    text: 'UPDATE queue_messages SET lease_until = $3 WHERE id = $1 AND lease_owner = $2',
  },
  release: {
    name: 'queue.release',
    text: 'UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2',
  },
  raw: { name: 'queue.raw', text: 'SELECT raw FROM queue_messages WHERE id = $1' },
  recipients: {
    name: 'queue.recipients',
    text: `SELECT ${RECIPIENT_COLUMNS} FROM queue_recipients WHERE message_id = $1 ORDER BY address`,
  },
  lockForAttempt: { name: 'queue.lockForAttempt', text: 'SELECT lease_owner FROM queue_messages WHERE id = $1 FOR UPDATE' },
  update: {
    name: 'queue.update',
    text: `UPDATE queue_recipients r SET state = u.state, attempts = r.attempts + CASE WHEN u.attempted THEN 1 ELSE 0 END,
             next_attempt = u.next_attempt, last_attempt = CASE WHEN u.attempted THEN $2::bigint ELSE r.last_attempt END,
             status = u.status, diagnostic = u.diagnostic, remote_mta = u.remote_mta
           FROM unnest($3::text[], $4::text[], $5::bool[], $6::bigint[], $7::text[], $8::text[], $9::text[])
             AS u(address, state, attempted, next_attempt, status, diagnostic, remote_mta)
           WHERE r.message_id = $1 AND r.address = u.address`,
  },
  settle: {
    name: 'queue.settle',
    text: `UPDATE queue_messages SET next_due = ${NEXT_DUE} WHERE id = $1 RETURNING next_due`,
  },
  remove: { name: 'queue.remove', text: 'DELETE FROM queue_messages WHERE id = $1' },
  removeKeys: { name: 'queue.removeKeys', text: 'DELETE FROM delivery_keys WHERE key >= $1 AND key < $2' },
  pruneKeys: { name: 'queue.pruneKeys', text: 'DELETE FROM delivery_keys WHERE created < $1' },
  all: { name: 'queue.all', text: `SELECT ${MESSAGE_COLUMNS}, lease_owner, lease_until FROM queue_messages ORDER BY id` },
  allRecipients: {
    name: 'queue.allRecipients',
    text: `SELECT message_id, ${RECIPIENT_COLUMNS} FROM queue_recipients WHERE message_id = ANY($1::bigint[]) ORDER BY message_id, address`,
  },
  one: { name: 'queue.one', text: `SELECT ${MESSAGE_COLUMNS}, lease_owner, lease_until FROM queue_messages WHERE id = $1` },
  lockOne: { name: 'queue.lockOne', text: `SELECT ${MESSAGE_COLUMNS}, lease_owner, lease_until, raw FROM queue_messages WHERE id = $1 FOR UPDATE` },
  clearLease: { name: 'queue.clearLease', text: 'UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE id = $1' },
  // Recipients made due now, and their messages' next_due with them (in one statement).
  retry: {
    name: 'queue.retry',
    text: `WITH r AS (
             UPDATE queue_recipients SET next_attempt = $1
             WHERE state = 'pending' AND next_attempt > $1 AND ($2::bigint IS NULL OR message_id = $2)
             RETURNING message_id),
           m AS (
             UPDATE queue_messages q SET next_due = least(q.next_due, $1) WHERE q.id IN (SELECT message_id FROM r) RETURNING q.id)
           SELECT (SELECT count(*) FROM r)::int AS recipients, (SELECT count(*) FROM m)::int AS messages`,
  },
  stats: {
    name: 'queue.stats',
    text: `SELECT (SELECT count(*) FROM queue_messages)::int AS messages,
             (SELECT count(*) FROM queue_recipients WHERE state = 'pending')::int AS pending,
             (SELECT min(created) FROM queue_messages) AS oldest`,
  },
} satisfies Record<string, Sql>;

/**
 * The queue in PostgreSQL. Processes claim due messages with leases (FOR UPDATE SKIP
 * LOCKED, so two never claim the same one); only a lease's holder records outcomes.
 */
export class PgQueue implements QueueStore {
  constructor(private readonly db: Db) {}

  async enqueue(message: NewQueuedMessage): Promise<number | undefined> {
    return this.db.tx((tx) => insert(tx, message));
  }

  async claimDue(now: number, limit: number, lease: QueueLease): Promise<QueuedMessageRecord[]> {
    if (limit <= 0) return [];
    const rows = await this.db.rows<QueuedMessageRow & { next_due: number }>(SQL.claim, [now, limit, lease.owner, lease.until]);
    // RETURNING comes in no particular order: the longest due first.
    rows.sort((a, b) => a.next_due - b.next_due || a.id - b.id);
    return rows.map(toQueuedMessage);
  }

  async nextDue(now: number): Promise<number | undefined> {
    const row = await this.db.row<{ t: number | null }>(SQL.nextDue, [now]);
    return row?.t ?? undefined;
  }

  async renewLease(id: number, lease: QueueLease): Promise<boolean> {
    return (await this.db.run(SQL.renew, [id, lease.owner, lease.until])) > 0;
  }

  async releaseLease(id: number, owner: string): Promise<void> {
    await this.db.run(SQL.release, [id, owner]);
  }

  async readRaw(id: number): Promise<Buffer | undefined> {
    return (await this.db.row<{ raw: Buffer }>(SQL.raw, [id]))?.raw;
  }

  async recipients(id: number): Promise<QueuedRecipientRecord[]> {
    return (await this.db.rows<RecipientRow>(SQL.recipients, [id])).map(toRecipient);
  }

  async recordAttempt(id: number, owner: string, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): Promise<boolean> {
    const now = Date.now();
    return this.db.tx(async (tx) => {
      const row = await tx.row<{ lease_owner: string | null }>(SQL.lockForAttempt, [id]);
      if (!row || row.lease_owner !== owner) {
        tx.rollback();
        return false;
      }
      await apply(tx, id, now, updates, reports);
      return true;
    });
  }

  async get(id: number): Promise<QueueEntry | undefined> {
    return this.db.tx(
      async (tx) => {
        const row = await tx.row<QueuedMessageRow & LeaseRow>(SQL.one, [id]);
        if (!row) return undefined;
        const recipients = (await tx.rows<RecipientRow>(SQL.recipients, [id])).map(toRecipient);
        return { message: toQueuedMessage(row), recipients, lease: toLease(row) };
      },
      { snapshot: true },
    );
  }

  async retry(now: number, id?: number): Promise<{ messages: number; recipients: number }> {
    const row = await this.db.row<{ messages: number; recipients: number }>(SQL.retry, [now, id ?? null]);
    return { messages: row?.messages ?? 0, recipients: row?.recipients ?? 0 };
  }

  async remove(id: number): Promise<boolean> {
    return this.db.tx(async (tx) => {
      const removed = (await tx.run(SQL.remove, [id])) > 0;
      await tx.run(SQL.removeKeys, [`q${id}/`, `q${id}0`]);
      return removed;
    });
  }

  async settle<R>(id: number, decide: (entry: QueueEntry, raw: Buffer) => QueueSettlement<R>): Promise<R | undefined> {
    const now = Date.now();
    return this.db.tx(async (tx) => {
      const row = await tx.row<QueuedMessageRow & LeaseRow & { raw: Buffer }>(SQL.lockOne, [id]);
      if (!row) return undefined;
      const recipients = (await tx.rows<RecipientRow>(SQL.recipients, [id])).map(toRecipient);
      const { updates, reports, result } = decide({ message: toQueuedMessage(row), recipients, lease: toLease(row) }, row.raw);
      await tx.run(SQL.clearLease, [id]);
      await apply(tx, id, now, updates, reports);
      return result;
    });
  }

  async stats(): Promise<QueueStats> {
    const row = await this.db.row<{ messages: number; pending: number; oldest: number | null }>(SQL.stats);
    return {
      messages: row?.messages ?? 0,
      pendingRecipients: row?.pending ?? 0,
      ...(row?.oldest !== null && row?.oldest !== undefined ? { oldestCreated: Number(row.oldest) } : {}),
    };
  }

  async list(): Promise<QueueEntry[]> {
    return this.db.tx(
      async (tx) => {
        const messages = await tx.rows<QueuedMessageRow & LeaseRow>(SQL.all);
        const recipients = new Map<number, QueuedRecipientRecord[]>();
        if (messages.length > 0) {
          const rows = await tx.rows<RecipientRow & { message_id: number }>(SQL.allRecipients, [messages.map((m) => m.id)]);
          for (const row of rows) {
            let list = recipients.get(row.message_id);
            if (!list) recipients.set(row.message_id, (list = []));
            list.push(toRecipient(row));
          }
        }
        return messages.map((row) => ({
          message: toQueuedMessage(row),
          recipients: recipients.get(row.id) ?? [],
          lease: toLease(row),
        }));
      },
      { snapshot: true },
    );
  }

  async pruneDeliveryKeys(before: number): Promise<void> {
    await this.db.run(SQL.pruneKeys, [before]);
  }
}

/** Records updates and reports; removes the message once nothing is pending (inside a transaction). */
async function apply(tx: Tx, id: number, now: number, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): Promise<void> {
  if (updates.length > 0) {
    await tx.run(SQL.update, [
      id,
      now,
      updates.map((u) => withoutNul(u.address)),
      updates.map((u) => u.state),
      updates.map((u) => u.attempted),
      updates.map((u) => u.nextAttempt),
      updates.map((u) => withoutNul(u.status)),
      updates.map((u) => withoutNul(u.diagnostic)),
      updates.map((u) => withoutNul(u.remoteMta)),
    ]);
  }
  for (const report of reports) await insert(tx, report);
  const settled = await tx.row<{ next_due: number | null }>(SQL.settle, [id]);
  if (settled && settled.next_due === null) {
    await tx.run(SQL.remove, [id]);
    await tx.run(SQL.removeKeys, [`q${id}/`, `q${id}0`]);
  }
}

/**
 * Queues a message inside a transaction. The key is remembered beyond the message's stay
 * in the queue (delivery_keys, pruned after a while or with the delivery that submitted
 * it), so that a delivery re-run after a crash does not send again what was already sent.
 */
async function insert(tx: Tx, m: NewQueuedMessage): Promise<number | undefined> {
  const key = withoutNul(m.key);
  if (key !== null && (await tx.run(SQL.recordKey, [key, m.created])) === 0) return undefined;
  const row = await tx.row<{ id: number }>(SQL.insertMessage, [
    withoutNul(m.sender),
    m.raw,
    m.raw.length,
    m.created,
    m.expires,
    m.ret,
    withoutNul(m.envid),
    m.source,
    key,
    m.recipients.length > 0,
  ]);
  if (!row) return undefined;
  if (m.recipients.length > 0) {
    await tx.run(SQL.insertRecipients, [
      row.id,
      m.recipients.map((r) => withoutNul(r.address)),
      m.recipients.map((r) => withoutNul(r.notify)),
      m.recipients.map((r) => withoutNul(r.orcpt)),
      m.created,
    ]);
  }
  return row.id;
}
