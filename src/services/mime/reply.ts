/**
 * Pre-composed replies and forwards (folderRead mode="replyFrom" and friends): an EMail
 * element the client edits and sends back with messageSubmit or messageAppend.
 */
import { XmlElement, xmlSafe } from '../../xml/element.js';
import { formatLocal } from '../../xml/time.js';
import { ServiceError } from '../errors.js';
import { MONTH_NAMES, WEEKDAYS } from './dates.js';
import { headerValue } from './fields.js';
import { decodeHeaderText, parseAddressList, parseDateHeader } from './headers.js';
import { findPart, walkParts } from './parse.js';
import { decodeTextPart, escapeHtml, htmlBodyContent, htmlToText } from './text.js';
import type { Address, MimePart } from './types.js';

export type ReplyMode = 'replyFrom' | 'replyAll' | 'forward' | 'replyFromHTML' | 'replyAllHTML' | 'forwardHTML';

export interface ReplyOptions {
  timeZone: string;
  /** The account's own addresses: never put into a reply-all's recipients. */
  ownAddresses: string[];
  /** A message/rfc822 part to reply to instead of the message itself. */
  partID?: string;
}

const REPLY_PREFIX = /^\s*(re|aw|sv|antw)(\[\d+\])?\s*:/i;
const FORWARD_PREFIX = /^\s*(fwd?|fw|wg|tr)(\[\d+\])?\s*:/i;

/** "Mon, 10 Apr 2006 15:15:48" in the account's zone. */
function readableDate(time: number, timeZone: string): string {
  const local = formatLocal(new Date(time), timeZone);
  const y = +local.slice(0, 4);
  const m = +local.slice(4, 6);
  const d = +local.slice(6, 8);
  const weekday = WEEKDAYS[new Date(Date.UTC(y, m - 1, d)).getUTCDay()]!;
  return `${weekday}, ${d} ${MONTH_NAMES[m - 1]} ${y} ${local.slice(9, 11)}:${local.slice(11, 13)}:${local.slice(13, 15)}`;
}

function displayAddress(a: Address): string {
  return a.realName ? `${a.realName} <${a.address}>` : a.address;
}

interface Bodies {
  plain?: string;
  html?: string;
}

/** The message's main text: the first inline text/plain and text/html outside enclosed messages. */
function mainBodies(raw: Buffer, top: MimePart): Bodies {
  const bodies: Bodies = {};
  walkParts(top, (part, message) => {
    if (message !== top || part.type !== 'text' || part.disposition === 'attachment') return;
    if (part.subtype === 'plain' && bodies.plain === undefined) bodies.plain = decodeTextPart(raw, part).text;
    else if (part.subtype === 'html' && bodies.html === undefined) bodies.html = decodeTextPart(raw, part).text;
  });
  return bodies;
}

function quoteText(text: string): string {
  const lines = text.replace(/\n+$/, '').split('\n');
  // Already quoted lines get one more '>' without a space, as mail clients do.
  return lines.map((line) => (line === '' ? '>' : line.startsWith('>') ? '>' + line : '> ' + line)).join('\n');
}

function withPrefix(subject: string, prefix: 'Re: ' | 'Fwd: '): string {
  const pattern = prefix === 'Re: ' ? REPLY_PREFIX : FORWARD_PREFIX;
  return pattern.test(subject) ? subject.trim() : prefix + subject.trim();
}

/**
 * Builds the reply or forward template for the message `root` (or its message/rfc822 part
 * options.partID).
 */
export function replyTemplate(raw: Buffer, root: MimePart, mode: ReplyMode, options: ReplyOptions): XmlElement {
  let top = root;
  if (options.partID) {
    const part = findPart(root, options.partID);
    if (!part?.message) throw new ServiceError('the partID does not specify an enclosed message', 500);
    top = part.message;
  }
  const fields = top.headers;
  const own = new Set(options.ownAddresses.map((a) => a.toLowerCase()));
  const html = mode.endsWith('HTML');
  const forward = mode.startsWith('forward');
  const replyAll = mode.startsWith('replyAll');

  const from = parseAddressList(headerValue(fields, 'From') ?? '');
  const to = parseAddressList(headerValue(fields, 'To') ?? '');
  const cc = parseAddressList(headerValue(fields, 'Cc') ?? '');
  const subject = decodeHeaderText(headerValue(fields, 'Subject') ?? '');
  const dateField = headerValue(fields, 'Date');
  const date = dateField ? parseDateHeader(dateField) : undefined;
  const dateText = date ? readableDate(date.time, options.timeZone) : decodeHeaderText(dateField ?? '');
  const messageID = headerValue(fields, 'Message-ID')?.trim();

  const email = new XmlElement('EMail');
  const addAddress = (name: string, a: Address): void => {
    email.add(name, a.realName ? { realName: xmlSafe(a.realName) } : undefined, xmlSafe(a.address));
  };

  if (!forward) {
    const replyTo = parseAddressList(headerValue(fields, 'Reply-To') ?? '');
    const recipients = replyTo.length > 0 ? replyTo : from;
    const seen = new Set<string>();
    for (const a of recipients) {
      const key = a.address.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      addAddress('To', a);
    }
    if (replyAll) {
      for (const a of [...to, ...cc]) {
        const key = a.address.toLowerCase();
        if (seen.has(key) || own.has(key)) continue;
        seen.add(key);
        addAddress('Cc', a);
      }
    }
  }
  email.add('Subject', undefined, xmlSafe(withPrefix(subject, forward ? 'Fwd: ' : 'Re: ')));
  if (!forward && messageID) {
    email.add('In-Reply-To', undefined, xmlSafe(messageID));
    const previous = headerValue(fields, 'References') ?? headerValue(fields, 'In-Reply-To') ?? '';
    const references = [...previous.split(/\s+/).filter((r) => /^<.*>$/.test(r)), messageID].join(' ');
    email.add('References', undefined, xmlSafe(references));
  }

  const bodies = mainBodies(raw, top);
  const plain = bodies.plain ?? (bodies.html !== undefined ? htmlToText(bodies.html) : '');
  const sender = from[0] ? from[0].realName ?? from[0].address : 'someone';

  if (forward) {
    const block: [string, string][] = [
      ['Subject', subject],
      ['Date', dateText],
      ['From', from.map(displayAddress).join(', ')],
      ['To', to.map(displayAddress).join(', ')],
    ];
    if (cc.length > 0) block.push(['Cc', cc.map(displayAddress).join(', ')]);
    if (html) {
      const rows = block.map(([k, v]) => `<tr><th align="right" valign="baseline">${k}:</th><td>${escapeHtml(v)}</td></tr>`).join('');
      const original = bodies.html !== undefined ? htmlBodyContent(bodies.html) : textToHtml(plain);
      const body = `<html><body><p></p><div>-------- Original Message --------</div><table border="0" cellspacing="0" cellpadding="0">${rows}</table><br>${original}</body></html>`;
      email.add('MIME', { type: 'text', subtype: 'html', charset: 'utf-8' }, xmlSafe(body));
    } else {
      const header = block.map(([k, v]) => `${k}: ${v}`).join('\n');
      email.add('MIME', { type: 'text', subtype: 'plain', charset: 'utf-8' }, xmlSafe(`\n\n-------- Original Message --------\n${header}\n\n${plain}`));
    }
    return email;
  }

  const attribution = date || dateText ? `On ${dateText}, ${sender} wrote:` : `${sender} wrote:`;
  if (html) {
    const original = bodies.html !== undefined ? htmlBodyContent(bodies.html) : textToHtml(plain);
    const body = `<html><body><p></p><div>${escapeHtml(attribution)}</div><blockquote type="cite">${original}</blockquote></body></html>`;
    email.add('MIME', { type: 'text', subtype: 'html', charset: 'utf-8' }, xmlSafe(body));
  } else {
    email.add('MIME', { type: 'text', subtype: 'plain', charset: 'utf-8' }, xmlSafe(`\n\n${attribution}\n${quoteText(plain)}\n`));
  }
  return email;
}

function textToHtml(text: string): string {
  return escapeHtml(text).replace(/\n/g, '<br>\n');
}
