import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { scramDigest, scramHmac, SCRAM_ITERATIONS, type ScramHash, type ScramVerifier } from './passwords.js';

/**
 * The messages of a SCRAM exchange (RFC 5802), server side, without channel binding (the
 * -PLUS mechanisms are not offered): parsing the client's two messages, the server's first
 * one, and the proofs. Protocol-independent: XMPP's SASL carries them in base64
 * (src/transports/xmpp/sasl.ts); AuthService.checkScram runs an exchange as one login attempt.
 */

/** A SCRAM message that breaks the rules; `condition`: the SASL failure it is answered with. */
export class ScramError extends Error {
  constructor(
    readonly condition: 'malformed-request' | 'encryption-required' | 'invalid-authzid',
    message: string,
  ) {
    super(message);
  }
}

export interface ClientFirst {
  /** `n,,` or `y,,` (with an authzid: `n,a=…,`): echoed base64 in the client's final `c=`. */
  gs2Header: string;
  authzid: string | undefined;
  /** The user name, `=2C` and `=3D` decoded. */
  user: string;
  clientNonce: string;
  /** client-first-message-bare: part of the AuthMessage. */
  bare: string;
}

export interface ClientFinal {
  channelBinding: string;
  nonce: string;
  proof: Buffer;
  /** client-final-message-without-proof: part of the AuthMessage. */
  withoutProof: string;
}

/** A nonce: printable ASCII except the comma (RFC 5802 7). */
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A saslname (RFC 5802 5.1): `=2C` is a comma, `=3D` an equals sign, any other `=` is malformed. */
function decodeSaslName(value: string): string {
  if (/=(?!2C|3D)/.test(value)) throw new ScramError('malformed-request', 'malformed user name');
  return value.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

export function parseClientFirst(message: string): ClientFirst {
  const match = /^(n|y|p=[^,]*),(a=[^,]*)?,(.*)$/s.exec(message);
  if (!match) throw new ScramError('malformed-request', 'malformed SCRAM client-first message (GS2 header)');
  const [, flag, authzidPart, bare] = match as unknown as [string, string, string | undefined, string];
  // We offer no -PLUS mechanism: a client asking for channel binding here is mistaken or attacked.
  if (flag.startsWith('p=')) throw new ScramError('malformed-request', 'channel binding is not supported with this mechanism');
  const fields = bare.split(',');
  if (fields[0]?.startsWith('m=')) throw new ScramError('malformed-request', 'unsupported mandatory SCRAM extension');
  const user = fields[0]?.startsWith('n=') ? fields[0].slice(2) : undefined;
  const nonce = fields[1]?.startsWith('r=') ? fields[1].slice(2) : undefined;
  if (!user || !nonce || !NONCE.test(nonce)) throw new ScramError('malformed-request', 'malformed SCRAM client-first message');
  const authzid = authzidPart ? decodeSaslName(authzidPart.slice(2)) : undefined;
  return { gs2Header: `${flag},${authzidPart ?? ''},`, authzid: authzid || undefined, user: decodeSaslName(user), clientNonce: nonce, bare };
}

export function parseClientFinal(message: string): ClientFinal {
  const proofAt = message.lastIndexOf(',p=');
  if (proofAt < 0) throw new ScramError('malformed-request', 'malformed SCRAM client-final message (no proof)');
  const withoutProof = message.slice(0, proofAt);
  const proof = message.slice(proofAt + 3);
  const fields = withoutProof.split(',');
  const channelBinding = fields[0]?.startsWith('c=') ? fields[0].slice(2) : undefined;
  const nonce = fields[1]?.startsWith('r=') ? fields[1].slice(2) : undefined;
  if (channelBinding === undefined || !nonce || !BASE64.test(proof) || proof === '') {
    throw new ScramError('malformed-request', 'malformed SCRAM client-final message');
  }
  return { channelBinding, nonce, proof: Buffer.from(proof, 'base64'), withoutProof };
}

/** The server's first message for `clientNonce`: the combined nonce, the salt and the iterations. */
export function serverFirst(clientNonce: string, verifier: Pick<ScramVerifier, 'salt' | 'iterations'>): { message: string; nonce: string } {
  const nonce = clientNonce + randomBytes(18).toString('base64');
  return { message: `r=${nonce},s=${verifier.salt},i=${verifier.iterations}`, nonce };
}

/** Whether `proof` shows the client knows the password (RFC 5802 3: H(ClientProof XOR ClientSignature) = StoredKey). */
export function verifyClientProof(hash: ScramHash, verifier: ScramVerifier, authMessage: string, proof: Buffer): boolean {
  const storedKey = Buffer.from(verifier.storedKey, 'base64');
  const signature = scramHmac(hash, storedKey, authMessage);
  if (proof.length !== signature.length) return false;
  const clientKey = Buffer.alloc(signature.length);
  for (let i = 0; i < signature.length; i++) clientKey[i] = proof[i]! ^ signature[i]!;
  const computed = scramDigest(hash, clientKey);
  return computed.length === storedKey.length && timingSafeEqual(computed, storedKey);
}

/** The server's final message `v=ServerSignature`, proof that it holds the verifier too. */
export function serverFinal(hash: ScramHash, verifier: ScramVerifier, authMessage: string): string {
  return `v=${scramHmac(hash, Buffer.from(verifier.serverKey, 'base64'), authMessage).toString('base64')}`;
}

/**
 * For a name without SCRAM verifiers (unknown, or an account made before they were kept):
 * a salt that looks like any other and is the same at every attempt (an HMAC of the name
 * with the server's secret, kept in the store so that it survives restarts and is the same
 * on every node), so that the exchange does not tell which names exist. Its keys match no
 * password.
 */
export function fakeScramVerifier(secret: Buffer, hash: ScramHash, user: string): ScramVerifier {
  const salt = createHmac('sha256', secret).update(`${hash}\0${user.toLowerCase()}`).digest().subarray(0, 16);
  const key = randomBytes(hash === 'SHA-1' ? 20 : 32).toString('base64');
  return { salt: salt.toString('base64'), iterations: SCRAM_ITERATIONS, storedKey: key, serverKey: key };
}
