#!/usr/bin/env node
/** The `ximssd` command: `serve`, and the administration commands (src/cli/). */
import { Command, CommanderError } from 'commander';
import { registerAccountCommands } from './cli/accounts.js';
import { registerBalanceCommands } from './cli/balance.js';
import { registerDkimCommands } from './cli/dkim.js';
import { registerDomainCommands } from './cli/domains.js';
import { registerInit } from './cli/init.js';
import { registerQueueCommands } from './cli/queue.js';
import { registerServe } from './cli/serve.js';
import { ConfigError } from './config.js';
import { ServiceError } from './services/errors.js';
import { SERVER_VERSION } from './version.js';

/**
 * Exit codes: 0 done; 1 the command failed (a refused change, a port in use, the store
 * unreachable or locked by another server); 2 the command line or the configuration is wrong
 * (nothing was started or created).
 */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

// Everything ximssd creates (the store, its -wal/-shm files, the generated TLS key, the
// spool, the pid file) is the server's alone: files 0600, directories 0700.
process.umask(0o077);

const program = new Command()
  .name('ximssd')
  .description('XIMSS communications server')
  .version(SERVER_VERSION)
  // Usage errors are one line on standard error and exit 2 (see below); help is asked for.
  .exitOverride()
  .configureOutput({ outputError: (message, write) => write(message.replace(/^error: /, 'ximssd: ')) });
registerServe(program);
registerInit(program);
registerDomainCommands(program);
registerDkimCommands(program);
registerAccountCommands(program);
registerQueueCommands(program);
registerBalanceCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Already printed by commander (help, the version, or the usage error).
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  }
  if (err instanceof ConfigError) {
    for (const line of err.lines()) console.error(line);
    process.exit(EXIT_USAGE);
  }
  if (err instanceof ServiceError) console.error(`ximssd: ${err.message}`);
  else console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(EXIT_FAILED);
});
