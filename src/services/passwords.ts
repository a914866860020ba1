import { createHash, createHmac, pbkdf2 as pbkdf2Callback, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
// SASLprep (RFC 4013) of SCRAM passwords: MongoDB's implementation, kept up to date with the
// Unicode tables, rather than our own copy of stringprep's tables.
import saslprep from '@mongodb-js/saslprep';
import SparkMD5 from 'spark-md5';

/**
 * Password storage. Passwords are kept as salted scrypt hashes (PHC-style strings). For the
 * CRAM-MD5 mechanism, which needs the secret itself, we keep what Dovecot's CRAM-MD5 scheme
 * keeps: the HMAC-MD5 inner and outer MD5 states after the padded key. They are enough to
 * compute HMAC-MD5(password, challenge) and verify a client, not to log in with a clear-text
 * password, though a leak of them does let an attacker answer CRAM-MD5 challenges (the
 * same trade-off every CRAM-MD5 server makes).
 */
const SCRYPT_PARAMS = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCallback(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEY_LENGTH, { ...SCRYPT_PARAMS, maxmem: 64 * 1024 * 1024 });
  return `$scrypt$ln=${Math.log2(SCRYPT_PARAMS.N)},r=${SCRYPT_PARAMS.r},p=${SCRYPT_PARAMS.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([^$]+)\$([^$]+)$/.exec(stored);
  if (!m) return false;
  const expected = Buffer.from(m[5]!, 'base64');
  const key = await scrypt(password, Buffer.from(m[4]!, 'base64'), expected.length, {
    N: 2 ** Number(m[1]),
    r: Number(m[2]),
    p: Number(m[3]),
    maxmem: 256 * 1024 * 1024,
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

function md5State(block: Uint8Array): number[] {
  const md5 = new SparkMD5.ArrayBuffer();
  md5.append(block.buffer.slice(block.byteOffset, block.byteOffset + block.byteLength) as ArrayBuffer);
  return md5.getState().hash;
}

function wordsToHex(words: number[]): string {
  const buf = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => buf.writeInt32LE(w, i * 4));
  return buf.toString('hex');
}

function hexToWords(hex: string): number[] {
  const buf = Buffer.from(hex, 'hex');
  const words: number[] = [];
  for (let i = 0; i < buf.length; i += 4) words.push(buf.readInt32LE(i));
  return words;
}

/** The HMAC-MD5 precomputed context for `password`: hex of the inner then the outer MD5 state. */
export function cramMd5Context(password: string): string {
  let key = Buffer.from(password, 'utf8');
  if (key.length > 64) key = Buffer.from(SparkMD5.ArrayBuffer.hash(new Uint8Array(key).buffer as ArrayBuffer), 'hex');
  const inner = new Uint8Array(64).fill(0x36);
  const outer = new Uint8Array(64).fill(0x5c);
  for (let i = 0; i < key.length; i++) {
    inner[i]! ^= key[i]!;
    outer[i]! ^= key[i]!;
  }
  return wordsToHex(md5State(inner)) + wordsToHex(md5State(outer));
}

function continueMd5(stateHex: string, data: Uint8Array): Buffer {
  const md5 = new SparkMD5.ArrayBuffer();
  md5.setState({ buff: '' as unknown as Uint8Array, hash: hexToWords(stateHex), length: 64 });
  md5.append(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer);
  return Buffer.from(md5.end(), 'hex');
}

/** HMAC-MD5(password, challenge) as lower-case hex, computed from the stored context. */
export function cramMd5Digest(context: string, challenge: string | Buffer): string {
  const message = typeof challenge === 'string' ? Buffer.from(challenge, 'utf8') : challenge;
  const innerDigest = continueMd5(context.slice(0, 32), message);
  return continueMd5(context.slice(32, 64), innerDigest).toString('hex');
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Remembers recently verified clear-text credentials (as Dovecot's auth cache does), so
 * that a client reconnecting many times does not pay for a full scrypt every time. Keys are
 * keyed HMACs of the password, never the password; a password change (a new
 * credentialsVersion) makes old entries unreachable.
 */
export class VerifiedPasswordCache {
  private readonly secret = randomBytes(32);
  private readonly entries = new Map<string, number>();

  constructor(
    private readonly ttlMs = 10 * 60_000,
    private readonly maxEntries = 50_000,
  ) {}

  private key(accountId: number, credentialsVersion: number, password: string): string {
    return `${accountId}:${credentialsVersion}:` + createHmac('sha256', this.secret).update(password).digest('base64');
  }

  has(accountId: number, credentialsVersion: number, password: string): boolean {
    const key = this.key(accountId, credentialsVersion, password);
    const expires = this.entries.get(key);
    if (expires === undefined) return false;
    if (expires < Date.now()) {
      this.entries.delete(key);
      return false;
    }
    return true;
  }

  add(accountId: number, credentialsVersion: number, password: string): void {
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(this.key(accountId, credentialsVersion, password), Date.now() + this.ttlMs);
  }
}

/**
 * The checks a login ends with. The server uses `passwordVerifier`; the tests pass their own
 * (to count or hold verifications) through startServer's options.
 */
export interface PasswordVerifier {
  /** Whether `password` matches `stored` (a hash of hashPassword). */
  verifyPassword(password: string, stored: string): Promise<boolean>;
  /** Whether `digest` (lower-case hex) is HMAC-MD5(password, challenge) for the CRAM-MD5 `context`. */
  verifyDigest(context: string, challenge: string, digest: string): boolean;
}

export const passwordVerifier: PasswordVerifier = {
  verifyPassword,
  verifyDigest: (context, challenge, digest) => safeEqual(cramMd5Digest(context, challenge), digest),
};

// ---------------------------------------------------------------------------------------
// SCRAM (RFC 5802, RFC 7677)

/** The SCRAM hash functions offered (the non-PLUS mechanisms SCRAM-SHA-1 and SCRAM-SHA-256). */
export type ScramHash = 'SHA-1' | 'SHA-256';
export const SCRAM_HASHES: readonly ScramHash[] = ['SHA-256', 'SHA-1'];
/** RFC 7677's minimum, and what Prosody and ejabberd use. */
export const SCRAM_ITERATIONS = 4096;

const NODE_HASH: Record<ScramHash, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256' };

/** What a server keeps to verify a SCRAM client (never enough to log in elsewhere with PLAIN). */
export interface ScramVerifier {
  /** base64 */
  salt: string;
  iterations: number;
  /** base64: H(HMAC(SaltedPassword, "Client Key")) and HMAC(SaltedPassword, "Server Key"). */
  storedKey: string;
  serverKey: string;
}

export type ScramCredentials = Record<ScramHash, ScramVerifier>;

function pbkdf2(password: string, salt: Buffer, iterations: number, hash: ScramHash): Promise<Buffer> {
  const length = hash === 'SHA-1' ? 20 : 32;
  return new Promise((resolve, reject) =>
    pbkdf2Callback(password, salt, iterations, length, NODE_HASH[hash], (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export function scramHmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(NODE_HASH[hash], key).update(data).digest();
}

export function scramDigest(hash: ScramHash, data: Buffer): Buffer {
  return createHash(NODE_HASH[hash]).update(data).digest();
}

/** The password as SCRAM hashes it (RFC 5802 2.2: Normalize is SASLprep, as for a stored string). */
export function scramPassword(password: string): string {
  try {
    return saslprep(password);
  } catch {
    // A password SASLprep refuses (prohibited characters) is hashed as it is: the account's
    // clients can still log in with the bytes they send.
    return password;
  }
}

/** One verifier from a password (PBKDF2 in the libuv pool). */
export async function scramVerifier(hash: ScramHash, password: string, salt: Buffer, iterations = SCRAM_ITERATIONS): Promise<ScramVerifier> {
  const salted = await pbkdf2(scramPassword(password), salt, iterations, hash);
  const clientKey = scramHmac(hash, salted, 'Client Key');
  return {
    salt: salt.toString('base64'),
    iterations,
    storedKey: scramDigest(hash, clientKey).toString('base64'),
    serverKey: scramHmac(hash, salted, 'Server Key').toString('base64'),
  };
}

/** The SCRAM-SHA-1 and SCRAM-SHA-256 verifiers of a password, as the store keeps them (JSON, AccountRecord.scramCredentials). */
export async function scramCredentials(password: string): Promise<string> {
  const [sha1, sha256] = await Promise.all([scramVerifier('SHA-1', password, randomBytes(16)), scramVerifier('SHA-256', password, randomBytes(16))]);
  const credentials: ScramCredentials = { 'SHA-1': sha1, 'SHA-256': sha256 };
  return JSON.stringify(credentials);
}

/**
 * SCRAM verifiers of an extra password of the same account (an application password) made
 * with the salt and iteration count of `base` (the account's own verifiers), hash by hash:
 * a SCRAM server names its salt before it knows which password the client has, so every
 * password of an account that SCRAM accepts must share it (see AuthService.checkScram).
 * A hash `base` has no verifier for gets a new random salt.
 */
export async function scramCredentialsLike(password: string, base: string | null | undefined): Promise<string> {
  const like = (hash: ScramHash): Promise<ScramVerifier> => {
    const model = storedScramVerifier(base, hash);
    return model
      ? scramVerifier(hash, password, Buffer.from(model.salt, 'base64'), model.iterations)
      : scramVerifier(hash, password, randomBytes(16));
  };
  const [sha1, sha256] = await Promise.all([like('SHA-1'), like('SHA-256')]);
  const credentials: ScramCredentials = { 'SHA-1': sha1, 'SHA-256': sha256 };
  return JSON.stringify(credentials);
}

/** The verifier for `hash` in stored credentials; undefined when there is none (or it is unreadable). */
export function storedScramVerifier(stored: string | null | undefined, hash: ScramHash): ScramVerifier | undefined {
  if (!stored) return undefined;
  try {
    const parsed = JSON.parse(stored) as Partial<ScramCredentials>;
    const verifier = parsed[hash];
    if (!verifier || typeof verifier.salt !== 'string' || typeof verifier.storedKey !== 'string' || typeof verifier.serverKey !== 'string') return undefined;
    if (!Number.isInteger(verifier.iterations) || verifier.iterations < 1) return undefined;
    return verifier;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// HTTP Digest (RFC 7616; for SIP, RFC 3261 22 and RFC 8760)

/** The Digest algorithms whose HA1 is kept (their `-sess` variants start from the same HA1). */
export type DigestHash = 'MD5' | 'SHA-256';
export const DIGEST_HASHES: readonly DigestHash[] = ['SHA-256', 'MD5'];

const DIGEST_NODE_HASH: Record<DigestHash, string> = { MD5: 'md5', 'SHA-256': 'sha256' };

/**
 * What a server keeps to verify a Digest client: the realm and, per algorithm, the hex of
 * HA1 = H(username ":" realm ":" password). HA1 is password-equivalent within its realm (as
 * in every Digest server): whoever has it can answer any challenge of that realm as the
 * account, though it gives neither the password nor logins elsewhere. It is kept like the
 * other credentials and never logged.
 */
export interface DigestCredentials {
  realm: string;
  ha1: Record<DigestHash, string>;
}

/** A Digest hash of `data` as lower-case hex. */
export function digestHex(hash: DigestHash, data: string): string {
  return createHash(DIGEST_NODE_HASH[hash]).update(data, 'utf8').digest('hex');
}

/** HA1 for one algorithm (RFC 7616 3.4.2, without the -sess part). */
export function digestHa1(hash: DigestHash, name: string, realm: string, password: string): string {
  return digestHex(hash, `${name}:${realm}:${password}`);
}

/**
 * The Digest credentials of an account, as the store keeps them (JSON,
 * AccountRecord.digestCredentials): `name` is the account name and `realm` its domain.
 */
export function digestCredentials(name: string, realm: string, password: string): string {
  const credentials: DigestCredentials = {
    realm,
    ha1: { MD5: digestHa1('MD5', name, realm, password), 'SHA-256': digestHa1('SHA-256', name, realm, password) },
  };
  return JSON.stringify(credentials);
}

/** Stored Digest credentials, checked; undefined when there are none (or they are unreadable). */
export function storedDigestCredentials(stored: string | null | undefined): DigestCredentials | undefined {
  if (!stored) return undefined;
  try {
    const parsed = JSON.parse(stored) as Partial<DigestCredentials>;
    if (typeof parsed.realm !== 'string' || typeof parsed.ha1 !== 'object' || parsed.ha1 === null) return undefined;
    for (const hash of DIGEST_HASHES) {
      if (typeof parsed.ha1[hash] !== 'string' || !/^[0-9a-f]+$/.test(parsed.ha1[hash])) return undefined;
    }
    return { realm: parsed.realm, ha1: { MD5: parsed.ha1.MD5, 'SHA-256': parsed.ha1['SHA-256'] } };
  } catch {
    return undefined;
  }
}
