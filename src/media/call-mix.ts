import type { AudioSource, PlayResult } from './endpoint.js';
import { sharedFrameClock, type FrameClock, type FrameSubscriber } from './frame-clock.js';
import { Mixer, type MixDirection } from './mixer.js';
import type { VadTransition } from './vad.js';
import { FRAME_SAMPLES } from './wav.js';

/** What a member of a mix is: a call's media, as MediaParty (src/services/calls/media-party.ts) offers it. */
export interface MixMember {
  readonly id: string;
  /** Each 20 ms frame the call's other party sends. */
  onAudio(listener: (frame: Int16Array) => void): () => void;
  /** What the party hears when no component plays to it (undefined: nothing). */
  setBackground(source: AudioSource | undefined): void;
}

/** How many frames a member's feed may hold before the oldest is dropped (latency bound). */
const FEED_FRAMES = 4;

/**
 * The audio a mix sends one member: frames pushed on each tick of the mixer, pulled on the
 * tick of the member's endpoint (the same clock, in either order), so a short queue of copies
 * sits between; when it is empty the member hears silence.
 */
class FeedSource implements AudioSource {
  private readonly ring: Int16Array[] = Array.from({ length: FEED_FRAMES }, () => new Int16Array(FRAME_SAMPLES));
  private readonly silence = new Int16Array(FRAME_SAMPLES);
  private head = 0;
  private count = 0;

  push(frame: Int16Array): void {
    if (this.count === FEED_FRAMES) {
      this.head = (this.head + 1) % FEED_FRAMES;
      this.count--;
    }
    this.ring[(this.head + this.count) % FEED_FRAMES]!.set(frame);
    this.count++;
  }

  next(): Int16Array {
    if (this.count === 0) return this.silence;
    const frame = this.ring[this.head]!;
    this.head = (this.head + 1) % FEED_FRAMES;
    this.count--;
    return frame;
  }
}

/**
 * Calls mixed together on the frame clock (src/media/mixer.ts: each hears the others, never
 * itself, as its join's direction allows): a conference (a Rayo mixer, an application's room)
 * or two calls joined to each other. What is played into the mix (Rayo's output components,
 * an application's announcements) is a participant that is heard and hears nothing. Voice
 * activity of the members is reported through `onSpeaking`.
 */
export class CallMix implements FrameSubscriber {
  private readonly mixer: Mixer;
  private readonly members = new Map<string, { member: MixMember; feed: FeedSource; off: () => void }>();
  private unsubscribe: (() => void) | undefined;
  /** Listeners of the whole mix (tap), by their participant id. */
  private readonly taps = new Map<string, (frame: Int16Array) => void>();
  private tapCount = 0;
  /** What an output component plays into the mix, and how its play() ends. */
  private source: { audio: AudioSource; done: (result: PlayResult) => void } | undefined;

  constructor(
    readonly name: string,
    onSpeaking: ((memberId: string, transition: VadTransition) => void) | undefined,
    private readonly clock: FrameClock = sharedFrameClock,
  ) {
    this.mixer = new Mixer(onSpeaking ? { vad: true, onSpeaking: (id, transition) => id !== OUTPUT && onSpeaking(id, transition) } : {});
  }

  get size(): number {
    return this.members.size;
  }

  has(id: string): boolean {
    return this.members.has(id);
  }

  add(member: MixMember, direction: MixDirection): void {
    if (this.members.has(member.id)) {
      this.mixer.setDirection(member.id, direction);
      return;
    }
    this.mixer.add(member.id, direction);
    const feed = new FeedSource();
    const off = member.onAudio((frame) => this.mixer.put(member.id, frame));
    this.members.set(member.id, { member, feed, off });
    member.setBackground(feed);
    this.unsubscribe ??= this.clock.subscribe(this);
  }

  remove(id: string): void {
    const entry = this.members.get(id);
    if (!entry) return;
    this.members.delete(id);
    entry.off();
    entry.member.setBackground(undefined);
    this.mixer.remove(id);
    if (this.members.size === 0) this.close();
  }

  /** Everyone leaves; what plays into the mix stops, and so do its taps. */
  close(): void {
    for (const id of [...this.members.keys()]) this.remove(id);
    for (const id of [...this.taps.keys()]) {
      this.taps.delete(id);
      this.mixer.remove(id);
    }
    this.stopPlaying();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /**
   * Each frame of the whole mix — what a participant heard by nobody hears: every member and
   * what plays into it (a recording of the mixer). Returns the unsubscriber.
   */
  tap(listener: (frame: Int16Array) => void): () => void {
    const id = `\0tap${++this.tapCount}`;
    this.mixer.add(id, 'recv');
    this.taps.set(id, listener);
    this.unsubscribe ??= this.clock.subscribe(this);
    return () => {
      if (this.taps.delete(id)) this.mixer.remove(id);
    };
  }

  /** Plays a source into the mix (every member hears it), replacing what played. */
  play(audio: AudioSource): Promise<PlayResult> {
    this.stopPlaying();
    if (!this.mixer.get(OUTPUT)) this.mixer.add(OUTPUT, 'send');
    return new Promise((done) => (this.source = { audio, done }));
  }

  stopPlaying(): void {
    this.endSource('stopped');
  }

  onFrame(): void {
    const source = this.source;
    if (source) {
      let frame: Int16Array | undefined;
      try {
        frame = source.audio.next();
      } catch {
        this.endSource('failed');
      }
      if (frame) this.mixer.put(OUTPUT, frame);
      else if (this.source) this.endSource('finished');
    }
    this.mixer.mix();
    for (const [id, { feed }] of this.members) feed.push(this.mixer.get(id)!.output);
    for (const [id, listener] of this.taps) listener(this.mixer.get(id)!.output);
  }

  private endSource(result: PlayResult): void {
    const source = this.source;
    if (!source) return;
    this.source = undefined;
    if (this.mixer.get(OUTPUT)) this.mixer.remove(OUTPUT);
    source.done(result);
  }
}

/** The mixer participant of an output component playing into the mix. */
const OUTPUT = '\0output';
