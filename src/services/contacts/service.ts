/**
 * Contacts over the mail service: contact items are messages of (Contacts-class)
 * mailboxes, so that every protocol sees the others' changes through the mailbox journal
 * and the bus (XIMSS folders, CardDAV). Used by the XIMSS Contacts operations and meant
 * for CardDAV: list the cards of a mailbox, put one by its vCard UID, remove one.
 */
import type { Logger } from '../../log.js';
import type { MessageMeta, ReplaceSpec } from '../../store/store.js';
import { ServiceError } from '../errors.js';
import { Flag } from '../mail/flags.js';
import { prepareMessage } from '../mail/new-message.js';
import { Slicer } from '../slices.js';
import type { MailboxHandle, MailService } from '../mail/service.js';
import { decodeHeaderText, parseAddressList, parseMime, type MimePart } from '../mime/index.js';
import { decodeTextPart } from '../mime/text.js';
import { completeObject, composeItem } from './item.js';
import { ILLEGAL_VCARD, propertyText, VCardFormatError, type VObject } from './model.js';
import { parseVObject, splitCards, writeVCard21, writeVObject, type CardProblem, type VCardVersion } from './text.js';

export interface ContactLimits {
  /** Most cards one contactsImport may bring. */
  importCards: number;
  /** Most bytes of one imported file. */
  importBytes: number;
}

export const DEFAULT_CONTACT_LIMITS: ContactLimits = { importCards: 10000, importBytes: 20 * 1024 * 1024 };

export interface ContactServiceOptions {
  /** Host name for the items' Message-IDs. */
  hostname: string;
  log: Logger;
  limits?: ContactLimits;
}

export interface StoreOptions {
  /** The account's time zone (the items' Date field). */
  timeZone: string;
  flags?: number;
  keywords?: readonly string[];
  replace?: ReplaceSpec;
}

/** One card of a mailbox (CardDAV listing). */
export interface StoredCard {
  /** The message UID. */
  uid: number;
  /** The vCard (or vCardGroup) UID property; '' when the item has none. */
  cardUid: string;
  /** The vCard text as stored. */
  text: string;
  /** Changes whenever the item is replaced (a new message): the message UID. */
  etag: string;
  kind: 'vcard' | 'vgroup';
}

/** A contactFind match. */
export interface FoundContact {
  uid: number;
  /** The To address or X-Telnum number that matched. */
  foundAddress: string;
  /** The "File as" name: the To real name, else the Subject (FN). */
  peerName?: string;
}

/** Characters of card text readCard keeps at most. */
const CARD_CACHE_BYTES = 32 * 1024 * 1024;

const ITEM_TYPES = new Set(['directory', 'x-vcard', 'vcard', 'x-vgroup']);

/** The first vCard/vCardGroup part of a message: the item's body. */
function cardPart(part: MimePart): MimePart | undefined {
  if (part.type === 'text' && ITEM_TYPES.has(part.subtype)) return part;
  for (const child of part.children) {
    const found = cardPart(child);
    if (found) return found;
  }
  return undefined;
}

/** X-Telnum `+1 555 1234 (WORK), 555 9876` -> numbers. */
function telnums(value: string): string[] {
  return decodeHeaderText(value)
    .split(',')
    .map((item) => item.replace(/\([^()]*\)\s*$/, '').replace(/;\s*type\s*=.*$/i, '').trim())
    .filter((n) => n !== '');
}

function digits(text: string): string {
  return text.replace(/[^0-9]/g, '');
}

/** Text ready for the error of an import: the first problems, each with its card's position. */
function describeProblems(problems: readonly CardProblem[]): string {
  const shown = problems
    .slice(0, 5)
    .map((p) => `card ${p.index} (line ${p.line}): ${p.reason}`)
    .join('; ');
  return `${ILLEGAL_VCARD}: ${shown}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''} (nothing was imported)`;
}

/** How many mailboxes' vCard UIDs a node keeps (each as many as the mailbox has cards). */
const MAX_UID_MAILBOXES = 1000;

export class ContactService {
  readonly limits: ContactLimits;
  private readonly hostname: string;
  private readonly log: Logger;
  /**
   * vCard UIDs by mailbox and message UID: a message never changes under its UID, so what
   * was read once stays true on every node (a replaced card is a new message).
   */
  private readonly cardUids = new Map<number, Map<number, string>>();
  /** Cards read, by `<mailbox id>:<message UID>` in least recently used order (see readCard). */
  private readonly cardCache = new Map<string, StoredCard>();
  private cardCacheBytes = 0;

  constructor(
    private readonly mail: MailService,
    options: ContactServiceOptions,
  ) {
    this.hostname = options.hostname;
    this.log = options.log;
    this.limits = options.limits ?? DEFAULT_CONTACT_LIMITS;
  }

  /**
   * Stores one vCard or vCardGroup as an item (UID and FN added when missing); returns
   * the new message and the object's UID.
   */
  async append(box: MailboxHandle, object: VObject, options: StoreOptions): Promise<{ message: MessageMeta; cardUid: string }> {
    const cardUid = completeObject(object);
    const raw = this.compose(object, options.timeZone);
    const prepared = prepareMessage(raw, { flags: options.flags ?? Flag.Seen, keywords: options.keywords ?? [] });
    const [message] = await this.mail.append(box, [prepared], options.replace ? { replace: options.replace } : {});
    if (!message) throw new ServiceError('the contact was not stored');
    this.rememberUid(box, message.uid, cardUid);
    this.log.info({ event: 'contacts.stored', mailbox: box.record.name, owner: box.owner.id, uid: message.uid, replaced: options.replace?.uid }, 'contact stored');
    return { message, cardUid };
  }

  private compose(object: VObject, timeZone: string): Buffer {
    try {
      return composeItem(object, { timeZone, hostname: this.hostname });
    } catch (err) {
      if (err instanceof VCardFormatError) throw new ServiceError(`${ILLEGAL_VCARD}: ${err.message}`);
      throw err;
    }
  }

  /**
   * The cards of a .vcf text, all of them or none: a malformed card, text outside of the
   * cards or more cards than the limit is a ServiceError that names the cards (position
   * and line) and why. Works in slices, letting other clients in between.
   */
  async parseImport(text: string): Promise<VObject[]> {
    const { cards, problems } = splitCards(text);
    if (cards.length > this.limits.importCards) throw new ServiceError(`too many vCards to import: ${cards.length} (at most ${this.limits.importCards})`);
    const objects: VObject[] = [];
    const slicer = new Slicer();
    for (const card of cards) {
      await slicer.next();
      try {
        const object = parseVObject(card.text);
        completeObject(object);
        // Written once here, so that a card the writer refuses is reported now.
        writeVObject(object);
        objects.push(object);
      } catch (err) {
        if (!(err instanceof VCardFormatError)) throw err;
        problems.push({ index: card.index, line: card.line, reason: err.message });
      }
    }
    if (problems.length > 0) throw new ServiceError(describeProblems(problems.sort((a, b) => a.index - b.index)));
    if (objects.length === 0) throw new ServiceError(`${ILLEGAL_VCARD}: the file has no vCard`);
    return objects;
  }

  /** Imports every card of a .vcf text into a mailbox in one append (all or none). */
  async importText(box: MailboxHandle, text: string, options: { timeZone: string }): Promise<MessageMeta[]> {
    const objects = await this.parseImport(text);
    const prepared = [];
    const slicer = new Slicer();
    for (const o of objects) {
      await slicer.next();
      prepared.push(prepareMessage(this.compose(o, options.timeZone), { flags: Flag.Seen }));
    }
    const added = await this.mail.append(box, prepared);
    added.forEach((m, i) => this.rememberUid(box, m.uid, propertyText(objects[i]!, 'UID') ?? ''));
    this.log.info({ event: 'contacts.imported', mailbox: box.record.name, owner: box.owner.id, count: added.length }, 'contacts imported');
    return added;
  }

  /**
   * contactFind: the items among `candidates` (in their order) whose To addresses or
   * X-Telnum numbers match `peer` — equal (addresses case-insensitively, numbers by their
   * digits), or with `fuzzy` containing it (addresses, their real names — the "File as"
   * names — and numbers).
   */
  async find(box: MailboxHandle, candidates: readonly MessageMeta[], peer: string, fuzzy: boolean, limit: number): Promise<FoundContact[]> {
    await this.mail.check(box, 'r');
    const index = await this.mail.index(box);
    await this.mail.loadFields(index, ['X-Telnum'], candidates.map((m) => m.uid));
    const wanted = peer.trim().replace(/^(mailto|tel|sip):/i, '');
    const lower = wanted.toLowerCase();
    const wantedDigits = digits(wanted);
    const phoneLike = wantedDigits.length > 0 && !/[A-Za-z@]/.test(wanted);
    const found: FoundContact[] = [];
    for (const meta of candidates) {
      if (found.length >= limit) break;
      const addresses = parseAddressList(meta.to);
      const name = addresses.find((a) => a.realName)?.realName || decodeHeaderText(meta.subject) || undefined;
      let match: string | undefined;
      for (const a of addresses) {
        const address = a.address.toLowerCase();
        if (address === lower || (fuzzy && (address.includes(lower) || (a.realName ?? '').toLowerCase().includes(lower)))) {
          match = a.address;
          break;
        }
      }
      if (match === undefined && phoneLike) {
        for (const number of telnums(index.lookup('x-telnum', meta.uid) ?? '')) {
          const d = digits(number);
          if (d === wantedDigits || (fuzzy && d.includes(wantedDigits))) {
            match = number;
            break;
          }
        }
      }
      if (match !== undefined) found.push(name ? { uid: meta.uid, foundAddress: match, peerName: name } : { uid: meta.uid, foundAddress: match });
    }
    return found;
  }

  // -------------------------------------------------------------------------------------
  // CardDAV's view: cards by vCard UID

  private rememberUid(box: MailboxHandle, uid: number, cardUid: string): void {
    this.uidsOf(box).set(uid, cardUid);
  }

  /** The vCard UIDs known of a mailbox; the mailboxes least recently used are forgotten beyond MAX_UID_MAILBOXES. */
  private uidsOf(box: MailboxHandle): Map<number, string> {
    const id = box.record.id;
    let map = this.cardUids.get(id);
    if (map) {
      this.cardUids.delete(id);
    } else {
      map = new Map();
      if (this.cardUids.size >= MAX_UID_MAILBOXES) this.cardUids.delete(this.cardUids.keys().next().value!);
    }
    this.cardUids.set(id, map);
    return map;
  }

  /** The item of one message: its card text and UID, or undefined when it carries none. */
  private itemOf(raw: Buffer): { text: string; object: VObject } | undefined {
    const part = cardPart(parseMime(raw));
    if (!part) return undefined;
    const text = decodeTextPart(raw, part).text;
    try {
      return { text, object: parseVObject(text) };
    } catch {
      return undefined;
    }
  }

  /** Every card of a mailbox (items that carry none, or a malformed one, are left out). */
  async listCards(box: MailboxHandle): Promise<StoredCard[]> {
    await this.mail.check(box, 'r');
    const index = await this.mail.index(box);
    const cards: StoredCard[] = [];
    for (const meta of [...index.byUid.values()].sort((a, b) => a.uid - b.uid)) {
      if (meta.flags & Flag.Deleted) continue;
      const raw = await this.mail.readRaw(box, meta.uid);
      if (!raw) continue;
      const item = this.itemOf(raw);
      if (!item) continue;
      const cardUid = propertyText(item.object, 'UID') ?? '';
      this.rememberUid(box, meta.uid, cardUid);
      cards.push({ uid: meta.uid, cardUid, text: item.text, etag: `"${meta.uid}"`, kind: item.object.kind });
    }
    return cards;
  }

  /**
   * One card by its message UID (a CardDAV GET or multiget), or undefined. A message never
   * changes under its UID, so the card read is kept (CARD_CACHE_BYTES at most, the least
   * recently used dropped first) and served as is the next time, on every node alike; the
   * read right is checked every time.
   */
  async readCard(box: MailboxHandle, uid: number): Promise<StoredCard | undefined> {
    const key = `${box.record.id}:${uid}`;
    const cached = this.cardCache.get(key);
    if (cached) {
      await this.mail.check(box, 'r');
      this.cardCache.delete(key);
      this.cardCache.set(key, cached);
      return cached;
    }
    const raw = await this.mail.readRaw(box, uid);
    const item = raw && this.itemOf(raw);
    if (!item) return undefined;
    const cardUid = propertyText(item.object, 'UID') ?? '';
    this.rememberUid(box, uid, cardUid);
    const card: StoredCard = { uid, cardUid, text: item.text, etag: `"${uid}"`, kind: item.object.kind };
    this.cardCache.set(key, card);
    this.cardCacheBytes += card.text.length;
    while (this.cardCacheBytes > CARD_CACHE_BYTES) {
      const oldest = this.cardCache.entries().next().value;
      if (!oldest) break;
      this.cardCache.delete(oldest[0]);
      this.cardCacheBytes -= oldest[1].text.length;
    }
    return card;
  }

  /**
   * The vCard text of every card of a mailbox, one after the other (the HTTP `Export` of
   * an open folder; a .vcf file): in 3.0 (the seed system's default), 4.0, or 2.1 (oldStyle).
   */
  async exportText(box: MailboxHandle, version: VCardVersion | '2.1' = '3.0'): Promise<string> {
    let text = '';
    for (const card of await this.listCards(box)) {
      if (card.kind !== 'vcard') continue;
      const object = parseVObject(card.text);
      text += version === '2.1' ? writeVCard21(object) : writeVObject(object, version);
    }
    return text;
  }

  /** The message UID of the card with this vCard UID, if the mailbox has one. */
  async findCard(box: MailboxHandle, cardUid: string): Promise<number | undefined> {
    await this.mail.check(box, 'r');
    const index = await this.mail.index(box);
    const known = this.uidsOf(box);
    for (const uid of known.keys()) if (!index.byUid.has(uid)) known.delete(uid);
    for (const meta of index.byUid.values()) {
      if (meta.flags & Flag.Deleted) continue;
      if (!known.has(meta.uid)) {
        const raw = await this.mail.readRaw(box, meta.uid);
        const item = raw && this.itemOf(raw);
        known.set(meta.uid, item ? (propertyText(item.object, 'UID') ?? '') : '');
      }
      if (known.get(meta.uid) === cardUid) return meta.uid;
    }
    return undefined;
  }

  /**
   * Stores a card from vCard text: replaces the item with the same vCard UID (when
   * `expectUid` is given, only if that is still the item's message UID — an ETag check),
   * else adds one. Returns the new message UID and ETag.
   */
  async putCard(box: MailboxHandle, text: string, options: { timeZone: string; expectUid?: number }): Promise<{ uid: number; etag: string; created: boolean }> {
    let object: VObject;
    try {
      object = parseVObject(text);
    } catch (err) {
      if (err instanceof VCardFormatError) throw new ServiceError(`${ILLEGAL_VCARD}: ${err.message}`);
      throw err;
    }
    const cardUid = completeObject(object);
    const existing = await this.findCard(box, cardUid);
    if (options.expectUid !== undefined && existing !== options.expectUid) throw new ServiceError('the card was changed meanwhile', 412);
    const replace: ReplaceSpec | undefined = existing === undefined ? undefined : { uid: existing, byOrigUid: false, mustExist: true, keepOrigUid: true };
    const { message } = await this.append(box, object, { timeZone: options.timeZone, flags: Flag.Seen, ...(replace ? { replace } : {}) });
    return { uid: message.uid, etag: `"${message.uid}"`, created: existing === undefined };
  }

  /** Removes the item with this message UID; false when there is none. */
  async removeCard(box: MailboxHandle, uid: number): Promise<boolean> {
    const removed = await this.mail.expunge(box, [uid]);
    if (removed > 0) this.log.info({ event: 'contacts.removed', mailbox: box.record.name, owner: box.owner.id, uid }, 'contact removed');
    return removed > 0;
  }
}
