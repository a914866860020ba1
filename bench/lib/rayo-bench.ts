/**
 * The `rayo` bench area: concurrent calls under Rayo control (XEP-0327), each playing a prompt
 * and collecting DTMF, on ximssd's server-side media engine.
 *
 * ximssd runs with SIP, XMPP and HTTP (for /metrics) on SQLite, pinned to one core (taskset)
 * when the machine has more than one; two accounts: `bench` (the callers authenticate as it)
 * and `rayo`, with RayoAllowed=Yes (`ximssd account set`). The bench logs in as rayo/bench over
 * XMPP (lib/xmpp-client.ts) and becomes available to the domain (XEP example 012): every call
 * to rayo@ is offered to it, and it answers each offer at once.
 *
 * SIPp (bench/sip/uac-rayo.xml) places `calls` calls to rayo@, offering PCMU and RFC 4733
 * telephone-events at the callers' media process (lib/rayo-endpoint.ts, pinned to another
 * core), which streams 20 ms of silence for every call as a phone does. Once every call is
 * answered and streaming, the client starts a prompt on each (spread over `spreadMs`): a WAV of
 * `promptMs` served by the bench over HTTP, then an input with the builtin digits grammar of
 * length 4. The caller's media process hears the prompt start (the first loud frame from the
 * call's endpoint) and, `digitDelayMs` later, keys its SIPp call number as telephone-events;
 * the prompt completes with `match`, whose digits tie the Rayo call to the SIPp call.
 *
 * Figures of a level: calls answered, prompts completed with the right match, the server's
 * late frames in the window (its frame clock's `ximssd_media_late_frames_total` ÷
 * `ximssd_media_frames_total` on /metrics: ticks run more than half a frame late, or skipped),
 * and its CPU (all its processes) over the window, per call. A level passes when every call
 * was answered and matched and fewer than 1% of the frames were late. The number of calls is
 * searched as in the media area (doubling, then bisecting). Command latency: from sending a
 * prompt's iq to the first RTP packet of the prompt at the caller, median and p99 over the
 * calls of the highest passing level (it includes fetching the WAV from the bench's HTTP
 * server, as a real prompt's does).
 *
 * Each level runs on a freshly started server and processes, stopped by pid at its end.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeWav } from '../../src/media/wav.js';
import { ensureSipp, startSipp, type SippProcess } from '../../test/fixtures/sipp.js';
import { median, type Figure } from './figures.js';
import { freePort, JsonLineProcess, runCommand, sleep, spawnChild, treeCpuSeconds, type Child } from './proc.js';
import type { RayoEndpointReport } from './rayo-endpoint.js';
import { searchRate } from './sip-bench.js';
import { SCENARIOS, sippFailure } from './sip-servers.js';
import { xmppLogin, type XmppLoadConnection, type XmppStanza } from './xmpp-client.js';
import { DOMAIN, MAIN, PASSWORD, ROOT, USER } from './ximssd.js';

/** The issue's target: concurrent Rayo-controlled calls on one core. */
export const TARGET_CALLS = 100;
export const MAX_LATE = 0.01;
const RAYO_USER = 'rayo';
const CALLER = USER.split('@')[0]!;
const NS_RAYO = 'urn:xmpp:rayo:1';
const CLIENT_CAPS = `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:xmpp:rayo:client:1' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>`;

export interface RayoBenchOptions {
  startCalls: number;
  maxCalls: number;
  /** Calls placed per second while setting a level up. */
  setupRate: number;
  /** The prompt's length (a 1 kHz tone). */
  promptMs: number;
  /** The first prompts are started over this span, not all at once. */
  spreadMs: number;
  /** How long the calls keep starting prompts, one after the other. */
  windowSeconds: number;
  /** How long after the prompt starts the caller keys its digits. */
  digitDelayMs: number;
  /**
   * A nice value for the server, the callers' media and SIPp (0: as they are). On a machine
   * other work shares, a negative one gives the pinned server its core the way a machine of its
   * own would; the server's own stalls still count.
   */
  nice: number;
  /** Write a V8 CPU profile of the server of each level into this directory (--profile). */
  cpuProfileDir?: string;
  log: (line: string) => void;
}

export interface RayoTrial {
  calls: number;
  answered: number;
  /** Prompts started in the window, and those completed with match, with the digits of their own call. */
  prompts: number;
  matched: number;
  /** Frames the server's media endpoints were ticked for in the window, and the late ones. */
  frames: number;
  lateFrames: number;
  /** The same over 2 s before the prompts, the calls up and streaming (not judged: shown beside). */
  idleFrames: number;
  idleLate: number;
  /** Wake-ups of the probe on the server's CPU more than 10 ms late in the window, and the worst (ms); undefined when not pinned. */
  machineStalls?: number;
  machineWorstMs?: number;
  windowSeconds: number;
  /** The server's share of a core over the window (all its processes). */
  serverCpu: number;
  /** Command latencies of the level's calls (ms). */
  latencies: number[];
  ok: boolean;
  why?: string;
}

export type RayoResult =
  | { available: false; reason: string; trials: RayoTrial[] }
  | { available: true; calls: number; best: RayoTrial | undefined; trials: RayoTrial[]; pinned: boolean; nice: number };

/** Whether a level passes: every call answered and matched, < 1% late frames. */
export function judgeRayo(t: Pick<RayoTrial, 'calls' | 'answered' | 'prompts' | 'matched' | 'frames' | 'lateFrames'>): { ok: boolean; why?: string } {
  if (t.answered < t.calls) return { ok: false, why: `only ${t.answered} of ${t.calls} calls answered` };
  if (t.prompts < t.calls || t.matched < t.prompts) return { ok: false, why: `only ${t.matched} of ${t.prompts} prompts completed with the right match` };
  if (t.frames === 0) return { ok: false, why: 'the server ticked no media frames' };
  if (t.lateFrames / t.frames >= MAX_LATE) return { ok: false, why: `${((t.lateFrames / t.frames) * 100).toFixed(2)}% of the frames late` };
  return { ok: true };
}

/** The `p` (0–1) percentile of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]! : NaN;
}

/** Binds a process to one CPU (taskset), when there is a taskset and more than one CPU. */
async function pin(pid: number, cpu: number): Promise<boolean> {
  if (cpus().length < 2) return false;
  return runCommand('taskset', ['-pc', String(cpu), String(pid)]).then(
    () => true,
    () => false,
  );
}

/** The counters of a Prometheus text page. */
async function scrape(httpPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return values;
}

interface RayoServer {
  pid: number;
  ports: { sip: number; xmpp: number; http: number };
  stop(): Promise<void>;
}

/** ximssd with SIP, XMPP and HTTP on free ports and its two accounts; on the last CPU when pinned. */
async function startRayoServer(pinned: boolean, nice: number, profileDir: string | undefined): Promise<RayoServer> {
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-rayo-bench-'));
  const configFile = join(dir, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      host: '127.0.0.1',
      defaultDomain: DOMAIN,
      limits: { sessionsPerAccount: 100_000 },
      // Every call of a level is for one account, from one account.
      calls: { callsPerAccount: 100_000, rayoCallsPerAccount: 100_000 },
      media: { sessions: 5000, sessionsPerAccount: 5000, promptFetch: 'any' }, // the prompt is served by the bench on 127.0.0.1
    }),
  );
  let child: Child | undefined;
  try {
    await runCommand(process.execPath, [MAIN, 'init', '--config', configFile]);
    await runCommand(process.execPath, [MAIN, 'account', 'add', USER, '--password', PASSWORD, '--config', configFile]);
    await runCommand(process.execPath, [MAIN, 'account', 'add', `${RAYO_USER}@${DOMAIN}`, '--password', PASSWORD, '--config', configFile]);
    await runCommand(process.execPath, [MAIN, 'account', 'set', `${RAYO_USER}@${DOMAIN}`, 'RayoAllowed=Yes', '--config', configFile]);
    const [sip, xmpp] = [await freePort(), await freePort()];
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const node = [process.execPath, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), '--require', join(ROOT, 'bench', 'server-hook.cjs'), MAIN, 'serve', '--config', configFile, '--ximss', '0', '--http', '0', '--smtp', '0', '--xmpp', String(xmpp), '--xmpp-s2s', '0', '--sip', String(sip)];
    // The server on the last CPU; the callers' media and SIPp on the first.
    const pinning = pinned ? ['taskset', '-c', String(cpus().length - 1)] : [];
    const [command, ...args] = [...(nice ? ['nice', '-n', String(nice)] : []), ...pinning, ...node];
    child = spawnChild(command!, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const started = await child.waitFor(/^\{.*"event":"server\.started".*\}$/m);
    const ports = (JSON.parse(started[0]) as { ports: { sip?: number; xmpp?: number; http?: number } }).ports;
    if (!ports.sip || !ports.xmpp || !ports.http) throw new Error(`ximssd started without SIP, XMPP or HTTP: ${JSON.stringify(ports)}`);
    const running = child;
    return {
      pid: running.pid,
      ports: { sip: ports.sip, xmpp: ports.xmpp, http: ports.http },
      async stop() {
        await running.stop();
        if (running.process.connected) running.process.disconnect();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await child?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The callers' media process (lib/rayo-endpoint.ts) and its JSON answers. */
function startCallerMedia(digitDelayMs: number, nice: number): Promise<JsonLineProcess> {
  const node = [process.execPath, '--import', 'tsx', join(ROOT, 'bench', 'lib', 'rayo-endpoint.ts'), String(digitDelayMs)];
  const [command, ...args] = nice ? ['nice', '-n', String(nice), ...node] : node;
  return JsonLineProcess.start(command!, args, ROOT, "the callers' media process");
}

/**
 * A probe of the machine on the server's CPU: a small node process pinned beside the server
 * that wakes every 5 ms and counts the wake-ups more than 10 ms late (the frame clock's
 * threshold). It has next to nothing to do, so its stalls are the machine's (other processes,
 * the kernel, the hypervisor), not its own: shown beside the server's late frames.
 */
const PROBE_SCRIPT = `
let last = performance.now(), stalls = 0, worst = 0, counting = false;
setInterval(() => { const now = performance.now(); const late = now - last - 5; if (counting && late > 10) { stalls++; worst = Math.max(worst, late); } last = now; }, 5);
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'start') { counting = true; stalls = 0; worst = 0; }
  if (line === 'report') process.stdout.write(JSON.stringify({ probe: { stalls, worst } }) + '\\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdout.write('PROBE READY\\n');
`;

class MachineProbe {
  private constructor(readonly child: Child) {}

  static async start(cpu: number, nice: number): Promise<MachineProbe> {
    const node = [process.execPath, '-e', PROBE_SCRIPT];
    const child = spawnChild(nice ? 'nice' : 'taskset', nice ? ['-n', String(nice), 'taskset', '-c', String(cpu), ...node] : ['-c', String(cpu), ...node], { stdio: ['pipe', 'pipe', 'pipe'] });
    await child.waitFor(/PROBE READY/);
    return new MachineProbe(child);
  }

  start(): void {
    this.child.process.stdin!.write('start\n');
  }

  async report(): Promise<{ stalls: number; worst: number }> {
    const before = this.child.output().length;
    this.child.process.stdin!.write('report\n');
    for (let i = 0; i < 50; i++) {
      const m = /\{"probe":(\{[^}]*\})\}/.exec(this.child.output().slice(before));
      if (m) return JSON.parse(m[1]!) as { stalls: number; worst: number };
      await sleep(50);
    }
    return { stalls: NaN, worst: NaN };
  }

  async stop(): Promise<void> {
    this.child.process.stdin!.end();
    await this.child.stop();
  }
}

const childNamed = (node: XmppStanza, name: string): XmppStanza | undefined => node.children.find((c) => c.name === name);

interface RayoCallState {
  jid: string;
  answered: boolean;
  /** When each prompt's iq was sent (shared clock, ms). */
  sentAt: number[];
  /** How each prompt completed (the reason's element name), in order. */
  reasons: string[];
  /** The digits of every match (each should be this call's SIPp number). */
  digits: string[];
  /** A prompt is under way. */
  busy: boolean;
  error?: string;
}

/** The Rayo client of a level: answers every offer, starts prompts, collects completions. */
class RayoClient {
  readonly calls = new Map<string, RayoCallState>();
  private readonly byComponent = new Map<string, RayoCallState>();
  private readonly pending = new Map<string, (stanza: XmppStanza) => void>();
  private connection: XmppLoadConnection | undefined;
  private ids = 0;
  errors: string[] = [];
  /** Called when a call's prompt completed. */
  onComplete: (call: RayoCallState) => void = () => {};

  async connect(port: number): Promise<void> {
    this.connection = await xmppLogin({ host: '127.0.0.1', port, domain: DOMAIN, user: RAYO_USER, password: PASSWORD, resource: 'bench', mechanism: 'SCRAM-SHA-1', onStanza: (s) => this.onStanza(s) });
    // Available to the domain (XEP example 012); the ping's answer says the presence was read.
    await this.connection.send(`<presence to='${DOMAIN}'>${CLIENT_CAPS}<show>chat</show></presence>`);
    await this.iq(DOMAIN, `<ping xmlns='urn:xmpp:ping'/>`, 'get');
  }

  /** Sends an iq; resolves with its answer, or after 30 s with an error stanza of its own (`bench-timeout`). */
  iq(to: string, payload: string, type: 'get' | 'set' = 'set'): Promise<XmppStanza> {
    const id = `b${++this.ids}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ name: 'iq', attributes: { id, type: 'error' }, children: [{ name: 'bench-timeout', attributes: {}, children: [], text: '' }], text: '' });
      }, 30_000);
      this.pending.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      void this.connection!.send(`<iq type='${type}' id='${id}' to='${to}'>${payload}</iq>`);
    });
  }

  private onStanza(s: XmppStanza): void {
    if (s.name === 'iq') {
      const id = s.attributes.id ?? '';
      const done = this.pending.get(id);
      if (done) {
        this.pending.delete(id);
        done(s);
      }
      return;
    }
    if (s.name !== 'presence') return;
    const from = s.attributes.from ?? '';
    if (childNamed(s, 'offer')) {
      const state: RayoCallState = { jid: from, answered: false, sentAt: [], reasons: [], digits: [], busy: false };
      this.calls.set(from, state);
      void this.iq(from, `<answer xmlns='${NS_RAYO}'/>`).then((answer) => {
        if (answer.attributes.type === 'result') state.answered = true;
        else this.error(`answer: ${answer.children.map((c) => c.children.map((e) => e.name).join(' ')).join(' ')}`);
      });
      return;
    }
    const complete = childNamed(s, 'complete');
    const call = this.byComponent.get(from);
    if (complete && call) {
      this.byComponent.delete(from);
      const reason = complete.children[0];
      call.reasons.push(reason?.name ?? 'none');
      if (reason?.name === 'match') call.digits.push(/<input[^>]*>([\s\S]*?)<\/input>/.exec(reason.text)?.[1]?.replace(/\s+/g, '') ?? '');
      call.busy = false;
      this.onComplete(call);
    }
  }

  private error(text: string): void {
    if (this.errors.length < 5) this.errors.push(text);
  }

  /** Starts the prompt on a call; its component is known when the iq's result names it. */
  async prompt(call: RayoCallState, xml: string): Promise<void> {
    call.busy = true;
    call.sentAt.push(performance.timeOrigin + performance.now());
    const answer = await this.iq(call.jid, xml);
    const uri = /^xmpp:(.+)$/.exec(childNamed(answer, 'ref')?.attributes.uri ?? '')?.[1];
    if (answer.attributes.type !== 'result' || !uri) {
      call.error = `prompt refused: ${answer.children.map((c) => c.name + ':' + c.children.map((e) => e.name).join(' ')).join(' ')}`;
      call.busy = false;
      this.error(call.error);
      return;
    }
    this.byComponent.set(uri, call);
  }

  close(): void {
    this.connection?.destroy();
  }
}

/** The bench's HTTP server of the prompt: a 1 kHz tone of `ms` as an 8 kHz 16-bit WAV. */
async function promptServer(ms: number): Promise<{ server: Server; url: string }> {
  const samples = new Int16Array(8 * ms);
  for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 1000 * i) / 8000));
  const wav = encodeWav(samples, { sampleRate: 8000 });
  const server = createServer((request, response) => {
    if (request.url === '/prompt.wav') response.writeHead(200, { 'content-type': 'audio/wav', 'content-length': wav.length }).end(wav);
    else response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/prompt.wav` };
}

class Unavailable extends Error {}

async function level(calls: number, promptUrl: string, pinned: boolean, o: RayoBenchOptions): Promise<RayoTrial> {
  let server: RayoServer;
  try {
    server = await startRayoServer(pinned, o.nice, o.cpuProfileDir);
  } catch (err) {
    throw new Unavailable((err as Error).message.split('\n')[0]!);
  }
  const media = await startCallerMedia(o.digitDelayMs, o.nice);
  const probe = pinned ? await MachineProbe.start(cpus().length - 1, o.nice) : undefined;
  const client = new RayoClient();
  let sipp: SippProcess | undefined;
  const clock = (): number => performance.timeOrigin + performance.now();
  try {
    if (pinned) await pin(media.child.pid, 0);
    await client.connect(server.ports.xmpp).catch((err: Error) => {
      throw new Unavailable(`the Rayo client could not log in: ${err.message.split('\n')[0]}`);
    });
    const setupSeconds = calls / o.setupRate;
    // SIPp hangs up after the hold: longer than setting up, the steady state, the window and its end.
    const holdMs = Math.round((setupSeconds + o.windowSeconds + 60) * 1000);
    sipp = await startSipp({
      scenario: join(SCENARIOS, 'uac-rayo.xml'),
      remote: `127.0.0.1:${server.ports.sip}`,
      keys: { rtp_ip: '127.0.0.1', rtp_port: media.port, domain: DOMAIN },
      args: ['-s', RAYO_USER, '-au', CALLER, '-ap', PASSWORD, '-r', String(o.setupRate), '-m', String(calls), '-l', String(calls), '-d', String(holdMs), '-recv_timeout', '10000'],
    });
    if (pinned) await pin(sipp.pid, 0);
    if (o.nice) await runCommand('renice', ['-n', String(o.nice), '-p', String(sipp.pid)]).catch(() => undefined);
    media.send({ tail: sipp.logFile });
    // Every call answered and streaming, or no progress for 10 s.
    let streaming = 0;
    let progress = Date.now();
    let last = -1;
    for (;;) {
      await sleep(500);
      media.send({ status: true });
      streaming = await media.answer<number>('status');
      const answered = [...client.calls.values()].filter((c) => c.answered).length;
      if (answered + streaming > last) progress = Date.now();
      last = answered + streaming;
      if ((answered >= calls && streaming >= calls) || Date.now() - progress > 10_000) break;
      const exited = sipp.child.process.exitCode !== null || sipp.child.process.signalCode !== null;
      if (exited || (streaming === 0 && (sipp.stats()?.failed ?? 0) > 0)) break;
    }
    const answered = [...client.calls.values()].filter((c) => c.answered);
    if (answered.length === 0) {
      const result = await sipp.stop(0);
      sipp = undefined;
      throw new Unavailable(client.errors[0] ?? sippFailure('ximssd', 'INVITE', result));
    }
    // The calls up and streaming, before any prompt: the late frames of the steady state.
    const idle0 = await scrape(server.ports.http);
    await sleep(2000);
    const idle1 = await scrape(server.ports.http);
    const idleFrames = (idle1.get('ximssd_media_frames_total') ?? 0) - (idle0.get('ximssd_media_frames_total') ?? 0);
    const idleLate = (idle1.get('ximssd_media_late_frames_total') ?? 0) - (idle0.get('ximssd_media_late_frames_total') ?? 0);

    // The window: prompts started over spreadMs, each call starting its next prompt as soon as
    // the last one completed, for windowSeconds; then the prompts under way are let finish.
    const before = await scrape(server.ports.http);
    probe?.start();
    const cpu0 = treeCpuSeconds(server.pid);
    const t0 = clock();
    const windowEnd = t0 + o.windowSeconds * 1000;
    const xml =
      `<prompt xmlns='urn:xmpp:rayo:prompt:1' barge-in='true'><output xmlns='urn:xmpp:rayo:output:1'><document url='${promptUrl}'/></output>` +
      `<input xmlns='urn:xmpp:rayo:input:1' mode='dtmf' initial-timeout='15000' inter-digit-timeout='5000'><grammar url='builtin:dtmf/digits?length=4'/></input></prompt>`;
    client.onComplete = (call) => {
      if (clock() < windowEnd && call.error === undefined) void client.prompt(call, xml);
    };
    await Promise.all(answered.map((call, i) => sleep((i * o.spreadMs) / answered.length).then(() => client.prompt(call, xml))));
    await sleep(windowEnd - clock());
    const deadline = clock() + o.promptMs + o.digitDelayMs + 20_000;
    while (clock() < deadline && answered.some((c) => c.busy)) await sleep(50);
    const windowSeconds = (clock() - t0) / 1000;
    const serverCpu = (treeCpuSeconds(server.pid) - cpu0) / windowSeconds;
    const after = await scrape(server.ports.http);
    const machine = probe ? await probe.report() : undefined;
    media.send({ report: true });
    const report = await media.answer<RayoEndpointReport>('report');

    // Tie each Rayo call to its SIPp call by the digits it matched; the latency of its k-th
    // prompt is from that prompt's iq to the k-th prompt onset heard on the SIPp call.
    const bySipp = new Map(report.calls.map((c) => [c.call, c]));
    const seen = new Set<number>();
    const latencies: number[] = [];
    let prompts = 0;
    let matched = 0;
    const reasons = new Map<string, number>();
    const other = (why: string): void => void reasons.set(why, (reasons.get(why) ?? 0) + 1);
    for (const call of answered) {
      prompts += call.sentAt.length;
      const number = call.digits[0] !== undefined && /^\d{4}$/.test(call.digits[0]) ? Number(call.digits[0]) : undefined;
      const sippCall = number === undefined ? undefined : bySipp.get(number);
      if (!sippCall || seen.has(sippCall.call)) {
        other(call.error ?? `no match tied to a call (${call.reasons.join(' ') || 'no complete'})`);
        continue;
      }
      seen.add(sippCall.call);
      let matches = 0;
      for (const reason of call.reasons) {
        if (reason !== 'match') other(reason);
        else if (call.digits[matches++] === call.digits[0]) matched++;
        else other('a match with another call\'s digits');
      }
      if (call.busy) other('no complete');
      for (let k = 0; k < Math.min(call.sentAt.length, sippCall.onsets.length); k++) {
        const latency = sippCall.onsets[k]! - call.sentAt[k]!;
        if (latency > 0) latencies.push(latency);
      }
    }
    const frames = (after.get('ximssd_media_frames_total') ?? 0) - (before.get('ximssd_media_frames_total') ?? 0);
    const lateFrames = (after.get('ximssd_media_late_frames_total') ?? 0) - (before.get('ximssd_media_late_frames_total') ?? 0);
    const trial = { calls, answered: answered.length, prompts, matched, frames, lateFrames, idleFrames, idleLate, windowSeconds, serverCpu, latencies, machineStalls: machine?.stalls, machineWorstMs: machine?.worst };
    const verdict = judgeRayo(trial);
    if (!verdict.ok && reasons.size) verdict.why += ` (others: ${[...reasons].map(([r, n]) => `${r} × ${n}`).join(', ')})`;
    return { ...trial, ...verdict };
  } finally {
    await sipp?.stop(0);
    client.close();
    await media.stop();
    await probe?.stop();
    await server.stop();
  }
}

export async function rayoBench(o: RayoBenchOptions): Promise<RayoResult> {
  const sipp = await ensureSipp();
  if (!sipp.available) return { available: false, reason: sipp.reason, trials: [] };
  const pinned = cpus().length > 1 && (await runCommand('taskset', ['-p', String(process.pid)]).then(() => true, () => false));
  o.log(pinned ? `  ximssd pinned to CPU ${cpus().length - 1} (taskset); SIPp and the callers' media on CPU 0` : '  ximssd not pinned (one CPU, or no taskset): everything shares the machine');
  if (o.nice) o.log(`  the server, SIPp and the callers' media run at nice ${o.nice}`);
  const prompt = await promptServer(o.promptMs);
  const trials: RayoTrial[] = [];
  try {
    const calls = await searchRate(
      async (n) => {
        const t = await level(n, prompt.url, pinned, o);
        trials.push(t);
        const late = t.frames ? (t.lateFrames / t.frames) * 100 : 0;
        o.log(
          `  ${String(n).padStart(5)} calls: ${t.answered} answered, ${t.matched} of ${t.prompts} prompts matched; window ${t.windowSeconds.toFixed(1)} s, ${t.frames} frames, ${late.toFixed(2)}% late (before the prompts: ${t.idleLate} of ${t.idleFrames}); ` +
            (t.machineStalls !== undefined ? `probe on the server's CPU: ${t.machineStalls} stalls > 10 ms (worst ${t.machineWorstMs!.toFixed(0)} ms); ` : '') +
            `server CPU ${Math.round(t.serverCpu * 100)}% (${((t.serverCpu * 100) / n).toFixed(2)}% of a core per call); ` +
            (t.latencies.length ? `command latency median ${median(t.latencies).toFixed(1)} ms, p99 ${percentile(t.latencies, 0.99).toFixed(1)} ms` : 'no latency measured') +
            `; machine load ${loadavg()[0]!.toFixed(1)}` +
            (t.ok ? '' : ` → fails: ${t.why}`),
        );
        return t.ok;
      },
      o.startCalls,
      o.maxCalls,
      0.1,
    );
    const best = trials.filter((t) => t.ok && t.calls === calls).at(-1);
    o.log(
      `  Rayo-controlled calls with a prompt and DTMF (< 1% late frames): ${calls}, target ≥ ${TARGET_CALLS} on one core` +
        (best ? `; ${((best.serverCpu * 100) / calls).toFixed(2)}% of a core per call; command latency median ${median(best.latencies).toFixed(1)} ms, p99 ${percentile(best.latencies, 0.99).toFixed(1)} ms` : ''),
    );
    return { available: true, calls, best, trials, pinned, nice: o.nice };
  } catch (err) {
    if (err instanceof Unavailable) return { available: false, reason: err.message, trials };
    throw err;
  } finally {
    await new Promise<void>((resolve) => prompt.server.close(() => resolve()));
  }
}

/** The area's rows: calls sustained ÷ the target, CPU per call, late frames, command latency. */
export function rayoFigures(result: RayoResult): Figure[] {
  if (!result.available) return [{ name: 'Rayo-controlled calls, prompt + DTMF (< 1% late frames)', value: null, unit: 'calls', target: `≥ ${TARGET_CALLS} on one core`, ratio: null, note: result.reason }];
  const rows: Figure[] = [
    { name: `Rayo-controlled calls, prompt + DTMF (< 1% late frames${result.nice ? `, nice ${result.nice}` : ''})`, value: result.calls, unit: 'calls', target: `≥ ${TARGET_CALLS} on one core`, ratio: result.calls / TARGET_CALLS, ...(result.pinned ? {} : { note: 'not pinned to one core' }) },
  ];
  const b = result.best;
  if (b) {
    rows.push({ name: '  server CPU per call at that level', value: (b.serverCpu * 100) / b.calls, unit: '% core', target: `≤ ${(100 / TARGET_CALLS).toFixed(1)} % core`, ratio: null });
    rows.push({ name: '  late frames at that level', value: b.frames ? (b.lateFrames / b.frames) * 100 : null, unit: '%', target: '< 1 %', ratio: null });
    if (b.machineStalls !== undefined) rows.push({ name: "  stalls > 10 ms of a probe on the server's CPU then", value: b.machineStalls, unit: 'stalls', target: '-', ratio: null });
    if (b.latencies.length) {
      rows.push({ name: '  Rayo command latency (prompt iq → first RTP), median', value: median(b.latencies), unit: 'ms', target: '-', ratio: null });
      rows.push({ name: '  Rayo command latency (prompt iq → first RTP), p99', value: percentile(b.latencies, 0.99), unit: 'ms', target: '-', ratio: null });
    }
  }
  return rows;
}
