import { bareOf, jidOf, resourceOf, tryJid } from '../services/im/jid.js';
import type { ImClient } from '../services/im/router.js';
import { visible } from '../services/im/server-iq.js';
import type { ImService } from '../services/im/service.js';
import { CHAT_STATES, childNs, errorOf, NS } from '../services/im/stanzas.js';
import type { RosterItem } from '../store/im.js';
import type { AccountRecord } from '../store/store.js';
import { el, type XmlElement } from '../xml/element.js';
import { formatGmt } from '../xml/time.js';
import type { Session } from './session.js';

/** The detailed XIMSS presence values, and the XMPP `show` each stands for (spec "presenceSet"). */
export const XIMSS_PRESENCE: Readonly<Record<string, string | null>> = {
  online: null,
  'on-phone': 'dnd',
  busy: 'dnd',
  'in-meeting': 'away',
  'be-back': 'away',
  'out-lunch': 'away',
  away: 'xa',
  offline: null,
};

/** The detailed value a XIMSS client is shown for an XMPP `show`. */
const SHOW_PRESENCE: Readonly<Record<string, string>> = { chat: 'online', dnd: 'busy', away: 'be-back', xa: 'away' };

/** XEP-0045's element on what a group chat room sends its occupants. */
const MUC_USER = 'http://jabber.org/protocol/muc#user';

/** Remembered sendIM ids, for errorIM's `sendid` (the oldest forgotten first). */
const SENT_IDS = 256;

/**
 * A XIMSS session bound with signalBind, as an IM client: what the IM service delivers becomes
 * readIM, errorIM, presence, rosterItem and iqRead data messages. Contacts' presence is shown
 * aggregated per contact, as the spec wants ("the Server aggregates the presence information
 * reported by all connected clients"): the presence of the contact's most available client.
 * A conversation is locked to the peer's client that last wrote (RFC 6121 5.1) until it goes,
 * or closeIM.
 */
export class XimssImClient implements ImClient {
  readonly kind = 'ximss';
  available = false;
  interested = false;
  priority = 0;
  presence: XmlElement | undefined;
  readonly carbons = false;
  readonly directed = new Set<string>();
  /** readIM in the extended format (signalBind readIM="1"). */
  extended = false;
  /** Registered with the IM service (signalBind); an unbound session only sends. */
  bound = false;
  /** The peer's client a conversation is locked to, by bare JID. */
  private readonly locks = new Map<string, string>();
  /** The aggregated presence last shown for each contact (its serialized form). */
  private readonly shownPresence = new Map<string, string>();
  /** XIMSS request ids of the messages sent, by stanza id. */
  private readonly sentIds = new Map<string, string>();
  /** Data messages leave in the order the stanzas came, even when one waits for a look-up. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly im: ImService,
    readonly session: Session,
    readonly resource: string,
    private readonly onEnd: (reason: string) => void,
  ) {}

  get account(): AccountRecord {
    return this.session.account;
  }

  set account(account: AccountRecord) {
    this.session.account = account;
  }

  get jid(): string {
    return jidOf(this.account.name, this.account.domain, this.resource).full;
  }

  get bareJid(): string {
    return jidOf(this.account.name, this.account.domain).bare;
  }

  /** Remembers the XIMSS request that sent a stanza (for errorIM's sendid). */
  sent(stanzaId: string, requestId: string): void {
    this.sentIds.set(stanzaId, requestId);
    if (this.sentIds.size > SENT_IDS) this.sentIds.delete(this.sentIds.keys().next().value!);
  }

  /** The address a message to `peer` goes to: the client given, else the locked one while it is there. */
  addressFor(peer: string, clientID: string | undefined): string {
    if (clientID) return `${peer}/${clientID}`;
    const locked = this.locks.get(peer);
    return locked ? `${peer}/${locked}` : peer;
  }

  /** closeIM: the conversation is no longer locked to a client of the peer. */
  close(peer: string): boolean {
    return this.locks.delete(peer);
  }

  deliver(stanza: XmlElement): void {
    this.queue = this.queue.then(() => this.show(stanza)).catch((err: unknown) => this.im.log.error({ event: 'im.ximss_delivery_failed', error: String(err) }, 'a stanza could not be shown to a XIMSS session'));
  }

  private async show(stanza: XmlElement): Promise<void> {
    const from = stanza.attrs.from ?? this.account.domain;
    const peer = bareOf(from);
    const clientID = resourceOf(from) || undefined;
    switch (stanza.name) {
      case 'message':
        return this.showMessage(stanza, peer, clientID);
      case 'presence':
        return this.showPresence(stanza, peer, clientID);
      case 'iq':
        this.session.sendAsync(el('iqRead', { peer, clientID, type: stanza.attrs.type, iqid: stanza.attrs.id }, ...stanza.elements()));
        return;
    }
  }

  private async showMessage(stanza: XmlElement, peer: string, clientID: string | undefined): Promise<void> {
    const type = stanza.attrs.type;
    if (type === 'error') {
      const { text, code } = errorOf(stanza);
      const sendid = stanza.attrs.id === undefined ? undefined : this.sentIds.get(stanza.attrs.id);
      this.session.sendAsync(el('errorIM', { peer, errorText: text, signalCode: code, sendid }));
      return;
    }
    // A private message from a group chat occupant (it carries the MUC user element) locks nothing: the room is the peer.
    if (clientID && (type === 'chat' || type === undefined) && !childNs(stanza, MUC_USER, 'x')) this.locks.set(peer, clientID);
    const peerName = (await this.im.accountOf(peer).catch(() => undefined))?.realName ?? undefined;
    const body = stanza.element('body');
    const subject = stanza.element('subject');
    // A message kept while the user was offline says when the server got it (gmtTime, in the newer spec text).
    const delayed = childNs(stanza, NS.delay, 'delay')?.attrs.stamp;
    const received = delayed === undefined ? undefined : Date.parse(delayed);
    const attrs = { peer, peerName: peerName || undefined, clientID, type, iqid: stanza.attrs.id, gmtTime: received !== undefined && Number.isFinite(received) ? formatGmt(new Date(received)) : undefined };
    if (!body && !subject) {
      const state = stanza.elements().find((c) => c.attrs.xmlns === NS.chatStates && (CHAT_STATES as readonly string[]).includes(c.name));
      // XIMSS shows composing, paused and gone; `active` and `inactive` have no form there.
      if (state && (state.name === 'composing' || state.name === 'paused' || state.name === 'gone')) this.session.sendAsync(el('readIM', attrs, el(state.name)));
      return;
    }
    if (this.extended) {
      // The body first (clients read the first child), then the message's other elements.
      // A group chat's history keeps its delay (when each message was said); other messages come as new.
      const others = stanza.elements().filter((c) => c !== body && (c.name !== 'delay' || type === 'groupchat') && c.name !== 'stanza-id' && c.attrs.xmlns !== NS.chatStates);
      this.session.sendAsync(el('readIM', attrs, body ? el('body', undefined, body.text()) : undefined, ...others));
    } else {
      this.session.sendAsync(el('readIM', { ...attrs, subject: subject?.text() }, body?.text() ?? ''));
    }
  }

  private async showPresence(stanza: XmlElement, peer: string, clientID: string | undefined): Promise<void> {
    const type = stanza.attrs.type;
    if (type === 'subscribe') {
      if (!this.interested) return;
      this.session.sendAsync(el('presence', { peer, type: 'subscribe' }, stanza.element('status') ? el('status', undefined, stanza.element('status')!.text()) : undefined));
      return;
    }
    if (type === 'error' && stanza.attrs.to === this.jid) {
      // A room refused to let the session in (a nickname taken, a members-only room…).
      const { text, code } = errorOf(stanza);
      this.session.sendAsync(el('presence', { peer, clientID, type: 'error', errorText: text, signalCode: code }));
      return;
    }
    if (type !== undefined && type !== 'unavailable') return;
    if (type === 'unavailable' && clientID && this.locks.get(peer) === clientID) this.locks.delete(peer);
    // Presence sent to this session itself (a group chat room's occupants) is shown per client.
    if (stanza.attrs.to === this.jid) {
      const message = presenceMessage(peer, clientID, type === 'unavailable' ? undefined : stanza);
      // A room's presence tells the occupant's role and affiliation, and why it left (XEP-0045 muc#user).
      const muc = childNs(stanza, MUC_USER, 'x');
      if (muc) message.append(muc);
      this.session.sendAsync(message);
      return;
    }
    if (!this.interested) return;
    const shown = await this.aggregate(peer, stanza, clientID);
    const message = presenceMessage(peer, undefined, shown);
    const text = message.toString();
    if (this.shownPresence.get(peer) === text) return;
    this.shownPresence.set(peer, text);
    if (this.shownPresence.size > 10_000) this.shownPresence.delete(this.shownPresence.keys().next().value!);
    this.session.sendAsync(message);
  }

  /**
   * The contact's presence over all its clients: the available one of the highest priority
   * (the most recent among equals), from the directory; the stanza that came when the
   * contact is not local (or undefined: unavailable).
   */
  private async aggregate(peer: string, stanza: XmlElement, clientID: string | undefined): Promise<XmlElement | undefined> {
    const account = await this.im.accountOf(peer).catch(() => undefined);
    if (!account) return stanza.attrs.type === 'unavailable' ? undefined : stanza;
    let best: { priority: number; since: number; presence: XmlElement } | undefined;
    for (const r of this.im.router.resources(account.id)) {
      if (!r.record.available || !r.presence) continue;
      if (!best || r.record.priority > best.priority || (r.record.priority === best.priority && r.record.since > best.since)) best = { priority: r.record.priority, since: r.record.since, presence: r.presence };
    }
    // The stanza may be ahead of the directory (another node's event not here yet).
    if (!best && stanza.attrs.type !== 'unavailable' && clientID) return stanza;
    return best?.presence;
  }

  rosterPush(jid: string, item: RosterItem | undefined, _version: number): void {
    if (!this.interested || (item && !visible(item))) return;
    this.queue = this.queue.then(() => this.session.sendAsync(item ? rosterItemMessage(item) : el('rosterItem', { peer: jid, subscription: 'remove' })));
  }

  blockingPush(): void {
    // XIMSS has no block-list messages.
  }

  end(reason: string): void {
    this.onEnd(reason);
  }
}

/** A XIMSS `presence` data message: a contact's presence (undefined: unavailable). */
export function presenceMessage(peer: string, clientID: string | undefined, stanza: XmlElement | undefined): XmlElement {
  if (!stanza) return el('presence', { peer, clientID, type: 'unavailable' }, el('presence', undefined, 'offline'));
  const show = stanza.element('show')?.text().trim();
  const detailed = childNs(stanza, NS.ximssPresence, 'presence')?.text().trim();
  const message = el('presence', { peer, clientID });
  message.add('presence', undefined, detailed && detailed in XIMSS_PRESENCE ? detailed : show ? (SHOW_PRESENCE[show] ?? 'online') : 'online');
  if (show) message.add('show', undefined, show);
  const status = stanza.element('status');
  if (status) message.add('status', undefined, status.text());
  const avatar = childNs(stanza, NS.vcardUpdate, 'x');
  if (avatar) message.append(avatar);
  return message;
}

/** A roster item as XIMSS shows it (spec "rosterItem"). */
export function rosterItemMessage(item: RosterItem): XmlElement {
  const message = el('rosterItem', { peer: item.jid, name: item.name || undefined, subscription: item.subscription, ask: item.ask ? 'subscribe' : undefined });
  for (const group of item.groups) message.add('group', undefined, group);
  return message;
}

/** The bare JID a XIMSS `peer` (an e-mail address) names; undefined when it is not one. */
export function peerJid(peer: string | undefined): string | undefined {
  const jid = tryJid(peer?.trim());
  return jid && !jid.resource ? jid.bare : undefined;
}
