/**
 * CardDAV (RFC 6352) over the Contacts-class mailboxes: `/dav/addressbooks/<account>/` is
 * the addressbook home (the account's Contacts-class mailboxes), each mailbox an address
 * book `/dav/addressbooks/<account>/<mailbox>/`, each contact item a card resource in it.
 * Cards go through the ContactService and the MailService, so XIMSS sessions see DAV
 * changes (folder notify, folderSync) and the other way round.
 *
 * Resource names. A client names the cards it creates (`<uuid>.vcf`); the name is kept in
 * the store by (mailbox, ORIGUID) (src/store/dav-names.ts): a card replaced keeps its
 * ORIGUID, so the name follows it, and the row outlives the card, so that sync-collection
 * names removed members by the ORIGUIDs of the mailbox's removal journal. A card stored
 * otherwise (XIMSS contactAppend, an import) is named `ximss-<ORIGUID>.vcf`.
 *
 * ETags are `"<message UID>"`: a card replaced is a new message. Uniqueness of vCard UIDs
 * and of names inside a book is decided by commit order: a PUT that creates a card (or
 * changes a card's UID) looks, after its commit, at every card committed before it
 * (the index plus the store's journal since): when an earlier card holds the same UID or
 * name, its own new message is removed again and it answers 403 no-uid-conflict (412 for a
 * name). Of two PUTs on two nodes at once the later commit always sees the earlier one, so
 * exactly one wins.
 */
import { fullName } from '../../services/accounts.js';
import type { AccountService } from '../../services/accounts.js';
import { CONTACTS_CLASS } from '../../services/contacts/item.js';
import { VCardFormatError, type VObject } from '../../services/contacts/model.js';
import type { ContactService, StoredCard } from '../../services/contacts/service.js';
import { parseVObject, writeVObject } from '../../services/contacts/text.js';
import { ServiceError } from '../../services/errors.js';
import { Flag } from '../../services/mail/flags.js';
import type { MailboxHandle, MailService } from '../../services/mail/service.js';
import type { DavNameStore } from '../../store/dav-names.js';
import type { AccountRecord, MessageMeta } from '../../store/store.js';
import { parsePropfind, parseProppatch, type PropfindRequest } from './bodies.js';
import { parseQuery, QueryError, queryMatches, type AddressQuery } from './carddav-query.js';
import { multistatusReply, readText, textReply, xmlReply } from './handler.js';
import { CS, homeHref, mailboxPrivileges, syncToken, syncTokenModseq } from './mailbox-collections.js';
import { destinationMember, encodeSegment, etagMatches, headerOf, parseDepth, parseEtagList, parseOverwrite } from './headers.js';
import { D, httpDate, propfindEntry, type LiveValue, type PropertyNode } from './properties.js';
import type { DavProvider, DavReply, DavRequest } from './provider.js';
import { ianaTimeZone } from '../../xml/time.js';
import { child, clark, findDeep, DavBodyError, errorXml, escapeDavText, multistatusXml, tagOf, type DavElement, type MultistatusEntry } from './xml.js';

export const CARD_NS = 'urn:ietf:params:xml:ns:carddav';
export const C = (local: string): string => clark(CARD_NS, local);

/** The largest vCard a PUT may store (CARD:max-resource-size). */
export const MAX_CARD_BYTES = 1024 * 1024;
const VCARD_TYPE = 'text/vcard; charset=utf-8';
const METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'REPORT', 'COPY', 'MOVE'];
const CARD_XMLNS = `xmlns:C="${CARD_NS}"`;

export interface CardDavServices {
  mail: MailService;
  contacts: ContactService;
  accounts: AccountService;
  davNames: DavNameStore;
}

/** A book's members as of one moment: cards by name and the name of each. */
interface Members {
  box: MailboxHandle;
  modseq: number;
  byName: Map<string, MessageMeta>;
  nameOf: (meta: MessageMeta) => string;
}

function defaultName(origUid: number): string {
  return `ximss-${origUid}.vcf`;
}

/** An empty CARD: element, its namespace declared on it. */
function cardEmpty(name: string): string {
  return `<C:${name} ${CARD_XMLNS}/>`;
}

/** The vCard version an Accept header or an address-data element asks for ('4.0' or the stored 3.0). */
function wantedVersion(value: string | undefined): '3.0' | '4.0' {
  return value !== undefined && /version\s*=\s*"?4\.0/i.test(value) ? '4.0' : '3.0';
}

export class CardDavProvider implements DavProvider {
  readonly prefix = 'addressbooks';
  readonly methods = METHODS;
  readonly davClasses = ['addressbook'];

  constructor(
    private readonly services: () => CardDavServices,
    private readonly defaultDomain: string,
  ) {}

  private get mail(): MailService {
    return this.services().mail;
  }

  private get contacts(): ContactService {
    return this.services().contacts;
  }



  async principalProperties(_user: AccountRecord, account: AccountRecord): Promise<Map<string, string>> {
    return new Map([[C('addressbook-home-set'), `<D:href>${homeHref('/dav/addressbooks', account, this.defaultDomain)}</D:href>`]]);
  }

  async handle(request: DavRequest): Promise<DavReply> {
    const { segments, method, user } = request;
    if (segments.length === 0) {
      if (method !== 'PROPFIND') return textReply(405, 'the address books root answers PROPFIND only', { Allow: 'OPTIONS, PROPFIND' });
      return this.propfindRoot(request);
    }
    const account = segments[0]!;
    const qualified = account.includes('@') ? account : `${account}@${this.defaultDomain}`;
    if (qualified.toLowerCase() !== fullName(user).toLowerCase()) return textReply(403, "another account's address books are not served over CardDAV");
    const home = homeHref(request.base, user, this.defaultDomain);
    if (segments.length === 1) return this.handleHome(request, home);
    const bookName = segments[1]!;
    if (segments.length === 2) return this.handleBook(request, home, bookName);
    if (segments.length === 3) return this.handleCard(request, home, bookName, segments[2]!);
    return textReply(404, 'not found');
  }

  // ----------------------------------------------------------------------------------
  // Collections

  private async books(user: AccountRecord): Promise<string[]> {
    const listed = await this.mail.list(user, '*', { mailboxClass: CONTACTS_CLASS });
    const names = listed.filter((m) => m.record && !m.pureFolder && !m.name.includes('/')).map((m) => m.name);
    if (names.length === 0) {
      // Clients need a book to put cards in: the one contactAppend would make.
      await this.mail.access(user, 'Contacts', 'r', { mailboxClass: CONTACTS_CLASS });
      names.push('Contacts');
    }
    return names.sort();
  }

  private async propfindRoot(request: DavRequest): Promise<DavReply> {
    const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
    if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
    const body = parsePropfind(await request.xmlBody());
    const nodes: PropertyNode[] = [this.plainNode(request, `${request.base}/`, 'Address books')];
    if (depth === '1') nodes.push(this.homeNode(request, homeHref(request.base, request.user, this.defaultDomain)));
    return multistatusReply(await Promise.all(nodes.map((n) => propfindEntry(n, body))));
  }

  private plainNode(request: DavRequest, href: string, name: string): PropertyNode {
    const principal = `<D:href>${request.principalHref(request.user)}</D:href>`;
    return {
      href,
      live: new Map([
        [D('resourcetype'), () => '<D:collection/>'],
        [D('displayname'), () => escapeDavText(name)],
        [D('current-user-principal'), () => principal],
        [D('current-user-privilege-set'), () => '<D:privilege><D:read/></D:privilege>'],
      ]),
      hidden: new Set([D('current-user-principal'), D('current-user-privilege-set')]),
    };
  }

  private homeNode(request: DavRequest, href: string): PropertyNode {
    const node = this.plainNode(request, href, `Address books of ${fullName(request.user)}`);
    const live = new Map(node.live);
    live.set(D('current-user-privilege-set'), () => '<D:privilege><D:all/></D:privilege>');
    live.set(D('principal-URL'), () => `<D:href>${request.principalHref(request.user)}</D:href>`);
    live.set(D('owner'), () => `<D:href>${request.principalHref(request.user)}</D:href>`);
    return { ...node, live };
  }

  private async handleHome(request: DavRequest, home: string): Promise<DavReply> {
    const { method } = request;
    if (method === 'PROPFIND') {
      const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
      if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
      const body = parsePropfind(await request.xmlBody());
      const entries = [await propfindEntry(this.homeNode(request, home), body)];
      if (depth === '1') {
        for (const name of await this.books(request.user)) {
          const box = await this.mail.access(request.user, name, 'r');
          entries.push(await propfindEntry(await this.bookNode(request, home, box), body));
        }
      }
      return multistatusReply(entries);
    }
    if (method === 'GET' || method === 'HEAD') return textReply(200, `address books of ${fullName(request.user)}`);
    return textReply(405, 'the addressbook home answers PROPFIND, GET and HEAD; make an address book with MKCOL below it', { Allow: 'OPTIONS, PROPFIND, GET, HEAD' });
  }

  private bookHref(home: string, name: string): string {
    return `${home}${encodeSegment(name)}/`;
  }


  private async bookNode(request: DavRequest, home: string, box: MailboxHandle): Promise<PropertyNode> {
    const index = await this.mail.index(box);
    const modseq = index.modseq;
    const principal = `<D:href>${request.principalHref(request.user)}</D:href>`;
    const privileges = mailboxPrivileges(box.rights);
    const usage = async (): Promise<{ used: number; limit: number | undefined }> => this.mail.usage(box.owner);
    return {
      href: this.bookHref(home, box.record.name),
      live: new Map<string, LiveValue>([
        [D('resourcetype'), () => `<D:collection/>${cardEmpty('addressbook')}`],
        [D('displayname'), () => escapeDavText(box.record.name)],
        [C('addressbook-description'), () => escapeDavText(`Contacts mailbox ${box.record.name}`)],
        [C('supported-address-data'), () => '<C:address-data-type xmlns:C="' + CARD_NS + '" content-type="text/vcard" version="3.0"/><C:address-data-type xmlns:C="' + CARD_NS + '" content-type="text/vcard" version="4.0"/>'],
        [C('max-resource-size'), () => String(MAX_CARD_BYTES)],
        [D('sync-token'), () => escapeDavText(syncToken(box, modseq))],
        [CS('getctag'), () => String(modseq)],
        [D('getcontenttype'), () => 'httpd/unix-directory'],
        [
          D('supported-report-set'),
          () =>
            ['addressbook-multiget', 'addressbook-query'].map((r) => `<D:supported-report><D:report>${cardEmpty(r)}</D:report></D:supported-report>`).join('') +
            '<D:supported-report><D:report><D:sync-collection/></D:report></D:supported-report>',
        ],
        [D('current-user-principal'), () => principal],
        [D('current-user-privilege-set'), () => privileges],
        [D('owner'), () => `<D:href>${request.principalHref(box.owner)}</D:href>`],
        [D('quota-used-bytes'), async () => String((await usage()).used)],
        [D('quota-available-bytes'), async () => {
          const u = await usage();
          return u.limit === undefined ? undefined : String(Math.max(0, u.limit - u.used));
        }],
      ]),
      hidden: new Set([D('current-user-principal'), D('current-user-privilege-set'), D('quota-used-bytes'), D('quota-available-bytes'), D('supported-report-set'), D('sync-token')]),
    };
  }


  private async openBook(request: DavRequest, name: string, need: string): Promise<MailboxHandle | undefined> {
    try {
      const box = await this.mail.access(request.user, name, need);
      if (box.record.mailboxClass !== CONTACTS_CLASS) return undefined;
      return box;
    } catch (err) {
      if (err instanceof ServiceError && err.message === 'mailbox is not found') return undefined;
      throw err;
    }
  }

  /** The book's cards by name, as of the index's modseq (one store query for the names). */
  private async members(box: MailboxHandle): Promise<Members> {
    const names = await this.services().davNames.names(box.record.id);
    const index = await this.mail.index(box);
    const modseq = index.modseq;
    const nameOf = (meta: MessageMeta): string => names.get(meta.origUid) ?? defaultName(meta.origUid);
    const byName = new Map<string, MessageMeta>();
    for (const meta of index.byUid.values()) {
      if (meta.flags & Flag.Deleted) continue;
      const name = nameOf(meta);
      const held = byName.get(name);
      // Two cards under one name (two nodes creating it at once): the earlier one holds it.
      if (!held || held.uid > meta.uid) byName.set(name, meta);
    }
    return { box, modseq, byName, nameOf };
  }

  private async handleBook(request: DavRequest, home: string, name: string): Promise<DavReply> {
    const { method } = request;
    if (method === 'MKCOL') return this.mkcol(request, name);
    const box = await this.openBook(request, name, method === 'DELETE' ? 'x' : 'r');
    if (!box) return textReply(404, 'no such address book');
    switch (method) {
      case 'PROPFIND': {
        const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
        if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
        const body = parsePropfind(await request.xmlBody());
        const entries = [await propfindEntry(await this.bookNode(request, home, box), body)];
        if (depth === '1') {
          const members = await this.members(box);
          const href = this.bookHref(home, box.record.name);
          for (const [cardName, meta] of [...members.byName].sort((a, b) => a[1].uid - b[1].uid)) {
            entries.push(await propfindEntry(this.cardNode(box, `${href}${encodeSegment(cardName)}`, meta), body));
          }
        }
        return multistatusReply(entries);
      }
      case 'PROPPATCH': {
        // displayname is the mailbox name (rename with mailboxRename); nothing else is kept.
        const updates = parseProppatch(await request.xmlBody());
        const propstats = new Map<number, string[]>([[403, updates.map((u) => tagOf(u.name).empty)]]);
        return multistatusReply([{ href: this.bookHref(home, box.record.name), propstats, error: D('cannot-modify-protected-property') }]);
      }
      case 'DELETE':
        await this.mail.remove(request.user, box.record.name, false);
        request.log.info({ event: 'carddav.book_removed', user: fullName(request.user), mailbox: box.record.name }, 'address book removed');
        return { status: 204 };
      case 'REPORT':
        return this.report(request, home, box);
      case 'GET':
      case 'HEAD': {
        const text = await this.contacts.exportText(box);
        return { status: 200, body: text, contentType: VCARD_TYPE };
      }
      default:
        return textReply(405, `${method} is not allowed on an address book`, { Allow: 'OPTIONS, PROPFIND, PROPPATCH, REPORT, DELETE, GET, HEAD' });
    }
  }

  /** MKCOL (plain or RFC 5689 extended with resourcetype addressbook): a Contacts-class mailbox. */
  private async mkcol(request: DavRequest, name: string): Promise<DavReply> {
    const body = await request.xmlBody();
    if (body) {
      if (body.name !== D('mkcol')) throw new DavBodyError('the MKCOL body must be a DAV:mkcol element', 415);
      const resourcetype = findDeep(body, D('resourcetype'));
      if (resourcetype && !child(resourcetype, C('addressbook'))) {
        return xmlReply(403, errorXml(D('valid-resourcetype')));
      }
    }
    if (name.includes('/')) return textReply(403, 'address book names may not hold "/"');
    if (await this.openBook(request, name, '')) return textReply(405, 'the address book exists');
    try {
      await this.mail.create(request.user, name, CONTACTS_CLASS);
    } catch (err) {
      if (err instanceof ServiceError && /exists/.test(err.message)) return textReply(405, 'a mailbox of that name exists');
      throw err;
    }
    request.log.info({ event: 'carddav.book_created', user: fullName(request.user), mailbox: name }, 'address book created');
    return { status: 201 };
  }

  // ----------------------------------------------------------------------------------
  // Cards

  private cardNode(box: MailboxHandle, href: string, meta: MessageMeta, addressData?: (card: StoredCard) => string): PropertyNode {
    let card: Promise<StoredCard | undefined> | undefined;
    const read = (): Promise<StoredCard | undefined> => (card ??= this.contacts.readCard(box, meta.uid));
    const live = new Map<string, LiveValue>([
      [D('resourcetype'), () => ''],
      [D('getetag'), () => escapeDavText(`"${meta.uid}"`)],
      [D('getcontenttype'), () => VCARD_TYPE],
      [D('getlastmodified'), () => httpDate(new Date(meta.internalDate))],
      [D('getcontentlength'), async () => {
        const c = await read();
        return c ? String(Buffer.byteLength(c.text)) : undefined;
      }],
    ]);
    if (addressData) {
      live.set(C('address-data'), async () => {
        const c = await read();
        return c ? addressData(c) : undefined;
      });
    }
    return { href, live, hidden: new Set(addressData ? [C('address-data')] : []) };
  }

  private async handleCard(request: DavRequest, home: string, bookName: string, name: string): Promise<DavReply> {
    const { method } = request;
    const need = method === 'PUT' ? 'ri' : method === 'DELETE' || method === 'MOVE' ? 'rd' : 'r';
    const box = await this.openBook(request, bookName, need);
    if (!box) return textReply(method === 'PUT' ? 409 : 404, 'no such address book');
    const members = await this.members(box);
    const meta = members.byName.get(name);
    const href = `${this.bookHref(home, box.record.name)}${encodeSegment(name)}`;
    switch (method) {
      case 'GET':
      case 'HEAD': {
        if (!meta) return textReply(404, 'no such card');
        const card = await this.contacts.readCard(box, meta.uid);
        if (!card) return textReply(404, 'no such card');
        const headers = { ETag: card.etag, 'Last-Modified': httpDate(new Date(meta.internalDate)) };
        const inm = parseEtagList(headerOf(request.req.headers, 'if-none-match'));
        if (inm && etagMatches(inm, card.etag)) return { status: 304, headers };
        const version = wantedVersion(headerOf(request.req.headers, 'accept'));
        const text = version === '4.0' && card.kind === 'vcard' ? writeVObject(parseVObject(card.text), '4.0') : card.text;
        return { status: 200, body: text, contentType: version === '4.0' ? 'text/vcard; charset=utf-8; version=4.0' : VCARD_TYPE, headers };
      }
      case 'PROPFIND': {
        if (!meta) return textReply(404, 'no such card');
        const body = parsePropfind(await request.xmlBody());
        return multistatusReply([await propfindEntry(this.cardNode(box, href, meta), body)]);
      }
      case 'PUT':
        return this.put(request, members, name, meta);
      case 'DELETE': {
        if (!meta) return textReply(404, 'no such card');
        const ifMatch = parseEtagList(headerOf(request.req.headers, 'if-match'));
        if (ifMatch && !etagMatches(ifMatch, `"${meta.uid}"`)) return textReply(412, 'the card was changed meanwhile');
        // Removing the UID checked: a card replaced meanwhile (a new UID) is left alone.
        const removed = await this.contacts.removeCard(box, meta.uid);
        if (!removed) return textReply(412, 'the card was changed or removed meanwhile');
        return { status: 204 };
      }
      case 'COPY':
      case 'MOVE':
        if (!meta) return textReply(404, 'no such card');
        return this.copyCard(request, home, members, meta, method === 'MOVE');
      case 'PROPPATCH':
        return textReply(403, 'cards keep no properties of their own');
      case 'MKCOL':
        return textReply(405, 'address books hold no collections');
      default:
        return textReply(405, `${method} is not allowed on a card`, { Allow: 'OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND' });
    }
  }

  private async put(request: DavRequest, members: Members, name: string, existing: MessageMeta | undefined): Promise<DavReply> {
    const { box } = members;
    const headers = request.req.headers;
    const type = (headerOf(headers, 'content-type') ?? 'text/vcard').split(';')[0]!.trim().toLowerCase();
    if (!['text/vcard', 'text/x-vcard', 'text/directory'].includes(type)) {
      return xmlReply(415, errorXml(C('supported-address-data')));
    }
    const ifMatch = parseEtagList(headerOf(headers, 'if-match'));
    const ifNoneMatch = parseEtagList(headerOf(headers, 'if-none-match'));
    const etag = existing ? `"${existing.uid}"` : undefined;
    if (ifMatch && !etagMatches(ifMatch, etag)) return textReply(412, existing ? 'the card was changed meanwhile' : 'there is no such card');
    if (ifNoneMatch && (ifNoneMatch === '*' ? existing !== undefined : etagMatches(ifNoneMatch, etag))) return textReply(412, 'the card exists');
    if (!/^[^\x00-\x1f\x7f]{1,255}$/.test(name)) return textReply(400, 'bad card name');
    const text = await readText(request.req, MAX_CARD_BYTES);
    let object: VObject;
    try {
      object = parseVObject(text);
      if (object.kind !== 'vcard') throw new VCardFormatError('an address book holds vCards (BEGIN:VCARD)');
      writeVObject(object);
    } catch (err) {
      if (err instanceof VCardFormatError) return { ...xmlReply(400, errorXml(C('valid-address-data'))), headers: { 'X-Error-Text': err.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200) } };
      throw err;
    }
    const cardUid = objectUid(object);
    const existingCard = existing ? await this.contacts.readCard(box, existing.uid) : undefined;
    const changesUid = !existingCard || existingCard.cardUid !== cardUid;
    if (changesUid && cardUid !== '') {
      const holder = await this.holderOf(members, cardUid, existing?.uid);
      if (holder) return this.uidConflict(request, members, holder);
    }
    const index = await this.mail.index(box);
    const mark = index.modseq;
    const timeZone = (await this.services().accounts.effectiveSettings(request.user)).TimeZone;
    let message: MessageMeta;
    try {
      ({ message } = await this.contacts.append(box, object, {
        timeZone: ianaTimeZone(typeof timeZone === 'string' ? timeZone : undefined),
        flags: Flag.Seen,
        ...(existing ? { replace: { uid: existing.uid, byOrigUid: false, mustExist: true, keepOrigUid: true } } : {}),
      }));
    } catch (err) {
      // The card replaced was changed or removed meanwhile (mustExist).
      if (existing && err instanceof ServiceError && /not|exist/i.test(err.message)) return textReply(412, 'the card was changed meanwhile');
      throw err;
    }
    if (!existing && name !== defaultName(message.origUid)) await this.services().davNames.record(box.record.id, message.origUid, name);
    if (!existing || changesUid) {
      const lost = await this.lostRace(box, mark, message, name, cardUid, members);
      if (lost) {
        await this.contacts.removeCard(box, message.uid);
        if (lost.kind === 'name') return textReply(412, 'another card was created under this name meanwhile');
        return this.uidConflict(request, members, lost.meta);
      }
    }
    return { status: existing ? 204 : 201, headers: { ETag: `"${message.uid}"` } };
  }

  /**
   * COPY/MOVE of a card into a book of the same account (the message copied or moved by
   * the mail service, its name recorded): 201, or 204 over a card the Destination held
   * (Overwrite: T, the default; F gives 412). The vCard UID must be free in the target
   * book (403 no-uid-conflict; so a COPY inside one book is always refused).
   */
  private async copyCard(request: DavRequest, home: string, source: Members, meta: MessageMeta, move: boolean): Promise<DavReply> {
    const headers = request.req.headers;
    const member = destinationMember(headers, home);
    if (!member) return textReply(403, 'cards are copied into address books of the same account only');
    const { collection: bookName, name } = member;
    const target = await this.openBook(request, bookName, 'ri');
    if (!target) return textReply(409, 'no such address book');
    const targetMembers = await this.members(target);
    const existing = targetMembers.byName.get(name);
    if (target.record.id === source.box.record.id) {
      // One book holds a vCard UID once; a card keeps the name it was created under.
      if (move) return textReply(403, 'a card cannot be renamed inside its address book (PUT it under the new name and DELETE the old one)');
      return this.uidConflict(request, source, meta);
    }
    if (existing && !parseOverwrite(headerOf(headers, 'overwrite'))) return textReply(412, 'the destination exists');
    const card = await this.contacts.readCard(source.box, meta.uid);
    if (!card) return textReply(404, 'no such card');
    const holder = card.cardUid === '' ? undefined : await this.holderOf(targetMembers, card.cardUid, existing?.uid);
    if (holder) return this.uidConflict(request, targetMembers, holder);
    if (existing) {
      if (!(await this.contacts.removeCard(target, existing.uid))) return textReply(412, 'the destination was changed meanwhile');
    }
    const mark = (await this.mail.index(target)).modseq;
    const pairs = await this.mail.copy(source.box, [meta.uid], target, move);
    const copied = pairs[0] && (await this.mail.getMessage(target, pairs[0].to));
    if (!copied) return textReply(412, 'the card was changed or removed meanwhile');
    if (name !== defaultName(copied.origUid)) await this.services().davNames.record(target.record.id, copied.origUid, name);
    const lost = await this.lostRace(target, mark, copied, name, card.cardUid, targetMembers);
    if (lost) {
      await this.contacts.removeCard(target, copied.uid);
      return lost.kind === 'name' ? textReply(412, 'another card was created under this name meanwhile') : this.uidConflict(request, targetMembers, lost.meta);
    }
    request.log.info({ event: move ? 'carddav.card_moved' : 'carddav.card_copied', user: fullName(request.user), from: source.box.record.name, to: target.record.name }, move ? 'card moved' : 'card copied');
    return { status: existing ? 204 : 201, headers: { ETag: `"${copied.uid}"` } };
  }

  private uidConflict(request: DavRequest, members: Members, holder: MessageMeta): DavReply {
    const home = homeHref(request.base, request.user, this.defaultDomain);
    const href = `${this.bookHref(home, members.box.record.name)}${encodeSegment(members.nameOf(holder))}`;
    return xmlReply(403, errorXml(C('no-uid-conflict'), `<D:href>${escapeDavText(href)}</D:href>`));
  }

  /** The card (other than `except`) of the book that holds this vCard UID. */
  private async holderOf(members: Members, cardUid: string, except: number | undefined): Promise<MessageMeta | undefined> {
    for (const meta of members.byName.values()) {
      if (meta.uid === except) continue;
      const card = await this.contacts.readCard(members.box, meta.uid);
      if (card?.cardUid === cardUid) return meta;
    }
    return undefined;
  }

  /**
   * After a commit: whether a card committed before ours (a lower UID) holds our vCard UID
   * or our new name. Every card committed before is in the index as of `mark` or in the
   * store's journal since it.
   */
  private async lostRace(box: MailboxHandle, mark: number, mine: MessageMeta, name: string, cardUid: string, members: Members): Promise<{ kind: 'uid' | 'name'; meta: MessageMeta } | undefined> {
    const changes = await this.mail.changesSince(box, mark);
    const live = new Map<number, MessageMeta>();
    if (changes.complete) {
      for (const meta of (await this.mail.index(box)).byUid.values()) live.set(meta.uid, meta);
      for (const meta of changes.changed) live.set(meta.uid, meta);
      for (const r of changes.removed) live.delete(r.uid);
    } else {
      for (const meta of (await this.mail.snapshot(box)).messages) live.set(meta.uid, meta);
    }
    const earlier = [...live.values()].filter((m) => m.uid < mine.uid && m.origUid !== mine.origUid && !(m.flags & Flag.Deleted));
    if (earlier.length === 0) return undefined;
    const fresh = earlier.some((m) => !members.byName.has(members.nameOf(m)) || members.byName.get(members.nameOf(m))!.uid !== m.uid);
    const names = fresh ? await this.services().davNames.names(box.record.id, earlier.map((m) => m.origUid)) : undefined;
    for (const meta of earlier) {
      const theirName = names ? (names.get(meta.origUid) ?? defaultName(meta.origUid)) : members.nameOf(meta);
      if (theirName === name) return { kind: 'name', meta };
      if (cardUid !== '') {
        const card = await this.contacts.readCard(box, meta.uid);
        if (card?.cardUid === cardUid) return { kind: 'uid', meta };
      }
    }
    return undefined;
  }

  // ----------------------------------------------------------------------------------
  // REPORT

  private async report(request: DavRequest, home: string, box: MailboxHandle): Promise<DavReply> {
    const body = await request.xmlBody();
    if (!body) throw new DavBodyError('a REPORT needs a body');
    const href = this.bookHref(home, box.record.name);
    switch (body.name) {
      case C('addressbook-multiget'):
        return this.multiget(box, href, body);
      case C('addressbook-query'):
        return this.query(box, href, body);
      case D('sync-collection'):
        return this.syncCollection(box, href, body);
      default:
        return xmlReply(403, errorXml(D('supported-report')));
    }
  }

  /** The requested properties of a REPORT body, and how address-data is written. */
  private reportProps(body: DavElement): { propfind: PropfindRequest; addressData: (card: StoredCard) => string } {
    const prop = child(body, D('prop'));
    const propfind: PropfindRequest = prop ? { kind: 'prop', names: prop.children.map((c) => c.name) } : child(body, D('allprop')) ? { kind: 'allprop', include: [] } : { kind: 'prop', names: [D('getetag')] };
    const data = prop ? child(prop, C('address-data')) : undefined;
    const version = wantedVersion(data ? `version=${data.element.attrs.version ?? ''}` : undefined);
    // RFC 6352 10.4.2: `<C:prop name="FN"/>` children ask for those properties only (UID always comes along).
    const subset = data?.children.filter((c) => c.name === C('prop')).map((c) => (c.element.attrs.name ?? '').toUpperCase());
    const wanted = subset && subset.length > 0 && !data?.children.some((c) => c.name === C('allprop')) ? new Set([...subset, 'UID']) : undefined;
    const addressData = (card: StoredCard): string => {
      if (card.kind !== 'vcard' || (version === '3.0' && !wanted)) return escapeDavText(card.text);
      const object = parseVObject(card.text);
      if (wanted) object.properties = object.properties.filter((p) => wanted.has(p.name));
      return escapeDavText(writeVObject(object, version));
    };
    return { propfind, addressData };
  }

  private async multiget(box: MailboxHandle, bookHref: string, body: DavElement): Promise<DavReply> {
    const { propfind, addressData } = this.reportProps(body);
    const members = await this.members(box);
    const entries: MultistatusEntry[] = [];
    const hrefs = body.children.filter((c) => c.name === D('href')).map((c) => c.element.text().trim());
    const pending: Promise<MultistatusEntry>[] = [];
    const bookPath = decodeURIComponent(new URL(bookHref, 'http://host').pathname);
    for (const raw of hrefs) {
      let path: string;
      try {
        path = decodeURIComponent(new URL(raw, 'http://host').pathname);
      } catch {
        pending.push(Promise.resolve({ href: raw, status: 404 }));
        continue;
      }
      const name = path.startsWith(bookPath) ? path.slice(bookPath.length) : undefined;
      const meta = name !== undefined && !name.includes('/') ? members.byName.get(name) : undefined;
      if (!meta) {
        pending.push(Promise.resolve({ href: raw, status: 404 }));
        continue;
      }
      pending.push(propfindEntry(this.cardNode(box, raw, meta, addressData), propfind));
    }
    entries.push(...(await Promise.all(pending)));
    return multistatusReply(entries);
  }

  private async query(box: MailboxHandle, bookHref: string, body: DavElement): Promise<DavReply> {
    let query: AddressQuery;
    try {
      query = parseQuery(body);
    } catch (err) {
      if (err instanceof QueryError) return xmlReply(err.status, errorXml(err.condition));
      throw err;
    }
    const { propfind, addressData } = this.reportProps(body);
    const members = await this.members(box);
    const entries: MultistatusEntry[] = [];
    let truncated = false;
    for (const [name, meta] of [...members.byName].sort((a, b) => a[1].uid - b[1].uid)) {
      const card = await this.contacts.readCard(box, meta.uid);
      if (!card || card.kind !== 'vcard') continue;
      let object: VObject;
      try {
        object = parseVObject(card.text);
      } catch {
        continue;
      }
      if (!queryMatches(object, query)) continue;
      if (query.limit !== undefined && entries.length >= query.limit) {
        truncated = true;
        break;
      }
      entries.push(await propfindEntry(this.cardNode(box, `${bookHref}${encodeSegment(name)}`, meta, addressData), propfind));
    }
    if (truncated) entries.push({ href: bookHref, status: 507, error: D('number-of-matches-within-limits') });
    return multistatusReply(entries);
  }

  private async syncCollection(box: MailboxHandle, bookHref: string, body: DavElement): Promise<DavReply> {
    const tokenText = child(body, D('sync-token'))?.element.text().trim() ?? '';
    const level = child(body, D('sync-level'))?.element.text().trim() ?? '1';
    if (level !== '1') return xmlReply(403, errorXml(D('supported-report')));
    const { propfind, addressData } = this.reportProps(body);
    const members = await this.members(box);
    const cardHref = (meta: MessageMeta): string => `${bookHref}${encodeSegment(members.nameOf(meta))}`;
    const entries: MultistatusEntry[] = [];
    let modseq = members.modseq;
    if (tokenText === '') {
      for (const meta of [...members.byName.values()].sort((a, b) => a.uid - b.uid)) {
        entries.push(await propfindEntry(this.cardNode(box, cardHref(meta), meta, addressData), propfind));
      }
    } else {
      const since = syncTokenModseq(tokenText, box);
      if (since === undefined) return xmlReply(403, errorXml(D('valid-sync-token')));
      const changes = await this.mail.changesSince(box, since);
      if (!changes.complete || since > changes.modseq) return xmlReply(403, errorXml(D('valid-sync-token')));
      modseq = changes.modseq;
      const liveOrig = new Set<number>();
      const changed = changes.changed.filter((meta) => !(meta.flags & Flag.Deleted));
      for (const meta of changed) liveOrig.add(meta.origUid);
      for (const meta of members.byName.values()) liveOrig.add(meta.origUid);
      const gone = new Map<number, number>();
      for (const r of changes.removed) if (!liveOrig.has(r.origUid)) gone.set(r.origUid, r.uid);
      for (const meta of changes.changed) if (meta.flags & Flag.Deleted && !liveOrig.has(meta.origUid)) gone.set(meta.origUid, meta.uid);
      const names = gone.size > 0 ? await this.services().davNames.names(box.record.id, [...gone.keys()]) : new Map<number, string>();
      for (const meta of changed.sort((a, b) => a.uid - b.uid)) {
        entries.push(await propfindEntry(this.cardNode(box, cardHref(meta), meta, addressData), propfind));
      }
      for (const origUid of gone.keys()) entries.push({ href: `${bookHref}${encodeSegment(names.get(origUid) ?? defaultName(origUid))}`, status: 404 });
    }
    const xml = entriesWithToken(entries, syncToken(box, modseq));
    return xmlReply(207, xml);
  }
}

/** A multistatus with a sync-token (RFC 6578). */
function entriesWithToken(entries: readonly MultistatusEntry[], token: string): Buffer {
  return multistatusXml(entries, `<D:sync-token>${escapeDavText(token)}</D:sync-token>`);
}


function objectUid(object: VObject): string {
  const p = object.properties.find((x) => x.name === 'UID');
  if (!p) return '';
  const v = p.value;
  return (v.kind === 'text' ? v.values.join(',') : v.kind === 'uri' ? v.uri : '').trim();
}

