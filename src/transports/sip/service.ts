/**
 * The SIP service: one transport (transport.ts) and one transaction layer (transactions.ts),
 * and the routing of what arrives. New requests go to the handler registered for their
 * method (the registrar takes REGISTER, the call engine INVITE, ...); ACKs for 2xx, stray
 * responses, unacknowledged finals and in-dialog requests go to the stray consumers (the
 * dialog layer). What nobody takes, the service answers itself, as a UAS core with no user
 * behind it would (RFC 3261 8.2): OPTIONS to the server 200, an unknown method 501, an
 * unsupported scheme 416, Max-Forwards 0 483, a domain the server does not serve 404 (until a
 * proxy routes those), an in-dialog request for no dialog 481.
 */
import { networkInterfaces } from 'node:os';
import type http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import { silentLogger, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { SERVER_VERSION } from '../../version.js';
import { SipHeaders, parseMaxForwards } from './headers.js';
import { splitOutside } from './lexer.js';
import { REASON_PHRASES, responseTo, serializeSipMessage, type SipMessage, type SipRequest } from './message.js';
import { newTag, tagOf } from './transaction-matching.js';
import {
  TransactionLayer,
  type ClientListener,
  type ClientTransaction,
  type SipEndpoint,
  type TransactionClock,
  type TransactionLimits,
  type TransactionTimers,
  type TransactionUserEvent,
} from './transactions.js';
import {
  SipTransport,
  isReliable,
  responseDestination,
  type SipLocalAddress,
  type SipTransportLimits,
} from './transport.js';
import { parseUri, uriScheme } from './uri.js';

/** What a response built by respond() may carry besides what it copies from the request. */
export interface SipRespondOptions {
  /** The To tag (default: one per request, the same for all its responses; none on a 100). */
  toTag?: string;
  /** Headers added after the copied ones. */
  headers?: Iterable<readonly [string, string]>;
  body?: Buffer;
  /** Content-Type of the body. */
  contentType?: string;
}

/** A new request, with its server transaction, and a way to answer it. */
export type SipRequestEvent = Extract<TransactionUserEvent, { type: 'request' }> & {
  /** Answers on the request's transaction (Server header added); false when it can no longer be. */
  respond(status: number, reason?: string, options?: SipRespondOptions): boolean;
};

export type SipRequestHandler = (event: SipRequestEvent) => void;

/** What no handler takes: ACKs for 2xx, stray responses, finals never acknowledged, in-dialog requests. */
export type SipStrayEvent = Extract<TransactionUserEvent, { type: 'ack' | 'response' | 'no-ack' }> | SipRequestEvent;

/** Returns true when it took the event (the next consumers are not asked). */
export type SipStrayConsumer = (event: SipStrayEvent) => boolean;

export interface SipServiceOptions {
  /** The address the sockets bind to. */
  host: string;
  /** The address Via and Contact name (NAT); '' or absent = the local address. */
  publicHost?: string;
  tls?: tls.SecureContext;
  limits?: Partial<SipTransportLimits>;
  /** Whether the server serves a domain (the store's domains). */
  isLocalDomain(domain: string): Promise<boolean>;
  /** The transaction layer's clock, timers and limits (tests). */
  transactions?: { clock?: TransactionClock; timers?: Partial<TransactionTimers>; limits?: Partial<TransactionLimits> };
  log?: Logger;
  metrics?: Metrics;
}

/** The Request-URI schemes served (RFC 3261 8.2.2.1 answers others 416). */
const SCHEMES = new Set(['sip', 'sips', 'tel']);

export class SipService {
  readonly transport: SipTransport;
  readonly transactions: TransactionLayer;
  /** Option tags for the Supported header of OPTIONS answers (the registrar adds `path`, `outbound`...). */
  readonly supported = new Set<string>();
  private readonly handlers = new Map<string, SipRequestHandler>();
  private readonly strays: SipStrayConsumer[] = [];
  private readonly log: Logger;
  private readonly serverHeader = `ximssd/${SERVER_VERSION}`;
  /** The server's own addresses: a Request-URI naming one is for the server. */
  private readonly ownAddresses: Set<string>;

  constructor(private readonly options: SipServiceOptions) {
    this.log = (options.log ?? silentLogger).child({ component: 'sip' });
    this.transport = new SipTransport({
      host: options.host,
      publicHost: options.publicHost || undefined,
      tls: options.tls,
      limits: options.limits,
      server: this.serverHeader,
      log: options.log,
      metrics: options.metrics,
      receive: (message, source, reliable) => this.transactions.receive(message, source, reliable),
      connectFailed: (destination, error) => this.transactions.transportFailed(destination, error),
    });
    this.transactions = new TransactionLayer({
      send: (message, destination) => this.send(message, destination),
      tu: (event) => this.onEvent(event),
      ...options.transactions,
    });
    this.ownAddresses = ownAddresses(options.host, options.publicHost);
  }

  /** Binds UDP and TCP (see SipTransport.listen). */
  listen(port: number): Promise<number> {
    return this.transport.listen(port);
  }

  listenTls(port: number): Promise<number> {
    return this.transport.listenTls(port);
  }

  /** A WebSocket upgrade on /sip, from the HTTP listeners. */
  upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, options: { secure: boolean }): void {
    this.transport.upgrade(req, socket, head, options);
  }

  get listening(): boolean {
    return this.transport.listening;
  }

  /** Registers the handler of new requests of `method` (one per method; a second replaces the first). */
  handle(method: string, handler: SipRequestHandler): void {
    this.handlers.set(method, handler);
  }

  /** Adds a consumer of stray events and in-dialog requests, asked after those added before it. */
  onStray(consumer: SipStrayConsumer): void {
    this.strays.push(consumer);
  }

  /**
   * Sends a request in a client transaction (reliable as its destination's transport). A
   * request for UDP larger than UDP_SIZE_LIMIT goes over TCP instead, its top Via saying so
   * (RFC 3261 18.1.1), when the Via is ours to change (it names UDP) and no flow is asked for.
   */
  request(request: SipRequest, destination: SipEndpoint, listener: ClientListener): ClientTransaction {
    const target = congestionControlled(request, destination) ?? destination;
    return this.transactions.request(request, target, isReliable(target.transport), listener);
  }

  /** What Via sent-by and Contact should say for a message to `destination`. */
  localAddress(destination: SipEndpoint): SipLocalAddress {
    return this.transport.localAddress(destination);
  }

  /** The methods the server answers (the Allow header): its own, the handlers', ACK and CANCEL with INVITE. */
  get allowed(): string[] {
    const methods = ['OPTIONS', ...this.handlers.keys()];
    if (this.handlers.has('INVITE')) methods.push('ACK', 'CANCEL');
    return [...new Set(methods)];
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /**
   * Responses go where RFC 3261 18.2.2 says, with the Server header (the transaction layer's
   * own 100, 408, 487 and 503 too); requests where they are sent.
   */
  send(message: SipMessage, destination: SipEndpoint): void {
    if (message.kind === 'request') {
      this.transport.send(message, destination);
      return;
    }
    if (!message.headers.has('Server')) message.headers.add('Server', this.serverHeader);
    this.transport.send(message, responseDestination(message, destination));
  }

  private onEvent(event: TransactionUserEvent): void {
    switch (event.type) {
      case 'request':
        this.onRequest(this.withRespond(event));
        return;
      case 'ack':
      case 'response':
      case 'no-ack':
        this.offerStray(event);
        return;
      case 'unanswered':
        this.log.debug({ event: 'sip.unanswered', method: event.transaction.request.method }, 'a SIP request was not answered in time: 408');
        return;
      case 'transport-error':
        this.log.debug({ event: 'sip.response_failed', method: event.transaction.request.method, address: event.transaction.source.host }, 'a SIP response could not be sent');
        return;
    }
  }

  private withRespond(event: Extract<TransactionUserEvent, { type: 'request' }>): SipRequestEvent {
    let tag: string | undefined;
    return {
      ...event,
      respond: (status, reason, options = {}) => {
        if (status > 100) tag ??= options.toTag ?? newTag();
        const response = responseTo(event.request, status, reason ?? REASON_PHRASES[status] ?? '', status > 100 ? { toTag: options.toTag ?? tag } : {});
        for (const [name, value] of options.headers ?? []) response.headers.add(name, value);
        if (options.body !== undefined) {
          if (options.contentType !== undefined) response.headers.add('Content-Type', options.contentType);
          response.body = options.body;
        }
        return this.transactions.respond(event.transaction, response);
      },
    };
  }

  private offerStray(event: SipStrayEvent): boolean {
    for (const consumer of this.strays) {
      try {
        if (consumer(event)) return true;
      } catch (err) {
        this.log.error({ event: 'sip.handler_failed', type: event.type, err }, 'a SIP consumer failed');
        return true;
      }
    }
    return false;
  }

  private onRequest(event: SipRequestEvent): void {
    this.route(event).catch((err: unknown) => {
      this.log.error({ event: 'sip.handler_failed', method: event.request.method, err }, 'a SIP request handler failed');
      if (!event.transaction.answered) event.respond(500);
    });
  }

  private async route(event: SipRequestEvent): Promise<void> {
    const { request } = event;
    // A To tag: the request belongs to a dialog (RFC 3261 12.2.2), the dialog layer's.
    if (tagOf(request.headers, 'To')) {
      if (!this.offerStray(event)) event.respond(481);
      return;
    }
    if (request.method === 'CANCEL' && !this.handlers.has('CANCEL')) {
      // 9.2: 200 to the CANCEL and 487 to the INVITE (481 when there is none).
      this.transactions.acceptCancel(event.transaction);
      return;
    }
    const scheme = uriScheme(request.uri);
    if (scheme === undefined || !SCHEMES.has(scheme)) {
      event.respond(416);
      return;
    }
    const ours = await this.isForUs(request.uri);
    if (request.method === 'OPTIONS' && ours && !this.handlers.has('OPTIONS')) {
      this.answerOptions(event);
      return;
    }
    if (maxForwards(request) === 0) {
      event.respond(483);
      return;
    }
    const handler = this.handlers.get(request.method);
    if (handler !== undefined) {
      handler(event);
      return;
    }
    if (!ours) {
      event.respond(404);
      return;
    }
    event.respond(501, undefined, { headers: [['Allow', this.allowed.join(', ')]] });
  }

  /** 200 with what the server does (RFC 3261 11.2). */
  private answerOptions(event: SipRequestEvent): void {
    event.respond(200, undefined, {
      headers: [
        ['Allow', this.allowed.join(', ')],
        ['Accept', 'application/sdp'],
        ['Supported', [...this.supported].join(', ')],
      ],
    });
  }

  /** Whether a Request-URI names the server: one of its domains, or one of its addresses. */
  private async isForUs(uri: string): Promise<boolean> {
    let host: string;
    try {
      const parsed = parseUri(uri);
      if (parsed.kind !== 'sip') return false;
      host = parsed.host.startsWith('[') ? parsed.host.slice(1, -1) : parsed.host;
    } catch {
      return false;
    }
    return this.ownAddresses.has(host.toLowerCase()) || (await this.options.isLocalDomain(host.toLowerCase()));
  }
}

/** RFC 3261 18.1.1: a request within 200 bytes of a 1500-byte path MTU goes over TCP. */
export const UDP_SIZE_LIMIT = 1300;

/**
 * The TCP destination of a request too large for UDP, its top Via switched to TCP (the same
 * sent-by: the server takes TCP on its UDP port); undefined when it stays as it is. Not done
 * for a flow (the connection is chosen) nor a Via that names another transport. RFC 3261 would
 * fall back to UDP when the TCP connection fails; that is left out: the transaction times out.
 */
export function congestionControlled(request: SipRequest, destination: SipEndpoint): SipEndpoint | undefined {
  if ((destination.transport ?? 'udp') !== 'udp' || destination.flow !== undefined) return undefined;
  if (serializeSipMessage(request).length <= UDP_SIZE_LIMIT) return undefined;
  const lines = [...request.headers];
  const index = lines.findIndex(([name]) => name === 'Via');
  if (index < 0) return undefined;
  const values = splitOutside(lines[index]![1], ',');
  // sent-protocol = protocol-name SLASH protocol-version SLASH transport, white space allowed around the slashes.
  const match = /^(\s*[^/\s]+\s*\/\s*[^/\s]+\s*\/\s*)UDP(?=\s)/i.exec(values[0] ?? '');
  if (match === null) return undefined;
  values[0] = `${match[1]}TCP${values[0]!.slice(match[0].length)}`;
  lines[index] = ['Via', values.join(', ')];
  request.headers = new SipHeaders(lines);
  return { ...destination, transport: 'tcp' };
}

function maxForwards(request: SipRequest): number | undefined {
  const value = request.headers.get('Max-Forwards');
  if (value === undefined) return undefined;
  try {
    return parseMaxForwards(value);
  } catch {
    return undefined;
  }
}

/** The addresses of this host (every interface), the bound one and the public one, in lower case. */
function ownAddresses(host: string, publicHost: string | undefined): Set<string> {
  const addresses = new Set<string>(['localhost']);
  for (const list of Object.values(networkInterfaces())) for (const address of list ?? []) addresses.add(address.address.toLowerCase());
  if (host !== '0.0.0.0' && host !== '::') addresses.add(host.toLowerCase());
  if (publicHost) addresses.add(publicHost.toLowerCase());
  return addresses;
}
