import type { XmlElement } from '../xml/element.js';
import type { Engine } from './engine.js';
import { errorResponse } from './protocol.js';
import type { AsyncSink, BindingKind, Session } from './session.js';

/** Receives the serialized data messages and responses of the requests a binding submitted. */
export interface Output {
  (xml: string): void;
  /**
   * True while the receiver cannot take more (a client that does not read): requests for it
   * wait, and the binding calls Conversation.resume() once it can.
   */
  blocked?(): boolean;
  /** Why the receiver takes no more answers (a sync batch's answer is full): requests are refused with it. */
  exhausted?(): string | undefined;
}

/** Transport abilities a binding lends to the operations that need them. */
export interface TransportControl {
  readonly kind: BindingKind;
  /** Where a session started on this transport sends its asynchronous messages. */
  asyncSink(session: Session): AsyncSink;
  /** True when `starttls` can be done on this connection now. */
  canStartTls(): boolean;
  /** Switches to TLS; called after the positive `starttls` response has been flushed. */
  startTls(): void;
  /** Closes the connection after pending output is flushed. */
  close(): void;
}

interface QueuedRequest {
  /** A request to run, or a ready reply (an error about unparsable input) to write in turn. */
  request: XmlElement | string;
  out: Output;
  done?: () => void;
}

/**
 * One client's conversation with the server: its pre-login state (target domain, a pending
 * SASL exchange), the session once logged in, and the queue that runs its requests one at
 * a time in arrival order — so that every request's data messages and response leave in
 * order even when the client pipelines.
 */
export class Conversation {
  session: Session | null = null;
  /** Target domain chosen by a pre-login operation's `domain` attribute. */
  targetDomain: string | undefined;
  /** A SASL exchange in progress: `auth` with this id continues it. */
  pendingAuth: { id: string; mechanism: 'CRAM-MD5' | 'PLAIN'; challenge: string; domainHint: string | undefined } | undefined;
  /** The protocol version the client announced in `login`. */
  clientVersion: string | undefined;
  /** Called after the current request's response is written (starttls, bye). */
  afterResponse: (() => void) | undefined;

  private readonly queue: (QueuedRequest | undefined)[] = [];
  private head = 0;
  private running = false;
  /** Requests wait for a blocked output (resume() goes on). */
  private stalled = false;
  /** Bytes answered before login; past the limit the conversation is refused and closed. */
  private preLoginOutput = 0;

  constructor(
    readonly engine: Engine,
    readonly remoteAddress: string,
    public secure: boolean,
    readonly transport: TransportControl | undefined,
    /** Bindings learn here when the queue length changes, to apply back-pressure. */
    private readonly onQueueLength?: (length: number) => void,
  ) {}

  get pending(): number {
    return this.queue.length - this.head;
  }

  /** True when no request is queued or running. */
  get idle(): boolean {
    return !this.running && this.head >= this.queue.length;
  }

  /**
   * Queues a request, or a ready reply to write once everything before it has been
   * answered; `done` runs once its response has been written to `out`.
   */
  submit(request: XmlElement | string, out: Output, done?: () => void): void {
    if (!this.running && this.head === this.queue.length && !out.blocked?.()) {
      // Nothing ahead of it (the common case, even when pipelining): run it at once, and
      // only queue what arrives while its handler waits.
      this.running = true;
      if (!this.run(request, out, done)) this.pump(); // runs what queued meanwhile, then reports 0
      return;
    }
    this.queue.push({ request, out, done });
    this.onQueueLength?.(this.pending);
    if (!this.running) this.pump();
  }

  /** Goes on running requests once the output that stopped them can take more. */
  resume(): void {
    if (!this.stalled || this.running) return;
    this.stalled = false;
    this.pump();
  }

  /** Runs requests until the queue is empty, a handler must wait for I/O, or the next request's output is blocked. */
  private pump(): void {
    this.running = true;
    while (this.head < this.queue.length) {
      const item = this.queue[this.head]!;
      if (item.out.blocked?.()) {
        this.stalled = true;
        this.running = false;
        return;
      }
      this.queue[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      if (this.run(item.request, item.out, item.done)) return; // pump() resumes from finish()
    }
    this.running = false;
    this.onQueueLength?.(0);
  }

  /** Runs one request (or writes a ready reply); true when its handler is still working. */
  private run(request: XmlElement | string, out: Output, done: (() => void) | undefined): boolean {
    if (typeof request === 'string') {
      out(request);
      this.complete(done);
      return false;
    }
    const exhausted = out.exhausted?.();
    if (exhausted !== undefined) {
      out(errorResponse(request.attrs.id, exhausted));
      this.complete(done);
      return false;
    }
    if (!this.session && this.preLoginOutput >= this.engine.server.config.limits.preLoginOutputBytes) {
      // Before login a client gets little (readStrings is the large answer): past the
      // budget its requests are refused and the connection closed.
      out(errorResponse(request.attrs.id, 'too much data requested before login'));
      this.complete(done);
      this.transport?.close();
      return false;
    }
    if (!this.session) out = this.countingPreLogin(out);
    const result = this.engine.execute(this, request, out);
    if (!result) {
      this.complete(done);
      return false;
    }
    result.then(
      () => this.finish(done),
      () => this.finish(done),
    );
    return true;
  }

  private finish(done: (() => void) | undefined): void {
    this.complete(done);
    this.pump();
  }

  /** A request has been answered: run its completion, then the operation's after-response hook. */
  private complete(done: (() => void) | undefined): void {
    const after = this.afterResponse;
    this.afterResponse = undefined;
    done?.();
    if (after) after();
  }

  private countingPreLogin(out: Output): Output {
    return (xml: string) => {
      this.preLoginOutput += xml.length;
      out(xml);
    };
  }

  /** Drops queued requests that have not started (the connection is gone). */
  abandon(): void {
    this.queue.length = 0;
    this.head = 0;
  }
}
