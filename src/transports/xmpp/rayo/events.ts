/**
 * Rayo events and results (XEP-0327): what the server sends. Events travel in directed
 * presence from the call, mixer or component to the client (`end` and `complete` with
 * type='unavailable'); a command that creates something is answered with a `ref`. The
 * builders write them from typed values; `parseEvent` reads them back (clients, tests).
 */
import { createHash } from 'node:crypto';
import { el, type XmlElement } from '../../../xml/element.js';
import { badRequest, rayoError, type RayoError } from './errors.js';
import type { Header, JoinTarget, ParseResult } from './commands.js';
import {
  Attrs,
  childrenOf,
  EMPTY_SCOPE,
  fail,
  NS_CAPS,
  NS_DELAY,
  NS_DISCO_INFO,
  NS_EXT,
  NS_EXT_COMPLETE,
  NS_INPUT_COMPLETE,
  NS_OUTPUT_COMPLETE,
  NS_PROMPT,
  NS_RAYO,
  NS_RAYO_CALL,
  NS_RAYO_CLIENT,
  NS_RAYO_MIXER,
  NS_RECORD_COMPLETE,
  RayoFailure,
  resolve,
  type NsScope,
  type Resolved,
} from './namespaces.js';

// ---------------------------------------------------------------------------------------------
// Types

export type EndReason = 'hungup' | 'hangup-command' | 'timeout' | 'busy' | 'rejected' | 'error';
export const END_REASONS: readonly EndReason[] = ['hungup', 'hangup-command', 'timeout', 'busy', 'rejected', 'error'];

/** The reason a component completed, each in its namespace. */
export type CompleteReason =
  /** urn:xmpp:rayo:ext:complete:1 */
  | { readonly kind: 'stop' }
  | { readonly kind: 'hangup' }
  /** The schema types it as a string: an optional explanation. */
  | { readonly kind: 'error'; readonly text?: string }
  /** urn:xmpp:rayo:output:complete:1 */
  | { readonly kind: 'finish' }
  | { readonly kind: 'max-time' }
  /** urn:xmpp:rayo:input:complete:1; `content` is the result document (NLSML), sent as CDATA. */
  | { readonly kind: 'match'; readonly contentType: string; readonly content: string }
  | { readonly kind: 'noinput' }
  | { readonly kind: 'nomatch' }
  /** urn:xmpp:rayo:record:complete:1 */
  | { readonly kind: 'max-duration' }
  | { readonly kind: 'initial-timeout' }
  | { readonly kind: 'final-timeout' };

export type CompleteReasonKind = CompleteReason['kind'];

export const COMPLETE_REASON_NS: Readonly<Record<CompleteReasonKind, string>> = {
  stop: NS_EXT_COMPLETE,
  hangup: NS_EXT_COMPLETE,
  error: NS_EXT_COMPLETE,
  finish: NS_OUTPUT_COMPLETE,
  'max-time': NS_OUTPUT_COMPLETE,
  match: NS_INPUT_COMPLETE,
  noinput: NS_INPUT_COMPLETE,
  nomatch: NS_INPUT_COMPLETE,
  'max-duration': NS_RECORD_COMPLETE,
  'initial-timeout': NS_RECORD_COMPLETE,
  'final-timeout': NS_RECORD_COMPLETE,
};

/** Where a record component put its recording (sent with every record completion). */
export interface Recording {
  readonly uri: string;
  /** ms */
  readonly duration: number;
  /** bytes */
  readonly size: number;
}

export type RayoEvent =
  | { readonly kind: 'offer'; readonly to: string; readonly from?: string; readonly headers: readonly Header[] }
  | { readonly kind: 'ringing' | 'answered'; readonly headers: readonly Header[] }
  | { readonly kind: 'end'; readonly reason: EndReason; readonly platformCode?: string; readonly headers: readonly Header[] }
  | { readonly kind: 'joined' | 'unjoined'; readonly target: JoinTarget }
  | { readonly kind: 'started-speaking' | 'stopped-speaking'; readonly callUri: string }
  | { readonly kind: 'complete'; readonly reason: CompleteReason; readonly recording?: Recording }
  | { readonly kind: 'input-timers-started' };

/** An iq result payload naming a new call, mixer or component. */
export interface Ref {
  readonly uri: string;
}

// ---------------------------------------------------------------------------------------------
// Building

function headerElements(headers: readonly Header[]): XmlElement[] {
  return headers.map((h) => el('header', { name: h.name, value: h.value }));
}

function targetAttrs(target: JoinTarget): Record<string, string> {
  return target.kind === 'call' ? { 'call-uri': target.callUri } : { 'mixer-name': target.mixerName };
}

/** The event's payload element (in its namespace). */
export function buildEvent(event: RayoEvent): XmlElement {
  switch (event.kind) {
    case 'offer':
      return el('offer', { xmlns: NS_RAYO, to: event.to, from: event.from }, ...headerElements(event.headers));
    case 'ringing':
    case 'answered':
      return el(event.kind, { xmlns: NS_RAYO }, ...headerElements(event.headers));
    case 'end':
      return el('end', { xmlns: NS_RAYO }, el(event.reason, { 'platform-code': event.platformCode }), ...headerElements(event.headers));
    case 'joined':
    case 'unjoined':
      return el(event.kind, { xmlns: NS_RAYO, ...targetAttrs(event.target) });
    case 'started-speaking':
    case 'stopped-speaking':
      return el(event.kind, { xmlns: NS_RAYO, 'call-uri': event.callUri });
    case 'complete':
      return el('complete', { xmlns: NS_EXT }, buildCompleteReason(event.reason), event.recording && buildRecording(event.recording));
    case 'input-timers-started':
      return el('input-timers-started', { xmlns: NS_PROMPT });
  }
}

export function buildCompleteReason(reason: CompleteReason): XmlElement {
  const element = el(reason.kind, { xmlns: COMPLETE_REASON_NS[reason.kind] });
  if (reason.kind === 'match') element.setAttr('content-type', reason.contentType).append(reason.content);
  if (reason.kind === 'error' && reason.text) element.append(reason.text);
  return element;
}

export function buildRecording(recording: Recording): XmlElement {
  return el('recording', { xmlns: NS_RECORD_COMPLETE, uri: recording.uri, duration: recording.duration, size: recording.size });
}

/** `<ref uri>`: the payload of the iq result to dial, to a component's start, to a join that creates a mixer. */
export function buildRef(ref: Ref): XmlElement {
  return el('ref', { xmlns: NS_RAYO, uri: ref.uri });
}

/** XEP-0115 entity capabilities (`<c>`), as the XEP puts in an offer's and a new mixer's presence. */
export interface Caps {
  readonly node: string;
  readonly ver: string;
  readonly hash?: string;
}

export function buildCaps(caps: Caps): XmlElement {
  return el('c', { xmlns: NS_CAPS, hash: caps.hash ?? 'sha-1', node: caps.node, ver: caps.ver });
}

export interface PresenceOptions {
  /** Add entity capabilities (the first presence of a call or mixer). */
  readonly caps?: Caps;
  /** XEP-0203 timestamp, which the XEP says servers SHOULD put on every event. */
  readonly stamp?: Date;
}

/**
 * The directed presence carrying an event: from the call, mixer or component, to the client;
 * `end` and `complete` (the entity becoming unavailable) with type='unavailable'. Without an
 * event, the plain presence of a new mixer (XEP example 042).
 */
export function buildEventPresence(address: { from: string; to: string }, event: RayoEvent | undefined, options: PresenceOptions = {}): XmlElement {
  const unavailable = event !== undefined && (event.kind === 'end' || event.kind === 'complete');
  const presence = el('presence', { from: address.from, to: address.to, type: unavailable ? 'unavailable' : undefined });
  if (options.caps) presence.append(buildCaps(options.caps));
  if (event) presence.append(buildEvent(event));
  if (options.stamp) presence.append(el('delay', { xmlns: NS_DELAY, from: address.from, stamp: options.stamp.toISOString().replace(/\.\d{3}Z$/, 'Z') }));
  return presence;
}

// ---------------------------------------------------------------------------------------------
// Service discovery and capabilities

export interface DiscoIdentity {
  readonly category: string;
  readonly type: string;
  readonly name?: string;
  readonly lang?: string;
}

export interface DiscoInfo {
  readonly identities: readonly DiscoIdentity[];
  readonly features: readonly string[];
}

/**
 * What Rayo entities announce (XEP "Determining Support", examples 092 and 094): the
 * service answers with the feature urn:xmpp:rayo:1, a client with urn:xmpp:rayo:client:1.
 * The examples show no identity; a service adds the identities it has (XEP-0030 wants one).
 */
export const RAYO_DISCO = {
  service: { identities: [], features: [NS_RAYO] },
  client: { identities: [], features: [NS_RAYO_CLIENT] },
} as const satisfies Record<string, DiscoInfo>;

/** The caps nodes of XEP-0327: a client, a call (in offers), a mixer (its first presence). */
export const CAPS_NODES = { client: NS_RAYO_CLIENT, call: NS_RAYO_CALL, mixer: NS_RAYO_MIXER } as const;

/** The `<query xmlns='http://jabber.org/protocol/disco#info'>` answer. */
export function buildDiscoInfo(info: DiscoInfo, node?: string): XmlElement {
  const query = el('query', { xmlns: NS_DISCO_INFO, node });
  for (const identity of info.identities) {
    query.add('identity', { category: identity.category, type: identity.type, name: identity.name, 'xml:lang': identity.lang });
  }
  for (const feature of info.features) query.add('feature', { var: feature });
  return query;
}

/** Reads a disco#info answer (does a client support Rayo: `features` has urn:xmpp:rayo:client:1). */
export function parseDiscoInfo(query: XmlElement): DiscoInfo | undefined {
  if (query.name !== 'query' || query.attrs.xmlns !== NS_DISCO_INFO) return undefined;
  return {
    identities: query.elements('identity').map((i) => ({
      category: i.attrs.category ?? '',
      type: i.attrs.type ?? '',
      ...(i.attrs.name !== undefined && { name: i.attrs.name }),
      ...(i.attrs['xml:lang'] !== undefined && { lang: i.attrs['xml:lang'] }),
    })),
    features: query.elements('feature').flatMap((f) => (f.attrs.var ? [f.attrs.var] : [])),
  };
}

/** A disco#info request (`<iq type='get'><query xmlns=disco#info [node]/></iq>`): its node, or undefined when it is not one. */
export function parseDiscoInfoRequest(iq: XmlElement): { node?: string } | undefined {
  if (iq.name !== 'iq' || iq.attrs.type !== 'get') return undefined;
  const query = iq.elements()[0];
  if (!query || query.name !== 'query' || query.attrs.xmlns !== NS_DISCO_INFO || iq.elements().length !== 1) return undefined;
  return query.attrs.node !== undefined ? { node: query.attrs.node } : {};
}

/** XEP-0115 verification string (5.1) of identities and features (no extended forms): sha-1, base64. */
export function capsVer(info: DiscoInfo): string {
  const identities = info.identities
    .map((i) => `${i.category}/${i.type}/${i.lang ?? ''}/${i.name ?? ''}`)
    .sort()
    .map((s) => `${s}<`)
    .join('');
  const features = [...new Set(info.features)].sort().map((f) => `${f}<`).join('');
  return createHash('sha1').update(identities + features, 'utf8').digest('base64');
}

// ---------------------------------------------------------------------------------------------
// Client presence to the service (XEP "Client Registration", examples 012 and 013)

export interface ClientPresence {
  /** A potential controlling party: directed presence with `<show>chat</show>`. */
  readonly available: boolean;
  /** The client's caps, when it sent them. */
  readonly caps?: Caps;
  /** The caps node is urn:xmpp:rayo:client:1. */
  readonly rayoClient: boolean;
}

/**
 * Reads a client's directed presence to the service domain: `<show>chat</show>` makes it a
 * potential controlling party; `<show>dnd</show>`, any other show, no show, or
 * type='unavailable' withdraw it. Undefined for presence that is not availability
 * (subscriptions, probes, errors).
 */
export function parseClientPresence(presence: XmlElement): ClientPresence | undefined {
  if (presence.name !== 'presence') return undefined;
  const type = presence.attrs.type;
  if (type !== undefined && type !== 'unavailable') return undefined;
  const c = presence.elements('c').find((e) => e.attrs.xmlns === NS_CAPS);
  const caps = c && c.attrs.node && c.attrs.ver ? { node: c.attrs.node, ver: c.attrs.ver, ...(c.attrs.hash !== undefined && { hash: c.attrs.hash }) } : undefined;
  const show = presence.element('show')?.text().trim();
  return {
    available: type === undefined && show === 'chat',
    ...(caps && { caps }),
    rayoClient: caps?.node === NS_RAYO_CLIENT,
  };
}

// ---------------------------------------------------------------------------------------------
// Parsing events (client side)

/** Reads an event payload (a child of presence). Never throws. */
export function parseEvent(payload: XmlElement, scope: NsScope = EMPTY_SCOPE): ParseResult<RayoEvent> {
  try {
    return { ok: true, value: readEvent(resolve(payload, scope)) };
  } catch (err) {
    if (err instanceof RayoFailure) return { ok: false, error: err.error };
    return { ok: false, error: rayoError('internal-server-error', 'the event could not be read') };
  }
}

/** The Rayo event of a presence stanza, if it carries one. */
export function eventOfPresence(presence: XmlElement): ParseResult<RayoEvent> | undefined {
  for (const child of presence.elements()) {
    const r = resolve(child);
    if (r.ns === NS_RAYO || r.ns === NS_EXT || r.ns === NS_PROMPT) return parseEvent(child);
  }
  return undefined;
}

function headersOf(r: Resolved, label: string, other?: (child: Resolved) => boolean): Header[] {
  const headers: Header[] = [];
  for (const child of childrenOf(r)) {
    if (child.ns === NS_RAYO && child.local === 'header') {
      const name = child.element.attrs.name;
      const value = child.element.attrs.value;
      if (name === undefined || value === undefined) fail(badRequest('<header> needs a name and a value'));
      headers.push({ name, value });
    } else if (!other?.(child)) {
      fail(badRequest(`${label} cannot hold <${child.local}>`));
    }
  }
  return headers;
}

function targetOf(r: Resolved): JoinTarget {
  const callUri = r.element.attrs['call-uri'];
  const mixerName = r.element.attrs['mixer-name'];
  if ((callUri === undefined) === (mixerName === undefined)) fail(badRequest(`<${r.local}> needs exactly one of call-uri and mixer-name`));
  return callUri !== undefined ? { kind: 'call', callUri } : { kind: 'mixer', mixerName: mixerName! };
}

function readEvent(r: Resolved): RayoEvent {
  if (r.ns === NS_RAYO) {
    switch (r.local) {
      case 'offer': {
        const attrs = new Attrs(r.element, '<offer>');
        const to = attrs.required('to');
        const from = attrs.string('from');
        return { kind: 'offer', to, ...(from !== undefined && { from }), headers: headersOf(r, '<offer>') };
      }
      case 'ringing':
      case 'answered':
        return { kind: r.local as 'ringing' | 'answered', headers: headersOf(r, `<${r.local}>`) };
      case 'end': {
        let reason: EndReason | undefined;
        let platformCode: string | undefined;
        const headers = headersOf(r, '<end>', (child) => {
          if (child.ns !== NS_RAYO || !(END_REASONS as readonly string[]).includes(child.local)) return false;
          if (reason !== undefined) fail(badRequest('<end> holds more than one reason'));
          reason = child.local as EndReason;
          platformCode = child.element.attrs['platform-code'];
          return true;
        });
        if (reason === undefined) fail(badRequest('<end> needs a reason'));
        return { kind: 'end', reason, ...(platformCode !== undefined && { platformCode }), headers };
      }
      case 'joined':
      case 'unjoined':
        return { kind: r.local as 'joined' | 'unjoined', target: targetOf(r) };
      case 'started-speaking':
      case 'stopped-speaking':
        return { kind: r.local as 'started-speaking' | 'stopped-speaking', callUri: new Attrs(r.element, `<${r.local}>`).required('call-uri') };
    }
  } else if (r.ns === NS_EXT && r.local === 'complete') {
    let reason: CompleteReason | undefined;
    let recording: Recording | undefined;
    for (const child of childrenOf(r)) {
      if (child.ns === NS_RECORD_COMPLETE && child.local === 'recording') {
        const attrs = new Attrs(child.element, '<recording>');
        recording = { uri: attrs.required('uri'), duration: attrs.integer('duration', 0, 0, Number.MAX_SAFE_INTEGER), size: attrs.integer('size', 0, 0, Number.MAX_SAFE_INTEGER, ' bytes') };
        continue;
      }
      const kind = child.local as CompleteReasonKind;
      if (COMPLETE_REASON_NS[kind] !== child.ns) fail(badRequest(`<complete> cannot hold <${child.local} xmlns='${child.ns}'>`));
      if (reason !== undefined) fail(badRequest('<complete> holds more than one reason'));
      if (kind === 'match') reason = { kind, contentType: child.element.attrs['content-type'] ?? 'application/nlsml+xml', content: child.element.text() };
      else if (kind === 'error') reason = child.element.text().trim() ? { kind, text: child.element.text().trim() } : { kind };
      else reason = { kind } as CompleteReason;
    }
    if (reason === undefined) fail(badRequest('<complete> needs a reason'));
    return { kind: 'complete', reason, ...(recording && { recording }) };
  } else if (r.ns === NS_PROMPT && r.local === 'input-timers-started') {
    return { kind: 'input-timers-started' };
  }
  return fail(badRequest(`<${r.local}${r.ns ? ` xmlns='${r.ns}'` : ''}> is not a Rayo event`));
}

/** The `ref` of an iq result (client side); a RayoError when it has none. */
export function parseRef(iq: XmlElement): Ref | RayoError {
  const ref = iq.elements('ref').find((e) => e.attrs.xmlns === NS_RAYO);
  if (!ref) return badRequest('the result carries no <ref>');
  const uri = ref.attrs.uri;
  if (uri === undefined || uri === '') return badRequest('<ref> has no uri');
  return { uri };
}
