import type { Database as SqliteDatabase } from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { MAX_RELAY_MESSAGE, type ChangeRelay } from '../store.js';
import { prepareAll } from './util.js';

/** How often a listener looks for other processes' commits (`PRAGMA data_version`), ms. */
const POLL_MS = 250;
/** Relay messages older than this are pruned (by senders, now and then), ms. */
const KEEP_MS = 60_000;

/**
 * The change relay on SQLite: a table (`relay_messages`) the command line writes and the
 * server polls. Only one server serves a data directory (DataDirLock), and it is the only
 * listener: so the serving store's own `send` writes nothing (its events never need to
 * leave the process, and appends must not pay for a row each), while a store opened
 * without the lock (the command line) inserts a row per message.
 *
 * A listener polls `PRAGMA data_version`, which changes when another connection commits
 * (one cheap read per poll), and then reads the rows above its cursor in id order, skipping
 * its own store's. Nothing is ever lost while the file is there, so `onResync` is never
 * called. Senders prune rows older than a minute, at most once a minute each.
 */
export class SqliteRelay implements ChangeRelay {
  /** This store handle, in the rows it sends. */
  private readonly origin = randomBytes(6).toString('hex');
  private readonly sql;
  private readonly timers = new Set<NodeJS.Timeout>();
  private lastPrune = 0;

  constructor(
    private readonly db: SqliteDatabase,
    /** Opened by the serving process (with the data directory's lock). */
    private readonly serving: boolean,
  ) {
    this.sql = prepareAll(db, {
      insert: 'INSERT INTO relay_messages (origin, message, created) VALUES (?, ?, ?)',
      prune: 'DELETE FROM relay_messages WHERE created < ?',
      maxId: 'SELECT coalesce(max(id), 0) AS id FROM relay_messages',
      after: 'SELECT id, origin, message FROM relay_messages WHERE id > ? ORDER BY id',
    });
  }

  async send(message: string): Promise<void> {
    const bytes = Buffer.byteLength(message);
    if (bytes > MAX_RELAY_MESSAGE) throw new RangeError(`relay message too long (${bytes} bytes, at most ${MAX_RELAY_MESSAGE})`);
    if (this.serving) return;
    const now = Date.now();
    this.db.transaction(() => {
      if (now - this.lastPrune >= KEEP_MS) {
        this.sql.prune.run(now - KEEP_MS);
        this.lastPrune = now;
      }
      this.sql.insert.run(this.origin, message, now);
    }).immediate();
  }

  async listen(onMessage: (message: string) => void, onResync: () => void): Promise<() => Promise<void>> {
    void onResync; // no connection to lose: nothing is ever missed
    let cursor = (this.sql.maxId.get() as { id: number }).id;
    let version = this.dataVersion();
    const timer = setInterval(() => {
      const current = this.dataVersion();
      if (current === version) return;
      version = current;
      for (const row of this.sql.after.all(cursor) as { id: number; origin: string; message: string }[]) {
        cursor = row.id;
        if (row.origin !== this.origin) onMessage(row.message);
      }
    }, POLL_MS);
    timer.unref();
    this.timers.add(timer);
    return async () => {
      clearInterval(timer);
      this.timers.delete(timer);
    };
  }

  /** Stops every listener (the store is closing). */
  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.clear();
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }
}
