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

/** A queued message as the listing and `get` show it. */
export interface QueueEntry {
  message: QueuedMessageRecord;
  recipients: QueuedRecipientRecord[];
  /** The lease when one is held (expired or not). */
  lease: QueueLease | null;
}

/** What QueueStore.settle's `decide` chooses: recipient updates, reports to queue, and what settle returns. */
export interface QueueSettlement<R> {
  updates: readonly RecipientUpdate[];
  reports: readonly NewQueuedMessage[];
  result: R;
}

/** The queue's size (one cheap query: the metrics scrape reads it). */
export interface QueueStats {
  messages: number;
  pendingRecipients: number;
  /** When the oldest queued message was created (ms); undefined when the queue is empty. */
  oldestCreated?: number;
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
  list(): Promise<QueueEntry[]>;
  /** One queued message with its recipients and lease; undefined when there is none with this id. */
  get(id: number): Promise<QueueEntry | undefined>;
  /**
   * Makes every pending recipient of message `id` (of every message when undefined) whose
   * next attempt is later than `now` due at `now`. Leases are left alone (an attempt under
   * way finishes). Answers how many recipients and messages were changed.
   */
  retry(now: number, id?: number): Promise<{ messages: number; recipients: number }>;
  /**
   * Removes a message (its recipients, and the delivery keys of its local deliveries:
   * `q<id>/...`) whoever holds its lease; false when there is none. The holder's
   * recordAttempt then answers false.
   */
  remove(id: number): Promise<boolean>;
  /**
   * Settles a message by decision of the administrator, whoever holds its lease: in one
   * transaction, reads the message, its raw text and recipients, lets `decide` (pure,
   * synchronous) choose recipient updates and reports, records them as recordAttempt does
   * (queuing the reports, removing the message once nothing is pending) and clears the
   * lease. Undefined (nothing called) when there is no such message.
   */
  settle<R>(id: number, decide: (entry: QueueEntry, raw: Buffer) => QueueSettlement<R>): Promise<R | undefined>;
  /** Messages queued, pending recipients, and the oldest message's creation time. */
  stats(): Promise<QueueStats>;
  /** Forgets delivery keys recorded before `before` (ms). */
  pruneDeliveryKeys(before: number): Promise<void>;
}
