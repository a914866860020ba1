/**
 * Rayo errors (XEP-0327): the stanza error a command gets back, as a typed value, and the
 * `<iq type='error'>` that carries it. The conditions and types are those the XEP's error
 * examples use (015-020, 026, 029-033, 037-038, 041, 047-058, 060, 081, 084, 088).
 */
import { el, type XmlElement } from '../../../xml/element.js';

/** RFC 6120 stanza error conditions. */
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

/** The stanza error conditions a Rayo entity answers with (RFC 6120 8.3.3). */
export type RayoErrorCondition =
  | 'bad-request'
  | 'conflict'
  | 'feature-not-implemented'
  | 'forbidden'
  | 'internal-server-error'
  | 'item-not-found'
  | 'not-allowed'
  | 'not-authorized'
  | 'policy-violation'
  | 'registration-required'
  | 'resource-constraint'
  | 'service-unavailable'
  | 'unexpected-request';

export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** What a refused command gets: condition, error type and a sentence for the client. */
export interface RayoError {
  readonly condition: RayoErrorCondition;
  readonly type: StanzaErrorType;
  /** Human-readable explanation (sent as `<text>` when not empty). */
  readonly text: string;
}

/**
 * The type each condition has in the XEP's examples when nothing more specific applies.
 * The XEP gives some conditions two types: feature-not-implemented is `cancel` for an
 * unimplemented command or component (047, 054) and `modify` for an unsupported option value
 * (033, 048, 055); conflict is `cancel` for another controlling party or join (026, 041, 058)
 * and `modify` for a dial `uri` already in use (020). Pass the type explicitly for those.
 */
export const DEFAULT_ERROR_TYPES: Readonly<Record<RayoErrorCondition, StanzaErrorType>> = {
  'bad-request': 'modify',
  conflict: 'cancel',
  'feature-not-implemented': 'cancel',
  forbidden: 'auth',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'registration-required': 'auth',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'unexpected-request': 'wait',
};

export function rayoError(condition: RayoErrorCondition, text: string, type: StanzaErrorType = DEFAULT_ERROR_TYPES[condition]): RayoError {
  return { condition, type, text };
}

/** Shorthands for the conditions validation produces. */
export const badRequest = (text: string): RayoError => rayoError('bad-request', text);
/** An option value the server does not implement (XEP: feature-not-implemented, modify). */
export const unsupportedOption = (text: string): RayoError => rayoError('feature-not-implemented', text, 'modify');
/** A command or component the server does not implement (XEP: feature-not-implemented, cancel). */
export const unsupportedCommand = (text: string): RayoError => rayoError('feature-not-implemented', text, 'cancel');
/** More than the server's limits allow (count of documents, size of a body). */
export const overLimit = (text: string): RayoError => rayoError('policy-violation', text);

/** The addressing of a reply: from the entity acted on, to the client, with the request's id. */
export interface ReplyAddress {
  readonly from: string;
  readonly to: string;
  readonly id: string;
}

/** The `<error>` element of a stanza error. */
export function buildErrorElement(error: RayoError): XmlElement {
  const element = el('error', { type: error.type }, el(error.condition, { xmlns: NS_STANZAS }));
  if (error.text !== '') element.add('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, error.text);
  return element;
}

/**
 * `<iq type='error'>` answering a command. As in every error example of the XEP, the
 * request's payload is echoed before the `<error>` (give the element the client sent, even
 * when it was malformed: it cannot always be rebuilt from a typed command).
 */
export function buildIqError(address: ReplyAddress, error: RayoError, payload?: XmlElement): XmlElement {
  return el('iq', { from: address.from, to: address.to, type: 'error', id: address.id }, payload, buildErrorElement(error));
}

/** `<iq type='result'>`, with an optional payload (a `ref`, a disco answer). */
export function buildIqResult(address: ReplyAddress, payload?: XmlElement): XmlElement {
  return el('iq', { from: address.from, to: address.to, type: 'result', id: address.id }, payload);
}

/** The error of an `<iq type='error'>` (what a client reads back); undefined when it has none. */
export function parseIqError(iq: XmlElement): RayoError | undefined {
  const error = iq.element('error');
  if (!error) return undefined;
  let condition: string | undefined;
  let text = '';
  for (const child of error.elements()) {
    if (child.attrs.xmlns !== NS_STANZAS) continue;
    if (child.name === 'text') text = child.text();
    else condition = child.name;
  }
  if (condition === undefined || !(condition in DEFAULT_ERROR_TYPES)) return undefined;
  const type = error.attrs.type;
  const known: readonly string[] = ['auth', 'cancel', 'continue', 'modify', 'wait'];
  const c = condition as RayoErrorCondition;
  return { condition: c, type: type !== undefined && known.includes(type) ? (type as StanzaErrorType) : DEFAULT_ERROR_TYPES[c], text };
}
