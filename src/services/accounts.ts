import { AlreadyExistsError, type AccountRecord, type DomainRecord, type Settings, type SettingsChanges, type Store } from '../store/store.js';
import type { XimssValue } from '../xml/objects.js';
import type { EventBus } from '../bus/bus.js';
import { silentLogger, type Logger } from '../log.js';
import { DKIM_SETTING, dkimSetting, type DkimKey } from './dkim-keys.js';
import { checkPrefsChanges, checkPrefsSize, DEFAULT_PREFS, type PrefsChanges } from './preferences.js';
export { DEFAULT_PREFS } from './preferences.js';
import { ServiceError } from './errors.js';
import { parseMailAddress } from './mime/address.js';
import { cramMd5Context, digestCredentials, hashPassword, scramCredentials } from './passwords.js';

/** Account settings every account has unless its domain or the account says otherwise. */
export const DEFAULT_ACCOUNT_SETTINGS: Readonly<Settings> = {
  RulesAllowed: 'Any',
  SignalRulesAllowed: 'No',
  RPOPAllowed: 'No',
  RSIPAllowed: 'No',
  PWDAllowed: 'Yes',
  RayoAllowed: 'No',
  MaxAccountSize: 'unlimited',
  MaxWebSize: '1G',
  MaxWebFiles: '100000',
};

/** Preferences every account has unless its domain or the account says otherwise. */

const ACCOUNT_NAME = /^[a-z0-9](?:[a-z0-9._+-]{0,127})$/;
const DOMAIN_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*$/;

export interface QualifiedName {
  name: string;
  domain: string;
}

/**
 * Domains and accounts: names, passwords, settings and preferences with their defaults.
 * Protocol-neutral; the XIMSS login, the command line and (later) SMTP and XMPP use it.
 *
 * Every change is logged (`domain.created`, `domain.removed`, `domain.settings_changed`,
 * `account.created`, `account.removed`, `account.password_changed`,
 * `account.settings_changed`, `account.aliases_changed`: names and setting keys, never a
 * password or a setting's value) and published on the bus after it is committed, so that
 * every process sharing the store sees it.
 */
export class AccountService {
  constructor(
    private readonly store: Store,
    private readonly bus: EventBus | undefined,
    readonly defaultDomain: string,
    private readonly log: Logger = silentLogger,
  ) {}

  static normalizeDomain(domain: string): string {
    const d = domain.trim().toLowerCase().replace(/\.$/, '');
    if (!DOMAIN_NAME.test(d)) throw new ServiceError(`invalid domain name: ${domain}`);
    return d;
  }

  static normalizeName(name: string): string {
    const n = name.trim().toLowerCase();
    if (!ACCOUNT_NAME.test(n)) throw new ServiceError(`invalid account name: ${name}`);
    return n;
  }

  /** Splits `user@domain` (or a bare `user`, in `domainHint` or the default domain). */
  parseAddress(address: string, domainHint?: string): QualifiedName {
    const at = address.lastIndexOf('@');
    const rawName = at >= 0 ? address.slice(0, at) : address;
    const rawDomain = at >= 0 ? address.slice(at + 1) : domainHint || this.defaultDomain;
    return { name: AccountService.normalizeName(rawName), domain: AccountService.normalizeDomain(rawDomain) };
  }

  async getDomain(name: string): Promise<DomainRecord | undefined> {
    return this.store.domains.get(AccountService.normalizeDomain(name));
  }

  async createDomain(name: string, settings: Settings = {}): Promise<DomainRecord> {
    const created = await this.createDomainIfMissing(name, settings);
    if (!created) throw new ServiceError(`domain ${AccountService.normalizeDomain(name)} already exists`);
    return created;
  }

  /** Creates a domain; undefined when it exists already (made meanwhile by another process, say). */
  async createDomainIfMissing(name: string, settings: Settings = {}): Promise<DomainRecord | undefined> {
    const domain = AccountService.normalizeDomain(name);
    let created: DomainRecord;
    try {
      created = await this.store.domains.create(domain, settings);
    } catch (err) {
      if (err instanceof AlreadyExistsError) return undefined;
      throw err;
    }
    this.log.info({ event: 'domain.created', domain, settings: Object.keys(settings) }, `domain ${domain} created`);
    return created;
  }

  async listDomains(): Promise<DomainRecord[]> {
    return this.store.domains.list();
  }

  /**
   * Removes a domain. Refused while it has accounts, and for the default domain, unless
   * `force`: then its accounts are removed first (their sessions end, as `remove` does).
   */
  async removeDomain(name: string, options: { force?: boolean } = {}): Promise<{ accounts: number }> {
    const domain = await this.getDomain(name);
    if (!domain) throw new ServiceError(`unknown domain ${name}`);
    const accounts = await this.store.accounts.list(domain.name);
    if (!options.force) {
      if (accounts.length > 0) {
        throw new ServiceError(`domain ${domain.name} has ${accounts.length} account(s); remove them first, or pass --force to remove them with it`);
      }
      if (domain.name === AccountService.normalizeDomain(this.defaultDomain)) {
        throw new ServiceError(`${domain.name} is the default domain; pass --force to remove it anyway`);
      }
    }
    for (const account of accounts) await this.remove(account);
    if (!(await this.store.domains.remove(domain.name))) {
      if (await this.store.domains.get(domain.name)) throw new ServiceError(`domain ${domain.name} got a new account meanwhile; nothing more was removed`);
    }
    this.log.info({ event: 'domain.removed', domain: domain.name, accounts: accounts.length }, `domain ${domain.name} removed`);
    return { accounts: accounts.length };
  }

  /**
   * Merges changes into a domain's settings, and `accountDefaults` into its accounts'
   * defaults (validated already: see settings.ts), in one store transaction; one log line
   * naming the keys (never the values); the server hears `domainChanged`.
   */
  async updateDomainSettings(name: string, changes: SettingsChanges, accountDefaults: SettingsChanges = {}): Promise<Settings> {
    const domain = await this.getDomain(name);
    if (!domain) throw new ServiceError(`unknown domain ${name}`);
    const merged = await this.store.domains.mergeSettings(domain.name, changes, { [ACCOUNT_DEFAULTS_KEY]: accountDefaults });
    const keys = [...Object.keys(changes), ...Object.keys(accountDefaults)];
    this.log.info({ event: 'domain.settings_changed', domain: domain.name, keys }, `settings of domain ${domain.name} changed`);
    this.bus?.publish('domainChanged', { domain: domain.name });
    return merged;
  }

  /** The account an address names: its own name, or (unless `aliases` is false) one of its aliases. */
  async find(address: string, domainHint?: string, options: { aliases?: boolean } = {}): Promise<AccountRecord | undefined> {
    let qualified: QualifiedName;
    try {
      qualified = this.parseAddress(address, domainHint);
    } catch {
      return undefined;
    }
    const account = await this.store.accounts.get(qualified.domain, qualified.name);
    if (account || options.aliases === false) return account;
    return this.store.accounts.getByAlias(qualified.domain, qualified.name);
  }

  async aliases(account: AccountRecord): Promise<string[]> {
    return this.store.accounts.aliases(account.id);
  }

  /**
   * Replaces the account's aliases: other names of it in its domain, for mail (SMTP recipients,
   * the queue) and logins. A name cannot be another account's name or alias.
   */
  async setAliases(account: AccountRecord, names: readonly string[]): Promise<void> {
    const normalized = [...new Set(names.map((n) => AccountService.normalizeName(n)))];
    for (const name of normalized) {
      if (name === account.name) throw new ServiceError(`${name} is the account's own name`);
      if (await this.store.accounts.get(account.domain, name)) throw new ServiceError(`${name}@${account.domain} is an account`);
    }
    try {
      await this.store.accounts.setAliases(account.id, normalized);
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ServiceError(err.message);
      throw err;
    }
    this.log.info({ event: 'account.aliases_changed', account: fullName(account), aliases: normalized }, `aliases of ${fullName(account)} changed`);
  }

  async getById(id: number): Promise<AccountRecord | undefined> {
    return this.store.accounts.getById(id);
  }

  async list(domain?: string): Promise<AccountRecord[]> {
    return this.store.accounts.list(domain === undefined ? undefined : AccountService.normalizeDomain(domain));
  }

  async create(options: {
    address: string;
    password: string;
    realName?: string;
    recoveryEmail?: string;
    createDomain?: boolean;
  }): Promise<AccountRecord> {
    const { name, domain } = this.parseAddress(options.address);
    checkPassword(options.password);
    if (!(await this.store.domains.get(domain))) {
      if (!options.createDomain) throw new UnknownDomainError(domain);
      await this.createDomainIfMissing(domain);
    }
    if (await this.store.accounts.getByAlias(domain, name)) throw new ServiceError(`${name}@${domain} is an alias of another account`);
    let created: AccountRecord;
    const [passwordHash, scram] = await Promise.all([hashPassword(options.password), scramCredentials(options.password)]);
    try {
      created = await this.store.accounts.create({
        domain,
        name,
        realName: options.realName ?? null,
        passwordHash,
        cramMd5Context: cramMd5Context(options.password),
        scramCredentials: scram,
        // SIP's Digest realm is the account's domain, its user name the account's name.
        digestCredentials: digestCredentials(name, domain, options.password),
        recoveryEmail: options.recoveryEmail ? recoveryAddress(options.recoveryEmail) : null,
      });
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ServiceError(err.message);
      throw err;
    }
    this.log.info({ event: 'account.created', account: fullName(created) }, `account ${fullName(created)} created`);
    return created;
  }

  async remove(account: AccountRecord): Promise<void> {
    await this.store.accounts.remove(account.id);
    this.log.info({ event: 'account.removed', account: fullName(account) }, `account ${fullName(account)} removed`);
    this.bus?.publish('accountRemoved', { accountId: account.id });
  }

  /** Refuses unless the account may change its own password (the PWDAllowed setting). */
  async checkPasswordChangeAllowed(account: AccountRecord): Promise<void> {
    const settings = await this.effectiveSettings(account);
    if (!settingIsYes(settings.PWDAllowed)) throw new ServiceError('password modification is not allowed for this account');
  }

  async setPassword(account: AccountRecord, password: string): Promise<void> {
    checkPassword(password);
    const [hash, scram] = await Promise.all([hashPassword(password), scramCredentials(password)]);
    const digest = digestCredentials(account.name, account.domain, password);
    await this.store.accounts.setPassword(account.id, hash, cramMd5Context(password), scram, digest);
    this.log.info({ event: 'account.password_changed', account: fullName(account) }, `password of ${fullName(account)} changed`);
    this.bus?.publish('credentialsChanged', { accountId: account.id });
  }

  async setRecoveryEmail(account: AccountRecord, email: string | null): Promise<void> {
    await this.changeAccount(account, { keys: ['RecoveryEmail'], recoveryEmail: email ? recoveryAddress(email) : null });
  }

  /**
   * Changes an account's settings, real name and recovery address together (validated
   * already: see settings.ts); one log line naming the keys, one `accountChanged`.
   */
  async changeAccount(
    account: AccountRecord,
    changes: { keys: readonly string[]; settings?: SettingsChanges; realName?: string | null; recoveryEmail?: string | null },
  ): Promise<void> {
    await this.store.accounts.mergeSettings(account.id, changes.settings ?? {}, { realName: changes.realName, recoveryEmail: changes.recoveryEmail });
    this.log.info({ event: 'account.settings_changed', account: fullName(account), keys: [...changes.keys] }, `settings of ${fullName(account)} changed`);
    this.bus?.publish('accountChanged', { accountId: account.id });
  }

  /** Effective settings: built-in defaults < the domain's account defaults < the account's own. */
  async effectiveSettings(account: AccountRecord): Promise<Settings> {
    // Read as stored now (another node, or the command line, may have changed them): these
    // decide what the account may do (RulesAllowed, PWDAllowed, MaxAccountSize).
    const [domain, current] = await Promise.all([this.store.domains.get(account.domain), this.current(account)]);
    return { ...DEFAULT_ACCOUNT_SETTINGS, ...asSettings(domain?.settings[ACCOUNT_DEFAULTS_KEY]), ...current.settings };
  }

  /**
   * Whether `actor` holds a Domain Administrator right (DomainAdminRights, e.g. CanAccessWebSites)
   * over `target`: only within its own domain; the domain's postmaster holds them all.
   */
  async hasDomainAdminRight(actor: AccountRecord, target: AccountRecord, right: string): Promise<boolean> {
    if (actor.domain !== target.domain) return false;
    if (actor.name === 'postmaster') return true;
    const granted = (await this.effectiveSettings(actor)).DomainAdminRights;
    return typeof granted === 'string' && granted.split(',').includes(right);
  }

  /** The account as stored now (as it was, when it has just been removed). */
  private async current(account: AccountRecord): Promise<AccountRecord> {
    return (await this.store.accounts.getById(account.id)) ?? account;
  }

  /** The domain's default preferences for its accounts: built-in defaults < the domain's AccountDefaultPrefs. */
  async defaultPrefs(account: AccountRecord): Promise<Settings> {
    const domain = await this.store.domains.get(account.domain);
    return { ...DEFAULT_PREFS, ...asSettings(domain?.settings[ACCOUNT_DEFAULT_PREFS_KEY]) };
  }

  /** The account's own (custom) preferences, as stored now. */
  async customPrefs(account: AccountRecord): Promise<Settings> {
    return (await this.current(account)).prefs;
  }

  /**
   * Effective preferences: built-in defaults < the domain's default preferences < the
   * account's own, read as stored now (another session, node or the command line may have
   * changed them).
   */
  async effectivePrefs(account: AccountRecord): Promise<Settings> {
    const [defaults, custom] = await Promise.all([this.defaultPrefs(account), this.customPrefs(account)]);
    return { ...defaults, ...custom };
  }

  /** The account's Public Info, as stored now. */
  async publicInfo(account: AccountRecord): Promise<Settings> {
    return (await this.current(account)).publicInfo;
  }

  /**
   * Stores Public Info (prefsStore type="publicInfo"; null removes a value), within the limits
   * of preferences, in one store transaction; its sessions hear accountChanged.
   */
  async updatePublicInfo(account: AccountRecord, changes: PrefsChanges): Promise<void> {
    checkPrefsSize(await this.publicInfo(account), changes);
    await this.store.accounts.mergePublicInfo(account.id, changes);
    this.log.info({ event: 'account.public_info_changed', account: fullName(account), keys: Object.keys(changes) }, `Public Info of ${fullName(account)} changed`);
    this.bus?.publish('accountChanged', { accountId: account.id });
  }

  /**
   * Stores custom preferences (prefsStore; null removes a custom value): checked, merged in
   * one store transaction, and every session of the account, on every node, is told
   * (prefsModified).
   */
  async updatePrefs(account: AccountRecord, changes: PrefsChanges): Promise<void> {
    const checked = checkPrefsChanges(changes);
    checkPrefsSize(await this.customPrefs(account), checked);
    await this.store.accounts.mergePrefs(account.id, checked);
    this.log.info({ event: 'account.prefs_changed', account: fullName(account), keys: Object.keys(checked) }, `preferences of ${fullName(account)} changed`);
    this.bus?.publish('prefsChanged', { accountId: account.id });
  }

  /**
   * Changes a domain's default preferences for its accounts (its AccountDefaultPrefs), checked
   * as prefsStore checks them, merged in one store transaction (null removes a default);
   * logged as `domain.prefs_changed`; the domain's sessions on every node re-read their
   * preferences and are told (prefsModified), through a prefsChanged per account.
   */
  async updateDomainDefaultPrefs(name: string, changes: PrefsChanges): Promise<void> {
    const domain = await this.getDomain(name);
    if (!domain) throw new ServiceError(`unknown domain ${name}`);
    const checked = checkPrefsChanges(changes);
    checkPrefsSize(asSettings(domain.settings[ACCOUNT_DEFAULT_PREFS_KEY]), checked);
    await this.store.domains.mergeSettings(domain.name, {}, { [ACCOUNT_DEFAULT_PREFS_KEY]: checked });
    this.log.info({ event: 'domain.prefs_changed', domain: domain.name, keys: Object.keys(checked) }, `default preferences of domain ${domain.name} changed`);
    this.bus?.publish('domainChanged', { domain: domain.name });
    for (const account of await this.store.accounts.list(domain.name)) this.bus?.publish('prefsChanged', { accountId: account.id });
  }

  /** The domain's own default preferences for its accounts (AccountDefaultPrefs), as stored now. */
  async domainDefaultPrefs(name: string): Promise<Settings> {
    const domain = await this.getDomain(name);
    if (!domain) throw new ServiceError(`unknown domain ${name}`);
    return asSettings(domain.settings[ACCOUNT_DEFAULT_PREFS_KEY]);
  }

  async setSettings(account: AccountRecord, changes: SettingsChanges): Promise<void> {
    await this.changeAccount(account, { keys: Object.keys(changes), settings: changes });
  }

  /**
   * Where each of an account's effective settings comes from: the account's own value, its
   * domain's default for its accounts, or the built-in default (undefined: none anywhere).
   */
  async settingSources(account: AccountRecord): Promise<Map<string, { value: XimssValue | undefined; from: 'account' | 'domain' | 'default' | undefined }>> {
    const [domain, current] = await Promise.all([this.store.domains.get(account.domain), this.store.accounts.getById(account.id)]);
    const own = (current ?? account).settings;
    const domainDefaults = asSettings(domain?.settings[ACCOUNT_DEFAULTS_KEY]);
    const keys = new Set([...Object.keys(DEFAULT_ACCOUNT_SETTINGS), ...Object.keys(domainDefaults), ...Object.keys(own)]);
    const out = new Map<string, { value: XimssValue | undefined; from: 'account' | 'domain' | 'default' | undefined }>();
    for (const key of keys) {
      if (key in own) out.set(key, { value: own[key], from: 'account' });
      else if (key in domainDefaults) out.set(key, { value: domainDefaults[key], from: 'domain' });
      else out.set(key, { value: DEFAULT_ACCOUNT_SETTINGS[key], from: 'default' });
    }
    return out;
  }

  /**
   * Sets (or, with null, removes) a domain's DKIM signing key, in one store call; the server
   * hears `domainChanged`. Logged as `domain.dkim_changed` with the selector and algorithm
   * (the new key's; `removed` when there is none now): never the key itself.
   */
  async setDkimKey(name: string, key: DkimKey | null): Promise<void> {
    const domain = await this.getDomain(name);
    if (!domain) throw new ServiceError(`unknown domain ${name}`);
    await this.store.domains.mergeSettings(domain.name, { [DKIM_SETTING]: key ? dkimSetting(key) : null });
    const fields = key ? { selector: key.selector, algorithm: key.algorithm } : { removed: true };
    this.log.info({ event: 'domain.dkim_changed', domain: domain.name, ...fields }, `DKIM key of domain ${domain.name} ${key ? 'set' : 'removed'}`);
    this.bus?.publish('domainChanged', { domain: domain.name });
  }
}

/** The domain settings key holding its accounts' default settings. */
export const ACCOUNT_DEFAULTS_KEY = 'AccountDefaults';
/** Where a domain keeps its accounts' default preferences (under the domain settings). */
export const ACCOUNT_DEFAULT_PREFS_KEY = 'AccountDefaultPrefs';

/** An account was to be made in a domain that does not exist (and was not to be created). */
export class UnknownDomainError extends ServiceError {
  constructor(readonly domain: string) {
    super(`unknown domain ${domain}`);
  }
}

/** A size setting (`unlimited`, `100M`, `2G`, `1024`) in bytes; undefined when unlimited. */
export function parseSizeSetting(value: XimssValue | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+)\s*([KMGT]?)B?$/i.exec(value.trim());
  if (!m) return undefined;
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Number(m[1]) * scale;
}

function asSettings(value: XimssValue | undefined): Settings {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) ? value : {};
}

/** A recovery address as kept: one valid address (the outbound queue must be able to send to it). */
function recoveryAddress(email: string): string {
  const parsed = parseMailAddress(email);
  if (!parsed) throw new ServiceError('invalid E-mail address');
  return parsed.address;
}

export function checkPassword(password: string): void {
  if (password.length === 0) throw new ServiceError('the password must not be empty');
  if (password.length > 1024) throw new ServiceError('the password is too long');
}

export function fullName(account: { name: string; domain: string }): string {
  return `${account.name}@${account.domain}`;
}

export function settingIsYes(value: XimssValue | undefined): boolean {
  return typeof value === 'string' && /^(yes|true|1|on)$/i.test(value);
}
