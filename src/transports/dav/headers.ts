/**
 * The request headers of WebDAV (RFC 4918 section 10) and of conditional and partial GETs
 * (RFC 9110/9111): parsed strictly; a malformed one is a HeaderError (answered 400).
 */

export class HeaderError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export type Depth = '0' | '1' | 'infinity';

/** The Depth header; `fallback` when absent. */
export function parseDepth(value: string | undefined, fallback: Depth): Depth {
  if (value === undefined) return fallback;
  const v = value.trim().toLowerCase();
  if (v === '0' || v === '1' || v === 'infinity') return v;
  throw new HeaderError(`bad Depth header "${value}": 0, 1 or infinity`);
}

/** The Overwrite header: true unless "F". */
export function parseOverwrite(value: string | undefined): boolean {
  if (value === undefined) return true;
  const v = value.trim().toUpperCase();
  if (v === 'T') return true;
  if (v === 'F') return false;
  throw new HeaderError(`bad Overwrite header "${value}": T or F`);
}

/**
 * The Timeout header (`Second-n` or `Infinite`, several in preference order): the seconds
 * of the first one understood, Infinity for Infinite, undefined when absent or none is.
 */
export function parseTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  for (const part of value.split(',')) {
    const v = part.trim();
    if (/^infinite$/i.test(v)) return Number.POSITIVE_INFINITY;
    const m = /^second-(\d{1,12})$/i.exec(v);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** Splits a URL path into decoded segments (no empty ones); HeaderError for bad escapes, `.` and `..`. */
export function pathSegments(path: string): string[] {
  const segments: string[] = [];
  for (const raw of path.split('/')) {
    if (raw === '') continue;
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw new HeaderError(`bad escape in the path segment "${raw.slice(0, 100)}"`);
    }
    if (segment === '.' || segment === '..') throw new HeaderError('the path may not hold "." or ".." segments');
    if (segment.includes('/') || segment.includes('\0')) throw new HeaderError('a path segment may not hold "/" or NUL');
    segments.push(segment);
  }
  return segments;
}

/** A path segment as it goes into an href. */
export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function hrefOf(segments: readonly string[], collection: boolean): string {
  const path = '/' + segments.map(encodeSegment).join('/');
  return collection && segments.length > 0 ? path + '/' : path;
}

/**
 * The path of a Destination header (or an If header's resource tag): an absolute URI of this
 * server (its authority must be the request's Host: another one is answered 502) or an
 * absolute path. Returns the URL path, still percent-encoded.
 */
export function localPath(value: string, host: string | undefined): string {
  const v = value.trim();
  if (v.startsWith('/')) return v.split('?', 1)[0]!;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new HeaderError(`bad URI "${v.slice(0, 200)}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new HeaderError(`bad URI scheme in "${v.slice(0, 200)}"`);
  if (host !== undefined && url.host.toLowerCase() !== host.trim().toLowerCase()) {
    throw new HeaderError('the destination is on another server', 502);
  }
  return url.pathname;
}

/**
 * The collection and member names a COPY/MOVE Destination names under `home` (the account's
 * home collection URL: `/dav/calendars/<account>/`); undefined when it names anything else
 * (another account's collection, a deeper or shallower path).
 */
export function destinationMember(headers: Record<string, string | string[] | undefined>, home: string): { collection: string; name: string } | undefined {
  const destination = headerOf(headers, 'destination');
  if (!destination) throw new HeaderError('a Destination header is needed');
  const segments = pathSegments(localPath(destination, headerOf(headers, 'host')));
  const homeSegments = pathSegments(new URL(home, 'http://host').pathname);
  if (segments.length !== homeSegments.length + 2 || homeSegments.some((h, i) => segments[i]!.toLowerCase() !== h.toLowerCase())) return undefined;
  return { collection: segments[homeSegments.length]!, name: segments[homeSegments.length + 1]! };
}

// --- If (RFC 4918 section 10.4) ---

export interface IfCondition {
  not: boolean;
  /** A state token (a Coded-URL's content: a lock token, DAV:no-lock…). */
  token?: string;
  /** An entity tag, as written (quotes included). */
  etag?: string;
}

export interface IfList {
  /** The resource tag (an absolute URI or path), undefined for untagged lists (the request URI). */
  resource?: string;
  conditions: IfCondition[];
}

/** Parses an If header into its lists; HeaderError when malformed. */
export function parseIf(value: string): IfList[] {
  const lists: IfList[] = [];
  let i = 0;
  let tag: string | undefined;
  let tagged: boolean | undefined;
  const s = value;
  const skip = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\r' || s[i] === '\n')) i++;
  };
  const fail = (what: string): never => {
    throw new HeaderError(`bad If header: ${what}`);
  };
  const until = (close: string): string => {
    const end = s.indexOf(close, i);
    if (end < 0) fail(`missing "${close}"`);
    const text = s.slice(i, end);
    i = end + 1;
    return text;
  };
  skip();
  if (i >= s.length) fail('empty');
  while (i < s.length) {
    if (s[i] === '<') {
      i++;
      tag = until('>');
      if (tagged === false) fail('tagged and untagged lists mixed');
      tagged = true;
      skip();
      if (s[i] !== '(') fail('a resource tag without a list');
      continue;
    }
    if (s[i] !== '(') fail(`unexpected "${s[i]}"`);
    if (tagged === undefined) tagged = false;
    i++;
    const conditions: IfCondition[] = [];
    for (;;) {
      skip();
      if (i >= s.length) fail('an unclosed list');
      if (s[i] === ')') {
        i++;
        break;
      }
      let not = false;
      if (s.slice(i, i + 3).toLowerCase() === 'not') {
        not = true;
        i += 3;
        skip();
      }
      if (s[i] === '<') {
        i++;
        conditions.push({ not, token: until('>') });
      } else if (s[i] === '[') {
        i++;
        conditions.push({ not, etag: until(']').trim() });
      } else {
        fail('a condition is neither a state token nor an entity tag');
      }
    }
    if (conditions.length === 0) fail('an empty list');
    lists.push({ resource: tagged ? tag : undefined, conditions });
    skip();
  }
  return lists;
}

/** What the If header needs to know of a resource: its entity tag (quoted) and the tokens of the locks that cover it. */
export interface ResourceState {
  etag?: string;
  lockTokens: ReadonlySet<string>;
}

export interface IfOutcome {
  /** Whether the header holds (a false one is answered 412). */
  holds: boolean;
  /** The state tokens the client submitted (every one named, not negated): Preconditions.lockTokens. */
  tokens: string[];
  /** The entity tag a true untagged list required of the request URI (for an atomic If-Match). */
  etag?: string;
}

function sameEtag(a: string, b: string): boolean {
  return a.replace(/^W\//, '') === b.replace(/^W\//, '');
}

/**
 * Evaluates the lists (RFC 4918 10.4): the header holds when one list holds, a list when
 * each of its conditions does, for the resource it is tagged with (else the request URI).
 * `stateOf` answers for a resource tag (undefined: the request URI).
 */
export async function evaluateIf(lists: readonly IfList[], stateOf: (resource: string | undefined) => Promise<ResourceState | undefined>): Promise<IfOutcome> {
  const tokens = new Set<string>();
  for (const list of lists) for (const c of list.conditions) if (c.token !== undefined && !c.not) tokens.add(c.token);
  const states = new Map<string | undefined, ResourceState | undefined>();
  for (const list of lists) {
    if (!states.has(list.resource)) states.set(list.resource, await stateOf(list.resource));
    const state = states.get(list.resource);
    const holds = list.conditions.every((c) => {
      const matched =
        c.token !== undefined
          ? state !== undefined && state.lockTokens.has(c.token)
          : state?.etag !== undefined && c.etag !== undefined && sameEtag(state.etag, c.etag);
      return c.not ? !matched : matched;
    });
    if (holds) {
      const etagCondition = list.resource === undefined ? list.conditions.find((c) => c.etag !== undefined && !c.not) : undefined;
      return { holds: true, tokens: [...tokens], etag: etagCondition?.etag };
    }
  }
  return { holds: false, tokens: [...tokens] };
}

// --- Range, If-Match, If-None-Match ---

/** A single byte range of a `size`-byte representation; 'unsatisfiable' (416), or undefined (ignored: the whole). */
export function parseRange(value: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // several ranges or another unit: the whole
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    if (size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** The entity tags of an If-Match / If-None-Match header ('*' for any). */
export function parseEtagList(value: string | undefined): string[] | '*' | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === '*') return '*';
  const tags = value.match(/(?:W\/)?"[^"]*"/g);
  return tags ?? [];
}

export function etagMatches(list: string[] | '*', etag: string | undefined): boolean {
  if (etag === undefined) return false;
  return list === '*' || list.some((t) => sameEtag(t, etag));
}

/** A request header as one string (repeated ones joined as HTTP allows for lists). */
export function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
