import { join } from 'node:path';
import type { Store } from './store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';

/** Opens the store of a data directory (the embedded SQLite engine). */
export function openStore(dataDir: string): Store {
  return SqliteStore.open(join(dataDir, 'ximssd.sqlite'));
}
