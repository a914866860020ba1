import { CliService } from '../../services/cli/interpreter.js';
import { formatCliText, toXimssValue } from '../../services/cli/values.js';
import { ServiceError } from '../../services/errors.js';
import { SERVER_VERSION } from '../../version.js';
import { el } from '../../xml/element.js';
import { appendValue } from '../../xml/objects.js';
import { inSession, type OperationTable } from '../engine.js';
import type { XimssServices } from '../services.js';

/**
 * Spec section "Service Operations": cliExecute runs one CLI command (src/services/cli/); a
 * command with a result answers one cliResult, in the CLI's text presentation, or with
 * `report="xml"` in the XML presentation of objects.
 */

/** One interpreter per server (it holds no state of its own beyond its services). */
const interpreters = new WeakMap<XimssServices, CliService>();

function interpreter(server: XimssServices): CliService {
  let cli = interpreters.get(server);
  if (!cli) {
    cli = new CliService({
      accounts: server.accounts,
      mail: server.mail,
      rules: server.rules,
      billing: server.billing,
      limits: server.config.cli,
      mainDomain: server.config.defaultDomain,
      serverVersion: SERVER_VERSION,
      log: server.log.child({ component: 'cli' }),
    });
    interpreters.set(server, cli);
  }
  return cli;
}

export const cliOperations: OperationTable = {
  cliExecute: inSession(async (ctx) => {
    // The spec: `report="xml"` asks for the XML presentation; any other value (or none) for text.
    const report = ctx.request.attrs.report;
    if (ctx.request.elements().length > 0) throw new ServiceError('the CLI command must be text');
    const { result } = await interpreter(ctx.server).execute(ctx.session.account, ctx.request.text());
    if (result === undefined) return;
    const message = el('cliResult');
    if (report === 'xml') appendValue(message, toXimssValue(result));
    else message.append(formatCliText(result));
    ctx.send(message);
  }),
};
