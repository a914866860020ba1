/**
 * The character classes and the small scanner that the SIP grammar (RFC 3261 25.1) is read
 * with. Everything walks a string once, character by character: no regular expression runs
 * over text that came from a peer, so no input can make parsing slower than linear.
 */
import { malformed } from './error.js';

/** A 128-entry table of which ASCII characters a class holds. */
export type CharClass = Uint8Array;

function charClass(...parts: string[]): CharClass {
  const table = new Uint8Array(128);
  for (const part of parts) for (let i = 0; i < part.length; i++) table[part.charCodeAt(i)] = 1;
  return table;
}

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const MARK = "-_.!~*'()";
/** unreserved = alphanum / mark */
export const UNRESERVED = charClass(ALPHANUM, MARK);
/** token: what method names, header names and parameter names are made of. */
export const TOKEN = charClass(ALPHANUM, "-.!%*_+`'~");
/** The user part of a SIP URI, escapes aside: unreserved / user-unreserved. */
export const USER = charClass(ALPHANUM, MARK, '&=+$,;?/');
/** The password of a SIP URI, escapes aside. */
export const PASSWORD = charClass(ALPHANUM, MARK, '&=+$,');
/** URI parameter names and values, escapes aside: param-unreserved / unreserved. */
export const PARAM = charClass(ALPHANUM, MARK, '[]/:&+$');
/** URI header names and values, escapes aside: hnv-unreserved / unreserved. */
export const HNV = charClass(ALPHANUM, MARK, '[]/?:+$');
/** A host name's characters (its structure is checked apart), and an IPv6 reference's. */
export const HOST = charClass(ALPHANUM, '-.[]:');
/** word: what a Call-ID is made of (callid = word [ "@" word ]). */
export const WORD = charClass(ALPHANUM, "-.!%*_+`'~()<>:\\\"/[]?{}");
const HEX = charClass('0123456789ABCDEFabcdef');
const DIGITS = charClass('0123456789');

export function isIn(table: CharClass, code: number): boolean {
  return code < 128 && table[code] === 1;
}

/** Whether every character of `s` is in `table`, or is a %HH escape when `escapes` is set. */
export function allIn(s: string, table: CharClass, escapes = false): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (escapes && c === 0x25) {
      if (i + 2 >= s.length || !isIn(HEX, s.charCodeAt(i + 1)) || !isIn(HEX, s.charCodeAt(i + 2))) return false;
      i += 2;
    } else if (!isIn(table, c)) return false;
  }
  return true;
}

export function isToken(s: string): boolean {
  return s.length > 0 && allIn(s, TOKEN);
}

export function isDigits(s: string): boolean {
  return s.length > 0 && allIn(s, DIGITS);
}

/**
 * An unsigned decimal no larger than `max`, or undefined. Leading zeros are allowed (the
 * grammar is 1*DIGIT) but the digits are bounded before Number() sees them.
 */
export function parseBoundedInt(s: string, max: number): number | undefined {
  if (!isDigits(s)) return undefined;
  let start = 0;
  while (start < s.length - 1 && s.charCodeAt(start) === 0x30) start++;
  if (s.length - start > 16) return undefined;
  const n = Number(s.slice(start));
  return n <= max ? n : undefined;
}

/** %HH escapes decoded (as UTF-8 bytes: an escaped NUL stays a NUL); `s` is known well-formed. */
export function unescape(s: string): string {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      // Only ASCII reaches here: the character classes admit nothing else.
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * `s` without the spaces and tabs around it. Not String.trim(): that also takes vertical tabs,
 * form feeds and Unicode spaces, and a header name "To<VT>" must not become "To" (a proxy
 * that forwards it as unknown and an element that reads it as To would disagree).
 */
export function trimLws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s.charCodeAt(start) === 0x20 || s.charCodeAt(start) === 0x09)) start++;
  while (end > start && (s.charCodeAt(end - 1) === 0x20 || s.charCodeAt(end - 1) === 0x09)) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/**
 * A cursor over one header value. SIP's separators (HCOLON, SEMI, EQUAL, COMMA, SLASH, LAQUOT,
 * RAQUOT) allow linear white space on both sides; folding is already undone when a value gets
 * here, so LWS is spaces and tabs.
 */
export class Scanner {
  pos = 0;

  constructor(readonly text: string) {}

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  peek(): string {
    return this.text.charAt(this.pos);
  }

  skipLws(): boolean {
    const start = this.pos;
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09) break;
      this.pos++;
    }
    return this.pos > start;
  }

  /** Consumes `ch` (with white space around it) when it is next. */
  eat(ch: string): boolean {
    const save = this.pos;
    this.skipLws();
    if (this.text.charAt(this.pos) === ch) {
      this.pos++;
      this.skipLws();
      return true;
    }
    this.pos = save;
    return false;
  }

  expect(ch: string, what: string): void {
    if (!this.eat(ch)) throw malformed(`${what}: "${ch}" expected`);
  }

  /** The longest run of characters in `table` (possibly empty). */
  readWhile(table: CharClass): string {
    const start = this.pos;
    while (this.pos < this.text.length && isIn(table, this.text.charCodeAt(this.pos))) this.pos++;
    return this.text.slice(start, this.pos);
  }

  readToken(what: string): string {
    const token = this.readWhile(TOKEN);
    if (token === '') throw malformed(`${what}: a token expected`);
    return token;
  }

  /** A quoted-string at the cursor, its quoted-pairs undone; UTF-8 is allowed inside. */
  readQuoted(what: string): string {
    if (this.text.charAt(this.pos) !== '"') throw malformed(`${what}: a quoted string expected`);
    let out = '';
    let i = this.pos + 1;
    let runStart = i;
    while (i < this.text.length) {
      const c = this.text.charCodeAt(i);
      if (c === 0x22) {
        out += this.text.slice(runStart, i);
        this.pos = i + 1;
        return out;
      }
      if (c === 0x5c) {
        // quoted-pair: any character but CR and LF
        const next = this.text.charCodeAt(i + 1);
        if (i + 1 >= this.text.length || next === 0x0d || next === 0x0a) break;
        out += this.text.slice(runStart, i) + this.text.charAt(i + 1);
        i += 2;
        runStart = i;
        continue;
      }
      if (c < 0x20 && c !== 0x09) throw malformed(`${what}: a control character in a quoted string`);
      i++;
    }
    throw malformed(`${what}: an unterminated quoted string`);
  }
}

/**
 * Splits on `separator` where it is outside quoted strings and `<...>`: how a header value
 * holding a list, or a parameter list, is cut (a comma inside a display name or a URI in angle
 * brackets belongs to it). Pieces are trimmed; an unterminated quote or bracket runs to the end.
 */
export function splitOutside(value: string, separator: string): string[] {
  const sep = separator.charCodeAt(0);
  const parts: string[] = [];
  let inQuotes = false;
  let inAngles = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (inQuotes) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inQuotes = false;
    } else if (inAngles) {
      if (c === 0x3e) inAngles = false;
    } else if (c === 0x22) inQuotes = true;
    else if (c === 0x3c) inAngles = true;
    else if (c === sep) {
      parts.push(trimLws(value.slice(start, i)));
      start = i + 1;
    }
  }
  parts.push(trimLws(value.slice(start)));
  return parts;
}

/**
 * The results of a pure reader of header values, by the value read: a message's From, To and
 * top Via are read by several layers (validation, transaction and dialog matching, routing),
 * and a dialog's later requests carry the same values again. Two generations of at most
 * `size` entries each (the older dropped when the newer fills), and only values of at most
 * `maxKey` characters, so that memory stays bounded whatever peers send. Only successful reads
 * are kept (a malformed value throws again, each time), and the results must be treated as
 * immutable (the readers' types are readonly).
 */
export class Memo<T> {
  private current = new Map<string, T>();
  private previous = new Map<string, T>();

  constructor(
    private readonly size: number,
    private readonly maxKey = 512,
  ) {}

  read(key: string, reader: (key: string) => T): T {
    let value = this.current.get(key);
    if (value !== undefined) return value;
    value = this.previous.get(key);
    if (value === undefined) {
      value = reader(key);
      if (key.length > this.maxKey) return value;
    }
    if (this.current.size >= this.size) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(key, value);
    return value;
  }
}
