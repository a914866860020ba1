/**
 * Resident memory per idle logged-in TCP session: a fresh ximssd child, its VmRSS after
 * start-up and one login, then after `sessions` more connections have each logged in
 * (at most `concurrency` logins in flight) and the server has been left alone for
 * `settleMs`. A GC hook in the child also reports the JS heap after forced collections.
 */
import type net from 'node:net';
import { openFileLimit, rssKb, sleep } from './proc.js';
import { connectXimss } from './tcp-load.js';
import { PASSWORD, USER, startXimssd, type MemoryReport, type Ximssd } from './ximssd.js';

export interface MemoryOptions {
  sessions: number;
  concurrency: number;
  settleMs: number;
  cpuProfileDir?: string;
}

export type MemoryResult =
  | { available: false; reason: string }
  | {
      available: true;
      sessions: number;
      rssBeforeKb: number;
      rssAfterKb: number;
      /** (rssAfter - rssBefore) / sessions. */
      rssPerSessionKb: number;
      /** JS heap used after forced GCs, per session. */
      heapPerSessionKb: number;
      /** RSS after forced GCs, per session. */
      rssAfterGcPerSessionKb: number;
      loginsPerSecond: number;
      loginSeconds: number;
    };

/** File descriptors this process needs besides the sessions (stdio, child pipes, spare). */
const SPARE_FDS = 200;

export async function sessionMemory(options: MemoryOptions): Promise<MemoryResult> {
  const limit = openFileLimit();
  const needed = options.sessions + SPARE_FDS;
  if (limit !== undefined && limit < needed) {
    return {
      available: false,
      reason: `the open-file limit is ${limit} but ${options.sessions} sessions need at least ${needed}: raise it (ulimit -n ${Math.max(12_000, needed)}) and run again`,
    };
  }
  // The load generator plays thousands of clients from one address: up to --login-concurrency
  // of its connections are not logged in yet at a time, past the default per-address limit.
  const server: Ximssd = await startXimssd({
    gcHook: true,
    cpuProfileDir: options.cpuProfileDir,
    config: { limits: { connectionsPerAddress: 100_000, preLoginConnections: 100_000 } },
  });
  const sockets: net.Socket[] = [];
  try {
    sockets.push(await connectXimss(server.ports.ximss, { user: USER, password: PASSWORD }));
    await sleep(options.settleMs);
    const rssBeforeKb = rssKb(server.pid);
    const gcBefore: MemoryReport = await server.memoryAfterGc();

    const started = performance.now();
    let next = 0;
    let failure: Error | undefined;
    const worker = async (): Promise<void> => {
      while (next < options.sessions && !failure) {
        next++;
        try {
          sockets.push(await connectXimss(server.ports.ximss, { user: USER, password: PASSWORD }));
        } catch (err) {
          failure ??= err as Error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency, options.sessions) }, worker));
    const loginSeconds = (performance.now() - started) / 1000;
    if (failure) return { available: false, reason: `login ${sockets.length} of ${options.sessions} failed: ${failure.message}` };

    await sleep(options.settleMs);
    const rssAfterKb = rssKb(server.pid);
    const gcAfter = await server.memoryAfterGc();
    const n = options.sessions;
    return {
      available: true,
      sessions: n,
      rssBeforeKb,
      rssAfterKb,
      rssPerSessionKb: (rssAfterKb - rssBeforeKb) / n,
      heapPerSessionKb: (gcAfter.heapUsed - gcBefore.heapUsed) / 1024 / n,
      rssAfterGcPerSessionKb: (gcAfter.rss - gcBefore.rss) / 1024 / n,
      loginsPerSecond: n / loginSeconds,
      loginSeconds,
    };
  } finally {
    for (const socket of sockets) socket.destroy();
    await server.stop();
  }
}
