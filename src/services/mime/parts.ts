/**
 * Access to the bytes of one part, for the HTTP MIME retrieval modes (P.txt, H.txt, B.ext,
 * R/cid) and for everything that needs a decoded body.
 */
import { hexValue } from './headers.js';
import { walkParts } from './parse.js';
import type { MimePart } from './types.js';

/** The whole part, header and body, undecoded (the P.txt mode). */
export function partBytes(raw: Buffer, part: MimePart): Buffer {
  return raw.subarray(part.headerStart, part.end);
}

/** The part header, undecoded, with its terminating empty line (the H.txt mode). */
export function partHeaderBytes(raw: Buffer, part: MimePart): Buffer {
  return raw.subarray(part.headerStart, part.bodyStart);
}

/**
 * Quoted-printable decoding (RFC 2045 6.7), lenient: a '=' not followed by two hex digits is
 * kept as it is, trailing white space before a line break is dropped, soft breaks join lines.
 */
function decodeQuotedPrintable(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  let n = 0;
  let i = 0;
  const len = body.length;
  while (i < len) {
    const c = body[i]!;
    if (c === 0x3d) {
      // soft line break: '=' then optional white space, then CRLF or LF (or the end)
      let j = i + 1;
      while (j < len && (body[j] === 32 || body[j] === 9)) j++;
      if (j >= len) {
        i = len;
        continue;
      }
      if (body[j] === 13 && body[j + 1] === 10) {
        i = j + 2;
        continue;
      }
      if (body[j] === 10) {
        i = j + 1;
        continue;
      }
      const h1 = i + 1 < len ? hexValue(body[i + 1]!) : -1;
      const h2 = i + 2 < len ? hexValue(body[i + 2]!) : -1;
      if (h1 >= 0 && h2 >= 0) {
        out[n++] = h1 * 16 + h2;
        i += 3;
        continue;
      }
      out[n++] = c;
      i++;
      continue;
    }
    if (c === 32 || c === 9) {
      // white space at the end of a line was added in transport: drop it
      let j = i;
      while (j < len && (body[j] === 32 || body[j] === 9)) j++;
      if (j >= len || body[j] === 10 || (body[j] === 13 && body[j + 1] === 10)) {
        i = j;
        continue;
      }
      while (i < j) out[n++] = body[i++]!;
      continue;
    }
    out[n++] = c;
    i++;
  }
  return out.subarray(0, n);
}

const BASE64_CHAR = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=') BASE64_CHAR[c.charCodeAt(0)] = 1;

/** True when a base64 body holds anything but base64 characters and white space. */
export function hasBadBase64(body: Buffer): boolean {
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (!BASE64_CHAR[c] && c !== 13 && c !== 10 && c !== 32 && c !== 9) return true;
  }
  return false;
}

/**
 * Transfer-decodes a body (base64, quoted-printable; anything else is returned as it is).
 * Node's base64 decoder skips characters outside the alphabet, which is the lenient
 * behaviour we want for damaged mail.
 */
export function transferDecode(body: Buffer, encoding: string): Buffer {
  if (encoding === 'base64') return Buffer.from(body.toString('latin1'), 'base64');
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body);
  return body;
}

/** The part body, transfer-decoded but not charset-converted (the B.ext mode). */
export function decodePartBody(raw: Buffer, part: MimePart): Buffer {
  return transferDecode(raw.subarray(part.bodyStart, part.end), part.encoding);
}

const TOKEN = /^[A-Za-z0-9!#$&^_.+-]+$/;

/** The HTTP Content-Type for a part's decoded body. */
export function contentTypeOf(part: MimePart): string {
  // A type with controls or 8-bit bytes in it cannot be an HTTP header value.
  if (!TOKEN.test(part.type) || !TOKEN.test(part.subtype)) return 'application/octet-stream';
  let value = part.type + '/' + part.subtype;
  if (part.charset && /^[\w.:+-]+$/.test(part.charset)) value += '; charset=' + part.charset;
  return value;
}

function normalizeCid(cid: string): string {
  return cid.trim().replace(/^cid:/i, '').replace(/^<|>$/g, '').trim();
}

/** Parts of the message rooted at `top`, without those of enclosed messages. */
function messageParts(top: MimePart): MimePart[] {
  const out: MimePart[] = [];
  walkParts(top, (part, message) => {
    if (message === top) out.push(part);
  });
  return out;
}

function matchCid(parts: MimePart[], cid: string): MimePart | undefined {
  for (const p of parts) if (p.contentID === cid) return p;
  const lower = cid.toLowerCase();
  for (const p of parts) if (p.contentID?.toLowerCase() === lower) return p;
  return undefined;
}

/** The chain of parts from the top of `root` to `part` (both included), or undefined. */
function pathTo(root: MimePart, part: MimePart): MimePart[] | undefined {
  const path: MimePart[] = [];
  const search = (node: MimePart): boolean => {
    path.push(node);
    if (node === part) return true;
    for (const child of node.children) if (search(child)) return true;
    if (node.message && search(node.message)) return true;
    path.pop();
    return false;
  };
  return search(root) ? path : undefined;
}

/**
 * The part with Content-ID `contentID` "related" to `part` (the R/cid mode): searched first
 * among the parts of the nearest enclosing multipart/related, then anywhere in the same
 * message (an enclosed message counts as a message of its own).
 */
export function findRelated(root: MimePart, part: MimePart, contentID: string): MimePart | undefined {
  const cid = normalizeCid(contentID);
  if (!cid) return undefined;
  const path = pathTo(root, part) ?? [root];
  let messageTop = root;
  let related: MimePart | undefined;
  for (let i = 0; i < path.length; i++) {
    const node = path[i]!;
    if (i > 0 && path[i - 1]!.message === node) {
      messageTop = node;
      related = undefined;
    }
    if (node.type === 'multipart' && node.subtype === 'related') related = node;
  }
  if (related) {
    const found = matchCid(messageParts(related), cid);
    if (found) return found;
  }
  return matchCid(messageParts(messageTop), cid);
}
