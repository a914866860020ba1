import { settingIsYes } from '../../services/accounts.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { preLogin, requiredAttr, type OperationTable, type RequestContext } from '../engine.js';

/** Spec section "Pre-Login Operations" (readStrings, served before and after login, is in service.ts). */

/** A pre-login operation's `domain` attribute selects the target domain for what follows. */
async function selectDomain(ctx: RequestContext): Promise<string> {
  const requested = ctx.request.attrs.domain;
  if (requested !== undefined && requested !== '') {
    const domain = await ctx.server.accounts.getDomain(requested).catch(() => undefined);
    if (domain) ctx.conversation.targetDomain = domain.name;
  }
  return ctx.conversation.targetDomain ?? ctx.server.accounts.defaultDomain;
}

export const preLoginOperations: OperationTable = {
  listFeatures: preLogin(async (ctx) => {
    const domainName = await selectDomain(ctx);
    const domain = await ctx.server.accounts.getDomain(domainName);
    const features = el('features', undefined, el('domain', undefined, domainName));
    for (const mechanism of ['CRAM-MD5', 'PLAIN']) features.add('sasl', undefined, mechanism);
    if (ctx.conversation.transport?.canStartTls()) features.add('starttls');
    features.add('nonce', undefined, ctx.server.nonces.issue());
    if (domain && settingIsYes(domain.settings.SignupAllowed)) features.add('signup');
    ctx.send(features);
  }),

  starttls: preLogin(async (ctx) => {
    await selectDomain(ctx);
    const transport = ctx.conversation.transport;
    if (!transport || ctx.conversation.secure) throw new ServiceError('TLS is already active on this connection');
    if (!transport.canStartTls()) throw new ServiceError('TLS is not available on this connection');
    ctx.conversation.afterResponse = () => transport.startTls();
  }),

  recoverPassword: preLogin(async (ctx) => {
    const domain = await selectDomain(ctx);
    const userName = requiredAttr(ctx.request, 'userName');
    // Counted per address, and per account however it is named (case, blanks, domain, alias).
    const account = await ctx.server.auth.admitRecovery(ctx.conversation.remoteAddress, userName, domain);
    // One answer for an unknown account and one without a recovery address: no probing.
    if (!account || !account.recoveryEmail) throw new ServiceError('password recovery is not possible for this account');
    await ctx.server.passwordRecovery.send(account);
  }),

  signup: preLogin(async (ctx) => {
    const domainName = await selectDomain(ctx);
    const domain = await ctx.server.accounts.getDomain(domainName);
    if (!domain || !settingIsYes(domain.settings.SignupAllowed)) throw new ServiceError('self sign-up is not allowed in this domain');
    const userName = requiredAttr(ctx.request, 'userName');
    const password = requiredAttr(ctx.request, 'password');
    const { realName, recoverPassword } = ctx.request.attrs;
    // Rate-limited per client address, like failed logins.
    await ctx.server.auth.admitSignup(ctx.conversation.remoteAddress);
    const local = userName.includes('@') ? userName.slice(0, userName.lastIndexOf('@')) : userName;
    await ctx.server.accounts.create({
      address: `${local}@${domain.name}`,
      password,
      realName: realName || undefined,
      recoveryEmail: recoverPassword || undefined,
    });
  }),
};
