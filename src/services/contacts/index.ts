/**
 * Contacts: vCard / vCardGroup objects in their XML presentation and text forms, and the
 * contact items (messages) of Contacts-class mailboxes.
 */
export * from './model.js';
export { escapeValue, foldLine, parseVObject, splitCards, writeVObject, type CardProblem, type CardText, type VCardVersion } from './text.js';
export { fromXml, toXml } from './xml.js';
export { completeObject, composeItem, CONTACTS_CLASS, type ItemOptions } from './item.js';
