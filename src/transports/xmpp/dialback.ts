import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../../store/store.js';

/** Server Dialback (XEP-0220): the `db:` elements, and the stream feature that announces it. */
export const NS_DIALBACK = 'jabber:server:dialback';
export const NS_DIALBACK_FEATURE = 'urn:xmpp:features:dialback';

/**
 * The dialback key of a stream (XEP-0185): HMAC-SHA256 keyed with the hex SHA-256 of the
 * server's secret, over "receiving originating stream-id", in hex. The authoritative server
 * recomputes it when asked (db:verify) instead of remembering the keys it gave out.
 */
export function dialbackKey(secret: string, receiving: string, originating: string, streamId: string): string {
  const key = createHash('sha256').update(secret).digest('hex');
  return createHmac('sha256', key).update(`${receiving} ${originating} ${streamId}`).digest('hex');
}

/** Compares a key received with the one expected, in constant time. */
export function sameKey(received: string, expected: string): boolean {
  const a = Buffer.from(received.trim());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The dialback secret, shared by every node of a cluster (any of them may be asked to verify
 * a key another gave out): made by the first node that needs it, kept in the store like the
 * cluster key (src/services/cluster.ts).
 */
export function dialbackSecret(store: Store): Promise<string> {
  const candidate = randomBytes(32).toString('base64url');
  return store.shared.update('xmpp-s2s', 'dialback-secret', Date.now(), (value) => {
    const secret = typeof value === 'string' ? value : candidate;
    return { value: secret, expires: Number.MAX_SAFE_INTEGER, result: secret };
  });
}
