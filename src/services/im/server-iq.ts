import { NotFoundError, type AccountIdentity } from '../../store/store.js';
import type { RosterItem } from '../../store/im.js';
import { SERVER_VERSION } from '../../version.js';
import { el, type XmlElement } from '../../xml/element.js';
import type { Settings } from '../../store/store.js';
import { jidOf, parseJid, tryJid, type Jid } from './jid.js';
import type { ImClient } from './router.js';
import { ImError, type ImService } from './service.js';
import { childNs, delay, errorReply, forwarded, iqResult, NS, parseStanza } from './stanzas.js';

/** Features the server announces (disco#info of the domain). */
const SERVER_FEATURES = [NS.discoInfo, NS.discoItems, NS.ping, NS.version, NS.time, NS.vcard, NS.roster, NS.blocking, NS.carbons, NS.mam, NS.offline, 'urn:xmpp:sid:0', 'jabber:iq:roster'];
/** Features of an account's bare JID. */
const ACCOUNT_FEATURES = [NS.discoInfo, NS.vcard, NS.mam];

/** The largest page of a MAM query, and the default one. */
const MAM_MAX = 250;
const MAM_DEFAULT = 50;

/**
 * The iq requests the server answers itself (RFC 6120 10.3.3, RFC 6121 8.5): those to the
 * domain, to the sender's own account (rosters, block lists, carbons, the archive, its vCard)
 * and, on behalf of another local account, to its bare JID (its vCard from Public Info,
 * disco). Everything else is service-unavailable, as the RFC wants.
 */
export class ServerIq {
  constructor(private readonly im: ImService) {}

  async handle(client: ImClient, iq: XmlElement, to: Jid | undefined): Promise<void> {
    const payload = iq.elements()[0]!;
    const ns = payload.attrs.xmlns ?? '';
    const own = jidOf(client.account.name, client.account.domain).bare;
    const target: 'server' | 'self' | 'account' = !to ? 'self' : !to.local ? 'server' : to.bare === own ? 'self' : 'account';
    // Who an iq without `to` is for depends on what it asks (RFC 6120 10.3.3: the account).
    const reply = (result?: XmlElement): void => client.deliver(iqResult(iq, result));
    const fail = (condition: string, text?: string): void => client.deliver(errorReply(iq, condition, text));
    try {
      switch (ns) {
        case NS.roster:
          if (target === 'account') return fail('forbidden', "another account's roster");
          return await this.roster(client, iq, payload, reply);
        case NS.blocking:
          if (target === 'account') return fail('forbidden', "another account's block list");
          return await this.blocking(client, iq, payload, reply, fail);
        case NS.carbons:
          if (target === 'account' || iq.attrs.type !== 'set') return fail('bad-request', 'carbons are enabled with an iq set to the server');
          if (payload.name !== 'enable' && payload.name !== 'disable') return fail('bad-request', 'enable or disable');
          client.carbons = payload.name === 'enable';
          return reply();
        case NS.mam:
          if (target === 'account') return fail('forbidden', "another account's archive");
          return await this.mam(client, iq, payload, reply, fail);
        case NS.vcard:
          return await this.vcard(client, iq, target, to, reply, fail);
        case NS.ping:
          return reply();
        case NS.session:
          return reply();
        case NS.discoInfo:
          if (payload.attrs.node) return fail('item-not-found', 'no such node');
          return reply(this.discoInfo(target === 'server' ? 'server' : 'account', payload));
        case NS.discoItems: {
          const items = el('query', { xmlns: NS.discoItems });
          if (target === 'server') {
            for (const component of this.im.components) {
              const item = component.item?.(to!.domain);
              if (item) items.add('item', item);
            }
          }
          return reply(items);
        }
        case NS.version:
          if (target !== 'server') return fail('service-unavailable');
          return reply(el('query', { xmlns: NS.version }, el('name', undefined, 'ximssd'), el('version', undefined, SERVER_VERSION)));
        case NS.time: {
          if (target !== 'server') return fail('service-unavailable');
          const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
          return reply(el('time', { xmlns: NS.time }, el('tzo', undefined, '+00:00'), el('utc', undefined, now)));
        }
        default:
          return fail('service-unavailable', `${ns || payload.name} is not answered here`);
      }
    } catch (err) {
      if (err instanceof ImError) return fail(err.condition, err.message);
      this.im.log.error({ event: 'im.iq_failed', namespace: ns, error: String(err) }, 'an iq request failed');
      return fail('internal-server-error');
    }
  }

  /** disco#info of the domain or of an account (remote.ts answers other servers' users with it too). */
  discoInfo(of: 'server' | 'account', payload: XmlElement): XmlElement {
    const query = el('query', { xmlns: NS.discoInfo, node: payload.attrs.node });
    if (of === 'server') query.add('identity', { category: 'server', type: 'im', name: 'ximssd' });
    else query.add('identity', { category: 'account', type: 'registered' });
    for (const feature of of === 'server' ? SERVER_FEATURES : ACCOUNT_FEATURES) query.add('feature', { var: feature });
    return query;
  }

  // ---------------------------------------------------------------------------------------
  // Rosters (RFC 6121 2), with versioning (2.6: a client with the current version gets nothing)

  private async roster(client: ImClient, iq: XmlElement, query: XmlElement, reply: (r?: XmlElement) => void): Promise<void> {
    const account = client.account;
    if (iq.attrs.type === 'get') {
      const { items, version } = await this.im.store.roster.list(account.id);
      // A client reading its roster starts getting presence (RFC 6121 2.1.3 "interested resource").
      client.interested = true;
      if (query.attrs.ver !== undefined && query.attrs.ver === String(version)) return reply();
      const result = el('query', { xmlns: NS.roster, ver: String(version) });
      for (const item of items) if (visible(item)) result.append(rosterItemElement(item));
      return reply(result);
    }
    const items = query.elements('item');
    if (items.length !== 1) throw new ImError('bad-request', 'a roster set has exactly one item');
    const item = items[0]!;
    const contact = tryJid(item.attrs.jid);
    if (!contact || contact.resource) throw new ImError('bad-request', 'the item needs a bare jid');
    if (contact.bare === jidOf(account.name, account.domain).bare) throw new ImError('not-allowed', 'the account itself is not a contact');
    if (item.attrs.subscription === 'remove') {
      await this.im.rosterRemove(account, contact);
      return reply();
    }
    const groups = item.elements('group').map((g) => g.text());
    if (groups.some((g) => g === '' || g.length > 1024)) throw new ImError('not-acceptable', 'a group name is empty or too long');
    if (new Set(groups).size !== groups.length) throw new ImError('bad-request', 'a group appears twice');
    const name = item.attrs.name ?? '';
    if (name.length > 1024) throw new ImError('not-acceptable', 'the name is too long');
    await this.im.rosterUpdate(account, contact, name, groups);
    reply();
  }

  // ---------------------------------------------------------------------------------------
  // Block lists (XEP-0191)

  private async blocking(client: ImClient, iq: XmlElement, payload: XmlElement, reply: (r?: XmlElement) => void, fail: (c: string, t?: string) => void): Promise<void> {
    const account = client.account;
    if (iq.attrs.type === 'get') {
      if (payload.name !== 'blocklist') return fail('bad-request', 'blocklist');
      const list = el('blocklist', { xmlns: NS.blocking });
      for (const jid of await this.im.store.blocking.list(account.id)) list.add('item', { jid });
      return reply(list);
    }
    const jids: string[] = [];
    for (const item of payload.elements('item')) {
      const jid = tryJid(item.attrs.jid);
      if (!jid) return fail('jid-malformed', 'an item has a malformed jid');
      jids.push(jid.full);
    }
    if (payload.name === 'block') {
      if (jids.length === 0) return fail('bad-request', 'block needs items');
      await this.im.block(account, jids);
    } else if (payload.name === 'unblock') {
      await this.im.unblock(account, jids.length > 0 ? jids : undefined);
    } else {
      return fail('bad-request', 'block or unblock');
    }
    reply();
  }

  // ---------------------------------------------------------------------------------------
  // The archive (XEP-0313, urn:xmpp:mam:2) with result set management (XEP-0059)

  private async mam(client: ImClient, iq: XmlElement, query: XmlElement, reply: (r?: XmlElement) => void, fail: (c: string, t?: string) => void): Promise<void> {
    if (iq.attrs.type === 'get') {
      if (query.name !== 'query') return fail('bad-request');
      const form = el('x', { xmlns: NS.dataForms, type: 'form' }, el('field', { type: 'hidden', var: 'FORM_TYPE' }, el('value', undefined, NS.mam)));
      for (const name of ['with', 'start', 'end']) form.add('field', { type: name === 'with' ? 'jid-single' : 'text-single', var: name });
      return reply(el('query', { xmlns: NS.mam }, form));
    }
    if (query.name !== 'query') return fail('bad-request', 'query');
    const fields = new Map<string, string>();
    for (const field of childNs(query, NS.dataForms, 'x')?.elements('field') ?? []) {
      if (field.attrs.var) fields.set(field.attrs.var, field.element('value')?.text() ?? '');
    }
    const formType = fields.get('FORM_TYPE');
    if (formType !== undefined && formType !== NS.mam) return fail('bad-request', `unknown form ${formType}`);
    const withJid = fields.has('with') ? tryJid(fields.get('with')) : undefined;
    if (fields.has('with') && !withJid) return fail('bad-request', 'with is not an address');
    const time = (name: string): number | undefined | null => {
      const value = fields.get(name);
      if (value === undefined) return undefined;
      const t = Date.parse(value);
      return Number.isFinite(t) ? t : null;
    };
    const start = time('start');
    const end = time('end');
    if (start === null || end === null) return fail('bad-request', 'start and end are XEP-0082 date-times');
    for (const name of fields.keys()) if (!['FORM_TYPE', 'with', 'start', 'end'].includes(name)) return fail('feature-not-implemented', `the field ${name} is not supported`);
    const set = childNs(query, NS.rsm, 'set');
    const maxText = set?.element('max')?.text();
    const max = maxText === undefined ? MAM_DEFAULT : Number(maxText);
    if (!Number.isInteger(max) || max < 0) return fail('bad-request', 'max is a count');
    const after = set?.element('after')?.text();
    const before = set?.element('before');
    await this.im.archive.flush();
    let page;
    try {
      page = await this.im.store.archive.query(client.account.id, {
        with: withJid?.bare,
        start,
        end,
        after,
        before: before ? before.text() : undefined,
        limit: Math.min(max, MAM_MAX),
      });
    } catch (err) {
      if (err instanceof NotFoundError) return fail('item-not-found', 'no such message in the archive');
      throw err;
    }
    const own = jidOf(client.account.name, client.account.domain).bare;
    for (const message of page.messages) {
      const original = parseStanza(message.xml);
      if (!original) continue;
      const wrapped = forwarded(original, delay(message.stamp, own));
      client.deliver(el('message', { from: own, to: client.jid }, el('result', { xmlns: NS.mam, queryid: query.attrs.queryid, id: message.id }, wrapped)));
    }
    const rsm = el('set', { xmlns: NS.rsm });
    if (page.messages.length > 0) {
      rsm.add('first', { index: undefined }, page.messages[0]!.id);
      rsm.add('last', undefined, page.messages[page.messages.length - 1]!.id);
    }
    rsm.add('count', undefined, String(page.count));
    reply(el('fin', { xmlns: NS.mam, complete: page.complete ? 'true' : undefined }, rsm));
  }

  // ---------------------------------------------------------------------------------------
  // vcard-temp (XEP-0054) from the account's Public Info

  private async vcard(client: ImClient, iq: XmlElement, target: 'server' | 'self' | 'account', to: Jid | undefined, reply: (r?: XmlElement) => void, fail: (c: string, t?: string) => void): Promise<void> {
    if (iq.attrs.type === 'set') {
      return fail('feature-not-implemented', 'a vCard is not stored over XMPP yet: Public Info is edited with XIMSS prefsStore type="publicInfo"');
    }
    if (target === 'server') return fail('service-unavailable');
    const account = target === 'self' ? client.account : await this.im.accountOf(to!.bare);
    if (!account || (target === 'account' && (await this.im.blocks(account.id, parseJid(client.jid))))) return fail('service-unavailable');
    reply(await this.vcardOf(account));
  }

  /** An account's vCard from its Public Info (remote.ts answers other servers' users with it too). */
  async vcardOf(account: AccountIdentity): Promise<XmlElement> {
    const fresh = await this.im.accounts.getById(account.id);
    if (!fresh) return el('vCard', { xmlns: NS.vcard });
    const info: Settings = fresh.publicInfo;
    const text = (key: string): string | undefined => {
      for (const [name, value] of Object.entries(info)) if (name.toLowerCase() === key.toLowerCase() && typeof value === 'string' && value !== '') return value;
      return undefined;
    };
    const card = el('vCard', { xmlns: NS.vcard });
    const realName = fresh.realName || text('cn');
    if (realName) card.add('FN', undefined, realName);
    const given = text('givenName');
    const family = text('sn');
    if (given || family) card.append(el('N', undefined, family ? el('FAMILY', undefined, family) : undefined, given ? el('GIVEN', undefined, given) : undefined));
    const org = text('o');
    const unit = text('ou');
    if (org || unit) card.append(el('ORG', undefined, el('ORGNAME', undefined, org ?? ''), unit ? el('ORGUNIT', undefined, unit) : undefined));
    const title = text('title');
    if (title) card.add('TITLE', undefined, title);
    const phone = text('telephoneNumber');
    if (phone) card.append(el('TEL', undefined, el('WORK'), el('VOICE'), el('NUMBER', undefined, phone)));
    const mobile = text('mobile');
    if (mobile) card.append(el('TEL', undefined, el('CELL'), el('NUMBER', undefined, mobile)));
    card.append(el('EMAIL', undefined, el('INTERNET'), el('PREF'), el('USERID', undefined, `${fresh.name}@${fresh.domain}`)));
    const url = text('labeledURI') ?? text('url');
    if (url) card.add('URL', undefined, url);
    const note = text('description');
    if (note) card.add('DESC', undefined, note);
    return card;
  }
}

/** Items a client sees: not the mere placeholders of a subscription request that waits (RFC 6121 3.1.3). */
export function visible(item: RosterItem): boolean {
  return !(item.subscription === 'none' && !item.ask && !item.approved && item.pendingIn !== null && item.name === '' && item.groups.length === 0);
}

/** An item as jabber:iq:roster shows it (RFC 6121 2.1.2). */
export function rosterItemElement(item: RosterItem): XmlElement {
  const element = el('item', { jid: item.jid, name: item.name || undefined, subscription: item.subscription, ask: item.ask ? 'subscribe' : undefined, approved: item.approved ? 'true' : undefined });
  for (const group of item.groups) element.add('group', undefined, group);
  return element;
}
