/**
 * ximssd benchmark suite (`npm run bench`). Prints figures, never asserts. Everything runs
 * on 127.0.0.1: the echo server and ximssd each in their own child process, the load
 * generator in this one. See bench/README.md for what each figure means.
 *
 * Options: --runs N (3)  --duration S (5)  --warmup S (1)  --connections K (4)
 *          --window W (1000)  --http-sessions N (4)  --batch B (100)  --sessions N (5000)
 *          --login-concurrency N (200)  --only echo,tcp,http,memory,mail,smtp,cluster,attack,webdav  --quick  --profile
 *          --engines sqlite,postgres (both; the store engines of ximssd in the mail and smtp sections)
 *          mail: --mail-count N (100000)  --mail-append N (5000)  --mail-iterations N (20)
 *                --mail-connections K (= --connections)  --mail-window W (32)  --mail-repopulate
 *          smtp: --smtp-count N (4000)  --smtp-warmup N (500)  --smtp-senders K (16)
 *          cluster: --cluster-samples N (300; 50)  (and --mail-append, --mail-connections, --mail-window, --runs)
 *          attack: --attack-flooders K (8)  --attack-idle N (1000)  --attack-scenarios flood,search,idle
 *                  (--duration S per scenario, --mail-count N)
 *          webdav: --webdav-files N (1000)  --webdav-mb N (100)  (beside Apache mod_dav)
 *          carddav: --carddav-cards N (1000)  (addressbook-multiget beside Radicale; run with --only carddav)
 *          calendar: --calendar-items N (10000)  (a month view beside Radicale's calendar-query; run with --only calendar)
 *          xmpp: --xmpp-pairs N (500)  --xmpp-messages N (100 per sender)  --xmpp-logins N (2000)
 *                --xmpp-login-concurrency N (50)  --xmpp-connections N (5000)  --xmpp-mechanism SCRAM-SHA-1|SCRAM-SHA-256|PLAIN
 *                (beside Prosody; run with --only xmpp)
 *          sip: --sip-trial S (5; 3)  --sip-hold MS (1000)  --sip-start-rate N (50)  --sip-max-rate N (16000)  --kamailio-children N (4)
 *               (call setup rate beside Kamailio; run with --only sip)
 *          media: --media-start-calls N (50)  --media-max-calls N (1000)  --media-window S (5; 3)  (relayed G.711 calls; run with --only media)
 *          rayo: --rayo-start-calls N (50)  --rayo-max-calls N (1000; 400)  --rayo-setup-rate N (100)  --rayo-prompt MS (1000)  --rayo-window S (20; 10)  --rayo-nice=N (0; e.g. --rayo-nice=-10)
 *                (Rayo-controlled calls, prompt + DTMF, on one core; run with --only rayo)
 *          speller: --speller-words N (10000)  --speller-every N (40: every 40th word misspelt)
 *                   (spellerCheck beside Debian's hunspell -a on the same text; run with --only speller)
 *          smime: --smime-mb N (1)  (sign+encrypt and decrypt+verify beside Debian's openssl smime; run with --only smime)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ATTACK_TARGET, attackBench, type AttackResult } from './lib/attack.js';
import { clusterBench, type ClusterResult, type LatencyStats } from './lib/cluster-bench.js';
import { ENGINE_LABEL, ENGINES, type Engine, type Side } from './lib/engines.js';
import { fmt, median, table, type Figure } from './lib/figures.js';
import { httpSyncBatches, type HttpBatchResult } from './lib/http-load.js';
import { mailBench, type MailResult } from './lib/mail-bench.js';
import { sessionMemory, type MemoryResult } from './lib/memory.js';
import { smtpBench, type SmtpResult } from './lib/smtp-bench.js';
import { startBenchPostgres, type BenchPostgres } from './lib/postgres.js';
import { openFileLimit, spawnChild } from './lib/proc.js';
import { pipelinedNoops, type PipelineResult } from './lib/tcp-load.js';
import { webdavBench, type WebdavResult } from './lib/webdav-bench.js';
import { carddavBench, type CarddavResult } from './lib/carddav-area.js';
import { calendarBench, type CalendarResult } from './lib/calendar-bench.js';
import { smimeBench, type SmimeResult } from './lib/smime-bench.js';
import { xmppBench, xmppFigures, type XmppResult } from './lib/xmpp-bench.js';
import { sipBench, sipFigures, type SipResult } from './lib/sip-bench.js';
import { mediaBench, mediaFigures, type MediaResult } from './lib/sip-media-bench.js';
import { rayoBench, rayoFigures, type RayoResult } from './lib/rayo-bench.js';
import { spellerBench, type SpellerResult } from './lib/speller-bench.js';
import type { LoadMechanism } from './lib/xmpp-client.js';
import { PASSWORD, ROOT, USER, startXimssd } from './lib/ximssd.js';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    window: { type: 'string' },
    'http-sessions': { type: 'string' },
    batch: { type: 'string' },
    sessions: { type: 'string' },
    'login-concurrency': { type: 'string' },
    'mail-count': { type: 'string' },
    'mail-append': { type: 'string' },
    'mail-iterations': { type: 'string' },
    'mail-window': { type: 'string' },
    'mail-connections': { type: 'string' },
    'mail-repopulate': { type: 'boolean' },
    'smtp-count': { type: 'string' },
    'smtp-warmup': { type: 'string' },
    'smtp-senders': { type: 'string' },
    'attack-flooders': { type: 'string' },
    'attack-idle': { type: 'string' },
    'attack-scenarios': { type: 'string' },
    'cluster-samples': { type: 'string' },
    'webdav-files': { type: 'string' },
    'webdav-mb': { type: 'string' },
    'carddav-cards': { type: 'string' },
    'calendar-items': { type: 'string' },
    'xmpp-pairs': { type: 'string' },
    'xmpp-messages': { type: 'string' },
    'xmpp-logins': { type: 'string' },
    'xmpp-login-concurrency': { type: 'string' },
    'xmpp-connections': { type: 'string' },
    'xmpp-mechanism': { type: 'string' },
    'sip-trial': { type: 'string' },
    'sip-hold': { type: 'string' },
    'sip-start-rate': { type: 'string' },
    'sip-max-rate': { type: 'string' },
    'kamailio-children': { type: 'string' },
    'media-start-calls': { type: 'string' },
    'media-max-calls': { type: 'string' },
    'media-window': { type: 'string' },
    'rayo-start-calls': { type: 'string' },
    'rayo-max-calls': { type: 'string' },
    'rayo-setup-rate': { type: 'string' },
    'rayo-prompt': { type: 'string' },
    'rayo-window': { type: 'string' },
    'rayo-nice': { type: 'string' },
    'speller-words': { type: 'string' },
    'speller-every': { type: 'string' },
    'smime-mb': { type: 'string' },
    engines: { type: 'string' },
    only: { type: 'string' },
    quick: { type: 'boolean' },
    profile: { type: 'boolean' },
  },
});

const quick = flags.quick === true;
const num = (value: string | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`not a positive number: ${value}`);
  return n;
};
const params = {
  runs: num(flags.runs, quick ? 1 : 3),
  durationMs: num(flags.duration, quick ? 2 : 5) * 1000,
  warmupMs: num(flags.warmup, 1) * 1000,
  connections: num(flags.connections, 4),
  window: num(flags.window, 1000),
  httpSessions: num(flags['http-sessions'], 4),
  batch: num(flags.batch, 100),
  sessions: num(flags.sessions, quick ? 1000 : 5000),
  loginConcurrency: num(flags['login-concurrency'], 200),
  settleMs: 2000,
  mailCount: num(flags['mail-count'], quick ? 10_000 : 100_000),
  mailAppend: num(flags['mail-append'], quick ? 1000 : 5000),
  mailAppendWarmup: quick ? 200 : 500,
  mailIterations: num(flags['mail-iterations'], quick ? 5 : 20),
  mailWindow: num(flags['mail-window'], 32),
  mailConnections: 0,
  smtpCount: num(flags['smtp-count'], quick ? 1000 : 4000),
  smtpWarmup: num(flags['smtp-warmup'], quick ? 200 : 500),
  smtpSenders: num(flags['smtp-senders'], 16),
  attackFlooders: num(flags['attack-flooders'], 8),
  attackIdle: num(flags['attack-idle'], 1000),
  attackAddresses: 20,
  clusterSamples: num(flags['cluster-samples'], quick ? 50 : 300),
  webdavFiles: num(flags['webdav-files'], 1000),
  webdavBytes: num(flags['webdav-mb'], quick ? 20 : 100) * 1024 * 1024,
  carddavCards: num(flags['carddav-cards'], 1000),
  calendarItems: num(flags['calendar-items'], 10_000),
  spellerWords: num(flags['speller-words'], 10_000),
  spellerEvery: num(flags['speller-every'], 40),
  xmppPairs: num(flags['xmpp-pairs'], quick ? 100 : 500),
  xmppMessages: num(flags['xmpp-messages'], quick ? 50 : 100),
  xmppLogins: num(flags['xmpp-logins'], quick ? 500 : 2000),
  xmppLoginConcurrency: num(flags['xmpp-login-concurrency'], 50),
  xmppConnections: num(flags['xmpp-connections'], quick ? 1000 : 5000),
  xmppMechanism: (flags['xmpp-mechanism'] ?? 'SCRAM-SHA-1') as LoadMechanism,
  sipTrialSeconds: num(flags['sip-trial'], quick ? 3 : 5),
  sipHoldMs: num(flags['sip-hold'], 1000),
  sipStartRate: num(flags['sip-start-rate'], 50),
  // High enough that Kamailio is measured, not capped: capped at 5,000 it made the ratio look higher than it is.
  sipMaxRate: num(flags['sip-max-rate'], 16000),
  kamailioChildren: num(flags['kamailio-children'], 4),
  mediaStartCalls: num(flags['media-start-calls'], 50),
  mediaMaxCalls: num(flags['media-max-calls'], 1000),
  mediaWindowSeconds: num(flags['media-window'], quick ? 3 : 5),
  rayoStartCalls: num(flags['rayo-start-calls'], 50),
  rayoMaxCalls: num(flags['rayo-max-calls'], quick ? 400 : 1000),
  rayoSetupRate: num(flags['rayo-setup-rate'], 100),
  rayoPromptMs: num(flags['rayo-prompt'], 1000),
  rayoWindowSeconds: num(flags['rayo-window'], quick ? 10 : 20),
  rayoNice: Number(flags['rayo-nice'] ?? 0),
  smimeBytes: num(flags['smime-mb'], 1) * 1024 * 1024,
  engines: [] as Engine[],
};
params.mailConnections = num(flags['mail-connections'], params.connections);
params.engines = (flags.engines ?? ENGINES.join(',')).split(',').map((s) => s.trim()) as Engine[];
if (!Number.isInteger(params.rayoNice) || params.rayoNice < -20 || params.rayoNice > 19) throw new Error(`--rayo-nice takes an integer from -20 to 19, not ${flags['rayo-nice']}`);
if (!['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256'].includes(params.xmppMechanism)) throw new Error(`--xmpp-mechanism takes PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256, not ${params.xmppMechanism}`);
for (const e of params.engines) if (!ENGINES.includes(e)) throw new Error(`unknown engine ${e} (--engines takes ${ENGINES.join(',')})`);
const only = new Set((flags.only ?? 'echo,tcp,http,memory,mail,smtp,cluster,attack,webdav').split(',').map((s) => s.trim()));
if (only.has('tcp') || only.has('http')) only.add('echo'); // the ratios need the ceiling
const RESULTS = join(ROOT, 'bench', 'results');
const profileDir = flags.profile ? join(RESULTS, 'profiles') : undefined;

const pct = (n: number | undefined): string => (n === undefined ? '?' : `${Math.round(n * 100)}%`);
/** Server CPU time per message, in microseconds: independent of how fast the generator is. */
const cpuPer = (serverCpu: number | undefined, rate: number): string =>
  serverCpu === undefined || rate === 0 ? '?' : `${fmt((serverCpu / rate) * 1e6, 2)} µs`;

/** The median rate of some runs, or null when there are none. */
const rateOf = (runs: readonly { rate: number }[]): number | null => (runs.length ? median(runs.map((r) => r.rate)) : null);
/** The median server CPU per message of some runs, in µs, or null. */
const cpuOf = (runs: readonly { cpuPerMessage: number | undefined }[]): number | null => {
  const list = runs.flatMap((r) => (r.cpuPerMessage === undefined ? [] : [r.cpuPerMessage * 1e6]));
  return list.length ? median(list) : null;
};
/** The median of the PostgreSQL part of the CPU per message (µs), or null. */
const postgresCpuOf = (runs: readonly { cpuSplit?: { postgres: number } }[]): number | null => {
  const list = runs.flatMap((r) => (r.cpuSplit === undefined ? [] : [r.cpuSplit.postgres * 1e6]));
  return list.length ? median(list) : null;
};

/** Each side's SMTP figure: the median rate and CPU, or null with the reason (a side whose INBOXes do not hold what was accepted gets no figure). */
function smtpFigures(smtp: SmtpResult): Record<Side, { rate: number | null; cpu: number | null; postgresCpu: number | null; note: string | undefined }> {
  const side = (s: Side) => {
    if (s === 'dovecot' && !smtp.dovecot.available) return { rate: null, cpu: null, postgresCpu: null, note: smtp.dovecot.reason };
    const runs = smtp.runs[s];
    const v = smtp.verify[s];
    const unverified = v === undefined ? 'not verified' : v.ok ? undefined : `delivery check failed: ${v.text}`;
    const note = smtp.unavailable[s] ?? (runs.length ? unverified : 'not measured');
    const ok = runs.length > 0 && note === undefined;
    return { rate: ok ? rateOf(runs) : null, cpu: ok ? cpuOf(runs) : null, postgresCpu: ok ? postgresCpuOf(runs) : null, note };
  };
  return { sqlite: side('sqlite'), postgres: side('postgres'), dovecot: side('dovecot') };
}

/** The columns of a side-by-side table: each engine with its ratio to Dovecot, then Dovecot. */
function sideBySide(title: string, engines: readonly Engine[], rows: { name: string; digits?: number; values: Record<Side, number | null>; detail?: Partial<Record<Engine, string>> }[]): string[] {
  const header = ['', ...engines.flatMap((e) => [ENGINE_LABEL[e], '÷ Dovecot']), 'Dovecot'];
  const cell = (v: number | null, digits = 0): string => (v === null ? 'n/a' : fmt(v, digits));
  const body = rows.map((r) => {
    const d = r.values.dovecot;
    return [
      r.name,
      ...engines.flatMap((e) => {
        const v = r.values[e];
        return [cell(v, r.digits) + (r.detail?.[e] ? ` ${r.detail[e]}` : ''), v !== null && d !== null ? fmt(v / d, 2) : ''];
      }),
      cell(d, r.digits),
    ];
  });
  const right = new Set(header.map((_, i) => i).filter((i) => i > 0));
  return ['', title, ...table(header, body, right)];
}

function mailSideBySide(mail: MailResult): string[] {
  const by = <T,>(f: (s: Side) => T): Record<Side, T> => ({ sqlite: f('sqlite'), postgres: f('postgres'), dovecot: f('dovecot') });
  const pgCpu = postgresCpuOf(mail.append.postgres);
  return sideBySide(`mail, side by side (medians; ÷ Dovecot: the ratio to Dovecot's figure)`, mail.engines, [
    { name: 'append, msg/s', values: by((s) => rateOf(mail.append[s])) },
    { name: 'server CPU per append, µs', values: by((s) => cpuOf(mail.append[s])), detail: pgCpu === null ? {} : { postgres: `(PostgreSQL ${fmt(pgCpu)})` } },
    { name: `open+browse 50 of ${fmt(mail.browse.count)}, median ms`, digits: 1, values: by((s) => mail.browse[s]?.medianMs ?? null) },
    { name: 'open+browse p90 ms', digits: 1, values: by((s) => mail.browse[s]?.p90Ms ?? null) },
  ]);
}

function smtpSideBySide(smtp: SmtpResult): string[] {
  const f = smtpFigures(smtp);
  const by = <T,>(g: (s: Side) => T): Record<Side, T> => ({ sqlite: g('sqlite'), postgres: g('postgres'), dovecot: g('dovecot') });
  const pgCpu = f.postgres.postgresCpu;
  return sideBySide(`smtp, side by side (medians; ÷ Dovecot: the ratio to Dovecot's LMTP figure)`, smtp.engines, [
    { name: 'delivery, msg/s', values: by((s) => f[s].rate) },
    { name: 'server CPU per message, µs', values: by((s) => f[s].cpu), detail: pgCpu === null ? {} : { postgres: `(PostgreSQL ${fmt(pgCpu)})` } },
  ]);
}

async function main(): Promise<void> {
  const began = performance.now();
  const fdLimit = openFileLimit();
  console.log(
    `ximssd bench — node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}), ulimit -n ${fdLimit ?? '?'}`,
  );
  console.log(
    `runs ${params.runs} × ${params.durationMs / 1000} s (after ${params.warmupMs / 1000} s warm-up); ` +
      `TCP ${params.connections} connections × ${params.window} in flight; ` +
      `HTTP ${params.httpSessions} sessions × batches of ${params.batch}; memory ${params.sessions} sessions\n`,
  );

  const echoRuns: PipelineResult[] = [];
  const tcpRuns: PipelineResult[] = [];
  const httpRuns: Extract<HttpBatchResult, { available: true }>[] = [];
  let httpUnavailable: string | undefined;
  let memory: MemoryResult | undefined;
  let mail: MailResult | undefined;
  let smtp: SmtpResult | undefined;
  let attack: AttackResult | undefined;
  let webdav: WebdavResult | undefined;
  let carddav: CarddavResult | undefined;
  let calendar: CalendarResult | undefined;
  let speller: SpellerResult | undefined;
  let xmpp: XmppResult | undefined;
  let sip: SipResult | undefined;
  let media: MediaResult | undefined;
  let rayo: RayoResult | undefined;
  let smime: SmimeResult | undefined;

  if (only.has('echo') || only.has('tcp') || only.has('http')) {
    const echo = spawnChild(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'echo-server.ts')], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const ximssd = only.has('tcp') || only.has('http') ? await startXimssd({ cpuProfileDir: profileDir }) : undefined;
    try {
      const echoPort = Number((await echo.waitFor(/ECHO PORT (\d+)/))[1]);
      const load = { connections: params.connections, window: params.window, warmupMs: params.warmupMs, durationMs: params.durationMs };
      for (let run = 1; run <= params.runs; run++) {
        const tag = `[run ${run}/${params.runs}]`;
        const e = await pipelinedNoops({ ...load, port: echoPort, serverPid: echo.pid });
        echoRuns.push(e);
        console.log(`${tag} echo ceiling          ${fmt(e.rate).padStart(10)} msg/s   server CPU ${pct(e.serverCpu)} (${cpuPer(e.serverCpu, e.rate)}/msg), generator CPU ${pct(e.clientCpu)}, other CPU ${pct(e.otherCpu)}, errors ${e.errors}`);
        if (ximssd && only.has('tcp')) {
          const t = await pipelinedNoops({ ...load, port: ximssd.ports.ximss, serverPid: ximssd.pid, login: { user: USER, password: PASSWORD } });
          tcpRuns.push(t);
          console.log(`${tag} ximssd TCP pipelined  ${fmt(t.rate).padStart(10)} req/s   server CPU ${pct(t.serverCpu)} (${cpuPer(t.serverCpu, t.rate)}/req), generator CPU ${pct(t.clientCpu)}, other CPU ${pct(t.otherCpu)}, errors ${t.errors}, ratio ${fmt(t.rate / e.rate, 2)}`);
        }
        if (ximssd && only.has('http') && httpUnavailable === undefined) {
          const h = await httpSyncBatches({
            port: ximssd.ports.http,
            sessions: params.httpSessions,
            batch: params.batch,
            warmupMs: params.warmupMs,
            durationMs: params.durationMs,
            user: USER,
            password: PASSWORD,
            serverPid: ximssd.pid,
          });
          if (!h.available) {
            httpUnavailable = h.reason;
            console.log(`${tag} HTTP binding not available (${h.reason})`);
          } else {
            httpRuns.push(h);
            console.log(
              `${tag} ximssd HTTP sync      ${fmt(h.rate).padStart(10)} noop/s  (${fmt(h.requestRate)} POST/s) server CPU ${pct(h.serverCpu)} (${cpuPer(h.serverCpu, h.rate)}/noop), generator CPU ${pct(h.clientCpu)}, other CPU ${pct(h.otherCpu)}, errors ${h.errors}, ratio ${fmt(h.rate / e.rate, 2)}`,
            );
          }
        }
      }
    } finally {
      await echo.stop();
      await ximssd?.stop();
    }
  }

  if (only.has('memory')) {
    console.log(`\nmemory: ${params.sessions} idle logged-in TCP sessions (≤ ${params.loginConcurrency} logins in flight)…`);
    memory = await sessionMemory({
      sessions: params.sessions,
      concurrency: params.loginConcurrency,
      settleMs: params.settleMs,
      cpuProfileDir: profileDir,
    });
    if (!memory.available) console.log(`memory figure not measured: ${memory.reason}`);
    else {
      console.log(
        `RSS ${fmt(memory.rssBeforeKb)} KB → ${fmt(memory.rssAfterKb)} KB: ${fmt(memory.rssPerSessionKb, 1)} KB per session; ` +
          `JS heap after GC ${fmt(memory.heapPerSessionKb, 1)} KB per session; ` +
          `${fmt(memory.loginsPerSecond)} logins/s (${fmt(memory.loginSeconds, 1)} s)`,
      );
    }
  }

  // The run's PostgreSQL server (durable), for the engine and the cluster section: started once, stopped at the end.
  let postgres: BenchPostgres | undefined;
  let postgresReason: string | undefined;
  const wantsPostgres = ((only.has('mail') || only.has('smtp')) && params.engines.includes('postgres')) || only.has('cluster');
  if (wantsPostgres) {
    const pg = await startBenchPostgres();
    if (pg.available) {
      postgres = pg.server;
      console.log(`\n${postgres.description}, for the whole run`);
    } else {
      postgresReason = pg.reason;
      console.log(`\nPostgreSQL cannot be started: ${pg.reason}\n  → ximssd runs on SQLite only; the cluster section is skipped`);
    }
  }
  const engines = params.engines.filter((e) => e !== 'postgres' || postgres !== undefined);
  const engineNames = engines.map((e) => ENGINE_LABEL[e]).join(', ');
  let cluster: ClusterResult | undefined;

  try {
    if (only.has('mail')) {
      console.log(`\nmail: ximssd (${engineNames}) against Dovecot on this machine (loopback, all warm, the same generated messages)`);
      mail = await mailBench({
        connections: params.mailConnections,
        window: params.mailWindow,
        appendCount: params.mailAppend,
        appendWarmup: params.mailAppendWarmup,
        appendRuns: params.runs,
        bigCount: params.mailCount,
        iterations: params.mailIterations,
        repopulate: flags['mail-repopulate'] === true,
        cacheDir: join(RESULTS, 'cache'),
        engines,
        postgres,
        cpuProfileDir: profileDir,
        log: (line) => console.log(line),
      });
      for (const line of mailSideBySide(mail)) console.log(line);
    }

    if (only.has('smtp')) {
      console.log(`\nsmtp: delivery into local mailboxes, ximssd (${engineNames}) over SMTP against Dovecot over LMTP (loopback, the same generated messages)`);
      smtp = await smtpBench({
        senders: params.smtpSenders,
        count: params.smtpCount,
        warmup: params.smtpWarmup,
        runs: params.runs,
        engines,
        postgres,
        cpuProfileDir: profileDir,
        log: (line) => console.log(line),
      });
      for (const line of smtpSideBySide(smtp)) console.log(line);
    }

    if (only.has('cluster')) {
      console.log(`\ncluster: two ximssd nodes on one PostgreSQL database`);
      if (!postgres) {
        cluster = { available: false, reason: `PostgreSQL cannot be started: ${postgresReason ?? '?'}` };
        console.log(`cluster section not measured: ${cluster.reason}`);
      } else {
        cluster = await clusterBench({
          postgres,
          samples: params.clusterSamples,
          connections: params.mailConnections,
          window: params.mailWindow,
          appendCount: params.mailAppend,
          appendWarmup: params.mailAppendWarmup,
          runs: params.runs,
          cpuProfileDir: profileDir,
          log: (line) => console.log(line),
        });
        if (!cluster.available) console.log(`cluster section not measured: ${cluster.reason}`);
      }
    }
  } finally {
    await postgres?.stop();
  }

  if (only.has('attack')) {
    console.log(
      `\nattack: the noop round trip of a well-behaved client, alone and while (a) pre-login clients flood hostile messages, ` +
        `(b) a client runs folderSearch over ${fmt(params.mailCount)} messages, (c) ${fmt(params.attackIdle)} idle connections sit open`,
    );
    attack = await attackBench({
      durationMs: params.durationMs,
      warmupMs: params.warmupMs,
      flooders: params.attackFlooders,
      idleConnections: params.attackIdle,
      idleAddresses: params.attackAddresses,
      mailCount: params.mailCount,
      populateConnections: params.mailConnections,
      cacheDir: join(RESULTS, 'cache'),
      scenarios: flags['attack-scenarios'] === undefined ? undefined : new Set(flags['attack-scenarios'].split(',').map((s) => s.trim())),
      cpuProfileDir: profileDir,
      log: (line) => console.log(line),
    });
    if (!attack.available) console.log(`attack section not measured: ${attack.reason}`);
  }

  if (only.has('webdav')) {
    const mb = fmt(params.webdavBytes / 1024 / 1024);
    console.log(`\nwebdav: ximssd beside Apache mod_dav on the same data: PROPFIND depth 1 of ${fmt(params.webdavFiles)} files, GET of ${mb} MB`);
    webdav = await webdavBench({ files: params.webdavFiles, bigBytes: params.webdavBytes, propfindRuns: quick ? 5 : 20, getRuns: quick ? 3 : 7, cpuProfileDir: profileDir });
    if (!webdav.available) console.log(`webdav section not measured: ${webdav.reason}`);
    else if (!webdav.apache) console.log(`Apache mod_dav not measured: ${webdav.apacheReason}`);
  }

  if (only.has('carddav')) {
    console.log(`\ncarddav: ximssd beside Radicale: ${fmt(params.carddavCards)} cards PUT, then one addressbook-multiget of all of them`);
    carddav = await carddavBench({ cards: params.carddavCards, runs: quick ? 5 : 15, ...(profileDir ? { cpuProfileDir: profileDir } : {}) });
    if (!carddav.available) console.log(`carddav section not measured: ${carddav.reason}`);
    else if (!carddav.radicale) console.log(`Radicale not measured: ${carddav.radicaleReason}`);
  }

  if (only.has('calendar')) {
    console.log(`\ncalendar: ximssd beside Radicale: a month view (findEvents, 31 days) of ${fmt(params.calendarItems)} items, and the same range as a CalDAV calendar-query`);
    calendar = await calendarBench({ items: params.calendarItems, runs: quick ? 3 : 7, ...(profileDir ? { cpuProfileDir: profileDir } : {}) });
    if (!calendar.available) console.log(`calendar section not measured: ${calendar.reason}`);
    else if (!calendar.radicale) console.log(`Radicale not measured: ${calendar.radicaleReason}`);
  }

  if (only.has('speller')) {
    console.log(`\nspeller: ximssd spellerCheck beside hunspell -a: ${fmt(params.spellerWords)} English words, every ${params.spellerEvery}th misspelt`);
    speller = await spellerBench({ words: params.spellerWords, every: params.spellerEvery, runs: quick ? 2 : 5, ...(profileDir ? { cpuProfileDir: profileDir } : {}) });
    if (!speller.available) console.log(`speller section not measured: ${speller.reason}`);
    else if (!speller.hunspell) console.log(`hunspell not measured: ${speller.hunspellReason}`);
  }

  if (only.has('smime')) {
    console.log(`\nsmime: sign+encrypt (and decrypt+verify) of a ${fmt(params.smimeBytes / 1024 / 1024)} MB message, ximssd's code beside Debian's openssl smime`);
    smime = await smimeBench({ bytes: params.smimeBytes, runs: quick ? 3 : 7 });
    if (!smime.available) console.log(`smime section not measured: ${smime.reason}`);
  }

  if (only.has('xmpp')) {
    console.log(
      `\nxmpp: ximssd beside Prosody, the same accounts and load client (STARTTLS, ${params.xmppMechanism}, bind, initial presence): ` +
        `routing ${fmt(params.xmppPairs)} pairs × ${fmt(params.xmppMessages)} messages, ${fmt(params.xmppLogins)} logins, ${fmt(params.xmppConnections)} idle connections`,
    );
    xmpp = await xmppBench({
      pairs: params.xmppPairs,
      messages: params.xmppMessages,
      logins: params.xmppLogins,
      loginConcurrency: params.xmppLoginConcurrency,
      connections: params.xmppConnections,
      connectConcurrency: params.loginConcurrency,
      mechanism: params.xmppMechanism,
      settleMs: params.settleMs,
      ...(profileDir ? { cpuProfileDir: profileDir } : {}),
      log: (line) => console.log(line),
    });
    if (!xmpp.ximssd.available) console.log(`ximssd not measured: ${xmpp.ximssd.reason}`);
    if (!xmpp.prosody.available) console.log(`Prosody not measured: ${xmpp.prosody.reason}`);
  }

  if (only.has('sip')) {
    console.log(`\nsip: call setup rate beside Kamailio: SIPp client → server → registered SIPp server, ${params.sipHoldMs} ms calls, trials of ${params.sipTrialSeconds} s, < 1% failed`);
    const o = { trialSeconds: params.sipTrialSeconds, holdMs: params.sipHoldMs, startRate: params.sipStartRate, maxRate: params.sipMaxRate, kamailioChildren: params.kamailioChildren };
    sip = await sipBench({ ...o, log: (line) => console.log(line) });
  }

  if (only.has('media')) {
    console.log(`\nmedia: concurrent G.711 calls relayed by the server (20 ms packets both ways, windows of ${params.mediaWindowSeconds} s), < 1% loss and < 5 ms added jitter`);
    media = await mediaBench({ startCalls: params.mediaStartCalls, maxCalls: params.mediaMaxCalls, setupRate: 100, windowSeconds: params.mediaWindowSeconds, kamailioChildren: params.kamailioChildren, log: (line) => console.log(line) });
  }

  if (only.has('rayo')) {
    console.log(`\nrayo: concurrent SIP calls (SIPp, RTP) answered by a Rayo client, each playing a ${params.rayoPromptMs} ms WAV prompt and collecting 4 RFC 4733 digits, again and again for ${params.rayoWindowSeconds} s; < 1% late frames; command latency = prompt iq → first prompt RTP packet`);
    rayo = await rayoBench({ startCalls: params.rayoStartCalls, maxCalls: params.rayoMaxCalls, setupRate: params.rayoSetupRate, promptMs: params.rayoPromptMs, spreadMs: 1000, windowSeconds: params.rayoWindowSeconds, nice: params.rayoNice, cpuProfileDir: profileDir, digitDelayMs: params.rayoPromptMs + 200, log: (line) => console.log(line) });
  }

  // --- The table ---
  const figures: Figure[] = [];
  const ceiling = echoRuns.length ? median(echoRuns.map((r) => r.rate)) : undefined;
  const cpuFigure = (name: string, runs: { rate: number; serverCpu: number | undefined }[]): void => {
    const per = runs.filter((r) => r.serverCpu !== undefined && r.rate > 0).map((r) => (r.serverCpu! / r.rate) * 1e6);
    if (per.length) figures.push({ name, value: median(per), unit: 'µs', target: '-', ratio: null });
  };
  if (ceiling !== undefined) {
    figures.push({ name: 'echo ceiling (raw Node, TCP pipelined)', value: ceiling, unit: 'msg/s', target: '-', ratio: 1 });
    cpuFigure('  echo server CPU per message', echoRuns);
  }
  const ratioTo = (v: number): number | null => (ceiling ? v / ceiling : null);
  if (tcpRuns.length) {
    const v = median(tcpRuns.map((r) => r.rate));
    figures.push({ name: 'ximssd TCP pipelined noop', value: v, unit: 'req/s', target: '≥ 0.4 × ceiling', ratio: ratioTo(v) });
    cpuFigure('  ximssd CPU per TCP noop', tcpRuns);
  }
  if (only.has('http')) {
    if (httpRuns.length) {
      const v = median(httpRuns.map((r) => r.rate));
      figures.push({ name: `ximssd HTTP sync, batches of ${params.batch}`, value: v, unit: 'noop/s', target: '-', ratio: ratioTo(v) });
      cpuFigure('  ximssd CPU per HTTP noop', httpRuns);
    } else {
      figures.push({ name: `ximssd HTTP sync, batches of ${params.batch}`, value: null, unit: 'noop/s', target: '-', ratio: null, note: `HTTP binding not available (${httpUnavailable ?? 'not measured'})` });
    }
  }
  if (memory) {
    const name = `RSS per idle TCP session (${params.sessions})`;
    if (memory.available) {
      figures.push({ name, value: memory.rssPerSessionKb, unit: 'KB', target: '≤ 30 KB', ratio: memory.rssPerSessionKb / 30 });
      figures.push({ name: 'JS heap per idle session, after GC', value: memory.heapPerSessionKb, unit: 'KB', target: '-', ratio: null });
      figures.push({ name: 'TCP logins (cached password)', value: memory.loginsPerSecond, unit: 'login/s', target: '-', ratio: null });
    } else figures.push({ name, value: null, unit: 'KB', target: '≤ 30 KB', ratio: null, note: memory.reason });
  }

  if (mail) {
    const k = `${params.mailConnections} conn × ${params.mailWindow}`;
    const dovecotReason = mail.dovecot.available ? undefined : mail.dovecot.reason;
    const d = rateOf(mail.append.dovecot);
    const dc = cpuOf(mail.append.dovecot);
    for (const e of mail.engines) {
      const x = rateOf(mail.append[e]);
      figures.push({
        name: `${ENGINE_LABEL[e]} messageAppend (${k})`,
        value: x,
        unit: 'msg/s',
        target: '≥ 1 × Dovecot',
        ratio: x !== null && d !== null ? x / d : null,
        note: mail.appendUnavailable[e],
      });
    }
    figures.push({ name: `Dovecot IMAP APPEND (${k})`, value: d, unit: 'msg/s', target: '-', ratio: null, note: dovecotReason ?? mail.appendUnavailable.dovecot });
    for (const e of mail.engines) {
      const xc = cpuOf(mail.append[e]);
      const name = e === 'postgres' ? `  ${ENGINE_LABEL[e]} CPU per append (ximssd + PostgreSQL)` : `  ${ENGINE_LABEL[e]} CPU per append`;
      if (xc !== null) figures.push({ name, value: xc, unit: 'µs', target: '-', ratio: dc !== null ? xc / dc : null });
    }
    if (dc !== null) figures.push({ name: '  Dovecot CPU per append (all processes)', value: dc, unit: 'µs', target: '-', ratio: null });
    const bd = mail.browse.dovecot;
    const count = fmt(mail.browse.count);
    for (const e of mail.engines) {
      const bx = mail.browse[e];
      figures.push({
        name: `${ENGINE_LABEL[e]} open+browse 50 of ${count}, median`,
        value: bx?.medianMs ?? null,
        unit: 'ms',
        target: e === 'sqlite' ? '≤ 1.5 × Dovecot' : '≤ 1 × Dovecot',
        ratio: bx && bd ? bx.medianMs / bd.medianMs : null,
        note: mail.browseUnavailable[e],
      });
      if (bx) figures.push({ name: `  ${ENGINE_LABEL[e]} open+browse p90`, value: bx.p90Ms, unit: 'ms', target: '-', ratio: bd ? bx.p90Ms / bd.p90Ms : null });
    }
    figures.push({
      name: `Dovecot SELECT+SORT+FETCH 50 of ${count}, median`,
      value: bd?.medianMs ?? null,
      unit: 'ms',
      target: '-',
      ratio: null,
      note: dovecotReason ?? mail.browseUnavailable.dovecot,
    });
    if (bd) figures.push({ name: '  Dovecot SELECT+SORT+FETCH p90', value: bd.p90Ms, unit: 'ms', target: '-', ratio: null });
  }

  if (smtp) {
    const k = `${smtp.senders} senders → ${smtp.senders} accounts`;
    const sides = smtpFigures(smtp);
    const d = sides.dovecot;
    for (const e of smtp.engines) {
      const x = sides[e];
      figures.push({
        name: `${ENGINE_LABEL[e]} SMTP delivery (${k})`,
        value: x.rate,
        unit: 'msg/s',
        target: '≥ 1 × Dovecot',
        ratio: x.rate !== null && d.rate !== null ? x.rate / d.rate : null,
        note: x.note,
      });
    }
    figures.push({ name: `Dovecot LMTP delivery (${k})`, value: d.rate, unit: 'msg/s', target: '-', ratio: null, note: d.note });
    for (const e of smtp.engines) {
      const x = sides[e];
      const name = e === 'postgres' ? `  ${ENGINE_LABEL[e]} CPU per SMTP message (ximssd + PostgreSQL)` : `  ${ENGINE_LABEL[e]} CPU per SMTP message`;
      if (x.cpu !== null) figures.push({ name, value: x.cpu, unit: 'µs', target: '-', ratio: d.cpu !== null ? x.cpu / d.cpu : null });
    }
    if (d.cpu !== null) figures.push({ name: '  Dovecot CPU per LMTP message (all processes)', value: d.cpu, unit: 'µs', target: '-', ratio: null });
  }

  if (cluster) {
    if (!cluster.available) {
      figures.push({ name: 'cluster: change latency across nodes', value: null, unit: 'ms', target: '-', ratio: null, note: cluster.reason });
    } else {
      const latencyRows = (what: string, cross: LatencyStats | undefined, local: LatencyStats | undefined): void => {
        if (!cross || !local) return;
        figures.push({ name: `cluster: ${what} on B → notify on A, median`, value: cross.medianMs, unit: 'ms', target: '-', ratio: cross.medianMs / local.medianMs });
        figures.push({ name: `  ${what} on B → notify on A, p99`, value: cross.p99Ms, unit: 'ms', target: '-', ratio: cross.p99Ms / local.p99Ms });
        figures.push({ name: `  ${what} on A → notify on A, median`, value: local.medianMs, unit: 'ms', target: '-', ratio: null });
        figures.push({ name: `  ${what} on A → notify on A, p99`, value: local.p99Ms, unit: 'ms', target: '-', ratio: null });
      };
      latencyRows('messageAppend', cluster.latency.append.cross, cluster.latency.append.local);
      latencyRows('messageMark', cluster.latency.flag.cross, cluster.latency.flag.local);
      const k = `${params.mailConnections} conn × ${params.mailWindow}`;
      for (const shape of ['mailbox', 'accounts'] as const) {
        const one = rateOf(cluster.throughput[shape].one);
        const two = rateOf(cluster.throughput[shape].two);
        const what = shape === 'mailbox' ? 'one mailbox' : `${params.mailConnections} accounts`;
        figures.push({ name: `cluster: append, ${what}, 2 nodes (${k})`, value: two, unit: 'msg/s', target: '-', ratio: one !== null && two !== null ? two / one : null });
        figures.push({ name: `  append, ${what}, 1 node (${k})`, value: one, unit: 'msg/s', target: '-', ratio: null });
        const c2 = cpuOf(cluster.throughput[shape].two);
        const c1 = cpuOf(cluster.throughput[shape].one);
        if (c2 !== null) figures.push({ name: `  CPU per append, ${what}, 2 nodes (nodes + PostgreSQL)`, value: c2, unit: 'µs', target: '-', ratio: c1 !== null ? c2 / c1 : null });
        if (c1 !== null) figures.push({ name: `  CPU per append, ${what}, 1 node (node + PostgreSQL)`, value: c1, unit: 'µs', target: '-', ratio: null });
      }
    }
  }

  if (attack) {
    const target = `≤ ${ATTACK_TARGET} × no attack`;
    if (!attack.available) {
      figures.push({ name: 'noop p99 under attack', value: null, unit: 'ms', target, ratio: null, note: attack.reason });
    } else {
      for (const s of attack.scenarios) {
        figures.push({
          name: s.key === 'idle' ? 'noop p99, no attack (1 client, 1 at a time)' : `noop p99, ${s.title.trim()}`,
          value: s.noop.p99Ms,
          unit: 'ms',
          target: s.key === 'idle' ? '-' : target,
          ratio: s.ratio,
        });
      }
      figures.push({ name: '  server peak RSS during the attacks', value: attack.rssPeakKb / 1024, unit: 'MB', target: '-', ratio: null });
    }
  }

  if (webdav) {
    const n = fmt(params.webdavFiles);
    const mb = fmt(params.webdavBytes / 1024 / 1024);
    if (!webdav.available) {
      figures.push({ name: `WebDAV PROPFIND depth 1, ${n} files`, value: null, unit: 'ms', target: '≤ 1 × Apache', ratio: null, note: webdav.reason });
    } else {
      const a = webdav.apache;
      const note = webdav.apacheReason;
      figures.push({ name: `ximssd WebDAV PROPFIND depth 1, ${n} files`, value: webdav.ximssd.propfindMs, unit: 'ms', target: '≤ 1 × Apache', ratio: a ? webdav.ximssd.propfindMs / a.propfindMs : null });
      figures.push({ name: `Apache mod_dav PROPFIND depth 1, ${n} files`, value: a?.propfindMs ?? null, unit: 'ms', target: '-', ratio: null, note });
      figures.push({ name: `ximssd WebDAV GET ${mb} MB`, value: webdav.ximssd.getMs, unit: 'ms', target: '≤ 1 × Apache', ratio: a ? webdav.ximssd.getMs / a.getMs : null });
      figures.push({ name: `Apache mod_dav GET ${mb} MB`, value: a?.getMs ?? null, unit: 'ms', target: '-', ratio: null, note });
      const growth = (webdav.rssPeakKb - webdav.rssBeforeKb) / 1024;
      figures.push({ name: `  ximssd RSS growth during the GET (from ${fmt(webdav.rssBeforeKb / 1024)} MB)`, value: growth, unit: 'MB', target: `≪ ${mb} MB`, ratio: growth / (params.webdavBytes / 1024 / 1024) });
    }
  }

  if (carddav) {
    const n = fmt(params.carddavCards);
    if (!carddav.available) {
      figures.push({ name: `CardDAV addressbook-multiget, ${n} cards`, value: null, unit: 'ms', target: '≤ 1 × Radicale', ratio: null, note: carddav.reason });
    } else {
      const r = carddav.radicale;
      const note = carddav.radicaleReason;
      figures.push({ name: `ximssd CardDAV addressbook-multiget, ${n} cards`, value: carddav.ximssd.ms, unit: 'ms', target: '≤ 1 × Radicale', ratio: r ? carddav.ximssd.ms / r.ms : null });
      figures.push({ name: `Radicale addressbook-multiget, ${n} cards`, value: r?.ms ?? null, unit: 'ms', target: '-', ratio: null, note });
      figures.push({ name: `ximssd CardDAV PUT of ${n} cards (one by one)`, value: carddav.ximssdPutMs, unit: 'ms', target: '-', ratio: carddav.radicalePutMs ? carddav.ximssdPutMs / carddav.radicalePutMs : null });
      figures.push({ name: `Radicale PUT of ${n} cards (one by one)`, value: carddav.radicalePutMs ?? null, unit: 'ms', target: '-', ratio: null, note });
    }
  }

  if (calendar) calendarFigures(calendar, figures);
  if (speller) spellerFigures(speller, figures);
  if (xmpp) {
    figures.push(
      ...xmppFigures(xmpp, {
        pairs: params.xmppPairs,
        messages: params.xmppMessages,
        logins: params.xmppLogins,
        loginConcurrency: params.xmppLoginConcurrency,
        connections: params.xmppConnections,
        mechanism: params.xmppMechanism,
      }),
    );
  }

  if (sip) figures.push(...sipFigures(sip, { holdMs: params.sipHoldMs, kamailioChildren: params.kamailioChildren }));
  if (media) figures.push(...mediaFigures(media));
  if (rayo) figures.push(...rayoFigures(rayo));
  if (smime) figures.push(...smimeFigures(smime, params.smimeBytes));

  const elapsed = (performance.now() - began) / 1000;
  const rows = figures.map((f) => [
    f.name,
    f.value === null ? 'n/a' : fmt(f.value, f.value < 10 ? 2 : f.value < 100 ? 1 : 0),
    f.unit,
    f.target,
    f.ratio === null ? '' : fmt(f.ratio, 2),
  ]);
  const header = ['name', 'value', 'unit', 'target', 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 1 || i === 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  console.log('\n' + line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log(
    'ratio: throughput ÷ echo ceiling (same load generator); memory ÷ its target (≤ 1 meets it)' +
      (mail ? '; mail: ximssd ÷ Dovecot, on each engine (appends: ≥ 1 meets it; browse: ≤ 1.5 on SQLite, ≤ 1 on PostgreSQL meets it)' : '') +
      (smtp ? '; smtp: ximssd ÷ Dovecot, on each engine (≥ 1 meets it)' : '') +
      (cluster?.available ? '; cluster: latency across nodes ÷ within one node, throughput 2 nodes ÷ 1 node (CPU: 2 ÷ 1)' : '') +
      (attack?.available ? `; attack: p99 ÷ the no-attack p99 (≤ ${ATTACK_TARGET} meets it)` : '') +
      (webdav?.available ? '; webdav: ximssd ÷ Apache mod_dav (≤ 1 meets it), RSS growth ÷ the file size' : '') +
      (calendar?.available ? '; calendar: ximssd ÷ Radicale (≤ 1 meets it)' : '') +
      (speller?.available ? '; speller: ximssd words/s ÷ hunspell words/s (≥ 1 meets it)' : '') +
      (xmpp ? '; xmpp: ximssd ÷ Prosody (rates: ≥ 1 meets it; memory: ≤ 1 meets it)' : '') +
      (sip ? '; sip: ximssd ÷ Kamailio (≥ 0.5 meets it)' : '') +
      (media ? '; media: ximssd ÷ the Asterisk constant (≥ 1 meets it)' : '') +
      (rayo ? `; rayo: calls ÷ the target of 100 on one core (≥ 1 meets it)` : '') +
      (smime?.available ? '; smime: ximssd ÷ openssl smime (≤ 1 meets it)' : '') +
      '.',
  );
  for (const f of figures) if (f.value === null) console.log(`n/a: ${f.name.trim()}: ${f.note ?? 'not measured'}`);
  const otherMax = Math.max(
    0,
    ...[...echoRuns, ...tcpRuns, ...httpRuns].map((r) => r.otherCpu),
    ...(mail ? Object.values(mail.append).flat().map((r) => r.otherCpu) : []),
    ...(smtp ? Object.values(smtp.runs).flat().map((r) => r.otherCpu) : []),
    mail?.browse.sqlite?.otherCpu ?? 0,
    mail?.browse.postgres?.otherCpu ?? 0,
    mail?.browse.dovecot?.otherCpu ?? 0,
    ...(cluster?.available ? [cluster.latencyOtherCpu, ...Object.values(cluster.throughput).flatMap((t) => [...t.one, ...t.two]).map((r) => r.otherCpu)] : []),
    ...(attack?.available ? attack.scenarios.map((s) => s.otherCpu) : []),
  );
  if (otherMax > 0.2) {
    console.log(
      `note: other processes used up to ${pct(otherMax)} of a core during the measurements; the rates are disturbed ` +
        `(the CPU-per-message figures less so).`,
    );
  }
  console.log(`bench took ${fmt(elapsed, 1)} s`);
  if (profileDir) console.log(`server CPU profiles: ${profileDir} (summarise with: node --import tsx bench/profile-summary.ts FILE)`);

  mkdirSync(RESULTS, { recursive: true });
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    params,
    seconds: Math.round(elapsed * 10) / 10,
    figures,
    runs: { echo: echoRuns, tcp: tcpRuns, http: httpRuns },
    httpUnavailable: httpUnavailable ?? null,
    memory: memory ?? null,
    mail: mail ?? null,
    smtp: smtp ?? null,
    cluster: cluster ?? null,
    attack: attack ?? null,
    webdav: webdav ?? null,
    calendar: calendar ?? null,
    speller: speller ?? null,
    xmpp: xmpp ?? null,
    sip: sip ?? null,
    media: media ?? null,
    rayo: rayo ?? null,
    smime: smime ?? null,
  };
  writeFileSync(join(RESULTS, 'latest.json'), JSON.stringify(json, null, 2) + '\n');
  console.log(`figures written to ${join('bench', 'results', 'latest.json')}`);
}

/** The speller area's rows: words per second of each checker on the same text, ximssd ÷ hunspell. */
function spellerFigures(speller: SpellerResult, figures: Figure[]): void {
  if (!speller.available) {
    figures.push({ name: 'speller check', value: null, unit: 'words/s', target: '≥ 1 × hunspell', ratio: null, note: speller.reason });
    return;
  }
  const h = speller.hunspell;
  const what = `${fmt(speller.words)} words, ${fmt(speller.misspelt)} misspelt`;
  figures.push({ name: `ximssd spellerCheck (XIMSS), ${what}`, value: speller.ximssd.wordsPerSecond, unit: 'words/s', target: '≥ 1 × hunspell', ratio: h ? speller.ximssd.wordsPerSecond / h.wordsPerSecond : null });
  figures.push({ name: `hunspell -a (${h?.version ?? 'Debian'}), same text`, value: h?.wordsPerSecond ?? null, unit: 'words/s', target: '-', ratio: null, note: speller.hunspellReason });
  figures.push({ name: `  ximssd: misspelled reported (with guesses)`, value: speller.ximssd.misspelled, unit: `(${fmt(speller.ximssd.withGuesses)})`, target: '-', ratio: null });
  if (h) figures.push({ name: `  hunspell: misspelled reported (with guesses)`, value: h.misspelled, unit: `(${fmt(h.withGuesses)})`, target: '-', ratio: null });
}

/** The S/MIME area's rows: ximssd's times ÷ openssl's. */
function smimeFigures(smime: SmimeResult, bytes: number): Figure[] {
  const mb = fmt(bytes / 1024 / 1024);
  if (!smime.available) return [{ name: `S/MIME sign+encrypt, ${mb} MB`, value: null, unit: 'ms', target: '≤ 1 × openssl', ratio: null, note: smime.reason }];
  return [
    { name: `ximssd S/MIME sign+encrypt, ${mb} MB, median`, value: smime.ximssd.signEncryptMs, unit: 'ms', target: '≤ 1 × openssl', ratio: smime.ximssd.signEncryptMs / smime.openssl.signEncryptMs },
    { name: `openssl smime -sign, -encrypt, ${mb} MB, median`, value: smime.openssl.signEncryptMs, unit: 'ms', target: '-', ratio: null },
    { name: `  ximssd S/MIME decrypt+verify, ${mb} MB, median`, value: smime.ximssd.decryptVerifyMs, unit: 'ms', target: '≤ 1 × openssl', ratio: smime.ximssd.decryptVerifyMs / smime.openssl.decryptVerifyMs },
    { name: `  openssl smime -decrypt, -verify, ${mb} MB, median`, value: smime.openssl.decryptVerifyMs, unit: 'ms', target: '-', ratio: null },
  ];
}

/** The calendar area's rows: each answer's time, ÷ Radicale's; a wrong answer is no figure. */
function calendarFigures(calendar: CalendarResult, figures: Figure[]): void {
  const target = '≤ 1 × Radicale';
  const what = calendar.available ? `${fmt(calendar.items)} items (${fmt(calendar.recurring)} recurring)` : '';
  if (!calendar.available) {
    figures.push({ name: 'calendar month view', value: null, unit: 'ms', target, ratio: null, note: calendar.reason });
    return;
  }
  const radicale = calendar.radicale && calendar.radicale.query.wrong === undefined ? calendar.radicale.query.ms : null;
  const timed = (name: string, timing: { ms: number; wrong?: string } | { notMeasured: string }): void => {
    if ('notMeasured' in timing) figures.push({ name, value: null, unit: 'ms', target, ratio: null, note: `not measured: ${timing.notMeasured}` });
    else if (timing.wrong !== undefined) figures.push({ name, value: null, unit: 'ms', target, ratio: null, note: `wrong answer: ${timing.wrong}` });
    else figures.push({ name, value: timing.ms, unit: 'ms', target, ratio: radicale !== null ? timing.ms / radicale : null });
  };
  timed(`ximssd findEvents, 31 days of ${what}, median`, calendar.ximssd.find);
  timed('ximssd CalDAV calendar-query, same range, median', calendar.ximssd.caldav);
  const r = calendar.radicale;
  figures.push({
    name: 'Radicale calendar-query, same range, median',
    value: radicale,
    unit: 'ms',
    target: '-',
    ratio: null,
    note: calendar.radicaleReason ?? (r?.query.wrong !== undefined ? `wrong answer: ${r.query.wrong}` : undefined),
  });
  figures.push({ name: `  ximssd calendarOpen + first findEvents`, value: calendar.ximssd.openMs + calendar.ximssd.firstMs, unit: 'ms', target: '-', ratio: null });
  if (r) figures.push({ name: '  Radicale first calendar-query', value: r.firstMs, unit: 'ms', target: '-', ratio: null });
  figures.push({ name: `  ximssd calendarPublish of ${fmt(calendar.items)} (4 sessions × 8)`, value: calendar.ximssd.loadMs / 1000, unit: 's', target: '-', ratio: null });
  figures.push({ name: '  ximssd calendarPublish, mean per item', value: calendar.ximssd.loadMs / calendar.items, unit: 'ms', target: '-', ratio: null });
  if (r) figures.push({ name: `  Radicale PUT into the full calendar (${r.putCount}, one by one)`, value: r.putMs, unit: 'ms', target: '-', ratio: null });
}

// Output piped into a reader that leaves early (| head): stop writing, let the children go.
process.stdout.on('error', () => {});
// Ctrl-C / kill: the children stop by themselves once this process is gone (stdin pipe,
// IPC channel), and finally blocks are skipped, so leave at once.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().catch((err: unknown) => {
  console.error('bench failed:', err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
