/**
 * Runs at most `concurrency` tasks at once; the others wait in one queue per key (a client
 * address), and a freed place goes to the keys in turn (round robin), not to the oldest
 * task. So a flood from some addresses costs every other client one task per flooding
 * address at most, not the whole backlog.
 */
export class FairLimiter {
  private running = 0;
  /** Waiting tasks per key; the map's order is the turn order (a served key goes to the back). */
  private readonly queues = new Map<string, (() => void)[]>();

  constructor(private readonly concurrency: number) {}

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    await this.acquire(key);
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  /** Tasks waiting for a place (for tests and diagnostics). */
  get waiting(): number {
    let n = 0;
    for (const queue of this.queues.values()) n += queue.length;
    return n;
  }

  private acquire(key: string): Promise<void> {
    if (this.running < this.concurrency && this.queues.size === 0) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const queue = this.queues.get(key);
      if (queue) queue.push(resolve);
      else this.queues.set(key, [resolve]);
    });
  }

  private release(): void {
    const next = this.queues.entries().next();
    if (next.done) {
      this.running--;
      return;
    }
    const [key, queue] = next.value;
    const wake = queue.shift()!;
    this.queues.delete(key);
    if (queue.length > 0) this.queues.set(key, queue);
    // The place passes straight to the woken task: `running` stays as it is.
    wake();
  }
}
