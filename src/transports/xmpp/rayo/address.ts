/**
 * Rayo addressing (XEP-0327 "Addressing Scheme"): the service is the domain itself, calls
 * are `<call ID>@call.<domain>`, mixers `<name>@mixer.<domain>`, components the call's or
 * mixer's JID (or the domain) with the component ID as resource. In Rayo attributes these
 * entities appear as `xmpp:` URIs (`ref uri`, `call-uri`); dial and redirect targets are
 * `sip:`, `sips:`, `tel:` or `xmpp:` URIs (the SIP layer's URI parser reads the first three).
 */
import { JidError, parseJid, type Jid } from '../../../services/im/jid.js';
import { parseUri, type SipUri, type TelUri } from '../../sip/uri.js';
import { badRequest, type RayoError } from './errors.js';
import { quote } from './namespaces.js';

export const CALL_SUBDOMAIN = 'call';
export const MIXER_SUBDOMAIN = 'mixer';

/** Call IDs, mixer names and component IDs: what a JID local part or resource may hold, kept short and plain. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;
/** A mixer name as a client gives it (an XSD token, which the JID local part must also accept). */
const MIXER_NAME = /^[^\s"&'/:<>@\u0000-\u001f\u007f]{1,128}$/u;

export function isValidId(id: string): boolean {
  return ID.test(id);
}

export function isValidMixerName(name: string): boolean {
  return MIXER_NAME.test(name);
}

export function callDomain(domain: string): string {
  return `${CALL_SUBDOMAIN}.${domain}`;
}

export function mixerDomain(domain: string): string {
  return `${MIXER_SUBDOMAIN}.${domain}`;
}

/** `<id>@call.<domain>`. */
export function callJid(callId: string, domain: string): string {
  if (!isValidId(callId)) throw new JidError(`not a call ID: ${quote(callId)}`);
  return `${callId}@${callDomain(domain)}`;
}

/** `<name>@mixer.<domain>`. */
export function mixerJid(name: string, domain: string): string {
  if (!isValidMixerName(name)) throw new JidError(`not a mixer name: ${quote(name)}`);
  return `${name}@${mixerDomain(domain)}`;
}

/** `<call or mixer JID, or the domain>/<component ID>`. */
export function componentJid(parentJid: string, componentId: string): string {
  if (!isValidId(componentId)) throw new JidError(`not a component ID: ${quote(componentId)}`);
  if (parentJid.includes('/')) throw new JidError(`a component's parent is a bare JID: ${quote(parentJid)}`);
  return `${parentJid}/${componentId}`;
}

/** A JID as an `xmpp:` URI (RFC 5122; the characters a JID may hold here need no escaping). */
export function xmppUri(jid: string): string {
  return `xmpp:${jid}`;
}

/** What a JID addressed to (or sent from) the Rayo service of `domain` is. */
export type RayoEntity =
  | { readonly kind: 'service'; readonly domain: string }
  | { readonly kind: 'call'; readonly domain: string; readonly callId: string }
  | { readonly kind: 'mixer'; readonly domain: string; readonly name: string }
  | {
      readonly kind: 'component';
      readonly domain: string;
      readonly componentId: string;
      /** The entity that hosts the component. */
      readonly parent: { readonly kind: 'service' } | { readonly kind: 'call'; readonly callId: string } | { readonly kind: 'mixer'; readonly name: string };
    };

/**
 * Classifies a JID against the service domain: the domain (service), `call.<domain>` calls,
 * `mixer.<domain>` mixers, with a resource a component of one of them. Undefined when the
 * JID is not one of the service's (another domain, a user of the domain, a malformed JID).
 */
export function classifyJid(address: string, domain: string): RayoEntity | undefined {
  let jid: Jid;
  try {
    jid = parseJid(address);
  } catch {
    return undefined;
  }
  const d = domain.toLowerCase();
  let parent: { kind: 'service' } | { kind: 'call'; callId: string } | { kind: 'mixer'; name: string };
  if (jid.domain === d && jid.local === '') parent = { kind: 'service' };
  else if (jid.domain === callDomain(d) && jid.local !== '' && isValidId(jid.local)) parent = { kind: 'call', callId: jid.local };
  else if (jid.domain === mixerDomain(d) && jid.local !== '' && isValidMixerName(jid.local)) parent = { kind: 'mixer', name: jid.local };
  else return undefined;
  if (jid.resource !== '') {
    if (!isValidId(jid.resource)) return undefined;
    return { kind: 'component', domain: d, componentId: jid.resource, parent };
  }
  if (parent.kind === 'service') return { kind: 'service', domain: d };
  if (parent.kind === 'call') return { kind: 'call', domain: d, callId: parent.callId };
  return { kind: 'mixer', domain: d, name: parent.name };
}

/**
 * The JID of an `xmpp:` URI (RFC 5122 `xmpp:node@domain/resource`, percent-escapes decoded,
 * no authority, query or fragment). A RayoError (bad-request) when it is not one: `xmpp:`
 * alone is the malformed join of XEP example 032.
 */
export function parseXmppUri(uri: string, what = 'URI'): Jid | RayoError {
  if (!/^xmpp:/i.test(uri)) return badRequest(`the ${what} must be an xmpp: URI, not ${quote(uri)}`);
  const rest = uri.slice(5);
  if (rest.startsWith('//')) return badRequest(`the ${what} names an authority; give the JID alone: ${quote(uri)}`);
  if (/[?#]/.test(rest)) return badRequest(`the ${what} has a query or fragment: ${quote(uri)}`);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    return badRequest(`the ${what} has a bad percent escape: ${quote(uri)}`);
  }
  if (decoded === '') return badRequest(`the ${what} names no JID: ${quote(uri)}`);
  try {
    return parseJid(decoded);
  } catch (err) {
    return badRequest(`the ${what} ${quote(uri)} is not a JID (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** A call URI as `call-uri` and `ref` carry it: an `xmpp:` URI of a JID with a local part and no resource. */
export function parseCallUri(uri: string, what = 'call-uri'): Jid | RayoError {
  const jid = parseXmppUri(uri, what);
  if ('condition' in jid) return jid;
  if (jid.local === '') return badRequest(`the ${what} ${quote(uri)} names a domain, not a call`);
  if (jid.resource !== '') return badRequest(`the ${what} ${quote(uri)} names a component, not a call`);
  return jid;
}

/** A party to call or redirect to, or a caller ID. */
export type PartyUri =
  | { readonly scheme: 'sip' | 'sips'; readonly uri: string; readonly sip: SipUri }
  | { readonly scheme: 'tel'; readonly uri: string; readonly tel: TelUri }
  | { readonly scheme: 'xmpp'; readonly uri: string; readonly jid: Jid };

export const PARTY_SCHEMES: readonly string[] = ['sip', 'sips', 'tel', 'xmpp'];

/**
 * Reads the URI of a party (dial `to`/`from`, redirect `to`, offer `to`/`from`). A scheme
 * the server cannot reach is bad-request, as XEP example 019 answers `to='foo:bar'`.
 */
export function parsePartyUri(uri: string, what = 'URI'): PartyUri | RayoError {
  const colon = uri.indexOf(':');
  const scheme = colon > 0 ? uri.slice(0, colon).toLowerCase() : '';
  if (!PARTY_SCHEMES.includes(scheme)) {
    return badRequest(`the ${what} ${quote(uri)} is not a sip:, sips:, tel: or xmpp: URI`);
  }
  if (scheme === 'xmpp') {
    const jid = parseXmppUri(uri, what);
    return 'condition' in jid ? jid : { scheme: 'xmpp', uri, jid };
  }
  try {
    const parsed = parseUri(uri);
    if (parsed.kind === 'sip') return { scheme: parsed.scheme, uri, sip: parsed };
    if (parsed.kind === 'tel') return { scheme: 'tel', uri, tel: parsed };
  } catch (err) {
    return badRequest(`the ${what} ${quote(uri)} is malformed (${err instanceof Error ? err.message : String(err)})`);
  }
  return badRequest(`the ${what} ${quote(uri)} is not a sip:, sips:, tel: or xmpp: URI`);
}
