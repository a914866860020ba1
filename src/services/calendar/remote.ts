/**
 * Calendars opened from a URL (calendarOpen `url`): a remote iCalendar document fetched over
 * HTTP or HTTPS — bounded in time and size, a few redirects at most — and read into items
 * (grouped by UID like an import). Read-only; its items are numbered 1… in document order.
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { ServiceError } from '../errors.js';
import { CalendarItemError, parseItem, type CalendarItem } from './occurrences.js';
import { splitImport } from './publish.js';

export interface RemoteLimits {
  bytes: number;
  timeoutMs: number;
  items: number;
  /** Redirects followed at most (each checked like the first URL). */
  redirects: number;
  /** Whether hosts with loopback, private, link-local… addresses may be fetched. */
  privateAddresses: boolean;
}

export const DEFAULT_REMOTE_LIMITS: RemoteLimits = { bytes: 10 * 1024 * 1024, timeoutMs: 15_000, items: 10_000, redirects: 3, privateAddresses: false };

/** Addresses that are not on the public Internet (RFC 6890's special-purpose blocks). */
const NON_PUBLIC = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  NON_PUBLIC.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) NON_PUBLIC.addSubnet(net, bits, 'ipv6');

function isPublic(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return !NON_PUBLIC.check(mapped[1]!, 'ipv4');
  return !NON_PUBLIC.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** Refuses a URL whose host is (or resolves to) an address that is not public. */
async function checkHost(url: URL): Promise<void> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  } catch {
    throw new ServiceError(`the calendar could not be retrieved: unknown host ${JSON.stringify(host.slice(0, 100))}`);
  }
  if (addresses.some((a) => !isPublic(a))) throw new ServiceError('the calendar url names a private or local address, which this server does not fetch');
}

/** The items of the iCalendar document at `url`, and how many could not be read. */
export async function fetchRemoteCalendar(url: string, limits: RemoteLimits = DEFAULT_REMOTE_LIMITS): Promise<{ items: CalendarItem[]; skipped: number }> {
  let parsed: URL;
  try {
    parsed = new URL(url.replace(/^webcals?:/i, (scheme) => (scheme.toLowerCase() === 'webcals:' ? 'https:' : 'http:')));
  } catch {
    throw new ServiceError(`invalid calendar url: ${JSON.stringify(url.slice(0, 100))}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ServiceError('a calendar url must be http, https or webcal');
  const signal = AbortSignal.timeout(limits.timeoutMs);
  let response: Response;
  for (let hop = 0; ; hop++) {
    if (!limits.privateAddresses) await checkHost(parsed);
    try {
      // Redirects are followed here, so that each new host is checked too.
      response = await fetch(parsed, { signal, redirect: 'manual', headers: { Accept: 'text/calendar, */*;q=0.5' } });
    } catch (err) {
      throw new ServiceError(`the calendar could not be retrieved: ${err instanceof Error ? (err.name === 'TimeoutError' ? 'timed out' : err.message) : String(err)}`);
    }
    const location = response.headers.get('location');
    if (response.status < 300 || response.status > 399 || !location) break;
    await response.body?.cancel().catch(() => {});
    if (hop >= limits.redirects) throw new ServiceError('the calendar could not be retrieved: too many redirects');
    try {
      parsed = new URL(location, parsed);
    } catch {
      throw new ServiceError('the calendar could not be retrieved: a bad redirect');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ServiceError('the calendar could not be retrieved: a redirect to another scheme');
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw new ServiceError(`the calendar could not be retrieved: HTTP ${response.status}`);
  }
  const declared = Number(response.headers.get('content-length') ?? 'NaN');
  if (declared > limits.bytes) {
    await response.body?.cancel().catch(() => {});
    throw new ServiceError(`the calendar is too large (at most ${limits.bytes} bytes)`);
  }
  // Read while it arrives, stopping at the limit (a missing or false Content-Length).
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body?.getReader();
  try {
    for (;;) {
      if (!reader) break;
      const { done, value } = await reader.read();
      if (done || !value) break;
      size += value.length;
      if (size > limits.bytes) {
        await reader?.cancel().catch(() => {});
        throw new ServiceError(`the calendar is too large (at most ${limits.bytes} bytes)`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof ServiceError) throw err;
    throw new ServiceError(`the calendar could not be retrieved: ${err instanceof Error ? (err.name === 'TimeoutError' ? 'timed out' : err.message) : String(err)}`);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const items: CalendarItem[] = [];
  let skipped = 0;
  for (const item of splitImport(text, limits.items)) {
    try {
      items.push(parseItem(item.text));
    } catch (err) {
      if (!(err instanceof CalendarItemError)) throw err;
      skipped++;
    }
  }
  return { items, skipped };
}
