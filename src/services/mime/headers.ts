/**
 * Decoding of header field values: RFC 2047 encoded-words, raw 8-bit bytes, address lists,
 * priorities and dates (RFC 5322 with the obsolete forms real mail still uses).
 */
import addressparser from 'nodemailer/lib/addressparser';
import { decodeBytes, decodeRawHeader } from './charset.js';
import { MONTH_NAMES } from './dates.js';
import { headerValue } from './fields.js';
import type { Address, HeaderField } from './types.js';

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=/g;

/** The bytes a string stands for: latin1-carried bytes stay bytes, real Unicode becomes UTF-8. */
function carriedBytes(text: string): Buffer {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return Buffer.from(text, 'utf8');
  return Buffer.from(text, 'latin1');
}

/** The value of the hex digit with character code `c`, or -1. */
export function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function decodeQ(text: string): Buffer {
  const src = carriedBytes(text);
  const out = Buffer.alloc(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x5f) out[n++] = 0x20;
    else if (c === 0x3d && i + 2 < src.length && hexValue(src[i + 1]!) >= 0 && hexValue(src[i + 2]!) >= 0) {
      out[n++] = hexValue(src[i + 1]!) * 16 + hexValue(src[i + 2]!);
      i += 2;
    } else out[n++] = c;
  }
  return out.subarray(0, n);
}

/**
 * Decodes a header value into text: RFC 2047 encoded-words in any charset (adjacent words
 * of one charset are joined as bytes first, so a multi-byte character split across two
 * words survives), whitespace between encoded-words dropped, and raw 8-bit bytes (carried
 * as latin1 characters, see parse.ts) read as UTF-8 when valid, else windows-1252.
 */
export function decodeHeaderText(value: string): string {
  if (value.indexOf('=?') < 0) return decodeRawHeader(value);
  let out = '';
  let last = 0;
  let pendingCharset: string | undefined;
  let pending: Buffer[] = [];
  const flush = (): void => {
    if (pendingCharset !== undefined) out += decodeBytes(Buffer.concat(pending), pendingCharset);
    pendingCharset = undefined;
    pending = [];
  };
  for (const m of value.matchAll(ENCODED_WORD)) {
    const gap = value.slice(last, m.index);
    // RFC 2047 6.2: white space between adjacent encoded-words is not displayed.
    const adjacent = pendingCharset !== undefined && /^[ \t\r\n]*$/.test(gap);
    // RFC 2231 allows a language after the charset: =?utf-8*en?Q?...?=
    const charset = m[1]!.split('*')[0]!.toLowerCase();
    const bytes = m[2]!.toUpperCase() === 'B' ? Buffer.from(m[3]!, 'base64') : decodeQ(m[3]!);
    if (!adjacent || charset !== pendingCharset) {
      flush();
      if (!adjacent) out += decodeRawHeader(gap);
      pendingCharset = charset;
    }
    pending.push(bytes);
    last = m.index + m[0].length;
  }
  flush();
  out += decodeRawHeader(value.slice(last));
  return out;
}

/**
 * Parses an address list header (From, To, ...). Groups are flattened, names decoded, a
 * comment after a bare address becomes the name (`user@x (My Friend)`). Never throws;
 * entries without an address are dropped.
 */
export function parseAddressList(value: string): Address[] {
  const text = decodeRawHeader(value);
  let list: { name: string; address: string }[];
  try {
    list = addressparser(text, { flatten: true });
  } catch {
    return [];
  }
  const out: Address[] = [];
  for (const entry of list) {
    const address = (entry.address ?? '').trim();
    if (!address) continue;
    const name = decodeHeaderText(entry.name ?? '').replace(/\s+/g, ' ').trim();
    out.push(name && name !== address ? { address, realName: name } : { address });
  }
  return out;
}

/** 'High', 'Low' or '' from X-Priority (1-2 / 4-5), X-MSMail-Priority, Importance or Priority. */
export function parsePriority(fields: readonly HeaderField[]): 'High' | 'Low' | '' {
  const x = headerValue(fields, 'X-Priority');
  if (x !== undefined) {
    const digit = /\d/.exec(x)?.[0];
    if (digit === '1' || digit === '2') return 'High';
    if (digit === '4' || digit === '5') return 'Low';
    if (digit) return '';
  }
  for (const name of ['X-MSMail-Priority', 'Importance', 'Priority']) {
    const v = headerValue(fields, name)?.trim().toLowerCase();
    if (!v) continue;
    if (v === 'high' || v === 'urgent') return 'High';
    if (v === 'low' || v === 'non-urgent') return 'Low';
  }
  return '';
}

const MONTHS = MONTH_NAMES.map((m) => m.toLowerCase());

/** Named zones (RFC 5322 obs-zone plus the usual others), in minutes east of GMT. */
const ZONES: Record<string, number> = {
  ut: 0, utc: 0, gmt: 0, z: 0, wet: 0,
  est: -300, edt: -240, cst: -360, cdt: -300, mst: -420, mdt: -360, pst: -480, pdt: -420,
  akst: -540, akdt: -480, hst: -600,
  bst: 60, cet: 60, met: 60, cest: 120, mest: 120, west: 60, eet: 120, eest: 180, msk: 180,
  ist: 330, jst: 540, kst: 540, hkt: 480, sgt: 480, aest: 600, aedt: 660, nzst: 720, nzdt: 780,
};

function zoneMinutes(token: string): number | undefined {
  let m = /^([+-])(\d{2}):?(\d{2})$/.exec(token);
  if (m) {
    const minutes = +m[2]! * 60 + +m[3]!;
    if (+m[3]! > 59 || minutes > 18 * 60) return undefined;
    return m[1] === '-' ? -minutes : minutes;
  }
  m = /^([+-])(\d{1,2})$/.exec(token);
  if (m) return (m[1] === '-' ? -1 : 1) * +m[2]! * 60;
  const lower = token.toLowerCase();
  if (lower in ZONES) return ZONES[lower];
  // RFC 5322 4.3: military zones were defined with the wrong sign; treat them as -0000.
  if (/^[a-ik-z]$/.test(lower)) return 0;
  return undefined;
}

/**
 * Parses a Date-style field. `time` is milliseconds since the epoch, `shiftSeconds` the
 * written zone in seconds east of GMT (-0700 -> -25200). Accepts a missing weekday,
 * missing seconds, two- and three-digit years, named zones, comments, asctime() order and
 * a missing zone (taken as GMT). Undefined when no date can be recognised.
 */
export function parseDateHeader(value: string): { time: number; shiftSeconds: number } | undefined {
  // Comments, e.g. "(PDT)", and a leading weekday carry nothing we need.
  const text = decodeRawHeader(value).replace(/\([^()]*\)/g, ' ').replace(/,/g, ' ').trim();
  const tokens = text.split(/\s+/).filter((t) => t.length > 0);
  let day: number | undefined, month: number | undefined, year: number | undefined;
  let hour: number | undefined, minute = 0, second = 0;
  let zone: number | undefined;
  for (const token of tokens) {
    const lower = token.toLowerCase().replace(/\.$/, '');
    const time = /^(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:\.\d+)?$/.exec(token);
    if (time && hour === undefined) {
      hour = +time[1]!;
      minute = +time[2]!;
      second = time[3] === undefined ? 0 : +time[3];
      continue;
    }
    if (/^[+-]\d/.test(token) && hour !== undefined && zone === undefined) {
      zone = zoneMinutes(token);
      continue;
    }
    if (/^\d+$/.test(token)) {
      const n = +token;
      // "10 Apr 2006", and asctime()'s "Apr 10 13:15:48 2006"
      if (day === undefined && token.length <= 2) day = n;
      else if (year === undefined) year = token.length <= 2 ? (n < 50 ? 2000 + n : 1900 + n) : token.length === 3 ? 1900 + n : n;
      continue;
    }
    const monthIndex = MONTHS.indexOf(lower.slice(0, 3));
    if (monthIndex >= 0 && month === undefined && /^[a-z]+$/.test(lower) && lower.length >= 3) {
      month = monthIndex;
      continue;
    }
    if (hour !== undefined && zone === undefined && /^[a-z]+$/.test(lower)) {
      const z = zoneMinutes(lower);
      if (z !== undefined) zone = z;
    }
    // weekday names and unrecognised words are ignored
  }
  if (day === undefined || month === undefined || year === undefined || hour === undefined) return undefined;
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60 || year < 1000 || year > 9999) return undefined;
  if (second === 60) second = 59;
  const shiftMinutes = zone ?? 0;
  const date = new Date(0);
  date.setUTCFullYear(year, month, day);
  if (date.getUTCDate() !== day) return undefined; // 31 Feb
  date.setUTCHours(hour, minute, second, 0);
  return { time: date.getTime() - shiftMinutes * 60000, shiftSeconds: shiftMinutes * 60 };
}

/**
 * How an address field is shown in a message list: each address's realName when it has
 * one, else the address, joined with ', '. Text that holds no address is shown decoded.
 */
export function addressDisplay(value: string): string {
  const list = parseAddressList(value);
  if (list.length === 0) return decodeHeaderText(value).replace(/\s+/g, ' ').trim();
  return list.map((a) => a.realName ?? a.address).join(', ');
}
