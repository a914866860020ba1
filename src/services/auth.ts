import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';
import type { AccountRecord, LoginRecord, Store } from '../store/store.js';
import { fullName, type AccountService } from './accounts.js';
import { BAD_CREDENTIALS, ServiceError } from './errors.js';
import { cramMd5Digest, safeEqual, verifyPassword, VerifiedPasswordCache } from './passwords.js';

export interface Authenticated {
  account: AccountRecord;
  /** The account's previous successful and last failed logins, as they were before this one. */
  prevLogin: LoginRecord | null;
  lastFailedLogin: LoginRecord | null;
}

/** Counts recent failures per key (an address, an account) inside a sliding window. */
class FailureCounter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  private recent(key: string, now: number): number[] {
    const list = this.failures.get(key);
    if (!list) return [];
    const fresh = list.filter((t) => now - t < this.windowMs);
    if (fresh.length === 0) this.failures.delete(key);
    else if (fresh.length !== list.length) this.failures.set(key, fresh);
    return fresh;
  }

  exceeded(key: string, now = Date.now()): boolean {
    return this.recent(key, now).length >= this.limit;
  }

  add(key: string, now = Date.now()): void {
    const list = this.recent(key, now);
    list.push(now);
    this.failures.set(key, list);
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value!);
  }
}

type Limits = Config['limits'];

/**
 * Checks credentials for every protocol: clear text, CRAM-MD5, SASL PLAIN. Failed attempts
 * are delayed and counted per client address and per account; past the limit, attempts
 * are refused without checking the password until the window passes. Sign-ups are limited
 * per address in the same way.
 */
export class AuthService {
  private readonly byAddress: FailureCounter;
  private readonly byAccount: FailureCounter;
  private readonly signupsByAddress: FailureCounter;
  private readonly recoveriesByAddress: FailureCounter;
  private readonly recoveriesByAccount: FailureCounter;
  private readonly verified = new VerifiedPasswordCache();

  constructor(
    private readonly accounts: AccountService,
    private readonly store: Store,
    private readonly limits: Limits,
    private readonly serverName: string,
  ) {
    const windowMs = limits.loginFailureWindowSeconds * 1000;
    this.byAddress = new FailureCounter(limits.loginFailuresPerAddress, windowMs);
    this.byAccount = new FailureCounter(limits.loginFailuresPerAccount, windowMs);
    this.signupsByAddress = new FailureCounter(limits.loginFailuresPerAddress, windowMs);
    this.recoveriesByAddress = new FailureCounter(limits.loginFailuresPerAddress, windowMs);
    // An account's recovery address gets a few messages per window at most: the operation
    // must not become a way to flood someone's mailbox.
    this.recoveriesByAccount = new FailureCounter(3, windowMs);
  }

  /**
   * Admits one password-recovery request from `address` for `accountKey` (a name, whether
   * or not it exists): counted and delayed like a failed login, refused past the limits.
   */
  async admitRecovery(address: string, accountKey: string): Promise<void> {
    if (this.recoveriesByAddress.exceeded(address) || this.recoveriesByAccount.exceeded(accountKey)) {
      throw new ServiceError('too many password recovery requests; try again later');
    }
    this.recoveriesByAddress.add(address);
    this.recoveriesByAccount.add(accountKey);
    await sleep(this.limits.loginFailureDelayMs);
  }

  /**
   * Admits one sign-up attempt from `address`: counted and delayed like a failed login, and
   * refused past the per-address limit until the window passes, so that sign-up can be used
   * neither to probe account names nor to create accounts in bulk.
   */
  async admitSignup(address: string): Promise<void> {
    if (this.signupsByAddress.exceeded(address)) throw new ServiceError('too many sign-ups from this address; try again later');
    this.signupsByAddress.add(address);
    await sleep(this.limits.loginFailureDelayMs);
  }

  /** A fresh CRAM-MD5 challenge (RFC 2195 form). */
  newChallenge(): string {
    return `<${randomBytes(8).readBigUInt64BE().toString()}.${Date.now()}@${this.serverName}>`;
  }

  private checkThrottle(address: string, accountKey: string | undefined): void {
    if (this.byAddress.exceeded(address) || (accountKey !== undefined && this.byAccount.exceeded(accountKey))) {
      throw new ServiceError('too many failed login attempts; try again later');
    }
  }

  private async fail(address: string, account: AccountRecord | undefined, accountKey: string | undefined): Promise<never> {
    this.byAddress.add(address);
    if (accountKey !== undefined) this.byAccount.add(accountKey);
    if (account) await this.store.accounts.recordFailedLogin(account.id, { time: new Date(), address });
    await sleep(this.limits.loginFailureDelayMs);
    throw new ServiceError(BAD_CREDENTIALS);
  }

  private async succeed(account: AccountRecord, address: string): Promise<Authenticated> {
    const result = { account, prevLogin: account.prevLogin, lastFailedLogin: account.lastFailedLogin };
    await this.store.accounts.recordLogin(account.id, { time: new Date(), address });
    return result;
  }

  private accountKey(userName: string, domainHint: string | undefined): string | undefined {
    try {
      const q = this.accounts.parseAddress(userName, domainHint);
      return fullName(q);
    } catch {
      return undefined;
    }
  }

  async checkPassword(userName: string, password: string, domainHint: string | undefined, address: string): Promise<Authenticated> {
    const key = this.accountKey(userName, domainHint);
    this.checkThrottle(address, key);
    const account = key === undefined ? undefined : await this.accounts.find(key);
    if (!account) return this.fail(address, undefined, key);
    if (this.verified.has(account.id, account.credentialsVersion, password)) return this.succeed(account, address);
    if (!(await verifyPassword(password, account.passwordHash))) return this.fail(address, account, key);
    this.verified.add(account.id, account.credentialsVersion, password);
    return this.succeed(account, address);
  }

  /**
   * Checks the password of an account already logged in (passwordModify): throttled and
   * delayed like a login, but not recorded as one.
   */
  async checkCurrentPassword(account: AccountRecord, password: string, address: string): Promise<void> {
    const key = fullName(account);
    this.checkThrottle(address, key);
    const fresh = (await this.accounts.getById(account.id)) ?? account;
    if (!(await verifyPassword(password, fresh.passwordHash))) await this.fail(address, fresh, key);
  }

  /** Verifies the client's `user hexdigest` answer to `challenge`. */
  async checkCramMd5(challenge: string, answer: string, domainHint: string | undefined, address: string): Promise<Authenticated> {
    const space = answer.lastIndexOf(' ');
    const userName = space > 0 ? answer.slice(0, space) : '';
    const digest = space > 0 ? answer.slice(space + 1).toLowerCase() : '';
    const key = this.accountKey(userName, domainHint);
    this.checkThrottle(address, key);
    const account = key === undefined ? undefined : await this.accounts.find(key);
    if (!account || !account.cramMd5Context) return this.fail(address, account, key);
    if (!safeEqual(cramMd5Digest(account.cramMd5Context, challenge), digest)) return this.fail(address, account, key);
    return this.succeed(account, address);
  }

  /** Verifies a bare HMAC-MD5 digest (hex) of `nonce` for `userName` (the HTTP nonce login). */
  async checkNonceDigest(userName: string, nonce: string, digest: string, domainHint: string | undefined, address: string): Promise<Authenticated> {
    return this.checkCramMd5(nonce, `${userName} ${digest}`, domainHint, address);
  }

  /** SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`. */
  async checkPlain(message: Buffer, domainHint: string | undefined, address: string): Promise<Authenticated> {
    const parts = message.toString('utf8').split('\0');
    if (parts.length !== 3 || !parts[1]) throw new ServiceError('malformed SASL PLAIN data');
    const [authzid, authcid, password] = parts as [string, string, string];
    const result = await this.checkPassword(authcid, password, domainHint, address);
    if (authzid && authzid !== authcid) {
      const target = await this.accounts.find(authzid, domainHint);
      if (!target || target.id !== result.account.id) throw new ServiceError('authorization identity differs from the authenticated one');
    }
    return result;
  }
}
