/**
 * What the DAV providers over mailboxes (CardDAV's address books, CalDAV's calendars) share:
 * the account home URL, the privileges a mailbox's rights give, sync tokens, Apple's
 * calendarserver namespace (getctag).
 */
import type { MailboxHandle } from '../../services/mail/service.js';
import { fullName } from '../../services/accounts.js';
import type { AccountRecord } from '../../store/store.js';
import { encodeSegment } from './headers.js';
import { clark } from './xml.js';

export const CS_NS = 'http://calendarserver.org/ns/';
export const CS = (local: string): string => clark(CS_NS, local);

/** How an account's name is written in DAV URLs: the name alone in the default domain. */
export function accountSegment(account: AccountRecord, defaultDomain: string): string {
  return account.domain === defaultDomain ? account.name : fullName(account);
}

/** An account's home under `base` (`/dav/addressbooks`, `/dav/calendars`). */
export function homeHref(base: string, account: AccountRecord, defaultDomain: string): string {
  return `${base}/${encodeSegment(accountSegment(account, defaultDomain))}/`;
}

/** `current-user-privilege-set` of a mailbox's rights (l/r read; i bind; d unbind), with `readExtras` given with read. */
export function mailboxPrivileges(rights: string, readExtras: readonly string[] = []): string {
  const list: string[] = [];
  if (/[lr]/.test(rights)) list.push('<D:read/>', '<D:read-current-user-privilege-set/>', ...readExtras);
  if (/i/.test(rights) && /d/.test(rights)) list.push('<D:write/>', '<D:write-content/>', '<D:bind/>', '<D:unbind/>');
  else {
    if (/i/.test(rights)) list.push('<D:bind/>');
    if (/d/.test(rights)) list.push('<D:unbind/>');
  }
  return list.map((p) => `<D:privilege>${p}</D:privilege>`).join('');
}

/** Sync tokens (RFC 6578): `<SYNC_PREFIX><mailbox id>-<modseq>`. */
const SYNC_PREFIX = 'http://ximssd.invalid/ns/sync/';

export function syncToken(box: MailboxHandle, modseq: number): string {
  return `${SYNC_PREFIX}${box.record.id}-${modseq}`;
}

/** The modseq of a sync token of this mailbox; undefined for a token that is not one. */
export function syncTokenModseq(token: string, box: MailboxHandle): number | undefined {
  const m = token.startsWith(SYNC_PREFIX) ? /^(\d+)-(\d+)$/.exec(token.slice(SYNC_PREFIX.length)) : null;
  return m && Number(m[1]) === box.record.id ? Number(m[2]) : undefined;
}
