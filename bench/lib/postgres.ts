/**
 * The PostgreSQL server of a bench run: one private server (test/fixtures/postgres.ts:
 * `initdb` in a temporary directory, a free loopback port, installed from apt when missing),
 * started once for the whole run and stopped at the end. It is durable (`fsync = on`,
 * `synchronous_commit = on`, `full_page_writes = on`: PostgreSQL's defaults), so that ximssd
 * on PostgreSQL answers an append only once the commit is flushed to disk, like ximssd on
 * SQLite (`synchronous = FULL`) and Dovecot (`mail_fsync = optimized`).
 *
 * The fixture stops the server at exit and on SIGINT/SIGTERM; a watchdog process stops it
 * (SIGQUIT: immediate shutdown) and removes its directory when the bench process is killed.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../../test/fixtures/postgres.js';
import { treeCpuSeconds } from './proc.js';

export interface BenchPostgres {
  /** `PostgreSQL 15.x` and the durability settings, for the log. */
  readonly description: string;
  readonly version: string;
  readonly pid: number;
  /** A new empty database; its URL. */
  createDatabase(name: string): Promise<string>;
  /** CPU seconds of the postmaster and all its processes (backends, WAL writer, checkpointer, autovacuum). */
  cpuSeconds(): number;
  /** Runs statements on a database (maintenance only: VACUUM, CHECKPOINT, SHOW). */
  query(url: string, sql: string): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

export type PostgresAvailability = { available: true; server: BenchPostgres } | { available: false; reason: string };

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<Record<string, unknown>>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Starts the run's PostgreSQL (durable); says why when it cannot be had. */
export async function startBenchPostgres(): Promise<PostgresAvailability> {
  let server: PostgresServer;
  try {
    server = await startPostgres({ durable: true });
  } catch (err) {
    return { available: false, reason: (err as Error).message.split('\n')[0]! };
  }
  try {
    const admin = server.url();
    const setting = async (name: string): Promise<string> => String((await query(admin, `SHOW ${name}`))[0]?.[name] ?? '?');
    const version = await setting('server_version');
    const dataDir = await setting('data_directory');
    const pid = Number.parseInt(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${dataDir}/postmaster.pid`);
    // When this process dies without running its exit handlers (SIGKILL), the watchdog's
    // stdin closes and it stops PostgreSQL and removes its directory.
    const watchdog = spawn('sh', ['-c', `cat >/dev/null; kill -QUIT ${pid} 2>/dev/null; sleep 2; rm -rf -- "$1"`, 'sh', dirname(dataDir)], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    watchdog.unref();
    (watchdog.stdin as unknown as net.Socket | null)?.unref();
    const durability = await Promise.all(['fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers'].map(async (s) => `${s}=${await setting(s)}`));
    return {
      available: true,
      server: {
        version,
        pid,
        description: `PostgreSQL ${version} (pid ${pid}; ${durability.join(', ')})`,
        createDatabase: (name) => server.createDatabase(name),
        cpuSeconds: () => treeCpuSeconds(pid),
        query,
        stop: async () => {
          await server.stop();
          watchdog.stdin?.end();
        },
      },
    };
  } catch (err) {
    await server.stop();
    return { available: false, reason: `PostgreSQL started but could not be inspected: ${(err as Error).message}` };
  }
}
