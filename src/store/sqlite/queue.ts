import type { Database as SqliteDatabase } from 'better-sqlite3';
import type {
  MessageSource,
  NewQueuedMessage,
  QueuedMessageRecord,
  QueuedRecipientRecord,
  QueueStore,
  RecipientState,
  RecipientUpdate,
} from '../queue.js';
import { prepareAll } from './util.js';

interface MessageRow {
  id: number;
  sender: string;
  created: number;
  expires: number;
  ret: string | null;
  envid: string | null;
  source: string;
  size: number;
}

interface RecipientRow {
  address: string;
  notify: string | null;
  orcpt: string | null;
  state: string;
  attempts: number;
  next_attempt: number;
  last_attempt: number | null;
  status: string | null;
  diagnostic: string | null;
  remote_mta: string | null;
}

const MESSAGE_COLUMNS = 'id, sender, created, expires, ret, envid, source, length(raw) AS size';

function toMessage(row: MessageRow): QueuedMessageRecord {
  return {
    id: row.id,
    sender: row.sender,
    created: row.created,
    expires: row.expires,
    ret: row.ret === 'FULL' || row.ret === 'HDRS' ? row.ret : null,
    envid: row.envid,
    source: row.source as MessageSource,
    size: row.size,
  };
}

function toRecipient(row: RecipientRow): QueuedRecipientRecord {
  return {
    address: row.address,
    notify: row.notify,
    orcpt: row.orcpt,
    state: row.state as RecipientState,
    attempts: row.attempts,
    nextAttempt: row.next_attempt,
    lastAttempt: row.last_attempt,
    status: row.status,
    diagnostic: row.diagnostic,
    remoteMta: row.remote_mta,
  };
}

/** The queue in SQLite: every change is one transaction, synced before the call resolves. */
export class SqliteQueue implements QueueStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      insertMessage: `INSERT OR IGNORE INTO queue_messages (sender, raw, created, expires, ret, envid, source, key)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      insertRecipient: `INSERT OR IGNORE INTO queue_recipients (message_id, address, notify, orcpt, state, next_attempt)
        VALUES (?, ?, ?, ?, 'pending', ?)`,
      // The first due recipients in the queue_due index, not all of them: a scan after every
      // attempt must not read the whole backlog (quadratic when thousands are due).
      due: `SELECT ${MESSAGE_COLUMNS} FROM queue_messages WHERE id IN
        (SELECT DISTINCT message_id FROM queue_recipients WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt LIMIT ?)
        ORDER BY id`,
      nextDue: `SELECT next_attempt AS t FROM queue_recipients WHERE state = 'pending'
        AND message_id NOT IN (SELECT value FROM json_each(?)) ORDER BY next_attempt LIMIT 1`,
      all: `SELECT ${MESSAGE_COLUMNS} FROM queue_messages ORDER BY id`,
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

  async due(now: number, limit: number, busy: ReadonlySet<number>): Promise<QueuedMessageRecord[]> {
    // Ask for enough to fill `limit` after skipping the messages already being delivered.
    const rows = this.sql.due.all(now, limit + busy.size) as MessageRow[];
    return rows.filter((row) => !busy.has(row.id)).slice(0, limit).map(toMessage);
  }

  async nextDue(busy: ReadonlySet<number>): Promise<number | undefined> {
    const row = this.sql.nextDue.get(JSON.stringify([...busy])) as { t: number } | undefined;
    return row?.t;
  }

  async readRaw(id: number): Promise<Buffer | undefined> {
    return (this.sql.raw.get(id) as { raw: Buffer } | undefined)?.raw;
  }

  async recipients(id: number): Promise<QueuedRecipientRecord[]> {
    return (this.sql.recipients.all(id) as RecipientRow[]).map(toRecipient);
  }

  async recordAttempt(id: number, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): Promise<void> {
    const now = Date.now();
    this.db.transaction(() => {
      for (const u of updates) {
        this.sql.update.run(u.state, u.attempted ? 1 : 0, u.nextAttempt, u.attempted ? 1 : 0, now, u.status, u.diagnostic, u.remoteMta, id, u.address);
      }
      for (const report of reports) this.insert(report);
      if ((this.sql.pending.get(id) as { n: number }).n === 0) {
        this.sql.remove.run(id);
        this.sql.removeKeys.run(`q${id}/`, `q${id}0`);
      }
    }).immediate();
  }

  async list(): Promise<{ message: QueuedMessageRecord; recipients: QueuedRecipientRecord[] }[]> {
    return (this.sql.all.all() as MessageRow[]).map((row) => ({
      message: toMessage(row),
      recipients: (this.sql.recipients.all(row.id) as RecipientRow[]).map(toRecipient),
    }));
  }

  async pruneDeliveryKeys(before: number): Promise<void> {
    this.sql.pruneKeys.run(before);
  }
}
