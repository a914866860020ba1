import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { AuthService } from '../../services/auth.js';
import { BLOCKED, type Admission, type ConnectionLimiter } from '../../services/connections.js';
import { escapeText, type XmlElement } from '../../xml/element.js';
import { clientAddress, listen, refuseConnection, serverTls } from '../../ximss/bindings/sockets.js';
import { C2sStream, StreamClock, type C2sTransport, type XmppContext } from './c2s.js';
import type { StanzaSessions } from './stanza-session.js';
import { ResumptionRegistry } from './stream-management.js';
import { NS_STREAM_ERRORS, NS_STREAMS, StreamError, XmppStreamParser, namespaceOf, type StanzaLimits, type StreamHandler } from './stream.js';
import { ReadGate } from './throttle.js';
import { XmppWebSockets, type UpgradeOptions } from './websocket.js';

/** A connection whose client does not read is dropped once this much output waits for it. */
const OUTPUT_LIMIT = 8 * 1024 * 1024;
/** How long a closing connection stays open for the client to read the end (and answer it). */
const LINGER_MS = 1000;
/** How long close() waits for streams to end before it drops them. */
const CLOSE_GRACE_MS = 2000;
/**
 * Plaintext bytes in one TLS record we send (OpenSSL's default is 16 KiB). OpenSSL keeps a write
 * buffer of that size for each connection as long as it lives: 4 KiB saves some 2.5 KB of
 * resident memory per idle client (measured: bench/README.md, XMPP), and a stanza is rarely
 * larger; a larger one takes a few records. nginx's `ssl_buffer_size 4k` is the same trade.
 */
const TLS_RECORD_BYTES = 4096;

/** What the XMPP client service needs of the server (src/server.ts builds it). */
export interface XmppListenerOptions {
  /** Where bound resources' stanzas go (rosters, presence, routing: the lead's session.ts). */
  sessions: StanzaSessions;
  auth: AuthService;
  /** The server certificate: STARTTLS and direct TLS (none: neither is offered). */
  tls: tls.SecureContext | undefined;
  /** config.xmpp, config.limits, config.defaultDomain. */
  config: Config;
  /** Whether the server serves a domain (the store's domains). */
  isLocalDomain(domain: string): Promise<boolean>;
  log: Logger;
  metrics?: Metrics;
  /** The per-address limit of connections not yet authenticated, shared with the other protocols. */
  connections: ConnectionLimiter;
}

/**
 * XMPP over TCP: one XML stream each way, STARTTLS on the plain port, TLS from the first
 * byte on the direct-TLS port.
 */
class TcpTransport implements C2sTransport, StreamHandler {
  readonly framed = false;
  readonly remoteAddress: string;
  stream!: C2sStream;
  private readonly parser: XmppStreamParser;
  private readonly gate: ReadGate;
  /** After `<starttls/>`, a stream error or the end: input is ignored until the stream restarts. */
  private stopped = false;
  private ending = false;

  constructor(
    private socket: net.Socket,
    readonly kind: 'tcp' | 'tls',
    private readonly tlsContext: tls.SecureContext | undefined,
    private admission: Admission | undefined,
    config: Config,
  ) {
    this.remoteAddress = clientAddress(socket);
    if (socket instanceof tls.TLSSocket) socket.setMaxSendFragment(TLS_RECORD_BYTES);
    this.parser = new XmppStreamParser(this);
    this.gate = new ReadGate(socket, config.xmpp);
    socket.setNoDelay(true);
  }

  /** Starts reading (once the stream exists). */
  attach(): void {
    const socket = this.socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
    socket.on('end', () => this.stream.inputEnded());
  }

  // --- what the parser reads (StreamHandler) ---

  streamHeader(attrs: Record<string, string>): void {
    this.stream.header(attrs);
  }

  stanza(element: XmlElement): void {
    this.stream.element(element, namespaceOf(element, this.parser.prefix));
  }

  streamEnd(): void {
    this.stream.end();
  }

  get limits(): StanzaLimits {
    return this.stream.limits;
  }

  get secure(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  get canStartTls(): boolean {
    return this.kind === 'tcp' && this.tlsContext !== undefined && !this.secure;
  }

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    this.stream.activity();
    this.gate.read(chunk.length);
    try {
      this.parser.write(chunk);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      this.stopReading();
      this.stream.failed(err);
    }
  }

  write(text: string): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(text);
    if (this.socket.writableLength > OUTPUT_LIMIT) this.socket.destroy();
  }

  startTls(): void {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.resume();
    const secure = serverTls(plain, this.tlsContext!);
    secure.setMaxSendFragment(TLS_RECORD_BYTES);
    this.socket = secure;
    this.parser.reset();
    this.stopped = false;
    this.attach();
    this.gate.retarget(this.socket);
  }

  restart(): void {
    this.parser.reset();
    this.stopped = false;
  }

  stopReading(): void {
    this.stopped = true;
    this.parser.stop();
  }

  pause(): void {
    this.gate.pause();
  }

  resume(): void {
    this.gate.resume();
  }

  end(): void {
    if (this.ending) return;
    this.ending = true;
    this.gate.stop();
    this.releaseAdmission();
    const socket = this.socket;
    // The client answers with its own `</stream:stream>`; it is not waited for long.
    socket.end(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
    setTimeout(() => socket.destroy(), LINGER_MS * 5).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  releaseAdmission(): void {
    this.admission?.release();
    this.admission = undefined;
  }

  private onClose(): void {
    this.gate.stop();
    this.releaseAdmission();
    this.stream.lost();
  }
}

/**
 * The XMPP client service: the STARTTLS port (`listen`), the direct-TLS port (`listenTls`,
 * XEP-0368) and XMPP over WebSocket (`upgrade`, called by the HTTP listener for
 * `/xmpp-websocket`), sharing the resumable sessions of stream management.
 *
 * A connection counts against its address's connections (ConnectionLimiter) until it
 * authenticates; it must do so within limits.loginSeconds.
 */
export class XmppListener {
  readonly connections = new Set<C2sStream>();
  private readonly servers: net.Server[] = [];
  private readonly context: XmppContext;
  private readonly webSockets: XmppWebSockets;
  private closing: Promise<void> | undefined;
  private readonly ticker: NodeJS.Timeout;
  /** Every stream's way out of `connections` (one function for all of them). */
  private readonly untrack = (stream: C2sStream): void => void this.connections.delete(stream);

  constructor(private readonly options: XmppListenerOptions) {
    const log = options.log.child({ component: 'xmpp' });
    this.context = {
      sessions: options.sessions,
      auth: options.auth,
      config: options.config,
      tls: options.tls,
      isLocalDomain: options.isLocalDomain,
      log,
      metrics: options.metrics,
      connections: options.connections,
      resumption: new ResumptionRegistry(),
      clock: new StreamClock(options.config),
    };
    // One timer for every stream's login deadline and idle ping.
    this.ticker = setInterval(() => {
      this.context.clock.now++;
      for (const stream of this.connections) stream.tick();
    }, this.context.clock.tickMs);
    this.ticker.unref();
    this.webSockets = new XmppWebSockets(this.context, (stream) => this.connections.add(stream), this.untrack);
  }

  private server(direct: boolean): net.Server {
    const server = net.createServer({ allowHalfOpen: true }, (raw) => {
      const address = clientAddress(raw);
      const admission = this.options.connections.admit(address, 'xmpp');
      if (typeof admission === 'string') {
        if (direct || admission === BLOCKED) raw.destroy();
        else refuseConnection(raw, refusal(admission, this.options.config.defaultDomain));
        return;
      }
      const socket = direct ? serverTls(raw, this.options.tls!) : raw;
      const transport = new TcpTransport(socket, direct ? 'tls' : 'tcp', this.options.tls, admission, this.options.config);
      const stream = new C2sStream(this.context, transport, this.untrack);
      transport.stream = stream;
      this.connections.add(stream);
      transport.attach();
    });
    server.on('error', (err) => this.context.log.error({ event: 'xmpp.listener_error', err }, 'listener error'));
    this.servers.push(server);
    return server;
  }

  /** Listens for XMPP with STARTTLS (5222); resolves with the port bound. */
  listen(port: number, host: string): Promise<number> {
    return listen(this.server(false), port, host);
  }

  /** Listens for XMPP over TLS from the first byte (5223); needs the certificate. */
  listenTls(port: number, host: string): Promise<number> {
    if (!this.options.tls) return Promise.reject(new Error('no TLS certificate'));
    return listen(this.server(true), port, host);
  }

  /**
   * An HTTP request to upgrade to WebSocket on /xmpp-websocket (RFC 7395), handed over by
   * the HTTP listener with the connection's state.
   */
  upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, options: UpgradeOptions): void {
    if (!this.options.config.xmpp.webSocket) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    this.webSockets.upgrade(req, socket, head, options);
  }

  /** Whether every port asked for is bound (readiness). */
  get listening(): boolean {
    return this.servers.every((server) => server.listening);
  }

  /**
   * Stops accepting; every stream ends with `system-shutdown` (its resource with it, and
   * those waiting to be resumed). What is still open after CLOSE_GRACE_MS is dropped.
   */
  close(): Promise<void> {
    return (this.closing ??= this.closeNow());
  }

  private async closeNow(): Promise<void> {
    clearInterval(this.ticker);
    const closed = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const stream of [...this.connections]) stream.close('system-shutdown', 'the server is stopping');
    this.context.resumption.endAll();
    this.webSockets.close();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)));
    await Promise.race([closed, grace]);
    clearTimeout(timer);
    for (const stream of this.connections) stream.destroy();
    await closed;
  }
}

/** What a connection that is not admitted reads: a stream opened only to say why. */
function refusal(reason: string, domain: string): string {
  return (
    `<?xml version='1.0'?><stream:stream xmlns="jabber:client" xmlns:stream="${NS_STREAMS}" from="${escapeText(domain)}" version="1.0">` +
    `<stream:error><policy-violation xmlns="${NS_STREAM_ERRORS}"/><text xmlns="${NS_STREAM_ERRORS}">${escapeText(reason)}</text></stream:error></stream:stream>`
  );
}
