/**
 * Radicale (Debian's package) as the reference CardDAV server of the `carddav` benchmark:
 * installed from apt when missing, run in the foreground with its own configuration in a
 * temporary directory (htpasswd users with plain passwords, so that both servers do the same
 * Basic authentication; filesystem storage; owner-only rights) on a free loopback port, and
 * stopped by its pid, at the latest when the bench process exits.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, runCommand, sleep, spawnChild, type Child } from './proc.js';

/** Debian's Python: the PATH may lead to another one (pyenv) without Radicale's modules. */
const PYTHON = '/usr/bin/python3';

export interface Radicale {
  readonly pid: number;
  readonly port: number;
  readonly version: string;
  /** The `filesystem_folder` of its storage (collections live under `collection-root/<user>/`). */
  readonly storageFolder: string;
  output(): string;
  stop(): Promise<void>;
}

export type RadicaleAvailability = { available: true; version: string } | { available: false; reason: string };

function radicaleVersion(): string | undefined {
  const result = spawnSync(PYTHON, ['-c', 'import radicale; print(radicale.VERSION)'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  return result.stdout.trim();
}

/** Radicale's version, installing Debian's `radicale` package first when it is missing; says why when it cannot be had. */
export async function ensureRadicale(log: (line: string) => void = console.log): Promise<RadicaleAvailability> {
  const present = radicaleVersion();
  if (present) return { available: true, version: present };
  if (spawnSync('apt-get', ['--version']).error) return { available: false, reason: 'radicale is not installed and apt-get is not available' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { available: false, reason: 'radicale is not installed, and installing it (apt-get) needs root' };
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): Promise<string> =>
    runCommand('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '--no-install-recommends', 'radicale'], { env });
  log('radicale is not installed: running apt-get install -y radicale …');
  try {
    await install();
  } catch {
    try {
      await runCommand('apt-get', ['update'], { env });
      await install();
    } catch (err) {
      return { available: false, reason: `apt-get install radicale failed: ${(err as Error).message.split('\n').slice(-4).join('\n')}` };
    }
  }
  const version = radicaleVersion();
  return version ? { available: true, version } : { available: false, reason: 'apt-get installed radicale, but its module still cannot be imported' };
}

const running = new Set<Child>();
process.on('exit', () => {
  for (const child of running) child.process.kill('SIGTERM');
});

async function listening(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`radicale did not listen on ${port}`);
    await sleep(100);
  }
}

/** Starts Radicale with these users (name → password) on a free loopback port. */
export async function startRadicale(users: Readonly<Record<string, string>>): Promise<Radicale> {
  const version = radicaleVersion() ?? '?';
  const dir = mkdtempSync(join(tmpdir(), 'radicale-bench-'));
  const port = await freePort();
  writeFileSync(join(dir, 'users'), Object.entries(users).map(([name, password]) => `${name}:${password}\n`).join(''));
  writeFileSync(
    join(dir, 'config'),
    [
      '[server]',
      `hosts = 127.0.0.1:${port}`,
      'max_content_length = 200000000',
      '[auth]',
      'type = htpasswd',
      `htpasswd_filename = ${join(dir, 'users')}`,
      'htpasswd_encryption = plain',
      'delay = 0',
      '[rights]',
      'type = owner_only',
      '[storage]',
      `filesystem_folder = ${join(dir, 'collections')}`,
      '[logging]',
      'level = warning',
      '',
    ].join('\n'),
  );
  const child = spawnChild(PYTHON, ['-m', 'radicale', '--config', join(dir, 'config')]);
  running.add(child);
  try {
    await listening(port, 20_000);
  } catch (err) {
    await child.stop();
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}:\n${child.output()}`);
  }
  return {
    pid: child.pid,
    port,
    version,
    storageFolder: join(dir, 'collections'),
    output: () => child.output(),
    async stop() {
      await child.stop();
      running.delete(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
