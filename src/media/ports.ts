/**
 * UDP port allocation for anchored media, from the operator's configured range: a plain RTP
 * stream takes an even port and the odd one after it for RTCP (the RFC 3550 11 convention every
 * SIP phone assumes when the SDP has no a=rtcp); a WebRTC leg (rtcp-mux) needs a single port.
 *
 * This only reserves numbers; the sockets are bound by their owners, who release a number they
 * could not bind (another process holds it) and ask again. Allocation walks the range from a
 * cursor that keeps moving, so a port just released is the last to be handed out again: stale
 * packets of an ended call do not land in a new one.
 *
 * The number of sessions (calls anchored at once) is limited too, separately from the ports,
 * so that an operator can cap the load below what the range would allow.
 */
import { randomInt } from 'node:crypto';

export interface PortRange {
  /** The lowest port to use (inclusive). */
  min: number;
  /** The highest port to use (inclusive). */
  max: number;
}

/** Every port of the range is taken (or no even/odd pair is left). */
export class PortRangeExhaustedError extends Error {
  constructor(range: PortRange, what: string) {
    super(`no free ${what} left in the media port range ${range.min}-${range.max}`);
    this.name = 'PortRangeExhaustedError';
  }
}

/** The configured maximum of anchored sessions is reached. */
export class SessionLimitError extends Error {
  constructor(limit: number) {
    super(`the media gateway already anchors its maximum of ${limit} sessions`);
    this.name = 'SessionLimitError';
  }
}

/** Checks a range from the configuration: integers, 1024 to 65535, at least one even/odd pair. */
export function validatePortRange(range: PortRange): void {
  const { min, max } = range;
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1024 || max > 65535 || min > max) {
    throw new RangeError(`invalid media port range ${min}-${max}: integers from 1024 to 65535, min ≤ max`);
  }
  if (firstEven(min) + 1 > max) throw new RangeError(`the media port range ${min}-${max} holds no even/odd pair`);
}

function firstEven(port: number): number {
  return port % 2 === 0 ? port : port + 1;
}

export class PortAllocator {
  private readonly taken: Uint8Array;
  /** Where the next search starts, as an offset from `range.min`. */
  private cursor: number;
  private sessionCount = 0;
  private portCount = 0;

  constructor(
    readonly range: PortRange,
    readonly maxSessions: number,
  ) {
    validatePortRange(range);
    if (!Number.isInteger(maxSessions) || maxSessions < 1) throw new RangeError(`invalid maxSessions ${maxSessions}`);
    this.taken = new Uint8Array(range.max - range.min + 1);
    // Start somewhere in the range, not at its bottom: two servers given the same range on one
    // machine (tests, a second instance) then rarely try the same ports, and a port another
    // process holds is skipped by the callers' bind retries.
    this.cursor = randomInt(this.taken.length);
  }

  /** Sessions open now. */
  get sessions(): number {
    return this.sessionCount;
  }

  /** Ports reserved now. */
  get portsInUse(): number {
    return this.portCount;
  }

  /** Counts one more session; throws SessionLimitError at the limit. Pair with `closeSession`. */
  openSession(): void {
    if (this.sessionCount >= this.maxSessions) throw new SessionLimitError(this.maxSessions);
    this.sessionCount++;
  }

  closeSession(): void {
    if (this.sessionCount > 0) this.sessionCount--;
  }

  /** Reserves an even port and the odd one after it; returns the even one. */
  allocatePair(): number {
    const size = this.taken.length;
    const base = firstEven(this.range.min) - this.range.min;
    const pairs = Math.floor((size - base) / 2);
    // The cursor is shared with single allocations: round it to this pair grid.
    const start = Math.floor(Math.max(0, this.cursor - base) / 2);
    for (let i = 0; i < pairs; i++) {
      const offset = base + 2 * ((start + i) % pairs);
      if (this.taken[offset] === 0 && this.taken[offset + 1] === 0) {
        this.taken[offset] = 1;
        this.taken[offset + 1] = 1;
        this.portCount += 2;
        this.cursor = (offset + 2) % size;
        return this.range.min + offset;
      }
    }
    throw new PortRangeExhaustedError(this.range, 'even/odd port pair');
  }

  /** Reserves one port (odd ports first, so that the even/odd pairs stay whole for plain RTP). */
  allocateSingle(): number {
    const size = this.taken.length;
    for (const wantOdd of [true, false]) {
      for (let i = 0; i < size; i++) {
        const offset = (this.cursor + i) % size;
        if (this.taken[offset] === 0 && ((this.range.min + offset) % 2 === 1) === wantOdd) {
          this.taken[offset] = 1;
          this.portCount++;
          this.cursor = (offset + 1) % size;
          return this.range.min + offset;
        }
      }
    }
    throw new PortRangeExhaustedError(this.range, 'port');
  }

  /** Gives a port back (a pair is released port by port). Releasing a free or foreign port is ignored. */
  release(port: number): void {
    const offset = port - this.range.min;
    if (offset < 0 || offset >= this.taken.length || this.taken[offset] === 0) return;
    this.taken[offset] = 0;
    this.portCount--;
  }

  /**
   * A reserved port that could not be bound (another process holds it): kept out of use for a
   * while instead of released at once, so that the next allocations go past a block of ports
   * held elsewhere rather than trying it again.
   */
  setAside(port: number, ms = SET_ASIDE_MS): void {
    setTimeout(() => this.release(port), ms).unref();
  }
}

/** How long a port found taken by another process is left alone. */
const SET_ASIDE_MS = 60_000;
