/**
 * What every command line action shares: its options (data directory, store, config file),
 * the configuration they make, and running an action against the store beside a running
 * server (which hears of every change through the bus the command publishes on).
 *
 * Only `ximssd init` and `ximssd serve` create a store; every other command opens an
 * existing one and, when there is none, says so and changes nothing.
 */
import type { PrefsChanges } from '../services/preferences.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { loadConfig, type Config, type ConfigOverrides } from '../config.js';
import { EventBus } from '../bus/bus.js';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../log.js';
import { AccountService } from '../services/accounts.js';
import { ServiceError } from '../services/errors.js';
import { NoStoreError, openStore, StoreVersionError } from '../store/open.js';
import type { AccountRecord, Store } from '../store/store.js';

/** Commander's parser of port flags: a whole number from 0 to 65535 (an invalid one exits 2, see main.ts). */
export function port(value: string): number {
  const n = /^[0-9]{1,5}$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('It must be a port number, 0 to 65535.');
  return n;
}

export interface CommonOptions {
  data?: string;
  config?: string;
  store?: string;
}

/** The configuration of a command: defaults, --config FILE, then the flags; a ConfigError lists every problem. */
export function configFrom(options: CommonOptions, extra: ConfigOverrides | Record<string, unknown> = {}): Config {
  return loadConfig(options.config, {
    ...extra,
    ...(options.data ? { dataDir: options.data } : {}),
    ...(options.store !== undefined ? { store: options.store } : {}),
  });
}

/** Adds the options every command takes. */
export const dataOptions = (command: Command): Command =>
  command
    .option('--data <dir>', 'data directory (default ./data)')
    .option('--store <url>', 'postgres://user@host:port/db to use PostgreSQL (default: SQLite in the data directory)')
    .option('--config <file>', 'JSON configuration file');

/** The options of the administration commands: dataOptions and --log-level. */
export const adminOptions = (command: Command): Command =>
  dataOptions(command).addOption(
    new Option('--log-level <level>', 'level of the log lines on standard error (default: the configured one; warn on a terminal)').choices(
      LOG_LEVELS as unknown as string[],
    ),
  );

export interface AdminOptions extends CommonOptions {
  logLevel?: string;
}

/** What an action gets. */
export interface CommandContext {
  store: Store;
  accounts: AccountService;
  bus: EventBus;
  config: Config;
  /** The administration log (component `admin`) on standard error. */
  log: Logger;
}

/**
 * The administration log: JSON lines on standard error, component `admin`, at --log-level,
 * else the configured level, except on a terminal where it is `warn` (interactive use stays
 * quiet; the command's own output is on standard output).
 */
export function adminLogger(config: Config, options: AdminOptions): Logger {
  const level = (options.logLevel as LogLevel | undefined) ?? (process.stderr.isTTY ? 'warn' : config.log.level);
  return createLogger({ level, destination: pino.destination({ dest: 2, sync: true }), base: { component: 'admin' } });
}

/**
 * Runs a command line action against the existing store, and closes it after. Creates
 * nothing: without a store (or with one of another schema version) it refuses with a
 * ServiceError that says what to do.
 */
export async function withStore(options: AdminOptions, action: (ctx: CommandContext) => Promise<void>): Promise<void> {
  const config = configFrom(options);
  const log = adminLogger(config, options);
  let store: Store;
  try {
    store = await openStore(config.store || undefined, config.dataDir, { create: false });
  } catch (err) {
    if (err instanceof NoStoreError || err instanceof StoreVersionError) throw new ServiceError(err.message);
    throw err;
  }
  const bus = new EventBus(store.relay, log);
  try {
    const accounts = new AccountService(store, bus, config.defaultDomain, log);
    await action({ store, accounts, bus, config, log });
  } finally {
    await bus.close();
    await store.close();
  }
}

/** The account named exactly so (an alias does not name the account in administration commands). */
export async function requireAccount(accounts: AccountService, address: string): Promise<AccountRecord> {
  const account = await accounts.find(address, undefined, { aliases: false });
  if (!account) throw new ServiceError(`unknown account ${address}`);
  return account;
}

/**
 * `Key=Value` arguments of `account prefs` and `domain prefs`: values are strings; `Key=` or
 * `Key=default` removes the value (the spec's `default`). A name is given once.
 */
export function parsePrefAssignments(assignments: readonly string[]): PrefsChanges {
  const changes: PrefsChanges = {};
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new ServiceError(`expected Key=Value, not ${JSON.stringify(assignment)}`);
    const key = assignment.slice(0, eq);
    const value = assignment.slice(eq + 1);
    if (!/^[A-Za-z_][A-Za-z0-9._-]*$/.test(key)) throw new ServiceError(`invalid preference name ${JSON.stringify(key)}`);
    if (Object.prototype.hasOwnProperty.call(changes, key)) throw new ServiceError(`the preference ${key} is given twice`);
    Object.defineProperty(changes, key, { value: value === '' || value === 'default' ? null : value, enumerable: true, writable: true, configurable: true });
  }
  return changes;
}
