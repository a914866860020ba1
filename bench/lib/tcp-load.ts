/**
 * The pipelined XIMSS-over-TCP load generator, used unchanged against the echo server and
 * against ximssd. Each connection keeps `window` `<noop id="N"/>` requests in flight: every
 * chunk read is scanned for zero bytes (one per response), and as many new requests go out
 * in a single write. The first responses of each connection are checked in full (ids in
 * order, no error); after that only the zero bytes are counted and chunks are searched for
 * `errorText`, so that the generator stays cheap.
 */
import net from 'node:net';
import { cpuSeconds, meter, sleep } from './proc.js';

export interface PipelineOptions {
  port: number;
  connections: number;
  /** Requests in flight per connection. */
  window: number;
  warmupMs: number;
  durationMs: number;
  /** Log in first (ximssd); the echo server needs no login. */
  login?: { user: string; password: string };
  /** The server's pid, to measure its CPU time during the measurement. */
  serverPid?: number;
}

export interface PipelineResult {
  /** Responses per second over the measurement (after the warm-up). */
  rate: number;
  responses: number;
  seconds: number;
  /** Responses that carried errorText, or failed the full check. */
  errors: number;
  /** Server CPU time / wall time during the measurement (1 = one core busy). */
  serverCpu: number | undefined;
  /** Load generator CPU time / wall time during the measurement. */
  clientCpu: number;
  /** CPU used by all other processes of the machine, in cores: high values mean noisy figures. */
  otherCpu: number;
}

/** Responses checked in full at the start of every connection. */
const VERIFIED_RESPONSES = 2000;

class PipelinedConnection {
  received = 0;
  errors = 0;
  private sent = 0;
  private nextId = 1;
  private checkLeft = VERIFIED_RESPONSES;
  private checkText = '';
  private expectId = 1;
  private running = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly window: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  start(): void {
    this.running = true;
    this.fill();
  }

  stop(): void {
    this.running = false;
    this.socket.destroy();
  }

  private fill(): void {
    const want = this.window - (this.sent - this.received);
    if (want <= 0 || !this.running) return;
    let out = '';
    for (let i = 0; i < want; i++) out += '<noop id="' + this.nextId++ + '"/>\0';
    this.sent += want;
    this.socket.write(out);
  }

  private onData(chunk: Buffer): void {
    let count = 0;
    let at = chunk.indexOf(0);
    while (at >= 0) {
      count++;
      at = chunk.indexOf(0, at + 1);
    }
    if (this.checkLeft > 0) this.check(chunk);
    else if (chunk.indexOf('errorText') >= 0) this.errors++;
    this.received += count;
    this.fill();
  }

  /** Checks the opening responses one by one: `<response id="N"/>` with N in order. */
  private check(chunk: Buffer): void {
    this.checkText += chunk.toString('latin1');
    const parts = this.checkText.split('\0');
    this.checkText = parts.pop()!;
    for (const message of parts) {
      if (this.checkLeft <= 0) break;
      this.checkLeft--;
      if (message !== `<response id="${this.expectId++}"/>`) {
        this.errors++;
        if (this.errors <= 3) console.error(`  unexpected response: ${message.slice(0, 200)}`);
      }
    }
    if (this.checkLeft <= 0) this.checkText = '';
  }
}

/** Connects, and sends the login when asked; resolves once the login response came. */
export function connectXimss(port: number, login?: { user: string; password: string }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.once('error', reject);
    socket.once('connect', () => {
      if (!login) {
        socket.off('error', reject);
        resolve(socket);
        return;
      }
      let text = '';
      const onData = (chunk: Buffer): void => {
        text += chunk.toString('utf8');
        const zero = text.indexOf('\0');
        let response: string | undefined;
        // The login answers with <session .../> then <response id="L"/>.
        for (const message of text.split('\0').slice(0, -1)) if (message.startsWith('<response')) response = message;
        if (zero < 0 || response === undefined) return;
        socket.off('data', onData);
        socket.off('error', reject);
        if (response.includes('errorText')) {
          socket.destroy();
          reject(new Error(`login failed: ${response}`));
        } else resolve(socket);
      };
      socket.on('data', onData);
      socket.write(`<login id="L" authData="${login.user}" password="${login.password}" version="6.1"/>\0`);
    });
  });
}

export async function pipelinedNoops(options: PipelineOptions): Promise<PipelineResult> {
  const sockets = await Promise.all(Array.from({ length: options.connections }, () => connectXimss(options.port, options.login)));
  const connections = sockets.map((socket) => new PipelinedConnection(socket, options.window));
  const total = (): number => connections.reduce((sum, c) => sum + c.received, 0);
  try {
    for (const c of connections) c.start();
    await sleep(options.warmupMs);
    const r0 = total();
    const serverPid = options.serverPid;
    const done = meter(() => (serverPid ? cpuSeconds(serverPid) : 0));
    await sleep(options.durationMs);
    const r1 = total();
    const cpu = done();
    return {
      rate: (r1 - r0) / cpu.seconds,
      responses: r1 - r0,
      seconds: cpu.seconds,
      errors: connections.reduce((sum, c) => sum + c.errors, 0),
      serverCpu: serverPid ? cpu.server / cpu.seconds : undefined,
      clientCpu: cpu.client / cpu.seconds,
      otherCpu: cpu.other,
    };
  } finally {
    for (const c of connections) c.stop();
  }
}
