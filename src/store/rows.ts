/**
 * Row shapes and their conversion to records, shared by both engines: the SQLite and the
 * PostgreSQL schemas name their columns alike, and each engine reads its rows into these.
 */
import { randomInt } from 'node:crypto';
import { DatasetLimitError, emailKey, type DatasetAttributes, type DatasetEntry, type DatasetLimits, type EntryWrite } from './datasets.js';
import type { MessageSource, QueueLease, QueuedMessageRecord, QueuedRecipientRecord, RecipientState } from './queue.js';
import type { RuleAction, RuleCondition, RuleRecord } from './rules.js';
import type { AccountRecord, DomainRecord, LoginRecord, NodeRecord, SessionRecord, Settings } from './store.js';

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
