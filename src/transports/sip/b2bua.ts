/**
 * SIP as a binding of the call engine (a B2BUA, RFC 7092's "signaling-only" kind, with media
 * anchoring left to the call engine): an INVITE from a device becomes a call placed by the
 * engine, and the engine's calls reach the devices registered to an account (each binding
 * of the registrar a target) as INVITEs of ours. Each side is a leg: a port of the call
 * engine (src/services/calls/router.ts) on one side, a SIP dialog (dialog.ts) on the other,
 * translating the engine's signals (src/services/calls/signal.ts) to SIP and back:
 *
 * | engine                     | SIP                                                         |
 * |----------------------------|-------------------------------------------------------------|
 * | invite                     | INVITE (our UAC leg), or an INVITE received (our UAS leg)   |
 * | progress (sdp, offer)      | 180, 183 with early media; an offer only reliably (100rel)  |
 * | answer (sdp, offer)        | 200; an offer in it is answered in the ACK                  |
 * | reject / redirect / cancel | 4xx–6xx / 3xx (followed by the engine) / CANCEL             |
 * | ack (sdp)                  | ACK or PRACK with the answer                                |
 * | update / updated           | re-INVITE (UPDATE while early) / its final response         |
 * | bye, dtmf, info            | BYE, INFO (application/dtmf-relay), INFO                    |
 *
 * Devices of our own domains authenticate their INVITEs (407, Digest over the same
 * credentials as REGISTER); calls from elsewhere are taken for our accounts only.
 */
import { isIP } from 'node:net';
import type { EventBus } from '../../bus/bus.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { AccountService } from '../../services/accounts.js';
import type { AuthService } from '../../services/auth.js';
import { AttendedTransfer, BlindTransfer } from '../../services/calls/junction.js';
import type { Resolution } from '../../services/calls/call.js';
import type { CallRouter, Port, PortAddress } from '../../services/calls/router.js';
import { addressOf, CallRefused, isPhoneNumber, type CallService } from '../../services/calls/service.js';
import type { DnsResolver } from '../../services/mail-auth.js';
import { extensionHeaders, reasonOf, type CallTarget, type MediaFlavour, type Party, type Signal } from '../../services/calls/signal.js';
import { behindNat, isPrivateAddress, sdpAddress } from '../../services/calls/nat.js';
import { DigestAuthenticator } from '../../services/digest.js';
import type { ImService } from '../../services/im/service.js';
import type { Binding } from '../../store/registrations.js';
import type { Store } from '../../store/store.js';
import { DEFAULT_DIALOG_LIMITS, UserAgentCore, type ClientCall, type Dialog, type IncomingRequest, type RequestOutcome, type ServerCall, type SipBody } from './dialog.js';
import { contactUriOf, parseReferTo, parseReplaces, sdpOrigin, type Replaces } from './dialog-messages.js';
import { DEFAULT_SESSION_TIMER, type SessionTimerSettings } from './dialog-types.js';
import { authenticateRequest } from './digest-auth.js';
import type { DigestClientCredentials } from './digest-client.js';
import type { InviteOptions } from './dialog-uac.js';
import type { SipRequest, SipResponse } from './message.js';
import { locateSipServers, SipLocateError } from './locate.js';
import { Registrar, sameUri } from './registrar.js';
import type { SipRequestEvent, SipService } from './service.js';
import type { SipEndpoint, SipTransportName } from './transactions.js';
import { parseNameAddr, parseUri, type NameAddr, type Uri } from './uri.js';

/** A SIP device of an account, as the call engine rings it. */
export type SipTarget = Extract<CallTarget, { kind: 'sip' }>;

const DTMF_RELAY = 'application/dtmf-relay';

/** The leg of each dialog the B2BUA holds: what a Replaces (RFC 3891) finds through UserAgentCore.dialog(). */
const legOfDialog = new WeakMap<Dialog, SipLeg>();

/** What is waiting for the engine's next `ack`: the answer for a 2xx, a PRACK, or a re-INVITE's 2xx. */
type AckWait = { kind: 'ack2xx'; dialog: Dialog } | { kind: 'prack'; resolve: (body: string | undefined) => void };

/**
 * What both kinds of leg share: the dialog once there is one, the requests inside it in both
 * directions, and the signals of an established call.
 */
abstract class SipLeg implements Port {
  readonly address: PortAddress;
  /** The call's port for this leg. */
  peer: PortAddress | undefined;
  protected dialog: Dialog | undefined;
  /** A request of the device's (re-INVITE, UPDATE) waiting for the engine's `updated`. */
  private pendingUpdate: IncomingRequest | undefined;
  /** The engine's `update` we sent as a re-INVITE or UPDATE. */
  private updating = false;
  protected ackWait: AckWait | undefined;
  protected ended = false;
  /** Who is on the other side (what REFER needs). */
  remote: Party = { address: '' };
  /** A session refresh without an offer was answered here with our SDP: its ACK's answer is not the engine's. */
  private refreshAck = false;
  /** An attended transfer or an INVITE with Replaces is taking this leg's place in its call. */
  private handingOver = false;

  constructor(
    protected readonly calls: CallService,
    protected readonly log: Logger,
    protected readonly ua: UserAgentCore,
  ) {
    this.address = calls.router.open(this);
  }

  protected get router(): CallRouter {
    return this.calls.router;
  }

  protected send(signal: Signal): void {
    // While another takes its place, the call hears nothing of this leg.
    if (this.peer && !this.handingOver) this.router.send(this.peer, signal, this.address);
  }

  /** Listens to a dialog of this leg (the initial one, or the one that answered). */
  protected attach(dialog: Dialog): void {
    this.dialog = dialog;
    legOfDialog.set(dialog, this);
    dialog.on('request', (incoming) => this.inDialog(incoming));
    dialog.on('ack', (body) => this.deviceAck(body));
    dialog.on('bye', (request: SipRequest) => {
      this.ended = true;
      // Its extension headers go along (a Rayo client sees them in the call's end).
      const headers = headersOf(request);
      this.send({ kind: 'bye', ...(headers && { headers }) });
      this.release();
    });
    dialog.on('terminated', (reason) => {
      if (this.ended) return;
      this.ended = true;
      if (reason === 'remote-bye' || reason === 'local-bye') return;
      if (reason === 'session-expired') {
        const timer = dialog.sessionTimer;
        this.log.info({ event: 'sip.session_expired', callId: dialog.callId, device: this.owner, interval: timer?.interval }, 'a SIP session was not refreshed in time (RFC 4028): BYE sent, the call ends');
        this.send({ kind: 'bye', code: 408, reason: 'the SIP session expired (the device stopped refreshing it)' });
      } else this.send({ kind: 'bye', code: reason === 'timeout' ? 408 : 481, reason: `the SIP dialog ended (${reason})` });
      this.release();
    });
  }

  /** The ACK of a 2xx of ours that held an offer: the answer for the engine. */
  protected deviceAck(body: SipBody | undefined): void {
    if (this.refreshAck) {
      this.refreshAck = false;
      return;
    }
    if (body && isSdp(body)) this.send({ kind: 'ack', sdp: body.content });
  }

  /** A request inside the dialog from the device. */
  private inDialog(incoming: IncomingRequest): void {
    switch (incoming.method) {
      case 'INVITE':
      case 'UPDATE': {
        if (this.pendingUpdate || this.updating) {
          incoming.respond(491, { reason: 'Request Pending' });
          return;
        }
        const body = incoming.body;
        if (body && !isSdp(body)) {
          incoming.respond(415, { headers: [['Accept', 'application/sdp']] });
          return;
        }
        if (this.refreshOnly(incoming)) return;
        this.pendingUpdate = incoming;
        this.send({ kind: 'update', sdp: body?.content });
        return;
      }
      case 'INFO':
        return this.info(incoming);
      case 'REFER':
        return this.refer(incoming);
      default:
        incoming.respond(405, { headers: [['Allow', 'INVITE, ACK, CANCEL, BYE, UPDATE, INFO, REFER, PRACK, OPTIONS']] });
    }
  }

  /**
   * A session refresh (RFC 4028) that changes no media: an UPDATE without a body, a re-INVITE
   * without one (our last SDP goes as the offer; the answer in the ACK is taken here), or an
   * offer whose origin (session id and version, RFC 3264 8) is the one the device sent last.
   * It is answered here with the SDP we sent last; the other side of the call hears nothing.
   * False for anything else, which goes to the engine as an update.
   */
  private refreshOnly(incoming: IncomingRequest): boolean {
    const dialog = this.dialog;
    if (!dialog || dialog.state !== 'confirmed' || this.handingOver) return false;
    const body = incoming.body;
    const ours = dialog.localSdp?.content;
    if (body === undefined) {
      if (incoming.method === 'UPDATE') incoming.respond(200);
      else if (ours === undefined) return false;
      else {
        this.refreshAck = true;
        incoming.respond(200, { body: ours });
      }
      return true;
    }
    const origin = sdpOrigin(body);
    if (ours === undefined || origin === undefined || origin !== sdpOrigin(dialog.remoteSdp)) return false;
    incoming.respond(200, { body: ours });
    return true;
  }

  private info(incoming: IncomingRequest): void {
    const body = incoming.body;
    if (!body) {
      incoming.respond(200); // a keep-alive INFO
      return;
    }
    const type = body.contentType.split(';', 1)[0]!.trim().toLowerCase();
    if (type === DTMF_RELAY || type === 'application/dtmf') {
      const digit = type === DTMF_RELAY ? /^\s*Signal\s*=\s*([0-9*#A-D])/im.exec(body.content)?.[1] : /^\s*([0-9*#A-D])/.exec(body.content)?.[1];
      if (!digit) {
        incoming.respond(400, { reason: 'Bad Request (no DTMF signal)' });
        return;
      }
      this.send({ kind: 'dtmf', digits: digit.toUpperCase() });
    } else if (body.content.length <= 16 * 1024) this.send({ kind: 'info', contentType: body.contentType, body: body.content });
    else {
      incoming.respond(413);
      return;
    }
    incoming.respond(200);
  }

  /**
   * REFER: a blind transfer of the other side to the Refer-To target, or with a Replaces in the
   * Refer-To an attended one (attendedRefer).
   */
  private refer(incoming: IncomingRequest): void {
    const referTo = incoming.request.headers.get('Refer-To');
    let target: NameAddr | undefined;
    try {
      target = referTo === undefined ? undefined : parseNameAddr(referTo);
    } catch {
      target = undefined;
    }
    if (!target || !this.peer || !this.dialog) {
      incoming.respond(400, { reason: 'Bad Request (no readable Refer-To)' });
      return;
    }
    const uri = target.uri;
    if (uri.kind === 'sip' && uri.headers.some(([name]) => name.toLowerCase() === 'replaces')) {
      let replaces: Replaces | undefined;
      try {
        replaces = parseReferTo(referTo!).replaces;
      } catch {
        replaces = undefined;
      }
      if (!replaces) {
        incoming.respond(400, { reason: 'Bad Request (unreadable Replaces in the Refer-To)' });
        return;
      }
      return this.attendedRefer(incoming, replaces);
    }
    if (this.handingOver) {
      incoming.respond(491, { reason: 'Request Pending (the call is being transferred)' });
      return;
    }
    const address = uri.kind === 'sip' && uri.user !== undefined ? `${uri.user}@${uri.host}` : target.uriText;
    incoming.respond(202);
    const dialog = this.dialog;
    const by = this.identity();
    new BlindTransfer(this.calls, this.peer, this.otherParty(), address, by, (outcome) => {
      void dialog.notifyRefer(outcome.ok ? 200 : outcome.code, outcome.ok ? {} : { reason: outcome.reason }).catch(() => {});
      if (outcome.ok) {
        // The other side talks to the transfer target now: this leg is out of the call.
        this.peer = undefined;
        this.ended = true;
        void dialog.bye().catch(() => {});
        this.release();
      }
    });
  }

  /**
   * REFER with Replaces (RFC 5589 7): the device joins the peers of two of its calls, this one's
   * and the one the Replaces names: our dialog with the same account's device, matched as the
   * target of the INVITE with Replaces would match it (RFC 3891 3: the to-tag is ours, the
   * from-tag the device's). The two peers are joined as XIMSS's attended callTransfer joins
   * them (AttendedTransfer). Once the REFER reads it is accepted (202), and the NOTIFYs tell
   * what the INVITE with Replaces would have got (RFC 3515 2.4.4): 481 when no such call of the
   * device's is here (RFC 5589 7.x: the transferor keeps both calls and may take the first one
   * back), 486 for `early-only` on a connected call, or 100 and then 200 once the peers talk, or
   * the failure (the calls are over then). Both of the device's dialogs get BYE at the end, the
   * other one at once (as the target of a Replaces ends the replaced dialog), the REFER's own
   * after its final NOTIFY.
   */
  private attendedRefer(incoming: IncomingRequest, replaces: Replaces): void {
    const dialog = this.dialog!;
    if (!this.available) {
      incoming.respond(this.handingOver ? 491 : 481, { reason: this.handingOver ? 'Request Pending (the call is being transferred)' : 'Call/Transaction Does Not Exist (the call is not connected)' });
      return;
    }
    const found = replacedLeg(this.ua, replaces, this.owner);
    if ('leg' in found && found.leg === this) {
      incoming.respond(400, { reason: 'Bad Request (the Replaces names the dialog of the REFER)' });
      return;
    }
    incoming.respond(202);
    if (!('leg' in found)) {
      void dialog.notifyRefer(found.code, { reason: found.reason }).catch(() => {});
      return;
    }
    const other = found.leg;
    const first = this.detach();
    const second = other.detach();
    const trying = dialog.notifyRefer(100).catch(() => undefined);
    new AttendedTransfer(this.calls, first, second, this.otherParty(), other.otherParty(), (outcome) => {
      other.leave();
      void trying
        .then(() => dialog.notifyRefer(outcome.ok ? 200 : outcome.code, outcome.ok ? {} : { reason: outcome.reason }))
        .catch(() => undefined)
        .then(() => this.leave());
    });
  }

  /** The party on the other side of the call (the transferee of a REFER). */
  abstract otherParty(): Party;

  /** The account (or address) this leg's device stands for. */
  get owner(): string {
    return this.identity().address;
  }

  /** In a connected call whose place another may take (a transfer, a replacement). */
  get available(): boolean {
    return !this.ended && !this.handingOver && this.peer !== undefined && this.dialog?.state === 'confirmed';
  }

  /**
   * Leaves its place in the call to another (an attended transfer, a replacing INVITE): the
   * call's port it spoke to. The call no longer hears the leg, its device's BYE included.
   */
  detach(): PortAddress {
    const peer = this.peer!;
    this.peer = undefined;
    this.handingOver = true;
    return peer;
  }

  /**
   * Whoever was to take its place failed: the leg speaks for its side again (`trying`, which
   * a call takes as its side's leg showing where it is), or, its device gone meanwhile, hangs up.
   */
  reattach(peer: PortAddress): void {
    this.handingOver = false;
    this.peer = peer;
    if (!this.ended) {
      this.send({ kind: 'trying' });
      return;
    }
    this.send({ kind: 'bye', reason: 'the device hung up' });
    this.peer = undefined;
  }

  /** Out of the call for good (another took its place, or the call is over): BYE to the device. */
  leave(): void {
    this.peer = undefined;
    this.handingOver = false;
    this.ended = true;
    if (this.dialog && this.dialog.state !== 'terminated') void this.dialog.bye().catch(() => {});
    this.release();
  }

  /** The account or address this leg stands for (the transferor of a REFER). */
  protected abstract identity(): Party;

  // ---------------------------------------------------------------------------------------
  // Signals of an established call (or of an early dialog), shared by both kinds

  protected inCall(signal: Signal): void {
    switch (signal.kind) {
      case 'update':
        return void this.update(signal.sdp);
      case 'updated': {
        const incoming = this.pendingUpdate;
        this.pendingUpdate = undefined;
        if (!incoming) return;
        if (signal.code !== undefined) incoming.respond(signal.code, { reason: signal.reason });
        else incoming.respond(200, { body: signal.sdp });
        return;
      }
      case 'ack':
        return this.engineAck(signal.sdp, signal.code);
      case 'bye':
      case 'gone': {
        this.ended = true;
        const headers = signal.kind === 'bye' ? extensionHeaders(signal.headers ?? []) : undefined;
        if (this.dialog && this.dialog.state !== 'terminated') void this.dialog.bye(headers ? { headers } : {}).catch(() => {});
        this.release();
        return;
      }
      case 'dtmf':
        return void this.infoRequest(signal.op, DTMF_RELAY, signal.digits.split('').map((d) => `Signal=${d}\r\nDuration=160\r\n`));
      case 'info':
        return void this.infoRequest(signal.op, signal.contentType, [signal.body], signal.method);
      default:
        return;
    }
  }

  /** The engine's answer (or refusal) to an offer the device made in a 2xx or a reliable provisional. */
  protected engineAck(sdp: string | undefined, code: number | undefined): void {
    const wait = this.ackWait;
    this.ackWait = undefined;
    if (!wait) return;
    if (wait.kind === 'prack') wait.resolve(sdp);
    else {
      wait.dialog.ack(code === undefined ? sdp : undefined);
      // An offer in a 2xx that cannot be answered ends the call (RFC 3261 13.2.2.4).
      if (code !== undefined) void wait.dialog.bye().catch(() => {});
    }
  }

  /** The engine's new offer (or request for one) as a re-INVITE, or UPDATE in an early dialog. */
  private async update(sdp: string | undefined): Promise<void> {
    const dialog = this.dialog;
    if (!dialog || dialog.state === 'terminated') {
      this.send({ kind: 'updated', code: 481, reason: reasonOf(481) });
      return;
    }
    if (this.updating || this.pendingUpdate) {
      this.send({ kind: 'updated', code: 491, reason: reasonOf(491) });
      return;
    }
    this.updating = true;
    const early = dialog.state === 'early';
    let outcome: RequestOutcome;
    try {
      outcome = await dialog.request(early ? 'UPDATE' : 'INVITE', { body: sdp, ackLater: sdp === undefined && !early });
    } catch (err) {
      this.updating = false;
      this.send({ kind: 'updated', code: 491, reason: err instanceof Error ? err.message : String(err) });
      return;
    } finally {
      this.updating = false;
    }
    if (outcome.kind !== 'response') {
      this.send({ kind: 'updated', code: outcome.kind === 'timeout' ? 408 : 503, reason: outcome.kind === 'timeout' ? 'no answer to the re-INVITE' : 'the device is unreachable' });
      return;
    }
    const { response, body } = outcome;
    if (response.status >= 300) {
      this.send({ kind: 'updated', code: response.status, reason: response.reason });
      return;
    }
    if (sdp === undefined && !early) {
      // We asked for an offer: it came in the 2xx, the answer goes in the ACK.
      this.ackWait = { kind: 'ack2xx', dialog };
      this.send({ kind: 'updated', sdp: body?.content, offer: true });
      return;
    }
    this.send({ kind: 'updated', sdp: body?.content });
  }

  private async infoRequest(op: string | undefined, contentType: string, bodies: string[], method: 'INFO' | 'MESSAGE' = 'INFO'): Promise<void> {
    const dialog = this.dialog;
    let failure: { code: number; reason: string } | undefined = dialog && dialog.state === 'confirmed' ? undefined : { code: 481, reason: 'the call is not connected' };
    for (const body of bodies) {
      if (failure) break;
      try {
        const outcome = await dialog!.request(method, { body, contentType });
        if (outcome.kind !== 'response') failure = { code: 408, reason: `no answer to the ${method}` };
        else if (outcome.response.status >= 300) failure = { code: outcome.response.status, reason: outcome.response.reason };
      } catch (err) {
        failure = { code: 481, reason: err instanceof Error ? err.message : String(err) };
      }
    }
    if (op) this.send(failure ? { kind: 'result', op, ...failure } : { kind: 'result', op });
  }

  /**
   * Out of the call: late signals for its port (one crossing its end) are dropped for a while
   * (CallRouter.retire) instead of drawing `gone`; the leg itself, with its dialog and messages,
   * is not kept for them. What still concerns the device (a 2xx after a CANCEL) reaches the leg
   * through its dialog, not its port.
   */
  protected release(): void {
    this.ended = true;
    this.router.retire(this.address);
  }

  abstract receive(signal: Signal, from: PortAddress): void;
}

/** A call the engine places to a registered device: an INVITE of ours. */
export class SipUacLeg extends SipLeg {
  private call: ClientCall | undefined;
  private readonly offered: boolean;
  private answered = false;

  /** Who called (or, after a transfer, is on the other side). */
  private caller: Party;

  constructor(calls: CallService, log: Logger, ua: UserAgentCore, target: SipTarget, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress, domainOfCaller: string, remote: RemoteInviteOptions = {}) {
    super(calls, log, ua);
    this.peer = replyTo;
    this.caller = invite.from;
    this.offered = invite.sdp !== undefined;
    this.remote = { address: target.aor };
    const destination: SipEndpoint = { host: target.flow.host, port: target.flow.port, transport: target.flow.transport as SipTransportName, flow: target.flow.flow ?? undefined };
    let call: ClientCall;
    try {
      call = ua.invite({
        requestUri: target.contact,
        from: nameAddr(invite.from, domainOfCaller),
        // Another domain's server or a trunk: To is the Request-URI (a number at the trunk).
        to: target.accountId === undefined ? `<${target.contact}>` : nameAddr({ address: target.aor }, domainOfCaller),
        body: invite.sdp,
        headers: [
          ...target.path.map((p) => ['Route', p] as const),
          ...(invite.transferredBy ? [['Referred-By', `<sip:${invite.transferredBy}>`] as const] : []),
          ...supplHeaders(invite.suppl),
          // Extension headers only from our own users' calls (a Rayo application's dial, a phone of
          // ours): a stranger's X- headers are not handed to our phones and trunks.
          ...(invite.callerAccountId !== undefined ? (extensionHeaders(invite.headers ?? []) ?? []) : []),
        ],
        destination,
        pinDestination: target.nat === true,
        ...remote,
        prackBody: (_dialog, response) => {
          // An offer in a reliable provisional response: the engine's answer goes in the PRACK.
          if (this.offered || !hasSdp(response)) return undefined;
          return new Promise<string | undefined>((resolve) => {
            this.ackWait = { kind: 'prack', resolve };
          });
        },
      });
    } catch (err) {
      // Over the dialog limit, or a Contact that is no address: the call hears why, and the port goes.
      this.send({ kind: 'reject', code: 503, reason: err instanceof Error ? err.message : String(err) });
      this.release();
      return;
    }
    this.call = call;
    this.send({ kind: 'trying' });
    call.on('provisional', (dialog, response) => this.provisional(dialog, response));
    call.on('answered', (dialog, response) => this.answer(dialog, response));
    call.on('failed', (failure) => {
      if (this.answered || this.ended) return;
      this.ended = true;
      if (failure.kind === 'response') {
        const { response } = failure;
        if (response.status >= 300 && response.status < 400) {
          const targets = response.headers.getAll('Contact').flatMap((c) => {
            try {
              return [parseNameAddr(c).uriText];
            } catch {
              return [];
            }
          });
          if (targets.length > 0) this.send({ kind: 'redirect', targets });
          else this.send({ kind: 'reject', code: 404, reason: 'redirected nowhere' });
        } else if (response.status === 401 || response.status === 407) {
          // A challenge the caller cannot answer (it is the next hop's, for our credentials).
          this.send({ kind: 'reject', code: 403, reason: `the next hop refused the call (${response.status}: no credentials of ours it takes)` });
        } else this.send({ kind: 'reject', code: response.status, reason: response.reason });
      } else if (failure.kind === 'timeout') this.send({ kind: 'reject', code: 408, reason: 'the device did not answer the INVITE' });
      else if (failure.kind === 'transport') this.send({ kind: 'reject', code: 503, reason: 'the device is unreachable' });
      this.release();
    });
  }

  protected identity(): Party {
    return this.remote;
  }

  otherParty(): Party {
    return this.caller;
  }

  private provisional(dialog: Dialog | undefined, response: SipResponse): void {
    if (this.ended) return;
    // An early dialog is the leg's too (a Replaces may name it).
    if (dialog) legOfDialog.set(dialog, this);
    const sdp = hasSdp(response) ? response.body.toString('utf8') : undefined;
    // An offer may come only reliably; an unreliable one is not an offer we can answer.
    const reliable = response.headers.get('RSeq') !== undefined;
    const offer = !this.offered && sdp !== undefined && reliable;
    this.send({ kind: 'progress', tag: dialog?.id.remoteTag ?? 'sip', sdp: this.offered || offer ? sdp : undefined, offer });
  }

  private answer(dialog: Dialog, response: SipResponse): void {
    if (this.ended) {
      dialog.ack();
      void dialog.bye().catch(() => {});
      return;
    }
    this.answered = true;
    this.attach(dialog);
    const sdp = hasSdp(response) ? response.body.toString('utf8') : undefined;
    const offer = !this.offered && sdp !== undefined;
    if (offer) this.ackWait = { kind: 'ack2xx', dialog };
    else dialog.ack();
    const headers = headersOf(response);
    this.send({ kind: 'answer', tag: dialog.id.remoteTag, sdp, offer, peer: this.remote, ...(headers && { headers }) });
  }

  receive(signal: Signal, from: PortAddress): void {
    if (from.id !== '-') this.peer = from;
    if (signal.kind === 'cancel') {
      this.ended = true;
      if (!this.call?.cancel() && this.dialog) void this.dialog.bye().catch(() => {});
      this.release();
      return;
    }
    if (signal.kind === 'ack' && this.ackWait?.kind === 'prack') return this.engineAck(signal.sdp, signal.code);
    if (signal.kind === 'transferred') {
      this.caller = signal.peer;
      return;
    }
    this.inCall(signal);
  }
}

/**
 * The headers of an INVITE that XIMSS shows as `suppl` data of callIncoming (Alert-Info, such as
 * `answer-after=0` for auto-answer, and Call-Info), and back.
 */
const SUPPL_HEADERS = ['Alert-Info', 'Call-Info'] as const;

function supplOf(request: SipRequest): Record<string, string> | undefined {
  const suppl: Record<string, string> = {};
  for (const name of SUPPL_HEADERS) {
    const values = request.headers.getAll(name);
    if (values.length > 0) suppl[name] = values.join(', ').slice(0, 1024);
  }
  return Object.keys(suppl).length > 0 ? suppl : undefined;
}

/** A message's extension headers (an INVITE's for the callee, a 200's or BYE's for a Rayo client; signal.ts extensionHeaders). */
function headersOf(message: SipRequest | SipResponse): [string, string][] | undefined {
  const all: [string, string][] = [];
  message.headers.forEach((name, value) => {
    if (name.length > 2 && (name[0] === 'X' || name[0] === 'x') && name[1] === '-') all.push([name, value]);
  });
  return extensionHeaders(all);
}

function supplHeaders(suppl: Record<string, string> | undefined): [string, string][] {
  if (!suppl) return [];
  return SUPPL_HEADERS.filter((name) => suppl[name] !== undefined && !/[\r\n]/.test(suppl[name]!)).map((name) => [name, suppl[name]!]);
}

/**
 * The media a SIP device speaks, as far as its transport tells: phones over WebSocket are
 * browsers (RFC 7118 clients such as SIP.js and JsSIP), which speak WebRTC; the others plain RTP.
 */
export function mediaOfTransport(transport: string | undefined): MediaFlavour {
  return transport === 'ws' || transport === 'wss' ? 'webrtc' : 'rtp';
}

/** A call a device makes: an INVITE received, placed through the engine. */
export class SipUasLeg extends SipLeg {
  private readonly offered: boolean;
  private readonly self: Party;

  constructor(calls: CallService, log: Logger, ua: UserAgentCore, private readonly server: ServerCall, caller: Party, accountId: number | undefined, to: string, media: { flavour: MediaFlavour; nat: boolean }) {
    super(calls, log, ua);
    this.self = caller;
    this.offered = server.body !== undefined && isSdp(server.body);
    this.attach(server.dialog);
    server.on('cancelled', () => {
      this.ended = true;
      this.send({ kind: 'cancel', reason: 'cancelled by the caller' });
      this.release();
    });
    // The ACK of our 2xx comes through the dialog's `ack` (attach), the initial one included.
    server.on('prack', (body) => {
      if (body && isSdp(body)) this.send({ kind: 'ack', sdp: body.content });
    });
    try {
      this.peer = calls.place({ caller: this.address, accountId, from: caller, to, sdp: this.offered ? server.body!.content : undefined, media: media.flavour, nat: media.nat, suppl: supplOf(server.request), headers: headersOf(server.request) }).address;
    } catch (err) {
      // Over a limit (CallRefused): the device hears it as the refusal.
      this.ended = true;
      server.reject(err instanceof CallRefused ? err.code : 500, err instanceof Error ? err.message : undefined);
      this.release();
    }
  }

  protected identity(): Party {
    return this.self;
  }

  otherParty(): Party {
    return this.remote;
  }

  receive(signal: Signal, from: PortAddress): void {
    if (from.id !== '-') this.peer = from;
    const server = this.server;
    switch (signal.kind) {
      case 'progress':
        if (signal.sdp === undefined) server.provisional(180);
        else if (!signal.offer) server.provisional(183, { body: signal.sdp });
        else if (server.reliableAllowed) server.provisional(183, { body: signal.sdp, reliable: true });
        else {
          // The device cannot take an offer before the answer: it comes again in the 200.
          server.provisional(180);
          this.send({ kind: 'ack', tag: signal.tag, code: 488, reason: 'the caller takes no early offer' });
        }
        return;
      case 'answer': {
        // Extension headers of the answer (a Rayo client's) go into the 200.
        const headers = extensionHeaders(signal.headers ?? []);
        if (!server.answer(200, signal.sdp, headers ? { headers } : {})) return;
        if (signal.peer) this.remote = signal.peer;
        return;
      }
      case 'reject':
        this.ended = true;
        server.reject(signal.code, signal.reason, extensionHeaders(signal.headers ?? []) ?? []);
        this.release();
        return;
      case 'transferred':
        this.remote = signal.peer;
        return;
      default:
        this.inCall(signal);
    }
  }
}

/**
 * An INVITE with Replaces (RFC 3891): a device of the account takes the place of one of the
 * account's legs in its call (a phone picking up a call another device of the account has).
 * The new leg speaks for the old one's side: the other side gets the INVITE's offer as an
 * update (or, without one, is asked for an offer), its answer (or offer) goes in the 200, and
 * the old dialog gets BYE. When the other side refuses, the INVITE is refused with its code and
 * the old leg speaks for its side again; when the call ends meanwhile, the INVITE gets 481.
 */
class SipReplacingLeg extends SipLeg {
  private pending = true;
  private readonly offered: boolean;
  /** The call's port for the old leg's side, while the other side is asked (peer stays unset: nothing reaches the call before the outcome). */
  private seat: PortAddress;

  constructor(calls: CallService, log: Logger, ua: UserAgentCore, private readonly server: ServerCall, private readonly self: Party, private readonly old: SipLeg) {
    super(calls, log, ua);
    this.offered = server.body !== undefined && isSdp(server.body);
    this.attach(server.dialog);
    this.remote = old.otherParty();
    this.seat = old.detach();
    // A signal from here makes this leg the one the call talks to for that side.
    this.router.send(this.seat, { kind: 'update', sdp: this.offered ? server.body!.content : undefined }, this.address);
  }

  protected identity(): Party {
    return this.self;
  }

  otherParty(): Party {
    return this.remote;
  }

  receive(signal: Signal, from: PortAddress): void {
    if (!this.pending) {
      if (from.id !== '-') this.peer = from;
      if (signal.kind === 'transferred') this.remote = signal.peer;
      else this.inCall(signal);
      return;
    }
    if (from.id !== '-') this.seat = from;
    switch (signal.kind) {
      case 'updated':
        return this.outcome(signal);
      case 'bye':
      case 'gone':
      case 'cancel':
      case 'reject':
        // The call ended before the other side answered: nothing is left to replace.
        this.pending = false;
        this.ended = true;
        this.server.reject(481, 'Call/Transaction Does Not Exist (the call ended)');
        this.old.leave();
        this.release();
        return;
      default:
        return;
    }
  }

  private outcome(signal: Extract<Signal, { kind: 'updated' }>): void {
    this.pending = false;
    const refused = signal.code !== undefined || signal.sdp === undefined || (!this.offered && signal.offer !== true);
    if (this.ended) {
      // The new device gave up (CANCEL) while the other side was asked: the old leg keeps the call
      // when the media did not move, else the call, its media gone to nobody, is over.
      if (refused) this.old.reattach(this.seat);
      else {
        this.router.send(this.seat, { kind: 'bye', reason: 'the replacing device went away' }, this.address);
        this.old.leave();
      }
      return;
    }
    if (refused) {
      this.ended = true;
      this.server.reject(signal.code ?? 488, signal.reason ?? 'the other side gave no media');
      this.old.reattach(this.seat);
      this.release();
      return;
    }
    this.peer = this.seat;
    // An offer of the other side's (the INVITE had none) is answered in the ACK (deviceAck).
    if (!this.server.answer(200, signal.sdp)) {
      // The INVITE ended meanwhile, with the other side's media already moved to it: the call is over.
      this.ended = true;
      this.router.send(this.seat, { kind: 'bye', reason: 'the replacing device went away' }, this.address);
      this.old.leave();
      this.release();
      return;
    }
    this.old.leave();
  }
}

/**
 * The leg a Replaces names (RFC 3891 3): our dialog with the Call-ID, our tag as to-tag and the
 * device's as from-tag, of a device of `owner`'s (another account's dialog is as unknown as a
 * missing one), or the refusal the RFC gives: 481 for none (or an early dialog we did not
 * initiate), 603 for one that ended, 486 for early-only on a confirmed one; 501 for an early
 * dialog of ours (taking a call that still rings is not done); 491 when the call is being
 * transferred or replaced already.
 */
function replacedLeg(ua: UserAgentCore, replaces: Replaces, owner: string): { leg: SipLeg } | { code: number; reason: string } {
  const dialog = ua.dialog({ callId: replaces.callId, localTag: replaces.toTag, remoteTag: replaces.fromTag });
  const leg = dialog === undefined ? undefined : legOfDialog.get(dialog);
  if (dialog === undefined || leg === undefined || leg.owner.toLowerCase() !== owner.toLowerCase()) {
    return { code: 481, reason: 'Call/Transaction Does Not Exist (no such call to replace)' };
  }
  if (dialog.state === 'terminated') return { code: 603, reason: 'Declined (the call to replace has ended)' };
  if (dialog.state === 'early') {
    return dialog.role === 'uas'
      ? { code: 481, reason: 'Call/Transaction Does Not Exist (an early dialog this server did not initiate)' }
      : { code: 501, reason: 'Not Implemented (replacing a call that still rings)' };
  }
  if (replaces.earlyOnly) return { code: 486, reason: 'Busy Here (the call is answered; early-only)' };
  if (!leg.available) return { code: 491, reason: 'Request Pending (the call is being transferred)' };
  return { leg };
}

function hasSdp(response: SipResponse): boolean {
  const type = response.headers.get('Content-Type');
  return response.body.length > 0 && type !== undefined && type.split(';', 1)[0]!.trim().toLowerCase() === 'application/sdp';
}

function isSdp(body: SipBody): boolean {
  return body.contentType.split(';', 1)[0]!.trim().toLowerCase() === 'application/sdp';
}

/**
 * Where an INVITE for a registered device goes. Over its connection or its outbound flow when
 * it has one; over UDP to its Contact, unless the Contact is a private address other than
 * the one the REGISTER came from (the device is behind NAT: its REGISTER's source, which its
 * keep-alives hold open, reaches it, as Kamailio's nathelper does).
 */
function firstHop(binding: Binding): SipTarget['flow'] {
  const source = { transport: binding.transport, host: binding.host, port: binding.port, flow: binding.flow };
  if (binding.flow !== null || binding.outbound || binding.transport !== 'udp') return source;
  let contact: Uri;
  try {
    contact = parseUri(binding.contact);
  } catch {
    return source;
  }
  if (contact.kind !== 'sip' || contact.scheme !== 'sip' || !isIP(contact.host.replace(/^\[(.*)\]$/, '$1'))) return source;
  const host = contact.host.replace(/^\[(.*)\]$/, '$1');
  const transport = contact.params.get('transport')?.toLowerCase() ?? 'udp';
  if (transport !== 'udp') return source;
  if (host !== binding.host && isPrivateAddress(host)) return source;
  return { transport: 'udp', host, port: contact.port ?? 5060, flow: null };
}


/** A party as a SIP name-addr: its address as a SIP URI (a bare number becomes one of `domain`). */
export function nameAddr(party: Party, domain: string): string {
  const address = party.address.replace(/^sips?:/i, '');
  const uri = `sip:${address.includes('@') ? address : `${address}@${domain}`}`;
  const name = party.name?.replace(/["\\\r\n]/g, '');
  return name ? `"${name}" <${uri}>` : `<${uri}>`;
}

export interface SipCallsDeps {
  sip: SipService;
  ua: UserAgentCore;
  calls: CallService;
  registrar: Registrar;
  auth: AuthService;
  digest: DigestAuthenticator;
  im: ImService;
  /** This node (ClusterNode.id): datagram bindings are rung from here. */
  node: string;
  /** What an INVITE to a target of another domain or the trunk adds: the trunk's credentials, the next servers (RFC 3263). */
  remoteOptions?: (target: SipTarget) => RemoteInviteOptions;
  /**
   * The account (`name@domain`) whose remote SIP registration has this Contact user part
   * (src/services/remote-sip/): an INVITE to it came through that registrar, for that account.
   */
  remoteContact?: (user: string) => Promise<string | undefined>;
  log: Logger;
}

/**
 * Wires SIP to the call engine: INVITEs from devices become calls, the engine's calls for an
 * account ring its registered devices, and everything inside dialogs goes to the user agent
 * core first.
 */
export class SipCalls {
  private readonly log: Logger;

  constructor(private readonly deps: SipCallsDeps) {
    this.log = deps.log;
    deps.sip.onStray((event) => deps.ua.receive(event));
    deps.sip.handle('INVITE', (event) => {
      if (deps.ua.receive(event)) return;
      void this.invite(event).catch((err: unknown) => {
        this.log.error({ event: 'sip.invite_failed', error: errorText(err) }, 'an INVITE could not be handled');
        if (!event.transaction.answered) event.respond(500);
      });
    });
    deps.calls.addDevices(async (account) =>
      (await deps.registrar.locate(account.id)).map((binding) => ({
        kind: 'sip' as const,
        // A device reached over a connection (or an outbound flow) is rung from the node that holds it.
        node: binding.flow !== null || binding.outbound ? binding.node : deps.node,
        accountId: account.id,
        aor: `${account.name}@${account.domain}`,
        contact: binding.contact,
        path: binding.path,
        flow: firstHop(binding),
        nat: behindNat(binding.contact, binding.host),
      })),
    );
    deps.calls.onTarget(
      'sip',
      (target, invite, replyTo) => {
        // A caller without a domain (a number that called in) is named in the callee's.
        const domain = invite.from.address.split('@')[1] ?? target.aor.split('@')[1] ?? 'invalid';
        return new SipUacLeg(deps.calls, this.log, deps.ua, target, invite, replyTo, domain, deps.remoteOptions?.(target));
      },
      (target) => ({ flavour: mediaOfTransport(target.flow.transport), nat: target.nat, accountId: target.accountId }),
    );
  }

  /**
   * A new INVITE: a device of one of our domains calls (it authenticates, 407), or someone
   * elsewhere calls one of our accounts (taken without authentication, as a domain's proxy
   * takes calls for its users).
   */
  private async invite(event: SipRequestEvent): Promise<void> {
    const { request, source } = event;
    let requestUri: Uri;
    let from: NameAddr;
    try {
      requestUri = parseUri(request.uri);
      from = parseNameAddr(request.headers.get('From') ?? '');
    } catch {
      event.respond(400, 'Bad Request (unreadable Request-URI or From)');
      return;
    }
    if (requestUri.kind !== 'sip' || from.uri.kind !== 'sip') {
      event.respond(416);
      return;
    }
    const callerDomain = from.uri.host.toLowerCase();
    // RFC 3891: an INVITE that takes the place of a call of ours (it goes to our Contact: no user to call).
    const replacing = request.headers.getAll('Replaces');
    // An INVITE to the Contact of an account's remote registration: for that account, whoever calls.
    const remoteAccount = requestUri.user !== undefined && this.deps.remoteContact ? await this.deps.remoteContact(requestUri.user) : undefined;
    const called = remoteAccount ?? (requestUri.user === undefined ? undefined : `${requestUri.user}@${requestUri.host}`.toLowerCase());
    let caller: Party;
    let accountId: number | undefined;
    if (remoteAccount !== undefined) {
      if (replacing.length > 0) {
        event.respond(403, 'Forbidden (only a device of ours, authenticated, may replace a call)');
        return;
      }
      // Nobody vouches for this From: a caller naming one of our domains is shown by the address
      // the INVITE came from instead, never as one of our users.
      const unverifiedLocal = await this.deps.im.isLocalDomain(callerDomain);
      const callerHost = unverifiedLocal ? (source.host.includes(':') ? `[${source.host}]` : source.host) : callerDomain;
      caller = { address: from.uri.user ? `${from.uri.user}@${callerHost}` : callerHost, name: from.displayName || undefined };
    } else if (await this.deps.im.isLocalDomain(callerDomain)) {
      // One of our users: the INVITE must prove it (RFC 3261 22.3, a proxy's 407).
      const verdict = await authenticateRequest({ auth: this.deps.auth, digest: this.deps.digest, log: this.log }, request, source, callerDomain, 'Proxy-Authorization', sameUri);
      if (verdict.kind === 'bad') return void event.respond(400, verdict.reason);
      if (verdict.kind === 'refused') return void event.respond(403, 'Forbidden (too many failed attempts; try again later)');
      if (verdict.kind === 'challenge') {
        const headers = this.deps.digest.challenge(callerDomain, { stale: verdict.why === 'stale' }).map((value) => ['Proxy-Authenticate', value] as [string, string]);
        event.respond(407, undefined, { headers });
        return;
      }
      const account = verdict.account;
      caller = { address: `${account.name}@${account.domain}`, name: from.displayName || account.realName || undefined };
      accountId = account.id;
    } else {
      if (replacing.length > 0) {
        event.respond(403, 'Forbidden (only a device of ours, authenticated, may replace a call)');
        return;
      }
      if (called === undefined || !(await this.deps.im.isLocalDomain(requestUri.host.toLowerCase()))) {
        event.respond(403, 'Forbidden (this server relays calls for its own users only)');
        return;
      }
      caller = { address: from.uri.user ? `${from.uri.user}@${callerDomain}` : callerDomain, name: from.displayName || undefined };
    }
    let replaces: Replaces | undefined;
    if (replacing.length > 0) {
      try {
        // RFC 3891 3: more than one is a 400 as well.
        if (replacing.length > 1) throw new Error('more than one Replaces');
        replaces = parseReplaces(replacing[0]!);
      } catch {
        event.respond(400, 'Bad Request (a Replaces header that does not read, or more than one)');
        return;
      }
    } else if (called === undefined) {
      event.respond(404, 'Not Found (the Request-URI has no user)');
      return;
    }
    const contactUri = contactUriOf(request.headers);
    const sdp = request.body.length > 0 ? request.body.toString('utf8') : undefined;
    const sdpHost = sdp === undefined ? undefined : sdpAddress(sdp);
    const nat = (contactUri !== undefined && behindNat(contactUri, source.host)) || (sdpHost !== undefined && behindNat(sdpHost, source.host));
    if (replaces !== undefined) {
      const found = replacedLeg(this.deps.ua, replaces, caller.address);
      if (!('leg' in found)) {
        event.respond(found.code, found.reason);
        return;
      }
      const server = this.deps.ua.acceptInvite(event, { pinToSource: nat });
      if (server) new SipReplacingLeg(this.deps.calls, this.log, this.deps.ua, server, caller, found.leg);
      return;
    }
    const server = this.deps.ua.acceptInvite(event, { pinToSource: nat });
    if (!server) return;
    new SipUasLeg(this.deps.calls, this.log, this.deps.ua, server, caller, accountId, called!, { flavour: mediaOfTransport(source.transport), nat });
  }
}

export interface SipStackDeps {
  sip: SipService;
  calls: CallService;
  im: ImService;
  auth: AuthService;
  accounts: AccountService;
  store: Store;
  bus: EventBus;
  node: string;
  /** The Digest algorithms challenges offer, in order (config sip.digestAlgorithms). */
  digestAlgorithms: readonly ('MD5' | 'SHA-256')[];
  /** Where calls to numbers and other domains go (config sip.trunk; '' = DNS). */
  trunk: string;
  /** What the trunk knows the server by (config sip.trunkUser, sip.trunkPassword), answering its 401/407. */
  trunkCredentials?: DigestClientCredentials;
  /** DNS for other domains' SIP servers (NAPTR, SRV, A/AAAA); the system's by default. */
  resolver?: DnsResolver;
  log: Logger;
  metrics?: Metrics;
  /** RFC 4028 session timers (config sip.sessionExpires, sip.minSE); RFC 4028's 1800 and 90 s by default. */
  sessionTimer?: SessionTimerSettings;
  /** See SipCallsDeps.remoteContact. */
  remoteContact?: (user: string) => Promise<string | undefined>;
}

/**
 * SIP's services on the SIP listeners: the registrar (REGISTER), the user agent core that owns
 * every dialog, and calls through the call engine. Digest nonces are made with a secret of the
 * whole cluster, so that any node verifies what another challenged.
 */
export async function startSipCalls(deps: SipStackDeps): Promise<{ registrar: Registrar; ua: UserAgentCore; close(): Promise<void> }> {
  const log = deps.log;
  const digest = new DigestAuthenticator(await deps.auth.clusterSecret('sip-digest-nonces'), { algorithms: deps.digestAlgorithms });
  const registrar = new Registrar({ store: deps.store, accounts: deps.accounts, auth: deps.auth, digest, bus: deps.bus, node: deps.node }, { log, metrics: deps.metrics });
  const { sip } = deps;
  const ua = new UserAgentCore({
    transactions: sip.transactions,
    send: (message, destination) => sip.send(message, destination),
    localAddress: (destination) => sip.localAddress(destination),
    // The next hop of a request outside a flow (a Route, a Contact): RFC 3263's first server.
    resolve: async (uri) => (await locateSipServers(uri, deps.resolver))[0]!,
    sessionTimer: deps.sessionTimer ?? DEFAULT_SESSION_TIMER,
    // The calls' limit (calls.callsPerNode) binds, not the dialogs': a call between two phones is
    // two dialogs here, and a transfer or a forked INVITE makes more for a while. At the default of
    // 10,000 dialogs, a node at 2,400 calls a second refused calls with 503 as soon as setting them
    // up took longer than a second.
    limits: { maxDialogs: Math.max(DEFAULT_DIALOG_LIMITS.maxDialogs, 3 * deps.calls.limits.callsPerNode) },
  });
  deps.metrics?.counter('ximssd_sip_sessions_expired_total', 'SIP calls ended because their session was not refreshed (RFC 4028)', () => ua.sessionsExpired);
  sip.handle('REGISTER', (event) => {
    void registrar.register(event.request, event.source).then((response) => sip.transactions.respond(event.transaction, response));
  });
  sip.handle('CANCEL', (event) => {
    if (!ua.receive(event)) sip.transactions.acceptCancel(event.transaction);
  });
  // The trunk's addresses as remoteTargets found them: only an INVITE sent there carries our credentials.
  const trunkHops = new Set<string>();
  const credentials = deps.trunkCredentials;
  const remoteOptions = (target: SipTarget): RemoteInviteOptions => {
    if (target.accountId !== undefined) return {};
    // As remoteTargets found the first server: the trunk's, else the domain's.
    const via = deps.trunk !== '' ? deps.trunk : target.contact;
    return {
      ...(credentials !== undefined && trunkHops.has(hopKey(target.flow)) ? { credentials } : {}),
      alternates: () => locateSipServers(via, deps.resolver),
    };
  };
  new SipCalls({ sip, ua, calls: deps.calls, registrar, auth: deps.auth, digest, im: deps.im, node: deps.node, remoteOptions, remoteContact: deps.remoteContact, log });
  deps.calls.routeRemote((address) => remoteTargets(address, deps, trunkHops));
  registrar.start();
  return {
    registrar,
    ua,
    async close() {
      ua.shutdown();
      await registrar.stop();
    },
  };
}

/**
 * Where a call for another domain or a phone number goes: through the trunk when there is
 * one (a number as its user at the trunk's host), else to the domain's SIP server found in
 * DNS (RFC 3263). The first server found is used; the others are tried after it fails (remoteOptions' alternates).
 */
async function remoteTargets(address: string, deps: SipStackDeps, trunkHops: Set<string>): Promise<Resolution> {
  const number = isPhoneNumber(address) ? address.trim().replace(/^tel:/i, '').replace(/[\-. ()]/g, '') : undefined;
  const bare = number === undefined ? addressOf(address) : undefined;
  let requestUri: string;
  let via: string;
  if (deps.trunk !== '') {
    const trunk = parseUri(deps.trunk);
    if (trunk.kind !== 'sip') return { code: 500, reason: 'sip.trunk is not a SIP URI' };
    requestUri = number !== undefined ? `sip:${number}@${trunk.host}${trunk.port ? `:${trunk.port}` : ''};user=phone` : `sip:${bare}`;
    via = deps.trunk;
  } else {
    if (number !== undefined || bare === undefined) return { code: 404, reason: 'calls to phone numbers need a SIP trunk (sip.trunk)' };
    requestUri = `sip:${bare}`;
    via = requestUri;
  }
  let hops: SipEndpoint[];
  try {
    hops = await locateSipServers(via, deps.resolver);
  } catch (err) {
    if (err instanceof SipLocateError) return { code: err.status, reason: err.message };
    throw err;
  }
  const hop = hops[0]!;
  if (deps.trunk !== '') trunkHops.add(hopKey({ transport: hop.transport ?? 'udp', host: hop.host, port: hop.port }));
  return {
    targets: [
      {
        kind: 'sip',
        node: deps.node,
        aor: number ?? bare!,
        contact: requestUri,
        path: [],
        flow: { transport: hop.transport ?? 'udp', host: hop.host, port: hop.port, flow: null },
      },
    ],
  };
}

/** What a SipUacLeg's INVITE adds for a target outside our accounts. */
type RemoteInviteOptions = Pick<InviteOptions, 'credentials' | 'alternates'>;

/** A next hop as a set key: transport, host and port. */
function hopKey(flow: { transport: string; host: string; port: number }): string {
  return `${flow.transport} ${flow.host.toLowerCase()} ${flow.port}`;
}
