/**
 * What folderRead shows of S/MIME parts, worked out before the XML is made (the checks are
 * asynchronous, the presentation is not): for each multipart/signed part, the signers whose
 * signatures match the signed bytes and whether their certificates are trusted; for each
 * enveloped part, when the reader's key is unlocked, the decrypted entity (itself examined the
 * same way: a signed message inside an encrypted one) or why it could not be decrypted.
 */
import { parseMime } from '../mime/parse.js';
import { decodePartBody } from '../mime/parts.js';
import type { MimePart } from '../mime/types.js';
import { decryptEnveloped, SmimeInputError, verifyDetached, type Identity, type SignatureCheck } from './crypto.js';
import { isEnveloped, signedParts } from './mime.js';

export interface SignedFinding {
  kind: 'signed';
  signers: SignatureCheck[];
  /** The signature data could not be decoded. */
  decodeError?: string;
}

export interface EnvelopedFinding {
  kind: 'enveloped';
  decrypted?: { raw: Buffer; root: MimePart; cipherName: string; keyLength: number; findings: SmimeFindings };
  decryptionError?: string;
}

export type SmimeFinding = SignedFinding | EnvelopedFinding;
export type SmimeFindings = Map<MimePart, SmimeFinding>;

export interface ReadLimits {
  /** S/MIME parts examined per message (nested ones included); others are shown as they are. */
  maxParts: number;
  /** Decrypted entities larger than this are not shown. */
  maxBytes: number;
  /** Encrypted-within-encrypted levels examined. */
  maxDepth: number;
}

export const READ_LIMITS: ReadLimits = { maxParts: 16, maxBytes: 50 * 1024 * 1024, maxDepth: 3 };

function walk(part: MimePart, visit: (p: MimePart) => void): void {
  visit(part);
  for (const child of part.children) walk(child, visit);
  if (part.message) walk(part.message, visit);
}

export async function examineMessage(raw: Buffer, root: MimePart, identity: Identity | undefined, now: number, limits: ReadLimits = READ_LIMITS): Promise<SmimeFindings> {
  const budget = { parts: limits.maxParts };
  return examine(raw, root, identity, now, limits, budget, 0);
}

async function examine(raw: Buffer, root: MimePart, identity: Identity | undefined, now: number, limits: ReadLimits, budget: { parts: number }, depth: number): Promise<SmimeFindings> {
  const findings: SmimeFindings = new Map();
  const candidates: MimePart[] = [];
  walk(root, (p) => {
    if (signedParts(p) || isEnveloped(p)) candidates.push(p);
  });
  for (const part of candidates) {
    if (budget.parts <= 0) break;
    budget.parts--;
    const signed = signedParts(part);
    if (signed) {
      const content = raw.subarray(signed.content.headerStart, signed.content.end);
      try {
        findings.set(part, { kind: 'signed', signers: await verifyDetached(content, decodePartBody(raw, signed.signature), now) });
      } catch (err) {
        if (!(err instanceof SmimeInputError)) throw err;
        findings.set(part, { kind: 'signed', signers: [], decodeError: err.message });
      }
      continue;
    }
    if (!identity) continue;
    if (depth >= limits.maxDepth) {
      findings.set(part, { kind: 'enveloped', decryptionError: 'encrypted too deep' });
      continue;
    }
    try {
      const result = decryptEnveloped(decodePartBody(raw, part), identity);
      if (result.content.length > limits.maxBytes) throw new SmimeInputError('the decrypted data is too large');
      const inner = parseMime(result.content);
      const nested = await examine(result.content, inner, identity, now, limits, budget, depth + 1);
      findings.set(part, { kind: 'enveloped', decrypted: { raw: result.content, root: inner, cipherName: result.cipherName, keyLength: result.keyLength, findings: nested } });
    } catch (err) {
      if (!(err instanceof SmimeInputError)) throw err;
      findings.set(part, { kind: 'enveloped', decryptionError: err.message });
    }
  }
  return findings;
}
