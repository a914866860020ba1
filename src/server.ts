import { join } from 'node:path';
import type { SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { bootstrapStore } from './bootstrap.js';
import type { Config } from './config.js';
import { AccountService } from './services/accounts.js';
import { AlertService } from './services/alerts.js';
import { MailService } from './services/mail/service.js';
import { DatasetService } from './services/datasets.js';
import { PasswordRecovery } from './services/password-recovery.js';
import { RuleService } from './services/rules/service.js';
import { SmtpListener } from './transports/smtp/inbound.js';
import { LocalDelivery } from './transports/smtp/local-delivery.js';
import { MailQueue } from './transports/smtp/queue.js';
import { AuthService, type AuthOptions } from './services/auth.js';
import { EventBus } from './bus/bus.js';
import { ConnectionLimiter } from './services/connections.js';
import { SharedGuardState } from './services/login-guard.js';
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';
import { ClusterNode } from './services/cluster.js';
import { loadTlsContext } from './tls.js';
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
import { SERVER_VERSION } from './version.js';

const RESOURCES = fileURLToPath(new URL('../resources/', import.meta.url));

export interface RunningServer {
  readonly services: XimssServices;
  /** The ports actually bound (useful when 0 was asked for). */
  readonly ports: { ximss: number; ximssTls?: number; http: number; https?: number; smtp?: number };
  close(): Promise<void>;
}

/** What a caller may plug in besides the configuration (the tests: an observable password verifier). */
export interface ServerOptions {
  auth?: AuthOptions;
}

/** The composition root: builds the store, services and listeners of one server process. */
export async function startServer(config: Config, log: (line: string) => void = console.log, options: ServerOptions = {}): Promise<RunningServer> {
  const store = await openStore(config.store || undefined, config.dataDir, { serve: true });
  try {
    return await startOn(store, config, log, options);
  } catch (err) {
    await store.close();
    throw err;
  }
}

async function startOn(store: Store, config: Config, log: (line: string) => void, options: ServerOptions): Promise<RunningServer> {
  const bus = new EventBus(store.relay, log);
  await bus.listen();
  const node = new ClusterNode(store, config, log);
  const accounts = new AccountService(store, bus, config.defaultDomain);
  const generated = await bootstrapStore(store, accounts);
  if (generated) {
    log(`created domain ${config.defaultDomain} and account postmaster@${config.defaultDomain}`);
    log(`postmaster password: ${generated}   (shown once; change it with \`ximssd account passwd\`)`);
  }
  const alerts = new AlertService(store, bus);
  let tlsContext: SecureContext | undefined;
  try {
    tlsContext = await loadTlsContext(config);
  } catch (err) {
    log(`TLS is unavailable: ${(err as Error).message}`);
  }
  const mail = new MailService(store, accounts, bus);
  const rules = new RuleService(store, accounts);
  const datasets = new DatasetService(store, accounts);
  const queue = new MailQueue({ store, accounts, config, log, node: node.id });
  const delivery = new LocalDelivery({ mail, rules, datasets, accounts, submitter: queue, hostName: config.defaultDomain, log });
  // Uploaded files do not outlive the process: the spool starts empty (the data directory is
  // this process's alone: see openStore).
  const uploads = await UploadSpool.open(join(config.dataDir, 'spool', 'uploads'), {
    fileBytes: config.limits.maxMessageBytes,
    sessionBytes: config.limits.uploadBytesPerSession,
    accountBytes: config.limits.uploadBytesPerAccount,
    totalBytes: config.limits.uploadBytesTotal,
  });
  let httpPort = config.ports.http;
  const passwordRecovery = new PasswordRecovery(store, accounts, queue, config.defaultDomain, () => config.publicUrl || `http://${config.defaultDomain}:${httpPort}`);
  const services: XimssServices = {
    config,
    store,
    bus,
    accounts,
    // Login budgets: in memory for a single server; in the store, shared by every node, on PostgreSQL.
    auth: new AuthService(accounts, store, config.limits, config.defaultDomain, {
      ...options.auth,
      state: options.auth?.state ?? (store.engine === 'postgres' ? new SharedGuardState(store.shared) : undefined),
    }),
    alerts,
    mail,
    rules,
    datasets,
    queue,
    delivery,
    passwordRecovery,
    sessions: new SessionManager(config, accounts, alerts, bus, uploads, node),
    node,
    uploads,
    connections: new ConnectionLimiter(config.limits),
    nonces: new NonceRegistry(config.defaultDomain),
    vocabulary: new Vocabulary(RESOURCES + 'strings'),
    tls: tlsContext,
    version: PROTOCOL_VERSION,
  };
  const engine = new Engine(services);
  registerOperations(engine);


  const tcp = new TcpListener(engine);
  const tcpTls = config.ports.ximssTls && tlsContext ? new TcpListener(engine, tlsContext) : undefined;
  const http = new HttpListener(engine, tcp);
  const https = config.ports.https && tlsContext ? new HttpListener(engine, tcp, tlsContext) : undefined;
  const smtp = config.ports.smtp ? new SmtpListener(services, { log }) : undefined;
  const ports = {
    ximss: await tcp.listen(config.ports.ximss, config.host),
    ximssTls: tcpTls ? await tcpTls.listen(config.ports.ximssTls, config.host) : undefined,
    http: (httpPort = await http.listen(config.ports.http, config.host)),
    https: https ? await https.listen(config.ports.https, config.host) : undefined,
    smtp: smtp ? await smtp.start(config.ports.smtp, config.host) : undefined,
  };
  await node.start(ports.http);
  queue.start(delivery);
  log(
    `ximssd ${SERVER_VERSION} listening on ${config.host}: XIMSS ${ports.ximss}` +
      (ports.ximssTls ? `, XIMSS/TLS ${ports.ximssTls}` : '') +
      `, HTTP ${ports.http}` +
      (ports.https ? `, HTTPS ${ports.https}` : '') +
      (ports.smtp ? `, SMTP ${ports.smtp}` : '') +
      (store.engine === 'postgres' ? ` (store PostgreSQL, node ${node.id})` : ` (data in ${config.dataDir})`),
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      services.sessions.endAll();
      await Promise.all([tcp.close(), tcpTls?.close(), http.close(), https?.close(), smtp?.close()]);
      await queue.close();
      // The sessions' files are being deleted; wait for that, and remove any left.
      await uploads.close();
      services.sessions.close();
      await services.mail.close();
      await node.stop().catch((err: unknown) => log(`cluster: leaving failed: ${String(err)}`));
      await bus.close();
      await store.close();
    })());
  return { services, ports, close };
}
