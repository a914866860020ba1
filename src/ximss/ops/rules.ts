import type { OperationTable } from '../engine.js';

/** Spec section "Automated Rule Management". */
export const ruleOperations: OperationTable = {};
