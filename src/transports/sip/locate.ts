/**
 * Locating the SIP server of a URI (RFC 3263 4): the transport, port and address to send a
 * request to. In order: a numeric host (or `maddr`) is used as it is; a port given, or a
 * `transport` parameter, skips NAPTR; else NAPTR records name the transports the domain
 * offers (SIP+D2U, SIP+D2T, SIPS+D2T) and their SRV names; without NAPTR, the SRV records of
 * the transports we speak are tried in order (TLS first for sips); without SRV, the host's
 * A/AAAA records on 5060 (5061 for sips) over UDP (TLS for sips). The resolver is injected
 * (node:dns/promises' `resolve` by default) so that tests point domains at loopback.
 */
import { resolve as dnsResolve } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DnsResolver } from '../../services/mail-auth.js';
import type { SipEndpoint, SipTransportName } from './transactions.js';
import { parseUri } from './uri.js';

/** The transports this server sends on, by NAPTR service (RFC 3263 4.1). */
const NAPTR_SERVICES: Readonly<Record<string, SipTransportName>> = { 'SIP+D2U': 'udp', 'SIP+D2T': 'tcp', 'SIPS+D2T': 'tls' };

/** SRV names per transport (RFC 3263 4.1), in the order tried without NAPTR. */
const SRV_PREFIXES: ReadonlyArray<[string, SipTransportName]> = [
  ['_sips._tcp.', 'tls'],
  ['_sip._tcp.', 'tcp'],
  ['_sip._udp.', 'udp'],
];

/** Hops tried at most for one URI (SRV records can list many). */
const MAX_HOPS = 8;

export class SipLocateError extends Error {
  constructor(
    message: string,
    /** 404: the domain has no SIP server; 503: DNS failed for now. */
    readonly status: 404 | 503,
  ) {
    super(message);
  }
}

interface Naptr {
  order: number;
  preference: number;
  flags: string;
  service: string;
  replacement: string;
}

interface Srv {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

const defaultResolver: DnsResolver = (name, rrtype) => dnsResolve(name, rrtype);

function isAbsence(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ENOTFOUND' || code === 'ENODATA' || code === 'ENONAME';
}

/** The servers to try for `uri`, in order; SipLocateError when there are none. */
export async function locateSipServers(uri: string, resolver: DnsResolver = defaultResolver): Promise<SipEndpoint[]> {
  const parsed = parseUri(uri);
  if (parsed.kind !== 'sip') throw new SipLocateError(`not a SIP URI: ${uri}`, 404);
  const secure = parsed.scheme === 'sips';
  const transportParam = parsed.params.get('transport')?.toLowerCase();
  const given: SipTransportName | undefined = secure ? 'tls' : transportParam === 'tcp' ? 'tcp' : transportParam === 'tls' ? 'tls' : transportParam === 'udp' ? 'udp' : undefined;
  const host = (parsed.params.get('maddr') ?? parsed.host).replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  const defaultPort = (transport: SipTransportName): number => (transport === 'tls' ? 5061 : 5060);

  if (isIP(host)) {
    const transport = given ?? 'udp';
    return [{ host, port: parsed.port ?? defaultPort(transport), transport }];
  }
  if (parsed.port !== undefined) {
    const transport = given ?? 'udp';
    return (await addresses(host, resolver)).map((address) => ({ host: address, port: parsed.port!, transport }));
  }

  let srvNames: Array<[string, SipTransportName]> = [];
  if (given === undefined) {
    const naptr = await lookUp<Naptr>(resolver, host, 'NAPTR');
    srvNames = naptr
      .filter((r) => r.flags.toLowerCase() === 's' && NAPTR_SERVICES[r.service.toUpperCase()] !== undefined)
      .filter((r) => !secure || r.service.toUpperCase().startsWith('SIPS'))
      .sort((a, b) => a.order - b.order || a.preference - b.preference)
      .map((r) => [r.replacement.replace(/\.$/, ''), NAPTR_SERVICES[r.service.toUpperCase()]!]);
  }
  if (srvNames.length === 0) {
    srvNames = SRV_PREFIXES.filter(([, transport]) => (given === undefined ? !secure || transport === 'tls' : transport === given)).map(([prefix, transport]) => [`${prefix}${host}`, transport]);
  }
  const hops: SipEndpoint[] = [];
  for (const [name, transport] of srvNames) {
    const records = await lookUp<Srv>(resolver, name, 'SRV');
    // A single "." target: the service is decidedly not offered (RFC 2782).
    if (records.length === 1 && (records[0]!.name === '.' || records[0]!.name === '')) continue;
    for (const record of records.sort((a, b) => a.priority - b.priority || b.weight - a.weight)) {
      for (const address of await addresses(record.name.replace(/\.$/, ''), resolver).catch(() => [])) {
        hops.push({ host: address, port: record.port, transport });
        if (hops.length >= MAX_HOPS) return hops;
      }
    }
    if (hops.length > 0) return hops;
  }
  const transport = given ?? (secure ? 'tls' : 'udp');
  return (await addresses(host, resolver)).map((address) => ({ host: address, port: defaultPort(transport), transport }));
}

async function lookUp<T>(resolver: DnsResolver, name: string, rrtype: string): Promise<T[]> {
  try {
    return (await resolver(name, rrtype)) as T[];
  } catch (err) {
    if (isAbsence(err)) return [];
    throw new SipLocateError(`DNS ${rrtype} ${name}: ${err instanceof Error ? err.message : String(err)}`, 503);
  }
}

/** A host's addresses, A then AAAA. */
async function addresses(host: string, resolver: DnsResolver): Promise<string[]> {
  const out = [...(await lookUp<string>(resolver, host, 'A')), ...(await lookUp<string>(resolver, host, 'AAAA'))];
  if (out.length === 0) throw new SipLocateError(`${host} has no SIP server`, 404);
  return out;
}
