/**
 * The mail section of the bench: ximssd against Dovecot on the same machine, over loopback,
 * both warm, with the same generated messages (bench/lib/mail-corpus.ts). ximssd runs on each
 * store engine asked for: SQLite in its data directory, and PostgreSQL (the run's durable
 * server, bench/lib/postgres.ts), side by side in the same run.
 *
 * 1. Append throughput: K connections, each logged in, W appends in flight on each: XIMSS
 *    `messageAppend targetMailbox="Bench"` against IMAP `APPEND Bench` (LITERAL+ when
 *    advertised, so that the appends are pipelined too; Dovecot's default fsync settings).
 * 2. Open and browse a big mailbox (100,000 messages; 10,000 with --quick) sorted by Date,
 *    newest first, first 50 rows: XIMSS folderOpen + folderBrowse 0-49 + folderClose against
 *    IMAP SELECT + UID SORT (REVERSE DATE) + UID FETCH of the first 50 UIDs + UNSELECT/CLOSE.
 *    The populated data directories are cached under bench/results/cache, keyed by the
 *    corpus version and the count (and ximssd's SQLite store code, Dovecot's version). The
 *    PostgreSQL server lives only as long as the run: its big mailbox is filled in each run,
 *    through ximssd (pipelined messageAppends, as the SQLite cache is filled).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ensureDovecot, prepareHome, startDovecot, type Dovecot, type DovecotUser } from './dovecot.js';
import { ENGINE_LABEL, type Engine, type Side } from './engines.js';
import { ErrorLog, fmt, median } from './figures.js';
import { ImapClient, type ImapResult } from './imap-client.js';
import { CORPUS_VERSION, MailCorpus, icalGmt, type CorpusMessage } from './mail-corpus.js';
import type { BenchPostgres } from './postgres.js';
import { cpuSeconds, meter } from './proc.js';
import { XimssClient, attr, decodeEntities } from './ximss-client.js';
import { PASSWORD, ROOT, USER, startXimssd, type Ximssd } from './ximssd.js';

export interface MailOptions {
  connections: number;
  /** Appends in flight per connection. */
  window: number;
  /** Messages appended per timed run, on each side. */
  appendCount: number;
  /** Messages appended (untimed) before the runs, on each side. */
  appendWarmup: number;
  appendRuns: number;
  /** Messages in the big mailbox. */
  bigCount: number;
  /** Timed open-and-browse iterations (after one untimed one). */
  iterations: number;
  /** Populate the big mailboxes again even when a cache exists. */
  repopulate: boolean;
  cacheDir: string;
  /** The store engines ximssd runs on (postgres only when `postgres` is given). */
  engines: Engine[];
  /** The run's PostgreSQL server. */
  postgres?: BenchPostgres;
  cpuProfileDir?: string;
  log: (line: string) => void;
}

export interface AppendRun {
  messages: number;
  seconds: number;
  rate: number;
  /** Server CPU seconds per message (Dovecot: all its processes; PostgreSQL engine: ximssd and all of PostgreSQL's). */
  cpuPerMessage: number | undefined;
  /** On PostgreSQL: the part of cpuPerMessage spent in ximssd's process and in PostgreSQL's. */
  cpuSplit?: { ximssd: number; postgres: number };
  /** CPU used meanwhile by everything else on the machine, in cores: high means disturbed. */
  otherCpu: number;
  errors: number;
}

export interface BrowseStats {
  iterations: number;
  medianMs: number;
  p90Ms: number;
  minMs: number;
  maxMs: number;
  samplesMs: number[];
  /** CPU used by other processes during the timed iterations (both sides), in cores. */
  otherCpu?: number;
}

export interface MailResult {
  dovecot: { available: true; version: string } | { available: false; reason: string };
  engines: Engine[];
  /** Why a side could not be measured (quoted errors), if so. */
  appendUnavailable: Partial<Record<Side, string>>;
  browseUnavailable: Partial<Record<Side, string>>;
  append: Record<Side, AppendRun[]>;
  browse: {
    count: number;
    sqlite?: BrowseStats;
    postgres?: BrowseStats;
    dovecot?: BrowseStats;
    /** What the warm-up iteration's checks found. */
    checks: string[];
    population: Population[];
  };
  /** First distinct error texts seen, quoted as received. */
  errors: string[];
}

const BIG_MAILBOX = 'Big';
const APPEND_MAILBOX = 'Bench';
const IMAP_PASSWORD = 'bench-password-1';
const FIELDS = ['FLAGS', 'From', 'Subject', 'Date', 'SIZE'];
const ROWS = 50;
/** Messages per IMAP MULTIAPPEND (and per batch of XIMSS appends) while populating. */
const POPULATE_BATCH = 100;

const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
function stats(samples: number[]): BrowseStats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    iterations: samples.length,
    medianMs: median(sorted),
    p90Ms: percentile(sorted, 0.9),
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
    samplesMs: samples.map((s) => Math.round(s * 1000) / 1000),
  };
}

// --- Requests ---------------------------------------------------------------------------

function ximssAppend(id: string, message: CorpusMessage, mailbox: string, extra = ''): string {
  const flags = message.flags.length ? ` flags="${message.flags.join(',')}"` : '';
  return `<messageAppend id="${id}" targetMailbox="${xmlAttr(mailbox)}"${flags}${extra}>${message.xml}</messageAppend>`;
}

const imapFlags = (message: CorpusMessage): string => (message.flags.length ? `(${message.flags.map((f) => `\\${f}`).join(' ')}) ` : '');

/**
 * Runs `count` operations over `lanes` concurrent loops (several lanes share a connection:
 * that is what keeps W requests in flight on it). `op(lane, i)` returns an error text or
 * undefined.
 */
async function lanes(laneCount: number, count: number, op: (lane: number, i: number) => Promise<string | undefined>, errors: ErrorLog): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: laneCount }, async (_, lane) => {
      for (let i = next++; i < count; i = next++) {
        const error = await op(lane, i);
        if (error !== undefined) {
          failed++;
          errors.add(error);
        }
      }
    }),
  );
  return failed;
}

// --- Caches -----------------------------------------------------------------------------

/** A hash of every file under the given directories (relative paths and contents), but those under `skip`. */
function treeHash(dirs: string[], skip: string[] = []): string {
  const hash = createHash('sha256');
  const walk = (dir: string): void => {
    if (!existsSync(dir) || skip.includes(dir)) return;
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else {
        hash.update(relative(ROOT, path));
        hash.update(readFileSync(path));
      }
    }
  };
  for (const dir of dirs) walk(dir);
  return hash.digest('hex').slice(0, 12);
}

interface Cache {
  dir: string;
  complete: boolean;
}

/** The cache directory for `prefix`; other caches of the same side and count are removed when this one is (re)built. */
function cacheFor(base: string, prefix: string, key: string, repopulate: boolean): Cache {
  const dir = join(base, `${prefix}-${key}`);
  const complete = !repopulate && existsSync(join(dir, 'complete.json'));
  return { dir, complete };
}

function clearStale(base: string, prefix: string, keep: string, count: number): void {
  if (!existsSync(base)) return;
  for (const name of readdirSync(base)) {
    if (name.startsWith(`${prefix}-`) && name.includes(`-n${count}-`) && join(base, name) !== keep) {
      rmSync(join(base, name), { recursive: true, force: true });
    }
  }
}

// --- The section ------------------------------------------------------------------------

/** ximssd on one engine, running, with what serves it. */
interface XSide {
  engine: Engine;
  label: string;
  server: Ximssd;
  /** CPU seconds so far of the ximssd process, and of PostgreSQL's processes (0 on SQLite). */
  cpu(): { ximssd: number; postgres: number };
}

function xside(engine: Engine, server: Ximssd, postgres: BenchPostgres | undefined): XSide {
  return {
    engine,
    label: ENGINE_LABEL[engine],
    server,
    cpu: () => ({ ximssd: cpuSeconds(server.pid), postgres: engine === 'postgres' && postgres ? postgres.cpuSeconds() : 0 }),
  };
}

const total = (c: { ximssd: number; postgres: number }): number => c.ximssd + c.postgres;

export async function mailBench(options: MailOptions): Promise<MailResult> {
  const { log } = options;
  const errors = new ErrorLog();
  const engines = options.engines.filter((e) => e !== 'postgres' || options.postgres !== undefined);
  const result: MailResult = {
    dovecot: { available: false, reason: 'not checked' },
    engines,
    appendUnavailable: {},
    browseUnavailable: {},
    append: { sqlite: [], postgres: [], dovecot: [] },
    browse: { count: options.bigCount, checks: [], population: [] },
    errors: errors.texts,
  };
  const dovecotAvailability = await ensureDovecot(log);
  result.dovecot = dovecotAvailability;
  if (!dovecotAvailability.available) log(`Dovecot side skipped: ${dovecotAvailability.reason}`);

  mkdirSync(options.cacheDir, { recursive: true });
  const n = options.bigCount;
  const sqliteCache = engines.includes('sqlite') ? ximssdCacheFor(options.cacheDir, n, options.repopulate) : undefined;
  const dovecotCache = dovecotAvailability.available
    ? cacheFor(options.cacheDir, 'dovecot', `c${CORPUS_VERSION}-n${n}-v${dovecotAvailability.version.split(' ')[0]}`, options.repopulate)
    : undefined;
  const dovecotBigHome = dovecotCache ? join(dovecotCache.dir, 'home') : undefined;

  let dovecot: Dovecot | undefined;
  const servers: Ximssd[] = [];
  const ximssClients: XimssClient[] = [];
  const imapClients: ImapClient[] = [];
  const closeClients = async (): Promise<void> => {
    await Promise.all(ximssClients.splice(0).map((c) => c.close().catch(() => undefined)));
    await Promise.all(imapClients.splice(0).map((c) => c.logout().catch(() => undefined)));
  };
  const stopServers = async (): Promise<void> => {
    for (const x of servers.splice(0)) await x.stop();
  };
  try {
    // ---- Population of the big mailboxes (only what is not cached; PostgreSQL's every run)
    await populate(options, sqliteCache, dovecotCache, dovecotBigHome, result, errors);
    const bigUrl = options.postgres && engines.includes('postgres') ? await populatePostgres(options, options.postgres, result, errors) : undefined;

    // ---- Append throughput
    // The append account gets a fresh home inside Dovecot's temporary directory.
    const users: DovecotUser[] = [{ name: 'append', password: IMAP_PASSWORD }];
    if (dovecotBigHome && dovecotCache?.complete) users.push({ name: 'big', password: IMAP_PASSWORD, home: dovecotBigHome });
    if (dovecotAvailability.available) {
      dovecot = await startDovecot({ users });
      log(`Dovecot ${dovecot.version} listening on 127.0.0.1:${dovecot.port} (pid ${dovecot.pid}, mail_fsync default)`);
    }
    const appendSides: XSide[] = [];
    const config = { limits: { maxPendingRequests: 100_000 } };
    for (const engine of engines) {
      try {
        const store = engine === 'postgres' ? await options.postgres!.createDatabase('append') : undefined;
        const x = await startXimssd({ cpuProfileDir: options.cpuProfileDir, config, store });
        servers.push(x);
        appendSides.push(xside(engine, x, options.postgres));
        log(`${ENGINE_LABEL[engine]} listening on 127.0.0.1:${x.ports.ximss} (pid ${x.pid}${store ? `, store ${store}` : ''})`);
      } catch (err) {
        result.appendUnavailable[engine] = (err as Error).message;
        errors.add((err as Error).message);
        log(`${ENGINE_LABEL[engine]} append not measured: ${(err as Error).message}`);
      }
    }
    await appendPhase(options, appendSides, dovecot, result, errors, ximssClients, imapClients);
    await closeClients();
    await stopServers();

    // ---- Open and browse the big mailbox
    await browsePhase(options, engines, sqliteCache, bigUrl, dovecot, dovecotCache, result, errors, servers, ximssClients, imapClients);
  } finally {
    await closeClients();
    await stopServers();
    await dovecot?.stop();
  }
  return result;
}

/**
 * The ximssd (SQLite) cache of the big mailbox with `count` messages, keyed by the store's
 * code too: src/store but the PostgreSQL engine, which has no part in a SQLite database.
 */
function ximssdCacheFor(cacheDir: string, count: number, repopulate: boolean): Cache {
  const store = join(ROOT, 'src', 'store');
  return cacheFor(cacheDir, 'ximssd', `c${CORPUS_VERSION}-n${count}-s${treeHash([store], [join(store, 'postgres')])}`, repopulate);
}

export interface Population {
  side: Side;
  cached: boolean;
  seconds?: number;
  rate?: number;
  /** The cache directory, or the database (PostgreSQL). */
  dir: string;
  /** PostgreSQL: the VACUUM (ANALYZE) and CHECKPOINT after the appends. */
  settleSeconds?: number;
}

/**
 * The ximssd data directory holding the big mailbox `Big` with `count` messages, from the
 * cache the mail section fills (populated here first, ximssd side only, when missing).
 * Servers started on it must only read the mailbox.
 */
export async function ximssdBigMailbox(options: {
  count: number;
  connections: number;
  cacheDir: string;
  log: (line: string) => void;
}): Promise<{ available: true; dataDir: string; mailbox: string; population: Population } | { available: false; reason: string }> {
  mkdirSync(options.cacheDir, { recursive: true });
  const cache = ximssdCacheFor(options.cacheDir, options.count, false);
  const result: PopulateResult = { browseUnavailable: {}, browse: { population: [] } };
  await populate({ ...options, bigCount: options.count }, cache, undefined, undefined, result, new ErrorLog());
  const population = result.browse.population.find((p) => p.side === 'sqlite');
  if (!cache.complete || !population) return { available: false, reason: result.browseUnavailable.sqlite ?? 'the big mailbox could not be populated' };
  return { available: true, dataDir: join(cache.dir, 'data'), mailbox: BIG_MAILBOX, population };
}

type PopulateResult = Pick<MailResult, 'browseUnavailable'> & { browse: Pick<MailResult['browse'], 'population'> };

async function populate(
  options: Pick<MailOptions, 'bigCount' | 'connections' | 'cacheDir' | 'log'>,
  ximssdCache: Cache | undefined,
  dovecotCache: Cache | undefined,
  dovecotBigHome: string | undefined,
  result: PopulateResult,
  errors: ErrorLog,
): Promise<void> {
  const { log } = options;
  const n = options.bigCount;
  if (ximssdCache?.complete) result.browse.population.push({ side: 'sqlite', cached: true, dir: relative(ROOT, ximssdCache.dir) });
  if (dovecotCache?.complete) result.browse.population.push({ side: 'dovecot', cached: true, dir: relative(ROOT, dovecotCache.dir) });
  const needX = ximssdCache !== undefined && !ximssdCache.complete;
  const needD = dovecotCache !== undefined && !dovecotCache.complete;
  if (!needX && !needD) {
    log(`big mailbox (${fmt(n)} messages): using the cached data directories`);
    return;
  }
  const corpus = new MailCorpus('big');
  let ximssd: Ximssd | undefined;
  let dovecot: Dovecot | undefined;
  const xClients: XimssClient[] = [];
  const dClients: ImapClient[] = [];
  try {
    if (needX && ximssdCache) {
      rmSync(ximssdCache.dir, { recursive: true, force: true });
      clearStale(options.cacheDir, 'ximssd', ximssdCache.dir, n);
      mkdirSync(ximssdCache.dir, { recursive: true });
      ximssd = await startXimssd({ dataDir: join(ximssdCache.dir, 'data'), config: { limits: { maxPendingRequests: 100_000 } } });
      for (let i = 0; i < options.connections; i++) xClients.push(await XimssClient.connect(ximssd.ports.ximss, USER, PASSWORD));
      const probe = await prepareXimssMailbox(xClients[0]!, BIG_MAILBOX, corpus.message(0));
      if (probe !== undefined) {
        result.browseUnavailable.sqlite = probe;
        errors.add(probe);
        log(`ximssd: cannot populate ${BIG_MAILBOX}: ${probe}`);
        for (const c of xClients.splice(0)) await c.close();
        await ximssd.stop();
        ximssd = undefined;
        rmSync(ximssdCache.dir, { recursive: true, force: true });
      }
    }
    if (needD && dovecotCache && dovecotBigHome) {
      rmSync(dovecotCache.dir, { recursive: true, force: true });
      clearStale(options.cacheDir, 'dovecot', dovecotCache.dir, n);
      mkdirSync(dovecotCache.dir, { recursive: true });
      prepareHome(dovecotBigHome);
      // Population only: no fsync (the measurements run with Dovecot's defaults).
      dovecot = await startDovecot({ users: [{ name: 'big', password: IMAP_PASSWORD, home: dovecotBigHome }], mailFsync: 'never' });
      for (let i = 0; i < options.connections; i++) {
        const c = await ImapClient.connect(dovecot.port);
        await c.login('big', IMAP_PASSWORD);
        dClients.push(c);
      }
      await dClients[0]!.command([`CREATE ${BIG_MAILBOX}`], true);
    }
    const sides = [ximssd ? ENGINE_LABEL.sqlite : '', dovecot ? 'Dovecot' : ''].filter(Boolean).join(' and ');
    if (!sides) return;
    log(`populating ${BIG_MAILBOX} with ${fmt(n)} generated messages on ${sides} (cached afterwards) …`);

    // ximssd already holds message 0 (the probe).
    const began = performance.now();
    let xSeconds = 0;
    let dSeconds = 0;
    let done = 0;
    let reported = 0;
    const batches = Math.ceil(n / POPULATE_BATCH);
    const failed = await lanes(
      options.connections * 2,
      batches,
      async (lane, b) => {
        const first = b * POPULATE_BATCH;
        const messages: CorpusMessage[] = [];
        for (let i = first; i < Math.min(n, first + POPULATE_BATCH); i++) messages.push(corpus.message(i));
        const work: Promise<string | undefined>[] = [];
        const xc = xClients[lane % options.connections];
        if (xc) {
          work.push(
            Promise.all(messages.filter((m) => m.index > 0).map((m) => xc.request((id) => ximssAppend(id, m, BIG_MAILBOX)))).then((replies) => {
              xSeconds = (performance.now() - began) / 1000;
              const bad = replies.find((r) => r.error !== undefined);
              return bad ? `ximssd messageAppend: ${bad.response}` : undefined;
            }),
          );
        }
        const dc = dClients[lane % options.connections];
        if (dc) {
          const parts: (string | Buffer)[] = [`APPEND ${BIG_MAILBOX}`];
          for (const m of messages) parts.push(` ${imapFlags(m)}`, m.raw);
          work.push(
            dc.command(parts, true).then((r) => {
              dSeconds = (performance.now() - began) / 1000;
              return r.status === 'OK' ? undefined : `Dovecot APPEND: ${r.tag} ${r.status} ${r.text}`;
            }),
          );
        }
        const outcome = (await Promise.all(work)).find((e) => e !== undefined);
        done += messages.length;
        if (done - reported >= n / 10) {
          reported = done;
          log(`  … ${fmt(done)} of ${fmt(n)} (${fmt((performance.now() - began) / 1000, 1)} s)`);
        }
        return outcome;
      },
      errors,
    );
    if (failed) throw new Error(`population failed (${failed} batches): ${errors.texts.join('; ')}`);

    for (const c of xClients.splice(0)) await c.close();
    for (const c of dClients.splice(0)) await c.logout();
    if (ximssd && ximssdCache) {
      await ximssd.stop(); // a clean stop: everything is on disk before the cache is marked complete
      ximssd = undefined;
      writeFileSync(join(ximssdCache.dir, 'complete.json'), JSON.stringify({ count: n, corpus: CORPUS_VERSION, seconds: xSeconds, date: new Date().toISOString() }) + '\n');
      ximssdCache.complete = true;
      result.browse.population.push({ side: 'sqlite', cached: false, seconds: xSeconds, rate: n / xSeconds, dir: relative(ROOT, ximssdCache.dir) });
      log(`  ${ENGINE_LABEL.sqlite}: ${fmt(n)} messages in ${fmt(xSeconds, 1)} s (${fmt(n / xSeconds)} msg/s${needD ? ', sharing the machine with Dovecot' : ''})`);
    }
    if (dovecot && dovecotCache) {
      await dovecot.stop();
      dovecot = undefined;
      writeFileSync(join(dovecotCache.dir, 'complete.json'), JSON.stringify({ count: n, corpus: CORPUS_VERSION, seconds: dSeconds, date: new Date().toISOString() }) + '\n');
      dovecotCache.complete = true;
      result.browse.population.push({ side: 'dovecot', cached: false, seconds: dSeconds, rate: n / dSeconds, dir: relative(ROOT, dovecotCache.dir) });
      log(`  Dovecot: ${fmt(n)} messages in ${fmt(dSeconds, 1)} s (${fmt(n / dSeconds)} msg/s, MULTIAPPEND × ${POPULATE_BATCH}, mail_fsync=never)`);
    }
  } finally {
    for (const c of xClients) await c.close().catch(() => undefined);
    for (const c of dClients) await c.logout().catch(() => undefined);
    await ximssd?.stop();
    await dovecot?.stop();
  }
}

/**
 * Creates the mailbox (an existing one is fine) and appends `first` to it, as a probe:
 * undefined when that worked, else the error, quoted.
 */
async function prepareXimssMailbox(client: XimssClient, mailbox: string, first: CorpusMessage): Promise<string | undefined> {
  const create = await client.request((id) => `<mailboxCreate id="${id}" mailbox="${xmlAttr(mailbox)}"/>`);
  // mailboxClass="" makes messageAppend create the mailbox if mailboxCreate could not.
  const append = await client.request((id) => ximssAppend(id, first, mailbox, ' mailboxClass=""'));
  if (append.error === undefined) return undefined;
  return create.error !== undefined && !/exist/i.test(create.error)
    ? `mailboxCreate answered ${create.response}; messageAppend answered ${append.response}`
    : `messageAppend answered ${append.response}`;
}

/**
 * Fills the big mailbox on PostgreSQL, in a fresh database of the run's server: the path the
 * SQLite cache is filled by (a ximssd child, pipelined messageAppends on K connections, 200
 * in flight on each), with the account created by `ximssd account add`, and the server's
 * settings as measured (durable: the filling is CPU-bound here; relaxing the commits
 * gained nothing measurable). Then `VACUUM (ANALYZE)` and `CHECKPOINT`: what autovacuum and
 * the checkpointer would do on their own a little later, during the timed iterations.
 * Returns the database's URL, or undefined (the reason is in result.browseUnavailable.postgres).
 */
async function populatePostgres(
  options: Pick<MailOptions, 'bigCount' | 'connections' | 'log'>,
  postgres: BenchPostgres,
  result: MailResult,
  errors: ErrorLog,
): Promise<string | undefined> {
  const { log } = options;
  const n = options.bigCount;
  const corpus = new MailCorpus('big');
  let ximssd: Ximssd | undefined;
  const clients: XimssClient[] = [];
  try {
    const url = await postgres.createDatabase('big');
    ximssd = await startXimssd({ store: url, config: { limits: { maxPendingRequests: 100_000 } } });
    for (let i = 0; i < options.connections; i++) clients.push(await XimssClient.connect(ximssd.ports.ximss, USER, PASSWORD));
    const probe = await prepareXimssMailbox(clients[0]!, BIG_MAILBOX, corpus.message(0));
    if (probe !== undefined) throw new Error(probe);
    log(`populating ${BIG_MAILBOX} with ${fmt(n)} generated messages on ${ENGINE_LABEL.postgres} (database ${url}; filled in every run) …`);
    const began = performance.now();
    const x0 = cpuSeconds(ximssd.pid);
    const p0 = postgres.cpuSeconds();
    let done = 0;
    let reported = 0;
    const failed = await lanes(
      options.connections * 2,
      Math.ceil(n / POPULATE_BATCH),
      async (lane, b) => {
        const c = clients[lane % options.connections]!;
        const first = b * POPULATE_BATCH;
        const messages: CorpusMessage[] = [];
        for (let i = Math.max(1, first); i < Math.min(n, first + POPULATE_BATCH); i++) messages.push(corpus.message(i));
        const replies = await Promise.all(messages.map((m) => c.request((id) => ximssAppend(id, m, BIG_MAILBOX))));
        done += messages.length + (first === 0 ? 1 : 0);
        if (done - reported >= n / 10) {
          reported = done;
          log(`  … ${fmt(done)} of ${fmt(n)} (${fmt((performance.now() - began) / 1000, 1)} s)`);
        }
        const bad = replies.find((r) => r.error !== undefined);
        return bad ? `${ENGINE_LABEL.postgres} messageAppend: ${bad.response}` : undefined;
      },
      errors,
    );
    if (failed) throw new Error(`population failed (${failed} batches): ${errors.texts.join('; ')}`);
    const seconds = (performance.now() - began) / 1000;
    const cpu = { ximssd: cpuSeconds(ximssd.pid) - x0, postgres: postgres.cpuSeconds() - p0 };
    for (const c of clients.splice(0)) await c.close();
    await ximssd.stop();
    ximssd = undefined;
    const settling = performance.now();
    await postgres.query(url, 'VACUUM (ANALYZE)');
    await postgres.query(url, 'CHECKPOINT');
    const settleSeconds = (performance.now() - settling) / 1000;
    const size = (await postgres.query(url, 'SELECT pg_database_size(current_database()) AS bytes'))[0]?.bytes;
    result.browse.population.push({ side: 'postgres', cached: false, seconds, rate: n / seconds, dir: url, settleSeconds });
    log(
      `  ${ENGINE_LABEL.postgres}: ${fmt(n)} messages in ${fmt(seconds, 1)} s (${fmt(n / seconds)} msg/s; ` +
        `CPU per message: ximssd ${fmt((cpu.ximssd / n) * 1e6)} µs, PostgreSQL ${fmt((cpu.postgres / n) * 1e6)} µs); ` +
        `VACUUM (ANALYZE) + CHECKPOINT ${fmt(settleSeconds, 1)} s; database ${fmt(Number(size) / 1e6)} MB`,
    );
    return url;
  } catch (err) {
    const reason = (err as Error).message;
    result.browseUnavailable.postgres = reason;
    errors.add(reason);
    log(`${ENGINE_LABEL.postgres}: cannot populate ${BIG_MAILBOX}: ${reason}`);
    return undefined;
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await ximssd?.stop();
  }
}

async function appendPhase(
  options: MailOptions,
  sides: XSide[],
  dovecot: Dovecot | undefined,
  result: MailResult,
  errors: ErrorLog,
  ximssClients: XimssClient[],
  imapClients: ImapClient[],
): Promise<void> {
  const { log } = options;
  const corpus = new MailCorpus('append');
  const k = options.connections;
  const w = options.window;
  const names = [...sides.map((x) => x.label), ...(dovecot ? ['Dovecot'] : [])];
  log(
    `\nappend: ${k} connections × ${w} in flight, ${fmt(options.appendWarmup)} warm-up messages, then ${options.appendRuns} run(s) × ${fmt(options.appendCount)} messages, ` +
      `on each side (${names.join(', ')}, in this order in each run)`,
  );
  const clientsOf = new Map<XSide, XimssClient[]>();
  const live: XSide[] = [];
  for (const x of sides) {
    const clients: XimssClient[] = [];
    for (let i = 0; i < k; i++) clients.push(await XimssClient.connect(x.server.ports.ximss, USER, PASSWORD));
    ximssClients.push(...clients);
    clientsOf.set(x, clients);
    const probe = await prepareXimssMailbox(clients[0]!, APPEND_MAILBOX, corpus.message(0));
    if (probe !== undefined) {
      result.appendUnavailable[x.engine] = probe;
      errors.add(probe);
      log(`${x.label} append not measured: ${probe}`);
    } else live.push(x);
  }
  if (dovecot) {
    for (let i = 0; i < k; i++) {
      const c = await ImapClient.connect(dovecot.port);
      await c.login('append', IMAP_PASSWORD);
      imapClients.push(c);
    }
    await imapClients[0]!.command([`CREATE ${APPEND_MAILBOX}`], true);
    const literal = imapClients[0]!.has('LITERAL+') ? 'LITERAL+ (pipelined)' : 'no LITERAL+: one APPEND at a time per connection';
    log(`Dovecot: ${literal}`);
  }

  const finish = (messages: number, failed: number, m: { seconds: number; server: number; other: number }, split?: { ximssd: number; postgres: number }): AppendRun => ({
    messages,
    seconds: m.seconds,
    rate: messages / m.seconds,
    cpuPerMessage: m.server / messages,
    ...(split ? { cpuSplit: { ximssd: split.ximssd / messages, postgres: split.postgres / messages } } : {}),
    otherCpu: m.other,
    errors: failed,
  });
  const ximssdRun = async (x: XSide, messages: CorpusMessage[], mailbox: string): Promise<AppendRun> => {
    const clients = clientsOf.get(x)!;
    const c0 = x.cpu();
    const done = meter(() => total(x.cpu()));
    const failed = await lanes(
      k * w,
      messages.length,
      async (lane, i) => {
        const reply = await clients[lane % k]!.request((id) => ximssAppend(id, messages[i]!, mailbox));
        return reply.error === undefined ? undefined : `${x.label} messageAppend: ${reply.response}`;
      },
      errors,
    );
    const m = done();
    const c1 = x.cpu();
    return finish(messages.length, failed, m, x.engine === 'postgres' ? { ximssd: c1.ximssd - c0.ximssd, postgres: c1.postgres - c0.postgres } : undefined);
  };
  const dovecotRun = async (messages: CorpusMessage[], mailbox: string): Promise<AppendRun> => {
    const done = meter(() => dovecot!.cpuSeconds());
    const failed = await lanes(
      k * w,
      messages.length,
      async (lane, i) => {
        const m = messages[i]!;
        const r = await imapClients[lane % k]!.command([`APPEND ${mailbox} ${imapFlags(m)}`, m.raw], true);
        return r.status === 'OK' ? undefined : `Dovecot APPEND: ${r.tag} ${r.status} ${r.text}`;
      },
      errors,
    );
    return finish(messages.length, failed, done());
  };
  const line = (tag: string, name: string, r: AppendRun, extra = ''): void =>
    log(
      `${tag} ${name.padEnd(32)} ${fmt(r.rate).padStart(8)} msg/s  (${fmt(r.messages)} in ${fmt(r.seconds, 2)} s, ` +
        `server CPU ${r.cpuPerMessage === undefined ? '?' : fmt(r.cpuPerMessage * 1e6)} µs/msg` +
        (r.cpuSplit ? ` = ximssd ${fmt(r.cpuSplit.ximssd * 1e6)} + PostgreSQL ${fmt(r.cpuSplit.postgres * 1e6)}` : '') +
        `, other CPU ${Math.round(r.otherCpu * 100)}%, errors ${r.errors})${extra}`,
    );

  // Warm-up (message 0 went in as the probe)
  const slice = (from: number, count: number): CorpusMessage[] => Array.from({ length: count }, (_, i) => corpus.message(from + i));
  const warm = slice(1, options.appendWarmup);
  for (const x of live) await ximssdRun(x, warm, APPEND_MAILBOX);
  if (dovecot) {
    await imapClients[0]!.command([`APPEND ${APPEND_MAILBOX} ${imapFlags(corpus.message(0))}`, corpus.message(0).raw]);
    await dovecotRun(warm, APPEND_MAILBOX);
  }
  // Each run appends into a mailbox of its own, created empty just before: the runs are alike,
  // however many there are (appending gets slower as a mailbox grows, on both servers).
  for (let run = 1; run <= options.appendRuns; run++) {
    const tag = `[append ${run}/${options.appendRuns}]`;
    const mailbox = `${APPEND_MAILBOX}${run}`;
    const messages = slice(1 + options.appendWarmup + (run - 1) * options.appendCount, options.appendCount);
    const these: [XSide, AppendRun][] = [];
    for (const x of live) {
      const created = await clientsOf.get(x)![0]!.request((id) => `<mailboxCreate id="${id}" mailbox="${mailbox}"/>`);
      if (created.error !== undefined) errors.add(`${x.label} mailboxCreate: ${created.response}`);
      const r = await ximssdRun(x, messages, mailbox);
      result.append[x.engine].push(r);
      these.push([x, r]);
      line(tag, `${x.label} messageAppend`, r);
    }
    if (dovecot) {
      await imapClients[0]!.command([`CREATE ${mailbox}`]);
      const d = await dovecotRun(messages, mailbox);
      result.append.dovecot.push(d);
      const ratios = these.map(([x, r]) => `${x.label} ${fmt(r.rate / d.rate, 2)}`).join(', ');
      line(tag, 'Dovecot APPEND', d, ratios ? `; ratio to Dovecot: ${ratios}` : '');
    }
  }
  const runErrors = Object.values(result.append).some((runs) => runs.some((r) => r.errors > 0));
  if (runErrors) for (const e of errors.texts) log(`  error seen: ${e}`);
}

/** One open-sort-browse-close of ximssd; returns the data of the folderOpen and folderBrowse. */
async function ximssdBrowse(client: XimssClient): Promise<{ open: string[]; rows: string[] }> {
  const fields = FIELDS.map((f) => `<field>${f}</field>`).join('');
  const open = await client.call(
    (id) => `<folderOpen id="${id}" folder="B" mailbox="${BIG_MAILBOX}" sortField="Date" sortOrder="desc">${fields}</folderOpen>`,
  );
  const browse = await client.call((id) => `<folderBrowse id="${id}" folder="B"><index from="0" till="${ROWS - 1}"/></folderBrowse>`);
  await client.call((id) => `<folderClose id="${id}" folder="B"/>`);
  return { open: open.data, rows: browse.data };
}

/** One SELECT, UID SORT (REVERSE DATE), UID FETCH of the first rows, UNSELECT/CLOSE. */
async function dovecotBrowse(client: ImapClient, unselect: boolean): Promise<{ select: ImapResult; sorted: number; rows: string[] }> {
  const select = await client.command([`SELECT ${BIG_MAILBOX}`]);
  const sort = await client.command(['UID SORT (REVERSE DATE) UTF-8 ALL']);
  const line = sort.untagged.find((u) => u.startsWith('SORT'));
  const uids = line ? line.slice(5).split(' ').filter(Boolean) : [];
  const first = uids.slice(0, ROWS);
  let rows: string[] = [];
  if (first.length) {
    const fetch = await client.command([`UID FETCH ${first.join(',')} (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])`]);
    rows = fetch.untagged.filter((u) => / FETCH \(/.test(u));
    // The client shows them in the sorted order, whatever order they came in.
    const at = new Map(first.map((uid, i) => [uid, i]));
    const key = (row: string): number => at.get(row.match(/\bUID (\d+)/)?.[1] ?? '') ?? 0;
    rows.sort((a, b) => key(a) - key(b));
  }
  await client.command([unselect ? 'UNSELECT' : 'CLOSE']);
  return { select, sorted: uids.length, rows };
}

/** The Date of an IMAP FETCH row (from the header literal), seconds. */
function imapRowDate(row: string): number | undefined {
  const date = row.match(/\r\nDate:\s*([^\r\n]+)/i)?.[1] ?? row.match(/^Date:\s*([^\r\n]+)/im)?.[1];
  if (!date) return undefined;
  const ms = Date.parse(date.replace(/\s*\([^)]*\)\s*$/, ''));
  return Number.isNaN(ms) ? undefined : ms / 1000;
}

/** The Date of a ximssd folderReport row (iCalendar GMT body), seconds. */
function ximssRowDate(row: string): number | undefined {
  const m = row.match(/<Date\b[^>]*>(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z?<\/Date>/);
  if (!m) return undefined;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) / 1000;
}

function compareDates(side: string, got: (number | undefined)[], expected: number[]): string {
  if (got.length !== expected.length) return `${side}: ${got.length} rows instead of ${expected.length}`;
  const bad = got.findIndex((d, i) => d !== expected[i]);
  if (bad < 0) return `${side}: the ${expected.length} rows are the newest messages, in Date order`;
  const g = got[bad];
  return `${side}: row ${bad} has Date ${g === undefined ? '(none)' : icalGmt(g)}, expected ${icalGmt(expected[bad]!)}`;
}

async function browsePhase(
  options: MailOptions,
  engines: Engine[],
  sqliteCache: Cache | undefined,
  bigUrl: string | undefined,
  dovecot: Dovecot | undefined,
  dovecotCache: Cache | undefined,
  result: MailResult,
  errors: ErrorLog,
  servers: Ximssd[],
  ximssClients: XimssClient[],
  imapClients: ImapClient[],
): Promise<void> {
  const { log } = options;
  const n = options.bigCount;
  const checks = result.browse.checks;
  log(`\nopen and browse: ${fmt(n)} messages sorted by Date (newest first), first ${ROWS} rows; 1 warm-up + ${options.iterations} timed iterations`);

  // The expected first rows: the newest dates of the corpus.
  const corpus = new MailCorpus('big');
  const dates = Array.from({ length: n }, (_, i) => corpus.date(i)).sort((a, b) => b - a);
  const expected = dates.slice(0, ROWS);

  const xs: { x: XSide; client: XimssClient; samples: number[] }[] = [];
  for (const engine of engines) {
    const label = ENGINE_LABEL[engine];
    const ready = engine === 'sqlite' ? sqliteCache?.complete === true : bigUrl !== undefined;
    if (!ready || result.browseUnavailable[engine] !== undefined) {
      result.browseUnavailable[engine] ??= 'the big mailbox could not be populated';
      continue;
    }
    try {
      const server =
        engine === 'sqlite'
          ? await startXimssd({ dataDir: join(sqliteCache!.dir, 'data'), cpuProfileDir: options.cpuProfileDir })
          : await startXimssd({ store: bigUrl, createAccounts: false, cpuProfileDir: options.cpuProfileDir });
      servers.push(server);
      const client = await XimssClient.connect(server.ports.ximss, USER, PASSWORD);
      ximssClients.push(client);
      const warm = await ximssdBrowse(client);
      const init = warm.open.find((d) => attr(d, 'mode') === 'init');
      const messages = init ? attr(init, 'messages') : undefined;
      checks.push(`${label}: folderOpen reported messages="${messages ?? '?'}" (expected ${n})`);
      checks.push(compareDates(label, warm.rows.map(ximssRowDate), expected));
      if (warm.rows[0]) checks.push(`${label} first row: ${warm.rows[0].replace(/\s+/g, ' ').slice(0, 300)}`);
      xs.push({ x: xside(engine, server, options.postgres), client, samples: [] });
    } catch (err) {
      result.browseUnavailable[engine] = (err as Error).message;
      errors.add((err as Error).message);
    }
  }

  let dc: ImapClient | undefined;
  let unselect = false;
  if (dovecot && dovecotCache?.complete) {
    dc = await ImapClient.connect(dovecot.port);
    imapClients.push(dc);
    await dc.login('big', IMAP_PASSWORD);
    unselect = dc.has('UNSELECT');
    try {
      const warm = await dovecotBrowse(dc, unselect);
      const exists = warm.select.untagged.find((u) => / EXISTS$/.test(u));
      checks.push(`Dovecot: SELECT reported ${exists ?? '?'}, SORT returned ${warm.sorted} UIDs (expected ${n})`);
      checks.push(compareDates('Dovecot', warm.rows.map(imapRowDate), expected));
      if (warm.rows[0]) checks.push(`Dovecot first row: ${decodeEntities(warm.rows[0]).replace(/\s+/g, ' ').slice(0, 300)}`);
    } catch (err) {
      result.browseUnavailable.dovecot = (err as Error).message;
      errors.add((err as Error).message);
      dc = undefined;
    }
  } else if (dovecot) result.browseUnavailable.dovecot = 'the big mailbox could not be populated';
  for (const c of checks) log(`  check: ${c}`);

  // Timed iterations, the servers taking turns (ximssd on each engine, then Dovecot).
  const ds: number[] = [];
  const serversCpu = (): number =>
    xs.reduce((sum, { x }) => sum + x.cpu().ximssd, 0) + (options.postgres ? options.postgres.cpuSeconds() : 0) + (dovecot ? dovecot.cpuSeconds() : 0);
  const done = meter(serversCpu);
  for (let i = 0; i < options.iterations; i++) {
    for (const side of xs) {
      const t0 = performance.now();
      await ximssdBrowse(side.client);
      side.samples.push(performance.now() - t0);
    }
    if (dc) {
      const t0 = performance.now();
      await dovecotBrowse(dc, unselect);
      ds.push(performance.now() - t0);
    }
  }
  const otherCpu = done().other;
  const show = (name: string, s: BrowseStats): void =>
    log(`${name.padEnd(62)} median ${fmt(s.medianMs, 2).padStart(9)} ms  p90 ${fmt(s.p90Ms, 2).padStart(9)} ms  (min ${fmt(s.minMs, 2)}, max ${fmt(s.maxMs, 2)})`);
  for (const { x, samples } of xs) {
    result.browse[x.engine] = { ...stats(samples), otherCpu };
    show(`${x.label} folderOpen + folderBrowse + folderClose`, result.browse[x.engine]!);
  }
  for (const engine of engines) {
    if (!result.browse[engine]) log(`${ENGINE_LABEL[engine]} open-and-browse not measured: ${result.browseUnavailable[engine] ?? '?'}`);
  }
  if (ds.length) {
    result.browse.dovecot = { ...stats(ds), otherCpu };
    show(`Dovecot SELECT + UID SORT + UID FETCH + ${unselect ? 'UNSELECT' : 'CLOSE'}`, result.browse.dovecot);
  } else if (dovecot) log(`Dovecot open-and-browse not measured: ${result.browseUnavailable.dovecot ?? '?'}`);
  if (otherCpu > 0.2) log(`note: other processes used ${Math.round(otherCpu * 100)}% of a core during these iterations: the times are disturbed`);
  const d = result.browse.dovecot;
  if (d) {
    const ratios = engines.flatMap((e) => (result.browse[e] ? [`${ENGINE_LABEL[e]} ${fmt(result.browse[e]!.medianMs / d.medianMs, 2)}`] : []));
    if (ratios.length) log(`ratio to Dovecot (median): ${ratios.join(', ')}`);
  }
}
