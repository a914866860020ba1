/**
 * Conference rooms, a real-time application shipped with the server (src/services/apps/api.ts).
 *
 * A room is a meeting of the account's meeting set `conference` (its name is the room's number
 * or name; `taskCreateMeeting meetingSet="conference" meetingName="4711"` makes one, and so does
 * a `main` task started for a room that does not exist yet). While people are in it, a room task
 * holds the meeting (activated) and mixes their calls.
 *
 * - **By phone**: a call routed to the program (`"program": "conference"` in
 *   calls.applicationRoutes, or a Signal Rule `Redirect to #conference`) joins the room named by
 *   the called address's suffix (`conf-4711@…`, `conference+4711@…`), else the caller is asked
 *   for the number and types it followed by `#`. The room task starts on the first call. In a
 *   cluster, a call naming its room goes to the node of the room's task (`meetingOfCall`); one
 *   that types the number must reach that node, else it hears that the room cannot be joined.
 * - **From a XIMSS client**: `taskFindMeeting meetingSet="conference" meetingName="4711"` gives the
 *   room task's taskRef; `taskSendEvent eventName="subscribe"` to it brings `taskEvent`s:
 *   `participants` (the list: a dictionary per call with `id`, `from`, `muted`), `joined`, `left`,
 *   `speaking` and `silent` (a dictionary with the call's `id` and `from`). The client sends
 *   `list`, `mute`/`unmute`/`kick` (the call's id as the parameter), `announce` (a text spoken to
 *   the room) and `unsubscribe`. It joins the audio by calling the room's address like a phone.
 * - `runScript fileName="conference" name="rooms"` lists the account's rooms (name, active).
 *
 * A room task ends when the room has been empty for five minutes (the first `param` of taskStart
 * is the room, the second the idle seconds); its calls never outlive it.
 */
import { AppError, type AppCall, type Application, type Task, type TaskEvent, type XimssValue } from '../services/apps/api.js';

const SET = 'conference';
const IDLE_SECONDS = 300;
const MAX_IDLE_SECONDS = 3600;
/** A subscription lasts this long after the subscriber's last `subscribe` or `list`: a client that is gone stops being told. */
const SUBSCRIPTION_MS = 3600_000;
/** A room's name: what a caller can type, or what a client gives. */
const ROOM = /^[A-Za-z0-9_.-]{1,64}$/;

/** The room of a called address's suffix (`conf-4711@…`, `conference+4711@…`). */
function roomOfAddress(address: string): string | undefined {
  const user = address.replace(/^(sips?|tel):/i, '').split('@')[0] ?? '';
  const match = /[-+]([A-Za-z0-9_.]{1,64})$/.exec(user);
  return match?.[1];
}

/** The room task for `room`, started here when none holds the room; its handle. */
async function roomTask(task: Task, room: string): Promise<string | undefined> {
  const meeting = await task.meetings.find(SET, room);
  if (!meeting) return undefined;
  if (meeting.task) return meeting.task;
  return task.startTask('conference', 'main', [room]);
}

/** Hands the call to the room's task; a holder that is gone (a task or session that ended) is cleared and a new room task takes it. */
async function joinRoom(task: Task, call: AppCall, room: string, handle: string): Promise<void> {
  try {
    task.handOver(call, handle);
  } catch (err) {
    if (!(err instanceof AppError) || err.message !== 'task not found') throw err;
    await task.meetings.clear(SET, room).catch(() => {});
    task.handOver(call, task.startTask('conference', 'main', [room]));
  }
}

/** A room: its mixer, who is in it, who listens to its events. */
async function runRoom(task: Task): Promise<void> {
  const room = task.parameters[0] ?? '';
  if (!ROOM.test(room)) throw new AppError('a room needs a name (letters, digits, _ . -)');
  const asked = Number(task.parameters[1] ?? IDLE_SECONDS);
  const idleSeconds = Number.isFinite(asked) ? Math.min(MAX_IDLE_SECONDS, Math.max(1, asked)) : IDLE_SECONDS;
  await task.meetings.create(SET, room).catch((err: unknown) => {
    if (!(err instanceof Error && /exists/.test(err.message))) throw err;
  });
  try {
    await task.meetings.activate(SET, room);
  } catch (err) {
    // Another task holds the room (two first callers at once): the calls handed here go there.
    const holder = (await task.meetings.find(SET, room))?.task;
    for (let event = await task.readInput(0); event; event = await task.readInput(0)) {
      if (!event.call) continue;
      try {
        if (!holder) throw new AppError('nobody holds the room');
        task.handOver(event.call, holder);
      } catch {
        event.call.hangup();
      }
    }
    if (!holder) throw err;
    return;
  }
  // The mixer is this task's own: another room task of the same room (after a clear) has its own.
  const mixer = task.mixer(`conference-${room}-${task.handle}`);
  const muted = new Set<string>();
  /** Who listens to the room's events, until when. */
  const subscribers = new Map<string, number>();
  const tell = (name: string, parameter?: XimssValue): void => {
    const now = Date.now();
    for (const [to, until] of subscribers) {
      if (until < now) subscribers.delete(to);
      else void task.sendEvent(to, name, parameter).catch(() => subscribers.delete(to));
    }
  };
  let announcing = false;
  const describe = (call: AppCall): { [key: string]: XimssValue } => ({ id: call.id, from: call.from.address, muted: muted.has(call.id) ? 'yes' : 'no' });
  const participants = (): XimssValue => mixer.calls.map(describe);
  const byId = (id: XimssValue | undefined): AppCall | undefined => mixer.calls.find((c) => c.id === id);
  mixer.onSpeaking((call, speaking) => tell(speaking ? 'speaking' : 'silent', { id: call.id, from: call.from.address }));
  task.log.info('the room is open', { room });

  const join = (call: AppCall): void => {
    if (call.state !== 'connected') return;
    try {
      mixer.join(call, 'duplex');
    } catch (err) {
      // The room is full (or the call went meanwhile): that caller is told, the room goes on.
      task.log.warn('a call could not join the room', { room, error: err instanceof Error ? err.message : String(err) });
      void call.play({ text: 'Sorry, this conference is full.' }).finally(() => call.hangup());
      return;
    }
    void mixer.play({ beep: true }).catch(() => {});
    tell('joined', describe(call));
    void call.ended.then(() => {
      muted.delete(call.id);
      tell('left', { id: call.id, from: call.from.address });
      // An empty room wakes its task, which starts counting the idle time.
      if (mixer.calls.length === 0) void task.sendEvent(task.handle, 'empty').catch(() => {});
    });
  };

  for (;;) {
    const event: TaskEvent | undefined = await task.readInput(mixer.calls.length === 0 ? idleSeconds : undefined);
    if (!event) {
      if (task.signal.aborted || mixer.calls.length === 0) break;
      continue;
    }
    switch (event.name) {
      case 'call':
        if (event.call) join(event.call);
        break;
      case 'subscribe':
        if (event.from) {
          subscribers.set(event.from, Date.now() + SUBSCRIPTION_MS);
          await task.sendEvent(event.from, 'participants', participants()).catch(() => subscribers.delete(event.from!));
        }
        break;
      case 'unsubscribe':
        if (event.from) subscribers.delete(event.from);
        break;
      case 'list':
        if (event.from) {
          if (subscribers.has(event.from)) subscribers.set(event.from, Date.now() + SUBSCRIPTION_MS);
          await task.sendEvent(event.from, 'participants', participants()).catch(() => {});
        }
        break;
      case 'mute':
      case 'unmute': {
        const call = byId(event.parameter);
        if (!call || call.state !== 'connected') break;
        if (event.name === 'mute') muted.add(call.id);
        else muted.delete(call.id);
        mixer.join(call, event.name === 'mute' ? 'recv' : 'duplex');
        tell(event.name === 'mute' ? 'muted' : 'unmuted', describe(call));
        break;
      }
      case 'kick':
        byId(event.parameter)?.hangup();
        break;
      case 'announce':
        // One announcement at a time: text-to-speech is shared by the whole server.
        if (!announcing && typeof event.parameter === 'string' && event.parameter.trim() !== '') {
          announcing = true;
          void mixer
            .play({ text: event.parameter.slice(0, 1000) })
            .catch(() => {})
            .finally(() => (announcing = false));
        }
        break;
      case 'close':
        for (const call of mixer.calls) call.hangup();
        tell('closed');
        return;
      default:
        break;
    }
  }
  tell('closed');
  task.log.info('the room closed', { room });
}

/** A caller: answered, asked for the room when the address does not name it, handed to the room task. */
async function runCaller(task: Task): Promise<void> {
  const call = task.call;
  if (!call) return;
  // A caller who hung up before the answer leaves nothing to join.
  if (!(await call.answer())) return;
  let room = roomOfAddress(call.to.address);
  for (let attempt = 0; attempt < 3 && call.state === 'connected'; attempt++) {
    if (room === undefined) {
      await call.play({ text: 'Please enter the conference number, followed by the pound key.' }, { bargeIn: true });
      room = await call.collectDigits({ max: 12, firstSeconds: 10, nextSeconds: 5 });
    }
    const handle = room !== '' && ROOM.test(room) ? await roomTask(task, room) : undefined;
    if (handle) {
      try {
        await joinRoom(task, call, room!, handle);
        return;
      } catch (err) {
        task.log.warn('the call could not join its room', { room, error: err instanceof Error ? err.message : String(err) });
        await call.play({ text: 'The conference cannot be joined on this server right now.' });
        break;
      }
    }
    await call.play({ text: 'There is no conference with that number.' });
    room = undefined;
  }
  call.hangup();
}

const conference: Application = {
  entries: {
    main: runRoom,
    call: runCaller,
  },
  // A call to conf-<room> starts on the node of the room's task, which it is handed to.
  meetingOfCall: (called) => {
    const room = roomOfAddress(called);
    return room === undefined ? undefined : { set: SET, name: room };
  },
  scripts: {
    /** The account's rooms: a dictionary per room with `name` and `active` (yes when someone is in it). */
    async rooms(context) {
      const rooms = await context.meetings.list(SET);
      return rooms.map((m) => ({ name: m.name, active: m.task ? 'yes' : 'no' }));
    },
  },
};

export default conference;
