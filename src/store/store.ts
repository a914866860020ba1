import type { XimssValue } from '../xml/objects.js';
import type { DatasetStore } from './datasets.js';
import type { CalendarIndexStore } from './calendar-index.js';
import type { ArchiveStore, BlockingStore, MucStore, OfflineStore, ResourceStore, RosterStore } from './im.js';
import type { DavNameStore } from './dav-names.js';
import type { AppPasswordStore, TwoFactorStore } from './login-security.js';
import type { MeetingStore } from './meetings.js';
import type { BillingStore } from './billing.js';
import type { SmimeStore } from './smime.js';
import type { FileGuard, FileLimits, FileRecord, LockRecord, StoredAttribute, StoredAttributeChange, StoreWriteMode } from './files.js';
import type { QueueStore } from './queue.js';
import type { RegistrationStore } from './registrations.js';
import type { RemoteSipStore } from './remote-sip.js';
import type { RuleStore } from './rules.js';
import type { RemoteMailStore } from './remote-mail.js';

/**
 * The storage interface every service talks to. Asynchronous throughout, so that the
 * embedded SQLite engine (the default) and the PostgreSQL engine (clusters) implement the
 * same contract, which test/store/contract.ts checks on both.
 *
 * Any number of processes may share one store (cluster nodes on PostgreSQL; the command
 * line beside a server on SQLite). So every method is one transaction, and a change that
 * depends on what is stored (flags, quotas, claims, limits) is decided inside it: no caller
 * computes a new state from what it read earlier and writes it back.
 */
export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  readonly domains: DomainStore;
  readonly accounts: AccountStore;
  readonly alerts: AlertStore;
  readonly meta: MetaStore;
  readonly mail: MailStore;
  readonly queue: QueueStore;
  readonly rules: RuleStore;
  readonly datasets: DatasetStore;
  readonly files: FileStore;
  readonly accountAcl: AccountAclStore;
  readonly davNames: DavNameStore;
  /** Two-factor authentication and application passwords (src/store/login-security.ts). */
  readonly twoFactor: TwoFactorStore;
  readonly appPasswords: AppPasswordStore;
  readonly calendarIndex: CalendarIndexStore;
  /** Real-time messaging (src/store/im.ts). */
  readonly roster: RosterStore;
  readonly offline: OfflineStore;
  readonly archive: ArchiveStore;
  readonly blocking: BlockingStore;
  readonly resources: ResourceStore;
  readonly muc: MucStore;
  /** SIP registrations (src/store/registrations.ts). */
  readonly registrations: RegistrationStore;
  /** Meetings of the real-time applications (src/store/meetings.ts). */
  readonly meetings: MeetingStore;
  /** The accounts' registrations with other SIP servers (src/store/remote-sip.ts). */
  readonly remoteSip: RemoteSipStore;
  /** Account balances and their ledger (src/store/billing.ts). */
  readonly billing: BillingStore;
  /** S/MIME keys, certificates and collected peer certificates (src/store/smime.ts). */
  readonly smime: SmimeStore;
  /** Remote POP and IMAP accounts and their fetch state (src/store/remote-mail.ts). */
  readonly remoteMail: RemoteMailStore;
  readonly cluster: ClusterStore;
  readonly shared: SharedStateStore;
  /** Carries change events between the processes sharing the store (see src/bus/). */
  readonly relay: ChangeRelay;
  close(): Promise<void>;
}

/**
 * The File Storage of the accounts (src/store/files.ts describes the layout and holds the
 * decisions both engines make). Paths are normalized by the caller ('' is the root, which
 * always exists). Every change is one transaction that checks its FileGuard (locks,
 * ETags) and the limits inside it and throws FileStoreError (nothing changed) when refused.
 */
export interface FileStore {
  stat(accountId: number, path: string): Promise<FileRecord | undefined>;
  /** The entries directly in a directory, by path; FileStoreError not-found / not-a-directory. */
  list(accountId: number, directory: string): Promise<FileRecord[]>;
  /** Every directory, root excluded, sorted. */
  directories(accountId: number): Promise<string[]>;
  /** Files (not directories) and bytes of a tree ('' for everything). */
  usage(accountId: number, directory: string): Promise<{ files: number; size: number }>;
  /** What the limits count: every entry (files and directories) and every byte. */
  totals(accountId: number): Promise<{ entries: number; size: number }>;
  /**
   * Bytes [start, end) of a file (clipped to its size) with its record, read in one
   * transaction, as the stored chunks' slices in order (not copied into one buffer: a stream
   * sends them as they are); with `etag`, FileStoreError precondition-failed when the file is
   * another version now (a stream reading a file piece by piece). beyond-eof when start > size.
   */
  read(accountId: number, path: string, start: number, end: number, etag?: string): Promise<{ record: FileRecord; pieces: Buffer[] }>;
  /** A new staging blob of the account (invisible until a commit swaps it in). */
  stage(accountId: number, now: number): Promise<number>;
  /** Appends one chunk (at most CHUNK bytes) at `offset` of a staging blob. */
  stageChunk(blob: number, offset: number, data: Buffer): Promise<void>;
  /** Deletes a staging blob (a failed write). */
  discard(blob: number): Promise<void>;
  /** Deletes staging blobs created before `before` (left by a crash). */
  pruneStaging(before: number): Promise<number>;
  /**
   * Makes a staging blob of `size` bytes the content of `path` as `mode` says, in one
   * transaction (limits, locks and preconditions checked inside it); the blob is consumed.
   */
  commitWrite(accountId: number, path: string, blob: number, size: number, mode: StoreWriteMode, guard: FileGuard, limits: FileLimits): Promise<{ record: FileRecord; created: boolean }>;
  createDirectory(accountId: number, path: string, guard: FileGuard, limits: FileLimits): Promise<FileRecord>;
  remove(accountId: number, path: string, options: { recursive: boolean; kind?: 'file' | 'directory' }, guard: FileGuard): Promise<void>;
  /** Moves a file or a tree in one transaction; the source's locks are dropped. */
  move(accountId: number, from: string, to: string, options: { overwrite: boolean; kind?: 'file' | 'directory' }, guard: FileGuard): Promise<{ created: boolean }>;
  copy(accountId: number, from: string, to: string, options: { overwrite: boolean; depth: 0 | 'infinity' }, guard: FileGuard, limits: FileLimits): Promise<{ created: boolean }>;
  attributes(accountId: number, path: string): Promise<StoredAttribute[] | undefined>;
  updateAttributes(accountId: number, path: string, changes: readonly StoredAttributeChange[], guard: FileGuard): Promise<void>;
  /**
   * Takes a lock (expired ones pruned first); FileStoreError locked on a conflict, not-found
   * when the path names nothing and `create` is false (with it, an empty file is created).
   */
  lock(accountId: number, lock: LockRecord, options: { create: boolean; now: number }, limits: FileLimits): Promise<LockRecord>;
  /** Sets a lock's expiry (not-found: no such live lock on that path). */
  refreshLock(accountId: number, path: string, token: string, expires: number, now: number): Promise<LockRecord>;
  /** Removes a lock (false: no such lock on that path). */
  unlock(accountId: number, path: string, token: string): Promise<boolean>;
  /** Live locks of the account at `now` (all of them: callers filter by path). */
  locks(accountId: number, now: number): Promise<LockRecord[]>;
  subscriptions(accountId: number): Promise<string[]>;
  /**
   * Adds and removes subscriptions in one transaction; when the account would then hold more
   * than `max`, changes nothing and answers false (decided on what is stored, serialised per account).
   */
  updateSubscriptions(accountId: number, changes: readonly { name: string; add: boolean }[], max: number): Promise<boolean>;
}

/**
 * The wire between processes sharing a store: PostgreSQL LISTEN/NOTIFY between cluster
 * nodes; on SQLite, a table the command line writes and the server polls. Messages are
 * small JSON texts (at most MAX_RELAY_MESSAGE bytes), delivered at most once, in no
 * guaranteed order, only after `send` resolves; a receiver that may have missed some is
 * told so (`onResync`) and catches up from the store itself (the mail journal, records).
 */
export interface ChangeRelay {
  /** Sends to every other listening process (the sender's own listener may get it too). */
  send(message: string): Promise<void>;
  /**
   * Starts receiving. `onResync` is called when messages may have been lost (a dropped
   * connection, now back). Resolves once listening; the function returned stops it.
   */
  listen(onMessage: (message: string) => void, onResync: () => void): Promise<() => Promise<void>>;
}

/** Longest relay message (PostgreSQL's NOTIFY payload limit is 8000 bytes). */
export const MAX_RELAY_MESSAGE = 7900;

/** A server process serving the store (one per machine, or several on one). */
export interface NodeRecord {
  /** Unique among the nodes; part of every urlID the node hands out. */
  id: string;
  /** Where other nodes reach its HTTP listener to forward a session's requests (`http://host:port`). */
  httpUrl: string;
  /** ms: the node counts as dead after this unless it renews it. */
  aliveUntil: number;
}

/** A XIMSS session, as the cluster counts it. */
export interface SessionRecord {
  urlID: string;
  accountId: number;
  node: string;
  /** ms since the epoch. */
  created: number;
}

/**
 * The nodes of a cluster and their sessions, so that per-account limits and `killOld`
 * count every node's sessions, and a node can forward an HTTP request to the node that
 * holds its session. A single server is a cluster of one.
 */
export interface ClusterStore {
  /** Registers a node, or renews it (the same id). */
  heartbeat(node: NodeRecord): Promise<void>;
  /** A node by id, dead or alive (undefined once it left or was pruned). */
  node(id: string): Promise<NodeRecord | undefined>;
  /** Forgets a node with its sessions, IM resources and SIP bindings, in one transaction (at shutdown, or pruning a dead one). */
  removeNode(id: string): Promise<void>;
  /** Nodes whose aliveUntil has passed before `now`. */
  deadNodes(now: number): Promise<NodeRecord[]>;
  /**
   * Records a session unless its account already has `limit` sessions on nodes alive at
   * `now` (counted and recorded in one transaction). False when refused.
   */
  addSession(session: SessionRecord, limit: number, now: number): Promise<boolean>;
  removeSession(urlID: string): Promise<void>;
  /** The account's sessions on nodes alive at `now`, oldest first. */
  accountSessions(accountId: number, now: number): Promise<SessionRecord[]>;
}

/** What SharedStateStore.update's `change` decides: the new value (undefined removes it), until when it is kept, and what update returns. */
export interface SharedUpdate<R> {
  value: unknown;
  /** ms since the epoch; ignored when `value` is undefined. */
  expires: number;
  result: R;
}

/**
 * Small values every node shares (login-failure counters and slots): JSON values by scope
 * and key, each changed atomically. Expired values read as undefined.
 */
export interface SharedStateStore {
  /**
   * Reads the value (undefined when missing or expired at `now`), lets `change` (a pure,
   * synchronous function) decide the new one, and writes it, in one transaction that
   * excludes every other update of the same key.
   */
  update<R>(scope: string, key: string, now: number, change: (value: unknown) => SharedUpdate<R>): Promise<R>;
  get(scope: string, key: string, now: number): Promise<unknown>;
  /** Forgets the values expired before `now`. */
  prune(now: number): Promise<void>;
}

export type Settings = { [key: string]: XimssValue };

/** Changes to a Settings dictionary, merged by the store in one transaction: a value replaces, null removes. */
export type SettingsChanges = { [key: string]: XimssValue | null };

/** `current` with `changes` merged in (what both engines do inside the transaction). */
export function mergeSettings(current: Settings, changes: SettingsChanges): Settings {
  const merged: Settings = { ...current };
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) delete merged[key];
    // Defined, not assigned: a `__proto__` key (a preference a client named so) is data.
    else Object.defineProperty(merged, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return merged;
}

/**
 * `current` with `changes` merged in, and `nested[key]` merged into the dictionary under
 * `key` (such as AccountDefaults; a dictionary left empty is removed).
 */
export function mergeNestedSettings(current: Settings, changes: SettingsChanges, nested: Readonly<Record<string, SettingsChanges>> = {}): Settings {
  let merged = mergeSettings(current, changes);
  for (const [within, inner] of Object.entries(nested)) {
    const value = merged[within];
    const dictionary = typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) ? value : {};
    const result = mergeSettings(dictionary, inner);
    merged = Object.keys(result).length > 0 ? { ...merged, [within]: result } : mergeSettings(merged, { [within]: null });
  }
  return merged;
}

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
  /** SCRAM-SHA-1 and SCRAM-SHA-256 verifiers (JSON, see services/passwords.ts scramCredentials); null when not kept yet. */
  scramCredentials: string | null;
  /**
   * HTTP Digest HA1 values for MD5 and SHA-256 (JSON, see services/passwords.ts digestCredentials),
   * for SIP; null when not kept yet.
   */
  digestCredentials: string | null;
  recoveryEmail: string | null;
  /** Account settings (RulesAllowed, PWDAllowed, StorageLimit, ...): explicit values only. */
  settings: Settings;
  /** Custom preferences (TimeZone, Language, ...): explicit values only. */
  prefs: Settings;
  /** Public Info (spec "Preferences"): what the account tells others about itself (the directory). */
  publicInfo: Settings;
  created: Date;
  prevLogin: LoginRecord | null;
  lastFailedLogin: LoginRecord | null;
  /** Bumped whenever the password changes; lets caches and sessions notice. */
  credentialsVersion: number;
}

/** Who an account is, without its secrets or settings: what a long-lived connection keeps of it. */
export type AccountIdentity = Pick<AccountRecord, 'id' | 'domain' | 'name'>;

/** An account's identity on its own (the record, with its password hashes and settings, is let go). */
export function accountIdentity(account: AccountIdentity): AccountIdentity {
  return { id: account.id, domain: account.domain, name: account.name };
}

export interface NewAccount {
  domain: string;
  name: string;
  realName?: string | null;
  passwordHash: string;
  cramMd5Context: string | null;
  scramCredentials?: string | null;
  digestCredentials?: string | null;
  recoveryEmail?: string | null;
  settings?: Settings;
}

export interface DomainStore {
  create(name: string, settings?: Settings): Promise<DomainRecord>;
  get(name: string): Promise<DomainRecord | undefined>;
  list(): Promise<DomainRecord[]>;
  updateSettings(name: string, settings: Settings): Promise<void>;
  /**
   * Merges `changes` into the domain's settings in one transaction (NotFoundError when there
   * is no such domain); with `within`, into the dictionary under that key (`AccountDefaults`:
   * its accounts' default settings), created when missing and removed when left empty.
   * Answers the domain's settings after the change.
   */
  mergeSettings(name: string, changes: SettingsChanges, nested?: Readonly<Record<string, SettingsChanges>>): Promise<Settings>;
  /** Removes a domain that has no accounts; false when it does not exist. */
  remove(name: string): Promise<boolean>;
}

/** Account fields an administrator changes beside its settings (undefined: unchanged; null: removed). */
export interface AccountColumnChanges {
  realName?: string | null;
  recoveryEmail?: string | null;
}

export interface AccountStore {
  create(account: NewAccount): Promise<AccountRecord>;
  get(domain: string, name: string): Promise<AccountRecord | undefined>;
  getById(id: number): Promise<AccountRecord | undefined>;
  list(domain?: string): Promise<AccountRecord[]>;
  count(domain: string): Promise<number>;
  remove(id: number): Promise<boolean>;
  setPassword(
    id: number,
    passwordHash: string,
    cramMd5Context: string | null,
    scramCredentials: string | null,
    digestCredentials: string | null,
  ): Promise<void>;
  /**
   * Keeps SCRAM verifiers made from a password just verified, unless the password changed
   * since (`credentialsVersion` no longer the account's); false then.
   */
  setScramCredentials(id: number, scramCredentials: string, credentialsVersion: number): Promise<boolean>;
  /** Keeps Digest credentials made from a password just verified, on the same condition as setScramCredentials. */
  setDigestCredentials(id: number, digestCredentials: string, credentialsVersion: number): Promise<boolean>;
  setRecoveryEmail(id: number, email: string | null): Promise<void>;
  setRealName(id: number, realName: string | null): Promise<void>;
  setSettings(id: number, settings: Settings): Promise<void>;
  setPrefs(id: number, prefs: Settings): Promise<void>;
  /**
   * Merges `changes` into the account's settings, and sets the `columns` given, in one
   * transaction; the settings that result (NotFoundError when the account is gone).
   */
  mergeSettings(id: number, changes: SettingsChanges, columns?: AccountColumnChanges): Promise<Settings>;
  /** Merges `changes` into the account's preferences in one transaction; the result. */
  mergePrefs(id: number, changes: SettingsChanges): Promise<Settings>;
  /** Merges `changes` into the account's Public Info in one transaction; the result. */
  mergePublicInfo(id: number, changes: SettingsChanges): Promise<Settings>;
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

// ---------------------------------------------------------------------------------------
// Account Access Control Lists (accountACLList / accountACLUpdate)

/**
 * One change of an account's ACL, applied by the store to the entry as stored: `add` adds
 * the letters, `sub` takes them away, `set` replaces them, `clear` removes the entry. An
 * entry left with no letters is removed. Patterns are compared as given (the service
 * lower-cases them first); letters keep the order in which they were first granted.
 */
export interface AccountAclChange {
  pattern: string;
  mode: 'add' | 'sub' | 'set' | 'clear';
  rights: string;
}

/** Thrown by AccountAclStore.update when the ACL would have more entries than allowed; nothing is changed. */
export class AccountAclLimitError extends Error {}

export interface AccountAclStore {
  /** The account's ACL entries, sorted by pattern (empty for an unknown account). */
  list(accountId: number): Promise<AclEntryRecord[]>;
  /**
   * Applies `changes` in order, in one transaction, to the ACL as stored (never a copy read
   * earlier); answers the ACL after them. NotFoundError when the account is gone;
   * AccountAclLimitError (nothing changed) when more than `maxEntries` entries would result.
   */
  update(accountId: number, changes: readonly AccountAclChange[], maxEntries: number): Promise<AclEntryRecord[]>;
}

/** One change applied to an entry's letters (what both engines do inside the transaction); null: no entry. */
export function applyAccountAclChange(current: string | null, change: AccountAclChange): string | null {
  const unique = (letters: string): string => [...new Set(letters)].join('');
  let next: string;
  switch (change.mode) {
    case 'clear':
      return null;
    case 'set':
      next = unique(change.rights);
      break;
    case 'add':
      next = unique((current ?? '') + change.rights);
      break;
    case 'sub':
      next = [...(current ?? '')].filter((letter) => !change.rights.includes(letter)).join('');
      break;
  }
  return next === '' ? null : next;
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
  /**
   * Bumped by every transaction that changes the mailbox's messages (append, copy in, flag
   * or attribute change, removal), by exactly one (a move inside one mailbox: two), so that
   * a reader that has seen modseq N and is told of N + 2 knows it missed N + 1.
   */
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

/** Bytes an account may hold, checked inside the transaction that adds to it. */
export interface QuotaCheck {
  accountId: number;
  limit: number;
}

export interface AppendOptions {
  /** Refuse (QuotaExceededError, nothing stored) when the account would hold more than this. */
  quota?: QuotaCheck;
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

/**
 * A flag change, applied by the store to each message's flags as stored: system flag bits
 * to set and to clear, keywords to add and to remove (compared case-insensitively; an added
 * keyword keeps its spelling). Clearing wins over setting.
 */
export interface FlagDelta {
  set: number;
  clear: number;
  addKeywords: readonly string[];
  removeKeywords: readonly string[];
}

export interface FlagResult {
  /** The mailbox's modseq after the change (unchanged when nothing changed). */
  modseq: number;
  /** The messages whose flags changed, as stored now. */
  changed: MessageMeta[];
  /** UIDs refused by `unchangedSince`: they changed after it (left as they were). */
  modified: number[];
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
  /** The highest modseq of each of these mailboxes (those that exist), in one read: how nodes check their indexes are current. */
  highestModseqs(ids: readonly number[]): Promise<Map<number, number>>;
  /**
   * Creates a mailbox. AlreadyExistsError when the name is taken — unless `overPureFolder`
   * and what has the name is a pure folder, which then becomes this mailbox (keeping its id).
   */
  createMailbox(accountId: number, name: string, mailboxClass: string, pureFolder: boolean, options?: { overPureFolder?: boolean }): Promise<MailboxRecord>;
  /** Renames several mailboxes in one transaction (a mailbox and its children); AlreadyExistsError when a new name is taken. */
  renameMailboxes(accountId: number, renames: readonly { from: string; to: string }[]): Promise<void>;
  /**
   * Removes mailboxes with all their messages, in one transaction. With `leavePureFolders`,
   * each is replaced by a new pure folder of the same name (a mailbox that has children).
   */
  removeMailboxes(ids: readonly number[], options?: { leavePureFolders?: boolean }): Promise<void>;
  /**
   * Changes a mailbox's ACL in one transaction: `change` (pure, synchronous; it may throw to
   * abort) gets the ACL as stored and returns the new one, which is returned.
   * NotFoundError when the mailbox is gone.
   */
  updateMailboxAcl(id: number, change: (acl: readonly AclEntryRecord[]) => AclEntryRecord[]): Promise<AclEntryRecord[]>;
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
  /** NotFoundError when the mailbox is gone; QuotaExceededError (see AppendOptions.quota). */
  append(mailboxId: number, messages: readonly NewMessage[], options?: AppendOptions): Promise<AppendResult>;
  /** A copy's messages are marked Recent. QuotaExceededError when `quota` is given and the copies do not fit. */
  copy(fromMailboxId: number, uids: readonly number[], toMailboxId: number, options: { move: boolean; quota?: QuotaCheck }): Promise<CopyResult>;
  /**
   * Applies `delta` to these messages (missing UIDs are skipped) in one transaction, as one
   * modseq. With `unchangedSince` (IMAP's UNCHANGEDSINCE), a message whose modseq is above
   * it is left alone and listed in `modified`.
   */
  updateFlags(mailboxId: number, uids: readonly number[], delta: FlagDelta, options?: { unchangedSince?: number }): Promise<FlagResult>;
  setAttrs(mailboxId: number, uid: number, attrs: { [key: string]: XimssValue } | null): Promise<{ modseq: number; changed: MessageMeta | undefined }>;
  /** Physically removes messages; with `onlyDeleted`, only those of them whose Deleted flag is set as stored. */
  expunge(mailboxId: number, uids: readonly number[], options?: { onlyDeleted?: boolean }): Promise<{ modseq: number; removed: { uid: number; origUid: number }[] }>;
  changesSince(mailboxId: number, modseq: number): Promise<ChangeSet>;

  subscriptions(accountId: number): Promise<string[]>;
  setSubscribed(accountId: number, name: string, subscribed: boolean): Promise<void>;
  aliases(accountId: number): Promise<{ name: string; target: string }[]>;
  setAlias(accountId: number, name: string, target: string | null): Promise<void>;
}

/** Thrown by a store when a unique name is taken. */
export class AlreadyExistsError extends Error {}

/** There is no store where one was to be opened (with `create: false`). */
export class NoStoreError extends Error {
  constructor(readonly where: string) {
    super(`there is no ximssd store in ${where} (run \`ximssd init\` or \`ximssd serve\` first)`);
  }
}

/** The store's schema is older or newer than this version's (with `create: false`, which does not migrate). */
export class StoreVersionError extends Error {
  constructor(where: string, found: number, wanted: number) {
    super(
      found < wanted
        ? `the store in ${where} has schema version ${found}, this ximssd uses version ${wanted}: run \`ximssd serve\` once to upgrade it`
        : `the store in ${where} has schema version ${found}, newer than this ximssd's (version ${wanted}): use a newer ximssd`,
    );
  }
}

/** Thrown by a store when a record an operation depends on does not exist. */
export class NotFoundError extends Error {}

/** Thrown by append and copy when the account's storage limit (QuotaCheck) would be exceeded; nothing is stored. */
export class QuotaExceededError extends Error {}

/**
 * Applies a FlagDelta to one message's flags and keywords (what both engines do inside the
 * transaction). Returns the same keywords array when the keywords do not change.
 */
export function applyFlagDelta(flags: number, keywords: readonly string[], delta: FlagDelta): { flags: number; keywords: readonly string[] } {
  const newFlags = (flags | delta.set) & ~delta.clear;
  if (delta.addKeywords.length === 0 && delta.removeKeywords.length === 0) return { flags: newFlags, keywords };
  const removed = new Set(delta.removeKeywords.map((k) => k.toLowerCase()));
  const result = keywords.filter((k) => !removed.has(k.toLowerCase()));
  for (const k of delta.addKeywords) {
    if (!removed.has(k.toLowerCase()) && !result.some((r) => r.toLowerCase() === k.toLowerCase())) result.push(k);
  }
  const same = result.length === keywords.length && result.every((k, i) => k === keywords[i]);
  return { flags: newFlags, keywords: same ? keywords : result };
}
