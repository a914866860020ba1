/**
 * Sample-rate conversion for the media engine: prompts and text-to-speech come at 16, 22.05
 * (espeak-ng), 44.1 or 48 kHz and calls carry 8 kHz G.711, and recordings may be asked for at
 * another rate. A rational polyphase FIR resampler: the rates' ratio is reduced to L/M (22050 →
 * 8000 is 160/441), the input is notionally upsampled by L, low-pass filtered and decimated by
 * M, computing only the output samples (each is one phase of the filter, K taps, against the
 * last K input samples).
 *
 * The low-pass is a Kaiser-windowed sinc (the window method of Oppenheim & Schafer, "Discrete-
 * Time Signal Processing", 7.5–7.6; Kaiser's formulas for β and the transition width) with its
 * cutoff at 0.45 of the lower rate and about 80 dB of stopband: a 5 kHz tone in 22.05 kHz audio,
 * which would alias to 3 kHz, is removed rather than folded. The taps per phase scale with the
 * decimation factor, so the transition band is the same width whatever the input rate.
 *
 * Hand-written rather than an npm package: the candidates were either linear/cubic interpolators
 * without an anti-aliasing filter (wave-resampler), or WebAssembly ports (libsamplerate-js,
 * speex-resampler-wasm) that are created asynchronously and allocate a new output array per
 * call; this one keeps its state between chunks of any length and writes into buffers it reuses.
 * The filters are built once per (L, M) and shared by every resampler with those rates.
 */

/** Greatest common divisor of two positive integers. */
function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** The zeroth-order modified Bessel function of the first kind (its power series), for the Kaiser window. */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const half = x / 2;
  for (let k = 1; k < 50; k++) {
    term *= (half / k) * (half / k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/** The stopband attenuation the filters aim at, in dB, and Kaiser's β for it (β = 0.1102·(A − 8.7) for A > 50). */
const STOPBAND_DB = 80;
const KAISER_BETA = 0.1102 * (STOPBAND_DB - 8.7);
/** Taps per phase at a ratio of 1: Kaiser's width (A − 8)/(2.285·2π·K) is then about 0.16 of the lower rate. */
const BASE_TAPS = 32;
/** The cutoff as a share of the lower rate: 3.6 kHz at 8 kHz, above the telephone band's 3.4 kHz. */
const CUTOFF = 0.45;

interface Filter {
  /** Upsampling factor (phases). */
  up: number;
  /** Decimation factor. */
  down: number;
  /** Taps per phase. */
  taps: number;
  /** Coefficients arranged by phase: phase p's taps are [p·taps, (p+1)·taps), tap k weighing the k-th most recent input. */
  phases: Float32Array;
}

const filters = new Map<string, Filter>();

function filterFor(up: number, down: number): Filter {
  const key = `${up}/${down}`;
  let filter = filters.get(key);
  if (filter) return filter;
  const taps = Math.ceil((BASE_TAPS * Math.max(up, down)) / up);
  const length = taps * up;
  // The cutoff in cycles per sample of the upsampled signal (rate L·fin): CUTOFF·min(fin, fout)/(L·fin).
  const cutoff = (CUTOFF * Math.min(1, up / down)) / up;
  const center = (length - 1) / 2;
  const prototype = new Float64Array(length);
  const i0Beta = besselI0(KAISER_BETA);
  for (let j = 0; j < length; j++) {
    const t = j - center;
    const sinc = t === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * t) / (Math.PI * t);
    const r = (2 * j) / (length - 1) - 1;
    prototype[j] = sinc * (besselI0(KAISER_BETA * Math.sqrt(Math.max(0, 1 - r * r))) / i0Beta);
  }
  // Each phase on its own sums to (nearly) 1: unity gain at DC whatever the phase.
  const phases = new Float32Array(length);
  for (let p = 0; p < up; p++) {
    let sum = 0;
    for (let k = 0; k < taps; k++) sum += prototype[p + k * up]!;
    for (let k = 0; k < taps; k++) phases[p * taps + k] = prototype[p + k * up]! / (sum || 1);
  }
  filter = { up, down, taps, phases };
  filters.set(key, filter);
  return filter;
}

/** The rates a resampler accepts: whole numbers of Hz, 1000 to 192000. */
function checkRate(name: string, rate: number): void {
  if (!Number.isInteger(rate) || rate < 1000 || rate > 192_000) {
    throw new RangeError(`unsupported ${name} sample rate: ${rate} (a whole number of Hz from 1000 to 192000)`);
  }
}

/**
 * A streaming resampler of 16-bit mono audio. `process` takes chunks of any length and returns
 * the output they complete (a view of a buffer reused by the next call: copy it or use it at
 * once); `flush` returns the rest at the end of the stream. Over a whole stream the output has
 * round(n·to/from) samples, aligned with the input (the filter's delay is compensated).
 */
export class Resampler {
  readonly fromRate: number;
  readonly toRate: number;
  private readonly filter: Filter;
  /** The input not yet consumed, after the K − 1 samples of history; grows to the largest chunk. */
  private work: Float32Array;
  /** How many samples of `work` are filled. */
  private filled: number;
  /** The next output's position in upsampled units from the start of `work`. */
  private position: number;
  private out = new Int16Array(0);
  private inputTotal = 0;
  private outputTotal = 0;

  constructor(fromRate: number, toRate: number) {
    checkRate('input', fromRate);
    checkRate('output', toRate);
    this.fromRate = fromRate;
    this.toRate = toRate;
    const divisor = gcd(fromRate, toRate);
    this.filter = filterFor(toRate / divisor, fromRate / divisor);
    this.work = new Float32Array(this.filter.taps * 2 + 1024);
    this.filled = this.filter.taps - 1;
    // Output 0 stands at input 0 (work index taps − 1); the filter reaches `center` upsampled units ahead.
    this.position = (this.filter.taps - 1) * this.filter.up + Math.round((this.filter.taps * this.filter.up - 1) / 2);
  }

  /** True when the rates are equal and `process` only copies. */
  get passthrough(): boolean {
    return this.fromRate === this.toRate;
  }

  /** Resamples `input`, returning the output samples it completes (a reused buffer's view). */
  process(input: Int16Array): Int16Array {
    this.inputTotal += input.length;
    if (this.passthrough) {
      this.outputTotal += input.length;
      const out = this.ensureOut(input.length).subarray(0, input.length);
      out.set(input);
      return out;
    }
    this.append(input, input.length);
    return this.run(Infinity);
  }

  /** Ends the stream: the output still owed for the input given (up to round(n·to/from) in all). Call once, last. */
  flush(): Int16Array {
    const owed = Math.round((this.inputTotal * this.toRate) / this.fromRate) - this.outputTotal;
    if (this.passthrough || owed <= 0) return this.ensureOut(0).subarray(0, 0);
    // Zeros stand for the input after the end, as far as the filter reaches.
    this.append(undefined, this.filter.taps + 1);
    return this.run(owed);
  }

  private append(input: Int16Array | undefined, count: number): void {
    if (this.filled + count > this.work.length) {
      const grown = new Float32Array(Math.max(this.filled + count, this.work.length * 2));
      grown.set(this.work.subarray(0, this.filled));
      this.work = grown;
    }
    const work = this.work;
    if (input) for (let i = 0; i < count; i++) work[this.filled + i] = input[i]!;
    else work.fill(0, this.filled, this.filled + count);
    this.filled += count;
  }

  private ensureOut(size: number): Int16Array {
    if (this.out.length < size) this.out = new Int16Array(Math.max(size, this.out.length * 2, 256));
    return this.out;
  }

  private run(limit: number): Int16Array {
    const { up, down, taps, phases } = this.filter;
    const work = this.work;
    // Output n needs input index floor(position/up) < filled.
    const available = Math.max(0, Math.ceil((this.filled * up - this.position) / down));
    const count = Math.min(available, limit);
    const out = this.ensureOut(count);
    let position = this.position;
    for (let n = 0; n < count; n++) {
      const newest = Math.floor(position / up);
      const base = (position - newest * up) * taps;
      let acc = 0;
      for (let k = 0; k < taps; k++) acc += phases[base + k]! * work[newest - k]!;
      const rounded = Math.round(acc);
      out[n] = rounded > 32767 ? 32767 : rounded < -32768 ? -32768 : rounded;
      position += down;
    }
    this.outputTotal += count;
    // Keep the last taps − 1 samples below the next output's window as history.
    const keepFrom = Math.max(0, Math.min(this.filled, Math.floor(position / up) - (taps - 1)));
    work.copyWithin(0, keepFrom, this.filled);
    this.filled -= keepFrom;
    this.position = position - keepFrom * up;
    return out.subarray(0, count);
  }
}

/** Resamples a whole signal at once (prompts, rendered speech): a new array of round(n·to/from) samples. */
export function resample(input: Int16Array, fromRate: number, toRate: number): Int16Array {
  if (fromRate === toRate) {
    checkRate('input', fromRate);
    return input.slice();
  }
  const resampler = new Resampler(fromRate, toRate);
  const head = resampler.process(input);
  const total = new Int16Array(Math.round((input.length * toRate) / fromRate));
  total.set(head.subarray(0, Math.min(head.length, total.length)));
  const tail = resampler.flush();
  total.set(tail.subarray(0, Math.max(0, Math.min(tail.length, total.length - head.length))), head.length);
  return total;
}
