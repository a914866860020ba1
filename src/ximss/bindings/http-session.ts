import type http from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import type { XmlElement } from '../../xml/element.js';
import { XmlDocumentParser, XmlDocumentStream, XmlParseError, isBlank, parseXml } from '../../xml/parser.js';
import { Conversation, type Output, type TransportControl } from '../conversation.js';
import type { Engine } from '../engine.js';
import { errorResponse } from '../protocol.js';
import type { AsyncSink, Session } from '../session.js';
import type { SessionManager } from '../sessions.js';
import type { RequestProfile } from './request-limits.js';

/** A body sent as it is read (a spooled file): `length` bytes of `stream`. */
export interface StreamBody {
  stream: Readable;
  length: number;
}

/** One HTTP answer, as the listener writes it. */
export interface HttpReply {
  status: number;
  body: string | Buffer | StreamBody;
  contentType?: string;
  headers?: Record<string, string>;
}

export function isStreamBody(body: HttpReply['body']): body is StreamBody {
  return typeof body === 'object' && !Buffer.isBuffer(body);
}

/** The status every HTTP client reads as "this session is gone: log in again". */
export const SESSION_GONE = 550;

/** Async messages kept for a client that does not poll; beyond this the oldest are dropped. */
const MAX_QUEUED_MESSAGES = 10_000;
/** Answers remembered per session for retried `reqSeq`s. */
const REMEMBERED_REPLIES = 16;
/** How long a session that ended with a `<bye/>` no poll has collected yet keeps it for the next poll. */
export const BYE_GRACE_MS = 60_000;

/** A plain-text answer (errors and notices outside XIMSS); `body` is sent as given. */
export function textReply(status: number, body: string, headers?: Record<string, string>): HttpReply {
  return { status, body, contentType: 'text/plain; charset=utf-8', headers };
}

export function ximssReply(parts: readonly string[], status = 200): HttpReply {
  return { status, body: parts.length === 0 ? '<XIMSS/>' : `<XIMSS>${parts.join('')}</XIMSS>` };
}

export function ximssError(text: string, status = 200): HttpReply {
  return ximssReply([errorResponse(undefined, text)], status);
}

/** A posted batch as read: its requests, or why it was refused (and whether the body was left unread). */
export type Batch =
  | { kind: 'ok'; requests: XmlElement[] }
  | { kind: 'refused'; reply: HttpReply; unread: boolean }
  | { kind: 'aborted' };

/**
 * Reads an `<XIMSS>` batch from a request body as it arrives, parsing each piece at once
 * within `profile` (its size and the XML guard's limits): a body that crosses a limit is
 * refused there, without reading the rest. Its child elements are the requests, in order;
 * a body whose root is a single request element is a batch of one; an empty body, an
 * empty batch.
 */
export function readBatch(req: http.IncomingMessage, profile: RequestProfile): Promise<Batch> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > profile.bytes) return Promise.resolve(tooLargeBatch(profile));
  return new Promise((resolve) => {
    const document = new XmlDocumentStream(new XmlDocumentParser(), profile.xml);
    const decoder = new StringDecoder('utf8');
    let size = 0;
    const stop = (result: Batch): void => {
      req.removeAllListeners('data');
      req.removeAllListeners('end');
      resolve(result);
    };
    const refuse = (err: unknown): void => {
      if (!(err instanceof XmlParseError)) throw err;
      stop({ kind: 'refused', reply: ximssError(err.errorText), unread: !req.complete });
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > profile.bytes) return stop(tooLargeBatch(profile));
      try {
        document.write(decoder.write(chunk));
      } catch (err) {
        refuse(err);
      }
    });
    req.on('end', () => {
      let root: XmlElement | undefined;
      try {
        document.write(decoder.end());
        root = document.end();
      } catch (err) {
        return refuse(err);
      }
      stop({ kind: 'ok', requests: root === undefined ? [] : requestsOf(root) });
    });
    req.on('error', () => stop({ kind: 'aborted' }));
    req.on('close', () => {
      if (!req.complete) stop({ kind: 'aborted' });
    });
  });
}

function tooLargeBatch(profile: RequestProfile): Batch {
  return { kind: 'refused', reply: ximssError(`the request is larger than ${profile.bytes} bytes`, 413), unread: true };
}

/** Parses a batch given whole (the body of a pre-login /XIMSSLogin/ request): the requests, or the error text. */
export function parseBatch(text: string, profile: RequestProfile): XmlElement[] | string {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (isBlank(source)) return [];
  try {
    return requestsOf(parseXml(source, profile.xml));
  } catch (err) {
    if (err instanceof XmlParseError) return err.errorText;
    throw err;
  }
}

/** A batch's requests: the children of `<XIMSS>`, or a single request element. */
function requestsOf(root: XmlElement): XmlElement[] {
  return root.name === 'XIMSS' ? root.elements() : [root];
}

/**
 * Runs `requests` in order through `conversation` and resolves with all their data
 * messages and responses once the last response is written. Once the answer holds
 * `answerBytes`, the batch's later requests are refused rather than run.
 */
export function runBatch(conversation: Conversation, requests: readonly XmlElement[], answerBytes: number): Promise<string[]> {
  const parts: string[] = [];
  if (requests.length === 0) return Promise.resolve(parts);
  let bytes = 0;
  return new Promise((resolve) => {
    const out: Output = Object.assign(
      (xml: string): void => {
        bytes += xml.length;
        parts.push(xml);
      },
      {
        exhausted: (): string | undefined =>
          bytes >= answerBytes ? `the answer to this batch is larger than ${answerBytes} bytes: send the rest in another batch` : undefined,
      },
    );
    requests.forEach((request, index) => {
      conversation.submit(request, out, index === requests.length - 1 ? () => resolve(parts) : undefined);
    });
  });
}

interface WaitingPoll {
  answer: (reply: HttpReply) => void;
  timer: NodeJS.Timeout | undefined;
}

const httpSessions = new WeakMap<Session, HttpSession>();

/** The HTTP side of a session, when it was started over HTTP. */
export function httpSessionOf(session: Session): HttpSession | undefined {
  return httpSessions.get(session);
}

interface EndedSession {
  state: HttpSession;
  /** Until when (ms since the epoch) its bye waits. */
  until: number;
}

/**
 * Sessions that ended server-side (idle time-out, account removal, shutdown, killOld) while
 * no poll was waiting, by urlID, one registry per session manager: the session manager has
 * forgotten them, but their `<bye/>` waits for the client's next poll until `until`. All
 * are kept equally long, so the oldest come first; expired ones are dropped as new ones
 * arrive and on look-up, with no timer per session.
 */
const endedWithBye = new WeakMap<SessionManager, Map<string, EndedSession>>();

function endedRegistry(sessions: SessionManager): Map<string, EndedSession> {
  let registry = endedWithBye.get(sessions);
  if (!registry) endedWithBye.set(sessions, (registry = new Map()));
  const now = Date.now();
  for (const [urlID, entry] of registry) {
    if (entry.until > now) break;
    registry.delete(urlID);
  }
  return registry;
}

/** The HTTP state of an ended session whose `<bye/>` the next poll is still to get. */
export function endedHttpSession(sessions: SessionManager, urlID: string): HttpSession | undefined {
  return endedWithBye.has(sessions) ? endedRegistry(sessions).get(urlID)?.state : undefined;
}

/**
 * The HTTP state of one session: the conversation that runs its batches in order, the
 * queue of asynchronous messages for the long poll (with the last batch sent kept until the
 * client acknowledges it), and the answers to recent `reqSeq`s for retried requests.
 */
export class HttpSession implements AsyncSink, TransportControl {
  readonly kind = 'http' as const;
  readonly conversation: Conversation;
  private queue: string[] = [];
  /** The last non-empty poll answer, until a poll's ackSeq acknowledges it. */
  private unacknowledged: { seq: number; messages: string[] } | undefined;
  private lastSeq = 0;
  private waiting: WaitingPoll | undefined;
  private flushScheduled = false;
  private readonly remembered = new Map<string, Promise<HttpReply>>();
  private isEnded = false;
  private readonly sessions: SessionManager;
  /** Characters waiting for polls (queued, and sent but not acknowledged); past answerBytes async requests wait. */
  private queuedBytes = 0;
  private unacknowledgedBytes = 0;
  private readonly answerBytes: number;
  /** Where async batches write: into the poll queue, waiting while it is full. */
  private readonly asyncOut: Output = Object.assign((xml: string): void => this.deliver(xml), {
    blocked: (): boolean => this.queuedBytes + this.unacknowledgedBytes >= this.answerBytes,
  });

  constructor(
    engine: Engine,
    readonly session: Session,
    secure: boolean,
  ) {
    this.sessions = engine.server.sessions;
    this.answerBytes = engine.server.config.limits.maxAnswerBytes;
    this.conversation = new Conversation(engine, session.remoteAddress, secure, this);
    this.conversation.session = session;
    httpSessions.set(session, this);
  }

  get hasEnded(): boolean {
    return this.isEnded;
  }

  /** The number of requests queued and not yet answered. */
  get pendingRequests(): number {
    return this.conversation.pending;
  }

  /**
   * Answers a request carrying `reqSeq`: the first time `produce` runs; a retry gets the
   * same answer (waiting for it if the first is still running).
   */
  remember(key: string, produce: () => Promise<HttpReply>): Promise<HttpReply> {
    const known = this.remembered.get(key);
    if (known) return known;
    const reply = produce();
    this.remembered.set(key, reply);
    reply.catch(() => this.remembered.delete(key));
    if (this.remembered.size > REMEMBERED_REPLIES) this.remembered.delete(this.remembered.keys().next().value!);
    return reply;
  }

  /** Runs a batch and resolves with its output, followed by pending async messages when asked. */
  async sync(requests: readonly XmlElement[], withAsync: boolean): Promise<HttpReply> {
    const parts = await runBatch(this.conversation, requests, this.answerBytes);
    if (withAsync && this.queue.length > 0) parts.push(...this.takeQueue());
    return ximssReply(parts);
  }

  /** Queues a batch whose data messages and responses go out through the long poll. */
  submitAsync(requests: readonly XmlElement[]): void {
    for (const request of requests) this.conversation.submit(request, this.asyncOut);
  }

  /**
   * A long poll. `ackSeq` acknowledges the answers up to that respSeq; an unacknowledged
   * answer is sent again (with anything new) under its own number, so a client that lost
   * it, or counts answers itself, stays in step. Without anything to send, the poll waits
   * up to `waitMs`. Returns a function to call when the client goes away first.
   */
  poll(ackSeq: number | undefined, waitMs: number, answer: (reply: HttpReply) => void): () => void {
    this.supersede();
    // A client that sends no ackSeq cannot ask for a resend: take everything as received.
    if (this.unacknowledged && (ackSeq === undefined || ackSeq >= this.unacknowledged.seq)) {
      this.unacknowledged = undefined;
      this.unacknowledgedBytes = 0;
      this.conversation.resume();
    }
    if (this.unacknowledged || this.queue.length > 0) {
      this.sendBatch(answer);
      return () => {};
    }
    if (waitMs <= 0) {
      answer(ximssReply([]));
      return () => {};
    }
    const waiting: WaitingPoll = { answer, timer: undefined };
    waiting.timer = setTimeout(() => {
      if (this.waiting !== waiting) return;
      this.waiting = undefined;
      this.session.touch();
      answer(ximssReply([]));
    }, waitMs);
    this.waiting = waiting;
    return () => {
      if (this.waiting !== waiting) return;
      clearTimeout(waiting.timer);
      this.waiting = undefined;
    };
  }

  /** Answers a waiting poll now, with what is queued or empty (the server is shutting down). */
  releasePoll(): void {
    const waiting = this.takeWaiting();
    if (!waiting) return;
    if (this.queue.length > 0) this.sendBatch(waiting.answer);
    else waiting.answer(ximssReply([]));
  }

  /** A newer poll replaces a waiting one, which is answered empty. */
  private supersede(): void {
    this.takeWaiting()?.answer(ximssReply([]));
  }

  private takeWaiting(): WaitingPoll | undefined {
    const waiting = this.waiting;
    if (!waiting) return undefined;
    clearTimeout(waiting.timer);
    this.waiting = undefined;
    return waiting;
  }

  private sendBatch(answer: (reply: HttpReply) => void): void {
    const previous = this.unacknowledged;
    this.unacknowledgedBytes = (previous ? this.unacknowledgedBytes : 0) + this.queuedBytes;
    const queued = this.takeQueue();
    const messages = previous ? [...previous.messages, ...queued] : queued;
    const seq = previous ? previous.seq : ++this.lastSeq;
    this.unacknowledged = { seq, messages };
    // An ended session's last answer goes out once; after it, only 550.
    if (this.isEnded) this.forget();
    answer({ status: 200, body: `<XIMSS respSeq="${seq}">${messages.join('')}</XIMSS>` });
  }

  /** Empties the poll queue (its messages are on their way to the client). */
  private takeQueue(): string[] {
    const queued = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    this.conversation.resume();
    return queued;
  }

  // --- AsyncSink ---

  deliver(xml: string): void {
    if (this.isEnded) return;
    this.queue.push(xml);
    this.queuedBytes += xml.length;
    if (this.queue.length > MAX_QUEUED_MESSAGES) this.queuedBytes -= this.queue.shift()!.length;
    if (this.waiting && !this.flushScheduled) {
      // Wait for the rest of this turn's messages, so that they leave in one answer.
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        if (this.queue.length === 0) return;
        const waiting = this.takeWaiting();
        if (waiting) this.sendBatch(waiting.answer);
      });
    }
  }

  /**
   * A server-side logout reaches the client's poll as `<bye/>` (with whatever was queued
   * before it): at once when a poll is waiting, else on the next poll within BYE_GRACE_MS.
   * Otherwise the poll learns what every later request will: the session is gone (550).
   */
  ended(byeSent: boolean): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.conversation.session = null;
    const waiting = this.takeWaiting();
    if (waiting) {
      if (this.queue.length > 0) this.sendBatch(waiting.answer);
      else waiting.answer(ximssReply([], SESSION_GONE));
    } else if (byeSent && this.queue.length > 0) {
      endedRegistry(this.sessions).set(this.session.urlID, { state: this, until: Date.now() + BYE_GRACE_MS });
    }
  }

  /** Drops an ended session's last answer: later polls answer 550. */
  private forget(): void {
    const registry = endedWithBye.get(this.sessions);
    if (registry?.get(this.session.urlID)?.state === this) registry.delete(this.session.urlID);
  }

  // --- TransportControl (for the operations run in this session's conversation) ---

  asyncSink(): AsyncSink {
    return this;
  }

  canStartTls(): boolean {
    return false;
  }

  startTls(): void {}

  /** An HTTP session has no connection of its own to close. */
  close(): void {}
}

/** The user and password of an `Authorization: Basic` header (RFC 7617); undefined when it is not one. */
export function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  const match = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
