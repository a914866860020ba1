/**
 * Spell checking of one text with one dictionary: what spellerCheck asks for, without the
 * thread it runs in (worker.ts) or XIMSS. Words are runs of letters (with combining marks),
 * an apostrophe inside a word keeps it whole (don't, it’s), a hyphen separates words; a run
 * holding a digit is no word (R2D2, 3rd, 10am). A word is checked by a dictionary when it
 * has a letter of the dictionary's script: English does not judge Cyrillic words nor
 * Russian Latin ones, so mixed text is checked by each language's speller for its own
 * words; a word that mixes the script with another one (a Latin "p" in a Cyrillic word) is
 * checked, and wrong.
 *
 * A word is looked up composed (NFC); its position and size are those of the text as sent.
 * Positions and sizes are in bytes of the UTF-8 text, or in characters (code points) when
 * `glyphs` is asked for, as the spec's `mode="glyphs"` says.
 */
import { performance } from 'node:perf_hooks';

/** The spell checkers this server has: the name spellerList shows, the dictionary package, the script. */
export interface SpellerDefinition {
  readonly name: string;
  /** Other names spellerCheck accepts (the session Language values, language tags), lower case. */
  readonly aliases: readonly string[];
  /** The npm package of the Hunspell dictionary (its default export is `{ aff, dic }`). */
  readonly dictionary: 'dictionary-en' | 'dictionary-ru';
  /** A letter of the language's script. */
  readonly script: RegExp;
}

export const SPELLERS: readonly SpellerDefinition[] = [
  { name: 'English-US', aliases: ['english', 'english-us', 'en', 'en-us', 'en_us'], dictionary: 'dictionary-en', script: /\p{Script=Latin}/u },
  { name: 'Russian', aliases: ['russian', 'ru', 'ru-ru', 'ru_ru'], dictionary: 'dictionary-ru', script: /\p{Script=Cyrillic}/u },
];

/** The speller called `name` (its name or an alias, any case), or undefined. */
export function findSpeller(name: string): SpellerDefinition | undefined {
  const key = name.trim().toLowerCase();
  return SPELLERS.find((s) => s.name.toLowerCase() === key || s.aliases.includes(key));
}

/** The part of a dictionary the checker uses (nspell's). */
export interface Dictionary {
  correct(word: string): boolean;
  suggest(word: string): string[];
}

export interface SpellerReport {
  position: number;
  size: number;
  guesses: string[];
}

export interface CheckLimits {
  /** Words in the text past which it is refused (TooManyWords) before any is checked. */
  maxWords: number;
  /** Distinct misspelled words given guesses; later ones are reported with none. */
  guessWords: number;
  /**
   * Milliseconds the guesses of one text may take in all (a guess search costs up to a few
   * hundred ms for a long made-up Russian word); past them later words get none.
   */
  guessMs: number;
}

/** Guesses sent for one word. */
export const MAX_GUESSES = 8;
/** Longer words are judged but get no guesses (the suggestion search grows with the length). */
export const MAX_GUESS_LENGTH = 30;

export class TooManyWords extends Error {
  constructor(readonly words: number, readonly limit: number) {
    super(`the text has more than ${limit} words`);
  }
}

// A run of letters, marks and digits; an apostrophe (' or ’) between two such runs keeps them one word.
const TOKEN = /[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*/gu;
const DIGIT = /\p{N}/u;
const LETTER = /\p{L}/u;

interface Token {
  /** UTF-16 index in the text. */
  index: number;
  word: string;
}

/** The words of `text` that `speller` judges. */
export function words(text: string, speller: SpellerDefinition): Token[] {
  const out: Token[] = [];
  for (const match of text.matchAll(TOKEN)) {
    const word = match[0];
    if (DIGIT.test(word) || !LETTER.test(word) || !speller.script.test(word)) continue;
    out.push({ index: match.index, word });
  }
  return out;
}

/** Counts the words of `text` that `speller` would judge, stopping past `limit`. */
function countWords(text: string, speller: SpellerDefinition, limit: number): number {
  let n = 0;
  for (const match of text.matchAll(TOKEN)) {
    const word = match[0];
    if (DIGIT.test(word) || !LETTER.test(word) || !speller.script.test(word)) continue;
    if (++n > limit) break;
  }
  return n;
}

/** The UTF-8 byte length of text[from, to) (UTF-16 indexes; a surrogate pair is 4 bytes). */
function utf8Length(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < to) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** The code points in text[from, to). */
function codePoints(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < to) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/**
 * The form a dictionary is asked about: composed (NFC, as the dictionaries are written: "е"
 * with a combining diaeresis is "ё"), the typographic apostrophe as the ASCII one.
 */
const normalize = (word: string): string => word.normalize('NFC').replace(/’/g, "'");

/**
 * The misspelled words of `text`, in order, with their guesses. Throws TooManyWords when
 * the text has more than `limits.maxWords` words the speller judges.
 */
export function check(text: string, speller: SpellerDefinition, dictionary: Dictionary, glyphs: boolean, limits: CheckLimits): SpellerReport[] {
  const total = countWords(text, speller, limits.maxWords);
  if (total > limits.maxWords) throw new TooManyWords(total, limits.maxWords);
  const measure = glyphs ? codePoints : utf8Length;
  const verdicts = new Map<string, string[] | null>();
  let guessed = 0;
  let guessMs = 0;
  const reports: SpellerReport[] = [];
  // Positions are counted incrementally from the last word's start: linear in the text.
  let at = 0;
  let offset = 0;
  for (const { index, word } of words(text, speller)) {
    offset += measure(text, at, index);
    at = index;
    const form = normalize(word);
    let verdict = verdicts.get(form);
    if (verdict === undefined) {
      if (dictionary.correct(form)) verdict = null;
      else if (guessed < limits.guessWords && guessMs < limits.guessMs && form.length <= MAX_GUESS_LENGTH) {
        guessed++;
        const began = performance.now();
        verdict = dictionary.suggest(form).slice(0, MAX_GUESSES);
        guessMs += performance.now() - began;
      } else verdict = [];
      verdicts.set(form, verdict);
    }
    if (verdict !== null) reports.push({ position: offset, size: measure(text, index, index + word.length), guesses: verdict });
  }
  return reports;
}
