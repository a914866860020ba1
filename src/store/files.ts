/**
 * The File Storage in the store (FileStore, see store.ts): the records, the errors, and the
 * decisions both engines make inside their transactions (lock conflicts, preconditions,
 * limits, chunk arithmetic), written once here as pure functions.
 *
 * Layout (both engines):
 * - `files`: one row per file or directory of an account (the root '' is implicit), with its
 *   parent path (listing a directory is an index range), sizes, times, a random ETag and the
 *   attributes (a JSON array of {name, xml}); a file points at its content blob.
 * - `file_blobs` + `file_chunks`: content as rows of at most CHUNK bytes keyed by
 *   (blob, offset). A write streams into a new *staging* blob (each chunk its own small
 *   commit, invisible to readers), then one transaction swaps it in (replace), moves its
 *   chunks to the end of the live blob (append) or over the range it covers (a positional
 *   write: only the chunks that overlap are split or removed). A failed stream deletes its
 *   staging blob; one left behind by a crash is pruned by age.
 * - `file_locks`: every lock, so that every node sees it; expired ones are ignored and pruned.
 * - `file_subscriptions`: the names an account subscribed to.
 */

/** Bytes per content row: a positional write rewrites at most two partial rows beside its own. */
export const CHUNK = 256 * 1024;

export type FileStoreFailure =
  | 'invalid-name'
  | 'not-found'
  | 'parent-missing'
  | 'exists'
  | 'not-a-directory'
  | 'is-a-directory'
  | 'not-empty'
  | 'locked'
  | 'precondition-failed'
  | 'beyond-eof'
  | 'limit-exceeded'
  | 'access-denied';

/** A refusal decided inside a store transaction (nothing was changed). */
export class FileStoreError extends Error {
  constructor(
    readonly reason: FileStoreFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface FileRecord {
  path: string;
  kind: 'file' | 'directory';
  size: number;
  /** ms since the epoch. */
  created: number;
  modified: number;
  attrsModified: number;
  etag: string;
}

export interface StoredAttribute {
  name: string;
  xml: string;
}

export type StoredAttributeChange = { mode: 'add' | 'replace'; attribute: StoredAttribute } | { mode: 'delete'; name: string };

export interface LockRecord {
  token: string;
  path: string;
  scope: 'exclusive' | 'shared';
  type: string;
  depth: 0 | 'infinity';
  ownerXml: string;
  lockedBy: number;
  /** ms since the epoch. */
  expires: number;
}

/** What every changing call checks inside its transaction. */
export interface FileGuard {
  /** ms: locks expired before it are ignored (and pruned). */
  now: number;
  lockTokens?: readonly string[];
  /** The target's ETag must be this ('*': the target exists). */
  ifMatch?: string;
  ifNoneMatch?: '*';
}

/** The owner's limits (undefined: unlimited); `files` counts files and directories. */
export interface FileLimits {
  maxFiles?: number;
  maxBytes?: number;
}

export type StoreWriteMode = { kind: 'replace' } | { kind: 'append' } | { kind: 'new' } | { kind: 'at'; position: number };

/** The parent directory of a path ('' for a top-level entry). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** True when `path` is `root` or below it. */
export function within(path: string, root: string): boolean {
  return root === '' || path === root || path.startsWith(root + '/');
}

/** What a change touches, for lock checks: a path, with everything below it, and whether it changes its parent's list of members. */
export interface Touched {
  path: string;
  subtree: boolean;
  membership: boolean;
}

/**
 * The first live lock (not held through `tokens`) that forbids a change of `touched`
 * (RFC 4918 7.x): a lock of the path itself, of an ancestor with depth infinity, of the
 * parent when its members change, or, for a subtree, any lock below.
 */
export function blockingLock(locks: readonly LockRecord[], touched: readonly Touched[], guard: FileGuard): LockRecord | undefined {
  const held = new Set(guard.lockTokens ?? []);
  for (const lock of locks) {
    if (lock.expires <= guard.now || held.has(lock.token)) continue;
    for (const t of touched) {
      if (lock.path === t.path) return lock;
      if (lock.depth === 'infinity' && within(t.path, lock.path)) return lock;
      if (t.membership && lock.path === parentOf(t.path)) return lock;
      if (t.subtree && within(lock.path, t.path)) return lock;
    }
  }
  return undefined;
}

/** Throws `locked` when a lock forbids the change. */
export function checkLocks(locks: readonly LockRecord[], touched: readonly Touched[], guard: FileGuard): void {
  const lock = blockingLock(locks, touched, guard);
  if (lock) throw new FileStoreError('locked', `${lock.path === '' ? 'the storage' : lock.path} is locked`);
}

/** Throws `precondition-failed` when If-Match/If-None-Match do not hold for `target`. */
export function checkPreconditions(target: FileRecord | undefined, guard: FileGuard): void {
  if (guard.ifMatch !== undefined) {
    if (!target || (guard.ifMatch !== '*' && guard.ifMatch !== target.etag)) throw new FileStoreError('precondition-failed', 'the file is not the expected version');
  }
  if (guard.ifNoneMatch === '*' && target) throw new FileStoreError('precondition-failed', 'the file exists');
}

/** Throws `limit-exceeded` when the storage would hold more than its limits and the change grows it. */
export function checkLimits(usage: { files: number; size: number }, addFiles: number, addBytes: number, limits: FileLimits): void {
  if (addFiles > 0 && limits.maxFiles !== undefined && usage.files + addFiles > limits.maxFiles) {
    throw new FileStoreError('limit-exceeded', `too many files (at most ${limits.maxFiles} in the File Storage)`);
  }
  if (addBytes > 0 && limits.maxBytes !== undefined && usage.size + addBytes > limits.maxBytes) {
    throw new FileStoreError('limit-exceeded', `the File Storage is full (at most ${limits.maxBytes} bytes)`);
  }
}

/** Whether a new lock conflicts with `existing` (live, of anyone): exclusive with anything, shared with exclusive. */
export function lockConflict(existing: readonly LockRecord[], path: string, scope: 'exclusive' | 'shared', depth: 0 | 'infinity', now: number): LockRecord | undefined {
  for (const lock of existing) {
    if (lock.expires <= now) continue;
    if (scope === 'shared' && lock.scope === 'shared') continue;
    const covers = lock.path === path || (lock.depth === 'infinity' && within(path, lock.path));
    const below = depth === 'infinity' && within(lock.path, path);
    if (covers || below) return lock;
  }
  return undefined;
}

/** Applies attribute changes to a list (in order). */
export function applyAttributeChanges(current: readonly StoredAttribute[], changes: readonly StoredAttributeChange[]): StoredAttribute[] {
  let out = [...current];
  for (const change of changes) {
    if (change.mode === 'delete') out = out.filter((a) => a.name !== change.name);
    else if (change.mode === 'replace') out = [...out.filter((a) => a.name !== change.attribute.name), change.attribute];
    else out.push(change.attribute);
  }
  return out;
}

/** Largest attributes JSON per entry. */
export const MAX_ATTRIBUTES_BYTES = 64 * 1024;

export function attributesJson(attributes: readonly StoredAttribute[]): string {
  const json = JSON.stringify(attributes);
  if (Buffer.byteLength(json) > MAX_ATTRIBUTES_BYTES) throw new FileStoreError('limit-exceeded', `too many attributes (at most ${MAX_ATTRIBUTES_BYTES} bytes per file)`);
  return json;
}

export function parseAttributes(json: string): StoredAttribute[] {
  const value = JSON.parse(json) as unknown;
  return Array.isArray(value) ? (value as StoredAttribute[]) : [];
}

/** A chunk row: its offset in the blob and its bytes. */
export interface ChunkRow {
  offset: number;
  data: Buffer;
}

/**
 * [start, end) as slices of the rows that overlap it (sorted by offset), without copying; a
 * range no row covers reads as zeros.
 */
export function slices(rows: readonly ChunkRow[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let at = start;
  for (const row of rows) {
    const from = Math.max(at, row.offset);
    const till = Math.min(end, row.offset + row.data.length);
    if (till <= from) continue;
    if (from > at) out.push(Buffer.alloc(from - at));
    out.push(from === row.offset && till === row.offset + row.data.length ? row.data : row.data.subarray(from - row.offset, till - row.offset));
    at = till;
  }
  if (at < end) out.push(Buffer.alloc(end - at));
  return out;
}

/**
 * A positional overwrite of [from, till): the overlapping rows to delete, and the pieces of
 * them to keep (before `from`, after `till`).
 */
export function splitForOverwrite(rows: readonly ChunkRow[], from: number, till: number): { remove: number[]; keep: ChunkRow[] } {
  const remove: number[] = [];
  const keep: ChunkRow[] = [];
  for (const row of rows) {
    const rowEnd = row.offset + row.data.length;
    if (rowEnd <= from || row.offset >= till) continue;
    remove.push(row.offset);
    if (row.offset < from) keep.push({ offset: row.offset, data: row.data.subarray(0, from - row.offset) });
    if (rowEnd > till) keep.push({ offset: till, data: row.data.subarray(till - row.offset) });
  }
  return { remove, keep };
}

/** A new strong ETag. */
export function newEtag(): string {
  return `${Date.now().toString(36)}-${randomHex(8)}`;
}

function randomHex(bytes: number): string {
  return globalThis.crypto.getRandomValues(new Uint8Array(bytes)).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '');
}

/** A staging blob older than this (ms) was left by a crashed write and is pruned. */
export const STAGING_TTL = 24 * 3600_000;

/** An entry as both engines' `files` table holds it. */
export interface FileRow {
  path: string;
  kind: 'file' | 'directory';
  size: number;
  created: number;
  modified: number;
  attrs_modified: number;
  etag: string;
  blob_id: number | null;
  attributes: string;
}

/** A lock as both engines' `file_locks` table holds it. */
export interface LockRow {
  token: string;
  path: string;
  scope: 'exclusive' | 'shared';
  type: string;
  depth: string;
  owner_xml: string;
  locked_by: number;
  expires: number;
}

export function toFileRecord(row: FileRow): FileRecord {
  return { path: row.path, kind: row.kind, size: row.size, created: row.created, modified: row.modified, attrsModified: row.attrs_modified, etag: row.etag };
}

export function toLockRecord(row: LockRow): LockRecord {
  return {
    token: row.token,
    path: row.path,
    scope: row.scope,
    type: row.type,
    depth: row.depth === 'infinity' ? 'infinity' : 0,
    ownerXml: row.owner_xml,
    lockedBy: Number(row.locked_by),
    expires: Number(row.expires),
  };
}
