import { XmlElement, type XmlNode } from './element.js';

/**
 * The CommuniGate "XML presentation" of generic objects, used by preferences, session data,
 * CLI results and datasets: a string is text, an array is a list of <subValue> elements,
 * a dictionary is a list of <subKey key=".."> elements, a datablock is <base64>.
 */
export type XimssValue = string | Buffer | XimssValue[] | { [key: string]: XimssValue };

export function isDictionary(value: XimssValue | undefined): value is { [key: string]: XimssValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** Appends the XML presentation of `value` as the body of `parent`. */
export function appendValue(parent: XmlElement, value: XimssValue): XmlElement {
  if (typeof value === 'string') {
    if (value !== '') parent.children.push(value);
  } else if (Buffer.isBuffer(value)) {
    parent.add('base64', undefined, value.toString('base64'));
  } else if (Array.isArray(value)) {
    for (const item of value) appendValue(parent.add('subValue'), item);
  } else {
    for (const key of Object.keys(value)) appendValue(parent.add('subKey', { key }), value[key]!);
  }
  return parent;
}

/** Reads the value whose XML presentation is the body of `element`. */
export function readValue(element: XmlElement): XimssValue {
  const children = element.elements();
  if (children.length === 0) return element.text();
  const first = children[0]!;
  if (first.name === 'subKey') {
    const dict: { [key: string]: XimssValue } = {};
    for (const child of children) {
      if (child.name !== 'subKey') throw new TypeError(`unexpected <${child.name}> in a dictionary`);
      const key = child.attr('key');
      if (key === undefined) throw new TypeError('subKey element without a key attribute');
      // Defined, not assigned: a `__proto__` key is data like any other, not the prototype.
      Object.defineProperty(dict, key, { value: readValue(child), enumerable: true, writable: true, configurable: true });
    }
    return dict;
  }
  if (first.name === 'subValue') {
    return children.map((child) => {
      if (child.name !== 'subValue') throw new TypeError(`unexpected <${child.name}> in an array`);
      return readValue(child);
    });
  }
  if (first.name === 'base64' && children.length === 1) return Buffer.from(first.text(), 'base64');
  throw new TypeError(`unexpected <${first.name}> in an object presentation`);
}

export function valueChildren(value: XimssValue): XmlNode[] {
  return appendValue(new XmlElement('x'), value).children;
}

/**
 * Roughly the memory `value` takes, for limits: the characters of its strings and keys, the
 * bytes of its datablocks, and a few bytes for every element of an array or dictionary.
 */
export function valueSize(value: XimssValue): number {
  if (typeof value === 'string') return value.length;
  if (Buffer.isBuffer(value)) return value.length;
  let size = 0;
  if (Array.isArray(value)) for (const item of value) size += 16 + valueSize(item);
  else for (const key of Object.keys(value)) size += 16 + key.length + valueSize(value[key]!);
  return size;
}
