import type { ChangeSet, MailboxRecord, MessageMeta } from '../../store/store.js';
import { Flag } from './flags.js';
import type { HeaderLookup } from './view-fields.js';

export type ChangeKind = 'added' | 'flags' | 'attrs' | 'removed';

export interface IndexChange {
  modseq: number;
  uid: number;
  kind: ChangeKind;
}

/**
 * A change committed to the store, as the mail service applies it to a mailbox's index (or,
 * while the index is being loaded, keeps it to apply once the loaded snapshot is in place).
 */
export type IndexUpdate =
  /** Messages added; with `replaced`, a message removed in the same transaction (a replacing append). */
  | { kind: 'added'; messages: readonly MessageMeta[]; modseq: number; replaced?: number }
  | { kind: 'flags' | 'attrs'; messages: readonly MessageMeta[]; modseq: number }
  | { kind: 'removed'; uids: readonly number[]; modseq: number };

/** A folder watching the index: told about every change, and how far it has consumed the log. */
export interface IndexWatcher {
  readonly consumedModseq: number;
  changed(index: MailboxIndex): void;
}

/**
 * The in-memory picture of one mailbox that its open folders share: every message's
 * metadata (UID, flags, the header fields views show), plus a log of recent changes from
 * which each folder computes its folderSync reports. Built from the store on first use;
 * kept current by the mail service, which applies every committed change to it.
 *
 * Messages removed from the mailbox stay reachable through `removedMeta` until no folder
 * needs them, so that a folder can still show what its client has not yet synced away.
 */
export class MailboxIndex {
  readonly byUid = new Map<number, MessageMeta>();
  /** Metadata of removed messages that folders may still list (until they sync). */
  readonly removedMeta = new Map<number, MessageMeta>();
  modseq: number;
  /** UIDs of messages with the Recent flag (cleared when a folder opens the mailbox). */
  readonly recent = new Set<number>();
  /** Bumped when messages are added or removed (sort orders stay valid across flag changes). */
  membershipVersion = 0;
  /** Bumped when flags or attributes change (metadata objects are replaced). */
  metaVersion = 0;
  private log: IndexChange[] = [];
  private readonly listeners = new Set<IndexWatcher>();
  /**
   * Cached sort orders, keyed by sort field and direction: valid while the membership
   * version holds (and, for orders by flags, the metadata version); `metaVersion` tells
   * whether the metadata objects in it are still the current ones.
   */
  readonly sortCache = new Map<string, { version: number; metaVersion: number; order: MessageMeta[] }>();
  /** Sort keys by field, by UID (keys of immutable fields only). */
  readonly keyCache = new Map<string, Map<number, string | number>>();
  /** Per-field values that are not in the metadata (other header fields), by UID. */
  readonly fieldCache = new Map<string, Map<number, string>>();
  /** Reads a header field from `fieldCache` (what views and filters sort and show by). */
  readonly lookup: HeaderLookup = (field, uid) => this.fieldCache.get(field)?.get(uid);
  lastUsed = Date.now();

  /**
   * The mailbox record as loaded (name and uidNext kept current; `modseq` above is the
   * current modseq, the ACL is re-read from the store on every check). A large mailbox is
   * loaded in pieces instead (MailService.index): an empty index, then `load` and `unload`
   * as pages and changes are read, then `settle` with the record of the snapshot.
   */
  constructor(
    public mailbox: MailboxRecord,
    messages: readonly MessageMeta[] = [],
  ) {
    this.modseq = mailbox.highestModseq;
    for (const m of messages) this.track(m);
  }

  /** While loading (nobody sees the index yet): a message as read, replacing what was read of it before. */
  load(meta: MessageMeta): void {
    this.track(meta);
  }

  /** While loading: a message read before that has been removed since. */
  unload(uid: number): void {
    this.byUid.delete(uid);
    this.recent.delete(uid);
  }

  /** Ends loading: the index holds the mailbox as of `mailbox.highestModseq`. */
  settle(mailbox: MailboxRecord): void {
    this.mailbox = mailbox;
    this.modseq = mailbox.highestModseq;
  }

  /**
   * Applies a committed change. One at or below the index's modseq is in the index already
   * and is ignored (a change committed while the index loaded may be reported to it after
   * it was registered; a catch-up from the journal may have brought it). The caller makes
   * sure nothing is skipped: the store bumps a mailbox's modseq by one per transaction, so
   * an update more than one above `modseq` means one in between is missing, and the index
   * is caught up from the journal instead (`follows`, `catchUp`).
   */
  apply(update: IndexUpdate): void {
    if (update.modseq <= this.modseq) return;
    if (update.kind === 'removed') this.applyRemoved(update.uids, update.modseq);
    else if (update.kind === 'added') {
      this.applyAdded(update.messages, update.modseq);
      if (update.replaced !== undefined) this.applyRemoved([update.replaced], update.modseq);
    } else this.applyChanged(update.messages, update.modseq, update.kind);
  }

  /** True when `update` is the next change of the mailbox (or one the index has): applying it skips nothing. */
  follows(update: IndexUpdate): boolean {
    return update.modseq <= this.modseq + 1;
  }

  /**
   * Brings the index up to the store's state from the journal: `changes` (the changes since
   * this index's modseq, as one snapshot) are applied in modseq order, as the updates they
   * were — a message not in the index is added, one in it changed, a removed one removed.
   * Works whoever committed the changes, in this process or another.
   */
  catchUp(changes: ChangeSet): void {
    const byModseq = new Map<number, { added: MessageMeta[]; changed: MessageMeta[]; removed: number[] }>();
    const at = (modseq: number) => {
      let group = byModseq.get(modseq);
      if (!group) byModseq.set(modseq, (group = { added: [], changed: [], removed: [] }));
      return group;
    };
    for (const meta of changes.changed) {
      if (meta.modseq <= this.modseq) continue;
      (this.byUid.has(meta.uid) ? at(meta.modseq).changed : at(meta.modseq).added).push(meta);
    }
    for (const r of changes.removed) if (r.modseq > this.modseq) at(r.modseq).removed.push(r.uid);
    for (const modseq of [...byModseq.keys()].sort((a, b) => a - b)) {
      const group = byModseq.get(modseq)!;
      // Within one transaction: a replacing append adds and removes at one modseq.
      if (group.added.length > 0) this.applyAdded(group.added, modseq);
      if (group.changed.length > 0) this.applyChanged(group.changed, modseq, 'flags');
      if (group.removed.length > 0) this.applyRemoved(group.removed, modseq);
    }
    if (changes.uidNext > this.mailbox.uidNext) this.mailbox = { ...this.mailbox, uidNext: changes.uidNext };
    if (changes.modseq > this.modseq) this.modseq = changes.modseq;
  }

  /**
   * Brings the index to a fresh snapshot of the mailbox (when the journal no longer reaches
   * back to the index's modseq): what differs is applied as one change at the snapshot's
   * modseq, so that open folders report it.
   */
  reconcile(snapshot: { modseq: number; uidNext: number; messages: readonly MessageMeta[] }): void {
    if (snapshot.modseq <= this.modseq) return;
    const present = new Set<number>();
    const added: MessageMeta[] = [];
    const changed: MessageMeta[] = [];
    for (const meta of snapshot.messages) {
      present.add(meta.uid);
      const known = this.byUid.get(meta.uid);
      if (!known) added.push(meta);
      else if (known.modseq !== meta.modseq) changed.push(meta);
    }
    const removed = [...this.byUid.keys()].filter((uid) => !present.has(uid));
    if (added.length > 0) this.applyAdded(added, snapshot.modseq);
    if (changed.length > 0) this.applyChanged(changed, snapshot.modseq, 'flags');
    if (removed.length > 0) this.applyRemoved(removed, snapshot.modseq);
    if (snapshot.uidNext > this.mailbox.uidNext) this.mailbox = { ...this.mailbox, uidNext: snapshot.uidNext };
    this.modseq = snapshot.modseq;
  }

  private track(meta: MessageMeta): void {
    this.byUid.set(meta.uid, meta);
    if (meta.flags & Flag.Recent) this.recent.add(meta.uid);
    else this.recent.delete(meta.uid);
  }

  get(uid: number): MessageMeta | undefined {
    return this.byUid.get(uid);
  }

  /** Current metadata, or the last known metadata of a removed message. */
  getAny(uid: number): MessageMeta | undefined {
    return this.byUid.get(uid) ?? this.removedMeta.get(uid);
  }

  subscribe(listener: IndexWatcher): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        this.log = [];
        this.removedMeta.clear();
      }
    };
  }

  get watched(): boolean {
    return this.listeners.size > 0;
  }

  /** Changes after `modseq`, oldest first. */
  changesSince(modseq: number): IndexChange[] {
    // The log is ordered by modseq: binary search for the first entry after `modseq`.
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.log[mid]!.modseq <= modseq) lo = mid + 1;
      else hi = mid;
    }
    return this.log.slice(lo);
  }

  /** Forgets log entries (and removed messages' metadata) every watching folder has consumed. */
  trimLog(): void {
    let consumedUpTo = Infinity;
    for (const watcher of this.listeners) consumedUpTo = Math.min(consumedUpTo, watcher.consumedModseq);
    let cut = 0;
    while (cut < this.log.length && this.log[cut]!.modseq <= consumedUpTo) cut++;
    if (cut === 0) return;
    for (let i = 0; i < cut; i++) {
      const entry = this.log[i]!;
      if (entry.kind === 'removed') this.removedMeta.delete(entry.uid);
    }
    this.log = this.log.slice(cut);
  }

  applyAdded(messages: readonly MessageMeta[], modseq: number): void {
    let uidNext = this.mailbox.uidNext;
    for (const m of messages) {
      this.track(m);
      this.record(modseq, m.uid, 'added');
      if (m.uid >= uidNext) uidNext = m.uid + 1;
    }
    this.mailbox = { ...this.mailbox, uidNext };
    this.membershipVersion++;
    this.finish(modseq);
  }

  applyChanged(messages: readonly MessageMeta[], modseq: number, kind: 'flags' | 'attrs'): void {
    for (const m of messages) {
      if (!this.byUid.has(m.uid)) continue;
      this.track(m);
      this.record(modseq, m.uid, kind);
    }
    this.metaVersion++;
    this.finish(modseq);
  }

  applyRemoved(uids: readonly number[], modseq: number): void {
    for (const uid of uids) {
      const meta = this.byUid.get(uid);
      if (!meta) continue;
      this.byUid.delete(uid);
      this.recent.delete(uid);
      for (const cache of this.fieldCache.values()) cache.delete(uid);
      for (const cache of this.keyCache.values()) cache.delete(uid);
      if (this.watched) {
        this.removedMeta.set(uid, meta);
        this.record(modseq, uid, 'removed');
      }
    }
    this.membershipVersion++;
    this.finish(modseq);
  }

  private record(modseq: number, uid: number, kind: ChangeKind): void {
    if (this.watched) this.log.push({ modseq, uid, kind });
  }

  private finish(modseq: number): void {
    if (modseq > this.modseq) this.modseq = modseq;
    this.lastUsed = Date.now();
    for (const listener of this.listeners) listener.changed(this);
  }
}
