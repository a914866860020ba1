/**
 * The XIMSS XML presentation of vCard and vCardGroup objects ("XML Data Formats", the
 * contactAppend example, and what clients write — vcard-temp style) ↔ the model.
 *
 * - One element per property, named after it (`FN`, `EMAIL`, `X-FILE-AS`…); a property
 *   group is the `group` attribute; other parameters are upper-case attributes (`CN`, `PREF`).
 * - TYPE values are empty child elements, as written (`<WORK/>`, `<INTERNET/>`, `<x509/>`);
 *   one that is not an XML name is a `<TYPE>value</TYPE>` child.
 * - Values: N has FAMILY GIVEN MIDDLE PREFIX SUFFIX, ADR POBOX EXTADD STREET LOCALITY
 *   REGION PCODE CTRY, ORG ORGNAME and ORGUNIT…, GEO LAT LON (a component with several
 *   values repeats its element); EMAIL a USERID, TEL a NUMBER; PHOTO, LOGO, SOUND and KEY a
 *   BINVAL (base64; its media type a `<TYPE>image/jpeg</TYPE>`) or an EXTVAL (a URI);
 *   CATEGORIES one KEYWORD per value; other properties their text, or VALUE children when
 *   they have TYPE children or several values. Other structured values: COMPONENT children.
 * - vCardGroup: NAME, MEMBER elements (`<MEMBER CN="Name">address</MEMBER>`), others as above.
 * Input is taken as clients write it (values wrapped in VALUE, LABEL with LINE children).
 */
import { XmlElement, xmlSafe } from '../../xml/element.js';
import { uriByDefault } from './text.js';
import { VCardFormatError, type VObject, type VParam, type VProperty, type VValue } from './model.js';

const STRUCTURE: Record<string, string[]> = {
  N: ['FAMILY', 'GIVEN', 'MIDDLE', 'PREFIX', 'SUFFIX'],
  ADR: ['POBOX', 'EXTADD', 'STREET', 'LOCALITY', 'REGION', 'PCODE', 'CTRY'],
  GEO: ['LAT', 'LON'],
};
const VALUE_ELEMENT: Record<string, string> = { EMAIL: 'USERID', TEL: 'NUMBER', CATEGORIES: 'KEYWORD' };
const MEDIA = new Set(['PHOTO', 'LOGO', 'SOUND', 'KEY']);
const XML_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const PROPERTY_NAME = /^[A-Za-z][A-Za-z0-9-]*$/;
/** Child elements that carry values rather than TYPE flags. */
const VALUE_CHILDREN = new Set(['VALUE', 'USERID', 'NUMBER', 'KEYWORD', 'BINVAL', 'EXTVAL', 'CRED', 'LINE', 'TYPE', 'COMPONENT', 'ORGNAME', 'ORGUNIT', 'PHONETIC']);
/** Most properties one object may have, and most values/children one property may have. */
const MAX_PROPERTIES = 2000;
const MAX_CHILDREN = 200;

// -----------------------------------------------------------------------------------------
// Model -> XML

function valueChildren(parent: XmlElement, name: string, values: readonly string[]): void {
  for (const v of values) parent.add(name, undefined, xmlSafe(v));
}

function propertyElement(p: VProperty): XmlElement {
  const attrs: Record<string, string> = {};
  if (p.group) attrs.group = p.group;
  for (const param of p.params) if (XML_NAME.test(param.name) && param.name !== 'group') attrs[param.name] = xmlSafe(param.values.join(','));
  // A reference where text is the default (a 4.0 TEL tel: URI) says so, as VALUE=uri does.
  if (p.value.kind === 'uri' && !MEDIA.has(p.name) && !uriByDefault(p.name)) attrs.VALUE = 'uri';
  const e = new XmlElement(p.name, attrs);
  for (const t of p.types) {
    if (XML_NAME.test(t) && !VALUE_CHILDREN.has(t.toUpperCase())) e.add(t);
    else e.add('TYPE', undefined, xmlSafe(t));
  }
  const v = p.value;
  const structure = STRUCTURE[p.name];
  if (v.kind === 'binary') {
    if (v.mediaType) e.add('TYPE', undefined, xmlSafe(v.mediaType));
    e.add('BINVAL', undefined, v.base64);
  } else if (v.kind === 'uri') {
    if (MEDIA.has(p.name)) e.add('EXTVAL', undefined, xmlSafe(v.uri));
    else if (VALUE_ELEMENT[p.name]) e.add(VALUE_ELEMENT[p.name]!, undefined, xmlSafe(v.uri));
    else if (p.types.length > 0) e.add('VALUE', undefined, xmlSafe(v.uri));
    else e.append(xmlSafe(v.uri));
  } else if (v.kind === 'structured') {
    if (structure) {
      v.components.forEach((values, i) => {
        const name = structure[i];
        if (name) valueChildren(e, name, values.filter((s) => s !== ''));
        else valueChildren(e, 'COMPONENT', values);
      });
    } else if (p.name === 'ORG') {
      v.components.forEach((values, i) => valueChildren(e, i === 0 ? 'ORGNAME' : 'ORGUNIT', i === 0 ? values : [values.join(',')]));
    } else {
      for (const values of v.components) e.add('COMPONENT', undefined, xmlSafe(values.join(',')));
    }
  } else {
    const valueName = VALUE_ELEMENT[p.name];
    if (valueName) valueChildren(e, valueName, v.values);
    else if (p.name === 'ORG') valueChildren(e, 'ORGNAME', v.values);
    else if (MEDIA.has(p.name)) valueChildren(e, 'EXTVAL', v.values);
    else if (structure) valueChildren(e, structure[0]!, v.values);
    else if (p.types.length > 0 || v.values.length > 1) valueChildren(e, 'VALUE', v.values);
    else if (v.values[0]) e.append(xmlSafe(v.values[0]));
  }
  return e;
}

/** The vCard or vCardGroup element of an object. */
export function toXml(object: VObject): XmlElement {
  const root = new XmlElement(object.kind === 'vcard' ? 'vCard' : 'vCardGroup');
  for (const p of object.properties) root.append(propertyElement(p));
  return root;
}

// -----------------------------------------------------------------------------------------
// XML -> model

function fail(message: string): never {
  throw new VCardFormatError(message);
}

/** The text of an element, which must have no child elements. */
function leafText(e: XmlElement, where: string): string {
  if (e.elements().length > 0) fail(`${where}: <${e.elements()[0]!.name}> is not expected in <${e.name}>`);
  return e.text();
}

function propertyFromXml(e: XmlElement): VProperty {
  const name = e.name.toUpperCase();
  if (!PROPERTY_NAME.test(e.name)) fail(`invalid property element <${e.name}>`);
  const children = e.elements();
  if (children.length > MAX_CHILDREN) fail(`${name}: too many elements`);
  const property: VProperty = { name, types: [], params: [], value: { kind: 'text', values: [''] } };
  for (const [key, value] of Object.entries(e.attrs)) {
    if (key === 'group') {
      if (!/^[A-Za-z0-9-]+$/.test(value)) fail(`${name}: invalid group "${value}"`);
      property.group = value;
    } else if (/^[A-Za-z0-9-]+$/.test(key) && key !== 'xmlns') {
      const upper = key.toUpperCase();
      if (upper === 'TYPE') property.types.push(...value.split(',').filter((v) => v !== ''));
      else if (upper !== 'VALUE' && upper !== 'ENCODING' && upper !== 'CHARSET') property.params.push({ name: upper, values: [value] } satisfies VParam);
    }
  }
  const structure = STRUCTURE[name];
  const byName = new Map<string, XmlElement[]>();
  for (const child of children) {
    const childName = child.name.toUpperCase();
    const isFlag = child.children.length === 0 && !VALUE_CHILDREN.has(childName) && !(structure?.includes(childName) ?? false);
    if (isFlag) {
      if (!XML_NAME.test(child.name)) fail(`${name}: invalid type element <${child.name}>`);
      property.types.push(child.name);
      continue;
    }
    let list = byName.get(childName);
    if (!list) byName.set(childName, (list = []));
    list.push(child);
  }
  // Values as clients write them, pretty-printed or not: white space around a value is layout.
  const texts = (n: string): string[] => (byName.get(n) ?? []).map((c) => leafText(c, name).trim());
  // The media type of a BINVAL/EXTVAL (XEP-0054's TYPE), or TYPE values spelled as elements.
  const typeTexts = texts('TYPE').map((t) => t.trim()).filter((t) => t !== '');
  const binval = byName.get('BINVAL');
  const extval = byName.get('EXTVAL');
  const known = new Set(['TYPE']);
  let value: VValue;
  const isUri = Object.entries(e.attrs).some(([k, v]) => k.toUpperCase() === 'VALUE' && v.toLowerCase() === 'uri');
  if (binval) {
    known.add('BINVAL');
    const base64 = texts('BINVAL').join('').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 === 1) fail(`${name}: invalid base64 data in BINVAL`);
    const mediaType = typeTexts.find((t) => t.includes('/'));
    property.types.push(...typeTexts.filter((t) => !t.includes('/')));
    value = mediaType ? { kind: 'binary', base64, mediaType: mediaType.toLowerCase() } : { kind: 'binary', base64 };
  } else if (extval) {
    known.add('EXTVAL');
    property.types.push(...typeTexts);
    value = { kind: 'uri', uri: texts('EXTVAL').join('').trim() };
  } else if (structure && structure.some((s) => byName.has(s))) {
    property.types.push(...typeTexts);
    for (const s of structure) known.add(s);
    const components = structure.map((s) => texts(s));
    while (components.length > 0 && components[components.length - 1]!.length === 0) components.pop();
    value = { kind: 'structured', components: components.map((c) => (c.length === 0 ? [''] : c)) };
  } else if (byName.has('ORGNAME') || byName.has('ORGUNIT')) {
    property.types.push(...typeTexts);
    known.add('ORGNAME').add('ORGUNIT');
    value = { kind: 'structured', components: [[texts('ORGNAME').join(' ')], ...texts('ORGUNIT').map((u) => [u])] };
  } else if (byName.has('COMPONENT')) {
    property.types.push(...typeTexts);
    known.add('COMPONENT');
    value = { kind: 'structured', components: texts('COMPONENT').map((c) => c.split(',')) };
  } else {
    property.types.push(...typeTexts);
    let values: string[] = [];
    for (const n of ['VALUE', 'USERID', 'NUMBER', 'KEYWORD', 'CRED']) {
      if (byName.has(n)) {
        known.add(n);
        values.push(...texts(n));
      }
    }
    if (byName.has('LINE')) {
      known.add('LINE');
      values.push(texts('LINE').join('\n'));
    }
    if (values.length === 0) values = [e.text().trim()];
    else if (e.text().trim() !== '') fail(`${name}: both text and value elements`);
    if (name !== 'CATEGORIES' && values.length > 1 && !byName.has('VALUE')) values = [values.join(',')];
    value = isUri ? { kind: 'uri', uri: values.join(',').trim() } : { kind: 'text', values };
  }
  for (const key of byName.keys()) if (!known.has(key)) fail(`${name}: unexpected element <${key}>`);
  property.value = value;
  return property;
}

/** The object an XML vCard or vCardGroup element presents (bad XML is a VCardFormatError). */
export function fromXml(element: XmlElement): VObject {
  if (element.name !== 'vCard' && element.name !== 'vCardGroup') fail(`<${element.name}> is not a vCard or vCardGroup element`);
  const properties: VProperty[] = [];
  const children = element.elements();
  if (children.length > MAX_PROPERTIES) fail('too many vCard properties');
  if (element.text().trim() !== '') fail(`text directly inside <${element.name}>`);
  for (const child of children) {
    if (child.name.toUpperCase() === 'VERSION') continue;
    properties.push(propertyFromXml(child));
  }
  return element.name === 'vCard' ? { kind: 'vcard', version: '3.0', properties } : { kind: 'vgroup', properties };
}
