/**
 * The media basics (src/media): RTP headers (RFC 3550 5.1) and the RFC 5761 RTCP check, G.711
 * both laws and transcoding, RFC 4733 telephone events and the DTMF tone detector. The packets
 * and tones are made here; the G.711 reference values were computed with Python 3.11's audioop
 * (lin2ulaw, ulaw2lin, lin2alaw, alaw2lin over every sample and every code), which implements
 * the same reference algorithm, outside Node.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  RTP_FIXED_HEADER_LENGTH,
  isRtcp,
  parseRtp,
  rtpHeaderLength,
  seqDistance,
  seqNewer,
  writeRtpHeader,
  type RtpHeaderFields,
} from '../src/media/rtp.js';
import {
  alawFromLinear,
  alawToLinear,
  alawToUlaw,
  decodeAlaw,
  decodeUlaw,
  encodeAlaw,
  encodeUlaw,
  ulawFromLinear,
  ulawToAlaw,
  ulawToLinear,
} from '../src/media/g711.js';
import {
  DTMF_DIGITS,
  buildTelephoneEvent,
  detectDtmf,
  digitOfEvent,
  eventOfDigit,
  parseTelephoneEvent,
  writeTelephoneEvent,
} from '../src/media/dtmf.js';

function rtpPacket(fields: RtpHeaderFields, payload: Uint8Array): Buffer {
  const packet = Buffer.alloc(rtpHeaderLength(fields) + payload.length);
  packet.set(payload, writeRtpHeader(packet, fields));
  return packet;
}

/** A packet with every optional part: two CSRCs, a two-word extension, 3 octets of padding. */
function fullPacket(): Buffer {
  const header = Buffer.from([0xb2, 0x80 | 8, 0x12, 0x34, 0, 0, 0x01, 0x00, 0xca, 0xfe, 0xba, 0xbe]);
  const csrcs = Buffer.from([0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
  const extension = Buffer.from([0xbe, 0xde, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
  const payload = Buffer.from([0xd5, 0xd5, 0x55, 0x2a]);
  const padding = Buffer.from([0, 0, 3]);
  return Buffer.concat([header, csrcs, extension, payload, padding]);
}

describe('RTP', () => {
  test('a written header parses back, with the payload in place', () => {
    const fields = { marker: true, payloadType: 0, sequence: 65535, timestamp: 0xffffffff, ssrc: 0x8000_0001 };
    const payload = Uint8Array.from({ length: 160 }, (_, i) => i);
    const packet = rtpPacket(fields, payload);
    const header = parseRtp(packet);
    assert.deepEqual(header, {
      padding: false,
      extension: false,
      ...fields,
      csrcs: [],
      payloadOffset: RTP_FIXED_HEADER_LENGTH,
      payloadLength: 160,
    });
    assert.deepEqual(packet.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength), Buffer.from(payload));
  });

  test('CSRCs are written and read in order', () => {
    const fields = { payloadType: 8, sequence: 1, timestamp: 160, ssrc: 7, csrcs: [1, 2, 0xffffffff] };
    const header = parseRtp(rtpPacket(fields, new Uint8Array(2)));
    assert.deepEqual(header?.csrcs, [1, 2, 0xffffffff]);
    assert.equal(header?.payloadOffset, 24);
    assert.equal(header?.marker, false);
  });

  test('a header is written at an offset, and the payload offset is returned', () => {
    const target = Buffer.alloc(40, 0xee);
    assert.equal(writeRtpHeader(target, { payloadType: 101, sequence: 2, timestamp: 3, ssrc: 4 }, 10), 22);
    assert.equal(target[9], 0xee);
    assert.equal(parseRtp(target.subarray(10))?.payloadType, 101);
  });

  test('the extension is skipped and the padding left out of the payload', () => {
    const header = parseRtp(fullPacket());
    assert.deepEqual(header, {
      padding: true,
      extension: true,
      marker: true,
      payloadType: 8,
      sequence: 0x1234,
      timestamp: 256,
      ssrc: 0xcafebabe,
      csrcs: [1, 0xffffffff],
      payloadOffset: 12 + 8 + 12,
      payloadLength: 4,
    });
  });

  test('padding may take every octet after the header, leaving an empty payload', () => {
    const packet = Buffer.from([0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4]);
    assert.equal(parseRtp(packet)?.payloadLength, 0);
  });

  describe('malformed packets give undefined', () => {
    const valid = fullPacket();
    const cases: Record<string, Buffer> = {
      'empty': Buffer.alloc(0),
      'shorter than the fixed header': rtpPacket({ payloadType: 0, sequence: 0, timestamp: 0, ssrc: 0 }, new Uint8Array(0)).subarray(0, 11),
      'version 0': Buffer.from([0x00, ...valid.subarray(1)]),
      'version 1': Buffer.from([0x40 | (valid[0]! & 0x3f), ...valid.subarray(1)]),
      'version 3': Buffer.from([0xc0 | (valid[0]! & 0x3f), ...valid.subarray(1)]),
      'CSRCs past the end': Buffer.from([0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]),
      'an extension flag with no room for its header': Buffer.from([0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde]),
      'an extension longer than the packet': Buffer.from([0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 2, 1, 2, 3, 4]),
      'a padding count of zero': Buffer.from([0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 0]),
      'padding longer than what follows the header': Buffer.from([0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 4]),
      'padding reaching into the extension': Buffer.concat([valid.subarray(0, 32), Buffer.from([5])]),
      'a padding flag with nothing after the header': Buffer.from([0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 12]),
    };
    for (const [name, packet] of Object.entries(cases)) {
      test(name, () => assert.equal(parseRtp(packet), undefined));
    }

    test('every truncation of a valid packet is refused or parsed, never thrown on', () => {
      for (let length = 0; length <= valid.length; length++) {
        const header = parseRtp(valid.subarray(0, length));
        if (header) assert.ok(header.payloadOffset + header.payloadLength <= length);
      }
    });

    test('random bytes never throw, and what parses stays inside the packet', () => {
      // A seeded generator (a 32-bit LCG), so that a failure can be replayed.
      let seed = 0x1234567;
      const next = (): number => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 24;
      for (let round = 0; round < 2000; round++) {
        const packet = Buffer.from(Array.from({ length: next() % 48 }, next));
        if (packet.length > 0) packet[0] = 0x80 | (packet[0]! & 0x3f);
        const header = parseRtp(packet);
        if (header) assert.ok(header.payloadOffset + header.payloadLength <= packet.length);
      }
    });
  });

  test('writing refuses fields out of range and buffers too small', () => {
    const fields = { payloadType: 0, sequence: 0, timestamp: 0, ssrc: 0 };
    assert.throws(() => writeRtpHeader(Buffer.alloc(11), fields), RangeError);
    assert.throws(() => writeRtpHeader(Buffer.alloc(12), { ...fields, payloadType: 128 }), RangeError);
    assert.throws(() => writeRtpHeader(Buffer.alloc(12), { ...fields, sequence: 65536 }), RangeError);
    assert.throws(() => writeRtpHeader(Buffer.alloc(12), { ...fields, ssrc: -1 }), RangeError);
    assert.throws(() => writeRtpHeader(Buffer.alloc(100), { ...fields, csrcs: new Array<number>(16).fill(0) }), RangeError);
  });

  describe('sequence numbers wrap at 2^16', () => {
    test('newer across the wrap', () => {
      assert.equal(seqNewer(0, 65535), true);
      assert.equal(seqNewer(65535, 0), false);
      assert.equal(seqNewer(5, 65530), true);
      assert.equal(seqNewer(101, 100), true);
      assert.equal(seqNewer(100, 101), false);
      assert.equal(seqNewer(7, 7), false);
    });

    test('half way round is newer neither way', () => {
      assert.equal(seqNewer(0x8000, 0), false);
      assert.equal(seqNewer(0, 0x8000), false);
      assert.equal(seqNewer(0x7fff, 0), true);
      assert.equal(seqNewer(0x8001, 0), false);
    });

    test('distance', () => {
      assert.equal(seqDistance(65535, 1), 2);
      assert.equal(seqDistance(1, 65535), 65534);
      assert.equal(seqDistance(10, 10), 0);
      assert.equal(seqDistance(0, 65535), 65535);
    });
  });

  test('RTCP on the RTP port is told by its packet type (RFC 5761)', () => {
    const rtcp = (type: number): Buffer => Buffer.from([0x80, type, 0, 6]);
    for (const type of [192, 200, 201, 202, 203, 204, 205, 206, 207, 223]) assert.equal(isRtcp(rtcp(type)), true, `type ${type}`);
    for (const type of [0, 8, 96, 101, 127, 0x80, 0x80 | 8, 0x80 | 96, 191, 224]) assert.equal(isRtcp(rtcp(type)), false, `type ${type}`);
    assert.equal(isRtcp(Buffer.from([0x80])), false);
    assert.equal(isRtcp(Buffer.from([0x00, 200])), false);
  });
});

const sha256 = (view: ArrayBufferView): string =>
  createHash('sha256').update(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)).digest('hex');
const everySample = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
const everyCode = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('G.711', () => {
  // The SHA-256 of audioop's output, little-endian samples as on this platform.
  test('μ-law agrees with the reference on every sample and every code', () => {
    assert.equal(sha256(encodeUlaw(everySample)), '81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a');
    assert.equal(sha256(decodeUlaw(everyCode)), '3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827');
  });

  test('A-law agrees with the reference on every sample and every code', () => {
    assert.equal(sha256(encodeAlaw(everySample)), '38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b');
    assert.equal(sha256(decodeAlaw(everyCode)), 'e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174');
  });

  test('known values, sample by sample', () => {
    const samples = [0, 1, -1, 4, -4, 100, -100, 1000, -1000, 8031, -8031, 32767, -32768, 12345, -12345];
    const ulaw = [255, 255, 126, 254, 126, 242, 114, 206, 78, 160, 32, 128, 0, 151, 23];
    const alaw = [213, 213, 85, 213, 85, 211, 83, 250, 122, 138, 10, 170, 42, 189, 61];
    assert.deepEqual(samples.map(ulawFromLinear), ulaw);
    assert.deepEqual(samples.map(alawFromLinear), alaw);
    const codes = [0x00, 0x0f, 0x7e, 0x7f, 0x80, 0xff, 0x55, 0xd5, 0x2a, 0xaa];
    assert.deepEqual(codes.map(ulawToLinear), [-32124, -16764, -8, 0, 32124, 0, -716, 716, -5372, 5372]);
    assert.deepEqual(codes.map(alawToLinear), [-5504, -6784, -880, -848, 5504, 848, -8, 8, -32256, 32256]);
  });

  test('every μ-law code decodes to a sample that encodes back to it, but 0x7f', () => {
    // μ-law has two zeros: 0xff (+0) and 0x7f (-0). Both decode to 0, which encodes as 0xff.
    for (let code = 0; code < 256; code++) {
      const expected = code === 0x7f ? 0xff : code;
      assert.equal(ulawFromLinear(ulawToLinear(code)), expected, `code ${code}`);
    }
  });

  test('every A-law code decodes to a sample that encodes back to it (A-law has no second zero)', () => {
    for (let code = 0; code < 256; code++) assert.equal(alawFromLinear(alawToLinear(code)), code, `code ${code}`);
  });

  test('encoding is monotonic and no sample lands more than a top step (1024) from its level', () => {
    // The step doubles with each segment up to 1024 in the loudest; μ-law's clipping at 32124 adds 643 at most.
    let previousUlaw = -Infinity;
    let previousAlaw = -Infinity;
    for (const sample of everySample) {
      const ulawLevel = ulawToLinear(ulawFromLinear(sample));
      const alawLevel = alawToLinear(alawFromLinear(sample));
      assert.ok(ulawLevel >= previousUlaw && alawLevel >= previousAlaw, `at ${sample}`);
      assert.ok(Math.abs(ulawLevel - sample) <= 1024 && Math.abs(alawLevel - sample) <= 1024, `at ${sample}`);
      previousUlaw = ulawLevel;
      previousAlaw = alawLevel;
    }
  });

  test('buffers: into a given output, a longer one giving a view of the right length', () => {
    const samples = Int16Array.from([0, 1000, -1000]);
    const out = new Uint8Array(8);
    const codes = encodeUlaw(samples, out);
    assert.equal(codes.length, 3);
    assert.equal(codes.buffer, out.buffer);
    assert.deepEqual([...codes], [255, 206, 78]);
    const decoded = decodeAlaw(encodeAlaw(samples), new Int16Array(3));
    assert.deepEqual([...decoded], [8, 1008, -1008]);
    assert.throws(() => encodeUlaw(samples, new Uint8Array(2)), RangeError);
    assert.throws(() => decodeUlaw(new Uint8Array(4), new Int16Array(3)), RangeError);
  });

  test('transcoding agrees with decoding in one law and encoding in the other', () => {
    assert.equal(sha256(ulawToAlaw(everyCode)), 'a511897e1e42589f5c11a56615e0c29db268e20f82ee5cb81d7c42f812fe8f17');
    assert.equal(sha256(alawToUlaw(everyCode)), '29fe089f9333915612c7283f92586f175e6e9ff5819768e9545c11c87e5bea54');
    assert.deepEqual(ulawToAlaw(everyCode), encodeAlaw(decodeUlaw(everyCode)));
    assert.deepEqual(alawToUlaw(everyCode), encodeUlaw(decodeAlaw(everyCode)));
  });

  test('transcoding in place', () => {
    const codes = Uint8Array.from(everyCode);
    assert.equal(ulawToAlaw(codes, codes), codes);
    assert.deepEqual(codes, ulawToAlaw(everyCode));
  });
});

describe('RFC 4733 telephone events', () => {
  test('digits and event codes', () => {
    assert.equal(DTMF_DIGITS.length, 16);
    for (let event = 0; event < 16; event++) assert.equal(eventOfDigit(digitOfEvent(event)!), event);
    assert.equal(digitOfEvent(10), '*');
    assert.equal(digitOfEvent(11), '#');
    assert.equal(digitOfEvent(15), 'D');
    assert.equal(digitOfEvent(16), undefined);
    assert.equal(eventOfDigit('a'), 12);
    assert.equal(eventOfDigit('E'), undefined);
    assert.equal(eventOfDigit('12'), undefined);
    assert.equal(eventOfDigit(''), undefined);
  });

  test('payloads round trip', () => {
    const events = [
      { event: 0, end: false, volume: 10, duration: 160 },
      { event: 11, end: true, volume: 63, duration: 65535 },
      { event: 16, end: true, volume: 0, duration: 0 },
      { event: 255, end: false, volume: 1, duration: 0x1234 },
    ];
    for (const event of events) assert.deepEqual(parseTelephoneEvent(buildTelephoneEvent(event)), event);
  });

  test('the wire layout: event, end bit, reserved bit, volume, duration', () => {
    assert.deepEqual([...buildTelephoneEvent({ event: 9, end: true, volume: 7, duration: 0x0320 })], [9, 0x87, 0x03, 0x20]);
    // The reserved bit is ignored on receipt, and octets after the first event too.
    assert.deepEqual(parseTelephoneEvent(Uint8Array.from([5, 0x40 | 0x80 | 12, 0, 80, 1, 2])), {
      event: 5,
      end: true,
      volume: 12,
      duration: 80,
    });
  });

  test('a short payload gives undefined, out-of-range fields throw', () => {
    assert.equal(parseTelephoneEvent(new Uint8Array(3)), undefined);
    assert.equal(parseTelephoneEvent(new Uint8Array(0)), undefined);
    const event = { event: 1, end: false, volume: 10, duration: 0 };
    assert.throws(() => buildTelephoneEvent({ ...event, volume: 64 }), RangeError);
    assert.throws(() => buildTelephoneEvent({ ...event, duration: 65536 }), RangeError);
    assert.throws(() => buildTelephoneEvent({ ...event, event: -1 }), RangeError);
    assert.throws(() => writeTelephoneEvent(new Uint8Array(5), event, 2), RangeError);
    assert.equal(writeTelephoneEvent(new Uint8Array(6), event, 2), 6);
  });
});

describe('DTMF tone detection', () => {
  // The keypad's frequencies (ITU-T Q.23), written here again so the test does not trust the module's.
  const rows = [697, 770, 852, 941];
  const columns = [1209, 1336, 1477, 1633];
  const keypad = ['123A', '456B', '789C', '*0#D'];

  function tones(frequencies: readonly number[], amplitude: number, length = 205, phase = 0.3): Int16Array {
    return Int16Array.from({ length }, (_, n) =>
      Math.round(frequencies.reduce((sum, f) => sum + amplitude * Math.sin((2 * Math.PI * f * n) / 8000 + phase), 0)),
    );
  }

  test('each of the 16 digits is found', () => {
    for (const [r, row] of rows.entries()) {
      for (const [c, column] of columns.entries()) {
        assert.equal(detectDtmf(tones([row, column], 8000)), keypad[r]![c], `${row} + ${column} Hz`);
      }
    }
  });

  test('found at a quiet level, in a block of 160 samples, with a 6 dB twist and a little noise', () => {
    let seed = 42;
    const noise = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 100;
    const quiet = tones([852, 1477], 400, 160);
    const weakColumn = tones([1336], 2000);
    const twisted = Int16Array.from(tones([770], 4000), (s, n) => s + weakColumn[n]! + Math.round(noise()));
    assert.equal(detectDtmf(quiet), '9');
    assert.equal(detectDtmf(twisted), '5');
  });

  test('silence, a 1 kHz tone, a row tone alone, noise and too short a block are not digits', () => {
    let seed = 7;
    const noise = Int16Array.from({ length: 205 }, () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >> 16) - 32768);
    assert.equal(detectDtmf(new Int16Array(205)), undefined);
    assert.equal(detectDtmf(tones([1000], 10000)), undefined);
    assert.equal(detectDtmf(tones([697], 10000)), undefined);
    assert.equal(detectDtmf(tones([697, 770], 8000)), undefined);
    assert.equal(detectDtmf(noise), undefined);
    assert.equal(detectDtmf(tones([697, 1209], 8000, 50)), undefined);
    assert.equal(detectDtmf(tones([697, 1209], 20, 205)), undefined);
  });

  test('tones decoded from G.711 are still found', () => {
    const block = tones([941, 1633], 6000);
    assert.equal(detectDtmf(decodeUlaw(encodeUlaw(block))), 'D');
    assert.equal(detectDtmf(decodeAlaw(encodeAlaw(block))), 'D');
  });
});
