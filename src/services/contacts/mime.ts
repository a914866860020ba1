/**
 * vCard MIME parts (spec "Contacts Operations"): text/directory and text/x-vcard parts hold
 * vCards, text/x-vgroup parts one vCardGroup. folderRead shows them as vCard / vCardGroup
 * XML; messageAppend and messageSubmit take that XML in MIME elements of these types.
 */
import { ServiceError } from '../errors.js';
import type { XmlElement } from '../../xml/element.js';
import { ILLEGAL_VCARD, VCardFormatError } from './model.js';
import { parseVObject, splitCards, writeVObject } from './text.js';
import { fromXml, toXml } from './xml.js';

const VCARD_SUBTYPES = new Set(['directory', 'x-vcard', 'vcard']);

/** True for the text subtypes presented as vCard XML. */
export function isVCardSubtype(subtype: string): boolean {
  return VCARD_SUBTYPES.has(subtype) || subtype === 'x-vgroup';
}

/**
 * The XML of a vCard part's text: its vCard elements (one vCardGroup for x-vgroup), and
 * what could not be read (a card's position and why).
 */
export function vCardPartXml(subtype: string, text: string): { elements: XmlElement[]; problems: string[] } {
  const elements: XmlElement[] = [];
  const { cards, problems: found } = splitCards(text);
  const problems = found.map((p) => `card ${p.index}: ${p.reason}`);
  for (const card of cards) {
    try {
      const object = parseVObject(card.text);
      if ((object.kind === 'vgroup') !== (subtype === 'x-vgroup')) throw new VCardFormatError(subtype === 'x-vgroup' ? 'a vCard in a text/x-vgroup part' : 'a vCardGroup in a vCard part');
      elements.push(toXml(object));
    } catch (err) {
      if (!(err instanceof VCardFormatError)) throw err;
      problems.push(`card ${card.index}: ${err.message}`);
    }
  }
  return { elements, problems };
}

/** The text of a vCard part from its XML (vCard elements; one vCardGroup for x-vgroup). */
export function vCardPartText(subtype: string, elements: readonly XmlElement[]): string {
  const wanted = subtype === 'x-vgroup' ? 'vCardGroup' : 'vCard';
  if (subtype === 'x-vgroup' && elements.length !== 1) throw new ServiceError(`a text/x-vgroup MIME element must hold one vCardGroup element`);
  let text = '';
  for (const e of elements) {
    if (e.name !== wanted) throw new ServiceError(`unexpected element <${e.name}> in a text/${subtype} MIME element`);
    try {
      text += writeVObject(fromXml(e));
    } catch (err) {
      if (err instanceof VCardFormatError) throw new ServiceError(`${ILLEGAL_VCARD}: ${err.message}`);
      throw err;
    }
  }
  return text;
}
