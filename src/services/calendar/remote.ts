/**
 * Calendars opened from a URL (calendarOpen `url`): a remote iCalendar document fetched over
 * HTTP or HTTPS — bounded in time and size, a few redirects at most — and read into items
 * (grouped by UID like an import). Read-only; its items are numbered 1… in document order.
 */
import { ServiceError } from '../errors.js';
import { CalendarItemError, parseItem, type CalendarItem } from './occurrences.js';
import { splitImport } from './publish.js';

export interface RemoteLimits {
  bytes: number;
  timeoutMs: number;
  items: number;
}

export const DEFAULT_REMOTE_LIMITS: RemoteLimits = { bytes: 10 * 1024 * 1024, timeoutMs: 15_000, items: 10_000 };

/** The items of the iCalendar document at `url`, and how many could not be read. */
export async function fetchRemoteCalendar(url: string, limits: RemoteLimits = DEFAULT_REMOTE_LIMITS): Promise<{ items: CalendarItem[]; skipped: number }> {
  let parsed: URL;
  try {
    parsed = new URL(url.replace(/^webcals?:/i, (scheme) => (scheme.toLowerCase() === 'webcals:' ? 'https:' : 'http:')));
  } catch {
    throw new ServiceError(`invalid calendar url: ${JSON.stringify(url.slice(0, 100))}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ServiceError('a calendar url must be http, https or webcal');
  let response: Response;
  try {
    response = await fetch(parsed, { signal: AbortSignal.timeout(limits.timeoutMs), redirect: 'follow', headers: { Accept: 'text/calendar, */*;q=0.5' } });
  } catch (err) {
    throw new ServiceError(`the calendar could not be retrieved: ${err instanceof Error ? (err.name === 'TimeoutError' ? 'timed out' : err.message) : String(err)}`);
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
