/**
 * DKIM keys of local domains (README "Mail authentication"): kept in the domain's settings
 * under `DKIM` (selector, algorithm, PKCS#8 PEM private key), made by `ximssd domain dkim
 * NAME`, and the DNS record to publish for them. Only node:crypto here: the command line
 * loads this without the mail code.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { Settings } from '../store/store.js';

/** The domain setting holding the key (never shown by the administration commands). */
export const DKIM_SETTING = 'DKIM';

export const DKIM_ALGORITHMS = ['rsa-sha256', 'ed25519-sha256'] as const;
export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number];

export interface DkimKey {
  selector: string;
  algorithm: DkimAlgorithm;
  /** PKCS#8, PEM. */
  privateKey: string;
}

/** A DNS label sequence for `s=` (RFC 6376 section 3.1). */
const SELECTOR = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function validSelector(selector: string): boolean {
  return selector.length <= 200 && SELECTOR.test(selector);
}

function isAlgorithm(value: string): value is DkimAlgorithm {
  return (DKIM_ALGORITHMS as readonly string[]).includes(value);
}

/** The key in a domain's settings, if it has a usable one. */
export function dkimKeyOf(settings: Settings): DkimKey | undefined {
  const value = settings[DKIM_SETTING];
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Buffer.isBuffer(value)) return undefined;
  const { selector, algorithm, privateKey } = value;
  if (typeof selector !== 'string' || typeof algorithm !== 'string' || typeof privateKey !== 'string') return undefined;
  if (!validSelector(selector) || !isAlgorithm(algorithm)) return undefined;
  return { selector, algorithm, privateKey };
}

/** The settings value that stores `key`. */
export function dkimSetting(key: DkimKey): Settings {
  return { selector: key.selector, algorithm: key.algorithm, privateKey: key.privateKey };
}

/** A new key pair (RSA of `bits`, 1024 to 4096, or Ed25519, RFC 8463). */
export function generateDkimKey(selector: string, algorithm: DkimAlgorithm, bits = 2048): DkimKey {
  if (!validSelector(selector)) throw new Error(`invalid selector ${JSON.stringify(selector)}: letters, digits, hyphens and dots`);
  let privateKey: string;
  if (algorithm === 'rsa-sha256') {
    if (!Number.isInteger(bits) || bits < 1024 || bits > 4096) throw new Error('RSA keys have 1024 to 4096 bits (2048 recommended)');
    privateKey = generateKeyPairSync('rsa', { modulusLength: bits, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey;
  } else {
    privateKey = generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey;
  }
  return { selector, algorithm, privateKey };
}

/**
 * The `p=` value: the SubjectPublicKeyInfo (RSA, RFC 6376 section 3.6.1), or the bare
 * 32-byte public key (Ed25519, RFC 8463 section 4).
 */
export function dkimPublicKey(key: DkimKey): string {
  const der = createPublicKey(createPrivateKey(key.privateKey)).export({ type: 'spki', format: 'der' });
  return (key.algorithm === 'ed25519-sha256' ? der.subarray(der.length - 32) : der).toString('base64');
}

/** The TXT record's text (`v=DKIM1; k=rsa; p=...`). */
export function dkimRecordText(key: DkimKey): string {
  return `v=DKIM1; k=${key.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa'}; p=${dkimPublicKey(key)}`;
}

/** The record's owner name, `selector._domainkey.domain.` */
export function dkimRecordName(domain: string, key: DkimKey): string {
  return `${key.selector}._domainkey.${domain}.`;
}

/** The record in zone-file syntax, its text in character-strings of at most 255 bytes (RFC 1035 section 3.3.14). */
export function dkimZoneRecord(domain: string, key: DkimKey): string {
  const text = dkimRecordText(key);
  const strings: string[] = [];
  for (let i = 0; i < text.length; i += 255) strings.push(`"${text.slice(i, i + 255)}"`);
  return `${dkimRecordName(domain, key)} IN TXT ${strings.join(' ')}`;
}
