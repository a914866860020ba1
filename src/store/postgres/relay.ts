import pg from 'pg';
import { MAX_RELAY_MESSAGE, type ChangeRelay } from '../store.js';
import { clientConfig, type Db } from './db.js';

/** The NOTIFY channel every node listens on. */
export const RELAY_CHANNEL = 'ximssd';

/** Reconnection back-off of a listener whose connection dropped: doubling from the first to the last. */
const FIRST_RETRY_MS = 100;
const LAST_RETRY_MS = 5000;

/** A listener's connection is checked this often (a dead peer may send no FIN)... */
const PING_EVERY_MS = 30_000;
/** ...and counts as dropped when the check takes longer than this. */
const PING_TIMEOUT_MS = 10_000;

/**
 * The change relay between cluster nodes: PostgreSQL LISTEN/NOTIFY on one channel. Sending
 * goes through the pool (a NOTIFY is delivered when its transaction commits: here, at once);
 * each listener holds a connection of its own, and when that drops, it connects again with
 * back-off and tells its owner to resynchronise (notifications sent meanwhile are lost).
 */
export class PgRelay implements ChangeRelay {
  private readonly listeners = new Set<Listener>();

  constructor(
    private readonly db: Db,
    private readonly channel = RELAY_CHANNEL,
  ) {}

  async send(message: string): Promise<void> {
    const bytes = Buffer.byteLength(message, 'utf8');
    if (bytes > MAX_RELAY_MESSAGE) throw new RangeError(`relay message too long (${bytes} bytes, at most ${MAX_RELAY_MESSAGE})`);
    await this.db.run({ name: 'relay.send', text: 'SELECT pg_notify($1, $2)' }, [this.channel, message]);
  }

  async listen(onMessage: (message: string) => void, onResync: () => void): Promise<() => Promise<void>> {
    const listener = new Listener(this.db.connectionString, this.channel, onMessage, onResync);
    await listener.start();
    this.listeners.add(listener);
    return async () => {
      this.listeners.delete(listener);
      await listener.stop();
    };
  }

  /** Stops every listener (the store is closing). */
  async close(): Promise<void> {
    const listeners = [...this.listeners];
    this.listeners.clear();
    await Promise.all(listeners.map((l) => l.stop()));
  }
}

class Listener {
  private client: pg.Client | undefined;
  private stopped = false;
  private retryMs = FIRST_RETRY_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connectionString: string,
    private readonly channel: string,
    private readonly onMessage: (message: string) => void,
    private readonly onResync: () => void,
  ) {}

  /** Connects and listens; rejects when the first connection fails. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ ...clientConfig(this.connectionString), keepAliveInitialDelayMillis: 10_000 });
    let live = true;
    const lost = (): void => {
      if (!live) return;
      live = false;
      this.lost(client);
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (notification) => {
      if (live && !this.stopped && notification.channel === this.channel) this.onMessage(notification.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    } catch (err) {
      live = false;
      destroy(client);
      throw err;
    }
    if (this.stopped || !live) {
      live = false;
      destroy(client);
      if (this.stopped) return;
      throw new Error('the relay connection dropped while it started listening');
    }
    this.client = client;
    this.retryMs = FIRST_RETRY_MS;
    this.schedulePing(client);
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    if (this.pingTimer) clearTimeout(this.pingTimer);
    destroy(client);
    if (!this.stopped) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      this.connect().then(
        () => {
          // Listening again: whatever was sent meanwhile is lost, so the owner catches up.
          if (!this.stopped && this.client) this.onResync();
        },
        () => {
          this.retryMs = Math.min(this.retryMs * 2, LAST_RETRY_MS);
          if (!this.stopped) this.scheduleReconnect();
        },
      );
    }, this.retryMs);
    this.retryTimer.unref();
  }

  private schedulePing(client: pg.Client): void {
    this.pingTimer = setTimeout(() => {
      if (this.client !== client) return;
      let timeout: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timeout = setTimeout(() => reject(new Error('relay connection check timed out')), PING_TIMEOUT_MS);
      });
      Promise.race([client.query('SELECT 1'), expired]).then(
        () => {
          clearTimeout(timeout);
          if (this.client === client) this.schedulePing(client);
        },
        () => {
          clearTimeout(timeout);
          this.lost(client);
        },
      );
    }, PING_EVERY_MS);
    this.pingTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearTimeout(this.pingTimer);
    const client = this.client;
    this.client = undefined;
    if (client) {
      await Promise.race([client.end().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      destroy(client);
    }
  }
}

/** Closes a client's socket at once, whatever state it is in. */
function destroy(client: pg.Client): void {
  try {
    client.connection.stream.destroy();
  } catch {
    // never connected
  }
}
