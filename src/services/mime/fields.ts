import type { HeaderField } from './types.js';

/**
 * Address fields per "XML Data Formats" (lower case): presented as one element per address,
 * with a realName attribute.
 */
export const ADDRESS_FIELDS: ReadonlySet<string> = new Set([
  'from', 'to', 'cc', 'bcc', 'return-path', 'sender', 'reply-to', 'disposition-notification-to',
  'recent-from', 'recent-to', 'return-receipt-to', 'errors-to',
]);

/** The first field called `name` (case-insensitive), or undefined. */
export function headerValue(fields: readonly HeaderField[], name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const f of fields) if (f.name.length === wanted.length && f.name.toLowerCase() === wanted) return f.value;
  return undefined;
}

/** Every field called `name` (case-insensitive), in order. */
export function headerValues(fields: readonly HeaderField[], name: string): string[] {
  const wanted = name.toLowerCase();
  const out: string[] = [];
  for (const f of fields) if (f.name.length === wanted.length && f.name.toLowerCase() === wanted) out.push(f.value);
  return out;
}
