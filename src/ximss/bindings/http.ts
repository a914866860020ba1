import { once } from 'node:events';
import http from 'node:http';
import net, { type BlockList } from 'node:net';
import { pipeline } from 'node:stream';
import tls from 'node:tls';
import type { Authenticated } from '../../services/auth.js';
import { BLOCKED, type Admission } from '../../services/connections.js';
import { ServiceError } from '../../services/errors.js';
import type { XmlElement } from '../../xml/element.js';
import { Conversation, type TransportControl } from '../conversation.js';
import { SECOND_FACTOR_REQUIRED, type Engine } from '../engine.js';
import { holdForSecondFactor, needsSecondFactor, sessionMessageOf } from '../ops/login-security.js';
import { errorResponse } from '../protocol.js';
import { nodeOfUrlId, sessionTag, type AsyncSink, type Session } from '../session.js';
import {
  HttpSession,
  SESSION_GONE,
  endedHttpSession,
  httpSessionOf,
  basicCredentials,
  isStreamBody,
  parseBatch,
  readBatch,
  runBatch,
  textReply,
  ximssError,
  ximssReply,
  type HttpReply,
} from './http-session.js';
import { CLIENT_ADDRESS_HEADER, CLUSTER_KEY_HEADER, forwardRequest } from './http-forward.js';
import { serveDownload, serveExport, serveMimePart, servePfxExport, serveProfile, storeUpload } from './http-resources.js';
import { RESET_PATH, resetPasswordPage } from './reset-page.js';
import type { TcpListener } from './tcp.js';
import { batchProfile } from './request-limits.js';
import { clientAddress, listen, refuseConnection, serverTls } from './sockets.js';
import { addressList, allowed } from '../../services/client-address.js';
import type { Readiness } from './health.js';
import type { Logger } from '../../log.js';
import { createDavHandler, type DavHandler } from '../../transports/dav/index.js';

const XML_TYPE = 'text/xml; charset=utf-8';
const COOKIE_NAME = 'CGateProWebUser';
/** How long in-flight answers may take to finish when the listener closes. */
const CLOSE_GRACE_MS = 2000;

const LOGIN_PATH = /^\/ximsslogin\/?$/i;
/** The operator's endpoints (exact, lower case; the XIMSS paths are /XIMSSLogin/ and /Session/…). */
const HEALTH_PATH = '/healthz';
const READY_PATH = '/readyz';
const METRICS_PATH = '/metrics';
const SESSION_PATH = /^\/session\/([^/]+)(?:\/(.*))?$/i;
const STATUS_TEXT: Record<number, string> = { [SESSION_GONE]: 'Session Not Found' };

/** Request parameters by lower-cased name: clients spell `userName`, `username`, `sessionID`... */
type Params = Map<string, string>;

/** Collects parameters; a later source (the form body) overrides an earlier one (the query). */
function paramsOf(...sources: URLSearchParams[]): Params {
  const params: Params = new Map();
  for (const source of sources) for (const [name, value] of source) params.set(name.toLowerCase(), value);
  return params;
}

/** A yes/no parameter: `1`, `yes`, `true` or a bare name mean yes. */
function flag(value: string | undefined): boolean {
  return value !== undefined && !['0', 'no', 'false', 'off'].includes(value.toLowerCase());
}

/** The path of a request URL for the log: without its query, a session's urlID shortened (see sessionTag). */
function pathOf(url: string | undefined): string {
  const path = url ?? '/';
  const question = path.indexOf('?');
  const bare = (question < 0 ? path : path.slice(0, question)).slice(0, 200);
  return bare.replace(/^\/Session\/([^/]+)/, (_, id: string) => `/Session/${sessionTag(id)}`);
}

function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const values: string[] = [];
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) values.push(pair.slice(eq + 1).trim());
  }
  return values;
}

/**
 * Cross-origin web clients are allowed, but without credentials: a browser would otherwise
 * attach a remembered Basic password to another site's login request and let that site
 * read the new session's urlID.
 */
function corsHeaders(req: http.IncomingMessage): Record<string, string> {
  return req.headers.origin ? { 'Access-Control-Allow-Origin': '*' } : {};
}

type Body = { kind: 'ok'; data: Buffer } | { kind: 'tooLarge' } | { kind: 'aborted' };

/** Reads the request body, giving up (without reading the rest) past `limit` bytes. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Body> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve({ kind: 'tooLarge' });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (result: Body): void => {
      req.removeAllListeners('data');
      req.removeAllListeners('end');
      resolve(result);
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) stop({ kind: 'tooLarge' });
      else chunks.push(chunk);
    });
    req.on('end', () => stop({ kind: 'ok', data: Buffer.concat(chunks, size) }));
    req.on('error', () => stop({ kind: 'aborted' }));
    req.on('close', () => {
      if (!req.complete) stop({ kind: 'aborted' });
    });
  });
}

/** Per-login choices of the client: where requests may come from, and whether a cookie is used. */
interface LoginOptions {
  ipWatch: boolean;
  useCookie: boolean;
}

function loginOptions(params: Params): LoginOptions {
  return {
    ipWatch: !flag(params.get('disableipwatch')),
    useCookie: flag(params.get('enableusecookie')) && !flag(params.get('disableusecookie')),
  };
}

/**
 * The transport of a pre-login batch posted to /XIMSSLogin/: a `login` in the batch
 * starts an HTTP session with the options of that request.
 */
class LoginTransport implements TransportControl {
  readonly kind = 'http' as const;
  /** The session a `login` of the batch started. */
  started: Session | undefined;

  constructor(
    private readonly listener: HttpListener,
    private readonly options: LoginOptions,
    private readonly address: string,
  ) {}

  asyncSink(session: Session): AsyncSink {
    this.started = session;
    return this.listener.startHttpSession(session, this.options, this.address);
  }

  canStartTls(): boolean {
    return false;
  }

  startTls(): void {}

  close(): void {}
}

/**
 * XIMSS over HTTP, as the existing web clients use it: login at /XIMSSLogin/, `<XIMSS>`
 * batches to /Session/<urlID>/sync and /async, long polls at /Session/<urlID>/ or /get.
 * Every request of a session goes through that session's one conversation, so batches run
 * in order. A connection whose first byte is `<` is a raw XIMSS connection and is handed
 * to the TCP binding.
 */
export class HttpListener {
  private readonly server: net.Server;
  private readonly http: http.Server;
  private readonly secure: boolean;
  /** Connections not yet sniffed, and the HTTP ones: closed by close(). */
  private readonly unsniffed = new Set<net.Socket>();
  private readonly httpSockets = new Set<net.Socket>();
  /** HTTP connections still counted as not logged in (released by their first authenticated request). */
  private readonly admissions = new WeakMap<net.Socket, Admission>();
  private readonly active = new Set<http.ServerResponse>();
  /** Polls waiting on this listener, answered by close(). */
  private readonly polls = new Set<{ state: HttpSession }>();
  private closing = false;
  private readonly log: Logger;
  /** Who may read /metrics (config.metrics.allow). */
  private readonly metricsAllow: BlockList;
  /** What /readyz reports: set by the server once it is built (until then: not ready). */
  readiness: Readiness | undefined;
  /** WebDAV and CardDAV: /dav/…, /.well-known/carddav|caldav, PROPFIND of /. */
  private readonly dav: DavHandler;
  /**
   * XMPP over WebSocket (RFC 7395): upgrades on /xmpp-websocket are handed to it (the XMPP
   * service's XmppListener.upgrade, set by the server); without it they are refused.
   */
  xmppUpgrade: ((req: http.IncomingMessage, socket: net.Socket, head: Buffer, options: { secure: boolean; releaseAdmission(): void }) => void) | undefined;
  /**
   * SIP over WebSocket (RFC 7118): upgrades on /sip are handed to it (the SIP service's
   * upgrade, set by the server when SIP is on); without it they are refused.
   */
  sipUpgrade: ((req: http.IncomingMessage, socket: net.Socket, head: Buffer, options: { secure: boolean }) => void) | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly tcp: TcpListener,
    secureContext?: tls.SecureContext,
  ) {
    this.secure = secureContext !== undefined;
    this.log = engine.server.log.child({ component: 'http' });
    this.metricsAllow = addressList(engine.server.config.metrics.allow);
    this.dav = createDavHandler(engine.server, this.secure, (req) => this.authenticated(req));
    const limits = this.limits;
    this.http = http.createServer(
      {
        keepAliveTimeout: limits.httpKeepAliveSeconds * 1000,
        headersTimeout: limits.httpHeadersSeconds * 1000,
        requestTimeout: limits.httpRequestSeconds * 1000,
        connectionsCheckingInterval: Math.min(1000, limits.httpHeadersSeconds * 250),
      },
      (req, res) => this.handle(req, res),
    );
    // An inactivity limit beyond the longest poll.
    this.http.timeout = (limits.maxPollSeconds + 30) * 1000;
    this.http.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.upgrade(req, socket, head));
    // The listener hands connections to the HTTP server itself and never calls its listen():
    // the event starts Node's checks of the header and request timeouts all the same.
    this.http.emit('listening');
    const sniff = (socket: net.Socket, admission: Admission): void => {
      this.unsniffed.add(socket);
      socket.setTimeout(limits.firstRequestSeconds * 1000, () => socket.destroy());
      socket.once('data', (first: Buffer) => {
        this.unsniffed.delete(socket);
        socket.setTimeout(0);
        if (first[0] === 0x3c /* < */) {
          this.tcp.adopt(socket, admission, first);
        } else {
          this.httpSockets.add(socket);
          this.admissions.set(socket, admission);
          socket.once('close', () => {
            this.httpSockets.delete(socket);
            admission.release();
          });
          socket.pause();
          socket.unshift(first);
          this.http.emit('connection', socket);
          socket.resume();
        }
      });
      socket.once('close', () => {
        if (this.unsniffed.delete(socket)) admission.release();
      });
      socket.on('error', () => socket.destroy());
    };
    this.server = net.createServer((raw) => {
      const admission = engine.server.connections.admit(clientAddress(raw), 'http');
      if (typeof admission === 'string') {
        if (secureContext || admission === BLOCKED) raw.destroy();
        else refuseConnection(raw, `HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: ${admission.length + 1}\r\nConnection: close\r\nRetry-After: 10\r\n\r\n${admission}\n`);
        return;
      }
      sniff(secureContext ? serverTls(raw, secureContext) : raw, admission);
    });
  }

  /** A WebSocket upgrade: XMPP's and SIP's on their paths; nothing else is served over WebSocket. */
  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const path = pathOf(req.url);
    if (path === '/sip' && this.sipUpgrade && !this.closing) {
      // The connection is SIP's from now on: SIP's own connection limits count it, not the
      // limit on connections not logged in (a SIP client stays connected for its registration).
      this.httpSockets.delete(socket);
      socket.setTimeout(0);
      this.authenticated(req);
      this.sipUpgrade(req, socket, head, { secure: this.secure });
      return;
    }
    if (path !== '/xmpp-websocket' || !this.xmppUpgrade || this.closing) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    // The connection is the XMPP stream's from now on (its own timeouts, its own close).
    this.httpSockets.delete(socket);
    socket.setTimeout(0);
    this.xmppUpgrade(req, socket, head, { secure: this.secure, releaseAdmission: () => this.authenticated(req) });
  }

  /** The connection has shown it belongs to a logged-in client: it no longer counts as not logged in. */
  private authenticated(req: http.IncomingMessage): void {
    const admission = this.admissions.get(req.socket);
    if (!admission) return;
    this.admissions.delete(req.socket);
    admission.release();
  }

  private get limits() {
    return this.engine.server.config.limits;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.active.add(res);
    res.once('close', () => this.active.delete(res));
    this.route(req, res).catch((err: unknown) => {
      this.log.error({ event: 'http.request_failed', method: req.method, path: pathOf(req.url), address: clientAddress(req.socket), err }, 'request failed');
      this.send(req, res, textReply(500, 'internal server error\n'));
    });
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const question = url.indexOf('?');
    const path = question < 0 ? url : url.slice(0, question);
    const query = new URLSearchParams(question < 0 ? '' : url.slice(question + 1));
    const params = paramsOf(query);

    if (req.method === 'GET' && (path === HEALTH_PATH || path === READY_PATH || path === METRICS_PATH)) return this.operatorRequest(req, res, path);
    if (this.dav.matches(req, path)) return this.dav.handle(req, res, path);
    if (req.method === 'OPTIONS') return this.preflight(req, res);
    // PUT is for uploads (/Session/<id>/UPLOAD/<uploadID>) only; HEAD for downloads (/Session/<id>/DOWNLOAD/<file>).
    if (
      req.method !== 'GET' &&
      req.method !== 'POST' &&
      !(req.method === 'PUT' && /^\/session\/[^/]+\/upload\//i.test(path)) &&
      !(req.method === 'HEAD' && /^\/session\/[^/]+\/download\//i.test(path))
    ) {
      return this.send(req, res, textReply(405, 'only GET and POST are supported (and PUT for uploads)\n', { Allow: 'GET, POST, OPTIONS' }));
    }
    if (LOGIN_PATH.test(path)) {
      const text = await this.body(req, res, this.limits.preLoginRequestBytes);
      if (text !== undefined) this.send(req, res, await this.login(req, query, text));
      else if (res.statusCode === 413) this.engine.server.connections.reportAbuse(clientAddress(req.socket), `the request is larger than ${this.limits.preLoginRequestBytes} bytes`);
      return;
    }
    if (RESET_PATH.test(path)) {
      const text = req.method === 'POST' ? await this.body(req, res, this.limits.preLoginRequestBytes) : '';
      if (text !== undefined) this.send(req, res, await resetPasswordPage(this.engine.server.passwordRecovery, req.method ?? 'GET', query, text));
      return;
    }
    const match = SESSION_PATH.exec(path);
    if (match) return this.sessionRequest(req, res, match[1]!, match[2] ?? '', params);
    this.send(req, res, textReply(404, 'not found\n'));
  }

  /**
   * /healthz (the process serves), /readyz (the store answers, every listener is up, not
   * shutting down) and /metrics (Prometheus text, for the addresses of metrics.allow only;
   * 404 for the others and when it is disabled, like any unknown path).
   */
  private async operatorRequest(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (path === HEALTH_PATH) return this.send(req, res, textReply(200, 'ok\n'));
    if (path === READY_PATH) {
      const notReady = this.closing ? 'the server is shutting down' : this.readiness ? await this.readiness.check() : 'the server is starting';
      return this.send(req, res, notReady === undefined ? textReply(200, 'ready\n') : textReply(503, `not ready: ${notReady}\n`));
    }
    const { config, metrics } = this.engine.server;
    // The socket's address: a forwarding header is never trusted here.
    if (!config.metrics.enabled || !allowed(this.metricsAllow, clientAddress(req.socket))) return this.send(req, res, textReply(404, 'not found\n'));
    const text = await metrics.text();
    this.send(req, res, { status: 200, body: text, contentType: metrics.contentType });
  }

  private preflight(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(204, {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Methods': 'GET, POST, PUT, OPTIONS',
      'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? 'Content-Type, Authorization',
      'Access-Control-Max-Age': '600',
      ...(this.closing ? { Connection: 'close' } : {}),
    });
    res.end();
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse, reply: HttpReply): void {
    const body = reply.body;
    if (res.headersSent || res.destroyed) {
      if (isStreamBody(body)) body.stream.destroy();
      return;
    }
    const headers: Record<string, string | number> = {
      'Content-Type': reply.contentType ?? XML_TYPE,
      'Content-Length': isStreamBody(body) ? body.length : Buffer.byteLength(body),
      'Cache-Control': 'no-store',
      ...corsHeaders(req),
      ...reply.headers,
    };
    if (this.closing) headers.Connection = 'close';
    res.writeHead(reply.status, STATUS_TEXT[reply.status], headers);
    // A stream (a spooled file) is sent as it is read; a failed read cuts the connection.
    if (isStreamBody(body)) pipeline(body.stream, res, () => {});
    else res.end(body);
  }

  /** Reads the body; answers 413 itself (closing the connection: the rest stays unread). */
  private async body(req: http.IncomingMessage, res: http.ServerResponse, limit: number): Promise<string | undefined> {
    return (await this.bodyBytes(req, res, limit))?.toString('utf8');
  }

  private async bodyBytes(req: http.IncomingMessage, res: http.ServerResponse, limit: number): Promise<Buffer | undefined> {
    const body = await readBody(req, limit);
    if (body.kind === 'ok') return body.data;
    if (body.kind === 'tooLarge') {
      const reply = ximssError(`the request is larger than ${limit} bytes`, 413);
      this.send(req, res, { ...reply, headers: { Connection: 'close' } });
    }
    return undefined;
  }

  // --- /XIMSSLogin/ ---

  /** A login by parameters (query, form body, Basic authorization), or a pre-login batch. */
  private async login(req: http.IncomingMessage, query: URLSearchParams, text: string): Promise<HttpReply> {
    const address = clientAddress(req.socket);
    if (text.trimStart().startsWith('<')) return this.preLoginBatch(req, text, paramsOf(query), address);
    const params = paramsOf(query, new URLSearchParams(text));

    const errorAsXml = flag(params.get('errorasxml'));
    try {
      const auth = await this.authenticate(params, req.headers.authorization, address);
      const options = loginOptions(params);
      // An account with two-factor authentication: only for a client that says it can (x2auth=1).
      const secondFactor = await needsSecondFactor(this.engine.server, auth, flag(params.get('x2auth')), address);
      const session = await this.openSession(req, auth, params, options, address, secondFactor);
      this.authenticated(req);
      return {
        ...ximssReply([sessionMessageOf(this.engine.server, session).toString()]),
        headers: this.cookieHeader(session, options),
      };
    } catch (err) {
      if (!(err instanceof ServiceError)) throw err;
      if (errorAsXml) return ximssReply([errorResponse(undefined, err.message, err.code)]);
      // Only a request without credentials in parameters asks the browser for Basic ones.
      const challenge: Record<string, string> = params.has('username') ? {} : { 'WWW-Authenticate': 'Basic realm="XIMSS", charset="UTF-8"' };
      return textReply(401, `${err.message}\n`, challenge);
    }
  }

  /**
   * Checks the credentials of a login request: a nonce from listFeatures with its CRAM-MD5
   * digest (`hexdigest`, or `user hexdigest`), a name and password, or Basic authorization.
   */
  private async authenticate(params: Params, authorization: string | undefined, address: string): Promise<Authenticated> {
    const { auth, nonces } = this.engine.server;
    const userName = params.get('username');
    const nonce = params.get('nonce');
    const authData = params.get('authdata');
    if (nonce !== undefined && authData !== undefined) {
      if (!nonces.consume(nonce)) throw new ServiceError('the nonce is unknown or has expired: ask listFeatures for a new one');
      const answer = Buffer.from(authData, 'base64').toString('utf8').trim();
      if (answer.includes(' ')) return auth.checkCramMd5(nonce, answer, undefined, address, { protocol: 'http', mechanism: 'cram-md5' });
      if (!userName) throw new ServiceError('the userName parameter is missing');
      return auth.checkNonceDigest(userName, nonce, answer, undefined, address);
    }
    const password = params.get('password');
    if (userName !== undefined && password !== undefined) return auth.checkPassword(userName, password, undefined, address, 'http');
    const basic = basicCredentials(authorization);
    if (basic) return auth.checkPassword(basic.user, basic.password, undefined, address, 'http');
    throw new ServiceError('no credentials: send userName and password, or HTTP Basic authorization');
  }

  /**
   * The session for a successful login: the live HTTP session named by `sessionid` when it
   * belongs to the same account, else a new one. `killOld` ends the account's others.
   */
  private async openSession(
    req: http.IncomingMessage,
    auth: Authenticated,
    params: Params,
    options: LoginOptions,
    address: string,
    secondFactor: boolean,
  ): Promise<Session> {
    const { sessions } = this.engine.server;
    const named = sessions.get(params.get('sessionid') ?? '');
    // Reused only when this login could have made it: a session past its second factor is not
    // for a login that still needs one, and one guarded by a cookie or an address only for
    // the client that holds it (a urlID alone must not open it, nor move its guards).
    const reused =
      named &&
      !named.closed &&
      named.account.id === auth.account.id &&
      httpSessionOf(named) &&
      (!secondFactor || named.secondFactorPending) &&
      this.guardAllows(named, req)
        ? named
        : undefined;
    // Ended first, so that the new session fits within the per-account limit.
    // Not before the second factor: a password alone must not end the owner's sessions.
    const killOld = flag(params.get('killold'));
    if (killOld && !secondFactor) await sessions.killOld(auth.account.id, reused);
    if (reused) {
      reused.touch();
      applyGuards(reused, options, address);
      return reused;
    }
    const session = await sessions.create(auth, 'http', address, params.get('version'), secondFactor);
    session.attach(this.startHttpSession(session, options, address));
    if (secondFactor) {
      holdForSecondFactor(this.engine.server, session);
      // Done once the second factor is right (SessionManager.promote).
      session.killOldOnCompletion = killOld;
    }
    // Alerts posted while the user was away wait in the queue for the first poll.
    void sessions.deliverAlerts(session.account.id);
    return session;
  }

  /** Gives a new session its HTTP state (the sink to attach) and guards. */
  startHttpSession(session: Session, options: LoginOptions, address: string): HttpSession {
    const state = new HttpSession(this.engine, session, this.secure);
    applyGuards(session, options, address);
    return state;
  }

  private cookieHeader(session: Session, options: LoginOptions): Record<string, string> {
    if (!options.useCookie) return {};
    const secure = this.secure ? '; Secure' : '';
    return { 'Set-Cookie': `${COOKIE_NAME}=${session.urlID}; Path=/; HttpOnly${secure}` };
  }

  /** Pre-login operations (listFeatures, or a whole login exchange) posted as a batch. */
  private async preLoginBatch(req: http.IncomingMessage, text: string, params: Params, address: string): Promise<HttpReply> {
    const requests = parseBatch(text, batchProfile(this.limits, false, this.limits.preLoginRequests));
    if (typeof requests === 'string') {
      this.engine.server.connections.reportAbuse(address, requests);
      return ximssError(requests);
    }
    const options = loginOptions(params);
    const transport = new LoginTransport(this, options, address);
    const conversation = new Conversation(this.engine, address, this.secure, transport);
    const reply = ximssReply(await runBatch(conversation, requests, this.limits.maxAnswerBytes));
    if (!transport.started) return reply;
    this.authenticated(req);
    return { ...reply, headers: this.cookieHeader(transport.started, options) };
  }

  // --- /Session/<urlID>/... ---

  private async sessionRequest(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    urlID: string,
    rest: string,
    params: Params,
  ): Promise<void> {
    const resource = rest.split('/', 1)[0]!.toLowerCase();
    const isPoll = resource === '' || resource === 'get';
    const session = this.engine.server.sessions.get(urlID);
    if (!session || session.closed) {
      // A session ended by the server keeps its `<bye/>` for the next poll, for a while.
      const ended = isPoll ? endedHttpSession(this.engine.server.sessions, urlID) : undefined;
      if (ended && this.guardAllows(ended.session, req)) return this.poll(req, res, ended, params);
      // Another node's session: that node answers (unless this came from a node already).
      const { node } = this.engine.server;
      const owner = session ? undefined : nodeOfUrlId(urlID);
      if (owner !== undefined && owner !== node.id && req.headers[CLUSTER_KEY_HEADER] === undefined) {
        const peer = await node.peer(owner);
        if (peer && (await forwardRequest(req, res, peer, node.key, clientAddress(req.socket)))) return;
      }
      return this.sessionGone(req, res);
    }
    if (!this.guardAllows(session, req)) return this.sessionGone(req, res);
    this.authenticated(req);
    session.touch();
    if (resource === 'kill') {
      this.engine.server.sessions.end(session, false, 'kill');
      return this.send(req, res, ximssReply([]));
    }
    // Until the second factor, only its requests (sync, async, polls) and KILL.
    if (session.secondFactorPending && !(isPoll || resource === 'sync' || resource === 'async')) {
      return this.send(req, res, textReply(403, `${SECOND_FACTOR_REQUIRED}\n`));
    }
    const resourcePath = rest.slice(resource.length + 1);
    if (resource === 'mime') {
      return this.send(req, res, await serveMimePart(this.engine.server, session, resourcePath, params, req.headers.range));
    }
    if (resource === 'download') {
      const ifNoneMatch = req.headers['if-none-match'];
      return this.send(req, res, await serveDownload(this.engine.server, session, resourcePath, params, req.headers.range, { method: req.method, ifNoneMatch }));
    }
    if (resource === 'export') return this.send(req, res, await serveExport(this.engine.server, session, resourcePath, params));
    if (resource === 'profile') return this.send(req, res, await serveProfile(this.engine.server, session, resourcePath));
    if (resource === 'certandkey.pfx') return this.send(req, res, await servePfxExport(this.engine.server, session, params));
    if (resource === 'upload') {
      if (req.method === 'GET') {
        return this.send(req, res, textReply(405, 'upload with PUT or POST\n', { Allow: 'PUT, POST' }));
      }
      // The body is spooled to disk as it arrives, within the upload limits.
      return this.send(req, res, await storeUpload(session, resourcePath, req, params, this.log));
    }
    const state = httpSessionOf(session);
    const isRequest = isPoll || resource === 'sync' || resource === 'async';
    if (!isRequest) return this.send(req, res, textReply(404, 'not found\n'));
    // A session started on a TCP connection has no HTTP side to talk to.
    if (!state || state.hasEnded) return this.sessionGone(req, res);

    if (isPoll) return this.poll(req, res, state, params);
    const limit = this.limits.maxPendingRequests;
    const batch = await readBatch(req, batchProfile(this.limits, true, limit - state.pendingRequests));
    if (batch.kind === 'aborted') return;
    if (batch.kind === 'refused') {
      // The rest of a refused body stays unread: the connection cannot carry another request.
      return this.send(req, res, batch.unread ? { ...batch.reply, headers: { Connection: 'close' } } : batch.reply);
    }
    const requests = batch.requests;
    // Requests that came in meanwhile on other connections may have filled the queue.
    if (state.pendingRequests + requests.length > limit) {
      return this.send(req, res, ximssError(`too many requests: at most ${limit} may be pending`));
    }
    const reqSeq = params.get('reqseq');
    const run = (): Promise<HttpReply> =>
      resource === 'sync' ? state.sync(requests, flag(params.get('syncasync'))) : this.async(state, requests);
    const reply = reqSeq === undefined ? await run() : await state.remember(`${resource}:${reqSeq}`, run);
    this.send(req, res, reply);
  }

  /**
   * The session's guards: the login address unless the client disabled the IP watch, and
   * the session cookie once the session uses one.
   */
  /** The client's address: the socket's, or the one a forwarding node of the cluster vouches for. */
  private requestAddress(req: http.IncomingMessage): string {
    const forwarded = req.headers[CLIENT_ADDRESS_HEADER];
    if (typeof forwarded === 'string' && this.engine.server.node.isClusterKey(req.headers[CLUSTER_KEY_HEADER])) return forwarded;
    return clientAddress(req.socket);
  }

  private guardAllows(session: Session, req: http.IncomingMessage): boolean {
    if (session.ipGuard !== undefined && this.requestAddress(req) !== session.ipGuard) return false;
    if (session.cookieGuard !== undefined && !cookieValues(req.headers.cookie, COOKIE_NAME).includes(session.cookieGuard)) {
      return false;
    }
    return true;
  }

  private sessionGone(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.send(req, res, textReply(SESSION_GONE, 'unknown or closed session\n'));
  }

  private async async(state: HttpSession, requests: readonly XmlElement[]): Promise<HttpReply> {
    state.submitAsync(requests);
    return ximssReply([]);
  }

  private poll(req: http.IncomingMessage, res: http.ServerResponse, state: HttpSession, params: Params): void {
    const ack = Number.parseInt(params.get('ackseq') ?? '', 10);
    const wait = Number(params.get('maxwait') ?? '0');
    const waitSeconds = Number.isFinite(wait) ? Math.min(Math.max(wait, 0), this.limits.maxPollSeconds) : 0;
    const entry = { state };
    this.polls.add(entry);
    const cancel = state.poll(Number.isNaN(ack) ? undefined : ack, waitSeconds * 1000, (reply) => {
      this.polls.delete(entry);
      this.send(req, res, reply);
    });
    res.once('close', () => {
      if (!res.writableEnded) {
        cancel();
        this.polls.delete(entry);
      }
    });
  }

  listen(port: number, host: string): Promise<number> {
    return listen(this.server, port, host);
  }

  /** Whether the listener accepts connections (readiness). */
  get listening(): boolean {
    return this.server.listening && !this.closing;
  }

  /** Stops accepting, answers waiting polls, lets answers in flight finish, closes connections. */
  async close(): Promise<void> {
    this.closing = true;
    this.http.close(); // stops the timeout checks (the listener itself is this.server)
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const { state } of [...this.polls]) state.releasePoll();
    for (const socket of this.unsniffed) socket.destroy();
    // Answers in flight get CLOSE_GRACE_MS to finish; then the connections are cut.
    const answered = Promise.all([...this.active].map((res) => once(res, 'close')));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([answered, new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    for (const socket of this.httpSockets) socket.destroy();
    await closed;
  }
}

function applyGuards(session: Session, options: LoginOptions, address: string): void {
  session.ipGuard = options.ipWatch ? address : undefined;
  session.cookieGuard = options.useCookie ? session.urlID : undefined;
}
