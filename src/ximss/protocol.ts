import { escapeAttr } from '../xml/element.js';

/** Builders for the few messages every binding writes by hand on hot paths. */
export function okResponse(id: string, exeTime?: number, attrs?: Readonly<Record<string, string>>): string {
  let extra = '';
  if (attrs) for (const [name, value] of Object.entries(attrs)) extra += ` ${name}="${escapeAttr(value)}"`;
  return exeTime === undefined ? `<response id="${escapeAttr(id)}"${extra}/>` : `<response id="${escapeAttr(id)}"${extra} exeTime="${exeTime}"/>`;
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
