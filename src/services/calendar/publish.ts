/**
 * What calendarPublish does to the iCalendar object before it is stored: one UID for the
 * item (made when missing), and the merge with the stored item of that UID — an overriding
 * instance goes into it, a new master keeps its overriding instances (copyExceptions).
 */
import { randomUUID } from 'node:crypto';
import ICAL from 'ical.js';
import { ServiceError } from '../errors.js';

const ITEM_COMPONENTS = ['vevent', 'vtodo'];

/** A VCALENDAR component of a text (a bare VEVENT/VTODO is wrapped); ServiceError when malformed. */
export function parseCalendar(text: string): ICAL.Component {
  let component: ICAL.Component;
  try {
    component = new ICAL.Component(ICAL.parse(text) as unknown[]);
  } catch (err) {
    throw new ServiceError(`invalid iCalendar data: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (component.name === 'vcalendar') return component;
  if (!ITEM_COMPONENTS.includes(component.name)) throw new ServiceError(`invalid iCalendar data: a ${component.name.toUpperCase()} is not a calendar item`);
  const calendar = new ICAL.Component('vcalendar');
  calendar.addPropertyWithValue('version', '2.0');
  calendar.addPropertyWithValue('prodid', '-//ximssd//calendar//EN');
  calendar.addSubcomponent(component);
  return calendar;
}

/**
 * A deep copy: ical.js's toJSON returns its own arrays, so a component made from it would
 * change the original (a cached item, say) when changed.
 */
export function copyComponent(component: ICAL.Component): ICAL.Component {
  return new ICAL.Component(structuredClone(component.toJSON()) as unknown[]);
}

/** The VEVENT and VTODO components of a VCALENDAR. */
export function calendarItems(calendar: ICAL.Component): ICAL.Component[] {
  return ITEM_COMPONENTS.flatMap((name) => calendar.getAllSubcomponents(name));
}

/** The item's UID, set on every component that lacks one (a new one when none has it); one UID per item. */
export function ensureUid(calendar: ICAL.Component): string {
  const components = calendarItems(calendar);
  if (components.length === 0) throw new ServiceError('invalid iCalendar data: no VEVENT or VTODO');
  const uids = new Set(components.map((c) => c.getFirstPropertyValue('uid')).filter((v): v is string => typeof v === 'string' && v !== ''));
  if (uids.size > 1) throw new ServiceError('invalid iCalendar data: an item has one UID (several given)');
  const uid = uids.values().next().value ?? `${randomUUID()}`;
  for (const c of components) if (!c.getFirstPropertyValue('uid')) c.updatePropertyWithValue('uid', uid);
  return uid;
}

function recurrenceKey(component: ICAL.Component): string | undefined {
  const value = component.getFirstPropertyValue('recurrence-id');
  return value === null || value === undefined ? undefined : String(value);
}

function addMissingZones(target: ICAL.Component, source: ICAL.Component): void {
  const have = new Set(target.getAllSubcomponents('vtimezone').map((z) => String(z.getFirstPropertyValue('tzid'))));
  for (const zone of source.getAllSubcomponents('vtimezone')) {
    const tzid = String(zone.getFirstPropertyValue('tzid'));
    if (!have.has(tzid)) {
      target.addSubcomponent(copyComponent(zone));
      have.add(tzid);
    }
  }
}

/**
 * The object to store when `incoming` is published over `stored` (same UID): an incoming item
 * with only overriding instances updates the stored one; one with a master replaces it, taking
 * the stored overriding instances it does not redefine when `copyExceptions`.
 */
export function mergeInto(stored: ICAL.Component, incoming: ICAL.Component, copyExceptions: boolean): ICAL.Component {
  const incomingItems = calendarItems(incoming);
  const hasMaster = incomingItems.some((c) => recurrenceKey(c) === undefined);
  if (hasMaster) {
    if (!copyExceptions) return incoming;
    const redefined = new Set(incomingItems.map(recurrenceKey).filter((k): k is string => k !== undefined));
    for (const c of calendarItems(stored)) {
      const key = recurrenceKey(c);
      if (key !== undefined && !redefined.has(key)) incoming.addSubcomponent(copyComponent(c));
    }
    addMissingZones(incoming, stored);
    return incoming;
  }
  const replaced = new Set(incomingItems.map(recurrenceKey));
  for (const c of calendarItems(stored)) if (replaced.has(recurrenceKey(c))) stored.removeSubcomponent(c);
  for (const c of incomingItems) stored.addSubcomponent(copyComponent(c));
  addMissingZones(stored, incoming);
  return stored;
}

/** Two addresses (mailto: or not) naming the same mailbox. */
export function sameAddress(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b) return false;
  const bare = (s: string): string => s.replace(/^mailto:/i, '').trim().toLowerCase();
  return bare(a) === bare(b);
}

/** A recurrence id as the listing writes it (`20060518T100000`, `…Z`, `20060518`) of a RECURRENCE-ID value. */
function basicForm(value: unknown): string {
  return String(value).replace(/[-:]/g, '');
}

const RECURRENCE_ID = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/;

/**
 * Takes one occurrence out of an item: its overriding instance goes, and a recurring master
 * gets an EXDATE in its DTSTART's zone. False when the item has neither.
 */
export function excludeOccurrence(calendar: ICAL.Component, recurrenceId: string): boolean {
  const m = RECURRENCE_ID.exec(recurrenceId.trim());
  if (!m) throw new ServiceError(`invalid recurrenceId: ${JSON.stringify(recurrenceId.slice(0, 40))}`);
  let changed = false;
  for (const c of calendarItems(calendar)) {
    const key = recurrenceKey(c);
    if (key !== undefined && basicForm(key) === recurrenceId.trim()) {
      calendar.removeSubcomponent(c);
      changed = true;
    }
  }
  const master = calendarItems(calendar).find((c) => recurrenceKey(c) === undefined);
  if (master && (master.hasProperty('rrule') || master.hasProperty('rdate'))) {
    const start = master.getFirstProperty('dtstart');
    const isDate = m[4] === undefined;
    const fields = { year: +m[1]!, month: +m[2]!, day: +m[3]!, hour: +(m[4] ?? 0), minute: +(m[5] ?? 0), second: +(m[6] ?? 0), isDate };
    const time = m[7] ? ICAL.Time.fromData(fields, ICAL.Timezone.utcTimezone) : ICAL.Time.fromData(fields);
    const exdate = new ICAL.Property('exdate', master);
    exdate.setValue(time);
    const tzid = start?.getParameter('tzid');
    if (!m[7] && !isDate && typeof tzid === 'string') exdate.setParameter('tzid', tzid);
    master.addProperty(exdate);
    changed = true;
  }
  return changed;
}

/** One item of an imported file: its position (from 1), UID and iCalendar text. */
export interface ImportedItem {
  index: number;
  uid: string;
  text: string;
}

/** The TZIDs a component's properties name. */
function tzidsOf(component: ICAL.Component, into: Set<string>): void {
  for (const p of component.getAllProperties()) {
    const tzid = p.getParameter('tzid');
    if (typeof tzid === 'string') into.add(tzid);
  }
  for (const c of component.getAllSubcomponents()) tzidsOf(c, into);
}

/**
 * The items of an .ics text (one or several VCALENDARs): components grouped by UID (a master
 * with its overriding instances; one without a UID is an item of its own, given one), each a
 * VCALENDAR of its own with the VTIMEZONEs it names. ServiceError when the text is not
 * iCalendar, has no item or more than `maxItems`.
 */
export function splitImport(text: string, maxItems: number): ImportedItem[] {
  let parsed: unknown;
  try {
    parsed = ICAL.parse(text);
  } catch (err) {
    throw new ServiceError(`invalid iCalendar data: ${err instanceof Error ? err.message : String(err)} (nothing was imported)`);
  }
  const roots = (Array.isArray(parsed) && Array.isArray(parsed[0]) ? parsed : [parsed]) as unknown[][];
  const zones = new Map<string, ICAL.Component>();
  const groups = new Map<string, ICAL.Component[]>();
  let prodid: string | undefined;
  for (const json of roots) {
    const root = new ICAL.Component(json);
    const components = root.name === 'vcalendar' ? root.getAllSubcomponents() : [root];
    prodid ??= root.name === 'vcalendar' ? String(root.getFirstPropertyValue('prodid') ?? '') || undefined : undefined;
    for (const c of components) {
      if (c.name === 'vtimezone') {
        const tzid = c.getFirstPropertyValue('tzid');
        if (typeof tzid === 'string' && !zones.has(tzid)) zones.set(tzid, c);
        continue;
      }
      if (!ITEM_COMPONENTS.includes(c.name)) continue;
      let uid = c.getFirstPropertyValue('uid');
      if (typeof uid !== 'string' || uid === '') {
        uid = randomUUID();
        c.updatePropertyWithValue('uid', uid);
      }
      const group = groups.get(uid) ?? [];
      group.push(c);
      groups.set(uid, group);
      if (groups.size > maxItems) throw new ServiceError(`too many calendar items to import (at most ${maxItems})`);
    }
  }
  if (groups.size === 0) throw new ServiceError('invalid iCalendar data: the file has no VEVENT or VTODO (nothing was imported)');
  const result: ImportedItem[] = [];
  for (const [uid, components] of groups) {
    const calendar = new ICAL.Component('vcalendar');
    calendar.addPropertyWithValue('version', '2.0');
    calendar.addPropertyWithValue('prodid', prodid ?? '-//ximssd//calendar//EN');
    const used = new Set<string>();
    for (const c of components) tzidsOf(c, used);
    for (const tzid of used) {
      const zone = zones.get(tzid);
      if (zone) calendar.addSubcomponent(copyComponent(zone));
    }
    for (const c of components) calendar.addSubcomponent(copyComponent(c));
    result.push({ index: result.length + 1, uid, text: calendar.toString() });
  }
  return result;
}

/** The UID (and the RECURRENCE-ID, in the listing's form) of the first item of an iCalendar text. */
export function itemIdentity(text: string): { uid: string; recurrenceId?: string } {
  const calendar = parseCalendar(text);
  const first = calendarItems(calendar)[0];
  const uid = first?.getFirstPropertyValue('uid');
  if (!first || typeof uid !== 'string' || uid === '') throw new ServiceError('invalid iCalendar data: the item has no UID');
  const key = recurrenceKey(first);
  return key === undefined ? { uid } : { uid, recurrenceId: basicForm(key) };
}
