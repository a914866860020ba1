/**
 * Occurrences of calendar items (src/services/calendar/occurrences.ts, zones.ts):
 * recurrence across DST changes, COUNT/UNTIL, EXDATE, RDATE, overrides, all-day and
 * floating items seen from several zones, tasks, alarms, VTIMEZONE and Windows zones, DST
 * gaps, the span an index keeps, and malformed or runaway items.
 *
 * Every expected instant is worked out by hand in the comment next to it (offsets: US
 * Pacific PST −8 / PDT −7, Eastern EST −5 / EDT −4, Berlin CET +1 / CEST +2).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import ICAL from 'ical.js';
import {
  alarmsBetween,
  CalendarItemError,
  expand,
  itemSpan,
  MAX_RULE_STEPS,
  occurrences,
  parseItem,
  type CalendarItem,
  type Occurrence,
} from '../src/services/calendar/occurrences.js';
import { instantToWall, resolveZone, wallToInstant, windowsZoneToIana } from '../src/services/calendar/zones.js';

/** A VCALENDAR of the given content lines (CRLF). */
function cal(...lines: string[]): string {
  return ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//ximssd//tests//EN', ...lines, 'END:VCALENDAR', ''].join('\r\n');
}

/** A VEVENT of the given content lines. */
function event(...lines: string[]): string[] {
  return ['BEGIN:VEVENT', 'DTSTAMP:20240101T000000Z', ...lines, 'END:VEVENT'];
}

const utc = (text: string): number => {
  const ms = Date.parse(text);
  assert.ok(!Number.isNaN(ms), text);
  return ms;
};
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const starts = (list: Occurrence[]): string[] => list.map((o) => iso(o.start));
const spans = (list: Occurrence[]): string[] => list.map((o) => `${iso(o.start)}/${iso(o.end)}`);
const ids = (list: Occurrence[]): string[] => list.map((o) => o.recurrenceId);
const between = (item: CalendarItem, from: string, till: string, zone = 'UTC'): Occurrence[] => occurrences(item, utc(from), utc(till), zone);

/** Example 027's item (calendarPublish), in text form. */
const EXAMPLE_027 = cal(
  ...event(
    'ORGANIZER;CN=Big Boss:MAILTO:boss@company.dom',
    'ATTENDEE;CN=Small Boy:MAILTO:boy@company.dom',
    'RRULE:FREQ=WEEKLY;BYDAY=MO,TH',
    'UID:18927897984@kjjkjkjk-123444',
    'SEQUENCE:0',
    'SUMMARY:Report Meeting',
    'DTSTART;TZID=NorthAmerica/Pacific:20060515T100000',
    'DTEND;TZID=NorthAmerica/Pacific:20060515T110000',
    'X-MICROSOFT-CDO-BUSYSTATUS:BUSY',
    'PRIORITY:5',
    'DESCRIPTION:A twice-a-week meeting to discuss the progress of the assigned projects.',
  ),
);

describe('weekly meeting across DST changes', () => {
  const item = parseItem(EXAMPLE_027);

  test('the listing fields of example 027', () => {
    assert.equal(item.kind, 'event');
    assert.equal(item.uid, '18927897984@kjjkjkjk-123444');
    assert.equal(item.fields.summary, 'Report Meeting');
    assert.equal(item.fields.organizer, 'boss@company.dom');
    assert.equal(item.fields.attendees, 1);
    assert.equal(item.fields.priority, 5);
    assert.equal(item.fields.busyStatus, 'BUSY');
    assert.equal(item.fields.allDay, false);
    assert.equal(item.fields.durationSeconds, 3600);
    assert.equal(item.fields.recurring, true);
    assert.deepEqual(item.start, { wall: { year: 2006, month: 5, day: 15, hour: 10, minute: 0, second: 0 }, isDate: false, utc: false, tzid: 'NorthAmerica/Pacific' });
  });

  test('NorthAmerica/Pacific, autumn 2006: 10:00 PDT is 17:00Z, 10:00 PST 18:00Z', () => {
    // In 2006 the US still changed on the last Sunday of October (Oct 29); the March /
    // November rules began in 2007 (below). Mon Oct 23, Thu Oct 26 are PDT (−7);
    // Mon Oct 30, Thu Nov 2, Mon Nov 6 are PST (−8).
    const list = between(item, '2006-10-23T00:00:00Z', '2006-11-07T00:00:00Z');
    assert.deepEqual(spans(list), [
      '2006-10-23T17:00:00Z/2006-10-23T18:00:00Z',
      '2006-10-26T17:00:00Z/2006-10-26T18:00:00Z',
      '2006-10-30T18:00:00Z/2006-10-30T19:00:00Z',
      '2006-11-02T18:00:00Z/2006-11-02T19:00:00Z',
      '2006-11-06T18:00:00Z/2006-11-06T19:00:00Z',
    ]);
    assert.deepEqual(ids(list), ['20061023T100000', '20061026T100000', '20061030T100000', '20061102T100000', '20061106T100000']);
    assert.ok(list.every((o) => !o.fromOverride && !o.allDay && o.fields.summary === 'Report Meeting'));
  });

  test('NorthAmerica/Pacific, spring and autumn 2007: 18:00Z → 17:00Z on Mar 11, back on Nov 4', () => {
    // DST began Sunday March 11, 2007: Mon Mar 5 and Thu Mar 8 are PST (18:00Z), Mon Mar 12 PDT (17:00Z).
    assert.deepEqual(starts(between(item, '2007-03-05T00:00:00Z', '2007-03-13T00:00:00Z')), [
      '2007-03-05T18:00:00Z',
      '2007-03-08T18:00:00Z',
      '2007-03-12T17:00:00Z',
    ]);
    // DST ended Sunday November 4, 2007: Thu Nov 1 is PDT (17:00Z), Mon Nov 5 PST (18:00Z).
    assert.deepEqual(starts(between(item, '2007-11-01T00:00:00Z', '2007-11-06T00:00:00Z')), ['2007-11-01T17:00:00Z', '2007-11-05T18:00:00Z']);
  });

  test('the first occurrence is DTSTART: Monday May 15, 2006, 10:00 PDT = 17:00Z', () => {
    assert.deepEqual(starts(between(item, '2006-01-01T00:00:00Z', '2006-05-19T00:00:00Z')), ['2006-05-15T17:00:00Z', '2006-05-18T17:00:00Z']);
  });

  test('Europe/Berlin changes on other dates than the US', () => {
    const berlin = parseItem(EXAMPLE_027.replace(/NorthAmerica\/Pacific/g, 'Europe/Berlin'));
    // The EU began DST on Sunday March 25, 2007 (the US on March 11): Mon Mar 19 and Thu
    // Mar 22 are still CET (10:00 = 09:00Z), Mon Mar 26 is CEST (08:00Z).
    assert.deepEqual(starts(between(berlin, '2007-03-19T00:00:00Z', '2007-03-27T00:00:00Z')), [
      '2007-03-19T09:00:00Z',
      '2007-03-22T09:00:00Z',
      '2007-03-26T08:00:00Z',
    ]);
    // The same week in Pacific time is already PDT (17:00Z) throughout.
    assert.deepEqual(starts(between(item, '2007-03-19T00:00:00Z', '2007-03-27T00:00:00Z')), [
      '2007-03-19T17:00:00Z',
      '2007-03-22T17:00:00Z',
      '2007-03-26T17:00:00Z',
    ]);
    // The EU ended DST on Sunday October 28, 2007 (the US on November 4): Thu Oct 25 is
    // CEST (08:00Z), Mon Oct 29 CET (09:00Z); in Pacific time both are still PDT.
    assert.deepEqual(starts(between(berlin, '2007-10-25T00:00:00Z', '2007-10-30T00:00:00Z')), ['2007-10-25T08:00:00Z', '2007-10-29T09:00:00Z']);
    assert.deepEqual(starts(between(item, '2007-10-25T00:00:00Z', '2007-10-30T00:00:00Z')), ['2007-10-25T17:00:00Z', '2007-10-29T17:00:00Z']);
  });

  test('limit keeps the first occurrences', () => {
    const list = occurrences(item, utc('2006-10-23T00:00:00Z'), utc('2006-11-07T00:00:00Z'), 'UTC', { limit: 2 });
    assert.deepEqual(starts(list), ['2006-10-23T17:00:00Z', '2006-10-26T17:00:00Z']);
  });
});

describe('COUNT, UNTIL, EXDATE, RDATE', () => {
  const daily = (...extra: string[]): CalendarItem =>
    parseItem(cal(...event('UID:daily', 'DTSTART:20240110T090000Z', 'DTEND:20240110T100000Z', ...extra)));

  test('COUNT=5 gives five days, from DTSTART', () => {
    const list = between(daily('RRULE:FREQ=DAILY;COUNT=5'), '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z');
    // Jan 10–14 at 09:00Z; a UTC master's recurrence ids have the Z.
    assert.deepEqual(starts(list), ['2024-01-10T09:00:00Z', '2024-01-11T09:00:00Z', '2024-01-12T09:00:00Z', '2024-01-13T09:00:00Z', '2024-01-14T09:00:00Z']);
    assert.deepEqual(ids(list), ['20240110T090000Z', '20240111T090000Z', '20240112T090000Z', '20240113T090000Z', '20240114T090000Z']);
  });

  test('UNTIL is inclusive', () => {
    const list = between(daily('RRULE:FREQ=DAILY;UNTIL=20240112T090000Z'), '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z');
    assert.deepEqual(starts(list), ['2024-01-10T09:00:00Z', '2024-01-11T09:00:00Z', '2024-01-12T09:00:00Z']);
  });

  test('a UTC UNTIL is compared with a zoned DTSTART as an instant', () => {
    // 09:00 Berlin (CET) is 08:00Z: UNTIL=…T080000Z is the third occurrence itself.
    const item = parseItem(cal(...event('UID:u', 'DTSTART;TZID=Europe/Berlin:20240110T090000', 'RRULE:FREQ=DAILY;UNTIL=20240112T080000Z')));
    assert.deepEqual(starts(between(item, '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z')), ['2024-01-10T08:00:00Z', '2024-01-11T08:00:00Z', '2024-01-12T08:00:00Z']);
  });

  test('EXDATE removes one, in the master’s zone or in another', () => {
    const list = between(daily('RRULE:FREQ=DAILY;COUNT=5', 'EXDATE:20240112T090000Z'), '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z');
    assert.deepEqual(starts(list), ['2024-01-10T09:00:00Z', '2024-01-11T09:00:00Z', '2024-01-13T09:00:00Z', '2024-01-14T09:00:00Z']);
    // 03:00 New York (EST, −5) is 08:00Z, 09:00 in Berlin: Jan 11 goes.
    const zoned = parseItem(
      cal(...event('UID:z', 'DTSTART;TZID=Europe/Berlin:20240110T090000', 'RRULE:FREQ=DAILY;COUNT=3', 'EXDATE;TZID=America/New_York:20240111T030000')),
    );
    assert.deepEqual(ids(between(zoned, '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z')), ['20240110T090000', '20240112T090000']);
    // An EXDATE as a DATE removes that day's occurrence.
    const byDay = parseItem(cal(...event('UID:d', 'DTSTART;TZID=Europe/Berlin:20240110T090000', 'RRULE:FREQ=DAILY;COUNT=3', 'EXDATE;VALUE=DATE:20240111')));
    assert.deepEqual(ids(between(byDay, '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z')), ['20240110T090000', '20240112T090000']);
  });

  test('RDATE adds occurrences: a DATE-TIME with the master’s duration, a PERIOD with its own', () => {
    const item = daily('RRULE:FREQ=DAILY;COUNT=2', 'RDATE:20240120T150000Z', 'RDATE;VALUE=PERIOD:20240125T100000Z/20240125T120000Z,20240111T090000Z/PT3H');
    assert.equal(item.fields.recurring, true);
    // Jan 10, 11 from the rule (the PERIOD for Jan 11 09:00 names one the rule has: once,
    // with the period's 3 hours), Jan 20 15:00Z for the master's 1 h, Jan 25 10:00–12:00Z.
    assert.deepEqual(spans(between(item, '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z')), [
      '2024-01-10T09:00:00Z/2024-01-10T10:00:00Z',
      '2024-01-11T09:00:00Z/2024-01-11T12:00:00Z',
      '2024-01-20T15:00:00Z/2024-01-20T16:00:00Z',
      '2024-01-25T10:00:00Z/2024-01-25T12:00:00Z',
    ]);
    // RDATE alone makes an item recurring too.
    const only = daily('RDATE:20240301T090000Z');
    assert.deepEqual(starts(between(only, '2024-01-01T00:00:00Z', '2024-04-01T00:00:00Z')), ['2024-01-10T09:00:00Z', '2024-03-01T09:00:00Z']);
  });
});

describe('overriding instances', () => {
  // Weekly on Mondays at 10:00 Berlin (CET: 09:00Z): Jan 8, 15, 22, 29 2024.
  const text = cal(
    ...event('UID:weekly', 'SUMMARY:Standup', 'LOCATION:Room 1', 'DTSTART;TZID=Europe/Berlin:20240108T100000', 'DTEND;TZID=Europe/Berlin:20240108T103000', 'RRULE:FREQ=WEEKLY;COUNT=4'),
    // Jan 15 moved to Wednesday Jan 17, 14:00–15:00 Berlin (13:00–14:00Z), elsewhere.
    ...event('UID:weekly', 'RECURRENCE-ID;TZID=Europe/Berlin:20240115T100000', 'SUMMARY:Moved standup', 'LOCATION:Room 2', 'DTSTART;TZID=Europe/Berlin:20240117T140000', 'DTEND;TZID=Europe/Berlin:20240117T150000', 'SEQUENCE:1'),
    // Jan 22 cancelled.
    ...event('UID:weekly', 'RECURRENCE-ID;TZID=Europe/Berlin:20240122T100000', 'STATUS:CANCELLED', 'DTSTART;TZID=Europe/Berlin:20240122T100000', 'SUMMARY:Standup'),
    // Another item's instance in the same text is not this item's.
    ...event('UID:other', 'DTSTART:20240116T090000Z', 'SUMMARY:Other'),
  );
  const item = parseItem(text);

  test('the overrides are keyed by recurrence id', () => {
    assert.deepEqual([...item.overrides.keys()].sort(), ['20240115T100000', '20240122T100000']);
    assert.equal(item.masterless, false);
  });

  test('the whole series: moved one at its new time, cancelled one gone', () => {
    const list = between(item, '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z', 'Europe/Berlin');
    assert.deepEqual(spans(list), [
      '2024-01-08T09:00:00Z/2024-01-08T09:30:00Z',
      '2024-01-17T13:00:00Z/2024-01-17T14:00:00Z',
      '2024-01-29T09:00:00Z/2024-01-29T09:30:00Z',
    ]);
    assert.deepEqual(ids(list), ['20240108T100000', '20240115T100000', '20240129T100000']);
    assert.deepEqual(list.map((o) => o.fromOverride), [false, true, false]);
    assert.deepEqual(list.map((o) => o.fields.location), ['Room 1', 'Room 2', 'Room 1']);
    assert.equal(list[1]!.fields.summary, 'Moved standup');
  });

  test('a range with the new time but not the original one has the moved occurrence', () => {
    const list = between(item, '2024-01-17T00:00:00Z', '2024-01-18T00:00:00Z');
    assert.deepEqual(ids(list), ['20240115T100000']);
    assert.equal(list[0]!.fromOverride, true);
  });

  test('a range with the original time but not the new one has nothing', () => {
    assert.deepEqual(between(item, '2024-01-15T00:00:00Z', '2024-01-16T00:00:00Z'), []);
  });

  test('an occurrence moved from outside the range into it (from a later week to an earlier one)', () => {
    // Jan 29 moved to Tuesday Jan 9, 12:00Z: a range of Jan 9 only has it, though the rule's Jan 29 is far outside.
    const moved = parseItem(
      text.replace('END:VCALENDAR', ['BEGIN:VEVENT', 'UID:weekly', 'RECURRENCE-ID:20240129T090000Z', 'DTSTART:20240109T120000Z', 'DTEND:20240109T130000Z', 'SUMMARY:Early', 'END:VEVENT', 'END:VCALENDAR'].join('\r\n')),
    );
    // The UTC RECURRENCE-ID 09:00Z is 10:00 Berlin: the key is in the master's form.
    assert.ok(moved.overrides.has('20240129T100000'));
    const list = between(moved, '2024-01-09T00:00:00Z', '2024-01-10T00:00:00Z');
    assert.deepEqual(ids(list), ['20240129T100000']);
    assert.equal(list[0]!.fields.summary, 'Early');
    assert.deepEqual(ids(between(moved, '2024-01-29T00:00:00Z', '2024-01-30T00:00:00Z')), []);
  });

  test('an override of an occurrence the rule does not have is not shown', () => {
    const orphan = parseItem(
      text.replace('END:VCALENDAR', ['BEGIN:VEVENT', 'UID:weekly', 'RECURRENCE-ID;TZID=Europe/Berlin:20240205T100000', 'DTSTART;TZID=Europe/Berlin:20240205T100000', 'SUMMARY:Beyond COUNT', 'END:VEVENT', 'END:VCALENDAR'].join('\r\n')),
    );
    assert.deepEqual(between(orphan, '2024-02-01T00:00:00Z', '2024-03-01T00:00:00Z'), []);
  });

  test('RANGE=THISANDFUTURE is taken as an override of its own occurrence only', () => {
    const future = parseItem(
      text.replace('RECURRENCE-ID;TZID=Europe/Berlin:20240115T100000', 'RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Berlin:20240115T100000'),
    );
    // As above: Jan 29 keeps its time (a THISANDFUTURE shift would have moved it too).
    assert.deepEqual(starts(between(future, '2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z')), ['2024-01-08T09:00:00Z', '2024-01-17T13:00:00Z', '2024-01-29T09:00:00Z']);
  });

  test('of two overrides of one occurrence, the higher SEQUENCE wins; an override counts as recurring', () => {
    const twice = parseItem(
      text.replace('END:VCALENDAR', ['BEGIN:VEVENT', 'UID:weekly', 'RECURRENCE-ID;TZID=Europe/Berlin:20240115T100000', 'SEQUENCE:0', 'DTSTART;TZID=Europe/Berlin:20240116T100000', 'SUMMARY:Stale', 'END:VEVENT', 'END:VCALENDAR'].join('\r\n')),
    );
    const [moved] = between(twice, '2024-01-15T00:00:00Z', '2024-01-19T00:00:00Z');
    assert.equal(moved!.fields.summary, 'Moved standup');
    assert.equal(moved!.fields.recurring, true);
  });

  test('an item of overrides only (an invitation to one occurrence) shows them at their times', () => {
    const only = parseItem(cal(...event('UID:inv', 'RECURRENCE-ID:20240301T090000Z', 'DTSTART:20240301T100000Z', 'DTEND:20240301T110000Z', 'SUMMARY:One instance')));
    assert.equal(only.masterless, true);
    const list = between(only, '2024-03-01T00:00:00Z', '2024-03-02T00:00:00Z');
    assert.deepEqual(spans(list), ['2024-03-01T10:00:00Z/2024-03-01T11:00:00Z']);
    assert.deepEqual(ids(list), ['20240301T090000Z']);
    assert.equal(list[0]!.fromOverride, true);
  });
});

describe('all-day, floating, and crossing midnight', () => {
  test('an all-day event is its date in every viewer zone', () => {
    const item = parseItem(cal(...event('UID:allday', 'DTSTART;VALUE=DATE:20240310', 'SUMMARY:Holiday')));
    assert.equal(item.fields.allDay, true);
    assert.equal(item.fields.durationSeconds, 86400);
    // New York: midnight EST (05:00Z) to midnight EDT on Mar 11 (04:00Z) — the DST day has 23 hours.
    const ny = between(item, '2024-03-01T00:00:00Z', '2024-04-01T00:00:00Z', 'America/New_York');
    assert.deepEqual(spans(ny), ['2024-03-10T05:00:00Z/2024-03-11T04:00:00Z']);
    // Tokyo (+9): Mar 9 15:00Z to Mar 10 15:00Z.
    const tokyo = between(item, '2024-03-01T00:00:00Z', '2024-04-01T00:00:00Z', 'Asia/Tokyo');
    assert.deepEqual(spans(tokyo), ['2024-03-09T15:00:00Z/2024-03-10T15:00:00Z']);
    assert.deepEqual([ny[0]!.date, tokyo[0]!.date], ['20240310', '20240310']);
    assert.deepEqual([ny[0]!.recurrenceId, ny[0]!.allDay], ['20240310', true]);
  });

  test('a three-day all-day event: the same dates from Berlin and Los Angeles', () => {
    const item = parseItem(cal(...event('UID:trip', 'DTSTART;VALUE=DATE:20240701', 'DTEND;VALUE=DATE:20240704')));
    assert.equal(item.fields.durationSeconds, 3 * 86400);
    // Berlin (CEST +2): Jun 30 22:00Z – Jul 3 22:00Z; Los Angeles (PDT −7): Jul 1 07:00Z – Jul 4 07:00Z.
    assert.deepEqual(spans(between(item, '2024-06-01T00:00:00Z', '2024-08-01T00:00:00Z', 'Europe/Berlin')), ['2024-06-30T22:00:00Z/2024-07-03T22:00:00Z']);
    assert.deepEqual(spans(between(item, '2024-06-01T00:00:00Z', '2024-08-01T00:00:00Z', 'America/Los_Angeles')), ['2024-07-01T07:00:00Z/2024-07-04T07:00:00Z']);
    // Its last day, Jul 3, seen from Los Angeles (Jul 3 07:00Z – Jul 4 07:00Z) still has it; Jul 4 does not.
    assert.equal(between(item, '2024-07-03T07:00:00Z', '2024-07-04T07:00:00Z', 'America/Los_Angeles').length, 1);
    assert.equal(between(item, '2024-07-04T07:00:00Z', '2024-07-05T07:00:00Z', 'America/Los_Angeles').length, 0);
    // A CommuniGate zone name works as the viewer's zone.
    assert.deepEqual(starts(between(item, '2024-06-01T00:00:00Z', '2024-08-01T00:00:00Z', 'NorthAmerica/Pacific')), ['2024-07-01T07:00:00Z']);
  });

  test('a yearly all-day event recurs by date', () => {
    const item = parseItem(cal(...event('UID:bday', 'DTSTART;VALUE=DATE:20000229', 'RRULE:FREQ=YEARLY')));
    // February 29 exists only in leap years.
    const list = between(item, '2023-01-01T00:00:00Z', '2029-01-01T00:00:00Z', 'UTC');
    assert.deepEqual(list.map((o) => o.date), ['20240229', '20280229']);
  });

  test('a floating time is the viewer’s wall time: different instants', () => {
    const item = parseItem(cal(...event('UID:float', 'DTSTART:20240601T090000', 'DTEND:20240601T100000')));
    // 09:00 in Berlin (CEST +2) is 07:00Z; in New York (EDT −4) 13:00Z.
    assert.deepEqual(spans(between(item, '2024-06-01T00:00:00Z', '2024-06-02T00:00:00Z', 'Europe/Berlin')), ['2024-06-01T07:00:00Z/2024-06-01T08:00:00Z']);
    assert.deepEqual(spans(between(item, '2024-06-01T00:00:00Z', '2024-06-02T00:00:00Z', 'America/New_York')), ['2024-06-01T13:00:00Z/2024-06-01T14:00:00Z']);
  });

  test('an event crossing midnight belongs to both days', () => {
    // Berlin 23:00 – 01:30 next day (CEST): Jun 1 21:00Z – 23:30Z.
    const item = parseItem(cal(...event('UID:late', 'DTSTART;TZID=Europe/Berlin:20240601T230000', 'DTEND;TZID=Europe/Berlin:20240602T013000')));
    const day = (from: string, till: string): number => between(item, from, till, 'Europe/Berlin').length;
    // Jun 1 in Berlin: May 31 22:00Z – Jun 1 22:00Z; Jun 2: Jun 1 22:00Z – Jun 2 22:00Z; Jun 3: after it.
    assert.equal(day('2024-05-31T22:00:00Z', '2024-06-01T22:00:00Z'), 1);
    assert.equal(day('2024-06-01T22:00:00Z', '2024-06-02T22:00:00Z'), 1);
    assert.equal(day('2024-06-02T22:00:00Z', '2024-06-03T22:00:00Z'), 0);
    assert.equal(item.fields.durationSeconds, 2.5 * 3600);
  });
});

describe('tasks', () => {
  test('a VTODO with DTSTART, DUE and PERCENT-COMPLETE', () => {
    const item = parseItem(
      cal('BEGIN:VTODO', 'UID:task', 'DTSTAMP:20240101T000000Z', 'SUMMARY:Write report', 'PRIORITY:1', 'DTSTART;TZID=Europe/Berlin:20240301T090000', 'DUE;TZID=Europe/Berlin:20240305T170000', 'PERCENT-COMPLETE:40', 'STATUS:IN-PROCESS', 'END:VTODO'),
    );
    assert.equal(item.kind, 'todo');
    assert.equal(item.fields.percentComplete, 40);
    assert.equal(item.fields.priority, 1);
    assert.equal(item.fields.status, 'IN-PROCESS');
    // Mar 1 09:00 → Mar 5 17:00: 4 days 8 hours.
    assert.equal(item.fields.durationSeconds, 4 * 86400 + 8 * 3600);
    // CET: starts Mar 1 08:00Z, due (and ends) Mar 5 16:00Z.
    const list = between(item, '2024-03-03T00:00:00Z', '2024-03-04T00:00:00Z');
    assert.deepEqual(spans(list), ['2024-03-01T08:00:00Z/2024-03-05T16:00:00Z']);
    assert.equal(iso(list[0]!.due!), '2024-03-05T16:00:00Z');
  });

  test('a VTODO with DUE only occurs when due; one without dates never', () => {
    const due = parseItem(cal('BEGIN:VTODO', 'UID:due', 'DUE:20240305T170000Z', 'END:VTODO'));
    const list = between(due, '2024-03-05T00:00:00Z', '2024-03-06T00:00:00Z');
    assert.deepEqual(spans(list), ['2024-03-05T17:00:00Z/2024-03-05T17:00:00Z']);
    assert.equal(iso(list[0]!.due!), '2024-03-05T17:00:00Z');
    const undated = parseItem(cal('BEGIN:VTODO', 'UID:undated', 'SUMMARY:Someday', 'END:VTODO'));
    assert.deepEqual(occurrences(undated, 0, utc('2100-01-01T00:00:00Z'), 'UTC'), []);
    assert.equal(itemSpan(undated), null);
  });
});

describe('alarms', () => {
  const text = cal(
    ...event(
      'UID:alarms',
      'DTSTART:20240410T100000Z',
      'DTEND:20240410T110000Z',
      'BEGIN:VALARM', 'ACTION:DISPLAY', 'TRIGGER:-PT15M', 'END:VALARM',
      'BEGIN:VALARM', 'ACTION:AUDIO', 'TRIGGER;RELATED=END:PT5M', 'END:VALARM',
      'BEGIN:VALARM', 'ACTION:EMAIL', 'TRIGGER;VALUE=DATE-TIME:20240409T180000Z', 'END:VALARM',
    ),
  );

  test('relative to the start, to the end, and absolute', () => {
    const item = parseItem(text);
    assert.deepEqual(
      item.fields.alarms.map((a) => a.trigger),
      [
        { kind: 'relative', related: 'start', seconds: -900 },
        { kind: 'relative', related: 'end', seconds: 300 },
        { kind: 'absolute', time: { wall: { year: 2024, month: 4, day: 9, hour: 18, minute: 0, second: 0 }, isDate: false, utc: true } },
      ],
    );
    // 10:00 − 15 min = 09:45Z; 11:00 + 5 min = 11:05Z; Apr 9 18:00Z.
    const [occurrence] = between(item, '2024-04-10T00:00:00Z', '2024-04-11T00:00:00Z');
    assert.deepEqual(occurrence!.alarms.map(iso), ['2024-04-09T18:00:00Z', '2024-04-10T09:45:00Z', '2024-04-10T11:05:00Z']);
  });

  test('alarmsBetween finds occurrences by their alarm instants', () => {
    const item = parseItem(text);
    const hits = alarmsBetween(item, utc('2024-04-10T09:00:00Z'), utc('2024-04-10T10:00:00Z'), 'UTC');
    assert.deepEqual(hits.map((h) => iso(h.alarm)), ['2024-04-10T09:45:00Z']);
    assert.equal(iso(hits[0]!.occurrence.start), '2024-04-10T10:00:00Z');
    // The absolute alarm, the day before the event.
    assert.deepEqual(alarmsBetween(item, utc('2024-04-09T00:00:00Z'), utc('2024-04-10T00:00:00Z'), 'UTC').map((h) => iso(h.alarm)), ['2024-04-09T18:00:00Z']);
    // The RELATED=END one, after the event.
    assert.deepEqual(alarmsBetween(item, utc('2024-04-10T11:00:00Z'), utc('2024-04-10T12:00:00Z'), 'UTC').map((h) => iso(h.alarm)), ['2024-04-10T11:05:00Z']);
  });

  test('a recurring event’s alarm rings before each occurrence, also when the occurrence is after the range', () => {
    // Daily at 00:10Z with a 30-minute alarm: 23:40Z the day before.
    const item = parseItem(
      cal(...event('UID:daily-alarm', 'DTSTART:20240410T001000Z', 'DURATION:PT20M', 'RRULE:FREQ=DAILY', 'BEGIN:VALARM', 'ACTION:DISPLAY', 'TRIGGER:-PT30M', 'END:VALARM')),
    );
    const hits = alarmsBetween(item, utc('2024-04-10T23:00:00Z'), utc('2024-04-13T00:00:00Z'), 'UTC');
    assert.deepEqual(hits.map((h) => `${iso(h.alarm)} ${h.occurrence.recurrenceId}`), [
      '2024-04-10T23:40:00Z 20240411T001000Z',
      '2024-04-11T23:40:00Z 20240412T001000Z',
      '2024-04-12T23:40:00Z 20240413T001000Z',
    ]);
  });
});

describe('alarms of many overrides', () => {
  test('absolute alarms of 300 overrides, each with its occurrence', () => {
    // Daily 09:00Z from Jan 1, 2024; the first 300 moved to 10:00Z, each with an alarm at 08:00Z that day.
    const lines = [...event('UID:many', 'DTSTART:20240101T090000Z', 'DURATION:PT1H', 'RRULE:FREQ=DAILY;COUNT=400')];
    const day = (n: number): string => new Date(Date.UTC(2024, 0, 1 + n)).toISOString().slice(0, 10).replace(/-/g, '');
    for (let n = 0; n < 300; n++) {
      lines.push(
        ...event(`UID:many`, `RECURRENCE-ID:${day(n)}T090000Z`, `DTSTART:${day(n)}T100000Z`, 'DURATION:PT1H',
          'BEGIN:VALARM', 'ACTION:DISPLAY', `TRIGGER;VALUE=DATE-TIME:${day(n)}T080000Z`, 'END:VALARM'),
      );
    }
    const item = parseItem(cal(...lines));
    const hits = alarmsBetween(item, utc('2024-01-01T00:00:00Z'), utc('2025-01-01T00:00:00Z'), 'UTC');
    assert.equal(hits.length, 300);
    assert.deepEqual(
      hits.slice(0, 2).map((h) => `${iso(h.alarm)} ${iso(h.occurrence.start)} ${h.occurrence.recurrenceId}`),
      ['2024-01-01T08:00:00Z 2024-01-01T10:00:00Z 20240101T090000Z', '2024-01-02T08:00:00Z 2024-01-02T10:00:00Z 20240102T090000Z'],
    );
  });
});

describe('zones', () => {
  test('a custom TZID defined only by the item’s VTIMEZONE', () => {
    // A Berlin-like zone under a made-up name: +01:00, +02:00 from the last Sunday in March 02:00
    // to the last Sunday in October 03:00.
    const vtimezone = [
      'BEGIN:VTIMEZONE', 'TZID:Company Headquarters Time',
      'BEGIN:DAYLIGHT', 'TZOFFSETFROM:+0100', 'TZOFFSETTO:+0200', 'DTSTART:19810329T020000', 'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU', 'END:DAYLIGHT',
      'BEGIN:STANDARD', 'TZOFFSETFROM:+0200', 'TZOFFSETTO:+0100', 'DTSTART:19961027T030000', 'RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU', 'END:STANDARD',
      'END:VTIMEZONE',
    ];
    const at = (wall: string): string => {
      const item = parseItem(cal(...vtimezone, ...event('UID:hq', `DTSTART;TZID=Company Headquarters Time:${wall}`)));
      return starts(occurrences(item, 0, utc('2100-01-01T00:00:00Z'), 'America/New_York'))[0]!;
    };
    assert.equal(at('20240110T120000'), '2024-01-10T11:00:00Z'); // +01:00
    assert.equal(at('20240710T120000'), '2024-07-10T10:00:00Z'); // +02:00
    // March 31, 2024 is the last Sunday: 02:30 does not exist and moves forward to 03:30 +02:00 = 01:30Z.
    assert.equal(at('20240331T023000'), '2024-03-31T01:30:00Z');
    // October 27, 2024: 02:30 happens twice; the first is +02:00 = 00:30Z.
    assert.equal(at('20241027T023000'), '2024-10-27T00:30:00Z');
  });

  test('Windows zone names without a VTIMEZONE', () => {
    assert.equal(windowsZoneToIana('Pacific Standard Time'), 'America/Los_Angeles');
    assert.equal(windowsZoneToIana('w. europe standard time'), 'Europe/Berlin');
    const at = (tzid: string, wall: string): string =>
      starts(occurrences(parseItem(cal(...event('UID:w', `DTSTART;TZID=${tzid}:${wall}`))), 0, utc('2100-01-01T00:00:00Z'), 'Asia/Tokyo'))[0]!;
    assert.equal(at('Pacific Standard Time', '20240115T100000'), '2024-01-15T18:00:00Z'); // PST −8
    assert.equal(at('Pacific Standard Time', '20240715T100000'), '2024-07-15T17:00:00Z'); // PDT −7
    assert.equal(at('W. Europe Standard Time', '20240715T100000'), '2024-07-15T08:00:00Z'); // CEST +2
    // An unknown TZID is read in the viewer's zone (Tokyo, +9): 10:00 is 01:00Z.
    assert.equal(at('Nowhere Standard Time', '20240715T100000'), '2024-07-15T01:00:00Z');
  });

  test('IANA names first, then the VTIMEZONE; old Mozilla-style TZIDs', () => {
    // A VTIMEZONE claiming Europe/Berlin is +05:00: the runtime's Europe/Berlin is used (CEST, +2).
    const claimed = parseItem(
      cal(
        'BEGIN:VTIMEZONE', 'TZID:Europe/Berlin', 'BEGIN:STANDARD', 'TZOFFSETFROM:+0500', 'TZOFFSETTO:+0500', 'DTSTART:19700101T000000', 'END:STANDARD', 'END:VTIMEZONE',
        ...event('UID:c', 'DTSTART;TZID=Europe/Berlin:20240715T100000'),
      ),
    );
    assert.deepEqual(starts(occurrences(claimed, 0, utc('2100-01-01T00:00:00Z'), 'UTC')), ['2024-07-15T08:00:00Z']);
    const mozilla = parseItem(cal(...event('UID:m', 'DTSTART;TZID=/mozilla.org/20050126_1/America/New_York:20240715T100000')));
    // EDT (−4): 14:00Z.
    assert.deepEqual(starts(occurrences(mozilla, 0, utc('2100-01-01T00:00:00Z'), 'UTC')), ['2024-07-15T14:00:00Z']);
  });

  test('a wall time in the spring-forward gap moves forward; one in the overlap is the first', () => {
    const newYork = resolveZone('America/New_York', false, new Map(), 'UTC');
    const wall = (month: number, day: number, hour: number, minute: number) => ({ year: 2024, month, day, hour, minute, second: 0 });
    // March 10, 2024 02:30 does not exist in New York: read with EST (−5), 07:30Z, which is 03:30 EDT.
    assert.equal(iso(wallToInstant(wall(3, 10, 2, 30), newYork)), '2024-03-10T07:30:00Z');
    assert.deepEqual(instantToWall(utc('2024-03-10T07:30:00Z'), 'America/New_York'), wall(3, 10, 3, 30));
    // November 3, 2024 01:30 happens twice: the first is EDT (−4), 05:30Z (the second would be 06:30Z).
    assert.equal(iso(wallToInstant(wall(11, 3, 1, 30), newYork)), '2024-11-03T05:30:00Z');

    // A daily 02:30 New York event: 07:30Z (EST) on Mar 9; on Mar 10 moved forward to 03:30 EDT,
    // also 07:30Z; from Mar 11 02:30 EDT, 06:30Z.
    const item = parseItem(cal(...event('UID:gap', 'DTSTART;TZID=America/New_York:20240309T023000', 'DURATION:PT30M', 'RRULE:FREQ=DAILY;COUNT=3')));
    const list = between(item, '2024-03-01T00:00:00Z', '2024-04-01T00:00:00Z');
    assert.deepEqual(starts(list), ['2024-03-09T07:30:00Z', '2024-03-10T07:30:00Z', '2024-03-11T06:30:00Z']);
    // The recurrence id stays the wall time as the rule gives it.
    assert.deepEqual(ids(list), ['20240309T023000', '20240310T023000', '20240311T023000']);
  });

  test('a DURATION in days keeps the wall time across a DST change; hours are exact', () => {
    // Mar 9 12:00 EST (17:00Z) + P1D is Mar 10 12:00 EDT (16:00Z): 23 hours.
    const days = parseItem(cal(...event('UID:p1d', 'DTSTART;TZID=America/New_York:20240309T120000', 'DURATION:P1D')));
    assert.deepEqual(spans(occurrences(days, 0, utc('2100-01-01T00:00:00Z'), 'UTC')), ['2024-03-09T17:00:00Z/2024-03-10T16:00:00Z']);
    const hours = parseItem(cal(...event('UID:pt24h', 'DTSTART;TZID=America/New_York:20240309T120000', 'DURATION:PT24H')));
    assert.deepEqual(spans(occurrences(hours, 0, utc('2100-01-01T00:00:00Z'), 'UTC')), ['2024-03-09T17:00:00Z/2024-03-10T17:00:00Z']);
  });
});

describe('old series: iterated from a later start', () => {
  // Each rule from DTSTART Monday Jan 3, 2000 09:30Z, seen in January–February 2026; the
  // reference is ical.js's RecurExpansion going all the way from DTSTART.
  const rules = [
    'FREQ=DAILY',
    'FREQ=DAILY;INTERVAL=3;BYDAY=MO,WE,FR',
    'FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH',
    'FREQ=WEEKLY;INTERVAL=3;UNTIL=20260201T000000Z',
    'FREQ=MONTHLY;BYDAY=2TU',
    'FREQ=MONTHLY;INTERVAL=4;BYDAY=-1FR',
    'FREQ=MONTHLY;BYMONTHDAY=-1',
    'FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO,TU,WE,TH,FR',
    'FREQ=YEARLY;BYMONTH=1,2;BYDAY=-1SU',
    'FREQ=YEARLY;BYWEEKNO=6;BYDAY=MO',
    'FREQ=HOURLY;INTERVAL=7;BYHOUR=9,10,11,12,13,14,15,16',
  ];
  const from = utc('2026-01-01T00:00:00Z');
  const till = utc('2026-03-01T00:00:00Z');
  for (const rule of rules) {
    test(rule, () => {
      const text = cal(...event('UID:old', 'DTSTART:20000103T093000Z', 'DTEND:20000103T100000Z', `RRULE:${rule}`));
      const component = ICAL.Component.fromString(text).getFirstSubcomponent('vevent')!;
      const reference = new ICAL.RecurExpansion({ component, dtstart: component.getFirstPropertyValue('dtstart') as ICAL.Time });
      const expected: string[] = [];
      for (let next = reference.next(); next; next = reference.next()) {
        const ms = next.toUnixTime() * 1000;
        if (ms >= till) break;
        if (ms + 30 * 60_000 > from) expected.push(iso(ms));
      }
      const result = expand(parseItem(text), from, till, 'UTC');
      assert.equal(result.truncated, false);
      assert.ok(expected.length > 0);
      assert.deepEqual(starts(result.occurrences), expected);
    });
  }

  test('an hourly rule from 2000 is not too long to expand in 2026', () => {
    const item = parseItem(cal(...event('UID:hourly', 'DTSTART:20000103T093000Z', 'DURATION:PT10M', 'RRULE:FREQ=HOURLY')));
    const result = expand(item, from, utc('2026-02-01T00:00:00Z'), 'UTC');
    assert.equal(result.truncated, false);
    // Every hour of January at :30: 31 × 24.
    assert.equal(result.occurrences.length, 744);
    assert.equal(iso(result.occurrences[0]!.start), '2026-01-01T00:30:00Z');
  });

  test('example 027 in 2026: the US change on March 8', () => {
    // Mon Mar 2 and Thu Mar 5 are PST (18:00Z), Mon Mar 9 is PDT (17:00Z).
    assert.deepEqual(starts(between(parseItem(EXAMPLE_027), '2026-03-02T00:00:00Z', '2026-03-10T00:00:00Z')), [
      '2026-03-02T18:00:00Z',
      '2026-03-05T18:00:00Z',
      '2026-03-09T17:00:00Z',
    ]);
  });

  test('a yearly February 29 from 1904, in 2096–2105: 2100 is no leap year', () => {
    const item = parseItem(cal(...event('UID:leap', 'DTSTART;VALUE=DATE:19040229', 'RRULE:FREQ=YEARLY')));
    const list = between(item, '2096-01-01T00:00:00Z', '2106-01-01T00:00:00Z');
    assert.deepEqual(list.map((o) => o.date), ['20960229', '21040229']);
  });
});

describe('busy status', () => {
  const status = (...lines: string[]): string => parseItem(cal(...event('UID:b', 'DTSTART:20240101T100000Z', ...lines))).fields.busyStatus;
  test('X-MICROSOFT-CDO-BUSYSTATUS, then TRANSP, then STATUS', () => {
    assert.equal(status('X-MICROSOFT-CDO-BUSYSTATUS:OOF'), 'UNAVAILABLE');
    assert.equal(status('X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE', 'TRANSP:TRANSPARENT'), 'TENTATIVE');
    assert.equal(status('TRANSP:TRANSPARENT', 'STATUS:TENTATIVE'), 'FREE');
    assert.equal(status('STATUS:TENTATIVE'), 'TENTATIVE');
    assert.equal(status('TRANSP:OPAQUE'), 'BUSY');
    assert.equal(status(), 'BUSY');
  });
});

describe('itemSpan', () => {
  test('a finite rule: first start and last end', () => {
    const item = parseItem(cal(...event('UID:f', 'DTSTART:20240110T090000Z', 'DTEND:20240110T100000Z', 'RRULE:FREQ=DAILY;COUNT=5')));
    // Jan 10 09:00Z to the fifth occurrence's end, Jan 14 10:00Z.
    assert.deepEqual(itemSpan(item), { firstStart: utc('2024-01-10T09:00:00Z'), lastEnd: utc('2024-01-14T10:00:00Z') });
  });

  test('an infinite rule never ends', () => {
    // Example 027: from May 15, 2006 17:00Z on.
    assert.deepEqual(itemSpan(parseItem(EXAMPLE_027)), { firstStart: utc('2006-05-15T17:00:00Z'), lastEnd: null });
  });

  test('a single event; an override moved before DTSTART', () => {
    const single = parseItem(cal(...event('UID:s', 'DTSTART;TZID=Europe/Berlin:20240601T100000', 'DTEND;TZID=Europe/Berlin:20240601T120000')));
    assert.deepEqual(itemSpan(single), { firstStart: utc('2024-06-01T08:00:00Z'), lastEnd: utc('2024-06-01T10:00:00Z') });
    const moved = parseItem(
      cal(
        ...event('UID:m', 'DTSTART:20240110T090000Z', 'DTEND:20240110T100000Z', 'RRULE:FREQ=DAILY;COUNT=3'),
        ...event('UID:m', 'RECURRENCE-ID:20240112T090000Z', 'DTSTART:20240105T090000Z', 'DTEND:20240105T100000Z'),
      ),
    );
    assert.deepEqual(itemSpan(moved), { firstStart: utc('2024-01-05T09:00:00Z'), lastEnd: utc('2024-01-11T10:00:00Z') });
  });

  test('the bounds of the alarms', () => {
    // Daily Jan 10–14 09:00–10:00Z; 15 minutes before the start, and 1 day after the end
    // repeated twice an hour apart: from Jan 10 08:45Z to Jan 15 10:00Z + 2 h.
    const item = parseItem(
      cal(
        ...event(
          'UID:al', 'DTSTART:20240110T090000Z', 'DTEND:20240110T100000Z', 'RRULE:FREQ=DAILY;COUNT=5',
          'BEGIN:VALARM', 'ACTION:DISPLAY', 'TRIGGER:-PT15M', 'END:VALARM',
          'BEGIN:VALARM', 'ACTION:DISPLAY', 'TRIGGER;RELATED=END:P1D', 'REPEAT:2', 'DURATION:PT1H', 'END:VALARM',
        ),
      ),
    );
    assert.deepEqual(itemSpan(item)!.alarms, { first: utc('2024-01-10T08:45:00Z'), last: utc('2024-01-15T12:00:00Z') });
    // Example 027 has none; an unbounded rule's alarms have no last.
    assert.equal(itemSpan(parseItem(EXAMPLE_027))!.alarms, undefined);
    const unbounded = parseItem(EXAMPLE_027.replace('END:VEVENT', 'BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\nEND:VEVENT'));
    assert.deepEqual(itemSpan(unbounded)!.alarms, { first: utc('2006-05-15T16:50:00Z'), last: null });
  });

  test('floating and all-day items are widened by 14 hours on each side', () => {
    const floating = parseItem(cal(...event('UID:fl', 'DTSTART:20240601T090000', 'DTEND:20240601T100000')));
    // Read in UTC: 09:00Z–10:00Z, widened: May 31 19:00Z – Jun 2 00:00Z.
    assert.deepEqual(itemSpan(floating), { firstStart: utc('2024-05-31T19:00:00Z'), lastEnd: utc('2024-06-02T00:00:00Z') });
    const allDay = parseItem(cal(...event('UID:ad', 'DTSTART;VALUE=DATE:20240310')));
    // Mar 10 00:00Z – Mar 11 00:00Z, widened: Mar 9 10:00Z – Mar 11 14:00Z.
    assert.deepEqual(itemSpan(allDay), { firstStart: utc('2024-03-09T10:00:00Z'), lastEnd: utc('2024-03-11T14:00:00Z') });
    // Every viewer zone's occurrence is inside the widened span.
    const span = itemSpan(allDay)!;
    for (const zone of ['Pacific/Kiritimati', 'Etc/GMT+12', 'America/Los_Angeles', 'Asia/Tokyo']) {
      const [o] = occurrences(allDay, 0, utc('2100-01-01T00:00:00Z'), zone);
      assert.ok(o!.start >= span.firstStart && o!.end <= span.lastEnd!, zone);
    }
  });
});

describe('malformed and hostile items', () => {
  const rejects = (text: string, pattern?: RegExp): void => {
    assert.throws(() => parseItem(text), (err: unknown) => err instanceof CalendarItemError && (!pattern || pattern.test(err.message)));
  };

  test('texts that are not calendar items', () => {
    rejects('', /BEGIN:VCALENDAR/);
    rejects('hello world');
    rejects(cal('BEGIN:VJOURNAL', 'UID:j', 'END:VJOURNAL'), /no VEVENT or VTODO/);
    rejects(cal());
    rejects('BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n'); // never ends
    rejects(cal(...event('UID:x', 'DTSTART:garbage')));
    rejects(cal(...event('UID:x', 'DTSTART:20241345T250000Z')));
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z')) + cal(...event('UID:y', 'DTSTART:20240101T100000Z')), /more than one/);
  });

  test('bad recurrence rules', () => {
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:FREQ=FORTNIGHTLY')), /RRULE|frequency/);
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:FREQ=MONTHLY;BYYEARDAY=3')), /RRULE/);
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:COUNT=3')), /RRULE: invalid FREQ/);
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:FREQ=MONTHLY;BYDAY=9MO')), /RRULE/);
    // ical.js's own messages for these.
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:FREQ=WEEKLY;BYDAY=XX')));
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:FREQ=MONTHLY;BYMONTHDAY=40')));
    rejects(cal(...event('UID:x', 'DTSTART:20240101T100000Z', 'RRULE:FREQ=DAILY;UNTIL=garbage')));
  });

  test('FREQ=SECONDLY without an end over a year stops, bounded', () => {
    const item = parseItem(cal(...event('UID:sec', 'DTSTART;TZID=Europe/Berlin:20240101T000000', 'RRULE:FREQ=SECONDLY')));
    const result = expand(item, utc('2024-01-01T00:00:00Z'), utc('2025-01-01T00:00:00Z'), 'UTC');
    assert.equal(result.truncated, true);
    assert.ok(result.occurrences.length > 0 && result.occurrences.length <= MAX_RULE_STEPS);
    // A week-long range far from DTSTART: also bounded (the rule cannot get there), nothing found.
    const far = expand(item, utc('2030-01-01T00:00:00Z'), utc('2030-01-08T00:00:00Z'), 'UTC');
    assert.equal(far.truncated, true);
    assert.deepEqual(far.occurrences, []);
    // The span of a rule too long to expand is open.
    const finite = parseItem(cal(...event('UID:sec2', 'DTSTART:20240101T000000Z', 'RRULE:FREQ=SECONDLY;COUNT=10000000')));
    assert.deepEqual(itemSpan(finite), { firstStart: utc('2024-01-01T00:00:00Z'), lastEnd: null });
  });

  test('a rule that never matches stops, bounded', () => {
    // There is no February 30: ical.js would search for it forever.
    const item = parseItem(cal(...event('UID:never', 'DTSTART:20240101T000000Z', 'RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30')));
    const result = expand(item, utc('2024-01-01T00:00:00Z'), utc('2025-01-01T00:00:00Z'), 'UTC');
    assert.deepEqual(starts(result.occurrences), ['2024-01-01T00:00:00Z']); // DTSTART only
    assert.equal(result.truncated, true);
  });

  test('a VTIMEZONE with a runaway rule is not used', () => {
    const item = parseItem(
      cal(
        'BEGIN:VTIMEZONE', 'TZID:Hostile',
        'BEGIN:STANDARD', 'TZOFFSETFROM:+0100', 'TZOFFSETTO:+0200', 'DTSTART:16010101T000000', 'RRULE:FREQ=SECONDLY', 'END:STANDARD',
        'END:VTIMEZONE',
        ...event('UID:h', 'DTSTART;TZID=Hostile:20240601T100000'),
      ),
    );
    assert.equal(item.timezones.size, 0);
    // Read in the viewer's zone instead: 10:00 UTC.
    assert.deepEqual(starts(occurrences(item, 0, utc('2100-01-01T00:00:00Z'), 'UTC')), ['2024-06-01T10:00:00Z']);
  });

  test('corrupted items never throw anything but CalendarItemError', () => {
    const base = EXAMPLE_027.replace('END:VEVENT', 'EXDATE;TZID=Europe/Berlin:20060601T190000\r\nRDATE;VALUE=PERIOD:20060610T100000Z/PT1H\r\nBEGIN:VALARM\r\nTRIGGER:-PT15M\r\nACTION:DISPLAY\r\nEND:VALARM\r\nEND:VEVENT');
    // A small deterministic generator (no wall clock, no randomness between runs).
    let seed = 13;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const alphabet = 'ZT0123456789:;=,-/\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ ';
    let parsed = 0;
    for (let round = 0; round < 300; round++) {
      const chars = [...base];
      for (let edits = 1 + Math.floor(random() * 4); edits > 0; edits--) {
        const at = Math.floor(random() * chars.length);
        const action = random();
        if (action < 0.4) chars[at] = alphabet[Math.floor(random() * alphabet.length)]!;
        else if (action < 0.7) chars.splice(at, 1 + Math.floor(random() * 8));
        else chars.splice(at, 0, alphabet[Math.floor(random() * alphabet.length)]!);
      }
      const text = chars.join('');
      try {
        const item = parseItem(text);
        parsed++;
        occurrences(item, utc('2006-01-01T00:00:00Z'), utc('2007-01-01T00:00:00Z'), 'Europe/Berlin');
        alarmsBetween(item, utc('2006-05-01T00:00:00Z'), utc('2006-07-01T00:00:00Z'), 'UTC');
        itemSpan(item);
      } catch (err) {
        assert.ok(err instanceof CalendarItemError, `${String(err)}\n${text}`);
      }
    }
    assert.ok(parsed > 0);
  });
});
