/**
 * The `xmpp` bench area (issue 14): ximssd's XMPP c2s service beside Prosody 0.12 on this
 * machine, with the same accounts, the same load client (bench/lib/xmpp-client.ts: STARTTLS,
 * SASL, bind, initial presence) and the same three measurements, each on a freshly started
 * server, ximssd's then Prosody's before the next measurement:
 *
 * - memory: resident memory per idle connection — RSS after one login, then after
 *   `connections` more (each account logged in from several resources) have logged in and
 *   the server was left alone for a while; (after − before) ÷ connections.
 * - routing: one-to-one message routing — `pairs` senders each send `messages` chats to their
 *   partner's bare JID at once; every delivery is counted at the receivers; delivered ÷ the
 *   time from the first send to the last delivery, and the server's CPU per message.
 * - login: full logins (TCP, STARTTLS, SASL, bind, initial presence, one iq answered) per
 *   second with `loginConcurrency` in flight, each closed once logged in.
 *
 * Prosody runs with what the comparison needs and nothing more: TLS (required), SASL, roster,
 * presence, disco, ping (modules below), Nagle's algorithm off. ximssd is started the bench's usual way
 * (bench/lib/ximssd.ts) with `--xmpp` on a free port; its accounts are created through its
 * own AccountService (dist/cli/common.js's withStore) in one child process.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureProsody, startProsody } from '../../test/fixtures/prosody.js';
import { cpuSeconds, meter, openFileLimit, rssKb, runCommand, sleep } from './proc.js';
import { chatMessage, xmppLogin, type LoadMechanism, type XmppLoadConnection } from './xmpp-client.js';
import { DOMAIN, PASSWORD, ROOT, startXimssd } from './ximssd.js';
import type { Figure } from './figures.js';

export interface XmppBenchOptions {
  /** Sender → receiver pairs of the routing measurement (2 × pairs accounts in all). */
  pairs: number;
  /** Messages each sender sends. */
  messages: number;
  /** Logins of the login-rate measurement, and how many at a time. */
  logins: number;
  loginConcurrency: number;
  /** Idle connections of the memory measurement, and how many log in at a time. */
  connections: number;
  connectConcurrency: number;
  mechanism: LoadMechanism;
  settleMs: number;
  cpuProfileDir?: string;
  log: (line: string) => void;
}

export interface XmppMemory {
  connections: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  perConnectionKb: number;
  loginSeconds: number;
}

export interface XmppRouting {
  pairs: number;
  perSender: number;
  expected: number;
  delivered: number;
  /** Error messages that came back to the senders. */
  bounced: number;
  seconds: number;
  rate: number;
  /** Server CPU seconds per delivered message, in µs. */
  cpuPerMessageUs: number;
  /** Shares of a core: the load client (this process), and everything else on the machine. */
  clientCpu: number;
  otherCpu: number;
}

export interface XmppLogins {
  count: number;
  concurrency: number;
  mechanism: LoadMechanism;
  failures: number;
  seconds: number;
  rate: number;
  cpuPerLoginUs: number;
  clientCpu: number;
  otherCpu: number;
}

type Measured<T> = T | { failed: string };

export type XmppSide =
  | { available: false; reason: string }
  | { available: true; server: string; memory: Measured<XmppMemory>; routing: Measured<XmppRouting>; login: Measured<XmppLogins> };

export interface XmppResult {
  ximssd: XmppSide;
  prosody: XmppSide;
}

/** Prosody's modules in the comparison (the ximssd side offers at least as much). */
export const PROSODY_BENCH_MODULES = ['roster', 'saslauth', 'tls', 'disco', 'ping', 'presence', 'posix'] as const;

/** Loopback source addresses the connections are spread over (per-address limits, ephemeral ports). */
const SOURCE_ADDRESSES = 20;
const sourceAddress = (k: number): string => `127.0.0.${1 + (k % SOURCE_ADDRESSES)}`;
/** The bench accounts' localparts. */
const accountName = (i: number): string => `xb${i}`;
/** File descriptors this process needs besides the connections. */
const SPARE_FDS = 300;

/** A server under measurement. */
interface Target {
  pid: number;
  port: number;
  domain: string;
  stop(): Promise<void>;
}

export async function xmppBench(options: XmppBenchOptions): Promise<XmppResult> {
  const accounts = Array.from({ length: 2 * options.pairs }, (_, i) => accountName(i));
  const fds = ensureFileLimit(Math.max(options.connections, 2 * options.pairs, options.loginConcurrency) + SPARE_FDS, options.log);
  if (fds !== undefined) {
    const unavailable = { available: false as const, reason: fds };
    return { ximssd: unavailable, prosody: unavailable };
  }
  const starter = ximssdStarter(accounts, options);
  try {
    // Measurement by measurement, ximssd then Prosody: the two sides of a figure run close
    // together in time, under about the same load from whatever else runs on the machine.
    const sides = [
      new SideRun('ximssd', starter.start),
      new SideRun('Prosody', () => startBenchProsody(accounts, options.mechanism)),
    ] as const;
    for (const side of sides) await side.measure('memory', (t) => measureMemory(t, accounts, options), options.log);
    for (const side of sides) await side.measure('routing', (t) => measureRouting(t, options), options.log);
    for (const side of sides) await side.measure('login', (t) => measureLogins(t, accounts, options), options.log);
    return { ximssd: sides[0].result(), prosody: sides[1].result() };
  } finally {
    starter.cleanup();
  }
}

/** One server's measurements: each on a freshly started server; none more once it cannot start. */
class SideRun {
  private reason: string | undefined;
  private server = '';
  private readonly values: { memory?: Measured<XmppMemory>; routing?: Measured<XmppRouting>; login?: Measured<XmppLogins> } = {};

  constructor(
    private readonly name: string,
    private readonly start: () => Promise<Target & { server: string }>,
  ) {}

  async measure<W extends 'memory' | 'routing' | 'login'>(
    what: W,
    run: (target: Target) => Promise<NonNullable<SideRun['values'][W]>>,
    log: (line: string) => void,
  ): Promise<void> {
    if (this.reason !== undefined) return;
    let target: (Target & { server: string }) | undefined;
    try {
      target = await this.start();
    } catch (err) {
      this.reason = `${this.name} cannot be started: ${(err as Error).message.split('\n').slice(0, 6).join('\n')}`;
      log(`  ${this.reason}`);
      return;
    }
    if (!this.server) log(`  ${(this.server = target.server)}`);
    let value: NonNullable<SideRun['values'][W]>;
    try {
      value = await run(target);
    } catch (err) {
      log(`  ${this.name} ${what}: ${(err as Error).message}`);
      value = { failed: (err as Error).message.split('\n')[0]! } as NonNullable<SideRun['values'][W]>;
    } finally {
      await target.stop();
    }
    this.values[what] = value;
    report(this.name, what, value, log);
  }

  result(): XmppSide {
    const { memory, routing, login } = this.values;
    if (this.reason !== undefined || !memory || !routing || !login) return { available: false, reason: this.reason ?? 'not measured' };
    return { available: true, server: this.server, memory, routing, login };
  }
}

/**
 * Raises this process's open-file limit (prlimit, as root) when it is below `needed`; the
 * servers started afterwards inherit it. Returns the reason when it cannot be had.
 */
function ensureFileLimit(needed: number, log: (line: string) => void): string | undefined {
  const limit = openFileLimit();
  if (limit === undefined || limit >= needed) return undefined;
  const target = Math.max(needed, 65_536);
  const result = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${target}`], { encoding: 'utf8' });
  const now = openFileLimit();
  if (now !== undefined && now >= needed) {
    log(`open-file limit raised from ${limit} to ${now} (prlimit)`);
    return undefined;
  }
  return `the open-file limit is ${limit} but the xmpp area needs ${needed} (prlimit failed: ${(result.stderr || result.error?.message || '?').trim()}): run with ulimit -n ${target}`;
}

function report(name: string, what: 'memory' | 'routing' | 'login', value: Measured<XmppMemory> | Measured<XmppRouting> | Measured<XmppLogins>, log: (line: string) => void): void {
  const pct = (share: number): string => `${Math.round(share * 100)}%`;
  const f = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  if ('failed' in value) return log(`  ${name} ${what}: not measured: ${value.failed}`);
  if ('perConnectionKb' in value) {
    log(`  ${name} memory: RSS ${f(value.rssBeforeKb)} KB → ${f(value.rssAfterKb)} KB with ${f(value.connections)} idle connections: ${f(value.perConnectionKb, 1)} KB each (logged in in ${f(value.loginSeconds, 1)} s)`);
  } else if ('perSender' in value) {
    log(`  ${name} routing: ${f(value.delivered)} of ${f(value.expected)} delivered (${f(value.bounced)} bounced) in ${f(value.seconds, 2)} s: ${f(value.rate)} msg/s, server CPU ${f(value.cpuPerMessageUs, 1)} µs/msg; load client ${pct(value.clientCpu)}, other processes ${pct(value.otherCpu)} of a core`);
  } else {
    log(`  ${name} login: ${f(value.count - value.failures)} of ${f(value.count)} ${value.mechanism} logins in ${f(value.seconds, 2)} s: ${f(value.rate)} login/s, server CPU ${f(value.cpuPerLoginUs)} µs/login; load client ${pct(value.clientCpu)}, other processes ${pct(value.otherCpu)} of a core`);
  }
}

/** Logs in `count` connections, at most `concurrency` at a time; the first failure stops the rest. */
async function loginMany(
  target: Target,
  count: number,
  concurrency: number,
  mechanism: LoadMechanism,
  who: (k: number) => { user: string; resource: string },
  onLogin: (c: XmppLoadConnection) => void,
  stopAtFailure = true,
): Promise<{ failed: number; firstError: string | undefined }> {
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async (): Promise<void> => {
    while (next < count && !(stopAtFailure && firstError)) {
      const k = next++;
      const { user, resource } = who(k);
      try {
        onLogin(await xmppLogin({ host: '127.0.0.1', port: target.port, domain: target.domain, user, password: PASSWORD, resource, mechanism, localAddress: sourceAddress(k) }));
      } catch (err) {
        failed++;
        firstError ??= `${user}/${resource}: ${(err as Error).message}`;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { failed, firstError };
}

async function measureMemory(target: Target, accounts: string[], options: XmppBenchOptions): Promise<XmppMemory> {
  const open: XmppLoadConnection[] = [];
  try {
    open.push(await xmppLogin({ host: '127.0.0.1', port: target.port, domain: target.domain, user: accounts[0]!, password: PASSWORD, resource: 'warmup', mechanism: options.mechanism }));
    await sleep(options.settleMs);
    const rssBeforeKb = rssKb(target.pid);
    const t0 = performance.now();
    // Connection k is account k mod n, resource m<k div n>: several devices per account.
    const { firstError } = await loginMany(
      target,
      options.connections,
      options.connectConcurrency,
      options.mechanism,
      (k) => ({ user: accounts[k % accounts.length]!, resource: `m${Math.floor(k / accounts.length)}` }),
      (c) => open.push(c),
    );
    const loginSeconds = (performance.now() - t0) / 1000;
    if (firstError) throw new Error(`${open.length - 1} of ${options.connections} connections logged in, then: ${firstError}`);
    await sleep(options.settleMs);
    const rssAfterKb = rssKb(target.pid);
    return { connections: options.connections, rssBeforeKb, rssAfterKb, perConnectionKb: (rssAfterKb - rssBeforeKb) / options.connections, loginSeconds };
  } finally {
    for (const c of open) c.destroy();
  }
}

async function measureRouting(target: Target, options: XmppBenchOptions): Promise<XmppRouting> {
  const senders: XmppLoadConnection[] = new Array(options.pairs);
  const receivers: XmppLoadConnection[] = new Array(options.pairs);
  const all: XmppLoadConnection[] = [];
  try {
    const { firstError } = await loginMany(
      target,
      2 * options.pairs,
      options.connectConcurrency,
      options.mechanism,
      (k) => ({ user: accountName(k), resource: 'r' }),
      (c) => {
        all.push(c);
        const k = Number(/^xb(\d+)@/.exec(c.jid)?.[1] ?? NaN);
        if (!Number.isInteger(k)) throw new Error(`unexpected bound JID ${c.jid}`);
        (k % 2 === 0 ? senders : receivers)[k >> 1] = c;
      },
    );
    if (firstError) throw new Error(`logging in the ${options.pairs} pairs failed: ${firstError}`);
    await sleep(options.settleMs);
    const expected = options.pairs * options.messages;
    const body = 'routing benchmark message: about the size of a short chat line';
    const batches = senders.map((_, i) => {
      const to = `${accountName(2 * i + 1)}@${target.domain}`;
      let xml = '';
      for (let m = 0; m < options.messages; m++) xml += chatMessage(to, `s${i}m${m}`, body);
      return xml;
    });
    const delivered = (): number => receivers.reduce((sum, r) => sum + r.received, 0);
    const bounced = (): number => senders.reduce((sum, s) => sum + s.bounced, 0);
    const measured = meter(() => cpuSeconds(target.pid));
    const t0 = performance.now();
    await Promise.all(senders.map((s, i) => s.send(batches[i]!)));
    // Until every message is in, or nothing more came for a while.
    let last = 0;
    let lastAt = performance.now();
    for (;;) {
      const now = delivered();
      if (now !== last) {
        last = now;
        lastAt = performance.now();
      }
      if (now >= expected || now + bounced() >= expected || performance.now() - lastAt > 10_000) break;
      await sleep(5);
    }
    const seconds = (lastAt - t0) / 1000;
    const m = measured();
    const cpu = m.server;
    if (last < expected) options.log(`  routing: only ${last} of ${expected} messages arrived, ${bounced()} came back as errors`);
    return { pairs: options.pairs, perSender: options.messages, expected, delivered: last, bounced: bounced(), seconds, rate: last / seconds, cpuPerMessageUs: last ? (cpu / last) * 1e6 : 0, clientCpu: m.client / m.seconds, otherCpu: m.other };
  } finally {
    for (const c of all) c.destroy();
  }
}

async function measureLogins(target: Target, accounts: string[], options: XmppBenchOptions): Promise<XmppLogins> {
  // A warm-up: the first logins fill caches (TLS, account look-ups) on both servers.
  await loginMany(target, Math.min(50, options.logins), 10, options.mechanism, (k) => ({ user: accounts[k % accounts.length]!, resource: `w${k}` }), (c) => c.close());
  await sleep(500);
  const measured = meter(() => cpuSeconds(target.pid));
  const { failed, firstError } = await loginMany(
    target,
    options.logins,
    options.loginConcurrency,
    options.mechanism,
    (k) => ({ user: accounts[k % accounts.length]!, resource: `l${k}` }),
    (c) => c.close(),
    false,
  );
  const { seconds, server: cpu, client, other } = measured();
  if (failed === options.logins) throw new Error(`every login failed: ${firstError ?? '?'}`);
  if (firstError) options.log(`  login: ${failed} failed, the first: ${firstError}`);
  const ok = options.logins - failed;
  return { count: options.logins, concurrency: options.loginConcurrency, mechanism: options.mechanism, failures: failed, seconds, rate: ok / seconds, cpuPerLoginUs: (cpu / ok) * 1e6, clientCpu: client / seconds, otherCpu: other };
}

// ---------------------------------------------------------------------------------------
// The two servers

function prosodyVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'prosody'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

async function startBenchProsody(accounts: string[], mechanism: LoadMechanism): Promise<Target & { server: string }> {
  const availability = await ensureProsody();
  if (!availability.available) throw new Error(availability.reason);
  const users = Object.fromEntries(accounts.map((a) => [a, PASSWORD]));
  // Prosody's default storage of passwords (SCRAM keys, 10,000 iterations), as ximssd keeps
  // SCRAM verifiers: a SCRAM login is then a lookup on both, and PLAIN a key derivation.
  const passwordHash = mechanism === 'SCRAM-SHA-256' ? 'SHA-256' : 'SHA-1';
  // Nagle off (its default is on): else a TLS handshake waits for delayed ACKs on loopback
  // (some 40 ms a login) and the login figure measures waiting, not work. Node's sockets
  // write a handshake flight at once.
  const prosody = await startProsody({
    domain: DOMAIN,
    users,
    modules: PROSODY_BENCH_MODULES,
    authentication: 'internal_hashed',
    passwordHash,
    extraConfig: 'network_settings = { nagle = false }',
  });
  return {
    pid: prosody.pid,
    port: prosody.port,
    domain: DOMAIN,
    server: `Prosody ${prosodyVersion()}, pid ${prosody.pid}, c2s ${prosody.port} (STARTTLS required; internal_hashed ${passwordHash}; modules ${PROSODY_BENCH_MODULES.join(' ')}; epoll, Nagle off)`,
    stop: () => prosody.stop(),
  };
}

/**
 * Starts of ximssd with its XMPP listener on one data directory: the bench accounts are
 * created once, through its AccountService (one child process for all of them: `account add`
 * would start a process per account), and found there by the later starts.
 */
function ximssdStarter(accounts: string[], options: XmppBenchOptions): { start: () => Promise<Target & { server: string }>; cleanup: () => void } {
  const dataDir = mkdtempSync(join(tmpdir(), 'ximssd-xmpp-bench-'));
  let created = false;
  return {
    async start() {
      const server = await startXimssd({
        xmpp: true,
        dataDir,
        cpuProfileDir: options.cpuProfileDir,
        // The load client plays thousands of clients from 20 addresses, many logging in at once.
        config: { limits: { connectionsPerAddress: 100_000, preLoginConnections: 100_000 } },
      });
      try {
        if (!created) {
          const t0 = performance.now();
          await createXimssdAccounts(dataDir, accounts.map((a) => `${a}@${DOMAIN}`));
          created = true;
          options.log(`  ximssd: ${accounts.length} accounts created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        }
        if (!server.ports.xmpp) throw new Error('ximssd started without an XMPP port');
        return {
          pid: server.pid,
          port: server.ports.xmpp,
          domain: DOMAIN,
          server: `ximssd, pid ${server.pid}, XMPP ${server.ports.xmpp} (STARTTLS)`,
          stop: () => server.stop(),
        };
      } catch (err) {
        await server.stop();
        throw err;
      }
    },
    cleanup: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

/** Creates accounts (full addresses, password PASSWORD) in the store of `dataDir`, beside the running server. */
export async function createXimssdAccounts(dataDir: string, addresses: string[], dist = join(ROOT, 'dist')): Promise<void> {
  const script = `
    const { withStore } = await import(${JSON.stringify(pathToFileURL(join(dist, 'cli', 'common.js')).href)});
    const [dataDir, password, ...addresses] = process.argv.slice(1);
    await withStore({ data: dataDir, logLevel: 'warn' }, async ({ accounts }) => {
      let next = 0;
      // scrypt runs on libuv's threads: a few at a time keep both cores busy.
      const worker = async () => { while (next < addresses.length) await accounts.create({ address: addresses[next++], password }); };
      await Promise.all([worker(), worker(), worker(), worker()]);
    });`;
  await runCommand(process.execPath, ['--input-type=module', '-e', script, dataDir, PASSWORD, ...addresses]);
}

// ---------------------------------------------------------------------------------------
// Presenting the figures (bench/run.ts)

type Reading = { value: number; cpu?: number } | { note: string };

function pick(side: XmppSide, what: 'memory' | 'routing' | 'login'): Reading {
  if (!side.available) return { note: side.reason };
  const m = side[what];
  if ('failed' in m) return { note: m.failed };
  if ('perConnectionKb' in m) return { value: m.perConnectionKb };
  if ('perSender' in m) {
    // A server that lost messages gets no rate.
    if (m.delivered < m.expected) return { note: `only ${m.delivered} of ${m.expected} messages delivered (${m.bounced} bounced)` };
    return { value: m.rate, cpu: m.cpuPerMessageUs };
  }
  return { value: m.rate, cpu: m.cpuPerLoginUs };
}

const valueOf = (p: Reading): number | null => ('value' in p ? p.value : null);
const cpuOf = (p: Reading): number | null => ('value' in p && p.cpu !== undefined ? p.cpu : null);
const noteOf = (p: Reading): string | undefined => ('note' in p ? p.note : undefined);
const ratio = (x: number | null, p: number | null): number | null => (x !== null && p !== null && p !== 0 ? x / p : null);

/** The area's rows of the bench table: ximssd ÷ Prosody on each figure. */
export function xmppFigures(result: XmppResult, o: Pick<XmppBenchOptions, 'pairs' | 'messages' | 'logins' | 'loginConcurrency' | 'connections' | 'mechanism'>): Figure[] {
  const rows: Figure[] = [];
  const pair = (what: 'memory' | 'routing' | 'login', name: string, unit: string, target: string, cpuName?: string): void => {
    const x = pick(result.ximssd, what);
    const p = pick(result.prosody, what);
    rows.push({ name: `ximssd ${name}`, value: valueOf(x), unit, target, ratio: ratio(valueOf(x), valueOf(p)), note: noteOf(x) });
    rows.push({ name: `Prosody ${name}`, value: valueOf(p), unit, target: '-', ratio: null, note: noteOf(p) });
    if (cpuName) {
      if (cpuOf(x) !== null) rows.push({ name: `  ximssd CPU per ${cpuName}`, value: cpuOf(x), unit: 'µs', target: '-', ratio: ratio(cpuOf(x), cpuOf(p)) });
      if (cpuOf(p) !== null) rows.push({ name: `  Prosody CPU per ${cpuName}`, value: cpuOf(p), unit: 'µs', target: '-', ratio: null });
    }
  };
  const n = (v: number): string => v.toLocaleString('en-US');
  pair('routing', `XMPP routing, ${n(o.pairs)} pairs × ${n(o.messages)} to the bare JID`, 'msg/s', '≥ 1 × Prosody', 'routed message');
  pair('login', `XMPP logins (TLS+${o.mechanism}+bind+presence, ${o.loginConcurrency} at a time)`, 'login/s', '≥ 1 × Prosody', 'login');
  pair('memory', `RSS per idle XMPP connection (${n(o.connections)})`, 'KB', '≤ 1 × Prosody');
  return rows;
}
