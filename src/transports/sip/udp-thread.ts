/**
 * SIP's UDP socket, kept in a thread of its own (udp-worker.ts). A loaded SIP port spends a
 * large part of its time in system calls: a datagram sent on loopback or a LAN runs the
 * kernel's delivery in the sender's time, and each read is a wake-up and a recvmsg. In its own
 * thread that time is taken on another core while the main thread parses, matches transactions
 * and runs calls. Datagrams cross between the threads in batches, one message per turn of each
 * event loop, so the crossing costs little per datagram when the port is busy.
 *
 * The socket is the same one port either way: responses leave from the port requests came to
 * (RFC 3581), and the transport above sees `message` events and `send` as with a dgram socket.
 */
import type { Worker } from 'node:worker_threads';
import { moduleWorker } from '../../services/workers.js';
import { forEachDatagram, packDatagrams, type Datagram, type UdpBatch } from './udp-batch.js';

export interface UdpThreadOptions {
  host: string;
  port: number;
  family: 4 | 6;
  /** The socket's kernel buffers (SO_RCVBUF, SO_SNDBUF). */
  bufferBytes: number;
  /** Bytes read and not yet handled by the main thread, at most: past them datagrams are dropped. */
  maxInFlightBytes: number;
  /** One Int32 shared by the threads: the bytes in flight now. */
  inFlight: SharedArrayBuffer;
}

export type UdpThreadCommand = { kind: 'send'; batch: UdpBatch } | { kind: 'close' };
export type UdpThreadEvent =
  | { kind: 'bound'; port: number }
  | { kind: 'bindFailed'; error: string; code?: string }
  | { kind: 'datagrams'; batch: UdpBatch }
  | { kind: 'sendFailed'; count: number; error: string }
  | { kind: 'dropped'; count: number }
  | { kind: 'error'; error: string };

export interface UdpThreadHandlers {
  /** A datagram read; `bytes` is the datagram's own view, valid for as long as it is kept. */
  message(bytes: Buffer, host: string, port: number): void;
  /** Datagrams that could not be sent since the last report (about once a second at most). */
  sendFailed(count: number, error: string): void;
  /** Datagrams dropped since the last report because the main thread was too far behind. */
  dropped(count: number): void;
  /** A socket error, or the thread's end: after that nothing is sent or read. */
  error(error: string, fatal: boolean): void;
}

/** The heap the socket's thread may use: it holds only the batches under way. */
const THREAD_HEAP_MB = 64;

export class UdpThreadSocket {
  private outgoing: Datagram[] = [];
  private outgoingBytes = 0;
  private scheduled = false;
  private closed = false;

  private constructor(
    private readonly worker: Worker,
    /** The port bound. */
    readonly port: number,
    /** Settles when the thread has ended. */
    private readonly exited: Promise<void>,
  ) {}

  /** Whether datagrams are still read and sent (false once closed or when the thread has died). */
  get open(): boolean {
    return !this.closed;
  }

  /** Binds the port in a new thread; rejects with the bind's error (its `code`, e.g. EADDRINUSE, kept). */
  static bind(options: Omit<UdpThreadOptions, 'inFlight'>, handlers: UdpThreadHandlers): Promise<UdpThreadSocket> {
    const inFlightBuffer = new SharedArrayBuffer(4);
    const inFlight = new Int32Array(inFlightBuffer);
    const worker = moduleWorker(import.meta.url, 'udp-worker', THREAD_HEAP_MB, { ...options, inFlight: inFlightBuffer } satisfies UdpThreadOptions);
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    return new Promise((resolve, reject) => {
      let socket: UdpThreadSocket | undefined;
      worker.on('message', (event: UdpThreadEvent) => {
        switch (event.kind) {
          case 'datagrams':
            try {
              forEachDatagram(event.batch, (bytes, host, port) => {
                try {
                  handlers.message(bytes, host, port);
                } catch (err) {
                  handlers.error(`a datagram could not be handled: ${err instanceof Error ? err.message : String(err)}`, false);
                }
              });
            } finally {
              // Always given back, or the bound would close on the port for good.
              Atomics.sub(inFlight, 0, event.batch.data.byteLength);
            }
            break;
          case 'bound':
            socket = new UdpThreadSocket(worker, event.port, exited);
            resolve(socket);
            break;
          case 'bindFailed': {
            const err: NodeJS.ErrnoException = new Error(event.error);
            if (event.code) err.code = event.code;
            void worker.terminate();
            reject(err);
            break;
          }
          case 'sendFailed':
            handlers.sendFailed(event.count, event.error);
            break;
          case 'dropped':
            handlers.dropped(event.count);
            break;
          case 'error':
            handlers.error(event.error, false);
            break;
        }
      });
      worker.on('error', (err) => {
        if (socket) {
          socket.closed = true;
          handlers.error(`the SIP UDP thread failed: ${err.message}`, true);
        } else reject(err);
      });
      worker.on('exit', (code) => {
        if (!socket) reject(new Error(`the SIP UDP thread exited (${code}) before binding`));
        else if (!socket.closed) {
          socket.closed = true;
          handlers.error(`the SIP UDP thread exited (${code})`, true);
        }
      });
    });
  }

  /** Queues a datagram; what is queued in one turn of the event loop goes down together. */
  send(bytes: Buffer, port: number, host: string): void {
    if (this.closed) return;
    this.outgoing.push({ bytes, host, port });
    this.outgoingBytes += bytes.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends what is queued and stops the thread. */
  close(): Promise<void> {
    if (!this.closed) {
      this.flush();
      this.closed = true;
      this.worker.postMessage({ kind: 'close' } satisfies UdpThreadCommand);
    }
    return this.exited;
  }

  private flush(): void {
    this.scheduled = false;
    const queued = this.outgoing;
    if (queued.length === 0 || this.closed) return;
    this.outgoing = [];
    const batch = packDatagrams(queued, this.outgoingBytes);
    this.outgoingBytes = 0;
    this.worker.postMessage({ kind: 'send', batch } satisfies UdpThreadCommand, [batch.data.buffer as ArrayBuffer]);
  }
}
