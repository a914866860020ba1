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

export interface QueueStore {
  /** Commits a message with its recipients; its id, or undefined when its key was already queued. */
  enqueue(message: NewQueuedMessage): Promise<number | undefined>;
  /** Messages with a pending recipient due at `now` (the longest due first), at most `limit`, skipping `busy`. */
  due(now: number, limit: number, busy: ReadonlySet<number>): Promise<QueuedMessageRecord[]>;
  /** The earliest next attempt of any pending recipient (skipping `busy` messages), ms; undefined when none. */
  nextDue(busy: ReadonlySet<number>): Promise<number | undefined>;
  readRaw(id: number): Promise<Buffer | undefined>;
  recipients(id: number): Promise<QueuedRecipientRecord[]>;
  /**
   * Records an attempt's outcomes in one transaction, together with the delivery reports it
   * produced (queued as new messages), and removes the message once no recipient is pending
   * (with the delivery keys its local deliveries recorded: `q<id>/...`).
   */
  recordAttempt(id: number, updates: readonly RecipientUpdate[], reports: readonly NewQueuedMessage[]): Promise<void>;
  /** Every queued message with its recipients (the queue listing). */
  list(): Promise<{ message: QueuedMessageRecord; recipients: QueuedRecipientRecord[] }[]>;
  /** Forgets delivery keys recorded before `before` (ms). */
  pruneDeliveryKeys(before: number): Promise<void>;
}
