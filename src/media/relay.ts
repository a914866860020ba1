/**
 * The relay at the heart of an anchored call: RTP in from one side, out to the other, with the
 * payload type renumbered when the two sides chose different numbers for the same codec (and for
 * telephone-event), G.711 transcoded when they chose different laws, and each direction stopped
 * while the SDP puts the call on hold that way.
 *
 * A side is a `MediaPort`: `UdpRtpPort` here for a plain RTP phone (two UDP sockets, symmetric
 * latching), `WebRtcPort` in webrtc.ts for a browser. The relay knows nothing of SDP or of
 * signaling: the gateway tells it each side's payload types and direction.
 *
 * The hot path (≥250 G.711 calls per core, 50 packets a second each way, so 25,000 packets a
 * second) is written to allocate nothing beyond the Buffer dgram hands us: the packet is
 * renumbered and transcoded in place and sent from the same Buffer, the forwarding decision is a
 * look-up in a 128-entry table built when the SDP changes, and the idle timer samples counters
 * instead of reading the clock per packet, and an IP literal skips dgram's per-send DNS lookup.
 * What remains per packet is dgram's own (the Buffer and the sender's address object). What would
 * hurt: logging per packet, parseRtp (one object per packet; we compute only the payload
 * offset), Promises or closures per packet, a hostname instead of an IP in the SDP (a real
 * lookup per send), and a WebRTC side (werift parses, encrypts and allocates per packet).
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';
import { EventEmitter } from 'node:events';
import { alawToUlawInPlace, ulawToAlawInPlace } from './g711.js';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { digitOfEvent, parseTelephoneEvent, TELEPHONE_EVENT_LENGTH, writeTelephoneEvent } from './dtmf.js';
import { RTP_FIXED_HEADER_LENGTH, writeRtpHeader } from './rtp.js';

/** The codecs the gateway relays. */
export type RelayCodec = 'PCMU' | 'PCMA' | 'telephone-event';

/** An SDP direction attribute, as the side itself declared it. */
export type MediaDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

export function sends(direction: MediaDirection): boolean {
  return direction === 'sendrecv' || direction === 'sendonly';
}

export function receives(direction: MediaDirection): boolean {
  return direction === 'sendrecv' || direction === 'recvonly';
}

/** What one side negotiated: its payload type numbers (the same for sending and receiving, as in SDP) and direction. */
export interface SideMedia {
  payloadTypes: ReadonlyMap<number, RelayCodec>;
  direction: MediaDirection;
}

/** Per-side traffic counters. `in` is what the side sent us, `out` what we sent it. */
export interface PortCounters {
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  /**
   * Packets from this side we did not forward: from an unexpected source after latching,
   * malformed, of a payload type the other side did not accept, or held by the SDP direction.
   */
  dropped: number;
}

export function newCounters(): PortCounters {
  return { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, dropped: 0 };
}

/**
 * One side of a relay. The relay sets `onRtp`/`onRtcp` and calls `sendRtp`/`sendRtcp` with
 * packets ready for this side (payload types already this side's). A port counts what passes
 * through it; the relay counts its drops on the receiving port's `counters.dropped`.
 */
export interface MediaPort {
  onRtp: ((packet: Buffer) => void) | undefined;
  onRtcp: ((packet: Buffer) => void) | undefined;
  sendRtp(packet: Buffer): void;
  sendRtcp(packet: Buffer): void;
  readonly counters: PortCounters;
  close(): Promise<void>;
}

/** A UDP address. */
export interface Endpoint {
  address: string;
  port: number;
}

/**
 * dgram resolves the destination on every send(); the SDP nearly always gives an IP literal, so
 * answer those at once instead of through dns.lookup (a tick and a closure per packet otherwise).
 */
function literalLookup(
  hostname: string,
  options: LookupOneOptions,
  callback: (error: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = isIP(hostname);
  if (family !== 0) callback(null, hostname, family);
  else lookup(hostname, options, callback);
}

/** Binds a UDP socket; rejects (EADDRINUSE…) without leaving the socket open. */
export function bindUdp(address: string, port: number): Promise<Socket> {
  const type = address.includes(':') ? 'udp6' : 'udp4';
  const socket = createSocket({ type, reuseAddr: false, lookup: literalLookup });
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      socket.close();
      reject(error);
    };
    socket.once('error', onError);
    socket.bind(port, address, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/**
 * Symmetric RTP's latching for one socket: where to send is the SDP's address until the first
 * packet arrives, then the address packets really come from; a packet from any other address
 * is refused. A new address from the SDP starts over; the same one keeps what was latched.
 */
class Latch {
  remote: Endpoint | undefined;
  latched = false;

  expect(endpoint: Endpoint): void {
    if (this.remote && sameEndpoint(this.remote, endpoint)) return;
    this.remote = { ...endpoint };
    this.latched = false;
  }

  /** Whether a packet from `address:port` is the peer's (latching onto the first one). */
  accept(address: string, port: number): boolean {
    const remote = this.remote;
    if (this.latched) return remote!.port === port && remote!.address === address;
    // Latch: an object once per call (or per address change), not per packet.
    if (remote) {
      remote.address = address;
      remote.port = port;
    } else this.remote = { address, port };
    this.latched = true;
    return true;
  }
}

/**
 * The plain RTP side: an RTP socket and, unless RTCP is multiplexed, an RTCP socket on the next
 * port. Packets go to the address the SDP gave until the first packet arrives; from then on
 * (symmetric RTP, RFC 4961 and the common NAT practice) to the address packets really come from,
 * and packets from any other address are dropped and counted. RTCP latches on its own.
 */
export class UdpRtpPort implements MediaPort {
  onRtp: ((packet: Buffer) => void) | undefined;
  onRtcp: ((packet: Buffer) => void) | undefined;
  readonly counters = newCounters();
  private readonly rtp = new Latch();
  private readonly rtcp = new Latch();

  private constructor(
    private readonly rtpSocket: Socket,
    private readonly rtcpSocket: Socket | undefined,
  ) {
    rtpSocket.on('message', (packet, from) => this.receiveRtp(packet, from.address, from.port));
    rtcpSocket?.on('message', (packet, from) => this.receiveRtcp(packet, from.address, from.port));
    // A send to an unreachable phone raises ICMP errors on the socket; they must not crash the server.
    rtpSocket.on('error', () => undefined);
    rtcpSocket?.on('error', () => undefined);
  }

  /** Binds RTP on `rtpPort` and, when `rtcpPort` is given, RTCP on it. */
  static async bind(address: string, rtpPort: number, rtcpPort?: number): Promise<UdpRtpPort> {
    const rtp = await bindUdp(address, rtpPort);
    let rtcp: Socket | undefined;
    if (rtcpPort !== undefined) {
      try {
        rtcp = await bindUdp(address, rtcpPort);
      } catch (error) {
        await closeSocket(rtp);
        throw error;
      }
    }
    return new UdpRtpPort(rtp, rtcp);
  }

  get rtpPort(): number {
    return this.rtpSocket.address().port;
  }

  get rtcpPort(): number | undefined {
    return this.rtcpSocket?.address().port;
  }

  /**
   * The addresses the SDP gives. A change of address (the phone moved, or a re-INVITE points
   * the media elsewhere) starts latching again; the same address keeps what was latched.
   */
  setRemote(rtp: Endpoint, rtcp: Endpoint | undefined): void {
    // An unspecified address (c=0.0.0.0, the old way to hold, RFC 3264 8.4) is nowhere to send:
    // port 0 keeps us silent until the phone's own packets show where it is.
    if (isUnspecified(rtp.address)) rtp = { address: rtp.address, port: 0 };
    if (rtcp && isUnspecified(rtcp.address)) rtcp = { address: rtcp.address, port: 0 };
    this.rtp.expect(rtp);
    if (rtcp) this.rtcp.expect(rtcp);
  }

  /** Where RTP goes now (the latched source, or the SDP's address). */
  get remoteRtp(): Endpoint | undefined {
    return this.rtp.remote;
  }

  /** Where RTCP goes now. */
  get remoteRtcp(): Endpoint | undefined {
    return this.rtcp.remote;
  }

  get latched(): boolean {
    return this.rtp.latched;
  }

  private receiveRtp(packet: Buffer, address: string, port: number): void {
    if (!this.rtp.accept(address, port)) {
      this.counters.dropped++;
      return;
    }
    this.counters.packetsIn++;
    this.counters.bytesIn += packet.length;
    this.onRtp?.(packet);
  }

  private receiveRtcp(packet: Buffer, address: string, port: number): void {
    if (this.rtcp.accept(address, port)) this.onRtcp?.(packet);
    else this.counters.dropped++;
  }

  sendRtp(packet: Buffer): void {
    const remote = this.rtp.remote;
    if (!remote || remote.port === 0) return;
    this.counters.packetsOut++;
    this.counters.bytesOut += packet.length;
    this.rtpSocket.send(packet, remote.port, remote.address);
  }

  sendRtcp(packet: Buffer): void {
    const remote = this.rtcp.remote;
    if (!remote || remote.port === 0 || !this.rtcpSocket) return;
    this.rtcpSocket.send(packet, remote.port, remote.address);
  }

  async close(): Promise<void> {
    this.onRtp = undefined;
    this.onRtcp = undefined;
    await Promise.all([closeSocket(this.rtpSocket), this.rtcpSocket ? closeSocket(this.rtcpSocket) : undefined]);
  }
}

function isUnspecified(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

/** What to do with each incoming payload type: the outgoing one (-1: drop) and the transcoding. */
const DROP = -1;
const TRANSCODE_NONE = 0;
const TRANSCODE_ULAW_TO_ALAW = 1;
const TRANSCODE_ALAW_TO_ULAW = 2;

interface Route {
  /** Indexed by the incoming payload type. */
  payloadType: Int16Array;
  transcode: Uint8Array;
  /** Whether this direction flows at all (the sender sends and the receiver receives). */
  open: boolean;
  /**
   * The sender's telephone-event payload type when the receiver took none (-1 otherwise): its
   * events end here, and each digit is reported (`digit`) for the signaling to carry on.
   */
  events: number;
}

function closedRoute(): Route {
  return { payloadType: new Int16Array(128).fill(DROP), transcode: new Uint8Array(128), open: false, events: DROP };
}

/**
 * The route from `from` to `to`: each of `from`'s payload types goes out as `to`'s number for
 * the same codec; G.711 of a law `to` did not accept goes out transcoded to the law it did.
 * Exported for the unit tests.
 */
export function buildRoute(from: SideMedia, to: SideMedia): Route {
  const route = closedRoute();
  route.open = sends(from.direction) && receives(to.direction);
  const outgoing = new Map<RelayCodec, number>();
  for (const [payloadType, codec] of to.payloadTypes) if (!outgoing.has(codec)) outgoing.set(codec, payloadType);
  for (const [payloadType, codec] of from.payloadTypes) {
    const same = outgoing.get(codec);
    if (same !== undefined) {
      route.payloadType[payloadType] = same;
    } else if (codec === 'PCMU' && outgoing.has('PCMA')) {
      route.payloadType[payloadType] = outgoing.get('PCMA')!;
      route.transcode[payloadType] = TRANSCODE_ULAW_TO_ALAW;
    } else if (codec === 'PCMA' && outgoing.has('PCMU')) {
      route.payloadType[payloadType] = outgoing.get('PCMU')!;
      route.transcode[payloadType] = TRANSCODE_ALAW_TO_ULAW;
    } else if (codec === 'telephone-event') {
      route.events = payloadType;
    }
  }
  return route;
}

/**
 * Where the payload starts, or -1 for a packet too short or not RTP version 2 (parseRtp's
 * checks, without its object). The padding is left in place: it is not G.711 and stays.
 */
function payloadOffset(packet: Buffer): number {
  if (packet.length < RTP_FIXED_HEADER_LENGTH || packet[0]! >> 6 !== 2) return -1;
  let offset = RTP_FIXED_HEADER_LENGTH + 4 * (packet[0]! & 0x0f);
  if ((packet[0]! & 0x10) !== 0) {
    if (packet.length < offset + 4) return -1;
    offset += 4 + 4 * packet.readUInt16BE(offset + 2);
  }
  return offset <= packet.length ? offset : -1;
}

function payloadEnd(packet: Buffer, offset: number): number {
  if ((packet[0]! & 0x20) === 0) return packet.length;
  const padding = packet[packet.length - 1]!;
  return padding > 0 && padding <= packet.length - offset ? packet.length - padding : offset;
}

/**
 * What the relay last sent in one direction, so that packets of its own (RFC 4733 events) fit
 * into the stream: the same SSRC, the next sequence numbers (the sender's later packets are
 * shifted past them), a timestamp after the last one.
 */
interface StreamState {
  ssrc: number;
  sequence: number;
  timestamp: number;
  /** Added to the sender's sequence numbers: one for each packet of ours put in the stream. */
  shift: number;
  /** The shift before our last packets, and the sender's newest sequence number then: a late packet from before them keeps that shift. */
  previousShift: number;
  boundary: number;
  /** The sender's newest sequence number forwarded (as it sent it). */
  newest: number;
  /** Whether a packet was forwarded yet (else ssrc, sequence and timestamp are our own). */
  seen: boolean;
}

function newStreamState(): StreamState {
  return { ssrc: randomInt(0x1_0000_0000), sequence: randomInt(0x1_0000), timestamp: randomInt(0x1_0000_0000), shift: 0, previousShift: 0, boundary: 0, newest: 0, seen: false };
}

/** Whether 16-bit sequence number `a` comes after `b` (RFC 1982 serial arithmetic). */
function after16(a: number, b: number): boolean {
  const delta = (a - b) & 0xffff;
  return delta !== 0 && delta < 0x8000;
}

/** A DTMF digit sent as RFC 4733 events: 100 ms of tone, then the end packet three times (RFC 4733 2.5.1.4), and 60 ms of pause. */
const EVENT_PACKETS = 5;
const END_PACKETS = 3;
const PACKET_SAMPLES = 160;
const PAUSE_SAMPLES = 480;

/** How many times per idle period the counters are sampled. */
const IDLE_CHECKS = 4;

export interface RelayStats {
  a: PortCounters;
  b: PortCounters;
}

export interface RtpRelayOptions {
  /** Seconds without RTP from either side before 'idle' is emitted (0 or absent: never). */
  idleSeconds?: number;
}

/**
 * Forwards between two ports. Events: `idle` (no RTP in either direction for `idleSeconds`;
 * emitted once per silent period); `digit` (side, digit: a DTMF digit that side sent as RFC 4733
 * events the other side does not take, once per event).
 */
export class RtpRelay extends EventEmitter {
  private routeAB = closedRoute();
  private routeBA = closedRoute();
  private readonly streamAB = newStreamState();
  private readonly streamBA = newStreamState();
  /** DTMF being sent toward each side, one digit string after another. */
  private readonly events: Record<'a' | 'b', Promise<void>> = { a: Promise.resolve(), b: Promise.resolve() };
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private packetsAtLastCheck = 0;
  private silentChecks = 0;

  constructor(
    readonly a: MediaPort,
    readonly b: MediaPort,
    options: RtpRelayOptions = {},
  ) {
    super();
    a.onRtp = (packet) => this.forward(packet, this.routeAB, this.streamAB, a, b, 'a');
    b.onRtp = (packet) => this.forward(packet, this.routeBA, this.streamBA, b, a, 'b');
    // RTCP passes unchanged when both ends carry it; a WebRTC port terminates it (see webrtc.ts).
    a.onRtcp = (packet) => (this.routeAB.open ? b.sendRtcp(packet) : undefined);
    b.onRtcp = (packet) => (this.routeBA.open ? a.sendRtcp(packet) : undefined);
    const idleSeconds = options.idleSeconds ?? 0;
    if (idleSeconds > 0) {
      // Sampled IDLE_CHECKS times per period: 'idle' comes between 1 and 1.25 periods after the last packet.
      this.idleTimer = setInterval(() => this.checkIdle(), (idleSeconds * 1000) / IDLE_CHECKS);
      this.idleTimer.unref();
    }
  }

  /** Sets what each side negotiated; takes effect with the next packet. */
  configure(a: SideMedia, b: SideMedia): void {
    this.routeAB = buildRoute(a, b);
    this.routeBA = buildRoute(b, a);
  }

  /** Whether media flows from a to b, and from b to a, as configured. */
  get flowing(): { ab: boolean; ba: boolean } {
    return { ab: this.routeAB.open, ba: this.routeBA.open };
  }

  /**
   * Sends DTMF digits to side `to` as RFC 4733 telephone-events with payload type
   * `payloadType` (the one that side accepted), in its stream from the other side; digits
   * queued behind those still being sent. Resolves when they have been sent.
   */
  sendDigits(to: 'a' | 'b', digits: readonly number[], payloadType: number): Promise<void> {
    const port = to === 'a' ? this.a : this.b;
    const stream = to === 'a' ? this.streamBA : this.streamAB;
    const sent = this.events[to].then(async () => {
      for (const event of digits) {
        if (this.closed) return;
        const start = (stream.timestamp + PACKET_SAMPLES) >>> 0;
        stream.timestamp = start;
        stream.previousShift = stream.shift;
        stream.boundary = stream.newest;
        for (let i = 1; i <= EVENT_PACKETS + END_PACKETS; i++) {
          if (this.closed) return;
          const end = i > EVENT_PACKETS;
          const packet = Buffer.alloc(RTP_FIXED_HEADER_LENGTH + TELEPHONE_EVENT_LENGTH);
          stream.sequence = (stream.sequence + 1) & 0xffff;
          stream.shift++;
          writeRtpHeader(packet, { marker: i === 1, payloadType, sequence: stream.sequence, timestamp: start, ssrc: stream.ssrc });
          writeTelephoneEvent(packet, { event, end, volume: 10, duration: Math.min(i, EVENT_PACKETS) * PACKET_SAMPLES }, RTP_FIXED_HEADER_LENGTH);
          port.sendRtp(packet);
          // The end packets go out together, as senders do; the tone's packets 20 ms apart.
          if (!end) await sleep(20);
        }
        stream.timestamp = (start + EVENT_PACKETS * PACKET_SAMPLES + PAUSE_SAMPLES) >>> 0;
        await sleep(60);
      }
    });
    this.events[to] = sent.catch(() => undefined);
    return sent;
  }

  private forward(packet: Buffer, route: Route, stream: StreamState, from: MediaPort, to: MediaPort, side: 'a' | 'b'): void {
    if (!route.open) {
      from.counters.dropped++;
      return;
    }
    const incoming = packet.length >= 2 ? packet[1]! & 0x7f : 0;
    if (incoming === route.events) {
      from.counters.dropped++;
      return this.endedEvent(packet, side);
    }
    const outgoing = route.payloadType[incoming]!;
    const offset = outgoing === DROP ? -1 : payloadOffset(packet);
    if (offset < 0) {
      from.counters.dropped++;
      return;
    }
    packet[1] = (packet[1]! & 0x80) | outgoing;
    // Kept for events of ours; once some were sent, the sender's sequence numbers move past them.
    const ssrc = packet.readUInt32BE(8);
    if (stream.seen && ssrc !== stream.ssrc) stream.shift = stream.previousShift = 0; // a new source numbers afresh
    const sent = packet.readUInt16BE(2);
    const newest = !stream.seen || ssrc !== stream.ssrc || after16(sent, stream.newest);
    // A late packet from before our last events keeps the numbering it would have had.
    const shift = newest || after16(sent, stream.boundary) ? stream.shift : stream.previousShift;
    const sequence = (sent + shift) & 0xffff;
    if (shift !== 0) packet.writeUInt16BE(sequence, 2);
    if (newest) {
      stream.ssrc = ssrc;
      stream.newest = sent;
      stream.sequence = sequence;
      stream.timestamp = packet.readUInt32BE(4);
      stream.seen = true;
    }
    const transcode = route.transcode[incoming];
    if (transcode === TRANSCODE_ULAW_TO_ALAW) ulawToAlawInPlace(packet, offset, payloadEnd(packet, offset));
    else if (transcode === TRANSCODE_ALAW_TO_ULAW) alawToUlawInPlace(packet, offset, payloadEnd(packet, offset));
    to.sendRtp(packet);
  }

  /** The last event reported from each side (its RTP timestamp): its end is sent three times. */
  private readonly lastEvent: Record<'a' | 'b', number> = { a: -1, b: -1 };

  private endedEvent(packet: Buffer, side: 'a' | 'b'): void {
    const offset = payloadOffset(packet);
    if (offset < 0) return;
    const event = parseTelephoneEvent(packet.subarray(offset, payloadEnd(packet, offset)));
    if (!event?.end) return;
    const timestamp = packet.readUInt32BE(4);
    if (timestamp === this.lastEvent[side]) return;
    this.lastEvent[side] = timestamp;
    const digit = digitOfEvent(event.event);
    if (digit !== undefined) this.emit('digit', side, digit);
  }

  private checkIdle(): void {
    const total = this.a.counters.packetsIn + this.b.counters.packetsIn;
    if (total !== this.packetsAtLastCheck) {
      this.packetsAtLastCheck = total;
      this.silentChecks = 0;
      return;
    }
    if (++this.silentChecks === IDLE_CHECKS) this.emit('idle');
  }

  stats(): RelayStats {
    return { a: { ...this.a.counters }, b: { ...this.b.counters } };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    this.a.onRtp = this.a.onRtcp = this.b.onRtp = this.b.onRtcp = undefined;
    await Promise.all([this.a.close(), this.b.close()]);
  }
}
