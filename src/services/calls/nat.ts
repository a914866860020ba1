/**
 * Telling a device behind NAT from one that is not, for the media gateway: a party that names a
 * private address it did not send from cannot be sent media at that address.
 */
import { isIP } from 'node:net';

/**
 * Whether a device is behind NAT: the host of its Contact (or of its SDP's c= line) is a private
 * address other than the one its request came from (as Kamailio's nat_uac_test 1 and 8 see it).
 */
export function behindNat(contactOrAddress: string, source: string): boolean {
  const host = hostOf(contactOrAddress);
  return isIP(host) !== 0 && host !== source && isPrivateAddress(host);
}

/** The address of an SDP's c= line (session or first media), if it has one. */
export function sdpAddress(sdp: string): string | undefined {
  return /^c=IN IP[46] ([^\s/]+)/m.exec(sdp)?.[1];
}

/** The host of a SIP URI (`sip:user@host:port;params`) or an address as it is. */
function hostOf(value: string): string {
  const uri = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;?>]+)/i.exec(value);
  const host = uri ? uri[1]! : value;
  return host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

/** RFC 1918, RFC 6598, link-local and unique-local addresses: behind NAT when seen from elsewhere. */
export function isPrivateAddress(host: string): boolean {
  return /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.|169\.254\.|f[cd][0-9a-f]{2}:|fe[89ab][0-9a-f]:)/i.test(host);
}
