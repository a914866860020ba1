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
  return shared.parse(source);
}
