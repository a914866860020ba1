import { NLSML_CONTENT_TYPE, nlsmlFromMatch } from '../../../media/nlsml.js';
import { compileGrammar, SrgsError, SrgsGrammarSet, type SrgsState } from '../../../media/srgs.js';
import { badRequest, rayoError, unsupportedOption, type CompleteReason, type ComponentCommand, type InputComponent, type RayoError } from './elements.js';

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

  protected complete(reason: CompleteReason): void {
    if (this.done) return;
    this.done = true;
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
  static start(id: string, request: InputComponent, media: ComponentMedia, completed: (component: RayoComponent, reason: CompleteReason) => void): InputCollector | RayoError {
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
    return new InputCollector(id, request, media, grammars, completed);
  }

  private constructor(
    id: string,
    private readonly request: InputComponent,
    media: ComponentMedia,
    grammars: SrgsGrammarSet,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
  ) {
    super(id, 'input', completed);
    this.grammars = grammars;
    this.unsubscribe = media.onDigit((digit) => this.key(digit));
    if (request.initialTimeout > 0) this.wait(request.initialTimeout, () => this.complete({ kind: 'noinput' }));
  }

  private key(digit: string): void {
    if (this.finished) return;
    this.keys++;
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
