import type { SaxesParser, SaxesStartTagPlain, SaxesTagPlain } from 'saxes';
import { XmlElement } from '../../xml/element.js';
import { isBlank, newSaxesParser, type XmlLimits } from '../../xml/parser.js';

/** The namespaces of the stream itself (RFC 6120 4.8) and of what it carries. */
export const NS_STREAMS = 'http://etherx.jabber.org/streams';
export const NS_CLIENT = 'jabber:client';
export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
export const NS_STREAM_ERRORS = 'urn:ietf:params:xml:ns:xmpp-streams';

/**
 * A stream-level failure (RFC 6120 4.9.3): the condition element's name and a text for the
 * client. The stream is ended with it.
 */
export class StreamError extends Error {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

/** What one stanza may hold: the XML guard's limits (per stanza, its root at depth 1) and its size. */
export interface StanzaLimits {
  xml: XmlLimits;
  /** Bytes of one stanza (and of what comes between two stanzas: white space). */
  bytes: number;
}

/** What the parser finds in a stream, in order, and the limits it applies. */
export interface StreamHandler {
  /** The stream header: `<stream:stream …>` with its attributes (namespace declarations included). */
  streamHeader(attrs: Record<string, string>): void;
  /** A complete top-level element: its attributes, namespace declarations included. */
  stanza(element: XmlElement): void;
  /** `</stream:stream>`. */
  streamEnd(): void;
  /** The limits now: asked at each element, since they change at authentication. */
  readonly limits: StanzaLimits;
}

/** The stream header's usual name, kept instead of the parser's slice of the header's text. */
const STREAM_TAG = 'stream:stream';
/** What saxes keeps of the open header's attributes once they are read. */
const NO_ATTRIBUTES: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** The saxes parser of a stream: its handlers are shared functions that find the stream here. */
type StreamSaxes = SaxesParser & { stream: XmppStreamParser };
/** saxes' fields that the stream clears once it is done with them (saxes keeps the last of each). */
type SaxesLeftovers = { chunk: string; tag: SaxesTagPlain | null; tags: SaxesTagPlain[] };

/**
 * An XMPP stream read as it arrives (saxes underneath, like every XML the server reads):
 * the header `<stream:stream>`, then each top-level child as one XmlElement, then its end.
 * Every stanza is guarded while it is parsed, like any XIMSS request (src/xml/parser.ts):
 * depth, elements, attributes and text sizes, plus its size in bytes; crossing one is a
 * `policy-violation`, malformed XML `not-well-formed`, a DTD, comment or processing
 * instruction `restricted-xml`, a header in another namespace `invalid-namespace` (thrown
 * as StreamError by write()).
 *
 * Namespaces are checked by hand (saxes' xmlns mode costs on every element): the header
 * must declare the streams namespace for its prefix and `jabber:client` as default; a
 * top-level child is in `jabber:client` unless it says otherwise (`xmlns`), or in the
 * streams namespace when it carries the header's prefix.
 *
 * After STARTTLS and SASL the stream restarts: reset() forgets everything read and expects
 * a new header. stop() ignores the rest of what was written (what a client sent after
 * `<starttls/>` in clear text must never be acted on).
 *
 * An idle stream holds one of these for as long as it lives, so it keeps little between
 * stanzas: no copy of the header, no decoder unless a character was split between reads,
 * saxes' state table shared, its handlers shared functions but for two.
 */
export class XmppStreamParser {
  private parser!: StreamSaxes;
  /** The bytes of a character split between two reads (at most three). */
  private pendingBytes: Buffer | undefined;
  /** Whether the header has been read (and the stream not closed). */
  private rootOpen = false;
  /** The elements open inside the root: [0] the stanza being read, [1] its child, … */
  private stack: XmlElement[] = [];
  private streamPrefix = 'stream';
  private elementCount = 0;
  private attributeCount = 0;
  private stopped = false;
  /** The stanza being read has a text of only white space (indentation, maybe). */
  private blankTexts = false;
  /** Byte accounting: bytes of all text written before the current chunk, and a cursor into the chunk. */
  private bytesBefore = 0;
  /** Characters of all text written before the current chunk (saxes' `position` is that plus the index in the chunk while it parses; read between writes it is not). */
  private charsBefore = 0;
  private chunk = '';
  private chunkStart = 0;
  private cursorChar = 0;
  private cursorByte = 0;
  /** Where the current stanza (or the white space since the last one) began, in bytes of the stream. */
  private stanzaStart = 0;

  constructor(
    private readonly handler: StreamHandler,
    /** The stream's default namespace: `jabber:client`, or `jabber:server` between servers. */
    private readonly contentNamespace: string = NS_CLIENT,
  ) {
    this.reset();
  }

  /** Forgets the stream read so far (a restart): the next bytes begin with a new header. */
  reset(): void {
    this.parser = this.newSaxes();
    this.pendingBytes = undefined;
    this.rootOpen = false;
    this.stack = [];
    this.stopped = false;
    this.bytesBefore = 0;
    this.charsBefore = 0;
    this.chunk = '';
    this.chunkStart = 0;
    this.cursorChar = 0;
    this.cursorByte = 0;
    this.stanzaStart = 0;
  }

  /** Ignores whatever else is written until reset(). */
  stop(): void {
    this.stopped = true;
  }

  /** The prefix the client's header gave the streams namespace (`stream`). */
  get prefix(): string {
    return this.streamPrefix;
  }

  /** More of the stream; throws StreamError when it breaks a rule. */
  write(data: Buffer | string): void {
    if (this.stopped) return;
    const text = typeof data === 'string' ? data : this.decode(data);
    if (text === '') return;
    this.chunk = text;
    this.chunkStart = this.charsBefore;
    this.cursorChar = 0;
    this.cursorByte = this.bytesBefore;
    try {
      this.parser.write(text);
    } catch (err) {
      this.stopped = true;
      if (err instanceof StreamError) throw err;
      throw new StreamError('not-well-formed', `malformed XML: ${(err as Error).message.replace(/^undefined:?/, '').trim()}`);
    } finally {
      // Neither keeps the text once it is parsed: an idle stream holds no copy of its last read.
      this.chunk = '';
      (this.parser as unknown as SaxesLeftovers).chunk = '';
    }
    this.bytesBefore += Buffer.byteLength(text);
    this.charsBefore += text.length;
    if (this.stopped) return;
    // A stanza (or white space) still arriving: refused as soon as it is too large, not once it is whole.
    const limit = this.handler.limits.bytes;
    if (this.bytesBefore - this.stanzaStart > limit) this.tooLarge(limit);
  }

  /** The text of the complete characters read so far; a split character waits for its other bytes. */
  private decode(data: Buffer): string {
    if (this.pendingBytes) {
      data = Buffer.concat([this.pendingBytes, data]);
      this.pendingBytes = undefined;
    }
    const end = completeUtf8(data);
    if (end < data.length) this.pendingBytes = Buffer.from(data.subarray(end));
    return data.toString('utf8', 0, end);
  }

  /** The stream's byte offset of saxes' current position. */
  private bytesAt(position: number): number {
    const index = Math.min(Math.max(position - this.chunkStart, this.cursorChar), this.chunk.length);
    if (index > this.cursorChar) {
      this.cursorByte += Buffer.byteLength(this.chunk.slice(this.cursorChar, index));
      this.cursorChar = index;
    }
    return this.cursorByte;
  }

  private tooLarge(limit: number): never {
    throw new StreamError('policy-violation', `a stanza is larger than ${limit} bytes`);
  }

  private refuse(what: string): never {
    throw new StreamError('policy-violation', `the stanza is refused: ${what}`);
  }

  private newSaxes(): StreamSaxes {
    const parser = newSaxesParser({ xmlns: false, position: true }) as StreamSaxes;
    parser.stream = this;
    // saxes calls these with the parser as `this`: shared by every stream.
    parser.on('opentagstart', onOpenTagStart);
    parser.on('attribute', onAttribute);
    parser.on('opentag', onOpenTag);
    parser.on('cdata', onCdata);
    parser.on('doctype', onDoctype);
    parser.on('comment', onComment);
    parser.on('processinginstruction', onProcessingInstruction);
    parser.on('error', onError);
    // These two it calls without: one closure each.
    parser.on('closetag', () => this.closeTag());
    parser.on('text', (text) => this.addText(text));
    return parser;
  }

  private openTagStart(tag: SaxesStartTagPlain): void {
    if (this.stopped) return;
    this.attributeCount = 0;
    if (!this.rootOpen) return;
    const depth = this.stack.length + 1;
    const { xml, bytes } = this.handler.limits;
    if (depth === 1) {
      // White space since the last stanza counts with nothing; the stanza starts here.
      const at = this.bytesAt(this.parser.position) - Buffer.byteLength(tag.name) - 1;
      if (at - this.stanzaStart > bytes) this.tooLarge(bytes);
      this.stanzaStart = at;
      this.elementCount = 0;
      this.blankTexts = false;
    }
    if (depth > xml.depth) this.refuse(`elements are nested deeper than ${xml.depth}`);
    if (++this.elementCount > xml.elements) this.refuse(`more than ${xml.elements} elements`);
  }

  private attribute(value: string): void {
    if (this.stopped) return;
    const { xml } = this.handler.limits;
    if (++this.attributeCount > xml.attributes) this.refuse(`more than ${xml.attributes} attributes on an element`);
    if (value.length > xml.attributeChars) this.refuse(`an attribute value is longer than ${xml.attributeChars} characters`);
  }

  private openTag(tag: SaxesTagPlain): void {
    if (this.stopped) return;
    const element = new XmlElement(tag.name);
    const attributes = tag.attributes;
    for (const key in attributes) element.attrs[key] = attributes[key]!;
    if (!this.rootOpen) {
      // saxes keeps the header's tag open as long as the stream: it keeps neither its attributes nor a slice of the header's text.
      tag.attributes = NO_ATTRIBUTES;
      tag.name = tag.name === STREAM_TAG ? STREAM_TAG : Buffer.from(tag.name).toString();
      this.openStream(element);
      this.rootOpen = true;
      if (!this.stopped) this.handler.streamHeader(element.attrs);
      return;
    }
    const depth = this.stack.length;
    if (depth > 0) this.stack[depth - 1]!.children.push(element);
    this.stack.push(element);
    this.checkSize();
  }

  private closeTag(): void {
    if (this.stopped) return;
    const element = this.stack.pop();
    if (!element) {
      if (!this.rootOpen) return;
      this.rootOpen = false;
      this.stopped = true;
      this.handler.streamEnd();
      return;
    }
    if (this.blankTexts) dropIndentation(element);
    if (this.stack.length === 0) {
      // Between stanzas the stack keeps no room for the deepest one so far.
      this.stack = [];
      this.checkSize();
      this.stanzaStart = this.bytesAt(this.parser.position);
      // saxes keeps the last tag it closed and its stack's room for the deepest stanza so far; between stanzas, neither.
      const saxes = this.parser as unknown as SaxesLeftovers;
      saxes.tag = null;
      saxes.tags = saxes.tags.slice();
      this.handler.stanza(element);
    }
  }

  private checkSize(): void {
    const { bytes } = this.handler.limits;
    if (this.bytesAt(this.parser.position) - this.stanzaStart > bytes) this.tooLarge(bytes);
  }

  /** The header: `<prefix:stream xmlns:prefix="…streams" xmlns="jabber:client">`. */
  private openStream(root: XmlElement): void {
    const colon = root.name.indexOf(':');
    const prefix = colon < 0 ? '' : root.name.slice(0, colon);
    const local = colon < 0 ? root.name : root.name.slice(colon + 1);
    const namespace = prefix === '' ? root.attrs.xmlns : root.attrs[`xmlns:${prefix}`];
    if (local !== 'stream' || namespace !== NS_STREAMS) {
      throw new StreamError('invalid-namespace', `the stream header must be <stream:stream> in ${NS_STREAMS}`);
    }
    if (prefix !== '' && root.attrs.xmlns !== this.contentNamespace) {
      throw new StreamError('invalid-namespace', `the stream's default namespace must be ${this.contentNamespace}`);
    }
    this.streamPrefix = prefix === 'stream' ? 'stream' : Buffer.from(prefix).toString();
  }

  private addText(text: string, keepWhitespace = false): void {
    if (this.stopped) return;
    const depth = this.stack.length;
    if (depth === 0) {
      // Between stanzas only white space (keep-alives) may come.
      if (this.rootOpen && !isBlank(text)) throw new StreamError('not-well-formed', 'text between stanzas');
      return;
    }
    const parent = this.stack[depth - 1]!;
    if (!keepWhitespace && isBlank(text)) this.blankTexts = true;
    const { xml } = this.handler.limits;
    const last = parent.children[parent.children.length - 1];
    const joined = typeof last === 'string' ? last.length + text.length : text.length;
    if (joined > xml.textChars) this.refuse(`a text is longer than ${xml.textChars} characters`);
    if (typeof last === 'string') parent.children[parent.children.length - 1] = last + text;
    else parent.children.push(text);
  }

  /** RFC 6120 11.1: no DTD, comments or processing instructions in a stream. */
  private restricted(what: string): void {
    if (!this.stopped) throw new StreamError('restricted-xml', `${what} is not allowed in an XMPP stream`);
  }

  // saxes' handlers (it calls them with the parser as `this`); static, so that they reach the stream's private parts.
  static onOpenTagStart(this: StreamSaxes, tag: SaxesStartTagPlain): void {
    this.stream.openTagStart(tag);
  }
  static onAttribute(this: StreamSaxes, attribute: { value: string }): void {
    this.stream.attribute(attribute.value);
  }
  static onOpenTag(this: StreamSaxes, tag: SaxesTagPlain): void {
    this.stream.openTag(tag);
  }
  static onCdata(this: StreamSaxes, text: string): void {
    this.stream.addText(text, true);
  }
  static onDoctype(this: StreamSaxes): void {
    this.stream.restricted('a document type declaration');
  }
  static onComment(this: StreamSaxes): void {
    this.stream.restricted('a comment');
  }
  static onProcessingInstruction(this: StreamSaxes): void {
    this.stream.restricted('a processing instruction');
  }
}

const { onOpenTagStart, onAttribute, onOpenTag, onCdata, onDoctype, onComment, onProcessingInstruction } = XmppStreamParser;

function onError(err: Error): never {
  throw new StreamError('not-well-formed', `malformed XML: ${err.message.replace(/^undefined:?/, '').trim()}`);
}

/** How many of `bytes` are complete UTF-8 characters: all but a character cut short at the end. */
export function completeUtf8(bytes: Buffer): number {
  const n = bytes.length;
  for (let k = n - 1; k >= 0 && k >= n - 3; k--) {
    const b = bytes[k]!;
    if (b < 0x80) return n;
    if (b >= 0xc0) {
      // A lead byte: its character is whole if its continuation bytes are all here.
      const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return n - k >= length ? n : k;
    }
  }
  return n;
}

/**
 * Removes the white space between the child elements of an element that has some (a
 * pretty-printed stanza): XMPP has no mixed content, so such text carries nothing, while a
 * `<body> </body>` keeps its space.
 */
function dropIndentation(element: XmlElement): void {
  if (!element.children.some((child) => typeof child !== 'string')) return;
  for (let i = element.children.length - 1; i >= 0; i--) {
    const child = element.children[i]!;
    if (typeof child === 'string' && isBlank(child)) element.children.splice(i, 1);
  }
}

/**
 * The namespace of a top-level element: its own `xmlns`, the streams namespace for the
 * header's prefix, else the stream's default (`jabber:client`).
 */
export function namespaceOf(element: XmlElement, streamPrefix: string): string {
  const colon = element.name.indexOf(':');
  if (colon >= 0) {
    const prefix = element.name.slice(0, colon);
    return element.attrs[`xmlns:${prefix}`] ?? (prefix === streamPrefix ? NS_STREAMS : '');
  }
  return element.attrs.xmlns ?? NS_CLIENT;
}

/** The local name of an element (`stream:error` → `error`). */
export function localName(element: XmlElement): string {
  const colon = element.name.indexOf(':');
  return colon < 0 ? element.name : element.name.slice(colon + 1);
}
