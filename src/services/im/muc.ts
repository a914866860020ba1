import { randomBytes } from 'node:crypto';
import type { BusEvents, EventBus } from '../../bus/bus.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Affiliation } from '../../store/im.js';
import { MAX_RELAY_MESSAGE, NotFoundError, type Store } from '../../store/store.js';
import { el, type XmlElement } from '../../xml/element.js';
import { parseJid, tryJid, type Jid } from './jid.js';
import { configFromRecord, configToRecord, defaultConfig, MUC } from './muc-config.js';
import { Room, type Endpoint, type Occupant, type Persist, type RoomHost } from './muc-room.js';
import type { ImClient } from './router.js';
import type { ImComponent, ImService } from './service.js';
import { copyStanza, errorReply, iqResult, NS, parseStanza } from './stanzas.js';

/** What the group chat service is configured with (config `im`). */
export interface MucLimits {
  /** The service of each local domain is `<subdomain>.<domain>`. */
  subdomain: string;
  /** Rooms one service domain may have (persistent ones, plus this node's temporary ones). */
  roomsPerService: number;
  occupantsPerRoom: number;
  /** Messages of discussion history a room keeps at most. */
  history: number;
}

/** How long a node's claim on hosting a room lasts, and how often it is renewed while the room lives. */
const LEASE_MS = 60_000;
const RENEW_MS = 20_000;

/** The sender of a stanza: a client of a local account on any node (`client` when it is on this one). */
interface Sender extends Endpoint {
  client?: ImClient;
}

/**
 * Multi-user chat (XEP-0045): the service `conference.<domain>` of every local domain, as an
 * IM component. A room lives in the memory of one node of the cluster, the one that holds
 * its lease (store.shared, scope `muc-host`, renewed while the room is held); a stanza for a
 * room hosted elsewhere travels on the bus to that node (`mucStanza`, large ones through the
 * store as ImRouter does), and what the room sends reaches occupants on any node through
 * ImRouter.sendToResource. Persistent rooms (configuration, subject, affiliations, history)
 * are kept in store.muc and loaded by whichever node next hosts them; temporary ones end
 * with their last occupant. When a hosting node dies, its rooms' occupants are lost with it:
 * the next stanza after the lease expires opens the room on another node.
 *
 * Not (yet) here: occupants of other servers (no federation), one nickname shared by several
 * clients of the same user (the second gets `conflict`), reserved nicknames (muc#register),
 * voice requests. The rooms-per-service limit counts the persistent rooms and the temporary
 * rooms of this node; the public list (disco#items) shows the persistent rooms and this
 * node's temporary ones. Any local account may create rooms on any local domain's service.
 */
export class MucService implements ImComponent {
  /** The rooms this node hosts, by JID. */
  private readonly rooms = new Map<string, Room>();
  /** Stanzas for a room wait here for the one before them (by room JID). */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly suffix: string;
  private readonly unsubscribe: (() => void)[] = [];
  private renewTimer: NodeJS.Timeout | undefined;
  private readonly host: RoomHost;

  constructor(
    private readonly im: ImService,
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly node: string,
    private readonly log: Logger,
    private readonly limits: MucLimits,
    metrics?: Metrics,
  ) {
    this.suffix = `${limits.subdomain}.`;
    this.host = this.roomHost();
    this.unsubscribe.push(
      bus.on('mucStanza', (event) => {
        if (event.node === this.node) void this.remoteStanza(event);
      }),
    );
    this.renewTimer = setInterval(() => void this.renewLeases(), RENEW_MS);
    this.renewTimer.unref();
    metrics?.gauge('ximssd_muc_rooms', "Group chat rooms this node hosts, and their occupants", ['kind'], (set) => {
      let occupants = 0;
      for (const room of this.rooms.values()) occupants += room.occupants.size;
      set({ kind: 'rooms' }, this.rooms.size);
      set({ kind: 'occupants' }, occupants);
    });
  }

  /** `conference.<a local domain>` (a room service of another server is federation's). */
  async serves(domain: string): Promise<boolean> {
    return domain.length > this.suffix.length && domain.startsWith(this.suffix) && (await this.im.isLocalDomain(domain.slice(this.suffix.length)));
  }

  readonly item = (domain: string): { jid: string; name: string } => ({ jid: `${this.suffix}${domain}`, name: 'Chat rooms' });

  /** Lets go of every room (shutdown: the clients are gone already, so the rooms are empty). */
  async close(): Promise<void> {
    clearInterval(this.renewTimer);
    for (const stop of this.unsubscribe) stop();
    await Promise.all([...this.queues.values()]);
    for (const jid of [...this.rooms.keys()]) await this.release(jid);
    this.rooms.clear();
  }

  async handle(stanza: XmlElement, origin: ImClient): Promise<void> {
    const to = parseJid(stanza.attrs.to!);
    const sender: Sender = { jid: parseJid(origin.jid), accountId: origin.account.id, node: this.node, client: origin };
    // The client's node remembers the rooms it is in: leaving on disconnect is the IM service's (RFC 6121 4.6.3).
    if (stanza.name === 'presence' && to.local) {
      if (stanza.attrs.type === 'unavailable') origin.directed.delete(to.full);
      else if (stanza.attrs.type === undefined && to.resource) origin.directed.add(to.full);
    }
    if (!(await this.im.isLocalDomain(to.domain.slice(this.suffix.length)))) {
      return this.reply(sender, stanza, 'remote-server-not-found', `${to.domain} is not served here`);
    }
    if (!to.local) return this.serviceStanza(stanza, sender, to);
    if (stanza.name === 'presence' && stanza.attrs.type === undefined && !to.resource) {
      return this.reply(sender, stanza, 'jid-malformed', 'enter a room as room@service/nickname');
    }
    if (stanza.name === 'presence' && stanza.attrs.type === undefined && !this.im.router.resource(sender.accountId, sender.jid.resource)) {
      return this.reply(sender, stanza, 'not-acceptable', 'bind the session first (signalBind): a room sends its messages to a connected client');
    }
    this.enqueue(to.bare, stanza, sender);
  }

  /** An error back to the sender (not for errors, nor for an unavailable presence). */
  private reply(to: Sender, stanza: XmlElement, condition: string, text: string): void {
    if (stanza.attrs.type === 'error' || (stanza.name === 'presence' && stanza.attrs.type === 'unavailable')) return;
    this.deliver(to, errorReply(stanza, condition, text));
  }

  private deliver(to: Sender, stanza: XmlElement, viaNode = true): boolean {
    stanza.attrs.to = to.jid.full;
    if (to.client) {
      to.client.deliver(stanza);
      return true;
    }
    if (this.im.router.sendToResource(to.accountId, to.jid.resource, stanza)) return true;
    if (!viaNode || to.node === this.node) return false;
    // The client's node has not told this one about it yet: the stanza goes to that node.
    void this.toNode('imStanza', { node: to.node, accountId: to.accountId, resource: to.jid.resource }, stanza).catch((err: unknown) =>
      this.log.error({ event: 'muc.relay_failed', error: errorText(err) }, 'a stanza for another node could not be kept'),
    );
    return true;
  }

  /** The room's stanzas are handled one at a time, in the order they came. */
  private enqueue(jid: string, stanza: XmlElement, sender: Sender): void {
    const previous = this.queues.get(jid) ?? Promise.resolve();
    const next = previous
      .then(() => this.dispatch(jid, stanza, sender))
      .catch((err: unknown) => {
        this.log.error({ event: 'muc.stanza_failed', room: jid, error: errorText(err) }, 'a stanza for a room failed');
        this.reply(sender, stanza, 'internal-server-error', 'the room failed to handle this');
      });
    this.queues.set(jid, next);
    void next.then(() => {
      if (this.queues.get(jid) === next) this.queues.delete(jid);
    });
  }

  private async dispatch(jid: string, stanza: XmlElement, sender: Sender): Promise<void> {
    let room = this.rooms.get(jid);
    let created = false;
    if (!room) {
      const holder = await this.claim(jid);
      if (holder !== this.node) return this.relay(holder, jid, stanza, sender);
      const opened = await this.open(jid, stanza, sender);
      if (!opened) return this.release(jid);
      ({ room, created } = opened);
    }
    try {
      await room.handle(stanza, sender, created);
    } finally {
      if (room.destroyedAlready || room.occupants.size === 0) await this.unload(room);
    }
  }

  /**
   * The room, read from the store (a persistent one), or made by a first entrance; undefined
   * (the sender told why) when there is no such room and the stanza does not create one.
   */
  private async open(jid: string, stanza: XmlElement, sender: Sender): Promise<{ room: Room; created: boolean } | undefined> {
    const record = await this.store.muc.get(jid);
    if (record) {
      const [affiliations, history] = await Promise.all([this.store.muc.affiliations(jid), this.store.muc.history(jid, this.limits.history)]);
      const config = configFromRecord(record.config, this.limits.history);
      const subjectBy = typeof record.config.subjectBy === 'string' ? record.config.subjectBy : '';
      const room = new Room(jid, this.host, config, record.subject, subjectBy, new Map(affiliations.map((a) => [a.jid, a.affiliation])), history, true, record.created);
      this.rooms.set(jid, room);
      return { room, created: false };
    }
    const to = parseJid(stanza.attrs.to!);
    const entering = stanza.name === 'presence' && stanza.attrs.type === undefined && to.resource !== '';
    if (!entering) {
      if (stanza.name !== 'presence') this.reply(sender, stanza, 'item-not-found', `there is no room ${jid}`);
      return undefined;
    }
    if ((await this.roomCount(to.domain)) >= this.limits.roomsPerService) {
      this.reply(sender, stanza, 'not-allowed', `the service has ${this.limits.roomsPerService} rooms already`);
      return undefined;
    }
    if (!/^[^\s]{1,256}$/u.test(to.local)) {
      this.reply(sender, stanza, 'jid-malformed', 'a room name is 1 to 256 characters without spaces');
      return undefined;
    }
    const room = new Room(jid, this.host, defaultConfig(this.limits.history), '', '', new Map([[sender.jid.bare, 'owner' as Affiliation]]), [], false, Date.now());
    // Created with the MUC protocol: locked until configured (XEP-0045 10.1); a client that does
    // not speak it (a XIMSS session, an old client) gets an instant room at once.
    room.locked = stanza.elements().some((c) => c.name === 'x' && c.attrs.xmlns === MUC.muc);
    this.rooms.set(jid, room);
    this.log.debug({ event: 'muc.room_created', room: jid, owner: sender.jid.bare, locked: room.locked }, 'group chat room created');
    return { room, created: true };
  }

  /** Persistent rooms of the service domain, and the temporary ones this node holds. */
  private async roomCount(serviceDomain: string): Promise<number> {
    let count = (await this.store.muc.rooms(serviceDomain)).length;
    for (const room of this.rooms.values()) if (!room.persisted && room.serviceDomain === serviceDomain) count++;
    return count;
  }

  /** An empty room leaves memory (a temporary one ends), and its lease goes. */
  private async unload(room: Room): Promise<void> {
    if (this.rooms.get(room.jid) !== room) return;
    this.rooms.delete(room.jid);
    if (!room.persisted && !room.destroyedAlready) this.log.debug({ event: 'muc.room_destroyed', room: room.jid, reason: 'empty' }, 'temporary room ended with its last occupant');
    await this.release(room.jid);
  }

  // -------------------------------------------------------------------------------------
  // What a room asks of its host

  private roomHost(): RoomHost {
    return {
      log: this.log,
      limits: this.limits,
      deliver: (to, stanza, viaNode) => this.deliver({ jid: to.jid, accountId: to.accountId, node: to.node }, stanza, viaNode),
      persist: (room, change) => this.persist(room, change),
      setPersistent: (room, persistent) => this.setPersistent(room, persistent),
      destroyed: (room) => this.log.debug({ event: 'muc.room_destroyed', room: room.jid, reason: 'owner' }, 'group chat room destroyed by its owner'),
      sendToUser: (stanza) => this.im.routeMessage(stanza, undefined),
      occupantVcard: (room, iq, from, target) => this.occupantVcard(room, iq, from, target),
    };
  }

  private async persist(room: Room, change: Persist): Promise<void> {
    if (!room.persisted) return;
    try {
      switch (change.kind) {
        case 'config':
          return await this.store.muc.update(room.jid, { ...configToRecord(room.config), subjectBy: room.subjectBy }, room.subject);
        case 'affiliation':
          return await this.store.muc.setAffiliation(room.jid, change.user, change.affiliation);
        case 'history':
          return await this.store.muc.appendHistory(room.jid, change.message, Math.min(room.config.historyLength, this.limits.history));
      }
    } catch (err) {
      // Removed meanwhile (by another node's owner request while this one held it: not expected, but not fatal).
      if (err instanceof NotFoundError) return;
      throw err;
    }
  }

  private async setPersistent(room: Room, persistent: boolean): Promise<boolean> {
    if (!persistent) {
      await this.store.muc.remove(room.jid);
      room.persisted = false;
      return true;
    }
    const created = await this.store.muc.create({ jid: room.jid, config: { ...configToRecord(room.config), subjectBy: room.subjectBy }, subject: room.subject, created: room.created }, this.limits.roomsPerService);
    if (!created) return false;
    room.persisted = true;
    for (const [user, affiliation] of room.affiliations) await this.store.muc.setAffiliation(room.jid, user, affiliation);
    for (const message of room.history) await this.store.muc.appendHistory(room.jid, message, Math.min(room.config.historyLength, this.limits.history));
    this.log.info({ event: 'muc.room_persistent', room: room.jid }, 'group chat room kept in the store');
    return true;
  }

  /** A vCard request to an occupant is answered from the occupant's account, as the server answers it for the bare JID. */
  private async occupantVcard(room: Room, iq: XmlElement, from: Endpoint, target: Occupant): Promise<void> {
    const requester = await this.im.accountOf(from.jid.bare);
    if (!requester) return;
    const proxy: ImClient = {
      kind: 'xmpp',
      account: requester,
      resource: from.jid.resource,
      jid: from.jid.full,
      available: true,
      interested: false,
      priority: 0,
      presence: undefined,
      carbons: false,
      directed: new Set(),
      deliver: (answer) => {
        answer.attrs.from = `${room.jid}/${target.nick}`;
        this.deliver({ jid: from.jid, accountId: from.accountId, node: from.node }, answer);
      },
      rosterPush: () => {},
      blockingPush: () => {},
      end: () => {},
    };
    const request = el('iq', { from: from.jid.full, to: target.jid.bare, type: 'get', id: iq.attrs.id }, ...iq.elements().map(copyStanza));
    await this.im.serverIq.handle(proxy, request, parseJid(target.jid.bare));
  }

  // -------------------------------------------------------------------------------------
  // The service itself (XEP-0045 6.1-6.3: disco of the service, its public rooms)

  private async serviceStanza(stanza: XmlElement, sender: Sender, to: Jid): Promise<void> {
    if (stanza.name !== 'iq') return this.reply(sender, stanza, 'service-unavailable', 'the chat service takes no messages or presence itself');
    const type = stanza.attrs.type;
    if (type !== 'get' && type !== 'set') return;
    const payload = stanza.elements()[0];
    if (!payload || stanza.elements().length !== 1) return this.reply(sender, stanza, 'bad-request', 'an iq request has one child');
    if (type === 'get' && payload.attrs.xmlns === NS.discoInfo && !payload.attrs.node) {
      const query = el('query', { xmlns: NS.discoInfo }, el('identity', { category: 'conference', type: 'text', name: 'Chat rooms' }));
      for (const feature of [MUC.muc, MUC.unique, NS.discoInfo, NS.discoItems]) query.add('feature', { var: feature });
      this.deliver(sender, iqResult(stanza, query));
      return;
    }
    if (type === 'get' && payload.attrs.xmlns === NS.discoItems && !payload.attrs.node) {
      const items = new Map<string, string>();
      for (const record of await this.store.muc.rooms(to.domain)) {
        const config = configFromRecord(record.config, this.limits.history);
        if (config.public) items.set(record.jid, config.name);
      }
      for (const room of this.rooms.values()) {
        if (room.serviceDomain !== to.domain) continue;
        if (room.config.public && !room.locked) items.set(room.jid, room.config.name);
        else items.delete(room.jid);
      }
      const query = el('query', { xmlns: NS.discoItems });
      for (const [jid, name] of [...items].sort()) query.add('item', { jid, name: name || jid.slice(0, jid.indexOf('@')) });
      this.deliver(sender, iqResult(stanza, query));
      return;
    }
    if (type === 'get' && payload.attrs.xmlns === MUC.unique) {
      // A room name nobody uses (XEP-0045 10.1.4), for a client about to create a room.
      this.deliver(sender, iqResult(stanza, el('unique', { xmlns: MUC.unique }, randomBytes(12).toString('hex'))));
      return;
    }
    if (payload.attrs.xmlns === NS.ping) {
      this.deliver(sender, iqResult(stanza));
      return;
    }
    this.reply(sender, stanza, 'service-unavailable', 'the chat service does not answer this request');
  }

  // -------------------------------------------------------------------------------------
  // Hosting in a cluster: leases and relays

  /** The node that hosts the room: this one when nobody else holds a live lease on it (then this one takes it). */
  private async claim(jid: string): Promise<string> {
    const now = Date.now();
    return this.store.shared.update('muc-host', jid, now, (value) => {
      const held = leaseOf(value);
      if (held && held.node !== this.node && held.until > now) return { value, expires: held.until, result: held.node };
      const until = now + LEASE_MS;
      return { value: { node: this.node, until }, expires: until, result: this.node };
    });
  }

  private async release(jid: string): Promise<void> {
    const now = Date.now();
    await this.store.shared
      .update('muc-host', jid, now, (value) => {
        const held = leaseOf(value);
        if (held && held.node !== this.node) return { value, expires: held.until, result: undefined };
        return { value: undefined, expires: 0, result: undefined };
      })
      .catch((err: unknown) => this.log.warn({ event: 'muc.release_failed', room: jid, error: errorText(err) }, 'a room lease could not be released'));
  }

  private async renewLeases(): Promise<void> {
    for (const jid of this.rooms.keys()) {
      const now = Date.now();
      try {
        const holder = await this.store.shared.update('muc-host', jid, now, (value) => {
          const held = leaseOf(value);
          if (held && held.node !== this.node && held.until > now) return { value, expires: held.until, result: held.node };
          return { value: { node: this.node, until: now + LEASE_MS }, expires: now + LEASE_MS, result: this.node };
        });
        if (holder !== this.node) this.log.warn({ event: 'muc.lease_lost', room: jid, holder }, 'another node took a room this node hosts');
      } catch (err) {
        this.log.warn({ event: 'muc.renew_failed', room: jid, error: errorText(err) }, 'a room lease could not be renewed');
      }
    }
  }

  /** The stanza goes to the node hosting its room (its sender's address travels in `from`). */
  private async relay(node: string, room: string, stanza: XmlElement, sender: Sender): Promise<void> {
    const copy = copyStanza(stanza);
    copy.attrs.from = sender.jid.full;
    await this.toNode('mucStanza', { node, room, accountId: sender.accountId, origin: sender.node }, copy);
  }

  /**
   * Publishes a stanza for another node: in the event when it fits (the JSON around it, quotes
   * escaped, stays under the relay's limit), else kept in the shared state for a minute under
   * a key the event carries (as ImRouter does; `im-stanza` is the scope its receiver reads).
   */
  private async toNode<K extends 'mucStanza' | 'imStanza'>(topic: K, target: Omit<BusEvents[K], 'xml' | 'key'>, stanza: XmlElement): Promise<void> {
    const xml = stanza.toString();
    if (xml.length * 1.2 + 300 < MAX_RELAY_MESSAGE) {
      this.bus.publish(topic, { ...target, xml } as BusEvents[K]);
      return;
    }
    const key = randomBytes(12).toString('hex');
    const scope = topic === 'mucStanza' ? 'muc-stanza' : 'im-stanza';
    await this.store.shared.update(scope, key, Date.now(), () => ({ value: xml, expires: Date.now() + 60_000, result: undefined }));
    this.bus.publish(topic, { ...target, key } as BusEvents[K]);
  }

  private async remoteStanza(event: BusEvents['mucStanza']): Promise<void> {
    let xml = event.xml;
    if (xml === undefined && event.key !== undefined) {
      const kept = await this.store.shared.get('muc-stanza', event.key, Date.now()).catch(() => undefined);
      if (typeof kept === 'string') xml = kept;
    }
    const stanza = xml === undefined ? undefined : parseStanza(xml);
    const from = tryJid(stanza?.attrs.from);
    const to = tryJid(stanza?.attrs.to);
    if (!stanza || !from?.resource || !to || to.bare !== event.room) return;
    this.enqueue(event.room, stanza, { jid: from, accountId: event.accountId, node: event.origin });
  }
}

function leaseOf(value: unknown): { node: string; until: number } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { node, until } = value as { node?: unknown; until?: unknown };
  return typeof node === 'string' && typeof until === 'number' ? { node, until } : undefined;
}
