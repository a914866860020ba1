import { CallMix } from '../../media/call-mix.js';
import type { PromptRenderer } from '../../media/prompts.js';
import { AppError, type AppCall, type AppMixer, type MixDirection, type PlayOutcome, type Prompt } from './api.js';
import { renderPrompts, samplesSource, type TaskCall } from './app-call.js';

/** How many calls one mixer takes. */
export const CALLS_PER_MIXER = 64;

/**
 * A mixer of an application (api.ts AppMixer): the calls in it hear each other on the frame
 * clock (src/media/call-mix.ts), with voice activity reported per call. It lives on this node
 * until closed, or until the task that made it ends.
 */
export class TaskMixer implements AppMixer {
  private readonly mix: CallMix;
  private readonly members = new Map<string, TaskCall>();
  private readonly speakingListeners = new Set<(call: AppCall, speaking: boolean) => void>();
  private closed = false;

  constructor(
    readonly name: string,
    private readonly renderer: PromptRenderer,
    private readonly gone: (mixer: TaskMixer) => void,
  ) {
    this.mix = new CallMix(name, (id, transition) => {
      const call = this.members.get(id);
      if (call) for (const listener of [...this.speakingListeners]) listener(call, transition === 'started');
    });
  }

  get calls(): readonly AppCall[] {
    return [...this.members.values()];
  }

  join(call: AppCall, direction: MixDirection = 'duplex'): void {
    const member = call as TaskCall;
    if (this.closed) throw new AppError(`the mixer ${this.name} is closed`);
    if (member.state !== 'connected') throw new AppError('only a connected call joins a mixer');
    if (!this.members.has(member.id) && this.members.size >= CALLS_PER_MIXER) throw new AppError(`a mixer takes ${CALLS_PER_MIXER} calls`);
    if (member.mixer && member.mixer !== this) member.mixer.leave(member);
    this.members.set(member.id, member);
    member.mixer = this;
    this.mix.add(member.media, direction);
  }

  leave(call: AppCall): void {
    const member = this.members.get(call.id);
    if (!member) return;
    this.members.delete(call.id);
    member.mixer = undefined;
    this.mix.remove(member.media.id);
  }

  async play(prompts: Prompt | readonly Prompt[]): Promise<PlayOutcome> {
    const samples = await renderPrompts(this.renderer, prompts);
    if (this.members.size === 0) return 'stopped';
    const result = await this.mix.play(samplesSource(samples));
    return result === 'finished' ? 'finished' : 'stopped';
  }

  onSpeaking(listener: (call: AppCall, speaking: boolean) => void): () => void {
    this.speakingListeners.add(listener);
    return () => this.speakingListeners.delete(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const member of this.members.values()) member.mixer = undefined;
    this.members.clear();
    this.mix.close();
    this.speakingListeners.clear();
    this.gone(this);
  }
}
