import type { Database as SqliteDatabase } from 'better-sqlite3';
import type {
  MeetingActivateResult,
  MeetingCreateResult,
  MeetingDeactivateResult,
  MeetingRecord,
  MeetingRow,
  MeetingStore,
} from '../meetings.js';
import { MEETING_COLUMNS } from '../meetings.js';
import { NotFoundError } from '../store.js';
import { isForeignKeyViolation, prepareAll } from './util.js';

const COLUMNS = MEETING_COLUMNS;
const KEY = 'account_id = @account AND set_name = @set AND name = @name';

function toMeeting(r: MeetingRow): MeetingRecord {
  return { accountId: r.account_id, set: r.set_name, name: r.name, parameter: r.parameter, task: r.task_handle, expires: r.expires, created: r.created };
}

/**
 * Meetings of the real-time applications in SQLite (see src/store/meetings.ts). The methods
 * that decide from what is stored (create, activate, deactivate) are IMMEDIATE transactions:
 * the write lock is taken before the meeting is read, so another process sharing the file
 * cannot change it between the decision and the write.
 */
export class SqliteMeetings implements MeetingStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      live: `SELECT ${COLUMNS} FROM meetings WHERE ${KEY} AND expires > @now`,
      countLive: 'SELECT count(*) AS n FROM meetings WHERE account_id = @account AND expires > @now',
      put: `INSERT INTO meetings (account_id, set_name, name, parameter, task_handle, task_node, expires, created)
            VALUES (@account, @set, @name, @parameter, NULL, NULL, @expires, @now)
            ON CONFLICT (account_id, set_name, name) DO UPDATE SET
              parameter = excluded.parameter, task_handle = NULL, task_node = NULL, expires = excluded.expires, created = excluded.created`,
      remove: `DELETE FROM meetings WHERE ${KEY}`,
      clear: `UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE ${KEY} AND expires > @now`,
      activate: `UPDATE meetings SET task_handle = @handle, task_node = @node, expires = max(expires, @expires) WHERE ${KEY}`,
      deactivate: `UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE ${KEY}`,
      clearTask: 'UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE task_handle = ?',
      clearNode: 'UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE task_node = ?',
      list: `SELECT ${COLUMNS} FROM meetings WHERE account_id = ? AND set_name = ? AND expires > ? ORDER BY name`,
      sweep: 'DELETE FROM meetings WHERE expires <= ?',
    });
  }

  async create(
    meeting: { accountId: number; set: string; name: string; parameter: string | null; expires: number },
    now: number,
    maxPerAccount: number,
  ): Promise<MeetingCreateResult> {
    const key = { account: meeting.accountId, set: meeting.set, name: meeting.name };
    return this.db
      .transaction((): MeetingCreateResult => {
        if (this.sql.live.get({ ...key, now })) return 'exists';
        // An expired meeting of that name is not live, so it does not count here.
        if ((this.sql.countLive.get({ account: meeting.accountId, now }) as { n: number }).n >= maxPerAccount) return 'limit';
        try {
          this.sql.put.run({ ...key, parameter: meeting.parameter, expires: meeting.expires, now });
        } catch (err) {
          if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
          throw err;
        }
        return 'created';
      })
      .immediate();
  }

  async find(accountId: number, set: string, name: string, now: number): Promise<MeetingRecord | undefined> {
    const row = this.sql.live.get({ account: accountId, set, name, now }) as MeetingRow | undefined;
    return row && toMeeting(row);
  }

  async remove(accountId: number, set: string, name: string): Promise<boolean> {
    return this.sql.remove.run({ account: accountId, set, name }).changes > 0;
  }

  async clear(accountId: number, set: string, name: string, now: number): Promise<boolean> {
    return this.sql.clear.run({ account: accountId, set, name, now }).changes > 0;
  }

  async activate(
    accountId: number,
    set: string,
    name: string,
    task: { handle: string; node: string },
    expires: number,
    now: number,
  ): Promise<MeetingActivateResult> {
    const key = { account: accountId, set, name };
    return this.db
      .transaction((): MeetingActivateResult => {
        const row = this.sql.live.get({ ...key, now }) as MeetingRow | undefined;
        if (!row) return 'not-found';
        if (row.task_handle !== null) return 'already-activated';
        this.sql.activate.run({ ...key, handle: task.handle, node: task.node, expires });
        return 'activated';
      })
      .immediate();
  }

  async deactivate(accountId: number, set: string, name: string, task: string, now: number): Promise<MeetingDeactivateResult> {
    const key = { account: accountId, set, name };
    return this.db
      .transaction((): MeetingDeactivateResult => {
        const row = this.sql.live.get({ ...key, now }) as MeetingRow | undefined;
        if (!row) return 'not-found';
        if (row.task_handle !== task) return 'not-activated';
        this.sql.deactivate.run(key);
        return 'deactivated';
      })
      .immediate();
  }

  async clearTasks(tasks: readonly string[]): Promise<number> {
    if (tasks.length === 0) return 0;
    return this.db.transaction((): number => {
      let n = 0;
      for (const task of new Set(tasks)) n += this.sql.clearTask.run(task).changes;
      return n;
    })();
  }

  async clearNode(node: string): Promise<number> {
    return this.sql.clearNode.run(node).changes;
  }

  async list(accountId: number, set: string, now: number): Promise<MeetingRecord[]> {
    return (this.sql.list.all(accountId, set, now) as MeetingRow[]).map(toMeeting);
  }

  async sweep(now: number): Promise<number> {
    return this.sql.sweep.run(now).changes;
  }
}
