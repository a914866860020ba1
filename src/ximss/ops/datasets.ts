import type { OperationTable } from '../engine.js';

/** Spec section "Datasets". */
export const datasetOperations: OperationTable = {};
