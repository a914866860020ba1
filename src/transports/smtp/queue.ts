import type { EventBus } from '../../bus/bus.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Config } from '../../config.js';
import { fullName, type AccountService } from '../../services/accounts.js';
import { ServiceError } from '../../services/errors.js';
import { StorageLimitError } from '../../services/mail/service.js';
import { signOutgoing, type SigningOutcome } from '../../services/mail-auth.js';
import type { NewQueuedMessage, QueuedMessageRecord, QueuedRecipientRecord, RecipientUpdate } from '../../store/queue.js';
import type { AccountRecord, Store } from '../../store/store.js';
import { reportMessage, wantsNotify, type DsnRecipient } from './dsn.js';
import type { LocalDelivery } from './local-delivery.js';
import { resolveRecipient } from './recipients.js';
import { RemoteDelivery, type RemoteOutcome } from './remote.js';

/** RFC 3461 NOTIFY for one recipient: when to send a delivery report to the sender. */
export interface DsnNotify {
  success: boolean;
  failure: boolean;
  delay: boolean;
}

export interface OutgoingRecipient {
  address: string;
  /** Default: failure reports only. */
  notify?: DsnNotify;
  /** RFC 3461 ORCPT (`rfc822;addr`), passed on and shown in reports. */
  orcpt?: string;
}

/** A message handed to the queue for delivery. */
export interface OutgoingMessage {
  /** The envelope sender (reverse path) without brackets; '' for the null sender (reports, auto-replies). */
  sender: string;
  recipients: readonly (string | OutgoingRecipient)[];
  /** The complete message (header and body), CRLF line ends. */
  raw: Buffer;
  /** RFC 3461 RET: return the full message or only its header in failure reports (default HDRS). */
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** How the message reached the server, for Mail Rules' Source condition of local recipients. */
  source: 'authenticated' | 'remote';
  /**
   * The domain the submitter may DKIM-sign for: the authenticated account's own domain (of
   * the session, or of the owner of the Mail Rule that sends it), the default domain for the
   * server's own messages. An `authenticated` message is signed only when its `From:` is in
   * this domain (and the domain has a key); without it, it is not signed.
   */
  signAs?: string;
  /**
   * Makes the submission idempotent: a second message with the same key is ignored. A
   * delivery that re-runs after a crash (rules redirecting or replying) passes one.
   */
  key?: string;
}

/** What Mail Rules, submission and delivery reports use to send mail. */
export interface MailSubmitter {
  /**
   * Resolves once the message is committed to the queue (durable); delivery follows. The
   * answer is its queue id (undefined when its key was submitted before).
   */
  submit(message: OutgoingMessage): Promise<number | undefined>;
}

export interface MailQueueDeps {
  readonly store: Store;
  readonly accounts: AccountService;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** Delivery to other servers; tests pass one with their own MX resolver. */
  readonly remote?: RemoteDelivery;
  /** This node's id: the owner of the leases it takes on queued messages. */
  readonly node: string;
  /** Where `queueChanged` (an administrator's `queue retry`) is heard: the queue looks for due work at once. */
  readonly bus?: EventBus;
}

const DEFAULT_NOTIFY = null; // failures only (RFC 3461 section 4.1)
/** Delivery keys are kept this long after a delivery (a retry after a crash comes sooner). */
const DELIVERY_KEY_DAYS = 30;

function notifyText(notify: DsnNotify | undefined): string | null {
  if (!notify) return DEFAULT_NOTIFY;
  const values = [notify.success && 'SUCCESS', notify.failure && 'FAILURE', notify.delay && 'DELAY'].filter(Boolean);
  return values.length ? values.join(',') : 'NEVER';
}


/**
 * The outbound queue. Everything submitted (messageSubmit and its relatives, mail that Mail
 * Rules send, authenticated SMTP submission, delivery reports) is committed to the store
 * first; `submit` resolves after that commit. Delivery follows at once and is retried:
 *
 * - local recipients go through `LocalDelivery` (their Mail Rules), keyed `q<id>/<address>`
 *   so that a delivery re-run after a crash stores and sends nothing twice;
 * - other domains' go to the relay or their MX hosts (RemoteDelivery);
 * - temporary failures are retried with a doubling back-off (firstRetrySeconds up to
 *   maxRetrySeconds) until lifetimeSeconds have passed; then, and on permanent failures, the
 *   sender gets an RFC 3464 report (unless NOTIFY=NEVER; never for the null sender). With
 *   NOTIFY=SUCCESS, local deliveries and relaying to a server without DSN are reported too.
 *
 * An attempt's outcomes and the reports it produced are recorded in one transaction; a
 * message leaves the queue when no recipient is pending. The queue survives restarts:
 * whatever is pending is tried when the server starts.
 *
 * Every node of a cluster serves the one queue. A node claims a message with a lease
 * (leaseSeconds, renewed while the attempt runs) before it tries it, and records outcomes
 * only while it still holds the lease, so each attempt runs on exactly one node; the
 * messages of a node that dies are taken by the others when its leases expire. Nodes look
 * for claimable work on their own too (a message another node queued, a lease run out), at
 * least every half lease.
 */
export class MailQueue implements MailSubmitter {
  private delivery: LocalDelivery | undefined;
  private readonly remote: RemoteDelivery;
  /** Messages this node is trying now (it holds their leases). */
  private readonly busy = new Set<number>();
  private readonly attempts = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private maintenance: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private scanning = false;
  private rescan = false;
  private closed = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: MailQueueDeps) {
    this.remote = deps.remote ?? new RemoteDelivery(deps.config.outbound, deps.config.defaultDomain);
  }

  /** Starts delivering (what a previous run left pending first). */
  start(delivery: LocalDelivery): void {
    this.delivery = delivery;
    this.kick();
    this.maintenance = setInterval(() => {
      void this.deps.store.queue.pruneDeliveryKeys(Date.now() - DELIVERY_KEY_DAYS * 86_400_000).catch((err: unknown) => this.report(err));
    }, 3_600_000);
    this.maintenance.unref();
    this.poller = setInterval(() => this.kick(), this.leaseMs / 2);
    this.poller.unref();
    this.unsubscribe = this.deps.bus?.on('queueChanged', () => this.kick());
  }

  private get leaseMs(): number {
    return this.deps.config.outbound.leaseSeconds * 1000;
  }

  /** Stops starting attempts, ends their connections to other servers, and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    clearTimeout(this.timer);
    clearInterval(this.maintenance);
    clearInterval(this.poller);
    this.remote.close();
    while (this.attempts.size > 0) await Promise.allSettled([...this.attempts]);
  }

  async submit(message: OutgoingMessage): Promise<number | undefined> {
    const seen = new Set<string>();
    const recipients = [];
    for (const r of message.recipients) {
      const { address, notify, orcpt } = typeof r === 'string' ? { address: r, notify: undefined, orcpt: undefined } : r;
      const clean = address.trim();
      if (!/^[^\s@<>]+@[^\s@<>]+$/.test(clean)) throw new ServiceError(`invalid recipient address: ${address}`);
      if (seen.has(clean.toLowerCase())) continue;
      seen.add(clean.toLowerCase());
      recipients.push({ address: clean, notify: notifyText(notify), orcpt: orcpt ?? null });
    }
    if (recipients.length === 0) throw new ServiceError('the message has no recipients');
    // Mail of local users is DKIM-signed once, here (local recipients get the signed copy
    // too), for the From domain only when the submitter may sign for it (signAs).
    const signing = message.source === 'authenticated' ? await signOutgoing(this.deps.store.domains, message.raw, message.signAs) : undefined;
    const raw = signing?.raw ?? message.raw;
    const now = Date.now();
    const id = await this.deps.store.queue.enqueue({
      sender: message.sender,
      raw,
      created: now,
      expires: now + this.deps.config.outbound.lifetimeSeconds * 1000,
      ret: message.ret ?? null,
      envid: message.envid ?? null,
      source: message.source,
      key: message.key ?? null,
      recipients,
    });
    if (id === undefined) return undefined; // submitted before (its key)
    if (signing) this.logSigning(signing, { queueId: id });
    this.deps.log.info(
      { event: 'queue.queued', queueId: id, sender: message.sender, recipients: recipients.map((r) => r.address), size: raw.length, source: message.source },
      'message queued',
    );
    this.kick();
    return id;
  }

  /** Looks for due work soon (after a submission, an attempt, or the timer). */
  private kick(): void {
    if (this.closed || !this.delivery) return;
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.scan(), 0);
  }

  private async scan(): Promise<void> {
    this.scanning = true;
    try {
      do {
        this.rescan = false;
        const free = this.deps.config.outbound.concurrency - this.busy.size;
        if (free <= 0 || this.closed) break;
        const now = Date.now();
        const due = await this.deps.store.queue.claimDue(now, free, { owner: this.deps.node, until: now + this.leaseMs });
        for (const message of due) this.startAttempt(message);
        if (due.length === free) this.rescan = true;
      } while (this.rescan && this.busy.size < this.deps.config.outbound.concurrency);
      // Wake for the next retry (a finishing attempt kicks sooner). The messages under way
      // are not waited for (their attempts kick when they finish), nor is anything while
      // every slot is taken: a timer for them would be due at once, again and again.
      const next = this.busy.size < this.deps.config.outbound.concurrency ? await this.deps.store.queue.nextDue(Date.now()) : undefined;
      if (next !== undefined && !this.closed) {
        clearTimeout(this.timer);
        const delay = Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1);
        this.timer = setTimeout(() => void this.scan(), delay);
      }
    } catch (err) {
      this.report(err);
      this.timer = setTimeout(() => void this.scan(), 5000);
    } finally {
      this.scanning = false;
    }
  }

  /** Runs an attempt on a message this node has claimed, renewing the lease meanwhile, and gives the lease up after. */
  private startAttempt(message: QueuedMessageRecord): void {
    this.busy.add(message.id);
    const { queue } = this.deps.store;
    const owner = this.deps.node;
    const renewal = setInterval(() => {
      void queue.renewLease(message.id, { owner, until: Date.now() + this.leaseMs }).then(
        (held) => {
          if (held) return;
          clearInterval(renewal);
          this.deps.log.warn({ event: 'queue.lease_lost', queueId: message.id }, 'the lease was lost during an attempt; its outcome will not be recorded');
        },
        (err: unknown) => this.report(err),
      );
    }, this.leaseMs / 3);
    const attempt = this.attempt(message)
      .catch((err: unknown) => this.report(err))
      .then(() => queue.releaseLease(message.id, owner))
      .catch((err: unknown) => this.report(err))
      .finally(() => {
        clearInterval(renewal);
        this.busy.delete(message.id);
        this.attempts.delete(attempt);
        this.kick();
      });
    this.attempts.add(attempt);
  }

  private async attempt(message: QueuedMessageRecord): Promise<void> {
    const { store } = this.deps;
    const now = Date.now();
    const raw = await store.queue.readRaw(message.id);
    if (!raw) return;
    const due = (await store.queue.recipients(message.id)).filter((r) => r.state === 'pending' && r.nextAttempt <= now);
    if (due.length === 0) return;

    // Local recipients first, recorded at once: a slow remote server does not hold them up.
    const local = new Map<string, Outcome>();
    const remote: QueuedRecipientRecord[] = [];
    for (const r of due) {
      const target = await resolveRecipient(this.deps.accounts, r.address);
      if (target.kind === 'remote') remote.push(r);
      else if (target.kind === 'unknown') local.set(r.address, { kind: 'permanent', status: '5.1.1', diagnostic: `smtp; 550 5.1.1 <${r.address}>: no such user here`, remoteMta: null, dsnPassedOn: false });
      else local.set(r.address, await this.deliverLocally(message, raw, r, target.account));
    }
    if (local.size > 0) await this.record(message, raw, due.filter((r) => local.has(r.address)), local);
    if (remote.length > 0) {
      const results = await this.remote.deliver({ sender: message.sender, raw, ret: message.ret, envid: message.envid }, remote);
      await this.record(message, raw, remote, new Map(results.map((o) => [o.address, o])));
    }
  }

  /** Records outcomes: new states, retry times, and the report the sender is owed (one transaction). */
  private async record(message: QueuedMessageRecord, raw: Buffer, recipients: readonly QueuedRecipientRecord[], outcomes: ReadonlyMap<string, Outcome>): Promise<void> {
    const updates: RecipientUpdate[] = [];
    const reported: DsnRecipient[] = [];
    const { firstRetrySeconds, maxRetrySeconds } = this.deps.config.outbound;
    const finished = Date.now();
    for (const r of recipients) {
      const o = outcomes.get(r.address)!;
      let state: RecipientUpdate['state'] = 'pending';
      let status = o.status;
      let nextAttempt = r.nextAttempt;
      if (o.kind === 'sent') state = o.local ? 'delivered' : 'relayed';
      else if (o.kind === 'permanent') state = 'failed';
      else if (finished >= message.expires) {
        state = 'failed';
        status = '4.4.7'; // delivery time expired (RFC 3463)
      } else {
        nextAttempt = finished + Math.min(maxRetrySeconds, firstRetrySeconds * 2 ** r.attempts) * 1000;
      }
      updates.push({ address: r.address, state, attempted: true, nextAttempt, status, diagnostic: o.diagnostic, remoteMta: o.remoteMta });
      const dsn: DsnRecipient = { address: r.address, orcpt: r.orcpt, action: 'failed', status, diagnostic: o.diagnostic, remoteMta: o.remoteMta, lastAttempt: finished };
      if (state === 'failed' && wantsNotify(r.notify, 'FAILURE')) reported.push(dsn);
      else if (state === 'delivered' && wantsNotify(r.notify, 'SUCCESS')) reported.push({ ...dsn, action: 'delivered' });
      else if (state === 'relayed' && wantsNotify(r.notify, 'SUCCESS') && !o.dsnPassedOn) reported.push({ ...dsn, action: 'relayed' });
      this.logAttempt(message, r.address, state === 'pending' ? 'deferred' : state === 'failed' ? (o.kind === 'permanent' ? 'bounced' : 'expired') : state, status, o.diagnostic, nextAttempt, o.remoteMta);
    }

    const reports: NewQueuedMessage[] = [];
    // Never a report about a report (or any message with the null sender).
    if (reported.length > 0 && message.sender !== '') {
      const report = reportMessage(this.deps.config.defaultDomain, this.deps.config.outbound.lifetimeSeconds, message, raw, reported, finished);
      // The report's From is MAILER-DAEMON of the default domain (reportMessage): the server's own.
      const signing = await signOutgoing(this.deps.store.domains, report.raw, this.deps.config.defaultDomain);
      if (signing) this.logSigning(signing, { reportFor: message.id });
      reports.push(signing ? { ...report, raw: signing.raw } : report);
    }
    const recorded = await this.deps.store.queue.recordAttempt(message.id, this.deps.node, updates, reports);
    if (!recorded) this.deps.log.warn({ event: 'queue.lease_lost', queueId: message.id }, "another node took the message over; this attempt's outcome is not recorded");
  }

  private async deliverLocally(message: QueuedMessageRecord, raw: Buffer, r: QueuedRecipientRecord, account: AccountRecord): Promise<Outcome> {
    const delivery = this.delivery!;
    const envelope = { sender: message.sender, recipient: r.address, account, authenticated: message.source === 'authenticated', remoteAddress: '' };
    try {
      const outcome = await delivery.deliver(raw, envelope, { key: `q${message.id}/${r.address.toLowerCase()}` });
      if (outcome.rejected !== undefined) {
        return { kind: 'permanent', status: '5.7.1', diagnostic: `smtp; 550 5.7.1 ${outcome.rejected.replace(/\s+/g, ' ').trim()}`, remoteMta: null, dsnPassedOn: false };
      }
      return { kind: 'sent', local: true, status: '2.0.0', diagnostic: `smtp; 250 2.0.0 delivered to ${fullName(account)}`, remoteMta: null, dsnPassedOn: false };
    } catch (err) {
      if (err instanceof StorageLimitError) {
        return { kind: 'temporary', status: '4.2.2', diagnostic: `smtp; 452 4.2.2 <${r.address}>: mailbox full`, remoteMta: null, dsnPassedOn: false };
      }
      this.deps.log.error({ event: 'queue.local_failed', queueId: message.id, recipient: r.address, err }, 'local delivery failed');
      return { kind: 'temporary', status: '4.3.0', diagnostic: 'smtp; 451 4.3.0 local delivery failed', remoteMta: null, dsnPassedOn: false };
    }
  }

  /** dkim.signed (debug) or dkim.failed (warn: the message goes unsigned). */
  private logSigning(outcome: SigningOutcome, fields: { queueId: number } | { reportFor: number }): void {
    const logged = { ...fields, domain: outcome.domain, selector: outcome.selector };
    if (outcome.refused !== undefined) this.deps.log.info({ event: 'dkim.refused', ...logged, reason: outcome.refused }, "not DKIM-signed: the From domain is not the submitter's");
    else if (outcome.error === undefined) this.deps.log.debug({ event: 'dkim.signed', ...logged }, 'DKIM-signed');
    else this.deps.log.warn({ event: 'dkim.failed', ...logged, error: outcome.error }, 'DKIM signing failed; the message goes unsigned');
  }

  private report(err: unknown): void {
    this.deps.log.error({ event: 'queue.error', err }, 'queue processing failed');
  }

  /** One recipient's attempt, in the log and the metrics. */
  private logAttempt(
    message: QueuedMessageRecord,
    recipient: string,
    outcome: 'delivered' | 'relayed' | 'deferred' | 'bounced' | 'expired',
    status: string,
    reply: string,
    nextAttempt: number,
    remoteMta: string | null,
  ): void {
    this.deps.metrics?.queueAttempts.inc({ outcome });
    const fields = { event: `queue.${outcome}`, queueId: message.id, sender: message.sender, recipient, status, reply, ...(remoteMta ? { remoteMta } : {}) };
    if (outcome === 'deferred') this.deps.log.info({ ...fields, nextAttempt: new Date(nextAttempt).toISOString() }, 'delivery deferred');
    else if (outcome === 'bounced' || outcome === 'expired') this.deps.log.warn(fields, outcome === 'bounced' ? 'delivery failed' : 'delivery time expired');
    else this.deps.log.info(fields, outcome === 'delivered' ? 'delivered locally' : 'relayed');
  }
}

type Outcome = Omit<RemoteOutcome, 'address'> & { local?: boolean };
