import { open, type FileHandle } from 'node:fs/promises';
import type http from 'node:http';
import { Readable } from 'node:stream';
import busboy from 'busboy';
import libmime from 'libmime';
import { calendarOfItems } from '../../services/calendar/item.js';
import { ILLEGAL_VCARD, parseVObject, VCardFormatError } from '../../services/contacts/index.js';
import { FileError, type FileTarget } from '../../services/files/api.js';
import { ServiceError } from '../../services/errors.js';
import type { Logger } from '../../log.js';
import { contentTypeOf, decodePartBody, findPart, findRelated, parseMime, partBytes, partHeaderBytes, type MimePart } from '../../services/mime/index.js';
import { parseStructured } from '../../services/mime/params.js';
import { el } from '../../xml/element.js';
import { FOLDER_NOT_OPEN } from '../folders.js';
import { smimeService, takePfxExport, unlockedIdentity } from '../ops/smime.js';
import type { Session } from '../session.js';
import { UploadLimitError, UploadSessionClosed, type SpoolWriter } from '../uploads.js';
import type { XimssServices } from '../services.js';
import { SESSION_GONE, textReply, type HttpReply } from './http-session.js';

/**
 * The spec's "HTTP Access" resources of a session: message parts (MIME), the uploaded
 * file set (UPLOAD, DOWNLOAD of `$UPLOAD$/<id>`), the File Storage (DOWNLOAD of a file), the
 * contacts of an open folder (Export) and the Profile vCard (PROFILE).
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

type ByteRange = { status: 200 | 206; start: number; end: number; headers: Record<string, string> };

/**
 * The portion of a body of `size` bytes a request asks for: a Range header (206) or
 * OffsetFrom/OffsetTill (200), else all of it; `end` is exclusive. An unsatisfiable one is
 * the error reply.
 */
function byteRange(size: number, params: RequestParams, rangeHeader: string | undefined): ByteRange | HttpReply {
  const headers: Record<string, string> = { 'Accept-Ranges': 'bytes', 'Cache-Control': 'private, no-cache', ...UNTRUSTED_CONTENT };
  const offsetFrom = params.get('offsetfrom');
  if (offsetFrom !== undefined) {
    const from = Number(offsetFrom);
    const tillText = params.get('offsettill');
    const till = tillText === undefined ? size : Number(tillText);
    if (!Number.isInteger(from) || !Number.isInteger(till) || from < 0 || till < from) {
      return textReply(416, 'invalid OffsetFrom/OffsetTill\n');
    }
    const start = Math.min(from, size);
    return { status: 200, start, end: Math.max(start, Math.min(till, size)), headers };
  }
  const range = rangeHeader ? /^bytes=(\d*)-(\d*)$/.exec(rangeHeader.trim()) : null;
  if (range && (range[1] !== '' || range[2] !== '')) {
    let start: number;
    let end: number;
    if (range[1] === '') {
      start = Math.max(0, size - Number(range[2]));
      end = size - 1;
    } else {
      start = Number(range[1]);
      end = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
    }
    if (start >= size || end < start) {
      return textReply(416, '', { 'Content-Range': `bytes */${size}` });
    }
    return { status: 206, start, end: end + 1, headers: { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}` } };
  }
  return { status: 200, start: 0, end: size, headers };
}

/** Applies a Range header (206) or OffsetFrom/OffsetTill (200) to a body. */
function ranged(data: Buffer, contentType: string, params: RequestParams, rangeHeader: string | undefined): HttpReply {
  const range = byteRange(data.length, params, rangeHeader);
  if ('body' in range) return range;
  return { status: range.status, body: data.subarray(range.start, range.end), contentType, headers: range.headers };
}

function splitType(value: string | undefined): { type: string; subtype: string; charset: string | undefined } {
  const { value: mediaType, params } = parseStructured(value ?? '');
  const m = /^([A-Za-z0-9!#$&^_.+-]+)\/([A-Za-z0-9!#$&^_.+-]+)$/.exec(mediaType);
  const charset = params.charset;
  return m ? { type: m[1]!.toLowerCase(), subtype: m[2]!.toLowerCase(), charset } : { type: 'application', subtype: 'octet-stream', charset };
}

/**
 * What a form may hold besides the file, which is spooled: busboy keeps the other fields in
 * memory, so few and small ones (a `fileData` field sent as text, without a file name, is
 * one of them); the form as a whole may exceed the file limit by FORM_EXTRA_BYTES.
 */
const TEXT_FIELD_BYTES = 256 * 1024;
const FORM_LIMITS = { fieldNameSize: 200, fieldSize: TEXT_FIELD_BYTES, fields: 16, parts: 64, headerPairs: 64 };
const FORM_EXTRA_BYTES = 8 * 1024 * 1024;

/** The upload failed for a reason to tell the client with a 500 (the spec's "uploading failed"). */
class UploadRefused extends Error {}

/** The client went away before the whole body arrived. */
class UploadAborted extends Error {}

/**
 * PUT (the body is the file) or POST (multipart/form-data, field `fileData`)
 * /Session/<id>/UPLOAD/<uploadID>: the file is written into the upload spool as it
 * arrives, added to the uploaded file set (replacing a file of the same id), and the
 * session is told (`newUploaded`). A crossed limit stops the upload with 413; the rest of
 * the body is not read (the reply closes the connection), and the partial file is deleted.
 */
export async function storeUpload(session: Session, path: string, req: http.IncomingMessage, params: RequestParams, log: Logger): Promise<HttpReply> {
  const uploadID = decode(path.split('/', 1)[0]!);
  if (uploadID === '') return textReply(500, 'the upload ID is missing\n');
  const declared = req.headers['content-type'];
  let type = splitType(declared);
  let fileName = params.get('filename') ?? parseStructured(req.headers['content-disposition'] ?? '').params.filename;
  let writer: SpoolWriter | undefined;
  try {
    if (type.type === 'multipart' && type.subtype === 'form-data') {
      const field = await receiveForm(session, req);
      writer = field.writer;
      type = field.type;
      fileName = field.fileName ?? fileName;
    } else {
      const length = Number(req.headers['content-length']);
      if (Number.isFinite(length)) session.uploads.checkAnnounced(length);
      writer = session.uploads.begin();
      await receive(req, writer);
    }
    session.uploads.commit(writer, { id: uploadID, type: type.type, subtype: type.subtype, charset: type.charset, fileName });
  } catch (err) {
    writer?.discard();
    // The rest of a body that was not read is left unread: the connection is closed.
    const close: Record<string, string> = req.complete ? {} : { Connection: 'close' };
    if (err instanceof UploadLimitError) return textReply(413, err.message + '\n', { Connection: 'close' });
    if (err instanceof UploadSessionClosed) return textReply(SESSION_GONE, 'unknown or closed session\n', close);
    if (err instanceof UploadRefused || err instanceof ServiceError) return textReply(500, err.message + '\n', close);
    if (err instanceof UploadAborted) return textReply(400, 'the upload was interrupted\n', close);
    log.error({ event: 'http.upload_failed', account: session.userName, address: session.remoteAddress, err }, 'the upload could not be stored');
    return textReply(500, 'the file could not be stored\n', close);
  }
  session.sendAsync(el('newUploaded', { uploadID }));
  return textReply(200, 'OK\n');
}

/**
 * Streams the request body into `writer`; resolves when the file is completely written.
 * On a failure, the body stops being read.
 */
function receive(req: http.IncomingMessage, writer: SpoolWriter): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (err: Error): void => {
      req.unpipe(writer);
      req.pause();
      reject(err);
    };
    watchAbort(req, () => writer.destroy(new UploadAborted()));
    writer.once('finish', resolve);
    writer.once('error', stop);
    req.pipe(writer);
  });
}

/** Calls `abort` when the client goes away before its whole request arrived. */
function watchAbort(req: http.IncomingMessage, abort: () => void): void {
  req.once('error', abort);
  req.once('close', () => {
    if (!req.complete) abort();
  });
}

type ContentType = ReturnType<typeof splitType>;

interface FormFile {
  writer: SpoolWriter;
  type: ContentType;
  fileName: string | undefined;
}

/**
 * Streams a multipart/form-data body (busboy) and spools its `fileData` field (else its
 * first file field); other fields are read and dropped. Resolves once the chosen file is
 * completely written; the caller commits it.
 */
function receiveForm(session: Session, req: http.IncomingMessage): Promise<FormFile> {
  return new Promise((resolve, reject) => {
    let form: busboy.Busboy;
    try {
      // Browsers send file names as raw UTF-8.
      form = busboy({ headers: req.headers, defParamCharset: 'utf8', limits: FORM_LIMITS });
    } catch (err) {
      reject(new UploadRefused(`malformed form: ${(err as Error).message}`));
      return;
    }
    interface Candidate extends FormFile {
      isFileData: boolean;
      source: Readable | undefined;
      written: Promise<void>;
    }
    let chosen: Candidate | undefined;
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      req.unpipe(form);
      req.pause();
      chosen?.writer.discard();
      reject(err);
    };
    const choose = (name: string, source: Readable | undefined, type: ContentType, fileName: string | undefined): SpoolWriter | undefined => {
      const isFileData = name === 'fileData';
      // The first file field stands in until a fileData field comes.
      const wanted = isFileData ? !chosen?.isFileData : chosen === undefined && fileName !== undefined;
      if (failed || !wanted) return undefined;
      if (chosen) {
        chosen.source?.unpipe(chosen.writer).resume();
        chosen.writer.discard();
      }
      let writer: SpoolWriter;
      try {
        writer = session.uploads.begin();
      } catch (err) {
        fail(err as Error);
        return undefined;
      }
      const written = new Promise<void>((done, failWith) => {
        writer.once('finish', done);
        writer.once('error', failWith);
      });
      const candidate: Candidate = { writer, type, fileName, isFileData, source, written };
      chosen = candidate;
      written.catch((err: Error) => {
        if (chosen === candidate) fail(err);
      });
      return writer;
    };
    form.on('file', (name, stream, info) => {
      // A form that breaks off mid-file fails its file stream too: the form's error says why.
      stream.on('error', () => {});
      const writer = choose(name, stream, splitType(info.mimeType), info.filename);
      if (writer) stream.pipe(writer);
      else stream.resume();
    });
    form.on('field', (name, value, info) => {
      if (name !== 'fileData') return;
      if (info.valueTruncated) {
        fail(new UploadLimitError(`a fileData field without a file name may hold at most ${TEXT_FIELD_BYTES} bytes: send it as a file`));
        return;
      }
      // busboy has decoded the text; it is kept as UTF-8.
      choose(name, undefined, { type: 'text', subtype: 'plain', charset: 'utf-8' }, undefined)?.end(Buffer.from(value, 'utf8'));
    });
    form.on('error', (err: Error) => fail(new UploadRefused(`malformed form: ${err.message}`)));
    form.on('close', () => {
      if (failed) return;
      const file = chosen;
      if (!file) {
        fail(new UploadRefused('no fileData field in the form'));
        return;
      }
      file.written.then(
        () => resolve(file),
        () => {},
      );
    });
    watchAbort(req, () => fail(new UploadAborted()));
    // Fields and files other than the one spooled are dropped as they come, but the form may not go on forever.
    const formLimit = session.uploads.limits.fileBytes + FORM_EXTRA_BYTES;
    let formBytes = 0;
    req.on('data', (chunk: Buffer) => {
      formBytes += chunk.length;
      if (formBytes > formLimit) fail(new UploadLimitError(`the form is larger than ${formLimit} bytes`));
    });
    req.pipe(form);
  });
}

/**
 * GET or HEAD /Session/<id>/DOWNLOAD/<fileName>: a file of the account's File Storage
 * (`~account/...` of another account's, as the session's rights allow), streamed from the
 * store; `$UPLOAD$/<id>` names an uploaded file, read from the spool.
 */
export async function serveDownload(
  server: XimssServices,
  session: Session,
  path: string,
  params: RequestParams,
  rangeHeader: string | undefined,
  request: { method?: string; ifNoneMatch?: string } = {},
): Promise<HttpReply> {
  const name = path.split('/').map(decode).join('/');
  if (!name.startsWith('$UPLOAD$/')) return serveStoredFile(server, session, name, params, rangeHeader, request);
  const file = session.uploads.get(name.slice('$UPLOAD$/'.length));
  if (!file) return notFound('file is not found');
  const range = byteRange(file.size, params, rangeHeader);
  if ('body' in range) return range;
  let handle: FileHandle;
  try {
    handle = await open(file.path, 'r');
  } catch {
    // Cleared while this request was on its way.
    return notFound('file is not found');
  }
  const length = range.end - range.start;
  let stream: Readable;
  if (length > 0) {
    stream = handle.createReadStream({ start: range.start, end: range.end - 1 });
  } else {
    // A read stream cannot read nothing (its `end` is inclusive).
    await handle.close();
    stream = Readable.from([]);
  }
  const headers = { ...range.headers };
  if (file.fileName) headers['Content-Disposition'] = `attachment; filename*=UTF-8''${encodeURIComponent(file.fileName)}`;
  const type = `${file.type}/${file.subtype}${file.charset ? `; charset=${file.charset}` : ''}`;
  return { status: range.status, body: { stream, length }, contentType: type, headers };
}

/** DOWNLOAD of a File Storage file: Content-Type from its extension, ETag, Last-Modified, ranges, HEAD, If-None-Match. */
async function serveStoredFile(
  server: XimssServices,
  session: Session,
  name: string,
  params: RequestParams,
  rangeHeader: string | undefined,
  request: { method?: string; ifNoneMatch?: string },
): Promise<HttpReply> {
  const files = server.files;
  let target: FileTarget;
  try {
    target = await files.resolve(session.account, name, 'read');
  } catch (err) {
    if (err instanceof FileError) {
      if (err.reason === 'access-denied') return textReply(403, 'access denied\n');
      if (err.reason === 'invalid-name') return textReply(400, err.message + '\n');
      return notFound('file is not found');
    }
    throw err;
  }
  const entry = target.path === '' ? undefined : await files.stat(target.owner, target.path);
  if (!entry || entry.kind !== 'file') return notFound('file is not found');
  const etag = `"${entry.etag}"`;
  const validators = { ETag: etag, 'Last-Modified': entry.modified.toUTCString() };
  if (request.ifNoneMatch !== undefined && request.ifNoneMatch.split(',').some((t) => t.trim() === etag || t.trim() === '*')) {
    return { status: 304, body: '', headers: validators };
  }
  const range = byteRange(entry.size, params, rangeHeader);
  if ('body' in range) return range;
  const length = range.end - range.start;
  const headers: Record<string, string> = { ...range.headers, ...validators };
  const fileName = entry.name;
  headers['Content-Disposition'] = `inline; filename*=UTF-8''${encodeURIComponent(fileName)}`;
  const contentType = libmime.detectMimeType(fileName);
  if (request.method === 'HEAD' || length === 0) return { status: range.status, body: { stream: Readable.from([]), length }, contentType, headers };
  try {
    const { stream } = await files.open(target.owner, target.path, { start: range.start, end: range.end - 1 });
    return { status: range.status, body: { stream, length }, contentType, headers };
  } catch (err) {
    // Removed (or changed into something shorter) since it was looked at.
    if (err instanceof FileError) return notFound('file is not found');
    throw err;
  }
}

/**
 * GET /Session/<id>/Export/<folder>/<fileName>: the spec's "Data Export" — for an open
 * calendar, one iCalendar text with all its VEVENT and VTODO items and the VTIMEZONEs they use;
 * for an open folder, every vCard item as one vCard 3.0 text (`oldStyle=1`: vCard 2.1 in UTF-8).
 */
export async function serveExport(server: XimssServices, session: Session, path: string, params: RequestParams): Promise<HttpReply> {
  const segments = path.split('/').map(decode);
  const attachment = (fileName: string): Record<string, string> => ({
    'Cache-Control': 'private, no-cache',
    'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent(fileName)}`,
  });
  // The name may hold `/` itself: the longest open one wins, the rest is the file name.
  for (let end = segments.length; end >= 1; end--) {
    const name = segments.slice(0, end).join('/');
    const calendar = session.calendars.get(name);
    if (calendar) {
      const fileName = segments.slice(end).join('/') || 'calendar.ics';
      const text =
        calendar.kind === 'mailbox'
          ? await server.calendars.exportText(calendar.box, (await server.mail.snapshot(calendar.box)).messages.map((m) => m.uid))
          : calendarOfItems(calendar.items);
      return { status: 200, body: Buffer.from(text, 'utf8'), contentType: 'text/calendar; charset=utf-8', headers: attachment(fileName) };
    }
    const folder = session.folders.get(name);
    if (!folder) continue;
    const fileName = segments.slice(end).join('/') || 'contacts.vcf';
    const oldStyle = params.has('oldstyle');
    const text = await server.contacts.exportText(folder.box, oldStyle ? '2.1' : '3.0');
    return {
      status: 200,
      body: Buffer.from(text, 'utf8'),
      contentType: oldStyle ? 'text/x-vcard; charset=utf-8' : 'text/vcard; charset=utf-8',
      headers: attachment(fileName),
    };
  }
  return notFound(FOLDER_NOT_OPEN);
}

/**
 * GET /Session/<id>/CertAndKey.pfx?PFXPassword=...[&PFXPassword1=...]: the spec's "Private Key
 * and Certificate Export", a PKCS#12 file encrypted with PFXPassword. The session's S/MIME key
 * must be unlocked; PFXPassword1, when given, must repeat PFXPassword.
 */
export async function servePfxExport(server: XimssServices, session: Session, params: RequestParams): Promise<HttpReply> {
  const password = params.get('pfxpassword');
  if (password === undefined || password === '') return textReply(400, 'the PFXPassword parameter is missing\n');
  if (password.length > 1024) return textReply(400, 'the PFXPassword parameter is too long\n');
  const repeated = params.get('pfxpassword1');
  if (repeated !== undefined && repeated !== password) return textReply(400, 'PFXPassword1 is not the same as PFXPassword\n');
  const identity = unlockedIdentity(session);
  if (!identity) return textReply(403, 'the S/MIME Private Key is locked (use SMIMEUnlock)\n');
  // Bounded: a few exports per session and hour, and the PKCS#12 work queued with the other heavy S/MIME work.
  if (!takePfxExport(server, session)) return textReply(429, `too many S/MIME key exports (at most ${server.config.smime.pfxExportsPerHour} an hour per session)\n`);
  let pfx: Buffer;
  try {
    pfx = await smimeService(server).exportPfx(session.account, identity, password);
  } catch (err) {
    if (err instanceof ServiceError) return textReply(503, `${err.message}\n`, { 'Retry-After': '5' });
    throw err;
  }
  return {
    status: 200,
    body: pfx,
    contentType: 'application/x-pkcs12',
    headers: { 'Cache-Control': 'private, no-store', 'Content-Disposition': 'attachment; filename="CertAndKey.pfx"' },
  };
}

/** Where the account's Profile vCard is kept: a file of its File Storage (CommuniGate Pro keeps it there too). */
export const PROFILE_FILE = 'private/profile.vcf';

/** Media types of vCard PHOTO/LOGO/SOUND/KEY TYPE values (3.0 names them JPEG, GIF…). */
function mediaTypeOf(value: { mediaType?: string }, types: readonly string[]): string {
  if (value.mediaType) return value.mediaType;
  const type = types.find((t) => /^[a-z]+$/i.test(t))?.toLowerCase();
  if (!type) return 'application/octet-stream';
  return libmime.detectMimeType(type);
}

/**
 * GET /Session/<id>/PROFILE/[property[/index][/filename]]: the account's Profile vCard
 * (PROFILE_FILE), or one value of one of its properties (`PHOTO/0/avatar`): binary values
 * decoded with their media type, others as text.
 */
export async function serveProfile(server: XimssServices, session: Session, path: string): Promise<HttpReply> {
  const [property = '', indexText = '0'] = path.split('/').map(decode);
  let text: string;
  try {
    const entry = await server.files.stat(session.account, PROFILE_FILE);
    if (!entry || entry.kind !== 'file') return notFound('the account has no profile');
    if (entry.size > 3 * 1024 * 1024) return textReply(500, 'the profile is too large\n');
    text = (await server.files.readRange(session.account, PROFILE_FILE, 0, entry.size)).data.toString('utf8');
  } catch (err) {
    if (err instanceof FileError) return notFound('the account has no profile');
    throw err;
  }
  const headers = { 'Cache-Control': 'private, no-cache', ...UNTRUSTED_CONTENT };
  if (property === '') return { status: 200, body: Buffer.from(text, 'utf8'), contentType: 'text/vcard; charset=utf-8', headers };
  if (!/^\d{1,4}$/.test(indexText)) return notFound('expected PROFILE/<property>/<index>');
  let card;
  try {
    card = parseVObject(text);
  } catch (err) {
    if (err instanceof VCardFormatError) return textReply(500, `${ILLEGAL_VCARD}: ${err.message}\n`);
    throw err;
  }
  const name = property.toUpperCase();
  const found = card.properties.filter((p) => p.name === name)[Number(indexText)];
  if (!found) return notFound(`the profile has no ${name} value ${Number(indexText)}`);
  const value = found.value;
  switch (value.kind) {
    case 'binary':
      return { status: 200, body: Buffer.from(value.base64, 'base64'), contentType: mediaTypeOf(value, found.types), headers };
    case 'uri':
      return { status: 200, body: Buffer.from(value.uri, 'utf8'), contentType: 'text/uri-list; charset=utf-8', headers };
    case 'text':
      return { status: 200, body: Buffer.from(value.values.join(','), 'utf8'), contentType: 'text/plain; charset=utf-8', headers };
    case 'structured':
      return { status: 200, body: Buffer.from(value.components.map((c) => c.join(',')).join(';'), 'utf8'), contentType: 'text/plain; charset=utf-8', headers };
  }
}
