/**
 * What a rule may say: the rule sets, their conditions, operators and actions, the
 * RulesAllowed modes, the limits, and the validation that turns what a client sent into a
 * stored rule (or a clear error). Pure: no store, no XML.
 */
import type { RuleAction, RuleCondition, RuleRecord } from '../../store/rules.js';
import { ServiceError } from '../errors.js';
import { parseFlagChange } from '../mail/flags.js';
import { normalizeMailboxName } from '../mail/names.js';
import { datasetReference, parseSize, splitPatterns } from './match.js';

export type { RuleAction, RuleCondition, RuleRecord } from '../../store/rules.js';

// ---------------------------------------------------------------------------------------
// Limits

export const RULE_LIMITS = Object.freeze({
  /** Rules per account and rule set. */
  rules: 100,
  conditionsPerRule: 32,
  actionsPerRule: 32,
  nameLength: 256,
  /** A condition parameter, or a one-line action parameter. */
  parameterLength: 4096,
  /** Texts: Reply with, Reply to All with, Reject with, Add Header. */
  textLength: 16_384,
  commentLength: 4096,
  /** Addresses in one Redirect to / Mirror to / Forward to. */
  addressesPerAction: 20,
  headerLines: 20,
});

// ---------------------------------------------------------------------------------------
// Rule sets and RulesAllowed

export const RULE_TYPES = ['mailIn', 'signalIn'] as const;
export type RuleType = (typeof RULE_TYPES)[number];

// The modes live in a module of their own (no XML, no store): the settings registry reads them too.
export { ALLOWED_MODES, modeAllows, parseAllowedMode, type AllowedMode } from './modes.js';
import { modeAllows, type AllowedMode } from './modes.js';

/** How a condition reads the message, and so which operators and parameters it takes. */
export type ConditionKind = 'address' | 'text' | 'header' | 'size' | 'flag' | 'signal';

export interface ConditionSpec {
  readonly name: string;
  readonly kind: ConditionKind;
  readonly operators: readonly string[];
}

export type ActionKind =
  | 'store'
  | 'mark'
  | 'addHeader'
  | 'tagSubject'
  | 'discard'
  | 'reject'
  | 'stop'
  | 'remember'
  | 'reply'
  | 'replyAll'
  | 'redirect'
  | 'mirror'
  | 'forward'
  | 'fork';

export interface ActionSpec {
  readonly name: string;
  readonly kind: ActionKind;
  /** The least restrictive RulesAllowed mode needed to write a rule with this action. */
  readonly allowedSet: AllowedMode;
  readonly parameter: 'none' | 'optional' | 'required';
}

export interface RuleSetSpec {
  readonly type: RuleType;
  /** The account setting that limits what a user may write. */
  readonly setting: 'RulesAllowed' | 'SignalRulesAllowed';
  readonly conditions: readonly ConditionSpec[];
  readonly actions: readonly ActionSpec[];
  /** Whether rules of this set have a `stage`. */
  readonly staged: boolean;
}

export const MATCH_OPERATORS = ['is', 'is not', 'in', 'not in'] as const;
export const SIZE_OPERATORS = ['greater than', 'less than'] as const;
/** The operator of a condition without a parameter ("Human Generated"). */
export const NO_OPERATOR = '---';
const ALL_OPERATORS = [...MATCH_OPERATORS, ...SIZE_OPERATORS, NO_OPERATOR];

const MAIL_CONDITIONS: readonly ConditionSpec[] = [
  ...['From', 'Sender', 'Return-Path', 'To', 'Cc', 'Any To or Cc', 'Each To or Cc', 'Reply-To'].map(
    (name): ConditionSpec => ({ name, kind: 'address', operators: MATCH_OPERATORS }),
  ),
  { name: 'Subject', kind: 'text', operators: MATCH_OPERATORS },
  { name: 'Message-ID', kind: 'text', operators: MATCH_OPERATORS },
  { name: 'Header Field', kind: 'header', operators: MATCH_OPERATORS },
  { name: 'Message Size', kind: 'size', operators: SIZE_OPERATORS },
  { name: 'Source', kind: 'text', operators: MATCH_OPERATORS },
  { name: 'Human Generated', kind: 'flag', operators: [NO_OPERATOR] },
];

const MAIL_ACTIONS: readonly ActionSpec[] = [
  { name: 'Store in', kind: 'store', allowedSet: 'Filter Only', parameter: 'required' },
  { name: 'Mark', kind: 'mark', allowedSet: 'Filter Only', parameter: 'required' },
  { name: 'Add Header', kind: 'addHeader', allowedSet: 'Filter Only', parameter: 'required' },
  { name: 'Tag Subject', kind: 'tagSubject', allowedSet: 'Filter Only', parameter: 'required' },
  { name: 'Discard', kind: 'discard', allowedSet: 'Filter Only', parameter: 'none' },
  { name: 'Reject with', kind: 'reject', allowedSet: 'Filter Only', parameter: 'optional' },
  { name: 'Stop Processing', kind: 'stop', allowedSet: 'Filter Only', parameter: 'none' },
  { name: "Remember 'From' in", kind: 'remember', allowedSet: 'Filter Only', parameter: 'required' },
  { name: 'Reply with', kind: 'reply', allowedSet: 'No Redirect', parameter: 'required' },
  { name: 'Reply to All with', kind: 'replyAll', allowedSet: 'No Redirect', parameter: 'required' },
  { name: 'Redirect to', kind: 'redirect', allowedSet: 'Any', parameter: 'required' },
  { name: 'Mirror to', kind: 'mirror', allowedSet: 'Any', parameter: 'required' },
  { name: 'Forward to', kind: 'forward', allowedSet: 'Any', parameter: 'required' },
];

/** Signal Rules: what the call engine does with a call for the account (src/services/calls/signal-rules.ts). */
const SIGNAL_CONDITIONS: readonly ConditionSpec[] = [
  { name: 'From', kind: 'signal', operators: MATCH_OPERATORS },
  { name: 'To', kind: 'signal', operators: MATCH_OPERATORS },
  { name: 'Method', kind: 'signal', operators: MATCH_OPERATORS },
  { name: 'Presence', kind: 'signal', operators: MATCH_OPERATORS },
  { name: 'Current Day', kind: 'signal', operators: MATCH_OPERATORS },
  { name: 'Time of Day', kind: 'signal', operators: SIZE_OPERATORS },
  { name: 'Current Date', kind: 'signal', operators: SIZE_OPERATORS },
  { name: 'Pending Time', kind: 'signal', operators: SIZE_OPERATORS },
  { name: 'Human Generated', kind: 'flag', operators: [NO_OPERATOR] },
];

const SIGNAL_ACTIONS: readonly ActionSpec[] = [
  { name: 'Reject with', kind: 'reject', allowedSet: 'Filter Only', parameter: 'optional' },
  { name: 'Stop Processing', kind: 'stop', allowedSet: 'Filter Only', parameter: 'none' },
  { name: "Remember 'From' in", kind: 'remember', allowedSet: 'Filter Only', parameter: 'required' },
  { name: 'Redirect to', kind: 'fork', allowedSet: 'Any', parameter: 'required' },
  { name: 'Fork to', kind: 'fork', allowedSet: 'Any', parameter: 'required' },
];

export const RULE_SETS: Readonly<Record<RuleType, RuleSetSpec>> = Object.freeze({
  mailIn: { type: 'mailIn', setting: 'RulesAllowed', conditions: MAIL_CONDITIONS, actions: MAIL_ACTIONS, staged: false },
  signalIn: { type: 'signalIn', setting: 'SignalRulesAllowed', conditions: SIGNAL_CONDITIONS, actions: SIGNAL_ACTIONS, staged: true },
});

/** A `type` attribute as a rule set; absent means Mail Rules (XIMSS before Signal Rules had none). */
export function parseRuleType(value: string | undefined): RuleType {
  if (value === undefined || value === '') return 'mailIn';
  const type = RULE_TYPES.find((t) => t.toLowerCase() === value.toLowerCase());
  if (!type) throw new ServiceError(`unknown rule type: ${value} (known: ${RULE_TYPES.join(', ')})`);
  return type;
}

export function conditionSpec(type: RuleType, opCode: string): ConditionSpec | undefined {
  return RULE_SETS[type].conditions.find((c) => c.name === opCode);
}

export function actionSpec(type: RuleType, opCode: string): ActionSpec | undefined {
  return RULE_SETS[type].actions.find((a) => a.name === opCode);
}

/**
 * Throws unless every action of `rule` may be written under `mode` (the spec: the user needs
 * the right to the actions of both the new and the old rule). `None` allows no change at all.
 */
export function checkAllowed(type: RuleType, mode: AllowedMode, rule: Pick<RuleRecord, 'actions'> | undefined, what: string): void {
  const setting = RULE_SETS[type].setting;
  if (mode === 'None') throw new ServiceError(`this account may not modify its ${type === 'mailIn' ? 'Mail' : 'Signal'} Rules (${setting} is None)`);
  if (!rule) return;
  for (const action of rule.actions) {
    const spec = actionSpec(type, action.opCode);
    // An action this server does not know (a stored rule from elsewhere) needs Any.
    const required = spec?.allowedSet ?? 'Any';
    if (!modeAllows(mode, required)) {
      throw new ServiceError(`the action "${action.opCode}" of ${what} is not allowed for this account (${setting} is ${mode}; it needs ${required})`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Validation

const CONTROL = /[\u0000-\u001f\u007f]/;
/** Controls other than tab and line ends (allowed in texts). */
const TEXT_CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const FIELD_NAME = /^[!-9;-~]{1,76}$/;

/** A rule as a client sent it: attribute and element texts, unchecked. */
export interface RuleInput {
  type: RuleType;
  name: string | undefined;
  priority: string | undefined;
  stage: string | undefined;
  conditions: { opCode: string | undefined; operator: string | undefined; parameter: string }[];
  actions: { opCode: string | undefined; parameter: string }[];
  comment: string | undefined;
}

export function checkRuleName(name: string | undefined, what = 'rule name'): string {
  if (name === undefined || name.trim() === '') throw new ServiceError(`the ${what} is missing`);
  if (name.length > RULE_LIMITS.nameLength) throw new ServiceError(`the ${what} is too long (at most ${RULE_LIMITS.nameLength} characters)`);
  if (CONTROL.test(name)) throw new ServiceError(`the ${what} contains control characters`);
  return name;
}

export function parsePriority(value: string | undefined): number {
  const text = (value ?? '').trim();
  if (!/^\d{1,2}$/.test(text) || Number(text) > 10) {
    throw new ServiceError(`invalid rule priority "${value ?? ''}": an integer from 0 (inactive) to 10 is expected`);
  }
  return Number(text);
}

const STAGE_WORDS = ['Immediately', 'Busy', 'Error', 'No Answer'];

/** A Signal Rule stage: a delay in seconds or one of the named stages. */
export function parseStage(value: string): string {
  const text = value.trim();
  if (/^\d{1,5}$/.test(text)) return String(Number(text));
  const word = STAGE_WORDS.find((w) => w.toLowerCase() === text.toLowerCase());
  if (!word) throw new ServiceError(`invalid rule stage "${value}": a number of seconds or one of ${STAGE_WORDS.join(', ')} is expected`);
  return word;
}

function checkLength(text: string, max: number, what: string): void {
  if (text.length > max) throw new ServiceError(`${what} is too long (at most ${max} characters)`);
}

/** A parameter that says nothing: empty or `---` (how CommuniGate clients write it). */
export function isNoParameter(parameter: string): boolean {
  const t = parameter.trim();
  return t === '' || t === NO_OPERATOR;
}

function normalizeText(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

/** The addresses of a Redirect to / Mirror to / Forward to parameter, as written (`a@b, Name <c@d>`). */
export function parseTargets(parameter: string): string[] {
  const out: string[] = [];
  for (const piece of parameter.split(/[,;]/)) {
    const trimmed = piece.trim();
    if (trimmed === '') continue;
    const bracketed = /<([^<>]*)>\s*$/.exec(trimmed);
    out.push((bracketed ? bracketed[1]! : trimmed).trim());
  }
  return out;
}

const ADDRESS = /^[^\s@<>()",;:\\[\]]{1,64}(?:@[^\s@<>()",;:\\[\]]{1,253})?$/;

/** An address of a target list, with the account's domain when it has none. */
export function qualifyAddress(address: string, domain: string): string {
  return address.includes('@') ? address : `${address}@${domain}`;
}

/** `Name: value` lines (Add Header, and the header part of a `+` reply text). */
export function parseHeaderLines(text: string, what: string): [string, string][] {
  const fields: [string, string][] = [];
  for (const line of normalizeText(text).split('\n')) {
    if (line.trim() === '') continue;
    if (/^[ \t]/.test(line) && fields.length > 0) {
      // A folded continuation of the previous field.
      fields[fields.length - 1]![1] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).trim();
    if (!FIELD_NAME.test(name)) throw new ServiceError(`${what}: "${line.slice(0, 80)}" is not a "Name: value" header line`);
    fields.push([name, line.slice(colon + 1).trim()]);
  }
  if (fields.length > RULE_LIMITS.headerLines) throw new ServiceError(`${what}: too many header lines (at most ${RULE_LIMITS.headerLines})`);
  return fields;
}

/** Fields a `+` reply text may not set: the server writes them. */
const REPLY_RESERVED = new Set([
  'to', 'cc', 'bcc', 'date', 'message-id', 'in-reply-to', 'references', 'auto-submitted', 'mime-version',
  'return-path', 'received',
]);

export interface ReplyTemplate {
  /** Header fields of a `+` text (Subject, From, ...), in order. */
  fields: [string, string][];
  body: string;
}

/**
 * A "Reply with" text: `+` then header lines, an empty line and the body; otherwise the whole
 * text is the body.
 */
export function parseReplyTemplate(text: string): ReplyTemplate {
  const normalized = normalizeText(text);
  if (!normalized.startsWith('+')) return { fields: [], body: normalized };
  const rest = normalized.slice(1);
  const blank = rest.indexOf('\n\n');
  const head = blank < 0 ? rest : rest.slice(0, blank);
  const body = blank < 0 ? '' : rest.slice(blank + 2);
  const fields = parseHeaderLines(head, 'the reply text');
  for (const [name] of fields) {
    const lower = name.toLowerCase();
    if (REPLY_RESERVED.has(lower) || lower.startsWith('content-') || lower.startsWith('resent-')) {
      throw new ServiceError(`the reply text may not set the ${name} header field`);
    }
  }
  return { fields, body };
}

function checkPatterns(operator: string, parameter: string, what: string): void {
  if (operator === 'in' || operator === 'not in') {
    const dataset = datasetReference(parameter);
    if (dataset !== undefined) {
      checkDatasetName(dataset, what);
      return;
    }
    if (splitPatterns(parameter).length === 0) throw new ServiceError(`${what}: the list of patterns is empty`);
  }
}

function checkDatasetName(name: string, what: string): void {
  if (name === '' || name.length > 255 || CONTROL.test(name)) throw new ServiceError(`${what}: invalid dataset name "${name}"`);
}

function validateCondition(type: RuleType, c: RuleInput['conditions'][number], index: number): RuleCondition {
  const opCode = (c.opCode ?? '').trim();
  if (opCode === '') throw new ServiceError(`condition ${index + 1}: the opCode attribute is missing`);
  const spec = conditionSpec(type, opCode);
  if (!spec) throw new ServiceError(`unknown rule condition "${opCode}"`);
  const what = `condition "${opCode}"`;
  let operator = (c.operator ?? '').trim().replace(/\s+/g, ' ').toLowerCase();
  if (spec.kind === 'flag') {
    if (operator !== '' && operator !== NO_OPERATOR) throw new ServiceError(`${what} takes no operator ("${c.operator}")`);
    return { opCode, operator: NO_OPERATOR, parameter: '' };
  }
  if (operator === '') throw new ServiceError(`${what}: the operator attribute is missing`);
  if (!spec.operators.includes(operator)) {
    throw new ServiceError(
      ALL_OPERATORS.includes(operator)
        ? `${what} does not take the operator "${c.operator}" (it takes: ${spec.operators.join(', ')})`
        : `unknown rule operator "${c.operator}"`,
    );
  }
  const parameter = c.parameter.trim();
  checkLength(parameter, RULE_LIMITS.parameterLength, `the parameter of ${what}`);
  if (CONTROL.test(parameter)) throw new ServiceError(`the parameter of ${what} contains control characters`);
  switch (spec.kind) {
    case 'size':
      if (parseSize(parameter) === undefined) throw new ServiceError(`${what}: "${parameter}" is not a size (a number, optionally with K, M or G)`);
      break;
    case 'header': {
      const colon = parameter.indexOf(':');
      const name = colon < 0 ? '' : parameter.slice(0, colon).trim();
      if (!FIELD_NAME.test(name)) throw new ServiceError(`${what}: the parameter must be "Name: value-pattern"`);
      checkPatterns(operator, parameter.slice(colon + 1), what);
      break;
    }
    case 'address':
    case 'text':
      checkPatterns(operator, parameter, what);
      break;
    default:
      break;
  }
  operator = spec.operators.find((o) => o === operator)!;
  return { opCode, operator, parameter };
}

function validateAction(type: RuleType, a: RuleInput['actions'][number], index: number): RuleAction {
  const opCode = (a.opCode ?? '').trim();
  if (opCode === '') throw new ServiceError(`action ${index + 1}: the opCode attribute is missing`);
  const spec = actionSpec(type, opCode);
  if (!spec) throw new ServiceError(`unknown rule action "${opCode}"`);
  const what = `action "${opCode}"`;
  if (spec.parameter === 'none') return { opCode, parameter: '' };
  const multiLine = spec.kind === 'reply' || spec.kind === 'replyAll' || spec.kind === 'reject' || spec.kind === 'addHeader';
  const parameter = multiLine ? normalizeText(a.parameter).replace(/^\n+|\s+$/g, '') : a.parameter.trim();
  checkLength(parameter, multiLine ? RULE_LIMITS.textLength : RULE_LIMITS.parameterLength, `the parameter of ${what}`);
  if ((multiLine ? TEXT_CONTROL : CONTROL).test(parameter)) throw new ServiceError(`the parameter of ${what} contains control characters`);
  if (isNoParameter(parameter)) {
    if (spec.parameter === 'required') throw new ServiceError(`${what} needs a parameter`);
    return { opCode, parameter: '' };
  }
  if (type !== 'mailIn') return { opCode, parameter };
  switch (spec.kind) {
    case 'store': {
      if (parameter.startsWith('~')) throw new ServiceError(`${what}: only mailboxes of the account itself can be named`);
      return { opCode, parameter: normalizeMailboxName(parameter) };
    }
    case 'mark':
      parseFlagChange(parameter);
      break;
    case 'addHeader':
      if (parseHeaderLines(parameter, `the parameter of ${what}`).length === 0) throw new ServiceError(`${what} needs a parameter`);
      break;
    case 'remember':
      checkDatasetName(parameter.replace(/^#/, ''), what);
      break;
    case 'reply':
    case 'replyAll':
      parseReplyTemplate(parameter);
      break;
    case 'redirect':
    case 'mirror':
    case 'forward': {
      const targets = parseTargets(parameter);
      if (targets.length === 0) throw new ServiceError(`${what} needs at least one address`);
      if (targets.length > RULE_LIMITS.addressesPerAction) throw new ServiceError(`${what}: too many addresses (at most ${RULE_LIMITS.addressesPerAction})`);
      for (const t of targets) if (!ADDRESS.test(t)) throw new ServiceError(`${what}: "${t}" is not an E-mail address`);
      break;
    }
    default:
      break;
  }
  return { opCode, parameter };
}

/** Checks a rule as a client sent it; returns it as it is stored. */
export function validateRule(input: RuleInput, defaults: { priority?: number } = {}): RuleRecord {
  const set = RULE_SETS[input.type];
  const name = checkRuleName(input.name);
  const priority = input.priority === undefined && defaults.priority !== undefined ? defaults.priority : parsePriority(input.priority);
  const stage = set.staged && input.stage !== undefined && input.stage.trim() !== '' ? parseStage(input.stage) : null;
  if (input.conditions.length > RULE_LIMITS.conditionsPerRule) throw new ServiceError(`too many conditions (at most ${RULE_LIMITS.conditionsPerRule})`);
  if (input.actions.length > RULE_LIMITS.actionsPerRule) throw new ServiceError(`too many actions (at most ${RULE_LIMITS.actionsPerRule})`);
  const conditions = input.conditions.map((c, i) => validateCondition(input.type, c, i));
  const actions = input.actions.map((a, i) => validateAction(input.type, a, i));
  let comment: string | null = null;
  if (input.comment !== undefined && input.comment !== '') {
    comment = normalizeText(input.comment);
    checkLength(comment, RULE_LIMITS.commentLength, 'the comment');
    if (TEXT_CONTROL.test(comment)) throw new ServiceError('the comment contains control characters');
  }
  return { type: input.type, name, priority, stage, conditions, actions, comment };
}
