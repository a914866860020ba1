import { randomBytes } from 'node:crypto';
import { MAX_RELAY_MESSAGE, type SharedStateStore } from '../store/store.js';

/**
 * Texts too large to travel in a bus event (PostgreSQL NOTIFY's 8000 bytes): the publisher keeps
 * them in the shared state for a minute under a fresh key and sends the key; the node the event
 * is for reads them back. Used for stanzas, Rayo commands and task events.
 */

/** How long a kept text waits for its node, ms. */
const KEPT_MS = 60_000;

/** Whether `text` fits in an event with `overhead` bytes of its own (JSON escaping may grow the text by a fifth). */
export function fitsRelay(text: string, overhead = 400): boolean {
  return Buffer.byteLength(text) * 1.2 + overhead < MAX_RELAY_MESSAGE;
}

/** Keeps `text` under a new key of `scope`; the key to send instead. */
export async function keepForRelay(shared: SharedStateStore, scope: string, text: string): Promise<string> {
  const key = randomBytes(12).toString('hex');
  const now = Date.now();
  await shared.update(scope, key, now, () => ({ value: text, expires: now + KEPT_MS, result: undefined }));
  return key;
}

/** The text kept under `key`, undefined when it is gone (expired, or never kept). */
export async function keptForRelay(shared: SharedStateStore, scope: string, key: string): Promise<string | undefined> {
  const kept = await shared.get(scope, key, Date.now());
  return typeof kept === 'string' ? kept : undefined;
}
