import { ServiceError } from '../services/errors.js';
import { Flag, parseFlagFilter } from '../services/mail/flags.js';
import type { FolderView, FolderReport, ViewOptions } from '../services/mail/folder-view.js';
import type { MailboxHandle } from '../services/mail/service.js';
import { fieldValue } from '../services/mail/view-fields.js';
import type { MessageMeta } from '../store/store.js';
import { el, XmlElement, xmlSafe } from '../xml/element.js';
import { formatLocal, formatUtc } from '../xml/time.js';
import { requiredAttr } from './engine.js';
import type { Session } from './session.js';

/** A folder a session has open: the mailbox it shows, its view, and its viewer fields. */
export interface OpenFolder {
  name: string;
  box: MailboxHandle;
  view: FolderView;
  fields: string[];
  /**
   * Makes content-filter decisions and header fields ready for messages the view has not
   * seen (in slices; a filter past limits.filterSeconds fails with FILTER_TOO_SLOW, keeping
   * the decisions made so far).
   */
  prepare(): Promise<void>;
}

export const FOLDER_NOT_OPEN = 'folder has not been opened';

/** The open folder named by the request's `folder` attribute. */
export function openFolder(session: Session, request: XmlElement): OpenFolder {
  const folder = session.folders.get(requiredAttr(request, 'folder'));
  if (!folder) throw new ServiceError(FOLDER_NOT_OPEN);
  return folder;
}

/** The `limit` attribute (folderSync, folderSearch, mailboxSync): a count of at least 1, or undefined. */
export function limitAttr(request: XmlElement): number | undefined {
  const text = request.attrs.limit;
  if (text === undefined) return undefined;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1) throw new ServiceError('invalid limit');
  return limit;
}

/** The `totalSizeLimit` attribute (folderRead, mailboxSync): a number of bytes, or undefined. */
export function totalSizeLimitAttr(request: XmlElement): number | undefined {
  const text = request.attrs.totalSizeLimit;
  if (text === undefined) return undefined;
  const limit = Number(text);
  if (!Number.isFinite(limit) || limit < 0) throw new ServiceError('invalid totalSizeLimit');
  return limit;
}

/**
 * The `mailboxClass` attribute as MailService.access's `create` option: a request that
 * names a class (even '') has its target mailbox created when missing.
 */
export function createOption(request: XmlElement): { mailboxClass: string } | undefined {
  const mailboxClass = request.attrs.mailboxClass;
  return mailboxClass === undefined ? undefined : { mailboxClass };
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9._-]*$/;
/** Each header field a folder shows is cached for every message of the mailbox. */
const MAX_VIEWER_FIELDS = 64;

/** The `<field>` elements of folderOpen/folderReopen: names are echoed as element names. */
export function viewerFields(request: XmlElement): string[] {
  const fields: string[] = [];
  for (const f of request.elements('field')) {
    const name = f.text().trim();
    if (!XML_NAME.test(name)) throw new ServiceError(`invalid viewer field name: ${JSON.stringify(name)}`);
    if (!fields.includes(name)) fields.push(name);
    if (fields.length > MAX_VIEWER_FIELDS) throw new ServiceError(`too many viewer fields (at most ${MAX_VIEWER_FIELDS})`);
  }
  return fields;
}

/** View options from folderOpen/folderReopen attributes and the DeleteMode preference. */
export function viewOptions(request: XmlElement, session: Session, box: MailboxHandle): ViewOptions & { filter?: string; filterField?: string } {
  const a = request.attrs;
  const sortField = a.sortField && a.sortField !== '' ? a.sortField : 'INTERNALDATE';
  if (!XML_NAME.test(sortField)) throw new ServiceError(`invalid sortField: ${JSON.stringify(sortField)}`);
  const hideDeleted = a.hideDeleted !== undefined ? a.hideDeleted === 'yes' : session.prefs.DeleteMode !== 'Mark';
  let uidMin = 0;
  if (a.UIDValidity !== undefined && a.UIDMin !== undefined && Number(a.UIDValidity) === box.record.uidValidity) {
    uidMin = Number(a.UIDMin) || 0;
  }
  const filter = a.filter !== undefined && a.filter !== '' ? a.filter : undefined;
  const flagFilter = filter !== undefined && a.filterField?.toUpperCase() === 'FLAGS' ? parseFlagFilter(filter) : undefined;
  return {
    sortField,
    descending: a.sortOrder?.toLowerCase() === 'desc',
    hideDeleted,
    uidMin,
    flagFilter,
    contentFilter: undefined,
    filter: flagFilter ? undefined : filter,
    filterField: flagFilter ? undefined : a.filterField,
  };
}

export type MessageSet = { kind: 'uid'; uids: number[] } | { kind: 'index'; positions: number[] };

function setNumber(text: string | undefined, what: string): number {
  const n = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isInteger(n) || n < 0) {
    throw new ServiceError(`invalid ${what} in the message set: ${JSON.stringify(text ?? '')}`);
  }
  return n;
}

/**
 * Hands out each of the positions 0..length-1 at most once, however many overlapping ranges
 * ask for them: skip pointers (path halving) make the work proportional to what is handed
 * out, so that a request repeating a huge range costs no more than one such range.
 */
class Once {
  private readonly next: Int32Array;

  constructor(length: number) {
    this.next = new Int32Array(length + 1);
    for (let i = 0; i <= length; i++) this.next[i] = i;
  }

  private find(i: number): number {
    while (this.next[i] !== i) {
      this.next[i] = this.next[this.next[i]!]!;
      i = this.next[i]!;
    }
    return i;
  }

  /** Calls `take` for every position in [from, till] not handed out before, ascending. */
  range(from: number, till: number, take: (position: number) => void): void {
    for (let i = this.find(from); i <= till; i = this.find(i + 1)) {
      take(i);
      this.next[i] = i + 1;
    }
  }
}

/** The first position in ascending `sorted` whose value is at least `value`. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A message set: `<UID>n</UID>`, `<UID from till/>`, `<index>n</index>`, `<index from
 * till/>` (also spelled `uid`). UID ranges cover the mailbox's existing messages; index
 * ranges are clamped to the view. Each message is named once, in the order first asked.
 */
export function messageSet(request: XmlElement, folder: OpenFolder, optional = false): MessageSet {
  const uidElements = request.children.filter((c): c is XmlElement => typeof c !== 'string' && (c.name === 'UID' || c.name === 'uid'));
  const indexElements = request.elements('index');
  if (uidElements.length > 0 && indexElements.length > 0) throw new ServiceError('a message set cannot mix UID and index elements');
  if (uidElements.length === 0 && indexElements.length === 0) {
    if (optional) return { kind: 'index', positions: Array.from({ length: folder.view.length }, (_, i) => i) };
    throw new ServiceError('the message set is empty');
  }
  if (uidElements.length > 0) {
    const uids: number[] = [];
    const seen = new Set<number>();
    const add = (uid: number) => {
      if (!seen.has(uid)) {
        seen.add(uid);
        uids.push(uid);
      }
    };
    // Ranges walk the mailbox's UIDs, sorted once; `once` keeps repeated ranges cheap.
    let existing: number[] | undefined;
    let once: Once | undefined;
    for (const e of uidElements) {
      if (e.attrs.from !== undefined || e.attrs.till !== undefined) {
        const from = setNumber(e.attrs.from ?? '0', 'UID');
        const till = e.attrs.till === undefined ? Number.MAX_SAFE_INTEGER : setNumber(e.attrs.till, 'UID');
        existing ??= [...folder.view.index.byUid.keys()].sort((a, b) => a - b);
        once ??= new Once(existing.length);
        const sorted = existing;
        once.range(lowerBound(sorted, from), lowerBound(sorted, till + 1) - 1, (i) => add(sorted[i]!));
      } else add(setNumber(e.text().trim(), 'UID'));
    }
    return { kind: 'uid', uids };
  }
  const positions: number[] = [];
  const last = folder.view.length - 1;
  const once = new Once(folder.view.length);
  for (const e of indexElements) {
    if (e.attrs.from !== undefined || e.attrs.till !== undefined) {
      const from = setNumber(e.attrs.from ?? '0', 'index');
      const till = Math.min(e.attrs.till === undefined ? last : setNumber(e.attrs.till, 'index'), last);
      if (from <= till) once.range(from, till, (i) => positions.push(i));
    } else {
      const i = setNumber(e.text().trim(), 'index');
      if (i <= last) once.range(i, i, (p) => positions.push(p));
    }
  }
  return { kind: 'index', positions };
}

/** The UIDs a message set names (index positions mapped through the view). */
export function setUids(set: MessageSet, folder: OpenFolder): number[] {
  if (set.kind === 'uid') return set.uids;
  const uids: number[] = [];
  for (const p of set.positions) {
    const meta = folder.view.at(p);
    if (meta) uids.push(meta.uid);
  }
  return uids;
}

/** Appends the viewer field elements of one message to a folderReport. */
export function appendFields(report: XmlElement, folder: OpenFolder, meta: MessageMeta, timeZone: string): void {
  const index = folder.view.index;
  // A message removed from the mailbox but still in the client's view shows its flags only.
  const gone = !index.get(meta.uid);
  // The folder that took the Recent flags over shows them.
  const shown = folder.view.recentAtOpen.has(meta.uid) ? { ...meta, flags: meta.flags | Flag.Recent } : meta;
  for (const field of folder.fields) {
    const upper = field.toUpperCase();
    if (gone && upper !== 'FLAGS' && upper !== 'UID') {
      report.add(field, undefined, '');
      continue;
    }
    // Header text comes from the mail as it arrived: controls (NUL ends a TCP frame) are dropped.
    const value = fieldValue(field, shown, index.lookup);
    if (value.kind === 'text') report.add(field, undefined, xmlSafe(value.text));
    else if (value.kind === 'date') {
      const date = new Date(value.time);
      report.add(field, { localTime: formatLocal(date, timeZone) }, formatUtc(date));
    } else if (value.list.length === 0) report.add(field, undefined, '');
    else for (const a of value.list) report.add(field, { realName: (a.realName && xmlSafe(a.realName)) || undefined }, xmlSafe(a.address));
  }
}

/** The `folderReport` for one sync report. */
export function syncReport(folder: OpenFolder, report: FolderReport, timeZone: string): XmlElement {
  if (report.mode === 'removed') {
    return el('folderReport', {
      folder: folder.name,
      index: report.index,
      UID: report.uid,
      mode: 'removed',
      messages: report.messages,
      unseen: report.unseen,
    });
  }
  const message = el('folderReport', {
    folder: folder.name,
    index: report.index,
    UID: report.meta.uid,
    mode: report.mode,
    messages: report.mode === 'added' ? report.messages : undefined,
    unseen: report.unseen,
  });
  appendFields(message, folder, report.meta, timeZone);
  return message;
}

/** `folderReport mode="init"`: the view's size and the mailbox's identity. */
export function initReport(folder: OpenFolder): XmlElement {
  const record = folder.view.index.mailbox;
  return el('folderReport', {
    folder: folder.name,
    mode: 'init',
    messages: folder.view.length,
    unseen: folder.view.unseen,
    rights: folder.box.own ? undefined : folder.box.rights,
    UIDValidity: record.uidValidity,
    UIDNext: record.uidNext,
  });
}
