/**
 * The XIMSS presentation of a message ("XML Data Formats": EMail, MIME, MIMEReport).
 */
import { XmlElement, xmlSafe } from '../../xml/element.js';
import { parseXml } from '../../xml/parser.js';
import { formatLocal, formatUtc } from '../../xml/time.js';
import { calendarPartXml } from '../calendar/mime.js';
import { isVCardSubtype, vCardPartXml } from '../contacts/mime.js';
import { ServiceError } from '../errors.js';
import type { EnvelopedFinding, SignedFinding, SmimeFindings } from '../smime/read.js';
import { x509Element } from '../smime/x509-xml.js';
import { decodeRawHeader } from './charset.js';
import { ADDRESS_FIELDS } from './fields.js';
import { decodeHeaderText, parseAddressList, parseDateHeader, parsePriority } from './headers.js';
import { findPart, parseHeaderBlock } from './parse.js';
import { decodePartBody } from './parts.js';
import { decodeTextPart } from './text.js';
import type { HeaderField, MimePart } from './types.js';

export interface MessageXmlOptions {
  /** The account's time zone, for localTime attributes (IANA name or 'HostOS'). */
  timeZone: string;
  /** Bodies stop being included once their total would exceed this many bytes. */
  totalSizeLimit?: number;
  /** Present only this part: its MIME element, or an EMail for a message/rfc822 part. */
  partID?: string;
  /** What src/services/smime/read.ts found of the message's signed and encrypted parts. */
  smime?: SmimeFindings;
}

/** Element names for well-known fields, whatever capitalisation the message used. */
const CANONICAL_NAMES: Record<string, string> = {};
for (const name of [
  'From', 'To', 'Cc', 'Bcc', 'Reply-To', 'Sender', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References',
  'Return-Path', 'Resent-Date', 'Resent-From', 'Resent-To', 'Resent-Cc', 'Resent-Bcc', 'Resent-Sender',
  'Resent-Message-ID', 'Disposition-Notification-To', 'Return-Receipt-To', 'Errors-To', 'Recent-From', 'Recent-To',
  'Received', 'Comments', 'Keywords', 'Organization', 'X-Mailer', 'User-Agent', 'X-Telnum', 'Importance', 'Priority',
  'List-Id', 'List-Unsubscribe', 'List-Post', 'List-Help', 'List-Subscribe', 'List-Archive', 'Precedence',
  'Auto-Submitted', 'Thread-Topic', 'Thread-Index', 'X-Original-To', 'Delivered-To', 'Authentication-Results',
  'DKIM-Signature', 'X-MSMail-Priority', 'X-Spam-Status', 'X-Spam-Flag', 'X-Spam-Score',
]) {
  CANONICAL_NAMES[name.toLowerCase()] = name;
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9._-]*$/;
const PRIORITY_FIELDS = new Set(['x-priority', 'importance', 'priority', 'x-msmail-priority']);

interface Context {
  raw: Buffer;
  timeZone: string;
  /** Bytes of body still allowed (totalSizeLimit). */
  budget: number;
  smime?: SmimeFindings;
}

/** X-Telnum: "+1 555 1234 (WORK), +1 555 9876;type=CELL" -> number and optional type each. */
function parseTelnums(value: string): { number: string; type?: string }[] {
  const out: { number: string; type?: string }[] = [];
  for (const item of decodeHeaderText(value).split(',')) {
    let text = item.trim();
    let type: string | undefined;
    const comment = /\(([^()]*)\)\s*$/.exec(text);
    if (comment) {
      type = comment[1]!.trim();
      text = text.slice(0, comment.index).trim();
    }
    const param = /;\s*type\s*=\s*"?([^";]*)"?\s*$/i.exec(text);
    if (param) {
      type = param[1]!.trim();
      text = text.slice(0, param.index).trim();
    }
    if (text) out.push(type ? { number: text, type: type.toUpperCase() } : { number: text });
  }
  return out;
}

/**
 * Appends the XML elements for header fields (everything but Content-* and MIME-Version).
 * Dates that cannot be parsed are left out: clients read the Date body as a time value.
 */
function appendHeaderElements(target: XmlElement, fields: readonly HeaderField[], timeZone: string): void {
  const priority = parsePriority(fields);
  let priorityDone = false;
  for (const field of fields) {
    const lower = field.name.toLowerCase();
    if (lower.startsWith('content-') || lower === 'mime-version') continue;
    const name = CANONICAL_NAMES[lower] ?? field.name;
    if (!XML_NAME.test(name)) continue;
    if (PRIORITY_FIELDS.has(lower)) {
      if (!priorityDone && priority) target.add('Pty', undefined, priority);
      priorityDone = true;
      if (lower === 'x-priority') continue;
    }
    if (ADDRESS_FIELDS.has(lower)) {
      for (const a of parseAddressList(field.value)) {
        target.add(name, a.realName ? { realName: xmlSafe(a.realName) } : undefined, xmlSafe(a.address));
      }
    } else if (lower === 'date' || lower === 'resent-date') {
      const date = parseDateHeader(field.value);
      if (date) {
        const moment = new Date(date.time);
        target.add(name, { timeShift: date.shiftSeconds, localTime: formatLocal(moment, timeZone) }, formatUtc(moment));
      }
    } else if (lower === 'x-telnum') {
      for (const t of parseTelnums(field.value)) target.add(name, t.type ? { type: xmlSafe(t.type) } : undefined, xmlSafe(t.number));
    } else {
      target.add(name, undefined, xmlSafe(decodeHeaderText(field.value)));
    }
  }
}

/** Decoded-size estimate: base64 lines carry 57 bytes per 78 written. */
function estimatedSize(part: MimePart): number {
  const length = part.end - part.bodyStart;
  if (part.encoding === 'base64') return Math.floor((length * 57) / 78);
  return length;
}

function isXmlType(part: MimePart): boolean {
  return part.subtype === 'xml' || part.subtype.endsWith('+xml');
}

function isReport(part: MimePart): boolean {
  return (
    part.type === 'message' &&
    (part.subtype === 'delivery-status' || part.subtype === 'disposition-notification' || part.subtype === 'global-delivery-status' || part.subtype === 'global-disposition-notification')
  );
}

function isHeadersType(part: MimePart): boolean {
  return (part.type === 'text' || part.type === 'message') && (part.subtype === 'rfc822-headers' || part.subtype === 'global-headers');
}

/** Report field groups (RFC 3464 / RFC 8098): the first as elements, the others nested. */
function reportElement(body: Buffer): XmlElement {
  const report = new XmlElement('MIMEReport');
  let pos = 0;
  let first = true;
  while (pos < body.length) {
    while (pos < body.length && (body[pos] === 13 || body[pos] === 10)) pos++;
    if (pos >= body.length) break;
    const { fields, end } = parseHeaderBlock(body, pos);
    if (fields.length === 0 || end <= pos) break;
    const target = first ? report : report.add('MIMEReport');
    for (const f of fields) if (XML_NAME.test(f.name)) target.add(f.name, undefined, xmlSafe(decodeHeaderText(f.value)));
    first = false;
    pos = end;
  }
  return report;
}

function headersEmail(ctx: Context, part: MimePart): XmlElement {
  const email = new XmlElement('EMail');
  appendHeaderElements(email, parseHeaderBlock(decodePartBody(ctx.raw, part)).fields, ctx.timeZone);
  return email;
}

function isSupported(part: MimePart): boolean {
  if (part.type === 'multipart' || part.message) return true;
  if (part.type === 'text' || isReport(part) || isHeadersType(part) || isXmlType(part)) return true;
  return false;
}

function mimeElement(ctx: Context, part: MimePart, showPartID: boolean): XmlElement {
  const attrs: Record<string, string | number | undefined> = {};
  if (showPartID && part.partID) attrs['partID'] = part.partID;
  attrs['estimatedSize'] = estimatedSize(part);
  attrs['type'] = part.type;
  attrs['subtype'] = part.subtype;
  if (part.type === 'text' && part.charset) attrs['charset'] = part.charset;
  if (part.contentID) attrs['contentID'] = part.contentID;
  if (part.disposition) attrs['disposition'] = part.disposition;
  if (part.description) attrs['description'] = part.description;
  if (part.location) attrs['location'] = part.location;
  if (part.contentClass) attrs['class'] = part.contentClass;
  for (const key of Object.keys(part.params)) {
    if (key === 'boundary' || key === 'charset' || key === 'format') continue;
    if (XML_NAME.test('Type-' + key)) attrs['Type-' + key] = part.params[key];
  }
  for (const key of Object.keys(part.dispositionParams)) {
    if (XML_NAME.test('Disposition-' + key)) attrs['Disposition-' + key] = part.dispositionParams[key];
  }
  for (const key of Object.keys(attrs)) {
    const v = attrs[key];
    if (typeof v === 'string') attrs[key] = xmlSafe(v);
  }
  const element = new XmlElement('MIME', attrs);
  const problems = [...(part.problems ?? [])];
  const finding = ctx.smime?.get(part);
  if (finding?.kind === 'signed') return signedElement(ctx, part, element, finding);
  if (finding?.kind === 'enveloped') return envelopedElement(ctx, part, element, finding);

  if (part.disposition !== 'attachment' && isSupported(part)) {
    if (part.type === 'multipart') {
      for (const child of part.children) element.append(mimeElement(ctx, child, true));
    } else if (part.message) {
      element.append(emailElement(ctx, part.message));
    } else {
      const size = estimatedSize(part);
      if (size <= ctx.budget) {
        ctx.budget -= size;
        appendLeafBody(ctx, part, element, problems);
      }
    }
  }
  if (problems.length > 0) element.setAttr('parserError', xmlSafe(problems.join('; ')));
  return element;
}

/** A signed part: the signed data, then SMIMESignature with the signers whose signatures match it. */
function signedElement(ctx: Context, part: MimePart, element: XmlElement, finding: SignedFinding): XmlElement {
  if (finding.decodeError !== undefined) element.setAttr('decryptionError', xmlSafe(finding.decodeError));
  element.append(mimeElement(ctx, part.children[0]!, true));
  const signature = element.add('SMIMESignature');
  for (const signer of finding.signers) if (signer.signerPem) signature.append(x509Element(signer.signerPem, signer.validationError));
  return element;
}

/**
 * An encrypted part: as it is (an attachment) when it was not decrypted, with decryptionError
 * when decrypting failed; with cipherName, keyLength and the decrypted entity (an EMail when
 * it is a message with header fields of its own, a MIME element otherwise) when it was.
 */
function envelopedElement(ctx: Context, part: MimePart, element: XmlElement, finding: EnvelopedFinding): XmlElement {
  if (finding.decryptionError !== undefined) element.setAttr('decryptionError', xmlSafe(finding.decryptionError));
  const decrypted = finding.decrypted;
  if (!decrypted) return element;
  element.setAttr('cipherName', decrypted.cipherName);
  element.setAttr('keyLength', decrypted.keyLength);
  const inner: Context = { raw: decrypted.raw, timeZone: ctx.timeZone, budget: ctx.budget, smime: decrypted.findings };
  const partID = part.partID === '' ? 'E' : `${part.partID}-E`;
  const isMessage = decrypted.root.headers.some((f) => !f.name.toLowerCase().startsWith('content-') && f.name.toLowerCase() !== 'mime-version');
  let shown: XmlElement;
  if (isMessage) {
    shown = new XmlElement('EMail', { partID });
    appendHeaderElements(shown, decrypted.root.headers, ctx.timeZone);
    shown.append(mimeElement(inner, decrypted.root, false).setAttr('partID', partID));
  } else {
    shown = mimeElement(inner, decrypted.root, false).setAttr('partID', partID);
  }
  ctx.budget = inner.budget;
  element.append(shown);
  return element;
}

function appendLeafBody(ctx: Context, part: MimePart, element: XmlElement, problems: string[]): void {
  if (isReport(part)) {
    element.append(reportElement(decodePartBody(ctx.raw, part)));
    return;
  }
  if (isHeadersType(part)) {
    element.append(headersEmail(ctx, part));
    return;
  }
  const decoded = decodeTextPart(ctx.raw, part);
  if (decoded.readError) element.setAttr('readError', decoded.readError);
  if (isXmlType(part)) {
    try {
      element.append(parseXml(decoded.text));
    } catch (err) {
      problems.push('XML: ' + (err instanceof Error ? err.message : String(err)));
    }
    return;
  }
  if (part.type === 'text' && isVCardSubtype(part.subtype)) {
    // vCard / vCardGroup XML; the text itself when no card could be read.
    const cards = vCardPartXml(part.subtype, decoded.text);
    problems.push(...cards.problems.map((p) => 'vCard: ' + p));
    if (cards.elements.length > 0 || cards.problems.length === 0) element.append(...cards.elements);
    else if (decoded.text) element.append(decoded.text);
    return;
  }
  if (part.type === 'text' && part.subtype === 'calendar') {
    // iCalendar XML; the text itself when it could not be read.
    const calendar = calendarPartXml(decoded.text);
    if (calendar.problem !== undefined) {
      problems.push('iCalendar: ' + calendar.problem);
      if (decoded.text) element.append(decoded.text);
    } else element.append(...calendar.elements);
    return;
  }
  if (decoded.text) element.append(decoded.text);
}

/** The EMail element of the message whose top part is `top`. */
function emailElement(ctx: Context, top: MimePart): XmlElement {
  const email = new XmlElement('EMail');
  appendHeaderElements(email, top.headers, ctx.timeZone);
  // The top part of an enclosed multipart message shares its container's id: no partID.
  email.append(mimeElement(ctx, top, top.type !== 'multipart'));
  return email;
}

/**
 * The XML presentation of a message (an EMail element), or of one part of it when
 * options.partID is given: an EMail for message/rfc822 and text/rfc822-headers parts, the
 * MIME element otherwise. An unknown partID is a ServiceError.
 */
export function messageToXml(raw: Buffer, root: MimePart, options: MessageXmlOptions): XmlElement {
  const ctx: Context = { raw, timeZone: options.timeZone, budget: options.totalSizeLimit ?? Number.POSITIVE_INFINITY, smime: options.smime };
  if (options.partID === undefined || options.partID === '') return emailElement(ctx, root);
  const part = findPart(root, options.partID);
  if (!part) throw new ServiceError(`message part ${decodeRawHeader(options.partID)} not found`, 500);
  if (part.message) return emailElement(ctx, part.message);
  if (isHeadersType(part)) return headersEmail(ctx, part);
  return mimeElement(ctx, part, true);
}
