/**
 * CalDAV (RFC 4791, RFC 6578 sync-collection, RFC 6764 discovery) over the calendar mailboxes
 * on the wire: discovery, the home and its calendars, MKCALENDAR and extended MKCOL, PUT/GET/
 * HEAD/DELETE of .ics items with ETags and preconditions, the PUT preconditions of RFC 4791
 * 5.3.2.1 (a VCARD, two UIDs, a VJOURNAL, a UID held by another item), concurrent PUTs (one
 * UID twice: one stored; PUTs racing listings keep their names), COPY/MOVE between calendars,
 * GET of a whole calendar, calendar-query (time ranges with recurrences expanded, floating
 * times in the account's zone, undated tasks, text-match, VALARM, expand, a bad time-range),
 * calendar-multiget, free-busy-query, sync-collection, and changes seen both ways between
 * CalDAV and XIMSS (calendarReport, findEvents, calendarPublish, calendarCancel).
 *
 * Real clients, run on loopback against this test's server:
 * - Debian's python3-caldav (0.11; installed by test/fixtures/python-caldav.ts when missing)
 *   runs a script that finds the principal and its calendars, makes a calendar (MKCALENDAR
 *   with a displayname, then its PROPPATCH of it), saves three events (one weekly recurring,
 *   one transparent), searches a week two months on and finds the recurring one only (a
 *   calendar-query time-range answered from the index), finds an event by UID (a prop-filter
 *   text-match), takes a sync token, changes one event and deletes another, syncs (one
 *   updated, one deleted), and asks free/busy (the transparent event is not busy).
 * - Debian's vdirsyncer discovers the calendars from the server root, syncs them down into a
 *   local directory of .ics files, uploads a new local item, uploads a local change and a
 *   local deletion, and brings down an item published over XIMSS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { runPython } from './fixtures/python-caldav.js';
import { Vdirsyncer } from './fixtures/vdirsyncer.js';
import { httpRequest, ok, startTestServer, type HttpRequestOptions, type HttpResult, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;

before(async () => {
  server = await startTestServer({});
});
after(() => server.stop());

const CAL_NS = 'urn:ietf:params:xml:ns:caldav';

interface User {
  address: string;
  name: string;
  auth: string;
  home: string;
  cal: string;
}

async function newUser(): Promise<User> {
  const address = await server.newAccount('caldav');
  const name = address.split('@')[0]!;
  return { address, name, auth: `Basic ${Buffer.from(`${address}:secret`).toString('base64')}`, home: `/dav/calendars/${name}/`, cal: `/dav/calendars/${name}/Calendar/` };
}

/** A user whose home was listed once (so that the default Calendar exists). */
async function listedUser(): Promise<User> {
  const u = await newUser();
  assert.equal((await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } })).status, 207);
  return u;
}

function dav(user: User | undefined, method: string, path: string, options: HttpRequestOptions = {}): Promise<HttpResult> {
  return httpRequest(server.ports.http, path, { ...options, method, headers: { ...(user ? { Authorization: user.auth } : {}), ...options.headers } });
}

interface Response {
  status?: string;
  props: Map<string, { status: string; element: XmlElement }>;
}

/** A multistatus by href; properties by local name. */
function multistatus(result: HttpResult): { responses: Map<string, Response>; root: XmlElement } {
  assert.equal(result.status, 207, result.text);
  const root = parseXml(result.text);
  const responses = new Map<string, Response>();
  for (const response of root.elements('D:response')) {
    const href = decodeURIComponent(response.element('D:href')!.text());
    const props = new Map<string, { status: string; element: XmlElement }>();
    for (const propstat of response.elements('D:propstat')) {
      const code = propstat.element('D:status')!.text().split(' ')[1]!;
      for (const prop of propstat.element('D:prop')!.elements()) props.set(prop.name.replace(/^.*:/, ''), { status: code, element: prop });
    }
    const status = response.element('D:status')?.text().split(' ')[1];
    responses.set(href, status === undefined ? { props } : { status, props });
  }
  return { responses, root };
}

function ics(uid: string, summary: string, start: string, end: string, extra: string[] = [], kind = 'VEVENT'): string {
  const times = kind === 'VTODO' ? [`DTSTART:${start}`, `DUE:${end}`] : [`DTSTART:${start}`, `DTEND:${end}`];
  return ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//test//caldav//EN', `BEGIN:${kind}`, `UID:${uid}`, 'DTSTAMP:20240101T000000Z', `SUMMARY:${summary}`, ...times, ...extra, `END:${kind}`, 'END:VCALENDAR', ''].join('\r\n');
}

function put(user: User, href: string, text: string, headers: Record<string, string> = {}): Promise<HttpResult> {
  return dav(user, 'PUT', href, { body: text, headers: { 'Content-Type': 'text/calendar; charset=utf-8', ...headers } });
}

function report(user: User, path: string, body: string, depth = '1'): Promise<HttpResult> {
  return dav(user, 'REPORT', path, { body, headers: { 'Content-Type': 'application/xml', Depth: depth } });
}

function query(filter: string, prop = '<D:getetag/>'): string {
  return `<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:prop>${prop}</D:prop><C:filter><C:comp-filter name="VCALENDAR">${filter}</C:comp-filter></C:filter></C:calendar-query>`;
}

/** The names of the items a REPORT answered 200 for. */
function names(result: HttpResult): string[] {
  const { responses } = multistatus(result);
  return [...responses]
    .filter(([, r]) => r.status === undefined || r.status === '200')
    .map(([href]) => href.slice(href.lastIndexOf('/') + 1))
    .sort();
}

function syncBody(token: string, prop = '<D:getetag/>'): string {
  return `<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>${token}</D:sync-token><D:sync-level>1</D:sync-level><D:prop>${prop}</D:prop></D:sync-collection>`;
}

function errorCondition(result: HttpResult): string {
  const root = parseXml(result.text);
  assert.equal(root.name.replace(/^.*:/, ''), 'error', result.text);
  return root.elements()[0]!.name.replace(/^.*:/, '');
}

describe('CalDAV: discovery and calendars', () => {
  test('from /.well-known/caldav to the principal, its calendar-home-set and the calendars', async () => {
    const u = await newUser();
    const wk = await dav(undefined, 'PROPFIND', '/.well-known/caldav');
    assert.equal(wk.status, 301);
    assert.equal(wk.headers.location, '/dav/');
    const options = await dav(undefined, 'OPTIONS', u.cal);
    assert.match(String(options.headers.dav), /calendar-access/);
    assert.match(String(options.headers.allow), /MKCALENDAR/);
    const principal = `/dav/principals/${u.name}/`;
    const p = multistatus(
      await dav(u, 'PROPFIND', principal, { body: `<D:propfind xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:prop><C:calendar-home-set/><C:calendar-user-address-set/></D:prop></D:propfind>`, headers: { Depth: '0' } }),
    );
    const homeSet = p.responses.get(principal)!.props.get('calendar-home-set')!;
    assert.equal(homeSet.status, '200');
    assert.equal(homeSet.element.elements()[0]!.text(), u.home);
    assert.equal(p.responses.get(principal)!.props.get('calendar-user-address-set')!.element.elements()[0]!.text(), `mailto:${u.address}`);
    const home = multistatus(
      await dav(u, 'PROPFIND', u.home, {
        body: `<D:propfind xmlns:D="DAV:" xmlns:C="${CAL_NS}" xmlns:CS="http://calendarserver.org/ns/"><D:prop><D:resourcetype/><D:displayname/><C:supported-calendar-component-set/><D:sync-token/><CS:getctag/><D:supported-report-set/><D:current-user-privilege-set/></D:prop></D:propfind>`,
        headers: { Depth: '1' },
      }),
    );
    const cal = home.responses.get(u.cal);
    assert.ok(cal, `the default calendar is listed: ${[...home.responses.keys()].join(', ')}`);
    assert.deepEqual(cal.props.get('resourcetype')!.element.elements().map((e) => e.name.replace(/^.*:/, '')).sort(), ['calendar', 'collection']);
    assert.equal(cal.props.get('displayname')!.element.text(), 'Calendar');
    assert.deepEqual(cal.props.get('supported-calendar-component-set')!.element.elements().map((e) => e.attrs.name), ['VEVENT', 'VTODO']);
    assert.match(cal.props.get('sync-token')!.element.text(), /^http:\/\//);
    assert.match(cal.props.get('getctag')!.element.text(), /^\d+$/);
    const reports = cal.props.get('supported-report-set')!.element.toString();
    for (const r of ['calendar-query', 'calendar-multiget', 'free-busy-query', 'sync-collection']) assert.match(reports, new RegExp(r));
    assert.match(cal.props.get('current-user-privilege-set')!.element.toString(), /write/);
  });

  test('MKCALENDAR makes a Calendar-class mailbox XIMSS lists (a VTODO-only one a Tasks-class one); extended MKCOL too; DELETE removes it', async () => {
    const u = await listedUser();
    const body = `<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:set><D:prop><D:displayname>Work</D:displayname></D:prop></D:set></C:mkcalendar>`;
    assert.equal((await dav(u, 'MKCALENDAR', `${u.home}Work/`, { body })).status, 201);
    const again = await dav(u, 'MKCALENDAR', `${u.home}Work/`, { body });
    assert.equal(again.status, 403);
    assert.equal(errorCondition(again), 'resource-must-be-null');
    const tasks = `<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:set><D:prop><C:supported-calendar-component-set><C:comp name="VTODO"/></C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>`;
    assert.equal((await dav(u, 'MKCALENDAR', `${u.home}Todo/`)).status, 201, 'without a body');
    assert.equal((await dav(u, 'MKCALENDAR', `${u.home}Chores/`, { body: tasks })).status, 201);
    const mkcol = `<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:set><D:prop><D:resourcetype><D:collection/><C:calendar/></D:resourcetype></D:prop></D:set></D:mkcol>`;
    assert.equal((await dav(u, 'MKCOL', `${u.home}Extended/`, { body: mkcol })).status, 201);
    const other = `<?xml version="1.0"?><D:mkcol xmlns:D="DAV:"><D:set><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:set></D:mkcol>`;
    assert.equal((await dav(u, 'MKCOL', `${u.home}Plain/`, { body: other })).status, 403);
    const { client } = await server.login(u.address, 'secret');
    const list = await ok(client, '<mailboxList filter="*"/>');
    const classOf = (name: string): string | undefined => list.messages.find((d) => d.name === 'mailbox' && d.attrs.mailbox === name)?.attrs.CLASS;
    assert.equal(classOf('Work'), 'IPF.Appointment', list.messages.map(String).join());
    assert.equal(classOf('Chores'), 'IPF.Task');
    assert.equal(classOf('Extended'), 'IPF.Appointment');
    assert.equal(classOf('Plain'), undefined);
    const home = multistatus(await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' }, body: `<D:propfind xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:prop><C:supported-calendar-component-set/></D:prop></D:propfind>` }));
    for (const name of ['Calendar', 'Work', 'Todo', 'Chores', 'Extended']) assert.ok(home.responses.has(`${u.home}${name}/`), name);
    // A task list takes VTODOs only.
    assert.deepEqual(home.responses.get(`${u.home}Chores/`)!.props.get('supported-calendar-component-set')!.element.elements().map((e) => e.attrs.name), ['VTODO']);
    const event = await put(u, `${u.home}Chores/e.ics`, ics('e', 'E', '20240304T100000Z', '20240304T110000Z'));
    assert.equal(event.status, 403);
    assert.equal(errorCondition(event), 'supported-calendar-component');
    assert.equal((await put(u, `${u.home}Chores/t.ics`, ics('t', 'T', '20240304T100000Z', '20240305T110000Z', [], 'VTODO'))).status, 201);
    assert.equal((await dav(u, 'DELETE', `${u.home}Work/`)).status, 204);
    assert.equal((await dav(u, 'PROPFIND', `${u.home}Work/`, { headers: { Depth: '0' } })).status, 404);
    // A mailbox of another class is no calendar.
    assert.equal((await dav(u, 'PROPFIND', `${u.home}INBOX/`, { headers: { Depth: '0' } })).status, 404);
    client.close();
  });

  test("authentication: none or wrong → 401; another account's home → 403", async () => {
    const u = await newUser();
    const v = await newUser();
    assert.equal((await dav(undefined, 'PROPFIND', u.home, { headers: { Depth: '0' } })).status, 401);
    const wrong = await httpRequest(server.ports.http, u.home, { method: 'PROPFIND', headers: { Depth: '0', Authorization: `Basic ${Buffer.from(`${u.address}:nope`).toString('base64')}` } });
    assert.equal(wrong.status, 401);
    assert.equal((await dav(v, 'PROPFIND', u.home, { headers: { Depth: '0' } })).status, 403);
    assert.equal((await dav(v, 'GET', `${u.cal}x.ics`)).status, 403);
  });
});

describe('CalDAV: items', () => {
  test('PUT under the client\'s name, GET/HEAD with the ETag, If-None-Match/If-Match, a replacement keeps the name, DELETE', async () => {
    const u = await listedUser();
    const href = `${u.cal}a1-b2.ics`;
    const created = await put(u, href, ics('uid-one', 'One', '20240304T100000Z', '20240304T110000Z'), { 'If-None-Match': '*' });
    assert.equal(created.status, 201, created.text);
    const etag = created.headers.etag!;
    assert.match(etag, /^"\d+"$/);
    const got = await dav(u, 'GET', href);
    assert.equal(got.status, 200);
    assert.equal(got.headers.etag, etag);
    assert.match(String(got.headers['content-type']), /^text\/calendar/);
    assert.match(got.text, /SUMMARY:One/);
    const head = await dav(u, 'HEAD', href);
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal((await dav(u, 'GET', href, { headers: { 'If-None-Match': etag } })).status, 304);
    assert.equal((await put(u, href, ics('uid-one', 'One again', '20240304T100000Z', '20240304T110000Z'), { 'If-None-Match': '*' })).status, 412);
    assert.equal((await put(u, href, ics('uid-one', 'One again', '20240304T100000Z', '20240304T110000Z'), { 'If-Match': '"999999"' })).status, 412);
    assert.equal((await put(u, `${u.cal}nothing.ics`, ics('uid-x', 'X', '20240304T100000Z', '20240304T110000Z'), { 'If-Match': etag })).status, 412);
    const replaced = await put(u, href, ics('uid-one', 'One changed', '20240304T100000Z', '20240304T120000Z'), { 'If-Match': etag });
    assert.equal(replaced.status, 204, replaced.text);
    const etag2 = replaced.headers.etag!;
    assert.notEqual(etag2, etag);
    const listing = multistatus(await dav(u, 'PROPFIND', u.cal, { headers: { Depth: '1' }, body: '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:getcontenttype/></D:prop></D:propfind>' }));
    assert.equal(listing.responses.get(href)!.props.get('getetag')!.element.text(), etag2);
    assert.equal(listing.responses.size, 2, [...listing.responses.keys()].join(', '));
    assert.match((await dav(u, 'GET', href)).text, /SUMMARY:One changed/);
    assert.equal((await dav(u, 'DELETE', href, { headers: { 'If-Match': etag } })).status, 412);
    assert.equal((await dav(u, 'DELETE', href, { headers: { 'If-Match': etag2 } })).status, 204);
    assert.equal((await dav(u, 'GET', href)).status, 404);
    assert.equal((await dav(u, 'DELETE', href)).status, 404);
  });

  test('PUT preconditions: not text/calendar, a VCARD, garbage, two UIDs, no UID, a VJOURNAL, METHOD, a UID held by another item, not a calendar', async () => {
    const u = await listedUser();
    const fine = ics('held', 'Held', '20240304T100000Z', '20240304T110000Z');
    assert.equal((await put(u, `${u.cal}held.ics`, fine)).status, 201);
    const refused = async (text: string, condition: string, type = 'text/calendar'): Promise<void> => {
      const result = await put(u, `${u.cal}bad.ics`, text, { 'Content-Type': type });
      assert.equal(result.status, 403, `${condition}: ${result.text}`);
      assert.equal(errorCondition(result), condition);
    };
    await refused(fine.replace('UID:held', 'UID:other'), 'supported-calendar-data', 'text/vcard');
    await refused(['BEGIN:VCARD', 'VERSION:3.0', 'FN:Ann', 'UID:ann', 'END:VCARD', ''].join('\r\n'), 'valid-calendar-data');
    await refused('this is not iCalendar\r\n', 'valid-calendar-data');
    await refused(ics('a', 'A', '20240304T100000Z', '20240304T110000Z').replace('END:VCALENDAR', ['BEGIN:VEVENT', 'UID:b', 'DTSTAMP:20240101T000000Z', 'DTSTART:20240305T100000Z', 'END:VEVENT', 'END:VCALENDAR'].join('\r\n')), 'valid-calendar-object-resource');
    await refused(ics('a', 'A', '20240304T100000Z', '20240304T110000Z').replace('UID:a\r\n', ''), 'valid-calendar-object-resource');
    await refused(['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:t', 'BEGIN:VJOURNAL', 'UID:j', 'DTSTAMP:20240101T000000Z', 'SUMMARY:Notes', 'END:VJOURNAL', 'END:VCALENDAR', ''].join('\r\n'), 'supported-calendar-component');
    await refused(fine.replace('UID:held', 'UID:m').replace('VERSION:2.0', 'VERSION:2.0\r\nMETHOD:REQUEST'), 'valid-calendar-object-resource');
    // The UID is held by held.ics: the error names it.
    const conflict = await put(u, `${u.cal}copy.ics`, fine);
    assert.equal(conflict.status, 403, conflict.text);
    assert.equal(errorCondition(conflict), 'no-uid-conflict');
    assert.equal(decodeURIComponent(parseXml(conflict.text).elements()[0]!.elements()[0]!.text()), `${u.cal}held.ics`);
    assert.equal((await dav(u, 'GET', `${u.cal}copy.ics`)).status, 404);
    assert.equal((await dav(u, 'GET', `${u.cal}bad.ics`)).status, 404);
    // Not a calendar: the INBOX, a missing one.
    assert.equal((await put(u, `${u.home}INBOX/x.ics`, ics('x', 'X', '20240304T100000Z', '20240304T110000Z'))).status, 409);
    assert.equal((await put(u, `${u.home}Nowhere/x.ics`, ics('x', 'X', '20240304T100000Z', '20240304T110000Z'))).status, 409);
    const listing = multistatus(await dav(u, 'PROPFIND', u.cal, { headers: { Depth: '1' } }));
    assert.deepEqual([...listing.responses.keys()].sort(), [u.cal, `${u.cal}held.ics`]);
  });
});

describe('CalDAV: concurrent PUTs', () => {
  test('two PUTs of one UID under two names at once: exactly one is stored, the other is no-uid-conflict', async () => {
    const u = await listedUser();
    for (let round = 0; round < 5; round++) {
      const text = ics(`race-${round}`, `Race ${round}`, '20240304T100000Z', '20240304T110000Z');
      const results = await Promise.all([put(u, `${u.cal}race-${round}-a.ics`, text), put(u, `${u.cal}race-${round}-b.ics`, text)]);
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(statuses, [201, 403], results.map((r) => r.text).join(' | '));
      assert.equal(errorCondition(results.find((r) => r.status === 403)!), 'no-uid-conflict');
    }
    const listing = multistatus(await dav(u, 'PROPFIND', u.cal, { headers: { Depth: '1' } }));
    assert.equal(listing.responses.size, 1 + 5, [...listing.responses.keys()].join(', '));
  });

  test('PUTs while listings run: every item keeps the name its client gave it', async () => {
    const u = await listedUser();
    const puts = Array.from({ length: 12 }, (_, i) => put(u, `${u.cal}client-name-${i}.ics`, ics(`uid-${i}`, `Item ${i}`, '20240304T100000Z', '20240304T110000Z')));
    const listings = Array.from({ length: 12 }, () => dav(u, 'PROPFIND', u.cal, { headers: { Depth: '1' } }));
    const results = await Promise.all([...puts, ...listings]);
    assert.deepEqual(results.slice(0, 12).map((r) => r.status), Array(12).fill(201));
    const listed = [...multistatus(await dav(u, 'PROPFIND', u.cal, { headers: { Depth: '1' } })).responses.keys()].filter((h) => h !== u.cal).sort();
    assert.deepEqual(listed, Array.from({ length: 12 }, (_, i) => `${u.cal}client-name-${i}.ics`).sort());
  });
});

describe('CalDAV: copies, moves and whole calendars', () => {
  test('COPY and MOVE into another calendar (names, UID checks, Overwrite); GET of a calendar is one VCALENDAR', async () => {
    const u = await listedUser();
    assert.equal((await dav(u, 'MKCALENDAR', `${u.home}Other/`)).status, 201);
    const other = `${u.home}Other/`;
    assert.equal((await put(u, `${u.cal}m.ics`, ics('m', 'Moved', '20240304T100000Z', '20240304T110000Z'))).status, 201);
    assert.equal((await put(u, `${u.cal}c.ics`, ics('c', 'Copied', '20240305T100000Z', '20240305T110000Z'))).status, 201);
    const to = (path: string): Record<string, string> => ({ Destination: `http://127.0.0.1:${server.ports.http}${path}` });
    assert.equal((await dav(u, 'COPY', `${u.cal}c.ics`, { headers: to(`${other}copy.ics`) })).status, 201);
    assert.match((await dav(u, 'GET', `${other}copy.ics`)).text, /SUMMARY:Copied/);
    assert.equal((await dav(u, 'GET', `${u.cal}c.ics`)).status, 200, 'the source stays');
    // The UID is now in Other: a second copy under another name is refused and names the holder.
    const again = await dav(u, 'COPY', `${u.cal}c.ics`, { headers: to(`${other}copy2.ics`) });
    assert.equal(again.status, 403);
    assert.equal(errorCondition(again), 'no-uid-conflict');
    assert.match(again.text, /Other\/copy\.ics/);
    // Over the item of the same UID: Overwrite F refuses, the default replaces.
    assert.equal((await dav(u, 'COPY', `${u.cal}c.ics`, { headers: { ...to(`${other}copy.ics`), Overwrite: 'F' } })).status, 412);
    assert.equal((await dav(u, 'COPY', `${u.cal}c.ics`, { headers: to(`${other}copy.ics`) })).status, 204);
    assert.equal((await dav(u, 'MOVE', `${u.cal}m.ics`, { headers: to(`${other}moved.ics`) })).status, 201);
    assert.equal((await dav(u, 'GET', `${u.cal}m.ics`)).status, 404);
    assert.match((await dav(u, 'GET', `${other}moved.ics`)).text, /SUMMARY:Moved/);
    assert.equal((await dav(u, 'MOVE', `${other}moved.ics`, { headers: to(`${other}renamed.ics`) })).status, 403, 'no renaming inside a calendar');
    assert.equal((await dav(u, 'COPY', `${u.cal}c.ics`, { headers: to(`${u.home}INBOX/x.ics`) })).status, 409);
    const whole = await dav(u, 'GET', other);
    assert.equal(whole.status, 200);
    assert.match(String(whole.headers['content-type']), /^text\/calendar/);
    assert.equal(whole.text.match(/BEGIN:VEVENT/g)?.length, 2, whole.text);
    assert.match(whole.text, /^BEGIN:VCALENDAR\r\n/);
  });
});

describe('CalDAV: reports', () => {
  let u: User;
  before(async () => {
    u = await listedUser();
    const items: [string, string][] = [
      ['single.ics', ics('single', 'Dentist', '20240304T100000Z', '20240304T110000Z', ['LOCATION:Main Street'])],
      ['weekly.ics', ics('weekly', 'Team sync', '20240305T090000Z', '20240305T093000Z', ['RRULE:FREQ=WEEKLY;COUNT=10', 'BEGIN:VALARM', 'ACTION:DISPLAY', 'DESCRIPTION:soon', 'TRIGGER:-PT15M', 'END:VALARM'])],
      ['tentative.ics', ics('tentative', 'Maybe lunch', '20240306T120000Z', '20240306T130000Z', ['STATUS:TENTATIVE'])],
      ['free.ics', ics('free', 'Reminder only', '20240306T140000Z', '20240306T150000Z', ['TRANSP:TRANSPARENT'])],
      ['task.ics', ics('task', 'Write report', '20240304T080000Z', '20240308T170000Z', [], 'VTODO')],
    ];
    for (const [name, text] of items) assert.equal((await put(u, `${u.cal}${name}`, text)).status, 201, name);
  });

  test('calendar-query: a time-range finds a recurring event in a later week (from the index); text-match, is-not-defined, VTODO, VALARM', async () => {
    const week = (start: string, end: string, extra = ''): string => `<C:comp-filter name="VEVENT"><C:time-range start="${start}" end="${end}"/>${extra}</C:comp-filter>`;
    assert.deepEqual(names(await report(u, u.cal, query(week('20240304T000000Z', '20240311T000000Z')))), ['free.ics', 'single.ics', 'tentative.ics', 'weekly.ics']);
    assert.deepEqual(names(await report(u, u.cal, query(week('20240429T000000Z', '20240506T000000Z')))), ['weekly.ics'], 'the 9th occurrence');
    assert.deepEqual(names(await report(u, u.cal, query(week('20240520T000000Z', '20240527T000000Z')))), [], 'after COUNT=10');
    assert.deepEqual(names(await report(u, u.cal, query(week('20240305T093000Z', '20240306T000000Z')))), [], 'right after an occurrence ends (ends are exclusive)');
    const open = await report(u, u.cal, query('<C:comp-filter name="VEVENT"><C:time-range start="20240401T000000Z"/></C:comp-filter>'));
    assert.deepEqual(names(open), ['weekly.ics'], 'an open end');
    const text = query('<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match collation="i;ascii-casemap">LUNCH</C:text-match></C:prop-filter></C:comp-filter>');
    assert.deepEqual(names(await report(u, u.cal, text)), ['tentative.ics']);
    const negated = query('<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match negate-condition="yes">lunch</C:text-match></C:prop-filter></C:comp-filter>');
    assert.deepEqual(names(await report(u, u.cal, negated)), ['free.ics', 'single.ics', 'weekly.ics']);
    const located = query('<C:comp-filter name="VEVENT"><C:prop-filter name="LOCATION"><C:is-not-defined/></C:prop-filter></C:comp-filter>');
    assert.deepEqual(names(await report(u, u.cal, located)), ['free.ics', 'tentative.ics', 'weekly.ics']);
    const uid = query('<C:comp-filter name="VEVENT"><C:prop-filter name="UID"><C:text-match collation="i;octet">weekly</C:text-match></C:prop-filter></C:comp-filter>', '<D:getetag/><C:calendar-data/>');
    const byUid = multistatus(await report(u, u.cal, uid));
    assert.match(byUid.responses.get(`${u.cal}weekly.ics`)!.props.get('calendar-data')!.element.text(), /RRULE:FREQ=WEEKLY;COUNT=10/);
    assert.deepEqual(names(await report(u, u.cal, query('<C:comp-filter name="VTODO"/>'))), ['task.ics']);
    assert.deepEqual(names(await report(u, u.cal, query('<C:comp-filter name="VTODO"><C:time-range start="20240307T000000Z" end="20240308T000000Z"/></C:comp-filter>'))), ['task.ics']);
    // Tasks without DTSTART or DUE (RFC 4791 9.9): by COMPLETED/CREATED, in every range without either.
    const undated = (uid: string, extra: string[]): string => ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:t', 'BEGIN:VTODO', `UID:${uid}`, 'DTSTAMP:20240101T000000Z', `SUMMARY:${uid}`, ...extra, 'END:VTODO', 'END:VCALENDAR', ''].join('\r\n');
    const tasks = `${u.home}Undated/`;
    assert.equal((await dav(u, 'MKCALENDAR', tasks)).status, 201);
    assert.equal((await put(u, `${tasks}someday.ics`, undated('someday', []))).status, 201);
    assert.equal((await put(u, `${tasks}done.ics`, undated('done', ['COMPLETED:20240110T120000Z']))).status, 201);
    assert.equal((await put(u, `${tasks}new.ics`, undated('new', ['CREATED:20240601T120000Z']))).status, 201);
    const tasksIn = async (start: string, end: string): Promise<string[]> => names(await report(u, tasks, query(`<C:comp-filter name="VTODO"><C:time-range start="${start}" end="${end}"/></C:comp-filter>`)));
    assert.deepEqual(await tasksIn('20240110T000000Z', '20240111T000000Z'), ['done.ics', 'someday.ics']);
    assert.deepEqual(await tasksIn('20240701T000000Z', '20240702T000000Z'), ['new.ics', 'someday.ics']);
    const alarm = query('<C:comp-filter name="VEVENT"><C:comp-filter name="VALARM"><C:time-range start="20240312T084000Z" end="20240312T085000Z"/></C:comp-filter></C:comp-filter>');
    assert.deepEqual(names(await report(u, u.cal, alarm)), ['weekly.ics'], 'the alarm 15 minutes before the second occurrence');
    assert.deepEqual(names(await report(u, u.cal, query(''))), ['free.ics', 'single.ics', 'task.ics', 'tentative.ics', 'weekly.ics'], 'no filter below VCALENDAR');
  });

  test('calendar-data with expand: one instance per occurrence in UTC with its RECURRENCE-ID, an override kept, a plain event as stored', async () => {
    const cal = `${u.home}Expanded/`;
    assert.equal((await dav(u, 'MKCALENDAR', cal)).status, 201);
    const daily = [
      'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:t',
      'BEGIN:VEVENT', 'UID:daily', 'DTSTAMP:20240101T000000Z', 'SUMMARY:Standup', 'DTSTART;TZID=Europe/Paris:20240325T090000', 'DURATION:PT15M', 'RRULE:FREQ=DAILY;COUNT=5', 'END:VEVENT',
      'BEGIN:VEVENT', 'UID:daily', 'DTSTAMP:20240101T000000Z', 'SUMMARY:Standup moved', 'RECURRENCE-ID;TZID=Europe/Paris:20240327T090000', 'DTSTART;TZID=Europe/Paris:20240327T110000', 'DURATION:PT15M', 'END:VEVENT',
      'END:VCALENDAR', '',
    ].join('\r\n');
    assert.equal((await put(u, `${cal}daily.ics`, daily)).status, 201);
    assert.equal((await put(u, `${cal}once.ics`, ics('once', 'Once', '20240326T100000Z', '20240326T110000Z'))).status, 201);
    const expand = '<C:calendar-data><C:expand start="20240325T000000Z" end="20240328T000000Z"/></C:calendar-data>';
    const result = multistatus(await report(u, cal, query('<C:comp-filter name="VEVENT"><C:time-range start="20240325T000000Z" end="20240328T000000Z"/></C:comp-filter>', `<D:getetag/>${expand}`)));
    const expanded = result.responses.get(`${cal}daily.ics`)!.props.get('calendar-data')!.element.text();
    assert.doesNotMatch(expanded, /RRULE/);
    // Paris is UTC+1 until 31 March: 09:00 is 08:00Z (and the 26th's instance starts at 08:00Z too).
    assert.deepEqual(expanded.match(/^DTSTART:.*$/gm), ['DTSTART:20240325T080000Z', 'DTSTART:20240326T080000Z', 'DTSTART:20240327T100000Z']);
    assert.deepEqual(expanded.match(/^RECURRENCE-ID.*$/gm), ['RECURRENCE-ID:20240325T080000Z', 'RECURRENCE-ID:20240326T080000Z', 'RECURRENCE-ID;TZID=Europe/Paris:20240327T090000']);
    assert.match(expanded, /SUMMARY:Standup moved/);
    assert.match(expanded, /DTEND:20240325T081500Z/);
    assert.match(result.responses.get(`${cal}once.ics`)!.props.get('calendar-data')!.element.text(), /DTSTART:20240326T100000Z/);
  });

  test("calendar-query: floating times are read in the account's TimeZone preference", async () => {
    const v = await listedUser();
    const { client } = await server.login(v.address, 'secret');
    await ok(client, '<prefsStore><TimeZone>Asia/Tokyo</TimeZone></prefsStore>');
    client.close();
    assert.equal((await put(v, `${v.cal}floating.ics`, ics('floating', 'Floating', '20240304T100000', '20240304T110000'))).status, 201);
    const range = (start: string, end: string): string => query(`<C:comp-filter name="VEVENT"><C:time-range start="${start}" end="${end}"/></C:comp-filter>`);
    assert.deepEqual(names(await report(v, v.cal, range('20240304T003000Z', '20240304T013000Z'))), ['floating.ics'], '10:00 in Tokyo is 01:00Z');
    assert.deepEqual(names(await report(v, v.cal, range('20240304T100000Z', '20240304T110000Z'))), []);
  });

  test('calendar-query: a bad time-range or filter is refused', async () => {
    for (const range of ['start="2024-03-04" end="20240305T000000Z"', 'start="20240305T000000Z" end="20240304T000000Z"', '', 'start="20241345T000000Z"']) {
      const result = await report(u, u.cal, query(`<C:comp-filter name="VEVENT"><C:time-range ${range}/></C:comp-filter>`));
      assert.equal(result.status, 403, `${range}: ${result.text}`);
      assert.equal(errorCondition(result), 'valid-filter');
    }
    const notCalendar = await report(u, u.cal, `<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="${CAL_NS}"><C:filter><C:comp-filter name="VEVENT"/></C:filter></C:calendar-query>`);
    assert.equal(errorCondition(notCalendar), 'valid-filter');
    const collation = await report(u, u.cal, query('<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match collation="i;klingon">x</C:text-match></C:prop-filter></C:comp-filter>'));
    assert.equal(errorCondition(collation), 'supported-collation');
    assert.equal((await report(u, u.cal, '<D:unknown-report xmlns:D="DAV:"/>')).status, 403);
  });

  test('calendar-multiget: the items asked for with their data, a missing one 404', async () => {
    const body = `<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" xmlns:C="${CAL_NS}"><D:prop><D:getetag/><C:calendar-data/></D:prop><D:href>${u.cal}single.ics</D:href><D:href>${u.cal}task.ics</D:href><D:href>${u.cal}missing.ics</D:href></C:calendar-multiget>`;
    const { responses } = multistatus(await report(u, u.cal, body));
    assert.match(responses.get(`${u.cal}single.ics`)!.props.get('calendar-data')!.element.text(), /SUMMARY:Dentist/);
    assert.match(responses.get(`${u.cal}task.ics`)!.props.get('calendar-data')!.element.text(), /BEGIN:VTODO/);
    assert.match(responses.get(`${u.cal}task.ics`)!.props.get('getetag')!.element.text(), /^"\d+"$/);
    assert.equal(responses.get(`${u.cal}missing.ics`)!.status, '404');
  });

  test('free-busy-query: BUSY and BUSY-TENTATIVE periods in UTC, a transparent event left out, recurrences expanded', async () => {
    const body = `<?xml version="1.0"?><C:free-busy-query xmlns:C="${CAL_NS}"><C:time-range start="20240304T000000Z" end="20240313T000000Z"/></C:free-busy-query>`;
    const result = await report(u, u.cal, body);
    assert.equal(result.status, 200, result.text);
    assert.match(String(result.headers['content-type']), /^text\/calendar/);
    const lines = result.text.split('\r\n');
    assert.ok(lines.includes('BEGIN:VFREEBUSY'));
    assert.ok(lines.includes('DTSTART:20240304T000000Z'));
    const periods = lines.filter((l) => l.startsWith('FREEBUSY')).sort();
    assert.deepEqual(periods, [
      'FREEBUSY;FBTYPE=BUSY-TENTATIVE:20240306T120000Z/20240306T130000Z',
      'FREEBUSY;FBTYPE=BUSY:20240304T100000Z/20240304T110000Z',
      'FREEBUSY;FBTYPE=BUSY:20240305T090000Z/20240305T093000Z',
      'FREEBUSY;FBTYPE=BUSY:20240312T090000Z/20240312T093000Z',
    ]);
    const bad = await report(u, u.cal, `<?xml version="1.0"?><C:free-busy-query xmlns:C="${CAL_NS}"><C:time-range start="20240304T000000Z"/></C:free-busy-query>`);
    assert.equal(bad.status, 400);
  });
});

describe('CalDAV: sync-collection and XIMSS', () => {
  test('sync-collection: everything, then additions, changes and removals since a token; a bad token', async () => {
    const u = await listedUser();
    assert.equal((await put(u, `${u.cal}a.ics`, ics('a', 'A', '20240304T100000Z', '20240304T110000Z'))).status, 201);
    assert.equal((await put(u, `${u.cal}b.ics`, ics('b', 'B', '20240304T120000Z', '20240304T130000Z'))).status, 201);
    const first = multistatus(await report(u, u.cal, syncBody('', '<D:getetag/><C:calendar-data xmlns:C="urn:ietf:params:xml:ns:caldav"/>')));
    assert.deepEqual([...first.responses.keys()].sort(), [`${u.cal}a.ics`, `${u.cal}b.ics`]);
    assert.match(first.responses.get(`${u.cal}a.ics`)!.props.get('calendar-data')!.element.text(), /SUMMARY:A/);
    const token = first.root.element('D:sync-token')!.text();
    assert.equal(multistatus(await report(u, u.cal, syncBody(token))).responses.size, 0, 'nothing new');
    const etagB = (await dav(u, 'GET', `${u.cal}b.ics`)).headers.etag!;
    assert.equal((await put(u, `${u.cal}b.ics`, ics('b', 'B2', '20240304T120000Z', '20240304T130000Z'), { 'If-Match': etagB })).status, 204);
    assert.equal((await put(u, `${u.cal}c.ics`, ics('c', 'C', '20240305T120000Z', '20240305T130000Z'))).status, 201);
    assert.equal((await dav(u, 'DELETE', `${u.cal}a.ics`)).status, 204);
    const second = multistatus(await report(u, u.cal, syncBody(token)));
    assert.equal(second.responses.get(`${u.cal}a.ics`)?.status, '404');
    assert.notEqual(second.responses.get(`${u.cal}b.ics`)!.props.get('getetag')!.element.text(), etagB);
    assert.ok(second.responses.get(`${u.cal}c.ics`)!.props.has('getetag'));
    assert.equal(second.responses.size, 3);
    const bad = await report(u, u.cal, syncBody('http://ximssd.invalid/ns/sync/1-x'));
    assert.equal(bad.status, 403);
    assert.equal(errorCondition(bad), 'valid-sync-token');
  });

  test('a CalDAV PUT reaches a XIMSS session (calendarReport, findEvents); calendarPublish and calendarCancel reach CalDAV (sync, GET by <uid>.ics)', async () => {
    const u = await listedUser();
    const { client } = await server.login(u.address, 'secret');
    await ok(client, '<prefsStore><TimeZone>UTC</TimeZone></prefsStore>');
    await ok(client, '<calendarOpen calendar="Calendar"/>');
    const token = multistatus(await report(u, u.cal, syncBody(''))).root.element('D:sync-token')!.text();
    assert.equal((await put(u, `${u.cal}from-dav.ics`, ics('from-dav', 'From CalDAV', '20240304T100000Z', '20240304T110000Z', ['RRULE:FREQ=DAILY;COUNT=3']))).status, 201);
    const notice = await client.nextAsync('calendarReport');
    assert.equal(notice.attrs.calendar, 'Calendar');
    const found = await ok(client, '<findEvents calendar="Calendar" timeFrom="20240305T000000" timeTill="20240306T000000"/>');
    const summaries = found.messages.filter((m) => m.name === 'events').flatMap((d) => d.elements('event').map((e) => e.element('summary')?.text()));
    assert.deepEqual(summaries, ['From CalDAV']);
    await ok(
      client,
      '<calendarPublish calendar="Calendar" sendRequests="no"><iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="t"><vevent><uid>from/ximss 1</uid><summary>From XIMSS</summary><dtstart>20240307T100000Z</dtstart><dtend>20240307T110000Z</dtend></vevent></vCalendar></iCalendar></calendarPublish>',
    );
    const published = `${u.cal}from_2Fximss_201.ics`;
    const changes = multistatus(await report(u, u.cal, syncBody(token)));
    assert.deepEqual([...changes.responses.keys()].sort(), [`${u.cal}from-dav.ics`, published]);
    const got = await dav(u, 'GET', published);
    assert.equal(got.status, 200);
    assert.match(got.text, /SUMMARY:From XIMSS/);
    const token2 = changes.root.element('D:sync-token')!.text();
    // Changed over CalDAV under that name, then cancelled over XIMSS: the name is reported gone.
    assert.equal((await put(u, published, ics('from/ximss 1', 'From XIMSS, edited', '20240307T100000Z', '20240307T120000Z'), { 'If-Match': got.headers.etag! })).status, 204);
    const readBack = await ok(client, '<findEvents calendar="Calendar" timeFrom="20240307T000000" timeTill="20240308T000000"/>');
    assert.match(readBack.messages.map(String).join(), /From XIMSS, edited/);
    await ok(client, '<calendarCancel calendar="Calendar" itemUID="from/ximss 1" sendRequests="no"/>');
    const removed = multistatus(await report(u, u.cal, syncBody(token2)));
    assert.equal(removed.responses.get(published)?.status, '404', [...removed.responses.keys()].join());
    assert.equal((await dav(u, 'GET', published)).status, 404);
    client.close();
  });
});

const PYTHON_CLIENT = String.raw`
import datetime, json, sys
import caldav

url, user, password = sys.argv[1:4]
utc = datetime.timezone.utc
out = {}
client = caldav.DAVClient(url=url, username=user, password=password)
principal = client.principal()
out['before'] = sorted(c.name for c in principal.calendars())
cal = principal.make_calendar(name='PyCal', cal_id='PyCal')
out['after'] = sorted(c.name for c in principal.calendars())

def event(uid, summary, start, end, extra=''):
    return ('BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//py//EN\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20300101T000000Z\r\n'
            'SUMMARY:%s\r\nDTSTART:%s\r\nDTEND:%s\r\n%sEND:VEVENT\r\nEND:VCALENDAR\r\n') % (uid, summary, start, end, extra)

cal.save_event(event('py-single', 'Single', '20300107T100000Z', '20300107T110000Z'))
cal.save_event(event('py-weekly', 'Weekly', '20300108T090000Z', '20300108T100000Z', 'RRULE:FREQ=WEEKLY;COUNT=12\r\n'))
cal.save_event(event('py-free', 'Transparent', '20300109T090000Z', '20300109T100000Z', 'TRANSP:TRANSPARENT\r\n'))
objects = cal.objects_by_sync_token()
out['synced'] = len(list(objects))

def summaries(found):
    return sorted(str(e.vobject_instance.vevent.summary.value) for e in found)

out['first_week'] = summaries(cal.date_search(start=datetime.datetime(2030, 1, 7, tzinfo=utc), end=datetime.datetime(2030, 1, 14, tzinfo=utc), expand=False))
out['later_week'] = summaries(cal.date_search(start=datetime.datetime(2030, 3, 4, tzinfo=utc), end=datetime.datetime(2030, 3, 11, tzinfo=utc), expand=False))

single = cal.event_by_uid('py-single')
single.vobject_instance.vevent.summary.value = 'Single changed'
single.save()
cal.event_by_uid('py-free').delete()
updated, deleted = objects.sync()
out['updated'] = sorted(str(o.url).rsplit('/', 1)[1] for o in updated)
out['deleted'] = len(deleted)

fb = cal.freebusy_request(datetime.datetime(2030, 1, 7, tzinfo=utc), datetime.datetime(2030, 1, 10, tzinfo=utc))
out['freebusy'] = sorted(str(p.value[0][0].astimezone(utc).strftime('%Y%m%dT%H%M%SZ')) for p in fb.vobject_instance.vfreebusy.contents.get('freebusy', []))
print(json.dumps(out))
`;

describe('CalDAV: real clients', () => {
  test('python3-caldav: principal, calendars, make_calendar, save_event, date_search over recurrences, sync token, free/busy', async () => {
    const u = await listedUser();
    const run = await runPython(PYTHON_CLIENT, [`http://127.0.0.1:${server.ports.http}/dav/`, u.address, 'secret']);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    assert.deepEqual(out.before, ['Calendar']);
    assert.deepEqual(out.after, ['Calendar', 'PyCal']);
    assert.equal(out.synced, 3);
    assert.deepEqual(out.first_week, ['Single', 'Transparent', 'Weekly']);
    assert.deepEqual(out.later_week, ['Weekly'], 'the recurring event found eight weeks on');
    assert.equal(out.deleted, 1);
    assert.equal((out.updated as string[]).length, 1);
    assert.deepEqual(out.freebusy, ['20300107T100000Z', '20300108T090000Z'], 'the transparent event is not busy');
    // What the client stored is what XIMSS reads.
    const { client } = await server.login(u.address, 'secret');
    await ok(client, '<prefsStore><TimeZone>UTC</TimeZone></prefsStore>');
    await ok(client, '<calendarOpen calendar="PyCal"/>');
    const found = await ok(client, '<findEvents calendar="PyCal" timeFrom="20300107T000000" timeTill="20300114T000000"/>');
    const summaries = found.messages.filter((m) => m.name === 'events').flatMap((d) => d.elements('event').map((e) => e.element('summary')?.text()));
    assert.deepEqual(summaries, ['Single changed', 'Weekly']);
    client.close();
  });

  test('vdirsyncer: discovers the calendars, syncs down, uploads, changes and deletes, and brings down a XIMSS item', async () => {
    const u = await listedUser();
    const sync = await Vdirsyncer.create({ url: `http://127.0.0.1:${server.ports.http}/`, user: u.address, password: 'secret' }, 'caldav');
    const { client } = await server.login(u.address, 'secret');
    try {
      assert.equal((await put(u, `${u.cal}server-1.ics`, ics('server-1', 'Server one', '20240304T100000Z', '20240304T110000Z'))).status, 201);
      let run = await sync.discover();
      assert.equal(run.code, 0, run.output);
      assert.deepEqual(sync.collections(), ['Calendar']);
      run = await sync.sync();
      assert.equal(run.code, 0, run.output);
      let items = sync.items('Calendar');
      assert.equal(items.size, 1, run.output);
      assert.match([...items.values()][0]!, /SUMMARY:Server one/);
      sync.write('Calendar', 'local-1.ics', ics('local-1', 'Local one', '20240305T100000Z', '20240305T110000Z'));
      run = await sync.sync();
      assert.equal(run.code, 0, run.output);
      const listed = multistatus(await dav(u, 'PROPFIND', u.cal, { headers: { Depth: '1' } }));
      const uploaded = [...listed.responses.keys()].find((h) => h !== u.cal && h !== `${u.cal}server-1.ics`);
      assert.ok(uploaded, [...listed.responses.keys()].join(', '));
      assert.match((await dav(u, 'GET', uploaded)).text, /SUMMARY:Local one/);
      const serverFile = [...sync.items('Calendar').entries()].find(([, t]) => t.includes('Server one'))![0];
      sync.write('Calendar', serverFile, ics('server-1', 'Server one changed', '20240304T100000Z', '20240304T113000Z'));
      sync.remove('Calendar', 'local-1.ics');
      run = await sync.sync();
      assert.equal(run.code, 0, run.output);
      assert.match((await dav(u, 'GET', `${u.cal}server-1.ics`)).text, /SUMMARY:Server one changed/);
      assert.equal((await dav(u, 'GET', uploaded)).status, 404);
      await ok(client, '<calendarOpen calendar="Calendar"/>');
      await ok(
        client,
        '<calendarPublish calendar="Calendar" sendRequests="no"><iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="t"><vevent><uid>ximss-side</uid><summary>From XIMSS</summary><dtstart>20240306T100000Z</dtstart><dtend>20240306T110000Z</dtend></vevent></vCalendar></iCalendar></calendarPublish>',
      );
      run = await sync.sync();
      assert.equal(run.code, 0, run.output);
      items = sync.items('Calendar');
      assert.equal(items.size, 2, [...items.keys()].join(', '));
      assert.ok([...items.values()].some((t) => t.includes('SUMMARY:From XIMSS')));
    } finally {
      sync.close();
      client.close();
    }
  });
});

