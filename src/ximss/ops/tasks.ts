import type { TaskEvent } from '../../services/apps/api.js';
import type { AppService } from '../../services/apps/service.js';
import { ServiceError } from '../../services/errors.js';
import { el, type XmlElement } from '../../xml/element.js';
import { appendValue, readValue, type XimssValue } from '../../xml/objects.js';
import { formatGmt } from '../../xml/time.js';
import { inSession, requiredAttr, type OperationTable, type SessionContext } from '../engine.js';
import type { Session } from '../session.js';

/**
 * Spec sections "Real-Time Application Management" (tasks, events, meetings) and the Russian
 * text's "Scripts" (runScript) and "Helpers" (callHelper), over the applications service
 * (src/services/apps/, whose api.ts says what an application is).
 *
 * A session is a task to the others: it has a handle, which tasks send events to (`taskEvent`)
 * and which meetings it activates hold. It knows the tasks it talks to by session-local
 * taskRef strings, given in order ("1", "2", …) as a task is started, found through a meeting,
 * or heard from; taskClose forgets one, and the same task heard again gets a new taskRef.
 */

/** Task refs one session keeps; past this the oldest is forgotten. */
const TASK_REFS = 1000;

/** The session's task handles (its own, and the refs of the tasks it talks to). */
export class SessionTasks {
  private next = 1;
  private readonly byRef = new Map<string, string>();
  private readonly byHandle = new Map<string, string>();
  private readonly inbox: { handle: string; close: () => void };

  constructor(apps: AppService, session: Session) {
    this.inbox = apps.openInbox(session.account.id, (event) => this.heard(session, event));
    // A session that ended while its request ran has run its end hooks already.
    if (session.closed) this.inbox.close();
    else session.onEnd(() => this.inbox.close());
  }

  /** The session's own handle (what tasks send events to). */
  get handle(): string {
    return this.inbox.handle;
  }

  /** The taskRef of a handle, given now if the session had none for it. */
  refOf(handle: string): string {
    const known = this.byHandle.get(handle);
    if (known !== undefined) return known;
    if (this.byRef.size >= TASK_REFS) this.close(this.byRef.keys().next().value!);
    const ref = String(this.next++);
    this.byRef.set(ref, handle);
    this.byHandle.set(handle, ref);
    return ref;
  }

  handleOf(ref: string): string {
    const handle = this.byRef.get(ref);
    if (handle === undefined) throw new ServiceError('unknown taskRef');
    return handle;
  }

  close(ref: string): void {
    const handle = this.handleOf(ref);
    this.byRef.delete(ref);
    this.byHandle.delete(handle);
  }

  private heard(session: Session, event: TaskEvent): void {
    if (session.closed) return;
    const attrs: Record<string, string> = { eventName: event.name };
    if (event.from !== undefined) attrs.taskRef = this.refOf(event.from);
    const message = el('taskEvent', attrs);
    if (event.parameter !== undefined) appendValue(message, event.parameter);
    session.sendAsync(message);
  }
}

function tasksOf(ctx: SessionContext): SessionTasks {
  return (ctx.session.tasks ??= new SessionTasks(ctx.server.apps, ctx.session));
}

/** The parameter a request's body carries: text or an object's XML presentation; none when empty. */
function bodyValue(request: XmlElement): XimssValue | undefined {
  let value: XimssValue;
  try {
    value = readValue(request);
  } catch (err) {
    throw new ServiceError(`the request body is not an object: ${err instanceof Error ? err.message : String(err)}`);
  }
  return value === '' ? undefined : value;
}

/** The meeting set and name of a meeting operation (the set '' is the default set). */
function meetingOf(request: XmlElement): { set: string; name: string } {
  return { set: request.attrs.meetingSet ?? '', name: requiredAttr(request, 'meetingName') };
}

export const taskOperations: OperationTable = {
  taskStart: inSession((ctx) => {
    const program = requiredAttr(ctx.request, 'programName');
    const entry = ctx.request.attrs.entryName || undefined;
    const parameters = ctx.request.elements().filter((e) => e.name === 'param').map((e) => e.text());
    const tasks = tasksOf(ctx);
    const handle = ctx.server.apps.startTask(program, entry, ctx.session.account, parameters, tasks.handle);
    ctx.send(el('taskCreated', { taskRef: tasks.refOf(handle) }));
  }),

  taskSendEvent: inSession(async (ctx) => {
    const tasks = tasksOf(ctx);
    const to = tasks.handleOf(requiredAttr(ctx.request, 'taskRef'));
    const name = requiredAttr(ctx.request, 'eventName');
    await ctx.server.apps.sendEvent(tasks.handle, to, name, bodyValue(ctx.request));
  }),

  taskClose: inSession((ctx) => {
    tasksOf(ctx).close(requiredAttr(ctx.request, 'taskRef'));
  }),

  taskFindMeeting: inSession(async (ctx) => {
    const { set, name } = meetingOf(ctx.request);
    const meeting = await ctx.server.apps.meetings.find(ctx.session.account.id, set, name);
    if (!meeting) throw new ServiceError('meeting not found');
    const attrs: Record<string, string> = { meetingSet: set, meetingName: name, expires: formatGmt(meeting.expires) };
    if (meeting.task !== undefined) attrs.taskRef = tasksOf(ctx).refOf(meeting.task);
    const message = el('taskMeeting', attrs);
    if (meeting.parameter !== undefined) appendValue(message, meeting.parameter);
    ctx.send(message);
  }),

  taskCreateMeeting: inSession(async (ctx) => {
    const { set, name } = meetingOf(ctx.request);
    await ctx.server.apps.meetings.create(ctx.session.account.id, set, name, bodyValue(ctx.request));
  }),

  taskRemoveMeeting: inSession(async (ctx) => {
    const { set, name } = meetingOf(ctx.request);
    await ctx.server.apps.meetings.remove(ctx.session.account.id, set, name);
  }),

  taskClearMeeting: inSession(async (ctx) => {
    const { set, name } = meetingOf(ctx.request);
    await ctx.server.apps.meetings.clear(ctx.session.account.id, set, name);
  }),

  taskActivateMeeting: inSession(async (ctx) => {
    const { set, name } = meetingOf(ctx.request);
    const handle = tasksOf(ctx).handle;
    await ctx.server.apps.meetings.activate(ctx.session.account.id, set, name, handle);
    // The session ended while the store activated it (its meetings were freed before): let it go.
    if (ctx.session.closed) await ctx.server.apps.meetings.deactivate(ctx.session.account.id, set, name, handle).catch(() => {});
  }),

  taskDeactivateMeeting: inSession(async (ctx) => {
    const { set, name } = meetingOf(ctx.request);
    const handle = tasksOf(ctx).handle;
    await ctx.server.apps.meetings.deactivate(ctx.session.account.id, set, name, handle);
  }),

  runScript: inSession(async (ctx) => {
    const fileName = requiredAttr(ctx.request, 'fileName');
    const result = await ctx.server.apps.runScript(ctx.session.account, fileName, ctx.request.attrs.name || undefined, bodyValue(ctx.request));
    if (result !== undefined) ctx.send(appendValue(el('scriptResult'), result));
  }),

  callHelper: inSession(async (ctx) => {
    const name = requiredAttr(ctx.request, 'name');
    // `mode` names the cluster member running the helper: every node runs every helper here.
    const result = await ctx.server.apps.callHelper(ctx.session.account, name, bodyValue(ctx.request));
    if (result !== undefined) ctx.send(appendValue(el('helperReply', { name }), result));
  }),
};
