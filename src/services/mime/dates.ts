/** RFC 5322 dates as this server writes them (Date, Resent-Date, Received, reports). */
import { formatLocal, parseGmt } from '../../xml/time.js';

export const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
export const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** RFC 5322 date from a wall-clock time (given as a UTC Date) and its zone offset in seconds. */
export function formatRfcDate(local: Date, shiftSeconds: number): string {
  const sign = shiftSeconds < 0 ? '-' : '+';
  const minutes = Math.round(Math.abs(shiftSeconds) / 60);
  return (
    `${WEEKDAYS[local.getUTCDay()]}, ${pad2(local.getUTCDate())} ${MONTH_NAMES[local.getUTCMonth()]} ${local.getUTCFullYear()} ` +
    `${pad2(local.getUTCHours())}:${pad2(local.getUTCMinutes())}:${pad2(local.getUTCSeconds())} ${sign}${pad2(Math.floor(minutes / 60))}${pad2(minutes % 60)}`
  );
}

/** A moment written as wall-clock time in `timeZone`. */
export function rfcDateInZone(moment: Date, timeZone: string): string {
  const local = parseGmt(formatLocal(moment, timeZone)) ?? moment;
  const shift = Math.round((local.getTime() - Math.floor(moment.getTime() / 1000) * 1000) / 60000) * 60;
  return formatRfcDate(local, shift);
}
