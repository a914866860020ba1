/**
 * Prompts: what a call plays, rendered to 8 kHz linear audio — text and SSML through
 * text-to-speech (tts.ts: espeak-ng), and audio files fetched over HTTP(S) (WAV: PCM or G.711,
 * any rate, resampled; wav.ts). Fetches go through src/services/remote-fetch.ts: http and https
 * only (no file: URLs: a prompt must not read the server's disk), bounded in time and size, and
 * off the server's own network unless the operator allows it.
 */
import { fetchRemote, RemoteFetchError } from '../services/remote-fetch.js';
import { TextToSpeech, TtsError } from './tts.js';
import { resample } from './resample.js';
import { CALL_RATE, readWav, WavError } from './wav.js';

/** A document to play, as Rayo's output carries it. */
export type PromptDocument = { kind: 'url'; url: string } | { kind: 'inline'; contentType: string; content: string };

/** Why a prompt could not be rendered: `bad` is the request's fault, `unavailable` the server's. */
export class PromptError extends Error {
  constructor(
    readonly kind: 'bad' | 'unavailable',
    message: string,
  ) {
    super(message);
    this.name = 'PromptError';
  }
}

export interface PromptRendererOptions {
  tts: TextToSpeech;
  /** The largest audio file fetched, in bytes (16 MiB). */
  maxFetchBytes?: number;
  /** ms before a fetch is abandoned (10 s). */
  fetchTimeoutMs?: number;
  /** Fetch from hosts with loopback, private or link-local addresses too (config media.promptFetch 'any'). */
  fetchPrivate?: boolean;
}

/** The longest prompt a document may render to (a file, or what text-to-speech made of a text). */
export const MAX_PROMPT_SECONDS = 600;

/** Content types read as text to speak, and as SSML. */
const TEXT_TYPES = new Set(['text/plain']);
const SSML_TYPES = new Set(['application/ssml+xml']);

export class PromptRenderer {
  private readonly maxFetchBytes: number;
  private readonly fetchTimeoutMs: number;

  constructor(private readonly options: PromptRendererOptions) {
    this.maxFetchBytes = options.maxFetchBytes ?? 16 * 1024 * 1024;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? 10_000;
  }

  /** The document as 8 kHz samples. Throws PromptError. */
  async render(document: PromptDocument, voice?: string): Promise<Int16Array> {
    if (document.kind === 'url') return this.fetchAudio(document.url);
    const type = document.contentType.split(';')[0]!.trim().toLowerCase();
    const ssml = SSML_TYPES.has(type);
    if (!ssml && !TEXT_TYPES.has(type)) throw new PromptError('bad', `documents of type ${type} cannot be played (text/plain, application/ssml+xml, or a url to a WAV file)`);
    const text = document.content.trim();
    if (text === '') throw new PromptError('bad', 'the document is empty');
    try {
      const speech = await this.options.tts.speak({ text, ssml, ...(voice !== undefined && { voice }) });
      return speech.samples;
    } catch (err) {
      if (err instanceof TtsError) {
        const bad = err.code === 'bad-ssml' || err.code === 'bad-request' || err.code === 'too-large';
        throw new PromptError(bad ? 'bad' : 'unavailable', `text-to-speech failed: ${err.message}`);
      }
      throw err;
    }
  }

  private async fetchAudio(url: string): Promise<Int16Array> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PromptError('bad', `not a URL: ${url.slice(0, 200)}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new PromptError('bad', `audio is fetched over http or https only, not ${parsed.protocol}`);
    let body: Buffer;
    try {
      body = await fetchRemote(parsed, { bytes: this.maxFetchBytes, timeoutMs: this.fetchTimeoutMs, redirects: 3, privateAddresses: this.options.fetchPrivate === true, accept: 'audio/wav, audio/x-wav, audio/*;q=0.5' }, 'the prompt');
    } catch (err) {
      if (err instanceof RemoteFetchError) throw new PromptError('bad', `${url}: ${err.message}`);
      throw err;
    }
    try {
      const audio = readWav(body, { maxBytes: this.maxFetchBytes });
      // Bounded before the resampler runs (on the event loop): telephone rates and up, at most MAX_PROMPT_SECONDS.
      if (audio.sampleRate < CALL_RATE) throw new PromptError('bad', `${url} is sampled at ${audio.sampleRate} Hz: prompts are 8000 Hz or more`);
      if (audio.samples.length / audio.sampleRate > MAX_PROMPT_SECONDS) throw new PromptError('bad', `${url} is longer than ${MAX_PROMPT_SECONDS / 60} minutes`);
      return audio.sampleRate === CALL_RATE ? audio.samples : resample(audio.samples, audio.sampleRate, CALL_RATE);
    } catch (err) {
      if (err instanceof WavError) throw new PromptError('bad', `${url} is not a WAV file that can be played: ${err.message}`);
      throw err;
    }
  }
}
