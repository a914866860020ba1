/**
 * Test harness: a real server on ephemeral loopback ports with its own temporary data
 * directory, and a small XIMSS-over-TCP client that speaks the zero-byte framing.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, mergeConfig, type Config } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';

export interface TestServer extends RunningServer {
  readonly config: Config;
  readonly dataDir: string;
  /** Creates an account (and its domain) directly through the account service. */
  addAccount(address: string, password: string, realName?: string): Promise<void>;
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
}

export async function startTestServer(overrides: Record<string, unknown> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ximssd-test-'));
  const base = defaultConfig();
  const config = mergeConfig(
    base,
    {
      dataDir,
      host: '127.0.0.1',
      defaultDomain: 'example.test',
      ports: { ximss: 0, http: 0, smtp: 0, xmpp: 0 },
      limits: { loginFailureDelayMs: 20 },
    },
    'test',
  );
  const merged = mergeConfig(config, overrides, 'test overrides');
  const server = await startServer(merged, () => {});
  return {
    ...server,
    config: merged,
    dataDir,
    async addAccount(address, password, realName) {
      await server.services.accounts.create({ address, password, realName, createDomain: true });
    },
    async stop() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The answer to one request: its data messages (in order) and its response. */
export interface Reply {
  messages: XmlElement[];
  response: XmlElement;
}

/**
 * A XIMSS client over TCP. Every message received is parsed; `request` collects the
 * data messages carrying its id up to the response, while messages without an id (async
 * ones) go to `asyncMessages` and can be awaited with `nextAsync`.
 */
export class XimssClient {
  readonly socket: net.Socket;
  readonly asyncMessages: XmlElement[] = [];
  /** Every message received, in order. */
  readonly received: XmlElement[] = [];
  /** The text of every message received, in order (parallel to `received`). */
  readonly raw: string[] = [];
  private buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private counter = 0;
  closed = false;

  /** Wraps an already connected socket (plain or TLS). */
  static fromSocket(socket: net.Socket): XimssClient {
    return new XimssClient(socket);
  }

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      let zero: number;
      while ((zero = this.buffer.indexOf(0)) >= 0) {
        const text = this.buffer.subarray(0, zero).toString('utf8');
        this.buffer = this.buffer.subarray(zero + 1);
        const message = parseXml(text);
        this.raw.push(text);
        this.received.push(message);
        if (message.attrs.id === undefined) this.asyncMessages.push(message);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when `predicate` holds, re-checked whenever data arrives or the socket closes. */
  async until<T>(predicate: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = predicate();
      if (value !== undefined && value !== false) return value;
      if (this.closed) throw new Error('connection closed while waiting');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the server');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  static connect(port: number, host = '127.0.0.1'): Promise<XimssClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host, () => resolve(new XimssClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Connects to an implicit-TLS XIMSS listener (the self-signed certificate is accepted). */
  static connectTls(port: number, host = '127.0.0.1'): Promise<XimssClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ port, host, rejectUnauthorized: false }, () => resolve(new XimssClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the connection to close');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends raw text followed by the zero byte. */
  sendRaw(text: string | Buffer): void {
    this.socket.write(Buffer.concat([typeof text === 'string' ? Buffer.from(text) : text, Buffer.from([0])]));
  }

  newId(): string {
    return `T${++this.counter}`;
  }

  /**
   * Sends a request (an element or XML text; an element without an id gets one) and
   * resolves with its data messages and response.
   */
  async request(request: XmlElement | string, timeoutMs = 5000): Promise<Reply> {
    const element = typeof request === 'string' ? parseXml(request) : request;
    if (element.attrs.id === undefined) element.attrs.id = this.newId();
    const id = element.attrs.id;
    const start = this.received.length;
    this.sendRaw(element.toString());
    return this.until(() => {
      for (let i = start; i < this.received.length; i++) {
        const m = this.received[i]!;
        if (m.name === 'response' && m.attrs.id === id) {
          return { messages: this.received.slice(start, i).filter((x) => x.attrs.id === id), response: m };
        }
      }
      return undefined;
    }, timeoutMs);
  }

  /** Waits for the next async message named `name` (taking it off the async list). */
  async nextAsync(name: string, timeoutMs = 5000): Promise<XmlElement> {
    return this.until(() => {
      const index = this.asyncMessages.findIndex((m) => m.name === name);
      if (index < 0) return undefined;
      return this.asyncMessages.splice(index, 1)[0];
    }, timeoutMs);
  }

  async login(userName: string, password: string): Promise<Reply> {
    const reply = await this.request(new XmlElement('login', { authData: userName, password, version: '6.1' }));
    if (reply.response.attrs.errorText) throw new Error(`login failed: ${reply.response.attrs.errorText}`);
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Shortcut: connect and log in. */
export async function loggedInClient(port: number, userName: string, password: string): Promise<XimssClient> {
  const client = await XimssClient.connect(port);
  await client.login(userName, password);
  return client;
}

/** A TCP port that was free a moment ago (for servers that must be given a port number). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** HMAC-MD5(key, data) as lower-case hex: the CRAM-MD5 digest (RFC 2195). */
export function hmacMd5Hex(key: string, data: string): string {
  return createHmac('md5', key).update(data, 'utf8').digest('hex');
}

export function connectPlain(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Writes `data` and resolves with the first zero-terminated message that comes back and
 * the bytes received after it; the socket is left paused with its data listener removed,
 * ready to be handed to TLS.
 */
export function firstMessage(socket: net.Socket, data: string): Promise<{ text: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onClose = (): void => reject(new Error('connection closed before the first answer'));
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      const zero = buffer.indexOf(0);
      if (zero < 0) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      resolve({ text: buffer.subarray(0, zero).toString('utf8'), rest: buffer.subarray(zero + 1) });
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(data);
  });
}

/**
 * Opens a plain connection, asks for `starttls`, and once the positive response has arrived
 * does the TLS handshake over the same socket. Resolves with a client on the TLS socket and
 * the plain-text `starttls` response.
 */
export async function startTlsClient(port: number, host = '127.0.0.1'): Promise<{ client: XimssClient; response: XmlElement }> {
  const plain = await connectPlain(port, host);
  const first = await firstMessage(plain, '<starttls id="tls1"/>\0');
  if (first.rest.length > 0) plain.unshift(first.rest);
  const response = parseXml(first.text);
  if (response.attrs.errorText !== undefined) throw new Error(`starttls refused: ${response.attrs.errorText}`);
  const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const socket = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve(socket));
    socket.once('error', reject);
  });
  return { client: XimssClient.fromSocket(secure), response };
}
