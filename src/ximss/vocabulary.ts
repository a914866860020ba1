import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { el, type XmlElement } from '../xml/element.js';

export type Entry = string | string[] | { [key: string]: string };
export type Strings = Record<string, Entry>;

interface Language {
  /** The file's base name (`English`). */
  name: string;
  entries: Strings;
  modified: Date;
}

/** The longest language name a client may ask for (it names a file of the skins). */
const LANGUAGE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

function isEntry(value: unknown): value is Entry {
  if (typeof value === 'string') return true;
  if (Array.isArray(value)) return value.every((item) => typeof item === 'string');
  return typeof value === 'object' && value !== null && Object.values(value).every((item) => typeof item === 'string');
}

/**
 * A strings file of a skin (`<Language>.json`, the built-in vocabularies' format): a JSON object
 * from string name to a string, an array of strings or an object of strings. Undefined when it
 * is not one.
 */
export function parseStrings(text: string): Strings | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const strings: Strings = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (!isEntry(value)) return undefined;
    Object.defineProperty(strings, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return strings;
}

/** Strings of the server's and the domain's skins that override the built-in ones, least specific first. */
export interface StringOverrides {
  /** From `English.json` files (the fallback of every language). */
  english: Strings[];
  /** From the language's own files. */
  own: Strings[];
}

/**
 * The vocabularies readStrings serves: one JSON file per language in the built-in skin (resources/skins/)
 * (`English.json` is the default and the fallback for keys another language lacks).
 */
export class Vocabulary {
  private readonly languages = new Map<string, Language>();

  constructor(readonly directory: string) {
    for (const file of readdirSync(directory)) {
      if (!file.endsWith('.json')) continue;
      const path = join(directory, file);
      const entries = parseStrings(readFileSync(path, 'utf8'));
      if (!entries) throw new Error(`${path} is not a vocabulary (an object of strings, arrays of strings or objects of strings)`);
      const name = basename(file, '.json');
      this.languages.set(name.toLowerCase(), { name, entries, modified: statSync(path).mtime });
    }
    if (!this.languages.has('english')) throw new Error(`no English.json vocabulary in ${directory}`);
  }

  names(): string[] {
    return [...this.languages.keys()];
  }

  /** The language to use for `requested` (case-insensitive), falling back to English. */
  resolve(requested: string | undefined): string {
    const key = (requested ?? '').toLowerCase();
    return this.languages.has(key) ? key : 'english';
  }

  /**
   * The base name of the strings files of `requested` (`English` for English.json): the built-in
   * one's spelling when there is one, else the name as asked for (a language only the skins
   * have), else English.
   */
  fileName(requested: string | undefined): string {
    const known = this.languages.get((requested ?? '').toLowerCase());
    if (known) return known.name;
    return requested !== undefined && LANGUAGE_NAME.test(requested) ? requested : this.languages.get('english')!.name;
  }

  modified(language: string): Date {
    return this.languages.get(this.resolve(language))!.modified;
  }

  /**
   * The `strings` body elements of a language, English keys filling its gaps; the skins'
   * overrides over the built-in strings (English ones under the language's own).
   */
  body(language: string, overrides: StringOverrides = { english: [], own: [] }): XmlElement[] {
    const english = this.languages.get('english')!.entries;
    const resolved = this.resolve(language);
    const own = resolved === 'english' ? {} : this.languages.get(resolved)!.entries;
    const merged: Strings = {};
    // Defined, not assigned: a `__proto__` string name is a name like any other.
    for (const layer of [english, ...overrides.english, own, ...overrides.own]) {
      for (const [name, value] of Object.entries(layer)) Object.defineProperty(merged, name, { value, enumerable: true, writable: true, configurable: true });
    }
    return Object.entries(merged).map(([name, value]) => entryElement(name, value));
  }
}

function entryElement(name: string | undefined, value: Entry): XmlElement {
  if (typeof value === 'string') return el('string', { name }, value);
  const strings = el('strings', { name });
  if (Array.isArray(value)) for (const item of value) strings.add('string', undefined, item);
  else for (const [key, item] of Object.entries(value)) strings.add('string', { name: key }, item);
  return strings;
}
