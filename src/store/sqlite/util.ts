import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';

export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** A foreign key refused a write: what it refers to (an account, a room) is gone. */
export function isForeignKeyViolation(err: unknown): boolean {
  return (err as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

/** Prepares each of `sql` once, under the same names. */
export function prepareAll<K extends string>(db: SqliteDatabase, sql: Record<K, string>): Record<K, Statement> {
  const statements = {} as Record<K, Statement>;
  for (const name of Object.keys(sql) as K[]) statements[name] = db.prepare(sql[name]);
  return statements;
}

/**
 * Commits `write` with `synchronous = NORMAL`: for login bookkeeping (last login, last
 * failed login, the shared login-failure counters), which is not data the server
 * acknowledged to anyone and would otherwise cost an fsync on the event loop per login. In
 * WAL mode such a commit survives a crash of the process and is synced by the next FULL
 * commit or checkpoint; only a power loss before that can lose it. Returns what `write`
 * returns.
 */
export function relaxedCommit<T>(db: SqliteDatabase, write: () => T): T {
  db.pragma('synchronous = NORMAL');
  try {
    return write();
  } finally {
    db.pragma('synchronous = FULL');
  }
}
