import { join, resolve } from 'node:path';
import { DataDirLock } from './lock.js';
import { privateDirectory } from './modes.js';
import type { Store } from './store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';

export interface OpenOptions {
  /**
   * The store is opened by a serving process (`ximssd serve`). Only one may serve a data
   * directory (it holds the process's spool, and on SQLite the store): the directory is
   * locked until the store is closed, and a second server refuses to start
   * (StoreLockedError, naming the running one's pid). Nodes of a cluster on one machine each
   * have their own. The command line opens the store beside a running server without this.
   */
  serve?: boolean;
  /**
   * Create the store when there is none (default true: `ximssd serve` and `ximssd init`).
   * False opens an existing store only, and never migrates it: NoStoreError when there is
   * none (nothing is created: no directory, no file, no table), StoreVersionError when its
   * schema is not this version's.
   */
  create?: boolean;
}

/** No store, or a schema of another version, where an existing one was to be opened (defined beside the store interface, re-exported here). */
export { NoStoreError, StoreVersionError } from './store.js';

/** A store location for messages: the SQLite file's directory, or the PostgreSQL URL without its password. */
export function storeWhere(location: string | undefined, dataDir: string): string {
  if (!isPostgresUrl(location)) return resolve(dataDir);
  try {
    const url = new URL(location);
    url.password = '';
    url.search = '';
    return `database ${url.toString()}`;
  } catch {
    return 'the configured PostgreSQL database';
  }
}

/** Thrown when another server process holds the data directory (defined beside the lock, re-exported here). */
export { StoreLockedError } from './lock.js';

/** True for the locations the PostgreSQL engine serves (`postgres://…`, `postgresql://…`). */
export function isPostgresUrl(location: string | undefined): location is string {
  return location !== undefined && /^postgres(ql)?:\/\//i.test(location);
}

/**
 * Opens the store: PostgreSQL when `location` is a postgres:// URL, else the embedded SQLite
 * engine in the data directory (the default). Creates it, or migrates it to the current
 * schema (unless `create` is false).
 */
export async function openStore(location: string | undefined, dataDir: string, options: OpenOptions = {}): Promise<Store> {
  const where = storeWhere(location, dataDir);
  const existing = options.create === false ? { where } : undefined;
  if (isPostgresUrl(location)) {
    const { PostgresStore } = await import('./postgres/postgres-store.js');
    if (!options.serve) return PostgresStore.open(location, { existing });
    privateDirectory(dataDir);
    const lock = DataDirLock.acquire(dataDir);
    try {
      return withRelease(await PostgresStore.open(location, { existing }), lock);
    } catch (err) {
      lock.release();
      throw err;
    }
  }
  return SqliteStore.open(join(dataDir, 'ximssd.sqlite'), { lockDir: options.serve ? dataDir : undefined, existing });
}

/** The store, releasing `lock` once it is closed. */
function withRelease(store: Store, lock: DataDirLock): Store {
  const close = store.close.bind(store);
  store.close = async () => {
    try {
      await close();
    } finally {
      lock.release();
    }
  };
  return store;
}
