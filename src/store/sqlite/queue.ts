import type { Database as SqliteDatabase } from 'better-sqlite3';
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
import { prepareAll } from './util.js';
import { toLease, toQueuedMessage, toRecipient, type LeaseRow, type QueuedMessageRow, type RecipientRow } from '../rows.js';

const MESSAGE_COLUMNS = 'id, sender, created, expires, ret, envid, source, length(raw) AS size';

/**
 * The queue in SQLite: every change is one transaction, synced before the call resolves.
 * A process works on a message only while it holds the message's lease (`lease_owner`,
 * `lease_until`), taken by claimDue in an IMMEDIATE transaction (SQLite's one writer at a
 * time), so two processes sharing the file never claim the same message.
 */
export class SqliteQueue implements QueueStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      insertMessage: `INSERT OR IGNORE INTO queue_messages (sender, raw, created, expires, ret, envid, source, key)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      insertRecipient: `INSERT OR IGNORE INTO queue_recipients (message_id, address, notify, orcpt, state, next_attempt)
        VALUES (?, ?, ?, ?, 'pending', ?)`,
      // The first due recipients in the queue_due index, not all of them: a scan after every
      // attempt must not read the whole backlog (quadratic when thousands are due). Leased
      // messages are skipped as the index is walked (a primary-key look-up each); there are
      // only as many as the processes have attempts under way.
      due: `SELECT DISTINCT r.message_id AS id FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id
        WHERE r.state = 'pending' AND r.next_attempt <= ? AND (m.lease_until IS NULL OR m.lease_until <= ?)
        ORDER BY r.next_attempt LIMIT ?`,
      claim: `UPDATE queue_messages SET lease_owner = ?, lease_until = ? WHERE id = ? RETURNING ${MESSAGE_COLUMNS}`,
      // The next attempt of a message nobody holds: the first such recipient in queue_due.
      nextFree: `SELECT r.next_attempt AS t FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id
        WHERE r.state = 'pending' AND (m.lease_until IS NULL OR m.lease_until <= ?) ORDER BY r.next_attempt LIMIT 1`,
      // Held messages (the few in queue_leases) become claimable at the later of their next
      // attempt and the lease's end. (`+r.state`: their recipients by primary key, not by
      // walking every pending one in queue_due.)
      nextHeld: `SELECT min(max(m.lease_until, (SELECT min(r.next_attempt) FROM queue_recipients r
          WHERE r.message_id = m.id AND +r.state = 'pending'))) AS t
        FROM queue_messages m WHERE m.lease_until > ?`,
      renew: 'UPDATE queue_messages SET lease_until = ? WHERE id = ? AND lease_owner = ?',
      release: 'UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?',
      owner: 'SELECT lease_owner FROM queue_messages WHERE id = ?',
      all: `SELECT ${MESSAGE_COLUMNS}, lease_owner, lease_until FROM queue_messages ORDER BY id`,
      one: `SELECT ${MESSAGE_COLUMNS}, lease_owner, lease_until FROM queue_messages WHERE id = ?`,
      retryOne: `UPDATE queue_recipients SET next_attempt = ? WHERE message_id = ? AND state = 'pending' AND next_attempt > ? RETURNING message_id`,
      retryAll: `UPDATE queue_recipients SET next_attempt = ? WHERE state = 'pending' AND next_attempt > ? RETURNING message_id`,
      clearLease: 'UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE id = ?',
      stats: `SELECT (SELECT count(*) FROM queue_messages) AS messages,
        (SELECT count(*) FROM queue_recipients WHERE state = 'pending') AS pending,
        (SELECT min(created) FROM queue_messages) AS oldest`,
      raw: 'SELECT raw FROM queue_messages WHERE id = ?',
      recipients: 'SELECT * FROM queue_recipients WHERE message_id = ? ORDER BY address',
      update: `UPDATE queue_recipients SET state = ?, attempts = attempts + ?, next_attempt = ?,
        last_attempt = CASE WHEN ? THEN ? ELSE last_attempt END, status = ?, diagnostic = ?, remote_mta = ?
        WHERE message_id = ? AND address = ?`,
      pending: `SELECT count(*) AS n FROM queue_recipients WHERE message_id = ? AND state = 'pending'`,
      remove: 'DELETE FROM queue_messages WHERE id = ?',
      removeKeys: 'DELETE FROM delivery_keys WHERE key >= ? AND key < ?',
      pruneKeys: 'DELETE FROM delivery_keys WHERE created < ?',
      recordKey: 'INSERT OR IGNORE INTO delivery_keys (key, created) VALUES (?, ?)',
    });
  }

  async enqueue(message: NewQueuedMessage): Promise<number | undefined> {
    return this.db.transaction(() => this.insert(message)).immediate();
  }

  private insert(m: NewQueuedMessage): number | undefined {
    // The key is remembered beyond the message's stay in the queue (delivery_keys, pruned
    // after 30 days or with the delivery that submitted it), so that a delivery re-run after
    // a crash does not send again what was already sent and delivered.
    if (m.key !== null && this.sql.recordKey.run(m.key, m.created).changes === 0) return undefined;
    const result = this.sql.insertMessage.run(m.sender, m.raw, m.created, m.expires, m.ret, m.envid, m.source, m.key);
    if (result.changes === 0) return undefined;
    const id = Number(result.lastInsertRowid);
    for (const r of m.recipients) this.sql.insertRecipient.run(id, r.address, r.notify, r.orcpt, m.created);
    return id;
  }

  async claimDue(now: number, limit: number, lease: QueueLease): Promise<QueuedMessageRecord[]> {
    if (limit <= 0) return [];
    return this.db.transaction(() => {
      const ids = this.sql.due.all(now, now, limit) as { id: number }[];
      return ids.map(({ id }) => toQueuedMessage(this.sql.claim.get(lease.owner, lease.until, id) as QueuedMessageRow));
    }).immediate();
  }

  async nextDue(now: number): Promise<number | undefined> {
    return this.db.transaction(() => {
      const free = (this.sql.nextFree.get(now) as { t: number } | undefined)?.t;
      const held = (this.sql.nextHeld.get(now) as { t: number | null }).t ?? undefined;
      return free === undefined ? held : held === undefined ? free : Math.min(free, held);
    }).deferred();
  }

  async renewLease(id: number, lease: QueueLease): Promise<boolean> {
    return this.sql.renew.run(lease.until, id, lease.owner).changes > 0;
  }

  async releaseLease(id: number, owner: string): Promise<void> {
    this.sql.release.run(id, owner);
  }

  async readRaw(id: number): Promise<Buffer | undefined> {
    return (this.sql.raw.get(id) as { raw: Buffer } | undefined)?.raw;
  }

  async recipients(id: number): Promise<QueuedRecipientRecord[]> {
    return (this.sql.recipients.all(id) as RecipientRow[]).map(toRecipient);
  }

  async recordAttempt(id: number, owner: string, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): Promise<boolean> {
    const now = Date.now();
    return this.db.transaction(() => {
      // Still ours (expired or not) unless another process claimed it since.
      const row = this.sql.owner.get(id) as { lease_owner: string | null } | undefined;
      if (row?.lease_owner !== owner) return false;
      this.apply(id, now, updates, reports);
      return true;
    }).immediate();
  }

  /** Records updates and reports; removes the message once nothing is pending (inside a transaction). */
  private apply(id: number, now: number, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): void {
    for (const u of updates) {
      this.sql.update.run(u.state, u.attempted ? 1 : 0, u.nextAttempt, u.attempted ? 1 : 0, now, u.status, u.diagnostic, u.remoteMta, id, u.address);
    }
    for (const report of reports) this.insert(report);
    if ((this.sql.pending.get(id) as { n: number }).n === 0) this.removeNow(id);
  }

  private removeNow(id: number): boolean {
    const removed = this.sql.remove.run(id).changes > 0;
    this.sql.removeKeys.run(`q${id}/`, `q${id}0`);
    return removed;
  }

  private entry(id: number): QueueEntry | undefined {
    const row = this.sql.one.get(id) as (QueuedMessageRow & LeaseRow) | undefined;
    if (!row) return undefined;
    return { message: toQueuedMessage(row), recipients: (this.sql.recipients.all(id) as RecipientRow[]).map(toRecipient), lease: toLease(row) };
  }

  async get(id: number): Promise<QueueEntry | undefined> {
    return this.db.transaction(() => this.entry(id)).deferred();
  }

  async retry(now: number, id?: number): Promise<{ messages: number; recipients: number }> {
    return this.db.transaction(() => {
      const rows = (id === undefined ? this.sql.retryAll.all(now, now) : this.sql.retryOne.all(now, id, now)) as { message_id: number }[];
      return { messages: new Set(rows.map((r) => r.message_id)).size, recipients: rows.length };
    }).immediate();
  }

  async remove(id: number): Promise<boolean> {
    return this.db.transaction(() => this.removeNow(id)).immediate();
  }

  async settle<R>(id: number, decide: (entry: QueueEntry, raw: Buffer) => QueueSettlement<R>): Promise<R | undefined> {
    const now = Date.now();
    return this.db.transaction(() => {
      const entry = this.entry(id);
      const raw = (this.sql.raw.get(id) as { raw: Buffer } | undefined)?.raw;
      if (!entry || !raw) return undefined;
      const { updates, reports, result } = decide(entry, raw);
      this.sql.clearLease.run(id);
      this.apply(id, now, updates, reports);
      return result;
    }).immediate();
  }

  async stats(): Promise<QueueStats> {
    const row = this.sql.stats.get() as { messages: number; pending: number; oldest: number | null };
    return { messages: row.messages, pendingRecipients: row.pending, ...(row.oldest !== null ? { oldestCreated: row.oldest } : {}) };
  }

  async list(): Promise<QueueEntry[]> {
    return this.db.transaction(() =>
      (this.sql.all.all() as (QueuedMessageRow & LeaseRow)[]).map((row) => ({
        message: toQueuedMessage(row),
        recipients: (this.sql.recipients.all(row.id) as RecipientRow[]).map(toRecipient),
        lease: toLease(row),
      })),
    ).deferred();
  }

  async pruneDeliveryKeys(before: number): Promise<void> {
    this.sql.pruneKeys.run(before);
  }
}
