import type { AccountService } from '../../services/accounts.js';
import type { DatasetService } from '../../services/datasets.js';
import { Flag } from '../../services/mail/flags.js';
import { prepareMessage } from '../../services/mail/new-message.js';
import type { MailService } from '../../services/mail/service.js';
import type { RuleService } from '../../services/rules/service.js';
import type { AccountRecord } from '../../store/store.js';
import type { MailSubmitter } from './queue.js';

/** What final delivery uses. */
export interface LocalDeliveryDeps {
  readonly mail: MailService;
  readonly rules: RuleService;
  readonly datasets: DatasetService;
  readonly accounts: AccountService;
  /** Where messages that rules send (Redirect, Forward, Reply with) go. */
  readonly submitter: MailSubmitter;
  /** This server's name (Received, Message-ID of generated messages). */
  readonly hostName: string;
  readonly log: (line: string) => void;
}

/** What a local delivery knows about the message besides its bytes: one recipient's envelope. */
export interface DeliveryEnvelope {
  /** The reverse path (MAIL FROM) without angle brackets; '' for the null sender (bounces). */
  sender: string;
  /** The recipient as the client spelled it (RCPT TO), without angle brackets. */
  recipient: string;
  /** The recipient's account. */
  account: AccountRecord;
  /** True when the session was authenticated (a local account submitting); Mail Rules' "Source". */
  authenticated: boolean;
  /** The client's IP address. */
  remoteAddress: string;
}

/** Where one delivery put the message (Mail Rules may store into several mailboxes, or none). */
export interface DeliveryResult {
  mailbox: string;
  uid: number;
}

/**
 * Final delivery of a message to one local account. Today: into the account's INBOX, flagged
 * Recent. This is the one place Mail Rules plug into later (Store in, Discard, Redirect, Reply
 * with, ...): SMTP (and the outbound queue, for local recipients) call `deliver` per recipient.
 *
 * `raw` is the message as the transport passes it on (for SMTP: with its `Received:` trace
 * field already prepended). `Return-Path:` is added here, at final delivery, as RFC 5321
 * section 4.4 asks: a message a rule redirects or forwards must not carry it.
 *
 * `deliver` resolves only once the message is committed to the store, and throws when it
 * could not be stored (the storage limit, a store failure); the caller answers the client.
 */
export class LocalDelivery {
  private readonly mail: MailService;

  constructor(readonly deps: LocalDeliveryDeps) {
    this.mail = deps.mail;
  }

  async deliver(raw: Buffer, envelope: DeliveryEnvelope): Promise<DeliveryResult[]> {
    const message = Buffer.concat([Buffer.from(`Return-Path: <${envelope.sender}>\r\n`, 'utf8'), raw]);
    const box = await this.mail.access(envelope.account, 'INBOX', 'i');
    // MailService checks the storage limit again inside append (another delivery may have
    // filled the account since the caller's check): a StorageLimitError then.
    const [stored] = await this.mail.append(box, [prepareMessage(message, { flags: Flag.Recent, internalDate: Date.now() })]);
    return stored ? [{ mailbox: box.displayName, uid: stored.uid }] : [];
  }

  /**
   * Bytes the account may still take (undefined: no limit). The SMTP listener asks at RCPT
   * (452 when none is left) and before delivering (552 when the message does not fit).
   */
  async room(account: AccountRecord): Promise<number | undefined> {
    const { used, limit } = await this.mail.usage(account);
    return limit === undefined ? undefined : Math.max(0, limit - used);
  }

  /** The bytes `deliver` adds to a message for this envelope (for the storage-limit check). */
  static overhead(envelope: Pick<DeliveryEnvelope, 'sender'>): number {
    return Buffer.byteLength(`Return-Path: <${envelope.sender}>\r\n`, 'utf8');
  }
}
