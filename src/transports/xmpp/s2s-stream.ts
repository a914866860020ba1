import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import { el, escapeAttr, serialize, type XmlElement } from '../../xml/element.js';
import { stanzaLimits } from './c2s.js';
import { NS_DIALBACK } from './dialback.js';
import { NS_STREAM_ERRORS, NS_STREAMS, StreamError, XmppStreamParser } from './stream.js';

/** The default namespace of streams between servers (RFC 6120 4.8.3). */
export const NS_SERVER = 'jabber:server';

/** A connection whose peer does not read is dropped once this much output waits for it. */
const OUTPUT_LIMIT = 8 * 1024 * 1024;
/** Items read and not yet handled beyond which reading pauses (the IM service sets the pace). */
const QUEUE_HIGH_WATER = 64;
/** How long a closing connection stays open for the peer to read the end. */
const LINGER_MS = 1000;

/** What an S2sSocket finds in its stream, handled one at a time in order. */
export interface S2sStreamHandler {
  /** The peer's stream header (after each restart). */
  header(attrs: Record<string, string>): void | Promise<void>;
  /** A top-level element, with its namespace and local name. */
  element(element: XmlElement, ns: string, name: string): void | Promise<void>;
  /** The peer ended its stream (`</stream:stream>`). */
  ended(): void;
  /** The connection is gone (whoever closed it). */
  lost(): void;
}

/**
 * One TCP connection between servers carrying an XML stream in `jabber:server` (RFC 6120):
 * the guarded stream parser of the client streams (the same limits per stanza), STARTTLS
 * either side, restarts, the stream header with the dialback namespace declared, stream errors.
 * The two directions of federation (s2s-out.ts, s2s-in.ts) are built on it.
 */
export class S2sSocket {
  private parser: XmppStreamParser;
  private header: Record<string, string> = {};
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private paused = false;
  private stopped = false;
  private closed = false;
  private lostCalled = false;
  private headerSent = false;
  /** Authenticated either way: the limits of an authenticated stream apply. */
  authenticated = false;
  /** The peer's certificate was checked for its domain (set by whoever started TLS). */
  peerCertificate: tls.PeerCertificate | undefined;
  authorizationError: string | undefined;
  readonly remoteAddress: string;
  handler!: S2sStreamHandler;

  constructor(
    private socket: net.Socket,
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.remoteAddress = address(socket);
    if (socket instanceof tls.TLSSocket) {
      // TLS from the first byte (XEP-0368, the initiating side): its certificate as checked then.
      this.peerCertificate = socket.getPeerCertificate();
      this.authorizationError = socket.authorized ? undefined : String(socket.authorizationError ?? 'no certificate');
    }
    this.parser = this.newParser();
    socket.setNoDelay(true);
  }

  private newParser(): XmppStreamParser {
    const connection = this;
    return new XmppStreamParser(
      {
        streamHeader: (attrs) => {
          this.header = attrs;
          this.enqueue(() => this.handler.header(attrs));
        },
        stanza: (element) => {
          const { ns, name } = this.namespaceOf(element);
          // What follows `<starttls/>` in clear text is never read (STARTTLS command injection).
          if (name === 'starttls') this.stopReading();
          this.enqueue(() => this.handler.element(element, ns, name));
        },
        streamEnd: () => this.enqueue(() => this.handler.ended()),
        get limits() {
          return stanzaLimits(connection.config, connection.authenticated);
        },
      },
      NS_SERVER,
    );
  }

  /** Starts reading (once the handler exists). */
  attach(): void {
    const socket = this.socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
    socket.on('end', () => this.enqueue(() => this.handler.ended()));
  }

  get secure(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  /** Bytes received (activity for idle timers). */
  onActivity: (() => void) | undefined;

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    this.onActivity?.();
    try {
      this.parser.write(chunk);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      this.stopReading();
      this.fail(err.condition, err.message);
    }
  }

  /** Items are handled in order; a StreamError thrown by a handler ends the stream with it. */
  private enqueue(work: () => void | Promise<void>): void {
    if (++this.pending > QUEUE_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.chain = this.chain
      .then(() => (this.closed ? undefined : work()))
      .finally(() => {
        if (--this.pending === 0 && this.paused) {
          this.paused = false;
          this.socket.resume();
        }
      })
      .catch((err: unknown) => {
        if (err instanceof StreamError) this.fail(err.condition, err.message);
        else {
          this.log.error({ event: 's2s.internal_error', address: this.remoteAddress, err }, 'server stream failed');
          this.fail('internal-server-error', 'internal server error');
        }
      });
  }

  /** The namespace of a top-level element: its own declaration, else the header's (`db:` → dialback). */
  private namespaceOf(element: XmlElement): { ns: string; name: string } {
    const colon = element.name.indexOf(':');
    if (colon < 0) return { ns: element.attrs.xmlns ?? NS_SERVER, name: element.name };
    const prefix = element.name.slice(0, colon);
    const ns = element.attrs[`xmlns:${prefix}`] ?? this.header[`xmlns:${prefix}`] ?? (prefix === this.parser.prefix ? NS_STREAMS : '');
    return { ns, name: element.name.slice(colon + 1) };
  }

  /** Writes our stream header (again after a restart). */
  sendHeader(attrs: { from?: string; to?: string; id?: string }): void {
    this.headerSent = true;
    const parts = Object.entries(attrs)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => `${k}="${escapeAttr(v!)}"`)
      .join(' ');
    this.write(`<?xml version='1.0'?><stream:stream xmlns="${NS_SERVER}" xmlns:stream="${NS_STREAMS}" xmlns:db="${NS_DIALBACK}" ${parts} version="1.0" xml:lang="en">`);
  }

  /** Writes a stanza or nonza (stanzas lose a `jabber:client`/`jabber:server` xmlns: the stream's default applies). */
  send(element: XmlElement): void {
    if (element.attrs.xmlns === 'jabber:client' || element.attrs.xmlns === NS_SERVER) delete element.attrs.xmlns;
    this.write(serialize(element));
  }

  write(text: string): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(text);
    if (this.socket.writableLength > OUTPUT_LIMIT) this.socket.destroy();
  }

  /** The stream restarts (after TLS or SASL): a new header is read, and ours is sent again. */
  restart(): void {
    this.headerSent = false;
    this.parser = this.newParser();
    this.stopped = false;
  }

  stopReading(): void {
    this.stopped = true;
    this.parser.stop();
  }

  /** The receiving side of STARTTLS: our certificate (its context carries the trusted CAs); the peer's is asked for (SASL EXTERNAL), never required. */
  startServerTls(context: tls.SecureContext): void {
    const plain = this.detachPlain();
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: context, requestCert: true, rejectUnauthorized: false });
    secure.once('secure', () => {
      this.peerCertificate = secure.getPeerCertificate();
      this.authorizationError = serverSideVerifyError(secure);
    });
    this.useSocket(secure);
  }

  /** The initiating side of STARTTLS: resolves once the handshake is done (the certificate is checked by the caller). */
  startClientTls(servername: string, context: tls.SecureContext | undefined, ca: string | undefined): Promise<void> {
    const plain = this.detachPlain();
    return new Promise((resolve, reject) => {
      // A ready context carries its CAs (s2s.ts builds it with them); else the configured CAs, or the system's.
      const secure = tls.connect({ socket: plain, servername, rejectUnauthorized: false, ...(context ? { secureContext: context } : ca ? { ca } : {}) });
      secure.once('secureConnect', () => {
        this.peerCertificate = secure.getPeerCertificate();
        this.authorizationError = secure.authorized ? undefined : String(secure.authorizationError ?? 'no certificate');
        resolve();
      });
      secure.once('error', reject);
      this.useSocket(secure);
    });
  }

  /** Whether the peer's certificate is valid (trusted chain) for `domain` (RFC 6125 through node's check). */
  certificateValidFor(domain: string): boolean {
    if (!this.secure || this.authorizationError !== undefined || !this.peerCertificate?.raw) return false;
    return tls.checkServerIdentity(domain, this.peerCertificate) === undefined;
  }

  private detachPlain(): net.Socket {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => plain.destroy());
    plain.resume();
    return plain;
  }

  private useSocket(socket: net.Socket): void {
    this.socket = socket;
    this.restart();
    this.attach();
  }

  /** Ends the stream with a stream error (RFC 6120 4.9). */
  fail(condition: string, text: string): void {
    if (this.closed) return;
    // A stream error is sent inside a stream (RFC 6120 4.9.1.1): ours is opened first when it was not yet.
    if (!this.headerSent) this.sendHeader({ id: newStreamId() });
    const error = el('stream:error', {}, el(condition, { xmlns: NS_STREAM_ERRORS }), el('text', { xmlns: NS_STREAM_ERRORS, 'xml:lang': 'en' }, text));
    this.write(serialize(error));
    this.close();
  }

  /** Ends the stream gracefully and the connection shortly after. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.write('</stream:stream>');
    this.stopReading();
    const socket = this.socket;
    socket.end(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
    setTimeout(() => socket.destroy(), LINGER_MS * 5).unref();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private onClose(): void {
    this.closed = true;
    if (this.lostCalled) return;
    this.lostCalled = true;
    this.handler.lost();
  }
}

/** A new stream id (RFC 6120 4.7.3: unpredictable; dialback keys depend on it). */
export function newStreamId(): string {
  return randomBytes(16).toString('base64url');
}

export function address(socket: net.Socket): string {
  const a = socket.remoteAddress;
  if (!a) return 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * Why the client certificate of a server-side TLSSocket is not trusted (undefined: it is).
 * Node computes `authorized` only for sockets its tls.Server made; a TLSSocket made on an
 * accepted connection for STARTTLS gets the same answer the way tls.Server does it: OpenSSL's
 * verification result of the handshake (`verifyError()` of the socket's handle). Without
 * that handle the certificate counts as untrusted (dialback is used instead of EXTERNAL).
 */
function serverSideVerifyError(socket: tls.TLSSocket): string | undefined {
  if (socket.authorized) return undefined;
  if (socket.authorizationError) return String(socket.authorizationError);
  if (!socket.getPeerCertificate()?.raw) return 'no certificate';
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (typeof handle?.verifyError !== 'function') return 'the certificate could not be checked';
  const error = handle.verifyError();
  return error ? (error.code ?? error.message) : undefined;
}
