import { errorText, type Logger } from '../../log.js';
import { fullName, type AccountService } from '../../services/accounts.js';
import type { DatasetService } from '../../services/datasets.js';
import { ServiceError } from '../../services/errors.js';
import { prepareMessage } from '../../services/mail/new-message.js';
import type { MailboxHandle, MailService } from '../../services/mail/service.js';
import type { PlannedCopy, RuleService } from '../../services/rules/service.js';
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
  readonly log: Logger;
  /**
   * Told of each message stored for an account (after the copies are committed): the calendar
   * applies meeting replies there. It must not throw; the delivery is done whatever it does.
   */
  readonly delivered?: (account: AccountRecord, raw: Buffer) => Promise<void>;
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

/** What happened to one recipient's copy. */
export interface DeliveryOutcome {
  /** The copies stored (none when a rule discarded the message). */
  stored: DeliveryResult[];
  /** Set when a rule refused the message ("Reject with"): the text for the sender. */
  rejected?: string;
}

export interface DeliveryOptions {
  /**
   * Makes the delivery idempotent (the queue passes one per queued recipient): stores and
   * messages sent by rules are keyed on it, so that a delivery re-run after a crash does not
   * store or send anything twice.
   */
  key?: string;
  /**
   * Where the default copy goes instead of INBOX (remote mail accounts deliver to the mailbox
   * their record names; made when missing); Store in copies of the rules are not affected.
   */
  mailbox?: string;
}

/** The field final delivery puts on top of each stored copy (RFC 5321 section 4.4). */
function returnPathField(sender: string): string {
  return `Return-Path: <${sender}>\r\n`;
}

/**
 * Final delivery of a message to one local account, through the account's Mail Rules: SMTP
 * (and the outbound queue, for local recipients) call `deliver` per recipient.
 *
 * `raw` is the message as the transport passes it on (for SMTP: with its `Received:` trace
 * field already prepended). `Return-Path:` is added here, at final delivery, to each stored
 * copy, as RFC 5321 section 4.4 asks: a message a rule redirects or forwards does not carry it.
 *
 * The rules decide first (RuleService.planDelivery: copies, messages to send, addresses to
 * remember); then every copy is stored (Store in copies in rule order, the INBOX copy last
 * unless a rule discarded or rejected the message), and only then are messages sent and
 * addresses remembered. So a delivery that fails to store sends nothing.
 *
 * `deliver` resolves only once the copies are committed to the store, and throws when they
 * could not be stored (the storage limit, a store failure); the caller answers the client.
 * A Store in that cannot be done (a pure folder, an alias to a mailbox the account may not
 * write) is logged and the message goes to INBOX instead. A message rules fail to queue for
 * sending fails the delivery when it can be retried safely (with `options.key`: nothing is
 * stored or sent twice) or when the message was stored nowhere (it would be lost); else it
 * is logged.
 */
export class LocalDelivery {
  private readonly mail: MailService;

  constructor(readonly deps: LocalDeliveryDeps) {
    this.mail = deps.mail;
  }

  async deliver(raw: Buffer, envelope: DeliveryEnvelope, options: DeliveryOptions = {}): Promise<DeliveryOutcome> {
    const { account } = envelope;
    const { rules, datasets, submitter, log } = this.deps;
    const who = fullName(account);
    const key = options.key;
    const plan = await rules.planDelivery({
      account,
      raw,
      sender: envelope.sender,
      recipient: envelope.recipient,
      authenticated: envelope.authenticated,
      hostName: this.deps.hostName,
      inDataset: (dataset, address) => datasets.hasAddress(account, dataset, address),
      log,
    });

    const stored: DeliveryResult[] = [];
    let fallback: PlannedCopy | undefined;
    for (const copy of plan.copies) {
      let box: MailboxHandle;
      try {
        box = await this.mail.access(account, copy.mailbox, 'i', { mailboxClass: '' });
      } catch (err) {
        if (!(err instanceof ServiceError)) throw err;
        log.warn({ event: 'delivery.store_failed', account: who, mailbox: copy.mailbox, error: err.message }, 'Store in failed; the message goes to INBOX');
        fallback ??= { ...copy, ordinal: 0, mailbox: 'INBOX' };
        continue;
      }
      stored.push(...(await this.store(box, copy, envelope, key)));
    }
    const inbox = plan.inbox ?? fallback;
    if (inbox) stored.push(...(await this.store(await this.mail.access(account, options.mailbox ?? 'INBOX', 'i', options.mailbox === undefined ? undefined : { mailboxClass: '' }), inbox, envelope, key)));

    let failed = 0;
    for (const send of plan.sends) {
      let claimed: number | undefined;
      if (send.reply) {
        try {
          claimed = await rules.claimReply(account, send.rule, send.reply.address, key);
        } catch (err) {
          log.warn({ event: 'rules.reply_failed', account: who, rule: send.rule, to: send.reply.address, error: errorText(err) }, 'the automatic reply is not sent');
          continue;
        }
        if (claimed === undefined) continue; // replied to this address recently
      }
      try {
        await submitter.submit({
          sender: send.sender,
          recipients: send.recipients,
          raw: send.raw,
          source: send.source,
          // Sent on behalf of the rule's owner: signed (DKIM) only with the owner's domain.
          signAs: account.domain,
          key: key === undefined ? undefined : `${key}/send/${send.ordinal}`,
        });
      } catch (err) {
        failed++;
        log.error({ event: 'rules.send_failed', account: who, rule: send.rule, action: send.action, error: errorText(err) }, 'a message sent by a rule could not be queued');
        if (send.reply && claimed !== undefined) await rules.releaseReply(account, send.rule, send.reply.address, claimed).catch(() => {});
      }
    }
    for (const r of plan.remember) {
      try {
        await datasets.addAddress(account, r.dataset, r.address, r.realName);
      } catch (err) {
        log.warn({ event: 'rules.remember_failed', account: who, dataset: r.dataset, error: errorText(err) }, "Remember 'From' failed");
      }
    }
    if (stored.length > 0 && this.deps.delivered) await this.deps.delivered(account, raw);
    if (failed > 0 && (key !== undefined || (stored.length === 0 && plan.rejected === undefined))) {
      throw new Error(`${failed} message(s) sent by mail rules could not be queued`);
    }
    return plan.rejected === undefined ? { stored } : { stored, rejected: plan.rejected };
  }

  /** Stores one copy (with Return-Path); nothing when its delivery key was used before. */
  private async store(box: MailboxHandle, copy: PlannedCopy, envelope: DeliveryEnvelope, key: string | undefined): Promise<DeliveryResult[]> {
    const message = Buffer.concat([Buffer.from(returnPathField(envelope.sender), 'utf8'), copy.raw]);
    // MailService checks the storage limit again inside append (another delivery may have
    // filled the account since the caller's check): a StorageLimitError then.
    const deliveryKey = key === undefined ? undefined : `${key}/store/${copy.ordinal}`;
    const added = await this.mail.append(box, [prepareMessage(message, { flags: copy.flags, keywords: copy.keywords, internalDate: Date.now() })], {
      deliveryKey,
    });
    return added.map((m) => ({ mailbox: box.displayName, uid: m.uid }));
  }

  /** The bytes `deliver` adds to a message for this envelope (for the storage-limit check). */
  static overhead(envelope: Pick<DeliveryEnvelope, 'sender'>): number {
    return Buffer.byteLength(returnPathField(envelope.sender), 'utf8');
  }
}
