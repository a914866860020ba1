/**
 * The XEP-0327 namespaces, and reading Rayo XML: the namespace of an element (the server's
 * element model keeps `xmlns` as a plain attribute, so a child without one inherits its
 * parent's, and a prefixed name is resolved through its `xmlns:prefix` declaration), and
 * attribute readers that turn a bad value into a RayoError.
 */
import type { XmlElement } from '../../../xml/element.js';
import { badRequest, unsupportedOption, type RayoError } from './errors.js';

export const NS_RAYO = 'urn:xmpp:rayo:1';
export const NS_RAYO_CLIENT = 'urn:xmpp:rayo:client:1';
export const NS_RAYO_CALL = 'urn:xmpp:rayo:call:1';
export const NS_RAYO_MIXER = 'urn:xmpp:rayo:mixer:1';
export const NS_EXT = 'urn:xmpp:rayo:ext:1';
export const NS_EXT_COMPLETE = 'urn:xmpp:rayo:ext:complete:1';
export const NS_OUTPUT = 'urn:xmpp:rayo:output:1';
export const NS_OUTPUT_COMPLETE = 'urn:xmpp:rayo:output:complete:1';
export const NS_INPUT = 'urn:xmpp:rayo:input:1';
export const NS_INPUT_COMPLETE = 'urn:xmpp:rayo:input:complete:1';
export const NS_PROMPT = 'urn:xmpp:rayo:prompt:1';
export const NS_RECORD = 'urn:xmpp:rayo:record:1';
export const NS_RECORD_COMPLETE = 'urn:xmpp:rayo:record:complete:1';

export { NS_STANZAS } from './errors.js';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_CAPS = 'http://jabber.org/protocol/caps';
export const NS_DELAY = 'urn:xmpp:delay';

/** Every namespace the XEP defines (Registrar Considerations). */
export const RAYO_NAMESPACES: readonly string[] = [
  NS_RAYO,
  NS_RAYO_CLIENT,
  NS_RAYO_CALL,
  NS_RAYO_MIXER,
  NS_EXT,
  NS_EXT_COMPLETE,
  NS_OUTPUT,
  NS_OUTPUT_COMPLETE,
  NS_INPUT,
  NS_INPUT_COMPLETE,
  NS_PROMPT,
  NS_RECORD,
  NS_RECORD_COMPLETE,
];

export function isRayoNamespace(ns: string | undefined): boolean {
  return ns !== undefined && RAYO_NAMESPACES.includes(ns);
}

/** Prefix → namespace in scope ('' is the default namespace). */
export type NsScope = ReadonlyMap<string, string>;

export const EMPTY_SCOPE: NsScope = new Map();

/** An element with its namespace resolved: local name, namespace, and the scope for its children. */
export interface Resolved {
  readonly element: XmlElement;
  readonly local: string;
  readonly ns: string;
  readonly scope: NsScope;
}

/**
 * Resolves an element's namespace within the scope of its parent. A prefix that is not
 * declared leaves the namespace empty (never a Rayo one).
 */
export function resolve(element: XmlElement, parentScope: NsScope = EMPTY_SCOPE): Resolved {
  let scope = parentScope;
  for (const key of Object.keys(element.attrs)) {
    if (key === 'xmlns' || key.startsWith('xmlns:')) {
      if (scope === parentScope) scope = new Map(parentScope);
      (scope as Map<string, string>).set(key === 'xmlns' ? '' : key.slice(6), element.attrs[key]!);
    }
  }
  const colon = element.name.indexOf(':');
  const prefix = colon >= 0 ? element.name.slice(0, colon) : '';
  const local = colon >= 0 ? element.name.slice(colon + 1) : element.name;
  return { element, local, ns: scope.get(prefix) ?? '', scope };
}

/** The child elements of a resolved element, resolved. */
export function childrenOf(parent: Resolved): Resolved[] {
  return parent.element.elements().map((child) => resolve(child, parent.scope));
}

/** Thrown inside the parsers only, caught at their entry points (which never throw). */
export class RayoFailure extends Error {
  constructor(readonly error: RayoError) {
    super(error.text);
  }
}

export function fail(error: RayoError): never {
  throw new RayoFailure(error);
}

/** The longest text value of an attribute that is a name, a token or a URI (a document body is another matter). */
export const MAX_ATTRIBUTE_CHARS = 2048;
/** The largest duration the server accepts, in ms (about 24.8 days: what a Node timer can hold). */
export const MAX_DURATION_MS = 2_147_483_647;

/**
 * Reads the attributes of one element: each read marks the attribute known; `finish()`
 * refuses any unknown one (a server MUST NOT silently ignore an instruction). Namespace
 * declarations and prefixed attributes (`xml:lang`) are not Rayo's and are let through.
 */
export class Attrs {
  private readonly known = new Set<string>();

  constructor(
    private readonly element: XmlElement,
    /** How the element is named in error texts: `<output>`. */
    readonly label: string,
  ) {}

  /** The raw value (undefined when absent), checked against the length limit. */
  raw(name: string): string | undefined {
    this.known.add(name);
    const value = this.element.attrs[name];
    if (value !== undefined && value.length > MAX_ATTRIBUTE_CHARS) {
      fail(badRequest(`the ${name} attribute of ${this.label} is longer than ${MAX_ATTRIBUTE_CHARS} characters`));
    }
    return value;
  }

  string(name: string): string | undefined {
    return this.raw(name);
  }

  /** A value that may be longer than a name or URI (a header value): its limit is the caller's. */
  long(name: string): string | undefined {
    this.known.add(name);
    return this.element.attrs[name];
  }

  required(name: string): string {
    const value = this.raw(name);
    if (value === undefined) fail(badRequest(`${this.label} needs a ${name} attribute`));
    if (value.trim() === '') fail(badRequest(`the ${name} attribute of ${this.label} is empty`));
    return value;
  }

  /** A token: no white space inside (XSD token after collapsing); empty counts as absent. */
  token(name: string): string | undefined {
    const value = this.raw(name)?.trim();
    if (value === undefined || value === '') return undefined;
    if (/\s/.test(value)) fail(badRequest(`the ${name} attribute of ${this.label} must be a single token, not ${quote(value)}`));
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.trim();
    if (value === undefined) return fallback;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    return fail(badRequest(`the ${name} attribute of ${this.label} must be true or false, not ${quote(value)}`));
  }

  /** One of a list of values (XSD token enumeration). */
  oneOf<T extends string>(name: string, values: readonly T[], fallback: T): T;
  oneOf<T extends string>(name: string, values: readonly T[], fallback?: undefined): T | undefined;
  oneOf<T extends string>(name: string, values: readonly T[], fallback?: T): T | undefined {
    const value = this.raw(name)?.trim();
    if (value === undefined) return fallback;
    if ((values as readonly string[]).includes(value)) return value as T;
    return fail(badRequest(`the ${name} attribute of ${this.label} must be one of ${values.join(', ')}, not ${quote(value)}`));
  }

  /**
   * An integer (XSD long as the XEP's durationType and timeoutType are): `min` is the
   * smallest valid value (-1 for a timeout, 0 for a duration); larger than `max` is an
   * option value the server does not implement.
   */
  integer(name: string, fallback: number, min: number, max: number = MAX_DURATION_MS, unit = ' ms'): number {
    const value = this.raw(name)?.trim();
    if (value === undefined) return fallback;
    if (!/^[+-]?\d+$/.test(value)) fail(badRequest(`the ${name} attribute of ${this.label} must be an integer, not ${quote(value)}`));
    const n = Number(value);
    if (n < min) {
      const what = min === -1 ? 'a number of milliseconds or -1 (no limit)' : min === 0 ? 'zero or more' : `at least ${min}`;
      fail(badRequest(`the ${name} attribute of ${this.label} must be ${what}, not ${quote(value)}`));
    }
    if (n > max) fail(unsupportedOption(`the ${name} attribute of ${this.label} is larger than this server supports (${max}${unit})`));
    return n;
  }

  /** A decimal between 0 and 1 (the XEP's fractionDecimalType). */
  fraction(name: string, fallback: number): number {
    const value = this.raw(name)?.trim();
    if (value === undefined) return fallback;
    if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(value)) fail(badRequest(`the ${name} attribute of ${this.label} must be a decimal number, not ${quote(value)}`));
    const n = Number(value);
    if (n < 0 || n > 1) fail(badRequest(`the ${name} attribute of ${this.label} must be between 0 and 1, not ${quote(value)}`));
    return n;
  }

  /** Refuses attributes that were not read. */
  finish(): void {
    for (const key of Object.keys(this.element.attrs)) {
      if (this.known.has(key) || key === 'xmlns' || key.includes(':')) continue;
      fail(unsupportedOption(`${this.label} has an attribute this server does not know: ${quote(key)}`));
    }
  }
}

/** A value quoted for an error text, cut when long. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}
