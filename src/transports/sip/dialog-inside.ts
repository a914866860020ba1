/**
 * A SIP dialog (RFC 3261 12), early or confirmed, in either role, and the requests the peer
 * sends inside it. Requests go to the remote target by the route set (12.2.1.1); a request
 * from the peer is checked against the remote CSeq (12.2.2) and passed to the owner, but for
 * BYE and PRACK (answered here) and the crossings of INVITEs and UPDATEs (491 or 500, 14.2,
 * RFC 3311 5.2). The 2xx to an INVITE and its ACK are handled end to end here, both ways
 * (13.2.2.4, 13.3.1.4): ours is retransmitted until the ACK, the peer's ACKed again each time
 * it comes again, and neither waits longer than 64*T1.
 */
import { randomInt } from 'node:crypto';
import { Emitter } from './dialog-events.js';
import {
  type BodyInput,
  type DialogId,
  type Replaces,
  type SipBody,
  bodyOf,
  contactUriOf,
  formatReferTo,
  parseEventHeader,
  parseMinSE,
  parseSessionExpires,
  parseSubscriptionState,
  requestTarget,
  routeSetOf,
  sessionTermsAsUas,
  sessionTermsHeaders,
  setBody,
  sipfrag,
  sipfragStatus,
  toBody,
  type SessionTerms,
} from './dialog-messages.js';
import {
  ALLOW,
  DialogError,
  TARGET_METHODS,
  type DialogHost,
  type DialogState,
  type HeaderList,
  type RequestOptions,
  type RequestOutcome,
  type ResponseOptions,
  type TerminationReason,
} from './dialog-types.js';
import type { ServerCall } from './dialog-uas.js';
import { SipHeaders, parseCSeq } from './headers.js';
import { REASON_PHRASES, SIP_VERSION, responseTo, type SipRequest, type SipResponse } from './message.js';
import type {
  ClientEvent,
  ClientTransaction,
  ServerTransaction,
  SipEndpoint,
  TransactionUserEvent,
} from './transactions.js';
import { parseNameAddr, type NameAddr } from './uri.js';
import { trimLws } from './lexer.js';

/** The methods whose bodies are offers and answers (RFC 3264, RFC 3262, RFC 3311). */
const SDP_METHODS: ReadonlySet<string> = new Set(['INVITE', 'UPDATE', 'PRACK', 'ACK']);

/** A body that is SDP, else undefined. */
function sdpBody(body: SipBody | undefined): SipBody | undefined {
  return body !== undefined && body.contentType.split(';', 1)[0]!.trim().toLowerCase() === 'application/sdp' ? body : undefined;
}

/** Whether a message's Allow lists UPDATE (the peer takes it: RFC 4028 7.4 refreshes with it). */
export function allowsUpdate(headers: SipHeaders): boolean {
  return headers.getAll('Allow').some((method) => trimLws(method).toUpperCase() === 'UPDATE');
}

export type DialogEvents = {
  /** A request inside the dialog, to answer with incoming.respond() (BYE and PRACK are answered by the layer). */
  request: [incoming: IncomingRequest];
  /** The ACK of a 2xx we sent (the initial INVITE's or a re-INVITE's), with its body if any. */
  ack: [body: SipBody | undefined];
  /** A BYE the peer sent, answered 200 by the layer; `terminated` follows. */
  bye: [request: SipRequest];
  /** A NOTIFY of a REFER we sent (answered 200 by the layer), or its subscription's expiry. */
  referProgress: [progress: ReferProgress];
  terminated: [reason: TerminationReason];
};

/** What a NOTIFY of a REFER's implicit subscription told (RFC 3515 2.4.5). */
export interface ReferProgress {
  /** The REFER's CSeq number, which names its subscription (RFC 3515 2.4.6). */
  id: string;
  /** The status line of the sipfrag, when it held one. */
  status: number | undefined;
  reason: string;
  /** The subscription ended: a final NOTIFY, or none came in time (then `request` is undefined). */
  final: boolean;
  request: SipRequest | undefined;
}

/** The duration a REFER's subscription is granted for in our NOTIFYs, and assumed when theirs say none (seconds). */
const REFER_EXPIRES = 60;

/** RFC 4488: `Refer-Sub: false` asks for (or grants) a REFER without a subscription. */
function withoutSubscription(headers: SipHeaders): boolean {
  return headers.get('Refer-Sub')?.trim().toLowerCase() === 'false';
}

export type IncomingRequestEvents = {
  /** The peer cancelled it (a re-INVITE): the layer answered 487; a response of the owner's is too late. */
  cancelled: [];
};

/** A request the peer sent inside a dialog. */
export class IncomingRequest extends Emitter<IncomingRequestEvents> {
  private final = false;
  /** What a 2xx to this re-INVITE or UPDATE grants of a session timer (RFC 4028 9), when there is one. */
  sessionTerms: SessionTerms | undefined;

  constructor(
    private readonly core: DialogHost,
    readonly dialog: Dialog,
    readonly request: SipRequest,
    readonly transaction: ServerTransaction,
    readonly source: SipEndpoint,
  ) {
    super();
  }

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
    const response = this.dialog.buildResponse(this.request, status, options, this.source, this.sessionTerms);
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

  /** CANCEL (9.2), which the core honoured: 487 went to the request. */
  cancelled(): void {
    this.transactionEnded();
    this.emit('cancelled');
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
  /** The peer's address (name, URI, parameters) as its From or To reads. */
  get remoteAddress(): NameAddr {
    return parseNameAddr(this.remoteParty);
  }

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
  /** The transaction of our re-INVITE in progress, for cancelInvite(). */
  private inviteTransaction: ClientTransaction | undefined;
  /** A re-INVITE of the peer's not yet answered, or answered 2xx and not yet acknowledged. */
  private incomingInvite: IncomingRequest | undefined;
  /** The peer's requests the owner has not answered yet: a BYE answers them 487 (15.1.2). */
  private readonly unanswered = new Set<IncomingRequest>();
  /** The subscriptions of REFERs we sent, by id, until their final NOTIFY (or their expiry). */
  private readonly referSubscriptions = new Set<string>();
  /** The subscriptions of REFERs we accepted, by id, until our final NOTIFY. */
  private readonly referNotifiers: string[] = [];
  private awaited: AwaitedAck | undefined;
  /** A 2xx to our INVITE the owner has still to acknowledge (dialog.ack). */
  private ackDue: number | undefined;
  /** The ACK we sent last, resent when its 2xx comes again. */
  private lastAck: { cseq: number; ack: SipRequest } | undefined;
  /** RFC 3262: the RSeq of the last reliable provisional response we took in this early dialog. */
  lastRSeq: number | undefined;
  /** The last SDP we sent and the last the peer sent, in offers and answers that stood (what a refresh re-sends). */
  localSdp: SipBody | undefined;
  remoteSdp: SipBody | undefined;
  /** The peer's Allow lists UPDATE: our session refreshes go as UPDATE (RFC 4028 7.4), until it refuses one. */
  peerAllowsUpdate = false;
  /** RFC 4028: the session interval (seconds) and whether we refresh it; undefined without a session timer. */
  private session: { interval: number; local: boolean } | undefined;
  /** The largest Min-SE a 422 of the peer's asked for. */
  private peerMinSE = 0;

  constructor(
    private readonly core: DialogHost,
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

  /** Whether we acknowledged a 2xx in this dialog (its retransmissions are acknowledged again). */
  get acknowledged(): boolean {
    return this.lastAck !== undefined;
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
      if (this.current === 'early') {
        return Promise.reject(new DialogError('No re-INVITE in an early dialog: use UPDATE'));
      }
      // 14.1: no second INVITE while one is in progress either way.
      if (this.outgoingInvite || this.incomingInvite !== undefined || this.ackPending) {
        return Promise.reject(new DialogError('An INVITE transaction of this dialog is in progress'));
      }
    }
    const cseq = ++this.localSeq;
    const refresh = (method === 'INVITE' || method === 'UPDATE') && this.current === 'confirmed';
    if (refresh && this.session !== undefined && !(options.headers ?? []).some(([name]) => /^(session-expires|x)$/i.test(name))) {
      // Every re-INVITE and UPDATE refreshes the session (RFC 4028 7.4): it says so.
      options = { ...options, headers: [...this.sessionHeaders(), ...(options.headers ?? [])] };
    }
    const request = this.buildRequest(method, cseq, options);
    const target = requestTarget(this.routeSet, this.remoteTarget);
    if (method === 'INVITE') this.outgoingInvite = true;
    if (method === 'UPDATE') this.outgoingUpdate = true;
    // A BYE ends the dialog as it leaves (15.1.1): nothing else goes in it after.
    if (method === 'BYE') this.terminate('local-bye');
    return new Promise((resolve) => {
      const started = (tx: ClientTransaction): void => {
        if (method === 'INVITE') this.inviteTransaction = tx;
      };
      this.core.sendRequest(request, target.nextHop, this.flow, (event) => {
        if (event.type === 'provisional') return;
        if (method === 'INVITE') this.inviteTransaction = undefined;
        resolve(this.requestEnded(method, cseq, event, options, sdpBody(bodyOf(request))));
      }, started);
    });
  }

  /** CANCEL of our re-INVITE in progress (9.1): it then ends with 487. False when there is none to cancel. */
  cancelInvite(): boolean {
    const tx = this.inviteTransaction;
    return tx !== undefined && this.core.transactions.cancel(tx);
  }

  private requestEnded(method: string, cseq: number, event: Exclude<ClientEvent, { type: 'provisional' }>,
    options: RequestOptions, offered: SipBody | undefined): RequestOutcome {
    if (method === 'INVITE') this.outgoingInvite = false;
    if (method === 'UPDATE') this.outgoingUpdate = false;
    if (event.type === 'timeout' || event.type === 'transport-error') {
      this.terminate(event.type === 'timeout' ? 'timeout' : 'transport');
      return event.type === 'timeout' ? { kind: 'timeout' } : { kind: 'transport', error: event.error };
    }
    const { response } = event;
    const success = response.status >= 200 && response.status < 300;
    if (success && method === 'INVITE' && this.current === 'terminated') {
      // A re-INVITE answered after the dialog ended (a BYE crossed it): its 2xx is still acknowledged.
      this.ackDue = cseq;
      this.ack();
    }
    // A NOTIFY's 481 or 408 ends its subscription only, not the dialog (RFC 5057 5.1).
    if ((response.status === 481 || response.status === 408) && method !== 'NOTIFY') this.terminate('gone');
    else if (response.status === 422 && (method === 'INVITE' || method === 'UPDATE')) this.takeMinSE(response);
    else if (success && this.current !== 'terminated') {
      if (TARGET_METHODS.has(method)) this.refreshTarget(response.headers);
      if (SDP_METHODS.has(method)) {
        this.localSdp = offered ?? this.localSdp;
        this.remoteSdp = sdpBody(bodyOf(response)) ?? this.remoteSdp;
      }
      if ((method === 'INVITE' || method === 'UPDATE') && this.current === 'confirmed') this.takeSession(response);
      if (method === 'REFER' && !withoutSubscription(response.headers)) {
        // RFC 6665 4.1.2.4: the first NOTIFY is due within 64*T1 of the 2xx.
        this.watchRefer(String(cseq), 64 * this.core.timers.t1);
      }
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
    this.localSdp = sdpBody(bodyOf(ack)) ?? this.localSdp;
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
   * A NOTIFY of the implicit subscription of a REFER we accepted with a 2xx (RFC 3515 2.4.4):
   * the referred request's progress as a sipfrag. `referCseq` names the REFER (by default the
   * last one accepted); a final status ends its subscription. Rejects when there is none.
   */
  notifyRefer(status: number, options: { reason?: string; referCseq?: number } = {}): Promise<RequestOutcome> {
    const id = options.referCseq === undefined ? this.referNotifiers.at(-1) : String(options.referCseq);
    const index = id === undefined ? -1 : this.referNotifiers.indexOf(id);
    if (index < 0) return Promise.reject(new DialogError('No subscription of a REFER to notify'));
    const reason = options.reason ?? REASON_PHRASES[status] ?? '';
    const event = `refer;id=${id}`;
    const final = status >= 200;
    if (final && this.current !== 'terminated') this.referNotifiers.splice(index, 1);
    const state = final ? 'terminated;reason=noresource' : `active;expires=${REFER_EXPIRES}`;
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

  buildResponse(request: SipRequest, status: number, options: ResponseOptions, source: SipEndpoint,
    sessionTerms?: SessionTerms): SipResponse {
    const response = responseTo(request, status, options.reason, { toTag: this.localTag });
    if (status > 100 && status < 300 && TARGET_METHODS.has(request.method)) {
      response.headers.add('Contact', this.core.contactFor(source));
    }
    if (request.method === 'INVITE' && status >= 200 && status < 300) response.headers.add('Allow', ALLOW);
    if (sessionTerms !== undefined && status >= 200 && status < 300) {
      response.headers.add('Supported', 'timer');
      for (const [name, value] of sessionTermsHeaders(sessionTerms)) response.headers.add(name, value);
    }
    for (const [name, value] of options.headers ?? []) response.headers.add(name, value);
    setBody(response, toBody(options.body, options.contentType));
    if (status > 100 && status < 300 && SDP_METHODS.has(request.method)) {
      this.localSdp = sdpBody(bodyOf(response)) ?? this.localSdp;
    }
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
        for (const pending of [...this.unanswered]) pending.respond(487);
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
        if (!this.negotiateSession(incoming)) return;
        this.incomingInvite = incoming;
        break;
      case 'NOTIFY':
        if (this.receiveReferNotify(incoming)) return;
        break;
      case 'UPDATE':
        // RFC 3311 5.2: an UPDATE crossing ours is glare as for re-INVITEs.
        if (this.outgoingUpdate) {
          incoming.respond(491);
          return;
        }
        if (!this.negotiateSession(incoming)) return;
        break;
      default:
        break;
    }
    this.core.track(incoming);
    this.unanswered.add(incoming);
    if (this.listenerCount('request') === 0) {
      incoming.respond(501);
      return;
    }
    this.emit('request', incoming);
  }

  /** Called once an incoming request has its final response (undefined: the transaction ended without one). */
  answeredIncoming(incoming: IncomingRequest, response: SipResponse | undefined): void {
    this.unanswered.delete(incoming);
    const success = response !== undefined && response.status >= 200 && response.status < 300;
    if (success && TARGET_METHODS.has(incoming.method)) this.refreshTarget(incoming.request.headers);
    if (success && SDP_METHODS.has(incoming.method)) this.remoteSdp = sdpBody(incoming.body) ?? this.remoteSdp;
    // A refresh of the peer's (RFC 4028 9): the interval starts again, with the refresher granted.
    const terms = incoming.sessionTerms;
    if (success && terms !== undefined) this.startSession(terms.interval, terms.refresher === 'uas');
    if (success && incoming.method === 'REFER' && !withoutSubscription(incoming.request.headers)) {
      this.referNotifiers.push(String(parseCSeq(incoming.request.headers.get('CSeq') ?? '').seq));
    }
    if (incoming !== this.incomingInvite) return;
    if (success && this.current !== 'terminated') {
      const seq = parseCSeq(incoming.request.headers.get('CSeq') ?? '').seq;
      this.awaitAck(response, seq, incoming.source, false);
    }
    this.incomingInvite = undefined;
  }

  /**
   * A NOTIFY of the `refer` package (RFC 3515 2.4.4): matched to the subscription of a REFER
   * of ours by its id (RFC 6665 4.1.3: 481 when none), answered 200 and reported. False for
   * a NOTIFY of another package, which is the owner's.
   */
  private receiveReferNotify(incoming: IncomingRequest): boolean {
    const { headers } = incoming.request;
    let event;
    let state;
    try {
      event = parseEventHeader(headers.get('Event') ?? '');
      if (event.package !== 'refer') return false;
      state = parseSubscriptionState(headers.get('Subscription-State') ?? '');
    } catch {
      incoming.respond(400);
      return true;
    }
    const only = this.referSubscriptions.size === 1 ? [...this.referSubscriptions][0] : undefined;
    const id = event.id ?? only;
    if (id === undefined || !this.referSubscriptions.has(id)) {
      incoming.respond(481, { reason: 'Subscription Does Not Exist' });
      return true;
    }
    const final = state.state === 'terminated';
    if (final) {
      this.referSubscriptions.delete(id);
      this.stopTimer(`refer-${id}`);
    } else this.watchRefer(id, (state.expires ?? REFER_EXPIRES) * 1000);
    incoming.respond(200);
    const frag = sipfragStatus(incoming.body);
    const { request } = incoming;
    this.emit('referProgress', { id, status: frag?.status, reason: frag?.reason ?? '', final, request });
    return true;
  }

  /** A REFER subscription lives until its final NOTIFY, or until it expires without one. */
  private watchRefer(id: string, ms: number): void {
    this.referSubscriptions.add(id);
    this.startTimer(`refer-${id}`, ms, () => {
      this.referSubscriptions.delete(id);
      this.emit('referProgress', { id, status: undefined, reason: 'expired', final: true, request: undefined });
    });
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
    this.remoteSdp = sdpBody(body) ?? this.remoteSdp;
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
    this.peerAllowsUpdate = allowsUpdate(response.headers);
    this.remoteSdp = sdpBody(bodyOf(response)) ?? this.remoteSdp;
    this.takeSession(response);
  }

  // ---- RFC 4028 session timers ----

  /** The session timer in force: its interval in seconds and who refreshes; undefined when there is none. */
  get sessionTimer(): { interval: number; refresher: 'local' | 'remote' } | undefined {
    const session = this.session;
    return session === undefined ? undefined : { interval: session.interval, refresher: session.local ? 'local' : 'remote' };
  }

  /**
   * The session interval starts (again): as refresher we refresh at half of it (RFC 4028 10),
   * and give up when a whole interval passes without one going through; otherwise, no refresh
   * by the interval minus the smaller of 32 s and a third of it ends the dialog with BYE.
   */
  startSession(interval: number, local: boolean): void {
    if (this.current === 'terminated' || this.core.sessionTimer === undefined) return;
    this.session = { interval, local };
    const ms = interval * 1000;
    if (local) {
      this.stopTimer('session-expiry');
      this.startTimer('session-refresh', ms / 2, () => this.refreshSession());
      this.startTimer('session-guard', ms, () => this.expireSession());
    } else {
      this.stopTimer('session-refresh');
      this.stopTimer('session-guard');
      this.startTimer('session-expiry', ms - Math.min(32_000, ms / 3), () => this.expireSession());
    }
  }

  private stopSession(): void {
    this.session = undefined;
    this.stopTimer('session-refresh');
    this.stopTimer('session-guard');
    this.stopTimer('session-expiry');
  }

  /**
   * The 2xx to an INVITE or UPDATE of ours (RFC 4028 7.2): its Session-Expires sets the
   * interval and the refresher. Without one the peer does not run the timer: as refresher we
   * go on refreshing (a refresh is a plain re-INVITE or UPDATE any UA answers, and tells us
   * the peer is still there); otherwise there is no session expiry any more.
   */
  takeSession(response: SipResponse): void {
    if (this.core.sessionTimer === undefined) return;
    let granted;
    try {
      const value = response.headers.get('Session-Expires');
      granted = value === undefined ? undefined : parseSessionExpires(value);
    } catch {
      granted = undefined;
    }
    if (granted !== undefined) this.startSession(granted.delta, granted.refresher !== 'uas');
    else if (this.session?.local) this.startSession(this.session.interval, true);
    else this.stopSession();
  }

  /** A 422 to our INVITE or UPDATE (RFC 4028 7.4): the next ones ask for at least its Min-SE. */
  private takeMinSE(response: SipResponse): void {
    try {
      this.peerMinSE = Math.max(this.peerMinSE, parseMinSE(response.headers.get('Min-SE') ?? ''));
    } catch {
      return;
    }
    if (this.session !== undefined) this.session.interval = Math.max(this.session.interval, this.peerMinSE);
  }

  /** What a re-INVITE or UPDATE of ours says of the session: the interval, the refresher kept, our Min-SE. */
  private sessionHeaders(): Array<[string, string]> {
    const session = this.session!;
    const minSE = Math.max(this.core.sessionTimer?.minSE ?? 0, this.peerMinSE);
    return [
      ['Session-Expires', `${Math.max(session.interval, minSE)};refresher=${session.local ? 'uac' : 'uas'}`],
      ['Min-SE', String(minSE)],
      ['Supported', 'timer'],
    ];
  }

  /**
   * RFC 4028 9 for a re-INVITE or UPDATE of the peer's in a confirmed dialog: 422 with our
   * Min-SE for too short an interval, 400 for headers that do not read; else the terms its 2xx
   * will grant. False when it was answered here.
   */
  private negotiateSession(incoming: IncomingRequest): boolean {
    const settings = this.core.sessionTimer;
    if (settings === undefined || this.current !== 'confirmed') return true;
    let terms;
    try {
      terms = sessionTermsAsUas(incoming.request.headers, settings);
    } catch {
      incoming.respond(400, { reason: 'Bad Request (unreadable Session-Expires or Min-SE)' });
      return false;
    }
    if ('tooSmall' in terms) {
      incoming.respond(422, { headers: [['Min-SE', String(terms.tooSmall)], ['Supported', 'timer']] });
      return false;
    }
    incoming.sessionTerms = terms;
    return true;
  }

  /**
   * Our refresh (RFC 4028 7.4, 10): UPDATE without a body when the peer takes UPDATE, else a
   * re-INVITE with the SDP we sent last, unchanged (same origin and version: RFC 3264 8). An
   * offer-answer in progress either way refreshes when it succeeds, so the refresh waits; a
   * refused one is tried again shortly (at once for a 422 that raised the interval, or an
   * UPDATE refused as unknown, then as re-INVITE) until the session guard gives up.
   */
  private refreshSession(): void {
    const session = this.session;
    if (this.current !== 'confirmed' || session === undefined || !session.local) return;
    const later = (ms: number): void => this.startTimer('session-refresh', ms, () => this.refreshSession());
    if (this.outgoingInvite || this.outgoingUpdate || this.incomingInvite !== undefined || this.ackPending) {
      later(2_000);
      return;
    }
    const update = this.peerAllowsUpdate;
    const minBefore = this.peerMinSE;
    this.request(update ? 'UPDATE' : 'INVITE', update ? {} : { body: this.localSdp }).then((outcome) => {
      if (outcome.kind !== 'response' || this.current !== 'confirmed') return;
      const { status } = outcome.response;
      if (status < 300) return;
      if (update && (status === 405 || status === 501)) {
        this.peerAllowsUpdate = false;
        later(0);
      } else later(status === 422 && this.peerMinSE > minBefore ? 0 : 2_000 + randomInt(2_000));
    }, () => undefined);
  }

  /** No refresh in time (RFC 4028 10): BYE, and the owner hears `terminated` with 'session-expired'. */
  private expireSession(): void {
    if (this.current !== 'confirmed') return;
    this.core.sessionExpired(this);
    this.endWithBye('session-expired');
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
    // An early dialog of ours as UAS that ends (its peer gone, say) takes its INVITE along.
    this.serverCall?.dialogEnded();
    this.emit('terminated', reason);
  }

  /** Starts (or restarts) a named timer; none starts on a terminated dialog, which keeps none. */
  startTimer(name: string, delayMs: number, fire: () => void): void {
    this.stopTimer(name);
    if (this.current === 'terminated') return;
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
