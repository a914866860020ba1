import { createHash, randomBytes } from 'node:crypto';
import type { AccountRecord, Store } from '../store/store.js';
import type { EventBus } from '../bus/bus.js';
import { removeAllAppPasswords } from './app-passwords.js';
import type { MailSubmitter } from '../transports/smtp/queue.js';
import { checkPassword, fullName, type AccountService } from './accounts.js';
import { ServiceError } from './errors.js';
import { textMessage } from './mime/outgoing.js';

/** How long a reset link works. */
const TOKEN_LIFETIME_MS = 60 * 60 * 1000;

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Password recovery by E-mail (the recoverPassword operation). Passwords are stored as
 * one-way hashes, so none can be mailed: the account's recovery address gets a link to a
 * page of this server's HTTP listener where a new password is set. The link carries a
 * random single-use token valid for an hour; the store keeps only its SHA-256 hash.
 */
export class PasswordRecovery {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly submitter: MailSubmitter,
    private readonly hostName: string,
    /** The server's public HTTP base URL (known once the HTTP listener is bound). */
    private readonly baseUrl: () => string,
    /** Where a reset tells every node to end the account's sessions. */
    private readonly bus?: EventBus,
  ) {}

  /** Mails a reset link to the account's recovery address. */
  async send(account: AccountRecord): Promise<void> {
    const to = account.recoveryEmail;
    if (!to) throw new ServiceError('password recovery is not possible: the account has no recovery E-mail address');
    const token = randomBytes(32).toString('base64url');
    const expires = Date.now() + TOKEN_LIFETIME_MS;
    await this.store.accounts.addPasswordReset(hashToken(token), account.id, expires);
    const address = fullName(account);
    const link = `${this.baseUrl().replace(/\/+$/, '')}/ResetPassword?token=${token}`;
    const text =
      `Someone (hopefully you) asked to reset the password of ${address}.\r\n\r\n` +
      `To choose a new password, open this link within an hour:\r\n\r\n${link}\r\n\r\n` +
      `If you did not ask for this, ignore this message: the password stays as it is.\r\n`;
    const raw = await textMessage({
      hostName: this.hostName,
      timeZone: 'HostOS',
      fields: [
        ['From', { address: `postmaster@${this.hostName}`, realName: 'Mail Server' }],
        ['To', to],
        ['Subject', `Password reset for ${address}`],
        ['Auto-Submitted', 'auto-generated'],
      ],
      text,
    });
    // From postmaster of the server's own domain, which it signs for.
    await this.submitter.submit({ sender: '', recipients: [to], raw, source: 'authenticated', signAs: this.hostName });
  }

  /** The account a token resets, while it is valid. */
  async accountOf(token: string): Promise<AccountRecord | undefined> {
    const id = await this.store.accounts.findPasswordReset(hashToken(token), Date.now());
    return id === undefined ? undefined : this.accounts.getById(id);
  }

  /** Sets a new password with a token, using the token up. */
  async reset(token: string, password: string): Promise<AccountRecord> {
    const account = await this.accountOf(token);
    if (!account) throw new ServiceError('this link is not valid (it expired or was used already)');
    await this.accounts.checkPasswordChangeAllowed(account);
    // Checks the new password before using the token up, so that a refused one can be retried.
    checkPassword(password);
    if ((await this.store.accounts.takePasswordReset(hashToken(token), Date.now())) !== account.id) {
      throw new ServiceError('this link is not valid (it expired or was used already)');
    }
    await this.accounts.setPassword(account, password);
    // A reset removes the application passwords (someone else may have made them) and ends the sessions.
    await removeAllAppPasswords(this.store, account.id);
    this.bus?.publish('credentialsRevoked', { accountId: account.id });
    return account;
  }
}
