/**
 * Mail Rule conditions: what each one reads from the message and its envelope, and how the
 * operators compare it.
 *
 * - `is` / `is not` take one picture, `in` / `not in` a comma-separated list of pictures or
 *   `#Dataset` (an account dataset holding the address); pictures are case-insensitive with
 *   `*` wildcards.
 * - Conditions that read several values (addresses, repeated header fields) are met by
 *   `is` / `in` when some value matches, and by `is not` / `not in` when no value matches;
 *   with no value at all (no From, say) only `is not` / `not in` are met. "Each To or Cc"
 *   with `is` / `in` needs every address to match (and at least one address).
 * - An address matches when its bare form (`user@domain`) or its `Real Name <user@domain>`
 *   form does.
 */
import type { RuleCondition } from '../../store/rules.js';
import type { Address } from '../mime/index.js';
import { datasetReference, parseSize, pictureMatch, splitPatterns } from './match.js';
import type { RuleMessage } from './message.js';
import { conditionSpec } from './model.js';

/** What conditions know besides the message. */
export interface ConditionContext {
  /** The envelope sender ('' for the null sender). */
  sender: string;
  /** The envelope recipient. */
  recipient: string;
  /** The sender logged in (SMTP AUTH, or a message submitted from this server). */
  authenticated: boolean;
  /** True when `address` has an entry in the account's dataset `dataset`. */
  inDataset(dataset: string, address: string): Promise<boolean>;
}

type Value = { text: string; forms: string[] };

function addressValue(a: Address): Value {
  return { text: a.address, forms: a.realName ? [a.address, `${a.realName} <${a.address}>`] : [a.address] };
}

function textValue(text: string): Value {
  return { text, forms: [text] };
}

function envelopeAddress(address: string): Value[] {
  return address === '' ? [] : [textValue(address)];
}

/** Does one value match the positive form of the operator (`is` or `in`)? */
async function matchesValue(value: Value, positive: 'is' | 'in', parameter: string, ctx: ConditionContext): Promise<boolean> {
  if (positive === 'is') return value.forms.some((f) => pictureMatch(parameter, f));
  const dataset = datasetReference(parameter);
  if (dataset !== undefined) return ctx.inDataset(dataset, value.text);
  const patterns = splitPatterns(parameter);
  return patterns.some((p) => value.forms.some((f) => pictureMatch(p, f)));
}

async function someMatches(values: Value[], positive: 'is' | 'in', parameter: string, ctx: ConditionContext): Promise<boolean> {
  for (const v of values) if (await matchesValue(v, positive, parameter, ctx)) return true;
  return false;
}

async function everyMatches(values: Value[], positive: 'is' | 'in', parameter: string, ctx: ConditionContext): Promise<boolean> {
  if (values.length === 0) return false;
  for (const v of values) if (!(await matchesValue(v, positive, parameter, ctx))) return false;
  return true;
}

/**
 * True when the message is not automatic: no Auto-Submitted (other than `no`), no
 * Precedence bulk/list/junk, no List-Id/List-Unsubscribe, no X-Autoreply/X-Autorespond, not a
 * multipart/report, and a real envelope sender (not null, not MAILER-DAEMON, owner-*, *-request).
 */
export function isHumanGenerated(message: RuleMessage, sender: string): boolean {
  if (sender === '') return false;
  const local = sender.slice(0, sender.lastIndexOf('@') < 0 ? sender.length : sender.lastIndexOf('@')).toLowerCase();
  if (local === 'mailer-daemon' || local.startsWith('owner-') || local.endsWith('-request')) return false;
  const autoSubmitted = message.value('Auto-Submitted');
  if (autoSubmitted !== undefined && autoSubmitted.split(';')[0]!.trim().toLowerCase() !== 'no') return false;
  const precedence = message.value('Precedence')?.trim().toLowerCase();
  if (precedence === 'bulk' || precedence === 'list' || precedence === 'junk') return false;
  for (const name of ['List-Id', 'List-Unsubscribe', 'X-Autoreply', 'X-Autorespond']) if (message.value(name) !== undefined) return false;
  const contentType = message.value('Content-Type')?.trim().toLowerCase() ?? '';
  if (/^multipart\s*\/\s*report\b/.test(contentType)) return false;
  return true;
}

/** The values a condition tests; undefined for conditions that are not value tests. */
function valuesOf(condition: RuleCondition, message: RuleMessage, ctx: ConditionContext): { values: Value[]; parameter: string } | undefined {
  const p = condition.parameter;
  switch (condition.opCode) {
    case 'From':
    case 'Sender':
    case 'To':
    case 'Cc':
    case 'Reply-To':
      return { values: message.addresses(condition.opCode).map(addressValue), parameter: p };
    case 'Any To or Cc':
    case 'Each To or Cc':
      return { values: message.addresses('To', 'Cc').map(addressValue), parameter: p };
    case 'Return-Path':
      return { values: envelopeAddress(ctx.sender), parameter: p };
    case 'Subject':
      return { values: message.texts('Subject').map(textValue), parameter: p };
    case 'Message-ID': {
      const id = message.messageId();
      return { values: id === '' ? [] : [textValue(id)], parameter: p };
    }
    case 'Source':
      return { values: [textValue(ctx.authenticated ? 'authenticated' : 'remote')], parameter: p };
    case 'Header Field': {
      const colon = p.indexOf(':');
      return { values: message.texts(p.slice(0, colon).trim()).map(textValue), parameter: p.slice(colon + 1).trim() };
    }
    default:
      return undefined;
  }
}

/** Whether one Mail Rule condition holds. Unknown conditions never hold. */
export async function conditionHolds(condition: RuleCondition, message: RuleMessage, ctx: ConditionContext): Promise<boolean> {
  const spec = conditionSpec('mailIn', condition.opCode);
  if (!spec) return false;
  if (spec.kind === 'flag') return isHumanGenerated(message, ctx.sender);
  if (spec.kind === 'size') {
    const limit = parseSize(condition.parameter);
    if (limit === undefined) return false;
    return condition.operator === 'greater than' ? message.size > limit : condition.operator === 'less than' ? message.size < limit : false;
  }
  const tested = valuesOf(condition, message, ctx);
  if (!tested) return false;
  const { values, parameter } = tested;
  const op = condition.operator;
  const positive = op === 'is' || op === 'is not' ? 'is' : op === 'in' || op === 'not in' ? 'in' : undefined;
  if (!positive) return false;
  const negated = op === 'is not' || op === 'not in';
  if (negated) return !(await someMatches(values, positive, parameter, ctx));
  if (condition.opCode === 'Each To or Cc') return everyMatches(values, positive, parameter, ctx);
  return someMatches(values, positive, parameter, ctx);
}
