/**
 * What real-time messaging keeps (src/services/im/): rosters with their groups and versions,
 * messages kept for offline users, the message archive (XEP-0313), block lists (XEP-0191),
 * and the directory of connected clients ("resources") of every node.
 *
 * Addresses are bare JIDs (`user@domain`, or `domain`) as the service normalized them
 * (src/services/im/jid.ts); the store compares them as they are.
 *
 * Rosters follow RFC 6121's subscription model. A roster change that depends on the item's
 * current state (an inbound `subscribed` only counts when we asked) is decided by a pure
 * function the service passes in, run by the store inside the transaction that reads and
 * writes the item (as SharedStateStore.update does): two processes changing the same item
 * never overwrite each other's change.
 */

export type Subscription = 'none' | 'to' | 'from' | 'both';

export interface RosterItem {
  /** The contact's bare JID. */
  jid: string;
  /** The name the user gave the contact ('' when none). */
  name: string;
  subscription: Subscription;
  /** The user asked to see the contact's presence; no answer yet (RFC 6121 `ask="subscribe"`). */
  ask: boolean;
  /** The user pre-approved the contact's subscription request (RFC 6121 3.4). */
  approved: boolean;
  /**
   * The contact asked to see the user's presence and waits for the answer: the status text of
   * its request ('' when it had none); null when nothing waits.
   */
  pendingIn: string | null;
  /** Group names, each once, in the order given. */
  groups: string[];
}

/** What a roster change function decides: the new item, null to remove it, undefined to change nothing. */
export type RosterDecision = RosterItem | null | undefined;

/** The outcome of a roster change. */
export interface RosterChange {
  before: RosterItem | undefined;
  /** undefined when the item is (now) absent. */
  after: RosterItem | undefined;
  /** The roster version after the change (unchanged when nothing changed). */
  version: number;
  /** False when the decision was "no change" (or an absent item stayed absent). */
  changed: boolean;
}

/** The roster was full: the change would have made more than `maxItems` items. */
export class RosterFullError extends Error {
  constructor(readonly maxItems: number) {
    super(`the roster is full (at most ${maxItems} contacts)`);
  }
}

/** A new group would have made more than `maxGroups` named groups. */
export class RosterGroupsFullError extends Error {
  constructor(readonly maxGroups: number) {
    super(`too many contact groups (at most ${maxGroups})`);
  }
}

export interface RosterStore {
  /** Every item, by JID order, with the roster's version (0 for a roster never changed). */
  list(accountId: number): Promise<{ items: RosterItem[]; version: number }>;
  get(accountId: number, jid: string): Promise<RosterItem | undefined>;
  /** The roster's version alone (0 for a roster never changed). */
  version(accountId: number): Promise<number>;
  /**
   * Reads the item, lets `decide` (pure, synchronous) choose its new state, and writes it, in one
   * transaction that excludes every other change of the account's roster; a real change bumps
   * the roster's version by one. A decided item equal to the stored one (same fields, same
   * groups in the same order) is no change; the store keeps the item under `jid` (a decision
   * naming another JID is a bug: Error) and its groups each once. RosterFullError (nothing
   * changed) when a new item would make more than `maxItems`; NotFoundError when the account
   * is gone.
   */
  modify(accountId: number, jid: string, decide: (current: RosterItem | undefined) => RosterDecision, maxItems: number): Promise<RosterChange>;
  /**
   * The account's named groups: those of its items and those created empty (rosterGroupSet
   * add), sorted.
   */
  groups(accountId: number): Promise<string[]>;
  /**
   * Creates an empty group; false when a group of that name exists (on an item or empty);
   * RosterGroupsFullError when the account has `maxGroups` named groups already. A group so
   * created stays (listed by `groups`) until renameGroup removes it, whether or not items
   * have it meanwhile. Changes no item, so not the roster's version.
   */
  addGroup(accountId: number, name: string, maxGroups: number): Promise<boolean>;
  /**
   * Renames a group (on every item that has it, and the empty one), or with `to` null deletes it
   * (the items stay, without it), in one transaction; answers the items changed (as they are
   * now, by JID) and the version, bumped once when items changed. Renaming onto a name in use
   * merges the two (an item that had both keeps it once, at the first of their places).
   * NotFoundError from store.ts when no such group exists.
   */
  renameGroup(accountId: number, from: string, to: string | null): Promise<{ items: RosterItem[]; version: number }>;
  /** The contacts who may see the account's presence (subscription from/both), by JID. */
  subscribers(accountId: number): Promise<string[]>;
  /** The contacts whose presence the account may see (subscription to/both), by JID. */
  following(accountId: number): Promise<string[]>;
}

/** A message kept for a user who had no client to take it (XEP-0160). */
export interface OfflineMessage {
  id: number;
  /** ms */
  stamp: number;
  /** The sender's full or bare JID. */
  from: string;
  /** The stanza as XML text (with its from and to). */
  xml: string;
}

export interface OfflineStore {
  /** Keeps a message unless the account keeps `maxCount` already (false then); NotFoundError when the account is gone. */
  push(accountId: number, message: Omit<OfflineMessage, 'id'>, maxCount: number): Promise<boolean>;
  /**
   * Takes (reads and deletes, in one transaction) the oldest `limit` messages: two clients logging
   * in at once on two nodes never both get the same message.
   */
  take(accountId: number, limit: number): Promise<OfflineMessage[]>;
  count(accountId: number): Promise<number>;
  /** Deletes messages kept since before `before` (ms); answers how many. */
  prune(before: number): Promise<number>;
}

/** A message of the archive (XEP-0313), kept per account: sent and received ones. */
export interface ArchivedMessage {
  /** The archive id (XEP-0359 stanza-id): unique within the account, opaque to clients. */
  id: string;
  /** ms */
  stamp: number;
  /** The other party's bare JID. */
  with: string;
  /** True when the account sent it. */
  outgoing: boolean;
  /** The stanza as XML text. */
  xml: string;
}

/**
 * Which messages, and which page of them. Time order is (stamp, then the order of append):
 * messages of equal stamps page stably. With `before` (also '') the page is the last `limit`
 * messages before it (paging backwards); otherwise the first `limit` after `after` (or from
 * the first). Both may be given: the page lies between them.
 */
export interface ArchiveQuery {
  with?: string;
  /** ms, inclusive */
  start?: number;
  /** ms, inclusive */
  end?: number;
  /** Messages after this archive id (in time order). */
  after?: string;
  /** Messages before this archive id; '' for the last page. */
  before?: string;
  /** At most this many (0: only `count`). */
  limit: number;
}

export interface ArchiveStore {
  /** AlreadyExistsError when the account has a message of that id; NotFoundError when the account is gone. */
  append(accountId: number, message: ArchivedMessage): Promise<void>;
  /** Appends several messages (of any accounts) in one transaction. */
  appendMany(entries: readonly { accountId: number; message: ArchivedMessage }[]): Promise<void>;
  /**
   * One page of messages matching the query, oldest first; `complete` when no further message
   * matches in the query's direction (after the page for `after`/no paging, before it for
   * `before`); `count`: every message matching with/start/end (RSM's <count/>), read in the
   * same snapshot. An unknown `after`/`before` id throws NotFoundError from store.ts.
   */
  query(accountId: number, query: ArchiveQuery): Promise<{ messages: ArchivedMessage[]; complete: boolean; count: number }>;
  /** Deletes messages older than `before` (ms), every account; answers how many. */
  prune(before: number): Promise<number>;
}

export interface BlockingStore {
  /** By JID. */
  list(accountId: number): Promise<string[]>;
  /** Adds JIDs (already there: nothing); false (nothing added) when the list would exceed `maxItems`. */
  add(accountId: number, jids: readonly string[], maxItems: number): Promise<boolean>;
  /** Removes these JIDs, or all when `jids` is undefined; answers the JIDs removed, by JID. */
  remove(accountId: number, jids: readonly string[] | undefined): Promise<string[]>;
  isBlocked(accountId: number, jid: string): Promise<boolean>;
}

/**
 * A connected client of an account ("resource"): a XIMSS session bound with signalBind, an XMPP
 * client's bound resource. Its presence is what it last announced.
 */
export interface ResourceRecord {
  accountId: number;
  /** Unique within the account. */
  resource: string;
  /** The cluster node the client is connected to. */
  node: string;
  /** The protocol of the client. */
  kind: 'xmpp' | 'ximss';
  /** The client sent its initial presence (it is "available" and gets presence). */
  available: boolean;
  /** XMPP priority, -128..127 (XIMSS sessions: 0). */
  priority: number;
  /** The presence stanza the client announced, as XML text ('' before any). */
  presence: string;
  /** ms */
  since: number;
}

export interface ResourceStore {
  /**
   * Records a resource unless the account has one of that name on a node alive at `now` (false
   * then), or the account has `limit` on live nodes already (false too).
   */
  add(record: ResourceRecord, limit: number, now: number): Promise<boolean>;
  /**
   * Replaces available, priority, presence and since of the resource if this node (record.node)
   * holds it; nothing otherwise (it was removed, or bound anew on another node).
   */
  update(record: ResourceRecord): Promise<void>;
  /** Removes the resource if this node holds it (not one bound anew on another node). */
  remove(accountId: number, resource: string, node: string): Promise<void>;
  /** The account's resources on nodes alive at `now` (alive: its aliveUntil is not before `now`), by resource. */
  ofAccount(accountId: number, now: number): Promise<ResourceRecord[]>;
  /** Every resource on nodes alive at `now` (a node catching up after missed events), by account and resource. */
  all(now: number): Promise<ResourceRecord[]>;
  /** Forgets a node's resources (it stopped, or died; ClusterStore.removeNode does it too). */
  removeNode(node: string): Promise<void>;
}

/** A persistent multi-user chat room (XEP-0045); its occupants live in memory on the node hosting it. */
export interface RoomRecord {
  /** The room's bare JID (`room@conference.example.com`). */
  jid: string;
  /** The room configuration (muc#roomconfig fields the service keeps), as JSON-able values. */
  config: Record<string, string | number | boolean | string[]>;
  subject: string;
  /** ms */
  created: number;
}

export type Affiliation = 'owner' | 'admin' | 'member' | 'outcast';

/** A message of a room's discussion history. */
export interface RoomHistoryMessage {
  /** ms */
  stamp: number;
  /** The sender's nickname. */
  nick: string;
  /** The groupchat stanza as the room broadcast it. */
  xml: string;
}

export interface MucStore {
  /** The rooms of a MUC service domain (`conference.example.com`), by JID. */
  rooms(serviceDomain: string): Promise<RoomRecord[]>;
  get(jid: string): Promise<RoomRecord | undefined>;
  /**
   * Creates a room; false when it exists, or the service has `maxRooms` already (the rooms
   * whose JID has the same part after '@').
   */
  create(room: RoomRecord, maxRooms: number): Promise<boolean>;
  /** Replaces the configuration and subject of a room; NotFoundError when it is gone. */
  update(jid: string, config: RoomRecord['config'], subject: string): Promise<void>;
  /** Removes a room with its affiliations and history; false when it was not there. */
  remove(jid: string): Promise<boolean>;
  /** By user JID. */
  affiliations(jid: string): Promise<{ jid: string; affiliation: Affiliation }[]>;
  /** Sets a user's affiliation with the room, or removes it (null); NotFoundError when the room is gone. */
  setAffiliation(room: string, user: string, affiliation: Affiliation | null): Promise<void>;
  /** Adds a message to the room's history and keeps only the last `keep`; NotFoundError when the room is gone. */
  appendHistory(room: string, message: RoomHistoryMessage, keep: number): Promise<void>;
  /** The last `limit` messages (since `since` ms when given), oldest first. */
  history(room: string, limit: number, since?: number): Promise<RoomHistoryMessage[]>;
}
