import type { Config } from '../config.js';
import type { AccountService } from '../services/accounts.js';
import type { AlertService } from '../services/alerts.js';
import type { Authenticated } from '../services/auth.js';
import type { AlertRecord } from '../store/store.js';
import type { BusEvents, EventBus } from '../bus/bus.js';
import type { ClusterNode } from '../services/cluster.js';
import { ServiceError } from '../services/errors.js';
import { el } from '../xml/element.js';
import { formatGmt, formatLocal } from '../xml/time.js';
import { Session, sessionTag, type BindingKind } from './session.js';
import type { UploadSpool } from './uploads.js';
import { errorText, silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/**
 * Why a session ended (the `reason` of `session.ended`): the client's `bye`, the client's
 * HTTP /KILL, the idle timeout, a newer login's killOld (on any node), the account's
 * removal, the server's shutdown, the TCP connection's loss, or the server for another
 * reason (`server`).
 */
export type EndReason =
  | 'bye'
  | 'kill'
  | 'idle'
  | 'killed'
  | 'account_removed'
  | 'shutdown'
  | 'connection_lost'
  | 'server'
  /** A session waiting for its second factor: too many wrong codes, or past its deadline. */
  | 'x2auth'
  /** The credential it was opened with changed or went (an application password removed, two-factor turned on, the password changed). */
  | 'credentials';

/**
 * All live XIMSS sessions of this node, by urlID and by account; the store counts them
 * with every other node's (sessionsPerAccount, killOld). Reacts to account events from any
 * process: delivers alerts, ends the sessions of a removed account (or those another node's
 * killOld ends), refreshes accounts whose settings changed, and re-reads everything when
 * the bus may have missed events (`resync`).
 */
export class SessionManager {
  private readonly byUrlId = new Map<string, Session>();
  private readonly byAccount = new Map<number, Set<Session>>();
  private readonly deliveringAlerts = new Set<number>();
  /** Accounts whose alerts were posted while a delivery to them was already running. */
  private readonly alertsPostedMeanwhile = new Set<number>();
  /** Alerts shown here recently, by account (see show). */
  private readonly shownAlerts = new Map<number, Set<number>>();
  private readonly unsubscribe: (() => void)[] = [];
  private closing = false;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;

  constructor(
    private readonly config: Config,
    private readonly accounts: AccountService,
    private readonly alerts: AlertService,
    private readonly bus: EventBus,
    private readonly uploads: UploadSpool,
    private readonly node: ClusterNode,
    options: { log?: Logger; metrics?: Metrics } = {},
  ) {
    this.log = options.log ?? silentLogger;
    this.metrics = options.metrics;
    // This node's live sessions by binding, read when /metrics is scraped.
    this.metrics?.gauge('ximssd_sessions', "This node's live XIMSS sessions, by binding", ['binding'], (set) => {
      const counts = { tcp: 0, http: 0 };
      for (const session of this.byUrlId.values()) counts[session.binding]++;
      for (const [binding, count] of Object.entries(counts)) set({ binding }, count);
    });
    this.unsubscribe.push(
      bus.on('alertPosted', (event) => void this.alertPosted(event)),
      bus.on('accountRemoved', ({ accountId }) => this.endAccountSessions(accountId, 'account_removed')),
      bus.on('accountChanged', ({ accountId }) => void this.refreshAccount(accountId)),
      bus.on('prefsChanged', ({ accountId }) => void this.prefsChanged(accountId)),
      // A domain's defaults changed (AccountDefaultPrefs): the preferences its sessions keep.
      bus.on('domainChanged', ({ domain }) => {
        for (const [accountId, sessions] of this.byAccount) if ([...sessions].some((x) => x.account.domain === domain)) void this.refreshAccount(accountId);
      }),
      bus.on('credentialsChanged', ({ accountId }) => {
        // The main password changed, which removes the application passwords: the sessions
        // opened with one end (wherever the change was made: XIMSS, password reset, the CLI).
        for (const session of this.forAccount(accountId)) if (session.credential === 'app') this.end(session, true, 'credentials');
        void this.refreshAccount(accountId);
      }),
      bus.on('credentialsRevoked', ({ accountId, appPassword, except }) => {
        for (const session of this.forAccount(accountId)) {
          if (session.urlID === except) continue;
          if (appPassword === undefined || (session.credential === 'app' && session.appPassword === appPassword)) this.end(session, true, 'credentials');
        }
      }),
      bus.on('mailboxChanged', ({ accountId, name }) => this.reportMailboxChange(accountId, name)),
      bus.on('endSessions', ({ accountId, except }) => {
        for (const session of this.forAccount(accountId)) if (session.urlID !== except) this.end(session, true, 'killed');
      }),
      bus.on('resync', () => void this.resync()),
    );
  }

  get size(): number {
    return this.byUrlId.size;
  }

  /**
   * Starts a session, unless the account has sessionsPerAccount sessions already on the
   * live nodes of the cluster (counted and recorded by the store in one transaction).
   */
  async create(auth: Authenticated, binding: BindingKind, remoteAddress: string, clientVersion: string | undefined, secondFactor = false): Promise<Session> {
    const session = new Session({
      account: auth.account,
      prefs: await this.accounts.effectivePrefs(auth.account),
      binding,
      remoteAddress,
      clientVersion,
      prevLogin: auth.prevLogin,
      lastFailedLogin: auth.lastFailedLogin,
      credential: auth.credential,
      ...(auth.appPassword !== undefined ? { appPassword: auth.appPassword } : {}),
      idleTimeoutSeconds: this.config.limits.idleTimeoutSeconds,
      uploads: this.uploads.newSet(auth.account.id),
      node: this.node.id,
    });
    const limit = this.config.limits.sessionsPerAccount;
    if (secondFactor) {
      // Waiting for its second factor: not counted in sessionsPerAccount (a password alone must
      // not fill the owner's room) but in a small cap of its own; past it the oldest waiting
      // one goes. Counted in the store once complete (promote).
      session.secondFactorPending = true;
      const cap = this.config.auth.pendingSessionsPerAccount;
      const waiting = this.forAccount(session.account.id).filter((s) => s.secondFactorPending);
      while (waiting.length >= cap) {
        const oldest = waiting.shift()!;
        this.log.warn({ event: 'limit.pending_sessions', account: oldest.userName, address: oldest.remoteAddress, limit: cap }, 'oldest session waiting for its second factor ended: too many waiting');
        this.end(oldest, true, 'x2auth');
      }
    } else if (!(await this.node.addSession(session.urlID, session.account.id, limit))) {
      session.uploads.close();
      this.metrics?.limits.inc({ limit: 'sessions' });
      this.log.warn({ event: 'limit.sessions', account: session.userName, address: remoteAddress, binding, limit }, 'session refused: too many sessions for this account');
      throw new ServiceError('too many sessions for this account');
    }
    this.byUrlId.set(session.urlID, session);
    let set = this.byAccount.get(session.account.id);
    if (!set) this.byAccount.set(session.account.id, (set = new Set()));
    set.add(session);
    session.armIdleTimer(() => this.end(session, true, 'idle'));
    this.metrics?.sessionsStarted.inc({ binding });
    this.log.info(
      { event: 'session.started', account: session.userName, address: remoteAddress, binding, session: sessionTag(session.urlID), ...(clientVersion ? { clientVersion } : {}) },
      'session started',
    );
    return session;
  }

  /**
   * A session whose second factor was right: now counted in sessionsPerAccount (refused, and
   * ended, past it), and, when its login asked for it, the account's others ended (killOld).
   */
  async promote(session: Session): Promise<void> {
    if (session.killOldOnCompletion) await this.killOld(session.account.id, session);
    const limit = this.config.limits.sessionsPerAccount;
    if (!(await this.node.addSession(session.urlID, session.account.id, limit))) {
      this.metrics?.limits.inc({ limit: 'sessions' });
      this.log.warn({ event: 'limit.sessions', account: session.userName, address: session.remoteAddress, binding: session.binding, limit }, 'session refused: too many sessions for this account');
      this.end(session, true, 'server');
      throw new ServiceError('too many sessions for this account');
    }
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
  end(session: Session, sendBye: boolean, reason: EndReason = 'server'): void {
    if (!this.byUrlId.has(session.urlID)) return;
    session.end(sendBye);
    this.byUrlId.delete(session.urlID);
    this.log.info(
      {
        event: 'session.ended',
        account: session.userName,
        address: session.remoteAddress,
        binding: session.binding,
        session: sessionTag(session.urlID),
        duration: Math.round(Date.now() - session.started.getTime()) / 1000,
        reason,
      },
      'session ended',
    );
    // At shutdown the node leaves the cluster with all its sessions at once.
    if (!this.closing) {
      void this.node.removeSession(session.urlID).catch((err: unknown) =>
        this.log.error({ event: 'session.forget_failed', session: sessionTag(session.urlID), error: errorText(err) }, 'forgetting a session in the store failed'),
      );
    }
    const set = this.byAccount.get(session.account.id);
    if (set) {
      set.delete(session);
      if (set.size === 0) {
        this.byAccount.delete(session.account.id);
        this.shownAlerts.delete(session.account.id);
      }
    }
  }

  endAccountSessions(accountId: number, reason: EndReason, except?: Session): void {
    for (const session of this.forAccount(accountId)) if (session !== except) this.end(session, true, reason);
  }

  /**
   * killOld: ends the account's other sessions on every node, this one's at once (so that
   * the new session fits within the limit); the others' soon after, and their records with
   * them at once, so that the limit does not count them meanwhile.
   */
  async killOld(accountId: number, except?: Session): Promise<void> {
    this.endAccountSessions(accountId, 'killed', except);
    const others = await this.node.remoteSessions(accountId);
    if (others.length === 0) return;
    for (const s of others) await this.node.removeSession(s.urlID);
    this.bus.publish('endSessions', except ? { accountId, except: except.urlID } : { accountId });
  }

  /** Ends every session (server shutdown): each client gets `bye`. */
  endAll(): void {
    this.closing = true;
    for (const session of this.all()) this.end(session, true, 'shutdown');
  }

  /**
   * An alert was posted on some node. One whose text came along is shown to this node's
   * sessions of the account (and confirmed), whether or not another node confirmed it
   * first; otherwise the pending alerts are read from the store.
   */
  private async alertPosted(event: BusEvents['alertPosted']): Promise<void> {
    if (event.text === undefined) return this.deliverAlerts(event.accountId);
    if (!this.show(event.accountId, { id: event.alertId, posted: new Date(event.posted), text: event.text })) return;
    try {
      await this.alerts.confirm({ id: event.alertId });
    } catch (err) {
      this.log.error({ event: 'alert.confirm_failed', accountId: event.accountId, alertId: event.alertId, error: errorText(err) }, 'confirming an alert failed');
    }
  }

  /**
   * Shows an alert to the account's live sessions here, once: an alert both announced with
   * its text and read as pending (before its confirmation committed) is not shown twice.
   * False when no session was there to see it.
   */
  private show(accountId: number, alert: Pick<AlertRecord, 'id' | 'posted' | 'text'>): boolean {
    // Not to a session still waiting for its second factor: its alerts wait until it is complete.
    const sessions = this.forAccount(accountId).filter((s) => !s.closed && !s.secondFactorPending);
    if (sessions.length === 0) return false;
    let shown = this.shownAlerts.get(accountId);
    if (!shown) this.shownAlerts.set(accountId, (shown = new Set()));
    if (shown.has(alert.id)) return true;
    shown.add(alert.id);
    // Alerts are rare: the last few ids per account are enough to tell a repeat.
    if (shown.size > 64) shown.delete(shown.values().next().value!);
    for (const session of sessions) {
      session.sendAsync(el('alert', { gmtTime: formatGmt(alert.posted), localTime: formatLocal(alert.posted, session.timeZone) }, alert.text));
    }
    return true;
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
          if (this.forAccount(accountId).every((s) => s.closed || s.secondFactorPending)) return;
          this.show(accountId, alert);
          await this.alerts.confirm(alert);
        }
      } while (this.alertsPostedMeanwhile.has(accountId));
    } catch (err) {
      this.log.error({ event: 'alert.delivery_failed', accountId, error: errorText(err) }, 'alert delivery failed');
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

  /** Re-reads the accounts with live sessions, and delivers pending alerts, when events may have been missed. */
  async resync(): Promise<void> {
    for (const accountId of [...this.byAccount.keys()]) {
      const account = await this.accounts.getById(accountId);
      if (!account) this.endAccountSessions(accountId, 'account_removed');
      else await this.refreshAccount(accountId);
    }
    const withAlerts = await this.alerts.accountsWithPending();
    for (const accountId of withAlerts) await this.deliverAlerts(accountId);
  }

  /** The account's preferences changed (prefsStore here or on another node): re-read, and tell its sessions. */
  private async prefsChanged(accountId: number): Promise<void> {
    await this.refreshAccount(accountId).catch((err: unknown) =>
      this.log.error({ event: 'session.prefs_refresh_failed', accountId, error: errorText(err) }, 're-reading preferences failed'),
    );
    for (const session of this.forAccount(accountId)) if (!session.secondFactorPending) session.sendAsync('<prefsModified/>');
  }

  /** Re-reads the account's record and effective preferences into its sessions here (prefsReload too). */
  async refreshAccount(accountId: number): Promise<void> {
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
