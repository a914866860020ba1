/**
 * The XIMSS XML presentation of iCalendar (spec example 027, "calendarPublish") ↔ RFC 5545
 * text, both ways, keeping every property, parameter and value.
 *
 * The XML form:
 * - `<iCalendar xmlns="urn:ietf:params:xml:ns:xcal">` holds one `<vCalendar>` per VCALENDAR.
 *   The VCALENDAR's own properties are lower-case attributes of `vCalendar` (`method`,
 *   `prodid`, `version`, `calscale`, `x-wr-calname`…); one with parameters, or repeated,
 *   is a property element inside `vCalendar` instead (attributes cannot carry either).
 * - Components are lower-case elements (`vevent`, `vtimezone` › `standard`, `valarm`…),
 *   their properties first, then their components.
 * - A property is a lower-case element named after it (`dtstart`, `last-modified`, `x-foo`);
 *   its parameters are attributes: TZID, VALUE and RANGE in lower case as the example
 *   writes `tzid`, the others in upper case (`CN`, `PARTSTAT`, `X-FOO`); any case is read.
 *   VALUE is written where the value type is not the property's default (`value="DATE"`,
 *   `value="PERIOD"`); without it a date where a DATE-TIME is expected is read as a DATE.
 *   A multi-valued parameter (MEMBER, DELEGATED-TO, DELEGATED-FROM) is one attribute with
 *   the values separated by commas (a value holding a comma in double quotes).
 * - The value is the element's text in its iCalendar text form: dates `20060515T100000`,
 *   `20060515`, rules `FREQ=WEEKLY;BYDAY=MO,TH`, several dates or periods comma-separated.
 *   TEXT values are unescaped (`a, b; c` with a real line break), and so are properties
 *   of no known type (X- properties: TEXT is their default, RFC 5545 3.8.8.2). The
 *   multi-valued TEXT properties (CATEGORIES, RESOURCES) keep their comma-separated form,
 *   a comma or backslash inside one value escaped with a backslash as in text
 *   (`a\,b,c` is the two values `a,b` and `c`), so that the list survives. REQUEST-STATUS
 *   keeps its text form (`;`-separated, escaped), for the same reason.
 * - `busystatus` (BUSY, TENTATIVE, UNAVAILABLE, FREE), CommuniGate's element for the busy
 *   status, is the text property X-MICROSOFT-CDO-BUSYSTATUS that Outlook and others read
 *   (UNAVAILABLE ↔ its OOF). `recurrenceId`, as the spec's prose calls RECURRENCE-ID, is
 *   read as `recurrence-id`.
 *
 * The text is read by ical.js (content lines, parameters with quoting and RFC 6868 `^`
 * escapes, value types, TEXT unescaping, multi-value splitting). Before it, one pass here
 * checks what ical.js lets through: the BEGIN/END structure (it ignores a mismatched END),
 * the limits, property names, control characters; and each value that is not TEXT is taken
 * as written and checked against its type (ical.js turns a malformed date or number into a
 * different value without a word). Text is written here: parameters quoted where needed,
 * lines folded at 75 octets without splitting UTF-8 (contacts' foldLine), CRLF.
 *
 * TZID values are kept as written (`NorthAmerica/Pacific` stays a CommuniGate name here;
 * resolving zones is the calendar's business, src/services/time-zones.ts).
 *
 * Known normalizations, the same meaning for every reader: a TEXT value (an X- property's
 * too) written with bare `,`/`;` or `\N` comes back escaped (`\,`, `\;`, `\n`), a backslash
 * that starts no escape comes back doubled; white space around a value of another type is
 * dropped; a DATE given without VALUE=DATE gets it, a VALUE naming the default type is
 * dropped. ical.js keeps one value of a parameter given twice, and the first of several
 * quoted values of a parameter that is not multi-valued (`X-P="a","b"`).
 */
import ICAL from 'ical.js';
import { XmlElement, xmlSafe } from '../../xml/element.js';
import { foldLine, valueColon } from '../contacts/text.js';

/** Malformed iCalendar in either presentation; the message names the line or the element. */
export class ICalendarFormatError extends Error {
  override name = 'ICalendarFormatError';
}

export const XCAL_NAMESPACE = 'urn:ietf:params:xml:ns:xcal';

/** Limits against hostile input, in either direction. */
export const ICALENDAR_LIMITS = Object.freeze({
  /** Properties in one text or element, all components together. */
  properties: 10_000,
  /** Nesting of components: VCALENDAR › VEVENT › VALARM is 3. */
  depth: 8,
  /** Characters of one text. */
  textChars: 32 * 1024 * 1024,
});

// -----------------------------------------------------------------------------------------
// What ical.js knows about properties, parameters and values

interface PropertyDesign {
  defaultType?: string;
  multiValue?: string;
  structuredValue?: string;
  detectType?: (value: string) => string;
}
interface ParamDesign {
  multiValue?: string;
  valueType?: string;
}
interface TextType {
  fromICAL(value: string): string;
  toICAL(value: string): string;
}
const design = ICAL.design.icalendar as unknown as {
  property: Record<string, PropertyDesign | undefined>;
  param: Record<string, ParamDesign | undefined>;
  value: Record<string, unknown>;
};
const textType = design.value['text'] as TextType;

/** Own keys only: a name such as `constructor` must not find Object's. */
function has(table: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(table, key);
}

function propertyDesign(lowerName: string): PropertyDesign | undefined {
  return has(design.property, lowerName) ? design.property[lowerName] : undefined;
}

function paramDesign(lowerName: string): ParamDesign | undefined {
  return has(design.param, lowerName) ? design.param[lowerName] : undefined;
}

/** A value type ical.js knows (its values are checked here); others are kept as written. */
function isKnownType(type: string): boolean {
  return has(design.value, type);
}

/**
 * Property, parameter and component names: RFC 5545's iana-token / x-name, beginning with a
 * letter as every registered name does, so that each is an XML name too.
 */
const NAME = /^[A-Za-z][A-Za-z0-9-]*$/;
/** Controls a value may not hold (tab is allowed; line breaks only where TEXT can escape them). */
const CONTROL = /[\u0000-\u0008\u000A-\u001F\u007F]/;
const CONTROL_BUT_NEWLINE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;
/** Parameters the example writes in lower case; the others are upper case, as in text. */
const LOWER_CASE_PARAMS = new Set(['tzid', 'value', 'range']);
/** Parameters whose values RFC 5545 always puts in double quotes (URIs, cal-addresses). */
const QUOTED_PARAMS = new Set(['ALTREP', 'DIR', 'SENT-BY', 'MEMBER', 'DELEGATED-TO', 'DELEGATED-FROM']);
/** Component elements; any other element with child elements is taken as a component too. */
const COMPONENTS = new Set([
  'vevent', 'vtodo', 'vjournal', 'vfreebusy', 'vtimezone', 'standard', 'daylight', 'valarm',
  'vavailability', 'available', 'vpoll', 'vvoter', 'participant', 'vlocation', 'vresource',
]);

const BUSY_STATUS_PROPERTY = 'X-MICROSOFT-CDO-BUSYSTATUS';
const BUSY_STATUS_ELEMENT = 'busystatus';

function fail(message: string): never {
  throw new ICalendarFormatError(message);
}

function excerpt(text: string): string {
  return JSON.stringify(text.length > 40 ? text.slice(0, 40) + '…' : text);
}

// -----------------------------------------------------------------------------------------
// Values

const ITEM_FORMS: Record<string, RegExp> = {
  date: /^\d{8}$/,
  'date-time': /^\d{8}T\d{6}Z?$/,
  time: /^\d{6}Z?$/,
  'utc-offset': /^[+-]\d{4}(\d{2})?$/,
  duration: /^[+-]?P(?=\d|T\d)(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$/,
  integer: /^[+-]?\d{1,10}$/,
  float: /^[+-]?\d{1,20}(\.\d{1,20})?$/,
  boolean: /^(TRUE|FALSE)$/i,
  binary: /^[A-Za-z0-9+/]*={0,2}$/,
};

/** The items of a value: comma-separated for multi-valued properties, `;`-separated when structured. */
function valueItems(text: string, property: PropertyDesign | undefined): string[] {
  const items = property?.multiValue ? text.split(property.multiValue) : [text];
  return property?.structuredValue ? items.flatMap((item) => item.split(property.structuredValue!)) : items;
}

function isDateList(text: string, property: PropertyDesign | undefined): boolean {
  return text !== '' && valueItems(text, property).every((item) => ITEM_FORMS.date!.test(item));
}

/** Checks the text form of a value of a type other than TEXT; `where` names it in the error. */
function checkValue(type: string, text: string, property: PropertyDesign | undefined, where: string): void {
  if (CONTROL.test(text)) fail(`${where}: a control character in the value`);
  const bad = (): never => fail(`${where}: invalid ${type.toUpperCase()} value ${excerpt(text)}`);
  const form = has(ITEM_FORMS, type) ? ITEM_FORMS[type] : undefined;
  if (form) {
    for (const item of valueItems(text, property)) if (!form.test(item)) bad();
  } else if (type === 'period') {
    for (const item of valueItems(text, property)) {
      const [start, end, extra] = item.split('/');
      if (extra !== undefined || !ITEM_FORMS['date-time']!.test(start ?? '')) bad();
      if (!ITEM_FORMS['date-time']!.test(end ?? '') && !ITEM_FORMS.duration!.test(end ?? '')) bad();
    }
  } else if (type === 'recur') {
    if (!/^[A-Za-z0-9=;,+:-]+$/.test(text) || !/(^|;)FREQ=/i.test(text)) bad();
    try {
      ICAL.Recur.fromString(text);
    } catch (err) {
      fail(`${where}: invalid RECUR value ${excerpt(text)} (${err instanceof Error ? err.message : String(err)})`);
    }
  }
}

/** One value of a multi-valued TEXT property in its XML list form: `,` and `\` escaped. */
function listItem(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

/**
 * The items of a comma-separated list of escaped TEXT values, each still escaped. (ical.js
 * takes the comma of `a\\,b` for an escaped one: a value ending in a backslash.)
 */
function splitEscapedList(text: string): string[] {
  const items: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) {
      current += c + text[++i];
    } else if (c === ',') {
      items.push(current);
      current = '';
    } else current += c;
  }
  items.push(current);
  return items;
}

/** The XML list form (`a\,b,c`) as iCalendar text. */
function listToText(text: string): string {
  return splitEscapedList(text).map((item) => escapeText(textType.fromICAL(item))).join(',');
}

function escapeText(text: string): string {
  return textType.toICAL(text.replace(/\r\n?/g, '\n'));
}

// -----------------------------------------------------------------------------------------
// Text -> XML

interface RawProperty {
  /** 1-based line number where the (folded) content line begins. */
  line: number;
  name: string;
  /** The value as written, after the first colon outside of quotes. */
  value: string;
  /** The whole content line, unfolded. */
  text: string;
}

interface RawComponent {
  name: string;
  line: number;
  properties: RawProperty[];
  components: RawComponent[];
}

/**
 * The structure of `text` as written, checked: content lines unfolded, every line a
 * property (name, colon) inside BEGIN:VCALENDAR … END:VCALENDAR, each END closing the last
 * BEGIN, within the limits. ical.js reads the same text afterwards; this keeps each raw
 * value and line number for it.
 */
function scanText(text: string): RawComponent[] {
  if (text.length > ICALENDAR_LIMITS.textChars) fail(`the text is longer than ${ICALENDAR_LIMITS.textChars} characters`);
  const physical = text.split(/\r?\n/);
  const calendars: RawComponent[] = [];
  const stack: RawComponent[] = [];
  let properties = 0;
  for (let i = 0; i < physical.length; i++) {
    const lineNumber = i + 1;
    let line = physical[i]!;
    if (line === '') continue;
    if (line[0] === ' ' || line[0] === '\t') {
      if (line.trim() === '') continue;
      fail(`line ${lineNumber}: a continuation line with no content line before it`);
    }
    while (i + 1 < physical.length && (physical[i + 1]![0] === ' ' || physical[i + 1]![0] === '\t')) line += physical[++i]!.slice(1);
    if (CONTROL.test(line)) fail(`line ${lineNumber}: a control character`);
    const colon = valueColon(line);
    if (colon < 0) fail(`line ${lineNumber}: no ":" in ${excerpt(line)}`);
    const name = /^[^;:]*/.exec(line)![0];
    if (!NAME.test(name)) fail(`line ${lineNumber}: invalid property name in ${excerpt(line)}`);
    const upper = name.toUpperCase();
    const value = line.slice(colon + 1);
    const top = stack[stack.length - 1];
    if ((upper === 'BEGIN' || upper === 'END') && colon !== name.length) fail(`line ${lineNumber}: ${upper} with parameters`);
    if (upper === 'BEGIN') {
      const component = value.trim().toUpperCase();
      if (!NAME.test(component)) fail(`line ${lineNumber}: invalid component name in ${excerpt(line)}`);
      if (!top && component !== 'VCALENDAR') fail(`line ${lineNumber}: BEGIN:${component} outside of a VCALENDAR`);
      if (stack.length >= ICALENDAR_LIMITS.depth) fail(`line ${lineNumber}: components nested deeper than ${ICALENDAR_LIMITS.depth}`);
      const raw: RawComponent = { name: component, line: lineNumber, properties: [], components: [] };
      if (top) top.components.push(raw);
      else calendars.push(raw);
      stack.push(raw);
    } else if (upper === 'END') {
      const component = value.trim().toUpperCase();
      if (!top) fail(`line ${lineNumber}: END:${component} without a BEGIN`);
      if (component !== top.name) fail(`line ${lineNumber}: END:${component} where BEGIN:${top.name} of line ${top.line} ends`);
      stack.pop();
    } else {
      if (!top) fail(`line ${lineNumber}: text outside of a VCALENDAR: ${excerpt(line)}`);
      if (++properties > ICALENDAR_LIMITS.properties) fail(`line ${lineNumber}: more than ${ICALENDAR_LIMITS.properties} properties`);
      top.properties.push({ line: lineNumber, name: upper, value, text: line });
    }
  }
  const open = stack[stack.length - 1];
  if (open) fail(`line ${open.line}: BEGIN:${open.name} is never ended`);
  if (calendars.length === 0) fail('no VCALENDAR in the text');
  return calendars;
}

type JCalParams = Record<string, string | string[]>;
type JCalProperty = [string, JCalParams, string, ...unknown[]];
type JCalComponent = [string, JCalProperty[], JCalComponent[]];

function paramAttrName(lowerName: string): string {
  return LOWER_CASE_PARAMS.has(lowerName) ? lowerName : lowerName.toUpperCase();
}

function paramAttrValue(value: string | string[]): string {
  if (!Array.isArray(value)) return xmlSafe(String(value));
  return xmlSafe(value.map((v) => (v.includes(',') ? `"${v}"` : v)).join(','));
}

/** A property as the XML form has it: element name, attributes, text. */
interface XmlProperty {
  name: string;
  attrs: Record<string, string>;
  text: string;
}

function propertyToXml(property: JCalProperty, raw: RawProperty): XmlProperty {
  const [name, params, type, ...values] = property;
  const where = `line ${raw.line} (${raw.name})`;
  // ical.js's reading of the line must be the one checked here.
  if (name !== raw.name.toLowerCase()) fail(`line ${raw.line}: ${raw.name} could not be read`);
  if (!NAME.test(type)) fail(`${where}: invalid value type ${excerpt(type)}`);
  const known = propertyDesign(name);
  let valueType = type;
  let text: string;
  if (type === 'text') {
    if (known?.structuredValue) text = raw.value;
    else if (known?.multiValue) text = splitEscapedList(raw.value).map((v) => listItem(textType.fromICAL(v))).join(',');
    else if (values.length !== 1) text = values.map((v) => listItem(String(v))).join(',');
    else text = String(values[0]);
  } else if (type === 'unknown') {
    text = textType.fromICAL(raw.value);
  } else if (isKnownType(type)) {
    text = raw.value.trim();
    // A date where a DATE-TIME is expected, without VALUE=DATE (ical.js reads it as a broken DATE-TIME).
    if (type === 'date-time' && isDateList(text, known)) valueType = 'date';
    checkValue(valueType, text, known, where);
  } else {
    // A value type ical.js does not know (VALUE=X-…): kept as written.
    text = raw.value;
  }
  const attrs: Record<string, string> = {};
  if (valueType !== (known?.defaultType ?? 'unknown')) attrs.value = valueType.toUpperCase();
  for (const [key, value] of Object.entries(params)) {
    if (!NAME.test(key)) fail(`${where}: invalid parameter name ${excerpt(key)}`);
    attrs[paramAttrName(key)] = paramAttrValue(value);
  }
  if (name === BUSY_STATUS_PROPERTY.toLowerCase()) {
    return { name: BUSY_STATUS_ELEMENT, attrs, text: /^OOF$/i.test(text) ? 'UNAVAILABLE' : xmlSafe(text) };
  }
  return { name, attrs, text: xmlSafe(text) };
}

function propertiesOf(component: JCalComponent, raw: RawComponent): XmlProperty[] {
  const properties = component[1];
  if (properties.length !== raw.properties.length) fail(`line ${raw.line}: BEGIN:${raw.name} could not be read`);
  return properties.map((p, i) => propertyToXml(p, raw.properties[i]!));
}

function componentToXml(component: JCalComponent, raw: RawComponent): XmlElement {
  if (component[0] !== raw.name.toLowerCase()) fail(`line ${raw.line}: BEGIN:${raw.name} could not be read`);
  const element = new XmlElement(component[0].toLowerCase());
  for (const p of propertiesOf(component, raw)) element.add(p.name, p.attrs, p.text === '' ? undefined : p.text);
  element.append(...childComponents(component, raw));
  return element;
}

function childComponents(component: JCalComponent, raw: RawComponent): XmlElement[] {
  const children = component[2];
  if (children.length !== raw.components.length) fail(`line ${raw.line}: BEGIN:${raw.name} could not be read`);
  return children.map((c, i) => componentToXml(c, raw.components[i]!));
}

function calendarToXml(calendar: JCalComponent, raw: RawComponent): XmlElement {
  if (calendar[0] !== 'vcalendar') fail(`line ${raw.line}: BEGIN:VCALENDAR could not be read`);
  const vCalendar = new XmlElement('vCalendar');
  const properties = propertiesOf(calendar, raw);
  const counts = new Map<string, number>();
  for (const p of properties) counts.set(p.name, (counts.get(p.name) ?? 0) + 1);
  for (const p of properties) {
    const asAttribute = Object.keys(p.attrs).length === 0 && counts.get(p.name) === 1 && !p.name.startsWith('xmlns');
    if (asAttribute) vCalendar.attrs[p.name] = p.text;
    else vCalendar.add(p.name, p.attrs, p.text === '' ? undefined : p.text);
  }
  vCalendar.append(...childComponents(calendar, raw));
  return new XmlElement('iCalendar', { xmlns: XCAL_NAMESPACE }, [vCalendar]);
}

/** Runs a conversion so that whatever goes wrong in it is an ICalendarFormatError. */
function guarded<T>(convert: () => T): T {
  try {
    return convert();
  } catch (err) {
    if (err instanceof ICalendarFormatError) throw err;
    throw new ICalendarFormatError(`malformed iCalendar: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** `line N: ` for the first property ical.js cannot read on its own (its errors name no line), or nothing. */
function lineOfParseError(calendars: RawComponent[]): string {
  const pending = [...calendars];
  for (let component = pending.shift(); component; component = pending.shift()) {
    for (const property of component.properties) {
      try {
        ICAL.parse.property(property.text);
      } catch {
        return `line ${property.line}: `;
      }
    }
    pending.unshift(...component.components);
  }
  return '';
}

/** One `iCalendar` element per VCALENDAR of `text`. */
export function textToXcalList(text: string): XmlElement[] {
  return guarded(() => {
    const source = text.replace(/^\uFEFF/, '');
    const raw = scanText(source);
    let parsed: unknown;
    try {
      parsed = ICAL.parse(source.endsWith('\n') ? source : source + '\r\n');
    } catch (err) {
      fail(`${lineOfParseError(raw)}malformed iCalendar: ${err instanceof Error ? err.message : String(err)}`);
    }
    const calendars = (Array.isArray(parsed) && Array.isArray(parsed[0]) ? parsed : [parsed]) as JCalComponent[];
    if (calendars.length !== raw.length) fail('the calendars could not be read');
    return calendars.map((calendar, i) => calendarToXml(calendar, raw[i]!));
  });
}

/** The `iCalendar` element of a text with one VCALENDAR. */
export function textToXcal(text: string): XmlElement {
  const list = textToXcalList(text);
  if (list.length !== 1) fail(`${list.length} VCALENDARs where one is expected`);
  return list[0]!;
}

// -----------------------------------------------------------------------------------------
// XML -> text

/** RFC 6868: what a parameter value cannot hold otherwise. */
function paramEncode(value: string): string {
  return value.replace(/\^/g, '^^').replace(/"/g, "^'").replace(/\r\n|\n|\r/g, '^n');
}

function quoteParam(value: string, always: boolean): string {
  const encoded = paramEncode(value);
  return always || /[:;,]/.test(encoded) ? `"${encoded}"` : encoded;
}

/** The values of a multi-valued parameter attribute: comma-separated, any in double quotes. */
function splitParamList(value: string): string[] {
  const items: string[] = [];
  let current = '';
  let quoted = false;
  for (const c of value) {
    if (c === '"') quoted = !quoted;
    else if (c === ',' && !quoted) {
      items.push(current);
      current = '';
    } else current += c;
  }
  items.push(current);
  return items.map((v) => v.trim());
}

function paramText(upperName: string, value: string, where: string): string {
  if (CONTROL_BUT_NEWLINE.test(value)) fail(`${where}: a control character in the ${upperName} parameter`);
  const always = QUOTED_PARAMS.has(upperName);
  if (paramDesign(upperName.toLowerCase())?.multiValue) return splitParamList(value).map((v) => quoteParam(v, always)).join(',');
  return quoteParam(value, always);
}

/** The type a property's XML value has when no `value` attribute says it. */
function impliedType(known: PropertyDesign | undefined, text: string): string {
  if (!known) return 'text';
  if (known.detectType) return known.detectType(text);
  const type = known.defaultType ?? 'text';
  if (type === 'date-time' && isDateList(text, known)) return 'date';
  if (type === 'duration' && ITEM_FORMS['date-time']!.test(text)) return 'date-time';
  return type;
}

/** The content line (folded, with CRLF) of one property. */
function propertyLine(elementName: string, attrs: Record<string, string>, value: string, where: string): string {
  if (!NAME.test(elementName)) fail(`${where}: invalid property name`);
  let name = elementName.toUpperCase();
  let text = value;
  if (name === BUSY_STATUS_ELEMENT.toUpperCase()) {
    name = BUSY_STATUS_PROPERTY;
    if (/^UNAVAILABLE$/i.test(text.trim())) text = 'OOF';
  } else if (name === 'RECURRENCEID') name = 'RECURRENCE-ID';
  const known = propertyDesign(name.toLowerCase());
  let explicitType: string | undefined;
  let base64 = false;
  let params = '';
  for (const [key, attrValue] of Object.entries(attrs)) {
    if (key === 'xmlns' || key.startsWith('xmlns:')) continue;
    if (!NAME.test(key)) fail(`${where}: invalid parameter name "${key}"`);
    const upper = key.toUpperCase();
    if (upper === 'VALUE') {
      if (!NAME.test(attrValue)) fail(`${where}: invalid value type ${excerpt(attrValue)}`);
      explicitType = attrValue.toLowerCase();
    } else params += ';' + upper + '=' + paramText(upper, attrValue, where);
    if (upper === 'ENCODING' && /^BASE64$/i.test(attrValue)) base64 = true;
  }
  const trimmed = text.trim();
  // Inline data is VALUE=BINARY (RFC 5545 3.2.7), which a client may leave unsaid.
  const type = explicitType ?? (base64 ? 'binary' : impliedType(known, trimmed));
  let written: string;
  if (type === 'text') {
    if (CONTROL_BUT_NEWLINE.test(text)) fail(`${where}: a control character in the value`);
    if (known?.multiValue) written = listToText(text);
    else if (known?.structuredValue) {
      if (CONTROL.test(text)) fail(`${where}: a line break in a structured value`);
      written = text;
    } else written = escapeText(text);
  } else if (isKnownType(type)) {
    checkValue(type, trimmed, known, where);
    written = trimmed;
  } else {
    if (CONTROL.test(text)) fail(`${where}: a control character in the value`);
    written = text;
  }
  const defaultType = known ? (known.defaultType ?? 'text') : 'text';
  const valueParam = explicitType !== undefined || type !== defaultType ? ';VALUE=' + type.toUpperCase() : '';
  return foldLine(name + valueParam + params + ':' + written);
}

interface WriteState {
  properties: number;
}

function countProperty(state: WriteState, where: string): void {
  if (++state.properties > ICALENDAR_LIMITS.properties) fail(`${where}: more than ${ICALENDAR_LIMITS.properties} properties`);
}

function isComponentElement(e: XmlElement): boolean {
  return COMPONENTS.has(e.name.toLowerCase()) || e.elements().length > 0;
}

/** The lines of a component's content: its property elements, then its components. */
function componentContent(element: XmlElement, path: string, depth: number, state: WriteState): string {
  let properties = '';
  let components = '';
  for (const child of element.children) {
    if (typeof child === 'string') {
      if (child.trim() !== '') fail(`${path}: text ${excerpt(child.trim())} outside of a property`);
      continue;
    }
    const where = `${path} › <${child.name}>`;
    if (!NAME.test(child.name)) fail(`${where}: invalid element name`);
    if (isComponentElement(child)) {
      components += componentText(child, where, depth + 1, state);
    } else {
      countProperty(state, where);
      properties += propertyLine(child.name, child.attrs, child.text(), where);
    }
  }
  return properties + components;
}

function componentText(element: XmlElement, path: string, depth: number, state: WriteState): string {
  if (depth > ICALENDAR_LIMITS.depth) fail(`${path}: components nested deeper than ${ICALENDAR_LIMITS.depth}`);
  const name = element.name.toUpperCase();
  if (name === 'VCALENDAR') fail(`${path}: a VCALENDAR inside a component`);
  return `BEGIN:${name}\r\n` + componentContent(element, path, depth, state) + `END:${name}\r\n`;
}

function calendarText(vCalendar: XmlElement, state: WriteState): string {
  const path = `<${vCalendar.name}>`;
  let out = 'BEGIN:VCALENDAR\r\n';
  for (const [key, value] of Object.entries(vCalendar.attrs)) {
    if (key === 'xmlns' || key.startsWith('xmlns:')) continue;
    const where = `${path} attribute "${key}"`;
    countProperty(state, where);
    out += propertyLine(key, {}, value, where);
  }
  return out + componentContent(vCalendar, path, 1, state) + 'END:VCALENDAR\r\n';
}

/**
 * The iCalendar text (CRLF lines) of an `iCalendar` element (or `icalendar`, or one
 * `vCalendar` given alone): one VCALENDAR per `vCalendar` child.
 */
export function xcalToText(element: XmlElement): string {
  return guarded(() => {
    const state: WriteState = { properties: 0 };
    const rootName = element.name.toLowerCase();
    if (rootName === 'vcalendar') return calendarText(element, state);
    if (rootName !== 'icalendar') fail(`<${element.name}> is not an iCalendar element`);
    let out = '';
    for (const child of element.children) {
      if (typeof child === 'string') {
        if (child.trim() !== '') fail(`<${element.name}>: text ${excerpt(child.trim())} outside of a vCalendar`);
        continue;
      }
      if (child.name.toLowerCase() !== 'vcalendar') fail(`<${element.name}> › <${child.name}>: a vCalendar element is expected`);
      out += calendarText(child, state);
    }
    if (out === '') fail(`<${element.name}> has no vCalendar element`);
    return out;
  });
}
