/**
 * The SIP transport and service (src/transports/sip/transport.ts, service.ts) over real
 * sockets on loopback: OPTIONS over UDP, TCP, TLS and WebSocket, the answers the service gives
 * on its own (501, 416, 483, 404, 481), unreadable input (ignored, or answered and the stream
 * closed), RFC 5626 keep-alives, flows both ways, the connection limits and the idle limit;
 * then a whole server (ports.sip, WebSocket on the HTTP listener's /sip) and Debian's sipsak.
 * The messages are our own, shaped after RFC 3261's OPTIONS example (11) and RFC 3581's rport.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { crc32 } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { defaultConfig } from '../src/config.js';
import { Metrics } from '../src/metrics.js';
import { loadTlsContext } from '../src/tls.js';
import { parseVia } from '../src/transports/sip/headers.js';
import {
  SipMessageReader,
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  type SipStreamItem,
} from '../src/transports/sip/message.js';
import { SipService, UDP_SIZE_LIMIT, congestionControlled, type SipRequestEvent } from '../src/transports/sip/service.js';
import { newBranch, type ClientEvent, type SipEndpoint } from '../src/transports/sip/transactions.js';
import { SipTransportError, responseDestination, stampVia } from '../src/transports/sip/transport.js';
import { bindingResponse, StunLimiter } from '../src/transports/sip/stun.js';
import { ensureDebianTool } from './fixtures/debian.js';
import { capturingLogger, freePort, freeSipPort, startTestServer, type TestServer } from './helpers.js';

const DOMAIN = 'example.test';
let callCounter = 0;

/** A request as a client writes it; `via` is its transport and sent-by. */
function requestText(options: {
  method?: string;
  uri?: string;
  via?: string;
  maxForwards?: number | undefined;
  toTag?: string;
  extra?: string[];
  body?: string;
}): string {
  const method = options.method ?? 'OPTIONS';
  const lines = [
    `${method} ${options.uri ?? `sip:${DOMAIN}`} SIP/2.0`,
    `Via: ${options.via ?? 'SIP/2.0/UDP client.invalid:5099'};branch=${newBranch()};rport`,
    ...(options.maxForwards === undefined && 'maxForwards' in options ? [] : [`Max-Forwards: ${options.maxForwards ?? 70}`]),
    `From: <sip:tester@${DOMAIN}>;tag=t${++callCounter}`,
    `To: <sip:${DOMAIN}>${options.toTag ? `;tag=${options.toTag}` : ''}`,
    `Call-ID: call-${callCounter}-${Date.now()}@client.invalid`,
    `CSeq: 1 ${method}`,
    ...(options.extra ?? []),
    `Content-Length: ${Buffer.byteLength(options.body ?? '')}`,
  ];
  return `${lines.join('\r\n')}\r\n\r\n${options.body ?? ''}`;
}

function parsed(text: string): SipRequest {
  const message = parseSipMessage(Buffer.from(text));
  assert.equal(message.kind, 'request');
  return message;
}

/** A UDP client: sends datagrams, reads messages one at a time. */
class UdpPeer {
  private readonly queue: SipMessage[] = [];
  private readonly waiting: ((message: SipMessage) => void)[] = [];

  private constructor(readonly socket: dgram.Socket) {
    socket.on('message', (bytes) => {
      const message = parseSipMessage(bytes);
      const waiter = this.waiting.shift();
      if (waiter) waiter(message);
      else this.queue.push(message);
    });
  }

  static async open(): Promise<UdpPeer> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    return new UdpPeer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(text: string | Buffer, port: number): void {
    this.socket.send(typeof text === 'string' ? Buffer.from(text) : text, port, '127.0.0.1');
  }

  next(ms = 3000): Promise<SipMessage> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return withTimeout(new Promise((resolve) => this.waiting.push(resolve)), ms, 'a UDP message');
  }

  /** Nothing arrives within `ms`. */
  async silent(ms = 300): Promise<void> {
    await delay(ms);
    assert.equal(this.queue.length, 0, `unexpected: ${this.queue.map(startLine).join(', ')}`);
  }

  close(): void {
    this.socket.close();
  }
}

/** A stream client (TCP or TLS): what it reads, through the same framing as the server. */
class StreamPeer {
  private readonly reader = new SipMessageReader();
  private readonly items: SipStreamItem[] = [];
  private readonly waiting: ((item: SipStreamItem) => void)[] = [];
  closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.reader.feed(chunk)) {
        const waiter = this.waiting.shift();
        if (waiter) waiter(item);
        else this.items.push(item);
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static async tcp(port: number): Promise<StreamPeer> {
    const socket = net.connect({ port, host: '127.0.0.1' });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new StreamPeer(socket);
  }

  static async tls(port: number): Promise<StreamPeer> {
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    return new StreamPeer(socket);
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  next(ms = 3000): Promise<SipStreamItem> {
    const queued = this.items.shift();
    if (queued) return Promise.resolve(queued);
    return withTimeout(new Promise((resolve) => this.waiting.push(resolve)), ms, 'a stream item');
  }

  async message(ms = 3000): Promise<SipMessage> {
    const item = await this.next(ms);
    assert.equal(item.type, 'message', `expected a message, got a ${item.type}`);
    return (item as { message: SipMessage }).message;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A WebSocket client with the `sip` subprotocol. */
async function webSocketPeer(url: string): Promise<{ ws: WebSocket; next(): Promise<SipMessage> }> {
  const ws = new WebSocket(url, 'sip');
  const queue: SipMessage[] = [];
  const waiting: ((m: SipMessage) => void)[] = [];
  ws.on('message', (data: Buffer) => {
    const message = parseSipMessage(Buffer.from(data));
    const waiter = waiting.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return {
    ws,
    next: () => {
      const queued = queue.shift();
      return queued ? Promise.resolve(queued) : withTimeout(new Promise((resolve) => waiting.push(resolve)), 3000, 'a WebSocket message');
    },
  };
}

function startLine(message: SipMessage): string {
  return message.kind === 'request' ? `${message.method} ${message.uri}` : `${message.status} ${message.reason}`;
}

function response(message: SipMessage): SipResponse {
  assert.equal(message.kind, 'response', `expected a response, got ${startLine(message)}`);
  return message;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms))),
  ]);
}

/** The checks every 200 to OPTIONS passes: what the server does, and a stamped Via. */
function assertOptionsOk(message: SipMessage, sourcePort: number | undefined): void {
  const ok = response(message);
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('Allow') ?? '', /\bOPTIONS\b/);
  assert.equal(ok.headers.get('Accept'), 'application/sdp');
  assert.ok(ok.headers.has('Supported'));
  assert.match(ok.headers.get('Server') ?? '', /^ximssd\/\d/);
  assert.match(ok.headers.get('To') ?? '', /;tag=/);
  const via = parseVia(ok.headers.getAll('Via')[0]!);
  assert.equal(via.host, 'client.invalid');
  assert.equal(via.received, '127.0.0.1');
  if (sourcePort !== undefined) assert.equal(via.rport, sourcePort);
}

describe('Via stamping and response routing (pure)', () => {
  test('received is added when sent-by names another host; rport is filled when asked for', () => {
    const request = parsed(requestText({ via: 'SIP/2.0/UDP phone.invalid:5070' }));
    stampVia(request, '192.0.2.7', 40000);
    const via = parseVia(request.headers.getAll('Via')[0]!);
    assert.equal(via.received, '192.0.2.7');
    assert.equal(via.rport, 40000);
    assert.equal(via.port, 5070);
    assert.match(via.branch!, /^z9hG4bK/);
  });

  test('a sent-by that is the source address, without rport, is left alone', () => {
    const text = requestText({ via: 'SIP/2.0/UDP 192.0.2.7:5070' }).replace(';rport', '');
    const request = parsed(text);
    const before = request.headers.getAll('Via')[0];
    stampVia(request, '192.0.2.7', 5070);
    assert.equal(request.headers.getAll('Via')[0], before);
  });

  test('only the top value of a Via line with several is changed; the header order is kept', () => {
    const text = requestText({ via: 'SIP/2.0/TCP a.invalid' }).replace(';rport', ';rport, SIP/2.0/UDP b.invalid;branch=z9hG4bKother');
    const request = parsed(text);
    const names = [...request.headers].map(([name]) => name);
    stampVia(request, '2001:db8::9', 6000);
    assert.deepEqual([...request.headers].map(([name]) => name), names);
    const [top, second] = request.headers.getAll('Via');
    const via = parseVia(top!);
    assert.equal(via.received, '2001:db8::9');
    assert.equal(via.rport, 6000);
    assert.equal(second, 'SIP/2.0/UDP b.invalid;branch=z9hG4bKother');
  });

  test('a received parameter the client wrote is replaced, not repeated', () => {
    const request = parsed(requestText({ via: 'SIP/2.0/UDP c.invalid;received=10.0.0.1' }));
    stampVia(request, '198.51.100.4', 7000);
    const top = request.headers.getAll('Via')[0]!;
    assert.equal(top.match(/received=/g)?.length, 1);
    assert.equal(parseVia(top).received, '198.51.100.4');
  });

  test('RFC 3261 18.2.2 and RFC 3581: where a response goes', () => {
    const udp = (via: string): SipEndpoint => responseDestination(parsed(requestText({ via })), { host: '192.0.2.1', port: 1111 });
    // received and rport (as stamped): back to the source address and port.
    assert.deepEqual(udp('SIP/2.0/UDP h.invalid:5070;received=192.0.2.1;rport=1111'), { host: '192.0.2.1', port: 1111 });
    // received without rport: the sent-by port, default 5060.
    assert.deepEqual(udp('SIP/2.0/UDP h.invalid:5070;received=192.0.2.1'), { host: '192.0.2.1', port: 5070 });
    assert.deepEqual(udp('SIP/2.0/UDP h.invalid;received=192.0.2.1'), { host: '192.0.2.1', port: 5060 });
    // maddr wins; plain sent-by last.
    assert.deepEqual(udp('SIP/2.0/UDP h.invalid:5070;maddr=239.255.255.1;received=192.0.2.1'), { host: '239.255.255.1', port: 5070 });
    assert.deepEqual(udp('SIP/2.0/UDP [2001:db8::5]:5070'), { host: '2001:db8::5', port: 5070 });
    // A stream: the flow it came on, whatever the Via says.
    const flow: SipEndpoint = { host: '192.0.2.1', port: 40001, transport: 'tcp', flow: 'tcp-x-1' };
    assert.deepEqual(responseDestination(parsed(requestText({ via: 'SIP/2.0/TCP h.invalid:5070' })), flow), flow);
    // TLS without a flow (the connection is gone): sent-by, default port 5061.
    assert.deepEqual(responseDestination(parsed(requestText({ via: 'SIP/2.0/TLS h.invalid' })), { host: '192.0.2.1', port: 1, transport: 'tls' }), {
      host: 'h.invalid',
      port: 5061,
      transport: 'tls',
    });
  });
});

describe('RFC 3261 18.1.1: a request too large for UDP goes over TCP', () => {
  test('its top Via says TCP, the rest is kept; a small one, a flow or another transport stay', () => {
    const large = parsed(requestText({ method: 'MESSAGE', via: 'SIP/2.0/UDP 192.0.2.1:5060', body: 'x'.repeat(UDP_SIZE_LIMIT) }));
    const destination = congestionControlled(large, { host: '192.0.2.9', port: 5060 });
    assert.deepEqual(destination, { host: '192.0.2.9', port: 5060, transport: 'tcp' });
    const via = parseVia(large.headers.getAll('Via')[0]!);
    assert.equal(via.transport, 'TCP');
    assert.equal(via.host, '192.0.2.1');
    assert.match(via.branch!, /^z9hG4bK/);
    assert.equal(congestionControlled(parsed(requestText({ via: 'SIP/2.0/UDP 192.0.2.1' })), { host: '192.0.2.9', port: 5060 }), undefined);
    const onFlow = parsed(requestText({ method: 'MESSAGE', via: 'SIP/2.0/UDP 192.0.2.1', body: 'x'.repeat(2000) }));
    assert.equal(congestionControlled(onFlow, { host: '192.0.2.9', port: 5060, transport: 'tcp', flow: 'f' }), undefined);
    const otherVia = parsed(requestText({ method: 'MESSAGE', via: 'SIP/2.0/SCTP 192.0.2.1', body: 'x'.repeat(2000) }));
    assert.equal(congestionControlled(otherVia, { host: '192.0.2.9', port: 5060 }), undefined);
    assert.equal(parseVia(otherVia.headers.getAll('Via')[0]!).transport, 'SCTP');
  });
});

describe('the SIP service on loopback', () => {
  let service: SipService;
  let dataDir: string;
  let tlsPort: number;
  let httpServer: http.Server;
  let httpPort: number;
  const metrics = new Metrics({ defaults: false });
  const captured = capturingLogger();
  /** Requests the test handlers saw. */
  const seen: SipRequestEvent[] = [];

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'ximssd-sip-'));
    const context = await loadTlsContext({ ...defaultConfig(), dataDir, defaultDomain: DOMAIN });
    service = new SipService({
      host: '127.0.0.1',
      tls: context,
      isLocalDomain: async (domain) => domain === DOMAIN,
      limits: { connectionsPerAddress: 20 },
      log: captured.log,
      metrics,
    });
    await service.listen(0);
    tlsPort = await service.listenTls(0);
    httpServer = http.createServer((_req, res) => res.end());
    httpServer.on('upgrade', (req, socket: net.Socket, head) => service.upgrade(req, socket, head, { secure: false }));
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve()));
    httpPort = (httpServer.address() as net.AddressInfo).port;
    service.handle('REGISTER', (event) => {
      seen.push(event);
      event.respond(200, undefined, { headers: [['Contact', '<sip:tester@client.invalid>;expires=60']] });
    });
    service.handle('FAIL', () => {
      throw new Error('a handler that fails');
    });
  });

  after(async () => {
    httpServer.closeAllConnections();
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    await service.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('port 0 binds UDP and TCP on one number, and the log says so', () => {
    assert.ok(service.transport.port > 0);
    assert.ok(service.listening);
    const listening = captured.events('sip.listening');
    assert.deepEqual(listening.map((r) => r.port), [service.transport.port, tlsPort]);
  });

  test('OPTIONS over UDP: 200 with Allow, Accept, Supported, Server, and the Via stamped (received, rport)', async () => {
    const peer = await UdpPeer.open();
    try {
      peer.send(requestText({}), service.transport.port);
      assertOptionsOk(await peer.next(), peer.port);
    } finally {
      peer.close();
    }
  });

  test('OPTIONS over TCP: answered on the same connection, whatever port the Via names', async () => {
    const peer = await StreamPeer.tcp(service.transport.port);
    try {
      peer.send(requestText({ via: 'SIP/2.0/TCP client.invalid:5099' }));
      assertOptionsOk(await peer.message(), peer.socket.localPort);
      // Pipelined: two requests in one write, two answers in order.
      peer.send(requestText({ via: 'SIP/2.0/TCP client.invalid' }) + requestText({ method: 'FOO', via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await peer.message()).status, 200);
      assert.equal(response(await peer.message()).status, 501);
    } finally {
      peer.close();
    }
  });

  test('OPTIONS over TLS', async () => {
    const peer = await StreamPeer.tls(tlsPort);
    try {
      peer.send(requestText({ via: 'SIP/2.0/TLS client.invalid' }));
      assertOptionsOk(await peer.message(), peer.socket.localPort);
    } finally {
      peer.close();
    }
  });

  test('OPTIONS over WebSocket (RFC 7118); an upgrade without the sip subprotocol is refused', async () => {
    const peer = await webSocketPeer(`ws://127.0.0.1:${httpPort}/sip`);
    try {
      peer.ws.send(requestText({ via: 'SIP/2.0/WS client.invalid' }));
      assertOptionsOk(await peer.next(), undefined);
      // A frame that cannot be read does not end the connection.
      peer.ws.send('not SIP at all');
      peer.ws.send(requestText({ via: 'SIP/2.0/WS client.invalid' }));
      assert.equal(response(await peer.next()).status, 200);
    } finally {
      peer.ws.close();
    }
    const refused = new WebSocket(`ws://127.0.0.1:${httpPort}/sip`, 'xmpp');
    const status = await new Promise<number | undefined>((resolve) => {
      refused.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      refused.on('error', () => resolve(undefined));
    });
    assert.equal(status, 400);
  });

  test('a method nobody handles: 501 with Allow; a domain the server does not serve: 404', async () => {
    const peer = await UdpPeer.open();
    try {
      peer.send(requestText({ method: 'FOO', uri: `sip:someone@${DOMAIN}` }), service.transport.port);
      const notImplemented = response(await peer.next());
      assert.equal(notImplemented.status, 501);
      assert.deepEqual(notImplemented.headers.getAll('Allow'), ['OPTIONS', 'REGISTER', 'FAIL']);
      peer.send(requestText({ method: 'FOO', uri: 'sip:someone@elsewhere.invalid' }), service.transport.port);
      assert.equal(response(await peer.next()).status, 404);
      // OPTIONS naming the server's address is the server's too.
      peer.send(requestText({ uri: `sip:127.0.0.1:${service.transport.port}` }), service.transport.port);
      assert.equal(response(await peer.next()).status, 200);
    } finally {
      peer.close();
    }
  });

  test('an unsupported Request-URI scheme: 416', async () => {
    const peer = await UdpPeer.open();
    try {
      peer.send(requestText({ method: 'MESSAGE', uri: 'mailto:someone@example.test' }), service.transport.port);
      const unsupported = response(await peer.next());
      assert.equal(unsupported.status, 416);
      assert.equal(parseVia(unsupported.headers.getAll('Via')[0]!).rport, peer.port);
    } finally {
      peer.close();
    }
  });

  test('Max-Forwards 0: 483, except OPTIONS to the server', async () => {
    const peer = await UdpPeer.open();
    try {
      peer.send(requestText({ method: 'MESSAGE', uri: `sip:bob@${DOMAIN}`, maxForwards: 0 }), service.transport.port);
      assert.equal(response(await peer.next()).status, 483);
      peer.send(requestText({ maxForwards: 0 }), service.transport.port);
      assert.equal(response(await peer.next()).status, 200);
    } finally {
      peer.close();
    }
  });

  test('an in-dialog request nobody takes: 481; a CANCEL with nothing to cancel: 481; a failing handler: 500', async () => {
    const peer = await UdpPeer.open();
    const taken: string[] = [];
    service.onStray((event) => {
      if (event.type !== 'request' || event.request.method !== 'INFO') return false;
      taken.push(event.request.method);
      event.respond(200);
      return true;
    });
    try {
      peer.send(requestText({ method: 'BYE', uri: `sip:bob@${DOMAIN}`, toTag: 'gone' }), service.transport.port);
      assert.equal(response(await peer.next()).status, 481);
      peer.send(requestText({ method: 'INFO', uri: `sip:bob@${DOMAIN}`, toTag: 'live' }), service.transport.port);
      assert.equal(response(await peer.next()).status, 200);
      assert.deepEqual(taken, ['INFO']);
      peer.send(requestText({ method: 'CANCEL', uri: `sip:bob@${DOMAIN}` }), service.transport.port);
      const noInvite = response(await peer.next());
      assert.equal(noInvite.status, 481);
      // Answered by the transaction layer, the Server header all the same.
      assert.match(noInvite.headers.get('Server') ?? '', /^ximssd\//);
      peer.send(requestText({ method: 'FAIL', uri: `sip:bob@${DOMAIN}` }), service.transport.port);
      assert.equal(response(await peer.next()).status, 500);
    } finally {
      peer.close();
    }
  });

  test('garbage datagrams and CRLF keep-alives are dropped silently; the server still answers', async () => {
    const peer = await UdpPeer.open();
    const before = captured.events('sip.parse_error').length;
    try {
      peer.send(Buffer.from('\r\n\r\n'), service.transport.port);
      peer.send(Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]), service.transport.port);
      peer.send('INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n', service.transport.port);
      peer.send(`SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=${newBranch()}\r\n\r\n`, service.transport.port);
      peer.send(Buffer.alloc(70_000, 0x41), service.transport.port);
      await peer.silent();
      // Readable enough to answer: 400 (here a Max-Forwards that is not a number).
      peer.send(requestText({}).replace('Max-Forwards: 70', 'Max-Forwards: many'), service.transport.port);
      assert.equal(response(await peer.next()).status, 400);
      peer.send(requestText({}), service.transport.port);
      assert.equal(response(await peer.next()).status, 200);
    } finally {
      peer.close();
    }
    // Logged once per window per address; the rest at debug level only.
    const logged = captured.events('sip.parse_error').slice(before);
    assert.ok(logged.length >= 1);
    assert.ok(logged.filter((r) => r.level === 'info').length <= 1);
  });

  test('a stream with an oversized message gets 413 and is closed', async () => {
    const peer = await StreamPeer.tcp(service.transport.port);
    try {
      peer.send(requestText({ method: 'MESSAGE', uri: `sip:bob@${DOMAIN}`, via: 'SIP/2.0/TCP client.invalid' }).replace('Content-Length: 0', 'Content-Length: 300000'));
      assert.equal(response(await peer.message()).status, 413);
      await withTimeout(peer.closed, 3000, 'the connection to close');
    } finally {
      peer.close();
    }
  });

  test('a framing error that cannot be answered closes the stream without a word', async () => {
    const peer = await StreamPeer.tcp(service.transport.port);
    try {
      peer.send('this is not SIP\r\n\r\n');
      await withTimeout(peer.closed, 3000, 'the connection to close');
    } finally {
      peer.close();
    }
  });

  test('RFC 5626 keep-alive over UDP: a STUN Binding request is answered with the address it came from; a malformed one is not', async () => {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    const answers: Buffer[] = [];
    socket.on('message', (bytes) => answers.push(bytes));
    try {
      const request = Buffer.alloc(20);
      request.writeUInt16BE(0x0001, 0);
      request.writeUInt32BE(0x2112a442, 4);
      const transactionId = Buffer.from('0123456789ab');
      transactionId.copy(request, 8);
      // Malformed first (a length that does not match): silence; then the real one.
      const malformed = Buffer.from(request);
      malformed.writeUInt16BE(8, 2);
      socket.send(malformed, service.transport.port, '127.0.0.1');
      socket.send(request, service.transport.port, '127.0.0.1');
      await withTimeout(
        (async () => {
          while (answers.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        })(),
        5000,
        'the STUN answer',
      );
      const answer = answers[0]!;
      assert.equal(answer.readUInt16BE(0), 0x0101, 'a Binding success response');
      assert.deepEqual(answer.subarray(8, 20), transactionId);
      const mapped = decodeXorMappedAddress(answer);
      assert.deepEqual(mapped, { address: '127.0.0.1', port: socket.address().port });
      const fingerprintAt = answer.length - 8;
      assert.equal(answer.readUInt16BE(fingerprintAt), 0x8028);
      assert.equal(answer.readUInt32BE(fingerprintAt + 4), (crc32(answer.subarray(0, fingerprintAt)) ^ 0x5354554e) >>> 0);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(answers.length, 1, 'the malformed request got nothing');
    } finally {
      socket.close();
    }
  });

  test('STUN answers are limited per address (no reflector for spoofed requests)', () => {
    const limiter = new StunLimiter(3, 10_000, 2);
    assert.deepEqual([1, 2, 3, 4].map(() => limiter.allow('192.0.2.1', 0)), [true, true, true, false]);
    assert.equal(limiter.allow('192.0.2.2', 0), true, 'another address has its own budget');
    assert.equal(limiter.allow('192.0.2.1', 10_000), true, 'a new window');
    assert.equal(limiter.allow('192.0.2.3', 10_000), true, 'the oldest address is forgotten past the bound');
  });

  test('STUN answers carry IPv6 addresses too (XOR with the cookie and transaction id)', () => {
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0);
    request.writeUInt32BE(0x2112a442, 4);
    Buffer.from('abcdefghijkl').copy(request, 8);
    assert.deepEqual(decodeXorMappedAddress(bindingResponse(request, '2001:db8::1:5', 5060)!), { address: '2001:db8:0:0:0:0:1:5', port: 5060 });
    assert.equal(bindingResponse(request, 'not an address', 5060), undefined);
    request.writeUInt16BE(0x0111, 0); // not a Binding request
    assert.equal(bindingResponse(request, '127.0.0.1', 5060), undefined);
  });

  test('RFC 5626 keep-alive: CRLFCRLF is answered CRLF', async () => {
    const peer = await StreamPeer.tcp(service.transport.port);
    try {
      peer.send('\r\n\r\n');
      assert.equal((await peer.next()).type, 'pong');
      peer.send(requestText({ via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await peer.message()).status, 200);
    } finally {
      peer.close();
    }
  });

  test('a request from the server to a client on the flow its REGISTER came on', async () => {
    const peer = await StreamPeer.tcp(service.transport.port);
    try {
      peer.send(requestText({ method: 'REGISTER', via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await peer.message()).status, 200);
      const source = seen.at(-1)!.source;
      assert.equal(source.transport, 'tcp');
      assert.ok(source.flow);
      assert.equal(source.port, peer.socket.localPort);
      // The server's Via names what localAddress says for the flow.
      const local = service.localAddress(source);
      assert.deepEqual(local, { transport: 'tcp', host: '127.0.0.1', port: service.transport.port });
      const options = parsed(
        requestText({ uri: 'sip:tester@client.invalid', via: `SIP/2.0/TCP ${local.host}:${local.port}` }).replace(';rport', ''),
      );
      const events: ClientEvent[] = [];
      const done = new Promise<void>((resolve) => {
        service.request(options, source, (event) => {
          events.push(event);
          if (event.type !== 'provisional') resolve();
        });
      });
      const received = await peer.message();
      assert.equal(received.kind, 'request');
      const answer = `SIP/2.0 200 OK\r\n${[...received.headers]
        .filter(([name]) => ['Via', 'From', 'To', 'Call-ID', 'CSeq'].includes(name))
        .map(([name, value]) => `${name}: ${name === 'To' ? `${value};tag=client` : value}`)
        .join('\r\n')}\r\nContent-Length: 0\r\n\r\n`;
      peer.send(answer);
      await withTimeout(done, 3000, 'the final response');
      assert.equal(events.at(-1)?.type, 'final');
    } finally {
      peer.close();
    }
  });

  test('a flow that is gone: send throws, a client transaction reports a transport error', async () => {
    const gone: SipEndpoint = { host: '127.0.0.1', port: 1, transport: 'tcp', flow: 'tcp-none-1' };
    const request = parsed(requestText({ uri: 'sip:tester@client.invalid', via: 'SIP/2.0/TCP 127.0.0.1' }));
    assert.throws(() => service.transport.send(request, gone), SipTransportError);
    const events: ClientEvent[] = [];
    service.request(request, gone, (event) => events.push(event));
    assert.equal(events[0]?.type, 'transport-error');
  });

  test('a request to an address without a connection opens one (and keeps it for the answer)', async () => {
    // A listening "phone": the server connects to it.
    const accepted: StreamPeer[] = [];
    const phone = net.createServer((socket) => accepted.push(new StreamPeer(socket)));
    await new Promise<void>((resolve) => phone.listen(0, '127.0.0.1', () => resolve()));
    const port = (phone.address() as net.AddressInfo).port;
    try {
      const destination: SipEndpoint = { host: '127.0.0.1', port, transport: 'tcp' };
      const local = service.localAddress(destination);
      const request = parsed(requestText({ uri: `sip:tester@127.0.0.1:${port}`, via: `SIP/2.0/TCP ${local.host}:${local.port}` }).replace(';rport', ''));
      const final = new Promise<ClientEvent>((resolve) => service.request(request, destination, (event) => event.type !== 'provisional' && resolve(event)));
      while (accepted.length === 0) await delay(10);
      const phoneSide = accepted[0]!;
      const received = await phoneSide.message();
      assert.equal(received.kind, 'request');
      phoneSide.send(
        `SIP/2.0 200 OK\r\n${[...received.headers].map(([name, value]) => `${name}: ${name === 'To' ? `${value};tag=p` : value}`).join('\r\n')}\r\n\r\n`,
      );
      assert.equal((await withTimeout(final, 3000, 'the final response')).type, 'final');
      // A second request reuses the connection.
      const again = parsed(requestText({ uri: `sip:tester@127.0.0.1:${port}`, via: `SIP/2.0/TCP ${local.host}:${local.port}` }).replace(';rport', ''));
      service.request(again, destination, () => {});
      assert.equal((await phoneSide.message()).kind, 'request');
      assert.equal(accepted.length, 1);
    } finally {
      for (const peer of accepted) peer.close();
      phone.close();
    }
  });

  test('a request too large for UDP reaches a UDP destination over TCP', async () => {
    const accepted: StreamPeer[] = [];
    const phone = net.createServer((socket) => accepted.push(new StreamPeer(socket)));
    await new Promise<void>((resolve) => phone.listen(0, '127.0.0.1', () => resolve()));
    const port = (phone.address() as net.AddressInfo).port;
    try {
      const destination: SipEndpoint = { host: '127.0.0.1', port };
      const local = service.localAddress(destination);
      const request = parsed(
        requestText({ method: 'MESSAGE', uri: `sip:tester@127.0.0.1:${port}`, via: `SIP/2.0/UDP ${local.host}:${local.port}`, body: 'x'.repeat(1500) }).replace(';rport', ''),
      );
      const transaction = service.request(request, destination, () => {});
      assert.equal(transaction.reliable, true);
      while (accepted.length === 0) await delay(10);
      const received = await accepted[0]!.message();
      assert.equal(parseVia(received.headers.getAll('Via')[0]!).transport, 'TCP');
      assert.equal(received.body.length, 1500);
    } finally {
      for (const peer of accepted) peer.close();
      phone.close();
    }
  });

  test('localAddress: the bound address and port per transport', () => {
    assert.deepEqual(service.localAddress({ host: '127.0.0.1', port: 5060 }), { transport: 'udp', host: '127.0.0.1', port: service.transport.port });
    assert.deepEqual(service.localAddress({ host: '127.0.0.1', port: 5061, transport: 'tls' }), { transport: 'tls', host: '127.0.0.1', port: tlsPort });
  });

  test('metrics: messages by transport, direction and kind; connections; parse errors', async () => {
    const text = await metrics.text();
    assert.match(text, /ximssd_sip_messages_total\{transport="udp",direction="in",kind="request"\} [1-9]/);
    assert.match(text, /ximssd_sip_messages_total\{transport="tcp",direction="out",kind="response"\} [1-9]/);
    assert.match(text, /ximssd_sip_messages_total\{transport="ws",direction="in",kind="request"\} [1-9]/);
    assert.match(text, /ximssd_sip_parse_errors_total [1-9]/);
    assert.match(text, /ximssd_sip_connections\{transport="tcp"\} \d/);
  });
});

describe('SIP behind NAT: sip.publicHost', () => {
  test('Via and Contact name the public host; a Request-URI naming it is for the server', async () => {
    const service = new SipService({ host: '0.0.0.0', publicHost: 'sip.example.com', isLocalDomain: async () => false });
    const port = await service.listen(0);
    const peer = await UdpPeer.open();
    try {
      assert.deepEqual(service.localAddress({ host: '198.51.100.20', port: 5060 }), { transport: 'udp', host: 'sip.example.com', port });
      peer.send(requestText({ uri: 'sip:sip.example.com' }), port);
      assert.equal(response(await peer.next()).status, 200);
    } finally {
      peer.close();
      await service.close();
    }
  });

  test('without it, bound to every address: loopback towards loopback', async () => {
    const service = new SipService({ host: '0.0.0.0', isLocalDomain: async () => false });
    const port = await service.listen(0);
    try {
      assert.deepEqual(service.localAddress({ host: '127.0.0.1', port: 5060, transport: 'tcp' }), { transport: 'tcp', host: '127.0.0.1', port });
    } finally {
      await service.close();
    }
  });
});

describe('SIP connection limits', () => {
  test('connections per address: the one over the limit is closed at once and logged; the others work', async () => {
    const captured = capturingLogger();
    const service = new SipService({ host: '127.0.0.1', isLocalDomain: async () => false, limits: { connectionsPerAddress: 2 }, log: captured.log });
    const port = await service.listen(0);
    const peers: StreamPeer[] = [];
    try {
      peers.push(await StreamPeer.tcp(port), await StreamPeer.tcp(port));
      while (service.transport.connectionCount < 2) await delay(10);
      const third = await StreamPeer.tcp(port);
      peers.push(third);
      await withTimeout(third.closed, 3000, 'the refused connection to close');
      const refused = captured.events('sip.connection_refused');
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.limit, 'connections_per_address');
      // UDP is not a connection: still answered.
      const udp = await UdpPeer.open();
      udp.send(requestText({ uri: 'sip:127.0.0.1' }), port);
      assert.equal(response(await udp.next()).status, 200);
      udp.close();
      peers[0]!.send(requestText({ uri: 'sip:127.0.0.1', via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await peers[0]!.message()).status, 200);
      // One goes: there is room for another.
      peers[1]!.close();
      while (service.transport.connectionCount > 1) await delay(10);
      const fourth = await StreamPeer.tcp(port);
      peers.push(fourth);
      fourth.send(requestText({ uri: 'sip:127.0.0.1', via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await fourth.message()).status, 200);
    } finally {
      for (const peer of peers) peer.close();
      await service.close();
    }
  });

  test('connections in total: WebSocket upgrades over the limit get 503, TCP ones are closed', async () => {
    const captured = capturingLogger();
    const service = new SipService({ host: '127.0.0.1', isLocalDomain: async () => false, limits: { connections: 1 }, log: captured.log });
    const port = await service.listen(0);
    const web = http.createServer();
    web.on('upgrade', (req, socket: net.Socket, head) => service.upgrade(req, socket, head, { secure: false }));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', () => resolve()));
    const first = await StreamPeer.tcp(port);
    try {
      while (service.transport.connectionCount < 1) await delay(10);
      const refused = new WebSocket(`ws://127.0.0.1:${(web.address() as net.AddressInfo).port}/sip`, 'sip');
      const status = await new Promise<number | undefined>((resolve) => {
        refused.on('unexpected-response', (_req, res) => resolve(res.statusCode));
        refused.on('error', () => resolve(undefined));
      });
      assert.equal(status, 503);
      const second = await StreamPeer.tcp(port);
      await withTimeout(second.closed, 3000, 'the refused connection to close');
      assert.ok(captured.events('sip.connection_refused').every((r) => r.limit === 'connections'));
      assert.equal(captured.events('sip.connection_refused').length, 1, 'logged once per window per address');
    } finally {
      first.close();
      web.closeAllConnections();
      web.close();
      await service.close();
    }
  });

  test('an idle connection is closed; one kept alive by CRLF pings is not', async () => {
    const service = new SipService({ host: '127.0.0.1', isLocalDomain: async () => false, limits: { idleSeconds: 0.3 } });
    const port = await service.listen(0);
    const idle = await StreamPeer.tcp(port);
    const alive = await StreamPeer.tcp(port);
    try {
      let idleClosed = false;
      void idle.closed.then(() => (idleClosed = true));
      for (let i = 0; i < 8; i++) {
        alive.send('\r\n\r\n');
        // The client's reader takes two CRLF answers in two reads for a ping: either is an answer.
        assert.notEqual((await alive.next()).type, 'message');
        await delay(100);
      }
      assert.ok(idleClosed, 'the idle connection is closed');
      alive.send(requestText({ uri: 'sip:127.0.0.1', via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await alive.message()).status, 200);
    } finally {
      idle.close();
      alive.close();
      await service.close();
    }
  });

  test('a peer that does not read what it is sent is dropped', async () => {
    const captured = capturingLogger();
    const service = new SipService({ host: '127.0.0.1', isLocalDomain: async () => false, limits: { outputBytes: 4096 }, log: captured.log });
    const port = await service.listen(0);
    let source: SipEndpoint | undefined;
    service.handle('REGISTER', (event) => {
      source = event.source;
      event.respond(200);
    });
    const peer = await StreamPeer.tcp(port);
    try {
      peer.send(requestText({ method: 'REGISTER', uri: 'sip:127.0.0.1', via: 'SIP/2.0/TCP client.invalid' }));
      assert.equal(response(await peer.message()).status, 200);
      peer.socket.pause();
      const big = parsed(requestText({ method: 'MESSAGE', uri: 'sip:tester@client.invalid', via: 'SIP/2.0/TCP 127.0.0.1', body: 'x'.repeat(60_000) }));
      assert.throws(() => {
        for (let i = 0; i < 200; i++) service.transport.send(big, source!);
      }, SipTransportError);
      assert.equal(captured.events('sip.connection_overflow').length, 1);
    } finally {
      peer.close();
      await service.close();
    }
  });
});

describe('SIP on a whole server', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ ports: { sip: await freeSipPort(), sipTls: await freePort(), https: await freePort() } });
  });
  after(async () => {
    await server.stop();
  });

  test('ports.sip is bound for UDP and TCP; services.sip takes handlers; OPTIONS to the default domain', async () => {
    assert.ok(server.ports.sip);
    assert.ok(server.services.sip);
    const peer = await UdpPeer.open();
    try {
      peer.send(requestText({}), server.ports.sip);
      assertOptionsOk(await peer.next(), peer.port);
    } finally {
      peer.close();
    }
    const tcp = await StreamPeer.tcp(server.ports.sip);
    try {
      tcp.send(requestText({ via: 'SIP/2.0/TCP client.invalid' }));
      assertOptionsOk(await tcp.message(), tcp.socket.localPort);
    } finally {
      tcp.close();
    }
  });

  test('WebSocket on the HTTP listener at /sip', async () => {
    const peer = await webSocketPeer(`ws://127.0.0.1:${server.ports.http}/sip`);
    try {
      peer.ws.send(requestText({ via: 'SIP/2.0/WS client.invalid' }));
      assertOptionsOk(await peer.next(), undefined);
    } finally {
      peer.ws.close();
    }
  });

  test('TLS on ports.sipTls, and secure WebSocket (wss) on the HTTPS listener', async () => {
    assert.ok(server.ports.sipTls);
    const peer = await StreamPeer.tls(server.ports.sipTls);
    try {
      peer.send(requestText({ via: 'SIP/2.0/TLS client.invalid' }));
      assertOptionsOk(await peer.message(), peer.socket.localPort);
    } finally {
      peer.close();
    }
    const secure = new WebSocket(`wss://127.0.0.1:${server.ports.https}/sip`, 'sip', { rejectUnauthorized: false });
    const answer = new Promise<SipMessage>((resolve) => secure.once('message', (data: Buffer) => resolve(parseSipMessage(Buffer.from(data)))));
    await new Promise((resolve, reject) => secure.once('open', resolve).once('error', reject));
    try {
      secure.send(requestText({ via: 'SIP/2.0/WSS client.invalid' }));
      const ok = await withTimeout(answer, 3000, 'the answer over wss');
      // received=127.0.0.1: the address is read through the TLS socket.
      assertOptionsOk(ok, undefined);
    } finally {
      secure.close();
    }
  });

  test('SIP is off by default in the test harness (0 = off)', async () => {
    const other = await startTestServer();
    try {
      assert.equal(other.ports.sip, undefined);
      assert.equal(other.services.sip, undefined);
    } finally {
      await other.stop();
    }
  });

  describe("Debian's sipsak", async () => {
    const missing = await ensureDebianTool('/usr/bin/sipsak', 'sipsak').then(
      () => false as const,
      (err: unknown) => `sipsak cannot be installed: ${String(err)}`,
    );
    const sipsak = (args: string[]): Promise<{ code: number; stdout: string }> =>
      new Promise((resolve) => {
        execFile('/usr/bin/sipsak', args, { timeout: 20_000 }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout }));
      });

    test('OPTIONS over UDP', { skip: missing }, async () => {
      const result = await sipsak(['-v', '-s', `sip:postmaster@127.0.0.1:${server.ports.sip}`]);
      assert.match(result.stdout, /SIP\/2\.0 200 OK/);
      assert.equal(result.code, 0);
    });

    test('OPTIONS over TCP', { skip: missing }, async () => {
      const result = await sipsak(['-v', '-E', 'tcp', '-s', `sip:postmaster@127.0.0.1:${server.ports.sip}`]);
      assert.match(result.stdout, /SIP\/2\.0 200 OK/);
      assert.equal(result.code, 0);
    });
  });
});

/** The address in a STUN response's XOR-MAPPED-ADDRESS (RFC 5389 15.2), decoded by the test. */
function decodeXorMappedAddress(message: Buffer): { address: string; port: number } | undefined {
  const key = Buffer.concat([message.subarray(4, 8), message.subarray(8, 20)]);
  for (let at = 20; at + 4 <= message.length; ) {
    const type = message.readUInt16BE(at);
    const length = message.readUInt16BE(at + 2);
    if (type === 0x0020) {
      const family = message[at + 5];
      const port = message.readUInt16BE(at + 6) ^ 0x2112;
      const bytes = message.subarray(at + 8, at + 4 + length).map((b, i) => b ^ key[i]!);
      const address = family === 0x01 ? [...bytes].join('.') : Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(':');
      return { address, port };
    }
    at += 4 + length + ((4 - (length % 4)) % 4);
  }
  return undefined;
}
