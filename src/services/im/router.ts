import { randomBytes } from 'node:crypto';
import type { BusEvents, EventBus } from '../../bus/bus.js';
import { errorText, type Logger } from '../../log.js';
import type { ResourceRecord, RosterItem } from '../../store/im.js';
import type { AccountIdentity, Store } from '../../store/store.js';
import { fitsRelay, keepForRelay, keptForRelay } from '../../bus/kept.js';
import type { XmlElement } from '../../xml/element.js';
import { parseStanza } from './stanzas.js';

/**
 * A client connected to this node that takes part in IM: an XMPP resource, or a XIMSS session
 * bound with signalBind. The router hands it stanzas; it translates them for its protocol.
 */
export interface ImClient {
  readonly kind: 'xmpp' | 'ximss';
  account: AccountIdentity;
  readonly resource: string;
  /** The full JID. */
  readonly jid: string;
  /** It sent its initial presence and has not gone unavailable since. */
  available: boolean;
  /** Gets contacts' presence and roster pushes (XMPP: after its initial presence; XIMSS: `presence="yes"`). */
  interested: boolean;
  /** XMPP priority, -128..127. */
  priority: number;
  /** The last presence it broadcast (undefined before any). */
  presence: XmlElement | undefined;
  /** Message carbons (XEP-0280) are on. */
  carbons: boolean;
  /**
   * Addresses it sent directed available presence to (a group chat room, a contact it is not
   * subscribed to): they are told when it goes unavailable (RFC 6121 4.6.3).
   */
  readonly directed: Set<string>;
  /** A stanza addressed to it (or to its account) that it is to get. */
  deliver(stanza: XmlElement): void;
  /** A roster push (RFC 6121 2.1.6): the item after the change, `undefined` for a removed one. */
  rosterPush(jid: string, item: RosterItem | undefined, version: number): void;
  /** A block-list push (XEP-0191). */
  blockingPush(blocked: string[], unblocked: string[] | 'all'): void;
  /** The server ends the client (its account was removed, a newer client took its name). */
  end(reason: string): void;
}

/** A resource as the router knows it: the record (any node), and the local client when it is here. */
export interface KnownResource {
  record: ResourceRecord;
  /** The parsed presence (from record.presence). */
  presence: XmlElement | undefined;
  client: ImClient | undefined;
}

/**
 * Where every IM client of the cluster is, and how stanzas reach them. The clients of this
 * node are held here; those of the other nodes are known from their `imResource` events (a
 * read-only mirror, re-read from the store at start and whenever events may have been lost),
 * and stanzas for them travel on the bus to their node. Nothing is computed from the mirror
 * and written back: the records are each node's own.
 */
export class ImRouter {
  private readonly directory = new Map<number, Map<string, KnownResource>>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    readonly node: string,
    private readonly log: Logger,
    private readonly limits: { resourcesPerAccount: number },
  ) {
    this.unsubscribe.push(
      bus.on('imResource', (event, remote) => {
        if (remote) void this.remoteResource(event).catch((err: unknown) => this.log.error({ event: 'im.directory_update_failed', error: errorText(err) }, "another node's client could not be recorded"));
      }),
      bus.on('imStanza', (event) => {
        if (event.node === this.node) void this.remoteStanza(event).catch((err: unknown) => this.log.error({ event: 'im.relay_failed', error: errorText(err) }, 'a stanza from another node could not be delivered'));
      }),
      bus.on('imEnd', (event) => {
        if (event.node === this.node) this.directory.get(event.accountId)?.get(event.resource)?.client?.end(event.reason);
      }),
      bus.on('resync', () => void this.reload()),
    );
  }

  /**
   * Ends the account's client `resource` on another node, and waits (up to `waitMs`) until it
   * is gone from the directory; false when it is still there.
   */
  async endRemote(accountId: number, resource: string, reason: string, waitMs = 5000): Promise<boolean> {
    const known = this.resource(accountId, resource);
    if (!known || known.client) return known === undefined;
    this.bus.publish('imEnd', { node: known.record.node, accountId, resource, reason });
    for (let waited = 0; this.resource(accountId, resource) === known; waited += 20) {
      if (waited >= waitMs) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  /** Reads every live resource of the cluster (at start, and after missed events). */
  async reload(): Promise<void> {
    try {
      const records = await this.store.resources.all(Date.now());
      const locals = new Map<number, Map<string, KnownResource>>();
      for (const [accountId, resources] of this.directory) {
        for (const [name, known] of resources) if (known.client) (locals.get(accountId) ?? locals.set(accountId, new Map()).get(accountId)!).set(name, known);
      }
      this.directory.clear();
      for (const [accountId, resources] of locals) this.directory.set(accountId, resources);
      for (const record of records) if (record.node !== this.node) this.remember(record, undefined);
    } catch (err) {
      this.log.error({ event: 'im.directory_reload_failed', error: errorText(err) }, 'reading the IM directory failed');
    }
  }

  close(): void {
    for (const stop of this.unsubscribe) stop();
  }

  /** The account's resources on every node. */
  resources(accountId: number): KnownResource[] {
    const resources = this.directory.get(accountId);
    return resources ? [...resources.values()] : [];
  }

  resource(accountId: number, resource: string): KnownResource | undefined {
    return this.directory.get(accountId)?.get(resource);
  }

  /** Whether this client is registered here (attached and not yet gone). */
  holds(client: ImClient): boolean {
    return this.directory.get(client.account.id)?.get(client.resource)?.client === client;
  }

  /** This node's clients of the account. */
  localClients(accountId: number): ImClient[] {
    const out: ImClient[] = [];
    for (const known of this.directory.get(accountId)?.values() ?? []) if (known.client) out.push(known.client);
    return out;
  }

  /** Every client of this node (shutdown). */
  allLocalClients(): ImClient[] {
    const out: ImClient[] = [];
    for (const resources of this.directory.values()) for (const known of resources.values()) if (known.client) out.push(known.client);
    return out;
  }

  /**
   * A free resource name for the account: `wanted` when no live client has it, else `wanted`
   * with a random suffix (RFC 6120 7.7.2.2 lets the server choose), or a random name.
   */
  freeResource(accountId: number, wanted: string | undefined): string {
    const taken = this.directory.get(accountId);
    if (wanted && !taken?.has(wanted)) return wanted;
    for (;;) {
      const name = wanted ? `${wanted}-${randomBytes(3).toString('hex')}` : `ximssd-${randomBytes(6).toString('hex')}`;
      if (!taken?.has(name)) return name;
    }
  }

  /**
   * Makes a client known to the cluster; false when the account already has a client of that
   * name (on any live node) or as many as it may have.
   */
  async register(client: ImClient): Promise<boolean> {
    const record = this.recordOf(client);
    if (!(await this.store.resources.add(record, this.limits.resourcesPerAccount, Date.now()))) return false;
    this.remember(record, client);
    this.announce(record);
    return true;
  }

  /** The client's presence (available, priority, presence) changed: recorded and told to every node. */
  async update(client: ImClient): Promise<void> {
    const known = this.directory.get(client.account.id)?.get(client.resource);
    if (!known || known.client !== client) return;
    const record = this.recordOf(client);
    known.record = record;
    known.presence = client.presence;
    this.announce(record);
    await this.store.resources.update(record);
  }

  /** The client is gone. */
  async unregister(client: ImClient): Promise<void> {
    const resources = this.directory.get(client.account.id);
    const known = resources?.get(client.resource);
    if (!known || known.client !== client) return;
    resources!.delete(client.resource);
    if (resources!.size === 0) this.directory.delete(client.account.id);
    try {
      await this.store.resources.remove(client.account.id, client.resource, this.node);
    } finally {
      // Told once the record is gone: a node that waits for the name (end()) may then take it.
      this.bus.publish('imResource', { ...this.event(known.record), gone: true });
    }
  }

  /** Hands a stanza to one resource of the account, here or on its node; false when there is no such resource. */
  sendToResource(accountId: number, resource: string, stanza: XmlElement): boolean {
    const known = this.directory.get(accountId)?.get(resource);
    if (!known) return false;
    if (known.client) known.client.deliver(stanza);
    else this.relay({ node: known.record.node, accountId, resource }, stanza);
    return true;
  }

  /** Hands a stanza to every client of the account that gets presence, on every node. */
  sendToInterested(accountId: number, stanza: XmlElement, except?: ImClient): void {
    const nodes = new Set<string>();
    for (const known of this.directory.get(accountId)?.values() ?? []) {
      if (known.client) {
        if (known.client.interested && known.client !== except) known.client.deliver(stanza);
      } else nodes.add(known.record.node); // that node's clients decide whether they get presence
    }
    for (const node of nodes) this.relay({ node, accountId }, stanza);
  }

  private relay(target: { node: string; accountId: number; resource?: string }, stanza: XmlElement): void {
    const xml = stanza.toString();
    // The relay's JSON around the stanza (quotes escaped) stays under its limit; larger stanzas wait in the store.
    if (fitsRelay(xml, 200)) {
      this.bus.publish('imStanza', { ...target, xml });
      return;
    }
    void keepForRelay(this.store.shared, 'im-stanza', xml)
      .then((key) => this.bus.publish('imStanza', { ...target, key }))
      .catch((err: unknown) => this.log.error({ event: 'im.relay_failed', error: errorText(err) }, 'a stanza for another node could not be kept'));
  }

  private async remoteStanza(event: BusEvents['imStanza']): Promise<void> {
    const xml = event.xml ?? (event.key !== undefined ? await keptForRelay(this.store.shared, 'im-stanza', event.key) : undefined);
    if (xml === undefined) return;
    const stanza = parseStanza(xml);
    if (!stanza) return;
    if (event.resource !== undefined) {
      this.directory.get(event.accountId)?.get(event.resource)?.client?.deliver(stanza);
    } else {
      for (const client of this.localClients(event.accountId)) if (client.interested) client.deliver(stanza);
    }
  }

  private async remoteResource(event: BusEvents['imResource']): Promise<void> {
    if (event.node === this.node) return;
    if (event.gone) {
      const resources = this.directory.get(event.accountId);
      const known = resources?.get(event.resource);
      if (known && !known.client && known.record.node === event.node) {
        resources!.delete(event.resource);
        if (resources!.size === 0) this.directory.delete(event.accountId);
      }
      return;
    }
    let presence = event.presence;
    if (presence === undefined) {
      const record = (await this.store.resources.ofAccount(event.accountId, Date.now())).find((r) => r.resource === event.resource);
      presence = record?.presence ?? '';
    }
    this.remember({ accountId: event.accountId, resource: event.resource, node: event.node, kind: event.kind, available: event.available, priority: event.priority, since: event.since, presence }, undefined);
  }

  private remember(record: ResourceRecord, client: ImClient | undefined): void {
    let resources = this.directory.get(record.accountId);
    if (!resources) this.directory.set(record.accountId, (resources = new Map()));
    const existing = resources.get(record.resource);
    // A client of this node is never replaced by another node's record of the same name.
    if (existing?.client && !client) return;
    resources.set(record.resource, { record, presence: client ? client.presence : record.presence ? parseStanza(record.presence) : undefined, client });
  }

  private recordOf(client: ImClient): ResourceRecord {
    return {
      accountId: client.account.id,
      resource: client.resource,
      node: this.node,
      kind: client.kind,
      available: client.available,
      priority: client.priority,
      presence: client.presence ? client.presence.toString() : '',
      since: Date.now(),
    };
  }

  private event(record: ResourceRecord): BusEvents['imResource'] {
    return { accountId: record.accountId, resource: record.resource, node: record.node, kind: record.kind, available: record.available, priority: record.priority, since: record.since };
  }

  private announce(record: ResourceRecord): void {
    const event = this.event(record);
    this.bus.publish('imResource', fitsRelay(record.presence, 300) ? { ...event, presence: record.presence } : event);
  }
}
