/**
 * A small IMAP4rev1 client over node:net, enough for the benchmarks: tagged commands
 * (pipelined: any number may be in flight), literals in commands (non-synchronizing
 * `{N+}` when the server advertises LITERAL+, otherwise synchronizing `{N}` with a wait
 * for the `+` continuation), and responses with literals (`{N}` then N bytes). Untagged
 * responses are handed to the oldest command still in flight, which is exact when one
 * command runs at a time (SELECT, SORT, FETCH) and good enough for pipelined APPENDs.
 */
import net from 'node:net';

export interface ImapResult {
  tag: string;
  status: 'OK' | 'NO' | 'BAD';
  /** The rest of the tagged line, e.g. `[APPENDUID 1 2] Append completed.` */
  text: string;
  /** Untagged responses received while this command ran, without the leading `* `, CRLF included literals. */
  untagged: string[];
}

/** A command part: text as is, or a Buffer sent as a literal. */
export type ImapPart = string | Buffer;

interface Pending {
  tag: string;
  untagged: string[];
  resolve: (result: ImapResult) => void;
  reject: (err: Error) => void;
}

export class ImapError extends Error {
  constructor(
    message: string,
    readonly result: ImapResult,
  ) {
    super(message);
  }
}

export class ImapClient {
  /** Capabilities, upper-case (refreshed by login()). */
  capabilities = new Set<string>();
  /** Untagged responses that came while no command was in flight (e.g. BYE). */
  readonly unsolicited: string[] = [];

  private buf: Buffer = Buffer.alloc(0);
  /** Where the current response starts in buf, and where to look for the next CRLF. */
  private start = 0;
  private scan = 0;
  private readonly pending: Pending[] = [];
  private readonly byTag = new Map<string, Pending>();
  private nextTag = 1;
  /** Writes not yet done: a synchronizing literal blocks the queue until its `+` arrives. */
  private readonly writeQueue: { tag: string; data: Buffer | 'wait' }[] = [];
  private waitingContinuation = false;
  private closed: Error | undefined;
  private greeting: ((line: string) => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('IMAP connection closed')));
  }

  /** Connects and waits for the greeting (which must be `* OK`). */
  static connect(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<ImapClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      socket.setNoDelay(true);
      const client = new ImapClient(socket);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no IMAP greeting from ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      client.greeting = (line) => {
        clearTimeout(timer);
        if (!line.startsWith('OK')) {
          socket.destroy();
          reject(new Error(`IMAP greeting: * ${line}`));
          return;
        }
        const caps = line.match(/^OK \[CAPABILITY ([^\]]*)\]/);
        if (caps) client.setCapabilities(caps[1]!);
        resolve(client);
      };
    });
  }

  has(capability: string): boolean {
    return this.capabilities.has(capability.toUpperCase());
  }

  private setCapabilities(list: string): void {
    this.capabilities = new Set(list.trim().toUpperCase().split(/\s+/));
  }

  /** LOGIN, then CAPABILITY (servers advertise more after login). */
  async login(user: string, password: string): Promise<void> {
    const quote = (s: string): string => `"${s.replace(/(["\\])/g, '\\$1')}"`;
    const result = await this.command([`LOGIN ${quote(user)} ${quote(password)}`]);
    const caps = result.text.match(/^\[CAPABILITY ([^\]]*)\]/);
    if (caps) this.setCapabilities(caps[1]!);
    else await this.refreshCapabilities();
  }

  async refreshCapabilities(): Promise<void> {
    const result = await this.command(['CAPABILITY']);
    const line = result.untagged.find((u) => u.startsWith('CAPABILITY '));
    if (line) this.setCapabilities(line.slice('CAPABILITY '.length));
  }

  /**
   * Sends one command (parts are joined as given: put the spaces in the text parts) and
   * resolves with its completion. Rejects with ImapError on NO/BAD unless `allowFailure`.
   */
  command(parts: ImapPart[], allowFailure = false): Promise<ImapResult> {
    if (this.closed) return Promise.reject(this.closed);
    const tag = `A${this.nextTag++}`;
    const literalPlus = this.has('LITERAL+');
    let text = `${tag} `;
    for (const part of parts) {
      if (typeof part === 'string') {
        text += part;
        continue;
      }
      if (literalPlus) {
        this.writeQueue.push({ tag, data: Buffer.from(`${text}{${part.length}+}\r\n`, 'utf8') }, { tag, data: part });
      } else {
        this.writeQueue.push({ tag, data: Buffer.from(`${text}{${part.length}}\r\n`, 'utf8') }, { tag, data: 'wait' }, { tag, data: part });
      }
      text = '';
    }
    this.writeQueue.push({ tag, data: Buffer.from(`${text}\r\n`, 'utf8') });
    const promise = new Promise<ImapResult>((resolve, reject) => {
      const entry: Pending = { tag, untagged: [], resolve, reject };
      this.pending.push(entry);
      this.byTag.set(tag, entry);
    });
    this.flush();
    if (allowFailure) return promise;
    return promise.then((result) => {
      if (result.status !== 'OK') {
        const first = parts[0];
        const name = typeof first === 'string' ? first.split(' ')[0] : 'command';
        throw new ImapError(`IMAP ${name} failed: ${result.tag} ${result.status} ${result.text}`, result);
      }
      return result;
    });
  }

  /** LOGOUT (errors ignored), then closes the socket. */
  async logout(): Promise<void> {
    if (!this.closed) await this.command(['LOGOUT'], true).catch(() => undefined);
    this.socket.destroy();
  }

  close(): void {
    this.socket.destroy();
  }

  private flush(): void {
    if (this.waitingContinuation) return;
    const out: Buffer[] = [];
    while (this.writeQueue.length) {
      const item = this.writeQueue.shift()!;
      if (item.data === 'wait') {
        this.waitingContinuation = true;
        break;
      }
      out.push(item.data);
    }
    if (out.length === 1) this.socket.write(out[0]!);
    else if (out.length) this.socket.write(Buffer.concat(out));
  }

  private onData(chunk: Buffer): void {
    if (this.start === this.buf.length) {
      this.buf = chunk;
      this.scan = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.start), chunk]);
      this.scan -= this.start;
    }
    this.start = 0;
    for (;;) {
      const crlf = this.buf.indexOf('\r\n', this.scan);
      if (crlf < 0) {
        this.scan = Math.max(this.start, this.buf.length - 1);
        return;
      }
      // A line ending in {N} announces N bytes of literal data after the CRLF.
      let literal = -1;
      if (this.buf[crlf - 1] === 0x7d /* } */) {
        const open = this.buf.lastIndexOf(0x7b /* { */, crlf - 1);
        if (open >= this.start && crlf - open < 16) {
          const n = Number(this.buf.toString('latin1', open + 1, crlf - 1));
          if (Number.isInteger(n) && n >= 0) literal = n;
        }
      }
      if (literal >= 0) {
        if (this.buf.length < crlf + 2 + literal) {
          this.scan = crlf; // look at this line again once the literal is complete
          return;
        }
        this.scan = crlf + 2 + literal;
        continue;
      }
      const response = this.buf.toString('utf8', this.start, crlf);
      this.start = crlf + 2;
      this.scan = this.start;
      this.dispatch(response);
    }
  }

  private dispatch(response: string): void {
    if (response.startsWith('+')) {
      if (this.waitingContinuation) {
        this.waitingContinuation = false;
        this.flush();
      }
      return;
    }
    if (response.startsWith('* ')) {
      const body = response.slice(2);
      if (this.greeting) {
        const greet = this.greeting;
        this.greeting = undefined;
        greet(body);
        return;
      }
      const current = this.pending[0];
      if (current) current.untagged.push(body);
      else this.unsolicited.push(body);
      return;
    }
    const space = response.indexOf(' ');
    const tag = response.slice(0, space);
    const entry = this.byTag.get(tag);
    if (!entry) {
      this.unsolicited.push(response);
      return;
    }
    const rest = response.slice(space + 1);
    const space2 = rest.indexOf(' ');
    const status = (space2 < 0 ? rest : rest.slice(0, space2)).toUpperCase();
    this.byTag.delete(tag);
    const at = this.pending.indexOf(entry);
    if (at >= 0) this.pending.splice(at, 1);
    // A failed command with a synchronizing literal: the server will not send `+`.
    if (this.waitingContinuation && this.writeQueue[0]?.tag === tag) {
      this.waitingContinuation = false;
      while (this.writeQueue[0]?.tag === tag) this.writeQueue.shift();
      this.flush();
    }
    entry.resolve({
      tag,
      status: status === 'OK' || status === 'NO' ? status : 'BAD',
      text: space2 < 0 ? '' : rest.slice(space2 + 1),
      untagged: entry.untagged,
    });
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    for (const entry of this.pending) entry.reject(err);
    this.pending.length = 0;
    this.byTag.clear();
  }
}

/** Quotes a mailbox name or string for a command (ASCII only). */
export function imapQuote(s: string): string {
  return `"${s.replace(/(["\\])/g, '\\$1')}"`;
}
