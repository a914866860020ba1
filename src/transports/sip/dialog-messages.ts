/**
 * Pure pieces of the SIP dialog layer (dialog.ts): dialog identifiers (RFC 3261 12), route
 * sets and where an in-dialog request goes (12.2.1.1, loose and strict routing), bodies as
 * opaque text with a content type, the RSeq/RAck pair of RFC 3262, Refer-To with an embedded
 * Replaces (RFC 3515, RFC 3891) and the message/sipfrag bodies of a REFER's NOTIFY (RFC 3420).
 * No state and no I/O; every reader of the peer's text throws SipParseError (400) on garbage.
 */
import { malformed } from './error.js';
import type { SipHeaders } from './headers.js';
import { parseBoundedInt, splitOutside, trimLws } from './lexer.js';
import type { SipMessage } from './message.js';
import { parseNameAddr, parseSipUri, formatSipUri, type NameAddr } from './uri.js';

/** A message body: opaque text (SDP, sipfrag, DTMF relay, ...) and what it is. */
export interface SipBody {
  contentType: string;
  content: string;
}

/** The content type a body given as a bare string is taken to have: offers and answers are SDP. */
export const DEFAULT_CONTENT_TYPE = 'application/sdp';

/** A body given as text (SDP) or as a body; undefined and '' mean none. */
export type BodyInput = SipBody | string | undefined;

export function toBody(input: BodyInput, contentType: string = DEFAULT_CONTENT_TYPE): SipBody | undefined {
  if (input === undefined) return undefined;
  if (typeof input === 'string') return input === '' ? undefined : { contentType, content: input };
  return input.content === '' ? undefined : input;
}

/** A message's body, or undefined when empty; an untyped one is octets (RFC 3261 20.15). */
export function bodyOf(message: SipMessage): SipBody | undefined {
  if (message.body.length === 0) return undefined;
  const contentType = message.headers.get('Content-Type') ?? 'application/octet-stream';
  return { contentType, content: message.body.toString('utf8') };
}

/** Puts a body (or none) into a message, with its Content-Type. */
export function setBody(message: SipMessage, body: SipBody | undefined): void {
  message.headers.remove('Content-Type');
  if (body === undefined) {
    message.body = Buffer.alloc(0);
    return;
  }
  message.headers.add('Content-Type', body.contentType);
  message.body = Buffer.from(body.content, 'utf8');
}

/** A dialog's identity (12): the Call-ID and both tags, seen from our side. */
export interface DialogId {
  callId: string;
  localTag: string;
  remoteTag: string;
}

/** Call-IDs compare case-sensitively (20.8), tags as the tokens they are: without case (7.3.1). */
export function dialogKey(id: DialogId): string {
  return [id.callId, id.localTag.toLowerCase(), id.remoteTag.toLowerCase()].join('\n');
}

/** The key of every dialog (and the INVITE) we started under one Call-ID and From tag. */
export function callKey(callId: string, localTag: string): string {
  return [callId, localTag.toLowerCase()].join('\n');
}

/**
 * The route set a UAS takes from the request that created the dialog: its Record-Route
 * values in order (12.1.1). A UAC takes the response's in reverse (12.1.2).
 */
export function routeSetOf(message: SipMessage, role: 'uac' | 'uas'): string[] {
  const routes = message.headers.getAll('Record-Route');
  return role === 'uas' ? routes : routes.reverse();
}

/** The URI of the first Contact (the remote target, 12.1), or undefined when none is readable. */
export function contactUriOf(headers: SipHeaders): string | undefined {
  const contact = headers.getAll('Contact')[0];
  if (contact === undefined) return undefined;
  try {
    return parseNameAddr(contact).uriText;
  } catch {
    return undefined;
  }
}

/** Whether a Route value names a loose router (its URI carries `lr`, 19.1.1). */
export function isLooseRoute(route: string): boolean {
  const address = parseNameAddr(route);
  return address.uri.kind === 'sip' && address.uri.params.has('lr');
}

/** Where an in-dialog request goes: its Request-URI, its Route values and the URI of its next hop. */
export interface RequestTarget {
  requestUri: string;
  routes: string[];
  /** The first Route's URI, or the remote target when the route set is empty: what resolve() turns into an address. */
  nextHop: string;
}

/**
 * 12.2.1.1: with a loose router first (or no route set), the Request-URI is the remote target
 * and the route set goes into Route as it is. With a strict router first (RFC 2543), its URI
 * becomes the Request-URI and the remote target goes last among the Routes.
 */
export function requestTarget(routeSet: readonly string[], remoteTarget: string): RequestTarget {
  const first = routeSet[0];
  if (first === undefined) return { requestUri: remoteTarget, routes: [], nextHop: remoteTarget };
  const firstUri = parseNameAddr(first).uriText;
  if (isLooseRoute(first)) return { requestUri: remoteTarget, routes: [...routeSet], nextHop: firstUri };
  return { requestUri: requestUriOf(firstUri), routes: [...routeSet.slice(1), `<${remoteTarget}>`], nextHop: firstUri };
}

/** A URI as a Request-URI may hold it: SIP URIs lose their headers (19.1.1 table 1); others stay. */
function requestUriOf(uri: string): string {
  try {
    const parsed = parseSipUri(uri);
    return parsed.headers.length === 0 ? uri : formatSipUri({ ...parsed, headers: [] });
  } catch {
    return uri;
  }
}

/** Whether an option tag is listed in Supported or Require (comma lists, case-insensitive). */
export function hasOptionTag(headers: SipHeaders, name: 'Supported' | 'Require', tag: string): boolean {
  const wanted = tag.toLowerCase();
  return headers.getAll(name).some((value) => trimLws(value).toLowerCase() === wanted);
}

/** The option tags a request requires that we do not support (for a 420 and its Unsupported, 8.2.2.3). */
export function unsupportedRequirements(headers: SipHeaders, supported: readonly string[]): string[] {
  const known = new Set(supported.map((tag) => tag.toLowerCase()));
  return headers.getAll('Require').map(trimLws).filter((tag) => !known.has(tag.toLowerCase()));
}

/** RSeq (RFC 3262 7.1): 1..2^31-1. */
export function parseRSeq(value: string): number {
  const rseq = parseBoundedInt(trimLws(value), 2 ** 31 - 1);
  if (rseq === undefined || rseq === 0) throw malformed(`RSeq "${value}": a number 1..2^31-1 expected`);
  return rseq;
}

/** RAck (RFC 3262 7.2): `response-num CSeq-num Method`. */
export interface RAck {
  rseq: number;
  cseq: number;
  method: string;
}

export function parseRAck(value: string): RAck {
  const parts = trimLws(value)
    .split(' ')
    .flatMap((part) => part.split('\t'))
    .filter((part) => part !== '');
  const rseq = parseBoundedInt(parts[0] ?? '', 2 ** 31 - 1);
  const cseq = parseBoundedInt(parts[1] ?? '', 2 ** 31 - 1);
  const method = parts[2];
  if (parts.length !== 3 || rseq === undefined || cseq === undefined || method === undefined) {
    throw malformed(`RAck "${value}": "rseq cseq method" expected`);
  }
  return { rseq, cseq, method };
}

export function formatRAck(rack: RAck): string {
  return `${rack.rseq} ${rack.cseq} ${rack.method}`;
}

/** The dialog a Replaces names (RFC 3891 6.1), as the replacing party sees the replaced one. */
export interface Replaces {
  callId: string;
  toTag: string;
  fromTag: string;
  earlyOnly: boolean;
}

/** `callid;to-tag=x;from-tag=y[;early-only]`. */
export function parseReplaces(value: string): Replaces {
  const [callId, ...params] = splitOutside(trimLws(value), ';').map(trimLws);
  let toTag: string | undefined;
  let fromTag: string | undefined;
  let earlyOnly = false;
  for (const param of params) {
    const eq = param.indexOf('=');
    const name = (eq < 0 ? param : param.slice(0, eq)).toLowerCase();
    const paramValue = eq < 0 ? undefined : param.slice(eq + 1);
    if (name === 'to-tag') toTag = paramValue;
    else if (name === 'from-tag') fromTag = paramValue;
    else if (name === 'early-only') earlyOnly = true;
  }
  if (!callId || !toTag || !fromTag) throw malformed(`Replaces "${value}": a Call-ID, to-tag and from-tag expected`);
  return { callId, toTag, fromTag, earlyOnly };
}

export function formatReplaces(replaces: Replaces): string {
  const early = replaces.earlyOnly ? ';early-only' : '';
  return `${replaces.callId};to-tag=${replaces.toTag};from-tag=${replaces.fromTag}${early}`;
}

/** A Refer-To read (RFC 3515 2.1): the address, its URI without the embedded headers, and a Replaces among them. */
export interface ReferTo {
  address: NameAddr;
  /** The URI to send the triggered request to (embedded headers removed from a SIP URI). */
  target: string;
  /** The embedded headers (`?Replaces=...&Require=replaces`), names as written. */
  headers: ReadonlyArray<readonly [string, string]>;
  replaces: Replaces | undefined;
}

export function parseReferTo(value: string): ReferTo {
  const address = parseNameAddr(value);
  if (address.uri.kind !== 'sip') return { address, target: address.uriText, headers: [], replaces: undefined };
  const { headers } = address.uri;
  const replacesValue = headers.find(([name]) => name.toLowerCase() === 'replaces')?.[1];
  return {
    address,
    target: formatSipUri({ ...address.uri, headers: [] }),
    headers,
    replaces: replacesValue === undefined ? undefined : parseReplaces(replacesValue),
  };
}

/** A Refer-To value for `target`, with a Replaces embedded when given (its `;` and `=` escaped by formatSipUri). */
export function formatReferTo(target: string, replaces?: Replaces): string {
  if (replaces === undefined) return `<${target}>`;
  const uri = parseSipUri(target);
  return `<${formatSipUri({ ...uri, headers: [...uri.headers, ['Replaces', formatReplaces(replaces)]] })}>`;
}

/** The content type of a REFER's NOTIFY body (RFC 3515 2.4.5, RFC 3420). */
export const SIPFRAG_CONTENT_TYPE = 'message/sipfrag;version=2.0';

/** The sipfrag a NOTIFY reports the referred request's progress with: its status line alone. */
export function sipfrag(status: number, reason: string): SipBody {
  return { contentType: SIPFRAG_CONTENT_TYPE, content: `SIP/2.0 ${status} ${reason}\r\n` };
}

/** The status a sipfrag body reports, or undefined when it holds no status line. */
export function sipfragStatus(body: SipBody | undefined): { status: number; reason: string } | undefined {
  if (body === undefined) return undefined;
  const end = body.content.indexOf('\n');
  const raw = end < 0 ? body.content : body.content.slice(0, end);
  const line = trimLws(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
  if (line.slice(0, 8).toUpperCase() !== 'SIP/2.0 ') return undefined;
  const status = parseBoundedInt(line.slice(8, 11), 699);
  if (status === undefined || status < 100 || (line.length > 11 && line.charAt(11) !== ' ')) return undefined;
  return { status, reason: line.slice(12) };
}

/** An Event header (RFC 6665 8.2.1): the package and its `id`, which tells subscriptions of one dialog apart. */
export interface EventHeader {
  /** Lower case (`refer`, `presence`, ...). */
  package: string;
  id: string | undefined;
}

export function parseEventHeader(value: string): EventHeader {
  const [name = '', ...params] = splitOutside(trimLws(value), ';').map(trimLws);
  if (name === '') throw malformed(`Event "${value}": a package expected`);
  let id: string | undefined;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq > 0 && trimLws(param.slice(0, eq)).toLowerCase() === 'id') id = trimLws(param.slice(eq + 1));
  }
  return { package: name.toLowerCase(), id };
}

/** A Subscription-State header (RFC 6665 8.2.3). */
export interface SubscriptionState {
  /** Lower case: active, pending, terminated (or an extension). */
  state: string;
  /** Seconds, when given. */
  expires: number | undefined;
  reason: string | undefined;
}

export function parseSubscriptionState(value: string): SubscriptionState {
  const [state = '', ...params] = splitOutside(trimLws(value), ';').map(trimLws);
  if (state === '') throw malformed(`Subscription-State "${value}": a state expected`);
  let expires: number | undefined;
  let reason: string | undefined;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0) continue;
    const name = trimLws(param.slice(0, eq)).toLowerCase();
    const paramValue = trimLws(param.slice(eq + 1));
    if (name === 'expires') expires = parseBoundedInt(paramValue, 2 ** 32 - 1);
    else if (name === 'reason') reason = paramValue.toLowerCase();
  }
  return { state: state.toLowerCase(), expires, reason };
}

/** A Session-Expires header (RFC 4028 4): the session interval in seconds and who refreshes, when said. */
export interface SessionExpires {
  delta: number;
  refresher: 'uac' | 'uas' | undefined;
}

/** `delta-seconds *(;se-params)`, with `refresher=uac|uas` among them; the interval at least 1 s. */
export function parseSessionExpires(value: string): SessionExpires {
  const [delta = '', ...params] = splitOutside(trimLws(value), ';').map(trimLws);
  const seconds = parseBoundedInt(delta, 2 ** 32 - 1);
  if (seconds === undefined || seconds === 0) throw malformed(`Session-Expires "${value}": delta-seconds expected`);
  let refresher: 'uac' | 'uas' | undefined;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0 || trimLws(param.slice(0, eq)).toLowerCase() !== 'refresher') continue;
    const who = trimLws(param.slice(eq + 1)).toLowerCase();
    if (who !== 'uac' && who !== 'uas') throw malformed(`Session-Expires "${value}": refresher is uac or uas`);
    refresher = who;
  }
  return { delta: seconds, refresher };
}

/** Min-SE (RFC 4028 5): delta-seconds, parameters ignored. */
export function parseMinSE(value: string): number {
  const [delta = ''] = splitOutside(trimLws(value), ';').map(trimLws);
  const seconds = parseBoundedInt(delta, 2 ** 32 - 1);
  if (seconds === undefined) throw malformed(`Min-SE "${value}": delta-seconds expected`);
  return seconds;
}

/**
 * The o= line of an SDP body (RFC 4566 5.2): a session description whose origin (session id
 * and version) is unchanged describes the same session (RFC 3264 8), so an offer with it
 * changes nothing; undefined for a body that is not SDP or has none.
 */
export function sdpOrigin(body: SipBody | undefined): string | undefined {
  if (body === undefined || body.contentType.split(';', 1)[0]!.trim().toLowerCase() !== DEFAULT_CONTENT_TYPE) return undefined;
  const line = /^o=(.*)$/m.exec(body.content)?.[1];
  return line === undefined ? undefined : line.trim().split(/\s+/).join(' ');
}

/** What a UAS grants for an INVITE or UPDATE (RFC 4028 9): the interval, who refreshes, and whether the peer takes `timer`. */
export interface SessionTerms {
  interval: number;
  refresher: 'uac' | 'uas';
  /** The requester supports `timer`: the 2xx says `Require: timer`. */
  require: boolean;
}

/**
 * RFC 4028 9 as UAS: a Session-Expires below our minimum is refused (422 with our Min-SE);
 * otherwise the interval is the one asked for, no longer than ours unless the peer's Min-SE
 * wants more, and with none asked ours. The refresher is the one asked for, else the
 * requester when it supports `timer`, else us (a requester that does not know session timers
 * cannot refresh). Throws SipParseError (400) for a header that does not read.
 */
export function sessionTermsAsUas(headers: SipHeaders, settings: { expires: number; minSE: number })
  : SessionTerms | { tooSmall: number } {
  const asked = headers.has('Session-Expires') ? parseSessionExpires(headers.get('Session-Expires')!) : undefined;
  const peerMin = headers.has('Min-SE') ? parseMinSE(headers.get('Min-SE')!) : 0;
  if (asked !== undefined && asked.delta < settings.minSE) return { tooSmall: settings.minSE };
  const longest = Math.max(settings.expires, settings.minSE, peerMin);
  const interval = asked === undefined ? longest : Math.min(asked.delta, longest);
  const supports = hasOptionTag(headers, 'Supported', 'timer') || hasOptionTag(headers, 'Require', 'timer');
  const refresher = supports ? asked?.refresher ?? 'uac' : 'uas';
  return { interval, refresher, require: supports };
}

/** The headers of a 2xx that grants `terms`. */
export function sessionTermsHeaders(terms: SessionTerms): Array<[string, string]> {
  const headers: Array<[string, string]> = [['Session-Expires', `${terms.interval};refresher=${terms.refresher}`]];
  if (terms.require) headers.push(['Require', 'timer']);
  return headers;
}
