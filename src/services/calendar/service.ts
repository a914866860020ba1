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
import type { Logger } from '../../log.js';
import type { CalendarIndexRow, CalendarIndexStore } from '../../store/calendar-index.js';
import type { MailboxHandle, MailService } from '../mail/service.js';
import { Slicer } from '../slices.js';
import type { MessageMeta } from '../../store/store.js';
import { ServiceError } from '../errors.js';
import { Flag } from '../mail/flags.js';
import { prepareMessage } from '../mail/new-message.js';
import { composeCalendarItem, itemText } from './item.js';
import { ensureUid, mergeInto, parseCalendar, sameAddress } from './publish.js';
import { alarmsBetween, CalendarItemError, itemSpan, occurrences, parseItem, type CalendarItem, type Occurrence } from './occurrences.js';
import { wallAsUtc } from './zones.js';

/** Messages indexed per round trip to the store. */
const INDEX_BATCH = 200;
/** Characters of item text the parsed-item cache holds (an estimate of its memory). */
const ITEM_CACHE_CHARS = 32 * 1024 * 1024;

export interface CalendarServiceOptions {
  log: Logger;
  /** Host name for the items' Message-IDs. */
  hostname: string;
}

export interface PublishOptions {
  /** The owner's time zone (the item's Date field). */
  timeZone: string;
  /** The publishing user's address: requests go out when the user organizes a meeting. */
  owner: string;
  /** calendarPublish's sendRequests: 'no', 'new' or anything else for all. */
  sendRequests: string;
  copyExceptions: boolean;
}

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
      try {
        if (options.byAlarm) {
          for (const hit of alarmsBetween(item, from, till, viewerZone)) found.push({ uid: row.uid, item, occurrence: hit.occurrence, alarm: hit.alarm });
        } else {
          for (const occurrence of occurrences(item, from, till, viewerZone)) found.push({ uid: row.uid, item, occurrence });
        }
      } catch (err) {
        if (!(err instanceof CalendarItemError)) throw err;
        this.log.warn({ event: 'calendar.item_unreadable', mailbox: box.record.name, owner: box.owner.id, uid: row.uid, reason: err.message }, 'calendar item not expanded');
      }
    }
    if (options.byAlarm) found.sort((a, b) => a.alarm! - b.alarm! || a.occurrence.start - b.occurrence.start || a.uid - b.uid);
    else found.sort((a, b) => a.occurrence.start - b.occurrence.start || a.uid - b.uid);
    return found;
  }

  /** The iCalendar text of a message; undefined when there is no such message or it holds none. */
  async itemTextOf(box: MailboxHandle, uid: number): Promise<string | undefined> {
    await this.mail.check(box, 'r');
    const raw = await this.mail.readRaw(box, uid);
    return raw ? itemText(raw) : undefined;
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
    const previous = existing.length > 0 ? await this.itemTextOf(box, existing[existing.length - 1]!) : undefined;
    const merged = previous !== undefined ? mergeInto(parseCalendar(previous), calendar, options.copyExceptions) : calendar;
    const finalText = merged.toString();
    let item: CalendarItem;
    try {
      item = parseItem(finalText);
    } catch (err) {
      if (err instanceof CalendarItemError) throw new ServiceError(`invalid iCalendar data: ${err.message}`);
      throw err;
    }
    if (options.sendRequests !== 'no' && item.fields.attendees > 0 && sameAddress(item.fields.organizer, options.owner)) {
      throw new ServiceError('not implemented yet: sending meeting requests (iTIP); publish with sendRequests="no"');
    }
    const raw = composeCalendarItem(
      finalText,
      { summary: item.fields.summary ?? '', ...(item.fields.organizer ? { organizer: item.fields.organizer } : {}) },
      { timeZone: options.timeZone, hostname: this.hostname },
    );
    const replaceUid = existing[existing.length - 1];
    const [message] = await this.mail.append(box, [prepareMessage(raw, { flags: Flag.Seen })], replaceUid !== undefined ? { replace: { uid: replaceUid, byOrigUid: false, mustExist: false, keepOrigUid: true } } : {});
    if (!message) throw new ServiceError('the calendar item was not stored');
    // Older copies of the same UID (made by other clients, or by a race between two nodes).
    const others = existing.slice(0, -1);
    if (others.length > 0) await this.mail.expunge(box, others);
    this.log.info({ event: 'calendar.published', mailbox: box.record.name, owner: box.owner.id, uid: message.uid, itemUid: uid, replaced: existing }, 'calendar item published');
    return message;
  }

  /** calendarCancel: removes every item of an iCalendar UID (given, or that of message `uid`). */
  async cancel(box: MailboxHandle, target: { uid?: number; itemUid?: string; sendRequests: boolean; owner: string }): Promise<number> {
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
    if (target.sendRequests) {
      for (const uid of uids) {
        const item = await this.item(box, uid);
        if (item && item.fields.attendees > 0 && sameAddress(item.fields.organizer, target.owner)) {
          throw new ServiceError('not implemented yet: sending cancel requests (iTIP); cancel with sendRequests="no"');
        }
      }
    }
    const removed = await this.mail.expunge(box, uids);
    this.log.info({ event: 'calendar.cancelled', mailbox: box.record.name, owner: box.owner.id, itemUid, removed }, 'calendar item removed');
    return removed;
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
  const alarms = alarmSpan(item, span.firstStart, span.lastEnd);
  return { uid, itemUid: item.uid, kind: item.kind, firstStart: span.firstStart, lastEnd: span.lastEnd, ...alarms };
}

const HOUR = 3_600_000;

/** Slack for alarms of overriding instances, whose offsets the item's fields do not list. */
const OVERRIDE_ALARM_SLACK = 31 * 24 * HOUR;

/**
 * A span holding every alarm of the item's occurrences, from the occurrences' span and the
 * alarms' offsets (wider than needed is fine: the query expands the candidates exactly).
 */
function alarmSpan(item: CalendarItem, firstStart: number, lastEnd: number | null): { alarmFirst: number | null; alarmLast: number | null } {
  const overridesHaveAlarms = [...item.overrides.values()].some((o) => o.getFirstSubcomponent('valarm') !== null);
  if (item.fields.alarms.length === 0 && !overridesHaveAlarms) return { alarmFirst: null, alarmLast: null };
  let before = overridesHaveAlarms ? OVERRIDE_ALARM_SLACK : 0;
  let after = before;
  let first = firstStart;
  let last = lastEnd;
  for (const alarm of item.fields.alarms) {
    if (alarm.trigger.kind === 'relative') {
      before = Math.max(before, -alarm.trigger.seconds * 1000);
      after = Math.max(after, (alarm.trigger.seconds + alarm.repeat * alarm.repeatIntervalSeconds) * 1000);
    } else {
      // Absolute triggers are UTC times by RFC 5545; a day on each side covers any other reading.
      const at = wallAsUtc(alarm.trigger.time.wall);
      first = Math.min(first, at - 24 * HOUR);
      if (last !== null) last = Math.max(last, at + 24 * HOUR);
    }
  }
  return { alarmFirst: first - before, alarmLast: last === null ? null : last + after };
}
