/**
 * The Rayo record component (XEP-0327 "Recording") on the wire: a slixmpp client
 * (test/fixtures/xmpp-peer.ts) controls a call placed by a XIMSS session whose SDP points at a
 * UDP socket of this test; the socket sends PCMU audio (a 600 Hz tone in bursts, or nothing) to
 * the server's media endpoint and hears what the server plays (the beeps). Each recording is
 * fetched back from the URL its `complete` names (the account's File Storage over WebDAV, with
 * the account's credentials) and its audio checked with Goertzel filters. No timing assertions:
 * durations are counted in media frames by the server, compared with wide margins.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { goertzelCoefficient, goertzelEnergy } from '../src/media/dtmf.js';
import { decodeUlaw, encodeUlaw } from '../src/media/g711.js';
import { writeRtpHeader } from '../src/media/rtp.js';
import { encodeWav, readWav, type WavAudio } from '../src/media/wav.js';
import type { XmlElement } from '../src/xml/element.js';
import { servePrompts, type PromptServer } from './fixtures/prompt-server.js';
import { ensureSlixmpp, XmppPeer, type PresenceEvent } from './fixtures/xmpp-peer.js';
import { freePort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const slixmpp = await ensureSlixmpp().then(
  () => false as const,
  (err: unknown) => `slixmpp cannot be installed: ${String(err)}`,
);

const NS_RAYO = 'urn:xmpp:rayo:1';
const NS_RECORD = 'urn:xmpp:rayo:record:1';
const RAYO_CLIENT_CAPS = `<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="urn:xmpp:rayo:client:1" ver="QgayPKawpkPSDYmwT/WM94uAlu0="/>`;
/** The caller's tone, the server's beep (tones.ts), and what the output component plays. */
const CALLER_HZ = 600;
const BEEP_HZ = 1000;
const OUTPUT_HZ = 1500;

let server: TestServer;
let xmppPort: number;
let domain: string;
const peers: XmppPeer[] = [];

before(async () => {
  xmppPort = await freePort();
  // Media ports from a random stretch of the range: test files running at once do not all start at its bottom.
  const min = 20_000 + 2 * Math.floor(Math.random() * 4500);
  // The WAV prompt is served on 127.0.0.1: the operator's opt-in for internal addresses.
  server = await startTestServer({ ports: { ximss: 0, http: 0, smtp: 0, xmpp: xmppPort }, sip: { mediaPorts: { min, max: Math.min(29_999, min + 999) } }, media: { promptFetch: 'any' } });
});
after(async () => {
  await Promise.all(peers.map((p) => p.close().catch(() => {})));
  await server.stop();
});

function sdpText(rtpPort: number): string {
  return ['v=0', `o=- ${rtpPort} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${rtpPort} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A sine of `hz` at 8 kHz, `ms` long. */
function sine(hz: number, ms: number, amplitude = 8000): Int16Array {
  const samples = new Int16Array(8 * ms);
  for (let i = 0; i < samples.length; i++) samples[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / 8000));
  return samples;
}

/** The caller's media: a UDP socket that sends PCMU to the endpoint and counts the beeps it hears. */
class CallerMedia {
  readonly socket: Socket = createSocket('udp4');
  endpointPort = 0;
  /** Frames heard from the server in which each frequency dominates. */
  readonly heard = new Map<number, number>();
  private sequence = 1;
  private timer: NodeJS.Timeout | undefined;

  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    this.socket.on('message', (packet) => {
      if (packet.length < 12 + 160 || (packet[1]! & 0x7f) !== 0) return;
      const pcm = decodeUlaw(new Uint8Array(packet.subarray(12, 12 + 160)));
      const hz = dominant(pcm);
      if (hz !== undefined) this.heard.set(hz, (this.heard.get(hz) ?? 0) + 1);
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Sends bursts of the caller's tone (300 ms on, 150 ms off: speech-like for the VAD) every 20 ms until `quiet`. */
  talk(): void {
    this.quiet();
    const burst = encodeUlaw(sine(CALLER_HZ, 300));
    const gap = encodeUlaw(new Int16Array(8 * 150));
    const pattern = new Uint8Array(burst.length + gap.length);
    pattern.set(burst);
    pattern.set(gap, burst.length);
    let at = 0;
    this.timer = setInterval(() => {
      const packet = Buffer.alloc(12 + 160);
      writeRtpHeader(packet, { payloadType: 0, sequence: this.sequence & 0xffff, timestamp: (this.sequence * 160) >>> 0, ssrc: 0x4242 });
      this.sequence++;
      packet.set(pattern.subarray(at, at + 160), 12);
      at = (at + 160) % pattern.length;
      this.socket.send(packet, this.endpointPort, '127.0.0.1');
    }, 20);
  }

  /** Stops sending (the endpoint then hears nothing: silence). */
  quiet(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.quiet();
    this.socket.close();
  }
}

/** The frequency (of the three this test uses) that dominates a loud frame, if one does. */
function dominant(frame: Int16Array): number | undefined {
  let energy = 0;
  for (const v of frame) energy += v * v;
  if (energy / frame.length < 300 * 300) return undefined;
  const energies = [CALLER_HZ, BEEP_HZ, OUTPUT_HZ].map((hz) => ({ hz, e: goertzelEnergy(frame, goertzelCoefficient(hz, 8000)) }));
  energies.sort((a, b) => b.e - a.e);
  return energies[0]!.e > 20 * energies[1]!.e ? energies[0]!.hz : undefined;
}

/** How many 20 ms frames of a channel are dominated by `hz`. */
function framesOf(samples: Int16Array, hz: number): number {
  let count = 0;
  for (let i = 0; i + 160 <= samples.length; i += 160) if (dominant(samples.subarray(i, i + 160)) === hz) count++;
  return count;
}

/** A recording: readWav's view (its channels averaged) and each channel apart (PCM 16-bit, read here). */
interface Recorded extends WavAudio {
  channelSamples: Int16Array[];
}

function decodeRecording(body: Uint8Array): Recorded {
  const wav = readWav(body);
  assert.equal(wav.encoding, 'pcm16');
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let at = 12;
  while (at + 8 <= body.length && String.fromCharCode(...body.subarray(at, at + 4)) !== 'data') at += 8 + view.getUint32(at + 4, true);
  const bytes = view.getUint32(at + 4, true);
  const frames = bytes / 2 / wav.channels;
  const channelSamples = Array.from({ length: wav.channels }, () => new Int16Array(frames));
  for (let i = 0; i < frames; i++) for (let c = 0; c < wav.channels; c++) channelSamples[c]![i] = view.getInt16(at + 8 + 2 * (i * wav.channels + c), true);
  return { ...wav, channelSamples };
}

/** One channel of a recording. */
function channel(wav: Recorded, index: number): Int16Array {
  return wav.channelSamples[index]!;
}

interface Answered {
  jid: string;
  peer: XmppPeer;
  call: string;
  caller: XimssClient;
  media: CallerMedia;
}

/** An account with RayoAllowed whose client is available, called by a XIMSS session and answered. */
async function answeredCall(name: string, settings: Record<string, string> = {}): Promise<Answered> {
  const jid = await server.newAccount(name);
  domain = jid.slice(jid.indexOf('@') + 1);
  const account = await server.services.accounts.find(jid);
  await server.services.accounts.setSettings(account!, { RayoAllowed: 'Yes', ...settings });
  const peer = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port: xmppPort, resource: 'app' });
  peers.push(peer);
  await peer.raw(`<presence to="${domain}">${RAYO_CLIENT_CAPS}<show>chat</show></presence>`);
  await peer.ping();
  const callerAddress = await server.newAccount(`${name}-caller`);
  const { client: caller } = await server.login(callerAddress, 'secret');
  await ok(caller, '<signalBind/>');
  const media = new CallerMedia();
  await media.open();
  await ok(caller, `<callStart callLeg="r1" peer="${jid}"><sdpText>${sdpText(media.port)}</sdpText></callStart>`);
  const offer = await presence(peer, 'offer');
  const answered = await peer.iq(`<iq type="set" to="${offer.from}"><answer xmlns="${NS_RAYO}"/></iq>`);
  assert.equal(answered.type, 'result', answered.xml);
  const connected: XmlElement = await caller.takeAsync('callConnected', (m) => m.attrs.callLeg === 'r1');
  const ip = connected.element('sdp')?.element('media')?.attrs.ip ?? '';
  media.endpointPort = Number(ip.slice(ip.lastIndexOf(':') + 1));
  assert.ok(media.endpointPort > 0, `the endpoint's port is in the answer: ${connected.toString()}`);
  return { jid, peer, call: offer.from, caller, media };
}

/** A Rayo event presence (offer, complete…) from `from` (any call when not given). */
async function presence(peer: XmppPeer, event: string, from?: string): Promise<{ from: string; xml: string }> {
  const got = (await peer.waitFor(
    (e): e is PresenceEvent => e.event === 'presence' && (from === undefined ? (e.from ?? '').includes('@call.') : e.from === from) && new RegExp(`<${event}[\\s/>]`).test(e.xml) && e.xml.includes('urn:xmpp:rayo:'),
    { timeoutMs: 20_000 },
  )) as PresenceEvent;
  return { from: got.from!, xml: got.xml };
}

async function startRecord(peer: XmppPeer, call: string, attrs = ''): Promise<string> {
  const started = await peer.iq(`<iq type="set" to="${call}"><record xmlns="${NS_RECORD}" ${attrs}/></iq>`);
  assert.equal(started.type, 'result', started.xml);
  const ref = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(started.xml);
  assert.ok(ref && ref[1]!.startsWith(`${call}/`), `a component ref under the call: ${started.xml}`);
  return ref[1]!;
}

async function command(peer: XmppPeer, component: string, name: string, ns = NS_RECORD): Promise<void> {
  const answer = await peer.iq(`<iq type="set" to="${component}"><${name} xmlns="${ns}"/></iq>`);
  assert.equal(answer.type, 'result', `${name}: ${answer.xml}`);
}

interface Completion {
  reason: string;
  reasonNs: string;
  uri: string;
  duration: number;
  size: number;
  xml: string;
}

/** The component's complete: its reason and the recording metadata. */
async function completion(peer: XmppPeer, component: string): Promise<Completion> {
  const { xml } = await presence(peer, 'complete', component);
  const reason = /<complete[^>]*>\s*<([a-z-]+)[^>]*xmlns="([^"]+)"/.exec(xml) ?? /<complete[^>]*>\s*<([a-z-]+)/.exec(xml);
  const recording = /<recording [^>]*>/.exec(xml)?.[0] ?? '';
  const attr = (name: string): string => new RegExp(`\\s${name}="([^"]*)"`).exec(recording)?.[1] ?? '';
  return { reason: reason?.[1] ?? '', reasonNs: reason?.[2] ?? '', uri: attr('uri').replace(/&amp;/g, '&'), duration: Number(attr('duration')), size: Number(attr('size')), xml };
}

/** Fetches a recording from its URI (host replaced by loopback: the test domain is not in DNS) with the account's credentials. */
async function fetchRecording(uri: string, jid: string, password = 'secret'): Promise<Response> {
  const url = new URL(uri);
  assert.equal(Number(url.port), server.ports.http, `the URI names the HTTP listener: ${uri}`);
  return fetch(`http://127.0.0.1:${url.port}${url.pathname}`, { headers: { authorization: `Basic ${Buffer.from(`${jid}:${password}`).toString('base64')}` } });
}

async function recordingOf(done: Completion, jid: string): Promise<{ wav: Recorded; bytes: number }> {
  assert.match(done.uri, /^http:\/\/[^/]+\/dav\/files\/[^/]+\/recordings\/[^/]+\.wav$/, done.xml);
  const response = await fetchRecording(done.uri, jid);
  assert.equal(response.status, 200, `GET ${done.uri}`);
  const body = new Uint8Array(await response.arrayBuffer());
  assert.equal(body.length, done.size, 'size is the stored file\'s size');
  const wav = decodeRecording(body);
  assert.equal(wav.sampleRate, 8000);
  // duration is what the file holds (20 ms frames), to the frame.
  assert.equal(done.duration, Math.round((wav.samples.length / 8000) * 1000), 'duration matches the samples');
  return { wav, bytes: body.length };
}

describe('Rayo record component', { skip: slixmpp }, () => {
  it('records what the caller says until stop; the complete names a WAV in the account\'s File Storage, fetched with the account\'s credentials', async () => {
    const { jid, peer, call, media } = await answeredCall('rec-stop');
    try {
      media.talk();
      const component = await startRecord(peer, call, 'direction="send"');
      await pause(1500);
      await command(peer, component, 'stop', 'urn:xmpp:rayo:ext:1');
      const done = await completion(peer, component);
      assert.equal(done.reason, 'stop', done.xml);
      assert.match(done.xml, /<recording [^>]*xmlns="urn:xmpp:rayo:record:complete:1"/);
      const { wav } = await recordingOf(done, jid);
      assert.equal(wav.channels, 1);
      assert.equal(wav.encoding, 'pcm16');
      assert.ok(done.duration >= 500, `seconds of audio recorded (${done.duration} ms)`);
      const tone = framesOf(wav.samples, CALLER_HZ);
      assert.ok(tone >= 15, `the caller's 600 Hz tone is in the recording (${tone} frames)`);
      assert.equal(framesOf(wav.samples, OUTPUT_HZ), 0);
      // Without credentials, or with another account's, the recording is not given.
      const anonymous = await fetch(`http://127.0.0.1:${server.ports.http}${new URL(done.uri).pathname}`);
      assert.equal(anonymous.status, 401);
      const stranger = await server.newAccount('rec-stranger');
      assert.equal((await fetchRecording(done.uri, stranger)).status, 403);
      // It is a file of the File Storage: listed over XIMSS as well.
      const { client } = await server.login(jid, 'secret');
      const listed = await ok(client, '<fileList directory="recordings"/>');
      assert.ok(listed.messages.some((m) => m.name === 'fileInfo' && new URL(done.uri).pathname.endsWith(`/${m.attrs.fileName}`)), 'the recording is in recordings/');
      // A completed component is gone.
      const late = await peer.iq(`<iq type="set" to="${component}"><stop xmlns="urn:xmpp:rayo:ext:1"/></iq>`);
      assert.equal(late.condition, 'item-not-found');
    } finally {
      media.close();
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    }
  });

  it('max-duration ends the recording with max-duration and exactly that much audio', async () => {
    const { jid, peer, call, media } = await answeredCall('rec-max');
    try {
      media.talk();
      const component = await startRecord(peer, call, 'max-duration="1000" direction="send"');
      const done = await completion(peer, component);
      assert.equal(done.reason, 'max-duration', done.xml);
      assert.equal(done.reasonNs, 'urn:xmpp:rayo:record:complete:1');
      assert.equal(done.duration, 1000);
      const { wav } = await recordingOf(done, jid);
      assert.equal(wav.samples.length, 8000);
      assert.ok(framesOf(wav.samples, CALLER_HZ) >= 10);
    } finally {
      media.close();
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    }
  });

  it('a mixer is recorded as its whole mix, in one channel: the members and what plays into it', async () => {
    const { jid, peer, call, media } = await answeredCall('rec-mixer');
    try {
      const joined = await peer.iq(`<iq type="set" to="${call}"><join xmlns="${NS_RAYO}" mixer-name="studio"/></iq>`);
      assert.equal(joined.type, 'result', joined.xml);
      media.talk();
      const started = await peer.iq(`<iq type="set" to="studio@mixer.${domain}"><record xmlns="${NS_RECORD}" max-duration="1500" direction="duplex"/></iq>`);
      assert.equal(started.type, 'result', started.xml);
      const component = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(started.xml)![1]!;
      assert.ok(component.startsWith(`studio@mixer.${domain}/`), component);
      const done = await completion(peer, component);
      assert.equal(done.reason, 'max-duration', done.xml);
      const { wav } = await recordingOf(done, jid);
      assert.equal(wav.channels, 1, 'one channel: the mix');
      assert.equal(wav.samples.length, 12_000);
      assert.ok(framesOf(wav.samples, CALLER_HZ) >= 15, 'the member is in the mix');
      // Record, then the last member leaves: the mixer goes and its recording completes (hangup), stored.
      const second = await peer.iq(`<iq type="set" to="studio@mixer.${domain}"><record xmlns="${NS_RECORD}"/></iq>`);
      const secondComponent = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(second.xml)![1]!;
      await peer.iq(`<iq type="set" to="${call}"><unjoin xmlns="${NS_RAYO}" mixer-name="studio"/></iq>`);
      const gone = await completion(peer, secondComponent);
      assert.equal(gone.reason, 'hangup', gone.xml);
      assert.ok(gone.uri !== '', 'the cut recording is stored');
    } finally {
      media.close();
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    }
  });

  it('initial-timeout when the caller says nothing; final-timeout after voice then silence', async () => {
    const { jid, peer, call, media } = await answeredCall('rec-timeouts');
    try {
      const silent = await startRecord(peer, call, 'initial-timeout="600" max-duration="10000"');
      const quiet = await completion(peer, silent);
      assert.equal(quiet.reason, 'initial-timeout', quiet.xml);
      assert.equal(quiet.duration, 600, 'the recording holds the time waited');
      const { wav: silence } = await recordingOf(quiet, jid);
      assert.equal(framesOf(channel(silence, 0), CALLER_HZ), 0, 'nothing was said');

      media.talk();
      const component = await startRecord(peer, call, 'initial-timeout="3000" final-timeout="600" max-duration="20000" direction="send"');
      await pause(1200);
      media.quiet();
      const done = await completion(peer, component);
      assert.equal(done.reason, 'final-timeout', done.xml);
      const { wav } = await recordingOf(done, jid);
      const samples = wav.samples;
      assert.ok(framesOf(samples, CALLER_HZ) >= 10, 'the voice is recorded');
      // The recording ends with the silence that ended it: the last 600 ms hold no tone.
      assert.equal(framesOf(samples.subarray(samples.length - 8 * 600), CALLER_HZ), 0, 'it ends in silence');
      assert.ok(done.duration < 20_000, 'well before max-duration');
    } finally {
      media.close();
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    }
  });

  it('pause and resume: paused time is not recorded (start-paused beside a recording that never paused)', async () => {
    const { jid, peer, call, media } = await answeredCall('rec-pause');
    try {
      media.talk();
      const whole = await startRecord(peer, call, 'direction="send"');
      const paused = await startRecord(peer, call, 'direction="send" start-paused="true"');
      await pause(1000);
      await command(peer, paused, 'resume');
      await pause(800);
      await command(peer, paused, 'pause');
      await pause(800);
      await command(peer, paused, 'resume');
      await pause(400);
      await command(peer, whole, 'stop', 'urn:xmpp:rayo:ext:1');
      await command(peer, paused, 'stop', 'urn:xmpp:rayo:ext:1');
      const a = await completion(peer, whole);
      const b = await completion(peer, paused);
      assert.equal(a.reason, 'stop');
      assert.equal(b.reason, 'stop');
      await recordingOf(a, jid);
      const { wav } = await recordingOf(b, jid);
      assert.ok(framesOf(wav.samples, CALLER_HZ) >= 5, 'the resumed stretches are recorded');
      // About 1.2 s of 3 s were recorded unpaused: less than three quarters of the whole.
      assert.ok(b.duration < a.duration * 0.75, `the paused recording is shorter (${b.duration} ms against ${a.duration} ms)`);
      assert.ok(b.duration > 0);
      assert.ok(b.size < a.size);
    } finally {
      media.close();
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    }
  });

  describe('what the server plays (beeps, output) and duplex recordings', () => {
    let prompts: PromptServer;
    let httpBase: string;
    before(async () => {
      prompts = await servePrompts({ 'tone.wav': encodeWav(sine(OUTPUT_HZ, 3000)) });
      httpBase = prompts.base;
    });
    after(() => prompts.close());

    it('start-beep and stop-beep are played to the caller and are not in the recording', async () => {
      const { jid, peer, call, media } = await answeredCall('rec-beep');
      try {
        const component = await startRecord(peer, call, 'start-beep="true" stop-beep="true" max-duration="600" direction="duplex"');
        const done = await completion(peer, component);
        assert.equal(done.reason, 'max-duration', done.xml);
        for (let i = 0; i < 100 && (media.heard.get(BEEP_HZ) ?? 0) < 20; i++) await pause(50);
        const beeps = media.heard.get(BEEP_HZ) ?? 0;
        // Two beeps of 250 ms: about 25 frames of 1 kHz.
        assert.ok(beeps >= 16, `the caller heard the beeps (${beeps} frames of 1 kHz)`);
        const { wav } = await recordingOf(done, jid);
        assert.equal(wav.channels, 2, 'duplex without mix: two channels');
        assert.equal(framesOf(channel(wav, 1), BEEP_HZ), 0, 'the recording starts after the start beep');
      } finally {
        media.close();
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      }
    });

    it('duplex records the caller on the left and what it hears on the right; mix puts both in one channel; recv only what the caller hears', async () => {
      const { jid, peer, call, media } = await answeredCall('rec-duplex');
      try {
        media.talk();
        const output = await peer.iq(`<iq type="set" to="${call}"><output xmlns="urn:xmpp:rayo:output:1" repeat-times="0"><document url="${httpBase}/tone.wav"/></output></iq>`);
        assert.equal(output.type, 'result', output.xml);
        const duplex = await startRecord(peer, call, 'direction="duplex" max-duration="2000"');
        const mixed = await startRecord(peer, call, 'direction="duplex" mix="true" max-duration="2000"');
        const heard = await startRecord(peer, call, 'direction="recv" max-duration="2000"');
        const [d, m, s] = [await completion(peer, duplex), await completion(peer, mixed), await completion(peer, heard)];
        for (const done of [d, m, s]) assert.equal(done.reason, 'max-duration', done.xml);

        const two = (await recordingOf(d, jid)).wav;
        assert.equal(two.channels, 2);
        assert.ok(framesOf(channel(two, 0), CALLER_HZ) >= 10, 'left: the caller');
        assert.equal(framesOf(channel(two, 0), OUTPUT_HZ), 0);
        assert.ok(framesOf(channel(two, 1), OUTPUT_HZ) >= 50, 'right: what the caller hears (the output)');
        assert.equal(framesOf(channel(two, 1), CALLER_HZ), 0);

        const one = (await recordingOf(m, jid)).wav;
        assert.equal(one.channels, 1);
        // Mixed: both tones are in the one channel (the caller's bursts sound over the output).
        const k600 = goertzelCoefficient(CALLER_HZ, 8000);
        const k1500 = goertzelCoefficient(OUTPUT_HZ, 8000);
        let both = 0;
        for (let i = 0; i + 160 <= one.samples.length; i += 160) {
          const frame = one.samples.subarray(i, i + 160);
          const caller = goertzelEnergy(frame, k600);
          const played = goertzelEnergy(frame, k1500);
          if (caller > 1e9 && played > 1e9) both++;
        }
        assert.ok(both >= 10, `the mix holds both parties at once (${both} frames)`);

        const own = (await recordingOf(s, jid)).wav;
        assert.equal(own.channels, 1);
        assert.ok(framesOf(own.samples, OUTPUT_HZ) >= 50, 'recv: what the caller hears');
        assert.equal(framesOf(own.samples, CALLER_HZ), 0, 'and not what it says');
      } finally {
        media.close();
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      }
    });
  });

  it('a caller hanging up completes the recording with hangup, and the file is still stored', async () => {
    const { jid, peer, call, caller, media } = await answeredCall('rec-hangup');
    try {
      media.talk();
      const component = await startRecord(peer, call, 'direction="send"');
      await pause(1000);
      await ok(caller, '<callKill callLeg="r1"/>');
      const done = await completion(peer, component);
      assert.equal(done.reason, 'hangup', done.xml);
      assert.equal(done.reasonNs, 'urn:xmpp:rayo:ext:complete:1');
      const { wav } = await recordingOf(done, jid);
      assert.ok(framesOf(wav.samples, CALLER_HZ) >= 5, 'what was said before the hangup is there');
      assert.match((await presence(peer, 'end', call)).xml, /<hungup/);
    } finally {
      media.close();
    }
  });

  it('refuses formats other than wav (feature-not-implemented), a call not answered, and a full File Storage ends in error', async () => {
    const { peer, call, media } = await answeredCall('rec-refused', { MaxWebSize: '20K' });
    try {
      const mp3 = await peer.iq(`<iq type="set" to="${call}"><record xmlns="${NS_RECORD}" format="mp3"/></iq>`);
      assert.equal(mp3.condition, 'feature-not-implemented', mp3.xml);
      const junk = await peer.iq(`<iq type="set" to="${call}"><record xmlns="${NS_RECORD}" direction="sideways"/></iq>`);
      assert.equal(junk.condition, 'bad-request', junk.xml);
      const negative = await peer.iq(`<iq type="set" to="${call}"><record xmlns="${NS_RECORD}" max-duration="-5"/></iq>`);
      assert.equal(negative.condition, 'bad-request', negative.xml);
      // Odd options are answered (an error, or a recording that is then stopped), never a crash.
      const odd = [
        'format="WAV" start-beep="maybe"',
        'max-duration="99999999999999999999"',
        'initial-timeout="abc"',
        'final-timeout="-1" direction="duplex" mix="1"',
        'format="wav;rm -rf"',
        'format=""',
        'mix="true" direction="send"',
        'format="wav" max-duration="2147483647" initial-timeout="2147483647"',
      ];
      for (const attrs of odd) {
        const answer = await peer.iq(`<iq type="set" to="${call}"><record xmlns="${NS_RECORD}" ${attrs}><hint name="x" value="y"/></record></iq>`);
        if (answer.type === 'result') {
          const component = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(answer.xml)![1]!;
          await command(peer, component, 'stop', 'urn:xmpp:rayo:ext:1');
          assert.match((await completion(peer, component)).reason, /^(stop|error)$/);
        } else assert.match(answer.condition ?? '', /^(bad-request|feature-not-implemented)$/, `${attrs}: ${answer.xml}`);
      }
      const stranger = await peer.iq(`<iq type="set" to="${call}"><record xmlns="${NS_RECORD}"><output xmlns="urn:xmpp:rayo:output:1"/></record></iq>`);
      assert.equal(stranger.condition, 'bad-request', stranger.xml);
      // 20 KB hold about 1.2 s of 8 kHz 16-bit audio: a recording of 5 s cannot fit.
      const big = await startRecord(peer, call, 'max-duration="5000" direction="send"');
      const done = await completion(peer, big);
      assert.equal(done.reason, 'error', done.xml);
      assert.match(done.xml, /full/);
      assert.doesNotMatch(done.xml, /<recording/, 'nothing was stored');
    } finally {
      media.close();
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    }
    // A call not answered yet has no media to record.
    const jid = await server.newAccount('rec-early');
    const account = await server.services.accounts.find(jid);
    await server.services.accounts.setSettings(account!, { RayoAllowed: 'Yes' });
    const peer2 = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port: xmppPort, resource: 'app' });
    peers.push(peer2);
    await peer2.raw(`<presence to="${domain}">${RAYO_CLIENT_CAPS}<show>chat</show></presence>`);
    await peer2.ping();
    const callerAddress = await server.newAccount('rec-early-caller');
    const { client } = await server.login(callerAddress, 'secret');
    await ok(client, '<signalBind/>');
    await ok(client, `<callStart callLeg="e1" peer="${jid}"><sdpText>${sdpText(40_100)}</sdpText></callStart>`);
    const offer = await presence(peer2, 'offer');
    const early = await peer2.iq(`<iq type="set" to="${offer.from}"><record xmlns="${NS_RECORD}"/></iq>`);
    assert.equal(early.condition, 'unexpected-request', early.xml);
    await peer2.iq(`<iq type="set" to="${offer.from}"><hangup xmlns="${NS_RAYO}"/></iq>`);
  });
});
