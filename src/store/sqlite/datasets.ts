import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { DatasetStore } from '../datasets.js';

export class SqliteDatasets implements DatasetStore {
  constructor(private readonly db: SqliteDatabase) {}
}
