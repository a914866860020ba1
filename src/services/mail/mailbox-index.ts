import type { MailboxRecord, MessageMeta } from '../../store/store.js';
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
  | { kind: 'added' | 'flags' | 'attrs'; messages: readonly MessageMeta[]; modseq: number }
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
   * The modseq of the snapshot the index was loaded from: every change committed at or
   * below it is in the index already (`apply` ignores it when it comes again).
   */
  loadedModseq: number;

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
    this.modseq = this.loadedModseq = mailbox.highestModseq;
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
    this.modseq = this.loadedModseq = mailbox.highestModseq;
  }

  /**
   * Applies a committed change. One at or below the loaded snapshot's modseq is in the
   * index already and is ignored (a change committed while the index loaded may be
   * reported to it after it was registered).
   */
  apply(update: IndexUpdate): void {
    if (update.modseq <= this.loadedModseq) return;
    if (update.kind === 'removed') this.applyRemoved(update.uids, update.modseq);
    else if (update.kind === 'added') this.applyAdded(update.messages, update.modseq);
    else this.applyChanged(update.messages, update.modseq, update.kind);
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
