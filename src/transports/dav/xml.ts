/**
 * DAV XML: request bodies parsed by the one XML guard (src/xml/parser.ts) and resolved into
 * expanded names (the guard keeps prefixes as written), and response bodies written with
 * RFC 4918's namespaces (DAV: as `D:`, every other namespace declared where it is used).
 */
import { XmlElement, escapeAttr, escapeText, serialize } from '../../xml/element.js';
import { XmlParseError, parseXml, type XmlLimits } from '../../xml/parser.js';

export const DAV_NS = 'DAV:';

/** `{namespace}local`, or `local` when it has no namespace (as FileAttribute names are). */
export function clark(ns: string, local: string): string {
  return ns === '' ? local : `{${ns}}${local}`;
}

export function splitClark(name: string): { ns: string; local: string } {
  if (!name.startsWith('{')) return { ns: '', local: name };
  const close = name.indexOf('}');
  return { ns: name.slice(1, close), local: name.slice(close + 1) };
}

/** An element of a request body with its expanded name and the namespaces in scope where it stands. */
export interface DavElement {
  ns: string;
  local: string;
  /** Clark notation. */
  name: string;
  element: XmlElement;
  children: DavElement[];
  /** Prefix ('' for the default namespace) → namespace, as in scope on this element. */
  scope: ReadonlyMap<string, string>;
}

/** A body that is not well-formed XML or not what the method expects: answered 400 (or 422). */
export class DavBodyError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

function resolveElement(element: XmlElement, parentScope: ReadonlyMap<string, string>): DavElement {
  let scope = parentScope;
  for (const key of Object.keys(element.attrs)) {
    if (key === 'xmlns' || key.startsWith('xmlns:')) {
      // Namespaces in XML 1.0: a prefix cannot be bound to no namespace.
      if (key !== 'xmlns' && element.attrs[key] === '') throw new DavBodyError(`the prefix "${key.slice(6)}" is declared with an empty namespace`);
      if (scope === parentScope) scope = new Map(parentScope);
      (scope as Map<string, string>).set(key === 'xmlns' ? '' : key.slice(6), element.attrs[key]!);
    }
  }
  const colon = element.name.indexOf(':');
  const prefix = colon < 0 ? '' : element.name.slice(0, colon);
  const local = colon < 0 ? element.name : element.name.slice(colon + 1);
  const ns = scope.get(prefix);
  if (ns === undefined && prefix !== '') throw new DavBodyError(`the namespace prefix "${prefix}" is not declared`);
  const children: DavElement[] = [];
  for (const child of element.children) if (typeof child !== 'string') children.push(resolveElement(child, scope));
  return { ns: ns ?? '', local, name: clark(ns ?? '', local), element, children, scope };
}

/** Parses a request body through the XML guard; DavBodyError when it is malformed. */
export function parseDavBody(text: string, limits: XmlLimits): DavElement {
  let root: XmlElement;
  try {
    root = parseXml(text.replace(/^\uFEFF/, ''), limits);
  } catch (err) {
    if (err instanceof XmlParseError) throw new DavBodyError(err.errorText);
    throw err;
  }
  return resolveElement(root, new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]));
}

/** The first element of this name at any depth (the element itself included). */
export function findDeep(element: DavElement, name: string): DavElement | undefined {
  if (element.name === name) return element;
  for (const c of element.children) {
    const found = findDeep(c, name);
    if (found) return found;
  }
  return undefined;
}

/** The first child with this expanded name. */
export function child(element: DavElement, name: string): DavElement | undefined {
  return element.children.find((c) => c.name === name);
}

/**
 * An element of a body as a self-contained XML text (a dead property to keep): the
 * namespace declarations in scope that it relies on are written on it.
 */
export function standalone(element: DavElement): string {
  const attrs: Record<string, string> = { ...element.element.attrs };
  const used = new Set<string>();
  const collect = (e: XmlElement): void => {
    const colon = e.name.indexOf(':');
    used.add(colon < 0 ? '' : e.name.slice(0, colon));
    for (const key of Object.keys(e.attrs)) {
      const c = key.indexOf(':');
      if (c > 0 && !key.startsWith('xmlns')) used.add(key.slice(0, c));
    }
    for (const c of e.children) if (typeof c !== 'string') collect(c);
  };
  collect(element.element);
  for (const prefix of used) {
    if (prefix === 'xml') continue;
    const key = prefix === '' ? 'xmlns' : `xmlns:${prefix}`;
    if (attrs[key] === undefined) {
      const ns = element.scope.get(prefix);
      if (ns !== undefined) attrs[key] = ns;
      else if (prefix === '') attrs[key] = '';
    }
  }
  const copy = new XmlElement(element.element.name, attrs, element.element.children);
  return serialize(copy);
}

// --- response bodies ---

/** An element's opening and closing tags for a name in Clark notation (DAV: as D:). */
export function tagOf(name: string): Tag {
  // Every entry of a listing names the same few properties: their tags are made once.
  const known = TAGS.get(name);
  if (known) return known;
  const tag = makeTag(name);
  if (TAGS.size >= MAX_CACHED_TAGS) TAGS.clear();
  TAGS.set(name, tag);
  return tag;
}

interface Tag {
  readonly open: string;
  readonly close: string;
  readonly empty: string;
}

/** Bounded: property names come from requests. */
const MAX_CACHED_TAGS = 1000;
const TAGS = new Map<string, Tag>();

function makeTag(name: string): Tag {
  const { ns, local } = splitClark(name);
  if (ns === DAV_NS) return { open: `<D:${local}>`, close: `</D:${local}>`, empty: `<D:${local}/>` };
  const decl = ns === '' ? ' xmlns=""' : ` xmlns:x="${escapeAttr(ns)}"`;
  const tag = ns === '' ? local : `x:${local}`;
  return { open: `<${tag}${decl}>`, close: `</${tag}>`, empty: `<${tag}${decl}/>` };
}

/** An element with text content. */
export function textElement(name: string, text: string): string {
  const tag = tagOf(name);
  return text === '' ? tag.empty : `${tag.open}${escapeText(text)}${tag.close}`;
}

/** Text content of a response element. */
export const escapeDavText = escapeText;

export const XML_HEADER = '<?xml version="1.0" encoding="utf-8"?>\n';

/** Status lines of the statuses a multistatus names. */
export const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  423: 'Locked',
  424: 'Failed Dependency',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  507: 'Insufficient Storage',
};

const STATUS_LINES = new Map<number, string>();

export function statusLine(status: number): string {
  let line = STATUS_LINES.get(status);
  if (line === undefined) STATUS_LINES.set(status, (line = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}`.trimEnd()));
  return line;
}

/** One resource's answer in a multistatus: properties grouped by status, or a status for the whole. */
export interface MultistatusEntry {
  href: string;
  /** Status → property elements (complete XML texts). */
  propstats?: Map<number, string[]>;
  status?: number;
  /** A precondition element name (Clark) for an `error` of this response. */
  error?: string;
  description?: string;
  /** The whole `response` element, already written (then the fields above are not read but href). */
  xml?: string;
}

/**
 * UTF-8 bytes appended to a growing buffer. A multistatus of a thousand entries is some 30,000
 * short pieces: written straight into bytes it costs a third of joining them into a string and
 * encoding that (measured on a 1,000-file PROPFIND).
 */
class ByteWriter {
  private buffer: Buffer;
  private length = 0;

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  write(s: string): void {
    // A UTF-16 unit becomes at most 3 bytes: room for that, then the exact count written.
    if (this.length + s.length * 3 > this.buffer.length) this.grow(s.length * 3);
    this.length += this.buffer.write(s, this.length, 'utf8');
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + needed));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }
}

/** Writes one `response` of a multistatus. */
function writeResponse(out: ByteWriter, entry: MultistatusEntry): void {
  if (entry.xml !== undefined) {
    out.write(entry.xml);
    return;
  }
  out.write('<D:response><D:href>');
  out.write(escapeText(entry.href));
  out.write('</D:href>');
  if (entry.propstats) {
    for (const [status, props] of entry.propstats) {
      out.write('<D:propstat><D:prop>');
      for (const prop of props) out.write(prop);
      out.write('</D:prop><D:status>');
      out.write(statusLine(status));
      out.write('</D:status></D:propstat>');
    }
  }
  if (entry.status !== undefined) {
    out.write('<D:status>');
    out.write(statusLine(entry.status));
    out.write('</D:status>');
  }
  if (entry.error) {
    out.write('<D:error>');
    out.write(tagOf(entry.error).empty);
    out.write('</D:error>');
  }
  if (entry.description) {
    out.write('<D:responsedescription>');
    out.write(escapeText(entry.description));
    out.write('</D:responsedescription>');
  }
  out.write('</D:response>');
}

/**
 * A whole multistatus document, as the UTF-8 bytes of the reply; `trailer` is XML written after
 * the responses (RFC 6578's sync-token).
 */
export function multistatusXml(entries: readonly MultistatusEntry[], trailer = ''): Buffer {
  const out = new ByteWriter(1024 + entries.length * 320);
  out.write(XML_HEADER);
  out.write('<D:multistatus xmlns:D="DAV:">');
  for (const entry of entries) writeResponse(out, entry);
  out.write(trailer);
  out.write('</D:multistatus>\n');
  return out.bytes();
}

/** An RFC 4918 error body naming a precondition or postcondition (e.g. `{DAV:}lock-token-matches-request-uri`). */
export function errorXml(condition: string, inner = ''): string {
  const tag = tagOf(condition);
  const body = inner === '' ? tag.empty : `${tag.open}${inner}${tag.close}`;
  return `${XML_HEADER}<D:error xmlns:D="DAV:">${body}</D:error>\n`;
}
