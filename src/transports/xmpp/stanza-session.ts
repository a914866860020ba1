import type { AccountIdentity } from '../../store/store.js';
import type { XmlElement } from '../../xml/element.js';

/**
 * The seam between an XMPP client stream (c2s.ts: TCP, STARTTLS, direct TLS or WebSocket;
 * SASL; resource binding) and what happens to its stanzas (session.ts: rosters, presence,
 * routing, archives). The stream knows nothing of rosters; the session knows nothing of
 * sockets, TLS or framing.
 *
 * Stanzas cross the seam as XmlElement trees in the `jabber:client` namespace: `message`,
 * `presence` and `iq` without an `xmlns` attribute of their own (the stream's default), their
 * children with the `xmlns` attributes they came with. `from` on what the client sent is set
 * by the stream to the client's full JID before the session sees it.
 */
export interface StanzaOut {
  /** Sends a stanza to the client (queued for the stream; dropped once it closed). */
  send(stanza: XmlElement): void;
  /**
   * Ends the stream: with a stream error condition (RFC 6120 4.9.3, e.g. `conflict` when a
   * newer client took the resource, `policy-violation`), else with a plain `</stream:stream>`.
   */
  close(condition?: string, text?: string): void;
  /** The client's address (for logs). */
  readonly remoteAddress: string;
  /** The stream is encrypted (STARTTLS or direct TLS, or WebSocket over HTTPS). */
  readonly secure: boolean;
}

/** One bound resource's stanza handling (src/transports/xmpp/session.ts). */
export interface StanzaSession {
  /** The full JID the resource was bound to. */
  readonly jid: string;
  /** A stanza from the client, in order; the stream waits for the promise before the next. */
  receive(stanza: XmlElement): Promise<void> | void;
  /**
   * The stream ended (closed by either side, or lost and not resumed in time): the resource
   * goes offline. `unacknowledged`: stanzas sent to it that the client never acknowledged
   * (XEP-0198), for the session to deliver elsewhere or keep offline.
   */
  ended(unacknowledged?: XmlElement[]): void;
}

/** What the stream asks once SASL succeeded and the client asks for a resource. */
export interface StanzaSessions {
  /**
   * Binds a resource of the account (`requested` when the client asked for one; the server
   * chooses one otherwise or when that one is taken by a client that stays) and starts its
   * session. Throws BindError when the account may not have more.
   */
  bind(account: AccountIdentity, requested: string | undefined, out: StanzaOut): Promise<StanzaSession>;
  /** Features the stream offers after binding (e.g. `<sm xmlns='urn:xmpp:sm:3'/>`, `<ver xmlns='urn:xmpp:features:rosterver'/>`). */
  streamFeatures(): XmlElement[];
}

/** A resource could not be bound: the XMPP error condition (`resource-constraint`, `not-allowed`) and a text. */
export class BindError extends Error {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}
