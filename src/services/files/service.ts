import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { EventBus } from '../../bus/bus.js';
import type { Logger } from '../../log.js';
import { CHUNK, FileStoreError, STAGING_TTL, type FileGuard, type FileLimits, type FileRecord, type LockRecord } from '../../store/files.js';
import type { AccountRecord, Store } from '../../store/store.js';
import type { AccountRightsService } from '../account-rights.js';
import { parseSizeSetting, type AccountService } from '../accounts.js';
import {
  FileError,
  type FileAccess,
  type FileAttribute,
  type FileAttributeChange,
  type FileEntry,
  type FileKind,
  type FileLock,
  type FileStorage,
  type FileTarget,
  type FileUsage,
  type NewLock,
  type Preconditions,
  type WriteMode,
} from './api.js';

export const MAX_SEGMENT_LENGTH = 255;
export const MAX_PATH_LENGTH = 1024;
/** Lock lifetimes: the default when none is asked for, and the longest granted. */
export const DEFAULT_LOCK_SECONDS = 600;
export const MAX_LOCK_SECONDS = 7 * 24 * 3600;
/** Most subscriptions an account keeps. */
export const MAX_SUBSCRIPTIONS = 1000;

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function quoted(name: string): string {
  return JSON.stringify(name.length > 100 ? name.slice(0, 100) + '...' : name);
}

/**
 * Normalizes a path inside a storage: `/` separators (leading, trailing and doubled ones
 * dropped; `\` is no separator but refused), no `.`/`..` segment, no control character, no
 * `~`-prefixed segment, segments of at most 255 and paths of at most 1024 characters. '' is
 * the root.
 */
export function normalizePath(path: string): string {
  const bad = (why: string): never => {
    throw new FileError('invalid-name', `invalid file name ${quoted(path)}: ${why}`);
  };
  if (path.length > MAX_PATH_LENGTH) bad(`longer than ${MAX_PATH_LENGTH} characters`);
  if (CONTROL.test(path)) bad('control characters');
  if (path.includes('\\')) bad('backslash');
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  const segments = trimmed.split('/');
  if (segments.includes('')) bad('empty segment');
  for (const segment of segments) {
    if (segment === '.' || segment === '..') bad(`"${segment}" segment`);
    if (segment.startsWith('~')) bad('"~" is only allowed before an account name at the start');
    if (segment.length > MAX_SEGMENT_LENGTH) bad(`a segment longer than ${MAX_SEGMENT_LENGTH} characters`);
  }
  return segments.join('/');
}

function lastSegment(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function toEntry(record: FileRecord): FileEntry {
  return {
    path: record.path,
    name: lastSegment(record.path),
    kind: record.kind,
    size: record.size,
    created: new Date(record.created),
    modified: new Date(record.modified),
    attrsModified: new Date(record.attrsModified),
    etag: record.etag,
  };
}

function toLock(record: LockRecord): FileLock {
  return { ...record, expires: new Date(record.expires) };
}

/** Bytes a streamed read takes from the store at a time (whole chunks). */
const STREAM_STRETCH = 4 * CHUNK;

/** Splits a stream or buffer into pieces of at most CHUNK bytes. */
async function* pieces(data: Buffer | Readable): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(data)) {
    for (let i = 0; i < data.length; i += CHUNK) yield data.subarray(i, i + CHUNK);
    return;
  }
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of data as AsyncIterable<Buffer | string>) {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    while (buf.length > 0) {
      const take = Math.min(CHUNK - pendingBytes, buf.length);
      pending.push(buf.subarray(0, take));
      pendingBytes += take;
      buf = buf.subarray(take);
      if (pendingBytes === CHUNK) {
        yield Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

/**
 * The File Storage of the accounts over the store (see api.ts for the contract and
 * src/store/files.ts for how it is kept). The decisions that depend on stored state (locks,
 * ETags, limits, existence) are made inside the store's transactions; this class validates
 * names, resolves `~account/`, reads the limits from the account settings, streams content
 * into staging blobs, translates the store's refusals and publishes `fileChanged`.
 */
export class FileService implements FileStorage {
  private readonly prune: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly bus: EventBus,
    private readonly log: Logger,
    /** Account Access Rights: `r`/`w` granted by another account's ACL open its storage. */
    private readonly rights?: Pick<AccountRightsService, 'rights'>,
    private readonly clock: () => number = Date.now,
  ) {
    // Staging blobs left by a crashed write: pruned at start and every hour (a day old at least,
    // so that no write in progress on any node loses its blob).
    const prune = (): void => {
      void this.store.files
        .pruneStaging(this.clock() - STAGING_TTL)
        .then((n) => {
          if (n > 0) this.log.info({ event: 'file.staging_pruned', blobs: n }, 'staging blobs of interrupted writes removed');
        })
        .catch(() => {});
    };
    prune();
    this.prune = setInterval(prune, 3600_000);
    this.prune.unref();
  }

  close(): void {
    clearInterval(this.prune);
  }

  /** Runs a store call, turning its refusals into FileErrors. */
  private async call<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof FileStoreError) throw new FileError(err.reason, err.message);
      throw err;
    }
  }

  private guard(conditions: Preconditions | undefined): FileGuard {
    return { now: this.clock(), lockTokens: conditions?.lockTokens, ifMatch: conditions?.ifMatch, ifNoneMatch: conditions?.ifNoneMatch };
  }

  private changed(owner: AccountRecord, path: string): void {
    this.bus.publish('fileChanged', { accountId: owner.id, path });
  }

  /** The owner's limits, read as stored now. */
  async limits(owner: AccountRecord): Promise<FileLimits> {
    const settings = await this.accounts.effectiveSettings(owner);
    return { maxBytes: parseSizeSetting(settings.MaxWebSize), maxFiles: parseSizeSetting(settings.MaxWebFiles) };
  }

  /** Logs a refusal worth an operator's attention (limits), and rethrows. */
  private refused(owner: AccountRecord, path: string, err: unknown): never {
    if (err instanceof FileError && err.reason === 'limit-exceeded') {
      this.log.info({ event: 'file.limit', account: `${owner.name}@${owner.domain}`, path, error: err.message }, 'a File Storage limit refused a change');
    }
    throw err;
  }

  async resolve(actor: AccountRecord, name: string, access: FileAccess = 'write'): Promise<FileTarget> {
    if (typeof name !== 'string') throw new FileError('invalid-name', 'invalid file name');
    if (!name.startsWith('~')) return { owner: actor, path: normalizePath(name) };
    const slash = name.indexOf('/');
    const address = slash < 0 ? name.slice(1) : name.slice(1, slash);
    const rest = slash < 0 ? '' : name.slice(slash + 1);
    if (address === '' || CONTROL.test(address) || address.length > 255) throw new FileError('invalid-name', `invalid file name ${quoted(name)}`);
    const path = normalizePath(rest);
    const owner = await this.accounts.find(address, actor.domain);
    if (!owner) throw new FileError('not-found', `unknown account ${quoted(address)}`);
    const granted = await this.access(actor, owner);
    if (granted !== 'write' && granted !== access) {
      this.log.info({ event: 'file.denied', actor: `${actor.name}@${actor.domain}`, owner: `${owner.name}@${owner.domain}`, access }, 'File Storage of another account refused');
      throw new FileError('access-denied', 'access denied');
    }
    return { owner, path };
  }

  async access(actor: AccountRecord, owner: AccountRecord): Promise<FileAccess | undefined> {
    if (owner.id === actor.id || (await this.accounts.hasDomainAdminRight(actor, owner, 'CanAccessWebSites'))) return 'write';
    const rights = this.rights ? await this.rights.rights(actor, owner) : '';
    return rights.includes('w') ? 'write' : rights.includes('r') ? 'read' : undefined;
  }

  async stat(owner: AccountRecord, path: string): Promise<FileEntry | undefined> {
    if (path === '') {
      const created = owner.created;
      return { path: '', name: '', kind: 'directory', size: 0, created, modified: created, attrsModified: created, etag: `root-${owner.id}` };
    }
    const record = await this.store.files.stat(owner.id, path);
    return record && toEntry(record);
  }

  async list(owner: AccountRecord, directory: string): Promise<FileEntry[]> {
    return (await this.call(() => this.store.files.list(owner.id, directory))).map(toEntry);
  }

  async directories(owner: AccountRecord): Promise<string[]> {
    return this.store.files.directories(owner.id);
  }

  async usage(owner: AccountRecord, directory: string): Promise<FileUsage> {
    if (directory !== '') {
      const entry = await this.stat(owner, directory);
      if (!entry) throw new FileError('not-found', `the directory ${directory} does not exist`);
      if (entry.kind !== 'directory') throw new FileError('not-a-directory', `${directory} is not a directory`);
    }
    const [usage, limits] = await Promise.all([this.store.files.usage(owner.id, directory), this.limits(owner)]);
    return { files: usage.files, size: usage.size, filesLimit: limits.maxFiles, sizeLimit: limits.maxBytes };
  }

  async readRange(owner: AccountRecord, path: string, position: number, limit: number): Promise<{ entry: FileEntry; data: Buffer }> {
    if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(limit) || limit < 0) throw new FileError('beyond-eof', 'bad position or limit');
    const { record, pieces } = await this.call(() => this.store.files.read(owner.id, path, position, position + limit));
    return { entry: toEntry(record), data: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces) };
  }

  async open(owner: AccountRecord, path: string, range?: { start: number; end: number }): Promise<{ entry: FileEntry; stream: Readable }> {
    const record = await this.call(() => this.store.files.stat(owner.id, path));
    if (!record) throw new FileError('not-found', `${path} does not exist`);
    if (record.kind !== 'file') throw new FileError('is-a-directory', `${path} is a directory`);
    const start = range?.start ?? 0;
    const end = range ? Math.min(range.end + 1, record.size) : record.size;
    if (start > record.size) throw new FileError('beyond-eof', 'reading beyond the EOF mark');
    const files = this.store.files;
    const etag = record.etag;
    // Each stretch is read in a transaction of its own, for this version only: a change of the
    // file while it streams ends the stream with an error (never a mix of two versions). A
    // stretch is a few chunks: the per-transaction cost is paid once per megabyte, and the
    // chunks go to the socket as the store gave them.
    async function* read(): AsyncGenerator<Buffer> {
      for (let at = start; at < end; ) {
        const { pieces } = await files.read(owner.id, path, at, Math.min(end, at + STREAM_STRETCH), etag);
        if (pieces.length === 0) break;
        for (const piece of pieces) {
          yield piece;
          at += piece.length;
        }
      }
    }
    // Up to a few pieces read ahead while the consumer (a socket) drains the one before.
    return { entry: toEntry(record), stream: Readable.from(read(), { objectMode: false, highWaterMark: 4 * CHUNK }) };
  }

  async write(owner: AccountRecord, path: string, data: Buffer | Readable, mode: WriteMode, conditions?: Preconditions): Promise<{ entry: FileEntry; created: boolean }> {
    if (path === '') throw new FileError('is-a-directory', 'the root is a directory');
    if (mode.kind === 'at' && (!Number.isSafeInteger(mode.position) || mode.position < 0)) throw new FileError('beyond-eof', 'bad position');
    const limits = await this.limits(owner);
    // What the write may add, as stored now: a stream beyond it is refused while it arrives,
    // before it is all stored (the commit decides again, atomically, on what is stored then).
    let budget = Infinity;
    if (limits.maxBytes !== undefined) {
      const [totals, existing] = await Promise.all([this.store.files.totals(owner.id), this.store.files.stat(owner.id, path)]);
      const current = existing?.kind === 'file' ? existing.size : 0;
      const kept = mode.kind === 'replace' || mode.kind === 'new' ? 0 : mode.kind === 'append' ? current : Math.min(current, mode.position);
      const reusable = mode.kind === 'at' ? current - kept : mode.kind === 'append' ? 0 : current;
      budget = Math.max(0, limits.maxBytes - totals.size + reusable);
    }
    const blob = await this.store.files.stage(owner.id, this.clock());
    let size = 0;
    try {
      for await (const piece of pieces(data)) {
        size += piece.length;
        if (size > budget) throw new FileError('limit-exceeded', `the File Storage is full (at most ${limits.maxBytes} bytes)`);
        await this.store.files.stageChunk(blob, size - piece.length, piece);
      }
      const result = await this.call(() => this.store.files.commitWrite(owner.id, path, blob, size, mode, this.guard(conditions), limits));
      this.changed(owner, path);
      this.log.debug({ event: 'file.write', account: owner.id, path, mode: mode.kind, bytes: size }, 'file written');
      return { entry: toEntry(result.record), created: result.created };
    } catch (err) {
      await this.store.files.discard(blob).catch(() => {});
      this.refused(owner, path, err);
    }
  }

  async createDirectory(owner: AccountRecord, path: string, conditions?: Preconditions): Promise<FileEntry> {
    if (path === '') throw new FileError('exists', 'the root directory exists');
    const limits = await this.limits(owner);
    try {
      const record = await this.call(() => this.store.files.createDirectory(owner.id, path, this.guard(conditions), limits));
      this.changed(owner, path);
      return toEntry(record);
    } catch (err) {
      this.refused(owner, path, err);
    }
  }

  async remove(owner: AccountRecord, path: string, options: { recursive: boolean; kind?: FileKind }, conditions?: Preconditions): Promise<void> {
    if (path === '') throw new FileError('access-denied', 'the root directory cannot be removed');
    await this.call(() => this.store.files.remove(owner.id, path, options, this.guard(conditions)));
    this.changed(owner, path);
    this.log.debug({ event: 'file.remove', account: owner.id, path }, 'file removed');
  }

  async move(owner: AccountRecord, from: string, to: string, options: { overwrite: boolean; kind?: FileKind }, conditions?: Preconditions): Promise<{ created: boolean }> {
    if (from === '' || to === '') throw new FileError('access-denied', 'the root directory cannot be renamed');
    const result = await this.call(() => this.store.files.move(owner.id, from, to, options, this.guard(conditions)));
    this.changed(owner, from);
    this.changed(owner, to);
    return result;
  }

  async copy(owner: AccountRecord, from: string, to: string, options: { overwrite: boolean; depth: 0 | 'infinity' }, conditions?: Preconditions): Promise<{ created: boolean }> {
    if (from === '' || to === '') throw new FileError('access-denied', 'the root directory cannot be copied');
    const limits = await this.limits(owner);
    try {
      const result = await this.call(() => this.store.files.copy(owner.id, from, to, options, this.guard(conditions), limits));
      this.changed(owner, to);
      return result;
    } catch (err) {
      this.refused(owner, to, err);
    }
  }

  async attributes(owner: AccountRecord, path: string, names?: readonly string[]): Promise<FileAttribute[]> {
    const all = await this.store.files.attributes(owner.id, path);
    if (!all) throw new FileError('not-found', `${path} does not exist`);
    if (!names) return all;
    const wanted = new Set(names);
    return all.filter((a) => wanted.has(a.name));
  }

  async updateAttributes(owner: AccountRecord, path: string, changes: readonly FileAttributeChange[], conditions?: Preconditions): Promise<void> {
    if (path === '') throw new FileError('access-denied', 'the root directory has no attributes');
    try {
      await this.call(() => this.store.files.updateAttributes(owner.id, path, changes, this.guard(conditions)));
    } catch (err) {
      this.refused(owner, path, err);
    }
    this.changed(owner, path);
  }

  private expiry(expires: Date | undefined): number {
    const now = this.clock();
    const at = expires?.getTime();
    if (at === undefined || !Number.isFinite(at)) return now + DEFAULT_LOCK_SECONDS * 1000;
    return Math.min(Math.max(at, now + 1000), now + MAX_LOCK_SECONDS * 1000);
  }

  async lock(owner: AccountRecord, path: string, actor: AccountRecord, lock: NewLock): Promise<FileLock> {
    const record: LockRecord = {
      token: `opaquelocktoken:${randomUUID()}`,
      path,
      scope: lock.scope,
      type: lock.type,
      depth: lock.depth,
      ownerXml: lock.ownerXml,
      lockedBy: actor.id,
      expires: this.expiry(lock.expires),
    };
    const limits = await this.limits(owner);
    try {
      const taken = await this.call(() => this.store.files.lock(owner.id, record, { create: lock.create === true, now: this.clock() }, limits));
      this.changed(owner, path);
      this.log.debug({ event: 'file.lock', account: owner.id, path, scope: lock.scope, depth: String(lock.depth) }, 'file locked');
      return toLock(taken);
    } catch (err) {
      this.refused(owner, path, err);
    }
  }

  async refreshLock(owner: AccountRecord, path: string, token: string, expires?: Date): Promise<FileLock> {
    const lock = await this.call(() => this.store.files.refreshLock(owner.id, path, token, this.expiry(expires), this.clock()));
    this.changed(owner, path);
    return toLock(lock);
  }

  async unlock(owner: AccountRecord, path: string, token: string): Promise<void> {
    if (!(await this.store.files.unlock(owner.id, path, token))) throw new FileError('not-found', 'no such lock');
    this.changed(owner, path);
  }

  async locks(owner: AccountRecord, path: string): Promise<FileLock[]> {
    const all = await this.store.files.locks(owner.id, this.clock());
    return all
      .filter((l) => l.path === path || (l.depth === 'infinity' && (l.path === '' || path.startsWith(l.path + '/'))))
      .map(toLock);
  }

  async subscriptions(user: AccountRecord): Promise<string[]> {
    return this.store.files.subscriptions(user.id);
  }

  async updateSubscriptions(user: AccountRecord, changes: readonly { name: string; add: boolean }[]): Promise<void> {
    for (const change of changes) {
      if (change.name === '' || change.name.length > MAX_PATH_LENGTH || CONTROL.test(change.name)) {
        throw new FileError('invalid-name', `invalid file name ${quoted(change.name)}`);
      }
    }
    if (!(await this.store.files.updateSubscriptions(user.id, changes, MAX_SUBSCRIPTIONS))) {
      throw new FileError('limit-exceeded', `too many subscriptions (at most ${MAX_SUBSCRIPTIONS})`);
    }
  }
}
