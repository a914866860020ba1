/**
 * The `calendar` bench area (issue 13): a month view — findEvents over 31 days — of a
 * calendar of 10,000 items, 1,000 of them recurring (bench/lib/calendar-data.ts), beside
 * Radicale answering a CalDAV calendar-query with the same time range over the same items,
 * and the same calendar-query through ximssd's own CalDAV.
 *
 * Every answer is checked against the one ical.js computes from the items (not against
 * another server's): the items a calendar-query must return, the items and occurrences a
 * month view must show.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { textToXcal } from '../../src/services/calendar/xcal.js';
import { benchCalendar, MONTH_RANGE, type BenchCalendar, type CalendarItem, type MonthAnswer } from './calendar-data.js';
import { davRequest, type DavReply, type DavTarget } from './carddav-bench.js';
import { median } from './figures.js';
import { ensureRadicale, startRadicale } from './radicale.js';
import { attr, decodeEntities, XimssClient } from './ximss-client.js';
import { PASSWORD, ROOT, USER, startXimssd } from './ximssd.js';

/** The calendar mailbox: the name and class CalDAV shows ximssd's calendars by. */
const CALENDAR = 'Calendar';
/** Loading: connections, and requests in flight on each. */
const LOAD_CONNECTIONS = 4;
const LOAD_WINDOW = 8;
/** Items PUT into Radicale (the others are written into its storage). */
const RADICALE_PUTS = 5;

export interface QueryTiming {
  /** Median milliseconds of one request (after one untimed). */
  ms: number;
  bytes: number;
  /** Undefined when the answer is the expected one; else what is wrong with it. */
  wrong?: string;
}

export interface CalendarFigures {
  items: number;
  recurring: number;
  bytes: number;
  generateMs: number;
  expected: { items: number; occurrences: number };
  runs: number;
  ximssd: {
    /** 10,000 calendarPublish over XIMSS, pipelined. */
    loadMs: number;
    /** calendarOpen of a fresh session after the load (it brings the calendar index up to date). */
    openMs: number;
    /** The first findEvents (untimed in the median). */
    firstMs: number;
    find: QueryTiming;
    /** The same calendar-query as Radicale's, over ximssd's CalDAV; or why not. */
    caldav: QueryTiming | { notMeasured: string };
  };
  radicale?: {
    version: string;
    /** The collection came from bench/results/cache (its item cache filled on an earlier run). */
    fromCache: boolean;
    /** Items written straight into its storage (or copied from the cache), and the time that took. */
    writeMs: number;
    /** The PROPFIND (Depth 1, getetag) that has it read them and fill its item cache (0 when copied). */
    readMs: number;
    /** The last items, PUT one at a time into the nearly full calendar: ms per PUT. */
    putCount: number;
    putMs: number;
    /** The first calendar-query (untimed in the median; Radicale fills its item cache). */
    firstMs: number;
    query: QueryTiming;
  };
  radicaleReason?: string;
}

export type CalendarResult = ({ available: true } & CalendarFigures) | { available: false; reason: string };

// ---------------------------------------------------------------------------------------
// Checks

function compareUids(what: string, got: ReadonlySet<string>, expected: MonthAnswer): string | undefined {
  const missing = expected.uids.filter((uid) => !got.has(uid));
  const want = new Set(expected.uids);
  const extra = [...got].filter((uid) => !want.has(uid));
  if (!missing.length && !extra.length) return undefined;
  const few = (list: string[]): string => list.slice(0, 3).join(', ') + (list.length > 3 ? ', …' : '');
  return (
    `${what}: ${got.size} items where ${expected.items} are expected` +
    (missing.length ? `; ${missing.length} missing (${few(missing)})` : '') +
    (extra.length ? `; ${extra.length} too many (${few(extra)})` : '')
  );
}

/** A findEvents answer: the day messages' events, an occurrence counted once however many days it spans. */
function checkMonthView(data: readonly string[], expected: MonthAnswer): string | undefined {
  const items = new Set<string>();
  const occurrences = new Set<string>();
  for (const message of data) {
    if (!message.startsWith('<events')) continue;
    for (const [tag] of message.matchAll(/<event\s[^>]*>/g)) {
      const item = attr(tag, 'itemUID') ?? '?';
      items.add(item);
      occurrences.add(`${item} ${attr(tag, 'recurrenceId') ?? ''} ${attr(tag, 'timeFrom') ?? attr(tag, 'dateFrom') ?? '?'}`);
    }
  }
  const wrongItems = compareUids('findEvents', items, expected);
  if (wrongItems) return wrongItems;
  if (occurrences.size !== expected.occurrences) return `findEvents: ${occurrences.size} occurrences where ${expected.occurrences} are expected`;
  return undefined;
}

/** A calendar-query answer: one response per item, each with its calendar-data. */
function checkQueryAnswer(what: string, body: string, expected: MonthAnswer): string | undefined {
  const responses = (body.match(/<(?:[\w-]+:)?response[\s>]/g) ?? []).length;
  const calendars = (body.match(/BEGIN:VCALENDAR/g) ?? []).length;
  if (calendars !== responses) return `${what}: ${responses} responses but ${calendars} with calendar-data`;
  // calendar-data as the server wrote it: escaped (CR as &#13; too) or in CDATA, properties in any order.
  const text = decodeEntities(body.replace(/<!\[CDATA\[|\]\]>/g, ''));
  const uids = new Set<string>();
  for (const match of text.matchAll(/^UID:([^\r\n]+)/gm)) uids.add(match[1]!);
  return compareUids(what, uids, expected);
}

// ---------------------------------------------------------------------------------------
// CalDAV

function calendarQueryBody(): string {
  return (
    '<?xml version="1.0" encoding="utf-8"?>\n' +
    '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">' +
    '<D:prop><D:getetag/><C:calendar-data/></D:prop>' +
    '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">' +
    `<C:time-range start="${MONTH_RANGE.start}" end="${MONTH_RANGE.end}"/>` +
    '</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>'
  );
}

async function calendarQuery(target: DavTarget, collection: string): Promise<{ ms: number; reply: DavReply }> {
  const t0 = performance.now();
  const reply = await davRequest(target, 'REPORT', collection, calendarQueryBody(), { 'Content-Type': 'application/xml; charset=utf-8', Depth: '1' });
  return { ms: performance.now() - t0, reply };
}

/** The calendar-query timed `runs` times after one untimed; its answer checked. */
async function timeCalendarQuery(target: DavTarget, collection: string, runs: number, expected: MonthAnswer, what: string): Promise<{ firstMs: number; query: QueryTiming }> {
  const first = await calendarQuery(target, collection);
  if (first.reply.status !== 207) throw new Error(`REPORT ${collection}: HTTP ${first.reply.status} ${first.reply.body.toString('utf8').slice(0, 300)}`);
  const wrong = checkQueryAnswer(what, first.reply.body.toString('utf8'), expected);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push((await calendarQuery(target, collection)).ms);
  return { firstMs: first.ms, query: { ms: median(times), bytes: first.reply.body.length, ...(wrong ? { wrong } : {}) } };
}

/** An item's name in a collection, as the bench PUTs it (Radicale stores it under that name). */
const itemHref = (item: CalendarItem): string => `${item.uid}.ics`;

/** PUTs the items into a collection one at a time (If-None-Match: *), as a client adds events. */
async function putItems(target: DavTarget, collection: string, items: readonly CalendarItem[]): Promise<void> {
  for (const item of items) {
    const path = collection + encodeURIComponent(itemHref(item));
    const reply = await davRequest(target, 'PUT', path, item.text, { 'Content-Type': 'text/calendar; charset=utf-8', 'If-None-Match': '*' });
    if (reply.status !== 201 && reply.status !== 204) throw new Error(`PUT ${path}: HTTP ${reply.status} ${reply.body.toString('utf8').slice(0, 300)}`);
  }
}

const PROPFIND_ETAGS = '<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>';

async function mkCalendar(target: DavTarget, collection: string): Promise<void> {
  const body =
    '<?xml version="1.0" encoding="utf-8"?>\n' +
    '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>' +
    '<D:displayname>Bench</D:displayname>' +
    '<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>' +
    '</D:prop></D:set></C:mkcalendar>';
  const reply = await davRequest(target, 'MKCALENDAR', collection, body, { 'Content-Type': 'application/xml; charset=utf-8' });
  if (reply.status !== 201) throw new Error(`MKCALENDAR ${collection}: HTTP ${reply.status} ${reply.body.toString('utf8').slice(0, 300)}`);
}

// ---------------------------------------------------------------------------------------
// ximssd over XIMSS

/** The month view, as findEvents asks for it: the range in GMT, the session in UTC too. */
const findEventsRequest = (id: string): string =>
  `<findEvents id="${id}" calendar="${CALENDAR}" timeFrom="${MONTH_RANGE.start}" timeTill="${MONTH_RANGE.end}"/>`;

async function openSession(port: number): Promise<XimssClient> {
  const client = await XimssClient.connect(port, USER, PASSWORD);
  // UTC: the days of the view are then the days of the CalDAV time-range.
  await client.call((id) => `<prefsStore id="${id}"><TimeZone>UTC</TimeZone></prefsStore>`);
  return client;
}

/** calendarPublish of every item, on LOAD_CONNECTIONS sessions with LOAD_WINDOW requests in flight on each. */
async function loadOverXimss(port: number, bodies: readonly string[]): Promise<number> {
  const clients = await Promise.all(Array.from({ length: LOAD_CONNECTIONS }, () => openSession(port)));
  try {
    const created = await clients[0]!.request((id) => `<mailboxCreate id="${id}" mailbox="${CALENDAR}" mailboxClass="IPF.Appointment"/>`);
    if (created.error !== undefined && !/exist/i.test(created.error)) throw new Error(`mailboxCreate ${CALENDAR}: ${created.error}`);
    for (const client of clients) await client.call((id) => `<calendarOpen id="${id}" calendar="${CALENDAR}"/>`);
    let next = 0;
    const worker = async (client: XimssClient): Promise<void> => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        await client.call((id) => `<calendarPublish id="${id}" calendar="${CALENDAR}" sendRequests="no">${body}</calendarPublish>`);
      }
    };
    const t0 = performance.now();
    await Promise.all(clients.flatMap((client) => Array.from({ length: LOAD_WINDOW }, () => worker(client))));
    return performance.now() - t0;
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

async function timeMonthView(port: number, runs: number, expected: MonthAnswer): Promise<{ openMs: number; firstMs: number; find: QueryTiming }> {
  const client = await openSession(port);
  try {
    const t0 = performance.now();
    await client.call((id) => `<calendarOpen id="${id}" calendar="${CALENDAR}"/>`);
    const openMs = performance.now() - t0;
    const t1 = performance.now();
    const first = await client.call(findEventsRequest);
    const firstMs = performance.now() - t1;
    const wrong = checkMonthView(first.data, expected);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await client.call(findEventsRequest);
      times.push(performance.now() - t);
    }
    const bytes = first.data.reduce((n, message) => n + Buffer.byteLength(message), 0);
    return { openMs, firstMs, find: { ms: median(times), bytes, ...(wrong ? { wrong } : {}) } };
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------

type Log = (line: string) => void;

async function ximssdSide(calendar: BenchCalendar, runs: number, log: Log, cpuProfileDir?: string): Promise<CalendarFigures['ximssd']> {
  const { items, expected } = calendar;
  // The XML form of each item, made before the clock starts: the load times the server.
  const bodies = items.map((item) => textToXcal(item.text).toString());
  const server = await startXimssd(cpuProfileDir ? { cpuProfileDir } : {});
  try {
    const loadMs = await loadOverXimss(server.ports.ximss, bodies);
    log(`  ximssd: ${items.length} calendarPublish in ${(loadMs / 1000).toFixed(1)} s (${LOAD_CONNECTIONS} sessions × ${LOAD_WINDOW} in flight)`);
    const month = await timeMonthView(server.ports.ximss, runs, expected);
    log(`  ximssd: calendarOpen ${month.openMs.toFixed(0)} ms, first findEvents ${month.firstMs.toFixed(0)} ms, then median ${month.find.ms.toFixed(1)} ms of ${runs}; ${month.find.wrong ?? 'answer as expected'}`);
    const target: DavTarget = { port: server.ports.http, user: USER, password: PASSWORD };
    const collection = `/dav/calendars/${USER.split('@')[0]}/${CALENDAR}/`;
    const probe = await calendarQuery(target, collection);
    let caldav: QueryTiming | { notMeasured: string };
    if (probe.reply.status !== 207) caldav = { notMeasured: `HTTP ${probe.reply.status} to REPORT ${collection}` };
    else caldav = (await timeCalendarQuery(target, collection, runs, expected, 'ximssd CalDAV calendar-query')).query;
    if ('notMeasured' in caldav) log(`  ximssd CalDAV: not measured: ${caldav.notMeasured}`);
    else log(`  ximssd CalDAV: calendar-query median ${caldav.ms.toFixed(1)} ms of ${runs}; ${caldav.wrong ?? 'answer as expected'}`);
    return { loadMs, openMs: month.openMs, firstMs: month.firstMs, find: month.find, caldav };
  } finally {
    await server.stop();
  }
}

export async function radicaleSide(calendar: BenchCalendar, runs: number, log: Log): Promise<NonNullable<CalendarFigures['radicale']>> {
  const { items, expected } = calendar;
  const radicale = await startRadicale({ bench: PASSWORD });
  try {
    const target: DavTarget = { port: radicale.port, user: 'bench', password: PASSWORD };
    const collection = '/bench/calendar/';
    await mkCalendar(target, collection);
    // A PUT into Radicale reads every item of the collection (its no-uid-conflict check), so
    // 10,000 PUTs take hours. Most items are written into its storage as the files a PUT
    // leaves (one .ics per item, named by its href): Radicale reads its collections from the
    // disk on each request. A PROPFIND then has it read them all once and fill its item cache
    // (as the PUTs would have), which takes it minutes: the filled collection is kept under
    // bench/results/cache and copied in on later runs (the cache is Radicale's own, keyed by
    // each file's content, so it holds, and no PROPFIND is needed). The last few items go by
    // PUT, one at a time, timed.
    const putCount = Math.min(RADICALE_PUTS, Math.floor(items.length / 10));
    const written = items.slice(0, items.length - putCount);
    const folder = join(radicale.storageFolder, 'collection-root', 'bench', 'calendar');
    const key = createHash('sha256').update(radicale.version);
    for (const item of written) key.update(item.text);
    const kept = join(ROOT, 'bench', 'results', 'cache', `radicale-calendar-${key.digest('hex').slice(0, 16)}`);
    const fromCache = existsSync(kept);
    const t1 = performance.now();
    if (fromCache) cpSync(kept, folder, { recursive: true });
    else for (const item of written) writeFileSync(join(folder, itemHref(item)), item.text);
    const writeMs = performance.now() - t1;
    let readMs = 0;
    if (!fromCache) {
      const t2 = performance.now();
      const listing = await davRequest(target, 'PROPFIND', collection, PROPFIND_ETAGS, { 'Content-Type': 'application/xml; charset=utf-8', Depth: '1' });
      if (listing.status !== 207) throw new Error(`PROPFIND ${collection}: HTTP ${listing.status} ${listing.body.toString('utf8').slice(0, 300)}`);
      readMs = performance.now() - t2;
      mkdirSync(dirname(kept), { recursive: true });
      rmSync(`${kept}.part`, { recursive: true, force: true });
      cpSync(folder, `${kept}.part`, { recursive: true });
      renameSync(`${kept}.part`, kept);
    }
    const t3 = performance.now();
    await putItems(target, collection, items.slice(items.length - putCount));
    const putMs = (performance.now() - t3) / Math.max(putCount, 1);
    log(
      `  Radicale ${radicale.version}: ${written.length} items ${fromCache ? 'copied (with its item cache) from ' + kept : 'written into its storage'} in ${Math.round(writeMs)} ms, ` +
        (fromCache ? '' : `read by a PROPFIND in ${Math.round(readMs)} ms (filling its item cache); `) +
        `${putCount} PUT one at a time: ${putMs.toFixed(0)} ms each`,
    );
    const timed = await timeCalendarQuery(target, collection, runs, expected, 'Radicale calendar-query');
    log(`  Radicale: first calendar-query ${timed.firstMs.toFixed(0)} ms, then median ${timed.query.ms.toFixed(1)} ms of ${runs}; ${timed.query.wrong ?? 'answer as expected'}`);
    return { version: radicale.version, fromCache, writeMs, readMs, putCount, putMs, firstMs: timed.firstMs, query: timed.query };
  } finally {
    await radicale.stop();
  }
}

export async function calendarBench(params: { items: number; runs: number; cpuProfileDir?: string; log?: Log }): Promise<CalendarResult> {
  const log = params.log ?? console.log;
  const t0 = performance.now();
  const calendar = benchCalendar(params.items);
  const generateMs = performance.now() - t0;
  const { items, expected } = calendar;
  log(
    `  ${items.length} items (${calendar.recurring} recurring, ${(calendar.bytes / 1024 / 1024).toFixed(1)} MB of iCalendar) made in ${Math.round(generateMs)} ms; ` +
      `the month ${MONTH_RANGE.start}–${MONTH_RANGE.end} must show ${expected.items} items, ${expected.occurrences} occurrences (by ical.js)`,
  );
  const ximssd = await ximssdSide(calendar, params.runs, log, params.cpuProfileDir);
  const base = { items: items.length, recurring: calendar.recurring, bytes: calendar.bytes, generateMs, expected: { items: expected.items, occurrences: expected.occurrences }, runs: params.runs, ximssd };
  const availability = await ensureRadicale(log);
  if (!availability.available) return { available: true, ...base, radicaleReason: availability.reason };
  return { available: true, ...base, radicale: await radicaleSide(calendar, params.runs, log) };
}
