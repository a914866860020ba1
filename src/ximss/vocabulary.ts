import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { el, type XmlElement } from '../xml/element.js';

type Entry = string | string[] | { [key: string]: string };

interface Language {
  entries: Record<string, Entry>;
  modified: Date;
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
      const entries = JSON.parse(readFileSync(path, 'utf8')) as Record<string, Entry>;
      this.languages.set(basename(file, '.json').toLowerCase(), { entries, modified: statSync(path).mtime });
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

  modified(language: string): Date {
    return this.languages.get(this.resolve(language))!.modified;
  }

  /** The `strings` body elements of a language, English keys filling its gaps. */
  body(language: string): XmlElement[] {
    const english = this.languages.get('english')!.entries;
    const own = this.languages.get(this.resolve(language))!.entries;
    const merged = { ...english, ...own };
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
