import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.js';
import type { Affiliation, RoomHistoryMessage } from '../../store/im.js';
import { el, type XmlElement } from '../../xml/element.js';
import { applyForm, ConfigError, configForm, MUC, roomFeatures, type RoomConfig } from './muc-config.js';
import { tryJid, type Jid } from './jid.js';
import { childNs, copyStanza, delay, errorReply, iqResult, NS, parseStanza } from './stanzas.js';

export type Role = 'moderator' | 'participant' | 'visitor' | 'none';
/** An affiliation with 'none' for "no affiliation" (what the wire says). */
export type AnyAffiliation = Affiliation | 'none';

/** Where a stanza comes from or goes to: a client of a local account, on any node. */
export interface Endpoint {
  /** The client's full JID. */
  jid: Jid;
  accountId: number;
  /** The cluster node the client is connected to. */
  node: string;
}

/** Someone in the room. */
export interface Occupant extends Endpoint {
  nick: string;
  role: Role;
  /** The children of the occupant's last presence (show, status…) the room repeats. */
  presence: XmlElement[];
  /** When it entered (ms). */
  since: number;
}

/** What a room needs from the service that hosts it. */
export interface RoomHost {
  readonly log: Logger;
  /** The service's limits: occupants per room, messages of history kept, rooms per service. */
  readonly limits: { occupantsPerRoom: number; history: number; roomsPerService: number };
  /**
   * Hands a stanza to a client (its `to` set here); false when the client is gone. With
   * `viaNode`, a client this node does not know of (yet) is sought on its own node.
   */
  deliver(to: Endpoint, stanza: XmlElement, viaNode: boolean): boolean;
  /** The room's state changed in a way that must be kept (only for persistent rooms). */
  persist(room: Room, change: Persist): Promise<void>;
  /** Turns the room persistent (false: the service has too many rooms) or temporary. */
  setPersistent(room: Room, persistent: boolean): Promise<boolean>;
  /** The room was destroyed (by its owner) and is to be forgotten. */
  destroyed(room: Room): void;
  /** A message from the room to a user who may not be in it (an invitation). */
  sendToUser(stanza: XmlElement): Promise<void>;
  /** Answers a vCard request to an occupant from the occupant's account (XEP-0045 17.3). */
  occupantVcard(room: Room, iq: XmlElement, from: Endpoint, target: Occupant): Promise<void>;
}

export type Persist = { kind: 'config' } | { kind: 'affiliation'; user: string; affiliation: Affiliation | null } | { kind: 'history'; message: RoomHistoryMessage };

/** Nicknames are at most this many characters. */
export const MAX_NICK = 128;
/**
 * How long after entering an occupant may still be unknown to this node's directory of clients
 * (the news of its client travels between nodes): until then a stanza that finds no client
 * goes to the occupant's node; after it, the occupant is taken as gone (its node died).
 */
const SETTLE_MS = 30_000;
/** iq requests forwarded to occupants and waiting for their answer, per room. */
const PENDING_IQS = 500;
/** The XEP-0086 codes of the MUC errors (XIMSS shows them as signalCode). */
const LEGACY_CODES: Record<string, number> = {
  'bad-request': 400,
  'jid-malformed': 400,
  'not-authorized': 401,
  'registration-required': 407,
  forbidden: 403,
  'item-not-found': 404,
  'not-allowed': 405,
  'not-acceptable': 406,
  conflict: 409,
  'service-unavailable': 503,
};
const RANK: Record<AnyAffiliation, number> = { owner: 4, admin: 3, member: 2, none: 1, outcast: 0 };

/**
 * One multi-user chat room (XEP-0045), held in memory by the node that hosts it: its
 * occupants, their roles, the affiliations, the configuration, the subject and the recent
 * discussion history. Every stanza for the room comes through `handle`, one at a time (the
 * service queues them), with the sender's real address.
 */
export class Room {
  readonly occupants = new Map<string, Occupant>();
  /** Locked: created with XEP-0045's MUC protocol and not yet configured (10.1.1). */
  locked = false;
  destroyedAlready = false;
  private readonly pendingIqs = new Map<string, { from: Endpoint; id: string; target: string }>();
  /** Occupants whose client could not be reached while handling a stanza. */
  private readonly lost = new Set<Occupant>();

  constructor(
    readonly jid: string,
    readonly host: RoomHost,
    public config: RoomConfig,
    public subject: string,
    /** The nick of who set the subject ('' when the room itself). */
    public subjectBy: string,
    readonly affiliations: Map<string, Affiliation>,
    readonly history: RoomHistoryMessage[],
    public persisted: boolean,
    readonly created: number,
  ) {}

  get serviceDomain(): string {
    return this.jid.slice(this.jid.indexOf('@') + 1);
  }

  affiliationOf(bare: string): AnyAffiliation {
    return this.affiliations.get(bare) ?? 'none';
  }

  private maxOccupants(): number {
    const limit = this.host.limits.occupantsPerRoom;
    return this.config.maxUsers > 0 ? Math.min(this.config.maxUsers, limit) : limit;
  }

  private occupantOf(jid: Jid): Occupant | undefined {
    for (const o of this.occupants.values()) if (o.jid.full === jid.full) return o;
    return undefined;
  }

  private defaultRole(affiliation: AnyAffiliation): Role {
    switch (affiliation) {
      case 'owner':
      case 'admin':
        return 'moderator';
      case 'member':
        return 'participant';
      case 'outcast':
        return 'none';
      default:
        return this.config.moderated ? 'visitor' : 'participant';
    }
  }

  /** A stanza for the room (`to` = the room or an occupant), from a client's real address. */
  async handle(stanza: XmlElement, from: Endpoint, created = false): Promise<void> {
    const nick = tryJid(stanza.attrs.to)?.resource ?? '';
    try {
      switch (stanza.name) {
        case 'presence':
          return await this.presence(stanza, from, nick, created);
        case 'message':
          return await (nick ? this.privateMessage(stanza, from, nick) : this.roomMessage(stanza, from));
        case 'iq':
          return await (nick ? this.occupantIq(stanza, from, nick) : this.roomIq(stanza, from));
      }
    } finally {
      // Occupants whose client is gone without a word (its node died) leave, seen by the others.
      for (const occupant of this.lost) {
        this.lost.delete(occupant);
        if (this.occupants.get(occupant.nick) === occupant) this.remove(occupant, [], {});
      }
    }
  }

  /** Sends to a client; an occupant that cannot be reached is noted as lost. */
  private send(to: Endpoint, stanza: XmlElement): void {
    const occupant = this.occupants.get((to as Partial<Occupant>).nick ?? '') === to ? (to as Occupant) : undefined;
    const settled = occupant !== undefined && Date.now() - occupant.since > SETTLE_MS;
    if (!this.host.deliver(to, stanza, !settled) && occupant) this.lost.add(occupant);
  }

  /** An error back to the sender (never for an error: no loops), with its XEP-0086 code for older clients. */
  private fail(stanza: XmlElement, to: Endpoint, condition: string, text: string): void {
    if (stanza.attrs.type === 'error') return;
    const reply = errorReply(stanza, condition, text);
    const error = reply.element('error')!;
    if (LEGACY_CODES[condition]) error.attrs.code = String(LEGACY_CODES[condition]);
    if (condition === 'registration-required') error.attrs.type = 'auth';
    this.send(to, reply);
  }

  // -------------------------------------------------------------------------------------
  // Presence: entering, changing nick or presence, leaving (XEP-0045 7.2, 7.6, 7.7, 7.14)

  private async presence(stanza: XmlElement, from: Endpoint, nick: string, created: boolean): Promise<void> {
    const type = stanza.attrs.type;
    const occupant = this.occupantOf(from.jid);
    if (type === 'unavailable') {
      if (occupant) this.remove(occupant, [], { status: stanza.element('status')?.text() });
      return;
    }
    if (type !== undefined) return; // probes, errors, subscriptions: nothing for a room
    if (!nick) return this.fail(stanza, from, 'jid-malformed', 'enter the room as room@service/nickname');
    if (nick.length > MAX_NICK) return this.fail(stanza, from, 'not-acceptable', `a nickname is at most ${MAX_NICK} characters`);
    if (!occupant) return this.join(stanza, from, nick, created);
    const children = presenceChildren(stanza);
    if (nick === occupant.nick) {
      occupant.presence = children;
      this.broadcastPresence(occupant);
      return;
    }
    // A nickname change (7.6).
    if (this.occupants.has(nick)) return this.fail(stanza, from, 'conflict', `the nickname ${nick} is taken in this room`);
    const old = occupant.nick;
    for (const to of this.occupants.values()) {
      const p = this.presenceOf(occupant, to, to === occupant ? [303, 110] : [303], 'unavailable');
      itemOf(p)!.attrs.nick = nick;
      itemOf(p)!.attrs.role = occupant.role;
      this.send(to, p);
    }
    this.occupants.delete(old);
    occupant.nick = nick;
    occupant.presence = children;
    this.occupants.set(nick, occupant);
    this.broadcastPresence(occupant);
    this.host.log.debug({ event: 'muc.nick_changed', room: this.jid, from: old, to: nick }, 'occupant changed nickname');
  }

  private async join(stanza: XmlElement, from: Endpoint, nick: string, created: boolean): Promise<void> {
    const bare = from.jid.bare;
    const affiliation = this.affiliationOf(bare);
    const muc = childNs(stanza, MUC.muc, 'x');
    if (affiliation === 'outcast') return this.fail(stanza, from, 'forbidden', 'you are banned from this room');
    if (this.config.membersOnly && affiliation === 'none') return this.fail(stanza, from, 'registration-required', 'this room is for its members only');
    if (this.locked && affiliation !== 'owner') return this.fail(stanza, from, 'item-not-found', 'the room is locked: its owner has not configured it yet');
    if (this.config.passwordProtected && affiliation !== 'owner' && muc?.element('password')?.text() !== this.config.password) {
      return this.fail(stanza, from, 'not-authorized', 'this room needs a password');
    }
    if (this.occupants.has(nick)) return this.fail(stanza, from, 'conflict', `the nickname ${nick} is taken in this room`);
    if (this.occupants.size >= this.maxOccupants() && RANK[affiliation] < RANK.admin) return this.fail(stanza, from, 'service-unavailable', 'the room is full');
    const occupant: Occupant = { jid: from.jid, accountId: from.accountId, node: from.node, nick, role: this.defaultRole(affiliation), presence: presenceChildren(stanza), since: Date.now() };
    for (const other of this.occupants.values()) this.send(occupant, this.presenceOf(other, occupant));
    this.occupants.set(nick, occupant);
    for (const other of this.occupants.values()) if (other !== occupant) this.send(other, this.presenceOf(occupant, other));
    const codes = [110];
    if (this.config.whois === 'anyone') codes.push(100);
    if (created) codes.push(201);
    this.send(occupant, this.presenceOf(occupant, occupant, codes));
    this.sendHistory(occupant, muc?.element('history'));
    const subject = el('message', { from: this.subjectBy ? `${this.jid}/${this.subjectBy}` : this.jid, type: 'groupchat', id: newId() }, el('subject', undefined, this.subject));
    this.send(occupant, subject);
    this.host.log.debug({ event: 'muc.joined', room: this.jid, nick, jid: from.jid.full, role: occupant.role }, 'occupant entered a room');
  }

  /** The discussion history a newcomer gets (7.2.14), within what it asked for, with delay stamps. */
  private sendHistory(to: Occupant, request: XmlElement | undefined): void {
    const number = (name: string): number | undefined => {
      const v = request?.attrs[name];
      return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
    };
    let messages = this.history;
    const maxStanzas = number('maxstanzas');
    if (maxStanzas !== undefined) messages = maxStanzas === 0 ? [] : messages.slice(-maxStanzas);
    const seconds = number('seconds');
    const sinceText = request?.attrs.since;
    const since = Math.max(seconds !== undefined ? Date.now() - seconds * 1000 : -Infinity, sinceText ? Date.parse(sinceText) || -Infinity : -Infinity);
    messages = messages.filter((m) => m.stamp >= since);
    let chars = number('maxchars');
    const out: XmlElement[] = [];
    for (let i = messages.length - 1; i >= 0; i--) {
      const m = messages[i]!;
      const stanza = parseStanza(m.xml);
      if (!stanza) continue;
      stanza.append(delay(m.stamp, this.jid));
      if (chars !== undefined) {
        chars -= stanza.toString().length;
        if (chars < 0) break;
      }
      out.unshift(stanza);
    }
    for (const stanza of out) this.send(to, stanza);
  }

  /** The occupant's presence as `to` sees it (the real JID shown when the room lets it). */
  private presenceOf(occupant: Occupant, to: Occupant, codes: number[] = [], type?: 'unavailable'): XmlElement {
    const p = el('presence', { from: `${this.jid}/${occupant.nick}`, type });
    if (!type) for (const c of occupant.presence) p.append(copyStanza(c));
    const x = p.add('x', { xmlns: MUC.user });
    const seesJid = this.config.whois === 'anyone' || to.role === 'moderator' || to === occupant;
    x.add('item', { affiliation: this.affiliationOf(occupant.jid.bare), role: type ? 'none' : occupant.role, jid: seesJid ? occupant.jid.full : undefined });
    for (const code of codes) x.add('status', { code });
    return p;
  }

  /** Every occupant learns the occupant's current presence and role (its own copy with 110). */
  private broadcastPresence(occupant: Occupant, codes: number[] = []): void {
    for (const to of this.occupants.values()) this.send(to, this.presenceOf(occupant, to, to === occupant ? [...codes, 110] : codes));
  }

  /**
   * The occupant leaves (its own unavailable presence, or removed: kicked 307, banned 301,
   * no longer a member 321/322), and everyone is told, with who did it and why.
   */
  private remove(occupant: Occupant, codes: number[], details: { actor?: string; reason?: string; status?: string }): void {
    for (const to of this.occupants.values()) {
      const p = this.presenceOf(occupant, to, to === occupant ? [...codes, 110] : codes, 'unavailable');
      const item = itemOf(p)!;
      if (details.actor) item.add('actor', { nick: details.actor });
      if (details.reason) item.add('reason', undefined, details.reason);
      if (details.status) p.append(el('status', undefined, details.status));
      this.send(to, p);
    }
    this.occupants.delete(occupant.nick);
    this.host.log.debug({ event: 'muc.left', room: this.jid, nick: occupant.nick, codes }, 'occupant left a room');
  }

  // -------------------------------------------------------------------------------------
  // Messages (7.4, 7.5, 8.1, 7.8 invitations)

  private async roomMessage(stanza: XmlElement, from: Endpoint): Promise<void> {
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return;
    const occupant = this.occupantOf(from.jid);
    if (type !== 'groupchat') {
      const x = childNs(stanza, MUC.user, 'x');
      const invites = x?.elements('invite') ?? [];
      if (invites.length > 0) return this.invite(stanza, from, occupant, invites);
      const decline = x?.element('decline');
      if (decline) {
        // The invitee declines (7.8.2): the room tells the one who invited.
        const inviter = tryJid(decline.attrs.to);
        if (!inviter) return this.fail(stanza, from, 'jid-malformed', 'a decline names the inviter in `to`');
        const reason = decline.element('reason')?.text() ?? '';
        const out = el('x', { xmlns: MUC.user }, el('decline', { from: from.jid.bare }, reason ? el('reason', undefined, reason) : undefined));
        return this.host.sendToUser(el('message', { from: this.jid, to: inviter.bare, id: newId() }, out, el('body', undefined, `${from.jid.bare} declines the invitation${reason ? `: ${reason}` : ''}`)));
      }
      return this.fail(stanza, from, 'bad-request', 'a message to the room is of type groupchat (or an invitation)');
    }
    if (!occupant) return this.fail(stanza, from, 'not-acceptable', 'only occupants may send messages to the room');
    const subject = stanza.element('subject');
    const body = stanza.element('body');
    if (occupant.role === 'visitor') {
      // A visitor's chat states are dropped quietly; what it says is refused.
      if (!subject && !body) return;
      return this.fail(stanza, from, 'forbidden', 'you have no voice in this moderated room');
    }
    if (this.locked && this.affiliationOf(occupant.jid.bare) === 'owner') {
      // The owner just started talking: the room is taken as an instant room (as Prosody does).
      this.locked = false;
    }
    if (subject && !body) {
      if (occupant.role !== 'moderator' && !(this.config.changeSubject && occupant.role === 'participant')) {
        return this.fail(stanza, from, 'forbidden', 'you may not change the subject of this room');
      }
      if (subject.text().length > 4096) return this.fail(stanza, from, 'not-acceptable', 'the subject is longer than 4096 characters');
      this.subject = subject.text();
      this.subjectBy = occupant.nick;
      await this.host.persist(this, { kind: 'config' });
    }
    const out = el('message', { from: `${this.jid}/${occupant.nick}`, type: 'groupchat', id: stanza.attrs.id });
    for (const c of stanza.children) if (typeof c !== 'string' && c.name !== 'delay' && c.name !== 'stanza-id') out.append(copyStanza(c));
    for (const to of this.occupants.values()) this.send(to, copyStanza(out));
    if (body && this.config.historyLength > 0) {
      const message: RoomHistoryMessage = { stamp: Date.now(), nick: occupant.nick, xml: out.toString() };
      this.history.push(message);
      this.trimHistory();
      await this.host.persist(this, { kind: 'history', message });
    }
  }

  private trimHistory(): void {
    const keep = Math.min(this.config.historyLength, this.host.limits.history);
    if (this.history.length > keep) this.history.splice(0, this.history.length - keep);
  }

  /** A mediated invitation (7.8.2): the room tells the invitee; in a members-only room it becomes a member. */
  private async invite(stanza: XmlElement, from: Endpoint, occupant: Occupant | undefined, invites: XmlElement[]): Promise<void> {
    if (!occupant) return this.fail(stanza, from, 'not-acceptable', 'only occupants may invite');
    const affiliation = this.affiliationOf(from.jid.bare);
    if (this.config.membersOnly && RANK[affiliation] < RANK.admin) return this.fail(stanza, from, 'forbidden', 'only admins invite to this members-only room');
    for (const invite of invites.slice(0, 10)) {
      const invitee = tryJid(invite.attrs.to);
      if (!invitee) return this.fail(stanza, from, 'jid-malformed', 'an invitation needs the invitee address in `to`');
      if (this.config.membersOnly && this.affiliationOf(invitee.bare) === 'none') {
        this.affiliations.set(invitee.bare, 'member');
        await this.host.persist(this, { kind: 'affiliation', user: invitee.bare, affiliation: 'member' });
      }
      const reason = invite.element('reason')?.text() ?? '';
      const x = el('x', { xmlns: MUC.user }, el('invite', { from: from.jid.bare }, reason ? el('reason', undefined, reason) : undefined));
      if (this.config.passwordProtected) x.add('password', undefined, this.config.password);
      const name = this.config.name || this.jid;
      await this.host.sendToUser(el('message', { from: this.jid, to: invitee.bare, id: newId() }, x, el('body', undefined, `${from.jid.bare} invites you to the room ${name}${reason ? `: ${reason}` : ''}`)));
    }
  }

  /** A private message to one occupant (7.5), from the sender's room nickname. */
  private privateMessage(stanza: XmlElement, from: Endpoint, nick: string): void {
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return;
    if (type === 'groupchat') return this.fail(stanza, from, 'bad-request', 'a groupchat message goes to the room, not to an occupant');
    const occupant = this.occupantOf(from.jid);
    if (!occupant) return this.fail(stanza, from, 'not-acceptable', 'only occupants may send private messages in the room');
    const target = this.occupants.get(nick);
    if (!target) return this.fail(stanza, from, 'item-not-found', `there is no ${nick} in the room`);
    const out = el('message', { from: `${this.jid}/${occupant.nick}`, type, id: stanza.attrs.id });
    for (const c of stanza.children) if (typeof c !== 'string' && c.name !== 'delay') out.append(copyStanza(c));
    if (!childNs(out, MUC.user, 'x')) out.add('x', { xmlns: MUC.user });
    this.send(target, out);
  }

  // -------------------------------------------------------------------------------------
  // iq to an occupant (forwarded, 7.9 / 17.3) and to the room (disco, admin, owner)

  private async occupantIq(stanza: XmlElement, from: Endpoint, nick: string): Promise<void> {
    const type = stanza.attrs.type;
    const occupant = this.occupantOf(from.jid);
    if (type === 'result' || type === 'error') {
      // An occupant answers a request the room forwarded to it.
      const pending = stanza.attrs.id === undefined ? undefined : this.pendingIqs.get(stanza.attrs.id);
      if (!pending || !occupant || pending.target !== occupant.nick) return;
      this.pendingIqs.delete(stanza.attrs.id!);
      const reply = el('iq', { from: `${this.jid}/${occupant.nick}`, type, id: pending.id }, ...stanza.elements().map(copyStanza));
      this.send(pending.from, reply);
      return;
    }
    if (!occupant) return this.fail(stanza, from, 'not-acceptable', 'only occupants may address other occupants');
    const payload = stanza.elements()[0];
    // A ping to one's own nickname asks the room whether one is still in it (XEP-0410).
    if (payload?.attrs.xmlns === NS.ping && nick === occupant.nick) return this.send(from, iqResult(stanza));
    const target = this.occupants.get(nick);
    if (!target) return this.fail(stanza, from, 'item-not-found', `there is no ${nick} in the room`);
    if (payload?.attrs.xmlns === NS.vcard && type === 'get') return this.host.occupantVcard(this, stanza, from, target);
    const id = newId();
    this.pendingIqs.set(id, { from, id: stanza.attrs.id ?? '', target: target.nick });
    if (this.pendingIqs.size > PENDING_IQS) this.pendingIqs.delete(this.pendingIqs.keys().next().value!);
    this.send(target, el('iq', { from: `${this.jid}/${occupant.nick}`, type, id }, ...stanza.elements().map(copyStanza)));
  }

  private async roomIq(stanza: XmlElement, from: Endpoint): Promise<void> {
    const type = stanza.attrs.type;
    if (type !== 'get' && type !== 'set') return;
    const payload = stanza.elements()[0];
    if (!payload) return this.fail(stanza, from, 'bad-request', 'an iq request has one child');
    const reply = (result?: XmlElement): void => void this.send(from, iqResult(stanza, result));
    switch (payload.attrs.xmlns) {
      case NS.discoInfo:
        if (type !== 'get') return this.fail(stanza, from, 'bad-request', 'disco#info is read with get');
        if (payload.attrs.node) return this.fail(stanza, from, 'item-not-found', 'no such node');
        return reply(this.discoInfo());
      case NS.discoItems: {
        if (type !== 'get') return this.fail(stanza, from, 'bad-request', 'disco#items is read with get');
        const items = el('query', { xmlns: NS.discoItems });
        // Occupants are listed only to those inside, or for a public open room (6.5).
        if (this.occupantOf(from.jid) || (this.config.public && !this.config.membersOnly)) {
          for (const o of this.occupants.values()) items.add('item', { jid: `${this.jid}/${o.nick}` });
        }
        return reply(items);
      }
      case NS.ping:
        return reply();
      case MUC.owner:
        return this.ownerIq(stanza, payload, from, reply);
      case MUC.admin:
        return this.adminIq(stanza, payload, from, reply);
      default:
        return this.fail(stanza, from, 'service-unavailable', 'the room does not answer this request');
    }
  }

  discoInfo(): XmlElement {
    const query = el('query', { xmlns: NS.discoInfo }, el('identity', { category: 'conference', type: 'text', name: this.config.name || this.jid.slice(0, this.jid.indexOf('@')) }));
    for (const feature of roomFeatures(this.config)) query.add('feature', { var: feature });
    const form = query.add('x', { xmlns: NS.dataForms, type: 'result' });
    const field = (v: string, value: string): void => void form.append(el('field', { var: v }, el('value', undefined, value)));
    field('FORM_TYPE', MUC.roominfo);
    field('muc#roominfo_description', this.config.description);
    field('muc#roominfo_subject', this.subject);
    field('muc#roominfo_occupants', String(this.occupants.size));
    field('muc#maxhistoryfetch', String(this.config.historyLength));
    return query;
  }

  private async ownerIq(stanza: XmlElement, payload: XmlElement, from: Endpoint, reply: (r?: XmlElement) => void): Promise<void> {
    if (this.affiliationOf(from.jid.bare) !== 'owner') return this.fail(stanza, from, 'forbidden', 'only an owner may configure or destroy the room');
    if (stanza.attrs.type === 'get') {
      return reply(el('query', { xmlns: MUC.owner }, configForm(this.config, this.host.limits.occupantsPerRoom, this.host.limits.history)));
    }
    const destroy = payload.element('destroy');
    if (destroy) {
      const alternate = destroy.attrs.jid === undefined ? undefined : tryJid(destroy.attrs.jid);
      if (destroy.attrs.jid !== undefined && !alternate) return this.fail(stanza, from, 'jid-malformed', 'the alternate venue is not an address');
      const reason = destroy.element('reason')?.text();
      await this.destroy(alternate?.bare, reason, destroy.element('password')?.text());
      return reply();
    }
    const form = childNs(payload, NS.dataForms, 'x');
    if (!form) return this.fail(stanza, from, 'bad-request', 'a muc#owner set carries a data form or destroy');
    if (form.attrs.type === 'cancel') {
      // Cancelling the configuration of a new room destroys it (10.1.3).
      if (this.locked) await this.destroy(undefined, undefined, undefined);
      return reply();
    }
    if (form.attrs.type !== 'submit') return this.fail(stanza, from, 'bad-request', 'the form is of type submit or cancel');
    let next: RoomConfig;
    try {
      next = applyForm(this.config, form, this.host.limits.occupantsPerRoom, this.host.limits.history);
    } catch (err) {
      if (err instanceof ConfigError) return this.fail(stanza, from, err.condition, err.message);
      throw err;
    }
    const before = this.config;
    if (next.persistent !== this.persisted) {
      this.config = next;
      if (!(await this.host.setPersistent(this, next.persistent))) {
        this.config = before;
        return this.fail(stanza, from, 'not-allowed', `the service keeps at most ${this.host.limits.roomsPerService} rooms`);
      }
    }
    this.config = next;
    this.trimHistory();
    await this.host.persist(this, { kind: 'config' });
    this.locked = false;
    reply();
    this.host.log.debug({ event: 'muc.configured', room: this.jid, by: from.jid.bare }, 'room configured');
    // Occupants are told (104, and 172/173 when anonymity changed); those no longer allowed leave.
    const codes = [104];
    if (before.whois !== next.whois) codes.push(next.whois === 'anyone' ? 172 : 173);
    for (const to of this.occupants.values()) {
      const x = el('x', { xmlns: MUC.user });
      for (const code of codes) x.add('status', { code });
      this.send(to, el('message', { from: this.jid, type: 'groupchat', id: newId() }, x));
    }
    if (next.membersOnly && !before.membersOnly) {
      for (const o of [...this.occupants.values()]) if (this.affiliationOf(o.jid.bare) === 'none') this.remove(o, [322], {});
    }
    if (next.moderated !== before.moderated) {
      for (const o of this.occupants.values()) {
        const role = this.defaultRole(this.affiliationOf(o.jid.bare));
        if ((role === 'visitor' && o.role === 'participant') || (role === 'participant' && o.role === 'visitor')) {
          o.role = role;
          this.broadcastPresence(o);
        }
      }
    }
  }

  /** The owner destroys the room (10.9): everyone leaves, told where to go and why; the store forgets it. */
  async destroy(alternate: string | undefined, reason: string | undefined, password: string | undefined): Promise<void> {
    for (const to of this.occupants.values()) {
      const p = el('presence', { from: `${this.jid}/${to.nick}`, type: 'unavailable' });
      const x = p.add('x', { xmlns: MUC.user });
      x.add('item', { affiliation: 'none', role: 'none' });
      const d = x.add('destroy', { jid: alternate });
      if (reason) d.add('reason', undefined, reason);
      if (password) d.add('password', undefined, password);
      x.add('status', { code: 110 });
      this.send(to, p);
    }
    this.occupants.clear();
    this.destroyedAlready = true;
    if (this.persisted) await this.host.setPersistent(this, false);
    this.host.destroyed(this);
  }

  // -------------------------------------------------------------------------------------
  // muc#admin: roles and affiliations (8, 9)

  private async adminIq(stanza: XmlElement, payload: XmlElement, from: Endpoint, reply: (r?: XmlElement) => void): Promise<void> {
    const actorAffiliation = this.affiliationOf(from.jid.bare);
    const actor = this.occupantOf(from.jid);
    const items = payload.elements('item');
    if (items.length === 0 || items.length > 100) return this.fail(stanza, from, 'bad-request', 'a muc#admin request carries 1 to 100 items');
    if (stanza.attrs.type === 'get') {
      const query = el('query', { xmlns: MUC.admin });
      const asked = items[0]!;
      if (asked.attrs.affiliation !== undefined) {
        const wanted = asked.attrs.affiliation;
        if (!['owner', 'admin', 'member', 'outcast'].includes(wanted)) return this.fail(stanza, from, 'bad-request', `no list of affiliation ${wanted}`);
        if (RANK[actorAffiliation] < RANK.admin) return this.fail(stanza, from, 'forbidden', 'only admins and owners read affiliation lists');
        for (const [jid, affiliation] of [...this.affiliations].sort()) {
          if (affiliation !== wanted) continue;
          const inRoom = [...this.occupants.values()].find((o) => o.jid.bare === jid);
          query.add('item', { affiliation, jid, nick: inRoom?.nick });
        }
        return reply(query);
      }
      const role = asked.attrs.role;
      if (role !== 'moderator' && role !== 'participant' && role !== 'visitor') return this.fail(stanza, from, 'bad-request', 'ask for an affiliation or a role list');
      if (actor?.role !== 'moderator') return this.fail(stanza, from, 'forbidden', 'only moderators read role lists');
      for (const o of this.occupants.values()) if (o.role === role) query.add('item', { role, nick: o.nick, jid: o.jid.full, affiliation: this.affiliationOf(o.jid.bare) });
      return reply(query);
    }
    // set: every item is checked before any is applied.
    type Change = { kind: 'role'; target: Occupant; role: Role; reason?: string } | { kind: 'affiliation'; jid: string; affiliation: AnyAffiliation; reason?: string };
    const changes: Change[] = [];
    for (const item of items) {
      const reason = item.element('reason')?.text() || undefined;
      if (item.attrs.affiliation !== undefined) {
        const affiliation = item.attrs.affiliation as AnyAffiliation;
        if (!(affiliation in RANK)) return this.fail(stanza, from, 'bad-request', `unknown affiliation ${affiliation}`);
        let jid = tryJid(item.attrs.jid)?.bare;
        if (!jid && item.attrs.nick !== undefined) jid = this.occupants.get(item.attrs.nick)?.jid.bare;
        if (!jid) return this.fail(stanza, from, 'bad-request', 'an affiliation item names a jid (or the nick of an occupant)');
        const current = this.affiliationOf(jid);
        if (actorAffiliation === 'owner') {
          if (current === 'owner' && affiliation !== 'owner' && [...this.affiliations.values()].filter((a) => a === 'owner').length === 1) {
            return this.fail(stanza, from, 'conflict', 'the room would have no owner');
          }
        } else if (actorAffiliation === 'admin') {
          if (RANK[current] >= RANK.admin || RANK[affiliation] >= RANK.admin) return this.fail(stanza, from, 'not-allowed', 'an admin changes only members, outcasts and those with no affiliation');
        } else {
          return this.fail(stanza, from, 'forbidden', 'only admins and owners change affiliations');
        }
        changes.push({ kind: 'affiliation', jid, affiliation, reason });
      } else if (item.attrs.role !== undefined) {
        const role = item.attrs.role as Role;
        if (!['moderator', 'participant', 'visitor', 'none'].includes(role)) return this.fail(stanza, from, 'bad-request', `unknown role ${role}`);
        if (actor?.role !== 'moderator') return this.fail(stanza, from, 'forbidden', 'only moderators change roles');
        const target = item.attrs.nick === undefined ? undefined : this.occupants.get(item.attrs.nick);
        if (!target) return this.fail(stanza, from, 'item-not-found', `there is no ${item.attrs.nick ?? 'such occupant'} in the room`);
        const targetAffiliation = this.affiliationOf(target.jid.bare);
        if (RANK[targetAffiliation] >= RANK.admin && role !== 'moderator') return this.fail(stanza, from, 'not-allowed', 'an admin or owner keeps the moderator role');
        if ((role === 'moderator' || target.role === 'moderator') && RANK[actorAffiliation] < RANK.admin) return this.fail(stanza, from, 'not-allowed', 'only admins and owners grant or revoke the moderator role');
        changes.push({ kind: 'role', target, role, reason });
      } else {
        return this.fail(stanza, from, 'bad-request', 'an item has a role or an affiliation');
      }
    }
    const actorNick = actor?.nick;
    for (const change of changes) {
      if (change.kind === 'role') {
        if (!this.occupants.has(change.target.nick)) continue;
        if (change.role === 'none') {
          this.remove(change.target, [307], { actor: actorNick, reason: change.reason });
          this.host.log.debug({ event: 'muc.kicked', room: this.jid, nick: change.target.nick, by: from.jid.bare }, 'occupant kicked');
        } else if (change.role !== change.target.role) {
          change.target.role = change.role;
          this.broadcastPresence(change.target);
        }
        continue;
      }
      const stored: Affiliation | null = change.affiliation === 'none' ? null : change.affiliation;
      if (stored) this.affiliations.set(change.jid, stored);
      else this.affiliations.delete(change.jid);
      await this.host.persist(this, { kind: 'affiliation', user: change.jid, affiliation: stored });
      for (const o of [...this.occupants.values()]) {
        if (o.jid.bare !== change.jid) continue;
        if (change.affiliation === 'outcast') {
          this.remove(o, [301], { actor: actorNick, reason: change.reason });
          this.host.log.debug({ event: 'muc.banned', room: this.jid, jid: change.jid, by: from.jid.bare }, 'user banned from a room');
        } else if (change.affiliation === 'none' && this.config.membersOnly) {
          this.remove(o, [321], { actor: actorNick, reason: change.reason });
        } else {
          o.role = this.defaultRole(change.affiliation);
          this.broadcastPresence(o);
        }
      }
    }
    reply();
  }
}

/** The children of a client's presence that the room repeats (its MUC join element left out). */
function presenceChildren(stanza: XmlElement): XmlElement[] {
  return stanza.elements().filter((c) => c.attrs.xmlns !== MUC.muc && c.name !== 'priority').map(copyStanza);
}

function itemOf(presence: XmlElement): XmlElement | undefined {
  return childNs(presence, MUC.user, 'x')?.element('item');
}

function newId(): string {
  return randomBytes(9).toString('base64url');
}
