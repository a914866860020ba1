/**
 * Store contract cases of the calendar index (src/store/*\/calendar-index.ts): rows written once
 * per message and kept, range and alarm queries with open ends, rows going with their messages
 * and mailboxes, on both engines.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { CalendarIndexRow } from '../../src/store/calendar-index.js';
import { it, message, useStore, type FreshStore } from './contract.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

function row(uid: number, itemUid: string, fields: Partial<CalendarIndexRow> = {}): CalendarIndexRow {
  return { uid, itemUid, kind: 'event', firstStart: T0, lastEnd: T0 + DAY, alarmFirst: null, alarmLast: null, ...fields };
}

export function calendarIndexContract(fresh: FreshStore): void {
  describe('calendar index', () => {
    const c = useStore(fresh);

    async function calendar(count: number): Promise<{ id: number; uids: number[] }> {
      const a = await c.account();
      const box = await c.store.mail.createMailbox(a.id, 'Calendar', 'IPF.Appointment', false);
      const appended = await c.store.mail.append(box.id, Array.from({ length: count }, (_, i) => message(i)));
      return { id: box.id, uids: appended.messages.map((m) => m.uid) };
    }

    it('lists the messages without a row; a row is written once and never changed', async () => {
      const box = await calendar(3);
      assert.deepEqual(await c.store.calendarIndex.unindexed(box.id, 10), box.uids);
      assert.deepEqual(await c.store.calendarIndex.unindexed(box.id, 2), box.uids.slice(0, 2));
      await c.store.calendarIndex.record(box.id, [row(box.uids[0]!, 'a'), row(box.uids[1]!, '', { kind: 'none', firstStart: null, lastEnd: null })]);
      assert.deepEqual(await c.store.calendarIndex.unindexed(box.id, 10), [box.uids[2]]);
      // A second writer of the same message (another process) changes nothing.
      await c.store.calendarIndex.record(box.id, [row(box.uids[0]!, 'other', { firstStart: 5 })]);
      assert.deepEqual(await c.store.calendarIndex.byItemUid(box.id, 'a'), [row(box.uids[0]!, 'a')]);
      assert.deepEqual(await c.store.calendarIndex.byItemUid(box.id, 'other'), []);
      // A row for a message that does not exist is not written.
      await c.store.calendarIndex.record(box.id, [row(9999, 'ghost')]);
      assert.deepEqual(await c.store.calendarIndex.byItemUid(box.id, 'ghost'), []);
    });

    it('finds rows overlapping a range, with open starts and ends, by kind', async () => {
      const box = await calendar(6);
      const [u1, u2, u3, u4, u5, u6] = box.uids as [number, number, number, number, number, number];
      await c.store.calendarIndex.record(box.id, [
        row(u1, 'day1', { firstStart: T0, lastEnd: T0 + DAY }),
        row(u2, 'day3', { firstStart: T0 + 2 * DAY, lastEnd: T0 + 3 * DAY }),
        row(u3, 'weekly', { firstStart: T0 - 30 * DAY, lastEnd: null }),
        row(u4, 'task', { kind: 'todo', firstStart: null, lastEnd: null }),
        row(u5, 'task2', { kind: 'todo', firstStart: T0 + 10 * DAY, lastEnd: T0 + 11 * DAY }),
        row(u6, '', { kind: 'none', firstStart: null, lastEnd: null }),
      ]);
      const events = async (from: number, till: number): Promise<string[]> =>
        (await c.store.calendarIndex.overlapping(box.id, 'event', from, till)).map((r) => r.itemUid).sort();
      assert.deepEqual(await events(T0, T0 + DAY), ['day1', 'weekly']);
      // The end is exclusive on both sides: an item ending exactly at `from` is out.
      assert.deepEqual(await events(T0 + DAY, T0 + 2 * DAY), ['weekly']);
      assert.deepEqual(await events(T0 - 60 * DAY, T0 - 40 * DAY), []);
      assert.deepEqual(await events(T0 + 100 * DAY, T0 + 101 * DAY), ['weekly']);
      const tasks = (await c.store.calendarIndex.overlapping(box.id, 'todo', T0, T0 + DAY)).map((r) => r.itemUid);
      assert.deepEqual(tasks, ['task']);
    });

    it('finds rows by their alarm span', async () => {
      const box = await calendar(3);
      const [u1, u2, u3] = box.uids as [number, number, number];
      await c.store.calendarIndex.record(box.id, [
        row(u1, 'once', { alarmFirst: T0 - 900_000, alarmLast: T0 - 900_000 }),
        row(u2, 'always', { firstStart: T0 - 30 * DAY, lastEnd: null, alarmFirst: T0 - 30 * DAY, alarmLast: null }),
        row(u3, 'silent'),
      ]);
      const alarms = async (from: number, till: number): Promise<string[]> =>
        (await c.store.calendarIndex.alarmsOverlapping(box.id, 'event', from, till)).map((r) => r.itemUid).sort();
      assert.deepEqual(await alarms(T0 - DAY, T0), ['always', 'once']);
      assert.deepEqual(await alarms(T0, T0 + DAY), ['always']);
    });

    it('rows go with their messages and their mailbox', async () => {
      const box = await calendar(2);
      await c.store.calendarIndex.record(box.id, [row(box.uids[0]!, 'x'), row(box.uids[1]!, 'x')]);
      await c.store.mail.expunge(box.id, [box.uids[0]!]);
      assert.deepEqual((await c.store.calendarIndex.byItemUid(box.id, 'x')).map((r) => r.uid), [box.uids[1]]);
      await c.store.mail.removeMailboxes([box.id]);
      assert.deepEqual(await c.store.calendarIndex.byItemUid(box.id, 'x'), []);
    });
  });
}
