import net from 'node:net';
import tls from 'node:tls';
import type { Config } from '../../config.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { el, type XmlElement } from '../../xml/element.js';
import { NS_TLS } from './c2s.js';
import { dialbackKey, NS_DIALBACK, NS_DIALBACK_FEATURE } from './dialback.js';
import { NS_SASL } from './sasl.js';
import { S2sSocket, NS_SERVER } from './s2s-stream.js';
import { NS_STREAM_ERRORS, NS_STREAMS } from './stream.js';

/** Where a remote domain's server is reached: a host name (or address) and port, in order of preference. */
export interface S2sTarget {
  host: string;
  port: number;
  /** TLS from the first byte (XEP-0368 `_xmpps-server._tcp`) instead of STARTTLS. */
  directTls?: boolean;
}

/** The remote domain cannot be reached: the stanza error condition its queued stanzas bounce with. */
export class S2sFailure extends Error {
  constructor(
    readonly condition: 'remote-server-not-found' | 'remote-server-timeout',
    message: string,
  ) {
    super(message);
  }
}

/** What an outgoing connection needs of the federation service (s2s.ts). */
export interface OutgoingContext {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics | undefined;
  /** Our certificate, presented as the client certificate (SASL EXTERNAL) when `presentCertificate`. */
  readonly tls: tls.SecureContext | undefined;
  readonly presentCertificate: boolean;
  readonly ca: string | undefined;
  /** The servers of a domain (SRV, else the domain on 5269); S2sFailure when there are none. */
  targets(domain: string): Promise<S2sTarget[]>;
  /** The addresses of a host name (A/AAAA through the injectable resolver). */
  addresses(host: string): Promise<string[]>;
  isLocalDomain(domain: string): Promise<boolean>;
  secret(): Promise<string>;
}

/** Why the connection is made: to carry stanzas (dialback or EXTERNAL first), or to verify one key (db:verify). */
export type OutgoingPurpose = { kind: 'route' } | { kind: 'verify'; streamId: string; key: string };

export interface OutgoingEvents {
  /** Authenticated: queued stanzas can go. */
  ready?(connection: S2sOutgoing): void;
  /** It never became ready (or the verification was not answered). */
  failed(connection: S2sOutgoing, failure: S2sFailure): void;
  /** It was ready and is gone now. */
  closed?(connection: S2sOutgoing): void;
  /** The authoritative server's answer to db:verify. */
  verified?(valid: boolean): void;
}

type State = 'connecting' | 'negotiating' | 'ready' | 'closed';

/**
 * One stream from this server (`local`) to another (`remote`), RFC 6120 s2s: found through
 * SRV (or the domain on 5269), STARTTLS when offered (required when configured), then
 * authenticated with SASL EXTERNAL when the peer's certificate is valid for its domain and
 * ours is presented, else Server Dialback (XEP-0220: db:result with our key, which the
 * remote server checks with us on a connection of its own). Stanzas wait in `queue` until
 * then. A connection of purpose `verify` only asks the authoritative server whether a key
 * it was given is its own (db:verify) and closes.
 */
export class S2sOutgoing {
  state: State = 'connecting';
  readonly queue: XmlElement[] = [];
  /** How it authenticated (for the log). */
  mechanism: 'dialback' | 'external' | undefined;
  private stream: S2sSocket | undefined;
  private streamId = '';
  private saslDone = false;
  private saslTried = false;
  private readonly deadline: NodeJS.Timeout;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly opened = Date.now();

  constructor(
    private readonly context: OutgoingContext,
    readonly local: string,
    readonly remote: string,
    private readonly purpose: OutgoingPurpose,
    private readonly events: OutgoingEvents,
  ) {
    this.deadline = setTimeout(() => this.fail(new S2sFailure('remote-server-timeout', `${remote} did not accept a stream within ${context.config.xmpp.s2s.connectSeconds} s`)), context.config.xmpp.s2s.connectSeconds * 1000);
    this.deadline.unref();
  }

  private get log(): Logger {
    return this.context.log;
  }

  /** Finds the remote server and connects (errors end in events.failed). */
  async start(): Promise<void> {
    let targets: S2sTarget[];
    try {
      // Stanzas go out only from the domains served here (a server never speaks for another).
      if (!(await this.context.isLocalDomain(this.local))) throw new S2sFailure('remote-server-not-found', `${this.local} is not a domain of this server`);
      targets = await this.context.targets(this.remote);
    } catch (err) {
      return this.fail(err instanceof S2sFailure ? err : new S2sFailure('remote-server-not-found', errorText(err)));
    }
    const reasons: string[] = [];
    // Only when every target failed for a temporary reason (a DNS time-out) is it a time-out.
    let condition: S2sFailure['condition'] | undefined;
    for (const target of targets) {
      if (this.state !== 'connecting') return;
      let addresses: string[];
      try {
        addresses = net.isIP(target.host) ? [target.host] : await this.context.addresses(target.host);
      } catch (err) {
        reasons.push(errorText(err));
        condition = err instanceof S2sFailure && err.condition === 'remote-server-timeout' && condition !== 'remote-server-not-found' ? 'remote-server-timeout' : 'remote-server-not-found';
        continue;
      }
      for (const host of addresses) {
        if (this.state !== 'connecting') return;
        try {
          const socket = target.directTls ? await this.connectTls(host, target.port) : await connect(host, target.port);
          if (this.state !== 'connecting') {
            socket.destroy();
            return;
          }
          this.opened_(socket, `${host}:${target.port}`);
          return;
        } catch (err) {
          reasons.push(`${host}:${target.port}: ${errorText(err)}`);
          condition = 'remote-server-not-found';
        }
      }
    }
    this.fail(new S2sFailure(condition ?? 'remote-server-not-found', `cannot reach ${this.remote}: ${reasons.join('; ') || 'no address'}`));
  }

  /** XEP-0368: TLS at once, the remote domain as SNI and `xmpp-server` as ALPN. */
  private async connectTls(host: string, port: number): Promise<tls.TLSSocket> {
    const socket = await connect(host, port);
    const context = this.context.presentCertificate ? this.context.tls : undefined;
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ socket, servername: this.remote, ALPNProtocols: ['xmpp-server'], rejectUnauthorized: false, ...(context ? { secureContext: context } : this.context.ca ? { ca: this.context.ca } : {}) });
      const onError = (err: Error): void => {
        secure.destroy();
        reject(err);
      };
      secure.once('error', onError);
      secure.once('secureConnect', () => {
        secure.off('error', onError);
        resolve(secure);
      });
    });
  }

  private opened_(socket: net.Socket, where: string): void {
    this.state = 'negotiating';
    const stream = new S2sSocket(socket, this.context.config, this.log);
    this.stream = stream;
    stream.handler = {
      header: (attrs) => this.header(attrs),
      element: (element, ns, name) => this.element(element, ns, name),
      ended: () => {
        if (this.state !== 'ready') this.fail(new S2sFailure('remote-server-not-found', `${this.remote} closed the stream`));
        else this.close('closed by the remote server');
      },
      lost: () => {
        if (this.state === 'ready') this.close('connection lost');
        else this.fail(new S2sFailure('remote-server-not-found', `${this.remote} closed the connection`));
      },
    };
    stream.onActivity = () => this.idleTimer?.refresh();
    stream.attach();
    this.log.info({ event: 's2s.connected', direction: 'out', local: this.local, remote: this.remote, address: where, purpose: this.purpose.kind, directTls: stream.secure }, `connected to ${this.remote}`);
    this.sendHeader();
  }

  private sendHeader(): void {
    this.stream!.sendHeader({ from: this.local, to: this.remote });
  }

  private header(attrs: Record<string, string>): Promise<void> | undefined {
    this.streamId = attrs.id ?? '';
    // A server before XMPP 1.0 sends no features: dialback at once (unless encryption is required).
    if (attrs.version === undefined) return this.authenticate(undefined);
    return undefined;
  }

  private async element(element: XmlElement, ns: string, name: string): Promise<void> {
    const stream = this.stream!;
    if (ns === NS_STREAMS && name === 'error') {
      const condition = element.elements().find((c) => c.attrs.xmlns === NS_STREAM_ERRORS && c.name !== 'text')?.name ?? 'undefined-condition';
      const text = element.elements().find((c) => c.name === 'text')?.text() ?? '';
      const failure = new S2sFailure('remote-server-not-found', `${this.remote} ended the stream: ${condition}${text ? ` (${text})` : ''}`);
      if (this.state === 'ready') this.close(failure.message);
      else this.fail(failure);
      return;
    }
    if (ns === NS_STREAMS && name === 'features') return this.authenticate(element);
    if (ns === NS_TLS && name === 'proceed') {
      try {
        await stream.startClientTls(this.remote, this.context.presentCertificate ? this.context.tls : undefined, this.context.ca);
      } catch (err) {
        return this.fail(new S2sFailure('remote-server-not-found', `TLS with ${this.remote} failed: ${errorText(err)}`));
      }
      this.sendHeader();
      return;
    }
    if (ns === NS_TLS && name === 'failure') return this.fail(new S2sFailure('remote-server-not-found', `${this.remote} refused STARTTLS`));
    if (ns === NS_SASL && name === 'success') {
      this.saslDone = true;
      stream.restart();
      this.sendHeader();
      return;
    }
    if (ns === NS_SASL && name === 'failure') {
      // EXTERNAL refused: dialback on the same stream (XEP-0178 3).
      this.log.info({ event: 's2s.external_refused', local: this.local, remote: this.remote }, 'SASL EXTERNAL refused: trying dialback');
      return this.dialback();
    }
    if (ns === NS_DIALBACK && name === 'result' && this.purpose.kind === 'route') {
      if (element.attrs.type === 'valid') return this.ready('dialback');
      const condition = element.element('error')?.elements()[0]?.name;
      return this.fail(new S2sFailure('remote-server-not-found', `${this.remote} refused our dialback key${condition ? ` (${condition})` : ''}`));
    }
    if (ns === NS_DIALBACK && name === 'verify' && this.purpose.kind === 'verify') {
      const valid = element.attrs.type === 'valid' && element.attrs.id === this.purpose.streamId;
      this.events.verified?.(valid);
      this.finishVerify(valid);
      return;
    }
    // Nothing else is expected on a stream we initiated; stanzas are not accepted on it.
  }

  /** The features after each (re)start: STARTTLS first, then SASL EXTERNAL or dialback. */
  private async authenticate(features: XmlElement | undefined): Promise<void> {
    const stream = this.stream!;
    const config = this.context.config.xmpp.s2s;
    if (this.saslDone) return this.ready('external');
    if (!stream.secure) {
      if (features?.elements().some((f) => f.name === 'starttls' && f.attrs.xmlns === NS_TLS)) {
        stream.send(el('starttls', { xmlns: NS_TLS }));
        return;
      }
      if (config.requireTls) return this.fail(new S2sFailure('remote-server-not-found', `${this.remote} does not offer STARTTLS, which is required`));
    }
    if (this.purpose.kind === 'verify') {
      stream.send(el('db:verify', { from: this.local, to: this.remote, id: this.purpose.streamId }, this.purpose.key));
      return;
    }
    const mechanisms = features?.elements().find((f) => f.name === 'mechanisms' && f.attrs.xmlns === NS_SASL);
    const external = mechanisms?.elements('mechanism').some((m) => m.text().trim() === 'EXTERNAL') ?? false;
    if (external && !this.saslTried && this.context.presentCertificate && stream.certificateValidFor(this.remote)) {
      this.saslTried = true;
      stream.send(el('auth', { xmlns: NS_SASL, mechanism: 'EXTERNAL' }, Buffer.from(this.local).toString('base64')));
      return;
    }
    const offersDialback = !features || features.elements().some((f) => f.name === 'dialback' && f.attrs.xmlns === NS_DIALBACK_FEATURE);
    if (!offersDialback) return this.fail(new S2sFailure('remote-server-not-found', `${this.remote} offers neither dialback nor SASL EXTERNAL we can use${stream.authorizationError ? ` (its certificate: ${stream.authorizationError})` : ''}`));
    return this.dialback();
  }

  private async dialback(): Promise<void> {
    const key = dialbackKey(await this.context.secret(), this.remote, this.local, this.streamId);
    this.stream?.send(el('db:result', { from: this.local, to: this.remote }, key));
  }

  private ready(mechanism: 'dialback' | 'external'): void {
    if (this.state !== 'negotiating') return;
    clearTimeout(this.deadline);
    this.state = 'ready';
    this.mechanism = mechanism;
    this.stream!.authenticated = true;
    this.log.info({ event: 's2s.authenticated', direction: 'out', local: this.local, remote: this.remote, mechanism, tls: this.stream!.secure }, `authenticated to ${this.remote} (${mechanism})`);
    const seconds = this.context.config.xmpp.s2s.idleSeconds;
    this.idleTimer = setTimeout(() => this.close('idle'), seconds * 1000);
    this.idleTimer.unref();
    for (const stanza of this.queue.splice(0)) this.write(stanza);
    this.events.ready?.(this);
  }

  /** Sends a stanza now (ready) or once authenticated. */
  send(stanza: XmlElement): void {
    if (this.state === 'ready') this.write(stanza);
    else this.queue.push(stanza);
  }

  private write(stanza: XmlElement): void {
    this.idleTimer?.refresh();
    this.context.metrics?.s2sStanzas.inc({ direction: 'out' });
    this.stream!.send(stanza);
  }

  private finishVerify(valid: boolean): void {
    clearTimeout(this.deadline);
    this.state = 'closed';
    this.stream?.close();
    this.log.info({ event: 's2s.verified', local: this.local, remote: this.remote, valid }, `${this.remote} says the dialback key is ${valid ? 'valid' : 'invalid'}`);
  }

  /** It could not be made: the queued stanzas are handed to events.failed (they bounce). */
  fail(failure: S2sFailure): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    clearTimeout(this.deadline);
    clearTimeout(this.idleTimer);
    if (this.stream) this.stream.close();
    this.log.warn({ event: 's2s.failed', direction: 'out', local: this.local, remote: this.remote, purpose: this.purpose.kind, condition: failure.condition, reason: failure.message, queued: this.queue.length }, `federation with ${this.remote} failed: ${failure.message}`);
    if (this.purpose.kind === 'verify') this.events.verified?.(false);
    if (wasReady) this.events.closed?.(this);
    else this.events.failed(this, failure);
  }

  /** Closes a ready connection gracefully (idle, shutdown, the peer went). */
  close(reason: string): void {
    if (this.state === 'closed') return;
    if (this.state !== 'ready') return this.fail(new S2sFailure('remote-server-not-found', reason));
    this.state = 'closed';
    clearTimeout(this.deadline);
    clearTimeout(this.idleTimer);
    this.stream?.close();
    this.log.info({ event: 's2s.closed', direction: 'out', local: this.local, remote: this.remote, reason, seconds: Math.round((Date.now() - this.opened) / 1000) }, `stream to ${this.remote} closed: ${reason}`);
    this.events.closed?.(this);
  }
}

/** A TCP connection (its own errors end in the promise). */
function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

export { NS_SERVER };
