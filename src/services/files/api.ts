import type { Readable } from 'node:stream';
import type { AccountRecord } from '../../store/store.js';
import { ServiceError } from '../errors.js';

/**
 * The File Storage of an account (spec section "File Storage Operations"), as every protocol
 * sees it: XIMSS file operations, the session's DOWNLOAD URLs and WebDAV. Protocol-independent;
 * one implementation (FileService) over the store of either engine.
 *
 * Paths are relative to the owner's storage root, `/`-separated, without a leading or trailing
 * slash; '' is the root directory. Callers pass them as the user spelled them through
 * `resolve`, which validates them and finds the owner (`~account/path` names another account's
 * storage, as the actor's rights allow); the other methods take an already-resolved owner.
 */

/** What a path names: its owner and the normalized path inside the owner's storage. */
export interface FileTarget {
  owner: AccountRecord;
  path: string;
}

export type FileKind = 'file' | 'directory';

/** Reading (lists, content, attributes, lock discovery) or changing (anything else). */
export type FileAccess = 'read' | 'write';

export interface FileEntry {
  /** The normalized path ('' for the root). */
  path: string;
  /** The last segment of the path ('' for the root). */
  name: string;
  kind: FileKind;
  /** Bytes (0 for a directory). */
  size: number;
  created: Date;
  /** The last change of the content (of a directory: of its list of entries). */
  modified: Date;
  /** The last change of the attributes. */
  attrsModified: Date;
  /**
   * A strong validator of the content, new with every change of it (WebDAV ETag, If-Match).
   * Opaque; quoted by the protocol layer.
   */
  etag: string;
}

/**
 * A file attribute: one XML element kept as its text (XIMSS fileAttrWrite bodies; WebDAV dead
 * properties). `name` is the element's expanded name in Clark notation: `{namespace}local`, or
 * just `local` when it has no namespace. `xml` is the whole element, serialized.
 */
export interface FileAttribute {
  name: string;
  xml: string;
}

/** One change of fileAttrWrite/PROPPATCH: add beside same-named ones, replace them all, or delete them all. */
export type FileAttributeChange =
  | { mode: 'add' | 'replace'; attribute: FileAttribute }
  | { mode: 'delete'; name: string };

export type LockScope = 'exclusive' | 'shared';

/** A lock on a file or a directory (XIMSS fileLock; WebDAV LOCK). Shared by every node through the store. */
export interface FileLock {
  /** Unique, unguessable: `opaquelocktoken:<uuid>` (RFC 4918 uses it as is). */
  token: string;
  /** The locked path (the lock root). */
  path: string;
  scope: LockScope;
  /** `write` for WebDAV; XIMSS clients may name other types. */
  type: string;
  /** 0: the resource only; 'infinity': a directory with everything below it. */
  depth: 0 | 'infinity';
  /** The owner element the client sent (XIMSS `owner`, WebDAV DAV:owner), serialized XML; '' when none. */
  ownerXml: string;
  /** The account that took it. */
  lockedBy: number;
  expires: Date;
}

export interface NewLock {
  scope: LockScope;
  type: string;
  depth: 0 | 'infinity';
  ownerXml: string;
  /** Bounded by the service (a maximum and a default lifetime). */
  expires?: Date;
  /** Create an empty file when the path names nothing (XIMSS create="yes"; a WebDAV lock-null resource). */
  create?: boolean;
}

/** How a write places its data. */
export type WriteMode =
  /** Replace the whole content, creating the file when missing. */
  | { kind: 'replace' }
  /** Append atomically at the end of the existing file (created when missing). */
  | { kind: 'append' }
  /** Create the file; fail with `exists` when the path names something. */
  | { kind: 'new' }
  /** Overwrite from this byte position of an existing file (not beyond its end). */
  | { kind: 'at'; position: number };

/** Conditions every changing call may carry (WebDAV If/If-Match; XIMSS passes none). */
export interface Preconditions {
  /** The change happens only when the target's current ETag is this one ('*': it exists). */
  ifMatch?: string;
  /** The change happens only when the target does not exist. */
  ifNoneMatch?: '*';
  /** Lock tokens the client holds: needed to change anything a lock of another token covers. */
  lockTokens?: readonly string[];
}

/** Sizes and counts of a directory tree, with the owner's limits (fileDirInfo). */
export interface FileUsage {
  files: number;
  size: number;
  /** undefined: unlimited. */
  filesLimit?: number;
  sizeLimit?: number;
}

/** Why a file operation failed: the protocol layers map `reason` to their codes (WebDAV statuses). */
export type FileFailure =
  | 'invalid-name' // a bad path: WebDAV 400
  | 'not-found' // WebDAV 404
  | 'parent-missing' // the parent directory does not exist: WebDAV 409
  | 'exists' // WebDAV 405 (MKCOL) / 412 (overwrite F)
  | 'not-a-directory' // WebDAV 409
  | 'is-a-directory' // reading or writing a directory as a file: WebDAV 405
  | 'not-empty' // fileDirRemove of a directory with entries
  | 'locked' // WebDAV 423
  | 'precondition-failed' // ETag mismatch: WebDAV 412
  | 'beyond-eof' // reading or writing past the end: XIMSS "reading beyond the EOF mark"
  | 'limit-exceeded' // file count or size limit: WebDAV 507
  | 'access-denied'; // WebDAV 403

/** A file operation refused for a reason a client can act on; `message` is the XIMSS errorText. */
export class FileError extends ServiceError {
  constructor(
    readonly reason: FileFailure,
    message: string,
  ) {
    super(message);
  }
}

/** The File Storage, for every protocol. Every change is durable when the promise resolves and is published on the bus (`fileChanged`). */
export interface FileStorage {
  /**
   * Validates a name as `actor` spells it (`~account/...` for another account's storage) and
   * finds its owner; FileError invalid-name/access-denied/not-found. Another account's storage
   * is open to its domain's administrators (CanAccessWebSites) and, through the account's ACL,
   * to those it grants `r` (for `access` 'read') or `w` ('write', the default: any change).
   */
  resolve(actor: AccountRecord, name: string, access?: FileAccess): Promise<FileTarget>;
  /** What `actor` may do with `owner`'s storage: 'write' (everything), 'read', or nothing. */
  access(actor: AccountRecord, owner: AccountRecord): Promise<FileAccess | undefined>;
  /** The entry a path names, or undefined. */
  stat(owner: AccountRecord, path: string): Promise<FileEntry | undefined>;
  /** The entries directly in a directory (FileError not-found / not-a-directory). */
  list(owner: AccountRecord, directory: string): Promise<FileEntry[]>;
  /** Every directory of the storage, root excluded, sorted (fileDirList). */
  directories(owner: AccountRecord): Promise<string[]>;
  /** Totals of a directory tree ('' for the whole storage) with the owner's limits. */
  usage(owner: AccountRecord, directory: string): Promise<FileUsage>;

  /** Reads at most `limit` bytes from `position` (fileRead); FileError beyond-eof when position > size. */
  readRange(owner: AccountRecord, path: string, position: number, limit: number): Promise<{ entry: FileEntry; data: Buffer }>;
  /**
   * Streams a file, or the byte range [start, end] (inclusive, as HTTP Range), without holding
   * it whole in memory; the entry is the version being streamed.
   */
  open(owner: AccountRecord, path: string, range?: { start: number; end: number }): Promise<{ entry: FileEntry; stream: Readable }>;
  /**
   * Writes a file from a buffer or a stream (consumed in chunks, never held whole); the data
   * becomes visible at once when the call succeeds, and not at all when it fails (limits,
   * a broken stream). Missing parent directories are an error (parent-missing).
   */
  write(
    owner: AccountRecord,
    path: string,
    data: Buffer | Readable,
    mode: WriteMode,
    conditions?: Preconditions,
  ): Promise<{ entry: FileEntry; created: boolean }>;
  /** Creates a directory (its parent must exist). */
  createDirectory(owner: AccountRecord, path: string, conditions?: Preconditions): Promise<FileEntry>;
  /**
   * Removes a file, or a directory: when `recursive`, with everything below it (WebDAV DELETE);
   * otherwise only an empty one (fileDirRemove: not-empty). Locks below count too.
   */
  remove(owner: AccountRecord, path: string, options: { recursive: boolean; kind?: FileKind }, conditions?: Preconditions): Promise<void>;
  /**
   * Renames/moves a file or a directory tree within the owner's storage; `overwrite` replaces
   * what the target names (removed first), otherwise exists. Locks move with nothing: the
   * source's locks are dropped, the target's must be held.
   */
  move(owner: AccountRecord, from: string, to: string, options: { overwrite: boolean; kind?: FileKind }, conditions?: Preconditions): Promise<{ created: boolean }>;
  /** Copies a file, or a directory (`depth` 0: the directory alone; infinity: the tree) with attributes, never locks. */
  copy(owner: AccountRecord, from: string, to: string, options: { overwrite: boolean; depth: 0 | 'infinity' }, conditions?: Preconditions): Promise<{ created: boolean }>;

  /** The attributes of a file or directory; `names` (Clark notation) selects some. */
  attributes(owner: AccountRecord, path: string, names?: readonly string[]): Promise<FileAttribute[]>;
  /** Applies attribute changes in order, all or none. */
  updateAttributes(owner: AccountRecord, path: string, changes: readonly FileAttributeChange[], conditions?: Preconditions): Promise<void>;

  /** Takes a lock; FileError locked when a conflicting lock (of any account) covers the path or, for depth infinity, anything below. */
  lock(owner: AccountRecord, path: string, actor: AccountRecord, lock: NewLock): Promise<FileLock>;
  /** Extends a lock the actor holds (FileError not-found for an unknown token). */
  refreshLock(owner: AccountRecord, path: string, token: string, expires?: Date): Promise<FileLock>;
  /** Removes a lock by its token (FileError not-found for an unknown token). */
  unlock(owner: AccountRecord, path: string, token: string): Promise<void>;
  /** The live locks that cover a path: its own, and its ancestors' with depth infinity. */
  locks(owner: AccountRecord, path: string): Promise<FileLock[]>;

  /** The account's file subscriptions (fileSubList): names, which may or may not exist. */
  subscriptions(user: AccountRecord): Promise<string[]>;
  /** Adds and removes subscriptions (fileSubUpdate). */
  updateSubscriptions(user: AccountRecord, changes: readonly { name: string; add: boolean }[]): Promise<void>;
}
