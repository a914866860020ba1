/**
 * URIs (SIP and SIPS per RFC 3261 19.1 and 25.1, TEL per RFC 3966) and the addresses built on
 * them (name-addr / addr-spec, as in From, To, Contact, Route). Pure functions: a malformed
 * input is a SipParseError with status 400.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { malformed } from './error.js';
import {
  HNV,
  HOST,
  Memo,
  PARAM,
  PASSWORD,
  Scanner,
  TOKEN,
  USER,
  allIn,
  isIn,
  isToken,
  parseBoundedInt,
  trimLws,
  unescape,
} from './lexer.js';

/** Parameters by lower-case name; `null` for one given without a value (`;lr`). */
export type Params = ReadonlyMap<string, string | null>;

export interface SipUri {
  readonly kind: 'sip';
  readonly scheme: 'sip' | 'sips';
  /** Escapes decoded. */
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** Lower case; an IPv6 reference keeps its brackets (`[2001:db8::1]`). */
  readonly host: string;
  readonly port: number | undefined;
  /** uri-parameters, names in lower case, escapes decoded. */
  readonly params: Params;
  /** The `?h=v&...` headers, escapes decoded, names as written. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

export interface TelUri {
  readonly kind: 'tel';
  readonly scheme: 'tel';
  /** The number as written (`+1-201-555-0123`, or a local number). */
  readonly number: string;
  readonly params: Params;
}

/** An absolute URI of another scheme (http:, mailto:, urn:, ...): kept as text. */
export interface OtherUri {
  readonly kind: 'other';
  /** Lower case. */
  readonly scheme: string;
  /** What follows the colon. */
  readonly opaque: string;
}

export type Uri = SipUri | TelUri | OtherUri;

/** An address: From, To, Contact, Route, Record-Route, Refer-To, ... */
export interface NameAddr {
  /** Unquoted (quoted-pairs undone), or undefined when there is none. */
  readonly displayName: string | undefined;
  readonly uri: Uri;
  /** The URI as written. */
  readonly uriText: string;
  /** Whether the URI was in angle brackets. */
  readonly angle: boolean;
  /** The header's parameters (`tag`, `expires`, `q`, ...); quoted values unquoted. */
  readonly params: Params;
}

/** scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
function isScheme(s: string): boolean {
  if (s.length === 0 || s.length > 64) return false;
  const first = s.charCodeAt(0) | 0x20;
  return first >= 0x61 && first <= 0x7a && allIn(s, SCHEME_CHARS);
}
const SCHEME_CHARS = (() => {
  const t = new Uint8Array(128);
  for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-.') t[ch.charCodeAt(0)] = 1;
  return t;
})();

/** The scheme of a URI text in lower case, or undefined when it has none. */
export function uriScheme(text: string): string | undefined {
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  const scheme = text.slice(0, colon);
  return isScheme(scheme) ? scheme.toLowerCase() : undefined;
}

const URIS = new Memo<Uri>(2048);

/** Any absolute URI: SIP, SIPS and TEL in structure, others as text (white space and controls refused). */
export function parseUri(text: string): Uri {
  return URIS.read(text, readUri);
}

function readUri(text: string): Uri {
  const scheme = uriScheme(text);
  if (scheme === undefined) throw malformed(`not a URI: "${clip(text)}"`);
  if (scheme === 'sip' || scheme === 'sips') return parseSipUri(text);
  if (scheme === 'tel') return parseTelUri(text);
  const opaque = text.slice(scheme.length + 1);
  for (let i = 0; i < opaque.length; i++) {
    const c = opaque.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c >= 0x80 || c === 0x22 || c === 0x3c || c === 0x3e) {
      throw malformed(`a character not allowed in the URI "${clip(text)}"`);
    }
  }
  if (opaque === '') throw malformed(`an empty URI: "${clip(text)}"`);
  return { kind: 'other', scheme, opaque };
}

/**
 * A SIP or SIPS URI: `sip:user:password@host:port;uri-parameters?headers`. The user part may
 * hold `;` and `?` (user-unreserved), so it runs to the first `@`, which no later part may
 * hold unescaped.
 */
export function parseSipUri(text: string): SipUri {
  const scheme = uriScheme(text);
  if (scheme !== 'sip' && scheme !== 'sips') throw malformed(`not a SIP URI: "${clip(text)}"`);
  let rest = text.slice(scheme.length + 1);
  let user: string | undefined;
  let password: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(':');
    const rawUser = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    if (rawUser === '' || !allIn(rawUser, USER, true)) throw malformed(`a bad user part in "${clip(text)}"`);
    user = unescape(rawUser);
    if (colon >= 0) {
      const rawPassword = userinfo.slice(colon + 1);
      if (!allIn(rawPassword, PASSWORD, true)) throw malformed(`a bad password in "${clip(text)}"`);
      password = unescape(rawPassword);
    }
  }

  let headersText: string | undefined;
  const question = rest.indexOf('?');
  if (question >= 0) {
    headersText = rest.slice(question + 1);
    rest = rest.slice(0, question);
  }
  const semi = rest.indexOf(';');
  const hostport = semi >= 0 ? rest.slice(0, semi) : rest;
  const { host, port } = parseHostPort(hostport, text);

  const params = new Map<string, string | null>();
  if (semi >= 0) {
    for (const param of rest.slice(semi + 1).split(';')) {
      const eq = param.indexOf('=');
      const name = eq >= 0 ? param.slice(0, eq) : param;
      const value = eq >= 0 ? param.slice(eq + 1) : null;
      if (name === '' || !allIn(name, PARAM, true) || (value !== null && (value === '' || !allIn(value, PARAM, true)))) {
        throw malformed(`a bad URI parameter "${clip(param)}" in "${clip(text)}"`);
      }
      const key = unescape(name).toLowerCase();
      // The first of a repeated parameter counts, as for every other reader of it.
      if (!params.has(key)) params.set(key, value === null ? null : unescape(value));
    }
  }

  const headers: Array<[string, string]> = [];
  if (headersText !== undefined) {
    for (const header of headersText.split('&')) {
      const eq = header.indexOf('=');
      const name = eq >= 0 ? header.slice(0, eq) : '';
      const value = header.slice(eq + 1);
      if (name === '' || !allIn(name, HNV, true) || !allIn(value, HNV, true)) {
        throw malformed(`a bad URI header "${clip(header)}" in "${clip(text)}"`);
      }
      headers.push([unescape(name), unescape(value)]);
    }
  }
  return { kind: 'sip', scheme, user, password, host, port, params, headers };
}

/**
 * host [":" port]: a host name, an IPv4 address or an IPv6 reference in brackets; the port
 * 0..65535. Shared with Via's sent-by.
 */
export function parseHostPort(hostport: string, context: string): { host: string; port: number | undefined } {
  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) throw malformed(`an unterminated IPv6 reference in "${clip(context)}"`);
    host = hostport.slice(0, close + 1);
    const after = hostport.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw malformed(`a bad host in "${clip(context)}"`);
      portText = after.slice(1);
    }
  } else {
    const colon = hostport.indexOf(':');
    host = colon >= 0 ? hostport.slice(0, colon) : hostport;
    if (colon >= 0) portText = hostport.slice(colon + 1);
  }
  if (!isHost(host)) throw malformed(`a bad host "${clip(host)}" in "${clip(context)}"`);
  let port: number | undefined;
  if (portText !== undefined) {
    port = parseBoundedInt(portText, 65535);
    if (port === undefined) throw malformed(`a bad port "${clip(portText)}" in "${clip(context)}"`);
  }
  return { host: host.toLowerCase(), port };
}

const HOSTS = new Memo<boolean>(1024, 255);

/** hostname / IPv4address / IPv6reference (RFC 3261 25.1). */
export function isHost(host: string): boolean {
  return HOSTS.read(host, readHost);
}

function readHost(host: string): boolean {
  if (host === '' || host.length > 255 || !allIn(host, HOST)) return false;
  if (host.startsWith('[')) return host.endsWith(']') && isIPv6(host.slice(1, -1));
  if (host.includes('[') || host.includes(']') || host.includes(':')) return false;
  // All digits and dots: an IPv4 address or nothing.
  let digitsAndDots = true;
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c !== 0x2e && (c < 0x30 || c > 0x39)) digitsAndDots = false;
  }
  if (digitsAndDots) return isIPv4(host);
  // hostname = *( domainlabel "." ) toplabel [ "." ]; labels of alphanum and inner hyphens,
  // the top label starting with a letter.
  const labels = (host.endsWith('.') ? host.slice(0, -1) : host).split('.');
  for (const label of labels) {
    if (label === '' || label.length > 63 || label.startsWith('-') || label.endsWith('-')) return false;
  }
  const top = labels[labels.length - 1]!.charCodeAt(0) | 0x20;
  return top >= 0x61 && top <= 0x7a;
}

/** TEL characters: digits, hex digits, `*`, `#`, `+` and the visual separators. */
const TEL_NUMBER = (() => {
  const t = new Uint8Array(128);
  for (const ch of '0123456789ABCDEFabcdef*#+-.()') t[ch.charCodeAt(0)] = 1;
  return t;
})();

/** A TEL URI (RFC 3966): `tel:+1-201-555-0123;ext=42;phone-context=example.com`. */
export function parseTelUri(text: string): TelUri {
  if (uriScheme(text) !== 'tel') throw malformed(`not a TEL URI: "${clip(text)}"`);
  const body = text.slice(4);
  const parts = body.split(';');
  const number = parts[0]!;
  if (number === '' || !allIn(number, TEL_NUMBER) || number.lastIndexOf('+') > 0) {
    throw malformed(`a bad telephone number in "${clip(text)}"`);
  }
  const params = new Map<string, string | null>();
  for (const param of parts.slice(1)) {
    const eq = param.indexOf('=');
    const name = eq >= 0 ? param.slice(0, eq) : param;
    const value = eq >= 0 ? param.slice(eq + 1) : null;
    if (!isToken(name) || (value !== null && (value === '' || !allIn(value, PARAM, true)))) {
      throw malformed(`a bad TEL parameter "${clip(param)}" in "${clip(text)}"`);
    }
    const key = name.toLowerCase();
    if (!params.has(key)) params.set(key, value === null ? null : unescape(value));
  }
  return { kind: 'tel', scheme: 'tel', number, params };
}

/**
 * The header parameters after an address, a Via or a Contact: `*( SEMI generic-param )`,
 * where generic-param = token [ EQUAL ( token / host / quoted-string ) ]. The scanner is at
 * the first `;` (or the end); an empty parameter (`;;`) is an error (after RFC 4475 3.1.2.1).
 */
export function readParams(scanner: Scanner, what: string): Params {
  const params = new Map<string, string | null>();
  scanner.skipLws();
  while (!scanner.done) {
    scanner.expect(';', what);
    const name = scanner.readToken(`${what} parameter`).toLowerCase();
    let value: string | null = null;
    if (scanner.eat('=')) {
      if (scanner.peek() === '"') value = scanner.readQuoted(`${what} parameter ${name}`);
      else {
        value = scanner.readWhile(GEN_VALUE);
        if (value === '') throw malformed(`${what}: parameter ${name} has an empty value`);
      }
    }
    if (!params.has(name)) params.set(name, value);
    scanner.skipLws();
  }
  return params;
}
/** token / host: the unquoted forms of gen-value. */
const GEN_VALUE = (() => {
  const t = new Uint8Array(128);
  for (let c = 0; c < 128; c++) if (isIn(TOKEN, c) || isIn(HOST, c)) t[c] = 1;
  return t;
})();

/**
 * name-addr / addr-spec followed by header parameters:
 * `"Display" <sip:user@host;uri-params>;tag=x`, `Display <...>`, `<...>`, or a bare
 * `sip:user@host;tag=x`, where every parameter after the URI is the header's (RFC 3261 20.10:
 * a URI with `,`, `;` or `?` must be in angle brackets).
 */
export function parseNameAddr(value: string): NameAddr {
  return ADDRESSES.read(value, readNameAddr);
}

const ADDRESSES = new Memo<NameAddr>(2048);

function readNameAddr(value: string): NameAddr {
  const what = `the address "${clip(value)}"`;
  const scanner = new Scanner(trimLws(value));
  let displayName: string | undefined;
  let uriText: string;
  let angle = false;
  if (scanner.peek() === '"') {
    displayName = scanner.readQuoted(what);
    scanner.skipLws();
    if (scanner.peek() !== '<') throw malformed(`${what}: "<" expected after the display name`);
  }
  const text = scanner.text;
  const open = displayName === undefined ? findAngle(text) : scanner.pos;
  if (open >= 0) {
    if (displayName === undefined) {
      // display-name = *(token LWS): tokens separated by white space (UTF-8 tolerated).
      const words = trimLws(text.slice(0, open));
      for (let i = 0; i < words.length; i++) {
        const c = words.charCodeAt(i);
        if (!(c >= 0x80 || c === 0x20 || c === 0x09 || isIn(TOKEN, c))) {
          throw malformed(`${what}: a display name not quoted holds "${words.charAt(i)}"`);
        }
      }
      if (words !== '') displayName = words.replace(/[ \t]+/g, ' ');
    }
    const close = text.indexOf('>', open);
    if (close < 0) throw malformed(`${what}: ">" expected`);
    uriText = text.slice(open + 1, close);
    angle = true;
    scanner.pos = close + 1;
  } else {
    // addr-spec: the URI runs to the first `;` or white space; a `,` or `?` would need brackets.
    let end = 0;
    while (end < text.length && text[end] !== ';' && text[end] !== ' ' && text[end] !== '\t') end++;
    uriText = text.slice(0, end);
    if (uriText.includes(',') || uriText.includes('?')) {
      throw malformed(`${what}: a URI holding "," or "?" must be in angle brackets`);
    }
    scanner.pos = end;
  }
  const uri = parseUri(uriText);
  const params = readParams(scanner, what);
  return { displayName, uri, uriText, angle, params };
}

/** The `<` opening an address's URI, outside quotes; -1 when there is none. */
function findAngle(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x3c) return i;
    if (c === 0x22) return -1;
  }
  return -1;
}

/** A SIP URI written back: `sip:user@host:port;params?headers`, escaping what needs it. */
export function formatSipUri(uri: SipUri): string {
  let out = `${uri.scheme}:`;
  if (uri.user !== undefined) {
    out += escapeWith(uri.user, USER);
    if (uri.password !== undefined) out += `:${escapeWith(uri.password, PASSWORD)}`;
    out += '@';
  }
  out += uri.host;
  if (uri.port !== undefined) out += `:${uri.port}`;
  for (const [name, value] of uri.params) {
    out += `;${escapeWith(name, PARAM)}`;
    if (value !== null) out += `=${escapeWith(value, PARAM)}`;
  }
  uri.headers.forEach(([name, value], i) => {
    out += `${i === 0 ? '?' : '&'}${escapeWith(name, HNV)}=${escapeWith(value, HNV)}`;
  });
  return out;
}

function escapeWith(s: string, table: Uint8Array): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    out += isIn(table, byte) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** At most 80 characters of what was received, for an error's reason phrase. */
export function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

