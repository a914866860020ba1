import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ServiceError } from '../../services/errors.js';
import { Flag, formatFlags, parseInitialFlags } from '../../services/mail/flags.js';
import { prepareMessage } from '../../services/mail/new-message.js';
import type { MailboxHandle } from '../../services/mail/service.js';
import {
  composeMessage,
  findPart,
  headerValue,
  parseAddressList,
  messageToXml,
  parseMime,
  partBytes,
  replyTemplate,
  type PartResolver,
  type ReplyMode,
} from '../../services/mime/index.js';
import type { MessageMeta, ReplaceSpec } from '../../store/store.js';
import { el, XmlElement } from '../../xml/element.js';
import { appendValue, readValue, type XimssValue } from '../../xml/objects.js';
import { formatUtc, parseGmt } from '../../xml/time.js';
import { inSession, type OperationTable, type SessionContext } from '../engine.js';
import { createOption, openFolder, totalSizeLimitAttr } from '../folders.js';
import { emptyDictionary } from '../session.js';
import { requireUnlocked, smimeService, unlockedIdentity } from './smime.js';

/** Spec section "Message Operations": reading and storing (sending is in message-send.ts). */

const REPLY_MODES = new Set(['replyFrom', 'replyAll', 'forward', 'replyFromHTML', 'replyAllHTML', 'forwardHTML']);

/** The message attributes the store keeps itself: read by messageAttrRead, never written. */
function metadataAttrs(meta: Pick<MessageMeta, 'uid' | 'origUid' | 'flags' | 'keywords' | 'size' | 'internalDate'>): { [key: string]: XimssValue } {
  return {
    FLAGS: formatFlags(meta.flags, meta.keywords),
    UID: String(meta.uid),
    ORIGUID: String(meta.origUid),
    SIZE: String(meta.size),
    INTERNALDATE: formatUtc(new Date(meta.internalDate)),
  };
}
const METADATA_ATTRS = new Set(Object.keys(metadataAttrs({ uid: 0, origUid: 0, flags: 0, keywords: [], size: 0, internalDate: 0 })));

export function uidAttr(request: XmlElement): number {
  const text = request.attrs.UID ?? request.attrs.uid;
  const uid = Number(text);
  if (text === undefined || !Number.isInteger(uid) || uid <= 0) throw new ServiceError('the UID attribute is missing or invalid');
  return uid;
}

/** The stored message `uid` of a box, or a clear error. */
export async function readMessage(ctx: SessionContext, box: MailboxHandle, uid: number): Promise<Buffer> {
  const raw = await ctx.server.mail.readRaw(box, uid);
  if (!raw) throw new ServiceError('message not found');
  return raw;
}

/**
 * What folderRead (and calendarRead) sends of a message: the message or one part as XML
 * (`partID`), or a reply/forward template (`mode`), per the request's attributes.
 */
export async function readMessageReply(ctx: SessionContext, box: MailboxHandle, uid: number): Promise<{ body: XmlElement; partID?: string; mode?: string }> {
  const { partID, mode } = ctx.request.attrs;
  const raw = await readMessage(ctx, box, uid);
  const root = parseMime(raw);
  if (partID !== undefined && partID !== '' && !findPart(root, partID)) throw new ServiceError(`message part not found: ${partID}`);
  const timeZone = ctx.session.timeZone;
  let body: XmlElement;
  if (mode !== undefined && mode !== '') {
    if (!REPLY_MODES.has(mode)) throw new ServiceError(`invalid mode: ${mode}`);
    body = replyTemplate(raw, root, mode as ReplyMode, {
      timeZone,
      ownAddresses: [ctx.session.userName],
      partID: partID || undefined,
    });
  } else {
    // Signed parts verified, encrypted ones decrypted when the session's key is unlocked.
    const service = smimeService(ctx.server);
    const smime = await service.examine(raw, root, unlockedIdentity(ctx.session));
    if (smime.size > 0) {
      const from = parseAddressList(headerValue(root.headers, 'From') ?? '').map((a) => a.address);
      await service.collect(ctx.session.account, smime, from);
    }
    body = messageToXml(raw, root, { timeZone, totalSizeLimit: totalSizeLimitAttr(ctx.request), partID: partID || undefined, smime });
  }
  return { body, ...(partID ? { partID } : {}), ...(mode ? { mode } : {}) };
}

/**
 * Where composed messages get uploaded files and parts of stored messages (copyMIME from
 * an open folder), files of the account's File Storage (`fileName`).
 */
export function sessionResolver(ctx: SessionContext): PartResolver {
  const session = ctx.session;
  return {
    async upload(uploadID) {
      const file = session.uploads.get(uploadID);
      if (!file) throw new ServiceError(`uploaded file not found: ${uploadID}`);
      // Read from the spool; a file cleared meanwhile is gone.
      const data = await readFile(file.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw new ServiceError(`uploaded file not found: ${uploadID}`);
        throw err;
      });
      return { data, type: file.type, subtype: file.subtype, charset: file.charset, fileName: file.fileName };
    },
    async file(name) {
      // A File Storage file (example 015: fileName="private/MyFile.jpg"), read whole: a file
      // larger than a message may be is refused before it is read.
      const files = ctx.server.files;
      const target = await files.resolve(session.account, name, 'read');
      const entry = await files.stat(target.owner, target.path);
      if (!entry) throw new ServiceError('file is not found');
      if (entry.kind !== 'file') throw new ServiceError(`${name} is a directory`);
      if (entry.size > ctx.server.config.limits.maxMessageBytes) throw new ServiceError('the message is too large');
      const { data } = await files.readRange(target.owner, target.path, 0, entry.size);
      return { data, fileName: entry.name };
    },
    async copyMIME(element) {
      if (element.attrs.calendar !== undefined) throw new ServiceError('not implemented yet: copyMIME from a calendar');
      const folder = openFolder(session, element);
      const raw = await readMessage(ctx, folder.box, uidAttr(element));
      const partID = element.attrs.partID;
      if (partID === undefined || partID === '') return { raw, wholeMessage: true };
      const part = findPart(parseMime(raw), partID);
      if (!part) throw new ServiceError(`message part not found: ${partID}`);
      return { raw: partBytes(raw, part), wholeMessage: false };
    },
  };
}

/** Composes RFC 822 bytes from the request's EMail element (or its uploaded text). */
export async function composeFromRequest(ctx: SessionContext, options: { addMissing: boolean; omitBcc: boolean }): Promise<Buffer> {
  const email = ctx.request.element('EMail');
  if (!email) throw new ServiceError('the EMail element is missing');
  return composeElement(ctx, email, options);
}

async function composeElement(ctx: SessionContext, email: XmlElement, options: { addMissing: boolean; omitBcc: boolean; sevenBit?: boolean }): Promise<Buffer> {
  const raw = await composeMessage(email, sessionResolver(ctx), {
    sevenBit: options.sevenBit,
    timeZone: ctx.session.timeZone,
    addMissing: options.addMissing,
    hostname: ctx.server.config.defaultDomain || hostname(),
    omitBcc: options.omitBcc,
    maxBytes: ctx.server.config.limits.maxMessageBytes,
  });
  if (raw.length > ctx.server.config.limits.maxMessageBytes) throw new ServiceError('the message is too large');
  return raw;
}

function yesAttr(element: XmlElement, name: string): boolean {
  return (element.attrs[name] ?? '').toLowerCase() === 'yes';
}

/** The S/MIME attributes of an EMail element, which the composer does not take. */
const SMIME_ATTRS = new Set(['sign', 'encrypt', 'addressBook', 'addressBook1', 'addressBook2']);

/**
 * composeFromRequest, signed or encrypted as the topmost EMail element asks (spec "Message
 * Operations", S/MIME): sign="yes" makes a multipart/signed message with the session's
 * unlocked key; encrypt="yes" encrypts the single inner EMail element (itself signed when it
 * has sign="yes"), or the message's own body when there is none, for `recipients` (their
 * certificates: see SmimeService.recipientCertificate) and for the user's own certificate.
 */
export async function composeSecured(ctx: SessionContext, options: { addMissing: boolean; omitBcc: boolean }, recipients: readonly string[]): Promise<Buffer> {
  const email = ctx.request.element('EMail');
  if (!email) throw new ServiceError('the EMail element is missing');
  const sign = yesAttr(email, 'sign');
  const encrypt = yesAttr(email, 'encrypt');
  const inner = email.elements('EMail');
  if (!sign && !encrypt) {
    if (inner.length > 0) throw new ServiceError('an inner EMail element needs encrypt="yes" on the topmost one');
    return composeElement(ctx, withoutSmimeAttrs(email, false), options);
  }
  if (sign && encrypt) throw new ServiceError('the topmost EMail element cannot have both sign and encrypt (put sign on the inner EMail element)');
  const service = smimeService(ctx.server);
  if (sign) {
    if (inner.length > 0) throw new ServiceError('an inner EMail element needs encrypt="yes" on the topmost one');
    const identity = requireUnlocked(ctx.session);
    return service.sign(await composeElement(ctx, withoutSmimeAttrs(email, false), { ...options, sevenBit: true }), identity);
  }
  if (inner.length > 1) throw new ServiceError('the encrypted EMail element may contain one inner EMail element only');
  const own = await service.certificate(ctx.session.account);
  if (!own) throw new ServiceError('the account has no S/MIME certificate (see SMIMESet)');
  const certificates = [own];
  for (const address of recipients) {
    const found = await service.recipientCertificate(ctx.session.account, address, (a) => ctx.server.accounts.find(a));
    if (!found) {
      ctx.server.log.info({ event: 'smime.no_certificate', account: ctx.session.userName, address }, `no S/MIME certificate for ${address}`);
      throw new ServiceError(`no S/MIME certificate for ${address}: cannot encrypt`);
    }
    certificates.push(found);
  }
  if (inner.length === 0) {
    const raw = await composeElement(ctx, withoutSmimeAttrs(email, false), options);
    return service.encrypt(raw, raw, certificates, true);
  }
  const innerElement = inner[0]!;
  if (yesAttr(innerElement, 'encrypt') || innerElement.elements('EMail').length > 0) throw new ServiceError('the inner EMail element cannot be encrypted again');
  const innerSigned = yesAttr(innerElement, 'sign');
  const signer = innerSigned ? requireUnlocked(ctx.session) : undefined;
  let content = await composeElement(ctx, withoutSmimeAttrs(innerElement, false), { addMissing: false, omitBcc: true, sevenBit: innerSigned });
  if (signer) content = await service.sign(content, signer);
  const outer = await composeElement(ctx, withoutSmimeAttrs(email, true), options);
  return service.encrypt(outer, content, certificates, false);
}

/** A copy of an EMail element without the S/MIME attributes (and, for the outer one, without its body elements). */
function withoutSmimeAttrs(email: XmlElement, headersOnly: boolean): XmlElement {
  const attrs: Record<string, string> = {};
  for (const key of Object.keys(email.attrs)) if (!SMIME_ATTRS.has(key)) attrs[key] = email.attrs[key]!;
  const children = email.children.filter((c) => typeof c !== 'string' && !(headersOnly && (c.name === 'EMail' || c.name === 'MIME')));
  return new XmlElement('EMail', attrs, children);
}

export function internalDateAttr(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const date = parseGmt(value) ?? (Number.isNaN(Date.parse(value)) ? undefined : new Date(Date.parse(value)));
  if (!date) throw new ServiceError(`invalid internalDate: ${value}`);
  return date.getTime();
}

function replaceSpec(request: XmlElement): ReplaceSpec | undefined {
  const text = request.attrs.replacesUID;
  if (text === undefined || text === '') return undefined;
  const uid = Number(text);
  if (!Number.isInteger(uid) || uid <= 0) throw new ServiceError('invalid replacesUID');
  switch (request.attrs.replaceMode) {
    case undefined:
    case '':
      return { uid, byOrigUid: false, mustExist: false, keepOrigUid: false };
    case 'checkOld':
      return { uid, byOrigUid: false, mustExist: true, keepOrigUid: false };
    case 'copyOrigUID':
      return { uid, byOrigUid: false, mustExist: true, keepOrigUid: true };
    case 'origUID':
      return { uid, byOrigUid: true, mustExist: true, keepOrigUid: true };
    default:
      throw new ServiceError(`invalid replaceMode: ${request.attrs.replaceMode}`);
  }
}

/**
 * Where messageAppend and contactAppend store: an open `folder` (with replacesUID/replaceMode),
 * or `targetMailbox`, created with `create` (its class) when missing and asked for.
 */
export async function appendTarget(ctx: SessionContext, create: { mailboxClass: string } | undefined): Promise<{ box: MailboxHandle; replace?: ReplaceSpec }> {
  const { folder, targetMailbox, replacesUID } = ctx.request.attrs;
  if (folder !== undefined && folder !== '') return { box: openFolder(ctx.session, ctx.request).box, replace: replaceSpec(ctx.request) };
  if (targetMailbox === undefined || targetMailbox === '') throw new ServiceError('the targetMailbox or folder attribute is missing');
  if (replacesUID !== undefined) throw new ServiceError('replacesUID needs the folder attribute');
  return { box: await ctx.server.mail.access(ctx.session.account, targetMailbox, 'i', create) };
}

export const messageOperations: OperationTable = {
  folderRead: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    const { body, partID, mode } = await readMessageReply(ctx, folder.box, uid);
    ctx.send(el('folderMessage', { folder: folder.name, UID: uid, partID, mode }, body));
  }),

  messageAppend: inSession(async (ctx) => {
    const session = ctx.session;
    const mail = ctx.server.mail;
    const { folder: folderName, targetMailbox, flags, internalDate } = ctx.request.attrs;
    const { box, replace } = await appendTarget(ctx, createOption(ctx.request));
    const initial = parseInitialFlags(flags);
    const date = internalDateAttr(internalDate);
    const raw = await composeSecured(ctx, { addMissing: false, omitBcc: false }, []);
    const message = prepareMessage(raw, { flags: initial.flags | Flag.Recent, keywords: initial.keywords, internalDate: date });
    const [added] = await mail.append(box, [message], { replace });
    if (ctx.request.attrs.report === 'uid' && added) {
      ctx.send(el('messageAdded', folderName ? { folder: folderName, UID: added.uid } : { targetMailbox, UID: added.uid }));
    }
  }),

  messageAttrRead: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    await ctx.server.mail.check(folder.box, 'r');
    const meta = await ctx.server.mail.getMessage(folder.box, uid);
    if (!meta) throw new ServiceError('message not found');
    const all = Object.assign(emptyDictionary(), meta.attrs, metadataAttrs(meta));
    const wanted = ctx.request.elements('field').map((f) => f.text().trim());
    const result = emptyDictionary();
    for (const key of wanted.length > 0 ? wanted : Object.keys(all)) if (key in all) result[key] = all[key]!;
    ctx.send(appendValue(el('messageAttrData', { folder: folder.name, UID: uid }), result));
  }),

  messageAttrWrite: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const uid = uidAttr(ctx.request);
    const meta = await ctx.server.mail.getMessage(folder.box, uid);
    if (!meta) throw new ServiceError('message not found');
    const attrs = Object.assign(emptyDictionary(), meta.attrs);
    const keys = ctx.request.elements('subKey');
    if (keys.length === 0) throw new ServiceError('the attribute dictionary is missing');
    for (const entry of keys) {
      const key = entry.attrs.key;
      if (key === undefined || key === '') throw new ServiceError('subKey element without a key attribute');
      if (METADATA_ATTRS.has(key)) throw new ServiceError(`${key} cannot be written`);
      const children = entry.elements();
      if (children.length === 1 && children[0]!.name === 'null') {
        delete attrs[key];
        continue;
      }
      try {
        attrs[key] = readValue(entry);
      } catch (err) {
        throw new ServiceError(`invalid attribute value for ${key}: ${(err as Error).message}`);
      }
    }
    await ctx.server.mail.setAttrs(folder.box, uid, Object.keys(attrs).length > 0 ? attrs : null);
  }),
};
