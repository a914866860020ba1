import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { QueueStore } from '../queue.js';

export class SqliteQueue implements QueueStore {
  constructor(private readonly db: SqliteDatabase) {}
}
