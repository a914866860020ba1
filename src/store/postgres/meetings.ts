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
import { fromText, toText, type Db, type Sql } from './db.js';

const COLUMNS = MEETING_COLUMNS;
const KEY = 'account_id = $1 AND set_name = $2 AND name = $3';

const SQL = {
  // Serializes the creates of one account on every node, so that the limit holds.
  lockAccount: { name: 'meetings.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  live: { name: 'meetings.live', text: `SELECT ${COLUMNS} FROM meetings WHERE ${KEY} AND expires > $4` },
  // The meeting's row, locked for a decision (activate, deactivate); expired or not.
  lockOne: { name: 'meetings.lockOne', text: `SELECT task_handle, expires FROM meetings WHERE ${KEY} FOR UPDATE` },
  countLive: { name: 'meetings.countLive', text: 'SELECT count(*) AS n FROM meetings WHERE account_id = $1 AND expires > $2' },
  put: {
    name: 'meetings.put',
    text: `INSERT INTO meetings (account_id, set_name, name, parameter, task_handle, task_node, expires, created)
           VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6)
           ON CONFLICT (account_id, set_name, name) DO UPDATE SET
             parameter = excluded.parameter, task_handle = NULL, task_node = NULL, expires = excluded.expires, created = excluded.created`,
  },
  remove: { name: 'meetings.remove', text: `DELETE FROM meetings WHERE ${KEY}` },
  clear: { name: 'meetings.clear', text: `UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE ${KEY} AND expires > $4` },
  activate: {
    name: 'meetings.activate',
    text: `UPDATE meetings SET task_handle = $4, task_node = $5, expires = GREATEST(expires, $6) WHERE ${KEY}`,
  },
  deactivate: { name: 'meetings.deactivate', text: `UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE ${KEY}` },
  clearTasks: {
    name: 'meetings.clearTasks',
    text: 'UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE task_handle = ANY($1::text[])',
  },
  clearNode: { name: 'meetings.clearNode', text: 'UPDATE meetings SET task_handle = NULL, task_node = NULL WHERE task_node = $1' },
  list: {
    name: 'meetings.list',
    text: `SELECT ${COLUMNS} FROM meetings WHERE account_id = $1 AND set_name = $2 AND expires > $3 ORDER BY name`,
  },
  sweep: { name: 'meetings.sweep', text: 'DELETE FROM meetings WHERE expires <= $1' },
} satisfies Record<string, Sql>;

function toMeeting(r: MeetingRow): MeetingRecord {
  return {
    accountId: r.account_id,
    set: fromText(r.set_name),
    name: fromText(r.name),
    parameter: r.parameter === null ? null : fromText(r.parameter),
    task: r.task_handle,
    expires: r.expires,
    created: r.created,
  };
}

/** The key's values: set and name are what a client sent, stored with toText (a NUL does no harm). */
function key(accountId: number, set: string, name: string): [number, string, string] {
  return [accountId, toText(set), toText(name)];
}

/**
 * Meetings of the real-time applications in PostgreSQL (see src/store/meetings.ts). A create
 * locks the account's row first, so the creates of one account decide one after the other
 * (the limit holds across nodes); activate and deactivate lock the meeting's row, so two tasks
 * racing for a meeting decide one after the other and only the first gets it.
 */
export class PgMeetings implements MeetingStore {
  constructor(private readonly db: Db) {}

  async create(
    meeting: { accountId: number; set: string; name: string; parameter: string | null; expires: number },
    now: number,
    maxPerAccount: number,
  ): Promise<MeetingCreateResult> {
    const k = key(meeting.accountId, meeting.set, meeting.name);
    return this.db.tx(async (tx): Promise<MeetingCreateResult> => {
      if (!(await tx.row(SQL.lockAccount, [meeting.accountId]))) throw new NotFoundError('account not found');
      if (await tx.row(SQL.live, [...k, now])) return 'exists';
      // An expired meeting of that name is not live, so it does not count here.
      if ((await tx.row<{ n: number }>(SQL.countLive, [meeting.accountId, now]))!.n >= maxPerAccount) return 'limit';
      const parameter = meeting.parameter === null ? null : toText(meeting.parameter);
      await tx.run(SQL.put, [...k, parameter, meeting.expires, now]);
      return 'created';
    });
  }

  async find(accountId: number, set: string, name: string, now: number): Promise<MeetingRecord | undefined> {
    const row = await this.db.row<MeetingRow>(SQL.live, [...key(accountId, set, name), now]);
    return row && toMeeting(row);
  }

  async remove(accountId: number, set: string, name: string): Promise<boolean> {
    return (await this.db.run(SQL.remove, key(accountId, set, name))) > 0;
  }

  async clear(accountId: number, set: string, name: string, now: number): Promise<boolean> {
    return (await this.db.run(SQL.clear, [...key(accountId, set, name), now])) > 0;
  }

  async activate(
    accountId: number,
    set: string,
    name: string,
    task: { handle: string; node: string },
    expires: number,
    now: number,
  ): Promise<MeetingActivateResult> {
    const k = key(accountId, set, name);
    return this.db.tx(async (tx): Promise<MeetingActivateResult> => {
      const row = await tx.row<{ task_handle: string | null; expires: number }>(SQL.lockOne, k);
      if (!row || row.expires <= now) return 'not-found';
      if (row.task_handle !== null) return 'already-activated';
      await tx.run(SQL.activate, [...k, task.handle, task.node, expires]);
      return 'activated';
    });
  }

  async deactivate(accountId: number, set: string, name: string, task: string, now: number): Promise<MeetingDeactivateResult> {
    const k = key(accountId, set, name);
    return this.db.tx(async (tx): Promise<MeetingDeactivateResult> => {
      const row = await tx.row<{ task_handle: string | null; expires: number }>(SQL.lockOne, k);
      if (!row || row.expires <= now) return 'not-found';
      if (row.task_handle !== task) return 'not-activated';
      await tx.run(SQL.deactivate, k);
      return 'deactivated';
    });
  }

  async clearTasks(tasks: readonly string[]): Promise<number> {
    if (tasks.length === 0) return 0;
    return this.db.run(SQL.clearTasks, [[...new Set(tasks)]]);
  }

  async clearNode(node: string): Promise<number> {
    return this.db.run(SQL.clearNode, [node]);
  }

  async list(accountId: number, set: string, now: number): Promise<MeetingRecord[]> {
    return (await this.db.rows<MeetingRow>(SQL.list, [accountId, toText(set), now])).map(toMeeting);
  }

  async sweep(now: number): Promise<number> {
    return this.db.run(SQL.sweep, [now]);
  }
}
