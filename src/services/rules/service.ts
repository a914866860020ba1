import { errorText } from '../../log.js';
import type { EventBus } from '../../bus/bus.js';
import type { RuleGuard, RuleRecord } from '../../store/rules.js';
import { AlreadyExistsError, NotFoundError, type AccountRecord, type Store } from '../../store/store.js';
import { fullName, type AccountService } from '../accounts.js';
import { ServiceError } from '../errors.js';
import { ActiveRules } from './active-rules.js';
import { planDelivery, plainPlan, REPLY_INTERVAL_MS, type DeliveryPlan, type PlanContext } from './apply.js';
import {
  ALLOWED_MODES,
  checkAllowed,
  checkRuleName,
  parseAllowedMode,
  parsePriority,
  parseStage,
  RULE_LIMITS,
  RULE_SETS,
  RULE_TYPES,
  validateRule,
  type AllowedMode,
  type RuleInput,
  type RuleType,
} from './model.js';

export type { DeliveryPlan, PlannedCopy, PlannedRemember, PlannedSend } from './apply.js';
export type { AllowedMode, RuleInput, RuleType } from './model.js';
export type { RuleAction, RuleCondition, RuleRecord } from '../../store/rules.js';
export { parseRuleType } from './model.js';

export const RULE_NOT_FOUND = 'rule not found';

/** The knownValues of one rule set (listKnownValues). */
export interface KnownRuleValues {
  type: RuleType;
  /** The allowed-rules modes, the most restrictive first. */
  allowed: readonly AllowedMode[];
  conditions: readonly string[];
  actions: readonly { name: string; allowedSet: AllowedMode }[];
}

/** What final delivery tells the rules about one message for one account (the time zone is the account's). */
export type DeliveryFacts = Omit<PlanContext, 'timeZone'> & {
  /** The message without Return-Path. */
  raw: Buffer;
};

/**
 * Account Automated Rules (spec section "Automated Rule Management"): Mail Rules (`mailIn`),
 * run by final delivery, and Signal Rules (`signalIn`), run by the call engine for every
 * incoming call (src/services/calls/signal-rules.ts). A user changes rules only within the account's RulesAllowed /
 * SignalRulesAllowed setting, checked against the new and the old rule.
 */
export class RuleService {
  /** The active rules of accounts, kept between changes: what delivery and the call engine run. */
  readonly active: ActiveRules;

  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly bus: EventBus,
  ) {
    this.active = new ActiveRules(store.rules, bus);
  }

  close(): void {
    this.active.close();
  }

  /** The rule sets' conditions, actions and modes, for listKnownValues. */
  static knownValues(): KnownRuleValues[] {
    return RULE_TYPES.map((type) => ({
      type,
      allowed: ALLOWED_MODES,
      conditions: RULE_SETS[type].conditions.map((c) => c.name),
      actions: RULE_SETS[type].actions.map((a) => ({ name: a.name, allowedSet: a.allowedSet })),
    }));
  }

  /** The account's effective mode for a rule set. */
  async allowedMode(account: AccountRecord, type: RuleType): Promise<AllowedMode> {
    const settings = await this.accounts.effectiveSettings(account);
    return parseAllowedMode(settings[RULE_SETS[type].setting]);
  }

  /** The rules of a set, highest priority first (then by name). */
  async list(account: AccountRecord, type: RuleType): Promise<RuleRecord[]> {
    return this.store.rules.list(account.id, type);
  }

  async read(account: AccountRecord, type: RuleType, name: string): Promise<RuleRecord> {
    const rule = await this.store.rules.get(account.id, type, checkRuleName(name));
    if (!rule) throw new ServiceError(RULE_NOT_FOUND);
    return rule;
  }

  /**
   * ruleSet: validates and stores a rule, replacing one of the same name. Without a
   * priority, a replaced rule keeps its own and a new one gets 5.
   */
  async set(account: AccountRecord, input: RuleInput): Promise<RuleRecord> {
    const mode = await this.allowedMode(account, input.type);
    checkAllowed(input.type, mode, undefined, 'the rule');
    let defaultPriority = 5;
    if (input.priority === undefined && input.name !== undefined) {
      defaultPriority = (await this.store.rules.get(account.id, input.type, input.name))?.priority ?? 5;
    }
    const rule = validateRule(input, { priority: defaultPriority });
    checkAllowed(input.type, mode, rule, 'the new rule');
    await this.store.rules.put(account.id, rule, (existing, count) => {
      checkAllowed(input.type, mode, existing, 'the rule it replaces');
      if (!existing && count >= RULE_LIMITS.rules) throw new ServiceError(`too many rules (at most ${RULE_LIMITS.rules})`);
    });
    this.bus.publish('rulesChanged', { accountId: account.id, type: input.type });
    return rule;
  }

  /** ruleUpdate: a new priority and/or stage (Signal Rules). */
  async update(account: AccountRecord, type: RuleType, name: string, changes: { priority?: string; stage?: string }): Promise<void> {
    checkRuleName(name);
    if (changes.priority === undefined && changes.stage === undefined) throw new ServiceError('the priority attribute is missing');
    const priority = changes.priority === undefined ? undefined : parsePriority(changes.priority);
    let stage: string | null | undefined;
    if (changes.stage !== undefined && RULE_SETS[type].staged) stage = changes.stage.trim() === '' ? null : parseStage(changes.stage);
    await this.change(account, type, (guard) => this.store.rules.update(account.id, type, name, { priority, stage }, guard));
  }

  /** ruleRename. */
  async rename(account: AccountRecord, type: RuleType, name: string, newName: string): Promise<void> {
    checkRuleName(name);
    checkRuleName(newName, 'new rule name');
    await this.change(account, type, (guard) => this.store.rules.rename(account.id, type, name, newName, guard));
  }

  /** ruleRemove. */
  async remove(account: AccountRecord, type: RuleType, name: string): Promise<void> {
    checkRuleName(name);
    await this.change(account, type, (guard) => this.store.rules.remove(account.id, type, name, guard));
  }

  /**
   * A change of an existing rule: allowed only when the account may modify its rules, and
   * the rule as it is (the store's guard) only has actions it may write.
   */
  private async change(account: AccountRecord, type: RuleType, write: (guard: RuleGuard) => Promise<void>): Promise<void> {
    const mode = await this.allowedMode(account, type);
    checkAllowed(type, mode, undefined, 'the rule');
    try {
      await write((existing) => checkAllowed(type, mode, existing, 'the rule'));
      this.bus.publish('rulesChanged', { accountId: account.id, type });
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError(RULE_NOT_FOUND);
      if (err instanceof AlreadyExistsError) throw new ServiceError(err.message);
      throw err;
    }
  }

  /**
   * What the account's Mail Rules do with an incoming message. Never throws for the rules'
   * sake: when they cannot be read or run, the plan is the plain INBOX delivery (and the
   * failure is logged), so that no message is lost to a rule.
   */
  async planDelivery(facts: DeliveryFacts): Promise<DeliveryPlan> {
    let rules: readonly RuleRecord[];
    let timeZone = 'HostOS';
    try {
      rules = await this.active.of(facts.account.id, 'mailIn');
      if (rules.length === 0) return plainPlan(facts.raw);
      const prefs = await this.accounts.effectivePrefs(facts.account);
      if (typeof prefs.TimeZone === 'string' && prefs.TimeZone !== '') timeZone = prefs.TimeZone;
    } catch (err) {
      facts.log.error({ event: 'rules.failed', account: fullName(facts.account), error: errorText(err) }, 'rules not applied');
      return plainPlan(facts.raw);
    }
    try {
      return await planDelivery(rules, facts.raw, { ...facts, timeZone });
    } catch (err) {
      facts.log.error({ event: 'rules.failed', account: fullName(facts.account), err }, 'rules not applied');
      return plainPlan(facts.raw);
    }
  }

  /**
   * The vacation log: true when `rule` may reply to `address` now (it has not within the
   * last 7 days, or did so in this same delivery `key`); the claim is recorded. Returns the
   * claim's time, to release it when the reply cannot be sent; undefined when refused.
   */
  async claimReply(account: AccountRecord, rule: string, address: string, key?: string): Promise<number | undefined> {
    const now = Date.now();
    const ok = await this.store.rules.claimReply(account.id, rule, address.toLowerCase(), now, now - REPLY_INTERVAL_MS, key);
    return ok ? now : undefined;
  }

  async releaseReply(account: AccountRecord, rule: string, address: string, claimed: number): Promise<void> {
    await this.store.rules.releaseReply(account.id, rule, address.toLowerCase(), claimed);
  }
}
