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

function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return false;
  }
  return true;
}

const shared = new XmlDocumentParser();

/** Parses one XML document. */
export function parseXml(source: string): XmlElement {
  return parseSimpleElement(source) ?? shared.parse(source);
}

/**
 * Fast path for the most common request shape — one self-closing element whose attribute
 * values need no decoding, such as `<noop id="12"/>` — which dominates pipelined traffic.
 * Anything else (text, children, entities, declarations, anything irregular) returns
 * undefined and goes through the full parser, which also reports the errors.
 */
function parseSimpleElement(source: string): XmlElement | undefined {
  const length = source.length;
  let i = 0;
  while (i < length && isSpace(source.charCodeAt(i))) i++;
  if (source.charCodeAt(i) !== 60 /* < */) return undefined;
  let nameEnd = i + 1;
  while (nameEnd < length && isNameChar(source.charCodeAt(nameEnd))) nameEnd++;
  if (nameEnd === i + 1 || !isNameStart(source.charCodeAt(i + 1))) return undefined;
  const element = new XmlElement(source.slice(i + 1, nameEnd));
  const attrs = element.attrs;
  i = nameEnd;
  for (;;) {
    const spaceStart = i;
    while (i < length && isSpace(source.charCodeAt(i))) i++;
    const c = source.charCodeAt(i);
    if (c === 47 /* / */) break;
    if (i === spaceStart) return undefined; // attributes must be separated by white space
    const attrStart = i;
    while (i < length && isNameChar(source.charCodeAt(i))) i++;
    if (i === attrStart || !isNameStart(source.charCodeAt(attrStart))) return undefined;
    const attrName = source.slice(attrStart, i);
    while (i < length && isSpace(source.charCodeAt(i))) i++;
    if (source.charCodeAt(i) !== 61 /* = */) return undefined;
    i++;
    while (i < length && isSpace(source.charCodeAt(i))) i++;
    const quote = source.charCodeAt(i);
    if (quote !== 34 /* " */ && quote !== 39 /* ' */) return undefined;
    const valueEnd = source.indexOf(quote === 34 ? '"' : "'", i + 1);
    if (valueEnd < 0) return undefined;
    const value = source.slice(i + 1, valueEnd);
    // Values needing decoding (&...;), illegal ones (<) and white space normalization
    // (tabs, newlines) are the full parser's business; so are duplicate names.
    if (!isPlainValue(value) || attrName in attrs) return undefined;
    attrs[attrName] = value;
    i = valueEnd + 1;
  }
  if (source.charCodeAt(i + 1) !== 62 /* > */) return undefined;
  i += 2;
  while (i < length && isSpace(source.charCodeAt(i))) i++;
  return i === length ? element : undefined;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

function isNameStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 /* _ */;
}

function isNameChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 45 || c === 46;
}

function isPlainValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 38 /* & */ || c === 60 /* < */ || c < 32) return false;
  }
  return true;
}

