/**
 * The API of real-time applications: what an application module gets from the server.
 *
 * An application is an ES module in the applications directory (config `apps.directory`; the
 * ones shipped with the server are in src/apps/) whose default export is an `Application`. Its
 * name is the file's name without the extension: `conference.js` is the program `conference`.
 * It plays the part CG/PL programs play in CommuniGate Pro:
 *
 * - **Tasks** run an entry of the application: XIMSS `taskStart programName entryName` starts
 *   one for the session's account (`main` when no entry is named), and a call routed to the
 *   application (a Signal Rule `Redirect to #<program>`, or a `program` in config
 *   `calls.applicationRoutes`) starts its `call` entry (else `main`) with `task.call` set. A task
 *   ends when its entry returns (or throws: the error is logged).
 * - Tasks and XIMSS sessions exchange **events** (`sendEvent`, `readInput`; XIMSS `taskSendEvent`
 *   and `taskEvent`), addressed by task handles, across the cluster.
 * - **Meetings** are named rendezvous points in the account's meeting sets, through which they
 *   find each other (`task.meetings`; XIMSS `taskFindMeeting` and friends).
 * - **Scripts** (`runScript`) and **helpers** (`callHelper`) answer a XIMSS request at once.
 *
 * Applications run inside the server process, with its rights: install only code you trust, as
 * you would a CG/PL program. An entry must not block the event loop (no long synchronous loops);
 * everything here is asynchronous.
 */
import type { XimssValue } from '../../xml/objects.js';
import type { PartyEndReason } from '../calls/media-party.js';
import { ServiceError } from '../errors.js';

export type { XimssValue };

/** The default export of an application module. */
export interface Application {
  /** Task entries by name: `main` (taskStart without entryName), `call` (incoming calls; `main` when absent), any other. */
  entries: Record<string, (task: Task) => Promise<void>>;
  /** Synchronous scripts by entry name (XIMSS `runScript fileName=<program> name=<entry>`; `main` by default). */
  scripts?: Record<string, Script>;
  /** Application helpers by name (XIMSS `callHelper name=<helper>`), shared by every application. */
  helpers?: Record<string, Script>;
  /**
   * The meeting whose holder a call to this address is for (a conference room): the call's task
   * then starts on the node of the task holding it, so that it can hand the call over there.
   */
  meetingOfCall?: (called: string) => { set: string; name: string } | undefined;
}

/** A script or helper: the request's parameter object in, a result object (or nothing) out. */
export type Script = (context: ScriptContext, parameter: XimssValue | undefined) => Promise<XimssValue | undefined>;

/** Who a task or script works for: the account of the session that started it, or that was called. */
export interface AppAccount {
  readonly id: number;
  readonly name: string;
  readonly domain: string;
  /** name@domain */
  readonly address: string;
}

export interface AppLogger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface ScriptContext {
  readonly account: AppAccount;
  readonly meetings: Meetings;
  readonly log: AppLogger;
}

/** Something a task is told: an event another task or a XIMSS session sent, or a call handed to it. */
export interface TaskEvent {
  readonly name: string;
  readonly parameter?: XimssValue;
  /** The sender's handle (a task or a XIMSS session); absent when the server itself sent it. */
  readonly from?: string;
  /** A call handed over to this task (`Task.handOver`; the event is named `call`). */
  readonly call?: AppCall;
}

export interface Task {
  /** The task's handle: what other tasks and sessions send events to, and what meetings hold. */
  readonly handle: string;
  readonly program: string;
  readonly entry: string;
  readonly account: AppAccount;
  /** taskStart's `param` texts, in order (empty for a call). */
  readonly parameters: readonly string[];
  /** The handle of the XIMSS session that started the task (taskStart), if one did. */
  readonly starter: string | undefined;
  /** The call the task was started for (incoming calls). */
  readonly call: AppCall | undefined;
  readonly meetings: Meetings;
  readonly log: AppLogger;
  /** Aborted when the task must stop (the server shuts down): long waits should end. */
  readonly signal: AbortSignal;
  /**
   * The next event, waiting at most `timeoutSeconds` (forever when absent): undefined when the
   * time runs out or the task is stopped. Events wait in order until read.
   */
  readInput(timeoutSeconds?: number): Promise<TaskEvent | undefined>;
  /** Sends an event to a task or session; throws AppError when it is known to be gone. */
  sendEvent(to: string, name: string, parameter?: XimssValue): Promise<void>;
  /**
   * Hands one of this task's calls to another task of this node (a conference room), which gets
   * it as a `call` event; this task no longer drives it. Throws AppError when that task is not here.
   */
  handOver(call: AppCall, to: string, parameter?: XimssValue): void;
  /** Starts another task of an application for the same account, on this node; its handle. */
  startTask(program: string, entry?: string, parameters?: readonly string[]): string;
  /** Places a call (an address, a SIP URI, a number) from the task's account; resolves once it is answered. */
  dial(to: string, options?: { timeoutSeconds?: number }): Promise<AppCall>;
  /** A mixer of this node, by name within the account (the same name is the same mixer); closed when the task that made it ends. */
  mixer(name: string): AppMixer;
  /** Delivers a message to the task's account, through its Mail Rules (voicemail). */
  deliverMail(message: MailToDeliver): Promise<void>;
}

export interface MailToDeliver {
  /** Who the message is from (an address, or "Name <address>"). */
  from: string;
  subject: string;
  text: string;
  attachments?: { filename: string; contentType: string; content: Buffer }[];
  /** Extra header fields (X-…). */
  headers?: Record<string, string>;
}

/** A meeting as FindMeeting reports it. */
export interface Meeting {
  readonly set: string;
  readonly name: string;
  readonly parameter: XimssValue | undefined;
  /** The handle of the task that activated it. */
  readonly task: string | undefined;
  readonly expires: Date;
}

/** The account's meetings (sets: '' is the default set). Failures throw AppError with the XIMSS text. */
export interface Meetings {
  create(set: string, name: string, parameter?: XimssValue): Promise<void>;
  find(set: string, name: string): Promise<Meeting | undefined>;
  remove(set: string, name: string): Promise<void>;
  /** Takes the meeting away from whichever task activated it. */
  clear(set: string, name: string): Promise<void>;
  /** This task (or session) now holds the meeting: FindMeeting names it. */
  activate(set: string, name: string): Promise<void>;
  deactivate(set: string, name: string): Promise<void>;
  list(set: string): Promise<Meeting[]>;
}

/** What a call plays. */
export type Prompt =
  | { text: string; voice?: string }
  | { ssml: string }
  /** A WAV file over http(s). */
  | { url: string }
  /** 8 kHz linear samples. */
  | { samples: Int16Array }
  | { beep: true }
  | { silenceMs: number };

/** How a play ended: it ran out, a key interrupted it (bargeIn), or the call ended. */
export type PlayOutcome = 'finished' | 'interrupted' | 'stopped' | 'hungup';

export interface DigitOptions {
  /** How many keys at most. */
  max: number;
  /** Keys that end the input (not included); '#' unless given ('' for none). */
  terminators?: string;
  /** Seconds to wait for the first key (5), and between keys (3). */
  firstSeconds?: number;
  nextSeconds?: number;
}

export interface RecordOptions {
  /** The longest recording, seconds (120). */
  maxSeconds?: number;
  /** Stop after this much silence once something was said, seconds (3); 0: never. */
  finalSilenceSeconds?: number;
  /** Stop when nothing is said for this long at the start, seconds (5); 0: never. */
  initialSilenceSeconds?: number;
  /** A beep before recording (true). */
  beep?: boolean;
  /** Keys that stop the recording ('#'); the key pressed is not recorded. */
  stopKeys?: string;
}

export interface Recording {
  /** A WAV file: 8 kHz, 16-bit mono. */
  wav: Buffer;
  seconds: number;
  /** Why it stopped. */
  reason: 'max' | 'silence' | 'initial-silence' | 'key' | 'hungup';
  /** Whether anything was said (the voice activity detector heard speech). */
  speech: boolean;
}

export interface AppCall {
  readonly id: string;
  readonly from: { address: string; name?: string };
  readonly to: { address: string; name?: string };
  readonly state: 'incoming' | 'dialing' | 'connected' | 'ended';
  /** Resolves when the call is over. */
  readonly ended: Promise<{ reason: PartyEndReason; code?: number }>;
  /** Answers an incoming call (its media ends here); false when the caller hung up first. */
  answer(): Promise<boolean>;
  /** Refuses an incoming call with a SIP code (486 busy, 603 declined, 480 unavailable…). */
  reject(code?: number, reason?: string): void;
  /** Sends an incoming call elsewhere (302). */
  redirect(to: string): void;
  hangup(): void;
  /** Plays prompts in order; with bargeIn, a key pressed stops it (the key is kept for collectDigits). */
  play(prompts: Prompt | readonly Prompt[], options?: { bargeIn?: boolean }): Promise<PlayOutcome>;
  /** Keys pressed (those pressed during a prompt first); '' when none came in time or the call ended. */
  collectDigits(options: DigitOptions): Promise<string>;
  /** Records what the caller says. */
  record(options?: RecordOptions): Promise<Recording>;
}

export type MixDirection = 'duplex' | 'send' | 'recv';

export interface AppMixer {
  readonly name: string;
  /** The calls in the mixer. */
  readonly calls: readonly AppCall[];
  /** Adds a call: 'send' is heard only, 'recv' hears only (muted). A call is in one mixer at a time. */
  join(call: AppCall, direction?: MixDirection): void;
  leave(call: AppCall): void;
  /** Plays prompts to everyone in the mixer. */
  play(prompts: Prompt | readonly Prompt[]): Promise<PlayOutcome>;
  /** Each time a member starts or stops speaking. */
  onSpeaking(listener: (call: AppCall, speaking: boolean) => void): () => void;
  /** Everyone leaves; the mixer is gone. */
  close(): void;
}

/** A failure an application or a XIMSS client is told of: a ServiceError, so XIMSS answers its text as it is. */
export class AppError extends ServiceError {
  constructor(message: string) {
    super(message);
    this.name = 'AppError';
  }
}
