/**
 * The administrator command set of CommuniGate's CLI (XIMSS cliExecute): a command line is a
 * command name followed by arguments in CommuniGate's text presentation of objects (words,
 * quoted strings, `(a,b)` arrays, `{key=value;}` dictionaries; read by files/cg-text.ts),
 * run against the server's services with the rights of the account that sends it.
 *
 * Who may run what:
 * - a server administrator (an account named in `cli.administrators`): every command;
 * - a domain administrator (the domain's postmaster): the commands on its own domain and on
 *   the accounts of that domain;
 * - any account: the reading commands on its own account (GETACCOUNTSETTINGS and the like).
 * Anything else answers "access denied".
 *
 * Every command is logged (`cli.execute`) with the account, the command name and the outcome,
 * never the arguments (they may hold passwords).
 */
import type { Logger } from '../../log.js';
import type { AccountRecord, DomainRecord, Settings } from '../../store/store.js';
import type { XimssValue } from '../../xml/objects.js';
import { ACCOUNT_DEFAULT_PREFS_KEY, ACCOUNT_DEFAULTS_KEY, AccountService, fullName, UnknownDomainError } from '../accounts.js';
import { ACCESS_DENIED, UNKNOWN_ACCOUNT } from '../account-rights.js';
import { ServiceError } from '../errors.js';
import { parseObjectSequence } from '../files/cg-text.js';
import type { MailService } from '../mail/service.js';
import type { BillingActor, BillingService } from '../billing.js';
import type { PrefsChanges } from '../preferences.js';
import type { RuleService } from '../rules/service.js';
import type { RuleType } from '../rules/model.js';
import { parseSettingAssignments, type SettingChanges } from '../settings.js';
import { CliDate, CliNumber, type CliValue } from './values.js';

export interface CliLimits {
  /** Accounts (`name@domain`) that are server administrators. */
  administrators: readonly string[];
  /** The longest command line, in UTF-8 bytes. */
  maxCommandBytes: number;
  /** The deepest nesting of arrays and dictionaries in a command line. */
  maxDepth: number;
}

export interface CliDependencies {
  accounts: AccountService;
  mail: MailService;
  rules: RuleService;
  billing: BillingService;
  limits: CliLimits;
  /** The main domain (MAINDOMAINNAME). */
  mainDomain: string;
  /** The server software's version (GETSYSTEMINFO serverVersion). */
  serverVersion: string;
  log: Logger;
}

/** What a command answers: its result object, or nothing. */
export interface CliOutcome {
  command: string;
  result: CliValue | undefined;
}

export const UNKNOWN_COMMAND = 'unknown command';
export const SYNTAX_ERROR = 'CLI syntax error';
export const UNKNOWN_DOMAIN = 'unknown domain';

/** The account types CREATEACCOUNT accepts after its settings (every account here is a multi-mailbox one). */
const ACCOUNT_TYPES = new Set(['MULTIMAILBOX', 'TEXTMAILBOX', 'MAILDIRMAILBOX', 'SLICEDMAILBOX', 'AGENTMAILBOX', 'MAILDIR']);

/** The arguments of one command, read left to right. */
class Args {
  private at = 0;
  constructor(
    readonly command: string,
    private readonly values: readonly XimssValue[],
  ) {}

  private missing(what: string): never {
    throw new ServiceError(`${SYNTAX_ERROR}: ${this.command} needs ${what}`);
  }

  more(): boolean {
    return this.at < this.values.length;
  }

  /** A string argument (a word or a quoted string). */
  string(what: string): string {
    const value = this.values[this.at];
    if (value === undefined) this.missing(what);
    if (typeof value !== 'string') throw new ServiceError(`${SYNTAX_ERROR}: ${this.command}: ${what} must be a string`);
    this.at++;
    return value;
  }

  optionalString(what: string): string | undefined {
    return this.more() ? this.string(what) : undefined;
  }

  /** A dictionary argument. */
  dictionary(what: string): { [key: string]: XimssValue } {
    const value = this.values[this.at];
    if (value === undefined) this.missing(what);
    if (typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
      throw new ServiceError(`${SYNTAX_ERROR}: ${this.command}: ${what} must be a dictionary {key=value;...}`);
    }
    this.at++;
    return value;
  }

  /** An array argument of strings. */
  strings(what: string): string[] {
    const value = this.values[this.at];
    if (value === undefined) this.missing(what);
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
      throw new ServiceError(`${SYNTAX_ERROR}: ${this.command}: ${what} must be an array of strings (a,b,...)`);
    }
    this.at++;
    return value as string[];
  }

  peek(): XimssValue | undefined {
    return this.values[this.at];
  }

  /** Whether the next argument is the keyword `word` (case-insensitive); consumes it when it is. */
  keyword(word: string): boolean {
    const value = this.values[this.at];
    if (typeof value === 'string' && value.toUpperCase() === word) {
      this.at++;
      return true;
    }
    return false;
  }

  /** The keyword `word` must come next. */
  expect(word: string): void {
    if (!this.keyword(word)) this.missing(`the keyword ${word}`);
  }

  end(): void {
    if (this.more()) throw new ServiceError(`${SYNTAX_ERROR}: ${this.command}: unexpected argument ${this.at + 1}`);
  }
}

type Rights = 'server' | 'domain' | 'own';

interface Actor {
  account: AccountRecord;
  serverAdmin: boolean;
}

type Handler = (actor: Actor, args: Args) => Promise<CliValue | undefined>;

/** A settings dictionary as `Key=Value` assignments (settings.ts checks them); `default` removes. */
function assignments(dict: { [key: string]: XimssValue }, command: string): string[] {
  return Object.keys(dict).map((key) => {
    const value = dict[key]!;
    if (typeof value !== 'string') throw new ServiceError(`${SYNTAX_ERROR}: ${command}: the value of ${key} must be a string`);
    if (value === '') throw new ServiceError(`${command}: the value of ${key} is empty (use default to remove a setting)`);
    return `${key}=${value}`;
  });
}

/** A dictionary of preferences as changes: the string `default` removes a custom value. */
function prefsChanges(dict: { [key: string]: XimssValue }): PrefsChanges {
  const changes: PrefsChanges = {};
  for (const key of Object.keys(dict)) {
    const value = dict[key]!;
    Object.defineProperty(changes, key, { value: value === 'default' ? null : value, enumerable: true, writable: true, configurable: true });
  }
  return changes;
}

function settingsDictionary(value: XimssValue | undefined): Settings {
  return typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value) ? value : {};
}

export class CliService {
  private readonly commands: ReadonlyMap<string, { rights: Rights; run: Handler }>;

  constructor(private readonly deps: CliDependencies) {
    this.commands = new Map(Object.entries(this.table()));
  }

  /** The command names this interpreter knows (upper case), for the README and tests. */
  names(): string[] {
    return [...this.commands.keys()].sort();
  }

  isServerAdministrator(account: AccountRecord): boolean {
    return this.isAdministratorAddress(fullName(account));
  }

  private isAdministratorAddress(address: string): boolean {
    const name = address.toLowerCase();
    return this.deps.limits.administrators.some((a) => a.toLowerCase() === name);
  }

  /** Parses and runs one command line for `account`; ServiceError texts are what the client sees. */
  async execute(account: AccountRecord, text: string): Promise<CliOutcome> {
    const started = Date.now();
    let command = '';
    try {
      const bytes = Buffer.byteLength(text);
      if (bytes > this.deps.limits.maxCommandBytes) {
        throw new ServiceError(`the CLI command is too long (${bytes} bytes; at most ${this.deps.limits.maxCommandBytes})`);
      }
      const values = parseObjectSequence(text, { what: SYNTAX_ERROR, maxDepth: this.deps.limits.maxDepth });
      const first = values[0];
      if (first === undefined) throw new ServiceError(`${SYNTAX_ERROR}: the command is missing`);
      if (typeof first !== 'string' || !/^[A-Za-z][A-Za-z0-9]{0,63}$/.test(first)) throw new ServiceError(`${SYNTAX_ERROR}: a command name expected`);
      command = first.toUpperCase();
      const entry = this.commands.get(command);
      if (!entry) throw new ServiceError(`${UNKNOWN_COMMAND} ${command}`);
      const actor: Actor = { account, serverAdmin: this.isServerAdministrator(account) };
      // Only the least-privileged class can be refused before the command looks at its target.
      if (entry.rights === 'server' && !actor.serverAdmin) throw new ServiceError(ACCESS_DENIED);
      const result = await entry.run(actor, new Args(command, values.slice(1)));
      this.deps.log.info({ event: 'cli.execute', account: fullName(account), command, ok: true, ms: Date.now() - started }, `CLI ${command} by ${fullName(account)}`);
      return { command, result };
    } catch (err) {
      const error = err instanceof ServiceError ? err.message : 'internal error';
      this.deps.log.info(
        { event: 'cli.execute', account: fullName(account), command: command || undefined, ok: false, error: error.slice(0, 200) },
        `CLI ${command || '(unparsed)'} by ${fullName(account)} failed`,
      );
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Rights and targets

  private mayAdministerDomain(actor: Actor, domain: string): boolean {
    return actor.serverAdmin || (actor.account.name === 'postmaster' && actor.account.domain === domain);
  }

  /** A domain the actor administers (unknown domains are "unknown domain" only to those who may know). */
  private async domain(actor: Actor, name: string): Promise<DomainRecord> {
    let normalized: string;
    try {
      normalized = AccountService.normalizeDomain(name);
    } catch {
      throw new ServiceError(actor.serverAdmin ? `${UNKNOWN_DOMAIN} ${name.slice(0, 100)}` : ACCESS_DENIED);
    }
    if (!this.mayAdministerDomain(actor, normalized)) throw new ServiceError(ACCESS_DENIED);
    const found = await this.deps.accounts.getDomain(normalized);
    if (!found) throw new ServiceError(`${UNKNOWN_DOMAIN} ${normalized}`);
    return found;
  }

  /**
   * The account a command names (`name` is in the actor's domain), when the actor may act on
   * it: `own` lets an account name itself.
   */
  private async account(actor: Actor, name: string, allowOwn: boolean): Promise<AccountRecord> {
    if (name.length > 400 || /[\u0000-\u001f\u007f]/.test(name)) throw new ServiceError(UNKNOWN_ACCOUNT);
    let domain: string;
    try {
      domain = this.deps.accounts.parseAddress(name, actor.account.domain).domain;
    } catch {
      throw new ServiceError(UNKNOWN_ACCOUNT);
    }
    const target = await this.deps.accounts.find(name, actor.account.domain, { aliases: false });
    if (target && allowOwn && target.id === actor.account.id) return target;
    if (!this.mayAdministerDomain(actor, target?.domain ?? domain)) throw new ServiceError(ACCESS_DENIED);
    if (!target) throw new ServiceError(UNKNOWN_ACCOUNT);
    // A domain administrator must not become a server administrator of its domain by taking
    // over (password, settings, delete and create again) an account named in cli.administrators.
    if (!actor.serverAdmin && this.isServerAdministrator(target)) throw new ServiceError(ACCESS_DENIED);
    return target;
  }

  // -------------------------------------------------------------------------------------------
  // The commands

  private table(): Record<string, { rights: Rights; run: Handler }> {
    const { accounts, mail } = this.deps;
    return {
      NOOP: {
        rights: 'own',
        run: async (_actor, args) => {
          args.end();
          return undefined;
        },
      },

      // --- Server ---
      MAINDOMAINNAME: {
        rights: 'domain',
        run: async (actor, args) => {
          args.end();
          if (!actor.serverAdmin && actor.account.name !== 'postmaster') throw new ServiceError(ACCESS_DENIED);
          return this.deps.mainDomain;
        },
      },
      GETCURRENTTIME: {
        rights: 'own',
        run: async (_actor, args) => {
          args.end();
          return new CliDate(new Date());
        },
      },
      GETSYSTEMINFO: {
        rights: 'server',
        run: async (_actor, args) => {
          const what = args.string('the name of the information');
          args.end();
          const info = this.systemInfo();
          const key = Object.keys(info).find((k) => k.toLowerCase() === what.toLowerCase());
          if (key === undefined) throw new ServiceError(`unknown system information ${JSON.stringify(what.slice(0, 60))} (known: ${Object.keys(info).join(', ')})`);
          return info[key];
        },
      },
      GETSERVERINFO: {
        rights: 'server',
        run: async (_actor, args) => {
          args.end();
          return this.systemInfo();
        },
      },

      // --- Domains ---
      LISTDOMAINS: {
        rights: 'server',
        run: async (_actor, args) => {
          args.end();
          return (await accounts.listDomains()).map((d) => d.name);
        },
      },
      CREATEDOMAIN: {
        rights: 'server',
        run: async (_actor, args) => {
          const name = args.string('a domain name');
          const changes = args.more() ? parseSettingAssignments(assignments(args.dictionary('the domain settings'), args.command), 'domain') : undefined;
          args.end();
          const created = await accounts.createDomain(name);
          if (changes) await accounts.updateDomainSettings(created.name, changes.settings, changes.accountDefaults);
          return undefined;
        },
      },
      DELETEDOMAIN: {
        rights: 'server',
        run: async (actor, args) => {
          const name = args.string('a domain name');
          const force = args.keyword('FORCE');
          args.end();
          const domain = await this.domain(actor, name);
          if (domain.name === actor.account.domain && !force) throw new ServiceError('a domain cannot be deleted by one of its own accounts without FORCE');
          await accounts.removeDomain(domain.name, { force });
          return undefined;
        },
      },
      GETDOMAINSETTINGS: {
        rights: 'domain',
        run: async (actor, args) => {
          const domain = await this.domain(actor, args.optionalString('a domain name') ?? actor.account.domain);
          args.end();
          return domain.settings;
        },
      },
      UPDATEDOMAINSETTINGS: {
        rights: 'server',
        run: async (actor, args) => {
          const name = args.string('a domain name');
          const changes = parseSettingAssignments(assignments(args.dictionary('the new settings'), args.command), 'domain');
          args.end();
          const domain = await this.domain(actor, name);
          await accounts.updateDomainSettings(domain.name, changes.settings, changes.accountDefaults);
          return undefined;
        },
      },
      GETACCOUNTDEFAULTS: {
        rights: 'domain',
        run: async (actor, args) => {
          const domain = await this.domain(actor, args.optionalString('a domain name') ?? actor.account.domain);
          args.end();
          return settingsDictionary(domain.settings[ACCOUNT_DEFAULTS_KEY]);
        },
      },
      UPDATEACCOUNTDEFAULTS: {
        rights: 'server',
        run: async (actor, args) => {
          const name = args.string('a domain name');
          const changes = parseSettingAssignments(assignments(args.dictionary('the new settings'), args.command), 'domain');
          args.end();
          const own = Object.keys(changes.settings);
          if (own.length > 0) throw new ServiceError(`${own.join(', ')}: not an account setting (change it with UPDATEDOMAINSETTINGS)`);
          const domain = await this.domain(actor, name);
          await accounts.updateDomainSettings(domain.name, {}, changes.accountDefaults);
          return undefined;
        },
      },
      GETACCOUNTDEFAULTPREFS: {
        rights: 'domain',
        run: async (actor, args) => {
          const domain = await this.domain(actor, args.optionalString('a domain name') ?? actor.account.domain);
          args.end();
          return settingsDictionary(domain.settings[ACCOUNT_DEFAULT_PREFS_KEY]);
        },
      },
      UPDATEACCOUNTDEFAULTPREFS: {
        rights: 'domain',
        run: async (actor, args) => {
          const name = args.string('a domain name');
          const changes = prefsChanges(args.dictionary('the new preferences'));
          args.end();
          const domain = await this.domain(actor, name);
          await accounts.updateDomainDefaultPrefs(domain.name, changes);
          return undefined;
        },
      },

      // --- Accounts ---
      LISTACCOUNTS: {
        rights: 'domain',
        run: async (actor, args) => {
          const domain = await this.domain(actor, args.optionalString('a domain name') ?? actor.account.domain);
          args.end();
          const list: { [name: string]: CliValue } = {};
          for (const a of await accounts.list(domain.name)) list[a.name] = 'macnt';
          return list;
        },
      },
      CREATEACCOUNT: {
        rights: 'domain',
        run: async (actor, args) => {
          const name = args.string('an account name');
          const settings = args.peek() !== undefined && typeof args.peek() === 'object' ? { ...args.dictionary('the account settings') } : {};
          const type = args.optionalString('an account type');
          if (type !== undefined && !ACCOUNT_TYPES.has(type.toUpperCase())) throw new ServiceError(`${SYNTAX_ERROR}: CREATEACCOUNT: unknown account type ${type.slice(0, 40)}`);
          args.end();
          const passwordKey = Object.keys(settings).find((k) => k.toLowerCase() === 'password');
          const password = passwordKey === undefined ? undefined : settings[passwordKey];
          if (passwordKey !== undefined) delete settings[passwordKey];
          if (typeof password !== 'string' || password === '') throw new ServiceError('CREATEACCOUNT: the Password setting is required (a string)');
          // Everything is checked before anything is made.
          const changes: SettingChanges | undefined = Object.keys(settings).length > 0 ? parseSettingAssignments(assignments(settings, args.command), 'account') : undefined;
          const { domain } = accounts.parseAddress(name, actor.account.domain);
          await this.domain(actor, domain);
          const address = name.includes('@') ? name : `${name}@${domain}`;
          if (!actor.serverAdmin && this.isAdministratorAddress(address)) throw new ServiceError(ACCESS_DENIED);
          let created: AccountRecord;
          try {
            created = await accounts.create({ address, password });
          } catch (err) {
            if (err instanceof UnknownDomainError) throw new ServiceError(`${UNKNOWN_DOMAIN} ${err.domain}`);
            throw err;
          }
          if (changes) await accounts.changeAccount(created, changes);
          return undefined;
        },
      },
      DELETEACCOUNT: {
        rights: 'domain',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), false);
          args.end();
          if (target.id === actor.account.id) throw new ServiceError('an account cannot delete itself');
          await accounts.remove(target);
          return undefined;
        },
      },
      RENAMEACCOUNT: {
        rights: 'domain',
        run: async (actor, args) => {
          await this.account(actor, args.string('an account name'), false);
          args.expect('INTO');
          args.string('the new account name');
          args.end();
          throw new ServiceError('RENAMEACCOUNT is not supported by this server: accounts keep their names (create a new account and set aliases instead)');
        },
      },
      GETACCOUNTSETTINGS: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          args.end();
          return this.ownSettings(target);
        },
      },
      GETACCOUNTEFFECTIVESETTINGS: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          args.end();
          const current = (await accounts.getById(target.id)) ?? target;
          return { ...(await accounts.effectiveSettings(target)), ...this.fields(current) };
        },
      },
      UPDATEACCOUNTSETTINGS: {
        rights: 'domain',
        run: async (actor, args) => {
          const name = args.string('an account name');
          const changes = parseSettingAssignments(assignments(args.dictionary('the new settings'), args.command), 'account');
          args.end();
          const target = await this.account(actor, name, false);
          await accounts.changeAccount(target, changes);
          return undefined;
        },
      },
      SETACCOUNTPASSWORD: {
        rights: 'domain',
        run: async (actor, args) => {
          const name = args.string('an account name');
          args.expect('PASSWORD');
          const password = args.string('the new password');
          args.end();
          await accounts.setPassword(await this.account(actor, name, false), password);
          return undefined;
        },
      },
      GETACCOUNTALIASES: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          args.end();
          return accounts.aliases(target);
        },
      },
      SETACCOUNTALIASES: {
        rights: 'domain',
        run: async (actor, args) => {
          const name = args.string('an account name');
          const aliases = args.strings('the aliases');
          args.end();
          await accounts.setAliases(await this.account(actor, name, false), aliases);
          return undefined;
        },
      },
      GETACCOUNTINFO: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          let keys: string[] | undefined;
          let single: string | undefined;
          if (args.keyword('KEY')) single = args.string('a key name');
          else if (args.more()) keys = args.strings('the key names');
          args.end();
          const info = await this.info(target);
          const find = (key: string): string | undefined => Object.keys(info).find((k) => k.toLowerCase() === key.toLowerCase());
          if (single !== undefined) {
            const key = find(single);
            return key === undefined ? undefined : info[key];
          }
          if (keys === undefined) return info;
          const picked: { [key: string]: CliValue } = {};
          for (const wanted of keys) {
            const key = find(wanted);
            if (key !== undefined) picked[key] = info[key]!;
          }
          return picked;
        },
      },
      GETACCOUNTPREFS: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          args.end();
          return accounts.customPrefs(target);
        },
      },
      GETACCOUNTEFFECTIVEPREFS: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          args.end();
          return accounts.effectivePrefs(target);
        },
      },
      UPDATEACCOUNTPREFS: {
        rights: 'domain',
        run: async (actor, args) => {
          const name = args.string('an account name');
          const changes = prefsChanges(args.dictionary('the new preferences'));
          args.end();
          await accounts.updatePrefs(await this.account(actor, name, false), changes);
          return undefined;
        },
      },

      // --- Rules ---
      GETACCOUNTMAILRULES: {
        rights: 'own',
        run: async (actor, args) => this.rulesOf(actor, args, 'mailIn'),
      },
      GETACCOUNTSIGNALRULES: {
        rights: 'own',
        run: async (actor, args) => this.rulesOf(actor, args, 'signalIn'),
      },

      // --- Balances ---
      BALANCE: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          const request = args.dictionary('the billing request {op=...;}');
          args.end();
          return this.balance(actor, target, request);
        },
      },

      // --- Mailboxes ---
      LISTMAILBOXES: {
        rights: 'own',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), true);
          const filter = args.keyword('FILTER') ? args.string('the filter') : '*';
          args.end();
          const list: { [name: string]: CliValue } = {};
          for (const box of await mail.list(target, filter)) {
            if (box.pureFolder) {
              list[box.name] = {};
              continue;
            }
            const s = box.stats;
            list[box.name] = {
              Messages: new CliNumber(s?.messages ?? 0),
              Unseen: new CliNumber(s?.unseen ?? 0),
              Size: new CliNumber(s?.size ?? 0),
              ...(box.record?.mailboxClass ? { Class: box.record.mailboxClass } : {}),
            };
          }
          return list;
        },
      },
      CREATEMAILBOX: {
        rights: 'domain',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), false);
          const name = args.string('a mailbox name');
          const mailboxClass = args.keyword('CLASS') ? args.string('the mailbox class') : '';
          args.end();
          await mail.create(target, name, mailboxClass);
          return undefined;
        },
      },
      DELETEMAILBOX: {
        rights: 'domain',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), false);
          const name = args.string('a mailbox name');
          args.end();
          // `name/*` removes the mailbox and its submailboxes, as CommuniGate's CLI does.
          const children = name.endsWith('/*');
          await mail.remove(target, children ? name.slice(0, -2) : name, children);
          return undefined;
        },
      },
      RENAMEMAILBOX: {
        rights: 'domain',
        run: async (actor, args) => {
          const target = await this.account(actor, args.string('an account name'), false);
          const from = args.string('a mailbox name');
          args.expect('INTO');
          const to = args.string('the new mailbox name');
          args.end();
          const children = from.endsWith('/*') && to.endsWith('/*');
          await mail.rename(target, children ? from.slice(0, -2) : from, children ? to.slice(0, -2) : to, children);
          return undefined;
        },
      },
    };
  }

  /**
   * An account's rules as CommuniGate writes them: an array of rules, each
   * (priority, name, conditions, actions[, comment]) with conditions (opCode, operator,
   * parameter) and actions (opCode, parameter); Signal Rules add their stage after the name.
   */
  private async rulesOf(actor: Actor, args: Args, type: RuleType): Promise<CliValue> {
    const target = await this.account(actor, args.string('an account name'), true);
    args.end();
    return (await this.deps.rules.list(target, type)).map((rule) => {
      const out: CliValue[] = [new CliNumber(rule.priority), rule.name];
      if (type === 'signalIn') out.push(rule.stage ?? '');
      out.push(
        rule.conditions.map((c) => [c.opCode, c.operator, c.parameter]),
        rule.actions.map((a) => [a.opCode, a.parameter]),
      );
      if (rule.comment) out.push(rule.comment);
      return out;
    });
  }

  /**
   * BALANCE account {op=...;}: the billing operations of the `balance` XIMSS operation (read,
   * readAll, list, history, credit, charge) with their parameters as strings. A server
   * administrator acts as the command line does; anyone else with the billing rules of
   * src/services/billing.ts (reading one's own, CanManageBalances for others').
   */
  private async balance(actor: Actor, target: AccountRecord, request: { [key: string]: XimssValue }): Promise<CliValue> {
    const params: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const key of Object.keys(request)) {
      const value = request[key]!;
      if (typeof value !== 'string') throw new ServiceError(`BALANCE: ${key} must be a string`);
      params[key] = value;
    }
    const { op } = params;
    const known: Record<string, readonly string[]> = {
      read: ['balance'],
      readAll: [],
      list: [],
      history: ['balance', 'limit', 'before'],
      credit: ['balance', 'amount', 'description', 'reference'],
      charge: ['balance', 'amount', 'description', 'reference'],
    };
    if (op === undefined) throw new ServiceError('BALANCE: the op element is missing');
    const allowed = Object.prototype.hasOwnProperty.call(known, op) ? known[op] : undefined;
    if (!allowed) throw new ServiceError(`BALANCE: unknown billing operation ${JSON.stringify(op.slice(0, 40))} (known: ${Object.keys(known).join(', ')})`);
    for (const key of Object.keys(params)) {
      if (key !== 'op' && !allowed.includes(key)) throw new ServiceError(`BALANCE: unknown parameter ${JSON.stringify(key.slice(0, 40))} for ${op}`);
    }
    const billing = this.deps.billing;
    const who: BillingActor = actor.serverAdmin ? 'cli' : { account: actor.account };
    switch (op) {
      case 'read': {
        const { currency, amount } = await billing.read(who, target, params.balance);
        return { balance: currency, amount: new CliNumber(amount) };
      }
      case 'readAll': {
        const all: { [key: string]: CliValue } = {};
        for (const b of await billing.balances(who, target)) all[b.currency] = new CliNumber(b.amount);
        return all;
      }
      case 'list':
        return { balance: (await billing.balances(who, target)).map((b) => b.currency) };
      case 'history': {
        const entries = await billing.history(who, target, { currency: params.balance, limit: params.limit, before: params.before });
        return {
          records: entries.map((e) => ({
            id: new CliNumber(e.id),
            time: new CliDate(new Date(e.time)),
            balance: e.currency,
            amount: new CliNumber(e.amount),
            description: e.reason,
            actor: e.actor,
            ...(e.key !== null ? { reference: e.key } : {}),
          })),
        };
      }
      default: {
        if (params.amount === undefined) throw new ServiceError('BALANCE: the amount parameter is missing');
        const post = { currency: params.balance, amount: params.amount, reason: params.description, key: params.reference };
        const result = op === 'credit' ? await billing.credit(who, target, post) : await billing.charge(who, target, post);
        return { balance: result.entry.currency, amount: new CliNumber(result.balance), id: new CliNumber(result.entry.id), repeated: result.repeated ? 'yes' : 'no' };
      }
    }
  }

  private systemInfo(): { [key: string]: CliValue } {
    return {
      serverVersion: this.deps.serverVersion,
      serverSoftware: `ximssd ${this.deps.serverVersion}`,
      serverOS: process.platform,
      mainDomainName: this.deps.mainDomain,
      currentTime: new CliDate(new Date()),
    };
  }

  /** The account's own fields that are settings (RealName, RecoveryEmail). */
  private fields(account: AccountRecord): Settings {
    return {
      ...(account.realName ? { RealName: account.realName } : {}),
      ...(account.recoveryEmail ? { RecoveryEmail: account.recoveryEmail } : {}),
    };
  }

  /** The account's explicit settings, as stored now. */
  private async ownSettings(account: AccountRecord): Promise<Settings> {
    const current = (await this.deps.accounts.getById(account.id)) ?? account;
    return { ...current.settings, ...this.fields(current) };
  }

  private async info(account: AccountRecord): Promise<{ [key: string]: CliValue }> {
    const current = (await this.deps.accounts.getById(account.id)) ?? account;
    const usage = await this.deps.mail.usage(current);
    const info: { [key: string]: CliValue } = {
      Created: new CliDate(current.created),
      StorageUsed: new CliNumber(usage.used),
    };
    if (usage.limit !== undefined) info.StorageLimit = new CliNumber(usage.limit);
    if (current.realName) info.RealName = current.realName;
    if (current.prevLogin) {
      info.LastLogin = new CliDate(current.prevLogin.time);
      info.LastAddress = current.prevLogin.address;
    }
    if (current.lastFailedLogin) info.LastFailedLogin = new CliDate(current.lastFailedLogin.time);
    info.Aliases = await this.deps.accounts.aliases(current);
    return info;
  }
}

