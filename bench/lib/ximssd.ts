/**
 * Runs ximssd as a child process (`node dist/main.js serve`) on loopback with ephemeral
 * ports, a temporary data directory and a JSON config file, with one benchmark account
 * (and any extra ones asked for) created beforehand through the command line. SMTP is off
 * unless asked for; then it listens on a free port chosen here (`--smtp 0` turns it off).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, runCommand, spawnChild, type Child } from './proc.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN = join(ROOT, 'dist', 'main.js');
const HOOK = join(ROOT, 'bench', 'server-hook.cjs');

export const DOMAIN = 'bench.test';
export const USER = `bench@${DOMAIN}`;
export const PASSWORD = 'bench-password-1';

export interface XimssdOptions {
  /** Merged into the config file (limits etc.). */
  config?: Record<string, unknown>;
  /** Write a V8 CPU profile of the server into this directory (node --cpu-prof). */
  cpuProfileDir?: string;
  /** Start node with --expose-gc, so that `memoryAfterGc()` can force a GC (bench/server-hook.cjs). */
  gcHook?: boolean;
  /**
   * A data directory to use and keep (a cache of populated mailboxes) instead of a temporary
   * one. The benchmark account is created in it once (marked by a `.bench-account` file).
   */
  dataDir?: string;
  /**
   * Run the SMTP listener, on a free 127.0.0.1 port picked here (ximssd takes 0 as "off"),
   * learned back from the startup line (`ports.smtp`).
   */
  smtp?: boolean;
  /** Run the XMPP c2s listener (`--xmpp`), on a free 127.0.0.1 port picked here (`ports.xmpp`). */
  xmpp?: boolean;
  /** More accounts (full addresses) to create before the start, with the password PASSWORD. */
  accounts?: string[];
  /**
   * The store: a postgres:// URL (the PostgreSQL engine; the data directory then only holds
   * the node's spool and lock); absent: SQLite in the data directory.
   */
  store?: string;
  /**
   * Create the benchmark account (and `accounts`) before the start: true by default. A
   * second node of a cluster finds them in the shared database.
   */
  createAccounts?: boolean;
}

export interface MemoryReport {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface Ximssd {
  readonly child: Child;
  readonly pid: number;
  /** `smtp` (`xmpp`) only when started with `smtp: true` (`xmpp: true`). */
  readonly ports: { ximss: number; http: number; smtp?: number; xmpp?: number };
  /** Forces two full GCs in the server and returns process.memoryUsage() (needs gcHook). */
  memoryAfterGc(): Promise<MemoryReport>;
  stop(): Promise<void>;
}

/** Temporary directories still in use: removed at exit even when the bench is interrupted. */
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // the server may still be writing into it (it stops on its own): leave it behind
    }
  }
});

export async function startXimssd(options: XimssdOptions = {}): Promise<Ximssd> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx tsc -p .)`);
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-bench-'));
  liveDirs.add(dir);
  const dataDir = options.dataDir ?? join(dir, 'data');
  const accountMarker = join(dataDir, '.bench-account');
  const configFile = join(dir, 'config.json');
  const limits = (options.config?.limits ?? {}) as Record<string, unknown>;
  writeFileSync(
    configFile,
    JSON.stringify({
      ...options.config,
      ...(options.store === undefined ? {} : { store: options.store }),
      dataDir,
      host: '127.0.0.1',
      defaultDomain: DOMAIN,
      limits: { sessionsPerAccount: 100_000, ...limits },
    }),
  );
  let child: Child | undefined;
  try {
    if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
    const create = options.createAccounts ?? true;
    if (create && (!options.dataDir || !existsSync(accountMarker))) {
      // Only `init` (or `serve`) creates a store; on one made before it says so, and that is fine.
      await runCommand(process.execPath, [MAIN, 'init', '--config', configFile]).catch((err: Error) => {
        if (!/there is already a ximssd store/.test(err.message)) throw err;
      });
      await runCommand(process.execPath, [MAIN, 'account', 'add', USER, '--password', PASSWORD, '--config', configFile]);
      if (options.dataDir) writeFileSync(accountMarker, `${USER}\n`);
    }
    for (const address of create ? (options.accounts ?? []) : []) {
      await runCommand(process.execPath, [MAIN, 'account', 'add', address, '--password', PASSWORD, '--config', configFile]);
    }
    const nodeArgs: string[] = [];
    if (options.cpuProfileDir) {
      mkdirSync(options.cpuProfileDir, { recursive: true });
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`);
    }
    // The hook (and its IPC channel) is always there: it stops the server if this process dies.
    if (options.gcHook) nodeArgs.push('--expose-gc');
    nodeArgs.push('--require', HOOK);
    const smtpPort = options.smtp ? await freePort() : 0;
    const xmppPort = options.xmpp ? await freePort() : 0;
    const args = [...nodeArgs, MAIN, 'serve', '--config', configFile, '--ximss', '0', '--http', '0', '--smtp', String(smtpPort), '--xmpp', String(xmppPort), '--xmpp-s2s', '0'];
    child = spawnChild(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    // The server's `server.started` log line (JSON) names the ports it bound.
    const match = await child.waitFor(/^\{.*"event":"server\.started".*\}$/m);
    const started = JSON.parse(match[0]) as { ports: { ximss: number; http: number; smtp?: number; xmpp?: number } };
    const ports: { ximss: number; http: number; smtp?: number; xmpp?: number } = { ximss: started.ports.ximss, http: started.ports.http };
    if (options.smtp) {
      if (!started.ports.smtp) throw new Error(`ximssd started without SMTP (asked for port ${smtpPort}):\n${child.output()}`);
      ports.smtp = started.ports.smtp;
    }
    if (options.xmpp) {
      if (!started.ports.xmpp) throw new Error(`ximssd started without XMPP (asked for port ${xmppPort}):\n${child.output()}`);
      ports.xmpp = started.ports.xmpp;
    }
    const running = child;
    return {
      child: running,
      pid: running.pid,
      ports,
      memoryAfterGc() {
        const proc = running.process;
        if (!options.gcHook || !proc.send) return Promise.reject(new Error('the server was started without gcHook'));
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no answer from the server GC hook')), 10_000);
          proc.once('message', (message) => {
            clearTimeout(timer);
            resolve(message as MemoryReport);
          });
          proc.send!('gc');
        });
      },
      async stop() {
        await running.stop();
        if (running.process.connected) running.process.disconnect();
        rmSync(dir, { recursive: true, force: true });
        liveDirs.delete(dir);
      },
    };
  } catch (err) {
    await child?.stop();
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    throw err;
  }
}
