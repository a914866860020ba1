import type { Port, PortAddress } from '../services/calls/router.js';
import type { CallService } from '../services/calls/service.js';
import { AttendedTransfer, BlindTransfer, type Junction } from '../services/calls/junction.js';
import { reasonOf, type MediaFlavour, type Party, type SdpText, type Signal } from '../services/calls/signal.js';
import { flavourOfSdp } from '../services/calls/media-bridge.js';
import { behindNat, sdpAddress } from '../services/calls/nat.js';
import { ServiceError } from '../services/errors.js';
import type { ImService } from '../services/im/service.js';
import { XimssImClient } from './im-client.js';
import { eventOfDigit } from '../media/dtmf.js';
import { el, type XmlElement } from '../xml/element.js';
import { sdpFromText, sdpFromXml, sdpTextElement, sdpToText, sdpToXml } from './sdp-xml.js';
import type { Session } from './session.js';
import { randomId } from '../services/ids.js';

/**
 * One call of a XIMSS session (spec "Signaling"), as a leg of the call engine: the client's
 * requests become signals (src/services/calls/signal.ts) and the signals from the other side
 * become data messages. The spec asks the client to answer callProvisioned, callConnected
 * and callUpdateRequest with callUpdateAccept or callUpdateReject; the leg keeps those
 * messages in order and matches each answer to the oldest one waiting. Only an offer needs
 * an answer: one that came with nothing to answer is acknowledged here at once, so a client
 * that never sends callUpdateAccept still gets its call.
 */

export type LegState = 'calling' | 'alerting' | 'connected' | 'ended';

/** A message sent to the client that its callUpdateAccept/callUpdateReject answers. */
interface Waiting {
  kind: 'early' | 'update' | 'solicit';
  tag: string | undefined;
  /** It carried an offer: callUpdateAccept must carry the answer. */
  offer: boolean;
}

/** The session's calls, and the SDP presentation it chose (signalBind with sdpText). */
export interface SessionCalls {
  readonly legs: Map<string, XimssCallLeg>;
  sdpFormat: 'xml' | 'text';
  /**
   * The media the client speaks, from its signalBind SDP or its callStart media="WebRTC":
   * calls with a party that speaks the other are anchored at the server (media-bridge.ts).
   */
  media?: MediaFlavour;
  /** The number of the next server-generated callLeg (inp…). */
  nextIncoming: number;
}

export function sessionCalls(session: Session): SessionCalls {
  return (session.calls ??= { legs: new Map(), sdpFormat: 'xml', nextIncoming: 1 });
}

/** The SDP of a request body (`<sdp>` in the XML presentation or with text, or `<sdpText>`), as text. */
export function sdpOfRequest(request: XmlElement): SdpText | undefined {
  const element = request.element('sdp') ?? request.element('sdpText');
  if (!element) return undefined;
  return sdpToText(sdpFromXml(element));
}

const MAX_LEGS = 64;

export class XimssCallLeg implements Port {
  state: LegState;
  readonly address: PortAddress;
  /** The call's port for this leg (where the leg's signals go). */
  peer: PortAddress | undefined;
  callId: string | undefined;
  /** Our tag toward the caller (incoming calls). */
  readonly tag = randomId(4);
  private readonly waiting: Waiting[] = [];
  /** A callUpdate of ours waits for its callUpdated. */
  private updating = false;
  /** Incoming: the invite carried an offer. */
  private inviteOffer = false;
  /** Incoming: an answer or offer went with callProvision. */
  private earlySdp = false;
  /** Incoming: our offer (in callProvision or callAccept) waits for the caller's answer. */
  private offerPending = false;
  private readonly ops = new Map<string, true>();
  private released = false;
  /** Who is on the other side. */
  remote: Party = { address: '' };
  /** A transfer of this call in progress. */
  private transfer: Junction | undefined;

  private constructor(
    private readonly calls: CallService,
    private readonly session: Session,
    readonly callLeg: string,
    readonly direction: 'out' | 'in',
  ) {
    this.state = direction === 'out' ? 'calling' : 'alerting';
    this.address = calls.router.open(this);
    const legs = sessionCalls(session).legs;
    legs.set(callLeg, this);
  }

  /** callStart: a new outgoing call from the session. */
  static start(calls: CallService, session: Session, callLeg: string, to: string, peerName: string | undefined, sdp: SdpText | undefined, webRtc = false): XimssCallLeg {
    const legs = sessionCalls(session).legs;
    if (legs.has(callLeg)) throw new ServiceError(`the session has a call ${callLeg} already (callKill releases it)`);
    if (legs.size >= MAX_LEGS) throw new ServiceError(`a session may have ${MAX_LEGS} calls`);
    const leg = new XimssCallLeg(calls, session, callLeg, 'out');
    const account = session.account;
    const from: Party = { address: `${account.name}@${account.domain}`, name: account.realName || undefined };
    const exclude = session.im?.bound ? { accountId: account.id, resource: session.im.resource } : undefined;
    const state = sessionCalls(session);
    if (webRtc) state.media = 'webrtc';
    const media = flavourOfSdp(sdp) ?? (webRtc ? 'webrtc' : state.media);
    // A plain client offering a private address it does not connect from is behind NAT.
    const offeredAddress = sdp === undefined ? undefined : sdpAddress(sdp);
    const nat = media === 'rtp' && offeredAddress !== undefined && behindNat(offeredAddress, session.remoteAddress.replace(/^::ffff:/, ''));
    try {
      const placed = calls.place({ caller: leg.address, accountId: account.id, from, to, peerName, sdp, exclude, media, nat });
      leg.peer = placed.address;
      leg.callId = placed.callId;
    } catch (err) {
      leg.release();
      throw err;
    }
    leg.offerPending = sdp !== undefined;
    leg.remote = { address: to, name: peerName };
    return leg;
  }

  /** An incoming call for the session (the call engine found it bound). */
  static incoming(calls: CallService, session: Session, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress): XimssCallLeg | undefined {
    const state = sessionCalls(session);
    if (state.legs.size >= MAX_LEGS) return undefined;
    let callLeg: string;
    do callLeg = `inp${String(state.nextIncoming++).padStart(3, '0')}`;
    while (state.legs.has(callLeg));
    const leg = new XimssCallLeg(calls, session, callLeg, 'in');
    leg.peer = replyTo;
    leg.callId = invite.callId;
    leg.inviteOffer = invite.sdp !== undefined;
    leg.remote = invite.from;
    leg.send({ kind: 'trying' });
    const suppl = invite.suppl && Object.keys(invite.suppl).length > 0
      ? el('suppl', undefined, ...Object.entries(invite.suppl).map(([key, value]) => el('subKey', { key }, value)))
      : undefined;
    leg.show(
      el('callIncoming', { callLeg, peer: invite.from.address, peerName: invite.from.name, callId: invite.callId, transferredBy: invite.transferredBy }, ...leg.sdp(invite.sdp), ...(suppl ? [suppl] : [])),
    );
    return leg;
  }

  // ---------------------------------------------------------------------------------------
  // From the other side

  receive(signal: Signal, from: PortAddress): void {
    if (this.released) return;
    if (from.id !== '-') this.peer = from;
    const { callLeg } = this;
    switch (signal.kind) {
      case 'progress':
        if (this.state !== 'calling') return;
        this.offerPending = false;
        this.wait({ kind: 'early', tag: signal.tag, offer: signal.offer === true });
        this.show(el('callProvisioned', { callLeg, callId: this.callId, tag: signal.tag }, ...this.sdp(signal.sdp)));
        return;
      case 'answer':
        if (this.state !== 'calling') return;
        this.state = 'connected';
        this.offerPending = false;
        this.waiting.length = 0;
        if (signal.peer) this.remote = signal.peer;
        this.wait({ kind: 'early', tag: signal.tag, offer: signal.offer === true });
        this.show(el('callConnected', { callLeg, callId: this.callId, tag: signal.tag, peer: signal.peer?.address, peerName: signal.peer?.name }, ...this.sdp(signal.sdp)));
        return;
      case 'reject':
        return this.disconnected(signal.code, signal.reason ?? reasonOf(signal.code));
      case 'redirect':
        // A leg of ours never gets this: the engine follows redirections itself.
        return;
      case 'cancel':
        return this.disconnected(undefined, signal.reason);
      case 'bye':
        return this.disconnected(signal.code, signal.reason);
      case 'gone':
        return this.disconnected(481, 'the other side is gone');
      case 'ack':
        // The caller's answer to an offer we sent with callProvision or callAccept.
        if (!this.offerPending) return;
        this.offerPending = false;
        if (signal.code !== undefined) this.show(el('callUpdated', { callLeg, signalCode: String(signal.code), errorText: signal.reason ?? reasonOf(signal.code) }));
        else this.show(el('callUpdated', { callLeg }, ...this.sdp(signal.sdp)));
        return;
      case 'update':
        if (signal.sdp !== undefined) {
          this.wait({ kind: 'update', tag: signal.tag, offer: true });
          this.show(el('callUpdateRequest', { callLeg, callId: this.callId, tag: signal.tag }, ...this.sdp(signal.sdp)));
        } else {
          this.wait({ kind: 'solicit', tag: signal.tag, offer: false });
          this.show(el('callUpdateSolicited', { callLeg, tag: signal.tag }));
        }
        return;
      case 'updated':
        if (this.updating) {
          this.updating = false;
          if (signal.code !== undefined) this.show(el('callUpdated', { callLeg, signalCode: String(signal.code), errorText: signal.reason ?? reasonOf(signal.code) }));
          else this.show(el('callUpdated', { callLeg }, ...this.sdp(signal.sdp)));
          if (signal.offer && this.peer) this.send({ kind: 'ack', tag: signal.tag, code: 488, reason: 'an offer was not asked for' });
        }
        return;
      case 'dtmf':
        this.show(el('callDTMF', { callLeg }, dtmfCode(signal.digits)));
        if (signal.op) this.send({ kind: 'result', op: signal.op });
        return;
      case 'info':
        this.show(el('callInfo', { callLeg }, infoElement(signal.contentType, signal.body)));
        if (signal.op) this.send({ kind: 'result', op: signal.op });
        return;
      case 'result':
        if (!this.ops.delete(signal.op)) return;
        if (signal.code === undefined) this.show(el('callOpCompleted', { callLeg }));
        else this.show(el('callOpFailed', { callLeg, signalCode: String(signal.code), errorText: signal.reason ?? reasonOf(signal.code) }));
        return;
      case 'transferred':
        if (signal.callId) this.callId = signal.callId;
        this.remote = signal.peer;
        this.show(el('callTransferred', { callLeg, peer: signal.peer.address, peerName: signal.peer.name, callId: signal.callId }));
        return;
      case 'invite':
      case 'trying':
        return;
    }
  }

  /**
   * A message the client is to accept or reject. Older ones that needed no answer are dropped:
   * a client that does not acknowledge those must still have its next answer matched right.
   */
  private wait(entry: Waiting): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const w = this.waiting[i]!;
      if (!w.offer && w.kind !== 'solicit') this.waiting.splice(i, 1);
    }
    this.waiting.push(entry);
  }

  private disconnected(code: number | undefined, reason: string | undefined): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.transfer?.abort('the call ended');
    this.waiting.length = 0;
    this.show(el('callDisconnected', { callLeg: this.callLeg, signalCode: code === undefined ? undefined : String(code), errorText: reason }));
  }

  // ---------------------------------------------------------------------------------------
  // From the client

  /**
   * callProvision: the phone rings, with early media (an answer, which a later callProvision
   * may replace, as examples 036–038 show devices doing) or an offer when the call came
   * without one. Only a provision with SDP has an outcome to tell: callUpdated, at once for
   * an answer, with the caller's answer for an offer (the examples show none for a plain one).
   */
  provision(sdp: SdpText | undefined): void {
    this.expect('in', 'alerting', 'callProvision');
    if (sdp !== undefined && this.earlySdp && !this.inviteOffer) throw new ServiceError('the offer was sent with callProvision already');
    const offer = sdp !== undefined && !this.inviteOffer;
    if (sdp !== undefined) this.earlySdp = true;
    this.send({ kind: 'progress', tag: this.tag, sdp, offer });
    if (offer) this.offerPending = true;
    else if (sdp !== undefined) this.show(el('callUpdated', { callLeg: this.callLeg }));
  }

  /** callAccept: the user answered. */
  accept(sdp: SdpText | undefined): void {
    this.expect('in', 'alerting', 'callAccept');
    if (this.earlySdp && sdp !== undefined) throw new ServiceError('the SDP went with callProvision: callAccept carries none');
    if (!this.earlySdp && sdp === undefined) throw new ServiceError(this.inviteOffer ? 'callAccept needs the answer SDP' : 'callAccept needs an offer SDP (the call came without one)');
    const offer = sdp !== undefined && !this.inviteOffer;
    this.state = 'connected';
    this.send({ kind: 'answer', tag: this.tag, sdp, offer, peer: this.self() });
    if (offer) this.offerPending = true;
    else this.show(el('callUpdated', { callLeg: this.callLeg }));
  }

  /** callReject: 486 busy here, 6xx declined everywhere (default 603). */
  reject(code: number): void {
    this.expect('in', 'alerting', 'callReject');
    this.state = 'ended';
    this.send({ kind: 'reject', code, reason: reasonOf(code) });
  }

  /** callRedirect: the call goes to other addresses (with `fork`, it keeps ringing here too). */
  redirect(targets: string[], fork: boolean): void {
    this.expect('in', 'alerting', 'callRedirect');
    if (!fork) this.state = 'ended';
    this.send({ kind: 'redirect', targets, fork });
  }

  /** callUpdate: a new offer (none: nothing changes), or the offer a callUpdateSolicited asked for. */
  update(sdp: SdpText | undefined, tag: string | undefined): void {
    if (this.state === 'ended' || this.state === 'alerting') throw new ServiceError(`the call ${this.callLeg} is ${this.state === 'ended' ? 'over' : 'not accepted yet'}`);
    const solicited = this.waiting.findIndex((w) => w.kind === 'solicit');
    if (solicited !== -1 && sdp !== undefined) {
      const [w] = this.waiting.splice(solicited, 1);
      this.send({ kind: 'updated', tag: w!.tag, sdp, offer: true });
      // The answer comes as `ack`, shown as callUpdated.
      this.offerPending = true;
      return;
    }
    if (sdp === undefined) {
      this.show(el('callUpdated', { callLeg: this.callLeg }));
      return;
    }
    if (this.updating) throw new ServiceError('a callUpdate of this call is in progress');
    this.updating = true;
    this.send({ kind: 'update', tag, sdp });
  }

  /** callUpdateAccept: the answer to what the oldest waiting message asked. */
  updateAccept(sdp: SdpText | undefined): void {
    if (this.state === 'ended') throw new ServiceError(`the call ${this.callLeg} is over`);
    const w = this.waiting[0];
    if (!w) {
      if (sdp !== undefined) throw new ServiceError('there is no offer to answer');
      return; // a client that acknowledges everything: nothing was waiting
    }
    if (w.kind === 'solicit') {
      if (sdp === undefined) throw new ServiceError('callUpdateSolicited asks for an offer (callUpdate)');
      this.waiting.shift();
      this.send({ kind: 'updated', tag: w.tag, sdp, offer: true });
      this.offerPending = true;
      return;
    }
    if (w.offer && sdp === undefined) throw new ServiceError('the message carried an offer: callUpdateAccept needs the answer SDP');
    this.waiting.shift();
    if (!w.offer) return; // an answer or no SDP came: there is nothing to answer
    this.send(w.kind === 'update' ? { kind: 'updated', tag: w.tag, sdp } : { kind: 'ack', tag: w.tag, sdp });
  }

  /** callUpdateReject: the oldest waiting offer is refused (default 488). */
  updateReject(code: number, reason: string | undefined): void {
    if (this.state === 'ended') throw new ServiceError(`the call ${this.callLeg} is over`);
    const w = this.waiting.shift();
    if (!w) throw new ServiceError('there is nothing to reject');
    const text = reason ?? reasonOf(code);
    if (w.kind === 'update' || w.kind === 'solicit') this.send({ kind: 'updated', tag: w.tag, code, reason: text });
    else if (w.offer) {
      this.send({ kind: 'ack', tag: w.tag, code, reason: text });
      // An answered call whose offer cannot be taken cannot go on (RFC 3261 13.2.2.4: ACK, then BYE).
      if (this.state === 'connected') this.hangUp(code, text);
    }
  }

  /** callSendDTMF / callSendInfo: for the connected peer; callOpCompleted/callOpFailed tell how it went. */
  sendOp(signal: { kind: 'dtmf'; digits: string } | { kind: 'info'; contentType: string; body: string }): void {
    if (this.state !== 'connected') throw new ServiceError(`the call ${this.callLeg} is not connected`);
    const op = randomId(6);
    this.ops.set(op, true);
    this.send({ ...signal, op });
  }

  /**
   * callTransfer: the peer is connected to `target` (blind), or to the peer of `other`
   * (attended); this call (and `other`) then disconnect. callOpFailed tells a failure.
   */
  transferTo(target: string | undefined, other: XimssCallLeg | undefined): void {
    if (this.state !== 'connected' || !this.peer) throw new ServiceError(`the call ${this.callLeg} is not connected`);
    if (this.transfer) throw new ServiceError(`the call ${this.callLeg} is being transferred`);
    const failed = (code: number, reason: string): void => {
      this.transfer = undefined;
      this.show(el('callOpFailed', { callLeg: this.callLeg, signalCode: String(code), errorText: reason }));
    };
    if (other) {
      if (other === this) throw new ServiceError('otherLeg is this call');
      if (other.state !== 'connected' || !other.peer || other.transfer) throw new ServiceError(`the call ${other.callLeg} is not connected`);
      const junction = new AttendedTransfer(this.calls, this.peer, other.peer, this.remote, other.remote, (outcome) => {
        if (!outcome.ok) return failed(outcome.code, outcome.reason);
        this.handedOver();
        other.handedOver();
      });
      this.transfer = junction;
      other.transfer = junction;
      return;
    }
    this.transfer = new BlindTransfer(this.calls, this.peer, this.remote, target!, this.self(), (outcome) => {
      if (!outcome.ok) return failed(outcome.code, outcome.reason);
      this.handedOver();
    });
  }

  /** A transfer took this call over: the session is out of it. */
  private handedOver(): void {
    this.transfer = undefined;
    this.peer = undefined;
    this.disconnected(undefined, 'transferred');
  }

  /** callKill: cancels, rejects or hangs up, as the state asks, and forgets the call. */
  kill(): void {
    switch (this.state) {
      case 'calling':
        this.send({ kind: 'cancel', reason: 'cancelled by the caller' });
        break;
      case 'alerting':
        this.send({ kind: 'reject', code: 603, reason: reasonOf(603) });
        break;
      case 'connected':
        this.send({ kind: 'bye' });
        break;
    }
    this.state = 'ended';
    this.release();
  }

  /** The session ends: its calls end with it. */
  sessionEnded(): void {
    if (this.state !== 'ended') this.kill();
    else this.release();
  }

  private hangUp(code: number, reason: string): void {
    this.send({ kind: 'bye', code, reason });
    this.disconnected(code, reason);
  }

  private expect(direction: 'in' | 'out', state: LegState, op: string): void {
    if (this.direction !== direction) throw new ServiceError(`${op} is for incoming calls, and ${this.callLeg} is an outgoing one`);
    if (this.state !== state) throw new ServiceError(`the call ${this.callLeg} is ${this.state === 'ended' ? 'over' : 'answered already'}`);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.calls.router.release(this.address);
    const legs = sessionCalls(this.session).legs;
    if (legs.get(this.callLeg) === this) legs.delete(this.callLeg);
  }

  private send(signal: Signal): void {
    if (this.peer) this.calls.router.send(this.peer, signal, this.address);
  }

  private self(): Party {
    const account = this.session.account;
    return { address: `${account.name}@${account.domain}`, name: account.realName || undefined };
  }

  private show(message: XmlElement): void {
    this.session.sendAsync(message);
  }

  /** The SDP element for the client, in the presentation it chose. */
  private sdp(text: SdpText | undefined): XmlElement[] {
    if (text === undefined) return [];
    try {
      const description = sdpFromText(text);
      return [sessionCalls(this.session).sdpFormat === 'text' ? sdpTextElement(description) : sdpToXml(description)];
    } catch {
      // Unreadable for the XML presentation: the client gets the text as it came.
      return [el('sdpText', undefined, text)];
    }
  }
}

/** callDTMF's body: the digit's number (10 for *, 11 for #, as callSendDTMF takes them: RFC 4733's event codes). */
function dtmfCode(digits: string): string {
  return [...digits].map((d) => String(eventOfDigit(d) ?? '')).join(',');
}

/** callInfo's body: a MIME element with the INFO's type and content. */
function infoElement(contentType: string, body: string): XmlElement {
  const [type, subtype] = contentType.split(';', 1)[0]!.trim().split('/');
  return el('MIME', { type: type || 'application', subtype: subtype || undefined }, body);
}

/** Lets the call engine ring the XIMSS sessions of this node that are bound (signalBind). */
export function ringBoundSessions(calls: CallService, im: ImService): void {
  const boundClient = (target: { accountId: number; resource: string }): XimssImClient | undefined => {
    const client = im.router.resource(target.accountId, target.resource)?.client;
    return client instanceof XimssImClient && client.bound && !client.session.closed ? client : undefined;
  };
  calls.onTarget(
    'ximss',
    (target, invite, replyTo) => {
      const client = boundClient(target);
      return client ? XimssCallLeg.incoming(calls, client.session, invite, replyTo) : undefined;
    },
    (target) => {
      const client = boundClient(target);
      return { flavour: client ? sessionCalls(client.session).media : undefined, accountId: target.accountId };
    },
  );
}

/**
 * The media a client's signalBind SDP says it speaks: WebRTC when it says so (`webrtc: yes`, a
 * secure profile such as RTP/SAVPF, or DTLS), else plain RTP.
 */
export function mediaOfBindSdp(sdp: SdpText): MediaFlavour {
  if (/^a=webrtc:\s*yes\b/im.test(sdp) || /^m=\S+ \S+ \S*(SAVP|TLS)/im.test(sdp)) return 'webrtc';
  return flavourOfSdp(sdp) ?? 'rtp';
}
