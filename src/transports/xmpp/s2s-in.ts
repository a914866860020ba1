import type net from 'node:net';
import type tls from 'node:tls';
import type { Config } from '../../config.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { tryJid } from '../../services/im/jid.js';
import { el, type XmlElement } from '../../xml/element.js';
import { NS_TLS } from './c2s.js';
import { dialbackKey, NS_DIALBACK, NS_DIALBACK_FEATURE, sameKey } from './dialback.js';
import { NS_SASL } from './sasl.js';
import { newStreamId, NS_SERVER, S2sSocket } from './s2s-stream.js';
import { NS_STREAMS, StreamError } from './stream.js';

/** Dialback claims checked at once on one stream, and in its whole life (each costs a connection of ours). */
const MAX_VERIFYING = 4;
const MAX_VERIFICATIONS = 32;

/** What an incoming server stream needs of the federation service (s2s.ts). */
export interface IncomingContext {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics | undefined;
  /** Our certificate (STARTTLS); none: STARTTLS is not offered. */
  readonly tls: tls.SecureContext | undefined;
  isLocalDomain(domain: string): Promise<boolean>;
  secret(): Promise<string>;
  /** Asks `remote`'s authoritative server whether `key` is its key for this stream (db:verify on a connection of ours). */
  verify(local: string, remote: string, streamId: string, key: string): Promise<boolean>;
  /** A stanza from an authenticated remote domain for a local one: to the IM service. */
  deliver(stanza: XmlElement): Promise<void>;
}

/**
 * A stream another server opened to us (RFC 6120 s2s, receiving side): our header and
 * features (STARTTLS with our certificate; SASL EXTERNAL when its certificate is valid for
 * the domain it names; dialback), dialback both ways on it — db:result (its claim to a
 * domain, checked by connecting back to that domain's authoritative server) and db:verify
 * (answering whether a key is ours) — then stanzas whose `from` is on a domain it proved and
 * whose `to` is ours, handed to the IM service. Anything else ends it with the stream error
 * RFC 6120 4.9.3 names.
 */
export class S2sIncoming {
  private readonly stream: S2sSocket;
  private streamId = '';
  /** The local domain the stream was opened to ('' when the header named none). */
  private local = '';
  /** The domain the header says the peer is. */
  private claimed = '';
  /** Proven (remote, local) pairs: `remote local`. */
  private readonly proven = new Set<string>();
  private readonly loginTimer: NodeJS.Timeout;
  private readonly idleTimer: NodeJS.Timeout;
  private readonly opened = Date.now();
  private finished = false;
  /** Dialback verifications under way, and asked for in all (each makes a connection of ours: bounded). */
  private verifying = 0;
  private verifications = 0;

  constructor(
    private readonly context: IncomingContext,
    socket: net.Socket,
    private readonly onClosed: (connection: S2sIncoming) => void,
  ) {
    this.stream = new S2sSocket(socket, context.config, context.log);
    this.stream.handler = {
      header: (attrs) => this.header(attrs),
      element: (element, ns, name) => this.element(element, ns, name),
      ended: () => this.stream.close(),
      lost: () => this.cleanup('connection closed'),
    };
    const limits = context.config.limits;
    this.loginTimer = setTimeout(() => this.stream.fail('connection-timeout', 'no authentication in time'), limits.loginSeconds * 1000);
    this.loginTimer.unref();
    this.idleTimer = setTimeout(() => this.stream.close(), context.config.xmpp.s2s.idleSeconds * 2000);
    this.idleTimer.unref();
    this.stream.onActivity = () => this.idleTimer.refresh();
    this.stream.attach();
    context.log.info({ event: 's2s.connected', direction: 'in', address: this.stream.remoteAddress }, 'a server connected');
  }

  get remoteAddress(): string {
    return this.stream.remoteAddress;
  }

  private async header(attrs: Record<string, string>): Promise<void> {
    this.streamId = newStreamId();
    const to = (attrs.to ?? '').toLowerCase();
    const from = (attrs.from ?? '').toLowerCase();
    this.stream.sendHeader({ from: to || undefined, to: from || undefined, id: this.streamId });
    if (attrs.xmlns !== undefined && attrs.xmlns !== NS_SERVER) throw new StreamError('invalid-namespace', `a server stream is in ${NS_SERVER}`);
    if (to && !(await this.context.isLocalDomain(to))) throw new StreamError('host-unknown', `this server does not serve ${to}`);
    if (this.local && to && to !== this.local) throw new StreamError('host-unknown', `the stream was opened to ${this.local}`);
    this.local ||= to;
    this.claimed ||= from;
    // Before XMPP 1.0 there are no features (dialback only).
    if (attrs.version === undefined) return;
    const features = el('stream:features');
    if (!this.stream.secure && this.context.tls) {
      const starttls = features.add('starttls', { xmlns: NS_TLS });
      if (this.context.config.xmpp.s2s.requireTls) starttls.add('required');
    }
    if (this.stream.secure && this.proven.size === 0 && this.claimed && this.stream.certificateValidFor(this.claimed)) {
      features.append(el('mechanisms', { xmlns: NS_SASL }, el('mechanism', {}, 'EXTERNAL')));
    }
    if (this.proven.size === 0 || !this.claimed) features.append(el('dialback', { xmlns: NS_DIALBACK_FEATURE }, el('errors')));
    this.stream.send(features);
  }

  private async element(element: XmlElement, ns: string, name: string): Promise<void> {
    if (ns !== NS_TLS && !this.stream.secure && this.context.config.xmpp.s2s.requireTls) throw new StreamError('policy-violation', 'STARTTLS first: this server requires encrypted server streams');
    if (ns === NS_TLS && name === 'starttls') {
      if (this.stream.secure || !this.context.tls) {
        this.stream.send(el('failure', { xmlns: NS_TLS }));
        this.stream.close();
        return;
      }
      this.stream.send(el('proceed', { xmlns: NS_TLS }));
      this.stream.startServerTls(this.context.tls);
      return;
    }
    if (ns === NS_SASL && name === 'auth') return this.external(element);
    if (ns === NS_DIALBACK && name === 'result') return this.dialbackResult(element);
    if (ns === NS_DIALBACK && name === 'verify') return this.dialbackVerify(element);
    if (ns === NS_SERVER && (name === 'message' || name === 'presence' || name === 'iq')) return this.stanza(element);
    if (ns === NS_STREAMS && name === 'error') {
      this.context.log.info({ event: 's2s.stream_error_received', address: this.remoteAddress, remote: this.claimed, error: element.toString().slice(0, 300) }, 'the remote server ended its stream with an error');
      this.stream.close();
      return;
    }
    throw new StreamError('unsupported-stanza-type', `<${element.name}> in ${ns || 'no namespace'} is not understood on a server stream`);
  }

  /** SASL EXTERNAL (XEP-0178): the certificate proves the domain the stream names. */
  private external(auth: XmlElement): void {
    const failure = (condition: string, text: string): void => {
      this.stream.send(el('failure', { xmlns: NS_SASL }, el(condition), el('text', { 'xml:lang': 'en' }, text)));
    };
    if (auth.attrs.mechanism !== 'EXTERNAL') return failure('invalid-mechanism', 'only EXTERNAL is offered');
    const content = auth.text().trim();
    const authzid = content === '' || content === '=' ? this.claimed : Buffer.from(content, 'base64').toString('utf8').toLowerCase();
    if (!authzid || authzid !== this.claimed || !this.local) return failure('invalid-authzid', 'the identity must be the domain the stream is from');
    if (!this.stream.certificateValidFor(authzid)) return failure('not-authorized', `the certificate is not valid for ${authzid}`);
    this.prove(authzid, this.local, 'external');
    this.stream.send(el('success', { xmlns: NS_SASL }));
    this.stream.restart();
  }

  /** db:result from the peer: its claim to a domain, checked with that domain's authoritative server. */
  private dialbackResult(result: XmlElement): void {
    const from = (result.attrs.from ?? '').toLowerCase();
    const to = (result.attrs.to ?? '').toLowerCase();
    const key = result.text().trim();
    const answer = (type: 'valid' | 'invalid' | 'error', condition?: string): void => {
      this.stream.send(el('db:result', { from: to, to: from, type }, condition ? el('error', { type: 'cancel' }, el(condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' })) : undefined));
    };
    const fromJid = tryJid(from);
    if (!fromJid || fromJid.local || fromJid.resource || !to || !key) return answer('error', 'bad-request');
    if (this.verifying >= MAX_VERIFYING || this.verifications >= MAX_VERIFICATIONS) return answer('error', 'resource-constraint');
    this.verifying++;
    this.verifications++;
    // Checked in the background: the stream goes on (the peer may verify our own key on it meanwhile).
    void this.checkClaim(from, to, key, answer)
      .finally(() => this.verifying--)
      .catch((err: unknown) => this.stream.fail('internal-server-error', errorText(err)));
  }

  /** Asks the authoritative server of `from` whether `key` is its own; the peer gets the answer, a refused claim ends the stream. */
  private async checkClaim(from: string, to: string, key: string, answer: (type: 'valid' | 'invalid' | 'error', condition?: string) => void): Promise<void> {
    if (!(await this.context.isLocalDomain(to)) || (this.local && to !== this.local)) return answer('error', 'item-not-found');
    let valid = false;
    try {
      valid = await this.context.verify(to, from, this.streamId, key);
    } catch (err) {
      this.context.log.warn({ event: 's2s.failed', direction: 'in', remote: from, reason: errorText(err) }, 'dialback verification failed');
    }
    if (this.stream.isClosed) return;
    if (!valid) {
      answer('invalid');
      this.context.log.warn({ event: 's2s.failed', direction: 'in', address: this.remoteAddress, local: to, remote: from, reason: 'dialback key not confirmed by the authoritative server' }, `refused: ${from} not proven`);
      this.stream.fail('not-authorized', `${from} did not confirm the dialback key`);
      return;
    }
    this.prove(from, to, 'dialback');
    answer('valid');
  }

  /** db:verify from a server we sent a key to: whether it is ours (recomputed from the secret). */
  private async dialbackVerify(verify: XmlElement): Promise<void> {
    const from = (verify.attrs.from ?? '').toLowerCase();
    const to = (verify.attrs.to ?? '').toLowerCase();
    const id = verify.attrs.id ?? '';
    const local = to && (await this.context.isLocalDomain(to));
    const valid = Boolean(local && from && id && sameKey(verify.text(), dialbackKey(await this.context.secret(), from, to, id)));
    this.stream.send(el('db:verify', { from: to, to: from, id, type: valid ? 'valid' : 'invalid' }));
    this.context.log.debug({ event: 's2s.verify_answered', remote: from, local: to, valid }, 'answered a dialback verification');
  }

  private prove(remote: string, local: string, mechanism: 'dialback' | 'external'): void {
    this.proven.add(`${remote} ${local}`);
    this.stream.authenticated = true;
    clearTimeout(this.loginTimer);
    this.context.log.info({ event: 's2s.authenticated', direction: 'in', address: this.remoteAddress, local, remote, mechanism, tls: this.stream.secure }, `${remote} authenticated (${mechanism})`);
  }

  /** A stanza: from a proven domain (else invalid-from), to one of ours (else host-unknown). */
  private async stanza(stanza: XmlElement): Promise<void> {
    if (this.proven.size === 0) throw new StreamError('not-authorized', 'authenticate first (dialback or SASL EXTERNAL)');
    const from = tryJid(stanza.attrs.from);
    const to = tryJid(stanza.attrs.to);
    if (!from || !to) throw new StreamError('improper-addressing', 'a stanza between servers needs a valid from and to');
    if (![...this.proven].some((pair) => pair.startsWith(`${from.domain} `))) throw new StreamError('invalid-from', `${from.domain} is not proven on this stream`);
    if (!this.proven.has(`${from.domain} ${to.domain}`)) {
      if (!(await this.context.isLocalDomain(to.domain))) throw new StreamError('host-unknown', `this server does not serve ${to.domain}`);
      throw new StreamError('invalid-from', `${from.domain} is not proven for ${to.domain} on this stream`);
    }
    if (stanza.attrs.xmlns === NS_SERVER) delete stanza.attrs.xmlns;
    stanza.attrs.from = from.full;
    stanza.attrs.to = to.full;
    this.context.metrics?.s2sStanzas.inc({ direction: 'in' });
    await this.context.deliver(stanza);
  }

  /** Ends the stream (shutdown). */
  close(condition?: string, text?: string): void {
    if (condition) this.stream.fail(condition, text ?? condition);
    else this.stream.close();
  }

  private cleanup(reason: string): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.loginTimer);
    clearTimeout(this.idleTimer);
    this.context.log.info({ event: 's2s.closed', direction: 'in', address: this.remoteAddress, remote: this.claimed || undefined, reason, seconds: Math.round((Date.now() - this.opened) / 1000) }, 'server stream closed');
    this.onClosed(this);
  }
}
