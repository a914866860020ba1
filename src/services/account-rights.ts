/**
 * Account Access Rights (spec section "Account Management": accountRightsGet,
 * accountACLList, accountACLUpdate): what other accounts may do with an account's data.
 *
 * The letters (documented in the README, "Account rights"):
 *   r  read the account's data reached by `~account/` names (its datasets; File Storage)
 *   w  change that data (create, set, delete, remove)
 *   s  send as the account: use its addresses in From (verifyIdentity)
 *   a  administer: list and change the account's ACL, change its directory record
 *
 * Effective rights of an actor over an account: the owner holds every letter; so does the
 * postmaster of the account's domain (its Domain Administrator). Anyone else holds what
 * the account's ACL grants to its name (`name` in the account's domain, or `name@domain`),
 * to `anyone` or to `anyone@domain`, minus what entries with a `-` prefix revoke — the rule
 * of mailbox ACLs (src/services/mail/acl.ts), whose pattern checks this reuses.
 *
 * The ACL is changed by deltas that the store applies inside one transaction, never from a
 * copy read earlier; every change is logged (`account.acl_changed`) and published
 * (`accountChanged`), and every check reads the ACL as stored now, so every node agrees.
 */
import type { EventBus } from '../bus/bus.js';
import { silentLogger, type Logger } from '../log.js';
import {
  AccountAclLimitError,
  NotFoundError,
  type AccountAclChange,
  type AccountRecord,
  type AclEntryRecord,
  type Store,
} from '../store/store.js';
import { fullName, type AccountService } from './accounts.js';
import { ServiceError } from './errors.js';
import { checkAclPattern, effectiveRights } from './mail/acl.js';
import { parseMailAddress } from './mime/address.js';

/** Every Account Access Right letter, in the order they are shown. */
export const ACCOUNT_RIGHTS = 'rwsa';

export const ACCOUNT_RIGHT_NAMES: Readonly<Record<string, string>> = {
  r: 'read the account data (datasets, File Storage) through ~account names',
  w: 'change the account data (datasets, File Storage)',
  s: "send as the account (its addresses in From: verifyIdentity)",
  a: 'administer: read and change the account ACL and its directory record',
};

/** Entries an account's ACL may hold. */
export const MAX_ACCOUNT_ACL_ENTRIES = 100;
/** aclElem elements one accountACLUpdate may carry. */
export const MAX_ACL_CHANGES = 100;

export const ACCESS_DENIED = 'access denied';
export const UNKNOWN_ACCOUNT = 'unknown account';

/** Keeps only account-right letters, each once, in ACCOUNT_RIGHTS order; refuses other letters. */
export function checkAccountRights(rights: string): string {
  const bad = [...rights].filter((letter) => !ACCOUNT_RIGHTS.includes(letter) && !/\s/.test(letter));
  if (bad.length > 0) {
    const shown = [...new Set(bad)].join('').slice(0, 20);
    throw new ServiceError(`unknown account access right(s) ${JSON.stringify(shown)} (known: ${ACCOUNT_RIGHTS})`);
  }
  return [...ACCOUNT_RIGHTS].filter((letter) => rights.includes(letter)).join('');
}

/** An ACL entry's letters in ACCOUNT_RIGHTS order. */
function ordered(rights: string): string {
  return [...ACCOUNT_RIGHTS].filter((letter) => rights.includes(letter)).join('');
}

/** One aclElem as a client sent it. */
export interface AclElemRequest {
  pattern: string;
  rights: string;
  /** add, sub, clear; anything else (or none) replaces. */
  mode: string | undefined;
}

export class AccountRightsService {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly bus: EventBus | undefined,
    private readonly log: Logger = silentLogger,
  ) {}

  /** The account a `userName` attribute names (an address, or a name in the actor's domain); the actor's own when absent. */
  async target(actor: AccountRecord, userName: string | undefined): Promise<AccountRecord> {
    if (userName === undefined || userName.trim() === '') return actor;
    if (userName.length > 400 || /[\u0000-\u001f\u007f]/.test(userName)) throw new ServiceError(UNKNOWN_ACCOUNT);
    const found = await this.accounts.find(userName.trim(), actor.domain);
    if (!found) throw new ServiceError(UNKNOWN_ACCOUNT);
    return found;
  }

  /** Whether `actor` administers `target`'s domain (its postmaster). */
  private isDomainAdministrator(actor: AccountRecord, target: AccountRecord): boolean {
    return actor.domain === target.domain && actor.name === 'postmaster';
  }

  /**
   * The effective Account Access Rights of `actor` over `target` (letters of
   * ACCOUNT_RIGHTS), read from the ACL as stored now.
   */
  async rights(actor: AccountRecord, target: AccountRecord): Promise<string> {
    if (actor.id === target.id || this.isDomainAdministrator(actor, target)) return ACCOUNT_RIGHTS;
    const acl = await this.store.accountAcl.list(target.id);
    return ordered(effectiveRights(acl, actor.name, actor.domain, target.domain));
  }

  /**
   * Whether `actor` holds `right` over `target`. With `domainAdminRight` (a DomainAdminRights
   * name such as CanAccessWebSites), holding that Domain Administrator right grants it too.
   */
  async has(actor: AccountRecord, target: AccountRecord, right: string, domainAdminRight?: string): Promise<boolean> {
    if ((await this.rights(actor, target)).includes(right)) return true;
    return domainAdminRight !== undefined && (await this.accounts.hasDomainAdminRight(actor, target, domainAdminRight));
  }

  /** Throws "access denied" unless `actor` holds `right` over `target`. */
  async require(actor: AccountRecord, target: AccountRecord, right: string, domainAdminRight?: string): Promise<void> {
    if (!(await this.has(actor, target, right, domainAdminRight))) throw new ServiceError(ACCESS_DENIED);
  }

  /** accountACLList: the ACL of `target`; only for an actor holding `a` over it. */
  async list(actor: AccountRecord, target: AccountRecord): Promise<AclEntryRecord[]> {
    await this.require(actor, target, 'a');
    return (await this.store.accountAcl.list(target.id)).map((e) => ({ pattern: e.pattern, rights: ordered(e.rights) }));
  }

  /**
   * accountACLUpdate: applies aclElem changes (mode add, sub, clear, or replace) to the ACL
   * of `target`, as one store transaction; only for an actor holding `a` over it.
   */
  async update(actor: AccountRecord, target: AccountRecord, elems: readonly AclElemRequest[]): Promise<AclEntryRecord[]> {
    if (elems.length === 0) throw new ServiceError('no aclElem elements');
    if (elems.length > MAX_ACL_CHANGES) throw new ServiceError(`too many aclElem elements (at most ${MAX_ACL_CHANGES})`);
    const changes: AccountAclChange[] = elems.map((elem) => {
      const pattern = checkAclPattern(elem.pattern).toLowerCase();
      const rights = checkAccountRights(elem.rights);
      const mode = elem.mode === 'add' || elem.mode === 'sub' || elem.mode === 'clear' ? elem.mode : 'set';
      if (elem.mode !== undefined && elem.mode !== '' && elem.mode !== mode) throw new ServiceError(`unknown aclElem mode ${JSON.stringify(elem.mode.slice(0, 40))} (add, sub or clear)`);
      return { pattern, mode, rights };
    });
    await this.require(actor, target, 'a');
    let result: AclEntryRecord[];
    try {
      result = await this.store.accountAcl.update(target.id, changes, MAX_ACCOUNT_ACL_ENTRIES);
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError(UNKNOWN_ACCOUNT);
      if (err instanceof AccountAclLimitError) throw new ServiceError(err.message);
      throw err;
    }
    this.log.info(
      { event: 'account.acl_changed', account: fullName(target), by: fullName(actor), patterns: changes.map((c) => c.pattern) },
      `ACL of ${fullName(target)} changed`,
    );
    this.bus?.publish('accountChanged', { accountId: target.id });
    return result.map((e) => ({ pattern: e.pattern, rights: ordered(e.rights) }));
  }
}

export const IDENTITY_REFUSED = 'this account may not use this address in From';

/** verifyIdentity's real names: one line, bounded. */
const MAX_REAL_NAME = 256;

/**
 * verifyIdentity: may `actor` put `address` (with `realName`) in the From of what it sends?
 * Yes for the account's own address (`name@domain`), its aliases in its domain, and the
 * addresses (and aliases) of accounts that granted it the `s` right. Throws a ServiceError
 * saying why not.
 */
export async function verifyIdentity(
  rights: AccountRightsService,
  accounts: AccountService,
  actor: AccountRecord,
  address: string,
  realName: string | undefined,
): Promise<void> {
  if (realName !== undefined && (realName.length > MAX_REAL_NAME || /[\u0000-\u001f\u007f]/.test(realName))) {
    throw new ServiceError(`invalid real name (one line of at most ${MAX_REAL_NAME} characters)`);
  }
  const parsed = address.length <= 1000 ? parseMailAddress(address) : undefined;
  if (!parsed) throw new ServiceError(`invalid E-mail address: ${JSON.stringify(address.trim().slice(0, 100))}`);
  const at = parsed.address.lastIndexOf('@');
  if (at < 0) throw new ServiceError(`invalid E-mail address: ${JSON.stringify(parsed.address.slice(0, 100))}`);
  // Only local accounts (names and aliases) are identities an account may hold.
  const owner = await accounts.find(parsed.address);
  if (!owner) throw new ServiceError(IDENTITY_REFUSED);
  if (owner.id === actor.id) return;
  if (!(await rights.has(actor, owner, 's'))) throw new ServiceError(IDENTITY_REFUSED);
}
