/**
 * Mailbox names as clients write them, checked in one place wherever they enter: mailbox
 * operations, subscriptions, aliases and their targets, copy/move/append/submit targets,
 * Mail Rules' "Store in".
 *
 *  - an own name: 1..512 characters, no control characters (nor any XML cannot carry), no
 *    leading, trailing or doubled `/`; INBOX in any case is spelled INBOX;
 *  - another account's: `~account[@domain]/name`, where `account[@domain]` is a
 *    syntactically valid account address (at most 382 characters) and `name` an own name
 *    of that account, checked as above.
 */
import { xmlSafe } from '../../xml/element.js';
import { AccountService } from '../accounts.js';
import { ServiceError } from '../errors.js';

export const MAX_MAILBOX_NAME_LENGTH = 512;
/** `account@domain`: an account name (128) and a domain name (253). */
export const MAX_OWNER_LENGTH = 128 + 1 + 253;
/** How much of a refused name the error quotes. */
const QUOTED = 80;

/** The error every refused mailbox name gets: `invalid mailbox name: "..."` (shortened, controls escaped). */
export function invalidMailboxName(name: string): ServiceError {
  const shown = name.length > QUOTED ? name.slice(0, QUOTED) + '...' : name;
  return new ServiceError(`invalid mailbox name: ${JSON.stringify(shown)}`);
}

/** Checks an own mailbox name (see the module comment) and spells INBOX canonically. */
export function normalizeMailboxName(name: string, whole = name): string {
  if (name === '' || name.length > MAX_MAILBOX_NAME_LENGTH) throw invalidMailboxName(whole);
  if (/[\u0000-\u001f\u007f]/.test(name) || xmlSafe(name) !== name) throw invalidMailboxName(whole);
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) throw invalidMailboxName(whole);
  const slash = name.indexOf('/');
  const first = slash < 0 ? name : name.slice(0, slash);
  return first.toUpperCase() === 'INBOX' ? 'INBOX' + (slash < 0 ? '' : name.slice(slash)) : name;
}

/**
 * True when `owner` is a syntactically valid account address (`account` or
 * `account@domain`), bounded: what may follow `~` in a mailbox name.
 */
export function isOwnerAddress(owner: string): boolean {
  if (owner === '' || owner.length > MAX_OWNER_LENGTH || owner.trim() !== owner) return false;
  const at = owner.lastIndexOf('@');
  try {
    AccountService.normalizeName(at < 0 ? owner : owner.slice(0, at));
    if (at >= 0) AccountService.normalizeDomain(owner.slice(at + 1));
  } catch {
    return false;
  }
  return true;
}

export interface MailboxName {
  /** The account part of a `~account[@domain]/name` name, as written; undefined for own names. */
  owner: string | undefined;
  /** The (owner-relative) name, checked and with INBOX spelled canonically. */
  name: string;
}

/** Checks any mailbox name a client may write (own or `~account[@domain]/name`) and splits it. */
export function parseMailboxName(name: string): MailboxName {
  if (!name.startsWith('~')) return { owner: undefined, name: normalizeMailboxName(name) };
  // Only the first MAX_OWNER_LENGTH + 1 characters can hold the slash after the owner.
  const slash = name.slice(0, MAX_OWNER_LENGTH + 2).indexOf('/');
  if (slash < 0) throw invalidMailboxName(name);
  const owner = name.slice(1, slash);
  if (!isOwnerAddress(owner)) throw invalidMailboxName(name);
  return { owner, name: normalizeMailboxName(name.slice(slash + 1), name) };
}

/** A checked mailbox name as it is kept (subscriptions, alias targets): INBOX canonical, the owner as written. */
export function canonicalMailboxName(name: string): string {
  const parsed = parseMailboxName(name);
  return parsed.owner === undefined ? parsed.name : `~${parsed.owner}/${parsed.name}`;
}
