/**
 * Calls whose media the server anchors (src/services/calls/media-bridge.ts over the media
 * gateway, src/media/gateway.ts): a WebRTC browser — Debian's python3-aiortc behind a XIMSS
 * session, as a browser client drives it — and Debian's baresip, a plain RTP phone registered
 * over UDP, call each other. Neither could talk to the other directly (ICE and DTLS-SRTP on one
 * side, RTP/AVP on the other); through the server each sees an SDP of its own kind and the
 * audio is checked end to end: each side plays a DTMF digit's tones and the other's digit is
 * detected in what it received. Also: an offer the gateway cannot bridge is refused with 488
 * before the phone rings, and a plain caller is not anchored (its SDP reaches the callee); a phone
 * behind NAT (test/fixtures/sip-phone.ts naming a private address) is anchored both ways, its
 * dialogs kept on the address its packets come from; a silent anchored call is hung up, a held
 * one kept.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { anchoring } from '../src/services/calls/media-bridge.js';
import { behindNat } from '../src/services/calls/nat.js';
import { sdpFromXml, sdpToText } from '../src/ximss/sdp-xml.js';
import { parseRtp, writeRtpHeader } from '../src/media/rtp.js';
import { ensureAiortc, startAiortcPeer, type AiortcPeer } from './fixtures/aiortc.js';
import { Baresip, ensureBaresip } from './fixtures/baresip.js';
import { SipPhone } from './fixtures/sip-phone.js';
import { dtmfBlockCounts, readWav } from './fixtures/wav.js';
import { freeSipPort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const availability = await ensureBaresip();
const skip = availability.available ? false : availability.reason;

/** Goertzel blocks (205 samples) in a second of 8 kHz audio. */
const BLOCKS_PER_SECOND = 8000 / 205;

/** Asserts that `who` heard `digit` for at least half a second's worth of Goertzel blocks. */
function assertHeard(samples: Int16Array, digit: string, who: string): void {
  const counts = dtmfBlockCounts(samples);
  assert.ok((counts.get(digit) ?? 0) >= 0.5 * BLOCKS_PER_SECOND, `${who} heard ${JSON.stringify([...counts])}`);
}

/** Waits (by event-loop turns) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(20);
}

describe('which calls are anchored', () => {
  test('auto: a WebRTC side with a plain one, or a side behind NAT; always: every call whose media is known; never: none', () => {
    assert.deepEqual(anchoring('auto', { flavour: 'webrtc' }, { flavour: 'rtp' }), { a: 'webrtc', b: 'rtp' });
    assert.deepEqual(anchoring('auto', { flavour: 'rtp' }, { flavour: 'webrtc' }), { a: 'rtp', b: 'webrtc' });
    assert.equal(anchoring('auto', { flavour: 'rtp' }, { flavour: 'rtp' }), undefined);
    assert.equal(anchoring('auto', { flavour: 'webrtc' }, { flavour: 'webrtc' }), undefined);
    assert.deepEqual(anchoring('auto', { flavour: 'rtp' }, { flavour: 'rtp', nat: true }), { a: 'rtp', b: 'rtp' });
    assert.deepEqual(anchoring('auto', { flavour: 'rtp', nat: true }, {}), { a: 'rtp', b: 'rtp' });
    assert.deepEqual(anchoring('auto', {}, { flavour: 'rtp', nat: true }), { a: 'rtp', b: 'rtp' }, 'a caller whose media is not known yet (no offer) takes the callee\'s');
    assert.deepEqual(anchoring('always', { flavour: 'rtp' }, { flavour: 'rtp' }), { a: 'rtp', b: 'rtp' });
    assert.deepEqual(anchoring('always', {}, { flavour: 'webrtc' }), { a: 'webrtc', b: 'webrtc' });
    assert.equal(anchoring('always', {}, {}), undefined);
    assert.equal(anchoring('never', { flavour: 'webrtc' }, { flavour: 'rtp', nat: true }), undefined);
  });

  test('behind NAT: a private Contact or c= address the request did not come from', () => {
    assert.equal(behindNat('sip:bob@192.168.1.20:5060;transport=udp', '203.0.113.7'), true);
    assert.equal(behindNat('sip:bob@[fd00::20]:5060', '2001:db8::1'), true);
    assert.equal(behindNat('10.0.0.5', '198.51.100.2'), true);
    assert.equal(behindNat('sip:bob@192.168.1.20', '192.168.1.20'), false, 'a private network the server is on');
    assert.equal(behindNat('sip:bob@203.0.113.7:5060', '198.51.100.2'), false, 'a public address elsewhere is not NAT');
    assert.equal(behindNat('sip:bob@phone.example.com', '198.51.100.2'), false);
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
    phone = await Baresip.registered({ name: 'bob', aor: bob, password: 'phone-secret', registrar: `127.0.0.1:${sipPort}`, digit: '9', dir });
  });

  after(async () => {
    await phone?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const bridges = (): number => server.services.calls.media?.open.size ?? 0;

  /**
   * The browser (aiortc, playing `digit`) calls the phone through the session's `callLeg`, the
   * phone answers, and the browser takes the answer: the call is up. Returns the browser, its
   * offer, the answer it got, and where the phone's events of this call start.
   */
  async function browserCallsPhone(callLeg: string, digit: string, seconds: number): Promise<{ browser: AiortcPeer; offer: string; answer: string; mark: number }> {
    const browser = await startAiortcPeer({ mode: 'offer', digit, codecs: ['PCMU'], seconds, timeout: 40 });
    try {
      const offer = await browser.nextSdp();
      const mark = phone.events.count;
      const started = await ok(client, `<callStart callLeg="${callLeg}" peer="${bob}" media="WebRTC"><sdpText>${offer}</sdpText></callStart>`);
      assert.equal(started.response.attrs.media, 'WebRTC');
      await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 15_000, mark);
      assert.equal(bridges(), 1, 'the call is anchored');
      await phone.answer();
      const connected = await client.takeAsync('callConnected', (m) => m.attrs.callLeg === callLeg, 15_000);
      const answer = sdpToText(sdpFromXml(connected.element('sdp')!));
      browser.give(answer);
      await ok(client, `<callUpdateAccept callLeg="${callLeg}"/>`);
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 15_000, mark);
      return { browser, offer, answer, mark };
    } catch (err) {
      browser.kill();
      throw err;
    }
  }

  /** The session hangs up; the phone and the gateway let the call go. */
  async function sessionHangsUp(callLeg: string): Promise<void> {
    const closedFrom = phone.events.count;
    await ok(client, `<callKill callLeg="${callLeg}"/>`);
    await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 15_000, closedFrom);
    await until(() => bridges() === 0);
  }

  test('the browser calls the phone: the phone gets plain RTP, the browser ICE-lite and DTLS; audio both ways', async () => {
    const { browser, answer } = await browserCallsPhone('w1', '3', 1.5);
    try {
      assert.match(answer, /^a=fingerprint:/m, 'the browser gets a DTLS answer');
      assert.match(answer, /^a=ice-lite/m, 'from an ICE-lite server');
      assert.match(answer, /^c=IN IP4 127\.0\.0\.1/m);
      const result = await browser.result;
      await sleep(1000);
      await sessionHangsUp('w1');
      assertHeard(result.samples, '9', 'the browser');
      assertHeard(readWav(await phone.recording()).samples, '3', 'the phone');
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
      assertHeard(result.samples, '9', 'the browser');
      assertHeard(readWav(await phone.recording()).samples, '7', 'the phone');
    } finally {
      browser.kill();
    }
  });

  test('DTMF on an anchored call: the session\'s digits reach the phone as RFC 4733 events, the phone\'s reach the session as callDTMF', async () => {
    // aiortc offers no telephone-event: the gateway takes and sends the phone's events itself.
    const { browser, offer, mark } = await browserCallsPhone('d1', '1', 3);
    browser.result.catch(() => undefined); // its recording is not looked at here; it is killed at the end
    try {
      assert.doesNotMatch(offer, /telephone-event/);
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
      await sessionHangsUp('d1');
    } finally {
      browser.kill();
    }
  });

  test('hold and resume on an anchored call: the browser\'s re-offers reach the phone as plain re-INVITEs', async () => {
    const { browser, offer } = await browserCallsPhone('h1', '2', 3);
    browser.result.catch(() => undefined); // its recording is not looked at here; it is killed at the end
    try {
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
      await sessionHangsUp('h1');
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

/** An RTP packet of 20 ms of μ-law silence. */
function rtpPacket(sequence: number): Buffer {
  const packet = Buffer.alloc(12 + 160, 0xff);
  writeRtpHeader(packet, { payloadType: 0, sequence, timestamp: sequence * 160, ssrc: 0x5eed });
  return packet;
}

/** The private address a phone behind NAT names in its Contact and SDP (it sends from 127.0.0.1). */
const PRIVATE = '192.168.77.20';
/** The port its SDP names on that address (nothing there: only where its packets come from reaches it). */
const PRIVATE_MEDIA_PORT = 4000;

/** A plain RTP offer of a XIMSS session on `port`. */
function plainOffer(port: number): string {
  return ['v=0', 'o=- 9 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', ''].join('\r\n');
}

const PLAIN_BIND = '<signalBind><sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n</sdpText></signalBind>';

describe('a phone behind NAT', { timeout: 60_000 }, () => {
  let server: TestServer;
  let sipPort: number;

  before(async () => {
    sipPort = await freeSipPort();
    const min = 20000 + (process.pid % 110) * 112 + 32;
    server = await startTestServer({ ports: { sip: sipPort }, sip: { mediaPorts: { min, max: min + 31 } }, media: { sessionsPerAccount: 1 } });
  });
  after(() => server?.stop());

  test('its calls are anchored: it is sent the server\'s address, and media reaches it where its packets come from', async () => {
    const phoneAccount = await server.newAccount('natted', { password: 'nat-secret' });
    const phone = await SipPhone.open(sipPort, phoneAccount, 'nat-secret', { host: PRIVATE });
    const phoneMedia = dgram.createSocket('udp4');
    const callerMedia = dgram.createSocket('udp4');
    await Promise.all([phoneMedia, callerMedia].map((socket) => new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))));
    try {
      await phone.register();
      const deskAccount = await server.newAccount('desk');
      const caller = (await server.login(deskAccount, 'secret')).client;
      await ok(caller, PLAIN_BIND);
      const callerPort = callerMedia.address().port;
      const offer = plainOffer(callerPort);
      await ok(caller, `<callStart callLeg="n1" peer="${phoneAccount}"><sdpText>${offer}</sdpText></callStart>`);
      const ringing = await phone.ring();
      const offered = ringing.invite.body.toString();
      const gatewayForPhone = Number(/^m=audio (\d+)/m.exec(offered)?.[1]);
      assert.match(offered, /^c=IN IP4 127\.0\.0\.1/m);
      assert.notEqual(gatewayForPhone, callerPort, 'the phone is offered the gateway, not the caller');
      assert.equal(server.services.calls.media?.open.size, 1);
      // Its ACK reaches it where its packets come from, not at its private Contact.
      await ringing.accept(PRIVATE_MEDIA_PORT);
      const connected = await caller.takeAsync('callConnected', (m) => m.attrs.callLeg === 'n1', 10_000);
      const answer = connected.element('sdpText')?.text() ?? '';
      assert.doesNotMatch(answer, new RegExp(PRIVATE.replaceAll('.', '\\.')), 'the caller never sees the private address');
      const gatewayForCaller = Number(/^m=audio (\d+)/m.exec(answer)?.[1]);
      // The phone's first packet opens its NAT: the gateway latches to where it came from.
      const heardByPhone: Buffer[] = [];
      const heardByCaller: Buffer[] = [];
      phoneMedia.on('message', (packet) => heardByPhone.push(packet));
      callerMedia.on('message', (packet) => heardByCaller.push(packet));
      for (let i = 0; i < 100 && (heardByPhone.length === 0 || heardByCaller.length === 0); i++) {
        phoneMedia.send(rtpPacket(100 + i), gatewayForPhone, '127.0.0.1');
        callerMedia.send(rtpPacket(500 + i), gatewayForCaller, '127.0.0.1');
        await sleep(20);
      }
      assert.ok(heardByCaller.length > 0, 'the caller hears the phone');
      assert.ok(heardByPhone.length > 0, 'the phone behind NAT hears the caller, at the port it sends from');
      assert.equal(parseRtp(heardByPhone[0]!)!.payloadType, 0);
      // media.sessionsPerAccount is 1 here: a second anchored call of the same accounts is refused before it rings.
      await ok(caller, `<callStart callLeg="n2" peer="${phoneAccount}"><sdpText>${offer}</sdpText></callStart>`);
      const refused = await caller.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 'n2', 10_000);
      assert.equal(refused.attrs.signalCode, '503', refused.toString());
      await ok(caller, '<callKill callLeg="n2"/>');
      await ok(caller, '<callKill callLeg="n1"/>');
      await phone.nextRequest('BYE', ringing.dialog);
      await until(() => (server.services.calls.media?.open.size ?? 0) === 0);

      // The phone calls the session: the session is offered the server's address, and the BYE
      // when the session hangs up reaches the phone where its INVITE came from.
      const calling = phone.invite(`sip:${deskAccount}`, `<sip:${deskAccount}>`, PRIVATE_MEDIA_PORT, ['Alert-Info: <http://www.notused.invalid>;info=alert-autoanswer;delay=0']);
      const incoming = await caller.takeAsync('callIncoming', () => true, 10_000);
      const offerHere = incoming.element('sdpText')?.text() ?? '';
      // The INVITE's Alert-Info comes as suppl data (INTEROP.md: clients auto-answer on it).
      assert.equal(incoming.element('suppl')?.elements().find((e) => e.attrs.key === 'Alert-Info')?.text(), '<http://www.notused.invalid>;info=alert-autoanswer;delay=0');
      assert.doesNotMatch(offerHere, new RegExp(PRIVATE.replaceAll('.', '\\.')));
      assert.match(offerHere, /^c=IN IP4 127\.0\.0\.1/m);
      await ok(caller, `<callAccept callLeg="${incoming.attrs.callLeg}"><sdpText>${offer}</sdpText></callAccept>`);
      const { response, dialog } = await calling;
      assert.equal(response.status, 200);
      const answerToPhone = response.body.toString();
      assert.match(answerToPhone, /^c=IN IP4 127\.0\.0\.1/m);
      assert.doesNotMatch(answerToPhone, new RegExp(`m=audio ${callerPort} `), 'the phone is answered with the gateway, not the session');
      assert.equal(server.services.calls.media?.open.size, 1);
      await ok(caller, `<callKill callLeg="${incoming.attrs.callLeg}"/>`);
      await phone.nextRequest('BYE', dialog);
      await until(() => (server.services.calls.media?.open.size ?? 0) === 0);
    } finally {
      phone.close();
      phoneMedia.close();
      callerMedia.close();
    }
  });
});

describe('an anchored call without media', { timeout: 60_000 }, () => {
  let server: TestServer;
  let sipPort: number;

  before(async () => {
    sipPort = await freeSipPort();
    const min = 20000 + (process.pid % 110) * 112;
    server = await startTestServer({ ports: { sip: sipPort }, sip: { mediaPorts: { min, max: min + 31 } }, media: { idleSeconds: 1 } });
  });
  after(() => server?.stop());

  test('is hung up on both sides once no RTP flows either way (media.idleSeconds), but not while on hold', async () => {
    const phoneAccount = await server.newAccount('silent', { password: 'nat-secret' });
    const phone = await SipPhone.open(sipPort, phoneAccount, 'nat-secret', { host: PRIVATE });
    try {
      await phone.register();
      const caller = (await server.login(await server.newAccount('desk'), 'secret')).client;
      await ok(caller, PLAIN_BIND);
      const offer = plainOffer(49170);

      // On hold (the phone answers sendonly): silence is expected, the call stays.
      await ok(caller, `<callStart callLeg="h1" peer="${phoneAccount}"><sdpText>${offer}</sdpText></callStart>`);
      const held = await phone.ring();
      await held.accept(PRIVATE_MEDIA_PORT, 'sendonly');
      await caller.takeAsync('callConnected', (m) => m.attrs.callLeg === 'h1', 10_000);
      await sleep(3000);
      assert.equal(server.services.calls.media?.open.size, 1, 'a held call is kept');
      await ok(caller, '<callKill callLeg="h1"/>');
      await phone.nextRequest('BYE', held.dialog);

      // Live (sendrecv) and silent: both sides are hung up.
      await ok(caller, `<callStart callLeg="s1" peer="${phoneAccount}"><sdpText>${offer}</sdpText></callStart>`);
      const live = await phone.answer(PRIVATE_MEDIA_PORT);
      await caller.takeAsync('callConnected', (m) => m.attrs.callLeg === 's1', 10_000);
      const ended = await caller.takeAsync('callDisconnected', (m) => m.attrs.callLeg === 's1', 20_000);
      assert.match(ended.attrs.errorText ?? '', /no media/);
      await phone.nextRequest('BYE', live.dialog);
      await until(() => (server.services.calls.media?.open.size ?? 0) === 0);
    } finally {
      phone.close();
    }
  });
});
