/**
 * A steady SIP call load through ximssd, to measure (and profile) its CPU per call at one
 * rate: the `sip` area's servers and scenarios (lib/sip-servers.ts, bench/sip/), but one
 * rate for a fixed time instead of a search, repeated `--runs` times on the same server.
 *
 *   npm run build && node --import tsx bench/sip-load.ts [--rate N (400)] [--seconds S (10)]
 *       [--runs N (1)] [--hold MS (1000)] [--profile DIR]
 *       [--main PATH (dist/main.js: another build to compare with)] [--node-arg ARG ...] [--threads]
 *
 * With --linger S, the server is left without calls for S seconds after the last run (longer
 * than timer J's 32 s, and every transaction is gone) and its memory shown again.
 *
 * With --threads, each run also shows the CPU of each of the server's threads (the main thread,
 * SIP's UDP thread, V8's compiler and collector threads).
 *
 * With --profile, ximssd runs under `node --cpu-prof --cpu-prof-dir DIR` and the profile is
 * written when it stops; summarise it with bench/profile-summary.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runSipp, startSipp } from '../test/fixtures/sipp.js';
import { freePort, rssKb, sleep, treeCpuSeconds } from './lib/proc.js';
import { CALLEE, registerCallee, SCENARIOS, sippFailure, startXimssdServer } from './lib/sip-servers.js';
import { DOMAIN, PASSWORD } from './lib/ximssd.js';

const { values: flags } = parseArgs({
  options: {
    rate: { type: 'string' },
    seconds: { type: 'string' },
    runs: { type: 'string' },
    hold: { type: 'string' },
    profile: { type: 'string' },
    main: { type: 'string' },
    'node-arg': { type: 'string', multiple: true },
    threads: { type: 'boolean' },
    linger: { type: 'string' },
  },
});
const positive = (v: string | undefined, fallback: number, name: string): number => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} wants a positive number, not '${v}'`);
  return n;
};
const rate = positive(flags.rate, 400, 'rate');
const seconds = positive(flags.seconds, 10, 'seconds');
const runs = positive(flags.runs, 1, 'runs');
const holdMs = positive(flags.hold, 1000, 'hold');

const server = await startXimssdServer({
  nodeArgs: [...(flags['node-arg'] ?? []), ...(flags.profile ? ['--cpu-prof', '--cpu-prof-dir', flags.profile] : [])],
  // Another build of the server (e.g. one compiled from an earlier commit with tsc --outDir), to compare.
  ...(flags.main ? { main: flags.main } : {}),
});
const uasPort = await freePort();
const uas = await startSipp({ scenario: join(SCENARIOS, 'uas.xml'), port: uasPort, args: ['-mp', String(await freePort())] });
try {
  await sleep(300);
  const registered = await registerCallee(server, uasPort);
  if (registered !== undefined) throw new Error(registered);
  for (let run = 0; run < runs; run++) {
    const count = Math.round(rate * seconds);
    const cpu0 = treeCpuSeconds(server.pid);
    const split0 = userSystem(server.pid);
    const threads0 = threadCpu(server.pid);
    const result = await runSipp({
      scenario: join(SCENARIOS, 'uac.xml'),
      remote: `127.0.0.1:${server.port}`,
      keys: { domain: DOMAIN },
      args: ['-s', CALLEE, '-au', CALLEE, '-ap', PASSWORD, '-auth_uri', `${CALLEE}@${DOMAIN}`, '-r', String(rate), '-m', String(count), '-d', String(holdMs), '-recv_timeout', '5000', '-mp', String(await freePort())],
      timeoutMs: seconds * 1000 + holdMs + 30_000,
    });
    await sleep(500);
    const cpu = treeCpuSeconds(server.pid) - cpu0;
    const split = userSystem(server.pid);
    const threads = threadCpu(server.pid);
    // The main thread's id is the process id.
    const mainCpu = (threads.get(server.pid)?.seconds ?? 0) - (threads0.get(server.pid)?.seconds ?? 0);
    const stats = result.stats;
    const ok = stats?.successful ?? 0;
    console.log(
      `run ${run + 1}: ${rate} calls/s × ${seconds} s: ${ok}/${stats?.created ?? 0} ok, ${stats?.failed ?? 0} failed, ${stats?.retransmissions ?? 0} retransmissions, ` +
        `setup ${stats?.responseTime1Ms ?? '?'} ms, server CPU ${cpu.toFixed(2)} s = ${ok ? ((cpu / ok) * 1e6).toFixed(0) : '?'} µs/call (user ${(split.user - split0.user).toFixed(2)} s, system ${(split.system - split0.system).toFixed(2)} s; main thread ${ok ? ((mainCpu / ok) * 1e6).toFixed(0) : '?'} µs/call)` +
        (ok < count ? ` (${sippFailure('ximssd', 'INVITE', result)})` : ''),
    );
    console.log(`  server RSS ${Math.round(rssKb(server.pid) / 1024)} MB`);
    if (flags.threads) {
      const busy = [...threads].map(([id, t]) => ({ id, ...t, seconds: t.seconds - (threads0.get(id)?.seconds ?? 0) })).filter((t) => t.seconds > 0.01);
      for (const t of busy.sort((a, b) => b.seconds - a.seconds)) console.log(`  thread ${t.id} (${t.name}): ${t.seconds.toFixed(2)} s = ${ok ? ((t.seconds / ok) * 1e6).toFixed(0) : '?'} µs/call`);
    }
  }
  if (flags.linger) {
    // What the server still holds once its calls are over and their transactions are gone.
    await sleep(positive(flags.linger, 40, 'linger') * 1000);
    console.log(`after ${flags.linger} s without calls: server RSS ${Math.round(rssKb(server.pid) / 1024)} MB`);
  }
} finally {
  await uas.stop(1000);
  await server.stop();
}

/** User and system CPU seconds of one process (utime, stime of /proc/<pid>/stat). */
function userSystem(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** CPU seconds of each thread of a process, by thread id, with the thread's name. */
function threadCpu(pid: number): Map<number, { name: string; seconds: number }> {
  const out = new Map<number, { name: string; seconds: number }>();
  for (const entry of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(entry), { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), seconds: (Number(fields[11]) + Number(fields[12])) / 100 });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}
