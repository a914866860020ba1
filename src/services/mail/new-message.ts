import type { NewMessage } from '../../store/store.js';
import { headerValue, parseDateHeader, parseHeaderBlock, parsePriority, type HeaderField } from '../mime/index.js';

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
      priority: priorityNumber(fields),
    },
  };
}

/**
 * X-Priority 1..5 (the leading digit of `2 (High)`), else the level folderRead shows
 * (parsePriority: Importance, Priority, ...) as 2 (high) or 4 (low); 0 when none.
 */
function priorityNumber(fields: readonly HeaderField[]): number {
  const digit = /^\s*([1-5])/.exec(headerValue(fields, 'X-Priority') ?? '')?.[1];
  if (digit) return Number(digit);
  const level = parsePriority(fields);
  return level === 'High' ? 2 : level === 'Low' ? 4 : 0;
}
