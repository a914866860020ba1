/**
 * vCard text (3.0, RFC 2426; 4.0, RFC 6350) and the seed system's text/x-vgroup form
 * (BEGIN:VGROUP … END:VGROUP with the same content-line syntax) ↔ the model (model.ts).
 *
 * Reading goes through ical.js, which unfolds, splits parameters and values and knows the
 * value types of both vCard versions; writing is done here (it is short): parameters
 * quoted where needed, text values escaped (`\\ \n \, \;`), lines folded at 75 octets
 * without splitting a UTF-8 sequence, CRLF line ends.
 */
import ICAL from 'ical.js';
import { decodeBytes } from '../mime/charset.js';
import { VCardFormatError, type VObject, type VParam, type VProperty, type VValue } from './model.js';

/** Properties whose value is a media object (binary data or a reference). */
const MEDIA = new Set(['PHOTO', 'LOGO', 'SOUND', 'KEY']);
/** Properties whose default value type is a URI, per version: VALUE=uri is written for the others. */
const URI_DEFAULT_3 = new Set(['URL', 'SOURCE', 'FBURL', 'CALURI', 'CALADRURI', 'CAPURI']);
const URI_DEFAULT_4 = new Set([
  'URL', 'SOURCE', 'PHOTO', 'LOGO', 'SOUND', 'KEY', 'UID', 'MEMBER', 'IMPP', 'GEO', 'RELATED', 'FBURL', 'CALURI', 'CALADRURI',
]);
/** Properties that are URIs by default in 3.0 or 4.0 (others say VALUE=uri; so does their XML). */
export function uriByDefault(name: string): boolean {
  return URI_DEFAULT_3.has(name) || URI_DEFAULT_4.has(name);
}
/** Date and time properties: written in the basic ISO 8601 form in 4.0. */
const DATES = new Set(['BDAY', 'ANNIVERSARY', 'REV', 'DEATHDATE', 'BIRTHDATE']);
/** Image and key formats named by TYPE in 3.0 and the media types 4.0 data: URIs carry. */
const MEDIA_TYPES: Record<string, string> = {
  JPEG: 'image/jpeg',
  JPG: 'image/jpeg',
  PNG: 'image/png',
  GIF: 'image/gif',
  BMP: 'image/bmp',
  TIFF: 'image/tiff',
  X509: 'application/pkix-cert',
  PGP: 'application/pgp-keys',
  WAVE: 'audio/wav',
  BASIC: 'audio/basic',
  MP3: 'audio/mpeg',
};

const NAME = /^[A-Za-z0-9-]+$/;

/**
 * ical.js's vCard text type leaves `\;` escaped in unstructured values (its unescaping
 * handles `\\ \, \n` only), so that `\;` and `\\;` read the same. Values are split at
 * unescaped separators before this runs, so every escape can be undone here: one pass, in
 * both vCard design sets (only those; the iCalendar set is left as it is).
 */
for (const set of [ICAL.design.vcard, ICAL.design.vcard3]) {
  const text = set.value['text'] as { fromICAL?: (value: string, structuredEscape?: string) => string } | undefined;
  if (text) text.fromICAL = (value: string) => (value.includes('\\') ? unescapeRaw(value) : value);
}

// -----------------------------------------------------------------------------------------
// Reading

/** `\n`, `\,`, `\;`, `\\` of a raw value ical.js left alone (unknown value types, X- properties). */
function unescapeRaw(raw: string): string {
  return raw.replace(/\\([nN,;\\:])/g, (_m, c: string) => (c === 'n' || c === 'N' ? '\n' : c));
}

function asStrings(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((v) => String(v));
  return [String(value)];
}

function propertyFromJCard(entry: unknown[]): VProperty {
  const [rawName, rawParams, type, ...values] = entry as [string, Record<string, unknown>, string, ...unknown[]];
  const name = String(rawName).toUpperCase();
  const property: VProperty = { name, types: [], params: [], value: { kind: 'text', values: [''] } };
  let encoding: string | undefined;
  for (const [key, value] of Object.entries(rawParams ?? {})) {
    const upper = key.toUpperCase();
    if (upper === 'GROUP') property.group = String(value);
    else if (upper === 'TYPE') property.types.push(...asStrings(value).flatMap((v) => v.split(',')).filter((v) => v !== ''));
    else if (upper === 'ENCODING') encoding = String(value).toLowerCase();
    else if (upper === 'VALUE' || upper === 'CHARSET') continue;
    else property.params.push({ name: upper, values: asStrings(value) });
  }
  property.value = valueFromJCard(name, type, values, encoding);
  return property;
}

function valueFromJCard(name: string, type: string, values: unknown[], encoding: string | undefined): VValue {
  if (values.length === 0) return { kind: 'text', values: [''] };
  const first = values[0];
  if (type === 'binary' || encoding === 'b' || encoding === 'base64') {
    const base64 = String(first).replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) throw new VCardFormatError(`${name}: invalid base64 data`);
    return { kind: 'binary', base64 };
  }
  if (type === 'uri' && typeof first === 'string') {
    const data = /^data:([^,;]*)((?:;[^,;]*)*?);base64,(.*)$/is.exec(first);
    if (data) {
      const base64 = data[3]!.replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) throw new VCardFormatError(`${name}: invalid base64 data`);
      return data[1] ? { kind: 'binary', base64, mediaType: data[1].toLowerCase() } : { kind: 'binary', base64 };
    }
    // ical.js reads some properties as URIs by default (a 4.0 TEL): without a scheme it is text.
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(first)) return { kind: 'text', values: values.map((v) => String(v)) };
    return { kind: 'uri', uri: first };
  }
  if (values.length === 1 && Array.isArray(first)) {
    return { kind: 'structured', components: first.map((c) => asStrings(c)) };
  }
  if (type === 'unknown') {
    return { kind: 'text', values: values.map((v) => unescapeRaw(String(v))) };
  }
  return { kind: 'text', values: values.map((v) => (Array.isArray(v) ? v.join(';') : String(v))) };
}

/** The index of the first `:` of a content line outside of a quoted parameter value (vCard and iCalendar alike). */
export function valueColon(line: string): number {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') quoted = !quoted;
    else if (c === ':' && !quoted) return i;
  }
  return -1;
}

function decodeQuotedPrintable(value: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const hex = value[i] === '=' ? /^[0-9A-Fa-f]{2}$/.exec(value.slice(i + 1, i + 3)) : null;
    if (hex) {
      bytes.push(parseInt(hex[0], 16));
      i += 2;
    } else bytes.push(...Buffer.from(value[i]!, 'utf8'));
  }
  return Buffer.from(bytes);
}

/**
 * vCard 2.1 (old phones, Outlook, the seed system's oldStyle export) in 3.0 syntax, for
 * ical.js: bare parameters (`TEL;WORK;VOICE`) become TYPE values, QUOTED-PRINTABLE values
 * (with their soft line breaks and CHARSET) are decoded, BASE64 becomes ENCODING=b.
 */
function from21(text: string): string {
  const raw = text.split(/\r\n|\n|\r/);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    let line = raw[i]!;
    if (/^[ \t]/.test(line) || line === '') {
      // Folded lines continue; 2.1 ends base64 values with an empty line.
      if (line !== '') out.push(line);
      continue;
    }
    const colon = valueColon(line);
    if (colon < 0) {
      out.push(line);
      continue;
    }
    const [name, ...params] = line.slice(0, colon).split(';') as [string, ...string[]];
    if (/^VERSION$/i.test(name)) {
      out.push('VERSION:3.0');
      continue;
    }
    const kept: string[] = [];
    const types: string[] = [];
    let qp = false;
    let charset: string | undefined;
    for (const param of params) {
      const eq = param.indexOf('=');
      const key = (eq < 0 ? '' : param.slice(0, eq)).toUpperCase();
      const value = eq < 0 ? param : param.slice(eq + 1);
      if (key === '' || key === 'ENCODING') {
        if (/^quoted-printable$/i.test(value)) qp = true;
        else if (/^base64$/i.test(value) || /^b$/i.test(value)) kept.push('ENCODING=b');
        else if (!/^(7bit|8bit)$/i.test(value) && key === '') types.push(value);
      } else if (key === 'CHARSET') charset = value;
      else if (key === 'TYPE') types.push(...value.split(','));
      else kept.push(param);
    }
    let value = line.slice(colon + 1);
    if (qp) {
      while (value.endsWith('=') && i + 1 < raw.length) value = value.slice(0, -1) + raw[++i]!;
      value = decodeBytes(decodeQuotedPrintable(value), charset ?? 'utf-8').replace(/\r\n|\n|\r/g, '\\n');
    }
    out.push([name, ...(types.length > 0 ? ['TYPE=' + types.join(',')] : []), ...kept].join(';') + ':' + value);
  }
  return out.join('\r\n') + '\r\n';
}

/** The one vCard or vCardGroup of `text` (a malformed text is a VCardFormatError). */
export function parseVObject(text: string): VObject {
  const source = text.replace(/^\uFEFF/, '');
  if (!/^\s*BEGIN:(VCARD|VGROUP)\s*(\r\n|\n|\r)/i.test(source)) throw new VCardFormatError('the text does not begin with BEGIN:VCARD');
  let parsed: unknown;
  try {
    const modern = /^VERSION:2\.1[ \t]*$/im.test(source) ? from21(source) : source;
    parsed = ICAL.parse(modern.endsWith('\n') ? modern : modern + '\r\n');
  } catch (err) {
    throw new VCardFormatError(err instanceof Error ? err.message : String(err));
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new VCardFormatError('no vCard found');
  // Several components come as an array of them.
  if (Array.isArray(parsed[0])) {
    if (parsed.length !== 1) throw new VCardFormatError('more than one vCard where one is expected');
    parsed = parsed[0];
  }
  const [kind, props] = parsed as [string, unknown[][], unknown[]];
  const properties: VProperty[] = [];
  let version = '3.0';
  for (const entry of props) {
    if (String(entry[0]).toLowerCase() === 'version') {
      version = String(entry[3]);
      continue;
    }
    properties.push(propertyFromJCard(entry));
  }
  if (kind === 'vgroup') return { kind: 'vgroup', properties };
  if (kind !== 'vcard') throw new VCardFormatError(`unexpected component ${kind}`);
  if (version !== '3.0' && version !== '4.0') throw new VCardFormatError(`unsupported vCard version ${version}`);
  return { kind: 'vcard', version, properties };
}

export interface CardText {
  /** 1-based position of the card in the file. */
  index: number;
  /** 1-based line number where it begins. */
  line: number;
  text: string;
}

export interface CardProblem {
  index: number;
  line: number;
  reason: string;
}

/**
 * Splits a .vcf file into its cards (BEGIN:VCARD … END:VCARD, nested cards — AGENT —
 * kept inside theirs). Text outside of cards other than blank lines, and a card that
 * never ends, are problems.
 */
export function splitCards(text: string): { cards: CardText[]; problems: CardProblem[] } {
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  const cards: CardText[] = [];
  const problems: CardProblem[] = [];
  let depth = 0;
  let start = 0;
  let collected: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim().toUpperCase();
    if (depth === 0) {
      if (trimmed === '') continue;
      if (trimmed === 'BEGIN:VCARD' || trimmed === 'BEGIN:VGROUP') {
        depth = 1;
        start = i;
        collected = [line];
        continue;
      }
      problems.push({ index: cards.length + problems.length + 1, line: i + 1, reason: `text outside of a vCard: "${line.slice(0, 40)}"` });
      // Skip to the next card.
      while (i + 1 < lines.length && !/^\s*BEGIN:V(CARD|GROUP)\s*$/i.test(lines[i + 1]!)) i++;
      continue;
    }
    collected.push(line);
    if (/^BEGIN:/i.test(trimmed) && !/^[ \t]/.test(line)) depth++;
    else if (/^END:/i.test(trimmed) && !/^[ \t]/.test(line)) depth--;
    if (depth === 0) cards.push({ index: cards.length + problems.length + 1, line: start + 1, text: collected.join('\r\n') + '\r\n' });
  }
  if (depth > 0) problems.push({ index: cards.length + problems.length + 1, line: start + 1, reason: 'the vCard has no END line' });
  return { cards, problems };
}

// -----------------------------------------------------------------------------------------
// Writing

export type VCardVersion = '3.0' | '4.0';

/** Escapes a text value (RFC 6350 3.4; the same in 3.0). */
export function escapeValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\r\n|\n|\r/g, '\\n').replace(/,/g, '\\,').replace(/;/g, '\\;');
}

function paramValue(value: string): string {
  // DQUOTE and controls cannot appear in a parameter value (3.0 has no escape for them).
  const clean = value.replace(/"/g, "'").replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return /[,;:\s]/.test(clean) ? `"${clean}"` : clean;
}

function safeName(name: string, what: string): string {
  if (!NAME.test(name)) throw new VCardFormatError(`invalid ${what} name "${name}"`);
  return name;
}

/** Folds a content line at 75 octets (continuation lines begin with one space). */
export function foldLine(line: string): string {
  if (Buffer.byteLength(line, 'utf8') <= 75) return line + '\r\n';
  let out = '';
  let current = '';
  let bytes = 0;
  let limit = 75;
  for (const ch of line) {
    const size = Buffer.byteLength(ch, 'utf8');
    if (bytes + size > limit) {
      out += current + '\r\n ';
      current = '';
      bytes = 0;
      limit = 74;
    }
    current += ch;
    bytes += size;
  }
  return out + current + '\r\n';
}

/** True when ical.js reads this property's value as a URI unless told otherwise (then it is left escaped). */
function readsAsUri(name: string, version: VCardVersion): boolean {
  const set = version === '4.0' ? ICAL.design.vcard : ICAL.design.vcard3;
  const property = (set.property as Record<string, { defaultType?: string } | undefined>)[name.toLowerCase()];
  return property?.defaultType === 'uri';
}

function basicDate(text: string): string {
  // 1990-01-02 / 1990-01-02T10:10:10Z / --01-02 -> 19900102 / 19900102T101010Z / --0102
  if (!/^(\d{4}|--)(-?\d{2}){0,2}(T[\d:]+(\.\d+)?(Z|[+-][\d:]+)?)?$/.test(text)) return text;
  const [date, time] = text.split('T') as [string, string | undefined];
  const d = date.startsWith('--') ? '--' + date.slice(2).replace(/-/g, '') : date.replace(/-/g, '');
  return time === undefined ? d : `${d}T${time.replace(/:/g, '')}`;
}

function mediaTypeOf(property: VProperty): { mediaType: string; fromTypes: boolean } {
  if (property.value.kind === 'binary' && property.value.mediaType) return { mediaType: property.value.mediaType, fromTypes: false };
  for (const t of property.types) {
    if (t.includes('/')) return { mediaType: t.toLowerCase(), fromTypes: true };
    const known = MEDIA_TYPES[t.toUpperCase()];
    if (known) return { mediaType: known, fromTypes: true };
  }
  return { mediaType: 'application/octet-stream', fromTypes: false };
}

function contentLine(property: VProperty, version: VCardVersion): string {
  let types = [...property.types];
  const params: VParam[] = [...property.params];
  const value = property.value;
  let text: string;
  switch (value.kind) {
    case 'text': {
      let values = value.values;
      if (version === '4.0' && DATES.has(property.name)) values = values.map(basicDate);
      // What ical.js reads as a URI by default is not unescaped: written as it is.
      text = readsAsUri(property.name, version) ? values.map((v) => v.replace(/[\r\n]+/g, ' ')).join(',') : values.map(escapeValue).join(',');
      break;
    }
    case 'structured':
      text = value.components.map((c) => c.map(escapeValue).join(',')).join(';');
      break;
    case 'binary':
      if (version === '3.0') {
        params.unshift({ name: 'ENCODING', values: ['b'] });
        if (types.length === 0 && value.mediaType) {
          const sub = value.mediaType.split('/')[1] ?? '';
          if (NAME.test(sub)) types = [sub.toUpperCase()];
        }
        text = value.base64;
      } else {
        const { mediaType, fromTypes } = mediaTypeOf(property);
        if (fromTypes) types = types.filter((t) => !t.includes('/') && !MEDIA_TYPES[t.toUpperCase()]);
        text = `data:${mediaType};base64,${value.base64}`;
      }
      break;
    case 'uri':
      text = value.uri.replace(/[\r\n]+/g, '');
      if (!(version === '3.0' ? URI_DEFAULT_3 : URI_DEFAULT_4).has(property.name)) params.unshift({ name: 'VALUE', values: ['uri'] });
      break;
  }
  let line = (property.group ? safeName(property.group, 'group') + '.' : '') + safeName(property.name, 'property');
  if (types.length > 0) line += ';TYPE=' + types.map(paramValue).join(',');
  for (const p of params) line += ';' + safeName(p.name, 'parameter') + '=' + p.values.map(paramValue).join(',');
  return foldLine(line + ':' + text);
}

/**
 * The text of a vCard (3.0 by default, or 4.0) or of a vCardGroup (BEGIN:VGROUP). An
 * invalid property, group or parameter name is a VCardFormatError.
 */
export function writeVObject(object: VObject, version: VCardVersion = '3.0'): string {
  const begin = object.kind === 'vcard' ? 'VCARD' : 'VGROUP';
  let out = `BEGIN:${begin}\r\n`;
  if (object.kind === 'vcard') out += `VERSION:${version}\r\n`;
  for (const property of object.properties) {
    if (property.name === 'VERSION') continue;
    if (version === '4.0' && object.kind === 'vcard' && MEDIA.has(property.name) && property.value.kind === 'text' && property.value.values.join('') === '') continue;
    out += contentLine(property, version);
  }
  return out + `END:${begin}\r\n`;
}

// -----------------------------------------------------------------------------------------
// vCard 2.1 (the Export URL's oldStyle): what old address books and phones import

/** Quoted-printable of UTF-8 text, soft line breaks so that no line passes 76 characters. */
function quotedPrintable(text: string, startColumn: number): string {
  let out = '';
  let column = startColumn;
  for (const byte of Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8')) {
    const piece = (byte >= 33 && byte <= 126 && byte !== 61) || byte === 32 ? String.fromCharCode(byte) : `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    if (column + piece.length > 75) {
      out += '=\r\n';
      column = 0;
    }
    out += piece;
    column += piece.length;
  }
  // A space at the end of a line would be lost in transport.
  return out.endsWith(' ') ? out.slice(0, -1) + '=20' : out;
}

/** A value of 2.1: `;` separates components and is escaped inside them; nothing else is. */
function value21(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/;/g, '\\;');
}

/** A 2.1 parameter value: no quoting in 2.1, so the characters that would end it are dropped. */
function param21(value: string): string {
  return value.replace(/[;:,"\u0000-\u001f\u007f]+/g, ' ').trim();
}

/**
 * The text of a vCard in vCard 2.1 (UTF-8): TYPE values as bare parameters (`TEL;WORK;VOICE:`),
 * text with line breaks or non-ASCII characters as CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE,
 * binary values as ENCODING=BASE64 (lines indented, then an empty line), references as
 * VALUE=URL. A vCardGroup has no 2.1 form: VCardFormatError.
 */
export function writeVCard21(object: VObject): string {
  if (object.kind !== 'vcard') throw new VCardFormatError('a vCardGroup has no vCard 2.1 form');
  let out = 'BEGIN:VCARD\r\nVERSION:2.1\r\n';
  for (const property of object.properties) {
    if (property.name === 'VERSION') continue;
    let head = (property.group ? safeName(property.group, 'group') + '.' : '') + safeName(property.name, 'property');
    for (const t of property.types) {
      const type = param21(t);
      if (type !== '') head += ';' + type.toUpperCase();
    }
    for (const p of property.params) head += ';' + safeName(p.name, 'parameter') + '=' + p.values.map(param21).join(',');
    const v = property.value;
    if (v.kind === 'binary') {
      let type = '';
      if (property.types.length === 0 && v.mediaType) {
        const sub = (v.mediaType.split('/')[1] ?? '').toUpperCase();
        if (NAME.test(sub)) type = ';' + sub;
      }
      const lines = v.base64.match(/.{1,72}/g) ?? [''];
      out += `${head}${type};ENCODING=BASE64:\r\n` + lines.map((l) => ` ${l}\r\n`).join('') + '\r\n';
      continue;
    }
    if (v.kind === 'uri') {
      out += foldLine(`${head};VALUE=URL:${v.uri.replace(/[\r\n]+/g, '')}`);
      continue;
    }
    const text = v.kind === 'text' ? v.values.map(value21).join(',') : v.components.map((c) => c.map(value21).join(',')).join(';');
    if (/[^\x20-\x7e]/.test(text)) {
      const start = `${head};CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:`;
      out += start + quotedPrintable(text, start.length) + '\r\n';
    } else {
      out += foldLine(`${head}:${text}`);
    }
  }
  return out + 'END:VCARD\r\n';
}

