import type { AccountRecord, AlertRecord, Store } from '../store/store.js';
import type { EventBus } from './bus.js';

/**
 * Administrator alerts to accounts. An alert stays pending until a session of its account
 * has shown it; then it is marked confirmed, as CommuniGate does.
 */
export class AlertService {
  constructor(
    private readonly store: Store,
    private readonly bus: EventBus | undefined,
  ) {}

  async post(account: AccountRecord, text: string): Promise<AlertRecord> {
    const alert = await this.store.alerts.post(account.id, text, new Date());
    this.bus?.publish('alertPosted', { accountId: account.id });
    return alert;
  }

  pending(accountId: number): Promise<AlertRecord[]> {
    return this.store.alerts.pending(accountId);
  }

  accountsWithPending(): Promise<number[]> {
    return this.store.alerts.accountsWithPending();
  }

  confirm(alert: AlertRecord): Promise<void> {
    return this.store.alerts.confirm(alert.id);
  }
}
