import { silentLogger, type Logger } from '../log.js';
import type { Config } from '../config.js';
import type { AppPasswordRecord } from '../store/login-security.js';
import type { AccountRecord, Store } from '../store/store.js';
import { fullName, type AccountService } from './accounts.js';
import { ServiceError } from './errors.js';
import { digestCredentials, hashPassword, scramCredentialsLike, VerifiedPasswordCache, verifyPassword } from './passwords.js';

/**
 * Application passwords ("spec passwords" in XIMSS: passwordModify `name`/`remove`,
 * listSpecPasswords): named extra passwords for the clients that cannot do a second factor
 * (mail clients over SMTP, XMPP, SIP phones, DAV), each revocable on its own.
 *
 * What is kept of each, and why:
 * - an scrypt hash, as for the main password: clear-text logins (XIMSS, SMTP AUTH PLAIN and
 *   LOGIN, XMPP PLAIN, DAV Basic);
 * - SCRAM-SHA-1/256 verifiers made with the account's own SCRAM salt and iteration count
 *   (see scramCredentialsLike): XMPP SCRAM. After the main password changes (a new salt) an
 *   older application password no longer answers SCRAM; PLAIN still takes it;
 * - Digest HA1 values for the account's realm, as the main password keeps: SIP. HA1 is
 *   password-equivalent within its realm, as for the main password;
 * - no CRAM-MD5 context: it would be password-equivalent everywhere CRAM-MD5 is offered, for
 *   a legacy mechanism the clients of application passwords do not need.
 *
 * Nothing is cached across logins but verified scrypt results, keyed by the stored hash: the
 * records are read from the store at every login, so a password removed on any process stops
 * working at once everywhere.
 */
export type AppPasswordMatch = { name: string } | undefined;

/** Uses are recorded at most this often per password. */
const TOUCH_GRANULARITY_MS = 60_000;
const MIN_LENGTH = 8;
const MAX_LENGTH = 1024;

export class AppPasswordService {
  private readonly verified = new VerifiedPasswordCache();
  private readonly log: Logger;

  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly settings: Config['auth'],
    log?: Logger,
  ) {
    this.log = log ?? silentLogger;
  }

  /** A label as given, checked: not empty, not too long, no control characters. */
  checkName(name: string): string {
    const limit = this.settings.appPasswordNameLength;
    if (name.trim() === '') throw new ServiceError('the application password name is empty');
    if ([...name].length > limit) throw new ServiceError(`the application password name is too long (at most ${limit} characters)`);
    if (/[\u0000-\u001f\u007f]/.test(name)) throw new ServiceError('the application password name has control characters');
    return name;
  }

  list(accountId: number): Promise<AppPasswordRecord[]> {
    return this.store.appPasswords.list(accountId);
  }

  /** Adds (or replaces) the application password `name` of `account`. */
  async set(account: AccountRecord, name: string, password: string): Promise<'added' | 'replaced'> {
    this.checkName(name);
    if ([...password].length < MIN_LENGTH) throw new ServiceError(`an application password has at least ${MIN_LENGTH} characters`);
    if (password.length > MAX_LENGTH) throw new ServiceError('the password is too long');
    const limit = this.settings.appPasswordsPerAccount;
    if (limit === 0) throw new ServiceError('application passwords are not allowed on this server');
    // The account's current SCRAM salt (see scramCredentialsLike).
    const fresh = (await this.accounts.getById(account.id)) ?? account;
    // Not the main password: as an application password it would open, without the second
    // factor, every protocol that cannot ask for one.
    if (fresh.passwordHash && (await verifyPassword(password, fresh.passwordHash))) {
      this.log.warn({ event: 'auth.appPassword.refused_main', user: fullName(account), name }, 'application password refused: it is the account password');
      throw new ServiceError('an application password must differ from the account password');
    }
    const [hash, scram] = await Promise.all([hashPassword(password), scramCredentialsLike(password, fresh.scramCredentials)]);
    const digest = digestCredentials(fresh.name, fresh.domain, password);
    const outcome = await this.store.appPasswords.set({ accountId: account.id, name, hash, scram, digest, created: Date.now() }, limit);
    const user = fullName(account);
    if (outcome === 'limit') {
      this.log.warn({ event: 'auth.appPassword.limit', user, limit }, 'application password refused: too many');
      throw new ServiceError(`too many application passwords (at most ${limit})`);
    }
    if (outcome === 'no-account') throw new ServiceError('the account is gone');
    this.log.info({ event: `auth.appPassword.${outcome}`, user, name }, `application password ${outcome}`);
    return outcome;
  }

  /** Removes the application password `name`: it stops working at once, on every node. */
  async remove(account: AccountRecord, name: string): Promise<void> {
    if (!(await this.store.appPasswords.remove(account.id, name))) throw new ServiceError('no application password of this name');
    this.log.info({ event: 'auth.appPassword.removed', user: fullName(account), name }, 'application password removed');
  }

  /**
   * Removes every application password of the account (its main password changed or was
   * reset: an application password made by whoever had it must not outlive the change).
   */
  async removeAll(account: AccountRecord, why: string): Promise<number> {
    const removed = await removeAllAppPasswords(this.store, account.id);
    if (removed > 0) this.log.info({ event: 'auth.appPassword.removed_all', user: fullName(account), removed, why }, 'application passwords removed');
    return removed;
  }

  /**
   * The application password of the account that `password` is, if any: each verified with
   * `verifyHash` (the caller's limited scrypt), unless verified already against the same
   * stored hash. Records the use.
   */
  async match(account: AccountRecord, password: string, verifyHash: (password: string, hash: string) => Promise<boolean>): Promise<AppPasswordMatch> {
    const records = await this.store.appPasswords.list(account.id);
    let found = records.find((r) => this.verified.has(account.id, 0, `${r.hash}\0${password}`));
    if (!found) {
      for (const record of records) {
        if (await verifyHash(password, record.hash)) {
          this.verified.add(account.id, 0, `${record.hash}\0${password}`);
          found = record;
          break;
        }
      }
    }
    if (!found) return undefined;
    this.used(account, found.name);
    return { name: found.name };
  }

  /** Records a use of `name` (at most once a minute; a failure costs only the record). */
  used(account: AccountRecord, name: string): void {
    this.store.appPasswords.touch(account.id, name, Date.now(), TOUCH_GRANULARITY_MS).catch((err: unknown) => {
      this.log.warn({ event: 'auth.appPassword.touch_failed', user: fullName(account), err }, 'recording an application password use failed');
    });
  }
}

/** Removes every application password of account `accountId` (also for the CLI, which has no AuthService); how many went. */
export async function removeAllAppPasswords(store: Store, accountId: number): Promise<number> {
  let removed = 0;
  for (const record of await store.appPasswords.list(accountId)) if (await store.appPasswords.remove(accountId, record.name)) removed++;
  return removed;
}
