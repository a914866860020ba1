import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { errorText, silentLogger, type Logger } from '../log.js';
import { ServiceError } from '../services/errors.js';

/**
 * The session "uploaded file sets" (HTTP UPLOAD) live on disk, in one spool directory of
 * the server: one file per uploaded file, written while the HTTP body arrives, with the
 * limits checked as the bytes come (one file, the session's set, all sessions of the
 * account, the whole server). Files are deleted when cleared, replaced, or when their
 * session ends; uploads do not outlive the process, so leftovers are removed at start.
 */

export interface UploadLimits {
  /** Largest single file. */
  fileBytes: number;
  /** Bytes of uploaded files (and of uploads in progress): per session, per account, server-wide. */
  sessionBytes: number;
  accountBytes: number;
  totalBytes: number;
}

export interface UploadedFile {
  readonly id: string;
  /** The spooled file. */
  readonly path: string;
  readonly size: number;
  /** Content type as the upload request gave it. */
  readonly type: string;
  readonly subtype: string;
  readonly charset: string | undefined;
  readonly fileName: string | undefined;
}

/** What an upload request says about the file besides its bytes. */
export type UploadMeta = Omit<UploadedFile, 'path' | 'size'>;

/** A limit was crossed: the upload is refused (HTTP 413); the text says which limit. */
export class UploadLimitError extends Error {}

/** The session ended while its upload was arriving. */
export class UploadSessionClosed extends Error {
  constructor() {
    super('the session has ended');
  }
}

/**
 * The spool directory and the byte counts the quotas are checked against. Bytes are
 * counted as they are written, so an upload in progress takes its share at once, and a
 * replaced file counts until its replacement is complete.
 */
export class UploadSpool {
  private total = 0;
  private readonly byAccount = new Map<number, number>();
  /** Deletions under way (close() waits for them). */
  private readonly deleting = new Set<Promise<void>>();
  private counter = 0;
  private readonly prefix = `${process.pid}-${randomBytes(4).toString('hex')}`;

  private constructor(
    readonly dir: string,
    readonly limits: UploadLimits,
    private readonly log: Logger,
  ) {}

  /** Creates the spool directory, removing whatever a previous run left in it. */
  static async open(dir: string, limits: UploadLimits, log: Logger = silentLogger): Promise<UploadSpool> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await Promise.all((await readdir(dir)).map((name) => rm(join(dir, name), { recursive: true, force: true })));
    return new UploadSpool(dir, limits, log);
  }

  /** A new session's (empty) uploaded file set. */
  newSet(accountId: number): UploadSet {
    return new UploadSet(this, accountId);
  }

  /** Bytes taken server-wide: spooled files and uploads in progress. */
  get bytes(): number {
    return this.total;
  }

  /** Bytes taken by one account's sessions. */
  accountBytes(accountId: number): number {
    return this.byAccount.get(accountId) ?? 0;
  }

  /** Waits for the deletions under way, then removes anything left (server shutdown). */
  async close(): Promise<void> {
    while (this.deleting.size > 0) await Promise.all([...this.deleting]);
    await Promise.all((await readdir(this.dir)).map((name) => rm(join(this.dir, name), { force: true })));
  }

  // --- for UploadSet and SpoolWriter ---

  /** @internal Throws UploadLimitError when `bytes` more would cross a quota of `set`. */
  check(set: UploadSet, bytes: number): void {
    const { sessionBytes, accountBytes, totalBytes } = this.limits;
    if (set.bytes + bytes > sessionBytes) {
      throw new UploadLimitError(`the uploaded files of this session would take more than ${sessionBytes} bytes: clear some (clearUploaded) first`);
    }
    if (this.accountBytes(set.accountId) + bytes > accountBytes) {
      throw new UploadLimitError(`the uploaded files of this account (all its sessions) would take more than ${accountBytes} bytes`);
    }
    if (this.total + bytes > totalBytes) {
      throw new UploadLimitError(`the server's space for uploaded files (${totalBytes} bytes) is full: try again later`);
    }
  }

  /** @internal Counts `bytes` more against the quotas of `set`, or throws UploadLimitError. */
  charge(set: UploadSet, bytes: number): void {
    this.check(set, bytes);
    set.bytes += bytes;
    this.byAccount.set(set.accountId, this.accountBytes(set.accountId) + bytes);
    this.total += bytes;
  }

  /** @internal Gives `bytes` of `set` back. */
  release(set: UploadSet, bytes: number): void {
    if (bytes === 0) return;
    set.bytes -= bytes;
    const left = this.accountBytes(set.accountId) - bytes;
    if (left > 0) this.byAccount.set(set.accountId, left);
    else this.byAccount.delete(set.accountId);
    this.total -= bytes;
  }

  /** @internal A fresh file name in the spool. */
  newPath(): string {
    return join(this.dir, `${this.prefix}-${++this.counter}`);
  }

  /** @internal Deletes a spooled file (after `before`, such as closing it), in the background. */
  remove(path: string, before?: Promise<unknown>): void {
    const done = (async () => {
      await before?.catch(() => {});
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') this.log.error({ event: 'uploads.delete_failed', path, error: errorText(err) }, 'a spooled upload could not be deleted');
      });
    })();
    this.deleting.add(done);
    void done.finally(() => this.deleting.delete(done));
  }
}

/**
 * A session's "uploaded file set": its spooled files by uploadID, and the uploads in
 * progress (stopped, and their partial files deleted, when the session ends).
 */
export class UploadSet {
  /** Bytes counted against this session's quota: its files and its uploads in progress. */
  bytes = 0;
  private readonly files = new Map<string, UploadedFile>();
  private readonly writing = new Set<SpoolWriter>();
  private closed = false;

  constructor(
    private readonly spool: UploadSpool,
    readonly accountId: number,
  ) {}

  get limits(): UploadLimits {
    return this.spool.limits;
  }

  /**
   * The text (UTF-8) of an uploaded file that an import reads whole (contactsImport,
   * calendarImport): ServiceError when there is no such file or it has more than `maxBytes`.
   */
  async text(uploadID: string, maxBytes: number): Promise<string> {
    const file = this.files.get(uploadID);
    const size = file ? await stat(file.path).then((s) => s.size, () => undefined) : undefined;
    if (!file || size === undefined) throw new ServiceError(`uploaded file not found: ${uploadID}`);
    if (size > maxBytes) throw new ServiceError(`the file is too large to import: ${size} bytes (at most ${maxBytes})`);
    return (await readFile(file.path)).toString('utf8');
  }

  /**
   * Refuses at once an upload that announces (Content-Length) more bytes than a limit
   * leaves room for; the limits are checked again as the bytes arrive.
   */
  checkAnnounced(bytes: number): void {
    if (bytes > this.limits.fileBytes) throw new UploadLimitError(fileTooLarge(this.limits.fileBytes));
    this.spool.check(this, bytes);
  }

  /** Starts receiving a file: write its bytes into the writer, then `commit` it. */
  begin(): SpoolWriter {
    if (this.closed) throw new UploadSessionClosed();
    const writer = new SpoolWriter(this, this.spool);
    this.writing.add(writer);
    return writer;
  }

  /**
   * Adds a completely written file to the set under `meta.id`, replacing (and deleting) a
   * file with the same id.
   */
  commit(writer: SpoolWriter, meta: UploadMeta): UploadedFile {
    if (this.closed) {
      writer.discard();
      throw new UploadSessionClosed();
    }
    if (!writer.writableFinished) throw new Error('an upload was committed before it was completely written');
    this.writing.delete(writer);
    const file: UploadedFile = { ...meta, path: writer.path, size: writer.size };
    writer.committed = true;
    const previous = this.files.get(meta.id);
    this.files.set(meta.id, file);
    if (previous) this.free(previous);
    return file;
  }

  get(id: string): UploadedFile | undefined {
    return this.files.get(id);
  }

  list(): UploadedFile[] {
    return [...this.files.values()];
  }

  /** Removes one file, or all of them. */
  clear(id?: string): void {
    if (id !== undefined) {
      const file = this.files.get(id);
      if (file) this.free(file);
      return;
    }
    for (const file of [...this.files.values()]) this.free(file);
  }

  /** The session has ended: every file is deleted and uploads in progress are stopped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clear();
    for (const writer of [...this.writing]) writer.discard();
  }

  /** @internal An upload in progress ended without being committed. */
  forget(writer: SpoolWriter): void {
    this.writing.delete(writer);
  }

  private free(file: UploadedFile): void {
    if (this.files.get(file.id) === file) this.files.delete(file.id);
    this.spool.release(this, file.size);
    this.spool.remove(file.path);
  }
}

function fileTooLarge(limit: number): string {
  return `the uploaded file is larger than ${limit} bytes`;
}

/**
 * One file being received: a writable stream into a new spool file that counts each chunk
 * against the limits before writing it, and fails with UploadLimitError when one is
 * crossed. Failed or aborted, it deletes its file and gives its bytes back; finished, it
 * waits for UploadSet.commit (or discard()).
 */
export class SpoolWriter extends Writable {
  readonly path: string;
  /** Bytes received (and counted against the quotas). */
  size = 0;
  /** @internal Set once the file belongs to the set. */
  committed = false;
  private handle: FileHandle | undefined;
  private opened: Promise<void> | undefined;
  private cleaned = false;

  constructor(
    private readonly set: UploadSet,
    private readonly spool: UploadSpool,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.path = spool.newPath();
  }

  /** Drops the file: stops the upload if it is still arriving. */
  discard(): void {
    // Until it has finished, the stream's own destruction cleans up (after the file is open).
    if (this.writableFinished) this.cleanup();
    else this.destroy(new UploadSessionClosed());
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.opened = open(this.path, 'wx', 0o600).then((handle) => void (this.handle = handle));
    this.opened.then(() => callback(), (err: Error) => callback(err));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const limit = this.set.limits.fileBytes;
    try {
      if (this.size + chunk.length > limit) throw new UploadLimitError(fileTooLarge(limit));
      this.spool.charge(this.set, chunk.length);
    } catch (err) {
      callback(err as Error);
      return;
    }
    this.size += chunk.length;
    writeAll(this.handle!, chunk).then(() => callback(), (err: Error) => callback(err));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.handle!.close().then(() => callback(), (err: Error) => callback(err));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A finished stream is destroyed without an error right after 'finish': its file stays.
    if (error || !this.writableFinished) this.cleanup();
    callback(error);
  }

  private cleanup(): void {
    if (this.committed || this.cleaned) return;
    this.cleaned = true;
    this.set.forget(this);
    this.spool.release(this.set, this.size);
    this.spool.remove(this.path, this.opened?.then(() => this.handle?.close()));
  }
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) offset += (await handle.write(chunk, offset, chunk.length - offset)).bytesWritten;
}
