import { randomBytes } from 'node:crypto';

/**
 * Nonces handed out by pre-login listFeatures, for the HTTP CRAM-MD5 login that comes in a
 * separate request. Each is good for one login attempt within its lifetime.
 */
export class NonceRegistry {
  private readonly nonces = new Map<string, number>();

  constructor(
    private readonly serverName: string,
    private readonly lifetimeMs = 5 * 60_000,
    private readonly max = 100_000,
  ) {}

  issue(): string {
    const now = Date.now();
    if (this.nonces.size >= this.max) this.sweep(now);
    if (this.nonces.size >= this.max) this.nonces.delete(this.nonces.keys().next().value!);
    const nonce = `<${randomBytes(12).toString('hex')}.${now}@${this.serverName}>`;
    this.nonces.set(nonce, now + this.lifetimeMs);
    return nonce;
  }

  /** True (once) when `nonce` was issued here and has not expired. */
  consume(nonce: string): boolean {
    const expires = this.nonces.get(nonce);
    if (expires === undefined) return false;
    this.nonces.delete(nonce);
    return expires >= Date.now();
  }

  private sweep(now: number): void {
    for (const [nonce, expires] of this.nonces) if (expires < now) this.nonces.delete(nonce);
  }
}
