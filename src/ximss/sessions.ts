import type { Config } from '../config.js';
import type { AccountService } from '../services/accounts.js';
import type { AlertService } from '../services/alerts.js';
import type { Authenticated } from '../services/auth.js';
import type { EventBus } from '../services/bus.js';
import { ServiceError } from '../services/errors.js';
import { el } from '../xml/element.js';
import { formatGmt, formatLocal } from '../xml/time.js';
import { Session, type BindingKind } from './session.js';
import type { UploadSpool } from './uploads.js';

/**
 * All live XIMSS sessions, by urlID and by account. Reacts to account events: delivers
 * alerts, ends the sessions of a removed account, and checks the store when another
 * process (the command line) changed it.
 */
export class SessionManager {
  private readonly byUrlId = new Map<string, Session>();
  private readonly byAccount = new Map<number, Set<Session>>();
  private readonly deliveringAlerts = new Set<number>();
  /** Accounts whose alerts were posted while a delivery to them was already running. */
  private readonly alertsPostedMeanwhile = new Set<number>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly config: Config,
    private readonly accounts: AccountService,
    private readonly alerts: AlertService,
    bus: EventBus,
    private readonly uploads: UploadSpool,
  ) {
    this.unsubscribe.push(
      bus.on('alertPosted', ({ accountId }) => void this.deliverAlerts(accountId)),
      bus.on('accountRemoved', ({ accountId }) => this.endAccountSessions(accountId)),
      bus.on('accountChanged', ({ accountId }) => void this.refreshAccount(accountId)),
      bus.on('mailboxChanged', ({ accountId, name }) => this.reportMailboxChange(accountId, name)),
    );
  }

  get size(): number {
    return this.byUrlId.size;
  }

  async create(auth: Authenticated, binding: BindingKind, remoteAddress: string, clientVersion: string | undefined): Promise<Session> {
    const existing = this.byAccount.get(auth.account.id);
    if (existing && existing.size >= this.config.limits.sessionsPerAccount) {
      throw new ServiceError('too many sessions for this account');
    }
    const session = new Session({
      account: auth.account,
      prefs: await this.accounts.effectivePrefs(auth.account),
      binding,
      remoteAddress,
      clientVersion,
      prevLogin: auth.prevLogin,
      lastFailedLogin: auth.lastFailedLogin,
      idleTimeoutSeconds: this.config.limits.idleTimeoutSeconds,
      uploads: this.uploads.newSet(auth.account.id),
    });
    this.byUrlId.set(session.urlID, session);
    let set = this.byAccount.get(session.account.id);
    if (!set) this.byAccount.set(session.account.id, (set = new Set()));
    set.add(session);
    session.armIdleTimer(() => this.end(session, true));
    return session;
  }

  get(urlID: string): Session | undefined {
    return this.byUrlId.get(urlID);
  }

  forAccount(accountId: number): Session[] {
    return [...(this.byAccount.get(accountId) ?? [])];
  }

  all(): Session[] {
    return [...this.byUrlId.values()];
  }

  /** Ends a session (telling the client with `bye` when `sendBye`) and forgets it. */
  end(session: Session, sendBye: boolean): void {
    session.end(sendBye);
    this.byUrlId.delete(session.urlID);
    const set = this.byAccount.get(session.account.id);
    if (set) {
      set.delete(session);
      if (set.size === 0) this.byAccount.delete(session.account.id);
    }
  }

  endAccountSessions(accountId: number, except?: Session): void {
    for (const session of this.forAccount(accountId)) if (session !== except) this.end(session, true);
  }

  /** Ends every session (server shutdown): each client gets `bye`. */
  endAll(): void {
    for (const session of this.all()) this.end(session, true);
  }

  /** Sends the account's pending alerts to its sessions and marks them confirmed. */
  async deliverAlerts(accountId: number): Promise<void> {
    if (!this.byAccount.has(accountId)) return;
    if (this.deliveringAlerts.has(accountId)) {
      // The running delivery may have read the pending list already: it goes round again.
      this.alertsPostedMeanwhile.add(accountId);
      return;
    }
    this.deliveringAlerts.add(accountId);
    try {
      do {
        this.alertsPostedMeanwhile.delete(accountId);
        for (const alert of await this.alerts.pending(accountId)) {
          const sessions = this.forAccount(accountId).filter((s) => !s.closed);
          if (sessions.length === 0) return;
          for (const session of sessions) {
            session.sendAsync(
              el('alert', { gmtTime: formatGmt(alert.posted), localTime: formatLocal(alert.posted, session.timeZone) }, alert.text),
            );
          }
          await this.alerts.confirm(alert);
        }
      } while (this.alertsPostedMeanwhile.has(accountId));
    } catch (err) {
      console.error('alert delivery failed:', err);
    } finally {
      this.deliveringAlerts.delete(accountId);
      this.alertsPostedMeanwhile.delete(accountId);
    }
  }

  /**
   * `mailboxModified` for the owner's sessions that asked for it (reportMailboxChanges),
   * coalesced: one message per mailbox per turn of the event loop.
   */
  private reportMailboxChange(accountId: number, name: string): void {
    for (const session of this.byAccount.get(accountId) ?? []) {
      if (!session.reportMailboxChanges || session.pendingMailboxReports.has(name)) continue;
      session.pendingMailboxReports.add(name);
      if (session.pendingMailboxReports.size === 1) {
        setImmediate(() => {
          for (const mailbox of session.pendingMailboxReports) session.sendAsync(el('mailboxModified', { mailbox }));
          session.pendingMailboxReports.clear();
        });
      }
    }
  }

  /** Re-reads accounts with live sessions after another process changed the store. */
  async checkExternalChanges(): Promise<void> {
    for (const accountId of [...this.byAccount.keys()]) {
      const account = await this.accounts.getById(accountId);
      if (!account) this.endAccountSessions(accountId);
      else await this.refreshAccount(accountId);
    }
    const withAlerts = await this.alerts.accountsWithPending();
    for (const accountId of withAlerts) await this.deliverAlerts(accountId);
  }

  private async refreshAccount(accountId: number): Promise<void> {
    const sessions = this.forAccount(accountId);
    if (sessions.length === 0) return;
    const account = await this.accounts.getById(accountId);
    if (!account) return;
    const prefs = await this.accounts.effectivePrefs(account);
    for (const session of sessions) {
      session.account = account;
      session.prefs = prefs;
    }
  }

  close(): void {
    for (const stop of this.unsubscribe) stop();
  }
}
