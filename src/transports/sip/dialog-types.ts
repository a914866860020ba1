/**
 * The types the parts of the SIP dialog layer share (dialog.ts is the entry): options, outcomes,
 * states and reasons, the errors, and DialogHost, what dialogs and calls need of their core.
 */
import type { ClientCall } from './dialog-uac.js';
import type { Dialog, IncomingRequest } from './dialog-inside.js';
import type { BodyInput, SipBody } from './dialog-messages.js';
import type { ServerCall } from './dialog-uas.js';
import type { SipRequest, SipResponse } from './message.js';
import type {
  ClientListener,
  ClientTransaction,
  ServerTransaction,
  SipEndpoint,
  SipTransportName,
  TransactionClock,
  TransactionLayer,
} from './transactions.js';

/** Extra header lines for a request or response, in order. */
export type HeaderList = ReadonlyArray<readonly [string, string]>;

/** The address our Via and Contact name, for a given next hop (the transport picks it). */
export interface LocalAddress {
  transport: SipTransportName;
  host: string;
  port: number;
}

/** What the core needs of the transaction layer (the layer itself fits, and lends its T1 and T2). */
export type TransactionPort = Pick<TransactionLayer, 'request' | 'respond' | 'cancel' | 'acceptCancel'> &
  Partial<Pick<TransactionLayer, 'timers'>>;

/** Milliseconds; the same T1 and T2 the transaction layer uses (RFC 3261 17.1.1.1). */
export interface DialogTimers {
  t1: number;
  t2: number;
}

/** What our INVITEs and their 2xx say we accept. */
export const ALLOW = 'INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, OPTIONS';
/**
 * RFC 4028 session timers, in seconds: what our INVITEs ask for (and the most we grant to a
 * peer's), and our Min-SE, below which a peer's Session-Expires gets 422.
 */
export interface SessionTimerSettings {
  expires: number;
  minSE: number;
}

/** RFC 4028's defaults: 1800 s asked for, 90 s the least (section 4). */
export const DEFAULT_SESSION_TIMER: Readonly<SessionTimerSettings> = Object.freeze({ expires: 1800, minSE: 90 });

/** Requests and responses that carry our Contact: the ones that can set or refresh a remote target. */
export const TARGET_METHODS: ReadonlySet<string> = new Set(['INVITE', 'UPDATE', 'SUBSCRIBE', 'NOTIFY', 'REFER']);

/** A refusal of the layer: over a limit, or an operation the dialog's state forbids. */
export class DialogError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DialogError';
  }
}

/** How a request we sent inside a dialog ended. */
export type RequestOutcome =
  | { kind: 'response'; response: SipResponse; body: SipBody | undefined }
  | { kind: 'timeout' }
  | { kind: 'transport'; error: unknown };

export interface RequestOptions {
  body?: BodyInput;
  /** For a body given as a string; application/sdp by default. */
  contentType?: string;
  headers?: HeaderList;
  /**
   * For a re-INVITE: the owner sends the ACK itself with dialog.ack(body) (an offer in the 2xx
   * wants an answer in the ACK). By default the layer acknowledges a 2xx at once, without a body.
   */
  ackLater?: boolean;
}

export interface ResponseOptions {
  body?: BodyInput;
  contentType?: string;
  reason?: string;
  headers?: HeaderList;
}

export type DialogState = 'early' | 'confirmed' | 'terminated';

export type TerminationReason =
  /** We sent BYE, or the peer did. */
  | 'local-bye'
  | 'remote-bye'
  /** The INVITE got a final non-2xx (UAC) or we rejected it (UAS). */
  | 'rejected'
  /** CANCEL (from either side) ended the INVITE. */
  | 'cancelled'
  /** A request inside the dialog got no response, or the INVITE no answer. */
  | 'timeout'
  | 'transport'
  /** A request inside the dialog got 481 (the peer knows it no more) or 408 (12.2.1.2). */
  | 'gone'
  /** A 2xx was never acknowledged (ours, or by our owner). */
  | 'no-ack'
  /** An early dialog of a forked INVITE that another fork answered (RFC 6026 timer M). */
  | 'not-answered'
  /** A second 2xx of a forked INVITE the owner did not want: acknowledged and ended. */
  | 'unwanted-fork'
  /** The reliable provisional responses went unacknowledged (RFC 3262 3). */
  | 'no-prack'
  /** The core shut down (UserAgentCore.shutdown). */
  | 'shutdown'
  /** RFC 4028: the session interval passed without a refresh (we sent BYE). */
  | 'session-expired';

/**
 * What dialogs and calls need of the core that holds them (UserAgentCore implements it): the
 * transaction layer, the clock, the registries that make every dialog findable and then
 * forgotten, and the ways out to the network.
 */
export interface DialogHost {
  readonly transactions: TransactionPort;
  readonly clock: TransactionClock;
  readonly timers: Readonly<DialogTimers>;
  /** RFC 4028 session timers; undefined: none (no `timer` support said, no refreshes, no expiry). */
  readonly sessionTimer: Readonly<SessionTimerSettings> | undefined;
  /** A dialog ended for want of a session refresh (counted). */
  sessionExpired(dialog: Dialog): void;
  /** Whether one more dialog fits under the limit. */
  hasRoom(): boolean;
  registerDialog(dialog: Dialog): void;
  forgetDialog(dialog: Dialog): void;
  forgetCall(call: ClientCall): void;
  /** A server call has its final response: a CANCEL or the transaction's end no longer concern it. */
  settled(call: ServerCall): void;
  /** A request inside a dialog waits for the owner's answer (its transaction's end is reported). */
  track(incoming: IncomingRequest): void;
  untrack(transaction: ServerTransaction): void;
  /** Our Contact as seen from `destination`. */
  contactFor(destination: SipEndpoint): string;
  /** Sends a request in a client transaction: to `fixed` when given, else to resolve(nextHop). */
  sendRequest(request: SipRequest, nextHop: string, fixed: SipEndpoint | undefined, listener: ClientListener,
    started?: (tx: ClientTransaction) => void): void;
  /** Sends an ACK for a 2xx, without a transaction. */
  sendDirect(request: SipRequest, nextHop: string, fixed: SipEndpoint | undefined): void;
  /** Sends a message as it is (a 2xx retransmission); a failure is ignored. */
  sendTo(message: SipRequest | SipResponse, destination: SipEndpoint): void;
}
