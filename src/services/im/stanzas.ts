import { el, XmlElement } from '../../xml/element.js';
import { parseXml } from '../../xml/parser.js';

/** The XMPP namespaces the IM service speaks. */
export const NS = {
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  roster: 'jabber:iq:roster',
  discoInfo: 'http://jabber.org/protocol/disco#info',
  discoItems: 'http://jabber.org/protocol/disco#items',
  vcard: 'vcard-temp',
  vcardUpdate: 'vcard-temp:x:update',
  ping: 'urn:xmpp:ping',
  version: 'jabber:iq:version',
  time: 'urn:xmpp:time',
  delay: 'urn:xmpp:delay',
  chatStates: 'http://jabber.org/protocol/chatstates',
  carbons: 'urn:xmpp:carbons:2',
  forward: 'urn:xmpp:forward:0',
  hints: 'urn:xmpp:hints',
  stanzaId: 'urn:xmpp:sid:0',
  mam: 'urn:xmpp:mam:2',
  dataForms: 'jabber:x:data',
  rsm: 'http://jabber.org/protocol/rsm',
  blocking: 'urn:xmpp:blocking',
  blockingErrors: 'urn:xmpp:blocking:errors',
  offline: 'msgoffline',
  session: 'urn:ietf:params:xml:ns:xmpp-session',
  rosterVersioning: 'urn:xmpp:features:rosterver',
  /** A XIMSS client's detailed presence (`on-phone`, `in-meeting`…) carried along its XMPP `show`. */
  ximssPresence: 'urn:ximssd:presence:0',
} as const;

/** The chat states a message may carry (XEP-0085). */
export const CHAT_STATES = ['active', 'composing', 'paused', 'inactive', 'gone'] as const;

/** Parses a stanza the server itself wrote (a kept or relayed one); undefined when it does not parse. */
export function parseStanza(xml: string): XmlElement | undefined {
  try {
    return parseXml(xml);
  } catch {
    return undefined;
  }
}

/** The first child element in a namespace (by its `xmlns` attribute), optionally of a name. */
export function childNs(stanza: XmlElement, ns: string, name?: string): XmlElement | undefined {
  for (const c of stanza.children) {
    if (typeof c !== 'string' && c.attrs.xmlns === ns && (name === undefined || c.name === name)) return c;
  }
  return undefined;
}

/** A deep copy (stanzas are changed per recipient: `to`, delay, stanza-id). */
export function copyStanza(stanza: XmlElement): XmlElement {
  return new XmlElement(stanza.name, { ...stanza.attrs }, stanza.children.map((c) => (typeof c === 'string' ? c : copyStanza(c))));
}

export type ErrorType = 'cancel' | 'continue' | 'modify' | 'auth' | 'wait';

/** The usual type of each stanza error condition (RFC 6120 8.3.3). */
const CONDITION_TYPES: Record<string, ErrorType> = {
  'bad-request': 'modify',
  conflict: 'cancel',
  'feature-not-implemented': 'cancel',
  forbidden: 'auth',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
};

/**
 * The error reply to a stanza (RFC 6120 8.3): addressed back to its sender, from its
 * recipient, with its id; an iq's request payload is left out, a message's body kept.
 */
export function errorReply(stanza: XmlElement, condition: string, text?: string, extra?: XmlElement): XmlElement {
  const reply = el(stanza.name, { from: stanza.attrs.to, to: stanza.attrs.from, id: stanza.attrs.id, type: 'error' });
  if (stanza.name === 'message') reply.append(...stanza.elements('body'));
  const error = reply.add('error', { type: CONDITION_TYPES[condition] ?? 'cancel' });
  error.add(condition, { xmlns: NS.stanzas });
  if (text) error.add('text', { xmlns: NS.stanzas, 'xml:lang': 'en' }, text);
  if (extra) error.append(extra);
  return reply;
}

/** The error condition and text of an error stanza. */
export function errorOf(stanza: XmlElement): { condition: string; text: string; code: number } {
  const error = stanza.element('error');
  let condition = 'undefined-condition';
  let text = '';
  for (const c of error?.elements() ?? []) {
    if (c.attrs.xmlns !== NS.stanzas) continue;
    if (c.name === 'text') text = c.text();
    else condition = c.name;
  }
  return { condition, text: text || condition.replace(/-/g, ' '), code: Number(error?.attrs.code) || SIGNAL_CODES[condition] || 500 };
}

/** The SIP-style code XIMSS reports for an XMPP error condition (errorIM signalCode). */
const SIGNAL_CODES: Record<string, number> = {
  'service-unavailable': 503,
  'recipient-unavailable': 480,
  'item-not-found': 404,
  'remote-server-not-found': 404,
  'remote-server-timeout': 408,
  forbidden: 403,
  'not-authorized': 401,
  'not-acceptable': 406,
  'not-allowed': 405,
  'policy-violation': 403,
  'bad-request': 400,
  'jid-malformed': 400,
  'resource-constraint': 503,
  'feature-not-implemented': 501,
};

/** An iq result to a request, with an optional payload. */
export function iqResult(request: XmlElement, payload?: XmlElement): XmlElement {
  return el('iq', { from: request.attrs.to, to: request.attrs.from, id: request.attrs.id, type: 'result' }, payload);
}

/** XEP-0203 delay: when the stanza was first sent (offline delivery, history). */
export function delay(stamp: number, from: string): XmlElement {
  return el('delay', { xmlns: NS.delay, from, stamp: new Date(stamp).toISOString().replace(/\.\d{3}Z$/, 'Z') });
}

/** A message that carries something to keep (a body, a subject), not only a chat state or a receipt. */
export function hasContent(message: XmlElement): boolean {
  return message.element('body') !== undefined || message.element('subject') !== undefined;
}
