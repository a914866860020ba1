import type { Command } from 'commander';
import { bootstrapStore } from '../bootstrap.js';
import { EventBus } from '../bus/bus.js';
import { AccountService } from '../services/accounts.js';
import { ServiceError } from '../services/errors.js';
import { openStore, storeWhere } from '../store/open.js';
import { NoStoreError } from '../store/store.js';
import { adminLogger, adminOptions, configFrom, type AdminOptions } from './common.js';
import { passwordOptions, readPassword, type PasswordOptions } from './password.js';

/**
 * `ximssd init`: creates the store, the default domain and its postmaster. Refuses a store
 * that has a domain already (`serve` on an empty store does the same as init, as before).
 */
export function registerInit(program: Command): void {
  passwordOptions(
    adminOptions(program.command('init').description('create the store, the default domain and its postmaster account')),
    "the postmaster's password",
  ).action(async (options: AdminOptions & PasswordOptions) => {
    const config = configFrom(options);
    const log = adminLogger(config, options);
    const where = storeWhere(config.store || undefined, config.dataDir);
    // Asked before anything is created: a refused or mistyped password leaves nothing behind.
    // Only a missing store is made here: one of an older schema is upgraded by `serve`, with
    // the data directory locked (see StoreVersionError), never behind a running server's back.
    const store0 = await openStore(config.store || undefined, config.dataDir, { create: false }).catch((err: unknown) => {
      if (err instanceof NoStoreError) return undefined;
      throw err;
    });
    if (store0) {
      const domains = await store0.domains.list().finally(() => store0.close());
      if (domains.length > 0) throw new ServiceError(`there is already a ximssd store in ${where} (domains: ${domains.map((d) => d.name).join(', ')}); nothing changed`);
    }
    const given = await readPassword(options, "the postmaster's password", true);
    // Locked like a serving process: no server may start on the store while it is being made.
    const store = await openStore(config.store || undefined, config.dataDir, { serve: true });
    const bus = new EventBus(store.relay, log);
    try {
      const accounts = new AccountService(store, bus, config.defaultDomain, log);
      const password = await bootstrapStore(store, accounts, given);
      if (password === undefined) throw new ServiceError(`there is already a ximssd store in ${where}; nothing changed`);
      console.log(`created the store in ${where}, domain ${config.defaultDomain} and account postmaster@${config.defaultDomain}`);
      if (given === undefined) console.log(`postmaster password: ${password}   (shown once; change it with \`ximssd account passwd postmaster@${config.defaultDomain}\`)`);
    } finally {
      await bus.close();
      await store.close();
    }
  });
}
