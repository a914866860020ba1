import { escapeAttr } from '../xml/element.js';

/** Builders for the few messages every binding writes by hand on hot paths. */
export function okResponse(id: string, exeTime?: number): string {
  return exeTime === undefined ? `<response id="${escapeAttr(id)}"/>` : `<response id="${escapeAttr(id)}" exeTime="${exeTime}"/>`;
}

export function errorResponse(id: string | undefined, errorText: string, errorNum = 500, exeTime?: number): string {
  return (
    '<response' +
    (id === undefined ? '' : ` id="${escapeAttr(id)}"`) +
    ` errorText="${escapeAttr(errorText)}" errorNum="${errorNum}"` +
    (exeTime === undefined ? '' : ` exeTime="${exeTime}"`) +
    '/>'
  );
}

/** The version this server reports in the `session` message (the XIMSS dialect it speaks). */
export const PROTOCOL_VERSION = '6.1.0';
