/**
 * The S/MIME cryptography, all of it done by libraries (no cipher, digest or padding here):
 *
 * - node-forge: PKCS#12 (PFX) import and export, certificates the server issues, detached
 *   CMS signatures (SHA-256, RSA), enveloped data (AES-256-CBC content, RSA PKCS#1 v1.5 key
 *   transport, what `openssl smime`/`openssl cms` and mail clients write and read) and its
 *   decryption. Node's own crypto cannot decrypt PKCS#1 v1.5 key transport any more
 *   (CVE-2023-46809), and WebCrypto never could.
 * - PKI.js: verification of signatures (forge has none), over Node's WebCrypto.
 * - node:crypto: RSA key generation, X509Certificate for names, dates and issuer checks.
 *
 * Keys travel inside the service as PKCS#8 PEM text: in clear only in an unlocked session's
 * memory (src/services/smime/service.ts), sealed in the store (sealed-key.ts).
 */
import { generateKeyPair, randomBytes, X509Certificate } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import { promisify } from 'node:util';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';

const generateKeyPairAsync = promisify(generateKeyPair);

/** A failure the user's input caused (a wrong password, a damaged file): its message is for the client. */
export class SmimeInputError extends Error {}

function forgeBytes(data: Buffer): forge.util.ByteStringBuffer {
  return forge.util.createBuffer(data.toString('binary'));
}

function bufferOf(bytes: string): Buffer {
  return Buffer.from(bytes, 'binary');
}

function arrayBufferOf(data: Buffer): ArrayBuffer {
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}

export interface Identity {
  keyPem: string;
  certPem: string;
}

/** The e-mail addresses a certificate names (subjectAltName rfc822Name, then the subject's emailAddress), lower case. */
export function certificateAddresses(certPem: string): string[] {
  const cert = new X509Certificate(certPem);
  const found = new Set<string>();
  for (const entry of (cert.subjectAltName ?? '').split(/,\s*/)) {
    const m = /^email:(.+)$/i.exec(entry.trim());
    if (m) found.add(m[1]!.trim().toLowerCase());
  }
  for (const line of cert.subject.split('\n')) {
    const m = /^emailAddress=(.+)$/i.exec(line.trim());
    if (m) found.add(m[1]!.trim().toLowerCase());
  }
  return [...found];
}

/** The certificate's validity, ms since the epoch. */
export function certificateValidity(certPem: string): { notBefore: number; notAfter: number } {
  const cert = new X509Certificate(certPem);
  return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
}

/**
 * A new key pair and a certificate for `address`, issued by the server (self-signed: the
 * server has no domain "S/MIME Issuer" yet), for e-mail protection, valid `days` from `now`.
 */
export async function issueIdentity(address: string, realName: string | undefined, bits: number, days: number, now: number, previousKeyPem?: string): Promise<Identity> {
  const keyPem =
    previousKeyPem ??
    (await generateKeyPairAsync('rsa', { modulusLength: bits, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })).privateKey;
  const privateKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const publicKey = forge.pki.setRsaPublicKey(privateKey.n, privateKey.e);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // A positive serial of 16 random bytes.
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + days * 86_400_000);
  const attrs: forge.pki.CertificateField[] = [
    // A name in printable ASCII only: forge writes and matches other issuer names inconsistently.
    { name: 'commonName', value: realName !== undefined && /^[ -~]{1,64}$/.test(realName.trim()) ? realName.trim() : address },
    { name: 'emailAddress', value: address },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, nonRepudiation: true, keyEncipherment: true },
    { name: 'extKeyUsage', emailProtection: true },
    { name: 'subjectAltName', altNames: [{ type: 1, value: address }] },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(privateKey, forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** Key derivation rounds a PKCS#12 file may ask for (OpenSSL writes 2048): forge runs them on the event loop. */
export const MAX_PFX_ITERATIONS = 200_000;

/**
 * Throws SmimeInputError when a PKCS#12 structure asks for more than MAX_PFX_ITERATIONS rounds
 * anywhere: every (salt OCTET STRING, iteration INTEGER) pair of its MAC and PBE parameters,
 * looked for also inside OCTET STRINGs that hold DER (the safe contents).
 */
function checkIterations(root: forge.asn1.Asn1): void {
  let nodes = 0;
  const walk = (node: forge.asn1.Asn1, depth: number): void => {
    if (++nodes > 100_000 || depth > 40) throw new SmimeInputError('the PFX data is too complex');
    if (!Array.isArray(node.value)) {
      const bytes = node.value;
      if (node.tagClass === forge.asn1.Class.UNIVERSAL && node.type === forge.asn1.Type.OCTETSTRING && bytes.length > 2 && bytes.charCodeAt(0) === 0x30) {
        let inner: forge.asn1.Asn1 | undefined;
        try {
          inner = forge.asn1.fromDer(bytes, true);
        } catch {
          inner = undefined;
        }
        if (inner) walk(inner, depth + 1);
      }
      return;
    }
    const children = node.value;
    for (let i = 0; i + 1 < children.length; i++) {
      const salt = children[i]!;
      const count = children[i + 1]!;
      if (salt.type === forge.asn1.Type.OCTETSTRING && count.type === forge.asn1.Type.INTEGER && typeof count.value === 'string') {
        if (count.value.length > 4 || forge.asn1.derToInteger(count.value) > MAX_PFX_ITERATIONS) {
          throw new SmimeInputError(`the PFX data asks for too many key derivation rounds (at most ${MAX_PFX_ITERATIONS})`);
        }
      }
    }
    for (const child of children) walk(child, depth + 1);
  };
  walk(root, 0);
}

/** The key and certificate of a PKCS#12 file; SmimeInputError for a wrong password or a damaged file. */
export function readPfx(der: Buffer, password: string): Identity {
  let p12: forge.pkcs12.Pkcs12Pfx;
  let asn1: forge.asn1.Asn1;
  try {
    asn1 = forge.asn1.fromDer(forgeBytes(der));
  } catch {
    throw new SmimeInputError('the PFX data cannot be read (not PKCS#12, or damaged)');
  }
  checkIterations(asn1);
  try {
    p12 = forge.pkcs12.pkcs12FromAsn1(asn1, false, password);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/MAC could not be verified|Invalid password/i.test(message)) throw new SmimeInputError('wrong PFX password');
    throw new SmimeInputError('the PFX data cannot be read (not PKCS#12, damaged, or a wrong password)');
  }
  const shrouded = p12.getBags({ bagType: forge.pki.oids.pkcs8ShroudedKeyBag! })[forge.pki.oids.pkcs8ShroudedKeyBag!] ?? [];
  const plain = p12.getBags({ bagType: forge.pki.oids.keyBag! })[forge.pki.oids.keyBag!] ?? [];
  const keyBag = [...shrouded, ...plain].find((b) => b.key);
  if (!keyBag?.key) throw new SmimeInputError('the PFX data has no private key (or a wrong password)');
  const key = keyBag.key as forge.pki.rsa.PrivateKey;
  if (typeof key.n !== 'object') throw new SmimeInputError('the PFX private key is not an RSA key');
  const certs = (p12.getBags({ bagType: forge.pki.oids.certBag! })[forge.pki.oids.certBag!] ?? []).flatMap((b) => (b.cert ? [b.cert] : []));
  // The certificate of that key (a PFX may carry its issuers too).
  const cert = certs.find((c) => {
    const pub = c.publicKey as forge.pki.rsa.PublicKey;
    return typeof pub.n === 'object' && pub.n.equals(key.n) && pub.e.equals(key.e);
  });
  if (!cert) throw new SmimeInputError('the PFX data has no certificate for its private key');
  const keyPem = forge.pki.privateKeyInfoToPem(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key)));
  return { keyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** A PKCS#12 file of the key and certificate, encrypted with `password` (AES-256, SHA-256 MAC where the reader allows). */
export function writePfx(identity: Identity, password: string, friendlyName: string): Buffer {
  const key = forge.pki.privateKeyFromPem(identity.keyPem);
  const cert = forge.pki.certificateFromPem(identity.certPem);
  const asn1 = forge.pkcs12.toPkcs12Asn1(key, [cert], password, { algorithm: 'aes256', friendlyName, generateLocalKeyId: true });
  return bufferOf(forge.asn1.toDer(asn1).getBytes());
}

/** Whether two PEM private keys are the same key. */
export function sameKey(a: string, b: string): boolean {
  const ka = forge.pki.privateKeyFromPem(a) as forge.pki.rsa.PrivateKey;
  const kb = forge.pki.privateKeyFromPem(b) as forge.pki.rsa.PrivateKey;
  return ka.n.equals(kb.n) && ka.e.equals(kb.e) && ka.d.equals(kb.d);
}

/** Whether the certificate is for this key. */
export function certificateMatchesKey(certPem: string, keyPem: string): boolean {
  const pub = forge.pki.certificateFromPem(certPem).publicKey as forge.pki.rsa.PublicKey;
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return typeof pub.n === 'object' && pub.n.equals(key.n) && pub.e.equals(key.e);
}

/** A detached CMS SignedData (DER) over `content`: SHA-256, RSA, with the signer's certificate and signing time. */
export function signDetached(content: Buffer, identity: Identity, now: number): Buffer {
  const p7 = forge.pkcs7.createSignedData();
  p7.content = forgeBytes(content);
  const cert = forge.pki.certificateFromPem(identity.certPem);
  p7.addCertificate(cert);
  p7.addSigner({
    key: forge.pki.privateKeyFromPem(identity.keyPem),
    certificate: cert,
    digestAlgorithm: forge.pki.oids.sha256!,
    authenticatedAttributes: [
      { type: forge.pki.oids.contentType!, value: forge.pki.oids.data },
      { type: forge.pki.oids.messageDigest! },
      { type: forge.pki.oids.signingTime!, value: new Date(now) as unknown as string },
    ],
  });
  p7.sign({ detached: true });
  return bufferOf(forge.asn1.toDer(p7.toAsn1()).getBytes());
}

/** CMS EnvelopedData (DER) of `content` for the certificates: AES-256-CBC, RSA PKCS#1 v1.5 key transport. */
export function encryptFor(content: Buffer, certPems: readonly string[]): Buffer {
  const p7 = forge.pkcs7.createEnvelopedData();
  for (const pem of certPems) p7.addRecipient(forge.pki.certificateFromPem(pem));
  p7.content = forgeBytes(content);
  p7.encrypt(undefined, forge.pki.oids['aes256-CBC']);
  return bufferOf(forge.asn1.toDer(p7.toAsn1()).getBytes());
}

const CIPHERS: Record<string, { name: string; bits: number }> = {
  '2.16.840.1.101.3.4.1.2': { name: 'AES', bits: 128 },
  '2.16.840.1.101.3.4.1.22': { name: 'AES', bits: 192 },
  '2.16.840.1.101.3.4.1.42': { name: 'AES', bits: 256 },
  '1.2.840.113549.3.7': { name: '3DES', bits: 168 },
  '1.3.14.3.2.7': { name: 'DES', bits: 56 },
};

export interface Decrypted {
  content: Buffer;
  cipherName: string;
  keyLength: number;
}

/** Decrypts CMS EnvelopedData (DER) with the identity; SmimeInputError saying why it could not. */
export function decryptEnveloped(der: Buffer, identity: Identity): Decrypted {
  let p7: forge.pkcs7.PkcsEnvelopedData;
  try {
    const message = forge.pkcs7.messageFromAsn1(forge.asn1.fromDer(forgeBytes(der)));
    if (!('findRecipient' in message)) throw new SmimeInputError('not enveloped data');
    p7 = message as forge.pkcs7.PkcsEnvelopedData;
  } catch (err) {
    if (err instanceof SmimeInputError) throw err;
    throw new SmimeInputError('the encrypted data cannot be read');
  }
  const cert = forge.pki.certificateFromPem(identity.certPem);
  // By issuer and serial; by serial alone when forge reads a non-ASCII issuer name differently.
  const recipient = p7.findRecipient(cert) ?? p7.recipients.find((r) => r.serialNumber === cert.serialNumber);
  if (!recipient) throw new SmimeInputError('the message is not encrypted for this account\'s certificate');
  const algorithm = (p7 as unknown as { encryptedContent?: { algorithm?: string } }).encryptedContent?.algorithm ?? '';
  try {
    p7.decrypt(recipient, forge.pki.privateKeyFromPem(identity.keyPem));
  } catch (err) {
    throw new SmimeInputError('decryption failed: ' + (err instanceof Error ? err.message : String(err)).slice(0, 200));
  }
  const content = (p7 as unknown as { content?: forge.util.ByteStringBuffer }).content;
  if (!content) throw new SmimeInputError('decryption failed');
  const cipher = CIPHERS[algorithm] ?? { name: algorithm, bits: 0 };
  return { content: bufferOf(content.getBytes()), cipherName: cipher.name, keyLength: cipher.bits };
}

export interface SignatureCheck {
  /** The signer's certificate (PEM); undefined when none in the signature matches the data. */
  signerPem?: string;
  /** Why the signer's certificate is not trusted (unknown authority, expired), or undefined. */
  validationError?: string;
}

/**
 * Verifies a detached CMS signature (DER) over `content`. `signatures` lists the signers whose
 * signatures match the data; a signature that cannot be decoded is SmimeInputError.
 */
export async function verifyDetached(content: Buffer, signatureDer: Buffer, now: number): Promise<SignatureCheck[]> {
  let signed: pkijs.SignedData;
  try {
    const asn1 = asn1js.fromBER(arrayBufferOf(signatureDer));
    if (asn1.offset === -1) throw new Error('bad BER');
    const info = new pkijs.ContentInfo({ schema: asn1.result });
    if (info.contentType !== pkijs.ContentInfo.SIGNED_DATA) throw new Error('not signed data');
    signed = new pkijs.SignedData({ schema: info.content });
  } catch {
    throw new SmimeInputError('the signature data cannot be decoded');
  }
  const checks: SignatureCheck[] = [];
  for (let i = 0; i < signed.signerInfos.length; i++) {
    let result: pkijs.SignedDataVerifyResult;
    try {
      result = await signed.verify({ signer: i, data: arrayBufferOf(content), checkChain: false, extendedMode: true });
    } catch {
      continue;
    }
    if (!result.signatureVerified || !result.signerCertificate) continue;
    const der = Buffer.from(result.signerCertificate.toSchema().toBER(false));
    const signerPem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
    const others = (signed.certificates ?? []).flatMap((c) => (c instanceof pkijs.Certificate ? [new X509Certificate(Buffer.from(c.toSchema().toBER(false)))] : []));
    checks.push({ signerPem, validationError: validationError(new X509Certificate(der), others, now) });
  }
  return checks;
}

let trustedRoots: X509Certificate[] | undefined;

/** Why `cert` is not valid now: expired, not yet valid, or not issued (through the message's certificates) by a root Node trusts. */
function validationError(cert: X509Certificate, intermediates: readonly X509Certificate[], now: number): string | undefined {
  trustedRoots ??= rootCertificates.map((pem) => new X509Certificate(pem));
  let current = cert;
  for (let depth = 0; depth < 8; depth++) {
    if (Date.parse(current.validTo) < now) return depth === 0 ? 'certificate has expired' : 'an issuer certificate has expired';
    if (Date.parse(current.validFrom) > now) return 'certificate is not yet valid';
    const root = trustedRoots.find((r) => current.checkIssued(r) && current.verify(r.publicKey));
    if (root) return undefined;
    const issuer = intermediates.find((c) => c !== current && c.fingerprint256 !== current.fingerprint256 && current.checkIssued(c) && current.verify(c.publicKey));
    if (!issuer) break;
    current = issuer;
  }
  return 'presented certificate is issued by an unknown authority';
}
