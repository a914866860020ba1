/**
 * Text-to-speech for prompts, with Debian's espeak-ng run as a child process (the synthesis never
 * runs on the event loop): the text goes in on stdin, a WAV comes back on stdout (`--stdout`,
 * 22050 Hz 16-bit mono, with the "length unknown" sizes of a writer that cannot seek), which is
 * read by src/media/wav.ts and resampled to the calls' 8 kHz by src/media/resample.ts.
 *
 * SSML: a document (`ssml: true`) is parsed first (saxes, as the rest of the server parses XML);
 * a malformed one is refused with a TtsError of code 'bad-ssml' — espeak-ng itself would read it
 * aloud, tags and all. The elements espeak-ng implements (its docs/markup.md: speak, voice,
 * prosody, say-as, emphasis, break, mark, s, p, sub, audio) are passed on with their attributes;
 * of the other SSML 1.1 elements the ones whose content is not meant to be spoken (lexicon, meta,
 * metadata, desc) are dropped with their content, and the rest (phoneme, lang, token, w, …) are
 * replaced by their text, so `<phoneme ph="…">tomato</phoneme>` says "tomato" the usual way.
 * `<audio>` is kept as espeak-ng has it: it speaks the element's fallback content and fetches no
 * URL (a player that wants the audio plays it itself).
 *
 * Limits: a timeout per synthesis (the child is killed), a cap on the WAV bytes read from it,
 * a cap on the text's length, a few syntheses at a time with a short queue behind them (a full
 * queue is an error of code 'busy', for a caller to turn into resource-constraint), and a clear
 * error (code 'missing') when espeak-ng is not installed. Rendered prompts may be cached, by
 * text, voice and speed, evicting the least recently used beyond a byte budget; identical
 * requests in flight share one child.
 */
import { spawn } from 'node:child_process';
import { SaxesParser } from 'saxes';
import { WavDecoder, toFrames } from './wav.js';
import { Resampler } from './resample.js';

export type TtsErrorCode = 'missing' | 'timeout' | 'too-large' | 'bad-ssml' | 'bad-request' | 'busy' | 'failed';

export class TtsError extends Error {
  override name = 'TtsError';
  constructor(
    readonly code: TtsErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface TtsOptions {
  /** The espeak-ng executable; 'espeak-ng' (found on PATH) unless given. */
  binary?: string;
  /** ms before a synthesis is abandoned and its child killed; 15000 unless given. */
  timeoutMs?: number;
  /** The largest WAV accepted from espeak-ng, in bytes; 16 MiB (about 6 minutes) unless given. */
  maxOutputBytes?: number;
  /** The longest text accepted, in characters; 20000 unless given. */
  maxTextLength?: number;
  /** Syntheses running at once; 2 unless given. */
  concurrency?: number;
  /** Requests waiting beyond those; 32 unless given. */
  maxQueue?: number;
  /** Bytes of rendered 8 kHz audio to cache; 0 (no cache) unless given. */
  cacheBytes?: number;
  /** The voice when a request names none; espeak-ng's default (en) unless given. */
  defaultVoice?: string;
}

export interface SpeakRequest {
  text: string;
  /** The text is an SSML document. */
  ssml?: boolean;
  /** An espeak-ng voice or language: 'en', 'en-us', 'fr', 'de+f3'… */
  voice?: string;
  /** Words a minute, 80 to 450 (espeak-ng's -s); its default (175) unless given. */
  speed?: number;
}

/** Rendered speech at 8 kHz. */
export interface Speech {
  samples: Int16Array;
  /** The samples as 20 ms frames (views, the last padded with silence). */
  frames: Int16Array[];
  durationMs: number;
}

/** Voices are names and language tags; anything else never reaches the command line. */
const VOICE = /^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$/;

/** The elements espeak-ng's SSML reader implements; the others are stripped (see above). */
const SUPPORTED = new Set(['speak', 'voice', 'prosody', 'say-as', 'emphasis', 'break', 'mark', 's', 'p', 'sub', 'audio']);
/** Elements whose content is not to be spoken. */
const SILENT = new Set(['lexicon', 'meta', 'metadata', 'desc']);

function escapeXml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}

/**
 * An SSML document reduced to what espeak-ng implements. Throws TtsError('bad-ssml') when it is
 * not well-formed XML or its root is not `<speak>`.
 */
export function sanitizeSsml(document: string): string {
  const parser = new SaxesParser({ xmlns: false });
  const out: string[] = [];
  const stack: { name: string; kept: boolean }[] = [];
  let silent = 0;
  let root: string | undefined;
  let failure: Error | undefined;
  parser.on('error', (err) => {
    failure ??= err;
  });
  parser.on('opentag', (tag) => {
    const local = tag.name.includes(':') ? tag.name.slice(tag.name.indexOf(':') + 1) : tag.name;
    root ??= local;
    if (SILENT.has(local)) silent++;
    const kept = silent === 0 && SUPPORTED.has(local);
    stack.push({ name: local, kept });
    if (!kept) return;
    const attributes = Object.entries(tag.attributes)
      // Namespace declarations and foreign attributes (xsi:schemaLocation) mean nothing to espeak-ng; xml:lang picks its voice.
      .filter(([name]) => !name.includes(':') ? name !== 'xmlns' : name === 'xml:lang')
      .map(([name, value]) => ` ${name}="${escapeXml(String(value))}"`)
      .join('');
    out.push(`<${local}${attributes}${tag.isSelfClosing ? '/>' : '>'}`);
  });
  parser.on('closetag', (tag) => {
    const open = stack.pop();
    const local = tag.name.includes(':') ? tag.name.slice(tag.name.indexOf(':') + 1) : tag.name;
    if (open?.kept && !tag.isSelfClosing) out.push(`</${open.name}>`);
    if (SILENT.has(local)) silent--;
  });
  parser.on('text', (text) => {
    if (silent === 0 && stack.length) out.push(escapeXml(text));
  });
  parser.on('cdata', (text) => {
    if (silent === 0 && stack.length) out.push(escapeXml(text));
  });
  try {
    // Documents carried inside other XML (Rayo's <document> CDATA) start with a line break before
    // their XML declaration, which XML does not allow: leading white space is dropped.
    parser.write(document.trimStart()).close();
  } catch (err) {
    failure ??= err as Error;
  }
  if (failure) throw new TtsError('bad-ssml', `malformed SSML: ${failure.message}`);
  if (root !== 'speak') throw new TtsError('bad-ssml', `an SSML document's root must be <speak>, not ${root ? `<${root}>` : 'missing'}`);
  return out.join('');
}

interface Job {
  start: () => void;
}

export class TextToSpeech {
  private readonly binary: string;
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;
  private readonly maxTextLength: number;
  private readonly concurrency: number;
  private readonly maxQueue: number;
  private readonly cacheBytes: number;
  private readonly defaultVoice: string | undefined;
  private running = 0;
  private readonly queue: Job[] = [];
  private readonly cache = new Map<string, Speech>();
  private cached = 0;
  private readonly inFlight = new Map<string, Promise<Speech>>();

  constructor(options: TtsOptions = {}) {
    this.binary = options.binary ?? 'espeak-ng';
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.maxOutputBytes = options.maxOutputBytes ?? 16 * 1024 * 1024;
    this.maxTextLength = options.maxTextLength ?? 20_000;
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.maxQueue = Math.max(0, options.maxQueue ?? 32);
    this.cacheBytes = Math.max(0, options.cacheBytes ?? 0);
    this.defaultVoice = options.defaultVoice;
  }

  /** Bytes of audio in the cache. */
  get cachedBytes(): number {
    return this.cached;
  }

  /** Syntheses running now and waiting. */
  get load(): { running: number; queued: number } {
    return { running: this.running, queued: this.queue.length };
  }

  /** Renders `request` to 8 kHz speech; rejects with a TtsError. */
  speak(request: SpeakRequest): Promise<Speech> {
    let args: string[];
    let input: string;
    try {
      ({ args, input } = this.command(request));
    } catch (err) {
      return Promise.reject(err);
    }
    const key = `${args.join('\0')}\0${input}`;
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return Promise.resolve(hit);
    }
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    if (this.running >= this.concurrency && this.queue.length >= this.maxQueue) {
      return Promise.reject(new TtsError('busy', `text-to-speech is busy: ${this.running} running and ${this.queue.length} waiting`));
    }
    const promise = new Promise<Speech>((resolve, reject) => {
      const start = (): void => {
        this.running++;
        // The bookkeeping is done before the caller hears: a request made as soon as this one
        // resolves finds the cache, not the finished synthesis still in flight.
        const done = (): void => {
          this.running--;
          this.inFlight.delete(key);
          this.queue.shift()?.start();
        };
        this.render(args, input).then(
          (speech) => {
            this.remember(key, speech);
            done();
            resolve(speech);
          },
          (err: unknown) => {
            done();
            reject(err);
          },
        );
      };
      if (this.running < this.concurrency) start();
      else this.queue.push({ start });
    });
    this.inFlight.set(key, promise);
    return promise;
  }

  private command(request: SpeakRequest): { args: string[]; input: string } {
    if (typeof request.text !== 'string') throw new TtsError('bad-request', 'the text to speak is missing');
    if (request.text.length > this.maxTextLength) {
      throw new TtsError('bad-request', `the text is too long: ${request.text.length} characters, the limit is ${this.maxTextLength}`);
    }
    const args = ['--stdout', '--stdin'];
    const voice = request.voice ?? this.defaultVoice;
    if (voice !== undefined) {
      if (!VOICE.test(voice)) throw new TtsError('bad-request', `not a voice name: ${JSON.stringify(voice)}`);
      args.push('-v', voice);
    }
    if (request.speed !== undefined) {
      if (!Number.isInteger(request.speed) || request.speed < 80 || request.speed > 450) {
        throw new TtsError('bad-request', `the speed must be 80 to 450 words a minute, not ${request.speed}`);
      }
      args.push('-s', String(request.speed));
    }
    if (request.ssml) args.push('-m');
    // espeak-ng reads stdin up to its end; a newline makes it say the last sentence too.
    const input = `${request.ssml ? sanitizeSsml(request.text) : request.text}\n`;
    return { args, input };
  }

  private remember(key: string, speech: Speech): void {
    const size = speech.samples.byteLength;
    if (size > this.cacheBytes) return;
    this.cache.set(key, speech);
    this.cached += size;
    for (const [oldKey, old] of this.cache) {
      if (this.cached <= this.cacheBytes) break;
      this.cache.delete(oldKey);
      this.cached -= old.samples.byteLength;
    }
  }

  private render(args: string[], input: string): Promise<Speech> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      // The WAV is decoded and resampled as it arrives, a pipe's chunk at a time, so a long
      // prompt never costs the event loop more than a few milliseconds at once.
      const decoder = new WavDecoder({ streamed: true, maxBytes: Number.MAX_SAFE_INTEGER });
      let resampler: Resampler | undefined;
      const pieces: Int16Array[] = [];
      let bytes = 0;
      let stderr = '';
      let settled = false;
      const fail = (err: TtsError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(err);
      };
      const timer = setTimeout(() => fail(new TtsError('timeout', `text-to-speech took longer than ${this.timeoutMs} ms`)), this.timeoutMs);
      child.on('error', (err: NodeJS.ErrnoException) => {
        fail(
          err.code === 'ENOENT'
            ? new TtsError('missing', `espeak-ng is not installed (${this.binary} not found; Debian package espeak-ng)`)
            : new TtsError('failed', `could not run ${this.binary}: ${err.message}`),
        );
      });
      child.stdout.on('data', (chunk: Buffer) => {
        if (settled) return;
        bytes += chunk.length;
        if (bytes > this.maxOutputBytes) {
          fail(new TtsError('too-large', `the speech is longer than the limit of ${this.maxOutputBytes} bytes`));
          return;
        }
        try {
          const samples = decoder.push(chunk);
          if (!samples.length) return;
          resampler ??= new Resampler(decoder.info!.sampleRate, 8000);
          pieces.push(resampler.process(samples).slice());
        } catch (err) {
          fail(new TtsError('failed', `espeak-ng's output is not a usable WAV: ${(err as Error).message}`));
        }
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (stderr.length < 2000) stderr += chunk.toString('utf8');
      });
      // A child that dies before reading its input makes stdin fail with EPIPE: the exit says why.
      child.stdin.on('error', () => {});
      child.stdin.end(input, 'utf8');
      child.on('close', (code, signal) => {
        if (settled) return;
        if (code !== 0) {
          const reason = stderr.trim().split('\n')[0] || (signal ? `killed by ${signal}` : `exit code ${code}`);
          fail(new TtsError(/voice/i.test(reason) ? 'bad-request' : 'failed', `espeak-ng failed: ${reason}`));
          return;
        }
        try {
          decoder.end();
        } catch (err) {
          fail(new TtsError('failed', `espeak-ng's output is not a usable WAV: ${(err as Error).message}`));
          return;
        }
        settled = true;
        clearTimeout(timer);
        if (resampler) pieces.push(resampler.flush().slice());
        const samples = new Int16Array(pieces.reduce((n, piece) => n + piece.length, 0));
        let at = 0;
        for (const piece of pieces) {
          samples.set(piece, at);
          at += piece.length;
        }
        resolve({ samples, frames: toFrames(samples), durationMs: samples.length / 8 });
      });
    });
  }
}
