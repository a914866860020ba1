/**
 * A small XIMSS-over-TCP client for the mail benchmarks: NUL-terminated XML documents,
 * any number of requests in flight, the data messages of each request (those carrying its
 * `id`) collected until its `<response id=".."/>`. Messages without an id (asynchronous
 * ones, such as `folderReport mode="notify"`) are only counted.
 */
import type net from 'node:net';
import { connectXimss } from './tcp-load.js';

export interface XimssReply {
  id: string;
  /** The `<response …/>` document. */
  response: string;
  /** Data messages sent for this request, in order. */
  data: string[];
  /** The response's errorText (entities decoded), when it failed. */
  error: string | undefined;
}

interface AsyncWaiter {
  match: (text: string) => boolean;
  resolve: (message: { text: string; at: number }) => void;
  reject: (err: Error) => void;
}

interface Pending {
  data: string[];
  resolve: (reply: XimssReply) => void;
  reject: (err: Error) => void;
}

const ID = /^<([A-Za-z][\w.-]*)\b[^>]*?\sid="([^"]*)"/;

export function decodeEntities(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#\d+);/g, (_, e: string) => {
    switch (e) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default:
        return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
    }
  });
}

/** The value of attribute `name` in the opening tag of `xml`, entities decoded. */
export function attr(xml: string, name: string): string | undefined {
  const end = xml.indexOf('>');
  const head = end < 0 ? xml : xml.slice(0, end);
  const match = head.match(new RegExp(`\\s${name}="([^"]*)"`));
  return match ? decodeEntities(match[1]!) : undefined;
}

export class XimssClient {
  /** Messages that carried no id, or an id nobody waits for. */
  asyncMessages = 0;
  lastAsync: string | undefined;
  private asyncWaiters: AsyncWaiter[] = [];
  private readonly pending = new Map<string, Pending>();
  private rest: Buffer | undefined;
  private nextId = 1;
  private closed: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('XIMSS connection closed')));
  }

  /** Connects and logs in (as bench/lib/tcp-load.ts does). */
  static async connect(port: number, user: string, password: string): Promise<XimssClient> {
    return new XimssClient(await connectXimss(port, { user, password }));
  }

  /** A fresh request id. */
  id(): string {
    return `r${this.nextId++}`;
  }

  /**
   * Sends one request; `build` gets the id to put in it. Resolves with the response and
   * the data messages (a failure is resolved too: look at `error`).
   */
  request(build: (id: string) => string): Promise<XimssReply> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.id();
    const promise = new Promise<XimssReply>((resolve, reject) => this.pending.set(id, { data: [], resolve, reject }));
    this.socket.write(build(id) + '\0');
    return promise;
  }

  /** Like request(), but rejects when the server answers with an error. */
  async call(build: (id: string) => string): Promise<XimssReply> {
    const reply = await this.request(build);
    if (reply.error !== undefined) {
      const name = build(reply.id).match(/^<(\w+)/)?.[1] ?? 'request';
      throw new Error(`ximssd ${name} failed: ${reply.response}`);
    }
    return reply;
  }

  /**
   * The next asynchronous message (one that answers no request) that `match` accepts, with
   * `at`: performance.now() when the chunk holding it was read. Wait before sending what
   * causes it, so that it cannot arrive first.
   */
  nextAsync(match: (text: string) => boolean, timeoutMs = 10_000): Promise<{ text: string; at: number }> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const waiter: AsyncWaiter = {
        match,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.asyncWaiters = this.asyncWaiters.filter((w) => w !== waiter);
        reject(new Error(`no asynchronous message as expected within ${timeoutMs} ms (last one: ${this.lastAsync ?? 'none'})`));
      }, timeoutMs);
      this.asyncWaiters.push(waiter);
    });
  }

  /** `bye` (errors ignored), then closes. */
  async close(): Promise<void> {
    if (!this.closed) {
      await Promise.race([this.request((id) => `<bye id="${id}"/>`).catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    }
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const at = performance.now();
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    let start = 0;
    for (;;) {
      const zero = buf.indexOf(0, start);
      if (zero < 0) break;
      this.onMessage(buf.toString('utf8', start, zero), at);
      start = zero + 1;
    }
    if (start < buf.length) this.rest = buf.subarray(start);
  }

  private onMessage(message: string, at: number): void {
    const text = message.trimStart();
    const match = text.match(ID);
    const entry = match ? this.pending.get(match[2]!) : undefined;
    if (!match || !entry) {
      this.asyncMessages++;
      this.lastAsync = text;
      const waiter = this.asyncWaiters.find((w) => w.match(text));
      if (waiter) {
        this.asyncWaiters = this.asyncWaiters.filter((w) => w !== waiter);
        waiter.resolve({ text, at });
      }
      return;
    }
    if (match[1] === 'response') {
      this.pending.delete(match[2]!);
      entry.resolve({ id: match[2]!, response: text, data: entry.data, error: attr(text, 'errorText') });
    } else entry.data.push(text);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    for (const entry of this.pending.values()) entry.reject(err);
    this.pending.clear();
    for (const waiter of this.asyncWaiters.splice(0)) waiter.reject(err);
  }
}
