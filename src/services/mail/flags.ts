import { ServiceError } from '../errors.js';

/**
 * Mailbox message flags. The system flags live in a bit set (stored as one integer);
 * user keywords ($Label1, Business, ...) are kept as strings beside it.
 */
export const Flag = {
  Seen: 1,
  Answered: 2,
  Flagged: 4,
  Deleted: 8,
  Draft: 16,
  Recent: 32,
  Media: 64,
  Redirected: 128,
  MDNSent: 256,
} as const;

/** The order flags are listed in (FLAGS viewer field, messageAttrRead). */
const SYSTEM_FLAGS: readonly [string, number][] = [
  ['Seen', Flag.Seen],
  ['Answered', Flag.Answered],
  ['Flagged', Flag.Flagged],
  ['Deleted', Flag.Deleted],
  ['Draft', Flag.Draft],
  ['Recent', Flag.Recent],
  ['Media', Flag.Media],
  ['Redirected', Flag.Redirected],
  ['$MDNSent', Flag.MDNSent],
];

/** Names accepted on input, lower case: the spec's names, IMAP's, and what clients send. */
const POSITIVE = new Map<string, number>([
  ['seen', Flag.Seen],
  ['read', Flag.Seen],
  ['answered', Flag.Answered],
  ['flagged', Flag.Flagged],
  ['deleted', Flag.Deleted],
  ['draft', Flag.Draft],
  ['drafts', Flag.Draft],
  ['recent', Flag.Recent],
  ['media', Flag.Media],
  ['redirected', Flag.Redirected],
  ['$mdnsent', Flag.MDNSent],
  ['mdnsent', Flag.MDNSent],
  ['\\seen', Flag.Seen],
  ['\\answered', Flag.Answered],
  ['\\flagged', Flag.Flagged],
  ['\\deleted', Flag.Deleted],
  ['\\draft', Flag.Draft],
  ['\\recent', Flag.Recent],
]);

const NEGATIVE = new Map<string, number>([
  ['unseen', Flag.Seen],
  ['unread', Flag.Seen],
  ['unanswered', Flag.Answered],
  ['notanswered', Flag.Answered],
  ['unflagged', Flag.Flagged],
  ['notflagged', Flag.Flagged],
  ['undeleted', Flag.Deleted],
  ['notdeleted', Flag.Deleted],
  ['notdraft', Flag.Draft],
  ['undraft', Flag.Draft],
  ['notrecent', Flag.Recent],
  ['old', Flag.Recent],
  ['notmedia', Flag.Media],
  ['nomedia', Flag.Media],
  ['notredirected', Flag.Redirected],
  ['$notmdnsent', Flag.MDNSent],
]);

/** A keyword: an IMAP atom (no spaces, controls, commas or list specials), at most 64 bytes. */
const KEYWORD = /^[^\s\x00-\x1f\x7f(){%*"\\\],]{1,64}$/;

export interface FlagChange {
  set: number;
  clear: number;
  addKeywords: string[];
  removeKeywords: string[];
}

/**
 * Parses a comma-separated flag list such as `Seen,Unflagged,$Label1`: positive names are
 * set, negative names cleared. With `invert` (messageMark mode="delete") positive names
 * are cleared instead.
 */
export function parseFlagChange(list: string, invert = false): FlagChange {
  const change: FlagChange = { set: 0, clear: 0, addKeywords: [], removeKeywords: [] };
  for (const raw of list.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    const lower = name.toLowerCase();
    const positive = POSITIVE.get(lower);
    const negative = positive === undefined ? NEGATIVE.get(lower) : undefined;
    if (positive !== undefined || negative !== undefined) {
      const bit = (positive ?? negative)!;
      if ((positive !== undefined) !== invert) change.set |= bit;
      else change.clear |= bit;
      continue;
    }
    if (!KEYWORD.test(name) || name.startsWith('\\')) throw new ServiceError(`invalid flag name: ${name}`, 500);
    (invert ? change.removeKeywords : change.addKeywords).push(name);
  }
  change.set &= ~change.clear;
  return change;
}

/** Flags and keywords for a new message (`flags` attribute of messageAppend). */
export function parseInitialFlags(list: string | undefined): { flags: number; keywords: string[] } {
  if (!list) return { flags: 0, keywords: [] };
  const change = parseFlagChange(list);
  return { flags: change.set, keywords: change.addKeywords };
}

/** `Seen,Flagged,$Label1`: the FLAGS viewer field. */
export function formatFlags(flags: number, keywords: readonly string[]): string {
  const names: string[] = [];
  for (const [name, bit] of SYSTEM_FLAGS) if (flags & bit) names.push(name);
  for (const keyword of keywords) names.push(keyword);
  return names.join(',');
}

/** The flag names as a set (for search matching). */
export function flagNameSet(flags: number, keywords: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const [name, bit] of SYSTEM_FLAGS) if (flags & bit) names.add(name);
  for (const keyword of keywords) names.add(keyword);
  return names;
}

/**
 * A folderOpen filter on FLAGS (`Media,Unseen`): the bits that must be set, the bits that
 * must be clear, and keywords that must be present or absent.
 */
export interface FlagFilter {
  mustSet: number;
  mustClear: number;
  withKeywords: string[];
  withoutKeywords: string[];
}

export function parseFlagFilter(list: string): FlagFilter {
  const filter: FlagFilter = { mustSet: 0, mustClear: 0, withKeywords: [], withoutKeywords: [] };
  for (const raw of list.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    const lower = name.toLowerCase();
    const positive = POSITIVE.get(lower);
    if (positive !== undefined) filter.mustSet |= positive;
    else if (NEGATIVE.has(lower)) filter.mustClear |= NEGATIVE.get(lower)!;
    else if (lower.startsWith('not') && name.length > 3) filter.withoutKeywords.push(name.slice(3));
    else filter.withKeywords.push(name);
  }
  return filter;
}

export function matchesFlagFilter(filter: FlagFilter, flags: number, keywords: readonly string[]): boolean {
  if ((flags & filter.mustSet) !== filter.mustSet || (flags & filter.mustClear) !== 0) return false;
  const has = (k: string) => keywords.some((x) => x.toLowerCase() === k.toLowerCase());
  return filter.withKeywords.every(has) && !filter.withoutKeywords.some(has);
}
