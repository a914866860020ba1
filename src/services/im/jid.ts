import { JID, parse } from '@xmpp/jid';

/**
 * XMPP addresses (RFC 7622) as the server keeps them: local part and domain lower-cased (by
 * @xmpp/jid), each part at most 1023 bytes, the local part without the characters RFC 7622
 * forbids. A XIMSS `peer` (an e-mail address) is a bare JID.
 */
export interface Jid {
  local: string;
  domain: string;
  resource: string;
  /** `local@domain` (or `domain`). */
  bare: string;
  /** With the resource when there is one. */
  full: string;
}

/** A malformed address (the XMPP `jid-malformed` condition). */
export class JidError extends Error {}

const LOCAL_FORBIDDEN = /["&'/:<>@\s\u0000-\u001f\u007f]/u;
const DOMAIN_FORBIDDEN = /[\s@/"&'<>\\\u0000-\u001f\u007f]/u;
const MAX_PART = 1023;

function checkPart(part: string, what: string): void {
  if (Buffer.byteLength(part) > MAX_PART) throw new JidError(`the ${what} is longer than ${MAX_PART} bytes`);
}

/** Parses and normalizes an address; JidError when it is not one. */
export function parseJid(address: string): Jid {
  const slash = address.indexOf('/');
  const beforeResource = slash >= 0 ? address.slice(0, slash) : address;
  const at = beforeResource.lastIndexOf('@');
  const local = at >= 0 ? beforeResource.slice(0, at) : '';
  const domain = at >= 0 ? beforeResource.slice(at + 1) : beforeResource;
  const resource = slash >= 0 ? address.slice(slash + 1) : '';
  if (domain === '' || DOMAIN_FORBIDDEN.test(domain)) throw new JidError(`not an XMPP address: ${JSON.stringify(address.slice(0, 100))}`);
  if (at >= 0 && (local === '' || LOCAL_FORBIDDEN.test(local))) throw new JidError(`not an XMPP address: ${JSON.stringify(address.slice(0, 100))}`);
  if (slash >= 0 && resource === '') throw new JidError('an empty resource');
  if (/[\u0000-\u001f\u007f]/u.test(resource)) throw new JidError('a control character in the resource');
  checkPart(local, 'local part');
  checkPart(domain.replace(/\.$/, ''), 'domain');
  checkPart(resource, 'resource');
  const parsed = parse(address.replace(/\.(?=\/|$)/, ''));
  return jidOf(parsed.getLocal(), parsed.getDomain(), parsed.getResource());
}

/** The address, or undefined when it is not one. */
export function tryJid(address: string | undefined): Jid | undefined {
  if (address === undefined) return undefined;
  try {
    return parseJid(address);
  } catch {
    return undefined;
  }
}

export function jidOf(local: string, domain: string, resource = ''): Jid {
  const bare = new JID(local || null, domain).toString();
  return { local, domain, resource, bare, full: resource ? `${bare}/${resource}` : bare };
}

/** The bare JID of an address that is known to be well formed (what the server wrote itself). */
export function bareOf(address: string): string {
  const slash = address.indexOf('/');
  return slash >= 0 ? address.slice(0, slash) : address;
}

/** The resource part of a full JID ('' for a bare one). */
export function resourceOf(address: string): string {
  const slash = address.indexOf('/');
  return slash >= 0 ? address.slice(slash + 1) : '';
}
