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
 *
 * Wiring, as the SIP service and a call engine would:
 *
 *   const core = new UserAgentCore({ transactions: layer, send, localAddress, resolve });
 *   // the layer's TU:   event => core.receive(event) || service.other(event)
 *   // an INVITE the service hands to the call engine:
 *   const inbound = core.acceptInvite(event);          // undefined: refused (503, 420, 400)
 *   inbound.provisional(180);
 *   const outbound = core.invite({ requestUri, from, to, body: inbound.body });
 *   outbound.on('answered', (dialog, response) => {
 *     dialog.ack();
 *     inbound.answer(200, bodyOf(response));
 *   });
 *   outbound.on('failed', () => inbound.reject(480));
 *   inbound.on('cancelled', () => outbound.cancel());
 *
 * The module is split by role: dialog-inside.ts (a dialog and the requests in it),
 * dialog-uac.ts (an INVITE of ours), dialog-uas.ts (an INVITE of the peer's), dialog-messages.ts
 * (pure helpers), dialog-types.ts and dialog-events.ts; everything public is exported here.
 */
import { ClientCall, type InviteOptions } from './dialog-uac.js';
import { Dialog, IncomingRequest } from './dialog-inside.js';
import {
  DEFAULT_CONTENT_TYPE,
  type DialogId,
  callKey,
  contactUriOf,
  dialogKey,
  sessionTermsAsUas,
  unsupportedRequirements,
} from './dialog-messages.js';
import {
  DialogError,
  TARGET_METHODS,
  type DialogHost,
  type DialogTimers,
  type HeaderList,
  type LocalAddress,
  type SessionTimerSettings,
  type TransactionPort,
} from './dialog-types.js';
import { ServerCall } from './dialog-uas.js';
import { parseCSeq } from './headers.js';
import { responseTo, type SipRequest, type SipResponse } from './message.js';
import { newBranch, newTag, tagOf } from './transaction-matching.js';
import {
  systemClock,
  type ClientListener,
  type ClientTransaction,
  type ServerTransaction,
  type SipEndpoint,
  type SipSend,
  type TransactionClock,
  type TransactionUserEvent,
} from './transactions.js';

export { bodyOf, parseReferTo, sipfragStatus } from './dialog-messages.js';
export type { SipBody, BodyInput, DialogId, Replaces, ReferTo } from './dialog-messages.js';
export {
  DialogError,
  type DialogState,
  type DialogTimers,
  type HeaderList,
  type LocalAddress,
  type RequestOptions,
  type RequestOutcome,
  type ResponseOptions,
  type SessionTimerSettings,
  type TerminationReason,
  type TransactionPort,
  DEFAULT_SESSION_TIMER,
} from './dialog-types.js';
export {
  Dialog,
  IncomingRequest,
  type DialogEvents,
  type IncomingRequestEvents,
  type ReferProgress,
} from './dialog-inside.js';
export { ClientCall, type CallFailure, type ClientCallEvents, type InviteOptions } from './dialog-uac.js';
export { ServerCall, type ProvisionalOptions, type ServerCallEvents } from './dialog-uas.js';

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
  /**
   * RFC 4028 session timers (seconds): our INVITEs ask for `expires`, a peer's Session-Expires
   * below `minSE` gets 422, and dialogs end with BYE when the refresher fails to refresh.
   * None by default.
   */
  sessionTimer?: SessionTimerSettings;
}

/**
 * The option tags we support (RFC 3262's 100rel; RFC 3891's replaces, whose header the owner
 * reads: b2bua.ts), and RFC 4028's timer when session timers are on.
 */
const SUPPORTED = ['100rel', 'replaces'];
const SUPPORTED_WITH_TIMER = [...SUPPORTED, 'timer'];

/**
 * The user agent core: makes and takes INVITEs, owns every dialog, and routes the TU events of
 * a transaction layer to them. The SIP service hands it every event first (receive()); what
 * it does not take (new requests outside a dialog) is the service's, an INVITE among them
 * coming back through acceptInvite() when the owner wants the call.
 */
export class UserAgentCore implements DialogHost {
  readonly transactions: TransactionPort;
  readonly clock: TransactionClock;
  readonly timers: Readonly<DialogTimers>;
  readonly sessionTimer: Readonly<SessionTimerSettings> | undefined;
  /** Dialogs ended for want of a session refresh (RFC 4028 10), since the start. */
  sessionsExpired = 0;
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
    const layerTimers = options.transactions.timers;
    this.timers = Object.freeze({
      t1: options.timers?.t1 ?? layerTimers?.t1 ?? 500,
      t2: options.timers?.t2 ?? layerTimers?.t2 ?? 4_000,
    });
    this.limits = { ...DEFAULT_DIALOG_LIMITS, ...options.limits };
    this.contactUser = options.contactUser;
    this.sessionTimer = options.sessionTimer === undefined ? undefined : Object.freeze({ ...options.sessionTimer });
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

  /**
   * Sends an INVITE outside any dialog. Throws DialogError over the dialog limit, TypeError for
   * a Request-URI, From, To or Route that does not read (or a From or To with a tag).
   */
  invite(options: InviteOptions): ClientCall {
    if (!this.hasRoom()) throw new DialogError(`${this.limits.maxDialogs} dialogs are live`);
    const call = new ClientCall(this, options);
    this.calls.set(callKey(call.callId, call.localTag), call);
    call.start();
    return call;
  }

  /**
   * Ends everything, for a shutdown: 503 to the INVITEs we have not answered, CANCEL to ours
   * still unanswered (their early dialogs end with the 487), BYE to every confirmed dialog.
   */
  shutdown(): void {
    for (const call of [...this.ringing.values()]) call.reject(503);
    for (const call of [...this.calls.values()]) call.cancel();
    for (const dialog of [...this.dialogs.values()]) if (dialog.state === 'confirmed') dialog.endWithBye('shutdown');
  }

  /**
   * Takes an INVITE outside a dialog (a 'request' event the service did not keep) as UAS.
   * Undefined when it was refused: 503 over the dialog limit, 420 for an extension we lack,
   * 400 without a Contact, 415 for a body that is not SDP. With `pinToSource`, the dialog's
   * requests go where the INVITE came from rather than to its Contact (a caller behind NAT).
   */
  acceptInvite(event: TransactionUserEvent, options: { pinToSource?: boolean } = {}): ServerCall | undefined {
    if (event.type !== 'request' || event.request.method !== 'INVITE') {
      throw new TypeError('Not an INVITE request event');
    }
    const { request, transaction } = event;
    if (tagOf(request.headers, 'To')) throw new TypeError('An INVITE inside a dialog is the dialog\'s');
    const refuse = (status: number, reason?: string, headers: HeaderList = []): undefined => {
      const response = responseTo(request, status, reason, { toTag: newTag() });
      for (const [name, value] of headers) response.headers.add(name, value);
      this.transactions.respond(transaction, response);
      return undefined;
    };
    if (!this.hasRoom()) return refuse(503, undefined, [['Retry-After', String(this.limits.retryAfter)]]);
    const unsupported = unsupportedRequirements(request.headers, this.sessionTimer ? SUPPORTED_WITH_TIMER : SUPPORTED);
    if (unsupported.length > 0) return refuse(420, undefined, [['Unsupported', unsupported.join(', ')]]);
    if (contactUriOf(request.headers) === undefined) return refuse(400, 'Missing Contact');
    let sessionTerms;
    if (this.sessionTimer !== undefined) {
      // RFC 4028 9: too short a Session-Expires gets 422 with our Min-SE (the caller tries again with it).
      try {
        sessionTerms = sessionTermsAsUas(request.headers, this.sessionTimer);
      } catch {
        return refuse(400, 'Bad Request (unreadable Session-Expires or Min-SE)');
      }
      if ('tooSmall' in sessionTerms) return refuse(422, undefined, [['Min-SE', String(sessionTerms.tooSmall)], ['Supported', 'timer']]);
    }
    // The only body an INVITE may carry here is an SDP offer (RFC 3261 8.2.3; after RFC 4475 3.3.6).
    const type = request.headers.get('Content-Type');
    if (request.body.length > 0 && type !== undefined && type.split(';', 1)[0]!.trim().toLowerCase() !== DEFAULT_CONTENT_TYPE) {
      return refuse(415, undefined, [['Accept', DEFAULT_CONTENT_TYPE]]);
    }
    const call = new ServerCall(this, event, options.pinToSource === true, sessionTerms);
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
      if (event.cancels === undefined) return false;
      const call = this.ringing.get(event.cancels);
      if (call !== undefined) {
        call.receiveCancel(event.transaction);
        return true;
      }
      // A re-INVITE the owner holds: 487 to it, and the owner is told (its answer would be too late).
      const incoming = this.incoming.get(event.cancels);
      if (incoming === undefined) return false;
      this.incoming.delete(event.cancels);
      this.transactions.acceptCancel(event.transaction);
      incoming.cancelled();
      return true;
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

  /** The dialog of a request the peer sent (the To tag is ours) or of a response to ours (the From tag is). */
  private dialogOf(message: SipRequest | SipResponse, side: 'uas-side' | 'uac-side'): Dialog | undefined {
    const callId = message.headers.get('Call-ID');
    const to = tagOf(message.headers, 'To');
    const from = tagOf(message.headers, 'From');
    if (callId === undefined || !to || from === undefined) return undefined;
    const id =
      side === 'uas-side' ? { callId, localTag: to, remoteTag: from } : { callId, localTag: from, remoteTag: to };
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

  sessionExpired(_dialog: Dialog): void {
    this.sessionsExpired += 1;
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
    const sentBy = `${host}:${local.port}`;
    request.headers.prepend('Via', `SIP/2.0/${local.transport.toUpperCase()} ${sentBy};branch=${newBranch()};rport`);
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
