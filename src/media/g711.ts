/**
 * G.711 (ITU-T G.711) μ-law and A-law, the codecs every SIP phone and WebRTC browser share, so the
 * gateway can relay them and, when the two legs chose different laws, transcode without decoding
 * into a buffer of its own.
 *
 * Every conversion is a table look-up, built once at import: decoding is a 256-entry Int16Array
 * per law; encoding looks up the sample's significant bits (the top 14 for μ-law, the top 13 for
 * A-law, which is all G.711 quantizes), so a 20 ms frame is 160 look-ups and no branching.
 *
 * The segment arithmetic follows the widely used public-domain reference implementation (Sun's
 * g711.c, which Python's audioop also uses), so our codes agree with theirs bit for bit: the
 * sample is shifted arithmetically to 14 (μ-law) or 13 (A-law) bits before it is quantized. The
 * code here is written from the description of the algorithm, not copied.
 */

/** μ-law's bias added to the magnitude (in 14-bit units) so that every segment starts at a power of two. */
const ULAW_BIAS = 0x21;
/** The largest 14-bit magnitude μ-law represents, before the bias. */
const ULAW_CLIP = 8159;

/** Encodes a sample already reduced to 14 bits (-8192 to 8191). */
function ulawEncode14(sample: number): number {
  // μ-law sends every bit inverted; positive samples have the sign bit set once inverted.
  const negative = sample < 0;
  const magnitude = Math.min(negative ? -sample : sample, ULAW_CLIP) + ULAW_BIAS;
  // The segment is how far the magnitude's highest bit lies above bit 5 (the biased floor, 0x21 ≥ 32).
  const segment = 31 - Math.clz32(magnitude) - 5;
  // The clipped magnitude plus the bias reaches 2^13, one past segment 7: it takes the loudest code.
  const code = segment > 7 ? 0x7f : (segment << 4) | ((magnitude >> (segment + 1)) & 0x0f);
  return negative ? code ^ 0x7f : code ^ 0xff;
}

function ulawDecodeCode(code: number): number {
  const inverted = ~code & 0xff;
  const segment = (inverted >> 4) & 0x07;
  // In 16-bit units the bias is 0x84: four times 0x21.
  const magnitude = ((((inverted & 0x0f) << 3) + 0x84) << segment) - 0x84;
  return inverted & 0x80 ? -magnitude : magnitude;
}

/** Encodes a sample already reduced to 13 bits (-4096 to 4095). */
function alawEncode13(sample: number): number {
  // A-law is symmetric around -0.5: negative samples are folded by one's complement, not negation.
  const negative = sample < 0;
  const magnitude = Math.min(negative ? -sample - 1 : sample, 0xfff);
  // Segment 0 covers 0 to 31 linearly, like segment 1 (32 to 63); each later segment doubles.
  const segment = magnitude < 0x20 ? 0 : 31 - Math.clz32(magnitude) - 4;
  const mantissa = (magnitude >> (segment < 2 ? 1 : segment)) & 0x0f;
  const code = (segment << 4) | mantissa;
  // A-law inverts the even bits on the wire (0x55) and sets the sign bit for positive samples.
  return negative ? code ^ 0x55 : code ^ 0xd5;
}

function alawDecodeCode(code: number): number {
  const value = code ^ 0x55;
  const segment = (value >> 4) & 0x07;
  // Each step's midpoint: half a step (8 in 16-bit units) above its floor.
  let magnitude = ((value & 0x0f) << 4) + 8;
  if (segment > 0) magnitude = (magnitude + 0x100) << (segment - 1);
  return value & 0x80 ? magnitude : -magnitude;
}

function buildDecodeTable(decode: (code: number) => number): Int16Array {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) table[code] = decode(code);
  return table;
}

/** Indexed by the sample shifted right by `shift`, offset so that the most negative sample is 0. */
function buildEncodeTable(shift: number, encode: (reduced: number) => number): Uint8Array {
  const size = 0x10000 >> shift;
  const table = new Uint8Array(size);
  for (let index = 0; index < size; index++) table[index] = encode(index - size / 2);
  return table;
}

const ULAW_TO_LINEAR = buildDecodeTable(ulawDecodeCode);
const ALAW_TO_LINEAR = buildDecodeTable(alawDecodeCode);
const LINEAR_TO_ULAW = buildEncodeTable(2, ulawEncode14);
const LINEAR_TO_ALAW = buildEncodeTable(3, alawEncode13);
const ULAW_OFFSET = LINEAR_TO_ULAW.length / 2;
const ALAW_OFFSET = LINEAR_TO_ALAW.length / 2;

const ULAW_TO_ALAW = new Uint8Array(256);
const ALAW_TO_ULAW = new Uint8Array(256);
for (let code = 0; code < 256; code++) {
  ULAW_TO_ALAW[code] = LINEAR_TO_ALAW[(ULAW_TO_LINEAR[code]! >> 3) + ALAW_OFFSET]!;
  ALAW_TO_ULAW[code] = LINEAR_TO_ULAW[(ALAW_TO_LINEAR[code]! >> 2) + ULAW_OFFSET]!;
}

/** The μ-law code of one 16-bit sample (an integer from -32768 to 32767, as in an Int16Array). */
export function ulawFromLinear(sample: number): number {
  return LINEAR_TO_ULAW[(sample >> 2) + ULAW_OFFSET]!;
}

/** The 16-bit sample a μ-law code stands for. */
export function ulawToLinear(code: number): number {
  return ULAW_TO_LINEAR[code & 0xff]!;
}

/** The A-law code of one 16-bit sample (an integer from -32768 to 32767, as in an Int16Array). */
export function alawFromLinear(sample: number): number {
  return LINEAR_TO_ALAW[(sample >> 3) + ALAW_OFFSET]!;
}

/** The 16-bit sample an A-law code stands for. */
export function alawToLinear(code: number): number {
  return ALAW_TO_LINEAR[code & 0xff]!;
}

/** Fails loudly when a caller's output buffer is too small: silently short audio is worse. */
function checkOutput(needed: number, available: number): void {
  if (available < needed) throw new RangeError(`the output holds ${available} samples, ${needed} needed`);
}

/**
 * Encodes 16-bit linear samples to μ-law, into `out` when given (the relay reuses its buffers)
 * or a new array. Returns the codes, `samples.length` of them.
 */
export function encodeUlaw(samples: Int16Array, out = new Uint8Array(samples.length)): Uint8Array {
  checkOutput(samples.length, out.length);
  for (let i = 0; i < samples.length; i++) out[i] = LINEAR_TO_ULAW[(samples[i]! >> 2) + ULAW_OFFSET]!;
  return out.length === samples.length ? out : out.subarray(0, samples.length);
}

/** Decodes μ-law codes to 16-bit linear samples, into `out` when given. */
export function decodeUlaw(codes: Uint8Array, out = new Int16Array(codes.length)): Int16Array {
  checkOutput(codes.length, out.length);
  for (let i = 0; i < codes.length; i++) out[i] = ULAW_TO_LINEAR[codes[i]!]!;
  return out.length === codes.length ? out : out.subarray(0, codes.length);
}

/** Encodes 16-bit linear samples to A-law, into `out` when given. */
export function encodeAlaw(samples: Int16Array, out = new Uint8Array(samples.length)): Uint8Array {
  checkOutput(samples.length, out.length);
  for (let i = 0; i < samples.length; i++) out[i] = LINEAR_TO_ALAW[(samples[i]! >> 3) + ALAW_OFFSET]!;
  return out.length === samples.length ? out : out.subarray(0, samples.length);
}

/** Decodes A-law codes to 16-bit linear samples, into `out` when given. */
export function decodeAlaw(codes: Uint8Array, out = new Int16Array(codes.length)): Int16Array {
  checkOutput(codes.length, out.length);
  for (let i = 0; i < codes.length; i++) out[i] = ALAW_TO_LINEAR[codes[i]!]!;
  return out.length === codes.length ? out : out.subarray(0, codes.length);
}

/**
 * μ-law to A-law, code by code, into `out` when given (it may be `codes` itself: each code is
 * read before it is overwritten). Each code becomes the A-law code of the sample it decodes to.
 */
export function ulawToAlaw(codes: Uint8Array, out = new Uint8Array(codes.length)): Uint8Array {
  return translate(codes, out, ULAW_TO_ALAW);
}

/** A-law to μ-law, code by code, into `out` when given (it may be `codes` itself). */
export function alawToUlaw(codes: Uint8Array, out = new Uint8Array(codes.length)): Uint8Array {
  return translate(codes, out, ALAW_TO_ULAW);
}

function translate(codes: Uint8Array, out: Uint8Array, table: Uint8Array): Uint8Array {
  checkOutput(codes.length, out.length);
  for (let i = 0; i < codes.length; i++) out[i] = table[codes[i]!]!;
  return out.length === codes.length ? out : out.subarray(0, codes.length);
}

/**
 * μ-law to A-law in place over `codes[start, end)`: the relay's hot path translates a payload
 * inside the received packet, without a view object or an output buffer per packet.
 */
export function ulawToAlawInPlace(codes: Uint8Array, start: number, end: number): void {
  for (let i = start; i < end; i++) codes[i] = ULAW_TO_ALAW[codes[i]!]!;
}

/** A-law to μ-law in place over `codes[start, end)`. */
export function alawToUlawInPlace(codes: Uint8Array, start: number, end: number): void {
  for (let i = start; i < end; i++) codes[i] = ALAW_TO_ULAW[codes[i]!]!;
}
