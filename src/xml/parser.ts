import { SaxesParser } from 'saxes';
import { XmlElement } from './element.js';

export class XmlParseError extends Error {}

/**
 * Strict XML document parser (saxes underneath): one document in, one element tree out.
 * Malformed input throws XmlParseError with the parser's message. Text made only of
 * whitespace between elements (pretty-printed requests) is dropped; other text is kept.
 */
export class XmlDocumentParser {
  private parser: SaxesParser;
  private stack: XmlElement[] = [];
  private root: XmlElement | undefined;
  private failure: string | undefined;

  constructor() {
    this.parser = new SaxesParser({ xmlns: false, position: false });
    this.parser.on('opentag', (tag) => {
      const element = new XmlElement(tag.name);
      const attributes = tag.attributes as Record<string, string>;
      for (const key in attributes) element.attrs[key] = attributes[key]!;
      const parent = this.stack[this.stack.length - 1];
      if (parent) parent.children.push(element);
      else this.root = element;
      this.stack.push(element);
    });
    this.parser.on('closetag', () => {
      this.stack.pop();
    });
    this.parser.on('text', (text) => this.addText(text));
    this.parser.on('cdata', (text) => this.addText(text, true));
    this.parser.on('error', (err) => {
      if (this.failure === undefined) this.failure = err.message;
    });
  }

  private addText(text: string, keepWhitespace = false): void {
    const parent = this.stack[this.stack.length - 1];
    if (!parent) return; // text outside the root element: saxes reports non-whitespace as an error
    if (!keepWhitespace && isBlank(text)) {
      return;
    }
    const last = parent.children[parent.children.length - 1];
    if (typeof last === 'string') parent.children[parent.children.length - 1] = last + text;
    else parent.children.push(text);
  }

  parse(source: string): XmlElement {
    this.root = undefined;
    this.stack = [];
    this.failure = undefined;
    this.parser.write(source);
    this.parser.close();
    const root = this.root as XmlElement | undefined;
    const failure = this.failure as string | undefined;
    this.root = undefined;
    this.stack = [];
    if (failure !== undefined) throw new XmlParseError(failure.replace(/^undefined:?/, '').trim());
    if (!root) throw new XmlParseError('no root element');
    return root;
  }
}

/** True when `text[from, to)` is only XML white space. */
export function isBlank(text: string, from = 0, to = text.length): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return false;
  }
  return true;
}

const shared = new XmlDocumentParser();

/** Parses one XML document. */
export function parseXml(source: string): XmlElement {
  return parseXmlRange(source, 0, source.length);
}

/** Parses the document `source[from, to)` (a message inside a larger buffer of text). */
export function parseXmlRange(source: string, from: number, to: number): XmlElement {
  return parseSimpleElement(source, from, to) ?? shared.parse(from === 0 && to === source.length ? source : source.slice(from, to));
}

/** Character classes for the fast path: 2 = may start a name, 1 = may continue one. */
const NAME_CHARS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z_]/.test(ch)) NAME_CHARS[c] = 2;
  else if (/[0-9.-]/.test(ch)) NAME_CHARS[c] = 1;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/**
 * Fast path for the most common request shape — one self-closing element whose attribute
 * values need no decoding, such as `<noop id="12"/>` — which dominates pipelined traffic.
 * Anything else (text, children, entities, declarations, namespaces, non-ASCII names,
 * anything irregular) returns undefined and goes through the full parser, which also
 * reports the errors.
 */
function parseSimpleElement(source: string, from: number, to: number): XmlElement | undefined {
  return parseLastShape(source, from, to) ?? parseSimpleElementScan(source, from, to);
}

/**
 * Pipelined clients send runs of requests of one shape (`<noop id="1"/>`, `<noop id="2"/>`,
 * …). The prefix `<name attr="` of the last one-attribute request is remembered, and a
 * request that starts with it exactly and ends `"/>` right after a plain value is built
 * without scanning its name again: the same result the scan would give, for less.
 */
let lastShape: { prefix: string; name: string; attr: string } | undefined;

function parseLastShape(source: string, from: number, to: number): XmlElement | undefined {
  const shape = lastShape;
  if (shape === undefined || !source.startsWith(shape.prefix, from)) return undefined;
  const valueStart = from + shape.prefix.length;
  const valueEnd = source.indexOf('"', valueStart);
  if (valueEnd < 0 || valueEnd + 3 !== to || source.charCodeAt(valueEnd + 1) !== 47 || source.charCodeAt(valueEnd + 2) !== 62) {
    return undefined;
  }
  if (!isPlainValue(source, valueStart, valueEnd)) return undefined;
  const element = new XmlElement(shape.name);
  element.attrs[shape.attr] = source.slice(valueStart, valueEnd);
  return element;
}

/**
 * True when the attribute value `source[from, to)` is taken as it is. Values needing
 * decoding (&...;), illegal ones (<, U+FFFE, lone surrogates: anything from U+D800 up is
 * left to the full parser) and white space normalization (tabs, newlines) are not.
 */
function isPlainValue(source: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = source.charCodeAt(i);
    if (c === 38 /* & */ || c === 60 /* < */ || c < 32 || c >= 0xd800) return false;
  }
  return true;
}

function rememberShape(element: XmlElement, attr: string, source: string, from: number): void {
  const prefix = `<${element.name} ${attr}="`;
  if (source.startsWith(prefix, from)) lastShape = { prefix, name: element.name, attr };
}

function parseSimpleElementScan(source: string, from: number, to: number): XmlElement | undefined {
  let i = from;
  while (i < to && isSpace(source.charCodeAt(i))) i++;
  if (source.charCodeAt(i) !== 60 /* < */) return undefined;
  const nameStart = ++i;
  if (NAME_CHARS[source.charCodeAt(i)] !== 2) return undefined;
  while (NAME_CHARS[source.charCodeAt(++i)]! > 0);
  const element = new XmlElement(source.slice(nameStart, i));
  const attrs = element.attrs;
  let count = 0;
  for (;;) {
    const spaceStart = i;
    let c = source.charCodeAt(i);
    while (isSpace(c)) c = source.charCodeAt(++i);
    if (c === 47 /* / */) break;
    // attributes must be separated by white space and start with a name
    if (i === spaceStart || NAME_CHARS[c] !== 2) return undefined;
    const attrStart = i;
    while (NAME_CHARS[source.charCodeAt(++i)]! > 0);
    const attrName = source.slice(attrStart, i);
    c = source.charCodeAt(i);
    while (isSpace(c)) c = source.charCodeAt(++i);
    if (c !== 61 /* = */) return undefined;
    c = source.charCodeAt(++i);
    while (isSpace(c)) c = source.charCodeAt(++i);
    if (c !== 34 /* " */ && c !== 39 /* ' */) return undefined;
    const valueStart = i + 1;
    const valueEnd = source.indexOf(c === 34 ? '"' : "'", valueStart);
    if (valueEnd < 0 || valueEnd >= to || !isPlainValue(source, valueStart, valueEnd)) return undefined;
    // Duplicate names are the full parser's business too.
    if (count++ > 0 && attrName in attrs) return undefined;
    attrs[attrName] = source.slice(valueStart, valueEnd);
    i = valueEnd + 1;
  }
  if (i + 1 >= to || source.charCodeAt(i + 1) !== 62 /* > */) return undefined;
  i += 2;
  while (i < to && isSpace(source.charCodeAt(i))) i++;
  if (i !== to) return undefined;
  if (count === 1) rememberShape(element, Object.keys(attrs)[0]!, source, from);
  return element;
}
