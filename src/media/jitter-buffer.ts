/**
 * A small fixed-delay jitter buffer for one received RTP stream of 20 ms packets: packets are
 * put in order by sequence number within a window of a few frames, and taken out one per frame
 * clock tick. Playout starts once `depth` frames are buffered (the delay that lets a reordered
 * packet arrive in time); a packet missing at its turn while a later one is already here is lost
 * (the caller plays a frame of silence, so that a recording keeps its timing); nothing buffered
 * at all is an underrun (no frame: the peer stopped sending, or is late).
 *
 * Latency does not creep up: when more than depth + 3 frames wait (the sender's clock is faster
 * than ours, or a burst came after a stall), each pop drops the oldest one first.
 *
 * Also: duplicates are dropped; a packet whose turn has passed is too late and dropped; a packet
 * further ahead than the window slides the window (what is skipped is lost); a jump of more
 * than MAX_DROPOUT, or a new SSRC, restarts the stream (RFC 3550 A.1's thresholds). Sequence
 * numbers wrap at 2^16.
 *
 * Entries are slots of a ring allocated once, with room for a payload each; `push` copies the
 * payload in and `pop` returns the slot, so a frame costs no allocation.
 */
import { seqDistance } from './rtp.js';

/** What a slot holds. */
export const AUDIO = 1;
/** A packet that takes its place in time but carries no audio (an RFC 4733 event): silence there. */
export const NO_AUDIO = 2;
/** A packet that takes a sequence number but no time (a retransmitted event end): passed over. */
export const SKIP = 3;
export type EntryKind = typeof AUDIO | typeof NO_AUDIO | typeof SKIP;

export interface JitterSlot {
  kind: EntryKind;
  sequence: number;
  timestamp: number;
  payloadType: number;
  /** The payload, `length` bytes of it valid. */
  readonly data: Uint8Array;
  length: number;
}

/** `pop`'s answers besides a slot. */
export const LOST = 'lost';
export const EMPTY = 'empty';

export interface JitterBufferOptions {
  /** Frames buffered before playout starts (default 2: 40 ms of reordering tolerated). */
  depth?: number;
  /** Slots in the ring (default 8, a power of two): how far ahead of playout a packet may be kept. */
  window?: number;
  /** The largest payload kept (default 320 bytes; longer ones are cut). */
  maxPayload?: number;
}

export interface JitterBufferStats {
  /** Packets accepted into the buffer. */
  received: number;
  /** Frames given out (audio, or no-audio entries). */
  played: number;
  /** Sequence numbers that never came in time (a silent frame each). */
  lost: number;
  /** Packets that came after their turn. */
  late: number;
  duplicates: number;
  /** Times the stream started over (new SSRC, or a jump in the numbering). */
  resets: number;
  /** Frames dropped unplayed because too many were buffered (a sender faster than our clock, or a burst after a stall). */
  trimmed: number;
}

/** RFC 3550 A.1: a jump further than this is a restarted stream, not a loss. */
const MAX_DROPOUT = 3000;
/** How far behind a packet may be and still be a late one of this stream. */
const MAX_MISORDER = 100;
/** Frames beyond `depth` that may wait in the buffer; more are latency nobody needs, trimmed one per pop. */
const SLACK = 3;

export class JitterBuffer {
  private readonly depth: number;
  private readonly slots: (JitterSlot & { filled: boolean })[];
  private readonly size: number;
  private ssrc = -1;
  /** The next sequence number to play. */
  private next = 0;
  /** The newest sequence number buffered (valid while `count` > 0 or once started). */
  private newest = 0;
  private count = 0;
  private started = false;
  private initialized = false;
  private readonly counts: JitterBufferStats = { received: 0, played: 0, lost: 0, late: 0, duplicates: 0, resets: 0, trimmed: 0 };

  constructor(options: JitterBufferOptions = {}) {
    this.depth = options.depth ?? 2;
    this.size = options.window ?? 8;
    if (!Number.isInteger(this.depth) || this.depth < 1 || !Number.isInteger(this.size) || this.size <= this.depth || this.size > 1024 || (this.size & (this.size - 1)) !== 0) {
      // A power of two divides 2^16, so that slots stay in order across the sequence number's wrap.
      throw new RangeError('invalid jitter buffer options: 1 ≤ depth < window, window a power of two up to 1024');
    }
    const maxPayload = options.maxPayload ?? 320;
    this.slots = Array.from({ length: this.size }, () => ({
      kind: AUDIO,
      sequence: 0,
      timestamp: 0,
      payloadType: 0,
      data: new Uint8Array(maxPayload),
      length: 0,
      filled: false,
    }));
  }

  stats(): JitterBufferStats {
    return { ...this.counts };
  }

  /** Frames buffered now. */
  get buffered(): number {
    return this.count;
  }

  /**
   * Adds a packet; returns false when it was dropped (duplicate or too late). `payload` is
   * copied from `start` to `end`.
   */
  push(ssrc: number, sequence: number, timestamp: number, payloadType: number, kind: EntryKind, payload?: Uint8Array, start = 0, end = 0): boolean {
    if (!this.initialized || ssrc !== this.ssrc) this.reset(ssrc, sequence, this.initialized);
    else {
      const ahead = seqDistance(this.next, sequence);
      if (ahead >= this.size) {
        if (ahead < MAX_DROPOUT) this.slide(sequence);
        else if (0x10000 - ahead <= MAX_MISORDER) {
          this.counts.late++;
          return false;
        } else this.reset(ssrc, sequence, true);
      }
    }
    const slot = this.slots[sequence % this.size]!;
    if (slot.filled) {
      // The ring holds only sequence numbers from next to next + size - 1: a filled slot is this packet again.
      this.counts.duplicates++;
      return false;
    }
    slot.filled = true;
    slot.kind = kind;
    slot.sequence = sequence;
    slot.timestamp = timestamp;
    slot.payloadType = payloadType;
    const length = payload ? Math.min(end - start, slot.data.length) : 0;
    if (payload && length > 0) slot.data.set(payload.subarray(start, start + length));
    slot.length = length;
    this.count++;
    this.counts.received++;
    if (this.count === 1 || seqDistance(this.newest, sequence) < 0x8000) this.newest = sequence;
    if (!this.started && this.count >= this.depth) this.started = true;
    return true;
  }

  /**
   * The next frame at a frame clock tick: a slot (valid until the next `push` or `pop`), LOST
   * (a frame of silence: its packet never came), or EMPTY (not started, or nothing buffered).
   */
  pop(): JitterSlot | typeof LOST | typeof EMPTY {
    for (;;) {
      if (!this.started || this.count === 0) return EMPTY;
      if (this.count > this.depth + SLACK) this.trim();
      const slot = this.slots[this.next % this.size]!;
      this.next = (this.next + 1) & 0xffff;
      if (!slot.filled) {
        // A later packet is buffered (count > 0), so this one missed its turn.
        this.counts.lost++;
        return LOST;
      }
      slot.filled = false;
      this.count--;
      if (slot.kind === SKIP) continue;
      this.counts.played++;
      return slot;
    }
  }

  /** Drops the oldest buffered frame (what is missing before it is lost). */
  private trim(): void {
    for (;;) {
      const slot = this.slots[this.next % this.size]!;
      this.next = (this.next + 1) & 0xffff;
      if (!slot.filled) {
        this.counts.lost++;
        continue;
      }
      slot.filled = false;
      this.count--;
      this.counts.trimmed++;
      return;
    }
  }

  /** Starts over at `sequence` (a new SSRC, or a jump): what was buffered is dropped. */
  private reset(ssrc: number, sequence: number, counted: boolean): void {
    if (counted) this.counts.resets++;
    for (const slot of this.slots) slot.filled = false;
    this.ssrc = ssrc;
    this.next = sequence;
    this.newest = sequence;
    this.count = 0;
    this.started = false;
    this.initialized = true;
  }

  /** Moves playout forward so that `sequence` fits the window; what is passed over is lost (or dropped, if it was here). */
  private slide(sequence: number): void {
    const target = (sequence - this.size + 1) & 0xffff;
    while (this.next !== target) {
      const slot = this.slots[this.next % this.size]!;
      if (slot.filled) {
        slot.filled = false;
        this.count--;
      }
      this.counts.lost++;
      this.next = (this.next + 1) & 0xffff;
    }
    this.started = true;
  }
}
