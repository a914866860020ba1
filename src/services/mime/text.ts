/** Decoded text of text parts, and the little HTML handling replies and search need. */
import { xmlSafe } from '../../xml/element.js';
import { decodeBytes } from './charset.js';
import { walkParts } from './parse.js';
import { hasBadBase64, transferDecode } from './parts.js';
import type { MimePart } from './types.js';

export interface DecodedText {
  text: string;
  /** Set when the body could not be read cleanly (bad base64). */
  readError?: string;
}

/**
 * The text of a text/* part: transfer-decoded, charset-decoded (see charset.ts for the
 * fallbacks), line ends turned into LF, format=flowed joined, and cleaned of what XML cannot
 * carry.
 */
export function decodeTextPart(raw: Buffer, part: MimePart): DecodedText {
  const body = raw.subarray(part.bodyStart, part.end);
  const result: DecodedText = { text: '' };
  if (part.encoding === 'base64' && hasBadBase64(body)) result.readError = 'invalid base64 data';
  let text = decodeBytes(transferDecode(body, part.encoding), part.charset);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  text = text.replace(/\r\n?/g, '\n');
  if ((part.params['format'] ?? '').toLowerCase() === 'flowed') {
    text = decodeFlowed(text, (part.params['delsp'] ?? '').toLowerCase() === 'yes');
  }
  result.text = xmlSafe(text);
  return result;
}

/**
 * RFC 3676 format=flowed decoding of LF-separated text. Unlike libmime.decodeFlowed this
 * knows quote depth: "> a \n> b" joins to "> a b" (the quote marks of the continuation line
 * are not kept inside the paragraph) and lines of different depth are never joined.
 * Space-stuffing is removed; "-- " (the signature separator) is never a soft break.
 */
function decodeFlowed(text: string, delSp: boolean): string {
  const out: string[] = [];
  let paragraph: string | undefined;
  let paragraphDepth = 0;
  for (const line of text.split('\n')) {
    let depth = 0;
    while (depth < line.length && line.charCodeAt(depth) === 62) depth++;
    let content = line.slice(depth);
    if (content.startsWith(' ')) content = content.slice(1);
    const soft = content.endsWith(' ') && content !== '-- ';
    if (paragraph !== undefined && depth === paragraphDepth) {
      paragraph += content;
    } else {
      if (paragraph !== undefined) out.push(quotePrefix(paragraphDepth) + paragraph);
      paragraph = content;
      paragraphDepth = depth;
    }
    if (soft) {
      if (delSp) paragraph = paragraph.slice(0, -1);
    } else {
      out.push(quotePrefix(paragraphDepth) + paragraph);
      paragraph = undefined;
    }
  }
  if (paragraph !== undefined) out.push(quotePrefix(paragraphDepth) + paragraph);
  return out.join('\n');
}

function quotePrefix(depth: number): string {
  return depth === 0 ? '' : '>'.repeat(depth) + ' ';
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8});/gi, (m, body: string) => {
    if (body[0] === '#') {
      const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : m;
    }
    return ENTITIES[body.toLowerCase()] ?? m;
  });
}

/** A plain-text rendering of HTML, good enough for quoting and searching. */
export function htmlToText(html: string): string {
  return decodeEntities(
    html
      .replace(/<(script|style|head|title)\b[\s\S]*?<\/\1\s*>/gi, '')
      .replace(/<!--[\s\S]*?-->/g, '')
      .replace(/\s+/g, ' ')
      .replace(/<br\b[^>]*>/gi, '\n')
      .replace(/<\/?(p|div|tr|li|h[1-6]|blockquote|pre|table)\b[^>]*>/gi, '\n')
      .replace(/<[^>]*>/g, ''),
  )
    .replace(/[ \t]+\n/g, '\n')
    .replace(/\n[ \t]+/g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The inside of <body> (or the whole text when there is none), for quoting. */
export function htmlBodyContent(html: string): string {
  const open = /<body\b[^>]*>/i.exec(html);
  let inner = open ? html.slice(open.index + open[0].length) : html.replace(/<head\b[\s\S]*?<\/head\s*>/i, '');
  const close = inner.search(/<\/body\s*>/i);
  if (close >= 0) inner = inner.slice(0, close);
  return inner.replace(/<\/?html\b[^>]*>/gi, '').replace(/<!DOCTYPE[^>]*>/i, '').trim();
}

/**
 * The text of every text part of the message (enclosed messages included), decoded, for
 * IMAP-style BODY / TEXT searches. HTML is reduced to its text so that markup does not match.
 */
export function decodeTextForSearch(raw: Buffer, root: MimePart): string {
  const out: string[] = [];
  walkParts(root, (part) => {
    if (part.type !== 'text') return;
    const text = decodeTextPart(raw, part).text;
    out.push(part.subtype === 'html' ? htmlToText(text) : text);
  });
  return out.join('\n');
}
