/**
 * The accounts' remote SIP records (rsipList, rsipUpdate): what a user may set, checked here,
 * the password sealed with the server's SecretBox before it reaches the store, and the state of
 * each registration as the node that registers it recorded it. The registering itself is the
 * agent's (agent.ts), told by kick() that records changed.
 *
 * A record's settings (the keys of the RSIP record dictionary):
 *   domain    the domain of the address registered; its registrar is found by RFC 3263 (required)
 *   proxy     host[:port][;transport=udp|tcp|tls] to send the REGISTER to instead (optional)
 *   fromName  the user part of the address registered (required)
 *   authName  the Digest user name (default: fromName)
 *   password  the Digest password (kept sealed; never shown again; a record replaced without
 *             one keeps the one it had)
 *   expires   the registration interval asked for, seconds (remoteSip.minExpires..maxExpires)
 *   enabled   YES (default) or NO
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { EventBus } from '../../bus/bus.js';
import type { Config } from '../../config.js';
import { silentLogger, type Logger } from '../../log.js';
import type { RemoteSipPut, RemoteSipRecord } from '../../store/remote-sip.js';
import type { AccountRecord, Store } from '../../store/store.js';
import { settingIsYes, type AccountService } from '../accounts.js';
import { ServiceError } from '../errors.js';
import type { SecretBox } from '../secret-box.js';

/** A record as a client sees it: the settings without the password, and the state. */
export interface RemoteSipView {
  name: string;
  settings: { [key: string]: string };
  registeredUntil: number | null;
  lastAttempt: number | null;
  lastError: string | null;
}

export type RemoteSipChange = { name: string; mode: 'delete' } | { name: string; mode: 'set'; settings: { [key: string]: string } };

const KEYS = new Set(['domain', 'proxy', 'fromName', 'authName', 'password', 'expires', 'enabled']);
const MAX_NAME = 64;
const MAX_VALUE = 256;
const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*\.?$/i;
/** A SIP user part as we write it unescaped: unreserved and the user-unreserved marks of RFC 3261 25.1. */
const USER = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,128}$/;
/** The prefix of the Contact user parts the server registers. */
export const CONTACT_PREFIX = 'rsip-';

/** Why an account whose RSIPAllowed setting is not Yes has no remote SIP registrations. */
export const NOT_ALLOWED = 'remote SIP registration is not allowed for this account (RSIPAllowed)';

/** Whether the account may have remote SIP registrations: its effective RSIPAllowed setting is Yes. */
export async function rsipAllowed(accounts: AccountService, account: AccountRecord): Promise<boolean> {
  return settingIsYes((await accounts.effectiveSettings(account)).RSIPAllowed);
}

/** The context a record's password is sealed for: another account's or record's does not open. */
export function sealContext(accountId: number, name: string): string {
  return `rsip:${accountId}:${name}`;
}

function isHostPort(text: string): boolean {
  const match = /^(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/i.exec(text);
  if (!match) return false;
  const host = match[1]!.startsWith('[') ? match[1]!.slice(1, -1) : match[1]!;
  if (match[2] !== undefined && (Number(match[2]) < 1 || Number(match[2]) > 65535)) return false;
  return isIP(host) !== 0 || DOMAIN.test(host);
}

export class RemoteSipService {
  private readonly log: Logger;

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly accounts: AccountService,
    private readonly secrets: SecretBox,
    private readonly config: Config['remoteSip'],
    log: Logger = silentLogger,
  ) {
    this.log = log;
  }

  async list(account: AccountRecord): Promise<RemoteSipView[]> {
    return (await this.store.remoteSip.list(account.id)).map(view);
  }

  /** Applies rsipUpdate's changes, in order, as one update; refused unless RSIPAllowed is Yes. */
  async update(account: AccountRecord, changes: RemoteSipChange[]): Promise<void> {
    if (!(await rsipAllowed(this.accounts, account))) {
      this.log.info({ event: 'remoteSip.update_refused', accountId: account.id }, 'an rsipUpdate was refused: RSIPAllowed is not Yes');
      throw new ServiceError(NOT_ALLOWED);
    }
    if (changes.length === 0) throw new ServiceError('no rsipRecord element');
    const existing = new Map((await this.store.remoteSip.list(account.id)).map((r) => [r.name, r]));
    const puts = new Map<string, RemoteSipPut>();
    const removes = new Set<string>();
    for (const change of changes) {
      checkName(change.name);
      if (change.mode === 'delete') {
        puts.delete(change.name);
        removes.add(change.name);
        continue;
      }
      removes.delete(change.name);
      puts.set(change.name, this.settings(account, change.name, change.settings, existing.get(change.name)));
    }
    // A name both deleted and set again: the set wins (later in the request), as one replacement.
    const outcome = await this.store.remoteSip.update(account.id, { put: [...puts.values()], remove: [...removes] }, this.config.recordsPerAccount);
    if (outcome === 'limit') throw new ServiceError(`too many RSIP records (at most ${this.config.recordsPerAccount} in an account)`);
    for (const name of removes) if (existing.has(name)) this.log.info({ event: 'remoteSip.deleted', accountId: account.id, record: name }, 'a remote SIP record was deleted');
    for (const put of puts.values()) {
      this.log.info({ event: 'remoteSip.updated', accountId: account.id, record: put.name, domain: put.domain, enabled: put.enabled }, 'a remote SIP record was set');
    }
    // Whichever node registers these records looks at them again now.
    this.bus.publish('remoteSipChanged', { accountId: account.id });
  }

  /**
   * The account (`name@domain`) an INVITE to this Contact user part is for: the one whose
   * enabled record registered it; undefined for any other user part.
   */
  async contactAccount(user: string): Promise<string | undefined> {
    if (!user.startsWith(CONTACT_PREFIX) || user.length > 64) return undefined;
    const record = await this.store.remoteSip.byContact(user);
    if (record === undefined || !record.enabled) return undefined;
    const account = await this.store.accounts.getById(record.accountId);
    if (account === undefined || !(await rsipAllowed(this.accounts, account))) return undefined;
    this.log.debug({ event: 'remoteSip.incoming', accountId: account.id, record: record.name }, 'a call came through a remote SIP registration');
    return `${account.name}@${account.domain}`;
  }

  /** The stored form of a record's settings; ServiceError for anything a user got wrong. */
  private settings(account: AccountRecord, name: string, given: { [key: string]: string }, old: RemoteSipRecord | undefined): RemoteSipPut {
    for (const key of Object.keys(given)) {
      if (!KEYS.has(key)) throw new ServiceError(`RSIP record ${JSON.stringify(name)}: unknown key ${JSON.stringify(key.slice(0, 64))} (known: ${[...KEYS].join(', ')})`);
      const value = given[key]!;
      if (value.length > MAX_VALUE) throw new ServiceError(`RSIP record ${JSON.stringify(name)}: ${key} is too long (at most ${MAX_VALUE} characters)`);
      if (/[\x00-\x1f\x7f]/.test(value)) throw new ServiceError(`RSIP record ${JSON.stringify(name)}: ${key} must not hold control characters`);
    }
    const text = (key: string): string => (given[key] ?? '').trim();
    const domain = text('domain').toLowerCase();
    if (domain === '') throw new ServiceError(`RSIP record ${JSON.stringify(name)}: the domain is missing`);
    if (!isHostPort(domain)) throw new ServiceError(`RSIP record ${JSON.stringify(name)}: the domain must be a host name or address (with an optional :port)`);
    const proxy = text('proxy').toLowerCase();
    const [proxyHost = '', transport, ...more] = proxy.split(';');
    if (proxy !== '' && (!isHostPort(proxyHost) || more.length > 0 || (transport !== undefined && !/^transport=(udp|tcp|tls)$/.test(transport)))) {
      throw new ServiceError(`RSIP record ${JSON.stringify(name)}: the proxy must be host[:port][;transport=udp|tcp|tls]`);
    }
    const user = text('fromName');
    if (user === '') throw new ServiceError(`RSIP record ${JSON.stringify(name)}: fromName (the user name to register) is missing`);
    if (!USER.test(user)) throw new ServiceError(`RSIP record ${JSON.stringify(name)}: fromName must be a SIP user name (letters, digits and - _ . ! ~ * ' ( ) & = + $ , ; ? /)`);
    const authName = text('authName');
    const expiresText = text('expires');
    let expires = this.config.defaultExpires;
    if (expiresText !== '') {
      expires = /^\d{1,9}$/.test(expiresText) ? Number(expiresText) : NaN;
      if (!(expires >= this.config.minExpires && expires <= this.config.maxExpires)) {
        throw new ServiceError(`RSIP record ${JSON.stringify(name)}: expires must be a whole number of seconds, ${this.config.minExpires} to ${this.config.maxExpires}`);
      }
    }
    const enabledText = text('enabled').toUpperCase();
    if (enabledText !== '' && enabledText !== 'YES' && enabledText !== 'NO') throw new ServiceError(`RSIP record ${JSON.stringify(name)}: enabled must be YES or NO`);
    const password =
      given.password !== undefined ? this.secrets.seal(given.password, sealContext(account.id, name)) : (old?.password ?? this.secrets.seal('', sealContext(account.id, name)));
    return {
      name,
      domain,
      proxy,
      user,
      authName,
      password,
      expires,
      enabled: enabledText !== 'NO',
      contactUser: `${CONTACT_PREFIX}${randomBytes(12).toString('hex')}`,
    };
  }
}

function checkName(name: string): void {
  if (name === '') throw new ServiceError('the name attribute of an rsipRecord is missing');
  if (name.length > MAX_NAME) throw new ServiceError(`an RSIP record name is too long (at most ${MAX_NAME} characters)`);
  if (/[\x00-\x1f\x7f]/.test(name)) throw new ServiceError('an RSIP record name must not hold control characters');
}

function view(r: RemoteSipRecord): RemoteSipView {
  const settings: { [key: string]: string } = { domain: r.domain };
  if (r.proxy !== '') settings.proxy = r.proxy;
  settings.fromName = r.user;
  if (r.authName !== '') settings.authName = r.authName;
  settings.expires = String(r.expires);
  settings.enabled = r.enabled ? 'YES' : 'NO';
  return { name: r.name, settings, registeredUntil: r.registeredUntil, lastAttempt: r.lastAttempt, lastError: r.lastError };
}
