/**
 * The SIP registrar (RFC 3261 10.3) and location service: REGISTER requests in, responses
 * out, bindings in the store (src/store/registrations.ts). Protocol logic only: no socket,
 * no transaction; the SIP service hands each REGISTER's server transaction to `register`
 * and sends what it answers, and the call engine asks `locate` where an account's devices are.
 *
 * The steps of RFC 3261 10.3, in its order:
 * 1. The Request-URI names one of our domains (or one of `serverHosts`, the names a phone
 *    may be configured with instead), else 404: RFC 3261 21.4.5 gives 404 for a Request-URI
 *    domain the server does not handle, and the registrar does not proxy REGISTER elsewhere.
 * 2. Require: option tags other than `path` and `outbound` are answered 420 with Unsupported.
 * 3. Digest authentication (RFC 3261 22, RFC 8760): 401 with a challenge per algorithm
 *    (SHA-256, then MD5), realm = the AoR's domain (the realm of the accounts' Digest
 *    credentials). Every answer is one login attempt through the server's login guard
 *    (AuthService.checkDigest), counted, throttled and logged like the other protocols'. A
 *    right answer on an expired nonce gets 401 with stale=true; a wrong one 401 again; an
 *    address or account past its budget 403.
 * 4. The authenticated account must be the AoR's own (no third-party registration): 403.
 *    Checked after authentication, so that an unauthenticated client learns nothing about
 *    which addresses exist (an unknown AoR is challenged like a known one).
 * 5. The To URI is the address-of-record: an account name or alias of a served domain
 *    (AccountService.find), in the Request-URI's domain, else 404 (10.3 step 5).
 * 6-7. Contacts: `*` with Expires 0 removes every binding; each Contact's expiry is its
 *    `expires` parameter, else the Expires header, else `defaultExpires`, shortened to
 *    `maxExpires`; below `minExpires` (and not 0) the whole request gets 423 with
 *    Min-Expires. The store applies the changes in one transaction (Call-ID/CSeq order,
 *    all or nothing): an older CSeq of the same Call-ID fails the request with 500, as
 *    10.3 step 7 says for a binding update that fails. Past `maxBindings` live bindings
 *    the answer is 403, not 503: the limit is the account's policy, not a passing state of
 *    the server, and a 503 would send the phone to the cluster's other nodes (RFC 3263
 *    failover), which share the store and refuse the same.
 * 8. 200 lists every live binding with its remaining `expires`, and Date.
 *
 * RFC 5626 basics: a Contact with `+sip.instance` and `reg-id`, in a REGISTER with
 * `Supported: outbound`, whose first hop is this server (no Path) or an edge proxy that
 * says it supports outbound (`ob` in the last Path URI) gets `Require: outbound`; its
 * binding is keyed by instance and reg-id and keeps the flow (transport, connection, node)
 * requests to the device must go over. A Contact with `+sip.instance` otherwise is keyed by
 * its instance (RFC 5627 4.2's use of it), any other by its URI compared as RFC 3261 19.1.4
 * says (see contactKey). Path (RFC 3327) is kept with the bindings and echoed to a UA that
 * supports it.
 *
 * Every binding records the flow its REGISTER came on and this node's id. Those that can only
 * be reached through that flow (outbound, or a connection: see isFlowBound) stop counting
 * when the node dies and go when it leaves (`removeNode`); a UDP binding without outbound is
 * reached at its address from any node and outlives the node that took it.
 *
 * After every committed change the account's `sipRegistration` event goes on the bus, for
 * every node; expired bindings are swept every `sweepIntervalMs` (by whichever nodes run it:
 * each expired row is removed, logged and announced once).
 */
import { Counter } from 'prom-client';
import type { EventBus } from '../../bus/bus.js';
import { errorText, silentLogger, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { fullName, type AccountService } from '../../services/accounts.js';
import type { AuthService } from '../../services/auth.js';
import type { DigestAuthenticator } from '../../services/digest.js';
import type { Binding, BindingFlow, ContactChange, RegisterChange } from '../../store/registrations.js';
import { NotFoundError, type AccountRecord, type Store } from '../../store/store.js';
import { authenticateRequest } from './digest-auth.js';
import { SipParseError } from './error.js';
import { parseContact, parseCSeq, parseExpires, type Contact } from './headers.js';
import { isToken } from './lexer.js';
import { responseTo, type SipRequest, type SipResponse } from './message.js';
import { newTag, type SipEndpoint } from './transactions.js';
import { parseNameAddr, parseUri, type Params, type Uri } from './uri.js';

export interface RegistrarOptions {
  /** The longest registration granted, in seconds (default 3600); a longer request is shortened. */
  maxExpires?: number;
  /** The shortest registration accepted, in seconds (default 60): shorter ones get 423. */
  minExpires?: number;
  /** The expiry of a Contact that asks for none, in seconds (default 3600, at most maxExpires). */
  defaultExpires?: number;
  /** Live bindings per account (default 10). */
  maxBindings?: number;
  /**
   * Names of this server a Request-URI may carry instead of a domain (its host name or
   * address, when phones are configured with it as their registrar); the To domain must
   * still be one of ours.
   */
  serverHosts?: readonly string[];
  /** How often expired bindings are swept, in ms (default 30 000). */
  sweepIntervalMs?: number;
  /** The clock, in ms (the tests move it). */
  now?: () => number;
  log?: Logger;
  metrics?: Metrics;
}

/** What the registrar works with; all of it shared with the rest of the server. */
export interface RegistrarServices {
  store: Store;
  accounts: AccountService;
  /** Every Digest answer goes through its login guard (AuthService.checkDigest). */
  auth: AuthService;
  digest: DigestAuthenticator;
  bus: EventBus;
  /** This node's id (ClusterNode.id): the node that holds the flows of the REGISTERs it receives. */
  node: string;
}

/** How long locate() may answer from its cache without a change event (a lost event's bound). */
const LOCATE_CACHE_MS = 10_000;
/** Accounts whose bindings locate() keeps at most. */
const LOCATE_CACHE_ACCOUNTS = 10_000;

/** The option tags this registrar supports (Require: anything else gets 420). */
const SUPPORTED = ['path', 'outbound'];
/** The URI parameters RFC 3261 19.1.4 compares even when only one URI has them. */
const COMPARED_PARAMS = ['user', 'ttl', 'method', 'maddr', 'transport'];
const REGISTER_TOTAL = 'ximssd_sip_register_total';
/** How many expired bindings one sweep statement removes. */
const SWEEP_BATCH = 500;

/** What the register counter counts, by result. */
type RegisterResult =
  | 'ok'
  | 'challenged'
  | 'stale'
  | 'auth_failed'
  | 'refused'
  | 'forbidden'
  | 'not_found'
  | 'bad_request'
  | 'interval_too_brief'
  | 'out_of_order'
  | 'too_many'
  | 'error';

/** A response decided, with what the counter and the log call it. */
interface Answer {
  response: SipResponse;
  result: RegisterResult;
}

/**
 * The key that identifies a binding by its Contact URI (RFC 3261 19.1.4): scheme, user and
 * password as they are (escapes decoded), host in lower case, the port as given (a missing
 * port is not 5060), the parameters user, ttl, method, maddr and transport in lower case,
 * and the URI headers. Other parameters, which 19.1.4 compares only when both URIs carry
 * them, are left out: a key is one string, so contacts that differ only in them count as
 * one binding. TEL URIs compare by number without visual separators (RFC 3966 4);
 * other schemes by their text, the scheme in lower case.
 */
export function contactKey(uri: Uri): string {
  if (uri.kind === 'tel') return `tel:${uri.number.replace(/[-.()]/g, '').toLowerCase()}${sortedParams(uri.params, undefined)}`;
  if (uri.kind === 'other') return `${uri.scheme}:${uri.opaque}`;
  const userinfo = uri.user === undefined ? '' : `${encodeURIComponent(uri.user)}${uri.password === undefined ? '' : `:${encodeURIComponent(uri.password)}`}@`;
  const headers = [...uri.headers].map(([n, v]) => `${n.toLowerCase()}=${encodeURIComponent(v)}`).sort();
  return `${uri.scheme}:${userinfo}${uri.host}:${uri.port ?? ''}${sortedParams(uri.params, COMPARED_PARAMS)}${headers.length > 0 ? `?${headers.join('&')}` : ''}`;
}

function sortedParams(params: Params, only: readonly string[] | undefined): string {
  return [...params]
    .filter(([name]) => only === undefined || only.includes(name))
    .map(([name, value]) => `;${name}${value === null ? '' : `=${encodeURIComponent(value.toLowerCase())}`}`)
    .sort()
    .join('');
}

/** A Contact's header parameters other than expires and q, written back (quoted where a value is not a token). */
export function contactParamsText(params: Params): string {
  let out = '';
  for (const [name, value] of params) {
    if (name === 'expires' || name === 'q') continue;
    out += `;${name}`;
    if (value !== null) out += `=${isToken(value) ? value : `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`}`;
  }
  return out;
}

/**
 * The expiry to grant a Contact, in seconds (RFC 3261 10.3 step 7): its own `expires`, else
 * the request's Expires, else the default; shortened to the maximum; 'too-brief' when it
 * asks for less than the minimum but more than 0.
 */
export function grantedExpires(
  contactExpires: number | undefined,
  headerExpires: number | undefined,
  limits: { minExpires: number; maxExpires: number; defaultExpires: number },
): number | 'too-brief' {
  const requested = contactExpires ?? headerExpires ?? limits.defaultExpires;
  if (requested === 0) return 0;
  if (requested < limits.minExpires) return 'too-brief';
  return Math.min(requested, limits.maxExpires);
}

/** The registrar; one per server process (see the module comment). */
export class Registrar {
  private readonly expiry: { minExpires: number; maxExpires: number; defaultExpires: number };
  private readonly maxBindings: number;
  private readonly serverHosts: ReadonlySet<string>;
  /** locate()'s cache, by account (see there). */
  private readonly located = new Map<number, { bindings: Promise<Binding[]>; until: number }>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly sweepIntervalMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly counter: Counter<'result'> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(
    private readonly services: RegistrarServices,
    options: RegistrarOptions = {},
  ) {
    const maxExpires = options.maxExpires ?? 3600;
    const minExpires = options.minExpires ?? 60;
    this.expiry = { minExpires, maxExpires, defaultExpires: Math.min(options.defaultExpires ?? 3600, maxExpires) };
    this.maxBindings = options.maxBindings ?? 10;
    if (!(minExpires >= 1 && minExpires <= maxExpires)) throw new Error('the SIP registrar needs 1 <= minExpires <= maxExpires');
    if (!(this.maxBindings >= 1)) throw new Error('the SIP registrar needs maxBindings >= 1');
    this.unsubscribe.push(
      services.bus.on('sipRegistration', (event) => this.located.delete(event.accountId)),
      services.bus.on('resync', () => this.located.clear()),
    );
    this.serverHosts = new Set((options.serverHosts ?? []).map((h) => h.toLowerCase()));
    this.sweepIntervalMs = options.sweepIntervalMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? silentLogger;
    const metrics = options.metrics;
    // One registrar per registry; another made on it (a test's) counts into the first's metrics.
    if (metrics && !metrics.registry.getSingleMetric(REGISTER_TOTAL)) {
      this.counter = new Counter({
        name: REGISTER_TOTAL,
        help: 'SIP REGISTER requests answered, by result',
        labelNames: ['result'] as const,
        registers: [metrics.registry],
      });
      const { store } = services;
      metrics.gauge('ximssd_sip_registrations', 'Live SIP registrations (bindings) of every node', [], async (set) => set({}, await store.registrations.count(this.now())));
    } else if (metrics) {
      this.counter = metrics.registry.getSingleMetric(REGISTER_TOTAL) as Counter<'result'>;
    }
  }

  /** Starts the expiry sweep (an unreferenced timer: it does not keep a stopping process up). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweep().catch((err: unknown) => this.log.error({ event: 'sip.sweep_failed', error: errorText(err) }, 'sweeping expired SIP registrations failed')), this.sweepIntervalMs);
    this.timer.unref();
  }

  /** Stops the sweep; waits for one under way. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const off of this.unsubscribe.splice(0)) off();
    await this.sweeping?.catch(() => {});
  }

  /**
   * Answers a REGISTER that came from `source` (its transport, address and connection: the
   * flow that reaches the device back). Never throws: an unexpected failure is a 500.
   */
  async register(request: SipRequest, source: SipEndpoint): Promise<SipResponse> {
    let answer: Answer;
    try {
      answer = await this.handle(request, source);
    } catch (err) {
      this.log.error({ event: 'sip.register_failed', error: errorText(err), address: source.host }, 'a REGISTER failed');
      answer = this.answer(request, 500, 'error', 'Server Internal Error');
    }
    this.counter?.inc({ result: answer.result });
    return answer.response;
  }

  /**
   * The account's live bindings, by q (highest first) then the most recent: where to send it an
   * INVITE. Read through a cache that every node's `sipRegistration` event for the account
   * empties (and that forgets everything after LOCATE_CACHE_MS, should an event be lost); a
   * binding that expired since is left out at each read. Nothing is written from it.
   */
  async locate(accountId: number): Promise<Binding[]> {
    const now = this.now();
    let cached = this.located.get(accountId);
    if (!cached || cached.until <= now) {
      const read = this.services.store.registrations.list(accountId, now);
      cached = { bindings: read, until: now + LOCATE_CACHE_MS };
      if (this.located.size >= LOCATE_CACHE_ACCOUNTS) this.located.delete(this.located.keys().next().value!);
      this.located.set(accountId, cached);
      read.catch(() => this.located.get(accountId) === cached && this.located.delete(accountId));
    }
    return (await cached.bindings).filter((b) => b.expires > now);
  }

  /** Removes the bindings expired by now, logs each and tells the bus; answers how many. */
  sweep(): Promise<number> {
    this.sweeping ??= (async () => {
      try {
        const now = this.now();
        const accounts = new Set<number>();
        let total = 0;
        for (;;) {
          const expired = await this.services.store.registrations.sweep(now, SWEEP_BATCH);
          for (const b of expired) {
            accounts.add(b.accountId);
            this.log.info({ event: 'sip.registration_expired', accountId: b.accountId, contact: b.contact }, 'a SIP registration expired');
          }
          total += expired.length;
          if (expired.length < SWEEP_BATCH) break;
        }
        for (const accountId of accounts) this.services.bus.publish('sipRegistration', { accountId });
        return total;
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  /**
   * Removes the bindings bound to flows `node` held (this node before it stops, or a node
   * found dead; see isFlowBound) and tells the bus for each account that had some.
   */
  async removeNode(node: string): Promise<void> {
    const accounts = await this.services.store.registrations.removeNode(node);
    for (const accountId of accounts) this.services.bus.publish('sipRegistration', { accountId });
    if (accounts.length > 0) this.log.info({ event: 'sip.node_bindings_removed', node, accounts: accounts.length }, `SIP registrations held by node ${node} removed`);
  }

  // -------------------------------------------------------------------------------------

  private async handle(request: SipRequest, source: SipEndpoint): Promise<Answer> {
    if (request.method !== 'REGISTER') {
      const answer = this.answer(request, 405, 'bad_request');
      answer.response.headers.add('Allow', 'REGISTER');
      return answer;
    }
    const { headers } = request;

    // 1. The Request-URI's domain.
    const requestUri = parseUri(request.uri);
    if (requestUri.kind !== 'sip') return this.answer(request, 416, 'bad_request', 'Unsupported URI Scheme (a REGISTER goes to a SIP or SIPS URI)');
    const servedHost = this.serverHosts.has(requestUri.host);
    if (!servedHost && !(await this.isDomain(requestUri.host))) return this.answer(request, 404, 'not_found', 'Not Found (this server does not handle that domain)');

    // 2. Require.
    const unsupported = headers.getAll('Require').filter((tag) => !SUPPORTED.includes(tag.toLowerCase()));
    if (unsupported.length > 0) {
      const answer = this.answer(request, 420, 'bad_request');
      answer.response.headers.add('Unsupported', unsupported.join(', '));
      return answer;
    }

    // The address-of-record, read before authentication (its domain is the realm), decided on after it.
    const to = readTo(headers.get('To')!);
    if (typeof to === 'string') return this.answer(request, 400, 'bad_request', to);
    if (!(await this.isDomain(to.domain)) || (!servedHost && to.domain !== requestUri.host)) {
      return this.answer(request, 404, 'not_found', 'Not Found (the address-of-record is not in the domain of the Request-URI)');
    }
    const realm = to.domain;

    // 3. Authentication.
    const verdict = await authenticateRequest({ ...this.services, log: this.log }, request, source, realm, 'Authorization', sameUri);
    if (verdict.kind === 'bad') return this.answer(request, 400, 'bad_request', verdict.reason);
    if (verdict.kind === 'refused') return this.answer(request, 403, 'refused', 'Forbidden (too many failed attempts; try again later)');
    if (verdict.kind === 'challenge') return this.challenge(request, realm, verdict.why, verdict.why === 'stale');

    // 4 and 5. The authenticated account registers its own address-of-record only.
    const account = await this.services.accounts.find(to.user, to.domain);
    if (!account || account.id !== verdict.account.id) {
      return this.answer(request, 403, 'forbidden', 'Forbidden (an account registers only its own address-of-record)');
    }

    // 6 and 7. The contacts.
    const read = this.readContacts(request);
    if ('status' in read) {
      const answer = this.answer(request, read.status, read.status === 423 ? 'interval_too_brief' : read.status === 403 ? 'too_many' : 'bad_request', read.reason);
      if (read.status === 423) answer.response.headers.add('Min-Expires', String(this.expiry.minExpires));
      return answer;
    }
    const now = this.now();
    if (read.query) return this.ok(request, await this.services.store.registrations.list(account.id, now), read, now);

    const flow: BindingFlow = { transport: source.transport ?? 'udp', host: source.host, port: source.port, flow: source.flow ?? null, node: this.services.node };
    const change: RegisterChange = {
      accountId: account.id,
      callId: headers.get('Call-ID')!,
      cseq: parseCSeq(headers.get('CSeq')!).seq,
      removeAll: read.removeAll,
      contacts: read.contacts,
      source: flow,
      path: read.path,
      userAgent: headers.get('User-Agent') ?? '',
    };
    let outcome;
    try {
      outcome = await this.services.store.registrations.apply(change, now, this.maxBindings);
    } catch (err) {
      if (err instanceof NotFoundError) return this.answer(request, 404, 'not_found', 'Not Found (the account is gone)');
      throw err;
    }
    if (outcome.outcome === 'out-of-order') {
      return this.answer(request, 500, 'out_of_order', 'Server Internal Error (out of order: this Call-ID had a later CSeq)');
    }
    if (outcome.outcome === 'too-many') return this.tooMany(request, outcome.limit);
    this.report(account, outcome.added, outcome.updated, outcome.removed);
    return this.ok(request, outcome.bindings, read, now);
  }

  /** Reads the Contacts, Expires and Path of a REGISTER into the store's terms, or the error to answer. */
  private readContacts(request: SipRequest): ReadContacts | { status: number; reason: string } {
    const { headers } = request;
    const path = headers.getAll('Path');
    const supported = headers.getAll('Supported').map((t) => t.toLowerCase());
    let headerExpires: number | undefined;
    const expiresText = headers.get('Expires');
    let contacts: (Contact | '*')[];
    try {
      if (expiresText !== undefined) headerExpires = parseExpires(expiresText);
      contacts = headers.getAll('Contact').map(parseContact);
    } catch (err) {
      if (err instanceof SipParseError) return { status: 400, reason: `Bad Request (${err.reason})` };
      throw err;
    }
    const base = { path, echoPath: supported.includes('path') && path.length > 0, outbound: false };
    if (contacts.length === 0) return { ...base, query: true, removeAll: false, contacts: [] };
    if (contacts.includes('*')) {
      if (contacts.length > 1 || headerExpires !== 0) return { status: 400, reason: 'Bad Request (Contact "*" needs Expires: 0 and no other Contact)' };
      return { ...base, query: false, removeAll: true, contacts: [] };
    }
    const addresses = contacts as Contact[];
    if (addresses.length > this.maxBindings) return { status: 403, reason: tooManyReason(this.maxBindings) };
    // RFC 5626 5.2/6: the flow is ours to keep when we are the first hop, or the edge proxy says it keeps it.
    const lastPath = path[path.length - 1];
    const edgeKeepsFlow = lastPath === undefined || pathHasOb(lastPath);
    const outboundAsked = supported.includes('outbound') && edgeKeepsFlow;
    if (addresses.filter((c) => c.params.has('reg-id') && c.params.has('+sip.instance')).length > 1 && outboundAsked) {
      return { status: 400, reason: 'Bad Request (more than one Contact with a reg-id)' };
    }
    const changes: ContactChange[] = [];
    for (const c of addresses) {
      const expires = grantedExpires(c.expires, headerExpires, this.expiry);
      if (expires === 'too-brief') return { status: 423, reason: 'Interval Too Brief' };
      const instance = c.params.get('+sip.instance');
      if (instance === null) return { status: 400, reason: 'Bad Request (+sip.instance without a value)' };
      const regIdText = c.params.get('reg-id');
      let regId: number | null = null;
      if (outboundAsked && instance !== undefined && regIdText !== undefined) {
        regId = regIdText === null || !/^[1-9][0-9]{0,9}$/.test(regIdText) ? NaN : Number(regIdText);
        if (!(regId >= 1 && regId <= 2 ** 31 - 1)) return { status: 400, reason: 'Bad Request (a reg-id must be a number 1..2^31-1)' };
      }
      const key = instance === undefined ? contactKey(c.uri) : regId === null ? `instance:${instance.toLowerCase()}` : `instance:${instance.toLowerCase()};reg-id=${regId}`;
      changes.push({
        key,
        contact: c.uriText,
        contactParams: contactParamsText(c.params),
        instance: instance ?? null,
        regId,
        expires,
        q: c.q === undefined ? null : Math.round(c.q * 1000),
        outbound: regId !== null,
      });
    }
    return { ...base, outbound: changes.some((c) => c.outbound && c.expires > 0), query: false, removeAll: false, contacts: changes };
  }

  /** Whether `host` is one of the server's domains. */
  private async isDomain(host: string): Promise<boolean> {
    try {
      return (await this.services.accounts.getDomain(host)) !== undefined;
    } catch {
      return false; // not a domain name at all (an address)
    }
  }

  private answer(request: SipRequest, status: number, result: RegisterResult, reason?: string): Answer {
    return { response: responseTo(request, status, reason, { toTag: newTag() }), result };
  }

  private challenge(request: SipRequest, realm: string, result: RegisterResult, stale = false): Answer {
    const answer = this.answer(request, 401, result);
    for (const value of this.services.digest.challenge(realm, { stale })) answer.response.headers.add('WWW-Authenticate', value);
    return answer;
  }

  private tooMany(request: SipRequest, limit: number): Answer {
    return this.answer(request, 403, 'too_many', tooManyReason(limit));
  }

  /** The 200: every live binding with the seconds it has left, Date, and what outbound and Path need. */
  private ok(request: SipRequest, bindings: readonly Binding[], read: ReadContacts, now: number): Answer {
    const answer = this.answer(request, 200, 'ok');
    const { headers } = answer.response;
    if (read.outbound) headers.add('Require', 'outbound');
    if (read.echoPath) for (const p of read.path) headers.add('Path', p);
    for (const b of bindings) {
      const left = Math.max(0, Math.ceil((b.expires - now) / 1000));
      const q = b.q === null ? '' : `;q=${b.q / 1000}`;
      headers.add('Contact', `<${b.contact}>${b.contactParams}${q};expires=${left}`);
    }
    headers.add('Date', new Date(now).toUTCString());
    return answer;
  }

  /** Logs the changes and tells every node (after the commit). */
  private report(account: AccountRecord, added: readonly Binding[], updated: readonly Binding[], removed: readonly Binding[]): void {
    const user = fullName(account);
    for (const b of [...added, ...updated]) {
      this.log.info(
        { event: 'sip.registered', user, contact: b.contact, expires: b.expires, transport: b.transport, address: b.host, port: b.port, outbound: b.outbound, refresh: !added.includes(b) },
        'SIP registration',
      );
    }
    for (const b of removed) this.log.info({ event: 'sip.unregistered', user, contact: b.contact }, 'SIP registration removed');
    if (added.length + updated.length + removed.length > 0) this.services.bus.publish('sipRegistration', { accountId: account.id });
  }
}

interface ReadContacts {
  /** No Contact: the request asks for the bindings only. */
  query: boolean;
  removeAll: boolean;
  contacts: ContactChange[];
  path: string[];
  /** The UA supports Path and sent some: the 200 echoes them (RFC 3327 5.3). */
  echoPath: boolean;
  /** A binding takes outbound: the 200 carries Require: outbound (RFC 5626 6). */
  outbound: boolean;
}

function tooManyReason(limit: number): string {
  return `Forbidden (too many registrations: at most ${limit} per account)`;
}

/** The AoR of a To header: its user and domain; or why it is not one. */
function readTo(value: string): { user: string; domain: string } | string {
  let uri: Uri;
  try {
    uri = parseNameAddr(value).uri;
  } catch (err) {
    return `Bad Request (To: ${err instanceof SipParseError ? err.reason : 'unreadable'})`;
  }
  if (uri.kind !== 'sip') return 'Bad Request (the address-of-record must be a SIP or SIPS URI)';
  if (uri.user === undefined) return 'Bad Request (the address-of-record has no user part)';
  return { user: uri.user, domain: uri.host.replace(/\.$/, '') };
}

/** Whether a Digest `uri` names the Request-URI (RFC 7616 3.4.6: the server checks it), compared as URIs. */
export function sameUri(text: string, requestUri: Uri): boolean {
  try {
    return contactKey(parseUri(text)) === contactKey(requestUri);
  } catch {
    return false;
  }
}

/** `ob` among the URI parameters of a Path value (RFC 5626 5.1: the edge proxy keeps the flow). */
function pathHasOb(value: string): boolean {
  try {
    const { uri } = parseNameAddr(value);
    return uri.kind === 'sip' && uri.params.has('ob');
  } catch {
    return false;
  }
}
