/**
 * The frame clock: ONE timer for every media endpoint of the process, ticking every 20 ms (one
 * G.711 frame of 160 samples at 8 kHz). Each tick calls every subscriber once; an endpoint sends
 * its next frame and plays out its jitter buffer from there. Hundreds of calls then cost one
 * timer, not hundreds.
 *
 * Drift: tick k is due at `start + k × frameMs` on a monotonic clock (performance.now), and each
 * timer is set for the next tick's due time, so setTimeout's lateness never accumulates. When
 * the process was late (a long task, GC, a suspended VM), the ticks that fell due are run at
 * once, at most `maxCatchUp` of them; older ones are skipped (counted, never run) — a burst of
 * a second of audio would help no receiver. A tick run more than `lateMs` after its due time
 * counts as a late frame; the benchmark reports that ratio.
 *
 * The timer is unref'd (media alone does not keep the process alive) and stopped when the last
 * subscriber leaves. A subscriber that throws is logged and counted; the others still tick.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';

/** What the clock needs of time: a monotonic `now` in ms and a one-shot timer. Replaceable in tests. */
export interface FrameTimer {
  now(): number;
  /** Runs `callback` once after `delayMs`; returns a function that cancels it. */
  schedule(delayMs: number, callback: () => void): () => void;
}

export const realTimer: FrameTimer = {
  now: () => performance.now(),
  schedule(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface FrameSubscriber {
  /**
   * Called once per tick. `late` is set when this tick runs more than `lateMs` after its due
   * time (the subscriber may count it).
   */
  onFrame(late: boolean): void;
}

export interface FrameClockOptions {
  /** The frame period (default 20 ms). */
  frameMs?: number;
  /** How many overdue ticks are run at once after a late wake-up (default 3); older ones are skipped. */
  maxCatchUp?: number;
  /** How late a tick may run before it counts as late (default 10 ms, half a frame). */
  lateMs?: number;
  timer?: FrameTimer;
  log?: Logger;
}

export interface FrameClockStats {
  /** Subscribers now. */
  subscribers: number;
  /** Ticks run since the process started (over every running period). */
  ticks: number;
  /** Ticks run more than lateMs after their due time. */
  lateTicks: number;
  /** Ticks never run: overdue beyond maxCatchUp. */
  skippedTicks: number;
  /** Subscriber calls: all, and those run in a late tick or skipped (frames a subscriber got late or never). */
  frames: number;
  lateFrames: number;
  /** Subscribers that threw. */
  errors: number;
}

export class FrameClock {
  readonly frameMs: number;
  private readonly maxCatchUp: number;
  private readonly lateMs: number;
  private readonly timer: FrameTimer;
  private readonly subscribers = new Set<FrameSubscriber>();
  private start = 0;
  /** The index of the next tick to run (due at start + next × frameMs). */
  private next = 0;
  private cancel: (() => void) | undefined;
  /** Set while ticks run (the timer is re-armed at their end). */
  private waking = false;
  private readonly counts = { ticks: 0, lateTicks: 0, skippedTicks: 0, frames: 0, lateFrames: 0, errors: 0 };
  private readonly run = (): void => this.wake();

  constructor(private readonly options: FrameClockOptions = {}) {
    this.frameMs = options.frameMs ?? 20;
    this.maxCatchUp = options.maxCatchUp ?? 3;
    this.lateMs = options.lateMs ?? this.frameMs / 2;
    this.timer = options.timer ?? realTimer;
    if (!(this.frameMs > 0) || !Number.isInteger(this.maxCatchUp) || this.maxCatchUp < 1) throw new RangeError('invalid frame clock options');
  }

  /** Adds a subscriber (the clock starts with the first); returns the function that removes it. */
  subscribe(subscriber: FrameSubscriber): () => void {
    this.subscribers.add(subscriber);
    if (!this.cancel && !this.waking) {
      // A fresh time base: the first tick one frame from now.
      this.start = this.timer.now();
      this.next = 1;
      this.cancel = this.timer.schedule(this.frameMs, this.run);
    }
    return () => this.unsubscribe(subscriber);
  }

  unsubscribe(subscriber: FrameSubscriber): void {
    this.subscribers.delete(subscriber);
    if (this.subscribers.size === 0 && this.cancel && !this.waking) {
      this.cancel();
      this.cancel = undefined;
    }
  }

  /** Whether the timer runs. */
  get running(): boolean {
    return this.cancel !== undefined || this.waking;
  }

  stats(): FrameClockStats {
    return { subscribers: this.subscribers.size, ...this.counts };
  }

  private wake(): void {
    this.cancel = undefined;
    const now = this.timer.now();
    // The ticks due by now: next … due-1.
    const due = Math.floor((now - this.start) / this.frameMs) + 1;
    if (due - this.next > this.maxCatchUp) {
      const skipped = due - this.next - this.maxCatchUp;
      this.counts.skippedTicks += skipped;
      this.counts.lateFrames += skipped * this.subscribers.size;
      this.next += skipped;
    }
    this.waking = true;
    try {
      while (this.next < due && this.subscribers.size > 0) {
        const late = now - (this.start + this.next * this.frameMs) > this.lateMs;
        this.next++;
        this.tick(late);
      }
    } finally {
      this.waking = false;
    }
    if (this.subscribers.size === 0) return;
    // Never less than 1 ms: a timer due now would run before I/O gets its turn.
    const delay = Math.max(1, this.start + this.next * this.frameMs - this.timer.now());
    this.cancel = this.timer.schedule(delay, this.run);
  }

  private tick(late: boolean): void {
    this.counts.ticks++;
    if (late) this.counts.lateTicks++;
    for (const subscriber of this.subscribers) {
      this.counts.frames++;
      if (late) this.counts.lateFrames++;
      try {
        subscriber.onFrame(late);
      } catch (error) {
        // Logged the first times and then now and then: a subscriber failing 50 times a second must not flood the log.
        if (++this.counts.errors <= 10 || this.counts.errors % 1000 === 0) this.options.log?.error({ event: 'media.frame.error', err: error instanceof Error ? error.message : String(error) }, 'a frame clock subscriber failed');
      }
    }
  }
}

/** The process's clock, shared by every endpoint that is not given another. */
export const sharedFrameClock = new FrameClock();
