/**
 * A small POP3 client (RFC 1939, STLS from RFC 2595, CAPA from RFC 2449) for remote POP
 * accounts: USER/PASS, UIDL, LIST, RETR, DELE, QUIT. Written here over node:net/tls because
 * the npm POP3 clients return messages as strings (8-bit bytes do not survive), have no STLS
 * and no bound on what a server sends; this one keeps messages as bytes, bounds every line and
 * every message, and fails on a server silent for `timeoutMs`.
 */
import net from 'node:net';
import tls from 'node:tls';

export class Pop3Error extends Error {}

export interface Pop3Options {
  /** The address to connect to (already resolved and checked). */
  address: string;
  port: number;
  /** The name the certificate must carry (and SNI). */
  servername: string;
  security: 'none' | 'starttls' | 'tls';
  timeoutMs: number;
  tls?: tls.ConnectionOptions;
  /** Aborting it cuts the connection at once (the server stopping), whatever the client waits for. */
  signal?: AbortSignal;
}

/** The longest status line or listing line taken. */
const MAX_LINE = 8192;

export class Pop3Client {
  private socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  private constructor(socket: net.Socket, private readonly options: Pop3Options) {
    this.socket = socket;
    this.attach(socket);
    const { signal } = options;
    if (signal) {
      const abort = (): void => this.fail(new Pop3Error('the server is stopping'));
      if (signal.aborted) abort();
      else {
        signal.addEventListener('abort', abort, { once: true });
        socket.once('close', () => signal.removeEventListener('abort', abort));
      }
    }
  }

  static async connect(options: Pop3Options): Promise<Pop3Client> {
    const socket =
      options.security === 'tls'
        ? tls.connect({ host: options.address, port: options.port, servername: net.isIP(options.servername) ? undefined : options.servername, ...options.tls })
        : net.connect({ host: options.address, port: options.port });
    const client = new Pop3Client(socket, options);
    try {
      await client.connected(options.security === 'tls' ? 'secureConnect' : 'connect');
      client.status(await client.readLine());
      if (options.security === 'starttls') await client.startTls();
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  private attach(socket: net.Socket): void {
    socket.setTimeout(this.options.timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.notify();
    });
    socket.on('timeout', () => this.fail(new Pop3Error(`the server did not answer within ${Math.round(this.options.timeoutMs / 1000)} s`)));
    socket.on('error', (err: Error) => this.fail(new Pop3Error(connectionError(err))));
    socket.on('close', () => this.fail(new Pop3Error('the server closed the connection')));
  }

  private connected(event: 'connect' | 'secureConnect'): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.socket.once(event, () => resolve());
      const previous = this.wake;
      this.wake = () => {
        previous?.();
        if (this.failure) reject(this.failure);
      };
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.socket.destroy();
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private more(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve) => (this.wake = resolve));
  }

  /** One line without its CRLF (or bare LF). */
  private async readLine(max = MAX_LINE): Promise<string> {
    for (;;) {
      const end = this.buffer.indexOf(10);
      if (end >= 0) {
        if (end > max) throw new Pop3Error('the server sent a line that is too long');
        const line = this.buffer.subarray(0, end > 0 && this.buffer[end - 1] === 13 ? end - 1 : end);
        this.buffer = this.buffer.subarray(end + 1);
        return line.toString('latin1');
      }
      if (this.buffer.length > max) throw new Pop3Error('the server sent a line that is too long');
      if (this.failure) throw this.failure;
      await this.more();
    }
  }

  /** The text after +OK; a -ERR (or anything else) is an error with the server's words. */
  private status(line: string): string {
    if (line.startsWith('+OK')) return line.slice(3).trim();
    const text = line.startsWith('-ERR') ? line.slice(4).trim() : line.trim();
    throw new Pop3Error(`the server said: ${printable(text) || '-ERR'}`);
  }

  private async command(line: string): Promise<string> {
    if (this.failure) throw this.failure;
    this.socket.write(line + '\r\n');
    return this.status(await this.readLine());
  }

  /** The lines of a multi-line answer (dot-unstuffed), up to `maxBytes` in all. */
  private async multiLine(maxBytes: number, what: string): Promise<Buffer[]> {
    const lines: Buffer[] = [];
    let total = 0;
    for (;;) {
      const end = this.buffer.indexOf(10);
      if (end < 0) {
        if (this.buffer.length > maxBytes - total + 2) throw new Pop3Error(`${what} is larger than ${maxBytes} bytes`);
        if (this.failure) throw this.failure;
        await this.more();
        continue;
      }
      let line = this.buffer.subarray(0, end > 0 && this.buffer[end - 1] === 13 ? end - 1 : end);
      this.buffer = this.buffer.subarray(end + 1);
      if (line.length === 1 && line[0] === 46) return lines;
      if (line[0] === 46) line = line.subarray(1);
      total += line.length + 2;
      if (total > maxBytes) throw new Pop3Error(`${what} is larger than ${maxBytes} bytes`);
      lines.push(Buffer.from(line));
    }
  }

  private async startTls(): Promise<void> {
    await this.command('STLS');
    if (this.buffer.length > 0) throw new Pop3Error('the server sent data before the TLS handshake');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('timeout');
    plain.removeAllListeners('close');
    plain.setTimeout(0);
    // `host` names what the certificate must match (Node checks "localhost" otherwise).
    const secure = tls.connect({ socket: plain, host: this.options.servername, servername: net.isIP(this.options.servername) ? undefined : this.options.servername, ...this.options.tls });
    this.socket = secure;
    this.attach(secure);
    await this.connected('secureConnect');
  }

  async login(user: string, password: string): Promise<void> {
    if (/[\r\n]/.test(user) || /[\r\n]/.test(password)) throw new Pop3Error('the user name or password contains a line break');
    await this.command(`USER ${user}`);
    try {
      await this.command(`PASS ${password}`);
    } catch (err) {
      if (err instanceof Pop3Error && this.failure === undefined) throw new Pop3Error(`login refused (${err.message})`);
      throw err;
    }
  }

  /** Message number → unique id. */
  async uidl(): Promise<Map<number, string>> {
    try {
      await this.command('UIDL');
    } catch (err) {
      if (err instanceof Pop3Error && this.failure === undefined) throw new Pop3Error(`the server does not list unique ids (UIDL): ${err.message}`);
      throw err;
    }
    const map = new Map<number, string>();
    for (const line of await this.multiLine(64 * 1024 * 1024, 'the UIDL listing')) {
      const m = /^(\d+) ([\x21-\x7e]{1,70})$/.exec(line.toString('latin1').trim());
      if (!m) throw new Pop3Error('the server sent a malformed UIDL line');
      map.set(Number(m[1]), m[2]!);
    }
    return map;
  }

  /** Message number → size in octets. */
  async list(): Promise<Map<number, number>> {
    await this.command('LIST');
    const map = new Map<number, number>();
    for (const line of await this.multiLine(64 * 1024 * 1024, 'the LIST listing')) {
      const m = /^(\d+) (\d+)/.exec(line.toString('latin1').trim());
      if (!m) throw new Pop3Error('the server sent a malformed LIST line');
      map.set(Number(m[1]), Number(m[2]));
    }
    return map;
  }

  /** The message, CRLF line ends; a Pop3Error when it is larger than `maxBytes`. */
  async retrieve(number: number, maxBytes: number): Promise<Buffer> {
    await this.command(`RETR ${number}`);
    const lines = await this.multiLine(maxBytes, `message ${number}`);
    const crlf = Buffer.from('\r\n');
    return Buffer.concat(lines.flatMap((line) => [line, crlf]));
  }

  async delete(number: number): Promise<void> {
    await this.command(`DELE ${number}`);
  }

  /** Ends the session: the server commits deletions only on a QUIT that answers +OK. */
  async quit(): Promise<void> {
    await this.command('QUIT');
    this.close();
  }

  close(): void {
    this.failure ??= new Pop3Error('closed');
    this.socket.destroy();
  }
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/** A socket error as a short sentence for the record's error text. */
export function connectionError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset by the server';
  if (code === 'ETIMEDOUT') return 'connection timed out';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'the server cannot be reached';
  return printable(err.message);
}
