import type { Database as SqliteDatabase } from 'better-sqlite3';
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
import { isForeignKeyViolation, prepareAll } from './util.js';

const COLUMNS = REMOTE_MAIL_COLUMNS;
/** The record is held by @owner (its lease, expired or not, as long as nobody took it). */
const HELD = 'id = @id AND lease_owner = @owner';

/**
 * Remote mail accounts in SQLite (see src/store/remote-mail.ts). Decisions from what is stored
 * (put's limit and state, the claim) are IMMEDIATE transactions: the write lock is taken before
 * the rows are read, so another process sharing the file cannot slip in between.
 */
export class SqliteRemoteMail implements RemoteMailStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      one: `SELECT ${COLUMNS} FROM remote_mail WHERE account_id = ? AND kind = ? AND name = ?`,
      count: 'SELECT count(*) AS n FROM remote_mail WHERE account_id = ?',
      countAll: 'SELECT count(*) AS n FROM remote_mail',
      insert: `INSERT INTO remote_mail (account_id, kind, name, host, port, tls, user_name, password, leave, interval_seconds, mailbox, next_poll)
               VALUES (@account, @kind, @name, @host, @port, @tls, @user, @password, @leave, @interval, @mailbox, @now)`,
      update: `UPDATE remote_mail SET host = @host, port = @port, tls = @tls, user_name = @user, password = @password, leave = @leave,
                 interval_seconds = @interval, mailbox = @mailbox, next_poll = @now, failures = 0, last_error = NULL,
                 lease_owner = NULL, lease_until = NULL
               WHERE id = @id`,
      resetState: 'UPDATE remote_mail SET uid_validity = NULL, last_uid = 0, last_poll = NULL, skipped = NULL, note = NULL WHERE id = ?',
      dropSeen: 'DELETE FROM remote_mail_seen WHERE record_id = ?',
      remove: 'DELETE FROM remote_mail WHERE account_id = ? AND kind = ? AND name = ?',
      list: `SELECT ${COLUMNS} FROM remote_mail WHERE account_id = ? AND kind = ? ORDER BY name`,
      due: `SELECT ${COLUMNS} FROM remote_mail WHERE next_poll <= @now AND (lease_until IS NULL OR lease_until <= @now)
            ORDER BY next_poll, id LIMIT @limit`,
      take: 'UPDATE remote_mail SET lease_owner = @owner, lease_until = @until WHERE id = @id',
      nextDue: `SELECT min(CASE WHEN lease_until IS NOT NULL AND lease_until > @now THEN max(next_poll, lease_until) ELSE next_poll END) AS t
                FROM remote_mail`,
      renew: `UPDATE remote_mail SET lease_until = @until WHERE ${HELD}`,
      held: `SELECT 1 AS ok FROM remote_mail WHERE ${HELD}`,
      seen: 'SELECT uidl FROM remote_mail_seen WHERE record_id = ?',
      seenState: 'SELECT uidl, misses, missing_since FROM remote_mail_seen WHERE record_id = ?',
      present: 'UPDATE remote_mail_seen SET misses = 0, missing_since = NULL WHERE record_id = ? AND uidl = ?',
      missed: 'UPDATE remote_mail_seen SET misses = misses + 1, missing_since = coalesce(missing_since, @now) WHERE record_id = @id AND uidl = @uidl',
      release: `UPDATE remote_mail SET lease_owner = NULL, lease_until = NULL WHERE ${HELD}`,
      markSeen: 'INSERT INTO remote_mail_seen (record_id, uidl, time) VALUES (@id, @uidl, @now) ON CONFLICT DO NOTHING',
      forget: 'DELETE FROM remote_mail_seen WHERE record_id = ? AND uidl = ?',
      imapState: `UPDATE remote_mail SET uid_validity = @validity, last_uid = @uid, skipped = coalesce(@skipped, skipped) WHERE ${HELD}`,
      finish: `UPDATE remote_mail SET last_poll = @time, next_poll = @next, last_error = @error, note = CASE WHEN @setNote THEN @note ELSE note END,
                 failures = CASE WHEN @error IS NULL THEN 0 ELSE failures + 1 END, lease_owner = NULL, lease_until = NULL
               WHERE ${HELD}`,
    });
  }

  async put(accountId: number, kind: RemoteMailKind, name: string, settings: RemoteMailSettings, now: number, maxPerAccount: number): Promise<RemoteMailPutResult> {
    return this.db.transaction((): RemoteMailPutResult => this.putNow(accountId, kind, name, settings, now, maxPerAccount)).immediate();
  }

  async apply(accountId: number, kind: RemoteMailKind, changes: readonly RemoteMailChange[], now: number, maxPerAccount: number): Promise<RemoteMailChangeResult[]> {
    return this.db
      .transaction((): RemoteMailChangeResult[] =>
        changes.map((change): RemoteMailChangeResult => {
          if (change.remove) return this.sql.remove.run(accountId, kind, change.name).changes > 0 ? 'removed' : 'absent';
          const result = this.putNow(accountId, kind, change.name, change.settings, now, maxPerAccount);
          if (result === 'limit') throw new RemoteMailLimitError(change.name);
          return result;
        }),
      )
      .immediate();
  }

  /** put, inside a transaction. */
  private putNow(accountId: number, kind: RemoteMailKind, name: string, settings: RemoteMailSettings, now: number, maxPerAccount: number): RemoteMailPutResult {
    const values = {
      account: accountId,
      kind,
      name,
      host: settings.host,
      port: settings.port,
      tls: settings.tls,
      user: settings.user,
      password: settings.sealedPassword,
      leave: settings.leave ? 1 : 0,
      interval: settings.interval,
      mailbox: settings.mailbox,
      now,
    };
    const old = this.sql.one.get(accountId, kind, name) as RemoteMailRow | undefined;
    if (old) {
      this.sql.update.run({ ...values, id: old.id });
      if (!sameRemote(old, settings)) {
        this.sql.resetState.run(old.id);
        this.sql.dropSeen.run(old.id);
      }
      return 'replaced';
    }
    if ((this.sql.count.get(accountId) as { n: number }).n >= maxPerAccount) return 'limit';
    try {
      this.sql.insert.run(values);
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
      throw err;
    }
    return 'created';
  }

  async remove(accountId: number, kind: RemoteMailKind, name: string): Promise<boolean> {
    return this.sql.remove.run(accountId, kind, name).changes > 0;
  }

  async get(accountId: number, kind: RemoteMailKind, name: string): Promise<RemoteMailRecord | undefined> {
    const row = this.sql.one.get(accountId, kind, name) as RemoteMailRow | undefined;
    return row && toRemoteMailRecord(row);
  }

  async list(accountId: number, kind: RemoteMailKind): Promise<RemoteMailRecord[]> {
    return (this.sql.list.all(accountId, kind) as RemoteMailRow[]).map((r) => toRemoteMailRecord(r));
  }

  async claimDue(now: number, limit: number, lease: RemoteMailLease): Promise<RemoteMailRecord[]> {
    if (limit <= 0) return [];
    return this.db
      .transaction((): RemoteMailRecord[] => {
        const rows = this.sql.due.all({ now, limit }) as RemoteMailRow[];
        for (const row of rows) this.sql.take.run({ id: row.id, owner: lease.owner, until: lease.until });
        return rows.map((r) => toRemoteMailRecord({ ...r, lease_owner: lease.owner, lease_until: lease.until }));
      })
      .immediate();
  }

  async nextDue(now: number): Promise<number | undefined> {
    return (this.sql.nextDue.get({ now }) as { t: number | null }).t ?? undefined;
  }

  async renewLease(id: number, lease: RemoteMailLease): Promise<boolean> {
    return this.sql.renew.run({ id, owner: lease.owner, until: lease.until }).changes > 0;
  }

  async seen(id: number): Promise<Set<string>> {
    return new Set((this.sql.seen.all(id) as { uidl: string }[]).map((r) => r.uidl));
  }

  async markSeen(id: number, owner: string, uidl: string, now: number): Promise<boolean> {
    return this.db
      .transaction((): boolean => {
        if (!this.sql.held.get({ id, owner })) return false;
        this.sql.markSeen.run({ id, uidl, now });
        return true;
      })
      .immediate();
  }

  async pruneSeen(id: number, owner: string, listed: readonly string[], now: number, policy: SeenPruning): Promise<boolean> {
    const present = new Set(listed);
    return this.db
      .transaction((): boolean => {
        if (!this.sql.held.get({ id, owner })) return false;
        if (present.size === 0) return true;
        const rows = this.sql.seenState.all(id) as { uidl: string; misses: number; missing_since: number | null }[];
        for (const row of rows) {
          if (present.has(row.uidl)) {
            if (row.misses > 0 || row.missing_since !== null) this.sql.present.run(id, row.uidl);
            continue;
          }
          const since = row.missing_since ?? now;
          if (row.misses + 1 >= policy.misses && now - since >= policy.ageMs) this.sql.forget.run(id, row.uidl);
          else this.sql.missed.run({ id, uidl: row.uidl, now });
        }
        return true;
      })
      .immediate();
  }

  async setImapState(id: number, owner: string, uidValidity: number, lastUid: number, skipped?: readonly number[]): Promise<boolean> {
    return this.sql.imapState.run({ id, owner, validity: uidValidity, uid: lastUid, skipped: skipped === undefined ? null : skippedText(skipped) }).changes > 0;
  }

  async release(id: number, owner: string): Promise<boolean> {
    return this.sql.release.run({ id, owner }).changes > 0;
  }

  async finish(id: number, owner: string, outcome: RemoteMailOutcome): Promise<boolean> {
    const note = outcome.note === undefined ? { setNote: 0, note: null } : { setNote: 1, note: outcome.note };
    return this.sql.finish.run({ id, owner, time: outcome.time, next: outcome.nextPoll, error: outcome.error, ...note }).changes > 0;
  }

  async count(): Promise<number> {
    return (this.sql.countAll.get() as { n: number }).n;
  }
}
