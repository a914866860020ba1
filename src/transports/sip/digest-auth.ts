/**
 * Digest authentication of a SIP request (RFC 3261 22, RFC 8760), for whoever needs it: the
 * registrar (Authorization, 401 with WWW-Authenticate) and calls (Proxy-Authorization, 407
 * with Proxy-Authenticate). The realm is the domain of the account; every answer is one login
 * attempt through the server's login guard (AuthService.checkDigest): counted, throttled and
 * logged like the other protocols' logins.
 */
import type { Logger } from '../../log.js';
import type { AuthService } from '../../services/auth.js';
import type { DigestAuthenticator } from '../../services/digest.js';
import type { AccountRecord } from '../../store/store.js';
import { SipParseError } from './error.js';
import { parseAuthHeader } from './headers.js';
import type { SipRequest } from './message.js';
import type { SipEndpoint } from './transactions.js';
import { parseUri, type Uri } from './uri.js';

/** How a request's Digest answer went. */
export type SipAuthOutcome =
  | { kind: 'ok'; account: AccountRecord }
  /** No answer for the realm (`challenged`), a wrong one (`auth_failed`), or a right one on an expired nonce (`stale`): challenge again. */
  | { kind: 'challenge'; why: 'challenged' | 'auth_failed' | 'stale' }
  /** The address or the account is past its budget of failures: 403. */
  | { kind: 'refused' }
  /** An unreadable answer: 400 with this reason phrase. */
  | { kind: 'bad'; reason: string };

export interface SipAuthDeps {
  auth: AuthService;
  digest: DigestAuthenticator;
  log: Logger;
}

/**
 * Checks the Digest answer of `request` for `realm` in the `header` (Authorization for a
 * registrar, Proxy-Authorization for a proxy), its `uri` against the Request-URI.
 */
export async function authenticateRequest(
  deps: SipAuthDeps,
  request: SipRequest,
  source: SipEndpoint,
  realm: string,
  header: 'Authorization' | 'Proxy-Authorization',
  sameUri: (digestUri: string, requestUri: Uri) => boolean,
): Promise<SipAuthOutcome> {
  const credentials = digestCredentialsFor(request.headers.getAll(header), realm, header);
  if (typeof credentials === 'string') return { kind: 'bad', reason: credentials };
  if (credentials === undefined) return { kind: 'challenge', why: 'challenged' };
  const digestUri = credentials.get('uri');
  let requestUri: Uri;
  try {
    requestUri = parseUri(request.uri);
  } catch {
    return { kind: 'bad', reason: 'Bad Request (the Request-URI is unreadable)' };
  }
  if (digestUri !== undefined && !sameUri(digestUri, requestUri)) return { kind: 'bad', reason: 'Bad Request (the Digest uri is not the Request-URI)' };
  const params = Object.fromEntries(credentials);
  const userName = params.username ?? '';
  const address = source.host.replace(/^\[(.*)\]$/, '$1');
  const verdict = await deps.auth.checkDigest(userName, realm, address, (stored) => deps.digest.verify(params, request.method, stored));
  if (verdict.outcome === 'refused') return { kind: 'refused' };
  if (verdict.outcome === 'failed' || verdict.outcome === 'invalid') {
    deps.log.warn({ event: 'sip.auth_failed', user: userName, realm, address, method: request.method, reason: verdict.outcome === 'failed' ? 'wrong credentials' : verdict.detail }, 'SIP authentication failed');
    return { kind: 'challenge', why: 'auth_failed' };
  }
  if (verdict.stale) return { kind: 'challenge', why: 'stale' };
  return { kind: 'ok', account: verdict.account };
}

/**
 * The Digest credentials for `realm` among the headers (a request may carry several, one per
 * realm: RFC 3261 22.2); undefined when none is for this realm; the reason for a 400 when one
 * is unreadable.
 */
function digestCredentialsFor(values: readonly string[], realm: string, header: string): Map<string, string> | undefined | string {
  for (const value of values) {
    let parsed;
    try {
      parsed = parseAuthHeader(value);
    } catch (err) {
      return `Bad Request (${header}: ${err instanceof SipParseError ? err.reason : 'unreadable'})`;
    }
    if (parsed.scheme.toLowerCase() === 'digest' && parsed.params.get('realm')?.toLowerCase() === realm) return parsed.params;
  }
  return undefined;
}
