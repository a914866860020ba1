/**
 * An N-party audio mixer (Rayo's mixers, conference rooms): every 20 ms each participant hears
 * the sum of the others, never itself ("mix-minus", as conference bridges do). Each participant
 * has a direction, as Rayo's join has (XEP-0327 "Joining Calls"): `duplex` (hears and is heard),
 * `send` (its audio goes to the mixer, it hears nothing) and `recv` (it hears the mixer, its
 * audio goes nowhere). A participant whose frame did not arrive this tick (late, lost, muted)
 * counts as silence.
 *
 * Sums are kept in 32 bits and brought back to 16 with a soft limiter: below 3/4 of full scale
 * samples pass unchanged, above it they bend (tanh) towards full scale instead of clipping,
 * which is what makes several loud talkers sound like distortion. Each participant may also
 * carry a VoiceActivityDetector (src/media/vad.ts) for speaking events.
 *
 * Steady-state mixing allocates nothing: input and output frames and the sum are preallocated
 * per participant, and participants live in an array (iterated by index).
 */
import { VoiceActivityDetector, type VadOptions, type VadTransition } from './vad.js';

export type MixDirection = 'duplex' | 'send' | 'recv';

/** A participant's view in the mixer. */
export interface MixParticipant {
  readonly id: string;
  direction: MixDirection;
  /** What it hears after `mix()`: valid until the next `mix()`. */
  readonly output: Int16Array;
  /** Whether speech is going on in its audio (false without VAD). */
  readonly speaking: boolean;
}

class Participant implements MixParticipant {
  readonly input: Int16Array;
  readonly output: Int16Array;
  fresh = false;
  vad: VoiceActivityDetector | undefined;
  constructor(
    readonly id: string,
    public direction: MixDirection,
    frameSize: number,
  ) {
    this.input = new Int16Array(frameSize);
    this.output = new Int16Array(frameSize);
  }
  get speaking(): boolean {
    return this.vad?.speaking ?? false;
  }
  get heard(): boolean {
    return this.direction !== 'recv';
  }
  get hears(): boolean {
    return this.direction !== 'send';
  }
}

export interface MixerOptions {
  /** Samples per frame; 160 (20 ms at 8 kHz) unless given. */
  frameSize?: number;
  /** Run voice activity detection on each heard participant, with these options (true: defaults). */
  vad?: VadOptions | boolean;
  /** Called from `mix()` when a participant starts or stops speaking. */
  onSpeaking?: (id: string, transition: VadTransition) => void;
}

/** The level above which the limiter bends the signal, and its ceiling. */
const KNEE = 24576;
const CEILING = 32767;

/** A 32-bit sum brought into 16 bits, softly above the knee. */
export function softLimit(value: number): number {
  if (value <= KNEE && value >= -KNEE) return value;
  const excess = (value < 0 ? -value : value) - KNEE;
  const bent = KNEE + (CEILING - KNEE) * Math.tanh(excess / (CEILING - KNEE));
  return value < 0 ? -Math.round(bent) : Math.round(bent);
}

export class Mixer {
  private readonly frameSize: number;
  private readonly participants: Participant[] = [];
  private readonly byId = new Map<string, Participant>();
  private readonly sum: Int32Array;
  private readonly vadOptions: VadOptions | undefined;
  private readonly onSpeaking: ((id: string, transition: VadTransition) => void) | undefined;

  constructor(options: MixerOptions = {}) {
    this.frameSize = options.frameSize ?? 160;
    this.sum = new Int32Array(this.frameSize);
    this.vadOptions = options.vad === true ? {} : options.vad === false ? undefined : options.vad;
    this.onSpeaking = options.onSpeaking;
  }

  get size(): number {
    return this.participants.length;
  }

  /** Adds a participant (an error if the id is taken). */
  add(id: string, direction: MixDirection = 'duplex'): MixParticipant {
    if (this.find(id)) throw new Error(`already in the mixer: ${id}`);
    checkDirection(direction);
    const participant = new Participant(id, direction, this.frameSize);
    if (this.vadOptions) participant.vad = new VoiceActivityDetector(this.vadOptions);
    this.participants.push(participant);
    this.byId.set(id, participant);
    return participant;
  }

  /** Removes a participant; false when it was not there. A speaking participant gets its 'stopped'. */
  remove(id: string): boolean {
    const index = this.participants.findIndex((p) => p.id === id);
    if (index < 0) return false;
    const [gone] = this.participants.splice(index, 1);
    this.byId.delete(id);
    if (gone?.speaking) this.onSpeaking?.(id, 'stopped');
    return true;
  }

  get(id: string): MixParticipant | undefined {
    return this.find(id);
  }

  setDirection(id: string, direction: MixDirection): void {
    checkDirection(direction);
    const participant = this.find(id);
    if (!participant) throw new Error(`not in the mixer: ${id}`);
    participant.direction = direction;
  }

  /** A participant's frame for this tick (copied; shorter frames are padded with silence). */
  put(id: string, frame: Int16Array): void {
    const participant = this.find(id);
    if (!participant) throw new Error(`not in the mixer: ${id}`);
    const length = Math.min(frame.length, this.frameSize);
    participant.input.set(length === frame.length ? frame : frame.subarray(0, length));
    if (length < this.frameSize) participant.input.fill(0, length);
    participant.fresh = true;
  }

  /**
   * Mixes this tick: afterwards each participant's `output` is what it hears (silence for `send`
   * participants), and every input is consumed (a participant that does not `put` before the next
   * tick is silent in it).
   */
  mix(): void {
    const sum = this.sum;
    const size = this.frameSize;
    sum.fill(0);
    const participants = this.participants;
    for (let p = 0; p < participants.length; p++) {
      const participant = participants[p]!;
      if (participant.vad) {
        // A participant not heard (recv) speaks to nobody: silence for its VAD, so it stops in time.
        const transition = participant.fresh && participant.heard ? participant.vad.process(participant.input) : participant.vad.processSilence();
        if (transition) this.onSpeaking?.(participant.id, transition);
      }
      if (!participant.fresh || !participant.heard) continue;
      const input = participant.input;
      for (let i = 0; i < size; i++) sum[i] += input[i]!;
    }
    for (let p = 0; p < participants.length; p++) {
      const participant = participants[p]!;
      const output = participant.output;
      if (!participant.hears) output.fill(0);
      else if (participant.fresh && participant.heard) {
        const input = participant.input;
        for (let i = 0; i < size; i++) output[i] = softLimit(sum[i]! - input[i]!);
      } else {
        for (let i = 0; i < size; i++) output[i] = softLimit(sum[i]!);
      }
    }
    for (let p = 0; p < participants.length; p++) participants[p]!.fresh = false;
  }

  private find(id: string): Participant | undefined {
    return this.byId.get(id);
  }
}

function checkDirection(direction: string): void {
  if (direction !== 'duplex' && direction !== 'send' && direction !== 'recv') throw new Error(`not a direction: ${direction} (duplex, send or recv)`);
}

/**
 * Adds `source` into `target` sample by sample, saturating at the 16-bit limits: the two-party
 * case (a call joined to another, plus a prompt played over it) without a Mixer. `gain` scales
 * the source first (1 unless given).
 */
export function mixInto(target: Int16Array, source: Int16Array, gain = 1): Int16Array {
  const length = Math.min(target.length, source.length);
  for (let i = 0; i < length; i++) {
    const value = target[i]! + Math.round(source[i]! * gain);
    target[i] = value > 32767 ? 32767 : value < -32768 ? -32768 : value;
  }
  return target;
}
