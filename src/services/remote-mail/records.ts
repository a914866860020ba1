/**
 * The RPOP and RIMAP record dictionaries of XIMSS (rpopUpdate, rimapUpdate, and their lists),
 * as this server reads and writes them. Keys (case as CommuniGate spells them; other keys are
 * ignored):
 *
 * - `domain`   the remote server's host name or address, optionally `host:port` ([v6]:port)
 * - `port`     the port (default: 110 / 995 for POP, 143 / 993 for IMAP, by `TLS`)
 * - `TLS`      `NO` (plain), `STARTTLS` (STLS for POP), `YES` (TLS from the first byte); default NO
 * - `authName` the user name on the remote server
 * - `password` the password (never listed back; an update without it keeps the stored one
 *              when the server and user stay the same)
 * - `mailbox`  the local mailbox messages go to (default INBOX)
 * - `leave`    `YES` keeps fetched messages on the remote server, `NO` deletes them (default YES)
 * - `period`   the polling interval: seconds, or a number with s, m, h or d (default from the
 *              configuration; bounded by remoteMail.minIntervalSeconds and maxIntervalSeconds)
 */
import { isIP } from 'node:net';
import { ServiceError } from '../errors.js';
import { normalizeMailboxName } from '../mail/names.js';
import type { RemoteMailKind, RemoteMailRecord, RemoteMailTls } from '../../store/remote-mail.js';

/** What a record dictionary says, checked, before the password is sealed. */
export interface RecordInput {
  host: string;
  port: number;
  tls: RemoteMailTls;
  user: string;
  /** undefined: keep the stored one. */
  password: string | undefined;
  mailbox: string;
  leave: boolean;
  interval: number;
}

export interface IntervalBounds {
  minIntervalSeconds: number;
  maxIntervalSeconds: number;
  defaultIntervalSeconds: number;
}

export const MAX_RECORD_NAME = 64;
const MAX_USER = 256;
const MAX_PASSWORD = 256;
const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)*\.?$/i;

export function defaultPort(kind: RemoteMailKind, tls: RemoteMailTls): number {
  if (kind === 'pop') return tls === 'tls' ? 995 : 110;
  return tls === 'tls' ? 993 : 143;
}

/** Checks a record name (the `name` attribute). */
export function checkRecordName(name: string | undefined, element: string): string {
  if (name === undefined || name === '') throw new ServiceError(`the ${element} element has no name attribute`);
  if (name.length > MAX_RECORD_NAME) throw new ServiceError(`the record name is longer than ${MAX_RECORD_NAME} characters`);
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new ServiceError('the record name contains control characters');
  return name;
}

function yesNo(value: string, key: string): boolean {
  const v = value.trim().toUpperCase();
  if (v === 'YES' || v === 'TRUE' || v === '1') return true;
  if (v === 'NO' || v === 'FALSE' || v === '0') return false;
  throw new ServiceError(`the ${key} value must be YES or NO`);
}

/** A polling period: `600`, `10m`, `2h`, `1d`, in seconds. */
export function parsePeriod(value: string, bounds: IntervalBounds): number {
  const m = /^\s*(\d{1,9})\s*([smhd]?)\s*$/i.exec(value);
  if (!m) throw new ServiceError('the period value must be a number of seconds, or a number with s, m, h or d');
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2]!.toLowerCase() as '' | 's' | 'm' | 'h' | 'd'];
  const seconds = Number(m[1]) * unit;
  if (seconds < bounds.minIntervalSeconds || seconds > bounds.maxIntervalSeconds) {
    throw new ServiceError(`the period must be ${bounds.minIntervalSeconds} to ${bounds.maxIntervalSeconds} seconds`);
  }
  return seconds;
}

function splitHostPort(value: string): { host: string; port: string | undefined } {
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(value);
  if (bracket) return { host: bracket[1]!, port: bracket[2] };
  const colons = value.split(':').length - 1;
  if (colons === 1) {
    const [host, port] = value.split(':');
    return { host: host!, port };
  }
  return { host: value, port: undefined };
}

function checkPort(value: string): number {
  if (!/^\d{1,5}$/.test(value.trim())) throw new ServiceError('the port must be a number, 1 to 65535');
  const port = Number(value.trim());
  if (port < 1 || port > 65535) throw new ServiceError('the port must be a number, 1 to 65535');
  return port;
}

/** Reads and checks a record dictionary (string values by key). */
export function readRecord(kind: RemoteMailKind, dict: Record<string, string>, bounds: IntervalBounds): RecordInput {
  const get = (key: string): string | undefined => {
    for (const k of Object.keys(dict)) if (k.toLowerCase() === key.toLowerCase()) return dict[k];
    return undefined;
  };
  const domain = (get('domain') ?? '').trim();
  if (domain === '') throw new ServiceError('the record has no domain (the remote server)');
  const split = splitHostPort(domain);
  const host = split.host.toLowerCase();
  if (!(isIP(host) !== 0 || HOST_NAME.test(host))) throw new ServiceError('the domain value is not a host name or address');
  const tlsText = (get('TLS') ?? 'NO').trim().toUpperCase();
  let tls: RemoteMailTls;
  if (tlsText === 'NO' || tlsText === '' || tlsText === 'FALSE') tls = 'none';
  else if (tlsText === 'YES' || tlsText === 'TRUE' || tlsText === 'SSL') tls = 'tls';
  else if (tlsText === 'STARTTLS' || tlsText === 'STLS') tls = 'starttls';
  else throw new ServiceError('the TLS value must be NO, STARTTLS or YES');
  const portText = get('port') ?? split.port;
  const port = portText === undefined || portText.trim() === '' ? defaultPort(kind, tls) : checkPort(portText);
  const user = get('authName') ?? '';
  if (user === '') throw new ServiceError('the record has no authName (the remote user name)');
  if (user.length > MAX_USER) throw new ServiceError(`the authName is longer than ${MAX_USER} characters`);
  if (/[\u0000-\u001f\u007f]/.test(user)) throw new ServiceError('the authName contains control characters');
  const password = get('password');
  if (password !== undefined) {
    if (password.length > MAX_PASSWORD) throw new ServiceError(`the password is longer than ${MAX_PASSWORD} characters`);
    if (/[\u0000\r\n]/.test(password)) throw new ServiceError('the password contains a line break or NUL');
  }
  const apop = get('APOP');
  if (apop !== undefined && yesNo(apop, 'APOP')) throw new ServiceError('APOP is not supported (use TLS instead)');
  const mailboxText = get('mailbox');
  const mailbox = mailboxText === undefined || mailboxText.trim() === '' ? 'INBOX' : normalizeMailboxName(mailboxText.trim());
  if (mailbox.startsWith('~')) throw new ServiceError("the mailbox must be one of the account's own");
  const leaveText = get('leave');
  const leave = leaveText === undefined || leaveText.trim() === '' ? true : yesNo(leaveText, 'leave');
  const periodText = get('period');
  const interval = periodText === undefined || periodText.trim() === '' ? bounds.defaultIntervalSeconds : parsePeriod(periodText, bounds);
  return { host, port, tls, user, password: password === '' ? undefined : password, mailbox, leave, interval };
}

/** A stored record as the list shows it (no password). */
export function recordDictionary(record: RemoteMailRecord): Record<string, string> {
  return {
    domain: record.host,
    port: String(record.port),
    TLS: record.tls === 'tls' ? 'YES' : record.tls === 'starttls' ? 'STARTTLS' : 'NO',
    authName: record.user,
    mailbox: record.mailbox,
    leave: record.leave ? 'YES' : 'NO',
    period: String(record.interval),
  };
}
