/**
 * Account datasets (datasetCreate, datasetList, ... and the RepliedAddresses dataset
 * messageSubmit fills): named, `/`-nested sets of entries, each entry a name with string
 * attributes. Owned by the datasets service (src/services/datasets.ts), which checks names
 * and access; the store keeps the data and enforces the limits it is given atomically with
 * each write.
 *
 * Paths are the dataset names of the owner account, `/`-separated (`Contacts/Work` is the
 * subset `Work` of `Contacts`), never empty, compared case-sensitively. A dataset's parents
 * always exist: creating `A/B` creates `A` when missing, removing `A` removes `A/B`.
 */

/** An entry's attributes: a flat dictionary of strings (a null-prototype object). */
export type DatasetAttributes = { [name: string]: string };

export interface DatasetEntry {
  name: string;
  attrs: DatasetAttributes;
}

/** Bounds a write must keep; exceeding one throws DatasetLimitError and changes nothing. */
export interface DatasetLimits {
  /** Datasets (subsets included) one account may have. */
  maxDatasets: number;
  /** Entries one dataset may hold. */
  maxEntries: number;
  /** Attributes one entry may have. */
  maxAttributes: number;
  /** Size of one entry's attributes, as UTF-8 JSON. */
  maxEntryBytes: number;
}

/** One write of an entry (see DatasetStore.setEntry). */
export interface EntryWrite {
  /** Attributes to set; `null` removes one. */
  changes: { [name: string]: string | null };
  /** Replaces the entry's attributes with `changes` instead of merging them in. */
  replace?: boolean;
  /** Creates the dataset (and its missing parents) when missing, instead of NotFoundError. */
  createDataset?: boolean;
  /** Fails with AlreadyExistsError when the entry exists (new entries with random names). */
  mustBeNew?: boolean;
  /**
   * Also removes the dataset's other entries whose `email` attribute is the same address
   * (see `emailKey`): no duplicate address entries.
   */
  uniqueEmail?: boolean;
}

/** Thrown when a write would exceed one of the DatasetLimits; the message says which. */
export class DatasetLimitError extends Error {}

/**
 * The key under which an entry's `email` attribute is indexed and compared: the address
 * trimmed and lower-cased. Stores index it; the service names address entries by it.
 */
export function emailKey(address: string): string {
  return address.trim().toLowerCase();
}

export interface DatasetStore {
  /** True when the account has this dataset. */
  exists(accountId: number, path: string): Promise<boolean>;
  /**
   * Creates a dataset, and its missing parents. AlreadyExistsError when `path` itself
   * exists; DatasetLimitError beyond `limits.maxDatasets`.
   */
  create(accountId: number, path: string, limits: DatasetLimits): Promise<void>;
  /** Removes a dataset with its subsets and all their entries; false when it did not exist. */
  remove(accountId: number, path: string): Promise<boolean>;
  /**
   * The paths of the direct subsets of `parent` (the top-level datasets for ''), sorted.
   * NotFoundError when `parent` is not '' and does not exist.
   */
  listSubsets(accountId: number, parent: string): Promise<string[]>;
  /** Every entry of a dataset, sorted by name. NotFoundError when the dataset does not exist. */
  listEntries(accountId: number, path: string): Promise<DatasetEntry[]>;
  /** One entry, or undefined (also when the dataset does not exist). */
  getEntry(accountId: number, path: string, name: string): Promise<DatasetEntry | undefined>;
  /**
   * The entries whose `email` attribute has this `emailKey` (none when the dataset does not
   * exist), sorted by name. Indexed: cheap enough for every delivery.
   */
  findByEmail(accountId: number, path: string, key: string): Promise<DatasetEntry[]>;
  /**
   * Creates or modifies one entry in one transaction and returns it as stored.
   * NotFoundError when the dataset does not exist (unless `createDataset`);
   * AlreadyExistsError with `mustBeNew` when the entry exists; DatasetLimitError when the
   * result would exceed `limits`.
   */
  setEntry(accountId: number, path: string, name: string, write: EntryWrite, limits: DatasetLimits): Promise<DatasetEntry>;
  /** Removes an entry; false when it does not exist. NotFoundError when the dataset does not. */
  deleteEntry(accountId: number, path: string, name: string): Promise<boolean>;
}
