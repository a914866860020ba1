/**
 * Mailbox access rights, as IMAP ACL (RFC 4314) letters:
 *   l lookup (see the mailbox in lists)   r read (open it, read messages)
 *   s keep the Seen flag                  w write other flags
 *   i insert (append, copy into)          p post (submit to it)
 *   c create sub-mailboxes                d delete messages (and expunge)
 *   a administer (change the ACL)         x delete or rename the mailbox
 * The owner always has every right. Other accounts get what the mailbox ACL grants to
 * their name, to `anyone`, or to `anyone@domain`, minus what entries with a `-` prefix
 * revoke.
 */
import type { AclEntryRecord as AclEntry } from '../../store/store.js';
import { xmlSafe } from '../../xml/element.js';
import { ServiceError } from '../errors.js';

export const ALL_RIGHTS = 'lrswipcdax';

/** An ACL pattern names an account (`name`, `name@domain`), `anyone` or `anyone@domain`, `-` first to revoke. */
const MAX_ACL_PATTERN_LENGTH = 400;

/**
 * Checks an aclElem pattern as a client wrote it (blanks around it ignored): not empty, at
 * most 400 characters, no blanks, control characters or characters XML cannot carry.
 * Returns it trimmed.
 */
export function checkAclPattern(pattern: string): string {
  const trimmed = pattern.trim();
  if (trimmed === '' || trimmed === '-') throw new ServiceError('an ACL element has an empty pattern');
  if (trimmed.length > MAX_ACL_PATTERN_LENGTH || /[\s\u0000-\u001f\u007f]/.test(trimmed) || xmlSafe(trimmed) !== trimmed) {
    const shown = trimmed.length > 80 ? trimmed.slice(0, 80) + '...' : trimmed;
    throw new ServiceError(`invalid ACL pattern: ${JSON.stringify(shown)}`);
  }
  return trimmed;
}

/** Keeps only known letters, each once, in the order given (the spec's example lists `lrdi`). */
export function normalizeRights(rights: string): string {
  let out = '';
  for (const letter of rights) if (ALL_RIGHTS.includes(letter) && !out.includes(letter)) out += letter;
  return out;
}

export function hasRight(rights: string, right: string): boolean {
  return rights.includes(right);
}

/** The rights `user@domain` has on a mailbox owned by `ownerDomain` with this ACL. */
export function effectiveRights(acl: readonly AclEntry[], name: string, domain: string, ownerDomain: string): string {
  let granted = '';
  let revoked = '';
  for (const entry of acl) {
    const negative = entry.pattern.startsWith('-');
    const pattern = (negative ? entry.pattern.slice(1) : entry.pattern).toLowerCase();
    if (!aclPatternMatches(pattern, name.toLowerCase(), domain.toLowerCase(), ownerDomain.toLowerCase())) continue;
    if (negative) revoked += entry.rights;
    else granted += entry.rights;
  }
  let rights = '';
  for (const letter of ALL_RIGHTS) if (granted.includes(letter) && !revoked.includes(letter)) rights += letter;
  return rights;
}

function aclPatternMatches(pattern: string, name: string, domain: string, ownerDomain: string): boolean {
  if (pattern === 'anyone') return true;
  if (pattern === `anyone@${domain}`) return true;
  if (pattern === `${name}@${domain}`) return true;
  // A bare name means an account in the owner's domain.
  return !pattern.includes('@') && pattern === name && domain === ownerDomain;
}

/** Applies one aclElem of mailboxACLUpdate (mode add, sub, clear, or replace). */
export function updateAcl(acl: readonly AclEntry[], pattern: string, rights: string, mode: string | undefined): AclEntry[] {
  const result = acl.map((e) => ({ ...e }));
  const index = result.findIndex((e) => e.pattern.toLowerCase() === pattern.toLowerCase());
  const current = index >= 0 ? result[index]!.rights : '';
  let next: string | null;
  if (mode === 'clear') next = null;
  else if (mode === 'add') next = normalizeRights(current + rights);
  else if (mode === 'sub') next = normalizeRights([...current].filter((r) => !rights.includes(r)).join(''));
  else next = normalizeRights(rights);
  if (next === null) {
    if (index >= 0) result.splice(index, 1);
  } else if (index >= 0) result[index] = { pattern: result[index]!.pattern, rights: next };
  else result.push({ pattern, rights: next });
  return result;
}
