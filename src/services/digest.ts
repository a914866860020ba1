import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DIGEST_HASHES, digestHex, storedDigestCredentials, type DigestHash } from './passwords.js';

/**
 * The server side of HTTP Digest authentication (RFC 7616; for SIP, RFC 3261 22 with
 * RFC 8760's SHA-256), protocol-independent: the caller parses the Authorization (or
 * Proxy-Authorization) header into its parameters, looks the account up by `username`, and
 * hands its stored credentials (services/passwords.ts digestCredentials) to `verify`.
 *
 * Nonces are stateless: a timestamp, random bytes and an HMAC of both and of the realm under
 * a secret, so that any node sharing the secret verifies a nonce another node made. What is
 * kept in memory is only the highest nonce count seen per nonce, to refuse replays (see
 * NonceCounts).
 *
 * The `-sess` variants (MD5-sess, SHA-256-sess) are accepted when their base algorithm is
 * offered, with qop=auth only (they need the client's cnonce), and never offered: SIP phones
 * do not use them. qop=auth-int is refused (it needs the message body; no SIP phone needs it).
 * The RFC 2069 form without qop is accepted for old phones; without a nonce count it cannot
 * be told apart from a replay within the nonce's lifetime.
 *
 * The digest-uri is not compared with the request's URI here: the protocol binding knows how
 * its URIs compare (a SIP Request-URI may be written differently yet be the same).
 */

export type DigestAlgorithm = 'MD5' | 'MD5-sess' | 'SHA-256' | 'SHA-256-sess';

export interface DigestOptions {
  /** How long a nonce is accepted, in seconds (default 300); past that, a right answer is `stale`. */
  nonceLifetimeSeconds?: number;
  /** The algorithms offered, in the order of preference (default SHA-256 then MD5, as RFC 8760 8 asks). */
  algorithms?: readonly DigestHash[];
  /** How many nonces' counts are remembered for replay detection (default 4096). */
  trackedNonces?: number;
  /** The clock, in milliseconds (the tests move it). */
  now?: () => number;
}

/** Why an answer is refused: a code for the tests and the metrics, a detail for the log (never a secret). */
export type DigestRefusal =
  | 'malformed'
  | 'no-credentials'
  | 'algorithm'
  | 'realm'
  | 'nonce'
  | 'opaque'
  | 'qop'
  | 'wrong-response'
  | 'replay';

export type DigestOutcome =
  | { outcome: 'ok' }
  /** The answer was right but its nonce has expired: challenge again with `stale: true`. */
  | { outcome: 'stale' }
  | { outcome: 'refused'; reason: DigestRefusal; detail: string };

const DEFAULT_LIFETIME_SECONDS = 300;
const DEFAULT_TRACKED_NONCES = 4096;
/** Nodes of a cluster disagree on the time a little: a nonce this far in the future is still taken. */
const CLOCK_SKEW_MS = 30_000;

const TIME_BYTES = 8;
const RANDOM_BYTES = 12;
const MAC_BYTES = 16;
const NONCE_BYTES = TIME_BYTES + RANDOM_BYTES + MAC_BYTES;
/** Length of a nonce as base64url (no padding: 36 bytes make 48 characters). */
const NONCE_LENGTH = (NONCE_BYTES / 3) * 4;
/** Longer parameter values than this are not a phone's: refused before any work. */
const MAX_VALUE_LENGTH = 1024;

const ALGORITHMS: Record<string, { hash: DigestHash; session: boolean; name: DigestAlgorithm }> = {
  'md5': { hash: 'MD5', session: false, name: 'MD5' },
  'md5-sess': { hash: 'MD5', session: true, name: 'MD5-sess' },
  'sha-256': { hash: 'SHA-256', session: false, name: 'SHA-256' },
  'sha-256-sess': { hash: 'SHA-256', session: true, name: 'SHA-256-sess' },
};

/** What the response is computed from when there are no credentials: never matches a real answer's work. */
const DUMMY_HA1: Record<DigestHash, string> = { MD5: '0'.repeat(32), 'SHA-256': '0'.repeat(64) };

/** Hex length of a response per hash. */
const RESPONSE_LENGTH: Record<DigestHash, number> = { MD5: 32, 'SHA-256': 64 };

function refused(reason: DigestRefusal, detail: string): DigestOutcome {
  return { outcome: 'refused', reason, detail };
}

/** A quoted-string (RFC 7230 3.2.6): quotes and backslashes escaped. */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The parameters with lower-case names (RFC 7616 names are case-insensitive), or a refusal for an oversized value. */
function normalized(params: Readonly<Record<string, string>>): Map<string, string> | DigestOutcome {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(params)) {
    if (typeof value !== 'string') return refused('malformed', `parameter ${name} is not a string`);
    if (value.length > MAX_VALUE_LENGTH) return refused('malformed', `parameter ${name} is too long`);
    out.set(name.toLowerCase(), value);
  }
  return out;
}

/** Whether a string is hex of the given length. */
function isHex(value: string, length: number): boolean {
  return value.length === length && /^[0-9a-fA-F]+$/.test(value);
}

/**
 * The highest nonce count seen per nonce, for the nonces used most recently (a bounded LRU:
 * a Map keeps insertion order, and a nonce touched is moved to its end). It lives in this
 * process only: across the nodes of a cluster, an answer replayed to another node within the
 * nonce's lifetime is accepted unless the phone's nonce count has gone past it there too.
 * That is accepted (Kamailio's auth module without nonce tracking makes the same trade-off):
 * the nonce lifetime bounds it, and SIP over TLS keeps answers from being seen.
 */
export class NonceCounts {
  private readonly counts = new Map<string, number>();

  constructor(private readonly capacity: number) {}

  /** Records `count` for `nonce`; false when it is not above the highest seen for that nonce (a replay). */
  advance(nonce: string, count: number): boolean {
    const seen = this.counts.get(nonce);
    if (seen !== undefined && count <= seen) return false;
    this.counts.delete(nonce);
    this.counts.set(nonce, count);
    if (this.counts.size > this.capacity) {
      const oldest = this.counts.keys().next().value;
      if (oldest !== undefined) this.counts.delete(oldest);
    }
    return true;
  }

  get size(): number {
    return this.counts.size;
  }
}

export class DigestAuthenticator {
  private readonly lifetimeMs: number;
  private readonly algorithms: readonly DigestHash[];
  private readonly now: () => number;
  private readonly counts: NonceCounts;

  constructor(
    private readonly secret: Buffer,
    options: DigestOptions = {},
  ) {
    if (secret.length < 16) throw new Error('the Digest nonce secret must have at least 16 bytes');
    this.lifetimeMs = (options.nonceLifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS) * 1000;
    this.algorithms = options.algorithms ?? DIGEST_HASHES;
    if (this.algorithms.length === 0) throw new Error('at least one Digest algorithm must be offered');
    this.now = options.now ?? Date.now;
    this.counts = new NonceCounts(options.trackedNonces ?? DEFAULT_TRACKED_NONCES);
  }

  /**
   * The challenges for `realm`, one header value per algorithm offered (in order of
   * preference), sharing one nonce; `stale` when the client's answer was right but late.
   */
  challenge(realm: string, options: { stale?: boolean } = {}): string[] {
    const nonce = this.newNonce(realm);
    const opaque = this.opaque(realm);
    return this.algorithms.map(
      (algorithm) =>
        `Digest realm=${quoted(realm)}, nonce=${quoted(nonce)}, opaque=${quoted(opaque)}, algorithm=${algorithm}, qop="auth"` +
        (options.stale ? ', stale=true' : ''),
    );
  }

  /**
   * Checks a client's answer: `params` are the Authorization header's parameters, `method`
   * the request's method, `credentials` the account's stored Digest credentials (null or
   * undefined for an account without them, or for no account: refused the same way).
   * Never throws on bad input: refuses it.
   */
  verify(params: Readonly<Record<string, string>>, method: string, credentials: string | null | undefined): DigestOutcome {
    const p = normalized(params);
    if (!(p instanceof Map)) return p;
    for (const name of ['username', 'realm', 'nonce', 'uri', 'response']) {
      if (!p.get(name)) return refused('malformed', `parameter ${name} is missing`);
    }
    const realm = p.get('realm')!;
    const nonce = p.get('nonce')!;
    const uri = p.get('uri')!;
    const response = p.get('response')!.toLowerCase();

    // RFC 7616 3.4: without the parameter, the algorithm is MD5.
    const algorithm = ALGORITHMS[(p.get('algorithm') ?? 'MD5').toLowerCase()];
    if (!algorithm) return refused('algorithm', 'unknown algorithm');
    if (!this.algorithms.includes(algorithm.hash)) return refused('algorithm', `${algorithm.name} is not offered`);
    if (!isHex(response, RESPONSE_LENGTH[algorithm.hash])) return refused('malformed', 'the response is not hex of the right length');

    const issued = this.nonceTime(nonce, realm);
    if (issued === undefined) return refused('nonce', 'the nonce is not one of ours (or not for this realm)');
    const age = this.now() - issued;
    if (age < -CLOCK_SKEW_MS) return refused('nonce', 'the nonce is from the future');
    const opaque = p.get('opaque');
    // RFC 2069 clients may leave opaque out; one that sends it must send ours back.
    if (opaque !== undefined && opaque !== this.opaque(realm)) return refused('opaque', 'the opaque value is not ours');

    const qop = p.get('qop');
    const cnonce = p.get('cnonce');
    const nc = p.get('nc');
    let count: number | undefined;
    if (qop !== undefined) {
      if (qop.toLowerCase() !== 'auth') return refused('qop', `qop ${qop} is not supported`);
      if (!cnonce) return refused('malformed', 'qop without cnonce');
      if (nc === undefined || !isHex(nc, 8)) return refused('malformed', 'qop without an 8-digit hex nc');
      count = parseInt(nc, 16);
      if (count === 0) return refused('malformed', 'nc is zero');
    } else {
      if (algorithm.session) return refused('qop', `${algorithm.name} needs qop=auth`);
      if (cnonce !== undefined || nc !== undefined) return refused('malformed', 'cnonce or nc without qop');
    }

    const stored = storedDigestCredentials(credentials);
    if (stored && stored.realm !== realm) return refused('realm', 'the realm is not the account\'s');

    // Without credentials (or without an account) a dummy HA1 goes through the same hashing,
    // so that the time taken does not tell unknown names from wrong passwords.
    const expected = expectedResponse({
      hash: algorithm.hash,
      ha1: stored?.ha1[algorithm.hash] ?? DUMMY_HA1[algorithm.hash],
      session: algorithm.session,
      nonce,
      method,
      uri,
      qop: qop === undefined ? undefined : { nc: nc!, cnonce: cnonce! },
    });
    const right = timingSafeEqual(Buffer.from(expected, 'latin1'), Buffer.from(response, 'latin1'));
    if (!stored) return refused('no-credentials', 'the account has no Digest credentials');
    if (!right) {
      return refused('wrong-response', 'the response does not match');
    }
    // Only a right answer tells stale from fresh (RFC 7616 3.3: stale only with a valid digest),
    // and only a right answer moves the count (a forged one must not block the phone's next).
    if (age > this.lifetimeMs) return { outcome: 'stale' };
    if (count !== undefined && !this.counts.advance(nonce, count)) return refused('replay', 'the nonce count did not increase');
    return { outcome: 'ok' };
  }

  /** A fresh nonce: base64url of time (ms), random bytes, and their HMAC with the realm. */
  private newNonce(realm: string): string {
    const body = Buffer.alloc(TIME_BYTES + RANDOM_BYTES);
    body.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.now()))));
    randomBytes(RANDOM_BYTES).copy(body, TIME_BYTES);
    return Buffer.concat([body, this.nonceMac(body, realm)]).toString('base64url');
  }

  /** The time a nonce was made, when it is ours and for `realm`; undefined otherwise. */
  private nonceTime(nonce: string, realm: string): number | undefined {
    if (nonce.length !== NONCE_LENGTH || !/^[A-Za-z0-9_-]+$/.test(nonce)) return undefined;
    const bytes = Buffer.from(nonce, 'base64url');
    if (bytes.length !== NONCE_BYTES) return undefined;
    const body = bytes.subarray(0, TIME_BYTES + RANDOM_BYTES);
    if (!timingSafeEqual(bytes.subarray(TIME_BYTES + RANDOM_BYTES), this.nonceMac(body, realm))) return undefined;
    return Number(body.readBigUInt64BE());
  }

  private nonceMac(body: Buffer, realm: string): Buffer {
    return createHmac('sha256', this.secret).update('nonce\0').update(body).update(realm, 'utf8').digest().subarray(0, MAC_BYTES);
  }

  /** The opaque value for a realm: the same on every node sharing the secret, telling nothing of it. */
  private opaque(realm: string): string {
    return createHmac('sha256', this.secret).update('opaque\0').update(realm, 'utf8').digest().subarray(0, 12).toString('base64url');
  }
}

/** What expectedResponse needs: the stored HA1 and the parts of the client's answer. */
export interface ResponseInputs {
  hash: DigestHash;
  /** hex of H(username ":" realm ":" password) */
  ha1: string;
  /** Whether the algorithm is a -sess one (HA1 then also covers the nonce and cnonce). */
  session: boolean;
  nonce: string;
  method: string;
  uri: string;
  /** With qop=auth: the nonce count (8 hex digits, as sent) and the client nonce; undefined for RFC 2069's form. */
  qop: { nc: string; cnonce: string } | undefined;
}

/**
 * The response a client must send (RFC 7616 3.4.1, 3.4.2, 3.4.3; RFC 2069 without qop),
 * lower-case hex: H(HA1 ":" nonce ":" nc ":" cnonce ":" "auth" ":" HA2) with qop,
 * H(HA1 ":" nonce ":" HA2) without, where HA2 = H(method ":" digest-uri).
 */
export function expectedResponse(inputs: ResponseInputs): string {
  const { hash, nonce, qop } = inputs;
  const ha1 = inputs.session ? digestHex(hash, `${inputs.ha1}:${nonce}:${qop?.cnonce ?? ''}`) : inputs.ha1;
  const ha2 = digestHex(hash, `${inputs.method}:${inputs.uri}`);
  return qop ? digestHex(hash, `${ha1}:${nonce}:${qop.nc}:${qop.cnonce}:auth:${ha2}`) : digestHex(hash, `${ha1}:${nonce}:${ha2}`);
}
