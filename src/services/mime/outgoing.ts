/**
 * Messages made from other messages before they are sent: header surgery (Bcc removed,
 * Resent- fields added), a forward wrapping the original, a disposition notification.
 */
import { el } from '../../xml/element.js';
import { ServiceError } from '../errors.js';
import { composeMessage, rfcDateInZone } from './compose.js';
import { parseHeaderBlock } from './parse.js';
import { multipartReport, newMessageId } from './report.js';
import type { Address, HeaderField, PartResolver } from './types.js';

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

/** The message with header fields (`Name: value`; a value may be folded with CRLF + blank) put in front. */
export function prependHeaderFields(raw: Buffer, fields: readonly string[]): Buffer {
  const lines = fields.map((f) => f.replace(/\r?\n(?![ \t])/g, ' ') + '\r\n');
  return Buffer.concat([Buffer.from(lines.join(''), 'utf8'), raw]);
}

export function headerField(fields: readonly HeaderField[], name: string): string | undefined {
  const lower = name.toLowerCase();
  return fields.find((f) => f.name.toLowerCase() === lower)?.value;
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

/** Message parts a generated message never takes from anywhere but its own input. */
export const NO_EXTERNAL_PARTS: PartResolver = {
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

/** A new message carrying the original as a message/rfc822 attachment (messageForward, "Forward to"). */
export function forwardMessage(spec: ForwardSpec): Promise<Buffer> {
  const subject = /^\s*fwd?:/i.test(spec.subject) ? spec.subject : `Fwd: ${spec.subject}`.trim();
  const parts = [
    ...(spec.text ? [el('MIME', { type: 'text', subtype: 'plain', charset: 'utf-8' }, spec.text)] : []),
    el('copyMIME'),
  ];
  const email = el(
    'EMail',
    undefined,
    el('From', { realName: spec.from.realName }, spec.from.address),
    ...spec.to.map((address) => el('To', undefined, address)),
    el('Subject', undefined, subject),
    ...(spec.extraFields ?? []).map(([name, value]) => el(name, undefined, value)),
    el('MIME', { type: 'multipart', subtype: 'mixed' }, ...parts),
  );
  const resolver: PartResolver = { ...NO_EXTERNAL_PARTS, copyMIME: async () => ({ raw: spec.original, wholeMessage: true }) };
  return composeMessage(email, resolver, { timeZone: spec.timeZone, addMissing: true, hostname: spec.hostName, omitBcc: true });
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
