/**
 * `ximssd domain dkim NAME`: the domain's DKIM key (README "Mail authentication"). The
 * private key stays in the domain's settings and is never printed (nor logged); the record
 * to publish is. Changes go through AccountService.setDkimKey: logged on standard error
 * (`domain.dkim_changed`, at --log-level) and heard by a running server (`domainChanged`).
 */
import { Command, InvalidArgumentError } from 'commander';
import { ServiceError } from '../services/errors.js';
import {
  DKIM_ALGORITHMS,
  DKIM_SETTING,
  dkimKeyOf,
  dkimZoneRecord,
  generateDkimKey,
  validSelector,
  type DkimAlgorithm,
  type DkimKey,
} from '../services/dkim-keys.js';
import { adminOptions, withStore, type AdminOptions } from './common.js';

interface DkimOptions extends AdminOptions {
  selector?: string;
  algorithm: DkimAlgorithm;
  bits: number;
  show?: boolean;
  remove?: boolean;
  replace?: boolean;
}

function algorithm(value: string): DkimAlgorithm {
  const found = DKIM_ALGORITHMS.find((a) => a === value);
  if (!found) throw new InvalidArgumentError(`one of ${DKIM_ALGORITHMS.join(', ')}`);
  return found;
}

function bits(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1024 || n > 4096) throw new InvalidArgumentError('a number of bits from 1024 to 4096');
  return n;
}

function selector(value: string): string {
  if (!validSelector(value)) throw new InvalidArgumentError('letters, digits, hyphens, dots (a DNS name)');
  return value;
}

/** The default selector: `ximssd` and the date, so that a new key next to an old one gets a new name. */
function defaultSelector(now = new Date()): string {
  return `ximssd-${now.toISOString().slice(0, 10).replace(/-/g, '')}`;
}

function describe(domain: string, key: DkimKey): string {
  return `selector ${key.selector}, ${key.algorithm}; publish this DNS record:\n${dkimZoneRecord(domain, key)}`;
}

/** Adds `dkim` to the `domain` command (registered before this). */
export function registerDkimCommands(program: Command): void {
  const domain = program.commands.find((c) => c.name() === 'domain') ?? program.command('domain').description('manage domains');
  adminOptions(
    domain
      .command('dkim <name>')
      .description("generate the domain's DKIM signing key and print the DNS record to publish")
      .option('--selector <selector>', 'the key selector (default ximssd-YYYYMMDD)', selector)
      .option('--algorithm <algorithm>', `${DKIM_ALGORITHMS.join(' or ')}`, algorithm, 'rsa-sha256')
      .option('--bits <bits>', 'RSA key size', bits, 2048)
      .option('--replace', 'replace an existing key (publish the new record before mail signed with it leaves)')
      .option('--show', 'print the DNS record of the existing key')
      .option('--remove', 'remove the key: mail is no longer signed'),
  ).action(async (name: string, options: DkimOptions) =>
    withStore(options, async ({ accounts }) => {
      if (options.show && options.remove) throw new ServiceError('--show and --remove exclude each other');
      const record = await accounts.getDomain(name);
      if (!record) throw new ServiceError(`unknown domain ${name}`);
      const current = dkimKeyOf(record.settings);
      if (options.show) {
        if (!current) throw new ServiceError(`domain ${record.name} has no DKIM key (\`ximssd domain dkim ${record.name}\` makes one)`);
        console.log(describe(record.name, current));
        return;
      }
      if (options.remove) {
        if (record.settings[DKIM_SETTING] === undefined) throw new ServiceError(`domain ${record.name} has no DKIM key`);
        await accounts.setDkimKey(record.name, null);
        console.log(`DKIM key of ${record.name} removed; mail from it is no longer signed (the DNS record may go too)`);
        return;
      }
      if (current && !options.replace) {
        throw new ServiceError(`domain ${record.name} already has a DKIM key (selector ${current.selector}): --show prints its record, --replace makes a new one`);
      }
      const key = generateDkimKey(options.selector ?? defaultSelector(), options.algorithm, options.bits);
      await accounts.setDkimKey(record.name, key);
      console.log(`DKIM key of ${record.name} created: ${describe(record.name, key)}`);
    }),
  );
}
