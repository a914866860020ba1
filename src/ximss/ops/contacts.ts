import { CONTACTS_CLASS, fromXml, ILLEGAL_VCARD, VCardFormatError, type VObject } from '../../services/contacts/index.js';
import { ServiceError } from '../../services/errors.js';
import { Flag, parseInitialFlags } from '../../services/mail/flags.js';
import { messageToXml, parseMime } from '../../services/mime/index.js';
import type { MessageMeta } from '../../store/store.js';
import { el } from '../../xml/element.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import { limitAttr, openFolder, totalSizeLimitAttr } from '../folders.js';
import { appendTarget } from './message.js';

/**
 * Spec section "Contacts Operations": contactAppend, contactsImport, contactFind. The
 * vCard work is the contacts service's (src/services/contacts/); items are messages, so
 * open folders see them come as they see messageAppend's.
 */

/** The one vCard or vCardGroup of a contactAppend body, as an object (bad XML: the clients' error text). */
function requestObject(ctx: SessionContext): VObject {
  const bodies = ctx.request.elements();
  if (bodies.length !== 1 || (bodies[0]!.name !== 'vCard' && bodies[0]!.name !== 'vCardGroup')) {
    throw new ServiceError('the body must be exactly one vCard or vCardGroup element');
  }
  try {
    return fromXml(bodies[0]!);
  } catch (err) {
    if (!(err instanceof VCardFormatError)) throw err;
    ctx.server.log.info({ event: 'contacts.invalid', account: ctx.session.userName, reason: err.message }, 'contactAppend: illegal vCard data');
    throw new ServiceError(`${ILLEGAL_VCARD}: ${err.message}`);
  }
}

export const contactOperations: OperationTable = {
  contactAppend: inSession(async (ctx) => {
    const session = ctx.session;
    const { folder: folderName, targetMailbox, flags, report } = ctx.request.attrs;
    const { box, replace } = await appendTarget(ctx, { mailboxClass: CONTACTS_CLASS });
    const object = requestObject(ctx);
    const initial = parseInitialFlags(flags === undefined ? 'Seen' : flags);
    const { message } = await ctx.server.contacts.append(box, object, {
      timeZone: session.timeZone,
      flags: initial.flags | Flag.Recent,
      keywords: initial.keywords,
      ...(replace ? { replace } : {}),
    });
    if (report === 'uid') ctx.send(el('messageAdded', folderName ? { folder: folderName, UID: message.uid } : { targetMailbox, UID: message.uid }));
  }),

  contactsImport: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const text = await ctx.session.uploads.text(requiredAttr(ctx.request, 'uploadID'), ctx.server.contacts.limits.importBytes);
    await ctx.server.mail.check(folder.box, 'i');
    await ctx.server.contacts.importText(folder.box, text, { timeZone: ctx.session.timeZone });
  }),

  contactFind: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const peer = requiredAttr(ctx.request, 'peer');
    if (peer.trim() === '') throw new ServiceError('the peer attribute is empty');
    const mode = ctx.request.attrs.mode;
    if (mode !== undefined && mode !== '' && mode !== 'sub') throw new ServiceError(`invalid mode: ${mode}`);
    const limit = limitAttr(ctx.request) ?? Number.POSITIVE_INFINITY;
    const totalSizeLimit = totalSizeLimitAttr(ctx.request);
    // The folder's mailbox as it is now (items added since the client's last folderSync
    // included), in UID order; items marked Deleted are not found.
    await ctx.server.mail.check(folder.box, 'r');
    const index = await ctx.server.mail.index(folder.box);
    const candidates: MessageMeta[] = [...index.byUid.values()].filter((m) => !(m.flags & Flag.Deleted)).sort((a, b) => a.uid - b.uid);
    const found = await ctx.server.contacts.find(folder.box, candidates, peer, mode === 'sub', limit);
    for (const f of found) {
      const raw = await ctx.server.mail.readRaw(folder.box, f.uid);
      if (!raw) continue;
      const body = messageToXml(raw, parseMime(raw), { timeZone: ctx.session.timeZone, totalSizeLimit });
      ctx.send(el('folderMessage', { folder: folder.name, peer, UID: f.uid, foundAddress: f.foundAddress, peerName: f.peerName }, body));
    }
  }),
};
