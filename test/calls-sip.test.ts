/**
 * Calls between XIMSS sessions and SIP phones through the server (the call engine's SIP
 * binding, src/transports/sip/b2bua.ts), with Debian's baresip as the phone: it registers to
 * an account with Digest authentication, is called from a XIMSS session and calls one. The
 * XIMSS side's media is played by this test on a UDP socket (plain RTP, G.711 μ-law), so the
 * audio is checked end to end: the digit baresip plays is detected in what the test receives,
 * and the digit the test sends is detected in baresip's recording. Also: an INVITE from one
 * of our domains without credentials is challenged (407).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { decodeUlaw, encodeUlaw } from '../src/media/g711.js';
import { parseRtp, writeRtpHeader } from '../src/media/rtp.js';
import { Baresip, ensureBaresip } from './fixtures/baresip.js';
import { dtmfBlockCounts, dtmfSamples, loopSamples, readWav, writeWav } from './fixtures/wav.js';
import { freeSipPort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const availability = await ensureBaresip();
const skip = availability.available ? false : availability.reason;

/** Goertzel blocks (205 samples) in a second of 8 kHz audio. */
const BLOCKS_PER_SECOND = 8000 / 205;

/**
 * The media of the XIMSS side: a UDP socket that sends a DTMF digit's tones as 20 ms G.711
 * packets to wherever it is told, and keeps the audio it receives.
 */
class TestMedia {
  readonly received: number[] = [];
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly socket: dgram.Socket,
    readonly port: number,
  ) {
    socket.on('message', (packet) => {
      const rtp = parseRtp(packet);
      if (!rtp || rtp.payloadType !== 0) return;
      for (const sample of decodeUlaw(packet.subarray(rtp.payloadOffset, rtp.payloadOffset + rtp.payloadLength))) this.received.push(sample);
    });
  }

  static async open(): Promise<TestMedia> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new TestMedia(socket, socket.address().port);
  }

  sdp(): string {
    return ['v=0', `o=- ${this.port} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${this.port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
  }

  /** Sends `digit` to `host:port` until stopped, one packet every 20 ms. */
  play(digit: string, host: string, port: number): void {
    const codes = encodeUlaw(loopSamples(dtmfSamples(digit, 1), 30));
    let sequence = 1;
    let offset = 0;
    this.timer = setInterval(() => {
      const packet = Buffer.alloc(12 + 160);
      writeRtpHeader(packet, { payloadType: 0, sequence: sequence++ & 0xffff, timestamp: offset, ssrc: 0x1234 });
      packet.set(codes.subarray(offset % (codes.length - 160), (offset % (codes.length - 160)) + 160), 12);
      offset += 160;
      this.socket.send(packet, port, host);
    }, 20);
  }

  close(): void {
    clearInterval(this.timer);
    this.socket.close();
  }
}

/** The audio address of an SDP (text presentation). */
function mediaAddress(sdp: string): { host: string; port: number } {
  const host = /^c=IN IP4 (\S+)/m.exec(sdp)?.[1];
  const port = /^m=audio (\d+)/m.exec(sdp)?.[1];
  assert.ok(host && port, `an audio address in ${sdp}`);
  return { host, port: Number(port) };
}

describe('calls between XIMSS sessions and a SIP phone (baresip)', { skip }, () => {
  let server: TestServer;
  let dir: string;
  let phone: Baresip;
  let bob: string;
  let alice: string;
  let client: XimssClient;
  let sipPort: number;

  before(async () => {
    sipPort = await freeSipPort();
    server = await startTestServer({ ports: { sip: sipPort } });
    dir = mkdtempSync(join(tmpdir(), 'calls-sip-'));
    bob = await server.newAccount('phone', { password: 'phone-secret' });
    alice = await server.newAccount('web');
    client = (await server.login(alice, 'secret')).client;
    await ok(client, `<signalBind><sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n</sdpText></signalBind>`);
    phone = await Baresip.registered({ name: 'bob', aor: bob, password: 'phone-secret', registrar: `127.0.0.1:${sipPort}`, digit: '9', dir });
  });

  after(async () => {
    await phone?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the phone registered with Digest authentication: its binding is in the store', async () => {
    const account = await server.services.accounts.find(bob);
    const bindings = await server.services.store.registrations.list(account!.id, Date.now());
    assert.equal(bindings.length, 1);
    assert.match(bindings[0]!.contact, /^sip:/);
  });

  test('a XIMSS session calls the phone: it rings, answers, and audio passes both ways; the session hangs up', async () => {
    const media = await TestMedia.open();
    try {
      const mark = phone.events.count;
      await ok(client, `<callStart callLeg="c1" peer="${bob}"><sdpText>${media.sdp()}</sdpText></callStart>`);
      const incoming = await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 10_000, mark);
      assert.match(incoming.peeruri ?? '', new RegExp(`^sip:${alice.replace('.', '\\.')}`));
      await client.takeAsync('callProvisioned', (m) => m.attrs.callLeg === 'c1', 10_000);
      await phone.answer();
      const connected = await client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'c1', 10_000);
      const answer = connected.element('sdpText')?.text() ?? '';
      const remote = mediaAddress(answer);
      await ok(client, '<callUpdateAccept callLeg="c1"/>');
      media.play('5', remote.host, remote.port);
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 10_000, mark);
      await sleep(3000);
      const closedFrom = phone.events.count;
      await ok(client, '<callKill callLeg="c1"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 10_000, closedFrom);
      const heardHere = dtmfBlockCounts(Int16Array.from(media.received));
      assert.ok((heardHere.get('9') ?? 0) > 1.5 * BLOCKS_PER_SECOND, `the session heard ${JSON.stringify([...heardHere])}`);
      const heardByPhone = dtmfBlockCounts(readWav(await phone.recording()).samples);
      assert.ok((heardByPhone.get('5') ?? 0) > 1.5 * BLOCKS_PER_SECOND, `the phone heard ${JSON.stringify([...heardByPhone])}`);
    } finally {
      media.close();
    }
  });

  test('the phone calls the XIMSS session (authenticating its INVITE); the phone hangs up', async () => {
    const media = await TestMedia.open();
    try {
      const mark = phone.events.count;
      await phone.dial(`sip:${alice}`);
      const incoming = await client.takeAsync('callIncoming', () => true, 10_000);
      assert.equal(incoming.attrs.peer, bob);
      const offer = incoming.element('sdpText')?.text() ?? '';
      const remote = mediaAddress(offer);
      await ok(client, `<callProvision callLeg="${incoming.attrs.callLeg}"/>`);
      await phone.events.waitFor((e) => e.type === 'CALL_RINGING', 10_000, mark);
      await ok(client, `<callAccept callLeg="${incoming.attrs.callLeg}"><sdpText>${media.sdp()}</sdpText></callAccept>`);
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 10_000, mark);
      media.play('3', remote.host, remote.port);
      await sleep(3000);
      await phone.hangup();
      await client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === incoming.attrs.callLeg, 10_000);
      await ok(client, `<callKill callLeg="${incoming.attrs.callLeg}"/>`);
      const heardHere = dtmfBlockCounts(Int16Array.from(media.received));
      assert.ok((heardHere.get('9') ?? 0) > 1.5 * BLOCKS_PER_SECOND, `the session heard ${JSON.stringify([...heardHere])}`);
      const heardByPhone = dtmfBlockCounts(readWav(await phone.recording()).samples);
      assert.ok((heardByPhone.get('3') ?? 0) > 1.5 * BLOCKS_PER_SECOND, `the phone heard ${JSON.stringify([...heardByPhone])}`);
    } finally {
      media.close();
    }
  });

  test('a call without an offer (the phone offers in its 200), put on hold and resumed by re-INVITEs, DTMF by INFO', async () => {
    const media = await TestMedia.open();
    try {
      const mark = phone.events.count;
      await ok(client, `<callStart callLeg="late" peer="${bob}"/>`);
      await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 10_000, mark);
      await phone.answer();
      const connected = await client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'late', 10_000);
      const offer = connected.element('sdpText')?.text() ?? '';
      const remote = mediaAddress(offer);
      await ok(client, `<callUpdateAccept callLeg="late"><sdpText>${media.sdp()}</sdpText></callUpdateAccept>`);
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 10_000, mark);
      media.play('6', remote.host, remote.port);

      await ok(client, `<callUpdate callLeg="late"><sdpText>${media.sdp().replace('a=sendrecv', 'a=sendonly').replace(/^o=- (\d+) 1/m, 'o=- $1 2')}</sdpText></callUpdate>`);
      const held = await client.takeAsync('callUpdated', (m) => m.attrs.callLeg === 'late', 10_000);
      assert.equal(held.attrs.signalCode, undefined, held.toString());
      assert.match(held.element('sdpText')?.text() ?? '', /^a=(recvonly|inactive)/m);
      await ok(client, `<callUpdate callLeg="late"><sdpText>${media.sdp().replace(/^o=- (\d+) 1/m, 'o=- $1 3')}</sdpText></callUpdate>`);
      const resumed = await client.takeAsync('callUpdated', (m) => m.attrs.callLeg === 'late', 10_000);
      assert.match(resumed.element('sdpText')?.text() ?? '', /^a=sendrecv/m);

      await ok(client, '<callSendDTMF callLeg="late">4</callSendDTMF>');
      const outcome = await client.takeAsync('callOpCompleted', (m) => m.attrs.callLeg === 'late', 10_000).catch(async () => client.takeAsync('callOpFailed', () => true, 100));
      assert.equal(outcome.name, 'callOpCompleted', outcome.toString());
      await sleep(1500);
      const closedFrom = phone.events.count;
      await ok(client, '<callKill callLeg="late"/>');
      await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', 10_000, closedFrom);
      const heard = dtmfBlockCounts(Int16Array.from(media.received));
      assert.ok((heard.get('9') ?? 0) > 1 * BLOCKS_PER_SECOND, `the session heard ${JSON.stringify([...heard])}`);
    } finally {
      media.close();
    }
  });

  test('phone to phone through the server: a second phone calls the first, audio both ways, hung up by the callee', async () => {
    const carol = await server.newAccount('desk', { password: 'desk-secret' });
    const second = await Baresip.registered({ name: 'carol', aor: carol, password: 'desk-secret', registrar: `127.0.0.1:${sipPort}`, digit: '*', dir });
    try {
      const mark = phone.events.count;
      await second.dial(`sip:${bob}`);
      const incoming = await phone.events.waitFor((e) => e.type === 'CALL_INCOMING', 10_000, mark);
      assert.match(incoming.peeruri ?? '', new RegExp(`^sip:${carol.replace('.', '\\.')}`));
      await phone.answer();
      await Promise.all([phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 10_000, mark), second.waitForEvent('CALL_ESTABLISHED')]);
      await sleep(3000);
      const closedFrom = second.events.count;
      await phone.hangup();
      await second.events.waitFor((e) => e.type === 'CALL_CLOSED', 10_000, closedFrom);
      const heardByBob = dtmfBlockCounts(readWav(await phone.recording()).samples);
      const heardByCarol = dtmfBlockCounts(readWav(await second.recording()).samples);
      assert.ok((heardByBob.get('*') ?? 0) > 1.5 * BLOCKS_PER_SECOND, `bob heard ${JSON.stringify([...heardByBob])}`);
      assert.ok((heardByCarol.get('9') ?? 0) > 1.5 * BLOCKS_PER_SECOND, `carol heard ${JSON.stringify([...heardByCarol])}`);
    } finally {
      await second.stop();
    }
  });

  test('an INVITE claiming one of our users without credentials is challenged (407)', async () => {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      const port = socket.address().port;
      const invite = [
        `INVITE sip:${alice} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK-test407;rport`,
        'Max-Forwards: 70',
        `From: <sip:${bob}>;tag=abc`,
        `To: <sip:${alice}>`,
        'Call-ID: test-407@127.0.0.1',
        'CSeq: 1 INVITE',
        `Contact: <sip:x@127.0.0.1:${port}>`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
      const answer = new Promise<string>((resolve) => socket.on('message', (m) => resolve(m.toString())));
      socket.send(invite, sipPort, '127.0.0.1');
      const response = await answer;
      assert.match(response, /^SIP\/2\.0 407 /);
      assert.match(response, /^Proxy-Authenticate: Digest /m);
    } finally {
      socket.close();
    }
  });

  test('to another domain found in DNS (NAPTR, SRV, A), and a number through a trunk: the remote party rings and answers', async () => {
    const one = writeWav(join(dir, 'one.wav'), dtmfSamples('1', 2));
    const remote = await Baresip.start({ name: 'dave', user: 'dave', audioIn: one, answerMode: 'auto' });
    // The trunk's far end: a phone whose user is the number dialled (a gateway would route it on).
    const gateway = await Baresip.start({ name: 'gateway', user: '5550100', audioIn: one, answerMode: 'auto' });
    const table: Record<string, unknown[]> = {
      'remote.test NAPTR': [{ order: 10, preference: 10, flags: 's', service: 'SIP+D2U', regexp: '', replacement: '_sip._udp.remote.test' }],
      '_sip._udp.remote.test SRV': [{ name: 'sip1.remote.test', port: remote.sipPort, priority: 10, weight: 10 }],
      'sip1.remote.test A': ['127.0.0.1'],
    };
    const resolver = async (name: string, rrtype: string): Promise<unknown> => {
      const records = table[`${name} ${rrtype}`];
      if (!records) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return records;
    };
    const viaDns = await startTestServer({ ports: { sip: await freeSipPort() } }, { sipResolver: resolver });
    const viaTrunk = await startTestServer({ ports: { sip: await freeSipPort() }, sip: { trunk: `sip:127.0.0.1:${gateway.sipPort}` } });
    try {
      for (const [server2, peer, far] of [
        [viaDns, 'dave@remote.test', remote],
        [viaTrunk, '555-0100', gateway],
      ] as const) {
        const caller = await server2.newAccount('out');
        const session = (await server2.login(caller, 'secret')).client;
        await ok(session, `<signalBind><sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n</sdpText></signalBind>`);
        const media = await TestMedia.open();
        try {
          const mark = far.events.count;
          await ok(session, `<callStart callLeg="out" peer="${peer}"><sdpText>${media.sdp()}</sdpText></callStart>`);
          // It answers by itself (answer mode auto): no CALL_INCOMING, the call is established at once.
          const established = await far.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', 10_000, mark);
          assert.match(established.peeruri ?? '', new RegExp(`^sip:${caller.replace('.', '\\.')}`));
          await session.takeAsync('callConnected', (m) => m.attrs.callLeg === 'out', 10_000);
          await sleep(1500);
          const closedFrom = far.events.count;
          await ok(session, '<callKill callLeg="out"/>');
          await far.events.waitFor((e) => e.type === 'CALL_CLOSED', 10_000, closedFrom);
          const heard = dtmfBlockCounts(Int16Array.from(media.received));
          assert.ok((heard.get('1') ?? 0) > 0.5 * BLOCKS_PER_SECOND, `${peer}: the session heard ${JSON.stringify([...heard])}`);
        } finally {
          media.close();
        }
      }
      // Without a trunk, a number goes nowhere (honestly).
      const caller = await viaDns.newAccount('out');
      const session = (await viaDns.login(caller, 'secret')).client;
      await ok(session, '<callStart callLeg="n" peer="+1 555 0100"/>');
      const refused = await session.takeAsync('callDisconnected', () => true, 10_000);
      assert.equal(refused.attrs.signalCode, '404');
      assert.match(refused.attrs.errorText ?? '', /trunk/);
    } finally {
      await remote.stop();
      await gateway.stop();
      await viaDns.stop();
      await viaTrunk.stop();
    }
  });
});
