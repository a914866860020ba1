/**
 * The XIMSS XML presentation of iCalendar ↔ RFC 5545 text (src/services/calendar/xcal.ts):
 * the spec's example 027 both ways, exports as Google Calendar, Outlook/Exchange and Apple
 * Calendar write them round-tripped text → XML → text (compared as ical.js reads them),
 * recurrence, escaping, non-ASCII text and folding, busy status, and malformed input that
 * must be an ICalendarFormatError and nothing else.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import ICAL from 'ical.js';
import { XmlElement, el, serialize } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { ICalendarFormatError, ICALENDAR_LIMITS, textToXcal, textToXcalList, xcalToText } from '../src/services/calendar/xcal.js';

const EXAMPLE = fileURLToPath(new URL('../../shared/spec/examples/027-calendarPublish.txt', import.meta.url));

function ics(...lines: string[]): string {
  return lines.join('\r\n') + '\r\n';
}

/** The element as a client would receive it: serialized, then parsed again. */
function overTheWire(element: XmlElement): XmlElement {
  return parseXml(serialize(element));
}

/** text → XML (over the wire) → text. */
function roundTrip(text: string): string {
  return xcalToText(overTheWire(textToXcal(text)));
}

function assertSameCalendar(actual: string, expected: string): void {
  assert.deepStrictEqual(ICAL.parse(actual), ICAL.parse(expected));
}

function child(parent: XmlElement, ...path: string[]): XmlElement {
  let e = parent;
  for (const name of path) {
    const next = e.element(name);
    assert.ok(next, `<${name}> in <${e.name}>`);
    e = next;
  }
  return e;
}

/** Asserts a content line (unfolded) of `text`. */
function hasLine(text: string, line: string): void {
  const unfolded = '\r\n' + text.replace(/\r\n[ \t]/g, '');
  assert.ok(unfolded.includes('\r\n' + line + '\r\n'), `the line ${line}`);
}

function throwsFormatError(convert: () => unknown, pattern?: RegExp, label = ''): void {
  let thrown: unknown;
  try {
    convert();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof ICalendarFormatError, `${label}: an ICalendarFormatError, not ${String(thrown)}`);
  if (pattern) assert.match(thrown.message, pattern, label);
}

// Imitates Google Calendar's export (Settings › Export): X-WR-* calendar properties, a
// VTIMEZONE with X-LIC-LOCATION, a weekly series with EXDATEs and a moved occurrence,
// attendees with X-NUM-GUESTS, the Meet footer in DESCRIPTION, an all-day event.
const GOOGLE = ics(
  'BEGIN:VCALENDAR',
  'PRODID:-//Google Inc//Google Calendar 70.9054//EN',
  'VERSION:2.0',
  'CALSCALE:GREGORIAN',
  'METHOD:PUBLISH',
  'X-WR-CALNAME:Plattform-Team',
  'X-WR-TIMEZONE:Europe/Berlin',
  'X-WR-CALDESC:Termine des Plattform-Teams\\, inkl. Bereitschaft',
  'BEGIN:VTIMEZONE',
  'TZID:Europe/Berlin',
  'X-LIC-LOCATION:Europe/Berlin',
  'BEGIN:DAYLIGHT',
  'TZOFFSETFROM:+0100',
  'TZOFFSETTO:+0200',
  'TZNAME:CEST',
  'DTSTART:19700329T020000',
  'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU',
  'END:DAYLIGHT',
  'BEGIN:STANDARD',
  'TZOFFSETFROM:+0200',
  'TZOFFSETTO:+0100',
  'TZNAME:CET',
  'DTSTART:19701025T030000',
  'RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU',
  'END:STANDARD',
  'END:VTIMEZONE',
  'BEGIN:VEVENT',
  'DTSTART;TZID=Europe/Berlin:20240108T100000',
  'DTEND;TZID=Europe/Berlin:20240108T101500',
  'RRULE:FREQ=WEEKLY;WKST=MO;UNTIL=20240628T075959Z;BYDAY=MO,WE,FR',
  'EXDATE;TZID=Europe/Berlin:20240110T100000',
  'EXDATE;TZID=Europe/Berlin:20240301T100000,20240304T100000',
  'DTSTAMP:20240105T120000Z',
  'ORGANIZER;CN=Anna Schmidt:mailto:anna.schmidt@example.com',
  'UID:7kukuqrfedlm2fbl0mvfpq6h2c@google.com',
  'ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;RSVP=TRUE',
  ' ;CN=Anna Schmidt;X-NUM-GUESTS=0:mailto:anna.schmidt@example.com',
  'ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=',
  ' TRUE;CN=Jürgen Müller;X-NUM-GUESTS=0:mailto:juergen.mueller@example.com',
  'X-GOOGLE-CONFERENCE:https://meet.google.com/abc-defg-hij',
  'CREATED:20231201T090000Z',
  'DESCRIPTION:Kurzes Stand-up\\, max. 15 Minuten.\\n\\nMit Google Meet teilneh',
  ' men: https://meet.google.com/abc-defg-hij\\n\\n-::~:~::~:~:~:~:~:~:~:~:~:~:~:',
  ' ~:~:~:~:~:~:~:~:~::~:~::-',
  'LAST-MODIFIED:20240105T115959Z',
  'LOCATION:Raum 3.14\\, Hauptgebäude',
  'SEQUENCE:2',
  'STATUS:CONFIRMED',
  'SUMMARY:Stand-up',
  'TRANSP:OPAQUE',
  'BEGIN:VALARM',
  'ACTION:DISPLAY',
  'DESCRIPTION:This is an event reminder',
  'TRIGGER:-P0DT0H10M0S',
  'END:VALARM',
  'END:VEVENT',
  'BEGIN:VEVENT',
  'DTSTART;TZID=Europe/Berlin:20240115T110000',
  'DTEND;TZID=Europe/Berlin:20240115T111500',
  'DTSTAMP:20240105T120000Z',
  'ORGANIZER;CN=Anna Schmidt:mailto:anna.schmidt@example.com',
  'UID:7kukuqrfedlm2fbl0mvfpq6h2c@google.com',
  'RECURRENCE-ID;TZID=Europe/Berlin:20240115T100000',
  'CREATED:20231201T090000Z',
  'LAST-MODIFIED:20240105T115959Z',
  'SEQUENCE:3',
  'STATUS:CONFIRMED',
  'SUMMARY:Stand-up (verschoben)',
  'TRANSP:OPAQUE',
  'END:VEVENT',
  'BEGIN:VEVENT',
  'DTSTART;VALUE=DATE:20240212',
  'DTEND;VALUE=DATE:20240213',
  'DTSTAMP:20240105T120000Z',
  'UID:2b9s1ul0pl1d0c3v7nfh2q6f0k@google.com',
  'CREATED:20240102T080000Z',
  'DESCRIPTION:',
  'LAST-MODIFIED:20240102T080000Z',
  'LOCATION:',
  'SEQUENCE:0',
  'STATUS:CONFIRMED',
  'SUMMARY:Rosenmontag 🎭',
  'TRANSP:TRANSPARENT',
  'END:VEVENT',
  'END:VCALENDAR',
);

// Imitates an Outlook / Exchange 2010 meeting request: Windows time zone names, quoted CNs
// with commas, LANGUAGE parameters, a THISANDFUTURE exception, the X-MICROSOFT-CDO-*
// family and an HTML body in X-ALT-DESC.
const OUTLOOK = ics(
  'BEGIN:VCALENDAR',
  'METHOD:REQUEST',
  'PRODID:Microsoft Exchange Server 2010',
  'VERSION:2.0',
  'BEGIN:VTIMEZONE',
  'TZID:W. Europe Standard Time',
  'BEGIN:STANDARD',
  'DTSTART:16010101T030000',
  'TZOFFSETFROM:+0200',
  'TZOFFSETTO:+0100',
  'RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10',
  'END:STANDARD',
  'BEGIN:DAYLIGHT',
  'DTSTART:16010101T020000',
  'TZOFFSETFROM:+0100',
  'TZOFFSETTO:+0200',
  'RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3',
  'END:DAYLIGHT',
  'END:VTIMEZONE',
  'BEGIN:VEVENT',
  'ORGANIZER;CN="Lefèvre, Marie":mailto:marie.lefevre@contoso.com',
  'ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN="Doe, John"',
  ' :mailto:john.doe@contoso.com',
  'ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Konferenzra',
  ' um 4.01;CUTYPE=ROOM:mailto:room401@contoso.com',
  'DESCRIPTION;LANGUAGE=en-US:Quarterly review\\; please bring the figures\\, c',
  ' harts and notes.\\n\\n',
  'RRULE:FREQ=MONTHLY;COUNT=6;BYDAY=1TU',
  'EXDATE;TZID=W. Europe Standard Time:20240507T140000',
  'UID:040000008200E00074C5B7101A82E00800000000A0C4E1F3A1B3DA0100000000000000001',
  ' 0000000D6E2A1F0B1C04B4F9C4D5E6F7A8B9C0D',
  'SUMMARY;LANGUAGE=en-US:Q2 review',
  'DTSTART;TZID=W. Europe Standard Time:20240402T140000',
  'DTEND;TZID=W. Europe Standard Time:20240402T150000',
  'CLASS:PUBLIC',
  'PRIORITY:5',
  'DTSTAMP:20240320T101500Z',
  'TRANSP:OPAQUE',
  'STATUS:CONFIRMED',
  'SEQUENCE:1',
  'LOCATION;LANGUAGE=en-US:Konferenzraum 4.01',
  'X-MICROSOFT-CDO-APPT-SEQUENCE:1',
  'X-MICROSOFT-CDO-OWNERAPPTID:2122373423',
  'X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE',
  'X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY',
  'X-MICROSOFT-CDO-ALLDAYEVENT:FALSE',
  'X-MICROSOFT-CDO-IMPORTANCE:1',
  'X-MICROSOFT-CDO-INSTTYPE:1',
  'X-MICROSOFT-DONOTFORWARDMEETING:FALSE',
  'X-MICROSOFT-DISALLOW-COUNTER:FALSE',
  'X-ALT-DESC;FMTTYPE=text/html:<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2//E',
  ' N">\\n<HTML>\\n<HEAD>\\n<META NAME="Generator" CONTENT="MS Exchange Server ve',
  ' rsion 14.02.5004.000">\\n<TITLE></TITLE>\\n</HEAD>\\n<BODY>\\n<P DIR=LTR><SPAN',
  '  LANG="en-us"><FONT FACE="Calibri">Quarterly review\\; please bring the fig',
  ' ures\\, charts &amp\\; notes.</FONT></SPAN></P>\\n</BODY>\\n</HTML>',
  'BEGIN:VALARM',
  'DESCRIPTION:REMINDER',
  'TRIGGER;RELATED=START:-PT15M',
  'ACTION:DISPLAY',
  'END:VALARM',
  'END:VEVENT',
  'BEGIN:VEVENT',
  'ORGANIZER;CN="Lefèvre, Marie":mailto:marie.lefevre@contoso.com',
  'UID:040000008200E00074C5B7101A82E00800000000A0C4E1F3A1B3DA0100000000000000001',
  ' 0000000D6E2A1F0B1C04B4F9C4D5E6F7A8B9C0D',
  'RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=W. Europe Standard Time:20240604T1400',
  ' 00',
  'SUMMARY;LANGUAGE=en-US:Q2 review (new room)',
  'DTSTART;TZID=W. Europe Standard Time:20240604T150000',
  'DTEND;TZID=W. Europe Standard Time:20240604T160000',
  'DTSTAMP:20240320T101500Z',
  'SEQUENCE:2',
  'X-MICROSOFT-CDO-BUSYSTATUS:OOF',
  'X-MICROSOFT-CDO-INSTTYPE:3',
  'END:VEVENT',
  'END:VCALENDAR',
);

// Imitates Apple Calendar (macOS 14) via iCloud CalDAV: X-APPLE-* properties, a structured
// location with quoted parameters, attachments by URI and inline (VALUE=BINARY), alarms
// with X-WR-ALARMUID, an acknowledged one and the "none" alarm Apple writes, and a to-do.
const APPLE = ics(
  'BEGIN:VCALENDAR',
  'VERSION:2.0',
  'PRODID:-//Apple Inc.//macOS 14.2.1//EN',
  'CALSCALE:GREGORIAN',
  'BEGIN:VTIMEZONE',
  'TZID:America/Los_Angeles',
  'BEGIN:DAYLIGHT',
  'TZOFFSETFROM:-0800',
  'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU',
  'DTSTART:20070311T020000',
  'TZNAME:PDT',
  'TZOFFSETTO:-0700',
  'END:DAYLIGHT',
  'BEGIN:STANDARD',
  'TZOFFSETFROM:-0700',
  'RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU',
  'DTSTART:20071104T020000',
  'TZNAME:PST',
  'TZOFFSETTO:-0800',
  'END:STANDARD',
  'END:VTIMEZONE',
  'BEGIN:VEVENT',
  'CREATED:20240110T181512Z',
  'UID:3F2C9A1E-8B7D-4C55-9E1A-2D6B0C7F4E11',
  'DTEND;TZID=America/Los_Angeles:20240118T130000',
  'TRANSP:OPAQUE',
  'X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC',
  'SUMMARY:Lunch with Zoë 🍣',
  'LAST-MODIFIED:20240110T181620Z',
  'DTSTAMP:20240110T181620Z',
  'DTSTART;TZID=America/Los_Angeles:20240118T120000',
  'LOCATION:Sushi Ran\\n107 Caledonia St\\, Sausalito\\, CA  94965\\, United St',
  ' ates',
  'X-APPLE-STRUCTURED-LOCATION;VALUE=URI;X-ADDRESS="107 Caledonia St, Sausali',
  ' to, CA  94965, United States";X-APPLE-MAPKIT-HANDLE=CAESvAEIrfx3EI+Vs6v0j6',
  ' 6PwwEaEgkAAAAAAIBCQBHh4uE3N9BewA==;X-APPLE-RADIUS=70.58;X-APPLE-REFERENCEF',
  ' RAME=1;X-TITLE=Sushi Ran:geo:37.859300,-122.485300',
  'SEQUENCE:1',
  'URL;VALUE=URI:https://www.sushiran.com/',
  'ATTACH;FMTTYPE=application/pdf;SIZE=48213;MANAGED-ID=7A1C2F;FILENAME=menu.p',
  ' df:https://p42-caldav.icloud.com/123456789/calendars/home/3F2C9A1E.ics?att',
  ' achment=7A1C2F',
  'ATTACH;VALUE=BINARY;ENCODING=BASE64;FMTTYPE=image/png;X-APPLE-FILENAME=dot.',
  ' png:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChw',
  ' GA60e6kgAAAABJRU5ErkJggg==',
  'X-APPLE-CREATOR-IDENTITY:com.apple.calendar',
  'X-APPLE-CREATOR-TEAM-IDENTITY:0000000000',
  'BEGIN:VALARM',
  'X-WR-ALARMUID:8C2B6F0E-51D4-4E0A-9A63-2B9C7D1E5F30',
  'UID:8C2B6F0E-51D4-4E0A-9A63-2B9C7D1E5F30',
  'TRIGGER:-PT30M',
  'ATTACH;VALUE=URI:Chord',
  'ACTION:AUDIO',
  'X-APPLE-DEFAULT-ALARM:TRUE',
  'ACKNOWLEDGED:20240118T193000Z',
  'END:VALARM',
  'BEGIN:VALARM',
  'X-WR-ALARMUID:0D7E1A44-3C2B-4B7F-8E55-90A1B2C3D4E5',
  'UID:0D7E1A44-3C2B-4B7F-8E55-90A1B2C3D4E5',
  'TRIGGER;VALUE=DATE-TIME:19760401T005545Z',
  'ACTION:NONE',
  'END:VALARM',
  'END:VEVENT',
  'BEGIN:VTODO',
  'CREATED:20240111T070000Z',
  'UID:A1B2C3D4-0000-4000-8000-000000000001',
  'SUMMARY:Reserve table',
  'DUE;VALUE=DATE:20240117',
  'CATEGORIES:Personal,Food\\, drinks',
  'PERCENT-COMPLETE:40',
  'PRIORITY:1',
  'STATUS:IN-PROCESS',
  'X-APPLE-SORT-ORDER:726652800',
  'DTSTAMP:20240111T070000Z',
  'RELATED-TO;RELTYPE=PARENT:3F2C9A1E-8B7D-4C55-9E1A-2D6B0C7F4E11',
  'END:VTODO',
  'END:VCALENDAR',
);

describe('the spec example 027', () => {
  const source = readFileSync(EXAMPLE, 'utf8');
  const xml = source.slice(source.indexOf('<iCalendar'), source.indexOf('</iCalendar>') + '</iCalendar>'.length);
  const original = parseXml(xml);

  test('XML → text → XML gives the example back', () => {
    const text = xcalToText(original);
    assert.equal(serialize(overTheWire(textToXcal(text))), serialize(original));
  });

  test('the text is RFC 5545 with the busy status as Outlook writes it', () => {
    const text = xcalToText(original);
    assert.equal(text.slice(0, 90), 'BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nPRODID:CommuniGate Pro 5.1.7\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\n');
    assert.equal(text.slice(-27), 'END:VEVENT\r\nEND:VCALENDAR\r\n');
    for (const line of [
      'ORGANIZER;CN=Big Boss:MAILTO:boss@company.dom',
      'RRULE:FREQ=WEEKLY;BYDAY=MO,TH',
      'DTSTART;TZID=NorthAmerica/Pacific:20060515T100000',
      'X-MICROSOFT-CDO-BUSYSTATUS:BUSY',
      'LAST-MODIFIED:20060516T034850Z',
    ]) {
      hasLine(text, line);
    }
    const [, , components] = ICAL.parse(text) as [string, unknown[], [string, unknown[][]][]];
    const event = components[0]!;
    assert.equal(event[0], 'vevent');
    assert.deepEqual(event[1].find((p) => p[0] === 'dtstart'), ['dtstart', { tzid: 'NorthAmerica/Pacific' }, 'date-time', '2006-05-15T10:00:00']);
  });

  test('the lower-case spellings are read the same', () => {
    const lower = parseXml(xml.replace(/iCalendar/g, 'icalendar').replace(/vCalendar/g, 'vcalendar'));
    assert.equal(xcalToText(lower), xcalToText(original));
    // A vCalendar element alone is one calendar too.
    assert.equal(xcalToText(child(original, 'vCalendar')), xcalToText(original));
  });
});

describe('client exports round-trip text → XML → text', () => {
  for (const [name, text] of [['Google Calendar', GOOGLE], ['Outlook / Exchange', OUTLOOK], ['Apple Calendar', APPLE]] as const) {
    test(`${name}: every property, parameter and value survives`, () => {
      const back = roundTrip(text);
      assertSameCalendar(back, text);
      // And the XML of the written text is the same XML.
      assert.equal(serialize(textToXcal(back)), serialize(textToXcal(text)));
      for (const line of back.split('\r\n')) assert.ok(Buffer.byteLength(line, 'utf8') <= 75, `folded: ${line}`);
    });
  }

  test('Google: calendar properties are vCalendar attributes, values unescaped', () => {
    const calendar = child(textToXcal(GOOGLE), 'vCalendar');
    assert.deepEqual(calendar.attrs, {
      prodid: '-//Google Inc//Google Calendar 70.9054//EN',
      version: '2.0',
      calscale: 'GREGORIAN',
      method: 'PUBLISH',
      'x-wr-calname': 'Plattform-Team',
      'x-wr-timezone': 'Europe/Berlin',
      'x-wr-caldesc': 'Termine des Plattform-Teams, inkl. Bereitschaft',
    });
    assert.deepEqual(calendar.elements().map((e) => e.name), ['vtimezone', 'vevent', 'vevent', 'vevent']);
    const timezone = child(calendar, 'vtimezone');
    assert.deepEqual(timezone.elements().map((e) => e.name), ['tzid', 'x-lic-location', 'daylight', 'standard']);
    assert.equal(child(timezone, 'daylight', 'tzoffsetto').text(), '+0200');
    const event = child(calendar, 'vevent');
    assert.deepEqual(event.elements('exdate').map((e) => [e.attrs, e.text()]), [
      [{ tzid: 'Europe/Berlin' }, '20240110T100000'],
      [{ tzid: 'Europe/Berlin' }, '20240301T100000,20240304T100000'],
    ]);
    const [, second] = event.elements('attendee');
    assert.deepEqual(second!.attrs, { CUTYPE: 'INDIVIDUAL', ROLE: 'REQ-PARTICIPANT', PARTSTAT: 'NEEDS-ACTION', RSVP: 'TRUE', CN: 'Jürgen Müller', 'X-NUM-GUESTS': '0' });
    assert.equal(child(event, 'location').text(), 'Raum 3.14, Hauptgebäude');
    assert.match(child(event, 'description').text(), /^Kurzes Stand-up, max\. 15 Minuten\.\n\nMit Google Meet teilnehmen: https:\/\/meet/);
    assert.equal(child(event, 'valarm', 'trigger').text(), '-P0DT0H10M0S');
    const allDay = calendar.elements('vevent')[2]!;
    assert.deepEqual([child(allDay, 'dtstart').attrs, child(allDay, 'dtstart').text()], [{ value: 'DATE' }, '20240212']);
    assert.equal(child(allDay, 'summary').text(), 'Rosenmontag 🎭');
  });

  test('Outlook: busy status, quoted names, HTML description, THISANDFUTURE', () => {
    const [master, exception] = child(textToXcal(OUTLOOK), 'vCalendar').elements('vevent');
    assert.equal(child(master!, 'busystatus').text(), 'TENTATIVE');
    assert.equal(master!.element('x-microsoft-cdo-busystatus'), undefined);
    assert.equal(child(master!, 'x-microsoft-cdo-intendedstatus').text(), 'BUSY');
    assert.deepEqual(child(master!, 'organizer').attrs, { CN: 'Lefèvre, Marie' });
    assert.deepEqual(child(master!, 'description').attrs, { LANGUAGE: 'en-US' });
    assert.equal(child(master!, 'description').text(), 'Quarterly review; please bring the figures, charts and notes.\n\n');
    const html = child(master!, 'x-alt-desc');
    assert.deepEqual(html.attrs, { FMTTYPE: 'text/html' });
    assert.match(html.text(), /<FONT FACE="Calibri">Quarterly review; please bring the figures, charts &amp; notes\.<\/FONT>/);
    assert.match(html.text(), /^<!DOCTYPE HTML PUBLIC "-\/\/W3C\/\/DTD HTML 3\.2\/\/EN">\n<HTML>/);
    assert.deepEqual(child(master!, 'valarm', 'trigger').attrs, { RELATED: 'START' });
    assert.deepEqual(child(exception!, 'recurrence-id').attrs, { range: 'THISANDFUTURE', tzid: 'W. Europe Standard Time' });
    assert.equal(child(exception!, 'recurrence-id').text(), '20240604T140000');
    assert.equal(child(exception!, 'busystatus').text(), 'UNAVAILABLE');
    // UNAVAILABLE is OOF again in text.
    hasLine(roundTrip(OUTLOOK), 'X-MICROSOFT-CDO-BUSYSTATUS:OOF');
  });

  test('Apple: X-APPLE properties, structured location, attachments, alarms, a to-do', () => {
    const calendar = child(textToXcal(APPLE), 'vCalendar');
    const event = child(calendar, 'vevent');
    const location = child(event, 'x-apple-structured-location');
    assert.deepEqual(location.attrs, {
      value: 'URI',
      'X-ADDRESS': '107 Caledonia St, Sausalito, CA  94965, United States',
      'X-APPLE-MAPKIT-HANDLE': 'CAESvAEIrfx3EI+Vs6v0j66PwwEaEgkAAAAAAIBCQBHh4uE3N9BewA==',
      'X-APPLE-RADIUS': '70.58',
      'X-APPLE-REFERENCEFRAME': '1',
      'X-TITLE': 'Sushi Ran',
    });
    assert.equal(location.text(), 'geo:37.859300,-122.485300');
    const [byUri, inline] = event.elements('attach');
    assert.match(byUri!.text(), /^https:\/\/p42-caldav\.icloud\.com\//);
    assert.equal(byUri!.attrs.value, undefined);
    assert.deepEqual(inline!.attrs, { value: 'BINARY', ENCODING: 'BASE64', FMTTYPE: 'image/png', 'X-APPLE-FILENAME': 'dot.png' });
    assert.equal(inline!.text(), 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==');
    const [sound, none] = event.elements('valarm');
    assert.equal(child(sound!, 'x-wr-alarmuid').text(), '8C2B6F0E-51D4-4E0A-9A63-2B9C7D1E5F30');
    assert.equal(child(sound!, 'attach').text(), 'Chord');
    assert.deepEqual([child(none!, 'trigger').attrs, child(none!, 'trigger').text()], [{ value: 'DATE-TIME' }, '19760401T005545Z']);
    const todo = child(calendar, 'vtodo');
    assert.equal(child(todo, 'categories').text(), 'Personal,Food\\, drinks');
    assert.deepEqual(child(todo, 'due').attrs, { value: 'DATE' });
    const back = roundTrip(APPLE);
    hasLine(back, 'CATEGORIES:Personal,Food\\, drinks');
    hasLine(back, 'TRIGGER;VALUE=DATE-TIME:19760401T005545Z');
    hasLine(back, 'ATTACH;VALUE=BINARY;ENCODING=BASE64;FMTTYPE=image/png;X-APPLE-FILENAME=dot.png:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==');
  });
});

describe('recurrence', () => {
  const SERIES = ics(
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'PRODID:-//ximssd tests//EN',
    'BEGIN:VEVENT',
    'UID:series-1',
    'DTSTAMP:20240101T000000Z',
    'DTSTART;TZID=Europe/Paris:20240102T090000',
    'DURATION:PT1H',
    'RRULE:FREQ=MONTHLY;INTERVAL=2;BYDAY=-1FR,1MO;BYSETPOS=1;COUNT=10;WKST=SU',
    'EXRULE:FREQ=YEARLY;BYMONTH=8',
    'EXDATE;TZID=Europe/Paris:20240105T090000,20240112T090000',
    'EXDATE;VALUE=DATE:20240119',
    'RDATE;VALUE=PERIOD:19960403T020000Z/19960403T040000Z,19960404T010000Z/PT3H',
    'RDATE;TZID=Europe/Paris:20240301T090000',
    'END:VEVENT',
    'BEGIN:VEVENT',
    'UID:series-1',
    'DTSTAMP:20240101T000000Z',
    'RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Paris:20240202T090000',
    'DTSTART;TZID=Europe/Paris:20240202T100000',
    'DURATION:PT90M',
    'END:VEVENT',
    'BEGIN:VFREEBUSY',
    'UID:fb-1',
    'DTSTAMP:20240101T000000Z',
    'FREEBUSY;FBTYPE=BUSY-TENTATIVE:20240102T080000Z/PT1H,20240103T080000Z/20240103T093000Z',
    'END:VFREEBUSY',
    'END:VCALENDAR',
  );

  test('RRULE, EXRULE, EXDATE with TZID, RDATE periods and RECURRENCE-ID with RANGE survive', () => {
    assertSameCalendar(roundTrip(SERIES), SERIES);
    const [master, exception] = child(textToXcal(SERIES), 'vCalendar').elements('vevent');
    assert.equal(child(master!, 'rrule').text(), 'FREQ=MONTHLY;INTERVAL=2;BYDAY=-1FR,1MO;BYSETPOS=1;COUNT=10;WKST=SU');
    assert.deepEqual(master!.elements('exdate').map((e) => [e.attrs, e.text()]), [
      [{ tzid: 'Europe/Paris' }, '20240105T090000,20240112T090000'],
      [{ value: 'DATE' }, '20240119'],
    ]);
    assert.deepEqual(master!.elements('rdate').map((e) => [e.attrs, e.text()]), [
      [{ value: 'PERIOD' }, '19960403T020000Z/19960403T040000Z,19960404T010000Z/PT3H'],
      [{ tzid: 'Europe/Paris' }, '20240301T090000'],
    ]);
    assert.deepEqual(child(exception!, 'recurrence-id').attrs, { range: 'THISANDFUTURE', tzid: 'Europe/Paris' });
    assert.equal(child(textToXcal(SERIES), 'vCalendar', 'vfreebusy', 'freebusy').text(), '20240102T080000Z/PT1H,20240103T080000Z/20240103T093000Z');
  });

  test('XML without value attributes: dates, periods, date-time triggers and inline data are recognized', () => {
    const xml = el('iCalendar', { xmlns: 'urn:ietf:params:xml:ns:xcal' },
      el('vCalendar', { version: '2.0', prodid: '-//client//EN' },
        el('vevent', undefined,
          el('uid', undefined, 'x-1'),
          el('dtstart', undefined, '20240212'),
          el('exdate', undefined, '20240219,20240226'),
          el('rdate', undefined, '20240301T090000Z/PT1H'),
          el('recurrenceId', { TZID: 'Europe/Paris' }, '20240212T090000'),
          el('attach', { FMTTYPE: 'image/png', ENCODING: 'BASE64' }, 'iVBORw0KGgo='),
          el('valarm', undefined, el('trigger', undefined, '20240211T090000Z'), el('action', undefined, 'DISPLAY')),
        ),
      ),
    );
    const text = xcalToText(xml);
    for (const line of [
      'DTSTART;VALUE=DATE:20240212',
      'EXDATE;VALUE=DATE:20240219,20240226',
      'RDATE;VALUE=PERIOD:20240301T090000Z/PT1H',
      'RECURRENCE-ID;TZID=Europe/Paris:20240212T090000',
      'TRIGGER;VALUE=DATE-TIME:20240211T090000Z',
      'ATTACH;VALUE=BINARY;FMTTYPE=image/png;ENCODING=BASE64:iVBORw0KGgo=',
    ]) {
      hasLine(text, line);
    }
    const event = child(textToXcal(text), 'vCalendar', 'vevent');
    assert.deepEqual(child(event, 'recurrence-id').attrs, { tzid: 'Europe/Paris' });
  });

  test('a DATE written without VALUE=DATE is read as a DATE', () => {
    const text = ics('BEGIN:VCALENDAR', 'VERSION:2.0', 'BEGIN:VTODO', 'UID:t', 'DUE:20240117', 'END:VTODO', 'END:VCALENDAR');
    const due = child(textToXcal(text), 'vCalendar', 'vtodo', 'due');
    assert.deepEqual([due.attrs, due.text()], [{ value: 'DATE' }, '20240117']);
    hasLine(roundTrip(text), 'DUE;VALUE=DATE:20240117');
  });
});

describe('escaping', () => {
  const ESCAPES = ics(
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'BEGIN:VEVENT',
    'UID:esc',
    'SUMMARY:a\\, b\\; c\\nd\\\\e',
    'DESCRIPTION:back\\\\slash\\\\n is not a line break\\nbut this is',
    'CATEGORIES:one\\,two,three\\\\,four\\;five',
    'RESOURCES:Projector,Whiteboard',
    'REQUEST-STATUS:3.7;Invalid calendar user\\; unknown;ATTENDEE:mailto:x@example.com',
    'GEO:37.386013;-122.082932',
    'ATTENDEE;CN="Smith; Jones: Partners, Ltd";DELEGATED-TO="mailto:a@example.com","mailto:b@example.com";SENT-BY="mailto:c@example.com":mailto:d@example.com',
    'ATTENDEE;CN=The ^\'Boss^\' ^^ co.;X-NOTE="line^nbreak":mailto:e@example.com',
    'X-CUSTOM;X-PARAM="a:b;c,d":x\\, y\\; z',
    'X-TYPED;VALUE=INTEGER:42',
    'X-OPAQUE;VALUE=X-MADE-UP:raw\\,text\\q',
    'X-EXPLICIT-TEXT;VALUE=TEXT:text\\, explicitly',
    'END:VEVENT',
    'END:VCALENDAR',
  );

  test('TEXT values are unescaped in XML and escaped again in text', () => {
    const event = child(textToXcal(ESCAPES), 'vCalendar', 'vevent');
    assert.equal(child(event, 'summary').text(), 'a, b; c\nd\\e');
    assert.equal(child(event, 'description').text(), 'back\\slash\\n is not a line break\nbut this is');
    assert.equal(child(event, 'x-custom').text(), 'x, y; z');
    assert.equal(child(event, 'x-explicit-text').text(), 'text, explicitly');
    assert.deepEqual(child(event, 'x-explicit-text').attrs, { value: 'TEXT' });
    const back = roundTrip(ESCAPES);
    assertSameCalendar(back, ESCAPES);
    hasLine(back, 'SUMMARY:a\\, b\\; c\\nd\\\\e');
  });

  test('multi-valued TEXT keeps its list, structured values their text form', () => {
    const event = child(textToXcal(ESCAPES), 'vCalendar', 'vevent');
    assert.equal(child(event, 'categories').text(), 'one\\,two,three\\\\,four;five');
    assert.equal(child(event, 'resources').text(), 'Projector,Whiteboard');
    assert.equal(child(event, 'request-status').text(), '3.7;Invalid calendar user\\; unknown;ATTENDEE:mailto:x@example.com');
    assert.equal(child(event, 'geo').text(), '37.386013;-122.082932');
    // A client's CATEGORIES with a plain list.
    const text = xcalToText(el('vCalendar', { version: '2.0' }, el('vtodo', undefined, el('categories', undefined, 'Work,Urgent'), el('summary', undefined, 'A; B, C'))));
    hasLine(text, 'CATEGORIES:Work,Urgent\r\nSUMMARY:A\\; B\\, C');
  });

  test('parameter values with : ; , and RFC 6868 escapes', () => {
    const [first, second] = child(textToXcal(ESCAPES), 'vCalendar', 'vevent').elements('attendee');
    assert.deepEqual(first!.attrs, {
      CN: 'Smith; Jones: Partners, Ltd',
      'DELEGATED-TO': 'mailto:a@example.com,mailto:b@example.com',
      'SENT-BY': 'mailto:c@example.com',
    });
    assert.deepEqual(second!.attrs, { CN: "The \"Boss\" ^ co.", 'X-NOTE': 'line\nbreak' });
    const back = roundTrip(ESCAPES);
    hasLine(back, 'ATTENDEE;CN="Smith; Jones: Partners, Ltd";DELEGATED-TO="mailto:a@example.com","mailto:b@example.com";SENT-BY="mailto:c@example.com":mailto:d@example.com');
    hasLine(back, 'ATTENDEE;CN=The ^\'Boss^\' ^^ co.;X-NOTE=line^nbreak:mailto:e@example.com');
    hasLine(back, 'X-CUSTOM;X-PARAM="a:b;c,d":x\\, y\\; z');
  });

  test('value types ical.js does not know, and typed X- properties, are kept as written', () => {
    const event = child(textToXcal(ESCAPES), 'vCalendar', 'vevent');
    assert.deepEqual([child(event, 'x-opaque').attrs, child(event, 'x-opaque').text()], [{ value: 'X-MADE-UP' }, 'raw\\,text\\q']);
    assert.deepEqual([child(event, 'x-typed').attrs, child(event, 'x-typed').text()], [{ value: 'INTEGER' }, '42']);
    const back = roundTrip(ESCAPES);
    hasLine(back, 'X-OPAQUE;VALUE=X-MADE-UP:raw\\,text\\q');
    hasLine(back, 'X-TYPED;VALUE=INTEGER:42');
  });

  test('XML from a client: any parameter case, text with line breaks and markup characters', () => {
    const xml = parseXml(
      '<icalendar><vcalendar version="2.0" prodid="-//client//EN"><vevent>' +
        '<uid>c-1</uid><dtstart TZID="Europe/Berlin" Value="DATE-TIME">20240301T100000</dtstart>' +
        '<attendee cn="Ann &amp; Bob, Inc." partstat="ACCEPTED">mailto:ann@example.com</attendee>' +
        '<description>First line\r\nsecond &lt;line&gt;, with "quotes" \\ and; more</description>' +
        '</vevent></vcalendar></icalendar>',
    );
    const text = xcalToText(xml);
    hasLine(text, 'DTSTART;VALUE=DATE-TIME;TZID=Europe/Berlin:20240301T100000');
    hasLine(text, 'ATTENDEE;CN="Ann & Bob, Inc.";PARTSTAT=ACCEPTED:mailto:ann@example.com');
    hasLine(text, 'DESCRIPTION:First line\\nsecond <line>\\, with "quotes" \\\\ and\\; more');
  });
});

describe('non-ASCII text and folding', () => {
  test('long lines fold at 75 octets without splitting a UTF-8 sequence', () => {
    const summary = 'Réunion trimestrielle — 会議室 予約済み 🗓️ ' + 'ÄÖÜäöüß€'.repeat(20);
    const xml = el('iCalendar', undefined, el('vCalendar', { version: '2.0' }, el('vevent', undefined, el('uid', undefined, 'u'), el('summary', undefined, summary))));
    const text = xcalToText(xml);
    for (const line of text.split('\r\n')) assert.ok(Buffer.byteLength(line, 'utf8') <= 75, line);
    // Every folded piece is valid UTF-8 on its own.
    for (const line of text.split('\r\n')) assert.equal(Buffer.from(Buffer.from(line, 'utf8').toString('utf8'), 'utf8').toString('utf8'), line);
    assert.equal(child(textToXcal(text), 'vCalendar', 'vevent', 'summary').text(), summary);
  });
});

describe('calendar-level properties and several calendars', () => {
  test('a VCALENDAR property with parameters, or repeated, is an element inside vCalendar', () => {
    const text = ics(
      'BEGIN:VCALENDAR',
      'VERSION:2.0',
      'PRODID:-//x//EN',
      'X-WR-RELCALID:one',
      'X-WR-RELCALID:two',
      'NAME;LANGUAGE=de:Kalender',
      'BEGIN:VEVENT',
      'UID:1',
      'END:VEVENT',
      'END:VCALENDAR',
    );
    const calendar = child(textToXcal(text), 'vCalendar');
    assert.deepEqual(calendar.attrs, { version: '2.0', prodid: '-//x//EN' });
    assert.deepEqual(calendar.elements().map((e) => [e.name, e.attrs, e.text()]), [
      ['x-wr-relcalid', {}, 'one'],
      ['x-wr-relcalid', {}, 'two'],
      ['name', { LANGUAGE: 'de' }, 'Kalender'],
      ['vevent', {}, ''],
    ]);
    assertSameCalendar(roundTrip(text), text);
  });

  test('several VCALENDARs: one element each; textToXcal wants one', () => {
    const two = GOOGLE + APPLE;
    const list = textToXcalList(two);
    assert.equal(list.length, 2);
    assert.equal(serialize(list[1]!), serialize(textToXcal(APPLE)));
    throwsFormatError(() => textToXcal(two), /2 VCALENDARs/);
    // An iCalendar element with two vCalendars is the two texts.
    const both = el('iCalendar', undefined, child(list[0]!, 'vCalendar'), child(list[1]!, 'vCalendar'));
    assertSameCalendar(xcalToText(both), two);
  });

  test('the empty property values of a component are empty elements', () => {
    const allDay = child(textToXcal(GOOGLE), 'vCalendar').elements('vevent')[2]!;
    assert.equal(serialize(child(allDay, 'location')), '<location/>');
  });
});

describe('malformed input is an ICalendarFormatError', () => {
  const valid = ics('BEGIN:VCALENDAR', 'VERSION:2.0', 'BEGIN:VEVENT', 'UID:1', 'DTSTART:20240101T100000Z', 'END:VEVENT', 'END:VCALENDAR');

  test('text', () => {
    const cases: [string, string, RegExp][] = [
      ['empty', '', /no VCALENDAR/],
      ['unclosed BEGIN', ics('BEGIN:VCALENDAR', 'BEGIN:VEVENT', 'UID:1', 'END:VCALENDAR'), /line 4: END:VCALENDAR where BEGIN:VEVENT of line 2 ends/],
      ['never ended', ics('BEGIN:VCALENDAR', 'BEGIN:VEVENT', 'UID:1'), /line 2: BEGIN:VEVENT is never ended/],
      ['END without BEGIN', ics('BEGIN:VCALENDAR', 'END:VEVENT', 'END:VCALENDAR'), /line 2: END:VEVENT/],
      ['garbage line', ics('BEGIN:VCALENDAR', 'VERSION:2.0', '@@@ ### !!!', 'END:VCALENDAR'), /line 3/],
      ['property without a colon', ics('BEGIN:VCALENDAR', 'VERSION:2.0', 'SUMMARY', 'END:VCALENDAR'), /line 3: no ":"/],
      ['bad property name', ics('BEGIN:VCALENDAR', 'SUM_MARY:x', 'END:VCALENDAR'), /line 2: invalid property name/],
      ['BEGIN with parameters', ics('BEGIN;X-A=1:VCALENDAR', 'END:VCALENDAR'), /line 1: BEGIN with parameters/],
      ['text outside', ics('X-NOTE:hello', 'BEGIN:VCALENDAR', 'END:VCALENDAR'), /line 1: text outside/],
      ['not a calendar', ics('BEGIN:VCARD', 'FN:x', 'END:VCARD'), /BEGIN:VCARD outside of a VCALENDAR/],
      ['control character', ics('BEGIN:VCALENDAR', 'SUMMARY:a\u0001b', 'END:VCALENDAR'), /line 2: a control character/],
      ['bare CR', 'BEGIN:VCALENDAR\rSUMMARY:x\rEND:VCALENDAR\r', /control character/],
      ['leading continuation', ics(' BEGIN:VCALENDAR', 'END:VCALENDAR'), /line 1: a continuation line/],
      ['bad date', valid.replace('DTSTART:20240101T100000Z', 'DTSTART:20240101T1000'), /line 5 \(DTSTART\): invalid DATE-TIME value/],
      ['date with offset', valid.replace('DTSTART:20240101T100000Z', 'DTSTART:20240101T100000+0100'), /invalid DATE-TIME/],
      ['bad rule', valid.replace('UID:1', 'RRULE:garbage'), /invalid RECUR/],
      ['bad frequency', valid.replace('UID:1', 'RRULE:FREQ=SOMETIMES'), /^line 4: malformed iCalendar: invalid frequency "SOMETIMES"/],
      ['bad integer', valid.replace('UID:1', 'SEQUENCE:many'), /invalid INTEGER/],
      ['bad geo', valid.replace('UID:1', 'GEO:north;west'), /invalid FLOAT/],
      ['bad offset', ics('BEGIN:VCALENDAR', 'BEGIN:VTIMEZONE', 'BEGIN:STANDARD', 'TZOFFSETTO:bogus', 'END:STANDARD', 'END:VTIMEZONE', 'END:VCALENDAR'), /invalid UTC-OFFSET/],
      ['bad period', valid.replace('UID:1', 'RDATE;VALUE=PERIOD:20240101T000000Z/tomorrow'), /invalid PERIOD/],
      ['bad parameter', ics('BEGIN:VCALENDAR', 'X-A;B:v', 'END:VCALENDAR'), /^line 2: malformed iCalendar/],
    ];
    for (const [name, text, pattern] of cases) throwsFormatError(() => textToXcalList(text), pattern, name);
  });

  test('deep nesting and too many properties', () => {
    const deep = ['BEGIN:VCALENDAR', ...Array.from({ length: 100 }, () => 'BEGIN:VEVENT'), ...Array.from({ length: 100 }, () => 'END:VEVENT'), 'END:VCALENDAR'];
    throwsFormatError(() => textToXcal(ics(...deep)), /line 9: components nested deeper than 8/);
    const many = ['BEGIN:VCALENDAR', ...Array.from({ length: ICALENDAR_LIMITS.properties + 1 }, (_v, i) => `X-P:${i}`), 'END:VCALENDAR'];
    throwsFormatError(() => textToXcal(ics(...many)), /more than 10000 properties/);
    const xmlMany = el('vCalendar', undefined, el('vevent', undefined, ...Array.from({ length: ICALENDAR_LIMITS.properties + 1 }, () => el('x-p', undefined, 'v'))));
    throwsFormatError(() => xcalToText(xmlMany), /more than 10000 properties/);
  });

  test('XML', () => {
    let deep = el('vevent', undefined, el('uid', undefined, 'x'));
    for (let i = 0; i < 100; i++) deep = el('vevent', undefined, deep);
    const cases: [string, XmlElement, RegExp][] = [
      ['not iCalendar', el('vCard'), /not an iCalendar element/],
      ['no vCalendar', el('iCalendar'), /has no vCalendar/],
      ['stray child', el('iCalendar', undefined, el('vevent')), /a vCalendar element is expected/],
      ['stray text', el('iCalendar', undefined, 'hello', el('vCalendar')), /text "hello"/],
      ['bad element name', el('iCalendar', undefined, el('vCalendar', undefined, el('vevent', undefined, el('dt_start', undefined, '20240101')))), /<dt_start>: invalid element name/],
      ['prefixed name', el('vCalendar', undefined, el('vevent', undefined, el('x:foo', undefined, 'v'))), /invalid element name/],
      ['bad attribute name', el('vCalendar', undefined, el('vevent', undefined, el('attendee', { 'C N': 'x' }, 'mailto:x@y'))), /invalid parameter name/],
      ['bad calendar attribute', el('vCalendar', { 'x_y': '1' }), /invalid property name/],
      ['100-deep nesting', el('vCalendar', undefined, deep), /nested deeper than 8/],
      ['vCalendar inside', el('vCalendar', undefined, el('vevent', undefined, el('vCalendar', undefined, el('uid', undefined, 'x')))), /VCALENDAR inside/],
      ['bad date', el('vCalendar', undefined, el('vevent', undefined, el('dtstart', undefined, 'tomorrow'))), /<dtstart>: invalid DATE-TIME value "tomorrow"/],
      ['bad explicit date', el('vCalendar', undefined, el('vevent', undefined, el('dtstart', { value: 'DATE' }, '20240101T100000'))), /invalid DATE value/],
      ['bad rule', el('vCalendar', undefined, el('vevent', undefined, el('rrule', undefined, 'every day'))), /invalid RECUR/],
      ['bad value type', el('vCalendar', undefined, el('vevent', undefined, el('x-a', { value: 'a b' }, 'v'))), /invalid value type/],
      ['control character', el('vCalendar', undefined, el('vevent', undefined, el('summary', undefined, 'a\u0007b'))), /control character/],
      ['line break in a URI', el('vCalendar', undefined, el('vevent', undefined, el('url', undefined, 'http://a/\nb'))), /control character/],
      ['control in a parameter', el('vCalendar', undefined, el('vevent', undefined, el('attendee', { CN: 'a\u0000' }, 'mailto:x@y'))), /control character in the CN parameter/],
      ['text in a component', el('vCalendar', undefined, el('vevent', undefined, 'loose text')), /outside of a property/],
    ];
    for (const [name, xml, pattern] of cases) throwsFormatError(() => xcalToText(xml), pattern, name);
  });

  test('mangled texts never throw anything else', () => {
    // A fixed pseudo-random sequence, so that a failure can be replayed.
    let seed = 13;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const sources = [GOOGLE, OUTLOOK, APPLE];
    const junk = [':', ';', '"', ',', '\\', '\r\n', '\r\n ', 'BEGIN:', 'END:', 'BEGIN:VEVENT\r\n', 'END:VALARM\r\n', '=', '^', '\u0000', 'é', '💥'];
    let failures = 0;
    for (let round = 0; round < 300; round++) {
      let text = sources[random(sources.length)]!;
      for (let edits = 1 + random(4); edits > 0; edits--) {
        const at = random(text.length);
        const kind = random(3);
        if (kind === 0) text = text.slice(0, at) + text.slice(at + 1 + random(20));
        else if (kind === 1) text = text.slice(0, at) + junk[random(junk.length)]! + text.slice(at);
        else text = text.slice(0, at);
      }
      try {
        const list = textToXcalList(text);
        for (const xml of list) xcalToText(overTheWire(xml));
      } catch (err) {
        assert.ok(err instanceof ICalendarFormatError, `round ${round}: ${String(err)}`);
        failures++;
      }
    }
    assert.ok(failures > 0, 'some mangled texts are refused');
  });
});
