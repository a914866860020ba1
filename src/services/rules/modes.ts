/**
 * The RulesAllowed / SignalRulesAllowed modes (Mail Rules and the settings registry read
 * them; src/services/rules/model.ts re-exports them). Pure: no store, no XML.
 */
import type { XimssValue } from '../../xml/objects.js';

/** The RulesAllowed / SignalRulesAllowed modes, the most restrictive first (knownValues order). */
export const ALLOWED_MODES = ['None', 'Filter Only', 'No Redirect', 'Any'] as const;
export type AllowedMode = (typeof ALLOWED_MODES)[number];

/**
 * A RulesAllowed setting value as a mode. Case is ignored; `No` (the SignalRulesAllowed
 * default) is `None`; anything unknown is `None` too (refuse rather than guess).
 */
export function parseAllowedMode(value: XimssValue | undefined): AllowedMode {
  if (typeof value !== 'string') return 'None';
  const v = value.trim().toLowerCase();
  return ALLOWED_MODES.find((m) => m.toLowerCase() === v) ?? 'None';
}

/** True when `mode` is `required` or less restrictive. */
export function modeAllows(mode: AllowedMode, required: AllowedMode): boolean {
  return ALLOWED_MODES.indexOf(mode) >= ALLOWED_MODES.indexOf(required);
}
