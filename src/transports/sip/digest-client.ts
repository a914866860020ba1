/**
 * The client side of SIP Digest (RFC 3261 22.2, RFC 7616, RFC 8760): the Authorization or
 * Proxy-Authorization value that answers a 401's WWW-Authenticate or a 407's
 * Proxy-Authenticate, for the credentials the server holds for a trunk (config
 * sip.trunkUser, sip.trunkPassword). MD5 and SHA-256, their -sess variants, qop=auth with a
 * fresh cnonce, and RFC 2069's form when the challenge offers no qop. qop=auth-int alone is
 * not answered (it would hash the body: no trunk asks for it alone).
 *
 * The response is computed by services/digest.ts's expectedResponse, the one the server checks
 * its own challenges with: one formula for both directions.
 */
import { randomBytes } from 'node:crypto';
import { expectedResponse } from '../../services/digest.js';
import { digestHex, type DigestHash } from '../../services/passwords.js';
import { SipParseError } from './error.js';
import { parseAuthHeader } from './headers.js';
import type { SipResponse } from './message.js';

export interface DigestClientCredentials {
  user: string;
  password: string;
}

/** A challenge read from one WWW-Authenticate or Proxy-Authenticate value. */
interface Challenge {
  realm: string;
  nonce: string;
  opaque: string | undefined;
  hash: DigestHash;
  session: boolean;
  /** The algorithm as the challenge named it (echoed back), undefined when it named none (MD5). */
  algorithm: string | undefined;
  /** Whether qop=auth was offered; false means RFC 2069's form. */
  qopAuth: boolean;
}

/** Our preference among the algorithms offered (RFC 8760 2.4: the strongest one known). */
const STRENGTH: Readonly<Record<DigestHash, number>> = { 'SHA-256': 2, MD5: 1 };

/** One challenge value, or undefined when it is not a Digest challenge we can answer. */
function readChallenge(value: string): Challenge | undefined {
  let parsed;
  try {
    parsed = parseAuthHeader(value);
  } catch (err) {
    if (err instanceof SipParseError) return undefined;
    throw err;
  }
  if (parsed.scheme.toLowerCase() !== 'digest') return undefined;
  const { params } = parsed;
  const realm = params.get('realm');
  const nonce = params.get('nonce');
  if (realm === undefined || nonce === undefined) return undefined;
  const algorithm = params.get('algorithm');
  const name = (algorithm ?? 'MD5').toUpperCase();
  const session = name.endsWith('-SESS');
  const base = session ? name.slice(0, -5) : name;
  if (base !== 'MD5' && base !== 'SHA-256') return undefined;
  const qop = params.get('qop');
  const offered = qop === undefined ? [] : qop.split(',').map((q) => q.trim().toLowerCase());
  if (qop !== undefined && !offered.includes('auth')) return undefined;
  // A -sess HA1 covers the cnonce: it needs qop.
  if (session && qop === undefined) return undefined;
  return { realm, nonce, opaque: params.get('opaque'), hash: base, session, algorithm, qopAuth: qop !== undefined };
}

/** A quoted-string (RFC 3261 25.1): backslash and double quote escaped. */
function quoted(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export interface DigestAnswerOptions {
  method: string;
  /** The digest-uri: the Request-URI of the request sent again. */
  uri: string;
  credentials: DigestClientCredentials;
  /** The client nonce (fresh random by default; the tests give one). */
  cnonce?: string;
  /** The nonce count (1 by default: a nonce is answered once here). */
  nc?: number;
}

/**
 * The credentials answering the strongest challenge we know among `challenges` (the values of
 * one response's WWW-Authenticate or Proxy-Authenticate headers); undefined when none is a
 * Digest challenge we can answer.
 */
export function digestAnswer(challenges: readonly string[], options: DigestAnswerOptions): string | undefined {
  let best: Challenge | undefined;
  for (const value of challenges) {
    const challenge = readChallenge(value);
    if (challenge !== undefined && (best === undefined || STRENGTH[challenge.hash] > STRENGTH[best.hash])) best = challenge;
  }
  if (best === undefined) return undefined;
  const { user, password } = options.credentials;
  const cnonce = options.cnonce ?? randomBytes(12).toString('hex');
  const nc = (options.nc ?? 1).toString(16).padStart(8, '0');
  const response = expectedResponse({
    hash: best.hash,
    ha1: digestHex(best.hash, `${user}:${best.realm}:${password}`),
    session: best.session,
    nonce: best.nonce,
    method: options.method,
    uri: options.uri,
    qop: best.qopAuth ? { nc, cnonce } : undefined,
  });
  const parts = [
    `Digest username=${quoted(user)}`,
    `realm=${quoted(best.realm)}`,
    `nonce=${quoted(best.nonce)}`,
    `uri=${quoted(options.uri)}`,
    `response=${quoted(response)}`,
  ];
  if (best.algorithm !== undefined) parts.push(`algorithm=${best.algorithm}`);
  if (best.qopAuth) parts.push('qop=auth', `nc=${nc}`, `cnonce=${quoted(cnonce)}`);
  if (best.opaque !== undefined) parts.push(`opaque=${quoted(best.opaque)}`);
  return parts.join(', ');
}

/**
 * The header to add to a request sent again after `response` (401: Authorization from
 * WWW-Authenticate; 407: Proxy-Authorization from Proxy-Authenticate), and its value;
 * undefined for another status or a challenge we cannot answer.
 */
export function answerChallenge(response: SipResponse, options: DigestAnswerOptions): [name: 'Authorization' | 'Proxy-Authorization', value: string] | undefined {
  const pair =
    response.status === 401
      ? (['WWW-Authenticate', 'Authorization'] as const)
      : response.status === 407
        ? (['Proxy-Authenticate', 'Proxy-Authorization'] as const)
        : undefined;
  if (pair === undefined) return undefined;
  const value = digestAnswer(response.headers.getAll(pair[0]), options);
  return value === undefined ? undefined : [pair[1], value];
}
