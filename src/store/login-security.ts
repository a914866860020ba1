/**
 * What login security keeps per account (src/services/two-factor.ts, app-passwords.ts):
 *
 * - Two-factor authentication (TOTP, RFC 6238): the secret sealed with the server's key
 *   (SecretBox, never in clear in the store), the last time step a code was accepted for
 *   (a code is taken at most once: `useTotpStep` is one conditional update, so two processes
 *   sharing the store cannot both accept the same code), and the recovery codes as hashes,
 *   each used at most once (again one conditional update).
 * - Application passwords: named extra passwords, as hashes (scrypt, PHC string), with the
 *   SCRAM verifiers and Digest HA1 values their protocols need (JSON, as the main password's),
 *   and when they were made and last used. The limit on their number is checked in the same
 *   transaction as the insert.
 *
 * Everything goes with the account (ON DELETE CASCADE).
 */
export interface TwoFactorRecord {
  accountId: number;
  /** The TOTP secret, sealed (SecretBox, context `totp:<accountId>`). */
  secret: string;
  /** When two-factor authentication was turned on (ms). */
  enabled: number;
  /** The last time step (Unix time / period) a code was accepted for; -1 for none yet. */
  lastStep: number;
}

export type TwoFactorEnable = 'enabled' | 'on-already' | 'no-account';

export interface TwoFactorStore {
  get(accountId: number): Promise<TwoFactorRecord | undefined>;
  /**
   * Turns two-factor authentication on with `secret` (sealed) and the hashes of new recovery
   * codes, only when it is off: `on-already` (nothing changed) when it is on, whatever the
   * secret, so that a stale enrolment never replaces the factor in use (re-enrolment goes
   * through disable). `lastStep` is the step of the code that confirmed the secret (it
   * cannot be used again). `no-account` when the account is gone. Concurrent calls for one
   * account: exactly one turns it on, with its own codes only (both engines).
   */
  enable(accountId: number, secret: string, lastStep: number, recoveryHashes: readonly string[], now: number): Promise<TwoFactorEnable>;
  /** Turns it off: the secret and the recovery codes are deleted. False when it was off. */
  disable(accountId: number): Promise<boolean>;
  /** Takes time step `step` if it is later than the last one taken: true when this call took it. */
  useStep(accountId: number, step: number): Promise<boolean>;
  /** Uses the recovery code with hash `hash`: true when it was there and unused (it is used now). */
  useRecoveryCode(accountId: number, hash: string, now: number): Promise<boolean>;
  /** Recovery codes not used yet. */
  recoveryCodesLeft(accountId: number): Promise<number>;
}

export interface AppPasswordRecord {
  accountId: number;
  /** The label the user gave it (unique per account). */
  name: string;
  /** scrypt hash (services/passwords.ts hashPassword). */
  hash: string;
  /** SCRAM verifiers (JSON, services/passwords.ts), null when none were made. */
  scram: string | null;
  /** Digest credentials (JSON, services/passwords.ts digestCredentials), null when none were made. */
  digest: string | null;
  created: number;
  lastUsed: number | null;
}

export type AppPasswordSet = 'added' | 'replaced' | 'limit' | 'no-account';

export interface AppPasswordStore {
  /** The account's application passwords, by name. */
  list(accountId: number): Promise<AppPasswordRecord[]>;
  /**
   * Adds the password, or replaces the one of the same name (keeping nothing of it); refused
   * (`limit`) when the account has `limit` others already, counted in the same transaction.
   */
  set(record: Omit<AppPasswordRecord, 'lastUsed'>, limit: number): Promise<AppPasswordSet>;
  /** Deletes it: false when there was none of that name. */
  remove(accountId: number, name: string): Promise<boolean>;
  /**
   * Records a use at `now`, unless one was recorded less than `granularityMs` before (a DAV
   * client authenticates every request: not a write each time).
   */
  touch(accountId: number, name: string, now: number, granularityMs: number): Promise<void>;
}
