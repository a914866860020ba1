/**
 * The outbound mail queue: messages waiting for delivery, per-recipient state, retries.
 * Owned by the queue (src/transports/smtp/queue.ts).
 */

/** Where a recipient's delivery stands. Only `pending` recipients are tried again. */
export type RecipientState = 'pending' | 'delivered' | 'relayed' | 'failed';

/** How the message reached the server (Mail Rules' Source condition for local recipients). */
export type MessageSource = 'authenticated' | 'remote';

export interface NewQueuedMessage {
  sender: string;
  raw: Buffer;
  /** ms since the epoch. */
  created: number;
  expires: number;
  ret: 'FULL' | 'HDRS' | null;
  envid: string | null;
  source: MessageSource;
  /** Idempotency key: a message whose key was seen before (queued, or already sent) is not queued again. */
  key: string | null;
  recipients: readonly { address: string; notify: string | null; orcpt: string | null }[];
}

export interface QueuedMessageRecord {
  id: number;
  sender: string;
  created: number;
  expires: number;
  ret: 'FULL' | 'HDRS' | null;
  envid: string | null;
  source: MessageSource;
  size: number;
}

export interface QueuedRecipientRecord {
  address: string;
  /** RFC 3461 NOTIFY as given (`SUCCESS,FAILURE`, `NEVER`); null = the default (failures). */
  notify: string | null;
  orcpt: string | null;
  state: RecipientState;
  attempts: number;
  /** ms since the epoch. */
  nextAttempt: number;
  lastAttempt: number | null;
  /** The last enhanced status code (RFC 3463), e.g. `4.4.1`. */
  status: string | null;
  /** The last reply or error, for the report's Diagnostic-Code. */
  diagnostic: string | null;
  /** The host that gave the last reply. */
  remoteMta: string | null;
}

/** One recipient's outcome of a delivery attempt. */
export interface RecipientUpdate {
  address: string;
  state: RecipientState;
  /** Counted as an attempt (false when the recipient was only looked at, e.g. expired). */
  attempted: boolean;
  nextAttempt: number;
  status: string | null;
  diagnostic: string | null;
  remoteMta: string | null;
}

/**
 * Who works on a queued message: one process at a time holds a message's lease, and only
 * the holder records outcomes. A process that dies loses its leases when they expire.
 */
export interface QueueLease {
  /** The claiming process (its node id). */
  owner: string;
  /** ms since the epoch. */
  until: number;
}

export interface QueueStore {
  /** Commits a message with its recipients; its id, or undefined when its key was already queued. */
  enqueue(message: NewQueuedMessage): Promise<number | undefined>;
  /**
   * Claims up to `limit` messages that have a pending recipient due at `now` (the longest
   * due first) and no unexpired lease, for `lease`, in one transaction: two processes
   * never claim the same message.
   */
  claimDue(now: number, limit: number, lease: QueueLease): Promise<QueuedMessageRecord[]>;
  /**
   * The earliest time work may become claimable: the next attempt of a pending recipient,
   * or the expiry of the lease that holds it back, whichever is later; undefined when none.
   */
  nextDue(now: number): Promise<number | undefined>;
  /** Extends a lease still held by `lease.owner`; false when it was lost (expired and taken, or the message is gone). */
  renewLease(id: number, lease: QueueLease): Promise<boolean>;
  /** Gives a lease up (the attempt ended); nothing when another owner holds it. */
  releaseLease(id: number, owner: string): Promise<void>;
  readRaw(id: number): Promise<Buffer | undefined>;
  recipients(id: number): Promise<QueuedRecipientRecord[]>;
  /**
   * Records an attempt's outcomes in one transaction, together with the delivery reports it
   * produced (queued as new messages), and removes the message once no recipient is pending
   * (with the delivery keys its local deliveries recorded: `q<id>/...`). Only while `owner`
   * holds the message's lease (expired or not, as long as nobody else took it): false, and
   * nothing recorded, otherwise.
   */
  recordAttempt(id: number, owner: string, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): Promise<boolean>;
  /** Every queued message with its recipients (the queue listing), with its lease when one is held. */
  list(): Promise<{ message: QueuedMessageRecord; recipients: QueuedRecipientRecord[]; lease: QueueLease | null }[]>;
  /** Forgets delivery keys recorded before `before` (ms). */
  pruneDeliveryKeys(before: number): Promise<void>;
}
