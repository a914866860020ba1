import type { RecordChange } from '../../services/remote-mail/service.js';
import { ServiceError } from '../../services/errors.js';
import { recordDictionary } from '../../services/remote-mail/records.js';
import type { RemoteMailKind } from '../../store/remote-mail.js';
import { el, type XmlElement } from '../../xml/element.js';
import { appendValue, isDictionary, readValue } from '../../xml/objects.js';
import { formatLocal } from '../../xml/time.js';
import { inSession, type OperationTable, type SessionContext } from '../engine.js';

/**
 * Spec section "Remote POP, Remote SIP Management" (rpop*) and the Russian seed's RIMAP (rimap*):
 * an account's records of mailboxes on other servers, polled by the server (the remote-mail
 * service, src/services/remote-mail/). A record travels as `<rpopRecord name="...">` (or
 * rimapRecord) whose body is the record dictionary (`<subKey key="domain">pop.example.com</subKey>`
 * …; keys in src/services/remote-mail/records.ts). The list adds `timeCompleted` (the last
 * poll, in the session's time zone) and `errorText` (why it failed, else what the poller left on
 * the remote server and why), and never the password.
 * In an update, `mode="delete"` removes the named record; any other mode adds it, replacing
 * a record of that name.
 */

function elementName(kind: RemoteMailKind): string {
  return kind === 'pop' ? 'rpopRecord' : 'rimapRecord';
}

function changesOf(request: XmlElement, kind: RemoteMailKind): RecordChange[] {
  const name = elementName(kind);
  const changes: RecordChange[] = [];
  for (const child of request.elements()) {
    if (child.name !== name) throw new ServiceError(`unexpected <${child.name}> element: ${name} elements are expected`);
    const recordName = child.attrs.name ?? '';
    if ((child.attrs.mode ?? '').toLowerCase() === 'delete') {
      changes.push({ name: recordName, remove: true });
      continue;
    }
    let value;
    try {
      value = readValue(child);
    } catch (err) {
      throw new ServiceError(`the ${name} body is not a dictionary: ${(err as Error).message}`);
    }
    if (!isDictionary(value)) throw new ServiceError(`the ${name} body must be a dictionary (subKey elements)`);
    const dictionary: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const key of Object.keys(value)) {
      const v = value[key]!;
      if (typeof v !== 'string') throw new ServiceError(`the ${JSON.stringify(key.slice(0, 40))} value must be a string`);
      dictionary[key] = v;
    }
    changes.push({ name: recordName, remove: false, dictionary });
  }
  if (changes.length === 0) throw new ServiceError(`no ${name} element`);
  return changes;
}

async function list(ctx: SessionContext, kind: RemoteMailKind): Promise<void> {
  for (const record of await ctx.server.remoteMail.list(ctx.session.account, kind)) {
    const attrs: Record<string, string> = { name: record.name };
    if (record.lastPoll !== null) attrs.timeCompleted = formatLocal(new Date(record.lastPoll), ctx.session.timeZone);
    // The last poll's error, else the record's standing note (messages left on the remote server).
    const problem = record.lastError ?? record.note;
    if (problem !== null) attrs.errorText = problem;
    ctx.send(appendValue(el(elementName(kind), attrs), recordDictionary(record)));
  }
}

export const remoteMailOperations: OperationTable = {
  rpopList: inSession((ctx) => list(ctx, 'pop')),
  rpopUpdate: inSession((ctx) => ctx.server.remoteMail.update(ctx.session.account, 'pop', changesOf(ctx.request, 'pop'))),
  rimapList: inSession((ctx) => list(ctx, 'imap')),
  rimapUpdate: inSession((ctx) => ctx.server.remoteMail.update(ctx.session.account, 'imap', changesOf(ctx.request, 'imap'))),
};
