/**
 * The `sip` bench area: call setup rate through ximssd beside Kamailio on this machine.
 *
 * A SIPp server (bench/sip/uas.xml) registers as bench@bench.test (register.xml, Digest when
 * challenged: ximssd asks for it, Kamailio here does not) and answers every call; a SIPp client
 * (uac.xml) places calls through the server — INVITE, 100/180/200, ACK, a hold of `holdMs`,
 * BYE, 200; no media. The figure is the highest rate (calls per second) at which fewer than
 * 1% of the calls fail, found by trials of `trialSeconds` each: the rate doubles from
 * `startRate` until a trial fails, then a binary search between the last good and the first
 * bad rate, down to 10% of the rate. A trial fails when ≥ 1% of its calls fail, or when SIPp
 * could not place them at 90% of the asked rate (the generator's own limit; the row then says so).
 *
 * Each side: the server, then the registration and one probe call, which say clearly why a
 * server cannot be measured (ximssd without a B2BUA answers the INVITE with an error, or
 * does not start with `--sip`); then the search. Kamailio first, then ximssd; one at a time.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSipp, runSipp, startSipp, type SippProcess, type SippStats } from '../../test/fixtures/sipp.js';
import { freePort, machineBusySeconds, sleep, treeCpuSeconds } from './proc.js';
import { CALLEE, registerCallee, SCENARIOS, sippFailure, startKamailioServer, startXimssdServer, type SipServer } from './sip-servers.js';
import { DOMAIN, PASSWORD } from './ximssd.js';
import type { Figure } from './figures.js';

export interface SipBenchOptions {
  /** Seconds each trial places calls for. */
  trialSeconds: number;
  /** How long each call is held between ACK and BYE. */
  holdMs: number;
  startRate: number;
  /** The search stops here (the generator's limit is well below on a small machine). */
  maxRate: number;
  /** Kamailio's UDP worker processes. */
  kamailioChildren: number;
  log: (line: string) => void;
}

export interface SipTrial {
  rate: number;
  created: number;
  successful: number;
  failed: number;
  failedBy: Record<string, number>;
  retransmissions: number;
  /** Calls placed per second, as SIPp managed (created ÷ the time it took to place them). */
  placedRate: number;
  /** Mean INVITE → 200 time, ms. */
  setupMs: number | undefined;
  /** Server CPU per call (all its processes), µs. */
  serverCpuPerCallUs: number;
  /** Shares of a core: the server's, the two SIPp processes', and everything else on the machine. */
  serverCpu: number;
  sippCpu: number;
  otherCpu: number;
  /** The unexpected messages SIPp saw (status lines, counted). */
  unexpected: string[];
  ok: boolean;
  why?: string;
}

export type SipSide =
  | { available: false; reason: string; trials: SipTrial[] }
  | { available: true; cps: number; best: SipTrial | undefined; trials: SipTrial[]; limitedBy?: string };

export interface SipResult {
  kamailio: SipSide;
  ximssd: SipSide;
}

/** How long the server is left alone after a failed trial: timer J and a second. */
const DRAIN_AFTER_FAILURE_MS = 33_000;

/** Fewer than this share of failed calls passes a trial. */
export const MAX_FAILED = 0.01;

/**
 * The highest passing rate: doubles from `start` while trials pass (up to `max`), then
 * bisects between the last good and the first bad rate until they are within `precision`
 * of each other. 0 when even `start` fails. `trial` is called with whole rates.
 */
export async function searchRate(trial: (rate: number) => Promise<boolean>, start: number, max: number, precision = 0.1): Promise<number> {
  let good = 0;
  let bad: number | undefined;
  for (let rate = start; ; rate = Math.min(max, rate * 2)) {
    if (await trial(rate)) good = rate;
    else {
      bad = rate;
      break;
    }
    if (rate >= max) return good;
  }
  while (bad - good > Math.max(1, precision * bad)) {
    const rate = Math.round((good + bad) / 2);
    if (rate === good || rate === bad) break;
    if (await trial(rate)) good = rate;
    else bad = rate;
  }
  return good;
}

/** Whether a trial passes, and why not: too many failures, or the calls were not placed at the rate. */
export function judgeTrial(rate: number, expected: number, stats: Pick<SippStats, 'created' | 'failed'>, placedRate: number): { ok: boolean; why?: string } {
  if (stats.created < expected) return { ok: false, why: `only ${stats.created} of ${expected} calls placed` };
  if (stats.failed / stats.created >= MAX_FAILED) return { ok: false, why: `${stats.failed} of ${stats.created} calls failed` };
  if (placedRate < 0.9 * rate) return { ok: false, why: `SIPp placed ${placedRate.toFixed(0)} calls/s, not ${rate}` };
  return { ok: true };
}

/** One server's search: registration, a probe call, then the trials. */
async function measureSide(start: () => Promise<SipServer>, name: string, o: SipBenchOptions): Promise<SipSide> {
  const trials: SipTrial[] = [];
  let server: SipServer;
  try {
    server = await start();
  } catch (err) {
    return { available: false, reason: (err as Error).message.split('\n')[0]!, trials };
  }
  const uasPort = await freePort();
  // The called party: -mp only names a port in its SDP; no media flows in this area.
  const uas = await startSipp({ scenario: join(SCENARIOS, 'uas.xml'), port: uasPort, args: ['-mp', String(await freePort())] });
  try {
    await sleep(300);
    const registered = await registerCallee(server, uasPort);
    if (registered !== undefined) return { available: false, reason: registered, trials };
    const probe = await placeCalls(server, 1, 1, o);
    if (probe.stats?.successful !== 1) return { available: false, reason: sippFailure(name, 'INVITE', probe), trials };
    const cps = await searchRate(
      async (rate) => {
        const t = await trial(server, uas, rate, o);
        trials.push(t);
        o.log(
          `  ${name.padEnd(8)} ${String(rate).padStart(5)} calls/s × ${o.trialSeconds} s: ${t.successful}/${t.created} ok, ${t.failed} failed` +
            `${Object.keys(t.failedBy).length ? ` (${Object.entries(t.failedBy).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}, ` +
            `${t.retransmissions} retransmissions, placed ${t.placedRate.toFixed(0)}/s, setup ${t.setupMs === undefined ? '?' : t.setupMs.toFixed(1)} ms, ` +
            `server CPU ${Math.round(t.serverCpu * 100)}% (${t.serverCpuPerCallUs.toFixed(0)} µs/call), SIPp CPU ${Math.round(t.sippCpu * 100)}%, other ${Math.round(t.otherCpu * 100)}%` +
            `${t.unexpected.length ? `; unexpected: ${t.unexpected.slice(0, 3).join(', ')}` : ''}${t.ok ? '' : ` → fails: ${t.why}`}`,
        );
        return t.ok;
      },
      o.startRate,
      o.maxRate,
    );
    const best = trials.filter((t) => t.ok && t.rate === cps).at(-1);
    const last = trials.at(-1);
    const limitedBy = last && !last.ok && last.why?.startsWith('SIPp placed') ? 'the SIPp client (it placed fewer calls a second than asked)' : cps >= o.maxRate ? `--sip-max-rate ${o.maxRate}` : undefined;
    return { available: true, cps, best, trials, ...(limitedBy ? { limitedBy } : {}) };
  } finally {
    await uas.stop(1000);
    await server.stop();
  }
}

/** Places `count` calls at `rate` through the server (SIPp client, uac.xml). */
async function placeCalls(server: SipServer, rate: number, count: number, o: SipBenchOptions): ReturnType<typeof runSipp> {
  const mediaPort = await freePort(); // SIPp binds the port its SDP names, though nothing is sent
  return runSipp({
    scenario: join(SCENARIOS, 'uac.xml'),
    remote: `127.0.0.1:${server.port}`,
    keys: { domain: DOMAIN },
    args: [
      '-s', CALLEE,
      '-au', CALLEE, '-ap', PASSWORD, '-auth_uri', `${CALLEE}@${DOMAIN}`, // if a server challenges the INVITE
      '-r', String(rate), '-m', String(count),
      '-d', String(o.holdMs),
      '-recv_timeout', '5000',
      '-mp', String(mediaPort),
    ],
    timeoutMs: (count / rate) * 1000 + o.holdMs + 30_000,
  });
}

async function trial(server: SipServer, uas: SippProcess, rate: number, o: SipBenchOptions): Promise<SipTrial> {
  const expected = Math.round(rate * o.trialSeconds);
  const server0 = treeCpuSeconds(server.pid);
  const uas0 = treeCpuSeconds(uas.pid);
  const client0 = exitedChildrenCpu();
  const self0 = process.cpuUsage();
  const machine0 = machineBusySeconds();
  const t0 = performance.now();
  const result = await placeCalls(server, rate, expected, o);
  const seconds = (performance.now() - t0) / 1000;
  const serverCpu = treeCpuSeconds(server.pid) - server0;
  // The client has exited by now: its CPU is in this process's total of waited-for children.
  const sippCpu = treeCpuSeconds(uas.pid) - uas0 + exitedChildrenCpu() - client0;
  const otherCpu = Math.max(0, machineBusySeconds() - machine0 - serverCpu - sippCpu - (process.cpuUsage(self0).user + process.cpuUsage(self0).system) / 1e6);
  const stats = result.stats ?? { created: 0, successful: 0, failed: 0, failedBy: {}, retransmissions: 0, current: 0, elapsedSeconds: 0, placingSeconds: 0, callRate: 0, responseTime1Ms: undefined };
  // How fast SIPp managed to place them: its statistics rows tell when the last one was created.
  const placedRate = stats.placingSeconds > 0 ? stats.created / Math.max(stats.placingSeconds, (expected - 1) / rate) : 0;
  const verdict = judgeTrial(rate, expected, stats, placedRate);
  // The called party's timewaits and the server's transactions drain. After a failed trial,
  // the whole of timer J (64 × T1 = 32 s over UDP, RFC 3261 17.2.2): an overloaded server still
  // holds the failed trial's transactions, and the next trial would meet them (ximssd answers
  // 503 once one source holds 20,000) instead of measuring its own rate.
  await sleep(verdict.ok ? 1000 : DRAIN_AFTER_FAILURE_MS);
  return {
    rate,
    created: stats.created,
    successful: stats.successful,
    failed: stats.failed,
    failedBy: stats.failedBy,
    retransmissions: stats.retransmissions,
    placedRate,
    setupMs: stats.responseTime1Ms,
    serverCpuPerCallUs: stats.successful ? (serverCpu / stats.successful) * 1e6 : 0,
    serverCpu: serverCpu / seconds,
    sippCpu: sippCpu / seconds,
    otherCpu: otherCpu / seconds,
    unexpected: result.unexpected,
    ...verdict,
  };
}

/** CPU seconds of this process's children that have exited and been waited for (cutime + cstime of /proc/self/stat). */
function exitedChildrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

export async function sipBench(o: SipBenchOptions): Promise<SipResult> {
  const sipp = await ensureSipp();
  if (!sipp.available) {
    const side: SipSide = { available: false, reason: sipp.reason, trials: [] };
    return { kamailio: side, ximssd: side };
  }
  o.log(`  Kamailio (stateful: tm, sl, rr, registrar, usrloc in memory, maxfwd; no auth; ${o.kamailioChildren} UDP workers)`);
  const kamailio = await measureSide(() => startKamailioServer({ children: o.kamailioChildren }), 'Kamailio', o);
  if (!kamailio.available) o.log(`  Kamailio not measured: ${kamailio.reason}`);
  o.log('  ximssd (registrar with Digest, B2BUA)');
  const ximssd = await measureSide(startXimssdServer, 'ximssd', o);
  if (!ximssd.available) o.log(`  ximssd not measured: ${ximssd.reason}`);
  const cps = (s: SipSide): string => (s.available ? `${s.cps} calls/s${s.limitedBy ? ` (at least: limited by ${s.limitedBy})` : ''}` : 'n/a');
  const ratio = kamailio.available && ximssd.available && kamailio.cps > 0 ? (ximssd.cps / kamailio.cps).toFixed(2) : 'n/a';
  o.log(`  call setup rate (< 1% failed): Kamailio ${cps(kamailio)}, ximssd ${cps(ximssd)}, ratio ximssd/Kamailio ${ratio} (target ≥ 0.5)`);
  return { kamailio, ximssd };
}

/** The area's rows: each server's rate (ximssd ÷ Kamailio), its CPU per call and setup time at that rate. */
export function sipFigures(result: SipResult, o: Pick<SipBenchOptions, 'holdMs' | 'kamailioChildren'>): Figure[] {
  const { kamailio: k, ximssd: x } = result;
  const rows: Figure[] = [];
  const of = (s: SipSide, pick: (t: SipTrial) => number | undefined): number | null => (s.available && s.best ? (pick(s.best) ?? null) : null);
  const over = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b > 0 ? a / b : null);
  const value = (s: SipSide): number | null => (s.available ? s.cps : null);
  const note = (s: SipSide): string | undefined => (s.available ? (s.limitedBy ? `at least: limited by ${s.limitedBy}` : undefined) : s.reason);
  rows.push({ name: `ximssd SIP call setup rate (< 1% failed, ${o.holdMs} ms hold)`, value: value(x), unit: 'calls/s', target: '≥ 0.5 × Kamailio', ratio: over(value(x), value(k)), note: note(x) });
  rows.push({ name: `Kamailio call setup rate (stateful proxy, ${o.kamailioChildren} workers)`, value: value(k), unit: 'calls/s', target: '-', ratio: null, note: note(k) });
  const cpuX = of(x, (t) => t.serverCpuPerCallUs);
  const cpuK = of(k, (t) => t.serverCpuPerCallUs);
  if (cpuX !== null) rows.push({ name: '  ximssd CPU per call', value: cpuX, unit: 'µs', target: '-', ratio: over(cpuX, cpuK) });
  if (cpuK !== null) rows.push({ name: '  Kamailio CPU per call (all processes)', value: cpuK, unit: 'µs', target: '-', ratio: null });
  const setupX = of(x, (t) => t.setupMs);
  const setupK = of(k, (t) => t.setupMs);
  if (setupX !== null) rows.push({ name: '  ximssd INVITE → 200 at that rate, mean', value: setupX, unit: 'ms', target: '-', ratio: over(setupX, setupK) });
  if (setupK !== null) rows.push({ name: '  Kamailio INVITE → 200 at that rate, mean', value: setupK, unit: 'ms', target: '-', ratio: null });
  return rows;
}
