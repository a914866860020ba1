/**
 * Calendar items as messages: a message of a Calendar-class (or Tasks-class) mailbox carries one
 * iCalendar object — one master VEVENT or VTODO with its recurrence exceptions and the
 * VTIMEZONEs they use — as a text/calendar body (further MIME parts are its attachments). Its
 * header fields are what a mail client shows of it:
 *   Subject   the master's SUMMARY
 *   From      the ORGANIZER (else the owner)
 *   Date      when it was stored, in the owner's zone
 * plus Message-ID, MIME-Version and the content fields.
 */
import { randomBytes } from 'node:crypto';
import ICAL from 'ical.js';
import { formatAddress, newMessageId, unstructuredField } from '../mime/compose.js';
import { rfcDateInZone } from '../mime/dates.js';
import { parseMime, type MimePart } from '../mime/index.js';
import { decodeTextPart } from '../mime/text.js';
import type { CalendarItem, ItemFields } from './occurrences.js';
import { copyComponent } from './publish.js';

/** The class of the mailboxes calendars are (the seed system's Calendar class). */
export const CALENDAR_CLASS = 'IPF.Appointment';
/** The class of task lists. */
export const TASKS_CLASS = 'IPF.Task';

export interface ItemHeader {
  summary: string;
  /** The organizer's address (mailto: removed), when there is one. */
  organizer?: string;
  organizerName?: string;
}

/** The header an item's listing fields give it. */
export function itemHeader(fields: Pick<ItemFields, 'summary' | 'organizer'>): ItemHeader {
  return { summary: fields.summary ?? '', ...(fields.organizer ? { organizer: fields.organizer } : {}) };
}

/**
 * One VCALENDAR holding these items' components, each VTIMEZONE once (HTTP Export of a
 * calendar, GET of a CalDAV collection, a calendar opened from a URL).
 */
export function calendarOfItems(items: readonly CalendarItem[]): string {
  const calendar = new ICAL.Component('vcalendar');
  calendar.addPropertyWithValue('version', '2.0');
  calendar.addPropertyWithValue('prodid', '-//ximssd//calendar//EN');
  const zones = new Set<string>();
  for (const item of items) {
    for (const component of item.calendar.name === 'vcalendar' ? item.calendar.getAllSubcomponents() : [item.calendar]) {
      if (component.name === 'vtimezone') {
        const tzid = String(component.getFirstPropertyValue('tzid'));
        if (zones.has(tzid)) continue;
        zones.add(tzid);
      }
      calendar.addSubcomponent(copyComponent(component));
    }
  }
  return calendar.toString() + '\r\n';
}

export interface ItemOptions {
  timeZone: string;
  hostname: string;
  /** The Date written (default: now). */
  date?: Date;
}

/**
 * The RFC 822 bytes of an item holding this iCalendar text; with attachments (whole MIME
 * entities: header fields and body), a multipart/mixed whose first part is the calendar.
 */
export function composeCalendarItem(text: string, header: ItemHeader, options: ItemOptions, attachments: readonly Buffer[] = []): Buffer {
  const lines: string[] = [unstructuredField('Subject', header.summary)];
  if (header.organizer && !/[\s<>,"]/.test(header.organizer)) lines.push('From: ' + formatAddress(header.organizer, header.organizerName));
  lines.push(`Date: ${rfcDateInZone(options.date ?? new Date(), options.timeZone)}`);
  lines.push(`Message-ID: ${newMessageId(options.hostname)}`);
  lines.push('MIME-Version: 1.0');
  const calendarPart = 'Content-Type: text/calendar; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' + text.replace(/\r?\n/g, '\r\n');
  if (attachments.length === 0) return Buffer.from(lines.map((l) => l + '\r\n').join('') + calendarPart, 'utf8');
  const boundary = `=_item_${randomBytes(12).toString('hex')}`;
  lines.push(`Content-Type: multipart/mixed; boundary="${boundary}"`);
  const parts: Buffer[] = [Buffer.from(lines.map((l) => l + '\r\n').join('') + `\r\n--${boundary}\r\n` + calendarPart, 'utf8')];
  for (const entity of attachments) parts.push(Buffer.from(`\r\n--${boundary}\r\n`, 'latin1'), entity);
  parts.push(Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'));
  return Buffer.concat(parts);
}

/**
 * The attachments of an item (or of any composed message): the parts of its top multipart
 * other than the calendar, as whole MIME entities (header fields and body, bytes as stored).
 */
export function itemAttachments(raw: Buffer): Buffer[] {
  const root = parseMime(raw);
  if (root.type !== 'multipart') return [];
  const calendar = calendarPart(root);
  return root.children.filter((c) => c !== calendar).map((c) => raw.subarray(c.headerStart, c.end));
}

/** The first text/calendar part of a message. */
export function calendarPart(part: MimePart): MimePart | undefined {
  if (part.type === 'text' && part.subtype === 'calendar') return part;
  for (const child of part.children) {
    const found = calendarPart(child);
    if (found) return found;
  }
  return undefined;
}

/** The iCalendar text of an item message; undefined when it has none. */
export function itemText(raw: Buffer): string | undefined {
  const part = calendarPart(parseMime(raw));
  return part ? decodeTextPart(raw, part).text : undefined;
}
