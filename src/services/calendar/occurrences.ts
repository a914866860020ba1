/**
 * The occurrences of a calendar item — one iCalendar object: a master VEVENT or VTODO,
 * the instances overriding some of its occurrences (RECURRENCE-ID, same UID) and the
 * VTIMEZONEs they use — in a range of time, and what a listing shows of each.
 *
 * ical.js parses the text and its values and iterates the RRULEs (RecurIterator). The
 * iteration is done in wall-clock time of the master's DTSTART zone, each occurrence
 * converted to an instant on its own (zones.ts), so that a weekly 10:00 meeting stays at
 * 10:00 local time across DST changes. RDATE (DATE-TIME, DATE and PERIOD values), EXDATE
 * (in any zone) and overriding instances are applied on top; an override with
 * RANGE=THISANDFUTURE is treated as one overriding only its own occurrence.
 *
 * Hostile items are bounded: the text's size, the number of components, dates and
 * alarms, and the work done per expansion (rule steps, and ical.js's own search inside
 * one step); an expansion that runs out of work returns what it found and says so.
 * Every failure is a CalendarItemError.
 */
import ICAL from 'ical.js';
import {
  resolveZone,
  timezonesOf,
  utcWall,
  viewerZoneRef,
  wallAsUtc,
  wallInZone,
  wallToInstant,
  type WallTime,
  type ZoneRef,
} from './zones.js';

/** Thrown for a text that is not a usable calendar item; the message is the reason. */
export class CalendarItemError extends Error {
  override name = 'CalendarItemError';
}

// Limits against hostile items.
/** The largest item text read (attachments can be inline, hence generous). */
export const MAX_ITEM_TEXT = 10 * 1024 * 1024;
/** Components (master and overrides) of one item. */
const MAX_INSTANCES = 2000;
/** RDATE and EXDATE values of one component, each. */
const MAX_DATES = 10_000;
const MAX_RULES = 4;
const MAX_ALARMS = 20;
/** Repetitions of one alarm (REPEAT) that are reported. */
const MAX_ALARM_REPEATS = 10;
/** Rule steps (occurrences produced by ical.js) in one expansion. */
export const MAX_RULE_STEPS = 50_000;
/**
 * ical.js's candidate checks in one expansion: a rule that matches rarely (or never) searches
 * long inside one step, some 10 µs a candidate.
 */
const MAX_CANDIDATE_CHECKS = 50_000;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Offsets from UTC stay within ±26 h (with margin): a wall time's instant is within this of it read as UTC. */
const OFFSET_MARGIN = 26 * HOUR;
/** How much an index widens the span of floating and all-day items so that every viewer zone (UTC−12…UTC+14) is covered. */
export const FLOATING_SPAN_MARGIN = 14 * HOUR;
const EARLIEST_MS = new Date(0).setUTCFullYear(1, 0, 1);
const LATEST_MS = new Date(0).setUTCFullYear(10000, 0, 1);

// -----------------------------------------------------------------------------------------
// The model

/** A DATE or DATE-TIME value as written: its wall time and what zone it is in. */
export interface DateValue {
  wall: WallTime;
  isDate: boolean;
  /** A `Z` time. */
  utc: boolean;
  /** The TZID parameter (not for UTC times). */
  tzid?: string;
}

export type BusyStatus = 'BUSY' | 'TENTATIVE' | 'UNAVAILABLE' | 'FREE';

export interface AlarmDefinition {
  /** ACTION (DISPLAY, AUDIO, EMAIL…), upper case. */
  action: string;
  trigger:
    | { kind: 'relative'; related: 'start' | 'end'; seconds: number }
    | { kind: 'absolute'; time: DateValue };
  /** REPEAT (at most MAX_ALARM_REPEATS are reported) and the DURATION between repetitions. */
  repeat: number;
  repeatIntervalSeconds: number;
}

/** What a listing (findEvents, findTasks) shows of a master or an overriding instance. */
export interface ItemFields {
  summary?: string;
  location?: string;
  description?: string;
  /** STATUS, upper case (CONFIRMED, TENTATIVE, CANCELLED, NEEDS-ACTION, COMPLETED…). */
  status?: string;
  /** PRIORITY as written (0 means "undefined" in RFC 5545). */
  priority?: number;
  /** The ORGANIZER's address without `mailto:` (another URI as written). */
  organizer?: string;
  attendees: number;
  busyStatus: BusyStatus;
  /** DTSTART is a DATE. */
  allDay: boolean;
  /**
   * DTEND − DTSTART (or DUE − DTSTART of a task, or DURATION) in seconds, as written:
   * whole days of an all-day item (one when it has no end); 0 when there is no end.
   */
  durationSeconds: number;
  due?: DateValue;
  percentComplete?: number;
  alarms: AlarmDefinition[];
  /** The master has RRULE or RDATE, or this is an overriding instance. */
  recurring: boolean;
}

export interface CalendarItem {
  kind: 'event' | 'todo';
  uid: string;
  /** The VCALENDAR (or the bare VEVENT/VTODO the text was). */
  calendar: ICAL.Component;
  /**
   * The master component; for an item holding only overriding instances (an invitation
   * to one occurrence), the earliest of them, and `masterless` is set.
   */
  master: ICAL.Component;
  masterless: boolean;
  /**
   * The overriding instances by recurrence id, in the form of Occurrence.recurrenceId
   * (the original start in the master's DTSTART zone: `20060518T100000`, `…Z` for a UTC
   * master, `20060518` for an all-day one). Empty for a masterless item.
   */
  overrides: ReadonlyMap<string, ICAL.Component>;
  /** The master's DTSTART (of a task without one, its DUE); absent for an undated item. */
  start?: DateValue;
  /** The master's listing fields. */
  fields: ItemFields;
  /** The item's usable VTIMEZONEs by TZID. */
  timezones: ReadonlyMap<string, ICAL.Timezone>;
}

export interface Occurrence {
  /** ms since the epoch; an all-day occurrence spans whole days in the viewer's zone. */
  start: number;
  end: number;
  allDay: boolean;
  /** YYYYMMDD of an all-day occurrence (its first day). */
  date?: string;
  /** The original start, iCalendar basic form (see CalendarItem.overrides). */
  recurrenceId: string;
  /** Comes from an overriding instance (its fields, its time). */
  fromOverride: boolean;
  /** Alarm instants, sorted. */
  alarms: number[];
  /** A task's due instant. */
  due?: number;
  fields: ItemFields;
  component: ICAL.Component;
}

export interface Expansion {
  occurrences: Occurrence[];
  /** The expansion ran out of work (a runaway rule): the occurrences are the ones found. */
  truncated: boolean;
}

export interface AlarmHit {
  alarm: number;
  occurrence: Occurrence;
}

type EndSpec =
  | { kind: 'none' }
  | { kind: 'time'; value: DateValue }
  | { kind: 'duration'; days: number; seconds: number };

interface Instance {
  component: ICAL.Component;
  /** DTSTART; of a task without one, DUE. */
  start?: DateValue;
  end: EndSpec;
  due?: DateValue;
  recurrenceId?: DateValue;
  cancelled: boolean;
  sequence: number;
  fields: ItemFields;
}

interface RecurrenceDate {
  value: DateValue;
  end?: DateValue;
  duration?: { days: number; seconds: number };
}

interface Plan {
  master: Instance;
  /** Overriding instances (all of them, for a masterless item). */
  overrides: Instance[];
  rules: ICAL.Recur[];
  rdates: RecurrenceDate[];
  exdates: DateValue[];
  timezones: Map<string, ICAL.Timezone>;
  masterless: boolean;
}

const plans = new WeakMap<CalendarItem, Plan>();

// -----------------------------------------------------------------------------------------
// Reading

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function dateString(wall: WallTime): string {
  return pad(wall.year, 4) + pad(wall.month) + pad(wall.day);
}

function basicForm(wall: WallTime): string {
  return `${dateString(wall)}T${pad(wall.hour)}${pad(wall.minute)}${pad(wall.second)}`;
}

function isTime(value: unknown): value is ICAL.Time {
  return value instanceof ICAL.Time;
}

/**
 * ical.js normalizes an out-of-range date (month 13, February 30, 25:00) into another
 * one: the text as written (jCal form, `2024-02-30T25:00:00`) is checked against it.
 */
function checkWritten(time: ICAL.Time, written: unknown, what: string): void {
  if (typeof written !== 'string') return;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}))?/.exec(written);
  if (!m) throw new CalendarItemError(`${what}: invalid date or time`);
  const same =
    +m[1]! === time.year && +m[2]! === time.month && +m[3]! === time.day &&
    (m[4] === undefined || (+m[4] === time.hour && +m[5]! === time.minute && +m[6]! === time.second));
  if (!same) throw new CalendarItemError(`${what}: invalid date or time`);
}

/** The wall time of an ical.js time (midnight for a date; a leap second read as :59). */
function wallOf(time: ICAL.Time, dateOnly: boolean): WallTime {
  return {
    year: time.year,
    month: time.month,
    day: time.day,
    hour: dateOnly ? 0 : time.hour,
    minute: dateOnly ? 0 : time.minute,
    second: dateOnly ? 0 : Math.min(time.second, 59),
  };
}

function timeToDateValue(time: ICAL.Time, tzid: string | undefined, what: string): DateValue {
  const wall = wallOf(time, time.isDate);
  const valid =
    Number.isInteger(wall.year) && wall.year >= 1 && wall.year <= 9999 &&
    wall.month >= 1 && wall.month <= 12 && wall.day >= 1 && wall.day <= ICAL.Time.daysInMonth(wall.month, wall.year) &&
    wall.hour >= 0 && wall.hour <= 23 && wall.minute >= 0 && wall.minute <= 59 && wall.second >= 0;
  if (!valid) throw new CalendarItemError(`${what}: invalid date or time`);
  const utc = !time.isDate && time.zone === ICAL.Timezone.utcTimezone;
  const value: DateValue = { wall, isDate: time.isDate, utc };
  if (!utc && !time.isDate && tzid) value.tzid = tzid;
  return value;
}

function tzidOf(property: ICAL.Property): string | undefined {
  const tzid = property.getFirstParameter('tzid');
  return typeof tzid === 'string' && tzid !== '' ? tzid : undefined;
}

function dateProperty(component: ICAL.Component, name: string): DateValue | undefined {
  const property = component.getFirstProperty(name);
  if (!property) return undefined;
  const value = property.getFirstValue();
  if (!isTime(value)) throw new CalendarItemError(`${name.toUpperCase()} is not a date or a date-time`);
  checkWritten(value, property.jCal[3], name.toUpperCase());
  return timeToDateValue(value, tzidOf(property), name.toUpperCase());
}

function textProperty(component: ICAL.Component, name: string): string | undefined {
  const value = component.getFirstPropertyValue(name);
  if (value === null || value === undefined) return undefined;
  return typeof value === 'string' ? value : String(value);
}

function integerProperty(component: ICAL.Component, name: string): number | undefined {
  const value = component.getFirstPropertyValue(name);
  if (value === null || value === undefined) return undefined;
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  return Number.isInteger(n) ? n : undefined;
}

function durationParts(duration: ICAL.Duration): { days: number; seconds: number; negative: boolean } {
  return {
    days: duration.weeks * 7 + duration.days,
    seconds: duration.hours * 3600 + duration.minutes * 60 + duration.seconds,
    negative: duration.isNegative,
  };
}

function busyStatusOf(component: ICAL.Component): BusyStatus {
  const microsoft = textProperty(component, 'x-microsoft-cdo-busystatus')?.trim().toUpperCase();
  if (microsoft === 'OOF' || microsoft === 'UNAVAILABLE') return 'UNAVAILABLE';
  if (microsoft === 'FREE' || microsoft === 'TENTATIVE' || microsoft === 'BUSY') return microsoft;
  if (textProperty(component, 'transp')?.trim().toUpperCase() === 'TRANSPARENT') return 'FREE';
  if (textProperty(component, 'status')?.trim().toUpperCase() === 'TENTATIVE') return 'TENTATIVE';
  return 'BUSY';
}

function alarmsOf(component: ICAL.Component): AlarmDefinition[] {
  const alarms: AlarmDefinition[] = [];
  for (const alarm of component.getAllSubcomponents('valarm').slice(0, MAX_ALARMS)) {
    const property = alarm.getFirstProperty('trigger');
    if (!property) continue;
    const value = property.getFirstValue();
    let trigger: AlarmDefinition['trigger'];
    if (value instanceof ICAL.Duration) {
      const related = String(property.getFirstParameter('related') ?? '').toUpperCase() === 'END' ? 'end' : 'start';
      trigger = { kind: 'relative', related, seconds: value.toSeconds() };
    } else if (isTime(value)) {
      checkWritten(value, property.jCal[3], 'TRIGGER');
      trigger = { kind: 'absolute', time: timeToDateValue(value, tzidOf(property), 'TRIGGER') };
    } else continue;
    const repeat = Math.min(Math.max(integerProperty(alarm, 'repeat') ?? 0, 0), MAX_ALARM_REPEATS);
    const interval = alarm.getFirstPropertyValue('duration');
    const repeatIntervalSeconds = interval instanceof ICAL.Duration ? Math.max(interval.toSeconds(), 0) : 0;
    alarms.push({
      action: (textProperty(alarm, 'action') ?? 'DISPLAY').trim().toUpperCase(),
      trigger,
      // Repetitions without an interval would all fall on the first one.
      repeat: repeatIntervalSeconds > 0 ? repeat : 0,
      repeatIntervalSeconds,
    });
  }
  return alarms;
}

/** Whole days from one wall date to another. */
function daysBetween(from: WallTime, to: WallTime): number {
  const dateOnly = (w: WallTime): WallTime => ({ ...w, hour: 0, minute: 0, second: 0 });
  return Math.round((wallAsUtc(dateOnly(to)) - wallAsUtc(dateOnly(from))) / DAY);
}

function addDays(wall: WallTime, days: number): WallTime {
  return utcWall(wallAsUtc(wall) + days * DAY);
}

/** Seconds from one value to another read as UTC when they are in different zones (what the fields show; occurrences are exact). */
function nominalSeconds(from: DateValue, to: DateValue): number {
  return Math.round((wallAsUtc(to.wall) - wallAsUtc(from.wall)) / 1000);
}

function readInstance(component: ICAL.Component, kind: 'event' | 'todo'): Instance {
  const dtstart = dateProperty(component, 'dtstart');
  const due = kind === 'todo' ? dateProperty(component, 'due') : undefined;
  const recurrenceId = dateProperty(component, 'recurrence-id');
  // An overriding instance without DTSTART (RFC 5545 wants one) stays where it was.
  const start = dtstart ?? due ?? recurrenceId;
  let end: EndSpec = { kind: 'none' };
  const dtend = kind === 'event' ? dateProperty(component, 'dtend') : undefined;
  const durationValue = component.getFirstPropertyValue('duration');
  if (dtend && start) end = { kind: 'time', value: dtend };
  else if (kind === 'todo' && dtstart && due) end = { kind: 'time', value: due };
  else if (durationValue instanceof ICAL.Duration) {
    const parts = durationParts(durationValue);
    // A negative duration is taken as none.
    if (!parts.negative) end = { kind: 'duration', days: parts.days, seconds: parts.seconds };
  }

  const allDay = start?.isDate ?? false;
  let durationSeconds = 0;
  if (start) {
    if (allDay) {
      if (end.kind === 'time') durationSeconds = Math.max(daysBetween(start.wall, end.value.wall), 1) * 86400;
      else if (end.kind === 'duration') durationSeconds = Math.max(end.days + Math.ceil(end.seconds / 86400), 1) * 86400;
      else durationSeconds = 86400;
    } else if (end.kind === 'time') durationSeconds = Math.max(nominalSeconds(start, end.value), 0);
    else if (end.kind === 'duration') durationSeconds = end.days * 86400 + end.seconds;
  }

  const organizerValue = textProperty(component, 'organizer');
  const organizer = organizerValue === undefined ? undefined : organizerValue.trim().replace(/^mailto:/i, '');
  const status = textProperty(component, 'status')?.trim().toUpperCase();
  const fields: ItemFields = {
    attendees: component.getAllProperties('attendee').length,
    busyStatus: busyStatusOf(component),
    allDay,
    durationSeconds,
    alarms: alarmsOf(component),
    // An overriding instance is one of a recurring item's.
    recurring: component.hasProperty('rrule') || component.hasProperty('rdate') || recurrenceId !== undefined,
  };
  const summary = textProperty(component, 'summary');
  if (summary !== undefined) fields.summary = summary;
  const location = textProperty(component, 'location');
  if (location !== undefined) fields.location = location;
  const description = textProperty(component, 'description');
  if (description !== undefined) fields.description = description;
  if (status !== undefined) fields.status = status;
  const priority = integerProperty(component, 'priority');
  if (priority !== undefined) fields.priority = priority;
  if (organizer !== undefined) fields.organizer = organizer;
  if (due !== undefined) fields.due = due;
  const percent = integerProperty(component, 'percent-complete');
  if (percent !== undefined) fields.percentComplete = percent;

  const instance: Instance = { component, end, cancelled: status === 'CANCELLED', sequence: integerProperty(component, 'sequence') ?? 0, fields };
  if (start) instance.start = start;
  if (due) instance.due = due;
  if (recurrenceId) instance.recurrenceId = recurrenceId;
  return instance;
}

function datesOf(component: ICAL.Component, name: 'rdate' | 'exdate'): RecurrenceDate[] {
  const result: RecurrenceDate[] = [];
  for (const property of component.getAllProperties(name)) {
    const tzid = tzidOf(property);
    const written = property.jCal.slice(3) as unknown[];
    for (const [index, value] of (property.getValues() as unknown[]).entries()) {
      if (result.length >= MAX_DATES) throw new CalendarItemError(`more than ${MAX_DATES} ${name.toUpperCase()} values`);
      if (isTime(value)) {
        checkWritten(value, written[index], name.toUpperCase());
        result.push({ value: timeToDateValue(value, tzid, name.toUpperCase()) });
      } else if (value instanceof ICAL.Period && name === 'rdate') {
        const date: RecurrenceDate = { value: timeToDateValue(value.start, tzid, 'RDATE') };
        if (value.end) date.end = timeToDateValue(value.end, tzid, 'RDATE');
        else if (value.duration) {
          const parts = durationParts(value.duration);
          if (!parts.negative) date.duration = { days: parts.days, seconds: parts.seconds };
        }
        result.push(date);
      } else throw new CalendarItemError(`${name.toUpperCase()}: invalid value`);
    }
  }
  return result;
}

const FREQUENCIES = new Set(['SECONDLY', 'MINUTELY', 'HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY', 'YEARLY']);

// The candidate checks of the running expansion: ical.js searches for the next
// occurrence of a rule in a loop that ends only when a candidate matches, which for a
// rule that matches rarely (or never) is a long time. Expansions are synchronous, so
// one counter serves.
let candidateChecks = 0;

class RunawayRuleError extends Error {}

/** ical.js's RecurIterator, stopped when the expansion has checked too many candidates. */
class BoundedRecurIterator extends ICAL.RecurIterator {
  override check_contracting_rules(): boolean {
    if (++candidateChecks > MAX_CANDIDATE_CHECKS) throw new RunawayRuleError('the recurrence rule runs away');
    return super.check_contracting_rules();
  }
}

function floatingTime(wall: WallTime, isDate: boolean): ICAL.Time {
  return ICAL.Time.fromData({ ...wall, isDate });
}

function rulesOf(component: ICAL.Component, start: DateValue | undefined): ICAL.Recur[] {
  const properties = component.getAllProperties('rrule');
  if (properties.length > MAX_RULES) throw new CalendarItemError(`more than ${MAX_RULES} RRULEs`);
  const rules: ICAL.Recur[] = [];
  for (const property of properties) {
    const rule = property.getFirstValue();
    if (!(rule instanceof ICAL.Recur) || !FREQUENCIES.has(String(rule.freq))) throw new CalendarItemError('RRULE: invalid FREQ');
    if (!Number.isInteger(rule.interval) || rule.interval < 1) throw new CalendarItemError('RRULE: invalid INTERVAL');
    if (rule.count !== null && (!Number.isInteger(rule.count) || rule.count < 1)) throw new CalendarItemError('RRULE: invalid COUNT');
    if (rule.until !== null) {
      if (!isTime(rule.until)) throw new CalendarItemError('RRULE: invalid UNTIL');
      timeToDateValue(rule.until, undefined, 'RRULE UNTIL');
    }
    if (start) {
      // ical.js checks the rule's parts when an iterator starts: malformed ones fail now.
      try {
        new BoundedRecurIterator({ rule, dtstart: floatingTime(start.wall, start.isDate) });
      } catch (err) {
        throw new CalendarItemError(`RRULE: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    rules.push(rule);
  }
  return rules;
}

function parseRoot(text: string): ICAL.Component {
  if (text.length > MAX_ITEM_TEXT) throw new CalendarItemError('the calendar item is too large');
  const source = text.replace(/^\uFEFF/, '');
  if (!/^\s*BEGIN:(VCALENDAR|VEVENT|VTODO)\s*(\r\n|\n|\r)/i.test(source)) throw new CalendarItemError('the text does not begin with BEGIN:VCALENDAR');
  let parsed: unknown;
  try {
    parsed = ICAL.parse(source.endsWith('\n') ? source : source + '\r\n');
  } catch (err) {
    throw new CalendarItemError(err instanceof Error ? err.message : String(err));
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new CalendarItemError('no calendar found');
  if (Array.isArray(parsed[0])) {
    if (parsed.length !== 1) throw new CalendarItemError('more than one VCALENDAR where one is expected');
    parsed = parsed[0];
  }
  return new ICAL.Component(parsed as unknown[]);
}

/**
 * The calendar item of an iCalendar text: a VCALENDAR with one VEVENT or VTODO (the
 * first component's kind and UID decide; others are ignored) and its overriding
 * instances. A malformed text, or one without a VEVENT or VTODO, is a CalendarItemError.
 */
export function parseItem(text: string): CalendarItem {
  try {
    return readItem(parseRoot(text));
  } catch (err) {
    if (err instanceof CalendarItemError) throw err;
    throw new CalendarItemError(err instanceof Error ? err.message : String(err));
  }
}

function readItem(calendar: ICAL.Component): CalendarItem {
  let components: ICAL.Component[];
  if (calendar.name === 'vcalendar') components = calendar.getAllSubcomponents().filter((c) => c.name === 'vevent' || c.name === 'vtodo');
  else if (calendar.name === 'vevent' || calendar.name === 'vtodo') components = [calendar];
  else throw new CalendarItemError(`unexpected component ${calendar.name.toUpperCase()}`);
  if (components.length === 0) throw new CalendarItemError('no VEVENT or VTODO in the calendar item');
  const kindName = components[0]!.name;
  const kind = kindName === 'vtodo' ? 'todo' : 'event';
  const first = components.find((c) => c.name === kindName && !c.hasProperty('recurrence-id')) ?? components[0]!;
  const uid = textProperty(first, 'uid') ?? '';
  const mine = components.filter((c) => c.name === kindName && (textProperty(c, 'uid') ?? '') === uid);
  if (mine.length > MAX_INSTANCES) throw new CalendarItemError(`more than ${MAX_INSTANCES} components in the calendar item`);

  const instances = mine.map((c) => readInstance(c, kind));
  let master = instances.find((i) => i.recurrenceId === undefined);
  const masterless = master === undefined;
  const overrides = instances.filter((i) => i !== master && i.recurrenceId !== undefined);
  if (!master) {
    overrides.sort((a, b) => wallAsUtc(a.recurrenceId!.wall) - wallAsUtc(b.recurrenceId!.wall));
    master = overrides[0]!;
  }
  const timezones = calendar.name === 'vcalendar' ? timezonesOf(calendar) : new Map<string, ICAL.Timezone>();
  const plan: Plan = {
    master,
    overrides,
    rules: masterless ? [] : rulesOf(master.component, master.start),
    rdates: masterless || !master.start ? [] : datesOf(master.component, 'rdate'),
    exdates: masterless || !master.start ? [] : datesOf(master.component, 'exdate').map((d) => d.value),
    timezones,
    masterless,
  };

  const overrideMap = new Map<string, ICAL.Component>();
  if (!masterless && master.start) {
    // The keys do not depend on the viewer but for mixes of floating and zoned times: UTC stands in.
    const context = newContext(plan, 'UTC');
    for (const override of chosenOverrides(plan, context).values()) {
      overrideMap.set(originalKey(override.recurrenceId!, context), override.component);
    }
  }
  const item: CalendarItem = {
    kind,
    uid,
    calendar,
    master: master.component,
    masterless,
    overrides: overrideMap,
    fields: master.fields,
    timezones,
  };
  if (master.start) item.start = master.start;
  plans.set(item, plan);
  return item;
}

// -----------------------------------------------------------------------------------------
// Expanding

interface Context {
  plan: Plan;
  viewer: ZoneRef;
  viewerZone: string;
  /** The master's DTSTART zone (the viewer's for a floating or all-day master). */
  masterZone: ZoneRef;
  masterStart: DateValue;
  /** A time was read in the viewer's zone (floating, all-day, unknown TZID). */
  usedViewer: boolean;
  /** Exact durations (DTEND − DTSTART) by instance. */
  exact: Map<Instance, number>;
}

function zoneOf(value: DateValue, context: Context): ZoneRef {
  const zone = resolveZone(value.tzid, value.utc, context.plan.timezones, context.viewerZone);
  if (zone.kind === 'iana' && zone.viewer) context.usedViewer = true;
  return zone;
}

function instantOf(value: DateValue, context: Context): number {
  if (value.isDate) {
    context.usedViewer = true;
    return wallToInstant(value.wall, context.viewer);
  }
  return wallToInstant(value.wall, zoneOf(value, context));
}

function newContext(plan: Plan, viewerZone: string): Context {
  const viewer = viewerZoneRef(viewerZone);
  const masterStart = plan.master.start!;
  const context: Context = { plan, viewer, viewerZone, masterZone: viewer, masterStart, usedViewer: false, exact: new Map() };
  context.masterZone = masterStart.isDate ? viewer : zoneOf(masterStart, context);
  if (masterStart.isDate) context.usedViewer = true;
  return context;
}

function sameZone(a: DateValue, b: DateValue): boolean {
  return a.utc === b.utc && (a.utc || a.tzid === b.tzid);
}

/** A value's wall time in the master's DTSTART zone. */
function masterWall(value: DateValue, context: Context): WallTime {
  const master = context.masterStart;
  if (master.isDate || value.isDate || sameZone(value, master)) return value.wall;
  return wallInZone(wallToInstant(value.wall, zoneOf(value, context)), context.masterZone);
}

function keyOfWall(wall: WallTime, context: Context): string {
  const master = context.masterStart;
  if (master.isDate) return dateString(wall);
  return basicForm(wall) + (master.utc ? 'Z' : '');
}

/** The recurrence id of a value naming an original occurrence (RECURRENCE-ID, EXDATE); a DATE names a day of a timed master: `D` + the date. */
function originalKey(value: DateValue, context: Context): string {
  if (value.isDate && !context.masterStart.isDate) return 'D' + dateString(value.wall);
  return keyOfWall(masterWall(value, context), context);
}

/** Overrides by recurrence id; of two for the same occurrence, the one with the higher SEQUENCE (the later one on a tie). */
function chosenOverrides(plan: Plan, context: Context): Map<string, Instance> {
  const chosen = new Map<string, Instance>();
  for (const override of plan.overrides) {
    const key = originalKey(override.recurrenceId!, context);
    const previous = chosen.get(key);
    if (!previous || override.sequence >= previous.sequence) chosen.set(key, override);
  }
  return chosen;
}

/** DTEND − DTSTART of an instance, exactly (the same for all its occurrences, RFC 5545 §3.8.5.3). */
function exactDuration(instance: Instance, end: { kind: 'time'; value: DateValue }, context: Context): number {
  let ms = context.exact.get(instance);
  if (ms === undefined) {
    ms = Math.max(instantOf(end.value, context) - instantOf(instance.start!, context), 0);
    context.exact.set(instance, ms);
  }
  return ms;
}

interface Span {
  start: number;
  end: number;
  allDay: boolean;
  date?: string;
}

/** The span of an occurrence starting at `start`, ending as `endOf` says (its DTEND − DTSTART is measured on `endOf`'s own start). */
function spanOf(start: DateValue, endOf: Instance, context: Context, explicitEnd?: DateValue): Span {
  const end = endOf.end;
  if (start.isDate) {
    // A DATE is floating: whole days in the viewer's zone.
    let days = 1;
    if (explicitEnd) days = Math.max(daysBetween(start.wall, explicitEnd.wall), 1);
    else if (end.kind === 'time' && endOf.start) days = Math.max(daysBetween(endOf.start.wall, end.value.wall), 1);
    else if (end.kind === 'duration') days = Math.max(end.days + Math.ceil(end.seconds / 86400), 1);
    context.usedViewer = true;
    const first = wallToInstant(start.wall, context.viewer);
    return { start: first, end: wallToInstant(addDays(start.wall, days), context.viewer), allDay: true, date: dateString(start.wall) };
  }
  const zone = zoneOf(start, context);
  const first = wallToInstant(start.wall, zone);
  let last = first;
  if (explicitEnd) last = Math.max(instantOf(explicitEnd, context), first);
  else if (end.kind === 'time' && endOf.start) last = first + exactDuration(endOf, end, context);
  else if (end.kind === 'duration') {
    // Days are nominal (the same wall time days later), the rest exact.
    last = (end.days > 0 ? wallToInstant(addDays(start.wall, end.days), zone) : first) + end.seconds * 1000;
  }
  return { start: first, end: last, allDay: false };
}

function overlaps(span: Span, from: number, till: number): boolean {
  if (span.start >= till) return false;
  return span.end > from || (span.end === span.start && span.start >= from);
}

function alarmInstants(fields: ItemFields, span: Span, withAbsolute: boolean, context: Context): number[] {
  const result: number[] = [];
  for (const alarm of fields.alarms) {
    let at: number;
    if (alarm.trigger.kind === 'relative') {
      at = (alarm.trigger.related === 'end' ? span.end : span.start) + alarm.trigger.seconds * 1000;
    } else if (withAbsolute) at = instantOf(alarm.trigger.time, context);
    else continue;
    for (let i = 0; i <= alarm.repeat; i++) result.push(at + i * alarm.repeatIntervalSeconds * 1000);
  }
  return result.sort((a, b) => a - b);
}

function makeOccurrence(instance: Instance, span: Span, recurrenceId: string, fromOverride: boolean, withAbsolute: boolean, context: Context): Occurrence {
  const occurrence: Occurrence = {
    start: span.start,
    end: span.end,
    allDay: span.allDay,
    recurrenceId,
    fromOverride,
    alarms: alarmInstants(instance.fields, span, withAbsolute, context),
    fields: instance.fields,
    component: instance.component,
  };
  if (span.date !== undefined) occurrence.date = span.date;
  if (instance.due) {
    // A task's DUE moves with its occurrences; a task dated by DUE alone is due when it occurs.
    occurrence.due = instance.start === instance.due ? span.start : span.start + Math.max(instantOf(instance.due, context) - instantOf(instance.start!, context), 0);
  }
  return occurrence;
}

/** An upper bound of how long an occurrence of an instance lasts, to skip the ones that end before a range. */
function longestSpan(instance: Instance): number {
  const end = instance.end;
  // Two hours for a DST change inside the occurrence.
  const slack = 2 * HOUR;
  if (instance.start?.isDate) {
    if (end.kind === 'time') return Math.max(daysBetween(instance.start.wall, end.value.wall), 1) * DAY + slack;
    if (end.kind === 'duration') return (end.days + 1) * DAY + end.seconds * 1000 + slack;
    return DAY + slack;
  }
  // DTEND may be in another zone than DTSTART.
  if (end.kind === 'time' && instance.start) return Math.abs(wallAsUtc(end.value.wall) - wallAsUtc(instance.start.wall)) + 2 * OFFSET_MARGIN;
  if (end.kind === 'duration') return end.days * DAY + end.seconds * 1000 + slack;
  return 0;
}

/**
 * The rule as ical.js is to iterate it: UNTIL in the master's wall time (ical.js compares
 * it with the wall times it iterates), and the day of the month a monthly or yearly
 * rule takes from a DTSTART after the 28th written out, so that months and years without
 * that day are skipped (RFC 5545 §3.3.10: invalid dates are ignored) where ical.js would
 * roll February 29 over to March 1.
 */
function ruleForIteration(rule: ICAL.Recur, context: Context): ICAL.Recur {
  const master = context.masterStart;
  const parts = rule.parts;
  const impliedDay =
    (rule.freq === 'MONTHLY' || rule.freq === 'YEARLY') &&
    master.wall.day > 28 &&
    !parts.BYMONTHDAY && !parts.BYDAY && !parts.BYYEARDAY && !parts.BYWEEKNO;
  if (!rule.until && !impliedDay) return rule;
  const copy = rule.clone();
  if (impliedDay) {
    copy.parts.BYMONTHDAY = [master.wall.day];
    if (rule.freq === 'YEARLY' && !parts.BYMONTH) copy.parts.BYMONTH = [master.wall.month];
  }
  const until = rule.until;
  if (until) {
    const untilValue = timeToDateValue(until, undefined, 'UNTIL');
    let wall: WallTime;
    if (untilValue.isDate) wall = master.isDate ? untilValue.wall : { ...untilValue.wall, hour: 23, minute: 59, second: 59 };
    else if (untilValue.utc) wall = wallInZone(wallAsUtc(untilValue.wall), context.masterZone);
    else wall = untilValue.wall;
    copy.until = floatingTime(wall, master.isDate);
  }
  return copy;
}

const PERIOD_SECONDS: Readonly<Record<string, number>> = { SECONDLY: 1, MINUTELY: 60, HOURLY: 3600, DAILY: 86400, WEEKLY: 7 * 86400 };

/**
 * A later start to iterate a rule from, so that an old daily meeting is not iterated
 * from years ago: DTSTART moved on by whole periods (INTERVAL × the frequency's unit, in
 * wall time) to some period before `neededFrom`. The rule's candidates are DTSTART plus
 * whole periods and its BYxxx parts are absolute, so the occurrences after the later
 * start are those from DTSTART; not with COUNT, which counts from DTSTART. A monthly
 * start after the 28th (its day written out as BYMONTHDAY, see ruleForIteration) moves
 * to a day every month has. undefined when there is nothing to skip.
 */
function laterStart(rule: ICAL.Recur, start: DateValue, neededFrom: number): WallTime | undefined {
  if (rule.count) return undefined;
  const startMs = wallAsUtc(start.wall);
  if (!(neededFrom > startMs)) return undefined;
  const seconds = PERIOD_SECONDS[rule.freq];
  if (seconds !== undefined) {
    const period = seconds * 1000 * rule.interval;
    const periods = Math.floor((neededFrom - startMs) / period) - 1;
    return periods >= 1 ? utcWall(startMs + periods * period) : undefined;
  }
  const target = utcWall(neededFrom);
  if (rule.freq === 'MONTHLY') {
    const periods = Math.floor(((target.year - start.wall.year) * 12 + target.month - start.wall.month) / rule.interval) - 1;
    if (periods < 1) return undefined;
    const months = start.wall.month - 1 + periods * rule.interval;
    return { ...start.wall, year: start.wall.year + Math.floor(months / 12), month: (months % 12) + 1, day: start.wall.day > 28 ? 1 : start.wall.day };
  }
  if (rule.freq === 'YEARLY') {
    let periods = Math.floor((target.year - start.wall.year) / rule.interval) - 1;
    // A February 29 start moves to another leap year (ical.js starts a non-leap year's February 29 on March 1).
    if (start.wall.month === 2 && start.wall.day === 29) {
      while (periods >= 1 && !ICAL.Time.isLeapYear(start.wall.year + periods * rule.interval)) periods--;
    }
    if (periods < 1) return undefined;
    return { ...start.wall, year: start.wall.year + periods * rule.interval };
  }
  return undefined;
}

/**
 * The occurrences overlapping [fromMs, tillMs), sorted by start (then end), and whether
 * the expansion ran out of work. `viewerZone` (an IANA or CommuniGate name) is where
 * floating times and all-day dates are read. An undated item (a task without DTSTART and
 * DUE, an event without DTSTART) has none.
 */
export function expand(item: CalendarItem, fromMs: number, tillMs: number, viewerZone: string, options: { limit?: number } = {}): Expansion {
  const plan = plans.get(item);
  if (!plan) throw new CalendarItemError('not a calendar item from parseItem');
  try {
    return expandPlan(plan, fromMs, tillMs, viewerZone, options.limit);
  } catch (err) {
    if (err instanceof CalendarItemError) throw err;
    throw new CalendarItemError(err instanceof Error ? err.message : String(err));
  }
}

/** The occurrences overlapping [fromMs, tillMs), sorted by start (see expand). */
export function occurrences(item: CalendarItem, fromMs: number, tillMs: number, viewerZone: string, options: { limit?: number } = {}): Occurrence[] {
  return expand(item, fromMs, tillMs, viewerZone, options).occurrences;
}

function expandPlan(plan: Plan, fromMs: number, tillMs: number, viewerZone: string, limit: number | undefined): Expansion & { context?: Context } {
  const found: Occurrence[] = [];
  if (!(tillMs > fromMs) || !plan.master.start) return { occurrences: found, truncated: false };
  const context = newContext(plan, viewerZone);
  const result = (truncated: boolean): Expansion & { context: Context } => {
    found.sort((a, b) => a.start - b.start || a.end - b.end || (a.recurrenceId < b.recurrenceId ? -1 : 1));
    return { occurrences: limit !== undefined && limit >= 0 ? found.slice(0, limit) : found, truncated, context };
  };

  if (plan.masterless) {
    for (const instance of plan.overrides) {
      if (instance.cancelled) continue;
      const rid = instance.recurrenceId!;
      const start = instance.start ?? rid;
      const span = spanOf(start, instance, context);
      const key = rid.isDate ? dateString(rid.wall) : basicForm(rid.wall) + (rid.utc ? 'Z' : '');
      if (overlaps(span, fromMs, tillMs)) found.push(makeOccurrence(instance, span, key, true, true, context));
    }
    return result(false);
  }

  const master = plan.master;
  const masterStart = context.masterStart;
  const overrides = chosenOverrides(plan, context);
  const excluded = new Set(plan.exdates.map((d) => originalKey(d, context)));
  const seen = new Set<string>();
  const longest = longestSpan(master);
  const masterKey = keyOfWall(masterStart.wall, context);

  // The iteration goes up to the range's end, or to the latest overridden occurrence
  // (a moved occurrence shows where it went, but only if its original is one).
  let stopWall = tillMs + OFFSET_MARGIN;
  for (const override of overrides.values()) {
    stopWall = Math.max(stopWall, wallAsUtc(masterWall(override.recurrenceId!, context)) + DAY);
  }

  const consider = (wall: WallTime, period?: RecurrenceDate): void => {
    const key = keyOfWall(wall, context);
    if (seen.has(key)) return;
    seen.add(key);
    if (excluded.has(key) || (!masterStart.isDate && excluded.has('D' + dateString(wall)))) return;
    const override = overrides.get(key) ?? (masterStart.isDate ? undefined : overrides.get('D' + dateString(wall)));
    if (override) {
      if (override.cancelled) return;
      const span = spanOf(override.start ?? { ...masterStart, wall }, override.end.kind === 'none' ? master : override, context);
      if (overlaps(span, fromMs, tillMs)) found.push(makeOccurrence(override, span, key, true, true, context));
      return;
    }
    const local = wallAsUtc(wall);
    if (!period && (local + OFFSET_MARGIN + longest <= fromMs || local - OFFSET_MARGIN >= tillMs)) return;
    const start: DateValue = { ...masterStart, wall };
    let span: Span;
    if (period?.end) span = spanOf(start, master, context, period.end);
    else if (period?.duration) span = spanOf(start, { ...master, end: { kind: 'duration', ...period.duration } }, context);
    else span = spanOf(start, master, context);
    if (overlaps(span, fromMs, tillMs)) found.push(makeOccurrence(master, span, key, false, key === masterKey, context));
  };

  // DTSTART is the first occurrence (as ical.js's RecurExpansion has it), then RDATEs.
  consider(masterStart.wall);
  for (const rdate of plan.rdates) {
    let wall: WallTime;
    if (masterStart.isDate) wall = rdate.value.wall;
    else if (rdate.value.isDate) wall = { ...rdate.value.wall, hour: masterStart.wall.hour, minute: masterStart.wall.minute, second: masterStart.wall.second };
    else wall = masterWall(rdate.value, context);
    const isPeriod = rdate.end !== undefined || rdate.duration !== undefined;
    consider(masterStart.isDate ? { ...wall, hour: 0, minute: 0, second: 0 } : wall, isPeriod ? rdate : undefined);
  }

  // Occurrences before this (in the master's wall time) are of no interest: before the
  // range, and before every overridden one.
  let neededFrom = fromMs - OFFSET_MARGIN - longest;
  for (const override of overrides.values()) {
    neededFrom = Math.min(neededFrom, wallAsUtc(masterWall(override.recurrenceId!, context)) - DAY);
  }

  let truncated = false;
  let steps = 0;
  candidateChecks = 0;
  for (const rule of plan.rules) {
    try {
      const later = laterStart(rule, masterStart, neededFrom);
      const dtstart = floatingTime(later ?? masterStart.wall, masterStart.isDate);
      const iterator = new BoundedRecurIterator({ rule: ruleForIteration(rule, context), dtstart });
      for (;;) {
        const next = iterator.next();
        if (!next) break;
        if (++steps > MAX_RULE_STEPS) {
          truncated = true;
          break;
        }
        const wall = wallOf(next, masterStart.isDate);
        // Years past 9999 are past every range (and past what a date can say).
        if (wall.year > 9999 || wallAsUtc(wall) > stopWall) break;
        // ical.js gives its start as the first occurrence unchecked: a later start may not be one (and is before the range).
        if (later && wallAsUtc(wall) <= wallAsUtc(later)) continue;
        consider(wall);
      }
    } catch {
      // A runaway rule (RunawayRuleError), or one ical.js gives up on: what was found stands.
      truncated = true;
    }
    if (truncated) break;
  }

  if (truncated) {
    // The originals of overrides not reached could not be checked: they are shown.
    for (const [key, override] of overrides) {
      if (seen.has(key) || key.startsWith('D') || override.cancelled || excluded.has(key)) continue;
      const span = spanOf(override.start ?? override.recurrenceId!, override.end.kind === 'none' ? master : override, context);
      if (overlaps(span, fromMs, tillMs)) found.push(makeOccurrence(override, span, key, true, true, context));
    }
  }
  return result(truncated);
}

// -----------------------------------------------------------------------------------------
// Alarms and spans

/** Ranges to expand, overlapping ones merged; many become one (each expansion costs its rule's iteration). */
function mergedWindows(windows: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...windows].sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [from, till] of sorted) {
    const last = merged[merged.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], till);
    else merged.push([from, till]);
  }
  if (merged.length > 16) return [[merged[0]![0], Math.max(...merged.map((w) => w[1]))]];
  return merged;
}

/**
 * The alarms in [fromMs, tillMs) with their occurrences (findEvents byAlarm), sorted by
 * alarm instant: one entry per alarm instant. A relative alarm rings for every
 * occurrence; an absolute one for the occurrence of the component it belongs to (the
 * master's: the first, DTSTART occurrence).
 */
export function alarmsBetween(item: CalendarItem, fromMs: number, tillMs: number, viewerZone: string): AlarmHit[] {
  const plan = plans.get(item);
  if (!plan) throw new CalendarItemError('not a calendar item from parseItem');
  if (!(tillMs > fromMs) || !plan.master.start) return [];
  try {
    const instances = plan.masterless ? plan.overrides : [plan.master, ...plan.overrides];
    // An alarm is at start + shift: the occurrences wanted start in [from − most, till − least).
    let least = 0;
    let most = 0;
    const windows: Array<[number, number]> = [];
    const context = newContext(plan, viewerZone);
    for (const instance of instances) {
      const length = longestSpan(instance);
      for (const alarm of instance.fields.alarms) {
        if (alarm.trigger.kind === 'absolute') {
          const at = instantOf(alarm.trigger.time, context);
          if (at + alarm.repeat * alarm.repeatIntervalSeconds * 1000 >= fromMs && at < tillMs) {
            const start = instance.start ?? instance.recurrenceId;
            if (start) {
              const s = instantOf(start, context);
              windows.push([s - DAY, s + DAY]);
            }
          }
          continue;
        }
        const base = alarm.trigger.seconds * 1000;
        const repeats = alarm.repeat * alarm.repeatIntervalSeconds * 1000;
        least = Math.min(least, base);
        most = Math.max(most, base + repeats + (alarm.trigger.related === 'end' ? length : 0));
      }
    }
    const hasRelative = instances.some((i) => i.fields.alarms.some((a) => a.trigger.kind === 'relative'));
    if (hasRelative) windows.push([fromMs - most, tillMs - least + 1]);

    const hits = new Map<string, AlarmHit>();
    for (const [from, till] of mergedWindows(windows)) {
      for (const occurrence of expandPlan(plan, from, till, viewerZone, undefined).occurrences) {
        for (const alarm of occurrence.alarms) {
          if (alarm >= fromMs && alarm < tillMs) hits.set(`${occurrence.recurrenceId} ${alarm}`, { alarm, occurrence });
        }
      }
    }
    return [...hits.values()].sort((a, b) => a.alarm - b.alarm || a.occurrence.start - b.occurrence.start);
  } catch (err) {
    if (err instanceof CalendarItemError) throw err;
    throw new CalendarItemError(err instanceof Error ? err.message : String(err));
  }
}

export interface ItemSpan {
  firstStart: number;
  /** null: the item never ends (an unbounded rule, or one too long to expand). */
  lastEnd: number | null;
  /** Bounds of its alarm instants (for findEvents byAlarm), when it has alarms; `last` null when unbounded. */
  alarms?: { first: number; last: number | null };
}

/**
 * The earliest start and the latest end over all occurrences, in ms, for a store index
 * that finds the items that may have occurrences in a range without parsing them; null
 * for an undated item (no occurrences). The start is a lower bound (DTSTART, RDATEs and
 * overrides, before exclusions). An item with a floating time, an all-day date or a
 * TZID read in the viewer's zone is computed in `viewerZoneForFloating` (UTC by default)
 * and widened by 14 hours on each side — with UTC, that covers every viewer zone
 * (UTC−12 to UTC+14).
 */
export function itemSpan(item: CalendarItem, viewerZoneForFloating = 'UTC'): ItemSpan | null {
  const plan = plans.get(item);
  if (!plan) throw new CalendarItemError('not a calendar item from parseItem');
  if (!plan.master.start) return null;
  try {
    const context = newContext(plan, viewerZoneForFloating);
    let firstStart = Infinity;
    const starts: DateValue[] = [];
    if (!plan.masterless) starts.push(plan.master.start, ...plan.rdates.map((d) => d.value));
    for (const override of plan.overrides) {
      const start = override.start ?? override.recurrenceId;
      if (start) starts.push(start);
    }
    for (const start of starts) firstStart = Math.min(firstStart, instantOf(start, context));

    let lastEnd: number | null = null;
    const unbounded = plan.rules.some((rule) => !rule.isFinite());
    let widen = context.usedViewer;
    if (!unbounded) {
      const expansion = expandPlan(plan, EARLIEST_MS, LATEST_MS, viewerZoneForFloating, undefined);
      if (!expansion.truncated) {
        lastEnd = firstStart;
        for (const occurrence of expansion.occurrences) {
          lastEnd = Math.max(lastEnd, occurrence.end);
          firstStart = Math.min(firstStart, occurrence.start);
        }
      }
      if (expansion.context?.usedViewer) widen = true;
    }
    // Clients show the end of a floating or all-day item in their own zone.
    if (widen) {
      firstStart -= FLOATING_SPAN_MARGIN;
      if (lastEnd !== null) lastEnd += FLOATING_SPAN_MARGIN;
    }
    const span: ItemSpan = { firstStart, lastEnd };

    // A relative alarm is within its offset (and repetitions) of an occurrence's start or
    // end, both inside [firstStart, lastEnd]; an absolute one is where it says.
    let first = Infinity;
    let last: number | null = -Infinity;
    for (const instance of [plan.master, ...plan.overrides]) {
      for (const alarm of instance.fields.alarms) {
        const repeats = alarm.repeat * alarm.repeatIntervalSeconds * 1000;
        if (alarm.trigger.kind === 'absolute') {
          const at = instantOf(alarm.trigger.time, context);
          first = Math.min(first, at - (widen ? FLOATING_SPAN_MARGIN : 0));
          if (last !== null) last = Math.max(last, at + repeats + (widen ? FLOATING_SPAN_MARGIN : 0));
        } else {
          const offset = alarm.trigger.seconds * 1000;
          first = Math.min(first, firstStart + offset);
          last = lastEnd === null || last === null ? null : Math.max(last, lastEnd + offset + repeats);
        }
      }
    }
    if (first !== Infinity) span.alarms = { first, last };
    return span;
  } catch (err) {
    if (err instanceof CalendarItemError) throw err;
    throw new CalendarItemError(err instanceof Error ? err.message : String(err));
  }
}
