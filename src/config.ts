import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

/** Everything an operator can set. Precedence: defaults < config file (JSON) < command-line flags. */
export interface Config {
  /** Directory holding the store, the generated TLS certificate, uploads. */
  dataDir: string;
  /** Address every listener binds to. */
  host: string;
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
  };
  limits: {
    /** Largest XIMSS message (TCP document or HTTP body), in bytes. */
    maxRequestBytes: number;
    /** Requests a session may have received but not answered; beyond it the binding stops reading. */
    maxPendingRequests: number;
    /** Default session idle time-out, seconds. */
    idleTimeoutSeconds: number;
    /** Sessions one account may have open at once. */
    sessionsPerAccount: number;
    /** Delay added before answering a failed login, milliseconds. */
    loginFailureDelayMs: number;
    /** Failed logins from one address (and, separately, for one account) allowed per window. */
    loginFailuresPerAddress: number;
    loginFailuresPerAccount: number;
    /** The window, and the lock-out after it is exceeded, seconds. */
    loginFailureWindowSeconds: number;
    /** HTTP long-poll `maxWait` ceiling, seconds. */
    maxPollSeconds: number;
    /** Largest message a client may append or upload, in bytes. */
    maxMessageBytes: number;
    /** Bytes a session's uploaded file set may hold. */
    uploadBytesPerSession: number;
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
    host: '0.0.0.0',
    defaultDomain: hostDomainName(),
    publicUrl: '',
    ports: { ximss: 11024, ximssTls: 0, http: 8100, https: 0, smtp: 2525, xmpp: 5222 },
    tls: { certFile: '', keyFile: '' },
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
    },
    limits: {
      maxRequestBytes: 10 * 1024 * 1024,
      maxPendingRequests: 10_000,
      idleTimeoutSeconds: 600,
      sessionsPerAccount: 100,
      loginFailureDelayMs: 1000,
      loginFailuresPerAddress: 20,
      loginFailuresPerAccount: 10,
      loginFailureWindowSeconds: 300,
      maxPollSeconds: 120,
      maxMessageBytes: 50 * 1024 * 1024,
      uploadBytesPerSession: 100 * 1024 * 1024,
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
  return config;
}
