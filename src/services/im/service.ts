import { randomBytes } from 'node:crypto';
import type { EventBus } from '../../bus/bus.js';
import type { Config } from '../../config.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { NotFoundError, type AccountIdentity, type AccountRecord, type Store } from '../../store/store.js';
import { RosterFullError, type RosterChange, type RosterItem } from '../../store/im.js';
import { el, type XmlElement } from '../../xml/element.js';
import { fullName, type AccountService } from '../accounts.js';
import { ServiceError } from '../errors.js';
import { ImArchive } from './archive.js';
import { jidOf, parseJid, tryJid, type Jid } from './jid.js';
import { ImRouter, type ImClient, type KnownResource } from './router.js';
import { childNs, copyStanza, delay, errorReply, forwarded, hasContent, NS, parseStanza } from './stanzas.js';
import * as subscriptions from './subscriptions.js';
import { ServerIq } from './server-iq.js';
import { ImRemote, type Federation } from './remote.js';

/**
 * A component that owns whole domains (the group chat service, `conference.<domain>`): the IM
 * service hands it every stanza addressed there, with the local client that sent it.
 */
export interface ImComponent {
  /** Whether the component owns the domain (a local domain's own name is never a component's). */
  serves(domain: string): Promise<boolean>;
  handle(stanza: XmlElement, origin: ImClient): Promise<void>;
  /** disco#items of a local domain: the component's address and name. */
  readonly item?: (domain: string) => { jid: string; name: string } | undefined;
}

/**
 * A service addressed at a local domain's own JID (Rayo: clients tell `example.com` they are
 * available and send it `dial`): the IM service hands it the stanzas to the bare domain that
 * it claims, with the local client that sent them.
 */
export interface DomainService {
  claims(stanza: XmlElement): boolean;
  handle(stanza: XmlElement, origin: ImClient): Promise<void>;
  /** A client of this node is gone (whatever it sent the service before). */
  clientGone?(client: ImClient): void;
}

/** What the IM service limits (config `im`, documented there). */
export type ImLimits = Config['im'];


/** A roster operation was refused: the XMPP condition and a text (XIMSS shows the text). */
export class ImError extends ServiceError {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

const CACHE_LIMIT = 10_000;
const NEGATIVE_SECONDS = 10;

/**
 * Instant messages, presence and rosters for every protocol (RFC 6120/6121's model, which
 * XIMSS shares): a client (XMPP resource, XIMSS session) hands its stanzas here with its full
 * JID as `from`; the service routes them to the clients of local accounts on any node
 * (ImRouter), keeps what must outlive a connection (rosters, subscription requests, offline
 * messages, the archive, block lists) in the store, and answers what the server itself is
 * asked (ServerIq). Addresses on other domains go to their servers through `federation`
 * (s2s, when its port is on; else they get an honest error), and what those send comes
 * back through `remote` (remote.ts).
 */
export class ImService {
  readonly router: ImRouter;
  readonly archive: ImArchive;
  readonly serverIq: ServerIq;
  private readonly accountsByJid = new Map<string, { account: AccountRecord | undefined; until: number }>();
  private readonly domains = new Map<string, { local: boolean; until: number }>();
  private readonly blockLists = new Map<number, Promise<Set<string>>>();
  private readonly unsubscribe: (() => void)[] = [];
  /** Components owning domains (the group chat service). */
  readonly components: ImComponent[] = [];
  /** Services of the local domains' own JIDs (Rayo). */
  readonly domainServices: DomainService[] = [];
  /** Other XMPP servers (src/transports/xmpp/s2s.ts); undefined when federation is off. */
  federation: Federation | undefined;
  /** Stanzas from other servers' users (remote.ts). */
  readonly remote: ImRemote;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly store: Store,
    private readonly bus: EventBus,
    readonly accounts: AccountService,
    node: string,
    readonly log: Logger,
    readonly limits: ImLimits,
    private readonly metrics?: Metrics,
  ) {
    this.router = new ImRouter(store, bus, node, log, { resourcesPerAccount: limits.resourcesPerAccount });
    this.archive = new ImArchive(store, log, limits.archiveDays);
    this.serverIq = new ServerIq(this);
    this.remote = new ImRemote(this);
    const forget = (accountId: number): void => {
      for (const [jid, entry] of this.accountsByJid) if (entry.account?.id === accountId) this.accountsByJid.delete(jid);
    };
    this.unsubscribe.push(
      bus.on('accountRemoved', ({ accountId }) => {
        forget(accountId);
        for (const client of this.router.localClients(accountId)) client.end('account removed');
      }),
      bus.on('accountChanged', ({ accountId }) => forget(accountId)),
      // A credential of the account went (an application password removed, the password changed,
      // two-factor authentication turned on): its XMPP streams end and log in again, which only
      // credentials still good can do (a stream does not record which one it used). XIMSS IM
      // clients end with their sessions.
      bus.on('credentialsRevoked', ({ accountId }) => {
        for (const client of this.router.localClients(accountId)) if (client.kind === 'xmpp') client.end('credentials changed');
      }),
      bus.on('domainChanged', () => this.domains.clear()),
      bus.on('rosterChanged', (event) => {
        const clients = this.router.localClients(event.accountId).filter((c) => c.interested);
        if (clients.length === 0) return;
        const item = event.item ? (JSON.parse(event.item) as RosterItem) : undefined;
        for (const client of clients) client.rosterPush(event.jid, item, event.version);
      }),
      bus.on('blockingChanged', (event) => {
        this.blockLists.delete(event.accountId);
        for (const client of this.router.localClients(event.accountId)) client.blockingPush(event.blocked, event.unblocked);
      }),
      bus.on('resync', () => {
        this.accountsByJid.clear();
        this.blockLists.clear();
      }),
    );
    metrics?.gauge('ximssd_im_clients', "This node's connected IM clients, by protocol", ['protocol'], (set) => {
      const counts = { xmpp: 0, ximss: 0 };
      for (const client of this.router.allLocalClients()) counts[client.kind]++;
      for (const [protocol, count] of Object.entries(counts)) set({ protocol }, count);
    });
  }

  async start(): Promise<void> {
    await this.router.reload();
    const prune = (): void => {
      const now = Date.now();
      void Promise.all([
        this.limits.archiveDays > 0 ? this.store.archive.prune(now - this.limits.archiveDays * 86_400_000) : 0,
        this.store.offline.prune(now - this.limits.offlineDays * 86_400_000),
      ]).catch((err: unknown) => this.log.error({ event: 'im.prune_failed', error: errorText(err) }, 'pruning old IM data failed'));
    };
    this.pruneTimer = setInterval(prune, 3_600_000);
    this.pruneTimer.unref();
  }

  /** Ends every client of this node (shutdown); they go offline for their contacts. */
  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
    for (const client of this.router.allLocalClients()) {
      client.end('server shutdown');
      await this.detach(client).catch(() => {});
    }
    await this.archive.flush();
    for (const stop of this.unsubscribe) stop();
    this.router.close();
  }

  // -------------------------------------------------------------------------------------
  // Clients coming and going

  /** Makes a client known (its resource name must be free: see ImRouter.freeResource); false when refused. */
  async attach(client: ImClient): Promise<boolean> {
    const ok = await this.router.register(client);
    if (ok) this.log.info({ event: 'im.client_attached', account: fullName(client.account), resource: client.resource, protocol: client.kind }, 'IM client attached');
    return ok;
  }

  /** The client went: its contacts see it unavailable (when it was available). */
  async detach(client: ImClient): Promise<void> {
    // Detached once: a client ended by the server (signalBind mode="kill") also ends on its own.
    if (!this.router.holds(client)) return;
    if (client.available) await this.broadcastPresence(client, el('presence', { type: 'unavailable' }));
    else await this.endDirectedPresence(client);
    await this.router.unregister(client);
    for (const service of this.domainServices) service.clientGone?.(client);
    this.log.info({ event: 'im.client_detached', account: fullName(client.account), resource: client.resource, protocol: client.kind }, 'IM client detached');
  }

  // -------------------------------------------------------------------------------------
  // Stanzas from clients

  /** A stanza from a client of this node (`from` is the client's full JID). */
  async fromClient(client: ImClient, stanza: XmlElement): Promise<void> {
    stanza.attrs.from = client.jid;
    this.metrics?.imStanzas.inc({ kind: stanza.name, direction: 'in' });
    const toText = stanza.attrs.to;
    const to = toText === undefined ? undefined : tryJid(toText);
    if (toText !== undefined && !to) {
      delete stanza.attrs.to;
      if (stanza.attrs.type !== 'error' && stanza.attrs.type !== 'result') client.deliver(errorReply(stanza, 'jid-malformed', 'the address is malformed'));
      return;
    }
    if (to) stanza.attrs.to = to.full;
    if (to) {
      const component = await this.componentFor(to.domain);
      if (component) return component.handle(stanza, client);
      const service = await this.domainServiceFor(stanza, to);
      if (service) {
        // Presence to it is directed presence: it hears of the client's end (endDirectedPresence).
        if (stanza.name === 'presence') {
          if (stanza.attrs.type === 'unavailable') client.directed.delete(to.full);
          else client.directed.add(to.full);
        }
        return service.handle(stanza, client);
      }
    }
    switch (stanza.name) {
      case 'message':
        return this.routeMessage(stanza, client);
      case 'presence':
        return this.presenceFromClient(client, stanza, to);
      case 'iq':
        return this.routeIq(stanza, client, to);
      default:
        client.deliver(errorReply(stanza, 'bad-request', `not a stanza: ${stanza.name}`));
    }
  }

  // -------------------------------------------------------------------------------------
  // Accounts and domains

  /** Whether a domain is one of the server's (cached briefly). */
  async isLocalDomain(domain: string): Promise<boolean> {
    const now = Date.now();
    const cached = this.domains.get(domain);
    if (cached && cached.until > now) return cached.local;
    const local = (await this.store.domains.get(domain)) !== undefined;
    if (this.domains.size > 1000) this.domains.clear();
    this.domains.set(domain, { local, until: now + NEGATIVE_SECONDS * 1000 });
    return local;
  }

  /** The component that owns a domain (the group chat service of a local domain), if any. */
  async componentFor(domain: string): Promise<ImComponent | undefined> {
    if (this.components.length === 0 || (await this.isLocalDomain(domain))) return undefined;
    for (const component of this.components) if (await component.serves(domain)) return component;
    return undefined;
  }

  /** The service that claims a stanza to a local domain's own JID, if any. */
  private async domainServiceFor(stanza: XmlElement, to: Jid): Promise<DomainService | undefined> {
    if (this.domainServices.length === 0 || to.local || to.resource || !(await this.isLocalDomain(to.domain))) return undefined;
    return this.domainServices.find((service) => service.claims(stanza));
  }

  /** The local account of a bare JID (cached: removals and changes are told on the bus). */
  async accountOf(bare: string): Promise<AccountRecord | undefined> {
    const now = Date.now();
    const cached = this.accountsByJid.get(bare);
    if (cached && cached.until > now) return cached.account;
    const at = bare.indexOf('@');
    const account = at > 0 && (await this.isLocalDomain(bare.slice(at + 1))) ? await this.accounts.find(bare) : undefined;
    if (this.accountsByJid.size >= CACHE_LIMIT) this.accountsByJid.delete(this.accountsByJid.keys().next().value!);
    this.accountsByJid.set(bare, { account, until: account ? Number.POSITIVE_INFINITY : now + NEGATIVE_SECONDS * 1000 });
    return account;
  }

  /** The account's block list (cached per account; changes are told on the bus). */
  blockList(accountId: number): Promise<Set<string>> {
    let list = this.blockLists.get(accountId);
    if (!list) {
      if (this.blockLists.size >= CACHE_LIMIT) this.blockLists.delete(this.blockLists.keys().next().value!);
      list = this.store.blocking.list(accountId).then((jids) => new Set(jids));
      list.catch(() => this.blockLists.delete(accountId));
      this.blockLists.set(accountId, list);
    }
    return list;
  }

  /** The account blocks this address (its bare JID, its domain, or the full JID: XEP-0191 3.1). */
  async blocks(accountId: number, address: Jid): Promise<boolean> {
    const list = await this.blockList(accountId);
    if (list.size === 0) return false;
    return list.has(address.full) || list.has(address.bare) || list.has(address.domain);
  }

  // -------------------------------------------------------------------------------------
  // Messages

  /**
   * Routes a message (RFC 6121 8.5): to a local account's resources by the priority rules,
   * kept offline when none is there, archived for both sides, copied to carbons-enabled
   * resources; an error back to the sender when it cannot be delivered.
   */
  async routeMessage(stanza: XmlElement, origin: ImClient | undefined, options: { rerouted?: boolean } = {}): Promise<void> {
    const from = parseJid(stanza.attrs.from!);
    const to = stanza.attrs.to === undefined ? jidOf(from.local, from.domain) : parseJid(stanza.attrs.to);
    stanza.attrs.to = to.full;
    const type = stanza.attrs.type ?? 'normal';
    const bounce = (condition: string, text: string, extra?: XmlElement): void => {
      if (type !== 'error') this.deliverTo(from, errorReply(stanza, condition, text, extra), origin);
    };
    const sender = origin?.account ?? (from.local ? await this.accountOf(from.bare) : undefined);
    if (sender && (await this.blocks(sender.id, to))) return bounce('not-acceptable', 'you have blocked this contact', el('blocked', { xmlns: NS.blockingErrors }));
    if (!(await this.isLocalDomain(to.domain))) {
      if (!this.federation) return bounce('remote-server-not-found', NO_FEDERATION(to.domain));
      // To another server: archived for the sender and copied to its other resources, as a local one is.
      if (sender && type !== 'error' && type !== 'groupchat' && type !== 'headline' && hasContent(stanza) && this.archive.enabled && !noStore(stanza)) {
        this.archive.record(sender.id, { with: to.bare, outgoing: true, stanza });
      }
      if (origin && (type === 'chat' || (type === 'normal' && stanza.element('body') !== undefined))) this.sentCarbons(origin, stanza);
      return this.sendRemote(stanza);
    }
    if (!to.local) return bounce('service-unavailable', 'the server takes no messages');
    const recipient = await this.accountOf(to.bare);
    if (!recipient) return bounce('service-unavailable', `${to.bare} does not exist`);
    if (await this.blocks(recipient.id, from)) return bounce('service-unavailable', 'the recipient does not take messages from you');
    // A stanza-id claiming to be ours is the sender's forgery (XEP-0359 3.3); a message routed
    // again (never acknowledged by a client) keeps the one the archive gave it.
    if (!options.rerouted) stanza.children.splice(0, stanza.children.length, ...stanza.children.filter((c) => typeof c === 'string' || !(c.name === 'stanza-id' && c.attrs.xmlns === NS.stanzaId && c.attrs.by === to.bare)));
    const archived = !options.rerouted && type !== 'error' && type !== 'groupchat' && type !== 'headline' && hasContent(stanza) && this.archive.enabled && !noStore(stanza);
    if (archived && sender) this.archive.record(sender.id, { with: to.bare, outgoing: true, stanza });
    const copy = copyStanza(stanza);
    if (archived) copy.append(el('stanza-id', { xmlns: NS.stanzaId, id: this.archive.record(recipient.id, { with: from.bare, outgoing: false, stanza }), by: to.bare }));
    this.metrics?.imStanzas.inc({ kind: 'message', direction: 'routed' });
    const delivered = this.deliverMessage(recipient, to, copy, type);
    // XEP-0280 4: chat messages, and normal ones with a body, are copied.
    const carbons = type === 'chat' || (type === 'normal' && stanza.element('body') !== undefined);
    if (origin && carbons) this.sentCarbons(origin, stanza);
    if (delivered.length > 0) {
      if (carbons) this.receivedCarbons(recipient, to, copy, delivered);
      return;
    }
    if (type === 'error' || type === 'headline' || type === 'groupchat' || !hasContent(stanza)) {
      if (type === 'groupchat') bounce('service-unavailable', 'not a group chat');
      return;
    }
    const kept = await this.store.offline.push(recipient.id, { stamp: Date.now(), from: from.full, xml: copy.toString() }, this.limits.offlineMessages);
    if (!kept) {
      this.log.warn({ event: 'im.offline_full', account: to.bare, limit: this.limits.offlineMessages }, 'offline message refused: the queue is full');
      return bounce('service-unavailable', `${to.bare} is offline and cannot take more messages now`);
    }
    this.metrics?.imStanzas.inc({ kind: 'message', direction: 'offline' });
  }

  /**
   * Hands a message to the recipient's resources: the one addressed when it is there, else
   * the available ones of the highest non-negative priority (XIMSS sessions bound but not
   * available come last). Answers the resources reached (none: keep it offline).
   */
  private deliverMessage(recipient: AccountRecord, to: Jid, stanza: XmlElement, type: string): string[] {
    if (to.resource && this.router.sendToResource(recipient.id, to.resource, stanza)) return [to.resource];
    if (type === 'error') return [];
    const resources = this.router.resources(recipient.id);
    let targets: KnownResource[];
    if (type === 'headline') {
      targets = resources.filter((r) => r.record.available && r.record.priority >= 0);
    } else {
      let best = -1;
      for (const r of resources) if (r.record.available && r.record.priority > best) best = r.record.priority;
      targets = best >= 0 ? resources.filter((r) => r.record.available && r.record.priority === best) : resources.filter((r) => !r.record.available && isBoundXimss(r));
    }
    for (const r of targets) this.router.sendToResource(recipient.id, r.record.resource, stanza);
    return targets.map((r) => r.record.resource);
  }

  /** XEP-0280: the recipient's other carbons-enabled resources get a copy. */
  private receivedCarbons(recipient: AccountRecord, to: Jid, stanza: XmlElement, reached: string[]): void {
    if (isPrivate(stanza)) return;
    for (const r of this.router.resources(recipient.id)) {
      if (reached.includes(r.record.resource) || !r.client?.carbons) continue;
      r.client.deliver(carbon('received', to.bare, r.client.jid, stanza));
    }
  }

  /** XEP-0280: the sender's other carbons-enabled resources see what it sent. */
  private sentCarbons(origin: ImClient, stanza: XmlElement): void {
    if (isPrivate(stanza)) return;
    const bare = jidOf(parseJid(origin.jid).local, origin.account.domain).bare;
    for (const client of this.router.localClients(origin.account.id)) {
      if (client === origin || !client.carbons) continue;
      client.deliver(carbon('sent', bare, client.jid, stanza));
    }
  }

  /** Delivers a stanza the server made (an error, a reply) to an address, local or the origin client. */
  deliverTo(to: Jid, stanza: XmlElement, origin?: ImClient): void {
    if (origin && origin.jid === to.full) {
      origin.deliver(stanza);
      return;
    }
    void (async () => {
      if (!(await this.isLocalDomain(to.domain))) return this.sendRemote(stanza);
      const account = await this.accountOf(to.bare);
      if (!account) return;
      if (to.resource) this.router.sendToResource(account.id, to.resource, stanza);
      else this.router.sendToInterested(account.id, stanza);
    })().catch((err: unknown) => this.log.error({ event: 'im.deliver_failed', to: to.full, error: errorText(err) }, 'delivering a stanza failed'));
  }

  /** A stanza for another server (federation), when federation is on; dropped otherwise (its sender was told already). */
  sendRemote(stanza: XmlElement): void {
    if (!this.federation) return;
    this.metrics?.imStanzas.inc({ kind: stanza.name, direction: 'remote' });
    this.federation.send(stanza);
  }

  /**
   * Messages kept while the account had no client (XEP-0160), for a client that just became
   * available: taken from the store (no other client gets them too), with their delay stamps.
   */
  async deliverOffline(client: ImClient): Promise<void> {
    for (;;) {
      const batch = await this.store.offline.take(client.account.id, 100);
      for (const kept of batch) {
        const stanza = parseStanza(kept.xml);
        if (!stanza) continue;
        stanza.attrs.to = client.jid;
        stanza.append(delay(kept.stamp, client.account.domain));
        client.deliver(stanza);
      }
      if (batch.length < 100) return;
    }
  }

  // -------------------------------------------------------------------------------------
  // Presence

  private async presenceFromClient(client: ImClient, stanza: XmlElement, to: Jid | undefined): Promise<void> {
    const type = stanza.attrs.type;
    if (type === 'subscribe' || type === 'subscribed' || type === 'unsubscribe' || type === 'unsubscribed') {
      if (!to) return client.deliver(errorReply(stanza, 'bad-request', 'a subscription request needs an addressee'));
      await this.subscriptionFromUser(client.account, type, to, stanza.element('status')?.text() ?? '', stanza);
      return;
    }
    if (type === 'probe' || type === 'error') return;
    if (type !== undefined && type !== 'unavailable') return client.deliver(errorReply(stanza, 'bad-request', `unknown presence type ${type}`));
    if (to) return this.directedPresence(client, stanza, to);
    await this.broadcastPresence(client, stanza);
  }

  /**
   * The client's own presence (RFC 6121 4.2, 4.4, 4.5): kept, sent to its contacts who may see
   * it and to the account's other clients; its first one also fetches the contacts' presence,
   * the subscription requests waiting, and the messages kept offline.
   */
  async broadcastPresence(client: ImClient, stanza: XmlElement): Promise<void> {
    const available = stanza.attrs.type !== 'unavailable';
    const initial = available && !client.available;
    const presence = el('presence', { from: client.jid, type: available ? undefined : 'unavailable' });
    for (const c of stanza.children) if (typeof c !== 'string') presence.append(c);
    const priority = Number(stanza.element('priority')?.text().trim() ?? '0');
    client.priority = Number.isInteger(priority) && priority >= -128 && priority <= 127 ? priority : 0;
    client.available = available;
    client.presence = available ? presence : undefined;
    if (!available) await this.endDirectedPresence(client);
    if (client.kind === 'xmpp') client.interested = available;
    await this.router.update(client);
    const subscribers = await this.store.roster.subscribers(client.account.id);
    for (const jid of subscribers) {
      const contact = tryJid(jid);
      if (!contact?.local) continue;
      if (!(await this.isLocalDomain(contact.domain))) {
        // A contact on another server who may see the user (`from`, `both`).
        if (this.federation && !(await this.blocks(client.account.id, contact))) {
          const copy = copyStanza(presence);
          copy.attrs.to = contact.bare;
          this.sendRemote(copy);
        }
        continue;
      }
      const account = await this.accountOf(contact.bare);
      // Neither side's block list lets it through (XEP-0191 3.3: blocked means no presence either way).
      if (!account || (await this.blocks(client.account.id, contact)) || (await this.blocks(account.id, parseJid(client.jid)))) continue;
      const copy = copyStanza(presence);
      copy.attrs.to = contact.bare;
      this.router.sendToInterested(account.id, copy);
    }
    // The account's own other clients see it too.
    const own = copyStanza(presence);
    own.attrs.to = jidOf(parseJid(client.jid).local, client.account.domain).bare;
    this.router.sendToInterested(client.account.id, own, client);
    if (initial) {
      if (client.kind === 'xmpp') await this.sendContactsPresence(client);
      if (client.priority >= 0) await this.deliverOffline(client);
    }
    if (!available) this.log.debug({ event: 'im.unavailable', jid: client.jid }, 'client unavailable');
  }

  /**
   * What a client that starts getting presence is told (RFC 6121 4.3 probes, answered from
   * the directory): each contact it may see that has clients available, the account's own
   * other clients, and the subscription requests that wait for an answer.
   */
  async sendContactsPresence(client: ImClient): Promise<void> {
    const { items } = await this.store.roster.list(client.account.id);
    for (const item of items) {
      if (subscriptions.hasTo(item.subscription)) {
        const contact = tryJid(item.jid);
        if (contact?.local && this.federation && !(await this.isLocalDomain(contact.domain))) {
          // A contact on another server: its server is asked (RFC 6121 4.3.1); the answers come to the bare JID.
          this.sendRemote(el('presence', { from: jidOf(client.account.name, client.account.domain).bare, to: contact.bare, type: 'probe' }));
          continue;
        }
        const account = contact?.local ? await this.accountOf(contact.bare) : undefined;
        if (account && contact) {
          if ((await this.blocks(account.id, parseJid(client.jid))) || (await this.blocks(client.account.id, contact))) continue;
          for (const r of this.router.resources(account.id)) {
            if (!r.record.available || !r.presence) continue;
            const copy = copyStanza(r.presence);
            copy.attrs.from = jidOf(contact.local, contact.domain, r.record.resource).full;
            copy.attrs.to = client.jid;
            client.deliver(copy);
          }
        }
      }
      if (item.pendingIn !== null) {
        client.deliver(el('presence', { from: item.jid, to: jidOf(parseJid(client.jid).local, client.account.domain).bare, type: 'subscribe' }, item.pendingIn ? el('status', undefined, item.pendingIn) : undefined));
      }
    }
    for (const r of this.router.resources(client.account.id)) {
      if (r.client === client || !r.record.available || !r.presence) continue;
      const copy = copyStanza(r.presence);
      copy.attrs.to = client.jid;
      client.deliver(copy);
    }
  }

  /** Those the client sent directed presence to are told it is gone (RFC 6121 4.6.3): rooms drop it. */
  private async endDirectedPresence(client: ImClient): Promise<void> {
    const targets = [...client.directed];
    client.directed.clear();
    for (const target of targets) {
      const presence = el('presence', { from: client.jid, to: target, type: 'unavailable' });
      const to = parseJid(target);
      const component = (await this.componentFor(to.domain)) ?? (await this.domainServiceFor(presence, to));
      if (component) await component.handle(presence, client).catch(() => {});
      else await this.directedPresence(client, presence, to).catch(() => {});
    }
  }

  /** Presence to one address (RFC 6121 4.6): a contact (a group chat room is a component's). */
  private async directedPresence(client: ImClient, stanza: XmlElement, to: Jid): Promise<void> {
    if (!(await this.isLocalDomain(to.domain))) {
      if (!this.federation) {
        if (stanza.attrs.type !== 'unavailable') client.deliver(errorReply(stanza, 'remote-server-not-found', NO_FEDERATION(to.domain)));
        return;
      }
      if (await this.blocks(client.account.id, to)) return;
      if (stanza.attrs.type === 'unavailable') client.directed.delete(to.full);
      else client.directed.add(to.full);
      return this.sendRemote(stanza);
    }
    const account = to.local ? await this.accountOf(to.bare) : undefined;
    if (!account || (await this.blocks(account.id, parseJid(client.jid))) || (await this.blocks(client.account.id, to))) return;
    if (stanza.attrs.type === 'unavailable') client.directed.delete(to.full);
    else client.directed.add(to.full);
    if (to.resource) this.router.sendToResource(account.id, to.resource, stanza);
    else this.router.sendToInterested(account.id, stanza);
  }

  // -------------------------------------------------------------------------------------
  // Rosters and subscriptions

  /** Changes an item of the account's roster and pushes the change to its clients on every node. */
  private async changeRoster(account: AccountIdentity, jid: string, decide: Parameters<Store['roster']['modify']>[2]): Promise<RosterChange> {
    let change: RosterChange;
    try {
      change = await this.store.roster.modify(account.id, jid, decide, this.limits.rosterItems);
    } catch (err) {
      if (err instanceof RosterFullError) throw new ImError('resource-constraint', err.message);
      throw err;
    }
    if (change.changed) {
      const item = change.after ? JSON.stringify(change.after) : undefined;
      this.bus.publish('rosterChanged', { accountId: account.id, jid, version: change.version, ...(item && item.length < 6000 ? { item } : {}) });
    }
    return change;
  }

  /** A roster `set`: the contact's name and groups (created with no subscription when new). */
  async rosterUpdate(account: AccountIdentity, contact: Jid, name: string, groups: string[]): Promise<void> {
    if (groups.length > this.limits.rosterGroups) throw new ImError('not-acceptable', `a contact can be in at most ${this.limits.rosterGroups} groups`);
    if (contact.resource) throw new ImError('bad-request', 'a roster contact is a bare address');
    await this.changeRoster(account, contact.bare, subscriptions.update(contact.bare, name, groups));
  }

  /**
   * Removes a contact (RFC 6121 2.5): the subscriptions both ways are cancelled first
   * (`unsubscribe` and `unsubscribed` go to the contact), then the item goes.
   */
  async rosterRemove(account: AccountIdentity, contact: Jid): Promise<void> {
    const item = await this.store.roster.get(account.id, contact.bare);
    if (!item) throw new ImError('item-not-found', `${contact.bare} is not in the roster`);
    if (subscriptions.hasTo(item.subscription) || item.ask) await this.subscriptionFromUser(account, 'unsubscribe', contact, '');
    if (subscriptions.hasFrom(item.subscription) || item.pendingIn !== null) await this.subscriptionFromUser(account, 'unsubscribed', contact, '');
    await this.changeRoster(account, contact.bare, () => null);
  }

  /**
   * The user sends a subscription stanza to a contact (RFC 6121 3): the user's item changes,
   * and the stanza goes to the contact's server (here, for a local contact), which changes the
   * contact's item in turn. An answer `subscribed` is followed by the user's presence.
   */
  async subscriptionFromUser(account: AccountIdentity, type: subscriptions.SubscriptionType, contact: Jid, status: string, original?: XmlElement): Promise<void> {
    const userJid = jidOf(account.name, account.domain).bare;
    if (contact.bare === userJid) throw new ImError('bad-request', 'a subscription to oneself');
    if (!contact.local && !(await this.isLocalDomain(contact.domain))) throw new ImError('remote-server-not-found', `${contact.domain} is not served here`);
    const change = await this.changeRoster(account, contact.bare, subscriptions.outbound(type, contact.bare));
    if (!subscriptions.outboundIsRouted(type, change.before)) return;
    this.log.info({ event: 'im.subscription', from: userJid, to: contact.bare, type }, `presence subscription: ${type}`);
    const stanza = el('presence', { from: userJid, to: contact.bare, type, id: original?.attrs.id }, status ? el('status', undefined, status) : undefined);
    if (!(await this.isLocalDomain(contact.domain))) {
      if (!this.federation) {
        // Federation is off: the user's item keeps its `ask`, and the user is told.
        for (const client of this.router.localClients(account.id)) {
          if (client.interested) client.deliver(errorReply(stanza, 'remote-server-not-found', NO_FEDERATION(contact.domain)));
        }
        return;
      }
      // To the contact's server (the item keeps its `ask` until the answer comes back); an approval is followed by the user's presence.
      this.sendRemote(stanza);
      if (type === 'subscribed' || type === 'unsubscribed') this.presenceToRemote(account, contact, type === 'subscribed' ? 'current' : 'unavailable');
      return;
    }
    const target = contact.local ? await this.accountOf(contact.bare) : undefined;
    if (!target) return;
    await this.subscriptionToUser(target, type, jidOf(account.name, account.domain), status, stanza);
    if (type === 'subscribed') {
      for (const r of this.router.resources(account.id)) {
        if (!r.record.available || !r.presence) continue;
        const copy = copyStanza(r.presence);
        copy.attrs.to = contact.bare;
        this.router.sendToInterested(target.id, copy);
      }
    } else if (type === 'unsubscribed') {
      for (const r of this.router.resources(account.id)) {
        if (r.record.available) this.router.sendToInterested(target.id, el('presence', { from: jidOf(account.name, account.domain, r.record.resource).full, to: contact.bare, type: 'unavailable' }));
      }
    }
  }

  /** A subscription stanza from `from` (local, or on another server: remote.ts) arrives for the account (RFC 6121 3, the contact's side). */
  async subscriptionToUser(account: AccountIdentity, type: subscriptions.SubscriptionType, from: Jid, status: string, stanza: XmlElement): Promise<void> {
    if (await this.blocks(account.id, from)) return;
    const outcome = subscriptions.inbound(type, from.bare, status);
    let before: RosterItem | undefined;
    await this.changeRoster(account, from.bare, (current) => {
      before = current;
      return outcome.decide(current);
    });
    const action = outcome.action(before);
    const user = jidOf(account.name, account.domain);
    if (this.federation && !(await this.isLocalDomain(from.domain))) {
      // The contact is on another server: what would be done to its account here goes there.
      if (action === 'deliver') {
        this.router.sendToInterested(account.id, stanza);
        if (type === 'unsubscribe') this.presenceToRemote(account, from, 'unavailable');
      } else if (action === 'autoReply' && type === 'subscribe') {
        this.sendRemote(el('presence', { from: user.bare, to: from.bare, type: 'subscribed' }));
        this.presenceToRemote(account, from, 'current');
      }
      return;
    }
    if (action === 'deliver') {
      this.router.sendToInterested(account.id, stanza);
      if (type === 'unsubscribe') {
        // The contact no longer sees the user: it is told the user is gone (RFC 6121 3.3.3).
        const from_ = await this.accountOf(from.bare);
        for (const r of this.router.resources(account.id)) {
          if (r.record.available && from_) this.router.sendToInterested(from_.id, el('presence', { from: jidOf(user.local, user.domain, r.record.resource).full, to: from.bare, type: 'unavailable' }));
        }
      }
    } else if (action === 'autoReply' && type === 'subscribe') {
      const requester = await this.accountOf(from.bare);
      if (requester) await this.subscriptionToUser(requester, 'subscribed', user, '', el('presence', { from: user.bare, to: from.bare, type: 'subscribed' }));
      // The requester now sees the user's presence.
      if (requester) {
        for (const r of this.router.resources(account.id)) {
          if (!r.record.available || !r.presence) continue;
          const copy = copyStanza(r.presence);
          copy.attrs.to = from.bare;
          this.router.sendToInterested(requester.id, copy);
        }
      }
    }
  }

  /** The account's available resources' presence (or their going) to a contact on another server. */
  private presenceToRemote(account: AccountIdentity, contact: Jid, what: 'current' | 'unavailable'): void {
    for (const r of this.router.resources(account.id)) {
      if (!r.record.available) continue;
      const from = jidOf(account.name, account.domain, r.record.resource).full;
      if (what === 'unavailable') this.sendRemote(el('presence', { from, to: contact.bare, type: 'unavailable' }));
      else if (r.presence) {
        const copy = copyStanza(r.presence);
        copy.attrs.from = from;
        copy.attrs.to = contact.bare;
        this.sendRemote(copy);
      }
    }
  }

  /** The account's roster groups (those of items and the empty ones). */
  groups(account: AccountIdentity): Promise<string[]> {
    return this.store.roster.groups(account.id);
  }

  async groupAdd(account: AccountIdentity, name: string): Promise<void> {
    if (!(await this.store.roster.addGroup(account.id, name, this.limits.rosterGroups))) throw new ImError('conflict', `group ${name} exists already, or there are too many groups`);
  }

  /** Renames a group (`to`), or deletes it (`to` null); the items changed get pushed. */
  async groupRename(account: AccountIdentity, from: string, to: string | null): Promise<void> {
    let result: { items: RosterItem[]; version: number };
    try {
      result = await this.store.roster.renameGroup(account.id, from, to);
    } catch (err) {
      if (err instanceof NotFoundError) throw new ImError('item-not-found', `there is no group ${from}`);
      throw err;
    }
    for (const item of result.items) this.bus.publish('rosterChanged', { accountId: account.id, jid: item.jid, version: result.version, item: JSON.stringify(item) });
  }

  // -------------------------------------------------------------------------------------
  // Block lists (XEP-0191)

  async block(account: AccountIdentity, jids: string[]): Promise<void> {
    if (!(await this.store.blocking.add(account.id, jids, this.limits.blockedItems))) throw new ImError('resource-constraint', `at most ${this.limits.blockedItems} addresses can be blocked`);
    this.bus.publish('blockingChanged', { accountId: account.id, blocked: jids, unblocked: [] });
    // A blocked contact sees the user go (XEP-0191 3.3).
    for (const jid of jids) {
      const contact = tryJid(jid);
      if (contact?.local && this.federation && !(await this.isLocalDomain(contact.domain))) {
        this.presenceToRemote(account, contact, 'unavailable');
        continue;
      }
      const target = contact?.local ? await this.accountOf(contact.bare) : undefined;
      if (!target) continue;
      for (const r of this.router.resources(account.id)) {
        if (r.record.available) this.router.sendToInterested(target.id, el('presence', { from: jidOf(account.name, account.domain, r.record.resource).full, to: contact!.bare, type: 'unavailable' }));
      }
    }
  }

  async unblock(account: AccountIdentity, jids: string[] | undefined): Promise<void> {
    const removed = await this.store.blocking.remove(account.id, jids);
    this.bus.publish('blockingChanged', { accountId: account.id, blocked: [], unblocked: jids === undefined ? 'all' : removed });
  }

  // -------------------------------------------------------------------------------------
  // iq

  /**
   * Routes an iq (RFC 6120 8.2.3, RFC 6121 8.5): one for a full JID goes to that resource;
   * one for the server, the sender's own account or another local account is answered by
   * the server (ServerIq); an unknown target gets service-unavailable.
   */
  async routeIq(stanza: XmlElement, origin: ImClient, to: Jid | undefined): Promise<void> {
    const type = stanza.attrs.type;
    const isRequest = type === 'get' || type === 'set';
    if (!isRequest && type !== 'result' && type !== 'error') return origin.deliver(errorReply(stanza, 'bad-request', 'an iq needs a type: get, set, result or error'));
    if (isRequest && stanza.attrs.id === undefined) return origin.deliver(errorReply(stanza, 'bad-request', 'an iq needs an id'));
    if (isRequest && stanza.elements().length !== 1) return origin.deliver(errorReply(stanza, 'bad-request', 'an iq request has exactly one child'));
    if (to && !(await this.isLocalDomain(to.domain))) {
      if (this.federation) return this.sendRemote(stanza);
      if (isRequest) origin.deliver(errorReply(stanza, 'remote-server-not-found', NO_FEDERATION(to.domain)));
      return;
    }
    if (to?.resource && to.local) {
      const account = await this.accountOf(to.bare);
      if (account && !(await this.blocks(account.id, parseJid(origin.jid))) && this.router.sendToResource(account.id, to.resource, stanza)) return;
      if (isRequest) origin.deliver(errorReply(stanza, 'service-unavailable', `${to.full} is not connected`));
      return;
    }
    if (!isRequest) return;
    await this.serverIq.handle(origin, stanza, to);
  }
}

/** What a stanza for another server gets when federation is off. */
const NO_FEDERATION = (domain: string): string => `${domain} is not served here, and federation with other servers is off (ports.xmppS2s)`;

/** A XIMSS session bound with signalBind takes messages even before it sets its presence. */
function isBoundXimss(r: KnownResource): boolean {
  return r.record.kind === 'ximss';
}

/** The sender asked that the message not be kept (XEP-0334 hints). */
function noStore(stanza: XmlElement): boolean {
  return childNs(stanza, NS.hints, 'no-store') !== undefined || childNs(stanza, NS.hints, 'no-permanent-store') !== undefined;
}

/** Not to be copied to other resources (XEP-0280 private, XEP-0334 no-copy). */
function isPrivate(stanza: XmlElement): boolean {
  return childNs(stanza, NS.carbons, 'private') !== undefined || childNs(stanza, NS.hints, 'no-copy') !== undefined;
}

function carbon(kind: 'sent' | 'received', from: string, to: string, stanza: XmlElement): XmlElement {
  return el('message', { from, to, type: stanza.attrs.type }, el(kind, { xmlns: NS.carbons }, forwarded(stanza)));
}

/** A new random id for stanzas the server makes. */
export function newStanzaId(): string {
  return randomBytes(9).toString('base64url');
}
