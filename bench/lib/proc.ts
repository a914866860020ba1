/**
 * Child-process plumbing shared by the benchmarks: spawning a process and waiting for a
 * line it prints, reading a process's resident memory and CPU time, checking the open-file
 * limit, finding a free port.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  /** Everything the child printed so far (stdout and stderr), for error messages. */
  output(): string;
  /** Resolves with the first match of `pattern` in the child's output. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnChild(command: string, args: string[], options: SpawnOptions = {}): Child {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let text = '';
  let waiters: (() => void)[] = [];
  const wake = (): void => {
    const list = waiters;
    waiters = [];
    for (const w of list) w();
  };
  const append = (chunk: Buffer): void => {
    text += chunk.toString('utf8');
    if (text.length > 200_000) text = text.slice(-100_000);
    wake();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      wake();
      resolve();
    }),
  );
  child.once('error', (err) => {
    text += `\n[spawn error: ${err.message}]`;
    exited = true;
    wake();
  });
  if (child.pid === undefined) throw new Error(`cannot spawn ${command}`);
  const pid = child.pid;

  return {
    process: child,
    pid,
    output: () => text,
    async waitFor(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = text.match(pattern);
        if (match) return match;
        if (exited) throw new Error(`${command} ${args.join(' ')} exited before printing ${pattern}:\n${text}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${pattern} from ${command}:\n${text}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    async stop(graceMs = 5000) {
      if (exited || child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Runs a command to completion; rejects with its output when it fails. */
export function runCommand(command: string, args: string[], options: SpawnOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let text = '';
    child.stdout?.on('data', (c: Buffer) => (text += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (text += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(text);
      else reject(new Error(`${command} ${args.join(' ')} failed (${code}):\n${text}`));
    });
  });
}

/** Resident set size of a process in KiB, from /proc/<pid>/status (VmRSS). */
export function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}

/**
 * Bytes a process has read and written through system calls so far (rchar, wchar of
 * /proc/<pid>/io): sockets and files alike, page cache hits included.
 */
export function ioBytes(pid: number): { read: number; written: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(io.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'))?.[1] ?? NaN);
  return { read: field('rchar'), written: field('wchar') };
}

/** User + system CPU time of a process in seconds, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** CPU seconds all processes of the machine spent busy so far (from /proc/stat; all cores). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
}

/**
 * Measures an interval: wall time, the server's CPU seconds, this process's, and the share
 * of a core everything else on the machine used (other processes disturbing the figures).
 */
export function meter(serverCpu: () => number): () => { seconds: number; server: number; client: number; other: number } {
  const t0 = performance.now();
  const s0 = serverCpu();
  const m0 = machineBusySeconds();
  const c0 = process.cpuUsage();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    const server = serverCpu() - s0;
    const self = process.cpuUsage(c0);
    const client = (self.user + self.system) / 1e6;
    return { seconds, server, client, other: Math.max(0, machineBusySeconds() - m0 - server - client) / seconds };
  };
}

/** The soft limit on open files of this process (Infinity when unlimited, undefined when unknown). */
export function openFileLimit(): number | undefined {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const match = limits.match(/^Max open files\s+(\S+)/m);
    if (!match) return undefined;
    return match[1] === 'unlimited' ? Infinity : Number(match[1]);
  } catch {
    return undefined;
  }
}

export { sleep };

/** A free TCP port on 127.0.0.1 (closed again: a small race, acceptable on a test machine). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * User + system CPU seconds of a process and all its descendants (for servers made of
 * several processes, such as Dovecot: master, auth, login and one imap process per client).
 * Processes that have already exited are not counted.
 */
export function treeCpuSeconds(rootPid: number): number {
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    cpu.set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  let total = 0;
  const stack = [rootPid];
  while (stack.length) {
    const pid = stack.pop()!;
    total += cpu.get(pid) ?? 0;
    for (const child of children.get(pid) ?? []) stack.push(child);
  }
  return total;
}

/**
 * A helper process of a bench area driven by JSON lines: commands written to its stdin, answers
 * (JSON objects, one a line) read from its stdout and taken by key. It prints
 * `RTP PORT <n>` once ready (the RTP endpoint processes: sip-rtp-endpoint.ts, rayo-endpoint.ts).
 */
export class JsonLineProcess {
  private readonly answers: Record<string, unknown>[] = [];
  private wake: (() => void) | undefined;

  private constructor(
    readonly child: Child,
    readonly port: number,
    private readonly what: string,
  ) {
    createInterface({ input: child.process.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      this.answers.push(JSON.parse(line) as Record<string, unknown>);
      this.wake?.();
    });
  }

  /** Starts `command args` and waits for its `RTP PORT`; `what` names it in errors. */
  static async start(command: string, args: string[], cwd: string, what: string): Promise<JsonLineProcess> {
    const child = spawnChild(command, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const port = await child.waitFor(/RTP PORT (\d+)/);
    return new JsonLineProcess(child, Number(port[1]), what);
  }

  send(command: Record<string, unknown>): void {
    this.child.process.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** The next answer that has `key`. */
  async answer<T>(key: string, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.answers.findIndex((a) => key in a);
      if (i >= 0) return this.answers.splice(i, 1)[0]![key] as T;
      if (Date.now() > deadline) throw new Error(`${this.what} did not answer ${key}:\n${this.child.output().slice(-2000)}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 200);
      });
    }
  }

  async stop(): Promise<void> {
    this.child.process.stdin!.end();
    await this.child.stop();
  }
}
