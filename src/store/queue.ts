/**
 * The outbound mail queue: messages waiting for delivery, per-recipient state, retries.
 * Owned by the queue (src/transports/smtp/queue.ts).
 */
export interface QueueStore {}
