import type { XimssValue } from '../../xml/objects.js';
import { ServiceError } from '../errors.js';

/**
 * The CommuniGate text presentation of objects, what fileWrite/fileRead `type="object"`
 * keep in a file: a string is an atom (letters, digits, `.`, `_`, `-`, `@`) or a quoted
 * string (`\"`, `\\`, `\e` or `\n` end of line, `\r`, `\t`, `\NNN` decimal codes), a datablock
 * is `[base64]`, an array is `(a,b)`, a dictionary is `{key=value;key=value;}`. Other
 * CommuniGate forms (`#123` numbers, `#T...` dates, `#(...)` ...) are read as their text.
 */

const ATOM = /^[A-Za-z0-9._@-]+$/;
/** Deepest nesting read: a file of 3 MB must not recurse without bound. */
const MAX_DEPTH = 64;

function quote(text: string): string {
  if (ATOM.test(text)) return text;
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\e';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 32 || code === 127) out += '\\' + String(code).padStart(3, '0');
    else out += ch;
  }
  return out + '"';
}

export function formatObject(value: XimssValue): string {
  if (typeof value === 'string') return quote(value);
  if (Buffer.isBuffer(value)) return `[${value.toString('base64')}]`;
  if (Array.isArray(value)) return `(${value.map(formatObject).join(',')})`;
  let out = '{';
  for (const key of Object.keys(value)) out += `${quote(key)}=${formatObject(value[key]!)};`;
  return out + '}';
}

/** How a reader reports errors and how deep it goes (the CLI reads command lines with it too). */
export interface ReadOptions {
  /** The start of the error text (what is being read). */
  what?: string;
  /** Deepest nesting read (MAX_DEPTH by default). */
  maxDepth?: number;
}

class Reader {
  at = 0;
  private readonly what: string;
  private readonly maxDepth: number;
  constructor(
    private readonly text: string,
    options: ReadOptions = {},
  ) {
    this.what = options.what ?? 'the file is not a valid object';
    this.maxDepth = options.maxDepth ?? MAX_DEPTH;
  }

  fail(why: string): never {
    throw new ServiceError(`${this.what}: ${why} at position ${this.at}`);
  }

  skip(): void {
    while (this.at < this.text.length && /\s/.test(this.text[this.at]!)) this.at++;
  }

  peek(): string | undefined {
    this.skip();
    return this.text[this.at];
  }

  expect(ch: string): void {
    if (this.peek() !== ch) this.fail(`"${ch}" expected`);
    this.at++;
  }

  value(depth: number): XimssValue {
    if (depth > this.maxDepth) this.fail('nested too deeply');
    const ch = this.peek();
    if (ch === undefined) this.fail('unexpected end');
    if (ch === '"') return this.quoted();
    if (ch === '[') {
      const end = this.text.indexOf(']', this.at);
      if (end < 0) this.fail('"]" expected');
      const data = this.text.slice(this.at + 1, end).replace(/\s+/g, '');
      this.at = end + 1;
      return Buffer.from(data, 'base64');
    }
    if (ch === '(') {
      this.at++;
      const out: XimssValue[] = [];
      if (this.peek() === ')') {
        this.at++;
        return out;
      }
      for (;;) {
        out.push(this.value(depth + 1));
        const next = this.peek();
        this.at++;
        if (next === ')') return out;
        if (next !== ',') this.fail('"," or ")" expected');
      }
    }
    if (ch === '{') {
      this.at++;
      const out: { [key: string]: XimssValue } = {};
      for (;;) {
        if (this.peek() === '}') {
          this.at++;
          return out;
        }
        const key = this.peek() === '"' ? this.quoted() : this.atom();
        this.expect('=');
        const value = this.value(depth + 1);
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
        this.expect(';');
      }
    }
    return this.atom();
  }

  atom(): string {
    this.skip();
    const start = this.at;
    // Atoms and CommuniGate's #-forms end at a delimiter.
    while (this.at < this.text.length && !/[\s,;=(){}\[\]"]/.test(this.text[this.at]!)) this.at++;
    if (this.at === start) this.fail('a value expected');
    return this.text.slice(start, this.at);
  }

  quoted(): string {
    this.at++;
    let out = '';
    for (;;) {
      if (this.at >= this.text.length) this.fail('unterminated string');
      const ch = this.text[this.at++]!;
      if (ch === '"') return out;
      if (ch !== '\\') {
        out += ch;
        continue;
      }
      const next = this.text[this.at++];
      if (next === undefined) this.fail('unterminated string');
      if (next === 'e' || next === 'n') out += '\n';
      else if (next === 'r') out += '\r';
      else if (next === 't') out += '\t';
      else if (/[0-9]/.test(next)) {
        const digits = this.text.slice(this.at - 1, this.at + 2);
        if (!/^\d{3}$/.test(digits)) this.fail('bad escape');
        out += String.fromCharCode(Number(digits));
        this.at += 2;
      } else out += next;
    }
  }
}

/** Reads the text presentation of one object (ServiceError when malformed). */
export function parseObject(text: string): XimssValue {
  const reader = new Reader(text);
  const value = reader.value(0);
  if (reader.peek() !== undefined) reader.fail('text after the object');
  return value;
}

/**
 * Reads a sequence of objects separated by white space (a CLI command line: its words,
 * strings, arrays and dictionaries), with the error text and depth of `options`.
 */
export function parseObjectSequence(text: string, options: ReadOptions = {}): XimssValue[] {
  const reader = new Reader(text, options);
  const values: XimssValue[] = [];
  while (reader.peek() !== undefined) values.push(reader.value(0));
  return values;
}
