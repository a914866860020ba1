import { fromCommuniGateZone } from '../services/time-zones.js';

/**
 * XIMSS date-time values: the iCalendar basic form `YYYYMMDDTHHMMSS`, in GMT (`gmtTime`)
 * or in the account's time zone (`localTime`).
 */
function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

export function formatGmt(date: Date): string {
  return (
    pad(date.getUTCFullYear(), 4) +
    pad(date.getUTCMonth() + 1) +
    pad(date.getUTCDate()) +
    'T' +
    pad(date.getUTCHours()) +
    pad(date.getUTCMinutes()) +
    pad(date.getUTCSeconds())
  );
}

/** Formatters by zone name; null for a name the runtime does not know. */
const formatters = new Map<string, Intl.DateTimeFormat | null>();
/** Unknown names are remembered too (a refused one costs a failed construction each time), up to this many. */
const MAX_UNKNOWN_ZONES = 1000;
let unknownZones = 0;

/** The formatter for an IANA zone name, or undefined when the runtime does not know it. */
function formatterFor(timeZone: string): Intl.DateTimeFormat | undefined {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
      });
    } catch {
      f = null;
    }
    if (f !== null || unknownZones++ < MAX_UNKNOWN_ZONES) formatters.set(timeZone, f);
  }
  return f ?? undefined;
}

/** True when the runtime knows this IANA time zone name. */
export function isKnownTimeZone(timeZone: string): boolean {
  return formatterFor(timeZone) !== undefined;
}

/** `date` in GMT, iCalendar form with the `Z`: `20070830T045124Z` (XIMSS message dates). */
export function formatUtc(date: Date): string {
  return formatGmt(date) + 'Z';
}

let hostZone: string | undefined;

/** The server's own zone, what CommuniGate calls "HostOS". */
export function hostTimeZone(): string {
  // Resolving it builds a formatter: cheap once, costly per message shown.
  hostZone ??= Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  return hostZone;
}

/**
 * The IANA zone a TimeZone preference means: a CommuniGate name (`NorthAmerica/Pacific`) the
 * zone it stands for (see time-zones.ts); "HostOS", none or an unknown name the server's.
 */
export function ianaTimeZone(timeZone: string | undefined): string {
  if (!timeZone || timeZone === 'HostOS') return hostTimeZone();
  const iana = fromCommuniGateZone(timeZone);
  return isKnownTimeZone(iana) ? iana : hostTimeZone();
}

/** `date` as wall-clock time in `timeZone` (a TimeZone preference, see ianaTimeZone). */
export function formatLocal(date: Date, timeZone: string | undefined): string {
  const parts = formatterFor(ianaTimeZone(timeZone))!.formatToParts(date);
  const get = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '00';
  return get('year') + get('month') + get('day') + 'T' + get('hour') + get('minute') + get('second');
}

/**
 * Parses `YYYYMMDDTHHMMSS` (optionally with a trailing Z) as GMT; undefined when malformed
 * or not a real time (month 13, February 30, 24:00...).
 */
export function parseGmt(value: string): Date | undefined {
  const m = /^(\d{8})T(\d{6})Z?$/.exec(value.trim());
  if (!m) return undefined;
  const [date, time] = [m[1]!, m[2]!];
  const result = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not take the years 0-99 for 1900-1999.
  result.setUTCFullYear(+date.slice(0, 4), +date.slice(4, 6) - 1, +date.slice(6, 8));
  result.setUTCHours(+time.slice(0, 2), +time.slice(2, 4), +time.slice(4, 6));
  // Out-of-range fields roll over into the next ones; a real time formats back unchanged.
  return formatGmt(result) === `${date}T${time}` ? result : undefined;
}
