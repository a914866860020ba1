import type { MessageMeta } from '../../store/store.js';
import { sortInSlices, type Slicer } from '../slices.js';
import { Flag, matchesFlagFilter, type FlagFilter } from './flags.js';
import type { MailboxIndex } from './mailbox-index.js';
import { sortKey, sortKeyIsMetadata, sortKeyIsMutable } from './view-fields.js';

export interface ViewOptions {
  /** Viewer field to sort by (default INTERNALDATE). */
  sortField: string;
  descending: boolean;
  hideDeleted: boolean;
  /** Only messages with UID >= uidMin (folderOpen UIDValidity/UIDMin). */
  uidMin: number;
  /** Membership by flags (filterField="FLAGS"). */
  flagFilter: FlagFilter | undefined;
  /**
   * Membership by content (header field, body, any): decided once per message by the
   * mail service before the view sees it, since it may need the message read.
   */
  contentFilter: ((uid: number) => boolean) | undefined;
}

export type FolderReport =
  | { mode: 'removed'; index: number; uid: number; messages: number; unseen: number }
  | { mode: 'added'; index: number; meta: MessageMeta; messages: number; unseen: number }
  | { mode: 'updated' | 'attrsUpdated'; index: number; meta: MessageMeta; unseen: number };

type Key = string | number;

function compareKeys(a: Key, b: Key): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/** A message's sort key in a view sorted by `field` (header-derived keys cached in the index). */
function viewKey(index: MailboxIndex, field: string, meta: MessageMeta): Key {
  // Metadata keys (FLAGS, the one that changes, among them) are cheap to compute; only
  // header-derived text keys are worth caching.
  if (sortKeyIsMetadata(field)) return sortKey(field, meta, index.lookup);
  let cache = index.keyCache.get(field);
  if (!cache) index.keyCache.set(field, (cache = new Map()));
  let key = cache.get(meta.uid);
  if (key === undefined) cache.set(meta.uid, (key = sortKey(field, meta, index.lookup)));
  return key;
}

function orderCacheKey(field: string, descending: boolean): string {
  return `${field.toLowerCase()}\u0000${descending ? 'd' : 'a'}`;
}

/** The index's cached order for this sort, when it is still valid (see FolderView.sortedMailbox). */
function cachedOrder(index: MailboxIndex, field: string, descending: boolean): { version: number; metaVersion: number; order: MessageMeta[] } | undefined {
  const cached = index.sortCache.get(orderCacheKey(field, descending));
  if (!cached || cached.version !== index.membershipVersion) return undefined;
  // An order by flags is also outdated by any flag change.
  if (sortKeyIsMutable(field) && cached.metaVersion !== index.metaVersion) return undefined;
  return cached;
}

/** Sorts of a whole mailbox in slices (prepareOrder) that may find the mailbox changed before the view sorts it in one piece. */
const ORDER_ATTEMPTS = 3;

/**
 * Makes the index's order of every message for this sort ready, in slices (keys computed
 * and sorted SORT_STEP messages at a time, other clients served in between), for the
 * FolderView built right after to find it cached. The header fields the sort needs must be
 * loaded (MailService.loadFields). Messages coming or going meanwhile (or, for an order by
 * flags, flags changing) outdate the order: it is made again, and after ORDER_ATTEMPTS
 * left to the view, which sorts in one piece.
 */
export async function prepareOrder(index: MailboxIndex, field: string, descending: boolean, slicer: Slicer): Promise<void> {
  for (let attempt = 0; attempt < ORDER_ATTEMPTS; attempt++) {
    if (cachedOrder(index, field, descending)) return;
    const version = index.membershipVersion;
    const metaVersion = index.metaVersion;
    const metas = [...index.byUid.values()];
    // Decorate-sort-undecorate, as the view does: each key computed once.
    const keys = new Array<Key>(metas.length);
    for (let i = 0; i < metas.length; i++) {
      // Header-derived keys cost microseconds each (decoding): the clock is read often.
      if ((i & 255) === 0) await slicer.pace();
      keys[i] = viewKey(index, field, metas[i]!);
    }
    const direction = descending ? -1 : 1;
    const positions = await sortInSlices(Array.from(metas.keys()), (a, b) => direction * (compareKeys(keys[a]!, keys[b]!) || metas[a]!.uid - metas[b]!.uid), slicer);
    if (index.membershipVersion !== version || (sortKeyIsMutable(field) && index.metaVersion !== metaVersion)) continue;
    const order = positions.map((i) => metas[i]!);
    index.sortCache.set(orderCacheKey(field, descending), { version, metaVersion, order });
    return;
  }
}

/**
 * One open folder: a sorted, filtered snapshot of a mailbox that changes only when its
 * client asks (folderSync), as the spec's "on demand" model requires. Between syncs the
 * mailbox may change freely; the view then owes its client a single `notify`, and at the
 * next sync the reports (removed, added, updated) that turn the client's table into the
 * current one, with the index arithmetic the spec defines: removals first, each index
 * counted after the previous removals; then additions in ascending final position; then
 * updates at their final positions.
 */
export class FolderView {
  /** Messages as the client sees them, in view order (metadata as of the last sync). */
  private rows: MessageMeta[];
  private unseenCount = 0;
  /** UIDs in the view; built on first need (large views rarely need it). */
  private memberSet: Set<number> | undefined;
  /** View positions by UID, built on first need and dropped whenever rows move. */
  private positions: Map<number, number> | undefined;
  /** Messages hidden because they were marked Deleted: they never come back to this view. */
  private readonly hiddenForever = new Set<number>();
  private syncedModseq: number;
  /** Reports computed but not yet sent (folderSync with a limit). */
  private pending: FolderReport[] = [];
  /** A notify has been sent and no complete sync has happened since. */
  private notified = false;
  private readonly unsubscribe: () => void;
  /** Messages that were Recent when this view was opened (shown so, though cleared for others). */
  recentAtOpen: ReadonlySet<number> = new Set();

  constructor(
    readonly index: MailboxIndex,
    readonly options: ViewOptions,
    private readonly onNotify: () => void,
  ) {
    this.syncedModseq = index.modseq;
    this.rows = this.build();
    const consumed = (): number => this.syncedModseq;
    this.unsubscribe = index.subscribe({
      get consumedModseq() {
        return consumed();
      },
      changed: () => this.changed(),
    });
  }

  get length(): number {
    return this.rows.length;
  }

  get unseen(): number {
    return this.unseenCount;
  }

  /** The message at a view position (as last synced), or undefined. */
  at(position: number): MessageMeta | undefined {
    return this.rows[position];
  }

  /** The position of a UID in the view, or -1. */
  positionOf(uid: number): number {
    if (!this.members().has(uid)) return -1;
    const meta = this.index.getAny(uid);
    if (!meta) return this.scanFor(uid);
    const position = this.search(meta);
    if (position < this.rows.length && this.rows[position]!.uid === uid) return position;
    return this.scanFor(uid);
  }

  close(): void {
    this.unsubscribe();
  }

  /**
   * The reports that bring the client up to date, at most `limit` of them; the rest wait
   * for the next folderSync.
   */
  sync(limit?: number): FolderReport[] {
    let reports = this.pending.length > 0 ? this.pending.concat(this.computeChanges()) : this.computeChanges();
    this.pending = [];
    if (limit !== undefined && limit >= 0 && reports.length > limit) {
      this.pending = reports.slice(limit);
      reports = reports.slice(0, limit);
    }
    // After a partial sync the client must sync again before it hears of new changes.
    if (this.pending.length === 0) this.notified = false;
    return reports;
  }

  private changed(): void {
    if (this.notified) return;
    this.notified = true;
    this.onNotify();
  }

  private key(meta: MessageMeta): Key {
    return viewKey(this.index, this.options.sortField, meta);
  }

  private compare(a: MessageMeta, b: MessageMeta): number {
    const order = compareKeys(this.key(a), this.key(b)) || a.uid - b.uid;
    return this.options.descending ? -order : order;
  }

  /** Whether a message belongs in the view by its current state. */
  private admits(meta: MessageMeta): boolean {
    const o = this.options;
    if (meta.uid < o.uidMin) return false;
    if (o.hideDeleted && meta.flags & Flag.Deleted) return false;
    if (o.flagFilter && !matchesFlagFilter(o.flagFilter, meta.flags, meta.keywords)) return false;
    if (o.contentFilter && !o.contentFilter(meta.uid)) return false;
    return true;
  }

  private build(): MessageMeta[] {
    const order = this.sortedMailbox();
    const o = this.options;
    const simple = o.uidMin === 0 && !o.flagFilter && !o.contentFilter;
    // The common case (no filter but hideDeleted) is one tight loop over the cached order.
    const hidden = o.hideDeleted ? Flag.Deleted : 0;
    const rows: MessageMeta[] = new Array<MessageMeta>(order.length);
    let count = 0;
    let unseen = 0;
    for (let i = 0; i < order.length; i++) {
      const meta = order[i]!;
      const flags = meta.flags;
      if (flags & hidden) continue;
      if (!simple && !this.admits(meta)) continue;
      rows[count++] = meta;
      if (!(flags & Flag.Seen)) unseen++;
    }
    rows.length = count;
    this.unseenCount = unseen;
    return rows;
  }

  /**
   * Every message of the mailbox in this view's order. Orders by immutable keys are
   * cached in the index and reused by later opens until messages come or go; the first
   * open makes the order in slices beforehand (prepareOrder), and this sorts in one piece
   * only when that order is outdated.
   */
  private sortedMailbox(): MessageMeta[] {
    const field = this.options.sortField;
    const cacheKey = orderCacheKey(field, this.options.descending);
    const version = this.index.membershipVersion;
    const cached = cachedOrder(this.index, field, this.options.descending);
    if (cached) {
      if (cached.metaVersion !== this.index.metaVersion) {
        // Flag changes do not move messages in these orders, but they replace metadata
        // objects: refresh the cached ones once, in place (views hold their own arrays).
        const order = cached.order;
        for (let i = 0; i < order.length; i++) order[i] = this.index.get(order[i]!.uid) ?? order[i]!;
        cached.metaVersion = this.index.metaVersion;
      }
      return cached.order;
    }
    // Decorate-sort-undecorate: each key computed once, not once per comparison.
    const metas = [...this.index.byUid.values()];
    const keys = metas.map((m) => this.key(m));
    const direction = this.options.descending ? -1 : 1;
    const positions = Array.from(metas.keys()).sort(
      (a, b) => direction * (compareKeys(keys[a]!, keys[b]!) || metas[a]!.uid - metas[b]!.uid),
    );
    const order = positions.map((i) => metas[i]!);
    this.index.sortCache.set(cacheKey, { version, metaVersion: this.index.metaVersion, order });
    return order;
  }

  private members(): Set<number> {
    if (!this.memberSet) this.memberSet = new Set(this.rows.map((m) => m.uid));
    return this.memberSet;
  }

  /** Binary search: the first position whose row sorts at or after `meta`. */
  private search(meta: MessageMeta): number {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(this.rows[mid]!, meta) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The slow path of positionOf (a row whose key has changed since the last sync, as in
   * views sorted by FLAGS): a map, so that browsing many such UIDs stays linear.
   */
  private scanFor(uid: number): number {
    if (!this.positions) this.positions = new Map(this.rows.map((m, i) => [m.uid, i]));
    return this.positions.get(uid) ?? -1;
  }

  private computeChanges(): FolderReport[] {
    const changes = this.index.changesSince(this.syncedModseq);
    this.syncedModseq = this.index.modseq;
    if (changes.length === 0) return [];
    this.index.trimLog();
    this.positions = undefined;

    const removedUids = new Set<number>();
    const addedUids = new Set<number>();
    const changedUids = new Map<number, 'flags' | 'attrs'>();
    for (const change of changes) {
      if (change.kind === 'removed') {
        removedUids.add(change.uid);
        addedUids.delete(change.uid);
        changedUids.delete(change.uid);
      } else if (change.kind === 'added') addedUids.add(change.uid);
      else if (!addedUids.has(change.uid) && changedUids.get(change.uid) !== 'flags') changedUids.set(change.uid, change.kind);
    }

    const members = this.members();
    const mutableKey = sortKeyIsMutable(this.options.sortField);
    const reports: FolderReport[] = [];

    // 1. Removals, in view order: each index counts the removals already reported.
    const readd: MessageMeta[] = [];
    const kept: MessageMeta[] = [];
    let total = this.rows.length;
    for (const row of this.rows) {
      let remove = removedUids.has(row.uid);
      if (!remove && changedUids.has(row.uid)) {
        const current = this.index.get(row.uid)!;
        if (this.options.hideDeleted && current.flags & Flag.Deleted) {
          remove = true;
          this.hiddenForever.add(row.uid);
        } else if (!this.admits(current)) remove = true;
        else if (mutableKey && compareKeys(this.key(row), this.key(current)) !== 0) {
          remove = true;
          readd.push(current);
        }
      }
      if (!remove) {
        kept.push(row);
        continue;
      }
      total--;
      members.delete(row.uid);
      if (!(row.flags & Flag.Seen)) this.unseenCount--;
      reports.push({ mode: 'removed', index: kept.length, uid: row.uid, messages: total, unseen: this.unseenCount });
    }

    // 2. Additions, merged in ascending final position. Re-added messages (a changed key)
    // are candidates too: they are reported as added, never as updated.
    const candidates = readd;
    const candidateUids = new Set(readd.map((m) => m.uid));
    for (const uid of addedUids) {
      const meta = this.index.get(uid);
      if (meta && !members.has(uid) && this.admits(meta)) {
        candidates.push(meta);
        candidateUids.add(uid);
      }
    }
    if (this.options.flagFilter) {
      // A flag change can bring a message into a flag-filtered view.
      for (const uid of changedUids.keys()) {
        const meta = this.index.get(uid);
        if (meta && !members.has(uid) && !this.hiddenForever.has(uid) && !candidateUids.has(uid) && this.admits(meta)) {
          candidates.push(meta);
          candidateUids.add(uid);
        }
      }
    }
    if (candidates.length > 0) {
      candidates.sort((a, b) => this.compare(a, b));
      const merged: MessageMeta[] = new Array<MessageMeta>(kept.length + candidates.length);
      let i = 0;
      let j = 0;
      for (let out = 0; out < merged.length; out++) {
        if (j < candidates.length && (i >= kept.length || this.compare(candidates[j]!, kept[i]!) < 0)) {
          const meta = candidates[j++]!;
          merged[out] = meta;
          members.add(meta.uid);
          total++;
          if (!(meta.flags & Flag.Seen)) this.unseenCount++;
          reports.push({ mode: 'added', index: out, meta, messages: total, unseen: this.unseenCount });
        } else merged[out] = kept[i++]!;
      }
      this.rows = merged;
    } else this.rows = kept;

    // 3. Updates of messages that stayed, at their (final) positions.
    const updates: { index: number; meta: MessageMeta; mode: 'updated' | 'attrsUpdated'; unseenDelta: number }[] = [];
    for (const [uid, kind] of changedUids) {
      if (!members.has(uid) || candidateUids.has(uid)) continue;
      const current = this.index.get(uid);
      if (!current) continue;
      const position = this.search(current);
      if (this.rows[position]?.uid !== uid) continue;
      const before = this.rows[position]!;
      this.rows[position] = current;
      const unseenDelta = (current.flags & Flag.Seen ? 0 : 1) - (before.flags & Flag.Seen ? 0 : 1);
      updates.push({ index: position, meta: current, mode: kind === 'flags' ? 'updated' : 'attrsUpdated', unseenDelta });
    }
    updates.sort((a, b) => a.index - b.index);
    for (const u of updates) {
      this.unseenCount += u.unseenDelta;
      reports.push({ mode: u.mode, index: u.index, meta: u.meta, unseen: this.unseenCount });
    }
    return reports;
  }
}
