import type { Command } from 'commander';
import { ACCOUNT_DEFAULTS_KEY, AccountService, DEFAULT_PREFS } from '../services/accounts.js';
import { ServiceError } from '../services/errors.js';
import { parseSettingAssignments, SETTINGS } from '../services/settings.js';
import type { Settings } from '../store/store.js';
import type { XimssValue } from '../xml/objects.js';
import { adminOptions, parsePrefAssignments, withStore, type AdminOptions } from './common.js';

/** A setting's value for display. */
export function shown(value: XimssValue | undefined): string {
  if (value === undefined) return '(none)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function dictionary(value: XimssValue | undefined): Settings {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) ? value : {};
}

export function registerDomainCommands(program: Command): void {
  const domain = program.command('domain').description('manage domains');
  adminOptions(domain.command('add <name>').description('create a domain'))
    .option('--allow-signup', 'let users create accounts in this domain with XIMSS signup (SignupAllowed=Yes)')
    .action(async (name: string, options: AdminOptions & { allowSignup?: boolean }) =>
      withStore(options, async ({ accounts }) => {
        const created = await accounts.createDomain(name, options.allowSignup ? { SignupAllowed: 'Yes' } : {});
        console.log(`domain ${created.name} created`);
      }),
    );
  adminOptions(domain.command('list').description('list domains')).action(async (options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      for (const d of await accounts.listDomains()) console.log(d.name);
    }),
  );
  adminOptions(domain.command('show <name>').description("show a domain's settings and account count")).action(async (name: string, options: AdminOptions) =>
    withStore(options, async ({ accounts, store, config }) => {
      const d = await accounts.getDomain(name);
      if (!d) throw new ServiceError(`unknown domain ${name}`);
      const defaults = dictionary(d.settings[ACCOUNT_DEFAULTS_KEY]);
      console.log(`domain ${d.name}${d.name === config.defaultDomain.toLowerCase() ? ' (the default domain)' : ''}`);
      console.log(`created\t${d.created.toISOString()}`);
      console.log(`accounts\t${await store.accounts.count(d.name)}`);
      // Only the registered keys: the domain's settings may hold secrets of other features (DKIM keys).
      console.log('domain settings:');
      for (const spec of SETTINGS.filter((s) => s.level === 'domain')) {
        const explicit = d.settings[spec.name];
        console.log(`  ${spec.name}\t${explicit !== undefined ? shown(explicit) : `${shown(spec.default)} (default)`}`);
      }
      console.log("defaults of its accounts' settings:");
      for (const spec of SETTINGS.filter((s) => s.level === 'account' && s.stored === 'settings')) {
        const explicit = defaults[spec.name];
        console.log(`  ${spec.name}\t${explicit !== undefined ? shown(explicit) : `${shown(spec.default)} (built-in default)`}`);
      }
    }),
  );
  adminOptions(
    domain
      .command('set <name> <settings...>')
      .description(
        'set domain settings (Key=Value; Key= or Key=default removes the explicit value); account settings set here are the defaults of its accounts',
      ),
  ).action(async (name: string, assignments: string[], options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      const changes = parseSettingAssignments(assignments, 'domain');
      const d = await accounts.getDomain(name);
      if (!d) throw new ServiceError(`unknown domain ${name}`);
      await accounts.updateDomainSettings(d.name, changes.settings, changes.accountDefaults);
      console.log(`domain ${d.name}: ${changes.keys.join(', ')} changed`);
    }),
  );
  adminOptions(
    domain
      .command('prefs <name> [prefs...]')
      .description("show a domain's default preferences for its accounts, or set them (Key=Value; Key= or Key=default removes the domain's value), checked as prefsStore checks them"),
  ).action(async (name: string, assignments: string[], options: AdminOptions) =>
    withStore(options, async ({ accounts }) => {
      if (assignments.length === 0) {
        const own = await accounts.domainDefaultPrefs(name);
        const d = (await accounts.getDomain(name))!;
        console.log(`default preferences of the accounts of ${d.name}:`);
        for (const key of [...new Set([...Object.keys(DEFAULT_PREFS), ...Object.keys(own)])].sort()) {
          const set = Object.prototype.hasOwnProperty.call(own, key);
          console.log(`  ${key}\t${shown(set ? own[key] : DEFAULT_PREFS[key])}\t(${set ? 'set on the domain' : 'built-in default'})`);
        }
        return;
      }
      const changes = parsePrefAssignments(assignments);
      await accounts.updateDomainDefaultPrefs(name, changes);
      console.log(`domain ${AccountService.normalizeDomain(name)}: default preferences ${Object.keys(changes).join(', ')} changed`);
    }),
  );
  adminOptions(domain.command('remove <name>').description('remove a domain (refused while it has accounts, and for the default domain, unless --force)'))
    .option('--force', 'remove its accounts too (their sessions end), or the default domain')
    .action(async (name: string, options: AdminOptions & { force?: boolean }) =>
      withStore(options, async ({ accounts }) => {
        const removed = await accounts.removeDomain(name, { force: options.force });
        console.log(`domain ${AccountService.normalizeDomain(name)} removed${removed.accounts > 0 ? ` with ${removed.accounts} account(s)` : ''}`);
      }),
    );
}
