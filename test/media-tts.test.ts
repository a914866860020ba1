/**
 * Text-to-speech (src/media/tts.ts) with the real espeak-ng, installed from Debian by the test
 * when missing: rendered speech is audible, its length follows the text and the SSML, the
 * limits and the queue work, and errors have codes a caller can map. The speech also serves as
 * real talk-off material for the in-band DTMF detector and as real voice for the VAD.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { ensureDebianTool } from './fixtures/debian.js';
import { TextToSpeech, TtsError, sanitizeSsml, type Speech, type TtsErrorCode } from '../src/media/tts.js';
import { DtmfDetector } from '../src/media/dtmf-detector.js';
import { VoiceActivityDetector } from '../src/media/vad.js';
import { FRAME_SAMPLES } from '../src/media/wav.js';

const ESPEAK = '/usr/bin/espeak-ng';

/** The RMS of the samples, in 16-bit units. */
function rms(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.sqrt(sum / Math.max(1, samples.length));
}

/** Rejects with a TtsError of this code. */
async function rejectsWith(promise: Promise<unknown>, code: TtsErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof TtsError, `not a TtsError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

const SENTENCE = 'Please enter your account number, followed by the pound key.';

describe('text-to-speech with espeak-ng', () => {
  before(async () => {
    await ensureDebianTool(ESPEAK, 'espeak-ng');
  });

  test('speech is audible 8 kHz audio in 20 ms frames, and its length follows the text', async () => {
    const tts = new TextToSpeech({ binary: ESPEAK });
    const short = await tts.speak({ text: 'Hello.' });
    const long = await tts.speak({ text: `${SENTENCE} ${SENTENCE} ${SENTENCE}` });
    assert.equal(short.durationMs, (short.samples.length * 1000) / 8000);
    assert.ok(short.durationMs > 200 && short.durationMs < 3000, `"Hello." lasts ${short.durationMs} ms`);
    assert.ok(long.durationMs > 6 * short.durationMs, `${long.durationMs} ms against ${short.durationMs} ms`);
    // At espeak-ng's 175 words a minute, 33 words take about 11 s (pauses included).
    assert.ok(long.durationMs > 7000 && long.durationMs < 20000, `${long.durationMs} ms`);
    assert.ok(rms(long.samples) > 500, `RMS ${rms(long.samples)}`);
    assert.equal(long.frames.length, Math.ceil(long.samples.length / FRAME_SAMPLES));
    assert.ok(long.frames.every((frame) => frame.length === FRAME_SAMPLES));
    // Nothing above 4 kHz could be there; most of the energy is in the voice band below 3.4 kHz.
    const vad = new VoiceActivityDetector();
    const transitions = long.frames.map((frame) => vad.process(frame)).filter((t) => t);
    assert.equal(transitions[0], 'started');
  });

  test('the voice and the speed are chosen per request', async () => {
    const tts = new TextToSpeech({ binary: ESPEAK });
    const slow = await tts.speak({ text: SENTENCE, speed: 100 });
    const fast = await tts.speak({ text: SENTENCE, speed: 300 });
    assert.ok(slow.durationMs > 2 * fast.durationMs, `${slow.durationMs} ms at 100 wpm, ${fast.durationMs} ms at 300`);
    const english = await tts.speak({ text: 'Bonjour et bienvenue', voice: 'en' });
    const french = await tts.speak({ text: 'Bonjour et bienvenue', voice: 'fr' });
    assert.notDeepEqual(english.samples, french.samples);
    await rejectsWith(tts.speak({ text: 'x', voice: 'nosuchvoice' }), 'bad-request', /voice does not exist/);
    await rejectsWith(tts.speak({ text: 'x', voice: '--stdout' }), 'bad-request', /not a voice name/);
    await rejectsWith(tts.speak({ text: 'x', speed: 5 }), 'bad-request', /80 to 450/);
  });

  test('SSML: a one-second break makes the prompt a second longer', async () => {
    const tts = new TextToSpeech({ binary: ESPEAK });
    const plain = await tts.speak({ text: '<speak>Your call is important to us.</speak>', ssml: true });
    const paused = await tts.speak({ text: '<speak>Your call is <break time="1s"/> important to us.</speak>', ssml: true });
    const gained = paused.durationMs - plain.durationMs;
    assert.ok(gained > 800 && gained < 1400, `the break added ${gained} ms`);
    // Namespaced documents (as Rayo sends them) work the same.
    const namespaced = await tts.speak({
      text: '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">Your call is important to us.</speak>',
      ssml: true,
    });
    assert.ok(Math.abs(namespaced.durationMs - plain.durationMs) < 200);
  });

  test("XEP-0327's SSML example (declaration, DOCTYPE, schema attributes, CDATA's leading line break) is spoken", async () => {
    // Example 61 of XEP-0327 (the document as its CDATA carries it).
    const document = `
<?xml version="1.0"?>
<!DOCTYPE speak PUBLIC "-//W3C//DTD SYNTHESIS 1.0//EN"
"http://www.w3.org/TR/speech-synthesis/synthesis.dtd">
<speak version="1.0"
xmlns="http://www.w3.org/2001/10/synthesis"
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
xsi:schemaLocation="http://www.w3.org/2001/10/synthesis
http://www.w3.org/TR/speech-synthesis/synthesis.xsd"
xml:lang="en-US">
<p>
<s>You have 4 new messages.</s>
<s>The first is from Stephanie Williams and arrived at <break/> 3:45pm.</s>
<s>
The subject is <prosody rate="-20%">ski trip</prosody>
</s>
</p>
</speak>
`;
    const cleaned = sanitizeSsml(document);
    assert.match(cleaned, /^<speak version="1.0" xml:lang="en-US">\s*<p>\s*<s>You have 4 new messages.<\/s>/);
    assert.doesNotMatch(cleaned, /xsi|xmlns|DOCTYPE|<\?xml/);
    const speech = await new TextToSpeech({ binary: ESPEAK }).speak({ text: document, ssml: true });
    // About 20 words: several seconds, and nothing read aloud from the markup (which would take far longer).
    assert.ok(speech.durationMs > 4000 && speech.durationMs < 12000, `${speech.durationMs} ms`);
    const plain = await new TextToSpeech({ binary: ESPEAK }).speak({
      text: 'You have 4 new messages. The first is from Stephanie Williams and arrived at 3:45pm. The subject is ski trip',
    });
    assert.ok(Math.abs(speech.durationMs - plain.durationMs) < 2500, `${speech.durationMs} ms against ${plain.durationMs} ms as plain text`);
  });

  test('malformed SSML is refused before espeak-ng (which would read the tags aloud)', async () => {
    const tts = new TextToSpeech({ binary: ESPEAK });
    await rejectsWith(tts.speak({ text: '<speak>Hello <break time="1s"> world', ssml: true }), 'bad-ssml', /malformed SSML/);
    await rejectsWith(tts.speak({ text: '<speak>a</speak><speak>b</speak>', ssml: true }), 'bad-ssml');
    await rejectsWith(tts.speak({ text: '<voice>Hello</voice>', ssml: true }), 'bad-ssml', /root must be <speak>, not <voice>/);
    await rejectsWith(tts.speak({ text: 'just text', ssml: true }), 'bad-ssml');
  });

  test('what espeak-ng does not implement is stripped: spoken content kept, metadata dropped', () => {
    const document =
      '<speak xmlns="http://www.w3.org/2001/10/synthesis" version="1.1"><meta name="a" content="b"/><metadata>x</metadata>' +
      '<p>I say <phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme> &amp; <lang xml:lang="fr">oui</lang>' +
      '<desc>not spoken</desc><prosody rate="slow">slowly</prosody><break time="500ms"/></p></speak>';
    assert.equal(
      sanitizeSsml(document),
      '<speak version="1.1"><p>I say tomato &amp; oui<prosody rate="slow">slowly</prosody><break time="500ms"/></p></speak>',
    );
  });

  test('the timeout kills the synthesis; the output limit stops it', async () => {
    const long = `${SENTENCE} `.repeat(200);
    await rejectsWith(new TextToSpeech({ binary: ESPEAK, timeoutMs: 50 }).speak({ text: long }), 'timeout', /longer than 50 ms/);
    await rejectsWith(new TextToSpeech({ binary: ESPEAK, maxOutputBytes: 100_000 }).speak({ text: long }), 'too-large', /100000 bytes/);
    await rejectsWith(new TextToSpeech({ binary: ESPEAK, maxTextLength: 100 }).speak({ text: long }), 'bad-request', /too long/);
    // The limits are per request: the same engine still speaks short texts.
    const tts = new TextToSpeech({ binary: ESPEAK, maxOutputBytes: 200_000 });
    await rejectsWith(tts.speak({ text: long }), 'too-large');
    assert.ok((await tts.speak({ text: 'Goodbye.' })).durationMs > 200);
  });

  test('a missing espeak-ng is a clear error', async () => {
    await rejectsWith(new TextToSpeech({ binary: '/nonexistent/espeak-ng' }).speak({ text: 'Hello' }), 'missing', /espeak-ng is not installed/);
  });

  test('a small queue: requests beyond concurrency wait, beyond the queue are refused', async () => {
    const tts = new TextToSpeech({ binary: ESPEAK, concurrency: 1, maxQueue: 1 });
    const first = tts.speak({ text: 'one' });
    const second = tts.speak({ text: 'two' });
    assert.deepEqual(tts.load, { running: 1, queued: 1 });
    await rejectsWith(tts.speak({ text: 'three' }), 'busy', /1 running and 1 waiting/);
    // The same text as one in flight shares its synthesis rather than queueing.
    const again = tts.speak({ text: 'one' });
    const [a, b, c] = await Promise.all([first, second, again]);
    assert.equal(c, a);
    assert.ok(a.durationMs > 0 && b.durationMs > 0);
    assert.deepEqual(tts.load, { running: 0, queued: 0 });
    assert.ok((await tts.speak({ text: 'three' })).durationMs > 0);
  });

  test('the cache returns rendered prompts and evicts the least recently used beyond its budget', async () => {
    const uncached = new TextToSpeech({ binary: ESPEAK });
    const x1 = await uncached.speak({ text: 'Welcome.' });
    assert.notEqual(await uncached.speak({ text: 'Welcome.' }), x1);
    assert.equal(uncached.cachedBytes, 0);

    // A budget that holds two of the three prompts below, whatever their sizes.
    const sizes = [x1, await uncached.speak({ text: 'Goodbye.' }), await uncached.speak({ text: 'Welcome.', voice: 'en-us' })].map(
      (speech) => speech.samples.byteLength,
    );
    const budget = sizes[0]! + Math.max(sizes[1]!, sizes[2]!);
    const tts = new TextToSpeech({ binary: ESPEAK, cacheBytes: budget });
    const welcome = await tts.speak({ text: 'Welcome.' });
    assert.deepEqual(welcome.samples, x1.samples); // espeak-ng is deterministic
    const goodbye = await tts.speak({ text: 'Goodbye.' });
    assert.equal(tts.cachedBytes, sizes[0]! + sizes[1]!);
    assert.equal(await tts.speak({ text: 'Welcome.' }), welcome); // a hit: now the most recent
    // A different voice is a different prompt; caching it evicts the least recently used.
    assert.notEqual(await tts.speak({ text: 'Welcome.', voice: 'en-us' }), welcome);
    assert.equal(tts.cachedBytes, sizes[0]! + sizes[2]!);
    assert.equal(await tts.speak({ text: 'Welcome.' }), welcome);
    assert.notEqual(await tts.speak({ text: 'Goodbye.' }), goodbye);
  });

  test('real speech does not trigger the in-band DTMF detector (talk-off)', async () => {
    const tts = new TextToSpeech({ binary: ESPEAK });
    const texts = [
      'Thank you for calling. All of our representatives are busy. Please stay on the line.',
      'One two three four five six seven eight nine zero star pound.',
    ];
    for (const voice of ['en', 'en-us', 'de', 'fr']) {
      for (const text of texts) {
        const speech: Speech = await tts.speak({ text, voice });
        const detector = new DtmfDetector();
        const digits = speech.frames.map((frame) => detector.push(frame) ?? '').join('');
        assert.equal(digits, '', `${voice}: "${text}" gave ${digits}`);
      }
    }
  });
});
