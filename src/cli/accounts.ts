import type { Command } from 'commander';
import { fullName } from '../services/accounts.js';
import { AlertService } from '../services/alerts.js';
import { dataOptions, requireAccount, withStore, type CommonOptions } from './common.js';

export function registerAccountCommands(program: Command): void {
  const account = program.command('account').description('manage accounts');
  dataOptions(account.command('add <address>').description('create an account (and its domain when missing)'))
    .requiredOption('--password <pw>', 'the password')
    .option('--real-name <name>', 'the real name')
    .action(async (address: string, options: CommonOptions & { password: string; realName?: string }) =>
      withStore(options, async ({ accounts }) => {
        const created = await accounts.create({ address, password: options.password, realName: options.realName, createDomain: true });
        console.log(`account ${fullName(created)} created`);
      }),
    );
  dataOptions(account.command('list [domain]').description('list accounts')).action(async (domainName: string | undefined, options: CommonOptions) =>
    withStore(options, async ({ accounts }) => {
      for (const a of await accounts.list(domainName)) console.log(`${fullName(a)}${a.realName ? `\t${a.realName}` : ''}`);
    }),
  );
  dataOptions(account.command('remove <address>').description('remove an account; its sessions end')).action(
    async (address: string, options: CommonOptions) =>
      withStore(options, async ({ accounts }) => {
        await accounts.remove(await requireAccount(accounts, address));
        console.log(`account ${address} removed`);
      }),
  );
  dataOptions(account.command('passwd <address>').description("set an account's password"))
    .requiredOption('--password <pw>', 'the new password')
    .action(async (address: string, options: CommonOptions & { password: string }) =>
      withStore(options, async ({ accounts }) => {
        await accounts.setPassword(await requireAccount(accounts, address), options.password);
        console.log(`password of ${address} changed`);
      }),
    );
  dataOptions(account.command('aliases <address> [names...]').description("list an account's aliases, or replace them with NAMES"))
    .option('--clear', 'remove every alias')
    .action(async (address: string, names: string[], options: CommonOptions & { clear?: boolean }) =>
      withStore(options, async ({ accounts }) => {
        const target = await requireAccount(accounts, address);
        if (names.length > 0 || options.clear) await accounts.setAliases(target, options.clear ? [] : names);
        for (const alias of await accounts.aliases(target)) console.log(`${alias}@${target.domain}`);
      }),
    );

  dataOptions(program.command('alert <address> <text>').description('send an alert to an account')).action(
    async (address: string, text: string, options: CommonOptions) =>
      withStore(options, async ({ store, accounts, bus }) => {
        await new AlertService(store, bus).post(await requireAccount(accounts, address), text);
        console.log(`alert posted to ${address}`);
      }),
  );
}
