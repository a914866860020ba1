import { SaxesParser } from 'saxes';
import { StringDecoder } from 'node:string_decoder';
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

/** What the parser finds in a stream, in order. */
export interface StreamHandler {
  /** The stream header: `<stream:stream …>` with its attributes (namespace declarations included). */
  open(attrs: Record<string, string>): void;
  /** A complete top-level element: its attributes, namespace declarations included. */
  stanza(element: XmlElement): void;
  /** `</stream:stream>`. */
  close(): void;
}

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
 */
export class XmppStreamParser {
  private parser!: SaxesParser;
  private decoder = new StringDecoder('utf8');
  /** Open elements: [0] the stream root, [1] the stanza being read, … */
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
    private readonly limits: () => StanzaLimits,
    /** The stream's default namespace: `jabber:client`, or `jabber:server` between servers. */
    private readonly contentNamespace: string = NS_CLIENT,
  ) {
    this.reset();
  }

  /** Forgets the stream read so far (a restart): the next bytes begin with a new header. */
  reset(): void {
    this.parser = this.newSaxes();
    this.decoder = new StringDecoder('utf8');
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
    const text = typeof data === 'string' ? data : this.decoder.write(data);
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
    }
    this.bytesBefore += Buffer.byteLength(text);
    this.charsBefore += text.length;
    if (this.stopped) return;
    // A stanza (or white space) still arriving: refused as soon as it is too large, not once it is whole.
    const limit = this.limits().bytes;
    if (this.bytesBefore - this.stanzaStart > limit) this.tooLarge(limit);
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

  private newSaxes(): SaxesParser {
    const parser = newSaxesParser({ xmlns: false, position: true });
    parser.on('opentagstart', (tag) => {
      if (this.stopped) return;
      const depth = this.stack.length;
      this.attributeCount = 0;
      if (depth === 0) return;
      const { xml, bytes } = this.limits();
      if (depth === 1) {
        // White space since the last stanza counts with nothing; the stanza starts here.
        const at = this.bytesAt(parser.position) - Buffer.byteLength(tag.name) - 1;
        if (at - this.stanzaStart > bytes) this.tooLarge(bytes);
        this.stanzaStart = at;
        this.elementCount = 0;
        this.blankTexts = false;
      }
      this.attributeCount = 0;
      if (depth > xml.depth) this.refuse(`elements are nested deeper than ${xml.depth}`);
      if (++this.elementCount > xml.elements) this.refuse(`more than ${xml.elements} elements`);
    });
    parser.on('attribute', (attribute) => {
      if (this.stopped) return;
      const { xml } = this.limits();
      if (++this.attributeCount > xml.attributes) this.refuse(`more than ${xml.attributes} attributes on an element`);
      if (attribute.value.length > xml.attributeChars) this.refuse(`an attribute value is longer than ${xml.attributeChars} characters`);
    });
    parser.on('opentag', (tag) => {
      if (this.stopped) return;
      const element = new XmlElement(tag.name);
      const attributes = tag.attributes as Record<string, string>;
      for (const key in attributes) element.attrs[key] = attributes[key]!;
      const depth = this.stack.length;
      if (depth === 0) {
        this.openStream(element);
        this.stack.push(element);
        if (!this.stopped) this.handler.open(element.attrs);
        return;
      }
      if (depth > 1) this.stack[depth - 1]!.children.push(element);
      this.stack.push(element);
      this.checkSize();
    });
    parser.on('closetag', () => {
      if (this.stopped) return;
      const element = this.stack.pop();
      if (!element) return;
      if (this.blankTexts) dropIndentation(element);
      const depth = this.stack.length;
      if (depth === 1) {
        this.checkSize();
        this.stanzaStart = this.bytesAt(parser.position);
        this.handler.stanza(element);
      } else if (depth === 0) {
        this.stopped = true;
        this.handler.close();
      }
    });
    parser.on('text', (text) => this.addText(text));
    parser.on('cdata', (text) => this.addText(text, true));
    // RFC 6120 11.1: no DTD, comments or processing instructions in a stream.
    const restricted = (what: string) => () => {
      if (!this.stopped) throw new StreamError('restricted-xml', `${what} is not allowed in an XMPP stream`);
    };
    parser.on('doctype', restricted('a document type declaration'));
    parser.on('comment', restricted('a comment'));
    parser.on('processinginstruction', restricted('a processing instruction'));
    parser.on('error', (err) => {
      throw new StreamError('not-well-formed', `malformed XML: ${err.message.replace(/^undefined:?/, '').trim()}`);
    });
    return parser;
  }

  private checkSize(): void {
    const { bytes } = this.limits();
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
    this.streamPrefix = prefix;
  }

  private addText(text: string, keepWhitespace = false): void {
    if (this.stopped) return;
    const depth = this.stack.length;
    if (depth <= 1) {
      // Between stanzas only white space (keep-alives) may come.
      if (depth === 1 && !isBlank(text)) throw new StreamError('not-well-formed', 'text between stanzas');
      return;
    }
    const parent = this.stack[depth - 1]!;
    if (!keepWhitespace && isBlank(text)) this.blankTexts = true;
    const { xml } = this.limits();
    const last = parent.children[parent.children.length - 1];
    const joined = typeof last === 'string' ? last.length + text.length : text.length;
    if (joined > xml.textChars) this.refuse(`a text is longer than ${xml.textChars} characters`);
    if (typeof last === 'string') parent.children[parent.children.length - 1] = last + text;
    else parent.children.push(text);
  }
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
