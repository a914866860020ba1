import { performance } from 'node:perf_hooks';
import {
  AlreadyExistsError,
  NotFoundError,
  QuotaExceededError,
  type AccountRecord,
  type AclEntryRecord,
  type ChangeSet,
  type MailboxRecord,
  type MailboxStats,
  type MessageMeta,
  type NewMessage,
  type AppendOptions,
  type FlagDelta,
  type QuotaCheck,
  type Store,
} from '../../store/store.js';
import type { XimssValue } from '../../xml/objects.js';
import { fullName, parseSizeSetting, type AccountService } from '../accounts.js';
import type { BusEvents, EventBus } from '../../bus/bus.js';
import { ServiceError } from '../errors.js';
import { decodeHeaderText, headerValue, parseHeaderBlock } from '../mime/index.js';
import { ChunkSizer, DeadlineError, Slicer, yieldToEventLoop } from '../slices.js';
import { listPattern } from '../wildcard.js';
import { ALL_RIGHTS, checkAclPattern, effectiveRights, hasRight, updateAcl } from './acl.js';
import { Flag, type FlagChange } from './flags.js';
import { FolderView, prepareOrder, type ViewOptions } from './folder-view.js';
import { MailboxIndex, type IndexUpdate } from './mailbox-index.js';
import { canonicalMailboxName, isOwnerAddress, MAX_OWNER_LENGTH, normalizeMailboxName, parseMailboxName } from './names.js';
import type { SearchOptions, SearchProgram } from './search.js';
import { ContentScanner } from './scanner.js';
import { searchable, type ContentScope } from './searchable.js';
import { headerFieldNeeded, headerInMeta, rawHeader } from './view-fields.js';
import { silentLogger, type Logger } from '../../log.js';

/** The error texts clients match (see INTEROP.md). */
export const ACCESS_DENIED = 'mailbox access denied';
export const NOT_FOUND = 'mailbox is not found';

/** The account's storage limit (MaxAccountSize) leaves no room: transports map it to their codes. */
export class StorageLimitError extends ServiceError {
  constructor() {
    super('mailbox is full: the account storage limit is exceeded');
  }
}

/** A mailbox a user has reached: its record, its owner, and what the user may do with it. */
export interface MailboxHandle {
  record: MailboxRecord;
  owner: AccountRecord;
  /** The account acting on the mailbox. */
  user: AccountRecord;
  /**
   * Effective rights of the user when the handle was made (all of them for the owner).
   * A handle lives as long as an open folder: every change re-checks the current ACL.
   */
  rights: string;
  /** True when the user owns the mailbox (no `rights` attribute is reported). */
  own: boolean;
  /** The name as the user spells it (`~owner@domain/name` for another account's). */
  displayName: string;
}

export interface ListedMailbox {
  name: string;
  record: MailboxRecord | undefined;
  stats: MailboxStats | undefined;
  pureFolder: boolean;
  isFolder: boolean;
  rights: string | undefined;
}

interface ResolvedName {
  owner: AccountRecord;
  /** The owner-relative name. */
  name: string;
  /** The prefix that names the owner (`~user@domain/`), '' for the user's own. */
  prefix: string;
}

/** A `~owner` list pattern may end its owner part with a few wildcards (`~bob*`). */
const WILDCARD_SLACK = 16;
/** Messages whose headers are read at once when caching header fields. */
const HEADER_BATCH = 500;
/** Unwatched mailbox indexes are dropped after this long without use. */
const INDEX_IDLE_MS = 10 * 60_000;
/**
 * Pages of a mailbox read in slices (see readMailbox): the first page's size, and the bounds
 * of the sizes that follow (each sized to take about one slice, SLICE_MS).
 */
const FIRST_PAGE = 500;
const MIN_PAGE = 200;
const MAX_PAGE = 5000;
/** Sliced loads of an index that may find the removal journal outrun before reading the mailbox in one piece. */
const SLICED_LOAD_ATTEMPTS = 2;

/**
 * A mailbox index being loaded (MailService.index): the load all first users share, and
 * what happened to the mailbox meanwhile that the loaded snapshot may not show.
 */
class IndexLoad {
  promise!: Promise<MailboxIndex>;
  /** Changes this process committed while the index loaded, applied over the snapshot. */
  readonly missed: IndexUpdate[] = [];
  /** The mailbox's new name, when it was renamed meanwhile. */
  renamed: string | undefined;
  /** The mailbox was removed meanwhile: the index is not kept. */
  removed = false;
  /** Another process changed the mailbox meanwhile: the index catches up once registered. */
  behind = false;
}

/** Receives a mailbox's messages as readMailbox reads them. */
interface MailboxSink {
  /** A message as read (replacing what was read of it before). */
  load(meta: MessageMeta): void;
  /** A message read before that has been removed since. */
  unload(uid: number): void;
}

/**
 * Mailboxes and messages: names (own, `~user@domain/...`, aliases), access control,
 * mailbox management, and every message change. Each change is decided and committed by
 * the store in one transaction (flag changes are deltas, quota checks are made there), then
 * applied to the mailbox's in-memory index (which tells the folders showing it), then
 * published on the bus (`mailboxChanged` with the new modseq).
 *
 * Other processes change mailboxes too (cluster nodes on one PostgreSQL database). Their
 * events make the indexes here catch up from the store's journal (`changesSince`) in modseq
 * order; so does a change of this process's own that arrives after a gap (a commit that
 * resolved out of order): an index never skips a modseq.
 */
export class MailService {
  private readonly indexes = new Map<number, MailboxIndex>();
  private readonly loading = new Map<number, IndexLoad>();
  private readonly sweeper: NodeJS.Timeout;
  /** Decides content scans (folderSearch, text filters) in a worker thread. */
  private readonly scanner = new ContentScanner();
  /** Indexes being caught up from the journal; `again` when asked again meanwhile. */
  private readonly catchingUp = new Map<number, { again: boolean }>();
  private readonly unsubscribe: (() => void)[];
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly bus: EventBus,
    private readonly log: Logger = silentLogger,
  ) {
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
    this.unsubscribe = [
      // This process's own changes reach its indexes directly (applyToIndex).
      bus.on('mailboxChanged', (event, remote) => remote && this.mailboxChanged(event)),
      bus.on('resync', () => {
        for (const id of this.indexes.keys()) this.catchUp(id);
      }),
    ];
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const stop of this.unsubscribe) stop();
    this.closed = true;
    this.indexes.clear();
    await this.scanner.close();
  }

  // -------------------------------------------------------------------------------------
  // Names and access

  /** Checks an own mailbox name's syntax and spells INBOX canonically (see names.ts). */
  static normalizeName(name: string): string {
    return normalizeMailboxName(name);
  }

  /** Resolves `name` as `user` spells it: own names, aliases, `~user[@domain]/name`. */
  private async resolve(user: AccountRecord, name: string, followAlias = true): Promise<ResolvedName> {
    const parsed = parseMailboxName(name);
    if (parsed.owner !== undefined) {
      const owner = await this.accounts.find(parsed.owner, user.domain);
      if (!owner) throw new ServiceError(NOT_FOUND);
      if (owner.id === user.id) return { owner: user, name: parsed.name, prefix: '' };
      return { owner, name: parsed.name, prefix: `~${fullName(owner)}/` };
    }
    const normalized = parsed.name;
    if (followAlias) {
      const alias = (await this.store.mail.aliases(user.id)).find((a) => a.name === normalized);
      if (alias) return this.resolve(user, alias.target, false);
    }
    return { owner: user, name: normalized, prefix: '' };
  }

  private rightsOf(user: AccountRecord, owner: AccountRecord, record: MailboxRecord): string {
    if (user.id === owner.id) return ALL_RIGHTS;
    return effectiveRights(record.acl, user.name, user.domain, owner.domain);
  }

  /**
   * Opens a mailbox for `user`, checking that the user has every right in `need`. With
   * `create`, a missing mailbox of the user's own is created with that class. INBOX always
   * exists.
   */
  async access(user: AccountRecord, name: string, need: string, create?: { mailboxClass: string }): Promise<MailboxHandle> {
    const resolved = await this.resolve(user, name);
    let record = await this.store.mail.getMailbox(resolved.owner.id, resolved.name);
    // Only a user's own mailboxes appear on demand (INBOX always; others when asked to create).
    if (!record && resolved.prefix === '' && (resolved.name === 'INBOX' || create)) {
      record = await this.createRecord(resolved.owner.id, resolved.name, resolved.name === 'INBOX' ? '' : create!.mailboxClass);
    }
    if (!record) throw new ServiceError(NOT_FOUND);
    const rights = this.rightsOf(user, resolved.owner, record);
    // Without the lookup right the mailbox does not exist for this user.
    if (!hasRight(rights, 'l') && !hasRight(rights, 'r')) throw new ServiceError(NOT_FOUND);
    for (const right of need) if (!hasRight(rights, right)) throw new ServiceError(ACCESS_DENIED);
    if (record.pureFolder && /[rid]/.test(need)) throw new ServiceError('this mailbox is a pure folder: it cannot contain messages');
    return { record, owner: resolved.owner, user, rights, own: resolved.prefix === '', displayName: resolved.prefix + resolved.name };
  }

  /**
   * Checks that the mailbox behind a handle still exists and that its current ACL grants
   * every right in `need` (ACLs change while folders are open); returns the current record.
   */
  private async recheck(box: MailboxHandle, need: string): Promise<MailboxRecord> {
    const record = await this.store.mail.getMailboxById(box.record.id);
    if (!record) throw new ServiceError(NOT_FOUND);
    const rights = this.rightsOf(box.user, box.owner, record);
    for (const right of need) if (!hasRight(rights, right)) throw new ServiceError(ACCESS_DENIED);
    return record;
  }

  /** Throws unless the user still has every right in `need` (for reads that use only the index). */
  async check(box: MailboxHandle, need: string): Promise<void> {
    if (!box.own) await this.recheck(box, need);
  }

  /**
   * The handle's mailbox as it is now (a folder follows its mailbox through renames, not
   * its old name), with the current ACL checked for every right in `need`.
   */
  async current(box: MailboxHandle, need: string): Promise<MailboxHandle> {
    const record = await this.recheck(box, need);
    const prefix = box.displayName.slice(0, box.displayName.length - box.record.name.length);
    return { ...box, record, rights: this.rightsOf(box.user, box.owner, record), displayName: prefix + record.name };
  }

  /** Making `name` in another account needs the create right on its parent (none at the top). */
  private async checkCreateRight(user: AccountRecord, target: ResolvedName): Promise<void> {
    if (target.prefix === '') return;
    const slash = target.name.lastIndexOf('/');
    if (slash < 0) throw new ServiceError(ACCESS_DENIED);
    await this.access(user, target.prefix + target.name.slice(0, slash), 'c');
  }

  private async createRecord(accountId: number, name: string, mailboxClass: string): Promise<MailboxRecord> {
    try {
      return await this.store.mail.createMailbox(accountId, name, mailboxClass, false);
    } catch (err) {
      if (err instanceof AlreadyExistsError) {
        const existing = await this.store.mail.getMailbox(accountId, name);
        if (existing) return existing;
      }
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------
  // Mailbox management

  async create(user: AccountRecord, name: string, mailboxClass = ''): Promise<void> {
    const resolved = await this.resolve(user, name, false);
    await this.checkCreateRight(user, resolved);
    let record: MailboxRecord;
    try {
      // A pure folder (made implicitly, or a hierarchy node) becomes the mailbox.
      record = await this.store.mail.createMailbox(resolved.owner.id, resolved.name, mailboxClass, false, { overPureFolder: true });
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ServiceError('mailbox already exists');
      throw err;
    }
    this.changed(resolved.owner.id, record.id, resolved.name);
  }

  async rename(user: AccountRecord, name: string, newName: string, children: boolean): Promise<void> {
    const box = await this.access(user, name, 'x');
    const target = await this.resolve(user, newName, false);
    if (target.owner.id !== box.owner.id) throw new ServiceError('cannot move a mailbox to another account');
    if (box.record.name === 'INBOX') throw new ServiceError('INBOX cannot be renamed');
    if (target.name === box.record.name) return;
    if (target.name.startsWith(box.record.name + '/')) throw new ServiceError('cannot rename a mailbox into itself');
    await this.checkCreateRight(user, target);
    const all = await this.store.mail.listMailboxes(box.owner.id);
    const renames = [{ from: box.record.name, to: target.name }];
    if (children) {
      for (const m of all) {
        if (m.name.startsWith(box.record.name + '/')) renames.push({ from: m.name, to: target.name + m.name.slice(box.record.name.length) });
      }
    }
    const moving = new Set(renames.map((r) => r.from));
    // Each child has its own ACL: moving another account's children needs x on each.
    for (const m of all) if (moving.has(m.name) && !hasRight(this.rightsOf(user, box.owner, m), 'x')) throw new ServiceError(ACCESS_DENIED);
    const staying = new Set(all.map((m) => m.name).filter((n) => !moving.has(n)));
    for (const r of renames) {
      if (staying.has(r.to)) throw new ServiceError(`mailbox ${r.to} already exists`);
    }
    await this.store.mail.renameMailboxes(box.owner.id, renames);
    // Open folders keep following their mailboxes (ids do not change): refresh the names.
    const newNames = new Map(renames.map((r) => [r.from, r.to]));
    for (const m of all) {
      const index = this.indexes.get(m.id);
      const name = newNames.get(m.name);
      if (name === undefined) continue;
      if (index) index.mailbox = { ...index.mailbox, name };
      const load = this.loading.get(m.id);
      if (load) load.renamed = name;
    }
    for (const r of renames) {
      this.changed(box.owner.id, undefined, r.from);
      this.changed(box.owner.id, undefined, r.to);
    }
  }

  async remove(user: AccountRecord, name: string, children: boolean): Promise<void> {
    const box = await this.access(user, name, 'x');
    if (box.record.name === 'INBOX') throw new ServiceError('INBOX cannot be removed');
    const all = await this.store.mail.listMailboxes(box.owner.id);
    const nested = all.filter((m) => m.name.startsWith(box.record.name + '/'));
    const doomed = children ? [box.record, ...nested] : [box.record];
    // Each child has its own ACL: removing another account's children needs x on each.
    for (const m of doomed) if (!hasRight(this.rightsOf(user, box.owner, m), 'x')) throw new ServiceError(ACCESS_DENIED);
    // Like IMAP: a mailbox with children turns into a pure folder instead.
    await this.store.mail.removeMailboxes(doomed.map((m) => m.id), { leavePureFolders: !children && nested.length > 0 });
    for (const m of doomed) {
      this.indexes.delete(m.id);
      const load = this.loading.get(m.id);
      if (load) load.removed = true;
      this.changed(box.owner.id, m.id, m.name);
    }
  }

  /**
   * mailboxList: the mailboxes `user` can see that match an IMAP LIST pattern (`*` any
   * characters, `%` any but `/`). A pattern starting with `~user@domain/` lists that
   * account's mailboxes, as its ACLs allow.
   */
  async list(user: AccountRecord, filter = '*', options: { mailboxClass?: string; pureFolders?: boolean } = {}): Promise<ListedMailbox[]> {
    let owner = user;
    let prefix = '';
    let pattern = filter === '' ? '*' : filter;
    if (pattern.startsWith('~')) {
      const slash = pattern.slice(0, MAX_OWNER_LENGTH + 2 + WILDCARD_SLACK).indexOf('/');
      let address = slash < 0 ? pattern.slice(1) : pattern.slice(1, slash);
      // `~user*` (or `%`) lists the account's mailboxes too: the wildcards after the owner go.
      let end = address.length;
      while (end > 0 && (address[end - 1] === '*' || address[end - 1] === '%')) end--;
      address = address.slice(0, end);
      if (!isOwnerAddress(address)) return [];
      const found = await this.accounts.find(address, user.domain);
      if (!found) return [];
      owner = found;
      if (owner.id !== user.id) prefix = `~${fullName(owner)}/`;
      pattern = slash < 0 ? '*' : pattern.slice(slash + 1);
    }
    const records = await this.store.mail.listMailboxes(owner.id);
    // INBOX always exists for its owner.
    if (owner.id === user.id && !records.some((r) => r.name === 'INBOX')) records.push(await this.createRecord(user.id, 'INBOX', ''));
    const stats = await this.store.mail.mailboxStats(owner.id);
    const byName = new Map(records.map((r) => [r.name, r]));
    // Hierarchy nodes that exist only as parents of other mailboxes show as pure folders.
    const names = new Set(byName.keys());
    const parents = new Set<string>();
    for (const r of records) {
      const parts = r.name.split('/');
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join('/');
        names.add(parent);
        parents.add(parent);
      }
    }
    const matcher = listPattern(pattern);
    const listed: ListedMailbox[] = [];
    for (const name of [...names].sort(compareMailboxNames)) {
      if (!matcher(name)) continue;
      const record = byName.get(name);
      const rights = record && owner.id !== user.id ? this.rightsOf(user, owner, record) : undefined;
      if (rights !== undefined && !hasRight(rights, 'l')) continue;
      if (!record && owner.id !== user.id) continue;
      const hasChildren = parents.has(name);
      let pure = !record || record.pureFolder;
      if (!pure && options.mailboxClass !== undefined && record!.mailboxClass !== options.mailboxClass) {
        // A mailbox of another class is shown as a pure folder, or not at all.
        if (!options.pureFolders) continue;
        pure = true;
      }
      if (pure && options.pureFolders === false) continue;
      listed.push({
        name: prefix + name,
        record: pure ? undefined : record,
        // Counts are message data: shown only to those who may read the mailbox.
        stats: pure || !record || (rights !== undefined && !hasRight(rights, 'r')) ? undefined : (stats.get(record.id) ?? EMPTY_STATS),
        pureFolder: pure,
        isFolder: !pure && hasChildren,
        rights,
      });
    }
    return listed;
  }

  async subscriptions(user: AccountRecord): Promise<string[]> {
    return this.store.mail.subscriptions(user.id);
  }

  /** Subscriptions need not name existing mailboxes, but every name is checked (names.ts). */
  async setSubscribed(user: AccountRecord, name: string, subscribed: boolean): Promise<void> {
    await this.store.mail.setSubscribed(user.id, canonicalMailboxName(name), subscribed);
  }

  async aliases(user: AccountRecord): Promise<{ name: string; target: string }[]> {
    return this.store.mail.aliases(user.id);
  }

  async setAlias(user: AccountRecord, name: string, target: string | null): Promise<void> {
    const normalized = normalizeMailboxName(name);
    let checked: string | null = null;
    if (target !== null) {
      if (target.trim() === '') throw new ServiceError('the alias target is empty');
      checked = canonicalMailboxName(target);
    }
    await this.store.mail.setAlias(user.id, normalized, checked);
  }

  async acl(user: AccountRecord, name: string): Promise<AclEntryRecord[]> {
    return (await this.access(user, name, 'a')).record.acl;
  }

  async updateAcl(user: AccountRecord, name: string, changes: readonly { pattern: string; rights: string; mode?: string }[]): Promise<void> {
    const box = await this.access(user, name, 'a');
    const checked = changes.map((change) => ({ ...change, pattern: checkAclPattern(change.pattern) }));
    // Applied to the ACL as stored, in one transaction: concurrent changes are not lost.
    await this.store.mail.updateMailboxAcl(box.record.id, (stored) => {
      let acl = [...stored];
      for (const change of checked) acl = updateAcl(acl, change.pattern, change.rights, change.mode);
      return acl;
    });
    this.changed(box.owner.id, box.record.id, box.record.name);
  }

  // -------------------------------------------------------------------------------------
  // Indexes and views

  /**
   * The shared in-memory index of a mailbox, loaded on first use; concurrent first users
   * share one load. A large mailbox is loaded in slices (see loadIndex), other clients
   * served in between.
   */
  async index(box: MailboxHandle): Promise<MailboxIndex> {
    const id = box.record.id;
    const existing = this.indexes.get(id);
    if (existing) {
      existing.lastUsed = Date.now();
      return existing;
    }
    let load = this.loading.get(id);
    if (!load) {
      const started = new IndexLoad();
      started.promise = this.loadIndex(id, started).finally(() => this.loading.delete(id));
      this.loading.set(id, (load = started));
    }
    return load.promise;
  }

  /**
   * Loads a mailbox's index in slices, exactly: the messages are read page by page (the
   * mailbox changing in between), then caught up with every change since the modseq noted
   * before the first page, which gives the mailbox as of one modseq (see readMailbox). The
   * changes this process commits meanwhile go to `load.missed` (the index is not registered
   * yet, so nothing else applies them) and those after that modseq are applied over it; the
   * index is then registered in the same step, so no change is lost in between. Should the
   * removal journal no longer reach back to the first page (a flood of expunges during a
   * long load), the load starts again, and after SLICED_LOAD_ATTEMPTS the mailbox is read in
   * one piece.
   */
  private async loadIndex(id: number, load: IndexLoad): Promise<MailboxIndex> {
    for (let attempt = 0; ; attempt++) {
      const start = await this.store.mail.getMailboxById(id);
      if (!start) throw new ServiceError(NOT_FOUND);
      const index = new MailboxIndex(start);
      const record = await this.readMailbox(start, index, attempt < SLICED_LOAD_ATTEMPTS);
      if (!record) continue;
      // From here to the registration nothing yields: every later change finds the index.
      index.settle(load.renamed === undefined ? record : { ...record, name: load.renamed });
      let gap = false;
      for (const update of load.missed.sort((a, b) => a.modseq - b.modseq)) {
        if (index.follows(update)) index.apply(update);
        else gap = true;
      }
      if (!load.removed && !this.closed) {
        this.indexes.set(id, index);
        if (gap || load.behind) this.catchUp(id);
      }
      return index;
    }
  }

  /**
   * Reads every message of a mailbox into `sink`, as of one modseq: with `sliced`, in pages
   * by UID, yielding to the event loop between them (each page sized to take about one
   * slice), then every change since `start.highestModseq` (the modseq before the first
   * page): messages changed or added since are read again, those removed since unloaded.
   * Every message present at the end either has not changed since `start` (so a page read
   * it as it is) or is among the changes; every message a page read that is gone was
   * removed after `start`, so the journal lists it. Resolves with the mailbox record as of
   * the modseq reached (its uidNext and highestModseq from the same snapshot as the
   * changes), or undefined when the journal no longer reaches back to `start` (read again).
   * Without `sliced`, one read in one piece (a snapshot of everything).
   */
  private async readMailbox(start: MailboxRecord, sink: MailboxSink, sliced: boolean): Promise<MailboxRecord | undefined> {
    const id = start.id;
    let since = start.highestModseq;
    if (sliced) {
      const sizer = new ChunkSizer(FIRST_PAGE, MIN_PAGE, MAX_PAGE);
      for (let afterUid = 0; ; ) {
        const began = performance.now();
        const page = await this.store.mail.listMessages(id, { afterUid, limit: sizer.size });
        for (const meta of page) sink.load(meta);
        if (page.length < sizer.size) break;
        afterUid = page[page.length - 1]!.uid;
        sizer.took(performance.now() - began);
        await yieldToEventLoop();
      }
    } else since = 0;
    let changes: ChangeSet;
    try {
      changes = await this.store.mail.changesSince(id, since);
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError(NOT_FOUND);
      throw err;
    }
    // Since 0 every message is among the changes: nothing removed needs unloading.
    if (sliced && !changes.complete) return undefined;
    for (const meta of changes.changed) sink.load(meta);
    if (sliced) for (const r of changes.removed) sink.unload(r.uid);
    return { ...start, uidNext: changes.uidNext, highestModseq: changes.modseq };
  }

  /**
   * Every message of a mailbox as of one modseq, in UID order, read in slices (see
   * readMailbox): for a full mailboxSync.
   */
  async snapshot(box: MailboxHandle): Promise<{ modseq: number; uidNext: number; messages: MessageMeta[] }> {
    return this.snapshotOf(box.record.id);
  }

  private async snapshotOf(mailboxId: number): Promise<{ modseq: number; uidNext: number; messages: MessageMeta[] }> {
    for (let attempt = 0; ; attempt++) {
      const start = await this.store.mail.getMailboxById(mailboxId);
      if (!start) throw new ServiceError(NOT_FOUND);
      const messages = new Map<number, MessageMeta>();
      const sink: MailboxSink = { load: (meta) => void messages.set(meta.uid, meta), unload: (uid) => void messages.delete(uid) };
      const record = await this.readMailbox(start, sink, attempt < SLICED_LOAD_ATTEMPTS);
      if (!record) continue;
      // In UID order: pages come in it, and what the catch-up adds came after the last page.
      const list = [...messages.values()];
      for (let i = 1; i < list.length; i++) {
        if (list[i - 1]!.uid > list[i]!.uid) {
          list.sort((a, b) => a.uid - b.uid);
          break;
        }
      }
      return { modseq: record.highestModseq, uidNext: record.uidNext, messages: list };
    }
  }

  /**
   * Applies a change just committed to the mailbox's index; while the index loads, keeps it
   * for the load to apply over its snapshot (see loadIndex).
   */
  private applyToIndex(mailboxId: number, update: IndexUpdate): void {
    const index = this.indexes.get(mailboxId);
    if (!index) this.loading.get(mailboxId)?.missed.push(update);
    else if (index.follows(update) && !this.catchingUp.has(mailboxId)) index.apply(update);
    // A change before this one has not been applied yet: the journal has them both.
    else this.catchUp(mailboxId);
  }

  /**
   * Another process (or this one) changed a mailbox: an index behind the event's modseq
   * catches up; a removed mailbox's index goes; a renamed one follows its new name.
   */
  private mailboxChanged(event: BusEvents['mailboxChanged']): void {
    const id = event.mailboxId;
    if (id === undefined || this.closed) return;
    const load = this.loading.get(id);
    if (load) {
      load.behind = true;
      return;
    }
    const index = this.indexes.get(id);
    if (!index) return;
    if (event.modseq !== undefined) {
      if (event.modseq > index.modseq) this.catchUp(id);
      return;
    }
    // Created, renamed, removed or its ACL changed: the record tells.
    void this.store.mail.getMailboxById(id).then(
      (record) => {
        if (this.indexes.get(id) !== index) return;
        if (!record) this.indexes.delete(id);
        else if (record.name !== index.mailbox.name) index.mailbox = { ...index.mailbox, name: record.name };
      },
      (err: unknown) => this.log.error({ event: 'mail.reread_failed', mailboxId: id, err }, 're-reading a mailbox record failed'),
    );
  }

  /**
   * Catches a mailbox's index up with the store: every change since its modseq, read from
   * the journal in one snapshot and applied in modseq order (reconciled with a fresh read
   * of the mailbox when the journal no longer reaches back that far). One catch-up per
   * index at a time; asked again meanwhile, it goes round once more.
   */
  private catchUp(mailboxId: number): void {
    const running = this.catchingUp.get(mailboxId);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    this.catchingUp.set(mailboxId, state);
    void (async () => {
      do {
        state.again = false;
        const index = this.indexes.get(mailboxId);
        if (!index || this.closed) return;
        let changes: ChangeSet;
        try {
          changes = await this.store.mail.changesSince(mailboxId, index.modseq);
        } catch (err) {
          if (err instanceof NotFoundError) {
            if (this.indexes.get(mailboxId) === index) this.indexes.delete(mailboxId);
            return;
          }
          throw err;
        }
        if (this.indexes.get(mailboxId) !== index) continue;
        if (changes.complete) index.catchUp(changes);
        else index.reconcile(await this.snapshotOf(mailboxId));
      } while (state.again);
    })()
      .catch((err: unknown) => this.log.error({ event: 'mail.catch_up_failed', mailboxId, err }, 'catching a mailbox index up failed'))
      .finally(() => this.catchingUp.delete(mailboxId));
  }

  /**
   * Opens a folder view. Header fields the view shows or sorts by that are not cached in
   * the metadata are read now; Recent flags are handed to this view and cleared.
   */
  async openView(box: MailboxHandle, options: ViewOptions, fields: readonly string[], onNotify: () => void): Promise<FolderView> {
    const index = await this.index(box);
    const slicer = new Slicer();
    await this.loadFields(index, [...fields, options.sortField], undefined, slicer);
    // This folder is the first to see the Recent messages: it shows them so, and the flag
    // is cleared for everyone else (an ordinary flag change other folders are told about).
    // They are taken at once (a folder opening meanwhile does not get them too) and cleared
    // in chunks, one transaction each, yielding between them.
    const recent = new Set(index.recent);
    if (recent.size > 0 && hasRight(box.rights, 's')) {
      for (const uid of recent) index.recent.delete(uid);
      await slicer.eachChunk([...recent], async (chunk) => {
        const result = await this.store.mail.updateFlags(index.mailbox.id, chunk, CLEAR_RECENT);
        if (result.changed.length === 0) return;
        this.applyToIndex(index.mailbox.id, { kind: 'flags', messages: result.changed, modseq: result.modseq });
        this.changed(box.owner.id, index.mailbox.id, index.mailbox.name, result.modseq);
      }, 500);
    }
    // The first view of this order sorts the whole mailbox: in slices, before the view is made.
    await prepareOrder(index, options.sortField, options.descending, slicer);
    const view = new FolderView(index, options, onNotify);
    view.recentAtOpen = recent;
    return view;
  }

  /**
   * Makes sure the header fields these viewer fields need are cached for these UIDs (all
   * the mailbox's messages when none are given). Most views need none: nothing is done.
   * Works in slices (see loadHeaders); true when it read anything.
   */
  async loadFields(index: MailboxIndex, fields: readonly string[], uids?: readonly number[], slicer = new Slicer()): Promise<boolean> {
    return this.loadHeaders(index, [...new Set(fields.map(headerFieldNeeded).filter((f): f is string => f !== undefined))], uids, slicer);
  }

  /**
   * Makes a view's needs ready for every message of the mailbox: the header fields it shows
   * or sorts by cached, and its content filter's decisions made, in slices (the filter's
   * within `filterSlicer`'s deadline: DeadlineError when it passes). Messages may arrive
   * while it yields, so it goes round until a round finds nothing to do; such a round does
   * not yield, and the view built right after finds everything ready.
   */
  async prepareView(index: MailboxIndex, fields: readonly string[], content: ContentFilter | undefined, filterSlicer: Slicer): Promise<void> {
    const slicer = new Slicer();
    for (;;) {
      const loaded = await this.loadFields(index, fields, undefined, slicer);
      const decided = content ? await content.decide(filterSlicer) : false;
      if (!loaded && !decided) return;
    }
  }

  /**
   * Caches the raw values of these header fields (lower-case names) for these UIDs (default:
   * all, including those that arrive meanwhile), HEADER_BATCH messages at a time, yielding
   * between slices; throws DeadlineError when the slicer's deadline passes. True when it read
   * anything.
   */
  private async loadHeaders(index: MailboxIndex, needed: readonly string[], uids: readonly number[] | undefined, slicer: Slicer): Promise<boolean> {
    if (needed.length === 0 || uids?.length === 0) return false;
    const caches = needed.map((field) => {
      let cache = index.fieldCache.get(field);
      if (!cache) index.fieldCache.set(field, (cache = new Map()));
      return cache;
    });
    let loaded = false;
    for (;;) {
      const missing = (uids ?? [...index.byUid.keys()]).filter((uid) => caches.some((cache) => !cache.has(uid)));
      if (missing.length === 0) return loaded;
      loaded = true;
      for (let start = 0; start < missing.length; start += HEADER_BATCH) {
        await slicer.pace();
        const batch = missing.slice(start, start + HEADER_BATCH);
        const headers = await this.store.mail.readHeaders(index.mailbox.id, batch);
        // Each header is parsed once for all the fields.
        for (const uid of batch) {
          const header = headers.get(uid);
          const parsed = header === undefined ? undefined : parseHeaderBlock(Buffer.from(header, 'latin1'));
          needed.forEach((field, i) => caches[i]!.set(uid, (parsed && headerValue(parsed.fields, field)) ?? ''));
        }
      }
      // Given UIDs are done; all of them: those that arrived while this yielded too.
      if (uids) return loaded;
    }
  }

  // -------------------------------------------------------------------------------------
  // Messages

  async readRaw(box: MailboxHandle, uid: number): Promise<Buffer | undefined> {
    await this.check(box, 'r');
    return this.store.mail.readRaw(box.record.id, uid);
  }

  async getMessage(box: MailboxHandle, uid: number): Promise<MessageMeta | undefined> {
    return this.indexes.get(box.record.id)?.get(uid) ?? this.store.mail.getMessage(box.record.id, uid);
  }

  /**
   * Appends messages (checks the insert right and the account's storage limit); with a
   * deliveryKey already used, nothing (see AppendOptions).
   */
  async append(box: MailboxHandle, messages: readonly NewMessage[], options: AppendOptions = {}): Promise<MessageMeta[]> {
    const replace = options.replace;
    const record = await this.recheck(box, replace ? 'id' : 'i');
    let result;
    try {
      result = await this.store.mail.append(box.record.id, messages, { ...options, quota: await this.quota(box.owner) });
    } catch (err) {
      if (err instanceof QuotaExceededError) throw new StorageLimitError();
      if (err instanceof NotFoundError) throw new ServiceError(err.message);
      throw err;
    }
    if (result.messages.length === 0 && result.replaced === null) return result.messages;
    this.applyToIndex(box.record.id, { kind: 'added', messages: result.messages, modseq: result.modseq, ...(result.replaced !== null ? { replaced: result.replaced } : {}) });
    this.changed(box.owner.id, box.record.id, record.name, result.modseq);
    return result.messages;
  }

  /**
   * Copies (or moves) messages; returns the source → new UID pairs. A large set is copied
   * in chunks (one transaction each, rights re-checked before each), yielding between them:
   * should a later chunk fail, the earlier ones stay done.
   */
  async copy(source: MailboxHandle, uids: readonly number[], target: MailboxHandle, move: boolean): Promise<{ from: number; to: number }[]> {
    let targetRecord = await this.recheck(target, 'i');
    let sourceRecord = await this.recheck(source, move ? 'rd' : 'r');
    // A move inside one account adds nothing to it.
    const quota = !move || target.owner.id !== source.owner.id ? await this.quota(target.owner) : undefined;
    const pairs: { from: number; to: number }[] = [];
    let first = true;
    await new Slicer().eachChunk(uids, async (chunk) => {
      if (!first) {
        targetRecord = await this.recheck(target, 'i');
        sourceRecord = await this.recheck(source, move ? 'rd' : 'r');
      }
      first = false;
      let result;
      try {
        result = await this.store.mail.copy(source.record.id, chunk, target.record.id, { move, ...(quota ? { quota } : {}) });
      } catch (err) {
        if (err instanceof QuotaExceededError) throw new StorageLimitError();
        throw err;
      }
      if (result.copied.length === 0) return;
      this.applyToIndex(target.record.id, { kind: 'added', messages: result.copied.map((c) => c.to), modseq: result.modseq });
      if (move) {
        this.applyToIndex(source.record.id, { kind: 'removed', uids: result.copied.map((c) => c.from), modseq: result.sourceModseq });
        this.changed(source.owner.id, source.record.id, sourceRecord.name, result.sourceModseq);
      }
      this.changed(target.owner.id, target.record.id, targetRecord.name, result.modseq);
      for (const c of result.copied) pairs.push({ from: c.from, to: c.to.uid });
    });
    return pairs;
  }

  /**
   * Changes flags. Rights: `s` for Seen, `d` for Deleted, `w` for the others; a change the
   * user may not make is refused as a whole.
   */
  async setFlags(box: MailboxHandle, uids: readonly number[], change: FlagChange): Promise<void> {
    const touched = change.set | change.clear;
    const others = touched & ~(Flag.Seen | Flag.Deleted);
    let need = '';
    if (touched & Flag.Seen) need += 's';
    if (touched & Flag.Deleted) need += 'd';
    if (others || change.addKeywords.length || change.removeKeywords.length) need += 'w';
    let record = await this.recheck(box, need);
    const delta: FlagDelta = change;
    let first = true;
    // A large set is changed in chunks (one transaction each), yielding between them; the
    // store applies the change to each message's flags as stored (other processes change
    // them too), and reports what it changed.
    await new Slicer().eachChunk(uids, async (chunk) => {
      if (!first) record = await this.recheck(box, need);
      first = false;
      const result = await this.store.mail.updateFlags(box.record.id, chunk, delta);
      if (result.changed.length === 0) return;
      this.applyToIndex(box.record.id, { kind: 'flags', messages: result.changed, modseq: result.modseq });
      this.changed(box.owner.id, box.record.id, record.name, result.modseq);
    }, 200);
  }

  async setAttrs(box: MailboxHandle, uid: number, attrs: { [key: string]: XimssValue } | null): Promise<void> {
    const record = await this.recheck(box, 'w');
    const result = await this.store.mail.setAttrs(box.record.id, uid, attrs);
    if (!result.changed) throw new ServiceError('message not found');
    this.applyToIndex(box.record.id, { kind: 'attrs', messages: [result.changed], modseq: result.modseq });
    this.changed(box.owner.id, box.record.id, record.name, result.modseq);
  }

  /** Physically removes messages (all Deleted ones when `uids` is undefined). */
  async expunge(box: MailboxHandle, uids?: readonly number[]): Promise<number> {
    const record = await this.recheck(box, 'd');
    const index = uids ? undefined : await this.index(box);
    const targets = uids ?? [...index!.byUid.values()].filter((m) => m.flags & Flag.Deleted).map((m) => m.uid);
    // A large set is removed in chunks (one transaction each), yielding between them.
    let removed = 0;
    let current = record;
    await new Slicer().eachChunk(targets, async (all) => {
      if (removed > 0) current = await this.recheck(box, 'd');
      // "All Deleted ones": those whose flag was cleared meanwhile (here or on another node) stay.
      const result = await this.store.mail.expunge(box.record.id, all, { onlyDeleted: index !== undefined });
      if (result.removed.length === 0) return;
      removed += result.removed.length;
      this.applyToIndex(box.record.id, { kind: 'removed', uids: result.removed.map((r) => r.uid), modseq: result.modseq });
      this.changed(box.owner.id, box.record.id, current.name, result.modseq);
    });
    return removed;
  }

  /**
   * A folder's content filter (folderOpen `filter` with `filterField` a header field,
   * `body`, or absent for any header or body): decides per message, reading what it
   * needs, and remembers the answers. Decisions are made in slices within a deadline
   * (see ContentFilter.decide).
   */
  contentFilter(box: MailboxHandle, index: MailboxIndex, field: string | undefined, text: string): ContentFilter {
    const needle = text.toLowerCase();
    const decided = new Map<number, boolean>();
    const where: ContentScope | 'header' = field === undefined ? 'any' : field.toLowerCase() === 'body' ? 'body' : 'header';
    const name = field?.toLowerCase() ?? '';
    /** Header filters are cheap: decided here, in slices. */
    const decideHeaders = async (pending: readonly number[], slicer: Slicer): Promise<void> => {
      if (!headerInMeta(name)) await this.loadHeaders(index, [name], pending, slicer);
      for (const uid of pending) {
        await slicer.pace();
        const meta = index.get(uid);
        if (!meta) continue;
        const value = rawHeader(meta, name, index.lookup);
        decided.set(uid, value !== undefined && value !== '' && decodeHeaderText(value).toLowerCase().includes(needle));
      }
    };
    /** Text filters read every message: decided by the scan worker. */
    const decideText = async (pending: readonly number[], scope: ContentScope, slicer: Slicer): Promise<void> => {
      const next = await this.scanner.scan(
        {
          count: pending.length,
          load: async (i) => {
            const uid = pending[i]!;
            const meta = index.get(uid);
            const raw = meta && (await this.store.mail.readRaw(box.record.id, uid));
            if (!meta || !raw) {
              decided.set(uid, false);
              return undefined;
            }
            return { uid, seq: 0, meta, raw };
          },
          job: (items) => ({ kind: 'contains', needle, scope, deadline: Date.now() + slicer.remainingMs, examineFirst: false, items }),
          take: (i, found) => {
            decided.set(pending[i]!, found);
            return true;
          },
        },
        () => slicer.expired,
      );
      if (next !== undefined) throw new DeadlineError();
    };
    const decide = async (slicer: Slicer): Promise<boolean> => {
      let any = false;
      // Messages may arrive while this waits: round again until none is left undecided.
      for (;;) {
        const pending = [...index.byUid.keys()].filter((uid) => !decided.has(uid));
        if (pending.length === 0) return any;
        any = true;
        await (where === 'header' ? decideHeaders(pending, slicer) : decideText(pending, where, slicer));
      }
    };
    return { decide, test: (uid) => decided.get(uid) ?? false };
  }

  /**
   * folderSearch: runs an IMAP SEARCH program over candidate messages in order, up to
   * `limit` matches or the slicer's deadline; `next` is the first candidate not examined.
   * A program that needs only the metadata runs here in slices; one that reads header
   * fields or text runs in the scan worker (scanner.ts), which checks the deadline before
   * each message and between the text parts of one, while this thread serves other
   * clients. Each message's text is examined up to SEARCH_TEXT_BYTES. The first candidate
   * is always examined, so that a client going on from `next` always progresses.
   */
  async search(
    box: MailboxHandle,
    index: MailboxIndex,
    query: SearchQuery,
    candidates: readonly { uid: number; seq: number }[],
    limit: number,
    slicer: Slicer,
  ): Promise<{ matched: number[]; next: number | undefined }> {
    const { program } = query;
    const matched: number[] = [];
    if (program.needsHeaders || program.needsBody) {
      const next = await this.scanner.scan(
        {
          count: candidates.length,
          load: async (i) => {
            const c = candidates[i]!;
            const meta = index.get(c.uid);
            if (!meta) return undefined;
            const header = program.needsHeaders ? (await this.store.mail.readHeaders(box.record.id, [c.uid])).get(c.uid) : undefined;
            const raw = program.needsBody ? await this.store.mail.readRaw(box.record.id, c.uid) : undefined;
            return { uid: c.uid, seq: c.seq, meta, header, raw };
          },
          job: (items, first) => ({
            kind: 'search',
            filter: query.filter,
            options: query.options,
            deadline: Date.now() + slicer.remainingMs,
            examineFirst: first,
            items,
          }),
          take: (i, found) => {
            if (found) matched.push(candidates[i]!.uid);
            return matched.length < limit;
          },
        },
        () => slicer.expired,
      );
      return { matched, next };
    }
    let examined = 0;
    for (let i = 0; i < candidates.length; i++) {
      if (examined > 0 && !(await slicer.next())) return { matched, next: i };
      const c = candidates[i]!;
      const meta = index.get(c.uid);
      if (!meta) continue;
      examined++;
      if (program.matches(searchable(meta, c.seq, undefined, undefined))) {
        matched.push(c.uid);
        if (matched.length >= limit) return { matched, next: i + 1 < candidates.length ? i + 1 : undefined };
      }
    }
    return { matched, next: undefined };
  }

  async changesSince(box: MailboxHandle, modseq: number): Promise<ChangeSet> {
    return this.store.mail.changesSince(box.record.id, modseq);
  }

  /** Bytes stored and the limit (MaxAccountSize), for readStatus and quota checks. */
  async usage(account: AccountRecord): Promise<{ used: number; limit: number | undefined }> {
    return { used: await this.store.mail.accountUsage(account.id), limit: await this.storageLimit(account) };
  }

  /** MaxAccountSize in bytes; undefined when unlimited (the default). */
  private async storageLimit(account: AccountRecord): Promise<number | undefined> {
    return parseSizeSetting((await this.accounts.effectiveSettings(account)).MaxAccountSize);
  }

  /** Bytes the account may still take; undefined without a limit (the usage is then not summed). */
  async room(account: AccountRecord): Promise<number | undefined> {
    const limit = await this.storageLimit(account);
    return limit === undefined ? undefined : Math.max(0, limit - (await this.store.mail.accountUsage(account.id)));
  }

  /** The account's storage limit as the store checks it in the transaction that adds (none when unlimited). */
  private async quota(owner: AccountRecord): Promise<QuotaCheck | undefined> {
    const limit = await this.storageLimit(owner);
    return limit === undefined ? undefined : { accountId: owner.id, limit };
  }

  /** Tells every process (and this one's sessions) that a mailbox changed; `modseq` when its messages did. */
  private changed(accountId: number, mailboxId: number | undefined, name: string, modseq?: number): void {
    this.bus.publish('mailboxChanged', modseq === undefined ? { accountId, mailboxId, name } : { accountId, mailboxId, name, modseq });
  }

  /**
   * Drops indexes nobody watches that have not been used for a while, and checks that the
   * watched ones are current: a change whose process died between its commit and its event
   * reached no other process, and is caught up here (one read for all of them).
   */
  private sweep(): void {
    const now = Date.now();
    for (const [id, index] of this.indexes) {
      if (!index.watched && now - index.lastUsed > INDEX_IDLE_MS) this.indexes.delete(id);
    }
    const watched = [...this.indexes].filter(([, index]) => index.watched);
    if (watched.length === 0) return;
    this.store.mail.highestModseqs(watched.map(([id]) => id)).then(
      (modseqs) => {
        for (const [id, index] of watched) {
          const modseq = modseqs.get(id);
          if (modseq === undefined || modseq > index.modseq) this.catchUp(id);
        }
      },
      (err: unknown) => this.log.error({ event: 'mail.check_failed', err }, 'checking the open mailboxes failed'),
    );
  }
}

/** A folderSearch filter as the client wrote it, how it is read, and its compiled program. */
export interface SearchQuery {
  filter: string;
  options: SearchOptions;
  program: SearchProgram;
}

export interface ContentFilter {
  /**
   * Decides for every message not decided yet (also those arriving meanwhile), in slices;
   * throws DeadlineError when the slicer's deadline passes (what was decided is kept). True
   * when there was anything to decide.
   */
  decide(slicer: Slicer): Promise<boolean>;
  test(uid: number): boolean;
}

/** What opening a folder does to the Recent messages it shows. */
const CLEAR_RECENT: FlagDelta = { set: 0, clear: Flag.Recent, addKeywords: [], removeKeywords: [] };

const EMPTY_STATS: MailboxStats = { messages: 0, unseen: 0, media: 0, unseenMedia: 0, size: 0, oldest: null };

/** INBOX first, then by name. */
function compareMailboxNames(a: string, b: string): number {
  const ai = a === 'INBOX' || a.startsWith('INBOX/');
  const bi = b === 'INBOX' || b.startsWith('INBOX/');
  if (ai !== bi) return ai ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
