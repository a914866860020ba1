import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import tls from 'node:tls';
import { BLOCKED, type Admission } from '../../services/connections.js';
import type { XmlElement } from '../../xml/element.js';
import { XmlDocumentParser, XmlDocumentStream, XmlParseError, isBlank, parseXmlRange } from '../../xml/parser.js';
import { Conversation, type Output, type TransportControl } from '../conversation.js';
import type { Engine } from '../engine.js';
import { errorResponse } from '../protocol.js';
import type { AsyncSink, Session } from '../session.js';
import { requestProfile, type RequestProfile } from './request-limits.js';
import { clientAddress, listen, refuseConnection, serverTls } from './sockets.js';

/** Requests wait (and reading stops) while a client's unread output exceeds this many bytes. */
const OUTPUT_HIGH_WATER = 4 * 1024 * 1024;
/** How long a closing connection stays open after its last answer has left, for the client to read it. */
const LINGER_MS = 1000;
/** A closing connection is freed after this long at the latest (its client does not read). */
const CLOSE_TIMEOUT_MS = 10_000;
/** How long the listener's close waits for connections to finish before it drops them. */
const CLOSE_GRACE_MS = 2000;

/** A message arriving over several chunks: parsed as it comes, never buffered whole. */
interface PartialMessage {
  readonly document: XmlDocumentStream;
  readonly decoder: StringDecoder;
  readonly profile: RequestProfile;
  bytes: number;
}

/**
 * XIMSS over TCP: each message is one XML document followed by a zero byte, in both
 * directions. Requests may be pipelined; the conversation answers them in order. Output is
 * gathered and written once per turn of the event loop.
 *
 * Every message is read within the limits of its connection's state (tighter before login:
 * see request-limits.ts), checked while it is parsed; a message split over several reads
 * is parsed as it arrives. Before login each request is answered before the next is read
 * (a login changes which limits apply; after `starttls` the bytes must stay undecoded for
 * TLS), the connection must send a request within firstRequestSeconds and log in within
 * loginSeconds, and it counts against the per-address connection limit.
 */
export class TcpConnection implements TransportControl {
  readonly kind = 'tcp' as const;
  readonly conversation: Conversation;
  private socket: net.Socket;
  private partial: PartialMessage | undefined;
  /** The parser for messages split over reads (made when first needed). */
  private streamParser: XmlDocumentParser | undefined;
  private output = '';
  private flushScheduled = false;
  private closing = false;
  /** Set when the connection is to close after its answers: further input is ignored. */
  private inputStopped = false;
  /** After a refused message: its remaining bytes are skipped up to its zero byte. */
  private skipping = false;
  private closed = false;
  /** Input held undecoded until the request before it is answered (before login, and after `starttls`). */
  private held: Buffer[] | undefined;
  private readPausedForQueue = false;
  private readPausedForOutput = false;
  private inputEnded = false;
  private tlsStarted = false;
  private sawRequest = false;
  private readonly deadlines: NodeJS.Timeout[] = [];

  constructor(
    private readonly engine: Engine,
    socket: net.Socket,
    private readonly onClosed: (connection: TcpConnection) => void,
    private admission: Admission | undefined,
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
    const { firstRequestSeconds, loginSeconds } = this.limits;
    this.deadlines.push(
      setTimeout(() => this.sawRequest || this.close(), firstRequestSeconds * 1000),
      setTimeout(() => this.conversation.session || this.close(), loginSeconds * 1000),
    );
    for (const timer of this.deadlines) timer.unref();
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
      this.conversation.resume();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onSocketClosed());
    // A client may half-close after its last request: answer what it sent, then close.
    socket.on('end', () => {
      this.inputEnded = true;
      if (this.answeredAll) this.close();
    });
  }

  private get reading(): boolean {
    return !this.closing && !this.inputStopped;
  }

  /** Before login, a connection idle as long as a session may be is closed too. */
  private armPreLoginTimeout(): void {
    this.socket.setTimeout(this.limits.idleTimeoutSeconds * 1000, () => {
      if (!this.conversation.session) this.close();
    });
  }

  private onData(chunk: Buffer): void {
    if (!this.reading) return;
    if (this.held) {
      this.held.push(chunk);
      return;
    }
    let start = 0;
    if (this.skipping) {
      const zero = chunk.indexOf(0);
      if (zero < 0) return;
      this.skipping = false;
      start = zero + 1;
    }
    if (start === 0 && !this.partial && this.conversation.session && this.onDataFast(chunk)) return;
    for (;;) {
      const zero = chunk.indexOf(0, start);
      if (zero < 0) break;
      const rest = this.endMessage(chunk, start, zero);
      start = zero + 1;
      if (rest === 'hold') {
        this.hold(chunk.subarray(start));
        return;
      }
      if (!this.reading) return;
    }
    if (start < chunk.length) this.continueMessage(start === 0 ? chunk : chunk.subarray(start));
  }

  /**
   * The common case once logged in, pipelined requests arriving whole: decodes the
   * complete messages of a chunk with one toString and splits the text. Returns false
   * (having done nothing) when the chunk needs the byte-exact path.
   */
  private onDataFast(chunk: Buffer): boolean {
    const lastZero = chunk.lastIndexOf(0);
    if (lastZero < 0 || chunk.includes(STARTTLS)) return false;
    const text = chunk.toString('utf8', 0, lastZero);
    const profile = requestProfile(this.limits, true);
    let start = 0;
    while (start <= text.length) {
      let zero = text.indexOf('\0', start);
      if (zero < 0) zero = text.length;
      // Characters never outnumber bytes: count bytes only when it could matter.
      if ((zero - start) * 3 > profile.bytes && Buffer.byteLength(text.slice(start, zero)) > profile.bytes) {
        this.tooLarge(profile);
        return true;
      }
      this.handleText(text, start, zero, profile);
      start = zero + 1;
      if (!this.reading) return true;
    }
    if (lastZero + 1 < chunk.length) this.continueMessage(chunk.subarray(lastZero + 1));
    return true;
  }

  /** The profile a message starting now is read with. */
  private profile(): RequestProfile {
    return requestProfile(this.limits, this.conversation.session !== null);
  }

  /** Bytes of a message that goes on in later reads: parsed now, within its limits. */
  private continueMessage(bytes: Buffer): void {
    let partial = this.partial;
    if (!partial) {
      this.streamParser ??= new XmlDocumentParser();
      const profile = this.profile();
      partial = { document: new XmlDocumentStream(this.streamParser, profile.xml), decoder: new StringDecoder('utf8'), profile, bytes: 0 };
      this.partial = partial;
    }
    partial.bytes += bytes.length;
    if (partial.bytes > partial.profile.bytes) {
      this.partial = undefined;
      this.tooLarge(partial.profile);
      return;
    }
    this.feed(partial, partial.decoder.write(bytes));
  }

  /** Parses more text of a partial message; a refusal is answered at once and the rest skipped. */
  private feed(partial: PartialMessage, text: string): void {
    try {
      partial.document.write(text);
    } catch (err) {
      if (!(err instanceof XmlParseError)) throw err;
      this.partial = undefined;
      this.skipping = true;
      this.refuse(err);
    }
  }

  /**
   * A message ends at `chunk[zero]`: finishes the partial one, or parses `chunk[start, zero)`
   * whole. 'hold' when further input must wait for its answer.
   */
  private endMessage(chunk: Buffer, start: number, zero: number): 'hold' | undefined {
    const partial = this.partial;
    if (partial) {
      this.partial = undefined;
      partial.bytes += zero - start;
      if (partial.bytes > partial.profile.bytes) return void this.tooLarge(partial.profile);
      let request: XmlElement | undefined;
      try {
        partial.document.write(partial.decoder.end(chunk.subarray(start, zero)));
        request = partial.document.end();
      } catch (err) {
        if (!(err instanceof XmlParseError)) throw err;
        this.refuse(err);
        return undefined;
      }
      // Only white space (keep-alive zero bytes) carries no request.
      return request ? this.submit(request) : undefined;
    }
    const profile = this.profile();
    if (zero - start > profile.bytes) return void this.tooLarge(profile);
    const text = chunk.toString('utf8', start, zero);
    return this.handleText(text, 0, text.length, profile);
  }

  /** Parses and submits the whole message `source[from, to)`. */
  private handleText(source: string, from: number, to: number, profile: RequestProfile): 'hold' | undefined {
    if (isBlank(source, from, to)) return undefined; // stray zero bytes (keep-alives) carry no request
    let request: XmlElement;
    try {
      request = parseXmlRange(source, from, to, profile.xml);
    } catch (err) {
      if (!(err instanceof XmlParseError)) throw err;
      this.refuse(err);
      return undefined;
    }
    return this.submit(request);
  }

  /**
   * Submits a parsed request. Before login the next request is read only once this one is
   * answered; after `starttls`, only once the TLS switch is decided, or clear text sent
   * after it would be executed as commands (STARTTLS command injection).
   */
  private submit(request: XmlElement): 'hold' | undefined {
    this.sawRequest = true;
    if (request.name === 'starttls' && !this.conversation.secure) {
      // `done` runs before the conversation's afterResponse hook (which switches to TLS).
      this.conversation.submit(request, this.writer, () => queueMicrotask(() => this.afterStartTlsResponse()));
      return 'hold';
    }
    if (!this.conversation.session) {
      this.conversation.submit(request, this.writer, () => queueMicrotask(() => this.release()));
      return 'hold';
    }
    this.conversation.submit(request, this.writer);
    return undefined;
  }

  /** A message broke the XML rules or a limit: answered (with its id when known), in turn; closed before login. */
  private refuse(err: XmlParseError): void {
    const text = err.errorText;
    const id = err.rootId;
    const loggedIn = this.conversation.session !== null;
    if (!loggedIn) {
      this.stopInput();
      this.engine.server.connections.reportAbuse(this.conversation.remoteAddress, text);
    }
    this.conversation.submit(errorResponse(id, text), this.writer, loggedIn ? undefined : () => this.close());
  }

  private readonly writer: Output = Object.assign((xml: string): void => this.write(xml), {
    blocked: (): boolean => this.output.length + this.socket.writableLength > OUTPUT_HIGH_WATER,
  });

  private tooLarge(profile: RequestProfile): void {
    this.partial = undefined;
    this.stopInput();
    if (!this.conversation.session) this.engine.server.connections.reportAbuse(this.conversation.remoteAddress, `message is larger than ${profile.bytes} bytes`);
    // Requests received before it are answered first (in order); then the error, then the close.
    this.conversation.submit(errorResponse(undefined, `message is larger than ${profile.bytes} bytes`), this.writer, () => this.close());
  }

  write(xml: string): void {
    if (this.closed) return;
    this.output += xml + '\0';
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Once per turn of the event loop, not per microtask: a handler that awaits between
      // the rows of a long answer (slicing does) would otherwise cost a write per row.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.output === '' || this.closed) return;
    const data = this.output;
    this.output = '';
    this.socket.write(data);
    if (this.socket.writableLength > OUTPUT_HIGH_WATER) {
      if (!this.readPausedForOutput) {
        this.readPausedForOutput = true;
        this.updateReading();
      }
    } else {
      this.conversation.resume();
    }
  }

  /** The client has half-closed and every request it sent has been answered (none is held unread). */
  private get answeredAll(): boolean {
    return this.inputEnded && this.conversation.idle && (this.held === undefined || this.held.length === 0);
  }

  private onQueueLength(length: number): void {
    if (length === 0 && this.inputEnded) {
      // Input held behind the request just answered is read first (release).
      if (this.answeredAll) this.close();
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
    if (this.readPausedForQueue || this.readPausedForOutput || this.held) this.socket.pause();
    else if (this.reading) this.socket.resume();
  }

  /** Stops reading; `rest` (undecoded) and whatever arrives meanwhile wait for release(). */
  private hold(rest: Buffer): void {
    this.held = rest.length > 0 ? [rest] : [];
    this.updateReading();
  }

  /** Reads the held input, until it is all read or something holds it again. */
  private release(): void {
    const held = this.held;
    if (!held) return;
    this.held = undefined;
    while (held.length > 0 && !this.held && this.reading) this.onData(held.shift()!);
    // Held again by a request of the released input: the rest waits behind it.
    (this.held as Buffer[] | undefined)?.push(...held);
    this.updateReading();
    if (this.answeredAll) this.close();
  }

  // --- TransportControl ---

  canStartTls(): boolean {
    return !this.conversation.secure && this.engine.server.tls !== undefined;
  }

  startTls(): void {
    this.flush();
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('drain');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const held = this.held ?? [];
    this.held = undefined;
    for (let i = held.length - 1; i >= 0; i--) plain.unshift(held[i]!);
    plain.resume();
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
    this.release();
  }

  asyncSink(session: Session): AsyncSink {
    // Logged in: the session's own idle timer decides from now on, and the connection
    // counts against the account's sessions instead of its address.
    for (const timer of this.deadlines) clearTimeout(timer);
    this.socket.setTimeout(0);
    this.releaseAdmission();
    return {
      deliver: (xml) => this.write(xml),
      ended: () => {
        if (this.conversation.session === session) this.conversation.session = null;
        this.close();
      },
    };
  }

  /**
   * The connection will close after its answers: nothing more is read (a client flooding it
   * costs nothing: the kernel's window closes) and it no longer counts against its address.
   */
  private stopInput(): void {
    this.inputStopped = true;
    this.socket.pause();
    this.releaseAdmission();
  }

  private releaseAdmission(): void {
    this.admission?.release();
    this.admission = undefined;
  }

  /**
   * Flushes pending output, then closes the connection: once the last answer has left, the
   * client has a moment to read it before the socket is freed (at the latest after
   * CLOSE_TIMEOUT_MS, for a client that does not read).
   */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.flush();
    this.releaseAdmission();
    const socket = this.socket;
    socket.end(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
    setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS).unref();
  }

  /** Drops the connection at once (the server is stopping and its grace period is over). */
  destroy(): void {
    this.socket.destroy();
  }

  private onSocketClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    for (const timer of this.deadlines) clearTimeout(timer);
    this.releaseAdmission();
    this.conversation.abandon();
    const session = this.conversation.session;
    if (session) {
      this.conversation.session = null;
      this.engine.server.sessions.end(session, false, 'connection_lost');
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
    const onSocket = (socket: net.Socket): void => {
      const admission = engine.server.connections.admit(clientAddress(socket), 'ximss');
      if (typeof admission === 'string') {
        // The client reads why (a XIMSS error response) unless it expects TLS first or its
        // address is blocked for abuse (then the cheapest answer is the best).
        if (secureContext || admission === BLOCKED) socket.destroy();
        else refuseConnection(socket, errorResponse(undefined, admission) + '\0');
        return;
      }
      this.adopt(secureContext ? serverTls(socket, secureContext) : socket, admission);
    };
    // allowHalfOpen: a client that half-closes after its last request still gets the answers.
    this.server = net.createServer({ allowHalfOpen: true }, onSocket);
    const log = engine.server.log.child({ component: 'ximss' });
    this.server.on('error', (err) => log.error({ event: 'ximss.listener_error', err }, 'listener error'));
  }

  /** Serves a socket (with its admission) accepted here or elsewhere (the HTTP port's raw XIMSS connections). */
  adopt(socket: net.Socket, admission: Admission | undefined, initialData?: Buffer): TcpConnection {
    const connection = new TcpConnection(this.engine, socket, (c) => this.connections.delete(c), admission, initialData);
    this.connections.add(connection);
    return connection;
  }

  listen(port: number, host: string): Promise<number> {
    return listen(this.server, port, host);
  }

  /** Whether the listener accepts connections (readiness). */
  get listening(): boolean {
    return this.server.listening;
  }

  /**
   * Stops accepting; closes pre-login connections (sessions are ended by the server). What
   * is still open after CLOSE_GRACE_MS (a client that reads nothing) is dropped.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) if (!connection.conversation.session) connection.close();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)));
    await Promise.race([closed, grace]);
    clearTimeout(timer);
    for (const connection of this.connections) connection.destroy();
    await closed;
  }
}
