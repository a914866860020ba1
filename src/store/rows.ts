/**
 * Row shapes and their conversion to records, shared by both engines: the SQLite and the
 * PostgreSQL schemas name their columns alike, and each engine reads its rows into these.
 */
import { randomInt } from 'node:crypto';
import { DatasetLimitError, emailKey, type DatasetAttributes, type DatasetEntry, type DatasetLimits, type EntryWrite } from './datasets.js';
import type { MessageSource, QueueLease, QueuedMessageRecord, QueuedRecipientRecord, RecipientState } from './queue.js';
import type { RuleAction, RuleCondition, RuleRecord } from './rules.js';
import type { AccountRecord, DomainRecord, LoginRecord, NodeRecord, SessionRecord, Settings } from './store.js';
import type {
  ArchivedMessage,
  OfflineMessage,
  ResourceRecord,
  RoomHistoryMessage,
  RoomRecord,
  RosterDecision,
  RosterItem,
  Subscription,
} from './im.js';

// Mail

/** Removal journal entries kept per mailbox once it is pruned (it is pruned at twice this). */
export const JOURNAL_KEEP = 10_000;

/** The keywords of a message without any (shared, frozen). */
export const NO_KEYWORDS: readonly string[] = Object.freeze([]);

/** The keywords column: NULL for none, else a JSON array. */
export function keywordsColumn(keywords: readonly string[]): string | null {
  return keywords.length === 0 ? null : JSON.stringify(keywords);
}

/** UIDVALIDITY: seconds since the epoch plus noise, so a re-created name never reuses one. */
export function newUidValidity(): number {
  return (Math.floor(Date.now() / 1000) + randomInt(1000)) % 0x7fffffff;
}

// Domains and accounts

export interface AccountRow {
  id: number;
  domain: string;
  name: string;
  real_name: string | null;
  password_hash: string;
  cram_md5: string | null;
  scram_credentials: string | null;
  digest_credentials: string | null;
  recovery_email: string | null;
  settings: string;
  prefs: string;
  public_info: string;
  created: number;
  prev_login_time: number | null;
  prev_login_ip: string | null;
  failed_login_time: number | null;
  failed_login_ip: string | null;
  credentials_version: number;
}

export interface DomainRow {
  name: string;
  settings: string;
  created: number;
}

function login(time: number | null, address: string | null): LoginRecord | null {
  return time === null ? null : { time: new Date(time), address: address ?? '' };
}

export function toAccount(row: AccountRow): AccountRecord {
  return {
    id: row.id,
    domain: row.domain,
    name: row.name,
    realName: row.real_name,
    passwordHash: row.password_hash,
    cramMd5Context: row.cram_md5,
    scramCredentials: row.scram_credentials,
    digestCredentials: row.digest_credentials,
    recoveryEmail: row.recovery_email,
    settings: JSON.parse(row.settings) as Settings,
    prefs: JSON.parse(row.prefs) as Settings,
    publicInfo: JSON.parse(row.public_info) as Settings,
    created: new Date(row.created),
    prevLogin: login(row.prev_login_time, row.prev_login_ip),
    lastFailedLogin: login(row.failed_login_time, row.failed_login_ip),
    credentialsVersion: row.credentials_version,
  };
}

export function toDomain(row: DomainRow): DomainRecord {
  return { name: row.name, settings: JSON.parse(row.settings) as Settings, created: new Date(row.created) };
}

// The outbound queue

export interface QueuedMessageRow {
  id: number;
  sender: string;
  created: number;
  expires: number;
  ret: string | null;
  envid: string | null;
  source: string;
  size: number;
}

/** A queued message's lease columns. */
export interface LeaseRow {
  lease_owner: string | null;
  lease_until: number | null;
}

export interface RecipientRow {
  address: string;
  notify: string | null;
  orcpt: string | null;
  state: string;
  attempts: number;
  next_attempt: number;
  last_attempt: number | null;
  status: string | null;
  diagnostic: string | null;
  remote_mta: string | null;
}

export function toLease(row: LeaseRow): QueueLease | null {
  return row.lease_owner === null || row.lease_until === null ? null : { owner: row.lease_owner, until: row.lease_until };
}

export function toQueuedMessage(row: QueuedMessageRow): QueuedMessageRecord {
  return {
    id: row.id,
    sender: row.sender,
    created: row.created,
    expires: row.expires,
    ret: row.ret === 'FULL' || row.ret === 'HDRS' ? row.ret : null,
    envid: row.envid,
    source: row.source as MessageSource,
    size: row.size,
  };
}

export function toRecipient(row: RecipientRow): QueuedRecipientRecord {
  return {
    address: row.address,
    notify: row.notify,
    orcpt: row.orcpt,
    state: row.state as RecipientState,
    attempts: row.attempts,
    nextAttempt: row.next_attempt,
    lastAttempt: row.last_attempt,
    status: row.status,
    diagnostic: row.diagnostic,
    remoteMta: row.remote_mta,
  };
}

// Datasets

export interface EntryRow {
  name: string;
  attrs: string;
}

/** Parses stored attributes into a null-prototype dictionary (`__proto__` stays a plain name). */
export function parseAttrs(json: string): DatasetAttributes {
  const parsed = JSON.parse(json) as Record<string, unknown>;
  const attrs = Object.create(null) as DatasetAttributes;
  for (const key of Object.keys(parsed)) {
    const value = parsed[key];
    if (typeof value === 'string') attrs[key] = value;
  }
  return attrs;
}

export function toEntry(row: EntryRow): DatasetEntry {
  return { name: row.name, attrs: parseAttrs(row.attrs) };
}

/** `A/B/C` -> [`A`, `A/B`]. */
export function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  return out;
}

/**
 * The bounds of the paths strictly under `path` (`path/...`), for a range scan on the
 * primary key: paths compare bytewise (SQLite's TEXT, PostgreSQL's COLLATE "C"), and `0`
 * is the character after `/`.
 */
export function subtreeRange(path: string): [string, string] {
  return [path + '/', path + '0'];
}

/**
 * An entry as `write` leaves it, from its stored row (undefined: a new entry): its
 * attributes, their JSON, and its email key; DatasetLimitError past the attribute or size
 * limit. What both engines do inside the write's transaction.
 */
export function writtenEntry(row: EntryRow | undefined, write: EntryWrite, limits: DatasetLimits): { attrs: DatasetAttributes; json: string; key: string | null } {
  const attrs = row && !write.replace ? parseAttrs(row.attrs) : (Object.create(null) as DatasetAttributes);
  for (const key of Object.keys(write.changes)) {
    const value = write.changes[key];
    if (value === null || value === undefined) delete attrs[key];
    else attrs[key] = value;
  }
  if (Object.keys(attrs).length > limits.maxAttributes) {
    throw new DatasetLimitError(`too many attributes (at most ${limits.maxAttributes} in an entry)`);
  }
  const json = JSON.stringify(attrs);
  if (Buffer.byteLength(json, 'utf8') > limits.maxEntryBytes) {
    throw new DatasetLimitError(`the entry is too large (at most ${limits.maxEntryBytes} bytes)`);
  }
  return { attrs, json, key: attrs.email === undefined ? null : emailKey(attrs.email) };
}

// Rules

/** The rule set whose "Reply with" actions keep the vacation log. */
export const MAIL_RULES = 'mailIn';

export interface RuleRow {
  type: string;
  name: string;
  priority: number;
  stage: string | null;
  body: string;
}

export interface RuleBody {
  conditions: RuleCondition[];
  actions: RuleAction[];
  comment: string | null;
}

export function toRule(row: RuleRow): RuleRecord {
  const body = JSON.parse(row.body) as RuleBody;
  return {
    type: row.type,
    name: row.name,
    priority: row.priority,
    stage: row.stage,
    conditions: body.conditions,
    actions: body.actions,
    comment: body.comment,
  };
}

export function ruleBodyColumn(rule: RuleRecord): string {
  const body: RuleBody = { conditions: rule.conditions, actions: rule.actions, comment: rule.comment };
  return JSON.stringify(body);
}

// Cluster nodes and sessions

export interface NodeRow {
  id: string;
  http_url: string;
  alive_until: number;
}

export interface SessionRow {
  url_id: string;
  account_id: number;
  node: string;
  created: number;
}

export function toNode(row: NodeRow): NodeRecord {
  return { id: row.id, httpUrl: row.http_url, aliveUntil: row.alive_until };
}

export function toSession(row: SessionRow): SessionRecord {
  return { urlID: row.url_id, accountId: row.account_id, node: row.node, created: row.created };
}

// Real-time messaging (src/store/im.ts)

/** A roster item's row; booleans are 0/1 on SQLite. */
export interface RosterItemRow {
  jid: string;
  name: string;
  subscription: string;
  ask: boolean | number;
  approved: boolean | number;
  pending_in: string | null;
  /** A JSON array of names. */
  groups: string;
}

export const ROSTER_ITEM_COLUMNS = 'jid, name, subscription, ask, approved, pending_in, groups';

export function toRosterItem(row: RosterItemRow): RosterItem {
  return {
    jid: row.jid,
    name: row.name,
    subscription: row.subscription as Subscription,
    ask: Boolean(row.ask),
    approved: Boolean(row.approved),
    pendingIn: row.pending_in,
    groups: JSON.parse(row.groups) as string[],
  };
}

function sameRosterItem(a: RosterItem, b: RosterItem): boolean {
  return (
    a.jid === b.jid &&
    a.name === b.name &&
    a.subscription === b.subscription &&
    a.ask === b.ask &&
    a.approved === b.approved &&
    a.pendingIn === b.pendingIn &&
    a.groups.length === b.groups.length &&
    a.groups.every((g, i) => g === b.groups[i])
  );
}

/**
 * What RosterStore.modify writes, from the item as stored and `decide`'s decision (what both
 * engines do inside the transaction): undefined for nothing (no decision, the stored item
 * again, an absent item removed), null to remove the item, else the item to store (under
 * `jid`, its groups each once, its fields copied out of the decision).
 */
export function rosterWrite(jid: string, current: RosterItem | undefined, decision: RosterDecision): RosterItem | null | undefined {
  if (decision === undefined) return undefined;
  if (decision === null) return current === undefined ? undefined : null;
  if (decision.jid !== jid) throw new Error(`a roster change of ${jid} decided an item of ${decision.jid}`);
  const item: RosterItem = {
    jid,
    name: decision.name,
    subscription: decision.subscription,
    ask: decision.ask,
    approved: decision.approved,
    pendingIn: decision.pendingIn,
    groups: [...new Set(decision.groups)],
  };
  return current !== undefined && sameRosterItem(current, item) ? undefined : item;
}

/** An item's groups after renameGroup(from, to) (merged when it has `to` already); undefined when it has no `from`. */
export function renamedGroups(groups: readonly string[], from: string, to: string | null): string[] | undefined {
  if (!groups.includes(from)) return undefined;
  const result: string[] = [];
  for (const group of groups) {
    const name = group === from ? to : group;
    if (name !== null && !result.includes(name)) result.push(name);
  }
  return result;
}

/** The named groups of a roster: those of its items and those created empty, sorted, each once. */
export function rosterGroupNames(itemGroups: readonly string[][], emptyGroups: readonly string[]): string[] {
  const names = new Set(emptyGroups);
  for (const groups of itemGroups) for (const group of groups) names.add(group);
  return [...names].sort();
}

export interface OfflineMessageRow {
  id: number;
  stamp: number;
  sender: string;
  xml: string;
}

export function toOfflineMessage(row: OfflineMessageRow): OfflineMessage {
  return { id: row.id, stamp: row.stamp, from: row.sender, xml: row.xml };
}

export interface ArchiveRow {
  archive_id: string;
  stamp: number;
  with_jid: string;
  outgoing: boolean | number;
  xml: string;
}

export const ARCHIVE_COLUMNS = 'archive_id, stamp, with_jid, outgoing, xml';

export function toArchivedMessage(row: ArchiveRow): ArchivedMessage {
  return { id: row.archive_id, stamp: row.stamp, with: row.with_jid, outgoing: Boolean(row.outgoing), xml: row.xml };
}

/** Bounds of an archive query that has none on a side: every stamp (ms) and sequence number is inside them. */
export const ARCHIVE_LOWEST = { stamp: Number.MIN_SAFE_INTEGER, seq: 0 };
export const ARCHIVE_HIGHEST = { stamp: Number.MAX_SAFE_INTEGER, seq: Number.MAX_SAFE_INTEGER };

/**
 * An archive page from the rows read past the page boundary (`limit` + 1 of them, in the
 * query's direction): the page oldest first, and whether it is the last in that direction.
 */
export function archivePage(rows: readonly ArchiveRow[], limit: number, backwards: boolean): { messages: ArchivedMessage[]; complete: boolean } {
  const page = rows.slice(0, limit).map(toArchivedMessage);
  if (backwards) page.reverse();
  return { messages: page, complete: rows.length <= limit };
}

export interface ResourceRow {
  account_id: number;
  resource: string;
  node: string;
  kind: string;
  available: boolean | number;
  priority: number;
  presence: string;
  since: number;
}

export const RESOURCE_COLUMNS = 'account_id, resource, node, kind, available, priority, presence, since';

export function toResource(row: ResourceRow): ResourceRecord {
  return {
    accountId: row.account_id,
    resource: row.resource,
    node: row.node,
    kind: row.kind === 'ximss' ? 'ximss' : 'xmpp',
    available: Boolean(row.available),
    priority: row.priority,
    presence: row.presence,
    since: row.since,
  };
}

export interface RoomRow {
  jid: string;
  config: string;
  subject: string;
  created: number;
}

export function toRoom(row: RoomRow): RoomRecord {
  return { jid: row.jid, config: JSON.parse(row.config) as RoomRecord['config'], subject: row.subject, created: row.created };
}

/** The MUC service domain of a room JID: what follows its '@' (maxRooms counts per service). */
export function roomService(jid: string): string {
  return jid.slice(jid.indexOf('@') + 1);
}

export interface RoomHistoryRow {
  stamp: number;
  nick: string;
  xml: string;
}

export function toRoomHistory(row: RoomHistoryRow): RoomHistoryMessage {
  return { stamp: row.stamp, nick: row.nick, xml: row.xml };
}
