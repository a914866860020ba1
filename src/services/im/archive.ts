import { randomBytes } from 'node:crypto';
import { errorText, type Logger } from '../../log.js';
import type { ArchivedMessage } from '../../store/im.js';
import type { Store } from '../../store/store.js';
import type { XmlElement } from '../../xml/element.js';

/**
 * The message archive (XEP-0313) as the router feeds it: each message is given its archive id
 * at once (the recipient's copy carries it as its XEP-0359 stanza-id), and written with the
 * others of the same turn of the event loop, so that a burst of messages costs a few
 * transactions rather than two per message. The archive is history, not delivery: a message
 * is delivered (or kept offline, durably) whether or not its archive row is written yet.
 */
export class ImArchive {
  private pending: { accountId: number; message: ArchivedMessage }[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly days: number,
  ) {}

  get enabled(): boolean {
    return this.days > 0;
  }

  /** Queues a message for the account's archive; answers its archive id. */
  record(accountId: number, entry: { with: string; outgoing: boolean; stanza: XmlElement }): string {
    const id = randomBytes(9).toString('base64url');
    this.pending.push({ accountId, message: { id, stamp: Date.now(), with: entry.with, outgoing: entry.outgoing, xml: entry.stanza.toString() } });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
    return id;
  }

  /** Writes what is queued (also before a query, so that it sees every message routed so far). */
  async flush(): Promise<void> {
    this.scheduled = false;
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.flushing = this.store.archive
      .appendMany(batch)
      .catch((err: unknown) => this.log.error({ event: 'im.archive_failed', messages: batch.length, error: errorText(err) }, 'archiving messages failed'))
      .finally(() => (this.flushing = undefined));
    await this.flushing;
  }
}
