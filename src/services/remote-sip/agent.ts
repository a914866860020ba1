/**
 * The registration client of the accounts' remote SIP records (records.ts): this node
 * registers the records whose lease it holds (store.remoteSip.claim, renewed every
 * remoteSip.scanSeconds; a node that dies stops renewing and another takes its records when
 * the leases run out).
 *
 * Each registration sends REGISTER to the record's registrar (its proxy, or the domain's
 * servers by RFC 3263) for `fromName@domain`, with a Contact whose user part is the record's
 * own token (`rsip-...`): an INVITE the registrar forwards to it is for this account, and the
 * SIP calls code routes it there (through the account's Signal Rules, like any call). A 401 or
 * 407 is answered once with the record's credentials (digest-client.ts), a 423 once with the
 * Min-Expires asked. It refreshes before the registration runs out, backs off after a failure
 * (retryMinSeconds, doubling up to retryMaxSeconds), and un-registers (Expires: 0) when the
 * record is deleted, disabled or changed to another address, and when the server shuts down.
 *
 * Only records of accounts whose RSIPAllowed setting is Yes register: at every look (each scan,
 * and at once when an account's or a domain's settings change: accountChanged, domainChanged)
 * the settings are read as stored, and a record of an account no longer allowed un-registers
 * and shows the reason as its error; allowed again, it registers at the next look.
 *
 * Events: remoteSip.registered, remoteSip.refreshed (debug), remoteSip.failed,
 * remoteSip.unregistered, remoteSip.taken (debug), remoteSip.released, remoteSip.not_allowed; the gauge
 * ximssd_remote_sip_registrations counts the registrations this node holds in force.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { EventBus } from '../../bus/bus.js';
import type { Config } from '../../config.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { RemoteSipRecord } from '../../store/remote-sip.js';
import type { AccountRecord, Store } from '../../store/store.js';
import { answerChallenge } from '../../transports/sip/digest-client.js';
import { SipHeaders, parseContact } from '../../transports/sip/headers.js';
import { locateSipServers } from '../../transports/sip/locate.js';
import { isPublicAddress } from '../remote-fetch.js';
import type { SipRequest, SipResponse } from '../../transports/sip/message.js';
import type { SipService } from '../../transports/sip/service.js';
import { newBranch, newTag, type SipEndpoint } from '../../transports/sip/transactions.js';
import type { DnsResolver } from '../mail-auth.js';
import type { AccountService } from '../accounts.js';
import type { SecretBox } from '../secret-box.js';
import { NOT_ALLOWED, rsipAllowed, sealContext } from './records.js';

export interface RemoteSipAgentDeps {
  sip: SipService;
  store: Store;
  bus: EventBus;
  /** The accounts' effective settings (RSIPAllowed). */
  accounts: AccountService;
  secrets: SecretBox;
  /** This node's id: the owner of its leases. */
  node: string;
  config: Config['remoteSip'];
  resolver?: DnsResolver;
  log: Logger;
  metrics?: Metrics;
}

/** How one REGISTER ended. */
type Outcome = { ok: true; granted: number } | { ok: false; error: string };

/** How long an un-REGISTER at shutdown or replacement is waited for, at most. */
const STOP_WAIT_MS = 3000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** One record's registration on this node. */
class Registration {
  private readonly callId = `${randomBytes(12).toString('hex')}@ximssd`;
  private readonly tag = newTag();
  private cseq = 0;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private running: Promise<void> | undefined;
  /** Until when the registrar holds our binding (ms), undefined when it holds none. */
  registeredUntil: number | undefined;

  constructor(
    readonly record: RemoteSipRecord,
    private readonly password: string,
    private readonly agent: RemoteSipAgent,
  ) {}

  get key(): string {
    return `${this.record.accountId}:${this.record.name}`;
  }

  /** Whether another record's settings register another address at another place. */
  sameAddress(other: RemoteSipRecord): boolean {
    const r = this.record;
    return r.domain === other.domain && r.proxy === other.proxy && r.user === other.user;
  }

  start(): void {
    this.schedule(0);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.attempt().finally(() => (this.running = undefined));
    }, ms);
    this.timer.unref();
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const outcome = await this.register(this.record.expires).catch((err: unknown): Outcome => ({ ok: false, error: errorText(err) }));
    const now = Date.now();
    if (this.stopped) {
      // Stopped meanwhile: stop() un-registers what this attempt registered.
      if (outcome.ok) this.registeredUntil = now + outcome.granted * 1000;
      return;
    }
    const log = this.agent.log;
    const fields = { accountId: this.record.accountId, record: this.record.name, domain: this.record.domain };
    if (outcome.ok) {
      const first = this.registeredUntil === undefined || this.failures > 0;
      this.failures = 0;
      this.registeredUntil = now + outcome.granted * 1000;
      if (first) log.info({ event: 'remoteSip.registered', ...fields, expires: outcome.granted }, `registered ${this.record.user}@${this.record.domain}`);
      else log.debug({ event: 'remoteSip.refreshed', ...fields, expires: outcome.granted }, 'remote SIP registration refreshed');
      // Refreshed before it runs out: halfway for short ones, a minute ahead for long ones.
      this.schedule(outcome.granted > 120 ? (outcome.granted - 60) * 1000 : (outcome.granted * 1000) / 2);
    } else {
      this.failures++;
      this.registeredUntil = undefined;
      const delay = Math.min(this.agent.config.retryMaxSeconds, this.agent.config.retryMinSeconds * 2 ** Math.min(this.failures - 1, 30));
      log.warn({ event: 'remoteSip.failed', ...fields, error: outcome.error, failures: this.failures, retrySeconds: delay }, `registering ${this.record.user}@${this.record.domain} failed: ${outcome.error}`);
      this.schedule(delay * 1000);
    }
    await this.agent.recordState(this.record, { registeredUntil: this.registeredUntil ?? null, lastAttempt: now, lastError: outcome.ok ? null : outcome.error });
  }

  /** Stops; with `unregister`, removes the binding the registrar holds (Expires: 0), waiting a few seconds at most. */
  async stop(unregister: boolean): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.race([this.running, sleep(STOP_WAIT_MS)]);
    if (!unregister || this.registeredUntil === undefined || this.registeredUntil <= Date.now()) return;
    this.registeredUntil = undefined;
    const outcome = await Promise.race([
      this.register(0).catch((err: unknown): Outcome => ({ ok: false, error: errorText(err) })),
      sleep(STOP_WAIT_MS).then((): Outcome => ({ ok: false, error: 'no answer in time' })),
    ]);
    const fields = { accountId: this.record.accountId, record: this.record.name, domain: this.record.domain };
    if (outcome.ok) this.agent.log.info({ event: 'remoteSip.unregistered', ...fields }, `unregistered ${this.record.user}@${this.record.domain}`);
    else this.agent.log.warn({ event: 'remoteSip.unregister_failed', ...fields, error: outcome.error }, `un-registering ${this.record.user}@${this.record.domain} failed: ${outcome.error}`);
  }

  /** One REGISTER asking for `expires` seconds (0: remove the binding), answering one challenge and one 423. */
  private async register(expires: number): Promise<Outcome> {
    const r = this.record;
    const destination = (await locateSipServers(`sip:${r.proxy || r.domain}`, this.agent.resolver))[0]!;
    // Users name these servers: the server's own network is not theirs to reach.
    if (!this.agent.config.allowPrivate && isIP(destination.host) !== 0 && !isPublicAddress(destination.host)) {
      return { ok: false, error: `the registrar's address ${destination.host} is private or local, which this server does not reach (remoteSip.allowPrivate)` };
    }
    const local = this.agent.sip.localAddress(destination);
    const host = local.host.includes(':') ? `[${local.host}]` : local.host;
    const contactUri = `sip:${r.contactUser}@${host}:${local.port}${local.transport === 'udp' ? '' : `;transport=${local.transport}`}`;
    const requestUri = `sip:${r.domain}`;
    let authorization: [string, string] | undefined;
    let asked = expires;
    let challenged = false;
    let tooBrief = false;
    for (;;) {
      const response = await this.send(destination, local, requestUri, contactUri, asked, authorization);
      if (response === 'timeout') return { ok: false, error: 'no answer from the registrar' };
      if (typeof response === 'object' && 'transportError' in response) return { ok: false, error: `the registrar cannot be reached (${response.transportError})` };
      const status = response.status;
      if ((status === 401 || status === 407) && !challenged) {
        challenged = true;
        authorization = answerChallenge(response, { method: 'REGISTER', uri: requestUri, credentials: { user: r.authName || r.user, password: this.password } });
        if (authorization === undefined) return { ok: false, error: `${status} ${response.reason} (a challenge that cannot be answered)` };
        continue;
      }
      if (status === 401 || status === 407) return { ok: false, error: `authentication failed: ${status} ${response.reason}` };
      if (status === 423 && !tooBrief && expires > 0) {
        tooBrief = true;
        const min = Number(response.headers.get('Min-Expires') ?? '');
        if (!Number.isInteger(min) || min <= asked || min > this.agent.config.maxExpires) return { ok: false, error: `${status} ${response.reason}` };
        asked = min;
        continue;
      }
      if (status < 200 || status >= 300) return { ok: false, error: `${status} ${response.reason}`.trim() };
      return { ok: true, granted: expires === 0 ? 0 : granted(response, r.contactUser, asked) };
    }
  }

  /** Sends one REGISTER in a client transaction: its final response, 'timeout', or a transport error. */
  private send(
    destination: SipEndpoint,
    local: { host: string; port: number; transport: string },
    requestUri: string,
    contactUri: string,
    expires: number,
    authorization: [string, string] | undefined,
  ): Promise<SipResponse | 'timeout' | { transportError: string }> {
    const r = this.record;
    const host = local.host.includes(':') ? `[${local.host}]` : local.host;
    const aor = `<sip:${r.user}@${r.domain}>`;
    const headers: [string, string][] = [
      ['Via', `SIP/2.0/${local.transport.toUpperCase()} ${host}:${local.port};branch=${newBranch()};rport`],
      ['Max-Forwards', '70'],
      ['From', `${aor};tag=${this.tag}`],
      ['To', aor],
      ['Call-ID', this.callId],
      ['CSeq', `${++this.cseq} REGISTER`],
      ['Contact', `<${contactUri}>`],
      ['Expires', String(expires)],
      ['User-Agent', 'ximssd'],
    ];
    if (authorization) headers.push(authorization);
    const request: SipRequest = { kind: 'request', method: 'REGISTER', uri: requestUri, version: 'SIP/2.0', headers: new SipHeaders(headers), body: Buffer.alloc(0) };
    return new Promise((resolve) => {
      try {
        this.agent.sip.request(request, destination, (event) => {
          if (event.type === 'final') resolve(event.response);
          else if (event.type === 'timeout') resolve('timeout');
          else if (event.type === 'transport-error') resolve({ transportError: errorText(event.error) });
        });
      } catch (err) {
        resolve({ transportError: errorText(err) });
      }
    });
  }
}

/** The interval a 2xx grants our binding: its Contact's expires, else the Expires header, else what was asked. */
function granted(response: SipResponse, contactUser: string, asked: number): number {
  for (const value of response.headers.getAll('Contact')) {
    try {
      const contact = parseContact(value);
      if (contact === '*' || contact.uri.kind !== 'sip' || contact.uri.user !== contactUser) continue;
      if (contact.expires !== undefined && contact.expires > 0) return contact.expires;
    } catch {
      // a Contact of someone else's that does not read
    }
  }
  const header = Number(response.headers.get('Expires') ?? '');
  return Number.isInteger(header) && header > 0 ? header : asked;
}

export class RemoteSipAgent {
  readonly log: Logger;
  readonly config: Config['remoteSip'];
  readonly sip: SipService;
  readonly resolver: DnsResolver | undefined;
  private readonly active = new Map<string, Registration>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private again = false;
  private stopListening: (() => void)[] = [];
  private closed = false;
  /** The accounts of the records this node held at its last look (their settings changes kick it). */
  private heldAccounts = new Set<number>();

  constructor(private readonly deps: RemoteSipAgentDeps) {
    this.log = deps.log;
    this.config = deps.config;
    this.sip = deps.sip;
    this.resolver = deps.resolver;
    deps.metrics?.gauge('ximssd_remote_sip_registrations', 'Remote SIP registrations this node holds in force (rsipUpdate records)', [], (set) => set({}, this.registered));
  }

  /** Registrations of this node in force now. */
  get registered(): number {
    const now = Date.now();
    let n = 0;
    for (const r of this.active.values()) if (r.registeredUntil !== undefined && r.registeredUntil > now) n++;
    return n;
  }

  start(): void {
    const { bus } = this.deps;
    this.stopListening = [
      bus.on('remoteSipChanged', () => this.kick()),
      // RSIPAllowed may have changed: the account's own setting, or its domain's default.
      bus.on('accountChanged', ({ accountId }) => {
        if (this.heldAccounts.has(accountId)) this.kick();
      }),
      bus.on('domainChanged', () => {
        if (this.heldAccounts.size > 0) this.kick();
      }),
    ];
    this.kick();
    this.timer = setInterval(() => this.kick(), this.config.scanSeconds * 1000);
    this.timer.unref();
  }

  /** Looks at the records now (they changed); a scan under way is followed by another. */
  kick(): void {
    if (this.closed) return;
    if (this.scanning) {
      this.again = true;
      return;
    }
    this.scanning = this.scan()
      .catch((err: unknown) => this.log.error({ event: 'remoteSip.scan_failed', error: errorText(err) }, 'looking at the remote SIP records failed'))
      .finally(() => {
        this.scanning = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  async recordState(record: RemoteSipRecord, state: { registeredUntil: number | null; lastAttempt: number; lastError: string | null }): Promise<void> {
    try {
      await this.deps.store.remoteSip.setState(record.accountId, record.name, this.deps.node, record.version, state);
    } catch (err) {
      this.log.error({ event: 'remoteSip.state_failed', accountId: record.accountId, record: record.name, error: errorText(err) }, 'the state of a remote SIP registration could not be stored');
    }
  }

  private async scan(): Promise<void> {
    const now = Date.now();
    const held = await this.deps.store.remoteSip.claim(this.deps.node, now, now + this.config.leaseSeconds * 1000, this.config.registrationsPerNode);
    if (this.closed) return;
    this.heldAccounts = new Set(held.map((r) => r.accountId));
    const allowed = await this.allowedAccounts(this.heldAccounts);
    const seen = new Set<string>();
    const stopping: Promise<void>[] = [];
    const refused: RemoteSipRecord[] = [];
    for (const record of held) {
      const key = `${record.accountId}:${record.name}`;
      if (!allowed.has(record.accountId)) {
        // Not (or no longer) allowed: not registered here; an active registration goes below.
        refused.push(record);
        continue;
      }
      seen.add(key);
      const current = this.active.get(key);
      if (current && current.record.version === record.version) continue;
      if (current) {
        // Changed settings: the old binding goes first when it was of another address.
        this.active.delete(key);
        await current.stop(!current.sameAddress(record));
      }
      let password: string;
      try {
        password = this.deps.secrets.open(record.password, sealContext(record.accountId, record.name));
      } catch (err) {
        const error = `the password does not open: ${errorText(err)}`;
        this.log.error({ event: 'remoteSip.failed', accountId: record.accountId, record: record.name, error }, error);
        await this.recordState(record, { registeredUntil: null, lastAttempt: now, lastError: error });
        continue;
      }
      const registration = new Registration(record, password, this);
      this.active.set(key, registration);
      if (!current) this.log.debug({ event: 'remoteSip.taken', accountId: record.accountId, record: record.name, node: this.deps.node }, 'this node registers a remote SIP record');
      registration.start();
    }
    // Deleted, disabled, no longer allowed, or (after a pause) taken by another node: the binding goes.
    for (const [key, registration] of this.active) {
      if (seen.has(key)) continue;
      this.active.delete(key);
      stopping.push(registration.stop(true));
    }
    await Promise.all(stopping);
    // The reason shows in rsipList (written once: the record keeps it until it changes).
    for (const record of refused) {
      if (record.lastError === NOT_ALLOWED && record.registeredUntil === null) continue;
      this.log.info({ event: 'remoteSip.not_allowed', accountId: record.accountId, record: record.name }, 'a remote SIP record is not registered: RSIPAllowed is not Yes');
      await this.recordState(record, { registeredUntil: null, lastAttempt: now, lastError: NOT_ALLOWED });
    }
  }

  /** Of these accounts, those whose RSIPAllowed setting is Yes now (read as stored; a removed account is not). */
  private async allowedAccounts(ids: Set<number>): Promise<Set<number>> {
    const allowed = new Set<number>();
    for (const id of ids) {
      let account: AccountRecord | undefined;
      try {
        account = await this.deps.accounts.getById(id);
        if (account && (await rsipAllowed(this.deps.accounts, account))) allowed.add(id);
      } catch (err) {
        // Unknown (the store failed): a registration in force is kept until the next look.
        this.log.warn({ event: 'remoteSip.settings_failed', accountId: id, error: errorText(err) }, 'the settings of an account with remote SIP records could not be read');
        for (const registration of this.active.values()) if (registration.record.accountId === id) allowed.add(id);
      }
    }
    return allowed;
  }

  /** Shutdown: every registration un-registers (a few seconds at most) and the leases are given up. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const stop of this.stopListening) stop();
    await this.scanning;
    const registrations = [...this.active.values()];
    this.active.clear();
    await Promise.all(registrations.map((r) => r.stop(true)));
    for (const r of registrations) {
      try {
        await this.deps.store.remoteSip.release(r.record.accountId, r.record.name, this.deps.node);
        this.log.debug({ event: 'remoteSip.released', accountId: r.record.accountId, record: r.record.name }, 'a remote SIP lease was given up');
      } catch (err) {
        this.log.warn({ event: 'remoteSip.release_failed', error: errorText(err) }, 'a remote SIP lease could not be given up');
      }
    }
  }
}
