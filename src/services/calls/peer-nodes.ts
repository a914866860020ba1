/**
 * Which ports of this node talk to ports on other nodes, so that when one of those nodes dies
 * (its heartbeat stops: src/services/cluster.ts) the calls here hear `gone` from their other
 * side instead of waiting for a BYE that will never come.
 */
import { errorText, type Logger } from '../../log.js';
import type { Store } from '../../store/store.js';
import type { PortAddress } from './router.js';

/** Tells local port `localId` that `remote` is gone. */
export type GoneNotice = (localId: string, remote: PortAddress) => void;

/** How long a dead node's name is remembered (ports released within 32 s stop hearing of it long before). */
const DEAD_REMEMBERED_MS = 10 * 60_000;

export class PeerNodes {
  /** Per other node: our port → the last of its ports ours talked to. */
  private readonly byNode = new Map<string, Map<string, PortAddress>>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  /** Nodes found dead, and when: signals to them are not watched again (their ports were told). */
  private readonly dead = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly gone: GoneNotice,
    /** How often the nodes our ports talk to are looked up, ms. */
    private readonly checkMs = 5000,
  ) {}

  /** Our port `localId` talks to `remote` (on another node). */
  note(localId: string, remote: PortAddress): void {
    if (this.dead.has(remote.node)) return;
    let ports = this.byNode.get(remote.node);
    if (!ports) this.byNode.set(remote.node, (ports = new Map()));
    ports.set(localId, remote);
    if (!this.timer) {
      this.timer = setInterval(() => void this.check(), this.checkMs);
      this.timer.unref();
    }
  }

  /** Our port is released. */
  forget(localId: string): void {
    for (const [node, ports] of this.byNode) {
      if (ports.delete(localId) && ports.size === 0) this.byNode.delete(node);
    }
    if (this.byNode.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Looks the nodes up; the ports that talked to a dead one are told. */
  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const now = Date.now();
      // A node found dead is forgotten after a while (a node of that name may come back).
      for (const [node, since] of this.dead) if (now - since > DEAD_REMEMBERED_MS) this.dead.delete(node);
      for (const node of [...this.byNode.keys()]) {
        const record = await this.store.cluster.node(node);
        if (record && record.aliveUntil >= now) continue;
        const ports = this.byNode.get(node);
        this.byNode.delete(node);
        this.dead.set(node, now);
        if (!ports) continue;
        this.log.warn({ event: 'call.node_gone', node, ports: ports.size }, `the calls with node ${node} end: it is gone`);
        for (const [localId, remote] of ports) this.gone(localId, remote);
      }
    } catch (err) {
      this.log.error({ event: 'call.node_check_failed', error: errorText(err) }, 'the nodes of calls could not be looked up');
    } finally {
      this.checking = false;
      if (this.byNode.size === 0) this.stop();
    }
  }
}
