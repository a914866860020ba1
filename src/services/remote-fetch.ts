/**
 * Fetching a document the server was given the URL of (a calendar to open, a prompt to play):
 * over http or https only, bounded in time and size, a few redirects at most, and — unless the
 * operator allows it — never from a host that is (or resolves to) an address off the public
 * Internet (loopback, private, link-local…: RFC 6890's special-purpose blocks), each redirect's
 * host checked like the first, so that a user cannot make the server reach into its own network.
 * (A host is resolved here and again by the fetch: a name whose answer changes in between is not
 * caught.)
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

export interface RemoteFetchLimits {
  bytes: number;
  timeoutMs: number;
  /** Redirects followed at most (each checked like the first URL). */
  redirects: number;
  /** Whether hosts with loopback, private, link-local… addresses may be fetched. */
  privateAddresses: boolean;
  /** The Accept header. */
  accept?: string;
  /**
   * Decides instead of `privateAddresses` whether a destination (the first URL and every
   * redirect) may be reached: given the URL and the addresses its host is (or resolves to),
   * the reason to refuse it, or undefined.
   */
  destination?: (url: URL, addresses: readonly string[]) => string | undefined;
}

/** An HTTP request beyond a plain GET (httpCall): its method, header fields and body. */
export interface RemoteRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer> | URLSearchParams | FormData;
}

/** The answer to requestRemote, whatever its status. */
export interface RemoteResponse {
  /** The URL that answered (after redirects). */
  url: URL;
  status: number;
  statusText: string;
  headers: Headers;
  body: Buffer;
}

/** Why a fetch failed, said of `what` ("the calendar"): for the user. */
export class RemoteFetchError extends Error {
  override name = 'RemoteFetchError';
}

/** Addresses that are not on the public Internet (RFC 6890's special-purpose blocks). */
const NON_PUBLIC = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  NON_PUBLIC.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) NON_PUBLIC.addSubnet(net, bits, 'ipv6');

export function isPublicAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return !NON_PUBLIC.check(mapped[1]!, 'ipv4');
  return !NON_PUBLIC.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** The addresses a URL's host is, or resolves to. */
async function addressesOf(url: URL, what: string, timeoutMs: number): Promise<string[]> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  try {
    // Bounded like the fetch (a name that never answers would hold a thread of libuv's pool).
    return isIP(host) ? [host] : (await withTimeout(lookup(host, { all: true, verbatim: true }), timeoutMs)).map((a) => a.address);
  } catch {
    throw new RemoteFetchError(`${what} could not be retrieved: unknown host ${JSON.stringify(host.slice(0, 100))}`);
  }
}

/** Refuses a URL whose host is (or resolves to) an address the limits do not allow. */
async function checkHost(url: URL, what: string, limits: RemoteFetchLimits): Promise<void> {
  if (!limits.destination) {
    if (limits.privateAddresses) return;
    const addresses = await addressesOf(url, what, limits.timeoutMs);
    if (addresses.some((a) => !isPublicAddress(a))) throw new RemoteFetchError(`${what} url names a private or local address, which this server does not fetch`);
    return;
  }
  const refused = limits.destination(url, await addressesOf(url, what, limits.timeoutMs));
  if (refused !== undefined) throw new RemoteFetchError(`${what} url ${refused}`);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The body of the document at `url` (http or https). Throws RemoteFetchError, its message about `what`. */
export async function fetchRemote(url: URL, limits: RemoteFetchLimits, what: string): Promise<Buffer> {
  return (await exchange(url, {}, limits, what, true)).body;
}

/**
 * Makes `request` to `url` (http or https) within `limits` and gives the answer whatever its
 * status; a redirect is followed (checked like the first URL) as browsers do: 303, and 301
 * and 302 after a POST, go on as a GET without the body; an Authorization field is not
 * carried to another origin. Throws RemoteFetchError, its message about `what`.
 */
export async function requestRemote(url: URL, request: RemoteRequest, limits: RemoteFetchLimits, what: string): Promise<RemoteResponse> {
  return exchange(url, request, limits, what, false);
}

async function exchange(url: URL, request: RemoteRequest, limits: RemoteFetchLimits, what: string, okOnly: boolean): Promise<RemoteResponse> {
  let parsed = url;
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new RemoteFetchError(`${what} url must be http or https`);
  const signal = AbortSignal.timeout(limits.timeoutMs);
  const failed = (err: unknown): RemoteFetchError =>
    new RemoteFetchError(`${what} could not be retrieved: ${err instanceof Error ? (err.name === 'TimeoutError' ? 'timed out' : err.message) : String(err)}`);
  let method = request.method ?? 'GET';
  let body = request.body;
  const headers: Record<string, string> = { Accept: limits.accept ?? '*/*', ...request.headers };
  let response: Response;
  for (let hop = 0; ; hop++) {
    await checkHost(parsed, what, limits);
    try {
      // Redirects are followed here, so that each new host is checked too.
      response = await fetch(parsed, { signal, redirect: 'manual', method, headers, body });
    } catch (err) {
      throw failed(err);
    }
    const location = response.headers.get('location');
    if (response.status < 300 || response.status > 399 || !location) break;
    await response.body?.cancel().catch(() => {});
    if (hop >= limits.redirects) throw new RemoteFetchError(`${what} could not be retrieved: too many redirects`);
    const from = parsed;
    try {
      parsed = new URL(location, parsed);
    } catch {
      throw new RemoteFetchError(`${what} could not be retrieved: a bad redirect`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new RemoteFetchError(`${what} could not be retrieved: a redirect to another scheme`);
    if ((response.status === 303 && method !== 'HEAD') || ((response.status === 301 || response.status === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
      for (const name of Object.keys(headers)) if (/^content-/i.test(name)) delete headers[name];
    }
    if (parsed.origin !== from.origin) for (const name of Object.keys(headers)) if (/^(authorization|cookie)$/i.test(name)) delete headers[name];
  }
  if (okOnly && !response.ok) {
    await response.body?.cancel().catch(() => {});
    throw new RemoteFetchError(`${what} could not be retrieved: HTTP ${response.status}`);
  }
  const tooLarge = (): RemoteFetchError => new RemoteFetchError(`${what} is too large (at most ${limits.bytes} bytes)`);
  const declared = Number(response.headers.get('content-length') ?? 'NaN');
  if (declared > limits.bytes) {
    await response.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  // Read while it arrives, stopping at the limit (a missing or false Content-Length).
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body?.getReader();
  try {
    for (;;) {
      if (!reader) break;
      const { done, value } = await reader.read();
      if (done || !value) break;
      size += value.length;
      if (size > limits.bytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof RemoteFetchError) throw err;
    throw failed(err);
  }
  return { url: parsed, status: response.status, statusText: response.statusText, headers: response.headers, body: Buffer.concat(chunks) };
}
