/**
 * Tones the media engine plays into calls: the beeps that mark the start and end of a
 * recording, DTMF digits in-band (the keypad's frequency pairs of ITU-T Q.23), and silence.
 *
 * Levels are in dBm0, the telephone network's unit relative to the digital reference of
 * ITU-T G.711: a full-scale sine there is +3.17 dBm0, so a sine of peak 32767·10^((L − 3.17)/20)
 * is at L dBm0 (0 dBm0 is a peak of about 22700). DTMF defaults follow common transmitter
 * practice (Q.23/Q.24): each tone about −8 to −10 dBm0, the high group 2 dB above the low one
 * (a "normal" twist, pre-compensating the line's loss at high frequencies), 100 ms tones and
 * 100 ms pauses; Q.24 receivers accept down to 40 ms each.
 */
import { COLUMN_FREQUENCIES, KEYPAD, ROW_FREQUENCIES } from './dtmf.js';

export const TONE_RATE = 8000;
/** The peak of a full-scale sine and its level in dBm0 (G.711's digital reference). */
const FULL_SCALE = 32767;
const FULL_SCALE_DBM0 = 3.17;

/** The peak amplitude (16-bit units) of a sine at `dbm0`; throws above full scale. */
export function amplitudeOfDbm0(dbm0: number): number {
  if (!Number.isFinite(dbm0) || dbm0 > FULL_SCALE_DBM0 + 1e-9) throw new RangeError(`tone level out of range: ${dbm0} dBm0 (at most +3.17)`);
  return FULL_SCALE * 10 ** ((dbm0 - FULL_SCALE_DBM0) / 20);
}

/** The level in dBm0 of a sine of peak `amplitude` (16-bit units). */
export function dbm0OfAmplitude(amplitude: number): number {
  return FULL_SCALE_DBM0 + 20 * Math.log10(amplitude / FULL_SCALE);
}

/** The row and column frequencies of a DTMF digit, or `undefined` for another character. */
export function dtmfPair(digit: string): [number, number] | undefined {
  const key = digit.toUpperCase();
  if (key.length !== 1) return undefined;
  for (let row = 0; row < KEYPAD.length; row++) {
    const column = KEYPAD[row]!.indexOf(key);
    if (column >= 0) return [ROW_FREQUENCIES[row]!, COLUMN_FREQUENCIES[column]!];
  }
  return undefined;
}

export interface ToneComponent {
  frequency: number;
  /** Level in dBm0. */
  level: number;
}

/**
 * A phase-continuous generator of a sum of sines, filling the caller's frames (no allocation
 * per frame), for as long as asked or without end. Each sine is a rotating phasor (one complex
 * multiplication a sample), renormalized once a frame so it neither grows nor decays.
 */
export class ToneGenerator {
  private readonly re: Float64Array;
  private readonly im: Float64Array;
  private readonly stepRe: Float64Array;
  private readonly stepIm: Float64Array;
  private readonly amplitude: Float64Array;
  private remaining: number;

  /** `durationSamples` undefined: endless. */
  constructor(components: readonly ToneComponent[], durationSamples?: number, sampleRate = TONE_RATE) {
    const n = components.length;
    this.re = new Float64Array(n).fill(1);
    this.im = new Float64Array(n);
    this.stepRe = new Float64Array(n);
    this.stepIm = new Float64Array(n);
    this.amplitude = new Float64Array(n);
    let total = 0;
    components.forEach((component, i) => {
      if (!(component.frequency > 0 && component.frequency < sampleRate / 2)) throw new RangeError(`tone frequency out of range: ${component.frequency} Hz`);
      const w = (2 * Math.PI * component.frequency) / sampleRate;
      this.stepRe[i] = Math.cos(w);
      this.stepIm[i] = Math.sin(w);
      this.amplitude[i] = amplitudeOfDbm0(component.level);
      total += this.amplitude[i]!;
    });
    if (total > FULL_SCALE + 1) throw new RangeError('the tones together exceed full scale: lower their levels');
    this.remaining = durationSamples ?? Infinity;
  }

  /** True when the tone has been played for its whole duration. */
  get done(): boolean {
    return this.remaining <= 0;
  }

  /**
   * Writes the next samples into `frame` (all of it, silence after the end) and returns how
   * many were tone.
   */
  fill(frame: Int16Array): number {
    const count = Math.min(frame.length, this.remaining);
    const { re, im, stepRe, stepIm, amplitude } = this;
    for (let s = 0; s < count; s++) {
      let value = 0;
      for (let i = 0; i < re.length; i++) {
        // The sine is the phasor's imaginary part, starting at 0.
        value += amplitude[i]! * im[i]!;
        const r = re[i]! * stepRe[i]! - im[i]! * stepIm[i]!;
        im[i] = re[i]! * stepIm[i]! + im[i]! * stepRe[i]!;
        re[i] = r;
      }
      frame[s] = Math.round(value);
    }
    for (let i = 0; i < re.length; i++) {
      const norm = Math.hypot(re[i]!, im[i]!);
      re[i] = re[i]! / norm;
      im[i] = im[i]! / norm;
    }
    if (count < frame.length) frame.fill(0, count);
    this.remaining -= count;
    return count;
  }
}

/** `ms` of silence at 8 kHz. */
export function silence(ms: number): Int16Array {
  return new Int16Array(Math.round((ms * TONE_RATE) / 1000));
}

function render(components: readonly ToneComponent[], ms: number): Int16Array {
  const out = new Int16Array(Math.round((ms * TONE_RATE) / 1000));
  new ToneGenerator(components, out.length).fill(out);
  return out;
}

export interface BeepOptions {
  /** Hz; 1000 unless given (the usual recording beep). */
  frequency?: number;
  /** ms; 250 unless given. */
  durationMs?: number;
  /** dBm0; −10 unless given. */
  level?: number;
}

/** A beep (one sine), as played before and after a recording. */
export function beep(options: BeepOptions = {}): Int16Array {
  return render([{ frequency: options.frequency ?? 1000, level: options.level ?? -10 }], options.durationMs ?? 250);
}

export interface DtmfToneOptions {
  /** ms of tone; 100 unless given. */
  durationMs?: number;
  /** The low (row) tone's level in dBm0; −10 unless given. */
  lowLevel?: number;
  /** The high (column) tone's level in dBm0; lowLevel + 2 unless given. */
  highLevel?: number;
}

/** One DTMF digit's tone pair; throws on a character that is not a digit ('0'–'9', '*', '#', 'A'–'D'). */
export function dtmfTone(digit: string, options: DtmfToneOptions = {}): Int16Array {
  const pair = dtmfPair(digit);
  if (!pair) throw new RangeError(`not a DTMF digit: ${JSON.stringify(digit)}`);
  const low = options.lowLevel ?? -10;
  const high = options.highLevel ?? low + 2;
  return render(
    [
      { frequency: pair[0], level: low },
      { frequency: pair[1], level: high },
    ],
    options.durationMs ?? 100,
  );
}

/** Digits as tones, each followed by `gapMs` of silence (100 unless given). */
export function dtmfSequence(digits: string, options: DtmfToneOptions & { gapMs?: number } = {}): Int16Array {
  return concatSamples([...digits].flatMap((digit) => [dtmfTone(digit, options), silence(options.gapMs ?? 100)]));
}

/** Pieces of audio one after another, in one new array. */
export function concatSamples(parts: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
