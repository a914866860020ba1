
/** How long /readyz waits for the store's answer before it says the store is not reachable. */
const STORE_TIMEOUT_MS = 2000;

/** A listener as readiness sees it: its name, and whether it accepts connections now. */
export interface ListenerState {
  readonly name: string;
  listening(): boolean;
}

/**
 * What /readyz answers: ready once the server has started (every listener bound, the queue
 * running) while every listener still accepts and the store answers a cheap query in time;
 * not ready before that, and from the moment the server begins to close.
 */
export class Readiness {
  private started = false;
  private closing = false;
  /** The store probe under way: a store that hangs gets one query at a time, not one per request. */
  private probing: Promise<boolean> | undefined;

  /** `probe`: a cheap store query (one row by key). */
  constructor(
    private readonly probe: () => Promise<unknown>,
    private readonly listeners: readonly ListenerState[],
    private readonly timeoutMs = STORE_TIMEOUT_MS,
  ) {}

  /** Every listener is bound and the background work has started. */
  markStarted(): void {
    this.started = true;
  }

  /** The server is shutting down: not ready from now on. */
  markClosing(): void {
    this.closing = true;
  }

  /**
   * Undefined when ready, else why not — in general terms only: the answer is public, so the
   * store's own error text (host names, user names) is not in it.
   */
  async check(): Promise<string | undefined> {
    if (this.closing) return 'the server is shutting down';
    if (!this.started) return 'the server is starting';
    const down = this.listeners.filter((l) => !l.listening()).map((l) => l.name);
    if (down.length > 0) return `not listening: ${down.join(', ')}`;
    this.probing ??= this.probe().then(
      () => true,
      () => false,
    );
    const probing = this.probing;
    void probing.finally(() => {
      if (this.probing === probing) this.probing = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.timeoutMs);
    });
    try {
      const answer = await Promise.race([probing, timeout]);
      if (answer === 'timeout') return `the store did not answer within ${this.timeoutMs} ms`;
      return answer ? undefined : 'the store is not reachable';
    } finally {
      clearTimeout(timer);
    }
  }
}
