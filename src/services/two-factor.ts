import { createHash, randomInt } from 'node:crypto';
// RFC 6238 TOTP (and the otpauth:// key URI apps read from a QR code): a well-kept library
// rather than our own HMAC truncation and base32 code.
import { Secret, TOTP } from 'otpauth';
import { silentLogger, type Logger } from '../log.js';
import type { AccountRecord, Store } from '../store/store.js';
import { fullName } from './accounts.js';
import { ServiceError } from './errors.js';
import type { SecretBox } from './secret-box.js';

/**
 * Two-factor authentication with time-based one-time passwords (RFC 6238: SHA-1, 6 digits,
 * 30-second steps, what every authenticator app does) and recovery codes.
 *
 * - The secret is made here (160 random bits), shown once at enrolment as base32 and as an
 *   otpauth:// URI (with the issuer, for a QR code), and kept sealed with the server's key
 *   (SecretBox, context `totp:<accountId>`): the store alone does not give it away.
 * - A code is right for the current step or the one before or after (clock drift), and is
 *   taken at most once: the store keeps the last step accepted and takes a later one only in
 *   one conditional update, so two processes sharing the store cannot both accept a code,
 *   and neither can one process twice.
 * - Recovery codes: `recoveryCodes` random codes of 16 base32 characters (80 bits, written
 *   XXXX-XXXX-XXXX-XXXX), shown once, kept as SHA-256 hashes (random codes of that length
 *   need no slow hash: there is nothing to guess them from) and each usable once (again one
 *   conditional update).
 *
 * Nothing here counts attempts: AuthService.checkSecondFactor runs each check through the
 * login guard, so that codes cannot be guessed faster than passwords.
 */
export const TOTP_PERIOD = 30;
export const TOTP_DIGITS = 6;
const TOTP_WINDOW = 1;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** Anything longer is no code of ours (checked before any work). */
export const MAX_CODE_LENGTH = 64;

export interface Enrolment {
  /** The secret in base32, for manual entry. */
  secret: string;
  /** otpauth://totp/<issuer>:<account>?secret=…&issuer=…: what a QR code carries. */
  uri: string;
}

export type SecondFactorKind = 'totp' | 'recovery';

export interface TwoFactorOptions {
  /** The issuer apps show. */
  issuer: string;
  /** Recovery codes made at enrolment. */
  recoveryCodes: number;
  log?: Logger;
  /** The clock (ms), for the tests. */
  now?: () => number;
}

function totp(secret: Secret, issuer = '', label = 'account'): TOTP {
  return new TOTP({ issuer, label, secret, algorithm: 'SHA1', digits: TOTP_DIGITS, period: TOTP_PERIOD });
}

/** A recovery code as typed, without separators and in capitals; undefined when it cannot be one. */
function normalizedRecoveryCode(code: string): string | undefined {
  const plain = code.replace(/[\s-]/g, '').toUpperCase();
  return /^[A-Z2-7]{16}$/.test(plain) ? plain : undefined;
}

function recoveryHash(accountId: number, plain: string): string {
  return createHash('sha256').update(`${accountId}:${plain}`).digest('hex');
}

function newRecoveryCode(): string {
  let code = '';
  for (let i = 0; i < 16; i++) code += BASE32[randomInt(32)];
  return code.match(/.{4}/g)!.join('-');
}

export class TwoFactorService {
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    private readonly options: TwoFactorOptions,
  ) {
    this.log = options.log ?? silentLogger;
    this.now = options.now ?? Date.now;
  }

  /** Whether the account logs in with a second factor. */
  async enabled(accountId: number): Promise<boolean> {
    return (await this.store.twoFactor.get(accountId)) !== undefined;
  }

  /** A new secret for `account` (nothing is kept until `confirm`). */
  newEnrolment(account: AccountRecord): Enrolment {
    const secret = new Secret({ size: 20 });
    return { secret: secret.base32, uri: totp(secret, this.options.issuer, fullName(account)).toString() };
  }

  /**
   * Turns two-factor authentication on with `secret` (from newEnrolment) once `code` shows
   * that the user's app has it: resolves with the new recovery codes (to show once), or
   * undefined when the code is not right.
   */
  async confirm(account: AccountRecord, secret: string, code: string): Promise<string[] | undefined> {
    const step = this.matchingStep(secret, code);
    if (step === undefined) return undefined;
    const codes = Array.from({ length: this.options.recoveryCodes }, newRecoveryCode);
    const hashes = codes.map((c) => recoveryHash(account.id, normalizedRecoveryCode(c)!));
    const sealed = this.secrets.seal(secret, `totp:${account.id}`);
    // The confirming code's step is taken: it cannot log in afterwards.
    const outcome = await this.store.twoFactor.enable(account.id, sealed, step, hashes, this.now());
    if (outcome === 'on-already') {
      // Another session turned it on meanwhile: this (stale) enrolment replaces nothing.
      this.log.warn({ event: 'auth.x2auth.enrolment_stale', user: fullName(account) }, 'enrolment refused: two-factor authentication is on already');
      throw new ServiceError('two-factor authentication is on already (turned on by another session): this enrolment is void');
    }
    if (outcome === 'no-account') throw new ServiceError('the account is gone');
    this.log.info({ event: 'auth.x2auth.enabled', user: fullName(account), recoveryCodes: codes.length }, 'two-factor authentication turned on');
    return codes;
  }

  /** Turns it off. False when it was off. */
  async disable(account: AccountRecord, by: string): Promise<boolean> {
    const done = await this.store.twoFactor.disable(account.id);
    if (done) this.log.info({ event: 'auth.x2auth.disabled', user: fullName(account), by }, 'two-factor authentication turned off');
    return done;
  }

  async recoveryCodesLeft(accountId: number): Promise<number> {
    return this.store.twoFactor.recoveryCodesLeft(accountId);
  }

  /**
   * Checks a second factor of `kind` for the account: a TOTP code (taken once), or a
   * recovery code (used up). False for a wrong, reused or malformed code, or when two-factor
   * authentication is off.
   */
  async verify(account: AccountRecord, kind: SecondFactorKind, code: string): Promise<boolean> {
    if (code.length > MAX_CODE_LENGTH) return false;
    const record = await this.store.twoFactor.get(account.id);
    if (!record) return false;
    const user = fullName(account);
    if (kind === 'recovery') {
      const plain = normalizedRecoveryCode(code);
      if (!plain) return false;
      const used = await this.store.twoFactor.useRecoveryCode(account.id, recoveryHash(account.id, plain), this.now());
      if (used) {
        const left = await this.store.twoFactor.recoveryCodesLeft(account.id);
        this.log.warn({ event: 'auth.x2auth.recovery_used', user, left }, 'a recovery code was used');
      }
      return used;
    }
    let secret: string;
    try {
      secret = this.secrets.open(record.secret, `totp:${account.id}`);
    } catch (err) {
      this.log.error({ event: 'auth.x2auth.secret_unreadable', user, err }, 'the TOTP secret does not open');
      return false;
    }
    const step = this.matchingStep(secret, code);
    if (step === undefined) return false;
    if (step <= record.lastStep || !(await this.store.twoFactor.useStep(account.id, step))) {
      this.log.warn({ event: 'auth.x2auth.replayed', user }, 'a one-time code was used again');
      return false;
    }
    return true;
  }

  /** The time step `code` is right for (now, or one step off), or undefined. */
  private matchingStep(secret: string, code: string): number | undefined {
    const token = code.replace(/\s/g, '');
    if (!/^\d+$/.test(token) || token.length !== TOTP_DIGITS) return undefined;
    let parsed: Secret;
    try {
      parsed = Secret.fromBase32(secret);
    } catch {
      return undefined;
    }
    const timestamp = this.now();
    const t = totp(parsed);
    const delta = t.validate({ token, timestamp, window: TOTP_WINDOW });
    return delta === null ? undefined : t.counter({ timestamp }) + delta;
  }
}
