/**
 * File modes of what ximssd keeps: the data directory and the directories in it 0700, the
 * files 0600 (the store holds password hashes and CRAM-MD5 secrets; the TLS key is a key).
 * The command line sets umask 0077 for everything it creates (src/main.ts); these helpers
 * give the same modes to processes without it (the tests, an embedding program) and tighten
 * what an earlier version left wider.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';

/** Creates `dir` (and its missing parents) 0700; an existing one readable by others is made 0700. */
export function privateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  tighten(dir, true);
}

/** Makes `file` 0600 when it exists with a wider mode. */
export function privateFile(file: string): void {
  tighten(file, false);
}

function tighten(path: string, directory: boolean): void {
  let stat;
  try {
    stat = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if ((stat.mode & 0o077) === 0) return;
  // Only what this user owns, and never a shared directory (sticky, like /tmp): `--data /tmp`
  // must not lock everybody else out of it.
  if (process.getuid && stat.uid !== process.getuid()) return;
  if (directory && (stat.mode & 0o1000) !== 0) return;
  try {
    chmodSync(path, stat.mode & 0o7700 & ~0o077);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES' && code !== 'EROFS') throw err;
  }
}
