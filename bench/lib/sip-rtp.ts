/**
 * The RTP side of the `media` bench area, as small pure pieces: the G.711 packets the bench
 * sends (20 ms of PCMU, 160 bytes, payload type 0) and what the receiving end makes of them.
 *
 * Each packet's payload starts with a probe — a marker, the stream, the packet's index and
 * its send time — so that the receiver can tell streams apart and time each packet without
 * trusting the RTP header (a media gateway may rewrite SSRC, sequence numbers and timestamps;
 * it forwards G.711 payloads as they are). The rest is PCMU silence (0xFF).
 *
 * Jitter is RFC 3550's interarrival jitter (section 6.4.1: J += (|D| − J) / 16, D the change in
 * transit time between two packets), computed from the probe's send time instead of the RTP
 * timestamp: the sender's own scheduling delays then cancel out, and what is left is what the
 * path added (kernel, relay, receiver). Written for this bench from the RFC's definition.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';

/** 20 ms of 8 kHz G.711: 160 samples, one byte each. */
export const PCMU_PAYLOAD_BYTES = 160;
export const PACKET_INTERVAL_MS = 20;
const RTP_HEADER_BYTES = 12;
const PROBE_MAGIC = 0x78626e63; // "xbnc"
const PROBE_BYTES = 4 + 4 + 4 + 8;

export interface Probe {
  stream: number;
  index: number;
  /** Send time on the sender's clock (performance.now(), ms). */
  sentAt: number;
}

/** An RTP packet (version 2, PT 0) carrying `probe` at the start of 160 bytes of PCMU silence. */
export function rtpPacket(probe: Probe, ssrc: number): Buffer {
  const packet = Buffer.alloc(RTP_HEADER_BYTES + PCMU_PAYLOAD_BYTES, 0xff);
  packet[0] = 0x80; // V=2, no padding, no extension, no CSRC
  packet[1] = 0; // no marker, PT 0 (PCMU)
  packet.writeUInt16BE(probe.index & 0xffff, 2);
  packet.writeUInt32BE((probe.index * PCMU_PAYLOAD_BYTES) >>> 0, 4);
  packet.writeUInt32BE(ssrc >>> 0, 8);
  packet.writeUInt32BE(PROBE_MAGIC, RTP_HEADER_BYTES);
  packet.writeUInt32BE(probe.stream >>> 0, RTP_HEADER_BYTES + 4);
  packet.writeUInt32BE(probe.index >>> 0, RTP_HEADER_BYTES + 8);
  packet.writeDoubleBE(probe.sentAt, RTP_HEADER_BYTES + 12);
  return packet;
}

/** The probe of a packet sent by rtpPacket, or undefined for anything else (RTCP, foreign packets). */
export function readProbe(packet: Buffer): Probe | undefined {
  if (packet.length < RTP_HEADER_BYTES + PROBE_BYTES || packet[0]! >> 6 !== 2) return undefined;
  const csrcs = packet[0]! & 0x0f;
  const at = RTP_HEADER_BYTES + 4 * csrcs; // a relay could add CSRCs; the payload follows them
  if (packet.length < at + PROBE_BYTES || packet.readUInt32BE(at) !== PROBE_MAGIC) return undefined;
  return { stream: packet.readUInt32BE(at + 4), index: packet.readUInt32BE(at + 8), sentAt: packet.readDoubleBE(at + 12) };
}

/**
 * One received stream: RFC 3550 interarrival jitter over the packets that arrived, in ms, and
 * duplicates told apart with a window over the last 32 indexes (as SRTP's replay window does).
 */
export class JitterMeter {
  private lastTransit: number | undefined;
  private highest = -1;
  /** Bit k: index highest − k has arrived. */
  private window = 0;
  jitter = 0;
  received = 0;
  duplicates = 0;

  /** Packet `index`, sent at `sentAt`, arrived at `arrivedAt` (same clock, ms). False for a duplicate (not counted). */
  add(index: number, sentAt: number, arrivedAt: number): boolean {
    if (index > this.highest) {
      const shift = index - this.highest;
      this.window = shift >= 32 ? 1 : ((this.window << shift) | 1) >>> 0;
      this.highest = index;
    } else {
      const bit = this.highest - index;
      if (bit < 32 && (this.window >>> bit) & 1) {
        this.duplicates++;
        return false;
      }
      if (bit < 32) this.window = (this.window | (1 << bit)) >>> 0;
    }
    const transit = arrivedAt - sentAt;
    if (this.lastTransit !== undefined) this.jitter += (Math.abs(transit - this.lastTransit) - this.jitter) / 16;
    this.lastTransit = transit;
    this.received++;
    return true;
  }
}

/** One-way transit times in 0.1 ms bins up to 2 s (the last bin holds everything slower): mean and percentiles without keeping every sample. */
export class TransitHistogram {
  private readonly bins = new Uint32Array(20_001);
  private sum = 0;
  count = 0;

  add(ms: number): void {
    this.bins[Math.min(this.bins.length - 1, Math.max(0, Math.round(ms * 10)))]!++;
    this.sum += ms;
    this.count++;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : 0;
  }

  /** The transit that `share` (0–1) of the packets did not exceed, to 0.1 ms. */
  percentile(share: number): number {
    const rank = Math.ceil(share * this.count);
    let seen = 0;
    for (let i = 0; i < this.bins.length; i++) {
      seen += this.bins[i]!;
      if (seen >= rank && seen > 0) return i / 10;
    }
    return 0;
  }
}

export interface MediaWindowReport {
  /** Streams that sent in the window (two per call: caller → callee, callee → caller). */
  streams: number;
  sent: number;
  /** Packets sent in the window that arrived before the report. */
  received: number;
  /** 1 − received ÷ sent. */
  loss: number;
  /** Over the streams that received packets: the mean and the largest RFC 3550 jitter, ms. */
  jitterMeanMs: number;
  jitterMaxMs: number;
  /** Streams the jitter is over (those that received at least two packets). */
  jitterStreams: number;
  /** One-way transit of the window's packets: mean and 99th percentile, ms. */
  transitMeanMs: number;
  transitP99Ms: number;
  /** Packets that arrived twice, or that carried no probe. */
  duplicates: number;
  foreign: number;
  /** CPU the RTP endpoint processes used in the window, in shares of a core. */
  endpointCpu: number;
}

/** The loss and jitter of a window from per-stream meters and counts. */
export function summarizeWindow(
  sent: number,
  meters: Iterable<JitterMeter>,
  transits: TransitHistogram,
  extra: Pick<MediaWindowReport, 'streams' | 'foreign' | 'endpointCpu'>,
): MediaWindowReport {
  let received = 0;
  let duplicates = 0;
  const jitters: number[] = [];
  for (const m of meters) {
    received += m.received;
    duplicates += m.duplicates;
    if (m.received > 1) jitters.push(m.jitter);
  }
  return {
    ...extra,
    sent,
    received,
    duplicates,
    loss: sent > 0 ? Math.max(0, 1 - received / sent) : 0,
    jitterMeanMs: jitters.length ? jitters.reduce((a, b) => a + b, 0) / jitters.length : 0,
    jitterMaxMs: jitters.length ? Math.max(...jitters) : 0,
    jitterStreams: jitters.length,
    transitMeanMs: transits.mean,
    transitP99Ms: transits.percentile(0.99),
  };
}

/**
 * The report of two endpoints (the callers' and the called side's) as one: counts added,
 * means weighted, the larger maximum; the 99th percentile is the larger of the two (an upper
 * bound of the combined one).
 */
export function mergeReports(a: MediaWindowReport, b: MediaWindowReport): MediaWindowReport {
  const weighted = (x: number, wx: number, y: number, wy: number): number => (wx + wy > 0 ? (x * wx + y * wy) / (wx + wy) : 0);
  const sent = a.sent + b.sent;
  const received = a.received + b.received;
  return {
    streams: a.streams + b.streams,
    sent,
    received,
    loss: sent > 0 ? Math.max(0, 1 - received / sent) : 0,
    jitterMeanMs: weighted(a.jitterMeanMs, a.jitterStreams, b.jitterMeanMs, b.jitterStreams),
    jitterMaxMs: Math.max(a.jitterMaxMs, b.jitterMaxMs),
    jitterStreams: a.jitterStreams + b.jitterStreams,
    transitMeanMs: weighted(a.transitMeanMs, a.received, b.transitMeanMs, b.received),
    transitP99Ms: Math.max(a.transitP99Ms, b.transitP99Ms),
    duplicates: a.duplicates + b.duplicates,
    foreign: a.foreign + b.foreign,
    endpointCpu: a.endpointCpu + b.endpointCpu,
  };
}

/** A line of the SIPp media scenarios' log: which side, the call, and where its stream goes. */
export interface MediaTarget {
  side: 'uac' | 'uas';
  call: number;
  host: string;
  port: number;
}

/**
 * Parses "uac 12 c=IN IP4 127.0.0.1 m=audio 40002" (the `<log>` of bench/sip/uac-media.xml and
 * uas-media.xml: the call number, then the c= and m= lines of the other side's SDP as SIPp's
 * regular expressions matched them); undefined for other lines.
 */
export function parseMediaTarget(line: string): MediaTarget | undefined {
  const m = line.match(/\b(uac|uas) (\d+) c=IN IP4 (\d{1,3}(?:\.\d{1,3}){3}) m=audio (\d{1,5})\s*$/);
  if (!m) return undefined;
  const port = Number(m[4]);
  if (port < 1 || port > 65535) return undefined;
  return { side: m[1] as 'uac' | 'uas', call: Number(m[2]), host: m[3]!, port };
}

/**
 * SIPp's `-trace_logs` files followed as they grow (the RTP endpoint processes read where each
 * call's media goes from them): `poll()` hands every new media target to `onTarget`.
 */
export class MediaTargetTails {
  private readonly tails: { file: string; offset: number; rest: string }[] = [];

  constructor(private readonly onTarget: (target: MediaTarget) => void) {}

  follow(file: string): void {
    this.tails.push({ file, offset: 0, rest: '' });
  }

  poll(): void {
    for (const tail of this.tails) {
      let size: number;
      try {
        size = statSync(tail.file).size;
      } catch {
        continue; // not written yet
      }
      if (size <= tail.offset) continue;
      const fd = openSync(tail.file, 'r');
      const chunk = Buffer.alloc(size - tail.offset);
      readSync(fd, chunk, 0, chunk.length, tail.offset);
      closeSync(fd);
      tail.offset = size;
      const lines = (tail.rest + chunk.toString('utf8')).split('\n');
      tail.rest = lines.pop() ?? '';
      for (const line of lines) {
        const target = parseMediaTarget(line);
        if (target) this.onTarget(target);
      }
    }
  }
}
