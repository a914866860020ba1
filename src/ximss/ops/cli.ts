import { formatCliText, toXimssValue } from '../../services/cli/values.js';
import { ServiceError } from '../../services/errors.js';
import { el } from '../../xml/element.js';
import { appendValue } from '../../xml/objects.js';
import { inSession, type OperationTable } from '../engine.js';

/**
 * Spec section "Service Operations": cliExecute runs one CLI command (src/services/cli/); a
 * command with a result answers one cliResult, in the CLI's text presentation, or with
 * `report="xml"` in the XML presentation of objects.
 */

export const cliOperations: OperationTable = {
  cliExecute: inSession(async (ctx) => {
    // The spec: `report="xml"` asks for the XML presentation; any other value (or none) for text.
    const report = ctx.request.attrs.report;
    if (ctx.request.elements().length > 0) throw new ServiceError('the CLI command must be text');
    const { result } = await ctx.server.cli.execute(ctx.session.account, ctx.request.text());
    if (result === undefined) return;
    const message = el('cliResult');
    if (report === 'xml') appendValue(message, toXimssValue(result));
    else message.append(formatCliText(result));
    ctx.send(message);
  }),
};
