import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { ServiceError } from '../services/errors.js';
import { XmlElement } from '../xml/element.js';
import type { Conversation, Output } from './conversation.js';
import { errorResponse, okResponse } from './protocol.js';
import type { Session } from './session.js';
import type { XimssServices } from './services.js';

/** Returned by a handler whose response comes later (a SASL exchange waiting for `auth`). */
export const NO_RESPONSE = Symbol('no response');
type HandlerResult = void | typeof NO_RESPONSE;

export interface RequestContext {
  readonly id: string;
  readonly request: XmlElement;
  readonly conversation: Conversation;
  readonly server: XimssServices;
  /** Sends a synchronous data message: it carries the request's id and precedes the response. */
  send(message: XmlElement): void;
  /** Sends a data message without the id (the SASL `challenge`, as in the spec's example). */
  sendUntagged(message: XmlElement): void;
  /** Attributes the positive response carries besides `id` (signaling's `media="WebRTC"`). */
  responseAttrs?: Record<string, string>;
}

export interface SessionContext extends RequestContext {
  readonly session: Session;
}

/** What a session waiting for its second factor may do (see Session.secondFactorPending). */
const SECOND_FACTOR_STEP: ReadonlySet<string> = new Set(['x2AuthStart', 'x2AuthComplete', 'bye']);
export const SECOND_FACTOR_REQUIRED = 'two-factor authentication is not complete: use x2AuthStart and x2AuthComplete';

type Availability = 'preLogin' | 'session' | 'anytime';

export interface Operation {
  readonly availability: Availability;
  readonly handler: (ctx: RequestContext & { session: Session | null }) => HandlerResult | Promise<HandlerResult>;
}

/** An operation available only before login (listFeatures, login, signup, ...). */
export function preLogin(handler: (ctx: RequestContext) => HandlerResult | Promise<HandlerResult>): Operation {
  return { availability: 'preLogin', handler };
}

/** An operation of a logged-in session. */
export function inSession(handler: (ctx: SessionContext) => HandlerResult | Promise<HandlerResult>): Operation {
  return { availability: 'session', handler: handler as Operation['handler'] };
}

/** An operation available before and after login (readStrings). */
export function anytime(handler: (ctx: RequestContext & { session: Session | null }) => HandlerResult | Promise<HandlerResult>): Operation {
  return { availability: 'anytime', handler };
}

export type OperationTable = Record<string, Operation>;

/** An attribute a request (or one of its body elements) must carry, not empty. */
export function requiredAttr(element: XmlElement, name: string): string {
  const value = element.attrs[name];
  if (value === undefined || value === '') throw new ServiceError(`the ${name} attribute is missing`);
  return value;
}

class Context implements RequestContext {
  responseAttrs: Record<string, string> | undefined;

  constructor(
    readonly id: string,
    readonly request: XmlElement,
    readonly conversation: Conversation,
    readonly server: XimssServices,
    readonly session: Session | null,
    private readonly out: Output,
  ) {}

  send(message: XmlElement): void {
    // `id` goes first, as in every example of the spec.
    this.out(new XmlElement(message.name, { id: this.id, ...message.attrs }, message.children).toString());
  }

  sendUntagged(message: XmlElement): void {
    this.out(message.toString());
  }
}

type Outcome = 'ok' | 'error' | 'failed';

/**
 * The session engine: looks a request up in the operation table, checks that it may run
 * in the conversation's state, runs it and writes its response (with `exeTime` when
 * asked). Handlers report failures by throwing ServiceError; anything else thrown is an
 * internal error, logged and answered without detail.
 *
 * Every answered request is counted by operation and outcome (ok; error: an errorText
 * answer; failed: an internal error) and timed. A request whose name is no operation is
 * counted as `unknown`, so that clients cannot make up label values. A SASL login that
 * goes on with `auth` is counted when answered, as `auth`.
 */
export class Engine {
  private readonly operations = new Map<string, Operation>();
  private readonly log: Logger;

  constructor(readonly server: XimssServices) {
    this.log = server.log.child({ component: 'ximss' });
  }

  register(table: OperationTable): void {
    for (const [name, operation] of Object.entries(table)) {
      if (this.operations.has(name)) throw new Error(`operation ${name} registered twice`);
      this.operations.set(name, operation);
    }
  }

  has(name: string): boolean {
    return this.operations.has(name);
  }

  execute(conversation: Conversation, request: XmlElement, out: Output): void | Promise<void> {
    const started = performance.now();
    const operation = this.operations.get(request.name);
    const op = operation ? request.name : 'unknown';
    const id = request.attrs.id;
    if (id === undefined || id === '') {
      this.count(op, 'error', started);
      out(errorResponse(undefined, `the id attribute is missing in <${request.name}>`));
      return;
    }
    const pendingAuth = conversation.pendingAuth;
    if (pendingAuth && !(request.name === 'auth' && id === pendingAuth.id)) {
      // Anything but the `auth` continuing it abandons a SASL exchange: its login still
      // gets its (negative) response, before this request's.
      conversation.pendingAuth = undefined;
      this.count('login', 'error', started);
      out(errorResponse(pendingAuth.id, 'authentication cancelled'));
    }
    const exeTime = request.attrs.exeTime;
    const timed = exeTime !== undefined && exeTime !== '0';
    const elapsed = (): number | undefined => (timed ? Math.round(performance.now() - started) : undefined);
    const session = conversation.session;
    session?.touch();

    let problem: string | undefined;
    if (!operation) problem = 'unknown command';
    else if (operation.availability === 'session' && !session) problem = 'this operation requires login';
    else if (operation.availability === 'preLogin' && session) problem = 'this operation is not available after login';
    else if (session?.secondFactorPending && !SECOND_FACTOR_STEP.has(request.name)) problem = SECOND_FACTOR_REQUIRED;
    if (problem !== undefined) {
      this.count(op, 'error', started);
      out(errorResponse(id, problem, 500, elapsed()));
      return;
    }

    const context = new Context(id, request, conversation, this.server, session, out);
    const fail = (err: unknown): void => {
      if (err instanceof ServiceError) {
        this.count(op, 'error', started);
        out(errorResponse(id, err.message, err.code, elapsed()));
        return;
      }
      this.count(op, 'failed', started);
      this.log.error({ event: 'ximss.failed', op, account: session?.userName, address: conversation.remoteAddress, err }, `${op} failed`);
      out(errorResponse(id, 'internal server error', 500, elapsed()));
    };
    const succeed = (value: HandlerResult): void => {
      if (value === NO_RESPONSE) return;
      this.count(op, 'ok', started);
      out(okResponse(id, elapsed(), context.responseAttrs));
    };
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = operation!.handler(context);
    } catch (err) {
      fail(err);
      return;
    }
    if (result instanceof Promise) return result.then(succeed, fail);
    succeed(result);
  }

  private count(op: string, outcome: Outcome, started: number): void {
    const { metrics } = this.server;
    metrics.requests.inc({ op, outcome });
    metrics.requestSeconds.observe({ op }, (performance.now() - started) / 1000);
  }
}
