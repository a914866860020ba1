/**
 * PROPFIND and PROPPATCH over any resource: a resource shows live properties (computed on
 * demand, some left out of allprop as their RFCs say) and dead ones (kept XML elements).
 */
import type { FileAttribute, FileAttributeChange } from '../../services/files/api.js';
import type { PropfindRequest, PropertyUpdate } from './bodies.js';
import { DAV_NS, clark, escapeDavText, statusLine, tagOf, type MultistatusEntry } from './xml.js';

export const D = (local: string): string => clark(DAV_NS, local);

/** A live property's value for a subject: inner XML (escaped already); undefined when the resource has none. */
export type LiveValue<T = unknown> = (subject: T) => string | undefined | Promise<string | undefined>;

/**
 * A resource as PROPFIND and PROPPATCH see it. `subject` is what the getters read (a File
 * Storage entry…), so that the resources of one listing can share one table of getters.
 */
export interface PropertyNode<T = unknown> {
  href: string;
  subject?: T;
  /** Live properties by Clark name. */
  live: ReadonlyMap<string, LiveValue<T>>;
  /** Live properties allprop leaves out (RFC 4331 quota, RFC 5397 current-user-principal…). */
  hidden?: ReadonlySet<string>;
  /** The dead properties (undefined: the resource keeps none). */
  dead?: (subject: T) => Promise<FileAttribute[]>;
}

/** A getter's value, awaited only when it is a promise. */
function valueOf<T>(node: PropertyNode<T>, getter: LiveValue<T>): string | undefined | Promise<string | undefined> {
  return getter(node.subject as T);
}

/** Live properties RFC 4918 and its extensions define but no client may set. */
export const PROTECTED = new Set(
  [
    'resourcetype',
    'getcontentlength',
    'getetag',
    'getlastmodified',
    'creationdate',
    'lockdiscovery',
    'supportedlock',
    'quota-available-bytes',
    'quota-used-bytes',
    'current-user-principal',
    'principal-URL',
    'supported-report-set',
    'sync-token',
  ].map(D),
);

function element(name: string, inner: string): string {
  const tag = tagOf(name);
  return inner === '' ? tag.empty : `${tag.open}${inner}${tag.close}`;
}

function add(map: Map<number, string[]>, status: number, xml: string): void {
  const list = map.get(status);
  if (list) list.push(xml);
  else map.set(status, [xml]);
}

/** Getters seen to answer with a promise (the tables of getters are shared by a listing's entries). */
const ASYNC_GETTERS = new WeakSet<LiveValue<never>>();

/**
 * A `prop` PROPFIND's `response` made without waiting, when every property asked for is a live
 * one whose value is at hand (the common listing: resourcetype, getetag…); undefined when a
 * dead property or a value still to be fetched needs propfindEntry.
 */
export function propfindEntryNow<T>(node: PropertyNode<T>, request: PropfindRequest): MultistatusEntry | undefined {
  if (request.kind !== 'prop') return undefined;
  // Written at once: a listing makes thousands of these.
  let found = '';
  let missing = '';
  for (const name of request.names) {
    const live = node.live.get(name);
    if (!live || ASYNC_GETTERS.has(live)) return undefined;
    const v = valueOf(node, live);
    if (typeof v === 'object') {
      // A promise: this getter is left to propfindEntry from now on (it asks again; getters
      // have no side effects).
      ASYNC_GETTERS.add(live);
      void v.catch(() => {});
      return undefined;
    }
    if (v !== undefined) found += element(name, v);
    else missing += tagOf(name).empty;
  }
  let xml = `<D:response><D:href>${escapeDavText(node.href)}</D:href>`;
  if (found !== '' || missing === '') xml += `<D:propstat><D:prop>${found}</D:prop><D:status>${statusLine(200)}</D:status></D:propstat>`;
  if (missing !== '') xml += `<D:propstat><D:prop>${missing}</D:prop><D:status>${statusLine(404)}</D:status></D:propstat>`;
  return { href: node.href, xml: xml + '</D:response>' };
}

/** One resource's `response` for a PROPFIND. */
export async function propfindEntry<T>(node: PropertyNode<T>, request: PropfindRequest): Promise<MultistatusEntry> {
  const propstats = new Map<number, string[]>();
  if (request.kind === 'propname') {
    for (const name of node.live.keys()) add(propstats, 200, tagOf(name).empty);
    const seen = new Set<string>();
    for (const attribute of (await node.dead?.(node.subject as T)) ?? []) {
      if (seen.has(attribute.name) || node.live.has(attribute.name)) continue;
      seen.add(attribute.name);
      add(propstats, 200, tagOf(attribute.name).empty);
    }
    return { href: node.href, propstats };
  }
  if (request.kind === 'allprop') {
    const include = new Set(request.include);
    for (const [name, value] of node.live) {
      if (node.hidden?.has(name) && !include.has(name)) continue;
      const got = valueOf(node, value);
      const v = typeof got === 'object' ? await got : got;
      if (v !== undefined) add(propstats, 200, element(name, v));
      else if (include.has(name)) add(propstats, 404, tagOf(name).empty);
    }
    for (const attribute of (await node.dead?.(node.subject as T)) ?? []) if (!node.live.has(attribute.name)) add(propstats, 200, attribute.xml);
    if (propstats.size === 0) propstats.set(200, []);
    return { href: node.href, propstats };
  }
  let dead: FileAttribute[] | undefined;
  for (const name of request.names) {
    const live = node.live.get(name);
    if (live) {
      const got = valueOf(node, live);
      const v = typeof got === 'object' ? await got : got;
      if (v !== undefined) add(propstats, 200, element(name, v));
      else add(propstats, 404, tagOf(name).empty);
      continue;
    }
    dead ??= (await node.dead?.(node.subject as T)) ?? [];
    const found = dead.filter((a) => a.name === name);
    if (found.length > 0) for (const a of found) add(propstats, 200, a.xml);
    else add(propstats, 404, tagOf(name).empty);
  }
  if (propstats.size === 0) propstats.set(200, []);
  return { href: node.href, propstats };
}

/**
 * A PROPPATCH: all or nothing (RFC 4918 9.2). A protected live property fails with 403,
 * and then every other one with 424; else `apply` makes the dead-property changes at once.
 * Returns the multistatus entry; `apply` errors propagate (the caller maps them).
 */
export async function proppatchEntry<T>(
  node: PropertyNode<T>,
  updates: readonly PropertyUpdate[],
  apply: (changes: FileAttributeChange[]) => Promise<void>,
): Promise<MultistatusEntry> {
  const refused = updates.filter((u) => PROTECTED.has(u.name) || node.live.has(u.name));
  const propstats = new Map<number, string[]>();
  if (refused.length > 0) {
    for (const u of updates) add(propstats, refused.includes(u) ? 403 : 424, tagOf(u.name).empty);
    return { href: node.href, propstats, error: refused.length > 0 ? D('cannot-modify-protected-property') : undefined };
  }
  const changes: FileAttributeChange[] = updates.map((u) =>
    u.action === 'set' ? { mode: 'replace', attribute: { name: u.name, xml: u.xml } } : { mode: 'delete', name: u.name },
  );
  await apply(changes);
  const names = new Set<string>();
  for (const u of updates) {
    if (names.has(u.name)) continue;
    names.add(u.name);
    add(propstats, 200, tagOf(u.name).empty);
  }
  return { href: node.href, propstats };
}

/** RFC 1123 date (getlastmodified, Last-Modified). */
export function httpDate(date: Date): string {
  // Whole seconds only: the entries of a listing often share theirs.
  const second = Math.floor(date.getTime() / 1000);
  if (second !== lastSecond) {
    lastSecond = second;
    lastHttpDate = date.toUTCString();
  }
  return lastHttpDate;
}

let lastSecond = NaN;
let lastHttpDate = '';

/** RFC 3339 date (creationdate). */
export function isoDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
