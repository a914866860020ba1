import { verifyIdentity } from '../../services/account-rights.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { inSession, type OperationTable } from '../engine.js';

/**
 * Spec section "Account Management": accountRightsGet, accountACLList, accountACLUpdate
 * (aclElem elements as in mailboxACLUpdate, with Account Access Right letters: see
 * src/services/account-rights.ts), and verifyIdentity (Russian text: may this address, and
 * real name, be used in From). `userName` names another account (`name` in one's own
 * domain, or `name@domain`); the data messages repeat it when it was given.
 */
export const accountOperations: OperationTable = {
  accountRightsGet: inSession(async (ctx) => {
    const { accountRights } = ctx.server;
    const userName = ctx.request.attrs.userName;
    const target = await accountRights.target(ctx.session.account, userName);
    const rights = await accountRights.rights(ctx.session.account, target);
    ctx.send(el('accountRights', userName !== undefined && userName !== '' ? { userName } : {}, rights === '' ? undefined : rights));
  }),

  accountACLList: inSession(async (ctx) => {
    const { accountRights } = ctx.server;
    const userName = ctx.request.attrs.userName;
    const target = await accountRights.target(ctx.session.account, userName);
    const acl = await accountRights.list(ctx.session.account, target);
    const message = el('accountACL', userName !== undefined && userName !== '' ? { userName } : {});
    for (const entry of acl) message.add('aclElem', { pattern: entry.pattern }, entry.rights);
    ctx.send(message);
  }),

  accountACLUpdate: inSession(async (ctx) => {
    const { accountRights } = ctx.server;
    const target = await accountRights.target(ctx.session.account, ctx.request.attrs.userName);
    const others = ctx.request.elements().filter((e) => e.name !== 'aclElem');
    if (others.length > 0) throw new ServiceError(`unexpected <${others[0]!.name}> element (aclElem elements expected)`);
    const elems = ctx.request.elements('aclElem').map((e) => ({ pattern: e.attrs.pattern ?? '', rights: e.text().trim(), mode: e.attrs.mode }));
    await accountRights.update(ctx.session.account, target, elems);
  }),

  verifyIdentity: inSession(async (ctx) => {
    const address = ctx.request.text().trim();
    if (address === '') throw new ServiceError('the E-mail address is missing');
    await verifyIdentity(ctx.server.accountRights, ctx.server.accounts, ctx.session.account, address, ctx.request.attrs.name);
  }),
};
