/**
 * The S/MIME cryptography, all of it done by libraries (no cipher, digest or padding here):
 *
 * - PKI.js (with asn1js): the CMS structures (SignedData, EnvelopedData) written and read, and
 *   signature verification; digests and RSA signatures through Node's WebCrypto.
 * - node:crypto: AES/3DES content encryption, RSA PKCS#1 v1.5 key transport when encrypting,
 *   RSA-OAEP when decrypting, RSA key generation, X509Certificate for names, dates and issuers.
 * - node-forge: PKCS#12 (PFX) import and export, the certificates the server issues, and the
 *   RSA PKCS#1 v1.5 key transport when decrypting, which Node's crypto refuses since
 *   CVE-2023-46809 (and WebCrypto never did); what `openssl smime`, `openssl cms` and mail
 *   clients write.
 *
 * Keys travel inside the service as PKCS#8 PEM text: in clear only in an unlocked session's
 * memory (src/ximss/ops/smime.ts), sealed in the store (sealed-key.ts).
 */
import { constants, createCipheriv, createDecipheriv, createHash, createPrivateKey, generateKeyPair, privateDecrypt, publicEncrypt, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
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
    { name: 'commonName', value: realName !== undefined && realName.trim() !== '' ? realName.trim().slice(0, 64) : address, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class },
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

/** Whether the certificate is for this key. */
export function certificateMatchesKey(certPem: string, keyPem: string): boolean {
  const pub = forge.pki.certificateFromPem(certPem).publicKey as forge.pki.rsa.PublicKey;
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return typeof pub.n === 'object' && pub.n.equals(key.n) && pub.e.equals(key.e);
}

const OID_DATA = '1.2.840.113549.1.7.1';
const OID_CONTENT_TYPE = '1.2.840.113549.1.9.3';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';
const OID_SIGNING_TIME = '1.2.840.113549.1.9.5';

function pkijsCertificate(pem: string): pkijs.Certificate {
  return pkijs.Certificate.fromBER(arrayBufferOf(new X509Certificate(pem).raw));
}

/**
 * A detached CMS SignedData (DER) over `content`: SHA-256, RSA (PKCS#1 v1.5), with the signer's
 * certificate and the contentType, signingTime and messageDigest attributes. PKI.js builds it;
 * the digest and the signature are WebCrypto's (native code).
 */
export async function signDetached(content: Buffer, identity: Identity, now: number): Promise<Buffer> {
  const certificate = pkijsCertificate(identity.certPem);
  const key = await webcrypto.subtle.importKey('pkcs8', createPrivateKey(identity.keyPem).export({ type: 'pkcs8', format: 'der' }), { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
  const digest = createHash('sha256').update(content).digest();
  const signed = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID_DATA }),
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: certificate.issuer, serialNumber: certificate.serialNumber }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({
          type: 0,
          attributes: [
            new pkijs.Attribute({ type: OID_CONTENT_TYPE, values: [new asn1js.ObjectIdentifier({ value: OID_DATA })] }),
            new pkijs.Attribute({ type: OID_SIGNING_TIME, values: [new asn1js.UTCTime({ valueDate: new Date(now) })] }),
            new pkijs.Attribute({ type: OID_MESSAGE_DIGEST, values: [new asn1js.OctetString({ valueHex: arrayBufferOf(digest) })] }),
          ],
        }),
      }),
    ],
    certificates: [certificate],
  });
  await signed.sign(key, 0, 'SHA-256');
  const info = new pkijs.ContentInfo({ contentType: pkijs.ContentInfo.SIGNED_DATA, content: signed.toSchema(true) });
  return Buffer.from(info.toSchema().toBER(false));
}

const OID_RSA = '1.2.840.113549.1.1.1';
const OID_RSA_OAEP = '1.2.840.113549.1.1.7';
const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42';

/** Content ciphers read: OID -> Node's cipher, the name and key bits folderRead shows. */
const CIPHERS: Record<string, { node: string; name: string; bits: number; keyBytes: number }> = {
  '2.16.840.1.101.3.4.1.2': { node: 'aes-128-cbc', name: 'AES', bits: 128, keyBytes: 16 },
  '2.16.840.1.101.3.4.1.22': { node: 'aes-192-cbc', name: 'AES', bits: 192, keyBytes: 24 },
  [OID_AES256_CBC]: { node: 'aes-256-cbc', name: 'AES', bits: 256, keyBytes: 32 },
  '1.2.840.113549.3.7': { node: 'des-ede3-cbc', name: '3DES', bits: 168, keyBytes: 24 },
};

/**
 * CMS EnvelopedData (DER) of `content` for the certificates: AES-256-CBC content (Node's cipher),
 * each recipient's copy of the key with RSA PKCS#1 v1.5 (Node's publicEncrypt), the structure
 * PKI.js's. What `openssl smime -encrypt -aes256` writes.
 */
export function encryptFor(content: Buffer, certPems: readonly string[]): Buffer {
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const encrypted = Buffer.concat([cipher.update(content), cipher.final()]);
  const recipientInfos = certPems.map((pem) => {
    const x509 = new X509Certificate(pem);
    if (x509.publicKey.asymmetricKeyType !== 'rsa') throw new SmimeInputError('a recipient certificate does not have an RSA key');
    const certificate = pkijs.Certificate.fromBER(arrayBufferOf(x509.raw));
    const encryptedKey = publicEncrypt({ key: x509.publicKey, padding: constants.RSA_PKCS1_PADDING }, key);
    return new pkijs.RecipientInfo({
      variant: 1,
      value: new pkijs.KeyTransRecipientInfo({
        version: 0,
        rid: new pkijs.IssuerAndSerialNumber({ issuer: certificate.issuer, serialNumber: certificate.serialNumber }),
        keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID_RSA, algorithmParams: new asn1js.Null() }),
        encryptedKey: new asn1js.OctetString({ valueHex: arrayBufferOf(encryptedKey) }),
      }),
    });
  });
  const enveloped = new pkijs.EnvelopedData({
    version: 0,
    recipientInfos,
    encryptedContentInfo: new pkijs.EncryptedContentInfo({
      contentType: OID_DATA,
      contentEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID_AES256_CBC, algorithmParams: new asn1js.OctetString({ valueHex: arrayBufferOf(iv) }) }),
      encryptedContent: new asn1js.OctetString({ valueHex: arrayBufferOf(encrypted) }),
    }),
  });
  const info = new pkijs.ContentInfo({ contentType: pkijs.ContentInfo.ENVELOPED_DATA, content: enveloped.toSchema() });
  return Buffer.from(info.toSchema().toBER(false));
}

export interface Decrypted {
  content: Buffer;
  cipherName: string;
  keyLength: number;
}

/** The recipient info for this certificate: by issuer and serial number, or by subject key identifier. */
function recipientFor(enveloped: pkijs.EnvelopedData, x509: X509Certificate): pkijs.KeyTransRecipientInfo | undefined {
  const certificate = pkijs.Certificate.fromBER(arrayBufferOf(x509.raw));
  const skid = certificate.extensions?.find((e) => e.extnID === '2.5.29.14')?.parsedValue;
  for (const info of enveloped.recipientInfos) {
    if (info.variant !== 1 || !(info.value instanceof pkijs.KeyTransRecipientInfo)) continue;
    const rid = info.value.rid;
    if (rid instanceof pkijs.IssuerAndSerialNumber) {
      if (rid.serialNumber.isEqual(certificate.serialNumber) && rid.issuer.isEqual(certificate.issuer)) return info.value;
    } else if (skid instanceof asn1js.OctetString && rid instanceof asn1js.OctetString && rid.isEqual(skid)) {
      return info.value;
    }
  }
  return undefined;
}

/**
 * Decrypts CMS EnvelopedData (DER) with the identity; SmimeInputError saying why it could not.
 * The content key comes out of RSA PKCS#1 v1.5 (node-forge: Node's crypto refuses it) or
 * RSA-OAEP (Node's crypto); a key that does not unpad is replaced by a random one, so that a
 * bad padding and a bad content fail alike ("decryption failed"), giving no padding oracle.
 */
export function decryptEnveloped(der: Buffer, identity: Identity): Decrypted {
  let enveloped: pkijs.EnvelopedData;
  try {
    const info = pkijs.ContentInfo.fromBER(arrayBufferOf(der));
    if (info.contentType !== pkijs.ContentInfo.ENVELOPED_DATA) throw new SmimeInputError('not enveloped data');
    enveloped = new pkijs.EnvelopedData({ schema: info.content });
  } catch (err) {
    if (err instanceof SmimeInputError) throw err;
    throw new SmimeInputError('the encrypted data cannot be read');
  }
  const recipient = recipientFor(enveloped, new X509Certificate(identity.certPem));
  if (!recipient) throw new SmimeInputError("the message is not encrypted for this account's certificate");
  const algorithm = enveloped.encryptedContentInfo.contentEncryptionAlgorithm;
  const cipher = CIPHERS[algorithm.algorithmId];
  if (!cipher) throw new SmimeInputError(`unsupported content cipher ${algorithm.algorithmId}`);
  const params = algorithm.algorithmParams as unknown;
  if (!(params instanceof asn1js.OctetString)) throw new SmimeInputError('the encrypted data has no IV');
  const iv = Buffer.from(params.valueBlock.valueHexView);
  const encryptedKey = Buffer.from(recipient.encryptedKey.valueBlock.valueHexView);
  let key: Buffer;
  if (recipient.keyEncryptionAlgorithm.algorithmId === OID_RSA) {
    const privateKey = forge.pki.privateKeyFromPem(identity.keyPem) as forge.pki.rsa.PrivateKey;
    try {
      key = bufferOf(privateKey.decrypt(encryptedKey.toString('binary'), 'RSAES-PKCS1-V1_5'));
    } catch {
      key = randomBytes(cipher.keyBytes);
    }
  } else if (recipient.keyEncryptionAlgorithm.algorithmId === OID_RSA_OAEP) {
    try {
      key = privateDecrypt({ key: identity.keyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, encryptedKey);
    } catch {
      key = randomBytes(cipher.keyBytes);
    }
  } else {
    throw new SmimeInputError(`unsupported key transport ${recipient.keyEncryptionAlgorithm.algorithmId}`);
  }
  if (key.length !== cipher.keyBytes) key = randomBytes(cipher.keyBytes);
  let content: Buffer;
  try {
    const decipher = createDecipheriv(cipher.node, key, iv);
    content = Buffer.concat([decipher.update(Buffer.from(enveloped.encryptedContentInfo.getEncryptedContent())), decipher.final()]);
  } catch {
    throw new SmimeInputError('decryption failed');
  }
  return { content, cipherName: cipher.name, keyLength: cipher.bits };
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
