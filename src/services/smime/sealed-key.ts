/**
 * The private key as the store keeps it: its PKCS#8 DER encrypted with AES-256-GCM under a
 * key derived from the user's S/MIME password with scrypt (a fresh salt and nonce each time),
 * the account id as associated data (a sealed key copied onto another account does not open).
 * Text: `s1.<N>.<r>.<p>.<base64 salt|nonce|tag|ciphertext>`. The password never reaches the
 * store, and neither does the key in clear. A wrong password fails the GCM tag: WrongPasswordError.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, randomBytes, scrypt } from 'node:crypto';

const VERSION = 's1';
/** scrypt cost: 2^15 x 8 x 1 (32 MiB, some tens of ms), beyond what a stolen store makes cheap to guess. */
const N = 1 << 15;
const R = 8;
const P = 1;
const SALT = 16;
const NONCE = 12;
const TAG = 16;

export class WrongPasswordError extends Error {}

function derive(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, 32, { N: n, r, p, maxmem: 128 * n * r * p + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Seals a PKCS#8 PEM private key with `password` for `accountId`. */
export async function sealKey(keyPem: string, password: string, accountId: number): Promise<string> {
  const der = createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
  const salt = randomBytes(SALT);
  const nonce = randomBytes(NONCE);
  const key = await derive(password, salt, N, R, P);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(`smime-key:${accountId}`, 'utf8'));
  const body = Buffer.concat([cipher.update(der), cipher.final()]);
  return `${VERSION}.${N}.${R}.${P}.${Buffer.concat([salt, nonce, cipher.getAuthTag(), body]).toString('base64')}`;
}

/** The PKCS#8 PEM key of `sealed`; WrongPasswordError for a wrong password (or another account's key). */
export async function openKey(sealed: string, password: string, accountId: number): Promise<string> {
  const [version, n, r, p, data, extra] = sealed.split('.');
  if (version !== VERSION || data === undefined || extra !== undefined) throw new Error('not a sealed S/MIME key');
  const bytes = Buffer.from(data, 'base64');
  if (bytes.length <= SALT + NONCE + TAG) throw new Error('a damaged sealed S/MIME key');
  const key = await derive(password, bytes.subarray(0, SALT), Number(n), Number(r), Number(p));
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(SALT, SALT + NONCE));
  decipher.setAAD(Buffer.from(`smime-key:${accountId}`, 'utf8'));
  decipher.setAuthTag(bytes.subarray(SALT + NONCE, SALT + NONCE + TAG));
  let der: Buffer;
  try {
    der = Buffer.concat([decipher.update(bytes.subarray(SALT + NONCE + TAG)), decipher.final()]);
  } catch {
    throw new WrongPasswordError('wrong S/MIME password');
  }
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}
