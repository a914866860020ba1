import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import type { FileStore } from '../store.js';
import {
  applyAttributeChanges,
  attributesJson,
  checkLimits,
  checkLocks,
  checkPreconditions,
  CHUNK,
  FileStoreError,
  lockConflict,
  newEtag,
  parentOf,
  parseAttributes,
  slices,
  splitForOverwrite,
  toFileRecord,
  toLockRecord,
  within,
  type ChunkRow,
  type FileGuard,
  type FileLimits,
  type FileRecord,
  type FileRow,
  type LockRecord,
  type LockRow,
  type StoredAttribute,
  type StoredAttributeChange,
  type StoreWriteMode,
  type Touched,
} from '../files.js';
import { subtreeRange } from '../rows.js';
import { prepareAll } from './util.js';


/**
 * The File Storage in SQLite (see src/store/files.ts). Every change is one IMMEDIATE
 * transaction that reads what it decides from (locks, limits, the target) and writes;
 * staging chunks are committed one by one, outside any reader's view.
 */
export class SqliteFiles implements FileStore {
  private readonly sql: ReturnType<typeof prepareStatements>;

  /** The entries of a directory, in LISTED_COLUMNS order. */
  private readonly children: Statement;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareStatements(db);
    this.children = db.prepare(`SELECT ${LISTED_COLUMNS} FROM files WHERE account_id = ? AND parent = ? ORDER BY path`).raw(true);
  }

  private row(accountId: number, path: string): FileRow | undefined {
    return this.sql.get.get(accountId, path) as FileRow | undefined;
  }

  private liveLocks(accountId: number, now: number): LockRecord[] {
    return (this.sql.locks.all(accountId, now) as LockRow[]).map(toLockRecord);
  }

  private usageNow(accountId: number): { files: number; size: number } {
    const r = this.sql.totals.get(accountId) as { n: number; size: number | null };
    return { files: r.n, size: r.size ?? 0 };
  }

  /** The parent of `path` must be a directory (the root always is). */
  private requireParent(accountId: number, path: string): void {
    const parent = parentOf(path);
    if (parent === '') return;
    const row = this.row(accountId, parent);
    if (!row) throw new FileStoreError('parent-missing', `the directory ${parent} does not exist`);
    if (row.kind !== 'directory') throw new FileStoreError('not-a-directory', `${parent} is not a directory`);
  }

  private touchParent(accountId: number, path: string, now: number): void {
    const parent = parentOf(path);
    if (parent !== '') this.sql.touch.run(now, accountId, parent);
  }

  private removeTree(accountId: number, path: string): void {
    const [from, till] = subtreeRange(path);
    this.sql.deleteBlobsOfTree.run(accountId, path, from, till);
    this.sql.deleteTree.run(accountId, path, from, till);
  }

  async stat(accountId: number, path: string): Promise<FileRecord | undefined> {
    const row = this.row(accountId, path);
    return row && toFileRecord(row);
  }

  async list(accountId: number, directory: string): Promise<FileRecord[]> {
    return this.db.transaction(() => {
      if (directory !== '') {
        const row = this.row(accountId, directory);
        if (!row) throw new FileStoreError('not-found', `the directory ${directory} does not exist`);
        if (row.kind !== 'directory') throw new FileStoreError('not-a-directory', `${directory} is not a directory`);
      }
      // Rows as arrays: a listing of thousands of entries (a WebDAV PROPFIND) spends most of its
      // time making row objects otherwise.
      return (this.children.all(accountId, directory) as ListedRow[]).map(([path, kind, size, created, modified, attrsModified, etag]) => ({
        path,
        kind,
        size,
        created,
        modified,
        attrsModified,
        etag,
      }));
    }).deferred();
  }

  async directories(accountId: number): Promise<string[]> {
    return (this.sql.directories.all(accountId) as { path: string }[]).map((r) => r.path);
  }

  async usage(accountId: number, directory: string): Promise<{ files: number; size: number }> {
    if (directory === '') {
      const r = this.sql.usageAll.get(accountId) as { n: number; size: number | null };
      return { files: r.n, size: r.size ?? 0 };
    }
    const [from, till] = subtreeRange(directory);
    const r = this.sql.usageTree.get(accountId, from, till) as { n: number; size: number | null };
    return { files: r.n, size: r.size ?? 0 };
  }

  async totals(accountId: number): Promise<{ entries: number; size: number }> {
    const { files, size } = this.usageNow(accountId);
    return { entries: files, size };
  }

  async read(accountId: number, path: string, start: number, end: number, etag?: string): Promise<{ record: FileRecord; pieces: Buffer[] }> {
    return this.db.transaction(() => {
      const row = this.row(accountId, path);
      if (!row) throw new FileStoreError('not-found', `${path} does not exist`);
      if (row.kind !== 'file') throw new FileStoreError('is-a-directory', `${path} is a directory`);
      if (etag !== undefined && row.etag !== etag) throw new FileStoreError('precondition-failed', `${path} changed while it was read`);
      if (start > row.size) throw new FileStoreError('beyond-eof', 'reading beyond the EOF mark');
      const till = Math.min(end, row.size);
      if (till <= start || row.blob_id === null) return { record: toFileRecord(row), pieces: [] };
      const rows = this.sql.chunksIn.all(row.blob_id, start - CHUNK, till, start) as ChunkRow[];
      return { record: toFileRecord(row), pieces: slices(rows, start, till) };
    }).deferred();
  }

  async stage(accountId: number, now: number): Promise<number> {
    return Number(this.sql.newBlob.run(accountId, now).lastInsertRowid);
  }

  async stageChunk(blob: number, offset: number, data: Buffer): Promise<void> {
    this.sql.insertChunk.run(blob, offset, data);
  }

  async discard(blob: number): Promise<void> {
    this.sql.deleteBlob.run(blob);
  }

  async pruneStaging(before: number): Promise<number> {
    return this.sql.pruneStaging.run(before).changes;
  }

  async commitWrite(accountId: number, path: string, blob: number, size: number, mode: StoreWriteMode, guard: FileGuard, limits: FileLimits): Promise<{ record: FileRecord; created: boolean }> {
    const run = this.db.transaction((): { record: FileRecord; created: boolean } => {
      const staged = this.sql.blob.get(blob) as { account_id: number; staged_at: number | null } | undefined;
      if (!staged || staged.staged_at === null || staged.account_id !== accountId) throw new Error(`no staging blob ${blob}`);
      const row = this.row(accountId, path);
      if (row && row.kind === 'directory') throw new FileStoreError('is-a-directory', `${path} is a directory`);
      if (row && mode.kind === 'new') throw new FileStoreError('exists', `${path} already exists`);
      if (!row && mode.kind === 'at') throw new FileStoreError('not-found', `${path} does not exist`);
      checkPreconditions(row && toFileRecord(row), guard);
      checkLocks(this.liveLocks(accountId, guard.now), [{ path, subtree: false, membership: !row }], guard);
      const now = guard.now;
      const etag = newEtag();
      if (!row) {
        this.requireParent(accountId, path);
        checkLimits(this.usageNow(accountId), 1, size, limits);
        this.sql.liveBlob.run(blob);
        this.sql.insertFile.run(accountId, path, parentOf(path), 'file', size, now, now, now, etag, '[]', blob);
        this.touchParent(accountId, path, now);
        return { record: toFileRecord(this.row(accountId, path)!), created: true };
      }
      const live = row.blob_id!;
      let newSize: number;
      if (mode.kind === 'replace') {
        newSize = size;
        checkLimits(this.usageNow(accountId), 0, newSize - row.size, limits);
        this.sql.deleteBlob.run(live);
        this.sql.liveBlob.run(blob);
        this.sql.setContent.run(newSize, now, etag, blob, accountId, path);
      } else {
        const position = mode.kind === 'append' ? row.size : (mode as { position: number }).position;
        if (position > row.size) throw new FileStoreError('beyond-eof', 'writing beyond the EOF mark');
        newSize = Math.max(row.size, position + size);
        checkLimits(this.usageNow(accountId), 0, newSize - row.size, limits);
        if (position < row.size && size > 0) {
          const overlapping = this.sql.chunksIn.all(live, position - CHUNK, position + size, position) as ChunkRow[];
          const { remove, keep } = splitForOverwrite(overlapping, position, position + size);
          for (const offset of remove) this.sql.deleteChunk.run(live, offset);
          for (const piece of keep) this.sql.insertChunk.run(live, piece.offset, Buffer.from(piece.data));
        }
        this.sql.moveChunks.run(live, position, blob);
        this.sql.deleteBlob.run(blob);
        this.sql.setContent.run(newSize, now, etag, live, accountId, path);
      }
      return { record: toFileRecord(this.row(accountId, path)!), created: false };
    });
    return run.immediate();
  }

  async createDirectory(accountId: number, path: string, guard: FileGuard, limits: FileLimits): Promise<FileRecord> {
    return this.db.transaction(() => {
      const row = this.row(accountId, path);
      if (row || path === '') throw new FileStoreError('exists', `${path} already exists`);
      checkPreconditions(undefined, guard);
      this.requireParent(accountId, path);
      checkLocks(this.liveLocks(accountId, guard.now), [{ path, subtree: false, membership: true }], guard);
      checkLimits(this.usageNow(accountId), 1, 0, limits);
      this.sql.insertFile.run(accountId, path, parentOf(path), 'directory', 0, guard.now, guard.now, guard.now, newEtag(), '[]', null);
      this.touchParent(accountId, path, guard.now);
      return toFileRecord(this.row(accountId, path)!);
    }).immediate();
  }

  async remove(accountId: number, path: string, options: { recursive: boolean; kind?: 'file' | 'directory' }, guard: FileGuard): Promise<void> {
    this.db.transaction(() => {
      const row = this.row(accountId, path);
      if (!row) throw new FileStoreError('not-found', `${path} does not exist`);
      if (options.kind === 'file' && row.kind === 'directory') throw new FileStoreError('is-a-directory', `${path} is a directory`);
      if (options.kind === 'directory' && row.kind === 'file') throw new FileStoreError('not-a-directory', `${path} is not a directory`);
      checkPreconditions(toFileRecord(row), guard);
      if (row.kind === 'directory' && !options.recursive && this.sql.anyChild.get(accountId, path) !== undefined) {
        throw new FileStoreError('not-empty', `the directory ${path} is not empty`);
      }
      checkLocks(this.liveLocks(accountId, guard.now), [{ path, subtree: row.kind === 'directory', membership: true }], guard);
      this.removeTree(accountId, path);
      this.sql.deleteLocksOfTree.run(accountId, path, ...subtreeRange(path));
      this.touchParent(accountId, path, guard.now);
    }).immediate();
  }

  async move(accountId: number, from: string, to: string, options: { overwrite: boolean; kind?: 'file' | 'directory' }, guard: FileGuard): Promise<{ created: boolean }> {
    return this.db.transaction(() => {
      const source = this.row(accountId, from);
      if (!source) throw new FileStoreError('not-found', `${from} does not exist`);
      if (options.kind === 'file' && source.kind === 'directory') throw new FileStoreError('is-a-directory', `${from} is a directory`);
      if (options.kind === 'directory' && source.kind === 'file') throw new FileStoreError('not-a-directory', `${from} is not a directory`);
      if (from === to) throw new FileStoreError('exists', `${to} is the same name`);
      if (within(to, from)) throw new FileStoreError('invalid-name', `${to} is inside ${from}`);
      const target = this.row(accountId, to);
      if (target && !options.overwrite) throw new FileStoreError('exists', `${to} already exists`);
      checkPreconditions(target && toFileRecord(target), guard);
      this.requireParent(accountId, to);
      const touched: Touched[] = [
        { path: from, subtree: true, membership: true },
        { path: to, subtree: true, membership: true },
      ];
      checkLocks(this.liveLocks(accountId, guard.now), touched, guard);
      if (target) {
        this.removeTree(accountId, to);
        this.sql.deleteLocksOfTree.run(accountId, to, ...subtreeRange(to));
      }
      const [lo, hi] = subtreeRange(from);
      this.sql.deleteLocksOfTree.run(accountId, from, lo, hi);
      this.sql.renameTree.run({ to, cut: from.length + 1, from, account: accountId, lo, hi });
      this.sql.setParent.run(parentOf(to), accountId, to);
      this.touchParent(accountId, from, guard.now);
      this.touchParent(accountId, to, guard.now);
      return { created: !target };
    }).immediate();
  }

  async copy(accountId: number, from: string, to: string, options: { overwrite: boolean; depth: 0 | 'infinity' }, guard: FileGuard, limits: FileLimits): Promise<{ created: boolean }> {
    return this.db.transaction(() => {
      const source = this.row(accountId, from);
      if (!source) throw new FileStoreError('not-found', `${from} does not exist`);
      if (from === to) throw new FileStoreError('exists', `${to} is the same name`);
      if (source.kind === 'directory' && options.depth === 'infinity' && within(to, from)) throw new FileStoreError('invalid-name', `${to} is inside ${from}`);
      const target = this.row(accountId, to);
      if (target && !options.overwrite) throw new FileStoreError('exists', `${to} already exists`);
      checkPreconditions(target && toFileRecord(target), guard);
      this.requireParent(accountId, to);
      checkLocks(this.liveLocks(accountId, guard.now), [{ path: to, subtree: true, membership: true }], guard);
      const [lo, hi] = subtreeRange(from);
      const rows: FileRow[] = [source];
      if (source.kind === 'directory' && options.depth === 'infinity') rows.push(...(this.sql.tree.all(accountId, lo, hi) as FileRow[]));
      let removedFiles = 0;
      let removedBytes = 0;
      if (target) {
        const u = this.usageOfTree(accountId, to);
        removedFiles = u.entries;
        removedBytes = u.size;
      }
      const addBytes = rows.reduce((n, r) => n + r.size, 0);
      checkLimits(this.usageNow(accountId), rows.length - removedFiles, addBytes - removedBytes, limits);
      if (target) {
        this.removeTree(accountId, to);
        this.sql.deleteLocksOfTree.run(accountId, to, ...subtreeRange(to));
      }
      const now = guard.now;
      for (const r of rows) {
        const path = to + r.path.slice(from.length);
        let blob: number | null = null;
        if (r.kind === 'file' && r.blob_id !== null) {
          blob = Number(this.sql.newBlob.run(accountId, null).lastInsertRowid);
          this.sql.copyChunks.run(blob, r.blob_id);
        }
        this.sql.insertFile.run(accountId, path, parentOf(path), r.kind, r.size, now, now, now, newEtag(), r.attributes, blob);
      }
      this.touchParent(accountId, to, now);
      return { created: !target };
    }).immediate();
  }

  private usageOfTree(accountId: number, path: string): { entries: number; size: number } {
    const [lo, hi] = subtreeRange(path);
    const r = this.sql.entriesTree.get(accountId, path, lo, hi) as { n: number; size: number | null };
    return { entries: r.n, size: r.size ?? 0 };
  }

  async attributes(accountId: number, path: string): Promise<StoredAttribute[] | undefined> {
    if (path === '') return [];
    const row = this.row(accountId, path);
    return row && parseAttributes(row.attributes);
  }

  async updateAttributes(accountId: number, path: string, changes: readonly StoredAttributeChange[], guard: FileGuard): Promise<void> {
    this.db.transaction(() => {
      const row = this.row(accountId, path);
      if (!row) throw new FileStoreError('not-found', `${path === '' ? 'the root directory' : path} does not exist`);
      checkPreconditions(toFileRecord(row), guard);
      checkLocks(this.liveLocks(accountId, guard.now), [{ path, subtree: false, membership: false }], guard);
      const json = attributesJson(applyAttributeChanges(parseAttributes(row.attributes), changes));
      this.sql.setAttributes.run(json, guard.now, accountId, path);
    }).immediate();
  }

  async lock(accountId: number, lock: LockRecord, options: { create: boolean; now: number }, limits: FileLimits): Promise<LockRecord> {
    return this.db.transaction(() => {
      this.sql.pruneLocks.run(accountId, options.now);
      const row = lock.path === '' ? undefined : this.row(accountId, lock.path);
      if (!row && lock.path !== '') {
        if (!options.create) throw new FileStoreError('not-found', `${lock.path} does not exist`);
        this.requireParent(accountId, lock.path);
      }
      const conflict = lockConflict(this.liveLocks(accountId, options.now), lock.path, lock.scope, lock.depth, options.now);
      if (conflict) throw new FileStoreError('locked', `${conflict.path === '' ? 'the storage' : conflict.path} is locked`);
      if (!row && lock.path !== '') {
        checkLimits(this.usageNow(accountId), 1, 0, limits);
        this.sql.insertFile.run(accountId, lock.path, parentOf(lock.path), 'file', 0, options.now, options.now, options.now, newEtag(), '[]', Number(this.sql.newBlob.run(accountId, null).lastInsertRowid));
        this.touchParent(accountId, lock.path, options.now);
      }
      this.sql.insertLock.run(lock.token, accountId, lock.path, lock.scope, lock.type, String(lock.depth), lock.ownerXml, lock.lockedBy, lock.expires);
      return lock;
    }).immediate();
  }

  async refreshLock(accountId: number, path: string, token: string, expires: number, now: number): Promise<LockRecord> {
    return this.db.transaction(() => {
      const row = this.sql.lockByToken.get(token, accountId, path, now) as LockRow | undefined;
      if (!row) throw new FileStoreError('not-found', 'no such lock');
      this.sql.setLockExpiry.run(expires, token);
      return { ...toLockRecord(row), expires };
    }).immediate();
  }

  async unlock(accountId: number, path: string, token: string): Promise<boolean> {
    return this.sql.deleteLock.run(token, accountId, path).changes > 0;
  }

  async locks(accountId: number, now: number): Promise<LockRecord[]> {
    return this.liveLocks(accountId, now);
  }

  async subscriptions(accountId: number): Promise<string[]> {
    return (this.sql.subscriptions.all(accountId) as { name: string }[]).map((r) => r.name);
  }

  async updateSubscriptions(accountId: number, changes: readonly { name: string; add: boolean }[], max: number): Promise<boolean> {
    try {
      this.db.transaction(() => {
        for (const change of changes) {
          if (change.add) this.sql.subscribe.run(accountId, change.name);
          else this.sql.unsubscribe.run(accountId, change.name);
        }
        // Thrown to roll the changes back.
        if ((this.sql.countSubscriptions.get(accountId) as { n: number }).n > max) throw new SubscriptionsOverLimit();
      }).immediate();
      return true;
    } catch (err) {
      if (err instanceof SubscriptionsOverLimit) return false;
      throw err;
    }
  }
}

class SubscriptionsOverLimit extends Error {}

/** What a listing shows of an entry (FileRecord's fields), read as arrays. */
const LISTED_COLUMNS = 'path, kind, size, created, modified, attrs_modified, etag';
type ListedRow = [string, FileRecord['kind'], number, number, number, number, string];

const COLUMNS = 'path, kind, size, created, modified, attrs_modified, etag, blob_id, attributes';

function prepareStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    get: `SELECT ${COLUMNS} FROM files WHERE account_id = ? AND path = ?`,
    anyChild: 'SELECT 1 FROM files WHERE account_id = ? AND parent = ? LIMIT 1',
    tree: `SELECT ${COLUMNS} FROM files WHERE account_id = ? AND path >= ? AND path < ? ORDER BY path`,
    directories: "SELECT path FROM files WHERE account_id = ? AND kind = 'directory' ORDER BY path",
    totals: 'SELECT count(*) AS n, sum(size) AS size FROM files WHERE account_id = ?',
    usageAll: "SELECT count(*) FILTER (WHERE kind = 'file') AS n, sum(size) AS size FROM files WHERE account_id = ?",
    usageTree: "SELECT count(*) FILTER (WHERE kind = 'file') AS n, sum(size) AS size FROM files WHERE account_id = ? AND path >= ? AND path < ?",
    entriesTree: 'SELECT count(*) AS n, sum(size) AS size FROM files WHERE account_id = ? AND (path = ? OR (path >= ? AND path < ?))',
    insertFile: `INSERT INTO files (account_id, path, parent, kind, size, created, modified, attrs_modified, etag, attributes, blob_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    setContent: 'UPDATE files SET size = ?, modified = ?, etag = ?, blob_id = ? WHERE account_id = ? AND path = ?',
    setAttributes: 'UPDATE files SET attributes = ?, attrs_modified = ? WHERE account_id = ? AND path = ?',
    touch: 'UPDATE files SET modified = ? WHERE account_id = ? AND path = ?',
    deleteBlobsOfTree: `DELETE FROM file_blobs WHERE id IN (SELECT blob_id FROM files WHERE account_id = ? AND blob_id IS NOT NULL
                        AND (path = ? OR (path >= ? AND path < ?)))`,
    deleteTree: 'DELETE FROM files WHERE account_id = ? AND (path = ? OR (path >= ? AND path < ?))',
    renameTree: `UPDATE files SET path = @to || substr(path, @cut),
                   parent = CASE WHEN path = @from THEN parent ELSE @to || substr(parent, @cut) END
                 WHERE account_id = @account AND (path = @from OR (path >= @lo AND path < @hi))`,
    setParent: 'UPDATE files SET parent = ? WHERE account_id = ? AND path = ?',
    newBlob: 'INSERT INTO file_blobs (account_id, staged_at) VALUES (?, ?)',
    blob: 'SELECT account_id, staged_at FROM file_blobs WHERE id = ?',
    liveBlob: 'UPDATE file_blobs SET staged_at = NULL WHERE id = ?',
    deleteBlob: 'DELETE FROM file_blobs WHERE id = ?',
    pruneStaging: 'DELETE FROM file_blobs WHERE staged_at IS NOT NULL AND staged_at < ?',
    insertChunk: 'INSERT INTO file_chunks (blob_id, offset, data) VALUES (?, ?, ?)',
    deleteChunk: 'DELETE FROM file_chunks WHERE blob_id = ? AND offset = ?',
    // Rows overlapping [start, till): a row is at most CHUNK long, so it begins after start - CHUNK.
    chunksIn: 'SELECT offset, data FROM file_chunks WHERE blob_id = ? AND offset > ? AND offset < ? AND offset + length(data) > ? ORDER BY offset',
    moveChunks: 'UPDATE file_chunks SET blob_id = ?, offset = offset + ? WHERE blob_id = ?',
    copyChunks: 'INSERT INTO file_chunks (blob_id, offset, data) SELECT ?, offset, data FROM file_chunks WHERE blob_id = ?',
    locks: 'SELECT * FROM file_locks WHERE account_id = ? AND expires > ? ORDER BY path',
    pruneLocks: 'DELETE FROM file_locks WHERE account_id = ? AND expires <= ?',
    insertLock: `INSERT INTO file_locks (token, account_id, path, scope, type, depth, owner_xml, locked_by, expires)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    lockByToken: 'SELECT * FROM file_locks WHERE token = ? AND account_id = ? AND path = ? AND expires > ?',
    setLockExpiry: 'UPDATE file_locks SET expires = ? WHERE token = ?',
    deleteLock: 'DELETE FROM file_locks WHERE token = ? AND account_id = ? AND path = ?',
    deleteLocksOfTree: 'DELETE FROM file_locks WHERE account_id = ? AND (path = ? OR (path >= ? AND path < ?))',
    subscriptions: 'SELECT name FROM file_subscriptions WHERE account_id = ? ORDER BY name',
    countSubscriptions: 'SELECT count(*) AS n FROM file_subscriptions WHERE account_id = ?',
    subscribe: 'INSERT INTO file_subscriptions (account_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING',
    unsubscribe: 'DELETE FROM file_subscriptions WHERE account_id = ? AND name = ?',
  });
}
