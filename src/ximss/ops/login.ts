import type { Authenticated, LoginWay } from '../../services/auth.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { NO_RESPONSE, preLogin, type OperationTable, type RequestContext } from '../engine.js';
import type { Conversation } from '../conversation.js';
import { holdForSecondFactor, needsSecondFactor, sessionMessageOf } from './login-security.js';

/** Spec section "Login Operations": login (clear text, CRAM-MD5, PLAIN) and auth. */

function decodeBase64(value: string | undefined, what: string): Buffer {
  if (value === undefined) throw new ServiceError(`the ${what} attribute is missing`);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value.trim())) throw new ServiceError(`the ${what} attribute is not base64 data`);
  return Buffer.from(value.trim(), 'base64');
}

/** Conversations whose login said the client can do two-factor authentication (`x2auth="1"`; kept for a SASL `auth`). */
const supportsX2auth = new WeakSet<Conversation>();

/**
 * Creates the session for a successful login, tells the client, and binds the connection.
 * For an account with two-factor authentication the session waits for the second factor
 * (see login-security.ts).
 */
async function openSession(ctx: RequestContext, auth: Authenticated): Promise<void> {
  const transport = ctx.conversation.transport;
  if (!transport) throw new ServiceError('login is not possible on this connection');
  const { sessions } = ctx.server;
  const secondFactor = await needsSecondFactor(ctx.server, auth, supportsX2auth.has(ctx.conversation), ctx.conversation.remoteAddress);
  const session = await sessions.create(auth, transport.kind, ctx.conversation.remoteAddress, ctx.conversation.clientVersion, secondFactor);
  session.attach(transport.asyncSink(session));
  ctx.conversation.session = session;
  if (secondFactor) {
    holdForSecondFactor(ctx.server, session);
    ctx.send(sessionMessageOf(ctx.server, session));
    return;
  }
  ctx.send(session.sessionMessage(ctx.server.version));
  // Alerts posted while the user was away arrive right after the login response.
  ctx.conversation.afterResponse = () => void sessions.deliverAlerts(session.account.id);
}

/**
 * The protocol a login is logged under: `http` when the conversation runs over the HTTP
 * binding (an /XIMSSLogin/ batch, an HTTP session's requests), `ximss` over TCP.
 */
function protocolOf(ctx: RequestContext): LoginWay['protocol'] {
  return ctx.conversation.transport?.kind === 'http' ? 'http' : 'ximss';
}

export const loginOperations: OperationTable = {
  login: preLogin(async (ctx) => {
    const { method, authData, password, version, domain } = ctx.request.attrs;
    const { auth } = ctx.server;
    const conversation = ctx.conversation;
    conversation.clientVersion = version;
    if (/^(1|yes|true)$/i.test(ctx.request.attrs.x2auth ?? '')) supportsX2auth.add(conversation);
    else supportsX2auth.delete(conversation);
    const domainHint = domain || conversation.targetDomain;
    const mechanism = (method ?? '').toUpperCase();

    if (mechanism === '' || mechanism === 'CLEAR' || mechanism === 'PASSWORD') {
      if (!authData) throw new ServiceError('the authData attribute (the account name) is missing');
      if (password === undefined) throw new ServiceError('the password attribute is missing');
      await openSession(ctx, await auth.checkPassword(authData, password, domainHint, conversation.remoteAddress, protocolOf(ctx)));
      return;
    }
    if (mechanism === 'PLAIN') {
      if (authData === undefined) {
        conversation.pendingAuth = { id: ctx.id, mechanism: 'PLAIN', challenge: '', domainHint };
        ctx.sendUntagged(el('challenge', { value: '' }));
        return NO_RESPONSE;
      }
      await openSession(ctx, await auth.checkPlain(decodeBase64(authData, 'authData'), domainHint, conversation.remoteAddress, protocolOf(ctx)));
      return;
    }
    if (mechanism === 'CRAM-MD5') {
      const challenge = auth.newChallenge();
      conversation.pendingAuth = { id: ctx.id, mechanism: 'CRAM-MD5', challenge, domainHint };
      ctx.sendUntagged(el('challenge', { value: Buffer.from(challenge).toString('base64') }));
      return NO_RESPONSE;
    }
    throw new ServiceError(`unsupported authentication method ${method}`);
  }),

  auth: preLogin(async (ctx) => {
    // The engine has already cancelled an exchange this `auth` does not continue (another id).
    const pending = ctx.conversation.pendingAuth;
    ctx.conversation.pendingAuth = undefined;
    if (!pending) throw new ServiceError('no authentication in progress with this id');
    const { auth } = ctx.server;
    const answer = decodeBase64(ctx.request.attrs.value, 'value');
    const address = ctx.conversation.remoteAddress;
    const protocol = protocolOf(ctx);
    const result =
      pending.mechanism === 'CRAM-MD5'
        ? await auth.checkCramMd5(pending.challenge, answer.toString('utf8'), pending.domainHint, address, { protocol, mechanism: 'cram-md5' })
        : await auth.checkPlain(answer, pending.domainHint, address, protocol);
    await openSession(ctx, result);
  }),
};
