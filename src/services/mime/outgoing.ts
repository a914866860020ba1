/**
 * Messages made from other messages before they are sent: header surgery (Bcc removed,
 * Resent- fields added), a forward wrapping the original, a disposition notification; and
 * the text messages the server writes itself (replies of Mail Rules, password-reset mail).
 */
import { el, type XmlElement } from '../../xml/element.js';
import { ServiceError } from '../errors.js';
import { composeMessage, newMessageId } from './compose.js';
import { rfcDateInZone } from './dates.js';
import { headerValue } from './fields.js';
import { parseHeaderBlock } from './parse.js';
import { multipartReport } from './report.js';
import type { Address, HeaderField, PartResolver } from './types.js';

/** Where one header field lies in a message: bytes [start, end), its folded lines and line end included. */
export interface FieldSpan {
  name: string;
  start: number;
  end: number;
}

/** The byte spans of the header fields before `headerEnd` (parseHeaderBlock's `end`). */
export function headerFieldSpans(raw: Buffer, headerEnd: number): FieldSpan[] {
  const spans: FieldSpan[] = [];
  let pos = 0;
  while (pos < headerEnd) {
    const first = raw[pos];
    if (first === 13 || first === 10) break; // the empty line
    const lf = raw.indexOf(10, pos);
    const next = lf < 0 || lf >= headerEnd ? headerEnd : lf + 1;
    if ((first === 32 || first === 9) && spans.length > 0) {
      spans[spans.length - 1]!.end = next; // a folded line belongs to the field above
    } else {
      const line = raw.toString('latin1', pos, next);
      const colon = line.indexOf(':');
      spans.push({ name: colon < 0 ? '' : line.slice(0, colon).trim(), start: pos, end: next });
    }
    pos = next;
  }
  return spans;
}

/** The message without the named header fields (names in lower case), folded lines included. */
export function removeHeaderFields(raw: Buffer, names: ReadonlySet<string>): Buffer {
  const kept: Buffer[] = [];
  let pos = 0;
  for (const span of headerFieldSpans(raw, parseHeaderBlock(raw).end)) {
    if (!names.has(span.name.toLowerCase())) continue;
    kept.push(raw.subarray(pos, span.start));
    pos = span.end;
  }
  kept.push(raw.subarray(pos));
  return Buffer.concat(kept);
}

/** The message with header fields (`Name: value`; a value may be folded with CRLF + blank) put in front. */
export function prependHeaderFields(raw: Buffer, fields: readonly string[]): Buffer {
  const lines = fields.map((f) => f.replace(/\r?\n(?![ \t])/g, ' ') + '\r\n');
  return Buffer.concat([Buffer.from(lines.join(''), 'utf8'), raw]);
}

/**
 * RFC 5322 section 3.6.6 resent fields for a message re-sent unchanged to new recipients
 * (messageRedirect without mirror, the "Redirect to" rule): a block prepended as a whole.
 */
export function resentFields(from: string, to: readonly string[], hostName: string, timeZone = 'HostOS'): string[] {
  return [
    `Resent-From: ${from}`,
    `Resent-Date: ${rfcDateInZone(new Date(), timeZone)}`,
    `Resent-Message-ID: ${newMessageId(hostName)}`,
    `Resent-To: ${to.join(',\r\n\t')}`,
  ];
}

/** A header field of a generated message: text, or an address (written with its real name). */
export type GeneratedField = readonly [name: string, value: string | Address];

/** Message parts a generated message never takes from anywhere but its own input. */
const NO_EXTERNAL_PARTS: PartResolver = {
  upload: async () => {
    throw new ServiceError('uploaded files cannot be attached here');
  },
  file: async () => {
    throw new ServiceError('stored files cannot be attached here');
  },
  copyMIME: async () => {
    throw new ServiceError('stored messages cannot be attached here');
  },
};

/** A message this server writes: the fields in order, then Date, Message-ID and MIME-Version. */
function generate(
  spec: { hostName: string; timeZone: string },
  fields: readonly GeneratedField[],
  body: XmlElement,
  resolver: PartResolver = NO_EXTERNAL_PARTS,
): Promise<Buffer> {
  const email = el(
    'EMail',
    undefined,
    ...fields.map(([name, value]) => (typeof value === 'string' ? el(name, undefined, value) : el(name, { realName: value.realName }, value.address))),
    body,
  );
  return composeMessage(email, resolver, { timeZone: spec.timeZone, addMissing: true, hostname: spec.hostName, omitBcc: true });
}

export interface TextMessageSpec {
  hostName: string;
  timeZone: string;
  /** The header fields, in order. */
  fields: readonly GeneratedField[];
  /** The body, text/plain in UTF-8. */
  text: string;
}

/** A new text message ("Reply with", the password-reset mail). */
export function textMessage(spec: TextMessageSpec): Promise<Buffer> {
  return generate(spec, spec.fields, el('MIME', { type: 'text', subtype: 'plain', charset: 'utf-8' }, spec.text));
}

export interface ForwardSpec {
  hostName: string;
  timeZone: string;
  from: Address;
  to: readonly string[];
  /** The original's Subject, decoded. */
  subject: string;
  original: Buffer;
  /** A short text above the attachment, if any. */
  text?: string;
  /** More header fields, e.g. Auto-Submitted. */
  extraFields?: readonly [string, string][];
}

/** A new message carrying the original as a message/rfc822 attachment (messageForward, "Forward to"). */
export function forwardMessage(spec: ForwardSpec): Promise<Buffer> {
  const subject = /^\s*fwd?:/i.test(spec.subject) ? spec.subject : `Fwd: ${spec.subject}`.trim();
  const parts = [
    ...(spec.text ? [el('MIME', { type: 'text', subtype: 'plain', charset: 'utf-8' }, spec.text)] : []),
    el('copyMIME'),
  ];
  const fields: GeneratedField[] = [['From', spec.from], ...spec.to.map((address): GeneratedField => ['To', address]), ['Subject', subject], ...(spec.extraFields ?? [])];
  const resolver: PartResolver = { ...NO_EXTERNAL_PARTS, copyMIME: async () => ({ raw: spec.original, wholeMessage: true }) };
  return generate(spec, fields, el('MIME', { type: 'multipart', subtype: 'mixed' }, ...parts), resolver);
}

export interface DispositionSpec {
  hostName: string;
  /** The user's address (Final-Recipient) and From. */
  user: string;
  from: string;
  /** Where the notification goes (the original's Disposition-Notification-To). */
  to: string;
  original: Buffer;
  originalFields: readonly HeaderField[];
  /** The original's Subject, decoded. */
  subject: string;
  /** `manual`: the user asked to send it; `auto`: the client sent it on display. */
  mode: 'manual' | 'auto';
}

/** An RFC 8098 message disposition notification ("displayed"). */
export function dispositionNotification(spec: DispositionSpec): Buffer {
  const originalId = headerValue(spec.originalFields, 'Message-ID')?.trim();
  const originalRecipient = headerValue(spec.originalFields, 'Original-Recipient')?.trim();
  const disposition =
    spec.mode === 'manual' ? 'manual-action/MDN-sent-manually; displayed' : 'automatic-action/MDN-sent-automatically; displayed';
  const fields = [
    `Reporting-UA: ${spec.hostName}; ximssd`,
    ...(originalRecipient ? [`Original-Recipient: ${originalRecipient}`] : []),
    `Final-Recipient: rfc822; ${spec.user}`,
    ...(originalId ? [`Original-Message-ID: ${originalId}`] : []),
    `Disposition: ${disposition}`,
  ].join('\n');
  return multipartReport({
    hostName: spec.hostName,
    from: spec.from,
    to: spec.to,
    subject: `Read: ${spec.subject}`,
    reportType: 'disposition-notification',
    humanText:
      `This is a receipt for the message you sent to ${spec.user}` +
      (spec.subject ? ` with the subject "${spec.subject}"` : '') +
      '.\n\nThe message was displayed. This does not guarantee that it was read or understood.\n',
    fields,
    original: { raw: spec.original, full: false },
    extraHeaders: [
      ...(originalId ? [`In-Reply-To: ${originalId}`, `References: ${originalId}`] : []),
      ...(spec.mode === 'auto' ? ['Auto-Submitted: auto-replied'] : []),
    ],
  });
}
