/**
 * ximssd benchmark suite (`npm run bench`). Prints figures, never asserts. Everything runs
 * on 127.0.0.1: the echo server and ximssd each in their own child process, the load
 * generator in this one. See bench/README.md for what each figure means.
 *
 * Options: --runs N (3)  --duration S (5)  --warmup S (1)  --connections K (4)
 *          --window W (1000)  --http-sessions N (4)  --batch B (100)  --sessions N (5000)
 *          --login-concurrency N (200)  --only echo,tcp,http,memory,mail,smtp  --quick  --profile
 *          mail: --mail-count N (100000)  --mail-append N (5000)  --mail-iterations N (20)
 *                --mail-connections K (= --connections)  --mail-window W (32)  --mail-repopulate
 *          smtp: --smtp-count N (4000)  --smtp-warmup N (500)  --smtp-senders K (16)
 *          attack: --attack-flooders K (8)  --attack-idle N (1000)  --attack-scenarios flood,search,idle
 *                  (--duration S per scenario, --mail-count N)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ATTACK_TARGET, attackBench, type AttackResult } from './lib/attack.js';
import { fmt, median } from './lib/figures.js';
import { httpSyncBatches, type HttpBatchResult } from './lib/http-load.js';
import { mailBench, type MailResult } from './lib/mail-bench.js';
import { sessionMemory, type MemoryResult } from './lib/memory.js';
import { smtpBench, type SmtpResult } from './lib/smtp-bench.js';
import { openFileLimit, spawnChild } from './lib/proc.js';
import { pipelinedNoops, type PipelineResult } from './lib/tcp-load.js';
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
};
params.mailConnections = num(flags['mail-connections'], params.connections);
const only = new Set((flags.only ?? 'echo,tcp,http,memory,mail,smtp,attack').split(',').map((s) => s.trim()));
if (only.has('tcp') || only.has('http')) only.add('echo'); // the ratios need the ceiling
const RESULTS = join(ROOT, 'bench', 'results');
const profileDir = flags.profile ? join(RESULTS, 'profiles') : undefined;

const pct = (n: number | undefined): string => (n === undefined ? '?' : `${Math.round(n * 100)}%`);
/** Server CPU time per message, in microseconds: independent of how fast the generator is. */
const cpuPer = (serverCpu: number | undefined, rate: number): string =>
  serverCpu === undefined || rate === 0 ? '?' : `${fmt((serverCpu / rate) * 1e6, 2)} µs`;

interface Figure {
  name: string;
  value: number | null;
  unit: string;
  target: string;
  /** Throughput: value / echo ceiling. Memory: value / target. */
  ratio: number | null;
  note?: string;
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

  if (only.has('mail')) {
    console.log(`\nmail: ximssd against Dovecot on this machine (loopback, both warm, the same generated messages)`);
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
      cpuProfileDir: profileDir,
      log: (line) => console.log(line),
    });
  }

  if (only.has('smtp')) {
    console.log(`\nsmtp: delivery into local mailboxes, ximssd over SMTP against Dovecot over LMTP (loopback, the same generated messages)`);
    smtp = await smtpBench({
      senders: params.smtpSenders,
      count: params.smtpCount,
      warmup: params.smtpWarmup,
      runs: params.runs,
      cpuProfileDir: profileDir,
      log: (line) => console.log(line),
    });
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
    const medianOf = (runs: { rate: number }[]): number | null => (runs.length ? median(runs.map((r) => r.rate)) : null);
    const cpuOf = (runs: { cpuPerMessage: number | undefined }[]): number | null => {
      const list = runs.flatMap((r) => (r.cpuPerMessage === undefined ? [] : [r.cpuPerMessage * 1e6]));
      return list.length ? median(list) : null;
    };
    const dovecotReason = mail.dovecot.available ? undefined : mail.dovecot.reason;
    const x = medianOf(mail.append.ximssd);
    const d = medianOf(mail.append.dovecot);
    const k = `${params.mailConnections} conn × ${params.mailWindow}`;
    figures.push({
      name: `ximssd messageAppend (${k})`,
      value: x,
      unit: 'msg/s',
      target: '≥ 1 × Dovecot',
      ratio: x !== null && d !== null ? x / d : null,
      note: mail.ximssdAppendUnavailable,
    });
    figures.push({ name: `Dovecot IMAP APPEND (${k})`, value: d, unit: 'msg/s', target: '-', ratio: null, note: dovecotReason });
    const xc = cpuOf(mail.append.ximssd);
    const dc = cpuOf(mail.append.dovecot);
    if (xc !== null) figures.push({ name: '  ximssd CPU per append', value: xc, unit: 'µs', target: '-', ratio: dc !== null ? xc / dc : null });
    if (dc !== null) figures.push({ name: '  Dovecot CPU per append (all processes)', value: dc, unit: 'µs', target: '-', ratio: null });
    const bx = mail.browse.ximssd;
    const bd = mail.browse.dovecot;
    const count = fmt(mail.browse.count);
    figures.push({
      name: `ximssd open+browse 50 of ${count}, median`,
      value: bx?.medianMs ?? null,
      unit: 'ms',
      target: '≤ 1.5 × Dovecot',
      ratio: bx && bd ? bx.medianMs / bd.medianMs : null,
      note: mail.ximssdBrowseUnavailable,
    });
    if (bx) figures.push({ name: '  ximssd open+browse p90', value: bx.p90Ms, unit: 'ms', target: '-', ratio: bd ? bx.p90Ms / bd.p90Ms : null });
    figures.push({
      name: `Dovecot SELECT+SORT+FETCH 50 of ${count}, median`,
      value: bd?.medianMs ?? null,
      unit: 'ms',
      target: '-',
      ratio: null,
      note: dovecotReason ?? mail.dovecotBrowseUnavailable,
    });
    if (bd) figures.push({ name: '  Dovecot SELECT+SORT+FETCH p90', value: bd.p90Ms, unit: 'ms', target: '-', ratio: null });
  }

  if (smtp) {
    const k = `${smtp.senders} senders → ${smtp.senders} accounts`;
    // A side whose INBOXes do not hold what was accepted gets no figure.
    const unverified = (v: SmtpResult['verify']['ximssd']): string | undefined =>
      v === undefined ? 'not verified' : v.ok ? undefined : `delivery check failed: ${v.text}`;
    const side = (runs: SmtpResult['runs']['ximssd'], unavailable: string | undefined, v: SmtpResult['verify']['ximssd']) => {
      const note = unavailable ?? (runs.length ? unverified(v) : 'not measured');
      const ok = runs.length > 0 && note === undefined;
      const cpu = runs.flatMap((r) => (r.cpuPerMessage === undefined ? [] : [r.cpuPerMessage * 1e6]));
      return {
        rate: ok ? median(runs.map((r) => r.rate)) : null,
        cpu: ok && cpu.length ? median(cpu) : null,
        note,
      };
    };
    const x = side(smtp.runs.ximssd, smtp.ximssdUnavailable, smtp.verify.ximssd);
    const d = smtp.dovecot.available
      ? side(smtp.runs.dovecot, smtp.dovecotUnavailable, smtp.verify.dovecot)
      : { rate: null, cpu: null, note: smtp.dovecot.reason };
    figures.push({
      name: `ximssd SMTP delivery (${k})`,
      value: x.rate,
      unit: 'msg/s',
      target: '≥ 1 × Dovecot',
      ratio: x.rate !== null && d.rate !== null ? x.rate / d.rate : null,
      note: x.note,
    });
    figures.push({ name: `Dovecot LMTP delivery (${k})`, value: d.rate, unit: 'msg/s', target: '-', ratio: null, note: d.note });
    if (x.cpu !== null) figures.push({ name: '  ximssd CPU per SMTP message', value: x.cpu, unit: 'µs', target: '-', ratio: d.cpu !== null ? x.cpu / d.cpu : null });
    if (d.cpu !== null) figures.push({ name: '  Dovecot CPU per LMTP message (all processes)', value: d.cpu, unit: 'µs', target: '-', ratio: null });
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
      (mail ? '; mail: ximssd ÷ Dovecot (appends: ≥ 1 meets it; browse: ≤ 1.5 meets it)' : '') +
      (smtp ? '; smtp: ximssd ÷ Dovecot (≥ 1 meets it)' : '') +
      (attack?.available ? `; attack: p99 ÷ the no-attack p99 (≤ ${ATTACK_TARGET} meets it).` : '.'),
  );
  for (const f of figures) if (f.value === null) console.log(`n/a: ${f.name.trim()}: ${f.note ?? 'not measured'}`);
  const otherMax = Math.max(
    0,
    ...[...echoRuns, ...tcpRuns, ...httpRuns].map((r) => r.otherCpu),
    ...(mail ? [...mail.append.ximssd, ...mail.append.dovecot].map((r) => r.otherCpu) : []),
    ...(smtp ? [...smtp.runs.ximssd, ...smtp.runs.dovecot].map((r) => r.otherCpu) : []),
    mail?.browse.ximssd?.otherCpu ?? 0,
    mail?.browse.dovecot?.otherCpu ?? 0,
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
    attack: attack ?? null,
  };
  writeFileSync(join(RESULTS, 'latest.json'), JSON.stringify(json, null, 2) + '\n');
  console.log(`figures written to ${join('bench', 'results', 'latest.json')}`);
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
