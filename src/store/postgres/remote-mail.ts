import {
  REMOTE_MAIL_COLUMNS,
  sameRemote,
  toRemoteMailRecord,
  RemoteMailLimitError,
  skippedText,
  type RemoteMailChange,
  type RemoteMailChangeResult,
  type RemoteMailKind,
  type RemoteMailLease,
  type RemoteMailOutcome,
  type RemoteMailPutResult,
  type RemoteMailRecord,
  type RemoteMailRow,
  type RemoteMailSettings,
  type RemoteMailStore,
  type SeenPruning,
} from '../remote-mail.js';
import { NotFoundError } from '../store.js';
import { fromText, toText, type Db, type Sql, type Tx } from './db.js';

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
  resetState: { name: 'remoteMail.resetState', text: 'UPDATE remote_mail SET uid_validity = NULL, last_uid = 0, last_poll = NULL, skipped = NULL, note = NULL WHERE id = $1' },
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
  // A fetched UIDL listed again is present; one missing counts a miss, and goes once it missed
  // $4 listings in a row for $5 ms ($3: now).
  seenPresent: {
    name: 'remoteMail.seenPresent',
    text: 'UPDATE remote_mail_seen SET misses = 0, missing_since = NULL WHERE record_id = $1 AND uidl = ANY($2::text[]) AND (misses > 0 OR missing_since IS NOT NULL)',
  },
  seenForget: {
    name: 'remoteMail.seenForget',
    text: `DELETE FROM remote_mail_seen WHERE record_id = $1 AND NOT (uidl = ANY($2::text[]))
             AND misses + 1 >= $4 AND $3 - coalesce(missing_since, $3) >= $5`,
  },
  seenMissed: {
    name: 'remoteMail.seenMissed',
    text: 'UPDATE remote_mail_seen SET misses = misses + 1, missing_since = coalesce(missing_since, $3) WHERE record_id = $1 AND NOT (uidl = ANY($2::text[]))',
  },
  imapState: {
    name: 'remoteMail.imapState',
    text: 'UPDATE remote_mail SET uid_validity = $3, last_uid = $4, skipped = coalesce($5::text, skipped) WHERE id = $1 AND lease_owner = $2',
  },
  release: { name: 'remoteMail.release', text: 'UPDATE remote_mail SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2' },
  finish: {
    name: 'remoteMail.finish',
    text: `UPDATE remote_mail SET last_poll = $3, next_poll = $4, last_error = $5::text, note = CASE WHEN $6::boolean THEN $7::text ELSE note END,
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
    return this.db.tx(async (tx): Promise<RemoteMailPutResult> => {
      if (!(await tx.row(SQL.lockAccount, [accountId]))) throw new NotFoundError('account not found');
      return this.putIn(tx, accountId, kind, name, settings, now, maxPerAccount);
    });
  }

  async apply(accountId: number, kind: RemoteMailKind, changes: readonly RemoteMailChange[], now: number, maxPerAccount: number): Promise<RemoteMailChangeResult[]> {
    return this.db.tx(async (tx): Promise<RemoteMailChangeResult[]> => {
      if (!(await tx.row(SQL.lockAccount, [accountId]))) throw new NotFoundError('account not found');
      const results: RemoteMailChangeResult[] = [];
      for (const change of changes) {
        if (change.remove) {
          results.push((await tx.run(SQL.remove, [accountId, kind, toText(change.name)])) > 0 ? 'removed' : 'absent');
          continue;
        }
        const result = await this.putIn(tx, accountId, kind, change.name, change.settings, now, maxPerAccount);
        if (result === 'limit') throw new RemoteMailLimitError(change.name);
        results.push(result);
      }
      return results;
    });
  }

  /** put, inside a transaction that locked the account's row. */
  private async putIn(tx: Tx, accountId: number, kind: RemoteMailKind, name: string, settings: RemoteMailSettings, now: number, maxPerAccount: number): Promise<RemoteMailPutResult> {
    const n = toText(name);
    const s = [toText(settings.host), settings.port, settings.tls, toText(settings.user), settings.sealedPassword, settings.leave, settings.interval, toText(settings.mailbox), now] as const;
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

  async pruneSeen(id: number, owner: string, listed: readonly string[], now: number, policy: SeenPruning): Promise<boolean> {
    return this.db.tx(async (tx) => {
      if (!(await tx.row(SQL.held, [id, owner]))) return false;
      if (listed.length === 0) return true;
      const present = listed.map(toText);
      await tx.run(SQL.seenPresent, [id, present]);
      await tx.run(SQL.seenForget, [id, present, now, policy.misses, policy.ageMs]);
      await tx.run(SQL.seenMissed, [id, present, now]);
      return true;
    });
  }

  async setImapState(id: number, owner: string, uidValidity: number, lastUid: number, skipped?: readonly number[]): Promise<boolean> {
    return (await this.db.run(SQL.imapState, [id, owner, uidValidity, lastUid, skipped === undefined ? null : skippedText(skipped)])) > 0;
  }

  async release(id: number, owner: string): Promise<boolean> {
    return (await this.db.run(SQL.release, [id, owner])) > 0;
  }

  async finish(id: number, owner: string, outcome: RemoteMailOutcome): Promise<boolean> {
    const note = outcome.note === undefined || outcome.note === null ? null : toText(outcome.note);
    return (
      (await this.db.run(SQL.finish, [id, owner, outcome.time, outcome.nextPoll, outcome.error === null ? null : toText(outcome.error), outcome.note !== undefined, note])) > 0
    );
  }

  async count(): Promise<number> {
    return (await this.db.row<{ n: number }>(SQL.countAll))!.n;
  }
}
