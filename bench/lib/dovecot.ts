/**
 * Dovecot as the reference IMAP server of the mail benchmarks: installed from apt when
 * missing, run as root in the foreground (`dovecot -F -c CONF`) with its own configuration
 * in a temporary directory (passwd-file users, Maildir, IMAP on a free loopback port, and
 * LMTP on another one when asked for), and stopped by its pid: normally, at exit (also
 * after SIGINT), and by a watchdog process when the bench process is killed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapClient } from './imap-client.js';
import { freePort, runCommand, sleep, spawnChild, treeCpuSeconds, type Child } from './proc.js';

/** The mail processes run as this uid/gid (the files of every home must belong to it). */
export const MAIL_UID = 5000;
export const MAIL_GID = 5000;

export interface DovecotUser {
  name: string;
  password: string;
  /**
   * Home directory; the mail is in `<home>/Maildir`. Created and chowned when missing.
   * Absent: a fresh home inside the instance's temporary directory, removed with it.
   */
  home?: string;
}

export interface DovecotOptions {
  users: DovecotUser[];
  /** `mail_fsync`; Dovecot's default (`optimized`) when absent. Population uses `never`. */
  mailFsync?: 'optimized' | 'always' | 'never';
  /**
   * Also run Dovecot's LMTP service (`protocols = imap lmtp`) on a free 127.0.0.1 port
   * (`lmtpPort`). Recipients are looked up by the full address given in RCPT TO, so users
   * that receive by LMTP are named `local@domain`.
   */
  lmtp?: boolean;
}

export interface Dovecot {
  readonly pid: number;
  readonly port: number;
  /** The LMTP port (only when started with `lmtp: true`). */
  readonly lmtpPort: number | undefined;
  readonly version: string;
  /** CPU seconds used so far by the master and all its children (auth, login, imap processes). */
  cpuSeconds(): number;
  /** The last lines of Dovecot's log, for error messages. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

export type DovecotAvailability = { available: true; version: string } | { available: false; reason: string };

function dovecotVersion(): string | undefined {
  const result = spawnSync('dovecot', ['--version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  return result.stdout.trim();
}

/**
 * Dovecot's version, installing `dovecot-imapd dovecot-lmtpd` with apt-get first when the
 * `dovecot` command is missing. Says why when it cannot be had.
 */
export async function ensureDovecot(log: (line: string) => void = console.log): Promise<DovecotAvailability> {
  const present = dovecotVersion();
  if (present) return { available: true, version: present };
  if (spawnSync('apt-get', ['--version']).error) return { available: false, reason: 'dovecot is not installed and apt-get is not available' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { available: false, reason: 'dovecot is not installed, and installing it (apt-get) needs root' };
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): Promise<string> =>
    runCommand('apt-get', ['install', '-y', '--no-install-recommends', 'dovecot-imapd', 'dovecot-lmtpd'], { env });
  log('dovecot is not installed: running apt-get install -y dovecot-imapd dovecot-lmtpd …');
  const began = performance.now();
  try {
    await install();
  } catch (first) {
    log('apt-get install failed; running apt-get update and trying again …');
    try {
      await runCommand('apt-get', ['update'], { env });
      await install();
    } catch (err) {
      const text = (err as Error).message.split('\n').slice(-6).join('\n');
      return { available: false, reason: `apt-get install dovecot-imapd dovecot-lmtpd failed: ${text || (first as Error).message}` };
    }
  }
  const version = dovecotVersion();
  if (!version) return { available: false, reason: 'apt-get installed dovecot-imapd, but `dovecot --version` still fails' };
  log(`installed Dovecot ${version} in ${((performance.now() - began) / 1000).toFixed(0)} s`);
  return { available: true, version };
}

/** Dovecot masters still running: stopped when this process exits (also after SIGINT). */
const livePids = new Set<number>();
/** Temporary directories still in use: removed at exit too. */
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  if (liveDirs.size === 0) return;
  // Dovecot may still be writing into them for a moment: remove them a little later, from a
  // process that outlives this one.
  const cleaner = spawn('sh', ['-c', 'sleep 2; rm -rf -- "$@"', 'sh', ...liveDirs], { stdio: 'ignore', detached: true });
  cleaner.unref();
});

/** A temporary directory (mode 0755, so that the mail uid can walk through it), removed at exit. */
function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(path, 0o755);
  liveDirs.add(path);
  return {
    path,
    remove() {
      rmSync(path, { recursive: true, force: true });
      liveDirs.delete(path);
    },
  };
}

/** Makes `dir` and its missing parents, then gives `dir` (not the parents) to the mail uid. */
export function prepareHome(dir: string): void {
  mkdirSync(dir, { recursive: true });
  chownSync(dir, MAIL_UID, MAIL_GID);
  chmodSync(dir, 0o700);
}

export async function startDovecot(options: DovecotOptions): Promise<Dovecot> {
  const version = dovecotVersion() ?? '?';
  const temp = tempDir('dovecot-bench-');
  const dir = temp.path;
  const port = await freePort();
  let lmtpPort = options.lmtp ? await freePort() : undefined;
  while (lmtpPort === port) lmtpPort = await freePort();
  for (const sub of ['run', 'state']) mkdirSync(join(dir, sub));
  const homes = options.users.map((user) => user.home ?? join(dir, `home-${user.name}`));
  for (const home of homes) if (!existsSync(home)) prepareHome(home);
  // passwd-file: user:password:uid:gid:gecos:home:shell:extra
  writeFileSync(
    join(dir, 'users'),
    options.users.map((u, i) => `${u.name}:{PLAIN}${u.password}:${MAIL_UID}:${MAIL_GID}::${homes[i]}::\n`).join(''),
  );
  const conf = join(dir, 'dovecot.conf');
  const logFile = join(dir, 'dovecot.log');
  writeFileSync(
    conf,
    `# written by bench/lib/dovecot.ts
protocols = imap${lmtpPort ? ' lmtp' : ''}
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${logFile}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
${options.mailFsync ? `mail_fsync = ${options.mailFsync}\n` : ''}passdb {
  driver = passwd-file
  args = scheme=PLAIN ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
  default_fields = uid=${MAIL_UID} gid=${MAIL_GID}
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
${
  lmtpPort
    ? `service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${lmtpPort}
  }
}
`
    : ''
}`,
  );

  let child: Child | undefined;
  let watchdog: ReturnType<typeof spawn> | undefined;
  const logTail = (lines = 15): string => {
    try {
      return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const cleanup = (): void => {
    if (child) livePids.delete(child.pid);
    watchdog?.stdin?.end();
    temp.remove();
  };
  try {
    child = spawnChild('dovecot', ['-F', '-c', conf]);
    livePids.add(child.pid);
    // When this process dies without running its exit handlers (SIGKILL), the watchdog's
    // stdin closes and it stops Dovecot.
    // It removes the temporary directory too (by then, normally, already gone).
    watchdog = spawn('sh', ['-c', `cat >/dev/null; kill -TERM ${child.pid} 2>/dev/null; sleep 2; rm -rf -- "$1"`, 'sh', dir], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    watchdog.unref();
    (watchdog.stdin as unknown as net.Socket | null)?.unref();

    // Ready when the IMAP port greets.
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.process.exitCode !== null || child.process.signalCode !== null) {
        throw new Error(`dovecot exited (${child.process.exitCode ?? child.process.signalCode}):\n${child.output()}\n${logTail()}`);
      }
      try {
        const probe = await ImapClient.connect(port, '127.0.0.1', 2000);
        probe.close();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`Dovecot did not answer on port ${port}: ${(err as Error).message}\n${child.output()}\n${logTail()}`);
        await sleep(100);
      }
    }
    // The LMTP port listens once the master has bound it (the same moment as the IMAP one),
    // but check its greeting too.
    if (lmtpPort) {
      for (;;) {
        try {
          const greeting = await firstLine(lmtpPort, 2000);
          if (!greeting.startsWith('220')) throw new Error(`LMTP greeting: ${greeting}`);
          break;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`Dovecot LMTP did not answer on port ${lmtpPort}: ${(err as Error).message}\n${logTail()}`);
          await sleep(100);
        }
      }
    }
  } catch (err) {
    await child?.stop();
    cleanup();
    throw err;
  }
  const running = child;
  return {
    pid: running.pid,
    port,
    lmtpPort,
    version,
    cpuSeconds: () => treeCpuSeconds(running.pid),
    logTail,
    async stop() {
      await running.stop(10_000);
      cleanup();
    },
  };
}

/** Connects, reads the first line the server sends (its greeting), and closes. */
function firstLine(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    const done = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(line!);
    };
    const timer = setTimeout(() => done(new Error(`no greeting within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n');
      if (end >= 0) done(undefined, text.slice(0, end));
    });
    socket.once('error', (err) => done(err));
    socket.once('close', () => done(new Error('connection closed before the greeting')));
  });
}
