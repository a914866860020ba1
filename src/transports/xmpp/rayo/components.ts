import { FRAME_SAMPLES, type AudioSource, type PlayResult } from '../../../media/endpoint.js';
import { NLSML_CONTENT_TYPE, nlsmlFromMatch } from '../../../media/nlsml.js';
import { MAX_PROMPT_SECONDS, PromptError, type PromptRenderer } from '../../../media/prompts.js';
import { concatSamples } from '../../../media/tones.js';
import { compileGrammar, SrgsError, SrgsGrammarSet, type SrgsState } from '../../../media/srgs.js';
import { badRequest, rayoError, unsupportedOption, type CompleteReason, type ComponentCommand, type InputComponent, type OutputComponent, type PromptComponent, type RayoError } from './elements.js';

/** What a component hears of its call's media (src/media/endpoint.ts). */
export interface ComponentMedia {
  /** Each DTMF key the caller presses (RFC 4733 events or in-band tones), once. */
  onDigit(listener: (digit: string) => void): () => void;
}

/**
 * A Rayo component (XEP-0327 "Components"): started on a call with an iq, it runs until it
 * completes — by itself, by `stop`, or because the call ended — and then reports its `complete`
 * event exactly once.
 */
export abstract class RayoComponent {
  private done = false;

  constructor(
    readonly id: string,
    readonly kind: 'output' | 'input' | 'prompt' | 'record',
    private readonly completed: (component: RayoComponent, reason: CompleteReason) => void,
  ) {}

  get finished(): boolean {
    return this.done;
  }

  /** A command to the component; a RayoError when it does not take it now. */
  command(command: ComponentCommand): RayoError | undefined {
    if (command.kind === 'stop') {
      this.complete({ kind: 'stop' });
      return undefined;
    }
    return rayoError('feature-not-implemented', `a ${this.kind} component does not take <${command.kind}>`, 'cancel');
  }

  /** The call ended under it. */
  hangup(): void {
    this.complete({ kind: 'hangup' });
  }

  /** How it completed (once finished). */
  completion: CompleteReason | undefined;

  protected complete(reason: CompleteReason): void {
    if (this.done) return;
    this.done = true;
    this.completion = reason;
    this.release();
    this.completed(this, reason);
  }

  /** Frees timers and listeners (called once, on completion). */
  protected abstract release(): void;
}

/**
 * The input component (XEP-0327 "Input"), for DTMF: keys are matched against the component's
 * grammars (src/media/srgs.ts; the first grammar to match wins) and the result is reported as
 * NLSML. It completes with `match` when the keys form a sentence no further key could extend, or
 * one that could be extended when the terminator key, the inter-digit timeout or the end comes;
 * `nomatch` when no sentence starts with the keys; `noinput` when no key comes within the
 * initial timeout. `mode="any"` collects DTMF only (there is no speech recognizer here); `voice`
 * and `cpa` are refused when the component starts.
 */
export class InputCollector extends RayoComponent {
  private readonly grammars: SrgsGrammarSet;
  private readonly unsubscribe: () => void;
  private timer: NodeJS.Timeout | undefined;
  private keys = 0;

  /** Compiles the grammars first: a RayoError (nothing started) when the request cannot be taken. */
  static start(
    id: string,
    request: InputComponent,
    media: ComponentMedia,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    options: { deferTimers?: boolean; onKey?: () => void } = {},
  ): InputCollector | RayoError {
    if (request.mode === 'voice' || request.mode === 'cpa') return unsupportedOption(`input mode ${request.mode} needs a speech recognizer, which this server does not have; use mode dtmf`);
    if (request.matchContentType !== NLSML_CONTENT_TYPE) return unsupportedOption(`results are given as ${NLSML_CONTENT_TYPE} only, not ${request.matchContentType}`);
    if (request.grammars.length === 0) return badRequest('an input component needs at least one grammar');
    let grammars: SrgsGrammarSet;
    try {
      grammars = new SrgsGrammarSet(
        request.grammars.map((g, i) =>
          g.kind === 'url' ? compileGrammar({ url: g.url }, { name: g.url }) : compileGrammar({ contentType: g.contentType, body: g.content }, { name: `session:grammar-${i}` }),
        ),
      );
    } catch (err) {
      if (err instanceof SrgsError) return badRequest(`the grammar cannot be used: ${err.message}`);
      throw err;
    }
    return new InputCollector(id, request, media, grammars, completed, options);
  }

  private constructor(
    id: string,
    private readonly request: InputComponent,
    media: ComponentMedia,
    grammars: SrgsGrammarSet,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    private readonly options: { deferTimers?: boolean; onKey?: () => void },
  ) {
    super(id, 'input', completed);
    this.grammars = grammars;
    this.unsubscribe = media.onDigit((digit) => this.key(digit));
    if (!options.deferTimers) this.startTimers();
  }

  /** Starts the initial timeout (a prompt's input: once its output has played). */
  startTimers(): void {
    if (this.finished || this.keys > 0) return;
    if (this.request.initialTimeout > 0) this.wait(this.request.initialTimeout, () => this.complete({ kind: 'noinput' }));
  }

  /** Ends the input as it stands (the prompt was stopped: no result). */
  cancel(reason: CompleteReason): void {
    this.complete(reason);
  }

  private key(digit: string): void {
    if (this.finished) return;
    this.keys++;
    this.options.onKey?.();
    const terminator = this.request.terminator;
    if (terminator !== undefined && digit === terminator && !this.grammars.accepts(digit)) {
      return this.conclude(this.grammars.terminate());
    }
    const state = this.grammars.feed(digit);
    if (state.status === 'nomatch' || (state.status === 'match' && !state.canExtend)) return this.conclude(state);
    // A match that more keys could extend, or a prefix of one: wait for the next key.
    const interDigit = this.request.interDigitTimeout;
    if (interDigit > 0) this.wait(interDigit, () => this.conclude(this.grammars.terminate()));
    else this.clearTimer();
  }

  private conclude(state: SrgsState): void {
    if (state.status === 'match' && state.match) {
      this.complete({ kind: 'match', contentType: NLSML_CONTENT_TYPE, content: nlsmlFromMatch(state.match) });
    } else this.complete(this.keys === 0 ? { kind: 'noinput' } : { kind: 'nomatch' });
  }

  private wait(ms: number, then: () => void): void {
    this.clearTimer();
    this.timer = setTimeout(then, ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  protected release(): void {
    this.clearTimer();
    this.unsubscribe();
  }
}

/** What an output component plays into (the call's media endpoint, through MediaParty). */
export interface PlayerMedia {
  play(source: AudioSource): Promise<PlayResult>;
  stopPlaying(): void;
}

/** Volume steps of volume-up/volume-down (dB), and their bounds. */
const VOLUME_STEP_DB = 3;
const VOLUME_MIN_DB = -24;
const VOLUME_MAX_DB = 12;
/** Speed steps of speed-up/speed-down, and their bounds. */
const SPEED_STEP = 0.1;
const SPEED_MIN = 0.5;
const SPEED_MAX = 2;
const SAMPLES_PER_MS = 8;

/**
 * The audio of an output as a frame source: its documents one after another, repeated
 * `repeat-times` (0: until stopped) with `repeat-interval` of silence between, from
 * `start-offset`, for at most `max-time`. Paused, it sends silence and keeps its place. Speed
 * changes play the samples faster or slower, as a tape would (the pitch moves with it); volume
 * changes scale them.
 */
class OutputSource implements AudioSource {
  private readonly frame = new Int16Array(FRAME_SAMPLES);
  private readonly silence = new Int16Array(FRAME_SAMPLES);
  /** Where we are in the samples (fractional at speeds other than 1). */
  private position: number;
  private repeatsDone = 0;
  private silentFrames = 0;
  private playedFrames = 0;
  paused: boolean;
  private gain = 1;
  private volumeDb = 0;
  private speed = 1;
  /** Why the source ended: the documents ran out, or max-time. */
  ended: 'finish' | 'max-time' | undefined;

  constructor(
    private readonly samples: Int16Array,
    private readonly request: OutputComponent,
  ) {
    this.position = Math.min(samples.length, request.startOffset * SAMPLES_PER_MS);
    this.paused = request.startPaused;
  }

  next(): Int16Array | undefined {
    if (this.ended) return undefined;
    if (this.paused) return this.silence;
    if (this.request.maxTime > 0 && this.playedFrames * 20 >= this.request.maxTime) {
      this.ended = 'max-time';
      return undefined;
    }
    this.playedFrames++;
    if (this.silentFrames > 0) {
      this.silentFrames--;
      return this.silence;
    }
    if (this.position >= this.samples.length) {
      this.repeatsDone++;
      if (this.request.repeatTimes !== 0 && this.repeatsDone >= this.request.repeatTimes) {
        this.ended = 'finish';
        return undefined;
      }
      this.position = 0;
      this.silentFrames = Math.floor(this.request.repeatInterval / 20);
      if (this.silentFrames > 0) {
        this.silentFrames--;
        return this.silence;
      }
    }
    const samples = this.samples;
    const out = this.frame;
    for (let i = 0; i < FRAME_SAMPLES; i++) {
      const at = this.position;
      const whole = Math.floor(at);
      let value = 0;
      if (whole < samples.length) {
        const next = whole + 1 < samples.length ? samples[whole + 1]! : 0;
        value = samples[whole]! + (next - samples[whole]!) * (at - whole);
      }
      const scaled = value * this.gain;
      out[i] = scaled > 32767 ? 32767 : scaled < -32768 ? -32768 : scaled;
      this.position = at + this.speed;
    }
    return out;
  }

  seek(direction: 'forward' | 'back', amountMs: number): void {
    const delta = amountMs * SAMPLES_PER_MS * (direction === 'forward' ? 1 : -1);
    this.position = Math.max(0, Math.min(this.samples.length, this.position + delta));
  }

  changeSpeed(step: number): void {
    this.speed = Math.max(SPEED_MIN, Math.min(SPEED_MAX, Math.round((this.speed + step) * 10) / 10));
  }

  changeVolume(stepDb: number): void {
    this.volumeDb = Math.max(VOLUME_MIN_DB, Math.min(VOLUME_MAX_DB, this.volumeDb + stepDb));
    this.gain = 10 ** (this.volumeDb / 20);
  }
}

/**
 * The output component (XEP-0327 "Output"): its documents rendered (text and SSML through
 * text-to-speech, WAV files fetched from http(s) URLs: src/media/prompts.ts) and played into the
 * call, with pause, resume, seek, speed and volume; it completes with `finish`, `max-time`,
 * `stop`, `hangup` or `error`.
 */
export class OutputPlayer extends RayoComponent {
  private readonly source: OutputSource;
  /** Its play() has not ended yet. */
  private playing = true;

  /** Renders the documents first: a RayoError (nothing started) when they cannot be played. */
  static async start(
    id: string,
    request: OutputComponent,
    media: PlayerMedia,
    renderer: PromptRenderer,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    kind: 'output' | 'prompt' = 'output',
  ): Promise<OutputPlayer | RayoError> {
    const samples = await renderAll(request, renderer);
    if (!(samples instanceof Int16Array)) return samples;
    return new OutputPlayer(id, request, samples, media, completed, kind);
  }

  private constructor(
    id: string,
    request: OutputComponent,
    samples: Int16Array,
    private readonly media: PlayerMedia,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    kind: 'output' | 'prompt',
  ) {
    super(id, kind, completed);
    this.source = new OutputSource(samples, request);
    media.play(this.source).then(
      (result) => {
        this.playing = false;
        if (result === 'finished') this.complete({ kind: this.source.ended ?? 'finish' });
        else if (result === 'failed') this.complete({ kind: 'error', text: 'playing failed' });
        else this.complete({ kind: 'stop' });
      },
      (err: unknown) => {
        this.playing = false;
        this.complete({ kind: 'error', text: err instanceof Error ? err.message : String(err) });
      },
    );
  }

  override command(command: ComponentCommand): RayoError | undefined {
    switch (command.kind) {
      case 'pause':
        this.source.paused = true;
        return undefined;
      case 'resume':
        this.source.paused = false;
        return undefined;
      case 'seek':
        this.source.seek(command.direction, command.amount);
        return undefined;
      case 'speed-up':
      case 'speed-down':
        this.source.changeSpeed(command.kind === 'speed-up' ? SPEED_STEP : -SPEED_STEP);
        return undefined;
      case 'volume-up':
      case 'volume-down':
        this.source.changeVolume(command.kind === 'volume-up' ? VOLUME_STEP_DB : -VOLUME_STEP_DB);
        return undefined;
      default:
        return super.command(command);
    }
  }

  protected release(): void {
    // Only our own play is stopped: once it has ended, what plays now is someone else's (another
    // output, a join's audio) and stays.
    if (!this.playing) return;
    this.playing = false;
    if (!this.source.ended) this.source.ended = 'finish';
    this.media.stopPlaying();
  }
}

/** Every document of an output, rendered and joined; a RayoError when one cannot be. */
async function renderAll(request: OutputComponent, renderer: PromptRenderer): Promise<Int16Array | RayoError> {
  const parts: Int16Array[] = [];
  let samples = 0;
  for (const document of request.documents) {
    try {
      const part = await renderer.render(document.kind === 'url' ? { kind: 'url', url: document.url } : { kind: 'inline', contentType: document.contentType, content: document.content }, request.voice);
      samples += part.length;
      if (samples > MAX_PROMPT_SECONDS * 8000) return badRequest(`the documents of an output play for at most ${MAX_PROMPT_SECONDS / 60} minutes together`);
      parts.push(part);
    } catch (err) {
      if (err instanceof PromptError) return err.kind === 'bad' ? badRequest(err.message) : rayoError('service-unavailable', err.message);
      throw err;
    }
  }
  return concatSamples(parts);
}

/**
 * The prompt component (XEP-0327 "Prompt"): an output and an input together. The input hears
 * keys from the start; with `barge-in` (the default) the first key stops the output. The input's
 * timers start once the output has played (`input-timers-started` is sent then). The prompt
 * completes with the input's result; output commands go to its output while it plays.
 */
export class PromptRunner extends RayoComponent {
  private output: OutputPlayer | undefined;
  private input!: InputCollector;

  static async start(
    id: string,
    request: PromptComponent,
    media: ComponentMedia & PlayerMedia,
    renderer: PromptRenderer,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    timersStarted: (component: RayoComponent) => void,
  ): Promise<PromptRunner | RayoError> {
    const prompt = new PromptRunner(id, completed);
    const input = InputCollector.start(`${id}-input`, request.input, media, (_c, reason) => prompt.inputDone(reason), {
      deferTimers: true,
      onKey: () => {
        if (request.bargeIn && prompt.output && !prompt.output.finished) prompt.output.command({ kind: 'stop' });
      },
    });
    if ('condition' in input) return input;
    prompt.input = input;
    let output: OutputPlayer | RayoError;
    try {
      output = await OutputPlayer.start(`${id}-output`, request.output, media, renderer, (_c, reason) => {
        if (prompt.finished) return;
        if (reason.kind === 'error') return prompt.complete(reason);
        timersStarted(prompt);
        input.startTimers();
      });
    } catch (err) {
      input.cancel({ kind: 'stop' });
      throw err;
    }
    if ('condition' in output) {
      input.cancel({ kind: 'stop' });
      return output;
    }
    prompt.output = output;
    // The input may have completed while the output was rendered.
    if (prompt.finished) output.command({ kind: 'stop' });
    return prompt;
  }

  private constructor(id: string, completed: (component: RayoComponent, reason: CompleteReason) => void) {
    super(id, 'prompt', completed);
  }

  override command(command: ComponentCommand): RayoError | undefined {
    if (command.kind === 'stop') return super.command(command);
    if (!this.output || this.output.finished) return rayoError('unexpected-request', 'the prompt\'s output has finished', 'cancel');
    return this.output.command(command);
  }

  private inputDone(reason: CompleteReason): void {
    this.complete(reason);
  }

  protected release(): void {
    if (this.output && !this.output.finished) this.output.command({ kind: 'stop' });
    if (!this.input.finished) this.input.cancel({ kind: 'stop' });
  }
}
