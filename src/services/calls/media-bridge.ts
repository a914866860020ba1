/**
 * Media anchoring in the call engine. When the two sides of a call cannot exchange media
 * directly — a WebRTC browser (ICE, DTLS-SRTP) and a plain RTP phone — or the operator's policy
 * says relay, a `MediaBridge` sits between the call's branch and the callee's leg, on the
 * callee's node, and passes every SDP through a media gateway session (src/media/gateway.ts):
 * each side then sees an SDP of its own flavour with the server's addresses, and the RTP flows
 * through the server. Everything else passes through unchanged.
 *
 *   Call (branch port) ⇄ [outer] MediaBridge [inner] ⇄ callee's leg (XIMSS session, SIP device)
 *
 * Side 'a' of the gateway session is the caller's, side 'b' the callee's. Signals are handled
 * one after another (the gateway awaits sockets and DTLS), so their order is kept.
 */
import { errorText, type Logger } from '../../log.js';
import { flavourOf, MediaNegotiationError, type Flavour, type MediaGateway, type MediaSession, type SideName } from '../../media/gateway.js';
import type { CallRouter, Port, PortAddress } from './router.js';
import type { Signal } from './signal.js';

/**
 * When calls are anchored: `auto` (the default) when they must be — one side a WebRTC endpoint
 * and the other plain RTP, or a phone behind NAT; `always` for every call whose media is known
 * (the operator wants the media through the server: addresses kept private); `never`.
 */
export type MediaPolicy = 'auto' | 'always' | 'never';

/** What is known of one side's media: what it speaks, whether it is behind NAT, and whose it is. */
export interface MediaTraits {
  flavour?: Flavour;
  nat?: boolean;
  /** The account of ours it belongs to (for the per-account limit). */
  accountId?: number;
}

/** Opens the callee's leg, its signals going to `replyTo`. */
type LegOpener = (invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress) => Port | undefined;

/** The flavour of an SDP, undefined when it cannot be read. */
export function flavourOfSdp(sdp: string | undefined): Flavour | undefined {
  if (sdp === undefined) return undefined;
  // Without a DTLS fingerprint or a TLS profile it cannot be WebRTC: no need to parse it (every call asks).
  if (!/fingerprint|TLS/i.test(sdp)) return 'rtp';
  try {
    return flavourOf(sdp);
  } catch {
    return undefined;
  }
}

/**
 * Whether a call between the two sides is anchored under the policy, and the flavours to use
 * when it is (a side whose flavour is unknown is taken to speak the other's).
 */
export function anchoring(policy: MediaPolicy, caller: MediaTraits, callee: MediaTraits): { a: Flavour; b: Flavour } | undefined {
  if (policy === 'never') return undefined;
  const a = caller.flavour ?? callee.flavour;
  const b = callee.flavour ?? caller.flavour;
  if (a === undefined || b === undefined) return undefined;
  if (policy === 'always' || a !== b || caller.nat === true || callee.nat === true) return { a, b };
  return undefined;
}

/** Anchors calls on this node through one media gateway. */
export class MediaBridges {
  /** Bridges open now (for the metrics and the tests). */
  readonly open = new Set<MediaBridge>();
  /** Anchored calls of each account of ours (caller's or callee's) on this node. */
  private readonly perAccount = new Map<number, number>();

  constructor(
    private readonly router: CallRouter,
    readonly gateway: MediaGateway,
    readonly policy: MediaPolicy,
    private readonly log: Logger,
    /** Anchored calls one account may have at once on this node. */
    private readonly sessionsPerAccount = Number.POSITIVE_INFINITY,
  ) {}

  /** Counts a bridge against its accounts; false (nothing counted) when one of them is at its limit. */
  private take(accounts: readonly number[]): boolean {
    if (accounts.some((id) => (this.perAccount.get(id) ?? 0) >= this.sessionsPerAccount)) return false;
    for (const id of accounts) this.perAccount.set(id, (this.perAccount.get(id) ?? 0) + 1);
    return true;
  }

  /** A bridge closed: its accounts are counted down. */
  closed(bridge: MediaBridge): void {
    if (!this.open.delete(bridge)) return;
    for (const id of bridge.accounts) {
      const left = (this.perAccount.get(id) ?? 1) - 1;
      if (left <= 0) this.perAccount.delete(id);
      else this.perAccount.set(id, left);
    }
  }

  /**
   * Offers a new call to a leg of this node, through a bridge when its media must be anchored:
   * returns the bridge's port, or undefined when the call needs none (the caller opens the leg).
   */
  interpose(callee: MediaTraits, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress, openLeg: LegOpener): Port | undefined {
    const flavours = anchoring(this.policy, { flavour: flavourOfSdp(invite.sdp) ?? invite.media, nat: invite.nat }, callee);
    if (!flavours) return undefined;
    const accounts = [...new Set([invite.callerAccountId, callee.accountId].filter((id): id is number => id !== undefined))];
    const counted = this.take(accounts);
    const bridge = new MediaBridge(this.router, this, flavours, invite, replyTo, this.log, counted ? accounts : []);
    if (counted) this.open.add(bridge);
    bridge.start(openLeg, counted ? undefined : `an account may have ${this.sessionsPerAccount} calls through the media gateway at once`);
    return bridge;
  }
}

const OTHER: Record<SideName, SideName> = { a: 'b', b: 'a' };
/** Signals after which a side has nothing more to say in this call. */
const FINAL = new Set<Signal['kind']>(['bye', 'cancel', 'gone', 'reject']);

export class MediaBridge implements Port {
  /** Faces the call's branch (side a). */
  private readonly outer: PortAddress;
  /** Faces the callee's leg (side b). */
  private readonly inner: PortAddress;
  private callSide: PortAddress;
  private leg: PortAddress | undefined;
  private legPort: Port | undefined;
  private session: MediaSession | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** Which side's offer waits for the other side's answer. */
  private offerFrom: SideName | undefined;
  /** The last SDP each side sent and what the other side got for it (a 200 repeating its 183's answer). */
  private readonly last: Partial<Record<SideName, { sdp: string; out: string }>> = {};
  private connected = false;
  private closed = false;

  constructor(
    private readonly router: CallRouter,
    private readonly owner: MediaBridges,
    readonly flavours: { a: Flavour; b: Flavour },
    private readonly invite: Extract<Signal, { kind: 'invite' }>,
    replyTo: PortAddress,
    private readonly log: Logger,
    /** The accounts it is counted against. */
    readonly accounts: readonly number[],
  ) {
    this.callSide = replyTo;
    this.outer = router.open(this);
    this.inner = router.open({ receive: (signal, from) => this.fromLeg(signal, from) });
  }

  /** Opens the gateway session, turns the invite's offer and opens the leg with it; or refuses the call (503, `refusal`). */
  start(openLeg: LegOpener, refusal?: string): void {
    this.enqueue(async () => {
      if (refusal !== undefined) {
        this.log.warn({ event: 'media.refused', callId: this.invite.callId, error: refusal }, 'a call could not be anchored');
        this.toCall({ kind: 'reject', code: 503, reason: refusal });
        return this.close();
      }
      try {
        this.session = this.owner.gateway.open(`${this.invite.callId}.${this.outer.id}`);
      } catch (err) {
        this.log.warn({ event: 'media.refused', callId: this.invite.callId, error: errorText(err) }, 'a call could not be anchored');
        this.toCall({ kind: 'reject', code: 503, reason: 'no media resources' });
        return this.close();
      }
      this.session.on('idle', () => this.enqueue(async () => this.idle()));
      // A digit one side sent in its audio that the other does not take there: it goes as a signal (XIMSS callDTMF, SIP INFO).
      this.session.on('digit', (side: SideName, digit: string) => this.enqueue(async () => {
        if (!this.closed) this.answerBack(OTHER[side], { kind: 'dtmf', digits: digit });
      }));
      let invite = this.invite;
      if (invite.sdp !== undefined) {
        const turned = await this.turn('a', 'offer', invite.sdp);
        if ('code' in turned) {
          this.toCall({ kind: 'reject', code: turned.code, reason: turned.reason });
          return this.close();
        }
        invite = { ...invite, sdp: turned.sdp, media: this.flavours.b };
      } else invite = { ...invite, media: this.flavours.b };
      this.log.info({ event: 'media.anchored', callId: invite.callId, caller: this.flavours.a, callee: this.flavours.b }, 'call media anchored at the server');
      try {
        this.legPort = openLeg(invite, this.inner);
      } catch (err) {
        this.log.error({ event: 'media.failed', callId: invite.callId, error: errorText(err) }, 'the leg of an anchored call could not be opened');
      }
      if (!this.legPort) {
        this.toCall({ kind: 'gone' });
        await this.close();
      }
    });
  }

  /** A signal from the call (the caller's side). */
  receive(signal: Signal, from: PortAddress): void {
    this.callSide = from;
    this.enqueue(async () => {
      if (this.dtmfInMedia('a', signal)) return;
      const turned = await this.translate('a', signal);
      if (turned) this.toLeg(turned);
      if (FINAL.has(signal.kind)) await this.close();
    });
  }

  private fromLeg(signal: Signal, from: PortAddress): void {
    if (from.id !== '-') this.leg = from;
    this.enqueue(async () => {
      if (this.dtmfInMedia('b', signal)) return;
      const turned = await this.translate('b', signal);
      if (turned) this.toCall(turned);
      if (signal.kind === 'answer') this.connected = true;
      if (FINAL.has(signal.kind) || (signal.kind === 'redirect' && !signal.fork)) await this.close();
    });
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch(async (err: unknown) => {
      // Not expected (turn() answers every failure of the gateway): the call's media is let go rather than left half-done.
      this.log.error({ event: 'media.failed', callId: this.invite.callId, error: errorText(err) }, 'anchored call media failed');
      await this.close().catch(() => undefined);
    });
  }

  /**
   * A signal from side `from` with its SDP turned for the other side; undefined when it is not
   * to go on (the sender was answered with a refusal instead).
   */
  private async translate(from: SideName, signal: Signal): Promise<Signal | undefined> {
    // A refused offer leaves the media as it was (RFC 3264 4): the gateway forgets it too.
    if ((signal.kind === 'updated' || signal.kind === 'ack') && signal.code !== undefined && this.offerFrom === OTHER[from]) {
      this.offerFrom = undefined;
      await this.session?.rollback();
    }
    if (!('sdp' in signal) || signal.sdp === undefined || this.closed) {
      // Without a media session the SDP is meaningless to the other side.
      return this.closed && 'sdp' in signal && signal.sdp !== undefined ? { ...signal, sdp: undefined } : signal;
    }
    const sdp = signal.sdp;
    switch (signal.kind) {
      case 'progress':
      case 'answer': {
        const turned = await this.turn(from, signal.offer ? 'offer' : 'answer', sdp);
        if ('sdp' in turned) return { ...signal, sdp: turned.sdp };
        // The callee's media cannot be bridged: it is let go, and the call hears a refusal.
        this.toLeg(signal.kind === 'answer' ? { kind: 'bye', code: turned.code, reason: turned.reason } : { kind: 'cancel', reason: turned.reason });
        await this.close();
        return { kind: 'reject', code: turned.code, reason: turned.reason };
      }
      case 'update': {
        const turned = await this.turn(from, 'offer', sdp);
        if ('sdp' in turned) return { ...signal, sdp: turned.sdp };
        this.answerBack(from, { kind: 'updated', tag: signal.tag, code: turned.code, reason: turned.reason });
        return undefined;
      }
      case 'updated': {
        const turned = await this.turn(from, signal.offer ? 'offer' : 'answer', sdp);
        if ('sdp' in turned) return { ...signal, sdp: turned.sdp };
        return { ...signal, sdp: undefined, offer: undefined, code: turned.code, reason: turned.reason };
      }
      case 'ack': {
        const turned = await this.turn(from, 'answer', sdp);
        if ('sdp' in turned) return { ...signal, sdp: turned.sdp };
        return { ...signal, sdp: undefined, code: turned.code, reason: turned.reason };
      }
      default:
        return signal;
    }
  }

  /**
   * Passes an offer or an answer of side `from` through the gateway: the SDP for the other
   * side, or why it cannot be bridged (488: nothing to relay in it; 500: the gateway failed,
   * no port left, say). An answer that repeats one already passed (a 200 after a 183 with the
   * same SDP) gets the same SDP as before.
   */
  private async turn(from: SideName, role: 'offer' | 'answer', sdp: string): Promise<{ sdp: string } | { code: number; reason: string }> {
    const session = this.session;
    if (!session) return { code: 500, reason: 'the media session is gone' };
    try {
      let out: string;
      if (role === 'offer') {
        out = await session.offer(from, sdp, this.flavours[OTHER[from]]);
        this.offerFrom = from;
      } else if (this.offerFrom === OTHER[from]) {
        out = await session.answer(from, sdp);
        this.offerFrom = undefined;
      } else {
        // No offer waits: the answer was passed already (or there was none to answer).
        const last = this.last[from]?.out;
        return last === undefined ? { code: 488, reason: 'an answer to no offer' } : { sdp: last };
      }
      this.last[from] = { sdp, out };
      return { sdp: out };
    } catch (err) {
      if (err instanceof MediaNegotiationError) {
        this.log.info({ event: 'media.not_bridged', callId: this.invite.callId, from, role, error: err.message }, 'media could not be bridged');
        return { code: 488, reason: `the media cannot be bridged: ${err.message}` };
      }
      this.log.error({ event: 'media.failed', callId: this.invite.callId, from, role, error: errorText(err) }, 'anchored call media failed');
      return { code: 500, reason: 'the media gateway failed' };
    }
  }

  /**
   * DTMF for the other side goes in its audio as RFC 4733 events when it accepted them (the
   * sender is told it went); otherwise the signal passes on, for its binding to send (SIP INFO).
   */
  private dtmfInMedia(from: SideName, signal: Signal): boolean {
    if (signal.kind !== 'dtmf' || this.closed || !this.session || !this.connected) return false;
    const sending = this.session.sendDtmf(OTHER[from], signal.digits);
    if (!sending) return false;
    this.log.debug({ event: 'media.dtmf', callId: this.invite.callId, to: OTHER[from], digits: signal.digits.length }, 'DTMF sent as RFC 4733 events');
    // Told once the digits went (they take 160 ms each), without holding up the call's other signals.
    void sending.then(
      () => signal.op && this.answerBack(from, { kind: 'result', op: signal.op }),
      () => signal.op && this.answerBack(from, { kind: 'result', op: signal.op, code: 500, reason: 'the digits could not be sent' }),
    );
    return true;
  }

  /** No RTP either way for a while on a connected call that is not on hold: both sides are hung up (as rtpengine's timeout does). */
  private async idle(): Promise<void> {
    if (!this.connected || this.closed || !this.session) return;
    const stats = this.session.stats();
    // On hold (sendonly, recvonly, inactive) a phone may well send nothing: only a call both sides say is live is hung up.
    if (stats.a?.direction !== 'sendrecv' || stats.b?.direction !== 'sendrecv') return;
    const reason = 'no media from either side';
    this.log.info({ event: 'media.timeout', callId: this.invite.callId }, 'an anchored call without media was hung up');
    this.toCall({ kind: 'bye', reason });
    this.toLeg({ kind: 'bye', reason });
    await this.close();
  }

  private answerBack(to: SideName, signal: Signal): void {
    if (to === 'a') this.toCall(signal);
    else this.toLeg(signal);
  }

  private toCall(signal: Signal): void {
    this.router.send(this.callSide, signal, this.outer);
  }

  private toLeg(signal: Signal): void {
    if (this.leg) return this.router.send(this.leg, signal, this.inner);
    const port = this.legPort;
    // Not heard from yet: the leg of this node is handed the signal directly, in a later tick.
    if (port) queueMicrotask(() => port.receive(signal, this.inner));
  }

  /** Closes the gateway session; the ports stay a little for late signals, passed on without SDP. */
  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.owner.closed(this);
    const release = setTimeout(() => {
      this.router.release(this.outer);
      this.router.release(this.inner);
    }, 32_000);
    release.unref();
    await this.session?.close().catch((err: unknown) => {
      this.log.error({ event: 'media.failed', callId: this.invite.callId, error: errorText(err) }, 'a media session could not be closed');
    });
  }
}
