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
import type { Db, Sql, Tx } from './db.js';


const COLUMNS = 'path, kind, size, created, modified, attrs_modified, etag, blob_id, attributes';

const SQL = {
  // Every change of an account's files takes the account's row first: changes of one
  // storage follow each other, so the limits, locks and targets they check hold at commit.
  lockAccount: { name: 'files.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  get: { name: 'files.get', text: `SELECT ${COLUMNS} FROM files WHERE account_id = $1 AND path = $2` },
  children: { name: 'files.children', text: `SELECT ${COLUMNS} FROM files WHERE account_id = $1 AND parent = $2 ORDER BY path` },
  anyChild: { name: 'files.anyChild', text: 'SELECT 1 FROM files WHERE account_id = $1 AND parent = $2 LIMIT 1' },
  tree: { name: 'files.tree', text: `SELECT ${COLUMNS} FROM files WHERE account_id = $1 AND path >= $2 AND path < $3 ORDER BY path` },
  directories: { name: 'files.directories', text: "SELECT path FROM files WHERE account_id = $1 AND kind = 'directory' ORDER BY path" },
  totals: { name: 'files.totals', text: 'SELECT count(*) AS n, coalesce(sum(size), 0) AS size FROM files WHERE account_id = $1' },
  usageAll: {
    name: 'files.usageAll',
    text: "SELECT count(*) FILTER (WHERE kind = 'file') AS n, coalesce(sum(size), 0) AS size FROM files WHERE account_id = $1",
  },
  usageTree: {
    name: 'files.usageTree',
    text: "SELECT count(*) FILTER (WHERE kind = 'file') AS n, coalesce(sum(size), 0) AS size FROM files WHERE account_id = $1 AND path >= $2 AND path < $3",
  },
  entriesTree: {
    name: 'files.entriesTree',
    text: 'SELECT count(*) AS n, coalesce(sum(size), 0) AS size FROM files WHERE account_id = $1 AND (path = $2 OR (path >= $3 AND path < $4))',
  },
  insertFile: {
    name: 'files.insertFile',
    text: `INSERT INTO files (account_id, path, parent, kind, size, created, modified, attrs_modified, etag, attributes, blob_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
  },
  setContent: { name: 'files.setContent', text: 'UPDATE files SET size = $1, modified = $2, etag = $3, blob_id = $4 WHERE account_id = $5 AND path = $6' },
  setAttributes: { name: 'files.setAttributes', text: 'UPDATE files SET attributes = $1, attrs_modified = $2 WHERE account_id = $3 AND path = $4' },
  touch: { name: 'files.touch', text: 'UPDATE files SET modified = $1 WHERE account_id = $2 AND path = $3' },
  deleteBlobsOfTree: {
    name: 'files.deleteBlobsOfTree',
    text: `DELETE FROM file_blobs WHERE id IN (SELECT blob_id FROM files WHERE account_id = $1 AND blob_id IS NOT NULL
           AND (path = $2 OR (path >= $3 AND path < $4)))`,
  },
  deleteTree: { name: 'files.deleteTree', text: 'DELETE FROM files WHERE account_id = $1 AND (path = $2 OR (path >= $3 AND path < $4))' },
  renameTree: {
    name: 'files.renameTree',
    text: `UPDATE files SET path = $1 || substr(path, $2::int),
             parent = CASE WHEN path = $3 THEN parent ELSE $1 || substr(parent, $2::int) END
           WHERE account_id = $4 AND (path = $3 OR (path >= $5 AND path < $6))`,
  },
  setParent: { name: 'files.setParent', text: 'UPDATE files SET parent = $1 WHERE account_id = $2 AND path = $3' },
  newBlob: { name: 'files.newBlob', text: 'INSERT INTO file_blobs (account_id, staged_at) VALUES ($1, $2) RETURNING id' },
  blob: { name: 'files.blob', text: 'SELECT account_id, staged_at FROM file_blobs WHERE id = $1 FOR UPDATE' },
  liveBlob: { name: 'files.liveBlob', text: 'UPDATE file_blobs SET staged_at = NULL WHERE id = $1' },
  deleteBlob: { name: 'files.deleteBlob', text: 'DELETE FROM file_blobs WHERE id = $1' },
  pruneStaging: { name: 'files.pruneStaging', text: 'DELETE FROM file_blobs WHERE staged_at IS NOT NULL AND staged_at < $1' },
  insertChunk: { name: 'files.insertChunk', text: 'INSERT INTO file_chunks (blob_id, "offset", data) VALUES ($1, $2, $3)' },
  deleteChunk: { name: 'files.deleteChunk', text: 'DELETE FROM file_chunks WHERE blob_id = $1 AND "offset" = $2' },
  // Rows overlapping [start, till): a row is at most CHUNK long, so it begins after start - CHUNK.
  chunksIn: {
    name: 'files.chunksIn',
    text: 'SELECT "offset", data FROM file_chunks WHERE blob_id = $1 AND "offset" > $2 AND "offset" < $3 AND "offset" + length(data) > $4 ORDER BY "offset"',
  },
  moveChunks: { name: 'files.moveChunks', text: 'UPDATE file_chunks SET blob_id = $1, "offset" = "offset" + $2 WHERE blob_id = $3' },
  copyChunks: { name: 'files.copyChunks', text: 'INSERT INTO file_chunks (blob_id, "offset", data) SELECT $1, "offset", data FROM file_chunks WHERE blob_id = $2' },
  locks: { name: 'files.locks', text: 'SELECT * FROM file_locks WHERE account_id = $1 AND expires > $2 ORDER BY path' },
  pruneLocks: { name: 'files.pruneLocks', text: 'DELETE FROM file_locks WHERE account_id = $1 AND expires <= $2' },
  insertLock: {
    name: 'files.insertLock',
    text: `INSERT INTO file_locks (token, account_id, path, scope, type, depth, owner_xml, locked_by, expires)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
  },
  lockByToken: { name: 'files.lockByToken', text: 'SELECT * FROM file_locks WHERE token = $1 AND account_id = $2 AND path = $3 AND expires > $4' },
  setLockExpiry: { name: 'files.setLockExpiry', text: 'UPDATE file_locks SET expires = $1 WHERE token = $2' },
  deleteLock: { name: 'files.deleteLock', text: 'DELETE FROM file_locks WHERE token = $1 AND account_id = $2 AND path = $3' },
  deleteLocksOfTree: {
    name: 'files.deleteLocksOfTree',
    text: 'DELETE FROM file_locks WHERE account_id = $1 AND (path = $2 OR (path >= $3 AND path < $4))',
  },
  subscriptions: { name: 'files.subscriptions', text: 'SELECT name FROM file_subscriptions WHERE account_id = $1 ORDER BY name' },
  countSubscriptions: { name: 'files.countSubscriptions', text: 'SELECT count(*) AS n FROM file_subscriptions WHERE account_id = $1' },
  subscribe: { name: 'files.subscribe', text: 'INSERT INTO file_subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING' },
  unsubscribe: { name: 'files.unsubscribe', text: 'DELETE FROM file_subscriptions WHERE account_id = $1 AND name = $2' },
} satisfies Record<string, Sql>;

/**
 * The File Storage in PostgreSQL (see src/store/files.ts). Every change is one transaction
 * that first takes the account's row (changes of one storage are serialized, on every
 * node), then decides from what it reads (locks, limits, the target) and writes.
 */
export class PgFiles implements FileStore {
  constructor(private readonly db: Db) {}

  private async row(tx: Tx | Db, accountId: number, path: string): Promise<FileRow | undefined> {
    return tx.row<FileRow>(SQL.get, [accountId, path]);
  }

  private async liveLocks(tx: Tx | Db, accountId: number, now: number): Promise<LockRecord[]> {
    return (await tx.rows<LockRow>(SQL.locks, [accountId, now])).map(toLockRecord);
  }

  private async usageNow(tx: Tx, accountId: number): Promise<{ files: number; size: number }> {
    const r = (await tx.row<{ n: number; size: number }>(SQL.totals, [accountId]))!;
    return { files: Number(r.n), size: Number(r.size) };
  }

  private async requireParent(tx: Tx, accountId: number, path: string): Promise<void> {
    const parent = parentOf(path);
    if (parent === '') return;
    const row = await this.row(tx, accountId, parent);
    if (!row) throw new FileStoreError('parent-missing', `the directory ${parent} does not exist`);
    if (row.kind !== 'directory') throw new FileStoreError('not-a-directory', `${parent} is not a directory`);
  }

  private async touchParent(tx: Tx, accountId: number, path: string, now: number): Promise<void> {
    const parent = parentOf(path);
    if (parent !== '') await tx.run(SQL.touch, [now, accountId, parent]);
  }

  private async removeTree(tx: Tx, accountId: number, path: string): Promise<void> {
    const [from, till] = subtreeRange(path);
    // The entries first (they name the blobs), then the blobs (their chunks cascade).
    const blobs = await tx.rows<{ blob_id: number | null }>(
      { name: 'files.blobsOfTree', text: 'SELECT blob_id FROM files WHERE account_id = $1 AND blob_id IS NOT NULL AND (path = $2 OR (path >= $3 AND path < $4))' },
      [accountId, path, from, till],
    );
    await tx.run(SQL.deleteTree, [accountId, path, from, till]);
    for (const b of blobs) if (b.blob_id !== null) await tx.run(SQL.deleteBlob, [b.blob_id]);
  }

  private async newBlob(tx: Tx, accountId: number, stagedAt: number | null): Promise<number> {
    return Number((await tx.row<{ id: number }>(SQL.newBlob, [accountId, stagedAt]))!.id);
  }

  async stat(accountId: number, path: string): Promise<FileRecord | undefined> {
    const row = await this.row(this.db, accountId, path);
    return row && toFileRecord(row);
  }

  async list(accountId: number, directory: string): Promise<FileRecord[]> {
    return this.db.tx(
      async (tx) => {
        if (directory !== '') {
          const row = await this.row(tx, accountId, directory);
          if (!row) throw new FileStoreError('not-found', `the directory ${directory} does not exist`);
          if (row.kind !== 'directory') throw new FileStoreError('not-a-directory', `${directory} is not a directory`);
        }
        return (await tx.rows<FileRow>(SQL.children, [accountId, directory])).map(toFileRecord);
      },
      { snapshot: true },
    );
  }

  async directories(accountId: number): Promise<string[]> {
    return (await this.db.rows<{ path: string }>(SQL.directories, [accountId])).map((r) => r.path);
  }

  async usage(accountId: number, directory: string): Promise<{ files: number; size: number }> {
    const r =
      directory === ''
        ? await this.db.row<{ n: number; size: number }>(SQL.usageAll, [accountId])
        : await this.db.row<{ n: number; size: number }>(SQL.usageTree, [accountId, ...subtreeRange(directory)]);
    return { files: Number(r!.n), size: Number(r!.size) };
  }

  async totals(accountId: number): Promise<{ entries: number; size: number }> {
    const r = (await this.db.row<{ n: number; size: number }>(SQL.totals, [accountId]))!;
    return { entries: Number(r.n), size: Number(r.size) };
  }

  async read(accountId: number, path: string, start: number, end: number, etag?: string): Promise<{ record: FileRecord; pieces: Buffer[] }> {
    return this.db.tx(
      async (tx) => {
        const row = await this.row(tx, accountId, path);
        if (!row) throw new FileStoreError('not-found', `${path} does not exist`);
        if (row.kind !== 'file') throw new FileStoreError('is-a-directory', `${path} is a directory`);
        if (etag !== undefined && row.etag !== etag) throw new FileStoreError('precondition-failed', `${path} changed while it was read`);
        if (start > row.size) throw new FileStoreError('beyond-eof', 'reading beyond the EOF mark');
        const till = Math.min(end, row.size);
        if (till <= start || row.blob_id === null) return { record: toFileRecord(row), pieces: [] };
        const rows = (await tx.rows<{ offset: number; data: Buffer }>(SQL.chunksIn, [row.blob_id, start - CHUNK, till, start])).map(
          (r): ChunkRow => ({ offset: Number(r.offset), data: r.data }),
        );
        return { record: toFileRecord(row), pieces: slices(rows, start, till) };
      },
      { snapshot: true },
    );
  }

  async stage(accountId: number, now: number): Promise<number> {
    return Number((await this.db.row<{ id: number }>(SQL.newBlob, [accountId, now]))!.id);
  }

  async stageChunk(blob: number, offset: number, data: Buffer): Promise<void> {
    await this.db.run(SQL.insertChunk, [blob, offset, data]);
  }

  async discard(blob: number): Promise<void> {
    await this.db.run(SQL.deleteBlob, [blob]);
  }

  async pruneStaging(before: number): Promise<number> {
    return this.db.run(SQL.pruneStaging, [before]);
  }

  async commitWrite(accountId: number, path: string, blob: number, size: number, mode: StoreWriteMode, guard: FileGuard, limits: FileLimits): Promise<{ record: FileRecord; created: boolean }> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      const staged = await tx.row<{ account_id: number; staged_at: number | null }>(SQL.blob, [blob]);
      if (!staged || staged.staged_at === null || Number(staged.account_id) !== accountId) throw new Error(`no staging blob ${blob}`);
      const row = await this.row(tx, accountId, path);
      if (row && row.kind === 'directory') throw new FileStoreError('is-a-directory', `${path} is a directory`);
      if (row && mode.kind === 'new') throw new FileStoreError('exists', `${path} already exists`);
      if (!row && mode.kind === 'at') throw new FileStoreError('not-found', `${path} does not exist`);
      checkPreconditions(row && toFileRecord(row), guard);
      checkLocks(await this.liveLocks(tx, accountId, guard.now), [{ path, subtree: false, membership: !row }], guard);
      const now = guard.now;
      const etag = newEtag();
      if (!row) {
        await this.requireParent(tx, accountId, path);
        checkLimits(await this.usageNow(tx, accountId), 1, size, limits);
        await tx.run(SQL.liveBlob, [blob]);
        await tx.run(SQL.insertFile, [accountId, path, parentOf(path), 'file', size, now, now, now, etag, '[]', blob]);
        await this.touchParent(tx, accountId, path, now);
        return { record: toFileRecord((await this.row(tx, accountId, path))!), created: true };
      }
      const live = Number(row.blob_id);
      if (mode.kind === 'replace') {
        checkLimits(await this.usageNow(tx, accountId), 0, size - Number(row.size), limits);
        await tx.run(SQL.setContent, [size, now, etag, blob, accountId, path]);
        await tx.run(SQL.deleteBlob, [live]);
        await tx.run(SQL.liveBlob, [blob]);
      } else {
        const current = Number(row.size);
        const position = mode.kind === 'append' ? current : (mode as { position: number }).position;
        if (position > current) throw new FileStoreError('beyond-eof', 'writing beyond the EOF mark');
        const newSize = Math.max(current, position + size);
        checkLimits(await this.usageNow(tx, accountId), 0, newSize - current, limits);
        if (position < current && size > 0) {
          const overlapping = (await tx.rows<{ offset: number; data: Buffer }>(SQL.chunksIn, [live, position - CHUNK, position + size, position])).map(
            (r): ChunkRow => ({ offset: Number(r.offset), data: r.data }),
          );
          const { remove, keep } = splitForOverwrite(overlapping, position, position + size);
          for (const offset of remove) await tx.run(SQL.deleteChunk, [live, offset]);
          for (const piece of keep) await tx.run(SQL.insertChunk, [live, piece.offset, Buffer.from(piece.data)]);
        }
        await tx.run(SQL.moveChunks, [live, position, blob]);
        await tx.run(SQL.deleteBlob, [blob]);
        await tx.run(SQL.setContent, [newSize, now, etag, live, accountId, path]);
      }
      return { record: toFileRecord((await this.row(tx, accountId, path))!), created: false };
    });
  }

  async createDirectory(accountId: number, path: string, guard: FileGuard, limits: FileLimits): Promise<FileRecord> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      const row = await this.row(tx, accountId, path);
      if (row || path === '') throw new FileStoreError('exists', `${path} already exists`);
      checkPreconditions(undefined, guard);
      await this.requireParent(tx, accountId, path);
      checkLocks(await this.liveLocks(tx, accountId, guard.now), [{ path, subtree: false, membership: true }], guard);
      checkLimits(await this.usageNow(tx, accountId), 1, 0, limits);
      await tx.run(SQL.insertFile, [accountId, path, parentOf(path), 'directory', 0, guard.now, guard.now, guard.now, newEtag(), '[]', null]);
      await this.touchParent(tx, accountId, path, guard.now);
      return toFileRecord((await this.row(tx, accountId, path))!);
    });
  }

  async remove(accountId: number, path: string, options: { recursive: boolean; kind?: 'file' | 'directory' }, guard: FileGuard): Promise<void> {
    await this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      const row = await this.row(tx, accountId, path);
      if (!row) throw new FileStoreError('not-found', `${path} does not exist`);
      if (options.kind === 'file' && row.kind === 'directory') throw new FileStoreError('is-a-directory', `${path} is a directory`);
      if (options.kind === 'directory' && row.kind === 'file') throw new FileStoreError('not-a-directory', `${path} is not a directory`);
      checkPreconditions(toFileRecord(row), guard);
      if (row.kind === 'directory' && !options.recursive && (await tx.row(SQL.anyChild, [accountId, path])) !== undefined) {
        throw new FileStoreError('not-empty', `the directory ${path} is not empty`);
      }
      checkLocks(await this.liveLocks(tx, accountId, guard.now), [{ path, subtree: row.kind === 'directory', membership: true }], guard);
      await this.removeTree(tx, accountId, path);
      await tx.run(SQL.deleteLocksOfTree, [accountId, path, ...subtreeRange(path)]);
      await this.touchParent(tx, accountId, path, guard.now);
    });
  }

  async move(accountId: number, from: string, to: string, options: { overwrite: boolean; kind?: 'file' | 'directory' }, guard: FileGuard): Promise<{ created: boolean }> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      const source = await this.row(tx, accountId, from);
      if (!source) throw new FileStoreError('not-found', `${from} does not exist`);
      if (options.kind === 'file' && source.kind === 'directory') throw new FileStoreError('is-a-directory', `${from} is a directory`);
      if (options.kind === 'directory' && source.kind === 'file') throw new FileStoreError('not-a-directory', `${from} is not a directory`);
      if (from === to) throw new FileStoreError('exists', `${to} is the same name`);
      if (within(to, from)) throw new FileStoreError('invalid-name', `${to} is inside ${from}`);
      const target = await this.row(tx, accountId, to);
      if (target && !options.overwrite) throw new FileStoreError('exists', `${to} already exists`);
      checkPreconditions(target && toFileRecord(target), guard);
      await this.requireParent(tx, accountId, to);
      const touched: Touched[] = [
        { path: from, subtree: true, membership: true },
        { path: to, subtree: true, membership: true },
      ];
      checkLocks(await this.liveLocks(tx, accountId, guard.now), touched, guard);
      if (target) {
        await this.removeTree(tx, accountId, to);
        await tx.run(SQL.deleteLocksOfTree, [accountId, to, ...subtreeRange(to)]);
      }
      const [lo, hi] = subtreeRange(from);
      await tx.run(SQL.deleteLocksOfTree, [accountId, from, lo, hi]);
      await tx.run(SQL.renameTree, [to, from.length + 1, from, accountId, lo, hi]);
      await tx.run(SQL.setParent, [parentOf(to), accountId, to]);
      await this.touchParent(tx, accountId, from, guard.now);
      await this.touchParent(tx, accountId, to, guard.now);
      return { created: !target };
    });
  }

  async copy(accountId: number, from: string, to: string, options: { overwrite: boolean; depth: 0 | 'infinity' }, guard: FileGuard, limits: FileLimits): Promise<{ created: boolean }> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      const source = await this.row(tx, accountId, from);
      if (!source) throw new FileStoreError('not-found', `${from} does not exist`);
      if (from === to) throw new FileStoreError('exists', `${to} is the same name`);
      if (source.kind === 'directory' && options.depth === 'infinity' && within(to, from)) throw new FileStoreError('invalid-name', `${to} is inside ${from}`);
      const target = await this.row(tx, accountId, to);
      if (target && !options.overwrite) throw new FileStoreError('exists', `${to} already exists`);
      checkPreconditions(target && toFileRecord(target), guard);
      await this.requireParent(tx, accountId, to);
      checkLocks(await this.liveLocks(tx, accountId, guard.now), [{ path: to, subtree: true, membership: true }], guard);
      const [lo, hi] = subtreeRange(from);
      const rows: FileRow[] = [source];
      if (source.kind === 'directory' && options.depth === 'infinity') rows.push(...(await tx.rows<FileRow>(SQL.tree, [accountId, lo, hi])));
      let removedEntries = 0;
      let removedBytes = 0;
      if (target) {
        const r = (await tx.row<{ n: number; size: number }>(SQL.entriesTree, [accountId, to, ...subtreeRange(to)]))!;
        removedEntries = Number(r.n);
        removedBytes = Number(r.size);
      }
      const addBytes = rows.reduce((n, r) => n + Number(r.size), 0);
      checkLimits(await this.usageNow(tx, accountId), rows.length - removedEntries, addBytes - removedBytes, limits);
      if (target) {
        await this.removeTree(tx, accountId, to);
        await tx.run(SQL.deleteLocksOfTree, [accountId, to, ...subtreeRange(to)]);
      }
      const now = guard.now;
      for (const r of rows) {
        const path = to + r.path.slice(from.length);
        let blob: number | null = null;
        if (r.kind === 'file' && r.blob_id !== null) {
          blob = await this.newBlob(tx, accountId, null);
          await tx.run(SQL.copyChunks, [blob, r.blob_id]);
        }
        await tx.run(SQL.insertFile, [accountId, path, parentOf(path), r.kind, r.size, now, now, now, newEtag(), r.attributes, blob]);
      }
      await this.touchParent(tx, accountId, to, now);
      return { created: !target };
    });
  }

  async attributes(accountId: number, path: string): Promise<StoredAttribute[] | undefined> {
    if (path === '') return [];
    const row = await this.row(this.db, accountId, path);
    return row && parseAttributes(row.attributes);
  }

  async updateAttributes(accountId: number, path: string, changes: readonly StoredAttributeChange[], guard: FileGuard): Promise<void> {
    await this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      const row = await this.row(tx, accountId, path);
      if (!row) throw new FileStoreError('not-found', `${path === '' ? 'the root directory' : path} does not exist`);
      checkPreconditions(toFileRecord(row), guard);
      checkLocks(await this.liveLocks(tx, accountId, guard.now), [{ path, subtree: false, membership: false }], guard);
      const json = attributesJson(applyAttributeChanges(parseAttributes(row.attributes), changes));
      await tx.run(SQL.setAttributes, [json, guard.now, accountId, path]);
    });
  }

  async lock(accountId: number, lock: LockRecord, options: { create: boolean; now: number }, limits: FileLimits): Promise<LockRecord> {
    return this.db.tx(async (tx) => {
      await tx.rows(SQL.lockAccount, [accountId]);
      await tx.run(SQL.pruneLocks, [accountId, options.now]);
      const row = lock.path === '' ? undefined : await this.row(tx, accountId, lock.path);
      if (!row && lock.path !== '') {
        if (!options.create) throw new FileStoreError('not-found', `${lock.path} does not exist`);
        await this.requireParent(tx, accountId, lock.path);
      }
      const conflict = lockConflict(await this.liveLocks(tx, accountId, options.now), lock.path, lock.scope, lock.depth, options.now);
      if (conflict) throw new FileStoreError('locked', `${conflict.path === '' ? 'the storage' : conflict.path} is locked`);
      if (!row && lock.path !== '') {
        checkLimits(await this.usageNow(tx, accountId), 1, 0, limits);
        const blob = await this.newBlob(tx, accountId, null);
        const now = options.now;
        await tx.run(SQL.insertFile, [accountId, lock.path, parentOf(lock.path), 'file', 0, now, now, now, newEtag(), '[]', blob]);
        await this.touchParent(tx, accountId, lock.path, now);
      }
      await tx.run(SQL.insertLock, [lock.token, accountId, lock.path, lock.scope, lock.type, String(lock.depth), lock.ownerXml, lock.lockedBy, lock.expires]);
      return lock;
    });
  }

  async refreshLock(accountId: number, path: string, token: string, expires: number, now: number): Promise<LockRecord> {
    return this.db.tx(async (tx) => {
      const row = await tx.row<LockRow>(SQL.lockByToken, [token, accountId, path, now]);
      if (!row) throw new FileStoreError('not-found', 'no such lock');
      await tx.run(SQL.setLockExpiry, [expires, token]);
      return { ...toLockRecord(row), expires };
    });
  }

  async unlock(accountId: number, path: string, token: string): Promise<boolean> {
    return (await this.db.run(SQL.deleteLock, [token, accountId, path])) > 0;
  }

  async locks(accountId: number, now: number): Promise<LockRecord[]> {
    return this.liveLocks(this.db, accountId, now);
  }

  async subscriptions(accountId: number): Promise<string[]> {
    return (await this.db.rows<{ name: string }>(SQL.subscriptions, [accountId])).map((r) => r.name);
  }

  async updateSubscriptions(accountId: number, changes: readonly { name: string; add: boolean }[], max: number): Promise<boolean> {
    try {
      await this.db.tx(async (tx) => {
        // Serialised per account, so that two nodes adding at once both count each other.
        await tx.rows(SQL.lockAccount, [accountId]);
        for (const change of changes) await tx.run(change.add ? SQL.subscribe : SQL.unsubscribe, [accountId, change.name]);
        const [row] = await tx.rows<{ n: string }>(SQL.countSubscriptions, [accountId]);
        // Thrown to roll the changes back.
        if (Number(row?.n ?? 0) > max) throw new SubscriptionsOverLimit();
      });
      return true;
    } catch (err) {
      if (err instanceof SubscriptionsOverLimit) return false;
      throw err;
    }
  }
}

/** Thrown inside a transaction to roll back subscription changes beyond the limit. */
class SubscriptionsOverLimit extends Error {}
