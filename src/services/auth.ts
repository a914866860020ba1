import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { randomBytes } from 'node:crypto';
import { defaultConfig, type Config } from '../config.js';
import type { AccountRecord, LoginRecord, Store } from '../store/store.js';
import { fullName, type AccountService } from './accounts.js';
import { BAD_CREDENTIALS, ServiceError, TOO_MANY_ATTEMPTS } from './errors.js';
import { FairLimiter } from './fair-limiter.js';
import { addressKey } from './client-address.js';
import { LoginGuard, SharedGuardState, type Budget, type GuardEvent, type GuardState } from './login-guard.js';
import {
  cramMd5Context,
  digestCredentials,
  hashPassword,
  passwordVerifier,
  scramCredentials,
  storedScramVerifier,
  VerifiedPasswordCache,
  type PasswordVerifier,
  type ScramHash,
} from './passwords.js';
import type { DigestOutcome, DigestRefusal } from './digest.js';
import { fakeScramVerifier, parseClientFinal, parseClientFirst, ScramError, serverFinal, serverFirst, verifyClientProof } from './scram.js';
import { AppPasswordService } from './app-passwords.js';
import { SecretBox } from './secret-box.js';
import { TwoFactorService, type SecondFactorKind } from './two-factor.js';

export interface Authenticated {
  account: AccountRecord;
  /**
   * What logged in: the main password (or what is made from it: CRAM-MD5, SCRAM, Digest), or
   * the application password `appPassword`. A session opened with an application password
   * manages no credentials (see login-security.ts).
   */
  credential: 'main' | 'app';
  appPassword?: string;
  /**
   * The password was right but the login is not complete: the account has two-factor
   * authentication and the protocol asks for it (XIMSS). Nothing is recorded of the login
   * (prevLogin, the remembered address, login.ok) until completeSecondFactor.
   */
  secondFactorDue: boolean;
  /** The account's previous successful and last failed logins, as they were before this one. */
  prevLogin: LoginRecord | null;
  lastFailedLogin: LoginRecord | null;
}

export interface AuthOptions {
  /** The password and CRAM-MD5 checks (the tests count or hold them). */
  verifier?: PasswordVerifier;
  /** Where attempts are counted (default: this process's memory; see GuardState). */
  state?: GuardState;
  /** Told of every refusal and admission (the tests). */
  observe?: (event: GuardEvent) => void;
  /** Where every login's outcome is logged (component auth). */
  log?: Logger;
  metrics?: Metrics;
  /** scrypt verifications running at once, server-wide (default: half the libuv thread pool). */
  concurrentHashes?: number;
  /** Seals TOTP secrets (default: a key of this process only, for the tests that make their own AuthService). */
  secrets?: SecretBox;
  /** Two-factor and application password settings (default: defaultConfig's). */
  security?: Config['auth'];
}

/**
 * Which credentials a login over `protocol` takes for an account (see AuthService.policy):
 * XIMSS over TCP and HTTP asks for the second factor itself, so it takes the main password
 * (then the second factor) and, only from accounts without two-factor authentication,
 * application passwords. The other protocols cannot ask for a second factor: from an
 * account with it on they take application passwords only.
 */
interface CredentialPolicy {
  main: boolean;
  apps: boolean;
  twoFactor: boolean;
}

type Limits = Config['limits'];

/** Who is logging in, for the log and the metrics: the protocol and the mechanism. */
export interface LoginWay {
  protocol: 'ximss' | 'http' | 'smtp' | 'dav' | 'xmpp' | 'sip';
  /** `password`: a name and a password as they are (XIMSS clear text, HTTP); `plain`, `login`, `scram-…`: those SASL mechanisms. */
  mechanism:
    | 'password'
    | 'plain'
    | 'login'
    | 'cram-md5'
    | 'nonce'
    | 'current-password'
    | 'scram-sha-1'
    | 'scram-sha-256'
    | 'digest'
    | 'totp'
    | 'recovery-code'
    /** A login completed by its second factor (logged as login.ok then). */
    | 'totp-login'
    | 'recovery-login';
}

/** An account name as attempted: the account it names, and the key its attempts count under. */
interface Identified {
  account: AccountRecord | undefined;
  key: string;
}

/** The store's key of the secret fake SCRAM salts are derived from (see fakeScramVerifier). */
const SCRAM_SECRET_KEY = 'scram-fake-salt-secret';

/** A SCRAM login that succeeded: the account, and the server's final message for the client (`v=…`). */
export interface ScramAuthenticated extends Authenticated {
  serverFinal: string;
}

const ACCOUNT_BUSY = 'too many login attempts on this account; try again later';
export const SECOND_FACTOR_LOCKED = 'too many wrong second factors on this account; try again later';

/** What a clear-text password turned out to be. */
type PasswordMatch = 'main' | { app: string } | false;

function credentialOf(match: PasswordMatch): { by: 'main' | 'app'; name?: string } {
  return typeof match === 'object' ? { by: 'app', name: match.app } : { by: 'main' };
}

/**
 * What a Digest answer (RFC 7616; SIP, RFC 3261 22) came to, for checkDigest's caller to
 * turn into its protocol's answer.
 */
export type DigestVerdict =
  /** The right answer; `stale` when its nonce had expired (challenge again with stale=true: the password is right). */
  | { outcome: 'ok'; account: AccountRecord; stale: boolean }
  /** Wrong credentials, or an unknown name: counted as a failed login, answered after the failure delay. */
  | { outcome: 'failed'; detail: string }
  /** Refused before any verification: the client address, or the account, has used up its budget. */
  | { outcome: 'refused'; detail: string }
  /**
   * An answer that tells nothing about the password (not one of our nonces, another realm, a
   * malformed one): no verdict, counted nowhere; the client is challenged again.
   */
  | { outcome: 'invalid'; detail: string };

/** Digest refusals that are decided before the password plays any part (see DigestVerdict 'invalid'). */
const DIGEST_NO_VERDICT: ReadonlySet<DigestRefusal> = new Set<DigestRefusal>(['malformed', 'algorithm', 'realm', 'nonce', 'opaque', 'qop']);

/** Thrown inside an attempt whose Digest answer proves nothing: the attempt is abandoned. */
class NoVerdict extends Error {}

/**
 * scrypt takes a libuv pool thread for tens of milliseconds. The pool (4 threads unless
 * UV_THREADPOOL_SIZE says otherwise) also serves file system calls and DNS look-ups, so
 * logins get half of it: a flood of logins slows logins down, not the rest of the server.
 */
function defaultConcurrentHashes(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.floor(pool / 2));
}

/**
 * Checks credentials for every protocol (XIMSS clear text, SASL PLAIN and CRAM-MD5 over TCP
 * and HTTP, the /XIMSSLogin/ parameter and nonce logins, SMTP AUTH, passwordModify), all
 * through one LoginGuard: an attempt is reserved against its client address's budget before
 * anything is looked up, so parallel attempts cannot slip past the limit; the account (every
 * alias of it) is slowed down past its own budget, never locked (see login-guard.ts).
 *
 * An unknown name costs what a wrong password costs: it is verified against a dummy scrypt
 * hash (or CRAM-MD5 context) made once at start. A failure is answered `loginFailureDelayMs`
 * after its verification started, on a timer. scrypt verifications run at most
 * `concurrentHashes` at once, the waiting ones served by client address in turn
 * (FairLimiter), so that a flood from some addresses does not queue everybody else behind it.
 *
 * Sign-ups and password-recovery requests are counted the same way, reserved before anything
 * is done: every request counts, whatever its outcome.
 */
export class AuthService {
  readonly guard: LoginGuard;
  private readonly verifier: PasswordVerifier;
  private readonly hashes: FairLimiter;
  private readonly verified = new VerifiedPasswordCache();
  /** What unknown accounts are verified against (never matches: its password is thrown away). */
  private readonly dummyHash: Promise<string>;
  private readonly dummyContext: string;
  private readonly signups: Budget;
  private readonly recoveriesByAddress: Budget;
  private readonly recoveriesByAccount: Budget;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly secrets = new Map<string, Promise<Buffer>>();
  /** TOTP second factors (enrolment, checks; every check through checkSecondFactor here). */
  readonly twoFactor: TwoFactorService;
  /** Named extra passwords, taken by every protocol's login (see policy). */
  readonly appPasswords: AppPasswordService;
  /** Wrong second factors per account: always in the store, shared by every node (see checkSecondFactor). */
  private readonly secondFactorState: GuardState;
  private readonly secondFactorBudget: Budget;

  constructor(
    private readonly accounts: AccountService,
    private readonly store: Store,
    private readonly limits: Limits,
    private readonly serverName: string,
    options: AuthOptions = {},
  ) {
    const windowMs = limits.loginFailureWindowSeconds * 1000;
    this.log = options.log ?? silentLogger;
    this.metrics = options.metrics;
    this.guard = new LoginGuard(
      {
        perAddress: limits.loginFailuresPerAddress,
        perAccount: limits.loginFailuresPerAccount,
        windowMs,
        slowdownMs: limits.accountSlowdownMs,
        // A slot further away than the time a client has to log in would come too late.
        horizonMs: limits.loginSeconds * 1000,
      },
      { state: options.state, observe: options.observe },
    );
    this.verifier = options.verifier ?? passwordVerifier;
    this.hashes = new FairLimiter(options.concurrentHashes ?? defaultConcurrentHashes());
    const secret = randomBytes(24).toString('base64');
    this.dummyHash = hashPassword(secret);
    this.dummyHash.catch(() => {}); // a failure surfaces where it is awaited
    this.dummyContext = cramMd5Context(secret);
    this.signups = { name: 'signup-address', limit: limits.loginFailuresPerAddress, windowMs };
    this.recoveriesByAddress = { name: 'recovery-address', limit: limits.loginFailuresPerAddress, windowMs };
    // An account's recovery address gets a few messages per window at most: the operation
    // must not become a way to flood someone's mailbox.
    this.recoveriesByAccount = { name: 'recovery-account', limit: 3, windowMs };
    const security = options.security ?? defaultConfig().auth;
    this.twoFactor = new TwoFactorService(store, options.secrets ?? new SecretBox(randomBytes(32)), {
      issuer: security.totpIssuer || serverName,
      recoveryCodes: security.recoveryCodes,
      log: this.log,
    });
    this.appPasswords = new AppPasswordService(store, accounts, security, this.log);
    this.secondFactorState = new SharedGuardState(store.shared);
    this.secondFactorBudget = { name: 'x2auth-account', limit: security.secondFactorFailures, windowMs: security.secondFactorWindowSeconds * 1000 };
  }

  /** Which credentials the account's login over `protocol` takes (see CredentialPolicy). */
  private async policy(account: AccountRecord, protocol: LoginWay['protocol']): Promise<CredentialPolicy> {
    const twoFactor = await this.twoFactor.enabled(account.id);
    const ximss = protocol === 'ximss' || protocol === 'http';
    return { main: ximss || !twoFactor, apps: !(ximss && twoFactor), twoFactor };
  }

  /** A fresh CRAM-MD5 challenge (RFC 2195 form). */
  newChallenge(): string {
    return `<${randomBytes(8).readBigUInt64BE().toString()}.${Date.now()}@${this.serverName}>`;
  }

  // -------------------------------------------------------------------------------------
  // Sign-up and password recovery

  /** Counts one request on `budget`/`key` before anything is done; refuses past the limit. */
  private async count(budget: Budget, key: string, refusal: string, address: string): Promise<void> {
    const { state, now } = this.guard;
    const ticket = await state.reserve(budget, key, now());
    if (!ticket) {
      this.log.warn({ event: 'limit.refused', budget: budget.name, subject: key, address }, refusal);
      return this.refuse(refusal);
    }
    // Every request counts, whatever comes of it.
    await state.settle(budget, ticket, true, now());
  }

  /**
   * Admits one password-recovery request from `address` for `userName` (resolved through
   * aliases, so that every name of an account shares its budget; an unknown name is counted
   * as normalized): counted before anything is done and delayed like a failed login, refused
   * past the limits. Resolves with the account named, if any.
   */
  async admitRecovery(address: string, userName: string, domainHint: string | undefined): Promise<AccountRecord | undefined> {
    const refusal = 'too many password recovery requests; try again later';
    await this.count(this.recoveriesByAddress, addressKey(address), refusal, address);
    const { account, key } = await this.identify(userName, domainHint);
    await this.count(this.recoveriesByAccount, key, refusal, address);
    await this.guard.wait(this.limits.loginFailureDelayMs);
    return account;
  }

  /**
   * Admits one sign-up attempt from `address`: counted before anything is done and delayed
   * like a failed login, refused past the per-address limit until the window passes, so that
   * sign-up can be used neither to probe account names nor to create accounts in bulk.
   */
  async admitSignup(address: string): Promise<void> {
    await this.count(this.signups, addressKey(address), 'too many sign-ups from this address; try again later', address);
    await this.guard.wait(this.limits.loginFailureDelayMs);
  }

  // -------------------------------------------------------------------------------------
  // Logins

  /** The account `userName` names (aliases and the default domain resolved) and its key. */
  private async identify(userName: string, domainHint: string | undefined): Promise<Identified> {
    const account = await this.accounts.find(userName, domainHint);
    if (account) return { account, key: fullName(account) };
    try {
      return { account: undefined, key: fullName(this.accounts.parseAddress(userName, domainHint)) };
    } catch {
      // Not an account name at all: counted as typed (bounded).
      return { account: undefined, key: `?${userName.trim().toLowerCase().slice(0, 256)}` };
    }
  }

  /** A refusal without verification, answered after the failure delay. */
  private async refuse(message: string): Promise<never> {
    await this.guard.wait(this.limits.loginFailureDelayMs);
    throw new ServiceError(message);
  }

  /**
   * One attempt, whatever the mechanism: reserved against the address before anything else,
   * counted against the account (waiting for its slot when it is slowed down), verified, and
   * settled. `verify` gets undefined for an unknown name and must do the same work then.
   * A failure is recorded on the account (lastFailedLogin) and answered after the delay.
   */
  private async attempt(
    address: string,
    way: LoginWay,
    identify: () => Promise<Identified>,
    verify: (account: AccountRecord | undefined) => Promise<boolean>,
    options: { ownerAddresses?: boolean; deferred?: (account: AccountRecord) => Promise<boolean> } = {},
  ): Promise<AccountRecord> {
    const attempt = await this.guard.begin(address);
    if (!attempt) {
      this.outcome('refused', way, address, undefined, 'too many failed logins from this address');
      return this.refuse(TOO_MANY_ATTEMPTS);
    }
    let account: AccountRecord | undefined;
    let right: boolean;
    let deadline: number;
    let key = '';
    try {
      const identified = await identify();
      account = identified.account;
      key = identified.key;
      // A second factor is not exempt at any address: the password step is no proof of ownership.
      const owners = options.ownerAddresses === false ? false : [account?.prevLogin?.address];
      if (!(await attempt.forAccount(identified.key, owners))) {
        await attempt.abandon();
        this.outcome('refused', way, address, key, 'too many failed logins on this account');
        return await this.refuse(ACCOUNT_BUSY);
      }
      deadline = this.guard.now() + this.limits.loginFailureDelayMs;
      right = (await verify(account)) && account !== undefined;
    } catch (err) {
      // No verdict: the attempt is released, counted nowhere.
      await attempt.abandon();
      throw err;
    }
    if (right && account) {
      // Not complete until its second factor: the address is not remembered as the owner's yet.
      const deferred = options.deferred ? await options.deferred(account) : false;
      await attempt.succeeded(!deferred);
      if (deferred) {
        this.log.info({ event: 'auth.x2auth.password_ok', user: key, address, protocol: way.protocol, mechanism: way.mechanism }, 'password right; the second factor is due');
      } else {
        this.outcome('ok', way, address, key);
      }
      return account;
    }
    await attempt.failed();
    this.outcome('failed', way, address, key, account ? 'wrong credentials' : 'unknown account');
    if (account) await this.store.accounts.recordFailedLogin(account.id, { time: new Date(), address });
    await this.guard.wait(deadline - this.guard.now());
    throw new ServiceError(BAD_CREDENTIALS);
  }

  /** Logs a login's outcome (never the credentials) and counts it. */
  private outcome(outcome: 'ok' | 'failed' | 'refused', way: LoginWay, address: string, user: string | undefined, reason?: string): void {
    if (way.mechanism === 'totp' || way.mechanism === 'recovery-code') {
      // A second factor is no login of its own: counted and logged apart.
      this.metrics?.secondFactors.inc({ method: way.mechanism, outcome });
      const fields = { event: `auth.x2auth.${outcome}`, user, address, protocol: way.protocol, method: way.mechanism, ...(reason ? { reason } : {}) };
      if (outcome === 'ok') this.log.info(fields, 'second factor accepted');
      else this.log.warn(fields, outcome === 'failed' ? 'second factor failed' : 'second factor refused');
      return;
    }
    this.metrics?.logins.inc({ protocol: way.protocol, outcome });
    const fields = { event: `login.${outcome}`, user, address, protocol: way.protocol, mechanism: way.mechanism, ...(reason ? { reason } : {}) };
    if (outcome === 'ok') this.log.info(fields, 'login');
    else this.log.warn(fields, outcome === 'failed' ? 'login failed' : 'login refused');
  }

  /** scrypt, limited server-wide and served by client address in turn. */
  private verifyHash(address: string, password: string, stored: string): Promise<boolean> {
    return this.hashes.run(addressKey(address), () => this.verifier.verifyPassword(password, stored));
  }

  /**
   * A clear-text password of the account, as `protocol` takes it (see policy): the main
   * password (`main`), or one of its application passwords (`app`), or neither (false).
   */
  private async verifyPassword(
    address: string,
    account: AccountRecord | undefined,
    password: string,
    protocol: LoginWay['protocol'],
  ): Promise<PasswordMatch> {
    if (!account) {
      await this.verifyHash(address, password, await this.dummyHash);
      return false;
    }
    const policy = await this.policy(account, protocol);
    if (policy.main) {
      if (this.verified.has(account.id, account.credentialsVersion, password)) return 'main';
      const right = await this.verifyHash(address, password, account.passwordHash);
      if (right) {
        this.verified.add(account.id, account.credentialsVersion, password);
        return 'main';
      }
    }
    if (policy.apps) {
      const app = await this.appPasswords.match(account, password, (candidate, hash) => this.verifyHash(address, candidate, hash));
      if (app) {
        this.log.info({ event: 'auth.appPassword.used', user: fullName(account), name: app.name, protocol, address }, 'application password used');
        return { app: app.name };
      }
    }
    if (!policy.main && policy.twoFactor) {
      // Logged, so that a user whose mail client stopped working can be told why.
      this.log.info(
        { event: 'auth.x2auth.app_password_required', user: fullName(account), protocol, address },
        'a login of an account with two-factor authentication failed: only its application passwords are taken here',
      );
    }
    return false;
  }

  private async succeed(
    account: AccountRecord,
    address: string,
    credential: { by: 'main' | 'app'; name?: string } = { by: 'main' },
    secondFactorDue = false,
  ): Promise<Authenticated> {
    const result: Authenticated = {
      account,
      prevLogin: account.prevLogin,
      lastFailedLogin: account.lastFailedLogin,
      credential: credential.by,
      ...(credential.name !== undefined ? { appPassword: credential.name } : {}),
      secondFactorDue,
    };
    if (!secondFactorDue) await this.store.accounts.recordLogin(account.id, { time: new Date(), address });
    return result;
  }

  /** Whether a right password of `account` over `protocol` still needs the second factor (XIMSS with two-factor authentication on). */
  private async secondFactorDue(account: AccountRecord, protocol: LoginWay['protocol']): Promise<boolean> {
    return (protocol === 'ximss' || protocol === 'http') && (await this.twoFactor.enabled(account.id));
  }

  /** A name and its password (`mechanism`: how they came, for the log: SMTP AUTH PLAIN and LOGIN hand them over decoded). */
  async checkPassword(
    userName: string,
    password: string,
    domainHint: string | undefined,
    address: string,
    protocol: LoginWay['protocol'] = 'ximss',
    mechanism: LoginWay['mechanism'] = 'password',
  ): Promise<Authenticated> {
    const matched: { by: PasswordMatch } = { by: false };
    let due = false;
    const account = await this.attempt(
      address,
      { protocol, mechanism },
      () => this.identify(userName, domainHint),
      async (account) => (matched.by = await this.verifyPassword(address, account, password, protocol)) !== false,
      { deferred: async (account) => (due = await this.secondFactorDue(account, protocol)) },
    );
    // Only the main password's own credentials are made from it.
    if (matched.by === 'main') await this.keepCredentials(account, password);
    return this.succeed(account, address, credentialOf(matched.by), due);
  }

  /**
   * The second factor of an account whose password was right (x2AuthComplete): counted like
   * a login attempt (the client address's and the account's budgets, the failure delay), so
   * that codes cannot be guessed faster than passwords. Throws ServiceError when wrong.
   */
  async checkSecondFactor(account: AccountRecord, kind: SecondFactorKind, code: string, address: string, protocol: LoginWay['protocol']): Promise<void> {
    const user = fullName(account);
    const { now } = this.guard;
    // The account's own budget of wrong second factors, counted in the store (every node,
    // every address): past it, refused until the window passes, whoever asks.
    const ticket = await this.secondFactorState.reserve(this.secondFactorBudget, user, now());
    if (!ticket) {
      this.metrics?.secondFactors.inc({ method: kind === 'totp' ? 'totp' : 'recovery-code', outcome: 'refused' });
      this.log.warn({ event: 'auth.x2auth.locked', user, address, protocol, limit: this.secondFactorBudget.limit }, 'second factor refused: too many wrong codes on this account');
      return this.refuse(SECOND_FACTOR_LOCKED);
    }
    let failed = false;
    try {
      await this.attempt(
        address,
        { protocol, mechanism: kind === 'totp' ? 'totp' : 'recovery-code' },
        async () => {
          const fresh = (await this.accounts.getById(account.id)) ?? account;
          return { account: fresh, key: fullName(fresh) };
        },
        async (fresh) => fresh !== undefined && this.twoFactor.verify(fresh, kind, code),
        { ownerAddresses: false },
      );
    } catch (err) {
      if (err instanceof ServiceError && err.message === BAD_CREDENTIALS) {
        failed = true;
        throw new ServiceError(kind === 'totp' ? 'incorrect or already used one-time code' : 'incorrect or already used recovery code');
      }
      throw err;
    } finally {
      await this.secondFactorState.settle(this.secondFactorBudget, ticket, failed, now());
    }
  }

  /**
   * A login whose second factor was right is complete: now it is recorded (prevLogin, the
   * address remembered as the owner's, login.ok), not at its password step.
   */
  async completeSecondFactor(account: AccountRecord, address: string, protocol: LoginWay['protocol'], kind: SecondFactorKind): Promise<void> {
    const user = fullName(account);
    await this.guard.state.remember(user, addressKey(address), this.guard.now());
    await this.store.accounts.recordLogin(account.id, { time: new Date(), address });
    this.outcome('ok', { protocol, mechanism: kind === 'totp' ? 'totp-login' : 'recovery-login' }, address, user);
  }

  /**
   * Checks the password of an account already logged in (passwordModify): guarded and
   * delayed like a login, but not recorded as one when right.
   */
  async checkCurrentPassword(account: AccountRecord, password: string, address: string): Promise<void> {
    await this.attempt(
      address,
      { protocol: 'ximss', mechanism: 'current-password' },
      async () => {
        const fresh = (await this.accounts.getById(account.id)) ?? account;
        return { account: fresh, key: fullName(fresh) };
      },
      async (fresh) => fresh !== undefined && this.verifyHash(address, password, fresh.passwordHash),
    );
  }

  /** Verifies the client's `user hexdigest` answer to `challenge`. */
  async checkCramMd5(
    challenge: string,
    answer: string,
    domainHint: string | undefined,
    address: string,
    way: LoginWay = { protocol: 'ximss', mechanism: 'cram-md5' },
  ): Promise<Authenticated> {
    const space = answer.lastIndexOf(' ');
    const userName = space > 0 ? answer.slice(0, space) : '';
    const digest = space > 0 ? answer.slice(space + 1).toLowerCase() : '';
    let due = false;
    const account = await this.attempt(
      address,
      way,
      () => this.identify(userName, domainHint),
      async (account) => {
        // Without a context (or an account) the dummy one does the same work.
        const context = account?.cramMd5Context || this.dummyContext;
        const right = this.verifier.verifyDigest(context, challenge, digest) && Boolean(account?.cramMd5Context);
        // The main password's context: not for a protocol that cannot ask for a second factor (see policy).
        return right && account !== undefined && (await this.policy(account, way.protocol)).main;
      },
      { deferred: async (account) => (due = await this.secondFactorDue(account, way.protocol)) },
    );
    return this.succeed(account, address, { by: 'main' }, due);
  }

  /** Verifies a bare HMAC-MD5 digest (hex) of `nonce` for `userName` (the HTTP nonce login). */
  async checkNonceDigest(userName: string, nonce: string, digest: string, domainHint: string | undefined, address: string): Promise<Authenticated> {
    return this.checkCramMd5(nonce, `${userName} ${digest}`, domainHint, address, { protocol: 'http', mechanism: 'nonce' });
  }

  /** SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`. */
  async checkPlain(message: Buffer, domainHint: string | undefined, address: string, protocol: LoginWay['protocol'] = 'ximss'): Promise<Authenticated> {
    const parts = message.toString('utf8').split('\0');
    if (parts.length !== 3 || !parts[1]) throw new ServiceError('malformed SASL PLAIN data');
    const [authzid, authcid, password] = parts as [string, string, string];
    const matched: { by: PasswordMatch } = { by: false };
    let due = false;
    const account = await this.attempt(
      address,
      { protocol, mechanism: 'plain' },
      () => this.identify(authcid, domainHint),
      async (account) => (matched.by = await this.verifyPassword(address, account, password, protocol)) !== false,
      { deferred: async (account) => (due = await this.secondFactorDue(account, protocol)) },
    );
    if (matched.by === 'main') await this.keepCredentials(account, password);
    const result = await this.succeed(account, address, credentialOf(matched.by), due);
    if (authzid && authzid !== authcid) {
      const target = await this.accounts.find(authzid, domainHint);
      if (!target || target.id !== result.account.id) throw new ServiceError('authorization identity differs from the authenticated one');
    }
    return result;
  }

  /**
   * SASL SCRAM-SHA-1 or SCRAM-SHA-256 (RFC 5802, 7677; no channel binding) as one login
   * attempt spanning both steps: `clientFirst` is the client's first message; `exchange`
   * sends the server's first message and resolves with the client's final one. The attempt
   * is reserved and counted like any other (a wrong proof is a failed login, answered after
   * the failure delay). A name without verifiers, known or not, gets a fake salt that stays
   * the same (see fakeScramVerifier) and fails: its clients fall back to PLAIN, after which
   * the verifiers are kept. A malformed message throws ScramError; the attempt then counts
   * nowhere, as for any attempt without a verdict.
   */
  async checkScram(
    hash: ScramHash,
    clientFirst: string,
    domainHint: string | undefined,
    address: string,
    exchange: (serverFirst: string) => Promise<string>,
    protocol: LoginWay['protocol'] = 'xmpp',
  ): Promise<ScramAuthenticated> {
    const first = parseClientFirst(clientFirst);
    let final = '';
    let appName: string | undefined;
    const secret = await this.scramFakeSecret();
    const account = await this.attempt(
      address,
      { protocol, mechanism: hash === 'SHA-1' ? 'scram-sha-1' : 'scram-sha-256' },
      () => this.identify(first.user, domainHint),
      async (account) => {
        // Every password SCRAM may take here shares one salt (see scramCredentialsLike): the
        // main password's verifier names it, or the first application password's.
        const policy = account ? await this.policy(account, protocol) : undefined;
        const main = storedScramVerifier(account?.scramCredentials, hash);
        const apps =
          account && policy?.apps
            ? (await this.appPasswords.list(account.id)).flatMap((r) => {
                const v = storedScramVerifier(r.scram, hash);
                return v ? [{ name: r.name as string | undefined, verifier: v }] : [];
              })
            : [];
        const base = main ?? apps[0]?.verifier;
        const candidates = [
          ...(main && policy?.main ? [{ name: undefined as string | undefined, verifier: main }] : []),
          ...apps.filter((a) => base && a.verifier.salt === base.salt && a.verifier.iterations === base.iterations),
        ];
        const stored = candidates.length > 0 ? base : undefined;
        const verifier = stored ?? fakeScramVerifier(secret, hash, first.user);
        const server = serverFirst(first.clientNonce, verifier);
        const clientFinal = parseClientFinal(await exchange(server.message));
        if (clientFinal.nonce !== server.nonce) throw new ScramError('malformed-request', 'the nonce differs from the one agreed');
        if (Buffer.from(clientFinal.channelBinding, 'base64').toString('latin1') !== first.gs2Header) {
          throw new ScramError('malformed-request', 'the channel binding data differs from the GS2 header');
        }
        const authMessage = `${first.bare},${server.message},${clientFinal.withoutProof}`;
        // The fake verifier goes through the same computation and never matches.
        const tried = candidates.length > 0 ? candidates : [{ name: undefined, verifier }];
        const matched = tried.find((c) => verifyClientProof(hash, c.verifier, authMessage, clientFinal.proof));
        const right = matched !== undefined && stored !== undefined;
        if (right) {
          final = serverFinal(hash, matched.verifier, authMessage);
          if (matched.name !== undefined && account) {
            appName = matched.name;
            this.appPasswords.used(account, matched.name);
            this.log.info({ event: 'auth.appPassword.used', user: fullName(account), name: matched.name, protocol, address }, 'application password used');
          }
        }
        return right;
      },
    );
    const result = await this.succeed(account, address, appName !== undefined ? { by: 'app', name: appName } : { by: 'main' });
    if (first.authzid) {
      const target = await this.accounts.find(first.authzid, domainHint);
      if (!target || target.id !== result.account.id) throw new ScramError('invalid-authzid', 'authorization identity differs from the authenticated one');
    }
    return { ...result, serverFinal: final };
  }

  /**
   * A Digest answer (SIP REGISTER and, later, other Digest users) as one login attempt:
   * reserved against the client address, counted against the account `userName` names in
   * `domain` (aliases resolved), verified by `verify` with the account's stored Digest
   * credentials (undefined for an unknown name: `verify` must do the same work then, as
   * DigestAuthenticator.verify does), and settled. An answer that was right but late
   * (`stale`) is a success: it proved the password. Never throws a ServiceError: every
   * outcome is a DigestVerdict; failures and refusals resolve after the failure delay.
   */
  async checkDigest(
    userName: string,
    domain: string,
    address: string,
    verify: (credentials: string | null | undefined) => DigestOutcome,
    protocol: LoginWay['protocol'] = 'sip',
  ): Promise<DigestVerdict> {
    let stale = false;
    try {
      const account = await this.attempt(
        address,
        { protocol, mechanism: 'digest' },
        () => this.identify(userName, domain),
        async (account) => {
          // The main password's HA1 (unless the account has a second factor) and then each
          // application password's, until one answers.
          const policy = account ? await this.policy(account, protocol) : undefined;
          const candidates: { name: string | undefined; credentials: string | null | undefined }[] = [];
          if (!account || policy?.main) candidates.push({ name: undefined, credentials: account?.digestCredentials });
          if (account && policy?.apps) {
            for (const r of await this.appPasswords.list(account.id)) if (r.digest) candidates.push({ name: r.name, credentials: r.digest });
          }
          if (candidates.length === 0) candidates.push({ name: undefined, credentials: undefined });
          for (const candidate of candidates) {
            const outcome = verify(candidate.credentials);
            if (outcome.outcome === 'refused' && DIGEST_NO_VERDICT.has(outcome.reason)) throw new NoVerdict(outcome.detail);
            if (outcome.outcome === 'refused') continue;
            stale = outcome.outcome === 'stale';
            if (candidate.name !== undefined && account) {
              this.appPasswords.used(account, candidate.name);
              this.log.info({ event: 'auth.appPassword.used', user: fullName(account), name: candidate.name, protocol, address }, 'application password used');
            }
            return true;
          }
          return false;
        },
      );
      return { outcome: 'ok', account, stale };
    } catch (err) {
      if (err instanceof NoVerdict) return { outcome: 'invalid', detail: err.message };
      if (err instanceof ServiceError && err.message === BAD_CREDENTIALS) return { outcome: 'failed', detail: err.message };
      if (err instanceof ServiceError && (err.message === TOO_MANY_ATTEMPTS || err.message === ACCOUNT_BUSY)) return { outcome: 'refused', detail: err.message };
      throw err;
    }
  }

  /** The server's secret for fake SCRAM salts: made once and kept in the store (the same after a restart and on every node). */
  private scramFakeSecret(): Promise<Buffer> {
    return this.clusterSecret(SCRAM_SECRET_KEY);
  }

  /**
   * A secret of the whole cluster under `key` (fake SCRAM salts, SIP Digest nonces): made by
   * the first process that needs it, kept in the store, the same on every node and after a
   * restart (one atomic update, as the cluster key).
   */
  clusterSecret(key: string): Promise<Buffer> {
    let secret = this.secrets.get(key);
    if (!secret) {
      secret = (async () => {
        const candidate = randomBytes(32).toString('base64');
        // Scope `scram`: where the first of these secrets was kept.
        const kept = await this.store.shared.update('scram', key, Date.now(), (value) => {
          const chosen = typeof value === 'string' ? value : candidate;
          return { value: chosen, expires: Number.MAX_SAFE_INTEGER, result: chosen };
        });
        return Buffer.from(kept, 'base64');
      })();
      this.secrets.set(key, secret);
      const made = secret;
      made.catch(() => {
        if (this.secrets.get(key) === made) this.secrets.delete(key);
      });
    }
    return secret;
  }

  /**
   * After a clear-text password was verified for an account made before SCRAM verifiers or
   * Digest credentials were kept: makes and keeps the missing ones, unless the password
   * changed meanwhile (the store's check on credentialsVersion), so that its SCRAM logins and
   * SIP Digest authentication work from now on. A failure costs only that.
   */
  private async keepCredentials(account: AccountRecord, password: string): Promise<void> {
    const user = fullName(account);
    const kinds: { kind: string; missing: boolean; keep: () => Promise<boolean> }[] = [
      {
        kind: 'scram',
        missing: !account.scramCredentials,
        keep: async () => this.store.accounts.setScramCredentials(account.id, await scramCredentials(password), account.credentialsVersion),
      },
      {
        kind: 'digest',
        missing: !account.digestCredentials,
        keep: () =>
          this.store.accounts.setDigestCredentials(account.id, digestCredentials(account.name, account.domain, password), account.credentialsVersion),
      },
    ];
    for (const { kind, missing, keep } of kinds) {
      if (!missing) continue;
      try {
        if (await keep()) this.log.info({ event: `auth.${kind}_kept`, user }, `${kind} credentials made for the account`);
      } catch (err) {
        this.log.warn({ event: `auth.${kind}_keep_failed`, user, err }, `${kind} credentials could not be kept`);
      }
    }
  }
}
