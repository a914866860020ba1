/**
 * What every command line action shares: its options (data directory, store, config file),
 * the configuration they make, and running an action against the store beside a running
 * server (which hears of every change through the bus the command publishes on).
 */
import { Command, InvalidArgumentError } from 'commander';
import { bootstrapStore } from '../bootstrap.js';
import { loadConfig, type Config, type ConfigOverrides } from '../config.js';
import { EventBus } from '../bus/bus.js';
import { AccountService } from '../services/accounts.js';
import { ServiceError } from '../services/errors.js';
import { openStore } from '../store/open.js';
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

/** What an action gets. */
export interface CommandContext {
  store: Store;
  accounts: AccountService;
  bus: EventBus;
  config: Config;
}

/** Runs a command line action against the store, and closes it after. */
export async function withStore(options: CommonOptions, action: (ctx: CommandContext) => Promise<void>): Promise<void> {
  const config = configFrom(options);
  const store = await openStore(config.store || undefined, config.dataDir);
  const bus = new EventBus(store.relay);
  try {
    const accounts = new AccountService(store, bus, config.defaultDomain);
    const generated = await bootstrapStore(store, accounts);
    if (generated) console.log(`created domain ${config.defaultDomain}; postmaster password: ${generated} (shown once)`);
    await action({ store, accounts, bus, config });
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
