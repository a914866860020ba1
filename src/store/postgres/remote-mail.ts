import {
  REMOTE_MAIL_COLUMNS,
  sameRemote,
  toRemoteMailRecord,
  type RemoteMailKind,
  type RemoteMailLease,
  type RemoteMailOutcome,
  type RemoteMailPutResult,
  type RemoteMailRecord,
  type RemoteMailRow,
  type RemoteMailSettings,
  type RemoteMailStore,
} from '../remote-mail.js';
import { NotFoundError } from '../store.js';
import { fromText, toText, type Db, type Sql } from './db.js';

const COLUMNS = REMOTE_MAIL_COLUMNS;

const SQL = {
  // Serializes the puts of one account on every node, so that the limit holds.
  lockAccount: { name: 'remoteMail.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  one: { name: 'remoteMail.one', text: `SELECT ${COLUMNS} FROM remote_mail WHERE account_id = $1 AND kind = $2 AND name = $3` },
  count: { name: 'remoteMail.count', text: 'SELECT count(*)::bigint AS n FROM remote_mail WHERE account_id = $1' },
  countAll: { name: 'remoteMail.countAll', text: 'SELECT count(*)::bigint AS n FROM remote_mail' },
  insert: {
    name: 'remoteMail.insert',
    text: `INSERT INTO remote_mail (account_id, kind, name, host, port, tls, user_name, password, leave, interval_seconds, mailbox, next_poll)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
  },
  update: {
    name: 'remoteMail.update',
    text: `UPDATE remote_mail SET host = $2, port = $3, tls = $4, user_name = $5, password = $6, leave = $7, interval_seconds = $8,
             mailbox = $9, next_poll = $10, failures = 0, last_error = NULL, lease_owner = NULL, lease_until = NULL
           WHERE id = $1`,
  },
  resetState: { name: 'remoteMail.resetState', text: 'UPDATE remote_mail SET uid_validity = NULL, last_uid = 0, last_poll = NULL WHERE id = $1' },
  dropSeen: { name: 'remoteMail.dropSeen', text: 'DELETE FROM remote_mail_seen WHERE record_id = $1' },
  remove: { name: 'remoteMail.remove', text: 'DELETE FROM remote_mail WHERE account_id = $1 AND kind = $2 AND name = $3' },
  list: { name: 'remoteMail.list', text: `SELECT ${COLUMNS} FROM remote_mail WHERE account_id = $1 AND kind = $2 ORDER BY name` },
  claim: {
    name: 'remoteMail.claim',
    text: `WITH c AS (
             SELECT id FROM remote_mail WHERE next_poll <= $1 AND (lease_until IS NULL OR lease_until <= $1)
             ORDER BY next_poll, id LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE remote_mail r SET lease_owner = $3, lease_until = $4 FROM c WHERE r.id = c.id
           RETURNING ${COLUMNS.split(', ').map((c) => `r.${c}`).join(', ')}`,
  },
  nextDue: {
    name: 'remoteMail.nextDue',
    text: `SELECT min(CASE WHEN lease_until IS NOT NULL AND lease_until > $1 THEN greatest(next_poll, lease_until) ELSE next_poll END) AS t
           FROM remote_mail`,
  },
  renew: { name: 'remoteMail.renew', text: 'UPDATE remote_mail SET lease_until = $3 WHERE id = $1 AND lease_owner = $2' },
  // The record's row, locked while it is held by $2 (a claim waits for the write to end).
  held: { name: 'remoteMail.held', text: 'SELECT 1 AS ok FROM remote_mail WHERE id = $1 AND lease_owner = $2 FOR UPDATE' },
  seen: { name: 'remoteMail.seen', text: 'SELECT uidl FROM remote_mail_seen WHERE record_id = $1' },
  markSeen: { name: 'remoteMail.markSeen', text: 'INSERT INTO remote_mail_seen (record_id, uidl, time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING' },
  pruneSeen: { name: 'remoteMail.pruneSeen', text: 'DELETE FROM remote_mail_seen WHERE record_id = $1 AND NOT (uidl = ANY($2::text[]))' },
  imapState: { name: 'remoteMail.imapState', text: 'UPDATE remote_mail SET uid_validity = $3, last_uid = $4 WHERE id = $1 AND lease_owner = $2' },
  finish: {
    name: 'remoteMail.finish',
    text: `UPDATE remote_mail SET last_poll = $3, next_poll = $4, last_error = $5::text,
             failures = CASE WHEN $5::text IS NULL THEN 0 ELSE failures + 1 END, lease_owner = NULL, lease_until = NULL
           WHERE id = $1 AND lease_owner = $2`,
  },
} satisfies Record<string, Sql>;

function recordOf(r: RemoteMailRow): RemoteMailRecord {
  return toRemoteMailRecord(r, fromText);
}

/**
 * Remote mail accounts in PostgreSQL (see src/store/remote-mail.ts). A put locks the account's
 * row first (the limit holds across nodes); a claim takes due rows with FOR UPDATE SKIP LOCKED,
 * so that two nodes claiming at once never get the same record.
 */
export class PgRemoteMail implements RemoteMailStore {
  constructor(private readonly db: Db) {}

  async put(accountId: number, kind: RemoteMailKind, name: string, settings: RemoteMailSettings, now: number, maxPerAccount: number): Promise<RemoteMailPutResult> {
    const n = toText(name);
    const s = [toText(settings.host), settings.port, settings.tls, toText(settings.user), settings.sealedPassword, settings.leave, settings.interval, toText(settings.mailbox), now] as const;
    return this.db.tx(async (tx): Promise<RemoteMailPutResult> => {
      if (!(await tx.row(SQL.lockAccount, [accountId]))) throw new NotFoundError('account not found');
      const old = await tx.row<RemoteMailRow>(SQL.one, [accountId, kind, n]);
      if (old) {
        await tx.run(SQL.update, [old.id, ...s]);
        if (!sameRemote(old, settings, fromText)) {
          await tx.run(SQL.resetState, [old.id]);
          await tx.run(SQL.dropSeen, [old.id]);
        }
        return 'replaced';
      }
      if ((await tx.row<{ n: number }>(SQL.count, [accountId]))!.n >= maxPerAccount) return 'limit';
      await tx.run(SQL.insert, [accountId, kind, n, ...s]);
      return 'created';
    });
  }

  async remove(accountId: number, kind: RemoteMailKind, name: string): Promise<boolean> {
    return (await this.db.run(SQL.remove, [accountId, kind, toText(name)])) > 0;
  }

  async get(accountId: number, kind: RemoteMailKind, name: string): Promise<RemoteMailRecord | undefined> {
    const row = await this.db.row<RemoteMailRow>(SQL.one, [accountId, kind, toText(name)]);
    return row && recordOf(row);
  }

  async list(accountId: number, kind: RemoteMailKind): Promise<RemoteMailRecord[]> {
    return (await this.db.rows<RemoteMailRow>(SQL.list, [accountId, kind])).map(recordOf);
  }

  async claimDue(now: number, limit: number, lease: RemoteMailLease): Promise<RemoteMailRecord[]> {
    if (limit <= 0) return [];
    const rows = await this.db.rows<RemoteMailRow>(SQL.claim, [now, limit, lease.owner, lease.until]);
    // RETURNING comes in no particular order: the longest due first.
    rows.sort((a, b) => a.next_poll - b.next_poll || a.id - b.id);
    return rows.map(recordOf);
  }

  async nextDue(now: number): Promise<number | undefined> {
    return (await this.db.row<{ t: number | null }>(SQL.nextDue, [now]))?.t ?? undefined;
  }

  async renewLease(id: number, lease: RemoteMailLease): Promise<boolean> {
    return (await this.db.run(SQL.renew, [id, lease.owner, lease.until])) > 0;
  }

  async seen(id: number): Promise<Set<string>> {
    return new Set((await this.db.rows<{ uidl: string }>(SQL.seen, [id])).map((r) => fromText(r.uidl)));
  }

  async markSeen(id: number, owner: string, uidl: string, now: number): Promise<boolean> {
    return this.db.tx(async (tx) => {
      if (!(await tx.row(SQL.held, [id, owner]))) return false;
      await tx.run(SQL.markSeen, [id, toText(uidl), now]);
      return true;
    });
  }

  async pruneSeen(id: number, owner: string, keep: readonly string[]): Promise<boolean> {
    return this.db.tx(async (tx) => {
      if (!(await tx.row(SQL.held, [id, owner]))) return false;
      await tx.run(SQL.pruneSeen, [id, keep.map(toText)]);
      return true;
    });
  }

  async setImapState(id: number, owner: string, uidValidity: number, lastUid: number): Promise<boolean> {
    return (await this.db.run(SQL.imapState, [id, owner, uidValidity, lastUid])) > 0;
  }

  async finish(id: number, owner: string, outcome: RemoteMailOutcome): Promise<boolean> {
    return (await this.db.run(SQL.finish, [id, owner, outcome.time, outcome.nextPoll, outcome.error === null ? null : toText(outcome.error)])) > 0;
  }

  async count(): Promise<number> {
    return (await this.db.row<{ n: number }>(SQL.countAll))!.n;
  }
}
