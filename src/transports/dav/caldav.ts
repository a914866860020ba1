/**
 * CalDAV (RFC 4791, sync-collection of RFC 6578) over the Calendar-class (IPF.Appointment)
 * and Tasks-class (IPF.Task) mailboxes: `/dav/calendars/<account>/` is the calendar home,
 * each such mailbox a calendar collection `/dav/calendars/<account>/<mailbox>/`, each item
 * message a calendar object resource `<name>.ics` in it. Items are stored as messages of
 * the mailbox (src/services/calendar/dav.ts), so XIMSS sessions see CalDAV changes
 * (calendarReport, findEvents) and CalDAV clients see XIMSS ones through the same journal.
 *
 * Names and ETags work as CardDAV's do (carddav.ts): names kept by (mailbox, ORIGUID), ETags
 * `"<message UID>"`. calendar-query answers a time-range on VEVENT/VTODO (and on their
 * VALARMs) from the calendar index with recurrences expanded (CalendarService.find), then
 * applies the rest of the filter to those items only; free-busy-query takes its periods from
 * the same expansion, and so does calendar-data with `expand`. Otherwise calendar-data is
 * the stored text: `limit-recurrence-set` and `comp`/`prop` subsets are not applied.
 * COPY/MOVE take an item into another calendar of the account; GET of a calendar gives all
 * its items as one VCALENDAR.
 */
import { hostname } from 'node:os';
import { fullName } from '../../services/accounts.js';
import type { AccountService } from '../../services/accounts.js';
import { CalendarDav, CalendarResourceError, checkResource, expandedText, MAX_RESOURCE_BYTES, type CalendarDavServices, type CalendarMembers, type CheckedResource } from '../../services/calendar/dav.js';
import { CALENDAR_CLASS, TASKS_CLASS } from '../../services/calendar/item.js';
import { CalendarItemError } from '../../services/calendar/occurrences.js';
import type { CalendarService } from '../../services/calendar/service.js';
import { ServiceError } from '../../services/errors.js';
import { Flag } from '../../services/mail/flags.js';
import type { MailboxHandle, MailService } from '../../services/mail/service.js';
import type { AccountRecord, MessageMeta } from '../../store/store.js';
import { ianaTimeZone } from '../../xml/time.js';
import { parsePropfind, parseProppatch, type PropfindRequest } from './bodies.js';
import { CALDAV_NS, calendarMatches, CalendarQueryError, indexedRanges, parseCalendarFilter, parseTimeRange, undatedTaskInRange, type CompFilter } from './caldav-query.js';
import { multistatusReply, readText, textReply, xmlReply } from './handler.js';
import { CS, homeHref, mailboxPrivileges, syncToken, syncTokenModseq } from './mailbox-collections.js';
import { destinationMember, encodeSegment, etagMatches, headerOf, parseDepth, parseEtagList, parseOverwrite } from './headers.js';
import { D, httpDate, propfindEntry, type LiveValue, type PropertyNode } from './properties.js';
import type { DavProvider, DavReply, DavRequest } from './provider.js';
import { child, clark, findDeep, DavBodyError, errorXml, escapeDavText, multistatusXml, tagOf, type DavElement, type MultistatusEntry } from './xml.js';

export const CAL = (local: string): string => clark(CALDAV_NS, local);
const CAL_XMLNS = `xmlns:C="${CALDAV_NS}"`;

const ICS_TYPE = 'text/calendar; charset=utf-8';
const METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'MKCALENDAR', 'REPORT', 'COPY', 'MOVE'];
const CALENDAR_CLASSES = [CALENDAR_CLASS, TASKS_CLASS];
/** Periods of a free-busy answer at most (a busy calendar over years). */
const MAX_FREEBUSY_PERIODS = 20_000;

export interface CalDavServices extends CalendarDavServices {
  accounts: AccountService;
}

function calEmpty(name: string, attrs = ''): string {
  return `<C:${name} ${CAL_XMLNS}${attrs}/>`;
}

function calError(condition: string, status = 403, detail?: string): DavReply {
  const reply = xmlReply(status, errorXml(CAL(condition)));
  if (detail) reply.headers = { 'X-Error-Text': detail.replace(/[^\x20-\x7e]/g, '?').slice(0, 200) };
  return reply;
}

/** An instant as an iCalendar UTC date-time. */
function utcText(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** The components a calendar takes: a task list (Tasks class) VTODOs only, a calendar both. */
function componentsOf(box: MailboxHandle): string[] {
  return box.record.mailboxClass === TASKS_CLASS ? ['VTODO'] : ['VEVENT', 'VTODO'];
}

/** What a REPORT's calendar-data shows of an item's stored text. */
type Render = (box: MailboxHandle, meta: MessageMeta, text: string) => Promise<string>;

export class CalDavProvider implements DavProvider {
  readonly prefix = 'calendars';
  readonly methods = METHODS;
  readonly davClasses = ['calendar-access'];
  private readonly dav: CalendarDav;

  constructor(
    private readonly services: () => CalDavServices,
    private readonly defaultDomain: string,
  ) {
    // The items' Message-IDs name the host as CalendarService's do.
    this.dav = new CalendarDav(services, defaultDomain || hostname());
  }

  private get mail(): MailService {
    return this.services().mail;
  }

  private get calendars(): CalendarService {
    return this.services().calendars;
  }



  async principalProperties(_user: AccountRecord, account: AccountRecord): Promise<Map<string, string>> {
    return new Map([
      [CAL('calendar-home-set'), `<D:href>${homeHref('/dav/calendars', account, this.defaultDomain)}</D:href>`],
      [CAL('calendar-user-address-set'), `<D:href>mailto:${escapeDavText(fullName(account))}</D:href>`],
    ]);
  }

  /** The account's zone: floating times and all-day dates of queries are read in it. */
  private async timeZone(user: AccountRecord): Promise<string> {
    const zone = (await this.services().accounts.effectivePrefs(user)).TimeZone;
    return ianaTimeZone(typeof zone === 'string' ? zone : undefined);
  }

  async handle(request: DavRequest): Promise<DavReply> {
    const { segments, method, user } = request;
    if (segments.length === 0) {
      if (method !== 'PROPFIND') return textReply(405, 'the calendars root answers PROPFIND only', { Allow: 'OPTIONS, PROPFIND' });
      return this.propfindRoot(request);
    }
    const account = segments[0]!;
    const qualified = account.includes('@') ? account : `${account}@${this.defaultDomain}`;
    if (qualified.toLowerCase() !== fullName(user).toLowerCase()) return textReply(403, "another account's calendars are not served over CalDAV");
    const home = homeHref(request.base, user, this.defaultDomain);
    if (segments.length === 1) return this.handleHome(request, home);
    if (segments.length === 2) return this.handleCalendar(request, home, segments[1]!);
    if (segments.length === 3) return this.handleItem(request, home, segments[1]!, segments[2]!);
    return textReply(404, 'not found');
  }

  // ----------------------------------------------------------------------------------
  // Collections

  /** The account's calendars and task lists (a Calendar made when there is none, as clients need one). */
  private async calendarNames(user: AccountRecord): Promise<string[]> {
    const names: string[] = [];
    for (const mailboxClass of CALENDAR_CLASSES) {
      const listed = await this.mail.list(user, '*', { mailboxClass });
      names.push(...listed.filter((m) => m.record && !m.pureFolder && !m.name.includes('/')).map((m) => m.name));
    }
    if (names.length === 0) {
      await this.mail.access(user, 'Calendar', 'r', { mailboxClass: CALENDAR_CLASS });
      names.push('Calendar');
    }
    return [...new Set(names)].sort();
  }

  private plainNode(request: DavRequest, href: string, name: string, privileges: string): PropertyNode {
    const principal = `<D:href>${request.principalHref(request.user)}</D:href>`;
    return {
      href,
      live: new Map([
        [D('resourcetype'), () => '<D:collection/>'],
        [D('displayname'), () => escapeDavText(name)],
        [D('current-user-principal'), () => principal],
        [D('current-user-privilege-set'), () => privileges],
        [D('principal-URL'), () => principal],
        [D('owner'), () => principal],
      ]),
      hidden: new Set([D('current-user-principal'), D('current-user-privilege-set')]),
    };
  }

  private async propfindRoot(request: DavRequest): Promise<DavReply> {
    const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
    if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
    const body = parsePropfind(await request.xmlBody());
    const read = '<D:privilege><D:read/></D:privilege>';
    const nodes = [this.plainNode(request, `${request.base}/`, 'Calendars', read)];
    if (depth === '1') nodes.push(this.plainNode(request, homeHref(request.base, request.user, this.defaultDomain), `Calendars of ${fullName(request.user)}`, '<D:privilege><D:all/></D:privilege>'));
    return multistatusReply(await Promise.all(nodes.map((n) => propfindEntry(n, body))));
  }

  private async handleHome(request: DavRequest, home: string): Promise<DavReply> {
    const { method } = request;
    if (method === 'PROPFIND') {
      const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
      if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
      const body = parsePropfind(await request.xmlBody());
      const entries = [await propfindEntry(this.plainNode(request, home, `Calendars of ${fullName(request.user)}`, '<D:privilege><D:all/></D:privilege>'), body)];
      if (depth === '1') {
        for (const name of await this.calendarNames(request.user)) {
          const box = await this.mail.access(request.user, name, 'r');
          entries.push(await propfindEntry(await this.calendarNode(request, home, box), body));
        }
      }
      return multistatusReply(entries);
    }
    if (method === 'GET' || method === 'HEAD') return textReply(200, `calendars of ${fullName(request.user)}`);
    return textReply(405, 'the calendar home answers PROPFIND, GET and HEAD; make a calendar with MKCALENDAR below it', { Allow: 'OPTIONS, PROPFIND, GET, HEAD' });
  }

  private calendarHref(home: string, name: string): string {
    return `${home}${encodeSegment(name)}/`;
  }



  private async calendarNode(request: DavRequest, home: string, box: MailboxHandle): Promise<PropertyNode> {
    const modseq = (await this.mail.index(box)).modseq;
    const principal = `<D:href>${request.principalHref(request.user)}</D:href>`;
    const privileges = mailboxPrivileges(box.rights, [calEmpty('read-free-busy')]);
    const usage = async (): Promise<{ used: number; limit: number | undefined }> => this.mail.usage(box.owner);
    const reports = ['calendar-multiget', 'calendar-query', 'free-busy-query'].map((r) => `<D:supported-report><D:report>${calEmpty(r)}</D:report></D:supported-report>`).join('');
    return {
      href: this.calendarHref(home, box.record.name),
      live: new Map<string, LiveValue>([
        [D('resourcetype'), () => `<D:collection/>${calEmpty('calendar')}`],
        [D('displayname'), () => escapeDavText(box.record.name)],
        [CAL('calendar-description'), () => escapeDavText(`${box.record.mailboxClass === TASKS_CLASS ? 'Tasks' : 'Calendar'} mailbox ${box.record.name}`)],
        [CAL('supported-calendar-component-set'), () => componentsOf(box).map((c) => calEmpty('comp', ` name="${c}"`)).join('')],
        [CAL('supported-calendar-data'), () => calEmpty('calendar-data', ' content-type="text/calendar" version="2.0"')],
        [CAL('max-resource-size'), () => String(MAX_RESOURCE_BYTES)],
        [D('sync-token'), () => escapeDavText(syncToken(box, modseq))],
        [CS('getctag'), () => String(modseq)],
        [D('getcontenttype'), () => 'httpd/unix-directory'],
        [D('supported-report-set'), () => `${reports}<D:supported-report><D:report><D:sync-collection/></D:report></D:supported-report>`],
        [D('current-user-principal'), () => principal],
        [D('current-user-privilege-set'), () => privileges],
        [D('owner'), () => `<D:href>${request.principalHref(box.owner)}</D:href>`],
        [D('quota-used-bytes'), async () => String((await usage()).used)],
        [D('quota-available-bytes'), async () => {
          const u = await usage();
          return u.limit === undefined ? undefined : String(Math.max(0, u.limit - u.used));
        }],
      ]),
      hidden: new Set([
        D('current-user-principal'),
        D('current-user-privilege-set'),
        D('quota-used-bytes'),
        D('quota-available-bytes'),
        D('supported-report-set'),
        D('sync-token'),
        CAL('supported-calendar-data'),
        CAL('max-resource-size'),
      ]),
    };
  }

  private async openCalendar(request: DavRequest, name: string, need: string): Promise<MailboxHandle | undefined> {
    try {
      const box = await this.mail.access(request.user, name, need);
      if (!CALENDAR_CLASSES.includes(box.record.mailboxClass)) return undefined;
      return box;
    } catch (err) {
      if (err instanceof ServiceError && err.message === 'mailbox is not found') return undefined;
      throw err;
    }
  }

  private async handleCalendar(request: DavRequest, home: string, name: string): Promise<DavReply> {
    const { method } = request;
    if (method === 'MKCALENDAR' || method === 'MKCOL') return this.makeCalendar(request, name);
    const box = await this.openCalendar(request, name, method === 'DELETE' ? 'x' : 'r');
    if (!box) return textReply(404, 'no such calendar');
    const href = this.calendarHref(home, box.record.name);
    switch (method) {
      case 'PROPFIND': {
        const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
        if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
        const body = parsePropfind(await request.xmlBody());
        const entries = [await propfindEntry(await this.calendarNode(request, home, box), body)];
        if (depth === '1') {
          const members = await this.dav.members(box);
          for (const [itemName, meta] of [...members.byName].sort((a, b) => a[1].uid - b[1].uid)) {
            entries.push(await propfindEntry(this.itemNode(box, `${href}${encodeSegment(itemName)}`, meta), body));
          }
        }
        return multistatusReply(entries);
      }
      case 'PROPPATCH': {
        // The displayname is the mailbox name (setting it to that is no change); nothing else is kept.
        const updates = parseProppatch(await request.xmlBody());
        const same = (u: (typeof updates)[number]): boolean => u.name === D('displayname') && u.action === 'set' && u.element.element.text().trim() === box.record.name;
        if (updates.length > 0 && updates.every(same)) return multistatusReply([{ href, propstats: new Map([[200, updates.map((u) => tagOf(u.name).empty)]]) }]);
        const propstats = new Map<number, string[]>([[403, updates.map((u) => tagOf(u.name).empty)]]);
        return multistatusReply([{ href, propstats, error: D('cannot-modify-protected-property') }]);
      }
      case 'DELETE':
        await this.mail.remove(request.user, box.record.name, false);
        request.log.info({ event: 'caldav.calendar_removed', user: fullName(request.user), mailbox: box.record.name }, 'calendar removed');
        return { status: 204 };
      case 'REPORT':
        return this.report(request, href, box);
      case 'GET':
      case 'HEAD':
        return { status: 200, body: await this.dav.exportText(box, await this.dav.members(box)), contentType: ICS_TYPE };
      default:
        return textReply(405, `${method} is not allowed on a calendar`, { Allow: 'OPTIONS, PROPFIND, PROPPATCH, REPORT, DELETE, GET, HEAD' });
    }
  }

  /**
   * MKCALENDAR (RFC 4791 5.3.1), or an extended MKCOL (RFC 5689) whose resourcetype is
   * calendar: a Calendar-class mailbox (Tasks-class when only VTODO is asked for). The
   * displayname is the mailbox name: one given in the body is not kept.
   */
  private async makeCalendar(request: DavRequest, name: string): Promise<DavReply> {
    const body = await request.xmlBody();
    let mailboxClass = CALENDAR_CLASS;
    if (request.method === 'MKCOL') {
      if (!body) return textReply(403, 'a plain MKCOL makes no calendar (use MKCALENDAR, or MKCOL with resourcetype calendar)');
      if (body.name !== D('mkcol')) throw new DavBodyError('the MKCOL body must be a DAV:mkcol element', 415);
      const resourcetype = findDeep(body, D('resourcetype'));
      if (!resourcetype || !child(resourcetype, CAL('calendar'))) return xmlReply(403, errorXml(D('valid-resourcetype')));
    } else if (body && body.name !== CAL('mkcalendar')) {
      throw new DavBodyError('the MKCALENDAR body must be a CALDAV:mkcalendar element', 415);
    }
    const components = body ? findDeep(body, CAL('supported-calendar-component-set')) : undefined;
    if (components) {
      const names = components.children.filter((c) => c.name === CAL('comp')).map((c) => (c.element.attrs.name ?? '').toUpperCase());
      if (names.some((n) => n !== 'VEVENT' && n !== 'VTODO')) return xmlReply(403, errorXml(CAL('supported-calendar-component')));
      if (names.length > 0 && names.every((n) => n === 'VTODO')) mailboxClass = TASKS_CLASS;
    }
    if (name.includes('/')) return textReply(403, 'calendar names may not hold "/"');
    try {
      await this.mail.create(request.user, name, mailboxClass);
    } catch (err) {
      if (err instanceof ServiceError && /exists/.test(err.message)) return xmlReply(403, errorXml(D('resource-must-be-null')));
      throw err;
    }
    request.log.info({ event: 'caldav.calendar_created', user: fullName(request.user), mailbox: name, mailboxClass }, 'calendar created');
    return { status: 201, headers: { 'Cache-Control': 'no-cache' } };
  }

  // ----------------------------------------------------------------------------------
  // Items

  /**
   * An item as PROPFIND and REPORTs show it; `render` turns the stored text into the
   * calendar-data asked for (an expansion).
   */
  private itemNode(box: MailboxHandle, href: string, meta: MessageMeta, withData = false, render?: Render): PropertyNode {
    let text: Promise<string | undefined> | undefined;
    const read = (): Promise<string | undefined> => (text ??= this.dav.resourceText(box, meta));
    const live = new Map<string, LiveValue>([
      [D('resourcetype'), () => ''],
      [D('getetag'), () => escapeDavText(`"${meta.uid}"`)],
      [D('getcontenttype'), () => ICS_TYPE],
      [D('getlastmodified'), () => httpDate(new Date(meta.internalDate))],
      [D('getcontentlength'), async () => {
        const t = await read();
        return t === undefined ? undefined : String(Buffer.byteLength(t));
      }],
      [CAL('calendar-data'), async () => {
        const t = await read();
        if (t === undefined) return undefined;
        return escapeDavText(render ? await render(box, meta, t) : t);
      }],
    ]);
    return { href, live, hidden: new Set(withData ? [] : [CAL('calendar-data')]) };
  }

  private async handleItem(request: DavRequest, home: string, calendarName: string, name: string): Promise<DavReply> {
    const { method } = request;
    const need = method === 'PUT' ? 'ri' : method === 'DELETE' || method === 'MOVE' ? 'rd' : 'r';
    const box = await this.openCalendar(request, calendarName, need);
    if (!box) return textReply(method === 'PUT' ? 409 : 404, 'no such calendar');
    const members = await this.dav.members(box);
    const meta = members.byName.get(name);
    const href = `${this.calendarHref(home, box.record.name)}${encodeSegment(name)}`;
    switch (method) {
      case 'GET':
      case 'HEAD': {
        if (!meta) return textReply(404, 'no such calendar item');
        const text = await this.dav.resourceText(box, meta);
        if (text === undefined) return textReply(404, 'no such calendar item');
        const etag = `"${meta.uid}"`;
        const headers = { ETag: etag, 'Last-Modified': httpDate(new Date(meta.internalDate)) };
        const inm = parseEtagList(headerOf(request.req.headers, 'if-none-match'));
        if (inm && etagMatches(inm, etag)) return { status: 304, headers };
        return { status: 200, body: text, contentType: ICS_TYPE, headers };
      }
      case 'PROPFIND': {
        if (!meta) return textReply(404, 'no such calendar item');
        const body = parsePropfind(await request.xmlBody());
        return multistatusReply([await propfindEntry(this.itemNode(box, href, meta), body)]);
      }
      case 'PUT':
        return this.put(request, members, name, meta);
      case 'DELETE': {
        if (!meta) return textReply(404, 'no such calendar item');
        const ifMatch = parseEtagList(headerOf(request.req.headers, 'if-match'));
        if (ifMatch && !etagMatches(ifMatch, `"${meta.uid}"`)) return textReply(412, 'the item was changed meanwhile');
        // By message UID: an item replaced meanwhile (a new UID) is left alone.
        if (!(await this.dav.remove(box, meta.uid))) return textReply(412, 'the item was changed or removed meanwhile');
        return { status: 204 };
      }
      case 'COPY':
      case 'MOVE':
        if (!meta) return textReply(404, 'no such calendar item');
        return this.copyItem(request, home, box, meta, method === 'MOVE');
      case 'PROPPATCH':
        return textReply(403, 'calendar items keep no properties of their own');
      case 'MKCOL':
      case 'MKCALENDAR':
        return textReply(405, 'calendars hold no collections');
      default:
        return textReply(405, `${method} is not allowed on a calendar item`, { Allow: 'OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, COPY, MOVE' });
    }
  }

  private async put(request: DavRequest, members: CalendarMembers, name: string, existing: MessageMeta | undefined): Promise<DavReply> {
    const { box } = members;
    const headers = request.req.headers;
    const type = (headerOf(headers, 'content-type') ?? 'text/calendar').split(';')[0]!.trim().toLowerCase();
    if (type !== 'text/calendar') return calError('supported-calendar-data', 403, `${type} is not text/calendar`);
    const etag = existing ? `"${existing.uid}"` : undefined;
    const ifMatch = parseEtagList(headerOf(headers, 'if-match'));
    const ifNoneMatch = parseEtagList(headerOf(headers, 'if-none-match'));
    if (ifMatch && !etagMatches(ifMatch, etag)) return textReply(412, existing ? 'the item was changed meanwhile' : 'there is no such item');
    if (ifNoneMatch && (ifNoneMatch === '*' ? existing !== undefined : etagMatches(ifNoneMatch, etag))) return textReply(412, 'the item exists');
    if (!/^[^\x00-\x1f\x7f]{1,255}$/.test(name)) return textReply(400, 'bad item name');
    const text = await readText(request.req, MAX_RESOURCE_BYTES);
    let resource: CheckedResource;
    try {
      resource = checkResource(text);
      const component = resource.item.kind === 'todo' ? 'VTODO' : 'VEVENT';
      if (!componentsOf(box).includes(component)) throw new CalendarResourceError(`a ${component} does not go into a task list`, 'supported-calendar-component');
    } catch (err) {
      if (err instanceof CalendarResourceError) return calError(err.condition, 403, err.message);
      throw err;
    }
    const outcome = await this.dav.store(box, name, resource, existing, await this.timeZone(request.user));
    switch (outcome.kind) {
      case 'gone':
        return textReply(412, 'the item was changed meanwhile');
      case 'uid-conflict':
        return this.uidConflict(request, members, outcome.holder);
      case 'stored':
        request.log.debug({ event: 'caldav.item_stored', user: fullName(request.user), mailbox: box.record.name, uid: outcome.message.uid }, 'calendar item stored');
        return { status: existing ? 204 : 201, headers: { ETag: `"${outcome.message.uid}"` } };
    }
  }

  /**
   * COPY/MOVE of an item into another calendar of the same account: 201, or 204 over an
   * item the Destination held (Overwrite: T, the default; F gives 412). The UID must be free
   * in the target (403 no-uid-conflict; so a COPY inside one calendar is always refused, and
   * an item keeps its name inside its calendar).
   */
  private async copyItem(request: DavRequest, home: string, source: MailboxHandle, meta: MessageMeta, move: boolean): Promise<DavReply> {
    const headers = request.req.headers;
    const member = destinationMember(headers, home);
    if (!member) return textReply(403, 'items are copied into calendars of the same account only');
    const { collection: calendarName, name } = member;
    if (!/^[^\x00-\x1f\x7f]{1,255}$/.test(name)) return textReply(400, 'bad item name');
    const target = await this.openCalendar(request, calendarName, 'ri');
    if (!target) return textReply(409, 'no such calendar');
    const targetMembers = await this.dav.members(target);
    if (target.record.id === source.record.id) {
      if (move) return textReply(403, 'an item keeps its name inside its calendar (PUT it under the new name and DELETE the old one)');
      return this.uidConflict(request, targetMembers, meta);
    }
    const existing = targetMembers.byName.get(name);
    if (existing && !parseOverwrite(headerOf(headers, 'overwrite'))) return textReply(412, 'the destination exists');
    const outcome = await this.dav.copy(source, meta, target, name, existing, move);
    switch (outcome.kind) {
      case 'gone':
        return textReply(412, 'the item was changed or removed meanwhile');
      case 'uid-conflict':
        return this.uidConflict(request, targetMembers, outcome.holder);
      case 'stored':
        request.log.info({ event: move ? 'caldav.item_moved' : 'caldav.item_copied', user: fullName(request.user), from: source.record.name, to: target.record.name }, move ? 'calendar item moved' : 'calendar item copied');
        return { status: existing ? 204 : 201, headers: { ETag: `"${outcome.message.uid}"` } };
    }
  }

  private uidConflict(request: DavRequest, members: CalendarMembers, holder: MessageMeta): DavReply {
    const href = `${this.calendarHref(homeHref(request.base, request.user, this.defaultDomain), members.box.record.name)}${encodeSegment(members.nameOf(holder))}`;
    return xmlReply(403, errorXml(CAL('no-uid-conflict'), `<D:href>${escapeDavText(href)}</D:href>`));
  }

  // ----------------------------------------------------------------------------------
  // REPORT

  private async report(request: DavRequest, href: string, box: MailboxHandle): Promise<DavReply> {
    const body = await request.xmlBody();
    if (!body) throw new DavBodyError('a REPORT needs a body');
    try {
      switch (body.name) {
        case CAL('calendar-multiget'):
          return await this.multiget(request, box, href, body);
        case CAL('calendar-query'):
          return await this.query(request, box, href, body);
        case CAL('free-busy-query'):
          return await this.freeBusy(request, box, body);
        case D('sync-collection'):
          return await this.syncCollection(request, box, href, body);
        default:
          return xmlReply(403, errorXml(D('supported-report')));
      }
    } catch (err) {
      if (err instanceof CalendarQueryError) return xmlReply(err.status, errorXml(err.condition));
      throw err;
    }
  }

  /**
   * The properties a REPORT asks for, and how its calendar-data is written: the stored text,
   * or with `<C:expand start end/>` the occurrences in that range (RFC 4791 9.6.5).
   */
  private async reportProps(request: DavRequest, body: DavElement): Promise<{ propfind: PropfindRequest; render?: Render }> {
    const prop = child(body, D('prop'));
    if (!prop) return { propfind: child(body, D('allprop')) ? { kind: 'allprop', include: [] } : { kind: 'prop', names: [D('getetag')] } };
    const propfind: PropfindRequest = { kind: 'prop', names: prop.children.map((c) => c.name) };
    const expandElement = child(prop, CAL('calendar-data')) && child(child(prop, CAL('calendar-data'))!, CAL('expand'));
    if (!expandElement) return { propfind };
    const range = parseTimeRange(expandElement);
    if (!Number.isFinite(range.start) || !Number.isFinite(range.end)) throw new CalendarQueryError('expand needs start and end', CAL('valid-filter'), 400);
    const zone = await this.timeZone(request.user);
    const render: Render = async (box, meta, text) => {
      const item = await this.calendars.item(box, meta.uid);
      if (!item) return text;
      try {
        return expandedText(text, item, range.start, range.end, zone);
      } catch (err) {
        if (err instanceof CalendarItemError) return text;
        throw err;
      }
    };
    return { propfind, render };
  }

  private async multiget(request: DavRequest, box: MailboxHandle, calendarHref: string, body: DavElement): Promise<DavReply> {
    const { propfind, render } = await this.reportProps(request, body);
    const members = await this.dav.members(box);
    const calendarPath = decodeURIComponent(new URL(calendarHref, 'http://host').pathname);
    const pending: Promise<MultistatusEntry>[] = [];
    for (const raw of body.children.filter((c) => c.name === D('href')).map((c) => c.element.text().trim())) {
      let path: string;
      try {
        path = decodeURIComponent(new URL(raw, 'http://host').pathname);
      } catch {
        pending.push(Promise.resolve({ href: raw, status: 404 }));
        continue;
      }
      const name = path.startsWith(calendarPath) ? path.slice(calendarPath.length) : undefined;
      const meta = name !== undefined && !name.includes('/') ? members.byName.get(name) : undefined;
      pending.push(meta ? propfindEntry(this.itemNode(box, raw, meta, true, render), propfind) : Promise.resolve({ href: raw, status: 404 }));
    }
    return multistatusReply(await Promise.all(pending));
  }

  /**
   * calendar-query: the items a time-range admits come from the calendar index (each
   * indexed range asked once, recurrences expanded); without a time-range every item is a
   * candidate. The rest of the filter is applied to each candidate's parsed item.
   */
  private async query(request: DavRequest, box: MailboxHandle, calendarHref: string, body: DavElement): Promise<DavReply> {
    const filter = parseCalendarFilter(body);
    const ranges = indexedRanges(filter);
    const { propfind, render } = await this.reportProps(request, body);
    const members = await this.dav.members(box);
    const zone = ranges.length > 0 ? await this.timeZone(request.user) : 'UTC';
    const hits = new Map<CompFilter, Set<number>>();
    for (const r of ranges) {
      const found = await this.calendars.find(box, r.kind, r.range.start === -Infinity ? -8.64e15 : r.range.start, r.range.end === Infinity ? 8.64e15 : r.range.end, zone, { byAlarm: r.byAlarm });
      const uids = new Set(found.map((f) => f.uid));
      if (r.kind === 'todo' && !r.byAlarm) {
        // Undated tasks have no span in the index: RFC 4791 9.9 decides them by COMPLETED/CREATED.
        for (const meta of members.byName.values()) {
          if (uids.has(meta.uid)) continue;
          const item = await this.calendars.item(box, meta.uid);
          if (item?.kind === 'todo' && !item.start && undatedTaskInRange(item.master, r.range)) uids.add(meta.uid);
        }
      }
      hits.set(r.filter, uids);
    }
    // A time-range on the item itself narrows the candidates to the index's answer.
    const itemRanges = ranges.filter((r) => !r.byAlarm);
    let candidates = [...members.byName].sort((a, b) => a[1].uid - b[1].uid);
    if (itemRanges.length > 0) {
      const admitted = new Set<number>();
      for (const r of itemRanges) for (const uid of hits.get(r.filter)!) admitted.add(uid);
      candidates = candidates.filter(([, meta]) => admitted.has(meta.uid));
    }
    const entries: MultistatusEntry[] = [];
    for (const [name, meta] of candidates) {
      const item = await this.calendars.item(box, meta.uid);
      if (!item) continue;
      if (!calendarMatches(item.calendar, filter, (f) => hits.get(f)?.has(meta.uid) ?? false)) continue;
      entries.push(await propfindEntry(this.itemNode(box, `${calendarHref}${encodeSegment(name)}`, meta, true, render), propfind));
    }
    return multistatusReply(entries);
  }

  /**
   * free-busy-query (RFC 4791 7.10): a VFREEBUSY of the calendar's events in the range, each
   * occurrence a period in UTC typed by its busy status (TRANSP:TRANSPARENT and Microsoft's
   * FREE are free; STATUS:TENTATIVE is BUSY-TENTATIVE; OOF is BUSY-UNAVAILABLE); cancelled
   * occurrences are left out. Periods of one type that overlap are merged.
   */
  private async freeBusy(request: DavRequest, box: MailboxHandle, body: DavElement): Promise<DavReply> {
    const element = child(body, CAL('time-range'));
    if (!element) throw new CalendarQueryError('a free-busy-query needs a time-range', CAL('valid-filter'), 400);
    const range = parseTimeRange(element);
    if (!Number.isFinite(range.start) || !Number.isFinite(range.end)) throw new CalendarQueryError('a free-busy time-range has both bounds', CAL('valid-filter'), 400);
    // The same periods freeBusyRead gives XIMSS clients (merged per type, FREE and cancelled ones left out).
    const periods = await this.calendars.busyPeriods(box, range.start, range.end, await this.timeZone(request.user));
    const lines = ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//ximssd//CalDAV//EN', 'BEGIN:VFREEBUSY', `DTSTAMP:${utcText(Date.now())}`, `DTSTART:${utcText(range.start)}`, `DTEND:${utcText(range.end)}`];
    for (const p of periods.slice(0, MAX_FREEBUSY_PERIODS).sort((a, b) => a.type.localeCompare(b.type) || a.start - b.start)) {
      lines.push(`FREEBUSY;FBTYPE=${p.type}:${utcText(p.start)}/${utcText(p.end)}`);
    }
    lines.push('END:VFREEBUSY', 'END:VCALENDAR', '');
    return { status: 200, body: lines.join('\r\n'), contentType: ICS_TYPE };
  }

  private async syncCollection(request: DavRequest, box: MailboxHandle, calendarHref: string, body: DavElement): Promise<DavReply> {
    const tokenText = child(body, D('sync-token'))?.element.text().trim() ?? '';
    const level = child(body, D('sync-level'))?.element.text().trim() ?? '1';
    if (level !== '1') return xmlReply(403, errorXml(D('supported-report')));
    const { propfind, render } = await this.reportProps(request, body);
    const members = await this.dav.members(box);
    const itemHref = (meta: MessageMeta): string => `${calendarHref}${encodeSegment(members.nameOf(meta))}`;
    const entries: MultistatusEntry[] = [];
    let modseq = members.modseq;
    if (tokenText === '') {
      for (const meta of [...members.byName.values()].sort((a, b) => a.uid - b.uid)) entries.push(await propfindEntry(this.itemNode(box, itemHref(meta), meta, true, render), propfind));
    } else {
      const since = syncTokenModseq(tokenText, box);
      if (since === undefined) return xmlReply(403, errorXml(D('valid-sync-token')));
      const changes = await this.mail.changesSince(box, since);
      if (!changes.complete || since > changes.modseq) return xmlReply(403, errorXml(D('valid-sync-token')));
      modseq = Math.min(changes.modseq, members.modseq);
      // Members as of the index (which may trail the journal by a commit: the token says so).
      const live = new Set([...members.byName.values()].map((meta) => meta.uid));
      const liveOrig = new Set([...members.byName.values()].map((meta) => meta.origUid));
      const changed = changes.changed.filter((meta) => live.has(meta.uid));
      const gone = new Set<number>();
      for (const r of changes.removed) if (!liveOrig.has(r.origUid)) gone.add(r.origUid);
      for (const meta of changes.changed) if (meta.flags & Flag.Deleted && !liveOrig.has(meta.origUid)) gone.add(meta.origUid);
      const names = gone.size > 0 ? await this.dav.names(box, [...gone]) : new Map<number, string>();
      for (const meta of changed.sort((a, b) => a.uid - b.uid)) entries.push(await propfindEntry(this.itemNode(box, itemHref(meta), meta, true, render), propfind));
      for (const origUid of gone) entries.push({ href: `${calendarHref}${encodeSegment(names.get(origUid) ?? `ximss-${origUid}.ics`)}`, status: 404 });
    }
    return xmlReply(207, multistatusXml(entries, `<D:sync-token>${escapeDavText(syncToken(box, modseq))}</D:sync-token>`));
  }
}


