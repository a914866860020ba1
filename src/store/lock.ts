import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Thrown when another server process holds the data directory. */
export class StoreLockedError extends Error {}

/** The lock file in a data directory: the serving process's pid. */
export const PID_FILE = 'ximssd.pid';

/** Pid files this process holds (absolute paths): its own pid in one is not a stale one. */
const held = new Set<string>();

/** A pid file this long without a pid in it was left by a process that died creating it. */
const EMPTY_GRACE_MS = 2000;
/** A takeover guard this old was left by a process that died taking a stale lock over. */
const GUARD_STALE_MS = 10_000;
/** Gives up (an Error, not StoreLockedError) after this many rounds of waiting. */
const MAX_ROUNDS = 400;

/**
 * The lock of a data directory, so that only one server serves it: `ximssd.pid` created
 * exclusively (`wx`) with the server's pid. A file naming a live process refuses the lock
 * (StoreLockedError); one naming a dead process (left by a crash) is taken over. Taking
 * over is guarded by a second exclusive file (`ximssd.pid.takeover`), under which the pid
 * file is read again and removed only if it still names the dead process: of processes
 * starting at once, exactly one creates the new pid file, and nobody removes a live one.
 *
 * Released by `release()` (the store's close) and at process exit, and only while the file
 * still holds this process's pid. A process killed outright leaves the file behind; the
 * next server takes it over.
 */
export class DataDirLock {
  private released = false;
  private readonly onExit = (): void => this.release();

  private constructor(readonly path: string) {
    held.add(path);
    process.on('exit', this.onExit);
  }

  /** Locks `dir` (which must exist) for this process; StoreLockedError when another server holds it. */
  static acquire(dir: string): DataDirLock {
    const path = resolve(join(dir, PID_FILE));
    const guard = `${path}.takeover`;
    const pid = String(process.pid);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (createExclusive(path, `${pid}\n`)) return new DataDirLock(path);
      const content = readOrUndefined(path);
      if (content === undefined) continue; // released just now: try again
      const holder = parsePid(content);
      if (holder !== undefined && isAlive(holder, path)) {
        throw new StoreLockedError(
          `the data directory ${resolve(dir)} is in use by another ximssd server (pid ${holder}); stop it first, or give this one its own --data`,
        );
      }
      // Empty or garbage: a starting server may be between creating the file and writing its pid.
      if (holder === undefined && ageMs(path) < EMPTY_GRACE_MS) {
        sleep(10);
        continue;
      }
      // Stale: take it over, under the guard.
      if (!createExclusive(guard, `${pid}\n`)) {
        if (ageMs(guard) > GUARD_STALE_MS) unlinkQuietly(guard);
        sleep(5 + Math.random() * 10);
        continue;
      }
      try {
        if (readOrUndefined(path) === content) unlinkQuietly(path);
      } finally {
        unlinkQuietly(guard);
      }
    }
    throw new Error(`could not lock the data directory ${resolve(dir)} (${path} keeps changing)`);
  }

  /** Removes the pid file if it is still this process's. */
  release(): void {
    if (this.released) return;
    this.released = true;
    process.off('exit', this.onExit);
    held.delete(this.path);
    if (parsePid(readOrUndefined(this.path) ?? '') === process.pid) unlinkQuietly(this.path);
  }
}

function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function parsePid(content: string): number | undefined {
  const text = content.trim();
  // Never 0 or negative: process.kill would signal a process group.
  return /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : undefined;
}

/**
 * Whether the process named in the pid file at `path` still runs. Our own pid counts only
 * when this process holds that file: otherwise it was left by an earlier process that had
 * the same pid (a container restarted, its server pid 1 again).
 */
function isAlive(pid: number, path: string): boolean {
  if (pid === process.pid) return held.has(path);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
