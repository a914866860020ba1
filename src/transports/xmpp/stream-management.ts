import { randomBytes } from 'node:crypto';
import type { AccountIdentity } from '../../store/store.js';
import { el, type XmlElement } from '../../xml/element.js';
import type { StanzaOut, StanzaSession } from './stanza-session.js';

export const NS_SM = 'urn:xmpp:sm:3';
export const NS_CSI = 'urn:xmpp:csi:0';
const NS_CHAT_STATES = 'http://jabber.org/protocol/chatstates';
/** Stanza counters run modulo 2^32 (XEP-0198 5). */
const COUNTER = 2 ** 32;
/** Unacknowledged stanzas after which the server asks the client for an ack. */
const ACK_REQUEST_AFTER = 5;
/**
 * Unacknowledged stanzas a resource may have (a client that never acks, or one away for
 * long): beyond them it ends (`resource-constraint`), its stanzas handed to the session.
 */
export const MAX_UNACKED = 1000;

/** What a resource's stream does for it (c2s.ts: one per connection; a resumed resource moves to a new one). */
export interface ResourceStream {
  /** Writes a stanza or a nonza to the client. */
  write(element: XmlElement): void;
  /** Ends the stream (with a stream error condition), as StanzaOut.close. */
  close(condition?: string, text?: string): void;
  readonly remoteAddress: string;
  readonly secure: boolean;
}

/**
 * One bound resource as its session sees it (the StanzaOut given to StanzaSessions.bind):
 * it outlives its connection when stream management lets the client resume, so that the
 * session neither notices a short loss nor misses what is sent meanwhile.
 *
 * Between the session and the stream sit, in order: client state indication (XEP-0352:
 * while the client says it is inactive, presence is held, only the latest per sender, and
 * so are messages that carry only a chat state, the latest per sender, until it is active
 * again or a message that matters comes) and stream management (XEP-0198: outbound stanzas are counted and kept
 * until the client acknowledges them; the client's are counted for its acks).
 */
export class BoundResource implements StanzaOut {
  session: StanzaSession | undefined;
  private stream: ResourceStream | undefined;
  private lastAddress: string;
  private lastSecure: boolean;
  /** Stream management, once the client enabled it. */
  smEnabled = false;
  resumeId: string | undefined;
  /** Stanzas received from the client (h of our acks) and sent to it. */
  inbound = 0;
  private outbound = 0;
  private unacked: XmlElement[] = [];
  private ackRequested = false;
  /** Client state indication. */
  private inactive = false;
  /** Made when the client first says it is inactive (most never do: an empty Map costs 200 bytes a connection). */
  private held: Map<string, XmlElement> | undefined;
  private resumeTimer: NodeJS.Timeout | undefined;
  private ended = false;
  /** What the session sent while binding: written after the bind result, which the client must see first. */
  private beforeBound: XmlElement[] | undefined = [];

  constructor(
    readonly account: AccountIdentity,
    stream: ResourceStream,
    private readonly registry: ResumptionRegistry,
  ) {
    this.stream = stream;
    this.lastAddress = stream.remoteAddress;
    this.lastSecure = stream.secure;
  }

  get remoteAddress(): string {
    return this.stream?.remoteAddress ?? this.lastAddress;
  }

  get secure(): boolean {
    return this.stream?.secure ?? this.lastSecure;
  }

  /** Whether the resource waits for its client to resume it. */
  get detached(): boolean {
    return this.stream === undefined && !this.ended;
  }

  isAttachedTo(stream: ResourceStream): boolean {
    return this.stream === stream;
  }

  // --- StanzaOut ---

  send(stanza: XmlElement): void {
    if (this.ended) return;
    if (this.inactive) {
      const key = this.holdKey(stanza);
      if (key !== undefined) {
        this.held ??= new Map();
        this.held.delete(key);
        this.held.set(key, stanza);
        return;
      }
      // A message that matters: what was held goes first, in order.
      if (stanza.name === 'message') this.flushHeld();
    }
    this.deliver(stanza);
  }

  close(condition?: string, text?: string): void {
    if (this.ended) return;
    if (this.stream) this.stream.close(condition, text);
    else this.end();
  }

  // --- client state indication ---

  setActive(active: boolean): void {
    this.inactive = !active;
    if (active) this.flushHeld();
  }

  /** Under which key a stanza is held while the client is inactive; undefined: sent at once. */
  private holdKey(stanza: XmlElement): string | undefined {
    if (stanza.name === 'presence') {
      const type = stanza.attrs.type;
      // Subscription requests and errors are rare and wanted: only availability waits.
      if (type === undefined || type === 'unavailable') return `p ${stanza.attrs.from ?? ''}`;
      return undefined;
    }
    // Only the latest chat state of a sender means anything.
    if (stanza.name === 'message' && isChatStateOnly(stanza)) return `m ${stanza.attrs.from ?? ''}`;
    return undefined;
  }

  private flushHeld(): void {
    if (!this.held || this.held.size === 0) return;
    const held = [...this.held.values()];
    this.held.clear();
    for (const stanza of held) this.deliver(stanza);
  }

  // --- stream management ---

  private deliver(stanza: XmlElement): void {
    if (this.smEnabled) {
      this.unacked.push(stanza);
      this.outbound = (this.outbound + 1) % COUNTER;
      if (this.unacked.length > MAX_UNACKED) {
        this.close('resource-constraint', `more than ${MAX_UNACKED} stanzas unacknowledged`);
        return;
      }
    }
    const stream = this.stream;
    if (!stream) return;
    if (this.beforeBound) {
      this.beforeBound.push(stanza);
      return;
    }
    stream.write(stanza);
    if (this.smEnabled && !this.ackRequested && this.unacked.length >= ACK_REQUEST_AFTER) {
      this.ackRequested = true;
      stream.write(el('r', { xmlns: NS_SM }));
    }
  }

  /** The bind result has been written: what the session sent meanwhile follows it. */
  bound(): void {
    const pending = this.beforeBound ?? [];
    this.beforeBound = undefined;
    for (const stanza of pending) this.stream?.write(stanza);
  }

  /** `<enable/>`: counting starts now; resumable unless the server keeps no lost sessions. */
  enable(resume: boolean): string | undefined {
    this.smEnabled = true;
    this.inbound = 0;
    this.outbound = 0;
    this.unacked = [];
    if (resume) this.resumeId = this.registry.add(this);
    return this.resumeId;
  }

  /** The client's `<a h=…/>` (or the h of its `<resume/>`): forgets what it has. False when it claims more than was sent. */
  acknowledge(h: number): boolean {
    const acked = this.acknowledged(h);
    if (acked === undefined) return false;
    this.ackRequested = false;
    this.unacked.splice(0, acked);
    return true;
  }

  /** How many of the unacknowledged stanzas `h` acknowledges; undefined when it claims more than were sent. */
  private acknowledged(h: number): number | undefined {
    const sentBefore = (this.outbound - this.unacked.length + COUNTER) % COUNTER;
    const acked = (h - sentBefore + COUNTER) % COUNTER;
    return acked > this.unacked.length ? undefined : acked;
  }

  /** A stanza from the client was handled. */
  countInbound(): void {
    if (this.smEnabled) this.inbound = (this.inbound + 1) % COUNTER;
  }

  /**
   * The connection is gone. Unless the client may resume, the resource ends now; else it
   * waits `resumeSeconds` for a `<resume/>`, keeping what is sent meanwhile.
   */
  detach(stream: ResourceStream, resumable: boolean, resumeSeconds: number): void {
    if (this.stream !== stream || this.ended) return;
    this.stream = undefined;
    this.lastAddress = stream.remoteAddress;
    this.lastSecure = stream.secure;
    if (!resumable || !this.resumeId || resumeSeconds <= 0) {
      this.end();
      return;
    }
    this.resumeTimer = setTimeout(() => this.end(), resumeSeconds * 1000);
    this.resumeTimer.unref();
  }

  /**
   * Moves the resource to a new stream (`<resume/>`): what the client did not acknowledge
   * (beyond `h`) is sent again. The old stream, if the server has not noticed its loss yet,
   * is closed. Undefined when `h` is impossible (nothing changes then).
   */
  resume(stream: ResourceStream, h: number): XmlElement[] | undefined {
    if (this.ended || this.acknowledged(h) === undefined) return undefined;
    const old = this.stream;
    if (old && old !== stream) {
      this.stream = undefined;
      old.close('conflict', 'the session was resumed on another stream');
    }
    clearTimeout(this.resumeTimer);
    this.resumeTimer = undefined;
    this.acknowledge(h);
    this.stream = stream;
    this.lastAddress = stream.remoteAddress;
    this.lastSecure = stream.secure;
    return [...this.unacked];
  }

  /** The resource goes offline: the session hears it once, with what the client never acknowledged. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stream = undefined;
    clearTimeout(this.resumeTimer);
    if (this.resumeId) this.registry.remove(this.resumeId);
    const unacked = this.smEnabled && this.unacked.length > 0 ? this.unacked : undefined;
    this.unacked = [];
    // Held presence is stale by now; held chat states are not worth keeping.
    this.held?.clear();
    this.session?.ended(unacked);
  }
}

/** A message with no body or subject and a chat state (XEP-0085): not worth waking an inactive client for. */
function isChatStateOnly(message: XmlElement): boolean {
  let chatState = false;
  for (const child of message.children) {
    if (typeof child === 'string') continue;
    if (child.name === 'body' || child.name === 'subject') return false;
    if (child.attrs.xmlns === NS_CHAT_STATES) chatState = true;
  }
  return chatState;
}

/**
 * The resources of this process that a client may resume, by resumption id. A resumption id
 * from another node (or a restarted one) is not found: the client binds afresh.
 */
export class ResumptionRegistry {
  private readonly byId = new Map<string, BoundResource>();

  add(resource: BoundResource): string {
    const id = randomBytes(18).toString('base64url');
    this.byId.set(id, resource);
    return id;
  }

  remove(id: string): void {
    this.byId.delete(id);
  }

  /** The resource `id` names, if it belongs to `account`. */
  find(id: string, account: AccountIdentity): BoundResource | undefined {
    const resource = this.byId.get(id);
    return resource && resource.account.id === account.id ? resource : undefined;
  }

  /** Ends every resource waiting to be resumed (the server stops). */
  endAll(): void {
    for (const resource of [...this.byId.values()]) if (resource.detached) resource.end();
  }
}
