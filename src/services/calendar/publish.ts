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

function items(calendar: ICAL.Component): ICAL.Component[] {
  return ITEM_COMPONENTS.flatMap((name) => calendar.getAllSubcomponents(name));
}

/** The item's UID, set on every component that lacks one (a new one when none has it); one UID per item. */
export function ensureUid(calendar: ICAL.Component): string {
  const components = items(calendar);
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
      target.addSubcomponent(new ICAL.Component(zone.toJSON()));
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
  const incomingItems = items(incoming);
  const hasMaster = incomingItems.some((c) => recurrenceKey(c) === undefined);
  if (hasMaster) {
    if (!copyExceptions) return incoming;
    const redefined = new Set(incomingItems.map(recurrenceKey).filter((k): k is string => k !== undefined));
    for (const c of items(stored)) {
      const key = recurrenceKey(c);
      if (key !== undefined && !redefined.has(key)) incoming.addSubcomponent(new ICAL.Component(c.toJSON()));
    }
    addMissingZones(incoming, stored);
    return incoming;
  }
  const replaced = new Set(incomingItems.map(recurrenceKey));
  for (const c of items(stored)) if (replaced.has(recurrenceKey(c))) stored.removeSubcomponent(c);
  for (const c of incomingItems) stored.addSubcomponent(new ICAL.Component(c.toJSON()));
  addMissingZones(stored, incoming);
  return stored;
}

/** Two addresses (mailto: or not) naming the same mailbox. */
export function sameAddress(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b) return false;
  const bare = (s: string): string => s.replace(/^mailto:/i, '').trim().toLowerCase();
  return bare(a) === bare(b);
}
