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
    /** Told when reading must stop (true) and when it may go on (false). */
    private readonly owner: { throttled(paused: boolean): void },
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
    this.owner.throttled(true);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.owner.throttled(false);
    }, Math.ceil((-this.tokens / this.bytesPerSecond) * 1000));
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Whether a connection reads: it stops while its stream asks (stanzas waiting for their turn)
 * or while the rate throttle says so, and reads again only when neither does.
 */
export class ReadGate {
  private pausedByStream = false;
  private pausedByRate = false;
  private readonly throttle: ReadThrottle;

  constructor(
    /** What is paused: the socket (another one after STARTTLS, see retarget()). */
    private target: { pause(): void; resume(): void },
    limits: { readBytesPerSecond: number; readBurstSeconds: number },
  ) {
    this.throttle = new ReadThrottle(limits.readBytesPerSecond, limits.readBurstSeconds, this);
  }

  /** `bytes` were read (counted against the rate). */
  read(bytes: number): void {
    this.throttle.read(bytes);
  }

  /** The stream wants no more input for now / again. */
  pause(): void {
    this.pausedByStream = true;
    this.apply();
  }

  resume(): void {
    this.pausedByStream = false;
    this.apply();
  }

  /** The rate throttle's word (ReadThrottle). */
  throttled(paused: boolean): void {
    this.pausedByRate = paused;
    this.apply();
  }

  /** The connection ends: no timer is left behind. */
  stop(): void {
    this.throttle.stop();
  }

  /** Reading goes on through another socket (TLS over the TCP one, after STARTTLS), paused as the causes say. */
  retarget(target: { pause(): void; resume(): void }): void {
    this.target = target;
    this.apply();
  }

  /** Pauses or resumes the target as the two causes say. */
  private apply(): void {
    if (this.pausedByStream || this.pausedByRate) this.target.pause();
    else this.target.resume();
  }
}
