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
    let size = firstSize;
    for (let start = 0; start < items.length; ) {
      await this.pace();
      const chunk = items.slice(start, start + size);
      const began = performance.now();
      await work(chunk);
      start += chunk.length;
      const factor = this.sliceMs / Math.max(performance.now() - began, 0.01);
      size = Math.max(MIN_CHUNK, Math.min(MAX_CHUNK, Math.round(size * Math.min(2, Math.max(0.5, factor)))));
    }
  }
}

/** Bounds of the chunk sizes eachChunk chooses. */
const MIN_CHUNK = 50;
const MAX_CHUNK = 5000;

/** Lets pending I/O and timers run before continuing. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
