import type { Command } from 'commander';
import { fullName, parseSizeSetting, UnknownDomainError } from '../services/accounts.js';
import { AlertService } from '../services/alerts.js';
import { removeAllAppPasswords } from '../services/app-passwords.js';
import { ServiceError } from '../services/errors.js';
import { parseSettingAssignments, SETTINGS } from '../services/settings.js';
import { adminOptions, parsePrefAssignments, requireAccount, withStore, type AdminOptions } from './common.js';
import { shown } from './domains.js';
import { passwordOptions, readPassword, type PasswordOptions } from './password.js';

/** A byte count for people. */
function bytes(n: number): string {
  const units = ['bytes', 'K', 'M', 'G', 'T'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} bytes` : `${value.toFixed(1)}${units[unit]} (${n} bytes)`;
}

export function registerAccountCommands(program: Command): void {
  const account = program.command('account').description('manage accounts');
  passwordOptions(adminOptions(account.command('add <address>').description('create an account in an existing domain')), 'the password')
    .option('--real-name <name>', 'the real name')
    .option('--create-domain', 'create the domain when it does not exist')
    .action(async (address: string, options: AdminOptions & PasswordOptions & { realName?: string; createDomain?: boolean }) =>
      withStore(options, async ({ accounts }) => {
        // The domain is looked at before the password is asked for.
        const { domain } = accounts.parseAddress(address);
        if (!options.createDomain && !(await accounts.getDomain(domain))) throw unknownDomain(domain);
        const password = (await readPassword(options, 'the password'))!;
        try {
          const created = await accounts.create({ address, password, realName: options.realName, createDomain: options.createDomain });
          console.log(`account ${fullName(created)} created`);
        } catch (err) {
          if (err instanceof UnknownDomainError) throw unknownDomain(err.domain);
          throw err;
        }
      }),
    );
  adminOptions(account.command('list [domain]').description('list accounts')).action(async (domainName: string | undefined, options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      for (const a of await accounts.list(domainName)) console.log(`${fullName(a)}${a.realName ? `\t${a.realName}` : ''}`);
    }),
  );
  adminOptions(account.command('show <address>').description("show an account: settings, aliases, storage, logins")).action(async (address: string, options: AdminOptions) =>
    withStore(options, async ({ accounts, store }) => {
      const a = await requireAccount(accounts, address);
      const sources = await accounts.settingSources(a);
      const used = await store.mail.accountUsage(a.id);
      const limit = parseSizeSetting(sources.get('MaxAccountSize')?.value);
      const aliases = await accounts.aliases(a);
      console.log(`account ${fullName(a)}`);
      console.log(`real name\t${a.realName ?? '(none)'}`);
      console.log(`created\t${a.created.toISOString()}`);
      console.log(`last login\t${a.prevLogin ? `${a.prevLogin.time.toISOString()} from ${a.prevLogin.address}` : '(never)'}`);
      console.log(`last failed login\t${a.lastFailedLogin ? `${a.lastFailedLogin.time.toISOString()} from ${a.lastFailedLogin.address}` : '(none)'}`);
      console.log(`recovery address\t${a.recoveryEmail ?? '(none)'}`);
      console.log(`aliases\t${aliases.length > 0 ? aliases.map((n) => `${n}@${a.domain}`).join(', ') : '(none)'}`);
      console.log(`storage used\t${bytes(used)} of ${limit === undefined ? 'unlimited' : bytes(limit)}`);
      console.log('settings (effective value, and where it comes from):');
      for (const spec of SETTINGS.filter((s) => s.level === 'account' && s.stored === 'settings')) {
        const source = sources.get(spec.name);
        const from = source?.from === 'account' ? 'set on the account' : source?.from === 'domain' ? `default of ${a.domain}` : 'built-in default';
        console.log(`  ${spec.name}\t${shown(source?.value)}\t(${from})`);
      }
    }),
  );
  adminOptions(
    account
      .command('set <address> <settings...>')
      .description('set account settings (Key=Value; Key= or Key=default removes the explicit value)'),
  ).action(async (address: string, assignments: string[], options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      const changes = parseSettingAssignments(assignments, 'account');
      const a = await requireAccount(accounts, address);
      await accounts.changeAccount(a, changes);
      console.log(`account ${fullName(a)}: ${changes.keys.join(', ')} changed`);
    }),
  );
  adminOptions(
    account
      .command('prefs <address> [prefs...]')
      .description("show an account's preferences, or set its custom preferences (Key=Value; Key= or Key=default removes the custom value), checked as prefsStore checks them"),
  ).action(async (address: string, assignments: string[], options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      const a = await requireAccount(accounts, address);
      if (assignments.length === 0) {
        const [custom, effective] = await Promise.all([accounts.customPrefs(a), accounts.effectivePrefs(a)]);
        console.log(`preferences of ${fullName(a)} (effective value, and where it comes from):`);
        for (const name of Object.keys(effective).sort()) {
          console.log(`  ${name}\t${shown(effective[name])}\t(${Object.prototype.hasOwnProperty.call(custom, name) ? 'custom' : 'default'})`);
        }
        return;
      }
      const changes = parsePrefAssignments(assignments);
      await accounts.updatePrefs(a, changes);
      console.log(`account ${fullName(a)}: preferences ${Object.keys(changes).join(', ')} changed`);
    }),
  );
  adminOptions(account.command('remove <address>').description('remove an account; its sessions end')).action(async (address: string, options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      await accounts.remove(await requireAccount(accounts, address));
      console.log(`account ${address} removed`);
    }),
  );
  passwordOptions(adminOptions(account.command('passwd <address>').description("set an account's password")), 'the new password').action(
    async (address: string, options: AdminOptions & PasswordOptions) =>
      withStore(options, async ({ store, accounts, bus }) => {
        const target = await requireAccount(accounts, address);
        await accounts.setPassword(target, (await readPassword(options, 'the new password'))!);
        // The application passwords go with the old password; the account's sessions end.
        const removed = await removeAllAppPasswords(store, target.id);
        bus.publish('credentialsRevoked', { accountId: target.id });
        console.log(`password of ${address} changed${removed > 0 ? `; ${removed} application password(s) removed` : ''}`);
      }),
  );
  adminOptions(
    account
      .command('second-factor <address> [action]')
      .description("show whether an account logs in with a second factor; 'off' turns it off (a user who lost the authenticator and the recovery codes)"),
  ).action(async (address: string, action: string | undefined, options: AdminOptions) =>
    withStore(options, async ({ store, accounts, log }) => {
      if (action !== undefined && action !== 'off') throw new ServiceError(`unknown action ${action}: 'off', or nothing to show the state`);
      const target = await requireAccount(accounts, address);
      if (action === 'off') {
        const done = await store.twoFactor.disable(target.id);
        if (done) log.info({ event: 'auth.x2auth.disabled', user: address, by: 'cli' }, 'two-factor authentication turned off');
        console.log(done ? `two-factor login of ${address} turned off` : `${address} had no two-factor login`);
        return;
      }
      const on = (await store.twoFactor.get(target.id)) !== undefined;
      console.log(on ? `two-factor login: on (${await store.twoFactor.recoveryCodesLeft(target.id)} recovery codes left)` : 'two-factor login: off');
    }),
  );
  adminOptions(account.command('aliases <address> [names...]').description("list an account's aliases, or replace them with NAMES"))
    .option('--clear', 'remove every alias')
    .action(async (address: string, names: string[], options: AdminOptions & { clear?: boolean }) =>
      withStore(options, async ({ accounts }) => {
        const target = await requireAccount(accounts, address);
        if (names.length > 0 || options.clear) await accounts.setAliases(target, options.clear ? [] : names);
        for (const alias of await accounts.aliases(target)) console.log(`${alias}@${target.domain}`);
      }),
    );

  adminOptions(program.command('alert <address> <text>').description('send an alert to an account')).action(
    async (address: string, text: string, options: AdminOptions) =>
      withStore(options, async ({ store, accounts, bus }) => {
        await new AlertService(store, bus).post(await requireAccount(accounts, address), text);
        console.log(`alert posted to ${address}`);
      }),
  );
}

function unknownDomain(domain: string): ServiceError {
  return new ServiceError(`unknown domain ${domain} (add it with \`ximssd domain add\`, or pass --create-domain)`);
}
