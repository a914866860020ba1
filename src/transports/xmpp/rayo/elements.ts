/**
 * The typed layer between XEP-0327 (Rayo) XML and the Rayo service, with no call logic:
 * commands parsed and validated (commands.ts), events, results and disco answers built
 * (events.ts), stanza errors (errors.ts), addressing (address.ts), namespaces (namespaces.ts).
 * Import from here.
 */
import type { XmlElement } from '../../../xml/element.js';
import { rayoError, type RayoError } from './errors.js';

export * from './address.js';
export * from './commands.js';
export * from './errors.js';
export * from './events.js';
export {
  isRayoNamespace,
  NS_CAPS,
  NS_DELAY,
  NS_DISCO_INFO,
  NS_EXT,
  NS_EXT_COMPLETE,
  NS_INPUT,
  NS_INPUT_COMPLETE,
  NS_OUTPUT,
  NS_OUTPUT_COMPLETE,
  NS_PROMPT,
  NS_RAYO,
  NS_RAYO_CALL,
  NS_RAYO_CLIENT,
  NS_RAYO_MIXER,
  NS_RECORD,
  NS_RECORD_COMPLETE,
  RAYO_NAMESPACES,
  MAX_ATTRIBUTE_CHARS,
  MAX_DURATION_MS,
  resolve,
  type NsScope,
} from './namespaces.js';

/** The largest message body forwarded to a call's remote party. */
export const MAX_CALL_MESSAGE_CHARS = 4096;

/**
 * A `<message>` sent to a call's JID (XEP "Call-bound Messages", example 090): type
 * 'normal' (or no type, which means normal) MAY be forwarded to the remote party, whose body
 * this gives; any other type is feature-not-implemented (modify). A message without a body
 * has nothing to forward (bad-request).
 */
export function parseCallMessage(message: XmlElement): { body: string } | RayoError {
  const type = message.attrs.type ?? 'normal';
  if (type !== 'normal') return rayoError('feature-not-implemented', `a message of type ${type} is not forwarded to a call; use type normal`, 'modify');
  const body = message.element('body')?.text();
  if (body === undefined || body === '') return rayoError('bad-request', 'the message has no body to forward to the call');
  if (body.length > MAX_CALL_MESSAGE_CHARS) return rayoError('policy-violation', `the message body is longer than ${MAX_CALL_MESSAGE_CHARS} characters`);
  return { body };
}
