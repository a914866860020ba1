import { randomBytes } from 'node:crypto';
import * as qp from 'nodemailer/lib/qp';
import { isAscii } from './charset.js';
import { newMessageId, unstructuredField } from './compose.js';
import { rfcDateInZone } from './dates.js';
import { parseHeaderBlock } from './parse.js';

/**
 * A multipart/report message (RFC 6522): the frame of delivery status notifications
 * (RFC 3464) and message disposition notifications (RFC 8098). Three parts: a text for
 * people, the machine-readable report, and the original message or its header.
 */
export interface ReportSpec {
  /** The generator's host name (Message-ID, boundary). */
  hostName: string;
  from: string;
  to: string;
  /** Unicode; encoded as RFC 2047 words when needed. */
  subject: string;
  reportType: 'delivery-status' | 'disposition-notification';
  humanText: string;
  /** The machine part's fields, one `Name: value` per line (blank lines separate groups). */
  fields: string;
  /** The original message; `full` returns it whole, else only its header. */
  original: { raw: Buffer; full: boolean };
  /** More header fields (`Name: value`), e.g. In-Reply-To, Auto-Submitted. */
  extraHeaders?: readonly string[];
}

/** The header block of a message (up to and including the empty line), CRLF line ends. */
export function headerBlock(raw: Buffer): Buffer {
  const { end } = parseHeaderBlock(raw);
  const block = raw.subarray(0, end).toString('latin1').replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '\r\n');
  return Buffer.from(block + '\r\n', 'latin1');
}

export function multipartReport(spec: ReportSpec): Buffer {
  const boundary = `report-${randomBytes(8).toString('hex')}=${spec.hostName}`;
  const header = [
    `From: ${spec.from}`,
    `To: ${spec.to}`,
    unstructuredField('Subject', spec.subject),
    `Date: ${rfcDateInZone(new Date(), 'HostOS')}`,
    `Message-ID: ${newMessageId(spec.hostName)}`,
    ...(spec.extraHeaders ?? []),
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=${spec.reportType};\r\n\tboundary="${boundary}"`,
  ].join('\r\n');
  const original = spec.original.full ? spec.original.raw : headerBlock(spec.original.raw);
  const eightBit = !isAscii(original);
  const originalType = spec.original.full ? 'message/rfc822' : 'text/rfc822-headers';
  const chunks = [
    Buffer.from(`${header}\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n--${boundary}\r\n`),
    Buffer.from('Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'),
    Buffer.from(qp.wrap(qp.encode(Buffer.from(spec.humanText.replace(/\r?\n/g, '\r\n'), 'utf8')), 76) + '\r\n', 'latin1'),
    Buffer.from(`--${boundary}\r\nContent-Type: message/${spec.reportType}\r\n\r\n`),
    Buffer.from(spec.fields.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '\r\n'), 'utf8'),
    Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${originalType}${eightBit ? '\r\nContent-Transfer-Encoding: 8bit' : ''}\r\n\r\n`),
    original,
    Buffer.from(`${original.subarray(-2).toString('latin1') === '\r\n' ? '' : '\r\n'}--${boundary}--\r\n`),
  ];
  return Buffer.concat(chunks);
}
