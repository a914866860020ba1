import { randomBytes } from 'node:crypto';
import type { BusEvents, EventBus } from '../../bus/bus.js';
import { errorText, type Logger } from '../../log.js';
import { MAX_RELAY_MESSAGE, type Store } from '../../store/store.js';
import type { CallTarget, Signal } from './signal.js';
import { randomId } from '../ids.js';
import { PeerNodes } from './peer-nodes.js';

/** Where signals for one side of a call go: a port on a node of the cluster. */
export interface PortAddress {
  node: string;
  id: string;
}

/** Something on this node that takes signals: one side of a Call, or a protocol binding's leg. */
export interface Port {
  receive(signal: Signal, from: PortAddress): void;
}

/**
 * Opens the leg that takes a new call for a target on this node (a XIMSS session's incoming
 * call). Returns undefined when the target is not here any more: the caller is told `gone`.
 */
export type TargetOpener<T extends CallTarget = CallTarget> = (target: T, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress) => Port | undefined;

/** How long a signal too large for the bus waits in the shared state for its node to read it. */
const KEPT_SIGNAL_MS = 60_000;

/**
 * How long the port of a side that ended still takes late signals (an answer racing a cancel,
 * a signal crossing a hang-up): 64 × T1, the time a SIP peer may take to retransmit.
 */
export const RETIRED_PORT_MS = 32_000;

/** The stand-in of a retired port that has nothing to say: late signals are dropped, not answered `gone`. */
const SILENT_PORT: Port = { receive() {} };

/**
 * Carries signals between the ports of calls and legs, here or on another node. Ports of this
 * node are held in a map; a signal for another node travels on the bus (`callSignal`), in the
 * order it was sent: the signals from this node to each other node leave one after another,
 * and those that arrive are handed on one after another, even when one of them had to be
 * read from the shared state because it was too large for the bus.
 */
export class CallRouter {
  private readonly ports = new Map<string, Port>();
  private readonly toNodes = new Map<string, Promise<void>>();
  private fromNodes: Promise<void> = Promise.resolve();
  private readonly openers = new Map<CallTarget['kind'], TargetOpener>();
  private readonly unsubscribe: () => void;
  /** The other nodes our ports talk to: a dead one's ports are `gone`. */
  private readonly peerNodes: PeerNodes;
  /** Retired ports in the order they retired (all for the same time), from `retiredHead` on. */
  private retired: { id: string; port: Port; until: number }[] = [];
  private retiredHead = 0;
  private retiredTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    readonly node: string,
    private readonly log: Logger,
  ) {
    this.peerNodes = new PeerNodes(store, log, (localId, remote) => this.deliver(localId, { kind: 'gone' }, remote, false));
    this.unsubscribe = bus.on('callSignal', (event, remote) => {
      if (!remote || event.node !== this.node) return;
      this.fromNodes = this.fromNodes.then(() => this.arrived(event)).catch((err: unknown) => this.log.error({ event: 'call.relay_failed', error: errorText(err) }, 'a call signal from another node was lost'));
    });
  }

  close(): void {
    this.unsubscribe();
    this.peerNodes.stop();
    clearTimeout(this.retiredTimer);
  }

  /** Registers a port of this node; its address is what other sides send to. */
  open(port: Port): PortAddress {
    const id = randomId(9, 'base64url');
    this.ports.set(id, port);
    return { node: this.node, id };
  }

  /** Forgets a port: later signals for it are answered `gone`. */
  release(address: PortAddress): void {
    if (address.node !== this.node) return;
    this.ports.delete(address.id);
    this.peerNodes.forget(address.id);
  }

  /**
   * A side that ended keeps its address for RETIRED_PORT_MS more, answered by `standIn`: late
   * signals find a port (and are dropped, by default) instead of drawing `gone`, while the side
   * itself — a call with its legs, dialogs and messages — is not kept whole for them. A busy node
   * ends thousands of calls a second, and what each kept for 32 s was most of its memory.
   */
  retire(address: PortAddress, standIn: Port = SILENT_PORT): void {
    if (address.node !== this.node || !this.ports.has(address.id)) return;
    this.ports.set(address.id, standIn);
    this.peerNodes.forget(address.id);
    this.retired.push({ id: address.id, port: standIn, until: Date.now() + RETIRED_PORT_MS });
    this.retiredTimer ??= setTimeout(() => this.releaseRetired(), RETIRED_PORT_MS).unref();
  }

  /** Releases the retired ports whose time is up (they are in order: all wait as long). */
  private releaseRetired(): void {
    this.retiredTimer = undefined;
    const now = Date.now();
    const queue = this.retired;
    while (this.retiredHead < queue.length && queue[this.retiredHead]!.until <= now) {
      const { id, port } = queue[this.retiredHead]!;
      this.retiredHead++;
      // Unless the address was released meanwhile (ids are random and never reused).
      if (this.ports.get(id) === port) this.ports.delete(id);
    }
    if (this.retiredHead === queue.length) {
      this.retired = [];
      this.retiredHead = 0;
    } else {
      if (this.retiredHead > 1024 && this.retiredHead * 2 > queue.length) {
        this.retired = queue.slice(this.retiredHead);
        this.retiredHead = 0;
      }
      this.retiredTimer = setTimeout(() => this.releaseRetired(), Math.max(0, this.retired[this.retiredHead]!.until - now)).unref();
    }
  }

  /** Who opens the legs of new calls for targets of a kind on this node. */
  onTarget<K extends CallTarget['kind']>(kind: K, opener: TargetOpener<Extract<CallTarget, { kind: K }>>): void {
    // Only targets of this kind reach it (openTarget looks it up by the target's kind).
    this.openers.set(kind, opener as TargetOpener);
  }

  /** Ports held on this node (for the metrics and the tests). */
  get size(): number {
    return this.ports.size;
  }

  send(to: PortAddress, signal: Signal, from: PortAddress): void {
    if (to.node === this.node) {
      // Handed on in a later tick, as a remote signal would be: no side sees its own signal's
      // consequences before it has finished what it was doing.
      queueMicrotask(() => this.deliver(to.id, signal, from));
      return;
    }
    if (from.node === this.node && this.ports.has(from.id)) this.peerNodes.note(from.id, to);
    this.relay({ node: to.node, to: to.id, from }, signal);
  }

  /** Offers a new call to a target (a leg is opened on the target's node); its signals come to `from`. */
  invite(target: CallTarget, invite: Extract<Signal, { kind: 'invite' }>, from: PortAddress): void {
    if (target.node === this.node) {
      queueMicrotask(() => this.openTarget(target, invite, from));
      return;
    }
    this.relay({ node: target.node, target, from }, invite);
  }

  /** Hands a signal to a port of this node; `noteSender`: remember its node (not for our own notice that the node is gone). */
  private deliver(id: string, signal: Signal, from: PortAddress, noteSender = true): void {
    const port = this.ports.get(id);
    if (port) {
      if (noteSender && from.node !== this.node && from.id !== '-') this.peerNodes.note(id, from);
      try {
        port.receive(signal, from);
      } catch (err) {
        this.log.error({ event: 'call.signal_failed', kind: signal.kind, error: errorText(err) }, 'a call signal could not be handled');
      }
    } else if (signal.kind !== 'gone') this.send(from, { kind: 'gone' }, { node: this.node, id });
  }

  private openTarget(target: CallTarget, invite: Extract<Signal, { kind: 'invite' }>, from: PortAddress): void {
    let port: Port | undefined;
    try {
      port = this.openers.get(target.kind)?.(target, invite, from);
    } catch (err) {
      this.log.error({ event: 'call.open_failed', error: errorText(err) }, 'a call could not be offered');
    }
    if (!port) this.send(from, { kind: 'gone' }, { node: this.node, id: '-' });
  }

  private relay(envelope: Omit<BusEvents['callSignal'], 'signal' | 'key'>, signal: Signal): void {
    const json = JSON.stringify(signal);
    const previous = this.toNodes.get(envelope.node) ?? Promise.resolve();
    const sent = previous.then(async () => {
      // The relay's JSON around the signal (quotes escaped) stays under its limit; larger signals wait in the store.
      if (json.length * 1.2 + 300 < MAX_RELAY_MESSAGE) {
        this.bus.publish('callSignal', { ...envelope, signal });
        return;
      }
      const key = randomBytes(12).toString('hex');
      await this.store.shared.update('call-signal', key, Date.now(), () => ({ value: json, expires: Date.now() + KEPT_SIGNAL_MS, result: undefined }));
      this.bus.publish('callSignal', { ...envelope, key });
    });
    const settled = sent.catch((err: unknown) => this.log.error({ event: 'call.relay_failed', node: envelope.node, error: errorText(err) }, 'a call signal for another node could not be sent'));
    this.toNodes.set(envelope.node, settled);
    void settled.then(() => {
      if (this.toNodes.get(envelope.node) === settled) this.toNodes.delete(envelope.node);
    });
  }

  private async arrived(event: BusEvents['callSignal']): Promise<void> {
    let signal = event.signal as Signal | undefined;
    if (signal === undefined && event.key !== undefined) {
      const kept = await this.store.shared.get('call-signal', event.key, Date.now());
      if (typeof kept === 'string') signal = JSON.parse(kept) as Signal;
    }
    if (signal === undefined) return;
    if (event.target !== undefined) {
      if (signal.kind === 'invite') this.openTarget(event.target, signal, event.from);
    } else if (event.to !== undefined) this.deliver(event.to, signal, event.from);
  }
}
