/**
 * WAV files for the media engine: prompts to play, text-to-speech output, recordings.
 *
 * The layout is Microsoft's RIFF/WAVE (a `RIFF` chunk of type `WAVE` holding little-endian
 * chunks: `fmt `, `data`, and others such as `LIST` and `fact`, which are skipped). Read: PCM
 * 8-bit (unsigned) and 16-bit, G.711 μ-law (format 7) and A-law (format 6), also inside
 * WAVE_FORMAT_EXTENSIBLE (0xFFFE, whose sub-format GUID starts with the format code), one or
 * two channels (two are averaged to one), any sample rate; everything else is refused with a
 * WavError saying what. Written: 16-bit PCM, μ-law or A-law, one or two channels; G.711 files get
 * the 18-byte `fmt ` and the `fact` chunk that non-PCM formats carry. G.711 coding is
 * src/media/g711.ts's.
 *
 * Three ways in and out: whole files in memory (readWav, encodeWav), a file arriving in pieces
 * (WavDecoder: a child process's stdout, an HTTP body), and a recording written as it happens
 * (WavWriter, on a file handle, one or two channels — one per direction of a call).
 *
 * Hand-written rather than an npm package (wavefile, wav): we need size limits checked before
 * anything is read, the "length unknown" header of writers that cannot seek (espeak-ng --stdout),
 * direct decoding to the 8 kHz frames calls carry, and a writer on a file handle whose header is
 * patched on close — each of those would have been a layer over the package anyway.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { alawFromLinear, alawToLinear, ulawFromLinear, ulawToLinear } from './g711.js';
import { resample } from './resample.js';

/** A WAV file we cannot read or write, with the reason. */
export class WavError extends Error {
  override name = 'WavError';
}

/** The sample encodings read and written. */
export type WavEncoding = 'pcm8' | 'pcm16' | 'ulaw' | 'alaw';

const FORMAT_PCM = 1;
const FORMAT_ALAW = 6;
const FORMAT_ULAW = 7;
const FORMAT_EXTENSIBLE = 0xfffe;

/** The default largest file read: 64 MiB (over an hour of 8 kHz 16-bit mono). */
export const DEFAULT_MAX_WAV_BYTES = 64 * 1024 * 1024;

export interface WavReadOptions {
  /** The largest file accepted, in bytes (DEFAULT_MAX_WAV_BYTES unless given). */
  maxBytes?: number;
  /**
   * The file was written by a program that could not seek back to fill in the sizes (espeak-ng
   * --stdout writes 0x7FFFF000): a `data` chunk running past the end of the file then holds the
   * rest of the file, rather than being an error.
   */
  streamed?: boolean;
}

/** A WAV file's audio, as one channel of 16-bit samples at the file's rate. */
export interface WavAudio {
  sampleRate: number;
  /** The file's channels (the samples are their average when there were two). */
  channels: number;
  encoding: WavEncoding;
  samples: Int16Array;
}

interface Format {
  code: number;
  channels: number;
  sampleRate: number;
  bits: number;
  blockAlign: number;
}

/** Reads the audio of a WAV file held in memory. Throws a WavError on anything it cannot read. */
export function readWav(data: Uint8Array, options: WavReadOptions = {}): WavAudio {
  const decoder = new WavDecoder(options);
  const samples = decoder.push(data);
  decoder.end();
  return { ...decoder.info!, samples };
}

/**
 * A WAV file read as it arrives (from a child process's stdout, an HTTP body): `push` takes the
 * next bytes and returns the samples they complete (one channel, two averaged), `end` checks that
 * the file was whole. The header may come in pieces; chunks before `data` are skipped. Throws
 * WavErrors as readWav does, as soon as the bytes show the problem.
 */
export class WavDecoder {
  private readonly maxBytes: number;
  private readonly streamed: boolean;
  /** The bytes before the data, until the data chunk's header has been seen. */
  private head: Uint8Array | undefined = new Uint8Array(0);
  private format: Format | undefined;
  private encoding: WavEncoding = 'pcm16';
  /** Data bytes still announced (Infinity for a streamed header running past the end). */
  private remaining = 0;
  private announced = 0;
  /** A partial sample frame left over from the last push. */
  private readonly carry = new Uint8Array(4);
  private carried = 0;
  private total = 0;

  constructor(options: WavReadOptions = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_WAV_BYTES;
    this.streamed = options.streamed ?? false;
  }

  /** The format, once the header has been read. */
  get info(): Omit<WavAudio, 'samples'> | undefined {
    return this.format && this.head === undefined
      ? { sampleRate: this.format.sampleRate, channels: this.format.channels, encoding: this.encoding }
      : undefined;
  }

  push(chunk: Uint8Array): Int16Array {
    this.total += chunk.length;
    if (this.total > this.maxBytes) throw new WavError(`the WAV file is too large: ${this.total} bytes, the limit is ${this.maxBytes}`);
    if (this.head !== undefined) {
      let head = chunk;
      if (this.head.length) {
        head = new Uint8Array(this.head.length + chunk.length);
        head.set(this.head);
        head.set(chunk, this.head.length);
      }
      const dataAt = this.readHeader(head);
      if (dataAt === undefined) {
        this.head = head === chunk ? chunk.slice() : head;
        return new Int16Array(0);
      }
      this.head = undefined;
      chunk = head.subarray(dataAt);
    }
    if (this.remaining !== Infinity) {
      if (chunk.length > this.remaining) chunk = chunk.subarray(0, this.remaining);
      this.remaining -= chunk.length;
    }
    const format = this.format!;
    let bytes = chunk;
    if (this.carried) {
      bytes = new Uint8Array(this.carried + chunk.length);
      bytes.set(this.carry.subarray(0, this.carried));
      bytes.set(chunk, this.carried);
    }
    const whole = bytes.length - (bytes.length % format.blockAlign);
    this.carried = bytes.length - whole;
    this.carry.set(bytes.subarray(whole));
    return decode(bytes.subarray(0, whole), format, this.encoding);
  }

  /** The end of the file: throws when it stopped inside the header or short of the data announced. */
  end(): void {
    if (this.head !== undefined) {
      const head = this.head;
      if (head.length < 12) throw new WavError('not a WAV file: shorter than a RIFF header');
      // Walk the chunks again to say where it stopped.
      const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
      let offset = 12;
      while (offset + 8 <= head.length) {
        const size = view.getUint32(offset + 4, true);
        if (offset + 8 + size > head.length) throw new WavError(`the WAV file is truncated inside its ${JSON.stringify(tag(head, offset))} chunk`);
        offset += 8 + size + (size & 1);
      }
      throw new WavError(this.format ? 'the WAV file has no data chunk' : 'the WAV file has no fmt chunk');
    }
    if (this.remaining > 0 && this.remaining !== Infinity) {
      throw new WavError(`the WAV file is truncated: its data chunk announces ${this.announced} bytes, ${this.announced - this.remaining} are there`);
    }
  }

  /** Reads the header in `head`; returns where the data starts, or undefined when more bytes are needed. */
  private readHeader(head: Uint8Array): number | undefined {
    if (head.length < 12) return undefined;
    const riff = tag(head, 0);
    if (riff !== 'RIFF') throw new WavError(riff === 'RIFX' ? 'big-endian (RIFX) WAV files are not supported' : 'not a WAV file: no RIFF header');
    if (tag(head, 8) !== 'WAVE') throw new WavError(`not a WAV file: the RIFF type is ${JSON.stringify(tag(head, 8))}, not WAVE`);
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    let offset = 12;
    this.format = undefined;
    while (offset + 8 <= head.length) {
      const id = tag(head, offset);
      const size = view.getUint32(offset + 4, true);
      const body = offset + 8;
      if (id === 'data') {
        const format = this.format as Format | undefined;
        if (!format) throw new WavError('the WAV file has its data chunk before its fmt chunk');
        this.encoding = format.code === FORMAT_ULAW ? 'ulaw' : format.code === FORMAT_ALAW ? 'alaw' : format.bits === 8 ? 'pcm8' : 'pcm16';
        this.announced = size;
        // A streamed header's size is a placeholder: the data runs to the end of the file.
        this.remaining = this.streamed ? Infinity : size;
        return body;
      }
      if (body + size > head.length) return undefined;
      if (id === 'fmt ') this.format = readFormat(view, body, size);
      offset = body + size + (size & 1); // chunks are padded to an even length
    }
    return undefined;
  }
}

function tag(data: Uint8Array, offset: number): string {
  return String.fromCharCode(data[offset]!, data[offset + 1]!, data[offset + 2]!, data[offset + 3]!);
}

function readFormat(view: DataView, at: number, size: number): Format {
  if (size < 16) throw new WavError(`the WAV fmt chunk is too short (${size} bytes)`);
  let code = view.getUint16(at, true);
  const channels = view.getUint16(at + 2, true);
  const sampleRate = view.getUint32(at + 4, true);
  const blockAlign = view.getUint16(at + 12, true);
  const bits = view.getUint16(at + 14, true);
  if (code === FORMAT_EXTENSIBLE) {
    if (size < 40) throw new WavError('the WAV fmt chunk is WAVE_FORMAT_EXTENSIBLE but too short for its sub-format');
    code = view.getUint16(at + 24, true); // the GUID's first two bytes are the format code
  }
  const name = code === FORMAT_PCM ? 'PCM' : code === FORMAT_ULAW ? 'μ-law' : code === FORMAT_ALAW ? 'A-law' : undefined;
  if (!name) throw new WavError(`unsupported WAV format ${code} (PCM, μ-law and A-law are)`);
  if (channels !== 1 && channels !== 2) throw new WavError(`unsupported WAV channel count ${channels} (1 or 2 are)`);
  if (sampleRate < 1000 || sampleRate > 192_000) throw new WavError(`unsupported WAV sample rate ${sampleRate}`);
  const expectedBits = code === FORMAT_PCM ? [8, 16] : [8];
  if (!expectedBits.includes(bits)) throw new WavError(`unsupported WAV ${name} sample size: ${bits} bits (${expectedBits.join(' or ')} are)`);
  if (blockAlign !== (bits / 8) * channels) throw new WavError(`inconsistent WAV fmt chunk: ${blockAlign} bytes a frame for ${channels} × ${bits} bits`);
  return { code, channels, sampleRate, bits, blockAlign };
}

/** Whole sample frames of `bytes` as one channel of 16-bit samples. */
function decode(bytes: Uint8Array, format: Format, encoding: WavEncoding): Int16Array {
  const frames = Math.floor(bytes.length / format.blockAlign);
  const samples = new Int16Array(frames);
  const sampleAt =
    encoding === 'pcm16'
      ? (i: number): number => ((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16) >> 16
      : encoding === 'pcm8'
        ? (i: number): number => (bytes[i]! - 128) << 8
        : encoding === 'ulaw'
          ? (i: number): number => ulawToLinear(bytes[i]!)
          : (i: number): number => alawToLinear(bytes[i]!);
  if (format.channels === 1) for (let i = 0; i < frames; i++) samples[i] = sampleAt(i);
  else for (let i = 0; i < frames; i++) samples[i] = (sampleAt(2 * i) + sampleAt(2 * i + 1)) >> 1;
  return samples;
}

/** Reads a WAV file, refusing one larger than the limit before reading it. */
export async function readWavFile(path: string, options: WavReadOptions = {}): Promise<WavAudio> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_WAV_BYTES;
  const info = await stat(path);
  if (!info.isFile()) throw new WavError(`not a file: ${path}`);
  if (info.size > maxBytes) throw new WavError(`the WAV file is too large: ${info.size} bytes, the limit is ${maxBytes}`);
  const handle = await open(path, 'r');
  try {
    const data = new Uint8Array(info.size);
    const { bytesRead } = await handle.read(data, 0, info.size, 0);
    return readWav(data.subarray(0, bytesRead), options);
  } finally {
    await handle.close();
  }
}

/** The rate and frame length of call audio: 20 ms of 8 kHz (RFC 3551's default packetization for G.711). */
export const CALL_RATE = 8000;
export const FRAME_SAMPLES = 160;

/**
 * Any supported WAV (bytes, or audio already read) as 8 kHz mono 20 ms frames: views into one
 * buffer whose last frame is padded with silence, made once when a prompt is loaded.
 */
export function wavToFrames(wav: Uint8Array | WavAudio, options: WavReadOptions = {}): Int16Array[] {
  const audio = wav instanceof Uint8Array ? readWav(wav, options) : wav;
  return toFrames(audio.sampleRate === CALL_RATE ? audio.samples : resample(audio.samples, audio.sampleRate, CALL_RATE));
}

/** 8 kHz samples as 20 ms frames (views into one padded buffer). */
export function toFrames(samples: Int16Array): Int16Array[] {
  const count = Math.ceil(samples.length / FRAME_SAMPLES);
  const buffer = new Int16Array(count * FRAME_SAMPLES);
  buffer.set(samples);
  const frames: Int16Array[] = [];
  for (let i = 0; i < count; i++) frames.push(buffer.subarray(i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES));
  return frames;
}

export interface WavFormat {
  /** 'pcm16' (the default), 'ulaw' or 'alaw'. */
  encoding?: Exclude<WavEncoding, 'pcm8'>;
  sampleRate?: number;
  /** 1 (the default) or 2; samples are then interleaved, left first. */
  channels?: 1 | 2;
}

interface Layout {
  encoding: Exclude<WavEncoding, 'pcm8'>;
  sampleRate: number;
  channels: 1 | 2;
  bytesPerSample: number;
  /** The header's length; the data starts there. */
  headerLength: number;
}

function layoutOf(format: WavFormat): Layout {
  const encoding = format.encoding ?? 'pcm16';
  const sampleRate = format.sampleRate ?? CALL_RATE;
  const channels = format.channels ?? 1;
  if (!['pcm16', 'ulaw', 'alaw'].includes(encoding)) throw new WavError(`cannot write WAV encoding ${String(encoding)}`);
  if (channels !== 1 && channels !== 2) throw new WavError(`cannot write ${String(channels)} channels (1 or 2)`);
  if (!Number.isInteger(sampleRate) || sampleRate < 1000 || sampleRate > 192_000) throw new WavError(`cannot write sample rate ${sampleRate}`);
  const pcm = encoding === 'pcm16';
  // PCM: RIFF header 12 + fmt 8+16 + data header 8; G.711: fmt 8+18 and fact 8+4 as well.
  return { encoding, sampleRate, channels, bytesPerSample: pcm ? 2 : 1, headerLength: pcm ? 44 : 58 };
}

/** The header of a file of `dataBytes` bytes of audio in `layout`. */
function header(layout: Layout, dataBytes: number): Buffer {
  const out = Buffer.alloc(layout.headerLength);
  const pcm = layout.encoding === 'pcm16';
  const padded = dataBytes + (dataBytes & 1);
  out.write('RIFF', 0, 'ascii');
  out.writeUInt32LE(layout.headerLength - 8 + padded, 4);
  out.write('WAVEfmt ', 8, 'ascii');
  out.writeUInt32LE(pcm ? 16 : 18, 16);
  out.writeUInt16LE(pcm ? FORMAT_PCM : layout.encoding === 'ulaw' ? FORMAT_ULAW : FORMAT_ALAW, 20);
  out.writeUInt16LE(layout.channels, 22);
  out.writeUInt32LE(layout.sampleRate, 24);
  out.writeUInt32LE(layout.sampleRate * layout.channels * layout.bytesPerSample, 28);
  out.writeUInt16LE(layout.channels * layout.bytesPerSample, 32);
  out.writeUInt16LE(layout.bytesPerSample * 8, 34);
  let at = 36;
  if (!pcm) {
    out.writeUInt16LE(0, 36); // cbSize: no extra format bytes
    out.write('fact', 38, 'ascii');
    out.writeUInt32LE(4, 42);
    out.writeUInt32LE(dataBytes / layout.channels, 46); // samples per channel
    at = 50;
  }
  out.write('data', at, 'ascii');
  out.writeUInt32LE(dataBytes, at + 4);
  return out;
}

/** Encodes 16-bit samples into `target` at `offset` in the layout's encoding; returns the offset after them. */
function encodeInto(layout: Layout, samples: Int16Array, target: Buffer, offset: number): number {
  if (layout.encoding === 'pcm16') {
    for (let i = 0; i < samples.length; i++, offset += 2) target.writeInt16LE(samples[i]!, offset);
  } else if (layout.encoding === 'ulaw') {
    for (let i = 0; i < samples.length; i++) target[offset++] = ulawFromLinear(samples[i]!);
  } else {
    for (let i = 0; i < samples.length; i++) target[offset++] = alawFromLinear(samples[i]!);
  }
  return offset;
}

/** A whole WAV file of `samples` (interleaved when two channels) in memory. */
export function encodeWav(samples: Int16Array, format: WavFormat = {}): Buffer {
  const layout = layoutOf(format);
  if (samples.length % layout.channels) throw new WavError('interleaved stereo needs an even number of samples');
  const dataBytes = samples.length * layout.bytesPerSample;
  const out = Buffer.alloc(layout.headerLength + dataBytes + (dataBytes & 1));
  header(layout, dataBytes).copy(out);
  encodeInto(layout, samples, out, layout.headerLength);
  return out;
}

/** How much a WavWriter gathers before writing: 64 KiB, four seconds of 8 kHz 16-bit. */
const BATCH_BYTES = 64 * 1024;

/**
 * A WAV file written as audio arrives (recordings): samples are encoded into one of two batch
 * buffers and written when one fills, so a long recording never stays in memory and a frame's
 * `write` does not wait for the disk; `close` writes the rest and patches the sizes into the
 * header. The header first written announces no data, so a file left by a crash reads as empty.
 */
export class WavWriter {
  private readonly layout: Layout;
  private batch: Buffer;
  private spare: Buffer;
  private batchLength = 0;
  private dataBytes = 0;
  /** Where the next batch goes in the file (writes are positional: the header is rewritten at 0). */
  private fileOffset: number;
  private pending: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  private closed = false;
  private interleaved = new Int16Array(320);
  private busy = false;

  private constructor(
    private readonly handle: FileHandle,
    layout: Layout,
  ) {
    this.layout = layout;
    this.fileOffset = layout.headerLength;
    this.batch = Buffer.alloc(BATCH_BYTES);
    this.spare = Buffer.alloc(BATCH_BYTES);
  }

  /** Creates (or truncates) `path` and writes the header. */
  static async create(path: string, format: WavFormat = {}): Promise<WavWriter> {
    const layout = layoutOf(format);
    const handle = await open(path, 'w');
    try {
      await handle.write(header(layout, 0), 0, layout.headerLength, 0);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return new WavWriter(handle, layout);
  }

  /** Bytes of audio written so far (queued included). */
  get bytes(): number {
    return this.dataBytes;
  }

  /** Samples per channel written so far. */
  get samples(): number {
    return this.dataBytes / this.layout.bytesPerSample / this.layout.channels;
  }

  /**
   * Appends samples (interleaved, left first, for two channels). Resolves at once unless a
   * batch is full and the one before it is still being written; rejects when a write failed.
   * Await each write before the next (a write started too early is refused): the samples are
   * read until it resolves.
   */
  async write(samples: Int16Array): Promise<void> {
    if (this.closed) throw new WavError('the WAV writer is closed');
    if (this.failure) throw this.failure;
    if (samples.length % this.layout.channels) throw new WavError('interleaved stereo needs an even number of samples');
    if (this.busy) throw new WavError('a WAV write was started before the previous one finished: await each write');
    this.busy = true;
    try {
      const perSample = this.layout.bytesPerSample;
      let from = 0;
      while (from < samples.length) {
        const room = Math.floor((this.batch.length - this.batchLength) / perSample);
        const take = Math.min(room, samples.length - from);
        this.batchLength = encodeInto(this.layout, samples.subarray(from, from + take), this.batch, this.batchLength);
        this.dataBytes += take * perSample;
        from += take;
        if (this.batchLength + perSample > this.batch.length) await this.flushBatch();
      }
    } finally {
      this.busy = false;
    }
  }

  /**
   * Appends one frame per channel of a two-channel file (a recording with one direction of the
   * call on each side), interleaved through a buffer the writer reuses. Both must be as long.
   */
  async writeChannels(left: Int16Array, right: Int16Array): Promise<void> {
    if (this.layout.channels !== 2) throw new WavError('writeChannels needs a two-channel WAV writer');
    if (left.length !== right.length) throw new WavError(`the channels differ in length: ${left.length} and ${right.length}`);
    if (this.interleaved.length < 2 * left.length) this.interleaved = new Int16Array(2 * left.length);
    const interleaved = this.interleaved;
    for (let i = 0; i < left.length; i++) {
      interleaved[2 * i] = left[i]!;
      interleaved[2 * i + 1] = right[i]!;
    }
    // The buffer is read until write() resolves, and writes are awaited one by one.
    await this.write(interleaved.subarray(0, 2 * left.length));
  }

  /** Starts writing the full batch, after the previous write has finished, and swaps buffers. */
  private async flushBatch(): Promise<void> {
    await this.pending;
    if (this.failure) throw this.failure;
    const full = this.batch;
    const length = this.batchLength;
    this.batch = this.spare;
    this.spare = full;
    this.batchLength = 0;
    const at = this.fileOffset;
    this.fileOffset += length;
    this.pending = this.handle.write(full, 0, length, at).catch((err: Error) => {
      this.failure = err;
    });
  }

  /** Writes what is left, patches the header with the final sizes and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.pending;
      if (this.failure) throw this.failure;
      if (this.batchLength) await this.handle.write(this.batch, 0, this.batchLength, this.fileOffset);
      this.fileOffset += this.batchLength;
      if (this.dataBytes & 1) await this.handle.write(Buffer.alloc(1), 0, 1, this.fileOffset);
      await this.handle.write(header(this.layout, this.dataBytes), 0, this.layout.headerLength, 0);
    } finally {
      await this.handle.close();
    }
  }
}
