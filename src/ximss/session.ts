import { randomInt } from 'node:crypto';
import { fullName } from '../services/accounts.js';
import type { AccountRecord, LoginRecord, Settings } from '../store/store.js';
import { el, type XmlElement } from '../xml/element.js';
import type { XimssValue } from '../xml/objects.js';
import type { OpenFolder } from './folders.js';
import type { OpenCalendar } from './ops/calendar.js';
import type { UploadSet } from './uploads.js';
import type { XimssImClient } from './im-client.js';
import type { SessionCalls } from './call-leg.js';
import type { SessionTasks } from './ops/tasks.js';

/** A dictionary without a prototype: client-chosen keys such as `__proto__` stay plain keys. */
export function emptyDictionary(): { [key: string]: XimssValue } {
  return Object.create(null) as { [key: string]: XimssValue };
}

export type BindingKind = 'tcp' | 'http';

/** Where a session's asynchronous messages go: the TCP connection, or the HTTP poll queue. */
export interface AsyncSink {
  deliver(xml: string): void;
  /**
   * The session has ended (`byeSent`: after a server-side `<bye/>` was delivered): drop the
   * connection, or answer later polls with the bye, then 550.
   */
  ended(byeSent: boolean): void;
}

const URL_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Milliseconds, refreshed every 100 ms: cheap enough to read on every request. */
let coarseClock = Date.now();
let coarseTimer: NodeJS.Timeout | undefined;
function coarseNow(): number {
  if (!coarseTimer) {
    coarseTimer = setInterval(() => (coarseClock = Date.now()), 100);
    coarseTimer.unref();
    coarseClock = Date.now();
  }
  return coarseClock;
}

/**
 * `<node>-<20 alphanumerics>`: the shape clients expect (digits, a dash, 20 alphanumerics).
 * The digits name the cluster node that holds the session (where other nodes forward its
 * HTTP requests); the random part guards it.
 */
function newUrlId(node: string): string {
  let random = '';
  for (let i = 0; i < 20; i++) random += URL_ID_ALPHABET[randomInt(URL_ID_ALPHABET.length)];
  return `${node}-${random}`;
}

/**
 * How logs name a session: its urlID is a bearer credential (the HTTP binding and the
 * session cookie accept it), so only the node and the first 6 of its 20 random characters
 * are shown, enough to tell sessions apart and match them with a client's.
 */
export function sessionTag(urlID: string): string {
  const dash = urlID.indexOf('-');
  return `${urlID.slice(0, dash + 1 + 6)}…`;
}

/** The node a urlID names (see newUrlId); undefined when it has not that shape. */
export function nodeOfUrlId(urlID: string): string | undefined {
  return /^([1-9][0-9]{0,8})-[A-Za-z0-9]{20}$/.exec(urlID)?.[1];
}

export interface SessionInit {
  account: AccountRecord;
  prefs: Settings;
  binding: BindingKind;
  remoteAddress: string;
  clientVersion: string | undefined;
  prevLogin: LoginRecord | null;
  lastFailedLogin: LoginRecord | null;
  /** What logged in (see Authenticated.credential); an application password's name. */
  credential?: 'main' | 'app';
  appPassword?: string;
  idleTimeoutSeconds: number;
  /** The session's (empty) uploaded file set, from the upload spool. */
  uploads: UploadSet;
  /** The cluster node (its id) that holds the session. */
  node: string;
}

/**
 * One logged-in XIMSS session: who, from where, with which options, and where its
 * asynchronous messages go. The same object serves a TCP connection or an HTTP client.
 */
export class Session {
  readonly urlID: string;
  readonly binding: BindingKind;
  readonly remoteAddress: string;
  readonly clientVersion: string | undefined;
  readonly prevLogin: LoginRecord | null;
  readonly lastFailedLogin: LoginRecord | null;
  readonly started = new Date();
  account: AccountRecord;
  /** Effective preferences, read at login and on prefsReload. */
  prefs: Settings;
  reportMailboxChanges = false;
  /** Mailboxes with a `mailboxModified` about to be sent. */
  readonly pendingMailboxReports = new Set<string>();
  idleTimeoutSeconds: number;
  /** The language for scripts and templates (getLanguage/setLanguage). */
  language: string;
  /** The session's free-form parameter dictionary (getSessionData/setSessionData). */
  data: { [key: string]: XimssValue } = emptyDictionary();
  /** Guards HTTP access: when set, requests must come from this address. */
  ipGuard: string | undefined;
  /** When set, HTTP requests must carry this cookie value. */
  cookieGuard: string | undefined;
  /** Open folders (folderOpen), by folder name. */
  readonly folders = new Map<string, OpenFolder>();
  /** Open calendars (calendarOpen), by calendar name. */
  readonly calendars = new Map<string, OpenCalendar>();
  /** The "uploaded file set" (HTTP UPLOAD), spooled on disk; emptied when the session ends. */
  readonly uploads: UploadSet;
  /** The session as an IM client (signalBind; or an unbound one that only sends). */
  im: XimssImClient | undefined;
  /** Its calls (spec "Signaling"; src/ximss/call-leg.ts), from its first. */
  calls: SessionCalls | undefined;
  /** The tasks it talks to (spec "Real-Time Application Management"), from its first. */
  tasks: SessionTasks | undefined;
  /**
   * Logged in with the password of an account with two-factor authentication: until the
   * second factor (x2AuthStart, x2AuthComplete) only those and `bye` run, and nothing is
   * delivered to it (src/ximss/ops/login-security.ts).
   */
  secondFactorPending = false;
  /** killOld was asked by a login waiting for its second factor: done once it is right (SessionManager.promote). */
  killOldOnCompletion = false;
  /**
   * What the session was opened with: the main password, or the application password
   * `appPassword` (such a session manages no credentials; it ends when that password goes).
   */
  readonly credential: 'main' | 'app';
  readonly appPassword: string | undefined;
  closed = false;
  private readonly endHooks: (() => void)[] = [];
  private sink: AsyncSink | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastActivity = 0;
  private onIdle: (() => void) | undefined;

  constructor(init: SessionInit) {
    this.urlID = newUrlId(init.node);
    this.account = init.account;
    this.prefs = init.prefs;
    this.binding = init.binding;
    this.remoteAddress = init.remoteAddress;
    this.clientVersion = init.clientVersion;
    this.prevLogin = init.prevLogin;
    this.lastFailedLogin = init.lastFailedLogin;
    this.credential = init.credential ?? 'main';
    this.appPassword = init.appPassword;
    this.idleTimeoutSeconds = init.idleTimeoutSeconds;
    this.uploads = init.uploads;
    // The urlID of a TCP session opens its HTTP resources (MIME parts, uploads, KILL) from the
    // login address only, as an HTTP session's does unless the client turns the IP watch off.
    if (init.binding === 'tcp') this.ipGuard = init.remoteAddress;
    this.language = this.textPref('Language') ?? 'English';
  }

  get userName(): string {
    return fullName(this.account);
  }

  /** The TimeZone preference ("HostOS" unless set; see ianaTimeZone). */
  get timeZone(): string {
    return this.textPref('TimeZone') ?? 'HostOS';
  }

  /** A preference that is a string, or undefined. */
  textPref(name: string): string | undefined {
    const value = this.prefs[name];
    return typeof value === 'string' ? value : undefined;
  }

  /** The `session` data message (without the request id). */
  sessionMessage(serverVersion: string): XmlElement {
    return el('session', {
      urlID: this.urlID,
      userName: this.userName,
      realName: this.account.realName || undefined,
      version: serverVersion,
    });
  }

  attach(sink: AsyncSink): void {
    this.sink = sink;
  }

  /** Sends an asynchronous data message (no id) to the client. */
  sendAsync(message: XmlElement | string): void {
    if (this.closed || !this.sink) return;
    this.sink.deliver(typeof message === 'string' ? message : message.toString());
  }

  /** Starts (or restarts) the idle timer; `onIdle` runs when it fires. */
  armIdleTimer(onIdle: () => void): void {
    this.onIdle = onIdle;
    this.lastActivity = coarseNow();
    this.scheduleIdleCheck(this.idleTimeoutSeconds * 1000);
  }

  /**
   * Called on every request: the session is not idle. Only a timestamp from a coarse clock
   * is written here (this runs once per pipelined request); the timer re-checks it when it
   * fires and re-arms itself for the time left.
   */
  touch(): void {
    this.lastActivity = coarseNow();
  }

  private scheduleIdleCheck(delayMs: number): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const left = this.lastActivity + this.idleTimeoutSeconds * 1000 - coarseNow();
      if (left > 0) this.scheduleIdleCheck(left);
      else this.onIdle?.();
    }, delayMs);
    this.idleTimer.unref();
  }

  setIdleTimeout(seconds: number): void {
    this.idleTimeoutSeconds = seconds;
    if (this.onIdle) this.armIdleTimer(this.onIdle);
  }

  /** Runs `hook` when the session ends (a bound IM client goes offline). */
  onEnd(hook: () => void): void {
    this.endHooks.push(hook);
  }

  /**
   * Ends the session: optionally tells the client (`bye`), then lets the binding drop its
   * connection. Idempotent. The session manager unregisters it.
   */
  end(sendBye: boolean): void {
    if (this.closed) return;
    if (sendBye) this.sendAsync('<bye/>');
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.onIdle = undefined;
    for (const folder of this.folders.values()) folder.view.close();
    this.folders.clear();
    for (const calendar of this.calendars.values()) if (calendar.kind === 'mailbox') calendar.view.close();
    this.calendars.clear();
    this.uploads.close();
    for (const leg of [...(this.calls?.legs.values() ?? [])]) leg.sessionEnded();
    for (const hook of this.endHooks.splice(0)) hook();
    this.sink?.ended(sendBye);
  }
}
