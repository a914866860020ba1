/**
 * The attack section of the bench: how long a well-behaved client waits while hostile or
 * greedy clients load the server. One ximssd child with its default limits (only
 * sessionsPerAccount raised, as everywhere in the bench), on the cached data directory of
 * the mail section's big mailbox (100,000 messages; 10,000 with --quick).
 *
 * The well-behaved client: one logged-in TCP connection sending `<noop id="N"/>`, the next
 * one as soon as the answer came, for a fixed time; every round trip is recorded. It runs
 * once with nothing else going on (the baseline), then during each scenario:
 *   flood     pre-login attackers sending maximal hostile messages (bench/prelogin-flood.ts,
 *             in its own process), reconnecting whenever they are cut;
 *   search    a logged-in client running folderSearch with a BODY criterion that matches
 *             nothing over the big mailbox, back to back;
 *   idle-20   1,000 idle connections (never a byte sent) from 20 loopback addresses, 50 each;
 *   idle-1    1,000 idle connections attempted from one address (most are refused).
 * For each: p50, p99, p99 ÷ the baseline's p99 (target ≤ 5), the server's peak VmRSS
 * (sampled every 100 ms) and the attack's own counters.
 */
import net from 'node:net';
import { join } from 'node:path';
import { fmt } from './figures.js';
import { ximssdBigMailbox } from './mail-bench.js';
import { cpuSeconds, ioBytes, meter, rssKb, sleep, spawnChild } from './proc.js';
import { connectXimss } from './tcp-load.js';
import { XimssClient, attr } from './ximss-client.js';
import { PASSWORD, ROOT, USER, startXimssd, type Ximssd } from './ximssd.js';
import type { FloodResult } from '../prelogin-flood.js';

export interface AttackOptions {
  /** Length of each measurement (the baseline and every scenario), ms. */
  durationMs: number;
  /** Untimed noops before the baseline, ms. */
  warmupMs: number;
  /** Pre-login attackers of the flood scenario. */
  flooders: number;
  /** Idle connections of the idle scenarios, and the addresses of the first one. */
  idleConnections: number;
  idleAddresses: number;
  /** Messages in the big mailbox (the mail section's cache). */
  mailCount: number;
  /** Connections used to populate the mailbox when it is not cached yet. */
  populateConnections: number;
  cacheDir: string;
  /** The scenarios to run after the baseline (all by default): flood, search, idle. */
  scenarios?: ReadonlySet<string>;
  cpuProfileDir?: string;
  log: (line: string) => void;
}

export interface RoundTrips {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Answers that were not `<response id="N"/>` (errors), and whether the connection was lost. */
  errors: number;
  lost: boolean;
}

export interface ScenarioResult {
  key: 'idle' | 'flood' | 'search' | 'idle-20' | 'idle-1';
  title: string;
  noop: RoundTrips;
  /** p99 ÷ the baseline's p99 (null for the baseline itself). */
  ratio: number | null;
  rssStartKb: number;
  rssPeakKb: number;
  /** Bytes the server read and wrote through system calls meanwhile (rchar, wchar: sockets and files). */
  serverReadBytes: number;
  serverWrittenBytes: number;
  /** Server CPU ÷ wall time (1 = a core), the bench process's, and everything else's (the flood process excluded). */
  serverCpu: number;
  clientCpu: number;
  otherCpu: number;
  /** The attack's own counters (set once the scenario is over). */
  counters: Record<string, unknown>;
}

export type AttackResult =
  | { available: false; reason: string }
  | {
      available: true;
      mailCount: number;
      mailboxCached: boolean;
      scenarios: ScenarioResult[];
      /** The scenario with the highest ratio. */
      worst: { key: string; p99Ms: number; ratio: number };
      rssPeakKb: number;
      /** First distinct error texts seen. */
      errors: string[];
    };

/** The ratio the issue asks for: p99 under attack ≤ 5 × the p99 without. */
export const ATTACK_TARGET = 5;
const SEARCH_FILTER = 'BODY zqxjkvw-nomatch-4711';
const SEARCH_TIMEOUT = 5;
const FLOOD_ADDRESS = '127.0.0.2';
const ONE_ADDRESS = '127.0.0.9';
const NESTED_BYTES = 10 * 1024 * 1024;
const FLAT_BYTES = 64 * 1024;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function summarise(samples: number[], errors: number, lost: boolean): RoundTrips {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  return {
    count: n,
    p50Ms: n ? percentile(sorted, 0.5) : NaN,
    p90Ms: n ? percentile(sorted, 0.9) : NaN,
    p99Ms: n ? percentile(sorted, 0.99) : NaN,
    maxMs: n ? sorted[n - 1]! : NaN,
    meanMs: n ? sorted.reduce((a, b) => a + b, 0) / n : NaN,
    errors,
    lost,
  };
}

/**
 * The well-behaved client: one logged-in connection, one `<noop/>` at a time, the next sent
 * from the handler of the previous answer. The round trip is taken when the chunk holding
 * the answer is read.
 */
class NoopProbe {
  private nextId = 0;
  private sentAt = 0;
  private text = '';
  private samples: number[] = [];
  private errors = 0;
  private deadline = 0;
  private finish: (() => void) | undefined;
  private lost = false;
  readonly texts: string[] = [];

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      this.lost = true;
      this.finish?.();
    });
  }

  async run(durationMs: number): Promise<RoundTrips> {
    this.samples = [];
    this.errors = 0;
    this.deadline = performance.now() + durationMs;
    const done = new Promise<void>((resolve) => (this.finish = resolve));
    if (!this.lost) this.send();
    await done;
    this.finish = undefined;
    return summarise(this.samples, this.errors, this.lost);
  }

  close(): void {
    this.socket.destroy();
  }

  private send(): void {
    this.nextId++;
    this.sentAt = performance.now();
    this.socket.write(`<noop id="${this.nextId}"/>\0`);
  }

  private onData(chunk: Buffer): void {
    const now = performance.now();
    this.text += chunk.toString('utf8');
    for (let zero = this.text.indexOf('\0'); zero >= 0; zero = this.text.indexOf('\0')) {
      const message = this.text.slice(0, zero);
      this.text = this.text.slice(zero + 1);
      if (!message.startsWith('<response')) continue; // an asynchronous message: not ours
      if (attr(message, 'id') !== String(this.nextId)) {
        this.errors++;
        if (this.texts.length < 5) this.texts.push(`unexpected noop answer: ${message.slice(0, 200)}`);
        continue;
      }
      this.samples.push(now - this.sentAt);
      if (message !== `<response id="${this.nextId}"/>`) {
        this.errors++;
        if (this.texts.length < 5) this.texts.push(`noop answered: ${message.slice(0, 200)}`);
      }
      if (now < this.deadline && this.finish) this.send();
      else this.finish?.();
    }
  }
}

/** Samples the server's VmRSS every 100 ms until stopped. */
function rssSampler(pid: number): () => { startKb: number; peakKb: number } {
  const startKb = rssKb(pid);
  let peakKb = startKb;
  const timer = setInterval(() => {
    try {
      peakKb = Math.max(peakKb, rssKb(pid));
    } catch {
      // the server is gone: the scenario will say so
    }
  }, 100);
  return () => {
    clearInterval(timer);
    try {
      peakKb = Math.max(peakKb, rssKb(pid));
    } catch {
      // as above
    }
    return { startKb, peakKb };
  };
}

// --- Idle connections ------------------------------------------------------------------

interface IdleSet {
  sockets: net.Socket[];
  /** Per socket: 'open', or why not (the server's refusal text, an error code, 'closed'). */
  state: string[];
}

/** Opens `perAddress` connections from each address (at most 100 connects in flight); sends nothing. */
async function openIdle(port: number, addresses: string[], perAddress: number): Promise<IdleSet> {
  const set: IdleSet = { sockets: [], state: [] };
  const jobs: string[] = [];
  for (const address of addresses) for (let i = 0; i < perAddress; i++) jobs.push(address);
  let next = 0;
  const connectOne = (address: string): Promise<void> =>
    new Promise((resolve) => {
      const index = set.sockets.length;
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: address });
      set.sockets.push(socket);
      set.state.push('connecting');
      let text = '';
      socket.on('connect', () => {
        if (set.state[index] === 'connecting') set.state[index] = 'open';
        resolve();
      });
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        const zero = text.indexOf('\0');
        if (zero >= 0) set.state[index] = attr(text.slice(0, zero), 'errorText') ?? text.slice(0, Math.min(zero, 200));
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (set.state[index] === 'open' || set.state[index] === 'connecting') set.state[index] = err.code ?? err.message;
        resolve();
      });
      socket.on('close', () => {
        if (set.state[index] === 'open' || set.state[index] === 'connecting') set.state[index] = 'closed by the server';
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      while (next < jobs.length) await connectOne(jobs[next++]!);
    }),
  );
  return set;
}

function tally(states: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of states) counts[s] = (counts[s] ?? 0) + 1;
  return counts;
}

// --- The section ------------------------------------------------------------------------

export async function attackBench(options: AttackOptions): Promise<AttackResult> {
  const { log } = options;
  const run = (name: string): boolean => options.scenarios === undefined || options.scenarios.has(name);
  // The server always runs on the big mailbox's data directory (only read), searched or not.
  const mailbox = await ximssdBigMailbox({ count: options.mailCount, connections: options.populateConnections, cacheDir: options.cacheDir, log });
  if (!mailbox.available) return { available: false, reason: `no big mailbox: ${mailbox.reason}` };

  const errors: string[] = [];
  const addError = (text: string): void => {
    if (errors.length < 10 && !errors.includes(text)) errors.push(text);
  };
  const scenarios: ScenarioResult[] = [];
  let server: Ximssd | undefined;
  let probe: NoopProbe | undefined;
  try {
    server = await startXimssd({ dataDir: mailbox.dataDir, cpuProfileDir: options.cpuProfileDir });
    const x = server;
    const port = x.ports.ximss;
    probe = new NoopProbe(await connectXimss(port, { user: USER, password: PASSWORD }));
    const p = probe;
    await p.run(options.warmupMs);
    const seconds = options.durationMs / 1000;
    log(
      `ximssd on ${fmt(options.mailCount)}-message mailbox (pid ${x.pid}, default limits); well-behaved client: 1 logged-in connection, ` +
        `one noop at a time, ${fmt(seconds, 1)} s per scenario`,
    );

    /** Times the well-behaved client for one scenario, with the server's RSS and CPU. */
    const measure = async (
      key: ScenarioResult['key'],
      title: string,
      extraCpu: () => number = () => 0,
    ): Promise<ScenarioResult> => {
      const rss = rssSampler(x.pid);
      const io0 = ioBytes(x.pid);
      const e0 = extraCpu();
      const m = meter(() => cpuSeconds(x.pid));
      const noop = await p.run(options.durationMs);
      const cpu = m();
      const mem = rss();
      const io1 = ioBytes(x.pid);
      const extra = extraCpu() - e0;
      for (const t of p.texts.splice(0)) addError(t);
      const base = scenarios[0];
      const result: ScenarioResult = {
        key,
        title,
        noop,
        ratio: base ? noop.p99Ms / base.noop.p99Ms : null,
        rssStartKb: mem.startKb,
        rssPeakKb: mem.peakKb,
        serverReadBytes: io1.read - io0.read,
        serverWrittenBytes: io1.written - io0.written,
        serverCpu: cpu.server / cpu.seconds,
        clientCpu: cpu.client / cpu.seconds,
        otherCpu: Math.max(0, cpu.other - extra / cpu.seconds),
        counters: {},
      };
      scenarios.push(result);
      const ratio = result.ratio === null ? '' : `  ratio ${fmt(result.ratio, 1)}× (target ≤ ${ATTACK_TARGET}×)`;
      log(
        `${title.padEnd(44)} noop p50 ${fmt(noop.p50Ms, 3)} ms  p99 ${fmt(noop.p99Ms, 3)} ms  (max ${fmt(noop.maxMs, 1)}, ${fmt(noop.count)} round trips` +
          `${noop.errors ? `, ${noop.errors} errors` : ''}${noop.lost ? ', CONNECTION LOST' : ''})${ratio}`,
      );
      log(
        `${''.padEnd(44)} server RSS ${fmt(mem.startKb / 1024, 1)} → peak ${fmt(mem.peakKb / 1024, 1)} MB, server CPU ${Math.round(result.serverCpu * 100)}%, ` +
          `other CPU ${Math.round(result.otherCpu * 100)}%, ` +
          `server read ${fmt(result.serverReadBytes / 1048576, 1)} MB, wrote ${fmt(result.serverWrittenBytes / 1048576, 1)} MB (rchar, wchar)`,
      );
      return result;
    };

    // ---- Baseline
    await measure('idle', 'no attack');

    // ---- (a) Pre-login flood
    if (run('flood')) {
      const flood = spawnChild(
        process.execPath,
        [
          '--import',
          'tsx',
          join(ROOT, 'bench', 'prelogin-flood.ts'),
          JSON.stringify({ port, address: FLOOD_ADDRESS, attackers: options.flooders, nestedBytes: NESTED_BYTES, flatBytes: FLAT_BYTES }),
        ],
        { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
      );
      try {
        await flood.waitFor(/FLOOD STARTED/);
        await sleep(300);
        const floodCpu = (): number => {
          try {
            return cpuSeconds(flood.pid);
          } catch {
            return 0;
          }
        };
        const c0 = floodCpu();
        const t0 = performance.now();
        await measure('flood', `(a) pre-login flood, ${options.flooders} clients`, floodCpu);
        const floodCpuShare = (floodCpu() - c0) / ((performance.now() - t0) / 1000);
        flood.process.stdin?.write('stop\n');
        const line = await flood.waitFor(/FLOOD RESULT (\{.*\})\n/, 15_000);
        const result = JSON.parse(line[1]!) as FloodResult;
        const scenario = scenarios[scenarios.length - 1]!;
        scenario.counters = { ...result, address: FLOOD_ADDRESS, attackers: options.flooders, attackerCpu: floodCpuShare };
        for (const shape of ['nested', 'flat'] as const) {
          const s = result.shapes[shape];
          const answers = Object.entries(s.answers)
            .sort((a, b) => b[1] - a[1])
            .map(([text, n]) => `${fmt(n)} × ${text}`)
            .join('; ');
          log(
            `${''.padEnd(44)} ${shape === 'nested' ? `nested ${fmt(NESTED_BYTES / 1048576)} MB` : `flat ${fmt(FLAT_BYTES / 1024)} KiB`}: ` +
              `${fmt(s.messagesStarted)} messages sent (${fmt(s.messagesCompleted)} to their end, ${fmt(s.bytesSent / 1048576, 1)} MB written into the sockets), ` +
              `${fmt(s.cutByServer)} connections cut (median ${s.cutMedianMs === null ? '?' : fmt(s.cutMedianMs, 2)} ms after connecting` +
              `${s.stalled ? `, ${s.stalled} not cut in 10 s` : ''}); answers: ${answers || 'none'}`,
          );
        }
        const connectErrors = Object.entries(result.connectErrors).map(([code, n]) => `${fmt(n)} × ${code}`).join(', ');
        log(`${''.padEnd(44)} over ${fmt(result.seconds, 1)} s; attackers' CPU ${Math.round(floodCpuShare * 100)}%${connectErrors ? `; failed connects: ${connectErrors}` : ''}`);
      } finally {
        await flood.stop();
      }
      await sleep(500);
    }

    // ---- (b) folderSearch over the big mailbox, back to back
    if (run('search')) {
      const client = await XimssClient.connect(port, USER, PASSWORD);
      const t0 = performance.now();
      const open = await client.call(
        (id) => `<folderOpen id="${id}" folder="S" mailbox="${mailbox.mailbox}" sortField="Date" sortOrder="desc"><field>FLAGS</field></folderOpen>`,
      );
      const openMs = performance.now() - t0;
      const init = open.data.find((d) => attr(d, 'mode') === 'init');
      const messages = Number(init ? attr(init, 'messages') : NaN);
      const stats = { sent: 0, answered: 0, stoppedByTimeout: 0, complete: 0, failed: 0, matched: 0, examined: 0, searchMs: 0, maxSearchMs: 0 };
      let running = true;
      const loop = (async () => {
        while (running) {
          const s0 = performance.now();
          stats.sent++;
          const reply = await client.request(
            (id) => `<folderSearch id="${id}" folder="S" filter="${SEARCH_FILTER}" timeout="${SEARCH_TIMEOUT}"/>`,
          );
          const ms = performance.now() - s0;
          stats.answered++;
          if (reply.error !== undefined) {
            stats.failed++;
            addError(`folderSearch: ${reply.response}`);
            continue;
          }
          const result = reply.data.find((d) => d.startsWith('<folderSearchResult'));
          const next = result ? attr(result, 'next') : undefined;
          stats.matched += result ? (result.match(/<index>/g) ?? []).length : 0;
          if (next === undefined) {
            stats.complete++;
            stats.examined += messages;
          } else {
            stats.stoppedByTimeout++;
            stats.examined += Number(next);
          }
          stats.searchMs += ms;
          stats.maxSearchMs = Math.max(stats.maxSearchMs, ms);
        }
      })().catch(() => undefined); // the client is closed under a running search at the end
      try {
        await sleep(200);
        await measure('search', `(b) folderSearch ${SEARCH_FILTER.split(' ')[0]} over ${fmt(options.mailCount)}`);
        // The search in flight is answered within its timeout: counted too.
        running = false;
        await Promise.race([loop, sleep((SEARCH_TIMEOUT + 2) * 1000)]);
        const scenario = scenarios[scenarios.length - 1]!;
        const snapshot = { ...stats };
        scenario.counters = { filter: SEARCH_FILTER, timeout: SEARCH_TIMEOUT, messages, folderOpenMs: openMs, ...snapshot };
        const perSearch = snapshot.answered - snapshot.failed > 0 ? snapshot.searchMs / (snapshot.answered - snapshot.failed) : NaN;
        log(
          `${''.padEnd(44)} folderOpen ${fmt(messages)} messages in ${fmt(openMs)} ms; ${fmt(snapshot.answered)} searches answered, counting the one ` +
            `in flight when the timing ended: ${fmt(snapshot.stoppedByTimeout)} stopped by their ${SEARCH_TIMEOUT} s timeout, ${fmt(snapshot.complete)} complete, ` +
            `${fmt(snapshot.failed)} failed, ${fmt(snapshot.matched)} matches; ${fmt(perSearch)} ms each, ` +
            `${fmt(snapshot.examined / (snapshot.searchMs / 1000 || NaN))} messages examined/s`,
        );
      } finally {
        running = false;
        await client.close();
        await loop;
      }
      await sleep(500);
    }

    // ---- (c) Idle connections: from many addresses, then from one
    const idleScenario = async (key: 'idle-20' | 'idle-1', addresses: string[], perAddress: number): Promise<void> => {
      const attempted = addresses.length * perAddress;
      const t0 = performance.now();
      const set = await openIdle(port, addresses, perAddress);
      const openSeconds = (performance.now() - t0) / 1000;
      await sleep(300); // refusals arrive
      const before = tally(set.state);
      const title =
        addresses.length > 1
          ? `(c) ${fmt(attempted)} idle conns, ${addresses.length} addresses`
          : `(c) ${fmt(attempted)} idle conns, 1 address`;
      try {
        await measure(key, title);
      } finally {
        const after = tally(set.state);
        const scenario = scenarios[scenarios.length - 1];
        const accepted = before.open ?? 0;
        const refused = attempted - accepted;
        if (scenario?.key === key) {
          scenario.counters = {
            addresses: addresses.length === 1 ? addresses : `${addresses[0]} … ${addresses[addresses.length - 1]}`,
            attempted,
            accepted,
            refused,
            openSeconds,
            atStart: before,
            atEnd: after,
          };
        }
        const why = Object.entries(before)
          .filter(([state]) => state !== 'open')
          .map(([state, n]) => `${fmt(n)} × ${state}`)
          .join('; ');
        log(
          `${''.padEnd(44)} ${fmt(attempted)} connections attempted (opened in ${fmt(openSeconds, 2)} s): ${fmt(accepted)} accepted, ${fmt(refused)} refused` +
            `${why ? ` (${why})` : ''}; still open at the end ${fmt(after.open ?? 0)}`,
        );
        for (const socket of set.sockets) socket.destroy();
        await sleep(500);
      }
    };
    if (run('idle')) {
      const perAddress = Math.ceil(options.idleConnections / options.idleAddresses);
      await idleScenario(
        'idle-20',
        Array.from({ length: options.idleAddresses }, (_, i) => `127.0.0.${10 + i}`),
        perAddress,
      );
      await idleScenario('idle-1', [ONE_ADDRESS], options.idleConnections);
    }

    const worst = scenarios.reduce((a, b) => ((b.ratio ?? 0) > (a.ratio ?? 0) ? b : a), scenarios[0]!);
    const rssPeakKb = Math.max(...scenarios.map((s) => s.rssPeakKb));
    if (worst.ratio !== null) log(
      `under attack: worst p99 ${fmt(worst.noop.p99Ms, 3)} ms (${worst.title.trim()}) = ${fmt(worst.ratio ?? NaN, 1)} × the no-attack p99 ` +
        `${fmt(scenarios[0]!.noop.p99Ms, 3)} ms (target ≤ ${ATTACK_TARGET}×); server RSS reached ${fmt(rssPeakKb / 1024, 1)} MB`,
    );
    for (const e of errors) log(`  error seen: ${e}`);
    return {
      available: true,
      mailCount: options.mailCount,
      mailboxCached: mailbox.population.cached,
      scenarios,
      worst: { key: worst.key, p99Ms: worst.noop.p99Ms, ratio: worst.ratio ?? NaN },
      rssPeakKb,
      errors,
    };
  } finally {
    probe?.close();
    await server?.stop();
  }
}
