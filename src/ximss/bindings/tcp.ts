import net from 'node:net';
import tls from 'node:tls';
import { XmlParseError, isBlank, parseXmlRange } from '../../xml/parser.js';
import { Conversation, type TransportControl } from '../conversation.js';
import type { Engine } from '../engine.js';
import { errorResponse } from '../protocol.js';
import type { AsyncSink, Session } from '../session.js';
import { clientAddress, listen, serverTls } from './sockets.js';

/** Stop reading from a client whose unread output exceeds this many bytes. */
const OUTPUT_HIGH_WATER = 4 * 1024 * 1024;

/**
 * XIMSS over TCP: each message is one XML document followed by a zero byte, in both
 * directions. Requests may be pipelined; the conversation answers them in order. Output is
 * gathered and written once per turn of the event loop.
 */
export class TcpConnection implements TransportControl {
  readonly kind = 'tcp' as const;
  readonly conversation: Conversation;
  private socket: net.Socket;
  private pendingChunks: Buffer[] = [];
  private pendingBytes = 0;
  private output = '';
  private flushScheduled = false;
  private closing = false;
  /** Set when an oversized message arrived: further input is ignored until the close. */
  private discarding = false;
  private closed = false;
  /** Bytes received after a `starttls` request, held until the TLS switch is decided. */
  private heldForTls: Buffer[] | undefined;
  private readPausedForQueue = false;
  private readPausedForOutput = false;
  private inputEnded = false;

  constructor(
    private readonly engine: Engine,
    socket: net.Socket,
    private readonly onClosed: (connection: TcpConnection) => void,
    initialData?: Buffer,
  ) {
    this.socket = socket;
    const secure = socket instanceof tls.TLSSocket;
    this.conversation = new Conversation(engine, clientAddress(socket), secure, this, (length) =>
      this.onQueueLength(length),
    );
    socket.setNoDelay(true);
    this.attach(socket);
    this.armPreLoginTimeout();
    if (initialData && initialData.length > 0) this.onData(initialData);
  }

  private get limits() {
    return this.engine.server.config.limits;
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      if (this.readPausedForOutput) {
        this.readPausedForOutput = false;
        this.updateReading();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onSocketClosed());
    // A client may half-close after its last request: answer what it sent, then close.
    socket.on('end', () => {
      this.inputEnded = true;
      if (this.conversation.idle) this.close();
    });
  }

  private armPreLoginTimeout(): void {
    this.socket.setTimeout(this.limits.idleTimeoutSeconds * 1000, () => {
      if (!this.conversation.session) this.close();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closing || this.discarding) return;
    if (this.heldForTls) {
      this.heldForTls.push(chunk);
      return;
    }
    if (this.pendingBytes === 0 && this.onDataFast(chunk)) return;
    let start = 0;
    for (;;) {
      const zero = chunk.indexOf(0, start);
      if (zero < 0) break;
      let message: Buffer;
      if (this.pendingBytes > 0) {
        this.pendingChunks.push(chunk.subarray(start, zero));
        message = Buffer.concat(this.pendingChunks, this.pendingBytes + zero - start);
        this.pendingChunks = [];
        this.pendingBytes = 0;
      } else {
        message = chunk.subarray(start, zero);
      }
      start = zero + 1;
      if (message.length > this.limits.maxRequestBytes) return this.tooLarge();
      const isStartTls = this.handleMessage(message);
      if (isStartTls) {
        this.heldForTls = start < chunk.length ? [chunk.subarray(start)] : [];
        return;
      }
      if (this.closing) return;
    }
    if (start < chunk.length) {
      const rest = start === 0 ? chunk : chunk.subarray(start);
      this.pendingChunks.push(rest);
      this.pendingBytes += rest.length;
      if (this.pendingBytes > this.limits.maxRequestBytes) this.tooLarge();
    }
  }

  /**
   * The common case, pipelined requests arriving whole: decodes the complete messages of a
   * chunk with one toString and splits the text. Returns false (having done nothing) when
   * the chunk needs the byte-exact path: it may hold a `starttls`, after which the bytes
   * must stay undecoded for the TLS layer.
   */
  private onDataFast(chunk: Buffer): boolean {
    const lastZero = chunk.lastIndexOf(0);
    if (lastZero < 0 || chunk.includes(STARTTLS)) return false;
    const text = chunk.toString('utf8', 0, lastZero);
    const limit = this.limits.maxRequestBytes;
    let start = 0;
    while (start <= text.length) {
      let zero = text.indexOf('\0', start);
      if (zero < 0) zero = text.length;
      // Characters never outnumber bytes: count bytes only when it could matter.
      if ((zero - start) * 3 > limit && Buffer.byteLength(text.slice(start, zero)) > limit) {
        this.tooLarge();
        return true;
      }
      this.handleText(text, start, zero);
      start = zero + 1;
      if (this.closing) return true;
    }
    if (lastZero + 1 < chunk.length) {
      const rest = chunk.subarray(lastZero + 1);
      this.pendingChunks.push(rest);
      this.pendingBytes = rest.length;
      if (this.pendingBytes > limit) this.tooLarge();
    }
    return true;
  }

  /** Parses and submits one message; true when it is a `starttls` request. */
  private handleMessage(message: Buffer): boolean {
    const text = message.toString('utf8');
    return this.handleText(text, 0, text.length);
  }

  /** Parses and submits the message `source[from, to)`; true when it is a `starttls` request. */
  private handleText(source: string, from: number, to: number): boolean {
    if (isBlank(source, from, to)) return false; // stray zero bytes (keep-alives) carry no request
    let request;
    try {
      request = parseXmlRange(source, from, to);
    } catch (err) {
      if (!(err instanceof XmlParseError)) throw err;
      this.conversation.submit(errorResponse(undefined, `malformed XML: ${err.message}`), this.writer);
      return false;
    }
    if (request.name === 'starttls' && !this.conversation.secure) {
      // `done` runs before the conversation's afterResponse hook (which switches to TLS):
      // decide what to do with the held bytes only once that hook has run, or clear text
      // sent after `starttls` would be executed as commands (STARTTLS command injection).
      this.conversation.submit(request, this.writer, () => queueMicrotask(() => this.afterStartTlsResponse()));
      return true;
    }
    this.conversation.submit(request, this.writer);
    return false;
  }

  private readonly writer = (xml: string): void => this.write(xml);

  private tooLarge(): void {
    this.discarding = true;
    this.pendingChunks = [];
    this.pendingBytes = 0;
    // Requests received before it are answered first (in order); then the error, then the close.
    this.conversation.submit(errorResponse(undefined, `message is larger than ${this.limits.maxRequestBytes} bytes`), this.writer, () =>
      this.close(),
    );
  }

  write(xml: string): void {
    if (this.closed) return;
    this.output += xml + '\0';
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.output === '' || this.closed) return;
    const data = this.output;
    this.output = '';
    this.socket.write(data);
    if (this.socket.writableLength > OUTPUT_HIGH_WATER && !this.readPausedForOutput) {
      this.readPausedForOutput = true;
      this.updateReading();
    }
  }

  private onQueueLength(length: number): void {
    if (length === 0 && this.inputEnded) {
      this.close();
      return;
    }
    if (length > this.limits.maxPendingRequests && !this.readPausedForQueue) {
      this.readPausedForQueue = true;
      this.updateReading();
    } else if (length === 0 && this.readPausedForQueue) {
      this.readPausedForQueue = false;
      this.updateReading();
    }
  }

  private updateReading(): void {
    if (this.readPausedForQueue || this.readPausedForOutput) this.socket.pause();
    else if (!this.closing) this.socket.resume();
  }

  // --- TransportControl ---

  canStartTls(): boolean {
    return !this.conversation.secure && this.engine.server.tls !== undefined;
  }

  private tlsStarted = false;

  startTls(): void {
    this.flush();
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('drain');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const held = this.heldForTls ?? [];
    this.heldForTls = undefined;
    for (let i = held.length - 1; i >= 0; i--) plain.unshift(held[i]!);
    const secure = serverTls(plain, this.engine.server.tls!);
    this.socket = secure;
    this.conversation.secure = true;
    this.tlsStarted = true;
    this.attach(secure);
    this.armPreLoginTimeout();
  }

  private afterStartTlsResponse(): void {
    if (this.tlsStarted) return;
    // starttls failed: go on reading in clear text with what arrived meanwhile.
    const held = this.heldForTls ?? [];
    this.heldForTls = undefined;
    for (const chunk of held) this.onData(chunk);
  }

  asyncSink(session: Session): AsyncSink {
    this.socket.setTimeout(0); // from now on the session's own idle timer decides
    return {
      deliver: (xml) => this.write(xml),
      ended: () => {
        if (this.conversation.session === session) this.conversation.session = null;
        this.close();
      },
    };
  }

  /** Flushes pending output, then closes the connection. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.flush();
    this.socket.end();
    const socket = this.socket;
    setTimeout(() => socket.destroy(), 5000).unref();
  }

  private onSocketClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    this.conversation.abandon();
    const session = this.conversation.session;
    if (session) {
      this.conversation.session = null;
      this.engine.server.sessions.end(session, false);
    }
    this.onClosed(this);
  }
}

const STARTTLS = Buffer.from('starttls');

/** Listens for XIMSS over TCP (plain, or implicit TLS when `secureContext` is given). */
export class TcpListener {
  private readonly server: net.Server;
  readonly connections = new Set<TcpConnection>();

  constructor(
    private readonly engine: Engine,
    secureContext?: tls.SecureContext,
  ) {
    const onSocket = (socket: net.Socket): void => void this.adopt(secureContext ? serverTls(socket, secureContext) : socket);
    // allowHalfOpen: a client that half-closes after its last request still gets the answers.
    this.server = net.createServer({ allowHalfOpen: true }, onSocket);
    this.server.on('error', (err) => console.error('ximss listener error:', err));
  }

  /** Serves a socket accepted elsewhere (the HTTP port's raw XIMSS connections). */
  adopt(socket: net.Socket, initialData?: Buffer): TcpConnection {
    const connection = new TcpConnection(this.engine, socket, (c) => this.connections.delete(c), initialData);
    this.connections.add(connection);
    return connection;
  }

  listen(port: number, host: string): Promise<number> {
    return listen(this.server, port, host);
  }

  /** Stops accepting; closes pre-login connections (sessions are ended by the server). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) if (!connection.conversation.session) connection.close();
    await closed;
  }
}
