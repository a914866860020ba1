import { multipartReport } from '../../services/mime/report.js';
import { rfcDateInZone } from '../../services/mime/dates.js';
import type { NewQueuedMessage } from '../../store/queue.js';

/** RFC 3464 Action values this server reports. */
export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'relayed';

export interface DsnRecipient {
  address: string;
  /** ORCPT as given (`rfc822;addr`). */
  orcpt: string | null;
  action: DsnAction;
  status: string;
  diagnostic: string | null;
  remoteMta: string | null;
  lastAttempt: number | null;
}

export interface DsnOriginal {
  sender: string;
  raw: Buffer;
  envid: string | null;
  ret: 'FULL' | 'HDRS' | null;
  /** When the message was queued, ms. */
  arrival: number;
}

const SUBJECTS: Record<DsnAction, string> = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  delivered: 'Successful Mail Delivery Report',
  relayed: 'Successful Mail Delivery Report',
};

function explain(r: DsnRecipient): string {
  const why = r.diagnostic ? `\n    ${r.diagnostic.replace(/^smtp; /, '')}` : '';
  switch (r.action) {
    case 'failed':
      return `<${r.address}>: delivery failed (${r.status})${why}`;
    case 'delayed':
      return `<${r.address}>: not delivered yet, still trying (${r.status})${why}`;
    case 'delivered':
      return `<${r.address}>: delivered to the mailbox`;
    case 'relayed':
      return `<${r.address}>: handed over to ${r.remoteMta ?? 'the next mail server'}, which does not send delivery reports`;
  }
}

/** A DSN (RFC 3464) for some recipients of one message, addressed to its sender. */
export function deliveryStatusNotification(hostName: string, original: DsnOriginal, recipients: readonly DsnRecipient[]): Buffer {
  const worst: DsnAction = recipients.some((r) => r.action === 'failed')
    ? 'failed'
    : recipients.some((r) => r.action === 'delayed')
      ? 'delayed'
      : recipients[0]!.action;
  const human =
    `This is the mail system at ${hostName}.\n\n` +
    (worst === 'failed'
      ? 'Your message could not be delivered to one or more recipients. It is attached below.\n\n'
      : worst === 'delayed'
        ? 'Your message has not been delivered yet; the server keeps trying.\n\n'
        : 'Your message was delivered:\n\n') +
    recipients.map(explain).join('\n') +
    '\n';
  const perMessage = [
    `Reporting-MTA: dns; ${hostName}`,
    ...(original.envid ? [`Original-Envelope-Id: ${original.envid}`] : []),
    `Arrival-Date: ${rfcDateInZone(new Date(original.arrival), 'HostOS')}`,
  ];
  const perRecipient = recipients.map((r) =>
    [
      ...(r.orcpt ? [`Original-Recipient: ${r.orcpt}`] : []),
      `Final-Recipient: rfc822; ${r.address}`,
      `Action: ${r.action}`,
      `Status: ${r.status}`,
      ...(r.remoteMta ? [`Remote-MTA: dns; ${r.remoteMta}`] : []),
      ...(r.diagnostic && r.diagnostic.startsWith('smtp; ') ? [`Diagnostic-Code: ${r.diagnostic.replace(/[\r\n]+/g, ' ')}`] : []),
      ...(r.lastAttempt ? [`Last-Attempt-Date: ${rfcDateInZone(new Date(r.lastAttempt), 'HostOS')}`] : []),
    ].join('\n'),
  );
  return multipartReport({
    hostName,
    from: `Mail Delivery System <MAILER-DAEMON@${hostName}>`,
    to: `<${original.sender}>`,
    subject: SUBJECTS[worst],
    reportType: 'delivery-status',
    humanText: human,
    fields: [perMessage.join('\n'), ...perRecipient].join('\n\n'),
    // Failures return the whole message only when the sender asked (RET=FULL); success
    // reports never do (RFC 3461 section 4.3).
    original: { raw: original.raw, full: original.ret === 'FULL' && worst === 'failed' },
    extraHeaders: ['Auto-Submitted: auto-replied'],
  });
}

/** Whether a recipient's RFC 3461 NOTIFY (as queued; null: the default, failures only) asks for this kind of report. */
export function wantsNotify(notify: string | null, what: 'SUCCESS' | 'FAILURE'): boolean {
  if (notify === null) return what === 'FAILURE';
  return notify.split(',').includes(what);
}

/**
 * The report a queued message's sender is owed about `reported`, as a message to queue (from
 * the null sender, so that nobody ever reports on a report). The queue's attempts and the
 * administrator's `queue bounce` both send it.
 */
export function reportMessage(
  hostName: string,
  lifetimeSeconds: number,
  message: { sender: string; created: number; envid: string | null; ret: 'FULL' | 'HDRS' | null },
  raw: Buffer,
  reported: readonly DsnRecipient[],
  now: number,
): NewQueuedMessage {
  return {
    sender: '',
    raw: deliveryStatusNotification(hostName, { sender: message.sender, raw, envid: message.envid, ret: message.ret, arrival: message.created }, reported),
    created: now,
    expires: now + lifetimeSeconds * 1000,
    ret: null,
    envid: null,
    source: 'authenticated',
    key: null,
    recipients: [{ address: message.sender, notify: 'NEVER', orcpt: null }],
  };
}
