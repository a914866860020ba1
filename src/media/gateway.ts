/**
 * The media gateway: anchors a call's media at the server, between a WebRTC browser and a plain
 * RTP phone (ICE-lite and DTLS-SRTP on one side, RTP/AVP on the other), or between two plain
 * phones when policy or NAT says relay. The call engine keeps relaying SDP as text; for an
 * anchored call it passes each offer and answer through a `MediaSession`, which returns the SDP
 * to hand on, in the flavour of the side it goes to and with the server's addresses.
 *
 *   const media = gateway.open(callId);
 *   const offerForB = await media.offer('a', offerFromA, 'webrtc');   // A offered; B is a browser
 *   const answerForA = await media.answer('b', answerFromB);          // B answered
 *   … re-offers (hold, resume, ICE restart) the same way, from either side …
 *   await media.close();
 *
 * Sides keep their ports for the whole call. The SDP here is read and written with sdp-transform;
 * no signaling protocol is known here.
 */
import { EventEmitter } from 'node:events';
import sdpTransform, { type MediaDescription, type SessionDescription } from 'sdp-transform';
import type { Logger } from '../log.js';
import { PortAllocator, type PortRange } from './ports.js';
import { eventOfDigit } from './dtmf.js';
import { receives, RtpRelay, UdpRtpPort, type Endpoint, type MediaDirection, type PortCounters, type RelayCodec, type SideMedia } from './relay.js';
import { WEBRTC_CODECS, WebRtcPort } from './webrtc.js';
import { MediaEndpoint, type MediaEndpointOptions } from './endpoint.js';

export type Flavour = 'webrtc' | 'rtp';
export type SideName = 'a' | 'b';

export interface MediaGatewayOptions {
  /** The address put in the SDP we write and in our ICE candidates. */
  publicAddress: string;
  /** The local address to bind media sockets to (default: publicAddress; set it behind a 1:1 NAT). */
  bindAddress?: string;
  portRange: PortRange;
  /** How many sessions may be anchored at once. */
  maxSessions: number;
  /** Seconds without RTP from either side before a session emits 'idle' (0: never). */
  idleSeconds: number;
  log?: Logger;
}

/** An SDP the gateway cannot anchor (no audio, no codec it relays, a side that changed flavour…). */
export class MediaNegotiationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MediaNegotiationError';
  }
}

/**
 * Whether an SDP comes from (or is meant for) a WebRTC endpoint: its audio is secured by DTLS
 * (UDP/TLS/RTP/SAVPF or …/SAVP, RFC 5764), or it carries a DTLS fingerprint with ICE credentials.
 */
export function flavourOf(sdp: string): Flavour {
  const session = sdpTransform.parse(sdp);
  const sessionSecure = session.fingerprint !== undefined && session.iceUfrag !== undefined;
  for (const media of session.media) {
    if (/(^|\/)TLS\//i.test(media.protocol) || /DTLS/i.test(media.protocol)) return 'webrtc';
    if ((media.fingerprint ?? session.fingerprint) && (media.iceUfrag ?? session.iceUfrag)) return 'webrtc';
  }
  return sessionSecure ? 'webrtc' : 'rtp';
}

/**
 * The gateway's numbers, for src/metrics.ts to read at scrape time: `sessions` and `portsInUse`
 * are gauges; the others only grow (closed sessions' counts are kept), so they can back counters.
 */
export interface GatewayStats {
  sessions: number;
  portsInUse: number;
  /** RTP packets sent to either side of any session. */
  packetsRelayed: number;
  bytesRelayed: number;
  /** Packets not forwarded (strangers after latching, malformed, unaccepted payload types, held). */
  packetsDropped: number;
}

type Totals = Pick<GatewayStats, 'packetsRelayed' | 'bytesRelayed' | 'packetsDropped'>;

function addTotals(totals: Totals, stats: SessionStats): void {
  for (const side of [stats.a, stats.b]) {
    if (!side) continue;
    totals.packetsRelayed += side.packetsOut;
    totals.bytesRelayed += side.bytesOut;
    totals.packetsDropped += side.dropped;
  }
}

export class MediaGateway {
  private readonly ports: PortAllocator;
  private readonly sessions = new Map<string, MediaSession>();
  private readonly endpoints = new Map<string, MediaEndpoint>();
  private readonly closedTotals: Totals = { packetsRelayed: 0, bytesRelayed: 0, packetsDropped: 0 };
  readonly bindAddress: string;

  constructor(readonly options: MediaGatewayOptions) {
    this.ports = new PortAllocator(options.portRange, options.maxSessions);
    this.bindAddress = options.bindAddress ?? options.publicAddress;
  }

  /**
   * Opens the media session of a call. Throws SessionLimitError at maxSessions, and an Error
   * when `id` is already open.
   */
  open(id: string): MediaSession {
    if (this.sessions.has(id)) throw new Error(`media session ${id} is already open`);
    this.ports.openSession();
    const session = new MediaSession(id, this.options, this.bindAddress, this.ports, (final) => {
      this.sessions.delete(id);
      this.ports.closeSession();
      addTotals(this.closedTotals, final);
    });
    this.sessions.set(id, session);
    return session;
  }

  /**
   * Opens a media endpoint (the server as a party of a call's media, endpoint.ts) on the
   * gateway's ports, counted as a session against maxSessions. Throws like `open`.
   */
  openEndpoint(id: string, options: Pick<MediaEndpointOptions, 'clock' | 'idleAudio' | 'jitter'> = {}): MediaEndpoint {
    if (this.endpoints.has(id)) throw new Error(`media endpoint ${id} is already open`);
    this.ports.openSession();
    const endpoint = new MediaEndpoint({
      ...options,
      id,
      publicAddress: this.options.publicAddress,
      bindAddress: this.bindAddress,
      ports: this.ports,
      log: this.options.log,
      onClosed: () => {
        this.endpoints.delete(id);
        this.ports.closeSession();
      },
    });
    this.endpoints.set(id, endpoint);
    return endpoint;
  }

  get(id: string): MediaSession | undefined {
    return this.sessions.get(id);
  }

  stats(): GatewayStats {
    const totals = { ...this.closedTotals };
    for (const session of this.sessions.values()) addTotals(totals, session.stats());
    return { sessions: this.ports.sessions, portsInUse: this.ports.portsInUse, ...totals };
  }

  /** Closes every session (server shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.sessions.values(), ...this.endpoints.values()].map((media) => media.close()));
  }
}

/** A side's counters and what it negotiated. */
export interface SideStats extends PortCounters {
  flavour: Flavour;
  /** The local port (RTP's for plain RTP). */
  port: number;
  direction: MediaDirection;
  codecs: RelayCodec[];
}

export interface SessionStats {
  id: string;
  a?: SideStats;
  b?: SideStats;
}

interface Side {
  flavour: Flavour;
  port: UdpRtpPort | WebRtcPort;
  /** The ports reserved for this side, released on close. */
  reserved: number[];
  media: SideMedia;
  /** For the plain SDP we write to this side: our o= line's id and version (RFC 3264 8). */
  origin: { sessionId: number; version: number };
}

interface PendingOffer {
  from: SideName;
  /** Where a plain offerer's media went before this offer (restored if the offer is refused). */
  previous?: { rtp: Endpoint | undefined; rtcp: Endpoint | undefined };
  /** The offerer's audio, as offered. */
  offered: SideMedia;
  /** The offerer's SDP (to mirror its m-lines in a plain answer). */
  offer: SessionDescription;
  audioIndex: number;
}

const OTHER: Record<SideName, SideName> = { a: 'b', b: 'a' };
/** How many times to try another port when binding fails (another process holds it). */
const BIND_ATTEMPTS = 8;

/**
 * One call's anchored media. Events: `idle` (no RTP either way for idleSeconds), `digit` (side,
 * digit: a DTMF digit a side sent as RFC 4733 events that the other side does not take), `closed`.
 * Offers and answers must alternate (one offer pending at a time), as in SDP offer/answer.
 */
export class MediaSession extends EventEmitter {
  private readonly sides: Partial<Record<SideName, Side>> = {};
  private relay: RtpRelay | undefined;
  private pending: PendingOffer | undefined;
  private closing: Promise<void> | undefined;
  /** Serializes offer/answer/close, which await sockets and werift. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly id: string,
    private readonly options: MediaGatewayOptions,
    private readonly bindAddress: string,
    private readonly ports: PortAllocator,
    private readonly onClosed: (final: SessionStats) => void,
  ) {
    super();
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(task);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Side `from` offers `sdp`; returns the offer for the other side, in the flavour `otherSide`
   * (which must stay the same for the whole call). Throws MediaNegotiationError when there is
   * no audio with a codec we relay.
   */
  offer(from: SideName, sdp: string, otherSide: Flavour): Promise<string> {
    return this.serialize(async () => {
      this.checkOpen();
      const to = OTHER[from];
      const offer = sdpTransform.parse(sdp);
      const audioIndex = anchoredAudioIndex(offer);
      const flavour = flavourOf(sdp);
      const protocol = offer.media[audioIndex]!.protocol;
      if (flavour === 'rtp' && !/^RTP\/AVPF?$/i.test(protocol)) {
        // SDES-SRTP (RTP/SAVP with a=crypto) is not implemented: refusing beats answering in the clear.
        throw new MediaNegotiationError(`the offer's audio uses ${protocol}; plain RTP phones must offer RTP/AVP`);
      }
      const offered = sideMediaOf(offer, audioIndex);
      if (offered.payloadTypes.size === 0 || ![...offered.payloadTypes.values()].some(isG711)) {
        throw new MediaNegotiationError('the offer has no G.711 audio (PCMU or PCMA) to anchor');
      }
      const offerer = await this.ensureSide(from, flavour, WEBRTC_CODECS);
      // The other side is offered telephone-event even when the offerer has none: the gateway
      // then sends and takes its DTMF itself (sendDtmf, `digit`).
      const forOther = withTelephoneEvent(offered);
      const other = await this.ensureSide(to, otherSide, codecListOf(forOther));
      this.ensureRelay();

      let previous: PendingOffer['previous'];
      if (offerer.port instanceof WebRtcPort) await offerer.port.acceptOffer(sdp);
      else {
        const { remoteRtp: rtp, remoteRtcp: rtcp } = offerer.port;
        previous = { rtp: rtp && { ...rtp }, rtcp: rtcp && { ...rtcp } };
        setPlainRemote(offerer.port, offer, audioIndex);
      }

      let result: string;
      if (other.port instanceof WebRtcPort) {
        result = await other.port.createOffer(offered.direction);
      } else {
        result = this.writePlain(other, [{ media: { type: 'audio', ...forOther }, port: other.port }]);
      }
      this.pending = { from, offered, offer, audioIndex, previous };
      this.options.log?.debug({ event: 'media.offer', session: this.id, from, flavour, to: otherSide }, 'media offer relayed');
      return result;
    });
  }

  /**
   * Side `from` (the one that got the offer) answers `sdp`; returns the answer for the offerer
   * in its flavour, and starts (or changes) the relay as negotiated.
   */
  answer(from: SideName, sdp: string): Promise<string> {
    return this.serialize(async () => {
      this.checkOpen();
      const pending = this.pending;
      if (!pending || pending.from !== OTHER[from]) throw new MediaNegotiationError(`no offer is waiting for an answer from side ${from}`);
      const answerer = this.sides[from]!;
      const offerer = this.sides[pending.from]!;
      const parsed = sdpTransform.parse(sdp);
      const audioIndex = parsed.media.findIndex((media) => media.type === 'audio' && media.port !== 0);
      const answered: SideMedia =
        audioIndex < 0 ? { payloadTypes: new Map(), direction: 'inactive' } : sideMediaOf(parsed, audioIndex);

      if (answerer.port instanceof WebRtcPort) await answerer.port.acceptAnswer(sdp);
      else if (audioIndex >= 0) setPlainRemote(answerer.port, parsed, audioIndex);
      answerer.media = answered;

      let result: string;
      if (offerer.port instanceof WebRtcPort) {
        result = await offerer.port.createAnswer(answered.direction);
        const final = sdpTransform.parse(result);
        const index = final.media.findIndex((media) => media.type === 'audio' && media.port !== 0);
        offerer.media = {
          payloadTypes: index < 0 ? new Map() : sideMediaOf(final, index).payloadTypes,
          direction: pending.offered.direction,
        };
      } else {
        offerer.media = { payloadTypes: usableCodecs(pending.offered, answered), direction: pending.offered.direction };
        const refused = offerer.media.payloadTypes.size === 0;
        result = this.writePlainAnswer(offerer, pending, refused ? 'inactive' : answered.direction, refused);
      }
      this.pending = undefined;
      this.relay!.configure(this.sides.a!.media, this.sides.b!.media);
      this.options.log?.debug(
        { event: 'media.answer', session: this.id, from, flowing: this.relay!.flowing },
        'media answer relayed',
      );
      return result;
    });
  }

  /**
   * Sends DTMF digits (0-9, *, #, A-D) to side `to` as RFC 4733 telephone-events in its audio,
   * when it accepted telephone-event: returns a promise settled once they were sent, or
   * undefined (nothing sent) when it did not accept them or the media is not set up yet.
   */
  sendDtmf(to: SideName, digits: string): Promise<void> | undefined {
    const side = this.sides[to];
    if (this.closing || !this.relay || !side) return undefined;
    const payloadType = [...side.media.payloadTypes].find(([, codec]) => codec === 'telephone-event')?.[0];
    if (payloadType === undefined || !receives(side.media.direction)) return undefined;
    const events: number[] = [];
    for (const digit of digits) {
      const event = eventOfDigit(digit);
      if (event === undefined) return undefined;
      events.push(event);
    }
    return this.relay.sendDigits(to, events, payloadType);
  }

  /**
   * The offer waiting for an answer was refused (RFC 3264 4: the session stays as it was): the
   * offerer's media goes back where it went, the WebRTC sides forget the offer.
   */
  rollback(): Promise<void> {
    return this.serialize(async () => {
      const pending = this.pending;
      if (!pending || this.closing) return;
      this.pending = undefined;
      for (const name of ['a', 'b'] as const) {
        const side = this.sides[name];
        if (side?.port instanceof WebRtcPort) await side.port.rollback();
      }
      const offerer = this.sides[pending.from];
      if (offerer?.port instanceof UdpRtpPort && pending.previous?.rtp) offerer.port.setRemote(pending.previous.rtp, pending.previous.rtcp);
      this.options.log?.debug({ event: 'media.rollback', session: this.id, from: pending.from }, 'a refused offer forgotten');
    });
  }

  private checkOpen(): void {
    if (this.closing) throw new Error(`media session ${this.id} is closed`);
  }

  private async ensureSide(name: SideName, flavour: Flavour, codecs: readonly { codec: RelayCodec; payloadType: number }[]): Promise<Side> {
    const existing = this.sides[name];
    if (existing) {
      if (existing.flavour !== flavour) {
        throw new MediaNegotiationError(`side ${name} of media session ${this.id} was ${existing.flavour} and now offers ${flavour}`);
      }
      return existing;
    }
    const side = flavour === 'rtp' ? await this.bindPlain() : await this.bindWebRtc(codecs);
    this.sides[name] = side;
    return side;
  }

  private async bindPlain(): Promise<Side> {
    for (let attempt = 1; ; attempt++) {
      const rtpPort = this.ports.allocatePair();
      try {
        const port = await UdpRtpPort.bind(this.bindAddress, rtpPort, rtpPort + 1);
        return { flavour: 'rtp', port, reserved: [rtpPort, rtpPort + 1], media: noMedia(), origin: newOrigin() };
      } catch (error) {
        // Held by another process (the cursor has moved past it, so the next attempt gets another pair).
        this.ports.setAside(rtpPort);
        this.ports.setAside(rtpPort + 1);
        if (attempt >= BIND_ATTEMPTS) throw error;
      }
    }
  }

  private async bindWebRtc(codecs: readonly { codec: RelayCodec; payloadType: number }[]): Promise<Side> {
    // werift binds the first free port of the pair itself (see webrtc.ts).
    const portPair = this.ports.allocatePair();
    const port = new WebRtcPort({ bindAddress: this.bindAddress, publicAddress: this.options.publicAddress, portPair, codecs });
    return { flavour: 'webrtc', port, reserved: [portPair, portPair + 1], media: noMedia(), origin: newOrigin() };
  }

  private ensureRelay(): void {
    if (this.relay || !this.sides.a || !this.sides.b) return;
    this.relay = new RtpRelay(this.sides.a.port, this.sides.b.port, { idleSeconds: this.options.idleSeconds });
    this.relay.on('idle', () => {
      this.options.log?.info({ event: 'media.idle', session: this.id, idleSeconds: this.options.idleSeconds }, 'no RTP on an anchored call');
      this.emit('idle');
    });
    this.relay.on('digit', (side: SideName, digit: string) => this.emit('digit', side, digit));
  }

  /** A plain SDP for `side` with the given audio (and refused m-lines), from our address. */
  private writePlain(side: Side, media: { media: { type: string } & Partial<SideMedia>; port: UdpRtpPort | number; protocol?: string; payloads?: string }[]): string {
    const address = this.options.publicAddress;
    const ipVer = address.includes(':') ? 6 : 4;
    side.origin.version++;
    const description: SessionDescription = {
      version: 0,
      origin: { username: 'ximssd', sessionId: side.origin.sessionId, sessionVersion: side.origin.version, netType: 'IN', ipVer, address },
      name: '-',
      timing: { start: 0, stop: 0 },
      connection: { version: ipVer, ip: address },
      media: media.map(({ media: m, port, protocol, payloads }) => {
        if (typeof port === 'number' || !m.payloadTypes) {
          return { type: m.type, port: 0, protocol: protocol ?? 'RTP/AVP', payloads: payloads ?? '0', rtp: [], fmtp: [] } satisfies MediaDescription;
        }
        const list = [...m.payloadTypes];
        return {
          type: 'audio',
          port: port.rtpPort,
          protocol: 'RTP/AVP',
          payloads: list.map(([payloadType]) => payloadType).join(' '),
          rtp: list.map(([payload, codec]) => ({ payload, codec, rate: 8000 })),
          fmtp: list.filter(([, codec]) => codec === 'telephone-event').map(([payload]) => ({ payload, config: '0-16' })),
          ptime: 20,
          direction: m.direction ?? 'sendrecv',
        } satisfies MediaDescription;
      }),
    };
    return sdpTransform.write(description);
  }

  /** Our answer to a plain offerer: its m-lines mirrored, the anchored audio ours, the others refused. */
  private writePlainAnswer(side: Side, pending: PendingOffer, direction: MediaDirection, refused: boolean): string {
    return this.writePlain(
      side,
      pending.offer.media.map((media, index) =>
        index === pending.audioIndex && !refused
          ? { media: { type: 'audio', payloadTypes: side.media.payloadTypes, direction }, port: side.port as UdpRtpPort }
          : { media: { type: media.type }, port: 0, protocol: media.protocol, payloads: String(media.payloads ?? '0') },
      ),
    );
  }

  stats(): SessionStats {
    const describe = (side: Side | undefined): SideStats | undefined =>
      side && {
        ...side.port.counters,
        flavour: side.flavour,
        port: side.reserved[0]!,
        direction: side.media.direction,
        codecs: [...new Set(side.media.payloadTypes.values())],
      };
    return { id: this.id, a: describe(this.sides.a), b: describe(this.sides.b) };
  }

  /** Stops relaying, closes the sockets and frees the ports; emits 'closed'. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.queue.then(async () => {
      const sides = [this.sides.a, this.sides.b].filter((side): side is Side => side !== undefined);
      if (this.relay) await this.relay.close();
      else await Promise.all(sides.map((side) => side.port.close()));
      for (const side of sides) for (const port of side.reserved) this.ports.release(port);
      this.onClosed(this.stats());
      this.emit('closed');
    });
    return this.closing;
  }
}

function noMedia(): SideMedia {
  return { payloadTypes: new Map(), direction: 'inactive' };
}

function newOrigin(): { sessionId: number; version: number } {
  // A number that fits the o= line and differs between sessions; uniqueness is not a security property here.
  return { sessionId: Math.floor(Math.random() * 2 ** 31), version: 0 };
}

function isG711(codec: RelayCodec): boolean {
  return codec === 'PCMU' || codec === 'PCMA';
}

/** The first audio m-line with a port: the one we anchor. */
function anchoredAudioIndex(session: SessionDescription): number {
  const index = session.media.findIndex((media) => media.type === 'audio' && media.port !== 0);
  if (index < 0) throw new MediaNegotiationError('the offer has no audio to anchor');
  return index;
}

const RELAYED_CODECS: ReadonlyMap<string, RelayCodec> = new Map([
  ['pcmu', 'PCMU'],
  ['pcma', 'PCMA'],
  ['telephone-event', 'telephone-event'],
]);

/**
 * The payload types of the m-line that we relay (8 kHz G.711 and telephone-event; the static
 * 0 and 8 also without an rtpmap, RFC 3551 6), in the SDP's order, and its direction.
 */
export function sideMediaOf(session: SessionDescription, index: number): SideMedia {
  const media = session.media[index]!;
  const payloadTypes = new Map<number, RelayCodec>();
  const formats = String(media.payloads ?? '')
    .split(' ')
    .filter((token) => token !== '')
    .map(Number);
  for (const payloadType of formats) {
    const rtpmap = media.rtp.find((entry) => entry.payload === payloadType);
    let codec: RelayCodec | undefined;
    if (rtpmap) codec = rtpmap.rate === 8000 ? RELAYED_CODECS.get(rtpmap.codec.toLowerCase()) : undefined;
    else codec = payloadType === 0 ? 'PCMU' : payloadType === 8 ? 'PCMA' : undefined;
    if (codec) payloadTypes.set(payloadType, codec);
  }
  const direction = media.direction ?? session.direction ?? 'sendrecv';
  // c=0.0.0.0 is the old hold (RFC 3264 8.4): the side will not receive, whatever it says. Not
  // with ICE, where c= is only a default (browsers that trickle write 0.0.0.0 there, RFC 8839 4.2.1).
  const address = media.connection?.ip ?? session.connection?.ip;
  const ice = (media.iceUfrag ?? session.iceUfrag) !== undefined;
  const unreachable = !ice && (address === '0.0.0.0' || address === '::');
  return { payloadTypes, direction: unreachable ? withoutReceiving(direction) : direction };
}

function withoutReceiving(direction: MediaDirection): MediaDirection {
  return direction === 'sendrecv' || direction === 'sendonly' ? 'sendonly' : 'inactive';
}

function codecListOf(media: SideMedia): { codec: RelayCodec; payloadType: number }[] {
  return [...media.payloadTypes].map(([payloadType, codec]) => ({ codec, payloadType }));
}

/** The media with telephone-event added when it has none (101, or the first free dynamic payload type). */
function withTelephoneEvent(media: SideMedia): SideMedia {
  if ([...media.payloadTypes.values()].includes('telephone-event')) return media;
  let payloadType = 101;
  for (let candidate = 96; media.payloadTypes.has(payloadType) && candidate < 128; candidate++) payloadType = candidate;
  if (media.payloadTypes.has(payloadType)) return media;
  return { ...media, payloadTypes: new Map([...media.payloadTypes, [payloadType, 'telephone-event']]) };
}

/**
 * The offerer's payload types that the answerer's choice lets us relay: the same codec, or the
 * other G.711 law (we transcode), and telephone-event (relayed when the answerer took it too,
 * else the gateway takes and sends the offerer's DTMF itself). The law the answerer chose
 * comes first, so the offerer sends what needs no transcoding.
 */
function usableCodecs(offered: SideMedia, answered: SideMedia): Map<number, RelayCodec> {
  const theirs = new Set(answered.payloadTypes.values());
  const anyG711 = theirs.has('PCMU') || theirs.has('PCMA');
  const usable = [...offered.payloadTypes].filter(([, codec]) => theirs.has(codec) || codec === 'telephone-event' || (isG711(codec) && anyG711));
  // The laws the answerer took, then the ones we transcode, then telephone-event (a stable sort keeps the offer's order within each).
  const rank = (codec: RelayCodec): number => (!isG711(codec) ? 2 : theirs.has(codec) ? 0 : 1);
  usable.sort(([, x], [, y]) => rank(x) - rank(y));
  return new Map(usable);
}

/** Points a plain port at the m-line's address (RTCP on the next port unless a=rtcp says otherwise). */
export function setPlainRemote(port: UdpRtpPort, session: SessionDescription, index: number): void {
  const media = session.media[index]!;
  const address = media.connection?.ip ?? session.connection?.ip;
  if (!address) throw new MediaNegotiationError('the SDP gives no connection address for its audio');
  const rtcp = media.rtcp ? { address: media.rtcp.address ?? address, port: media.rtcp.port } : { address, port: media.port + 1 };
  port.setRemote({ address, port: media.port }, rtcp);
}
