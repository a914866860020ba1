/**
 * The calendar index (src/services/calendar/): one row per message of a Calendar-class mailbox,
 * saying what iCalendar item it holds and when, so that a range query (findEvents, CalDAV
 * calendar-query, free/busy) parses only the items that can fall into the range.
 *
 * A row is derived from the message's content alone, and a message never changes under its UID:
 * a row is written once (by whichever process first reads the message), never updated, and goes
 * with its message (a foreign key, ON DELETE CASCADE). Two processes indexing the same message at
 * once write the same row; the second insert does nothing.
 *
 * Times are instants in milliseconds. A null start is "since ever" (a task without dates), a null
 * end "for ever" (a rule without an end); the span is wide enough for any viewer's zone (floating
 * and all-day items are widened by the service).
 */
export type CalendarItemKind = 'event' | 'todo' | 'none';

export interface CalendarIndexRow {
  /** The message UID. */
  uid: number;
  /** The iCalendar UID ('' when the item has none). */
  itemUid: string;
  /** 'none': the message holds no calendar item (indexed so that it is not parsed again). */
  kind: CalendarItemKind;
  firstStart: number | null;
  lastEnd: number | null;
  /** The first and the last alarm instant; both null when the item has no alarm, alarmLast null alone when they never end. */
  alarmFirst: number | null;
  alarmLast: number | null;
}

export interface CalendarIndexStore {
  /** UIDs of the mailbox's messages that have no row yet, lowest first, at most `limit`. */
  unindexed(mailboxId: number, limit: number): Promise<number[]>;
  /** Writes rows; a row already there, or one whose message is gone, is left alone. */
  record(mailboxId: number, rows: readonly CalendarIndexRow[]): Promise<void>;
  /** Rows of this kind whose span overlaps [from, till). */
  overlapping(mailboxId: number, kind: 'event' | 'todo', from: number, till: number): Promise<CalendarIndexRow[]>;
  /** Rows of this kind with an alarm span overlapping [from, till). */
  alarmsOverlapping(mailboxId: number, kind: 'event' | 'todo', from: number, till: number): Promise<CalendarIndexRow[]>;
  /** Rows of the item with this iCalendar UID (its master and its exceptions' messages). */
  byItemUid(mailboxId: number, itemUid: string): Promise<CalendarIndexRow[]>;
}

/** A row as both engines select it. */
export interface CalendarIndexDbRow {
  uid: number | string;
  item_uid: string;
  kind: string;
  first_start: number | string | null;
  last_end: number | string | null;
  alarm_first: number | string | null;
  alarm_last: number | string | null;
}

export const CALENDAR_INDEX_COLUMNS = 'uid, item_uid, kind, first_start, last_end, alarm_first, alarm_last';

function instant(v: number | string | null): number | null {
  return v === null ? null : Number(v);
}

export function toCalendarIndexRow(r: CalendarIndexDbRow): CalendarIndexRow {
  return {
    uid: Number(r.uid),
    itemUid: r.item_uid,
    kind: r.kind === 'event' || r.kind === 'todo' ? r.kind : 'none',
    firstStart: instant(r.first_start),
    lastEnd: instant(r.last_end),
    alarmFirst: instant(r.alarm_first),
    alarmLast: instant(r.alarm_last),
  };
}
