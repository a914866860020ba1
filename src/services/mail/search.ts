/**
 * The `filter` of XIMSS `folderSearch`: IMAP SEARCH keys (RFC 3501 section 6.4.4, plus
 * OLDER/YOUNGER from RFC 5032) parsed once into a program that is then matched against
 * each message of the folder.
 *
 * Grammar accepted:
 *  - keys are case-insensitive atoms; several keys in a row are ANDed; `( ... )` groups;
 *    `NOT key` negates exactly one key and `OR key1 key2` takes exactly two, so
 *    `NOT A B` is `(NOT A) B` and `OR A B C` is `(OR A B) C`;
 *  - an optional leading `CHARSET x`, where x must be UTF-8 or US-ASCII;
 *  - arguments are atoms, quoted strings (escapes `\"` and `\\` only) or literals
 *    `{n}` / `{n+}` followed by CRLF (or a bare LF) and n characters (Unicode code points:
 *    the filter is already text, not octets);
 *  - dates are `d-Mon-yyyy` with a 1 or 2 digit day, bare or quoted;
 *  - sequence sets `1:5,7,9:*` for message numbers (bare) and UIDs (`UID set`), where `*`
 *    is options.maxSeq / options.maxUid.
 *
 * Matching: strings are case-insensitive substrings after toLowerCase + NFC (plus final
 * sigma folded to sigma); an empty string matches any message that has the header field
 * (HEADER, FROM, ...) or any message at all (BODY, TEXT). Date keys compare calendar dates
 * in options.timeZone: each date in the filter is turned once, at parse time, into the
 * UTC instants where that day starts and ends in the zone, so matching a message is two
 * number comparisons. BODY and TEXT see a message's text up to SEARCH_TEXT_BYTES (the
 * caller's bodyText(), see mime/text.ts), so no message costs more than that to match.
 */
import { headerInMeta } from './view-fields.js';

export class SearchSyntaxError extends Error {
  override readonly name = 'SearchSyntaxError';
}

export interface SearchableMessage {
  uid: number;
  /** 1-based position used for IMAP sequence numbers (the caller decides what it means). */
  seq: number;
  /** System flag names as XIMSS spells them: 'Seen','Answered','Flagged','Deleted','Draft','Recent', plus keywords as written. */
  flags: ReadonlySet<string>;
  internalDate: number; // ms since epoch
  size: number;
  /** Date header as ms since epoch, undefined when absent/unparseable. */
  sentDate: number | undefined;
  /** MIME-decoded values of every header field with this name (case-insensitive). */
  header(name: string): string[];
  /** The whole decoded header block (for TEXT). */
  headerText(): string;
  /** Decoded text of the body's text parts; only called when the program needs it. */
  bodyText(): string;
}

/** How a filter is read: the user's time zone (dates), the highest sequence number and UID (`*`). */
export interface SearchOptions {
  timeZone?: string;
  maxSeq?: number;
  maxUid?: number;
}

export interface SearchProgram {
  /** What the caller must load before matching: header fields other than those in the metadata, body text. */
  readonly needsHeaders: boolean;
  readonly needsBody: boolean;
  matches(message: SearchableMessage): boolean;
}

/** Nesting allowed for parentheses, NOT and the first operand of OR (OR chains in the second operand do not nest). */
const MAX_DEPTH = 100;
const DAY_MS = 86_400_000;
/** Wider than any offset a time zone has ever had, so a day's start is always inside the window. */
const ZONE_WINDOW_MS = 30 * 3_600_000;

const SYSTEM_FLAGS: ReadonlyMap<string, string> = new Map(
  ['Seen', 'Answered', 'Flagged', 'Deleted', 'Draft', 'Recent'].map((f) => [f.toLowerCase(), f]),
);

const MONTHS: ReadonlyMap<string, number> = new Map(
  ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'].map((m, i) => [m, i + 1]),
);

// ---------------------------------------------------------------------------------------
// Tokens

type TokenKind = 'atom' | 'string' | '(' | ')';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

const LITERAL = /\{(\d+)\+?\}(\r?\n)?/y;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** Anything but white space, parentheses, double quotes and control characters. */
function isAtomChar(c: number): boolean {
  return c > 0x20 && c !== 0x7f && c !== 0x28 && c !== 0x29 && c !== 0x22;
}

/** `text` for an error message: quoted, shortened, controls made visible. */
function show(text: string): string {
  const short = text.length > 40 ? text.slice(0, 40) + '...' : text;
  return JSON.stringify(short);
}

function tokenize(filter: string): Token[] {
  const tokens: Token[] = [];
  const n = filter.length;
  let i = 0;
  while (i < n) {
    const c = filter.charCodeAt(i);
    if (isSpace(c)) {
      i++;
    } else if (c === 0x28 || c === 0x29) {
      tokens.push({ kind: c === 0x28 ? '(' : ')', text: filter[i]! });
      i++;
    } else if (c === 0x22) {
      let text = '';
      let j = i + 1;
      let segment = j;
      for (;;) {
        if (j >= n) throw new SearchSyntaxError('unterminated quoted string');
        const d = filter.charCodeAt(j);
        if (d === 0x22) break;
        if (d === 0x5c) {
          if (j + 1 >= n) throw new SearchSyntaxError('unterminated quoted string');
          const escaped = filter[j + 1]!;
          if (escaped !== '"' && escaped !== '\\') {
            throw new SearchSyntaxError(`bad escape ${show('\\' + escaped)} in quoted string (only \\" and \\\\ are allowed)`);
          }
          text += filter.slice(segment, j) + escaped;
          j += 2;
          segment = j;
        } else {
          j++;
        }
      }
      tokens.push({ kind: 'string', text: text + filter.slice(segment, j) });
      i = j + 1;
    } else if (c < 0x20 || c === 0x7f) {
      throw new SearchSyntaxError(`unexpected control character U+${c.toString(16).toUpperCase().padStart(4, '0')}`);
    } else {
      LITERAL.lastIndex = i;
      const literal = c === 0x7b ? LITERAL.exec(filter) : null;
      if (literal) {
        if (!literal[2]) throw new SearchSyntaxError(`literal ${show(literal[0])} must be followed by CRLF`);
        const length = Number(literal[1]);
        const start = i + literal[0].length;
        let j = start;
        let count = 0;
        while (count < length && j < n) {
          j += filter.codePointAt(j)! > 0xffff ? 2 : 1;
          count++;
        }
        if (count < length) throw new SearchSyntaxError(`literal {${literal[1]}} is longer than the rest of the filter`);
        tokens.push({ kind: 'string', text: filter.slice(start, j) });
        i = j;
      } else {
        let j = i + 1;
        while (j < n && isAtomChar(filter.charCodeAt(j))) j++;
        tokens.push({ kind: 'atom', text: filter.slice(i, j) });
        i = j;
      }
    }
  }
  return tokens;
}

// ---------------------------------------------------------------------------------------
// Matching

/** Case-insensitive, normalisation-insensitive form of text for substring matching. */
function fold(text: string): string {
  const lower = text.toLowerCase();
  if (/^[\x00-\x7f]*$/.test(lower)) return lower;
  const normal = lower.normalize('NFC');
  return normal.includes('\u03c2') ? normal.replaceAll('\u03c2', '\u03c3') : normal;
}

/** One matches() call: the message plus the folded text already computed for it. */
class MatchContext {
  private headers: Map<string, readonly string[]> | undefined;
  private headerBlock: string | undefined;
  private body: string | undefined;

  constructor(readonly message: SearchableMessage) {}

  /** Folded values of a header field; `key` is the lower-cased name. */
  header(key: string, name: string): readonly string[] {
    this.headers ??= new Map();
    let values = this.headers.get(key);
    if (!values) {
      values = this.message.header(name).map(fold);
      this.headers.set(key, values);
    }
    return values;
  }

  headerText(): string {
    return (this.headerBlock ??= fold(this.message.headerText()));
  }

  bodyText(): string {
    return (this.body ??= fold(this.message.bodyText()));
  }
}

/** Relative cost of a test, so an AND or OR tries the cheap operands first. */
const Cost = { Metadata: 0, Envelope: 1, Header: 2, Body: 3 } as const;
type Cost = (typeof Cost)[keyof typeof Cost];

interface Pred {
  readonly cost: Cost;
  /** Set when the result does not depend on the message. */
  readonly constant?: boolean;
  readonly test: (context: MatchContext) => boolean;
}

const TRUE: Pred = { cost: Cost.Metadata, constant: true, test: () => true };
const FALSE: Pred = { cost: Cost.Metadata, constant: false, test: () => false };

function pred(cost: Cost, test: (context: MatchContext) => boolean): Pred {
  return { cost, test };
}

function not(p: Pred): Pred {
  if (p.constant !== undefined) return p.constant ? FALSE : TRUE;
  const test = p.test;
  return { cost: p.cost, test: (c) => !test(c) };
}

/** `all` true: every operand must hold (AND); false: any operand (OR). */
function combine(operands: Pred[], all: boolean): Pred {
  const identity = all ? TRUE : FALSE;
  const absorbing = all ? FALSE : TRUE;
  const live: Pred[] = [];
  for (const p of operands) {
    if (p.constant === undefined) live.push(p);
    else if (p.constant !== all) return absorbing;
  }
  if (live.length === 0) return identity;
  if (live.length === 1) return live[0]!;
  live.sort((a, b) => a.cost - b.cost);
  const cost = live[live.length - 1]!.cost;
  const tests = live.map((p) => p.test);
  if (tests.length === 2) {
    const [a, b] = tests as [Pred['test'], Pred['test']];
    return { cost, test: all ? (c) => a(c) && b(c) : (c) => a(c) || b(c) };
  }
  return {
    cost,
    test: (c) => {
      for (const t of tests) if (t(c) !== all) return !all;
      return all;
    },
  };
}

function flagTest(flag: string): Pred {
  return pred(Cost.Metadata, (c) => c.message.flags.has(flag));
}

/** Keywords compare case-insensitively; the exact spelling is tried first. */
function keywordTest(keyword: string): Pred {
  const lower = keyword.toLowerCase();
  return pred(Cost.Metadata, (c) => {
    const flags = c.message.flags;
    if (flags.has(keyword)) return true;
    for (const f of flags) if (f.length === lower.length && f.toLowerCase() === lower) return true;
    return false;
  });
}

function headerTest(name: string, needle: string): Pred {
  const key = name.toLowerCase();
  const cost = headerInMeta(key) ? Cost.Envelope : Cost.Header;
  if (needle === '') return pred(cost, (c) => c.message.header(name).length > 0);
  const folded = fold(needle);
  return pred(cost, (c) => {
    for (const value of c.header(key, name)) if (value.includes(folded)) return true;
    return false;
  });
}

/** Sorted, merged, inclusive ranges; membership by binary search. */
function setTest(ranges: Array<[number, number]>, field: 'seq' | 'uid'): Pred {
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  if (merged.length === 1) {
    const [lo, hi] = merged[0]!;
    return pred(Cost.Metadata, (c) => {
      const v = c.message[field];
      return v >= lo && v <= hi;
    });
  }
  const los = merged.map((r) => r[0]);
  const his = merged.map((r) => r[1]);
  return pred(Cost.Metadata, (c) => {
    const v = c.message[field];
    let a = 0;
    let b = los.length - 1;
    while (a <= b) {
      const mid = (a + b) >> 1;
      if (v < los[mid]!) b = mid - 1;
      else if (v > his[mid]!) a = mid + 1;
      else return true;
    }
    return false;
  });
}

// ---------------------------------------------------------------------------------------
// Calendar dates in a time zone

const zoneFormatters = new Map<string, Intl.DateTimeFormat>();

function zoneFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = zoneFormatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', { timeZone, era: 'short', year: 'numeric', month: 'numeric', day: 'numeric' });
    } catch {
      throw new RangeError(`unknown time zone ${show(timeZone)}`);
    }
    zoneFormatters.set(timeZone, f);
  }
  return f;
}

/** y*10000 + m*100 + d, comparable as a number. */
function dayKey(y: number, m: number, d: number): number {
  return y * 10000 + m * 100 + d;
}

/** The calendar date of instant `t` in the formatter's zone, as a dayKey. */
function zoneDayKey(t: number, formatter: Intl.DateTimeFormat): number {
  let y = 0;
  let m = 0;
  let d = 0;
  let bc = false;
  for (const part of formatter.formatToParts(t)) {
    if (part.type === 'year') y = Number(part.value);
    else if (part.type === 'month') m = Number(part.value);
    else if (part.type === 'day') d = Number(part.value);
    else if (part.type === 'era') bc = part.value.startsWith('B');
  }
  return dayKey(bc ? 1 - y : y, m, d);
}

/** UTC midnight starting the proleptic Gregorian date (setUTCFullYear keeps years 0-99 as they are). */
function utcMidnight(y: number, m: number, d: number): number {
  const date = new Date(0);
  date.setUTCFullYear(y, m - 1, d);
  return date.getTime();
}

/** Day starts already computed, by zone and UTC midnight; cleared when it grows past DAY_START_CACHE_SIZE. */
const dayStartCache = new Map<string, number>();
const DAY_START_CACHE_SIZE = 4096;

/** Turns calendar dates into the instants where they start in one time zone. */
class DayStarts {
  private readonly formatter: Intl.DateTimeFormat | undefined;

  constructor(private readonly timeZone: string | undefined) {
    this.formatter = timeZone === undefined || timeZone === 'UTC' ? undefined : zoneFormatter(timeZone);
  }

  /**
   * First instant whose calendar date in the zone is on or after the date starting at UTC
   * midnight `midnight`: a binary search, exact as long as local dates never go backwards
   * across midnight (a DST change that falls back over midnight would be the exception).
   */
  start(midnight: number): number {
    if (!this.formatter) return midnight;
    const cacheKey = `${this.timeZone}|${midnight}`;
    let start = dayStartCache.get(cacheKey);
    if (start === undefined) {
      const day = new Date(midnight);
      const target = dayKey(day.getUTCFullYear(), day.getUTCMonth() + 1, day.getUTCDate());
      // Invariant: the date at lo is before the target, the date at hi is not.
      let lo = midnight - ZONE_WINDOW_MS;
      let hi = midnight + ZONE_WINDOW_MS;
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (zoneDayKey(mid, this.formatter) >= target) hi = mid;
        else lo = mid;
      }
      start = hi;
      if (dayStartCache.size >= DAY_START_CACHE_SIZE) dayStartCache.clear();
      dayStartCache.set(cacheKey, start);
    }
    return start;
  }
}

// ---------------------------------------------------------------------------------------
// Parser

type DateField = 'internalDate' | 'sentDate';

class Parser {
  private pos = 0;
  needsHeaders = false;
  needsBody = false;
  private readonly days: DayStarts;
  private readonly now = Date.now();

  constructor(
    private readonly tokens: readonly Token[],
    private readonly options: { timeZone?: string; maxSeq?: number; maxUid?: number },
  ) {
    this.days = new DayStarts(options.timeZone);
  }

  program(): Pred {
    if (this.tokens.length === 0) throw new SearchSyntaxError('empty search filter');
    if (this.peekKey() === 'CHARSET') {
      this.pos++;
      const charset = this.argument('CHARSET');
      const upper = charset.toUpperCase();
      if (upper !== 'UTF-8' && upper !== 'US-ASCII') throw new SearchSyntaxError(`unsupported charset ${show(charset)}`);
      if (this.pos >= this.tokens.length) throw new SearchSyntaxError('missing search key after CHARSET');
    }
    const keys: Pred[] = [];
    while (this.pos < this.tokens.length) {
      if (this.tokens[this.pos]!.kind === ')') throw new SearchSyntaxError('unbalanced parentheses');
      keys.push(this.key(0, undefined));
    }
    return combine(keys, true);
  }

  /** The next token as an upper-cased key name, or undefined when it is not an ASCII atom. */
  private peekKey(): string | undefined {
    const t = this.tokens[this.pos];
    return t?.kind === 'atom' && /^[\x21-\x7e]+$/.test(t.text) ? t.text.toUpperCase() : undefined;
  }

  /** An atom or string argument of `key`. */
  private argument(key: string): string {
    const t = this.tokens[this.pos];
    if (!t || (t.kind !== 'atom' && t.kind !== 'string')) throw new SearchSyntaxError(`missing argument for ${key}`);
    this.pos++;
    return t.text;
  }

  private number(key: string): number {
    const text = this.argument(key);
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value)) throw new SearchSyntaxError(`bad number ${show(text)} for ${key}`);
    return value;
  }

  /** A `d-Mon-yyyy` argument as the UTC midnight starting that date. */
  private date(key: string): number {
    const text = this.argument(key);
    const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
    const month = m ? MONTHS.get(m[2]!.toLowerCase()) : undefined;
    if (m && month !== undefined) {
      const day = Number(m[1]);
      const year = Number(m[3]);
      const midnight = utcMidnight(year, month, day);
      const check = new Date(midnight);
      if (year > 0 && day > 0 && check.getUTCDate() === day && check.getUTCMonth() === month - 1) return midnight;
    }
    throw new SearchSyntaxError(`bad date ${show(text)} for ${key} (expected d-Mon-yyyy)`);
  }

  /** BEFORE / ON / SINCE on a calendar date, `field` undefined never matching. */
  private dateTest(key: string, field: DateField, relation: 'before' | 'on' | 'since'): Pred {
    const midnight = this.date(key);
    const start = this.days.start(midnight);
    const end = this.days.start(midnight + DAY_MS); // UTC days all have DAY_MS
    const get = (c: MatchContext): number | undefined => c.message[field];
    switch (relation) {
      case 'before':
        return pred(Cost.Metadata, (c) => {
          const t = get(c);
          return t !== undefined && t < start;
        });
      case 'on':
        return pred(Cost.Metadata, (c) => {
          const t = get(c);
          return t !== undefined && t >= start && t < end;
        });
      case 'since':
        return pred(Cost.Metadata, (c) => {
          const t = get(c);
          return t !== undefined && t >= start;
        });
    }
  }

  /** A sequence set; `*` is `max`, or unbounded when the caller did not say. */
  private set(text: string, max: number | undefined, what: string): Pred {
    const star = max ?? Infinity;
    const ranges: Array<[number, number]> = [];
    const bad = (): SearchSyntaxError => new SearchSyntaxError(`bad ${what} ${show(text)}`);
    const value = (s: string): number => {
      if (s === '*') return star;
      const v = /^\d+$/.test(s) ? Number(s) : NaN;
      if (!Number.isSafeInteger(v) || v === 0) throw bad();
      return v;
    };
    for (const part of text.split(',')) {
      const colon = part.indexOf(':');
      if (colon < 0) {
        const v = value(part);
        ranges.push([v, v]);
      } else {
        const a = value(part.slice(0, colon));
        const b = value(part.slice(colon + 1));
        ranges.push([Math.min(a, b), Math.max(a, b)]);
      }
    }
    return setTest(ranges, what === 'UID set' ? 'uid' : 'seq');
  }

  private header(name: string, needle: string): Pred {
    // The message metadata carries a few raw header fields; the others need the header block.
    if (!headerInMeta(name.toLowerCase())) this.needsHeaders = true;
    return headerTest(name, needle);
  }

  private keyword(key: string): Pred {
    const text = this.argument(key);
    if (text.startsWith('\\')) {
      const system = SYSTEM_FLAGS.get(text.slice(1).toLowerCase());
      if (!system) throw new SearchSyntaxError(`bad keyword ${show(text)} for ${key}`);
      return flagTest(system);
    }
    if (text === '') throw new SearchSyntaxError(`bad keyword "" for ${key}`);
    return keywordTest(text);
  }

  /** One search key; `after` names the operator that wanted it, for error messages. */
  private key(depth: number, after: string | undefined): Pred {
    if (depth > MAX_DEPTH) throw new SearchSyntaxError(`search filter nested too deeply (more than ${MAX_DEPTH} levels)`);
    const t = this.tokens[this.pos];
    if (!t || t.kind === ')') {
      if (after) throw new SearchSyntaxError(`missing search key after ${after}`);
      throw new SearchSyntaxError('unbalanced parentheses');
    }
    this.pos++;
    if (t.kind === '(') {
      const keys: Pred[] = [];
      for (;;) {
        const next = this.tokens[this.pos];
        if (!next) throw new SearchSyntaxError('unbalanced parentheses');
        if (next.kind === ')') break;
        keys.push(this.key(depth + 1, undefined));
      }
      this.pos++;
      if (keys.length === 0) throw new SearchSyntaxError('empty parentheses');
      return combine(keys, true);
    }
    if (t.kind === 'string') throw new SearchSyntaxError(`search key expected instead of string ${show(t.text)}`);
    const name = /^[\x21-\x7e]+$/.test(t.text) ? t.text.toUpperCase() : '';
    switch (name) {
      case 'ALL':
        return TRUE;
      case 'ANSWERED':
        return flagTest('Answered');
      case 'DELETED':
        return flagTest('Deleted');
      case 'DRAFT':
        return flagTest('Draft');
      case 'FLAGGED':
        return flagTest('Flagged');
      case 'RECENT':
        return flagTest('Recent');
      case 'SEEN':
        return flagTest('Seen');
      case 'UNANSWERED':
        return not(flagTest('Answered'));
      case 'UNDELETED':
        return not(flagTest('Deleted'));
      case 'UNDRAFT':
        return not(flagTest('Draft'));
      case 'UNFLAGGED':
        return not(flagTest('Flagged'));
      case 'UNSEEN':
        return not(flagTest('Seen'));
      case 'NEW':
        return combine([flagTest('Recent'), not(flagTest('Seen'))], true);
      case 'OLD':
        return not(flagTest('Recent'));
      case 'KEYWORD':
        return this.keyword(name);
      case 'UNKEYWORD':
        return not(this.keyword(name));
      case 'BCC':
        return this.header('Bcc', this.argument(name));
      case 'CC':
        return this.header('Cc', this.argument(name));
      case 'FROM':
        return this.header('From', this.argument(name));
      case 'SUBJECT':
        return this.header('Subject', this.argument(name));
      case 'TO':
        return this.header('To', this.argument(name));
      case 'HEADER': {
        const field = this.argument(name);
        const needle = this.argument(name);
        if (field === '') throw new SearchSyntaxError('empty header field name for HEADER');
        return this.header(field, needle);
      }
      case 'BODY': {
        const needle = fold(this.argument(name));
        if (needle === '') return TRUE;
        this.needsBody = true;
        return pred(Cost.Body, (c) => c.bodyText().includes(needle));
      }
      case 'TEXT': {
        const needle = fold(this.argument(name));
        if (needle === '') return TRUE;
        this.needsBody = true;
        this.needsHeaders = true;
        return pred(Cost.Body, (c) => c.headerText().includes(needle) || c.bodyText().includes(needle));
      }
      case 'LARGER': {
        const n = this.number(name);
        return pred(Cost.Metadata, (c) => c.message.size > n);
      }
      case 'SMALLER': {
        const n = this.number(name);
        return pred(Cost.Metadata, (c) => c.message.size < n);
      }
      case 'OLDER': {
        const limit = this.now - this.number(name) * 1000;
        return pred(Cost.Metadata, (c) => c.message.internalDate <= limit);
      }
      case 'YOUNGER': {
        const limit = this.now - this.number(name) * 1000;
        return pred(Cost.Metadata, (c) => c.message.internalDate > limit);
      }
      case 'BEFORE':
        return this.dateTest(name, 'internalDate', 'before');
      case 'ON':
        return this.dateTest(name, 'internalDate', 'on');
      case 'SINCE':
        return this.dateTest(name, 'internalDate', 'since');
      case 'SENTBEFORE':
        return this.dateTest(name, 'sentDate', 'before');
      case 'SENTON':
        return this.dateTest(name, 'sentDate', 'on');
      case 'SENTSINCE':
        return this.dateTest(name, 'sentDate', 'since');
      case 'UID':
        return this.set(this.argument(name), this.options.maxUid, 'UID set');
      case 'NOT': {
        let negate = true;
        // NOT NOT ... is cancelled here rather than nested.
        while (this.peekKey() === 'NOT') {
          this.pos++;
          negate = !negate;
        }
        const operand = this.key(depth + 1, 'NOT');
        return negate ? not(operand) : operand;
      }
      case 'OR': {
        // OR a OR b c ... is one flat alternative list, so long OR chains do not nest.
        const alternatives: Pred[] = [];
        for (;;) {
          alternatives.push(this.key(depth + 1, 'OR'));
          if (this.peekKey() === 'OR') {
            this.pos++;
            continue;
          }
          alternatives.push(this.key(depth + 1, 'OR'));
          break;
        }
        return combine(alternatives, false);
      }
      case 'CHARSET':
        throw new SearchSyntaxError('CHARSET must come before the search keys');
      default:
        if (/^[0-9*]/.test(t.text)) return this.set(t.text, this.options.maxSeq, 'sequence set');
        throw new SearchSyntaxError(`unknown search key ${show(t.text)}`);
    }
  }
}

/**
 * Parses an IMAP SEARCH filter. Throws SearchSyntaxError for any malformed filter, and
 * RangeError when options.timeZone is not a time zone the runtime knows. OLDER/YOUNGER are
 * relative to the time of this call.
 */
export function parseSearch(filter: string, options: SearchOptions = {}): SearchProgram {
  const parser = new Parser(tokenize(filter), options);
  const root = parser.program();
  const test = root.test;
  const constant = root.constant;
  return {
    needsHeaders: parser.needsHeaders,
    needsBody: parser.needsBody,
    matches: constant === undefined ? (message) => test(new MatchContext(message)) : () => constant,
  };
}
