/**
 * Secrets the server must use again in clear (a remote mail account's password, a remote SIP
 * registration's password, a one-time-password seed) are kept sealed with the server's own key:
 * AES-256-GCM, a fresh 96-bit nonce each time, and the record the secret belongs to as the
 * associated data, so that a sealed value copied onto another record does not open.
 *
 * The key is 32 random bytes in `secrets.keyFile` (default `<dataDir>/secret.key`, 0600),
 * made on first start. Every node of a cluster must have the same file: a value sealed by a
 * node with another key names that key's id in the error, so the mistake is plain in the log.
 * A leak of the store alone does not give these secrets away; a leak of the store and the key
 * file does.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { privateDirectory, privateFile } from '../store/modes.js';

const VERSION = 'v1';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export class SecretBoxError extends Error {}

export class SecretBox {
  /** The first 8 hex digits of the key's SHA-256: names the key in sealed values and errors. */
  readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new SecretBoxError(`a secret key is ${KEY_BYTES} bytes (got ${key.length})`);
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 8);
  }

  /** `v1.<keyId>.<base64 nonce|tag|ciphertext>`: text, for any column. */
  seal(plain: string, context: string): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return `${VERSION}.${this.keyId}.${Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64')}`;
  }

  /** The plain text of `sealed`; throws SecretBoxError for another key, another context or damage. */
  open(sealed: string, context: string): string {
    const [version, keyId, data, extra] = sealed.split('.');
    if (version !== VERSION || keyId === undefined || data === undefined || extra !== undefined) {
      throw new SecretBoxError('not a sealed secret');
    }
    if (keyId !== this.keyId) {
      throw new SecretBoxError(`sealed with another secret key (${keyId}, this node has ${this.keyId}): every node needs the same secrets.keyFile`);
    }
    const raw = Buffer.from(data, 'base64');
    if (raw.length < NONCE_BYTES + TAG_BYTES) throw new SecretBoxError('not a sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(raw.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretBoxError('a sealed secret does not open (damaged, or sealed for another record)');
    }
  }
}

/**
 * The key in `file` (64 hex digits), made there when the file does not exist. Two processes
 * starting at once on one data directory agree: the key is written whole to a file of this
 * process, then linked into place (which fails when the file exists), and the loser reads the
 * winner's key.
 */
export function loadSecretBox(file: string): SecretBox {
  privateDirectory(dirname(file));
  if (!existsSync(file)) {
    const draft = `${file}.${process.pid}.new`;
    writeFileSync(draft, randomBytes(KEY_BYTES).toString('hex') + '\n', { mode: 0o600 });
    try {
      linkSync(draft, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(draft);
    }
  }
  privateFile(file);
  const text = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new SecretBoxError(`${file}: a secret key file holds 64 hex digits`);
  return new SecretBox(Buffer.from(text, 'hex'));
}
