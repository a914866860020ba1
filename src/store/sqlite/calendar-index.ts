import type { Database as SqliteDatabase } from 'better-sqlite3';
import { CALENDAR_INDEX_COLUMNS, toCalendarIndexRow, type CalendarIndexDbRow, type CalendarIndexRow, type CalendarIndexStore } from '../calendar-index.js';
import { prepareAll } from './util.js';

/** The calendar index in SQLite (see src/store/calendar-index.ts). */
export class SqliteCalendarIndex implements CalendarIndexStore {
  private readonly sql: ReturnType<typeof prepareStatements>;
  private readonly recordAll: (mailboxId: number, rows: readonly CalendarIndexRow[]) => void;

  constructor(db: SqliteDatabase) {
    this.sql = prepareStatements(db);
    this.recordAll = db.transaction((mailboxId: number, rows: readonly CalendarIndexRow[]) => {
      for (const r of rows) {
        this.sql.record.run({
          mailbox: mailboxId,
          uid: r.uid,
          itemUid: r.itemUid,
          kind: r.kind,
          firstStart: r.firstStart,
          lastEnd: r.lastEnd,
          alarmFirst: r.alarmFirst,
          alarmLast: r.alarmLast,
        });
      }
    });
  }

  async unindexed(mailboxId: number, limit: number): Promise<number[]> {
    return (this.sql.unindexed.raw(true).all(mailboxId, limit) as [number][]).map(([uid]) => uid);
  }

  async record(mailboxId: number, rows: readonly CalendarIndexRow[]): Promise<void> {
    if (rows.length > 0) this.recordAll(mailboxId, rows);
  }

  async overlapping(mailboxId: number, kind: 'event' | 'todo', from: number, till: number): Promise<CalendarIndexRow[]> {
    return (this.sql.overlapping.all(mailboxId, kind, till, from) as CalendarIndexDbRow[]).map(toCalendarIndexRow);
  }

  async alarmsOverlapping(mailboxId: number, kind: 'event' | 'todo', from: number, till: number): Promise<CalendarIndexRow[]> {
    return (this.sql.alarms.all(mailboxId, kind, till, from) as CalendarIndexDbRow[]).map(toCalendarIndexRow);
  }

  async byItemUid(mailboxId: number, itemUid: string): Promise<CalendarIndexRow[]> {
    return (this.sql.byItemUid.all(mailboxId, itemUid) as CalendarIndexDbRow[]).map(toCalendarIndexRow);
  }
}

function prepareStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    unindexed: `SELECT m.uid FROM messages m WHERE m.mailbox_id = ?
                AND NOT EXISTS (SELECT 1 FROM calendar_index c WHERE c.mailbox_id = m.mailbox_id AND c.uid = m.uid)
                ORDER BY m.uid LIMIT ?`,
    record: `INSERT INTO calendar_index (mailbox_id, uid, item_uid, kind, first_start, last_end, alarm_first, alarm_last)
             SELECT @mailbox, @uid, @itemUid, @kind, @firstStart, @lastEnd, @alarmFirst, @alarmLast
             WHERE EXISTS (SELECT 1 FROM messages WHERE mailbox_id = @mailbox AND uid = @uid)
             ON CONFLICT (mailbox_id, uid) DO NOTHING`,
    overlapping: `SELECT ${CALENDAR_INDEX_COLUMNS} FROM calendar_index WHERE mailbox_id = ? AND kind = ?
                  AND (first_start IS NULL OR first_start < ?) AND (last_end IS NULL OR last_end > ?) ORDER BY uid`,
    alarms: `SELECT ${CALENDAR_INDEX_COLUMNS} FROM calendar_index WHERE mailbox_id = ? AND kind = ?
             AND alarm_first IS NOT NULL AND alarm_first < ? AND (alarm_last IS NULL OR alarm_last >= ?) ORDER BY uid`,
    byItemUid: `SELECT ${CALENDAR_INDEX_COLUMNS} FROM calendar_index WHERE mailbox_id = ? AND item_uid = ? ORDER BY uid`,
  });
}
