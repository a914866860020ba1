import type { CallRouter, Port, PortAddress } from './router.js';
import type { CallService } from './service.js';
import { reasonOf, type Party, type Signal } from './signal.js';

/** How a transfer or a makeCall ended. */
export type { Junction };

export type JunctionOutcome = { ok: true } | { ok: false; code: number; reason: string };

/**
 * Joins two calls back to back: after its set-up, whatever one side says goes to the other,
 * as they are (an update, its answer, DTMF, INFO, the hang-up). It takes the place of a leg
 * in a call by sending into that call's port (a call follows whoever speaks for a side), and
 * it leads a new call as its caller. Transfers and makeCall are its set-ups (RFC 3725's
 * third-party call control, flow I: the new party's offer is asked for with an INVITE
 * without SDP, and the answer goes back in the ACK).
 */
abstract class Junction implements Port {
  readonly address: PortAddress;
  /** The two call ports once joined. */
  protected joined: [PortAddress, PortAddress] | undefined;
  protected over = false;

  constructor(
    protected readonly calls: CallService,
    protected readonly done: (outcome: JunctionOutcome) => void,
  ) {
    this.address = calls.router.open(this);
  }

  protected get router(): CallRouter {
    return this.calls.router;
  }

  receive(signal: Signal, from: PortAddress): void {
    if (this.over) {
      if (signal.kind === 'answer') this.router.send(from, { kind: 'bye', reason: 'the call is over' }, this.address);
      return;
    }
    if (this.joined) return this.relay(signal, from);
    this.setup(signal, from);
  }

  protected abstract setup(signal: Signal, from: PortAddress): void;

  /** The set-up is over and the two calls are joined. */
  protected join(a: PortAddress, b: PortAddress): void {
    this.joined = [a, b];
    this.done({ ok: true });
  }

  private relay(signal: Signal, from: PortAddress): void {
    const [a, b] = this.joined!;
    const other = same(from, a) ? b : same(from, b) ? a : undefined;
    if (!other) return;
    switch (signal.kind) {
      case 'bye':
      case 'gone':
      case 'cancel':
      case 'reject':
        this.router.send(other, { kind: 'bye', code: signal.kind === 'gone' ? 481 : signal.kind === 'cancel' ? undefined : signal.code, reason: signal.kind === 'gone' ? undefined : signal.reason }, this.address);
        return this.close();
      case 'trying':
      case 'progress':
      case 'answer':
      case 'invite':
      case 'redirect':
        return;
      default:
        this.router.send(other, signal, this.address);
    }
  }

  /** Fails the set-up: `hangUp` are the calls to end, the caller of the operation is told why. */
  protected fail(code: number, reason: string, hangUp: readonly PortAddress[] = []): void {
    if (this.over) return;
    for (const port of hangUp) this.router.send(port, { kind: 'bye', code, reason }, this.address);
    this.close();
    this.done({ ok: false, code, reason });
  }

  protected close(): void {
    if (this.over) return;
    this.over = true;
    // Late signals (a call answering after its cancel) still find the junction for a while: it
    // stands in for itself, being small and rare (CallRouter.retire).
    this.router.retire(this.address, this);
  }

  /** Gives up before the join (the leg that asked went away): the new call is cancelled. */
  abstract abort(reason: string): void;
}

function same(a: PortAddress, b: PortAddress): boolean {
  return a.id === b.id && a.node === b.node;
}

/**
 * A blind transfer: the peer on `side` (the call port the transferring leg talks to) is
 * connected to `target`. The new call goes out without SDP as the peer; the target's offer
 * is sent to the peer as an update, whose answer goes back to the target.
 */
export class BlindTransfer extends Junction {
  private readonly newCall: PortAddress;
  private readonly newCallId: string;
  private stage: 'calling' | 'updating' = 'calling';
  private targetParty: Party;

  constructor(
    calls: CallService,
    private readonly side: PortAddress,
    peer: Party,
    target: string,
    by: Party,
    done: (outcome: JunctionOutcome) => void,
  ) {
    super(calls, done);
    this.targetParty = { address: target };
    const placed = calls.place({ caller: this.address, from: peer, to: target, transferredBy: by.address });
    this.newCall = placed.address;
    this.newCallId = placed.callId;
  }

  protected setup(signal: Signal, from: PortAddress): void {
    if (same(from, this.newCall)) {
      switch (signal.kind) {
        case 'answer':
          if (signal.peer) this.targetParty = signal.peer;
          if (!signal.offer || signal.sdp === undefined) return this.fail(488, 'the transfer target did not offer media', [this.newCall]);
          this.stage = 'updating';
          // From here on the call of the peer talks to this junction.
          this.router.send(this.side, { kind: 'update', sdp: signal.sdp }, this.address);
          return;
        case 'reject':
          return this.fail(signal.code, signal.reason ?? reasonOf(signal.code));
        case 'gone':
          return this.fail(480, 'the transfer target is gone');
        default:
          return;
      }
    }
    if (!same(from, this.side) || this.stage !== 'updating') return;
    if (signal.kind === 'updated') {
      if (signal.code !== undefined || signal.sdp === undefined) return this.fail(signal.code ?? 488, signal.reason ?? 'the peer refused the new media', [this.newCall, this.side]);
      this.router.send(this.newCall, { kind: 'ack', sdp: signal.sdp }, this.address);
      this.router.send(this.side, { kind: 'transferred', peer: this.targetParty, callId: this.newCallId }, this.address);
      this.join(this.side, this.newCall);
    } else if (signal.kind === 'bye' || signal.kind === 'gone') this.fail(487, 'the peer hung up', [this.newCall]);
  }

  abort(reason: string): void {
    if (this.joined || this.over) return;
    this.router.send(this.newCall, { kind: 'cancel', reason }, this.address);
    this.fail(487, reason);
  }
}

/**
 * An attended transfer: the peers of two established calls are connected to each other. The
 * first peer is asked for an offer (an update without SDP), which goes to the second peer as
 * an update; its answer goes back to the first.
 */
export class AttendedTransfer extends Junction {
  private stage: 'soliciting' | 'offering' = 'soliciting';

  constructor(
    calls: CallService,
    private readonly first: PortAddress,
    private readonly second: PortAddress,
    private readonly firstPeer: Party,
    private readonly secondPeer: Party,
    done: (outcome: JunctionOutcome) => void,
  ) {
    super(calls, done);
    this.router.send(first, { kind: 'update' }, this.address);
  }

  protected setup(signal: Signal, from: PortAddress): void {
    if (signal.kind === 'bye' || signal.kind === 'gone') {
      return this.fail(487, 'a peer hung up', [same(from, this.first) ? this.second : this.first]);
    }
    if (signal.kind !== 'updated') return;
    if (this.stage === 'soliciting' && same(from, this.first)) {
      if (signal.code !== undefined || signal.sdp === undefined) return this.fail(signal.code ?? 488, signal.reason ?? 'the first peer gave no offer', [this.first, this.second]);
      this.stage = 'offering';
      this.router.send(this.second, { kind: 'update', sdp: signal.sdp }, this.address);
    } else if (this.stage === 'offering' && same(from, this.second)) {
      if (signal.code !== undefined || signal.sdp === undefined) return this.fail(signal.code ?? 488, signal.reason ?? 'the second peer refused the media', [this.first, this.second]);
      this.router.send(this.first, { kind: 'ack', sdp: signal.sdp }, this.address);
      this.router.send(this.first, { kind: 'transferred', peer: this.secondPeer }, this.address);
      this.router.send(this.second, { kind: 'transferred', peer: this.firstPeer }, this.address);
      this.join(this.first, this.second);
    }
  }

  abort(reason: string): void {
    this.fail(487, reason, [this.first, this.second]);
  }
}

/**
 * makeCall: the account's own devices ring first ("self-call", without SDP); the one that
 * answers offers media, the peer is called with that offer, and the peer's answer goes back
 * to the device. `report` tells the session how it goes (makeCallReport).
 */
export class MakeCall extends Junction {
  private readonly selfCall: PortAddress;
  private peerCall: PortAddress | undefined;

  constructor(
    calls: CallService,
    private readonly self: Party,
    accountId: number,
    private readonly peer: string,
    exclude: { accountId: number; resource: string } | undefined,
    private readonly report: (status: string) => void,
    done: (outcome: JunctionOutcome) => void,
  ) {
    super(calls, done);
    this.selfCall = calls.place({ caller: this.address, accountId, from: { address: peer, name: `call to ${peer}` }, to: self.address, exclude }).address;
    report(`calling ${self.address}`);
  }

  protected setup(signal: Signal, from: PortAddress): void {
    if (same(from, this.selfCall)) {
      switch (signal.kind) {
        case 'progress':
          if (!this.peerCall) this.report('ringing your devices');
          return;
        case 'answer':
          if (!signal.offer || signal.sdp === undefined) return this.fail(488, 'the device that answered offered no media', [this.selfCall]);
          this.report(`calling ${this.peer}`);
          this.peerCall = this.calls.place({ caller: this.address, from: this.self, to: this.peer, sdp: signal.sdp }).address;
          return;
        case 'reject':
          return this.fail(signal.code, signal.reason ?? reasonOf(signal.code));
        case 'bye':
        case 'gone':
          return this.fail(487, 'the device hung up', this.peerCall ? [this.peerCall] : []);
        default:
          return;
      }
    }
    if (!this.peerCall || !same(from, this.peerCall)) return;
    switch (signal.kind) {
      case 'progress':
        this.report(`ringing ${this.peer}`);
        return;
      case 'answer':
        if (signal.offer) return this.fail(488, 'the peer answered with an offer', [this.selfCall, this.peerCall]);
        this.router.send(this.selfCall, { kind: 'ack', sdp: signal.sdp }, this.address);
        this.report(`connected to ${this.peer}`);
        this.join(this.selfCall, this.peerCall);
        return;
      case 'reject':
        return this.fail(signal.code, signal.reason ?? reasonOf(signal.code), [this.selfCall]);
      case 'gone':
        return this.fail(480, 'the peer is gone', [this.selfCall]);
      default:
        return;
    }
  }

  abort(reason: string): void {
    if (this.joined || this.over) return;
    this.router.send(this.selfCall, { kind: 'cancel', reason }, this.address);
    if (this.peerCall) this.router.send(this.peerCall, { kind: 'cancel', reason }, this.address);
    this.fail(487, reason);
  }
}
