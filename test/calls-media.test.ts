/**
 * Calls whose media the server anchors (src/services/calls/media-bridge.ts over the media
 * gateway, src/media/gateway.ts): a WebRTC browser — Debian's python3-aiortc behind a XIMSS
 * session, as a browser client drives it — and Debian's baresip, a plain RTP phone registered
 * over UDP, call each other. Neither could talk to the other directly (ICE and DTLS-SRTP on one
 * side, RTP/AVP on the other); through the server each sees an SDP of its own kind and the
 * audio is checked end to end: each side plays a DTMF digit's tones and the other's digit is
 * detected in what it received. Also: an offer the gateway cannot bridge is refused with 488
 * before the phone rings, and a plain caller is not anchored (its SDP reaches the callee).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { anchoring } from '../src/services/calls/media-bridge.js';
import { sdpFromXml, sdpToText } from '../src/ximss/sdp-xml.js';
import { ensureAiortc, startAiortcPeer } from './fixtures/aiortc.js';
import { Baresip, ensureBaresip } from './fixtures/baresip.js';
import { dtmfBlockCounts, dtmfSamples, readWav, writeWav } from './fixtures/wav.js';
import { freeSipPort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const availability = await ensureBaresip();
const skip = availability.available ? false : availability.reason;

/** Goertzel blocks (205 samples) in a second of 8 kHz audio. */
const BLOCKS_PER_SECOND = 8000 / 205;

/** Waits (by event-loop turns) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(20);
}

describe('which calls are anchored', () => {
  test('webrtc: only a WebRTC side with a plain one; always: every call whose media is known; never: none', () => {
    assert.deepEqual(anchoring('webrtc', 'webrtc', 'rtp'), { a: 'webrtc', b: 'rtp' });
    assert.deepEqual(anchoring('webrtc', 'rtp', 'webrtc'), { a: 'rtp', b: 'webrtc' });
    assert.equal(anchoring('webrtc', 'rtp', 'rtp'), undefined);
    assert.equal(anchoring('webrtc', 'webrtc', 'webrtc'), undefined);
    assert.equal(anchoring('webrtc', undefined, 'rtp'), undefined);
    assert.deepEqual(anchoring('always', 'rtp', 'rtp'), { a: 'rtp', b: 'rtp' });
    assert.deepEqual(anchoring('always', undefined, 'webrtc'), { a: 'webrtc', b: 'webrtc' });
    assert.equal(anchoring('always', undefined, undefined), undefined);
    assert.equal(anchoring('never', 'webrtc', 'rtp'), undefined);
  });
});

// A safety net for a hung peer, not a timing assertion.
describe('a WebRTC browser and a SIP phone through the media gateway', { skip, timeout: 240_000 }, () => {
  let server: TestServer;
  let dir: string;
  let phone: Baresip;
  let bob: string;
  let alice: string;
  let client: XimssClient;

  before(async () => {
    await ensureAiortc();
    const sipPort = await freeSipPort();
    // A range of its own for this process's media, as media-gateway.test.ts makes them (other test files run beside it).
    const min = 20000 + (process.pid % 110) * 112 + 64;
    server = await startTestServer({ ports: { sip: sipPort }, sip: { mediaPorts: { min, max: min + 47 } } });
    dir = mkdtempSync(join(tmpdir(), 'calls-media-'));
    bob = await server.newAccount('phone', { password: 'phone-secret' });
    alice = await server.newAccount('browser');
    client = (await server.login(alice, 'secret')).client;
    // A browser client binds with the XML presentation, saying it speaks WebRTC (INTEROP.md).
    await ok(client, `<signalBind><sdp origUser="-" sessionID="1" sessionVersion="1" origIP="[127.0.0.1]"><attr name="webrtc">yes</attr></sdp></signalBind>`);
    const [user, domain] = bob.split('@') as [string, string];
    phone = await Baresip.start({
      name: 'bob',
      account: { user, password: 'phone-secret', domain, registrar: `127.0.0.1:${sipPort}` },
      audioIn: writeWav(join(dir, 'nine.wav'), dtmfSamples('9', 2)),
      recordTo: join(dir, 'bob-heard.wav'),
    });
    await phone.registered();
  });

  after(async () => {
    await phone?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const bridges = (): number => server.services.calls.media?.open.size ?? 0;

  test('the browser calls the phone: the phone gets plain RTP, the browser ICE-lite and DTLS; audio both ways', async () => {
    const browser = await startAiortcPeer({ mode: 'offer', digit: '3', codecs: ['PCMU'], seconds: 1.5, timeout: 40 });
    try {
      const offer = await browser.nextSdp();
      const mark = phone.events.count;
      const started = await ok(client, `<callStart callLeg="w1" peer="${bob}" media="WebRTC"><sdpText>${offer}</sdpText></callStart>`);
      assert.equal(started.response.attrs.media, 'WebRTC');
      await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 15_000, mark);
      assert.equal(bridges(), 1, 'the call is anchored');
      await phone.answer();
      const connected = await client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'w1', 15_000);
      const answer = sdpToText(sdpFromXml(connected.element('sdp')!));
      assert.match(answer, /^a=fingerprint:/m, 'the browser gets a DTLS answer');
      assert.match(answer, /^a=ice-lite/m, 'from an ICE-lite server');
      assert.match(answer, /^c=IN IP4 127\.0\.0\.1/m);
      browser.give(answer);
      await ok(client, '<callUpdateAccept callLeg="w1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 15_000, mark);
      const result = await browser.result;
      await sleep(1000);
      const closedFrom = phone.events.count;
      await ok(client, '<callKill callLeg="w1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 15_000, closedFrom);
      await until(() => bridges() === 0);
      const heardByBrowser = dtmfBlockCounts(result.samples);
      assert.ok((heardByBrowser.get('9') ?? 0) >= 0.5 * BLOCKS_PER_SECOND, `the browser heard ${JSON.stringify([...heardByBrowser])}`);
      const heardByPhone = dtmfBlockCounts(readWav(await phone.recording()).samples);
      assert.ok((heardByPhone.get('3') ?? 0) >= 0.5 * BLOCKS_PER_SECOND, `the phone heard ${JSON.stringify([...heardByPhone])}`);
    } finally {
      browser.kill();
    }
  });

  test('the phone calls the browser: the browser gets a WebRTC offer, answers it, and audio passes both ways', async () => {
    const browser = await startAiortcPeer({ mode: 'answer', digit: '7', codecs: ['PCMU'], seconds: 1.5, timeout: 40 });
    try {
      const mark = phone.events.count;
      await phone.dial(`sip:${alice}`);
      const incoming = await client.takeAsync('callIncoming', () => true, 15_000);
      const leg = incoming.attrs.callLeg!;
      const offer = sdpToText(sdpFromXml(incoming.element('sdp')!));
      assert.match(offer, /^m=audio \d+ UDP\/TLS\/RTP\/SAVPF /m, 'a WebRTC offer');
      assert.match(offer, /^a=fingerprint:/m);
      browser.give(offer);
      const answer = await browser.nextSdp();
      await ok(client, `<callProvision callLeg="${leg}"/>`);
      await phone.events.waitFor((e) => e.type === 'CALL_RINGING', 15_000, mark);
      await ok(client, `<callAccept callLeg="${leg}" media="WebRTC"><sdpText>${answer}</sdpText></callAccept>`);
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 15_000, mark);
      const result = await browser.result;
      await sleep(1000);
      await phone.hangup();
      await client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === leg, 15_000);
      await ok(client, `<callKill callLeg="${leg}"/>`);
      await until(() => bridges() === 0);
      const heardByBrowser = dtmfBlockCounts(result.samples);
      assert.ok((heardByBrowser.get('9') ?? 0) >= 0.5 * BLOCKS_PER_SECOND, `the browser heard ${JSON.stringify([...heardByBrowser])}`);
      const heardByPhone = dtmfBlockCounts(readWav(await phone.recording()).samples);
      assert.ok((heardByPhone.get('7') ?? 0) >= 0.5 * BLOCKS_PER_SECOND, `the phone heard ${JSON.stringify([...heardByPhone])}`);
    } finally {
      browser.kill();
    }
  });

  test('DTMF on an anchored call: the session\'s digits reach the phone as RFC 4733 events, the phone\'s reach the session as callDTMF', async () => {
    // aiortc offers no telephone-event: the gateway takes and sends the phone's events itself.
    const browser = await startAiortcPeer({ mode: 'offer', digit: '1', codecs: ['PCMU'], seconds: 3, timeout: 40 });
    browser.result.catch(() => undefined); // its recording is not looked at here; it is killed at the end
    try {
      const offer = await browser.nextSdp();
      assert.doesNotMatch(offer, /telephone-event/);
      const mark = phone.events.count;
      await ok(client, `<callStart callLeg="d1" peer="${bob}" media="WebRTC"><sdpText>${offer}</sdpText></callStart>`);
      await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 15_000, mark);
      await phone.answer();
      const connected = await client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'd1', 15_000);
      browser.give(sdpToText(sdpFromXml(connected.element('sdp')!)));
      await ok(client, '<callUpdateAccept callLeg="d1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 15_000, mark);
      // callSendDTMF takes the digit's RFC 4733 code (11 is #).
      await ok(client, '<callSendDTMF callLeg="d1">5</callSendDTMF>');
      await client.takeAsync('callOpCompleted', (m) => m.attrs.callLeg === 'd1', 15_000);
      const five = await phone.events.waitFor((e) => e.type === 'CALL_DTMF_START', 15_000, mark);
      assert.equal(five.param, '5');
      await ok(client, '<callSendDTMF callLeg="d1">11</callSendDTMF>');
      await client.takeAsync('callOpCompleted', (m) => m.attrs.callLeg === 'd1', 15_000);
      const hash = await phone.events.waitFor((e) => e.type === 'CALL_DTMF_START' && e !== five, 15_000, mark);
      assert.equal(hash.param, '#');
      await phone.sendDtmf('8');
      const heard = await client.takeAsync('callDTMF', (m) => m.attrs.callLeg === 'd1', 15_000);
      assert.equal(heard.text(), '8');
      const closedFrom = phone.events.count;
      await ok(client, '<callKill callLeg="d1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 15_000, closedFrom);
      await until(() => bridges() === 0);
    } finally {
      browser.kill();
    }
  });

  test('hold and resume on an anchored call: the browser\'s re-offers reach the phone as plain re-INVITEs', async () => {
    const browser = await startAiortcPeer({ mode: 'offer', digit: '2', codecs: ['PCMU'], seconds: 3, timeout: 40 });
    browser.result.catch(() => undefined); // its recording is not looked at here; it is killed at the end
    try {
      const offer = await browser.nextSdp();
      const mark = phone.events.count;
      await ok(client, `<callStart callLeg="h1" peer="${bob}" media="WebRTC"><sdpText>${offer}</sdpText></callStart>`);
      await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 15_000, mark);
      await phone.answer();
      const connected = await client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'h1', 15_000);
      browser.give(sdpToText(sdpFromXml(connected.element('sdp')!)));
      await ok(client, '<callUpdateAccept callLeg="h1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 15_000, mark);
      // A browser holds with its own description again, sendonly and one version later (RFC 3264 8.4).
      const version = (n: number): string => offer.replace(/^(o=\S+ \S+ )(\d+)/m, (_all, head: string, v: string) => `${head}${Number(v) + n}`);
      const hold = version(1).replace(/^a=sendrecv/m, 'a=sendonly');
      await ok(client, `<callUpdate callLeg="h1" media="WebRTC"><sdpText>${hold}</sdpText></callUpdate>`);
      const held = await client.takeAsync('callUpdated', (m) => m.attrs.callLeg === 'h1', 15_000);
      assert.equal(held.attrs.signalCode, undefined, held.toString());
      const heldSdp = sdpToText(sdpFromXml(held.element('sdp')!));
      assert.match(heldSdp, /^a=(recvonly|inactive)/m, 'the phone no longer sends');
      assert.match(heldSdp, /^a=fingerprint:/m, 'still a WebRTC answer');
      await ok(client, `<callUpdate callLeg="h1" media="WebRTC"><sdpText>${version(2)}</sdpText></callUpdate>`);
      const resumed = await client.takeAsync('callUpdated', (m) => m.attrs.callLeg === 'h1', 15_000);
      assert.equal(resumed.attrs.signalCode, undefined, resumed.toString());
      assert.match(sdpToText(sdpFromXml(resumed.element('sdp')!)), /^a=sendrecv/m);
      const closedFrom = phone.events.count;
      await ok(client, '<callKill callLeg="h1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 15_000, closedFrom);
      await until(() => bridges() === 0);
    } finally {
      browser.kill();
    }
  });

  test('a WebRTC offer without G.711 is refused with 488 before the phone rings', async () => {
    const mark = phone.events.count;
    const opusOnly = [
      'v=0',
      'o=- 1 1 IN IP4 127.0.0.1',
      's=-',
      't=0 0',
      'a=fingerprint:sha-256 ' + Array.from({ length: 32 }, () => 'AB').join(':'),
      'a=ice-ufrag:abcd',
      'a=ice-pwd:abcdefghijklmnopqrstuvwx',
      'm=audio 9 UDP/TLS/RTP/SAVPF 111',
      'c=IN IP4 0.0.0.0',
      'a=rtpmap:111 opus/48000/2',
      'a=setup:actpass',
      'a=rtcp-mux',
      'a=sendrecv',
      '',
    ].join('\r\n');
    await ok(client, `<callStart callLeg="w3" peer="${bob}" media="WebRTC"><sdpText>${opusOnly}</sdpText></callStart>`);
    const ended = await client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 'w3', 15_000);
    assert.equal(ended.attrs.signalCode, '488', ended.toString());
    await ok(client, '<callKill callLeg="w3"/>');
    assert.equal(phone.events.all.slice(mark).filter((e) => e.type === 'CALL_INCOMING').length, 0, 'the phone never rang');
    await until(() => bridges() === 0);
  });

  test('a plain RTP caller reaches the phone directly: its own SDP, no media through the server', async () => {
    const carol = await server.newAccount('desk');
    const desk = (await server.login(carol, 'secret')).client;
    await ok(desk, `<signalBind><sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n</sdpText></signalBind>`);
    const plain = ['v=0', 'o=- 7 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 49170 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', ''].join('\r\n');
    const mark = phone.events.count;
    await ok(desk, `<callStart callLeg="p1" peer="${bob}"><sdpText>${plain}</sdpText></callStart>`);
    await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 15_000, mark);
    assert.equal(bridges(), 0, 'not anchored');
    await ok(desk, '<callKill callLeg="p1"/>');
    await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 15_000, mark);
  });
});
