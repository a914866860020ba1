import type { RemoteSipChange } from '../../services/remote-sip/records.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { appendValue, isDictionary, readValue, type XimssValue } from '../../xml/objects.js';
import { formatLocal } from '../../xml/time.js';
import { inSession, type OperationTable } from '../engine.js';

/**
 * Spec section "Remote POP, Remote SIP Management", its RSIP half: rsipList sends one
 * `<rsipRecord name="...">` per record, the body the record's dictionary (the password left
 * out), with `timeCompleted` (the last attempt, in the session's time zone), `errorText` when
 * it failed, and `registeredUntil` while the registrar holds the registration. rsipUpdate takes
 * rsipRecord elements with `mode="delete"` (the name alone) or any other mode (the record,
 * replacing one of that name). The records and their checks are src/services/remote-sip/.
 */

/** At most this many rsipRecord elements in one rsipUpdate. */
const MAX_CHANGES = 100;

/** A record's dictionary: a flat dictionary of strings. */
function settingsOf(name: string, body: XimssValue): { [key: string]: string } {
  if (typeof body === 'string' && body.trim() === '') return {};
  if (!isDictionary(body)) throw new ServiceError(`rsipRecord ${JSON.stringify(name)}: the body must be a dictionary (<subKey key="...">)`);
  const settings: { [key: string]: string } = Object.create(null) as { [key: string]: string };
  for (const key of Object.keys(body)) {
    const value = body[key];
    if (typeof value !== 'string') throw new ServiceError(`rsipRecord ${JSON.stringify(name)}: the value of ${JSON.stringify(key.slice(0, 64))} must be a string`);
    settings[key] = value;
  }
  return settings;
}

export const remoteSipOperations: OperationTable = {
  rsipList: inSession(async (ctx) => {
    const zone = ctx.session.timeZone;
    for (const record of await ctx.server.remoteSip.list(ctx.session.account)) {
      const attrs: Record<string, string> = { name: record.name };
      if (record.lastAttempt !== null) attrs.timeCompleted = formatLocal(new Date(record.lastAttempt), zone);
      if (record.lastError !== null) attrs.errorText = record.lastError;
      if (record.registeredUntil !== null && record.registeredUntil > Date.now()) attrs.registeredUntil = formatLocal(new Date(record.registeredUntil), zone);
      ctx.send(appendValue(el('rsipRecord', attrs), record.settings));
    }
  }),

  rsipUpdate: inSession(async (ctx) => {
    const elements = ctx.request.elements();
    if (elements.length === 0) throw new ServiceError('the rsipRecord elements are missing');
    if (elements.length > MAX_CHANGES) throw new ServiceError(`too many rsipRecord elements (at most ${MAX_CHANGES})`);
    const changes: RemoteSipChange[] = [];
    for (const element of elements) {
      if (element.name !== 'rsipRecord') throw new ServiceError(`unexpected <${element.name}> in rsipUpdate (rsipRecord elements expected)`);
      const name = element.attrs.name ?? '';
      if (name === '') throw new ServiceError('the name attribute of an rsipRecord is missing');
      if (element.attrs.mode === 'delete') {
        changes.push({ name, mode: 'delete' });
        continue;
      }
      let body: XimssValue;
      try {
        body = readValue(element);
      } catch (err) {
        throw new ServiceError(`rsipRecord ${JSON.stringify(name)}: ${(err as Error).message}`);
      }
      changes.push({ name, mode: 'set', settings: settingsOf(name, body) });
    }
    await ctx.server.remoteSip.update(ctx.session.account, changes);
  }),
};
