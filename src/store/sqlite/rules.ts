import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { RuleStore } from '../rules.js';

export class SqliteRules implements RuleStore {
  constructor(private readonly db: SqliteDatabase) {}
}
