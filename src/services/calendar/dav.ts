/**
 * What CalDAV (src/transports/dav/caldav.ts) needs of a calendar beyond CalendarService: its
 * items as named resources, a resource's text checked as RFC 4791 wants it, storing one under
 * a name with the iCalendar UID kept unique in the calendar, and removing one.
 *
 * Names. A client names what it creates (`<uuid>.ics`); the name is kept in the store by
 * (mailbox, ORIGUID) like CardDAV's (src/store/dav-names.ts), so it follows the item through
 * its versions (a replacement keeps the ORIGUID) and outlives it for sync-collection. An item
 * stored otherwise (XIMSS calendarPublish, a mail client) is named after its iCalendar UID
 * (`<uid>.ics`, characters outside a safe set written `_XX`) the first time CalDAV lists it,
 * and that name is recorded then, so that it stays when the item goes. A PUT's message
 * carries the client's name in a header field, so a listing that runs between the PUT's
 * commit and its recording of the name records the client's name too.
 *
 * Uniqueness of the iCalendar UID in a calendar is decided by commit order, as CardDAV does:
 * after its commit a PUT looks at the index rows of its UID, and when a message committed
 * before its own (a lower UID) holds it, its own message is removed again and the PUT fails.
 */
import ICAL from 'ical.js';
import { copyComponent } from './publish.js';
import type { CalendarIndexStore } from '../../store/calendar-index.js';
import type { DavNameStore } from '../../store/dav-names.js';
import type { MessageMeta } from '../../store/store.js';
import { ServiceError } from '../errors.js';
import { Flag } from '../mail/flags.js';
import { prepareMessage } from '../mail/new-message.js';
import type { MailboxHandle, MailService } from '../mail/service.js';
import { composeCalendarItem, itemAttachments, itemHeader, itemText } from './item.js';
import { CalendarItemError, occurrences, parseItem, type CalendarItem } from './occurrences.js';
import type { CalendarService } from './service.js';

/** The largest calendar resource a PUT may store (CALDAV:max-resource-size). */
export const MAX_RESOURCE_BYTES = 1024 * 1024;

/** Why a resource's text is refused: the RFC 4791 precondition (local name in the CalDAV namespace). */
export class CalendarResourceError extends Error {
  constructor(
    message: string,
    readonly condition: 'valid-calendar-data' | 'supported-calendar-component' | 'valid-calendar-object-resource',
  ) {
    super(message);
  }
}

/** A calendar's items as of one moment: messages by resource name, and the name of each. */
export interface CalendarMembers {
  box: MailboxHandle;
  modseq: number;
  byName: Map<string, MessageMeta>;
  nameOf: (meta: MessageMeta) => string;
}

/** A resource text that passed the checks. */
export interface CheckedResource {
  text: string;
  item: CalendarItem;
}

export type StoreOutcome = { kind: 'stored'; message: MessageMeta } | { kind: 'uid-conflict'; holder: MessageMeta } | { kind: 'gone' };

const ITEM_COMPONENTS = new Set(['vevent', 'vtodo']);

/** The name of a message no client named: from its iCalendar UID, or its ORIGUID when it has none usable. */
export function defaultResourceName(itemUid: string | undefined, origUid: number): string {
  if (!itemUid || itemUid.length > 200) return `ximss-${origUid}.ics`;
  return `${itemUid.replace(/[^A-Za-z0-9.@+=-]/g, (c) => [...Buffer.from(c, 'utf8')].map((b) => `_${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''))}.ics`;
}

/**
 * The header field a PUT's message carries its resource name in (URI-encoded): the name is
 * recorded after the commit, and a listing that sees the message before that records this
 * same name rather than one of its own.
 */
const NAME_FIELD = 'X-DAV-Name';

/** The name a message carries in its header (see NAME_FIELD). */
function carriedName(raw: Buffer): string | undefined {
  const end = raw.indexOf('\r\n\r\n');
  const header = raw.subarray(0, end < 0 ? Math.min(raw.length, 64 * 1024) : end).toString('latin1');
  const m = /(?:^|\r\n)X-DAV-Name:[ \t]*([^\r\n]*)/i.exec(header);
  if (!m) return undefined;
  try {
    const name = decodeURIComponent(m[1]!.trim());
    return /^[^\x00-\x1f\x7f/]{1,255}$/.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

/** Occurrences an expanded calendar-data holds at most. */
const MAX_EXPANDED = 1000;
const DAY_MS = 24 * 3_600_000;

/** A deep copy of a component: ICAL.Component wraps its jCal arrays, so a copy must not share them with a cached item. */
function utcTime(ms: number): ICAL.Time {
  return ICAL.Time.fromJSDate(new Date(ms), true);
}

function dateValue(yyyymmdd: string): ICAL.Time {
  return ICAL.Time.fromDateString(`${yyyymmdd.slice(0, 4)}-${yyyymmdd.slice(4, 6)}-${yyyymmdd.slice(6, 8)}`);
}

function addDays(yyyymmdd: string, days: number): string {
  const at = Date.UTC(Number(yyyymmdd.slice(0, 4)), Number(yyyymmdd.slice(4, 6)) - 1, Number(yyyymmdd.slice(6, 8))) + days * DAY_MS;
  return new Date(at).toISOString().slice(0, 10).replace(/-/g, '');
}

/**
 * An item as calendar-data with `expand` (RFC 4791 9.6.5): one component per occurrence in
 * [from, till), without RRULE/RDATE/EXDATE, its DTSTART and DTEND in UTC (all-day ones as
 * dates), with a RECURRENCE-ID (in UTC, but an overridden instance's own as written). An
 * item that does not recur is its stored text.
 */
export function expandedText(text: string, item: CalendarItem, from: number, till: number, zone: string): string {
  if (!item.fields.recurring && item.overrides.size === 0) return text;
  const calendar = new ICAL.Component('vcalendar');
  calendar.addPropertyWithValue('version', '2.0');
  calendar.addPropertyWithValue('prodid', '-//ximssd//CalDAV//EN');
  if (item.calendar.name === 'vcalendar') {
    for (const zoneComponent of item.calendar.getAllSubcomponents('vtimezone')) calendar.addSubcomponent(copyComponent(zoneComponent));
  }
  for (const occurrence of occurrences(item, from, till, zone, { limit: MAX_EXPANDED })) {
    const component = copyComponent(occurrence.component);
    for (const name of ['rrule', 'rdate', 'exdate', 'exrule', 'dtstart', 'dtend', 'duration', 'due']) component.removeAllProperties(name);
    const due = item.kind === 'todo' && occurrence.component.hasProperty('due');
    if (occurrence.allDay && occurrence.date) {
      const days = Math.max(1, Math.round((occurrence.end - occurrence.start) / DAY_MS));
      component.addPropertyWithValue('dtstart', dateValue(occurrence.date));
      component.addPropertyWithValue(due ? 'due' : 'dtend', dateValue(addDays(occurrence.date, days)));
    } else {
      component.addPropertyWithValue('dtstart', utcTime(occurrence.start));
      if (occurrence.end > occurrence.start || due) component.addPropertyWithValue(due ? 'due' : 'dtend', utcTime(due && occurrence.due !== undefined ? occurrence.due : occurrence.end));
    }
    if (!occurrence.fromOverride) {
      component.removeAllProperties('recurrence-id');
      if (item.fields.recurring) component.addPropertyWithValue('recurrence-id', occurrence.allDay && occurrence.date ? dateValue(occurrence.date) : utcTime(occurrence.start));
    }
    calendar.addSubcomponent(component);
  }
  return calendar.toString() + '\r\n';
}

/**
 * Checks a PUT body as RFC 4791 4.1 and 5.3.2.1 want a calendar object resource: iCalendar
 * text (valid-calendar-data), VEVENTs or VTODOs only besides VTIMEZONEs
 * (supported-calendar-component), one kind, one UID on every component, no METHOD
 * (valid-calendar-object-resource), and an item the calendar code can read.
 */
export function checkResource(text: string): CheckedResource {
  let root: ICAL.Component;
  try {
    root = new ICAL.Component(ICAL.parse(text) as unknown[]);
  } catch (err) {
    throw new CalendarResourceError(`not iCalendar data: ${err instanceof Error ? err.message : String(err)}`, 'valid-calendar-data');
  }
  if (root.name !== 'vcalendar') throw new CalendarResourceError(`a ${root.name.toUpperCase()} is not a VCALENDAR`, 'valid-calendar-data');
  if (root.hasProperty('method')) throw new CalendarResourceError('a stored calendar object has no METHOD (that is an iTIP message)', 'valid-calendar-object-resource');
  const kinds = new Set<string>();
  const uids = new Set<string>();
  for (const component of root.getAllSubcomponents()) {
    if (component.name === 'vtimezone') continue;
    if (!ITEM_COMPONENTS.has(component.name)) throw new CalendarResourceError(`${component.name.toUpperCase()} is not stored here (VEVENT and VTODO are)`, 'supported-calendar-component');
    kinds.add(component.name);
    const uid = component.getFirstPropertyValue('uid');
    if (typeof uid !== 'string' || uid.trim() === '') throw new CalendarResourceError(`a ${component.name.toUpperCase()} without a UID`, 'valid-calendar-object-resource');
    uids.add(uid);
  }
  if (kinds.size === 0) throw new CalendarResourceError('no VEVENT or VTODO', 'valid-calendar-object-resource');
  if (kinds.size > 1) throw new CalendarResourceError('one resource holds VEVENTs or VTODOs, not both', 'valid-calendar-object-resource');
  if (uids.size > 1) throw new CalendarResourceError('one resource holds one item: every component has the same UID', 'valid-calendar-object-resource');
  let item: CalendarItem;
  try {
    item = parseItem(text);
  } catch (err) {
    if (err instanceof CalendarItemError) throw new CalendarResourceError(err.message, 'valid-calendar-data');
    throw err;
  }
  return { text, item };
}

export interface CalendarDavServices {
  mail: MailService;
  calendars: CalendarService;
  calendarIndex: CalendarIndexStore;
  davNames: DavNameStore;
}

export class CalendarDav {
  constructor(
    private readonly services: () => CalendarDavServices,
    private readonly hostname: string,
  ) {}

  private get mail(): MailService {
    return this.services().mail;
  }

  /**
   * The calendar's items by name, as of the index's modseq. Items no client named get their
   * name from their UID, recorded now (one parse each, then never again).
   */
  async members(box: MailboxHandle): Promise<CalendarMembers> {
    const { davNames, calendars } = this.services();
    const names = await davNames.names(box.record.id);
    const index = await this.mail.index(box);
    const live = [...index.byUid.values()].filter((m) => !(m.flags & Flag.Deleted)).sort((a, b) => a.uid - b.uid);
    for (const meta of live) {
      if (names.has(meta.origUid)) continue;
      // A PUT's message carries its name, so that whoever records it first records that name.
      const raw = await this.mail.readRaw(box, meta.uid);
      const carried = raw ? carriedName(raw) : undefined;
      const name = carried ?? defaultResourceName((await calendars.item(box, meta.uid))?.uid, meta.origUid);
      await davNames.record(box.record.id, meta.origUid, name);
      names.set(meta.origUid, (await davNames.names(box.record.id, [meta.origUid])).get(meta.origUid) ?? name);
    }
    const nameOf = (meta: MessageMeta): string => names.get(meta.origUid) ?? `ximss-${meta.origUid}.ics`;
    const byName = new Map<string, MessageMeta>();
    for (const meta of live) {
      const name = nameOf(meta);
      // Two items under one name (two nodes creating it at once): the earlier one holds it.
      if (!byName.has(name)) byName.set(name, meta);
    }
    return { box, modseq: index.modseq, byName, nameOf };
  }

  /** The names recorded for these ORIGUIDs (removed items' names for sync-collection). */
  names(box: MailboxHandle, origUids: readonly number[]): Promise<Map<number, string>> {
    return this.services().davNames.names(box.record.id, origUids);
  }

  /** The iCalendar text of an item message. */
  async text(box: MailboxHandle, uid: number): Promise<string | undefined> {
    return this.services().calendars.itemTextOf(box, uid);
  }

  /** The live message (other than `except`, and committed before `before` when given) holding this iCalendar UID. */
  async holderOf(box: MailboxHandle, itemUid: string, except: number | undefined, before?: number): Promise<MessageMeta | undefined> {
    const { calendars, calendarIndex } = this.services();
    await calendars.refreshIndex(box);
    const rows = await calendarIndex.byItemUid(box.record.id, itemUid);
    const index = await this.mail.index(box);
    for (const row of rows.sort((a, b) => a.uid - b.uid)) {
      if (row.uid === except || (before !== undefined && row.uid >= before)) continue;
      const meta = index.byUid.get(row.uid) ?? (await this.mail.getMessage(box, row.uid));
      if (meta && !(meta.flags & Flag.Deleted)) return meta;
    }
    return undefined;
  }

  /**
   * Stores a checked resource under `name`: a new message, or the replacement of `existing`
   * (its ORIGUID, so its name, kept). Refused when another item of the calendar holds the
   * UID (before or, losing the race, after the commit); 'gone' when `existing` was replaced
   * or removed meanwhile.
   */
  async store(box: MailboxHandle, name: string, resource: CheckedResource, existing: MessageMeta | undefined, timeZone: string): Promise<StoreOutcome> {
    const itemUid = resource.item.uid;
    const before = await this.holderOf(box, itemUid, existing?.uid);
    if (before) return { kind: 'uid-conflict', holder: before };
    // A CalDAV client does not see an item's attachments (added over XIMSS): a PUT keeps them.
    const previousRaw = existing ? await this.mail.readRaw(box, existing.uid) : undefined;
    const raw = Buffer.concat([
      Buffer.from(`${NAME_FIELD}: ${encodeURIComponent(name)}\r\n`),
      composeCalendarItem(resource.text, itemHeader(resource.item.fields), { timeZone, hostname: this.hostname }, previousRaw ? itemAttachments(previousRaw) : []),
    ]);
    let message: MessageMeta | undefined;
    try {
      [message] = await this.mail.append(box, [prepareMessage(raw, { flags: Flag.Seen })], existing ? { replace: { uid: existing.uid, byOrigUid: false, mustExist: true, keepOrigUid: true } } : {});
    } catch (err) {
      if (existing && err instanceof ServiceError && /not|exist/i.test(err.message)) return { kind: 'gone' };
      throw err;
    }
    if (!message) throw new ServiceError('the calendar item was not stored');
    if (!existing) await this.services().davNames.record(box.record.id, message.origUid, name);
    const earlier = await this.holderOf(box, itemUid, existing?.uid, message.uid);
    if (earlier && earlier.origUid !== message.origUid) {
      await this.mail.expunge(box, [message.uid]);
      return { kind: 'uid-conflict', holder: earlier };
    }
    return { kind: 'stored', message };
  }

  /**
   * COPY/MOVE of an item into another calendar under `name` (replacing `existing` there):
   * the message copied or moved by the mail service, its name recorded. Refused when the
   * target holds the item's UID elsewhere (before or, losing the race, after the commit);
   * 'gone' when the source or `existing` went meanwhile.
   */
  async copy(source: MailboxHandle, meta: MessageMeta, target: MailboxHandle, name: string, existing: MessageMeta | undefined, move: boolean): Promise<StoreOutcome> {
    const item = await this.services().calendars.item(source, meta.uid);
    const itemUid = item?.uid ?? '';
    if (itemUid !== '') {
      const holder = await this.holderOf(target, itemUid, existing?.uid);
      if (holder) return { kind: 'uid-conflict', holder };
    }
    if (existing && !(await this.remove(target, existing.uid))) return { kind: 'gone' };
    const pairs = await this.mail.copy(source, [meta.uid], target, move);
    const copied = pairs[0] && (await this.mail.getMessage(target, pairs[0].to));
    if (!copied) return { kind: 'gone' };
    await this.services().davNames.record(target.record.id, copied.origUid, name);
    if (itemUid !== '') {
      const earlier = await this.holderOf(target, itemUid, undefined, copied.uid);
      if (earlier && earlier.origUid !== copied.origUid) {
        await this.mail.expunge(target, [copied.uid]);
        return { kind: 'uid-conflict', holder: earlier };
      }
    }
    return { kind: 'stored', message: copied };
  }

  /**
   * The whole calendar as one iCalendar object (GET of the collection): every item's
   * components, each VTIMEZONE once.
   */
  async exportText(box: MailboxHandle, members: CalendarMembers): Promise<string> {
    return this.services().calendars.exportText(box, [...members.byName.values()].map((m) => m.uid));
  }

  /** Removes an item's message (false when it is gone already: replaced or removed meanwhile). */
  async remove(box: MailboxHandle, uid: number): Promise<boolean> {
    return (await this.mail.expunge(box, [uid])) > 0;
  }

  /** The text of a message for a REPORT's calendar-data (undefined when it holds none). */
  async resourceText(box: MailboxHandle, meta: MessageMeta): Promise<string | undefined> {
    const raw = await this.mail.readRaw(box, meta.uid);
    return raw ? itemText(raw) : undefined;
  }
}
