/**
 * Long scans (folderSearch, filtered folderOpen, big syncs and expunges) share one event
 * loop with every other client; the store underneath is synchronous (better-sqlite3), so
 * awaiting it never lets anyone else in. A Slicer cuts such work into slices: after about
 * SLICE_MS of work it yields to the event loop (setImmediate, after pending I/O), and it
 * keeps the scan's deadline, if it has one.
 *
 *   const slicer = new Slicer({ budgetMs: 5000 });
 *   for (const item of items) {
 *     if (!(await slicer.next())) break;   // the deadline passed: answer what was found
 *     ...work on item, calling slicer.check() inside very large items...
 *   }
 */
import { performance } from 'node:perf_hooks';

/** How long a scan works before it lets other clients in, in milliseconds. */
export const SLICE_MS = 10;

/** Thrown by Slicer.check() inside a unit of work once the deadline has passed. */
export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
  constructor() {
    super('the time allowed for this operation has passed');
  }
}

export interface SlicerOptions {
  /** The work's budget in milliseconds from now (default: none, only slicing). */
  budgetMs?: number;
  /** The length of a slice (default SLICE_MS). */
  sliceMs?: number;
  /** Stops the work as if its deadline had passed (e.g. the session is gone). */
  cancelled?: () => boolean;
}

export class Slicer {
  private readonly deadline: number;
  private readonly sliceMs: number;
  private readonly cancelled: (() => boolean) | undefined;
  private sliceStart: number;
  /** Slices yielded so far (diagnostics, tests). */
  yields = 0;

  constructor(options: SlicerOptions = {}) {
    const now = performance.now();
    this.deadline = options.budgetMs === undefined ? Number.POSITIVE_INFINITY : now + Math.max(0, options.budgetMs);
    this.sliceMs = options.sliceMs ?? SLICE_MS;
    this.cancelled = options.cancelled;
    this.sliceStart = now;
  }

  /** Milliseconds left before the deadline (Infinity without one). */
  get remainingMs(): number {
    return this.deadline - performance.now();
  }

  /** True once the deadline has passed or the work was cancelled (one clock read). */
  get expired(): boolean {
    return performance.now() >= this.deadline || (this.cancelled?.() ?? false);
  }

  /**
   * Call between units of work: yields to the event loop when the current slice has lasted
   * its length. Resolves false once the deadline has passed (or the work was cancelled):
   * the caller stops and answers what it has.
   */
  async next(): Promise<boolean> {
    const now = performance.now();
    if (now >= this.deadline || (this.cancelled?.() ?? false)) return false;
    if (now - this.sliceStart < this.sliceMs) return true;
    await yieldToEventLoop();
    this.yields++;
    this.sliceStart = performance.now();
    return !this.expired;
  }

  /** Like next(), but throws DeadlineError when the deadline has passed. */
  async pace(): Promise<void> {
    if (!(await this.next())) throw new DeadlineError();
  }

  /** Inside a long unit of work (no yielding there): throws DeadlineError once the deadline has passed. */
  check(): void {
    if (this.expired) throw new DeadlineError();
  }

  /**
   * Runs `work` over `items` in chunks (each typically one store transaction), yielding
   * between them. Chunks are sized as it goes to take about one slice each, within
   * [MIN_CHUNK, MAX_CHUNK] items. Throws DeadlineError once the deadline has passed (the
   * chunks done so far stay done).
   */
  async eachChunk<T>(items: readonly T[], work: (chunk: readonly T[]) => Promise<void>, firstSize = MIN_CHUNK): Promise<void> {
    const sizer = new ChunkSizer(firstSize, MIN_CHUNK, MAX_CHUNK, this.sliceMs);
    for (let start = 0; start < items.length; ) {
      await this.pace();
      const chunk = items.slice(start, start + sizer.size);
      const began = performance.now();
      await work(chunk);
      start += chunk.length;
      sizer.took(performance.now() - began);
    }
  }
}

/** Bounds of the chunk sizes eachChunk chooses. */
const MIN_CHUNK = 50;
const MAX_CHUNK = 5000;

/**
 * Sizes chunks of work (items, rows of a page) to take about one slice each: after each
 * chunk, `took(ms)` scales the next size by the time the last one took (at most doubling
 * or halving it), within [min, max].
 */
export class ChunkSizer {
  constructor(
    public size: number,
    private readonly min: number,
    private readonly max: number,
    private readonly sliceMs = SLICE_MS,
  ) {}

  took(ms: number): void {
    const factor = this.sliceMs / Math.max(ms, 0.01);
    this.size = Math.max(this.min, Math.min(this.max, Math.round(this.size * Math.min(2, Math.max(0.5, factor)))));
  }
}

/** Elements sorted or merged between two looks at the clock in sortInSlices. */
const SORT_STEP = 2048;

/**
 * Sorts `items` (in place; also returned) like a stable Array.prototype.sort, in slices: runs
 * of SORT_STEP elements are sorted one at a time, then merged pairwise, pass after pass,
 * the slicer consulted (and yielding when its slice is over) every SORT_STEP elements. About
 * as many comparisons as one sort; runs already in order are joined without comparing their
 * elements (a mailbox in UID order is often nearly sorted by date). Throws DeadlineError
 * when the slicer's deadline passes.
 */
export async function sortInSlices<T>(items: T[], compare: (a: T, b: T) => number, slicer: Slicer): Promise<T[]> {
  const n = items.length;
  if (n <= SORT_STEP) return items.sort(compare);
  for (let start = 0; start < n; start += SORT_STEP) {
    await slicer.pace();
    const end = Math.min(n, start + SORT_STEP);
    const run = items.slice(start, end).sort(compare);
    for (let i = 0; i < run.length; i++) items[start + i] = run[i]!;
  }
  let from = items;
  let to = new Array<T>(n);
  for (let width = SORT_STEP; width < n; width *= 2) {
    for (let left = 0; left < n; left += 2 * width) {
      const mid = Math.min(n, left + width);
      const end = Math.min(n, left + 2 * width);
      let i = left;
      let j = mid;
      let out = left;
      // Already in order (or a lone run): copied as it is.
      if (mid >= end || compare(from[mid - 1]!, from[mid]!) <= 0) {
        for (; out < end; out++) {
          if ((out & (SORT_STEP - 1)) === 0) await slicer.pace();
          to[out] = from[out]!;
        }
        continue;
      }
      while (out < end) {
        if ((out & (SORT_STEP - 1)) === 0) await slicer.pace();
        const stop = Math.min(end, out + SORT_STEP);
        for (; out < stop; out++) {
          // Stable: on a tie the left run's element goes first.
          if (j >= end || (i < mid && compare(from[i]!, from[j]!) <= 0)) to[out] = from[i++]!;
          else to[out] = from[j++]!;
        }
      }
    }
    [from, to] = [to, from];
  }
  if (from !== items) for (let k = 0; k < n; k++) items[k] = from[k]!;
  return items;
}

/** Lets pending I/O and timers run before continuing. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
