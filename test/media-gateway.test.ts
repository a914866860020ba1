/**
 * The media gateway with plain RTP on both sides (src/media/ports.ts, relay.ts, gateway.ts): two
 * UDP sockets on loopback play two phones. Packets, SDP and tones are made here; the SDP follows
 * the shapes RFC 4566/3264 describe (as SIP phones write them), not any captured trace.
 *
 * No assertion depends on the clock: where a packet must NOT arrive, the test waits for the
 * gateway's drop counter instead, then checks that a later packet arrives first.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import sdpTransform from 'sdp-transform';
import { detectDtmf, buildTelephoneEvent, parseTelephoneEvent } from '../src/media/dtmf.js';
import { decodeAlaw, encodeUlaw } from '../src/media/g711.js';
import { flavourOf, MediaGateway, MediaNegotiationError, type MediaSession } from '../src/media/gateway.js';
import { PortAllocator, PortRangeExhaustedError, SessionLimitError } from '../src/media/ports.js';
import { buildRoute, type SideMedia } from '../src/media/relay.js';
import { parseRtp, writeRtpHeader } from '../src/media/rtp.js';

/** A port range of our own per process, so that suites running side by side do not collide. */
function rangeFor(slot: number, size: number): { min: number; max: number } {
  // Even, 16 ports per slot, seven slots (0 to 6) per process; all below Linux's ephemeral ports
  // (32768 on), which other suites' sockets bound to port 0 take.
  const min = 20000 + (process.pid % 110) * 112 + slot * 16;
  return { min, max: min + size - 1 };
}

interface Phone {
  socket: Socket;
  port: number;
  /** Packets received, in order. */
  received: { packet: Buffer; from: number }[];
  /** Resolves when `count` packets have been received in all. */
  waitFor(count: number): Promise<void>;
  send(packet: Buffer, port: number): void;
  close(): void;
}

async function phone(): Promise<Phone> {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const received: Phone['received'] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  socket.on('message', (packet, rinfo) => {
    received.push({ packet, from: rinfo.port });
    for (const waiter of waiters.filter((w) => received.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  return {
    socket,
    port: socket.address().port,
    received,
    waitFor: (count) =>
      received.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve })),
    send: (packet, port) => socket.send(packet, port, '127.0.0.1'),
    close: () => socket.close(),
  };
}

/** A phone's SDP: one audio m-line on loopback. */
function phoneSdp(port: number, codecs: [number, string][], direction = 'sendrecv', extra = ''): string {
  const lines = [
    'v=0',
    `o=phone 1 ${Math.floor(Math.random() * 1000)} IN IP4 127.0.0.1`,
    's=call',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${port} RTP/AVP ${codecs.map(([pt]) => pt).join(' ')}`,
    ...codecs.map(([pt, name]) => `a=rtpmap:${pt} ${name}/8000`),
    ...codecs.filter(([, name]) => name === 'telephone-event').map(([pt]) => `a=fmtp:${pt} 0-15`),
    `a=${direction}`,
    ...(extra ? [extra] : []),
  ];
  return lines.join('\r\n') + '\r\n';
}

function audioPort(sdp: string): number {
  return sdpTransform.parse(sdp).media.find((m) => m.type === 'audio')!.port;
}

let sequence = 1000;
function rtpPacket(payloadType: number, payload: Uint8Array, marker = false): Buffer {
  const packet = Buffer.alloc(12 + payload.length);
  writeRtpHeader(packet, { payloadType, sequence: sequence++ & 0xffff, timestamp: sequence * 160, ssrc: 0x1234abcd, marker });
  packet.set(payload, 12);
  return packet;
}

/** 20 ms of a DTMF digit's two tones, as 16-bit samples starting at sample `start`. */
function dtmfTone(digit: string, start: number, count = 160): Int16Array {
  const rows: Record<string, [number, number]> = { '1': [697, 1209], '5': [770, 1336], '9': [852, 1477], '#': [941, 1477] };
  const [low, high] = rows[digit]!;
  const samples = new Int16Array(count);
  for (let i = 0; i < count; i++) {
    const t = (start + i) / 8000;
    samples[i] = Math.round(6000 * Math.sin(2 * Math.PI * low * t) + 6000 * Math.sin(2 * Math.PI * high * t));
  }
  return samples;
}

/** Waits (by event-loop turns, not time) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('flavourOf', () => {
  test('DTLS-SRTP audio is webrtc, RTP/AVP is rtp', () => {
    assert.equal(flavourOf(phoneSdp(4000, [[0, 'PCMU']])), 'rtp');
    const webrtc = phoneSdp(4000, [[0, 'PCMU']])
      .replace('RTP/AVP', 'UDP/TLS/RTP/SAVPF')
      .concat('a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\na=fingerprint:sha-256 AA:BB\r\n');
    assert.equal(flavourOf(webrtc), 'webrtc');
  });
});

describe('port allocation', () => {
  test('pairs are even/odd, singles take odd ports first, exhaustion is a clear error', () => {
    const ports = new PortAllocator({ min: 40001, max: 40006 }, 2);
    const pair = ports.allocatePair();
    assert.equal(pair % 2, 0);
    const second = ports.allocatePair();
    assert.notEqual(second, pair);
    assert.throws(() => ports.allocatePair(), PortRangeExhaustedError);
    // The ports outside the pairs: 40001 (odd first), then 40006.
    assert.equal(ports.allocateSingle(), 40001);
    assert.equal(ports.allocateSingle(), 40006);
    assert.throws(() => ports.allocateSingle(), /no free port left in the media port range 40001-40006/);
    ports.release(pair);
    ports.release(pair + 1);
    assert.equal(ports.allocatePair(), pair);
    assert.equal(ports.portsInUse, 6);
  });

  test('a port another process holds is set aside for a while, not handed out again at once', async () => {
    const ports = new PortAllocator({ min: 40000, max: 40003 }, 2);
    const first = ports.allocatePair();
    ports.setAside(first, 20);
    ports.setAside(first + 1, 20);
    const second = ports.allocatePair();
    assert.notEqual(second, first);
    assert.throws(() => ports.allocatePair(), PortRangeExhaustedError, 'the set-aside pair is still taken');
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(ports.allocatePair(), first, 'and free again after its time');
  });

  test('the session limit', () => {
    const ports = new PortAllocator({ min: 40000, max: 40009 }, 1);
    ports.openSession();
    assert.throws(() => ports.openSession(), SessionLimitError);
    ports.closeSession();
    ports.openSession();
  });
});

describe('routes', () => {
  const side = (entries: [number, 'PCMU' | 'PCMA' | 'telephone-event'][], direction: SideMedia['direction'] = 'sendrecv'): SideMedia => ({
    payloadTypes: new Map(entries),
    direction,
  });
  test('renumbers telephone-event, transcodes the other law, follows the directions', () => {
    const route = buildRoute(side([[0, 'PCMU'], [101, 'telephone-event']]), side([[8, 'PCMA'], [96, 'telephone-event']]));
    assert.equal(route.open, true);
    assert.equal(route.payloadType[0], 8);
    assert.equal(route.transcode[0], 1);
    assert.equal(route.payloadType[101], 96);
    assert.equal(route.payloadType[13], -1);
    assert.equal(buildRoute(side([[0, 'PCMU']], 'sendonly'), side([[0, 'PCMU']], 'recvonly')).open, true);
    assert.equal(buildRoute(side([[0, 'PCMU']], 'recvonly'), side([[0, 'PCMU']], 'sendonly')).open, false);
    assert.equal(buildRoute(side([[0, 'PCMU']], 'inactive'), side([[0, 'PCMU']])).open, false);
  });
});

describe('plain RTP through the gateway', { timeout: 60_000 }, () => {
  const gateways: MediaGateway[] = [];
  const phones: Phone[] = [];
  after(async () => {
    for (const p of phones) p.close();
    await Promise.all(gateways.map((g) => g.close()));
  });

  function gateway(slot: number, size = 16, maxSessions = 4, idleSeconds = 0): MediaGateway {
    const created = new MediaGateway({ publicAddress: '127.0.0.1', portRange: rangeFor(slot, size), maxSessions, idleSeconds });
    gateways.push(created);
    return created;
  }

  async function newPhone(): Promise<Phone> {
    const created = await phone();
    phones.push(created);
    return created;
  }

  /** A (PCMU, telephone-event 101) calls B (PCMU, telephone-event 96); returns the gateway's ports for each. */
  async function connect(session: MediaSession, a: Phone, b: Phone, aAnnounced = a.port, bCodecs: [number, string][] = [[0, 'PCMU'], [96, 'telephone-event']]) {
    const offerForB = await session.offer('a', phoneSdp(aAnnounced, [[0, 'PCMU'], [8, 'PCMA'], [101, 'telephone-event']]), 'rtp');
    assert.equal(flavourOf(offerForB), 'rtp');
    const answerForA = await session.answer('b', phoneSdp(b.port, bCodecs));
    return { offerForB, answerForA, gwA: audioPort(answerForA), gwB: audioPort(offerForB) };
  }

  test('G.711 both ways, payload types remapped, latching to a NATed port, strangers dropped, RFC 4733 events', async () => {
    const session = gateway(1).open('call-1');
    const [a, b, nat, stranger, announced] = await Promise.all([newPhone(), newPhone(), newPhone(), newPhone(), newPhone()]);
    // A's SDP names the `announced` port, but A's packets really come from `nat` (its NAT's mapping).
    const { offerForB, answerForA, gwA, gwB } = await connect(session, a, b, announced.port);
    const offered = sdpTransform.parse(offerForB);
    assert.equal(offered.connection?.ip, '127.0.0.1');
    assert.deepEqual(offered.media[0]!.rtp.map((r) => r.codec), ['PCMU', 'PCMA', 'telephone-event']);
    assert.equal(offered.media[0]!.protocol, 'RTP/AVP');
    // B took PCMU and telephone-event: A's answer keeps PCMU first, and PCMA (we would transcode).
    assert.deepEqual(sdpTransform.parse(answerForA).media[0]!.rtp.map((r) => r.payload), [0, 8, 101]);
    void a;

    const tone = encodeUlaw(dtmfTone('5', 0));
    nat.send(rtpPacket(0, tone), gwA);
    await b.waitFor(1);
    const atB = parseRtp(b.received[0]!.packet)!;
    assert.equal(atB.payloadType, 0);
    assert.deepEqual(b.received[0]!.packet.subarray(atB.payloadOffset), Buffer.from(tone));
    assert.equal(b.received[0]!.from, gwB, 'B hears the gateway from the port in its SDP (symmetric RTP)');

    // B → A goes to where A's packets came from, not to the SDP's port.
    const reply = encodeUlaw(dtmfTone('9', 0));
    b.send(rtpPacket(0, reply), gwB);
    await nat.waitFor(1);
    assert.equal(announced.received.length, 0);
    assert.deepEqual(nat.received[0]!.packet.subarray(12), Buffer.from(reply));

    // A stranger's packet to A's port is dropped and counted; A's next packet still passes.
    stranger.send(rtpPacket(0, tone), gwA);
    await until(() => session.stats().a!.dropped === 1);
    nat.send(rtpPacket(0, tone), gwA);
    await b.waitFor(2);
    assert.equal(b.received.length, 2);

    // RFC 4733: A's event 5 on payload type 101 reaches B on 96, and B's back on 101.
    const event = buildTelephoneEvent({ event: 5, end: false, volume: 10, duration: 800 });
    nat.send(rtpPacket(101, event, true), gwA);
    await b.waitFor(3);
    const eventAtB = parseRtp(b.received[2]!.packet)!;
    assert.equal(eventAtB.payloadType, 96);
    assert.equal(eventAtB.marker, true);
    assert.deepEqual(parseTelephoneEvent(b.received[2]!.packet.subarray(12)), { event: 5, end: false, volume: 10, duration: 800 });
    b.send(rtpPacket(96, buildTelephoneEvent({ event: 11, end: true, volume: 10, duration: 1600 })), gwB);
    await nat.waitFor(2);
    assert.equal(parseRtp(nat.received[1]!.packet)!.payloadType, 101);
    assert.equal(parseTelephoneEvent(nat.received[1]!.packet.subarray(12))!.event, 11);

    const stats = session.stats();
    assert.equal(stats.a!.packetsIn, 3);
    assert.equal(stats.b!.packetsIn, 2);
    assert.equal(stats.b!.packetsOut, 3);
    assert.equal(stats.a!.dropped, 1);
    assert.deepEqual(stats.b!.codecs, ['PCMU', 'telephone-event']);
    await session.close();
    const totals = gateways[0]!.stats();
    assert.deepEqual(
      { relayed: totals.packetsRelayed, dropped: totals.packetsDropped, sessions: totals.sessions },
      { relayed: 5, dropped: 1, sessions: 0 },
      'closed sessions still count',
    );
  });

  test('hold: a sendonly re-offer stops the held direction and keeps the ports; resume restores it', async () => {
    const session = gateway(2).open('call-hold');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    const { gwA, gwB } = await connect(session, a, b);

    const hold = await session.offer('a', phoneSdp(a.port, [[0, 'PCMU'], [101, 'telephone-event']], 'sendonly'), 'rtp');
    assert.equal(sdpTransform.parse(hold).media[0]!.direction, 'sendonly');
    assert.equal(audioPort(hold), gwB, 'the same port for B');
    const held = await session.answer('b', phoneSdp(b.port, [[0, 'PCMU']], 'recvonly'));
    assert.equal(sdpTransform.parse(held).media[0]!.direction, 'recvonly');
    assert.equal(audioPort(held), gwA, 'the same port for A');

    const droppedBefore = session.stats().b!.dropped;
    b.send(rtpPacket(0, encodeUlaw(dtmfTone('9', 0))), gwB);
    await until(() => session.stats().b!.dropped === droppedBefore + 1);
    a.send(rtpPacket(0, encodeUlaw(dtmfTone('5', 0))), gwA); // music on hold still flows A → B
    await b.waitFor(1);
    assert.equal(a.received.length, 0);

    await session.offer('a', phoneSdp(a.port, [[0, 'PCMU']]), 'rtp');
    await session.answer('b', phoneSdp(b.port, [[0, 'PCMU']]));
    b.send(rtpPacket(0, encodeUlaw(dtmfTone('9', 0))), gwB);
    await a.waitFor(1);
    await session.close();
  });

  test('the old hold (c=0.0.0.0) is taken as sendonly, and nothing is sent to 0.0.0.0', async () => {
    const session = gateway(4).open('call-old-hold');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    const { gwB } = await connect(session, a, b);
    const oldHold = phoneSdp(a.port, [[0, 'PCMU']]).replace('c=IN IP4 127.0.0.1', 'c=IN IP4 0.0.0.0');
    assert.equal(sdpTransform.parse(await session.offer('a', oldHold, 'rtp')).media[0]!.direction, 'sendonly');
    await session.answer('b', phoneSdp(b.port, [[0, 'PCMU']], 'recvonly'));
    b.send(rtpPacket(0, encodeUlaw(dtmfTone('9', 0))), gwB);
    await until(() => session.stats().b!.dropped === 1);
    assert.equal(session.stats().a!.packetsOut, 0);
    await session.close();
  });

  test('DTMF of the gateway\'s own: sent as RFC 4733 events in the stream, and taken from a side whose peer has no telephone-event', async () => {
    const session = gateway(6).open('call-dtmf');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    // B takes no telephone-event: A's answer still has it, and the gateway ends A's events itself.
    const { answerForA, gwA, gwB } = await connect(session, a, b, a.port, [[0, 'PCMU']]);
    assert.deepEqual(sdpTransform.parse(answerForA).media[0]!.rtp.map((r) => r.codec), ['PCMU', 'PCMA', 'telephone-event']);
    const digits: [string, string][] = [];
    session.on('digit', (side: string, digit: string) => digits.push([side, digit]));

    // B's audio reaches A; then the gateway sends A the digit 7: its events come in B's stream (same SSRC, next sequence numbers).
    b.send(rtpPacket(0, encodeUlaw(dtmfTone('9', 0))), gwB);
    await a.waitFor(1);
    const audio = parseRtp(a.received[0]!.packet)!;
    await session.sendDtmf('a', '7');
    assert.equal(a.received.length, 1 + 8, 'five packets of tone and three of its end');
    const events = a.received.slice(1).map(({ packet }) => ({ rtp: parseRtp(packet)!, event: parseTelephoneEvent(packet.subarray(12))! }));
    assert.ok(events.every(({ rtp }) => rtp.payloadType === 101 && rtp.ssrc === audio.ssrc && rtp.timestamp === events[0]!.rtp.timestamp));
    assert.deepEqual(events.map(({ rtp }) => rtp.sequence), events.map((_, i) => (audio.sequence + 1 + i) & 0xffff));
    assert.deepEqual(events.map(({ rtp }) => rtp.marker), [true, false, false, false, false, false, false, false]);
    assert.deepEqual(events.map(({ event }) => [event.event, event.end]), [[7, false], [7, false], [7, false], [7, false], [7, false], [7, true], [7, true], [7, true]]);
    // B's next packet comes after the events in A's numbering.
    b.send(rtpPacket(0, encodeUlaw(dtmfTone('9', 160))), gwB);
    await a.waitFor(10);
    assert.equal(parseRtp(a.received[9]!.packet)!.sequence, (audio.sequence + 8 + 1) & 0xffff, 'right after the last event');
    // A late packet from before the events keeps its number (no duplicate of an event's).
    const late = rtpPacket(0, encodeUlaw(dtmfTone('9', 0)));
    late.writeUInt16BE((audio.sequence - 1) & 0xffff, 2);
    b.send(late, gwB);
    await a.waitFor(11);
    assert.equal(parseRtp(a.received[10]!.packet)!.sequence, (audio.sequence - 1) & 0xffff);

    // A's event 3 (sent three times at its end, as senders do) is reported once, and not sent to B.
    const before = b.received.length;
    a.send(rtpPacket(101, buildTelephoneEvent({ event: 3, end: false, volume: 10, duration: 160 }), true), gwA);
    for (let i = 0; i < 3; i++) {
      const end = rtpPacket(101, buildTelephoneEvent({ event: 3, end: true, volume: 10, duration: 800 }));
      end.writeUInt32BE(0x10000, 4);
      a.send(end, gwA);
    }
    await until(() => digits.length === 1 && session.stats().a!.dropped === 4);
    assert.deepEqual(digits, [['a', '3']]);
    assert.equal(b.received.length, before);
    // B took no telephone-event: nothing can be sent to it that way.
    assert.equal(session.sendDtmf('b', '1'), undefined);
    await session.close();
  });

  test('a refused re-offer is rolled back: the media keeps going where it went (RFC 3264 4)', async () => {
    const session = gateway(6).open('call-rollback');
    const [a, b, elsewhere] = await Promise.all([newPhone(), newPhone(), newPhone()]);
    const { gwA, gwB } = await connect(session, a, b);
    a.send(rtpPacket(0, encodeUlaw(dtmfTone('5', 0))), gwA);
    await b.waitFor(1);
    // A offers to move its media elsewhere; B refuses; the gateway forgets the offer.
    await session.offer('a', phoneSdp(elsewhere.port, [[0, 'PCMU']]), 'rtp');
    await session.rollback();
    b.send(rtpPacket(0, encodeUlaw(dtmfTone('9', 0))), gwB);
    await a.waitFor(1);
    assert.equal(elsewhere.received.length, 0, 'nothing went to the refused address');
    // And a new offer can be made and answered.
    await session.offer('a', phoneSdp(a.port, [[0, 'PCMU']], 'sendonly'), 'rtp');
    await session.answer('b', phoneSdp(b.port, [[0, 'PCMU']], 'recvonly'));
    await session.close();
  });

  test('different G.711 laws are transcoded (the tone survives)', async () => {
    const session = gateway(3).open('call-laws');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    const { answerForA, gwA } = await connect(session, a, b, a.port, [[8, 'PCMA']]);
    // B has only A-law: A is told A-law first, μ-law still accepted, and telephone-event (which the gateway takes itself).
    assert.deepEqual(sdpTransform.parse(answerForA).media[0]!.rtp.map((r) => r.codec), ['PCMA', 'PCMU', 'telephone-event']);
    for (let frame = 0; frame < 3; frame++) a.send(rtpPacket(0, encodeUlaw(dtmfTone('9', frame * 160))), gwA);
    await b.waitFor(3);
    const samples = new Int16Array(480);
    b.received.forEach(({ packet }, i) => {
      assert.equal(parseRtp(packet)!.payloadType, 8);
      samples.set(decodeAlaw(packet.subarray(12)), i * 160);
    });
    assert.equal(detectDtmf(samples.subarray(0, 205)), '9');
    await session.close();
  });

  test('an offer without G.711 is refused; other m-lines are refused in the answer', async () => {
    const session = gateway(4).open('call-refused');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    await assert.rejects(session.offer('a', phoneSdp(a.port, [[9, 'G722']]), 'rtp'), MediaNegotiationError);
    const sdes = phoneSdp(a.port, [[0, 'PCMU']]).replace('RTP/AVP', 'RTP/SAVP');
    await assert.rejects(session.offer('a', sdes, 'rtp'), /RTP\/SAVP; plain RTP phones must offer RTP\/AVP/);
    const withVideo = phoneSdp(a.port, [[0, 'PCMU']]) + 'm=video 50000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n';
    await session.offer('a', withVideo, 'rtp');
    const answer = sdpTransform.parse(await session.answer('b', phoneSdp(b.port, [[0, 'PCMU']])));
    assert.equal(answer.media.length, 2);
    assert.equal(answer.media[1]!.type, 'video');
    assert.equal(answer.media[1]!.port, 0);
    await session.close();
  });

  test('port range exhaustion is a clear error; close frees the ports; the session limit', async () => {
    // Two even/odd pairs: one plain RTP call (a pair per side).
    const small = gateway(5, 4, 2);
    const first = small.open('first');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    await connect(first, a, b);
    assert.equal(small.stats().portsInUse, 4);
    const second = small.open('second');
    await assert.rejects(second.offer('a', phoneSdp(a.port, [[0, 'PCMU']]), 'rtp'), PortRangeExhaustedError);
    assert.throws(() => small.open('third'), SessionLimitError);
    const closed = once(first, 'closed');
    await first.close();
    await closed;
    assert.equal(small.stats().sessions, 1);
    await second.close();
    const again = small.open('again');
    await connect(again, a, b);
    assert.equal(small.stats().portsInUse, 4);
    await again.close();
    assert.equal(small.stats().portsInUse, 0);
  });

  test('a session without RTP reports idle', async () => {
    const session = gateway(0, 16, 4, 0.1).open('call-idle');
    const [a, b] = await Promise.all([newPhone(), newPhone()]);
    await connect(session, a, b);
    await once(session, 'idle');
    await session.close();
  });
});
