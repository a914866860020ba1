import { MAX_CODE_LENGTH, type SecondFactorKind } from '../../services/two-factor.js';
import { ServiceError } from '../../services/errors.js';
import { fullName } from '../../services/accounts.js';
import type { Authenticated } from '../../services/auth.js';
import { el, type XmlElement } from '../../xml/element.js';
import { appendValue, type XimssValue } from '../../xml/objects.js';
import { formatGmt } from '../../xml/time.js';
import { inSession, type OperationTable, type RequestContext, type SessionContext } from '../engine.js';
import type { Session } from '../session.js';
import type { XimssServices } from '../services.js';

/**
 * Login security: the second step of a login with two-factor authentication (x2AuthStart,
 * x2AuthComplete, spec 003 "login"), its enrolment, and application passwords
 * (passwordModify `name`/`remove`, listSpecPasswords).
 *
 * Login: an account with two-factor authentication on gets, after its password, a session
 * whose `session` message carries the `x2auth` dictionary of methods (`totp`: a code of an
 * authenticator app; `recovery`: one of the recovery codes) when the client said it can
 * (`x2auth="1"` on login, `x2auth=1` on /XIMSSLogin/); a client that did not gets an error
 * and no session. Until `x2AuthStart <method>` and `x2AuthComplete <code>` the session does
 * nothing else (the engine refuses other requests; nothing is delivered to it) and lives at
 * most `limits.loginSeconds` idle. Wrong codes are counted like failed logins.
 *
 * Enrolment (the spec names no operation for it; these reuse the two operations in a
 * complete session, so that no new element is needed):
 *   `x2AuthStart totp`    → `x2auth` with `secret` (base32) and `uri` (otpauth://, for a QR code);
 *   `x2AuthComplete code` → a code of the app turns it on; `x2AuthCompleted` carries the recovery codes, once;
 *   `x2AuthStart off`, then `x2AuthComplete code` (an app code or a recovery code) → off.
 */

export const X2AUTH_UNSUPPORTED =
  'this account requires two-factor authentication: log in with a client that supports it (x2auth="1")';

type Step = { kind: 'login'; method?: SecondFactorKind; failures: number } | { kind: 'enrol'; secret: string } | { kind: 'disable' };

/** Wrong codes a waiting session may send; at the last one it is ended (a new login starts again). */
export const PENDING_CODE_TRIES = 3;

/** What each session has started (a session's own state: it ends with it). */
const steps = new WeakMap<Session, Step>();

/** The methods offered, as the spec's x2auth dictionary: key = method, value = its parameters. */
function methods(): XimssValue {
  return {
    totp: { humanName: 'Code from an authenticator app', humanTag: 'x2auth_totp_tag' },
    recovery: { humanName: 'Recovery code', humanTag: 'x2auth_recovery_tag' },
  };
}

/** The protocol a request is counted under (see login.ts protocolOf). */
function protocolOf(ctx: RequestContext): 'http' | 'ximss' {
  return ctx.conversation.transport?.kind === 'http' ? 'http' : 'ximss';
}

/**
 * Whether a login of `auth` needs the second factor; throws X2AUTH_UNSUPPORTED when it does
 * and the client did not say it can do it. Called before the session is made.
 */
export async function needsSecondFactor(server: XimssServices, auth: Authenticated, clientSupports: boolean, address: string): Promise<boolean> {
  if (!(await server.auth.twoFactor.enabled(auth.account.id))) return false;
  if (!clientSupports) {
    server.log.warn({ event: 'auth.x2auth.unsupported_client', user: fullName(auth.account), address }, 'login refused: the client cannot do two-factor authentication');
    throw new ServiceError(X2AUTH_UNSUPPORTED);
  }
  return true;
}

/** Puts a new session in the second-factor state (its `session` message: sessionMessageOf). */
export function holdForSecondFactor(server: XimssServices, session: Session): void {
  session.secondFactorPending = true;
  steps.set(session, { kind: 'login', failures: 0 });
  session.setIdleTimeout(Math.min(session.idleTimeoutSeconds, server.config.limits.loginSeconds));
  // An absolute deadline from the password step: requests (even refused ones) do not extend it.
  const deadline = setTimeout(() => {
    if (!session.secondFactorPending || session.closed) return;
    server.log.info({ event: 'auth.x2auth.expired', user: session.userName, address: session.remoteAddress }, 'waiting session ended: no second factor in time');
    server.sessions.end(session, true, 'x2auth');
  }, server.config.limits.loginSeconds * 1000);
  deadline.unref();
  session.onEnd(() => clearTimeout(deadline));
  server.log.info({ event: 'auth.x2auth.pending', user: session.userName, address: session.remoteAddress }, 'password right; waiting for the second factor');
}

/** The `session` message; while the second factor is pending, with the x2auth dictionary of methods. */
export function sessionMessageOf(server: XimssServices, session: Session): XmlElement {
  const message = session.sessionMessage(server.version);
  if (session.secondFactorPending) {
    // A password alone learns nothing of the account beyond its name: no real name (the
    // spec example's realName is optional; a client reads it after the second factor).
    delete message.attrs.realName;
    appendValue(message.add('x2auth'), methods());
  }
  return message;
}

/**
 * Refuses unless the session was opened with the account's main password: one opened with an
 * application password (a phone's, a mail client's) manages no credentials.
 */
export function mainPasswordSession(ctx: SessionContext, what: string): void {
  if (ctx.session.credential === 'main') return;
  ctx.server.log.warn(
    { event: 'auth.appPassword.refused_management', user: ctx.session.userName, name: ctx.session.appPassword, address: ctx.conversation.remoteAddress, what },
    'a session opened with an application password tried to manage credentials',
  );
  throw new ServiceError(`a session opened with an application password cannot ${what}: log in with the account's password`);
}

function methodName(ctx: SessionContext): string {
  const name = ctx.request.text().trim();
  if (name === '') throw new ServiceError('the method name (the body of x2AuthStart) is missing');
  return name;
}

/** A method name for an error text: as sent when short, never a long body echoed back. */
function shown(name: string): string {
  return name.length <= 32 ? name : `${name.slice(0, 32)}…`;
}

function code(ctx: SessionContext): string {
  const value = ctx.request.text().trim();
  if (value === '') throw new ServiceError('the one-time code (the body of x2AuthComplete) is missing');
  if (value.length > MAX_CODE_LENGTH) throw new ServiceError('the one-time code is too long');
  return value;
}

/** A code as typed: six digits are an app's code, anything else a recovery code. */
function kindOf(value: string): SecondFactorKind {
  return /^\d{6}$/.test(value.replace(/\s/g, '')) ? 'totp' : 'recovery';
}

export const loginSecurityOperations: OperationTable = {
  x2AuthStart: inSession(async (ctx) => {
    const session = ctx.session;
    const name = methodName(ctx);
    const { twoFactor } = ctx.server.auth;
    if (session.secondFactorPending) {
      if (name !== 'totp' && name !== 'recovery') throw new ServiceError(`unknown two-factor method ${shown(name)} (offered: totp, recovery)`);
      if (ctx.request.attrs.index !== undefined && ctx.request.attrs.index !== '0') throw new ServiceError('the method has no addresses to choose from');
      const previous = steps.get(session);
      steps.set(session, { kind: 'login', method: name, failures: previous?.kind === 'login' ? previous.failures : 0 });
      ctx.send(el('x2auth', { user: '1' }));
      return;
    }
    mainPasswordSession(ctx, 'turn two-factor authentication on or off');
    const enabled = await twoFactor.enabled(session.account.id);
    if (name === 'totp') {
      if (enabled) throw new ServiceError('two-factor authentication is on already (x2AuthStart off turns it off)');
      // Re-authentication (an extension: the spec has no enrolment): the current main password.
      const password = ctx.request.attrs.password;
      if (password === undefined) throw new ServiceError('the password attribute (the current password of the account) is missing');
      await ctx.server.auth.checkCurrentPassword(session.account, password, ctx.conversation.remoteAddress);
      const enrolment = twoFactor.newEnrolment(session.account);
      steps.set(session, { kind: 'enrol', secret: enrolment.secret });
      ctx.server.log.info({ event: 'auth.x2auth.enrolment_started', user: session.userName }, 'two-factor enrolment started');
      ctx.send(el('x2auth', { user: '1', secret: enrolment.secret, uri: enrolment.uri }));
      return;
    }
    if (name === 'off') {
      if (!enabled) throw new ServiceError('two-factor authentication is off');
      steps.set(session, { kind: 'disable' });
      ctx.send(el('x2auth', { user: '1' }));
      return;
    }
    throw new ServiceError(`unknown two-factor method ${shown(name)} (after login: totp to turn it on, off to turn it off)`);
  }),

  x2AuthComplete: inSession(async (ctx) => {
    const session = ctx.session;
    const step = steps.get(session);
    const { auth, sessions } = ctx.server;
    const address = ctx.conversation.remoteAddress;
    if (!session.secondFactorPending) mainPasswordSession(ctx, 'turn two-factor authentication on or off');
    if (!step || (step.kind === 'login' && !step.method)) throw new ServiceError('no two-factor authentication started: send x2AuthStart first');
    const value = code(ctx);
    if (step.kind === 'login') {
      try {
        await auth.checkSecondFactor(session.account, step.method!, value, address, protocolOf(ctx));
      } catch (err) {
        if (err instanceof ServiceError && ++step.failures >= PENDING_CODE_TRIES) {
          // Too many wrong codes for one password step: the session goes, after this answer.
          ctx.server.log.warn({ event: 'auth.x2auth.pending_ended', user: session.userName, address, failures: step.failures }, 'waiting session ended: too many wrong codes');
          ctx.conversation.afterResponse = () => sessions.end(session, true, 'x2auth');
        }
        throw err;
      }
      // Counted among the account's sessions now (and killOld done, when its login asked).
      await sessions.promote(session);
      await auth.completeSecondFactor(session.account, address, protocolOf(ctx), step.method!);
      steps.delete(session);
      session.secondFactorPending = false;
      session.setIdleTimeout(ctx.server.config.limits.idleTimeoutSeconds);
      ctx.server.log.info({ event: 'auth.x2auth.completed', user: session.userName, address, method: step.method }, 'login complete with the second factor');
      // Alerts posted while the user was away, now that the session may see them.
      ctx.conversation.afterResponse = () => void sessions.deliverAlerts(session.account.id);
      return;
    }
    if (step.kind === 'enrol') {
      const codes = await auth.twoFactor.confirm(session.account, step.secret, value);
      if (!codes) throw new ServiceError('incorrect one-time code: enter the code the authenticator app shows for the new secret');
      steps.delete(session);
      // Every other session was opened without the second factor: they end, on every node.
      ctx.server.bus.publish('credentialsRevoked', { accountId: session.account.id, except: session.urlID });
      const message = el('x2AuthCompleted', { method: 'totp' });
      for (const recovery of codes) message.add('recoveryCode', undefined, recovery);
      ctx.send(message);
      return;
    }
    await auth.checkSecondFactor(session.account, kindOf(value), value, address, protocolOf(ctx));
    steps.delete(session);
    await auth.twoFactor.disable(session.account, session.userName);
  }),

  listSpecPasswords: inSession(async (ctx) => {
    for (const record of await ctx.server.auth.appPasswords.list(ctx.session.account.id)) {
      ctx.send(
        el('specPassword', {
          name: record.name,
          created: formatGmt(new Date(record.created)),
          lastUsed: record.lastUsed === null ? undefined : formatGmt(new Date(record.lastUsed)),
        }),
      );
    }
  }),
};

/**
 * passwordModify with `name` (spec 003): `newPassword` becomes the application password of
 * that name (added, or replacing one of the same name) once `oldPassword` (the account's
 * password) is right; with `remove="yes"` the one of that name is deleted.
 */
export async function modifyAppPassword(ctx: SessionContext): Promise<void> {
  const { oldPassword, newPassword, name, remove, recoveryEMail } = ctx.request.attrs;
  const { auth } = ctx.server;
  const session = ctx.session;
  mainPasswordSession(ctx, 'change passwords');
  if (name === undefined || name === '') throw new ServiceError('the name attribute (the application password label) is missing');
  auth.appPasswords.checkName(name);
  if (recoveryEMail !== undefined) throw new ServiceError('recoveryEMail cannot be changed in the same request as an application password');
  const removing = remove !== undefined && /^(yes|1|true)$/i.test(remove);
  if (removing) {
    if (oldPassword === undefined) throw new ServiceError('the oldPassword attribute (the account password) is missing');
    await auth.checkCurrentPassword(session.account, oldPassword, ctx.conversation.remoteAddress);
    await auth.appPasswords.remove(session.account, name);
    // Its sessions end too, on every node (new logins with it fail already).
    ctx.server.bus.publish('credentialsRevoked', { accountId: session.account.id, appPassword: name });
    return;
  }
  if (remove !== undefined && !/^(no|0|false)$/i.test(remove)) throw new ServiceError('remove must be yes or no');
  if (newPassword === undefined) throw new ServiceError('the newPassword attribute (the application password) is missing');
  if (oldPassword === undefined) throw new ServiceError('the oldPassword attribute is missing');
  await auth.checkCurrentPassword(session.account, oldPassword, ctx.conversation.remoteAddress);
  await auth.appPasswords.set(session.account, name, newPassword);
}
