import { ServiceError } from '../../services/errors.js';
import { jidOf, tryJid, type Jid } from '../../services/im/jid.js';
import { visible } from '../../services/im/server-iq.js';
import { ImError, newStanzaId } from '../../services/im/service.js';
import { NS } from '../../services/im/stanzas.js';
import type { SubscriptionType } from '../../services/im/subscriptions.js';
import type { AccountRecord } from '../../store/store.js';
import { el, type XmlElement } from '../../xml/element.js';
import { inSession, type OperationTable, type SessionContext } from '../engine.js';
import { mediaOfBindSdp, sessionCalls } from '../call-leg.js';
import { sdpFromXml, sdpToText } from '../sdp-xml.js';
import { XIMSS_PRESENCE, XimssImClient, peerJid, rosterItemMessage } from '../im-client.js';

/**
 * Spec sections "Instant Messaging", "Roster and Presence", "XMPP-style requests", and the IM
 * part of "Signaling" (signalBind/signalUnbind; the calls are in signal.ts). A bound
 * session is an IM client of the account like an XMPP resource (src/ximss/im-client.ts); the
 * IM service routes, keeps and answers (src/services/im/).
 */

const MAX_TEXT = 64 * 1024;
const CLIENT_ID = /^[\x21-\x7e\u00a0-\uffff]{1,200}$/u;

/** The session's IM client: the bound one, or (for sending only) an unregistered one. */
function clientOf(ctx: SessionContext): XimssImClient {
  const session = ctx.session;
  // A random name: the urlID, a bearer credential, must not show in the addresses peers see.
  session.im ??= new XimssImClient(ctx.server.im, session, ctx.server.im.router.freeResource(session.account.id, undefined), () => {});
  return session.im;
}

function peerOf(ctx: SessionContext, name = 'peer'): Jid {
  const peer = ctx.request.attrs[name];
  if (peer === undefined || peer.trim() === '') throw new ServiceError(`${name} is required`);
  const jid = tryJid(peer.trim());
  if (!jid || jid.resource) throw new ServiceError(`${name} is not an address: ${JSON.stringify(peer.slice(0, 100))}`);
  return jid;
}

function clientIdOf(ctx: SessionContext): string | undefined {
  const clientID = ctx.request.attrs.clientID;
  if (clientID === undefined || clientID === '') return undefined;
  if (!CLIENT_ID.test(clientID)) throw new ServiceError('clientID has characters a client name cannot have');
  return clientID;
}

/** The account an `accountName` attribute names, with the right asked (`r` to read, `w` to change). */
async function targetAccount(ctx: SessionContext, right: 'r' | 'w'): Promise<AccountRecord> {
  const { accountRights } = ctx.server;
  const target = await accountRights.target(ctx.session.account, ctx.request.attrs.accountName);
  if (target.id !== ctx.session.account.id) await accountRights.require(ctx.session.account, target, right);
  return target;
}

/** IM errors read as XIMSS errors. */
async function imCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ImError) throw new ServiceError(err.message);
    throw err;
  }
}

export const imOperations: OperationTable = {
  /**
   * signalBind (IM and presence part): the session becomes a client of the account named
   * `clientID` (mode fixed: refused when taken; kill: the other client is closed; else a
   * unique name), readIM's format, and presence notifications (`presence="yes"`). A second
   * signalBind changes the options. An SDP body (`<sdp>` or `<sdpText>`) sets the presentation of
   * the SDP in the call messages the session gets.
   */
  signalBind: inSession(async (ctx) => {
    const { im } = ctx.server;
    const session = ctx.session;
    const wanted = clientIdOf(ctx);
    const mode = ctx.request.attrs.mode;
    const interested = ctx.request.attrs.presence === 'yes';
    const extended = ctx.request.attrs.readIM === '1';
    // The client's SDP: its capabilities, and the presentation the server's call messages use.
    const sdp = ctx.request.element('sdpText') ?? ctx.request.element('sdp');
    const bindSdp = sdp ? sdpToText(sdpFromXml(sdp)) : undefined;
    let client = session.im;
    if (client?.bound && wanted !== undefined && wanted !== client.resource) {
      await im.detach(client);
      client.bound = false;
      client = undefined;
    }
    if (!client?.bound) {
      let name = wanted;
      if (wanted !== undefined) {
        const taken = im.router.resource(session.account.id, wanted);
        if (taken && mode === 'fixed') throw new ServiceError(`the clientID ${wanted} is in use by another session`);
        if (taken && mode === 'kill') {
          // Here or on another node: its end is awaited, so that this session gets the name.
          const reason = 'a newer session took its clientID';
          if (taken.client) {
            taken.client.end(reason);
            await im.detach(taken.client);
          } else await im.router.endRemote(session.account.id, wanted, reason);
        }
      }
      name = im.router.freeResource(session.account.id, name);
      client = new XimssImClient(im, session, name, (reason) => ctx.server.sessions.end(session, true, reason === 'server shutdown' ? 'shutdown' : 'killed'));
      if (!(await im.attach(client))) throw new ServiceError('too many clients of this account are connected');
      client.bound = true;
      session.im = client;
      session.onEnd(() => {
        if (client!.bound) void im.detach(client!).catch(() => {});
        client!.bound = false;
      });
    }
    client.extended = extended;
    if (sdp) sessionCalls(session).sdpFormat = sdp.name === 'sdpText' ? 'text' : 'xml';
    if (bindSdp !== undefined) sessionCalls(session).media = mediaOfBindSdp(bindSdp);
    const wasInterested = client.interested;
    client.interested = interested;
    if (interested && !wasInterested) await im.sendContactsPresence(client);
    // Messages kept while the account had no client come to the first session that binds.
    await im.deliverOffline(client);
  }),

  signalUnbind: inSession(async (ctx) => {
    const client = ctx.session.im;
    if (!client?.bound) throw new ServiceError('the session is not bound');
    client.bound = false;
    await ctx.server.im.detach(client);
    ctx.session.im = undefined;
  }),

  /** sendIM: a message to a peer (its client `clientID`, or the one the conversation is locked to). */
  sendIM: inSession(async (ctx) => {
    const client = clientOf(ctx);
    const peer = peerOf(ctx);
    const clientID = clientIdOf(ctx);
    const type = ctx.request.attrs.type ?? 'chat';
    if (!['chat', 'groupchat', 'headline', 'normal'].includes(type)) throw new ServiceError(`type is chat, groupchat, headline or normal, not ${type}`);
    const id = ctx.request.attrs.iqid ?? newStanzaId();
    const message = el('message', { to: client.addressFor(peer.bare, clientID), type, id });
    const elements = ctx.request.elements();
    if (elements.length === 0) {
      const text = ctx.request.text();
      if (text.length > MAX_TEXT) throw new ServiceError(`the message is longer than ${MAX_TEXT} characters`);
      message.append(el('body', undefined, text), el('active', { xmlns: NS.chatStates }));
    } else {
      for (const element of elements) {
        switch (element.name) {
          case 'body':
            message.append(el('body', undefined, element.text()));
            if (type === 'chat') message.append(el('active', { xmlns: NS.chatStates }));
            break;
          case 'composing':
          case 'paused':
          case 'gone':
          case 'active':
          case 'inactive':
            message.append(el(element.name, { xmlns: NS.chatStates }));
            break;
          case 'subject':
            message.append(el('subject', undefined, element.text()));
            break;
          default:
            // Other message elements go as they are (an XHTML-IM body, a receipt request…).
            message.append(element);
        }
      }
    }
    client.sent(id, ctx.id);
    await imCall(() => ctx.server.im.fromClient(client, message));
  }),

  /** closeIM: the conversations with the peer end (unlocked from its client; it is told `gone`). */
  closeIM: inSession(async (ctx) => {
    const peer = peerOf(ctx);
    const client = ctx.session.im;
    if (!client) return;
    // The client the conversation was locked to is told, then the lock goes.
    const to = client.addressFor(peer.bare, undefined);
    if (!client.close(peer.bare)) return;
    await ctx.server.im.fromClient(client, el('message', { to, type: 'chat', id: newStanzaId() }, el('gone', { xmlns: NS.chatStates })));
  }),

  rosterList: inSession(async (ctx) => {
    const account = await targetAccount(ctx, 'r');
    const { items } = await ctx.server.im.store.roster.list(account.id);
    for (const item of items) if (visible(item)) ctx.send(rosterItemMessage(item));
  }),

  rosterSet: inSession(async (ctx) => {
    const { im } = ctx.server;
    const account = await targetAccount(ctx, 'w');
    const contact = peerOf(ctx);
    const subscription = ctx.request.attrs.subscription ?? 'update';
    const name = ctx.request.attrs.name;
    const groups = ctx.request.elements('group').map((g) => g.text().trim());
    if (groups.some((g) => g === '' || g.length > 1024)) throw new ServiceError('a group name is empty or too long');
    if (name !== undefined && name.length > 1024) throw new ServiceError('the name is too long');
    if (contact.bare === jidOf(account.name, account.domain).bare) throw new ServiceError('the account itself is not a contact');
    const details = async (): Promise<void> => {
      const current = await im.store.roster.get(account.id, contact.bare);
      const keep = subscription !== 'update' && subscription !== 'none';
      if (current && keep && name === undefined && groups.length === 0) return;
      await im.rosterUpdate(account, contact, name ?? current?.name ?? '', groups.length > 0 || !current ? groups : current.groups);
    };
    await imCall(async () => {
      switch (subscription) {
        case 'update':
        case 'none':
          return details();
        case 'remove':
          return im.rosterRemove(account, contact);
        case 'subscribe':
        case 'subscribed':
          await details();
          return im.subscriptionFromUser(account, subscription, contact, '');
        case 'unsubscribe':
        case 'unsubscribed':
          return im.subscriptionFromUser(account, subscription as SubscriptionType, contact, '');
        case 'subBoth':
          await details();
          await im.subscriptionFromUser(account, 'subscribed', contact, '');
          return im.subscriptionFromUser(account, 'subscribe', contact, '');
        default:
          throw new ServiceError(`unknown subscription ${JSON.stringify(subscription)}`);
      }
    });
  }),

  rosterGroupSet: inSession(async (ctx) => {
    const { im } = ctx.server;
    const account = await targetAccount(ctx, 'w');
    const group = ctx.request.attrs.group?.trim();
    if (!group) throw new ServiceError('group is required');
    if (group.length > 1024) throw new ServiceError('the group name is too long');
    await imCall(async () => {
      switch (ctx.request.attrs.mode) {
        case 'add':
          return im.groupAdd(account, group);
        case 'delete':
          return im.groupRename(account, group, null);
        case 'rename': {
          const newName = ctx.request.attrs.newName?.trim();
          if (!newName) throw new ServiceError('newName is required to rename');
          if (newName.length > 1024) throw new ServiceError('the new group name is too long');
          return im.groupRename(account, group, newName);
        }
        default:
          throw new ServiceError('mode is add, delete or rename');
      }
    });
  }),

  /**
   * presenceSet: the session's presence (aggregated with the account's other clients by the
   * contacts' servers), or with `peer` presence sent to that address alone (a group chat room).
   */
  presenceSet: inSession(async (ctx) => {
    const { im } = ctx.server;
    const type = ctx.request.attrs.type;
    if (type !== undefined && type !== 'unavailable') throw new ServiceError('type is unavailable or absent');
    const presence = el('presence', { type });
    const show = ctx.request.element('show')?.text().trim();
    const detailed = ctx.request.element('presence')?.text().trim();
    if (show !== undefined && show !== '' && !['dnd', 'away', 'xa', 'chat'].includes(show)) throw new ServiceError(`show is dnd, away or xa, not ${show}`);
    if (detailed !== undefined && !(detailed in XIMSS_PRESENCE)) throw new ServiceError(`unknown presence ${JSON.stringify(detailed)}`);
    const unavailable = type === 'unavailable' || detailed === 'offline';
    if (unavailable) presence.attrs.type = 'unavailable';
    const xmppShow = show || (detailed ? XIMSS_PRESENCE[detailed] : null);
    if (!unavailable && xmppShow) presence.add('show', undefined, xmppShow);
    const status = ctx.request.element('status');
    if (status) {
      const text = status.text();
      if (text.length > 1024) throw new ServiceError('the status is longer than 1024 characters');
      if (text !== '') presence.add('status', undefined, text);
    }
    if (!unavailable && detailed && detailed !== 'online') presence.append(el('presence', { xmlns: NS.ximssPresence }, detailed));
    const peer = ctx.request.attrs.peer;
    const client = clientOf(ctx);
    if (peer !== undefined) {
      const target = peerJid(peer);
      if (!target) throw new ServiceError(`peer is not an address: ${JSON.stringify(peer.slice(0, 100))}`);
      const clientID = clientIdOf(ctx);
      presence.attrs.to = clientID ? `${target}/${clientID}` : target;
      await imCall(() => im.fromClient(client, presence));
      return;
    }
    if (!client.bound) throw new ServiceError('bind the session first (signalBind)');
    await imCall(() => im.fromClient(client, presence));
  }),

  /** iqSend: an XMPP iq to a user or one of its clients; the answer comes as iqRead. */
  iqSend: inSession(async (ctx) => {
    const client = clientOf(ctx);
    const peer = peerOf(ctx);
    const clientID = clientIdOf(ctx);
    const type = ctx.request.attrs.type;
    if (!type || !['get', 'set', 'result', 'error'].includes(type)) throw new ServiceError('type is get, set, result or error');
    const iqid = ctx.request.attrs.iqid;
    if (!iqid) throw new ServiceError('iqid is required');
    const body: XmlElement[] = ctx.request.elements();
    if ((type === 'get' || type === 'set') && body.length !== 1) throw new ServiceError('an iq request carries exactly one element');
    const iq = el('iq', { to: clientID ? `${peer.bare}/${clientID}` : peer.bare, type, id: iqid }, ...body);
    await imCall(() => ctx.server.im.fromClient(client, iq));
  }),
};
