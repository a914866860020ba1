#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { bootstrapStore } from './bootstrap.js';
import { loadConfig, type Config, type ConfigOverrides } from './config.js';
import { AccountService, fullName } from './services/accounts.js';
import { AlertService } from './services/alerts.js';
import { ServiceError } from './services/errors.js';
import { EventBus } from './bus/bus.js';
import { openStore, StoreLockedError } from './store/open.js';
import type { Store } from './store/store.js';
import { SERVER_VERSION } from './version.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('not a port number');
  return n;
}

interface CommonOptions {
  data?: string;
  config?: string;
  store?: string;
}

function configFrom(options: CommonOptions, extra: ConfigOverrides = {}): Config {
  return loadConfig(options.config, {
    ...extra,
    ...(options.data ? { dataDir: options.data } : {}),
    ...(options.store !== undefined ? { store: options.store } : {}),
  });
}

/**
 * Runs a command line action against the store (beside a running server, which hears of
 * every change through the bus the command publishes on).
 */
async function withStore(options: CommonOptions, action: (store: Store, accounts: AccountService, bus: EventBus, config: Config) => Promise<void>): Promise<void> {
  const config = configFrom(options);
  const store = await openStore(config.store || undefined, config.dataDir);
  const bus = new EventBus(store.relay);
  try {
    const accounts = new AccountService(store, bus, config.defaultDomain);
    const generated = await bootstrapStore(store, accounts);
    if (generated) console.log(`created domain ${config.defaultDomain}; postmaster password: ${generated} (shown once)`);
    await action(store, accounts, bus, config);
  } finally {
    await bus.close();
    await store.close();
  }
}

/** The account named exactly so (an alias does not name the account in administration commands). */
async function requireAccount(accounts: AccountService, address: string) {
  const account = await accounts.find(address, undefined, { aliases: false });
  if (!account) throw new ServiceError(`unknown account ${address}`);
  return account;
}

const program = new Command()
  .name('ximssd')
  .description('XIMSS communications server')
  .version(SERVER_VERSION)
  .showHelpAfterError();

const dataOptions = (command: Command): Command =>
  command
    .option('--data <dir>', 'data directory (default ./data)')
    .option('--store <url>', 'postgres://user@host:port/db to use PostgreSQL (default: SQLite in the data directory)')
    .option('--config <file>', 'JSON configuration file');

dataOptions(program.command('serve').description('run the server'))
  .option('--host <addr>', 'address to listen on (default 0.0.0.0)')
  .option('--ximss <port>', 'XIMSS TCP port (default 11024)', port)
  .option('--http <port>', 'HTTP port (default 8100)', port)
  .option('--smtp <port>', 'SMTP port (default 2525; 0 turns SMTP off)', port)
  .option('--xmpp <port>', 'XMPP port (default 5222)', port)
  .option('--relay <host:port>', 'send mail for other domains through this SMTP relay (default: to each domain\'s MX)')
  .action(async (options: CommonOptions & { host?: string; ximss?: number; http?: number; smtp?: number; xmpp?: number; relay?: string }) => {
    const ports: Partial<Config['ports']> = {};
    if (options.ximss !== undefined) ports.ximss = options.ximss;
    if (options.http !== undefined) ports.http = options.http;
    if (options.smtp !== undefined) ports.smtp = options.smtp;
    if (options.xmpp !== undefined) ports.xmpp = options.xmpp;
    const config = configFrom(options, {
      ...(options.host ? { host: options.host } : {}),
      ...(options.relay ? { outbound: { relay: options.relay } } : {}),
      ports,
    });
    // Loaded here only: the listeners, TLS and the XML engine are not needed by the store commands.
    const { startServer } = await import('./server.js');
    let server;
    try {
      server = await startServer(config);
    } catch (err) {
      if (err instanceof StoreLockedError) {
        console.error(`ximssd: ${err.message}`);
        process.exit(1);
      }
      throw err;
    }
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      console.log(`${signal}: shutting down`);
      server.close().then(
        () => process.exit(0),
        (err: unknown) => {
          console.error('shutdown failed:', err);
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

const domain = program.command('domain').description('manage domains');
dataOptions(domain.command('add <name>').description('create a domain'))
  .option('--allow-signup', 'let users create accounts in this domain with XIMSS signup')
  .action(async (name: string, options: CommonOptions & { allowSignup?: boolean }) =>
    withStore(options, async (_store, accounts) => {
      const created = await accounts.createDomain(name, options.allowSignup ? { SignupAllowed: 'Yes' } : {});
      console.log(`domain ${created.name} created`);
    }),
  );
dataOptions(domain.command('list').description('list domains')).action(async (options: CommonOptions) =>
  withStore(options, async (_store, accounts) => {
    for (const d of await accounts.listDomains()) console.log(d.name);
  }),
);

const account = program.command('account').description('manage accounts');
dataOptions(account.command('add <address>').description('create an account (and its domain when missing)'))
  .requiredOption('--password <pw>', 'the password')
  .option('--real-name <name>', 'the real name')
  .action(async (address: string, options: CommonOptions & { password: string; realName?: string }) =>
    withStore(options, async (_store, accounts) => {
      const created = await accounts.create({ address, password: options.password, realName: options.realName, createDomain: true });
      console.log(`account ${fullName(created)} created`);
    }),
  );
dataOptions(account.command('list [domain]').description('list accounts')).action(async (domainName: string | undefined, options: CommonOptions) =>
  withStore(options, async (_store, accounts) => {
    for (const a of await accounts.list(domainName)) console.log(`${fullName(a)}${a.realName ? `\t${a.realName}` : ''}`);
  }),
);
dataOptions(account.command('remove <address>').description('remove an account; its sessions end')).action(
  async (address: string, options: CommonOptions) =>
    withStore(options, async (_store, accounts) => {
      await accounts.remove(await requireAccount(accounts, address));
      console.log(`account ${address} removed`);
    }),
);
dataOptions(account.command('passwd <address>').description("set an account's password"))
  .requiredOption('--password <pw>', 'the new password')
  .action(async (address: string, options: CommonOptions & { password: string }) =>
    withStore(options, async (_store, accounts) => {
      await accounts.setPassword(await requireAccount(accounts, address), options.password);
      console.log(`password of ${address} changed`);
    }),
  );

dataOptions(account.command('aliases <address> [names...]').description("list an account's aliases, or replace them with NAMES"))
  .option('--clear', 'remove every alias')
  .action(async (address: string, names: string[], options: CommonOptions & { clear?: boolean }) =>
    withStore(options, async (_store, accounts) => {
      const target = await requireAccount(accounts, address);
      if (names.length > 0 || options.clear) await accounts.setAliases(target, options.clear ? [] : names);
      for (const alias of await accounts.aliases(target)) console.log(`${alias}@${target.domain}`);
    }),
  );

dataOptions(program.command('alert <address> <text>').description('send an alert to an account')).action(
  async (address: string, text: string, options: CommonOptions) =>
    withStore(options, async (store, accounts, bus) => {
      await new AlertService(store, bus).post(await requireAccount(accounts, address), text);
      console.log(`alert posted to ${address}`);
    }),
);

dataOptions(program.command('queue').description('list the outbound mail queue (like mailq)')).action(async (options: CommonOptions) =>
  withStore(options, async (store) => {
    const queued = await store.queue.list();
    const now = Date.now();
    for (const { message, recipients, lease } of queued) {
      const pending = recipients.filter((r) => r.state === 'pending');
      const claimed = lease && lease.until > now ? `\tbeing tried by node ${lease.owner}` : '';
      console.log(`${message.id}\t${new Date(message.created).toISOString()}\t${message.size} bytes\t<${message.sender}>${claimed}`);
      for (const r of pending) {
        const next = new Date(r.nextAttempt).toISOString();
        console.log(`\t<${r.address}>\t${r.attempts} attempt(s), next ${next}${r.status ? `\t${r.status} ${r.diagnostic ?? ''}` : ''}`);
      }
    }
    console.log(`${queued.length} message(s) queued`);
  }),
);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ServiceError) console.error(`ximssd: ${err.message}`);
  else console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
