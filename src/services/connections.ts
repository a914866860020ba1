import { addressKey } from './client-address.js';

/** The window abuse is counted in, and how many addresses are remembered at most. */
const ABUSE_WINDOW_MS = 60_000;
const MAX_TRACKED = 100_000;
/** Why an address that abused the server is refused. */
export const BLOCKED = 'this address sent too many refused requests; try again later';

/** A connection counted against the limits until it logs in or closes; release() is idempotent. */
export interface Admission {
  release(): void;
}

/**
 * Counts the connections that have not logged in (XIMSS over TCP and HTTP, SMTP), per client
 * address (IPv6: per /64, see client-address.ts) and server-wide, so that one address cannot take every file descriptor or all
 * the memory of unfinished messages. A logged-in connection counts against its account's
 * session limit instead.
 */
export class ConnectionLimiter {
  private readonly byAddress = new Map<string, number>();
  private total = 0;
  /** Recent abuse (refused requests, ms since the epoch) by address, and addresses refused until a time. */
  private readonly abuse = new Map<string, number[]>();
  private readonly blocked = new Map<string, number>();

  constructor(
    private readonly limits: {
      readonly connectionsPerAddress: number;
      readonly preLoginConnections: number;
      readonly abusePerAddress: number;
      readonly abuseBlockSeconds: number;
    },
  ) {}

  /** Admits a connection from `address`, or says why not. */
  admit(clientAddress: string, now = Date.now()): Admission | string {
    const address = addressKey(clientAddress);
    const until = this.blocked.get(address);
    if (until !== undefined) {
      if (until > now) return BLOCKED;
      this.blocked.delete(address);
    }
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

  /**
   * A client at `address` sent something refused before login (a malformed, oversized or
   * overdeep message): past abusePerAddress in a minute, the address's new
   * connections are refused for abuseBlockSeconds, at the cost of an accept and a close —
   * a client that floods by reconnecting costs the server next to nothing.
   */
  reportAbuse(clientAddress: string, now = Date.now()): void {
    if (this.limits.abusePerAddress <= 0) return;
    const address = addressKey(clientAddress);
    const recent = (this.abuse.get(address) ?? []).filter((t) => now - t < ABUSE_WINDOW_MS);
    recent.push(now);
    if (recent.length < this.limits.abusePerAddress) {
      this.abuse.set(address, recent);
      // Bounded: the oldest addresses are forgotten first.
      if (this.abuse.size > MAX_TRACKED) this.abuse.delete(this.abuse.keys().next().value!);
      return;
    }
    this.abuse.delete(address);
    this.blocked.set(address, now + this.limits.abuseBlockSeconds * 1000);
    if (this.blocked.size > MAX_TRACKED) this.blocked.delete(this.blocked.keys().next().value!);
  }
}
