/**
 * Test harness: a real server on ephemeral loopback ports with its own temporary data
 * directory, and a small XIMSS-over-TCP client that speaks the zero-byte framing.
 */
import { createHmac } from 'node:crypto';
import { createLogger, silentLogger, type Logger, type LogLevel } from '../src/log.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, mergeConfig, type Config } from '../src/config.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/server.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { startPostgres, type PostgresServer } from './fixtures/postgres.js';

export interface TestServer extends RunningServer {
  readonly config: Config;
  readonly dataDir: string;
  /** Creates an account (and its domain) directly through the account service. */
  addAccount(address: string, password: string, realName?: string): Promise<void>;
  /**
   * Creates a fresh account `<name><n>@<domain>` (n counts up over the test file, so every
   * test gets accounts of its own); resolves with its address.
   */
  newAccount(name: string, options?: { password?: string; realName?: string; domain?: string }): Promise<string>;
  /** Connects and logs in (also giving the session's urlID); the client is closed by `stop()`. */
  login(address: string, password: string): Promise<{ client: XimssClient; urlID: string }>;
  /** Closes the clients of `login`, stops the server and removes its data directory. */
  stop(): Promise<void>;
}

/** Numbers the accounts of `newAccount` (one test file runs in one process). */
let accountCounter = 0;

/**
 * With XIMSSD_TEST_STORE=postgres, every test server of the process runs on a database of its
 * own on one private PostgreSQL (started at the first server, stopped at exit): any suite can
 * be run on that engine, e.g. `XIMSSD_TEST_STORE=postgres node --import tsx --test test/mail.test.ts`.
 */
let postgres: Promise<PostgresServer> | undefined;
/** The database of each data directory: a server restarted on the same directory finds its data. */
const databases = new Map<string, string>();

async function testStoreUrl(dataDir: string): Promise<string> {
  if (process.env.XIMSSD_TEST_STORE !== 'postgres') return '';
  if (!postgres) {
    postgres = startPostgres();
    const started = postgres;
    process.once('beforeExit', () => void started.then((pg) => pg.stop()));
  }
  let url = databases.get(dataDir);
  if (url === undefined) databases.set(dataDir, (url = await (await postgres).createDatabase()));
  return url;
}

/** `options`: what startServer takes besides the configuration (e.g. an observable password verifier). */
export async function startTestServer(overrides: Record<string, unknown> = {}, options: ServerOptions = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ximssd-test-'));
  const base = defaultConfig();
  const config = mergeConfig(
    base,
    {
      dataDir,
      host: '127.0.0.1',
      defaultDomain: 'example.test',
      ports: { ximss: 0, http: 0, smtp: 0, xmpp: 0, xmppS2s: 0, sip: 0 },
      // Suites send refused requests from 127.0.0.1 on purpose: the abuse block is tested on its own (abuse.test.ts).
      limits: { loginFailureDelayMs: 20, abusePerAddress: 0 },
    },
    'test',
  );
  const merged = mergeConfig(config, overrides, 'test overrides');
  if (merged.store === '') merged.store = await testStoreUrl(merged.dataDir);
  const server = await startServer(merged, { log: silentLogger, announcePassword: () => {}, ...options });
  const clients: XimssClient[] = [];
  const addAccount = async (address: string, password: string, realName?: string): Promise<void> => {
    await server.services.accounts.create({ address, password, realName, createDomain: true });
  };
  return {
    ...server,
    config: merged,
    dataDir,
    addAccount,
    async newAccount(name, options = {}) {
      const address = `${name}${++accountCounter}@${options.domain ?? 'example.test'}`;
      await addAccount(address, options.password ?? 'secret', options.realName);
      return address;
    },
    async login(address, password) {
      const session = await loginWithUrlId(server.ports.ximss, address, password);
      clients.push(session.client);
      return session;
    },
    async stop() {
      for (const client of clients) client.close();
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

  /** Resolves when data arrives, the socket closes, or `ms` have passed. */
  private nextEvent(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
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
      await this.nextEvent(left);
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
      await this.nextEvent(left);
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
    return this.takeAsync(name, () => true, timeoutMs);
  }

  /** Waits for the first async message named `name` that `match` accepts, and takes it off the list. */
  async takeAsync(name: string, match: (message: XmlElement) => boolean, timeoutMs = 5000): Promise<XmlElement> {
    return this.until(() => {
      const index = this.asyncMessages.findIndex((m) => m.name === name && match(m));
      if (index < 0) return undefined;
      return this.asyncMessages.splice(index, 1)[0];
    }, timeoutMs);
  }

  /**
   * Asserts that no async message of this name (that `match` accepts) is waiting once a noop
   * has been answered (and a moment more): nothing more came of what happened before.
   */
  async nothingMore(name: string, match: (message: XmlElement) => boolean = () => true): Promise<void> {
    const reply = await this.request('<noop/>');
    if (reply.response.attrs.errorText) throw new Error(`noop failed: ${reply.response.attrs.errorText}`);
    // Messages another session caused travel on their own; a moment more lets a stray one show.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const waiting = this.asyncMessages.filter((m) => m.name === name && match(m));
    if (waiting.length > 0) throw new Error(`unexpected ${name}: ${waiting.map(String).join(' ')}`);
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

/**
 * A port number free a moment ago for both UDP and TCP: what `ports.sip` needs, since 0 turns
 * SIP off in the configuration (as it does XMPP). startTestServer leaves SIP off; a suite
 * that speaks SIP passes `{ ports: { sip: await freeSipPort() } }`.
 */
export async function freeSipPort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcp = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (free) {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      return port;
    }
    if (attempt >= 10) throw new Error('no port free for both UDP and TCP');
  }
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

// ---------------------------------------------------------------------------------------
// Mail helpers (mail*.test.ts, conformance): replies, in-process delivery, and the
// client-side folder model that folderSync reports are applied to.

import assert from 'node:assert/strict';
import { parseInitialFlags } from '../src/services/mail/flags.js';
import { prepareMessage } from '../src/services/mail/new-message.js';
import { serialize } from '../src/xml/element.js';

/** Asserts the request succeeded; returns the reply. */
export function expectOk(reply: Reply, what = 'request'): Reply {
  assert.equal(reply.response.attrs.errorText, undefined, `${what} failed: ${reply.response.attrs.errorText}`);
  return reply;
}

/** Asserts the request failed (errorText and a numeric errorNum), optionally with this text; returns the text. */
export function expectError(reply: Reply, expected?: string | RegExp, what = 'request'): string {
  const text = reply.response.attrs.errorText;
  assert.ok(text, `${what} should have failed: ${reply.response.toString()}`);
  assert.match(reply.response.attrs.errorNum ?? '', /^\d+$/, `${what}: errorNum`);
  if (typeof expected === 'string') assert.equal(text, expected, what);
  else if (expected) assert.match(text, expected, what);
  return text;
}

/** Sends a request and asserts it succeeded; returns the reply. */
export async function ok(client: XimssClient, request: XmlElement | string, what = String(request).slice(0, 160)): Promise<Reply> {
  return expectOk(await client.request(request), what);
}

/** Sends a request and asserts it failed (optionally with this text); returns the errorText. */
export async function fails(client: XimssClient, request: XmlElement | string, expected?: string | RegExp, what = String(request).slice(0, 160)): Promise<string> {
  return expectError(await client.request(request), expected, what);
}

/**
 * Polls `probe` (every 40 ms) until it gives something other than undefined, false or null,
 * and resolves with that; fails after `timeoutMs`.
 */
export async function eventually<T>(
  probe: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false && value !== null) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
}

/** Connects and logs in; also returns the session's urlID (for the HTTP resources). */
export async function loginWithUrlId(port: number, userName: string, password: string): Promise<{ client: XimssClient; urlID: string }> {
  const client = await XimssClient.connect(port);
  const reply = await client.login(userName, password);
  const urlID = reply.messages.find((m) => m.name === 'session')?.attrs.urlID;
  assert.ok(urlID, 'the session message carries urlID');
  return { client, urlID };
}

/**
 * Uploads a file as the `fileData` field of a multipart/form-data POST to the session's
 * `UPLOAD/<uploadID>` resource; waits for the session's newUploaded message.
 */
export async function postUpload(
  server: RunningServer,
  session: { client: XimssClient; urlID: string },
  uploadID: string,
  data: Buffer,
  fileName: string,
  type: string,
): Promise<void> {
  const form = new FormData();
  form.append('fileData', new Blob([new Uint8Array(data)], { type }), fileName);
  const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${session.urlID}/UPLOAD/${encodeURIComponent(uploadID)}`, {
    method: 'POST',
    body: form,
  });
  assert.equal(response.status, 200, await response.text());
  const note = await session.client.nextAsync('newUploaded');
  assert.equal(note.attrs.uploadID, uploadID);
}

/** An RFC 822 message with CRLF line ends from header pairs and a body (LF or CRLF). */
export function rfc822(headers: readonly (readonly [string, string])[], body = ''): Buffer {
  const head = headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return Buffer.from(head + '\r\n' + body.replace(/\r?\n/g, '\r\n'), 'utf8');
}

/** Every field `name` of a message's header, unfolded, in order (read without the server's MIME code). */
export function headerValues(raw: Buffer, name: string): string[] {
  const text = raw.toString('utf8');
  const head = text.slice(0, text.search(/\r\n\r\n/));
  return [...head.matchAll(new RegExp(`^${name}:[ \\t]*(.*(?:\\r\\n[ \\t].*)*)`, 'gim'))].map((m) => m[1]!.replace(/\r\n[ \t]/g, ' '));
}

/**
 * Appends raw messages to a mailbox in-process (as a delivery would), creating the mailbox
 * when missing; resolves with the new UIDs.
 */
export async function deliverRaw(
  server: RunningServer,
  address: string,
  mailbox: string,
  messages: readonly (Buffer | { raw: Buffer; flags?: string; internalDate?: number })[],
): Promise<number[]> {
  const account = await server.services.accounts.find(address);
  assert.ok(account, `account ${address}`);
  const box = await server.services.mail.access(account, mailbox, 'i', { mailboxClass: '' });
  const prepared = messages.map((m) => {
    const item = Buffer.isBuffer(m) ? { raw: m } : m;
    const initial = parseInitialFlags(item.flags);
    return prepareMessage(item.raw, { flags: initial.flags, keywords: initial.keywords, internalDate: item.internalDate });
  });
  const added = await server.services.mail.append(box, prepared);
  return added.map((m) => m.uid);
}

/** The stored bytes of a message, read in-process. */
export async function storedRaw(server: RunningServer, address: string, mailbox: string, uid: number): Promise<Buffer | undefined> {
  const account = await server.services.accounts.find(address);
  assert.ok(account, `account ${address}`);
  const box = await server.services.mail.access(account, mailbox, 'r');
  return server.services.mail.readRaw(box, uid);
}

/** The UIDs stored in a mailbox, ascending, read in-process. */
export async function storedUids(server: RunningServer, address: string, mailbox: string): Promise<number[]> {
  const account = await server.services.accounts.find(address);
  assert.ok(account, `account ${address}`);
  const box = await server.services.mail.access(account, mailbox, 'r');
  const changes = await server.services.mail.changesSince(box, 0);
  return changes.changed.map((m) => m.uid).sort((a, b) => a - b);
}

/** The stored messages of a mailbox (UID and bytes), ascending, read in-process. */
export async function storedMessages(server: RunningServer, address: string, mailbox: string): Promise<{ uid: number; raw: Buffer }[]> {
  const uids = await storedUids(server, address, mailbox);
  return Promise.all(uids.map(async (uid) => ({ uid, raw: (await storedRaw(server, address, mailbox, uid))! })));
}

/** Takes the pending async `folderReport mode="notify"` messages of a folder; returns how many there were. */
export function takeNotifies(client: XimssClient, folder: string): number {
  let count = 0;
  for (let i = client.asyncMessages.length - 1; i >= 0; i--) {
    const m = client.asyncMessages[i]!;
    if (m.name === 'folderReport' && m.attrs.mode === 'notify' && m.attrs.folder === folder) {
      client.asyncMessages.splice(i, 1);
      count++;
    }
  }
  return count;
}

/** Waits for a notify of this folder (one at least), then `settleMs` more; returns how many came. */
export async function awaitNotifies(client: XimssClient, folder: string, settleMs = 60, timeoutMs = 5000): Promise<number> {
  await client.until(
    () => client.asyncMessages.some((m) => m.name === 'folderReport' && m.attrs.mode === 'notify' && m.attrs.folder === folder) || undefined,
    timeoutMs,
  );
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  return takeNotifies(client, folder);
}

/** One message of a folder as the client keeps it: UID and the viewer field elements. */
export interface ModelRow {
  uid: number;
  /** The serialized viewer field elements, in order. */
  fields: string;
  /** The FLAGS field text, when the folder shows FLAGS. */
  flags: string | undefined;
}

export function rowOf(report: XmlElement): ModelRow {
  const uid = Number(report.attrs.UID);
  assert.ok(Number.isInteger(uid) && uid > 0, `folderReport UID: ${report.toString()}`);
  return { uid, fields: report.children.map((c) => serialize(c)).join(''), flags: report.element('FLAGS')?.text() };
}

/** folderBrowse of the whole view: every row, checked to come with index 0..n-1. */
export async function browseAll(client: XimssClient, folder: string): Promise<ModelRow[]> {
  const reply = expectOk(await client.request(new XmlElement('folderBrowse', { folder }, [new XmlElement('index', { from: 0, till: 100_000_000 })])), 'folderBrowse');
  const rows: ModelRow[] = [];
  reply.messages.forEach((m, i) => {
    assert.equal(m.name, 'folderReport');
    assert.equal(m.attrs.folder, folder);
    assert.equal(m.attrs.index, String(i), 'rows come in index order');
    assert.equal(m.attrs.mode, undefined);
    rows.push(rowOf(m));
  });
  return rows;
}

/** folderSync; resolves with its folderReport messages. */
export async function folderSync(client: XimssClient, folder: string, limit?: number): Promise<XmlElement[]> {
  const reply = expectOk(await client.request(new XmlElement('folderSync', { folder, limit })), 'folderSync');
  for (const m of reply.messages) assert.equal(m.name, 'folderReport');
  return reply.messages;
}

function hasFlag(flags: string | undefined, name: string): boolean {
  return (flags ?? '').split(',').includes(name);
}

/**
 * The client-side view of one folder, kept the way the spec tells clients to keep it: it
 * changes only by the reports of folderSync. Every report is checked against the model as
 * it stands (the index of a removed or updated message holds that UID, `messages` is the
 * new length, `unseen` counts the rows without Seen when FLAGS is shown). With `ordered`,
 * a sync's reports must come as removals, then additions at ascending final positions,
 * then updates.
 */
export class FolderModel {
  rows: ModelRow[] = [];
  /** Reports applied so far, by mode. */
  readonly counts = { removed: 0, added: 0, updated: 0 };

  constructor(
    readonly folder: string,
    readonly options: { ordered?: boolean; checkUnseen?: boolean } = {},
  ) {}

  static async load(client: XimssClient, folder: string, options: { ordered?: boolean; checkUnseen?: boolean } = {}): Promise<FolderModel> {
    const model = new FolderModel(folder, options);
    model.rows = await browseAll(client, folder);
    return model;
  }

  unseen(): number {
    return this.rows.filter((r) => !hasFlag(r.flags, 'Seen')).length;
  }

  uids(): number[] {
    return this.rows.map((r) => r.uid);
  }

  apply(reports: readonly XmlElement[]): void {
    const ordered = this.options.ordered ?? true;
    let phase = 0;
    let lastAdded = -1;
    for (const r of reports) {
      const what = r.toString();
      assert.equal(r.name, 'folderReport', what);
      assert.equal(r.attrs.folder, this.folder, what);
      const index = Number(r.attrs.index);
      assert.ok(Number.isInteger(index) && index >= 0, `index of ${what}`);
      const mode = r.attrs.mode === 'deleted' ? 'removed' : r.attrs.mode;
      switch (mode) {
        case 'removed': {
          if (ordered) assert.equal(phase, 0, `a removal after additions or updates: ${what}`);
          assert.ok(index < this.rows.length, `removed index ${index} beyond the view (${this.rows.length}): ${what}`);
          if (r.attrs.UID !== undefined) assert.equal(this.rows[index]!.uid, Number(r.attrs.UID), `the removed index holds another UID: ${what}`);
          this.rows.splice(index, 1);
          assert.equal(Number(r.attrs.messages), this.rows.length, `messages after removal: ${what}`);
          this.counts.removed++;
          break;
        }
        case 'added': {
          if (ordered) {
            assert.ok(phase <= 1, `an addition after updates: ${what}`);
            assert.ok(index > lastAdded, `additions in ascending final positions: ${what}`);
          }
          phase = 1;
          lastAdded = index;
          assert.ok(index <= this.rows.length, `added index ${index} beyond the view (${this.rows.length}): ${what}`);
          this.rows.splice(index, 0, rowOf(r));
          assert.equal(Number(r.attrs.messages), this.rows.length, `messages after addition: ${what}`);
          this.counts.added++;
          break;
        }
        case 'updated':
        case 'attrsUpdated':
        case undefined: {
          phase = 2;
          assert.ok(index < this.rows.length, `updated index ${index} beyond the view: ${what}`);
          assert.equal(this.rows[index]!.uid, Number(r.attrs.UID), `the updated index holds another UID: ${what}`);
          this.rows[index] = rowOf(r);
          this.counts.updated++;
          break;
        }
        default:
          assert.fail(`unexpected folderReport mode in a sync: ${what}`);
      }
      if ((this.options.checkUnseen ?? true) && this.rows.every((row) => row.flags !== undefined) && r.attrs.unseen !== undefined) {
        assert.equal(Number(r.attrs.unseen), this.unseen(), `unseen after ${what}`);
      }
    }
  }

  /** folderSync, apply, and compare with a fresh folderBrowse of the whole view. */
  async syncAndCheck(client: XimssClient, limit?: number): Promise<XmlElement[]> {
    const reports = await folderSync(client, this.folder, limit);
    this.apply(reports);
    if (limit === undefined || reports.length < limit) assert.deepEqual(this.rows, await browseAll(client, this.folder), `model of ${this.folder} = fresh browse`);
    return reports;
  }
}

export { seededRandom } from './fixtures/random.js';

/**
 * Resolves when the server next reads a message body from the store: a scan under test has
 * started (the test runs in the server's process).
 */
export function scanStarted(target: RunningServer): Promise<void> {
  const store = target.services.store.mail;
  const readRaw = store.readRaw;
  return new Promise((resolve) => {
    store.readRaw = (mailboxId, uid) => {
      store.readRaw = readRaw;
      resolve();
      return readRaw.call(store, mailboxId, uid);
    };
  });
}

/**
 * Resolves when the server next reads a page of a mailbox's messages from the store (a
 * mailbox index is being loaded in slices); `pages` counts the paged reads of that load
 * (those of the same mailbox until the last, shorter page). The hook stays until then.
 */
export function pagedReadStarted(target: RunningServer): { started: Promise<void>; pages: Promise<number> } {
  const store = target.services.store.mail;
  const listMessages = store.listMessages;
  let count = 0;
  let mailbox: number | undefined;
  let started!: () => void;
  let finished!: (pages: number) => void;
  const result = { started: new Promise<void>((resolve) => (started = resolve)), pages: new Promise<number>((resolve) => (finished = resolve)) };
  store.listMessages = async (mailboxId, page) => {
    if (!page || (mailbox !== undefined && mailboxId !== mailbox)) return listMessages.call(store, mailboxId, page);
    mailbox = mailboxId;
    if (++count === 1) started();
    const read = await listMessages.call(store, mailboxId, page);
    if (read.length < page.limit) {
      store.listMessages = listMessages;
      finished(count);
    }
    return read;
  };
  return result;
}

/**
 * Sends `request` (a scan) on `scanner`; once the scan has started (the server has read a
 * message body, or `started` has resolved), a noop on `other`. Resolves with both replies
 * and the order their responses came in: a server that lets other clients in while it
 * scans answers the noop first.
 */
export async function raceNoop(
  target: RunningServer,
  scanner: XimssClient,
  other: XimssClient,
  request: string,
  started: Promise<void> = scanStarted(target),
): Promise<{ scan: Reply; order: string[] }> {
  const order: string[] = [];
  const scan = scanner.request(request, 120_000).then((reply) => {
    order.push('scan');
    return reply;
  });
  await started;
  const noop = other.request('<noop/>', 120_000).then((reply) => {
    order.push('noop');
    return reply;
  });
  const [scanReply, noopReply] = await Promise.all([scan, noop]);
  assert.equal(noopReply.response.attrs.errorText, undefined);
  return { scan: scanReply, order };
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export interface HttpRequestOptions {
  /** Default: POST with a body, GET without. */
  method?: string;
  body?: string;
  headers?: http.OutgoingHttpHeaders;
  /** The client address to connect from (127.0.0.x). */
  localAddress?: string;
}

/** One HTTP request to 127.0.0.1:`port` over a fresh connection (Node's fetch refuses GET with a body). */
export function httpRequest(port: number, path: string, options: HttpRequestOptions = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
        // Node sends a GET body without framing unless told its length.
        headers: { ...(options.body === undefined ? {} : { 'Content-Length': Buffer.byteLength(options.body) }), ...options.headers },
        localAddress: options.localAddress,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** One structured log line as the server wrote it (parsed JSON). */
export type LogRecord = Record<string, unknown> & { level: string; time: string; event?: string; msg?: string };

/** A logger that keeps every line it is given, parsed, for a test to look at. */
export function capturingLogger(level: LogLevel = 'debug'): { log: Logger; records: LogRecord[]; events(name: string): LogRecord[] } {
  const records: LogRecord[] = [];
  const log = createLogger({ level, destination: { write: (line: string) => void records.push(JSON.parse(line) as LogRecord) } });
  return { log, records, events: (name) => records.filter((r) => r.event === name) };
}

/**
 * A module loader hook (node --import) that appends the URL of every ES module loaded to
 * the file named by $LOAD_LOG.
 */
export const LOG_LOADS =
  'data:text/javascript,' +
  encodeURIComponent(`
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(`
      import { appendFileSync } from 'node:fs';
      export async function load(url, context, next) {
        appendFileSync(process.env.LOAD_LOG, url + '\\n');
        return next(url, context);
      }
    `)}));
  `);

/**
 * The exchange of a spec example file (../shared/spec/examples/NNN-*.txt): its C: request
 * (indented lines continue it) and its S: response, comment lines left out.
 */
export function exampleRequest(file: string): { request: string; response: string } {
  let request = '';
  let response = '';
  let current: 'C' | 'S' | undefined;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    if (line.startsWith('C:')) {
      current = 'C';
      request = line.slice(2);
    } else if (line.startsWith('S:')) {
      current = 'S';
      response = line.slice(2).trim();
    } else if (current === 'C') request += '\n' + line;
  }
  return { request, response };
}
