import type { AudioSource } from '../../media/endpoint.js';
import { PromptError, type PromptRenderer } from '../../media/prompts.js';
import { beep, concatSamples, silence } from '../../media/tones.js';
import { VoiceActivityDetector } from '../../media/vad.js';
import { sharedFrameClock } from '../../media/frame-clock.js';
import { CALL_RATE, encodeWav, FRAME_SAMPLES, toFrames } from '../../media/wav.js';
import type { MediaParty, PartyEndReason } from '../calls/media-party.js';
import { AppError, type AppCall, type DigitOptions, type PlayOutcome, type Prompt, type Recording, type RecordOptions } from './api.js';

/** The longest recording an application may ask for, seconds. */
export const MAX_RECORD_SECONDS = 600;
/** Keys kept while nobody collects them (type-ahead). */
const TYPE_AHEAD_KEYS = 32;
const FRAMES_PER_SECOND = 50;
/** Frames received and not yet taken into a recording (more are dropped: a burst beyond this is not speech worth keeping). */
const ARRIVED_FRAMES = 50;

/** The frames of 8 kHz samples, one after another. */
export function samplesSource(samples: Int16Array): AudioSource {
  const frames = toFrames(samples);
  let next = 0;
  return { next: () => frames[next++] };
}

/** Renders prompts to one run of samples (text-to-speech, fetched WAV files, beeps, pauses). */
export async function renderPrompts(renderer: PromptRenderer, prompts: Prompt | readonly Prompt[]): Promise<Int16Array> {
  const list: readonly Prompt[] = Array.isArray(prompts) ? prompts : [prompts as Prompt];
  const parts: Int16Array[] = [];
  for (const prompt of list) {
    try {
      if ('text' in prompt) parts.push(await renderer.render({ kind: 'inline', contentType: 'text/plain', content: prompt.text }, prompt.voice));
      else if ('ssml' in prompt) parts.push(await renderer.render({ kind: 'inline', contentType: 'application/ssml+xml', content: prompt.ssml }));
      else if ('url' in prompt) parts.push(await renderer.render({ kind: 'url', url: prompt.url }));
      else if ('samples' in prompt) parts.push(prompt.samples);
      else if ('beep' in prompt) parts.push(beep());
      else parts.push(silence(Math.max(0, Math.min(60_000, prompt.silenceMs))));
    } catch (err) {
      if (err instanceof PromptError) throw new AppError(err.message);
      throw err;
    }
  }
  return concatSamples(parts);
}

/**
 * A call as an application's task drives it (api.ts AppCall), over the call engine's
 * MediaParty: keys are heard from the moment the call has media and kept (up to
 * TYPE_AHEAD_KEYS) until collected, so what a caller types during a prompt is not lost.
 */
export class TaskCall implements AppCall {
  private party!: MediaParty;
  /** Who drives the call (a task's handle); changes when the call is handed over. */
  driver: string;
  private readonly keys: string[] = [];
  private readonly keyWaiters = new Set<() => void>();
  private endedWith: { reason: PartyEndReason; code?: number } | undefined;
  private settle!: (outcome: { reason: PartyEndReason; code?: number }) => void;
  readonly ended: Promise<{ reason: PartyEndReason; code?: number }>;
  /** Resolves the answer of a call we dial (or rejects when it fails). */
  dialed: { resolve: () => void; reject: (err: Error) => void } | undefined;
  /** The mixer the call is in, for a join elsewhere to leave it first. */
  mixer: { leave(call: AppCall): void } | undefined;
  private stopDigits: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly from: { address: string; name?: string },
    readonly to: { address: string; name?: string },
    driver: string,
    private readonly renderer: PromptRenderer,
  ) {
    this.driver = driver;
    this.ended = new Promise((resolve) => (this.settle = resolve));
  }

  /** The call engine's leg (set once, right after construction). */
  attach(party: MediaParty): void {
    this.party = party;
  }

  get media(): MediaParty {
    return this.party;
  }

  get state(): AppCall['state'] {
    if (this.endedWith) return 'ended';
    const s = this.party.state;
    if (s === 'answered') return 'connected';
    if (s === 'dialing' || s === 'ringing') return 'dialing';
    return 'incoming';
  }

  // --- what the MediaParty tells (MediaPartyEvents) ---

  answeredByPeer(): void {
    this.listenForKeys();
    this.dialed?.resolve();
    this.dialed = undefined;
  }

  over(reason: PartyEndReason, code?: number): void {
    if (this.endedWith) return;
    this.endedWith = { reason, ...(code !== undefined && { code }) };
    this.stopDigits?.();
    this.mixer?.leave(this);
    this.dialed?.reject(new AppError(`the call was not answered (${reason}${code !== undefined ? ` ${code}` : ''})`));
    this.dialed = undefined;
    for (const wake of [...this.keyWaiters]) wake();
    this.settle(this.endedWith);
  }

  // --- the application's commands ---

  async answer(): Promise<boolean> {
    if (this.endedWith) return false;
    if (this.state !== 'incoming') throw new AppError(`the call is ${this.state}, not waiting to be answered`);
    try {
      await this.party.answer(this.driver);
    } catch (err) {
      if (this.endedWith) return false;
      throw new AppError(`the call could not be answered: ${err instanceof Error ? err.message : String(err)}`);
    }
    // The caller may have gone while the media was set up.
    if (this.endedWith) return false;
    this.listenForKeys();
    return true;
  }

  reject(code = 603, reason = 'declined'): void {
    if (!Number.isInteger(code) || code < 400 || code > 699) throw new AppError(`a call is rejected with a code from 400 to 699, not ${code}`);
    this.party.reject(code, reason);
  }

  redirect(to: string): void {
    this.party.redirect(to);
  }

  hangup(): void {
    this.party.hangup();
  }

  async play(prompts: Prompt | readonly Prompt[], options: { bargeIn?: boolean } = {}): Promise<PlayOutcome> {
    const samples = await renderPrompts(this.renderer, prompts);
    if (this.state !== 'connected') return 'hungup';
    if (options.bargeIn && this.keys.length > 0) return 'interrupted';
    let interrupted = false;
    const onKey = (): void => {
      interrupted = true;
      this.party.stopPlaying();
    };
    if (options.bargeIn) this.keyWaiters.add(onKey);
    try {
      const result = await this.party.play(samplesSource(samples));
      if (this.endedWith) return 'hungup';
      if (interrupted) return 'interrupted';
      return result === 'finished' ? 'finished' : 'stopped';
    } finally {
      this.keyWaiters.delete(onKey);
    }
  }

  async collectDigits(options: DigitOptions): Promise<string> {
    const max = options.max;
    if (!Number.isInteger(max) || max < 1 || max > 128) throw new AppError('collectDigits takes max from 1 to 128');
    const terminators = options.terminators ?? '#';
    const first = (options.firstSeconds ?? 5) * 1000;
    const next = (options.nextSeconds ?? 3) * 1000;
    let collected = '';
    while (collected.length < max && !this.endedWith) {
      const key = this.keys.shift() ?? (await this.nextKey(collected === '' ? first : next));
      if (key === undefined) break;
      if (terminators.includes(key)) break;
      collected += key;
    }
    return collected;
  }

  async record(options: RecordOptions = {}): Promise<Recording> {
    const maxSeconds = Math.min(MAX_RECORD_SECONDS, options.maxSeconds ?? 120);
    if (!(maxSeconds > 0)) throw new AppError('a recording needs maxSeconds above 0');
    const finalSilence = Math.round((options.finalSilenceSeconds ?? 3) * FRAMES_PER_SECOND);
    const initialSilence = Math.round((options.initialSilenceSeconds ?? 5) * FRAMES_PER_SECOND);
    const stopKeys = options.stopKeys ?? '#';
    if (this.endedWith) return { wav: encodeWav(new Int16Array(0), { sampleRate: CALL_RATE }), seconds: 0, reason: 'hungup', speech: false };
    if (this.state !== 'connected') throw new AppError('the call is not connected');
    if (options.beep !== false) await this.play({ beep: true });
    // Keys pressed before the beep belong to what came before.
    this.keys.length = 0;
    const frames: Int16Array[] = [];
    const vad = new VoiceActivityDetector();
    let speech = false;
    let quiet = 0;
    return new Promise<Recording>((resolve) => {
      let done = false;
      // Frames as they arrive; the recording advances on the frame clock, so that time passes
      // (max time, silence) even while the caller sends nothing (silence suppression, a stall).
      const arrived: Int16Array[] = [];
      const finish = (reason: Recording['reason']): void => {
        if (done) return;
        done = true;
        offAudio();
        offClock();
        this.keyWaiters.delete(onKey);
        const samples = concatSamples(frames);
        resolve({ wav: encodeWav(samples, { sampleRate: CALL_RATE }), seconds: samples.length / CALL_RATE, reason, speech });
      };
      const onKey = (): void => {
        const key = this.keys.find((k) => stopKeys.includes(k));
        if (key === undefined) return;
        this.keys.splice(this.keys.indexOf(key), 1);
        finish('key');
      };
      const take = (frame: Int16Array | undefined): void => {
        frames.push(frame ?? new Int16Array(FRAME_SAMPLES));
        const transition = frame ? vad.process(frame) : vad.processSilence();
        if (transition === 'started') speech = true;
        quiet = vad.speaking ? 0 : quiet + 1;
        if (frames.length >= maxSeconds * FRAMES_PER_SECOND) finish('max');
        else if (speech && finalSilence > 0 && quiet >= finalSilence) finish('silence');
        else if (!speech && initialSilence > 0 && frames.length >= initialSilence) finish('initial-silence');
      };
      const offAudio = this.party.onAudio((frame) => {
        if (arrived.length < ARRIVED_FRAMES) arrived.push(Int16Array.from(frame));
      });
      const offClock = sharedFrameClock.subscribe({
        onFrame: () => {
          take(arrived.shift());
          // Frames that came in a burst are caught up with, a few at a time.
          while (!done && arrived.length > 2) take(arrived.shift());
        },
      });
      this.keyWaiters.add(onKey);
      void this.ended.then(() => finish('hungup'));
    });
  }

  /** Hears the caller's keys (RFC 4733, in-band or signaled) once the call has media. */
  private listenForKeys(): void {
    this.stopDigits ??= this.party.onDigit((digit) => {
      if (this.keys.length < TYPE_AHEAD_KEYS) this.keys.push(digit);
      for (const wake of [...this.keyWaiters]) wake();
    });
  }

  /** The next key within `ms`; undefined when none comes or the call ends. */
  private nextKey(ms: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.keyWaiters.delete(wake);
        resolve(this.keys.shift());
      };
      const timer = setTimeout(wake, Math.max(0, ms));
      this.keyWaiters.add(wake);
    });
  }
}
