/**
 * Parameterised field values (Content-Type, Content-Disposition) with RFC 2231 parameter
 * continuations and charsets.
 *
 * Hand-written rather than a library's parseHeaderValue: libmime's trims quoted values, so the
 * continuation `filename*0="long name "; filename*1="part.pdf"` loses its space; nodemailer's
 * (mime-funcs) lets the plain parameter win over its RFC 2231 form, so the common
 * `filename="fallback"; filename*=UTF-8''real` names the fallback; neither can see raw 8-bit
 * bytes. Input is a header value as the parser keeps it (raw bytes carried as latin1
 * characters, see parse.ts).
 */
import { decodeBytes, decodeRawHeader } from './charset.js';
import { decodeHeaderText } from './headers.js';

export interface StructuredValue {
  /** The value before the first ';', trimmed, comments removed; not lower-cased. */
  value: string;
  /** Parameters by lower-case name, decoded. */
  params: Record<string, string>;
}

interface RawParam {
  key: string;
  value: string;
}

function isWsp(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

/** Splits `value; a=1; b="x;y"` into the value and raw (unquoted, undecoded) parameters. */
function tokenize(text: string): { value: string; params: RawParam[] } {
  let i = 0;
  const n = text.length;
  let quote = false;
  while (i < n) {
    const c = text[i]!;
    if (c === '"') quote = !quote;
    else if (c === ';' && !quote) break;
    i++;
  }
  const value = text.slice(0, i).replace(/\([^()]*\)/g, '').trim();
  const params: RawParam[] = [];
  while (i < n) {
    while (i < n && (text[i] === ';' || isWsp(text[i]!))) i++;
    const keyStart = i;
    while (i < n && text[i] !== '=' && text[i] !== ';') i++;
    const key = text.slice(keyStart, i).trim().toLowerCase();
    if (i >= n || text[i] === ';') {
      if (key) params.push({ key, value: '' });
      continue;
    }
    i++; // '='
    while (i < n && isWsp(text[i]!)) i++;
    let v = '';
    if (text[i] === '"') {
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < n) i++;
        v += text[i];
        i++;
      }
      i++; // closing quote
      while (i < n && text[i] !== ';') i++; // junk after the quoted string
    } else {
      const start = i;
      while (i < n && text[i] !== ';') i++;
      v = text.slice(start, i).trim();
    }
    if (key) params.push({ key, value: v });
  }
  return { value, params };
}

function percentDecode(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 37 && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c > 0xff) {
      for (const b of Buffer.from(text[i]!, 'utf8')) bytes.push(b);
    } else bytes.push(c);
  }
  return Buffer.from(bytes);
}

function plainValue(value: string): string {
  // RFC 2047 words are not allowed in parameters, but Outlook and others write them.
  return value.includes('=?') ? decodeHeaderText(value) : decodeRawHeader(value);
}

interface Piece {
  index: number;
  extended: boolean;
  value: string;
}

/** Parses a parameterised value. Never throws. */
export function parseStructured(text: string): StructuredValue {
  const { value, params: raw } = tokenize(text);
  const params: Record<string, string> = {};
  const continued = new Map<string, Piece[]>();
  for (const p of raw) {
    const m = /^(.+?)\*(\d{1,3})?(\*)?$/.exec(p.key);
    if (!m) {
      if (!(p.key in params)) params[p.key] = plainValue(p.value);
      continue;
    }
    const name = m[1]!;
    const index = m[2] === undefined ? 0 : +m[2];
    const extended = m[3] !== undefined || m[2] === undefined; // "name*" is extended
    let list = continued.get(name);
    if (!list) continued.set(name, (list = []));
    if (!list.some((x) => x.index === index)) list.push({ index, extended, value: p.value });
  }
  for (const [name, pieces] of continued) {
    pieces.sort((a, b) => a.index - b.index);
    let charset: string | undefined;
    const chunks: Buffer[] = [];
    pieces.forEach((piece, i) => {
      let v = piece.value;
      if (piece.extended) {
        if (i === 0) {
          // charset'language'percent-encoded
          const m = /^([^']*)'[^']*'(.*)$/s.exec(v);
          if (m) {
            charset = m[1] || undefined;
            v = m[2]!;
          }
        }
        chunks.push(percentDecode(v));
      } else {
        chunks.push(Buffer.from(v, 'latin1'));
      }
    });
    const bytes = Buffer.concat(chunks);
    const decoded = charset ? decodeBytes(bytes, charset) : plainValue(bytes.toString('latin1'));
    // The RFC 2231 form wins over a plain parameter of the same name.
    params[name] = decoded;
  }
  return { value, params };
}
