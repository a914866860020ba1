/**
 * Rayo commands (XEP-0327): what a client sends in `<iq type='set'>` to the service, a call,
 * a mixer or a component, as typed values; `parseCommand` reads and validates the payload
 * (the whole command is checked up front, as the XEP requires before acknowledging), and
 * `buildCommand` writes one back (client side, tests, and echoing a request in an error).
 * Optional attributes are given their XEP defaults when parsed; the builder leaves out those
 * that equal the default. Durations are milliseconds, -1 meaning no limit where the XEP says so.
 */
import { el, type XmlElement } from '../../../xml/element.js';
import { isValidMixerName, parseCallUri, parsePartyUri } from './address.js';
import { badRequest, rayoError, unsupportedCommand, unsupportedOption, overLimit, type RayoError } from './errors.js';
import {
  Attrs,
  childrenOf,
  EMPTY_SCOPE,
  fail,
  isRayoNamespace,
  NS_EXT,
  NS_INPUT,
  NS_OUTPUT,
  NS_PROMPT,
  NS_RAYO,
  NS_RECORD,
  quote,
  RayoFailure,
  resolve,
  type NsScope,
  type Resolved,
} from './namespaces.js';

// ---------------------------------------------------------------------------------------------
// Types

/** A `<header name value>`; several with one name form an ordered list of values. */
export interface Header {
  readonly name: string;
  readonly value: string;
}

export type JoinDirection = 'duplex' | 'send' | 'recv';
export type JoinMedia = 'bridge' | 'direct';
/** Exactly one of call-uri and mixer-name (join, joined, unjoined). */
export type JoinTarget = { readonly kind: 'call'; readonly callUri: string } | { readonly kind: 'mixer'; readonly mixerName: string };

export interface DialCommand {
  readonly kind: 'dial';
  readonly to: string;
  readonly from?: string;
  /** The call URI the client wants the new call to have (an `xmpp:` URI). */
  readonly uri?: string;
  /** ms; -1 (the default): no limit. */
  readonly timeout: number;
  readonly headers: readonly Header[];
  /** Nested joins: the new call is joined as they say instead of to the media server. */
  readonly joins: readonly JoinCommand[];
}

export interface HeadersOnlyCommand {
  readonly kind: 'accept' | 'answer' | 'hangup';
  readonly headers: readonly Header[];
}

export interface RedirectCommand {
  readonly kind: 'redirect';
  readonly to: string;
  readonly headers: readonly Header[];
}

export type RejectReason = 'decline' | 'busy' | 'error';

export interface RejectCommand {
  readonly kind: 'reject';
  /**
   * The XEP says `reject` MUST hold one reason, but its own example 082 has none; such a
   * reject is taken as `decline` ("refused for an unspecified reason") and `reasonGiven` is false.
   */
  readonly reason: RejectReason;
  readonly reasonGiven: boolean;
  readonly headers: readonly Header[];
}

export interface JoinCommand {
  readonly kind: 'join';
  readonly target: JoinTarget;
  readonly direction: JoinDirection;
  readonly media: JoinMedia;
}

export interface UnjoinCommand {
  readonly kind: 'unjoin';
  /** Undefined: break every join of the call. */
  readonly target?: JoinTarget;
}

/** A document to render: fetched from a URL, or given inline with its content type. */
export type OutputDocument =
  | { readonly kind: 'url'; readonly url: string }
  | { readonly kind: 'inline'; readonly contentType: string; readonly content: string };

export interface OutputComponent {
  readonly kind: 'output';
  /** ms skipped before rendering starts. */
  readonly startOffset: number;
  readonly startPaused: boolean;
  /** ms of silence between repeats. */
  readonly repeatInterval: number;
  /** How many times to play; 0: forever. */
  readonly repeatTimes: number;
  /** ms including repeats; -1: no limit. */
  readonly maxTime: number;
  readonly renderer?: string;
  readonly voice?: string;
  readonly documents: readonly OutputDocument[];
}

export type InputMode = 'any' | 'dtmf' | 'voice' | 'cpa';

/** A grammar: fetched from a URL, or given inline with its content type. */
export type Grammar =
  | { readonly kind: 'url'; readonly url: string }
  | { readonly kind: 'inline'; readonly contentType: string; readonly content: string };

export interface InputComponent {
  readonly kind: 'input';
  /**
   * The XEP's formal definition gives `any` as the default, its schema `dtmf`; the text
   * (formal definition) is followed.
   */
  readonly mode: InputMode;
  readonly terminator?: string;
  readonly recognizer?: string;
  readonly language: string;
  /** ms; -1: none. */
  readonly initialTimeout: number;
  readonly interDigitTimeout: number;
  readonly recognitionTimeout: number;
  readonly maxSilence: number;
  /** 0..1 */
  readonly sensitivity: number;
  readonly minConfidence: number;
  readonly matchContentType: string;
  readonly grammars: readonly Grammar[];
}

export interface PromptComponent {
  readonly kind: 'prompt';
  readonly bargeIn: boolean;
  readonly output: OutputComponent;
  readonly input: InputComponent;
}

export type RecordDirection = 'duplex' | 'send' | 'recv';

export interface RecordComponent {
  readonly kind: 'record';
  readonly format: string;
  readonly startBeep: boolean;
  readonly stopBeep: boolean;
  readonly startPaused: boolean;
  /** ms; -1: none. */
  readonly maxDuration: number;
  readonly initialTimeout: number;
  readonly finalTimeout: number;
  readonly direction: RecordDirection;
  readonly mix: boolean;
  /** Format-specific hints; the recorder ignores those it does not understand. */
  readonly hints: readonly Header[];
}

/** The component kinds, by the command that starts them. */
export type ComponentKind = 'output' | 'input' | 'prompt' | 'record';

export type ComponentCommand =
  | { readonly kind: 'stop' }
  | { readonly kind: 'pause' | 'resume'; readonly component: 'output' | 'record' }
  | { readonly kind: 'speed-up' | 'speed-down' | 'volume-up' | 'volume-down'; readonly component: 'output' }
  | { readonly kind: 'seek'; readonly component: 'output'; readonly direction: 'forward' | 'back'; readonly amount: number };

export type CallCommand = HeadersOnlyCommand | RedirectCommand | RejectCommand | JoinCommand | UnjoinCommand;
export type StartComponent = OutputComponent | InputComponent | PromptComponent | RecordComponent;
export type RayoCommand = DialCommand | CallCommand | StartComponent | ComponentCommand;

// ---------------------------------------------------------------------------------------------
// Limits

export const LIMITS = {
  headers: 64,
  joins: 16,
  documents: 32,
  grammars: 16,
  hints: 32,
  /** Characters of a header value, a hint value. */
  valueChars: 8192,
  /** Characters of an inline document or grammar. */
  bodyChars: 256 * 1024,
  repeatTimes: 10_000,
} as const;

// ---------------------------------------------------------------------------------------------
// Parsing

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: RayoError };

/**
 * Reads the payload of an `<iq type='set'>` (the one child element) as a Rayo command.
 * Never throws: a malformed command is a RayoError (bad-request for what the XEP forbids,
 * feature-not-implemented for an unknown element or attribute, policy-violation beyond the
 * limits). `scope` is the namespace scope of the iq, for payloads that use a prefix declared there.
 */
export function parseCommand(payload: XmlElement, scope: NsScope = EMPTY_SCOPE): ParseResult<RayoCommand> {
  try {
    return { ok: true, value: readCommand(resolve(payload, scope)) };
  } catch (err) {
    if (err instanceof RayoFailure) return { ok: false, error: err.error };
    return { ok: false, error: rayoError('internal-server-error', 'the command could not be read') };
  }
}

/** The iq's one payload element, after checking the iq is a set (what a command must be). */
export function commandPayload(iq: XmlElement): ParseResult<XmlElement> {
  if (iq.name !== 'iq') return { ok: false, error: badRequest('a Rayo command is sent in an iq') };
  if (iq.attrs.type !== 'set') return { ok: false, error: badRequest(`a Rayo command is sent in an iq of type set, not ${quote(iq.attrs.type ?? '')}`) };
  const children = iq.elements().filter((c) => c.name !== 'error');
  if (children.length !== 1) return { ok: false, error: badRequest(`an iq set carries exactly one command, not ${children.length}`) };
  return { ok: true, value: children[0]! };
}

/** True when the element (child of an iq) is in one of the Rayo namespaces: for routing. */
export function isRayoPayload(payload: XmlElement, scope: NsScope = EMPTY_SCOPE): boolean {
  return isRayoNamespace(resolve(payload, scope).ns);
}

function readCommand(r: Resolved): RayoCommand {
  switch (r.ns) {
    case NS_RAYO:
      switch (r.local) {
        case 'dial':
          return readDial(r);
        case 'accept':
        case 'answer':
        case 'hangup':
          return readHeadersOnly(r, r.local);
        case 'redirect':
          return readRedirect(r);
        case 'reject':
          return readReject(r);
        case 'join':
          return readJoin(r);
        case 'unjoin':
          return readUnjoin(r);
      }
      break;
    case NS_EXT:
      if (r.local === 'stop') {
        empty(r, '<stop>');
        return { kind: 'stop' };
      }
      break;
    case NS_OUTPUT:
      switch (r.local) {
        case 'output':
          return readOutput(r);
        case 'pause':
        case 'resume':
          empty(r, `<${r.local}>`);
          return { kind: r.local as 'pause' | 'resume', component: 'output' };
        case 'speed-up':
        case 'speed-down':
        case 'volume-up':
        case 'volume-down':
          empty(r, `<${r.local}>`);
          return { kind: r.local as 'speed-up' | 'speed-down' | 'volume-up' | 'volume-down', component: 'output' };
        case 'seek':
          return readSeek(r);
      }
      break;
    case NS_INPUT:
      if (r.local === 'input') return readInput(r);
      break;
    case NS_PROMPT:
      if (r.local === 'prompt') return readPrompt(r);
      break;
    case NS_RECORD:
      switch (r.local) {
        case 'record':
          return readRecord(r);
        case 'pause':
        case 'resume':
          empty(r, `<${r.local}>`);
          return { kind: r.local as 'pause' | 'resume', component: 'record' };
      }
      break;
  }
  if (isRayoNamespace(r.ns)) return fail(unsupportedCommand(`<${r.local} xmlns='${r.ns}'> is not a Rayo command this server implements`));
  return fail(unsupportedCommand(`<${r.local}${r.ns ? ` xmlns='${r.ns}'` : ''}> is not a Rayo command`));
}

/** An element that must be empty and have no attributes. */
function empty(r: Resolved, label: string): void {
  new Attrs(r.element, label).finish();
  noChildren(r, label);
}

function noChildren(r: Resolved, label: string): void {
  const child = r.element.elements()[0];
  if (child) fail(badRequest(`${label} must be empty, not hold <${child.name}>`));
  if (r.element.text().trim() !== '') fail(badRequest(`${label} must be empty, not hold text`));
}

function noText(r: Resolved, label: string): void {
  if (r.element.text().trim() !== '') fail(badRequest(`${label} holds text where only elements belong`));
}

function unexpectedChild(parent: string, child: Resolved): never {
  return fail(badRequest(`${parent} cannot hold <${child.local}${child.ns ? ` xmlns='${child.ns}'` : ''}>`));
}

/** A `<header>` (or a record `<hint>`): name and value, both required. */
function readNameValue(r: Resolved, label: string): Header {
  const attrs = new Attrs(r.element, label);
  const name = attrs.required('name');
  if (label === '<header>' && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) fail(badRequest(`the header name ${quote(name)} is not a token`));
  const value = attrs.long('value');
  if (value === undefined) fail(badRequest(`${label} ${quote(name)} needs a value attribute`));
  if (value.length > LIMITS.valueChars) fail(overLimit(`the value of ${label} ${quote(name)} is longer than ${LIMITS.valueChars} characters`));
  attrs.finish();
  noChildren(r, label);
  return { name, value };
}

/** Reads the children of a command that may hold headers and, per `other`, something else. */
function readHeaders(r: Resolved, label: string, other?: (child: Resolved) => boolean): Header[] {
  noText(r, label);
  const headers: Header[] = [];
  for (const child of childrenOf(r)) {
    if (child.ns === NS_RAYO && child.local === 'header') {
      if (headers.length >= LIMITS.headers) fail(overLimit(`${label} has more than ${LIMITS.headers} headers`));
      headers.push(readNameValue(child, '<header>'));
    } else if (!other?.(child)) {
      unexpectedChild(label, child);
    }
  }
  return headers;
}

function party(attrs: Attrs, name: string, required: true): string;
function party(attrs: Attrs, name: string, required: false): string | undefined;
function party(attrs: Attrs, name: string, required: boolean): string | undefined {
  const value = required ? attrs.required(name) : attrs.string(name);
  if (value === undefined) return undefined;
  const parsed = parsePartyUri(value.trim(), `${name} of ${attrs.label}`);
  if ('condition' in parsed) fail(parsed);
  return value.trim();
}

function readDial(r: Resolved): DialCommand {
  const attrs = new Attrs(r.element, '<dial>');
  const to = party(attrs, 'to', true);
  const from = party(attrs, 'from', false);
  const uriText = attrs.string('uri')?.trim();
  if (uriText !== undefined) {
    const jid = parseCallUri(uriText, 'uri of <dial>');
    if ('condition' in jid) fail(jid);
  }
  const timeout = attrs.integer('timeout', -1, -1);
  attrs.finish();
  const joins: JoinCommand[] = [];
  const headers = readHeaders(r, '<dial>', (child) => {
    if (child.ns !== NS_RAYO || child.local !== 'join') return false;
    if (joins.length >= LIMITS.joins) fail(overLimit(`<dial> has more than ${LIMITS.joins} joins`));
    joins.push(readJoin(child));
    return true;
  });
  return { kind: 'dial', to, ...(from !== undefined && { from }), ...(uriText !== undefined && { uri: uriText }), timeout, headers, joins };
}

function readHeadersOnly(r: Resolved, kind: 'accept' | 'answer' | 'hangup'): HeadersOnlyCommand {
  new Attrs(r.element, `<${kind}>`).finish();
  return { kind, headers: readHeaders(r, `<${kind}>`) };
}

function readRedirect(r: Resolved): RedirectCommand {
  const attrs = new Attrs(r.element, '<redirect>');
  const to = party(attrs, 'to', true);
  attrs.finish();
  return { kind: 'redirect', to, headers: readHeaders(r, '<redirect>') };
}

const REJECT_REASONS: readonly RejectReason[] = ['decline', 'busy', 'error'];

function readReject(r: Resolved): RejectCommand {
  new Attrs(r.element, '<reject>').finish();
  let reason: RejectReason | undefined;
  const headers = readHeaders(r, '<reject>', (child) => {
    if (child.ns !== NS_RAYO || !(REJECT_REASONS as readonly string[]).includes(child.local)) return false;
    if (reason !== undefined) fail(badRequest(`<reject> holds more than one reason (<${reason}> and <${child.local}>)`));
    empty(child, `<${child.local}>`);
    reason = child.local as RejectReason;
    return true;
  });
  return { kind: 'reject', reason: reason ?? 'decline', reasonGiven: reason !== undefined, headers };
}

/** call-uri / mixer-name: exactly one when `required`, at most one otherwise. */
function joinTarget(attrs: Attrs, required: boolean): JoinTarget | undefined {
  const callUri = attrs.string('call-uri');
  const mixerName = attrs.string('mixer-name');
  if (callUri !== undefined && mixerName !== undefined) fail(badRequest(`${attrs.label} names both a call-uri and a mixer-name`));
  if (callUri !== undefined) {
    const jid = parseCallUri(callUri.trim(), `call-uri of ${attrs.label}`);
    if ('condition' in jid) fail(jid);
    return { kind: 'call', callUri: callUri.trim() };
  }
  if (mixerName !== undefined) {
    const name = mixerName.trim();
    if (!isValidMixerName(name)) fail(badRequest(`the mixer-name of ${attrs.label} is not a usable name: ${quote(mixerName)}`));
    return { kind: 'mixer', mixerName: name };
  }
  if (required) fail(badRequest(`${attrs.label} needs a call-uri or a mixer-name`));
  return undefined;
}

function readJoin(r: Resolved): JoinCommand {
  const attrs = new Attrs(r.element, '<join>');
  const target = joinTarget(attrs, true)!;
  const direction = attrs.oneOf('direction', ['duplex', 'send', 'recv'] as const, 'duplex');
  const media = attrs.oneOf('media', ['bridge', 'direct'] as const, 'bridge');
  attrs.finish();
  noChildren(r, '<join>');
  return { kind: 'join', target, direction, media };
}

function readUnjoin(r: Resolved): UnjoinCommand {
  const attrs = new Attrs(r.element, '<unjoin>');
  const target = joinTarget(attrs, false);
  attrs.finish();
  noChildren(r, '<unjoin>');
  return target ? { kind: 'unjoin', target } : { kind: 'unjoin' };
}

/** A `<document>` or `<grammar>`: `url`, or `content-type` and a body, never both. */
function readSource(r: Resolved, label: string): OutputDocument {
  const attrs = new Attrs(r.element, label);
  const url = attrs.string('url')?.trim();
  const contentType = attrs.string('content-type')?.trim() || undefined;
  attrs.finish();
  const child = r.element.elements()[0];
  if (child) fail(badRequest(`${label} holds an element <${child.name}>: give the document as CDATA or escaped text`));
  const content = r.element.text();
  if (url !== undefined) {
    if (contentType !== undefined) fail(badRequest(`${label} has both a url and a content-type`));
    if (content.trim() !== '') fail(badRequest(`${label} has both a url and a body`));
    if (url === '') fail(badRequest(`the url of ${label} is empty`));
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(url)) fail(badRequest(`the url of ${label} is not an absolute URI: ${quote(url)}`));
    return { kind: 'url', url };
  }
  if (contentType === undefined) fail(badRequest(`${label} needs a url, or a content-type and a body`));
  if (!CONTENT_TYPE.test(contentType)) fail(badRequest(`the content-type of ${label} is not a media type: ${quote(contentType)}`));
  if (content.trim() === '') fail(badRequest(`${label} of type ${contentType} has no body`));
  if (content.length > LIMITS.bodyChars) fail(overLimit(`the body of ${label} is longer than ${LIMITS.bodyChars} characters`));
  return { kind: 'inline', contentType, content };
}

const VOICE = /^[\p{L}\p{N}_][\p{L}\p{N} _+.,()-]{0,127}$/u;
const MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+$/;
/** A media type with optional parameters (`application/srgs+xml; charset=UTF-8`). */
const CONTENT_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=([A-Za-z0-9!#$&^_.+-]+|"[^"\\]*"))*$/;

function readOutput(r: Resolved): OutputComponent {
  const attrs = new Attrs(r.element, '<output>');
  const startOffset = attrs.integer('start-offset', 0, 0);
  const startPaused = attrs.boolean('start-paused', false);
  const repeatInterval = attrs.integer('repeat-interval', 0, 0);
  const repeatTimes = attrs.integer('repeat-times', 1, 0, LIMITS.repeatTimes, '');
  const maxTime = attrs.integer('max-time', -1, -1);
  const renderer = attrs.token('renderer');
  const voice = attrs.string('voice')?.trim() || undefined;
  // A voice is a name the TTS engine knows; what cannot be one (an option, markup) is refused here.
  if (voice !== undefined && !VOICE.test(voice)) fail(unsupportedOption(`the voice of <output> is not a voice name: ${quote(voice)}`));
  attrs.finish();
  noText(r, '<output>');
  const documents: OutputDocument[] = [];
  for (const child of childrenOf(r)) {
    if (child.ns !== NS_OUTPUT || child.local !== 'document') unexpectedChild('<output>', child);
    if (documents.length >= LIMITS.documents) fail(overLimit(`<output> has more than ${LIMITS.documents} documents`));
    documents.push(readSource(child, '<document>'));
  }
  if (documents.length === 0) fail(badRequest('<output> needs at least one <document>'));
  return {
    kind: 'output',
    startOffset,
    startPaused,
    repeatInterval,
    repeatTimes,
    maxTime,
    ...(renderer !== undefined && { renderer }),
    ...(voice !== undefined && { voice }),
    documents,
  };
}

function readSeek(r: Resolved): ComponentCommand {
  const attrs = new Attrs(r.element, '<seek>');
  if (r.element.attrs.direction === undefined) fail(badRequest('<seek> needs a direction attribute'));
  if (r.element.attrs.amount === undefined) fail(badRequest('<seek> needs an amount attribute'));
  const direction = attrs.oneOf('direction', ['forward', 'back'] as const, 'forward');
  const amount = attrs.integer('amount', 0, 0);
  attrs.finish();
  noChildren(r, '<seek>');
  return { kind: 'seek', component: 'output', direction, amount };
}

const LANGUAGE = /^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$/;

function readInput(r: Resolved): InputComponent {
  const attrs = new Attrs(r.element, '<input>');
  const mode = attrs.oneOf('mode', ['any', 'dtmf', 'voice', 'cpa'] as const, 'any');
  const terminator = attrs.token('terminator');
  const recognizer = attrs.token('recognizer');
  const language = attrs.token('language') ?? 'en-US';
  if (!LANGUAGE.test(language)) fail(badRequest(`the language of <input> is not a language tag: ${quote(language)}`));
  const initialTimeout = attrs.integer('initial-timeout', -1, -1);
  const interDigitTimeout = attrs.integer('inter-digit-timeout', -1, -1);
  const recognitionTimeout = attrs.integer('recognition-timeout', -1, -1);
  const sensitivity = attrs.fraction('sensitivity', 0.5);
  const minConfidence = attrs.fraction('min-confidence', 0);
  const maxSilence = attrs.integer('max-silence', -1, -1);
  const matchContentType = attrs.token('match-content-type') ?? 'application/nlsml+xml';
  if (!MEDIA_TYPE.test(matchContentType)) fail(badRequest(`the match-content-type of <input> is not a media type: ${quote(matchContentType)}`));
  attrs.finish();
  noText(r, '<input>');
  const grammars: Grammar[] = [];
  for (const child of childrenOf(r)) {
    if (child.ns !== NS_INPUT || child.local !== 'grammar') unexpectedChild('<input>', child);
    if (grammars.length >= LIMITS.grammars) fail(overLimit(`<input> has more than ${LIMITS.grammars} grammars`));
    grammars.push(readSource(child, '<grammar>'));
  }
  if (grammars.length === 0) fail(badRequest('<input> needs at least one <grammar>'));
  return {
    kind: 'input',
    mode,
    ...(terminator !== undefined && { terminator }),
    ...(recognizer !== undefined && { recognizer }),
    language,
    initialTimeout,
    interDigitTimeout,
    recognitionTimeout,
    maxSilence,
    sensitivity,
    minConfidence,
    matchContentType,
    grammars,
  };
}

function readPrompt(r: Resolved): PromptComponent {
  const attrs = new Attrs(r.element, '<prompt>');
  const bargeIn = attrs.boolean('barge-in', true);
  attrs.finish();
  noText(r, '<prompt>');
  let output: OutputComponent | undefined;
  let input: InputComponent | undefined;
  for (const child of childrenOf(r)) {
    if (child.ns === NS_OUTPUT && child.local === 'output') {
      if (output) fail(badRequest('<prompt> holds more than one <output>'));
      output = readOutput(child);
    } else if (child.ns === NS_INPUT && child.local === 'input') {
      if (input) fail(badRequest('<prompt> holds more than one <input>'));
      input = readInput(child);
    } else {
      unexpectedChild('<prompt>', child);
    }
  }
  if (!output) fail(badRequest("<prompt> needs an <output xmlns='urn:xmpp:rayo:output:1'>"));
  if (!input) fail(badRequest("<prompt> needs an <input xmlns='urn:xmpp:rayo:input:1'>"));
  return { kind: 'prompt', bargeIn, output, input };
}

function readRecord(r: Resolved): RecordComponent {
  const attrs = new Attrs(r.element, '<record>');
  const format = attrs.token('format') ?? 'wav';
  if (!/^[A-Za-z0-9][A-Za-z0-9.+_-]{0,31}$/.test(format)) fail(badRequest(`the format of <record> is not a format name: ${quote(format)}`));
  const startBeep = attrs.boolean('start-beep', false);
  const stopBeep = attrs.boolean('stop-beep', false);
  const startPaused = attrs.boolean('start-paused', false);
  const maxDuration = attrs.integer('max-duration', -1, -1);
  const initialTimeout = attrs.integer('initial-timeout', -1, -1);
  const finalTimeout = attrs.integer('final-timeout', -1, -1);
  const direction = attrs.oneOf('direction', ['duplex', 'send', 'recv'] as const, 'duplex');
  const mix = attrs.boolean('mix', false);
  attrs.finish();
  noText(r, '<record>');
  const hints: Header[] = [];
  for (const child of childrenOf(r)) {
    if (child.ns !== NS_RECORD || child.local !== 'hint') unexpectedChild('<record>', child);
    if (hints.length >= LIMITS.hints) fail(overLimit(`<record> has more than ${LIMITS.hints} hints`));
    hints.push(readNameValue(child, '<hint>'));
  }
  return { kind: 'record', format, startBeep, stopBeep, startPaused, maxDuration, initialTimeout, finalTimeout, direction, mix, hints };
}

// ---------------------------------------------------------------------------------------------
// Where a command may be sent

/** The entity a command is addressed to. */
export type CommandTarget = 'service' | 'call' | 'mixer' | { readonly component: ComponentKind };

/**
 * Whether `target` accepts `command` (XEP: dial to the service; call control to calls;
 * output, input and record to calls and mixers, prompt to calls; stop to any component;
 * pause/resume to output and record components, the other output commands to output
 * components; a prompt takes the commands of its output and input). A command an entity
 * does not implement is feature-not-implemented (cancel), as for a component (example 054).
 */
export function commandError(target: CommandTarget, command: RayoCommand): RayoError | undefined {
  const where = typeof target === 'string' ? target : `${target.component} component`;
  const refuse = (): RayoError => unsupportedCommand(`a ${where} does not take <${command.kind}>`);
  switch (command.kind) {
    case 'dial':
      return target === 'service' ? undefined : refuse();
    case 'accept':
    case 'answer':
    case 'hangup':
    case 'redirect':
    case 'reject':
    case 'join':
    case 'unjoin':
      return target === 'call' ? undefined : refuse();
    case 'output':
    case 'input':
    case 'record':
      return target === 'call' || target === 'mixer' ? undefined : refuse();
    case 'prompt':
      return target === 'call' ? undefined : refuse();
    case 'stop':
      return typeof target === 'object' ? undefined : refuse();
    default: {
      if (typeof target !== 'object') return refuse();
      const host = target.component === 'prompt' ? 'output' : target.component;
      return host === command.component ? undefined : refuse();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Building

function headerElements(headers: readonly Header[]): XmlElement[] {
  return headers.map((h) => el('header', { name: h.name, value: h.value }));
}

function targetAttrs(target: JoinTarget | undefined): Record<string, string | undefined> {
  if (!target) return {};
  return target.kind === 'call' ? { 'call-uri': target.callUri } : { 'mixer-name': target.mixerName };
}

/** An attribute value, or undefined when it equals the default (left out). */
function nonDefault<T extends string | number | boolean>(value: T, fallback: T): T | undefined {
  return value === fallback ? undefined : value;
}

function sourceElement(name: 'document' | 'grammar', source: OutputDocument | Grammar): XmlElement {
  return source.kind === 'url' ? el(name, { url: source.url }) : el(name, { 'content-type': source.contentType }, source.content);
}

/** The XML of a command, carrying its own `xmlns`. */
export function buildCommand(command: RayoCommand, withNs = true): XmlElement {
  const ns = (uri: string): Record<string, string> => (withNs ? { xmlns: uri } : {});
  switch (command.kind) {
    case 'dial':
      return el(
        'dial',
        { ...ns(NS_RAYO), to: command.to, from: command.from, uri: command.uri, timeout: nonDefault(command.timeout, -1) },
        ...headerElements(command.headers),
        ...command.joins.map((j) => buildCommand(j, false)),
      );
    case 'accept':
    case 'answer':
    case 'hangup':
      return el(command.kind, ns(NS_RAYO), ...headerElements(command.headers));
    case 'redirect':
      return el('redirect', { ...ns(NS_RAYO), to: command.to }, ...headerElements(command.headers));
    case 'reject':
      return el('reject', ns(NS_RAYO), command.reasonGiven ? el(command.reason) : undefined, ...headerElements(command.headers));
    case 'join':
      return el('join', {
        ...ns(NS_RAYO),
        ...targetAttrs(command.target),
        direction: nonDefault(command.direction, 'duplex'),
        media: nonDefault(command.media, 'bridge'),
      });
    case 'unjoin':
      return el('unjoin', { ...ns(NS_RAYO), ...targetAttrs(command.target) });
    case 'output':
      return el(
        'output',
        {
          ...ns(NS_OUTPUT),
          'start-offset': nonDefault(command.startOffset, 0),
          'start-paused': nonDefault(command.startPaused, false),
          'repeat-interval': nonDefault(command.repeatInterval, 0),
          'repeat-times': nonDefault(command.repeatTimes, 1),
          'max-time': nonDefault(command.maxTime, -1),
          renderer: command.renderer,
          voice: command.voice,
        },
        ...command.documents.map((d) => sourceElement('document', d)),
      );
    case 'input':
      return el(
        'input',
        {
          ...ns(NS_INPUT),
          mode: nonDefault(command.mode, 'any'),
          terminator: command.terminator,
          recognizer: command.recognizer,
          language: nonDefault(command.language, 'en-US'),
          'initial-timeout': nonDefault(command.initialTimeout, -1),
          'inter-digit-timeout': nonDefault(command.interDigitTimeout, -1),
          'recognition-timeout': nonDefault(command.recognitionTimeout, -1),
          sensitivity: nonDefault(command.sensitivity, 0.5),
          'min-confidence': nonDefault(command.minConfidence, 0),
          'max-silence': nonDefault(command.maxSilence, -1),
          'match-content-type': nonDefault(command.matchContentType, 'application/nlsml+xml'),
        },
        ...command.grammars.map((g) => sourceElement('grammar', g)),
      );
    case 'prompt':
      return el('prompt', { ...ns(NS_PROMPT), 'barge-in': nonDefault(command.bargeIn, true) }, buildCommand(command.output), buildCommand(command.input));
    case 'record':
      return el(
        'record',
        {
          ...ns(NS_RECORD),
          format: nonDefault(command.format, 'wav'),
          'start-beep': nonDefault(command.startBeep, false),
          'stop-beep': nonDefault(command.stopBeep, false),
          'start-paused': nonDefault(command.startPaused, false),
          'max-duration': nonDefault(command.maxDuration, -1),
          'initial-timeout': nonDefault(command.initialTimeout, -1),
          'final-timeout': nonDefault(command.finalTimeout, -1),
          direction: nonDefault(command.direction, 'duplex'),
          mix: nonDefault(command.mix, false),
        },
        ...command.hints.map((h) => el('hint', { name: h.name, value: h.value })),
      );
    case 'stop':
      return el('stop', ns(NS_EXT));
    case 'seek':
      return el('seek', { ...ns(NS_OUTPUT), direction: command.direction, amount: command.amount });
    default:
      return el(command.kind, ns(command.component === 'record' ? NS_RECORD : NS_OUTPUT));
  }
}

/** `<iq type='set'>` carrying a command (what a client sends). */
export function buildCommandIq(address: { from: string; to: string; id: string }, command: RayoCommand): XmlElement {
  return el('iq', { from: address.from, to: address.to, type: 'set', id: address.id }, buildCommand(command));
}
