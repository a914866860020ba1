import type { Database as SqliteDatabase } from 'better-sqlite3';
import {
  DatasetLimitError,
  type DatasetEntry,
  type DatasetLimits,
  type DatasetStore,
  type EntryWrite,
} from '../datasets.js';
import { AlreadyExistsError, NotFoundError } from '../store.js';
import { prepareAll } from './util.js';
import { ancestors, subtreeRange, toEntry, writtenEntry, type EntryRow } from '../rows.js';


/**
 * Datasets and their entries in SQLite. Every write is one IMMEDIATE transaction (limits
 * are checked inside it), committed and synced before the promise resolves; multi-statement
 * reads run in one transaction too, so that they see one state.
 */
export class SqliteDatasets implements DatasetStore {
  private readonly sql: ReturnType<typeof prepareStatements>;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareStatements(db);
  }

  private has(accountId: number, path: string): boolean {
    return this.sql.exists.get(accountId, path) !== undefined;
  }

  /** Inserts `path` and its missing parents; call inside a write transaction. */
  private insertWithParents(accountId: number, path: string, limits: DatasetLimits): void {
    const missing = [...ancestors(path), path].filter((p) => !this.has(accountId, p));
    if (missing.length === 0) return;
    const { n } = this.sql.countDatasets.get(accountId) as { n: number };
    if (n + missing.length > limits.maxDatasets) {
      throw new DatasetLimitError(`too many datasets (at most ${limits.maxDatasets} in an account)`);
    }
    for (const p of missing) this.sql.insertDataset.run(accountId, p);
  }

  async exists(accountId: number, path: string): Promise<boolean> {
    return this.has(accountId, path);
  }

  async create(accountId: number, path: string, limits: DatasetLimits): Promise<void> {
    this.db.transaction(() => {
      if (this.has(accountId, path)) throw new AlreadyExistsError(`dataset ${path} already exists`);
      this.insertWithParents(accountId, path, limits);
    }).immediate();
  }

  async remove(accountId: number, path: string): Promise<boolean> {
    return this.db.transaction(() => {
      if (!this.has(accountId, path)) return false;
      // Entries go by ON DELETE CASCADE.
      this.sql.removeTree.run(accountId, path, ...subtreeRange(path));
      return true;
    }).immediate();
  }

  async listSubsets(accountId: number, parent: string): Promise<string[]> {
    if (parent === '') return (this.sql.topLevel.all(accountId) as { path: string }[]).map((r) => r.path);
    return this.db.transaction(() => {
      if (!this.has(accountId, parent)) throw new NotFoundError(`dataset ${parent} does not exist`);
      const [from, till] = subtreeRange(parent);
      const rows = this.sql.subtree.all(accountId, from, till) as { path: string }[];
      // Direct children only: nothing more after `parent/` is nested further.
      return rows.map((r) => r.path).filter((p) => p.indexOf('/', from.length) < 0);
    }).deferred();
  }

  async listEntries(accountId: number, path: string): Promise<DatasetEntry[]> {
    return this.db.transaction(() => {
      if (!this.has(accountId, path)) throw new NotFoundError(`dataset ${path} does not exist`);
      return (this.sql.listEntries.all(accountId, path) as EntryRow[]).map(toEntry);
    }).deferred();
  }

  async getEntry(accountId: number, path: string, name: string): Promise<DatasetEntry | undefined> {
    const row = this.sql.getEntry.get(accountId, path, name) as EntryRow | undefined;
    return row && toEntry(row);
  }

  async findByEmail(accountId: number, path: string, key: string): Promise<DatasetEntry[]> {
    return (this.sql.findByEmail.all(accountId, path, key) as EntryRow[]).map(toEntry);
  }

  async setEntry(accountId: number, path: string, name: string, write: EntryWrite, limits: DatasetLimits): Promise<DatasetEntry> {
    return this.db.transaction((): DatasetEntry => {
      if (!this.has(accountId, path)) {
        if (!write.createDataset) throw new NotFoundError(`dataset ${path} does not exist`);
        this.insertWithParents(accountId, path, limits);
      }
      const row = this.sql.getEntry.get(accountId, path, name) as EntryRow | undefined;
      if (row && write.mustBeNew) throw new AlreadyExistsError(`entry ${name} already exists`);

      const { attrs, json, key } = writtenEntry(row, write, limits);

      if (write.uniqueEmail && key !== null && key !== '') this.sql.removeSameEmail.run(accountId, path, key, name);
      if (!row) {
        const { n } = this.sql.countEntries.get(accountId, path) as { n: number };
        if (n >= limits.maxEntries) throw new DatasetLimitError(`the dataset is full (at most ${limits.maxEntries} entries)`);
      }
      this.sql.putEntry.run(accountId, path, name, json, key);
      return { name, attrs };
    }).immediate();
  }

  async deleteEntry(accountId: number, path: string, name: string): Promise<boolean> {
    return this.db.transaction(() => {
      if (!this.has(accountId, path)) throw new NotFoundError(`dataset ${path} does not exist`);
      return this.sql.deleteEntry.run(accountId, path, name).changes > 0;
    }).immediate();
  }
}

function prepareStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    exists: 'SELECT 1 FROM datasets WHERE account_id = ? AND path = ?',
    countDatasets: 'SELECT count(*) AS n FROM datasets WHERE account_id = ?',
    insertDataset: 'INSERT INTO datasets (account_id, path) VALUES (?, ?)',
    removeTree: 'DELETE FROM datasets WHERE account_id = ? AND (path = ? OR (path >= ? AND path < ?))',
    topLevel: "SELECT path FROM datasets WHERE account_id = ? AND instr(path, '/') = 0 ORDER BY path",
    subtree: 'SELECT path FROM datasets WHERE account_id = ? AND path >= ? AND path < ? ORDER BY path',
    listEntries: 'SELECT name, attrs FROM dataset_entries WHERE account_id = ? AND path = ? ORDER BY name',
    getEntry: 'SELECT name, attrs FROM dataset_entries WHERE account_id = ? AND path = ? AND name = ?',
    findByEmail: 'SELECT name, attrs FROM dataset_entries WHERE account_id = ? AND path = ? AND email_key = ? ORDER BY name',
    countEntries: 'SELECT count(*) AS n FROM dataset_entries WHERE account_id = ? AND path = ?',
    removeSameEmail: 'DELETE FROM dataset_entries WHERE account_id = ? AND path = ? AND email_key = ? AND name <> ?',
    putEntry: `INSERT INTO dataset_entries (account_id, path, name, attrs, email_key) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (account_id, path, name) DO UPDATE SET attrs = excluded.attrs, email_key = excluded.email_key`,
    deleteEntry: 'DELETE FROM dataset_entries WHERE account_id = ? AND path = ? AND name = ?',
  });
}
