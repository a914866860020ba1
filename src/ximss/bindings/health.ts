import { BlockList, isIP } from 'node:net';
import type { Store } from '../../store/store.js';

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

  constructor(
    private readonly store: Store,
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

  /** Undefined when ready, else why not. */
  async check(): Promise<string | undefined> {
    if (this.closing) return 'the server is shutting down';
    if (!this.started) return 'the server is starting';
    const down = this.listeners.filter((l) => !l.listening()).map((l) => l.name);
    if (down.length > 0) return `not listening: ${down.join(', ')}`;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`the store did not answer within ${this.timeoutMs} ms`), this.timeoutMs);
    });
    try {
      return await Promise.race([
        this.store.domains.list().then(
          () => undefined,
          (err: unknown) => `the store is not reachable: ${err instanceof Error ? err.message : String(err)}`,
        ),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The client addresses allowed to read /metrics: addresses and CIDR prefixes (`10.0.0.0/8`,
 * `fd00::/8`), IPv4 or IPv6. Throws on an entry that is neither.
 */
export function addressList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const slash = entry.indexOf('/');
    const address = slash < 0 ? entry : entry.slice(0, slash);
    const version = isIP(address);
    if (version === 0) throw new Error(`metrics.allow: ${entry} is not an address or a CIDR prefix`);
    const type = version === 4 ? 'ipv4' : 'ipv6';
    if (slash < 0) {
      list.addAddress(address, type);
      continue;
    }
    const prefix = Number(entry.slice(slash + 1));
    if (!/^\d+$/.test(entry.slice(slash + 1)) || prefix > (version === 4 ? 32 : 128)) {
      throw new Error(`metrics.allow: ${entry} has an invalid prefix length`);
    }
    list.addSubnet(address, prefix, type);
  }
  return list;
}

/** Whether `address` (as clientAddress gives it: IPv4-mapped addresses in IPv4 form) is in `list`. */
export function allowed(list: BlockList, address: string): boolean {
  const version = isIP(address);
  if (version === 0) return false;
  return list.check(address, version === 4 ? 'ipv4' : 'ipv6');
}
