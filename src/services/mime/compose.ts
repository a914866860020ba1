/**
 * Message composition: the EMail element of messageAppend / messageSubmit in, RFC 822
 * bytes with CRLF line ends out.
 *
 * The message is assembled here rather than with nodemailer's MimeNode: MimeNode decides
 * header order, adds Date/Message-ID/MIME-Version on its own and re-encodes content, while
 * XIMSS needs the client's header order, optional defaults, and byte-exact copies of parts
 * taken from stored messages (copyMIME). The encoders come from libmime and nodemailer.
 */
import { randomBytes, randomInt } from 'node:crypto';
import libmime from 'libmime';
import * as base64 from 'nodemailer/lib/base64';
import * as mimeFuncs from 'nodemailer/lib/mime-funcs';
import * as qp from 'nodemailer/lib/qp';
import { XmlElement, serialize } from '../../xml/element.js';
import { parseGmt } from '../../xml/time.js';
import { calendarPartText } from '../calendar/mime.js';
import { isVCardSubtype, vCardPartText } from '../contacts/mime.js';
import { ServiceError } from '../errors.js';
import { encodeText, isAscii } from './charset.js';
import { formatRfcDate, rfcDateInZone } from './dates.js';
import { ADDRESS_FIELDS } from './fields.js';
import { parseAddressList } from './headers.js';
import { parseHeaderBlock } from './parse.js';
import type { PartResolver, ResolvedFile } from './types.js';

export interface ComposeOptions {
  /** Zone for a Date given only in GMT, and for the Date added by addMissing. */
  timeZone: string;
  /** Add Message-ID, Date and MIME-Version when the EMail has none. */
  addMissing: boolean;
  /** Host name for generated Message-IDs and boundaries. */
  hostname: string;
  /** Leave Bcc out of the written header (messageSubmit). */
  omitBcc: boolean;
  /**
   * The most bytes of uploaded files and copied parts one message may take in: checked as
   * they are fetched, since one small request can name a large upload thousands of times.
   */
  maxBytes?: number;
  /** Text parts in 7 bits (quoted-printable when not ASCII): a signed body must survive 7-bit relays (RFC 8551 3.1.2). */
  sevenBit?: boolean;
}

/** An entity under construction: its header block (each line ending in CRLF) and body. */
interface Entity {
  header: Buffer;
  body: Buffer;
}

/** Fields written as address lists: those XIMSS presents as addresses, and the Resent- ones. */
const ADDRESS_LIST_FIELDS = new Set([...ADDRESS_FIELDS, 'resent-from', 'resent-to', 'resent-cc', 'resent-bcc', 'resent-sender']);
const MESSAGE_ID_FIELDS = new Set(['message-id', 'resent-message-id', 'in-reply-to', 'references']);
const DATE_FIELDS = new Set(['date', 'resent-date']);
const BODY_ELEMENTS = new Set(['MIME', 'copyMIME']);
const MAX_DEPTH = 20;
/** Soft limit for header lines (RFC 5322 2.1.1 recommends 78 including CRLF). */
const LINE = 76;
const TOKEN = /^[A-Za-z0-9!#$&^_.+-]+$/;

let messageIdCounter = 0;

/** A new Message-ID (with its angle brackets) for a message this server writes. */
export function newMessageId(hostname: string): string {
  const unique = `${Date.now()}${String(++messageIdCounter % 1000).padStart(3, '0')}${randomInt(1000000)}`;
  const host = hostname.replace(/[^A-Za-z0-9.-]/g, '') || 'localhost';
  return `<ximss-${unique}@${host}>`;
}

function fail(message: string): never {
  throw new ServiceError(message, 500);
}

/** CR, LF and other controls in a header value would start a new field: make them spaces. */
function clean(value: string): string {
  return value.replace(/[\u0000-\u0008\u000a-\u001f\u007f]+/g, ' ').trim();
}

/**
 * Folds `Name: piece<sep>piece...` at the separators, never inside a piece, so that lines
 * stay under 76 characters where the pieces allow it. Never breaks before an empty piece:
 * a line of white space only is not a valid fold.
 */
function foldField(name: string, pieces: string[], sep: string): string {
  let out = name + ':';
  let lineLength = out.length;
  pieces.forEach((piece, i) => {
    const joined = (i === 0 ? ' ' : sep) + piece;
    if (i > 0 && piece !== '' && lineLength + joined.length > LINE) {
      out += sep.trimEnd() + '\r\n ' + piece;
      lineLength = 1 + piece.length;
    } else {
      out += joined;
      lineLength += joined.length;
    }
  });
  return out;
}

function hasNonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7e) return true;
  return false;
}

/** `Name: value` of unstructured text: RFC 2047 words for the non-ASCII runs, folded at spaces (no final CRLF). */
export function unstructuredField(name: string, value: string): string {
  const text = clean(value);
  const encoded = hasNonAscii(text) ? mimeFuncs.encodeWords(text, 'Q', 52) : text;
  return foldField(name, encoded.split(' '), ' ');
}

/** `"Real Name" <addr>`, `=?UTF-8?Q?...?= <addr>` or `addr`. */
export function formatAddress(address: string, realName: string | undefined): string {
  const addr = clean(address).replace(/^<|>$/g, '');
  const name = realName ? clean(realName) : '';
  if (!name) return addr;
  const phrase = hasNonAscii(name) ? mimeFuncs.encodeWord(name, 'Q', 52) : mimeFuncs.quoteString(name);
  return `${phrase} <${addr}>`;
}

function addressPieces(elements: XmlElement[]): string[] {
  const pieces: string[] = [];
  for (const e of elements) {
    const realName = e.attr('realName');
    const text = e.text().trim();
    // A client may send a full address ("Name <addr>", or several) as the element text.
    if (realName === undefined && /[<,]/.test(text)) {
      for (const a of parseAddressList(text)) pieces.push(formatAddress(a.address, a.realName));
    } else if (text) {
      pieces.push(formatAddress(text, realName));
    }
  }
  return pieces;
}

/** The Date element: its localTime + timeShift when present, else its GMT body in the zone. */
function dateValue(e: XmlElement, timeZone: string): string {
  const localTime = e.attr('localTime');
  const shiftAttr = e.attr('timeShift')?.trim();
  const shift = shiftAttr !== undefined && /^[+-]?\d+$/.test(shiftAttr) && Math.abs(+shiftAttr) <= 18 * 3600 ? +shiftAttr : undefined;
  if (localTime !== undefined && shift !== undefined) {
    const local = parseGmt(localTime);
    if (local) return formatRfcDate(local, shift);
  }
  const gmt = parseGmt(e.text());
  if (!gmt) fail(`invalid ${e.name} element "${e.text().trim()}"`);
  // A timeShift alone says in which zone to write the GMT time.
  if (shift !== undefined) return formatRfcDate(new Date(gmt.getTime() + shift * 1000), shift);
  return rfcDateInZone(gmt, timeZone);
}

function messageIdPieces(value: string, single: boolean): string[] {
  const ids = clean(value).split(/\s+/).filter((s) => s.length > 0).map((s) => (s.startsWith('<') ? s : `<${s.replace(/>$/, '')}>`));
  return single ? ids.slice(0, 1) : ids;
}

function priorityValue(value: string): string | undefined {
  const v = value.trim().toLowerCase();
  if (v === 'high' || v === '1' || v === '2') return '1 (Highest)';
  if (v === 'low' || v === '4' || v === '5') return '5 (Lowest)';
  return undefined;
}

function checkFieldName(name: string): void {
  if (!/^[!-9;-~]+$/.test(name)) fail(`invalid header field name "${name}"`);
}

/** Header lines (without CRLF) for the EMail's field elements, in the client's order. */
function headerLines(email: XmlElement, options: ComposeOptions): { lines: string[]; present: Set<string> } {
  const lines: string[] = [];
  const present = new Set<string>();
  const fieldElements = email.elements().filter((e) => !BODY_ELEMENTS.has(e.name) && e.name !== 'EMail');
  const done = new Set<string>();
  for (const e of fieldElements) {
    let name = e.name;
    let lower = name.toLowerCase();
    if (lower === 'pty') {
      name = 'X-Priority';
      lower = 'x-priority';
    }
    // The content fields come from the MIME elements.
    if (lower.startsWith('content-')) continue;
    if (lower === 'bcc' && options.omitBcc) continue;
    checkFieldName(name);
    if (ADDRESS_LIST_FIELDS.has(lower) || lower === 'x-telnum') {
      // Several elements of one address field make one field, where the first one was.
      if (done.has(lower)) continue;
      done.add(lower);
      const group = fieldElements.filter((g) => g.name.toLowerCase() === lower);
      if (lower === 'x-telnum') {
        const pieces = group.map((g) => clean(g.text()) + (g.attr('type') ? ` (${clean(g.attr('type')!)})` : '')).filter((p) => p.trim());
        if (pieces.length > 0) lines.push(foldField(name, pieces.map((p, i) => (i < pieces.length - 1 ? p + ',' : p)), ' '));
      } else {
        let pieces = addressPieces(group);
        if (lower === 'return-path') pieces = pieces.slice(0, 1).map((p) => '<' + p.replace(/^.*<|>$/g, '') + '>');
        if (pieces.length === 0) continue;
        lines.push(foldField(name, pieces.map((p, i) => (i < pieces.length - 1 ? p + ',' : p)), ' '));
      }
    } else if (DATE_FIELDS.has(lower)) {
      lines.push(`${name}: ${dateValue(e, options.timeZone)}`);
    } else if (MESSAGE_ID_FIELDS.has(lower)) {
      const ids = messageIdPieces(e.text(), lower === 'message-id' || lower === 'resent-message-id');
      if (ids.length === 0) continue;
      lines.push(foldField(name, ids, ' '));
    } else if (lower === 'x-priority') {
      const value = priorityValue(e.text());
      if (!value) continue;
      lines.push(`${name}: ${value}`);
    } else {
      lines.push(unstructuredField(name, e.text()));
    }
    present.add(lower);
  }
  return { lines, present };
}

function quoteParam(value: string): string {
  return mimeFuncs.quoteString(clean(value));
}

/** `key="value"`, or RFC 2231 pieces for non-ASCII values (`key*=utf-8''...`). */
function paramPieces(key: string, value: string): string[] {
  if (!hasNonAscii(value) && value.length < 900) return [`${key}=${quoteParam(value)}`];
  const encoded = libmime.buildHeaderParam(key, clean(value), 50);
  if (encoded.length === 1) return [`${key}*=${encoded[0]!.value}`];
  return encoded.map((p) => (p.key.endsWith('*') ? `${p.key}=${p.value}` : `${p.key}=${quoteParam(p.value)}`));
}

interface ContentSpec {
  type: string;
  subtype: string;
  params: [string, string][];
  disposition?: string;
  dispositionParams: [string, string][];
  encoding?: string;
  extra: string[];
}

function contentHeader(spec: ContentSpec): Buffer {
  const lines: string[] = [];
  const typePieces = [`${spec.type}/${spec.subtype}`];
  for (const [k, v] of spec.params) {
    // Old clients read only RFC 2047 in the name parameter; filename= carries RFC 2231.
    if (k === 'name' && hasNonAscii(v)) typePieces.push(`name=${quoteParam(mimeFuncs.encodeWords(clean(v), 'Q', 0, true))}`);
    else typePieces.push(...paramPieces(k, v));
  }
  lines.push(foldField('Content-Type', typePieces.map((p, i) => (i < typePieces.length - 1 ? p + ';' : p)), ' '));
  if (spec.disposition) {
    const pieces = [spec.disposition];
    for (const [k, v] of spec.dispositionParams) pieces.push(...paramPieces(k, v));
    lines.push(foldField('Content-Disposition', pieces.map((p, i) => (i < pieces.length - 1 ? p + ';' : p)), ' '));
  }
  if (spec.encoding) lines.push(`Content-Transfer-Encoding: ${spec.encoding}`);
  lines.push(...spec.extra);
  return Buffer.from(lines.map((l) => l + '\r\n').join(''), 'utf8');
}

/** True when the bytes can travel as 8bit: no NUL, no bare CR/LF, lines of at most 998 bytes. */
function fits8bit(data: Buffer): boolean {
  let lineStart = 0;
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if (c === 0) return false;
    if (c === 13) {
      if (data[i + 1] !== 10) return false;
      if (i - lineStart > 998) return false;
      i++;
      lineStart = i + 1;
    } else if (c === 10) return false;
  }
  return data.length - lineStart <= 998;
}

function toCrlf(text: string): string {
  return text.replace(/\r\n?|\n/g, '\r\n');
}

/** Bare LF (or CR) line ends of a byte buffer turned into CRLF. */
function bufferToCrlf(data: Buffer): Buffer {
  if (data.indexOf(10) < 0 && data.indexOf(13) < 0) return data;
  return Buffer.from(toCrlf(data.toString('latin1')), 'latin1');
}

function strictBase64(text: string, where: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) fail(`invalid base64 data in ${where}`);
  return Buffer.from(compact, 'base64');
}

function isXmlSubtype(subtype: string): boolean {
  return subtype === 'xml' || subtype.endsWith('+xml');
}

class Composer {
  private boundaryCounter = 0;
  private readonly boundaryBase = randomBytes(4).toString('hex');
  /** Bytes taken in from uploads, files and copied parts so far. */
  private fetched = 0;

  constructor(
    private readonly resolver: PartResolver,
    private readonly options: ComposeOptions,
  ) {}

  private take<T extends { data: Buffer } | { raw: Buffer }>(resolved: T): T {
    this.fetched += 'data' in resolved ? resolved.data.length : resolved.raw.length;
    if (this.options.maxBytes !== undefined && this.fetched > this.options.maxBytes) fail('the message is too large');
    return resolved;
  }

  private newBoundary(): string {
    const host = this.options.hostname.replace(/[^A-Za-z0-9.-]/g, '') || 'ximss';
    return `_===${this.boundaryBase}-${++this.boundaryCounter}====${host}===_`;
  }

  async message(email: XmlElement, addMissing: boolean, omitBcc: boolean, depth: number): Promise<Buffer> {
    if (email.name !== 'EMail') fail(`unexpected element <${email.name}> where an EMail element is expected`);
    for (const attr of ['sign', 'encrypt']) {
      const v = email.attr(attr);
      // The request's topmost EMail element (and its one inner EMail) are signed and encrypted
      // before composing (ops/message.ts composeSecured); one deeper in the message cannot be.
      if (v !== undefined && v !== '' && v !== 'no') fail(`${attr}="${v.slice(0, 20)}" is taken on the topmost EMail element (or its inner EMail) only, not on one inside a message part`);
    }
    const uploadID = email.attr('uploadID');
    if (uploadID !== undefined) {
      // The uploaded file is the RFC 822 text itself; only its line ends are normalised.
      const file = this.take(await this.resolver.upload(uploadID));
      return bufferToCrlf(file.data);
    }
    const { lines, present } = headerLines(email, { ...this.options, omitBcc });
    if (addMissing) {
      if (!present.has('date')) lines.push(`Date: ${rfcDateInZone(new Date(), this.options.timeZone)}`);
      if (!present.has('message-id')) {
        lines.push(`Message-ID: ${newMessageId(this.options.hostname)}`);
      }
      if (!present.has('mime-version')) lines.push('MIME-Version: 1.0');
    }
    const header = Buffer.from(lines.map((l) => l + '\r\n').join(''), 'utf8');
    const bodies = email.elements().filter((e) => BODY_ELEMENTS.has(e.name));
    if (bodies.length === 0) return Buffer.concat([header, Buffer.from('\r\n')]);
    // Several body elements directly in EMail are taken as the parts of a multipart/mixed.
    const entity = bodies.length === 1 ? await this.entity(bodies[0]!, depth) : await this.multipart('mixed', bodies, [], [], depth);
    return Buffer.concat([header, entity.header, Buffer.from('\r\n'), entity.body]);
  }

  async entity(element: XmlElement, depth: number): Promise<Entity> {
    if (depth > MAX_DEPTH) fail('MIME structure nested too deeply');
    if (element.name === 'copyMIME') return this.copied(element);
    if (element.name !== 'MIME') fail(`unexpected element <${element.name}> where a MIME element is expected`);
    return this.mime(element, depth);
  }

  private async copied(element: XmlElement): Promise<Entity> {
    const { raw, wholeMessage } = this.take(await this.resolver.copyMIME(element));
    if (wholeMessage) {
      const encoding = fits8bit(raw) ? (isAscii(raw) ? undefined : '8bit') : 'binary';
      return { header: contentHeader({ type: 'message', subtype: 'rfc822', params: [], dispositionParams: [], encoding, extra: [] }), body: raw };
    }
    // A part keeps its Content-* fields, as written, and its body; nothing else.
    const { end } = parseHeaderBlock(raw, 0);
    const kept: Buffer[] = [];
    let keep = false;
    let pos = 0;
    while (pos < end) {
      const lf = raw.indexOf(10, pos);
      const next = lf < 0 || lf >= end ? end : lf + 1;
      let contentEnd = next;
      if (contentEnd > pos && raw[contentEnd - 1] === 10) contentEnd--;
      if (contentEnd > pos && raw[contentEnd - 1] === 13) contentEnd--;
      if (contentEnd === pos) break; // the empty line
      const c = raw[pos];
      if (c !== 32 && c !== 9) keep = /^content-/i.test(raw.toString('latin1', pos, Math.min(pos + 8, contentEnd)));
      if (keep) kept.push(raw.subarray(pos, contentEnd), Buffer.from('\r\n'));
      pos = next;
    }
    return { header: Buffer.concat(kept), body: raw.subarray(end) };
  }

  private async multipart(subtype: string, children: XmlElement[], params: [string, string][], extra: string[], depth: number): Promise<Entity> {
    if (children.length === 0) fail(`multipart/${subtype} MIME element without parts`);
    const parts: Entity[] = [];
    for (const child of children) parts.push(await this.entity(child, depth + 1));
    let boundary = this.newBoundary();
    const delimiter = (b: string): Buffer => Buffer.from('--' + b, 'latin1');
    while (parts.some((p) => p.body.indexOf(delimiter(boundary)) >= 0 || p.header.indexOf(delimiter(boundary)) >= 0)) boundary = this.newBoundary();
    const chunks: Buffer[] = [];
    for (const part of parts) chunks.push(Buffer.from(`--${boundary}\r\n`), part.header, Buffer.from('\r\n'), part.body, Buffer.from('\r\n'));
    chunks.push(Buffer.from(`--${boundary}--\r\n`));
    const header = contentHeader({ type: 'multipart', subtype, params: [['boundary', boundary], ...params], dispositionParams: [], extra });
    return { header, body: Buffer.concat(chunks) };
  }

  private async mime(element: XmlElement, depth: number): Promise<Entity> {
    let file: ResolvedFile | undefined;
    const uploadID = element.attr('uploadID');
    const fileName = element.attr('fileName');
    if (uploadID !== undefined) file = this.take(await this.resolver.upload(uploadID));
    else if (fileName !== undefined) file = this.take(await this.resolver.file(fileName));

    let type = (element.attr('type') ?? file?.type ?? '').trim().toLowerCase();
    let subtype = (element.attr('subtype') ?? (element.attr('type') === undefined ? file?.subtype : undefined) ?? '').trim().toLowerCase();
    if (type.includes('/')) [type, subtype] = type.split('/', 2) as [string, string];
    const childElements = element.elements();
    if (!type) {
      if (file) {
        [type, subtype] = libmime.detectMimeType(file.fileName ?? fileName ?? '').split('/') as [string, string];
      } else if (childElements.length > 0 && childElements.every((c) => BODY_ELEMENTS.has(c.name))) {
        type = 'multipart';
      } else {
        type = 'text';
      }
    }
    if (!subtype) subtype = type === 'text' ? 'plain' : type === 'multipart' ? 'mixed' : type === 'message' ? 'rfc822' : 'octet-stream';
    if (!TOKEN.test(type) || !TOKEN.test(subtype)) fail(`invalid MIME type "${type}/${subtype}"`);

    // Type-* / Disposition-* attributes and the other content fields.
    const params: [string, string][] = [];
    const dispositionParams: [string, string][] = [];
    let typeName: string | undefined;
    for (const [key, value] of Object.entries(element.attrs)) {
      const lower = key.toLowerCase();
      if (lower.startsWith('type-') && key.length > 5) {
        const name = key.slice(5);
        if (!TOKEN.test(name)) fail(`invalid parameter name "${name}"`);
        if (name.toLowerCase() === 'name') typeName = value;
        else if (!['boundary', 'charset', 'format'].includes(name.toLowerCase())) params.push([name, value]);
      } else if (lower.startsWith('disposition-') && key.length > 12) {
        const name = key.slice(12);
        if (!TOKEN.test(name)) fail(`invalid parameter name "${name}"`);
        if (name.toLowerCase() !== 'filename') dispositionParams.push([name, value]);
      }
    }
    const extra: string[] = [];
    const contentID = element.attr('contentID');
    if (contentID) extra.push(`Content-ID: <${clean(contentID).replace(/^<|>$/g, '')}>`);
    const description = element.attr('description');
    if (description) extra.push(unstructuredField('Content-Description', description));
    const location = element.attr('location');
    if (location) extra.push(`Content-Location: ${clean(location)}`);
    const contentClass = element.attr('class');
    if (contentClass) extra.push(`Content-Class: ${clean(contentClass)}`);

    if (type === 'multipart') {
      if (file) fail('a multipart MIME element cannot take file data');
      return this.multipart(subtype, childElements, params, extra, depth);
    }

    // The attachment name: disposition-filename, else the uploaded file's own name.
    const dispositionAttr = element.attr('disposition')?.trim().toLowerCase();
    const filename = element.attr('disposition-filename') ?? element.attr('Disposition-filename') ?? (uploadID !== undefined ? file?.fileName : undefined);
    let disposition: string | undefined = dispositionAttr;
    if (disposition === 'none') disposition = undefined;
    else if (!disposition && (file || filename)) disposition = 'attachment';
    if (disposition && !TOKEN.test(disposition)) fail(`invalid disposition "${disposition}"`);
    if (dispositionAttr !== 'none' && filename) {
      params.unshift(['name', filename]);
      dispositionParams.unshift(['filename', filename]);
    } else if (dispositionAttr !== 'none' && typeName) {
      // A Type-name attribute (as folderRead presents it) without a file name.
      params.unshift(['name', typeName]);
    }

    let data: Buffer;
    let charset: string | undefined;
    let format: string | undefined;
    let encoding: string | undefined;
    if (type === 'text') {
      charset = (element.attr('charset') ?? file?.charset ?? 'utf-8').trim().toLowerCase();
      if (file) {
        data = file.data.indexOf(0) < 0 ? bufferToCrlf(file.data) : file.data;
      } else {
        const vCards = childElements.length > 0 && isVCardSubtype(subtype);
        const calendar = childElements.length > 0 && subtype === 'calendar';
        if (childElements.length > 0 && !isXmlSubtype(subtype) && !vCards && !calendar) fail(`unexpected element <${childElements[0]!.name}> in a text/${subtype} MIME element`);
        // vCard, vCardGroup and iCalendar elements become their text ("XML Data Formats").
        let text = vCards
          ? vCardPartText(subtype, childElements)
          : calendar
            ? calendarPartText(childElements)
            : childElements.length > 0
              ? childElements.map((c) => serialize(c)).join('')
              : element.text();
        text = text.replace(/\r\n?/g, '\n');
        if ((element.attr('format') ?? '').toLowerCase() === 'flowed') {
          format = 'flowed';
          // Trailing spaces would read as soft breaks; "-- " is the one line that keeps its space.
          text = libmime.encodeFlowed(text.split('\n').map((l) => (l === '-- ' ? l : l.replace(/ +$/, ''))).join('\n'));
        }
        const encoded = encodeText(toCrlf(text), charset);
        if (!encoded) fail(`unknown charset "${charset}"`);
        data = encoded;
      }
      if (data.indexOf(0) >= 0) encoding = 'base64';
      else encoding = fits8bit(data) && !(this.options.sevenBit && !isAscii(data)) ? '8bit' : 'quoted-printable';
    } else if (type === 'message') {
      if (file) data = file.data;
      else if (childElements.length > 0) {
        if (childElements.length !== 1 || childElements[0]!.name !== 'EMail') fail(`unexpected element <${childElements[0]!.name}> in a message/${subtype} MIME element`);
        data = await this.message(childElements[0]!, false, false, depth + 1);
      } else data = Buffer.from(toCrlf(element.text()), 'utf8');
      // message/* may not be base64 or quoted-printable encoded (RFC 2046 5.2).
      encoding = fits8bit(data) ? (isAscii(data) ? undefined : '8bit') : 'binary';
    } else {
      if (file) data = file.data;
      else if (childElements.length > 0) {
        if (!isXmlSubtype(subtype)) fail(`unexpected element <${childElements[0]!.name}> in a ${type}/${subtype} MIME element`);
        data = Buffer.from(toCrlf(childElements.map((c) => serialize(c)).join('')), 'utf8');
      } else {
        // Binary data cannot travel in XML text: an inline non-text body is base64.
        data = strictBase64(element.text(), `the ${type}/${subtype} MIME element`);
      }
      encoding = 'base64';
    }

    const typeParams: [string, string][] = [];
    if (format) typeParams.push(['format', format]);
    if (charset) typeParams.push(['charset', charset]);
    const header = contentHeader({ type, subtype, params: [...typeParams, ...params], disposition, dispositionParams, encoding, extra });
    let body: Buffer;
    if (encoding === 'base64') body = Buffer.from(base64.wrap(base64.encode(data), 76) + '\r\n', 'latin1');
    else if (encoding === 'quoted-printable') body = Buffer.from(qp.wrap(qp.encode(data), 76), 'latin1');
    else body = data;
    return { header, body };
  }
}

/**
 * Builds the RFC 822 text of an EMail element (messageAppend, messageSubmit). Resolver
 * errors propagate; bad input is a ServiceError with code 500.
 */
export async function composeMessage(email: XmlElement, resolver: PartResolver, options: ComposeOptions): Promise<Buffer> {
  return new Composer(resolver, options).message(email, options.addMissing, options.omitBcc, 0);
}
