import { SaxesParser } from 'saxes';
import { XmlElement } from './element.js';

/** The handler fields saxes keeps, one per event (saxes.js EVENT_NAME_TO_HANDLER_NAME). */
interface SaxesHandlerFields {
  xmldeclHandler: unknown;
  textHandler: unknown;
  piHandler: unknown;
  doctypeHandler: unknown;
  commentHandler: unknown;
  openTagStartHandler: unknown;
  attributeHandler: unknown;
  openTagHandler: unknown;
  closeTagHandler: unknown;
  cdataHandler: unknown;
  errorHandler: unknown;
  endHandler: unknown;
  readyHandler: unknown;
  /** saxes' table of state methods: the prototype's methods, the same for every parser. */
  stateTable: unknown[];
  /** The entities it knows (XML's five underneath): never added to, since saxes reads no DTD. */
  ENTITIES: Record<string, string>;
}

/** What every parser can share rather than hold a copy of (an XMPP connection holds a parser for its lifetime). */
let sharedStateTable: unknown[] | undefined;
let sharedEntities: Record<string, string> | undefined;
const OPTIONS = { position: { xmlns: false, position: true }, noPosition: { xmlns: false, position: false } } as const;

/**
 * A saxes parser that stays a fast object. saxes's `on()` adds each handler under a computed
 * name, and V8 turns an object that grows that way into a dictionary: about 5 KB per parser
 * instead of 2.4 KB, which every XMPP connection holds for its lifetime. Declaring the fields
 * by name first keeps the object's shape. Its table of states (prototype methods called with
 * the parser as `this`), its entities and its options are shared.
 */
export function newSaxesParser(options: { xmlns: false; position: boolean }): SaxesParser {
  const parser = new SaxesParser(options.position ? OPTIONS.position : OPTIONS.noPosition);
  const fields = parser as unknown as SaxesHandlerFields;
  fields.xmldeclHandler = undefined;
  fields.textHandler = undefined;
  fields.piHandler = undefined;
  fields.doctypeHandler = undefined;
  fields.commentHandler = undefined;
  fields.openTagStartHandler = undefined;
  fields.attributeHandler = undefined;
  fields.openTagHandler = undefined;
  fields.closeTagHandler = undefined;
  fields.cdataHandler = undefined;
  fields.errorHandler = undefined;
  fields.endHandler = undefined;
  fields.readyHandler = undefined;
  fields.stateTable = sharedStateTable ??= fields.stateTable;
  fields.ENTITIES = sharedEntities ??= Object.freeze(fields.ENTITIES);
  return parser;
}

export class XmlParseError extends Error {
  /** The root element's `id` attribute when its start tag had been read: a refused request can still be answered by id. */
  rootId: string | undefined;

  /** What the client is told. */
  get errorText(): string {
    return `malformed XML: ${this.message}`;
  }
}

/** A document crossed one of the guard's limits: refused while it was being parsed. */
export class XmlLimitError extends XmlParseError {
  override get errorText(): string {
    return this.message;
  }
}

/**
 * What one document may hold, enforced while it is parsed (never after): every XML that
 * enters the server goes through these, tighter before login.
 */
export interface XmlLimits {
  /** Element nesting depth; the root element is at depth 1. */
  depth: number;
  /** Elements in the document. */
  elements: number;
  /** Attributes on one element. */
  attributes: number;
  /** Characters of one attribute value. */
  attributeChars: number;
  /** Characters of one run of text (CDATA included). */
  textChars: number;
  /** Children of the root element (the requests of a batch)... */
  rootChildren: number;
  /** ...when the root has this name (else of any root). */
  batchRoot?: string;
}

/** Limits for XML that is not a client's request (XML parts of stored mail, tests). */
export const DEFAULT_XML_LIMITS: XmlLimits = {
  depth: 64,
  elements: 100_000,
  attributes: 64,
  attributeChars: 1024 * 1024,
  textChars: 10 * 1024 * 1024,
  rootChildren: Number.POSITIVE_INFINITY,
};

/**
 * Strict, guarded XML document parser (saxes underneath): one document in, one element
 * tree out, given whole (`parse`) or in pieces as it arrives (`begin`, `write`, `end`).
 * The limits are checked on every event, so an oversized or overdeep document is refused
 * as soon as it crosses one, in constant extra memory; the first well-formedness error
 * ends the parse too. Either throws XmlParseError (XmlLimitError for a limit). Text made
 * only of whitespace between elements (pretty-printed requests) is dropped.
 */
export class XmlDocumentParser {
  private parser: SaxesParser;
  private stack: XmlElement[] = [];
  private root: XmlElement | undefined;
  private limits: XmlLimits = DEFAULT_XML_LIMITS;
  private elementCount = 0;
  private attributeCount = 0;
  /** The root's `id` once read, before its start tag is complete (a refusal among its attributes still knows it). */
  private rootIdSeen: string | undefined;
  /** True after a failure until the next begin(): saxes is then in an unknown state. */
  private broken = false;

  constructor() {
    this.parser = this.newSaxes();
  }

  private newSaxes(): SaxesParser {
    const parser = newSaxesParser({ xmlns: false, position: false });
    parser.on('opentagstart', () => {
      this.attributeCount = 0;
      if (this.stack.length >= this.limits.depth) this.refuse(`elements are nested deeper than ${this.limits.depth}`);
      if (++this.elementCount > this.limits.elements) this.refuse(`more than ${this.limits.elements} elements`);
      const root = this.stack.length === 1 ? this.stack[0]! : undefined;
      if (root && root.children.length >= this.limits.rootChildren && (this.limits.batchRoot ?? root.name) === root.name) {
        throw new XmlLimitError(`too many requests: more than ${this.limits.rootChildren}`);
      }
    });
    parser.on('attribute', (attribute) => {
      if (this.stack.length === 0 && attribute.name === 'id' && attribute.value.length <= this.limits.attributeChars) this.rootIdSeen = attribute.value;
      if (++this.attributeCount > this.limits.attributes) this.refuse(`more than ${this.limits.attributes} attributes on an element`);
      if (attribute.value.length > this.limits.attributeChars) {
        this.refuse(`an attribute value is longer than ${this.limits.attributeChars} characters`);
      }
    });
    parser.on('opentag', (tag) => {
      const element = new XmlElement(tag.name);
      const attributes = tag.attributes as Record<string, string>;
      for (const key in attributes) element.attrs[key] = attributes[key]!;
      const parent = this.stack[this.stack.length - 1];
      if (parent) parent.children.push(element);
      else this.root = element;
      this.stack.push(element);
    });
    parser.on('closetag', () => {
      this.stack.pop();
    });
    parser.on('text', (text) => this.addText(text));
    parser.on('cdata', (text) => this.addText(text, true));
    parser.on('error', (err) => {
      throw new XmlParseError(err.message.replace(/^undefined:?/, '').trim());
    });
    return parser;
  }

  private refuse(what: string): never {
    throw new XmlLimitError(`the request is refused: ${what}`);
  }

  private addText(text: string, keepWhitespace = false): void {
    const parent = this.stack[this.stack.length - 1];
    if (!parent) return; // text outside the root element: saxes reports non-whitespace as an error
    if (!keepWhitespace && isBlank(text)) {
      return;
    }
    const last = parent.children[parent.children.length - 1];
    const joined = typeof last === 'string' ? last.length + text.length : text.length;
    if (joined > this.limits.textChars) this.refuse(`a text is longer than ${this.limits.textChars} characters`);
    if (typeof last === 'string') parent.children[parent.children.length - 1] = last + text;
    else parent.children.push(text);
  }

  /** Starts a document to be given in pieces. */
  begin(limits: XmlLimits = DEFAULT_XML_LIMITS): void {
    if (this.broken) this.parser = this.newSaxes();
    this.broken = false;
    this.limits = limits;
    this.root = undefined;
    this.rootIdSeen = undefined;
    this.stack = [];
    this.elementCount = 0;
  }

  /** The next piece of the document; throws as soon as it is malformed or crosses a limit. */
  write(text: string): void {
    try {
      this.parser.write(text);
    } catch (err) {
      this.fail(err);
      throw err;
    }
  }

  /** Ends the document: its root element. */
  end(): XmlElement {
    try {
      this.parser.close();
    } catch (err) {
      this.fail(err);
      throw err;
    }
    const root = this.root as XmlElement | undefined;
    this.root = undefined;
    this.stack = [];
    if (!root) throw new XmlParseError('no root element');
    return root;
  }

  /** Forgets the document after a failure (saxes is rebuilt on the next begin). */
  private fail(err: unknown): void {
    if (err instanceof XmlParseError) err.rootId = this.root?.attrs.id ?? this.rootIdSeen;
    this.broken = true;
    this.root = undefined;
    this.stack = [];
  }

  parse(source: string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
    this.begin(limits);
    this.write(source);
    return this.end();
  }
}

/**
 * A document arriving in pieces (a TCP message over several reads, an HTTP body) after
 * optional white space and byte order marks: until something else comes there is no
 * document yet (keep-alive bytes, an empty body), and end() gives undefined.
 */
export class XmlDocumentStream {
  private started = false;

  constructor(
    private readonly parser: XmlDocumentParser,
    private readonly limits: XmlLimits,
  ) {}

  /** The next piece; throws as soon as the document is malformed or crosses a limit. */
  write(text: string): void {
    if (!this.started) {
      let i = 0;
      while (i < text.length && (isBlank(text, i, i + 1) || text.charCodeAt(i) === 0xfeff)) i++;
      if (i === text.length) return;
      this.started = true;
      this.parser.begin(this.limits);
      text = text.slice(i);
    }
    this.parser.write(text);
  }

  /** The document's root element; undefined when only white space came. */
  end(): XmlElement | undefined {
    return this.started ? this.parser.end() : undefined;
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

/** Parses one XML document within `limits`. */
export function parseXml(source: string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
  return parseXmlRange(source, 0, source.length, limits);
}

/** Parses the document `source[from, to)` (a message inside a larger buffer of text) within `limits`. */
export function parseXmlRange(source: string, from: number, to: number, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
  return (
    parseSimpleElement(source, from, to, limits) ??
    shared.parse(from === 0 && to === source.length ? source : source.slice(from, to), limits)
  );
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
 * more than the limits allow, anything irregular) returns undefined and goes through the
 * full parser, which also reports the errors.
 */
function parseSimpleElement(source: string, from: number, to: number, limits: XmlLimits): XmlElement | undefined {
  return parseLastShape(source, from, to, limits) ?? parseSimpleElementScan(source, from, to, limits);
}

/**
 * Pipelined clients send runs of requests of one shape (`<noop id="1"/>`, `<noop id="2"/>`,
 * …). The prefix `<name attr="` of the last one-attribute request is remembered, and a
 * request that starts with it exactly and ends `"/>` right after a plain value is built
 * without scanning its name again: the same result the scan would give, for less.
 */
let lastShape: { prefix: string; name: string; attr: string } | undefined;

function parseLastShape(source: string, from: number, to: number, limits: XmlLimits): XmlElement | undefined {
  const shape = lastShape;
  if (shape === undefined || !source.startsWith(shape.prefix, from)) return undefined;
  const valueStart = from + shape.prefix.length;
  const valueEnd = source.indexOf('"', valueStart);
  if (valueEnd < 0 || valueEnd + 3 !== to || source.charCodeAt(valueEnd + 1) !== 47 || source.charCodeAt(valueEnd + 2) !== 62) {
    return undefined;
  }
  if (valueEnd - valueStart > limits.attributeChars || !isPlainValue(source, valueStart, valueEnd)) return undefined;
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

function parseSimpleElementScan(source: string, from: number, to: number, limits: XmlLimits): XmlElement | undefined {
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
    if (valueEnd < 0 || valueEnd >= to || valueEnd - valueStart > limits.attributeChars || !isPlainValue(source, valueStart, valueEnd)) {
      return undefined;
    }
    // Duplicate names, and more attributes than the limit, are the full parser's business too.
    if (count++ > 0 && attrName in attrs) return undefined;
    if (count > limits.attributes) return undefined;
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
