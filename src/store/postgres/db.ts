import pg from 'pg';

/**
 * The connection pool of the PostgreSQL engine and its transaction helper.
 *
 * Clients run in pipeline mode: a query is written as soon as it is issued, so that a
 * transaction's BEGIN travels with its first statement, and reads that do not depend on
 * each other (changesSince) share one round trip.
 */

/** A statement: `name` makes it a prepared statement, parsed once per connection. */
export interface Sql {
  name?: string;
  text: string;
}

export type Param = string | number | boolean | null | Buffer | readonly (string | number | boolean | null)[];

/** int8 (BIGINT, count(*)) as a JS number: every stored integer (ms, sizes, ids, UIDs) is far below 2^53. */
function parseInt8(value: string): number {
  return Number(value);
}

/** The pool's type parsers: the driver's own, but int8 as a number (not a string), for this pool only. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === 20 && format !== 'binary') return parseInt8;
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** SQLSTATE of a driver error ('23505' unique violation, ...), undefined for other errors. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 ? code : undefined;
}

export function isUniqueViolation(err: unknown): boolean {
  return sqlState(err) === '23505';
}

export function isForeignKeyViolation(err: unknown): boolean {
  return sqlState(err) === '23503';
}

/** Deadlock and serialization failures: the transaction did nothing and may simply run again. */
function isRetryable(err: unknown): boolean {
  const state = sqlState(err);
  return state === '40P01' || state === '40001';
}

/** A PostgreSQL error (it has a SQLSTATE): the connection is still good. */
function isServerError(err: unknown): boolean {
  return sqlState(err) !== undefined;
}

const RETRIES = 5;

/** Connections per process unless the URL says (`?pool=N`). */
const DEFAULT_POOL_SIZE = 10;

/** Parsed store URL: what to hand to the driver, and the pool size (`?pool=N`, stripped). */
export function parseStoreUrl(url: string): { connectionString: string; poolSize: number } {
  const parsed = new URL(url);
  const pool = parsed.searchParams.get('pool');
  if (pool === null) return { connectionString: url, poolSize: DEFAULT_POOL_SIZE };
  const poolSize = Number(pool);
  if (!Number.isInteger(poolSize) || poolSize < 1 || poolSize > 1000) throw new Error(`bad pool size in the store URL: ${pool}`);
  parsed.searchParams.delete('pool');
  return { connectionString: parsed.toString(), poolSize };
}

/** The options of a client of this store (the pool's, and the relay listener's). */
export function clientConfig(connectionString: string): pg.ClientConfig {
  return { connectionString, types, application_name: 'ximssd', keepAlive: true };
}

/** A transaction in progress (see Db.tx). */
export class Tx {
  /** Set by `rollback()`: the work's result stands, but nothing it wrote is kept. */
  rolledBack = false;

  constructor(private readonly client: pg.PoolClient) {}

  async rows<R>(sql: Sql, values: readonly Param[] = []): Promise<R[]> {
    const result = await this.client.query<R & pg.QueryResultRow>({ name: sql.name, text: sql.text, values: values as unknown[] });
    return result.rows;
  }

  async row<R>(sql: Sql, values: readonly Param[] = []): Promise<R | undefined> {
    return (await this.rows<R>(sql, values))[0];
  }

  /** Rows as arrays of column values (cheaper for many rows). */
  async arrays(sql: Sql, values: readonly Param[] = []): Promise<unknown[][]> {
    const result = await this.client.query<unknown[]>({ name: sql.name, text: sql.text, values: values as unknown[], rowMode: 'array' });
    return result.rows;
  }

  /** Runs a statement; the number of rows it affected. */
  async run(sql: Sql, values: readonly Param[] = []): Promise<number> {
    const result = await this.client.query({ name: sql.name, text: sql.text, values: values as unknown[] });
    return result.rowCount ?? 0;
  }

  /** Ends the transaction with ROLLBACK instead of COMMIT (the work decided to change nothing). */
  rollback(): void {
    this.rolledBack = true;
  }
}

export interface TxOptions {
  /** `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`: several reads of one snapshot. */
  snapshot?: boolean;
  /** Commit without waiting for the WAL flush (bookkeeping nobody was promised). */
  relaxed?: boolean;
}

export class Db {
  readonly pool: pg.Pool;

  constructor(readonly connectionString: string, poolSize: number) {
    const config: pg.PoolConfig = { ...clientConfig(connectionString), max: poolSize, idleTimeoutMillis: 30_000, pipeline: true };
    this.pool = new pg.Pool(config);
    // An idle client whose connection died: the pool drops it; nothing to do here.
    this.pool.on('error', () => {});
  }

  /** One statement on its own (its own implicit transaction). */
  async rows<R>(sql: Sql, values: readonly Param[] = []): Promise<R[]> {
    const result = await this.pool.query<R & pg.QueryResultRow>({ name: sql.name, text: sql.text, values: values as unknown[] });
    return result.rows;
  }

  async row<R>(sql: Sql, values: readonly Param[] = []): Promise<R | undefined> {
    return (await this.rows<R>(sql, values))[0];
  }

  async arrays(sql: Sql, values: readonly Param[] = []): Promise<unknown[][]> {
    const result = await this.pool.query<unknown[]>({ name: sql.name, text: sql.text, values: values as unknown[], rowMode: 'array' });
    return result.rows;
  }

  async run(sql: Sql, values: readonly Param[] = []): Promise<number> {
    const result = await this.pool.query({ name: sql.name, text: sql.text, values: values as unknown[] });
    return result.rowCount ?? 0;
  }

  /**
   * Runs `work` in one transaction on one pooled connection: BEGIN (sent with the work's
   * first statement), COMMIT when it resolves (ROLLBACK when it called `tx.rollback()`),
   * ROLLBACK when it throws. A deadlock or serialization failure runs the whole work
   * again (a few times), so `work` must not have effects outside the database.
   */
  async tx<T>(work: (tx: Tx) => Promise<T>, options: TxOptions = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      // Set when the connection may be in an unknown state: it is then closed, not reused.
      let broken: Error | undefined;
      try {
        const begin = client.query(options.snapshot ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
        const settings = options.relaxed ? client.query('SET LOCAL synchronous_commit = off') : undefined;
        const tx = new Tx(client);
        let result: T;
        try {
          result = await work(tx);
          await begin;
          await settings;
        } catch (err) {
          await Promise.allSettled([begin, settings]);
          try {
            await client.query('ROLLBACK');
          } catch (rollbackError) {
            broken = toError(rollbackError);
          }
          throw err;
        }
        try {
          await client.query(tx.rolledBack ? 'ROLLBACK' : 'COMMIT');
        } catch (commitError) {
          if (!isServerError(commitError)) broken = toError(commitError);
          throw commitError;
        }
        return result;
      } catch (err) {
        if (broken !== undefined || !isRetryable(err) || attempt >= RETRIES) throw err;
      } finally {
        client.release(broken);
      }
      // Someone else won: let them finish, then run again.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
    }
  }

  async end(): Promise<void> {
    await this.pool.end();
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
