import { randomBytes } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { AuthService } from '../../services/auth.js';
import type { ConnectionLimiter } from '../../services/connections.js';
import { accountIdentity, type AccountIdentity } from '../../store/store.js';
import { el, escapeAttr, serialize, XmlElement } from '../../xml/element.js';
import type { XmlLimits } from '../../xml/parser.js';
import { NS_SASL, SaslFailure, SaslNegotiation, saslFailureElement } from './sasl.js';
import { BindError, type StanzaSessions } from './stanza-session.js';
import { BoundResource, NS_CSI, NS_SM, type ResourceStream, type ResumptionRegistry } from './stream-management.js';
import { NS_CLIENT, NS_FRAMING, NS_STREAM_ERRORS, NS_STREAMS, StreamError, type StanzaLimits } from './stream.js';

export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const NS_PING = 'urn:xmpp:ping';

const STANZAS = new Set(['message', 'presence', 'iq']);
/** SASL failures a stream may have before it is closed (RFC 6120 6.4.5: between 2 and 5 retries). */
const SASL_ATTEMPTS = 3;
/** Items (stanzas) received and waiting to be handled beyond which reading pauses; before binding, one at a time. */
const QUEUE_HIGH_WATER = 64;

/**
 * The coarse clock of a listener's streams: one interval, not a timer per connection, keeps
 * every login deadline and idle ping (XmppListener calls tick()). Times are counted in ticks,
 * small integers that a stream stores without allocating.
 */
export class StreamClock {
  /** Ticks since the listener started. */
  now = 0;
  readonly tickMs: number;
  /** limits.loginSeconds and xmpp.pingSeconds in ticks (at least one). */
  readonly loginTicks: number;
  readonly pingTicks: number;

  constructor(config: Config) {
    // A quarter of the shortest of the two, between 50 ms (tests) and a second.
    const shortest = Math.min(config.limits.loginSeconds, config.xmpp.pingSeconds) * 1000;
    this.tickMs = Math.min(1000, Math.max(50, Math.floor(shortest / 4)));
    const ticks = (seconds: number): number => Math.max(1, Math.ceil((seconds * 1000) / this.tickMs));
    this.loginTicks = ticks(config.limits.loginSeconds);
    this.pingTicks = ticks(config.xmpp.pingSeconds);
  }
}

/** How the ids of the server's pings (XEP-0199) begin, on every stream: their answers are recognised by it. */
const PING_ID = `ping-${randomBytes(6).toString('hex')}-`;

/** Everything a client stream needs of the server (XmppListener builds it once). */
export interface XmppContext {
  readonly sessions: StanzaSessions;
  readonly auth: AuthService;
  readonly config: Config;
  readonly tls: SecureContext | undefined;
  /** Whether the server serves a domain (a stream to another is refused: host-unknown). */
  isLocalDomain(domain: string): Promise<boolean>;
  readonly log: Logger;
  readonly metrics: Metrics | undefined;
  readonly connections: ConnectionLimiter;
  readonly resumption: ResumptionRegistry;
  readonly clock: StreamClock;
}

/** How a stream reaches its client: TCP (with STARTTLS or direct TLS) or WebSocket frames. */
export interface C2sTransport {
  /** For the metrics and the log. */
  readonly kind: 'tcp' | 'tls' | 'websocket';
  readonly remoteAddress: string;
  readonly secure: boolean;
  /** RFC 7395 framing (`<open/>`, `<close/>`, one element per frame) instead of one XML document. */
  readonly framed: boolean;
  /** STARTTLS is possible (TCP, not yet encrypted, with a certificate). */
  readonly canStartTls: boolean;
  /** Sends serialized XML (on WebSocket: one frame). */
  write(text: string): void;
  /** After `<proceed/>`: TLS on the socket; the stream restarts (a new header is read). */
  startTls(): void;
  /** After SASL success: the parser expects a new header. */
  restart(): void;
  /** Stops reading what remains of the input (after `<starttls/>`, or a stream error). */
  stopReading(): void;
  pause(): void;
  resume(): void;
  /** Ends the connection once the output has left. */
  end(): void;
  /** Drops the connection at once. */
  destroy(): void;
  /** The connection no longer counts against its address (ConnectionLimiter): it authenticated. */
  releaseAdmission(): void;
}

type Item = { kind: 'header'; attrs: Record<string, string> } | { kind: 'element'; element: XmlElement; ns: string } | { kind: 'close' };

type State = 'header' | 'negotiating' | 'authenticated' | 'bound' | 'closed';

/** Each configuration's two sets of limits, made once: every stream shares them. */
const limitsByConfig = new WeakMap<Config, { before: StanzaLimits; after: StanzaLimits }>();

/** The guard's limits for a stanza, tighter before authentication. */
export function stanzaLimits(config: Config, authenticated: boolean): StanzaLimits {
  let both = limitsByConfig.get(config);
  if (!both) {
    both = { before: makeStanzaLimits(config, false), after: makeStanzaLimits(config, true) };
    limitsByConfig.set(config, both);
  }
  return authenticated ? both.after : both.before;
}

function makeStanzaLimits(config: Config, authenticated: boolean): StanzaLimits {
  const { limits, xmpp } = config;
  const xml: XmlLimits = {
    depth: limits.xmlDepth,
    elements: authenticated ? limits.xmlElements : limits.preLoginXmlElements,
    attributes: limits.xmlAttributes,
    attributeChars: limits.xmlAttributeChars,
    textChars: limits.xmlTextChars,
    rootChildren: Number.POSITIVE_INFINITY,
  };
  return { xml, bytes: authenticated ? xmpp.maxStanzaBytes : xmpp.preAuthStanzaBytes };
}

/**
 * One XMPP client stream (RFC 6120), whatever carries it: the header and features,
 * STARTTLS, SASL, resource binding, then the client's stanzas handed in order to its
 * StanzaSession with `from` stamped, and the session's stanzas written back through
 * stream management and client state indication (stream-management.ts). Stream errors
 * (RFC 6120 4.9) end it with their element; `</stream:stream>` (or `<close/>`) closes it
 * gracefully both ways.
 *
 * Items from the parser (header, elements, the end) are handled one at a time, in order;
 * before binding the transport reads nothing more until an item is handled (a login
 * changes the limits and the parser, a `<starttls/>` the bytes themselves).
 */
export class C2sStream implements ResourceStream {
  private state: State = 'header';
  private queue: Item[] = [];
  private pumping = false;
  private paused = false;
  /** The domain the client opened the stream to. */
  domain = '';
  private account: AccountIdentity | undefined;
  private resource: BoundResource | undefined;
  /** Until authentication. */
  private sasl: SaslNegotiation | undefined;
  private saslFailures = 0;
  /** Set when the server ends the stream on purpose: the resource then ends too (no resumption). */
  private deliberate = false;
  private headerSent = false;
  /** When (StreamClock ticks) the stream opened, last heard from its client, and sent a ping still unanswered (-1: none). */
  private readonly openedAt: number;
  private heardAt: number;
  private pingSentAt = -1;
  private readonly log: Logger;

  constructor(
    private readonly context: XmppContext,
    private readonly transport: C2sTransport,
    private readonly onClosed: (stream: C2sStream) => void,
  ) {
    this.sasl = new SaslNegotiation(context.auth, context.config.xmpp.requireTls);
    this.log = context.log;
    this.openedAt = this.heardAt = context.clock.now;
    context.metrics?.xmppConnections.inc({ transport: transport.kind });
    this.log.info({ event: 'xmpp.connected', address: transport.remoteAddress, transport: transport.kind }, 'XMPP client connected');
  }

  get remoteAddress(): string {
    return this.transport.remoteAddress;
  }

  get secure(): boolean {
    return this.transport.secure;
  }

  /** The stream's limits now (the parser asks at each element). */
  get limits(): StanzaLimits {
    return stanzaLimits(this.context.config, this.account !== undefined);
  }

  // --- input from the transport ---

  /** The stream header (`<stream:stream>`, or `<open/>` on WebSocket). */
  header(attrs: Record<string, string>): void {
    this.push({ kind: 'header', attrs });
  }

  /** A top-level element and its namespace. */
  element(element: XmlElement, ns: string): void {
    // What follows `<starttls/>` in clear text is never read (STARTTLS command injection).
    if (ns === NS_TLS && element.name === 'starttls') this.transport.stopReading();
    const sasl = this.sasl;
    if (ns === NS_SASL && sasl?.awaitingResponse) {
      if (element.name === 'response' || element.name === 'abort') return sasl.response(element);
      // A new `<auth/>` in the middle of an exchange aborts it (RFC 6120 6.4.4).
      if (element.name === 'auth') sasl.response(new XmlElement('abort'));
    }
    // Stanzas look the same whichever transport brought them (WebSocket frames say their namespace).
    if (ns === NS_CLIENT && element.attrs.xmlns === NS_CLIENT) delete element.attrs.xmlns;
    this.push({ kind: 'element', element, ns });
  }

  /** `</stream:stream>` or `<close/>`. */
  end(): void {
    this.push({ kind: 'close' });
  }

  /**
   * The client's input ended (TCP FIN) without `</stream:stream>`: a lost connection, which
   * stream management may resume, not a graceful close.
   */
  inputEnded(): void {
    if (this.state === 'closed' || this.queue.some((item) => item.kind === 'close')) return;
    this.transport.destroy();
  }

  /** SASL waits for the client's `<response/>`: it must be read although the `<auth/>` is not handled yet. */
  awaitResponse(): void {
    if (!this.paused) return;
    this.paused = false;
    this.transport.resume();
  }

  /** Data arrived: the stream is alive. */
  activity(): void {
    this.heardAt = this.context.clock.now;
    this.pingSentAt = -1;
  }

  /**
   * The listener's clock ticked: a stream not bound by loginSeconds is closed; a bound one
   * silent for pingSeconds is pinged (XEP-0199), and closed when silent as long again.
   */
  tick(): void {
    const { clock } = this.context;
    if (this.state === 'closed') return;
    const now = clock.now;
    if (this.state !== 'bound') {
      if (now - this.openedAt >= clock.loginTicks) this.close('connection-timeout', 'no authentication in time');
      return;
    }
    if (this.pingSentAt >= 0) {
      if (now - this.pingSentAt >= clock.pingTicks) this.close('connection-timeout', 'the client stopped answering');
    } else if (now - this.heardAt >= clock.pingTicks) {
      this.pingSentAt = now;
      this.write(el('iq', { type: 'get', id: `${PING_ID}${now}`, from: this.domain, to: this.resource?.session?.jid }, el('ping', { xmlns: NS_PING })));
    }
  }

  /** The input broke a rule (malformed XML, a limit). */
  failed(err: StreamError): void {
    if (!this.account) this.context.connections.reportAbuse(this.remoteAddress, err.message);
    this.close(err.condition, err.message);
  }

  private push(item: Item): void {
    if (this.state === 'closed') return;
    this.queue.push(item);
    if (!this.paused && (this.state !== 'bound' || this.queue.length > QUEUE_HIGH_WATER)) {
      this.paused = true;
      this.transport.pause();
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && this.state !== 'closed') {
        const item = this.queue.shift()!;
        try {
          await this.handle(item);
        } catch (err) {
          if (err instanceof StreamError) {
            this.close(err.condition, err.message);
          } else {
            this.log.error({ event: 'xmpp.internal_error', address: this.remoteAddress, err }, 'XMPP stream failed');
            this.close('internal-server-error', 'internal server error');
          }
        }
      }
    } finally {
      this.pumping = false;
    }
    // An idle stream keeps no room for the largest burst it ever had.
    if (this.queue.length === 0) this.queue = [];
    if (this.paused && this.state !== 'closed') {
      this.paused = false;
      this.transport.resume();
    }
  }

  private async handle(item: Item): Promise<void> {
    if (item.kind === 'header') return this.openStream(item.attrs);
    if (item.kind === 'close') return this.close();
    if (this.state === 'header') throw new StreamError('not-well-formed', 'an element before the stream header');
    const { element, ns } = item;
    if (STANZAS.has(element.name) && ns !== NS_CLIENT) throw new StreamError('invalid-namespace', `a <${element.name}> must be in ${NS_CLIENT}`);
    if (this.state === 'negotiating') return this.negotiate(element, ns);
    if (this.state === 'authenticated') return this.beforeBinding(element, ns);
    return this.bound(element, ns);
  }

  // --- the header and features ---

  private async openStream(attrs: Record<string, string>): Promise<void> {
    if (this.state !== 'header') throw new StreamError('not-well-formed', 'a second stream header');
    const to = (attrs.to ?? '').toLowerCase();
    const restart = this.domain !== '';
    if (this.transport.framed && attrs.xmlns !== NS_FRAMING) {
      this.sendHeader(to || this.context.config.defaultDomain);
      throw new StreamError('invalid-namespace', `<open/> must be in ${NS_FRAMING}`);
    }
    const domain = to || this.context.config.defaultDomain;
    this.sendHeader(restart ? this.domain : domain);
    const version = /^(\d+)\.(\d+)$/.exec(attrs.version ?? '');
    if (!version || version[1] !== '1') throw new StreamError('unsupported-version', 'this server speaks XMPP 1.0');
    if (restart) {
      if (to && to !== this.domain) throw new StreamError('host-unknown', `the stream was opened to ${this.domain}`);
    } else if (!(await this.context.isLocalDomain(domain))) {
      throw new StreamError('host-unknown', `this server does not serve ${domain}`);
    } else {
      this.domain = domain;
    }
    this.state = this.account ? 'authenticated' : 'negotiating';
    this.write(this.features());
  }

  private sendHeader(from: string): void {
    if (this.headerSent) return;
    this.headerSent = true;
    // A new id for each header (RFC 6120 4.7.3), not kept: nothing refers to it afterwards.
    const common = `id="${randomBytes(12).toString('base64url')}" from="${escapeAttr(from)}" version="1.0" xml:lang="en"`;
    if (this.transport.framed) this.transport.write(`<open xmlns="${NS_FRAMING}" ${common}/>`);
    else this.transport.write(`<?xml version='1.0'?><stream:stream xmlns="${NS_CLIENT}" xmlns:stream="${NS_STREAMS}" ${common}>`);
  }

  private features(): XmlElement {
    const features = this.transport.framed ? el('stream:features', { 'xmlns:stream': NS_STREAMS }) : el('stream:features');
    if (!this.account) {
      if (this.transport.canStartTls && !this.secure) {
        const starttls = features.add('starttls', { xmlns: NS_TLS });
        if (this.context.config.xmpp.requireTls) starttls.add('required');
      }
      const mechanisms = this.sasl?.mechanisms(this.secure) ?? [];
      if (mechanisms.length > 0) features.append(el('mechanisms', { xmlns: NS_SASL }, ...mechanisms.map((m) => el('mechanism', {}, m))));
      return features;
    }
    features.append(
      el('bind', { xmlns: NS_BIND }),
      el('session', { xmlns: NS_SESSION }, el('optional')),
      el('sm', { xmlns: NS_SM }),
      el('csi', { xmlns: NS_CSI }),
    );
    // The session's own (roster versioning, …); one of each whatever both offer.
    const offered = new Set(features.elements().map((f) => `${f.name} ${f.attrs.xmlns ?? ''}`));
    for (const feature of this.context.sessions.streamFeatures()) {
      const key = `${feature.name} ${feature.attrs.xmlns ?? ''}`;
      if (!offered.has(key)) {
        offered.add(key);
        features.append(feature);
      }
    }
    return features;
  }

  // --- before authentication: STARTTLS and SASL ---

  private async negotiate(element: XmlElement, ns: string): Promise<void> {
    if (ns === NS_TLS && element.name === 'starttls') {
      if (this.secure || !this.transport.canStartTls) {
        this.write(el('failure', { xmlns: NS_TLS }));
        this.deliberate = true;
        return this.finish();
      }
      this.write(el('proceed', { xmlns: NS_TLS }));
      this.state = 'header';
      this.headerSent = false;
      this.queue.length = 0;
      this.transport.startTls();
      return;
    }
    if (ns === NS_SASL && element.name === 'auth') return this.authenticate(element);
    if (ns === NS_SASL && element.name === 'abort') {
      this.write(saslFailureElement(new SaslFailure('aborted', 'no exchange under way')));
      return;
    }
    throw new StreamError('not-authorized', 'authenticate first');
  }

  private async authenticate(auth: XmlElement): Promise<void> {
    let outcome;
    try {
      if (!this.sasl) throw new StreamError('not-authorized', 'authenticated already');
      outcome = await this.sasl.authenticate(this, auth);
    } catch (err) {
      if (!(err instanceof SaslFailure)) throw err;
      if (this.state === 'closed') return;
      this.write(saslFailureElement(err));
      if (++this.saslFailures >= SASL_ATTEMPTS) throw new StreamError('policy-violation', 'too many failed authentication attempts');
      return;
    }
    if (this.state === 'closed') return;
    const { account } = outcome.authenticated;
    this.account = accountIdentity(account);
    this.sasl = undefined;
    this.transport.releaseAdmission();
    this.log.info(
      { event: 'xmpp.authenticated', address: this.remoteAddress, user: `${account.name}@${account.domain}`, mechanism: auth.attrs.mechanism, transport: this.transport.kind },
      'XMPP client authenticated',
    );
    this.write(outcome.success);
    this.state = 'header';
    this.headerSent = false;
    this.queue.length = 0;
    this.transport.restart();
  }

  // --- after authentication: binding (or resuming) ---

  private async beforeBinding(element: XmlElement, ns: string): Promise<void> {
    if (ns === NS_CLIENT && element.name === 'iq') {
      const bind = element.element('bind');
      if (bind?.attrs.xmlns === NS_BIND && element.attrs.type === 'set') return this.bind(element, bind);
      if (element.element('session')?.attrs.xmlns === NS_SESSION) return this.write(iqResult(element));
      return this.write(iqError(element, 'cancel', 'not-allowed', 'bind a resource first'));
    }
    if (ns === NS_SM && element.name === 'resume') return this.resume(element);
    if (ns === NS_SM && element.name === 'enable') return this.write(smFailed('unexpected-request', 'bind a resource first'));
    throw new StreamError('not-authorized', 'bind a resource first');
  }

  private async bind(iq: XmlElement, bind: XmlElement): Promise<void> {
    const account = this.account!;
    const requested = bind.element('resource')?.text().trim() || undefined;
    if (requested !== undefined && (requested.length > 1023 || /[\u0000-\u001f]/.test(requested))) {
      return this.write(iqError(iq, 'modify', 'bad-request', 'the resource is not a valid resourcepart'));
    }
    const resource = new BoundResource(account, this, this.context.resumption);
    let session;
    try {
      session = await this.context.sessions.bind(account, requested, resource);
    } catch (err) {
      if (!(err instanceof BindError)) throw err;
      return this.write(iqError(iq, err.condition === 'resource-constraint' ? 'wait' : 'cancel', err.condition, err.message));
    }
    resource.session = session;
    if (this.state === 'closed') {
      resource.end();
      return;
    }
    this.resource = resource;
    this.state = 'bound';
    this.boundNow();
    this.write(el('iq', { type: 'result', id: iq.attrs.id }, el('bind', { xmlns: NS_BIND }, el('jid', {}, session.jid))));
    resource.bound();
    this.log.info({ event: 'xmpp.bound', address: this.remoteAddress, jid: session.jid, transport: this.transport.kind }, 'XMPP resource bound');
  }

  /** Bound (or resumed): the login deadline gives way to the idle ping (tick()). */
  private boundNow(): void {
    this.heardAt = this.context.clock.now;
  }

  private resume(element: XmlElement): void {
    const h = counter(element.attrs.h);
    const resource = this.context.resumption.find(element.attrs.previd ?? '', this.account!);
    if (h === undefined) return this.write(smFailed('bad-request', 'h is not a counter'));
    const unacked = resource?.resume(this, h);
    if (!resource || !unacked) return this.write(smFailed('item-not-found', 'no session to resume: bind a resource'));
    this.resource = resource;
    this.state = 'bound';
    this.boundNow();
    this.write(el('resumed', { xmlns: NS_SM, previd: resource.resumeId, h: resource.inbound }));
    for (const stanza of unacked) this.write(stanza);
    this.log.info({ event: 'xmpp.resumed', address: this.remoteAddress, jid: resource.session?.jid, resent: unacked.length }, 'XMPP session resumed');
  }

  // --- bound: stanzas both ways ---

  private async bound(element: XmlElement, ns: string): Promise<void> {
    const resource = this.resource!;
    if (ns === NS_CLIENT && STANZAS.has(element.name)) {
      this.context.metrics?.xmppStanzas.inc({ direction: 'in' });
      resource.countInbound();
      return this.stanza(resource, element);
    }
    if (ns === NS_SM) return this.streamManagement(resource, element);
    if (ns === NS_CSI && (element.name === 'active' || element.name === 'inactive')) return resource.setActive(element.name === 'active');
    throw new StreamError('unsupported-stanza-type', `<${element.name}> in ${ns || 'no namespace'} is not a stanza of this stream`);
  }

  private async stanza(resource: BoundResource, stanza: XmlElement): Promise<void> {
    const session = resource.session!;
    const from = stanza.attrs.from;
    if (from !== undefined && !sameAddress(from, session.jid)) throw new StreamError('invalid-from', `${from} is not this stream's address`);
    stanza.attrs.from = session.jid;
    if (stanza.name === 'iq') {
      const type = stanza.attrs.type;
      if ((type === 'result' || type === 'error') && stanza.attrs.id?.startsWith(PING_ID)) return;
      const toServer = stanza.attrs.to === undefined || stanza.attrs.to.toLowerCase() === this.domain;
      if (type === 'set' && toServer && stanza.element('session')?.attrs.xmlns === NS_SESSION) return this.write(iqResult(stanza));
    }
    await session.receive(stanza);
  }

  private streamManagement(resource: BoundResource, element: XmlElement): void {
    switch (element.name) {
      case 'enable': {
        if (resource.smEnabled) return this.write(smFailed('unexpected-request', 'stream management is enabled already'));
        const resume = element.attrs.resume === 'true' || element.attrs.resume === '1';
        const seconds = this.context.config.xmpp.resumeSeconds;
        const id = resource.enable(resume && seconds > 0);
        this.write(el('enabled', { xmlns: NS_SM, ...(id ? { id, resume: 'true', max: seconds } : {}) }));
        return;
      }
      case 'r':
        if (resource.smEnabled) this.write(el('a', { xmlns: NS_SM, h: resource.inbound }));
        return;
      case 'a': {
        const h = counter(element.attrs.h);
        if (!resource.smEnabled) return;
        if (h === undefined || !resource.acknowledge(h)) throw new StreamError('undefined-condition', 'the client acknowledged more stanzas than were sent');
        return;
      }
      case 'resume':
        return this.write(smFailed('unexpected-request', 'the stream is bound already'));
      default:
        throw new StreamError('unsupported-stanza-type', `<${element.name}> of stream management is not understood`);
    }
  }

  // --- output ---

  /** Writes a stanza or nonza to the client (ResourceStream). */
  write(element: XmlElement): void {
    if (this.state === 'closed') return;
    const isStanza = STANZAS.has(element.name);
    if (isStanza) this.context.metrics?.xmppStanzas.inc({ direction: 'out' });
    if (this.transport.framed && isStanza && element.attrs.xmlns === undefined) {
      // RFC 7395: every frame is a document of its own; stanzas say their namespace.
      const framed = new XmlElement(element.name, { xmlns: NS_CLIENT, ...element.attrs }, element.children);
      this.transport.write(serialize(framed));
      return;
    }
    this.transport.write(serialize(element));
  }

  /**
   * Ends the stream: with a stream error (RFC 6120 4.9: the error, then the end of the
   * stream) or gracefully (`</stream:stream>`, answered by the client's). The bound
   * resource ends too, since this is no loss the client could resume from.
   */
  close(condition?: string, text?: string): void {
    if (this.state === 'closed') return;
    this.deliberate = true;
    if (condition) {
      this.sendHeader(this.domain || this.context.config.defaultDomain);
      const error = el('stream:error', this.transport.framed ? { 'xmlns:stream': NS_STREAMS } : {}, el(condition, { xmlns: NS_STREAM_ERRORS }));
      if (text) error.append(el('text', { xmlns: NS_STREAM_ERRORS, 'xml:lang': 'en' }, text));
      this.transport.write(serialize(error));
      // A parser's message may quote what the client sent: only the kind is logged then.
      const logged = condition === 'not-well-formed' ? 'malformed XML' : text;
      this.log.info({ event: 'xmpp.stream_error', address: this.remoteAddress, condition, text: logged, jid: this.resource?.session?.jid }, `XMPP stream error: ${condition}`);
    }
    this.finish(condition ?? 'closed');
  }

  private finish(reason = 'closed'): void {
    if (this.state === 'closed') return;
    this.sendHeader(this.domain || this.context.config.defaultDomain);
    this.transport.write(this.transport.framed ? `<close xmlns="${NS_FRAMING}"/>` : '</stream:stream>');
    this.state = 'closed';
    this.queue.length = 0;
    this.transport.stopReading();
    this.transport.end();
    this.cleanup(reason);
  }

  /** Drops the connection at once (the server stops and its grace period is over). */
  destroy(): void {
    this.deliberate = true;
    this.transport.destroy();
  }

  /** The connection is gone (closed by either side, or lost). */
  lost(): void {
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.queue.length = 0;
    }
    this.cleanup(this.deliberate ? 'closed' : 'connection lost');
  }

  private cleaned = false;

  private cleanup(reason: string): void {
    if (this.cleaned) return;
    this.cleaned = true;
    this.sasl?.cancel();
    const resource = this.resource;
    if (resource) resource.detach(this, !this.deliberate, this.context.config.xmpp.resumeSeconds);
    this.context.metrics?.xmppConnections.dec({ transport: this.transport.kind });
    this.log.info(
      { event: 'xmpp.closed', address: this.remoteAddress, reason, jid: resource?.session?.jid, seconds: Math.round(((this.context.clock.now - this.openedAt) * this.context.clock.tickMs) / 1000), transport: this.transport.kind },
      'XMPP stream closed',
    );
    this.onClosed(this);
  }
}

/** A counter attribute (`h`): 0 to 2^32 - 1. */
function counter(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  const n = Number(value);
  return n < 2 ** 32 ? n : undefined;
}

/** Whether `from` names the stream's full JID, or its bare JID (RFC 6120 8.1.2.1); local part and domain compared without case. */
export function sameAddress(from: string, fullJid: string): boolean {
  const split = (jid: string): [string, string | undefined] => {
    const slash = jid.indexOf('/');
    return slash < 0 ? [jid.toLowerCase(), undefined] : [jid.slice(0, slash).toLowerCase(), jid.slice(slash + 1)];
  };
  const [bare, resource] = split(fullJid);
  const [fromBare, fromResource] = split(from);
  return fromBare === bare && (fromResource === undefined || fromResource === resource);
}

function iqResult(iq: XmlElement): XmlElement {
  return el('iq', { type: 'result', id: iq.attrs.id });
}

function iqError(iq: XmlElement, type: string, condition: string, text: string): XmlElement {
  return el('iq', { type: 'error', id: iq.attrs.id }, el('error', { type }, el(condition, { xmlns: NS_STANZAS }), el('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, text)));
}

function smFailed(condition: string, text: string): XmlElement {
  return el('failed', { xmlns: NS_SM }, el(condition, { xmlns: NS_STANZAS }), el('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, text));
}

