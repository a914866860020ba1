/**
 * Messages made from other messages before they are sent: header surgery (Bcc removed,
 * Resent- fields added), a forward wrapping the original, a disposition notification.
 */
import { randomBytes } from 'node:crypto';
import { rfcDateInZone } from './compose.js';
import { parseHeaderBlock } from './parse.js';
import { encodeHeaderText, multipartReport, newMessageId } from './report.js';
import type { HeaderField } from './types.js';

/** The message without the named header fields (names in lower case), folded lines included. */
export function removeHeaderFields(raw: Buffer, names: ReadonlySet<string>): Buffer {
  const { end } = parseHeaderBlock(raw);
  const header = raw.subarray(0, end).toString('latin1');
  const kept: string[] = [];
  let dropping = false;
  for (const line of header.split(/(?<=\n)/)) {
    if (/^[ \t]/.test(line)) {
      if (!dropping) kept.push(line); // a folded line belongs to the field above
      continue;
    }
    const colon = line.indexOf(':');
    dropping = colon > 0 && names.has(line.slice(0, colon).trim().toLowerCase());
    if (!dropping) kept.push(line);
  }
  return Buffer.concat([Buffer.from(kept.join(''), 'latin1'), raw.subarray(end)]);
}

/** The message with header fields (`Name: value`, unfolded) put in front. */
export function prependHeaderFields(raw: Buffer, fields: readonly string[]): Buffer {
  return Buffer.concat([Buffer.from(fields.map((f) => f.replace(/[\r\n]+/g, ' ') + '\r\n').join(''), 'utf8'), raw]);
}

export function headerField(fields: readonly HeaderField[], name: string): string | undefined {
  const lower = name.toLowerCase();
  return fields.find((f) => f.name.toLowerCase() === lower)?.value;
}

/**
 * RFC 5322 section 3.6.6 resent fields for a message re-sent unchanged to new recipients
 * (messageRedirect without mirror, the "Redirect to" rule): a block prepended as a whole.
 */
export function resentFields(from: string, to: readonly string[], hostName: string): string[] {
  return [
    `Resent-From: ${from}`,
    `Resent-Date: ${rfcDateInZone(new Date(), 'HostOS')}`,
    `Resent-Message-ID: ${newMessageId(hostName)}`,
    `Resent-To: ${to.join(',\r\n\t')}`,
  ];
}

export interface ForwardSpec {
  hostName: string;
  /** `Name <addr>` or `addr`, already encoded. */
  from: string;
  to: readonly string[];
  /** The original's Subject, decoded. */
  subject: string;
  original: Buffer;
  /** A short text above the attachment (UTF-8), if any. */
  text?: string;
}

/** A new message carrying the original as a message/rfc822 attachment. */
export function forwardMessage(spec: ForwardSpec): Buffer {
  const boundary = `fwd-${randomBytes(8).toString('hex')}=${spec.hostName}`;
  const subject = /^\s*fwd?:/i.test(spec.subject) ? spec.subject : `Fwd: ${spec.subject}`;
  const eightBit = spec.original.some((byte) => byte >= 0x80);
  const text = spec.text ? Buffer.from(spec.text.replace(/\r?\n/g, '\r\n') + '\r\n', 'utf8') : undefined;
  return Buffer.concat([
    Buffer.from(
      [
        `From: ${spec.from}`,
        `To: ${spec.to.join(',\r\n\t')}`,
        `Subject: ${encodeHeaderText(subject)}`,
        `Date: ${rfcDateInZone(new Date(), 'HostOS')}`,
        `Message-ID: ${newMessageId(spec.hostName)}`,
        'MIME-Version: 1.0',
        `Content-Type: multipart/mixed; boundary="${boundary}"`,
        '',
        '',
      ].join('\r\n'),
      'utf8',
    ),
    ...(text
      ? [Buffer.from(`--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`), text]
      : []),
    Buffer.from(`--${boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n${eightBit ? 'Content-Transfer-Encoding: 8bit\r\n' : ''}\r\n`),
    spec.original,
    Buffer.from(`${spec.original.subarray(-2).toString('latin1') === '\r\n' ? '' : '\r\n'}--${boundary}--\r\n`),
  ]);
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
  const originalId = headerField(spec.originalFields, 'Message-ID')?.trim();
  const originalRecipient = headerField(spec.originalFields, 'Original-Recipient')?.trim();
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
