import { join } from 'node:path';
import type { Store } from './store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';

export interface OpenOptions {
  /**
   * The store is opened by a serving process (`ximssd serve`). On SQLite only one may serve
   * a data directory: the directory is locked, and a second server refuses to start
   * (StoreLockedError, naming the running one's pid). The command line opens it beside a
   * running server without this.
   */
  serve?: boolean;
}

/** Thrown when another server process holds the data directory (defined beside the lock, re-exported here). */
export { StoreLockedError } from './sqlite/lock.js';

/** True for the locations the PostgreSQL engine serves (`postgres://…`, `postgresql://…`). */
export function isPostgresUrl(location: string | undefined): location is string {
  return location !== undefined && /^postgres(ql)?:\/\//i.test(location);
}

/**
 * Opens the store: PostgreSQL when `location` is a postgres:// URL, else the embedded SQLite
 * engine in the data directory (the default). Migrates it to the current schema.
 */
export async function openStore(location: string | undefined, dataDir: string, options: OpenOptions = {}): Promise<Store> {
  if (isPostgresUrl(location)) {
    const { PostgresStore } = await import('./postgres/postgres-store.js');
    return PostgresStore.open(location);
  }
  return SqliteStore.open(join(dataDir, 'ximssd.sqlite'), { lockDir: options.serve ? dataDir : undefined });
}
