import { silentLogger, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from 'smtp-server';
import type { SMTPConnection, SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { Config } from '../../config.js';
import { fullName, type AccountService } from '../../services/accounts.js';
import type { AuthService } from '../../services/auth.js';
import type { Admission, ConnectionLimiter } from '../../services/connections.js';
import { BAD_CREDENTIALS, ServiceError } from '../../services/errors.js';
import { rfcDateInZone } from '../../services/mime/dates.js';
import type { MailService } from '../../services/mail/service.js';
import type { AccountRecord } from '../../store/store.js';
import { StorageLimitError } from '../../services/mail/service.js';
import { addDateAndMessageId, checkInbound, removeForgedResults, systemResolver, type DnsResolver } from '../../services/mail-auth.js';
import { LocalDelivery } from './local-delivery.js';
import { deliveryStatusNotification, type DsnRecipient } from './dsn.js';
import type { DsnNotify, MailSubmitter } from './queue.js';
import { resolveRecipient, type Recipient } from './recipients.js';

/** The services the SMTP listener uses (XimssServices has them all under these names). */
export interface SmtpServices {
  readonly config: Config;
  readonly accounts: AccountService;
  readonly auth: AuthService;
  readonly mail: MailService;
  /** Final delivery to local accounts (through their Mail Rules). */
  readonly delivery: LocalDelivery;
  /** Where messages for other domains (authenticated submission) go. */
  readonly queue: MailSubmitter;
  /** The server certificate; without it STARTTLS is neither offered nor accepted. */
  readonly tls: SecureContext | undefined;
  /** Connections not logged in, per client address (shared with XIMSS and HTTP). */
  readonly connections: ConnectionLimiter;
}

export interface SmtpListenerOptions {
  /** The structured log (component smtp): connections, accepted messages, refusals, errors. */
  log?: Logger;
  metrics?: Metrics;
  /**
   * Accept AUTH on a connection without TLS from any address. Off by default: AUTH is offered
   * on a plain-text connection only to loopback clients (127.0.0.0/8, ::1); others see it
   * after STARTTLS.
   */
  allowPlaintextAuth?: boolean;
  /** Idle time-out of a connection, ms (default 5 minutes, RFC 5321 section 4.5.3.2). */
  socketTimeoutMs?: number;
  /** DNS for the SPF/DKIM/DMARC checks of received mail (default: node:dns/promises `resolve`). */
  resolver?: DnsResolver;
  /** The time limit of one DNS query of those checks, ms (default 5 s; 20 s for all of a message's). */
  dnsTimeoutMs?: number;
}

/** The results of the checks of a received message (README "Mail authentication"). */
interface AuthSummary {
  spf: string;
  dkim: string;
  dmarc: string;
}

/** An error whose text already starts with its enhanced status code (RFC 3463), e.g. `5.7.1 ...`. */
type SmtpError = Error & { responseCode: number };

function smtpError(code: number, text: string): SmtpError {
  return Object.assign(new Error(text), { responseCode: code });
}

const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

/** Socket-level failures that are part of normal life on a public port; not logged. */
const QUIET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_DESTROYED', 'ERR_SSL_WRONG_VERSION_NUMBER']);

export function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/^::ffff:/, '');
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/**
 * smtp-server with two changes, both made where every reply is sent (SMTPConnection.send):
 *
 * - The enhanced status code (ENHANCEDSTATUSCODES is advertised) of a reply whose text starts
 *   with one is taken from the text. The library derives the code of an application's error
 *   from the reply code alone (550 is always 5.1.1), which cannot say `550 5.7.1` (relaying
 *   denied) next to `550 5.1.1` (no such user). Every other reply, the library's own
 *   included, keeps the library's code.
 * - Error replies are counted per connection, like Postfix's smtpd_hard_error_limit: the
 *   `errorLimit`th error reply (4xx or 5xx: unknown recipients, relaying denied, failed AUTH,
 *   bad syntax, ...) is followed at once by `421 4.7.0 Too many errors`, and the library
 *   closes the connection after a 421 (a handler's error with responseCode 421 does the same,
 *   which is how a callback ends a session).
 */
class Server extends SMTPServer {
  private readonly wrapped = new WeakSet<SMTPConnection>();
  /** Error replies a connection may get before it is closed. */
  errorLimit = Number.POSITIVE_INFINITY;

  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    super.connect(socket, socketOptions);
    for (const connection of this.connections) {
      if (this.wrapped.has(connection)) continue;
      this.wrapped.add(connection);
      const send = connection.send.bind(connection);
      let errors = 0;
      connection.send = (code, data, context) => {
        if (typeof data === 'string' && ENHANCED_CODE.test(data)) send(code, data, false);
        else send(code, data, context);
        if (code >= 400 && code !== 421 && ++errors >= this.errorLimit) send(421, '4.7.0 Too many errors', false);
      };
    }
  }
}

/** What a mail transaction's delivery needs, copied from the session when DATA ends. */
interface Transaction {
  id: string;
  sender: string;
  /** `target`: the recipient as resolved when RCPT accepted it. */
  recipients: { address: string; notify: DsnNotify | undefined; orcpt: string | undefined; target: Recipient | undefined }[];
  ret: 'FULL' | 'HDRS' | undefined;
  envid: string | undefined;
  authenticated: boolean;
  /** The domain of the authenticated account (`session.user` is `name@domain`): what its submissions may be DKIM-signed for. */
  signAs: string | undefined;
  remoteAddress: string;
  helo: string;
  protocol: string;
}

/**
 * The SMTP listener (receiving): ESMTP with PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES,
 * STARTTLS (when a certificate exists) and AUTH PLAIN/LOGIN for local accounts.
 *
 * - AUTH: offered and accepted on a connection without TLS only from loopback addresses (or
 *   everywhere with `allowPlaintextAuth`); other clients do not see AUTH in EHLO until after
 *   STARTTLS (the command is refused as unknown before), and onAuth refuses it with
 *   538 5.7.11 should it get there. The session's identity is `name@domain`.
 * - Recipients: an address in a local domain must name an account (550 5.1.1; `postmaster`
 *   of any local domain, and the bare `postmaster`, fall back to postmaster of the default
 *   domain). Any other domain is relaying: refused with 550 5.7.1 unless the session is
 *   authenticated (submission); then the whole transaction, local recipients included, is
 *   committed to the outbound queue before 250.
 * - Storage limits (MaxAccountSize): 452 4.2.2 at RCPT when the account is full or the size
 *   declared with MAIL FROM SIZE= does not fit; 552 5.2.2 at the end of DATA when the message
 *   does not fit some recipient (nobody gets it then). Size over SIZE: 552 5.3.4.
 * - Delivery: each local recipient (once per account) gets its own copy with a `Received:`
 *   field naming it (`for <rcpt>`); `LocalDelivery` adds `Return-Path:` and stores it. The
 *   250 is sent only after every copy is committed. Copies are stored one after another; if
 *   one fails the answer is 451 4.3.0 and no further copy is stored. The recipients stored
 *   before the failure keep theirs, and get it again when the client retries: after DATA,
 *   SMTP has a single reply for the whole transaction (only LMTP answers per recipient).
 *   `LocalDelivery` runs each recipient's Mail Rules; a rule's "Reject with" is the reply
 *   (550 5.7.1) when the message has one recipient, else a failure report to the sender.
 *   NOTIFY=SUCCESS gets a "delivered" report (RFC 3461 section 4.2).
 * - Errors: after `smtpErrorsPerConnection` error replies on one connection (refused
 *   recipients, failed AUTH, ...) the server says `421 4.7.0 Too many errors` and closes it,
 *   so that one connection cannot probe recipient names without end. AUTH goes through the
 *   login guard every protocol shares (AuthService): refused past the address's budget with
 *   454 4.7.0.
 */
export class SmtpListener {
  private readonly smtp: Server;
  private readonly delivery: LocalDelivery;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly allowPlaintextAuth: boolean;
  private readonly resolver: DnsResolver;
  private readonly dnsTimeoutMs: number | undefined;
  /** Server-wide disabled commands (a session's own list replaces this one, so it repeats it). */
  private readonly disabled: string[];
  private readonly inflight = new Set<Promise<void>>();
  /** What each accepted RCPT resolved to (smtp-server puts these address objects in the envelope). */
  private readonly accepted = new WeakMap<SMTPServerAddress, Recipient>();
  /** Connections counted as not logged in, by session id (released by AUTH or the close). */
  private readonly admissions = new Map<string, Admission>();
  private listening = false;
  private shuttingDown = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly services: SmtpServices,
    options: SmtpListenerOptions = {},
  ) {
    this.delivery = services.delivery;
    this.log = options.log ?? silentLogger;
    this.metrics = options.metrics;
    this.allowPlaintextAuth = options.allowPlaintextAuth ?? false;
    this.resolver = options.resolver ?? systemResolver;
    this.dnsTimeoutMs = options.dnsTimeoutMs;
    const tlsContext = services.tls;
    this.disabled = tlsContext ? [] : ['STARTTLS'];
    this.smtp = new Server({
      name: services.config.defaultDomain,
      banner: 'ximssd',
      size: services.config.limits.maxMessageBytes,
      // Over SIZE: 552 5.3.4 at the end of DATA whatever onData says (onData stops buffering).
      rejectOversized: true,
      // Postfix's default (RFC 5321 4.5.3.1.8 asks for at least 100).
      maxRecipients: 1000,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      // The library's rule (no AUTH before STARTTLS) is replaced by ours: see onConnect/onAuth.
      allowInsecureAuth: true,
      hideSTARTTLS: !tlsContext,
      disabledCommands: this.disabled,
      hideENHANCEDSTATUSCODES: false,
      // Not offered: addresses and headers are ASCII here (RFC 6531 is not implemented).
      hideSMTPUTF8: true,
      // RFC 3461: NOTIFY/ORCPT/RET/ENVID are kept with queued messages and passed on.
      hideDSN: false,
      hideREQUIRETLS: true,
      // Received: names the client by its IP address only; no DNS on the delivery path.
      disableReverseLookup: true,
      logger: false,
      socketTimeout: options.socketTimeoutMs ?? 5 * 60_000,
      closeTimeout: 10_000,
      // Our certificate for every server name (the library's built-in test key is never used).
      SNICallback: tlsContext ? (_name, callback) => callback(null, tlsContext) : undefined,
      onConnect: (session, callback) => {
        // Counted against the client's address like every connection that has not logged in.
        // (A refusal is logged, rate-limited, by the limiter as a limit.* event.)
        const admission = services.connections.admit(session.remoteAddress, 'smtp');
        if (typeof admission === 'string') return callback(smtpError(421, `4.7.0 ${admission}`));
        this.metrics?.smtpConnections.inc();
        this.log.info({ event: 'smtp.connect', session: session.id, address: session.remoteAddress }, 'connection');
        this.admissions.set(session.id, admission);
        if (!this.authAllowedInPlainText(session.remoteAddress)) session.disabledCommands = ['AUTH', ...this.disabled];
        callback();
      },
      onClose: (session) => this.release(session),
      onSecure: (_socket, session, callback) => {
        session.disabledCommands = undefined;
        callback();
      },
      onAuth: (auth, session, callback) => this.onAuth(auth, session, callback),
      onMailFrom: (_address, _session, callback) => {
        callback(this.shuttingDown ? smtpError(421, '4.3.2 Service shutting down') : null);
      },
      onRcptTo: (address, session, callback) => {
        this.checkRecipient(address, session).then(
          (recipient) => {
            this.accepted.set(address, recipient);
            callback();
          },
          (err: unknown) => {
            const reply = this.asSmtpError(err, 'RCPT');
            const code = (reply as Partial<SmtpError>).responseCode ?? 451;
            this.metrics?.smtpRecipients.inc({ code: String(code) });
            this.log.info(
              { event: 'smtp.rcpt_refused', session: session.id, address: session.remoteAddress, sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', recipient: address.address, reply: `${code} ${reply.message}` },
              'recipient refused',
            );
            callback(reply);
          },
        );
      },
      onData: (stream, session, callback) => this.onData(stream, session, callback),
    });
    this.smtp.errorLimit = services.config.limits.smtpErrorsPerConnection;
    if (tlsContext) this.smtp.secureContext.set('*', tlsContext);
    this.smtp.on('error', (err: Error & { code?: string }) => {
      if (this.listening && !QUIET_ERRORS.has(err.code ?? '')) this.log.error({ event: 'smtp.error', error: err.message }, 'listener error');
    });
  }

  /** Whether the listener accepts connections (/readyz). */
  get isListening(): boolean {
    return this.listening && this.smtp.server.listening;
  }

  /** Starts listening; resolves with the bound port (useful when 0 was asked for). */
  async start(port: number, host: string): Promise<number> {
    const server = this.smtp.server;
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => reject(err);
      server.once('error', fail);
      this.smtp.listen(port, host, () => {
        server.off('error', fail);
        resolve();
      });
    });
    this.listening = true;
    return (server.address() as AddressInfo).port;
  }

  /**
   * Stops accepting connections and new transactions (MAIL answers 421), waits for the
   * deliveries under way to be committed and answered, then says 421 to the connections left.
   */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      this.shuttingDown = true;
      const stopped = new Promise<void>((resolve) => this.smtp.close(() => resolve()));
      await this.drain();
      for (const connection of [...this.smtp.connections]) connection.send(421, '4.3.2 Service shutting down');
      await this.drain();
      // Sockets still half-open are destroyed by the library within seconds; do not wait for them.
      await Promise.race([stopped, new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]);
      this.listening = false;
    })());
  }

  private async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  private release(session: SMTPServerSession): void {
    this.admissions.get(session.id)?.release();
    this.admissions.delete(session.id);
  }

  private authAllowedInPlainText(remoteAddress: string): boolean {
    return this.allowPlaintextAuth || isLoopback(remoteAddress);
  }

  // -------------------------------------------------------------------------------------
  // AUTH

  private onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void {
    if (!session.secure && !this.authAllowedInPlainText(session.remoteAddress)) {
      callback(smtpError(538, '5.7.11 Encryption required for requested authentication mechanism'));
      return;
    }
    if ((auth.method !== 'PLAIN' && auth.method !== 'LOGIN') || !auth.username || typeof auth.password !== 'string') {
      callback(smtpError(535, '5.7.8 Authentication credentials invalid'));
      return;
    }
    const { username, password } = auth;
    const authzid = auth.method === 'PLAIN' && auth.authcid && auth.authzid ? auth.authzid : undefined;
    (async () => {
      const mechanism = auth.method === 'PLAIN' ? 'plain' : 'login';
      const result = await this.services.auth.checkPassword(username, password, undefined, session.remoteAddress, 'smtp', mechanism);
      const account = result.account;
      if (authzid !== undefined) {
        // PLAIN with an authorization identity: only one's own.
        const target = await this.services.accounts.find(authzid);
        if (!target || target.id !== account.id) throw smtpError(535, '5.7.8 Authorization identity differs from the authenticated one');
      }
      return fullName(account);
    })().then(
      (user) => {
        this.release(session);
        callback(null, { user });
      },
      (err: unknown) => {
        if (err instanceof ServiceError) {
          callback(err.message === BAD_CREDENTIALS ? smtpError(535, '5.7.8 Authentication credentials invalid') : smtpError(454, `4.7.0 ${err.message}`));
        } else callback(this.asSmtpError(err, 'AUTH'));
      },
    );
  }

  // -------------------------------------------------------------------------------------
  // Recipients

  /** Resolves a RCPT address; throws the SMTP error when it is refused. */
  private async checkRecipient(address: SMTPServerAddress, session: SMTPServerSession): Promise<Recipient> {
    if (this.shuttingDown) throw smtpError(421, '4.3.2 Service shutting down');
    const recipient = await resolveRecipient(this.services.accounts, address.address);
    switch (recipient.kind) {
      case 'remote':
        if (!session.user) throw smtpError(550, `5.7.1 <${address.address}>: Relay access denied`);
        break;
      case 'unknown':
        throw smtpError(550, `5.1.1 <${address.address}>: Recipient address rejected: no such user here`);
      case 'local': {
        const room = await this.services.mail.room(recipient.account);
        if (room === undefined) break;
        const from = session.envelope.mailFrom;
        const declared = from && from.args && typeof from.args.SIZE === 'string' ? Number(from.args.SIZE) : 0;
        if (room <= 0 || declared > room) throw smtpError(452, `4.2.2 <${address.address}>: Mailbox full: the account storage limit is reached`);
      }
    }
    return recipient;
  }

  // -------------------------------------------------------------------------------------
  // DATA

  private onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      if (stream.sizeExceeded) chunks.length = 0;
      else chunks.push(chunk);
    });
    // The client went away in the middle of the message: nothing is delivered, nobody to answer.
    stream.on('error', () => {});
    stream.once('end', () => {
      if (stream.sizeExceeded) {
        callback(smtpError(552, `5.3.4 Message size exceeds fixed maximum message size ${this.services.config.limits.maxMessageBytes}`));
        return;
      }
      const from = session.envelope.mailFrom;
      const transaction: Transaction = {
        id: `${session.id}.${session.transaction}`,
        sender: from ? from.address : '',
        recipients: session.envelope.rcptTo.map((r) => ({
          address: r.address,
          notify: dsnNotify(r.dsn?.notify),
          orcpt: decodeXtext(r.dsn?.orcpt),
          target: this.accepted.get(r),
        })),
        ret: session.envelope.dsn?.ret === 'FULL' ? 'FULL' : session.envelope.dsn?.ret === 'HDRS' ? 'HDRS' : undefined,
        envid: session.envelope.dsn?.envid || undefined,
        authenticated: Boolean(session.user),
        signAs: session.user ? String(session.user).slice(String(session.user).lastIndexOf('@') + 1) || undefined : undefined,
        remoteAddress: session.remoteAddress,
        helo: session.hostNameAppearsAs || '',
        protocol: session.transmissionType || 'SMTP',
      };
      const raw = Buffer.concat(chunks);
      const logged = {
        session: session.id,
        id: transaction.id,
        address: transaction.remoteAddress,
        sender: transaction.sender,
        recipients: transaction.recipients.map((r) => r.address),
        size: raw.length,
        ...(session.user ? { user: String(session.user) } : {}),
      };
      const work = (async () => {
        const prepared = await this.prepare(raw, transaction);
        return { ...(await this.deliver(prepared.raw, transaction)), auth: prepared.auth };
      })().then(
        ({ text, queueId, auth }) => {
          this.metrics?.smtpMessages.inc({ outcome: 'accepted' });
          this.log.info({ event: 'smtp.accepted', ...logged, ...(queueId !== undefined ? { queueId } : {}), ...auth }, 'message accepted');
          callback(null, text);
        },
        (err: unknown) => {
          const reply = this.asSmtpError(err, `DATA ${transaction.id}`);
          this.metrics?.smtpMessages.inc({ outcome: 'refused' });
          this.log.info({ event: 'smtp.refused', ...logged, reply: `${(reply as Partial<SmtpError>).responseCode ?? 451} ${reply.message}` }, 'message refused');
          callback(reply);
        },
      );
      this.inflight.add(work);
      void work.finally(() => this.inflight.delete(work));
    });
  }

  /**
   * What the server adds to a message before delivering or queueing it (README "Mail
   * authentication"); the message's own bytes are kept, but for `Authentication-Results`
   * fields that claim to be this server's (RFC 8601 section 5), which are removed:
   *
   * - submission (an authenticated session): Date and Message-ID when missing;
   * - mail from other servers: `Received-SPF` and `Authentication-Results` with the SPF,
   *   DKIM and DMARC results (inbound.authenticationChecks). A failure of the checks
   *   themselves (DNS) is a `temperror` result, never a refusal.
   */
  private async prepare(received: Buffer, t: Transaction): Promise<{ raw: Buffer; auth?: AuthSummary }> {
    const { defaultDomain, inbound } = this.services.config;
    if (t.authenticated) return { raw: addDateAndMessageId(removeForgedResults(received, defaultDomain).raw, defaultDomain).raw };
    if (!inbound.authenticationChecks) return { raw: removeForgedResults(received, defaultDomain).raw };
    const result = await checkInbound(received, {
      ip: t.remoteAddress,
      helo: t.helo,
      sender: t.sender,
      authservId: defaultDomain,
      resolver: this.resolver,
      ...(this.dnsTimeoutMs !== undefined ? { queryTimeoutMs: this.dnsTimeoutMs } : {}),
    });
    const auth = { spf: result.spf, dkim: result.dkim, dmarc: result.dmarc };
    const fields = { event: 'smtp.authenticated', id: t.id, address: t.remoteAddress, sender: t.sender, ...auth, ...(result.removed ? { forgedResultsRemoved: result.removed } : {}) };
    if (result.error !== undefined) this.log.warn({ ...fields, error: result.error }, 'authentication checks failed');
    else this.log.info(fields, 'authentication checked');
    return { raw: Buffer.concat([result.fields, result.raw]), auth };
  }

  /** Delivers a received message to its recipients; resolves with the 250 text (and the queue id when queued). */
  private async deliver(raw: Buffer, t: Transaction): Promise<{ text: string; queueId?: number }> {
    const { queue } = this.services;
    if (t.recipients.some((r) => r.target?.kind === 'remote')) {
      // Submission (accepted at RCPT for an authenticated session): the whole transaction
      // goes through the queue, local recipients included, so that 250 means "queued" for
      // everyone and a client retry after a failure duplicates nothing.
      const queueId = await queue.submit({
        sender: t.sender,
        // The bare `postmaster` (RFC 5321 4.1.1.3) is the default domain's.
        recipients: t.recipients.map(({ address, notify, orcpt }) => ({
          address: address.includes('@') ? address : `${address}@${this.services.config.defaultDomain}`,
          notify,
          orcpt,
        })),
        raw: Buffer.concat([this.receivedField(t), raw]),
        ret: t.ret,
        envid: t.envid,
        source: t.authenticated ? 'authenticated' : 'remote',
        signAs: t.signAs,
      });
      return { text: `Ok: queued as ${t.id}`, queueId };
    }
    const copies: { recipient: Transaction['recipients'][number]; account: AccountRecord }[] = [];
    for (const r of t.recipients) {
      if (r.target?.kind !== 'local') throw new Error(`<${r.address}> was not resolved at RCPT`);
      const account = r.target.account;
      if (!copies.some((c) => c.account.id === account.id)) copies.push({ recipient: r, account });
    }
    const fields = copies.map((c) => this.receivedField(t, c.recipient.address));
    // The message must fit every recipient's storage limit, or nobody gets it. (One
    // recipient's limit is checked where the copy is stored: a StorageLimitError, 552 below.)
    if (copies.length > 1) {
      const overhead = LocalDelivery.overhead({ sender: t.sender });
      for (const [i, c] of copies.entries()) {
        const room = await this.services.mail.room(c.account);
        if (room !== undefined && fields[i]!.length + raw.length + overhead > room) throw storageLimit(c.recipient.address);
      }
    }
    let delivered = 0;
    const reports: DsnRecipient[] = [];
    for (const [i, c] of copies.entries()) {
      const address = c.recipient.address;
      let outcome;
      try {
        outcome = await this.delivery.deliver(Buffer.concat([fields[i]!, raw]), {
          sender: t.sender,
          recipient: address,
          account: c.account,
          authenticated: t.authenticated,
          remoteAddress: t.remoteAddress,
        });
      } catch (err) {
        if (err instanceof StorageLimitError && delivered === 0) throw storageLimit(address);
        this.log.error({ event: 'smtp.delivery_failed', id: t.id, recipient: address, storedBefore: delivered, copies: copies.length, err }, 'local delivery failed');
        throw smtpError(451, '4.3.0 Local delivery failed; try again later');
      }
      const report = { address, orcpt: c.recipient.orcpt ?? null, remoteMta: null, lastAttempt: Date.now() };
      if (outcome.rejected !== undefined) {
        const text = outcome.rejected.replace(/\s+/g, ' ').trim();
        // A rule refused it ("Reject with"): the only recipient's refusal is the reply;
        // with several recipients, SMTP has one reply for all, so this one is reported.
        if (copies.length === 1) throw smtpError(550, `5.7.1 ${text || 'Message rejected by the recipient'}`);
        if (c.recipient.notify?.failure !== false) reports.push({ ...report, action: 'failed', status: '5.7.1', diagnostic: `smtp; 550 5.7.1 ${text}` });
      } else if (c.recipient.notify?.success) {
        reports.push({ ...report, action: 'delivered', status: '2.0.0', diagnostic: null });
      }
      delivered++;
    }
    if (reports.length > 0 && t.sender !== '') await this.reportToSender(t, raw, reports);
    return { text: `Ok: delivered to ${delivered} mailbox${delivered === 1 ? '' : 'es'} as ${t.id}` };
  }

  /** Queues a delivery report (RFC 3464) about a message delivered here, for its sender. */
  private async reportToSender(t: Transaction, raw: Buffer, recipients: DsnRecipient[]): Promise<void> {
    const hostName = this.services.config.defaultDomain;
    const report = deliveryStatusNotification(hostName, { sender: t.sender, raw, envid: t.envid ?? null, ret: t.ret ?? null, arrival: Date.now() }, recipients);
    // From MAILER-DAEMON of the default domain: the server's own, which it signs for.
    await this.services.queue.submit({ sender: '', recipients: [t.sender], raw: report, source: 'authenticated', signAs: hostName });
  }

  /** The RFC 5321 section 4.4 trace field (CRLF-terminated), naming the recipient of a single copy. */
  private receivedField(t: Transaction, recipient?: string): Buffer {
    const literal = isIP(t.remoteAddress) === 6 ? `[IPv6:${t.remoteAddress}]` : `[${t.remoteAddress}]`;
    const text =
      `Received: from ${t.helo || literal} (${literal})\r\n` +
      `\tby ${this.services.config.defaultDomain} with ${t.protocol} id ${t.id}\r\n` +
      (recipient ? `\tfor <${recipient}>; ` : '\t; ') + `${rfcDateInZone(new Date(), 'HostOS')}\r\n`;
    return Buffer.from(text, 'utf8');
  }

  /** An SMTP reply for a handler's failure: SMTP errors as they are, anything else logged and 451. */
  private asSmtpError(err: unknown, what: string): Error {
    if (err instanceof Error && 'responseCode' in err && typeof err.responseCode === 'number') return err;
    this.log.error({ event: 'smtp.error', during: what, err }, 'processing failed');
    return smtpError(451, '4.3.0 Local error in processing');
  }
}

/** An RFC 3461 xtext value (ORCPT) decoded: `+2B` is `+`; kept decoded, encoded again when passed on. */
function decodeXtext(value: string | undefined): string | undefined {
  return value?.replace(/\+([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** RFC 3461 NOTIFY values of a RCPT as the queue takes them (undefined: the default, failures). */
function dsnNotify(values: readonly string[] | undefined): DsnNotify | undefined {
  if (!values || values.length === 0) return undefined;
  return { success: values.includes('SUCCESS'), failure: values.includes('FAILURE'), delay: values.includes('DELAY') };
}

function storageLimit(address: string): SmtpError {
  return smtpError(552, `5.2.2 <${address}>: Mailbox full: the message exceeds the account storage limit`);
}
