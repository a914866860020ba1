/**
 * An INVITE we send outside any dialog, and the dialogs it makes (RFC 3261 13.2): an early
 * dialog per To tag of the provisional responses (forking gives several), PRACK for the
 * reliable ones (RFC 3262), a confirmed dialog per 2xx, which the owner acknowledges; further
 * 2xx are taken for 64*T1 after the first (RFC 6026 timer M) and, unless the owner wants every
 * fork, acknowledged and ended with BYE by the layer.
 */
import { Dialog } from './dialog-inside.js';
import { Emitter } from './dialog-events.js';
import {
  type BodyInput,
  contactUriOf,
  bodyOf,
  formatRAck,
  hasOptionTag,
  parseMinSE,
  parseRSeq,
  routeSetOf,
  setBody,
  toBody,
} from './dialog-messages.js';
import { ALLOW, type DialogHost, type HeaderList } from './dialog-types.js';
import { answerChallenge, type DigestClientCredentials } from './digest-client.js';
import { SipHeaders } from './headers.js';
import { SIP_VERSION, type SipRequest, type SipResponse } from './message.js';
import { newTag, tagOf } from './transaction-matching.js';
import type { ClientEvent, ClientTransaction, SipEndpoint } from './transactions.js';
import { parseNameAddr, parseUri } from './uri.js';

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
  /**
   * Send the dialogs' later requests (ACK, BYE, re-INVITE) to `destination` too, not to the
   * callee's Contact: a device behind NAT is reached only where its packets come from.
   */
  pinDestination?: boolean;
  /** Say `Supported: 100rel` (RFC 3262); true by default. */
  supported100rel?: boolean;
  /** Say `Require: 100rel`: every provisional response must then come reliably. */
  require100rel?: boolean;
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
  /**
   * Credentials for a 401 or 407 (RFC 3261 22.2): the INVITE is sent again once, with a new
   * CSeq and the same Call-ID and From tag, answering the challenge. Given only for a request
   * toward the trunk they belong to: never to whoever happens to challenge.
   */
  credentials?: DigestClientCredentials;
  /**
   * The servers to try after `destination` (RFC 3263 4.3): when it fails (a timeout, a
   * transport error or a 503) before any 2xx, the INVITE goes as a new transaction (a new
   * branch, the same CSeq) to the first of these not tried yet. Read when needed (DNS).
   */
  alternates?: () => Promise<SipEndpoint[]>;
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

/** The owner's addresses are read before anything is built: a bad one is the owner's error, thrown at once. */
function checkAddresses(options: InviteOptions): void {
  try {
    parseUri(options.requestUri);
    for (const address of [options.from, options.to]) {
      if (parseNameAddr(address).params.has('tag')) throw new TypeError(`"${address}": no tag, the layer adds ours`);
    }
    for (const [name, value] of options.headers ?? []) if (name.toLowerCase() === 'route') parseNameAddr(value);
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new TypeError(`A bad address for an INVITE: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** How many early dialogs one INVITE may make (one per To tag): a forking proxy gone wild stops there. */
const MAX_EARLY_DIALOGS = 16;

/** An INVITE of ours and the dialogs it makes (13.2). */
export class ClientCall extends Emitter<ClientCallEvents> {
  readonly callId: string;
  readonly localTag: string;
  /** The INVITE sent last (a challenged one is sent again with credentials, 22.2). */
  request: SipRequest;
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
  /** The CSeq of the INVITE sent last. */
  seq: number;
  /** The INVITE was sent again with credentials: a second challenge is a failure. */
  private authenticated = false;
  /** The INVITE was sent again after a 422 (RFC 4028 7.4): a second one is a failure. */
  private sessionRetried = false;
  /** Where the INVITE goes now, and where it went (RFC 3263 failover). */
  private destination: SipEndpoint | undefined;
  private readonly tried: SipEndpoint[] = [];

  constructor(
    private readonly core: DialogHost,
    private readonly options: InviteOptions,
  ) {
    super();
    checkAddresses(options);
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
    if (options.require100rel) headers.add('Require', '100rel');
    else if (options.supported100rel !== false) headers.add('Supported', '100rel');
    const session = core.sessionTimer;
    if (session !== undefined && !(options.headers ?? []).some(([name]) => /^(session-expires|x)$/i.test(name))) {
      // RFC 4028 7.1: we support session timers and ask for ours; the UAS picks the refresher.
      headers.add('Supported', 'timer');
      headers.add('Session-Expires', String(Math.max(session.expires, session.minSE)));
      headers.add('Min-SE', String(session.minSE));
    }
    for (const [name, value] of options.headers ?? []) headers.add(name, value);
    this.request = {
      kind: 'request', method: 'INVITE', uri: options.requestUri, version: SIP_VERSION, headers, body: Buffer.alloc(0),
    };
    setBody(this.request, toBody(options.body, options.contentType));
    this.destination = options.destination;
    if (options.destination !== undefined) this.tried.push(options.destination);
  }

  /** Whether the INVITE is still without an outcome, was answered (a 2xx reported), or failed. */
  get outcome(): 'pending' | 'answered' | 'failed' {
    if (this.answered.size > 0) return 'answered';
    return this.settled ? 'failed' : 'pending';
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
    this.core.sendRequest(this.request, nextHop, this.destination, listener, (tx) => {
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
    if (event.type === 'final' && this.sendAgainWithCredentials(event.response)) return;
    if (event.type === 'final' && this.sendAgainWithMinSE(event.response)) return;
    if (this.mayFailOver(event)) {
      void this.failOver(event);
      return;
    }
    this.fail(event);
  }

  /** The INVITE's end without a 2xx: its dialogs end, and the owner hears why. */
  private fail(event: Exclude<ClientEvent, { type: 'provisional' }>): void {
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

  /**
   * Answers a 401/407 once when credentials were given: the early dialogs of the challenged
   * INVITE end with it, and the same INVITE goes again with CSeq + 1, a new branch (stamped by
   * the core) and the Authorization or Proxy-Authorization. False when it is not to be answered.
   */
  private sendAgainWithCredentials(response: SipResponse): boolean {
    const credentials = this.options.credentials;
    if (credentials === undefined || this.authenticated || this.cancelRequested) return false;
    const answer = answerChallenge(response, { method: 'INVITE', uri: this.request.uri, credentials });
    if (answer === undefined) return false;
    this.authenticated = true;
    this.sendAgain((headers) => headers.set(answer[0], answer[1]));
    return true;
  }

  /**
   * The same INVITE again as a new transaction with CSeq + 1 (a new branch, stamped by the
   * core), `change` applied to its headers; the early dialogs of the last one end.
   */
  private sendAgain(change: (headers: SipRequest['headers']) => void): void {
    for (const dialog of this.byTag.values()) dialog.terminate('rejected');
    this.byTag.clear();
    const headers = this.request.headers.clone();
    headers.remove('Via');
    this.seq += 1;
    headers.set('CSeq', `${this.seq} INVITE`);
    change(headers);
    this.request = { ...this.request, headers };
    this.transaction = undefined;
    this.start();
  }

  /**
   * RFC 4028 7.4: a 422 (Session Interval Too Small) to an INVITE that asked for a session
   * timer is answered once by the same INVITE (CSeq + 1) asking for the Min-SE it gave.
   */
  private sendAgainWithMinSE(response: SipResponse): boolean {
    if (response.status !== 422 || this.sessionRetried || this.cancelRequested) return false;
    const asked = this.request.headers.get('Session-Expires');
    if (asked === undefined) return false;
    let min: number;
    try {
      min = parseMinSE(response.headers.get('Min-SE') ?? '');
    } catch {
      return false;
    }
    this.sessionRetried = true;
    const current = Number.parseInt(asked, 10);
    this.sendAgain((headers) => {
      headers.set('Session-Expires', String(Number.isFinite(current) ? Math.max(current, min) : min));
      headers.set('Min-SE', String(min));
    });
    return true;
  }

  /** RFC 3263 4.3: a server that timed out, failed to take the request, or said 503 is left for the next. */
  private mayFailOver(event: Exclude<ClientEvent, { type: 'provisional' }>): boolean {
    if (this.options.alternates === undefined || this.cancelRequested || this.answered.size > 0 || this.settled) return false;
    return event.type === 'timeout' || event.type === 'transport-error' || (event.type === 'final' && event.response.status === 503);
  }

  /** The same INVITE (a new branch, stamped by the core) to the next server not tried; else the failure stands. */
  private async failOver(event: Exclude<ClientEvent, { type: 'provisional' }>): Promise<void> {
    // Ended: a CANCEL meanwhile has nothing to cancel until the next one starts.
    this.transaction = undefined;
    let next: SipEndpoint | undefined;
    try {
      const hops = await this.options.alternates!();
      next = hops.find((hop) => !this.tried.some((tried) => sameHop(tried, hop)));
    } catch {
      next = undefined;
    }
    if (next === undefined || this.cancelRequested) {
      this.fail(event);
      return;
    }
    this.tried.push(next);
    for (const dialog of this.byTag.values()) dialog.terminate('rejected');
    this.byTag.clear();
    const headers = this.request.headers.clone();
    headers.remove('Via');
    // The answer to the last server's challenge means nothing to the next: it may challenge afresh.
    headers.remove('Authorization');
    headers.remove('Proxy-Authorization');
    this.authenticated = false;
    this.request = { ...this.request, headers };
    this.destination = next;
    this.start();
  }

  /**
   * The dialog of a response's To tag, made when new. An early one only within the limits (a
   * provisional response beyond them is reported without a dialog); one for a 2xx always, since
   * the call was admitted by invite() and a 2xx too many is acknowledged and ended anyway.
   */
  private dialogFor(response: SipResponse, state: 'early' | 'confirmed'): Dialog | undefined {
    const remoteTag = tagOf(response.headers, 'To');
    if (!remoteTag) return undefined;
    const known = this.byTag.get(remoteTag.toLowerCase());
    if (known !== undefined) return known;
    if (state === 'early' && (!this.core.hasRoom() || this.byTag.size >= MAX_EARLY_DIALOGS)) return undefined;
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
      flow: this.destination?.flow === undefined && !this.options.pinDestination ? undefined : this.destination,
    });
    const offer = bodyOf(this.request);
    if (offer !== undefined && offer.contentType.split(';', 1)[0]!.trim().toLowerCase() === 'application/sdp') dialog.localSdp = offer;
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
    let dialog = this.dialogFor(response, 'confirmed');
    // Without a To tag there is no dialog to acknowledge in (12.1.2 requires one).
    if (dialog === undefined) return;
    if (this.answered.has(dialog) || dialog.acknowledged) {
      // A retransmission: the ACK goes again (once the owner sent it).
      dialog.resendAck(response);
      return;
    }
    if (dialog.state === 'terminated') {
      // Its early dialog ended before any 2xx (a request in it failed): the 2xx makes a new one.
      this.byTag.delete(dialog.remoteTag.toLowerCase());
      dialog = this.dialogFor(response, 'confirmed')!;
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

function sameHop(a: SipEndpoint, b: SipEndpoint): boolean {
  return (a.transport ?? 'udp') === (b.transport ?? 'udp') && a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port;
}
