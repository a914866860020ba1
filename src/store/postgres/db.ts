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

/** The constraint a driver error names (a unique violation's index), if any. */
export function violatedConstraint(err: unknown): string | undefined {
  const constraint = (err as { constraint?: unknown } | null)?.constraint;
  return typeof constraint === 'string' ? constraint : undefined;
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
  const match = /([?&])pool=([^&#]*)&?/.exec(url);
  if (!match) return { connectionString: url, poolSize: DEFAULT_POOL_SIZE };
  const poolSize = Number(decodeURIComponent(match[2]!));
  if (!Number.isInteger(poolSize) || poolSize < 1 || poolSize > 1000) throw new Error(`bad pool size in the store URL: ${match[2]}`);
  // `a?pool=5` -> `a`, `a?pool=5&b=1` -> `a?b=1`, `a?b=1&pool=5` -> `a?b=1`.
  const rest = url.slice(0, match.index) + match[1] + url.slice(match.index + match[0].length);
  return { connectionString: rest.replace(/[?&]$/, '').replace(/[?&]#/, '#'), poolSize };
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
    const config: pg.PoolConfig = {
      ...clientConfig(connectionString),
      max: poolSize,
      idleTimeoutMillis: 30_000,
      // A connection (or a turn at one, when all are busy) that takes longer fails the call.
      connectionTimeoutMillis: 30_000,
      pipeline: true,
    };
    this.pool = new pg.Pool(config);
    // An idle client whose connection died: the pool drops it; nothing to do here.
    this.pool.on('error', () => {});
  }

  /** One statement on its own (its own implicit transaction; run again after a deadlock). */
  async rows<R>(sql: Sql, values: readonly Param[] = []): Promise<R[]> {
    const result = await this.statement<R & pg.QueryResultRow>({ name: sql.name, text: sql.text, values: values as unknown[] });
    return result.rows;
  }

  async row<R>(sql: Sql, values: readonly Param[] = []): Promise<R | undefined> {
    return (await this.rows<R>(sql, values))[0];
  }

  async arrays(sql: Sql, values: readonly Param[] = []): Promise<unknown[][]> {
    const result = await this.statement<unknown[]>({ name: sql.name, text: sql.text, values: values as unknown[], rowMode: 'array' });
    return result.rows;
  }

  async run(sql: Sql, values: readonly Param[] = []): Promise<number> {
    const result = await this.statement<pg.QueryResultRow>({ name: sql.name, text: sql.text, values: values as unknown[] });
    return result.rowCount ?? 0;
  }

  private async statement<R extends pg.QueryResultRow | unknown[]>(query: pg.QueryConfig & { rowMode?: 'array' }): Promise<pg.QueryResult<R>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.pool.query(query as pg.QueryConfig)) as pg.QueryResult<R>;
      } catch (err) {
        if (!isRetryable(err) || attempt >= RETRIES) throw err;
      }
      await backOff(attempt);
    }
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
      await backOff(attempt);
    }
  }

  /**
   * Runs statements as one transaction in one round trip: BEGIN, the statements and COMMIT
   * written at once. When one fails, the ones after it fail too and COMMIT rolls back;
   * the first failure is thrown. For writes whose statements decide everything themselves
   * (failing, when they must, with an error). Retried like tx().
   */
  async batch(statements: readonly { sql: Sql; values: readonly Param[] }[]): Promise<unknown[][][]> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      try {
        const begin = client.query('BEGIN');
        const results = statements.map((st) =>
          client.query<unknown[]>({ name: st.sql.name, text: st.sql.text, values: st.values as unknown[], rowMode: 'array' }),
        );
        const commit = client.query('COMMIT');
        const settled = await Promise.allSettled([begin, ...results, commit]);
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) {
          if (!isServerError(failed.reason)) broken = toError(failed.reason);
          else if (client.getTransactionStatus() !== 'I') await client.query('ROLLBACK');
          throw failed.reason;
        }
        return settled.slice(1, -1).map((r) => (r as PromiseFulfilledResult<pg.QueryResult<unknown[]>>).value.rows);
      } catch (err) {
        if (broken !== undefined || !isRetryable(err) || attempt >= RETRIES) throw err;
      } finally {
        client.release(broken);
      }
      await backOff(attempt);
    }
  }

  async end(): Promise<void> {
    await this.pool.end();
  }
}

/**
 * PostgreSQL's TEXT cannot hold U+0000. For values that must come back exactly (a header
 * field of a received message may have a NUL byte), NUL is stored as U+FFFF '0' and
 * U+FFFF itself as U+FFFF U+FFFF; `fromText` undoes it. Strings without either character
 * (nearly all) are stored as they are.
 */
export function toText(value: string): string {
  if (value.indexOf('\0') < 0 && value.indexOf('\uffff') < 0) return value;
  return value.replace(/[\0\uffff]/g, (c) => (c === '\0' ? '\uffff0' : '\uffff\uffff'));
}

export function fromText(value: string): string {
  if (value.indexOf('\uffff') < 0) return value;
  return value.replace(/\uffff([0\uffff])/g, (_all, c: string) => (c === '0' ? '\0' : '\uffff'));
}

/** For text where a NUL can only be garbage (a remote server's reply): U+FFFD instead. */
export function withoutNul(value: string): string;
export function withoutNul(value: string | null): string | null;
export function withoutNul(value: string | null): string | null {
  return value === null || value.indexOf('\0') < 0 ? value : value.replace(/\0/g, '\ufffd');
}

/** Before running a transaction again: someone else won, let them finish. */
function backOff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
