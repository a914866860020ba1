/**
 * The protocol-neutral model of a vCard (RFC 2426 / RFC 6350) and of the seed system's
 * vCardGroup: what the XML presentation (xml.ts) and the text forms (text.ts) convert
 * through. Property and parameter names are kept in upper case; values unescaped.
 */

export interface VParam {
  /** Upper-case parameter name (never TYPE, VALUE or ENCODING: those are modelled). */
  name: string;
  values: string[];
}

export type VValue =
  /** One or more text values (several: a comma-separated list such as CATEGORIES). */
  | { kind: 'text'; values: string[] }
  /** `;`-separated components (N, ADR, ORG, GEO in 3.0…), each with `,`-separated values. */
  | { kind: 'structured'; components: string[][] }
  /** Inline binary data (3.0 ENCODING=b, 4.0 `data:` URIs), base64 without white space. */
  | { kind: 'binary'; base64: string; mediaType?: string }
  /** A reference (PHOTO;VALUE=uri:…, a 4.0 TEL tel: URI…). */
  | { kind: 'uri'; uri: string };

export interface VProperty {
  /** Upper-case property name. */
  name: string;
  /** The property group (`item1` of `item1.EMAIL`). */
  group?: string;
  /** TYPE parameter values, as written. */
  types: string[];
  params: VParam[];
  value: VValue;
}

export interface VCard {
  kind: 'vcard';
  /** The version the card was read in (3.0 when it came from XML). */
  version: string;
  /** Every property but VERSION (and BEGIN/END). */
  properties: VProperty[];
}

/** A vCardGroup (text/x-vgroup): NAME, MEMBER properties (with a CN parameter), UID, others. */
export interface VGroup {
  kind: 'vgroup';
  properties: VProperty[];
}

export type VObject = VCard | VGroup;

/** Thrown for malformed vCard data in either presentation; the text is the reason. */
export class VCardFormatError extends Error {}

/** The text shown for the "illegal vCard data format" error clients know. */
export const ILLEGAL_VCARD = 'illegal vCard data format';

export function textProperty(name: string, text: string): VProperty {
  return { name, types: [], params: [], value: { kind: 'text', values: [text] } };
}

/** The first text of a property's value (the first component's first value when structured). */
export function valueText(value: VValue): string {
  switch (value.kind) {
    case 'text':
      return value.values.join(',');
    case 'structured':
      return value.components.map((c) => c.join(',')).join(';');
    case 'binary':
      return value.base64;
    case 'uri':
      return value.uri;
  }
}

export function findProperty(object: VObject, name: string): VProperty | undefined {
  return object.properties.find((p) => p.name === name);
}

export function propertyText(object: VObject, name: string): string | undefined {
  const p = findProperty(object, name);
  return p === undefined ? undefined : valueText(p.value).trim();
}

/** `Mr. bjorn A Jensen II` from an N property. */
function nameFromN(n: VProperty | undefined): string {
  if (!n || n.value.kind !== 'structured') return '';
  const c = n.value.components.map((values) => values.join(' ').trim());
  const [family, given, middle, prefix, suffix] = [c[0] ?? '', c[1] ?? '', c[2] ?? '', c[3] ?? '', c[4] ?? ''];
  return [prefix, given, middle, family, suffix].filter((s) => s !== '').join(' ');
}

/**
 * The formatted name of a card: FN, else NAME, else one composed from N, else ORG, else
 * the first e-mail address or telephone number.
 */
export function formattedName(card: VCard): string {
  const fn = propertyText(card, 'FN');
  if (fn) return fn;
  const name = propertyText(card, 'NAME');
  if (name) return name;
  const fromN = nameFromN(findProperty(card, 'N'));
  if (fromN) return fromN;
  const org = findProperty(card, 'ORG');
  if (org && org.value.kind === 'structured' && org.value.components[0]?.[0]) return org.value.components[0][0];
  if (org && org.value.kind === 'text' && org.value.values[0]) return org.value.values[0];
  return emailAddresses(card)[0] ?? phoneNumbers(card)[0]?.number ?? '';
}

/** The "File as" name of a card (X-FILE-AS, else its formatted name). */
export function fileAs(card: VCard): string {
  return propertyText(card, 'X-FILE-AS') || formattedName(card);
}

export function emailAddresses(card: VCard): string[] {
  return card.properties
    .filter((p) => p.name === 'EMAIL')
    .map((p) => valueText(p.value).replace(/^mailto:/i, '').trim())
    .filter((s) => s !== '');
}

const MINOR_TEL_TYPES = new Set(['VOICE', 'PREF', 'MSG', 'INTERNET']);

export function phoneNumbers(card: VCard): { number: string; type?: string }[] {
  const out: { number: string; type?: string }[] = [];
  for (const p of card.properties) {
    if (p.name !== 'TEL') continue;
    const number = valueText(p.value).replace(/^tel:/i, '').trim();
    if (!number) continue;
    const type = p.types.find((t) => !MINOR_TEL_TYPES.has(t.toUpperCase())) ?? p.types[0];
    out.push(type ? { number, type: type.toUpperCase() } : { number });
  }
  return out;
}

/** The members of a group: address and optional CN. */
export function groupMembers(group: VGroup): { address: string; name?: string }[] {
  return group.properties
    .filter((p) => p.name === 'MEMBER')
    .map((p) => {
      const cn = p.params.find((q) => q.name === 'CN')?.values.join(',');
      const address = valueText(p.value).replace(/^mailto:/i, '').trim();
      return cn ? { address, name: cn } : { address };
    });
}
