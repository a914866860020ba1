import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { ServiceError } from '../../services/errors.js';
import { FileError, type FileAttribute, type FileAttributeChange, type FileEntry, type FileLock, type FileTarget, type WriteMode } from '../../services/files/api.js';
import { formatObject, parseObject } from '../../services/files/cg-text.js';
import { fromXml, ILLEGAL_VCARD, parseVObject, toXml, VCardFormatError, writeVObject } from '../../services/contacts/index.js';
import { decodePartBody, findPart, parseMime } from '../../services/mime/index.js';
import { el, serialize, XmlElement } from '../../xml/element.js';
import { appendValue, readValue } from '../../xml/objects.js';
import { parseXml, XmlParseError } from '../../xml/parser.js';
import { formatGmt, formatLocal, parseGmt } from '../../xml/time.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import { openFolder } from '../folders.js';
import type { Session } from '../session.js';
import { mailboxCalendar } from './calendar.js';
import { readMessage, uidAttr } from './message.js';

/**
 * Spec section "File Storage Operations" (and fileRights of the newer text), over the File
 * Storage service (src/services/files/). Names are as the user spells them: a path of the
 * own storage, or `~account/path` of another account's (CanAccessWebSites). Times are in
 * the session's time zone (fileList gmtTime="yes": in GMT).
 *
 * Locks: a lock this session took is held by it (its token is passed with every change the
 * session makes); a lock of another session or account refuses the change ("... is
 * locked").
 */

/** The largest fileRead portion, and the largest file read whole (type object/xml). */
export const MAX_READ_BYTES = 3 * 1024 * 1024;

/** Error texts clients match (see INTEROP.md). */
export const FILE_NOT_FOUND = 'file is not found';
export const BEYOND_EOF = 'reading beyond the EOF mark';

/** The lock tokens each session took (its changes are allowed through its own locks). */
const sessionTokens = new WeakMap<Session, Set<string>>();
/** Most tokens one session remembers (the oldest are forgotten). */
const MAX_SESSION_TOKENS = 1000;

function tokensOf(session: Session): Set<string> {
  let set = sessionTokens.get(session);
  if (!set) sessionTokens.set(session, (set = new Set()));
  return set;
}

function conditions(ctx: SessionContext): { lockTokens: string[] } {
  return { lockTokens: [...tokensOf(ctx.session)] };
}

/** A FileError as XIMSS clients expect to read it. */
function xmsError(err: unknown): unknown {
  if (err instanceof FileError) {
    if (err.reason === 'not-found' && !err.message.startsWith('unknown account')) return new ServiceError(FILE_NOT_FOUND);
    if (err.reason === 'beyond-eof') return new ServiceError(BEYOND_EOF);
  }
  return err;
}

function fileOp(handler: (ctx: SessionContext) => Promise<void>) {
  return inSession(async (ctx) => {
    try {
      await handler(ctx);
    } catch (err) {
      throw xmsError(err);
    }
  });
}

async function target(ctx: SessionContext, attr: string): Promise<FileTarget> {
  return ctx.server.files.resolve(ctx.session.account, requiredAttr(ctx.request, attr));
}

function timeOf(ctx: SessionContext, date: Date): string {
  const gmt = ctx.request.attrs.gmtTime;
  return gmt === 'yes' || gmt === '1' || gmt === 'true' ? formatGmt(date) : formatLocal(date, ctx.session.timeZone);
}

/** `YYYYMMDDTHHMMSS` as wall-clock time in `timeZone` (with a trailing Z: GMT). */
export function parseLocalTime(value: string, timeZone: string): Date | undefined {
  const asGmt = parseGmt(value);
  if (!asGmt) return undefined;
  if (/Z$/i.test(value.trim())) return asGmt;
  let guess = asGmt.getTime();
  // Two rounds settle the zone's offset at that time (also across a DST change).
  for (let i = 0; i < 2; i++) guess += asGmt.getTime() - parseGmt(formatLocal(new Date(guess), timeZone))!.getTime();
  return new Date(guess);
}

function fileInfo(ctx: SessionContext, entry: FileEntry, name: string, directory: string | undefined): XmlElement {
  return el('fileInfo', {
    fileName: name,
    directory,
    type: entry.kind === 'directory' ? 'directory' : undefined,
    size: entry.kind === 'file' ? entry.size : undefined,
    timeModified: timeOf(ctx, entry.modified),
    timeAttrModified: timeOf(ctx, entry.attrsModified),
  });
}

/** fileWrite/fileStore's `position`: how the data is placed. */
function writeMode(position: string | undefined): WriteMode {
  if (position === undefined || position === '') return { kind: 'replace' };
  if (position === 'append') return { kind: 'append' };
  if (position === 'new') return { kind: 'new' };
  const at = Number(position);
  if (!/^\d+$/.test(position) || !Number.isSafeInteger(at)) throw new ServiceError(`invalid position: ${position.slice(0, 40)}`);
  return { kind: 'at', position: at };
}

/** The data fileWrite writes, from its body as `type` says. */
function writeData(request: XmlElement): Buffer {
  const type = request.attrs.type;
  const wholeOnly = (): void => {
    if (request.attrs.position !== undefined) throw new ServiceError(`the position attribute cannot be used with type="${type}"`);
  };
  if (type === undefined || type === '') {
    if (request.elements().length > 0) throw new ServiceError('the file data must be text (use type="binary", "xml" or "object" for other data)');
    return Buffer.from(request.text(), 'utf8');
  }
  if (type === 'binary') {
    const base64 = request.element('base64');
    if (!base64 || request.elements().length !== 1) throw new ServiceError('type="binary" needs one base64 element');
    const text = base64.text().replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new ServiceError('invalid base64 data');
    return Buffer.from(text, 'base64');
  }
  if (type === 'object') {
    wholeOnly();
    let value;
    try {
      value = readValue(request);
    } catch (err) {
      throw new ServiceError(`invalid object: ${(err as Error).message}`);
    }
    return Buffer.from(formatObject(value), 'utf8');
  }
  if (type === 'xml') {
    wholeOnly();
    const elements = request.elements();
    if (elements.length !== 1) throw new ServiceError('type="xml" needs exactly one XML element');
    return Buffer.from(serialize(elements[0]!), 'utf8');
  }
  if (type === 'vcard') {
    wholeOnly();
    const elements = request.elements();
    if (elements.length !== 1) throw new ServiceError('type="vcard" needs exactly one vCard element');
    return Buffer.from(writeVObject(vcardOf(() => fromXml(elements[0]!))), 'utf8');
  }
  throw new ServiceError(`unknown type: ${type.slice(0, 40)}`);
}

/** A vCard conversion, its format errors told as clients know them. */
function vcardOf<T>(convert: () => T): T {
  try {
    return convert();
  } catch (err) {
    if (err instanceof VCardFormatError) throw new ServiceError(`${ILLEGAL_VCARD}: ${err.message}`);
    throw err;
  }
}

/** The decoded body of a stored message part (folder or calendar + UID [+ partID]): fileStore, copyMIME. */
async function messagePart(ctx: SessionContext, element: XmlElement): Promise<Buffer> {
  const box = element.attrs.calendar !== undefined ? mailboxCalendar(ctx.session, element).box : openFolder(ctx.session, element).box;
  const raw = await readMessage(ctx, box, uidAttr(element));
  const partID = element.attrs.partID;
  if (partID === undefined || partID === '') return raw;
  const part = findPart(parseMime(raw), partID);
  if (!part) throw new ServiceError(`message part not found: ${partID}`);
  return decodePartBody(raw, part);
}

function numberAttr(request: XmlElement, name: string): number | undefined {
  const text = request.attrs[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) throw new ServiceError(`invalid ${name}: ${text.slice(0, 40)}`);
  return value;
}

/** Clark notation of an attribute element: `{namespace}local`, or its name. */
function clarkName(element: XmlElement): string {
  const colon = element.name.indexOf(':');
  if (colon > 0) {
    const ns = element.attrs[`xmlns:${element.name.slice(0, colon)}`];
    return ns ? `{${ns}}${element.name.slice(colon + 1)}` : element.name;
  }
  const ns = element.attrs.xmlns;
  return ns ? `{${ns}}${element.name}` : element.name;
}

function localName(name: string): string {
  return name.replace(/^\{[^}]*\}/, '');
}

function attributeElement(attribute: FileAttribute): XmlElement | undefined {
  try {
    return parseXml(attribute.xml);
  } catch {
    return undefined;
  }
}

function lockData(ctx: SessionContext, lock: FileLock): XmlElement {
  const item = el('fileLockData', { expires: formatLocal(lock.expires, ctx.session.timeZone), scope: lock.scope, type: lock.type });
  const owner = lock.ownerXml === '' ? undefined : attributeElement({ name: 'owner', xml: lock.ownerXml });
  if (owner) item.append(owner);
  return item;
}

/** Copies between two names (of one storage, or from one account's to another's). */
async function copyFile(ctx: SessionContext, from: FileTarget, to: FileTarget): Promise<void> {
  const files = ctx.server.files;
  const source = await files.stat(from.owner, from.path);
  if (!source) throw new FileError('not-found', FILE_NOT_FOUND);
  if (source.kind !== 'file') throw new FileError('is-a-directory', `${from.path} is a directory`);
  if (from.owner.id === to.owner.id) {
    await files.copy(to.owner, from.path, to.path, { overwrite: true, depth: 0 }, conditions(ctx));
    return;
  }
  const { stream } = await files.open(from.owner, from.path);
  await files.write(to.owner, to.path, stream, { kind: 'replace' }, conditions(ctx));
}

function sameOwner(a: FileTarget, b: FileTarget): void {
  if (a.owner.id !== b.owner.id) throw new ServiceError('cannot rename between the File Storages of two accounts');
}

export const fileOperations: OperationTable = {
  fileList: fileOp(async (ctx) => {
    const files = ctx.server.files;
    const { directory, fileName } = ctx.request.attrs;
    if (directory === undefined && fileName !== undefined) {
      const t = await files.resolve(ctx.session.account, fileName, 'read');
      const entry = await files.stat(t.owner, t.path);
      if (!entry) throw new FileError('not-found', FILE_NOT_FOUND);
      ctx.send(fileInfo(ctx, entry, fileName, undefined));
      return;
    }
    const t = await files.resolve(ctx.session.account, directory ?? '', 'read');
    const entry = await files.stat(t.owner, t.path);
    if (!entry) throw new FileError('not-found', FILE_NOT_FOUND);
    if (entry.kind === 'file') {
      ctx.send(fileInfo(ctx, entry, directory!, undefined));
      return;
    }
    for (const child of await files.list(t.owner, t.path)) ctx.send(fileInfo(ctx, child, child.name, directory === '' ? undefined : directory));
  }),

  fileDirInfo: fileOp(async (ctx) => {
    const directory = ctx.request.attrs.directory;
    const t = await ctx.server.files.resolve(ctx.session.account, directory ?? '', 'read');
    const usage = await ctx.server.files.usage(t.owner, t.path);
    ctx.send(el('fileDirInfo', { directory, files: usage.files, size: usage.size, filesLimit: usage.filesLimit, sizeLimit: usage.sizeLimit }));
  }),

  fileDirList: fileOp(async (ctx) => {
    for (const directory of await ctx.server.files.directories(ctx.session.account)) ctx.send(el('fileDirName', { directory }));
  }),

  fileWrite: fileOp(async (ctx) => {
    const t = await target(ctx, 'fileName');
    const mode = writeMode(ctx.request.attrs.position);
    const data = writeData(ctx.request);
    await ctx.server.files.write(t.owner, t.path, data, mode, conditions(ctx));
  }),

  fileStore: fileOp(async (ctx) => {
    const t = await target(ctx, 'fileName');
    const { uploadID, folder, calendar } = ctx.request.attrs;
    const sources = [uploadID, folder, calendar].filter((v) => v !== undefined).length;
    if (sources !== 1) throw new ServiceError('exactly one of the uploadID, folder and calendar attributes is expected');
    const mode = writeMode(ctx.request.attrs.position);
    let data: Buffer | Readable;
    if (uploadID !== undefined) {
      const file = ctx.session.uploads.get(uploadID);
      if (!file) throw new ServiceError(`uploaded file not found: ${uploadID}`);
      data = createReadStream(file.path);
    } else {
      // A part of a message of an open folder, or of an item of an open calendar.
      data = await messagePart(ctx, ctx.request);
    }
    try {
      await ctx.server.files.write(t.owner, t.path, data, mode, conditions(ctx));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ServiceError(`uploaded file not found: ${uploadID}`);
      throw err;
    }
  }),

  fileRead: fileOp(async (ctx) => {
    const fileName = requiredAttr(ctx.request, 'fileName');
    const t = await ctx.server.files.resolve(ctx.session.account, fileName, 'read');
    const type = ctx.request.attrs.type;
    const position = numberAttr(ctx.request, 'position');
    const limit = numberAttr(ctx.request, 'limit');
    if (limit !== undefined && limit > MAX_READ_BYTES) throw new ServiceError(`the limit may not exceed ${MAX_READ_BYTES} bytes`);
    const whole = type === 'object' || type === 'xml' || type === 'vcard';
    if (whole && (position !== undefined || limit !== undefined)) throw new ServiceError(`position and limit cannot be used with type="${type}"`);
    if (type !== undefined && type !== 'binary' && !whole) throw new ServiceError(`unknown type: ${type.slice(0, 40)}`);
    const { entry, data } = await ctx.server.files.readRange(t.owner, t.path, position ?? 0, whole ? MAX_READ_BYTES + 1 : (limit ?? MAX_READ_BYTES));
    if (whole && data.length > MAX_READ_BYTES) throw new ServiceError(`the file is larger than ${MAX_READ_BYTES} bytes`);
    const message = el('fileData', {
      fileName,
      position: position ?? 0,
      slice: data.length,
      size: entry.size,
      timeModified: formatLocal(entry.modified, ctx.session.timeZone),
      type,
    });
    if (type === 'binary') message.add('base64', undefined, data.toString('base64'));
    else if (type === 'object') appendValue(message, parseObject(data.toString('utf8')));
    else if (type === 'vcard') message.append(toXml(vcardOf(() => parseVObject(data.toString('utf8')))));
    else if (type === 'xml') {
      try {
        message.append(parseXml(data.toString('utf8')));
      } catch (err) {
        if (err instanceof XmlParseError) throw new ServiceError(`the file is not valid XML: ${err.message}`);
        throw err;
      }
    } else if (data.length > 0) {
      // Text (UTF-8): what XML cannot carry (NUL and other controls) needs type="binary".
      const text = data.toString('utf8');
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/.test(text)) throw new ServiceError('the file data is not text: read it with type="binary"');
      message.append(text);
    }
    ctx.send(message);
  }),

  fileRename: fileOp(async (ctx) => {
    const from = await target(ctx, 'fileName');
    const to = await target(ctx, 'newName');
    sameOwner(from, to);
    await ctx.server.files.move(from.owner, from.path, to.path, { overwrite: false, kind: 'file' }, conditions(ctx));
  }),

  fileRemove: fileOp(async (ctx) => {
    const t = await target(ctx, 'fileName');
    await ctx.server.files.remove(t.owner, t.path, { recursive: false, kind: 'file' }, conditions(ctx));
  }),

  fileCopy: fileOp(async (ctx) => {
    const to = await target(ctx, 'newName');
    const copyMIME = ctx.request.element('copyMIME');
    const fileName = ctx.request.attrs.fileName;
    if ((copyMIME === undefined) === (fileName === undefined)) throw new ServiceError('either the fileName attribute or one copyMIME element is expected');
    if (copyMIME) {
      await ctx.server.files.write(to.owner, to.path, await messagePart(ctx, copyMIME), { kind: 'replace' }, conditions(ctx));
      return;
    }
    await copyFile(ctx, await ctx.server.files.resolve(ctx.session.account, fileName!, 'read'), to);
  }),

  fileDirCreate: fileOp(async (ctx) => {
    const t = await target(ctx, 'fileName');
    await ctx.server.files.createDirectory(t.owner, t.path, conditions(ctx));
  }),

  fileDirRename: fileOp(async (ctx) => {
    const from = await target(ctx, 'fileName');
    const to = await target(ctx, 'newName');
    sameOwner(from, to);
    await ctx.server.files.move(from.owner, from.path, to.path, { overwrite: false, kind: 'directory' }, conditions(ctx));
  }),

  fileDirRemove: fileOp(async (ctx) => {
    const t = await target(ctx, 'fileName');
    await ctx.server.files.remove(t.owner, t.path, { recursive: false, kind: 'directory' }, conditions(ctx));
  }),

  fileAttrRead: fileOp(async (ctx) => {
    const fileName = requiredAttr(ctx.request, 'fileName');
    const t = await ctx.server.files.resolve(ctx.session.account, fileName, 'read');
    if (!(await ctx.server.files.stat(t.owner, t.path))) throw new FileError('not-found', FILE_NOT_FOUND);
    const fields = ctx.request.elements('field').map((f) => f.text().trim());
    const all = await ctx.server.files.attributes(t.owner, t.path);
    const wanted = fields.length === 0 ? all : all.filter((a) => fields.includes(a.name) || fields.includes(localName(a.name)));
    const message = el('fileAttrData', { fileName });
    for (const attribute of wanted) message.append(attributeElement(attribute));
    ctx.send(message);
  }),

  fileAttrWrite: fileOp(async (ctx) => {
    const t = await target(ctx, 'fileName');
    const changes: FileAttributeChange[] = [];
    for (const element of ctx.request.elements()) {
      const { mode, ...attrs } = element.attrs;
      const name = clarkName(element);
      if (mode === 'delete') {
        changes.push({ mode: 'delete', name });
        continue;
      }
      const stored = new XmlElement(element.name, attrs, element.children);
      changes.push({ mode: mode === 'add' ? 'add' : 'replace', attribute: { name, xml: serialize(stored) } });
    }
    if (!(await ctx.server.files.stat(t.owner, t.path))) throw new FileError('not-found', FILE_NOT_FOUND);
    await ctx.server.files.updateAttributes(t.owner, t.path, changes, conditions(ctx));
  }),

  fileLock: fileOp(async (ctx) => {
    const fileName = requiredAttr(ctx.request, 'fileName');
    const t = await ctx.server.files.resolve(ctx.session.account, fileName, ctx.request.attrs.mode === 'testlock' ? 'read' : 'write');
    const files = ctx.server.files;
    const { mode, token, timeTill } = ctx.request.attrs;
    let expires: Date | undefined;
    if (timeTill !== undefined && timeTill !== '') {
      expires = parseLocalTime(timeTill, ctx.session.timeZone);
      if (!expires) throw new ServiceError(`invalid timeTill: ${timeTill.slice(0, 40)}`);
    }
    const message = el('fileLockData', { fileName });
    if (mode === 'lock') {
      let lock: FileLock;
      if (token !== undefined && token !== '') {
        lock = await files.refreshLock(t.owner, t.path, token, expires);
      } else {
        const scope = requiredAttr(ctx.request, 'scope');
        if (scope !== 'exclusive' && scope !== 'shared') throw new ServiceError(`invalid scope: ${scope.slice(0, 40)}`);
        const type = requiredAttr(ctx.request, 'type');
        const existing = await files.stat(t.owner, t.path);
        const create = ctx.request.attrs.create === 'yes';
        if (!existing && !create) throw new FileError('not-found', FILE_NOT_FOUND);
        const depthAttr = ctx.request.attrs.depth;
        const depth = depthAttr === '0' ? 0 : depthAttr === 'infinity' ? 'infinity' : existing?.kind === 'directory' ? 'infinity' : 0;
        const owner = ctx.request.element('owner');
        lock = await files.lock(t.owner, t.path, ctx.session.account, {
          scope,
          type,
          depth,
          ownerXml: owner ? serialize(owner) : '',
          expires,
          create,
        });
        if (!existing) message.setAttr('create', 'yes');
      }
      const tokens = tokensOf(ctx.session);
      if (tokens.size >= MAX_SESSION_TOKENS) tokens.delete(tokens.values().next().value!);
      tokens.add(lock.token);
      message.setAttr('token', lock.token);
      message.setAttr('expires', formatLocal(lock.expires, ctx.session.timeZone));
    } else if (mode === 'unlock') {
      const unlockToken = requiredAttr(ctx.request, 'token');
      await files.unlock(t.owner, t.path, unlockToken);
      tokensOf(ctx.session).delete(unlockToken);
    } else if (mode !== 'testlock') {
      throw new ServiceError(`invalid mode: ${(mode ?? '').slice(0, 40)} (lock, unlock or testlock)`);
    }
    for (const lock of await files.locks(t.owner, t.path)) message.append(lockData(ctx, lock));
    ctx.send(message);
  }),

  fileRights: fileOp(async (ctx) => {
    const fileName = requiredAttr(ctx.request, 'fileName');
    const t = await ctx.server.files.resolve(ctx.session.account, fileName, 'read');
    if (!(await ctx.server.files.stat(t.owner, t.path))) throw new FileError('not-found', FILE_NOT_FOUND);
    // Its owner, an administrator with CanAccessWebSites, or an account granted `w` may do
    // everything (r read, w write, d delete, a attributes, l lock); one granted `r` only reads.
    const access = await ctx.server.files.access(ctx.session.account, t.owner);
    ctx.send(el('rights', { fileName }, access === 'write' ? 'rwdal' : 'r'));
    const locks = await ctx.server.files.locks(t.owner, t.path);
    if (locks.length > 0) {
      const first = locks[0]!;
      ctx.send(el('lock', { scope: first.scope, type: first.type, expires: formatLocal(first.expires, ctx.session.timeZone) }));
    }
  }),

  fileSubList: fileOp(async (ctx) => {
    for (const fileName of await ctx.server.files.subscriptions(ctx.session.account)) ctx.send(el('fileSubscription', { fileName }));
  }),

  fileSubUpdate: fileOp(async (ctx) => {
    const changes = ctx.request.elements('fileSubscription').map((item) => ({ name: requiredAttr(item, 'fileName'), add: item.attrs.mode === 'add' }));
    await ctx.server.files.updateSubscriptions(ctx.session.account, changes);
  }),
};
