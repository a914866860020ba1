/**
 * The SIP dialog layer, the core of a user agent (RFC 3261 12-15) on top of the transaction
 * layer (transactions.ts): dialogs as UAC and as UAS, early ones per To tag of a forked INVITE,
 * the 2xx and its ACK end to end (13.2.2.4, 13.3.1.4, RFC 6026), reliable provisional
 * responses and PRACK (RFC 3262), UPDATE (RFC 3311), REFER and its NOTIFYs (RFC 3515, RFC
 * 4488), CANCEL as UAS (9.2) and the requests inside a dialog (12.2), loose or strict routed.
 *
 * What a call engine (a B2BUA) needs: bodies are opaque (SDP is the owner's business) and go
 * in and out explicitly; everything is reported by events; nothing waits on a wall clock.
 * Every dialog ends: early ones with their INVITE, confirmed ones on BYE, on 408/481 or no
 * answer to a request inside them (12.2.1.2), on a 2xx never acknowledged either way.
 */
import { randomInt } from 'node:crypto';
import { type BodyInput, type DialogId, type SipBody, bodyOf, callKey, contactUriOf, dialogKey, formatRAck,
  formatReferTo, hasOptionTag, parseRAck, parseRSeq, requestTarget, routeSetOf, setBody, sipfrag, toBody,
  unsupportedRequirements, type Replaces } from './dialog-messages.js';
import { Emitter } from './dialog-events.js';
import { SipHeaders, parseCSeq } from './headers.js';
import { REASON_PHRASES, SIP_VERSION, responseTo, type SipRequest, type SipResponse } from './message.js';
import { newBranch, newTag, tagOf } from './transaction-matching.js';
import {
  systemClock,
  type ClientEvent,
  type ClientListener,
  type ClientTransaction,
  type ServerTransaction,
  type SipEndpoint,
  type SipSend,
  type SipTransportName,
  type TransactionClock,
  type TransactionLayer,
  type TransactionUserEvent,
} from './transactions.js';
import { parseNameAddr } from './uri.js';

export type { SipBody } from './dialog-messages.js';

/** Extra header lines for a request or response, in order. */
export type HeaderList = ReadonlyArray<readonly [string, string]>;

/** The address our Via and Contact name, for a given next hop (the transport picks it). */
export interface LocalAddress {
  transport: SipTransportName;
  host: string;
  port: number;
}

/** What the core needs of the transaction layer (the layer itself fits). */
export type TransactionPort = Pick<TransactionLayer, 'request' | 'respond' | 'cancel' | 'acceptCancel'>;

/** Milliseconds; the same T1 and T2 the transaction layer uses (RFC 3261 17.1.1.1). */
export interface DialogTimers {
  t1: number;
  t2: number;
}

export interface DialogLimits {
  /** Live dialogs, early and confirmed, both roles; a new INVITE over it is refused with 503. */
  maxDialogs: number;
  /** The Retry-After of that 503, in seconds. */
  retryAfter: number;
}

export const DEFAULT_DIALOG_LIMITS: Readonly<DialogLimits> = Object.freeze({ maxDialogs: 10_000, retryAfter: 5 });

export interface UserAgentCoreOptions {
  transactions: TransactionPort;
  /** The transport's send, for what goes without a transaction: the ACK of a 2xx and the 2xx's retransmissions. */
  send: SipSend;
  localAddress(destination: SipEndpoint): LocalAddress;
  /** The next hop for a URI (RFC 3263 when it comes; injected). */
  resolve(uri: string): SipEndpoint | Promise<SipEndpoint>;
  clock?: TransactionClock;
  timers?: Partial<DialogTimers>;
  limits?: Partial<DialogLimits>;
  /** The user part of our Contact URI, if any. */
  contactUser?: string;
}

/** The option tags we support (RFC 3262's 100rel; Replaces only as read from a Refer-To). */
const SUPPORTED = ['100rel'];
/** What our INVITEs and their 2xx say we accept. */
const ALLOW = 'INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, OPTIONS';
/** Requests and responses that carry our Contact: the ones that can set or refresh a remote target. */
const TARGET_METHODS = new Set(['INVITE', 'UPDATE', 'SUBSCRIBE', 'NOTIFY', 'REFER']);

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
  | 'no-prack';

export type DialogEvents = {
  /** A request inside the dialog, to answer with incoming.respond() (BYE and PRACK are answered by the layer). */
  request: [incoming: IncomingRequest];
  /** The ACK of a 2xx we sent (the initial INVITE's or a re-INVITE's), with its body if any. */
  ack: [body: SipBody | undefined];
  /** A BYE the peer sent, answered 200 by the layer; `terminated` follows. */
  bye: [request: SipRequest];
  terminated: [reason: TerminationReason];
};

/** A request the peer sent inside a dialog. */
export class IncomingRequest {
  private final = false;

  constructor(
    private readonly core: UserAgentCore,
    readonly dialog: Dialog,
    readonly request: SipRequest,
    readonly transaction: ServerTransaction,
    readonly source: SipEndpoint,
  ) {}

  get method(): string {
    return this.request.method;
  }

  get body(): SipBody | undefined {
    return bodyOf(this.request);
  }

  /** Whether a final response was sent. */
  get answered(): boolean {
    return this.final;
  }

  /**
   * Answers; a 2xx to a re-INVITE is retransmitted until its ACK (then the dialog emits `ack`),
   * a 2xx to a target refresh takes the request's Contact as the new remote target (12.2.2).
   * False when answered already or the transaction is gone.
   */
  respond(status: number, options: ResponseOptions = {}): boolean {
    if (this.final) return false;
    const response = this.dialog.buildResponse(this.request, status, options, this.source);
    if (status >= 200) {
      this.final = true;
      this.core.untrack(this.transaction);
    }
    const sent = this.core.transactions.respond(this.transaction, response);
    if (status >= 200) this.dialog.answeredIncoming(this, response);
    return sent;
  }

  /** The transaction ended before a final response from the owner (the layer answered 408, or sending failed). */
  transactionEnded(): void {
    if (this.final) return;
    this.final = true;
    this.dialog.answeredIncoming(this, undefined);
  }
}

interface DialogInit {
  role: 'uac' | 'uas';
  id: DialogId;
  state: 'early' | 'confirmed';
  /** Our From (UAC) or To (UAS), with our tag. */
  localParty: string;
  remoteParty: string;
  remoteTarget: string;
  routeSet: string[];
  localSeq: number;
  remoteSeq: number | undefined;
  /** A connection to send on instead of resolving the next hop (a stream the peer opened). */
  flow: SipEndpoint | undefined;
}

/** What a 2xx we sent waits for: its ACK, while we retransmit it (13.3.1.4). */
interface AwaitedAck {
  cseq: number;
  response: SipResponse;
  destination: SipEndpoint;
  initial: boolean;
}

/** A dialog, early or confirmed, in either role. */
export class Dialog extends Emitter<DialogEvents> {
  readonly role: 'uac' | 'uas';
  readonly callId: string;
  readonly localTag: string;
  readonly remoteTag: string;
  /** Our identity as the peer sees it (From or To, tagged). */
  readonly localParty: string;
  /** The peer's identity (To or From, tagged). */
  remoteParty: string;
  remoteTarget: string;
  routeSet: string[];
  localSeq: number;
  remoteSeq: number | undefined;
  private current: DialogState;
  private reason: TerminationReason | undefined;
  private readonly flow: SipEndpoint | undefined;
  private readonly timers = new Map<string, () => void>();
  /** Set by a UAS call for its INVITE's dialog; receives PRACK and the BYE of an early dialog. */
  serverCall: ServerCall | undefined;
  /** A re-INVITE or UPDATE of ours that has no final response yet (a peer's then gets 491, 14.2). */
  private outgoingInvite = false;
  private outgoingUpdate = false;
  /** A re-INVITE of the peer's not yet answered, or answered 2xx and not yet acknowledged. */
  private incomingInvite: IncomingRequest | undefined;
  private awaited: AwaitedAck | undefined;
  /** A 2xx to our INVITE the owner has still to acknowledge (dialog.ack). */
  private ackDue: number | undefined;
  /** The ACK we sent last, resent when its 2xx comes again. */
  private lastAck: { cseq: number; ack: SipRequest } | undefined;
  /** RFC 3262: the RSeq of the last reliable provisional response we took in this early dialog. */
  lastRSeq: number | undefined;

  constructor(
    private readonly core: UserAgentCore,
    init: DialogInit,
  ) {
    super();
    this.role = init.role;
    this.callId = init.id.callId;
    this.localTag = init.id.localTag;
    this.remoteTag = init.id.remoteTag;
    this.localParty = init.localParty;
    this.remoteParty = init.remoteParty;
    this.remoteTarget = init.remoteTarget;
    this.routeSet = init.routeSet;
    this.localSeq = init.localSeq;
    this.remoteSeq = init.remoteSeq;
    this.current = init.state;
    this.flow = init.flow;
  }

  get state(): DialogState {
    return this.current;
  }

  get id(): DialogId {
    return { callId: this.callId, localTag: this.localTag, remoteTag: this.remoteTag };
  }

  /** Why it ended, once terminated. */
  get terminationReason(): TerminationReason | undefined {
    return this.reason;
  }

  /** Whether a 2xx of ours waits for its ACK, or one of the peer's for ours. */
  get ackPending(): boolean {
    return this.awaited !== undefined || this.ackDue !== undefined;
  }

  /**
   * Sends a request inside the dialog (12.2.1.1): INVITE (a re-INVITE), UPDATE, INFO, BYE,
   * REFER, NOTIFY, MESSAGE, PRACK, ... Resolves with its final response, or how it failed. A
   * 2xx to a re-INVITE is acknowledged by the layer unless `ackLater`; a 481, a 408 or no
   * response ends the dialog (12.2.1.2). Rejects when the state forbids the request.
   */
  request(method: string, options: RequestOptions = {}): Promise<RequestOutcome> {
    if (this.current === 'terminated') return Promise.reject(new DialogError('The dialog is terminated'));
    if (method === 'ACK' || method === 'CANCEL') {
      return Promise.reject(new DialogError(`${method} is not sent with request(): see ack() and ClientCall.cancel()`));
    }
    if (method === 'INVITE') {
      if (this.current === 'early') return Promise.reject(new DialogError('No re-INVITE in an early dialog: use UPDATE'));
      // 14.1: no second INVITE while one is in progress either way.
      if (this.outgoingInvite || this.incomingInvite !== undefined || this.ackPending) {
        return Promise.reject(new DialogError('An INVITE transaction of this dialog is in progress'));
      }
    }
    const cseq = ++this.localSeq;
    const request = this.buildRequest(method, cseq, options);
    const target = requestTarget(this.routeSet, this.remoteTarget);
    if (method === 'INVITE') this.outgoingInvite = true;
    if (method === 'UPDATE') this.outgoingUpdate = true;
    // A BYE ends the dialog as it leaves (15.1.1): nothing else goes in it after.
    if (method === 'BYE') this.terminate('local-bye');
    return new Promise((resolve) => {
      this.core.sendRequest(request, target.nextHop, this.flow, (event) => {
        if (event.type === 'provisional') return;
        resolve(this.requestEnded(method, cseq, event, options));
      });
    });
  }

  private requestEnded(method: string, cseq: number, event: Exclude<ClientEvent, { type: 'provisional' }>,
    options: RequestOptions): RequestOutcome {
    if (method === 'INVITE') this.outgoingInvite = false;
    if (method === 'UPDATE') this.outgoingUpdate = false;
    if (event.type === 'timeout' || event.type === 'transport-error') {
      this.terminate(event.type === 'timeout' ? 'timeout' : 'transport');
      return event.type === 'timeout' ? { kind: 'timeout' } : { kind: 'transport', error: event.error };
    }
    const { response } = event;
    if (response.status === 481 || response.status === 408) this.terminate('gone');
    else if (response.status >= 200 && response.status < 300 && this.current !== 'terminated') {
      if (TARGET_METHODS.has(method)) this.refreshTarget(response.headers);
      if (method === 'INVITE') {
        this.expectOwnerAck(cseq);
        if (!options.ackLater) this.ack();
      }
    }
    return { kind: 'response', response, body: bodyOf(response) };
  }

  /**
   * Acknowledges the 2xx to our INVITE (initial or re-INVITE), with the answer when the 2xx
   * held the offer; the same ACK goes again whenever the 2xx does. False when none is due.
   */
  ack(body?: BodyInput, contentType?: string): boolean {
    const cseq = this.ackDue;
    if (cseq === undefined) return false;
    this.ackDue = undefined;
    this.stopTimer('owner-ack');
    const ack = this.buildRequest('ACK', cseq, { body, contentType });
    this.lastAck = { cseq, ack };
    this.core.sendDirect(ack, requestTarget(this.routeSet, this.remoteTarget).nextHop, this.flow);
    return true;
  }

  /** Ends the dialog with a BYE (15.1.1). */
  bye(options: RequestOptions = {}): Promise<RequestOutcome> {
    return this.request('BYE', options);
  }

  /** Ends the dialog for `reason` and tells the peer with a BYE, whose outcome does not matter any more. */
  endWithBye(reason: TerminationReason): void {
    if (this.current === 'terminated') return;
    const request = this.buildRequest('BYE', ++this.localSeq, {});
    const { nextHop } = requestTarget(this.routeSet, this.remoteTarget);
    this.terminate(reason);
    this.core.sendRequest(request, nextHop, this.flow, () => undefined);
  }

  /** REFER (RFC 3515): asks the peer to send a request to `target` (with a Replaces, RFC 3891). */
  refer(target: string, options: { replaces?: Replaces; noSubscription?: boolean; headers?: HeaderList } = {})
    : Promise<RequestOutcome> {
    const headers: Array<readonly [string, string]> = [['Refer-To', formatReferTo(target, options.replaces)]];
    // RFC 4488: no implicit subscription, hence no NOTIFYs.
    if (options.noSubscription) headers.push(['Refer-Sub', 'false'], ['Supported', 'norefersub']);
    return this.request('REFER', { headers: [...headers, ...(options.headers ?? [])] });
  }

  /**
   * A NOTIFY of the REFER's implicit subscription (RFC 3515 2.4.4): the referred request's
   * progress as a sipfrag. `referCseq` names the REFER when the dialog had more than one.
   * A final status ends the subscription.
   */
  notifyRefer(status: number, options: { reason?: string; referCseq?: number } = {}): Promise<RequestOutcome> {
    const reason = options.reason ?? REASON_PHRASES[status] ?? '';
    const event = options.referCseq === undefined ? 'refer' : `refer;id=${options.referCseq}`;
    const state = status >= 200 ? 'terminated;reason=noresource' : 'active;expires=60';
    return this.request('NOTIFY', {
      body: sipfrag(status, reason),
      headers: [['Event', event], ['Subscription-State', state]],
    });
  }

  // ---- what the core and the calls call ----

  buildRequest(method: string, cseq: number, options: RequestOptions): SipRequest {
    const target = requestTarget(this.routeSet, this.remoteTarget);
    const headers = new SipHeaders();
    for (const route of target.routes) headers.add('Route', route);
    headers.add('Max-Forwards', '70');
    headers.add('From', this.localParty);
    headers.add('To', this.remoteParty);
    headers.add('Call-ID', this.callId);
    headers.add('CSeq', `${cseq} ${method}`);
    if (method === 'INVITE') headers.add('Allow', ALLOW);
    for (const [name, value] of options.headers ?? []) headers.add(name, value);
    const request: SipRequest = {
      kind: 'request', method, uri: target.requestUri, version: SIP_VERSION, headers, body: Buffer.alloc(0),
    };
    setBody(request, toBody(options.body, options.contentType));
    return request;
  }

  buildResponse(request: SipRequest, status: number, options: ResponseOptions, source: SipEndpoint): SipResponse {
    const response = responseTo(request, status, options.reason, { toTag: this.localTag });
    if (status > 100 && status < 300 && TARGET_METHODS.has(request.method)) {
      response.headers.add('Contact', this.core.contactFor(source));
    }
    if (request.method === 'INVITE' && status >= 200 && status < 300) response.headers.add('Allow', ALLOW);
    for (const [name, value] of options.headers ?? []) response.headers.add(name, value);
    setBody(response, toBody(options.body, options.contentType));
    return response;
  }

  /** A request for this dialog from the peer (12.2.2). */
  receiveRequest(event: Extract<TransactionUserEvent, { type: 'request' }>): void {
    const { request } = event;
    const incoming = new IncomingRequest(this.core, this, request, event.transaction, event.source);
    let seq: number;
    try {
      seq = parseCSeq(request.headers.get('CSeq') ?? '').seq;
    } catch {
      incoming.respond(400);
      return;
    }
    if (this.current === 'terminated') {
      incoming.respond(481);
      return;
    }
    if (this.remoteSeq !== undefined && seq < this.remoteSeq) {
      incoming.respond(500, { reason: 'CSeq Out of Order' });
      return;
    }
    this.remoteSeq = seq;
    switch (request.method) {
      case 'BYE':
        incoming.respond(200);
        this.serverCall?.endedByBye();
        this.emit('bye', request);
        this.terminate('remote-bye');
        return;
      case 'PRACK':
        if (this.serverCall === undefined) incoming.respond(481);
        else this.serverCall.receivePrack(incoming);
        return;
      case 'INVITE':
        // 14.2: an INVITE crossing one of ours in progress (as the UAC of an early dialog, our
        // initial INVITE is) is glare; one arriving before our answer to the peer's earlier
        // INVITE (as the UAS of an early dialog) is refused with 500.
        if (this.outgoingInvite || (this.current === 'early' && this.role === 'uac')) {
          incoming.respond(491);
          return;
        }
        if (this.current === 'early' || this.incomingInvite !== undefined || this.awaited !== undefined) {
          // 14.2: a second INVITE while one is in progress: 500 with a random Retry-After of 0-10 s.
          incoming.respond(500, { headers: [['Retry-After', String(randomInt(11))]] });
          return;
        }
        this.incomingInvite = incoming;
        break;
      case 'UPDATE':
        // RFC 3311 5.2: an UPDATE crossing ours is glare as for re-INVITEs.
        if (this.outgoingUpdate) {
          incoming.respond(491);
          return;
        }
        break;
      default:
        break;
    }
    this.core.track(incoming);
    if (this.listenerCount('request') === 0) {
      incoming.respond(501);
      return;
    }
    this.emit('request', incoming);
  }

  /** Called once an incoming request has its final response (undefined: the transaction ended without one). */
  answeredIncoming(incoming: IncomingRequest, response: SipResponse | undefined): void {
    const success = response !== undefined && response.status >= 200 && response.status < 300;
    if (success && TARGET_METHODS.has(incoming.method)) this.refreshTarget(incoming.request.headers);
    if (incoming !== this.incomingInvite) return;
    if (success && this.current !== 'terminated') {
      const seq = parseCSeq(incoming.request.headers.get('CSeq') ?? '').seq;
      this.awaitAck(response, seq, incoming.source, false);
    }
    this.incomingInvite = undefined;
  }

  /**
   * Retransmits a 2xx of ours to an INVITE until its ACK: from T1, doubling up to T2; after
   * 64*T1 without one the dialog is ended with a BYE (13.3.1.4).
   */
  awaitAck(response: SipResponse, cseq: number, destination: SipEndpoint, initial: boolean): void {
    this.awaited = { cseq, response, destination, initial };
    const { t1, t2 } = this.core.timers;
    const retransmit = (interval: number): void => {
      this.startTimer('2xx', interval, () => {
        this.core.sendTo(response, destination);
        retransmit(Math.min(2 * interval, t2));
      });
    };
    retransmit(t1);
    this.startTimer('2xx-guard', 64 * t1, () => this.endWithBye('no-ack'));
  }

  /** An ACK for this dialog (a 2xx's: those of non-2xx end in their transaction). */
  receiveAck(ack: SipRequest): void {
    let seq: number;
    try {
      seq = parseCSeq(ack.headers.get('CSeq') ?? '').seq;
    } catch {
      return;
    }
    const awaited = this.awaited;
    // A retransmitted ACK, or one for an older INVITE: absorbed.
    if (awaited === undefined || awaited.cseq !== seq) return;
    this.awaited = undefined;
    this.stopTimer('2xx');
    this.stopTimer('2xx-guard');
    const body = bodyOf(ack);
    this.emit('ack', body);
    if (awaited.initial) this.serverCall?.acknowledged(body);
  }

  /** A 2xx to an INVITE of ours came again: its ACK goes again (13.2.2.4). */
  resendAck(response: SipResponse): void {
    let seq: number;
    try {
      seq = parseCSeq(response.headers.get('CSeq') ?? '').seq;
    } catch {
      return;
    }
    if (this.lastAck === undefined || this.lastAck.cseq !== seq) return;
    this.core.sendDirect(this.lastAck.ack, requestTarget(this.routeSet, this.remoteTarget).nextHop, this.flow);
  }

  /**
   * A 2xx to our INVITE the owner has to acknowledge; if it does not within 64*T1 (the peer
   * gives up then anyway), the layer acknowledges it and ends the dialog.
   */
  expectOwnerAck(cseq: number): void {
    this.ackDue = cseq;
    this.startTimer('owner-ack', 64 * this.core.timers.t1, () => {
      this.ack();
      this.endWithBye('no-ack');
    });
  }

  /** The early dialog became confirmed (a 2xx for its tag, or ours sent). */
  confirm(): void {
    if (this.current === 'early') this.current = 'confirmed';
  }

  /** A 2xx of the UAS (UAC side): remote target and route set as the 2xx says (12.1.2, 13.2.2.4). */
  takeSuccess(response: SipResponse): void {
    this.confirm();
    this.routeSet = routeSetOf(response, 'uac');
    this.refreshTarget(response.headers);
    const to = response.headers.get('To');
    if (to !== undefined) this.remoteParty = to;
  }

  refreshTarget(headers: SipHeaders): void {
    const target = contactUriOf(headers);
    if (target !== undefined) this.remoteTarget = target;
  }

  /** Ends the dialog (idempotent): timers stop, the core forgets it, `terminated` is emitted. */
  terminate(reason: TerminationReason): void {
    if (this.current === 'terminated') return;
    this.current = 'terminated';
    this.reason = reason;
    for (const cancel of this.timers.values()) cancel();
    this.timers.clear();
    this.awaited = undefined;
    this.ackDue = undefined;
    this.core.forgetDialog(this);
    this.emit('terminated', reason);
  }

  startTimer(name: string, delayMs: number, fire: () => void): void {
    this.stopTimer(name);
    const cancel = this.core.clock.schedule(delayMs, () => {
      this.timers.delete(name);
      fire();
    });
    this.timers.set(name, cancel);
  }

  stopTimer(name: string): void {
    const cancel = this.timers.get(name);
    if (cancel === undefined) return;
    this.timers.delete(name);
    cancel();
  }
}

// ---------------------------------------------------------------- UAC

export interface InviteOptions {
  requestUri: string;
  /** name-addr of the caller, without a tag (one is added). */
  from: string;
  /** name-addr of the callee. */
  to: string;
  body?: BodyInput;
  contentType?: string;
  /** Extra headers; Route values here are a pre-loaded route set (an outbound proxy, 8.1.2). */
  headers?: HeaderList;
  /** Where to send the INVITE; by default resolve() of the first Route or the Request-URI. */
  destination?: SipEndpoint;
  /** Say `Supported: 100rel` (RFC 3262); true by default. */
  supported100rel?: boolean;
  /**
   * What to do with a second 2xx of a forked INVITE: 'first' (the default) acknowledges and
   * ends every 2xx after the first itself; 'all' reports each as `answered`, for the owner.
   */
  forks?: 'first' | 'all';
  /**
   * The body of the PRACK for a reliable provisional response (the answer when it held an
   * offer); may take its time. Without it the PRACK has no body.
   */
  prackBody?: (dialog: Dialog, response: SipResponse) => BodyInput | Promise<BodyInput>;
  callId?: string;
}

/** Why an INVITE of ours failed. */
export type CallFailure =
  | { kind: 'response'; response: SipResponse }
  | { kind: 'timeout' }
  | { kind: 'transport'; error: unknown }
  /** We cancelled it (and whatever 2xx crossed the CANCEL was acknowledged and ended). */
  | { kind: 'cancelled'; response: SipResponse | undefined };

export type ClientCallEvents = {
  /** A provisional response (not 100); `dialog` is its early dialog, undefined when it has no To tag. */
  provisional: [dialog: Dialog | undefined, response: SipResponse];
  /** A 2xx (one per fork with forks 'all'): the owner acknowledges it with dialog.ack(body?). */
  answered: [dialog: Dialog, response: SipResponse];
  failed: [failure: CallFailure];
};

/** An INVITE of ours and the dialogs it makes (13.2). */
export class ClientCall extends Emitter<ClientCallEvents> {
  readonly callId: string;
  readonly localTag: string;
  readonly request: SipRequest;
  private transaction: ClientTransaction | undefined;
  private cancelRequested = false;
  /** failed was emitted, or answered: the outcome is known. */
  private settled = false;
  /** The dialogs reported as `answered`. */
  private readonly answered = new Set<Dialog>();
  private finalReceived = false;
  /** Every dialog by remote tag, terminated ones too (to re-ACK their 2xx until the call is forgotten). */
  private readonly byTag = new Map<string, Dialog>();
  private timerM: (() => void) | undefined;
  readonly seq: number;

  constructor(
    private readonly core: UserAgentCore,
    private readonly options: InviteOptions,
  ) {
    super();
    this.callId = options.callId ?? `${newTag()}${newTag()}`;
    this.localTag = newTag();
    this.seq = 1;
    const headers = new SipHeaders();
    headers.add('Max-Forwards', '70');
    headers.add('From', `${options.from};tag=${this.localTag}`);
    headers.add('To', options.to);
    headers.add('Call-ID', this.callId);
    headers.add('CSeq', `${this.seq} INVITE`);
    headers.add('Allow', ALLOW);
    if (options.supported100rel !== false) headers.add('Supported', '100rel');
    for (const [name, value] of options.headers ?? []) headers.add(name, value);
    this.request = {
      kind: 'request', method: 'INVITE', uri: options.requestUri, version: SIP_VERSION, headers, body: Buffer.alloc(0),
    };
    setBody(this.request, toBody(options.body, options.contentType));
  }

  /** The dialogs (early, confirmed or ended) made so far, one per To tag. */
  get dialogs(): Dialog[] {
    return [...this.byTag.values()];
  }

  start(): void {
    const firstRoute = this.request.headers.getAll('Route')[0];
    const nextHop = firstRoute === undefined ? this.options.requestUri : parseNameAddr(firstRoute).uriText;
    // What happens while invite() runs (a transport error on the first send, the transaction
    // limit) is told a moment later: the owner has no listener yet.
    let starting = true;
    const early: ClientEvent[] = [];
    const listener = (event: ClientEvent): void => {
      if (starting) early.push(event);
      else this.onEvent(event);
    };
    this.core.sendRequest(this.request, nextHop, this.options.destination, listener, (tx) => {
      this.transaction = tx;
      if (this.cancelRequested) this.core.transactions.cancel(tx);
    });
    starting = false;
    if (early.length > 0) queueMicrotask(() => early.forEach((event) => this.onEvent(event)));
  }

  /**
   * CANCEL (9.1): the INVITE then ends with 487, reported as `failed` {cancelled}. A 2xx that
   * crosses the CANCEL is acknowledged and ended with a BYE. False once a final response came.
   */
  cancel(): boolean {
    if (this.finalReceived || this.cancelRequested) return !this.finalReceived;
    this.cancelRequested = true;
    if (this.transaction !== undefined) this.core.transactions.cancel(this.transaction);
    return true;
  }

  /** Ends every dialog but `keep` (early ones with BYE too: RFC 3261 15 allows it). */
  endOtherForks(keep: Dialog): void {
    for (const dialog of this.byTag.values()) {
      if (dialog === keep || dialog.state === 'terminated') continue;
      dialog.ack();
      dialog.endWithBye('unwanted-fork');
    }
  }

  private onEvent(event: ClientEvent): void {
    if (event.type === 'provisional') {
      this.onProvisional(event.response);
      return;
    }
    if (event.type === 'final' && event.response.status < 300) {
      this.finalReceived = true;
      this.onSuccess(event.response);
      return;
    }
    this.finalReceived = true;
    for (const dialog of this.byTag.values()) {
      dialog.terminate(this.cancelRequested ? 'cancelled' : event.type === 'final' ? 'rejected' : 'timeout');
    }
    this.core.forgetCall(this);
    if (this.settled) return;
    this.settled = true;
    if (event.type === 'final') {
      const { response } = event;
      this.emit('failed', this.cancelRequested && response.status === 487 ? { kind: 'cancelled', response }
        : { kind: 'response', response });
    } else if (event.type === 'timeout') this.emit('failed', { kind: 'timeout' });
    else this.emit('failed', { kind: 'transport', error: event.error });
  }

  private dialogFor(response: SipResponse, state: 'early' | 'confirmed'): Dialog | undefined {
    const remoteTag = tagOf(response.headers, 'To');
    if (!remoteTag) return undefined;
    const known = this.byTag.get(remoteTag.toLowerCase());
    if (known !== undefined) return known;
    if (!this.core.hasRoom()) return undefined;
    const dialog = new Dialog(this.core, {
      role: 'uac',
      id: { callId: this.callId, localTag: this.localTag, remoteTag },
      state,
      localParty: this.request.headers.get('From') ?? '',
      remoteParty: response.headers.get('To') ?? this.options.to,
      remoteTarget: contactUriOf(response.headers) ?? this.options.requestUri,
      routeSet: routeSetOf(response, 'uac'),
      localSeq: this.seq,
      remoteSeq: undefined,
      flow: this.options.destination?.flow === undefined ? undefined : this.options.destination,
    });
    this.byTag.set(remoteTag.toLowerCase(), dialog);
    this.core.registerDialog(dialog);
    return dialog;
  }

  private onProvisional(response: SipResponse): void {
    if (response.status === 100) return;
    const dialog = this.dialogFor(response, 'early');
    if (dialog === undefined || dialog.state !== 'early') {
      this.emit('provisional', dialog, response);
      return;
    }
    dialog.refreshTarget(response.headers);
    const rseqValue = response.headers.get('RSeq');
    if (!hasOptionTag(response.headers, 'Require', '100rel') || rseqValue === undefined) {
      this.emit('provisional', dialog, response);
      return;
    }
    let rseq: number;
    try {
      rseq = parseRSeq(rseqValue);
    } catch {
      return;
    }
    // RFC 3262 4: in order only; a retransmission (our PRACK is on its way) or a gap is dropped.
    if (dialog.lastRSeq !== undefined && rseq !== dialog.lastRSeq + 1) return;
    dialog.lastRSeq = rseq;
    this.emit('provisional', dialog, response);
    const rack = formatRAck({ rseq, cseq: this.seq, method: 'INVITE' });
    const sendPrack = (body: BodyInput): void => {
      if (dialog.state !== 'early') return;
      void dialog.request('PRACK', { body, headers: [['RAck', rack]] }).catch(() => undefined);
    };
    const body = this.options.prackBody?.(dialog, response);
    if (body instanceof Promise) body.then(sendPrack, () => sendPrack(undefined));
    else sendPrack(body);
  }

  private onSuccess(response: SipResponse): void {
    const dialog = this.dialogFor(response, 'confirmed');
    if (dialog === undefined) {
      // Over the dialog limit (or no To tag): nothing to keep it in; the peer's timers end it.
      return;
    }
    if (dialog.state === 'terminated') {
      dialog.resendAck(response);
      return;
    }
    if (this.answered.has(dialog)) {
      // A retransmission: the ACK goes again once the owner sent it.
      dialog.resendAck(response);
      return;
    }
    dialog.takeSuccess(response);
    dialog.expectOwnerAck(this.seq);
    if (this.timerM === undefined) {
      // RFC 6026 timer M: further 2xx from other forks are taken for 64*T1, then the call is done.
      this.timerM = this.core.clock.schedule(64 * this.core.timers.t1, () => this.endForking());
    }
    if (this.cancelRequested || (this.answered.size > 0 && this.options.forks !== 'all')) {
      dialog.ack();
      dialog.endWithBye(this.cancelRequested ? 'cancelled' : 'unwanted-fork');
      if (this.cancelRequested && !this.settled) {
        this.settled = true;
        this.emit('failed', { kind: 'cancelled', response: undefined });
      }
      return;
    }
    this.answered.add(dialog);
    this.settled = true;
    this.emit('answered', dialog, response);
  }

  /** A 2xx that came after the INVITE's transaction ended (a retransmission, or another fork's). */
  receiveStraySuccess(response: SipResponse): void {
    const remoteTag = tagOf(response.headers, 'To');
    const known = remoteTag ? this.byTag.get(remoteTag.toLowerCase()) : undefined;
    if (known !== undefined && (this.answered.has(known) || known.state === 'terminated')) {
      known.resendAck(response);
      return;
    }
    this.onSuccess(response);
  }

  private endForking(): void {
    this.timerM = undefined;
    for (const dialog of this.byTag.values()) if (dialog.state === 'early') dialog.terminate('not-answered');
    this.core.forgetCall(this);
  }

  /** The core forgets the call: its timer stops. */
  stopTimers(): void {
    this.timerM?.();
    this.timerM = undefined;
  }
}

// ---------------------------------------------------------------- UAS

export interface ProvisionalOptions {
  body?: BodyInput;
  contentType?: string;
  /** RFC 3262: retransmitted until PRACKed; only when the INVITE supports or requires 100rel. */
  reliable?: boolean;
  headers?: HeaderList;
}

export type ServerCallEvents = {
  /** The ACK of our 2xx, with the answer when our 2xx held the offer. */
  ack: [body: SipBody | undefined];
  /** CANCEL: the layer answered 487 to the INVITE; the dialog is terminated. */
  cancelled: [];
  /** The PRACK of a reliable provisional response, with its body (the answer to its offer). */
  prack: [body: SipBody | undefined, request: SipRequest];
};

type ServerCallState = 'ringing' | 'answered' | 'rejected' | 'cancelled';

/** An INVITE the peer sent us, outside a dialog, and the dialog it makes (13.3). */
export class ServerCall extends Emitter<ServerCallEvents> {
  readonly dialog: Dialog;
  readonly request: SipRequest;
  readonly transaction: ServerTransaction;
  readonly source: SipEndpoint;
  /** Whether the INVITE offered (or required) 100rel. */
  readonly reliableAllowed: boolean;
  private current: ServerCallState = 'ringing';
  private readonly seq: number;
  private nextRSeq = randomInt(1, 2 ** 16);
  /** The reliable provisional response awaiting its PRACK, and those queued behind it (RFC 3262 3). */
  private outstanding: { response: SipResponse; rseq: number } | undefined;
  private readonly queued: SipResponse[] = [];

  constructor(
    private readonly core: UserAgentCore,
    event: Extract<TransactionUserEvent, { type: 'request' }>,
  ) {
    super();
    this.request = event.request;
    this.transaction = event.transaction;
    this.source = event.source;
    const { headers } = event.request;
    this.seq = parseCSeq(headers.get('CSeq') ?? '').seq;
    this.reliableAllowed = hasOptionTag(headers, 'Supported', '100rel') || hasOptionTag(headers, 'Require', '100rel');
    const localTag = newTag();
    const to = headers.get('To') ?? '';
    this.dialog = new Dialog(core, {
      role: 'uas',
      id: { callId: headers.get('Call-ID') ?? '', localTag, remoteTag: tagOf(headers, 'From') ?? '' },
      state: 'early',
      localParty: `${to};tag=${localTag}`,
      remoteParty: headers.get('From') ?? '',
      remoteTarget: contactUriOf(headers) ?? '',
      routeSet: routeSetOf(event.request, 'uas'),
      localSeq: 0,
      remoteSeq: this.seq,
      flow: event.source.flow === undefined ? undefined : event.source,
    });
    this.dialog.serverCall = this;
  }

  get state(): ServerCallState {
    return this.current;
  }

  /** The offer (or nothing: the owner then offers in its 2xx or reliable 1xx). */
  get body(): SipBody | undefined {
    return bodyOf(this.request);
  }

  /**
   * A provisional response (101-199) in the early dialog. A reliable one (RFC 3262) is
   * retransmitted until its PRACK; a second reliable one waits for the first's PRACK.
   */
  provisional(status: number, options: ProvisionalOptions = {}): boolean {
    if (status <= 100 || status >= 200) throw new RangeError('A provisional status is 101-199');
    if (this.current !== 'ringing') return false;
    if (options.reliable && !this.reliableAllowed) throw new DialogError('The INVITE did not offer 100rel');
    const response = this.response(status, options);
    if (!options.reliable) return this.core.transactions.respond(this.transaction, response);
    response.headers.add('Require', '100rel');
    response.headers.add('RSeq', String(this.nextRSeq++));
    if (this.outstanding !== undefined) {
      this.queued.push(response);
      return true;
    }
    return this.sendReliable(response);
  }

  /** The 2xx (200 by default): retransmitted until the ACK; none in 64*T1 ends the dialog with BYE. */
  answer(status = 200, body?: BodyInput, options: Omit<ResponseOptions, 'body'> = {}): boolean {
    if (status < 200 || status >= 300) throw new RangeError('An answer is 2xx');
    if (this.current !== 'ringing') return false;
    this.current = 'answered';
    this.stopReliable();
    const response = this.response(status, { ...options, body });
    this.core.settled(this);
    this.dialog.confirm();
    const sent = this.core.transactions.respond(this.transaction, response);
    this.dialog.awaitAck(response, this.seq, this.source, true);
    return sent;
  }

  /** A final refusal (3xx-6xx): 486, 603, a 302 with Contact headers, ... The dialog ends. */
  reject(status: number, reason?: string, headers: HeaderList = []): boolean {
    if (status < 300 || status > 699) throw new RangeError('A rejection is 300-699');
    if (this.current !== 'ringing') return false;
    return this.finish(status, reason, headers, 'rejected');
  }

  private finish(status: number, reason: string | undefined, headers: HeaderList, why: TerminationReason): boolean {
    this.current = 'rejected';
    this.stopReliable();
    const response = responseTo(this.request, status, reason, { toTag: this.dialog.localTag });
    for (const [name, value] of headers) response.headers.add(name, value);
    this.core.settled(this);
    const sent = this.core.transactions.respond(this.transaction, response);
    this.dialog.terminate(why);
    return sent;
  }

  // ---- what the core and the dialog call ----

  /** CANCEL of our INVITE: 200 to it and 487 to the INVITE (9.2), when not answered yet. */
  receiveCancel(cancel: ServerTransaction): void {
    const ended = this.core.transactions.acceptCancel(cancel);
    if (ended === undefined || this.current !== 'ringing') return;
    this.current = 'cancelled';
    this.stopReliable();
    this.core.settled(this);
    this.dialog.terminate('cancelled');
    this.emit('cancelled');
  }

  /** A BYE in the early dialog: the INVITE gets 487 (15.1.2). */
  endedByBye(): void {
    if (this.current !== 'ringing') return;
    this.current = 'cancelled';
    this.stopReliable();
    this.core.settled(this);
    this.core.transactions.respond(this.transaction, responseTo(this.request, 487, undefined,
      { toTag: this.dialog.localTag }));
  }

  receivePrack(incoming: IncomingRequest): void {
    let rack;
    try {
      rack = parseRAck(incoming.request.headers.get('RAck') ?? '');
    } catch {
      incoming.respond(400, { reason: 'Bad RAck' });
      return;
    }
    const outstanding = this.outstanding;
    if (outstanding === undefined || rack.rseq !== outstanding.rseq || rack.cseq !== this.seq || rack.method !== 'INVITE') {
      incoming.respond(481);
      return;
    }
    this.outstanding = undefined;
    this.dialog.stopTimer('rel');
    this.dialog.stopTimer('rel-guard');
    incoming.respond(200);
    this.emit('prack', incoming.body, incoming.request);
    const next = this.queued.shift();
    if (next !== undefined && this.current === 'ringing') this.sendReliable(next);
  }

  acknowledged(body: SipBody | undefined): void {
    this.emit('ack', body);
  }

  /** The INVITE's transaction ended without our final response (the 408 of the layer's guard, a transport error). */
  transactionEnded(why: 'unanswered' | 'transport-error'): void {
    if (this.current !== 'ringing') return;
    this.current = 'rejected';
    this.stopReliable();
    this.core.settled(this);
    this.dialog.terminate(why === 'unanswered' ? 'timeout' : 'transport');
  }

  private response(status: number, options: ResponseOptions): SipResponse {
    const response = this.dialog.buildResponse(this.request, status, options, this.source);
    // 12.1.1: the UAS copies Record-Route into every response that makes the dialog.
    for (const route of this.request.headers.getAll('Record-Route')) response.headers.add('Record-Route', route);
    return response;
  }

  /** RFC 3262 3: from T1, doubling; no PRACK within 64*T1 rejects the INVITE with a 5xx. */
  private sendReliable(response: SipResponse): boolean {
    const rseq = parseRSeq(response.headers.get('RSeq') ?? '');
    this.outstanding = { response, rseq };
    const sent = this.core.transactions.respond(this.transaction, response);
    const retransmit = (interval: number): void => {
      this.dialog.startTimer('rel', interval, () => {
        this.core.transactions.respond(this.transaction, response);
        retransmit(2 * interval);
      });
    };
    retransmit(this.core.timers.t1);
    this.dialog.startTimer('rel-guard', 64 * this.core.timers.t1, () =>
      this.finish(500, 'Reliable Provisional Response Not Acknowledged', [], 'no-prack'));
    return sent;
  }

  private stopReliable(): void {
    this.outstanding = undefined;
    this.queued.length = 0;
    this.dialog.stopTimer('rel');
    this.dialog.stopTimer('rel-guard');
  }
}

// ---------------------------------------------------------------- the core

/** The user agent core: owns the dialogs, routes the TU events of a transaction layer to them. */
export class UserAgentCore {
  readonly transactions: TransactionPort;
  readonly clock: TransactionClock;
  readonly timers: Readonly<DialogTimers>;
  private readonly limits: DialogLimits;
  private readonly send: SipSend;
  private readonly localAddress: (destination: SipEndpoint) => LocalAddress;
  private readonly resolve: (uri: string) => SipEndpoint | Promise<SipEndpoint>;
  private readonly contactUser: string | undefined;
  private readonly dialogs = new Map<string, Dialog>();
  private readonly calls = new Map<string, ClientCall>();
  /** Server calls by their INVITE's transaction, while it may still be cancelled or time out. */
  private readonly ringing = new Map<ServerTransaction, ServerCall>();
  /** Server calls by Call-ID, From tag and CSeq: a retransmitted INVITE after our 2xx finds its call. */
  private readonly initialInvites = new Map<string, ServerCall>();
  /** Requests inside dialogs the owner has still to answer. */
  private readonly incoming = new Map<ServerTransaction, IncomingRequest>();

  constructor(options: UserAgentCoreOptions) {
    this.transactions = options.transactions;
    this.send = options.send;
    this.localAddress = options.localAddress;
    this.resolve = options.resolve;
    this.clock = options.clock ?? systemClock;
    this.timers = Object.freeze({ t1: options.timers?.t1 ?? 500, t2: options.timers?.t2 ?? 4_000 });
    this.limits = { ...DEFAULT_DIALOG_LIMITS, ...options.limits };
    this.contactUser = options.contactUser;
  }

  /** Live dialogs. */
  get dialogCount(): number {
    return this.dialogs.size;
  }

  /** Everything the core holds (dialogs, INVITEs of ours, calls ringing, requests unanswered): 0 when idle. */
  get size(): number {
    return this.dialogs.size + this.calls.size + this.ringing.size + this.initialInvites.size + this.incoming.size;
  }

  /** A dialog by its id, if live. */
  dialog(id: DialogId): Dialog | undefined {
    return this.dialogs.get(dialogKey(id));
  }

  hasRoom(): boolean {
    return this.dialogs.size < this.limits.maxDialogs;
  }

  /** Sends an INVITE outside any dialog; throws DialogError over the dialog limit. */
  invite(options: InviteOptions): ClientCall {
    if (!this.hasRoom()) throw new DialogError(`${this.limits.maxDialogs} dialogs are live`);
    const call = new ClientCall(this, options);
    this.calls.set(callKey(call.callId, call.localTag), call);
    call.start();
    return call;
  }

  /**
   * Takes an INVITE outside a dialog (a 'request' event the service did not keep) as UAS.
   * Undefined when it was refused: 503 over the dialog limit, 420 for an extension we lack,
   * 400 without a Contact.
   */
  acceptInvite(event: TransactionUserEvent): ServerCall | undefined {
    if (event.type !== 'request' || event.request.method !== 'INVITE') throw new TypeError('Not an INVITE request event');
    const { request, transaction } = event;
    if (tagOf(request.headers, 'To')) throw new TypeError('An INVITE inside a dialog is the dialog\'s');
    const refuse = (status: number, reason?: string, headers: HeaderList = []): undefined => {
      const response = responseTo(request, status, reason, { toTag: newTag() });
      for (const [name, value] of headers) response.headers.add(name, value);
      this.transactions.respond(transaction, response);
      return undefined;
    };
    if (!this.hasRoom()) return refuse(503, undefined, [['Retry-After', String(this.limits.retryAfter)]]);
    const unsupported = unsupportedRequirements(request.headers, SUPPORTED);
    if (unsupported.length > 0) return refuse(420, undefined, [['Unsupported', unsupported.join(', ')]]);
    if (contactUriOf(request.headers) === undefined) return refuse(400, 'Missing Contact');
    const call = new ServerCall(this, event);
    this.registerDialog(call.dialog);
    this.ringing.set(transaction, call);
    this.initialInvites.set(this.initialKey(request), call);
    return call;
  }

  /**
   * A TU event of the transaction layer. True when the core took it: a request inside a
   * dialog (481 when the dialog is unknown), an ACK or a stray 2xx of one of ours, a CANCEL of
   * an INVITE we hold, the end of a transaction we answer. False for the rest (new requests
   * outside dialogs: an INVITE then goes to acceptInvite()).
   */
  receive(event: TransactionUserEvent): boolean {
    switch (event.type) {
      case 'request':
        return this.receiveRequest(event);
      case 'ack': {
        const dialog = this.dialogOf(event.request, 'uas-side');
        dialog?.receiveAck(event.request);
        return dialog !== undefined;
      }
      case 'response':
        return this.receiveStrayResponse(event.response);
      case 'no-ack':
        return false;
      case 'unanswered':
      case 'transport-error': {
        const call = this.ringing.get(event.transaction);
        if (call !== undefined) {
          call.transactionEnded(event.type);
          return true;
        }
        const incoming = this.incoming.get(event.transaction);
        if (incoming === undefined) return false;
        this.incoming.delete(event.transaction);
        incoming.transactionEnded();
        return true;
      }
    }
  }

  private receiveRequest(event: Extract<TransactionUserEvent, { type: 'request' }>): boolean {
    const { request } = event;
    if (request.method === 'CANCEL') {
      const call = event.cancels === undefined ? undefined : this.ringing.get(event.cancels);
      call?.receiveCancel(event.transaction);
      return call !== undefined;
    }
    const toTag = tagOf(request.headers, 'To');
    if (toTag === undefined) return false;
    if (toTag === '') {
      if (request.method !== 'INVITE') return false;
      const call = this.initialInvites.get(this.initialKey(request));
      if (call === undefined) return false;
      this.repeatedInvite(call, event.transaction);
      return true;
    }
    const dialog = this.dialogOf(request, 'uas-side');
    if (dialog === undefined) {
      // 12.2.2: a request for a dialog we do not know.
      this.transactions.respond(event.transaction, responseTo(request, 481, undefined, { toTag: newTag() }));
      return true;
    }
    dialog.receiveRequest(event);
    return true;
  }

  /**
   * The INVITE of a call we hold came again with a new transaction: a retransmission after our
   * transaction ended with the 2xx gets the 2xx again (RFC 6026 fixes this in the transaction
   * layer); otherwise it is a merged request (8.2.2.2).
   */
  private repeatedInvite(call: ServerCall, transaction: ServerTransaction): void {
    if (call.state === 'answered') {
      const { lastResponse } = call.transaction;
      if (lastResponse !== undefined) {
        this.transactions.respond(transaction, lastResponse);
        return;
      }
    }
    this.transactions.respond(transaction, responseTo(transaction.request, 482, undefined, { toTag: newTag() }));
  }

  private receiveStrayResponse(response: SipResponse): boolean {
    let cseq;
    try {
      cseq = parseCSeq(response.headers.get('CSeq') ?? '');
    } catch {
      return false;
    }
    if (cseq.method !== 'INVITE' || response.status < 200 || response.status >= 300) return false;
    const callId = response.headers.get('Call-ID') ?? '';
    const call = this.calls.get(callKey(callId, tagOf(response.headers, 'From') ?? ''));
    if (call !== undefined && call.seq === cseq.seq) {
      call.receiveStraySuccess(response);
      return true;
    }
    const dialog = this.dialogOf(response, 'uac-side');
    dialog?.resendAck(response);
    return dialog !== undefined;
  }

  /** The dialog a message belongs to: of a request the peer sent (To tag ours) or a response to ours (From tag ours). */
  private dialogOf(message: SipRequest | SipResponse, side: 'uas-side' | 'uac-side'): Dialog | undefined {
    const callId = message.headers.get('Call-ID');
    const to = tagOf(message.headers, 'To');
    const from = tagOf(message.headers, 'From');
    if (callId === undefined || !to || from === undefined) return undefined;
    const id = side === 'uas-side' ? { callId, localTag: to, remoteTag: from } : { callId, localTag: from, remoteTag: to };
    return this.dialogs.get(dialogKey(id));
  }

  private initialKey(request: SipRequest): string {
    return [request.headers.get('Call-ID'), tagOf(request.headers, 'From'), request.headers.get('CSeq')].join('\n');
  }

  // ---- what dialogs and calls call ----

  registerDialog(dialog: Dialog): void {
    this.dialogs.set(dialogKey(dialog.id), dialog);
  }

  forgetDialog(dialog: Dialog): void {
    const key = dialogKey(dialog.id);
    if (this.dialogs.get(key) === dialog) this.dialogs.delete(key);
    const call = dialog.serverCall;
    if (call === undefined) return;
    this.settled(call);
    const initial = this.initialKey(call.request);
    if (this.initialInvites.get(initial) === call) this.initialInvites.delete(initial);
  }

  forgetCall(call: ClientCall): void {
    call.stopTimers();
    const key = callKey(call.callId, call.localTag);
    if (this.calls.get(key) === call) this.calls.delete(key);
  }

  /** A server call has its final response: a CANCEL or the transaction's end no longer concern it. */
  settled(call: ServerCall): void {
    if (this.ringing.get(call.transaction) === call) this.ringing.delete(call.transaction);
  }

  track(incoming: IncomingRequest): void {
    this.incoming.set(incoming.transaction, incoming);
  }

  untrack(transaction: ServerTransaction): void {
    this.incoming.delete(transaction);
  }

  contactFor(destination: SipEndpoint): string {
    const local = this.localAddress(destination);
    const host = local.host.includes(':') && !local.host.startsWith('[') ? `[${local.host}]` : local.host;
    const user = this.contactUser === undefined ? '' : `${this.contactUser}@`;
    const transport = local.transport === 'udp' ? '' : `;transport=${local.transport}`;
    return `<sip:${user}${host}:${local.port}${transport}>`;
  }

  /** Our Via (a fresh branch, rport asked for: RFC 3581) and Contact where the method wants one. */
  private stamp(request: SipRequest, destination: SipEndpoint): void {
    const local = this.localAddress(destination);
    const host = local.host.includes(':') && !local.host.startsWith('[') ? `[${local.host}]` : local.host;
    request.headers.remove('Via');
    request.headers.prepend('Via', `SIP/2.0/${local.transport.toUpperCase()} ${host}:${local.port};branch=${newBranch()};rport`);
    if (TARGET_METHODS.has(request.method) && !request.headers.has('Contact')) {
      request.headers.add('Contact', this.contactFor(destination));
    }
  }

  /** Where a request goes: the flow given, else the next hop resolved (synchronously when resolve() is). */
  private destinationOf(nextHop: string, fixed: SipEndpoint | undefined, then: (destination: SipEndpoint) => void,
    fail: (error: unknown) => void): void {
    if (fixed !== undefined) {
      then(fixed);
      return;
    }
    let resolved: SipEndpoint | Promise<SipEndpoint>;
    try {
      resolved = this.resolve(nextHop);
    } catch (error) {
      fail(error);
      return;
    }
    if (resolved instanceof Promise) resolved.then(then, fail);
    else then(resolved);
  }

  sendRequest(request: SipRequest, nextHop: string, fixed: SipEndpoint | undefined, listener: ClientListener,
    started?: (tx: ClientTransaction) => void): void {
    const fail = (error: unknown): void => listener({ type: 'transport-error', error });
    this.destinationOf(nextHop, fixed, (destination) => {
      this.stamp(request, destination);
      let tx: ClientTransaction;
      try {
        tx = this.transactions.request(request, destination, isReliable(destination), listener);
      } catch (error) {
        fail(error);
        return;
      }
      started?.(tx);
    }, fail);
  }

  /** An ACK for a 2xx: no transaction (17.1.1.3); a failure is the peer's timers' business. */
  sendDirect(request: SipRequest, nextHop: string, fixed: SipEndpoint | undefined): void {
    this.destinationOf(nextHop, fixed, (destination) => {
      if (!request.headers.has('Via')) this.stamp(request, destination);
      this.sendTo(request, destination);
    }, () => undefined);
  }

  sendTo(message: SipRequest | SipResponse, destination: SipEndpoint): void {
    try {
      this.send(message, destination);
    } catch {
      // A lost ACK or 2xx retransmission: the retransmission machinery or the peer tries again.
    }
  }
}

function isReliable(destination: SipEndpoint): boolean {
  return destination.transport !== undefined && destination.transport !== 'udp';
}
