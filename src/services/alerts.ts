import type { AccountRecord, AlertRecord, Store } from '../store/store.js';
import type { EventBus } from '../bus/bus.js';

/** Alert texts up to this many bytes travel with the event between cluster nodes. */
const ALERT_TEXT_RELAYED_BYTES = 3000;

/**
 * Administrator alerts to accounts. An alert stays pending until a session of its account
 * has shown it; then it is marked confirmed, as CommuniGate does.
 */
export class AlertService {
  /** The post under way per account, which the next one waits for. */
  private readonly posting = new Map<number, Promise<void>>();
  constructor(
    private readonly store: Store,
    private readonly bus: EventBus | undefined,
  ) {}

  async post(account: AccountRecord, text: string): Promise<AlertRecord> {
    // One account's alerts are posted (and announced) in the order they were given.
    const previous = this.posting.get(account.id) ?? Promise.resolve();
    const posted = previous.then(() => this.postNow(account, text));
    const settled = posted.then(
      () => undefined,
      () => undefined,
    );
    this.posting.set(account.id, settled);
    void settled.then(() => {
      if (this.posting.get(account.id) === settled) this.posting.delete(account.id);
    });
    return posted;
  }

  private async postNow(account: AccountRecord, text: string): Promise<AlertRecord> {
    const alert = await this.store.alerts.post(account.id, text, new Date());
    // The text travels along when short, so that every node shows it even after one of them
    // has confirmed it; a long one is read from the store (pending) by the nodes.
    const event = { accountId: account.id, alertId: alert.id, posted: alert.posted.getTime() };
    this.bus?.publish('alertPosted', Buffer.byteLength(text) <= ALERT_TEXT_RELAYED_BYTES ? { ...event, text } : event);
    return alert;
  }

  pending(accountId: number): Promise<AlertRecord[]> {
    return this.store.alerts.pending(accountId);
  }

  accountsWithPending(): Promise<number[]> {
    return this.store.alerts.accountsWithPending();
  }

  confirm(alert: Pick<AlertRecord, 'id'>): Promise<void> {
    return this.store.alerts.confirm(alert.id);
  }
}
