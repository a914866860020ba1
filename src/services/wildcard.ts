/**
 * The one wildcard matcher for client-supplied patterns: IMAP LIST patterns (mailboxList,
 * mailboxSubList), Mail Rule pictures, and whatever later matches names against a pattern.
 *
 *  - `*` matches any run of characters (also none);
 *  - `%` (only when a `separator` is given) matches any run without the separator;
 *  - every other character matches itself (case-insensitively with `caseInsensitive`).
 *
 * A pattern is compiled once and then tested against many texts, never by backtracking:
 *  - with `*` only, its literal pieces are found left to right (the first at the start, the
 *    last at the end, each other at its leftmost place after the one before, which is
 *    always right for `*`): a few indexOf calls, linear in the text;
 *  - with `%`, the pattern is simulated as a set of positions advanced one text character at
 *    a time: O(pattern × text) at worst, whatever the pattern.
 * Runs of wildcards are merged when compiling, and a text shorter than the pattern's literal
 * characters is refused at once, so a huge pattern costs no more than the text allows.
 */

export interface WildcardOptions {
  /** Compare letters case-insensitively (both sides lower-cased). */
  caseInsensitive?: boolean;
  /** The hierarchy separator `%` does not cross; without one `%` is an ordinary character. */
  separator?: string;
  /** Only this many leading characters of a text take part (bounds the work per test). */
  maxText?: number;
}

/** One step of a compiled pattern. */
const enum Kind {
  Literal = 0,
  Star = 1,
  Percent = 2,
}

export class Wildcard {
  /** The pattern's steps: kinds and, for literals, the UTF-16 code unit. */
  private readonly kinds: Uint8Array;
  private readonly units: Uint16Array;
  /** Literal steps: a text must have at least this many characters. */
  private readonly literals: number;
  private readonly caseInsensitive: boolean;
  private readonly separator: number;
  private readonly maxText: number;
  /** Scratch state sets, reused by every test (a compiled pattern is not re-entrant across awaits, and needs not be). */
  private readonly current: Uint8Array;
  private readonly following: Uint8Array;
  /** With `*` as the only wildcard: the literal pieces between the stars (else undefined). */
  private readonly pieces: string[] | undefined;

  constructor(pattern: string, options: WildcardOptions = {}) {
    this.caseInsensitive = options.caseInsensitive ?? false;
    const separator = options.separator;
    if (separator !== undefined && separator.length !== 1) throw new Error('the wildcard separator must be one character');
    this.separator = separator === undefined ? -1 : separator.charCodeAt(0);
    this.maxText = options.maxText ?? Number.POSITIVE_INFINITY;
    const source = this.caseInsensitive ? pattern.toLowerCase() : pattern;
    const kinds: Kind[] = [];
    const units: number[] = [];
    let literals = 0;
    for (let i = 0; i < source.length; i++) {
      const unit = source.charCodeAt(i);
      const kind = unit === 0x2a ? Kind.Star : unit === 0x25 && separator !== undefined ? Kind.Percent : Kind.Literal;
      if (kind === Kind.Literal) {
        kinds.push(kind);
        units.push(unit);
        literals++;
        continue;
      }
      // `**` is `*`, `%%` is `%`, and a `*` next to a `%` swallows it.
      const last = kinds.length - 1;
      if (last >= 0 && kinds[last] !== Kind.Literal) {
        if (kind === Kind.Star) kinds[last] = Kind.Star;
        continue;
      }
      kinds.push(kind);
      units.push(0);
    }
    this.kinds = Uint8Array.from(kinds);
    this.units = Uint16Array.from(units);
    this.literals = literals;
    this.current = new Uint8Array(kinds.length + 1);
    this.following = new Uint8Array(kinds.length + 1);
    if (!kinds.includes(Kind.Percent)) {
      this.pieces = [''];
      for (let i = 0; i < kinds.length; i++) {
        if (kinds[i] === Kind.Star) this.pieces.push('');
        else this.pieces[this.pieces.length - 1] += String.fromCharCode(units[i]!);
      }
    }
  }

  /** Does the whole text match the pattern? */
  test(input: string): boolean {
    let text = input.length > this.maxText ? input.slice(0, this.maxText) : input;
    if (this.caseInsensitive) text = text.toLowerCase();
    if (text.length < this.literals) return false;
    if (this.pieces) return this.testPieces(text, this.pieces);
    const kinds = this.kinds;
    const units = this.units;
    const steps = kinds.length;
    // Both sets are all zero between tests; [low, high] bounds what the current one holds.
    let current = this.current;
    let following = this.following;
    current[0] = 1;
    let low = 0;
    let high = this.close(current, 0, 0);
    for (let t = 0; t < text.length; t++) {
      const unit = text.charCodeAt(t);
      let nextLow = steps + 1;
      let nextHigh = -1;
      for (let s = low; s <= high && s < steps; s++) {
        if (current[s] === 0) continue;
        let to: number;
        const kind = kinds[s];
        if (kind === Kind.Literal) {
          if (units[s] !== unit) continue;
          to = s + 1;
        } else if (kind === Kind.Star || unit !== this.separator) {
          to = s; // the wildcard takes this character and may take more
        } else continue;
        following[to] = 1;
        if (to < nextLow) nextLow = to;
        if (to > nextHigh) nextHigh = to;
      }
      current.fill(0, low, high + 1);
      const swap = current;
      current = following;
      following = swap;
      if (nextHigh < 0) return false;
      low = nextLow;
      high = this.close(current, nextLow, nextHigh);
    }
    const matched = current[steps] === 1;
    current.fill(0, low, high + 1);
    return matched;
  }

  /** `*`-only patterns: piece by piece, each at its leftmost place (see the module comment). */
  private testPieces(text: string, pieces: readonly string[]): boolean {
    const first = pieces[0]!;
    if (pieces.length === 1) return text === first;
    if (!text.startsWith(first)) return false;
    let position = first.length;
    for (let i = 1; i < pieces.length - 1; i++) {
      const piece = pieces[i]!;
      const found = text.indexOf(piece, position);
      if (found < 0) return false;
      position = found + piece.length;
    }
    const last = pieces[pieces.length - 1]!;
    return text.length - last.length >= position && text.endsWith(last);
  }

  /**
   * Adds to a set the steps reachable without taking a character (a wildcard may match
   * nothing, so reaching it reaches the step after it); returns the new highest step.
   */
  private close(set: Uint8Array, low: number, high: number): number {
    const steps = this.kinds.length;
    for (let s = low; s <= high && s < steps; s++) {
      if (set[s] === 1 && this.kinds[s] !== Kind.Literal) {
        set[s + 1] = 1;
        if (s + 1 > high) high = s + 1;
      }
    }
    return high;
  }
}

/** One test of one pattern (to test many texts, compile it once: new Wildcard). */
export function wildcardMatch(pattern: string, text: string, options: WildcardOptions = {}): boolean {
  return new Wildcard(pattern, options).test(text);
}

/**
 * IMAP LIST matching (mailboxList, mailboxSubList): `*` any characters, `%` any but `/`,
 * case-sensitive, except that a pattern starting with INBOX (in any case, followed by `/` or
 * nothing) matches the canonical spelling INBOX too, since INBOX is case-insensitive.
 */
export function listPattern(pattern: string): (name: string) => boolean {
  const plain = new Wildcard(pattern, { separator: '/' });
  const inbox = /^inbox(?:\/|$)/i.test(pattern.slice(0, 6)) && !pattern.startsWith('INBOX') ? new Wildcard('INBOX' + pattern.slice(5), { separator: '/' }) : undefined;
  return (name) => plain.test(name) || (inbox?.test(name) ?? false);
}
