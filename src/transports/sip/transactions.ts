/**
 * The SIP transaction layer (RFC 3261 17): the four state machines (client INVITE 17.1.1,
 * client non-INVITE 17.1.2, server INVITE 17.2.1, server non-INVITE 17.2.2), the matching of
 * incoming messages to them (17.1.3, 17.2.3; see transaction-matching.ts) and the limits on
 * how many may live. No socket I/O and no wall clock: the transport's `send` and a clock are
 * injected, so that tests drive every timer with a fake one.
 *
 * Every transaction ends in "terminated" by one of its own timers (or at once, where the RFC
 * sets a timer to zero over a reliable transport) and is then forgotten. Two guards go beyond
 * the RFC so that none can live forever: a client INVITE stuck in "proceeding" gives up after
 * `inviteProceedingGuard` (informed by the proxy's timer C, 16.6 step 11), and a server
 * transaction the TU never answers answers 408 itself after `answerGuard`/`inviteAnswerGuard`.
 */
import type { SipMessage, SipRequest, SipResponse } from './message.js';
import { responseTo } from './message.js';
import {
  ackForNonSuccess,
  ackKeyOfInvite,
  cancelFor,
  clientKey,
  clientKeyOfResponse,
  hasCookie,
  legacyAckKey,
  newTag,
  serverKey,
  tagOf,
  topVia,
} from './transaction-matching.js';

export { newBranch, newTag } from './transaction-matching.js';

/** The transports SIP runs on (RFC 3261 18, RFC 7118 for WebSocket). */
export type SipTransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/** Where a message goes or came from. */
export interface SipEndpoint {
  host: string;
  port: number;
  /** The transport; absent means UDP. */
  transport?: SipTransportName;
  /**
   * The connection a message came on, or must go back on (stream transports): an opaque id
   * the transport gave. A message for a flow that is gone fails as a transport error.
   */
  flow?: string;
}

/** Hands a message to the transport; throws when the transport fails (RFC 3261 17.1.4, 17.2.4). */
export type SipSend = (message: SipMessage, destination: SipEndpoint) => void;

/** Timers without a wall clock: `schedule` runs `callback` once after `delayMs` unless cancelled. */
export interface TransactionClock {
  schedule(delayMs: number, callback: () => void): () => void;
}

/** The process's timers; they do not keep the process alive (a server has its sockets for that). */
export const systemClock: TransactionClock = {
  schedule(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** Durations in milliseconds (RFC 3261 17.1.1.1 and table 4). */
export interface TransactionTimers {
  /** The round-trip estimate: retransmissions start at T1, and most timeouts are 64*T1. */
  t1: number;
  /** The longest interval between retransmissions of a non-INVITE request or an INVITE's final response. */
  t2: number;
  /** How long a message may stay in the network: timers I and K. */
  t4: number;
  /** Timer D: how long a client INVITE absorbs retransmitted final responses (at least 32 s over UDP). */
  timerD: number;
  /** How long a server INVITE waits for the TU before sending 100 Trying itself (17.2.1). */
  tryingDelay: number;
  /** The guard on a client INVITE that had a provisional response but no final one. */
  inviteProceedingGuard: number;
  /** The guard on a server INVITE the TU does not answer finally: it answers 408. */
  inviteAnswerGuard: number;
  /** The same for a non-INVITE; by default 64*T1, when the client has given up anyway. */
  answerGuard: number;
}

export function defaultTimers(t1 = 500, t2 = 4_000, t4 = 5_000): TransactionTimers {
  return {
    t1,
    t2,
    t4,
    timerD: 32_000,
    tryingDelay: 200,
    inviteProceedingGuard: 180_000,
    inviteAnswerGuard: 180_000,
    answerGuard: 64 * t1,
  };
}

export interface TransactionLimits {
  /** Live transactions, client and server together. */
  maxTransactions: number;
  /** Server transactions of one source host not answered finally yet (those lingering for retransmissions do not count). */
  maxPerSource: number;
  /** The Retry-After of the 503 that refuses a request over a limit, in seconds. */
  retryAfter: number;
}

/**
 * A finished non-INVITE transaction lingers for timer J (32 s over UDP) to absorb
 * retransmissions, so a trunk or a proxy placing hundreds of calls a second from one address
 * holds tens of thousands at once: those count in the total only, and the bound per source is
 * on transactions still waiting for their answer (what a flood fills).
 */
export const DEFAULT_TRANSACTION_LIMITS: Readonly<TransactionLimits> = Object.freeze({
  maxTransactions: 100_000,
  maxPerSource: 20_000,
  retryAfter: 5,
});

export type ClientState = 'calling' | 'trying' | 'proceeding' | 'completed' | 'terminated';
export type ServerState = 'trying' | 'proceeding' | 'completed' | 'confirmed' | 'terminated';

/** What a client transaction tells its TU; after timeout and transport-error it is gone. */
export type ClientEvent =
  | { type: 'provisional'; response: SipResponse }
  | { type: 'final'; response: SipResponse }
  | { type: 'timeout' }
  | { type: 'transport-error'; error: unknown };

export type ClientListener = (event: ClientEvent) => void;

export interface ClientTransaction {
  readonly request: SipRequest;
  readonly destination: SipEndpoint;
  readonly reliable: boolean;
  readonly state: ClientState;
}

export interface ServerTransaction {
  readonly request: SipRequest;
  readonly source: SipEndpoint;
  readonly reliable: boolean;
  readonly state: ServerState;
  /** Whether a final response was sent (by the TU, a CANCEL or the answer guard). */
  readonly answered: boolean;
  /** The last response sent, resent when the request is retransmitted. */
  readonly lastResponse: SipResponse | undefined;
}

/** What the layer passes up to the TU (the core of a UA, a proxy, a registrar). */
export type TransactionUserEvent =
  /**
   * A new request, with its server transaction to answer with respond(). For a CANCEL,
   * `cancels` is the live INVITE server transaction it matches, if any: see acceptCancel().
   */
  | {
      type: 'request';
      request: SipRequest;
      source: SipEndpoint;
      reliable: boolean;
      transaction: ServerTransaction;
      cancels: ServerTransaction | undefined;
    }
  /** An ACK that matches no transaction: the ACK for a 2xx, which is the TU's (17.2.1). */
  | { type: 'ack'; request: SipRequest; source: SipEndpoint; reliable: boolean }
  /** A response that matches no client transaction (a retransmitted 2xx to an INVITE, say). */
  | { type: 'response'; response: SipResponse; source: SipEndpoint; reliable: boolean }
  /** Timer H fired: the final response was never acknowledged (17.2.1). */
  | { type: 'no-ack'; transaction: ServerTransaction }
  /** The TU did not answer within the guard: the transaction answered 408 itself. */
  | { type: 'unanswered'; transaction: ServerTransaction }
  /** Sending a response failed: the transaction is gone (17.2.4). */
  | { type: 'transport-error'; transaction: ServerTransaction; error: unknown };

/** What receive() did with a message. */
export type Disposition =
  /** It belonged to a live transaction (a response, a retransmission, an ACK). */
  | 'matched'
  /** A new request: a server transaction was created and the TU told. */
  | 'new'
  /** Passed up without a transaction: a stray response or an ACK for a 2xx. */
  | 'stray'
  /** A new request over a limit, answered 503. */
  | 'rejected'
  /** Unreadable for matching (no Via, no CSeq): dropped. */
  | 'dropped';

/** A client request refused because the layer holds as many transactions as it may. */
export class TransactionLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransactionLimitError';
  }
}

export interface TransactionLayerOptions {
  send: SipSend;
  /** Receives every new request and everything else no transaction took. */
  tu: (event: TransactionUserEvent) => void;
  clock?: TransactionClock;
  timers?: Partial<TransactionTimers>;
  limits?: Partial<TransactionLimits>;
}

/** What a transaction needs of its layer. */
interface Host {
  readonly timers: TransactionTimers;
  readonly clock: TransactionClock;
  /** Sends; the transport's error when it failed. */
  transmit(message: SipMessage, destination: SipEndpoint): { error: unknown } | undefined;
  removed(tx: Transaction): void;
  /**
   * A server transaction sent its final response: it lingers only to absorb retransmissions
   * (timers H, J), and stops counting against its source's limit.
   */
  settled(tx: Transaction): void;
  /** An RFC 2543 INVITE transaction that answered non-2xx waits for its ACK under `ackKey`. */
  expectAck(tx: ServerInviteTx): void;
  tu(event: TransactionUserEvent): void;
}

abstract class Transaction {
  private readonly running = new Map<string, () => void>();

  constructor(
    protected readonly host: Host,
    readonly key: string,
    readonly request: SipRequest,
    /** The destination of a client transaction, the source of a server one. */
    readonly peer: SipEndpoint,
    readonly reliable: boolean,
  ) {}

  abstract get state(): ClientState | ServerState;
  protected abstract setTerminated(): void;
  protected abstract transportFailed(error: unknown): void;

  /** Timer names are the RFC's letters; starting one that runs restarts it. */
  protected startTimer(name: string, delayMs: number, fire: () => void): void {
    this.stopTimer(name);
    const cancel = this.host.clock.schedule(delayMs, () => {
      this.running.delete(name);
      if (this.state !== 'terminated') fire();
    });
    this.running.set(name, cancel);
  }

  protected stopTimer(name: string): void {
    const cancel = this.running.get(name);
    if (cancel === undefined) return;
    this.running.delete(name);
    cancel();
  }

  /** Stops every timer and leaves the layer; idempotent. */
  terminate(): void {
    if (this.state === 'terminated') return;
    this.setTerminated();
    for (const cancel of this.running.values()) cancel();
    this.running.clear();
    this.host.removed(this);
  }

  /** Sends to the peer; a failure ends the transaction (after telling the TU) and returns false. */
  protected transmit(message: SipMessage): boolean {
    const failure = this.host.transmit(message, this.peer);
    if (failure === undefined) return true;
    this.terminate();
    this.transportFailed(failure.error);
    return false;
  }
}

abstract class ClientTx extends Transaction implements ClientTransaction {
  constructor(
    host: Host,
    key: string,
    request: SipRequest,
    destination: SipEndpoint,
    reliable: boolean,
    protected readonly listener: ClientListener,
  ) {
    super(host, key, request, destination, reliable);
  }

  abstract override get state(): ClientState;

  get destination(): SipEndpoint {
    return this.peer;
  }

  abstract begin(): void;
  abstract onResponse(response: SipResponse): void;

  protected transportFailed(error: unknown): void {
    this.listener({ type: 'transport-error', error });
  }

  /** A failure the transport found after the send (a connection refused): the TU is told, once. */
  failOnTransport(error: unknown): void {
    if (this.state === 'terminated') return;
    this.terminate();
    this.transportFailed(error);
  }

  protected timedOut(): void {
    this.terminate();
    this.listener({ type: 'timeout' });
  }
}

/** RFC 3261 17.1.1 (figure 5). */
class ClientInviteTx extends ClientTx {
  private current: 'calling' | 'proceeding' | 'completed' | 'terminated' = 'calling';
  private ack: SipRequest | undefined;
  /** A CANCEL asked for before any provisional response: it waits for one (9.1). */
  pendingCancel: (() => void) | undefined;
  /** Whether the TU asked for a CANCEL already: one is enough. */
  cancelRequested = false;

  get state(): ClientState {
    return this.current;
  }

  protected setTerminated(): void {
    this.current = 'terminated';
  }

  begin(): void {
    if (!this.transmit(this.request)) return;
    if (!this.reliable) this.retransmitAfter(this.host.timers.t1);
    this.startTimer('B', 64 * this.host.timers.t1, () => this.timedOut());
  }

  /** Timer A: doubling each time, without a cap (only timer B ends it). */
  private retransmitAfter(interval: number): void {
    this.startTimer('A', interval, () => {
      if (this.current === 'calling' && this.transmit(this.request)) this.retransmitAfter(2 * interval);
    });
  }

  onResponse(response: SipResponse): void {
    if (response.status < 200) {
      if (this.current !== 'calling' && this.current !== 'proceeding') return;
      if (this.current === 'calling') {
        this.current = 'proceeding';
        this.stopTimer('A');
        this.stopTimer('B');
        this.startTimer('guard', this.host.timers.inviteProceedingGuard, () => this.timedOut());
      }
      this.listener({ type: 'provisional', response });
      const cancel = this.pendingCancel;
      this.pendingCancel = undefined;
      cancel?.();
      return;
    }
    if (this.current === 'completed' && response.status >= 300) {
      // A retransmission of the final response: our ACK was lost.
      if (this.ack !== undefined) this.transmit(this.ack);
      return;
    }
    if (this.current !== 'calling' && this.current !== 'proceeding') return;
    if (response.status < 300) {
      // The 2xx goes up and the transaction ends: the TU acknowledges it, and its
      // retransmissions reach the TU as stray responses.
      this.terminate();
      this.listener({ type: 'final', response });
      return;
    }
    this.current = 'completed';
    this.pendingCancel = undefined;
    this.stopTimer('A');
    this.stopTimer('B');
    this.stopTimer('guard');
    this.ack = ackForNonSuccess(this.request, response);
    if (!this.transmit(this.ack)) return;
    // The machine is settled before the TU hears of it: a TU that throws cannot leave it running.
    if (this.reliable) this.terminate();
    else this.startTimer('D', this.host.timers.timerD, () => this.terminate());
    this.listener({ type: 'final', response });
  }
}

/** RFC 3261 17.1.2 (figure 6). */
class ClientNonInviteTx extends ClientTx {
  private current: 'trying' | 'proceeding' | 'completed' | 'terminated' = 'trying';

  get state(): ClientState {
    return this.current;
  }

  protected setTerminated(): void {
    this.current = 'terminated';
  }

  begin(): void {
    if (!this.transmit(this.request)) return;
    if (!this.reliable) this.retransmitAfter(this.host.timers.t1);
    this.startTimer('F', 64 * this.host.timers.t1, () => this.timedOut());
  }

  /** Timer E: doubling up to T2 while trying, every T2 once proceeding. */
  private retransmitAfter(interval: number): void {
    this.startTimer('E', interval, () => {
      if (!this.transmit(this.request)) return;
      const { t2 } = this.host.timers;
      this.retransmitAfter(this.current === 'proceeding' ? t2 : Math.min(2 * interval, t2));
    });
  }

  onResponse(response: SipResponse): void {
    if (this.current !== 'trying' && this.current !== 'proceeding') return;
    if (response.status < 200) {
      this.current = 'proceeding';
      this.listener({ type: 'provisional', response });
      return;
    }
    this.current = 'completed';
    this.stopTimer('E');
    this.stopTimer('F');
    if (this.reliable) this.terminate();
    else this.startTimer('K', this.host.timers.t4, () => this.terminate());
    this.listener({ type: 'final', response });
  }
}

abstract class ServerTx extends Transaction implements ServerTransaction {
  lastResponse: SipResponse | undefined;
  /** The tag our responses put in To, once one did: a 487 or 408 we send reuses it. */
  toTag: string | undefined;

  abstract override get state(): ServerState;

  get source(): SipEndpoint {
    return this.peer;
  }

  get answered(): boolean {
    return this.lastResponse !== undefined && this.lastResponse.status >= 200;
  }

  abstract onRetransmission(request: SipRequest): void;
  abstract respond(response: SipResponse): boolean;

  protected transportFailed(error: unknown): void {
    this.host.tu({ type: 'transport-error', transaction: this, error });
  }

  /** Sends a response and remembers it for retransmissions of the request. */
  protected sendResponse(response: SipResponse): boolean {
    this.lastResponse = response;
    const tag = tagOf(response.headers, 'To');
    if (tag) this.toTag = tag;
    return this.transmit(response);
  }

  /** The TU did not answer in time: a 408 of our own (any final response ends the wait). */
  protected startAnswerGuard(delayMs: number): void {
    this.startTimer('guard', delayMs, () => {
      this.respond(responseTo(this.request, 408, undefined, { toTag: this.toTag ?? newTag() }));
      this.host.tu({ type: 'unanswered', transaction: this });
    });
  }
}

/** RFC 3261 17.2.1 (figure 7). */
class ServerInviteTx extends ServerTx {
  private current: 'proceeding' | 'completed' | 'confirmed' | 'terminated' = 'proceeding';
  /** Once this RFC 2543 transaction answered non-2xx: the key its ACK will be matched by. */
  ackKey: string | undefined;

  constructor(host: Host, key: string, request: SipRequest, source: SipEndpoint, reliable: boolean) {
    super(host, key, request, source, reliable);
    this.startTimer('trying', host.timers.tryingDelay, () => {
      if (this.lastResponse === undefined) this.sendResponse(responseTo(this.request, 100));
    });
    this.startAnswerGuard(host.timers.inviteAnswerGuard);
  }

  get state(): ServerState {
    return this.current;
  }

  protected setTerminated(): void {
    this.current = 'terminated';
  }

  onRetransmission(request: SipRequest): void {
    if (request.method === 'ACK') {
      if (this.current !== 'completed') return;
      this.current = 'confirmed';
      this.stopTimer('G');
      this.stopTimer('H');
      if (this.reliable) this.terminate();
      else this.startTimer('I', this.host.timers.t4, () => this.terminate());
      return;
    }
    if ((this.current === 'proceeding' || this.current === 'completed') && this.lastResponse !== undefined) {
      this.transmit(this.lastResponse);
    }
  }

  respond(response: SipResponse): boolean {
    if (this.current !== 'proceeding') return false;
    this.stopTimer('trying');
    if (response.status < 200) return this.sendResponse(response);
    this.stopTimer('guard');
    if (response.status < 300) {
      // The TU retransmits its 2xx until the ACK (13.3.1.4): the transaction's work is done.
      const sent = this.sendResponse(response);
      this.terminate();
      return sent;
    }
    this.current = 'completed';
    this.host.settled(this);
    if (!hasCookie(topVia(this.request.headers)?.branch)) {
      this.ackKey = ackKeyOfInvite(this.request, response);
      this.host.expectAck(this);
    }
    if (!this.sendResponse(response)) return false;
    if (!this.reliable) this.retransmitAfter(this.host.timers.t1);
    this.startTimer('H', 64 * this.host.timers.t1, () => {
      this.terminate();
      this.host.tu({ type: 'no-ack', transaction: this });
    });
    return true;
  }

  /** Timer G: the final response again, doubling up to T2, until the ACK or timer H. */
  private retransmitAfter(interval: number): void {
    this.startTimer('G', interval, () => {
      if (this.lastResponse !== undefined && this.transmit(this.lastResponse)) {
        this.retransmitAfter(Math.min(2 * interval, this.host.timers.t2));
      }
    });
  }
}

/** RFC 3261 17.2.2 (figure 8). */
class ServerNonInviteTx extends ServerTx {
  private current: 'trying' | 'proceeding' | 'completed' | 'terminated' = 'trying';

  constructor(host: Host, key: string, request: SipRequest, source: SipEndpoint, reliable: boolean) {
    super(host, key, request, source, reliable);
    this.startAnswerGuard(host.timers.answerGuard);
  }

  get state(): ServerState {
    return this.current;
  }

  protected setTerminated(): void {
    this.current = 'terminated';
  }

  onRetransmission(): void {
    // While trying there is nothing to resend: the retransmission is absorbed.
    if (this.current !== 'trying' && this.lastResponse !== undefined) this.transmit(this.lastResponse);
  }

  respond(response: SipResponse): boolean {
    if (this.current !== 'trying' && this.current !== 'proceeding') return false;
    if (response.status < 200) {
      this.current = 'proceeding';
      return this.sendResponse(response);
    }
    this.current = 'completed';
    this.stopTimer('guard');
    this.host.settled(this);
    if (!this.sendResponse(response)) return false;
    if (this.reliable) this.terminate();
    else this.startTimer('J', 64 * this.host.timers.t1, () => this.terminate());
    return true;
  }
}

/**
 * The transaction layer of one SIP endpoint: creates client transactions, matches what the
 * transport receives to its transactions, and passes the rest up to the TU.
 */
export class TransactionLayer {
  private readonly clients = new Map<string, ClientTx>();
  private readonly servers = new Map<string, ServerTx>();
  /** RFC 2543 INVITE transactions awaiting the ACK of their non-2xx answer. */
  private readonly legacyAcks = new Map<string, ServerInviteTx>();
  /** Server transactions not yet answered finally, per source host: what a flood fills. */
  private readonly perSource = new Map<string, number>();
  private readonly counted = new WeakSet<Transaction>();
  private readonly send: SipSend;
  private readonly tu: (event: TransactionUserEvent) => void;
  private readonly limits: TransactionLimits;
  private readonly host: Host;
  readonly timers: Readonly<TransactionTimers>;

  constructor(options: TransactionLayerOptions) {
    this.send = options.send;
    this.tu = options.tu;
    const base = defaultTimers(options.timers?.t1, options.timers?.t2, options.timers?.t4);
    this.timers = Object.freeze({ ...base, ...definedOnly(options.timers ?? {}) });
    this.limits = { ...DEFAULT_TRANSACTION_LIMITS, ...definedOnly(options.limits ?? {}) };
    const clock = options.clock ?? systemClock;
    this.host = {
      timers: this.timers,
      clock,
      transmit: (message, destination) => {
        try {
          this.send(message, destination);
          return undefined;
        } catch (error) {
          return { error };
        }
      },
      removed: (tx) => this.forget(tx),
      settled: (tx) => this.uncount(tx),
      expectAck: (tx) => {
        if (tx.ackKey !== undefined) this.legacyAcks.set(tx.ackKey, tx);
      },
      tu: (event) => this.tu(event),
    };
  }

  /** Live transactions, client and server. */
  get size(): number {
    return this.clients.size + this.servers.size;
  }

  /** Live server transactions opened by requests from `host`. */
  sizeFrom(host: string): number {
    return this.perSource.get(host.toLowerCase()) ?? 0;
  }

  /**
   * Starts a client transaction for `request` (not an ACK: an ACK for a 2xx is the TU's to
   * send, one for a non-2xx the transaction's). Its top Via must carry a branch, unique among
   * live transactions (newBranch() makes one). Events reach `listener`, a transport error on
   * the first send included, before this returns. Throws TransactionLimitError over the limit.
   */
  request(
    request: SipRequest,
    destination: SipEndpoint,
    reliable: boolean,
    listener: ClientListener,
  ): ClientTransaction {
    if (request.method === 'ACK') throw new TypeError('An ACK is sent without a transaction');
    const branch = topVia(request.headers)?.branch;
    if (branch === undefined) throw new TypeError('A client request needs a top Via with a branch');
    const key = clientKey(branch, request.method);
    if (this.clients.has(key)) throw new TypeError(`A live transaction has the branch ${branch} for ${request.method}`);
    if (this.size >= this.limits.maxTransactions) {
      throw new TransactionLimitError(`${this.limits.maxTransactions} transactions are live`);
    }
    const Kind = request.method === 'INVITE' ? ClientInviteTx : ClientNonInviteTx;
    const tx = new Kind(this.host, key, request, destination, reliable, listener);
    this.clients.set(key, tx);
    tx.begin();
    return tx;
  }

  /**
   * A connection to `destination` could not be made (RFC 3261 18.4): the client transactions
   * sent there that heard nothing yet fail with a transport error, rather than at timer B or F.
   */
  transportFailed(destination: SipEndpoint, error: unknown): void {
    const same = (a: SipEndpoint): boolean =>
      a.flow === undefined && (a.transport ?? 'udp') === (destination.transport ?? 'udp') && a.host === destination.host && a.port === destination.port;
    for (const tx of [...this.clients.values()]) {
      if ((tx.state === 'calling' || tx.state === 'trying') && same(tx.destination)) tx.failOnTransport(error);
    }
  }

  /**
   * Cancels a client INVITE transaction (9.1): a CANCEL goes in a transaction of its own,
   * its events to `listener`. Before any provisional response it waits for one. False when
   * the INVITE has its final response (or is gone): there is nothing left to cancel.
   */
  cancel(invite: ClientTransaction, listener: ClientListener = () => {}): boolean {
    if (!(invite instanceof ClientInviteTx)) throw new TypeError('Only an INVITE client transaction is cancelled');
    if (invite.state !== 'calling' && invite.state !== 'proceeding') return false;
    if (invite.cancelRequested) return true;
    invite.cancelRequested = true;
    const sendCancel = (): void => {
      try {
        this.request(cancelFor(invite.request), invite.destination, invite.reliable, listener);
      } catch (error) {
        listener({ type: 'transport-error', error });
      }
    };
    if (invite.state === 'proceeding') sendCancel();
    else invite.pendingCancel = sendCancel;
    return true;
  }

  /** Takes a message from the transport. */
  receive(message: SipMessage, source: SipEndpoint, reliable: boolean): Disposition {
    return message.kind === 'response'
      ? this.receiveResponse(message, source, reliable)
      : this.receiveRequest(message, source, reliable);
  }

  /** The TU answers a server transaction; false when it can no longer be answered (or sending failed). */
  respond(tx: ServerTransaction, response: SipResponse): boolean {
    if (!(tx instanceof ServerTx)) throw new TypeError('Not a server transaction of this layer');
    return tx.respond(response);
  }

  /**
   * Acts on a CANCEL the TU decided to honour (9.2): 200 to the CANCEL and, when the INVITE has
   * no final response yet, 487 to it; both with the To tag the INVITE's responses use. Without
   * a live INVITE to cancel, 481 to the CANCEL. Returns the INVITE transaction it ended.
   */
  acceptCancel(cancelTx: ServerTransaction): ServerTransaction | undefined {
    if (cancelTx.request.method !== 'CANCEL') throw new TypeError(`A ${cancelTx.request.method} is not a CANCEL`);
    const invite = this.cancelled(cancelTx.request);
    if (invite === undefined) {
      this.respond(cancelTx, responseTo(cancelTx.request, 481, undefined, { toTag: newTag() }));
      return undefined;
    }
    invite.toTag ??= newTag();
    const toTag = invite.toTag;
    this.respond(cancelTx, responseTo(cancelTx.request, 200, undefined, { toTag }));
    if (invite.answered) return undefined;
    invite.respond(responseTo(invite.request, 487, undefined, { toTag }));
    return invite;
  }

  /** The live INVITE server transaction a CANCEL matches (9.2: as a retransmitted INVITE would). */
  private cancelled(cancel: SipRequest): ServerInviteTx | undefined {
    if (cancel.method !== 'CANCEL') return undefined;
    const key = serverKey(cancel, 'INVITE');
    const tx = key === undefined ? undefined : this.servers.get(key);
    return tx instanceof ServerInviteTx ? tx : undefined;
  }

  private receiveResponse(response: SipResponse, source: SipEndpoint, reliable: boolean): Disposition {
    const key = clientKeyOfResponse(response);
    if (key === undefined) return 'dropped';
    const tx = this.clients.get(key);
    if (tx === undefined) {
      this.tu({ type: 'response', response, source, reliable });
      return 'stray';
    }
    tx.onResponse(response);
    return 'matched';
  }

  private receiveRequest(request: SipRequest, source: SipEndpoint, reliable: boolean): Disposition {
    const via = topVia(request.headers);
    if (via === undefined) return 'dropped';
    if (request.method === 'ACK') {
      const cookie = hasCookie(via.branch);
      const key = cookie ? serverKey(request) : legacyAckKey(request);
      const tx = key === undefined ? undefined : cookie ? this.servers.get(key) : this.legacyAcks.get(key);
      if (tx instanceof ServerInviteTx) {
        tx.onRetransmission(request);
        return 'matched';
      }
      this.tu({ type: 'ack', request, source, reliable });
      return 'stray';
    }
    const key = serverKey(request);
    if (key === undefined) return 'dropped';
    const existing = this.servers.get(key);
    if (existing !== undefined) {
      existing.onRetransmission(request);
      return 'matched';
    }
    if (this.size >= this.limits.maxTransactions || this.sizeFrom(source.host) >= this.limits.maxPerSource) {
      this.refuse(request, source);
      return 'rejected';
    }
    const Kind = request.method === 'INVITE' ? ServerInviteTx : ServerNonInviteTx;
    const tx = new Kind(this.host, key, request, source, reliable);
    this.servers.set(key, tx);
    const sourceKey = source.host.toLowerCase();
    this.perSource.set(sourceKey, (this.perSource.get(sourceKey) ?? 0) + 1);
    this.counted.add(tx);
    this.tu({ type: 'request', request, source, reliable, transaction: tx, cancels: this.cancelled(request) });
    return 'new';
  }

  /** 503 with Retry-After, statelessly: a transaction for it would defeat the limit. */
  private refuse(request: SipRequest, source: SipEndpoint): void {
    const response = responseTo(request, 503, undefined, { toTag: newTag() });
    response.headers.add('Retry-After', String(this.limits.retryAfter));
    try {
      this.send(response, source);
    } catch {
      // Nothing to tell: no transaction, and the request is refused either way.
    }
  }

  private forget(tx: Transaction): void {
    if (tx instanceof ClientTx) {
      if (this.clients.get(tx.key) === tx) this.clients.delete(tx.key);
      return;
    }
    if (this.servers.get(tx.key) !== tx) return;
    this.servers.delete(tx.key);
    if (tx instanceof ServerInviteTx && tx.ackKey !== undefined && this.legacyAcks.get(tx.ackKey) === tx) {
      this.legacyAcks.delete(tx.ackKey);
    }
    this.uncount(tx);
  }

  /** A server transaction stops counting against its source (once: settled, then removed). */
  private uncount(tx: Transaction): void {
    if (!this.counted.delete(tx)) return;
    const sourceKey = tx.peer.host.toLowerCase();
    const count = (this.perSource.get(sourceKey) ?? 1) - 1;
    if (count > 0) this.perSource.set(sourceKey, count);
    else this.perSource.delete(sourceKey);
  }
}

/** The entries of a partial options object that were given (an explicit undefined keeps the default). */
function definedOnly<T extends object>(partial: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(partial).filter(([, value]) => value !== undefined)) as Partial<T>;
}
