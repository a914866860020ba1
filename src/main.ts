#!/usr/bin/env node
/** The `ximssd` command: `serve`, and the administration commands (src/cli/). */
import { Command } from 'commander';
import { registerAccountCommands } from './cli/accounts.js';
import { registerDkimCommands } from './cli/dkim.js';
import { registerDomainCommands } from './cli/domains.js';
import { registerInit } from './cli/init.js';
import { registerQueueCommands } from './cli/queue.js';
import { registerServe } from './cli/serve.js';
import { ServiceError } from './services/errors.js';
import { SERVER_VERSION } from './version.js';

const program = new Command().name('ximssd').description('XIMSS communications server').version(SERVER_VERSION).showHelpAfterError();
registerServe(program);
registerInit(program);
registerDomainCommands(program);
registerDkimCommands(program);
registerAccountCommands(program);
registerQueueCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ServiceError) console.error(`ximssd: ${err.message}`);
  else console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
