/**
 * WebDAV (RFC 4918, class 1 and 2) over each account's File Storage:
 * `/dav/files/<account>/<path>`, `<account>` being a name in the default domain or
 * `name@domain`. Another account's storage is reached as FileStorage.resolve allows it
 * (`~account/` names: CanAccessWebSites, or the `r`/`w` Account Access Rights the owner grants).
 * Locks are the File Storage's, shared with XIMSS.
 */
import libmime from 'libmime';
import { fullName } from '../../services/accounts.js';
import { FileError, type FileAttribute, type FileEntry, type FileLock, type FileStorage, type FileTarget, type FileUsage, type Preconditions } from '../../services/files/api.js';
import type { AccountRecord } from '../../store/store.js';
import { parseLockinfo, parseProppatch, parsePropfind, type PropfindRequest } from './bodies.js';
import { multistatusReply, textReply, xmlReply } from './handler.js';
import {
  encodeSegment,
  etagMatches,
  evaluateIf,
  headerOf,
  localPath,
  parseDepth,
  parseEtagList,
  parseIf,
  parseOverwrite,
  parseRange,
  parseTimeout,
  pathSegments,
  type IfOutcome,
  type ResourceState,
} from './headers.js';
import { D, httpDate, isoDate, propfindEntry, propfindEntryNow, proppatchEntry, type LiveValue, type PropertyNode } from './properties.js';
import type { DavProvider, DavReply, DavRequest } from './provider.js';
import { XML_HEADER, errorXml, escapeDavText, type MultistatusEntry } from './xml.js';

const METHODS = ['OPTIONS', 'GET', 'HEAD', 'PUT', 'DELETE', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK'];
/** What an Infinite lock timeout asks for (the service bounds it). */
const INFINITE_SECONDS = 100 * 365 * 24 * 3600;
/** Members of a tree walked to name the locked ones when a DELETE is refused. */
const LOCK_SCAN_LIMIT = 10_000;

const SUPPORTED_LOCK =
  '<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>' +
  '<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>';

function quote(etag: string): string {
  return `"${etag}"`;
}

function unquote(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

/** Methods that change nothing (COPY changes only its destination, which is located for writing). */
const READING_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PROPFIND', 'REPORT', 'COPY']);

/** Where a request points: the owner's storage and a path in it, with the href base of that storage. */
interface Located {
  target: FileTarget;
  /** The request's `/dav/files/<account>` as the client wrote it. */
  base: string;
  /** The path's segments inside the storage. */
  segments: string[];
}

/**
 * The File Storage with `resolve` taking the access wanted (reading needs another account's `r`
 * grant, changing its `w`); a storage whose resolve takes no access fits too (every access is then a write).
 */
type ResolvingStorage = FileStorage & { resolve(actor: AccountRecord, name: string, access?: 'read' | 'write'): Promise<FileTarget> };

export class FilesProvider implements DavProvider {
  readonly prefix = 'files';
  readonly methods = METHODS;

  constructor(
    private readonly files: () => FileStorage,
    private readonly defaultDomain: string,
  ) {}

  private get storage(): ResolvingStorage {
    return this.files();
  }

  /** The File Storage name of an account segment and path, as the user spells it for resolve(). */
  private storageName(user: AccountRecord, account: string, segments: readonly string[]): string {
    const qualified = account.includes('@') ? account : `${account}@${this.defaultDomain}`;
    const path = segments.join('/');
    if (qualified.toLowerCase() === fullName(user).toLowerCase()) return path;
    return path === '' ? `~${qualified}` : `~${qualified}/${path}`;
  }

  private async locate(request: DavRequest, segments: readonly string[], rawAccount: string): Promise<Located> {
    const account = segments[0]!;
    // Another account's storage: reading needs its `r` grant (or more), anything else `w`.
    const access = READING_METHODS.has(request.method) ? 'read' : 'write';
    const target = await this.storage.resolve(request.user, this.storageName(request.user, account, segments.slice(1)), access);
    return { target, base: `${request.base}/${rawAccount}`, segments: segments.slice(1) };
  }

  private href(located: Located, segments: readonly string[], collection: boolean): string {
    const path = segments.map(encodeSegment).join('/');
    return `${located.base}/${path}${collection && path !== '' ? '/' : ''}`;
  }

  async handle(request: DavRequest): Promise<DavReply> {
    if (request.segments.length === 0) return this.top(request);
    const located = await this.locate(request, request.segments, request.rawSegments[0]!);
    switch (request.method) {
      case 'GET':
      case 'HEAD':
        return this.get(request, located);
      case 'PUT':
        return this.put(request, located);
      case 'DELETE':
        return this.delete(request, located);
      case 'PROPFIND':
        return this.propfind(request, located);
      case 'PROPPATCH':
        return this.proppatch(request, located);
      case 'MKCOL':
        return this.mkcol(request, located);
      case 'COPY':
      case 'MOVE':
        return this.copyMove(request, located);
      case 'LOCK':
        return this.lock(request, located);
      case 'UNLOCK':
        return this.unlock(request, located);
      default:
        return textReply(405, `${request.method} is not supported here`, { Allow: METHODS.join(', ') });
    }
  }

  /** `/dav/files/`: a collection holding the user's own storage. */
  private async top(request: DavRequest): Promise<DavReply> {
    if (request.method !== 'PROPFIND') return textReply(405, 'the files root answers PROPFIND only', { Allow: 'OPTIONS, PROPFIND' });
    const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
    if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
    const body = parsePropfind(await request.xmlBody());
    const principal = `<D:href>${request.principalHref(request.user)}</D:href>`;
    const node = (href: string, name: string): PropertyNode => ({
      href,
      live: new Map([
        [D('resourcetype'), () => '<D:collection/>'],
        [D('displayname'), () => escapeDavText(name)],
        [D('current-user-principal'), () => principal],
      ]),
      hidden: new Set([D('current-user-principal')]),
    });
    const own = request.user.domain === this.defaultDomain ? request.user.name : fullName(request.user);
    const nodes = [node(`${request.base}/`, 'files')];
    if (depth === '1') nodes.push(node(`${request.base}/${encodeSegment(own)}/`, own));
    return multistatusReply(await Promise.all(nodes.map((n) => propfindEntry(n, body))));
  }

  // --- conditions ---

  /** What the If header needs to know of a resource. */
  private async stateOf(owner: AccountRecord, path: string): Promise<ResourceState> {
    const [entry, locks] = await Promise.all([this.storage.stat(owner, path), this.storage.locks(owner, path)]);
    return { etag: entry ? quote(entry.etag) : undefined, lockTokens: new Set(locks.map((l) => l.token)) };
  }

  /**
   * Evaluates the If header (412 when it does not hold) and gathers the preconditions of a
   * change: the submitted lock tokens, and the entity tag an untagged list required.
   */
  private async conditions(request: DavRequest, located: Located): Promise<{ outcome?: IfOutcome; conditions: Preconditions }> {
    const value = headerOf(request.req.headers, 'if');
    if (value === undefined) return { conditions: {} };
    const lists = parseIf(value);
    const host = headerOf(request.req.headers, 'host');
    const outcome = await evaluateIf(lists, async (resource) => {
      if (resource === undefined) return this.stateOf(located.target.owner, located.target.path);
      let path: string;
      try {
        path = localPath(resource, host);
      } catch {
        return undefined;
      }
      const other = await this.locateHref(request, path, 'condition');
      return other ? this.stateOf(other.target.owner, other.target.path) : undefined;
    });
    if (!outcome.holds) throw new FileError('precondition-failed', 'the If header does not hold');
    return { outcome, conditions: { lockTokens: outcome.tokens, ...(outcome.etag ? { ifMatch: unquote(outcome.etag) } : {}) } };
  }

  /** A URL path of this provider (Destination, If tags) located, or undefined when it is not one. */
  private async locateHref(request: DavRequest, path: string, purpose: 'destination' | 'condition'): Promise<Located | undefined> {
    const all = pathSegments(path);
    if (all.length < 3 || all[0] !== 'dav' || all[1] !== this.prefix) return undefined;
    const raw = path.split('/').filter((s) => s !== '');
    try {
      // A Destination is written to; an If tag is only looked at.
      const target = await this.storage.resolve(request.user, this.storageName(request.user, all[2]!, all.slice(3)), purpose === 'destination' ? 'write' : 'read');
      return { target, base: `/${raw.slice(0, 3).join('/')}`, segments: all.slice(3) };
    } catch (err) {
      if (err instanceof FileError) return undefined;
      throw err;
    }
  }

  /** If-Match / If-None-Match of a change, checked against the entry and made atomic through Preconditions. */
  private httpConditions(request: DavRequest, entry: FileEntry | undefined, conditions: Preconditions): Preconditions {
    const ifMatch = parseEtagList(headerOf(request.req.headers, 'if-match'));
    const ifNoneMatch = parseEtagList(headerOf(request.req.headers, 'if-none-match'));
    const result: Preconditions = { ...conditions };
    if (ifMatch !== undefined) {
      if (!entry || !etagMatches(ifMatch, quote(entry.etag))) throw new FileError('precondition-failed', 'If-Match does not hold');
      result.ifMatch = ifMatch === '*' ? '*' : entry.etag;
    }
    if (ifNoneMatch !== undefined) {
      if (ifNoneMatch === '*') {
        if (entry) throw new FileError('precondition-failed', 'If-None-Match: the resource exists');
        result.ifNoneMatch = '*';
      } else if (entry && etagMatches(ifNoneMatch, quote(entry.etag))) {
        throw new FileError('precondition-failed', 'If-None-Match: the entity tag matches');
      }
    }
    return result;
  }

  // --- GET, HEAD ---

  private async get(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    const entry = await this.storage.stat(owner, path);
    if (!entry) return textReply(404, 'not found');
    if (entry.kind === 'directory') return this.index(request, located, entry);
    const headers = request.req.headers;
    const etag = quote(entry.etag);
    const validators = { ETag: etag, 'Last-Modified': httpDate(entry.modified), 'Accept-Ranges': 'bytes' };
    const ifMatch = parseEtagList(headerOf(headers, 'if-match'));
    if (ifMatch !== undefined && !etagMatches(ifMatch, etag)) return textReply(412, 'If-Match does not hold');
    const ifNoneMatch = parseEtagList(headerOf(headers, 'if-none-match'));
    if (ifNoneMatch !== undefined) {
      if (etagMatches(ifNoneMatch, etag)) return { status: 304, headers: validators };
    } else {
      const since = Date.parse(headerOf(headers, 'if-modified-since') ?? '');
      if (Number.isFinite(since) && Math.floor(entry.modified.getTime() / 1000) * 1000 <= since) return { status: 304, headers: validators };
    }
    let range = parseRange(headerOf(headers, 'range'), entry.size);
    const ifRange = headerOf(headers, 'if-range');
    if (ifRange !== undefined && ifRange.trim() !== etag && ifRange.trim() !== httpDate(entry.modified)) range = undefined;
    if (range === 'unsatisfiable') return { status: 416, headers: { ...validators, 'Content-Range': `bytes */${entry.size}` } };
    const contentType = libmime.detectMimeType(entry.name) || 'application/octet-stream';
    if (request.method === 'HEAD') {
      const length = range ? range.end - range.start + 1 : entry.size;
      return {
        status: range ? 206 : 200,
        headers: { ...validators, 'Content-Type': contentType, 'Content-Length': length, ...(range ? { 'Content-Range': `bytes ${range.start}-${range.end}/${entry.size}` } : {}) },
      };
    }
    const opened = await this.storage.open(owner, path, range);
    const served = opened.entry;
    const length = range ? range.end - range.start + 1 : served.size;
    return {
      status: range ? 206 : 200,
      headers: {
        ETag: quote(served.etag),
        'Last-Modified': httpDate(served.modified),
        'Accept-Ranges': 'bytes',
        ...(range ? { 'Content-Range': `bytes ${range.start}-${range.end}/${served.size}` } : {}),
      },
      contentType,
      body: { stream: opened.stream, length },
    };
  }

  /** GET of a collection: a plain HTML list of its members (for browsers). */
  private async index(request: DavRequest, located: Located, entry: FileEntry): Promise<DavReply> {
    const entries = await this.storage.list(located.target.owner, located.target.path);
    const rows = entries
      .map((e) => {
        const href = this.href(located, [...located.segments, e.name], e.kind === 'directory');
        const name = escapeDavText(e.name) + (e.kind === 'directory' ? '/' : '');
        return `<li><a href="${escapeDavText(href).replace(/"/g, '&quot;')}">${name}</a>${e.kind === 'file' ? ` ${e.size}` : ''}</li>`;
      })
      .join('\n');
    const title = escapeDavText('/' + located.target.path);
    return {
      status: 200,
      headers: { ETag: quote(entry.etag), 'Last-Modified': httpDate(entry.modified) },
      contentType: 'text/html; charset=utf-8',
      body: `<!DOCTYPE html>\n<html><head><title>${title}</title></head><body><h1>${title}</h1><ul>\n${rows}\n</ul></body></html>\n`,
    };
  }

  // --- PUT ---

  private async put(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    if (path === '') return textReply(405, 'the storage root is a collection', { Allow: 'OPTIONS, PROPFIND, PROPPATCH, LOCK, UNLOCK' });
    if (headerOf(request.req.headers, 'content-range') !== undefined) return textReply(400, 'PUT with Content-Range is not supported');
    const { conditions } = await this.conditions(request, located);
    const entry = await this.storage.stat(owner, path);
    if (entry?.kind === 'directory') return textReply(405, 'a collection cannot be written with PUT', { Allow: 'OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK' });
    const preconditions = this.httpConditions(request, entry, conditions);
    const { entry: written, created } = await this.storage.write(owner, path, request.req, { kind: 'replace' }, preconditions);
    return { status: created ? 201 : 204, headers: { ETag: quote(written.etag), 'Last-Modified': httpDate(written.modified) } };
  }

  // --- DELETE ---

  private async delete(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    if (path === '') return textReply(403, 'the storage root cannot be deleted');
    const { conditions } = await this.conditions(request, located);
    const entry = await this.storage.stat(owner, path);
    if (!entry) return textReply(404, 'not found');
    if (entry.kind === 'directory' && parseDepth(headerOf(request.req.headers, 'depth'), 'infinity') !== 'infinity') {
      return textReply(400, 'DELETE of a collection needs Depth: infinity');
    }
    const preconditions = this.httpConditions(request, entry, conditions);
    try {
      await this.storage.remove(owner, path, { recursive: true }, preconditions);
    } catch (err) {
      if (!(err instanceof FileError) || err.reason !== 'locked' || entry.kind !== 'directory') throw err;
      // Name the locked members (RFC 4918 9.6.1): a 207 with their 423s.
      const locked = await this.lockedMembers(owner, path, new Set(conditions.lockTokens ?? []));
      if (locked.length === 0) throw err;
      const entries: MultistatusEntry[] = locked.map((p) => ({
        href: this.href(located, p === '' ? [] : p.split('/'), false),
        status: 423,
        error: D('lock-token-submitted'),
      }));
      return multistatusReply(entries);
    }
    return { status: 204 };
  }

  /** Members of a tree (the tree's root included) locked by a token not submitted, relative to the storage root. */
  private async lockedMembers(owner: AccountRecord, root: string, tokens: ReadonlySet<string>): Promise<string[]> {
    const found: string[] = [];
    const queue = [root];
    let seen = 0;
    while (queue.length > 0 && seen < LOCK_SCAN_LIMIT) {
      const dir = queue.shift()!;
      const own = await this.storage.locks(owner, dir);
      if (own.some((l) => l.path === dir && !tokens.has(l.token))) found.push(dir);
      for (const e of await this.storage.list(owner, dir)) {
        seen++;
        if (e.kind === 'directory') queue.push(e.path);
        else if ((await this.storage.locks(owner, e.path)).some((l) => l.path === e.path && !tokens.has(l.token))) found.push(e.path);
      }
    }
    return found;
  }

  // --- PROPFIND, PROPPATCH ---

  /**
   * The properties of this request's resources: one table of getters for the directories and
   * one for the files, shared by every entry of a listing (the entry is the node's subject).
   */
  private nodes(request: DavRequest, located: Located): (entry: FileEntry) => PropertyNode<FileEntry> {
    const { owner } = located.target;
    let usage: Promise<FileUsage> | undefined;
    const usageOf = (): Promise<FileUsage> => (usage ??= this.storage.usage(owner, ''));
    const principal = `<D:href>${request.principalHref(request.user)}</D:href>`;
    const common: [string, LiveValue<FileEntry>][] = [
      [D('displayname'), (e) => escapeDavText(e.name)],
      [D('creationdate'), (e) => isoDate(e.created)],
      [D('getlastmodified'), (e) => httpDate(e.modified)],
      [D('getetag'), (e) => escapeDavText(quote(e.etag))],
      [D('lockdiscovery'), async (e) => (await this.storage.locks(owner, e.path)).map((l) => this.activeLock(located, l)).join('')],
      [D('supportedlock'), () => SUPPORTED_LOCK],
      [D('quota-used-bytes'), async () => String((await usageOf()).size)],
      [
        D('quota-available-bytes'),
        async () => {
          const u = await usageOf();
          return u.sizeLimit === undefined ? undefined : String(Math.max(0, u.sizeLimit - u.size));
        },
      ],
      [D('current-user-principal'), () => principal],
    ];
    const directoryLive = new Map<string, LiveValue<FileEntry>>([[D('resourcetype'), () => '<D:collection/>'], ...common]);
    const fileLive = new Map<string, LiveValue<FileEntry>>([
      [D('resourcetype'), () => ''],
      ...common,
      [D('getcontentlength'), (e) => String(e.size)],
      [D('getcontenttype'), (e) => escapeDavText(libmime.detectMimeType(e.name) || 'application/octet-stream')],
    ]);
    const hidden = new Set([D('quota-used-bytes'), D('quota-available-bytes'), D('current-user-principal')]);
    const dead = (e: FileEntry): Promise<FileAttribute[]> => this.storage.attributes(owner, e.path);
    // The entries of a listing share their parent: its encoded href is made once.
    let parent: string | undefined;
    let parentHref = '';
    const hrefOf = (entry: FileEntry, collection: boolean): string => {
      const slash = entry.path.lastIndexOf('/');
      if (slash < 0) return this.href(located, entry.path === '' ? [] : [entry.path], collection);
      const dir = entry.path.slice(0, slash);
      if (dir !== parent) {
        parent = dir;
        parentHref = this.href(located, dir.split('/'), true);
      }
      return `${parentHref}${encodeSegment(entry.path.slice(slash + 1))}${collection ? '/' : ''}`;
    };
    return (entry) => {
      const collection = entry.kind === 'directory';
      return {
        href: hrefOf(entry, collection),
        subject: entry,
        live: collection ? directoryLive : fileLive,
        hidden,
        dead,
      };
    };
  }

  private activeLock(located: Located, lock: FileLock): string {
    const seconds = Math.max(0, Math.round((lock.expires.getTime() - Date.now()) / 1000));
    const root = this.href(located, lock.path === '' ? [] : lock.path.split('/'), false);
    return (
      '<D:activelock>' +
      `<D:locktype><D:${lock.type === 'write' ? 'write' : 'write'}/></D:locktype>` +
      `<D:lockscope><D:${lock.scope}/></D:lockscope>` +
      `<D:depth>${lock.depth === 0 ? '0' : 'infinity'}</D:depth>` +
      (lock.ownerXml ? lock.ownerXml : '') +
      `<D:timeout>Second-${seconds}</D:timeout>` +
      `<D:locktoken><D:href>${escapeDavText(lock.token)}</D:href></D:locktoken>` +
      `<D:lockroot><D:href>${escapeDavText(root)}</D:href></D:lockroot>` +
      '</D:activelock>'
    );
  }

  private async propfind(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
    if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
    const body: PropfindRequest = parsePropfind(await request.xmlBody());
    const entry = await this.storage.stat(owner, path);
    if (!entry) return textReply(404, 'not found');
    const entries = [entry];
    if (depth === '1' && entry.kind === 'directory') entries.push(...(await this.storage.list(owner, path)));
    const node = this.nodes(request, located);
    const results: MultistatusEntry[] = [];
    for (const e of entries) {
      const n = node(e);
      results.push(propfindEntryNow(n, body) ?? (await propfindEntry(n, body)));
    }
    return multistatusReply(results);
  }

  private async proppatch(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    const updates = parseProppatch(await request.xmlBody());
    const { conditions } = await this.conditions(request, located);
    const entry = await this.storage.stat(owner, path);
    if (!entry) return textReply(404, 'not found');
    const node = this.nodes(request, located)(entry);
    const result = await proppatchEntry(node, updates, (changes) => this.storage.updateAttributes(owner, path, changes, this.httpConditions(request, entry, conditions)));
    return multistatusReply([result]);
  }

  // --- MKCOL ---

  private async mkcol(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    if (request.hasBody) return textReply(415, 'MKCOL with a body is not supported');
    if (path === '') return textReply(405, 'the storage root exists', { Allow: 'OPTIONS, PROPFIND, PROPPATCH, LOCK, UNLOCK' });
    const { conditions } = await this.conditions(request, located);
    if (await this.storage.stat(owner, path)) return textReply(405, 'the resource exists');
    await this.storage.createDirectory(owner, path, conditions);
    return { status: 201, headers: { Location: this.href(located, located.segments, true) } };
  }

  // --- COPY, MOVE ---

  private async copyMove(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    const move = request.method === 'MOVE';
    const headers = request.req.headers;
    const destinationHeader = headerOf(headers, 'destination');
    if (!destinationHeader) return textReply(400, 'the Destination header is missing');
    const destination = await this.locateHref(request, localPath(destinationHeader, headerOf(headers, 'host')), 'destination');
    if (!destination) return textReply(502, 'the destination is not in a File Storage of this server');
    if (destination.target.owner.id !== owner.id) return textReply(403, "copying or moving into another account's storage is not supported");
    const to = destination.target.path;
    if (path === '' || to === '') return textReply(403, 'the storage root cannot be copied, moved or replaced');
    if (to === path) return textReply(403, 'the source and the destination are the same');
    if (to.startsWith(`${path}/`)) return textReply(409, 'a collection cannot be copied or moved into itself');
    const overwrite = parseOverwrite(headerOf(headers, 'overwrite'));
    const depth = parseDepth(headerOf(headers, 'depth'), 'infinity');
    if (depth === '1') return textReply(400, 'Depth: 1 is not allowed for COPY and MOVE');
    if (move && depth !== 'infinity') return textReply(400, 'MOVE of a collection needs Depth: infinity');
    const { conditions } = await this.conditions(request, located);
    const entry = await this.storage.stat(owner, path);
    if (!entry) return textReply(404, 'not found');
    const preconditions = this.httpConditions(request, entry, conditions);
    const { created } = move
      ? await this.storage.move(owner, path, to, { overwrite }, preconditions)
      : await this.storage.copy(owner, path, to, { overwrite, depth: depth === '0' ? 0 : 'infinity' }, preconditions);
    return { status: created ? 201 : 204, headers: created ? { Location: this.href(destination, destination.segments, entry.kind === 'directory') } : {} };
  }

  // --- LOCK, UNLOCK ---

  private lockReply(status: number, located: Located, lock: FileLock, newLock: boolean): DavReply {
    const body = `${XML_HEADER}<D:prop xmlns:D="DAV:"><D:lockdiscovery>${this.activeLock(located, lock)}</D:lockdiscovery></D:prop>\n`;
    return xmlReply(status, body, newLock ? { 'Lock-Token': `<${lock.token}>` } : undefined);
  }

  private async lock(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    const headers = request.req.headers;
    const info = parseLockinfo(await request.xmlBody());
    const seconds = parseTimeout(headerOf(headers, 'timeout'));
    const expires = seconds === undefined ? undefined : new Date(Date.now() + Math.min(seconds, INFINITE_SECONDS) * 1000);
    if (!info) {
      // A refresh: the If header names the lock.
      if (headerOf(headers, 'if') === undefined) return textReply(400, 'a LOCK without a body refreshes a lock named in the If header');
      const { outcome } = await this.conditions(request, located);
      const locks = await this.storage.locks(owner, path);
      const lock = locks.find((l) => outcome?.tokens.includes(l.token));
      if (!lock) return xmlReply(412, errorXml(D('lock-token-matches-request-uri')));
      const refreshed = await this.storage.refreshLock(owner, lock.path, lock.token, expires);
      return this.lockReply(200, located, refreshed, false);
    }
    const depthHeader = parseDepth(headerOf(headers, 'depth'), 'infinity');
    if (depthHeader === '1') return textReply(400, 'a lock has Depth 0 or infinity');
    // The If header must hold; the lock itself conflicts with other locks whatever tokens are submitted.
    await this.conditions(request, located);
    const existed = (await this.storage.stat(owner, path)) !== undefined;
    const lock = await this.storage.lock(owner, path, request.user, {
      scope: info.scope,
      type: info.type,
      depth: depthHeader === '0' ? 0 : 'infinity',
      ownerXml: info.ownerXml,
      ...(expires ? { expires } : {}),
      create: true,
    });
    return this.lockReply(existed ? 200 : 201, located, lock, true);
  }

  private async unlock(request: DavRequest, located: Located): Promise<DavReply> {
    const { owner, path } = located.target;
    const header = headerOf(request.req.headers, 'lock-token');
    const match = header ? /^\s*<([^>]+)>\s*$/.exec(header) : null;
    if (!match) return textReply(400, 'the Lock-Token header is missing or malformed');
    const token = match[1]!;
    const lock = (await this.storage.locks(owner, path)).find((l) => l.token === token);
    if (!lock) return xmlReply(409, errorXml(D('lock-token-matches-request-uri')));
    await this.storage.unlock(owner, lock.path, token);
    return { status: 204 };
  }
}
