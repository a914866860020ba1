import { ServiceError } from '../../services/errors.js';
import { Flag, parseFlagChange } from '../../services/mail/flags.js';
import { parseSearch, SearchSyntaxError, type SearchOptions } from '../../services/mail/search.js';
import { NOT_FOUND, type MailboxHandle } from '../../services/mail/service.js';
import { prepareMessage } from '../../services/mail/new-message.js';
import type { ChangeSet, MessageMeta } from '../../store/store.js';
import { messageToXml, parseMime } from '../../services/mime/index.js';
import { DeadlineError, Slicer, sortInSlices } from '../../services/slices.js';
import { el } from '../../xml/element.js';
import { ianaTimeZone, parseGmt } from '../../xml/time.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import { requireUnlocked, smimeService } from './smime.js';
import {
  appendFields,
  createOption,
  initReport,
  limitAttr,
  messageSet,
  openFolder,
  setUids,
  syncReport,
  totalSizeLimitAttr,
  viewerFields,
  viewOptions,
  type OpenFolder,
} from '../folders.js';

/** Spec section "Mailbox (Folder) Operations". */

/** A long answer stops when its session has gone. */
const SESSION_CLOSED = 'the session is closed';

/** A content filter (folderOpen `filter`) could not decide every message within limits.filterSeconds. */
export const FILTER_TOO_SLOW = 'the filter takes too long on this mailbox: use folderSearch';

/**
 * Builds (or rebuilds) a folder's view from folderOpen/folderReopen attributes. Header
 * fields and content-filter decisions are made ready in slices (other clients are served
 * in between); a filter that cannot decide every message within limits.filterSeconds
 * fails the request (FILTER_TOO_SLOW) and nothing is opened. The decisions for messages
 * that arrive later are made the same way when the folder syncs.
 */
async function buildFolder(ctx: SessionContext, name: string, box: MailboxHandle, fields: string[]): Promise<OpenFolder> {
  const mail = ctx.server.mail;
  const session = ctx.session;
  const options = viewOptions(ctx.request, session, box);
  const index = await mail.index(box);
  const content = options.filter !== undefined ? mail.contentFilter(box, index, options.filterField, options.filter) : undefined;
  const viewFields = [...fields, options.sortField];
  const filterSeconds = ctx.server.config.limits.filterSeconds;
  const prepare = async (): Promise<void> => {
    try {
      await mail.prepareView(index, viewFields, content, new Slicer({ budgetMs: filterSeconds * 1000, cancelled: () => session.closed }));
    } catch (err) {
      if (err instanceof DeadlineError) throw new ServiceError(FILTER_TOO_SLOW);
      throw err;
    }
  };
  await prepare();
  if (content) options.contentFilter = content.test;
  const view = await mail.openView(box, options, fields, () => {
    session.sendAsync(el('folderReport', { folder: name, mode: 'notify' }));
  });
  return { name, box, view, fields, prepare };
}

/** folderClose (closeMailbox). */
const closeFolder = inSession((ctx) => {
  const folder = openFolder(ctx.session, ctx.request);
  folder.view.close();
  ctx.session.folders.delete(folder.name);
});

/** messageCopy and messageMove. */
async function copyMessages(ctx: SessionContext, move: boolean): Promise<void> {
  const folder = openFolder(ctx.session, ctx.request);
  const targetName = requiredAttr(ctx.request, 'targetMailbox');
  const uids = setUids(messageSet(ctx.request, folder), folder);
  const target = await ctx.server.mail.access(ctx.session.account, targetName, 'i', createOption(ctx.request));
  const mode = ctx.request.attrs.encrypt === 'yes' ? 'encrypt' : ctx.request.attrs.decrypt === 'yes' ? 'decrypt' : undefined;
  const copied = mode ? await copySmime(ctx, folder.box, uids, target, move, mode) : await ctx.server.mail.copy(folder.box, uids, target, move);
  if (ctx.request.attrs.report === 'uid') {
    for (const c of copied) ctx.send(el('messageAdded', { targetMailbox: targetName, UID: c.to }));
  }
}

/**
 * messageCopy/messageMove with encrypt="yes" (each message encrypted with the user's own
 * certificate) or decrypt="yes" (each encrypted message decrypted with the unlocked key):
 * messages already so are copied as they are. Each copy keeps the original's flags and
 * internal date; a move removes the originals once every copy is stored. One message at a time
 * is read, converted and stored (each may be up to smime.maxMessageBytes), and a request
 * converts at most smime.maxConvertMessages.
 */
async function copySmime(ctx: SessionContext, source: MailboxHandle, uids: readonly number[], target: MailboxHandle, move: boolean, mode: 'encrypt' | 'decrypt'): Promise<{ from: number; to: number }[]> {
  const mail = ctx.server.mail;
  const service = smimeService(ctx.server);
  const max = ctx.server.config.smime.maxConvertMessages;
  if (uids.length > max) throw new ServiceError(`too many messages to ${mode} at once (at most ${max}); select fewer`);
  const unlocked = mode === 'decrypt' ? requireUnlocked(ctx.session) : undefined;
  const own = mode === 'encrypt' ? await service.certificate(ctx.session.account) : undefined;
  if (mode === 'encrypt' && !own) throw new ServiceError('the account has no S/MIME certificate (see SMIMESet)');
  const copied: { from: number; to: number }[] = [];
  try {
    for (const uid of uids) {
      const meta = await mail.getMessage(source, uid);
      const raw = meta ? await mail.readRaw(source, uid) : undefined;
      if (!meta || !raw) continue;
      const converted = mode === 'encrypt' ? service.encryptStored(raw, own!) : service.decryptStored(raw, unlocked!);
      const [added] = await mail.append(target, [prepareMessage(converted ?? raw, { flags: meta.flags & ~Flag.Deleted, keywords: meta.keywords, internalDate: meta.internalDate })]);
      if (added) copied.push({ from: uid, to: added.uid });
    }
  } catch (err) {
    // A message that cannot be converted stops the request: the copies made before it are removed
    // again, so that the request does all or nothing (and a move removes no original).
    if (copied.length > 0) {
      const made = copied.map((c) => c.to);
      await mail.setFlags(target, made, { set: Flag.Deleted, clear: 0, addKeywords: [], removeKeywords: [] });
      await mail.expunge(target, made);
    }
    throw err;
  }
  if (move && copied.length > 0) {
    const from = copied.map((c) => c.from);
    await mail.setFlags(source, from, { set: Flag.Deleted, clear: 0, addKeywords: [], removeKeywords: [] });
    await mail.expunge(source, from);
  }
  return copied;
}

/**
 * Each open folder keeps a view of its whole mailbox (about 0.4 MB on 50,000 messages) and
 * hears of every change to it: bounded per session and per account (all its sessions).
 */
function checkFolderRoom(ctx: SessionContext): void {
  const { foldersPerSession, foldersPerAccount } = ctx.server.config.limits;
  if (ctx.session.folders.size >= foldersPerSession) throw new ServiceError(`too many open folders (at most ${foldersPerSession})`);
  let open = 0;
  for (const session of ctx.server.sessions.forAccount(ctx.session.account.id)) open += session.folders.size;
  if (open >= foldersPerAccount) throw new ServiceError(`too many open folders in this account's sessions (at most ${foldersPerAccount})`);
}

export const folderOperations: OperationTable = {
  folderOpen: inSession(async (ctx) => {
    const session = ctx.session;
    const name = requiredAttr(ctx.request, 'folder');
    if (session.folders.has(name)) throw new ServiceError('folder has already been opened');
    checkFolderRoom(ctx);
    const box = await ctx.server.mail.access(session.account, ctx.request.attrs.mailbox || name, 'r', createOption(ctx.request));
    const folder = await buildFolder(ctx, name, box, viewerFields(ctx.request));
    // Another request may have opened the same name (or other folders) while this one was reading.
    try {
      if (session.folders.has(name) || session.closed) throw new ServiceError('folder has already been opened');
      checkFolderRoom(ctx);
    } catch (err) {
      folder.view.close();
      throw err;
    }
    session.folders.set(name, folder);
    ctx.send(initReport(folder));
  }),

  folderReopen: inSession(async (ctx) => {
    const session = ctx.session;
    const old = openFolder(session, ctx.request);
    const fields = viewerFields(ctx.request);
    const box = await ctx.server.mail.current(old.box, 'r');
    const folder = await buildFolder(ctx, old.name, box, fields.length > 0 ? fields : old.fields);
    old.view.close();
    session.folders.set(old.name, folder);
    ctx.send(initReport(folder));
  }),

  folderClose: closeFolder,
  /** The spelling the spec's own example uses. */
  closeMailbox: closeFolder,

  folderBrowse: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    await ctx.server.mail.check(folder.box, 'r');
    const set = messageSet(ctx.request, folder);
    const rows: { position: number; meta: MessageMeta }[] = [];
    if (set.kind === 'index') {
      for (const position of set.positions) {
        const meta = folder.view.at(position);
        if (meta) rows.push({ position, meta });
      }
    } else {
      for (const uid of set.uids) {
        const position = folder.view.positionOf(uid);
        if (position >= 0) rows.push({ position, meta: folder.view.at(position)! });
      }
    }
    const index = folder.view.index;
    await ctx.server.mail.loadFields(index, folder.fields, rows.map((r) => r.meta.uid));
    const tz = ctx.session.timeZone;
    // A browse of a whole large view is a long answer: made in slices.
    const slicer = new Slicer({ cancelled: () => ctx.session.closed });
    for (const { position, meta } of rows) {
      if (!(await slicer.next())) throw new ServiceError(SESSION_CLOSED);
      const current = index.get(meta.uid) ?? meta;
      const report = el('folderReport', { folder: folder.name, index: position, UID: meta.uid });
      appendFields(report, folder, current, tz);
      ctx.send(report);
    }
  }),

  folderSync: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const limit = limitAttr(ctx.request);
    await ctx.server.mail.check(folder.box, 'r');
    await folder.prepare();
    const tz = ctx.session.timeZone;
    for (const report of folder.view.sync(limit)) ctx.send(syncReport(folder, report, tz));
  }),

  folderSearch: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    await ctx.server.mail.check(folder.box, 'r');
    const filter = requiredAttr(ctx.request, 'filter');
    const limit = limitAttr(ctx.request) ?? Number.MAX_SAFE_INTEGER;
    const timeout = searchTimeout(ctx.request.attrs.timeout, ctx.server.config.limits.searchSeconds);
    const view = folder.view;
    const options: SearchOptions = { timeZone: ianaTimeZone(ctx.session.timeZone), maxSeq: view.length, maxUid: view.index.mailbox.uidNext - 1 };
    let program;
    try {
      program = parseSearch(filter, options);
    } catch (err) {
      if (err instanceof SearchSyntaxError || err instanceof RangeError) throw new ServiceError(`invalid search filter: ${err.message}`);
      throw err;
    }
    const set = messageSet(ctx.request, folder, true);
    const candidates =
      set.kind === 'uid'
        ? set.uids.map((uid) => ({ uid, seq: view.positionOf(uid) + 1 }))
        : set.positions.map((p) => ({ uid: view.at(p)?.uid ?? 0, seq: p + 1 }));
    const slicer = new Slicer({ budgetMs: timeout * 1000, cancelled: () => ctx.session.closed });
    const result = await ctx.server.mail.search(folder.box, view.index, { filter, options, program }, candidates, limit, slicer);
    const byUid = set.kind === 'uid';
    const message = el('folderSearchResult', {
      folder: folder.name,
      next: result.next === undefined ? undefined : byUid ? candidates[result.next]!.uid : candidates[result.next]!.seq - 1,
    });
    for (const uid of result.matched) {
      if (byUid) message.add('UID', undefined, String(uid));
      else message.add('index', undefined, String(view.positionOf(uid)));
    }
    ctx.send(message);
  }),

  /**
   * mailboxSync: every change since the client's syncID, from the store's journal. A
   * syncID is `<modseq>-<uidNext>` of the state the client has (messages with UIDs at or
   * above that uidNext are new to it), plus `-<uid>` when a limited answer stopped inside
   * the changes of one modseq.
   */
  mailboxSync: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    await ctx.server.mail.check(folder.box, 'r');
    const syncID = ctx.request.attrs.syncID ?? '0';
    const parsed = /^(\d+)(?:-(\d+)(?:-(\d+))?)?$/.exec(syncID);
    if (!parsed) throw new ServiceError('invalid syncID');
    const since = Number(parsed[1]);
    const knownUidNext = parsed[2] === undefined ? 0 : Number(parsed[2]);
    const afterUid = parsed[3] === undefined ? undefined : Number(parsed[3]);
    const limit = limitAttr(ctx.request) ?? Number.MAX_SAFE_INTEGER;
    const totalSizeLimit = totalSizeLimitAttr(ctx.request) ?? 0;
    // Inside a modseq: ask from the one before and skip what was already sent.
    const from = afterUid === undefined ? since : Math.max(0, since - 1);
    // The first sync, or a syncID older than the removal journal: every message is new. The
    // whole mailbox is then read in slices (other clients served in between), as of one modseq.
    const first = since === 0 && afterUid === undefined;
    const changes = first ? undefined : await ctx.server.mail.changesSince(folder.box, from);
    const full = !changes?.complete;
    // The state the answer brings the client to (the next syncID): the store's, as read.
    let modseq: number;
    let storeUidNext: number;
    let removed: ChangeSet['removed'] = [];
    let changed: readonly MessageMeta[];
    if (changes?.complete) ({ modseq, uidNext: storeUidNext, removed, changed } = changes);
    else ({ modseq, uidNext: storeUidNext, messages: changed } = await ctx.server.mail.snapshot(folder.box));
    const timeFrom = ctx.request.attrs.timeFrom === undefined ? undefined : parseGmt(ctx.request.attrs.timeFrom)?.getTime();
    const wanted = (e: { modseq: number; uid: number }): boolean =>
      full || afterUid === undefined || e.modseq > since || (e.modseq === since && e.uid > afterUid);
    // The entries (a whole mailbox on a full sync) are gathered and ordered in slices; each
    // new message goes out whole, in slices too.
    const slicer = new Slicer({ cancelled: () => ctx.session.closed });
    type Entry = { modseq: number; uid: number; removed?: { uid: number; origUid: number }; meta?: MessageMeta };
    const entries: Entry[] = [];
    try {
      for (const r of removed) if (wanted(r)) entries.push({ modseq: r.modseq, uid: r.uid, removed: r });
      for (let i = 0; i < changed.length; i++) {
        if ((i & 1023) === 0) await slicer.pace();
        const m = changed[i]!;
        if ((timeFrom === undefined || m.internalDate >= timeFrom) && wanted(m)) entries.push({ modseq: m.modseq, uid: m.uid, meta: m });
      }
      await sortInSlices(entries, (a, b) => a.modseq - b.modseq || a.uid - b.uid, slicer);
    } catch (err) {
      if (err instanceof DeadlineError) throw new ServiceError(SESSION_CLOSED);
      throw err;
    }
    const page = entries.slice(0, limit);
    const hasMore = page.length < entries.length;
    // Messages added since the folder last synced have no header viewer fields cached yet.
    await ctx.server.mail.loadFields(folder.view.index, folder.fields, page.flatMap((e) => (e.meta ? [e.uid] : [])));
    const tz = ctx.session.timeZone;
    const uidNext = full ? 0 : knownUidNext;
    for (const entry of page) {
      if (!(await slicer.next())) throw new ServiceError(SESSION_CLOSED);
      if (entry.removed) {
        ctx.send(el('mailboxSyncReport', { folder: folder.name, mode: 'removed', UID: entry.removed.uid, origUID: entry.removed.origUid }));
        continue;
      }
      const meta = entry.meta!;
      const isNew = meta.uid >= uidNext;
      const report = el('mailboxSyncReport', { folder: folder.name, mode: isNew ? 'added' : 'flagsUpdated', origUID: meta.origUid, UID: meta.uid });
      appendFields(report, folder, meta, tz);
      if (isNew) {
        const raw = await ctx.server.mail.readRaw(folder.box, meta.uid);
        if (raw) report.append(messageToXml(raw, parseMime(raw), { timeZone: tz, totalSizeLimit }));
      }
      ctx.send(report);
    }
    const last = page[page.length - 1];
    // Not the index's uidNext: messages may have arrived while this answer was made (it
    // yields), and they are new to the client.
    const next = hasMore && last ? `${last.modseq}-${uidNext}-${last.uid}` : `${modseq}-${storeUidNext}`;
    ctx.send(el('mailboxSyncReport', { folder: folder.name, mode: 'info', syncID: next, hasMore: hasMore ? 'yes' : undefined }));
  }),

  messageCopy: inSession((ctx) => copyMessages(ctx, false)),
  messageMove: inSession((ctx) => copyMessages(ctx, true)),

  messageMark: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    const flags = requiredAttr(ctx.request, 'flags');
    const change = parseFlagChange(flags, ctx.request.attrs.mode === 'delete');
    const uids = setUids(messageSet(ctx.request, folder), folder);
    await ctx.server.mail.setFlags(folder.box, uids, change);
  }),

  messageRemove: inSession(async (ctx) => {
    const session = ctx.session;
    const folder = openFolder(session, ctx.request);
    const uids = setUids(messageSet(ctx.request, folder), folder);
    const mode = ctx.request.attrs.mode ?? session.textPref('DeleteMode') ?? 'Move To Trash';
    const mail = ctx.server.mail;
    switch (mode.toLowerCase()) {
      case 'immediately':
        await mail.expunge(folder.box, uids);
        return;
      case 'mark':
        await mail.setFlags(folder.box, uids, { set: Flag.Deleted, clear: 0, addKeywords: [], removeKeywords: [] });
        return;
      case 'move to trash': {
        const trashName = session.textPref('TrashBox') || 'Trash';
        const trash = await mail.access(session.account, trashName, 'i', { mailboxClass: '' });
        if (trash.record.id === folder.box.record.id) await mail.expunge(folder.box, uids);
        else await mail.copy(folder.box, uids, trash, true);
        return;
      }
      default:
        throw new ServiceError(`unknown delete mode: ${mode}`);
    }
  }),

  folderExpunge: inSession(async (ctx) => {
    const folder = openFolder(ctx.session, ctx.request);
    await ctx.server.mail.expunge(folder.box);
  }),

  emptyTrash: inSession(async (ctx) => {
    const session = ctx.session;
    const trashName = session.textPref('TrashBox');
    if (!trashName) throw new ServiceError('no Trash mailbox is specified');
    let trash;
    try {
      trash = await ctx.server.mail.access(session.account, trashName, 'd');
    } catch (err) {
      if (err instanceof ServiceError && err.message === NOT_FOUND) return;
      throw err;
    }
    const index = await ctx.server.mail.index(trash);
    await ctx.server.mail.expunge(trash, [...index.byUid.keys()]);
  }),

  emptyMailbox: inSession(async (ctx) => {
    const box = await ctx.server.mail.access(ctx.session.account, requiredAttr(ctx.request, 'mailbox'), 'd');
    const duration = parseDuration(ctx.request.attrs.duration ?? '0');
    const keepAfter = Date.now() - duration * 1000;
    const index = await ctx.server.mail.index(box);
    const doomed = [...index.byUid.values()].filter((m) => duration === 0 || m.internalDate < keepAfter).map((m) => m.uid);
    await ctx.server.mail.expunge(box, doomed);
  }),
};

/**
 * folderSearch's `timeout` attribute (seconds, fractions allowed), capped by
 * limits.searchSeconds, which is also the default (and what a bad value gets).
 */
function searchTimeout(text: string | undefined, max: number): number {
  const asked = text === undefined ? NaN : Number(text);
  return Number.isFinite(asked) && asked > 0 ? Math.min(asked, max) : max;
}

/**
 * A "time delta" (CommuniGate style): seconds, or a number with s/m/h/d/w, e.g. `30d`,
 * `12h`, `never`/`0`.
 */
function parseDuration(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === '0' || t === '' || t === 'never' || t === 'all') return 0;
  const m = /^(\d+)\s*(s|sec|m|min|h|hour|hours|d|day|days|w|week|weeks)?$/.exec(t);
  if (!m) throw new ServiceError(`invalid duration: ${text}`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 's')[0]!;
  return n * ({ s: 1, m: 60, h: 3600, d: 86400, w: 604800 } as Record<string, number>)[unit]!;
}
