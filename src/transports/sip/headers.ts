/**
 * SIP header fields: the ordered list a message carries (names in their long canonical form)
 * and the structured readers of the headers a proxy and a registrar act on. Each reader is a
 * pure function of one header value; a malformed value is a SipParseError (400).
 */
import { malformed } from './error.js';
import { HOST, Memo, Scanner, TOKEN, WORD, allIn, isToken, parseBoundedInt, splitOutside, trimLws } from './lexer.js';
import { clip, isHost, parseHostPort, parseNameAddr, readParams, type NameAddr, type Params } from './uri.js';

/** Compact forms (RFC 3261 7.3.3 and 20; RFC 3265, 3515, 3892, 4028, 8224). */
const COMPACT_FORMS: Record<string, string> = {
  i: 'Call-ID',
  m: 'Contact',
  e: 'Content-Encoding',
  l: 'Content-Length',
  c: 'Content-Type',
  f: 'From',
  s: 'Subject',
  k: 'Supported',
  t: 'To',
  v: 'Via',
  o: 'Event',
  r: 'Refer-To',
  b: 'Referred-By',
  u: 'Allow-Events',
  x: 'Session-Expires',
  y: 'Identity',
};

/** The usual spelling of known headers, by lower-case name (unknown ones keep the sender's). */
const CANONICAL = new Map(
  [
    'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow', 'Allow-Events',
    'Authentication-Info', 'Authorization', 'Call-ID', 'Call-Info', 'Contact', 'Content-Disposition',
    'Content-Encoding', 'Content-Language', 'Content-Length', 'Content-Type', 'CSeq', 'Date', 'Error-Info',
    'Event', 'Expires', 'From', 'Identity', 'In-Reply-To', 'Max-Forwards', 'MIME-Version', 'Min-Expires',
    'Min-SE', 'Organization', 'P-Asserted-Identity', 'P-Preferred-Identity', 'Path', 'Priority', 'Privacy',
    'Proxy-Authenticate', 'Proxy-Authorization', 'Proxy-Require', 'RAck', 'Reason', 'Record-Route',
    'Refer-To', 'Referred-By', 'Reject-Contact', 'Reply-To', 'Request-Disposition', 'Require', 'Retry-After',
    'Route', 'RSeq', 'Security-Client', 'Security-Server', 'Security-Verify', 'Server', 'Service-Route',
    'Session-Expires', 'SIP-ETag', 'SIP-If-Match', 'Subject', 'Subscription-State', 'Supported', 'Timestamp',
    'To', 'Unsupported', 'User-Agent', 'Via', 'Warning', 'WWW-Authenticate',
  ].map((name) => [name.toLowerCase(), name]),
);

/**
 * Headers whose value is a comma-separated list (`#element` in the grammar), so that several
 * values may share one header line. Not the digest headers (their parameters are
 * comma-separated), nor Date, Retry-After or the others whose values hold commas.
 */
const LIST_HEADERS = new Set(
  [
    'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow', 'Allow-Events',
    'Call-Info', 'Contact', 'Content-Encoding', 'Content-Language', 'Error-Info', 'In-Reply-To',
    'P-Asserted-Identity', 'P-Preferred-Identity', 'Path', 'Privacy', 'Proxy-Require', 'Reason', 'Record-Route',
    'Reject-Contact', 'Request-Disposition', 'Require', 'Route', 'Security-Client', 'Security-Server',
    'Security-Verify', 'Service-Route', 'Supported', 'Unsupported', 'Via', 'Warning',
  ].map((name) => name.toLowerCase()),
);

/** A header name in its long canonical form: compact forms expanded, known names spelled as usual. */
export function canonicalName(name: string): string {
  if (name.length === 1) {
    const long = COMPACT_FORMS[name.toLowerCase()];
    if (long !== undefined) return long;
  }
  return CANONICAL.get(name.toLowerCase()) ?? name;
}

/** Whether a header's values may be comma-separated lists. */
export function isListHeader(name: string): boolean {
  return LIST_HEADERS.has(canonicalName(name).toLowerCase());
}

/**
 * A message's headers in the order received, one entry per header line (or per value added):
 * names in canonical long form, values with folding undone and outer white space trimmed.
 * Lookups are case-insensitive and take compact forms too.
 */
export class SipHeaders {
  /** Each entry with its lower-case key, computed once (lookups compare keys, not names). */
  private readonly entries: Array<[name: string, value: string, key: string]> = [];

  constructor(entries: Iterable<readonly [string, string]> = []) {
    for (const [name, value] of entries) this.add(name, value);
  }

  /** The first value of `name` (a whole header line: not split), or undefined. */
  get(name: string): string | undefined {
    const key = keyOf(name);
    for (const entry of this.entries) if (entry[2] === key) return entry[1];
    return undefined;
  }

  /**
   * Every value of `name`, in order. For list headers (Via, Contact, Route, Allow, ...) a line
   * holding several comma-separated values gives each apart; commas inside quotes or `<...>`
   * do not separate, and empty elements are dropped.
   */
  getAll(name: string): string[] {
    const key = keyOf(name);
    const list = LIST_HEADERS.has(key);
    const values: string[] = [];
    for (const entry of this.entries) {
      if (entry[2] !== key) continue;
      const v = entry[1];
      if (list && mayHoldList(v)) {
        for (const part of splitOutside(v, ',')) if (part !== '') values.push(part);
      } else if (!list || v !== '') values.push(v);
    }
    return values;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** How many header lines carry `name` (not split). */
  count(name: string): number {
    const key = keyOf(name);
    let n = 0;
    for (const entry of this.entries) if (entry[2] === key) n++;
    return n;
  }

  /** Replaces every `name` by one with `value`, where the first one was (at the end when none). */
  set(name: string, value: string): void {
    const key = keyOf(name);
    const first = this.entries.findIndex((entry) => entry[2] === key);
    if (first < 0) {
      this.add(name, value);
      return;
    }
    this.remove(name);
    this.entries.splice(first, 0, entryOf(name, value));
  }

  /** Adds a header after all others. */
  add(name: string, value: string): void {
    this.entries.push(entryOf(name, value));
  }

  /**
   * Adds a header before the others of its name (before all headers when there is none): where
   * a proxy puts its Via and Record-Route (RFC 3261 16.6).
   */
  prepend(name: string, value: string): void {
    const key = keyOf(name);
    const first = this.entries.findIndex((entry) => entry[2] === key);
    this.entries.splice(first < 0 ? 0 : first, 0, entryOf(name, value));
  }

  /** Removes every `name`; returns how many lines went. */
  remove(name: string): number {
    const key = keyOf(name);
    let removed = 0;
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (this.entries[i]![2] === key) {
        this.entries.splice(i, 1);
        removed++;
      }
    }
    return removed;
  }

  /** The (name, value) pairs in order. */
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries.map(([n, v]): [string, string] => [n, v])[Symbol.iterator]();
  }

  /** Calls `visit` with each (name, value) pair in order, without copying them. */
  forEach(visit: (name: string, value: string) => void): void {
    for (const entry of this.entries) visit(entry[0], entry[1]);
  }

  get size(): number {
    return this.entries.length;
  }

  clone(): SipHeaders {
    const copy = new SipHeaders();
    for (const entry of this.entries) copy.entries.push([entry[0], entry[1], entry[2]]);
    return copy;
  }
}

/** Names looked up or added, by spelling: their canonical form and key (bounded: names come from the wire too). */
const NAME_CACHE = new Map<string, readonly [canonical: string, key: string]>();
const NAME_CACHE_MAX = 512;

function namesOf(name: string): readonly [string, string] {
  let known = NAME_CACHE.get(name);
  if (known === undefined) {
    const canonical = canonicalName(name);
    known = [canonical, canonical.toLowerCase()];
    if (NAME_CACHE.size >= NAME_CACHE_MAX) NAME_CACHE.clear();
    NAME_CACHE.set(name, known);
  }
  return known;
}

function keyOf(name: string): string {
  return namesOf(name)[1];
}

function entryOf(name: string, value: string): [string, string, string] {
  const [canonical, key] = namesOf(name);
  return [canonical, value, key];
}

/** Whether a list header's value may hold more than one element, or an empty one (what splitOutside would change). */
function mayHoldList(value: string): boolean {
  return value === '' || value.includes(',') || value.charCodeAt(0) <= 0x20 || value.charCodeAt(value.length - 1) <= 0x20;
}

/** One Via value (RFC 3261 20.42): `SIP/2.0/UDP host:port;branch=z9hG4bK...;received=...;rport`. */
export interface Via {
  /** `SIP/2.0` as written (name and version). */
  readonly protocol: string;
  /** Upper case: UDP, TCP, TLS, SCTP, WS, WSS or any other token. */
  readonly transport: string;
  readonly host: string;
  readonly port: number | undefined;
  readonly params: Params;
  readonly branch: string | undefined;
  readonly received: string | undefined;
  /** A number when given a value, true when present without one (RFC 3581), else undefined. */
  readonly rport: number | true | undefined;
  readonly maddr: string | undefined;
  readonly ttl: number | undefined;
}

/** One Via value (use SipHeaders.getAll('Via') for each of a line's values). */
export function parseVia(value: string): Via {
  return VIAS.read(value, readVia);
}

const VIAS = new Memo<Via>(2048);

function readVia(value: string): Via {
  const what = `Via "${clip(value)}"`;
  const scanner = new Scanner(trimLws(value));
  const name = scanner.readToken(what);
  scanner.expect('/', what);
  const version = scanner.readToken(what);
  scanner.expect('/', what);
  const transport = scanner.readToken(what).toUpperCase();
  if (!scanner.skipLws()) throw malformed(`${what}: white space expected before sent-by`);
  // sent-by = host [ COLON port ]; the colon may have white space around it.
  const hostText = scanner.readWhile(sentByHostChars(scanner));
  let hostport = hostText;
  if (scanner.eat(':')) hostport += `:${scanner.readWhile(DIGIT_CLASS)}`;
  const { host, port } = parseHostPort(hostport, value);
  const params = readParams(scanner, what);

  const branch = params.get('branch');
  if (branch === null || (branch !== undefined && !isToken(branch))) throw malformed(`${what}: a bad branch`);
  const received = params.get('received');
  // An IPv6 address, bare per the grammar or bracketed as some peers write it.
  const receivedHost = received?.includes(':') && !received.startsWith('[') ? `[${received}]` : received;
  if (received === null || (receivedHost != null && !isHost(receivedHost))) {
    throw malformed(`${what}: a bad received address`);
  }
  const rportValue = params.get('rport');
  let rport: number | true | undefined;
  if (rportValue === null) rport = true;
  else if (rportValue !== undefined) {
    rport = parseBoundedInt(rportValue, 65535);
    if (rport === undefined) throw malformed(`${what}: a bad rport`);
  }
  const maddr = params.get('maddr');
  if (maddr === null || (maddr !== undefined && !isHost(maddr))) throw malformed(`${what}: a bad maddr`);
  const ttlValue = params.get('ttl');
  let ttl: number | undefined;
  if (ttlValue !== undefined) {
    ttl = ttlValue === null ? undefined : parseBoundedInt(ttlValue, 255);
    if (ttl === undefined) throw malformed(`${what}: a bad ttl`);
  }
  return {
    protocol: `${name}/${version}`,
    transport,
    host,
    port,
    params,
    branch: branch ?? undefined,
    received: received ?? undefined,
    rport,
    maddr: maddr ?? undefined,
    ttl,
  };
}

const DIGIT_CLASS = (() => {
  const t = new Uint8Array(128);
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  return t;
})();
const HOST_CHARS_NO_COLON = (() => {
  const t = HOST.slice();
  t[0x3a] = 0;
  return t;
})();
/** The host of sent-by: an IPv6 reference takes its colons, a name stops at the port's. */
function sentByHostChars(scanner: Scanner): Uint8Array {
  return scanner.peek() === '[' ? HOST : HOST_CHARS_NO_COLON;
}

/** The RFC 3261 8.1.1.7 magic cookie of a branch that identifies its transaction on its own. */
export const BRANCH_COOKIE = 'z9hG4bK';

export interface CSeq {
  /** 0 .. 2^31-1 (RFC 3261 8.1.1.5). */
  readonly seq: number;
  /** As written: methods are case-sensitive. */
  readonly method: string;
}

export function parseCSeq(value: string): CSeq {
  return CSEQS.read(value, readCSeq);
}

const CSEQS = new Memo<CSeq>(1024, 64);

function readCSeq(value: string): CSeq {
  const what = `CSeq "${clip(value)}"`;
  const scanner = new Scanner(trimLws(value));
  const seq = parseBoundedInt(scanner.readWhile(DIGIT_CLASS), 2 ** 31 - 1);
  if (seq === undefined) throw malformed(`${what}: a sequence number 0..2^31-1 expected`);
  if (!scanner.skipLws()) throw malformed(`${what}: white space expected after the number`);
  const method = scanner.readToken(what);
  scanner.skipLws();
  if (!scanner.done) throw malformed(`${what}: trailing characters`);
  return { seq, method };
}

function boundedHeaderInt(value: string, max: number, what: string): number {
  const n = parseBoundedInt(trimLws(value), max);
  if (n === undefined) throw malformed(`${what} "${clip(value)}": a number 0..${max} expected`);
  return n;
}

/** Max-Forwards: 0..255 (RFC 3261 20.22; a larger value is malformed, after RFC 4475 3.1.2.4). */
export function parseMaxForwards(value: string): number {
  return boundedHeaderInt(value, 255, 'Max-Forwards');
}

/** Content-Length: digits only (no sign); bounded well above any body a limit lets through. */
export function parseContentLength(value: string): number {
  return boundedHeaderInt(value, 2 ** 32 - 1, 'Content-Length');
}

/** Expires and the `expires` parameter: delta-seconds, 0..2^32-1 (RFC 3261 20.19, 25.1). */
export function parseExpires(value: string): number {
  return boundedHeaderInt(value, 2 ** 32 - 1, 'Expires');
}

export interface Contact extends NameAddr {
  /** The `expires` parameter, when given. */
  readonly expires: number | undefined;
  /** The `q` parameter (0..1, up to three decimals), when given. */
  readonly q: number | undefined;
}

/** One Contact value: `*` (only in a REGISTER that removes every binding) or an address. */
export function parseContact(value: string): Contact | '*' {
  return CONTACTS.read(value, readContact);
}

const CONTACTS = new Memo<Contact | '*'>(1024);

function readContact(value: string): Contact | '*' {
  if (trimLws(value) === '*') return '*';
  const address = parseNameAddr(value);
  const expiresValue = address.params.get('expires');
  let expires: number | undefined;
  if (expiresValue !== undefined) {
    if (expiresValue === null) throw malformed(`Contact "${clip(value)}": expires without a value`);
    expires = parseExpires(expiresValue);
  }
  const qValue = address.params.get('q');
  let q: number | undefined;
  if (qValue !== undefined) {
    q = qValue === null ? undefined : parseQ(qValue);
    if (q === undefined) throw malformed(`Contact "${clip(value)}": a bad q value`);
  }
  return { ...address, expires, q };
}

/** qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
function parseQ(text: string): number | undefined {
  if (text.length === 0 || text.length > 5) return undefined;
  const [whole, fraction = '', extra] = text.split('.');
  if (extra !== undefined || (whole !== '0' && whole !== '1')) return undefined;
  if (fraction !== '' && parseBoundedInt(fraction, 999) === undefined) return undefined;
  const q = Number(text.endsWith('.') ? whole : text);
  return q <= 1 ? q : undefined;
}

/** A credentials or challenge header (RFC 3261 22.4, RFC 7616): its scheme and parameters. */
export interface AuthHeader {
  /** As written (`Digest`); compare case-insensitively. */
  scheme: string;
  /** By lower-case name; quoted values unquoted with their escapes undone. */
  params: Map<string, string>;
}

/**
 * Authorization, Proxy-Authorization, WWW-Authenticate and Proxy-Authenticate:
 * `Digest username="bob", realm="example.com", nonce="...", qop=auth, nc=00000001, ...`.
 * A parameter given twice is an error (RFC 7616 3.4: duplicates are ambiguous).
 */
export function parseAuthHeader(value: string): AuthHeader {
  const what = `the credentials or challenge "${clip(value)}"`;
  const scanner = new Scanner(trimLws(value));
  const scheme = scanner.readToken(what);
  const params = new Map<string, string>();
  if (scanner.done) return { scheme, params };
  if (!scanner.skipLws()) throw malformed(`${what}: white space expected after the scheme`);
  for (;;) {
    const name = scanner.readToken(what).toLowerCase();
    scanner.expect('=', what);
    const quoted = scanner.peek() === '"';
    const paramValue = quoted ? scanner.readQuoted(what) : scanner.readWhile(TOKEN);
    if (!quoted && paramValue === '') throw malformed(`${what}: parameter ${name} has no value`);
    if (params.has(name)) throw malformed(`${what}: parameter ${name} given twice`);
    params.set(name, paramValue);
    scanner.skipLws();
    if (scanner.done) break;
    scanner.expect(',', what);
  }
  return { scheme, params };
}

/** Call-ID = word [ "@" word ] (RFC 3261 25.1). */
export function isCallId(value: string): boolean {
  const at = value.indexOf('@');
  const isWord = (s: string): boolean => s !== '' && allIn(s, WORD);
  return at < 0 ? isWord(value) : isWord(value.slice(0, at)) && isWord(value.slice(at + 1));
}
