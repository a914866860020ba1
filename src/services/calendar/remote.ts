/**
 * Calendars opened from a URL (calendarOpen `url`): a remote iCalendar document fetched over
 * HTTP or HTTPS — bounded in time and size, a few redirects at most — and read into items
 * (grouped by UID like an import). Read-only; its items are numbered 1… in document order.
 */
import { ServiceError } from '../errors.js';
import { fetchRemote, RemoteFetchError } from '../remote-fetch.js';
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

/** The items of the iCalendar document at `url`, and how many could not be read. */
export async function fetchRemoteCalendar(url: string, limits: RemoteLimits = DEFAULT_REMOTE_LIMITS): Promise<{ items: CalendarItem[]; skipped: number }> {
  let parsed: URL;
  try {
    parsed = new URL(url.replace(/^webcals?:/i, (scheme) => (scheme.toLowerCase() === 'webcals:' ? 'https:' : 'http:')));
  } catch {
    throw new ServiceError(`invalid calendar url: ${JSON.stringify(url.slice(0, 100))}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ServiceError('a calendar url must be http, https or webcal');
  let body: Buffer;
  try {
    body = await fetchRemote(parsed, { ...limits, accept: 'text/calendar, */*;q=0.5' }, 'the calendar');
  } catch (err) {
    if (err instanceof RemoteFetchError) throw new ServiceError(err.message);
    throw err;
  }
  const text = body.toString('utf8');
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
