import { fullName } from '../../services/accounts.js';
import { jidOf } from '../../services/im/jid.js';
import type { ImClient } from '../../services/im/router.js';
import { rosterItemElement, visible } from '../../services/im/server-iq.js';
import { newStanzaId, type ImService } from '../../services/im/service.js';
import { NS } from '../../services/im/stanzas.js';
import type { RosterItem } from '../../store/im.js';
import type { AccountIdentity } from '../../store/store.js';
import { el, type XmlElement } from '../../xml/element.js';
import { BindError, type StanzaOut, type StanzaSession, type StanzaSessions } from './stanza-session.js';

/**
 * An XMPP client's bound resource as the IM service sees it: stanzas from the client go to
 * the service (which stamps, routes and answers them); what the service delivers goes out on
 * the stream as it is.
 */
class XmppClient implements ImClient, StanzaSession {
  readonly kind = 'xmpp';
  available = false;
  interested = false;
  priority = 0;
  presence: XmlElement | undefined;
  carbons = false;
  /** Made when the client first sends directed presence (most never do). */
  private directed_: Set<string> | undefined;
  private ended_ = false;

  constructor(
    private readonly im: ImService,
    public account: AccountIdentity,
    readonly resource: string,
    private readonly out: StanzaOut,
  ) {}

  get directed(): Set<string> {
    return (this.directed_ ??= new Set());
  }

  get jid(): string {
    return jidOf(this.account.name, this.account.domain, this.resource).full;
  }

  async receive(stanza: XmlElement): Promise<void> {
    if (this.ended_) return;
    await this.im.fromClient(this, stanza);
  }

  deliver(stanza: XmlElement): void {
    if (!this.ended_) this.out.send(stanza);
  }

  rosterPush(jid: string, item: RosterItem | undefined, version: number): void {
    if (item && !visible(item)) return;
    const shown = item ? rosterItemElement(item) : el('item', { jid, subscription: 'remove' });
    this.deliver(el('iq', { type: 'set', id: newStanzaId(), to: this.jid }, el('query', { xmlns: NS.roster, ver: String(version) }, shown)));
  }

  blockingPush(blocked: string[], unblocked: string[] | 'all'): void {
    const push = (name: 'block' | 'unblock', jids: string[]): void => {
      const payload = el(name, { xmlns: NS.blocking });
      for (const jid of jids) payload.add('item', { jid });
      this.deliver(el('iq', { type: 'set', id: newStanzaId(), to: this.jid }, payload));
    };
    if (blocked.length > 0) push('block', blocked);
    if (unblocked === 'all') push('unblock', []);
    else if (unblocked.length > 0) push('unblock', unblocked);
  }

  end(reason: string): void {
    this.out.close(reason === 'server shutdown' ? 'system-shutdown' : 'conflict', reason);
  }

  ended(unacknowledged?: XmlElement[]): void {
    if (this.ended_) return;
    this.ended_ = true;
    void (async () => {
      await this.im.detach(this);
      // Messages the client never acknowledged (XEP-0198) are routed again: to another resource, or kept offline.
      for (const stanza of unacknowledged ?? []) {
        if (stanza.name !== 'message' || stanza.attrs.type === 'error' || stanza.attrs.from === undefined) continue;
        stanza.attrs.to = jidOf(this.account.name, this.account.domain).bare;
        await this.im.routeMessage(stanza, undefined, { rerouted: true }).catch(() => {});
      }
    })().catch((err: unknown) => this.im.log.error({ event: 'im.detach_failed', jid: this.jid, error: String(err) }, 'detaching an XMPP client failed'));
  }
}

/** Binds XMPP resources to the IM service (the stream's StanzaSessions). */
export class XmppSessions implements StanzaSessions {
  constructor(private readonly im: ImService) {}

  async bind(account: AccountIdentity, requested: string | undefined, out: StanzaOut): Promise<StanzaSession> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const resource = this.im.router.freeResource(account.id, attempt === 0 ? requested : undefined);
      const client = new XmppClient(this.im, account, resource, out);
      if (await this.im.attach(client)) return client;
      if (this.im.router.resources(account.id).length >= this.im.limits.resourcesPerAccount) {
        throw new BindError('resource-constraint', `${fullName(account)} has ${this.im.limits.resourcesPerAccount} clients connected already`);
      }
    }
    throw new BindError('conflict', 'no free resource name');
  }

  streamFeatures(): XmlElement[] {
    return [el('ver', { xmlns: NS.rosterVersioning })];
  }
}
