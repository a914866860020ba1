import type { XimssValue } from '../../xml/objects.js';

/**
 * Event and meeting parameters as JSON (the bus and the store carry JSON): strings, arrays and
 * dictionaries as they are, a datablock as `{"\u0000base64": "..."}` — a key no XML presentation
 * can produce, since XML cannot carry U+0000.
 */
export type EncodedValue = string | EncodedValue[] | { [key: string]: EncodedValue };

const DATABLOCK = '\u0000base64';

export function encodeValue(value: XimssValue): EncodedValue {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return { [DATABLOCK]: value.toString('base64') };
  if (Array.isArray(value)) return value.map(encodeValue);
  const out: { [key: string]: EncodedValue } = {};
  for (const key of Object.keys(value)) Object.defineProperty(out, key, { value: encodeValue(value[key]!), enumerable: true, writable: true, configurable: true });
  return out;
}

export function decodeValue(value: unknown): XimssValue {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(decodeValue);
  if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    if (keys.length === 1 && keys[0] === DATABLOCK && typeof record[DATABLOCK] === 'string') return Buffer.from(record[DATABLOCK], 'base64');
    const out: { [key: string]: XimssValue } = {};
    for (const key of keys) Object.defineProperty(out, key, { value: decodeValue(record[key]), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return String(value);
}
