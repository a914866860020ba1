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

/** The elements whose content is not text (removed with their content). */
const HIDDEN_ELEMENT = /<(script|style|head|title)\b/gi;
/** Tags that start a new line. */
const BREAK_TAG = /^(?:br|\/?(?:p|div|tr|li|h[1-6]|blockquote|pre|table))\b/i;

/**
 * A plain-text rendering of HTML, good enough for quoting and searching. Every step is one
 * forward pass (no backtracking regular expression over the markup): HTML comes from anyone
 * who sends mail, and searches decode it.
 */
export function htmlToText(html: string): string {
  let text = removeHiddenElements(html);
  text = removeComments(text).replace(/\s+/g, ' ');
  return tidyLines(decodeEntities(replaceTags(text)));
}

/** `<script ...>...</script>` and the like; one without its closing tag stays (as text and tags). */
function removeHiddenElements(html: string): string {
  const unclosed = new Set<string>();
  const out: string[] = [];
  let pos = 0;
  HIDDEN_ELEMENT.lastIndex = 0;
  let open: RegExpExecArray | null;
  while ((open = HIDDEN_ELEMENT.exec(html))) {
    const name = open[1]!.toLowerCase();
    // No closing tag after this one: none after any later one either.
    if (unclosed.has(name)) continue;
    const close = new RegExp(`</${name}\\s*>`, 'gi');
    close.lastIndex = open.index + open[0].length;
    const closing = close.exec(html);
    if (!closing) {
      unclosed.add(name);
      continue;
    }
    out.push(html.slice(pos, open.index));
    pos = closing.index + closing[0].length;
    HIDDEN_ELEMENT.lastIndex = pos;
  }
  out.push(html.slice(pos));
  return out.join('');
}

/** `<!-- ... -->`; an unterminated comment stays. */
function removeComments(html: string): string {
  const out: string[] = [];
  let pos = 0;
  for (;;) {
    const start = html.indexOf('<!--', pos);
    if (start < 0) break;
    const end = html.indexOf('-->', start + 4);
    if (end < 0) break;
    out.push(html.slice(pos, start));
    pos = end + 3;
  }
  out.push(html.slice(pos));
  return out.join('');
}

/** Tags (from `<` to the next `>`) go; those that break lines become a line feed. */
function replaceTags(html: string): string {
  const out: string[] = [];
  let pos = 0;
  for (;;) {
    const lt = html.indexOf('<', pos);
    if (lt < 0) break;
    const gt = html.indexOf('>', lt + 1);
    // Without a `>` nothing after is a tag.
    if (gt < 0) break;
    out.push(html.slice(pos, lt));
    if (BREAK_TAG.test(html.slice(lt + 1, Math.min(gt, lt + 13)))) out.push('\n');
    pos = gt + 1;
  }
  out.push(html.slice(pos));
  return out.join('');
}

/** Blanks and tabs around line ends go, at most one empty line in a row stays, and the ends are trimmed. */
function tidyLines(text: string): string {
  const lines = text.split('\n');
  const out: string[] = [];
  const last = lines.length - 1;
  let empty = false;
  lines.forEach((line, i) => {
    let start = 0;
    let end = line.length;
    if (i > 0) while (start < end && (line[start] === ' ' || line[start] === '\t')) start++;
    if (i < last) while (end > start && (line[end - 1] === ' ' || line[end - 1] === '\t')) end--;
    if (start === end) {
      if (empty) return;
      empty = true;
    } else empty = false;
    out.push(line.slice(start, end));
  });
  return out.join('\n').trim();
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * The inside of <body> (or the whole text when there is none), for quoting. Tags are found
 * by forward scans (a tag runs to the next `>`), never by backtracking over the markup.
 */
export function htmlBodyContent(html: string): string {
  let inner: string;
  const body = /<body\b/i.exec(html);
  const bodyEnd = body ? html.indexOf('>', body.index + 5) : -1;
  if (body && bodyEnd >= 0) inner = html.slice(bodyEnd + 1);
  else {
    inner = html;
    const head = /<head\b/i.exec(html);
    if (head) {
      const close = /<\/head\s*>/gi;
      close.lastIndex = head.index + 5;
      const closing = close.exec(html);
      if (closing) inner = html.slice(0, head.index) + html.slice(closing.index + closing[0].length);
    }
  }
  const close = inner.search(/<\/body\s*>/i);
  if (close >= 0) inner = inner.slice(0, close);
  return removeTags(removeTags(inner, /<\/?html\b/gi, true), /<!DOCTYPE/gi, false).trim();
}

/** Removes the tags that start as `start` matches (each up to the next `>`): all of them, or the first. */
function removeTags(text: string, start: RegExp, all: boolean): string {
  const out: string[] = [];
  let pos = 0;
  start.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = start.exec(text))) {
    const gt = text.indexOf('>', m.index + m[0].length);
    // Without a `>` after this one, none after a later one either.
    if (gt < 0) break;
    out.push(text.slice(pos, m.index));
    pos = gt + 1;
    start.lastIndex = pos;
    if (!all) break;
  }
  out.push(text.slice(pos));
  return out.join('');
}

/**
 * How much of a message BODY/TEXT searches and folder content filters examine: the encoded
 * bodies of its text parts up to this many bytes in all, in part order (the rest of a
 * longer text is not searched). Bounds the decoding work per message whatever its size.
 */
export const SEARCH_TEXT_BYTES = 2 * 1024 * 1024;

export interface SearchTextOptions {
  /** Encoded bytes of text parts to decode, in all (default SEARCH_TEXT_BYTES). */
  maxBytes?: number;
  /** Called before each text part is decoded; may throw to abandon the message (a deadline). */
  beforePart?: () => void;
}

/**
 * The text of every text part of the message (enclosed messages included), decoded, for
 * IMAP-style BODY / TEXT searches. HTML is reduced to its text so that markup does not match.
 */
export function decodeTextForSearch(raw: Buffer, root: MimePart, options: SearchTextOptions = {}): string {
  const out: string[] = [];
  let budget = options.maxBytes ?? SEARCH_TEXT_BYTES;
  walkParts(root, (part) => {
    if (part.type !== 'text' || budget <= 0) return;
    options.beforePart?.();
    const size = part.end - part.bodyStart;
    const text = decodeTextPart(raw, size > budget ? { ...part, end: part.bodyStart + budget } : part).text;
    budget -= Math.min(size, budget);
    out.push(part.subtype === 'html' ? htmlToText(text) : text);
  });
  return out.join('\n');
}
