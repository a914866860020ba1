/**
 * The calendar of the `calendar` bench area: a seeded, deterministic set of VEVENT items
 * (one iCalendar text each, the same text for every server) spread over three years around
 * a fixed month, and the answer a month view must give, computed with ical.js alone — not
 * with ximssd's occurrence code, and not from another server's reply.
 *
 * The month is March 2026: both the American (8th) and the European (29th) switch to summer
 * time fall in it, so a server that expands a zoned rule in UTC instead of wall time is
 * caught by the count check.
 */
import ICAL from 'ical.js';
import { seededRandom } from '../../test/fixtures/random.js';

/** The month view: [from, till) in ms, 31 days. */
export const MONTH_FROM = Date.UTC(2026, 2, 1);
export const MONTH_TILL = Date.UTC(2026, 3, 1);
/** The same range as a CalDAV time-range wants it. */
export const MONTH_RANGE = { start: '20260301T000000Z', end: '20260401T000000Z' };
/** The items begin within these three years (the month is in the middle). */
const SPREAD_FROM = Date.UTC(2024, 8, 1);
const SPREAD_DAYS = 3 * 365;
const DAY = 86_400_000;

type Zone = 'UTC' | 'Europe/Berlin' | 'America/New_York';

/**
 * Written here from the zones' current rules (valid for every year this calendar spans):
 * clients send a VTIMEZONE with zoned items, and a server without the IANA database needs it.
 */
const VTIMEZONES: Record<Exclude<Zone, 'UTC'>, string[]> = {
  'Europe/Berlin': [
    'BEGIN:VTIMEZONE',
    'TZID:Europe/Berlin',
    'BEGIN:DAYLIGHT',
    'TZOFFSETFROM:+0100',
    'TZOFFSETTO:+0200',
    'TZNAME:CEST',
    'DTSTART:19810329T020000',
    'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU',
    'END:DAYLIGHT',
    'BEGIN:STANDARD',
    'TZOFFSETFROM:+0200',
    'TZOFFSETTO:+0100',
    'TZNAME:CET',
    'DTSTART:19961027T030000',
    'RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU',
    'END:STANDARD',
    'END:VTIMEZONE',
  ],
  'America/New_York': [
    'BEGIN:VTIMEZONE',
    'TZID:America/New_York',
    'BEGIN:DAYLIGHT',
    'TZOFFSETFROM:-0500',
    'TZOFFSETTO:-0400',
    'TZNAME:EDT',
    'DTSTART:20070311T020000',
    'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU',
    'END:DAYLIGHT',
    'BEGIN:STANDARD',
    'TZOFFSETFROM:-0400',
    'TZOFFSETTO:-0500',
    'TZNAME:EST',
    'DTSTART:20071104T020000',
    'RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU',
    'END:STANDARD',
    'END:VTIMEZONE',
  ],
};

let zonesRegistered = false;
/** ical.js resolves a TZID through its TimezoneService only: give it the zones above. */
function registerZones(): void {
  if (zonesRegistered) return;
  for (const lines of Object.values(VTIMEZONES)) {
    const component = new ICAL.Component(ICAL.parse(['BEGIN:VCALENDAR', ...lines, 'END:VCALENDAR', ''].join('\r\n')) as unknown[]);
    ICAL.TimezoneService.register(component.getFirstSubcomponent('vtimezone')!);
  }
  zonesRegistered = true;
}

interface Wall {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
const dateText = (w: Pick<Wall, 'year' | 'month' | 'day'>): string => `${w.year}${pad(w.month)}${pad(w.day)}`;
const dateTimeText = (w: Wall): string => `${dateText(w)}T${pad(w.hour)}${pad(w.minute)}00`;
/** The calendar day `days` after the spread's start. */
function dayOf(days: number): Pick<Wall, 'year' | 'month' | 'day'> & { weekday: number } {
  const d = new Date(SPREAD_FROM + days * DAY);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), weekday: d.getUTCDay() };
}
const WEEKDAYS = ['SU', 'MO', 'TU', 'WE', 'TH', 'FR', 'SA'] as const;

/** The calendar day `n` days after `w`. */
function plusDays(w: Pick<Wall, 'year' | 'month' | 'day'>, n: number): Pick<Wall, 'year' | 'month' | 'day'> & { weekday: number } {
  return dayOf(Math.round((Date.UTC(w.year, w.month - 1, w.day) - SPREAD_FROM) / DAY) + n);
}

/** A DTSTART-like property line: `NAME;TZID=…:local`, `NAME:…Z` or `NAME;VALUE=DATE:…`. */
function timeLine(name: string, zone: Zone, allDay: boolean, value: string): string {
  if (allDay) return `${name};VALUE=DATE:${value}`;
  return zone === 'UTC' ? `${name}:${value}Z` : `${name};TZID=${zone}:${value}`;
}

/** An ical.js time as this item's property value (wall time in its zone, or a date). */
function icalValue(time: ICAL.Time, allDay: boolean): string {
  const w = { year: time.year, month: time.month, day: time.day, hour: time.hour, minute: time.minute };
  return allDay ? dateText(w) : dateTimeText(w);
}

export interface CalendarItem {
  uid: string;
  /** A whole VCALENDAR (CRLF line ends), as a client would PUT it. */
  text: string;
  recurring: boolean;
}

export interface MonthAnswer {
  /** Items with at least one occurrence overlapping the month (what a CalDAV calendar-query returns). */
  items: number;
  /** Occurrences overlapping the month (what a month view shows). */
  occurrences: number;
  /** The UIDs of those items. */
  uids: string[];
}

export interface BenchCalendar {
  items: CalendarItem[];
  expected: MonthAnswer;
  recurring: number;
  bytes: number;
}

const DTSTAMP = 'DTSTAMP:20240801T120000Z';
const PLACES = ['Room 1', 'Room 2', 'Board room', 'Cafeteria', 'Online', 'Building B, floor 3'];

function wrap(zone: Zone, events: string[][]): string {
  const lines = ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//ximssd//calendar bench//EN'];
  if (zone !== 'UTC') lines.push(...VTIMEZONES[zone]);
  for (const e of events) lines.push(...e);
  lines.push('END:VCALENDAR', '');
  return lines.join('\r\n');
}

function pickZone(random: () => number): Zone {
  const r = random();
  return r < 0.4 ? 'UTC' : r < 0.7 ? 'Europe/Berlin' : 'America/New_York';
}

/** Start time, 07:00–19:45 local in quarters; a length of 30 min–3 h in quarters. */
function pickTimes(random: () => number): { hour: number; minute: number; minutes: number } {
  const quarter = Math.floor(random() * 52);
  return { hour: 7 + Math.floor(quarter / 4), minute: (quarter % 4) * 15, minutes: 30 + 15 * Math.floor(random() * 11) };
}

/** DTEND (or a DURATION, as some clients write) of a timed item. */
function endLine(random: () => number, zone: Zone, start: Wall, minutes: number): string {
  if (random() < 0.3) return `DURATION:PT${Math.floor(minutes / 60) ? `${Math.floor(minutes / 60)}H` : ''}${minutes % 60 ? `${minutes % 60}M` : ''}`;
  const t = new Date(Date.UTC(start.year, start.month - 1, start.day, start.hour, start.minute + minutes));
  const end: Wall = { year: t.getUTCFullYear(), month: t.getUTCMonth() + 1, day: t.getUTCDate(), hour: t.getUTCHours(), minute: t.getUTCMinutes() };
  return timeLine('DTEND', zone, false, dateTimeText(end));
}

function singleItem(i: number, random: () => number): CalendarItem {
  const uid = `bench-event-${pad(i, 5)}@calendar.bench`;
  const day = dayOf(Math.floor(random() * SPREAD_DAYS));
  const zone = pickZone(random);
  const lines = ['BEGIN:VEVENT', `UID:${uid}`, DTSTAMP, `SUMMARY:Event ${i}`];
  if (random() < 0.1) {
    const length = 1 + Math.floor(random() * 3);
    const end = plusDays(day, length);
    lines.push(timeLine('DTSTART', zone, true, dateText(day)), timeLine('DTEND', zone, true, dateText(end)), 'TRANSP:TRANSPARENT');
  } else {
    const { hour, minute, minutes } = pickTimes(random);
    const start: Wall = { ...day, hour, minute };
    lines.push(timeLine('DTSTART', zone, false, dateTimeText(start)), endLine(random, zone, start, minutes));
  }
  if (random() < 0.5) lines.push(`LOCATION:${PLACES[Math.floor(random() * PLACES.length)]}`);
  if (random() < 0.3) lines.push(`DESCRIPTION:Notes for event ${i}\\, written by the calendar bench.`);
  lines.push('END:VEVENT');
  return { uid, text: wrap(zone, [lines]), recurring: false };
}

/** The occurrences (recurrence ids) of a master VEVENT, as ical.js expands it, up to a bound. */
function occurrencesOf(text: string, until: number): ICAL.Time[] {
  const vevent = new ICAL.Component(ICAL.parse(text) as unknown[]).getFirstSubcomponent('vevent')!;
  const iterator = new ICAL.Event(vevent).iterator();
  const list: ICAL.Time[] = [];
  for (let t = iterator.next(); t && t.toUnixTime() * 1000 < until && list.length < 5000; t = iterator.next()) list.push(t);
  return list;
}

function recurringItem(i: number, random: () => number): CalendarItem {
  const uid = `bench-series-${pad(i, 4)}@calendar.bench`;
  const startDay = dayOf(Math.floor(random() * SPREAD_DAYS));
  const kind = random();
  const allDay = kind >= 0.85;
  const zone = allDay ? 'UTC' : pickZone(random);
  const { hour, minute, minutes } = pickTimes(random);
  let day = startDay;
  let rule: string;
  // DTSTART is always an occurrence of the rule: RFC 5545 counts it anyway, and not every
  // server does when it is not.
  if (kind < 0.4) {
    const days = new Set([WEEKDAYS[startDay.weekday]!]);
    const extra = Math.floor(random() * 3);
    for (let k = 0; k < extra; k++) days.add(WEEKDAYS[1 + Math.floor(random() * 5)]!);
    rule = `FREQ=WEEKLY${random() < 0.2 ? ';INTERVAL=2' : ''};BYDAY=${[...days].join(',')};WKST=MO`;
  } else if (kind < 0.6) {
    if (random() < 0.5) rule = 'FREQ=DAILY';
    else {
      // Weekdays only: move the start to a weekday.
      const shift = startDay.weekday === 0 ? 1 : startDay.weekday === 6 ? 2 : 0;
      day = plusDays(startDay, shift);
      rule = 'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR';
    }
  } else if (kind < 0.85) {
    if (random() < 0.6) {
      // The nth (or last) weekday of the month the start falls on.
      const nth = Math.ceil(startDay.day / 7);
      const daysInMonth = new Date(Date.UTC(startDay.year, startDay.month, 0)).getUTCDate();
      const last = startDay.day + 7 > daysInMonth;
      const which = nth === 5 || (last && random() < 0.5) ? '-1' : String(nth);
      rule = `FREQ=MONTHLY;BYDAY=${which}${WEEKDAYS[startDay.weekday]}`;
    } else {
      day = { ...startDay, day: Math.min(startDay.day, 28) };
      rule = `FREQ=MONTHLY;BYMONTHDAY=${day.day}`;
    }
  } else if (kind < 0.95) rule = `FREQ=WEEKLY;BYDAY=${WEEKDAYS[startDay.weekday]}`;
  else rule = 'FREQ=YEARLY';
  const bound = random();
  if (bound < 0.35) rule += `;COUNT=${3 + Math.floor(random() * 58)}`;
  else if (bound < 0.65) {
    const until = plusDays(day, 30 + Math.floor(random() * 500));
    rule += allDay ? `;UNTIL=${dateText(until)}` : `;UNTIL=${dateText(until)}T235959Z`;
  }
  const start: Wall = { ...day, hour, minute };
  const summary = `Series ${i}`;
  const master = ['BEGIN:VEVENT', `UID:${uid}`, DTSTAMP, `SUMMARY:${summary}`];
  if (allDay) {
    const next = plusDays(day, 1);
    master.push(timeLine('DTSTART', zone, true, dateText(day)), timeLine('DTEND', zone, true, dateText(next)));
  } else master.push(timeLine('DTSTART', zone, false, dateTimeText(start)), endLine(random, zone, start, minutes));
  master.push(`RRULE:${rule}`);
  if (random() < 0.4) master.push(`LOCATION:${PLACES[Math.floor(random() * PLACES.length)]}`);

  const withExdates = random() < 0.25;
  const withOverride = random() < 0.04;
  const overrides: string[][] = [];
  if (withExdates || withOverride) {
    // Exceptions where they show: occurrences in (or right beside) the month when there are some.
    const all = occurrencesOf(wrap(zone, [[...master, 'END:VEVENT']]), MONTH_TILL + 7 * DAY);
    const near = all.slice(1).filter((t) => t.toUnixTime() * 1000 >= MONTH_FROM - 3 * DAY);
    const pool = near.length ? near : all.slice(1);
    const take = (): ICAL.Time | undefined => (pool.length ? pool.splice(Math.floor(random() * pool.length), 1)[0] : undefined);
    if (withExdates) {
      const count = 1 + Math.floor(random() * 3);
      for (let k = 0; k < count; k++) {
        const t = take();
        if (t) master.push(timeLine('EXDATE', zone, allDay, icalValue(t, allDay)));
      }
    }
    const moved = withOverride ? take() : undefined;
    if (moved) {
      // Later (by 90 minutes, or a day), renamed: the override's own times are what count.
      const to = moved.clone();
      if (random() < 0.5 || allDay) to.adjust(1, 0, 0, 0);
      else to.adjust(0, 1, 30, 0);
      const override = ['BEGIN:VEVENT', `UID:${uid}`, DTSTAMP, timeLine('RECURRENCE-ID', zone, allDay, icalValue(moved, allDay)), `SUMMARY:${summary} (moved)`, 'SEQUENCE:1'];
      if (allDay) {
        const after = to.clone();
        after.adjust(1, 0, 0, 0);
        override.push(timeLine('DTSTART', zone, true, icalValue(to, true)), timeLine('DTEND', zone, true, icalValue(after, true)));
      } else {
        override.push(timeLine('DTSTART', zone, false, icalValue(to, false)), `DURATION:PT${minutes}M`);
      }
      override.push('END:VEVENT');
      overrides.push(override);
    }
  }
  master.push('END:VEVENT');
  return { uid, text: wrap(zone, [master, ...overrides]), recurring: true };
}

/** What a month view of [from, till) must show of these items, by ical.js's expansion. */
export function expectedAnswer(items: readonly CalendarItem[], from: number, till: number): MonthAnswer {
  registerZones();
  const uids: string[] = [];
  let occurrences = 0;
  for (const item of items) {
    const calendar = new ICAL.Component(ICAL.parse(item.text) as unknown[]);
    const vevents = calendar.getAllSubcomponents('vevent');
    const master = vevents.find((v) => !v.hasProperty('recurrence-id'))!;
    const event = new ICAL.Event(master, { exceptions: vevents.filter((v) => v !== master) });
    const overlaps = (start: ICAL.Time, end: ICAL.Time): boolean => {
      const s = start.toUnixTime() * 1000;
      const e = Math.max(end.toUnixTime() * 1000, s + 1);
      return s < till && e > from;
    };
    let found = 0;
    if (!event.isRecurring()) {
      if (overlaps(event.startDate, event.endDate)) found++;
    } else {
      const iterator = event.iterator();
      // Occurrences here last three days at most, and overrides move them by a day at most:
      // four days around the range are enough to look at.
      for (let t = iterator.next(); t; t = iterator.next()) {
        const at = t.toUnixTime() * 1000;
        if (at >= till + 4 * DAY) break;
        if (at < from - 4 * DAY) continue;
        const details = event.getOccurrenceDetails(t);
        if (overlaps(details.startDate, details.endDate)) found++;
      }
    }
    if (found) uids.push(item.uid);
    occurrences += found;
  }
  return { items: uids.length, occurrences, uids };
}

/** `count` items (a tenth of them recurring), the same for the same seed. */
export function benchCalendar(count: number, seed = 2026): BenchCalendar {
  registerZones();
  const random = seededRandom(seed);
  const recurring = Math.round(count / 10);
  const items: CalendarItem[] = [];
  // Interleaved, so that a smaller --calendar-items keeps the mix.
  for (let i = 0, r = 0, s = 0; i < count; i++) {
    if (r < recurring && i % 10 === 9) items.push(recurringItem(r++, random));
    else items.push(singleItem(s++, random));
  }
  const bytes = items.reduce((n, item) => n + Buffer.byteLength(item.text), 0);
  return { items, expected: expectedAnswer(items, MONTH_FROM, MONTH_TILL), recurring, bytes };
}
