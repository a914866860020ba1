/**
 * A small, fast XML element model: the one shape every XIMSS request, data message and
 * (later) XMPP stanza takes inside the server. Attributes keep their order; children are
 * elements or text.
 */
export type XmlNode = XmlElement | string;

export class XmlElement {
  readonly name: string;
  readonly attrs: Record<string, string>;
  readonly children: XmlNode[];

  constructor(name: string, attrs?: Record<string, string | number | boolean | undefined | null>, children?: XmlNode[]) {
    this.name = name;
    this.attrs = {};
    if (attrs) {
      for (const key of Object.keys(attrs)) {
        const value = attrs[key];
        if (value !== undefined && value !== null) this.attrs[key] = String(value);
      }
    }
    this.children = children ?? [];
  }

  /** The attribute value, or undefined. */
  attr(name: string): string | undefined {
    return this.attrs[name];
  }

  setAttr(name: string, value: string | number | undefined): this {
    if (value === undefined) delete this.attrs[name];
    else this.attrs[name] = String(value);
    return this;
  }

  /** Appends a child element or text and returns this element (for chaining). */
  append(...nodes: (XmlNode | undefined | null | false)[]): this {
    for (const node of nodes) if (node !== undefined && node !== null && node !== false) this.children.push(node);
    return this;
  }

  /** Appends a new child element and returns the child. */
  add(name: string, attrs?: Record<string, string | number | boolean | undefined | null>, text?: string): XmlElement {
    const child = new XmlElement(name, attrs, text === undefined ? undefined : [text]);
    this.children.push(child);
    return child;
  }

  elements(name?: string): XmlElement[] {
    const out: XmlElement[] = [];
    for (const c of this.children) if (typeof c !== 'string' && (name === undefined || c.name === name)) out.push(c);
    return out;
  }

  element(name: string): XmlElement | undefined {
    for (const c of this.children) if (typeof c !== 'string' && c.name === name) return c;
    return undefined;
  }

  /** The concatenated text of the direct text children. */
  text(): string {
    let s = '';
    for (const c of this.children) if (typeof c === 'string') s += c;
    return s;
  }

  toString(): string {
    return serialize(this);
  }
}

export function el(
  name: string,
  attrs?: Record<string, string | number | boolean | undefined | null>,
  ...children: (XmlNode | undefined | null | false)[]
): XmlElement {
  return new XmlElement(name, attrs).append(...children);
}

const TEXT_SPECIAL = /[&<>]/;
const ATTR_SPECIAL = /[&<>"\r\n\t]/;

export function escapeText(s: string): string {
  if (!TEXT_SPECIAL.test(s)) return s;
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** True when `s` has a character that must be escaped in an attribute value. */
function needsAttrEscape(s: string): boolean {
  // A plain loop beats a regular expression on the short values (ids) of the hot path.
  if (s.length > 64) return ATTR_SPECIAL.test(s);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 38 || c === 60 || c === 62 || c === 34 || c < 32) return true;
  }
  return false;
}

export function escapeAttr(s: string): string {
  if (!needsAttrEscape(s)) return s;
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/\r/g, '&#13;')
    .replace(/\n/g, '&#10;')
    .replace(/\t/g, '&#9;');
}

/** Compact serialization (no whitespace between elements), as XIMSS clients expect. */
export function serialize(node: XmlNode): string {
  if (typeof node === 'string') return escapeText(node);
  let s = '<' + node.name;
  for (const key of Object.keys(node.attrs)) s += ' ' + key + '="' + escapeAttr(node.attrs[key]!) + '"';
  if (node.children.length === 0) return s + '/>';
  s += '>';
  for (const child of node.children) s += serialize(child);
  return s + '</' + node.name + '>';
}

/** Removes what XML 1.0 cannot carry (NUL and other C0 controls, lone surrogates, U+FFFE/F). */
const XML_INVALID_SOURCE = '[\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]|[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]';
const XML_INVALID_TEST = new RegExp(XML_INVALID_SOURCE);
const XML_INVALID_ALL = new RegExp(XML_INVALID_SOURCE, 'g');

export function xmlSafe(text: string): string {
  return XML_INVALID_TEST.test(text) ? text.replace(XML_INVALID_ALL, '') : text;
}
