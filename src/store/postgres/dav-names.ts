import type { DavNameStore } from '../dav-names.js';
import type { Db, Sql } from './db.js';

const SQL = {
  record: {
    name: 'davNames.record',
    text: `INSERT INTO dav_names (mailbox_id, orig_uid, name) SELECT $1, $2, $3
           WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = $1) ON CONFLICT (mailbox_id, orig_uid) DO NOTHING`,
  },
  all: { name: 'davNames.all', text: 'SELECT orig_uid, name FROM dav_names WHERE mailbox_id = $1' },
  some: { name: 'davNames.some', text: 'SELECT orig_uid, name FROM dav_names WHERE mailbox_id = $1 AND orig_uid = ANY($2::bigint[])' },
} satisfies Record<string, Sql>;

/** CardDAV resource names in PostgreSQL (see src/store/dav-names.ts). */
export class PgDavNames implements DavNameStore {
  constructor(private readonly db: Db) {}

  async record(mailboxId: number, origUid: number, name: string): Promise<void> {
    await this.db.run(SQL.record, [mailboxId, origUid, name]);
  }

  async names(mailboxId: number, origUids?: readonly number[]): Promise<Map<number, string>> {
    const rows = origUids
      ? await this.db.rows<{ orig_uid: string | number; name: string }>(SQL.some, [mailboxId, origUids])
      : await this.db.rows<{ orig_uid: string | number; name: string }>(SQL.all, [mailboxId]);
    return new Map(rows.map((r) => [Number(r.orig_uid), r.name]));
  }
}
