import { AlreadyExistsError, type AccountRecord, type DomainRecord, type Settings, type Store } from '../store/store.js';
import type { XimssValue } from '../xml/objects.js';
import type { EventBus } from '../bus/bus.js';
import { ServiceError } from './errors.js';
import { parseMailAddress } from './mime/address.js';
import { cramMd5Context, hashPassword } from './passwords.js';

/** Account settings every account has unless its domain or the account says otherwise. */
export const DEFAULT_ACCOUNT_SETTINGS: Readonly<Settings> = {
  RulesAllowed: 'Any',
  SignalRulesAllowed: 'No',
  RPOPAllowed: 'No',
  PWDAllowed: 'Yes',
  MaxAccountSize: 'unlimited',
};

/** Preferences every account has unless its domain or the account says otherwise. */
export const DEFAULT_PREFS: Readonly<Settings> = {
  TimeZone: 'HostOS',
  Language: 'English',
  DeleteMode: 'Move To Trash',
  TrashBox: 'Trash',
  SentBox: 'Sent',
  DraftsBox: 'Drafts',
  Charset: 'utf-8',
};

const ACCOUNT_NAME = /^[a-z0-9](?:[a-z0-9._+-]{0,127})$/;
const DOMAIN_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*$/;

export interface QualifiedName {
  name: string;
  domain: string;
}

/**
 * Domains and accounts: names, passwords, settings and preferences with their defaults.
 * Protocol-neutral; the XIMSS login, the command line and (later) SMTP and XMPP use it.
 */
export class AccountService {
  constructor(
    private readonly store: Store,
    private readonly bus: EventBus | undefined,
    readonly defaultDomain: string,
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
    const domain = AccountService.normalizeDomain(name);
    try {
      return await this.store.domains.create(domain, settings);
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ServiceError(err.message);
      throw err;
    }
  }

  async listDomains(): Promise<DomainRecord[]> {
    return this.store.domains.list();
  }

  async updateDomainSettings(name: string, changes: Settings): Promise<void> {
    const domain = await this.getDomain(name);
    if (!domain) throw new ServiceError(`unknown domain ${name}`);
    await this.store.domains.mergeSettings(domain.name, changes);
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
    if (!(await this.store.domains.get(domain))) {
      if (!options.createDomain) throw new ServiceError(`unknown domain ${domain}`);
      await this.createDomain(domain).catch((err: unknown) => {
        if (!(err instanceof ServiceError)) throw err; // created meanwhile by someone else
      });
    }
    checkPassword(options.password);
    if (await this.store.accounts.getByAlias(domain, name)) throw new ServiceError(`${name}@${domain} is an alias of another account`);
    try {
      return await this.store.accounts.create({
        domain,
        name,
        realName: options.realName ?? null,
        passwordHash: await hashPassword(options.password),
        cramMd5Context: cramMd5Context(options.password),
        recoveryEmail: options.recoveryEmail ? recoveryAddress(options.recoveryEmail) : null,
      });
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ServiceError(err.message);
      throw err;
    }
  }

  async remove(account: AccountRecord): Promise<void> {
    await this.store.accounts.remove(account.id);
    this.bus?.publish('accountRemoved', { accountId: account.id });
  }

  /** Refuses unless the account may change its own password (the PWDAllowed setting). */
  async checkPasswordChangeAllowed(account: AccountRecord): Promise<void> {
    const settings = await this.effectiveSettings(account);
    if (!settingIsYes(settings.PWDAllowed)) throw new ServiceError('password modification is not allowed for this account');
  }

  async setPassword(account: AccountRecord, password: string): Promise<void> {
    checkPassword(password);
    await this.store.accounts.setPassword(account.id, await hashPassword(password), cramMd5Context(password));
    this.bus?.publish('credentialsChanged', { accountId: account.id });
  }

  async setRecoveryEmail(account: AccountRecord, email: string | null): Promise<void> {
    await this.store.accounts.setRecoveryEmail(account.id, email ? recoveryAddress(email) : null);
  }

  /** Effective settings: built-in defaults < the domain's account defaults < the account's own. */
  async effectiveSettings(account: AccountRecord): Promise<Settings> {
    // Read as stored now (another node, or the command line, may have changed them): these
    // decide what the account may do (RulesAllowed, PWDAllowed, MaxAccountSize).
    const [domain, current] = await Promise.all([this.store.domains.get(account.domain), this.store.accounts.getById(account.id)]);
    return { ...DEFAULT_ACCOUNT_SETTINGS, ...asSettings(domain?.settings.AccountDefaults), ...(current ?? account).settings };
  }

  /** Effective preferences: built-in defaults < the domain's default preferences < the account's own. */
  async effectivePrefs(account: AccountRecord): Promise<Settings> {
    const domain = await this.store.domains.get(account.domain);
    return { ...DEFAULT_PREFS, ...asSettings(domain?.settings.AccountDefaultPrefs), ...account.prefs };
  }

  async updatePrefs(account: AccountRecord, changes: Settings): Promise<void> {
    await this.store.accounts.mergePrefs(account.id, changes);
    this.bus?.publish('accountChanged', { accountId: account.id });
  }

  async setSettings(account: AccountRecord, changes: Settings): Promise<void> {
    await this.store.accounts.mergeSettings(account.id, changes);
    this.bus?.publish('accountChanged', { accountId: account.id });
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
