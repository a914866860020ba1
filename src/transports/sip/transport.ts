/**
 * The SIP transport layer (RFC 3261 18): sockets and nothing else. One port takes UDP and TCP
 * (18: a server listens on both), another TLS, and the HTTP listeners hand over WebSocket
 * upgrades on /sip (RFC 7118). What arrives is parsed by the message layer and passed up with
 * where it came from (a SipEndpoint whose `flow` names the connection); what the layers above
 * send goes out on that flow, on a connection already open to the address, on a new one, or
 * as a datagram.
 *
 * The UDP socket lives in a thread of its own (udp-thread.ts): its system calls, and the kernel's
 * delivery that each send on loopback or a LAN runs, take another core's time, and datagrams
 * cross to this thread in batches. Streams stay on this thread.
 *
 * The only SIP the transport does is the transport's own: the `received` and `rport` of a
 * request's top Via (18.2.1, RFC 3581), the answer to a message it cannot read when the
 * message layer says it can be answered, and the CRLF keep-alive pong of RFC 5626 4.4.1.
 *
 * Every connection counts against a total and a per-address limit; a connection that carries
 * nothing inbound for `idleSeconds` is closed (a registered client's keep-alives count), as is
 * one whose peer does not read what it is sent. A bad peer loses its connection, never the
 * server's.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import tls from 'node:tls';
import { isUtf8 } from 'node:buffer';
// WebSocket framing and the handshake: the `ws` library, as the XMPP WebSocket uses it.
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { silentLogger, errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { addressKey } from '../../services/client-address.js';
import { clientAddress, serverTls } from '../../ximss/bindings/sockets.js';
import { SipHeaders, parseVia } from './headers.js';
import { splitOutside, trimLws } from './lexer.js';
import {
  DEFAULT_DATAGRAM_LIMITS,
  DEFAULT_STREAM_LIMITS,
  SipMessageReader,
  SipParseError,
  parseSipMessage,
  responseTo,
  serializeSipMessage,
  type SipLimits,
  type SipMessage,
  type SipRequest,
} from './message.js';
import { newTag } from './transaction-matching.js';
import type { SipEndpoint, SipTransportName } from './transactions.js';
import { bindingResponse, isStun, StunLimiter } from './stun.js';
import { UdpThreadSocket } from './udp-thread.js';

/** The WebSocket subprotocol of RFC 7118. */
export const SIP_WEBSOCKET_PROTOCOL = 'sip';
/** How long a connection closed after an error stays open for the peer to read the answer. */
const LINGER_MS = 1000;
/** A refusal or parse error is logged at most once per window per address and kind (the rest are counted). */
const LOG_WINDOW_MS = 10_000;
/** Addresses whose last logged refusal is remembered, at most. */
const MAX_LOG_TRACKED = 10_000;
/** Binding UDP and then TCP on the same free port can lose a race: this many tries. */
const BIND_ATTEMPTS = 5;
/**
 * The UDP socket's kernel buffers: the default (about 200 KB) holds a few hundred datagrams,
 * which a burst of calls fills during one garbage collection, and every datagram dropped
 * there comes back as a retransmission. Linux caps the value at net.core.rmem_max.
 */
const UDP_BUFFER_BYTES = 4 * 1024 * 1024;

export type SipStreamTransport = Exclude<SipTransportName, 'udp'>;

export interface SipTransportLimits {
  /** Open connections (TCP, TLS, WebSocket; ours and the peers'), server-wide. */
  connections: number;
  /** Open connections from one address (IPv6: its /64). */
  connectionsPerAddress: number;
  /** A connection that receives nothing (not even a keep-alive) this long is closed. */
  idleSeconds: number;
  /** Bytes waiting to be written to one connection; past them the peer is not reading and is dropped. */
  outputBytes: number;
  /** One UDP datagram or WebSocket frame. */
  datagram: SipLimits;
  /** One message on a TCP or TLS stream (its framing buffer is bounded by it). */
  stream: SipLimits;
}

export const DEFAULT_SIP_TRANSPORT_LIMITS: Readonly<SipTransportLimits> = Object.freeze({
  connections: 10_000,
  connectionsPerAddress: 64,
  idleSeconds: 300,
  outputBytes: 1024 * 1024,
  datagram: DEFAULT_DATAGRAM_LIMITS,
  stream: DEFAULT_STREAM_LIMITS,
});

/** Takes each message read: `reliable` when it came over a stream (TCP, TLS, WebSocket). */
export type SipReceiver = (message: SipMessage, source: SipEndpoint, reliable: boolean) => void;

export interface SipTransportOptions {
  /** The address every socket binds to (0.0.0.0 or :: for every address). */
  host: string;
  /** What Via and Contact name when the server is reached at another address (NAT): wins over everything. */
  publicHost?: string;
  /** The server certificate: the TLS port and outbound TLS connections. */
  tls?: tls.SecureContext;
  limits?: Partial<SipTransportLimits>;
  /** The Server header of the responses the transport itself sends (to unreadable requests). */
  server?: string;
  log?: Logger;
  metrics?: Metrics;
  receive: SipReceiver;
  /** An outgoing connection that could not be made: the transaction layer is told (RFC 3261 18.4). */
  connectFailed?: (destination: SipEndpoint, error: unknown) => void;
}

/** Sending failed: no such flow, no socket for the transport, a connection limit. */
export class SipTransportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SipTransportError';
  }
}

/** Where a message to a destination says it comes from: Via sent-by and Contact. */
export interface SipLocalAddress {
  transport: SipTransportName;
  host: string;
  port: number;
}

/** One connection, whatever carries it. */
interface Connection {
  /** The flow id SipEndpoint.flow names it by. */
  readonly id: string;
  readonly transport: SipStreamTransport;
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly localHost: string;
  readonly localPort: number;
  /** When something last arrived on it (ms since the epoch). */
  lastInput: number;
  write(bytes: Buffer): void;
  /** Closes after what was written (an error answer) has gone, or soon anyway. */
  end(): void;
  destroy(): void;
}

/** An IPv4-mapped IPv6 address in IPv4 form; IPv6 without brackets. */
function plainAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** A host as a URI or Via writes it: IPv6 in brackets. */
export function uriHost(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

function sameHost(a: string, b: string): boolean {
  const bare = (h: string): string => (h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h).toLowerCase();
  return bare(a) === bare(b);
}

export function isReliable(transport: SipTransportName | undefined): boolean {
  return transport !== undefined && transport !== 'udp';
}

/** The port a transport uses when a URI or Via names none (RFC 3261 19.1.2, RFC 7118 5). */
export function defaultPort(transport: SipTransportName | undefined): number {
  return transport === 'tls' ? 5061 : transport === 'ws' ? 80 : transport === 'wss' ? 443 : 5060;
}

/**
 * What the server stamps on a request's top Via (RFC 3261 18.2.1, RFC 3581 4): `received`
 * with the source address when sent-by names another host (or when `rport` asks for it), and
 * `rport` filled with the source port. The value is rewritten as text, its other parameters
 * kept as written. A request whose Via cannot be read is left alone (the parser refused it).
 */
export function stampVia(request: SipRequest, sourceHost: string, sourcePort: number): void {
  const first = request.headers.get('Via');
  if (first === undefined) return;
  const values = splitOutside(first, ',');
  const top = values[0];
  if (top === undefined) return;
  let via;
  try {
    via = parseVia(top);
  } catch {
    return;
  }
  const wantsPort = via.rport !== undefined;
  const differs = !sameHost(via.host, sourceHost);
  if (!differs && !wantsPort) return;
  const [head, ...params] = splitOutside(top, ';');
  const kept = params.filter((param) => {
    const name = trimLws(param.split('=')[0] ?? '').toLowerCase();
    return name !== 'received' && name !== 'rport';
  });
  // received = IPv4address / IPv6address: IPv6 is written without brackets here.
  kept.push(`received=${sourceHost}`);
  if (wantsPort) kept.push(`rport=${sourcePort}`);
  values[0] = [head, ...kept].join(';');
  // Only a request whose top Via changes is copied.
  const lines = [...request.headers];
  const index = lines.findIndex(([name]) => name === 'Via');
  lines[index] = ['Via', values.join(', ')];
  request.headers = new SipHeaders(lines);
}

/**
 * Where a response goes (RFC 3261 18.2.2 with RFC 3581 4), from its top Via (as stamped by
 * stampVia when its request arrived) and the endpoint its request came from: a stream's
 * response back on the request's connection; a datagram to `maddr` if the Via names one,
 * else to `received` at the `rport` (or the sent-by port), else to sent-by.
 */
export function responseDestination(message: SipMessage, source: SipEndpoint): SipEndpoint {
  if (isReliable(source.transport) && source.flow !== undefined) return source;
  const top = message.headers.getAll('Via')[0];
  if (top === undefined) return source;
  let via;
  try {
    via = parseVia(top);
  } catch {
    return source;
  }
  const transport = source.transport;
  const port = via.port ?? defaultPort(transport);
  const unbracket = (host: string): string => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);
  const endpoint = (host: string, at: number): SipEndpoint => ({ host: unbracket(host), port: at, ...(transport ? { transport } : {}) });
  if (via.maddr !== undefined) return endpoint(via.maddr, port);
  if (via.received !== undefined) return endpoint(via.received, typeof via.rport === 'number' ? via.rport : port);
  return endpoint(via.host, port);
}

/** A datagram that is only a keep-alive (CRLFs, RFC 5626 4.4.1's habit carried to UDP); STUN's are answered (stun.ts). */
function isKeepAliveDatagram(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte !== 0x0d && byte !== 0x0a && byte !== 0x20 && byte !== 0x00) return false;
  return true;
}

/** Logs one line per window per key, counting what it held back. */
class LogThrottle {
  private readonly last = new Map<string, { at: number; unlogged: number }>();

  /** The count held back since the last line, or undefined when this one is held back too. */
  pass(key: string, now = Date.now()): { unlogged?: number } | undefined {
    const last = this.last.get(key);
    if (last && now - last.at < LOG_WINDOW_MS) {
      last.unlogged++;
      return undefined;
    }
    this.last.delete(key);
    this.last.set(key, { at: now, unlogged: 0 });
    if (this.last.size > MAX_LOG_TRACKED) this.last.delete(this.last.keys().next().value!);
    return last?.unlogged ? { unlogged: last.unlogged } : {};
  }
}

/** A TCP or TLS connection: a byte stream framed by Content-Length. */
class StreamConnection implements Connection {
  lastInput = Date.now();
  readonly remoteHost: string;
  readonly remotePort: number;
  private readonly reader: SipMessageReader;

  constructor(
    readonly id: string,
    readonly transport: 'tcp' | 'tls',
    private readonly socket: net.Socket,
    /** The socket TCP runs on: the addresses are read from it (a TLSSocket over it may not know them). */
    private readonly raw: net.Socket,
    private readonly owner: SipTransport,
    remote?: { host: string; port: number },
  ) {
    this.remoteHost = remote?.host ?? plainAddress(raw.remoteAddress);
    this.remotePort = remote?.port ?? raw.remotePort ?? 0;
    this.reader = new SipMessageReader(owner.limits.stream);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('end', () => socket.end());
    socket.on('close', () => owner.closed(this));
  }

  get localHost(): string {
    return plainAddress(this.raw.localAddress);
  }

  get localPort(): number {
    return this.raw.localPort ?? 0;
  }

  private get source(): SipEndpoint {
    return { host: this.remoteHost, port: this.remotePort, transport: this.transport, flow: this.id };
  }

  private onData(chunk: Buffer): void {
    this.lastInput = Date.now();
    let items;
    try {
      items = this.reader.feed(chunk);
    } catch (err) {
      // The framing is lost: answer if the message allows it, then close.
      socketPause(this.socket);
      this.owner.unreadable(err, this.source);
      this.end();
      return;
    }
    for (const item of items) {
      if (item.type === 'ping') this.write(Buffer.from('\r\n'));
      else if (item.type === 'message') this.owner.deliver(item.message, this.source, true);
      if (this.socket.destroyed) return;
    }
  }

  write(bytes: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded) throw new SipTransportError(`the ${this.transport} connection ${this.id} is closed`);
    this.socket.write(bytes);
    if (this.socket.writableLength > this.owner.limits.outputBytes) {
      this.owner.overflowed(this);
      this.socket.destroy();
    }
  }

  end(): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    socket.end(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
    setTimeout(() => socket.destroy(), LINGER_MS * 5).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function socketPause(socket: net.Socket): void {
  socket.pause();
  socket.removeAllListeners('data');
}

/** A WebSocket connection (RFC 7118): one message per frame. */
class WebSocketConnection implements Connection {
  lastInput = Date.now();
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly localHost: string;
  readonly localPort: number;

  constructor(
    readonly id: string,
    readonly transport: 'ws' | 'wss',
    private readonly socket: WebSocket,
    raw: net.Socket,
    private readonly owner: SipTransport,
  ) {
    this.remoteHost = clientAddress(raw);
    this.remotePort = raw.remotePort ?? 0;
    this.localHost = plainAddress(raw.localAddress);
    this.localPort = raw.localPort ?? 0;
    socket.on('message', (data) => this.onMessage(data));
    socket.on('ping', () => (this.lastInput = Date.now()));
    socket.on('error', () => socket.terminate());
    socket.on('close', () => owner.closed(this));
  }

  private onMessage(data: RawData): void {
    this.lastInput = Date.now();
    // Text and binary frames alike hold one message (RFC 7118 5.1).
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    const source: SipEndpoint = { host: this.remoteHost, port: this.remotePort, transport: this.transport, flow: this.id };
    let message;
    try {
      message = parseSipMessage(bytes, this.owner.limits.datagram);
    } catch (err) {
      // A frame is framed on its own: a bad one does not end the connection.
      this.owner.unreadable(err, source);
      return;
    }
    this.owner.deliver(message, source, true);
  }

  write(bytes: Buffer): void {
    if (this.socket.readyState !== this.socket.OPEN) throw new SipTransportError(`the ${this.transport} connection ${this.id} is closed`);
    // RFC 7118 5.1: text frames for UTF-8 messages, binary ones for the others.
    this.socket.send(bytes, { binary: !isUtf8(bytes) });
    if (this.socket.bufferedAmount > this.owner.limits.outputBytes) {
      this.owner.overflowed(this);
      this.socket.terminate();
    }
  }

  end(): void {
    this.socket.close(1000);
    setTimeout(() => this.socket.terminate(), LINGER_MS * 5).unref();
  }

  destroy(): void {
    this.socket.terminate();
  }
}

/**
 * The sockets of the SIP service: see the module comment. listen() binds UDP and TCP,
 * listenTls() the TLS port, upgrade() takes WebSocket connections from the HTTP listeners.
 */
export class SipTransport {
  readonly limits: SipTransportLimits;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private udp: UdpThreadSocket | undefined;
  private readonly servers: net.Server[] = [];
  private readonly webSockets: WebSocketServer;
  /** Open connections by flow id, and by transport and remote address (for reuse). */
  private readonly flows = new Map<string, Connection>();
  private readonly byPeer = new Map<string, Connection>();
  private readonly perAddress = new Map<string, number>();
  private readonly messageCounters = new Map<string, { inc(): void }>();
  private readonly throttle = new LogThrottle();
  /** STUN keep-alives answered per address (stun.ts). */
  private readonly stunLimiter = new StunLimiter();
  private readonly flowPrefix = randomBytes(4).toString('hex');
  private flowCount = 0;
  private readonly sweeper: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  /** The ports bound (0 until then). */
  port = 0;
  tlsPort = 0;

  constructor(private readonly options: SipTransportOptions) {
    this.limits = { ...DEFAULT_SIP_TRANSPORT_LIMITS, ...definedOnly(options.limits ?? {}) };
    this.log = (options.log ?? silentLogger).child({ component: 'sip' });
    this.metrics = options.metrics;
    this.webSockets = new WebSocketServer({
      noServer: true,
      maxPayload: this.limits.datagram.messageBytes,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(SIP_WEBSOCKET_PROTOCOL) ? SIP_WEBSOCKET_PROTOCOL : false),
    });
    // One timer for every connection's idle limit.
    const idleMs = this.limits.idleSeconds * 1000;
    this.sweeper = setInterval(() => this.sweep(idleMs), Math.max(50, Math.min(1000, idleMs / 4)));
    this.sweeper.unref();
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.flows.size;
  }

  /** Whether every socket asked for is bound (readiness). */
  get listening(): boolean {
    return this.servers.every((server) => server.listening) && (this.port === 0 || this.udp?.open === true);
  }

  /**
   * Binds UDP and TCP on `port` (RFC 3261 18: both), on the same number. With 0, UDP takes a
   * free port first and TCP the same one, tried again on another when TCP's is taken.
   * Resolves with the port.
   */
  async listen(port: number): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      const udp = await this.bindUdp(port);
      const bound = udp.port;
      const server = this.streamServer('tcp');
      try {
        await listenOn(server, bound, this.options.host);
      } catch (err) {
        await udp.close();
        const taken = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (port === 0 && taken && attempt < BIND_ATTEMPTS) continue;
        throw err;
      }
      this.udp = udp;
      this.adopt(server);
      this.port = bound;
      this.log.info({ event: 'sip.listening', transport: 'udp+tcp', host: this.options.host, port: bound }, `SIP on UDP and TCP port ${bound}`);
      return bound;
    }
  }

  /** Binds the TLS port (5061 usually); needs the certificate. */
  async listenTls(port: number): Promise<number> {
    if (!this.options.tls) throw new Error('no TLS certificate');
    const server = this.streamServer('tls');
    const bound = await listenOn(server, port, this.options.host);
    this.adopt(server);
    this.tlsPort = bound;
    this.log.info({ event: 'sip.listening', transport: 'tls', host: this.options.host, port: bound }, `SIP on TLS port ${bound}`);
    return bound;
  }

  /**
   * An HTTP upgrade on /sip, handed over by an HTTP listener (RFC 7118): without the `sip`
   * subprotocol it is refused, as it is over the connection limits.
   */
  upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, options: { secure: boolean }): void {
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SIP_WEBSOCKET_PROTOCOL)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nthe WebSocket subprotocol "sip" is required\n');
      return;
    }
    const transport = options.secure ? 'wss' : 'ws';
    if (!this.admit(clientAddress(socket), transport)) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 10\r\n\r\n');
      return;
    }
    this.webSockets.handleUpgrade(req, socket, head, (ws) => {
      this.opened(new WebSocketConnection(this.newFlowId(transport), transport, ws, socket, this));
    });
  }

  /**
   * Sends a message: on `destination.flow` when given (throws when that connection is gone);
   * over a stream transport on a connection open to the address, or a new one (TCP, TLS);
   * over UDP from the bound socket. Throws SipTransportError when it cannot.
   */
  send(message: SipMessage, destination: SipEndpoint): void {
    const bytes = serializeSipMessage(message);
    const transport = destination.transport ?? 'udp';
    let connection: Connection | undefined;
    if (destination.flow !== undefined) {
      connection = this.flows.get(destination.flow);
      if (connection === undefined) throw new SipTransportError(`the connection ${destination.flow} is gone`);
    } else if (transport === 'udp') {
      if (this.udp?.open !== true) throw new SipTransportError('SIP over UDP is not listening');
      this.udp.send(bytes, destination.port, destination.host);
    } else {
      connection = this.byPeer.get(peerKey(transport, destination.host, destination.port)) ?? this.connect(transport, destination);
    }
    connection?.write(bytes);
    this.countMessage(transport, 'out', message.kind);
  }

  /**
   * What a message to `destination` names as its sender (Via sent-by, Contact): the configured
   * public host; else, on a connection, the connection's local address; else the bound address,
   * or when bound to every address the one the OS would use towards the destination
   * (approximated: loopback for loopback, else this host's first external address of the family).
   */
  localAddress(destination: SipEndpoint): SipLocalAddress {
    const transport = destination.transport ?? 'udp';
    const connection =
      destination.flow !== undefined
        ? this.flows.get(destination.flow)
        : transport === 'udp'
          ? undefined
          : this.byPeer.get(peerKey(transport, destination.host, destination.port));
    const bound = this.options.host;
    const wildcard = bound === '0.0.0.0' || bound === '::' || bound === '';
    const host = this.options.publicHost || connection?.localHost || (wildcard ? routeAddress(destination.host) : bound);
    const port =
      transport === 'udp' || transport === 'tcp'
        ? this.port
        : transport === 'tls'
          ? this.tlsPort
          : (connection?.localPort ?? defaultPort(transport));
    return { transport, host, port };
  }

  /** Stops listening and drops every connection. */
  close(): Promise<void> {
    return (this.closing ??= this.closeNow());
  }

  private async closeNow(): Promise<void> {
    clearInterval(this.sweeper);
    const closed = this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const connection of [...this.flows.values()]) connection.destroy();
    this.webSockets.close();
    const udp = this.udp;
    this.udp = undefined;
    if (udp) await udp.close();
    await Promise.all(closed);
  }

  // --- what the connections call ---

  /** A message read: the top Via stamped (requests), counted, passed up. */
  deliver(message: SipMessage, source: SipEndpoint, reliable: boolean): void {
    if (message.kind === 'request') stampVia(message, source.host, source.port);
    this.countMessage(source.transport ?? 'udp', 'in', message.kind);
    try {
      this.options.receive(message, source, reliable);
    } catch (err) {
      this.log.error({ event: 'sip.receive_failed', err }, 'a SIP message could not be handled');
    }
  }

  /** A message that could not be read: answered when the message layer says it may be (else dropped). */
  unreadable(err: unknown, source: SipEndpoint): void {
    const error = err instanceof SipParseError ? err : undefined;
    this.metrics?.sipParseErrors.inc();
    const logged = this.throttle.pass(`parse ${addressKey(source.host)}`);
    const fields = { event: 'sip.parse_error', transport: source.transport ?? 'udp', address: source.host, port: source.port, status: error?.status, reason: error?.reason ?? errorText(err) };
    if (logged) this.log.info({ ...fields, ...logged }, 'an unreadable SIP message');
    else this.log.debug(fields, 'an unreadable SIP message');
    if (error?.request === undefined) return;
    const request = error.request;
    stampVia(request, source.host, source.port);
    const response = responseTo(request, error.status, error.reason, { toTag: newTag() });
    if (this.options.server) response.headers.add('Server', this.options.server);
    try {
      this.send(response, responseDestination(response, source));
    } catch {
      // The peer is gone: nothing to answer.
    }
  }

  overflowed(connection: Connection): void {
    const logged = this.throttle.pass(`overflow ${addressKey(connection.remoteHost)}`);
    if (logged) {
      this.log.warn(
        { event: 'sip.connection_overflow', transport: connection.transport, address: connection.remoteHost, limit: this.limits.outputBytes, ...logged },
        'a SIP peer does not read what it is sent: connection dropped',
      );
    }
  }

  closed(connection: Connection): void {
    if (this.flows.get(connection.id) !== connection) return;
    this.flows.delete(connection.id);
    const key = peerKey(connection.transport, connection.remoteHost, connection.remotePort);
    if (this.byPeer.get(key) === connection) this.byPeer.delete(key);
    const address = addressKey(connection.remoteHost);
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
    this.metrics?.sipConnections.dec({ transport: connection.transport });
  }

  // --- inside ---

  /** Counts a message on ximssd_sip_messages_total, through a counter kept per label set (prom-client hashes the labels on every inc otherwise). */
  private countMessage(transport: SipTransportName, direction: 'in' | 'out', kind: SipMessage['kind']): void {
    if (!this.metrics) return;
    const key = `${transport} ${direction} ${kind}`;
    let counter = this.messageCounters.get(key);
    if (counter === undefined) {
      counter = this.metrics.sipMessages.labels({ transport, direction, kind });
      this.messageCounters.set(key, counter);
    }
    counter.inc();
  }

  private bindUdp(port: number): Promise<UdpThreadSocket> {
    return UdpThreadSocket.bind(
      {
        host: this.options.host,
        port,
        family: net.isIPv6(this.options.host) ? 6 : 4,
        // Room for a burst while the event loop is busy (the kernel caps these at net.core.rmem_max / wmem_max).
        bufferBytes: UDP_BUFFER_BYTES,
        // As much again waits between the threads; beyond it the main thread is that far behind and datagrams are dropped.
        maxInFlightBytes: UDP_BUFFER_BYTES,
      },
      {
        message: (bytes, host, remotePort) => this.onDatagram(bytes, host, remotePort),
        sendFailed: (count, error) => this.log.debug({ event: 'sip.send_failed', transport: 'udp', count, error }, 'datagrams could not be sent'),
        dropped: (count) => {
          this.metrics?.sipDatagramsDropped.inc(count);
          this.log.warn({ event: 'sip.udp_overload', dropped: count }, 'SIP datagrams dropped: the server is behind on the UDP port');
        },
        error: (error, fatal) => {
          if (fatal) this.log.error({ event: 'sip.udp_failed', error }, 'SIP over UDP stopped');
          else this.log.warn({ event: 'sip.udp_error', error }, 'SIP UDP socket error');
        },
      },
    );
  }

  private onDatagram(bytes: Buffer, remoteHost: string, remotePort: number): void {
    if (isStun(bytes)) {
      // An outbound flow's keep-alive (RFC 5626 8.2): answered with the address it came from, within a budget per address.
      const response = bindingResponse(bytes, remoteHost, remotePort);
      if (response && this.stunLimiter.allow(remoteHost)) this.udp?.send(response, remotePort, remoteHost);
      return;
    }
    if (isKeepAliveDatagram(bytes)) return;
    const source: SipEndpoint = { host: plainAddress(remoteHost), port: remotePort, transport: 'udp' };
    let message;
    try {
      message = parseSipMessage(bytes, this.limits.datagram);
    } catch (err) {
      this.unreadable(err, source);
      return;
    }
    this.deliver(message, source, false);
  }

  /** A server that is bound: its later errors are logged. */
  private adopt(server: net.Server): void {
    server.on('error', (err) => this.log.error({ event: 'sip.listener_error', err }, 'SIP listener error'));
    this.servers.push(server);
  }

  private streamServer(transport: 'tcp' | 'tls'): net.Server {
    const server = net.createServer((raw) => {
      if (!this.admit(clientAddress(raw), transport)) {
        raw.destroy();
        return;
      }
      const socket = transport === 'tls' ? serverTls(raw, this.options.tls!) : raw;
      this.opened(new StreamConnection(this.newFlowId(transport), transport, socket, raw, this));
    });
    return server;
  }

  /** A new connection to a peer (TCP or TLS), kept for what follows. */
  private connect(transport: SipStreamTransport, destination: SipEndpoint): Connection {
    if (transport === 'ws' || transport === 'wss') {
      throw new SipTransportError(`no ${transport} connection to ${destination.host}:${destination.port}`);
    }
    if (this.flows.size >= this.limits.connections) {
      this.refused('connections', destination.host, transport);
      throw new SipTransportError('too many SIP connections');
    }
    const raw = net.connect({ host: destination.host, port: destination.port });
    const socket =
      transport === 'tls'
        ? tls.connect({ socket: raw, ...(net.isIP(destination.host) ? {} : { servername: destination.host }) })
        : raw;
    let connected = false;
    raw.once('connect', () => (connected = true));
    raw.on('error', (error) => {
      if (!connected) this.options.connectFailed?.({ host: destination.host, port: destination.port, transport }, error);
      connected = true;
      raw.destroy();
    });
    const connection = new StreamConnection(this.newFlowId(transport), transport, socket, raw, this, { host: destination.host, port: destination.port });
    this.opened(connection);
    return connection;
  }

  /**
   * Whether a connection from `address` may open; a refusal is counted and logged (throttled).
   * The connection counts once it is open (opened()): a WebSocket handshake that fails never does.
   */
  private admit(address: string, transport: SipStreamTransport): boolean {
    if (this.flows.size >= this.limits.connections) {
      this.refused('connections', address, transport);
      return false;
    }
    if ((this.perAddress.get(addressKey(address)) ?? 0) >= this.limits.connectionsPerAddress) {
      this.refused('connections_per_address', address, transport);
      return false;
    }
    return true;
  }

  private refused(limit: 'connections' | 'connections_per_address', address: string, transport: SipStreamTransport): void {
    this.metrics?.limits.inc({ limit: `sip_${limit}` });
    const logged = this.throttle.pass(`refused ${limit} ${addressKey(address)}`);
    if (!logged) return;
    const max = limit === 'connections' ? this.limits.connections : this.limits.connectionsPerAddress;
    this.log.warn({ event: 'sip.connection_refused', limit, max, transport, address, ...logged }, 'SIP connection refused: over a limit');
  }

  private opened(connection: Connection): void {
    const address = addressKey(connection.remoteHost);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    this.flows.set(connection.id, connection);
    this.byPeer.set(peerKey(connection.transport, connection.remoteHost, connection.remotePort), connection);
    this.metrics?.sipConnections.inc({ transport: connection.transport });
  }

  private newFlowId(transport: SipStreamTransport): string {
    return `${transport}-${this.flowPrefix}-${++this.flowCount}`;
  }

  private sweep(idleMs: number): void {
    const now = Date.now();
    for (const connection of this.flows.values()) {
      if (now - connection.lastInput < idleMs) continue;
      this.log.debug({ event: 'sip.connection_idle', transport: connection.transport, address: connection.remoteHost }, 'idle SIP connection closed');
      connection.end();
      // Not swept again while it closes.
      connection.lastInput = Infinity;
    }
  }
}

function peerKey(transport: SipTransportName, host: string, port: number): string {
  return `${transport} ${host.toLowerCase()} ${port}`;
}

/** The local address the OS would most likely use towards `host` (see localAddress). */
function routeAddress(host: string): string {
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  if (bare === 'localhost' || bare.startsWith('127.')) return '127.0.0.1';
  if (bare === '::1') return '::1';
  const family = net.isIPv6(bare) ? 'IPv6' : 'IPv4';
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (!address.internal && address.family === family && !address.address.startsWith('fe80')) return address.address;
    }
  }
  return family === 'IPv6' ? '::1' : '127.0.0.1';
}

function listenOn(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** The entries of a partial options object that were given. */
function definedOnly<T extends object>(partial: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(partial).filter(([, value]) => value !== undefined)) as Partial<T>;
}
