/**
 * The numbers an operator graphs and alerts on, in the Prometheus text format (prom-client).
 * One registry per server (a test process may run several servers). Counters are
 * incremented where the event happens, beside its log line; gauges that describe state
 * (sessions, queue size) are read when /metrics is scraped.
 *
 * Every metric is named `ximssd_…`; README "Metrics" lists them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from './store/store.js';

/** Request latency buckets, seconds: a cached folderBrowse is sub-millisecond, a search seconds. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();

  /** XIMSS requests by operation and outcome (ok, error = an errorText answer, failed = an internal error). */
  readonly requests = new Counter({
    name: 'ximssd_ximss_requests_total',
    help: 'XIMSS requests answered, by operation and outcome',
    labelNames: ['op', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'ximssd_ximss_request_duration_seconds',
    help: 'Time from a XIMSS request to its answer, by operation',
    labelNames: ['op'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  /** Logins by protocol and outcome (ok, failed, refused = throttled or locked out). */
  readonly logins = new Counter({
    name: 'ximssd_logins_total',
    help: 'Login attempts by protocol and outcome',
    labelNames: ['protocol', 'outcome'] as const,
    registers: [this.registry],
  });
  /** Second factors (x2AuthComplete) by method (totp, recovery-code) and outcome (ok, failed, refused). */
  readonly secondFactors = new Counter({
    name: 'ximssd_second_factor_total',
    help: 'Second-factor checks by method and outcome',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly sessionsStarted = new Counter({
    name: 'ximssd_sessions_started_total',
    help: 'XIMSS sessions started, by binding',
    labelNames: ['binding'] as const,
    registers: [this.registry],
  });
  readonly smtpConnections = new Counter({
    name: 'ximssd_smtp_connections_total',
    help: 'SMTP connections accepted',
    registers: [this.registry],
  });
  readonly smtpMessages = new Counter({
    name: 'ximssd_smtp_messages_total',
    help: 'SMTP messages by outcome (accepted, refused)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly smtpRecipients = new Counter({
    name: 'ximssd_smtp_recipients_refused_total',
    help: 'SMTP recipients refused, by reply code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  /** Queue attempts per recipient by outcome (delivered, relayed, deferred, bounced, expired). */
  readonly queueAttempts = new Counter({
    name: 'ximssd_queue_attempts_total',
    help: 'Outbound queue delivery attempts per recipient, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  /** Calendar items read into the calendar index, by what they hold (event, todo, none). */
  readonly calendarIndexed = new Counter({
    name: 'ximssd_calendar_items_indexed_total',
    help: 'Messages of calendars read into the calendar index, by kind (event, todo, none)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  /** Scheduling messages sent (iTIP over iMIP), by method (REQUEST, CANCEL, REPLY). */
  readonly calendarItip = new Counter({
    name: 'ximssd_calendar_itip_messages_total',
    help: 'Meeting requests, cancellations and replies sent, by method',
    labelNames: ['method'] as const,
    registers: [this.registry],
  });
  /**
   * Limits hit before login, by limit: connections (per address), server_connections
   * (server-wide), blocked (a connection from an address blocked for abuse), abuse_blocked
   * (an address blocked), bad_request (an oversized or malformed request before login),
   * sessions (sessionsPerAccount).
   */
  readonly limits = new Counter({
    name: 'ximssd_limits_total',
    help: 'Limits hit (connections refused, addresses blocked, requests refused before login, sessions refused), by limit',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  /** XMPP client streams open, by transport (tcp, tls = direct TLS, websocket). */
  readonly xmppConnections = new Gauge({
    name: 'ximssd_xmpp_connections',
    help: 'XMPP client streams open, by transport',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  /** XMPP stanzas received from clients (in) and sent to them (out). */
  readonly xmppStanzas = new Counter({
    name: 'ximssd_xmpp_stanzas_total',
    help: 'XMPP stanzas received from clients (in) and sent to them (out)',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  /** Stanzas exchanged with other XMPP servers (federation): received (in) and sent (out). */
  readonly s2sStanzas = new Counter({
    name: 'ximssd_s2s_stanzas_total',
    help: 'Stanzas exchanged with other XMPP servers: received (in) and sent (out)',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  /** SIP messages by transport (udp, tcp, tls, ws, wss), direction (in, out) and kind (request, response). */
  readonly sipMessages = new Counter({
    name: 'ximssd_sip_messages_total',
    help: 'SIP messages received (in) and sent (out), by transport and kind (request, response)',
    labelNames: ['transport', 'direction', 'kind'] as const,
    registers: [this.registry],
  });
  /** SIP connections open, by transport (tcp, tls, ws, wss). */
  readonly sipConnections = new Gauge({
    name: 'ximssd_sip_connections',
    help: 'SIP connections open, by transport',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  /** SIP messages the server could not read (answered when they could be, else dropped). */
  readonly sipParseErrors = new Counter({
    name: 'ximssd_sip_parse_errors_total',
    help: 'SIP messages that could not be parsed',
    registers: [this.registry],
  });
  /** Datagrams read on the SIP UDP port and dropped because the server was too far behind (udp-thread.ts). */
  readonly sipDatagramsDropped = new Counter({
    name: 'ximssd_sip_udp_dropped_total',
    help: 'SIP datagrams dropped on arrival because the server was too far behind',
    registers: [this.registry],
  });
  readonly storeSeconds = new Histogram({
    name: 'ximssd_store_operation_duration_seconds',
    help: 'Time of store operations (one transaction each), by module and method',
    labelNames: ['operation'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly imStanzas = new Counter({
    name: 'ximssd_im_stanzas_total',
    help: 'IM stanzas: received from clients (in) by kind, messages routed, and messages kept offline',
    labelNames: ['kind', 'direction'],
    registers: [this.registry],
  });

  readonly calls = new Counter({
    name: 'ximssd_calls_total',
    help: 'Calls placed through this node, by how they ended: connected, refused, cancelled, unanswered',
    labelNames: ['result'],
    registers: [this.registry],
  });

  /** Remote POP/IMAP accounts: messages fetched and delivered, and polls that failed, by kind (pop, imap). */
  readonly remoteMailFetched = new Counter({
    name: 'ximssd_remote_mail_fetched_total',
    help: 'Messages fetched from remote POP and IMAP accounts and delivered, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly remoteMailErrors = new Counter({
    name: 'ximssd_remote_mail_errors_total',
    help: 'Polls of remote POP and IMAP accounts that failed, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly callsActive = new Gauge({
    name: 'ximssd_calls_active',
    help: 'Calls this node holds now (ringing or connected)',
    registers: [this.registry],
  });

  constructor(options: { defaults?: boolean } = {}) {
    if (options.defaults ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'ximssd_' });
  }

  /** A gauge whose value is read at scrape time (a failing read leaves it unset for that scrape). */
  gauge(name: string, help: string, labelNames: readonly string[], read: (set: (labels: Record<string, string>, value: number) => void) => void | Promise<void>): void {
    new Gauge({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.registry],
      async collect() {
        this.reset();
        try {
          await read((labels, value) => this.set(labels, value));
        } catch {
          // Left unset for this scrape (the store is unreachable: /readyz says so).
        }
      },
    });
  }

  /** A counter whose value is read at scrape time from a total that only grows (the media gateway's). */
  counter(name: string, help: string, read: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Wraps the store so that every call of its modules' methods is timed (the store's methods
 * are one transaction each, so this is transaction latency). Synchronous properties and
 * non-promise results pass through untouched.
 */
export function instrumentStore(store: Store, metrics: Metrics): Store {
  const wrapped = new Map<string, unknown>();
  const wrapModule = (name: string, module: object): object =>
    new Proxy(module, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || typeof property !== 'string') return value;
        const fn = value as (...args: unknown[]) => unknown;
        return function timed(this: unknown, ...args: unknown[]): unknown {
          const started = performance.now();
          const result = fn.apply(target, args);
          if (result instanceof Promise) {
            const done = (): void => metrics.storeSeconds.observe({ operation: `${name}.${property}` }, (performance.now() - started) / 1000);
            result.then(done, done);
          }
          return result;
        };
      },
    });
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof property !== 'string' || typeof value !== 'object' || value === null || property === 'relay') return value;
      let module = wrapped.get(property);
      if (!module) wrapped.set(property, (module = wrapModule(property, value)));
      return module;
    },
  });
}
