/**
 * The media engine's audio building blocks (src/media): WAV reading and writing, resampling,
 * tones, the streaming DTMF detector, voice activity detection and the mixer. The audio is
 * made here and the expected results are computed from properties (a tone's frequency and level
 * measured with Goertzel, energy ratios, the sum of the other parties) rather than written down.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../src/media/g711.js';
import { detectDtmf, goertzelCoefficient, goertzelEnergy } from '../src/media/dtmf.js';
import { CALL_RATE, FRAME_SAMPLES, WavDecoder, WavError, WavWriter, encodeWav, readWav, readWavFile, toFrames, wavToFrames } from '../src/media/wav.js';
import { Resampler, resample } from '../src/media/resample.js';
import { ToneGenerator, amplitudeOfDbm0, beep, concatSamples, dbm0OfAmplitude, dtmfPair, dtmfSequence, dtmfTone, silence } from '../src/media/tones.js';
import { DtmfDetector, type DtmfDetectorOptions } from '../src/media/dtmf-detector.js';
import { VoiceActivityDetector, type VadTransition } from '../src/media/vad.js';
import { Mixer, mixInto, softLimit } from '../src/media/mixer.js';
import { ensureDebianTool } from './fixtures/debian.js';

const run = promisify(execFile);
const SOX = '/usr/bin/sox';

// ---------------------------------------------------------------------------------------------
// Signal helpers

function sine(frequency: number, rate: number, count: number, amplitude = 10000, phase = 0): Int16Array {
  const out = new Int16Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * frequency * i) / rate + phase));
  return out;
}

function meanSquare(samples: Int16Array, from = 0, to = samples.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += samples[i]! * samples[i]!;
  return sum / Math.max(1, to - from);
}

/** The share of the samples' energy at `frequency` (Goertzel, scaled to the block's energy). */
function shareAt(samples: Int16Array, frequency: number, rate: number): number {
  return goertzelEnergy(samples, goertzelCoefficient(frequency, rate)) / (meanSquare(samples) * samples.length);
}

const concat = (...parts: Int16Array[]): Int16Array => concatSamples(parts);

/** A seeded generator (a 32-bit LCG) and Gaussian noise from it: the same noise on every run. */
function noiseSource(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** `signal` plus white noise at `snrDb` below the signal's power (measured over its non-silent samples). */
function withNoise(signal: Int16Array, snrDb: number, seed = 7): Int16Array {
  let power = 0;
  let count = 0;
  for (const s of signal) if (s !== 0) {
    power += s * s;
    count++;
  }
  const sigma = Math.sqrt(power / count / 10 ** (snrDb / 10));
  const gauss = noiseSource(seed);
  return signal.map((s) => Math.max(-32768, Math.min(32767, Math.round(s + sigma * gauss()))));
}

/**
 * Speech-like audio: a glottal-pulse-like sum of harmonics of a fundamental that glides between
 * about 90 and 260 Hz, shaped by two moving formants, in syllables of about 200 ms.
 */
function speechLike(seconds: number, seed = 3, peak = 12000): Int16Array {
  const rate = 8000;
  const out = new Int16Array(Math.round(seconds * rate));
  const gauss = noiseSource(seed);
  const phases = new Float64Array(40);
  const raw = new Float64Array(out.length);
  let max = 0;
  for (let i = 0; i < out.length; i++) {
    const t = i / rate;
    const f0 = 175 + 60 * Math.sin(2 * Math.PI * 0.7 * t) + 25 * Math.sin(2 * Math.PI * 3.1 * t) + 2 * gauss();
    const f1 = 600 + 200 * Math.sin(2 * Math.PI * 2.3 * t);
    const f2 = 1500 + 600 * Math.sin(2 * Math.PI * 1.7 * t + 1);
    const syllable = Math.max(0, Math.sin(2 * Math.PI * 2.5 * t)) ** 0.5;
    let value = 0;
    for (let k = 1; k < phases.length; k++) {
      const f = k * f0;
      if (f > 3800) break;
      phases[k] = phases[k]! + (2 * Math.PI * f) / rate;
      const formants = 1 / (1 + ((f - f1) / 150) ** 2) + 0.6 / (1 + ((f - f2) / 200) ** 2) + 0.05;
      value += (formants / k ** 0.5) * Math.sin(phases[k]!);
    }
    raw[i] = value * syllable;
    max = Math.max(max, Math.abs(raw[i]!));
  }
  for (let i = 0; i < out.length; i++) out[i] = Math.round((raw[i]! / max) * peak);
  return out;
}

/** Feeds `audio` to a detector in 20 ms frames and returns the digits with their start times. */
function detect(audio: Int16Array, options: DtmfDetectorOptions = {}, frame = FRAME_SAMPLES): { digit: string; startMs: number }[] {
  const detector = new DtmfDetector(options);
  const found: { digit: string; startMs: number }[] = [];
  for (let i = 0; i < audio.length; i += frame) {
    const digit = detector.push(audio.subarray(i, i + frame));
    if (digit) found.push({ digit, startMs: detector.digitStartMs });
  }
  return found;
}

const digitsOf = (found: { digit: string }[]): string => found.map((f) => f.digit).join('');

/** A RIFF/WAVE file of the given chunks, each [id, body]. */
function riff(chunks: [string, Uint8Array][]): Buffer {
  const parts: Buffer[] = [Buffer.from('WAVE', 'ascii')];
  for (const [id, body] of chunks) {
    const head = Buffer.alloc(8);
    head.write(id, 0, 'ascii');
    head.writeUInt32LE(body.length, 4);
    parts.push(head, Buffer.from(body));
    if (body.length & 1) parts.push(Buffer.alloc(1));
  }
  const content = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(content.length, 4);
  return Buffer.concat([head, content]);
}

function fmt(code: number, channels: number, rate: number, bits: number, extra?: Buffer): Buffer {
  const body = Buffer.alloc(16);
  body.writeUInt16LE(code, 0);
  body.writeUInt16LE(channels, 2);
  body.writeUInt32LE(rate, 4);
  body.writeUInt32LE((rate * channels * bits) / 8, 8);
  body.writeUInt16LE((channels * bits) / 8, 12);
  body.writeUInt16LE(bits, 14);
  return extra ? Buffer.concat([body, extra]) : body;
}

function pcm16(samples: Int16Array): Buffer {
  const out = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => out.writeInt16LE(s, i * 2));
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('WAV', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ximssd-wav-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('16-bit PCM round-trips exactly, at any rate', () => {
    const samples = concat(sine(440, 16000, 1600, 30000), new Int16Array([-32768, 32767, 0, -1]));
    const audio = readWav(encodeWav(samples, { sampleRate: 16000 }));
    assert.equal(audio.sampleRate, 16000);
    assert.equal(audio.channels, 1);
    assert.equal(audio.encoding, 'pcm16');
    assert.deepEqual(audio.samples, samples);
  });

  test('μ-law and A-law files decode to what G.711 makes of the samples', () => {
    const samples = sine(1000, 8000, 801, 20000);
    const ulaw = readWav(encodeWav(samples, { encoding: 'ulaw' }));
    assert.equal(ulaw.encoding, 'ulaw');
    assert.deepEqual(ulaw.samples, decodeUlaw(encodeUlaw(samples)));
    const alaw = readWav(encodeWav(samples, { encoding: 'alaw' }));
    assert.equal(alaw.encoding, 'alaw');
    assert.deepEqual(alaw.samples, decodeAlaw(encodeAlaw(samples)));
    // An odd number of 8-bit samples: the data chunk is padded, and the pad is not a sample.
    assert.equal(encodeWav(samples, { encoding: 'ulaw' }).length % 2, 0);
    assert.equal(ulaw.samples.length, 801);
  });

  test('stereo is averaged to mono', () => {
    const left = sine(500, 8000, 800, 8000);
    const right = sine(1300, 8000, 800, 6000);
    const interleaved = new Int16Array(1600);
    for (let i = 0; i < 800; i++) {
      interleaved[2 * i] = left[i]!;
      interleaved[2 * i + 1] = right[i]!;
    }
    const audio = readWav(encodeWav(interleaved, { channels: 2 }));
    assert.equal(audio.channels, 2);
    assert.equal(audio.samples.length, 800);
    for (let i = 0; i < 800; i++) assert.equal(audio.samples[i], (left[i]! + right[i]!) >> 1);
  });

  test('8-bit PCM, WAVE_FORMAT_EXTENSIBLE, and LIST/fact chunks (odd-sized ones too) are read', () => {
    const bytes = Uint8Array.from([128, 255, 0, 64, 192]);
    const list = Buffer.from('INFOISFT\x05\x00\x00\x00abcd\x00', 'latin1'); // odd length: padded
    const audio = readWav(riff([['LIST', list.subarray(0, 17)], ['fmt ', fmt(1, 1, 11025, 8)], ['fact', Buffer.alloc(4)], ['data', bytes]]));
    assert.equal(audio.encoding, 'pcm8');
    assert.equal(audio.sampleRate, 11025);
    assert.deepEqual([...audio.samples], [0, 127 << 8, -128 << 8, -64 << 8, 64 << 8]);

    const samples = sine(300, 44100, 441);
    const extension = Buffer.alloc(24);
    extension.writeUInt16LE(22, 0); // cbSize
    extension.writeUInt16LE(16, 2); // valid bits
    extension.writeUInt32LE(4, 4); // channel mask
    extension.writeUInt16LE(1, 8); // sub-format GUID: PCM
    const extensible = readWav(riff([['fmt ', fmt(0xfffe, 1, 44100, 16, extension)], ['data', pcm16(samples)]]));
    assert.equal(extensible.encoding, 'pcm16');
    assert.deepEqual(extensible.samples, samples);
  });

  test('what cannot be read is refused with a WavError saying why', () => {
    const good = encodeWav(sine(1000, 8000, 400));
    const cases: [Uint8Array, RegExp][] = [
      [Buffer.from('hello'), /shorter than a RIFF header/],
      [Buffer.from('RIFF\0\0\0\0AVI LIST'), /RIFF type is "AVI "/],
      [Buffer.concat([Buffer.from('RIFX'), good.subarray(4)]), /big-endian/],
      [good.subarray(0, good.length - 10), /truncated: its data chunk announces 800 bytes, 790/],
      [riff([['data', Buffer.alloc(4)]]), /data chunk before its fmt chunk/],
      [riff([['fmt ', fmt(1, 1, 8000, 16)]]), /no data chunk/],
      [riff([['LIST', Buffer.alloc(4)]]), /no fmt chunk/],
      [riff([['fmt ', fmt(3, 1, 8000, 32)], ['data', Buffer.alloc(8)]]), /unsupported WAV format 3/],
      [riff([['fmt ', fmt(1, 1, 8000, 24)], ['data', Buffer.alloc(6)]]), /sample size: 24 bits/],
      [riff([['fmt ', fmt(7, 1, 8000, 16)], ['data', Buffer.alloc(6)]]), /μ-law sample size: 16 bits/],
      [riff([['fmt ', fmt(1, 3, 8000, 16)], ['data', Buffer.alloc(6)]]), /channel count 3/],
      [riff([['fmt ', fmt(1, 1, 8000, 16).subarray(0, 14)], ['data', Buffer.alloc(6)]]), /fmt chunk is too short/],
      [riff([['fmt ', fmt(1, 1, 0, 16)], ['data', Buffer.alloc(6)]]), /sample rate 0/],
    ];
    for (const [data, reason] of cases) assert.throws(() => readWav(data), (err: unknown) => err instanceof WavError && reason.test(err.message), String(reason));
    assert.throws(() => readWav(good, { maxBytes: 100 }), /too large: 844 bytes, the limit is 100/);
  });

  test('a streamed header (sizes unknown, as espeak-ng --stdout writes) is read to the end only when allowed', () => {
    const samples = sine(700, 22050, 1001);
    const wav = encodeWav(samples, { sampleRate: 22050 });
    wav.writeUInt32LE(0x7ffff000, 40);
    wav.writeUInt32LE(0x7ffff024, 4);
    assert.throws(() => readWav(wav), /truncated/);
    assert.deepEqual(readWav(wav, { streamed: true }).samples, samples);
  });

  test('WavDecoder reads a file as it arrives, in pieces of any size', () => {
    const samples = sine(700, 16000, 3001, 12000);
    const interleaved = new Int16Array(samples.length * 2).map((_, i) => (i % 2 ? -samples[i >> 1]! >> 1 : samples[i >> 1]!));
    const list = Buffer.alloc(101, 0x41);
    for (const wav of [
      riff([['LIST', list], ['fmt ', fmt(1, 2, 16000, 16)], ['data', pcm16(interleaved)]]),
      encodeWav(samples, { encoding: 'ulaw', sampleRate: 16000 }),
    ]) {
      const whole = readWav(wav).samples;
      for (const piece of [1, 3, 45, 1000]) {
        const decoder = new WavDecoder();
        const parts: Int16Array[] = [];
        for (let i = 0; i < wav.length; i += piece) {
          parts.push(decoder.push(wav.subarray(i, i + piece)));
          if (i + piece < 44) assert.equal(decoder.info, undefined);
        }
        decoder.end();
        assert.deepEqual(concat(...parts), whole, `pieces of ${piece}`);
        assert.equal(decoder.info!.sampleRate, 16000);
      }
    }
    const truncated = new WavDecoder();
    truncated.push(encodeWav(samples).subarray(0, 1000));
    assert.throws(() => truncated.end(), /announces 6002 bytes, 956 are there/);
    const header = new WavDecoder();
    header.push(encodeWav(samples).subarray(0, 30));
    assert.throws(() => header.end(), /truncated inside its "fmt " chunk/);
    const limited = new WavDecoder({ maxBytes: 5000 });
    limited.push(encodeWav(samples).subarray(0, 4000));
    assert.throws(() => limited.push(new Uint8Array(1001)), /too large: 5001 bytes/);
  });

  test('readWavFile refuses a file over the limit before reading it', async () => {
    const path = join(dir, 'big.wav');
    await writeFile(path, encodeWav(new Int16Array(8000)));
    await assert.rejects(readWavFile(path, { maxBytes: 1000 }), /too large: 16044 bytes, the limit is 1000/);
    assert.equal((await readWavFile(path)).samples.length, 8000);
    await assert.rejects(readWavFile(dir), /not a file/);
  });

  test('WavWriter streams a long recording to disk and patches the header on close', async () => {
    const path = join(dir, 'recording.wav');
    const writer = await WavWriter.create(path);
    const tone = sine(1000, 8000, 8000 * 30, 9000); // 30 s, 480 KB
    for (let i = 0; i < tone.length; i += FRAME_SAMPLES) await writer.write(tone.subarray(i, i + FRAME_SAMPLES));
    // Before close, most of it is on disk already (not held in memory), under a header announcing nothing.
    const before = await readFile(path);
    assert.ok(before.length > 400_000, `only ${before.length} bytes on disk before close`);
    assert.equal(before.readUInt32LE(40), 0);
    assert.equal(writer.samples, tone.length);
    await writer.close();
    const file = await readFile(path);
    assert.equal(file.length, 44 + tone.length * 2);
    assert.equal(file.readUInt32LE(4), file.length - 8);
    assert.deepEqual(readWav(file).samples, tone);
    await assert.rejects(writer.write(tone.subarray(0, 160)), /closed/);
  });

  test('WavWriter writes G.711 (with its fact chunk) and stereo', async () => {
    const path = join(dir, 'alaw.wav');
    const writer = await WavWriter.create(path, { encoding: 'alaw' });
    const samples = sine(440, 8000, 8001, 15000);
    await writer.write(samples.subarray(0, 5000));
    await writer.write(samples.subarray(5000));
    await writer.close();
    const file = await readFile(path);
    assert.equal(file.length, 58 + 8001 + 1);
    assert.equal(file.toString('ascii', 38, 42), 'fact');
    assert.equal(file.readUInt32LE(46), 8001);
    assert.deepEqual(readWav(file).samples, decodeAlaw(encodeAlaw(samples)));

    const stereoPath = join(dir, 'stereo.wav');
    const stereo = await WavWriter.create(stereoPath, { channels: 2, sampleRate: 16000 });
    await stereo.write(new Int16Array([100, 300]));
    await stereo.writeChannels(new Int16Array([-100]), new Int16Array([-300]));
    await assert.rejects(stereo.writeChannels(new Int16Array(2), new Int16Array(3)), /differ in length/);
    await assert.rejects(stereo.write(new Int16Array(3)), /even number/);
    await stereo.close();
    const read = await readWavFile(stereoPath);
    assert.deepEqual({ rate: read.sampleRate, channels: read.channels, samples: [...read.samples] }, { rate: 16000, channels: 2, samples: [200, -200] });
    assert.equal((await stat(stereoPath)).size, 44 + 8);
  });

  test('a two-channel recording keeps each direction on its side; writes must be awaited in turn', async () => {
    const path = join(dir, 'directions.wav');
    const writer = await WavWriter.create(path, { channels: 2 });
    const caller = sine(440, 8000, 8000 * 10, 8000);
    const callee = sine(1200, 8000, 8000 * 10, 8000);
    for (let i = 0; i < caller.length; i += FRAME_SAMPLES) {
      await writer.writeChannels(caller.subarray(i, i + FRAME_SAMPLES), callee.subarray(i, i + FRAME_SAMPLES));
    }
    // 10 s of stereo fills several batches: a second write while the first waits for the disk is refused.
    const first = writer.write(new Int16Array(70_000));
    await assert.rejects(writer.write(new Int16Array(2)), /before the previous one finished/);
    await first;
    await writer.close();
    const file = await readFile(path);
    assert.equal(file.length, 44 + (caller.length * 2 + 70_000) * 2);
    const left = new Int16Array(caller.length).map((_, i) => file.readInt16LE(44 + 4 * i));
    const right = new Int16Array(caller.length).map((_, i) => file.readInt16LE(46 + 4 * i));
    assert.deepEqual(left, caller);
    assert.deepEqual(right, callee);
    const mono = await WavWriter.create(join(dir, 'mono.wav'));
    await assert.rejects(mono.writeChannels(caller, callee), /two-channel/);
    await mono.close();
  });

  test('any supported WAV becomes 8 kHz 20 ms frames that keep the tone', () => {
    const tone = sine(1000, 22050, 22050, 8000); // 1 s
    const frames = wavToFrames(encodeWav(tone, { sampleRate: 22050 }));
    assert.equal(frames.length, Math.ceil(CALL_RATE / FRAME_SAMPLES));
    assert.ok(frames.every((f) => f.length === FRAME_SAMPLES), 'frames.every((f) => f.length === FRAME_SAMPLES)');
    const middle = concat(...frames.slice(10, 40));
    assert.ok(shareAt(middle, 1000, 8000) > 0.97, 'shareAt(middle, 1000, 8000) > 0.97');
    assert.ok(Math.abs(10 * Math.log10(meanSquare(middle) / meanSquare(tone))) < 0.2, 'Math.abs(10 * Math.log10(meanSquare(middle) / meanSquare(tone))) < 0.2');
    // An 8 kHz μ-law file is not resampled: its frames are its decoded samples, the last padded.
    const ulaw = encodeWav(sine(500, 8000, 500), { encoding: 'ulaw' });
    const direct = wavToFrames(ulaw);
    assert.equal(direct.length, 4);
    assert.deepEqual(direct[0], readWav(ulaw).samples.subarray(0, 160));
    assert.deepEqual([...direct[3]!.subarray(20)], new Array(140).fill(0));
    assert.equal(toFrames(new Int16Array(0)).length, 0);
  });
});

describe('WAV files of another writer and reader (sox)', () => {
  let dir: string;
  before(async () => {
    await ensureDebianTool(SOX, 'sox');
    dir = await mkdtemp(join(tmpdir(), 'ximssd-sox-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const synth = async (name: string, args: string[], frequency: number): Promise<string> => {
    const path = join(dir, name);
    await run(SOX, ['-n', ...args, path, 'synth', '0.5', 'sine', String(frequency), 'gain', '-6']);
    return path;
  };

  test("sox's PCM, μ-law, A-law, 8-bit and stereo files are read, and keep their tone at 8 kHz", async () => {
    const cases: [string, string[], string][] = [
      ['stereo-44k.wav', ['-r', '44100', '-c', '2', '-e', 'signed', '-b', '16'], 'pcm16'],
      ['ulaw.wav', ['-r', '8000', '-e', 'u-law'], 'ulaw'],
      ['alaw.wav', ['-r', '8000', '-e', 'a-law'], 'alaw'],
      ['u8-11k.wav', ['-r', '11025', '-e', 'unsigned', '-b', '8'], 'pcm8'],
      ['pcm-48k.wav', ['-r', '48000', '-e', 'signed', '-b', '16'], 'pcm16'],
    ];
    for (const [name, args, encoding] of cases) {
      const audio = await readWavFile(await synth(name, args, 1000));
      assert.equal(audio.encoding, encoding, name);
      const samples = concat(...wavToFrames(audio)).subarray(400, 3600);
      assert.ok(shareAt(samples, 1000, 8000) > 0.95, `${name}: ${shareAt(samples, 1000, 8000)}`);
      // -6 dB of full scale: a peak of about 16400, an RMS of about 11600.
      const level = Math.sqrt(meanSquare(samples));
      assert.ok(level > 10_500 && level < 12_500, `${name}: RMS ${level}`);
    }
  });

  test('what sox writes that we do not read (24-bit, four channels, float) is refused clearly', async () => {
    await assert.rejects(readWavFile(await synth('24.wav', ['-r', '8000', '-b', '24'], 440)), /PCM sample size: 24 bits/);
    await assert.rejects(readWavFile(await synth('quad.wav', ['-r', '8000', '-c', '4', '-b', '16'], 440)), /channel count 4/);
    await assert.rejects(readWavFile(await synth('float.wav', ['-r', '8000', '-e', 'floating-point', '-b', '32'], 440)), /unsupported WAV format 3/);
  });

  test('sox reads our files: format, rate, channels, length and level agree', async () => {
    const tone = sine(1000, 8000, 8000, 16384);
    for (const [encoding, soxName] of [
      ['pcm16', 'Signed Integer PCM'],
      ['ulaw', 'u-law'],
      ['alaw', 'A-law'],
    ] as const) {
      const path = join(dir, `ours-${encoding}.wav`);
      const writer = await WavWriter.create(path, { encoding });
      for (let i = 0; i < tone.length; i += FRAME_SAMPLES) await writer.write(tone.subarray(i, i + FRAME_SAMPLES));
      await writer.close();
      const { stdout: info } = await run('/usr/bin/soxi', [path]);
      assert.match(info, new RegExp(`Sample Encoding: .*${soxName}`), info);
      assert.match(info, /Sample Rate\s*: 8000/);
      assert.match(info, /Channels\s*: 1/);
      assert.match(info, /= 8000 samples/);
      const { stderr: stat } = await run(SOX, [path, '-n', 'stat']);
      const rms = Number(/RMS\s+amplitude:\s+([\d.]+)/.exec(stat)?.[1]) * 32768;
      assert.ok(Math.abs(rms - 16384 / Math.SQRT2) < 200, `${encoding}: sox measures RMS ${rms}`);
    }
  });

  test("our 44.1 → 8 kHz resampling agrees with sox's", async () => {
    const input = join(dir, 'sweep-44k.wav');
    await run(SOX, ['-n', '-r', '44100', '-b', '16', input, 'synth', '1', 'sine', '300-3300', 'gain', '-6']);
    const output = join(dir, 'sweep-8k.wav');
    await run(SOX, [input, '-r', '8000', output]);
    const theirs = (await readWavFile(output)).samples;
    const ours = resample((await readWavFile(input)).samples, 44100, 8000);
    assert.equal(ours.length, theirs.length);
    let difference = 0;
    for (let i = 400; i < 7600; i++) difference += (ours[i]! - theirs[i]!) ** 2;
    const ratioDb = 10 * Math.log10(difference / 7200 / meanSquare(theirs, 400, 7600));
    assert.ok(ratioDb < -30, `ours and sox's differ by ${ratioDb} dB`);
  });
});

describe('resampling', () => {
  const pairs: [number, number][] = [
    [22050, 8000],
    [16000, 8000],
    [44100, 8000],
    [48000, 8000],
    [8000, 16000],
    [8000, 22050],
    [8000, 44100],
    [8000, 48000],
  ];

  test('a 1 kHz sine keeps its frequency and its level at every rate pair', () => {
    for (const [from, to] of pairs) {
      const out = resample(sine(1000, from, from, 10000), from, to);
      assert.equal(out.length, to);
      const steady = out.subarray(to / 10, to - to / 10);
      assert.ok(shareAt(steady, 1000, to) > 0.98, `${from}→${to}: ${shareAt(steady, 1000, to)}`);
      assert.ok(shareAt(steady, 1100, to) < 0.01, `${from}→${to} leaks to 1100 Hz`);
      const gainDb = 10 * Math.log10(meanSquare(steady) / (10000 * 10000 / 2));
      assert.ok(Math.abs(gainDb) < 0.1, `${from}→${to}: ${gainDb} dB`);
    }
  });

  test('a tone above the new Nyquist frequency is removed, not aliased', () => {
    for (const from of [16000, 22050, 44100, 48000]) {
      const input = sine(5000, from, from, 10000); // would fold to 3 kHz at 8 kHz
      const out = resample(input, from, 8000);
      const attenuationDb = 10 * Math.log10(meanSquare(out, 800, 7200) / meanSquare(input));
      assert.ok(attenuationDb < -50, `${from}: 5 kHz only ${attenuationDb} dB down`);
      const aliasPower = goertzelEnergy(out.subarray(800, 7200), goertzelCoefficient(3000, 8000)) / 6400;
      assert.ok(aliasPower < 1e-5 * meanSquare(input), `${from}: ${aliasPower} at 3 kHz`);
    }
  });

  test('linear interpolation alone would alias: the filter does better by far', () => {
    // The same 5 kHz tone, decimated by picking samples at 8 kHz instants, folds to 3 kHz at full level.
    const input = sine(5000, 22050, 22050, 10000);
    const naive = new Int16Array(8000).map((_, n) => input[Math.floor((n * 22050) / 8000)]!);
    assert.ok(shareAt(naive, 3000, 8000) > 0.5, 'shareAt(naive, 3000, 8000) > 0.5');
    const filtered = meanSquare(resample(input, 22050, 8000), 100, 7900);
    assert.ok(filtered < meanSquare(naive) / 1e5, `${filtered} against ${meanSquare(naive)}`);
  });

  test('the output is aligned with the input: a slow sine matches its 8 kHz counterpart', () => {
    const out = resample(sine(300, 22050, 22050, 10000), 22050, 8000);
    const expected = sine(300, 8000, 8000, 10000);
    let worst = 0;
    for (let i = 200; i < 7800; i++) worst = Math.max(worst, Math.abs(out[i]! - expected[i]!));
    assert.ok(worst < 50, `worst difference ${worst}`);
  });

  test('streaming in chunks of any size gives the same samples as one call', () => {
    const input = withNoise(sine(1234, 44100, 44100, 8000), 10);
    const whole = resample(input, 44100, 8000);
    for (const chunk of [1, 160, 441, 1000, 7919]) {
      const resampler = new Resampler(44100, 8000);
      const parts: Int16Array[] = [];
      for (let i = 0; i < input.length; i += chunk) parts.push(resampler.process(input.subarray(i, i + chunk)).slice());
      parts.push(resampler.flush().slice());
      assert.deepEqual(concat(...parts), whole, `chunks of ${chunk}`);
    }
    const same = new Resampler(8000, 8000);
    assert.ok(same.passthrough, 'same.passthrough');
    assert.deepEqual(same.process(new Int16Array([1, 2, 3])), new Int16Array([1, 2, 3]));
  });

  test('a resampler reuses its output buffer, and unsupported rates are refused', () => {
    const resampler = new Resampler(16000, 8000);
    const first = resampler.process(new Int16Array(320));
    const second = resampler.process(new Int16Array(320));
    assert.equal(first.buffer, second.buffer);
    assert.throws(() => new Resampler(0, 8000), /unsupported input sample rate: 0/);
    assert.throws(() => new Resampler(8000, 22050.5), /unsupported output sample rate/);
    assert.throws(() => resample(new Int16Array(1), 1e6, 8000), /unsupported input sample rate/);
  });
});

describe('tones', () => {
  test('levels in dBm0 follow G.711 (full-scale sine is +3.17 dBm0)', () => {
    assert.equal(Math.round(amplitudeOfDbm0(3.17)), 32767);
    for (const level of [-30, -10, 0]) assert.ok(Math.abs(dbm0OfAmplitude(amplitudeOfDbm0(level)) - level) < 1e-9, 'Math.abs(dbm0OfAmplitude(amplitudeOfDbm0(level)) - level) < 1e-9');
    assert.throws(() => amplitudeOfDbm0(4), /at most \+3.17/);
    assert.throws(() => amplitudeOfDbm0(Number.NaN), /out of range/);
  });

  test('a beep has the frequency, level and duration asked for', () => {
    const tone = beep({ frequency: 1400, durationMs: 300, level: -12 });
    assert.equal(tone.length, 2400);
    assert.ok(shareAt(tone, 1400, 8000) > 0.99, 'shareAt(tone, 1400, 8000) > 0.99');
    const measured = dbm0OfAmplitude(Math.sqrt(2 * meanSquare(tone)));
    assert.ok(Math.abs(measured - -12) < 0.05, `${measured} dBm0`);
    assert.equal(beep().length, 2000);
    assert.equal(silence(20).length, 160);
  });

  test('a generator filling frames is phase-continuous and matches the ideal sine', () => {
    const generator = new ToneGenerator([{ frequency: 697, level: -6 }], 8000);
    const frame = new Int16Array(160);
    const amplitude = amplitudeOfDbm0(-6);
    let played = 0;
    let worst = 0;
    while (!generator.done) {
      const count = generator.fill(frame);
      for (let i = 0; i < count; i++) worst = Math.max(worst, Math.abs(frame[i]! - amplitude * Math.sin((2 * Math.PI * 697 * (played + i)) / 8000)));
      played += count;
    }
    assert.equal(played, 8000);
    assert.ok(worst <= 1, `worst error ${worst}`);
    assert.equal(generator.fill(frame), 0);
    assert.deepEqual([...frame], new Array(160).fill(0));
    assert.throws(() => new ToneGenerator([{ frequency: 5000, level: -10 }]), /frequency out of range/);
    assert.throws(
      () =>
        new ToneGenerator([
          { frequency: 400, level: 0 },
          { frequency: 500, level: 0 },
        ]),
      /exceed full scale/,
    );
  });

  test('every DTMF digit has its Q.23 pair, seen by the one-shot detector of dtmf.ts', () => {
    for (const digit of '0123456789*#ABCD') {
      const tone = dtmfTone(digit);
      assert.equal(tone.length, 800);
      assert.equal(detectDtmf(tone.subarray(0, 205)), digit);
      const [low, high] = dtmfPair(digit)!;
      // The high group 2 dB above the low one by default.
      const twist = 10 * Math.log10(shareAt(tone, high, 8000) / shareAt(tone, low, 8000));
      assert.ok(Math.abs(twist - 2) < 0.3, `${digit}: twist ${twist}`);
    }
    assert.equal(dtmfPair('x'), undefined);
    assert.throws(() => dtmfTone('E'), /not a DTMF digit/);
    assert.equal(dtmfSequence('12', { durationMs: 50, gapMs: 30 }).length, 2 * 640);
  });
});

describe('streaming DTMF detection', () => {
  test('every digit is found once, in order, near its start time', () => {
    const found = detect(dtmfSequence('0123456789*#ABCD'));
    assert.equal(digitsOf(found), '0123456789*#ABCD');
    found.forEach((f, i) => assert.ok(Math.abs(f.startMs - i * 200) <= 13, `${f.digit} at ${f.startMs} ms, not ${i * 200}`));
  });

  test('digits are found in white noise at 10 dB SNR', () => {
    for (const seed of [1, 2, 3]) assert.equal(digitsOf(detect(withNoise(dtmfSequence('0123456789*#ABCD'), 10, seed))), '0123456789*#ABCD');
  });

  test('digits survive G.711 coding and a frequency error of 1.5 % (Q.24 tolerance)', () => {
    const sequence = dtmfSequence('0123456789*#ABCD');
    assert.equal(digitsOf(detect(decodeUlaw(encodeUlaw(sequence)))), '0123456789*#ABCD');
    assert.equal(digitsOf(detect(decodeAlaw(encodeAlaw(withNoise(sequence, 15))))), '0123456789*#ABCD');
    for (const factor of [0.985, 1.015]) {
      const parts: Int16Array[] = [];
      for (const digit of '0123456789*#ABCD') {
        const [low, high] = dtmfPair(digit)!;
        const tone = new ToneGenerator(
          [
            { frequency: low * factor, level: -10 },
            { frequency: high * factor, level: -8 },
          ],
          800,
        );
        const frame = new Int16Array(800);
        tone.fill(frame);
        parts.push(frame, silence(100));
      }
      assert.equal(digitsOf(detect(concat(...parts))), '0123456789*#ABCD', `frequencies × ${factor}`);
    }
  });

  test('twist: within the limits accepted, beyond them refused', () => {
    const digits = '159#';
    const twisted = (low: number, high: number): string => digitsOf(detect(dtmfSequence(digits, { lowLevel: low, highLevel: high })));
    assert.equal(twisted(-12, -6), digits); // forward 6 dB
    assert.equal(twisted(-7, -10), digits); // reverse 3 dB
    assert.equal(twisted(-14, -4), ''); // forward 10 dB
    assert.equal(twisted(-4, -11), ''); // reverse 7 dB
    // Configurable: a receiver allowing 12 dB forward takes the 10 dB pair.
    assert.equal(digitsOf(detect(dtmfSequence(digits, { lowLevel: -14, highLevel: -4 }), { maxForwardTwistDb: 12 })), digits);
  });

  test('tones too weak are ignored; the threshold is configurable', () => {
    assert.equal(digitsOf(detect(dtmfSequence('42', { lowLevel: -30, highLevel: -30 }))), '42');
    assert.equal(digitsOf(detect(dtmfSequence('42', { lowLevel: -45, highLevel: -45 }))), '');
    assert.equal(digitsOf(detect(dtmfSequence('42', { lowLevel: -45, highLevel: -45 }), { minLevelDbm0: -50 })), '42');
  });

  test('40 ms tones with 40 ms gaps are all found, at every alignment, repeated keys included', () => {
    for (let offset = 0; offset < 102; offset += 6) {
      const audio = concat(new Int16Array(offset), dtmfSequence('1122*#', { durationMs: 40, gapMs: 40 }));
      assert.equal(digitsOf(detect(audio)), '1122*#', `offset ${offset}`);
    }
  });

  test('tones of 20 ms are never reported, at any alignment', () => {
    for (let offset = 0; offset < 102; offset += 3) {
      const audio = concat(new Int16Array(offset), dtmfSequence('1234567890', { durationMs: 20, gapMs: 60 }));
      assert.equal(digitsOf(detect(audio)), '', `offset ${offset}`);
    }
  });

  test('a drop-out of 10 ms inside a tone does not make a second digit', () => {
    const tone = dtmfTone('7', { durationMs: 300 });
    tone.fill(0, 1200, 1280);
    assert.equal(digitsOf(detect(tone)), '7');
  });

  test('a single frequency, or a DTMF pair with strong harmonics (voice), is not a digit', () => {
    for (const frequency of [697, 770, 852, 941, 1209, 1336, 1477, 1633, 1000]) assert.equal(digitsOf(detect(sine(frequency, 8000, 4000, 12000))), '', `${frequency} Hz`);
    const pair = (harmonics: number): Int16Array => {
      const out = new Int16Array(4000);
      for (let i = 0; i < out.length; i++) {
        let value = 0;
        for (const f of [770, 1336]) {
          for (let k = 1; k <= harmonics; k++) value += (6000 / k) * Math.sin((2 * Math.PI * f * k * i) / 8000);
        }
        out[i] = Math.round(value);
      }
      return out;
    };
    assert.equal(digitsOf(detect(pair(1))), '5');
    assert.equal(digitsOf(detect(pair(2))), '');
  });

  test('a pair among other strong tones, or with a rival in its group, is not a digit', () => {
    const mix = (tones: [number, number][]): Int16Array => {
      const out = new Int16Array(4000);
      for (let i = 0; i < out.length; i++) out[i] = Math.round(tones.reduce((v, [f, a]) => v + a * Math.sin((2 * Math.PI * f * i) / 8000), 0));
      return out;
    };
    assert.equal(digitsOf(detect(mix([[697, 6000], [1209, 6000]]))), '1');
    // Two more tones as strong: the pair holds half the energy (music, a chord).
    assert.equal(digitsOf(detect(mix([[697, 6000], [1209, 6000], [2200, 6000], [2900, 6000]]))), '');
    // A second row tone 6 dB down: the pair still holds 89 % of the energy, but the row is ambiguous.
    assert.equal(digitsOf(detect(mix([[697, 6000], [770, 3000], [1209, 6000]]))), '');
    assert.equal(digitsOf(detect(mix([[697, 6000], [770, 1500], [1209, 6000]]))), '1'); // 12 dB down: fine
  });

  test('speech-like audio, alone or with noise, gives no digit', () => {
    assert.equal(digitsOf(detect(speechLike(10))), '');
    assert.equal(digitsOf(detect(withNoise(speechLike(10, 5), 15))), '');
  });

  test('chunk boundaries do not matter', () => {
    const audio = withNoise(dtmfSequence('951#', { durationMs: 60, gapMs: 50 }), 15);
    const framed = detect(audio);
    assert.deepEqual(detect(audio, {}, 1), framed);
    assert.deepEqual(detect(audio, {}, 333), framed);
    assert.equal(digitsOf(framed), '951#');
  });

  test('current digit and reset', () => {
    const detector = new DtmfDetector();
    const tone = dtmfTone('A', { durationMs: 200 });
    for (let i = 0; i < 800; i += 160) detector.push(tone.subarray(i, i + 160));
    assert.equal(detector.current, 'A');
    detector.reset();
    assert.equal(detector.current, undefined);
  });
});

describe('voice activity detection', () => {
  const frames = (audio: Int16Array): Int16Array[] => toFrames(audio);

  /** Runs a detector over the audio and returns the transitions with their frame numbers. */
  function transitions(vad: VoiceActivityDetector, audio: Int16Array, firstFrame = 0): [number, VadTransition][] {
    const out: [number, VadTransition][] = [];
    frames(audio).forEach((frame, i) => {
      const transition = vad.process(frame);
      if (transition) out.push([firstFrame + i, transition]);
    });
    return out;
  }

  const noise = (seconds: number, rms: number, seed = 11): Int16Array => {
    const gauss = noiseSource(seed);
    return new Int16Array(seconds * 8000).map(() => Math.round(rms * gauss()));
  };

  test('speech over a noisy line starts after the onset and stops after the hangover', () => {
    const vad = new VoiceActivityDetector();
    const audio = concat(noise(2, 60), withNoise(sine(300, 8000, 8000, 6000), 40), noise(2, 60, 12));
    const events = transitions(vad, audio);
    assert.deepEqual(events.map((e) => e[1]), ['started', 'stopped']);
    // Frames 100–149 are the voice: 'started' at its second frame, 'stopped' 20 frames after it ends.
    assert.equal(events[0]![0], 101);
    assert.equal(events[1]![0], 150 + 19);
    assert.ok(vad.noiseFloor < -40, `floor ${vad.noiseFloor}`);
  });

  test('speech that is the first sound of a call (after digital silence) is speech, not the floor', () => {
    const vad = new VoiceActivityDetector();
    const audio = concat(new Int16Array(8000), sine(300, 8000, 8000, 6000), new Int16Array(8000));
    assert.deepEqual(transitions(vad, audio).map((e) => e[1]), ['started', 'stopped']);
  });

  test('pauses shorter than the hangover do not stop speech; speech-like audio is speech', () => {
    const vad = new VoiceActivityDetector();
    const audio = concat(noise(1, 50), speechLike(3), noise(1, 50));
    // speechLike has syllables with 200 ms pauses (shorter than the 400 ms hangover).
    const events = transitions(vad, audio);
    assert.deepEqual(events.map((e) => e[1]), ['started', 'stopped']);
  });

  test('steady noise that grows louder is learnt and stops being speech', () => {
    const vad = new VoiceActivityDetector();
    transitions(vad, noise(1, 30));
    // The step looks like speech at first; the level holding steady for 2 s makes it the floor.
    const louder = transitions(vad, noise(20, 600), 50);
    assert.deepEqual(louder.map((e) => e[1]), ['started', 'stopped']);
    assert.ok(louder[1]![0] < 50 + 150, `stopped only at frame ${louder[1]![0]}`);
    assert.equal(vad.speaking, false);
    assert.deepEqual(transitions(vad, noise(5, 600, 13)), []);
  });

  test('missing frames are silence', () => {
    const vad = new VoiceActivityDetector({ hangoverFrames: 5 });
    transitions(vad, noise(1, 50));
    transitions(vad, sine(300, 8000, 1600, 5000));
    assert.equal(vad.speaking, true);
    const events: (VadTransition | undefined)[] = [];
    for (let i = 0; i < 5; i++) events.push(vad.processSilence());
    assert.deepEqual(events, [undefined, undefined, undefined, undefined, 'stopped']);
  });
});

describe('mixer', () => {
  const tone = (frequency: number, amplitude = 3000): Int16Array => sine(frequency, 8000, 160, amplitude);

  test('each duplex participant hears exactly the sum of the others', () => {
    const mixer = new Mixer();
    const a = mixer.add('a');
    const b = mixer.add('b');
    const c = mixer.add('c');
    const [ta, tb, tc] = [tone(500), tone(700), tone(1100)];
    mixer.put('a', ta);
    mixer.put('b', tb);
    mixer.put('c', tc);
    mixer.mix();
    for (let i = 0; i < 160; i++) {
      assert.equal(a.output[i], tb[i]! + tc[i]!);
      assert.equal(b.output[i], ta[i]! + tc[i]!);
      assert.equal(c.output[i], ta[i]! + tb[i]!);
    }
    // Nobody hears itself: a's own tone is absent from what it hears.
    assert.ok(shareAt(a.output, 500, 8000) < 0.01, 'shareAt(a.output, 500, 8000) < 0.01');
  });

  test('directions: send is heard and hears nothing, recv hears and is not heard', () => {
    const mixer = new Mixer();
    const talker = mixer.add('talker', 'send');
    const listener = mixer.add('listener', 'recv');
    const both = mixer.add('both');
    const [t1, t2, t3] = [tone(500), tone(700), tone(900)];
    mixer.put('talker', t1);
    mixer.put('listener', t2);
    mixer.put('both', t3);
    mixer.mix();
    assert.deepEqual([...talker.output], new Array(160).fill(0));
    assert.deepEqual(listener.output, t1.map((s, i) => s + t3[i]!));
    assert.deepEqual(both.output, t1);
    mixer.setDirection('listener', 'duplex');
    mixer.put('talker', t1);
    mixer.put('listener', t2);
    mixer.mix();
    assert.deepEqual(both.output, t1.map((s, i) => s + t2[i]!));
    assert.throws(() => mixer.setDirection('both', 'sideways' as 'send'), /not a direction/);
    assert.throws(() => mixer.add('both'), /already in the mixer/);
    assert.throws(() => mixer.put('nobody', t1), /not in the mixer/);
  });

  test('a missing frame is silence, and inputs are consumed by each mix', () => {
    const mixer = new Mixer();
    const a = mixer.add('a');
    mixer.add('b');
    mixer.add('c');
    const tb = tone(700);
    mixer.put('b', tb);
    mixer.mix(); // a and c sent nothing
    assert.deepEqual(a.output, tb);
    mixer.mix(); // nobody sent anything this tick
    assert.deepEqual([...a.output], new Array(160).fill(0));
    mixer.put('b', tb.subarray(0, 100)); // a short frame is padded with silence
    mixer.mix();
    assert.deepEqual([...a.output.subarray(100)], new Array(60).fill(0));
    assert.equal(mixer.remove('c'), true);
    assert.equal(mixer.remove('c'), false);
    assert.equal(mixer.size, 2);
  });

  test('loud sums are limited softly: in range, monotonic, unchanged below the knee', () => {
    const mixer = new Mixer();
    const listener = mixer.add('listener', 'recv');
    for (const id of ['x', 'y', 'z']) mixer.add(id, 'send');
    const loud = tone(400, 30000);
    for (const id of ['x', 'y', 'z']) mixer.put(id, loud);
    mixer.mix();
    for (let i = 0; i < 160; i++) {
      const sum = 3 * loud[i]!;
      const out = listener.output[i]!;
      assert.ok(Math.abs(out) <= 32767, 'Math.abs(out) <= 32767');
      assert.equal(Math.sign(out), Math.sign(sum));
      if (Math.abs(sum) <= 24576) assert.equal(out, sum);
      else assert.ok(Math.abs(out) >= 24576, 'Math.abs(out) >= 24576');
    }
    let previous = -Infinity;
    for (let v = -200_000; v <= 200_000; v += 97) {
      const limited = softLimit(v);
      assert.ok(limited >= previous && limited >= -32767 && limited <= 32767, 'limited >= previous && limited >= -32767 && limited <= 32767');
      previous = limited;
    }
  });

  test('outputs are the same buffers every tick (no allocation per frame)', () => {
    const mixer = new Mixer();
    const a = mixer.add('a');
    mixer.add('b');
    const buffer = a.output;
    for (let tick = 0; tick < 50; tick++) {
      mixer.put('b', tone(300 + tick * 10));
      mixer.mix();
      assert.equal(mixer.get('a')!.output, buffer);
    }
  });

  test('speaking events come from each heard participant', () => {
    const events: string[] = [];
    const mixer = new Mixer({ vad: { hangoverFrames: 5 }, onSpeaking: (id, transition) => events.push(`${id} ${transition}`) });
    mixer.add('a');
    mixer.add('b');
    mixer.add('quiet', 'recv');
    const noise = withNoise(new Int16Array(160).fill(1), 0);
    for (let tick = 0; tick < 100; tick++) {
      const talking = tick >= 20 && tick < 60;
      mixer.put('a', talking ? tone(250, 5000) : noise);
      mixer.put('b', noise);
      if (talking) mixer.put('quiet', tone(250, 5000)); // recv: not heard, so never speaking
      mixer.mix();
    }
    assert.deepEqual(events, ['a started', 'a stopped']);
    mixer.put('b', tone(250, 5000));
    mixer.mix();
    mixer.put('b', tone(250, 5000));
    mixer.mix();
    assert.equal(mixer.get('b')!.speaking, true);
    mixer.remove('b');
    assert.deepEqual(events.slice(2), ['b started', 'b stopped']);
    // A speaker switched to recv is no longer heard: it stops speaking after the hangover.
    for (let tick = 0; tick < 3; tick++) {
      mixer.put('a', tone(250, 5000));
      mixer.mix();
    }
    mixer.setDirection('a', 'recv');
    for (let tick = 0; tick < 5; tick++) {
      mixer.put('a', tone(250, 5000));
      mixer.mix();
    }
    assert.deepEqual(events.slice(4), ['a started', 'a stopped']);
  });

  test('mixInto adds with saturation', () => {
    const target = new Int16Array([30000, -30000, 100]);
    mixInto(target, new Int16Array([10000, -10000, 50]), 0.5);
    assert.deepEqual([...target], [32767, -32768, 125]);
  });
});
