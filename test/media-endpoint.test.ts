/**
 * The media endpoint (src/media/endpoint.ts): the server as a party of a call's media. A plain
 * RTP peer written here (a dgram socket on 127.0.0.1 that paces its packets every 20 ms like a
 * phone) and a real WebRTC peer (Debian's python3-aiortc, test/fixtures/aiortc_peer.py) call it;
 * audio is checked by its content (Goertzel energy, detectDtmf), never by durations. The frame
 * clock and the jitter buffer are also tested alone, the clock on a fake timer.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, afterEach, before, describe, test } from 'node:test';
import sdpTransform from 'sdp-transform';
import { buildTelephoneEvent, detectDtmf, parseTelephoneEvent } from '../src/media/dtmf.js';
import { MediaNegotiationError, type AudioSource, type MediaEndpoint } from '../src/media/endpoint.js';
import { FrameClock, type FrameTimer } from '../src/media/frame-clock.js';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../src/media/g711.js';
import { flavourOf, MediaGateway } from '../src/media/gateway.js';
import { AUDIO, EMPTY, JitterBuffer, LOST, NO_AUDIO, SKIP } from '../src/media/jitter-buffer.js';
import { SessionLimitError } from '../src/media/ports.js';
import { parseRtp, writeRtpHeader } from '../src/media/rtp.js';
import { ensureAiortc, startAiortcPeer, type AiortcPeer } from './fixtures/aiortc.js';
import { FakeClock } from './fixtures/fake-clock.js';

// ---- helpers --------------------------------------------------------------------------------

/** The share of the block's energy at `frequency` (Goertzel at the exact frequency): near 1 for a pure tone. */
function toneShare(samples: ArrayLike<number>, frequency: number): number {
  const coefficient = 2 * Math.cos((2 * Math.PI * frequency) / 8000);
  let previous = 0;
  let beforePrevious = 0;
  let energy = 0;
  for (let i = 0; i < samples.length; i++) {
    const x = samples[i]!;
    energy += x * x;
    const current = x + coefficient * previous - beforePrevious;
    beforePrevious = previous;
    previous = current;
  }
  if (energy === 0) return 0;
  const power = previous * previous + beforePrevious * beforePrevious - coefficient * previous * beforePrevious;
  return (2 * power) / samples.length / energy;
}

function sine(frequency: number, start: number, amplitude = 8000): Int16Array {
  const frame = new Int16Array(160);
  for (let i = 0; i < 160; i++) frame[i] = Math.round(amplitude * Math.sin((2 * Math.PI * frequency * (start + i)) / 8000));
  return frame;
}

/** A tone of `frames` frames (endless when absent). */
class ToneSource implements AudioSource {
  private sample = 0;
  constructor(
    private readonly frequency: number,
    private frames = Infinity,
  ) {}
  next(): Int16Array | undefined {
    if (this.frames-- <= 0) return undefined;
    const frame = sine(this.frequency, this.sample);
    this.sample += 160;
    return frame;
  }
}

/** A DTMF digit's two tones, endless. */
class DigitSource implements AudioSource {
  private sample = 0;
  constructor(private readonly tones: [number, number]) {}
  next(): Int16Array {
    const frame = new Int16Array(160);
    for (let i = 0; i < 160; i++) {
      const t = (this.sample + i) / 8000;
      frame[i] = Math.round(7000 * Math.sin(2 * Math.PI * this.tones[0] * t) + 7000 * Math.sin(2 * Math.PI * this.tones[1] * t));
    }
    this.sample += 160;
    return frame;
  }
}

/** The digits found in 205-sample blocks, as counts. */
function digitsIn(samples: ArrayLike<number>): Map<string, number> {
  const counts = new Map<string, number>();
  const block = new Int16Array(205);
  for (let start = 0; start + 205 <= samples.length; start += 205) {
    for (let i = 0; i < 205; i++) block[i] = samples[start + i]!;
    const digit = detectDtmf(block);
    if (digit) counts.set(digit, (counts.get(digit) ?? 0) + 1);
  }
  return counts;
}

/** Waits (by event-loop turns) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

interface Received {
  marker: boolean;
  payloadType: number;
  sequence: number;
  timestamp: number;
  ssrc: number;
  payload: Buffer;
}

/** What the peer sends in one 20 ms slot: packets built by the test (none, one, or a burst). */
type Slot = (peer: RtpPeer) => Buffer[];

/** A plain RTP phone on loopback. */
class RtpPeer {
  readonly received: Received[] = [];
  private timer: NodeJS.Timeout | undefined;
  sequence = 1000;
  timestamp = 0;
  readonly ssrc = 0x5eed;
  target = 0;
  /** Packets sent. */
  sent = 0;

  private constructor(readonly socket: Socket) {
    socket.on('message', (packet) => {
      const header = parseRtp(packet);
      if (!header) return;
      const payload = packet.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength);
      this.received.push({ marker: header.marker, payloadType: header.payloadType, sequence: header.sequence, timestamp: header.timestamp, ssrc: header.ssrc, payload });
    });
  }

  static async open(): Promise<RtpPeer> {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    return new RtpPeer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** An offer (or answer) with these payload types (rtpmaps written for the known ones). */
  sdp(payloadTypes: number[], direction = 'sendrecv', version = 1, port = this.port): string {
    const names: Record<number, string> = { 0: 'PCMU/8000', 8: 'PCMA/8000', 9: 'G722/8000', 101: 'telephone-event/8000', 111: 'opus/48000/2' };
    return [
      'v=0',
      `o=peer 7 ${version} IN IP4 127.0.0.1`,
      's=call',
      'c=IN IP4 127.0.0.1',
      't=0 0',
      `m=audio ${port} RTP/AVP ${payloadTypes.join(' ')}`,
      ...payloadTypes.map((pt) => `a=rtpmap:${pt} ${names[pt]}`),
      ...(payloadTypes.includes(101) ? ['a=fmtp:101 0-15'] : []),
      `a=${direction}`,
      '',
    ].join('\r\n');
  }

  /** An audio packet of `samples`, the next sequence number and timestamp. */
  audio(samples: Int16Array, payloadType = 0, sequence = this.nextSequence()): Buffer {
    const packet = Buffer.alloc(12 + samples.length);
    writeRtpHeader(packet, { payloadType, sequence, timestamp: this.timestamp, ssrc: this.ssrc });
    packet.set(payloadType === 8 ? encodeAlaw(samples) : encodeUlaw(samples), 12);
    this.timestamp = (this.timestamp + 160) >>> 0;
    return packet;
  }

  nextSequence(): number {
    const sequence = this.sequence;
    this.sequence = (this.sequence + 1) & 0xffff;
    return sequence;
  }

  event(event: number, timestamp: number, duration: number, end: boolean, marker = false): Buffer {
    const packet = Buffer.alloc(16);
    writeRtpHeader(packet, { marker, payloadType: 101, sequence: this.nextSequence(), timestamp, ssrc: this.ssrc });
    packet.set(buildTelephoneEvent({ event, end, volume: 10, duration }), 12);
    return packet;
  }

  /** Sends, every 20 ms, the packets of the next slot; once the slots run out, `after` (default: nothing). */
  run(slots: Slot[], after?: Slot): void {
    this.stop();
    let index = 0;
    this.timer = setInterval(() => {
      const slot = index < slots.length ? slots[index++]! : after;
      if (!slot) return;
      for (const packet of slot(this)) {
        this.sent++;
        this.socket.send(packet, this.target, '127.0.0.1');
      }
    }, 20);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.stop();
    this.socket.close();
  }

  /** The audio received, decoded (PCMU or PCMA), in arrival order. */
  heard(from = 0): number[] {
    const samples: number[] = [];
    for (const packet of this.received.slice(from)) {
      if (packet.payloadType === 0) samples.push(...decodeUlaw(packet.payload));
      else if (packet.payloadType === 8) samples.push(...decodeAlaw(packet.payload));
    }
    return samples;
  }
}

function lastEventIndex(packets: Received[]): number {
  for (let i = packets.length - 1; i >= 0; i--) if (packets[i]!.payloadType === 101) return i;
  return -1;
}

/** A frame whose samples all have one value (decodes back to exactly `level`: a μ-law code's value). */
function levelFrame(level: number): Int16Array {
  return new Int16Array(160).fill(level);
}

// ---- the frame clock, on a fake timer -------------------------------------------------------

describe('frame clock', () => {
  function fakeTimer(): { fake: FakeClock; timer: FrameTimer } {
    const fake = new FakeClock();
    return { fake, timer: { now: () => fake.now, schedule: (delay, callback) => fake.schedule(delay, callback) } };
  }

  test('one timer ticks every subscriber every 20 ms, and stops with the last one', () => {
    const { fake, timer } = fakeTimer();
    const clock = new FrameClock({ timer });
    const ticks = [0, 0];
    const a = { onFrame: () => ticks[0]!++ };
    const b = { onFrame: () => ticks[1]!++ };
    clock.subscribe(a);
    const removeB = clock.subscribe(b);
    assert.equal(fake.pending, 1, 'one timer for both');
    fake.advance(200);
    assert.deepEqual(ticks, [10, 10]);
    removeB();
    fake.advance(100);
    assert.deepEqual(ticks, [15, 10]);
    clock.unsubscribe(a);
    assert.equal(fake.pending, 0, 'no timer without subscribers');
    assert.equal(clock.running, false);
    assert.equal(clock.stats().lateFrames, 0);
  });

  test('late timers do not accumulate drift; a long stall catches up by at most 3 frames and counts the rest', () => {
    let now = 0;
    const scheduled: { at: number; run: () => void }[] = [];
    // Every timer fires 7 ms late: a clock that accumulated delays would fall behind by 7 ms a tick.
    const timer: FrameTimer = { now: () => now, schedule: (delay, run) => (scheduled.push({ at: now + delay + 7, run }), () => undefined) };
    const clock = new FrameClock({ timer });
    let frames = 0;
    let lateFrames = 0;
    clock.subscribe({ onFrame: (late) => (frames++, late && lateFrames++) });
    const fire = (): void => {
      const next = scheduled.shift()!;
      now = Math.max(now, next.at);
      next.run();
    };
    for (let i = 0; i < 50; i++) fire();
    // After 50 timers, 50 frames, and the time is 50 frames + 7 ms: no drift.
    assert.equal(frames, 50);
    assert.equal(now, 50 * 20 + 7);
    assert.equal(lateFrames, 0, 'within half a frame is not late');
    // A stall of a second: 3 frames caught up at once (late: the newest is 12 ms overdue), the other 47 skipped.
    now += 1005;
    fire();
    assert.equal(frames, 53);
    const stats = clock.stats();
    assert.equal(stats.skippedTicks, 47);
    assert.equal(stats.lateTicks, 3);
    assert.equal(stats.lateFrames, 50);
    assert.equal(lateFrames, 3);
  });

  test('a subscriber that throws is counted; the others still get their frames', () => {
    const { fake, timer } = fakeTimer();
    const clock = new FrameClock({ timer });
    let good = 0;
    clock.subscribe({ onFrame: () => { throw new Error('boom'); } });
    clock.subscribe({ onFrame: () => good++ });
    fake.advance(60);
    assert.equal(good, 3);
    assert.equal(clock.stats().errors, 3);
  });
});

// ---- the jitter buffer ----------------------------------------------------------------------

describe('jitter buffer', () => {
  const payload = (value: number): Uint8Array => new Uint8Array(160).fill(value);
  function drain(buffer: JitterBuffer, n: number): (number | string)[] {
    const out: (number | string)[] = [];
    for (let i = 0; i < n; i++) {
      const slot = buffer.pop();
      out.push(typeof slot === 'string' ? slot : slot.kind === AUDIO ? slot.sequence : `no-audio ${slot.sequence}`);
    }
    return out;
  }

  test('reorders, drops duplicates and late packets, reports a loss once a later packet is there', () => {
    const buffer = new JitterBuffer({ depth: 2, window: 8 });
    assert.equal(buffer.pop(), EMPTY, 'nothing before playout starts');
    for (const sequence of [10, 12, 11, 11, 13, 15]) buffer.push(1, sequence, sequence * 160, 0, AUDIO, payload(sequence), 0, 160);
    assert.deepEqual(drain(buffer, 7), [10, 11, 12, 13, LOST, 15, EMPTY]);
    assert.equal(buffer.push(1, 14, 14 * 160, 0, AUDIO, payload(14), 0, 160), false, '14 came after its turn');
    const stats = buffer.stats();
    assert.deepEqual({ lost: stats.lost, late: stats.late, duplicates: stats.duplicates, played: stats.played }, { lost: 1, late: 1, duplicates: 1, played: 5 });
  });

  test('sequence numbers wrap; events are silence or skipped; a new SSRC starts over', () => {
    const buffer = new JitterBuffer({ depth: 2, window: 8 });
    buffer.push(1, 65534, 0, 0, AUDIO, payload(1), 0, 160);
    buffer.push(1, 65535, 160, 0, AUDIO, payload(2), 0, 160);
    buffer.push(1, 0, 320, 101, NO_AUDIO);
    buffer.push(1, 1, 320, 101, SKIP);
    buffer.push(1, 2, 480, 0, AUDIO, payload(3), 0, 160);
    assert.deepEqual(drain(buffer, 5), [65534, 65535, 'no-audio 0', 2, EMPTY]);
    buffer.push(2, 500, 0, 0, AUDIO, payload(4), 0, 160);
    assert.equal(buffer.pop(), EMPTY, 'the new source fills up first');
    buffer.push(2, 501, 160, 0, AUDIO, payload(5), 0, 160);
    assert.deepEqual(drain(buffer, 3), [500, 501, EMPTY]);
    assert.equal(buffer.stats().resets, 1);
    assert.equal(buffer.stats().lost, 0);
  });

  test('too many frames waiting are trimmed, one per pop, down to depth + 3', () => {
    const buffer = new JitterBuffer({ depth: 2, window: 16 });
    for (let sequence = 0; sequence < 10; sequence++) buffer.push(1, sequence, sequence * 160, 0, AUDIO, payload(sequence), 0, 160);
    assert.deepEqual(drain(buffer, 8), [1, 3, 5, 6, 7, 8, 9, EMPTY]);
    assert.equal(buffer.stats().trimmed, 3);
    assert.equal(buffer.stats().lost, 0);
  });

  test('a packet beyond the window slides it: what it passes over is lost', () => {
    const buffer = new JitterBuffer({ depth: 2, window: 8 });
    buffer.push(1, 100, 0, 0, AUDIO, payload(1), 0, 160);
    buffer.push(1, 101, 0, 0, AUDIO, payload(1), 0, 160);
    buffer.push(1, 120, 0, 0, AUDIO, payload(1), 0, 160);
    // Playout now starts at 113 (120 - 8 + 1): 100 to 112 were passed over.
    assert.equal(buffer.stats().lost, 13);
    assert.deepEqual(drain(buffer, 9), [LOST, LOST, LOST, LOST, LOST, LOST, LOST, 120, EMPTY]);
  });
});

// ---- plain RTP ------------------------------------------------------------------------------

describe('media endpoint with a plain RTP peer', { timeout: 60_000 }, () => {
  let gateway: MediaGateway;
  const peers: RtpPeer[] = [];
  const endpoints: MediaEndpoint[] = [];

  before(() => {
    // The per-process port slots of the media tests (media-gateway*.test.ts, calls-media.test.ts use offsets 0-95): 96-111.
    const min = 20000 + (process.pid % 110) * 112 + 96;
    gateway = new MediaGateway({ publicAddress: '127.0.0.1', portRange: { min, max: min + 15 }, maxSessions: 4, idleSeconds: 0 });
  });
  // What a test opened is closed after it, passed or failed: the next one starts with every port free.
  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.close();
    await Promise.all(endpoints.splice(0).map((endpoint) => endpoint.close()));
  });
  after(() => gateway.close());

  async function call(offer: number[] = [0, 101], id = `call-${endpoints.length}`) {
    const peer = await RtpPeer.open();
    peers.push(peer);
    const endpoint = open(id);
    const answer = sdpTransform.parse(await endpoint.answer(peer.sdp(offer)));
    peer.target = answer.media[0]!.port;
    const frames: Int16Array[] = [];
    const digits: string[] = [];
    endpoint.onAudio((frame) => frames.push(frame.slice()));
    endpoint.onDigit((digit) => digits.push(digit));
    return { peer, endpoint, answer, frames, digits };
  }

  async function hangUp(peer: RtpPeer, endpoint: MediaEndpoint): Promise<void> {
    peer.close();
    peers.splice(peers.indexOf(peer), 1);
    await endpoint.close();
  }

  function open(id: string): MediaEndpoint {
    const endpoint = gateway.openEndpoint(id);
    endpoints.push(endpoint);
    return endpoint;
  }

  test('a tone each way: the endpoint hears the peer\'s 1 kHz, the peer hears the endpoint\'s 440 Hz, in a continuous RTP stream', async () => {
    const { peer, endpoint, answer, frames } = await call([0, 101]);
    assert.equal(flavourOf(sdpTransform.write(answer)), 'rtp');
    assert.deepEqual(answer.media[0]!.rtp.map((r) => `${r.payload} ${r.codec}`), ['0 PCMU', '101 telephone-event']);
    assert.equal(answer.media[0]!.direction, 'sendrecv');
    assert.equal(answer.media[0]!.fmtp[0]!.config, '0-15', 'the offer\'s events echoed');
    assert.equal(endpoint.codec, 'PCMU');
    let sample = 0;
    peer.run([], (p) => [p.audio(sine(1000, (sample += 160) - 160))]);
    const played = endpoint.play(new ToneSource(440, 50));
    await until(() => frames.filter((frame) => toneShare(frame, 1000) > 0.9).length >= 25);
    assert.equal(await played, 'finished', 'the source ran out');
    await until(() => peer.received.length > 55);
    const heard = peer.heard();
    const toneFrames = [];
    for (let i = 0; i + 160 <= heard.length; i += 160) if (toneShare(heard.slice(i, i + 160), 440) > 0.9) toneFrames.push(i);
    assert.ok(toneFrames.length >= 45, `the peer heard the 440 Hz tone (${toneFrames.length} frames)`);
    // One SSRC, consecutive sequence numbers, timestamps 160 apart: the stream continues across the source and the silence after it.
    const sent = peer.received;
    assert.ok(sent.length > 55, 'silence follows the source');
    assert.equal(new Set(sent.map((p) => p.ssrc)).size, 1);
    const ordered = [...sent].sort((x, y) => ((x.sequence - sent[0]!.sequence) & 0xffff) - ((y.sequence - sent[0]!.sequence) & 0xffff));
    for (let i = 1; i < ordered.length; i++) {
      assert.equal((ordered[i]!.sequence - ordered[i - 1]!.sequence) & 0xffff, 1);
      assert.equal((ordered[i]!.timestamp - ordered[i - 1]!.timestamp) >>> 0, 160);
    }
    assert.ok(ordered.some((p) => p.marker), 'a marker at the start of the talkspurt');
    const stats = endpoint.stats();
    assert.ok(stats.packetsIn >= 25 && stats.packetsOut >= 55 && stats.bytesOut >= 55 * 172);
    assert.equal(stats.lost, 0);
    await hangUp(peer, endpoint);
  });

  test('packets out of order and duplicated are delivered in order, once; a lost one is a silent frame', async () => {
    const { peer, endpoint, frames } = await call([0]);
    const s = (n: number) => 1000 + n;
    // Each packet's samples are one level, so that each frame tells which packet it came from.
    const level = (n: number): Int16Array => levelFrame(100 * (n + 1));
    const packet = (p: RtpPeer, n: number): Buffer => {
      p.timestamp = n * 160;
      return p.audio(level(n), 0, s(n));
    };
    const slots: Slot[] = [
      (p) => [packet(p, 0)],
      (p) => [packet(p, 1)],
      (p) => [packet(p, 3), packet(p, 2)], // swapped
      (p) => [packet(p, 4), packet(p, 4)], // duplicated
      (p) => [packet(p, 5)],
      () => [], // 6 never comes
      (p) => [packet(p, 7)],
      (p) => [packet(p, 9), packet(p, 8), packet(p, 8)],
      (p) => [packet(p, 10)],
    ];
    peer.run(slots);
    await until(() => frames.length >= 11 && endpoint.stats().packetsIn >= 12);
    // What each frame was: the packet whose level it has, or 'silence'.
    const seen = frames.map((frame) => (frame.every((x) => x === 0) ? 'silence' : Math.round(frame[0]! / 100) - 1));
    assert.deepEqual(seen.slice(0, 11), [0, 1, 2, 3, 4, 5, 'silence', 7, 8, 9, 10]);
    const stats = endpoint.stats();
    assert.equal(stats.lost, 1);
    assert.equal(stats.duplicates + stats.late, 2, 'the two duplicates dropped');
    await hangUp(peer, endpoint);
  });

  test('RFC 4733 in: an event with retransmitted ends is one digit, once; an event whose ends are lost is still reported', async () => {
    const { peer, endpoint, digits, frames } = await call([0, 101]);
    const eventSlots = (code: number, timestamp: number, ends = 3): Slot[] => [
      ...[1, 2, 3, 4].map((i): Slot => (p) => [p.event(code, timestamp, i * 160, false, i === 1)]),
      (p) => Array.from({ length: ends }, () => p.event(code, timestamp, 800, true)),
    ];
    const quiet: Slot = (p) => [p.audio(new Int16Array(160))];
    peer.run(
      [
        quiet,
        quiet,
        ...eventSlots(5, 320),
        quiet,
        quiet,
        (p) => [p.event(5, 320, 800, true)], // a late retransmission of the end
        ...eventSlots(5, 2400), // the same digit again: a new event
        ...eventSlots(7, 4000, 0), // its ends lost: reported when the next event starts
        ...eventSlots(1, 5600),
        ...eventSlots(3, 7200, 0), // its ends lost, and no event after it: reported after 10 frames without events
      ],
      quiet,
    );
    await until(() => digits.length >= 5);
    assert.deepEqual(digits, ['5', '5', '7', '1', '3']);
    const mark = frames.length;
    await until(() => frames.length >= mark + 5);
    assert.equal(digits.length, 5, 'nothing more');
    assert.equal(endpoint.stats().digitsIn, 5);
    assert.equal(endpoint.stats().lost, 0, 'event packets are not losses');
    await hangUp(peer, endpoint);
  });

  test('a source that throws ends its play() as failed; the stream goes on with silence', async () => {
    const { peer, endpoint } = await call([0]);
    let calls = 0;
    const result = await endpoint.play({
      next: () => {
        if (++calls === 3) throw new Error('broken source');
        return sine(440, 0);
      },
    });
    assert.equal(result, 'failed');
    assert.equal(endpoint.stats().errors, 1);
    const from = peer.received.length;
    await until(() => peer.received.length >= from + 3);
    assert.ok(peer.received.slice(from).every((p) => decodeUlaw(p.payload).every((x) => Math.abs(x) < 10)));
    await hangUp(peer, endpoint);
  });

  test('RFC 4733 out: sendDigits("19#") sends each event with growing durations and three end packets, audio paused meanwhile', async () => {
    const { peer, endpoint } = await call([0, 101]);
    await until(() => peer.received.length >= 3);
    endpoint.play(new ToneSource(440));
    await endpoint.sendDigits('19#');
    await until(() => {
      const last = lastEventIndex(peer.received);
      return last >= 0 && peer.received.length >= last + 6;
    });
    const packets = peer.received;
    const first = packets.findIndex((p) => p.payloadType === 101);
    const last = lastEventIndex(packets);
    const events = packets.slice(first, last + 1).filter((p) => p.payloadType === 101);
    const byTimestamp = new Map<number, { event: number; end: boolean; duration: number; marker: boolean }[]>();
    for (const p of events) {
      const event = parseTelephoneEvent(p.payload)!;
      byTimestamp.set(p.timestamp, [...(byTimestamp.get(p.timestamp) ?? []), { ...event, marker: p.marker }]);
    }
    assert.deepEqual([...byTimestamp.values()].map((group) => group[0]!.event), [1, 9, 11]);
    for (const group of byTimestamp.values()) {
      assert.equal(group.length, 8);
      assert.equal(group[0]!.marker, true, 'the event starts with the marker');
      assert.deepEqual(group.map((e) => e.end), [false, false, false, false, false, true, true, true]);
      assert.deepEqual(group.map((e) => e.duration), [160, 320, 480, 640, 800, 800, 800, 800]);
    }
    // Between the first and the last event packet, no tone: the source was paused (only silence in the pauses).
    const between = packets.slice(first, last + 1).filter((p) => p.payloadType === 0);
    assert.ok(between.every((p) => decodeUlaw(p.payload).every((x) => Math.abs(x) < 10)), 'no audio of the source between the events');
    // The pause after the last digit, then the source goes on, with a marker.
    const afterwards = packets.slice(last + 1);
    const resumed = afterwards.findIndex((p) => p.marker);
    assert.ok(resumed >= 0, 'a marker where the source resumes');
    assert.ok(afterwards.slice(0, resumed).every((p) => decodeUlaw(p.payload).every((x) => Math.abs(x) < 10)));
    assert.ok(toneShare(decodeUlaw(afterwards[resumed]!.payload), 440) > 0.9);
    assert.equal(endpoint.stats().digitsOut, 3);
    await assert.rejects(endpoint.sendDigits('1x'), RangeError);
    await hangUp(peer, endpoint);
  });

  test('without telephone-event, digits go in-band as tones', async () => {
    const { peer, endpoint, answer } = await call([0]);
    assert.deepEqual(answer.media[0]!.rtp.map((r) => r.codec), ['PCMU']);
    await until(() => peer.received.length >= 2);
    const from = peer.received.length;
    await endpoint.sendDigits('5');
    await until(() => peer.received.length >= from + 10);
    const counts = digitsIn(peer.heard(from));
    assert.deepEqual([...counts.keys()], ['5']);
    assert.ok(counts.get('5')! >= 3);
    assert.ok(peer.received.every((p) => p.payloadType === 0));
    await hangUp(peer, endpoint);
  });

  test('PCMA offered first is chosen, and sent', async () => {
    const { peer, endpoint, answer } = await call([8, 0, 101]);
    assert.deepEqual(answer.media[0]!.rtp.map((r) => r.codec), ['PCMA', 'telephone-event']);
    assert.equal(endpoint.codec, 'PCMA');
    endpoint.play(new ToneSource(440));
    await until(() => peer.received.length >= 10);
    assert.deepEqual([...new Set(peer.received.map((p) => p.payloadType))], [8]);
    assert.ok(toneShare(decodeAlaw(peer.received.at(-1)!.payload), 440) > 0.9);
    await hangUp(peer, endpoint);
  });

  test('an offer without G.711, or without audio, is a MediaNegotiationError; ports are given back', async () => {
    const peer = await RtpPeer.open();
    peers.push(peer);
    const endpoint = open('no-g711');
    await assert.rejects(endpoint.answer(peer.sdp([9, 111])), (error: Error) => error instanceof MediaNegotiationError && /G\.711/.test(error.message));
    await assert.rejects(endpoint.answer('v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n'), MediaNegotiationError);
    await assert.rejects(endpoint.answer(peer.sdp([0]).replace('RTP/AVP', 'RTP/SAVP')), MediaNegotiationError);
    await endpoint.close();
    assert.equal(gateway.stats().portsInUse, 0);
    assert.equal(gateway.stats().sessions, 0);
  });

  test('garbage on the media port and in the SDP is refused and counted, never a crash', async () => {
    const { peer, endpoint, frames, digits } = await call([0, 101]);
    const header = (first: number, second: number, length: number): Buffer => {
      const packet = Buffer.alloc(length);
      packet[0] = first;
      packet[1] = second;
      return packet;
    };
    const garbage: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from([0x80]),
      header(0x80, 0, 11), // shorter than a header
      header(0x40, 0, 172), // version 1
      header(0x8f, 0, 20), // 15 CSRCs announced, 2 present
      (() => { const p = header(0x90, 0, 20); p.writeUInt16BE(200, 14); return p; })(), // an extension past the end
      (() => { const p = header(0xa0, 0, 30); p[29] = 200; return p; })(), // padding longer than the packet
      header(0x80, 96, 172), // a payload type not negotiated
      header(0x80, 101, 14), // a telephone-event too short
      header(0x80, 101, 16).fill(0xff, 12), // event 255 (no digit), end
    ];
    peer.run([() => garbage, (p) => [p.audio(sine(1000, 0))]], (p) => [p.audio(sine(1000, 0))]);
    await until(() => frames.filter((frame) => toneShare(frame, 1000) > 0.9).length >= 5);
    assert.ok(endpoint.stats().dropped >= 8, `dropped ${endpoint.stats().dropped}`);
    assert.deepEqual(digits, []);
    for (const sdp of ['', 'hello', 'v=0\r\nm=audio x RTP/AVP 0\r\n', peer.sdp([0]).replace('c=IN IP4 127.0.0.1\r\n', '')]) {
      await assert.rejects(endpoint.answer(sdp), (error: Error) => error instanceof Error);
    }
    // The call is unharmed.
    const mark = frames.length;
    await until(() => frames.length >= mark + 5);
    await hangUp(peer, endpoint);
  });

  test('endpoints count against the gateway\'s session limit', async () => {
    for (const id of ['one', 'two', 'three', 'four']) open(id);
    assert.equal(gateway.stats().sessions, 4);
    assert.throws(() => gateway.openEndpoint('five'), SessionLimitError);
    assert.throws(() => gateway.openEndpoint('one'), /already open/);
    await Promise.all(endpoints.splice(0).map((endpoint) => endpoint.close()));
    assert.equal(gateway.stats().sessions, 0);
  });

  test('hold: a sendonly re-offer stops our sending, a sendrecv one resumes it; a new address is followed', async () => {
    const { peer, endpoint, frames } = await call([0, 101]);
    endpoint.play(new ToneSource(440));
    peer.run([], (p) => [p.audio(sine(1000, 0))]);
    await until(() => peer.received.length >= 5);
    const held = sdpTransform.parse(await endpoint.answer(peer.sdp([0, 101], 'sendonly', 2)));
    assert.equal(held.media[0]!.direction, 'recvonly');
    // Packets sent before the answer may still be on their way: count after a few frames.
    let mark = frames.length;
    await until(() => frames.length >= mark + 3);
    const sentBefore = peer.received.length;
    mark = frames.length;
    await until(() => frames.length >= mark + 15);
    assert.equal(peer.received.length, sentBefore, 'nothing sent while held (15 frames received meanwhile)');
    // Resume, from a new address: the peer's second socket.
    const moved = await RtpPeer.open();
    peers.push(moved);
    moved.target = peer.target;
    peer.stop();
    // All the old address sent has arrived (loopback loses nothing), so none of it can latch the endpoint back there.
    await until(() => endpoint.stats().packetsIn >= peer.sent);
    const resumed = sdpTransform.parse(await endpoint.answer(peer.sdp([0, 101], 'sendrecv', 3, moved.port)));
    assert.equal(resumed.media[0]!.direction, 'sendrecv');
    moved.run([], (p) => [p.audio(sine(1000, 0))]);
    await until(() => moved.received.length >= 10);
    assert.ok(moved.received[0]!.marker, 'the talkspurt after the hold starts with a marker');
    assert.ok(moved.received.slice(1).some((p) => toneShare(decodeUlaw(p.payload), 440) > 0.9), 'the paused source goes on');
    assert.equal(peer.received.length, sentBefore, 'nothing to the old address');
    await hangUp(moved, endpoint);
  });

  test('close frees the ports and the session; our own offer and the peer\'s answer work too', async () => {
    const peer = await RtpPeer.open();
    peers.push(peer);
    const endpoint = open('offerer');
    const offer = sdpTransform.parse(await endpoint.offer());
    assert.deepEqual(offer.media[0]!.rtp.map((r) => r.codec), ['PCMU', 'PCMA', 'telephone-event']);
    assert.equal(gateway.stats().portsInUse, 2);
    assert.equal(gateway.stats().sessions, 1);
    await endpoint.accept(peer.sdp([8]));
    assert.equal(endpoint.codec, 'PCMA');
    peer.target = offer.media[0]!.port;
    await until(() => peer.received.length >= 3);
    assert.deepEqual([...new Set(peer.received.map((p) => p.payloadType))], [8]);
    const lateAnswer = peer.sdp([8]);
    await assert.rejects(endpoint.accept(lateAnswer), MediaNegotiationError, 'no offer pending');
    await hangUp(peer, endpoint);
    assert.equal(gateway.stats().portsInUse, 0);
    assert.equal(gateway.stats().sessions, 0);
    await assert.rejects(endpoint.answer(lateAnswer), /closed/);
    await assert.rejects(endpoint.sendDigits('1'), /closed/);
  });
});

// ---- WebRTC ---------------------------------------------------------------------------------

describe('media endpoint with a WebRTC peer (aiortc)', { timeout: 120_000 }, () => {
  let gateway: MediaGateway;
  const cleanup: (() => void)[] = [];

  before(async () => {
    await ensureAiortc();
    const min = 20000 + (process.pid % 110) * 112 + 96;
    gateway = new MediaGateway({ publicAddress: '127.0.0.1', portRange: { min, max: min + 15 }, maxSessions: 2, idleSeconds: 0 });
  });
  after(async () => {
    for (const step of cleanup) step();
    await gateway.close();
  });

  test('aiortc offers, the endpoint answers (ICE-lite, DTLS-SRTP): each hears the other\'s digit', async () => {
    const browser: AiortcPeer = await startAiortcPeer({ mode: 'offer', digit: '5', codecs: ['PCMU'], seconds: 2, timeout: 40 });
    cleanup.push(() => browser.kill());
    const endpoint = gateway.openEndpoint('webrtc');
    const received: number[] = [];
    endpoint.onAudio((frame) => received.push(...frame));
    const offer = await browser.nextSdp();
    const answer = await endpoint.answer(offer);
    assert.equal(flavourOf(answer), 'webrtc');
    assert.equal(endpoint.flavour, 'webrtc');
    assert.equal(endpoint.codec, 'PCMU');
    assert.equal(sdpTransform.parse(answer).icelite, 'ice-lite');
    endpoint.play(new DigitSource([852, 1477])); // '9'
    browser.give(answer);
    const result = await browser.result;
    assert.equal(result.state, 'connected');
    const heardByBrowser = digitsIn(result.samples);
    assert.ok((heardByBrowser.get('9') ?? 0) >= 10, `the browser heard 9: ${JSON.stringify([...heardByBrowser])}`);
    assert.deepEqual([...heardByBrowser.keys()], ['9']);
    await until(() => digitsIn(received).get('5')! >= 10);
    assert.deepEqual([...digitsIn(received).keys()], ['5']);
    const stats = endpoint.stats();
    assert.ok(stats.packetsIn > 0 && stats.packetsOut > 0);
    await endpoint.close();
    assert.equal(gateway.stats().portsInUse, 0);
  });

  test('the endpoint offers WebRTC, aiortc answers: each hears the other\'s digit', async () => {
    const browser: AiortcPeer = await startAiortcPeer({ mode: 'answer', digit: '1', codecs: ['PCMU', 'PCMA'], seconds: 2, timeout: 40 });
    cleanup.push(() => browser.kill());
    const endpoint = gateway.openEndpoint('webrtc-offer');
    const received: number[] = [];
    endpoint.onAudio((frame) => received.push(...frame));
    const offer = await endpoint.offer({ flavour: 'webrtc' });
    assert.equal(flavourOf(offer), 'webrtc');
    browser.give(offer);
    await endpoint.accept(await browser.nextSdp());
    endpoint.play(new DigitSource([941, 1477])); // '#'
    const result = await browser.result;
    const heardByBrowser = digitsIn(result.samples);
    assert.ok((heardByBrowser.get('#') ?? 0) >= 10, `the browser heard #: ${JSON.stringify([...heardByBrowser])}`);
    await until(() => (digitsIn(received).get('1') ?? 0) >= 10);
    assert.deepEqual([...digitsIn(received).keys()], ['1']);
    await endpoint.close();
    assert.equal(gateway.stats().portsInUse, 0);
  });
});
