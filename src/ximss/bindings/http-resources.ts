import type http from 'node:http';
import { ServiceError } from '../../services/errors.js';
import { contentTypeOf, decodePartBody, findPart, findRelated, parseMime, partBytes, partHeaderBytes, type MimePart } from '../../services/mime/index.js';
import { parseStructured } from '../../services/mime/params.js';
import { el } from '../../xml/element.js';
import { FOLDER_NOT_OPEN } from '../folders.js';
import type { Session } from '../session.js';
import type { XimssServices } from '../services.js';
import { textReply, type HttpReply } from './http-session.js';

/**
 * The spec's "HTTP Access" resources of a session: message parts (MIME), the uploaded
 * file set (UPLOAD, DOWNLOAD of `$UPLOAD$/<id>`).
 */

/** URL parameters by lower-cased name (clients vary the case: `OffsetFrom`, `offsetfrom`). */
type RequestParams = ReadonlyMap<string, string>;

function notFound(text: string): HttpReply {
  return textReply(404, text + '\n');
}

/** `<UID>[-<partID>]-<suffix>`: P.txt, H.txt, B.<ext>, or R (followed by /cid). */
const PART_SPEC = /^(\d+)((?:-\d+)*)-(P\.txt|H\.txt|B(?:\.[^/]*)?|R)$/i;

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * GET /Session/<id>/MIME/<folder>/<UID>[-<partID>]-<suffix>[/filename], with a Range
 * header or OffsetFrom/OffsetTill parameters for a portion.
 */
export async function serveMimePart(
  server: XimssServices,
  session: Session,
  path: string,
  params: RequestParams,
  rangeHeader: string | undefined,
): Promise<HttpReply> {
  const segments = path.split('/');
  let at = -1;
  for (let i = 1; i < segments.length; i++) {
    if (PART_SPEC.test(segments[i]!)) {
      at = i;
      break;
    }
  }
  if (at < 0) return notFound('expected /MIME/<folder>/<UID>[-<partID>]-<P.txt|H.txt|B.ext|R/cid>');
  const folderName = segments.slice(0, at).map(decode).join('/');
  const [, uidText, partText, suffix] = PART_SPEC.exec(segments[at]!)!;
  const folder = session.folders.get(folderName);
  if (!folder) return notFound(FOLDER_NOT_OPEN);
  const raw = await server.mail.readRaw(folder.box, Number(uidText));
  if (!raw) return notFound('message not found');
  const root = parseMime(raw);
  const partID = partText!.replace(/^-/, '');
  let part: MimePart | undefined = partID === '' ? root : findPart(root, partID);
  if (!part) return notFound('message part not found');

  let data: Buffer;
  let contentType: string;
  const mode = suffix![0]!.toUpperCase();
  if (mode === 'P') {
    data = partBytes(raw, part);
    contentType = 'text/plain';
  } else if (mode === 'H') {
    data = partHeaderBytes(raw, part);
    contentType = 'text/plain';
  } else {
    if (mode === 'R') {
      const cid = segments[at + 1];
      if (cid === undefined || cid === '') return notFound('expected R/<cid>');
      part = findRelated(root, part, decode(cid).replace(/^<|>$/g, ''));
      if (!part) return notFound('no related part has this Content-ID');
    }
    data = decodePartBody(raw, part);
    contentType = contentTypeOf(part);
  }
  return ranged(data, contentType, params, rangeHeader);
}

/**
 * Mail (an HTML part, an SVG image) is someone else's content served from this origin,
 * where the session's URL is readable: no script of it may run, nor may a browser sniff a
 * text part into HTML.
 */
const UNTRUSTED_CONTENT = { 'Content-Security-Policy': 'sandbox', 'X-Content-Type-Options': 'nosniff' };

/** Applies a Range header (206) or OffsetFrom/OffsetTill (200) to a body. */
function ranged(data: Buffer, contentType: string, params: RequestParams, rangeHeader: string | undefined): HttpReply {
  const headers: Record<string, string> = { 'Accept-Ranges': 'bytes', 'Cache-Control': 'private, no-cache', ...UNTRUSTED_CONTENT };
  const offsetFrom = params.get('offsetfrom');
  if (offsetFrom !== undefined) {
    const from = Number(offsetFrom);
    const tillText = params.get('offsettill');
    const till = tillText === undefined ? data.length : Number(tillText);
    if (!Number.isInteger(from) || !Number.isInteger(till) || from < 0 || till < from) {
      return textReply(416, 'invalid OffsetFrom/OffsetTill\n');
    }
    return { status: 200, body: data.subarray(from, Math.min(till, data.length)), contentType, headers };
  }
  const range = rangeHeader ? /^bytes=(\d*)-(\d*)$/.exec(rangeHeader.trim()) : null;
  if (range && (range[1] !== '' || range[2] !== '')) {
    let start: number;
    let end: number;
    if (range[1] === '') {
      start = Math.max(0, data.length - Number(range[2]));
      end = data.length - 1;
    } else {
      start = Number(range[1]);
      end = range[2] === '' ? data.length - 1 : Math.min(Number(range[2]), data.length - 1);
    }
    if (start >= data.length || end < start) {
      return textReply(416, '', { 'Content-Range': `bytes */${data.length}` });
    }
    return {
      status: 206,
      body: data.subarray(start, end + 1),
      contentType,
      headers: { ...headers, 'Content-Range': `bytes ${start}-${end}/${data.length}` },
    };
  }
  return { status: 200, body: data, contentType, headers };
}

function splitType(value: string | undefined): { type: string; subtype: string; charset: string | undefined } {
  const { value: mediaType, params } = parseStructured(value ?? '');
  const m = /^([A-Za-z0-9!#$&^_.+-]+)\/([A-Za-z0-9!#$&^_.+-]+)$/.exec(mediaType);
  const charset = params.charset;
  return m ? { type: m[1]!.toLowerCase(), subtype: m[2]!.toLowerCase(), charset } : { type: 'application', subtype: 'octet-stream', charset };
}

/**
 * PUT (the body is the file) or POST (multipart/form-data, field `fileData`)
 * /Session/<id>/UPLOAD/<uploadID>: adds the file to the uploaded file set and tells the
 * session (`newUploaded`).
 */
export function storeUpload(session: Session, path: string, req: http.IncomingMessage, params: RequestParams, body: Buffer): HttpReply {
  const uploadID = decode(path.split('/', 1)[0]!);
  if (uploadID === '') return textReply(500, 'the upload ID is missing\n');
  const declared = req.headers['content-type'];
  let data = body;
  let type = splitType(declared);
  let fileName = params.get('filename') ?? parseStructured(req.headers['content-disposition'] ?? '').params.filename;
  if (type.type === 'multipart' && type.subtype === 'form-data') {
    // The form is a MIME multipart: let the message parser split it.
    const form = parseMime(Buffer.concat([Buffer.from(`Content-Type: ${declared}\r\n\r\n`, 'latin1'), body]));
    const offset = form.bodyStart;
    const field =
      form.children.find((p) => p.dispositionParams.name === 'fileData') ?? form.children.find((p) => p.dispositionParams.filename !== undefined);
    if (!field) return textReply(500, 'no fileData field in the form\n');
    data = body.subarray(field.bodyStart - offset, field.end - offset);
    type = splitType(field.headers.find((h) => h.name.toLowerCase() === 'content-type')?.value);
    fileName = field.dispositionParams.filename ?? fileName;
  }
  try {
    session.uploads.put({ id: uploadID, data: Buffer.from(data), type: type.type, subtype: type.subtype, charset: type.charset, fileName });
  } catch (err) {
    if (err instanceof ServiceError) return textReply(500, err.message + '\n');
    throw err;
  }
  session.sendAsync(el('newUploaded', { uploadID }));
  return textReply(200, 'OK\n');
}

/** GET /Session/<id>/DOWNLOAD/<fileName>; `$UPLOAD$/<id>` names an uploaded file. */
export function serveDownload(session: Session, path: string, params: RequestParams, rangeHeader: string | undefined): HttpReply {
  const name = path.split('/').map(decode).join('/');
  if (!name.startsWith('$UPLOAD$/')) return notFound('file is not found (the file storage is not implemented yet)');
  const file = session.uploads.get(name.slice('$UPLOAD$/'.length));
  if (!file) return notFound('file is not found');
  const type = `${file.type}/${file.subtype}${file.charset ? `; charset=${file.charset}` : ''}`;
  const reply = ranged(file.data, type, params, rangeHeader);
  if (file.fileName) {
    reply.headers = { ...reply.headers, 'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent(file.fileName)}` };
  }
  return reply;
}
