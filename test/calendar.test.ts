/**
 * Calendars over XIMSS on the wire (spec section "Calendar Operations"): example 027's
 * calendarPublish replayed, findEvents across DST changes seen from two zones, all-day
 * events, tasks, calendarReadItem and calendarRead, calendarCancel, calendarReport to a
 * second session (coalesced until its next findEvents), bad input.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { exampleRequest, fails, ok, postUpload, startTestServer, storedRaw, type TestServer, type XimssClient } from './helpers.js';

const EXAMPLE = fileURLToPath(new URL('../../shared/spec/examples/027-calendarPublish.txt', import.meta.url));

let server: TestServer;
before(async () => {
  // The remote-calendar test serves its document from loopback.
  server = await startTestServer({ calendar: { remotePrivateAddresses: true } });
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
  urlID: string;
}

async function newUser(timeZone: string): Promise<User> {
  const address = await server.newAccount('cal');
  const { client, urlID } = await server.login(address, 'secret');
  await ok(client, `<prefsStore><TimeZone>${timeZone}</TimeZone></prefsStore>`);
  await ok(client, '<mailboxCreate mailbox="Calendar" mailboxClass="IPF.Appointment"/>');
  await ok(client, '<calendarOpen calendar="Calendar"/>');
  return { address, client, urlID };
}


function vevent(fields: string): string {
  return `<iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="test"><vevent>${fields}</vevent></vCalendar></iCalendar>`;
}

/** findEvents: the events of each day message, as `date: summary@time` strings, days without events left out. */
async function events(client: XimssClient, from: string, till: string, extra = ''): Promise<{ days: XmlElement[]; found: string[] }> {
  const reply = await ok(client, `<findEvents calendar="Calendar" timeFrom="${from}" timeTill="${till}"${extra}/>`);
  const days = reply.messages.filter((m) => m.name === 'events');
  const found: string[] = [];
  for (const day of days) {
    for (const e of day.elements('event')) found.push(`${e.element('summary')?.text() ?? ''}@${e.attrs.timeFrom ?? e.attrs.dateFrom}`);
  }
  return { days, found };
}

describe('calendar items over XIMSS', () => {
  test('example 027: calendarPublish as the spec shows it, attachments included, is answered with a bare response', async () => {
    const u = await newUser('NorthAmerica/Pacific');
    const { request, response } = exampleRequest(EXAMPLE);
    // What the example refers to: an uploaded file att01, and part 3 of message 156 in a folder INBOX.
    await postUpload(server, u, 'att01', Buffer.from('the agenda\n', 'utf8'), 'agenda.txt', 'text/plain');
    for (let i = 1; i < 156; i++) await ok(u.client, `<messageAppend targetMailbox="INBOX"><EMail><Subject>m${i}</Subject><MIME type="text" subtype="plain">x</MIME></EMail></messageAppend>`);
    await ok(
      u.client,
      '<messageAppend targetMailbox="INBOX"><EMail><Subject>report</Subject><MIME type="multipart" subtype="mixed"><MIME type="text" subtype="plain">see the files</MIME>' +
        '<MIME type="text" subtype="plain">second</MIME><MIME type="application" subtype="pdf" name="report.pdf">JVBERi0xLjQK</MIME></MIME></EMail></messageAppend>',
    );
    await ok(u.client, '<folderOpen folder="INBOX" mailbox="INBOX"><field>Subject</field></folderOpen>');
    const reply = await u.client.request(request);
    assert.equal(reply.response.toString(), response);
    const stored = (await storedRaw(server, u.address, 'Calendar', 1))!.toString('utf8');
    assert.match(stored, /Content-Type: multipart\/mixed/);
    assert.match(stored, /Content-Type: text\/calendar; charset=utf-8\r\n[\s\S]*UID:18927897984@kjjkjkjk-123444/);
    assert.match(stored, /agenda\.txt/);
    assert.match(stored, /Content-Type: application\/pdf[\s\S]*JVBERi0xLjQK/);
    // Published again without MIME: the attachments stay; with an empty noMIME they go.
    const again = request.replace('id="A021"', 'id="A022"').replace(/<MIME uploadID="att01" \/>\s*/, '').replace(/<copyMIME[^>]*\/>\s*/, '');
    assert.equal((await u.client.request(again)).response.attrs.errorText, undefined);
    const kept = (await storedRaw(server, u.address, 'Calendar', 2))!.toString('utf8');
    assert.match(kept, /JVBERi0xLjQK/);
    const bare = again.replace('id="A022"', 'id="A023"').replace('</calendarPublish>', '<noMIME/></calendarPublish>');
    assert.equal((await u.client.request(bare)).response.attrs.errorText, undefined);
    const plain = (await storedRaw(server, u.address, 'Calendar', 3))!.toString('utf8');
    assert.doesNotMatch(plain, /multipart|JVBERi0xLjQK/);
    const week = await events(u.client, '20060515T000000', '20060522T000000');
    assert.equal(week.days.length, 7, 'one events message per day');
    assert.deepEqual(week.found, ['Report Meeting@20060515T100000', 'Report Meeting@20060518T100000']);
    const first = week.days[0]!.element('event')!;
    assert.equal(first.attrs.itemUID, '18927897984@kjjkjkjk-123444');
    assert.equal(first.attrs.recurrence, 'yes');
    assert.equal(first.attrs.duration, '3600');
    assert.equal(first.attrs.busyStatus, 'BUSY');
    assert.equal(first.attrs.attendees, '1');
    assert.equal(first.attrs.priority, '5');
    assert.equal(first.attrs.organizer, undefined, 'the user is not the organizer');
  });

  test('a weekly meeting in NorthAmerica/Pacific stays at 10:00 there across DST, and moves in Berlin', async () => {
    const item = vevent(
      '<uid>dst-1</uid><summary>Weekly</summary><rrule>FREQ=WEEKLY;BYDAY=MO</rrule>' +
        '<dtstart tzid="NorthAmerica/Pacific">20071001T100000</dtstart><dtend tzid="NorthAmerica/Pacific">20071001T110000</dtend>',
    );
    const pacific = await newUser('NorthAmerica/Pacific');
    await ok(pacific.client, `<calendarPublish calendar="Calendar">${item}</calendarPublish>`);
    assert.deepEqual((await events(pacific.client, '20071022T000000', '20071113T000000')).found, [
      'Weekly@20071022T100000',
      'Weekly@20071029T100000',
      'Weekly@20071105T100000',
      'Weekly@20071112T100000',
    ]);
    // Europe changed on 28 October 2007, the US on 4 November (its first year of the new rule):
    // in between the offset is 8 hours, else 9.
    const berlin = await newUser('Europe/Berlin');
    await ok(berlin.client, `<calendarPublish calendar="Calendar">${item}</calendarPublish>`);
    assert.deepEqual((await events(berlin.client, '20071022T000000', '20071113T000000')).found, [
      'Weekly@20071022T190000',
      'Weekly@20071029T180000',
      'Weekly@20071105T190000',
      'Weekly@20071112T190000',
    ]);
  });

  test('all-day events have dateFrom, appear on each of their days, and on the same dates in every zone', async () => {
    for (const zone of ['Asia/Tokyo', 'America/New_York']) {
      const u = await newUser(zone);
      await ok(
        u.client,
        `<calendarPublish calendar="Calendar">${vevent('<uid>trip</uid><summary>Trip</summary><dtstart value="DATE">20240301</dtstart><dtend value="DATE">20240304</dtend>')}</calendarPublish>`,
      );
      const { days } = await events(u.client, '20240229T000000', '20240306T000000');
      const withTrip = days.filter((d) => d.elements('event').length > 0).map((d) => d.attrs.timeFrom);
      assert.deepEqual(withTrip, ['20240301T000000', '20240302T000000', '20240303T000000'], zone);
      const e = days[1]!.element('event')!;
      assert.equal(e.attrs.dateFrom, '20240301');
      assert.equal(e.attrs.timeFrom, undefined);
      assert.equal(e.attrs.duration, String(3 * 86400));
    }
  });

  test('exceptions: a moved occurrence and a cancelled one; EXDATE; calendarPublish of one recurrence', async () => {
    const u = await newUser('Europe/Paris');
    await ok(
      u.client,
      `<calendarPublish calendar="Calendar"><iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="test">` +
        '<vevent><uid>daily</uid><summary>Standup</summary><rrule>FREQ=DAILY;COUNT=5</rrule><dtstart tzid="Europe/Paris">20240610T090000</dtstart><duration>PT15M</duration><exdate tzid="Europe/Paris">20240612T090000</exdate></vevent>' +
        '<vevent><uid>daily</uid><recurrence-id tzid="Europe/Paris">20240611T090000</recurrence-id><summary>Standup (late)</summary><dtstart tzid="Europe/Paris">20240611T110000</dtstart><duration>PT15M</duration></vevent>' +
        '</vCalendar></iCalendar></calendarPublish>',
    );
    assert.deepEqual((await events(u.client, '20240610T000000', '20240615T000000')).found, [
      'Standup@20240610T090000',
      'Standup (late)@20240611T110000',
      'Standup@20240613T090000',
      'Standup@20240614T090000',
    ]);
    const moved = (await events(u.client, '20240611T000000', '20240612T000000')).days[0]!.element('event')!;
    assert.equal(moved.attrs.recurrenceId, '20240611T090000');
    // Publishing one recurrence (a cancelled one) updates the stored item.
    await ok(
      u.client,
      `<calendarPublish calendar="Calendar">${vevent('<uid>daily</uid><recurrence-id tzid="Europe/Paris">20240613T090000</recurrence-id><status>CANCELLED</status><summary>Standup</summary><dtstart tzid="Europe/Paris">20240613T090000</dtstart><duration>PT15M</duration>')}</calendarPublish>`,
    );
    assert.deepEqual((await events(u.client, '20240610T000000', '20240615T000000')).found, [
      'Standup@20240610T090000',
      'Standup (late)@20240611T110000',
      'Standup@20240614T090000',
    ]);
  });

  test('limit and skip run over the whole answer; byAlarm finds events by their alarm time', async () => {
    const u = await newUser('UTC');
    await ok(
      u.client,
      `<calendarPublish calendar="Calendar">${vevent('<uid>hourly</uid><summary>Tick</summary><rrule>FREQ=HOURLY;COUNT=6</rrule><dtstart>20240101T100000Z</dtstart><duration>PT10M</duration><valarm><action>DISPLAY</action><trigger>-PT15M</trigger><description>x</description></valarm>')}</calendarPublish>`,
    );
    const page = await events(u.client, '20240101T000000', '20240102T000000', ' limit="2" skip="1"');
    assert.deepEqual(page.found, ['Tick@20240101T110000', 'Tick@20240101T120000']);
    assert.equal(page.days[0]!.attrs.items, '6');
    const alarms = await ok(u.client, '<findEvents calendar="Calendar" timeFrom="20240101T094000" timeTill="20240101T105000" byAlarm="yes"/>');
    const found = alarms.messages.flatMap((m) => m.elements('event'));
    assert.deepEqual(found.map((e) => e.attrs.alarmTime), ['20240101T094500', '20240101T104500']);
  });

  test('tasks: findTasks shows due and percent-complete', async () => {
    const u = await newUser('UTC');
    await ok(
      u.client,
      '<calendarPublish calendar="Calendar"><iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="t"><vtodo><uid>t1</uid><summary>Report</summary><dtstart>20240105T090000Z</dtstart><due>20240107T170000Z</due><percent-complete>40</percent-complete></vtodo></vCalendar></iCalendar></calendarPublish>',
    );
    const reply = await ok(u.client, '<findTasks calendar="Calendar" timeFrom="20240101T000000" timeTill="20240110T000000"/>');
    const tasks = reply.messages.filter((m) => m.name === 'tasks').flatMap((m) => m.elements('task'));
    assert.ok(tasks.length >= 1);
    assert.equal(tasks[0]!.attrs.due, '20240107T170000');
    assert.equal(tasks[0]!.attrs['percent-complete'], '40');
    assert.equal(tasks[0]!.element('summary')!.text(), 'Report');
    const none = await ok(u.client, '<findEvents calendar="Calendar" timeFrom="20240101T000000" timeTill="20240110T000000"/>');
    assert.equal(none.messages.flatMap((m) => m.elements('event')).length, 0, 'a task is not an event');
  });

  test('calendarReadItem gives the item as iCalendar XML; calendarRead the message; fileStore and Export; calendarCancel removes it', async () => {
    const u = await newUser('UTC');
    await ok(u.client, `<calendarPublish calendar="Calendar">${vevent('<summary>No UID given</summary><dtstart>20240201T100000Z</dtstart><dtend>20240201T110000Z</dtend><x-custom param="1">kept</x-custom>')}</calendarPublish>`);
    const listed = await events(u.client, '20240201T000000', '20240202T000000');
    const e = listed.days[0]!.element('event')!;
    assert.ok(e.attrs.itemUID, 'a UID was made');
    const item = await ok(u.client, `<calendarReadItem calendar="Calendar" UID="${e.attrs.UID}"/>`);
    const body = item.messages.find((m) => m.name === 'calendarItem')!;
    const xml = body.toString();
    assert.match(xml, /<summary>No UID given<\/summary>/);
    assert.match(xml, /<x-custom PARAM="1">kept<\/x-custom>/);
    assert.ok(xml.includes(`<uid>${e.attrs.itemUID}</uid>`));
    const read = await ok(u.client, `<calendarRead calendar="Calendar" UID="${e.attrs.UID}"/>`);
    const message = read.messages.find((m) => m.name === 'calendarMessage')!;
    assert.equal(message.attrs.calendar, 'Calendar');
    assert.match(message.toString(), /<Subject>No UID given<\/Subject>/);
    // fileStore of a calendar item (the whole message): into the File Storage.
    await ok(u.client, `<fileStore fileName="event.eml" calendar="Calendar" UID="${e.attrs.UID}"/>`);
    const stored = await ok(u.client, '<fileRead fileName="event.eml" type="binary"/>');
    assert.match(Buffer.from(stored.messages[0]!.element('base64')!.text(), 'base64').toString('utf8'), /BEGIN:VCALENDAR[\s\S]*SUMMARY:No UID given/);
    // HTTP Export of the open calendar: one iCalendar text.
    const exported = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${u.urlID}/Export/Calendar/mine.ics`);
    assert.equal(exported.status, 200);
    assert.equal(exported.headers.get('content-type'), 'text/calendar; charset=utf-8');
    const ics = await exported.text();
    assert.equal(ics.match(/BEGIN:VCALENDAR/g)?.length, 1);
    assert.match(ics, /SUMMARY:No UID given/);
    await ok(u.client, `<calendarCancel calendar="Calendar" itemUID="${e.attrs.itemUID}"/>`);
    assert.deepEqual((await events(u.client, '20240201T000000', '20240202T000000')).found, []);
    await fails(u.client, `<calendarCancel calendar="Calendar" itemUID="${e.attrs.itemUID}"/>`, /not found/);
  });

  test('a second session with the calendar open gets one calendarReport until it looks again', async () => {
    const u = await newUser('UTC');
    const { client: other } = await server.login(u.address, 'secret');
    await ok(other, '<calendarOpen calendar="Mine" mailbox="Calendar"/>');
    await ok(u.client, `<calendarPublish calendar="Calendar">${vevent('<uid>n1</uid><summary>A</summary><dtstart>20240301T100000Z</dtstart>')}</calendarPublish>`);
    const report = await other.nextAsync('calendarReport');
    assert.equal(report.attrs.calendar, 'Mine');
    assert.equal(report.attrs.mode, 'notify');
    await ok(u.client, `<calendarPublish calendar="Calendar">${vevent('<uid>n2</uid><summary>B</summary><dtstart>20240301T120000Z</dtstart>')}</calendarPublish>`);
    await ok(other, '<noop/>');
    assert.equal(other.asyncMessages.filter((m) => m.name === 'calendarReport').length, 0, 'coalesced until the next findEvents');
    await ok(other, '<findEvents calendar="Mine" timeFrom="20240301T000000" timeTill="20240302T000000"/>');
    await ok(u.client, `<calendarPublish calendar="Calendar">${vevent('<uid>n3</uid><summary>C</summary><dtstart>20240301T140000Z</dtstart>')}</calendarPublish>`);
    assert.equal((await other.nextAsync('calendarReport')).attrs.calendar, 'Mine');
    other.close();
  });

  test('messageAppend takes iCalendar XML in a text/calendar part; folderRead shows it back; a broken one is shown as text', async () => {
    const u = await newUser('UTC');
    const invite = '<iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar method="REQUEST" version="2.0" prodid="t"><vevent><uid>inv-1</uid><summary>Lunch; with, Ann</summary><dtstart>20240401T120000Z</dtstart><attendee CN="Ann" RSVP="TRUE">MAILTO:ann@example.com</attendee></vevent></vCalendar></iCalendar>';
    const reply = await ok(
      u.client,
      `<messageAppend targetMailbox="INBOX" report="uid"><EMail><Subject>invitation</Subject><MIME type="multipart" subtype="alternative"><MIME type="text" subtype="plain">Lunch?</MIME><MIME type="text" subtype="calendar">${invite}</MIME></MIME></EMail></messageAppend>`,
    );
    const uid = Number(reply.messages[0]!.attrs.UID);
    const raw = (await storedRaw(server, u.address, 'INBOX', uid))!.toString('utf8');
    assert.match(raw, /Content-Type: text\/calendar/);
    assert.match(raw, /SUMMARY:Lunch\\; with\\, Ann\r\n/);
    assert.match(raw, /METHOD:REQUEST\r\n/);
    await ok(u.client, '<folderOpen folder="I" mailbox="INBOX"><field>Subject</field></folderOpen>');
    const read = await ok(u.client, `<folderRead folder="I" UID="${uid}"/>`);
    const calendar = read.messages[0]!.element('EMail')!.element('MIME')!.elements('MIME')[1]!.element('iCalendar')!;
    assert.equal(calendar.element('vCalendar')!.attrs.method, 'REQUEST');
    const event = calendar.element('vCalendar')!.element('vevent')!;
    assert.equal(event.element('summary')!.text(), 'Lunch; with, Ann');
    assert.equal(event.element('attendee')!.attrs.CN, 'Ann');
    await fails(u.client, '<messageAppend targetMailbox="INBOX"><EMail><MIME type="text" subtype="calendar"><vCard/></MIME></EMail></messageAppend>', /unexpected element <vCard>/);
    // A text/calendar part that is not iCalendar: its text, with the parser's complaint.
    const broken = await ok(u.client, '<messageAppend targetMailbox="INBOX" report="uid"><EMail><MIME type="text" subtype="calendar">not a calendar</MIME></EMail></messageAppend>');
    const brokenUid = Number(broken.messages[0]!.attrs.UID);
    const shown = await ok(u.client, `<folderRead folder="I" UID="${brokenUid}"/>`);
    const mime = shown.messages[0]!.element('EMail')!.element('MIME')!;
    assert.equal(mime.text().trim(), 'not a calendar');
    assert.ok(Object.keys(mime.attrs).some((a) => /pars/i.test(a)), mime.toString());
  });

  test('calendarCancel of one occurrence (by recurrenceId, and by an iCalendar body) leaves the others', async () => {
    const u = await newUser('America/New_York');
    await ok(
      u.client,
      `<calendarPublish calendar="Calendar">${vevent('<uid>gym</uid><summary>Gym</summary><rrule>FREQ=DAILY;COUNT=4</rrule><dtstart tzid="America/New_York">20240304T070000</dtstart><duration>PT1H</duration>')}</calendarPublish>`,
    );
    await ok(u.client, '<calendarCancel calendar="Calendar" itemUID="gym" recurrenceId="20240305T070000" sendRequests="no"/>');
    await ok(
      u.client,
      `<calendarCancel calendar="Calendar">${vevent('<uid>gym</uid><recurrence-id tzid="America/New_York">20240306T070000</recurrence-id><summary>Gym</summary><dtstart tzid="America/New_York">20240306T070000</dtstart>')}</calendarCancel>`,
    );
    assert.deepEqual((await events(u.client, '20240304T000000', '20240308T000000')).found, ['Gym@20240304T070000', 'Gym@20240307T070000']);
    await fails(u.client, '<calendarCancel calendar="Calendar" itemUID="gym" recurrenceId="tomorrow"/>', /invalid recurrenceId/);
    await fails(u.client, '<calendarCancel calendar="Calendar" itemUID="nope" recurrenceId="20240305T070000"/>', /not found/);
  });

  test('calendarImport: Google-, Outlook- and Apple-style exports, all items or none; same UIDs replaced', async () => {
    const u = await newUser('Europe/London');
    // Shaped like a Google Calendar export: X-WR properties, a VTIMEZONE, a weekly event with a moved occurrence.
    const google = [
      'BEGIN:VCALENDAR', 'PRODID:-//Google Inc//Google Calendar 70.9054//EN', 'VERSION:2.0', 'CALSCALE:GREGORIAN', 'METHOD:PUBLISH',
      'X-WR-CALNAME:Work', 'X-WR-TIMEZONE:Europe/London',
      'BEGIN:VTIMEZONE', 'TZID:Europe/London', 'X-LIC-LOCATION:Europe/London',
      'BEGIN:DAYLIGHT', 'TZOFFSETFROM:+0000', 'TZOFFSETTO:+0100', 'TZNAME:BST', 'DTSTART:19700329T010000', 'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU', 'END:DAYLIGHT',
      'BEGIN:STANDARD', 'TZOFFSETFROM:+0100', 'TZOFFSETTO:+0000', 'TZNAME:GMT', 'DTSTART:19701025T020000', 'RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU', 'END:STANDARD',
      'END:VTIMEZONE',
      'BEGIN:VEVENT', 'DTSTART;TZID=Europe/London:20240108T093000', 'DTEND;TZID=Europe/London:20240108T100000', 'RRULE:FREQ=WEEKLY;BYDAY=MO',
      'DTSTAMP:20240101T000000Z', 'UID:weekly-sync@google.com', 'SUMMARY:Weekly sync', 'END:VEVENT',
      'BEGIN:VEVENT', 'DTSTART;TZID=Europe/London:20240116T150000', 'DTEND;TZID=Europe/London:20240116T153000', 'RECURRENCE-ID;TZID=Europe/London:20240115T093000',
      'DTSTAMP:20240101T000000Z', 'UID:weekly-sync@google.com', 'SUMMARY:Weekly sync (moved)', 'END:VEVENT',
      'BEGIN:VEVENT', 'DTSTART;VALUE=DATE:20240110', 'DTEND;VALUE=DATE:20240111', 'DTSTAMP:20240101T000000Z', 'UID:holiday@google.com', 'SUMMARY:Day off', 'TRANSP:TRANSPARENT', 'END:VEVENT',
      'END:VCALENDAR', '',
    ].join('\r\n');
    await postUpload(server, u, 'g', Buffer.from(google, 'utf8'), 'work.ics', 'text/calendar');
    await ok(u.client, '<calendarImport calendar="Calendar" uploadID="g"/>');
    assert.deepEqual((await events(u.client, '20240108T000000', '20240120T000000')).found, [
      'Weekly sync@20240108T093000',
      'Day off@20240110',
      'Weekly sync (moved)@20240116T150000',
    ]);
    // Shaped like an Outlook export: a Windows zone name without a VTIMEZONE it can be read by.
    const outlook = [
      'BEGIN:VCALENDAR', 'PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN', 'VERSION:2.0', 'METHOD:PUBLISH',
      'BEGIN:VEVENT', 'UID:040000008200E00074C5B7101A82E008', 'SUMMARY:Budget review', 'DTSTART;TZID="W. Europe Standard Time":20240109T140000',
      'DTEND;TZID="W. Europe Standard Time":20240109T150000', 'X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE', 'DTSTAMP:20240101T000000Z', 'END:VEVENT',
      // The weekly sync again, renamed: it replaces the Google one.
      'BEGIN:VEVENT', 'UID:weekly-sync@google.com', 'SUMMARY:Weekly sync v2', 'DTSTART:20240108T093000Z', 'DURATION:PT30M', 'DTSTAMP:20240101T000000Z', 'END:VEVENT',
      'END:VCALENDAR', '',
    ].join('\r\n');
    await postUpload(server, u, 'o', Buffer.from(outlook, 'utf8'), 'outlook.ics', 'text/calendar');
    await ok(u.client, '<calendarImport calendar="Calendar" uploadID="o"/>');
    const after = await events(u.client, '20240108T000000', '20240110T000000');
    assert.deepEqual(after.found, ['Weekly sync v2@20240108T093000', 'Budget review@20240109T130000']);
    assert.equal(after.days[1]!.element('event')!.attrs.busyStatus, 'TENTATIVE');
    // Shaped like an Apple Calendar export: X-APPLE properties, a VALARM with X-WR-ALARMUID, a floating all-day item.
    const apple = [
      'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//Apple Inc.//macOS 14.2//EN', 'CALSCALE:GREGORIAN', 'X-WR-CALNAME:Home',
      'BEGIN:VTIMEZONE', 'TZID:America/Los_Angeles', 'BEGIN:DAYLIGHT', 'TZOFFSETFROM:-0800', 'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU', 'DTSTART:20070311T020000', 'TZNAME:PDT', 'TZOFFSETTO:-0700', 'END:DAYLIGHT',
      'BEGIN:STANDARD', 'TZOFFSETFROM:-0700', 'RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU', 'DTSTART:20071104T020000', 'TZNAME:PST', 'TZOFFSETTO:-0800', 'END:STANDARD', 'END:VTIMEZONE',
      'BEGIN:VEVENT', 'CREATED:20240101T120000Z', 'UID:5F1E2D3C-APPLE', 'DTEND;TZID=America/Los_Angeles:20240111T100000', 'SUMMARY:Dentist', 'DTSTART;TZID=America/Los_Angeles:20240111T090000',
      'X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC', 'DTSTAMP:20240101T120000Z', 'SEQUENCE:1',
      'BEGIN:VALARM', 'X-WR-ALARMUID:0A1B2C3D', 'UID:0A1B2C3D', 'TRIGGER:-PT30M', 'ACTION:DISPLAY', 'DESCRIPTION:Reminder', 'END:VALARM', 'END:VEVENT',
      'END:VCALENDAR', '',
    ].join('\r\n');
    await postUpload(server, u, 'a', Buffer.from(apple, 'utf8'), 'home.ics', 'text/calendar');
    await ok(u.client, '<calendarImport calendar="Calendar" uploadID="a"/>');
    // 09:00 in Los Angeles (PST, UTC−8) is 17:00 in London (GMT); its alarm half an hour before.
    assert.deepEqual((await events(u.client, '20240111T000000', '20240112T000000')).found, ['Dentist@20240111T170000']);
    const alarm = await ok(u.client, '<findEvents calendar="Calendar" timeFrom="20240111T160000" timeTill="20240111T170000" byAlarm="yes"/>');
    assert.deepEqual(alarm.messages.flatMap((m) => m.elements('event')).map((e) => e.attrs.alarmTime), ['20240111T163000']);
    // A file with one broken item imports nothing.
    const broken = google.replace('UID:holiday@google.com', 'UID:other').replace('DTSTART;VALUE=DATE:20240110', 'DTSTART:2024-99-99');
    await postUpload(server, u, 'b', Buffer.from(broken.replace(/Weekly sync/g, 'Changed'), 'utf8'), 'broken.ics', 'text/calendar');
    await fails(u.client, '<calendarImport calendar="Calendar" uploadID="b"/>', /invalid iCalendar data.*nothing was imported/);
    assert.deepEqual((await events(u.client, '20240108T000000', '20240110T000000')).found, ['Weekly sync v2@20240108T093000', 'Budget review@20240109T130000']);
    await fails(u.client, '<calendarImport calendar="Calendar" uploadID="missing"/>', /uploaded file not found/);
  });

  test('freeBusyRead: own and another account of the domain, merged busy periods in the reader zone, details hidden', async () => {
    const owner = await newUser('UTC');
    await ok(owner.client, `<calendarPublish calendar="Calendar">${vevent('<uid>f1</uid><summary>Secret 1</summary><dtstart>20240501T090000Z</dtstart><dtend>20240501T100000Z</dtend>')}</calendarPublish>`);
    await ok(owner.client, `<calendarPublish calendar="Calendar">${vevent('<uid>f2</uid><summary>Secret 2</summary><dtstart>20240501T093000Z</dtstart><dtend>20240501T110000Z</dtend>')}</calendarPublish>`);
    await ok(owner.client, `<calendarPublish calendar="Calendar">${vevent('<uid>f3</uid><summary>Maybe</summary><dtstart>20240501T130000Z</dtstart><dtend>20240501T140000Z</dtend><busystatus>TENTATIVE</busystatus>')}</calendarPublish>`);
    await ok(owner.client, `<calendarPublish calendar="Calendar">${vevent('<uid>f4</uid><summary>Free</summary><dtstart>20240501T150000Z</dtstart><dtend>20240501T160000Z</dtend><transp>TRANSPARENT</transp>')}</calendarPublish>`);
    const reader = await newUser('Europe/Berlin');
    const reply = await ok(reader.client, `<freeBusyRead userName="${owner.address}" timeFrom="20240501T000000" timeTill="20240502T000000"/>`);
    const data = reply.messages.find((m) => m.name === 'freeBusyData')!;
    assert.equal(data.attrs.userName, owner.address);
    const periods = data.element('vfreebusy')!.elements('freebusy').map((f) => `${f.attrs.FBTYPE} ${f.text()}`);
    assert.deepEqual(periods, ['BUSY 20240501T110000/20240501T130000', 'BUSY-TENTATIVE 20240501T150000/20240501T160000']);
    assert.doesNotMatch(data.toString(), /Secret/);
    const own = await ok(owner.client, '<freeBusyRead timeFrom="20240501T000000" timeTill="20240502T000000"/>');
    assert.equal(own.messages[0]!.element('vfreebusy')!.elements('freebusy').length, 2);
    // Working time set: the rest of the day (and a weekend day) shows as unavailable, in the owner's zone.
    await ok(owner.client, '<prefsStore><WorkDays>MO,TU,WE,TH,FR</WorkDays><WorkDayStart>08:00</WorkDayStart><WorkDayEnd>18:00</WorkDayEnd></prefsStore>');
    const working = await ok(reader.client, `<freeBusyRead userName="${owner.address}" timeFrom="20240501T000000" timeTill="20240505T000000"/>`);
    const all = working.messages[0]!.element('vfreebusy')!.elements('freebusy').map((f) => `${f.attrs.FBTYPE} ${f.text()}`);
    assert.deepEqual(all.slice(0, 4), [
      'BUSY-UNAVAILABLE 20240501T000000/20240501T100000',
      'BUSY 20240501T110000/20240501T130000',
      'BUSY-TENTATIVE 20240501T150000/20240501T160000',
      'BUSY-UNAVAILABLE 20240501T200000/20240502T100000',
    ]);
    // Friday 18:00 UTC to Sunday's end in Berlin (the request's end): one unavailable stretch.
    assert.equal(all.at(-1), 'BUSY-UNAVAILABLE 20240503T200000/20240505T000000');
    await fails(owner.client, '<prefsStore><WorkDays>Monday</WorkDays></prefsStore>', /WorkDays/);
    await fails(reader.client, '<freeBusyRead userName="nobody-here" timeFrom="20240501T000000" timeTill="20240502T000000"/>', /unknown user/);
  });

  test('calendarOpen of a url: a remote iCalendar document fetched over HTTP, read-only', async () => {
    const u = await newUser('UTC');
    const ics = [
      'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//test//remote//EN',
      'BEGIN:VEVENT', 'UID:r1', 'SUMMARY:Public holiday', 'DTSTART;VALUE=DATE:20241225', 'DTEND;VALUE=DATE:20241226', 'DTSTAMP:20240101T000000Z', 'END:VEVENT',
      'BEGIN:VEVENT', 'UID:r2', 'SUMMARY:Town meeting', 'DTSTART:20241220T180000Z', 'DURATION:PT2H', 'RRULE:FREQ=WEEKLY;COUNT=3', 'DTSTAMP:20240101T000000Z', 'END:VEVENT',
      'END:VCALENDAR', '',
    ].join('\r\n');
    let streamed = 0;
    const web = http.createServer((req, res) => {
      if (req.url === '/cal.ics') res.writeHead(200, { 'Content-Type': 'text/calendar' }).end(ics);
      else if (req.url === '/huge.ics') {
        // 11 MB with no Content-Length: refused while it arrives, not after.
        res.writeHead(200, { 'Content-Type': 'text/calendar' });
        const chunk = Buffer.alloc(64 * 1024, 'X');
        const push = (): void => {
          while (streamed < 11 * 1024 * 1024) {
            streamed += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', push);
          }
          res.end();
        };
        res.on('error', () => {});
        push();
      } else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
    try {
      await ok(u.client, `<calendarOpen calendar="Public" url="${base}/cal.ics" mailbox="ignored" encrypted="no"/>`);
      const reply = await ok(u.client, '<findEvents calendar="Public" timeFrom="20241220T000000" timeTill="20241228T000000"/>');
      const found = reply.messages.flatMap((m) => m.elements('event')).map((e) => `${e.element('summary')!.text()}@${e.attrs.timeFrom ?? e.attrs.dateFrom}#${e.attrs.UID}`);
      assert.deepEqual(found, ['Town meeting@20241220T180000#2', 'Public holiday@20241225#1', 'Town meeting@20241227T180000#2']);
      const item = await ok(u.client, '<calendarReadItem calendar="Public" UID="1"/>');
      assert.match(item.messages[0]!.toString(), /<summary>Public holiday<\/summary>/);
      await fails(u.client, `<calendarPublish calendar="Public">${vevent('<uid>x</uid><dtstart>20241220T100000Z</dtstart>')}</calendarPublish>`, /calendar opened from a URL/);
      await fails(u.client, '<calendarRead calendar="Public" UID="1"/>', /calendar opened from a URL/);
      await ok(u.client, '<calendarClose calendar="Public"/>');
      await fails(u.client, `<calendarOpen calendar="Missing" url="${base}/nothing.ics"/>`, /HTTP 404/);
      await fails(u.client, `<calendarOpen calendar="Huge" url="${base}/huge.ics"/>`, /too large/);
      await fails(u.client, '<calendarOpen calendar="Files" url="file:///etc/passwd"/>', /must be http/);
    } finally {
      web.close();
    }
  });

  test('bad input: not open, bad times, bad iCalendar; ISO times; the organizer flag', async () => {
    const u = await newUser('UTC');
    await fails(u.client, '<findEvents calendar="Nope" timeFrom="20240101T000000" timeTill="20240102T000000"/>', 'calendar has not been opened');
    await fails(u.client, '<findEvents calendar="Calendar" timeFrom="yesterday" timeTill="20240102T000000"/>', /invalid timeFrom/);
    await fails(u.client, '<findEvents calendar="Calendar" timeFrom="20240102T000000" timeTill="20240101T000000"/>', /after/);
    await fails(u.client, '<findEvents calendar="Calendar" timeFrom="20200101T000000" timeTill="20240101T000000"/>', /too long/);
    await fails(u.client, '<calendarOpen calendar="Calendar"/>', 'calendar has already been opened');
    await fails(u.client, '<calendarPublish calendar="Calendar"><iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar><bad name="x"/></vCalendar></iCalendar></calendarPublish>', /iCalendar/);
    await fails(u.client, '<calendarPublish calendar="Calendar"/>', /iCalendar/);
    await ok(u.client, `<calendarPublish calendar="Calendar" sendRequests="no">${vevent(`<uid>m1</uid><organizer>MAILTO:${u.address}</organizer><attendee>MAILTO:x@example.com</attendee><dtstart>20240301T100000Z</dtstart>`)}</calendarPublish>`);
    // ISO times with a space, as some clients send them.
    const iso = await ok(u.client, '<findEvents calendar="Calendar" timeFrom="2024-03-01 00:00:00" timeTill="2024-03-02 00:00:00"/>');
    const found = iso.messages.flatMap((m) => m.elements('event'));
    assert.equal(found.length, 1);
    assert.equal(found[0]!.attrs.organizer, 'yes');
    await ok(u.client, '<calendarClose calendar="Calendar"/>');
    await fails(u.client, '<calendarClose calendar="Calendar"/>', 'calendar has not been opened');
  });
});
