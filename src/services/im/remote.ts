import type { AccountRecord } from '../../store/store.js';
import { el, type XmlElement } from '../../xml/element.js';
import { jidOf, parseJid, type Jid } from './jid.js';
import type { ImService } from './service.js';
import { copyStanza, errorReply, iqResult, NS } from './stanzas.js';
import * as subscriptions from './subscriptions.js';

/**
 * How stanzas reach other servers (src/transports/xmpp/s2s.ts): by the domain of their `to`,
 * from the domain of their `from` (one of ours). Failures come back through
 * ImRemote.bounced.
 */
export interface Federation {
  send(stanza: XmlElement): void;
}

/**
 * What stanzas from users of other servers do here (RFC 6121 with remote contacts), once
 * their server proved its domain (s2s-in.ts): messages are routed like local ones (archive,
 * offline, carbons); subscription stanzas change local rosters through the same inbound rules
 * as local contacts' (ImService.subscriptionToUser); presence reaches the user's interested
 * clients when the user is subscribed to the contact, and probes are answered from the
 * directory when the prober may see the user; iq requests to an account or the domain are
 * answered by the server, those to a full JID go to the resource. Also: what happens to a
 * stanza federation could not send (bounced).
 */
export class ImRemote {
  constructor(private readonly im: ImService) {}

  /** A stanza from a remote server (its `from` on a proven domain, its `to` on one of ours). */
  async fromServer(stanza: XmlElement): Promise<void> {
    switch (stanza.name) {
      case 'message':
        return this.im.routeMessage(stanza, undefined);
      case 'presence':
        return this.presence(stanza);
      case 'iq':
        return this.iq(stanza);
    }
  }

  /** A stanza that could not reach the remote server: the sender is told, as RFC 6120 8.3 wants (never for an error). */
  bounced(stanza: XmlElement, condition: string, text: string): void {
    const type = stanza.attrs.type;
    if (type === 'error' || type === 'result' || stanza.attrs.from === undefined) return;
    const isSubscription = type === 'subscribe' || type === 'subscribed' || type === 'unsubscribe' || type === 'unsubscribed';
    if (stanza.name === 'presence' && !isSubscription) return;
    this.im.deliverTo(parseJid(stanza.attrs.from), errorReply(stanza, condition, text));
  }

  private async presence(stanza: XmlElement): Promise<void> {
    const from = parseJid(stanza.attrs.from!);
    const to = parseJid(stanza.attrs.to!);
    const type = stanza.attrs.type;
    const account = to.local ? await this.im.accountOf(to.bare) : undefined;
    if (!account) {
      // RFC 6121 4.3.2: a probe of an unknown account is answered `unsubscribed`; the rest is dropped.
      if (type === 'probe') this.send(el('presence', { from: to.bare, to: from.bare, type: 'unsubscribed' }));
      return;
    }
    if (type === 'subscribe' || type === 'subscribed' || type === 'unsubscribe' || type === 'unsubscribed') {
      // Subscription stanzas are between bare JIDs (RFC 6121 3.1.3).
      const inbound = el('presence', { from: from.bare, to: to.bare, type, id: stanza.attrs.id }, ...stanza.elements('status'));
      return this.im.subscriptionToUser(account, type, jidOf(from.local, from.domain), stanza.element('status')?.text() ?? '', inbound);
    }
    if (await this.im.blocks(account.id, from)) return;
    if (type === 'probe') return this.probe(account, from, to);
    if (type !== undefined && type !== 'unavailable' && type !== 'error') return;
    // Presence directed at one resource (RFC 6121 4.6) goes there; broadcast presence only when the user is subscribed.
    if (to.resource) {
      this.im.router.sendToResource(account.id, to.resource, stanza);
      return;
    }
    if (type !== 'error') {
      const item = await this.im.store.roster.get(account.id, from.bare);
      if (!item || !subscriptions.hasTo(item.subscription)) return;
    }
    this.im.router.sendToInterested(account.id, stanza);
  }

  /** RFC 6121 4.3.2: the user's current presence (each available resource, or unavailable) when the prober may see it, else `unsubscribed`. */
  private async probe(account: AccountRecord, from: Jid, to: Jid): Promise<void> {
    const user = jidOf(account.name, account.domain);
    const item = await this.im.store.roster.get(account.id, from.bare);
    if (!item || !subscriptions.hasFrom(item.subscription)) {
      this.send(el('presence', { from: user.bare, to: from.bare, type: 'unsubscribed' }));
      return;
    }
    let sent = false;
    for (const r of this.im.router.resources(account.id)) {
      if (!r.record.available || !r.presence) continue;
      const copy = copyStanza(r.presence);
      copy.attrs.from = jidOf(user.local, user.domain, r.record.resource).full;
      copy.attrs.to = from.full;
      this.send(copy);
      sent = true;
    }
    if (!sent) this.send(el('presence', { from: user.bare, to: from.full, type: 'unavailable' }));
  }

  private async iq(stanza: XmlElement): Promise<void> {
    const from = parseJid(stanza.attrs.from!);
    const to = parseJid(stanza.attrs.to!);
    const type = stanza.attrs.type;
    const isRequest = type === 'get' || type === 'set';
    const fail = (condition: string, text?: string): void => {
      if (isRequest) this.send(errorReply(stanza, condition, text));
    };
    if (!isRequest && type !== 'result' && type !== 'error') return fail('bad-request', 'an iq needs a type');
    if (isRequest && (stanza.attrs.id === undefined || stanza.elements().length !== 1)) return fail('bad-request', 'an iq request has an id and exactly one child');
    const account = to.local ? await this.im.accountOf(to.bare) : undefined;
    if (to.local && !account) return fail('service-unavailable', `${to.bare} does not exist`);
    if (account && (await this.im.blocks(account.id, from))) return fail('service-unavailable');
    if (to.resource && account) {
      if (!this.im.router.sendToResource(account.id, to.resource, stanza)) fail('service-unavailable', `${to.full} is not connected`);
      return;
    }
    if (!isRequest) return;
    // Requests to the domain or an account's bare JID: what the server answers for others (never rosters, archives, block lists).
    const payload = stanza.elements()[0]!;
    const ns = payload.attrs.xmlns ?? '';
    if (ns === NS.ping) return this.send(iqResult(stanza));
    if (ns === NS.discoInfo && type === 'get') {
      if (payload.attrs.node) return fail('item-not-found', 'no such node');
      return this.send(iqResult(stanza, this.im.serverIq.discoInfo(account ? 'account' : 'server', payload)));
    }
    if (ns === NS.discoItems && type === 'get') return this.send(iqResult(stanza, el('query', { xmlns: NS.discoItems })));
    if (ns === NS.vcard && type === 'get' && account) return this.send(iqResult(stanza, await this.im.serverIq.vcardOf(account)));
    fail('service-unavailable', `${ns || payload.name} is not answered here`);
  }

  private send(stanza: XmlElement): void {
    this.im.deliverTo(parseJid(stanza.attrs.to!), stanza);
  }
}
