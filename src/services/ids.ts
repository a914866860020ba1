import { randomFillSync } from 'node:crypto';

/**
 * Random identifiers (SIP branches, tags and Call-IDs, call ports) from a pool of the
 * system's cryptographic random bytes, filled 4 KiB at a time: a call makes a few dozen of
 * them, and asking the generator for each one showed in the SIP benchmark's profile.
 */
const pool = Buffer.alloc(4096);
let taken = pool.length;

export function randomId(bytes: number, encoding: 'hex' | 'base64url' = 'hex'): string {
  if (taken + bytes > pool.length) {
    randomFillSync(pool);
    taken = 0;
  }
  const id = pool.toString(encoding, taken, taken + bytes);
  taken += bytes;
  return id;
}
