import { randomBytes } from 'node:crypto';
import { MAX_RELAY_MESSAGE, type ChangeRelay } from '../store/store.js';
import { errorText, silentLogger, type Logger } from '../log.js';
import type { CallTarget, Signal } from '../services/calls/signal.js';
import type { EncodedValue } from '../services/apps/values.js';

/**
 * What services tell each other after they commit a change. Every event travels to every
 * process sharing the store (see EventBus), so payloads stay small: ids, names, modseqs;
 * receivers read the rest from the store.
 */
export interface BusEvents {
  /** An alert was posted for an account (its text when short enough to travel along). */
  alertPosted: { accountId: number; alertId: number; posted: number; text?: string };
  /** An account's password changed. */
  credentialsChanged: { accountId: number };
  /** An account was removed. */
  accountRemoved: { accountId: number };
  /** An account's settings changed (or its real name, recovery address). */
  accountChanged: { accountId: number };
  /** An account's custom preferences changed: its sessions re-read them and are told (prefsModified). */
  prefsChanged: { accountId: number };
  /** A domain's settings changed (its accounts' effective settings and preferences with them). */
  domainChanged: { domain: string };
  /** The queue changed outside the queue's own work (an administrator's retry): look for due work now. */
  queueChanged: Record<string, never>;
  /**
   * A mailbox of an account was created, removed, renamed, its ACL changed (no `modseq`),
   * or its messages changed (`modseq`: the mailbox's modseq after the change).
   */
  mailboxChanged: { accountId: number; mailboxId: number | undefined; name: string; modseq?: number };
  /** A file or directory of an account's File Storage changed (content, attributes, locks, or it came or went). */
  fileChanged: { accountId: number; path: string };
  /**
   * A connected IM client (XIMSS session bound with signalBind, XMPP resource) came, changed its
   * presence, or went (`gone`). `presence` is left out when too large to travel; receivers then
   * read the record from the store (ResourceStore).
   */
  imResource: { accountId: number; resource: string; node: string; kind: 'xmpp' | 'ximss'; available: boolean; priority: number; since: number; presence?: string; gone?: true };
  /**
   * A stanza for clients on node `node`: one resource of the account, or (no `resource`) every
   * client of the account that gets presence. `xml` is the stanza; when too large to travel it
   * waits in the shared state under `key` instead.
   */
  imStanza: { node: string; accountId: number; resource?: string; xml?: string; key?: string };
  /** The client `resource` of the account, on node `node`, is to end (signalBind mode="kill" on another node). */
  imEnd: { node: string; accountId: number; resource: string; reason: string };
  /**
   * A stanza for a group chat room hosted on node `node` (src/services/im/muc.ts), from a client
   * of account `accountId` on node `origin` (its full JID is the stanza's `from`); `key` as for imStanza.
   */
  mucStanza: { node: string; room: string; accountId: number; origin: string; xml?: string; key?: string };
  /**
   * A call signal for port `to` on node `node` (src/services/calls/router.ts), or a new call
   * for `target` there, from port `from`; `key` as for imStanza when too large to travel.
   */
  callSignal: { node: string; to?: string; target?: CallTarget; from: { node: string; id: string }; signal?: Signal; key?: string };
  /**
   * A Rayo client of account `accountId` on node `node` became (`available`) or stopped being a
   * potential controlling party; `ask`: node `node` missed events and asks every node to tell
   * its clients again.
   */
  rayoClient: { node: string; accountId?: number; jid?: string; available?: boolean; ask?: true; gone?: true };
  /**
   * A Rayo command (an iq) of a client of another node for a call node `node` holds (XEP-0349):
   * the client's account and full JID, and the iq, or the `key` it waits under in the shared state.
   */
  rayoCommand: { node: string; accountId: number; name: string; domain: string; jid: string; resource: string; xml?: string; key?: string };
  /**
   * An event for the task or XIMSS session `to` (a handle `<node>~<id>`) of a real-time
   * application (src/services/apps/), from `from`; its parameter as JSON (apps/values.ts). An
   * event too large to travel waits in the shared state under `key`.
   */
  taskEvent: { to: string; from?: string; name?: string; parameter?: EncodedValue; key?: string };
  /** One of an account's rule sets changed (`mailIn`, `signalIn`): whoever keeps its rules re-reads them. */
  rulesChanged: { accountId: number; type: string };
  /** An account's roster changed (`item` removed when absent): its clients get the push. */
  rosterChanged: { accountId: number; jid: string; version: number; item?: string };
  /** An account's block list changed (XEP-0191): caches drop it, its clients get the push. */
  blockingChanged: { accountId: number; blocked: string[]; unblocked: string[] | 'all' };
  /**
   * An account's SIP registrations changed (a REGISTER, an expiry, a node gone): whoever
   * keeps where its devices are re-reads them (RegistrationStore.list).
   */
  sipRegistration: { accountId: number };
  /**
   * An account's remote SIP records changed (rsipUpdate): the node registering them looks at
   * them again now, not at its next scan.
   */
  remoteSipChanged: { accountId: number };
  /** An account's remote POP/IMAP records changed (rpopUpdate, rimapUpdate): pollers look for due records now. */
  remoteMailChanged: { accountId: number };
  /** The account's sessions are to end (killOld on any node), except `except` (a urlID). */
  endSessions: { accountId: number; except?: string };
  /**
   * A credential of the account stopped being good: with `appPassword`, that application
   * password was removed (the sessions opened with it end); without, the main password
   * changed or two-factor authentication was turned on (every session ends but `except`).
   */
  credentialsRevoked: { accountId: number; appPassword?: string; except?: string };
  /**
   * Local only: events from other processes may have been missed (the relay's connection
   * dropped); whoever keeps state derived from the store re-reads it.
   */
  resync: Record<string, never>;
}

/** `remote`: the event comes from another process (through the relay). */
type Listener<T> = (event: T, remote: boolean) => void;

/** The topics that travel between processes (everything but `resync`). */
type SharedTopic = Exclude<keyof BusEvents, 'resync'>;

interface RelayMessage {
  /** The sending bus. */
  o: string;
  t: SharedTopic;
  e: unknown;
}

const SHARED_TOPICS: ReadonlySet<string> = new Set<SharedTopic>([
  'alertPosted',
  'credentialsChanged',
  'accountRemoved',
  'accountChanged',
  'prefsChanged',
  'domainChanged',
  'queueChanged',
  'mailboxChanged',
  'fileChanged',
  'endSessions',
  'credentialsRevoked',
  'imResource',
  'imStanza',
  'imEnd',
  'mucStanza',
  'callSignal',
  'rosterChanged',
  'blockingChanged',
  'sipRegistration',
  'rulesChanged',
  'rayoClient',
  'rayoCommand',
  'taskEvent',
  'remoteSipChanged',
  'remoteMailChanged',
]);

/**
 * The event bus: services publish after they commit, listeners in this process hear it at
 * once, and the store's relay carries it to every other process sharing the store
 * (PostgreSQL LISTEN/NOTIFY between cluster nodes; on SQLite, from the command line to the
 * server), whose buses hand it to their own listeners. Nothing that subscribes needs to
 * know where an event came from: listeners treat every event as "go and look" (a folder
 * view catches up from the mail journal by modseq), so the order in which events arrive,
 * or a duplicate, changes nothing. When the relay may have lost events, `resync` is
 * published locally.
 */
export class EventBus {
  private listeners = new Map<keyof BusEvents, Set<Listener<never>>>();
  /** Identifies this bus in relayed messages, so it ignores its own. */
  readonly origin = randomBytes(6).toString('hex');
  private readonly sending = new Set<Promise<void>>();
  private stopListening: (() => Promise<void>) | undefined;

  constructor(
    private readonly relay?: ChangeRelay,
    private readonly log: Logger = silentLogger,
  ) {}

  /** Starts receiving other processes' events (a serving process; the command line only sends). */
  async listen(): Promise<void> {
    if (!this.relay || this.stopListening) return;
    this.stopListening = await this.relay.listen(
      (message) => this.receive(message),
      () => this.deliver('resync', {}, true),
    );
  }

  on<K extends keyof BusEvents>(topic: K, listener: Listener<BusEvents[K]>): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Tells this process's listeners now, and every other process through the relay. */
  publish<K extends SharedTopic>(topic: K, event: BusEvents[K]): void {
    this.deliver(topic, event, false);
    if (!this.relay) return;
    const message = JSON.stringify({ o: this.origin, t: topic, e: event } satisfies RelayMessage);
    if (Buffer.byteLength(message) > MAX_RELAY_MESSAGE) {
      this.log.error({ event: 'bus.dropped', topic, bytes: Buffer.byteLength(message) }, `${topic} event too large to relay; dropped`);
      return;
    }
    const sent = this.relay.send(message).catch((err: unknown) => {
      this.log.error({ event: 'bus.relay_failed', topic, error: errorText(err) }, `relaying ${topic} failed`);
    });
    this.sending.add(sent);
    void sent.finally(() => this.sending.delete(sent));
  }

  /** Resolves once every event published so far has been handed to the relay (before a command exits). */
  async flush(): Promise<void> {
    while (this.sending.size > 0) await Promise.allSettled([...this.sending]);
  }

  async close(): Promise<void> {
    await this.flush();
    const stop = this.stopListening;
    this.stopListening = undefined;
    await stop?.();
  }

  private receive(text: string): void {
    let message: RelayMessage;
    try {
      message = JSON.parse(text) as RelayMessage;
    } catch {
      this.log.warn({ event: 'bus.unreadable' }, 'an unreadable relay message was ignored');
      return;
    }
    if (message.o === this.origin || !SHARED_TOPICS.has(message.t) || typeof message.e !== 'object' || message.e === null) return;
    this.deliver(message.t, message.e as BusEvents[SharedTopic], true);
  }

  private deliver<K extends keyof BusEvents>(topic: K, event: BusEvents[K], remote: boolean): void {
    const set = this.listeners.get(topic);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<BusEvents[K]>)(event, remote);
      } catch (err) {
        this.log.error({ event: 'bus.listener_failed', topic, err }, `a listener for ${topic} failed`);
      }
    }
  }
}
