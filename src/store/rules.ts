/**
 * Account Automated Rules (Mail Rules, Signal Rules) as stored, and the vacation ("Reply
 * with") bookkeeping. Owned by the rules service (src/services/rules/), which validates
 * everything before it gets here: the store keeps what it is given.
 */

export interface RuleCondition {
  /** The condition name ("From", "Header Field", ...). */
  opCode: string;
  /** "is", "not in", "greater than", ... ("---" for conditions without a parameter). */
  operator: string;
  parameter: string;
}

export interface RuleAction {
  /** The action name ("Store in", "Reply with", ...). */
  opCode: string;
  parameter: string;
}

export interface RuleRecord {
  /** The rule set: 'mailIn' or 'signalIn'. */
  type: string;
  /** Unique in the account's rule set (case-sensitive). */
  name: string;
  /** 0 (inactive) .. 10; higher runs first. */
  priority: number;
  /** Signal Rules only: when the rule applies. */
  stage: string | null;
  conditions: RuleCondition[];
  actions: RuleAction[];
  comment: string | null;
}

/**
 * A guard the store calls inside the write's transaction with the rule as stored now (and,
 * for `put`, how many rules the set holds); throwing aborts the write and is passed on.
 * It lets the service check the old rule's actions against RulesAllowed without a race.
 */
export type RuleGuard = (existing: RuleRecord | undefined, count: number) => void;

export interface RuleStore {
  /** The rules of one set, highest priority first, then by name. */
  list(accountId: number, type: string): Promise<RuleRecord[]>;
  get(accountId: number, type: string, name: string): Promise<RuleRecord | undefined>;
  /** Stores `rule`, replacing a rule of the same type and name; `guard` sees the replaced one. */
  put(accountId: number, rule: RuleRecord, guard: RuleGuard): Promise<void>;
  /**
   * Changes the priority and/or stage (undefined: unchanged) of an existing rule. NotFoundError
   * when there is none; `guard` sees the rule before the change.
   */
  update(accountId: number, type: string, name: string, changes: { priority?: number; stage?: string | null }, guard: RuleGuard): Promise<void>;
  /**
   * NotFoundError when there is no such rule, AlreadyExistsError when `newName` is taken. A
   * Mail Rule's vacation-reply log follows it.
   */
  rename(accountId: number, type: string, name: string, newName: string, guard: RuleGuard): Promise<void>;
  /** NotFoundError when there is no such rule. A Mail Rule's vacation-reply log goes with it. */
  remove(accountId: number, type: string, name: string, guard: RuleGuard): Promise<void>;

  /**
   * The vacation log: records that rule `rule` replies to `address` now, unless it has
   * replied to that address at `since` or later. True when the reply may go out: nothing
   * recent is recorded, or what is recorded was recorded under the same `key` (the same
   * delivery, run again after a crash). Entries older than `since` are forgotten.
   */
  claimReply(accountId: number, rule: string, address: string, now: number, since: number, key?: string): Promise<boolean>;
  /** Forgets a claim whose reply could not be sent. */
  releaseReply(accountId: number, rule: string, address: string, sent: number): Promise<void>;
}
