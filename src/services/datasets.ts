import { randomBytes } from 'node:crypto';
import {
  DatasetLimitError,
  emailKey,
  type DatasetAttributes,
  type DatasetEntry,
  type DatasetLimits,
  type EntryWrite,
} from '../store/datasets.js';
import { AlreadyExistsError, NotFoundError, type AccountRecord, type Store } from '../store/store.js';
import { parseMailAddress } from './mime/index.js';
import { xmlSafe } from '../xml/element.js';
import type { AccountService } from './accounts.js';
import { AccountRightsService } from './account-rights.js';
import { ServiceError } from './errors.js';

export type { DatasetAttributes, DatasetEntry, DatasetLimits } from '../store/datasets.js';

/**
 * How much one account may keep in datasets, so that no client can exhaust memory or disk:
 * a datasetList reads one whole dataset (at most maxEntries * maxEntryBytes, 160 MB, and in
 * practice address entries of ~100 bytes).
 */
export const DEFAULT_DATASET_LIMITS: Readonly<DatasetLimits> = Object.freeze({
  maxDatasets: 500,
  maxEntries: 10_000,
  maxAttributes: 64,
  maxEntryBytes: 16_384,
});

const MAX_PATH_LENGTH = 255;
const MAX_ENTRY_NAME_LENGTH = 255;
const MAX_ATTRIBUTE_NAME_LENGTH = 64;
const MAX_REAL_NAME_LENGTH = 256;

export const DATASET_NOT_FOUND = 'dataset not found';
export const DATASET_EXISTS = 'dataset already exists';
export const ENTRY_NOT_FOUND = 'entry not found';
export const UNKNOWN_ACCOUNT = 'unknown account';
export const ACCESS_DENIED = 'access denied';

/** datasetList's `mode`: how an entry's attribute value is compared with the filter (case-insensitively). */
export type DatasetFilterMode = 'eq' | 'beg' | 'end' | 'contains';
const DATASET_FILTER_MODES: readonly DatasetFilterMode[] = ['eq', 'beg', 'end', 'contains'];

export interface DatasetFilter {
  field: string;
  value: string;
  mode: DatasetFilterMode;
}

/** A dataset named as a user spelled it, resolved to its owner account and path. */
interface Target {
  owner: AccountRecord;
  /** The path in the owner account ('' only where the top level may be named). */
  path: string;
  /** `~name[@domain]/` as the user spelled it, or ''; prefixed to the names reported back. */
  prefix: string;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const ATTRIBUTE_NAME = /^[\p{L}_][\p{L}\p{N}_.-]*$/u;


/** A real name as kept in an address entry: one line, no control characters, bounded. */
function cleanRealName(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const clean = xmlSafe(text).replace(/[\u0000-\u001f\u007f-\u009f\s]+/g, ' ').trim().slice(0, MAX_REAL_NAME_LENGTH);
  return clean === '' ? undefined : clean;
}

function quoted(name: string): string {
  return JSON.stringify(name.length > 100 ? name.slice(0, 100) + '...' : name);
}

/**
 * Checks a dataset path of an account: `/`-separated, no empty segment, no segment with
 * leading or trailing blanks, no control character, not starting with `~` (that names
 * another account), at most MAX_PATH_LENGTH characters.
 */
export function checkDatasetPath(path: string): string {
  const bad = (): never => {
    throw new ServiceError(`invalid dataset name: ${quoted(path)}`);
  };
  if (path.length === 0 || path.length > MAX_PATH_LENGTH || CONTROL.test(path) || path.startsWith('~')) bad();
  if (xmlSafe(path) !== path) bad();
  for (const segment of path.split('/')) if (segment === '' || segment.trim() !== segment) bad();
  return path;
}

function checkEntryName(name: string): string {
  if (name.length === 0 || name.length > MAX_ENTRY_NAME_LENGTH || CONTROL.test(name) || xmlSafe(name) !== name) {
    throw new ServiceError(`invalid entry name: ${quoted(name)}`);
  }
  return name;
}

function checkAttributeName(name: string): string {
  if (name.length > MAX_ATTRIBUTE_NAME_LENGTH || !ATTRIBUTE_NAME.test(name)) {
    throw new ServiceError(`invalid attribute name: ${quoted(name)}`);
  }
  return name;
}

/**
 * A datasetList filter compiled once for all the entries: the wanted text is lower-cased
 * once (it may be as long as an XML attribute, entries are many), and a text longer than
 * any entry can hold matches nothing. Each test is then linear in the attribute's length.
 */
function filterMatcher(filter: DatasetFilter, maxEntryBytes: number): (attrs: DatasetAttributes) => boolean {
  if (filter.value.length > maxEntryBytes) return () => false;
  const wanted = filter.value.toLowerCase();
  return (attrs) => {
    const raw = attrs[filter.field];
    if (raw === undefined) return false;
    const value = raw.toLowerCase();
    switch (filter.mode) {
      case 'eq':
        return value === wanted;
      case 'beg':
        return value.startsWith(wanted);
      case 'end':
        return value.endsWith(wanted);
      case 'contains':
        return value.includes(wanted);
    }
  };
}

/**
 * Account datasets (spec section "Datasets"): named, `/`-nested sets of entries with string
 * attributes, such as the RepliedAddresses dataset messageSubmit and Mail Rules fill.
 *
 * Names: a user's own datasets by path (`Contacts/Work`); another account's as
 * `~name/path` or `~name@domain/path`. Another account's datasets are open as its Account
 * Access Rights say (src/services/account-rights.ts): reading them (datasetList,
 * datasetListSubsets) needs the `r` right, changing them the `w` right; the postmaster of
 * the account's domain holds both. Anyone else gets "access denied".
 *
 * Parents are implicit: creating `A/B` (or adding an address to it) creates `A` when
 * missing, and removing `A` removes its subsets with their entries.
 */
export class DatasetService {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    readonly limits: Readonly<DatasetLimits> = DEFAULT_DATASET_LIMITS,
    private readonly rights: AccountRightsService = new AccountRightsService(store, accounts, undefined),
  ) {}

  /**
   * Resolves a dataset name as `user` spells it; `top` allows the top level ('' or `~name/`).
   * Another account's dataset needs `right` (r to read, w to change) over it.
   */
  private async resolve(user: AccountRecord, dataset: string, right: 'r' | 'w', top = false): Promise<Target> {
    let owner = user;
    let prefix = '';
    let path = dataset;
    if (dataset.startsWith('~')) {
      const slash = dataset.indexOf('/');
      if (slash < 0 && !top) throw new ServiceError(`invalid dataset name: ${quoted(dataset)}`);
      const address = slash < 0 ? dataset.slice(1) : dataset.slice(1, slash);
      path = slash < 0 ? '' : dataset.slice(slash + 1);
      prefix = slash < 0 ? `${dataset}/` : dataset.slice(0, slash + 1);
      if (address === '' || CONTROL.test(address)) throw new ServiceError(`invalid dataset name: ${quoted(dataset)}`);
      if (path !== '' || !top) checkDatasetPath(path);
      const found = await this.accounts.find(address, user.domain);
      if (!found) throw new ServiceError(UNKNOWN_ACCOUNT);
      if (found.id !== user.id && !(await this.rights.has(user, found, right))) throw new ServiceError(ACCESS_DENIED);
      owner = found;
    } else if (path !== '' || !top) {
      checkDatasetPath(path);
    }
    return { owner, path, prefix };
  }

  /** Runs a store call, turning the store's errors into what the client is told. */
  private async storeCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError(DATASET_NOT_FOUND);
      if (err instanceof DatasetLimitError) throw new ServiceError(err.message);
      throw err;
    }
  }

  /** datasetCreate: creates a dataset (and its missing parents); an error when it exists. */
  async create(user: AccountRecord, dataset: string): Promise<void> {
    const target = await this.resolve(user, dataset, 'w');
    try {
      await this.storeCall(() => this.store.datasets.create(target.owner.id, target.path, this.limits));
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ServiceError(DATASET_EXISTS);
      throw err;
    }
  }

  /** datasetRemove: removes a dataset with its subsets and entries; `ifExists` makes a missing one no error. */
  async remove(user: AccountRecord, dataset: string, ifExists = false): Promise<void> {
    const target = await this.resolve(user, dataset, 'w');
    const removed = await this.store.datasets.remove(target.owner.id, target.path);
    if (!removed && !ifExists) throw new ServiceError(DATASET_NOT_FOUND);
  }

  /**
   * Adds (or refreshes) an address entry in one of the account's own datasets, creating the
   * dataset when missing: datasetAddAddress, messageSubmit's `dataset`, the rule action
   * "Remember 'From' in". The entry is named by the lower-cased address and has the
   * attributes `email` (the address as given) and `realName` (when given, or when the
   * address came as `Name <address>`). It replaces every entry of the dataset for the same
   * address compared case-insensitively, so there are no duplicates.
   *
   * Throws ServiceError for a bad address or dataset name, and when the dataset is full
   * (DEFAULT_DATASET_LIMITS.maxEntries): automatic callers may want to ignore that.
   */
  async addAddress(account: AccountRecord, dataset: string, address: string, realName?: string): Promise<void> {
    const parsed = parseMailAddress(address);
    if (!parsed) throw new ServiceError(`invalid E-mail address: ${quoted(address.trim())}`);
    const name = cleanRealName(realName) ?? cleanRealName(parsed.realName);
    const target = await this.resolve(account, dataset, 'w');
    const changes: EntryWrite['changes'] = { email: parsed.address };
    if (name !== undefined) changes.realName = name;
    await this.storeCall(() =>
      this.store.datasets.setEntry(
        target.owner.id,
        target.path,
        emailKey(parsed.address),
        { changes, replace: true, createDataset: true, uniqueEmail: true },
        this.limits,
      ),
    );
  }

  /**
   * True when the account's dataset has an entry for this address, compared
   * case-insensitively (Mail Rules' `in #Dataset`): an entry named by the address, or one
   * whose `email` attribute is it. Never throws for a bad name or address, a missing dataset
   * or one the account may not read: the answer is then false.
   */
  async hasAddress(account: AccountRecord, dataset: string, address: string): Promise<boolean> {
    let target: Target;
    try {
      target = await this.resolve(account, dataset, 'r');
    } catch (err) {
      if (err instanceof ServiceError) return false;
      throw err;
    }
    const parsed = parseMailAddress(address);
    const key = emailKey(parsed ? parsed.address : address);
    if (key === '') return false;
    if (await this.store.datasets.getEntry(target.owner.id, target.path, key)) return true;
    return (await this.store.datasets.findByEmail(target.owner.id, target.path, key)).length > 0;
  }

  /**
   * datasetList: the entries of a dataset, sorted by name; with a filter only those whose
   * attribute `filter.field` compares (case-insensitively) as `filter.mode` says.
   */
  async list(user: AccountRecord, dataset: string, filter?: DatasetFilter): Promise<DatasetEntry[]> {
    if (filter && !DATASET_FILTER_MODES.includes(filter.mode)) throw new ServiceError(`invalid mode: ${quoted(filter.mode)}`);
    const target = await this.resolve(user, dataset, 'r');
    const entries = await this.storeCall(() => this.store.datasets.listEntries(target.owner.id, target.path));
    if (!filter) return entries;
    const matches = filterMatcher(filter, this.limits.maxEntryBytes);
    return entries.filter((e) => matches(e.attrs));
  }

  /**
   * datasetListSubsets: the direct subsets of a dataset ('' or `~name/`: the top-level
   * datasets), sorted, named as the caller would name them (`Contacts/Work`, `~bob/Contacts`).
   */
  async listSubsets(user: AccountRecord, dataset: string): Promise<string[]> {
    const target = await this.resolve(user, dataset, 'r', true);
    const paths = await this.storeCall(() => this.store.datasets.listSubsets(target.owner.id, target.path));
    return paths.map((p) => target.prefix + p);
  }

  /**
   * datasetSet: creates or modifies one entry of an existing dataset, merging `changes`
   * into its attributes (`null` removes an attribute). Without a name a new entry gets a
   * random one. Returns the entry's name.
   */
  async set(user: AccountRecord, dataset: string, name: string | undefined, changes: { [attribute: string]: string | null }): Promise<string> {
    if (name !== undefined) checkEntryName(name);
    const keys = Object.keys(changes);
    for (const key of keys) checkAttributeName(key);
    if (keys.length > this.limits.maxAttributes) {
      throw new ServiceError(`too many attributes (at most ${this.limits.maxAttributes} in an entry)`);
    }
    const target = await this.resolve(user, dataset, 'w');
    if (name !== undefined) {
      await this.storeCall(() => this.store.datasets.setEntry(target.owner.id, target.path, name, { changes }, this.limits));
      return name;
    }
    for (let attempt = 0; ; attempt++) {
      const random = randomBytes(9).toString('base64url');
      try {
        await this.storeCall(() => this.store.datasets.setEntry(target.owner.id, target.path, random, { changes, mustBeNew: true }, this.limits));
        return random;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError) || attempt >= 4) throw err;
      }
    }
  }

  /** datasetDelete: removes one entry; an error when the dataset or the entry does not exist. */
  async delete(user: AccountRecord, dataset: string, name: string): Promise<void> {
    checkEntryName(name);
    const target = await this.resolve(user, dataset, 'w');
    const deleted = await this.storeCall(() => this.store.datasets.deleteEntry(target.owner.id, target.path, name));
    if (!deleted) throw new ServiceError(ENTRY_NOT_FOUND);
  }
}
