/**
 * Calendars over the mail service: a calendar is a Calendar-class mailbox, an item one of its
 * messages (item.ts), so that every protocol sees the others' changes through the mailbox
 * journal and the bus (XIMSS calendars and folders, CalDAV).
 *
 * Range queries go through the calendar index (src/store/calendar-index.ts): before a query the
 * messages not indexed yet are read and indexed (a row is derived from the message alone, so
 * any process may write it), then only the items whose span meets the range are read and
 * expanded. Parsed items are kept per node in a bounded cache by (mailbox, message UID): a
 * message never changes under its UID, so what was parsed stays true everywhere.
 */
import ICAL from 'ical.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { CalendarIndexRow, CalendarIndexStore } from '../../store/calendar-index.js';
import type { AccountRecord, MessageMeta, Settings } from '../../store/store.js';
import { ianaTimeZone } from '../../xml/time.js';
import type { AccountRightsService } from '../account-rights.js';
import { fullName, type AccountService } from '../accounts.js';
import { ServiceError } from '../errors.js';
import { Flag } from '../mail/flags.js';
import { prepareMessage } from '../mail/new-message.js';
import { ACCESS_DENIED, NOT_FOUND, type MailboxHandle, type MailService } from '../mail/service.js';
import { Slicer } from '../slices.js';
import { calendarOfItems, composeCalendarItem, itemAttachments, itemHeader, itemText } from './item.js';
import { attendeeProperty, attendeesOf, calAddress, cancelObject, imipMessage, itipSubject, organizerOf, replyObject, requestObject, summaryOf, type ItipMethod } from './itip.js';
import { alarmsBetween, CalendarItemError, itemSpan, occurrences, parseItem, type CalendarItem, type Occurrence } from './occurrences.js';
import { calendarItems, ensureUid, excludeOccurrence, itemIdentity, mergeInto, parseCalendar, sameAddress, splitImport } from './publish.js';
import { instantToWall, wallToInstant } from './zones.js';

/** Messages indexed per round trip to the store. */
const INDEX_BATCH = 200;
/** Characters of item text the parsed-item cache holds (an estimate of its memory). */
const ITEM_CACHE_CHARS = 32 * 1024 * 1024;

export interface CalendarServiceOptions {
  log: Logger;
  /** Host name for the items' Message-IDs. */
  hostname: string;
  limits?: CalendarLimits;
  /** Whose free/busy time may be read (freeBusyOf). */
  accounts: AccountService;
  rights: AccountRightsService;
  /** Sends a scheduling message (the outbound queue: local and remote recipients). */
  send?: (message: OutboundItip) => Promise<void>;
  metrics?: Pick<Metrics, 'calendarIndexed' | 'calendarItip'>;
}

/** An iMIP message for the outbound queue. */
export interface OutboundItip {
  sender: string;
  recipients: readonly string[];
  raw: Buffer;
  /** The submitter's domain (DKIM). */
  signAs: string;
}

export interface ReplyOptions {
  /** calendarAccept: the stored item's attachments (see PublishOptions.attachments). */
  attachments?: readonly Buffer[];
  /** The replying user's address and real name. */
  owner: string;
  ownerName?: string;
  timeZone: string;
  sendReply: boolean;
  comment?: string;
}

export interface PublishOptions {
  /** The owner's time zone (the item's Date field). */
  timeZone: string;
  /** The publishing user's address: requests go out when the user organizes a meeting. */
  owner: string;
  /** calendarPublish's sendRequests: 'no', 'new' or anything else for all. */
  sendRequests: string;
  copyExceptions: boolean;
  /** The text is the whole new item: no merge with the stored one (an occurrence cancelled). */
  replaceWhole?: boolean;
  /**
   * The item's attachments (whole MIME entities); [] for none (noMIME); undefined keeps those
   * of the item it replaces.
   */
  attachments?: readonly Buffer[];
}

export type BusyType = 'BUSY' | 'BUSY-TENTATIVE' | 'BUSY-UNAVAILABLE';

export interface BusyPeriod {
  type: BusyType;
  start: number;
  end: number;
}

export interface CalendarLimits {
  /** Most items one calendarImport may bring. */
  importItems: number;
  /** Most bytes of one imported file. */
  importBytes: number;
}

export const DEFAULT_CALENDAR_LIMITS: CalendarLimits = { importItems: 10000, importBytes: 20 * 1024 * 1024 };

/** One occurrence found, with the message it comes from. */
export interface FoundOccurrence {
  uid: number;
  item: CalendarItem;
  occurrence: Occurrence;
  /** With byAlarm: when the alarm goes off. */
  alarm?: number;
}

interface CachedItem {
  item: CalendarItem | null;
  chars: number;
}

export class CalendarService {
  private readonly log: Logger;
  private readonly hostname: string;
  readonly limits: CalendarLimits;
  private readonly accounts: AccountService;
  private readonly rights: AccountRightsService;
  private readonly send: ((message: OutboundItip) => Promise<void>) | undefined;
  private readonly metrics: Pick<Metrics, 'calendarIndexed' | 'calendarItip'> | undefined;
  /** Parsed items by `<mailbox id>:<message UID>`, least recently used first (null: the message holds no usable item). */
  private readonly items = new Map<string, CachedItem>();
  private itemChars = 0;

  constructor(
    private readonly mail: MailService,
    private readonly index: CalendarIndexStore,
    options: CalendarServiceOptions,
  ) {
    this.log = options.log;
    this.hostname = options.hostname;
    this.limits = options.limits ?? DEFAULT_CALENDAR_LIMITS;
    this.accounts = options.accounts;
    this.rights = options.rights;
    this.send = options.send;
    this.metrics = options.metrics;
  }

  /**
   * freeBusyRead: the busy periods of an account's main calendar (its CalendarBox preference;
   * none when it has no such mailbox). Free/busy time is shown to the accounts of the same
   * domain and to those holding the read right over the account — the periods only, never
   * what the events are.
   */
  async freeBusyOf(viewer: AccountRecord, userName: string | undefined, from: number, till: number, viewerZone: string): Promise<BusyPeriod[]> {
    const target = userName ? await this.accounts.find(userName, viewer.domain) : viewer;
    if (!target) throw new ServiceError('unknown user');
    if (target.id !== viewer.id && target.domain !== viewer.domain && !(await this.rights.has(viewer, target, 'r'))) throw new ServiceError(ACCESS_DENIED);
    const prefs = await this.accounts.effectivePrefs(target);
    let box: MailboxHandle | undefined;
    try {
      // Read as its owner: what leaves here is periods, whatever the calendar's own ACL says.
      box = await this.mail.access(target, mainCalendarName(prefs), 'r');
    } catch (err) {
      if (!(err instanceof ServiceError && err.message === NOT_FOUND)) throw err;
    }
    const periods = box ? await this.busyPeriods(box, from, till, viewerZone) : [];
    const workDays = typeof prefs.WorkDays === 'string' ? prefs.WorkDays : '';
    if (workDays === '') return periods;
    // Outside the target's working time (in its own zone): unavailable.
    const zone = ianaTimeZone(typeof prefs.TimeZone === 'string' ? prefs.TimeZone : undefined);
    const off = offHours(from, till, zone, workDays.split(','), String(prefs.WorkDayStart ?? '09:00'), String(prefs.WorkDayEnd ?? '17:00'));
    return mergePeriods([...periods, ...off.map((p) => ({ type: 'BUSY-UNAVAILABLE' as const, ...p }))]);
  }

  /** Indexes the messages of the mailbox that have no index row yet. */
  async refreshIndex(box: MailboxHandle): Promise<void> {
    const slicer = new Slicer();
    for (;;) {
      const uids = await this.index.unindexed(box.record.id, INDEX_BATCH);
      if (uids.length === 0) return;
      const rows: CalendarIndexRow[] = [];
      for (const uid of uids) {
        await slicer.next();
        rows.push(indexRow(uid, await this.item(box, uid)));
      }
      await this.index.record(box.record.id, rows);
      for (const row of rows) this.metrics?.calendarIndexed.inc({ kind: row.kind });
      if (uids.length < INDEX_BATCH) return;
    }
  }

  /**
   * The occurrences of the mailbox's events or tasks in [from, till) as `viewerZone` sees them
   * (floating times and all-day dates in that zone), sorted by start; with `byAlarm`, the
   * occurrences whose alarms go off in the range instead, sorted by alarm.
   */
  async find(box: MailboxHandle, kind: 'event' | 'todo', from: number, till: number, viewerZone: string, options: { byAlarm?: boolean } = {}): Promise<FoundOccurrence[]> {
    await this.mail.check(box, 'r');
    await this.refreshIndex(box);
    const rows = options.byAlarm
      ? await this.index.alarmsOverlapping(box.record.id, kind, from, till)
      : await this.index.overlapping(box.record.id, kind, from, till);
    const found: FoundOccurrence[] = [];
    const slicer = new Slicer();
    for (const row of rows) {
      await slicer.next();
      const item = await this.item(box, row.uid);
      if (!item) continue;
      const problem = expandInto(found, row.uid, item, from, till, viewerZone, options.byAlarm);
      if (problem) this.log.warn({ event: 'calendar.item_unreadable', mailbox: box.record.name, owner: box.owner.id, uid: row.uid, reason: problem }, 'calendar item not expanded');
    }
    return sortFound(found, options.byAlarm);
  }

  /**
   * The occurrences of items held in memory (a calendar opened from a URL) in [from, till), as
   * `find` gives them; the items are numbered 1… in their order.
   */
  findIn(items: readonly CalendarItem[], kind: 'event' | 'todo', from: number, till: number, viewerZone: string, options: { byAlarm?: boolean } = {}): FoundOccurrence[] {
    const found: FoundOccurrence[] = [];
    items.forEach((item, i) => {
      if (item.kind === kind) expandInto(found, i + 1, item, from, till, viewerZone, options.byAlarm);
    });
    return sortFound(found, options.byAlarm);
  }

  /**
   * One VCALENDAR with every item of these messages (in UID order) and the VTIMEZONEs they use,
   * each once: HTTP Export of a calendar, GET of a CalDAV collection.
   */
  async exportText(box: MailboxHandle, uids: readonly number[]): Promise<string> {
    const items: CalendarItem[] = [];
    const slicer = new Slicer();
    for (const uid of [...uids].sort((a, b) => a - b)) {
      await slicer.next();
      const item = await this.item(box, uid);
      if (item) items.push(item);
    }
    return calendarOfItems(items);
  }

  /** The iCalendar text of a message; undefined when there is no such message or it holds none. */
  async itemTextOf(box: MailboxHandle, uid: number): Promise<string | undefined> {
    await this.mail.check(box, 'r');
    const raw = await this.mail.readRaw(box, uid);
    return raw ? itemText(raw) : undefined;
  }

  /** The message of the stored item of an iCalendar UID (the newest, should there be several) and its text. */
  private async storedItem(box: MailboxHandle, itemUid: string): Promise<{ uid: number; text: string } | undefined> {
    await this.refreshIndex(box);
    const rows = await this.index.byItemUid(box.record.id, itemUid);
    const last = rows[rows.length - 1];
    const text = last ? await this.itemTextOf(box, last.uid) : undefined;
    return last && text !== undefined ? { uid: last.uid, text } : undefined;
  }

  /**
   * calendarPublish: stores an item (a UID made when it has none), replacing the items of the
   * same UID. An item holding only an overriding instance (RECURRENCE-ID) goes into the stored
   * item of its UID, replacing the instance of the same recurrence id; a new master takes the
   * stored item's overriding instances unless `copyExceptions` is false.
   */
  async publish(box: MailboxHandle, text: string, options: PublishOptions): Promise<MessageMeta> {
    const calendar = parseCalendar(text);
    const uid = ensureUid(calendar);
    await this.refreshIndex(box);
    const existing = (await this.index.byItemUid(box.record.id, uid)).map((r) => r.uid);
    const previousRaw = existing.length > 0 ? await this.mail.readRaw(box, existing[existing.length - 1]!) : undefined;
    const previous = previousRaw ? itemText(previousRaw) : undefined;
    const stored = previous !== undefined ? parseCalendar(previous) : undefined;
    // Who was invited before (read now: a merge changes `stored`).
    const before = stored ? attendeesOf(stored) : [];
    const merged = stored && !options.replaceWhole ? mergeInto(stored, calendar, options.copyExceptions) : calendar;
    // A stored item is not a scheduling message (RFC 4791 4.1: no METHOD in a calendar resource).
    merged.removeAllProperties('method');
    const finalText = merged.toString();
    let item: CalendarItem;
    try {
      item = parseItem(finalText);
    } catch (err) {
      if (err instanceof CalendarItemError) throw new ServiceError(`invalid iCalendar data: ${err.message}`);
      throw err;
    }
    // The organizer's requests: to the attendees (only the new ones with sendRequests="new"),
    // and a CANCEL to those the new version leaves out.
    const organizing = options.sendRequests !== 'no' && sameAddress(organizerOf(merged), options.owner);
    const now = organizing ? attendeesOf(merged) : [];
    const invited = options.sendRequests === 'new' ? now.filter((a) => !before.some((b) => sameAddress(a, b))) : now;
    const removed = organizing ? before.filter((b) => !now.some((a) => sameAddress(a, b))) : [];
    if ((invited.length > 0 || removed.length > 0) && !this.send) throw new ServiceError('not implemented: this server cannot send meeting requests');
    // Attachments: those given, none (noMIME), or by default the replaced item's.
    const attachments = options.attachments ?? (previousRaw ? itemAttachments(previousRaw) : []);
    const raw = composeCalendarItem(finalText, itemHeader(item.fields), { timeZone: options.timeZone, hostname: this.hostname }, attachments);
    const replaceUid = existing[existing.length - 1];
    const [message] = await this.mail.append(box, [prepareMessage(raw, { flags: Flag.Seen })], replaceUid !== undefined ? { replace: { uid: replaceUid, byOrigUid: false, mustExist: false, keepOrigUid: true } } : {});
    if (!message) throw new ServiceError('the calendar item was not stored');
    // Older copies of the same UID (made by other clients, or by a race between two nodes).
    const others = existing.slice(0, -1);
    if (others.length > 0) await this.mail.expunge(box, others);
    this.log.info({ event: 'calendar.published', mailbox: box.record.name, owner: box.owner.id, uid: message.uid, itemUid: uid, replaced: existing }, 'calendar item published');
    const summary = item.fields.summary ?? '';
    if (invited.length > 0) await this.sendItip(requestObject(merged), 'REQUEST', invited, summary, options);
    if (removed.length > 0) await this.sendItip(cancelObject(parseCalendar(previous!)), 'CANCEL', removed, summary, options);
    return message;
  }

  /** calendarCancel: removes every item of an iCalendar UID (given, or that of message `uid`). */
  async cancel(box: MailboxHandle, target: { uid?: number; itemUid?: string; sendRequests: boolean; owner: string; timeZone: string; comment?: string }): Promise<number> {
    let itemUid = target.itemUid;
    if (itemUid === undefined) {
      if (target.uid === undefined) throw new ServiceError('the UID or itemUID attribute is required');
      const item = await this.item(box, target.uid);
      if (!item) throw new ServiceError('calendar item not found');
      itemUid = item.uid;
    }
    await this.refreshIndex(box);
    const uids = (await this.index.byItemUid(box.record.id, itemUid)).map((r) => r.uid);
    if (uids.length === 0) throw new ServiceError('calendar item not found');
    const last = await this.itemTextOf(box, uids[uids.length - 1]!);
    const removed = await this.mail.expunge(box, uids);
    if (target.sendRequests && last !== undefined) {
      const calendar = parseCalendar(last);
      const attendees = sameAddress(organizerOf(calendar), target.owner) ? attendeesOf(calendar) : [];
      if (attendees.length > 0) {
        await this.sendItip(cancelObject(calendar), 'CANCEL', attendees, summaryOf(calendar), { owner: target.owner, timeZone: target.timeZone, ...(target.comment ? { comment: target.comment } : {}) });
      }
    }
    this.log.info({ event: 'calendar.cancelled', mailbox: box.record.name, owner: box.owner.id, itemUid, removed }, 'calendar item removed');
    return removed;
  }

  /**
   * calendarAccept: stores the item with the user's attendance (PARTSTAT) and replies to the
   * organizer — unless told not to, or the user's ATTENDEE line says RSVP=FALSE.
   */
  async accept(box: MailboxHandle, text: string, partstat: string, options: ReplyOptions): Promise<MessageMeta> {
    const calendar = parseCalendar(text);
    ensureUid(calendar);
    const organizer = organizerOf(calendar);
    let rsvp = true;
    let found = false;
    for (const c of calendarItems(calendar)) {
      const line = attendeeProperty(c, options.owner);
      if (!line) continue;
      found = true;
      line.setParameter('partstat', partstat);
      if (String(line.getParameter('rsvp') ?? '').toUpperCase() === 'FALSE') rsvp = false;
      line.removeParameter('rsvp');
    }
    const message = await this.publish(box, calendar.toString(), {
      owner: options.owner,
      timeZone: options.timeZone,
      sendRequests: 'no',
      copyExceptions: true,
      ...(options.attachments ? { attachments: options.attachments } : {}),
    });
    if (options.sendReply && rsvp && found && organizer && !sameAddress(organizer, options.owner)) {
      await this.reply(calendar, organizer, partstat, options);
    }
    return message;
  }

  /**
   * calendarDecline: a request is answered DECLINED (unless told not to, or RSVP=FALSE); a
   * cancellation is not answered. With a calendar, the item (or only the occurrence the object
   * names) is removed from it.
   */
  async decline(box: MailboxHandle | undefined, text: string, options: ReplyOptions): Promise<void> {
    const calendar = parseCalendar(text);
    const method = String(calendar.getFirstPropertyValue('method') ?? '').toUpperCase();
    const { uid, recurrenceId } = itemIdentity(text);
    if (method !== 'CANCEL' && options.sendReply) {
      const organizer = organizerOf(calendar);
      const line = calendarItems(calendar).map((c) => attendeeProperty(c, options.owner)).find((p) => p !== undefined);
      const rsvp = String(line?.getParameter('rsvp') ?? '').toUpperCase() !== 'FALSE';
      if (organizer && rsvp && !sameAddress(organizer, options.owner)) await this.reply(calendar, organizer, 'DECLINED', options);
    }
    if (!box) return;
    await this.refreshIndex(box);
    if ((await this.index.byItemUid(box.record.id, uid)).length === 0) return;
    if (recurrenceId !== undefined) {
      await this.cancelOccurrence(box, uid, recurrenceId, { owner: options.owner, timeZone: options.timeZone, sendRequests: 'no', copyExceptions: false });
    } else {
      await this.cancel(box, { itemUid: uid, sendRequests: false, owner: options.owner, timeZone: options.timeZone });
    }
  }

  /**
   * calendarUpdate: applies a REPLY to the stored item of its UID — each replying attendee's
   * line (PARTSTAT and the rest) replaces that attendee's line in the matching component (the
   * occurrence's override, else the master).
   */
  async applyReply(box: MailboxHandle, text: string, options: { owner: string; timeZone: string }): Promise<MessageMeta> {
    const reply = parseCalendar(text);
    const found = await this.storedItem(box, itemIdentity(text).uid);
    if (!found) throw new ServiceError('calendar item not found');
    const stored = parseCalendar(found.text);
    const storedItems = calendarItems(stored);
    let applied = 0;
    for (const c of calendarItems(reply)) {
      const rid = c.getFirstPropertyValue('recurrence-id');
      const target = (rid !== null && storedItems.find((s) => String(s.getFirstPropertyValue('recurrence-id')) === String(rid))) || storedItems.find((s) => !s.hasProperty('recurrence-id'));
      if (!target) continue;
      for (const line of c.getAllProperties('attendee')) {
        const address = calAddress(line.getFirstValue());
        if (!address) continue;
        const old = attendeeProperty(target, address);
        if (old) target.removeProperty(old);
        target.addProperty(new ICAL.Property(structuredClone(line.toJSON()) as unknown[]));
        applied++;
      }
    }
    if (applied === 0) throw new ServiceError('the reply names no attendee of the item');
    return this.publish(box, stored.toString(), { owner: options.owner, timeZone: options.timeZone, sendRequests: 'no', copyExceptions: false, replaceWhole: true });
  }

  /**
   * A message just delivered to `account`: when it is a meeting REPLY to one of the account's
   * meetings and its ApplyCalendarReplies preference is yes, the reply updates the item in the
   * account's main calendar (as calendarUpdate would). Never throws: a reply that cannot be
   * applied stays in the INBOX for the user, and the reason is logged.
   */
  async deliveredTo(account: AccountRecord, raw: Buffer): Promise<void> {
    try {
      const text = itemText(raw);
      if (text === undefined || !/^METHOD:REPLY\s*$/im.test(text)) return;
      const prefs = await this.accounts.effectivePrefs(account);
      if (prefs.ApplyCalendarReplies !== 'yes') return;
      const owner = fullName(account);
      if (!sameAddress(organizerOf(parseCalendar(text)), owner)) return;
      const box = await this.mail.access(account, mainCalendarName(prefs), 'w');
      await this.applyReply(box, text, { owner, timeZone: typeof prefs.TimeZone === 'string' ? prefs.TimeZone : 'HostOS' });
    } catch (err) {
      this.log.info({ event: 'calendar.reply_not_applied', account: fullName(account), reason: errorText(err) }, 'a meeting reply was left in the INBOX');
    }
  }

  /**
   * calendarForward (the Russian text): the item of message `uid` gets `recipients` as
   * attendees (NEEDS-ACTION, RSVP) and is stored again; they get it as a REQUEST.
   */
  async forward(box: MailboxHandle, uid: number, recipients: readonly string[], options: ReplyOptions): Promise<MessageMeta> {
    const text = await this.itemTextOf(box, uid);
    if (text === undefined) throw new ServiceError('calendar item not found');
    const calendar = parseCalendar(text);
    for (const c of calendarItems(calendar)) {
      for (const address of recipients) {
        if (attendeeProperty(c, address)) continue;
        const line = new ICAL.Property('attendee', c);
        line.setValue(`mailto:${address}`);
        line.setParameter('partstat', 'NEEDS-ACTION');
        line.setParameter('rsvp', 'TRUE');
        c.addProperty(line);
      }
    }
    const message = await this.publish(box, calendar.toString(), { owner: options.owner, timeZone: options.timeZone, sendRequests: 'no', copyExceptions: false, replaceWhole: true });
    await this.sendItip(requestObject(calendar), 'REQUEST', recipients, summaryOf(calendar), options);
    return message;
  }

  private async reply(calendar: ICAL.Component, organizer: string, partstat: string, options: ReplyOptions): Promise<void> {
    await this.sendItip(replyObject(calendar, options.owner, partstat, options.comment), 'REPLY', [organizer], summaryOf(calendar), options, partstat);
  }

  private async sendItip(
    object: ICAL.Component,
    method: ItipMethod,
    recipients: readonly string[],
    summary: string,
    options: { owner: string; ownerName?: string; timeZone: string; comment?: string },
    partstat?: string,
  ): Promise<void> {
    if (!this.send) throw new ServiceError('not implemented: this server cannot send meeting requests');
    const subject = itipSubject(method, summary, partstat);
    const text = [subject, options.comment ?? ''].filter((l) => l !== '').join('\n\n') + '\n';
    const raw = imipMessage(object, method, {
      from: options.owner,
      ...(options.ownerName ? { fromName: options.ownerName } : {}),
      to: recipients,
      subject,
      text,
      timeZone: options.timeZone,
      hostname: this.hostname,
    });
    const domain = options.owner.slice(options.owner.lastIndexOf('@') + 1);
    await this.send({ sender: options.owner, recipients, raw, signAs: domain });
    this.metrics?.calendarItip.inc({ method });
    this.log.info({ event: 'calendar.itip_sent', method, sender: options.owner, recipients, summary: summary.slice(0, 100) }, 'scheduling message sent');
  }

  /**
   * calendarCancel of one occurrence: its overriding instance (if any) goes, and the master
   * gets an EXDATE for it; the item is stored again in place of the old one.
   */
  async cancelOccurrence(box: MailboxHandle, itemUid: string, recurrenceId: string, options: PublishOptions): Promise<void> {
    const stored = await this.storedItem(box, itemUid);
    if (!stored) throw new ServiceError('calendar item not found');
    const calendar = parseCalendar(stored.text);
    if (!excludeOccurrence(calendar, recurrenceId)) throw new ServiceError(`the item has no occurrence ${recurrenceId}`);
    await this.publish(box, calendar.toString(), { ...options, copyExceptions: false, replaceWhole: true });
  }

  /**
   * Busy periods of the mailbox's events in [from, till): merged per busy status, FREE and
   * cancelled ones left out (freeBusyRead, CalDAV free-busy-query).
   */
  async busyPeriods(box: MailboxHandle, from: number, till: number, viewerZone: string): Promise<BusyPeriod[]> {
    const found = await this.find(box, 'event', from, till, viewerZone);
    const periods: BusyPeriod[] = [];
    for (const f of found) {
      const fields = f.occurrence.fields;
      if (fields.busyStatus === 'FREE' || fields.status === 'CANCELLED') continue;
      const type: BusyType = fields.busyStatus === 'TENTATIVE' ? 'BUSY-TENTATIVE' : fields.busyStatus === 'UNAVAILABLE' ? 'BUSY-UNAVAILABLE' : 'BUSY';
      const start = Math.max(from, f.occurrence.start);
      const end = Math.min(till, f.occurrence.end);
      if (end > start) periods.push({ type, start, end });
    }
    return mergePeriods(periods);
  }

  /**
   * calendarImport: every item of an .ics text (items are grouped by UID: a master with its
   * overriding instances; the VTIMEZONEs they use go with them), all or none — a malformed item
   * is a ServiceError naming it and nothing is stored. Items replace the stored ones of their UID.
   */
  async importText(box: MailboxHandle, text: string, options: { timeZone: string }): Promise<MessageMeta[]> {
    const items = splitImport(text, this.limits.importItems);
    const prepared = [];
    const slicer = new Slicer();
    for (const item of items) {
      await slicer.next();
      let parsed: CalendarItem;
      try {
        parsed = parseItem(item.text);
      } catch (err) {
        if (err instanceof CalendarItemError) throw new ServiceError(`invalid iCalendar data: item ${item.index} (UID ${JSON.stringify(item.uid.slice(0, 80))}): ${err.message} (nothing was imported)`);
        throw err;
      }
      const raw = composeCalendarItem(item.text, itemHeader(parsed.fields), { timeZone: options.timeZone, hostname: this.hostname });
      prepared.push(prepareMessage(raw, { flags: Flag.Seen }));
    }
    await this.refreshIndex(box);
    const replaced: number[] = [];
    for (const item of items) replaced.push(...(await this.index.byItemUid(box.record.id, item.uid)).map((r) => r.uid));
    const added = await this.mail.append(box, prepared);
    if (replaced.length > 0) await this.mail.expunge(box, replaced);
    this.log.info({ event: 'calendar.imported', mailbox: box.record.name, owner: box.owner.id, count: added.length, replaced: replaced.length }, 'calendar items imported');
    return added;
  }

  /** The parsed item of a message (cached); null when it holds no usable calendar item. */
  async item(box: MailboxHandle, uid: number): Promise<CalendarItem | null> {
    const key = `${box.record.id}:${uid}`;
    const cached = this.items.get(key);
    if (cached) {
      this.items.delete(key);
      this.items.set(key, cached);
      return cached.item;
    }
    const raw = await this.mail.readRaw(box, uid);
    if (!raw) return null;
    const text = itemText(raw);
    let item: CalendarItem | null = null;
    if (text !== undefined) {
      try {
        item = parseItem(text);
      } catch (err) {
        if (!(err instanceof CalendarItemError)) throw err;
        this.log.info({ event: 'calendar.item_invalid', mailbox: box.record.name, owner: box.owner.id, uid, reason: err.message }, 'not a usable calendar item');
      }
    }
    this.remember(key, { item, chars: text?.length ?? 0 });
    return item;
  }

  private remember(key: string, entry: CachedItem): void {
    this.items.set(key, entry);
    this.itemChars += entry.chars;
    for (const [oldest, old] of this.items) {
      if (this.itemChars <= ITEM_CACHE_CHARS) break;
      this.items.delete(oldest);
      this.itemChars -= old.chars;
    }
  }
}

/** The index row of a message and what it holds. */
export function indexRow(uid: number, item: CalendarItem | null): CalendarIndexRow {
  if (!item) return { uid, itemUid: '', kind: 'none', firstStart: null, lastEnd: null, alarmFirst: null, alarmLast: null };
  let span: ReturnType<typeof itemSpan> = null;
  try {
    span = itemSpan(item);
  } catch (err) {
    if (!(err instanceof CalendarItemError)) throw err;
  }
  // An undated item (a task without dates) has no occurrence in any range.
  if (!span) return { uid, itemUid: item.uid, kind: 'none', firstStart: null, lastEnd: null, alarmFirst: null, alarmLast: null };
  return {
    uid,
    itemUid: item.uid,
    kind: item.kind,
    firstStart: span.firstStart,
    lastEnd: span.lastEnd,
    alarmFirst: span.alarms?.first ?? null,
    alarmLast: span.alarms ? span.alarms.last : null,
  };
}

/** Periods of the same type that overlap or touch made one; sorted by start. */
function mergePeriods(periods: readonly BusyPeriod[]): BusyPeriod[] {
  const byType = new Map<BusyType, BusyPeriod[]>();
  for (const p of periods) {
    const list = byType.get(p.type);
    if (list) list.push(p);
    else byType.set(p.type, [p]);
  }
  const merged: BusyPeriod[] = [];
  for (const [type, list] of byType) {
    list.sort((a, b) => a.start - b.start);
    let current: BusyPeriod | undefined;
    for (const p of list) {
      if (current && p.start <= current.end) current.end = Math.max(current.end, p.end);
      else {
        if (current) merged.push(current);
        current = { type, start: p.start, end: p.end };
      }
    }
    if (current) merged.push(current);
  }
  return merged.sort((a, b) => a.start - b.start || a.type.localeCompare(b.type));
}

const WEEKDAYS = ['SU', 'MO', 'TU', 'WE', 'TH', 'FR', 'SA'];

/** The time in [from, till) outside working time: whole days off, and before/after the hours of working days. */
function offHours(from: number, till: number, zone: string, workDays: readonly string[], dayStart: string, dayEnd: string): { start: number; end: number }[] {
  const ref = { kind: 'iana' as const, name: zone, viewer: false };
  const minutes = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
  const [startMin, endMin] = [minutes(dayStart), minutes(dayEnd)];
  const out: { start: number; end: number }[] = [];
  let wall = instantToWall(from, zone);
  for (let day = 0; day < 400; day++) {
    const date = new Date(Date.UTC(wall.year, wall.month - 1, wall.day + day));
    const at = (m: number): number =>
      wallToInstant({ year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate(), hour: Math.floor(m / 60), minute: m % 60, second: 0 }, ref);
    const dayFrom = at(0);
    if (dayFrom >= till) break;
    const dayTill = at(24 * 60);
    const working = workDays.includes(WEEKDAYS[date.getUTCDay()]!) && endMin > startMin;
    const gaps = working ? [[dayFrom, at(startMin)], [at(endMin), dayTill]] : [[dayFrom, dayTill]];
    for (const [a, b] of gaps) {
      const start = Math.max(a!, from);
      const end = Math.min(b!, till);
      if (end > start) out.push({ start, end });
    }
  }
  return out;
}

/** The calendar an account's preferences name as its main one (CalendarBox). */
function mainCalendarName(prefs: Settings): string {
  return typeof prefs.CalendarBox === 'string' && prefs.CalendarBox !== '' ? prefs.CalendarBox : 'Calendar';
}

/** Adds an item's occurrences in [from, till) (or, byAlarm, those alarmed then) to `found`; the reason when it cannot be expanded. */
function expandInto(found: FoundOccurrence[], uid: number, item: CalendarItem, from: number, till: number, viewerZone: string, byAlarm = false): string | undefined {
  try {
    if (byAlarm) for (const hit of alarmsBetween(item, from, till, viewerZone)) found.push({ uid, item, occurrence: hit.occurrence, alarm: hit.alarm });
    else for (const occurrence of occurrences(item, from, till, viewerZone)) found.push({ uid, item, occurrence });
    return undefined;
  } catch (err) {
    if (!(err instanceof CalendarItemError)) throw err;
    return err.message;
  }
}

/** By start (byAlarm: by alarm, then start), then message UID. */
function sortFound(found: FoundOccurrence[], byAlarm = false): FoundOccurrence[] {
  if (byAlarm) return found.sort((a, b) => a.alarm! - b.alarm! || a.occurrence.start - b.occurrence.start || a.uid - b.uid);
  return found.sort((a, b) => a.occurrence.start - b.occurrence.start || a.uid - b.uid);
}
