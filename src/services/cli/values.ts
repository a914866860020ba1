import { formatObject } from '../files/cg-text.js';
import { formatGmt } from '../../xml/time.js';
import type { XimssValue } from '../../xml/objects.js';

/**
 * What CLI commands answer: the CommuniGate object kinds of XimssValue (strings, datablocks,
 * arrays, dictionaries) plus numbers and dates, which the CLI's text presentation writes as
 * `#123` and `#T07-12-2026_20:30:00` (GMT).
 */
export class CliNumber {
  constructor(readonly value: number) {}
}

export class CliDate {
  constructor(readonly value: Date) {}
}

export type CliValue = string | Buffer | CliNumber | CliDate | CliValue[] | { [key: string]: CliValue };

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `#Tdd-mm-yyyy_hh:mm:ss`, GMT. */
function dateText(date: Date): string {
  return (
    `#T${pad(date.getUTCDate())}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCFullYear(), 4)}` +
    `_${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`
  );
}

function isDictionary(value: CliValue): value is { [key: string]: CliValue } {
  return typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof CliNumber) && !(value instanceof CliDate);
}

/** The CLI's text presentation (one line: arrays `(a,b)`, dictionaries `{k=v;}`). */
export function formatCliText(value: CliValue): string {
  if (value instanceof CliNumber) return `#${value.value}`;
  if (value instanceof CliDate) return dateText(value.value);
  if (Array.isArray(value)) return `(${value.map(formatCliText).join(',')})`;
  if (isDictionary(value)) {
    let out = '{';
    for (const key of Object.keys(value)) out += `${formatObject(key)}=${formatCliText(value[key]!)};`;
    return out + '}';
  }
  return formatObject(value);
}

/** The value for the XML presentation of objects: a number as its digits, a date as a GMT time (YYYYMMDDTHHMMSS). */
export function toXimssValue(value: CliValue): XimssValue {
  if (value instanceof CliNumber) return String(value.value);
  if (value instanceof CliDate) return formatGmt(value.value);
  if (Array.isArray(value)) return value.map(toXimssValue);
  if (isDictionary(value)) {
    const out: { [key: string]: XimssValue } = {};
    for (const key of Object.keys(value)) {
      Object.defineProperty(out, key, { value: toXimssValue(value[key]!), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}
