/**
 * Reading at most `bytesPerSecond` on average, a burst of `burstSeconds`' worth at once
 * (a token bucket, as Prosody's mod_limits): over it, the connection stops reading until
 * the debt is paid. The kernel's window then slows the client down; nothing is buffered.
 */
export class ReadThrottle {
  private tokens: number;
  private last = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burstSeconds: number,
    private readonly pause: (paused: boolean) => void,
  ) {
    this.tokens = bytesPerSecond * burstSeconds;
  }

  /** `bytes` were read. */
  read(bytes: number): void {
    const now = Date.now();
    this.tokens = Math.min(this.bytesPerSecond * this.burstSeconds, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
    this.last = now;
    this.tokens -= bytes;
    if (this.tokens >= 0 || this.timer) return;
    this.pause(true);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pause(false);
    }, Math.ceil((-this.tokens / this.bytesPerSecond) * 1000));
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
