/**
 * The DAV core on the HTTP listener: `/dav/…`, `/.well-known/carddav|caldav`, and PROPFIND
 * of `/`. It authenticates every request with HTTP Basic (through the AuthService: the
 * login limits, `login.*` events with protocol `dav`), over TLS or from a loopback address
 * only; reads XML bodies through the one XML guard within a size limit; answers the root,
 * the principals, and hands `/dav/<prefix>/…` to the provider of that prefix.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream';
import type { Logger } from '../../log.js';
import { fullName } from '../../services/accounts.js';
import type { AuthService } from '../../services/auth.js';
import type { AccountService } from '../../services/accounts.js';
import { ServiceError } from '../../services/errors.js';
import { FileError, type FileFailure } from '../../services/files/api.js';
import type { AccountRecord } from '../../store/store.js';
import type { Config } from '../../config.js';
import { basicCredentials } from '../../ximss/bindings/http-session.js';
import { requestProfile } from '../../ximss/bindings/request-limits.js';
import { clientAddress } from '../../ximss/bindings/sockets.js';
import { isLoopback } from '../smtp/inbound.js';
import { parsePropfind } from './bodies.js';
import { HeaderError, encodeSegment, headerOf, parseDepth, pathSegments } from './headers.js';
import { accountSegment } from './mailbox-collections.js';
import { D, propfindEntry, type PropertyNode } from './properties.js';
import type { DavProvider, DavReply, DavRequest } from './provider.js';
import { DavBodyError, errorXml, escapeDavText, multistatusXml, parseDavBody, type DavElement, type MultistatusEntry } from './xml.js';

const XML_TYPE = 'application/xml; charset=utf-8';
/** The largest XML body of a DAV request (PROPFIND, PROPPATCH, LOCK…). */
const MAX_XML_BODY = 1024 * 1024;
/** How long a connection's checked Basic credentials are trusted without asking the AuthService again. */
const CREDENTIALS_TTL_MS = 60_000;
const REALM = 'ximssd';

const DAV_PATH = /^\/dav(?:\/|$)/;
const WELL_KNOWN = /^\/\.well-known\/(carddav|caldav)\/?$/i;

/** The HTTP status of a File Storage failure (see api.ts). */
export function fileStatus(reason: FileFailure, method: string): number {
  switch (reason) {
    case 'invalid-name':
      return 400;
    case 'not-found':
      return 404;
    case 'parent-missing':
    case 'not-a-directory':
      return 409;
    case 'exists':
      return method === 'MKCOL' ? 405 : 412;
    case 'is-a-directory':
      return 405;
    case 'not-empty':
      return 409;
    case 'locked':
      return 423;
    case 'precondition-failed':
      return 412;
    case 'beyond-eof':
      return 416;
    case 'limit-exceeded':
      return 507;
    case 'access-denied':
      return 403;
  }
}

export function textReply(status: number, text: string, headers?: Record<string, string>): DavReply {
  return { status, body: text.endsWith('\n') ? text : `${text}\n`, contentType: 'text/plain; charset=utf-8', headers };
}

export function xmlReply(status: number, xml: string | Buffer, headers?: Record<string, string>): DavReply {
  return { status, body: xml, contentType: XML_TYPE, headers };
}

export function multistatusReply(entries: readonly MultistatusEntry[]): DavReply {
  return xmlReply(207, multistatusXml(entries));
}

interface CachedCredentials {
  authorization: string;
  accountId: number;
  credentialsVersion: number;
  checked: number;
  /** The application password the credentials were, if one (see stillGood). */
  appPassword: string | undefined;
}

export interface DavServices {
  readonly config: Config;
  readonly auth: AuthService;
  readonly accounts: AccountService;
  readonly log: Logger;
}

/**
 * The DAV handler the HTTP listener hands its DAV requests to (see `matches`).
 * `authenticated` is told when a connection has logged in (it then stops counting as a
 * connection not logged in).
 */
export class DavHandler {
  private readonly providers = new Map<string, DavProvider>();
  private readonly credentials = new WeakMap<Socket, CachedCredentials>();
  private readonly log: Logger;

  constructor(
    private readonly services: DavServices,
    private readonly secure: boolean,
    private readonly authenticated: (req: IncomingMessage) => void,
  ) {
    this.log = services.log.child({ component: 'dav' });
  }

  register(provider: DavProvider): void {
    this.providers.set(provider.prefix, provider);
  }

  /**
   * Whether the request is the DAV handler's: anything under /dav/, the well-known URLs, a
   * PROPFIND of `/`, and an OPTIONS of `/` that is not a browser's CORS preflight (Windows'
   * WebDAV client asks `/` first).
   */
  matches(req: IncomingMessage, path: string): boolean {
    if (DAV_PATH.test(path) || WELL_KNOWN.test(path)) return true;
    if (path !== '/') return false;
    return req.method === 'PROPFIND' || (req.method === 'OPTIONS' && req.headers.origin === undefined);
  }

  private get allMethods(): string[] {
    const methods = new Set(['OPTIONS', 'PROPFIND']);
    for (const provider of this.providers.values()) for (const m of provider.methods) methods.add(m);
    return [...methods];
  }

  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    // Taken now: once the response is done or the client gone, req.socket may be null.
    const address = clientAddress(req.socket);
    let reply: DavReply;
    try {
      reply = await this.answer(req, method, path);
    } catch (err) {
      // The client went away (a PUT cut off): nobody to answer, nothing wrong here.
      // (req.destroyed alone says nothing: a body read to its end is destroyed too.)
      if (res.destroyed || !req.socket || req.socket.destroyed) {
        this.log.debug({ event: 'dav.request_aborted', method, path: path.slice(0, 200), address }, 'DAV request aborted by the client');
        return;
      }
      reply = this.failure(err, method, address, path);
    }
    this.send(req, res, method, reply);
  }

  /** An error as an HTTP answer: clients' mistakes get their status; anything else is a 500, logged. */
  private failure(err: unknown, method: string, address: string, path: string): DavReply {
    if (err instanceof FileError) {
      const status = fileStatus(err.reason, method);
      if (status === 423) return xmlReply(423, errorXml(D('lock-token-submitted')));
      return textReply(status, err.message);
    }
    if (err instanceof HeaderError || err instanceof DavBodyError) return textReply(err.status, err.message);
    if (err instanceof ServiceError) return textReply(err.code >= 400 && err.code < 600 ? err.code : 500, err.message);
    this.log.error({ event: 'dav.request_failed', method, path: path.slice(0, 200), address, err }, 'DAV request failed');
    return textReply(500, 'internal server error');
  }

  private send(req: IncomingMessage, res: ServerResponse, method: string, reply: DavReply): void {
    // A text body is encoded once (a multistatus of thousands of entries is a long string).
    const body = typeof reply.body === 'string' ? Buffer.from(reply.body, 'utf8') : reply.body;
    const isStream = body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body);
    if (res.headersSent || res.destroyed) {
      if (isStream) body.stream.destroy();
      return;
    }
    const headers: Record<string, string | number> = { ...reply.headers };
    if (body !== undefined) {
      headers['Content-Type'] ??= reply.contentType ?? XML_TYPE;
      headers['Content-Length'] ??= isStream ? body.length : Buffer.byteLength(body);
    } else if (reply.status !== 204 && reply.status !== 304) {
      headers['Content-Length'] ??= 0;
    }
    // Node discards a body left unread (a refused PUT) to keep the connection; not a large or unknown one.
    if (!req.complete && !(Number(req.headers['content-length'] ?? 'NaN') <= MAX_XML_BODY)) headers.Connection = 'close';
    res.writeHead(reply.status, headers);
    if (method === 'HEAD' || body === undefined) {
      if (isStream) body.stream.destroy();
      res.end();
    } else if (isStream) {
      pipeline(body.stream, res, () => {});
    } else {
      res.end(body);
    }
  }

  private async answer(req: IncomingMessage, method: string, path: string): Promise<DavReply> {
    const wellKnown = WELL_KNOWN.exec(path);
    // RFC 6764: the context path; the client then asks it for current-user-principal.
    if (wellKnown) return { status: 301, headers: { Location: '/dav/' } };
    if (method === 'OPTIONS') return this.options();

    const address = clientAddress(req.socket);
    if (!this.secure && !isLoopback(address)) {
      return textReply(403, 'WebDAV needs TLS: connect to the HTTPS port (passwords are never taken in clear text from another host)');
    }
    const user = await this.authenticate(req, address);
    if (!user) return textReply(401, 'authentication required', { 'WWW-Authenticate': `Basic realm="${REALM}", charset="UTF-8"` });
    this.authenticated(req);

    const trailingSlash = path.endsWith('/');
    const rawSegments = path.split('/').filter((s) => s !== '');
    const segments = pathSegments(path);
    // `/` and `/dav/`: the DAV root.
    if (segments.length === 0 || (segments.length === 1 && segments[0] === 'dav')) return this.root(req, method, user, path);
    const prefix = segments[1]!;
    const base = '/' + rawSegments.slice(0, 2).join('/');
    const request: DavRequest = {
      req,
      method,
      user,
      address,
      rawSegments: rawSegments.slice(2),
      segments: segments.slice(2),
      trailingSlash,
      base,
      hasBody: hasBody(req),
      xmlBody: () => this.xmlBody(req),
      log: this.log,
      principalHref: (account) => this.principalHref(account),
    };
    if (prefix === 'principals') return this.principals(request);
    const provider = this.providers.get(prefix);
    if (!provider) return textReply(404, 'not found');
    const reply = await provider.handle(request);
    if (method !== 'GET' && method !== 'HEAD' && method !== 'PROPFIND' && reply.status < 300) {
      this.log.info({ event: 'dav.changed', method, user: fullName(user), path: path.slice(0, 300), status: reply.status }, 'DAV change');
    }
    return reply;
  }

  private options(): DavReply {
    return {
      status: 200,
      headers: {
        DAV: ['1', '2', ...[...this.providers.values()].flatMap((p) => p.davClasses ?? [])].join(', '),
        'MS-Author-Via': 'DAV',
        Allow: this.allMethods.join(', '),
      },
    };
  }

  /**
   * The account of the request's Basic credentials, or undefined (no or wrong credentials:
   * 401). A connection's credentials once checked are trusted for a minute while the
   * account's password stays the same; every other request goes to the AuthService.
   */
  private async authenticate(req: IncomingMessage, address: string): Promise<AccountRecord | undefined> {
    const authorization = req.headers.authorization;
    const basic = basicCredentials(authorization);
    if (!basic || !authorization) return undefined;
    const cached = this.credentials.get(req.socket);
    if (cached && cached.authorization === authorization && Date.now() - cached.checked < CREDENTIALS_TTL_MS) {
      const account = await this.services.accounts.getById(cached.accountId);
      if (account && account.credentialsVersion === cached.credentialsVersion && (await this.stillGood(cached))) return account;
      this.credentials.delete(req.socket);
    }
    try {
      const checked = Date.now();
      const { account, appPassword } = await this.services.auth.checkPassword(basic.user, basic.password, undefined, address, 'dav');
      this.credentials.set(req.socket, { authorization, accountId: account.id, credentialsVersion: account.credentialsVersion, checked, appPassword });
      return account;
    } catch (err) {
      if (err instanceof ServiceError) return undefined;
      throw err;
    }
  }

  /**
   * Whether cached credentials still hold beyond the password (credentialsVersion): an
   * application password is still there and not replaced since; the main password is still
   * taken here (two-factor authentication not turned on since). Read from the store: true on
   * every node at once.
   */
  private async stillGood(cached: CachedCredentials): Promise<boolean> {
    const { auth } = this.services;
    if (cached.appPassword === undefined) return !(await auth.twoFactor.enabled(cached.accountId));
    const records = await auth.appPasswords.list(cached.accountId);
    return records.some((r) => r.name === cached.appPassword && r.created <= cached.checked);
  }

  private async xmlBody(req: IncomingMessage): Promise<DavElement | undefined> {
    const limits = this.services.config.limits;
    const limit = Math.min(MAX_XML_BODY, limits.maxRequestBytes);
    const text = await readText(req, limit);
    if (text.trim() === '') return undefined;
    return parseDavBody(text, requestProfile(limits, true).xml);
  }

  /** `/dav/principals/<account>/`: how the account's name is written in DAV URLs. */
  accountSegment(account: AccountRecord): string {
    return accountSegment(account, this.services.config.defaultDomain);
  }

  principalHref(account: AccountRecord): string {
    return `/dav/principals/${encodeSegment(this.accountSegment(account))}/`;
  }

  private collectionNode(href: string, user: AccountRecord, displayName: string): PropertyNode {
    return {
      href,
      live: new Map([
        [D('resourcetype'), () => '<D:collection/>'],
        [D('displayname'), () => escapeDavText(displayName)],
        [D('current-user-principal'), () => `<D:href>${this.principalHref(user)}</D:href>`],
      ]),
      hidden: new Set([D('current-user-principal')]),
    };
  }

  private async root(req: IncomingMessage, method: string, user: AccountRecord, path: string): Promise<DavReply> {
    if (method !== 'PROPFIND') {
      if (method === 'GET' || method === 'HEAD') return textReply(200, 'ximssd DAV: WebDAV at /dav/files/<account>/');
      return textReply(405, 'the DAV root answers PROPFIND only', { Allow: 'OPTIONS, PROPFIND' });
    }
    const depth = parseDepth(headerOf(req.headers, 'depth'), 'infinity');
    if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
    const request = parsePropfind(await this.xmlBody(req));
    const href = path === '/' ? '/' : '/dav/';
    const nodes = [this.collectionNode(href, user, 'DAV')];
    if (depth === '1' && href === '/') nodes.push(this.collectionNode('/dav/', user, 'DAV'));
    if (depth === '1' && href === '/dav/') {
      nodes.push(this.collectionNode('/dav/principals/', user, 'Principals'));
      for (const prefix of this.providers.keys()) nodes.push(this.collectionNode(`/dav/${prefix}/`, user, prefix));
    }
    return multistatusReply(await Promise.all(nodes.map((n) => propfindEntry(n, request))));
  }

  /** `/dav/principals/` and `/dav/principals/<account>/` (the user's own). */
  private async principals(request: DavRequest): Promise<DavReply> {
    const { method, user } = request;
    if (method !== 'PROPFIND') {
      if (method === 'GET' || method === 'HEAD') return textReply(200, `principal of ${fullName(user)}`);
      return textReply(405, 'principals answer PROPFIND only', { Allow: 'OPTIONS, PROPFIND' });
    }
    const depth = parseDepth(headerOf(request.req.headers, 'depth'), 'infinity');
    if (depth === 'infinity') return xmlReply(403, errorXml(D('propfind-finite-depth')));
    const body = parsePropfind(await request.xmlBody());
    if (request.segments.length > 1) return textReply(404, 'not found');
    const nodes: PropertyNode[] = [];
    if (request.segments.length === 0) {
      nodes.push(this.collectionNode('/dav/principals/', user, 'Principals'));
      if (depth === '1') nodes.push(await this.principalNode(user));
    } else {
      const account = await this.services.accounts.find(request.segments[0]!, this.services.config.defaultDomain);
      if (!account) return textReply(404, 'no such account');
      if (account.id !== user.id) return textReply(403, "another account's principal");
      nodes.push(await this.principalNode(user));
    }
    return multistatusReply(await Promise.all(nodes.map((n) => propfindEntry(n, body))));
  }

  private async principalNode(user: AccountRecord): Promise<PropertyNode> {
    const href = this.principalHref(user);
    const live = new Map<string, () => string>([
      [D('resourcetype'), () => '<D:collection/><D:principal/>'],
      [D('displayname'), () => escapeDavText(user.realName ?? user.name)],
      [D('principal-URL'), () => `<D:href>${href}</D:href>`],
      [D('current-user-principal'), () => `<D:href>${href}</D:href>`],
    ]);
    for (const provider of this.providers.values()) {
      const extra = await provider.principalProperties?.(user, user, (a) => this.principalHref(a));
      for (const [name, xml] of extra ?? []) live.set(name, () => xml);
    }
    return { href, live, hidden: new Set([D('current-user-principal')]) };
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** Reads a text body of at most `limit` bytes (DavBodyError 413 past it, without reading the rest). */
export function readText(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new DavBodyError(`the body is larger than ${limit} bytes`, 413));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        reject(new DavBodyError(`the body is larger than ${limit} bytes`, 413));
      } else {
        chunks.push(chunk);
      }
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size).toString('utf8')));
    req.once('error', reject);
  });
}
