/**
 * The small matching vocabulary of rule conditions: `*` pictures, comma-separated pattern
 * lists, `#Dataset` references and sizes with K/M/G.
 */

import { wildcardMatch } from '../wildcard.js';

/** How many characters of a tested string take part in matching (bounds the work per test). */
const MAX_TESTED = 16_384;

/**
 * A case-insensitive picture match: `*` stands for any run of characters (also none), every
 * other character (`%` too) for itself. The shared wildcard matcher: O(pattern × text) at
 * worst, never the exponential backtracking a regular expression built from the picture
 * could take.
 */
export function pictureMatch(pattern: string, text: string): boolean {
  return wildcardMatch(pattern, text, { caseInsensitive: true, maxText: MAX_TESTED });
}

/** The pictures of an `in` / `not in` parameter: comma-separated, blanks around them ignored. */
export function splitPatterns(parameter: string): string[] {
  return parameter
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

/** `#Name` names an account dataset: its name, else undefined. */
export function datasetReference(parameter: string): string | undefined {
  const trimmed = parameter.trim();
  return trimmed.startsWith('#') && trimmed.length > 1 ? trimmed.slice(1).trim() : undefined;
}

/** `1024`, `100K`, `2M`, `1G` (also `10 KB`): bytes, or undefined when not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d{1,15})\s*(?:([KMG])B?)?\s*$/i.exec(text);
  if (!m) return undefined;
  const scale = m[2] === undefined ? 1 : { K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as 'K' | 'M' | 'G'];
  return Number(m[1]) * scale;
}
