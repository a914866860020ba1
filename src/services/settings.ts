/**
 * The settings an administrator sets (`ximssd account set`, `ximssd domain set`): one typed
 * registry of the keys the server enforces, with their level, accepted values, default and
 * meaning. Later features add their keys here; the commands, their errors and the README
 * table follow from it.
 *
 * Levels:
 * - `account`: an account's own setting. Set on a domain, it is the default of the domain's
 *   accounts (kept in the domain's `AccountDefaults` dictionary); an account's explicit value
 *   wins over it, and it over the built-in default (AccountService.effectiveSettings).
 * - `domain`: the domain's own setting (top level of its settings).
 *
 * Most keys live in the settings dictionaries; `RealName` and `RecoveryEmail` are fields of
 * the account itself (account only, no domain default).
 */
import type { SettingsChanges } from '../store/store.js';
import { DEFAULT_ACCOUNT_SETTINGS } from './accounts.js';
import { ServiceError } from './errors.js';
import { parseMailAddress } from './mime/address.js';
import { ALLOWED_MODES } from './rules/modes.js';
import { MAX_BANNERS_CHARS, parseBanners } from './skins.js';

export type SettingLevel = 'account' | 'domain';

export interface SettingSpec {
  readonly name: string;
  readonly level: SettingLevel;
  /** Where an account's value is kept: its settings dictionary, or a field of its own. */
  readonly stored: 'settings' | 'realName' | 'recoveryEmail';
  /** The accepted values, for people (errors, help, README). */
  readonly values: string;
  /** The value without an explicit one; undefined: none. */
  readonly default: string | undefined;
  readonly description: string;
  /** The value as kept (canonical spelling); throws a message (without the key) when not accepted. */
  normalize(value: string): string;
}

class BadValue extends Error {}

const SIZE = /^(\d{1,15})\s*([KMGT]?)B?$/i;

function size(value: string): string {
  const v = value.trim();
  if (/^unlimited$/i.test(v)) return 'unlimited';
  const m = SIZE.exec(v);
  if (!m) throw new BadValue();
  return `${Number(m[1])}${m[2]!.toUpperCase()}`;
}

function yesNo(value: string): string {
  const v = value.trim().toLowerCase();
  if (/^(yes|true|1|on)$/.test(v)) return 'Yes';
  if (/^(no|false|0|off)$/.test(v)) return 'No';
  throw new BadValue();
}

function mode(value: string, aliases: Record<string, string> = {}): string {
  const v = value.trim().toLowerCase();
  const found = ALLOWED_MODES.find((m) => m.toLowerCase() === v) ?? (Object.prototype.hasOwnProperty.call(aliases, v) ? aliases[v] : undefined);
  if (!found) throw new BadValue();
  return found;
}

function count(value: string): string {
  const v = value.trim();
  if (/^unlimited$/i.test(v)) return 'unlimited';
  if (!/^\d{1,15}$/.test(v)) throw new BadValue();
  return String(Number(v));
}

/** The Domain Administrator rights the server knows (CommuniGate Pro's names); each one enforced where its data is reached. */
export const DOMAIN_ADMIN_RIGHTS: readonly string[] = ['CanAccessWebSites', 'CanManageBalances'];

function rightsList(value: string): string {
  const names = value.split(/[\s,]+/).filter((n) => n !== '');
  const known = names.map((n) => DOMAIN_ADMIN_RIGHTS.find((r) => r.toLowerCase() === n.toLowerCase()));
  if (known.some((r) => r === undefined)) throw new BadValue();
  return [...new Set(known)].join(',');
}

function text(value: string): string {
  const v = value.trim();
  // eslint-disable-next-line no-control-regex
  if (v.length > 255 || /[\u0000-\u001f\u007f]/.test(v)) throw new BadValue();
  return v;
}

function address(value: string): string {
  const parsed = parseMailAddress(value.trim());
  if (!parsed || !/^[^\s@<>]+@[^\s@<>]+$/.test(parsed.address)) throw new BadValue();
  return parsed.address;
}

function banners(value: string): string {
  const parsed = parseBanners(value.trim());
  if (!parsed) throw new BadValue();
  return JSON.stringify(Object.fromEntries(parsed));
}

const MODES = ALLOWED_MODES.join(', ');
const defaultOf = (name: string): string | undefined => {
  const value = DEFAULT_ACCOUNT_SETTINGS[name];
  return typeof value === 'string' ? value : undefined;
};

/** Every setting the commands set, in the order `show` lists them. */
export const SETTINGS: readonly SettingSpec[] = [
  {
    name: 'RealName',
    level: 'account',
    stored: 'realName',
    values: 'any text (up to 255 characters)',
    default: undefined,
    description: "the account's real name (shown to its users, used in the From of mail it sends)",
    normalize: text,
  },
  {
    name: 'RecoveryEmail',
    level: 'account',
    stored: 'recoveryEmail',
    values: 'an E-mail address',
    default: undefined,
    description: 'where password recovery sends its reset link (none: recovery is not possible)',
    normalize: address,
  },
  {
    name: 'MaxAccountSize',
    level: 'account',
    stored: 'settings',
    values: 'a size in bytes, or with a K, M, G or T suffix (100M, 2G), or unlimited',
    default: defaultOf('MaxAccountSize'),
    description: 'storage limit of the mailboxes; mail beyond it is refused (SMTP 452 4.2.2) or deferred',
    normalize: size,
  },
  {
    name: 'MaxWebSize',
    level: 'account',
    stored: 'settings',
    values: 'a size in bytes, or with a K, M, G or T suffix, or unlimited',
    default: defaultOf('MaxWebSize'),
    description: 'storage limit of the File Storage (XIMSS file operations, WebDAV); writes beyond it are refused',
    normalize: size,
  },
  {
    name: 'MaxWebFiles',
    level: 'account',
    stored: 'settings',
    values: 'a number of files, or unlimited',
    default: defaultOf('MaxWebFiles'),
    description: 'how many files the File Storage may hold',
    normalize: count,
  },
  {
    name: 'DomainAdminRights',
    level: 'account',
    stored: 'settings',
    values: `a comma-separated list of ${DOMAIN_ADMIN_RIGHTS.join(', ')} (empty: none)`,
    default: '',
    description: "Domain Administrator rights over the other accounts of the account's domain (CanAccessWebSites: their File Storage; CanManageBalances: their balances)",
    normalize: rightsList,
  },
  {
    name: 'RulesAllowed',
    level: 'account',
    stored: 'settings',
    values: MODES,
    default: defaultOf('RulesAllowed'),
    description: 'which Mail Rules the account may write (None < Filter Only < No Redirect < Any)',
    normalize: (v) => mode(v),
  },
  {
    name: 'SignalRulesAllowed',
    level: 'account',
    stored: 'settings',
    values: `${MODES} (No is None)`,
    default: defaultOf('SignalRulesAllowed'),
    description: 'which Signal Rules the account may write',
    normalize: (v) => mode(v, { no: 'None' }),
  },
  {
    name: 'PWDAllowed',
    level: 'account',
    stored: 'settings',
    values: 'Yes, No',
    default: defaultOf('PWDAllowed'),
    description: 'whether the account may change its own password',
    normalize: yesNo,
  },
  {
    name: 'RPOPAllowed',
    level: 'account',
    stored: 'settings',
    values: 'Yes, No',
    default: defaultOf('RPOPAllowed'),
    description: 'whether the account may keep remote POP and IMAP accounts that the server polls (XIMSS rpopUpdate, rimapUpdate)',
    normalize: yesNo,
  },
  {
    name: 'RSIPAllowed',
    level: 'account',
    stored: 'settings',
    values: 'Yes, No',
    default: defaultOf('RSIPAllowed'),
    description: 'whether the account may have the server register it with other SIP servers (XIMSS rsipUpdate); No stops its registrations',
    normalize: yesNo,
  },
  {
    name: 'RayoAllowed',
    level: 'account',
    stored: 'settings',
    values: 'Yes, No',
    default: defaultOf('RayoAllowed'),
    description: "whether the account's XMPP clients may control calls with Rayo (XEP-0327): be offered its calls, dial, answer",
    normalize: yesNo,
  },
  {
    name: 'SignupAllowed',
    level: 'domain',
    stored: 'settings',
    values: 'Yes, No',
    default: 'No',
    description: 'whether users may create accounts in the domain themselves (XIMSS signup)',
    normalize: yesNo,
  },
  {
    name: 'Banners',
    level: 'domain',
    stored: 'settings',
    values: `a JSON object from banner type to its text (or to arrays and objects of texts), at most ${MAX_BANNERS_CHARS} characters`,
    default: undefined,
    description: 'what XIMSS bannerRead answers for each banner type in the domain (a type not named: no banner)',
    normalize: banners,
  },
];

/** The registered setting named so (case-insensitively). */
export function findSetting(name: string): SettingSpec | undefined {
  const n = name.toLowerCase();
  return SETTINGS.find((s) => s.name.toLowerCase() === n);
}

/** The keys `account set` takes (the account level) or `domain set` takes (both levels but the account's own fields). */
export function settableOn(target: 'account' | 'domain'): SettingSpec[] {
  return SETTINGS.filter((s) => (target === 'account' ? s.level === 'account' : s.stored === 'settings'));
}

/** What `Key=Value ...` asks for, validated as a whole before anything changes. */
export interface SettingChanges {
  /** Keys as registered, in the order given (for the log: names only, never values). */
  keys: string[];
  /** Changes to the account's settings, or to the domain's own. */
  settings: SettingsChanges;
  /** Domain only: changes to its accounts' defaults (AccountDefaults). */
  accountDefaults: SettingsChanges;
  /** Account only: the real name (null removes it). */
  realName?: string | null;
  /** Account only: the recovery address (null removes it). */
  recoveryEmail?: string | null;
}

/**
 * Parses `Key=Value` arguments for an account or a domain. `Key=` and `Key=default` remove
 * the explicit value. Refuses (ServiceError naming the key and the accepted values) an
 * unknown key, a key of another level, a bad value, a key given twice, or nothing at all.
 */
export function parseSettingAssignments(args: readonly string[], target: 'account' | 'domain'): SettingChanges {
  const allowed = settableOn(target);
  const names = allowed.map((s) => s.name).join(', ');
  if (args.length === 0) throw new ServiceError(`nothing to set: give Key=Value (${target} settings: ${names})`);
  const changes: SettingChanges = { keys: [], settings: {}, accountDefaults: {} };
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new ServiceError(`expected Key=Value, not "${arg}" (${target} settings: ${names})`);
    const key = arg.slice(0, eq).trim();
    const raw = arg.slice(eq + 1);
    const spec = findSetting(key);
    if (!spec) throw new ServiceError(`unknown setting ${key} (${target} settings: ${names})`);
    if (!allowed.includes(spec)) {
      throw new ServiceError(`${spec.name} is ${spec.level === 'domain' ? 'a domain' : "an account's own"} setting, not settable on ${target === 'account' ? 'an account' : 'a domain'} (${target} settings: ${names})`);
    }
    if (changes.keys.includes(spec.name)) throw new ServiceError(`${spec.name} is given twice`);
    let value: string | null;
    if (raw.trim() === '' || raw.trim().toLowerCase() === 'default') value = null;
    else {
      try {
        value = spec.normalize(raw);
      } catch (err) {
        if (!(err instanceof BadValue)) throw err;
        throw new ServiceError(`bad value for ${spec.name}: "${raw}" (accepted: ${spec.values}; or default, to remove the explicit value)`);
      }
    }
    changes.keys.push(spec.name);
    if (spec.stored === 'realName') changes.realName = value;
    else if (spec.stored === 'recoveryEmail') changes.recoveryEmail = value;
    else if (target === 'domain' && spec.level === 'account') changes.accountDefaults[spec.name] = value;
    else changes.settings[spec.name] = value;
  }
  return changes;
}
