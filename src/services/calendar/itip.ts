/**
 * iTIP (RFC 5546) over iMIP (RFC 6047): the scheduling messages a calendar sends — REQUEST to a
 * meeting's attendees when its organizer publishes it, CANCEL to those removed or when it is
 * cancelled, REPLY to the organizer when an attendee accepts or declines — as mail with a
 * text/calendar part (`method=` matching the object's METHOD), for the outbound queue to deliver
 * to local and remote recipients alike.
 */
import ICAL from 'ical.js';
import { formatAddress, newMessageId, unstructuredField } from '../mime/compose.js';
import { rfcDateInZone } from '../mime/dates.js';
import { calendarItems, copyComponent, sameAddress } from './publish.js';

export type ItipMethod = 'REQUEST' | 'CANCEL' | 'REPLY';

/** The address of a CAL-ADDRESS value (`mailto:` removed); undefined for another kind of URI. */
export function calAddress(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^mailto:(.+)$/i.exec(value.trim());
  const address = (m ? m[1]! : value).trim();
  return /^[^\s@<>]+@[^\s@<>]+$/.test(address) ? address : undefined;
}

/** The organizer of an item (its first component's ORGANIZER address). */
export function organizerOf(calendar: ICAL.Component): string | undefined {
  for (const c of calendarItems(calendar)) {
    const address = calAddress(c.getFirstPropertyValue('organizer'));
    if (address) return address;
  }
  return undefined;
}

/** The SUMMARY of an item's first component ('' when none): the subject of its messages. */
export function summaryOf(calendar: ICAL.Component): string {
  return String(calendarItems(calendar)[0]?.getFirstPropertyValue('summary') ?? '');
}

/** Every attendee address of an item, over its components, once each (the organizer left out). */
export function attendeesOf(calendar: ICAL.Component): string[] {
  const organizer = organizerOf(calendar);
  const seen = new Map<string, string>();
  for (const c of calendarItems(calendar)) {
    for (const p of c.getAllProperties('attendee')) {
      const address = calAddress(p.getFirstValue());
      if (address && !sameAddress(address, organizer) && !seen.has(address.toLowerCase())) seen.set(address.toLowerCase(), address);
    }
  }
  return [...seen.values()];
}

/** The ATTENDEE property of `address` in a component. */
export function attendeeProperty(component: ICAL.Component, address: string): ICAL.Property | undefined {
  return component.getAllProperties('attendee').find((p) => sameAddress(calAddress(p.getFirstValue()), address));
}

function copyProperty(property: ICAL.Property): ICAL.Property {
  return new ICAL.Property(structuredClone(property.toJSON()) as unknown[]);
}

/** A copy of an item as a `method` object (METHOD set, the item's components and zones). */
function withMethod(calendar: ICAL.Component, method: ItipMethod): ICAL.Component {
  const copy = copyComponent(calendar);
  copy.updatePropertyWithValue('method', method);
  if (!copy.getFirstPropertyValue('prodid')) copy.updatePropertyWithValue('prodid', '-//ximssd//calendar//EN');
  if (!copy.getFirstPropertyValue('version')) copy.updatePropertyWithValue('version', '2.0');
  return copy;
}

function stamp(component: ICAL.Component): void {
  component.updatePropertyWithValue('dtstamp', ICAL.Time.now());
}

/** A REQUEST for an item as stored (every component, stamped now). */
export function requestObject(calendar: ICAL.Component): ICAL.Component {
  const request = withMethod(calendar, 'REQUEST');
  for (const c of calendarItems(request)) stamp(c);
  return request;
}

/**
 * A CANCEL of an item (or of one occurrence: `recurrenceId` given as the override's component):
 * the components with STATUS:CANCELLED and SEQUENCE raised by one.
 */
export function cancelObject(calendar: ICAL.Component): ICAL.Component {
  const cancel = withMethod(calendar, 'CANCEL');
  for (const c of calendarItems(cancel)) {
    c.updatePropertyWithValue('status', 'CANCELLED');
    const sequence = Number(c.getFirstPropertyValue('sequence') ?? 0);
    c.updatePropertyWithValue('sequence', Number.isFinite(sequence) ? sequence + 1 : 1);
    for (const alarm of c.getAllSubcomponents('valarm')) c.removeSubcomponent(alarm);
    stamp(c);
  }
  return cancel;
}

/**
 * A REPLY of `attendee` to an item: per component the identifying properties (UID,
 * RECURRENCE-ID, SEQUENCE, DTSTART, ORGANIZER, SUMMARY) and that attendee's line alone with
 * its PARTSTAT; a comment as COMMENT.
 */
export function replyObject(calendar: ICAL.Component, attendee: string, partstat: string, comment?: string): ICAL.Component {
  const reply = new ICAL.Component('vcalendar');
  reply.addPropertyWithValue('prodid', '-//ximssd//calendar//EN');
  reply.addPropertyWithValue('version', '2.0');
  reply.addPropertyWithValue('method', 'REPLY');
  for (const zone of calendar.getAllSubcomponents('vtimezone')) reply.addSubcomponent(copyComponent(zone));
  for (const c of calendarItems(calendar)) {
    const out = new ICAL.Component(c.name);
    for (const name of ['uid', 'recurrence-id', 'sequence', 'dtstart', 'dtend', 'due', 'duration', 'organizer', 'summary']) {
      const p = c.getFirstProperty(name);
      if (p) out.addProperty(copyProperty(p));
    }
    const own = attendeeProperty(c, attendee);
    const line = own ? copyProperty(own) : new ICAL.Property('attendee');
    if (!own) line.setValue(`mailto:${attendee}`);
    line.setParameter('partstat', partstat);
    line.removeParameter('rsvp');
    out.addProperty(line);
    if (comment) out.addPropertyWithValue('comment', comment);
    stamp(out);
    reply.addSubcomponent(out);
  }
  return reply;
}

function base64Lines(data: Buffer): string {
  return (data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
}

export interface ImipOptions {
  from: string;
  fromName?: string;
  to: readonly string[];
  subject: string;
  /** The plain-text alternative (a short description of the invitation). */
  text: string;
  timeZone: string;
  hostname: string;
}

/** The RFC 822 bytes of an iMIP message carrying `object` (text and calendar alternatives). */
export function imipMessage(object: ICAL.Component, method: ItipMethod, options: ImipOptions): Buffer {
  const boundary = `=_ximssd_${Date.now().toString(36)}_${Math.random().toString(36).slice(2)}`;
  const lines = [
    'From: ' + formatAddress(options.from, options.fromName),
    'To: ' + options.to.map((a) => formatAddress(a, undefined)).join(',\r\n '),
    unstructuredField('Subject', options.subject),
    `Date: ${rfcDateInZone(new Date(), options.timeZone)}`,
    `Message-ID: ${newMessageId(options.hostname)}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/alternative; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    '',
    base64Lines(Buffer.from(options.text, 'utf8')),
    `--${boundary}`,
    `Content-Type: text/calendar; charset=utf-8; method=${method}`,
    'Content-Transfer-Encoding: base64',
    '',
    base64Lines(Buffer.from(object.toString(), 'utf8')),
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'utf8');
}

/** The subject line of a scheduling message. */
export function itipSubject(method: ItipMethod, summary: string, partstat?: string): string {
  if (method === 'REQUEST') return `Invitation: ${summary}`;
  if (method === 'CANCEL') return `Cancelled: ${summary}`;
  const word = partstat === 'ACCEPTED' ? 'Accepted' : partstat === 'DECLINED' ? 'Declined' : partstat === 'TENTATIVE' ? 'Tentative' : 'Reply';
  return `${word}: ${summary}`;
}
