/**
 * Contact items: the messages of Contacts-class mailboxes that carry one vCard (a
 * text/directory body) or one vCardGroup (text/x-vgroup). Their header fields are what
 * contactFind searches (spec "Contacts Operations", with the Russian text's list):
 *   Subject   the vCard FN (a group's NAME)
 *   To        the vCard EMAIL addresses, each with the "File as" name as its real name
 *   X-Telnum  the vCard TEL numbers, each with its type as a comment: `+1 555 1234 (WORK)`
 *   X-Has-Certificate: true   when the vCard has a KEY
 * plus Date, Message-ID, MIME-Version and the content fields.
 */
import { randomUUID } from 'node:crypto';
import { formatAddress, newMessageId, unstructuredField } from '../mime/compose.js';
import { rfcDateInZone } from '../mime/dates.js';
import {
  emailAddresses,
  fileAs,
  findProperty,
  formattedName,
  phoneNumbers,
  propertyText,
  textProperty,
  type VObject,
} from './model.js';
import { writeVObject } from './text.js';

/** The class of mailboxes contactAppend creates (the seed system's Contacts class). */
export const CONTACTS_CLASS = 'IPF.Contact';

/**
 * Adds what a stored item must have: a UID (a new urn:uuid) and, for a vCard, an FN
 * (from NAME, N, ORG or the first address). Returns the object's UID.
 */
export function completeObject(object: VObject): string {
  let uid = propertyText(object, 'UID');
  if (!uid) {
    uid = `urn:uuid:${randomUUID()}`;
    object.properties = object.properties.filter((p) => p.name !== 'UID');
    object.properties.push(textProperty('UID', uid));
  }
  if (object.kind === 'vcard' && !propertyText(object, 'FN')) {
    const fn = formattedName(object);
    object.properties = object.properties.filter((p) => p.name !== 'FN');
    // After the N or NAME it comes from, else first.
    const at = object.properties.findIndex((p) => p.name === 'NAME' || p.name === 'N');
    object.properties.splice(at < 0 ? 0 : at + 1, 0, textProperty('FN', fn));
  }
  return uid;
}

export interface ItemOptions {
  timeZone: string;
  hostname: string;
  /** The Date written (default: now). */
  date?: Date;
}

/** The RFC 822 bytes of the item of a (completed) vCard or vCardGroup. */
export function composeItem(object: VObject, options: ItemOptions): Buffer {
  const lines: string[] = [];
  if (object.kind === 'vcard') {
    lines.push(unstructuredField('Subject', formattedName(object)));
    const asName = fileAs(object);
    const addresses = emailAddresses(object).filter((a) => !/[\s<>,"]/.test(a));
    if (addresses.length > 0) lines.push('To: ' + addresses.map((a) => formatAddress(a, asName)).join(',\r\n '));
    const phones = phoneNumbers(object).map((t) => t.number.replace(/[\r\n,()]+/g, ' ').trim() + (t.type ? ` (${t.type.replace(/[^A-Za-z0-9-]/g, '')})` : ''));
    if (phones.length > 0) lines.push('X-Telnum: ' + phones.join(',\r\n '));
    if (findProperty(object, 'KEY')) lines.push('X-Has-Certificate: true');
  } else {
    lines.push(unstructuredField('Subject', propertyText(object, 'NAME') ?? ''));
  }
  lines.push(`Date: ${rfcDateInZone(options.date ?? new Date(), options.timeZone)}`);
  lines.push(`Message-ID: ${newMessageId(options.hostname)}`);
  lines.push('MIME-Version: 1.0');
  lines.push(object.kind === 'vcard' ? 'Content-Type: text/directory; charset=utf-8; profile=vCard' : 'Content-Type: text/x-vgroup; charset=utf-8');
  lines.push('Content-Transfer-Encoding: 8bit');
  const body = writeVObject(object, '3.0');
  return Buffer.from(lines.map((l) => l + '\r\n').join('') + '\r\n' + body, 'utf8');
}
