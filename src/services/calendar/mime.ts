/**
 * text/calendar MIME parts ("XML Data Formats": a text/calendar part is an iCalendar XML
 * element): folderRead and calendarRead show them as iCalendar XML; messageAppend and
 * messageSubmit take that XML in a text/calendar MIME element (an invitation composed by a
 * client).
 */
import { ServiceError } from '../errors.js';
import type { XmlElement } from '../../xml/element.js';
import { ICalendarFormatError, textToXcalList, xcalToText } from './xcal.js';

/** The iCalendar elements of a text/calendar part's text, or why it could not be read. */
export function calendarPartXml(text: string): { elements: XmlElement[]; problem?: string } {
  try {
    return { elements: textToXcalList(text) };
  } catch (err) {
    if (!(err instanceof ICalendarFormatError)) throw err;
    return { elements: [], problem: err.message };
  }
}

/** The text of a text/calendar part from its iCalendar elements (either spelling). */
export function calendarPartText(elements: readonly XmlElement[]): string {
  let text = '';
  for (const e of elements) {
    if (e.name !== 'iCalendar' && e.name !== 'icalendar') throw new ServiceError(`unexpected element <${e.name}> in a text/calendar MIME element`);
    try {
      text += xcalToText(e);
    } catch (err) {
      if (err instanceof ICalendarFormatError) throw new ServiceError(`invalid iCalendar data: ${err.message}`);
      throw err;
    }
  }
  return text;
}
