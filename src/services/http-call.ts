/**
 * HTTP requests a user asks the server to make (XIMSS retrieveXML and httpCall): built on
 * remote-fetch (http and https only, bounded in size and time, every redirect checked), with
 * the operator's say on where they may go and how many a user may make.
 *
 * Destinations: hosts whose addresses are all public, unless `fetch.allowPrivate` or an entry
 * of `fetch.allow` (an address, a CIDR prefix, a host name or `*.domain`, each with an optional
 * `:port`) says otherwise. The server's own listening ports on this machine's addresses are
 * refused even then, unless an entry naming that very port allows it: otherwise a user could
 * make the server talk to itself (its HTTP sessions, its SMTP) as a trusted local client.
 *
 * Limits per account on this node: requests running at once, and requests started in the
 * last minute; past them a request is refused at once (never queued), so that one user cannot
 * use the server as a flood source.
 */
import { networkInterfaces } from 'node:os';
import { BlockList, isIP } from 'node:net';
import type { Logger } from '../log.js';
import { ServiceError } from './errors.js';
import { isPublicAddress, RemoteFetchError, requestRemote, type RemoteFetchLimits, type RemoteRequest, type RemoteResponse } from './remote-fetch.js';

export interface HttpCallSettings {
  retrieveXML: boolean;
  httpCall: boolean;
  allowPrivate: boolean;
  allow: readonly string[];
  maxBytes: number;
  timeoutSeconds: number;
  redirects: number;
  concurrentPerAccount: number;
  requestsPerMinute: number;
}

/** One entry of `fetch.allow`. */
type AllowEntry = ({ kind: 'net'; list: BlockList } | { kind: 'host'; name: string; wildcard: boolean }) & { port?: number };

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)*$/i;

/**
 * Reads one `fetch.allow` entry: `10.0.0.0/8`, `192.0.2.7`, `[fd00::]/8`-style IPv6 in
 * brackets when a port follows (`[::1]:8080`), `intranet.example.com`, `*.example.com`, each
 * optionally `:port`. Throws an Error saying what is wrong.
 */
export function parseAllowEntry(entry: string): AllowEntry {
  let hostPart = entry.trim();
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostPart);
  if (bracketed) {
    hostPart = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if ((hostPart.match(/:/g) ?? []).length === 1) {
    const colon = hostPart.indexOf(':');
    if (!/^\d+$/.test(hostPart.slice(colon + 1))) throw new Error(`${entry}: the port must be a number`);
    port = Number(hostPart.slice(colon + 1));
    hostPart = hostPart.slice(0, colon);
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new Error(`${entry}: the port must be 1 to 65535`);
  const slash = hostPart.indexOf('/');
  const address = slash < 0 ? hostPart : hostPart.slice(0, slash);
  const version = isIP(address);
  if (version !== 0) {
    const list = new BlockList();
    const type = version === 4 ? 'ipv4' : 'ipv6';
    if (slash < 0) list.addAddress(address, type);
    else {
      const bits = hostPart.slice(slash + 1);
      if (!/^\d+$/.test(bits) || Number(bits) > (version === 4 ? 32 : 128)) throw new Error(`${entry}: the prefix length is not valid`);
      list.addSubnet(address, Number(bits), type);
    }
    return { kind: 'net', list, port };
  }
  const wildcard = hostPart.startsWith('*.');
  const name = (wildcard ? hostPart.slice(2) : hostPart).toLowerCase();
  if (slash >= 0 || !HOST_NAME.test(name)) throw new Error(`${entry} is not an address, a CIDR prefix or a host name`);
  return { kind: 'host', name, wildcard, port };
}

/** IPv4-mapped IPv6 addresses as IPv4, zones dropped. */
function plainAddress(address: string): string {
  const unzoned = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(unzoned);
  return mapped ? mapped[1]! : unzoned;
}

function inList(list: BlockList, address: string): boolean {
  return list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** The addresses of this machine: a request to one of them at one of the server's ports reaches the server. */
function localAddresses(host: string): BlockList {
  const list = new BlockList();
  list.addSubnet('127.0.0.0', 8, 'ipv4');
  list.addSubnet('0.0.0.0', 8, 'ipv4');
  list.addAddress('::1', 'ipv6');
  list.addAddress('::', 'ipv6');
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) {
      const address = plainAddress(entry.address);
      list.addAddress(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
    }
  }
  const bound = plainAddress(host);
  if (isIP(bound) !== 0) list.addAddress(bound, isIP(bound) === 6 ? 'ipv6' : 'ipv4');
  return list;
}

/** What a client asked for, once the protocol's form is read. */
export interface HttpCallRequest extends RemoteRequest {
  url: URL;
  /** Seconds; at most fetch.timeoutSeconds. */
  timeoutSeconds?: number;
}

export class HttpCallService {
  private readonly entries: AllowEntry[];
  private readonly local: BlockList;
  /** The ports the server listens on (set once they are bound). */
  private ownPorts = new Set<number>();
  private readonly running = new Map<string, number>();
  /** Start times (ms) of each account's requests in the last minute. */
  private readonly started = new Map<string, number[]>();

  constructor(
    readonly settings: HttpCallSettings,
    host: string,
    private readonly log: Logger,
  ) {
    this.entries = settings.allow.map(parseAllowEntry);
    this.local = localAddresses(host);
  }

  /** The ports the server's listeners are bound to. */
  setOwnPorts(ports: Iterable<number | undefined>): void {
    this.ownPorts = new Set([...ports].filter((p): p is number => typeof p === 'number' && p > 0));
  }

  /**
   * Why `url`, whose host is `addresses`, may not be reached (completing "the … url"), or
   * undefined when it may.
   */
  refusal(url: URL, addresses: readonly string[]): string | undefined {
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const plain = addresses.map(plainAddress);
    const matches = (entry: AllowEntry): boolean => {
      if (entry.port !== undefined && entry.port !== port) return false;
      if (entry.kind === 'host') return host === entry.name || (entry.wildcard && host.endsWith(`.${entry.name}`));
      return plain.length > 0 && plain.every((a) => inList(entry.list, a));
    };
    if (this.ownPorts.has(port) && plain.some((a) => inList(this.local, a)) && !this.entries.some((e) => e.port === port && matches(e))) {
      return `names this server's own port ${port}, which it does not fetch`;
    }
    if (this.entries.some((e) => e.kind === 'host' && matches(e))) return undefined;
    for (const address of plain) {
      if (isPublicAddress(address) || this.settings.allowPrivate) continue;
      const net = this.entries.some((e) => e.kind === 'net' && (e.port === undefined || e.port === port) && inList(e.list, address));
      if (!net) return 'names a private or local address, which this server does not fetch';
    }
    return undefined;
  }

  /**
   * Makes `request` for `account` (its key for the limits), within the limits; the answer
   * whatever its status. `what` names the document in errors ("the document"). Throws
   * ServiceError for the client.
   */
  async request(account: string, op: 'retrieveXML' | 'httpCall', request: HttpCallRequest, accept?: string): Promise<RemoteResponse> {
    if (!this.settings[op]) throw new ServiceError(`${op} is disabled on this server`);
    const release = this.admit(account, op);
    let forbidden: { host: string; addresses: readonly string[] } | undefined;
    const timeoutSeconds = Math.min(request.timeoutSeconds ?? this.settings.timeoutSeconds, this.settings.timeoutSeconds);
    const limits: RemoteFetchLimits = {
      bytes: this.settings.maxBytes,
      timeoutMs: Math.max(1, Math.round(timeoutSeconds * 1000)),
      redirects: this.settings.redirects,
      privateAddresses: this.settings.allowPrivate,
      accept,
      destination: (url, addresses) => {
        const refused = this.refusal(url, addresses);
        if (refused !== undefined) forbidden = { host: url.host, addresses };
        return refused;
      },
    };
    const method = request.method ?? 'GET';
    try {
      const response = await requestRemote(request.url, request, limits, 'the document');
      this.log.info({ event: 'fetch.done', op, account, method, host: request.url.host, status: response.status, bytes: response.body.length }, `${op} answered`);
      return response;
    } catch (err) {
      if (!(err instanceof RemoteFetchError)) throw err;
      if (forbidden) {
        // A user pointing the server at its own network: worth an operator's look.
        this.log.warn({ event: 'fetch.refused', op, account, method, host: forbidden.host, addresses: forbidden.addresses, error: err.message }, `${op} refused: a forbidden destination`);
        throw new ServiceError(err.message);
      }
      this.log.info({ event: 'fetch.failed', op, account, method, host: request.url.host, error: err.message }, `${op} failed`);
      throw new ServiceError(err.message);
    } finally {
      release();
    }
  }

  /** Takes a place for one request of `account`, or refuses it: the release. */
  private admit(account: string, op: string): () => void {
    const now = Date.now();
    if (this.started.size > 10_000) {
      for (const [key, times] of this.started) if (!this.running.has(key) && times.every((t) => now - t >= 60_000)) this.started.delete(key);
    }
    const recent = (this.started.get(account) ?? []).filter((t) => now - t < 60_000);
    const running = this.running.get(account) ?? 0;
    let refused: string | undefined;
    if (running >= this.settings.concurrentPerAccount) refused = `too many HTTP requests at once (at most ${this.settings.concurrentPerAccount})`;
    else if (recent.length >= this.settings.requestsPerMinute) refused = `too many HTTP requests (at most ${this.settings.requestsPerMinute} a minute)`;
    if (refused !== undefined) {
      if (recent.length > 0) this.started.set(account, recent);
      this.log.warn({ event: 'fetch.limited', op, account, running, lastMinute: recent.length }, `${op} refused: ${refused}`);
      throw new ServiceError(refused);
    }
    recent.push(now);
    this.started.set(account, recent);
    this.running.set(account, running + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.running.get(account) ?? 1) - 1;
      if (left > 0) this.running.set(account, left);
      else this.running.delete(account);
      // Forget accounts whose last request is a minute old (the map does not grow with every user ever seen).
      const times = this.started.get(account);
      if (times && left === 0 && times.every((t) => Date.now() - t >= 60_000)) this.started.delete(account);
    };
  }
}
