import type { MessageMeta } from '../../store/store.js';
import { ADDRESS_FIELDS as MIME_ADDRESS_FIELDS } from '../mime/fields.js';
import { addressDisplay, decodeHeaderText, parseAddressList, parseDateHeader, type Address } from '../mime/index.js';
import { formatFlags } from './flags.js';

/**
 * Viewer fields (folderOpen `<field>` and `sortField`): what a folder shows and sorts by
 * for each message, computed from the cached metadata or, for other header fields, from
 * the stored header block.
 */
export type FieldValue =
  | { kind: 'text'; text: string }
  | { kind: 'date'; time: number; shift: number }
  | { kind: 'addresses'; list: Address[] };

/** Address fields per "XML Data Formats": shown as real name or address; `E-` forms parsed. */
const ADDRESS_FIELDS = new Set([...MIME_ADDRESS_FIELDS, 'resent-from', 'resent-to', 'resent-cc']);

/** Fields that are numbers of the metadata (sorted by as such). */
const METADATA_KEYS = new Set(['uid', 'origuid', 'size', 'internaldate', 'date', 'flags', 'pty']);

/** Header fields whose raw values come with the metadata (`rawHeader` needs no lookup for them). */
const META_HEADERS = new Set(['from', 'to', 'cc', 'subject']);

/** Fields whose values come with the metadata: no header read needed. */
const META_FIELDS = new Set([...METADATA_KEYS, ...META_HEADERS]);

export type HeaderLookup = (field: string, uid: number) => string | undefined;

/** True when the metadata carries the raw value of this header field (lower-case name). */
export function headerInMeta(name: string): boolean {
  return META_HEADERS.has(name);
}

/** The header field a viewer field needs read from the stored header, or undefined. */
export function headerFieldNeeded(field: string): string | undefined {
  const lower = field.toLowerCase();
  const base = lower.startsWith('e-') ? lower.slice(2) : lower;
  if (lower.startsWith('e-') && ['from', 'to', 'cc'].includes(base)) return undefined;
  if (META_FIELDS.has(lower)) return undefined;
  return base;
}

/**
 * A header field's raw value (still RFC 2047-encoded; `name` in lower case): the fields
 * cached in the metadata, else the header lookup; undefined when not known.
 */
export function rawHeader(meta: MessageMeta, name: string, lookup: HeaderLookup): string | undefined {
  switch (name) {
    case 'from':
      return meta.from;
    case 'to':
      return meta.to;
    case 'cc':
      return meta.cc;
    case 'subject':
      return meta.subject;
  }
  return lookup(name, meta.uid);
}

export function priorityName(priority: number): string {
  if (priority === 1 || priority === 2) return 'High';
  if (priority === 4 || priority === 5) return 'Low';
  return '';
}

export function fieldValue(field: string, meta: MessageMeta, lookup: HeaderLookup): FieldValue {
  const lower = field.toLowerCase();
  switch (lower) {
    case 'uid':
      return { kind: 'text', text: String(meta.uid) };
    case 'origuid':
      return { kind: 'text', text: String(meta.origUid) };
    case 'size':
      return { kind: 'text', text: String(meta.size) };
    case 'flags':
      return { kind: 'text', text: formatFlags(meta.flags, meta.keywords) };
    case 'internaldate':
      return { kind: 'date', time: meta.internalDate, shift: 0 };
    case 'date':
      return meta.date === null ? { kind: 'text', text: '' } : { kind: 'date', time: meta.date, shift: meta.dateShift };
    case 'pty':
      return { kind: 'text', text: priorityName(meta.priority) };
    case 'subject':
      return { kind: 'text', text: decodeHeaderText(meta.subject) };
  }
  if (lower.startsWith('e-') && ADDRESS_FIELDS.has(lower.slice(2))) {
    return { kind: 'addresses', list: parseAddressList(rawHeader(meta, lower.slice(2), lookup) ?? '') };
  }
  if (ADDRESS_FIELDS.has(lower)) return { kind: 'text', text: addressDisplay(rawHeader(meta, lower, lookup) ?? '') };
  const raw = lookup(lower, meta.uid);
  if (raw === undefined) return { kind: 'text', text: '' };
  if (lower === 'resent-date') {
    const parsed = parseDateHeader(raw);
    return parsed ? { kind: 'date', time: parsed.time, shift: parsed.shiftSeconds } : { kind: 'text', text: '' };
  }
  return { kind: 'text', text: decodeHeaderText(raw) };
}

const SUBJECT_PREFIX = /^\s*((re|fwd?|aw|sv|vs)(\[\d+\])?\s*:\s*)+/i;

/** The key a folder sorts by: numbers for metadata and dates, folded text otherwise. */
export function sortKey(field: string, meta: MessageMeta, lookup: HeaderLookup): string | number {
  switch (field.toLowerCase()) {
    case 'uid':
      return meta.uid;
    case 'origuid':
      return meta.origUid;
    case 'size':
      return meta.size;
    case 'internaldate':
      return meta.internalDate;
    case 'date':
      return meta.date ?? meta.internalDate;
    case 'flags':
      return meta.flags;
    case 'pty':
      return meta.priority === 0 ? 3 : meta.priority;
    case 'subject':
      return decodeHeaderText(meta.subject).replace(SUBJECT_PREFIX, '').toLowerCase();
  }
  const value = fieldValue(field, meta, lookup);
  if (value.kind === 'date') return value.time;
  if (value.kind === 'addresses') return (value.list[0]?.address ?? '').toLowerCase();
  return value.text.toLowerCase();
}

/** True when the sort key can change after delivery (it depends on flags). */
export function sortKeyIsMutable(field: string): boolean {
  return field.toLowerCase() === 'flags';
}

/** True when the sort key is a number taken straight from the metadata. */
export function sortKeyIsMetadata(field: string): boolean {
  return METADATA_KEYS.has(field.toLowerCase());
}
