/**
 * An INVITE the peer sent us outside any dialog (RFC 3261 13.3), taken by the owner: the early
 * dialog it makes, provisional responses (reliable ones retransmitted until PRACKed, RFC
 * 3262 3), the 2xx (then the dialog retransmits it until the ACK) or a refusal, and CANCEL
 * (9.2) or an early BYE (15.1.2), which end it with 487.
 */
import { randomInt } from 'node:crypto';
import { Dialog, allowsUpdate, type IncomingRequest } from './dialog-inside.js';
import { Emitter } from './dialog-events.js';
import {
  type BodyInput,
  type SessionTerms,
  type SipBody,
  bodyOf,
  contactUriOf,
  hasOptionTag,
  parseRAck,
  parseRSeq,
  routeSetOf,
} from './dialog-messages.js';
import {
  DialogError,
  type DialogHost,
  type HeaderList,
  type ResponseOptions,
  type TerminationReason,
} from './dialog-types.js';
import { parseCSeq } from './headers.js';
import { responseTo, type SipRequest, type SipResponse } from './message.js';
import { newTag, tagOf } from './transaction-matching.js';
import type { ServerTransaction, SipEndpoint, TransactionUserEvent } from './transactions.js';

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
  /** Whether it required 100rel: every provisional response but 100 is then reliable (RFC 3262 3). */
  readonly reliableRequired: boolean;
  private current: ServerCallState = 'ringing';
  private readonly seq: number;
  private nextRSeq = randomInt(1, 2 ** 16);
  /** The reliable provisional response awaiting its PRACK, and those queued behind it (RFC 3262 3). */
  private outstanding: { response: SipResponse; rseq: number } | undefined;
  private readonly queued: SipResponse[] = [];

  constructor(
    private readonly core: DialogHost,
    event: Extract<TransactionUserEvent, { type: 'request' }>,
    pinToSource = false,
    /** What our 2xx grants of a session timer (RFC 4028 9); none without one. */
    private readonly sessionTerms?: SessionTerms,
  ) {
    super();
    this.request = event.request;
    this.transaction = event.transaction;
    this.source = event.source;
    const { headers } = event.request;
    this.seq = parseCSeq(headers.get('CSeq') ?? '').seq;
    this.reliableRequired = hasOptionTag(headers, 'Require', '100rel');
    this.reliableAllowed = this.reliableRequired || hasOptionTag(headers, 'Supported', '100rel');
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
      flow: event.source.flow === undefined && !pinToSource ? undefined : event.source,
    });
    this.dialog.serverCall = this;
    this.dialog.peerAllowsUpdate = allowsUpdate(headers);
    const offer = bodyOf(event.request);
    if (offer !== undefined && offer.contentType.split(';', 1)[0]!.trim().toLowerCase() === 'application/sdp') this.dialog.remoteSdp = offer;
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
   * retransmitted until its PRACK; a second reliable one waits for the first's PRACK. When the
   * INVITE required 100rel, every one is reliable.
   */
  provisional(status: number, options: ProvisionalOptions = {}): boolean {
    if (status <= 100 || status >= 200) throw new RangeError('A provisional status is 101-199');
    if (this.current !== 'ringing') return false;
    if (options.reliable && !this.reliableAllowed) throw new DialogError('The INVITE did not offer 100rel');
    const response = this.response(status, options);
    if (!options.reliable && !this.reliableRequired) return this.core.transactions.respond(this.transaction, response);
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
    const response = this.response(status, { ...options, body }, this.sessionTerms);
    this.core.settled(this);
    this.dialog.confirm();
    const sent = this.core.transactions.respond(this.transaction, response);
    this.dialog.awaitAck(response, this.seq, this.source, true);
    const terms = this.sessionTerms;
    if (terms !== undefined) this.dialog.startSession(terms.interval, terms.refresher === 'uas');
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

  /** The dialog ended while the INVITE was unanswered (a request in it failed, or the owner forgot it): 487. */
  dialogEnded(): void {
    if (this.current !== 'ringing') return;
    this.current = 'cancelled';
    this.stopReliable();
    this.core.settled(this);
    this.core.transactions.respond(this.transaction, responseTo(this.request, 487, undefined,
      { toTag: this.dialog.localTag }));
  }

  /** A BYE in the early dialog: the INVITE gets 487 (15.1.2), as when the dialog ends otherwise. */
  endedByBye(): void {
    this.dialogEnded();
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
    const matches = outstanding !== undefined && rack.rseq === outstanding.rseq && rack.cseq === this.seq;
    if (!matches || rack.method !== 'INVITE') {
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

  private response(status: number, options: ResponseOptions, sessionTerms?: SessionTerms): SipResponse {
    const response = this.dialog.buildResponse(this.request, status, options, this.source, sessionTerms);
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
