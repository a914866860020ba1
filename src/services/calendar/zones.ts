/**
 * Wall-clock times of calendar items ↔ instants, for the zone a TZID names.
 *
 * A TZID is looked up, in this order, as an IANA name or a CommuniGate name (through
 * Node's Intl, which has the full time zone database; also behind an old Mozilla-style
 * `/mozilla.org/20050126_1/America/New_York`), as a VTIMEZONE of the item (its changes
 * as ical.js's Timezone expands them), as one of the common Microsoft zone names; a
 * floating time (no Z, no TZID) — and, as the last resort, a TZID nothing knows — is
 * read in the viewer's zone (the user's TimeZone preference). The IANA database comes
 * first because it knows a zone's past rules, where a VTIMEZONE often has only today's.
 *
 * Wall time → instant follows RFC 5545 §3.3.5: a wall time inside a DST gap (02:30 on
 * a spring-forward day) is read with the offset before the gap, which moves it forward
 * by the gap's length; a wall time in an overlap is the first of its two instants.
 */
import ICAL from 'ical.js';
import { fromCommuniGateZone } from '../time-zones.js';

/** A wall-clock time, month 1–12. */
export interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** Where a wall-clock time is read. */
export type ZoneRef =
  | { kind: 'utc' }
  /**
   * An IANA zone. `viewer` marks a zone taken from the viewer (a floating time, an
   * unknown TZID): the same item gives other instants to other viewers.
   */
  | { kind: 'iana'; name: string; viewer: boolean }
  | { kind: 'vtimezone'; tzid: string; timezone: ICAL.Timezone };

export const UTC_ZONE: ZoneRef = Object.freeze({ kind: 'utc' });

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Windows zone names (what Outlook and Exchange write as TZID, often without a
 * VTIMEZONE) → IANA: the common ones, after CLDR's public windowsZones mapping (its
 * "001" territory entries).
 */
export const WINDOWS_TIME_ZONES: Readonly<Record<string, string>> = Object.freeze({
  'Dateline Standard Time': 'Etc/GMT+12',
  'UTC-11': 'Etc/GMT+11',
  'Hawaiian Standard Time': 'Pacific/Honolulu',
  'Alaskan Standard Time': 'America/Anchorage',
  'Pacific Standard Time': 'America/Los_Angeles',
  'Pacific Standard Time (Mexico)': 'America/Tijuana',
  'US Mountain Standard Time': 'America/Phoenix',
  'Mountain Standard Time': 'America/Denver',
  'Mountain Standard Time (Mexico)': 'America/Mazatlan',
  'Central America Standard Time': 'America/Guatemala',
  'Central Standard Time': 'America/Chicago',
  'Central Standard Time (Mexico)': 'America/Mexico_City',
  'Canada Central Standard Time': 'America/Regina',
  'SA Pacific Standard Time': 'America/Bogota',
  'Eastern Standard Time': 'America/New_York',
  'US Eastern Standard Time': 'America/Indiana/Indianapolis',
  'Atlantic Standard Time': 'America/Halifax',
  'Venezuela Standard Time': 'America/Caracas',
  'SA Western Standard Time': 'America/La_Paz',
  'Pacific SA Standard Time': 'America/Santiago',
  'Newfoundland Standard Time': 'America/St_Johns',
  'E. South America Standard Time': 'America/Sao_Paulo',
  'Argentina Standard Time': 'America/Argentina/Buenos_Aires',
  'SA Eastern Standard Time': 'America/Cayenne',
  'Azores Standard Time': 'Atlantic/Azores',
  'Cape Verde Standard Time': 'Atlantic/Cape_Verde',
  UTC: 'Etc/UTC',
  'GMT Standard Time': 'Europe/London',
  'Greenwich Standard Time': 'Atlantic/Reykjavik',
  'Morocco Standard Time': 'Africa/Casablanca',
  'W. Europe Standard Time': 'Europe/Berlin',
  'Central Europe Standard Time': 'Europe/Budapest',
  'Romance Standard Time': 'Europe/Paris',
  'Central European Standard Time': 'Europe/Warsaw',
  'W. Central Africa Standard Time': 'Africa/Lagos',
  'GTB Standard Time': 'Europe/Bucharest',
  'FLE Standard Time': 'Europe/Kiev',
  'E. Europe Standard Time': 'Europe/Chisinau',
  'Egypt Standard Time': 'Africa/Cairo',
  'South Africa Standard Time': 'Africa/Johannesburg',
  'Israel Standard Time': 'Asia/Jerusalem',
  'Jordan Standard Time': 'Asia/Amman',
  'Middle East Standard Time': 'Asia/Beirut',
  'Turkey Standard Time': 'Europe/Istanbul',
  'Arabic Standard Time': 'Asia/Baghdad',
  'Arab Standard Time': 'Asia/Riyadh',
  'Russian Standard Time': 'Europe/Moscow',
  'E. Africa Standard Time': 'Africa/Nairobi',
  'Iran Standard Time': 'Asia/Tehran',
  'Arabian Standard Time': 'Asia/Dubai',
  'Pakistan Standard Time': 'Asia/Karachi',
  'India Standard Time': 'Asia/Kolkata',
  'Nepal Standard Time': 'Asia/Kathmandu',
  'Bangladesh Standard Time': 'Asia/Dhaka',
  'SE Asia Standard Time': 'Asia/Bangkok',
  'China Standard Time': 'Asia/Shanghai',
  'Singapore Standard Time': 'Asia/Singapore',
  'Taipei Standard Time': 'Asia/Taipei',
  'W. Australia Standard Time': 'Australia/Perth',
  'Tokyo Standard Time': 'Asia/Tokyo',
  'Korea Standard Time': 'Asia/Seoul',
  'Cen. Australia Standard Time': 'Australia/Adelaide',
  'AUS Central Standard Time': 'Australia/Darwin',
  'E. Australia Standard Time': 'Australia/Brisbane',
  'AUS Eastern Standard Time': 'Australia/Sydney',
  'Tasmania Standard Time': 'Australia/Hobart',
  'New Zealand Standard Time': 'Pacific/Auckland',
  'Fiji Standard Time': 'Pacific/Fiji',
  'Tonga Standard Time': 'Pacific/Tongatapu',
});

const windowsByLowerCase = new Map(Object.entries(WINDOWS_TIME_ZONES).map(([name, iana]) => [name.toLowerCase(), iana]));

/** The IANA zone of a Windows zone name (any case), or undefined. */
export function windowsZoneToIana(name: string): string | undefined {
  return windowsByLowerCase.get(name.trim().toLowerCase());
}

// -----------------------------------------------------------------------------------------
// Intl zones

/** Formatters by IANA name; null for a name the runtime refuses. */
const formatters = new Map<string, Intl.DateTimeFormat | null>();
/** Refused names are remembered too (each refusal costs a failed construction), up to this many. */
const MAX_REFUSED_NAMES = 1000;
let refusedNames = 0;

function formatterFor(name: string): Intl.DateTimeFormat | undefined {
  let formatter = formatters.get(name);
  if (formatter === undefined) {
    try {
      formatter = new Intl.DateTimeFormat('en-US', {
        timeZone: name,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch {
      formatter = null;
    }
    if (formatter !== null || refusedNames++ < MAX_REFUSED_NAMES) formatters.set(name, formatter);
  }
  return formatter ?? undefined;
}

/** True when the runtime knows this IANA zone name. */
export function isIanaZone(name: string): boolean {
  // Intl also takes offsets such as "+01:00"; a TZID names a region.
  return /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/.test(name) && name.length <= 64 && formatterFor(name) !== undefined;
}

/** Milliseconds since the epoch of a wall time read as UTC (years 0–99 are not 1900–1999). */
export function wallAsUtc(wall: WallTime): number {
  const date = new Date(0);
  date.setUTCFullYear(wall.year, wall.month - 1, wall.day);
  date.setUTCHours(wall.hour, wall.minute, wall.second, 0);
  return date.getTime();
}

/** The wall time of an instant read as UTC. */
export function utcWall(ms: number): WallTime {
  const date = new Date(ms);
  return {
    year: date.getUTCFullYear(),
    month: date.getUTCMonth() + 1,
    day: date.getUTCDate(),
    hour: date.getUTCHours(),
    minute: date.getUTCMinutes(),
    second: date.getUTCSeconds(),
  };
}

// Intl writes years before 1 with an era: instants are kept inside years 1–9999 for it.
const EARLIEST = new Date(0).setUTCFullYear(1, 0, 2);
const LATEST = Date.UTC(9999, 11, 30);

function clampForIntl(ms: number): number {
  return Math.min(Math.max(ms, EARLIEST), LATEST);
}

/** The wall time of an instant in an IANA zone (whole seconds). */
export function instantToWall(ms: number, ianaZone: string): WallTime {
  const formatter = formatterFor(ianaZone);
  if (!formatter) throw new RangeError(`unknown time zone ${ianaZone}`);
  const parts = formatter.formatToParts(clampForIntl(ms));
  const wall: WallTime = { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 };
  for (const part of parts) {
    if (part.type === 'year' || part.type === 'month' || part.type === 'day' || part.type === 'hour' || part.type === 'minute' || part.type === 'second') {
      wall[part.type] = Number(part.value);
    }
  }
  return wall;
}

function intlOffset(ms: number, name: string): number {
  const clamped = clampForIntl(ms);
  const whole = Math.floor(clamped / 1000) * 1000;
  return wallAsUtc(instantToWall(whole, name)) - whole;
}

/**
 * Offsets by zone and hour, for the hours with one offset throughout (zones do not
 * change twice within an hour): a dense rule (hourly, minutely) converts many times in
 * the same hours, and Intl takes microseconds a call.
 */
const hourOffsets = new Map<string, Map<number, number>>();
const MAX_CACHED_HOURS = 20_000;
const MAX_CACHED_ZONES = 1000;

function cachedIntlOffset(ms: number, name: string): number {
  let hours = hourOffsets.get(name);
  if (!hours) {
    if (hourOffsets.size >= MAX_CACHED_ZONES) hourOffsets.clear();
    hours = new Map();
    hourOffsets.set(name, hours);
  }
  const hour = Math.floor(ms / HOUR);
  const cached = hours.get(hour);
  if (cached !== undefined) return cached;
  const first = intlOffset(hour * HOUR, name);
  const last = intlOffset(hour * HOUR + HOUR - 1000, name);
  // The hour of a change is not cached: the instant itself decides.
  if (first !== last) return intlOffset(ms, name);
  if (hours.size >= MAX_CACHED_HOURS) hours.clear();
  hours.set(hour, first);
  return first;
}

// -----------------------------------------------------------------------------------------
// VTIMEZONE zones

/** A zone change as ical.js's Timezone keeps it: the instant in UTC fields, offsets in seconds. */
interface ZoneChange extends WallTime {
  utcOffset: number;
  prevUtcOffset: number;
}

// ical.js expands a VTIMEZONE's rules year by year up to the year asked: the years are
// kept in a range where that is cheap and the rules mean something.
const VTIMEZONE_FIRST_YEAR = 1800;
const VTIMEZONE_LAST_YEAR = 2200;

function changeInstant(change: ZoneChange): number {
  return wallAsUtc(change);
}

function vtimezoneOffset(ms: number, timezone: ICAL.Timezone): number {
  const year = Math.min(Math.max(new Date(ms).getUTCFullYear(), VTIMEZONE_FIRST_YEAR), VTIMEZONE_LAST_YEAR);
  timezone._ensureCoverage(year + 1);
  const changes = timezone.changes as ZoneChange[];
  if (changes.length === 0) return 0;
  // The last change at or before the instant (ical.js keeps them sorted).
  let low = 0;
  let high = changes.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (changeInstant(changes[middle]!) <= ms) {
      found = middle;
      low = middle + 1;
    } else high = middle - 1;
  }
  return (found < 0 ? changes[0]!.prevUtcOffset : changes[found]!.utcOffset) * 1000;
}

// -----------------------------------------------------------------------------------------
// Any zone

/** The zone's offset from UTC at an instant, in ms (local = UTC + offset). */
export function offsetAt(ms: number, zone: ZoneRef): number {
  switch (zone.kind) {
    case 'utc':
      return 0;
    case 'iana':
      return cachedIntlOffset(ms, zone.name);
    case 'vtimezone':
      return vtimezoneOffset(ms, zone.timezone);
  }
}

/**
 * The instant (ms since the epoch) of a wall time in a zone. A wall time that does not
 * exist (a DST gap) is read with the offset before the gap, so it moves forward; one
 * that exists twice (an overlap) is the first of the two.
 */
export function wallToInstant(wall: WallTime, zone: ZoneRef): number {
  const local = wallAsUtc(wall);
  if (zone.kind === 'utc') return local;
  // The offsets a day before and a day after: around one change, one is before it and
  // one after (zones do not change twice within two days).
  const before = offsetAt(local - DAY, zone);
  const after = offsetAt(local + DAY, zone);
  if (before === after) return local - before;
  let earliest: number | undefined;
  for (const offset of [before, after]) {
    const instant = local - offset;
    if (offsetAt(instant, zone) === offset && (earliest === undefined || instant < earliest)) earliest = instant;
  }
  return earliest ?? local - before;
}

/** The wall time of an instant in any zone. */
export function wallInZone(ms: number, zone: ZoneRef): WallTime {
  if (zone.kind === 'iana') return instantToWall(ms, zone.name);
  return utcWall(ms + offsetAt(ms, zone));
}

// -----------------------------------------------------------------------------------------
// TZID resolution

/**
 * VTIMEZONE rules ical.js can expand cheaply: yearly, at most one month and one weekday
 * each, from 1600 on (what every real VTIMEZONE writes). A VTIMEZONE with another rule, or
 * with more than 20 rules, is refused, so that a hostile one cannot make ical.js expand
 * millions of changes.
 */
function tameObservance(observance: ICAL.Component): boolean {
  const rules = observance.getAllProperties('rrule');
  if (rules.length > 1) return false;
  if (observance.getAllProperties('rdate').length > 500) return false;
  // Rules are expanded from their DTSTART on: Outlook's start in 1601, none much earlier.
  const start = observance.getFirstPropertyValue('dtstart');
  if (rules.length > 0 && (!(start instanceof ICAL.Time) || start.year < 1600)) return false;
  for (const property of rules) {
    const rule = property.getFirstValue();
    if (!(rule instanceof ICAL.Recur) || rule.freq !== 'YEARLY') return false;
    const parts = rule.parts;
    for (const name of Object.keys(parts)) {
      if (!['BYMONTH', 'BYDAY', 'BYMONTHDAY'].includes(name)) return false;
    }
    if ((parts.BYMONTH?.length ?? 0) > 1 || (parts.BYDAY?.length ?? 0) > 1) return false;
  }
  return true;
}

/** The VTIMEZONEs of a VCALENDAR usable for conversions, by TZID (malformed ones are left out). */
export function timezonesOf(calendar: ICAL.Component, maxTimezones = 100): Map<string, ICAL.Timezone> {
  const result = new Map<string, ICAL.Timezone>();
  for (const component of calendar.getAllSubcomponents('vtimezone').slice(0, maxTimezones)) {
    try {
      const tzid = component.getFirstPropertyValue('tzid');
      if (typeof tzid !== 'string' || tzid === '' || result.has(tzid)) continue;
      const observances = component.getAllSubcomponents().filter((c) => c.name === 'standard' || c.name === 'daylight');
      const ruled = observances.filter((o) => o.hasProperty('rrule')).length;
      if (observances.length === 0 || observances.length > 200 || ruled > 20 || !observances.every(tameObservance)) continue;
      const timezone = new ICAL.Timezone(component);
      // Expanding once here surfaces malformed offsets and dates now rather than later.
      timezone._ensureCoverage(VTIMEZONE_FIRST_YEAR);
      result.set(tzid, timezone);
    } catch {
      // A VTIMEZONE that cannot be read is as if absent.
    }
  }
  return result;
}

/** An IANA name for a TZID: itself, the zone of a CommuniGate name, or that of an old Mozilla-style `/vendor/…/Region/City`. */
function ianaForTzid(tzid: string): string | undefined {
  const mapped = fromCommuniGateZone(tzid);
  if (isIanaZone(mapped)) return mapped;
  const prefixed = /^\/[^/]+\/[^/]+\/(.+)$/.exec(tzid);
  if (prefixed && isIanaZone(prefixed[1]!)) return prefixed[1];
  return undefined;
}

/** The viewer's zone (an IANA name; UTC when the runtime does not know it). */
export function viewerZoneRef(viewerZone: string): ZoneRef {
  const name = fromCommuniGateZone(viewerZone);
  return isIanaZone(name) ? { kind: 'iana', name, viewer: true } : { kind: 'iana', name: 'UTC', viewer: true };
}

/**
 * The zone a time is read in: UTC for a `Z` time; for a TZID an IANA or CommuniGate
 * name, then the item's VTIMEZONE with that TZID, then a Windows zone name; a floating
 * time (no TZID), and a TZID nothing above knows, in the viewer's zone.
 */
export function resolveZone(
  tzid: string | undefined,
  utc: boolean,
  timezones: ReadonlyMap<string, ICAL.Timezone>,
  viewerZone: string,
): ZoneRef {
  if (utc) return UTC_ZONE;
  if (tzid === undefined || tzid === '') return viewerZoneRef(viewerZone);
  const iana = ianaForTzid(tzid);
  if (iana !== undefined) return { kind: 'iana', name: iana, viewer: false };
  const timezone = timezones.get(tzid);
  if (timezone) return { kind: 'vtimezone', tzid, timezone };
  const windows = windowsZoneToIana(tzid);
  if (windows !== undefined && isIanaZone(windows)) return { kind: 'iana', name: windows, viewer: false };
  return viewerZoneRef(viewerZone);
}
