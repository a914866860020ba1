import { ServiceError } from '../services/errors.js';

export interface UploadedFile {
  id: string;
  data: Buffer;
  /** Content type as the upload request gave it. */
  type: string;
  subtype: string;
  charset: string | undefined;
  fileName: string | undefined;
}

/**
 * A session's "uploaded file set" (HTTP UPLOAD): files kept in memory until the session
 * uses them in a message, clears them, or ends; bounded in total size.
 */
export class UploadSet {
  private readonly files = new Map<string, UploadedFile>();
  private bytes = 0;

  constructor(private readonly limitBytes: number) {}

  /** Adds a file, replacing one with the same id. */
  put(file: UploadedFile): void {
    const previous = this.files.get(file.id);
    const after = this.bytes - (previous?.data.length ?? 0) + file.data.length;
    if (after > this.limitBytes) throw new ServiceError('the uploaded file set is too large');
    this.files.set(file.id, file);
    this.bytes = after;
  }

  get(id: string): UploadedFile | undefined {
    return this.files.get(id);
  }

  list(): UploadedFile[] {
    return [...this.files.values()];
  }

  /** Removes one file, or all of them. */
  clear(id?: string): void {
    if (id === undefined) {
      this.files.clear();
      this.bytes = 0;
      return;
    }
    const file = this.files.get(id);
    if (!file) return;
    this.files.delete(id);
    this.bytes -= file.data.length;
  }
}
