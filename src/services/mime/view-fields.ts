/** Values folder views and searches show or match, derived from a message. */
import { decodeHeaderText, parseAddressList } from './headers.js';
import { walkParts } from './parse.js';
import { decodeTextPart, htmlToText } from './text.js';
import type { MimePart } from './types.js';

/**
 * How an address field is shown in a message list: each address's realName when it has
 * one, else the address, joined with ', '. Text that holds no address is shown decoded.
 */
export function addressDisplay(value: string): string {
  const list = parseAddressList(value);
  if (list.length === 0) return decodeHeaderText(value).replace(/\s+/g, ' ').trim();
  return list.map((a) => a.realName ?? a.address).join(', ');
}

/**
 * The text of every text part of the message (enclosed messages included), decoded, for
 * IMAP-style BODY / TEXT searches. HTML is reduced to its text so that markup does not match.
 */
export function decodeTextForSearch(raw: Buffer, root: MimePart): string {
  const out: string[] = [];
  walkParts(root, (part) => {
    if (part.type !== 'text' || part.children.length > 0) return;
    const text = decodeTextPart(raw, part).text;
    out.push(part.subtype === 'html' ? htmlToText(text) : text);
  });
  return out.join('\n');
}
