import { ServiceError } from '../../services/errors.js';
import { presentPrefs, type PrefsChanges } from '../../services/preferences.js';
import type { Settings } from '../../store/store.js';
import { el } from '../../xml/element.js';
import { appendValue, readValue, type XimssValue } from '../../xml/objects.js';
import { inSession, type OperationTable } from '../engine.js';

/**
 * Spec section "Preferences": prefsRead (effective, default, custom, publicInfo),
 * prefsStore (custom values or Public Info; `default` removes one), prefsReload. Values travel in
 * the XML presentation of objects (strings, `subValue` arrays, `subKey` dictionaries).
 * Every session of the account is sent `prefsModified` when they change (SessionManager).
 */
export const preferenceOperations: OperationTable = {
  prefsRead: inSession(async (ctx) => {
    const type = ctx.request.attrs.type;
    const { accounts } = ctx.server;
    const account = ctx.session.account;
    let prefs: Settings;
    switch (type) {
      case undefined:
      case '':
        prefs = await accounts.effectivePrefs(account);
        break;
      case 'default':
        prefs = await accounts.defaultPrefs(account);
        break;
      case 'custom':
        prefs = await accounts.customPrefs(account);
        break;
      case 'publicInfo':
        prefs = await accounts.publicInfo(account);
        break;
      default:
        throw new ServiceError(`unknown prefs type ${JSON.stringify(type)} (default, custom or publicInfo)`);
    }
    const names = ctx.request.elements('name').map((n) => n.text().trim());
    const shown = presentPrefs(prefs);
    const message = el('prefs', type ? { type } : {});
    for (const name of names.length > 0 ? names : Object.keys(shown)) {
      if (!Object.prototype.hasOwnProperty.call(shown, name) || !isXmlName(name)) continue;
      const value = shown[name];
      if (value === undefined) continue;
      appendValue(message.add(name), value as XimssValue);
    }
    ctx.send(message);
  }),

  prefsStore: inSession(async (ctx) => {
    const type = ctx.request.attrs.type;
    if (type !== undefined && type !== '' && type !== 'custom' && type !== 'publicInfo') throw new ServiceError(`unknown prefs type ${JSON.stringify(type)} (custom or publicInfo)`);
    const changes: PrefsChanges = {};
    for (const element of ctx.request.elements()) {
      if (Object.prototype.hasOwnProperty.call(changes, element.name)) throw new ServiceError(`the preference ${element.name} is given twice`);
      let value: XimssValue;
      try {
        value = readValue(element);
      } catch (err) {
        throw new ServiceError(`${element.name}: ${(err as Error).message}`);
      }
      // Defined, not assigned: a `__proto__` element is a name like any other.
      Object.defineProperty(changes, element.name, { value: value === 'default' ? null : value, enumerable: true, writable: true, configurable: true });
    }
    if (Object.keys(changes).length === 0) return;
    if (type === 'publicInfo') {
      await ctx.server.accounts.updatePublicInfo(ctx.session.account, changes);
      return;
    }
    await ctx.server.accounts.updatePrefs(ctx.session.account, changes);
    // This session sees its own change at once (the others when prefsModified reaches them).
    ctx.session.prefs = await ctx.server.accounts.effectivePrefs(ctx.session.account);
  }),

  prefsReload: inSession(async (ctx) => {
    ctx.session.prefs = await ctx.server.accounts.effectivePrefs(ctx.session.account);
  }),
};

/** Stored names come from element names, but a domain default could hold anything: only XML names are shown. */
function isXmlName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9._-]*$/.test(name);
}
