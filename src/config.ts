import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { LogLevel } from './log.js';

/** Everything an operator can set. Precedence: defaults < config file (JSON) < command-line flags. */
export interface Config {
  /** Directory holding the store (SQLite), the generated TLS certificate, uploads. */
  dataDir: string;
  /**
   * Where accounts and mail live: '' = the embedded SQLite engine in dataDir (one server
   * process); `postgres://user:password@host:port/database` = PostgreSQL, which any number
   * of nodes may share (a cluster).
   */
  store: string;
  /** This process as a node of a cluster (see README "Running a cluster"). */
  cluster: {
    /**
     * Unique per node: a number of up to 9 digits, which begins every urlID the node hands
     * out (`<node>-<20 alphanumerics>`, the shape clients expect); '' = a random one at each start.
     */
    nodeId: string;
    /**
     * The HTTP URL other nodes reach this node's HTTP listener at, to forward requests for
     * its sessions; '' = http://<host>:<HTTP port> (127.0.0.1 when listening on every address).
     */
    internalUrl: string;
    /** How often the node tells the store it is alive, and when the others count it dead. */
    heartbeatSeconds: number;
    nodeTimeoutSeconds: number;
  };
  /** Address every listener binds to. */
  host: string;
  /** The structured log (JSON lines on standard output). */
  log: {
    /** trace, debug, info (the default: every event README "Logs" lists), warn, error, fatal or silent. */
    level: LogLevel;
  };
  /** GET /metrics on the HTTP listener (Prometheus text format). */
  metrics: {
    enabled: boolean;
    /** Client addresses allowed to read it (addresses or CIDR prefixes); others get 404. */
    allow: string[];
  };
  /** Name of the domain created on first start; logins without a domain part use it. */
  defaultDomain: string;
  /**
   * The URL users reach the HTTP listener at (password-reset links); '' = http://<defaultDomain>:<HTTP port>.
   */
  publicUrl: string;
  ports: {
    ximss: number;
    /** Implicit-TLS XIMSS listener; 0 = off. */
    ximssTls: number;
    http: number;
    /** Implicit-TLS HTTP (https) listener; 0 = off. */
    https: number;
    smtp: number;
    xmpp: number;
  };
  tls: {
    /** PEM files; '' = a self-signed certificate, generated and kept in dataDir/tls. */
    certFile: string;
    keyFile: string;
  };
  /** Mail received from other servers (SMTP without AUTH). */
  inbound: {
    /**
     * Check SPF, DKIM and DMARC and record the results in an Authentication-Results field
     * (README "Mail authentication"); DNS failures never refuse mail.
     */
    authenticationChecks: boolean;
  };
  /** Delivery of mail for other domains (the outbound queue). */
  outbound: {
    /** `host:port` of a relay (smart host) that takes all mail for other domains; '' = each domain's MX. */
    relay: string;
    /** AUTH credentials for the relay ('' = no AUTH). */
    relayUser: string;
    relayPassword: string;
    /** STARTTLS with the relay and MX hosts: 'opportunistic' (when offered), 'required', or 'off'. */
    starttls: string;
    /** The port MX hosts are contacted on. */
    mxPort: number;
    /** Retry back-off: the first interval, doubling up to the maximum, seconds. */
    firstRetrySeconds: number;
    maxRetrySeconds: number;
    /** How long a message may stay queued before it is returned as undeliverable, seconds. */
    lifetimeSeconds: number;
    /** Messages being delivered at once. */
    concurrency: number;
    /**
     * How long a node's claim on a queued message lasts; renewed while the attempt runs. A
     * node that dies leaves its messages to the others this long after its last renewal.
     */
    leaseSeconds: number;
  };
  limits: {
    /** Largest XIMSS message (TCP document or HTTP body) of a logged-in session, in bytes. */
    maxRequestBytes: number;
    /** Largest XIMSS message before login (TCP document, /XIMSSLogin/ body), in bytes. */
    preLoginRequestBytes: number;
    /** Requests a session may have received but not answered (and per HTTP batch); beyond it the binding stops reading. */
    maxPendingRequests: number;
    /** The same before login: pipelined requests, and requests in a /XIMSSLogin/ batch. */
    preLoginRequests: number;
    /** Bytes of answers a connection (or a /XIMSSLogin/ batch) may be sent before it logs in. */
    preLoginOutputBytes: number;
    /**
     * HTTP: bytes of answers one sync batch may collect (later requests of the batch are then
     * refused), and of answers to async batches waiting for polls (requests then wait).
     */
    maxAnswerBytes: number;
    /** XML guard, enforced while a message is parsed: element nesting depth. */
    xmlDepth: number;
    /** Elements in one message after login, and before login. */
    xmlElements: number;
    preLoginXmlElements: number;
    /** Attributes on one element. */
    xmlAttributes: number;
    /** Characters in one attribute value, and in one run of text. */
    xmlAttributeChars: number;
    xmlTextChars: number;
    /** Connections from one client address that are not logged in (XIMSS TCP, HTTP, SMTP each count). */
    connectionsPerAddress: number;
    /** Connections not logged in, server-wide. */
    preLoginConnections: number;
    /**
     * Requests refused before login (malformed, oversized or overdeep XML) that one address
     * may send in a minute; past them its new connections are refused for abuseBlockSeconds
     * (0 turns this off).
     */
    abusePerAddress: number;
    abuseBlockSeconds: number;
    /** A new connection must send its first complete request within this many seconds. */
    firstRequestSeconds: number;
    /** ...and log in within this many seconds. */
    loginSeconds: number;
    /** HTTP: the request head must arrive within this many seconds; the whole request within requestSeconds. */
    httpHeadersSeconds: number;
    httpRequestSeconds: number;
    /** HTTP: an idle keep-alive connection is closed after this many seconds. */
    httpKeepAliveSeconds: number;
    /** Default session idle time-out, seconds. */
    idleTimeoutSeconds: number;
    /** Sessions one account may have open at once. */
    sessionsPerAccount: number;
    /** getSessionData/setSessionData: the bytes and the keys a session's data may hold. */
    sessionDataBytes: number;
    sessionDataKeys: number;
    /** Open folders, per session and per account (all its sessions). */
    foldersPerSession: number;
    foldersPerAccount: number;
    /**
     * A failed login is answered this many milliseconds after its verification started; a
     * refused one, a sign-up and a password-recovery request are delayed as long.
     */
    loginFailureDelayMs: number;
    /**
     * Login attempts, every protocol together (XIMSS, /XIMSSLogin/, SMTP AUTH, passwordModify).
     * An attempt counts against its client address (IPv6: its /64) from the moment it starts,
     * so parallel attempts cannot race the limit; a right password gives its place back. An
     * address with loginFailuresPerAddress failures (and attempts under way) is refused,
     * blocked for the window. An account (all its aliases together) past loginFailuresPerAccount
     * failures is slowed down, never refused: attempts from addresses its owner has not logged
     * in from recently wait for the account's next slot, slots accountSlowdownMs apart (one
     * whose slot is beyond loginSeconds is refused at once); the owner's addresses go straight
     * through. Sign-ups and password-recovery requests per address are limited to
     * loginFailuresPerAddress in the window too, every request counting.
     */
    loginFailuresPerAddress: number;
    loginFailuresPerAccount: number;
    accountSlowdownMs: number;
    /** The window the failures are counted in, seconds. */
    loginFailureWindowSeconds: number;
    /**
     * SMTP: error replies on one connection (refused recipients, failed AUTH, bad commands)
     * before the server says 421 4.7.0 Too many errors and closes it (Postfix's smtpd_hard_error_limit).
     */
    smtpErrorsPerConnection: number;
    /** HTTP long-poll `maxWait` ceiling, seconds. */
    maxPollSeconds: number;
    /** Largest message a client may append or upload, in bytes. */
    maxMessageBytes: number;
    /** Bytes of uploaded files (spooled on disk): per session, per account, server-wide. */
    uploadBytesPerSession: number;
    uploadBytesPerAccount: number;
    uploadBytesTotal: number;
    /** Content scans (folderSearch, filtered folderOpen): seconds of work one request may take. */
    searchSeconds: number;
    filterSeconds: number;
  };
}

/** The host name as a usable domain name (host names such as `Build_Box` are not). */
function hostDomainName(): string {
  const name = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .replace(/\.{2,}/g, '.');
  return name || 'localhost';
}

export function defaultConfig(): Config {
  return {
    dataDir: resolve('data'),
    store: '',
    cluster: { nodeId: '', internalUrl: '', heartbeatSeconds: 5, nodeTimeoutSeconds: 20 },
    host: '0.0.0.0',
    log: { level: 'info' },
    metrics: { enabled: true, allow: ['127.0.0.0/8', '::1'] },
    defaultDomain: hostDomainName(),
    publicUrl: '',
    ports: { ximss: 11024, ximssTls: 0, http: 8100, https: 0, smtp: 2525, xmpp: 5222 },
    tls: { certFile: '', keyFile: '' },
    inbound: { authenticationChecks: true },
    outbound: {
      relay: '',
      relayUser: '',
      relayPassword: '',
      starttls: 'opportunistic',
      mxPort: 25,
      firstRetrySeconds: 60,
      maxRetrySeconds: 3600,
      lifetimeSeconds: 5 * 24 * 3600,
      concurrency: 8,
      leaseSeconds: 120,
    },
    limits: {
      maxRequestBytes: 10 * 1024 * 1024,
      preLoginRequestBytes: 64 * 1024,
      maxPendingRequests: 10_000,
      preLoginRequests: 16,
      preLoginOutputBytes: 1024 * 1024,
      maxAnswerBytes: 64 * 1024 * 1024,
      xmlDepth: 64,
      xmlElements: 100_000,
      preLoginXmlElements: 256,
      xmlAttributes: 64,
      xmlAttributeChars: 1024 * 1024,
      xmlTextChars: 10 * 1024 * 1024,
      connectionsPerAddress: 64,
      preLoginConnections: 4096,
      abusePerAddress: 20,
      abuseBlockSeconds: 60,
      firstRequestSeconds: 30,
      loginSeconds: 120,
      httpHeadersSeconds: 20,
      httpRequestSeconds: 300,
      httpKeepAliveSeconds: 30,
      idleTimeoutSeconds: 600,
      sessionsPerAccount: 100,
      sessionDataBytes: 1024 * 1024,
      sessionDataKeys: 1000,
      foldersPerSession: 100,
      foldersPerAccount: 200,
      loginFailureDelayMs: 1000,
      loginFailuresPerAddress: 20,
      loginFailuresPerAccount: 10,
      accountSlowdownMs: 5000,
      loginFailureWindowSeconds: 300,
      smtpErrorsPerConnection: 20,
      maxPollSeconds: 120,
      maxMessageBytes: 50 * 1024 * 1024,
      uploadBytesPerSession: 100 * 1024 * 1024,
      uploadBytesPerAccount: 200 * 1024 * 1024,
      uploadBytesTotal: 2 * 1024 * 1024 * 1024,
      searchSeconds: 5,
      filterSeconds: 30,
    },
  };
}

export type ConfigOverrides = {
  [K in keyof Config]?: Config[K] extends object ? Partial<Config[K]> : Config[K];
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep-merges `overrides` into `base`, checking that every key exists and keeps its type. */
export function mergeConfig(base: Config, overrides: unknown, origin: string): Config {
  const merged = structuredClone(base) as unknown as Record<string, unknown>;
  const walk = (target: Record<string, unknown>, source: unknown, path: string): void => {
    if (!isPlainObject(source)) throw new Error(`${origin}: ${path || 'configuration'} must be an object`);
    for (const [key, value] of Object.entries(source)) {
      if (value === undefined) continue;
      const where = path ? `${path}.${key}` : key;
      const current = target[key];
      if (!(key in target)) throw new Error(`${origin}: unknown setting ${where}`);
      if (isPlainObject(current)) walk(current, value, where);
      else if (current !== undefined && typeof current !== typeof value) {
        throw new Error(`${origin}: ${where} must be a ${typeof current}`);
      } else target[key] = value;
    }
  };
  walk(merged, overrides, '');
  return merged as unknown as Config;
}

export function loadConfig(file: string | undefined, flags: ConfigOverrides): Config {
  let config = defaultConfig();
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    config = mergeConfig(config, parsed, file);
  }
  config = mergeConfig(config, flags, 'command line');
  config.dataDir = resolve(config.dataDir);
  if (config.store !== '' && !/^postgres(ql)?:\/\/./i.test(config.store)) {
    throw new Error(`store must be empty (SQLite in the data directory) or a postgres:// URL, not ${JSON.stringify(config.store)}`);
  }
  if (config.cluster.nodeId !== '' && !/^[1-9][0-9]{0,8}$/.test(config.cluster.nodeId)) {
    throw new Error('cluster.nodeId must be a number from 1 to 999999999');
  }
  return config;
}
