import MailComposer from 'nodemailer/lib/mail-composer';
import type { BusEvents, EventBus } from '../../bus/bus.js';
import { errorText, type Logger } from '../../log.js';
import type { PromptRenderer } from '../../media/prompts.js';
import type { Metrics } from '../../metrics.js';
import type { AccountRecord, SharedStateStore } from '../../store/store.js';
import { fitsRelay, keepForRelay, keptForRelay } from '../../bus/kept.js';
import type { MeetingStore } from '../../store/meetings.js';
import { valueSize, type XimssValue } from '../../xml/objects.js';
import type { AccountService } from '../accounts.js';
import { MediaParty, type MediaPartyEvents, type PartyMedia } from '../calls/media-party.js';
import type { PortAddress } from '../calls/router.js';
import { CallRefused, type CallService } from '../calls/service.js';
import type { CallTarget, Signal } from '../calls/signal.js';
import { randomId } from '../ids.js';
import { AppError, type AppAccount, type AppCall, type AppLogger, type Application, type AppMixer, type MailToDeliver, type Task, type TaskEvent } from './api.js';
import { TaskCall } from './app-call.js';
import { loadApplications } from './loader.js';
import { MeetingService, type MeetingLimits } from './meetings.js';
import { TaskMixer } from './task-mixer.js';
import { decodeValue, encodeValue } from './values.js';

export interface AppServiceDeps {
  meetings: MeetingStore;
  /** Where events too large for the bus wait for their node. */
  shared: SharedStateStore;
  bus: EventBus;
  accounts: AccountService;
  calls: CallService;
  /** Delivers a message to a local account through its Mail Rules (voicemail). */
  deliver: (account: AccountRecord, raw: Buffer, sender: string) => Promise<void>;
  /** The media end of each call a task takes part in. */
  openMedia: (id: string) => PartyMedia;
  renderer: PromptRenderer;
  node: string;
  /** Whether a node of the cluster is alive (a call goes to the node of its meeting's holder only then). */
  isAlive: (node: string) => Promise<boolean>;
  log: Logger;
  metrics?: Metrics;
}

export interface AppOptions {
  /** Where application modules are loaded from, in order (a later one replaces a program of the same name). */
  directories: readonly string[];
  tasksPerAccount: number;
  tasksPerNode: number;
  meetings: MeetingLimits;
}

/** Events waiting to be read by one task, and their bytes: past either, new ones are dropped (and logged). */
const INBOX_EVENTS = 1000;
const INBOX_BYTES = 1024 * 1024;
/** The largest event parameter (its XML presentation's size, roughly). */
export const EVENT_PARAMETER_BYTES = 64 * 1024;
/** The longest a dial rings, and the longest readInput waits with a timeout (under setTimeout's 24.8 days), seconds. */
const MAX_DIAL_SECONDS = 3600;
const MAX_WAIT_SECONDS = 2_000_000;
/** How long a script or helper may take, ms. */
const SCRIPT_MS = 30_000;
/** How often expired meetings are deleted, ms. */
const SWEEP_MS = 3600_000;

/** Whoever events can be sent to here: a task, or a XIMSS session (which is a task to the others). */
interface Endpoint {
  readonly accountId: number;
  deliver(event: TaskEvent): void;
}

/**
 * Real-time applications (api.ts describes them): loads the programs, runs their tasks, carries
 * events between tasks and XIMSS sessions on every node (bus topic `taskEvent`), keeps meetings
 * (MeetingService, in the store), and starts a task for each call routed to a program.
 */
export class AppService {
  private programs = new Map<string, Application>();
  private helpers = new Map<string, { program: string; helper: NonNullable<Application['helpers']>[string] }>();
  private readonly endpoints = new Map<string, Endpoint>();
  /** Per endpoint, the delivery of the last event of another node (the next waits for it). */
  private readonly arriving = new Map<string, Promise<void>>();
  private readonly tasks = new Map<string, RunningTask>();
  /** Tasks sessions and other tasks started (not those of calls), per account. */
  private readonly startedPerAccount = new Map<number, number>();
  private readonly mixers = new Map<string, TaskMixer>();
  readonly meetings: MeetingService;
  private readonly unsubscribe: (() => void)[];
  private readonly sweeper: NodeJS.Timeout;
  private readonly stopping = new AbortController();

  constructor(
    private readonly deps: AppServiceDeps,
    private readonly options: AppOptions,
  ) {
    this.meetings = new MeetingService(deps.meetings, options.meetings, deps.node);
    this.unsubscribe = [deps.bus.on('taskEvent', (event, remote) => remote && this.heard(event))];
    deps.calls.usePrograms((account, program, called) => this.nodeForCall(account.id, program, called));
    deps.calls.onTarget(
      'app',
      (target, invite, replyTo) => this.offer(target.accountId, target.program, invite, replyTo),
      (target) => ({ accountId: target.accountId }),
    );
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_MS);
    this.sweeper.unref();
    deps.metrics?.gauge('ximssd_app_tasks', 'Tasks of real-time applications running on this node', [], (set) => set({}, this.tasks.size));
  }

  /** Loads the programs, and frees the meetings this node's tasks held before it (re)started. */
  async start(): Promise<void> {
    const loaded = await loadApplications(this.options.directories, this.deps.log);
    this.programs = loaded.programs;
    this.helpers = loaded.helpers;
    await this.meetings.nodeGone(this.deps.node).catch((err: unknown) => this.deps.log.error({ event: 'apps.meetings_failed', error: errorText(err) }, 'meetings of an earlier run could not be freed'));
  }

  /** Stops every task (server shutdown): their waits end, their calls hang up. */
  async close(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.sweeper);
    for (const off of this.unsubscribe) off();
    for (const task of [...this.tasks.values()]) task.stop();
    for (const mixer of [...this.mixers.values()]) mixer.close();
    await this.meetings.nodeGone(this.deps.node).catch(() => {});
  }

  get programNames(): string[] {
    return [...this.programs.keys()].sort();
  }

  get running(): number {
    return this.tasks.size;
  }

  /** A node is gone: the meetings its tasks held are free (a failure is thrown: the node is tried again). */
  async nodeGone(node: string): Promise<void> {
    const freed = await this.meetings.nodeGone(node);
    if (freed > 0) this.deps.log.info({ event: 'apps.meetings_freed', node, meetings: freed }, 'meetings held by the tasks of a node that is gone are free');
  }

  // --- tasks ---

  /** Starts a task of `program` at `entry` for the account (XIMSS taskStart); its handle. */
  startTask(program: string, entry: string | undefined, account: AccountRecord, parameters: readonly string[], starter?: string): string {
    const app = this.programs.get(program);
    if (!app) throw new AppError(`unknown application: ${program}`);
    const name = entry ?? 'main';
    const run = Object.hasOwn(app.entries, name) ? app.entries[name] : undefined;
    if (!run) throw new AppError(`the application ${program} has no entry ${name}`);
    return this.run(program, name, run, account, { parameters, starter }).handle;
  }

  private run(program: string, entry: string, body: (task: Task) => Promise<void>, account: AccountRecord, start: { parameters?: readonly string[]; starter?: string; call?: TaskCall }): RunningTask {
    this.checkRoom(account.id, start.call !== undefined);
    const handle = `${this.deps.node}~${randomId(16)}`;
    const task = new RunningTask(this, handle, program, entry, account, start.parameters ?? [], start.starter, start.call, this.taskLog(program, handle), this.stopping.signal);
    this.tasks.set(handle, task);
    this.endpoints.set(handle, task);
    if (!start.call) this.startedPerAccount.set(account.id, (this.startedPerAccount.get(account.id) ?? 0) + 1);
    if (start.call) {
      start.call.driver = handle;
      task.own(start.call);
    }
    this.deps.log.info({ event: 'apps.task_started', program, entry, task: handle, account: task.account.address }, 'a task started');
    void Promise.resolve()
      .then(() => body(task))
      .then(
        () => this.ended(task, undefined),
        (err: unknown) => this.ended(task, err),
      );
    return task;
  }

  /**
   * Whether a task may start: within the node's tasks, and the account's for tasks its users
   * start; a tenth of the node's tasks is kept for calls (whose tasks the call limits bound), so
   * that tasks started by sessions cannot keep voicemail from answering.
   */
  private checkRoom(accountId: number, forCall = false): void {
    if (this.stopping.signal.aborted) throw new AppError('the server is stopping');
    const reserved = forCall ? 0 : Math.ceil(this.options.tasksPerNode / 10);
    if (this.tasks.size >= this.options.tasksPerNode - reserved) throw new AppError('the server runs as many tasks as it may');
    if (!forCall && (this.startedPerAccount.get(accountId) ?? 0) >= this.options.tasksPerAccount) throw new AppError(`an account may run ${this.options.tasksPerAccount} tasks at once`);
  }

  private ended(task: RunningTask, error: unknown): void {
    if (!this.tasks.delete(task.handle)) return;
    this.endpoints.delete(task.handle);
    if (!task.forCall) {
      const left = (this.startedPerAccount.get(task.account.id) ?? 1) - 1;
      if (left <= 0) this.startedPerAccount.delete(task.account.id);
      else this.startedPerAccount.set(task.account.id, left);
    }
    task.finish();
    void this.meetings.tasksEnded([task.handle]).catch((err: unknown) => this.deps.log.error({ event: 'apps.meetings_failed', task: task.handle, error: errorText(err) }, "a task's meetings could not be freed"));
    if (error === undefined) this.deps.log.info({ event: 'apps.task_ended', program: task.program, task: task.handle }, 'a task ended');
    else this.deps.log.error({ event: 'apps.task_failed', program: task.program, task: task.handle, error: errorText(error) }, 'a task failed');
  }

  private taskLog(program: string, task: string): AppLogger {
    const log = this.deps.log.child({ program, task });
    return {
      info: (message, fields) => log.info({ event: 'apps.log', ...fields }, message),
      warn: (message, fields) => log.warn({ event: 'apps.log', ...fields }, message),
      error: (message, fields) => log.error({ event: 'apps.log', ...fields }, message),
    };
  }

  // --- events ---

  /**
   * Somewhere events for `handle` arrive (a XIMSS session): until `close`. Events of other nodes
   * for it come over the bus.
   */
  openInbox(accountId: number, deliver: (event: TaskEvent) => void): { handle: string; close: () => void } {
    const handle = `${this.deps.node}~${randomId(16)}`;
    this.endpoints.set(handle, { accountId, deliver });
    return {
      handle,
      close: () => {
        if (!this.endpoints.delete(handle)) return;
        void this.meetings.tasksEnded([handle]).catch(() => {});
      },
    };
  }

  /**
   * Sends an event to a task or session, here or on another node; AppError when the handle is
   * not one (or is of this node and gone). An event for another node is published: whether its
   * task is still there is not known here.
   */
  async sendEvent(from: string | undefined, to: string, name: string, parameter?: XimssValue): Promise<void> {
    checkEventName(name);
    if (parameter !== undefined && valueSize(parameter) > EVENT_PARAMETER_BYTES) throw new AppError(`an event parameter takes at most ${EVENT_PARAMETER_BYTES} bytes`);
    const node = nodeOf(to);
    if (node === undefined) throw new AppError('task not found');
    const local = this.endpoints.get(to);
    if (local) {
      // Delivered after the sender goes on, as if it had travelled.
      queueMicrotask(() => this.deliverSafely(local, { name, ...(parameter !== undefined && { parameter }), ...(from !== undefined && { from }) }));
      return;
    }
    if (node === this.deps.node) throw new AppError('task not found');
    const event = { to, name, ...(from !== undefined && { from }), ...(parameter !== undefined && { parameter: encodeValue(parameter) }) };
    const json = JSON.stringify(event);
    // A large event waits in the shared state (bus/kept.ts).
    if (fitsRelay(json, 200)) return this.deps.bus.publish('taskEvent', event);
    this.deps.bus.publish('taskEvent', { to, key: await keepForRelay(this.deps.shared, 'task-event', json) });
  }

  /**
   * An event of another node for a task or session here. Events for one endpoint are delivered in
   * the order they came, even when one of them first has to be read from the shared state.
   */
  private heard(event: BusEvents['taskEvent']): void {
    if (!this.endpoints.has(event.to)) return;
    const previous = this.arriving.get(event.to) ?? Promise.resolve();
    const next = previous
      .then(async () => {
        let whole: BusEvents['taskEvent'] = event;
        if (event.key !== undefined) {
          const kept = await keptForRelay(this.deps.shared, 'task-event', event.key);
          if (kept === undefined) return;
          whole = JSON.parse(kept) as BusEvents['taskEvent'];
        }
        const endpoint = this.endpoints.get(event.to);
        if (!endpoint || typeof whole.name !== 'string') return;
        this.deliverSafely(endpoint, { name: whole.name, ...(typeof whole.from === 'string' && { from: whole.from }), ...(whole.parameter !== undefined && { parameter: decodeValue(whole.parameter) }) });
      })
      .catch((err: unknown) => this.deps.log.warn({ event: 'apps.event_lost', to: event.to, error: errorText(err) }, 'an event from another node could not be delivered'));
    this.arriving.set(event.to, next);
    void next.then(() => {
      if (this.arriving.get(event.to) === next) this.arriving.delete(event.to);
    });
  }

  private deliverSafely(endpoint: Endpoint, event: TaskEvent): void {
    try {
      endpoint.deliver(event);
    } catch (err) {
      this.deps.log.error({ event: 'apps.event_lost', error: errorText(err) }, 'an event could not be delivered');
    }
  }

  /** Hands a task's call to another task of this node (see Task.handOver). */
  handOver(from: RunningTask, call: TaskCall, to: string, parameter?: XimssValue): void {
    const target = this.tasks.get(to);
    if (!target) throw new AppError(nodeOf(to) === this.deps.node || nodeOf(to) === undefined ? 'task not found' : 'the task runs on another node: a call is handed over on its own node only');
    if (!from.owns(call)) throw new AppError('the call is not this task\'s');
    if (call.state === 'ended') throw new AppError('the call is over');
    if (target.account.id !== from.account.id) throw new AppError('a call is handed over to a task of the same account only');
    if (parameter !== undefined && valueSize(parameter) > EVENT_PARAMETER_BYTES) throw new AppError(`an event parameter takes at most ${EVENT_PARAMETER_BYTES} bytes`);
    from.disown(call);
    target.own(call);
    call.driver = to;
    target.deliver({ name: 'call', call, from: from.handle, ...(parameter !== undefined && { parameter }) });
  }

  // --- calls ---

  /**
   * Where a call for a program starts its task: the node of the task holding the meeting the
   * program names for the address (Application.meetingOfCall), else this one.
   */
  private async nodeForCall(accountId: number, program: string, called: string): Promise<CallTarget | undefined> {
    const app = this.programs.get(program);
    if (!app) return undefined;
    let node = this.deps.node;
    try {
      const meeting = app.meetingOfCall?.(called);
      const holder = meeting && (await this.meetings.find(accountId, meeting.set, meeting.name))?.task;
      const holderNode = holder === undefined ? undefined : nodeOf(holder);
      if (holderNode !== undefined && holderNode !== node && (await this.deps.isAlive(holderNode))) node = holderNode;
    } catch (err) {
      this.deps.log.warn({ event: 'apps.placement_failed', program, error: errorText(err) }, 'the node of a call to an application could not be chosen; this one takes it');
    }
    return { kind: 'app', node, accountId, program };
  }

  /** A call for a program: a task of its `call` entry (else `main`) starts with it. */
  private offer(accountId: number, program: string, invite: Extract<Signal, { kind: 'invite' }>, replyTo: PortAddress): MediaParty | undefined {
    const app = this.programs.get(program);
    const body = app && (app.entries.call ?? app.entries.main);
    if (!app || !body) {
      this.deps.log.warn({ event: 'apps.call_refused', program, reason: 'not installed' }, 'a call for an application that is not installed');
      return undefined;
    }
    try {
      this.checkRoom(accountId, true);
    } catch (err) {
      this.deps.log.warn({ event: 'apps.call_refused', program, reason: errorText(err) }, 'a call for an application was refused');
      return undefined;
    }
    const call = this.newCall(accountId, invite.from, invite.to, '', { peer: replyTo, sdp: invite.sdp });
    void this.deps.accounts.getById(accountId).then((account) => {
      if (!account) throw new Error('the account is gone');
      this.run(program, app.entries.call ? 'call' : 'main', body, account, { call });
    }).catch((err: unknown) => {
      this.deps.log.warn({ event: 'apps.call_refused', program, reason: errorText(err) }, 'a call for an application was refused');
      call.reject(503, 'the application could not start');
    });
    return call.media;
  }

  /** A call of a task: its leg in the call engine and what the task drives. */
  newCall(accountId: number, from: { address: string; name?: string }, to: { address: string; name?: string }, driver: string, incoming?: { peer: PortAddress; sdp: string | undefined }): TaskCall {
    const id = randomId(12).toLowerCase();
    const call = new TaskCall(id, from, to, driver, this.deps.renderer);
    const events: MediaPartyEvents = {
      ringing: () => {},
      answered: () => call.answeredByPeer(),
      ended: (_party, reason, code) => call.over(reason, code),
    };
    call.attach(new MediaParty(this.deps.calls.router, id, accountId, from, to, () => this.deps.openMedia(`app-${id}`), events, incoming));
    return call;
  }

  /** Places a call for a task; resolves once answered. */
  async dial(task: RunningTask, to: string, timeoutSeconds: number): Promise<TaskCall> {
    const from = { address: task.account.address };
    const call = this.newCall(task.account.id, from, { address: to }, task.handle);
    task.own(call);
    const answered = new Promise<void>((resolve, reject) => (call.dialed = { resolve, reject }));
    // Awaited below; abandoned (its rejection expected) when the call cannot be placed.
    answered.catch(() => {});
    let sdp: string;
    try {
      sdp = await call.media.dialOffer();
    } catch (err) {
      call.hangup();
      throw new AppError(`no media for the call: ${errorText(err)}`);
    }
    try {
      const placed = this.deps.calls.place({ from, to, sdp, caller: call.media.address, accountId: task.account.id });
      call.media.dialed(placed.address);
    } catch (err) {
      call.hangup();
      throw new AppError(err instanceof CallRefused ? err.message : `the call could not be placed: ${errorText(err)}`);
    }
    const timer = setTimeout(() => call.media.timeout(), clampSeconds(timeoutSeconds, 1, MAX_DIAL_SECONDS) * 1000);
    try {
      await answered;
    } finally {
      clearTimeout(timer);
    }
    return call;
  }

  /** The mixer of this node by account and name; a new one is closed when its maker ends. */
  mixer(task: RunningTask, name: string): AppMixer {
    if (name === '' || name.length > 256) throw new AppError('a mixer needs a name of 1 to 256 characters');
    const key = `${task.account.id}\u0000${name.toLowerCase()}`;
    let mixer = this.mixers.get(key);
    if (!mixer) {
      mixer = new TaskMixer(name, this.deps.renderer, (gone) => this.mixers.get(key) === gone && this.mixers.delete(key));
      this.mixers.set(key, mixer);
      task.made(mixer);
    }
    return mixer;
  }

  // --- mail ---

  async deliverMail(account: AppAccount, message: MailToDeliver): Promise<void> {
    const record = await this.deps.accounts.getById(account.id);
    if (!record) throw new AppError('the account is gone');
    const raw = await new MailComposer({
      from: message.from,
      to: account.address,
      subject: message.subject,
      text: message.text,
      headers: message.headers ?? {},
      attachments: (message.attachments ?? []).map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
    })
      .compile()
      .build();
    // The null reverse path: the From is what a caller claimed, and no rule's reply should go there.
    await this.deps.deliver(record, raw, '');
  }

  // --- scripts and helpers ---

  async runScript(account: AccountRecord, fileName: string, entry: string | undefined, parameter: XimssValue | undefined): Promise<XimssValue | undefined> {
    const program = fileName.replace(/\.scgp$/i, '');
    const app = this.programs.get(program);
    if (!app) throw new AppError(`unknown script: ${fileName}`);
    const name = entry ?? 'main';
    const script = app.scripts && Object.hasOwn(app.scripts, name) ? app.scripts[name] : undefined;
    if (!script) throw new AppError(`the script ${program} has no entry ${name}`);
    return this.bounded(`script ${program}`, script(this.scriptContext(account, program), parameter));
  }

  async callHelper(account: AccountRecord, name: string, parameter: XimssValue | undefined): Promise<XimssValue | undefined> {
    const known = this.helpers.get(name);
    if (!known) throw new AppError(`unknown helper: ${name}`);
    return this.bounded(`helper ${name}`, known.helper(this.scriptContext(account, known.program), parameter));
  }

  private scriptContext(account: AccountRecord, program: string): Parameters<NonNullable<Application['helpers']>[string]>[0] {
    const handle = `${this.deps.node}~script`;
    return {
      account: appAccount(account),
      meetings: this.meetings.of(account.id, () => {
        throw new AppError('a script is not a task: it cannot activate meetings');
      }),
      log: this.taskLog(program, handle),
    };
  }

  private async bounded<T>(what: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AppError(`the ${what} took longer than ${SCRIPT_MS / 1000} seconds`)), SCRIPT_MS);
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof AppError) throw err;
      this.deps.log.error({ event: 'apps.script_failed', what, error: errorText(err) }, 'a script failed');
      throw new AppError(`the ${what} failed: ${errorText(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private async sweep(): Promise<void> {
    try {
      const removed = await this.meetings.sweep();
      if (removed > 0) this.deps.log.info({ event: 'apps.meetings_expired', meetings: removed }, 'expired meetings were removed');
    } catch (err) {
      this.deps.log.error({ event: 'apps.sweep_failed', error: errorText(err) }, 'expired meetings could not be removed');
    }
  }
}

/** A running task: what its entry sees (api.ts Task) and what the service keeps of it. */
class RunningTask implements Task, Endpoint {
  private readonly queue: TaskEvent[] = [];
  private waiter: ((event: TaskEvent | undefined) => void) | undefined;
  private readonly calls = new Set<TaskCall>();
  private readonly mixers = new Set<TaskMixer>();
  private readonly aborter = new AbortController();
  private done = false;
  private queuedBytes = 0;
  private dropping = false;
  private unlisten: (() => void) | undefined;
  readonly meetings;
  readonly account: AppAccount;

  constructor(
    private readonly service: AppService,
    readonly handle: string,
    readonly program: string,
    readonly entry: string,
    /** The account as the store has it (a task it starts runs for it too). */
    readonly record: AccountRecord,
    readonly parameters: readonly string[],
    readonly starter: string | undefined,
    readonly call: TaskCall | undefined,
    readonly log: AppLogger,
    stopping: AbortSignal,
  ) {
    this.account = appAccount(record);
    this.meetings = service.meetings.of(record.id, () => handle);
    this.aborter.signal.addEventListener('abort', () => this.wake(undefined), { once: true });
    // The server's stop reaches the task while it runs (and lets go of it when it ends).
    const stop = (): void => this.aborter.abort();
    if (stopping.aborted) stop();
    else {
      stopping.addEventListener('abort', stop, { once: true });
      this.unlisten = () => stopping.removeEventListener('abort', stop);
    }
  }

  /** A task started for a call (its account's started tasks do not count it). */
  get forCall(): boolean {
    return this.call !== undefined;
  }

  get accountId(): number {
    return this.account.id;
  }

  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  deliver(event: TaskEvent): void {
    if (this.done) return;
    if (this.waiter) return this.wake(event);
    const size = eventSize(event);
    if (this.queue.length >= INBOX_EVENTS || this.queuedBytes + size > INBOX_BYTES) {
      // Logged once for a run of dropped events, not for each.
      if (!this.dropping) this.log.warn('events are dropped: the task has too many unread', { eventName: event.name, unread: this.queue.length });
      this.dropping = true;
      return;
    }
    this.dropping = false;
    this.queue.push(event);
    this.queuedBytes += size;
  }

  private wake(event: TaskEvent | undefined): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(event);
  }

  readInput(timeoutSeconds?: number): Promise<TaskEvent | undefined> {
    const queued = this.queue.shift();
    if (queued) {
      this.queuedBytes -= eventSize(queued);
      return Promise.resolve(queued);
    }
    if (this.aborter.signal.aborted || this.done) return Promise.resolve(undefined);
    if (this.waiter) return Promise.reject(new AppError('readInput is already waiting'));
    return new Promise((resolve) => {
      const timer = timeoutSeconds === undefined ? undefined : setTimeout(() => this.wake(undefined), clampSeconds(timeoutSeconds, 0, MAX_WAIT_SECONDS) * 1000);
      this.waiter = (event) => {
        clearTimeout(timer);
        resolve(event);
      };
    });
  }

  sendEvent(to: string, name: string, parameter?: XimssValue): Promise<void> {
    return this.service.sendEvent(this.handle, to, name, parameter);
  }

  handOver(call: AppCall, to: string, parameter?: XimssValue): void {
    this.service.handOver(this, call as TaskCall, to, parameter);
  }

  startTask(program: string, entry?: string, parameters: readonly string[] = []): string {
    return this.service.startTask(program, entry, this.record, parameters, this.handle);
  }

  dial(to: string, options: { timeoutSeconds?: number } = {}): Promise<AppCall> {
    return this.service.dial(this, to, options.timeoutSeconds ?? 60);
  }

  mixer(name: string): AppMixer {
    return this.service.mixer(this, name);
  }

  deliverMail(message: MailToDeliver): Promise<void> {
    return this.service.deliverMail(this.account, message);
  }

  // --- what the service keeps ---

  own(call: TaskCall): void {
    this.calls.add(call);
    void call.ended.then(() => this.calls.delete(call));
  }

  owns(call: TaskCall): boolean {
    return this.calls.has(call);
  }

  disown(call: TaskCall): void {
    this.calls.delete(call);
  }

  made(mixer: TaskMixer): void {
    this.mixers.add(mixer);
  }

  /** The server stops: waits end (the entry should return). */
  stop(): void {
    this.aborter.abort();
    for (const call of [...this.calls]) call.hangup();
  }

  /** The entry returned: what the task leaves behind goes (calls it still drives hang up, mixers it made close). */
  finish(): void {
    this.done = true;
    this.unlisten?.();
    this.wake(undefined);
    this.queue.length = 0;
    this.queuedBytes = 0;
    for (const call of [...this.calls]) call.hangup();
    for (const mixer of this.mixers) mixer.close();
  }
}

/** Roughly the memory an unread event holds. */
function eventSize(event: TaskEvent): number {
  return 64 + event.name.length + (event.parameter === undefined ? 0 : valueSize(event.parameter));
}

function appAccount(account: AccountRecord): AppAccount {
  return { id: account.id, name: account.name, domain: account.domain, address: `${account.name}@${account.domain}` };
}

/** The node of a handle (`<node>~<id>`), undefined when it is not one. */
function nodeOf(handle: string): string | undefined {
  const at = handle.lastIndexOf('~');
  return at > 0 && at < handle.length - 1 && handle.length <= 200 ? handle.slice(0, at) : undefined;
}

function checkEventName(name: string): void {
  // eslint-disable-next-line no-control-regex
  if (name === '' || name.length > 256 || /[\u0000-\u001f\u007f]/.test(name)) throw new AppError('an event needs a name of 1 to 256 characters without control characters');
}

/** A number of seconds an application gave, within [min, max] (NaN is the minimum). */
function clampSeconds(value: number, min: number, max: number): number {
  return Number.isNaN(value) ? min : Math.min(max, Math.max(min, value));
}
