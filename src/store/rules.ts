/**
 * Account Automated Rules (Mail Rules, Signal Rules) as stored, and the vacation ("Reply
 * with") bookkeeping. Owned by the rules service (src/services/rules/).
 */
export interface RuleStore {}
