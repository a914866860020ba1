import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import type { Config } from '../../config.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { systemResolver, type DnsResolver } from '../../services/mail-auth.js';
import { tryJid } from '../../services/im/jid.js';
import type { Store } from '../../store/store.js';
import type { XmlElement } from '../../xml/element.js';
import { listen } from '../../ximss/bindings/sockets.js';
import { dialbackSecret } from './dialback.js';
import { S2sIncoming } from './s2s-in.js';
import { S2sFailure, S2sOutgoing, type OutgoingContext, type S2sTarget } from './s2s-out.js';
import { address } from './s2s-stream.js';

/** The port of an XMPP server when its domain has no SRV record (RFC 6120 3.2.2). */
const DEFAULT_PORT = 5269;
/** Outgoing streams open or being made at once (each remote domain is one): beyond, stanzas bounce. */
const MAX_OUTGOING = 2000;
/** How long close() waits for streams to end before it drops them. */
const CLOSE_GRACE_MS = 1500;

export interface S2sOptions {
  config: Config;
  store: Store;
  /** Our certificate (STARTTLS both ways; none: plain streams only). */
  tls: tls.SecureContext | undefined;
  /** DNS for SRV and A/AAAA look-ups (default node:dns/promises): tests point domains at loopback ports. */
  resolver?: DnsResolver;
  isLocalDomain(domain: string): Promise<boolean>;
  /** A stanza from a remote server for a local address (the IM service's inbound side). */
  deliver(stanza: XmlElement): Promise<void>;
  /** A stanza that could not be sent: the IM service tells its sender (RFC 6120 8.3.3 conditions). */
  bounce(stanza: XmlElement, condition: string, text: string): void;
  log: Logger;
  metrics?: Metrics;
}

/**
 * Federation with other XMPP servers (RFC 6120 server-to-server, XEP-0220 dialback, XEP-0178
 * SASL EXTERNAL): one outgoing stream per (local domain, remote domain), made on the first
 * stanza for that domain and closed when idle, with stanzas queued (bounded) meanwhile and
 * bounced when it cannot be made; and the listener for other servers' streams (s2s-in.ts),
 * whose dialback claims are checked on short connections of our own.
 */
export class S2sService {
  private readonly outgoing = new Map<string, S2sOutgoing>();
  private readonly verifying = new Set<S2sOutgoing>();
  private readonly incoming = new Set<S2sIncoming>();
  private readonly perAddress = new Map<string, number>();
  private readonly servers: net.Server[] = [];
  private readonly resolver: DnsResolver;
  private readonly log: Logger;
  private secretPromise: Promise<string> | undefined;
  private readonly ca: string | undefined;
  /** Our certificate with the configured CAs (a ready SecureContext ignores a `ca` option): STARTTLS both ways. */
  private readonly tls: tls.SecureContext | undefined;
  private closing = false;

  constructor(private readonly options: S2sOptions) {
    this.log = options.log.child({ component: 's2s' });
    this.resolver = options.resolver ?? systemResolver;
    const { config } = options;
    const caFile = config.xmpp.s2s.caFile;
    this.ca = caFile ? readFileSync(caFile, 'utf8') : undefined;
    this.tls = options.tls;
    if (this.ca && options.tls) {
      // The same files as src/tls.ts loads (the configured ones, or the generated ones in <data>/tls).
      const certFile = config.tls.certFile || join(config.dataDir, 'tls', 'cert.pem');
      const keyFile = config.tls.keyFile || join(config.dataDir, 'tls', 'key.pem');
      this.tls = tls.createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile), ca: this.ca });
    }
  }

  private secret = (): Promise<string> => {
    this.secretPromise ??= dialbackSecret(this.options.store);
    this.secretPromise.catch(() => (this.secretPromise = undefined));
    return this.secretPromise;
  };

  private outgoingContext(): OutgoingContext {
    return {
      config: this.options.config,
      log: this.log,
      metrics: this.options.metrics,
      tls: this.tls,
      // A self-signed certificate proves nothing to the peer: it is presented only when configured.
      presentCertificate: this.options.config.tls.certFile !== '',
      ca: this.ca,
      targets: (domain) => this.targets(domain),
      addresses: (host) => this.addresses(host),
      isLocalDomain: this.options.isLocalDomain,
      secret: this.secret,
    };
  }

  // -------------------------------------------------------------------------------------
  // Outgoing

  /**
   * Sends a stanza to the server of its `to` domain, from the domain of its `from`: on the
   * pair's stream, made when there is none; bounced (events in options.bounce) when the
   * queue is full or the stream cannot be made.
   */
  send(stanza: XmlElement): void {
    const from = tryJid(stanza.attrs.from);
    const to = tryJid(stanza.attrs.to);
    if (!from || !to) {
      this.log.warn({ event: 's2s.unaddressed', stanza: stanza.toString().slice(0, 200) }, 'a stanza for another server without a valid from and to is dropped');
      return;
    }
    const local = from.domain;
    const remote = to.domain;
    if (this.closing) return this.options.bounce(stanza, 'remote-server-timeout', 'the server is stopping');
    const key = `${local} ${remote}`;
    let connection = this.outgoing.get(key);
    if (!connection && this.outgoing.size >= MAX_OUTGOING) return this.options.bounce(stanza, 'resource-constraint', `streams to ${MAX_OUTGOING} servers are open already`);
    if (!connection) {
      connection = new S2sOutgoing(this.outgoingContext(), local, remote, { kind: 'route' }, {
        failed: (c, failure) => this.failed(key, c, failure),
        closed: (c) => {
          if (this.outgoing.get(key) === c) this.outgoing.delete(key);
        },
      });
      this.outgoing.set(key, connection);
      void connection.start();
    }
    if (connection.state !== 'ready' && connection.queue.length >= this.options.config.xmpp.s2s.queueStanzas) {
      return this.options.bounce(stanza, 'resource-constraint', `too many stanzas wait for ${remote}`);
    }
    connection.send(stanza);
  }

  private failed(key: string, connection: S2sOutgoing, failure: S2sFailure): void {
    if (this.outgoing.get(key) === connection) this.outgoing.delete(key);
    for (const stanza of connection.queue.splice(0)) this.options.bounce(stanza, failure.condition, failure.message);
  }

  /** Asks `remote`'s authoritative server whether `key` is its dialback key for our stream `streamId`. */
  verify(local: string, remote: string, streamId: string, key: string): Promise<boolean> {
    return new Promise((resolve) => {
      let answered = false;
      const answer = (valid: boolean): void => {
        if (answered) return;
        answered = true;
        this.verifying.delete(connection);
        resolve(valid);
      };
      const connection = new S2sOutgoing(this.outgoingContext(), local, remote, { kind: 'verify', streamId, key }, {
        failed: () => answer(false),
        verified: answer,
      });
      this.verifying.add(connection);
      void connection.start();
    });
  }

  /**
   * Where a domain's server is: SRV `_xmpps-server._tcp` (XEP-0368, direct TLS) and
   * `_xmpp-server._tcp` (RFC 6120 3.2.1) together, by priority then weight, direct TLS first
   * on a tie; without either, the domain itself on 5269.
   */
  private async targets(domain: string): Promise<S2sTarget[]> {
    type Srv = { name: string; port: number; priority: number; weight: number };
    let refused = false;
    const lookUp = async (name: string): Promise<Srv[]> => {
      try {
        const records = (await this.resolver(name, 'SRV')) as Srv[];
        // A single "." target: the service is decidedly not offered (RFC 2782, RFC 6120 3.2.1).
        if (records.length === 1 && (records[0]!.name === '.' || records[0]!.name === '')) {
          refused = true;
          return [];
        }
        return records;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ENOTFOUND' && code !== 'ENODATA') throw new S2sFailure('remote-server-timeout', `DNS SRV ${name}: ${errorText(err)}`);
        return [];
      }
    };
    const [direct, starttls] = await Promise.all([lookUp(`_xmpps-server._tcp.${domain}`), lookUp(`_xmpp-server._tcp.${domain}`)]);
    const all = [...direct.map((r) => ({ ...r, directTls: true })), ...starttls.map((r) => ({ ...r, directTls: false }))];
    if (all.length === 0 && refused) throw new S2sFailure('remote-server-not-found', `${domain} offers no XMPP federation (SRV ".")`);
    if (all.length === 0) return [{ host: domain, port: DEFAULT_PORT }];
    return all
      .sort((a, b) => a.priority - b.priority || Number(b.directTls) - Number(a.directTls) || b.weight - a.weight)
      .map((r) => ({ host: r.name, port: r.port, directTls: r.directTls }));
  }

  /** A host's addresses (A, then AAAA); S2sFailure remote-server-not-found when it has none. */
  private async addresses(host: string): Promise<string[]> {
    const out: string[] = [];
    let temporary: unknown;
    for (const rrtype of ['A', 'AAAA']) {
      try {
        out.push(...((await this.resolver(host, rrtype)) as string[]));
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ENOTFOUND' && code !== 'ENODATA') temporary = err;
      }
    }
    if (out.length === 0) {
      if (temporary) throw new S2sFailure('remote-server-timeout', `DNS for ${host}: ${errorText(temporary)}`);
      throw new S2sFailure('remote-server-not-found', `${host} does not resolve`);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Incoming

  /** Listens for other servers' streams (5269); resolves with the port bound. */
  listen(port: number, host: string): Promise<number> {
    const limit = this.options.config.xmpp.s2s.connectionsPerAddress;
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      const from = address(socket);
      const count = this.perAddress.get(from) ?? 0;
      if (this.closing || count >= limit) {
        this.log.warn({ event: 's2s.refused', address: from, connections: count, limit }, 'too many server streams from one address');
        socket.on('error', () => socket.destroy());
        socket.destroy();
        return;
      }
      this.perAddress.set(from, count + 1);
      const connection = new S2sIncoming(
        {
          config: this.options.config,
          log: this.log,
          metrics: this.options.metrics,
          tls: this.tls,
          isLocalDomain: this.options.isLocalDomain,
          secret: this.secret,
          verify: (local, remote, streamId, key) => this.verify(local, remote, streamId, key),
          deliver: this.options.deliver,
        },
        socket,
        (c) => {
          this.incoming.delete(c);
          const left = (this.perAddress.get(from) ?? 1) - 1;
          if (left <= 0) this.perAddress.delete(from);
          else this.perAddress.set(from, left);
        },
      );
      this.incoming.add(connection);
    });
    server.on('error', (err) => this.log.error({ event: 's2s.listener_error', err }, 'server-to-server listener error'));
    this.servers.push(server);
    return listen(server, port, host);
  }

  get listening(): boolean {
    return this.servers.every((server) => server.listening);
  }

  /** Outgoing streams open or being made (for tests and the log). */
  get outgoingCount(): number {
    return this.outgoing.size;
  }

  /** Stops accepting, closes every stream both ways (what waits to be sent bounces). */
  async close(): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const connection of [...this.outgoing.values()]) connection.close('server shutdown');
    for (const connection of this.verifying) connection.fail(new S2sFailure('remote-server-timeout', 'server shutdown'));
    for (const connection of this.incoming) connection.close('system-shutdown', 'the server is stopping');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
  }
}
