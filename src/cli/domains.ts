import type { Command } from 'commander';
import { dataOptions, withStore, type CommonOptions } from './common.js';

export function registerDomainCommands(program: Command): void {
  const domain = program.command('domain').description('manage domains');
  dataOptions(domain.command('add <name>').description('create a domain'))
    .option('--allow-signup', 'let users create accounts in this domain with XIMSS signup')
    .action(async (name: string, options: CommonOptions & { allowSignup?: boolean }) =>
      withStore(options, async ({ accounts }) => {
        const created = await accounts.createDomain(name, options.allowSignup ? { SignupAllowed: 'Yes' } : {});
        console.log(`domain ${created.name} created`);
      }),
    );
  dataOptions(domain.command('list').description('list domains')).action(async (options: CommonOptions) =>
    withStore(options, async ({ accounts }) => {
      for (const d of await accounts.listDomains()) console.log(d.name);
    }),
  );
}
