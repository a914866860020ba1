/**
 * The record component (XEP-0327 "Recording"): what is said on a call written to a WAV file
 * while it is said, then stored in the File Storage of the account that controls the call,
 * where the application fetches it over HTTP (WebDAV GET with the account's credentials).
 *
 * Time is the media's: the recorder ticks with the process's frame clock (src/media/frame-clock.ts),
 * one 20 ms frame a tick, so a party that sends nothing is recorded as silence and every
 * duration and timeout counts frames, not timers. Each tick takes the frame the caller (the other
 * party) sent and the one the server played to it since the last tick.
 *
 * `direction` is the caller's, as the XEP defines it: `send` is the audio sent by the caller,
 * `recv` all the audio the caller receives (what the server plays: prompts, beeps), `duplex` both.
 */
import { createReadStream } from 'node:fs';
import { mkdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FRAME_SAMPLES, type AudioSource, type PlayResult } from '../../../media/endpoint.js';
import { sharedFrameClock, type FrameClock, type FrameSubscriber } from '../../../media/frame-clock.js';
import { softLimit } from '../../../media/mixer.js';
import { beep } from '../../../media/tones.js';
import { VoiceActivityDetector } from '../../../media/vad.js';
import { WavWriter } from '../../../media/wav.js';
import type { AccountService } from '../../../services/accounts.js';
import { FileError, type FileStorage } from '../../../services/files/api.js';
import { errorText } from '../../../log.js';
import { RayoComponent } from './components.js';
import { badRequest, rayoError, unsupportedOption, type CompleteReason, type ComponentCommand, type RayoError, type Recording, type RecordComponent } from './elements.js';

/** What a recorder hears of its call (MediaParty), and where its beeps go. */
export interface RecorderMedia {
  /** Each 20 ms frame the other party sends (the buffer is reused: copy to keep). */
  onAudio(listener: (frame: Int16Array) => void): () => void;
  /** Each 20 ms frame the server plays to the other party. */
  onSent(listener: (frame: Int16Array) => void): () => void;
  play(source: AudioSource): Promise<PlayResult>;
}

/** Where finished recordings go. */
export interface RecordingStorage {
  /** A new temporary file for a recording (in the data directory's spool). */
  spoolPath(name: string): string;
  /** How many more bytes the account may store (Infinity: no limit). */
  room(accountId: number): Promise<number>;
  /** Stores the finished file as `name` and says where the application fetches it. */
  store(accountId: number, name: string, file: string): Promise<{ uri: string; size: number }>;
}

/** The folder of each account's File Storage that recordings go to. */
export const RECORDINGS_FOLDER = 'recordings';

/**
 * Recordings in the accounts' File Storage (src/services/files/): under `recordings/`, written
 * through the FileService (so the account's MaxWebSize/MaxWebFiles hold), fetched at
 * `<base>/dav/files/<name@domain>/recordings/<file>` — the WebDAV share of the storage, which
 * asks for the account's credentials.
 */
export class FileStorageRecordings implements RecordingStorage {
  private constructor(
    private readonly files: FileStorage,
    private readonly accounts: Pick<AccountService, 'getById'>,
    private readonly spool: string,
    private readonly baseUrl: () => string,
  ) {}

  /** Opens the spool (`<spool>`; what a previous process left there is deleted). */
  static async open(files: FileStorage, accounts: Pick<AccountService, 'getById'>, spool: string, baseUrl: () => string): Promise<FileStorageRecordings> {
    await rm(spool, { recursive: true, force: true });
    await mkdir(spool, { recursive: true, mode: 0o700 });
    return new FileStorageRecordings(files, accounts, spool, baseUrl);
  }

  spoolPath(name: string): string {
    return join(this.spool, name);
  }

  async room(accountId: number): Promise<number> {
    const owner = await this.accounts.getById(accountId);
    if (!owner) return 0;
    const usage = await this.files.usage(owner, '');
    return usage.sizeLimit === undefined ? Infinity : Math.max(0, usage.sizeLimit - usage.size);
  }

  async store(accountId: number, name: string, file: string): Promise<{ uri: string; size: number }> {
    const owner = await this.accounts.getById(accountId);
    if (!owner) throw new FileError('not-found', 'the account is gone');
    try {
      await this.files.createDirectory(owner, RECORDINGS_FOLDER);
    } catch (err) {
      if (!(err instanceof FileError && err.reason === 'exists')) throw err;
    }
    const path = `${RECORDINGS_FOLDER}/${name}`;
    const { entry } = await this.files.write(owner, path, createReadStream(file), { kind: 'replace' });
    const base = this.baseUrl().replace(/\/+$/, '');
    const uri = `${base}/dav/files/${encodeURIComponent(owner.name)}@${encodeURIComponent(owner.domain)}/${RECORDINGS_FOLDER}/${encodeURIComponent(name)}`;
    return { uri, size: entry.size };
  }
}

export interface RecorderOptions {
  /** The longest recording, in ms, whatever max-duration says (3 hours unless given). */
  maxRecordingMs?: number;
  clock?: FrameClock;
}

const FRAME_MS = 20;
const DEFAULT_MAX_RECORDING_MS = 3 * 3600 * 1000;
/** Frames of one direction kept between two ticks at most (a burst after a stall). */
const QUEUE_FRAMES = 10;
/** The VAD's hangover (frames of quiet before it says speech stopped): counted into final-timeout. */
const HANGOVER_FRAMES = 10;
/** A frame at the level of a quiet line (about −69 dB), for the detector's first noise floor. */
const QUIET_LINE = new Int16Array(FRAME_SAMPLES).fill(8);
/** Frames gathered before a write to the file (one second). */
const WRITE_FRAMES = 50;

/**
 * The record component. Attributes: `format` (wav only: 8 kHz 16-bit PCM), `start-beep` (a beep
 * played to the other party; the recording starts after it), `stop-beep` (played when the
 * recording ends, unless the call did), `start-paused`, `max-duration`, `initial-timeout` (no
 * voice within it: `initial-timeout`), `final-timeout` (that much quiet after voice:
 * `final-timeout`), `direction` (the caller's: `send` what the caller says; `recv` what it hears
 * from the server; `duplex` both, as two channels — left the caller, right what it hears — or mixed
 * into one with `mix`). Voice is what the voice activity detector (src/media/vad.ts) hears in the
 * caller's audio (in what it hears for `recv`). Paused time is not recorded and counts towards no
 * limit. The `complete` carries the `<recording>` once the file is stored.
 */
export class Recorder extends RayoComponent implements FrameSubscriber {
  /** Where the finished recording is (set just before the completion is reported). */
  recording: Recording | undefined;
  private writer: WavWriter | undefined;
  private readonly tempPath: string;
  private readonly fileName: string;
  private readonly unsubscribers: (() => void)[] = [];
  /** Frames the caller sent, and frames played to it, not yet taken by a tick. */
  private readonly callerQueue: Int16Array[] = [];
  private readonly playedQueue: Int16Array[] = [];
  private readonly silence = new Int16Array(FRAME_SAMPLES);
  private readonly vad = new VoiceActivityDetector({ hangoverFrames: HANGOVER_FRAMES });
  private readonly maxFrames: number;
  private started = false;
  private paused: boolean;
  private finishing = false;
  private frames = 0;
  private heardVoice = false;
  private quietFrames = 0;
  private pending: Int16Array[] = [];
  private writing: Promise<void> = Promise.resolve();
  private failure: string | undefined;
  private room = Infinity;
  private unclock: (() => void) | undefined;

  /** Checks the request and opens the file: a RayoError (nothing started) when it cannot be taken. */
  static async start(
    id: string,
    callId: string,
    accountId: number,
    request: RecordComponent,
    media: RecorderMedia,
    storage: RecordingStorage,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    options: RecorderOptions = {},
  ): Promise<Recorder | RayoError> {
    if (request.format.toLowerCase() !== 'wav') return unsupportedOption(`recordings are written as wav only, not ${request.format}`);
    if (request.maxDuration === 0) return badRequest('max-duration must be positive (or -1: no limit)');
    let room: number;
    try {
      room = await storage.room(accountId);
    } catch (err) {
      return rayoError('internal-server-error', `the File Storage cannot be reached: ${errorText(err)}`);
    }
    if (room <= 44) return rayoError('resource-constraint', 'the File Storage of the account is full', 'wait');
    const recorder = new Recorder(id, callId, request, media, storage, accountId, completed, options);
    recorder.room = room;
    const channels = request.direction === 'duplex' && !request.mix ? 2 : 1;
    try {
      recorder.writer = await WavWriter.create(recorder.tempPath, { encoding: 'pcm16', sampleRate: 8000, channels });
    } catch (err) {
      await unlink(recorder.tempPath).catch(() => {});
      return rayoError('internal-server-error', `the recording cannot be written: ${errorText(err)}`);
    }
    recorder.begin();
    return recorder;
  }

  private constructor(
    id: string,
    callId: string,
    private readonly request: RecordComponent,
    private readonly media: RecorderMedia,
    private readonly storage: RecordingStorage,
    private readonly accountId: number,
    completed: (component: RayoComponent, reason: CompleteReason) => void,
    private readonly options: RecorderOptions,
  ) {
    super(id, 'record', completed);
    this.fileName = `${callId}-${id}.wav`;
    this.tempPath = storage.spoolPath(this.fileName);
    this.paused = request.startPaused;
    const cap = options.maxRecordingMs ?? DEFAULT_MAX_RECORDING_MS;
    const limit = request.maxDuration > 0 ? Math.min(request.maxDuration, cap) : cap;
    this.maxFrames = Math.max(1, Math.ceil(limit / FRAME_MS));
  }

  /** Listens to the call, plays the start beep, then records from the next tick. */
  private begin(): void {
    const { direction } = this.request;
    if (direction !== 'recv') this.unsubscribers.push(this.media.onAudio((frame) => keep(this.callerQueue, frame)));
    if (direction !== 'send') this.unsubscribers.push(this.media.onSent((frame) => keep(this.playedQueue, frame)));
    this.unclock = (this.options.clock ?? sharedFrameClock).subscribe(this);
    if (this.request.startBeep) {
      void this.media.play(frames(beep())).then(() => this.startRecording());
    } else this.startRecording();
  }

  private startRecording(): void {
    if (this.finishing) return;
    // The detector takes its first non-silent frame for the line's noise: told of a quiet line
    // first, it hears a party already talking when the recording starts as voice.
    this.vad.process(QUIET_LINE);
    this.callerQueue.length = 0;
    this.playedQueue.length = 0;
    this.started = true;
  }

  override command(command: ComponentCommand): RayoError | undefined {
    switch (command.kind) {
      case 'pause':
        this.paused = true;
        return undefined;
      case 'resume':
        this.paused = false;
        return undefined;
      case 'stop':
        this.finish({ kind: 'stop' });
        return undefined;
      default:
        return super.command(command);
    }
  }

  override hangup(): void {
    this.finish({ kind: 'hangup' });
  }

  /** One frame of the call (the frame clock's tick). */
  onFrame(): void {
    if (this.finishing) return;
    const caller = this.callerQueue.shift() ?? this.silence;
    const played = this.playedQueue.shift() ?? this.silence;
    if (!this.started || this.paused) return;
    const { direction } = this.request;
    this.frames++;
    this.record(direction, caller, played);
    const transition = this.vad.process(direction === 'recv' ? played : caller);
    if (this.vad.speaking || transition === 'stopped') {
      this.heardVoice = true;
      this.quietFrames = transition === 'stopped' ? HANGOVER_FRAMES : 0;
    } else if (this.heardVoice) this.quietFrames++;
    const { initialTimeout, finalTimeout } = this.request;
    if (this.failure) this.finish({ kind: 'error', text: this.failure });
    else if (this.frames >= this.maxFrames) this.finish({ kind: 'max-duration' });
    else if (!this.heardVoice && initialTimeout > 0 && this.frames * FRAME_MS >= initialTimeout) this.finish({ kind: 'initial-timeout' });
    else if (this.heardVoice && !this.vad.speaking && finalTimeout > 0 && this.quietFrames * FRAME_MS >= finalTimeout) this.finish({ kind: 'final-timeout' });
  }

  /** Appends the frame's audio to what is to be written. */
  private record(direction: RecordComponent['direction'], caller: Int16Array, played: Int16Array): void {
    let out: Int16Array;
    if (direction === 'send') out = caller.slice();
    else if (direction === 'recv') out = played.slice();
    else if (this.request.mix) {
      out = new Int16Array(FRAME_SAMPLES);
      for (let i = 0; i < FRAME_SAMPLES; i++) out[i] = softLimit(caller[i]! + played[i]!);
    } else {
      out = new Int16Array(2 * FRAME_SAMPLES);
      for (let i = 0; i < FRAME_SAMPLES; i++) {
        out[2 * i] = caller[i]!;
        out[2 * i + 1] = played[i]!;
      }
    }
    this.pending.push(out);
    if ((this.writer?.bytes ?? 0) + 44 + this.pending.length * out.length * 2 > this.room) {
      this.failure = 'the File Storage of the account is full';
    }
    if (this.pending.length >= WRITE_FRAMES) this.flush();
  }

  /** Queues what was gathered for the file (writes go one after another). */
  private flush(): void {
    const writer = this.writer;
    if (!writer || this.pending.length === 0) return;
    const parts = this.pending;
    this.pending = [];
    const samples = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      samples.set(part, at);
      at += part.length;
    }
    this.writing = this.writing.then(() => writer.write(samples)).catch((err: unknown) => {
      this.failure ??= `the recording could not be written: ${errorText(err)}`;
    });
  }

  /** Stops listening, finishes the file, stores it; then the completion is reported. */
  private finish(reason: CompleteReason): void {
    if (this.finishing || this.finished) return;
    this.finishing = true;
    this.stopListening();
    if (this.request.stopBeep && reason.kind !== 'hangup' && reason.kind !== 'error') void this.media.play(frames(beep()));
    void this.save(reason)
      .then((final) => this.complete(final))
      .catch(() => this.complete({ kind: 'error', text: 'the recording could not be completed' }));
  }

  private async save(reason: CompleteReason): Promise<CompleteReason> {
    const writer = this.writer!;
    this.flush();
    try {
      await this.writing;
      await writer.close();
      if (this.failure) return { kind: 'error', text: this.failure };
      const { uri, size } = await this.storage.store(this.accountId, this.fileName, this.tempPath);
      this.recording = { uri, duration: this.frames * FRAME_MS, size };
      return reason;
    } catch (err) {
      if (err instanceof FileError && err.reason === 'limit-exceeded') return { kind: 'error', text: 'the File Storage of the account is full' };
      return { kind: 'error', text: `the recording could not be stored: ${errorText(err)}` };
    } finally {
      await unlink(this.tempPath).catch(() => {});
    }
  }

  private stopListening(): void {
    this.unclock?.();
    this.unclock = undefined;
    for (const off of this.unsubscribers.splice(0)) off();
  }

  protected release(): void {
    this.stopListening();
  }
}

/** Keeps a copy of a frame, dropping the oldest beyond QUEUE_FRAMES. */
function keep(queue: Int16Array[], frame: Int16Array): void {
  if (queue.length >= QUEUE_FRAMES) queue.shift();
  const copy = new Int16Array(FRAME_SAMPLES);
  copy.set(frame.subarray(0, FRAME_SAMPLES));
  queue.push(copy);
}

/** Samples as a source of 20 ms frames. */
function frames(samples: Int16Array): AudioSource {
  let at = 0;
  return {
    next() {
      if (at >= samples.length) return undefined;
      const frame = new Int16Array(FRAME_SAMPLES);
      frame.set(samples.subarray(at, at + FRAME_SAMPLES));
      at += FRAME_SAMPLES;
      return frame;
    },
  };
}
