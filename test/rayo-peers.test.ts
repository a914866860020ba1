/**
 * Rayo (XEP-0327) end to end with real SIP phones: Debian's baresip (test/fixtures/baresip.ts),
 * registered to accounts of the test server over UDP, and a Rayo client scripted with Debian's
 * python3-slixmpp (test/fixtures/xmpp-peer.ts). Every signal and every sample crosses a real
 * socket: SIP and RTP between baresip and the server, XMPP between the client and the server.
 *
 * - A phone calls an account whose only device is an available Rayo client; the client answers,
 *   plays a WAV served over HTTP by this test (a 1 kHz tone) and a text through espeak-ng, and
 *   collects keys the phone sends as RFC 4733 telephone-events; the phone hangs up (end hungup).
 *   What the phone heard (its sndfile recording) holds the tone and speech.
 * - The client dials a second phone registered to another account: ringing, answered, then the
 *   phone hangs up (end hungup); a second dial the client hangs up (end hangup-command), with the
 *   phone seeing the BYE, after a tone played into the dialed call reached the phone.
 * - An offered call accepted (the phone hears 180), rejected busy (486) and decline (603), given
 *   up by the phone (CANCEL: end hungup), and redirected to the other phone.
 * - A dial the phone refuses (baresip's 486: end busy), one it does not answer in the dial's
 *   timeout (end timeout, the phone gets the CANCEL), and keys the dialed phone sends.
 * - The phone hanging up during an endless output (complete hangup, end hungup); a client that
 *   goes unavailable ends the call it controls (the phone gets a BYE).
 * - A prompt with barge-in: a key the phone sends during an endless output stops the output, and
 *   the input matches it.
 *
 * In-band DTMF from baresip is not tested, because baresip cannot send it: baresip 1.0.0's
 * "sndcode" (src/audio.c audio_send_digit) always sends RFC 4733 events, and it always offers
 * telephone-event in its SDP (add_telev_codec, with no setting to leave it out), so every call
 * with it negotiates telephone-events. The server (src/services/calls/media-party.ts) runs its
 * in-band detector only for a party without telephone-events, so that a phone that sends both is
 * not heard twice; tones baresip played in its audio would therefore be ignored, by design. The
 * in-band path is tested with a plain RTP party in test/rayo.test.ts.
 *
 * Each phone and the Rayo client are started once for the file. No assertion is on timing; the
 * long timeouts are a safety net for a hung peer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { goertzelCoefficient, goertzelEnergy } from '../src/media/dtmf.js';
import { parseNlsml } from '../src/media/nlsml.js';
import { servePrompts, type PromptServer } from './fixtures/prompt-server.js';
import { Baresip, ensureBaresip } from './fixtures/baresip.js';
import { ensureDebianTool } from './fixtures/debian.js';
import { encodeWav, readWav, toneSamples, writeWav } from './fixtures/wav.js';
import { ensureSlixmpp, XmppPeer, type PresenceEvent } from './fixtures/xmpp-peer.js';
import { freePort, freeSipPort, startTestServer, type TestServer } from './helpers.js';

const baresip = await ensureBaresip();
const slixmpp = await ensureSlixmpp().then(
  () => undefined,
  (err: unknown) => `slixmpp cannot be installed: ${String(err)}`,
);
const skip = !baresip.available ? baresip.reason : (slixmpp ?? false);

const NS_RAYO = 'urn:xmpp:rayo:1';
const RAYO_CLIENT_CAPS = `<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="urn:xmpp:rayo:client:1" ver="QgayPKawpkPSDYmwT/WM94uAlu0="/>`;
/** A safety net for a hung peer, not a timing assertion. */
const WAIT_MS = 20_000;

/** 20 ms at 8 kHz: the frames the recordings are judged by. */
const FRAME = 160;
const K1000 = goertzelCoefficient(1000, 8000);

type FrameKind = 'quiet' | 'tone' | 'other' | 'mixed';

/**
 * Each 20 ms frame of `samples`: quiet (below about -44 dBFS), the 1 kHz tone (at least 80 % of
 * the frame's energy at 1 kHz), other sound (speech: loud with under 30 % at 1 kHz), or mixed
 * (a frame where the one ends and the other starts).
 */
function frameKinds(samples: Int16Array): FrameKind[] {
  const kinds: FrameKind[] = [];
  for (let start = 0; start + FRAME <= samples.length; start += FRAME) {
    const frame = samples.subarray(start, start + FRAME);
    let energy = 0;
    for (const v of frame) energy += v * v;
    if (energy / FRAME < 200 * 200) {
      kinds.push('quiet');
      continue;
    }
    const share = goertzelEnergy(frame, K1000) / energy;
    kinds.push(share > 0.8 ? 'tone' : share < 0.3 ? 'other' : 'mixed');
  }
  return kinds;
}

const count = (kinds: readonly FrameKind[], kind: FrameKind): number => kinds.filter((k) => k === kind).length;


describe('Rayo with real SIP phones (baresip)', { skip, timeout: 240_000 }, () => {
  let server: TestServer;
  let dir: string;
  let prompts: PromptServer | undefined;
  let httpBase: string;
  let domain: string;
  /** The phone that calls the Rayo-controlled account. */
  let caller: Baresip;
  /** The phone the Rayo client dials. */
  let callee: Baresip;
  let callerAddress: string;
  let calleeAddress: string;
  let ivr: string;
  let client: XmppPeer;

  before(async () => {
    await ensureDebianTool('/usr/bin/espeak-ng', 'espeak-ng');
    const sipPort = await freeSipPort();
    const xmppPort = await freePort();
    // Media ports of this process's own, below the default range (20000-29999, which servers run with
    // their defaults, such as benches, fill from its start) and the per-process blocks of 20000-32319
    // the other media tests take: a call's endpoint must not find its ports held by another process.
    const min = 12_000 + (process.pid % 70) * 112;
    // The WAV prompt is served on 127.0.0.1: the operator's opt-in for internal addresses.
    server = await startTestServer({ ports: { ximss: 0, http: 0, smtp: 0, xmpp: xmppPort, sip: sipPort }, sip: { mediaPorts: { min, max: min + 111 } }, media: { promptFetch: 'any' } });
    dir = mkdtempSync(join(tmpdir(), 'rayo-peers-'));

    // The WAV prompt: 2 s of 1 kHz at 16 kHz (the server resamples it to 8 kHz).
    const tone = encodeWav(toneSamples([1000], 2, { sampleRate: 16_000, amplitude: 8000 }), 16_000);
    prompts = await servePrompts({ 'tone.wav': tone });
    httpBase = prompts.base;

    // The account the Rayo client controls: RayoAllowed, and no device of its own.
    ivr = await server.newAccount('ivr');
    domain = ivr.slice(ivr.indexOf('@') + 1);
    const account = await server.services.accounts.find(ivr);
    await server.services.accounts.setSettings(account!, { RayoAllowed: 'Yes' });
    client = await XmppPeer.connect({ jid: ivr, password: 'secret', host: '127.0.0.1', port: xmppPort, resource: 'app' });
    // XEP example 012: available for calls, with presence to the domain.
    await client.raw(`<presence to="${domain}">${RAYO_CLIENT_CAPS}<show>chat</show></presence>`);
    await client.ping();

    // The phones send a quiet 440 Hz hum (neither the 1 kHz prompt nor a DTMF tone).
    const hum = writeWav(join(dir, 'hum.wav'), toneSamples([440], 1, { amplitude: 1500 }));
    const registrar = `127.0.0.1:${sipPort}`;
    callerAddress = await server.newAccount('desk', { password: 'desk-secret' });
    calleeAddress = await server.newAccount('mobile', { password: 'mobile-secret' });
    const phone = async (name: string, aor: string, password: string): Promise<Baresip> => {
      const [user, host] = aor.split('@') as [string, string];
      const started = await Baresip.start({ name, account: { user, password, domain: host, registrar }, audioIn: hum });
      await started.registered();
      return started;
    };
    caller = await phone('caller', callerAddress, 'desk-secret');
    callee = await phone('callee', calleeAddress, 'mobile-secret');
  });

  after(async () => {
    await caller?.stop();
    await callee?.stop();
    await client?.close().catch(() => undefined);
    await prompts?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The next Rayo presence of `event` (`offer`, `end`, `complete`…) from `from` (any call when absent). */
  async function rayoEvent(event: string, from?: string): Promise<{ from: string; xml: string }> {
    const got = (await client.waitFor(
      (e): e is PresenceEvent =>
        e.event === 'presence' &&
        (from === undefined ? (e.from ?? '').includes('@call.') : e.from === from) &&
        new RegExp(`<${event}[\\s/>]`).test(e.xml) &&
        e.xml.includes('urn:xmpp:rayo:'),
      { timeoutMs: WAIT_MS },
    )) as PresenceEvent;
    return { from: got.from!, xml: got.xml };
  }

  async function command(to: string, xml: string): Promise<void> {
    const answer = await client.iq(`<iq type="set" to="${to}">${xml}</iq>`);
    assert.equal(answer.type, 'result', `${xml}: ${answer.xml}`);
  }

  /** Starts a component on `call`; resolves with its JID (`<call>/<id>`). */
  async function start(call: string, xml: string): Promise<string> {
    const started = await client.iq(`<iq type="set" to="${call}">${xml}</iq>`);
    assert.equal(started.type, 'result', started.xml);
    const ref = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(started.xml);
    assert.ok(ref && ref[1]!.startsWith(`${call}/`), started.xml);
    return ref[1]!;
  }

  /** A component's complete event: its reason and, for a match, the NLSML's input. */
  async function completion(component: string): Promise<{ reason: string; input: string; xml: string }> {
    const { xml } = await rayoEvent('complete', component);
    const reason = /<complete[^>]*>\s*<([a-z-]+)/.exec(xml)?.[1] ?? '';
    const match = /<match[^>]*>([\s\S]*?)<\/match>/.exec(xml)?.[1];
    let input = '';
    if (match !== undefined) {
      const nlsml = match.replace(/<!\[CDATA\[|\]\]>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
      input = parseNlsml(nlsml).interpretations[0]?.input?.text.replace(/\s+/g, '') ?? '';
    }
    return { reason, input, xml };
  }

  /** The caller phone calls the Rayo account; the client is offered the call and answers it. */
  async function callAnswered(): Promise<{ call: string; mark: number }> {
    const mark = caller.events.count;
    await caller.dial(`sip:${ivr}`);
    const offer = await rayoEvent('offer');
    assert.match(offer.xml, new RegExp(`to="sip:${ivr.replace(/\./g, '\\.')}"`), offer.xml);
    assert.match(offer.xml, new RegExp(`from="sip:${callerAddress.replace(/\./g, '\\.')}"`), 'the offer names the phone\'s account');
    await command(offer.from, `<answer xmlns="${NS_RAYO}"/>`);
    await caller.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', WAIT_MS, mark, 'the caller phone: CALL_ESTABLISHED');
    return { call: offer.from, mark };
  }

  test('a phone calls the Rayo account: answered, a WAV and a text played to it, its RFC 4733 keys matched; it hangs up (end hungup)', async () => {
    const { call, mark } = await callAnswered();

    const wav = await start(call, `<output xmlns="urn:xmpp:rayo:output:1"><document url="${httpBase}/tone.wav"/></output>`);
    assert.equal((await completion(wav)).reason, 'finish');
    const speech = await start(call, `<output xmlns="urn:xmpp:rayo:output:1" voice="en"><document content-type="text/plain"><![CDATA[Please enter your account number, then press the pound key.]]></document></output>`);
    assert.equal((await completion(speech)).reason, 'finish');

    // baresip's sndcode sends RFC 4733 events (its only way); # is the terminator, not part of the input.
    const input = await start(call, `<input xmlns="urn:xmpp:rayo:input:1" mode="dtmf" terminator="#"><grammar url="builtin:dtmf/digits?minlength=2;maxlength=8"/></input>`);
    await caller.sendDtmf('2468#');
    const digits = await completion(input);
    assert.equal(digits.reason, 'match', digits.xml);
    assert.equal(digits.input, '2468');

    // The grammar of XEP example 071, keys * and 9 among them.
    const pin = /<!\[CDATA\[([\s\S]*?)\]\]>/.exec(readFileSync(new URL('../../shared/spec/rayo-examples/071-client-requests-dtmf-input-collection-from-a-call.xml', import.meta.url), 'utf8'))?.[1];
    assert.ok(pin, 'the grammar of XEP example 071');
    const second = await start(call, `<input xmlns="urn:xmpp:rayo:input:1" mode="dtmf"><grammar content-type="application/srgs+xml"><![CDATA[${pin}]]></grammar></input>`);
    await caller.sendDtmf('*9');
    const star = await completion(second);
    assert.equal(star.reason, 'match', star.xml);
    assert.equal(star.input, '*9');

    await caller.hangup();
    const end = await rayoEvent('end', call);
    assert.match(end.xml, /<hungup\s*\/>/, end.xml);
    await caller.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the caller phone: CALL_CLOSED');

    const kinds = frameKinds(readWav(await caller.recording(WAIT_MS)).samples);
    assert.ok(count(kinds, 'tone') >= 50, `the phone heard the 1 kHz WAV (${count(kinds, 'tone')} tone frames of ${kinds.length})`);
    assert.ok(count(kinds, 'other') >= 25, `the phone heard the speech (${count(kinds, 'other')} loud frames without the tone)`);
    // The tone came first, then the speech.
    const lastTone = kinds.lastIndexOf('tone');
    assert.ok(kinds.slice(lastTone).filter((k) => k === 'other').length >= 25, 'the speech followed the tone');
  });

  test('the client dials a phone: ringing, answered; the phone hangs up (end hungup); a dial the client hangs up (end hangup-command) ends the phone\'s call', async () => {
    // The phone answers and hangs up itself.
    let mark = callee.events.count;
    const placed = await client.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${calleeAddress}" from="sip:${ivr}"/></iq>`);
    assert.equal(placed.type, 'result', placed.xml);
    const first = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(placed.xml)?.[1];
    assert.ok(first, placed.xml);
    await rayoEvent('ringing', first);
    const incoming = await callee.events.waitFor((e) => e.type === 'CALL_INCOMING', WAIT_MS, mark, 'the callee phone: CALL_INCOMING');
    assert.match(incoming.peeruri ?? incoming.param ?? '', new RegExp(ivr.replace(/\./g, '\\.')), 'the phone sees the dial\'s from');
    await callee.answer();
    await rayoEvent('answered', first);
    await callee.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', WAIT_MS, mark, 'the callee phone: CALL_ESTABLISHED');
    await callee.hangup();
    assert.match((await rayoEvent('end', first)).xml, /<hungup\s*\/>/);

    // The client plays into the call, then hangs it up.
    mark = callee.events.count;
    const dialed = await client.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${calleeAddress}"/></iq>`);
    assert.equal(dialed.type, 'result', dialed.xml);
    const call = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(dialed.xml)?.[1];
    assert.ok(call, dialed.xml);
    await rayoEvent('ringing', call);
    await callee.events.waitFor((e) => e.type === 'CALL_INCOMING', WAIT_MS, mark, 'the callee phone: CALL_INCOMING');
    await callee.answer();
    await rayoEvent('answered', call);
    const wav = await start(call, `<output xmlns="urn:xmpp:rayo:output:1"><document url="${httpBase}/tone.wav"/></output>`);
    assert.equal((await completion(wav)).reason, 'finish');
    await command(call, `<hangup xmlns="${NS_RAYO}"/>`);
    assert.match((await rayoEvent('end', call)).xml, /<hangup-command\s*\/>/);
    await callee.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the callee phone saw the BYE');
    const kinds = frameKinds(readWav(await callee.recording(WAIT_MS)).samples);
    assert.ok(count(kinds, 'tone') >= 50, `the dialed phone heard the WAV (${count(kinds, 'tone')} tone frames of ${kinds.length})`);
  });

  test('an offered call: accept rings the phone, reject busy and decline reach it as 486 and 603, a caller that gives up ends the offer with hungup', async () => {
    let mark = caller.events.count;
    await caller.dial(`sip:${ivr}`);
    const busy = await rayoEvent('offer');
    await command(busy.from, `<accept xmlns="${NS_RAYO}"/>`);
    await caller.events.waitFor((e) => e.type === 'CALL_RINGING', WAIT_MS, mark, 'the caller phone: CALL_RINGING');
    await command(busy.from, `<reject xmlns="${NS_RAYO}"><busy/></reject>`);
    const refused = await caller.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the caller phone: CALL_CLOSED');
    assert.match(refused.param ?? '', /^486\b/, `the phone was told busy: ${refused.param}`);
    assert.match((await rayoEvent('end', busy.from)).xml, /<rejected[\s/>]/);

    mark = caller.events.count;
    await caller.dial(`sip:${ivr}`);
    const decline = await rayoEvent('offer');
    await command(decline.from, `<reject xmlns="${NS_RAYO}"><decline/></reject>`);
    const declined = await caller.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the caller phone: CALL_CLOSED');
    assert.match(declined.param ?? '', /^603\b/, `the phone was declined: ${declined.param}`);
    assert.match((await rayoEvent('end', decline.from)).xml, /<rejected[\s/>]/);

    // The phone hangs up while the call is offered (a CANCEL).
    mark = caller.events.count;
    await caller.dial(`sip:${ivr}`);
    const cancelled = await rayoEvent('offer');
    await caller.hangup();
    assert.match((await rayoEvent('end', cancelled.from)).xml, /<hungup\s*\/>/);
    const late = await client.iq(`<iq type="set" to="${cancelled.from}"><answer xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(late.condition, 'item-not-found', late.xml);
  });

  test('redirect sends the phone\'s call to the other phone, which rings with the caller\'s address and answers it', async () => {
    const callerMark = caller.events.count;
    const calleeMark = callee.events.count;
    await caller.dial(`sip:${ivr}`);
    const offer = await rayoEvent('offer');
    await command(offer.from, `<redirect xmlns="${NS_RAYO}" to="sip:${calleeAddress}"/>`);
    const incoming = await callee.events.waitFor((e) => e.type === 'CALL_INCOMING', WAIT_MS, calleeMark, 'the callee phone: CALL_INCOMING');
    assert.match(incoming.peeruri ?? '', new RegExp(`^sip:${caller.user}@`), `the call comes from the caller phone: ${incoming.peeruri}`);
    await callee.answer();
    await caller.events.waitFor((e) => e.type === 'CALL_ESTABLISHED', WAIT_MS, callerMark, 'the caller phone: CALL_ESTABLISHED with the other phone');
    await callee.hangup();
    await caller.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, callerMark, 'the caller phone: CALL_CLOSED');
    // The Rayo call ended when the client redirected it: by its command.
    assert.match((await rayoEvent('end', offer.from)).xml, /<hangup-command\s*\/>/);
  });

  test('a dialed phone: refusing ends the dial with busy; one that does not answer in the dial\'s timeout ends it with timeout; its RFC 4733 keys are heard', async () => {
    let mark = callee.events.count;
    const dial = async (attrs = ''): Promise<string> => {
      const placed = await client.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${calleeAddress}"${attrs}/></iq>`);
      assert.equal(placed.type, 'result', placed.xml);
      const call = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(placed.xml)?.[1];
      assert.ok(call, placed.xml);
      return call;
    };
    // baresip refuses an incoming call with 486 Rejected.
    const refused = await dial();
    await callee.events.waitFor((e) => e.type === 'CALL_INCOMING', WAIT_MS, mark, 'the callee phone: CALL_INCOMING');
    await callee.hangup();
    assert.match((await rayoEvent('end', refused)).xml, /<busy[\s/>]/);

    mark = callee.events.count;
    const unanswered = await dial(' timeout="1500"');
    await rayoEvent('ringing', unanswered);
    assert.match((await rayoEvent('end', unanswered)).xml, /<timeout[\s/>]/);
    await callee.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the callee phone: the CANCEL');

    // The server offers telephone-event; the phone takes it and its keys reach an input component.
    mark = callee.events.count;
    const keyed = await dial();
    await callee.events.waitFor((e) => e.type === 'CALL_INCOMING', WAIT_MS, mark, 'the callee phone: CALL_INCOMING');
    await callee.answer();
    await rayoEvent('answered', keyed);
    const input = await start(keyed, `<input xmlns="urn:xmpp:rayo:input:1" mode="dtmf"><grammar url="builtin:dtmf/digits?length=3"/></input>`);
    await callee.sendDtmf('509');
    const done = await completion(input);
    assert.equal(done.reason, 'match', done.xml);
    assert.equal(done.input, '509');
    await callee.hangup();
    assert.match((await rayoEvent('end', keyed)).xml, /<hungup\s*\/>/);
  });

  test('the phone hangs up during an endless output: the output completes with hangup; a client that goes away ends the call it controls with a BYE to the phone', async () => {
    const playing = await callAnswered();
    const output = await start(playing.call, `<output xmlns="urn:xmpp:rayo:output:1" repeat-times="0"><document url="${httpBase}/tone.wav"/></output>`);
    const heard = (): number => count(frameKinds(caller.callAudio()), 'tone');
    for (let i = 0; i < 400 && heard() < 10; i++) await sleep(50);
    assert.ok(heard() >= 10, 'the phone hears the output');
    await caller.hangup();
    assert.equal((await completion(output)).reason, 'hangup');
    assert.match((await rayoEvent('end', playing.call)).xml, /<hungup\s*\/>/);

    const held = await callAnswered();
    // XEP example 013: the client is no longer available.
    await client.raw(`<presence to="${domain}" type="unavailable"/>`);
    const closed = await caller.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, held.mark, 'the caller phone: the BYE');
    assert.doesNotMatch(closed.param ?? '', /^[4-6]\d\d\b/, `a BYE, not a refusal: ${closed.param}`);
    const gone = await client.iq(`<iq type="set" to="${held.call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(gone.condition, 'item-not-found', gone.xml);
    // Available again for the tests after this one.
    await client.raw(`<presence to="${domain}">${RAYO_CLIENT_CAPS}<show>chat</show></presence>`);
    await client.ping();
  });

  test('prompt with barge-in: a key the phone sends during an endless output stops it, and the input matches', async () => {
    const { call, mark } = await callAnswered();
    const prompt = await start(
      call,
      `<prompt xmlns="urn:xmpp:rayo:prompt:1" barge-in="true"><output xmlns="urn:xmpp:rayo:output:1" repeat-times="0"><document url="${httpBase}/tone.wav"/></output><input xmlns="urn:xmpp:rayo:input:1" mode="dtmf"><grammar url="builtin:dtmf/digits?length=2"/></input></prompt>`,
    );
    // The phone hears the prompt before it presses a key.
    const heard = (): number => count(frameKinds(caller.callAudio()), 'tone');
    for (let i = 0; i < 400 && heard() < 10; i++) await sleep(50);
    assert.ok(heard() >= 10, 'the phone hears the prompt\'s tone');
    await caller.sendDtmf('73');
    const done = await completion(prompt);
    assert.equal(done.reason, 'match', done.xml);
    assert.equal(done.input, '73');
    // A second of nothing (the server's own initial timeout), then the client hangs up.
    const quiet = await start(call, `<input xmlns="urn:xmpp:rayo:input:1" mode="dtmf" initial-timeout="1500"><grammar url="builtin:dtmf/digits?length=4"/></input>`);
    assert.equal((await completion(quiet)).reason, 'noinput');
    await command(call, `<hangup xmlns="${NS_RAYO}"/>`);
    assert.match((await rayoEvent('end', call)).xml, /<hangup-command\s*\/>/);
    await caller.events.waitFor((e) => e.type === 'CALL_CLOSED', WAIT_MS, mark, 'the caller phone saw the BYE');
    const kinds = frameKinds(readWav(await caller.recording(WAIT_MS)).samples);
    assert.ok(count(kinds, 'tone') >= 10, 'the prompt was heard');
    // The output stopped at the key: the last second of the call is without the tone.
    const tail = kinds.slice(-40);
    assert.equal(count(tail, 'tone'), 0, `no tone after the barge-in: ${tail.join(' ')}`);
  });
});
