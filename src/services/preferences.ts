/**
 * Account Preferences (spec section "Preferences"): three layers — the server's defaults
 * below, the domain's defaults for its accounts (`AccountDefaultPrefs` in the domain
 * settings), the account's custom values — read merged as the effective preferences.
 *
 * The preferences the server itself reads (TimeZone, DeleteMode, the mailbox names, the
 * sender address) are checked when they are stored; any other name a client keeps for its
 * own use is stored as given (a string, an array or a dictionary), within the limits below.
 */
import { ServiceError } from './errors.js';
import { parseMailAddress } from './mime/address.js';
import type { Settings } from '../store/store.js';
import { isAcceptedTimeZone } from './time-zones.js';

export const DEFAULT_PREFS: Readonly<Settings> = {
  TimeZone: 'HostOS',
  Language: 'English',
  DeleteMode: 'Move To Trash',
  TrashBox: 'Trash',
  SentBox: 'Sent',
  DraftsBox: 'Drafts',
  CalendarBox: 'Calendar',
  TasksBox: 'Tasks',
  ContactsBox: 'Contacts',
  Charset: 'utf-8',
  // Calendar: working time (free/busy shows the rest as unavailable once WorkDays is set), the
  // alarm clients give new events, whether replies to the user's meetings update them on arrival.
  WorkDays: '',
  WorkDayStart: '09:00',
  WorkDayEnd: '17:00',
  DefaultAlarm: '',
  ApplyCalendarReplies: 'no',
};

/** The values DeleteMode takes: mark as Deleted, move to the TrashBox, or remove at once. */
export const DELETE_MODES = ['Mark', 'Move To Trash', 'Immediately'] as const;

/** Limits of what one account keeps: names, and the bytes of all custom values together (JSON). */
export const PREFS_LIMITS = { names: 500, nameChars: 128, bytes: 256 * 1024 };

type Check = (value: string) => string | undefined;

const text =
  (max: number): Check =>
  (value) =>
    value.length > max ? `must be at most ${max} characters` : /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(value) ? 'must not contain control characters' : undefined;

const mailboxName: Check = (value) => (value.trim() === '' ? 'must name a mailbox' : text(255)(value));

/** An address (`Real Name <user@domain>` or `user@domain`), or empty. */
const address: Check = (value) => (value.trim() === '' || parseMailAddress(value) ? undefined : 'must be an E-mail address (Real Name <user@domain>)');

/** The preferences whose values the server reads, and what they must be (strings). */
const CHECKS: Readonly<Record<string, Check>> = {
  TimeZone: (value) => (isAcceptedTimeZone(value) ? undefined : 'must be HostOS or a time zone name such as Europe/Berlin or NorthAmerica/Pacific (see listKnownValues)'),
  DeleteMode: (value) => ((DELETE_MODES as readonly string[]).includes(value) ? undefined : `must be one of ${DELETE_MODES.join(', ')}`),
  Language: (value) => (/^[A-Za-z][A-Za-z -]{0,63}$/.test(value) ? undefined : 'must be a language name such as English'),
  TrashBox: mailboxName,
  SentBox: mailboxName,
  DraftsBox: mailboxName,
  CalendarBox: mailboxName,
  TasksBox: mailboxName,
  ContactsBox: mailboxName,
  WorkDays: (value) => (/^$|^(MO|TU|WE|TH|FR|SA|SU)(,(MO|TU|WE|TH|FR|SA|SU))*$/.test(value) ? undefined : 'must be a list of days such as MO,TU,WE,TH,FR (or empty)'),
  WorkDayStart: (value) => (/^([01]\d|2[0-3]):[0-5]\d$/.test(value) ? undefined : 'must be a time of day such as 09:00'),
  WorkDayEnd: (value) => (/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/.test(value) ? undefined : 'must be a time of day such as 17:00'),
  DefaultAlarm: (value) => (/^$|^[+-]?P(\d+W|(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?)$/.test(value) && value !== 'P' && !/T$/.test(value) ? undefined : 'must be an iCalendar duration such as -PT15M (or empty)'),
  ApplyCalendarReplies: (value) => (value === 'yes' || value === 'no' ? undefined : 'must be yes or no'),
  UserFrom: address,
  ReplyTo: text(1000),
  Signature: text(64 * 1024),
  Charset: (value) => (/^[A-Za-z0-9._:-]{1,40}$/.test(value) ? undefined : 'must be a character set name such as utf-8'),
};

/** What prefsStore is asked: new values, and names whose custom value goes (the `default` value). */
export interface PrefsChanges {
  [name: string]: Settings[string] | null;
}

/**
 * Checks a prefsStore request's changes; throws a ServiceError naming the first bad one.
 * UserFromAddr (and UserFromName) compose UserFrom, as the spec says.
 */
export function checkPrefsChanges(changes: PrefsChanges): PrefsChanges {
  const result: PrefsChanges = {};
  for (const [name, value] of Object.entries(changes)) {
    if (name === 'UserFromAddr' || name === 'UserFromName') continue;
    // Own checks only: `__proto__` or `toString` are names a client may use, not checks.
    const check = Object.prototype.hasOwnProperty.call(CHECKS, name) ? CHECKS[name] : undefined;
    if (check && value !== null) {
      if (typeof value !== 'string') throw new ServiceError(`${name}: must be a string`);
      const problem = check(value);
      if (problem !== undefined) throw new ServiceError(`${name}: ${problem}`);
    }
    // Defined, not assigned: `__proto__` is a name like any other here.
    Object.defineProperty(result, name, { value, enumerable: true, writable: true, configurable: true });
  }
  if ('UserFromAddr' in changes) {
    const addr = changes.UserFromAddr;
    const realName = changes.UserFromName;
    if (addr === null || addr === '') result.UserFrom = null;
    else {
      if (typeof addr !== 'string' || !parseMailAddress(addr) || /[<>]/.test(addr)) throw new ServiceError('UserFromAddr: must be an E-mail address (user@domain)');
      if (realName !== undefined && realName !== null && typeof realName !== 'string') throw new ServiceError('UserFromName: must be a string');
      result.UserFrom = typeof realName === 'string' && realName.trim() !== '' ? `${quoteName(realName.trim())} <${addr.trim()}>` : addr.trim();
    }
  }
  return result;
}

/**
 * The custom preferences (or Public Info) after `changes`, checked against the limits before
 * they are stored: the length of each name, how many there are, their size together.
 */
export function checkPrefsSize(current: Settings, changes: PrefsChanges): void {
  for (const name of Object.keys(changes)) {
    if (name.length > PREFS_LIMITS.nameChars) throw new ServiceError(`the name ${name.slice(0, 40)}… is too long (at most ${PREFS_LIMITS.nameChars} characters)`);
  }
  const merged = new Map<string, unknown>(Object.entries(current));
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) merged.delete(name);
    else merged.set(name, value);
  }
  if (merged.size > PREFS_LIMITS.names) throw new ServiceError(`too many preferences (at most ${PREFS_LIMITS.names})`);
  const bytes = Buffer.byteLength(JSON.stringify(Object.fromEntries(merged), (_key, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v)));
  if (bytes > PREFS_LIMITS.bytes) throw new ServiceError(`the preferences are too large (at most ${PREFS_LIMITS.bytes} bytes)`);
}

/**
 * The preferences as prefs presents them: a UserFrom that parses as an address adds
 * UserFromAddr (the bare address) and, when it has one, UserFromName.
 */
export function presentPrefs(prefs: Settings): Settings {
  const from = prefs.UserFrom;
  if (typeof from !== 'string' || from.trim() === '') return prefs;
  const parsed = parseMailAddress(from);
  if (!parsed) return prefs;
  return { ...prefs, UserFromAddr: parsed.address, ...(parsed.realName ? { UserFromName: parsed.realName } : {}) };
}

function quoteName(name: string): string {
  return /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$/.test(name) ? name : `"${name.replace(/(["\\])/g, '\\$1')}"`;
}
