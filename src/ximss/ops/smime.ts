import { readFile, stat } from 'node:fs/promises';
import { ServiceError } from '../../services/errors.js';
import type { Identity } from '../../services/smime/crypto.js';
import { SmimeService } from '../../services/smime/service.js';
import { x509Element } from '../../services/smime/x509-xml.js';
import { el, type XmlElement } from '../../xml/element.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import type { XimssServices } from '../services.js';
import type { Session } from '../session.js';

/**
 * Spec section "Secure Messaging (S/MIME)": SMIMEUnlock, SMIMELock, SMIMEModifyPassword,
 * SMIMEGet, SMIMESet. The keys are the S/MIME service's (src/services/smime/service.ts); an
 * unlocked key lives here, in one session's memory only, until SMIMELock, the end of its
 * duration (at most smime.maxUnlockSeconds) or the end of the session.
 */

const services = new WeakMap<XimssServices, SmimeService>();

/** The server's S/MIME service (one per server). */
export function smimeService(server: XimssServices): SmimeService {
  let service = services.get(server);
  if (!service) {
    service = new SmimeService(server.store, server.config.smime, server.log);
    services.set(server, service);
  }
  return service;
}

interface Unlocked {
  identity: Identity;
  timer: NodeJS.Timeout;
}

const unlockedKeys = new WeakMap<Session, Unlocked>();
const hooked = new WeakSet<Session>();

function accountOf(session: Session): string {
  return `${session.account.name}@${session.account.domain}`;
}

/** The session's unlocked key pair, or undefined. */
export function unlockedIdentity(session: Session): Identity | undefined {
  return unlockedKeys.get(session)?.identity;
}

/** The session's unlocked key pair, or the error a locked key is. */
export function requireUnlocked(session: Session): Identity {
  const identity = unlockedIdentity(session);
  if (!identity) throw new ServiceError('the S/MIME Private Key is locked (use SMIMEUnlock)');
  return identity;
}

function lock(server: XimssServices, session: Session, reason: string): void {
  const current = unlockedKeys.get(session);
  if (!current) return;
  clearTimeout(current.timer);
  unlockedKeys.delete(session);
  server.log.info({ event: 'smime.locked', account: accountOf(session), reason }, `S/MIME key of ${accountOf(session)} locked (${reason})`);
}

/** A duration attribute in seconds, cut to smime.maxUnlockSeconds (which an absent one is). */
function unlockSeconds(ctx: SessionContext): number {
  const max = ctx.server.config.smime.maxUnlockSeconds;
  const text = ctx.request.attrs.duration;
  if (text === undefined || text === '') return max;
  const seconds = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(seconds) || seconds <= 0) throw new ServiceError(`invalid duration: ${text.slice(0, 40)} (a number of seconds)`);
  return Math.min(seconds, max);
}

function setUnlocked(ctx: SessionContext, identity: Identity, seconds: number): void {
  const { server, session } = ctx;
  const previous = unlockedKeys.get(session);
  if (previous) clearTimeout(previous.timer);
  const timer = setTimeout(() => lock(server, session, 'expired'), seconds * 1000);
  timer.unref();
  unlockedKeys.set(session, { identity, timer });
  if (!hooked.has(session)) {
    hooked.add(session);
    session.onEnd(() => lock(server, session, 'session ended'));
  }
  server.log.info({ event: 'smime.unlocked', account: accountOf(session), seconds }, `S/MIME key of ${accountOf(session)} unlocked for ${seconds} s`);
}

/** The window of smime.pfxExportsPerHour. */
const EXPORT_WINDOW_MS = 3600_000;
const exportTimes = new WeakMap<Session, number[]>();

/**
 * Takes one of the session's CertAndKey.pfx exports (smime.pfxExportsPerHour in the last hour):
 * false, and logged, when none is left.
 */
export function takePfxExport(server: XimssServices, session: Session): boolean {
  const now = Date.now();
  const recent = (exportTimes.get(session) ?? []).filter((t) => now - t < EXPORT_WINDOW_MS);
  if (recent.length >= server.config.smime.pfxExportsPerHour) {
    exportTimes.set(session, recent);
    server.log.warn({ event: 'smime.export_refused', account: accountOf(session) }, `S/MIME key export of ${accountOf(session)} refused: too many in an hour`);
    return false;
  }
  recent.push(now);
  exportTimes.set(session, recent);
  return true;
}

/**
 * readStatus's S/MIME `option` elements: `S/MIME` (the service is there), and `SMIMEActive`
 * when the session's key is unlocked or `SMIMEInactive` when the account has a key, locked.
 */
export async function smimeStatusOptions(server: XimssServices, session: Session): Promise<XmlElement[]> {
  const options = [el('option', undefined, 'S/MIME')];
  if (unlockedIdentity(session)) options.push(el('option', undefined, 'SMIMEActive'));
  else if (await smimeService(server).certificate(session.account)) options.push(el('option', undefined, 'SMIMEInactive'));
  return options;
}

/** SMIMESet's PKCS#12 data: the PFX body element's base64, or the uploaded file the PFX attribute names. */
async function pfxData(ctx: SessionContext): Promise<Buffer> {
  const max = ctx.server.config.smime.maxPfxBytes;
  const element: XmlElement | undefined = ctx.request.element('PFX');
  if (element) {
    const text = (element.element('base64')?.text() ?? element.text()).replace(/\s+/g, '');
    if (text.length > Math.ceil((max * 4) / 3) + 4) throw new ServiceError(`the PFX data is too large (at most ${max} bytes)`);
    if (text === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new ServiceError('the PFX data is not valid base64');
    return Buffer.from(text, 'base64');
  }
  const uploadID = ctx.request.attrs.PFX;
  if (uploadID === undefined || uploadID === '') throw new ServiceError('the PFX element (or the PFX attribute naming an uploaded file) is missing');
  const file = ctx.session.uploads.get(uploadID);
  if (!file) throw new ServiceError(`uploaded file not found: ${uploadID}`);
  const size = await stat(file.path).then(
    (s) => s.size,
    () => undefined,
  );
  if (size === undefined) throw new ServiceError(`uploaded file not found: ${uploadID}`);
  if (size > max) throw new ServiceError(`the PFX data is too large (at most ${max} bytes)`);
  return readFile(file.path);
}

export const smimeOperations: OperationTable = {
  SMIMEUnlock: inSession(async (ctx) => {
    const seconds = unlockSeconds(ctx);
    const identity = await smimeService(ctx.server).unlock(ctx.session.account, ctx.request.attrs.password);
    setUnlocked(ctx, identity, seconds);
  }),

  SMIMELock: inSession((ctx) => {
    lock(ctx.server, ctx.session, 'SMIMELock');
  }),

  SMIMEModifyPassword: inSession(async (ctx) => {
    const identity = requireUnlocked(ctx.session);
    await smimeService(ctx.server).changePassword(ctx.session.account, identity, ctx.request.attrs.password);
  }),

  SMIMEGet: inSession(async (ctx) => {
    const type = ctx.request.attrs.type ?? 'certificate';
    if (type !== 'certificate') throw new ServiceError(`unsupported type: ${type.slice(0, 40)} (certificate)`);
    const pem = await smimeService(ctx.server).certificate(ctx.session.account);
    if (!pem) throw new ServiceError('the account has no S/MIME certificate');
    ctx.send(el('certificate', undefined, x509Element(pem)));
  }),

  SMIMESet: inSession(async (ctx) => {
    const service = smimeService(ctx.server);
    const account = ctx.session.account;
    const mode = requiredAttr(ctx.request, 'mode');
    const { password, filePassword } = ctx.request.attrs;
    switch (mode) {
      case 'new': {
        const seconds = unlockSeconds(ctx);
        setUnlocked(ctx, await service.create(account, password, unlockedIdentity(ctx.session)), seconds);
        return;
      }
      case 'add': {
        const seconds = unlockSeconds(ctx);
        setUnlocked(ctx, await service.importPfx(account, await pfxData(ctx), filePassword, password, unlockedIdentity(ctx.session)), seconds);
        return;
      }
      case 'update': {
        const identity = requireUnlocked(ctx.session);
        const renewed = await service.renew(account, identity);
        const current = unlockedKeys.get(ctx.session);
        if (current) current.identity = renewed;
        return;
      }
      case 'delete':
        await service.remove(account, await pfxData(ctx), filePassword);
        lock(ctx.server, ctx.session, 'key removed');
        return;
      default:
        throw new ServiceError(`invalid mode: ${mode.slice(0, 40)} (add, new, update or delete)`);
    }
  }),
};
