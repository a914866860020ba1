/**
 * The Directory (spec section "Directory": listDirectory, modifyDirectory): a directory of
 * each domain's accounts, built from what the store holds now — their names, real names
 * and Public Info — in the form CommuniGate Pro's Directory Integration gives account
 * records (the account name in `uid`, its Real Name in `cn`, custom and Public Info values
 * as attributes of their own names).
 *
 * Names (DNs): a domain's subtree is `cn=<domain>`; an account's record is
 * `uid=<name>,cn=<domain>`. `$` stands for the subtree of the current account's domain;
 * an account's record may also be named by its address (`mail=user@domain,$`, as the spec's
 * example does).
 *
 * Nothing is cached: every request reads the domain's accounts from the store, so that every
 * node of a cluster answers with what was committed last (a per-process copy would need
 * invalidation by accountChanged/prefsChanged events and a full re-read on `resync`, for a
 * saving that matters only in very large domains; the limits below bound the work instead).
 */
import { silentLogger, type Logger } from '../log.js';
import type { AccountRecord, Settings, Store } from '../store/store.js';
import type { XimssValue } from '../xml/objects.js';
import { fullName, type AccountService } from './accounts.js';
import type { AccountRightsService } from './account-rights.js';
import { matchFilter, parseFilter, type DirectoryFilter, type RecordValues } from './directory-filter.js';
import { ServiceError } from './errors.js';
import type { PrefsChanges } from './preferences.js';

export type { DirectoryFilter } from './directory-filter.js';

/** Records one listDirectory returns at most (a larger `limit` is lowered to it). */
export const MAX_DIRECTORY_RESULTS = 1000;
const MAX_DN_LENGTH = 1024;
const MAX_FIELDS = 64;
const MAX_SORT_FIELDS = 8;

/** Attributes the server derives from the account itself; modifyDirectory cannot set them to something else. */
const DERIVED = new Set(['uid', 'cn', 'mail', 'objectclass']);
const ACCOUNT_OBJECT_CLASSES = ['top', 'person', 'organizationalPerson', 'inetOrgPerson'];
const DOMAIN_OBJECT_CLASSES = ['top', 'domain'];
const ATTRIBUTE_NAME = /^[A-Za-z][A-Za-z0-9-]{0,127}$/;

export type DirectoryScope = 'base' | 'one' | 'sub';

export interface DirectoryQuery {
  baseDN: string;
  filter?: string;
  scope?: string;
  /** Attribute names wanted (none: every non-service attribute). */
  fields?: readonly string[];
  limit?: number;
  /** Paging: '' for the first page, then what the last record of the previous page carried. */
  cookie?: string;
  /** Comma-separated attribute names; the last one weighs most (as the spec says). */
  sortField?: string;
  sortOrder?: string;
}

export interface DirectoryRecord {
  dn: string;
  attrs: { [name: string]: XimssValue };
}

export interface DirectoryPage {
  records: DirectoryRecord[];
  /** Set when the query asked for paging and more records follow: the cookie of the next page. */
  cookie?: string;
}

/** A parsed DN: RDNs left (most specific) to right, names lower-cased. */
interface Rdn {
  attr: string;
  value: string;
}

/** Where a DN points in the directory of accounts. */
type Node = { kind: 'domain'; domain: string } | { kind: 'account'; domain: string; account: AccountRecord };

function badDn(dn: string): ServiceError {
  return new ServiceError(`invalid DN: ${JSON.stringify(dn.length > 100 ? dn.slice(0, 100) + '...' : dn)}`);
}

/** Splits a DN (RFC 4514: `,` separated `attr=value`, `\` escapes) into RDNs. */
function parseDn(dn: string): Rdn[] {
  if (dn.length > MAX_DN_LENGTH || /[\u0000-\u001f\u007f]/.test(dn)) throw badDn(dn);
  const rdns: Rdn[] = [];
  let current = '';
  const flush = (): void => {
    const eq = current.indexOf('=');
    if (eq <= 0) throw badDn(dn);
    const attr = current.slice(0, eq).trim().toLowerCase();
    const value = current.slice(eq + 1).trim();
    if (!ATTRIBUTE_NAME.test(attr) || value === '') throw badDn(dn);
    rdns.push({ attr, value });
    current = '';
  };
  for (let i = 0; i < dn.length; i++) {
    const c = dn[i]!;
    if (c === '\\' && i + 1 < dn.length) {
      const hex = dn.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        current += String.fromCharCode(parseInt(hex, 16));
        i += 2;
      } else {
        current += dn[++i];
      }
    } else if (c === ',') {
      flush();
    } else {
      current += c;
    }
  }
  if (current.trim() !== '' || rdns.length > 0) flush();
  return rdns;
}

/** A value as it may stand in a DN (RFC 4514 escapes). */
function dnValue(value: string): string {
  return value.replace(/[,+"\\<>;=]/g, (c) => `\\${c}`).replace(/^[ #]|[ ]$/g, (c) => `\\${c}`);
}

function domainDn(domain: string): string {
  return `cn=${dnValue(domain)}`;
}

function accountDn(account: AccountRecord): string {
  return `uid=${dnValue(account.name)},${domainDn(account.domain)}`;
}

/** The record's values as strings, by lower-cased attribute name (for filters and sorting). */
function recordValues(attrs: { [name: string]: XimssValue }): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (const [name, value] of Object.entries(attrs)) {
    const strings = (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === 'string');
    if (strings.length > 0) values.set(name.toLowerCase(), strings);
  }
  return values;
}

interface Candidate {
  dn: string;
  attrs: { [name: string]: XimssValue };
  /** Including the composed `mail`, for filters and sorting. */
  values: RecordValues;
}

export class DirectoryService {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly rights: AccountRightsService,
    private readonly log: Logger = silentLogger,
  ) {}

  /** `$` replaced by the current domain's subtree (as a whole DN, or as its last RDN). */
  private expand(user: AccountRecord, dn: string): string {
    const trimmed = dn.trim();
    if (trimmed === '$') return domainDn(user.domain);
    if (trimmed.endsWith(',$')) return `${trimmed.slice(0, -2)},${domainDn(user.domain)}`;
    return trimmed;
  }

  /** What a DN names, or a ServiceError: only the subtree of the user's own domain is open. */
  private async resolve(user: AccountRecord, rawDn: string): Promise<Node> {
    const dn = this.expand(user, rawDn);
    const rdns = parseDn(dn);
    if (rdns.length === 0) throw new ServiceError('the directory root cannot be searched: use baseDN="$" (the subtree of your domain)');
    const top = rdns[rdns.length - 1]!;
    if (top.attr !== 'cn' && top.attr !== 'dc') throw new ServiceError(`no such directory subtree: ${JSON.stringify(dn.slice(0, 100))}`);
    const domain = top.value.toLowerCase();
    if (domain !== user.domain) throw new ServiceError('access denied: only the directory subtree of your own domain is open');
    if (rdns.length === 1) return { kind: 'domain', domain };
    if (rdns.length > 2) throw new ServiceError(`no such directory record: ${JSON.stringify(dn.slice(0, 100))}`);
    const rdn = rdns[0]!;
    let account: AccountRecord | undefined;
    if (rdn.attr === 'uid') account = await this.accounts.find(rdn.value, domain, { aliases: false });
    else if (rdn.attr === 'mail') {
      const found = await this.accounts.find(rdn.value, domain, { aliases: false });
      account = found && `${found.name}@${found.domain}` === rdn.value.toLowerCase() ? found : undefined;
    } else if (rdn.attr === 'cn') {
      account = (await this.store.accounts.list(domain)).find((a) => a.realName !== null && a.realName.toLowerCase() === rdn.value.toLowerCase());
    }
    if (!account || account.domain !== domain) throw new ServiceError(`no such directory record: ${JSON.stringify(dn.slice(0, 100))}`);
    return { kind: 'account', domain, account };
  }

  private accountCandidate(account: AccountRecord, wantMail: boolean): Candidate {
    const attrs: { [name: string]: XimssValue } = Object.create(null) as { [name: string]: XimssValue };
    const put = (name: string, value: XimssValue): void => {
      Object.defineProperty(attrs, name, { value, enumerable: true, writable: true, configurable: true });
    };
    put('objectClass', ACCOUNT_OBJECT_CLASSES);
    put('uid', account.name);
    if (account.realName) put('cn', account.realName);
    for (const [name, value] of Object.entries(account.publicInfo as Settings)) {
      if (DERIVED.has(name.toLowerCase()) || !ATTRIBUTE_NAME.test(name)) continue;
      if (typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'))) put(name, value);
    }
    const mail = `${account.name}@${account.domain}`;
    const values = recordValues(attrs);
    values.set('mail', [mail]);
    // The spec: `mail` is composed when it is asked for explicitly.
    if (wantMail) put('mail', mail);
    return { dn: accountDn(account), attrs, values };
  }

  private domainCandidate(domain: string): Candidate {
    const attrs: { [name: string]: XimssValue } = { objectClass: DOMAIN_OBJECT_CLASSES, cn: domain };
    return { dn: domainDn(domain), attrs, values: recordValues(attrs) };
  }

  /** listDirectory. */
  async list(user: AccountRecord, query: DirectoryQuery): Promise<DirectoryPage> {
    const scope = (query.scope ?? 'one') as DirectoryScope;
    if (scope !== 'base' && scope !== 'one' && scope !== 'sub') throw new ServiceError(`invalid scope ${JSON.stringify(String(query.scope).slice(0, 20))} (base, one or sub)`);
    // The spec: with scope base the filter is ignored.
    const filter: DirectoryFilter | undefined = scope !== 'base' && query.filter !== undefined && query.filter.trim() !== '' ? parseFilter(query.filter) : undefined;
    const fields = query.fields ?? [];
    if (fields.length > MAX_FIELDS) throw new ServiceError(`too many field elements (at most ${MAX_FIELDS})`);
    for (const field of fields) if (!ATTRIBUTE_NAME.test(field)) throw new ServiceError(`invalid field name ${JSON.stringify(field.slice(0, 40))}`);
    const wanted = new Set(fields.map((f) => f.toLowerCase()));
    const wantMail = wanted.has('mail');
    const sortFields = (query.sortField ?? '').split(',').map((f) => f.trim()).filter((f) => f !== '');
    if (sortFields.length > MAX_SORT_FIELDS) throw new ServiceError(`too many sort fields (at most ${MAX_SORT_FIELDS})`);
    for (const field of sortFields) if (!ATTRIBUTE_NAME.test(field)) throw new ServiceError(`invalid sortField name ${JSON.stringify(field.slice(0, 40))}`);
    if (query.sortOrder !== undefined && query.sortOrder !== '' && query.sortOrder !== 'asc' && query.sortOrder !== 'desc') {
      throw new ServiceError(`invalid sortOrder ${JSON.stringify(query.sortOrder.slice(0, 20))} (desc, or none)`);
    }
    let limit = MAX_DIRECTORY_RESULTS;
    if (query.limit !== undefined) {
      if (!Number.isInteger(query.limit) || query.limit < 1) throw new ServiceError('limit must be a positive number');
      limit = Math.min(query.limit, MAX_DIRECTORY_RESULTS);
    }

    const base = await this.resolve(user, query.baseDN);
    const candidates: Candidate[] = [];
    if (base.kind === 'account') {
      if (scope === 'base' || scope === 'sub') candidates.push(this.accountCandidate((await this.store.accounts.getById(base.account.id)) ?? base.account, wantMail));
    } else {
      if (scope === 'base' || scope === 'sub') candidates.push(this.domainCandidate(base.domain));
      if (scope !== 'base') for (const account of await this.store.accounts.list(base.domain)) candidates.push(this.accountCandidate(account, wantMail));
    }
    let found = filter ? candidates.filter((c) => matchFilter(filter, c.values)) : candidates;
    found = sortRecords(found, sortFields, query.sortOrder === 'desc');

    const signature = querySignature(query, scope, base);
    let offset = 0;
    if (query.cookie !== undefined && query.cookie !== '') offset = readCookie(query.cookie, signature);
    const page = found.slice(offset, offset + limit);
    const records = page.map((c) => ({ dn: c.dn, attrs: selectAttrs(c.attrs, wanted) }));
    const more = offset + page.length < found.length;
    return { records, ...(query.cookie !== undefined && more ? { cookie: makeCookie(offset + page.length, signature) } : {}) };
  }

  /**
   * modifyDirectory: changes an account's record. The attributes given are its Public Info
   * values (an empty value removes one); `uid`, `mail`, `cn` and `objectClass` are derived
   * from the account and may only be repeated as they are. An account may change its own
   * record; changing another's needs the `a` Account Access Right over it (its domain's
   * postmaster holds it). Records are not created, renamed or removed here: they come and go
   * with their accounts.
   */
  async modify(user: AccountRecord, dn: string, newName: string | undefined, attrs: { [name: string]: XimssValue } | undefined): Promise<void> {
    const node = await this.resolveForChange(user, dn);
    if (newName !== undefined) throw new ServiceError('directory records of accounts cannot be renamed (rename the account instead)');
    if (attrs === undefined || Object.keys(attrs).length === 0) {
      throw new ServiceError('directory records of accounts cannot be removed (remove the account instead)');
    }
    const target = node.account;
    await this.rights.require(user, target, 'a');
    const current = (await this.store.accounts.getById(target.id)) ?? target;
    const derived = this.accountCandidate(current, true).attrs;
    const changes: PrefsChanges = {};
    for (const [name, value] of Object.entries(attrs)) {
      if (!ATTRIBUTE_NAME.test(name)) throw new ServiceError(`invalid attribute name ${JSON.stringify(name.slice(0, 40))}`);
      const lower = name.toLowerCase();
      if (DERIVED.has(lower)) {
        if (lower === 'objectclass') continue;
        const now = Object.entries(derived).find(([n]) => n.toLowerCase() === lower)?.[1];
        if (typeof value === 'string' && typeof now === 'string' && value.toLowerCase() === now.toLowerCase()) continue;
        if (lower === 'cn' && value === '' && now === undefined) continue;
        throw new ServiceError(`the ${name} attribute is the account's own (${lower === 'cn' ? 'its Real Name' : 'its name'}) and cannot be changed here`);
      }
      if (typeof value !== 'string' && !(Array.isArray(value) && value.every((v) => typeof v === 'string'))) {
        throw new ServiceError(`${name}: directory values are strings or arrays of strings`);
      }
      const empty = value === '' || (Array.isArray(value) && value.length === 0);
      Object.defineProperty(changes, name, { value: empty ? null : value, enumerable: true, writable: true, configurable: true });
    }
    if (Object.keys(changes).length === 0) return;
    await this.accounts.updatePublicInfo(current, changes);
    this.log.info({ event: 'directory.modified', account: fullName(current), by: fullName(user), keys: Object.keys(changes) }, `directory record of ${fullName(current)} changed`);
  }

  private async resolveForChange(user: AccountRecord, dn: string): Promise<{ account: AccountRecord }> {
    let node: Node;
    try {
      node = await this.resolve(user, dn);
    } catch (err) {
      if (err instanceof ServiceError && err.message.startsWith('no such directory record')) {
        throw new ServiceError('only records of existing accounts can be changed in this directory');
      }
      throw err;
    }
    if (node.kind !== 'account') throw new ServiceError('the domain record cannot be changed');
    return { account: node.account };
  }
}

function selectAttrs(attrs: { [name: string]: XimssValue }, wanted: ReadonlySet<string>): { [name: string]: XimssValue } {
  if (wanted.size === 0) return attrs;
  const out: { [name: string]: XimssValue } = Object.create(null) as { [name: string]: XimssValue };
  for (const [name, value] of Object.entries(attrs)) {
    if (wanted.has(name.toLowerCase())) Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Sorts by the fields, the last one weighing most; records without a field come last; then by DN. */
function sortRecords(records: Candidate[], fields: readonly string[], descending: boolean): Candidate[] {
  const keys = [...fields].reverse().map((f) => f.toLowerCase());
  const sorted = [...records].sort((a, b) => {
    for (const key of keys) {
      const x = a.values.get(key)?.[0]?.toLowerCase();
      const y = b.values.get(key)?.[0]?.toLowerCase();
      if (x === y) continue;
      if (x === undefined) return 1;
      if (y === undefined) return -1;
      return x < y ? -1 : 1;
    }
    return a.dn < b.dn ? -1 : a.dn > b.dn ? 1 : 0;
  });
  return descending ? sorted.reverse() : sorted;
}

/** What a cookie belongs to: the same search (base, scope, filter, sort), so a cookie cannot be replayed on another. */
function querySignature(query: DirectoryQuery, scope: string, base: Node): string {
  const where = base.kind === 'domain' ? base.domain : `${base.account.id}`;
  const text = JSON.stringify([where, scope, query.filter ?? '', query.sortField ?? '', query.sortOrder ?? '']);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(36);
}

function makeCookie(offset: number, signature: string): string {
  return `${offset}.${signature}`;
}

function readCookie(cookie: string, signature: string): number {
  const match = /^(\d{1,9})\.([0-9a-z]{1,8})$/.exec(cookie);
  if (!match) throw new ServiceError('invalid paging cookie');
  if (match[2] !== signature) throw new ServiceError('the paging cookie belongs to another search');
  return Number(match[1]);
}
