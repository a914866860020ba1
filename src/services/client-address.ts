import { BlockList, isIP, isIPv6 } from 'node:net';

/**
 * The key a client address is counted under (login budgets, connection limits, abuse): IPv4 (and IPv4-mapped IPv6) as it is, IPv6 by
 * its /64, the block one subscriber gets (else every address of it would be a fresh budget).
 */
export function addressKey(address: string): string {
  let a = address.trim().toLowerCase();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  if (!isIPv6(a)) return a;
  const groups = expandIPv6(a);
  return `${groups.slice(0, 4).join(':')}::/64`;
}

/** The eight groups of an IPv6 address (an IPv4 tail as two groups), without leading zeros. */
function expandIPv6(address: string): string[] {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) >= 0) {
    const octets = text.slice(lastColon + 1).split('.').map(Number);
    const hi = ((octets[0]! << 8) | octets[1]!).toString(16);
    const lo = ((octets[2]! << 8) | octets[3]!).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => g.replace(/^0+(?=.)/, ''));
}

/**
 * A list of client addresses and CIDR prefixes (metrics.allow) (`10.0.0.0/8`,
 * `fd00::/8`), IPv4 or IPv6. Throws on an entry that is neither.
 */
export function addressList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const slash = entry.indexOf('/');
    const address = slash < 0 ? entry : entry.slice(0, slash);
    const version = isIP(address);
    if (version === 0) throw new Error(`${entry} is not an address or a CIDR prefix`);
    const type = version === 4 ? 'ipv4' : 'ipv6';
    if (slash < 0) {
      list.addAddress(address, type);
      continue;
    }
    const prefix = Number(entry.slice(slash + 1));
    if (!/^\d+$/.test(entry.slice(slash + 1)) || prefix > (version === 4 ? 32 : 128)) {
      throw new Error(`${entry} has an invalid prefix length`);
    }
    list.addSubnet(address, prefix, type);
  }
  return list;
}

/** Whether `address` (as clientAddress gives it: IPv4-mapped addresses in IPv4 form) is in `list`. */
export function allowed(list: BlockList, address: string): boolean {
  const version = isIP(address);
  if (version === 0) return false;
  return list.check(address, version === 4 ? 'ipv4' : 'ipv6');
}
