import { CALENDAR_INDEX_COLUMNS, toCalendarIndexRow, type CalendarIndexDbRow, type CalendarIndexRow, type CalendarIndexStore } from '../calendar-index.js';
import type { Db, Sql } from './db.js';

const SQL = {
  unindexed: {
    name: 'calendarIndex.unindexed',
    text: `SELECT m.uid FROM messages m WHERE m.mailbox_id = $1
           AND NOT EXISTS (SELECT 1 FROM calendar_index c WHERE c.mailbox_id = m.mailbox_id AND c.uid = m.uid)
           ORDER BY m.uid LIMIT $2`,
  },
  // One statement for a batch: the rows as parallel arrays.
  record: {
    name: 'calendarIndex.record',
    text: `INSERT INTO calendar_index (mailbox_id, uid, item_uid, kind, first_start, last_end, alarm_first, alarm_last)
           SELECT $1, r.uid, r.item_uid, r.kind, r.first_start, r.last_end, r.alarm_first, r.alarm_last
           FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                AS r(uid, item_uid, kind, first_start, last_end, alarm_first, alarm_last)
           WHERE EXISTS (SELECT 1 FROM messages m WHERE m.mailbox_id = $1 AND m.uid = r.uid)
           ON CONFLICT (mailbox_id, uid) DO NOTHING`,
  },
  overlapping: {
    name: 'calendarIndex.overlapping',
    text: `SELECT ${CALENDAR_INDEX_COLUMNS} FROM calendar_index WHERE mailbox_id = $1 AND kind = $2
           AND (first_start IS NULL OR first_start < $3) AND (last_end IS NULL OR last_end > $4) ORDER BY uid`,
  },
  alarms: {
    name: 'calendarIndex.alarms',
    text: `SELECT ${CALENDAR_INDEX_COLUMNS} FROM calendar_index WHERE mailbox_id = $1 AND kind = $2
           AND alarm_first IS NOT NULL AND alarm_first < $3 AND (alarm_last IS NULL OR alarm_last >= $4) ORDER BY uid`,
  },
  byItemUid: {
    name: 'calendarIndex.byItemUid',
    text: `SELECT ${CALENDAR_INDEX_COLUMNS} FROM calendar_index WHERE mailbox_id = $1 AND item_uid = $2 ORDER BY uid`,
  },
} satisfies Record<string, Sql>;

/** The calendar index in PostgreSQL (see src/store/calendar-index.ts). */
export class PgCalendarIndex implements CalendarIndexStore {
  constructor(private readonly db: Db) {}

  async unindexed(mailboxId: number, limit: number): Promise<number[]> {
    return (await this.db.rows<{ uid: string | number }>(SQL.unindexed, [mailboxId, limit])).map((r) => Number(r.uid));
  }

  async record(mailboxId: number, rows: readonly CalendarIndexRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db.run(SQL.record, [
      mailboxId,
      rows.map((r) => r.uid),
      rows.map((r) => r.itemUid),
      rows.map((r) => r.kind),
      rows.map((r) => r.firstStart),
      rows.map((r) => r.lastEnd),
      rows.map((r) => r.alarmFirst),
      rows.map((r) => r.alarmLast),
    ]);
  }

  async overlapping(mailboxId: number, kind: 'event' | 'todo', from: number, till: number): Promise<CalendarIndexRow[]> {
    return (await this.db.rows<CalendarIndexDbRow>(SQL.overlapping, [mailboxId, kind, till, from])).map(toCalendarIndexRow);
  }

  async alarmsOverlapping(mailboxId: number, kind: 'event' | 'todo', from: number, till: number): Promise<CalendarIndexRow[]> {
    return (await this.db.rows<CalendarIndexDbRow>(SQL.alarms, [mailboxId, kind, till, from])).map(toCalendarIndexRow);
  }

  async byItemUid(mailboxId: number, itemUid: string): Promise<CalendarIndexRow[]> {
    return (await this.db.rows<CalendarIndexDbRow>(SQL.byItemUid, [mailboxId, itemUid])).map(toCalendarIndexRow);
  }
}
