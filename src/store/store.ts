import type { XimssValue } from '../xml/objects.js';
import type { DatasetStore } from './datasets.js';
import type { QueueStore } from './queue.js';
import type { RuleStore } from './rules.js';

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
  readonly mail: MailStore;
  readonly queue: QueueStore;
  readonly rules: RuleStore;
  readonly datasets: DatasetStore;
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
  /** The account that has `name` as an alias in `domain`. */
  getByAlias(domain: string, name: string): Promise<AccountRecord | undefined>;
  aliases(id: number): Promise<string[]>;
  /** Replaces an account's aliases; throws AlreadyExistsError when one is another account's alias. */
  setAliases(id: number, names: readonly string[]): Promise<void>;
  /** Keeps a password-reset token (its hash) for an account until `expires` (ms). */
  addPasswordReset(tokenHash: string, accountId: number, expires: number): Promise<void>;
  /** The account of an unexpired token, without using it up. */
  findPasswordReset(tokenHash: string, now: number): Promise<number | undefined>;
  /** Uses a token up (with the account's other tokens, and expired ones): its account, or undefined when not valid. */
  takePasswordReset(tokenHash: string, now: number): Promise<number | undefined>;
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

// ---------------------------------------------------------------------------------------
// Mail

export interface AclEntryRecord {
  pattern: string;
  rights: string;
}

export interface MailboxRecord {
  id: number;
  accountId: number;
  /** Full name, `/`-separated; `INBOX` always spelled so. */
  name: string;
  mailboxClass: string;
  /** A folder that holds only other mailboxes, never messages. */
  pureFolder: boolean;
  uidValidity: number;
  uidNext: number;
  /** Bumped by every append, flag change and removal. */
  highestModseq: number;
  /** Changes at or below this modseq may have been forgotten by the removal journal. */
  journalHorizon: number;
  acl: AclEntryRecord[];
}

/** Counts for mailboxList, computed by the store. */
export interface MailboxStats {
  messages: number;
  unseen: number;
  media: number;
  unseenMedia: number;
  size: number;
  /** Internal date of the oldest message, ms; null when empty. */
  oldest: number | null;
}

/**
 * What views need of a message without reading it: metadata plus the few header fields
 * lists show and sort by, cached at append time.
 */
export interface MessageMeta {
  uid: number;
  origUid: number;
  modseq: number;
  flags: number;
  keywords: readonly string[];
  /** ms since the epoch. */
  internalDate: number;
  size: number;
  /** The Date header, ms; null when absent or unparseable. */
  date: number | null;
  /** Seconds east of GMT of the Date header's zone. */
  dateShift: number;
  /** Unfolded raw header values (RFC 2047 still encoded), '' when absent. */
  from: string;
  to: string;
  cc: string;
  subject: string;
  /** X-Priority as 1..5, 0 when absent. */
  priority: number;
  /** Message attributes (messageAttrWrite), null when none. */
  attrs: { [key: string]: XimssValue } | null;
}

export interface NewMessage {
  raw: Buffer;
  flags: number;
  keywords: readonly string[];
  internalDate: number;
  /** The header block as stored for views (binary string). */
  header: string;
  envelope: Pick<MessageMeta, 'date' | 'dateShift' | 'from' | 'to' | 'cc' | 'subject' | 'priority'>;
  /** Keep this ORIGUID (replace with copyOrigUID/origUID); default: the new UID. */
  origUid?: number;
  attrs?: { [key: string]: XimssValue } | null;
}

/** Replace an existing message atomically with the appended one. */
export interface ReplaceSpec {
  /** A UID, or (byOrigUid) an ORIGUID. */
  uid: number;
  byOrigUid: boolean;
  /** Fail when the message to replace does not exist. */
  mustExist: boolean;
  /** The new message inherits the replaced one's ORIGUID. */
  keepOrigUid: boolean;
}

export interface AppendOptions {
  replace?: ReplaceSpec;
  /**
   * Makes the append idempotent: the key is recorded in the same transaction, and an append
   * with a key already recorded stores nothing (`messages` is empty). A delivery retried
   * after a crash (the queue's) uses it so that no mailbox gets a message twice.
   */
  deliveryKey?: string;
}

export interface AppendResult {
  messages: MessageMeta[];
  modseq: number;
  /** The replaced message's UID, when one was removed. */
  replaced: number | null;
  uidNext: number;
}

export interface FlagUpdate {
  uid: number;
  flags: number;
  keywords: readonly string[];
}

/** One page of a keyset read (MailStore.listMessages). */
export interface MessagePage {
  /** Messages with UIDs above this one (0: from the start). */
  afterUid: number;
  /** At most this many. */
  limit: number;
}

export interface ChangeSet {
  /** The mailbox's modseq as read, with the changes, in one snapshot. */
  modseq: number;
  /** The mailbox's next UID in the same snapshot. */
  uidNext: number;
  /** Messages changed or added after the given modseq. */
  changed: MessageMeta[];
  /** UIDs (and ORIGUIDs) removed after the given modseq, with the modseq of the removal. */
  removed: { uid: number; origUid: number; modseq: number }[];
  /** False when the removal journal no longer reaches back that far. */
  complete: boolean;
}

export interface CopyResult {
  /** New UIDs in the target, in the order of the source UIDs that still existed. */
  copied: { from: number; to: MessageMeta }[];
  modseq: number;
  /** The source mailbox's modseq after a move (its messages' removal), else unchanged. */
  sourceModseq: number;
  uidNext: number;
}

/** Uploaded files and other per-account small records also live here. */
export interface MailStore {
  listMailboxes(accountId: number): Promise<MailboxRecord[]>;
  getMailbox(accountId: number, name: string): Promise<MailboxRecord | undefined>;
  getMailboxById(id: number): Promise<MailboxRecord | undefined>;
  /** Throws AlreadyExistsError. */
  createMailbox(accountId: number, name: string, mailboxClass: string, pureFolder: boolean): Promise<MailboxRecord>;
  /** Renames several mailboxes in one transaction (a mailbox and its children). */
  renameMailboxes(accountId: number, renames: readonly { from: string; to: string }[]): Promise<void>;
  /** Removes mailboxes with all their messages. */
  removeMailboxes(ids: readonly number[]): Promise<void>;
  setMailboxAcl(id: number, acl: readonly AclEntryRecord[]): Promise<void>;
  setMailboxClass(id: number, mailboxClass: string, pureFolder: boolean): Promise<void>;
  mailboxStats(accountId: number): Promise<Map<number, MailboxStats>>;
  /** Total size of the account's messages (quota). */
  accountUsage(accountId: number): Promise<number>;

  /**
   * A mailbox's messages in UID order: all of them, or with `page` one page of them, read
   * by keyset (the messages with UIDs above `afterUid`, at most `limit`; the next page
   * starts after the last UID returned, and a page shorter than `limit` is the last). Each
   * page is read on its own, not as one snapshot with the others: a reader that needs one
   * (MailService loading a mailbox's index) notes the mailbox's modseq before the first page
   * and catches up with `changesSince` after the last. Every engine implements it by an
   * ordered index on (mailbox, uid), never an OFFSET: the embedded SQLite engine, and the
   * PostgreSQL engine that comes next (`uid > $2 ORDER BY uid LIMIT $3`), so that reading a
   * page costs the same at the end of a 100,000-message mailbox as at its start.
   */
  listMessages(mailboxId: number, page?: MessagePage): Promise<MessageMeta[]>;
  getMessage(mailboxId: number, uid: number): Promise<MessageMeta | undefined>;
  readRaw(mailboxId: number, uid: number): Promise<Buffer | undefined>;
  /** The stored header blocks (binary strings) of these messages. */
  readHeaders(mailboxId: number, uids: readonly number[]): Promise<Map<number, string>>;
  append(mailboxId: number, messages: readonly NewMessage[], options?: AppendOptions): Promise<AppendResult>;
  copy(fromMailboxId: number, uids: readonly number[], toMailboxId: number, options: { move: boolean }): Promise<CopyResult>;
  setFlags(mailboxId: number, updates: readonly FlagUpdate[]): Promise<{ modseq: number; changed: MessageMeta[] }>;
  setAttrs(mailboxId: number, uid: number, attrs: { [key: string]: XimssValue } | null): Promise<{ modseq: number; changed: MessageMeta | undefined }>;
  /** Physically removes messages. */
  expunge(mailboxId: number, uids: readonly number[]): Promise<{ modseq: number; removed: { uid: number; origUid: number }[] }>;
  changesSince(mailboxId: number, modseq: number): Promise<ChangeSet>;

  subscriptions(accountId: number): Promise<string[]>;
  setSubscribed(accountId: number, name: string, subscribed: boolean): Promise<void>;
  aliases(accountId: number): Promise<{ name: string; target: string }[]>;
  setAlias(accountId: number, name: string, target: string | null): Promise<void>;
}

/** Thrown by a store when a unique name is taken. */
export class AlreadyExistsError extends Error {}

/** Thrown by a store when a record an operation depends on does not exist. */
export class NotFoundError extends Error {}
