/** A connection counted against the limits until it logs in or closes; release() is idempotent. */
export interface Admission {
  release(): void;
}

/**
 * Counts the connections that have not logged in (XIMSS over TCP and HTTP, SMTP), per client
 * address and server-wide, so that one address cannot take every file descriptor or all
 * the memory of unfinished messages. A logged-in connection counts against its account's
 * session limit instead.
 */
export class ConnectionLimiter {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: { readonly connectionsPerAddress: number; readonly preLoginConnections: number }) {}

  /** Admits a connection from `address`, or says why not. */
  admit(address: string): Admission | string {
    const count = this.byAddress.get(address) ?? 0;
    if (count >= this.limits.connectionsPerAddress) return 'too many connections from this address';
    if (this.total >= this.limits.preLoginConnections) return 'too many connections; try again later';
    this.byAddress.set(address, count + 1);
    this.total++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const left = (this.byAddress.get(address) ?? 1) - 1;
        if (left <= 0) this.byAddress.delete(address);
        else this.byAddress.set(address, left);
      },
    };
  }

  /** Connections counted now (from `address`, or in all). */
  count(address?: string): number {
    return address === undefined ? this.total : (this.byAddress.get(address) ?? 0);
  }
}
