import { ServiceError } from '../../services/errors.js';
import type { ListedMailbox } from '../../services/mail/service.js';
import { listPattern } from '../../services/wildcard.js';
import { el } from '../../xml/element.js';
import { formatUtc } from '../../xml/time.js';
import { inSession, requiredAttr, type OperationTable } from '../engine.js';

/** Spec section "Mailbox Management". */


function mailboxMessage(m: ListedMailbox): ReturnType<typeof el> {
  const attrs: Record<string, string | number | undefined> = { mailbox: m.name };
  if (m.record && m.stats) {
    attrs.UIDVALIDITY = m.record.uidValidity;
    attrs.MESSAGES = m.stats.messages;
    attrs.UIDNEXT = m.record.uidNext;
    attrs.UNSEEN = m.stats.unseen;
    if (m.stats.oldest !== null) attrs.OLDEST = formatUtc(new Date(m.stats.oldest));
    if (m.record.mailboxClass) attrs.CLASS = m.record.mailboxClass;
    attrs.MEDIA = m.stats.media;
    attrs.UNSEENMEDIA = m.stats.unseenMedia;
    attrs.SIZE = m.stats.size;
  }
  if (m.pureFolder) attrs.pureFolder = 'yes';
  if (m.isFolder) attrs.isFolder = 'yes';
  if (m.rights !== undefined) attrs.rights = m.rights;
  return el('mailbox', attrs);
}

export const mailboxOperations: OperationTable = {
  mailboxCreate: inSession(async (ctx) => {
    await ctx.server.mail.create(ctx.session.account, requiredAttr(ctx.request, 'mailbox'), ctx.request.attrs.mailboxClass ?? '');
  }),

  mailboxRename: inSession(async (ctx) => {
    const children = ctx.request.attrs.children !== undefined && ctx.request.attrs.children !== 'no';
    await ctx.server.mail.rename(ctx.session.account, requiredAttr(ctx.request, 'mailbox'), requiredAttr(ctx.request, 'newName'), children);
  }),

  mailboxRemove: inSession(async (ctx) => {
    const children = ctx.request.attrs.children !== undefined && ctx.request.attrs.children !== 'no';
    await ctx.server.mail.remove(ctx.session.account, requiredAttr(ctx.request, 'mailbox'), children);
  }),

  mailboxList: inSession(async (ctx) => {
    const { filter, mailboxClass, pureFolder } = ctx.request.attrs;
    const listed = await ctx.server.mail.list(ctx.session.account, filter, {
      mailboxClass,
      pureFolders: pureFolder === undefined ? undefined : pureFolder === 'yes',
    });
    for (const m of listed) ctx.send(mailboxMessage(m));
  }),

  mailboxSubList: inSession(async (ctx) => {
    const filter = ctx.request.attrs.filter;
    const matcher = filter ? listPattern(filter) : undefined;
    for (const name of await ctx.server.mail.subscriptions(ctx.session.account)) {
      if (!matcher || matcher(name)) ctx.send(el('mailboxSubscription', { mailbox: name }));
    }
  }),

  mailboxSubUpdate: inSession(async (ctx) => {
    const items = ctx.request.elements('mailboxSubscription');
    // The spec puts mailbox/mode on body elements; a single one on the request itself is accepted too.
    if (items.length === 0 && ctx.request.attrs.mailbox !== undefined) items.push(ctx.request);
    if (items.length === 0) throw new ServiceError('no mailboxSubscription elements');
    for (const item of items) {
      await ctx.server.mail.setSubscribed(ctx.session.account, requiredAttr(item, 'mailbox'), item.attrs.mode === 'add');
    }
  }),

  mailboxAliasList: inSession(async (ctx) => {
    for (const alias of await ctx.server.mail.aliases(ctx.session.account)) {
      ctx.send(el('mailboxAlias', { name: alias.name }, alias.target));
    }
  }),

  mailboxAliasUpdate: inSession(async (ctx) => {
    const items = ctx.request.elements('mailboxAlias');
    if (items.length === 0) throw new ServiceError('no mailboxAlias elements');
    for (const item of items) {
      const target = item.attrs.mode === 'add' ? item.text().trim() : null;
      await ctx.server.mail.setAlias(ctx.session.account, requiredAttr(item, 'name'), target);
    }
  }),

  mailboxRightsGet: inSession(async (ctx) => {
    const name = requiredAttr(ctx.request, 'mailbox');
    const box = await ctx.server.mail.access(ctx.session.account, name, '');
    ctx.send(el('mailboxRights', { mailbox: name }, box.rights));
  }),

  mailboxACLList: inSession(async (ctx) => {
    const name = requiredAttr(ctx.request, 'mailbox');
    const acl = await ctx.server.mail.acl(ctx.session.account, name);
    const message = el('mailboxACL', { mailbox: name });
    for (const entry of acl) message.add('aclElem', { pattern: entry.pattern }, entry.rights);
    ctx.send(message);
  }),

  mailboxACLUpdate: inSession(async (ctx) => {
    const name = requiredAttr(ctx.request, 'mailbox');
    const changes = ctx.request.elements('aclElem').map((e) => ({ pattern: e.attrs.pattern ?? '', rights: e.text().trim(), mode: e.attrs.mode }));
    if (changes.length === 0) throw new ServiceError('no aclElem elements');
    await ctx.server.mail.updateAcl(ctx.session.account, name, changes);
  }),
};
