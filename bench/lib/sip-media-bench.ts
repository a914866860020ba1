/**
 * The `media` bench area: concurrent G.711 calls relayed by ximssd's media gateway.
 *
 * A SIPp client (bench/sip/uac-media.xml) places `calls` calls through the server to the
 * registered SIPp server (uas-media.xml); both offer the bench's RTP endpoint
 * (lib/sip-rtp-endpoint.ts, a process for each side) in their SDP and log where the other side's
 * SDP — as the server rewrote it — says to send. The endpoint then sends a 20 ms PCMU stream
 * each way for every call (50 packets/s per direction) and receives them, and after the
 * calls are up, measures a window of `windowSeconds`: packets lost, and RFC 3550 jitter. A
 * level passes when fewer than 1% of the packets are lost and the jitter is less than 5 ms
 * above the direct path's at the same number of calls. The figure is the highest passing
 * number of calls, found as in the sip area (doubling, then bisecting).
 *
 * The direct path is Kamailio's: a proxy that leaves the SDP alone, so the two ends of each
 * call stream to each other with nothing in between. It is measured first, the same way; it
 * shows what the endpoint and this machine manage without a relay (the harness's own limit)
 * and gives the jitter the relay is compared with. Then Kamailio with rtpengine (user space),
 * a real relay that rewrites the SDP as ximssd's gateway will: the harness tried on one, and a
 * reference figure. The anchor is the published Asterisk
 * figure of about 250 relayed G.711 calls per core (ASTERISK_CALLS_PER_CORE), a constant
 * printed beside ximssd's figure, not measured here.
 *
 * Each level runs on freshly started servers and processes, stopped by pid at its end.
 */
import { join } from 'node:path';
import { ensureSipp, startSipp, type SippProcess } from '../../test/fixtures/sipp.js';
import { freePort, JsonLineProcess, sleep, treeCpuSeconds } from './proc.js';
import { searchRate } from './sip-bench.js';
import { mergeReports, type MediaWindowReport } from './sip-rtp.js';
import { CALLEE, registerCallee, SCENARIOS, sippFailure, startKamailioRtpengineServer, startKamailioServer, startXimssdServer, type SipServer } from './sip-servers.js';
import { DOMAIN, PASSWORD, ROOT } from './ximssd.js';
import type { Figure } from './figures.js';

/** The published Asterisk figure for relayed G.711 calls on one core (not measured here). */
export const ASTERISK_CALLS_PER_CORE = 250;
export const MAX_LOSS = 0.01;
export const MAX_ADDED_JITTER_MS = 5;

export interface MediaBenchOptions {
  startCalls: number;
  maxCalls: number;
  /** Calls placed per second while setting a level up. */
  setupRate: number;
  windowSeconds: number;
  kamailioChildren: number;
  log: (line: string) => void;
}

export interface MediaTrial {
  calls: number;
  /** Calls whose both streams were set up (both SIPp sides logged them). */
  established: number;
  report: MediaWindowReport | undefined;
  /** Jitter above the direct path's at this many calls (ms); the direct path itself: its own jitter. */
  addedJitterMs: number | undefined;
  /** The server's share of a core during the window (all its processes). */
  serverCpu: number;
  ok: boolean;
  why?: string;
}

export type MediaSide =
  | { available: false; reason: string; trials: MediaTrial[] }
  | { available: true; calls: number; best: MediaTrial | undefined; trials: MediaTrial[] };

export interface MediaResult {
  /** Kamailio, which does not relay media: the direct path. */
  direct: MediaSide;
  /** Kamailio with rtpengine relaying in user space: the harness against a real relay, for reference. */
  rtpengine: MediaSide;
  ximssd: MediaSide;
}

/** Whether a level passes: every call up, < 1% lost, jitter < 5 ms above the direct path. */
export function judgeMedia(calls: number, established: number, report: MediaWindowReport | undefined, addedJitterMs: number | undefined, overDirect = true): { ok: boolean; why?: string } {
  if (established < calls) return { ok: false, why: `only ${established} of ${calls} calls set up` };
  if (!report || report.sent === 0) return { ok: false, why: 'no packets sent in the window' };
  if (report.loss >= MAX_LOSS) return { ok: false, why: `${(report.loss * 100).toFixed(2)}% of the packets lost` };
  if (addedJitterMs !== undefined && addedJitterMs >= MAX_ADDED_JITTER_MS) return { ok: false, why: `jitter ${addedJitterMs.toFixed(2)} ms${overDirect ? ' above the direct path' : ''}` };
  return { ok: true };
}

/** An RTP endpoint child (one side of the calls) and its JSON answers. */
const startEndpoint = (side: 'uac' | 'uas'): Promise<JsonLineProcess> =>
  JsonLineProcess.start(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'lib', 'sip-rtp-endpoint.ts'), side], ROOT, 'the RTP endpoint');

/** One level on a fresh server: set up `calls` calls with media, measure the window. Throws `Unavailable` when the server cannot do calls at all. */
class Unavailable extends Error {}

async function level(start: () => Promise<SipServer>, calls: number, baselineJitter: number | undefined, o: MediaBenchOptions): Promise<MediaTrial> {
  let server: SipServer;
  try {
    server = await start();
  } catch (err) {
    throw new Unavailable((err as Error).message.split('\n')[0]!);
  }
  // The two sides' media in two processes: each sends half of the packets and receives the other half.
  const callers = await startEndpoint('uac');
  const called = await startEndpoint('uas');
  const endpoints = [callers, called];
  const processes: SippProcess[] = [];
  try {
    const uasPort = await freePort();
    const media = { rtp_ip: '127.0.0.1' };
    const uas = await startSipp({ scenario: join(SCENARIOS, 'uas-media.xml'), port: uasPort, keys: { ...media, rtp_port: called.port } });
    processes.push(uas);
    await sleep(300);
    const registered = await registerCallee(server, uasPort);
    if (registered !== undefined) throw new Unavailable(registered);
    const setupSeconds = calls / o.setupRate;
    const holdMs = Math.round((setupSeconds + o.windowSeconds + 15) * 1000);
    const uac = await startSipp({
      scenario: join(SCENARIOS, 'uac-media.xml'),
      remote: `127.0.0.1:${server.port}`,
      keys: { ...media, domain: DOMAIN, rtp_port: callers.port },
      args: ['-s', CALLEE, '-au', CALLEE, '-ap', PASSWORD, '-r', String(o.setupRate), '-m', String(calls), '-l', String(calls), '-d', String(holdMs), '-recv_timeout', '10000'],
    });
    processes.push(uac);
    callers.send({ tail: uac.logFile });
    called.send({ tail: uas.logFile });
    // Wait for the calls: both sides' streams, or until no progress for 10 s.
    let established = 0;
    let progress = Date.now();
    for (;;) {
      await sleep(500);
      for (const e of endpoints) e.send({ status: true });
      const up = Math.min(...(await Promise.all(endpoints.map((e) => e.answer<number>('status')))));
      if (up > established) progress = Date.now();
      established = up;
      if (established >= calls || Date.now() - progress > 10_000) break;
      const exited = uac.child.process.exitCode !== null || uac.child.process.signalCode !== null;
      if (exited || (established === 0 && (uac.stats()?.failed ?? 0) > 0)) break;
    }
    if (established === 0) {
      const result = await uac.stop(0);
      throw new Unavailable(sippFailure(server.name, 'INVITE', result));
    }
    await sleep(1000);
    // One window for both endpoints, set ahead on the clock they share (the wall clock, finely),
    // so that each counts exactly the packets sent in it; then 300 ms for those in flight.
    const clock = (): number => performance.timeOrigin + performance.now();
    const windowStart = clock() + 200;
    const windowEnd = windowStart + o.windowSeconds * 1000;
    for (const e of endpoints) e.send({ window: windowStart, end: windowEnd });
    await sleep(windowStart - clock());
    const cpu0 = treeCpuSeconds(server.pid);
    await sleep(windowEnd - clock());
    const serverCpu = (treeCpuSeconds(server.pid) - cpu0) / ((clock() - windowStart) / 1000);
    await sleep(300);
    for (const e of endpoints) e.send({ report: true });
    const [a, b] = await Promise.all(endpoints.map((e) => e.answer<MediaWindowReport>('report')));
    const report = mergeReports(a!, b!);
    const addedJitterMs = baselineJitter === undefined ? report.jitterMeanMs : report.jitterMeanMs - baselineJitter;
    return { calls, established, report, addedJitterMs, serverCpu, ...judgeMedia(calls, established, report, addedJitterMs, baselineJitter !== undefined) };
  } finally {
    for (const p of processes.reverse()) await p.stop(0);
    for (const e of endpoints) await e.stop();
    await server.stop();
  }
}

async function measureSide(name: string, start: () => Promise<SipServer>, baseline: (calls: number) => number | undefined, o: MediaBenchOptions): Promise<MediaSide> {
  const trials: MediaTrial[] = [];
  try {
    const calls = await searchRate(
      async (n) => {
        const t = await level(start, n, baseline(n), o);
        trials.push(t);
        const r = t.report;
        o.log(
          `  ${name.padEnd(8)} ${String(n).padStart(5)} calls: ${t.established} up` +
            (r
              ? `, ${r.streams} streams, ${r.sent} packets sent in ${o.windowSeconds} s, lost ${(r.loss * 100).toFixed(2)}%, jitter mean ${r.jitterMeanMs.toFixed(2)} ms (max ${r.jitterMaxMs.toFixed(2)})` +
                `${t.addedJitterMs !== undefined && baseline(n) !== undefined ? `, +${t.addedJitterMs.toFixed(2)} over direct` : ''}, transit mean ${r.transitMeanMs.toFixed(2)} ms (p99 ${r.transitP99Ms.toFixed(2)}), ` +
                `server CPU ${Math.round(t.serverCpu * 100)}%, endpoint CPU ${Math.round(r.endpointCpu * 100)}%`
              : '') +
            (t.ok ? '' : ` → fails: ${t.why}`),
        );
        return t.ok;
      },
      o.startCalls,
      o.maxCalls,
      0.1,
    );
    return { available: true, calls, best: trials.filter((t) => t.ok && t.calls === calls).at(-1), trials };
  } catch (err) {
    if (err instanceof Unavailable) return { available: false, reason: err.message, trials };
    throw err;
  }
}

export async function mediaBench(o: MediaBenchOptions): Promise<MediaResult> {
  const sipp = await ensureSipp();
  if (!sipp.available) {
    const side: MediaSide = { available: false, reason: sipp.reason, trials: [] };
    return { direct: side, rtpengine: side, ximssd: side };
  }
  o.log('  direct path (Kamailio proxies the calls; the SDP is left alone, so the endpoints stream to each other)');
  const direct = await measureSide('direct', () => startKamailioServer({ children: o.kamailioChildren }), () => undefined, o);
  if (!direct.available) o.log(`  direct path not measured: ${direct.reason}`);
  // The direct path's jitter at the nearest level measured (the levels are the same when both search alike).
  const baseline = (calls: number): number | undefined => {
    const measured = direct.trials.filter((t) => t.report !== undefined);
    if (!measured.length) return undefined;
    const nearest = measured.reduce((a, b) => (Math.abs(b.calls - calls) < Math.abs(a.calls - calls) ? b : a));
    return nearest.report!.jitterMeanMs;
  };
  o.log('  Kamailio + rtpengine (user space, no kernel forwarding): a real relay, to test the harness with and for reference');
  const rtpengine = await measureSide('rtpengine', () => startKamailioRtpengineServer({ children: o.kamailioChildren }), baseline, o);
  if (!rtpengine.available) o.log(`  Kamailio + rtpengine not measured: ${rtpengine.reason}`);
  o.log('  ximssd (B2BUA with its media gateway relaying both streams)');
  const ximssd = await measureSide('ximssd', () => startXimssdServer({ relayMedia: true }), baseline, o);
  if (!ximssd.available) o.log(`  ximssd not measured: ${ximssd.reason}`);
  const x = ximssd.available ? `${ximssd.calls} calls` : 'n/a';
  const d = direct.available ? `${direct.calls} calls` : 'n/a';
  const r = rtpengine.available ? `${rtpengine.calls} calls` : 'n/a';
  o.log(
    `  relayed G.711 calls (< 1% loss, < ${MAX_ADDED_JITTER_MS} ms added jitter): ximssd ${x}, beside Asterisk's published ~${ASTERISK_CALLS_PER_CORE} per core (a constant); ` +
      `Kamailio + rtpengine ${r}; the direct path (no relay) held ${d}`,
  );
  return { direct, rtpengine, ximssd };
}

/** The area's rows: ximssd's relayed calls ÷ Asterisk's published figure, loss and jitter at that level, the direct path's limit. */
export function mediaFigures(result: MediaResult): Figure[] {
  const { direct, ximssd } = result;
  const rows: Figure[] = [];
  const calls = ximssd.available ? ximssd.calls : null;
  rows.push({
    name: 'ximssd relayed G.711 calls (< 1% loss, < 5 ms added jitter)',
    value: calls,
    unit: 'calls',
    target: `≥ 1 × Asterisk (${ASTERISK_CALLS_PER_CORE}/core)`,
    ratio: calls === null ? null : calls / ASTERISK_CALLS_PER_CORE,
    note: ximssd.available ? undefined : ximssd.reason,
  });
  rows.push({ name: 'Asterisk, published figure per core (a constant, not measured)', value: ASTERISK_CALLS_PER_CORE, unit: 'calls', target: '-', ratio: null });
  const best = ximssd.available ? ximssd.best : undefined;
  if (best?.report) {
    rows.push({ name: '  ximssd packet loss at that level', value: best.report.loss * 100, unit: '%', target: '< 1 %', ratio: null });
    rows.push({ name: '  ximssd jitter added at that level', value: best.addedJitterMs ?? null, unit: 'ms', target: '< 5 ms', ratio: null });
    rows.push({ name: '  ximssd CPU share while relaying', value: best.serverCpu * 100, unit: '%', target: '≤ 100 %', ratio: null });
  }
  rows.push({
    name: 'Kamailio + rtpengine (user space) relayed calls, same test',
    value: result.rtpengine.available ? result.rtpengine.calls : null,
    unit: 'calls',
    target: '-',
    ratio: null,
    note: result.rtpengine.available ? undefined : result.rtpengine.reason,
  });
  const rb = result.rtpengine.available ? result.rtpengine.best : undefined;
  if (rb?.report) rows.push({ name: '  rtpengine CPU share while relaying', value: rb.serverCpu * 100, unit: '%', target: '-', ratio: null });
  rows.push({
    name: 'direct path, no relay (the harness and machine limit)',
    value: direct.available ? direct.calls : null,
    unit: 'calls',
    target: '-',
    ratio: null,
    note: direct.available ? undefined : direct.reason,
  });
  const d = direct.available ? direct.best : undefined;
  if (d?.report) rows.push({ name: '  direct path jitter at that level', value: d.report.jitterMeanMs, unit: 'ms', target: '-', ratio: null });
  return rows;
}
