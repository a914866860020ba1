/**
 * The media gateway between a REAL WebRTC peer and a plain RTP phone: Debian's aiortc (ICE,
 * DTLS-SRTP, rtcp-mux; test/fixtures/aiortc_peer.py) plays one DTMF digit as tones in its G.711
 * audio, a dgram socket on loopback plays a phone sending another, and each side must hear the
 * other's digit (detectDtmf over what it received): audio verified end to end, through ICE-lite,
 * DTLS-SRTP and, where the laws differ, transcoding.
 *
 * No assertion depends on the clock; the phone paces its packets every 20 ms like a real one.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import sdpTransform from 'sdp-transform';
import { buildTelephoneEvent, detectDtmf, parseTelephoneEvent } from '../src/media/dtmf.js';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../src/media/g711.js';
import { flavourOf, MediaGateway } from '../src/media/gateway.js';
import { parseRtp, writeRtpHeader } from '../src/media/rtp.js';
import { RTCPeerConnection, RTCRtpCodecParameters, RtpHeader, RtpPacket } from 'werift';
import { ensureAiortc, startAiortcPeer, type AiortcPeer } from './fixtures/aiortc.js';

const KEYPAD: Record<string, [number, number]> = { '5': [770, 1336], '9': [852, 1477], '1': [697, 1209], '#': [941, 1477] };

/** A phone on loopback that plays a digit's tones in G.711 every 20 ms and keeps what it receives. */
class TonePhone {
  private timer: NodeJS.Timeout | undefined;
  private sample = 0;
  private sequence = 1;
  /** Decoded audio received, in arrival order. */
  readonly heard: number[] = [];
  readonly payloadTypes = new Set<number>();

  private constructor(readonly socket: Socket) {
    socket.on('message', (packet) => {
      const header = parseRtp(packet);
      if (!header) return;
      this.payloadTypes.add(header.payloadType);
      const payload = packet.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength);
      if (header.payloadType === 0) this.heard.push(...decodeUlaw(payload));
      else if (header.payloadType === 8) this.heard.push(...decodeAlaw(payload));
    });
  }

  static async open(): Promise<TonePhone> {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    return new TonePhone(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  sdp(payloadType: 0 | 8): string {
    const codec = payloadType === 0 ? 'PCMU' : 'PCMA';
    return [
      'v=0',
      'o=phone 7 1 IN IP4 127.0.0.1',
      's=call',
      'c=IN IP4 127.0.0.1',
      't=0 0',
      `m=audio ${this.port} RTP/AVP ${payloadType}`,
      `a=rtpmap:${payloadType} ${codec}/8000`,
      'a=sendrecv',
      '',
    ].join('\r\n');
  }

  play(digit: string, payloadType: 0 | 8, toPort: number): void {
    const [low, high] = KEYPAD[digit]!;
    this.timer = setInterval(() => {
      const samples = new Int16Array(160);
      for (let i = 0; i < 160; i++) {
        const t = (this.sample + i) / 8000;
        samples[i] = Math.round(7000 * Math.sin(2 * Math.PI * low * t) + 7000 * Math.sin(2 * Math.PI * high * t));
      }
      const payload = payloadType === 0 ? encodeUlaw(samples) : encodeAlaw(samples);
      const packet = Buffer.alloc(12 + 160);
      writeRtpHeader(packet, { payloadType, sequence: this.sequence++ & 0xffff, timestamp: this.sample, ssrc: 0x5eed });
      packet.set(payload, 12);
      this.sample += 160;
      this.socket.send(packet, toPort, '127.0.0.1');
    }, 20);
  }

  private closed = false;

  /** Stops playing and closes the socket (twice is harmless: the suite's cleanup closes again). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    if (!this.closed) this.socket.close();
    this.closed = true;
  }
}

/** The digits found in 205-sample blocks of `samples`, as counts. */
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

/** Asserts that `expected` was heard clearly (at least 10 blocks, about a quarter of a second) and nothing else. */
function assertHeard(samples: ArrayLike<number>, expected: string, who: string): void {
  const counts = digitsIn(samples);
  assert.ok((counts.get(expected) ?? 0) >= 10, `${who} should hear ${expected}, heard ${JSON.stringify([...counts])} in ${samples.length} samples`);
  assert.deepEqual([...counts.keys()], [expected], `${who} heard only ${expected}`);
}

/** Waits (by event-loop turns) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}

// A safety net for a hung peer, not a timing assertion.
describe('WebRTC (aiortc) ↔ plain RTP through the gateway', { timeout: 120_000 }, () => {
  let gateway: MediaGateway;
  const cleanup: (() => void)[] = [];

  before(async () => {
    await ensureAiortc();
    // The per-process port ranges of media-gateway.test.ts (another process: no collision), 16 ports.
    const min = 20000 + (process.pid % 110) * 112 + 80;
    gateway = new MediaGateway({ publicAddress: '127.0.0.1', portRange: { min, max: min + 15 }, maxSessions: 2, idleSeconds: 0 });
  });
  after(async () => {
    for (const step of cleanup) step();
    await gateway.close();
  });

  /**
   * Ends what a test started (peers, phones, timers), so that none of it sends to ports the next
   * test's session gets (a stray phone would be latched onto, and the real one dropped).
   */
  function end(): void {
    for (const step of cleanup.splice(0)) step();
  }

  function track<T extends { kill(): void } | { close(): void }>(thing: T): T {
    cleanup.push(() => ('kill' in thing ? thing.kill() : thing.close()));
    return thing;
  }

  async function browserOffers(digit: string, phoneLaw: 0 | 8, video = false, codecs = ['PCMU']) {
    const browser: AiortcPeer = track(await startAiortcPeer({ mode: 'offer', digit, codecs, seconds: 2, video }));
    const phone = track(await TonePhone.open());
    const session = gateway.open(`browser-${digit}`);
    const offer = await browser.nextSdp();
    assert.equal(flavourOf(offer), 'webrtc');
    if (codecs.includes('opus')) assert.match(offer, /a=rtpmap:\d+ opus\/48000/i, 'the browser did offer Opus');
    const offerForPhone = await session.offer('a', offer, 'rtp');
    assert.equal(flavourOf(offerForPhone), 'rtp');
    const plain = sdpTransform.parse(offerForPhone);
    assert.equal(plain.media.length, 1, 'only the audio goes to the phone');
    assert.equal(plain.media[0]!.protocol, 'RTP/AVP');
    const answerForBrowser = await session.answer('b', phone.sdp(phoneLaw));
    assert.equal(flavourOf(answerForBrowser), 'webrtc');
    browser.give(answerForBrowser);
    return { browser, phone, session, gatewayPort: plain.media[0]!.port, answerForBrowser, offerForPhone: plain };
  }

  test('the browser offers Opus and PCMU, the phone answers PCMU: no Opus anywhere, each hears the other digit', async () => {
    const { browser, phone, session, gatewayPort, answerForBrowser, offerForPhone } = await browserOffers('5', 0, false, ['opus', 'PCMU']);
    // telephone-event is offered to the phone although the browser has none: the gateway takes and sends its DTMF.
    assert.deepEqual(offerForPhone.media[0]!.rtp.map((r) => r.codec), ['PCMU', 'telephone-event']);
    const answer = sdpTransform.parse(answerForBrowser);
    assert.equal(answer.icelite, 'ice-lite');
    assert.deepEqual(answer.media[0]!.rtp.map((r) => r.codec), ['PCMU']);
    assert.ok(answer.media[0]!.candidates!.every((c) => c.ip === '127.0.0.1'));
    phone.play('9', 0, gatewayPort);
    const result = await browser.result;
    assert.equal(result.state, 'connected');
    assertHeard(result.samples, '9', 'the browser');
    await until(() => phone.heard.length >= 8000 * 1.5);
    assertHeard(phone.heard, '5', 'the phone');
    assert.deepEqual([...phone.payloadTypes], [0]);
    const stats = session.stats();
    assert.equal(stats.a!.flavour, 'webrtc');
    assert.ok(stats.a!.packetsIn > 0 && stats.b!.packetsOut > 0);
    await session.close();
    end();
  });

  test('the phone answers PCMA only: the gateway transcodes both ways; a video m-line is refused', async () => {
    const { browser, phone, session, gatewayPort, answerForBrowser } = await browserOffers('1', 8, true);
    const answer = sdpTransform.parse(answerForBrowser);
    const video = answer.media.find((m) => m.type === 'video')!;
    assert.equal(video.port, 0, 'video refused');
    phone.play('#', 8, gatewayPort);
    const result = await browser.result;
    assertHeard(result.samples, '#', 'the browser');
    await until(() => phone.heard.length >= 8000 * 1.5);
    assertHeard(phone.heard, '1', 'the phone');
    assert.deepEqual([...phone.payloadTypes], [8]);
    await session.close();
    end();
  });

  test('the phone offers, the gateway offers to the browser, the browser answers', async () => {
    const phone = track(await TonePhone.open());
    const browser = track(await startAiortcPeer({ mode: 'answer', digit: '9', codecs: ['PCMU', 'PCMA'], seconds: 2 }));
    const session = gateway.open('phone-offers');
    const offerForBrowser = await session.offer('a', phone.sdp(0), 'webrtc');
    assert.equal(flavourOf(offerForBrowser), 'webrtc');
    browser.give(offerForBrowser);
    const answerForPhone = await session.answer('b', await browser.nextSdp());
    const plain = sdpTransform.parse(answerForPhone);
    assert.equal(plain.media[0]!.protocol, 'RTP/AVP');
    phone.play('5', 0, plain.media[0]!.port);
    const result = await browser.result;
    assertHeard(result.samples, '5', 'the browser');
    await until(() => phone.heard.length >= 8000 * 1.5);
    assertHeard(phone.heard, '9', 'the phone');
    await session.close();
    end();
  });

  /** A second werift as the browser (full ICE, controlling): aiortc does not renegotiate or send RFC 4733. */
  function weriftBrowser(codecs: { mimeType: string; payloadType: number; parameters?: string }[]) {
    const pc = new RTCPeerConnection({
      codecs: { audio: codecs.map((codec) => new RTCRtpCodecParameters({ clockRate: 8000, channels: 1, ...codec })), video: [] },
      headerExtensions: { audio: [], video: [] },
      iceAdditionalHostAddresses: ['127.0.0.1'],
      iceUseIpv6: false,
    });
    cleanup.push(() => void pc.close());
    const transceiver = pc.addTransceiver('audio', { direction: 'sendrecv' });
    const received: RtpPacket[] = [];
    pc.onTrack.subscribe((remote) => remote.onReceiveRtp.subscribe((rtp) => received.push(rtp)));
    const offerOf = async (iceRestart = false): Promise<string> => {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart }));
      if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((state) => state === 'complete');
      return pc.localDescription!.sdp;
    };
    return { pc, transceiver, received, offerOf };
  }

  test('browser re-offers (a werift peer in-process): hold keeps the ICE credentials, an ICE restart gets new ones', async () => {
    const { pc: browser, transceiver, received, offerOf } = weriftBrowser([{ mimeType: 'audio/PCMU', payloadType: 0 }]);
    const phone = track(await TonePhone.open());
    let browserSequence = 1;
    const browserTimer = setInterval(() => {
      const header = new RtpHeader({ payloadType: 0, sequenceNumber: browserSequence++, timestamp: browserSequence * 160, ssrc: 1 });
      void transceiver.sender.sendRtp(new RtpPacket(header, Buffer.alloc(160, 0xff)));
    }, 20);
    cleanup.push(() => clearInterval(browserTimer));
    const session = gateway.open('browser-reoffers');
    const audio = (sdp: string) => sdpTransform.parse(sdp).media[0]!;

    const offerForPhone = await session.offer('a', await offerOf(), 'rtp');
    const phonePort = audio(offerForPhone).port;
    const first = await session.answer('b', phone.sdp(0));
    await browser.setRemoteDescription({ type: 'answer', sdp: first });
    phone.play('9', 0, phonePort);
    await until(() => received.length >= 3 && phone.heard.length >= 3 * 160);

    // Hold from the browser: a sendonly re-offer, same ports, same ICE credentials and DTLS.
    transceiver.setDirection('sendonly');
    const holdForPhone = await session.offer('a', await offerOf(), 'rtp');
    assert.equal(audio(holdForPhone).direction, 'sendonly');
    assert.equal(audio(holdForPhone).port, phonePort);
    const held = await session.answer('b', phone.sdp(0).replace('a=sendrecv', 'a=recvonly'));
    assert.equal(audio(held).direction, 'recvonly');
    assert.equal(audio(held).iceUfrag, audio(first).iceUfrag);
    assert.equal(audio(held).fingerprint!.hash, audio(first).fingerprint!.hash);
    await browser.setRemoteDescription({ type: 'answer', sdp: held });
    const droppedBefore = session.stats().b!.dropped;
    await until(() => session.stats().b!.dropped > droppedBefore + 2); // the phone's audio is held back

    // Resume with an ICE restart: new credentials from the gateway, the same DTLS, media again.
    transceiver.setDirection('sendrecv');
    const restartOffer = await offerOf(true);
    const resumeForPhone = await session.offer('a', restartOffer, 'rtp');
    assert.equal(audio(resumeForPhone).port, phonePort);
    const resumed = await session.answer('b', phone.sdp(0));
    assert.notEqual(audio(resumed).iceUfrag, audio(first).iceUfrag);
    assert.equal(audio(resumed).fingerprint!.hash, audio(first).fingerprint!.hash);
    await browser.setRemoteDescription({ type: 'answer', sdp: resumed });
    // werift as the controlling side does not run its checks again by itself after a restart
    // (browsers do); start them as a browser would.
    void browser.iceTransports[0]!.start().catch(() => undefined);
    const receivedBefore = received.length;
    const heardBefore = phone.heard.length;
    await until(() => received.length >= receivedBefore + 3 && phone.heard.length >= heardBefore + 3 * 160);
    clearInterval(browserTimer);
    await session.close();
    end();
  });

  test('RFC 4733 events between the browser (werift) and the phone, payload types renumbered', async () => {
    const { pc: browser, transceiver, received, offerOf } = weriftBrowser([
      { mimeType: 'audio/PCMU', payloadType: 0 },
      { mimeType: 'audio/telephone-event', payloadType: 101, parameters: '0-16' },
    ]);
    const phone = track(await TonePhone.open());
    const session = gateway.open('browser-events');
    const offerForPhone = sdpTransform.parse(await session.offer('a', await offerOf(), 'rtp'));
    assert.deepEqual(offerForPhone.media[0]!.rtp.map((r) => r.codec), ['PCMU', 'telephone-event']);
    const phoneSdp = phone.sdp(0).replace(' RTP/AVP 0', ' RTP/AVP 0 96').replace('a=sendrecv', 'a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=sendrecv');
    const answer = await session.answer('b', phoneSdp);
    assert.deepEqual(sdpTransform.parse(answer).media[0]!.rtp.map((r) => r.codec), ['PCMU', 'telephone-event']);
    await browser.setRemoteDescription({ type: 'answer', sdp: answer });
    await browser.connectionStateChange.watch((state) => state === 'connected');
    const phonePort = offerForPhone.media[0]!.port;

    // The browser's digit 7 (payload type 101) reaches the phone as 96; the sender's sendRtp would
    // force the audio codec's payload type, so the event goes through its DTLS transport.
    let sequence = 1;
    const events: Buffer[] = [];
    phone.socket.on('message', (packet) => (parseRtp(packet)?.payloadType === 96 ? events.push(packet) : undefined));
    const browserTimer = setInterval(() => {
      const header = new RtpHeader({ payloadType: 101, sequenceNumber: sequence++, timestamp: 8000, ssrc: transceiver.sender.ssrc });
      void transceiver.sender.dtlsTransport.sendRtp(Buffer.from(buildTelephoneEvent({ event: 7, end: false, volume: 10, duration: 800 })), header);
    }, 20);
    cleanup.push(() => clearInterval(browserTimer));
    await until(() => events.length >= 1);
    clearInterval(browserTimer);
    assert.equal(parseTelephoneEvent(events[0]!.subarray(12))!.event, 7);

    // The phone's digit # (96, after the phone has sent once so the gateway latched) reaches the browser as 101.
    const phoneTimer = setInterval(() => {
      const packet = Buffer.alloc(16);
      writeRtpHeader(packet, { payloadType: 96, sequence: sequence++, timestamp: 16000, ssrc: 0x5eed });
      packet.set(buildTelephoneEvent({ event: 11, end: true, volume: 10, duration: 800 }), 12);
      phone.socket.send(packet, phonePort, '127.0.0.1');
    }, 20);
    cleanup.push(() => clearInterval(phoneTimer));
    await until(() => received.some((rtp) => rtp.header.payloadType === 101));
    clearInterval(phoneTimer);
    const event = received.find((rtp) => rtp.header.payloadType === 101)!;
    assert.equal(parseTelephoneEvent(event.payload)!.event, 11);
    await session.close();
    end();
  });

  test('the phone holds and resumes a call to a browser (werift answering): the gateway re-offers with the same ICE and DTLS', async () => {
    const browser = new RTCPeerConnection({
      codecs: { audio: [new RTCRtpCodecParameters({ mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, payloadType: 0 })], video: [] },
      headerExtensions: { audio: [], video: [] },
      iceAdditionalHostAddresses: ['127.0.0.1'],
      iceUseIpv6: false,
    });
    cleanup.push(() => void browser.close());
    const received: RtpPacket[] = [];
    browser.onTrack.subscribe((remote) => remote.onReceiveRtp.subscribe((rtp) => received.push(rtp)));
    const answerTo = async (offer: string): Promise<string> => {
      await browser.setRemoteDescription({ type: 'offer', sdp: offer });
      // A browser with a microphone: werift alone would answer recvonly (it has no track to send).
      browser.getTransceivers()[0]!.setDirection('sendrecv');
      await browser.setLocalDescription(await browser.createAnswer());
      if (browser.iceGatheringState !== 'complete') await browser.iceGatheringStateChange.watch((state) => state === 'complete');
      return browser.localDescription!.sdp;
    };
    const phone = track(await TonePhone.open());
    const session = gateway.open('phone-holds');
    const audio = (sdp: string) => sdpTransform.parse(sdp).media[0]!;

    const offer = await session.offer('a', phone.sdp(0), 'webrtc');
    const answerForPhone = await session.answer('b', await answerTo(offer));
    const gatewayPort = audio(answerForPhone).port;
    phone.play('9', 0, gatewayPort);
    let sequence = 1;
    const browserTimer = setInterval(() => {
      const header = new RtpHeader({ payloadType: 0, sequenceNumber: sequence++, timestamp: sequence * 160, ssrc: 1 });
      void browser.getTransceivers()[0]!.sender.sendRtp(new RtpPacket(header, Buffer.alloc(160, 0xff)));
    }, 20);
    cleanup.push(() => clearInterval(browserTimer));
    await until(() => received.length >= 3 && phone.heard.length >= 3 * 160);

    // Hold: the phone's sendonly re-offer becomes a sendonly re-offer to the browser, same ICE and DTLS.
    const holdOffer = await session.offer('a', phone.sdp(0).replace('a=sendrecv', 'a=sendonly'), 'webrtc');
    assert.equal(audio(holdOffer).direction, 'sendonly');
    assert.equal(audio(holdOffer).iceUfrag, audio(offer).iceUfrag);
    assert.equal(audio(holdOffer).fingerprint!.hash, audio(offer).fingerprint!.hash);
    const heldForPhone = await session.answer('b', await answerTo(holdOffer));
    assert.equal(audio(heldForPhone).direction, 'recvonly');
    assert.equal(audio(heldForPhone).port, gatewayPort);
    const droppedBefore = session.stats().b!.dropped;
    await until(() => session.stats().b!.dropped > droppedBefore + 2); // the browser's audio is held back
    const receivedBefore = received.length;
    await until(() => received.length >= receivedBefore + 3); // the phone's music on hold still plays

    // Resume.
    const resumeOffer = await session.offer('a', phone.sdp(0), 'webrtc');
    assert.equal(audio(resumeOffer).direction, 'sendrecv');
    await session.answer('b', await answerTo(resumeOffer));
    const heardBefore = phone.heard.length;
    await until(() => phone.heard.length >= heardBefore + 3 * 160);
    await session.close();
    end();
  });
});
