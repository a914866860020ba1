import { hostname } from 'node:os';
import { itemAttachments } from '../../services/calendar/item.js';
import type { CalendarItem } from '../../services/calendar/occurrences.js';
import { itemIdentity } from '../../services/calendar/publish.js';
import { DEFAULT_REMOTE_LIMITS, fetchRemoteCalendar } from '../../services/calendar/remote.js';
import type { FoundOccurrence, ReplyOptions } from '../../services/calendar/service.js';
import { ICalendarFormatError, textToXcal, xcalToText } from '../../services/calendar/xcal.js';
import { instantToWall, wallToInstant, type WallTime } from '../../services/calendar/zones.js';
import { ServiceError } from '../../services/errors.js';
import type { FolderView } from '../../services/mail/folder-view.js';
import type { MailboxHandle } from '../../services/mail/service.js';
import { composeMessage } from '../../services/mime/index.js';
import { el, XmlElement } from '../../xml/element.js';
import { formatLocal, ianaTimeZone } from '../../xml/time.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import { viewOptions } from '../folders.js';
import type { Session } from '../session.js';
import { readMessageReply, sessionResolver, uidAttr } from './message.js';

/**
 * Spec section "Calendar Operations": calendars are Calendar-class mailboxes opened under a
 * name of the session's choosing; the iCalendar work is the calendar service's
 * (src/services/calendar/).
 */

/** A calendar a session has open: a mailbox (and a view of it that tells of its changes), or a remote document. */
export type OpenCalendar = MailboxCalendar | RemoteCalendar;

export interface MailboxCalendar {
  kind: 'mailbox';
  name: string;
  box: MailboxHandle;
  view: FolderView;
  /** A notify-mode calendarReport was sent and no findEvents/findTasks came since (they are coalesced until then). */
  notified: boolean;
}

/** calendarOpen with `url`: the items of a remote iCalendar document, read-only. */
export interface RemoteCalendar {
  kind: 'remote';
  name: string;
  url: string;
  items: readonly CalendarItem[];
}

export const CALENDAR_NOT_OPEN = 'calendar has not been opened';
const REMOTE_READ_ONLY = 'this operation cannot be applied to a calendar opened from a URL';
/** Most people one calendarForward invites. */
const MAX_FORWARD_RECIPIENTS = 100;
/** Most days one findEvents/findTasks may span (one data message per day). */
const MAX_DAYS = 400;

function openCalendar(session: Session, request: XmlElement): OpenCalendar {
  const calendar = session.calendars.get(requiredAttr(request, 'calendar'));
  if (!calendar) throw new ServiceError(CALENDAR_NOT_OPEN);
  return calendar;
}

/** An open calendar that is a mailbox (a remote one cannot be read as messages or changed). */
export function mailboxCalendar(session: Session, request: XmlElement): MailboxCalendar {
  const calendar = openCalendar(session, request);
  if (calendar.kind === 'remote') throw new ServiceError(REMOTE_READ_ONLY);
  return calendar;
}

const BASIC = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})?)?(Z)?$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?(Z)?$/;

/**
 * A time attribute as clients send it — `20240101T000000`, `20240101`, `2024-01-01 00:00:00`,
 * with a `Z` for GMT — read in the session's time zone; undefined when absent.
 */
export function timeAttr(request: XmlElement, name: string, zone: string): number | undefined {
  const text = request.attrs[name];
  if (text === undefined) return undefined;
  const m = BASIC.exec(text.trim()) ?? ISO.exec(text.trim());
  if (!m) throw new ServiceError(`invalid ${name}: ${JSON.stringify(text.slice(0, 40))}`);
  const wall: WallTime = { year: +m[1]!, month: +m[2]!, day: +m[3]!, hour: +(m[4] ?? 0), minute: +(m[5] ?? 0), second: +(m[6] ?? 0) };
  if (wall.month < 1 || wall.month > 12 || wall.day < 1 || wall.day > 31 || wall.hour > 23 || wall.minute > 59 || wall.second > 59) {
    throw new ServiceError(`invalid ${name}: ${JSON.stringify(text.slice(0, 40))}`);
  }
  return wallToInstant(wall, m[7] ? { kind: 'utc' } : { kind: 'iana', name: zone, viewer: true });
}

/** The local midnights that cut [from, till) into days of the zone. */
function dayBounds(from: number, till: number, zone: string): number[] {
  const bounds = [from];
  let wall = instantToWall(from, zone);
  for (;;) {
    const next = new Date(Date.UTC(wall.year, wall.month - 1, wall.day + 1));
    const midnight = wallToInstant({ year: next.getUTCFullYear(), month: next.getUTCMonth() + 1, day: next.getUTCDate(), hour: 0, minute: 0, second: 0 }, { kind: 'iana', name: zone, viewer: true });
    if (midnight >= till) break;
    bounds.push(midnight);
    if (bounds.length > MAX_DAYS) throw new ServiceError(`the interval is too long (at most ${MAX_DAYS} days)`);
    wall = instantToWall(midnight, zone);
  }
  bounds.push(till);
  return bounds;
}

function countAttr(request: XmlElement, name: string): number | undefined {
  const text = request.attrs[name];
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new ServiceError(`invalid ${name}`);
  return n;
}

function ownAddress(session: Session, address: string | undefined): boolean {
  return address !== undefined && address.toLowerCase() === session.userName.toLowerCase();
}

/** The `event` or `task` element of one occurrence. */
function occurrenceElement(session: Session, kind: 'event' | 'todo', found: FoundOccurrence, byAlarm: boolean): XmlElement {
  const { occurrence, item } = found;
  const f = occurrence.fields;
  const zone = session.timeZone;
  const attrs: Record<string, string | number | undefined> = { UID: found.uid, itemUID: item.uid };
  if (kind === 'event') {
    if (occurrence.allDay && !byAlarm) attrs.dateFrom = occurrence.date;
    else attrs.timeFrom = formatLocal(new Date(occurrence.start), zone);
    attrs.duration = Math.round((occurrence.end - occurrence.start) / 1000);
  } else {
    if (item.start || occurrence.fromOverride) attrs.timeFrom = formatLocal(new Date(occurrence.start), zone);
    if (occurrence.due !== undefined) attrs.due = formatLocal(new Date(occurrence.due), zone);
    if (f.percentComplete !== undefined) attrs['percent-complete'] = f.percentComplete;
  }
  if (byAlarm && found.alarm !== undefined) attrs.alarmTime = formatLocal(new Date(found.alarm), zone);
  if (kind === 'event') attrs.busyStatus = f.busyStatus;
  if (ownAddress(session, f.organizer)) attrs.organizer = 'yes';
  if (item.fields.recurring) attrs.recurrence = 'yes';
  if (occurrence.fromOverride) attrs.recurrenceId = occurrence.recurrenceId;
  if (f.attendees > 0) attrs.attendees = f.attendees;
  if (f.location) attrs.location = f.location.length > 200 ? f.location.slice(0, 200) : f.location;
  if (f.priority !== undefined && f.priority !== 0) attrs.priority = f.priority;
  return el(kind === 'event' ? 'event' : 'task', attrs, el('summary', {}, f.summary ?? ''));
}

/** findEvents and findTasks: one `events`/`tasks` message per day of the interval in the session's zone. */
async function find(ctx: SessionContext, kind: 'event' | 'todo'): Promise<void> {
  const session = ctx.session;
  const calendar = openCalendar(session, ctx.request);
  const zone = ianaTimeZone(session.timeZone);
  const from = timeAttr(ctx.request, 'timeFrom', zone);
  const till = timeAttr(ctx.request, 'timeTill', zone);
  if (from === undefined || till === undefined) throw new ServiceError('the timeFrom and timeTill attributes are required');
  if (till <= from) throw new ServiceError('timeTill must be after timeFrom');
  const byAlarm = ctx.request.attrs.byAlarm === 'yes';
  const limit = countAttr(ctx.request, 'limit');
  const skip = countAttr(ctx.request, 'skip') ?? 0;
  const bounds = dayBounds(from, till, zone);
  // Looking again re-arms the notify: the calendar's report, and its view's (whose reports a
  // calendar does not use: a findEvents reads the mailbox afresh).
  let found: FoundOccurrence[];
  if (calendar.kind === 'remote') {
    found = ctx.server.calendars.findIn(calendar.items, kind, from, till, zone, { byAlarm });
  } else {
    calendar.notified = false;
    calendar.view.sync();
    found = await ctx.server.calendars.find(calendar.box, kind, from, till, zone, { byAlarm });
  }
  // Each occurrence goes to the days it meets (binary search on the day bounds: a runaway rule's
  // tens of thousands of occurrences are bucketed once, not scanned per day).
  const days: FoundOccurrence[][] = bounds.slice(1).map(() => []);
  const dayOf = (t: number): number => {
    let lo = 0;
    let hi = bounds.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bounds[mid + 1]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const f of found) {
    if (byAlarm) {
      if (f.alarm! >= from && f.alarm! < till) days[dayOf(f.alarm!)]!.push(f);
      continue;
    }
    const start = Math.max(f.occurrence.start, from);
    const end = Math.min(Math.max(f.occurrence.end, f.occurrence.start + 1), till);
    if (end <= start) continue;
    for (let d = dayOf(start); d < days.length && bounds[d]! < end; d++) days[d]!.push(f);
  }
  // The skip/limit window runs over the whole answer, in order.
  let position = 0;
  let shown = 0;
  for (let d = 0; d + 1 < bounds.length; d++) {
    const [dayFrom, dayTill] = [bounds[d]!, bounds[d + 1]!];
    const onDay = days[d]!;
    const elements: XmlElement[] = [];
    for (const f of onDay) {
      position++;
      if (position <= skip || (limit !== undefined && shown >= limit)) continue;
      shown++;
      elements.push(occurrenceElement(session, kind, f, byAlarm));
    }
    ctx.send(
      el(
        kind === 'event' ? 'events' : 'tasks',
        {
          calendar: calendar.name,
          timeFrom: formatLocal(new Date(dayFrom), session.timeZone),
          timeTill: formatLocal(new Date(dayTill), session.timeZone),
          skip: ctx.request.attrs.skip,
          items: onDay.length,
        },
        ...elements,
      ),
    );
  }
}

/**
 * The attachments a request gives an item: its MIME (uploaded files, composed parts) and
 * copyMIME (parts of stored messages) elements composed as messageAppend composes them; [] for
 * an empty noMIME; undefined when it says nothing (the replaced item's are kept).
 */
async function requestAttachments(ctx: SessionContext): Promise<Buffer[] | undefined> {
  const parts = ctx.request.elements().filter((e) => e.name === 'MIME' || e.name === 'copyMIME');
  if (parts.length === 0) return ctx.request.element('noMIME') ? [] : undefined;
  const email = el('EMail', {}, el('MIME', { type: 'multipart', subtype: 'mixed' }, ...parts));
  const raw = await composeMessage(email, sessionResolver(ctx), {
    timeZone: ctx.session.timeZone,
    addMissing: false,
    hostname: ctx.server.config.defaultDomain || hostname(),
    omitBcc: false,
    maxBytes: ctx.server.config.limits.maxMessageBytes,
  });
  return itemAttachments(raw);
}

/** The attendance calendarAccept records (IN-PROCESS and COMPLETED are for tasks). */
const ACCEPT_PARTSTATS = new Set(['ACCEPTED', 'TENTATIVE', 'IN-PROCESS', 'COMPLETED']);

/** Who replies and how: the session's user, sendReply and replyComment. */
function replyOptions(ctx: SessionContext): ReplyOptions {
  const comment = ctx.request.element('replyComment')?.text();
  const realName = ctx.session.account.realName;
  return {
    owner: ctx.session.userName,
    ...(realName ? { ownerName: realName } : {}),
    timeZone: ctx.session.timeZone,
    sendReply: ctx.request.attrs.sendReply !== 'no',
    ...(comment ? { comment } : {}),
  };
}

/** The one `iCalendar` element of a request body (either spelling), as text. */
function requestCalendarText(ctx: SessionContext): string {
  const element = ctx.request.elements().find((e) => e.name === 'iCalendar' || e.name === 'icalendar');
  if (!element) throw new ServiceError('the body must have an iCalendar element');
  try {
    return xcalToText(element);
  } catch (err) {
    if (err instanceof ICalendarFormatError) throw new ServiceError(`invalid iCalendar data: ${err.message}`);
    throw err;
  }
}

export const calendarOperations: OperationTable = {
  calendarOpen: inSession(async (ctx) => {
    const session = ctx.session;
    const name = requiredAttr(ctx.request, 'calendar');
    if (session.calendars.has(name)) throw new ServiceError('calendar has already been opened');
    const limit = ctx.server.config.limits.foldersPerSession;
    if (session.calendars.size >= limit) throw new ServiceError(`too many open calendars (at most ${limit})`);
    const url = ctx.request.attrs.url;
    if (url) {
      const { items, skipped } = await fetchRemoteCalendar(url, { ...DEFAULT_REMOTE_LIMITS, privateAddresses: ctx.server.config.calendar.remotePrivateAddresses });
      if (skipped > 0) ctx.server.log.info({ event: 'calendar.remote_items_skipped', account: session.userName, url: url.slice(0, 200), skipped }, 'remote calendar items not readable');
      if (session.calendars.has(name) || session.closed) throw new ServiceError('calendar has already been opened');
      session.calendars.set(name, { kind: 'remote', name, url, items });
      return;
    }
    const box = await ctx.server.mail.access(session.account, ctx.request.attrs.mailbox || name, 'r');
    const calendar: MailboxCalendar = { kind: 'mailbox', name, box, view: undefined as unknown as FolderView, notified: false };
    calendar.view = await ctx.server.mail.openView(box, viewOptions(ctx.request, session, box), [], () => {
      if (calendar.notified) return;
      calendar.notified = true;
      session.sendAsync(el('calendarReport', { calendar: name, mode: 'notify' }));
    });
    if (session.calendars.has(name) || session.closed) {
      calendar.view.close();
      throw new ServiceError('calendar has already been opened');
    }
    session.calendars.set(name, calendar);
    // The index is brought up to date now, so that the first findEvents does not pay for it.
    await ctx.server.calendars.refreshIndex(box);
  }),

  calendarClose: inSession((ctx) => {
    const calendar = openCalendar(ctx.session, ctx.request);
    if (calendar.kind === 'mailbox') calendar.view.close();
    ctx.session.calendars.delete(calendar.name);
  }),

  findEvents: inSession((ctx) => find(ctx, 'event')),
  findTasks: inSession((ctx) => find(ctx, 'todo')),

  calendarRead: inSession(async (ctx) => {
    const calendar = mailboxCalendar(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    const { body, partID, mode } = await readMessageReply(ctx, calendar.box, uid);
    ctx.send(el('calendarMessage', { calendar: calendar.name, UID: uid, partID, mode }, body));
  }),

  calendarReadItem: inSession(async (ctx) => {
    const calendar = openCalendar(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    const text = calendar.kind === 'remote' ? calendar.items[uid - 1]?.calendar.toString() : await ctx.server.calendars.itemTextOf(calendar.box, uid);
    if (text === undefined) throw new ServiceError('calendar item not found');
    let body: XmlElement;
    try {
      body = textToXcal(text);
    } catch (err) {
      if (err instanceof ICalendarFormatError) throw new ServiceError(`invalid iCalendar data: ${err.message}`);
      throw err;
    }
    ctx.send(el('calendarItem', { calendar: calendar.name, UID: uid }, body));
  }),

  calendarPublish: inSession(async (ctx) => {
    const calendar = mailboxCalendar(ctx.session, ctx.request);
    const text = requestCalendarText(ctx);
    const attachments = await requestAttachments(ctx);
    await ctx.server.calendars.publish(calendar.box, text, {
      timeZone: ctx.session.timeZone,
      owner: ctx.session.userName,
      sendRequests: ctx.request.attrs.sendRequests ?? 'yes',
      copyExceptions: ctx.request.attrs.copyExceptions !== 'no',
      ...(attachments ? { attachments } : {}),
    });
  }),

  calendarCancel: inSession(async (ctx) => {
    const session = ctx.session;
    const calendar = mailboxCalendar(session, ctx.request);
    let { itemUID, recurrenceId } = ctx.request.attrs;
    // An iCalendar body names the item (and the occurrence) itself.
    if (ctx.request.elements().some((e) => e.name === 'iCalendar' || e.name === 'icalendar')) {
      const named = itemIdentity(requestCalendarText(ctx));
      itemUID = named.uid;
      recurrenceId = named.recurrenceId ?? recurrenceId;
    }
    const sendRequests = ctx.request.attrs.sendRequests !== 'no';
    if (recurrenceId) {
      if (itemUID === undefined) {
        const item = await ctx.server.calendars.item(calendar.box, uidAttr(ctx.request));
        if (!item) throw new ServiceError('calendar item not found');
        itemUID = item.uid;
      }
      await ctx.server.calendars.cancelOccurrence(calendar.box, itemUID, recurrenceId, {
        timeZone: session.timeZone,
        owner: session.userName,
        sendRequests: sendRequests ? 'yes' : 'no',
        copyExceptions: false,
      });
      return;
    }
    const comment = ctx.request.element('requestComment')?.text();
    await ctx.server.calendars.cancel(calendar.box, {
      ...(itemUID === undefined ? { uid: uidAttr(ctx.request) } : { itemUid: itemUID }),
      sendRequests,
      owner: session.userName,
      timeZone: session.timeZone,
      ...(comment ? { comment } : {}),
    });
  }),

  calendarAccept: inSession(async (ctx) => {
    const session = ctx.session;
    const calendar = mailboxCalendar(session, ctx.request);
    const partstat = (ctx.request.attrs.PARTSTAT ?? 'ACCEPTED').toUpperCase();
    if (!ACCEPT_PARTSTATS.has(partstat)) throw new ServiceError(`invalid PARTSTAT: ${JSON.stringify(partstat.slice(0, 40))}`);
    const attachments = await requestAttachments(ctx);
    await ctx.server.calendars.accept(calendar.box, requestCalendarText(ctx), partstat, { ...replyOptions(ctx), ...(attachments ? { attachments } : {}) });
  }),

  calendarDecline: inSession(async (ctx) => {
    const name = ctx.request.attrs.calendar;
    const calendar = name ? mailboxCalendar(ctx.session, ctx.request) : undefined;
    await ctx.server.calendars.decline(calendar?.box, requestCalendarText(ctx), replyOptions(ctx));
  }),

  calendarForward: inSession(async (ctx) => {
    const calendar = mailboxCalendar(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    const recipients = ctx.request.elements('To').map((e) => e.text().trim().replace(/^mailto:/i, ''));
    if (recipients.length === 0) throw new ServiceError('the request names no recipient (To elements)');
    for (const r of recipients) if (!/^[^\s@<>]+@[^\s@<>]+$/.test(r)) throw new ServiceError(`invalid recipient address: ${JSON.stringify(r.slice(0, 80))}`);
    if (recipients.length > MAX_FORWARD_RECIPIENTS) throw new ServiceError(`too many recipients (at most ${MAX_FORWARD_RECIPIENTS})`);
    await ctx.server.calendars.forward(calendar.box, uid, recipients, replyOptions(ctx));
  }),

  calendarUpdate: inSession(async (ctx) => {
    const calendar = mailboxCalendar(ctx.session, ctx.request);
    await ctx.server.calendars.applyReply(calendar.box, requestCalendarText(ctx), { owner: ctx.session.userName, timeZone: ctx.session.timeZone });
  }),

  calendarImport: inSession(async (ctx) => {
    const calendar = mailboxCalendar(ctx.session, ctx.request);
    const text = await ctx.session.uploads.text(requiredAttr(ctx.request, 'uploadID'), ctx.server.calendars.limits.importBytes);
    await ctx.server.calendars.importText(calendar.box, text, { timeZone: ctx.session.timeZone });
  }),

  freeBusyRead: inSession(async (ctx) => {
    const session = ctx.session;
    const zone = ianaTimeZone(session.timeZone);
    const from = timeAttr(ctx.request, 'timeFrom', zone);
    const till = timeAttr(ctx.request, 'timeTill', zone);
    if (from === undefined || till === undefined) throw new ServiceError('the timeFrom and timeTill attributes are required');
    if (till <= from) throw new ServiceError('timeTill must be after timeFrom');
    if (till - from > MAX_DAYS * 86_400_000) throw new ServiceError(`the interval is too long (at most ${MAX_DAYS} days)`);
    const userName = ctx.request.attrs.userName;
    const periods = await ctx.server.calendars.freeBusyOf(session.account, userName || undefined, from, till, zone);
    const elements = periods.map((p) => el('freebusy', { FBTYPE: p.type }, `${formatLocal(new Date(p.start), session.timeZone)}/${formatLocal(new Date(p.end), session.timeZone)}`));
    ctx.send(
      el(
        'freeBusyData',
        { userName },
        el('vfreebusy', {}, el('dtstart', {}, formatLocal(new Date(from), session.timeZone)), el('dtend', {}, formatLocal(new Date(till), session.timeZone)), ...elements),
      ),
    );
  }),
};
