/**
 * Remote SIP registrations of the accounts (rsipList / rsipUpdate, src/services/remote-sip/):
 * the account registers with another SIP server under these credentials, so that calls to its
 * number there come here. Each record is named within its account and holds the settings the
 * user gave (the password sealed by the server's SecretBox: the store never sees it in clear),
 * the user part of the Contact the server registers (`contactUser`, unique: an INVITE to it is
 * for this account), and the state of the registration.
 *
 * Exactly one node registers a record at a time: the holder of its lease (`leaseOwner` until
 * `leaseUntil`). claim() renews the leases a node holds and takes the free or expired ones in
 * one transaction; a node that dies stops renewing, and another takes its records once the
 * leases have expired. Every settings change bumps `version`, so the holder knows its
 * registration is for settings that no longer are, and state written for an older version is
 * dropped.
 */

/** What the user sets. */
export interface RemoteSipSettings {
  /** The domain of the address registered (and where its registrar is found, unless `proxy`). */
  domain: string;
  /** host[:port] the REGISTER goes to instead of the domain's servers; '' = the domain's (RFC 3263). */
  proxy: string;
  /** The user part of the address registered. */
  user: string;
  /** The Digest user name; '' = `user`. */
  authName: string;
  /** The password, sealed (SecretBox). */
  password: string;
  /** The registration interval asked for, in seconds. */
  expires: number;
  enabled: boolean;
}

export interface RemoteSipRecord extends RemoteSipSettings {
  accountId: number;
  name: string;
  /** The user part of the Contact registered: identifies the record in INVITEs sent to it. */
  contactUser: string;
  /** Bumped by every change of the settings. */
  version: number;
  leaseOwner: string | null;
  leaseUntil: number | null;
  /** Until when the registrar holds the registration (ms); null when not registered. */
  registeredUntil: number | null;
  /** When the last attempt ended (ms), null before the first. */
  lastAttempt: number | null;
  /** What went wrong in the last attempt; null when it succeeded. */
  lastError: string | null;
}

/** A record to add, or to put in place of the one of the same name. */
export interface RemoteSipPut extends RemoteSipSettings {
  name: string;
  /** Used when the record is new; a replaced record keeps its own. */
  contactUser: string;
}

export interface RemoteSipState {
  registeredUntil: number | null;
  lastAttempt: number;
  lastError: string | null;
}

export interface RemoteSipStore {
  /** The account's records, by name. */
  list(accountId: number): Promise<RemoteSipRecord[]>;
  /**
   * Removes the records named in `remove`, then adds or replaces those in `put` (a replaced
   * record's state is cleared and its version bumped), in one transaction; 'limit' (and nothing
   * changed) when the account would have more than `maxPerAccount` records.
   */
  update(accountId: number, changes: { put: RemoteSipPut[]; remove: string[] }, maxPerAccount: number): Promise<'ok' | 'limit'>;
  /** The record whose Contact has this user part. */
  byContact(contactUser: string): Promise<RemoteSipRecord | undefined>;
  /**
   * For node `owner` at `now`: renews the leases it holds on enabled records and takes up to
   * `limit` enabled records whose lease is free or expired, all until `until`, in one
   * transaction (two nodes never get the same record); gives up its leases on disabled
   * records. Returns every record it now holds.
   */
  claim(owner: string, now: number, until: number, limit: number): Promise<RemoteSipRecord[]>;
  /** Gives up a lease `owner` holds (shutdown); nothing when another holds it. */
  release(accountId: number, name: string, owner: string): Promise<void>;
  /**
   * Records the outcome of an attempt, when `owner` holds the record's lease and it is still
   * at `version`; false (nothing written) otherwise.
   */
  setState(accountId: number, name: string, owner: string, version: number, state: RemoteSipState): Promise<boolean>;
}

/** The table's columns, as both engines select them. */
export const REMOTE_SIP_COLUMNS =
  'account_id, name, domain, proxy, user_name, auth_name, password, expires, enabled, contact_user, version, lease_owner, lease_until, registered_until, last_attempt, last_error';

export interface RemoteSipRow {
  account_id: number;
  name: string;
  domain: string;
  proxy: string;
  user_name: string;
  auth_name: string;
  password: string;
  expires: number;
  enabled: number | boolean;
  contact_user: string;
  version: number;
  lease_owner: string | null;
  lease_until: number | null;
  registered_until: number | null;
  last_attempt: number | null;
  last_error: string | null;
}

export function toRemoteSip(r: RemoteSipRow): RemoteSipRecord {
  return {
    accountId: r.account_id,
    name: r.name,
    domain: r.domain,
    proxy: r.proxy,
    user: r.user_name,
    authName: r.auth_name,
    password: r.password,
    expires: r.expires,
    enabled: r.enabled === true || r.enabled === 1,
    contactUser: r.contact_user,
    version: r.version,
    leaseOwner: r.lease_owner,
    leaseUntil: r.lease_until,
    registeredUntil: r.registered_until,
    lastAttempt: r.last_attempt,
    lastError: r.last_error,
  };
}
