import type { MeetingRecord, MeetingStore } from '../../store/meetings.js';
import { valueSize, type XimssValue } from '../../xml/objects.js';
import { AppError, type Meeting, type Meetings } from './api.js';
import { decodeValue, encodeValue } from './values.js';

export interface MeetingLimits {
  /** How long a meeting lives after it is created or last activated, seconds. */
  lifetimeSeconds: number;
  /** Live meetings per account. */
  perAccount: number;
}

/** The largest meeting parameter (its XML presentation's size, roughly). */
export const MEETING_PARAMETER_BYTES = 16 * 1024;
/** Set names and meeting names: at most this many characters. */
const NAME_CHARS = 256;

/** The errors clients match (../shared/INTEROP.md "Error texts clients match"). */
export const MEETING_NOT_FOUND = 'meeting not found';
export const MEETING_ACTIVATED = 'meeting is already activated';

/**
 * The meetings of the real-time applications (src/store/meetings.ts holds them, for every node):
 * created, found, activated by a task (or a XIMSS session, which is a task to the others),
 * deactivated, cleared and removed, with the errors XIMSS clients know. Every decision that
 * depends on what is stored (exists, held by whom) is the store's, in one transaction.
 */
export class MeetingService {
  constructor(
    private readonly store: MeetingStore,
    private readonly limits: MeetingLimits,
    /** The node tasks of this process run on (activations are cleared when it dies). */
    private readonly node: string,
  ) {}

  /** The meetings API of one account, acting as task `task` (activate, deactivate). */
  of(accountId: number, task: () => string): Meetings {
    return {
      create: (set, name, parameter) => this.create(accountId, set, name, parameter),
      find: (set, name) => this.find(accountId, set, name),
      remove: (set, name) => this.remove(accountId, set, name),
      clear: (set, name) => this.clear(accountId, set, name),
      activate: (set, name) => this.activate(accountId, set, name, task()),
      deactivate: (set, name) => this.deactivate(accountId, set, name, task()),
      list: async (set) => (await this.store.list(accountId, checkName(set, 'meeting set'), Date.now())).map(meetingOf),
    };
  }

  async create(accountId: number, set: string, name: string, parameter?: XimssValue): Promise<void> {
    if (parameter !== undefined && valueSize(parameter) > MEETING_PARAMETER_BYTES) throw new AppError(`a meeting parameter takes at most ${MEETING_PARAMETER_BYTES} bytes`);
    const now = Date.now();
    const result = await this.store.create(
      { accountId, set: checkName(set, 'meeting set'), name: checkMeetingName(name), parameter: parameter === undefined ? null : JSON.stringify(encodeValue(parameter)), expires: now + this.limits.lifetimeSeconds * 1000 },
      now,
      this.limits.perAccount,
    );
    if (result === 'exists') throw new AppError('meeting already exists');
    if (result === 'limit') throw new AppError(`an account may have ${this.limits.perAccount} meetings`);
  }

  async find(accountId: number, set: string, name: string): Promise<Meeting | undefined> {
    const record = await this.store.find(accountId, checkName(set, 'meeting set'), checkMeetingName(name), Date.now());
    return record && meetingOf(record);
  }

  async remove(accountId: number, set: string, name: string): Promise<void> {
    if (!(await this.store.remove(accountId, checkName(set, 'meeting set'), checkMeetingName(name)))) throw new AppError(MEETING_NOT_FOUND);
  }

  async clear(accountId: number, set: string, name: string): Promise<void> {
    if (!(await this.store.clear(accountId, checkName(set, 'meeting set'), checkMeetingName(name), Date.now()))) throw new AppError(MEETING_NOT_FOUND);
  }

  async activate(accountId: number, set: string, name: string, task: string): Promise<void> {
    const now = Date.now();
    const result = await this.store.activate(accountId, checkName(set, 'meeting set'), checkMeetingName(name), { handle: task, node: this.node }, now + this.limits.lifetimeSeconds * 1000, now);
    if (result === 'not-found') throw new AppError(MEETING_NOT_FOUND);
    if (result === 'already-activated') throw new AppError(MEETING_ACTIVATED);
  }

  async deactivate(accountId: number, set: string, name: string, task: string): Promise<void> {
    const result = await this.store.deactivate(accountId, checkName(set, 'meeting set'), checkMeetingName(name), task, Date.now());
    if (result === 'not-found') throw new AppError(MEETING_NOT_FOUND);
    if (result === 'not-activated') throw new AppError('meeting is not activated by this task');
  }

  /** Tasks (or sessions) ended: the meetings they held are free. */
  tasksEnded(handles: readonly string[]): Promise<number> {
    return handles.length === 0 ? Promise.resolve(0) : this.store.clearTasks(handles);
  }

  /** A node died (or this one starts again): the meetings its tasks held are free. */
  nodeGone(node: string): Promise<number> {
    return this.store.clearNode(node);
  }

  sweep(): Promise<number> {
    return this.store.sweep(Date.now());
  }
}

function meetingOf(record: MeetingRecord): Meeting {
  return {
    set: record.set,
    name: record.name,
    parameter: record.parameter === null ? undefined : decodeValue(JSON.parse(record.parameter) as unknown),
    task: record.task ?? undefined,
    expires: new Date(record.expires),
  };
}

function checkName(value: string, what: string): string {
  if (value.length > NAME_CHARS) throw new AppError(`a ${what} name has at most ${NAME_CHARS} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new AppError(`a ${what} name has no control characters`);
  return value;
}

function checkMeetingName(name: string): string {
  if (name === '') throw new AppError('a meeting needs a name');
  return checkName(name, 'meeting');
}
