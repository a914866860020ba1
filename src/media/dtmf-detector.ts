/**
 * A streaming in-band DTMF detector for calls whose phones send digits only as tones: fed the
 * 20 ms frames of a call (or chunks of any length), it reports each digit once, when it has
 * lasted long enough, with the time it started.
 *
 * The audio is cut into blocks of 102 samples (12.75 ms at 8 kHz, the common choice: long
 * enough to separate the keypad's neighbouring frequencies, short enough for 40 ms tones), and
 * each block is measured with the Goertzel algorithm (src/media/dtmf.ts's goertzelEnergy) at the
 * eight keypad frequencies and at their second harmonics. A block holds a digit when, after
 * ITU-T Q.24 and common receiver practice:
 *  - both tones are above a minimum level (−36 dBm0 each unless configured);
 *  - the twist is within limits: the high tone at most 8 dB above the low one ("normal"/forward
 *    twist) and at most 4 dB below it ("reverse" twist);
 *  - each tone stands 8 dB above the other frequencies of its group;
 *  - the two tones hold most of the block's energy (70 %): speech, music and noise spread it;
 *  - the tones fill the block: each half holds 40 % of its energy (a tone starting or ending
 *    inside it does not count, so 20 ms tones are never two blocks);
 *  - neither tone has a strong second harmonic (above −6 dB of it): generators make pure sines,
 *    voiced speech has harmonics — the "talk-off" guard (not asked of a row tone whose harmonic
 *    falls next to the pair's column tone, where that tone's leakage would be mistaken for it).
 * Frequencies within Q.24's ±1.5 % are accepted; the 102-sample block is too short to refuse
 * all tones 3.5 % off, as Q.24 would have some administrations do.
 * A digit is reported after enough consecutive blocks to cover the minimum tone duration (40 ms
 * → two whole blocks, which a tone shorter than about 21 ms can never give), and ends after
 * enough blocks without it to cover the minimum pause (40 ms: three blocks, counting those the
 * pause cuts into); a drop-out of 10 ms or less (Q.24's interruption) touches at most two blocks
 * and does not make a second digit. Everything is preallocated: pushing a frame allocates nothing.
 */
import { COLUMN_FREQUENCIES, KEYPAD, ROW_FREQUENCIES, goertzelCoefficient, goertzelEnergy } from './dtmf.js';
import { amplitudeOfDbm0 } from './tones.js';

export interface DtmfDetectorOptions {
  /** The audio's rate; 8000 unless given. */
  sampleRate?: number;
  /** The shortest tone reported, in ms; 40 unless given. */
  minToneMs?: number;
  /** The shortest pause that separates two presses of a key, in ms; 40 unless given. */
  minGapMs?: number;
  /** The weakest tone accepted, in dBm0 per frequency; −36 unless given. */
  minLevelDbm0?: number;
  /** How far the high tone may be above the low one, in dB; 8 unless given. */
  maxForwardTwistDb?: number;
  /** How far the high tone may be below the low one, in dB; 4 unless given. */
  maxReverseTwistDb?: number;
}

const dB = (db: number): number => 10 ** (db / 10);

/** The block length at 8 kHz; other rates scale it. */
const BLOCK_AT_8K = 102;
const RELATIVE_PEAK = dB(8);
const MIN_PAIR_SHARE = 0.7;
const MAX_HARMONIC = dB(-6);
/** The share of a block's energy each half must hold: a tone must fill the block, not start or end inside it. */
const MIN_HALF_SHARE = 0.4;

export class DtmfDetector {
  private readonly sampleRate: number;
  private readonly block: Int16Array;
  private filled = 0;
  /** Coefficients: the 8 keypad frequencies, then their 8 second harmonics. */
  private readonly coefficients: Float64Array;
  private readonly energies = new Float64Array(16);
  /** [i·8 + j]: the second harmonic of frequency i is too near frequency j to be measured apart. */
  private readonly nearOther: Uint8Array;
  private readonly minToneEnergy: number;
  private readonly maxForward: number;
  private readonly maxReverse: number;
  private readonly onBlocks: number;
  private readonly offBlocks: number;
  /** Samples seen before the current block. */
  private blockStart = 0;
  private candidate: string | undefined;
  private candidateStart = 0;
  private candidateBlocks = 0;
  private active: string | undefined;
  private misses = 0;
  private lastStart = 0;

  constructor(options: DtmfDetectorOptions = {}) {
    this.sampleRate = options.sampleRate ?? 8000;
    const size = Math.round((BLOCK_AT_8K * this.sampleRate) / 8000);
    this.block = new Int16Array(size);
    const frequencies = [...ROW_FREQUENCIES, ...COLUMN_FREQUENCIES];
    this.coefficients = Float64Array.from([...frequencies, ...frequencies.map((f) => 2 * f)], (f) =>
      f < this.sampleRate / 2 ? goertzelCoefficient(f, this.sampleRate) : NaN,
    );
    const resolution = (2 * this.sampleRate) / size;
    this.nearOther = Uint8Array.from({ length: 64 }, (_, i) => (Math.abs(2 * frequencies[i >> 3]! - frequencies[i & 7]!) < resolution ? 1 : 0));
    // A sine of peak a holds a²/2 a sample: goertzelEnergy scales a pure tone to its block energy.
    const minAmplitude = amplitudeOfDbm0(options.minLevelDbm0 ?? -36);
    this.minToneEnergy = ((minAmplitude * minAmplitude) / 2) * size;
    this.maxForward = dB(options.maxForwardTwistDb ?? 8);
    this.maxReverse = dB(options.maxReverseTwistDb ?? 4);
    // Whole blocks a run of T samples is sure to contain, whatever its alignment: floor((T + 1)/N) − 1.
    const wholeBlocks = (ms: number): number => Math.max(1, Math.floor(((ms * this.sampleRate) / 1000 + 1) / size) - 1);
    this.onBlocks = wholeBlocks(options.minToneMs ?? 40);
    // A block a pause cuts into by more than a sixth fails the half-share test, so a pause makes
    // one miss more than its whole blocks (40 ms: at least 3), while a 10 ms drop-out touches two.
    this.offBlocks = wholeBlocks(options.minGapMs ?? 40) + 1;
  }

  /** The digit being held now (reported already), if any. */
  get current(): string | undefined {
    return this.active;
  }

  /** When the digit last reported started, in ms from the first sample pushed. */
  get digitStartMs(): number {
    return this.lastStart;
  }

  /** Forgets the audio so far (the time origin stays). */
  reset(): void {
    this.blockStart += this.filled;
    this.filled = 0;
    this.candidate = undefined;
    this.candidateBlocks = 0;
    this.active = undefined;
    this.misses = 0;
  }

  /**
   * Feeds the next samples (a 20 ms frame, or any length) and returns the digit that became
   * reportable in them, if any ('0'–'9', '*', '#', 'A'–'D'); its start is `digitStartMs`. A
   * chunk longer than a minimum tone plus a minimum gap may complete two digits: feed such audio
   * in frames to see both.
   */
  push(samples: Int16Array): string | undefined {
    let reported: string | undefined;
    let from = 0;
    while (from < samples.length) {
      const take = Math.min(this.block.length - this.filled, samples.length - from);
      this.block.set(samples.subarray(from, from + take), this.filled);
      this.filled += take;
      from += take;
      if (this.filled === this.block.length) {
        const digit = this.step(this.classify());
        if (digit) reported = digit;
        this.blockStart += this.block.length;
        this.filled = 0;
      }
    }
    return reported;
  }

  /** The digit the current block holds by the rules above, or undefined. */
  private classify(): string | undefined {
    const block = this.block;
    const half = block.length >> 1;
    let firstHalf = 0;
    for (let i = 0; i < half; i++) firstHalf += block[i]! * block[i]!;
    let total = firstHalf;
    for (let i = half; i < block.length; i++) total += block[i]! * block[i]!;
    if (total < 2 * this.minToneEnergy) return undefined;
    // A tone that starts or stops inside the block is not counted for it.
    if (firstHalf < MIN_HALF_SHARE * total || total - firstHalf < MIN_HALF_SHARE * total) return undefined;
    const energies = this.energies;
    for (let i = 0; i < 8; i++) energies[i] = goertzelEnergy(block, this.coefficients[i]!);
    let row = 0;
    let column = 4;
    for (let i = 1; i < 4; i++) if (energies[i]! > energies[row]!) row = i;
    for (let i = 5; i < 8; i++) if (energies[i]! > energies[column]!) column = i;
    const low = energies[row]!;
    const high = energies[column]!;
    if (low < this.minToneEnergy || high < this.minToneEnergy) return undefined;
    if (high > low * this.maxForward || low > high * this.maxReverse) return undefined;
    if (low + high < MIN_PAIR_SHARE * total) return undefined;
    for (let i = 0; i < 4; i++) if (i !== row && energies[i]! * RELATIVE_PEAK > low) return undefined;
    for (let i = 4; i < 8; i++) if (i !== column && energies[i]! * RELATIVE_PEAK > high) return undefined;
    if (this.harmonicTooStrong(row, low, column) || this.harmonicTooStrong(column, high, row)) return undefined;
    return KEYPAD[row]![column - 4];
  }

  /**
   * Whether the second harmonic of frequency `index` (energy `energy`) is too strong for a
   * generated tone. Not asked when that harmonic lies within two Goertzel bins of the pair's other
   * tone (2 × 697 Hz is 58 Hz from 1336 Hz), whose leakage there would pass for a harmonic.
   */
  private harmonicTooStrong(index: number, energy: number, other: number): boolean {
    if (this.nearOther[index * 8 + other]) return false;
    const coefficient = this.coefficients[8 + index]!;
    return !Number.isNaN(coefficient) && goertzelEnergy(this.block, coefficient) > energy * MAX_HARMONIC;
  }

  /** Advances the debouncing with one block's answer; returns a digit when one becomes reportable. */
  private step(digit: string | undefined): string | undefined {
    if (digit === this.candidate) this.candidateBlocks++;
    else {
      this.candidate = digit;
      this.candidateBlocks = 1;
      this.candidateStart = this.blockStart;
    }
    if (this.active !== undefined) {
      if (digit === this.active) {
        this.misses = 0;
        return undefined;
      }
      if (++this.misses < this.offBlocks) return undefined;
      this.active = undefined;
      this.misses = 0;
    }
    if (this.candidate !== undefined && this.candidateBlocks >= this.onBlocks) {
      this.active = this.candidate;
      this.lastStart = (this.candidateStart * 1000) / this.sampleRate;
      return this.active;
    }
    return undefined;
  }
}
