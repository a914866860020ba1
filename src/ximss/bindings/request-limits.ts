import type { Config } from '../../config.js';
import type { XmlLimits } from '../../xml/parser.js';

type Limits = Config['limits'];

/** What one XIMSS message may be, before and after login. */
export interface RequestProfile {
  /** Bytes of the message (a TCP document, an HTTP body). */
  readonly bytes: number;
  /** The XML guard's limits while it is parsed. */
  readonly xml: XmlLimits;
}

const profiles = new WeakMap<Limits, { preLogin: RequestProfile; session: RequestProfile }>();

/**
 * The limits a message is read with: tighter before login. For a TCP document the root is
 * the request itself (its children are its body elements); for an HTTP batch the root is
 * `<XIMSS>` and its children are the requests, counted by `batchRequests`.
 */
export function requestProfile(limits: Limits, loggedIn: boolean): RequestProfile {
  let pair = profiles.get(limits);
  if (!pair) {
    const xml = (elements: number): XmlLimits => ({
      depth: limits.xmlDepth,
      elements,
      attributes: limits.xmlAttributes,
      attributeChars: limits.xmlAttributeChars,
      textChars: limits.xmlTextChars,
      rootChildren: Number.POSITIVE_INFINITY,
    });
    pair = {
      // Never more before login than after.
      preLogin: {
        bytes: Math.min(limits.preLoginRequestBytes, limits.maxRequestBytes),
        xml: xml(Math.min(limits.preLoginXmlElements, limits.xmlElements)),
      },
      session: { bytes: limits.maxRequestBytes, xml: xml(limits.xmlElements) },
    };
    profiles.set(limits, pair);
  }
  return loggedIn ? pair.session : pair.preLogin;
}

/** The profile of an HTTP batch that may add at most `requests` requests. */
export function batchProfile(limits: Limits, loggedIn: boolean, requests: number): RequestProfile {
  const profile = requestProfile(limits, loggedIn);
  return { bytes: profile.bytes, xml: { ...profile.xml, rootChildren: Math.max(0, requests), batchRoot: 'XIMSS' } };
}
