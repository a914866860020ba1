/**
 * `ximssd balance`: the administrator's side of the account balances (src/services/billing.ts),
 * beside a running server or without one (the store decides every change in its own
 * transaction, so the server and the command line never overwrite each other).
 *
 *   ximssd balance <account>                         every balance of the account
 *   ximssd balance credit <account> <amount> [...]   add funds (minor units: cents)
 *   ximssd balance debit <account> <amount> [...]    take funds; refused beyond the balance
 *   ximssd balance history <account> [--limit N]     the ledger, newest first
 */
import type { Command } from 'commander';
import { fullName } from '../services/accounts.js';
import { BillingService, type PostResult } from '../services/billing.js';
import { adminOptions, withStore, type AdminOptions, type CommandContext } from './common.js';

interface PostOptions extends AdminOptions {
  reason?: string;
  currency?: string;
  reference?: string;
}

/** The billing service of the command line: it acts as 'cli', so it needs no Account Access Rights. */
function service(ctx: CommandContext): BillingService {
  return new BillingService(ctx.store, ctx.accounts, undefined, ctx.config.billing, ctx.log);
}

/** The options of credit and debit. */
const postOptions = (command: Command): Command =>
  adminOptions(command)
    .option('--reason <text>', 'why (kept in the ledger)')
    .option('--currency <name>', 'the balance: a currency code or a balance name (default: billing.currency)')
    .option('--reference <key>', 'an idempotency key: the same key again changes nothing');

function report(verb: string, address: string, amount: string, result: PostResult): void {
  const { entry, balance } = result;
  if (result.repeated) console.log(`reference ${entry.key} was already posted (entry ${entry.id}, ${entry.amount} ${entry.currency}); nothing changed; balance ${balance} ${entry.currency}`);
  else console.log(`${verb} ${amount} ${entry.currency} ${verb === 'credited' ? 'to' : 'from'} ${address}: balance ${balance} ${entry.currency} (entry ${entry.id})`);
}

export function registerBalanceCommands(program: Command): void {
  const balance = program.command('balance').description('account balances: show, credit, debit, history (amounts in minor units: cents)');
  adminOptions(balance.command('show <account>', { isDefault: true }).description('show every balance of an account (the default)')).action(
    async (address: string, options: AdminOptions) =>
      withStore(options, async (ctx) => {
        const billing = service(ctx);
        const target = await billing.target('cli', address);
        console.log(`account ${fullName(target)}`);
        for (const b of await billing.balances('cli', target)) console.log(`${b.currency}\t${b.amount}\t(${b.entries} entr${b.entries === 1 ? 'y' : 'ies'})`);
      }),
  );
  postOptions(balance.command('credit <account> <amount>').description('add funds to a balance')).action(
    async (address: string, amount: string, options: PostOptions) =>
      withStore(options, async (ctx) => {
        const billing = service(ctx);
        const target = await billing.target('cli', address);
        report('credited', fullName(target), amount, await billing.credit('cli', target, { currency: options.currency, amount, reason: options.reason, key: options.reference }));
      }),
  );
  postOptions(balance.command('debit <account> <amount>').description('take funds from a balance (refused beyond what it holds)')).action(
    async (address: string, amount: string, options: PostOptions) =>
      withStore(options, async (ctx) => {
        const billing = service(ctx);
        const target = await billing.target('cli', address);
        report('debited', fullName(target), amount, await billing.charge('cli', target, { currency: options.currency, amount, reason: options.reason, key: options.reference }));
      }),
  );
  adminOptions(balance.command('history <account>').description('the ledger of an account, newest first'))
    .option('--currency <name>', 'only this balance')
    .option('--limit <n>', 'at most this many entries (default and most: billing.historyLimit)')
    .action(async (address: string, options: AdminOptions & { currency?: string; limit?: string }) =>
      withStore(options, async (ctx) => {
        const billing = service(ctx);
        const target = await billing.target('cli', address);
        const entries = await billing.history('cli', target, { currency: options.currency ?? '*', ...(options.limit !== undefined ? { limit: options.limit } : {}) });
        for (const e of entries) {
          console.log(`${e.id}\t${new Date(e.time).toISOString()}\t${e.amount > 0 ? '+' : ''}${e.amount}\t${e.currency}\t${e.actor}\t${e.reason}${e.key !== null ? `\t[${e.key}]` : ''}`);
        }
        console.log(`${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`);
      }),
    );
}
