/**
 * Meetings of the real-time applications (src/services/apps/; the XIMSS operations
 * taskCreateMeeting … taskDeactivateMeeting; CG/PL's CreateMeeting … DeactivateMeeting): named
 * rendezvous points through which tasks and XIMSS sessions find each other. Each account has
 * meeting sets ('' is the default set); a meeting is known by (account, set, name), carries an
 * opaque parameter its creator gave, and may be activated by one task at a time, whose handle
 * then travels with it (FindMeeting tells who to send events to).
 *
 * A meeting lives until `expires`; an expired meeting is as if it were not there (find, activate
 * and friends say not-found; create makes a new one in its place) until `sweep` deletes it.
 * An activation belongs to a task on a node: it goes when the task ends (`clearTasks`) or the
 * node dies (`clearNode`), so that a crashed task never leaves a meeting activated for good.
 *
 * Several nodes may act on one meeting at once: each method is one transaction, and activation is
 * conditional (it succeeds only while nobody holds the meeting), so two tasks never both hold it.
 */
export interface MeetingRecord {
  accountId: number;
  /** The meeting set ('' is the default set). */
  set: string;
  name: string;
  /** What the creator gave, as the service encodes it (opaque here); null when nothing. */
  parameter: string | null;
  /** The handle of the task that activated the meeting, null when none holds it. */
  task: string | null;
  /** ms since the epoch: the meeting is there until then (exclusive). */
  expires: number;
  /** ms since the epoch. */
  created: number;
}

export type MeetingCreateResult = 'created' | 'exists' | 'limit';
export type MeetingActivateResult = 'activated' | 'not-found' | 'already-activated';
export type MeetingDeactivateResult = 'deactivated' | 'not-found' | 'not-activated';

export interface MeetingStore {
  /**
   * Creates a meeting, unless a live one of that name is in the set ('exists') or the account
   * has `maxPerAccount` live meetings already ('limit'). An expired one of that name is replaced.
   */
  create(
    meeting: { accountId: number; set: string; name: string; parameter: string | null; expires: number },
    now: number,
    maxPerAccount: number,
  ): Promise<MeetingCreateResult>;
  /** The live meeting, or undefined. */
  find(accountId: number, set: string, name: string, now: number): Promise<MeetingRecord | undefined>;
  /** Deletes the meeting (live or expired); false when there was none. */
  remove(accountId: number, set: string, name: string): Promise<boolean>;
  /** Takes the activation away from whichever task holds it; false when the meeting is not there (or expired). */
  clear(accountId: number, set: string, name: string, now: number): Promise<boolean>;
  /**
   * The task (its handle, and the node that runs it) holds the meeting from now on, and the
   * meeting lives at least until `expires`; refused while another task (or this one) holds it.
   */
  activate(accountId: number, set: string, name: string, task: { handle: string; node: string }, expires: number, now: number): Promise<MeetingActivateResult>;
  /** The task lets the meeting go; 'not-activated' when that task does not hold it. */
  deactivate(accountId: number, set: string, name: string, task: string, now: number): Promise<MeetingDeactivateResult>;
  /** Ends the activations held by these tasks (they ended); how many. */
  clearTasks(tasks: readonly string[]): Promise<number>;
  /** Ends the activations held by the tasks of a node (it died, or restarts); how many. */
  clearNode(node: string): Promise<number>;
  /** The account's live meetings of a set, by name. */
  list(accountId: number, set: string, now: number): Promise<MeetingRecord[]>;
  /** Deletes meetings that expired before `now`; how many. */
  sweep(now: number): Promise<number>;
}

/** A row of the `meetings` table, as both engines define it (times in ms since the epoch). */
export interface MeetingRow {
  account_id: number;
  set_name: string;
  name: string;
  parameter: string | null;
  task_handle: string | null;
  expires: number;
  created: number;
}

/** The columns a MeetingRow is read from. */
export const MEETING_COLUMNS = 'account_id, set_name, name, parameter, task_handle, expires, created';
