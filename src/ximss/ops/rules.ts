import { ServiceError } from '../../services/errors.js';
import { parseRuleType, type RuleInput, type RuleRecord } from '../../services/rules/service.js';
import { el, type XmlElement } from '../../xml/element.js';
import { inSession, requiredAttr, type OperationTable } from '../engine.js';

/** Spec section "Automated Rule Management". */

function ruleElement(rule: RuleRecord, withBody: boolean): XmlElement {
  const message = el('rule', { type: rule.type, name: rule.name, priority: rule.priority, stage: rule.stage ?? undefined });
  if (!withBody) return message;
  for (const c of rule.conditions) message.add('condition', { opCode: c.opCode, operator: c.operator }, c.parameter === '' ? undefined : c.parameter);
  for (const a of rule.actions) message.add('action', { opCode: a.opCode }, a.parameter === '' ? undefined : a.parameter);
  if (rule.comment !== null) message.add('comment', undefined, rule.comment);
  return message;
}

/** The rule in a ruleSet request: its attributes and its condition, action and comment elements. */
function ruleInput(request: XmlElement): RuleInput {
  const input: RuleInput = {
    type: parseRuleType(request.attrs.type),
    name: request.attrs.name,
    priority: request.attrs.priority,
    stage: request.attrs.stage,
    conditions: [],
    actions: [],
    comment: undefined,
  };
  for (const child of request.elements()) {
    switch (child.name) {
      case 'condition':
        input.conditions.push({ opCode: child.attrs.opCode, operator: child.attrs.operator, parameter: child.text() });
        break;
      case 'action':
        input.actions.push({ opCode: child.attrs.opCode, parameter: child.text() });
        break;
      case 'comment':
        if (input.comment !== undefined) throw new ServiceError('a rule has at most one comment element');
        input.comment = child.text();
        break;
      default:
        throw new ServiceError(`unexpected element <${child.name}> in a rule`);
    }
  }
  return input;
}

export const ruleOperations: OperationTable = {
  ruleList: inSession(async (ctx) => {
    const type = parseRuleType(ctx.request.attrs.type);
    for (const rule of await ctx.server.rules.list(ctx.session.account, type)) ctx.send(ruleElement(rule, false));
  }),

  ruleRead: inSession(async (ctx) => {
    const type = parseRuleType(ctx.request.attrs.type);
    const rule = await ctx.server.rules.read(ctx.session.account, type, requiredAttr(ctx.request, 'name'));
    ctx.send(ruleElement(rule, true));
  }),

  ruleSet: inSession(async (ctx) => {
    await ctx.server.rules.set(ctx.session.account, ruleInput(ctx.request));
  }),

  ruleUpdate: inSession(async (ctx) => {
    const { type, priority, stage } = ctx.request.attrs;
    await ctx.server.rules.update(ctx.session.account, parseRuleType(type), requiredAttr(ctx.request, 'name'), { priority, stage });
  }),

  ruleRename: inSession(async (ctx) => {
    const type = parseRuleType(ctx.request.attrs.type);
    await ctx.server.rules.rename(ctx.session.account, type, requiredAttr(ctx.request, 'name'), requiredAttr(ctx.request, 'newName'));
  }),

  ruleRemove: inSession(async (ctx) => {
    const type = parseRuleType(ctx.request.attrs.type);
    await ctx.server.rules.remove(ctx.session.account, type, requiredAttr(ctx.request, 'name'));
  }),
};
