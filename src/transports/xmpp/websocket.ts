import type http from 'node:http';
import type net from 'node:net';
// WebSocket framing, the handshake and its limits: the `ws` library, the one Node servers
// use, rather than our own RFC 6455 code.
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { XmlLimitError, XmlParseError, parseXml } from '../../xml/parser.js';
import { clientAddress } from '../../ximss/bindings/sockets.js';
import { C2sStream, type C2sTransport, type XmppContext } from './c2s.js';
import { ReadGate } from './throttle.js';
import { NS_FRAMING, StreamError, namespaceOf } from './stream.js';

/** The WebSocket subprotocol of RFC 7395. */
const SUBPROTOCOL = 'xmpp';

/** What the HTTP listener tells of the connection it hands over. */
export interface UpgradeOptions {
  /** The HTTP listener is HTTPS: the stream counts as encrypted (PLAIN is offered). */
  secure: boolean;
  /** The connection no longer counts as not logged in (called once the stream authenticates). */
  releaseAdmission(): void;
}

/**
 * XMPP over WebSocket (RFC 7395): every frame is one XML document — `<open/>` and
 * `<close/>` in urn:ietf:params:xml:ns:xmpp-framing, or one stanza or nonza — read within
 * the stream's limits (the frame's size first). Stanzas carry `xmlns="jabber:client"`
 * (every frame says its namespace), which the stream drops. No STARTTLS: the connection is as secure as the HTTP listener.
 */
class WebSocketTransport implements C2sTransport {
  readonly kind = 'websocket' as const;
  readonly framed = true;
  readonly canStartTls = false;
  readonly remoteAddress: string;
  readonly secure: boolean;
  stream!: C2sStream;
  private stopped = false;
  private readonly gate: ReadGate;

  constructor(
    private readonly socket: WebSocket,
    raw: net.Socket,
    private readonly options: UpgradeOptions,
    context: XmppContext,
  ) {
    this.remoteAddress = clientAddress(raw);
    this.secure = options.secure;
    this.gate = new ReadGate(socket, context.config.xmpp);
  }

  attach(): void {
    this.socket.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.socket.on('error', () => this.socket.terminate());
    this.socket.on('close', () => {
      this.gate.stop();
      this.options.releaseAdmission();
      this.stream.lost();
    });
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.stopped) return;
    this.stream.activity();
    const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    this.gate.read(bytes);
    try {
      const limits = this.stream.limits;
      if (isBinary) throw new StreamError('bad-format', 'XMPP frames are text');
      if (bytes > limits.bytes) throw new StreamError('policy-violation', `a stanza is larger than ${limits.bytes} bytes`);
      const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
      let element;
      try {
        element = parseXml(text, limits.xml);
      } catch (err) {
        if (err instanceof XmlLimitError) throw new StreamError('policy-violation', err.message);
        if (err instanceof XmlParseError) throw new StreamError('not-well-formed', err.errorText);
        throw err;
      }
      const ns = namespaceOf(element, 'stream');
      if (ns === NS_FRAMING && element.name === 'open') return this.stream.header(element.attrs);
      if (ns === NS_FRAMING && element.name === 'close') return this.stream.end();
      this.stream.element(element, ns);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      this.stopReading();
      this.stream.failed(err);
    }
  }

  write(text: string): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(text);
  }

  startTls(): void {
    throw new Error('no STARTTLS over WebSocket');
  }

  restart(): void {
    this.stopped = false;
  }

  stopReading(): void {
    this.stopped = true;
  }

  pause(): void {
    this.gate.pause();
  }

  resume(): void {
    this.gate.resume();
  }

  end(): void {
    this.gate.stop();
    this.options.releaseAdmission();
    this.socket.close(1000);
    // A client that never answers the close is dropped.
    setTimeout(() => this.socket.terminate(), 5000).unref();
  }

  destroy(): void {
    this.socket.terminate();
  }

  releaseAdmission(): void {
    this.options.releaseAdmission();
  }
}

/** The WebSocket side of the XMPP service: upgrades on /xmpp-websocket become client streams. */
export class XmppWebSockets {
  private readonly server: WebSocketServer;

  constructor(
    private readonly context: XmppContext,
    private readonly track: (stream: C2sStream) => void,
    private readonly untrack: (stream: C2sStream) => void,
  ) {
    const { xmpp } = context.config;
    this.server = new WebSocketServer({
      noServer: true,
      // No frame is larger than the largest stanza; the stream's own limit is checked per frame.
      maxPayload: Math.max(xmpp.maxStanzaBytes, xmpp.preAuthStanzaBytes),
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
  }

  upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, options: UpgradeOptions): void {
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      // RFC 7395 3.1: without the subprotocol the client is not speaking XMPP.
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nthe WebSocket subprotocol "xmpp" is required\n');
      return;
    }
    this.server.handleUpgrade(req, socket, head, (ws) => {
      const transport = new WebSocketTransport(ws, socket, options, this.context);
      const stream = new C2sStream(this.context, transport, this.untrack);
      transport.stream = stream;
      this.track(stream);
      transport.attach();
    });
  }

  close(): void {
    this.server.close();
  }
}
