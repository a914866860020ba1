/**
 * Signal Rules (rule set `signalIn`): what an account's rules do with a call for it, at each
 * stage of the call, in the seed system's terms. A rule's stage says when it is tried:
 * `Immediately` (before anything rings), after N seconds of ringing, `Busy` (every device
 * refused with 486/600), `Error` (the call failed otherwise: nobody to ring, a device error)
 * and `No Answer` (the ring time ran out). Rules of a stage are tried by priority (higher
 * first, 0 never); a rule whose conditions all hold runs its actions in order:
 *
 * - `Reject with` [code and/or text]: the caller is refused (603 unless a code is given);
 * - `Redirect to` addresses: what rings now stops, the addresses ring instead;
 * - `Fork to` addresses: the addresses ring as well;
 * - `Remember 'From' in` dataset: the caller's address is added to the account's dataset;
 * - `Stop Processing`: no further rule of the stage is tried.
 *
 * Conditions: From and To (pictures, lists, #Dataset, as Mail Rules compare addresses),
 * Method (INVITE for a call), Presence (the account's: online, busy, away, be-back… or
 * offline when no client is available), Current Day (Monday…Sunday), Time of Day (HH:MM in
 * the account's time zone), Current Date (YYYY-MM-DD), Pending Time (seconds the call has
 * rung), Human Generated (a call always is).
 */
import type { RuleCondition, RuleRecord } from '../../store/rules.js';
import { datasetReference, pictureMatch, splitPatterns } from '../rules/match.js';
import { parseTargets } from '../rules/model.js';
import type { Party } from './signal.js';

export type SignalStage = 'Immediately' | 'Busy' | 'Error' | 'No Answer' | number;

/** What the conditions of a call's rules read. */
export interface SignalFacts {
  from: Party;
  /** The address called. */
  to: string;
  /** The account's presence, as XIMSS names it (offline when no client is available). */
  presence: string;
  /** An IANA zone for the day and time conditions. */
  timeZone: string;
  now: Date;
  /** Seconds since the call began to ring. */
  pendingSeconds: number;
  inDataset(dataset: string, address: string): Promise<boolean>;
}

/** What the rules of a stage decided. */
export interface SignalDecision {
  reject?: { code: number; reason: string };
  /** Stop what rings and ring these instead. */
  redirect?: string[];
  /** Ring these as well. */
  fork?: string[];
  /** Datasets to remember the caller in. */
  remember: string[];
  /** The rules that applied (for the log). */
  applied: string[];
}

/** The stage of a rule as stored ('Immediately' when it has none). */
export function stageOf(rule: RuleRecord): SignalStage {
  const stage = rule.stage ?? 'Immediately';
  return /^\d+$/.test(stage) ? Number(stage) : (stage as SignalStage);
}

/** The delays (seconds) at which some rule wants to be tried, in order. */
export function timedStages(rules: readonly RuleRecord[]): number[] {
  const delays = new Set<number>();
  for (const rule of rules) {
    const stage = stageOf(rule);
    if (typeof stage === 'number' && rule.priority > 0) delays.add(stage);
  }
  return [...delays].sort((a, b) => a - b);
}

export async function runSignalRules(rules: readonly RuleRecord[], stage: SignalStage, facts: SignalFacts): Promise<SignalDecision> {
  const decision: SignalDecision = { remember: [], applied: [] };
  const tried = rules.filter((r) => r.priority > 0 && stageOf(r) === stage).sort((a, b) => b.priority - a.priority);
  for (const rule of tried) {
    let holds = true;
    for (const condition of rule.conditions) {
      if (!(await conditionHolds(condition, facts))) {
        holds = false;
        break;
      }
    }
    if (!holds) continue;
    decision.applied.push(rule.name);
    for (const action of rule.actions) {
      switch (action.opCode) {
        case 'Reject with':
          decision.reject = rejection(action.parameter);
          return decision;
        case 'Redirect to':
          decision.redirect = parseTargets(action.parameter);
          decision.fork = undefined;
          break;
        case 'Fork to':
          (decision.fork ??= []).push(...parseTargets(action.parameter));
          break;
        case "Remember 'From' in":
          if (action.parameter.trim() !== '') decision.remember.push(action.parameter.trim());
          break;
        case 'Stop Processing':
          return decision;
      }
    }
  }
  return decision;
}

/** `Reject with`'s parameter: an optional SIP code, then a text. */
function rejection(parameter: string): { code: number; reason: string } {
  const m = /^\s*([3-6]\d\d)\b\s*(.*)$/s.exec(parameter);
  if (m) return { code: Number(m[1]), reason: m[2]!.trim() || 'rejected by a rule' };
  return { code: 603, reason: parameter.trim() || 'rejected by a rule' };
}

/** The parts of `now` in the zone: weekday, minutes since midnight, YYYY-MM-DD. */
function local(now: Date, timeZone: string): { day: string; minutes: number; date: string } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'long', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(now);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? '';
  return { day: get('weekday'), minutes: Number(get('hour')) * 60 + Number(get('minute')), date: `${get('year')}-${get('month')}-${get('day')}` };
}

/** HH:MM[:SS] as minutes since midnight. */
function minutesOf(text: string): number | undefined {
  const m = /^\s*(\d{1,2}):(\d{2})(?::\d{2})?\s*$/.exec(text);
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) return undefined;
  return Number(m[1]) * 60 + Number(m[2]);
}

async function conditionHolds(condition: RuleCondition, facts: SignalFacts): Promise<boolean> {
  const { operator, parameter } = condition;
  const compare = (value: number, limit: number | undefined): boolean =>
    limit !== undefined && (operator === 'greater than' ? value > limit : operator === 'less than' ? value < limit : false);
  switch (condition.opCode) {
    case 'From':
      return matches(facts.from.name ? [facts.from.address, `${facts.from.name} <${facts.from.address}>`] : [facts.from.address], operator, parameter, facts);
    case 'To':
      return matches([facts.to], operator, parameter, facts);
    case 'Method':
      return matches(['INVITE'], operator, parameter, facts);
    case 'Presence':
      return matches([facts.presence], operator, parameter, facts);
    case 'Current Day':
      return matches([local(facts.now, facts.timeZone).day], operator, parameter, facts);
    case 'Time of Day':
      return compare(local(facts.now, facts.timeZone).minutes, minutesOf(parameter));
    case 'Current Date': {
      const limit = /^\s*(\d{4}-\d{2}-\d{2})\s*$/.exec(parameter)?.[1];
      if (!limit) return false;
      const today = local(facts.now, facts.timeZone).date;
      return operator === 'greater than' ? today > limit : operator === 'less than' ? today < limit : false;
    }
    case 'Pending Time':
      return compare(facts.pendingSeconds, /^\s*\d{1,6}\s*$/.test(parameter) ? Number(parameter) : undefined);
    case 'Human Generated':
      return true;
    default:
      return false;
  }
}

/** is / is not / in / not in over the forms of one value, as Mail Rules compare. */
async function matches(forms: string[], operator: string, parameter: string, facts: SignalFacts): Promise<boolean> {
  const negated = operator === 'is not' || operator === 'not in';
  let found: boolean;
  if (operator === 'is' || operator === 'is not') found = forms.some((f) => pictureMatch(parameter, f));
  else if (operator === 'in' || operator === 'not in') {
    const dataset = datasetReference(parameter);
    found = dataset !== undefined ? await facts.inDataset(dataset, forms[0]!) : splitPatterns(parameter).some((p) => forms.some((f) => pictureMatch(p, f)));
  } else return false;
  return negated ? !found : found;
}

