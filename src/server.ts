import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { bootstrapStore } from './bootstrap.js';
import type { Config } from './config.js';
import { AccountService } from './services/accounts.js';
import { AlertService } from './services/alerts.js';
import { HttpCallService } from './services/http-call.js';
import { MailService } from './services/mail/service.js';
import { CalendarService } from './services/calendar/service.js';
import { ContactService } from './services/contacts/service.js';
import { ImService } from './services/im/service.js';
import { MucService } from './services/im/muc.js';
import { RayoService } from './transports/xmpp/rayo/service.js';
import { AppService } from './services/apps/service.js';
import { BUILT_IN_APPLICATIONS } from './services/apps/loader.js';
import { FileStorageRecordings } from './transports/xmpp/rayo/record.js';
import { PromptRenderer } from './media/prompts.js';
import { TextToSpeech } from './media/tts.js';
import { CallService } from './services/calls/service.js';
import { ringBoundSessions } from './ximss/call-leg.js';
import { MediaGateway } from './media/gateway.js';
import { sharedFrameClock } from './media/frame-clock.js';
import { XmppListener } from './transports/xmpp/listener.js';
import { XmppSessions } from './transports/xmpp/session.js';
import { S2sService } from './transports/xmpp/s2s.js';
import { startSipCalls } from './transports/sip/b2bua.js';
import { SipService } from './transports/sip/service.js';
import { FileService } from './services/files/service.js';
import { DatasetService, DEFAULT_DATASET_LIMITS } from './services/datasets.js';
import { AccountRightsService } from './services/account-rights.js';
import { BillingService } from './services/billing.js';
import { CliService } from './services/cli/interpreter.js';
import { DirectoryService } from './services/directory.js';
import { PasswordRecovery } from './services/password-recovery.js';
import { RuleService } from './services/rules/service.js';
import { SmtpListener } from './transports/smtp/inbound.js';
import type { DnsResolver } from './services/mail-auth.js';
import { LocalDelivery } from './transports/smtp/local-delivery.js';
import { MailQueue } from './transports/smtp/queue.js';
import { AuthService, type AuthOptions } from './services/auth.js';
import { EventBus } from './bus/bus.js';
import { ConnectionLimiter } from './services/connections.js';
import { SharedGuardState } from './services/login-guard.js';
import { privateDirectory } from './store/modes.js';
import { openStore, StoreLockedError, storeWhere } from './store/open.js';
import type { Store } from './store/store.js';
import { ClusterNode } from './services/cluster.js';
import { loadTlsContext } from './tls.js';
import { Readiness } from './ximss/bindings/health.js';
import { HttpListener } from './ximss/bindings/http.js';
import { TcpListener } from './ximss/bindings/tcp.js';
import { Engine } from './ximss/engine.js';
import { PROTOCOL_VERSION } from './ximss/protocol.js';
import { NonceRegistry } from './ximss/nonces.js';
import { registerOperations } from './ximss/ops/index.js';
import type { XimssServices } from './ximss/services.js';
import { SessionManager } from './ximss/sessions.js';
import { UploadSpool } from './ximss/uploads.js';
import { Vocabulary } from './ximss/vocabulary.js';
import { loadSecretBox } from './services/secret-box.js';
import { RemoteSipService } from './services/remote-sip/records.js';
import { RemoteSipAgent } from './services/remote-sip/agent.js';
import { RemoteMailService } from './services/remote-mail/service.js';
import { SkinService } from './services/skins.js';
import { SERVER_VERSION } from './version.js';
import { createLogger, errorText, type Logger } from './log.js';
import { instrumentStore, Metrics } from './metrics.js';

const RESOURCES = fileURLToPath(new URL('../resources/', import.meta.url));

/** A listener that could not be bound: which one, where, and why (EADDRINUSE, EACCES…). */
export class ListenError extends Error {
  constructor(
    readonly listener: string,
    readonly host: string,
    readonly port: number,
    cause: unknown,
  ) {
    const code = (cause as { code?: string }).code;
    const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : errorText(cause);
    super(`cannot listen for ${listener} on ${host}:${port}: ${why}`);
  }
}

/** The store could not be opened (PostgreSQL unreachable, the SQLite file unwritable…). */
export class StoreOpenError extends Error {}

export interface RunningServer {
  readonly services: XimssServices;
  /** The ports actually bound (useful when 0 was asked for). */
  readonly ports: { ximss: number; ximssTls?: number; http: number; https?: number; smtp?: number; xmpp?: number; xmppTls?: number; xmppS2s?: number; sip?: number; sipTls?: number };
  /** Stops: listeners close, sessions end (bye), the queue stops, the store closes. */
  close(): Promise<void>;
  /**
   * Stops on a signal, within `seconds` (default config.shutdownSeconds): close(), and past
   * that bound the connections still open are dropped (logged as server.stop_forced) and it
   * resolves anyway, for the process to exit. Called again with 0, it stops waiting at once.
   */
  shutdown(signal: string, seconds?: number): Promise<{ forced: boolean }>;
}

/** What a caller may plug in besides the configuration. */
export interface ServerOptions {
  /** The structured log (default: JSON lines on standard output at config.log.level). */
  log?: Logger;
  /** The tests: an observable password verifier. */
  auth?: AuthOptions;
  /**
   * Told the postmaster password generated on an empty store, once the listeners are up
   * (default: printed on standard error, never logged).
   */
  announcePassword?: (domain: string, password: string) => void;
  /** DNS for the SPF/DKIM/DMARC checks of received mail (default: node:dns/promises `resolve`); tests pass a stub. */
  dnsResolver?: DnsResolver;
  /** The time limit of one of those DNS queries, ms (default 5000). */
  dnsTimeoutMs?: number;
  /** DNS for finding other domains' SIP servers (NAPTR, SRV, A/AAAA; default: dnsResolver, else the system's); tests pass a stub. */
  sipResolver?: DnsResolver;
  /** DNS for finding other XMPP servers (SRV _xmpp-server._tcp, A/AAAA; default: dnsResolver, else the system's); tests pass a stub. */
  xmppResolver?: DnsResolver;
}

function printPassword(domain: string, password: string): void {
  process.stderr.write(
    `created domain ${domain} and account postmaster@${domain}\n` +
      `postmaster password: ${password}   (shown once; change it with \`ximssd account passwd\`)\n`,
  );
}

/** The composition root: builds the store, services and listeners of one server process. */
export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger({ level: config.log.level });
  let store: Store;
  try {
    store = await openStore(config.store || undefined, config.dataDir, { serve: true });
  } catch (err) {
    if (err instanceof StoreLockedError) throw err;
    throw new StoreOpenError(`cannot open the store in ${storeWhere(config.store || undefined, config.dataDir)}: ${errorText(err)}`, { cause: err });
  }
  try {
    return await startOn(store, config, log, options);
  } catch (err) {
    await store.close();
    throw err;
  }
}

async function startOn(rawStore: Store, config: Config, log: Logger, options: ServerOptions): Promise<RunningServer> {
  // What has been started so far, undone in reverse order when the start fails half way (a
  // port in use, a store error while bootstrapping): nothing is left running behind the error.
  const undo: (() => unknown)[] = [];
  try {
    return await build(rawStore, config, log, options, undo);
  } catch (err) {
    for (const step of undo.reverse()) await Promise.resolve().then(step).catch(() => {});
    throw err;
  }
}

async function build(rawStore: Store, config: Config, log: Logger, options: ServerOptions, undo: (() => unknown)[]): Promise<RunningServer> {
  const metrics = new Metrics();
  const store = instrumentStore(rawStore, metrics);
  const bus = new EventBus(store.relay, log.child({ component: 'bus' }));
  await bus.listen();
  undo.push(() => bus.close());
  const node = new ClusterNode(store, config, log.child({ component: 'cluster' }));
  const accounts = new AccountService(store, bus, config.defaultDomain, log.child({ component: 'accounts' }));
  const alerts = new AlertService(store, bus);
  let tlsContext: SecureContext | undefined;
  try {
    tlsContext = await loadTlsContext(config);
  } catch (err) {
    log.error({ component: 'server', event: 'tls.unavailable', error: errorText(err) }, 'TLS is unavailable');
  }
  const mail = new MailService(store, accounts, bus, log.child({ component: 'mail' }));
  undo.push(() => mail.close());
  const rules = new RuleService(store, accounts, bus);
  undo.push(() => rules.close());
  const accountRights = new AccountRightsService(store, accounts, bus, log.child({ component: 'accounts' }));
  const files = new FileService(store, accounts, bus, log.child({ component: 'files' }), accountRights);
  undo.push(() => files.close());
  const contacts = new ContactService(mail, { hostname: config.defaultDomain || hostname(), log: log.child({ component: 'contacts' }) });
  const datasets = new DatasetService(store, accounts, DEFAULT_DATASET_LIMITS, accountRights);
  const directory = new DirectoryService(store, accounts, accountRights, log.child({ component: 'accounts' }));
  const queue = new MailQueue({ store, accounts, config, log: log.child({ component: 'queue' }), metrics, node: node.id, bus });
  const calendars = new CalendarService(mail, store.calendarIndex, {
    hostname: config.defaultDomain || hostname(),
    log: log.child({ component: 'calendar' }),
    accounts,
    rights: accountRights,
    metrics,
    // Scheduling messages go through the queue like any mail a user sends (it delivers local ones too).
    send: async (m) => {
      await queue.submit({ sender: m.sender, recipients: m.recipients, raw: m.raw, source: 'authenticated', signAs: m.signAs });
    },
  });
  // The queue's size, read at scrape time: one query serves both gauges of a scrape (the
  // registry collects them concurrently).
  let queueStats: ReturnType<Store['queue']['stats']> | undefined;
  const readQueueStats = (): ReturnType<Store['queue']['stats']> => {
    if (!queueStats) {
      queueStats = store.queue.stats();
      void queueStats.finally(() => (queueStats = undefined)).catch(() => {});
    }
    return queueStats;
  };
  metrics.gauge('ximssd_queue_messages', 'Messages in the outbound queue', [], async (set) => set({}, (await readQueueStats()).messages));
  metrics.gauge('ximssd_queue_recipients_pending', 'Recipients in the outbound queue still to be delivered', [], async (set) => set({}, (await readQueueStats()).pendingRecipients));
  const delivery = new LocalDelivery({
    mail,
    rules,
    datasets,
    accounts,
    submitter: queue,
    hostName: config.defaultDomain,
    log: log.child({ component: 'delivery' }),
    delivered: (account, raw) => calendars.deliveredTo(account, raw),
  });
  // Uploaded files do not outlive the process: the spool starts empty (the data directory is
  // this process's alone: see openStore).
  privateDirectory(join(config.dataDir, 'spool'));
  const uploads = await UploadSpool.open(join(config.dataDir, 'spool', 'uploads'), {
    fileBytes: config.limits.maxMessageBytes,
    sessionBytes: config.limits.uploadBytesPerSession,
    accountBytes: config.limits.uploadBytesPerAccount,
    totalBytes: config.limits.uploadBytesTotal,
  }, log.child({ component: 'ximss' }));
  undo.push(() => uploads.close());
  const im = new ImService(store, bus, accounts, node.id, log.child({ component: 'im' }), config.im, metrics);
  const calls = new CallService({ store, bus, im, accounts, datasets, rules: rules.active }, node.id, log.child({ component: 'calls' }), config.calls, metrics);
  ringBoundSessions(calls, im);
  const media = startMediaGateway(config, log.child({ component: 'media' }), metrics);
  calls.useMedia(media, config.media.relay, config.media.sessionsPerAccount);
  undo.push(() => media.close());
  const muc = new MucService(im, store, bus, node.id, log.child({ component: 'muc' }), { subdomain: config.im.mucSubdomain, roomsPerService: config.im.mucRoomsPerService, occupantsPerRoom: config.im.mucOccupantsPerRoom, history: config.im.mucHistory }, metrics);
  im.components.push(muc);
  // Rayo (XEP-0327): call.<domain> and mixer.<domain>, and availability and dial at the domain itself.
  const prompts = new PromptRenderer({ tts: new TextToSpeech({ cacheBytes: 32 * 1024 * 1024 }), fetchPrivate: config.media.promptFetch === 'any' });
  // Rayo recordings: spooled in <data>/spool/recordings, stored in the account's File Storage, fetched over WebDAV.
  const recordings = await FileStorageRecordings.open(files, accounts, join(config.dataDir, 'spool', 'recordings'), () => config.publicUrl || `http://${config.defaultDomain}:${httpPort}`);
  const rayo = new RayoService(im, accounts, calls, log.child({ component: 'rayo' }), { bus, store, openMedia: (id) => media.openEndpoint(`rayo-${id}`), renderer: prompts, recordings, callsPerAccount: config.calls.rayoCallsPerAccount });
  im.components.push(rayo);
  im.domainServices.push(rayo);
  // Real-time applications: the built-in programs (src/apps/) and the operator's (apps.directory).
  const apps = new AppService(
    {
      meetings: store.meetings,
      shared: store.shared,
      bus,
      accounts,
      calls,
      openMedia: (id) => media.openEndpoint(id),
      renderer: prompts,
      node: node.id,
      isAlive: async (id) => (await node.peer(id)) !== undefined,
      log: log.child({ component: 'apps' }),
      metrics,
      // A message an application delivers (voicemail) is local mail to the account, through its Mail
      // Rules; not authenticated (its From is what a caller claimed).
      deliver: async (account, raw, sender) => {
        await delivery.deliver(raw, { account, sender, recipient: `${account.name}@${account.domain}`, authenticated: false, remoteAddress: '' });
      },
    },
    {
      directories: [BUILT_IN_APPLICATIONS, ...(config.apps.directory === '' ? [] : [config.apps.directory])],
      tasksPerAccount: config.apps.tasksPerAccount,
      tasksPerNode: config.apps.tasksPerNode,
      meetings: { lifetimeSeconds: config.apps.meetingDays * 86_400, perAccount: config.apps.meetingsPerAccount },
    },
  );
  await apps.start();
  node.gone.push((id) => apps.nodeGone(id));
  undo.push(() => apps.close());
  // SIP: on with either of its ports (WebSocket on the HTTP listeners' /sip rides along).
  const sipTls = config.ports.sipTls > 0 && tlsContext !== undefined;
  const sip =
    config.ports.sip || sipTls
      ? new SipService({
          host: config.host,
          publicHost: config.sip.publicHost,
          tls: tlsContext,
          limits: {
            connections: config.sip.connections,
            connectionsPerAddress: config.sip.connectionsPerAddress,
            idleSeconds: config.sip.idleSeconds,
            outputBytes: config.sip.outputBytes,
          },
          isLocalDomain: (domain) => im.isLocalDomain(domain),
          log,
          metrics,
        })
      : undefined;
  let httpPort = config.ports.http;
  // Seals what the server must use again in clear (TOTP secrets, remote passwords).
  const secrets = loadSecretBox(config.secrets.keyFile || join(config.dataDir, 'secret.key'));
  const remoteMail = new RemoteMailService({ store, bus, accounts, secrets, config: config.remoteMail, node: node.id, hostName: config.defaultDomain || hostname(), log: log.child({ component: 'remoteMail' }), metrics, tls: remoteMailTls(config) });
  const passwordRecovery = new PasswordRecovery(store, accounts, queue, config.defaultDomain, () => config.publicUrl || `http://${config.defaultDomain}:${httpPort}`, bus);
  const remoteSip = new RemoteSipService(store, bus, accounts, secrets, config.remoteSip, log.child({ component: 'remote-sip' }));
  const billing = new BillingService(store, accounts, accountRights, config.billing, log.child({ component: 'billing' }));
  const services: XimssServices = {
    config,
    store,
    bus,
    accounts,
    // Login budgets: in memory for a single server; in the store, shared by every node, on PostgreSQL.
    auth: new AuthService(accounts, store, config.limits, config.defaultDomain, {
      log: log.child({ component: 'auth' }),
      metrics,
      secrets,
      security: config.auth,
      ...options.auth,
      state: options.auth?.state ?? (store.engine === 'postgres' ? new SharedGuardState(store.shared) : undefined),
    }),
    alerts,
    mail,
    rules,
    datasets,
    files,
    contacts,
    calendars,
    im,
    calls,
    apps,
    accountRights,
    billing,
    cli: new CliService({
      accounts,
      mail,
      rules,
      billing,
      limits: config.cli,
      mainDomain: config.defaultDomain,
      serverVersion: SERVER_VERSION,
      log: log.child({ component: 'cli' }),
    }),
    directory,
    httpCalls: new HttpCallService(config.fetch, config.host, log.child({ component: 'ximss' })),
    queue,
    delivery,
    passwordRecovery,
    sessions: new SessionManager(config, accounts, alerts, bus, uploads, node, { log: log.child({ component: 'ximss' }), metrics }),
    node,
    uploads,
    connections: new ConnectionLimiter(config.limits, { log: log.child({ component: 'limits' }), metrics }),
    nonces: new NonceRegistry(config.defaultDomain),
    // The built-in skin's unnamed files hold the vocabularies (resources/skins/<Language>.json).
    vocabulary: new Vocabulary(RESOURCES + 'skins'),
    secrets,
    remoteSip,
    remoteMail,
    skins: new SkinService({
      builtIn: RESOURCES + 'skins',
      server: config.skins.directory || join(config.dataDir, 'skins'),
      domains: config.skins.domainDirectory || join(config.dataDir, 'domain-skins'),
      maxFileBytes: config.skins.maxFileBytes,
      maxFiles: config.skins.maxFiles,
      log: log.child({ component: 'skins' }),
    }),
    sip,
    tls: tlsContext,
    version: PROTOCOL_VERSION,
    log,
    metrics,
  };
  // SIP registrations and calls, on the SIP listeners.
  const sipCalls = sip ? await startSipCalls({ sip, calls, im, auth: services.auth, accounts, store, bus, node: node.id, digestAlgorithms: config.sip.digestAlgorithms, trunk: config.sip.trunk, trunkCredentials: config.sip.trunkUser === '' ? undefined : { user: config.sip.trunkUser, password: config.sip.trunkPassword }, resolver: options.sipResolver ?? options.dnsResolver, log: log.child({ component: 'sip' }), metrics, sessionTimer: { expires: config.sip.sessionExpires, minSE: config.sip.minSE }, remoteContact: (user) => remoteSip.contactAccount(user) }) : undefined;
  if (sipCalls) undo.push(() => sipCalls.close());
  // The accounts' registrations with other SIP servers: this node registers those it holds the lease of.
  const remoteSipAgent = sip
    ? new RemoteSipAgent({ sip, store, bus, accounts, secrets, node: node.id, config: config.remoteSip, resolver: options.sipResolver ?? options.dnsResolver, log: log.child({ component: 'remote-sip' }), metrics })
    : undefined;
  undo.push(() => services.sessions.close());
  const engine = new Engine(services);
  registerOperations(engine);


  const tcp = new TcpListener(engine);
  const tcpTls = config.ports.ximssTls && tlsContext ? new TcpListener(engine, tlsContext) : undefined;
  const http = new HttpListener(engine, tcp);
  const https = config.ports.https && tlsContext ? new HttpListener(engine, tcp, tlsContext) : undefined;
  // XMPP clients: the ports, and WebSocket on the HTTP listeners (the same streams, the same IM service).
  const xmpp = new XmppListener({
    sessions: new XmppSessions(im),
    auth: services.auth,
    tls: tlsContext,
    config,
    isLocalDomain: (domain) => im.isLocalDomain(domain),
    log,
    metrics,
    connections: services.connections,
  });
  http.xmppUpgrade = (req, socket, head, upgrade) => xmpp.upgrade(req, socket, head, upgrade);
  if (https) https.xmppUpgrade = (req, socket, head, upgrade) => xmpp.upgrade(req, socket, head, upgrade);
  const xmppTls = config.ports.xmppTls > 0 && tlsContext !== undefined;
  if (sip && config.sip.webSocket) {
    http.sipUpgrade = (req, socket, head, upgrade) => sip.upgrade(req, socket, head, upgrade);
    if (https) https.sipUpgrade = (req, socket, head, upgrade) => sip.upgrade(req, socket, head, upgrade);
  }
  // Federation with other XMPP servers: on with its port.
  const s2s = config.ports.xmppS2s
    ? new S2sService({
        config,
        store,
        tls: tlsContext,
        resolver: options.xmppResolver ?? options.dnsResolver,
        isLocalDomain: (domain) => im.isLocalDomain(domain),
        deliver: (stanza) => im.remote.fromServer(stanza),
        bounce: (stanza, condition, text) => im.remote.bounced(stanza, condition, text),
        log,
        metrics,
      })
    : undefined;
  im.federation = s2s;
  const smtp = config.ports.smtp ? new SmtpListener(services, { log: log.child({ component: 'smtp' }), metrics, resolver: options.dnsResolver, dnsTimeoutMs: options.dnsTimeoutMs }) : undefined;
  // What /readyz reports (see health.ts): every listener up and the store answering.
  const readiness = new Readiness(() => store.domains.get(config.defaultDomain), [
    { name: 'XIMSS', listening: () => tcp.listening },
    ...(tcpTls ? [{ name: 'XIMSS/TLS', listening: () => tcpTls.listening }] : []),
    { name: 'HTTP', listening: () => http.listening },
    ...(https ? [{ name: 'HTTPS', listening: () => https.listening }] : []),
    ...(smtp ? [{ name: 'SMTP', listening: () => smtp.isListening }] : []),
    ...(config.ports.xmpp || xmppTls ? [{ name: 'XMPP', listening: () => xmpp.listening }] : []),
    ...(s2s ? [{ name: 'XMPP s2s', listening: () => s2s.listening }] : []),
    ...(sip ? [{ name: 'SIP', listening: () => sip.listening }] : []),
  ]);
  http.readiness = readiness;
  if (https) https.readiness = readiness;
  // Every listener is bound before anything else starts: a port that cannot be bound stops
  // the start with nothing done (no password generated, no delivery attempted).
  const bind = async <T>(name: string, port: number, listener: { close(): unknown }, listen: () => Promise<T>): Promise<T> => {
    try {
      const result = await listen();
      undo.push(() => listener.close());
      return result;
    } catch (err) {
      throw new ListenError(name, config.host, port, err);
    }
  };
  const ports = {
    ximss: await bind('XIMSS', config.ports.ximss, tcp, () => tcp.listen(config.ports.ximss, config.host)),
    ximssTls: tcpTls ? await bind('XIMSS/TLS', config.ports.ximssTls, tcpTls, () => tcpTls.listen(config.ports.ximssTls, config.host)) : undefined,
    http: (httpPort = await bind('HTTP', config.ports.http, http, () => http.listen(config.ports.http, config.host))),
    https: https ? await bind('HTTPS', config.ports.https, https, () => https.listen(config.ports.https, config.host)) : undefined,
    smtp: smtp ? await bind('SMTP', config.ports.smtp, smtp, () => smtp.start(config.ports.smtp, config.host)) : undefined,
    xmpp: config.ports.xmpp ? await bind('XMPP', config.ports.xmpp, xmpp, () => xmpp.listen(config.ports.xmpp, config.host)) : undefined,
    xmppTls: xmppTls ? await bind('XMPP/TLS', config.ports.xmppTls, xmpp, () => xmpp.listenTls(config.ports.xmppTls, config.host)) : undefined,
    xmppS2s: s2s ? await bind('XMPP s2s', config.ports.xmppS2s, s2s, () => s2s.listen(config.ports.xmppS2s, config.host)) : undefined,
    sip: sip && config.ports.sip ? await bind('SIP', config.ports.sip, sip, () => sip.listen(config.ports.sip)) : undefined,
    sipTls: sip && sipTls ? await bind('SIP/TLS', config.ports.sipTls, sip, () => sip.listenTls(config.ports.sipTls)) : undefined,
  };
  // retrieveXML and httpCall never reach these on this machine unless fetch.allow names them.
  services.httpCalls.setOwnPorts(Object.values(ports));
  const generated = await bootstrapStore(store, accounts);
  // domain.created and account.created are logged by the accounts service.
  if (generated) (options.announcePassword ?? printPassword)(config.defaultDomain, generated);
  await node.start(ports.http);
  undo.push(() => node.stop());
  await im.start();
  undo.push(() => im.close());
  undo.push(() => calls.close());
  queue.start(delivery);
  if (remoteSipAgent && ports.sip !== undefined) {
    remoteSipAgent.start();
    undo.push(() => remoteSipAgent.close());
  }
  remoteMail.start(delivery);
  undo.push(() => remoteMail.close());
  readiness.markStarted();
  log.info(
    {
      component: 'server',
      event: 'server.started',
      version: SERVER_VERSION,
      host: config.host,
      ports,
      store: store.engine,
      ...(store.engine === 'postgres' ? { node: node.id } : { dataDir: config.dataDir }),
    },
    `ximssd ${SERVER_VERSION} listening`,
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      // XMPP streams end first (system-shutdown), their resources with them; then bound XIMSS sessions.
      await xmpp.close();
      // Calls under Rayo control end with their controllers; tasks of applications stop.
      rayo.close();
      await apps.close();
      // Federation closes after the IM clients have gone: other servers see them go unavailable.
      await im.close();
      await muc.close();
      await s2s?.close();
      // SIP connections drop (clients re-register elsewhere or when it is back: RFC 5626 4.4).
      // Remote registrations are removed (Expires: 0) while SIP still runs; their leases are given up.
      await remoteSipAgent?.close();
      await sipCalls?.close();
      await sip?.close();
      services.sessions.endAll();
      calls.close();
      await Promise.all([tcp.close(), tcpTls?.close(), http.close(), https?.close(), smtp?.close()]);
      await remoteMail.close();
      await queue.close();
      // The sessions' files are being deleted; wait for that, and remove any left.
      await uploads.close();
      services.sessions.close();
      await services.mail.close();
      await node.stop().catch((err: unknown) => log.error({ component: 'cluster', event: 'cluster.leave_failed', error: errorText(err) }, 'leaving the cluster failed'));
      await bus.close();
      await store.close();
      log.info({ component: 'server', event: 'server.stopped' }, 'ximssd stopped');
    })());
  // /readyz answers 503 from the moment the server begins to stop.
  const closeServer = (): Promise<void> => {
    readiness.markClosing();
    return close();
  };

  let stopping: Promise<{ forced: boolean }> | undefined;
  let forceNow: (() => void) | undefined;
  const shutdown = (signal: string, seconds = config.shutdownSeconds): Promise<{ forced: boolean }> => {
    if (stopping) {
      if (seconds === 0) forceNow?.();
      return stopping;
    }
    log.info({ component: 'server', event: 'server.stopping', signal, shutdownSeconds: seconds }, `${signal}: stopping`);
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<'forced'>((resolve) => {
      forceNow = () => resolve('forced');
      timer = setTimeout(forceNow, seconds * 1000);
    });
    stopping = Promise.race([closeServer().then(() => 'clean' as const), bound]).then(
      (outcome) => {
        clearTimeout(timer);
        if (outcome === 'clean') return { forced: false };
        const open = tcp.connections.size + (tcpTls?.connections.size ?? 0);
        log.warn(
          { component: 'server', event: 'server.stop_forced', signal, shutdownSeconds: seconds, ximssConnections: open },
          `not stopped within ${seconds} s: dropping the connections left`,
        );
        for (const listener of [tcp, tcpTls]) for (const connection of listener?.connections ?? []) connection.destroy();
        return { forced: true };
      },
      (err: unknown) => {
        clearTimeout(timer);
        throw err;
      },
    );
    return stopping;
  };
  return { services, ports, close: closeServer, shutdown };
}

/**
 * The media gateway of this node (src/media/gateway.ts), and its numbers on /metrics. Sockets
 * are bound only when a call is anchored.
 */
function startMediaGateway(config: Config, log: Logger, metrics: Metrics): MediaGateway {
  const publicAddress = mediaAddress(config);
  const gateway = new MediaGateway({
    publicAddress,
    bindAddress: config.media.bindAddress || undefined,
    portRange: config.sip.mediaPorts,
    maxSessions: config.media.sessions,
    idleSeconds: config.media.idleSeconds,
    log,
  });
  metrics.gauge('ximssd_media_sessions', 'Calls whose media this node anchors now', [], (set) => set({}, gateway.stats().sessions));
  metrics.gauge('ximssd_media_ports', 'UDP ports the media gateway holds now', [], (set) => set({}, gateway.stats().portsInUse));
  metrics.counter('ximssd_media_packets_relayed_total', 'RTP packets the media gateway sent on', () => gateway.stats().packetsRelayed);
  metrics.counter('ximssd_media_bytes_relayed_total', 'RTP bytes the media gateway sent on', () => gateway.stats().bytesRelayed);
  metrics.counter('ximssd_media_packets_dropped_total', 'RTP packets the media gateway did not send on (strangers, malformed, held)', () => gateway.stats().packetsDropped);
  // The frame clock of the server-side media endpoints (Rayo calls): frames sent and those sent late or skipped (the bench's < 1% late frames).
  metrics.counter('ximssd_media_frames_total', 'Frames the media endpoints were ticked for (one per endpoint every 20 ms)', () => sharedFrameClock.stats().frames);
  metrics.counter('ximssd_media_late_frames_total', 'Frames ticked more than half a frame late, or skipped', () => sharedFrameClock.stats().lateFrames);
  log.info({ event: 'media.ready', publicAddress, relay: config.media.relay, ports: `${config.sip.mediaPorts.min}-${config.sip.mediaPorts.max}` }, 'media gateway ready');
  return gateway;
}

/** The TLS options of connections to remote mail servers: the CAs of remoteMail.caFile, when set. */
function remoteMailTls(config: Config): { ca: Buffer } | undefined {
  const file = config.remoteMail.caFile;
  if (file === '') return undefined;
  try {
    return { ca: readFileSync(file) };
  } catch (err) {
    throw new Error(`remoteMail.caFile: cannot read ${file}: ${errorText(err)}`, { cause: err });
  }
}

/** The address media is reached at (see config.media.publicAddress). */
function mediaAddress(config: Config): string {
  if (config.media.publicAddress) return config.media.publicAddress;
  if (isIP(config.sip.publicHost) !== 0) return config.sip.publicHost;
  if (isIP(config.host) !== 0 && config.host !== '0.0.0.0' && config.host !== '::') return config.host;
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  return '127.0.0.1';
}
