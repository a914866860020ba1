import { constants, type Dirent } from 'node:fs';
import { open, opendir, realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { Logger } from '../log.js';
import { ServiceError } from './errors.js';
import { Wildcard } from './wildcard.js';

/**
 * Skins: directories of files the clients read (skinList, skinFileList, skinFileRead) and the
 * configuration files of readConfigFile. Three levels, each a directory whose own files are
 * the unnamed skin and whose subdirectories are the named skins:
 *
 *  1. the domain's: `<domainDirectory>/<domain>/`;
 *  2. the server's: `directory` (skins.directory in the configuration);
 *  3. the built-in one shipped in resources/skins/ (its unnamed skin holds the vocabularies
 *     readStrings serves).
 *
 * A file of skin `S` is looked up in S of each level, then (for a named skin) in the unnamed
 * skin of each level: the first found wins. Listings show the same union, each file with the
 * skin it comes from.
 *
 * Names are single path components (no `/`, `\`, NUL, control characters, no leading dot);
 * a file is served only when its real path (symbolic links resolved) lies inside its level's
 * directory, and it is a regular file of at most `maxFileBytes`.
 */

/** The exact text clients match for a file that is not there (INTEROP.md). */
export const FILE_NOT_FOUND = 'file is not found';

export interface SkinOptions {
  /** The built-in level (resources/skins/). */
  builtIn: string;
  /** The server-wide level. */
  server: string;
  /** Where the domains' levels are: `<domains>/<domain>/`. */
  domains: string;
  maxFileBytes: number;
  maxFiles: number;
  log: Logger;
}

export interface SkinFileInfo {
  /** The skin the file comes from ('' = the unnamed skin). */
  skinName: string;
  fileName: string;
  size: number;
  modified: Date;
}

export interface SkinFile {
  skinName: string;
  fileName: string;
  modified: Date;
  data: Buffer;
}

const NAME_CHARS = /^[^/\\\x00-\x1f\x7f]{1,255}$/;

/** A skin or file name as one path component; undefined when it is not one. */
function pathComponent(name: string): string | undefined {
  if (!NAME_CHARS.test(name) || name.startsWith('.') || name.trim() !== name) return undefined;
  return name;
}

function checkSkinName(skinName: string): string {
  if (skinName === '') return '';
  if (pathComponent(skinName) === undefined || skinName.length > 128) throw new ServiceError(`invalid skin name ${JSON.stringify(skinName)}`);
  return skinName;
}

const DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENAMETOOLONG';
}

/** Whether `path` is `root` or inside it (both real paths). */
function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

export class SkinService {
  constructor(private readonly options: SkinOptions) {}

  /** The level directories for a domain, most specific first. */
  private levels(domain: string): string[] {
    const levels: string[] = [];
    if (DOMAIN.test(domain) && !domain.includes('..')) levels.push(join(this.options.domains, domain));
    levels.push(this.options.server, this.options.builtIn);
    return levels;
  }

  /** Where skin `skinName` of a level is: [the level's real path, the skin directory's real path], or undefined. */
  private async skinDirectory(level: string, skinName: string): Promise<{ root: string; dir: string } | undefined> {
    let root: string;
    try {
      root = await realpath(level);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (skinName === '') return { root, dir: root };
    let dir: string;
    try {
      dir = await realpath(join(root, skinName));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (!inside(root, dir) || dir === root) {
      this.options.log.warn({ event: 'skin.escape', skin: skinName, level }, 'a skin directory leads out of its level; ignored');
      return undefined;
    }
    if (!(await stat(dir)).isDirectory()) return undefined;
    return { root, dir };
  }

  /** The skin directories to search for skin `skinName`, in order, each with the skin name it stands for. */
  private async searchPath(domain: string, skinName: string): Promise<{ skinName: string; root: string; dir: string }[]> {
    const name = checkSkinName(skinName);
    const names = name === '' ? [''] : [name, ''];
    const path: { skinName: string; root: string; dir: string }[] = [];
    let named = name === '';
    for (const candidate of names) {
      for (const level of this.levels(domain)) {
        const found = await this.skinDirectory(level, candidate);
        if (!found) continue;
        if (candidate !== '') named = true;
        path.push({ skinName: candidate, ...found });
      }
    }
    if (!named) throw new ServiceError(`unknown skin ${JSON.stringify(name)}`);
    return path;
  }

  /** Entries of a directory, at most maxFiles of them. */
  private async entries(dir: string): Promise<Dirent[]> {
    const found: Dirent[] = [];
    const handle = await opendir(dir);
    try {
      for await (const entry of handle) {
        if (found.length >= this.options.maxFiles) {
          this.options.log.warn({ event: 'skin.too_many_files', dir, limit: this.options.maxFiles }, 'a skin directory has too many entries');
          throw new ServiceError(`the skin has more than ${this.options.maxFiles} files`);
        }
        found.push(entry);
      }
    } finally {
      // for await closes the directory when it completes; closing again after a break is harmless.
      await handle.close().catch(() => {});
    }
    return found;
  }

  /** The skins of a domain (its own, the server's, the built-in ones): '' (the unnamed skin) and each named one. */
  async listSkins(domain: string, filter?: string): Promise<string[]> {
    const names = new Set<string>(['']);
    for (const level of this.levels(domain)) {
      const found = await this.skinDirectory(level, '');
      if (!found) continue;
      for (const entry of await this.entries(found.dir)) {
        if (pathComponent(entry.name) === undefined || entry.name.length > 128) continue;
        if (entry.isDirectory() || (entry.isSymbolicLink() && (await this.skinDirectory(level, entry.name)))) names.add(entry.name);
      }
    }
    const picture = filter === undefined || filter === '' ? undefined : new Wildcard(filter, { caseInsensitive: true });
    return [...names].filter((n) => !picture || picture.test(n)).sort();
  }

  /** The files of a skin (inherited ones included), by name. */
  async listFiles(domain: string, skinName: string, filter?: string): Promise<SkinFileInfo[]> {
    const picture = filter === undefined || filter === '' ? undefined : new Wildcard(filter, { caseInsensitive: true });
    const files = new Map<string, SkinFileInfo>();
    for (const { skinName: from, root, dir } of await this.searchPath(domain, skinName)) {
      for (const entry of await this.entries(dir)) {
        if (files.has(entry.name) || pathComponent(entry.name) === undefined) continue;
        if (picture && !picture.test(entry.name)) continue;
        if (!entry.isFile() && !entry.isSymbolicLink()) continue;
        const real = await this.confined(root, join(dir, entry.name));
        if (!real) continue;
        const info = await stat(real).catch(() => undefined);
        if (!info?.isFile()) continue;
        files.set(entry.name, { skinName: from, fileName: entry.name, size: info.size, modified: info.mtime });
      }
    }
    return [...files.values()].sort((a, b) => (a.fileName < b.fileName ? -1 : a.fileName > b.fileName ? 1 : 0));
  }

  /** The real path of `path` when it lies inside `root`; undefined when missing or outside (logged). */
  private async confined(root: string, path: string): Promise<string | undefined> {
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (!inside(root, real)) {
      this.options.log.warn({ event: 'skin.escape', path }, 'a skin file leads out of its skin directory; refused');
      return undefined;
    }
    return real;
  }

  /** Finds a file of a skin (see the class comment); undefined when no level has it. */
  private async find(domain: string, skinName: string, fileName: string): Promise<{ skinName: string; path: string } | undefined> {
    for (const { skinName: from, root, dir } of await this.searchPath(domain, skinName)) {
      const real = await this.confined(root, join(dir, fileName));
      if (real) return { skinName: from, path: real };
    }
    return undefined;
  }

  /** Reads a file of a skin, within maxFileBytes. */
  async readFile(domain: string, skinName: string, fileName: string): Promise<SkinFile> {
    if (pathComponent(fileName) === undefined) {
      this.options.log.info({ event: 'skin.bad_name', domain, skin: skinName, file: fileName.slice(0, 300) }, 'a skin file name that is not a plain name was refused');
      throw new ServiceError(`invalid file name ${JSON.stringify(fileName.slice(0, 300))}: a skin file name is a plain name, without / or \\`);
    }
    const found = await this.find(domain, skinName, fileName);
    if (!found) throw new ServiceError(FILE_NOT_FOUND);
    const { data, modified } = await this.readLimited(found.path);
    return { skinName: found.skinName, fileName, modified, data };
  }

  private async readLimited(path: string): Promise<{ data: Buffer; modified: Date }> {
    let handle;
    try {
      // O_NONBLOCK: a named pipe in a skin directory must not hold the request (it is refused below).
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (isNotFound(err)) throw new ServiceError(FILE_NOT_FOUND);
      // EACCES and the like: the operator's file system, not the client's request.
      this.options.log.warn({ event: 'skin.unreadable', path, error: (err as Error).message }, 'a skin file cannot be opened');
      throw new ServiceError('the file cannot be read');
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new ServiceError(FILE_NOT_FOUND);
      const limit = this.options.maxFileBytes;
      if (info.size > limit) {
        this.options.log.info({ event: 'skin.file_too_large', path, size: info.size, limit }, 'a skin file over the size limit was refused');
        throw new ServiceError(`the file is too large (${info.size} bytes; the limit is ${limit})`);
      }
      // Read one byte more than allowed: a file that grew since fstat is refused too.
      const buffer = Buffer.alloc(Math.min(info.size, limit) + 1);
      let length = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
        if (length === buffer.length) break;
      }
      if (length > limit) throw new ServiceError(`the file is too large (the limit is ${limit} bytes)`);
      return { data: buffer.subarray(0, length), modified: info.mtime };
    } finally {
      await handle.close();
    }
  }

  /**
   * Every file named `fileName` in the domain's and the server's levels (not the built-in one)
   * of skin `skinName`, then of the unnamed skin, most specific first: the layers readStrings
   * lays over the built-in vocabulary. A skin name that is not valid or not there reads the
   * unnamed skin only; a file that cannot be read (too large, unreadable) is left out, logged.
   */
  async layers(domain: string, skinName: string, fileName: string): Promise<SkinFile[]> {
    if (pathComponent(fileName) === undefined) return [];
    const named = skinName !== '' && pathComponent(skinName) !== undefined && skinName.length <= 128;
    const levels = this.levels(domain).filter((level) => level !== this.options.builtIn);
    const found: SkinFile[] = [];
    for (const candidate of named ? [skinName, ''] : ['']) {
      for (const level of levels) {
        const dir = await this.skinDirectory(level, candidate);
        if (!dir) continue;
        const real = await this.confined(dir.root, join(dir.dir, fileName));
        if (!real) continue;
        try {
          const { data, modified } = await this.readLimited(real);
          found.push({ skinName: candidate, fileName, modified, data });
        } catch (err) {
          if (!(err instanceof ServiceError)) throw err;
        }
      }
    }
    return found;
  }

  /**
   * A configuration file (readConfigFile): `<name>.xml` of the domain's unnamed skin (with the
   * server's and the built-in one under it). Its content is returned as text, for the caller
   * to parse as XML.
   */
  async readConfig(domain: string, name: string): Promise<{ skinName: string; modified: Date; text: string }> {
    if (pathComponent(name) === undefined || name.length > 200) throw new ServiceError(`invalid configuration name ${JSON.stringify(name.slice(0, 300))}`);
    const found = await this.find(domain, '', `${name}.xml`);
    if (!found) throw new ServiceError(FILE_NOT_FOUND);
    const { data, modified } = await this.readLimited(found.path);
    const text = decodeText(data);
    if (text === undefined) throw new ServiceError(`configuration ${name} is not UTF-8 text`);
    return { skinName: found.skinName, modified, text };
  }
}

/** `data` as UTF-8 text that XML can carry; undefined when it is not (binary data). */
export function decodeText(data: Buffer): string | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(data);
  } catch {
    return undefined;
  }
  // Characters XML 1.0 cannot carry (NUL and most C0 controls, lone surrogates, U+FFFE/FFFF).
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/.test(text)) return undefined;
  return text;
}

/**
 * Banners (bannerRead): a domain's `Banners` setting is a JSON object from banner type to the
 * External Banner System's result, a string, or arrays and objects of them (sent in the XML
 * presentation of objects). At most MAX_BANNERS_CHARS characters and 100 types, 8 levels deep.
 */
export type BannerValue = string | BannerValue[] | { [key: string]: BannerValue };

export const MAX_BANNERS_CHARS = 16 * 1024;

function bannerValue(value: unknown, depth: number): BannerValue | undefined {
  if (typeof value === 'string') return value;
  if (depth >= 8 || typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    const items = value.map((item) => bannerValue(item, depth + 1));
    return items.every((item) => item !== undefined) ? (items as BannerValue[]) : undefined;
  }
  const result: { [key: string]: BannerValue } = {};
  for (const [key, item] of Object.entries(value)) {
    const converted = bannerValue(item, depth + 1);
    if (converted === undefined) return undefined;
    Object.defineProperty(result, key, { value: converted, enumerable: true, writable: true, configurable: true });
  }
  return result;
}

/** The banners of a `Banners` setting value; undefined when it is not one (see BannerValue). */
export function parseBanners(text: string): Map<string, BannerValue> | undefined {
  if (text.length > MAX_BANNERS_CHARS) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const entries = Object.entries(parsed);
  if (entries.length > 100) return undefined;
  const banners = new Map<string, BannerValue>();
  for (const [type, value] of entries) {
    const converted = bannerValue(value, 1);
    if (converted === undefined || type === '') return undefined;
    banners.set(type, converted);
  }
  return banners;
}
