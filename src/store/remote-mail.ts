/**
 * Remote mail accounts (src/services/remote-mail/; XIMSS rpopList/rpopUpdate and
 * rimapList/rimapUpdate): an account's records of mailboxes on other servers (POP3 or IMAP),
 * each with its fetch state, polled by whichever node claims the record.
 *
 * - A record is known by (account, kind, name). `put` adds or replaces one; the fetch state
 *   (the UIDLs already fetched, IMAP's UIDVALIDITY and last UID) survives a replacement that
 *   keeps the remote mailbox (kind, host, port, user), and is dropped with a new one.
 * - Polling is claimed like queue work: `claimDue` gives a node the due records nobody holds
 *   (or whose lease ran out), in one transaction, so that two nodes never poll one record at
 *   once. Every write of the fetch state is conditional on the lease (`owner`): a node whose
 *   lease was taken records nothing.
 * - The password is stored sealed (src/services/secret-box.ts); the store never sees it in clear.
 */

export type RemoteMailKind = 'pop' | 'imap';

/** How the connection is secured: none, STARTTLS/STLS, or TLS from the first byte (POP3S, IMAPS). */
export type RemoteMailTls = 'none' | 'starttls' | 'tls';

/** What the owner sets (rpopUpdate, rimapUpdate). */
export interface RemoteMailSettings {
  host: string;
  port: number;
  tls: RemoteMailTls;
  user: string;
  /** SecretBox.seal of the password, with the record as its context. */
  sealedPassword: string;
  /** Leave fetched messages on the remote server (else they are deleted there once delivered). */
  leave: boolean;
  /** Seconds between polls. */
  interval: number;
  /** The local mailbox messages are delivered to (through the Mail Rules). */
  mailbox: string;
}

export interface RemoteMailRecord extends RemoteMailSettings {
  id: number;
  accountId: number;
  kind: RemoteMailKind;
  name: string;
  /** ms since the epoch: when the record may be polled next. */
  nextPoll: number;
  /** ms: when the last poll ended (whatever its outcome); null before the first. */
  lastPoll: number | null;
  /** Why the last poll failed; null when it succeeded (or none ran yet). */
  lastError: string | null;
  /** Polls failed in a row (the back-off). */
  failures: number;
  /** IMAP: the UIDVALIDITY the last UID belongs to; null before the first poll. */
  uidValidity: number | null;
  /** IMAP: the highest UID fetched (0 before any). */
  lastUid: number;
  /** IMAP: UIDs at or below lastUid left on the remote server (larger than the size limit), checked again by each poll. */
  skipped: number[];
  /** A standing remark about the remote mailbox (messages left on it); kept across polls until a poll replaces it. */
  note: string | null;
  leaseOwner: string | null;
  leaseUntil: number | null;
}

export interface RemoteMailLease {
  owner: string;
  /** ms since the epoch. */
  until: number;
}

export type RemoteMailPutResult = 'created' | 'replaced' | 'limit';

/** How a poll ended (RemoteMailStore.finish). */
export interface RemoteMailOutcome {
  /** ms: when it ended. */
  time: number;
  nextPoll: number;
  /** null: it succeeded (the failure count goes back to 0). */
  error: string | null;
  /** The record's standing note; undefined keeps the one stored (a failed poll learned nothing new). */
  note?: string | null;
}

/** One change of an update request (RemoteMailStore.apply). */
export type RemoteMailChange = { name: string; remove: true } | { name: string; remove: false; settings: RemoteMailSettings };

/** What one change did: a put's result, or whether a removal found the record. */
export type RemoteMailChangeResult = 'created' | 'replaced' | 'removed' | 'absent';

/** When POP3 forgets a fetched UIDL the remote server no longer lists (RemoteMailStore.pruneSeen). */
export interface SeenPruning {
  /** Missing from at least this many listings in a row… */
  misses: number;
  /** …and missing for at least this long (ms). */
  ageMs: number;
}

/** Thrown (inside apply's transaction, which it rolls back) when a new record would pass the limit. */
export class RemoteMailLimitError extends Error {
  constructor(readonly record: string) {
    super('too many remote account records');
  }
}

export interface RemoteMailStore {
  /**
   * Adds the record, or replaces the account's record of that kind and name (its fetch state
   * kept when kind, host, port and user are the same, else dropped). The record becomes due
   * at `now`, and a poll under way loses its lease (it records nothing more: the next poll
   * uses the new settings). 'limit' (nothing written) when it is new and the account has
   * `maxPerAccount` records (of both kinds) already.
   */
  put(accountId: number, kind: RemoteMailKind, name: string, settings: RemoteMailSettings, now: number, maxPerAccount: number): Promise<RemoteMailPutResult>;
  /**
   * Applies the changes of one request in order, in one transaction: all of them, or (an
   * error thrown, RemoteMailLimitError when a new record would pass `maxPerAccount`) none.
   */
  apply(accountId: number, kind: RemoteMailKind, changes: readonly RemoteMailChange[], now: number, maxPerAccount: number): Promise<RemoteMailChangeResult[]>;
  /** Removes the record and its fetch state; false when there was none. */
  remove(accountId: number, kind: RemoteMailKind, name: string): Promise<boolean>;
  get(accountId: number, kind: RemoteMailKind, name: string): Promise<RemoteMailRecord | undefined>;
  /** The account's records of this kind, by name. */
  list(accountId: number, kind: RemoteMailKind): Promise<RemoteMailRecord[]>;
  /** Up to `limit` records due at `now` that nobody holds (or whose lease expired), the longest due first, now held by `lease`. */
  claimDue(now: number, limit: number, lease: RemoteMailLease): Promise<RemoteMailRecord[]>;
  /** The earliest time a record may become claimable (its next poll, or the end of the lease holding it); undefined when none. */
  nextDue(now: number): Promise<number | undefined>;
  /** Extends the lease while `lease.owner` holds it; false when it was lost (taken, or the record is gone). */
  renewLease(id: number, lease: RemoteMailLease): Promise<boolean>;
  /** POP3: the UIDLs of the record already fetched. */
  seen(id: number): Promise<Set<string>>;
  /** POP3: records one more UIDL as fetched; false (nothing written) when `owner` does not hold the record. */
  markSeen(id: number, owner: string, uidl: string, now: number): Promise<boolean>;
  /**
   * POP3: `listed` is the complete UIDL listing of a successful session. A fetched UIDL in it
   * is known present again; one missing from it counts one more miss (since `now` when it is
   * the first), and is forgotten only once it missed `policy.misses` listings in a row and
   * for `policy.ageMs`. An empty listing changes nothing (a locked or failing maildrop can
   * list nothing, and forgetting would fetch everything again). False (nothing written) when
   * `owner` does not hold the record.
   */
  pruneSeen(id: number, owner: string, listed: readonly string[], now: number, policy: SeenPruning): Promise<boolean>;
  /**
   * IMAP: the fetch state (and, when given, the UIDs left on the server; undefined keeps
   * them); false (nothing written) when `owner` does not hold the record.
   */
  setImapState(id: number, owner: string, uidValidity: number, lastUid: number, skipped?: readonly number[]): Promise<boolean>;
  /** Gives the lease up and records nothing (a poll cut short by a shutdown); false when `owner` did not hold it. */
  release(id: number, owner: string): Promise<boolean>;
  /** Records how a poll ended and gives the lease up; false (nothing written) when `owner` does not hold the record. */
  finish(id: number, owner: string, outcome: RemoteMailOutcome): Promise<boolean>;
  /** How many records of both kinds there are (the metrics). */
  count(): Promise<number>;
}

/** A row of `remote_mail`, as both engines define it (times in ms). */
export interface RemoteMailRow {
  id: number;
  account_id: number;
  kind: string;
  name: string;
  host: string;
  port: number;
  tls: string;
  user_name: string;
  password: string;
  leave: number | boolean;
  interval_seconds: number;
  mailbox: string;
  next_poll: number;
  last_poll: number | null;
  last_error: string | null;
  failures: number;
  uid_validity: number | null;
  last_uid: number;
  lease_owner: string | null;
  lease_until: number | null;
  skipped: string | null;
  note: string | null;
}

export const REMOTE_MAIL_COLUMNS =
  'id, account_id, kind, name, host, port, tls, user_name, password, leave, interval_seconds, mailbox, next_poll, last_poll, last_error, failures, uid_validity, last_uid, lease_owner, lease_until, skipped, note';

export function toRemoteMailRecord(r: RemoteMailRow, text: (s: string) => string = (s) => s): RemoteMailRecord {
  return {
    id: r.id,
    accountId: r.account_id,
    kind: r.kind as RemoteMailKind,
    name: text(r.name),
    host: r.host,
    port: r.port,
    tls: r.tls as RemoteMailTls,
    user: text(r.user_name),
    sealedPassword: r.password,
    leave: r.leave === true || r.leave === 1,
    interval: r.interval_seconds,
    mailbox: text(r.mailbox),
    nextPoll: r.next_poll,
    lastPoll: r.last_poll,
    lastError: r.last_error === null ? null : text(r.last_error),
    failures: r.failures,
    uidValidity: r.uid_validity,
    lastUid: r.last_uid,
    leaseOwner: r.lease_owner,
    leaseUntil: r.lease_until,
    skipped: parseSkipped(r.skipped),
    note: r.note === null ? null : text(r.note),
  };
}

/** Whether a replacement keeps the fetch state: the same remote mailbox. */
export function sameRemote(old: Pick<RemoteMailRow, 'host' | 'port' | 'user_name'>, settings: RemoteMailSettings, text: (s: string) => string = (s) => s): boolean {
  return old.host.toLowerCase() === settings.host.toLowerCase() && old.port === settings.port && text(old.user_name) === settings.user;
}

/** The most UIDs left on the server a record keeps (the note counts the rest as well). */
export const MAX_SKIPPED = 1000;

/** `skipped` as stored: a JSON array of UIDs. */
export function skippedText(uids: readonly number[]): string {
  return JSON.stringify(uids.slice(0, MAX_SKIPPED));
}

function parseSkipped(text: string | null): number[] {
  if (!text) return [];
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((v): v is number => Number.isSafeInteger(v) && (v as number) > 0) : [];
  } catch {
    return [];
  }
}
