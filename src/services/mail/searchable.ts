/**
 * What content scans look at, built from what the store gives: the same code runs in the
 * server's thread and in the scan worker (scan-worker.ts).
 */
import type { MessageMeta } from '../../store/store.js';
import { decodeHeaderText, decodeTextForSearch, headerValues, parseHeaderBlock, parseMime, SEARCH_TEXT_BYTES, type HeaderField } from '../mime/index.js';
import { flagNameSet } from './flags.js';
import type { SearchableMessage } from './search.js';
import { rawHeader } from './view-fields.js';

/**
 * A message as the IMAP SEARCH evaluator sees it, built lazily from what was loaded: the
 * header block and the text up to SEARCH_TEXT_BYTES each; `check` (when given) runs between
 * the text parts while the body is decoded, to throw once a deadline has passed.
 */
export function searchable(meta: MessageMeta, seq: number, header: string | undefined, raw: Buffer | undefined, check?: () => void): SearchableMessage {
  let fields: HeaderField[] | undefined;
  const headerFields = (): HeaderField[] => {
    if (!fields) {
      const block = header !== undefined && header.length > SEARCH_TEXT_BYTES ? header.slice(0, SEARCH_TEXT_BYTES) : header;
      fields = block === undefined ? [] : parseHeaderBlock(Buffer.from(block, 'latin1')).fields;
    }
    return fields;
  };
  return {
    uid: meta.uid,
    seq,
    flags: flagNameSet(meta.flags, meta.keywords),
    internalDate: meta.internalDate,
    size: meta.size,
    sentDate: meta.date ?? undefined,
    header(name: string): string[] {
      const lower = name.toLowerCase();
      if (header === undefined) {
        // Without the header block (the program needs only the cached fields).
        const value = rawHeader(meta, lower, () => undefined);
        return value ? [decodeHeaderText(value)] : [];
      }
      return headerValues(headerFields(), lower).map(decodeHeaderText);
    },
    headerText(): string {
      return headerFields()
        .map((f) => `${f.name}: ${decodeHeaderText(f.value)}`)
        .join('\n');
    },
    bodyText(): string {
      return raw ? decodeTextForSearch(raw, parseMime(raw), { beforePart: check }) : '';
    },
  };
}

/** Where a folder's content filter looks: the text parts, or those and every header field. */
export type ContentScope = 'body' | 'any';

/** Whether `needle` (lower case) is in the message's text (or, for 'any', in a header field too). */
export function containsText(raw: Buffer, needle: string, scope: ContentScope, check?: () => void): boolean {
  const root = parseMime(raw);
  if (decodeTextForSearch(raw, root, { beforePart: check }).toLowerCase().includes(needle)) return true;
  return scope === 'any' && root.headers.some((h) => decodeHeaderText(h.value).toLowerCase().includes(needle));
}
