import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.js';
import type { NodeRecord, SessionRecord, Store } from '../store/store.js';
import { errorText, type Logger } from '../log.js';

/**
 * This process as a node of the cluster (a single server is a cluster of one): its id —
 * the digits that begin the urlIDs of its sessions — and the URL other nodes forward its
 * sessions' HTTP requests to, renewed in the store every heartbeat. A node that stops
 * renewing counts as dead after `nodeTimeoutSeconds`; its sessions stop counting against
 * the per-account limits, and the survivors forget it (and its sessions) a while later.
 */
export class ClusterNode {
  readonly id: string;
  /**
   * The key nodes prove themselves to each other with when they forward a request (kept in
   * the store, made by the first node): a client cannot pretend to be a node.
   */
  key = '';
  private timer: NodeJS.Timeout | undefined;
  private url = '';
  private stopped = false;
  private lastPrune = 0;
  /** Told of each node found dead and forgotten (what its processes held is free). */
  readonly gone: ((node: string) => Promise<void>)[] = [];

  constructor(
    private readonly store: Store,
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.id = config.cluster.nodeId || String(randomInt(1, 1_000_000_000));
  }

  /** Registers the node, its HTTP listener on `httpPort`, and starts the heartbeat. */
  async start(httpPort: number): Promise<void> {
    const host = this.config.host === '0.0.0.0' || this.config.host === '::' ? '127.0.0.1' : this.config.host;
    this.url = this.config.cluster.internalUrl || `http://${host.includes(':') ? `[${host}]` : host}:${httpPort}`;
    // The first node to start makes the key; the others read it (one atomic update).
    const candidate = randomBytes(24).toString('base64url');
    this.key = await this.store.shared.update('cluster', 'key', Date.now(), (value) => {
      const key = typeof value === 'string' ? value : candidate;
      return { value: key, expires: Number.MAX_SAFE_INTEGER, result: key };
    });
    await this.beat();
    this.timer = setInterval(() => void this.beat().catch((err: unknown) => this.log.error({ event: 'cluster.heartbeat_failed', error: errorText(err) }, 'heartbeat failed')), this.config.cluster.heartbeatSeconds * 1000);
    this.timer.unref();
  }

  /** A live node other than this one, by id (undefined when unknown or dead). */
  async peer(id: string): Promise<NodeRecord | undefined> {
    if (id === this.id) return undefined;
    const node = await this.store.cluster.node(id);
    return node && node.aliveUntil >= Date.now() ? node : undefined;
  }

  /**
   * Records a session of this node unless its account has `limit` sessions on the live
   * nodes already (one transaction); false when refused.
   */
  addSession(urlID: string, accountId: number, limit: number): Promise<boolean> {
    const now = Date.now();
    return this.store.cluster.addSession({ urlID, accountId, node: this.id, created: now }, limit, now);
  }

  removeSession(urlID: string): Promise<void> {
    return this.store.cluster.removeSession(urlID);
  }

  /** The account's sessions on the other live nodes. */
  async remoteSessions(accountId: number): Promise<SessionRecord[]> {
    return (await this.store.cluster.accountSessions(accountId, Date.now())).filter((s) => s.node !== this.id);
  }

  /** True when `key` (a forwarded request's) is the cluster's. */
  isClusterKey(key: string | string[] | undefined): boolean {
    if (typeof key !== 'string' || this.key === '') return false;
    const a = Buffer.from(key);
    const b = Buffer.from(this.key);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Leaves the cluster (shutdown): the node and its sessions are forgotten at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.store.cluster.removeNode(this.id);
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    await this.store.cluster.heartbeat({ id: this.id, httpUrl: this.url, aliveUntil: now + this.config.cluster.nodeTimeoutSeconds * 1000 });
    if (now - this.lastPrune > 60_000) {
      this.lastPrune = now;
      await this.store.shared.prune(now);
    }
    // Nodes dead for a good while are forgotten, with the sessions they held.
    for (const dead of await this.store.cluster.deadNodes(now - 10 * this.config.cluster.nodeTimeoutSeconds * 1000)) {
      // What its processes held is freed first: should that fail, the node is still found dead next time.
      for (const listener of this.gone) await listener(dead.id);
      await this.store.cluster.removeNode(dead.id);
      this.log.warn({ event: 'cluster.node_gone', node: dead.id, url: dead.httpUrl }, `node ${dead.id} is gone; its sessions are forgotten`);
    }
  }
}
