import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { addressKey } from './client-address.js';

/** The window abuse is counted in, and how many addresses are remembered at most. */
const ABUSE_WINDOW_MS = 60_000;
const MAX_TRACKED = 100_000;
/** Why an address that abused the server is refused. */
export const BLOCKED = 'this address sent too many refused requests; try again later';

/** A refused connection or request from one address is logged at most once in this window (the rest are counted). */
const LOG_WINDOW_MS = 10_000;

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
  /** When a refusal was last logged, by limit and address, and how many were not logged since. */
  private readonly lastLogged = new Map<string, { at: number; unlogged: number }>();
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;

  constructor(
    private readonly limits: {
      readonly connectionsPerAddress: number;
      readonly preLoginConnections: number;
      readonly abusePerAddress: number;
      readonly abuseBlockSeconds: number;
    },
    options: { log?: Logger; metrics?: Metrics } = {},
  ) {
    this.log = options.log ?? silentLogger;
    this.metrics = options.metrics;
  }

  /** Admits a connection from `address` (over `protocol`, for the log), or says why not. */
  admit(clientAddress: string, protocol?: string, now = Date.now()): Admission | string {
    const address = addressKey(clientAddress);
    const until = this.blocked.get(address);
    if (until !== undefined) {
      if (until > now) {
        this.refused('blocked', clientAddress, now, { protocol, until: new Date(until).toISOString() }, 'connection refused: the address is blocked for abuse');
        return BLOCKED;
      }
      this.blocked.delete(address);
    }
    const count = this.byAddress.get(address) ?? 0;
    if (count >= this.limits.connectionsPerAddress) {
      this.refused('connections', clientAddress, now, { protocol, limit: this.limits.connectionsPerAddress }, 'connection refused: too many connections from this address');
      return 'too many connections from this address';
    }
    if (this.total >= this.limits.preLoginConnections) {
      this.refused('server_connections', clientAddress, now, { protocol, limit: this.limits.preLoginConnections }, 'connection refused: too many connections not logged in');
      return 'too many connections; try again later';
    }
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
  reportAbuse(clientAddress: string, reason: string, now = Date.now()): void {
    // A parser's message may quote what the client sent (an entity name inside a password):
    // only the kind is logged. The limits' messages are the server's own words.
    const logged = reason.startsWith('malformed XML') ? 'malformed XML' : reason.slice(0, 200);
    this.refused('bad_request', clientAddress, now, { reason: logged }, 'request refused before login');
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
    // Once per block (fail2ban reads this one): never throttled.
    this.metrics?.limits.inc({ limit: 'abuse_blocked' });
    this.log.warn(
      { event: 'limit.abuse_blocked', address: clientAddress, refused: recent.length, seconds: this.limits.abuseBlockSeconds },
      'address blocked: too many refused requests',
    );
  }

  /**
   * Counts a refusal and logs it as `limit.<limit>`: the first from an address at once, the
   * next ones at most once per LOG_WINDOW_MS (with how many went unlogged meanwhile), so
   * that a client flooding the server with connections cannot flood its log too.
   */
  private refused(limit: string, clientAddress: string, now: number, fields: Record<string, unknown>, message: string): void {
    this.metrics?.limits.inc({ limit });
    const key = `${limit} ${addressKey(clientAddress)}`;
    const last = this.lastLogged.get(key);
    if (last && now - last.at < LOG_WINDOW_MS) {
      last.unlogged++;
      return;
    }
    this.lastLogged.delete(key);
    this.lastLogged.set(key, { at: now, unlogged: 0 });
    if (this.lastLogged.size > MAX_TRACKED) this.lastLogged.delete(this.lastLogged.keys().next().value!);
    const unlogged = last?.unlogged ? { unlogged: last.unlogged } : {};
    this.log.warn({ event: `limit.${limit}`, address: clientAddress, ...fields, ...unlogged }, message);
  }
}
