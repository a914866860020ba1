import { promises as dns, type MxRecord } from 'node:dns';
import { isIP } from 'node:net';
import SMTPConnection, { type SMTPConnectionOptions, type SMTPError } from 'nodemailer/lib/smtp-connection';
import type { Config } from '../../config.js';
import { isAscii } from '../../services/mime/charset.js';

/** A recipient on its way to another server. */
export interface RemoteRecipient {
  address: string;
  /** RFC 3461 NOTIFY as queued (`SUCCESS,FAILURE`), null for the default. */
  notify: string | null;
  orcpt: string | null;
}

/** What became of one recipient in one attempt. */
export interface RemoteOutcome {
  address: string;
  /** `sent`: the next server took it; `temporary`: try again later; `permanent`: give up. */
  kind: 'sent' | 'temporary' | 'permanent';
  /** RFC 3463 enhanced status code. */
  status: string;
  /** What the server said (`smtp; 550 5.1.1 ...`) or what went wrong before it could. */
  diagnostic: string;
  /** The host that answered, when one did. */
  remoteMta: string | null;
  /** The next server took the DSN request over (it advertised DSN): it reports success itself. */
  dsnPassedOn: boolean;
}

export interface RemoteMessage {
  sender: string;
  raw: Buffer;
  ret: 'FULL' | 'HDRS' | null;
  envid: string | null;
}

interface Host {
  host: string;
  port: number;
}

/** A route: where a group of recipients is sent, and what went wrong when it cannot be known. */
type Route = { hosts: Host[]; relay: boolean } | { failure: Omit<RemoteOutcome, 'address' | 'dsnPassedOn'> };

export type MxResolver = (domain: string) => Promise<MxRecord[]>;

/**
 * The longest one connection to a server may last. The client's timeouts are per read (a
 * server answering a byte every few minutes never trips them): without a limit, a slow or
 * hostile server would keep an attempt, and its queue slot, for good.
 */
const SESSION_LIMIT_MS = 30 * 60_000;
/** Domains one attempt sends to at the same time. */
const DOMAINS_AT_ONCE = 10;

/**
 * Delivery to other servers over SMTP, with nodemailer's SMTP client: to the configured relay,
 * or to each recipient domain's MX hosts (RFC 5321 section 5: by preference, falling back
 * to the domain's own address when it has no MX; a null MX (RFC 7505) refuses mail).
 *
 * One attempt per route (the relay, or one domain) and per NOTIFY and ORCPT value (the client
 * sends one of each for a whole transaction): connection-level failures move on to the next MX host;
 * once a server answers, its replies decide, per recipient (4xx temporary, 5xx permanent).
 */
export class RemoteDelivery {
  private readonly resolveMx: MxResolver;
  private readonly sessionLimitMs: number;
  /** The connections open now (close() ends them). */
  private readonly connections = new Set<SMTPConnection>();
  private closed = false;

  constructor(
    private readonly config: Config['outbound'],
    private readonly hostName: string,
    options: { resolveMx?: MxResolver; sessionLimitMs?: number } = {},
  ) {
    this.resolveMx = options.resolveMx ?? ((domain) => dns.resolveMx(domain));
    this.sessionLimitMs = options.sessionLimitMs ?? SESSION_LIMIT_MS;
  }

  /** Ends the connections under way (their recipients are tried again later) and opens no more. */
  close(): void {
    this.closed = true;
    for (const connection of this.connections) connection.close();
  }

  async deliver(message: RemoteMessage, recipients: readonly RemoteRecipient[]): Promise<RemoteOutcome[]> {
    // A few domains at a time: a message to a thousand domains must not open a thousand
    // connections (and DNS queries) at once.
    const domains = [...groupBy(recipients, (r) => (this.config.relay ? '' : domainOf(r.address)))];
    const outcomes: RemoteOutcome[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < domains.length) {
        const [domain, group] = domains[next++]!;
        const route = await this.route(domain);
        if ('failure' in route) outcomes.push(...group.map((r) => ({ address: r.address, dsnPassedOn: false, ...route.failure })));
        else outcomes.push(...(await this.sendVia(route, message, group)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(DOMAINS_AT_ONCE, domains.length) }, worker));
    return outcomes;
  }

  private async route(domain: string): Promise<Route> {
    if (this.config.relay) {
      const relay = parseHostPort(this.config.relay, 25);
      return relay ? { hosts: [relay], relay: true } : failure('4.3.5', `the configured relay "${this.config.relay}" is not host:port`);
    }
    const port = this.config.mxPort;
    const literal = /^\[(?:IPv6:)?([^\]]+)\]$/i.exec(domain);
    if (literal) return { hosts: [{ host: literal[1]!, port }], relay: false };
    let records: MxRecord[];
    try {
      records = await this.resolveMx(domain);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENODATA') return { hosts: [{ host: domain, port }], relay: false }; // implicit MX
      if (code === 'ENOTFOUND') return failure('5.1.2', `the domain ${domain} does not exist`, true);
      return failure('4.4.3', `cannot look up the mail servers of ${domain}: ${code ?? (err as Error).message}`);
    }
    if (records.length === 0) return { hosts: [{ host: domain, port }], relay: false };
    if (records.some((r) => r.exchange === '' || r.exchange === '.')) {
      return failure('5.1.10', `the domain ${domain} does not accept mail (null MX)`, true);
    }
    // By preference; hosts of equal preference in random order (RFC 5321 section 5.1).
    const hosts = records
      .map((r) => ({ r, tie: Math.random() }))
      .sort((a, b) => a.r.priority - b.r.priority || a.tie - b.tie)
      .map(({ r }) => ({ host: r.exchange.replace(/\.$/, ''), port }));
    return { hosts, relay: false };
  }

  /** Tries the route's hosts in turn until one answers; then one transaction per NOTIFY and ORCPT value. */
  private async sendVia(route: { hosts: Host[]; relay: boolean }, message: RemoteMessage, recipients: RemoteRecipient[]): Promise<RemoteOutcome[]> {
    let lastError = 'no mail server to try';
    for (const host of route.hosts.slice(0, 5)) {
      if (this.closed) break;
      const connection = new SMTPConnection(this.connectionOptions(host, route.relay));
      // Failures before the greeting come as 'error' events (connect's callback is for success).
      let failed: ((err: Error) => void) | undefined;
      connection.on('error', (err: Error) => failed?.(err));
      const limit = setTimeout(() => connection.close(), this.sessionLimitMs).unref();
      this.connections.add(connection);
      connection.once('end', () => {
        clearTimeout(limit);
        this.connections.delete(connection);
        failed?.(new Error('connection closed'));
      });
      try {
        await new Promise<void>((resolve, reject) => {
          failed = reject;
          connection.connect(() => resolve());
        });
        if (route.relay && this.config.relayUser) {
          await new Promise<void>((resolve, reject) =>
            connection.login({ user: this.config.relayUser, pass: this.config.relayPassword }, (err) => (err ? reject(err) : resolve())),
          );
        }
      } catch (err) {
        connection.close();
        const e = err as SMTPError;
        // The relay refusing our credentials is a mistake in this server's settings, not the
        // recipients': temporary whatever the reply (like Postfix's smtp_sasl_auth_soft_bounce),
        // so that the messages wait for the operator rather than bounce.
        if (e.code === 'EAUTH' && e.responseCode) {
          return recipients.map((r) => ({ ...outcomeOfReply(r.address, e.response ?? e.message, e.responseCode!, host.host), kind: 'temporary' as const }));
        }
        lastError = `${host.host}:${host.port}: ${e.message}`;
        continue;
      }
      // From here a lost connection ends the transaction under way (the client may not call back).
      const lost = new Promise<Error>((resolve) => (failed = resolve));
      try {
        const outcomes: RemoteOutcome[] = [];
        // The client sends one NOTIFY and one ORCPT for a whole transaction.
        for (const [i, group] of [...groupBy(recipients, (r) => `${r.notify ?? ''}\n${r.orcpt ?? ''}`).values()].entries()) {
          // RSET between transactions: one the server refused (the sender, or every recipient)
          // is still open there, and the next MAIL would be refused as nested.
          const reset = i === 0 ? undefined : await Promise.race([resetTransaction(connection), lost]);
          const result = reset ?? (await Promise.race([this.transaction(connection, host.host, message, group), lost]));
          if (result instanceof Error) {
            outcomes.push(...group.map((r) => connectionLost(r.address, host.host, result)));
          } else outcomes.push(...result);
        }
        return outcomes;
      } finally {
        connection.quit();
      }
    }
    return recipients.map((r) => ({
      address: r.address,
      kind: 'temporary',
      status: '4.4.1',
      diagnostic: `cannot connect to the mail server: ${lastError}`,
      remoteMta: null,
      dsnPassedOn: false,
    }));
  }

  private connectionOptions(host: Host, relay: boolean): SMTPConnectionOptions {
    const mode = this.config.starttls;
    return {
      host: host.host,
      port: host.port,
      name: this.hostName,
      ignoreTLS: mode === 'off',
      requireTLS: mode === 'required',
      opportunisticTLS: mode !== 'required',
      // MX hosts: opportunistic encryption, as MTAs do (RFC 7435); a relay the operator asked
      // to require TLS of must also prove who it is.
      tls: { rejectUnauthorized: relay && mode === 'required', servername: isIP(host.host) ? undefined : host.host },
      connectionTimeout: 30_000,
      greetingTimeout: 30_000,
      socketTimeout: 5 * 60_000,
      logger: false,
    };
  }

  private transaction(connection: SMTPConnection, host: string, message: RemoteMessage, recipients: RemoteRecipient[]): Promise<RemoteOutcome[]> {
    const notify = recipients[0]!.notify;
    const eightBit = !isAscii(message.raw);
    return new Promise((resolve) => {
      connection.send(
        {
          from: message.sender === '' ? false : message.sender,
          to: recipients.map((r) => r.address),
          size: message.raw.length,
          use8BitMime: eightBit,
          dsn: {
            ret: message.ret ?? undefined,
            envid: message.envid ?? undefined,
            notify: notify ? notify.split(',') : undefined,
            orcpt: recipients[0]!.orcpt ?? undefined,
          },
        },
        message.raw,
        (err, info) => {
          const dsnPassedOn = Boolean(info?.ehlo?.some((line) => /^DSN\b/i.test(line)));
          if (err) {
            const e = err as SMTPError;
            if (e.rejectedErrors?.length) return resolve(this.perRecipient(recipients, [], e.rejectedErrors, '', host, dsnPassedOn));
            if (e.responseCode) {
              return resolve(recipients.map((r) => outcomeOfReply(r.address, e.response ?? e.message, e.responseCode!, host)));
            }
            return resolve(recipients.map((r) => connectionLost(r.address, host, e)));
          }
          resolve(this.perRecipient(recipients, info.accepted, info.rejectedErrors ?? [], info.response, host, dsnPassedOn));
        },
      );
    });
  }

  private perRecipient(
    recipients: RemoteRecipient[],
    accepted: readonly string[],
    rejected: readonly SMTPError[],
    response: string,
    host: string,
    dsnPassedOn: boolean,
  ): RemoteOutcome[] {
    const acceptedSet = new Set(accepted.map((a) => a.toLowerCase()));
    return recipients.map((r): RemoteOutcome => {
      const refusal = rejected.find((e) => e.recipient?.toLowerCase() === r.address.toLowerCase());
      if (refusal) return outcomeOfReply(r.address, refusal.response ?? refusal.message, refusal.responseCode ?? 450, host);
      if (acceptedSet.has(r.address.toLowerCase())) {
        return { address: r.address, kind: 'sent', status: enhancedCode(response) ?? '2.0.0', diagnostic: `smtp; ${response}`, remoteMta: host, dsnPassedOn };
      }
      return { address: r.address, kind: 'temporary', status: '4.0.0', diagnostic: 'the server did not answer for this recipient', remoteMta: host, dsnPassedOn: false };
    });
  }
}

/** RSET; resolves with the error when it failed. */
function resetTransaction(connection: SMTPConnection): Promise<Error | undefined> {
  return new Promise((resolve) => connection.reset((err) => resolve(err ?? undefined)));
}

function connectionLost(address: string, host: string, err: Error): RemoteOutcome {
  return { address, kind: 'temporary', status: '4.4.2', diagnostic: `connection to ${host} lost: ${err.message}`, remoteMta: host, dsnPassedOn: false };
}

function failure(status: string, diagnostic: string, permanent = false): Route {
  return { failure: { kind: permanent ? 'permanent' : 'temporary', status, diagnostic, remoteMta: null } };
}

function outcomeOfReply(address: string, reply: string, code: number, host: string): RemoteOutcome {
  const permanent = code >= 500 && code !== 503;
  return {
    address,
    kind: permanent ? 'permanent' : 'temporary',
    status: enhancedCode(reply) ?? (permanent ? '5.0.0' : '4.0.0'),
    diagnostic: `smtp; ${reply.replace(/\s+/g, ' ').trim()}`,
    remoteMta: host,
    dsnPassedOn: false,
  };
}

/** The RFC 3463 code of a reply such as `550 5.1.1 No such user`. */
function enhancedCode(reply: string): string | undefined {
  return /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply.trim())?.[1];
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

function parseHostPort(value: string, defaultPort: number): Host | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(value.trim());
  if (!m) return undefined;
  const port = m[3] ? Number(m[3]) : defaultPort;
  return port > 0 && port < 65536 ? { host: (m[1] ?? m[2])!, port } : undefined;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
