import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { DavNameStore } from '../dav-names.js';
import { prepareAll } from './util.js';

/** CardDAV resource names in SQLite (see src/store/dav-names.ts). */
export class SqliteDavNames implements DavNameStore {
  private readonly sql: ReturnType<typeof prepareStatements>;

  constructor(db: SqliteDatabase) {
    this.sql = prepareStatements(db);
  }

  async record(mailboxId: number, origUid: number, name: string): Promise<void> {
    this.sql.record.run({ mailbox: mailboxId, orig: origUid, name });
  }

  async names(mailboxId: number, origUids?: readonly number[]): Promise<Map<number, string>> {
    const rows = this.sql.all.all(mailboxId) as { orig_uid: number; name: string }[];
    const wanted = origUids ? new Set(origUids) : undefined;
    const map = new Map<number, string>();
    for (const r of rows) if (!wanted || wanted.has(r.orig_uid)) map.set(r.orig_uid, r.name);
    return map;
  }
}

function prepareStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    record: `INSERT INTO dav_names (mailbox_id, orig_uid, name) SELECT @mailbox, @orig, @name
             WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = @mailbox) ON CONFLICT (mailbox_id, orig_uid) DO NOTHING`,
    all: 'SELECT orig_uid, name FROM dav_names WHERE mailbox_id = ?',
  });
}
