import type { NewMessage } from '../../store/store.js';
import { headerValue, parseDateHeader, parseHeaderBlock } from '../mime/index.js';

/**
 * Turns raw RFC 822 bytes into what the store keeps: the bytes, the header block, and
 * the few header fields views sort and show (still encoded; decoded when shown).
 */
export function prepareMessage(
  raw: Buffer,
  options: { flags: number; keywords?: readonly string[]; internalDate?: number },
): NewMessage {
  const { fields, end } = parseHeaderBlock(raw);
  const date = headerValue(fields, 'Date');
  const parsedDate = date === undefined ? undefined : parseDateHeader(date);
  return {
    raw,
    flags: options.flags,
    keywords: options.keywords ?? [],
    internalDate: options.internalDate ?? Date.now(),
    header: raw.subarray(0, end).toString('latin1'),
    envelope: {
      date: parsedDate?.time ?? null,
      dateShift: parsedDate?.shiftSeconds ?? 0,
      from: headerValue(fields, 'From') ?? '',
      to: headerValue(fields, 'To') ?? '',
      cc: headerValue(fields, 'Cc') ?? '',
      subject: headerValue(fields, 'Subject') ?? '',
      priority: priorityNumber(headerValue(fields, 'X-Priority'), headerValue(fields, 'Importance')),
    },
  };
}

/** X-Priority 1..5 (the leading digit of `2 (High)`), else Importance high/low. */
function priorityNumber(xPriority: string | undefined, importance: string | undefined): number {
  const digit = xPriority === undefined ? undefined : /^\s*([1-5])/.exec(xPriority)?.[1];
  if (digit) return Number(digit);
  const level = importance?.trim().toLowerCase();
  return level === 'high' ? 2 : level === 'low' ? 4 : 0;
}
