/**
 * RTP fixed headers (RFC 3550 5.1), read in place: `parseRtp` returns the header's fields and
 * where the payload lies in the given Buffer, without copying it, so that a relay can forward
 * or transcode the payload straight from the receive buffer. Malformed packets give
 * `undefined`, never a throw: they come from the network, and a relay drops them and goes on.
 *
 * The header extension (RFC 3550 5.3.1) is skipped, not interpreted: the gateway relays G.711
 * and needs none of the profiles that use it. Padding is removed from the payload's length.
 */

/** The length of the fixed header, before CSRCs and the extension. */
export const RTP_FIXED_HEADER_LENGTH = 12;

export interface RtpHeader {
  /** Whether the packet ended with padding (already left out of `payloadLength`). */
  padding: boolean;
  /** Whether a header extension was present (already skipped by `payloadOffset`). */
  extension: boolean;
  marker: boolean;
  payloadType: number;
  sequence: number;
  timestamp: number;
  ssrc: number;
  /** Contributing sources, in the packet's order (one shared empty array for packets from a single source). */
  csrcs: readonly number[];
  /** Where the payload starts in the Buffer that was parsed. */
  payloadOffset: number;
  /** The payload's length, padding excluded. */
  payloadLength: number;
}

/**
 * Reads an RTP header from `packet`. Returns `undefined` for a packet shorter than its header,
 * of a version other than 2, whose extension runs past its end, or whose padding count is zero
 * or longer than what follows the header.
 */
export function parseRtp(packet: Buffer): RtpHeader | undefined {
  if (packet.length < RTP_FIXED_HEADER_LENGTH) return undefined;
  const first = packet[0]!;
  if (first >> 6 !== 2) return undefined;
  const padding = (first & 0x20) !== 0;
  const extension = (first & 0x10) !== 0;
  const csrcCount = first & 0x0f;
  let offset = RTP_FIXED_HEADER_LENGTH + 4 * csrcCount;
  if (packet.length < offset) return undefined;
  if (extension) {
    // 16 bits defined by the profile, then the extension's length in 32-bit words, not counting this word.
    if (packet.length < offset + 4) return undefined;
    offset += 4 + 4 * packet.readUInt16BE(offset + 2);
    if (packet.length < offset) return undefined;
  }
  let end = packet.length;
  if (padding) {
    // The last octet counts the padding octets, itself included, so zero is malformed.
    const paddingLength = packet[end - 1]!;
    if (paddingLength === 0 || paddingLength > end - offset) return undefined;
    end -= paddingLength;
  }
  const csrcs = csrcCount === 0 ? NO_CSRCS : readCsrcs(packet, csrcCount);
  const second = packet[1]!;
  return {
    padding,
    extension,
    marker: (second & 0x80) !== 0,
    payloadType: second & 0x7f,
    sequence: packet.readUInt16BE(2),
    timestamp: packet.readUInt32BE(4),
    ssrc: packet.readUInt32BE(8),
    csrcs,
    payloadOffset: offset,
    payloadLength: end - offset,
  };
}

/** Shared by every packet without CSRCs (nearly all of them), so that parsing one allocates a single object. */
const NO_CSRCS: readonly number[] = Object.freeze([]);

function readCsrcs(packet: Buffer, count: number): number[] {
  const csrcs = new Array<number>(count);
  for (let i = 0; i < count; i++) csrcs[i] = packet.readUInt32BE(RTP_FIXED_HEADER_LENGTH + 4 * i);
  return csrcs;
}

/** What `writeRtpHeader` writes: no padding and no extension (a relay that needs them adds them). */
export interface RtpHeaderFields {
  marker?: boolean;
  payloadType: number;
  sequence: number;
  timestamp: number;
  ssrc: number;
  csrcs?: readonly number[];
}

/** The length `writeRtpHeader` writes for these fields. */
export function rtpHeaderLength(fields: RtpHeaderFields): number {
  return RTP_FIXED_HEADER_LENGTH + 4 * (fields.csrcs?.length ?? 0);
}

/**
 * Writes an RTP header into `target` at `offset` and returns where the payload goes. Throws
 * (a programming error, not bad input from the network) when a field is out of range or the
 * header does not fit.
 */
export function writeRtpHeader(target: Buffer, fields: RtpHeaderFields, offset = 0): number {
  const csrcs = fields.csrcs ?? [];
  if (csrcs.length > 15) throw new RangeError('RTP carries at most 15 CSRCs');
  if (!Number.isInteger(fields.payloadType) || fields.payloadType < 0 || fields.payloadType > 127) {
    throw new RangeError(`RTP payload type out of range: ${fields.payloadType}`);
  }
  const end = offset + rtpHeaderLength(fields);
  if (end > target.length) throw new RangeError('the RTP header does not fit in the buffer');
  target[offset] = 0x80 | csrcs.length;
  target[offset + 1] = (fields.marker ? 0x80 : 0) | fields.payloadType;
  // writeUInt16BE and writeUInt32BE throw on values out of range, which is what we want here.
  target.writeUInt16BE(fields.sequence, offset + 2);
  target.writeUInt32BE(fields.timestamp, offset + 4);
  target.writeUInt32BE(fields.ssrc, offset + 8);
  csrcs.forEach((csrc, i) => target.writeUInt32BE(csrc, offset + RTP_FIXED_HEADER_LENGTH + 4 * i));
  return end;
}

/**
 * Whether sequence number `a` comes after `b`, modulo 2^16: `a` is newer when it is less than
 * half the number space ahead of `b` (the serial number arithmetic of RFC 1982, which RFC 3550
 * Appendix A.1 uses too). Exactly half way is taken as older, so that the answer is never
 * newer both ways.
 */
export function seqNewer(a: number, b: number): boolean {
  const distance = seqDistance(b, a);
  return distance > 0 && distance < 0x8000;
}

/** How far `to` is ahead of `from`, modulo 2^16: 0 to 65535 (65535 is one behind). */
export function seqDistance(from: number, to: number): number {
  return (to - from) & 0xffff;
}

/**
 * Whether a packet received on an RTP port multiplexed with RTCP is RTCP (RFC 5761 4): RTCP's
 * packet types 192 to 223 put 64 to 95 where RTP has its marker-less payload type, a range RTP
 * must not use when multiplexed. Checks only the version and that second octet.
 */
export function isRtcp(packet: Buffer): boolean {
  if (packet.length < 2 || packet[0]! >> 6 !== 2) return false;
  const payloadType = packet[1]! & 0x7f;
  return payloadType >= 64 && payloadType <= 95;
}
