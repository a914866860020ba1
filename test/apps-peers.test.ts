/**
 * The real-time applications shipped with the server (src/apps/voicemail.ts, src/apps/conference.ts)
 * end to end with real SIP phones: Debian's baresip (test/fixtures/baresip.ts), registered to
 * accounts of the test server over UDP. Every signal and every sample crosses a real socket: SIP
 * and RTP between the phones and the server, XIMSS between the test's sessions and the server.
 *
 * - Voicemail: a Signal Rule of `vm` (`Redirect to #voicemail`, stage Immediately) sends a phone's
 *   call to the application. The phone hears the greeting and the beep; then it speaks (its
 *   microphone is switched to a second of silence, two seconds of a tone, then silence), and the
 *   three seconds of silence after it end the recording. The message arrives in vm's INBOX with the
 *   recording attached as audio/wav: 8 kHz, holding the tone for about its length, the same bytes
 *   through the MIME URL of a XIMSS session of vm. A second message, spoken without pause, is
 *   ended by the phone's # (an RFC 4733 event) while the tone goes on.
 * - Conference: `conf-*` is routed to the conference program of `pbx`, whose session created the
 *   room `conference/7`, opened it (taskStart of the room entry, so that the subscriber is there
 *   before the first caller) and subscribed to its task. Three phones call conf-7: A sends a tone
 *   of fA, B one of fB, C nothing. C hears both; A hears B and not itself (mix-minus); the
 *   subscriber is told who joined, that A and B speak, and who left.
 * - A phone that calls conf- without a room is asked for it, types 7# (RFC 4733 events) and joins.
 *
 * The phones are started once for the file. No assertion is on timing; the long timeouts are a
 * safety net for a hung peer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { goertzelCoefficient, goertzelEnergy } from '../src/media/dtmf.js';
import { concatSamples } from '../src/media/tones.js';
import type { XmlElement } from '../src/xml/element.js';
import { readValue } from '../src/xml/objects.js';
import { Baresip, ensureBaresip } from './fixtures/baresip.js';
import { ensureDebianTool } from './fixtures/debian.js';
import { decodeWav, readWav, toneSamples, writeWav, type WavAudio } from './fixtures/wav.js';
import { eventually, freeSipPort, ok, startTestServer, storedMessages, type TestServer, type XimssClient } from './helpers.js';

const baresip = await ensureBaresip();
const skip = baresip.available ? false : baresip.reason;

/** A safety net for a hung peer, not a timing assertion. */
const WAIT_MS = 20_000;
const DOMAIN = 'example.test';

/** 20 ms at 8 kHz: the frames recordings are judged by. */
const FRAME = 160;
/** The recording beep the voicemail plays (src/media/tones.ts beep()). */
const BEEP_HZ = 1000;
/** What the voicemail caller says: a tone none of the others use (not a DTMF frequency, not the beep). */
const MESSAGE_HZ = 500;
/** The conference phones' tones. */
const A_HZ = 600;
const B_HZ = 1800;
/** A frame quieter than this mean square (about -44 dBFS) is silence. */
const QUIET = 200 * 200;

/** Each 20 ms frame's energy (mean square) and the share of it at each of `frequencies`. */
function frames(samples: Int16Array, frequencies: readonly number[]): { energy: number; share: number[] }[] {
  const coefficients = frequencies.map((f) => goertzelCoefficient(f, 8000));
  const out: { energy: number; share: number[] }[] = [];
  for (let start = 0; start + FRAME <= samples.length; start += FRAME) {
    const frame = samples.subarray(start, start + FRAME);
    let energy = 0;
    for (const v of frame) energy += v * v;
    out.push({ energy: energy / FRAME, share: coefficients.map((k) => (energy === 0 ? 0 : goertzelEnergy(frame, k) / energy)) });
  }
  return out;
}

/** How many frames are loud and hold `frequency` (index into frames()' list) for at least `share` of their energy. */
const holding = (list: readonly { energy: number; share: number[] }[], index: number, share: number): number =>
  list.filter((f) => f.energy >= QUIET && f.share[index]! >= share).length;

/** Waits until `check` holds of what `phone` has heard in its call so far; fails with `what`. */
async function untilHeard(phone: Baresip, check: (samples: Int16Array) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!check(phone.callAudio())) {
    if (Date.now() > deadline) assert.fail(`${phone.name}: ${what} (not heard within ${WAIT_MS} ms)`);
    await sleep(50);
  }
}

/** `seconds` of a tone at `hz` that pauses `pauseSeconds` after each `onSeconds` (speech-like: the VAD does not learn it as noise). */
function burstSamples(hz: number, seconds: number, onSeconds: number, pauseSeconds: number): Int16Array {
  const on = toneSamples([hz], onSeconds, { amplitude: 7000 });
  const period = on.length + Math.round(pauseSeconds * 8000);
  const out = new Int16Array(Math.round(seconds * 8000));
  for (let offset = 0; offset < out.length; offset += period) out.set(on.subarray(0, Math.min(on.length, out.length - offset)), offset);
  return out;
}


/**
 * The body of the `audio/wav` part of a multipart message, base64-decoded by the test itself
 * (not by the server's MIME code): the part whose header names that type, up to the next boundary.
 */
function wavAttachment(raw: Buffer): Buffer {
  const text = raw.toString('latin1');
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(text)?.[1];
  assert.ok(boundary, 'a multipart message');
  const parts = text.split(`--${boundary}`);
  const part = parts.find((p) => /^Content-Type:\s*audio\/wav/im.test(p.slice(0, p.indexOf('\r\n\r\n'))));
  assert.ok(part, 'an audio/wav part');
  const headerEnd = part.indexOf('\r\n\r\n');
  assert.match(part.slice(0, headerEnd), /^Content-Transfer-Encoding:\s*base64/im);
  return Buffer.from(part.slice(headerEnd + 4).replace(/\s+/g, ''), 'base64');
}

describe('the shipped applications with real SIP phones (baresip)', { skip, timeout: 300_000 }, () => {
  let server: TestServer;
  let dir: string;
  /** Phones: A sends a tone of A_HZ, B one of B_HZ, C silence (and the voice message). */
  let phoneA: Baresip;
  let phoneB: Baresip;
  let phoneC: Baresip;
  const address: Record<'a' | 'b' | 'c', string> = { a: '', b: '', c: '' };
  let silence: string;
  let pbx: XimssClient;

  before(async () => {
    // The greeting and the conference's question are spoken by espeak-ng.
    await ensureDebianTool('/usr/bin/espeak-ng', 'espeak-ng');
    const sipPort = await freeSipPort();
    // Media ports of this process's own (see rayo-peers.test.ts): below the default range and the
    // per-process blocks the other media tests take.
    const min = 12_000 + (process.pid % 70) * 112;
    server = await startTestServer({
      ports: { ximss: 0, http: 0, smtp: 0, xmpp: 0, sip: sipPort },
      sip: { mediaPorts: { min, max: min + 111 } },
      calls: { applicationRoutes: [{ address: `conf-*@${DOMAIN}`, account: `pbx@${DOMAIN}`, program: 'conference' }] },
    });
    await server.addAccount(`pbx@${DOMAIN}`, 'secret');
    pbx = (await server.login(`pbx@${DOMAIN}`, 'secret')).client;
    dir = mkdtempSync(join(tmpdir(), 'apps-peers-'));

    silence = writeWav(join(dir, 'silence.wav'), new Int16Array(8000));
    const registrar = `127.0.0.1:${sipPort}`;
    const phone = async (key: 'a' | 'b' | 'c', audioIn: string): Promise<Baresip> => {
      address[key] = await server.newAccount(`phone${key}`, { password: `${key}-secret` });
      const [user, host] = address[key].split('@') as [string, string];
      const started = await Baresip.start({ name: key, account: { user, password: `${key}-secret`, domain: host, registrar }, audioIn });
      await started.registered();
      return started;
    };
    phoneA = await phone('a', writeWav(join(dir, 'a.wav'), burstSamples(A_HZ, 4, 1.5, 0.5)));
    phoneB = await phone('b', writeWav(join(dir, 'b.wav'), burstSamples(B_HZ, 4, 1.3, 0.7)));
    phoneC = await phone('c', silence);
  });

  after(async () => {
    await phoneA?.stop();
    await phoneB?.stop();
    await phoneC?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh account whose Signal Rule sends every call to the voicemail application; a XIMSS session of it. */
  async function voicemailAccount(name: string): Promise<{ vm: string; owner: { client: XimssClient; urlID: string } }> {
    const vm = await server.newAccount(name);
    await server.services.accounts.setSettings((await server.services.accounts.find(vm))!, { SignalRulesAllowed: 'Any' });
    const owner = await server.login(vm, 'secret');
    await ok(owner.client, '<ruleSet type="signalIn" name="voicemail" priority="5" stage="Immediately"><action opCode="Redirect to">#voicemail</action></ruleSet>');
    return { vm, owner };
  }

  /**
   * Phone C calls `vm`, waits for the greeting and the beep, then speaks `message` (its audio is
   * switched to it) and runs `whileSpeaking`; resolves when the application has hung up, with
   * the frames of what the phone heard (judged at the beep's frequency).
   */
  async function leaveMessage(vm: string, message: string, whileSpeaking: () => Promise<void> = async () => {}): Promise<{ energy: number; share: number[] }[]> {
    const mark = phoneC.events.count;
    await phoneC.dial(`sip:${vm}`);
    await phoneC.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', WAIT_MS, mark, 'the phone: CALL_ESTABLISHED');
    // The greeting (speech: loud, without the beep's 1 kHz), then the beep.
    await untilHeard(
      phoneC,
      (samples) => {
        const list = frames(samples, [BEEP_HZ]);
        const firstBeep = list.findIndex((f) => f.energy >= QUIET && f.share[0]! > 0.8);
        return firstBeep >= 0 && list.slice(0, firstBeep).filter((f) => f.energy >= QUIET && f.share[0]! < 0.3).length >= 25 && holding(list, 0, 0.8) >= 5;
      },
      'the greeting, then the beep',
    );
    try {
      await phoneC.switchAudio(message);
      await whileSpeaking();
      // The application thanks the caller and hangs up.
      const closed = await phoneC.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the phone: the BYE after the message');
      assert.doesNotMatch(closed.param ?? '', /^[4-6]\d\d\b/, `a BYE, not a refusal: ${closed.param}`);
    } finally {
      await phoneC.switchAudio(silence);
    }
    const heard = frames(readWav(await phoneC.recording(WAIT_MS)).samples, [BEEP_HZ]);
    assert.ok(heard.filter((f) => f.energy >= QUIET && f.share[0]! < 0.3).length >= 50, 'the phone heard the greeting (speech)');
    return heard;
  }

  /** The voice messages in vm's INBOX once there are `count`: each with its raw text and decoded WAV attachment. */
  async function voiceMessages(vm: string, count: number): Promise<{ uid: number; head: string; attachment: Buffer; wav: WavAudio }[]> {
    const stored = await eventually(async () => {
      const list = await storedMessages(server, vm, 'INBOX');
      return list.length >= count ? list : undefined;
    }, 'the voice message in INBOX', WAIT_MS);
    return stored.map(({ uid, raw }) => {
      const head = raw.toString('latin1', 0, raw.indexOf('\r\n\r\n'));
      assert.match(head, /^Subject: Voice message from /m);
      assert.match(head, new RegExp(`^From: .*${address.c.replace(/[.]/g, '\\.')}`, 'm'), 'the mail is from the phone\'s account');
      const attachment = wavAttachment(raw);
      const wav = decodeWav(attachment);
      assert.equal(wav.sampleRate, 8000);
      assert.equal(wav.channels, 1);
      assert.ok(wav.complete, 'a whole WAV file');
      return { uid, head, attachment, wav };
    });
  }

  test('voicemail: a Signal Rule sends the phone\'s call to #voicemail; it hears the greeting, speaks after the beep, three seconds of silence end it, and the message arrives in INBOX with its WAV', async () => {
    const { vm, owner } = await voicemailAccount('vm');
    // A second of silence, two seconds of the tone, then silence.
    await leaveMessage(vm, writeWav(join(dir, 'message.wav'), concatSamples([new Int16Array(8000), toneSamples([MESSAGE_HZ], 2, { amplitude: 8000 }), new Int16Array(20 * 8000)])));

    const [message] = await voiceMessages(vm, 1);
    const { wav, attachment, uid } = message!;
    const recorded = frames(wav.samples, [MESSAGE_HZ]);
    const toneFrames = holding(recorded, 0, 0.8);
    // Two seconds are 100 frames; what the line and the frame edges take leaves a generous range.
    assert.ok(toneFrames >= 70 && toneFrames <= 110, `the message holds the tone for about its two seconds: ${toneFrames} frames`);
    const seconds = wav.samples.length / 8000;
    assert.ok(seconds >= 3 && seconds <= 20, `the recording ends some seconds after the tone: ${seconds} s`);
    // Nothing else loud in it (the greeting and the beep are not recorded), and it ends in silence.
    assert.ok(recorded.filter((f) => f.energy >= QUIET).length - toneFrames <= 10, 'nothing but the tone is loud in the message');
    assert.equal(holding(recorded.slice(-100), 0, 0.8), 0, 'the last two seconds are silence');

    // Through the spec's MIME URL, as a client plays it: the same bytes.
    await ok(owner.client, '<folderOpen folder="in" mailbox="INBOX"><field>UID</field></folderOpen>');
    const read = await ok(owner.client, `<folderRead folder="in" UID="${uid}"/>`);
    const parts = read.messages[0]!.element('EMail')!.element('MIME')!.elements('MIME');
    const wavPart = parts.find((p) => p.attrs.type === 'audio' && p.attrs.subtype === 'wav');
    assert.ok(wavPart, 'an audio/wav part in folderRead');
    const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${owner.urlID}/MIME/in/${uid}-${wavPart.attrs.partID}-B.wav`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^audio\/wav/);
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(attachment), 'the MIME URL gives the attachment');
  });

  test('voicemail: the phone\'s # (an RFC 4733 event) ends a message it is still speaking', async () => {
    const { vm } = await voicemailAccount('vmkey');
    // A second of silence, then the tone in bursts for a minute: no three seconds of silence end it.
    const bursts = writeWav(join(dir, 'bursts.wav'), concatSamples([new Int16Array(8000), burstSamples(MESSAGE_HZ, 60, 0.8, 0.2)]));
    await leaveMessage(vm, bursts, async () => {
      // Once the phone has sent two seconds of the tone (its own sndfile recording of what it sends), it presses #.
      const deadline = Date.now() + WAIT_MS;
      while (holding(frames(phoneC.callAudio('enc'), [MESSAGE_HZ]), 0, 0.8) < 100) {
        if (Date.now() > deadline) assert.fail('the phone did not send its message');
        await sleep(50);
      }
      await phoneC.sendDtmf('#');
    });
    const [message] = await voiceMessages(vm, 1);
    const recorded = frames(message!.wav.samples, [MESSAGE_HZ]);
    assert.ok(holding(recorded, 0, 0.8) >= 70, `the message holds the tone: ${holding(recorded, 0, 0.8)} frames`);
    // Cut while the tone went on: its last half second holds the tone (silence did not end it).
    assert.ok(holding(recorded.slice(-25), 0, 0.8) >= 5, 'the message ends while the phone still speaks');
    assert.ok(message!.wav.samples.length / 8000 < 60, 'ended by the key, long before the tone or the two minutes ran out');
  });

  /** The next taskEvent `name` from the room; its parameter. */
  const roomEvent = async (name: string, match: (value: Record<string, string>) => boolean = () => true): Promise<Record<string, string>> => {
    const event: XmlElement = await pbx.takeAsync('taskEvent', (m) => m.attrs.eventName === name && match(readValue(m) as Record<string, string>), WAIT_MS);
    return readValue(event) as Record<string, string>;
  };
  /** Whether a room event's `from` is the phone's account (a SIP address or a bare one). */
  const fromPhone = (key: 'a' | 'b' | 'c') => (value: Record<string, string>): boolean => (value.from ?? '').replace(/^sips?:/, '') === address[key];

  test('conference: three phones call conf-7; C hears A and B, A hears B but not itself; the subscriber sees them join, A and B speak, and A leave', async () => {
    await ok(pbx, '<taskCreateMeeting meetingSet="conference" meetingName="7"/>');
    // The room's task, opened before anyone calls so that the subscriber is told of every join.
    await ok(pbx, '<taskStart programName="conference" entryName="main"><param>7</param></taskStart>');
    const room = await eventually(async () => (await pbx.request('<taskFindMeeting meetingSet="conference" meetingName="7"/>')).messages[0]?.attrs.taskRef, 'the room task holds the meeting', WAIT_MS);
    await ok(pbx, `<taskSendEvent taskRef="${room}" eventName="subscribe"/>`);
    // An empty list: no subValue (the XML form of an empty array and of an empty string are alike).
    const nobody = await pbx.takeAsync('taskEvent', (m) => m.attrs.eventName === 'participants', WAIT_MS);
    assert.equal(nobody.elements('subValue').length, 0, `an empty room: ${nobody.toString()}`);

    const marks = { a: phoneA.events.count, b: phoneB.events.count, c: phoneC.events.count };
    for (const [key, phone] of [['a', phoneA], ['b', phoneB], ['c', phoneC]] as const) {
      await phone.dial(`sip:conf-7@${DOMAIN}`);
      await phone.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', WAIT_MS, marks[key], `${key}: CALL_ESTABLISHED`);
      const joined = await roomEvent('joined', fromPhone(key));
      assert.ok(joined.id, 'a participant has an id');
    }
    await roomEvent('speaking', fromPhone('a'));
    await roomEvent('speaking', fromPhone('b'));

    // C hears both tones (the frames where both sound count for each).
    await untilHeard(
      phoneC,
      (samples) => {
        const list = frames(samples, [A_HZ, B_HZ]);
        return holding(list, 0, 0.25) >= 100 && holding(list, 1, 0.25) >= 100;
      },
      `both ${A_HZ} Hz and ${B_HZ} Hz`,
    );
    // A has heard B for as long (two seconds of it): then it hangs up.
    await untilHeard(phoneA, (samples) => holding(frames(samples, [B_HZ]), 0, 0.5) >= 100, `${B_HZ} Hz`);
    await phoneA.hangup();
    await phoneA.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, marks.a, 'a: CALL_CLOSED');
    await roomEvent('left', fromPhone('a'));

    const heardByA = frames(readWav(await phoneA.recording(WAIT_MS)).samples, [A_HZ, B_HZ]);
    const energyAt = (list: typeof heardByA, index: number): number => list.reduce((sum, f) => sum + f.energy * f.share[index]!, 0);
    assert.ok(holding(heardByA, 1, 0.5) >= 100, `A heard B: ${holding(heardByA, 1, 0.5)} frames of ${heardByA.length}`);
    const own = energyAt(heardByA, 0) / energyAt(heardByA, 1);
    assert.ok(own < 0.05, `A hardly hears itself (mix-minus): its own tone has ${(own * 100).toFixed(2)} % of B's energy`);
    assert.ok(holding(heardByA, 0, 0.25) <= 5, `A's own tone is in ${holding(heardByA, 0, 0.25)} frames of what it heard`);

    // The others hang up: the room is told, and C's recording holds both.
    for (const [key, phone] of [['b', phoneB], ['c', phoneC]] as const) {
      await phone.hangup();
      await phone.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, marks[key], `${key}: CALL_CLOSED`);
      await roomEvent('left', fromPhone(key));
    }
    const heardByC = frames(readWav(await phoneC.recording(WAIT_MS)).samples, [A_HZ, B_HZ]);
    assert.ok(holding(heardByC, 0, 0.25) >= 100 && holding(heardByC, 1, 0.25) >= 100, `C heard A and B: ${holding(heardByC, 0, 0.25)} and ${holding(heardByC, 1, 0.25)} frames of ${heardByC.length}`);
    const heardByB = frames(readWav(await phoneB.recording(WAIT_MS)).samples, [A_HZ, B_HZ]);
    assert.ok(holding(heardByB, 0, 0.5) >= 50, `B heard A: ${holding(heardByB, 0, 0.5)} frames of ${heardByB.length}`);
  });

  test('conference: a phone that calls conf- without a room hears the question, types 7# and joins room 7', async () => {
    const room = (await ok(pbx, '<taskFindMeeting meetingSet="conference" meetingName="7"/>')).messages[0]?.attrs.taskRef;
    assert.ok(room, 'the room task is still there (it waits for callers)');
    const mark = phoneC.events.count;
    await phoneC.dial(`sip:conf-@${DOMAIN}`);
    await phoneC.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', WAIT_MS, mark, 'c: CALL_ESTABLISHED');
    await untilHeard(phoneC, (samples) => frames(samples, []).filter((f) => f.energy >= QUIET).length >= 25, 'the question');
    await phoneC.sendDtmf('7#');
    await roomEvent('joined', fromPhone('c'));
    await phoneC.hangup();
    await roomEvent('left', fromPhone('c'));
    const closed = await phoneC.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'c: CALL_CLOSED');
    assert.doesNotMatch(closed.param ?? '', /^[4-6]\d\d\b/, `the phone hung up a connected call: ${closed.param}`);
  });
});
