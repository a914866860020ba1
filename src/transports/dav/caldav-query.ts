/**
 * calendar-query filters (RFC 4791 9.7): nested comp-filters (is-not-defined, time-range),
 * prop-filters (is-not-defined, time-range on a date value, text-match, param-filter) and
 * text-match with the collations i;ascii-casemap (the default), i;unicode-casemap and i;octet,
 * negate-condition. A time-range on a VEVENT or VTODO, and on a VALARM inside one, is not
 * decided here: the provider asks the calendar index for the items in range (recurrences
 * expanded) and hands the answer in as the set of message UIDs of each such filter.
 */
import type ICAL from 'ical.js';
import { textMatches, type TextMatch } from './carddav-query.js';
import { clark, type DavElement } from './xml.js';

export const CALDAV_NS = 'urn:ietf:params:xml:ns:caldav';
const CAL = (local: string): string => clark(CALDAV_NS, local);

/** A malformed or unsupported calendar-query: its status and precondition (Clark). */
export class CalendarQueryError extends Error {
  constructor(
    message: string,
    readonly condition: string,
    readonly status = 403,
  ) {
    super(message);
  }
}

/** Instants in ms; an open side is ±Infinity. */
export interface TimeRange {
  start: number;
  end: number;
}

export interface CalendarParamFilter {
  name: string;
  isNotDefined: boolean;
  textMatch?: TextMatch;
}

export interface CalendarPropFilter {
  name: string;
  isNotDefined: boolean;
  timeRange?: TimeRange;
  textMatch?: TextMatch;
  paramFilters: CalendarParamFilter[];
}

export interface CompFilter {
  /** Upper case (VCALENDAR, VEVENT, VTODO, VALARM…). */
  name: string;
  isNotDefined: boolean;
  timeRange?: TimeRange;
  propFilters: CalendarPropFilter[];
  compFilters: CompFilter[];
}

/** A UTC date-time as RFC 4791 9.9 writes a time-range bound (`20060104T000000Z`). */
export function parseUtcDateTime(text: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text.trim());
  if (!m) throw new CalendarQueryError(`"${text.slice(0, 40)}" is not a UTC date-time`, CAL('valid-filter'));
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const at = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(at);
  if (month < 1 || month > 12 || back.getUTCDate() !== day || hour > 23 || minute > 59 || second > 60) {
    throw new CalendarQueryError(`"${text.slice(0, 40)}" is not a date-time`, CAL('valid-filter'));
  }
  return at;
}

/** A time-range element: at least one bound, start before end. */
export function parseTimeRange(element: DavElement): TimeRange {
  const { start, end } = element.element.attrs;
  if (start === undefined && end === undefined) throw new CalendarQueryError('a time-range needs start or end', CAL('valid-filter'));
  const range = { start: start === undefined ? -Infinity : parseUtcDateTime(start), end: end === undefined ? Infinity : parseUtcDateTime(end) };
  if (range.start >= range.end) throw new CalendarQueryError('a time-range ends after it starts', CAL('valid-filter'));
  return range;
}

function parseTextMatch(element: DavElement): TextMatch {
  const collation = element.element.attrs.collation ?? 'i;ascii-casemap';
  if (collation !== 'i;unicode-casemap' && collation !== 'i;ascii-casemap' && collation !== 'i;octet') {
    throw new CalendarQueryError(`unsupported collation ${collation}`, CAL('supported-collation'));
  }
  const negate = (element.element.attrs['negate-condition'] ?? 'no') === 'yes';
  // RFC 4791 text-match is a substring match.
  return { text: element.element.text(), collation, matchType: 'contains', negate };
}

function nameOf(element: DavElement): string {
  const name = (element.element.attrs.name ?? '').trim().toUpperCase();
  if (name === '') throw new CalendarQueryError(`a ${element.local} needs a name`, CAL('valid-filter'), 400);
  return name;
}

function parsePropFilter(element: DavElement): CalendarPropFilter {
  const filter: CalendarPropFilter = { name: nameOf(element), isNotDefined: false, paramFilters: [] };
  for (const c of element.children) {
    if (c.name === CAL('is-not-defined')) filter.isNotDefined = true;
    else if (c.name === CAL('time-range')) filter.timeRange = parseTimeRange(c);
    else if (c.name === CAL('text-match')) filter.textMatch = parseTextMatch(c);
    else if (c.name === CAL('param-filter')) {
      const param: CalendarParamFilter = { name: nameOf(c), isNotDefined: false };
      for (const p of c.children) {
        if (p.name === CAL('is-not-defined')) param.isNotDefined = true;
        else if (p.name === CAL('text-match')) param.textMatch = parseTextMatch(p);
        else throw new CalendarQueryError(`unsupported filter element ${p.local}`, CAL('supported-filter'));
      }
      filter.paramFilters.push(param);
    } else throw new CalendarQueryError(`unsupported filter element ${c.local}`, CAL('supported-filter'));
  }
  return filter;
}

function parseCompFilter(element: DavElement): CompFilter {
  const filter: CompFilter = { name: nameOf(element), isNotDefined: false, propFilters: [], compFilters: [] };
  for (const c of element.children) {
    if (c.name === CAL('is-not-defined')) filter.isNotDefined = true;
    else if (c.name === CAL('time-range')) filter.timeRange = parseTimeRange(c);
    else if (c.name === CAL('prop-filter')) filter.propFilters.push(parsePropFilter(c));
    else if (c.name === CAL('comp-filter')) filter.compFilters.push(parseCompFilter(c));
    else throw new CalendarQueryError(`unsupported filter element ${c.local}`, CAL('supported-filter'));
  }
  return filter;
}

/** The filter of a calendar-query body: one comp-filter on VCALENDAR (RFC 4791 9.7). */
export function parseCalendarFilter(body: DavElement): CompFilter {
  const filter = body.children.find((c) => c.name === CAL('filter'));
  if (!filter) throw new CalendarQueryError('a calendar-query needs a filter', CAL('valid-filter'), 400);
  const top = filter.children.filter((c) => c.name === CAL('comp-filter'));
  if (top.length !== 1 || filter.children.length !== 1) throw new CalendarQueryError('the filter holds one comp-filter', CAL('valid-filter'));
  const root = parseCompFilter(top[0]!);
  if (root.name !== 'VCALENDAR') throw new CalendarQueryError('the filter applies to VCALENDAR', CAL('valid-filter'));
  if (root.timeRange) throw new CalendarQueryError('a time-range applies to a component inside VCALENDAR', CAL('valid-filter'));
  return root;
}

/** A time-range the index answers: on an item (VEVENT/VTODO) or on its alarms. */
export interface IndexedRange {
  filter: CompFilter;
  kind: 'event' | 'todo';
  range: TimeRange;
  byAlarm: boolean;
}

/** The filter's time-ranges the provider answers through the index; any other time-range on a component is refused. */
export function indexedRanges(root: CompFilter): IndexedRange[] {
  const found: IndexedRange[] = [];
  for (const item of root.compFilters) {
    const kind = item.name === 'VEVENT' ? 'event' : item.name === 'VTODO' ? 'todo' : undefined;
    if (item.timeRange) {
      if (!kind) throw new CalendarQueryError(`a time-range on ${item.name} is not supported`, clark(CALDAV_NS, 'supported-filter'));
      found.push({ filter: item, kind, range: item.timeRange, byAlarm: false });
    }
    for (const inner of item.compFilters) {
      if (!inner.timeRange) continue;
      if (!kind || inner.name !== 'VALARM') throw new CalendarQueryError(`a time-range on ${inner.name} is not supported`, clark(CALDAV_NS, 'supported-filter'));
      found.push({ filter: inner, kind, range: inner.timeRange, byAlarm: true });
    }
    if (item.compFilters.some((c) => c.compFilters.some((d) => d.timeRange))) throw new CalendarQueryError('a time-range nested that deep is not supported', clark(CALDAV_NS, 'supported-filter'));
  }
  return found;
}

/** A property's value as text-match compares it (several values joined by commas). */
function propertyText(property: ICAL.Property): string {
  return property
    .getValues()
    .map((v: unknown) => (typeof v === 'string' ? v : String(v)))
    .join(',');
}

function propertyInstant(property: ICAL.Property): number | undefined {
  const value: unknown = property.getFirstValue();
  if (value && typeof value === 'object' && 'toJSDate' in value && typeof (value as ICAL.Time).toJSDate === 'function') {
    return (value as ICAL.Time).toJSDate().getTime();
  }
  return undefined;
}

function propertyMatches(property: ICAL.Property, filter: CalendarPropFilter): boolean {
  if (filter.timeRange) {
    const at = propertyInstant(property);
    if (at === undefined || at < filter.timeRange.start || at >= filter.timeRange.end) return false;
  }
  if (filter.textMatch && !textMatches(propertyText(property), filter.textMatch)) return false;
  for (const p of filter.paramFilters) {
    const value: unknown = property.getParameter(p.name.toLowerCase());
    const values = value === undefined || value === null ? undefined : Array.isArray(value) ? value.map(String) : [String(value)];
    if (p.isNotDefined) {
      if (values !== undefined) return false;
    } else if (values === undefined || (p.textMatch && !values.some((v) => textMatches(v, p.textMatch!)))) return false;
  }
  return true;
}

/**
 * Whether `component` passes `filter` (its name already matched): every prop-filter and
 * comp-filter inside; a time-range by `inRange` (the index's answer for that filter).
 */
function componentMatches(component: ICAL.Component, filter: CompFilter, inRange: (filter: CompFilter) => boolean): boolean {
  if (filter.timeRange && !inRange(filter)) return false;
  for (const pf of filter.propFilters) {
    const properties = component.getAllProperties(pf.name.toLowerCase());
    if (pf.isNotDefined ? properties.length > 0 : !properties.some((p) => propertyMatches(p, pf))) return false;
  }
  for (const cf of filter.compFilters) {
    const subs = component.getAllSubcomponents(cf.name.toLowerCase());
    if (cf.isNotDefined) {
      if (subs.length > 0) return false;
    } else if (cf.timeRange && cf.name === 'VALARM') {
      // The alarms in range were found through the index; other tests still apply to some VALARM.
      const { timeRange: _decided, ...rest } = cf;
      if (!inRange(cf) || !subs.some((s) => componentMatches(s, rest, inRange))) return false;
    } else if (!subs.some((s) => componentMatches(s, cf, inRange))) return false;
  }
  return true;
}

/** Whether an item's VCALENDAR passes the query's filter. */
export function calendarMatches(calendar: ICAL.Component, root: CompFilter, inRange: (filter: CompFilter) => boolean): boolean {
  if (root.isNotDefined) return false;
  return componentMatches(calendar, root, inRange);
}

/**
 * RFC 4791 9.9 for a VTODO with neither DTSTART nor DUE (the index gives it no span): by its
 * COMPLETED and CREATED times, and in every range when it has neither.
 */
export function undatedTaskInRange(task: ICAL.Component, range: TimeRange): boolean {
  const instant = (name: string): number | undefined => {
    const property = task.getFirstProperty(name);
    return property ? propertyInstant(property) : undefined;
  };
  const completed = instant('completed');
  const created = instant('created');
  if (completed !== undefined && created !== undefined) {
    return (range.start <= created || range.start <= completed) && (range.end >= created || range.end >= completed);
  }
  if (completed !== undefined) return range.start <= completed && range.end >= completed;
  if (created !== undefined) return range.end > created;
  return true;
}
