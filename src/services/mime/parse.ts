/**
 * Structural MIME parser. It walks a raw RFC 822 message once, with Buffer.indexOf, and
 * records byte offsets instead of copying bodies, so that a 50 MB message costs little more
 * than its header text. It never throws: whatever does not parse is kept as it is and
 * described in `problems`.
 *
 * Raw header bytes. Header text is read with the 'latin1' decoding, one character per byte,
 * so a field value still holds the exact bytes that were written (raw 8-bit UTF-8 or
 * windows-1252 included). decodeHeaderText (headers.ts) turns such a value into real text.
 *
 * Part IDs (CommuniGate style, like IMAP section numbers with two-digit components):
 *  - the top part of the message has the id '';
 *  - the children of a multipart with id P are P-01, P-02, ... ('01', '02' at the top);
 *  - for a message/rfc822 part X, the enclosed message's body parts are numbered as IMAP
 *    does: a multipart body's children are, ... (the enclosed multipart itself
 *    has no id of its own, it carries X as its partID), a single-part body is X-01.
 */
import { decodeRawHeader } from './charset.js';
import { headerValue } from './fields.js';
import { decodeHeaderText } from './headers.js';
import { parseStructured } from './params.js';
import type { HeaderField, MimePart } from './types.js';

/** Deeper nesting than this is left unparsed: real mail never gets near it, attacks do. */
const MAX_DEPTH = 40;
/** More parts than this in one multipart are ignored, for the same reason. */
const MAX_CHILDREN = 10000;

interface HeaderScan {
  fields: HeaderField[];
  end: number;
  problem?: string;
}

function isWsp(c: number | undefined): boolean {
  return c === 32 || c === 9;
}

/** A field name is printable US-ASCII without the colon (RFC 5322 ftext). */
function validFieldName(raw: Buffer, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = raw[i]!;
    if (c < 33 || c > 126) return false;
  }
  return true;
}

/**
 * Reads header fields from raw[start, limit) up to the empty line. `end` is where the body
 * starts: after the empty line, at the first line that is not a field (recorded as a
 * problem), or at `limit` when the header runs to the end (a message without a body).
 */
function scanHeaders(raw: Buffer, start: number, limit: number, allowMboxFrom: boolean): HeaderScan {
  const fields: HeaderField[] = [];
  let current: HeaderField | undefined;
  let pos = start;
  while (pos < limit) {
    const lf = raw.indexOf(10, pos);
    const lineEnd = lf < 0 || lf >= limit ? limit : lf;
    const next = lineEnd < limit ? lineEnd + 1 : limit;
    let contentEnd = lineEnd;
    if (contentEnd > pos && raw[contentEnd - 1] === 13) contentEnd--;
    if (contentEnd === pos) return { fields, end: next };
    const first = raw[pos];
    if (isWsp(first)) {
      if (current) {
        // Unfolding removes the line break only; the white space stays.
        current.value += raw.toString('latin1', pos, contentEnd);
        pos = next;
        continue;
      }
    } else {
      // Searched within the line only: a long line without a colon must not scan the message.
      const found = raw.subarray(pos, contentEnd).indexOf(58);
      const colon = found < 0 ? -1 : pos + found;
      if (colon >= 0) {
        let nameEnd = colon;
        while (nameEnd > pos && isWsp(raw[nameEnd - 1])) nameEnd--; // obsolete "Name : value"
        if (validFieldName(raw, pos, nameEnd)) {
          current = { name: raw.toString('latin1', pos, nameEnd), value: raw.toString('latin1', colon + 1, contentEnd) };
          fields.push(current);
          pos = next;
          continue;
        }
      }
      // An mbox "From " separator line before the header is skipped.
      if (allowMboxFrom && fields.length === 0 && pos === start && raw.toString('latin1', pos, Math.min(pos + 5, contentEnd)) === 'From ') {
        pos = next;
        continue;
      }
    }
    return { fields, end: pos, problem: 'header not terminated by an empty line' };
  }
  return { fields, end: limit };
}

function finishFields(fields: HeaderField[]): HeaderField[] {
  for (const f of fields) f.value = f.value.trim();
  return fields;
}

/**
 * Reads only the header of a message (the append path). `end` is the body offset.
 * Values are unfolded and trimmed, still RFC 2047-encoded, raw bytes carried as latin1.
 */
export function parseHeaderBlock(raw: Buffer, start = 0): { fields: HeaderField[]; end: number } {
  const scan = scanHeaders(raw, start, raw.length, start === 0);
  return { fields: finishFields(scan.fields), end: scan.end };
}

const TYPE_DEFAULT_SUBTYPES: Record<string, string> = { text: 'plain', multipart: 'mixed', message: 'rfc822' };

function childID(parent: string, index: number): string {
  const n = String(index).padStart(2, '0');
  return parent ? parent + '-' + n : n;
}

function addProblem(part: MimePart, problem: string): void {
  (part.problems ??= []).push(problem);
}

/** Builds a MimePart from its header; `defaultType` applies when Content-Type is absent. */
function describePart(partID: string, headerStart: number, bodyStart: number, end: number, fields: HeaderField[], defaultType: string): MimePart {
  const part: MimePart = {
    partID,
    headerStart,
    bodyStart,
    end,
    headers: fields,
    type: 'text',
    subtype: 'plain',
    params: {},
    dispositionParams: {},
    encoding: '7bit',
    children: [],
  };
  const contentType = headerValue(fields, 'Content-Type');
  let typeValue = defaultType;
  if (contentType !== undefined) {
    const ct = parseStructured(contentType);
    part.params = ct.params;
    typeValue = ct.value.trim().toLowerCase().split(/[\s(]/)[0]!;
  }
  const slash = typeValue.indexOf('/');
  if (slash > 0 && slash < typeValue.length - 1) {
    part.type = typeValue.slice(0, slash);
    part.subtype = typeValue.slice(slash + 1);
  } else if (typeValue in TYPE_DEFAULT_SUBTYPES) {
    // "Content-Type: text" and the like
    part.type = typeValue;
    part.subtype = TYPE_DEFAULT_SUBTYPES[typeValue]!;
  } else {
    [part.type, part.subtype] = defaultType.split('/') as [string, string];
    addProblem(part, `invalid Content-Type "${decodeRawHeader(contentType ?? '')}"`);
  }
  const charset = part.params['charset']?.trim();
  if (charset) part.charset = charset.toLowerCase();

  const disposition = headerValue(fields, 'Content-Disposition');
  if (disposition !== undefined) {
    const cd = parseStructured(disposition);
    const value = cd.value.trim().toLowerCase();
    if (value) part.disposition = value;
    part.dispositionParams = cd.params;
  }
  const encoding = headerValue(fields, 'Content-Transfer-Encoding');
  if (encoding) part.encoding = encoding.trim().toLowerCase().split(/[\s;(]/)[0] || '7bit';

  const id = headerValue(fields, 'Content-ID');
  if (id) {
    const cid = decodeRawHeader(id).trim().replace(/^<|>$/g, '').trim();
    if (cid) part.contentID = cid;
  }
  const description = headerValue(fields, 'Content-Description');
  if (description) part.description = decodeHeaderText(description).trim();
  const location = headerValue(fields, 'Content-Location');
  if (location) part.location = decodeHeaderText(location).replace(/\s+/g, '').replace(/^<|>$/g, '');
  const contentClass = headerValue(fields, 'Content-Class');
  if (contentClass) part.contentClass = decodeRawHeader(contentClass).trim().replace(/^urn:/i, '').replace(/^content-classes:/i, '');
  return part;
}

/**
 * Parses the entity raw[start, end). `enclosedIn` is set for the top part of a message
 * inside a message/rfc822 part with that id (see the partID scheme above).
 */
function parseEntity(raw: Buffer, start: number, end: number, partID: string, defaultType: string, depth: number, enclosedIn?: string): MimePart {
  const scan = scanHeaders(raw, start, end, depth === 0);
  const part = describePart(partID, start, scan.end, end, finishFields(scan.fields), defaultType);
  if (enclosedIn !== undefined) part.partID = part.type === 'multipart' ? enclosedIn : childID(enclosedIn, 1);
  if (scan.problem && (scan.fields.length > 0 || depth === 0)) addProblem(part, scan.problem);
  else if (scan.problem) addProblem(part, 'part has no header');
  const isMessage = part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global');
  if (part.type !== 'multipart' && !isMessage) return part;
  if (depth >= MAX_DEPTH) {
    addProblem(part, 'MIME structure nested too deeply');
    return part;
  }
  if (part.type === 'multipart') parseMultipart(raw, part, depth);
  else if (part.encoding === '7bit' || part.encoding === '8bit' || part.encoding === 'binary') {
    part.message = parseEntity(raw, part.bodyStart, part.end, '', 'text/plain', depth + 1, part.partID);
  } else {
    // An encoded message/rfc822 is forbidden (RFC 2046 5.2.1); it is shown as opaque data.
    addProblem(part, `message/${part.subtype} with ${part.encoding} encoding is not parsed`);
  }
  return part;
}

interface Delimiter {
  at: number;
  next: number;
  close: boolean;
}

/** The next "--boundary" line in raw[from, limit) that starts a line and ends one. */
function findDelimiter(raw: Buffer, delim: Buffer, from: number, rangeStart: number, limit: number): Delimiter | undefined {
  let pos = from;
  while (pos < limit) {
    // Searched within the range only, so that a boundary missing from a small part does not
    // cost a scan of the rest of the message.
    const found = raw.subarray(pos, limit).indexOf(delim);
    if (found < 0) return undefined;
    const at = pos + found;
    pos = at + 1;
    if (at !== rangeStart && raw[at - 1] !== 10) continue;
    let q = at + delim.length;
    const close = q + 1 < limit && raw[q] === 45 && raw[q + 1] === 45;
    if (close) q += 2;
    while (q < limit && isWsp(raw[q])) q++; // transport padding
    if (q < limit && raw[q] !== 13 && raw[q] !== 10) continue; // a longer boundary, or text
    if (q < limit && raw[q] === 13) q++;
    if (q < limit && raw[q] === 10) q++;
    return { at, next: q, close };
  }
  return undefined;
}

/** A boundary for a multipart that lacks the parameter: its first line, when it looks like one. */
function guessBoundary(raw: Buffer, start: number, end: number): string | undefined {
  let pos = start;
  for (let lines = 0; lines < 5 && pos < end; lines++) {
    const lf = raw.indexOf(10, pos);
    const lineEnd = lf < 0 || lf >= end ? end : lf;
    const line = raw.toString('latin1', pos, Math.min(lineEnd, pos + 200)).trim();
    if (line.startsWith('--') && line.length > 3 && !/\s/.test(line)) return line.slice(2).replace(/--$/, '');
    if (line) return undefined;
    pos = lineEnd + 1;
  }
  return undefined;
}

function parseMultipart(raw: Buffer, part: MimePart, depth: number): void {
  let boundary: string | undefined = part.params['boundary'];
  if (!boundary) {
    boundary = guessBoundary(raw, part.bodyStart, part.end);
    addProblem(part, boundary ? 'missing boundary parameter (boundary guessed from the body)' : 'missing boundary parameter');
    if (!boundary) return;
  }
  const childType = part.subtype === 'digest' ? 'message/rfc822' : 'text/plain';
  const delim = Buffer.from('--' + boundary, 'utf8');
  let partStart = -1;
  let closed = false;
  let pos = part.bodyStart;
  for (;;) {
    const found = findDelimiter(raw, delim, pos, part.bodyStart, part.end);
    if (!found) break;
    if (partStart >= 0) {
      // The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
      let childEnd = found.at;
      if (childEnd > partStart && raw[childEnd - 1] === 10) childEnd--;
      if (childEnd > partStart && raw[childEnd - 1] === 13) childEnd--;
      addChild(raw, part, partStart, Math.max(childEnd, partStart), childType, depth);
    }
    if (found.close) {
      closed = true;
      break;
    }
    partStart = found.next;
    pos = found.next;
    if (part.children.length >= MAX_CHILDREN) {
      addProblem(part, 'too many parts');
      return;
    }
  }
  if (closed) {
    if (part.children.length === 0) addProblem(part, 'multipart without parts');
    return;
  }
  if (partStart >= 0) {
    addChild(raw, part, partStart, part.end, childType, depth);
    addProblem(part, 'missing closing boundary');
  } else {
    addProblem(part, `boundary "${boundary}" not found`);
  }
}

function addChild(raw: Buffer, parent: MimePart, start: number, end: number, defaultType: string, depth: number): void {
  const id = childID(parent.partID, parent.children.length + 1);
  parent.children.push(parseEntity(raw, start, end, id, defaultType, depth + 1));
}

/** Parses the structure of a whole message. Never throws. */
export function parseMime(raw: Buffer): MimePart {
  return parseEntity(raw, 0, raw.length, '', 'text/plain', 0);
}

/** Canonical form of a part id: '3' -> '03', '2-1' -> '02-01', '2.1' -> '02-01'. */
function normalizePartID(partID: string): string | undefined {
  const trimmed = partID.trim();
  if (trimmed === '') return '';
  const pieces = trimmed.split(/[-.]/);
  const out: string[] = [];
  for (const piece of pieces) {
    if (!/^\d{1,4}$/.test(piece) || +piece === 0) return undefined;
    out.push(String(+piece).padStart(2, '0'));
  }
  return out.join('-');
}

/**
 * The part with this id (padded or not), or undefined. On a single-part message '01' is the
 * message body itself, as IMAP's section 1 is.
 */
export function findPart(root: MimePart, partID: string): MimePart | undefined {
  const wanted = normalizePartID(partID);
  if (wanted === undefined) return undefined;
  if (wanted === '') return root;
  if (wanted === '01' && root.type !== 'multipart' && !root.message) return root;
  const stack: MimePart[] = [root];
  while (stack.length > 0) {
    const part = stack.pop()!;
    if (part.partID === wanted) return part;
    // Only descend where the id can be: a prefix of the wanted one.
    if (part.partID !== '' && !wanted.startsWith(part.partID + '-')) continue;
    if (part.message) stack.push(part.message);
    for (let i = part.children.length - 1; i >= 0; i--) stack.push(part.children[i]!);
  }
  return undefined;
}

/** Calls `visit` for every part, depth first, enclosed messages included. */
export function walkParts(root: MimePart, visit: (part: MimePart, inMessage: MimePart) => void): void {
  const stack: [MimePart, MimePart][] = [[root, root]];
  while (stack.length > 0) {
    const [part, message] = stack.pop()!;
    visit(part, message);
    for (let i = part.children.length - 1; i >= 0; i--) stack.push([part.children[i]!, message]);
    if (part.message) stack.push([part.message, part.message]);
  }
}
