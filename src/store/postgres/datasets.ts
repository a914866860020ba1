import {
  DatasetLimitError,
  type DatasetEntry,
  type DatasetLimits,
  type DatasetStore,
  type EntryWrite,
} from '../datasets.js';
import { AlreadyExistsError, NotFoundError } from '../store.js';
import type { Db, Sql, Tx } from './db.js';
import { ancestors, subtreeRange, toEntry, writtenEntry, type EntryRow } from '../rows.js';


const SQL = {
  // Dataset writes of one account follow each other (limits are counted inside them).
  lockAccount: { name: 'datasets.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  exists: { name: 'datasets.exists', text: 'SELECT 1 FROM datasets WHERE account_id = $1 AND path = $2' },
  existing: {
    name: 'datasets.existing',
    text: 'SELECT path FROM datasets WHERE account_id = $1 AND path = ANY($2::text[])',
  },
  countDatasets: { name: 'datasets.countDatasets', text: 'SELECT count(*) AS n FROM datasets WHERE account_id = $1' },
  insertDatasets: {
    name: 'datasets.insertDatasets',
    text: 'INSERT INTO datasets (account_id, path) SELECT $1, p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING',
  },
  removeTree: {
    name: 'datasets.removeTree',
    text: 'DELETE FROM datasets WHERE account_id = $1 AND (path = $2 OR (path >= $3 AND path < $4))',
  },
  topLevel: {
    name: 'datasets.topLevel',
    text: "SELECT path FROM datasets WHERE account_id = $1 AND strpos(path, '/') = 0 ORDER BY path",
  },
  subtree: {
    name: 'datasets.subtree',
    text: 'SELECT path FROM datasets WHERE account_id = $1 AND path >= $2 AND path < $3 ORDER BY path',
  },
  listEntries: {
    name: 'datasets.listEntries',
    text: 'SELECT name, attrs FROM dataset_entries WHERE account_id = $1 AND path = $2 ORDER BY name',
  },
  getEntry: {
    name: 'datasets.getEntry',
    text: 'SELECT name, attrs FROM dataset_entries WHERE account_id = $1 AND path = $2 AND name = $3',
  },
  findByEmail: {
    name: 'datasets.findByEmail',
    text: 'SELECT name, attrs FROM dataset_entries WHERE account_id = $1 AND path = $2 AND email_key = $3 ORDER BY name',
  },
  countEntries: {
    name: 'datasets.countEntries',
    text: 'SELECT count(*) AS n FROM dataset_entries WHERE account_id = $1 AND path = $2',
  },
  removeSameEmail: {
    name: 'datasets.removeSameEmail',
    text: 'DELETE FROM dataset_entries WHERE account_id = $1 AND path = $2 AND email_key = $3 AND name <> $4',
  },
  putEntry: {
    name: 'datasets.putEntry',
    text: `INSERT INTO dataset_entries (account_id, path, name, attrs, email_key) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (account_id, path, name) DO UPDATE SET attrs = excluded.attrs, email_key = excluded.email_key`,
  },
  deleteEntry: {
    name: 'datasets.deleteEntry',
    text: 'DELETE FROM dataset_entries WHERE account_id = $1 AND path = $2 AND name = $3',
  },
} satisfies Record<string, Sql>;

/**
 * Datasets and their entries in PostgreSQL. Every write is one transaction that first
 * takes the account's row, so that the limits it checks hold when it commits; reads of
 * more than one statement share one snapshot.
 */
export class PgDatasets implements DatasetStore {
  constructor(private readonly db: Db) {}

  private async has(tx: Tx | Db, accountId: number, path: string): Promise<boolean> {
    return (await tx.row(SQL.exists, [accountId, path])) !== undefined;
  }

  /** Inserts `path` and its missing parents (the account's row locked). */
  private async insertWithParents(tx: Tx, accountId: number, path: string, limits: DatasetLimits): Promise<void> {
    const wanted = [...ancestors(path), path];
    const present = new Set((await tx.rows<{ path: string }>(SQL.existing, [accountId, wanted])).map((r) => r.path));
    const missing = wanted.filter((p) => !present.has(p));
    if (missing.length === 0) return;
    const { n } = (await tx.row<{ n: number }>(SQL.countDatasets, [accountId]))!;
    if (n + missing.length > limits.maxDatasets) {
      throw new DatasetLimitError(`too many datasets (at most ${limits.maxDatasets} in an account)`);
    }
    await tx.run(SQL.insertDatasets, [accountId, missing]);
  }

  async exists(accountId: number, path: string): Promise<boolean> {
    return this.has(this.db, accountId, path);
  }

  async create(accountId: number, path: string, limits: DatasetLimits): Promise<void> {
    await this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      if (await this.has(tx, accountId, path)) throw new AlreadyExistsError(`dataset ${path} already exists`);
      await this.insertWithParents(tx, accountId, path, limits);
    });
  }

  async remove(accountId: number, path: string): Promise<boolean> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      // Entries go by ON DELETE CASCADE.
      return (await tx.run(SQL.removeTree, [accountId, path, ...subtreeRange(path)])) > 0;
    });
  }

  async listSubsets(accountId: number, parent: string): Promise<string[]> {
    if (parent === '') return (await this.db.rows<{ path: string }>(SQL.topLevel, [accountId])).map((r) => r.path);
    const [from, till] = subtreeRange(parent);
    return this.db.tx(
      async (tx) => {
        const [found, rows] = await Promise.all([this.has(tx, accountId, parent), tx.rows<{ path: string }>(SQL.subtree, [accountId, from, till])]);
        if (!found) throw new NotFoundError(`dataset ${parent} does not exist`);
        // Direct children only: nothing more after `parent/` is nested further.
        return rows.map((r) => r.path).filter((p) => p.indexOf('/', from.length) < 0);
      },
      { snapshot: true },
    );
  }

  async listEntries(accountId: number, path: string): Promise<DatasetEntry[]> {
    return this.db.tx(
      async (tx) => {
        const [found, rows] = await Promise.all([this.has(tx, accountId, path), tx.rows<EntryRow>(SQL.listEntries, [accountId, path])]);
        if (!found) throw new NotFoundError(`dataset ${path} does not exist`);
        return rows.map(toEntry);
      },
      { snapshot: true },
    );
  }

  async getEntry(accountId: number, path: string, name: string): Promise<DatasetEntry | undefined> {
    const row = await this.db.row<EntryRow>(SQL.getEntry, [accountId, path, name]);
    return row && toEntry(row);
  }

  async findByEmail(accountId: number, path: string, key: string): Promise<DatasetEntry[]> {
    return (await this.db.rows<EntryRow>(SQL.findByEmail, [accountId, path, key])).map(toEntry);
  }

  async setEntry(accountId: number, path: string, name: string, write: EntryWrite, limits: DatasetLimits): Promise<DatasetEntry> {
    return this.db.tx(async (tx): Promise<DatasetEntry> => {
      await tx.rows(SQL.lockAccount, [accountId]);
      if (!(await this.has(tx, accountId, path))) {
        if (!write.createDataset) throw new NotFoundError(`dataset ${path} does not exist`);
        await this.insertWithParents(tx, accountId, path, limits);
      }
      const row = await tx.row<EntryRow>(SQL.getEntry, [accountId, path, name]);
      if (row && write.mustBeNew) throw new AlreadyExistsError(`entry ${name} already exists`);

      const { attrs, json, key } = writtenEntry(row, write, limits);

      if (write.uniqueEmail && key !== null && key !== '') await tx.run(SQL.removeSameEmail, [accountId, path, key, name]);
      if (!row) {
        const { n } = (await tx.row<{ n: number }>(SQL.countEntries, [accountId, path]))!;
        if (n >= limits.maxEntries) throw new DatasetLimitError(`the dataset is full (at most ${limits.maxEntries} entries)`);
      }
      await tx.run(SQL.putEntry, [accountId, path, name, json, key]);
      return { name, attrs };
    });
  }

  async deleteEntry(accountId: number, path: string, name: string): Promise<boolean> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      if (!(await this.has(tx, accountId, path))) throw new NotFoundError(`dataset ${path} does not exist`);
      return (await tx.run(SQL.deleteEntry, [accountId, path, name])) > 0;
    });
  }
}
