/**
 * S/MIME message structures (RFC 8551) around the CMS objects of crypto.ts:
 * multipart/signed with a detached application/pkcs7-signature part, and
 * application/pkcs7-mime enveloped-data; and, for reading, where those parts are.
 */
import { randomBytes } from 'node:crypto';
import { parseHeaderBlock } from '../mime/parse.js';
import { headerFieldSpans } from '../mime/outgoing.js';
import type { MimePart } from '../mime/types.js';

/** A message split into its own header fields (not Content-*, not MIME-Version) and its MIME entity (Content-* fields, empty line, body). */
export function splitMessage(raw: Buffer): { outer: Buffer; entity: Buffer } {
  const end = parseHeaderBlock(raw).end;
  const outer: Buffer[] = [];
  const content: Buffer[] = [];
  for (const span of headerFieldSpans(raw, end)) {
    const name = span.name.toLowerCase();
    if (name.startsWith('content-')) content.push(raw.subarray(span.start, span.end));
    else if (name !== 'mime-version') outer.push(raw.subarray(span.start, span.end));
  }
  return { outer: Buffer.concat(outer), entity: Buffer.concat([...content, Buffer.from('\r\n'), raw.subarray(end)]) };
}

/** Base64 in lines of 76 characters, each ended by CRLF (written in one buffer: a 1 MB body is 18,000 lines). */
function base64Lines(data: Buffer): Buffer {
  const text = data.toString('base64');
  const lines = Math.ceil(text.length / 76);
  const out = Buffer.allocUnsafe(text.length + lines * 2);
  let at = 0;
  for (let i = 0; i < text.length; i += 76) {
    at += out.write(text.slice(i, i + 76), at, 'latin1');
    out[at++] = 13;
    out[at++] = 10;
  }
  return out.subarray(0, at);
}

/**
 * The message `raw` signed: its header fields, then a multipart/signed of its entity and the
 * signature `sign` makes over that entity's exact bytes.
 */
export async function signedMessage(raw: Buffer, sign: (entity: Buffer) => Promise<Buffer> | Buffer): Promise<Buffer> {
  const { outer, entity } = splitMessage(raw);
  const signature = await sign(entity);
  const boundary = `----=_smime_${randomBytes(12).toString('hex')}`;
  return Buffer.concat([
    outer,
    Buffer.from(
      'MIME-Version: 1.0\r\n' +
        `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;\r\n\tboundary="${boundary}"\r\n` +
        '\r\nThis is a signed S/MIME message\r\n\r\n' +
        `--${boundary}\r\n`,
      'latin1',
    ),
    entity,
    Buffer.from(
      `\r\n--${boundary}\r\n` +
        'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n' +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n',
      'latin1',
    ),
    base64Lines(signature),
    Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'),
  ]);
}

/** A message with the header fields of `headerSource` (not its Content-*) whose body is the enveloped data `der`. */
export function envelopedMessage(headerSource: Buffer, der: Buffer): Buffer {
  const { outer } = splitMessage(headerSource);
  return Buffer.concat([
    outer,
    Buffer.from(
      'MIME-Version: 1.0\r\n' +
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n' +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n',
      'latin1',
    ),
    base64Lines(der),
  ]);
}

function isPkcs7(subtype: string, suffix: 'mime' | 'signature'): boolean {
  return subtype === `pkcs7-${suffix}` || subtype === `x-pkcs7-${suffix}`;
}

/** A multipart/signed part with an S/MIME signature: its signed part and its signature part. */
export function signedParts(part: MimePart): { content: MimePart; signature: MimePart } | undefined {
  if (part.type !== 'multipart' || part.subtype !== 'signed' || part.children.length !== 2) return undefined;
  const protocol = (part.params['protocol'] ?? '').toLowerCase();
  const signature = part.children[1]!;
  if (!(protocol === 'application/pkcs7-signature' || protocol === 'application/x-pkcs7-signature') && !(signature.type === 'application' && isPkcs7(signature.subtype, 'signature'))) return undefined;
  return { content: part.children[0]!, signature };
}

/** Whether the part is S/MIME enveloped data (application/pkcs7-mime, smime-type enveloped-data or a .p7m name without one). */
export function isEnveloped(part: MimePart): boolean {
  if (part.type !== 'application' || !isPkcs7(part.subtype, 'mime')) return false;
  const smimeType = (part.params['smime-type'] ?? '').toLowerCase();
  if (smimeType !== '') return smimeType === 'enveloped-data';
  const name = (part.params['name'] ?? part.dispositionParams['filename'] ?? '').toLowerCase();
  return name.endsWith('.p7m');
}
