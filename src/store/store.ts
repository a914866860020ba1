import type { XimssValue } from '../xml/objects.js';

/**
 * The storage interface every service talks to. Asynchronous throughout, so that the
 * embedded SQLite engine (the default) and the PostgreSQL engine planned for clusters
 * implement the same contract.
 */
export interface Store {
  readonly engine: string;
  readonly domains: DomainStore;
  readonly accounts: AccountStore;
  readonly alerts: AlertStore;
  readonly meta: MetaStore;
  /**
   * Calls `listener` soon after another process (the command line, another cluster node)
   * commits a change to the store. Returns a function that stops the watch.
   */
  watchExternalChanges(listener: () => void): () => void;
  close(): Promise<void>;
}

export type Settings = { [key: string]: XimssValue };

export interface DomainRecord {
  name: string;
  settings: Settings;
  created: Date;
}

export interface LoginRecord {
  time: Date;
  address: string;
}

export interface AccountRecord {
  id: number;
  domain: string;
  name: string;
  realName: string | null;
  /** Salted one-way hash (see services/passwords.ts). */
  passwordHash: string;
  /** HMAC-MD5 precomputed inner/outer contexts, hex, for CRAM-MD5; null when not kept. */
  cramMd5Context: string | null;
  recoveryEmail: string | null;
  /** Account settings (RulesAllowed, PWDAllowed, StorageLimit, ...): explicit values only. */
  settings: Settings;
  /** Custom preferences (TimeZone, Language, ...): explicit values only. */
  prefs: Settings;
  created: Date;
  prevLogin: LoginRecord | null;
  lastFailedLogin: LoginRecord | null;
  /** Bumped whenever the password changes; lets caches and sessions notice. */
  credentialsVersion: number;
}

export interface NewAccount {
  domain: string;
  name: string;
  realName?: string | null;
  passwordHash: string;
  cramMd5Context: string | null;
  recoveryEmail?: string | null;
  settings?: Settings;
}

export interface DomainStore {
  create(name: string, settings?: Settings): Promise<DomainRecord>;
  get(name: string): Promise<DomainRecord | undefined>;
  list(): Promise<DomainRecord[]>;
  updateSettings(name: string, settings: Settings): Promise<void>;
  /** Removes a domain that has no accounts; false when it does not exist. */
  remove(name: string): Promise<boolean>;
}

export interface AccountStore {
  create(account: NewAccount): Promise<AccountRecord>;
  get(domain: string, name: string): Promise<AccountRecord | undefined>;
  getById(id: number): Promise<AccountRecord | undefined>;
  list(domain?: string): Promise<AccountRecord[]>;
  count(domain: string): Promise<number>;
  remove(id: number): Promise<boolean>;
  setPassword(id: number, passwordHash: string, cramMd5Context: string | null): Promise<void>;
  setRecoveryEmail(id: number, email: string | null): Promise<void>;
  setRealName(id: number, realName: string | null): Promise<void>;
  setSettings(id: number, settings: Settings): Promise<void>;
  setPrefs(id: number, prefs: Settings): Promise<void>;
  recordLogin(id: number, login: LoginRecord): Promise<void>;
  recordFailedLogin(id: number, login: LoginRecord): Promise<void>;
}

export interface AlertRecord {
  id: number;
  accountId: number;
  posted: Date;
  text: string;
}

export interface AlertStore {
  post(accountId: number, text: string, posted: Date): Promise<AlertRecord>;
  /** Alerts not yet shown to the account, oldest first. */
  pending(accountId: number): Promise<AlertRecord[]>;
  /** Account ids that have pending alerts. */
  accountsWithPending(): Promise<number[]>;
  confirm(id: number): Promise<void>;
}

/** Small server-wide values (the server's secret, the store's identity). */
export interface MetaStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
}

/** Thrown by a store when a unique name is taken. */
export class AlreadyExistsError extends Error {}
