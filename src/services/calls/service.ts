import type { EventBus } from '../../bus/bus.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { RuleRecord } from '../../store/rules.js';
import type { ActiveRules } from '../rules/active-rules.js';
import type { AccountIdentity, AccountRecord, Store } from '../../store/store.js';
import type { AccountService } from '../accounts.js';
import type { DatasetService } from '../datasets.js';
import { fromCommuniGateZone } from '../time-zones.js';
import type { ImService } from '../im/service.js';
import { Call, type CalleeRules, type CallHooks, type ResolveContext, type Resolution, type StageOutcome } from './call.js';
import { runSignalRules, timedStages, type SignalStage } from './signal-rules.js';
import { CallRouter, type PortAddress } from './router.js';
import type { CallTarget, MediaFlavour, Party, SdpText } from './signal.js';
import { MediaBridges, type MediaPolicy, type MediaTraits } from './media-bridge.js';
import type { MediaGateway } from '../../media/gateway.js';
import type { TargetOpener } from './router.js';
import { randomId } from '../ids.js';
import { Wildcard } from '../wildcard.js';

export interface CallLimits {
  /** How long a call may ring unanswered, seconds. */
  ringSeconds: number;
  /** Calls one account may have going at once (placed from this node). */
  callsPerAccount: number;
  /** Calls this node may hold at once. */
  callsPerNode: number;
  /** Addresses whose calls go to an account's applications (config calls.applicationRoutes). */
  applicationRoutes?: readonly { address: string; account: string; program?: string }[];
}

export const DEFAULT_CALL_LIMITS: Readonly<CallLimits> = Object.freeze({ ringSeconds: 120, callsPerAccount: 20, callsPerNode: 10_000 });

/** The devices of an account a call rings besides its bound XIMSS sessions (SIP bindings). */
export type DeviceLocator = (account: AccountIdentity) => Promise<CallTarget[]>;

/** The targets of an address outside our domains (user@domain, a SIP URI, a phone number). */
export type RemoteRouter = (address: string, from: Party) => Promise<Resolution>;

/** A phone number as a caller dials it: digits with an optional +, and the usual separators. */
export function isPhoneNumber(address: string): boolean {
  const text = address.trim().replace(/^tel:/i, '');
  return /^\+?[0-9*#][0-9*#\-. ()]{1,31}$/.test(text);
}

/** What placing a call needs: who calls, from which leg, whom, with what offer. */
export interface PlaceCall {
  /** The leg of the caller: the call's signals go to it. */
  caller: PortAddress;
  /** The caller's account (for its limit), when it is one of ours. */
  accountId?: number;
  from: Party;
  /** The address called: user@domain, sip:user@domain, a local name. */
  to: string;
  peerName?: string;
  sdp?: SdpText;
  /** The caller's media, when its binding knows it (see signal.ts MediaFlavour), and whether it is behind NAT. */
  media?: MediaFlavour;
  nat?: boolean;
  /** A client of the caller's own account not to ring (the session calling). */
  exclude?: { accountId: number; resource: string };
  transferredBy?: string;
  suppl?: Record<string, string>;
  /** Extension headers for the callee (see signal.ts extensionHeaders). */
  headers?: [string, string][];
}

/** The Signal Rules target (Redirect to / Fork to) that names the account's applications: its Rayo clients. */
const APPLICATIONS_TARGET = 'rayo';

/**
 * The program a Signal Rules target names: `#rayo` (the account's Rayo clients) or `#<program>`
 * (a real-time application), as written or as the rules qualified it (`#voicemail@domain`).
 */
function programTarget(target: string): string | undefined {
  const match = /^#([A-Za-z0-9][A-Za-z0-9_.-]{0,63}?)(?:@[^@\s]*)?$/.exec(target.trim());
  return match?.[1];
}

/**
 * Where a call to a real-time application goes: a task of the program started with the call
 * (src/services/apps/), on the node the application chooses for the called address.
 */
export type ProgramLocator = (account: AccountIdentity, program: string, called: string) => Promise<CallTarget | undefined>;

/** Why a call could not be placed at all (a bad address, a limit): the caller's `reject` code. */
export class CallRefused extends Error {
  constructor(
    readonly code: number,
    reason: string,
  ) {
    super(reason);
  }
}

/**
 * The call engine: places calls and rings their targets, wherever they are in the cluster.
 * An address of one of the server's accounts rings every XIMSS session of the account bound
 * with signalBind, on every node (SIP devices registered to it come with the SIP binding);
 * nobody there → 480. Protocol bindings (src/ximss/call-leg.ts, later SIP and Rayo) only
 * translate between their protocol and the engine's signals (signal.ts).
 */
export class CallService implements CallHooks {
  readonly router: CallRouter;
  private readonly im: ImService;
  private readonly calls = new Set<Call>();
  private readonly locators: DeviceLocator[] = [];
  private readonly applicationLocators: DeviceLocator[] = [];
  private remoteRouter: RemoteRouter | undefined;
  /** Anchors the media of calls whose sides cannot reach each other directly (useMedia). */
  media: MediaBridges | undefined;
  private readonly perAccount = new Map<number, number>();
  readonly ringTimeoutMs: number;
  /** The routing table of calls to applications (config calls.applicationRoutes). */
  private readonly routes: { pattern: Wildcard; account: string; program?: string }[];
  private programs: ProgramLocator | undefined;
  readonly maxRedirects = 3;
  readonly maxBranches = 32;

  constructor(
    private readonly deps: { store: Store; bus: EventBus; im: ImService; accounts: AccountService; datasets: DatasetService; rules: ActiveRules },
    readonly node: string,
    private readonly log: Logger,
    readonly limits: CallLimits = DEFAULT_CALL_LIMITS,
    private readonly metrics?: Metrics,
  ) {
    this.im = deps.im;
    this.router = new CallRouter(deps.store, deps.bus, node, log);
    this.ringTimeoutMs = limits.ringSeconds * 1000;
    this.routes = (limits.applicationRoutes ?? []).map((r) => ({ pattern: new Wildcard(r.address, { caseInsensitive: true }), account: r.account.toLowerCase(), ...(r.program !== undefined && { program: r.program }) }));
  }

  close(): void {
    this.router.close();
  }

  /** Calls held by this node. */
  get active(): number {
    return this.calls.size;
  }

  /**
   * Places a call: the call's signals (progress, answer, reject…) go to `caller`, which sends
   * its own to the returned port. Throws CallRefused over a limit.
   */
  place(request: PlaceCall): { address: PortAddress; callId: string } {
    if (this.calls.size >= this.limits.callsPerNode) throw new CallRefused(503, 'the server has as many calls as it may');
    if (request.accountId !== undefined && (this.perAccount.get(request.accountId) ?? 0) >= this.limits.callsPerAccount) {
      throw new CallRefused(486, `an account may have ${this.limits.callsPerAccount} calls at once`);
    }
    const callId = randomId(12);
    const to: Party = { address: request.to, name: request.peerName };
    const invite = { kind: 'invite' as const, callId, from: request.from, to, sdp: request.sdp, transferredBy: request.transferredBy, suppl: request.suppl, headers: request.headers, media: request.media, nat: request.nat, callerAccountId: request.accountId };
    const call = new Call(this.router, this, callId, request.from, to, request.caller, invite);
    this.calls.add(call);
    if (request.accountId !== undefined) {
      this.perAccount.set(request.accountId, (this.perAccount.get(request.accountId) ?? 0) + 1);
      call.accountId = request.accountId;
    }
    this.metrics?.callsActive.inc();
    this.log.info({ event: 'call.started', callId, from: request.from.address, to: request.to }, 'a call was placed');
    void this.resolve(request.to, { from: request.from, callerAccountId: request.accountId, exclude: request.exclude }).then(
      (resolution) => {
        if (call.state !== 'ringing') return;
        if ('code' in resolution) call.refuse(resolution.code, resolution.reason);
        else call.start(resolution.targets, resolution.rules, resolution.nobody);
      },
      (err: unknown) => call.refuse(500, err instanceof Error ? err.message : String(err)),
    );
    return { address: call.address, callId };
  }

  /**
   * The targets of an address: the bound sessions of one of our accounts, as its Signal
   * Rules of the stage Immediately change them; the rules of the later stages go with them.
   */
  async resolve(address: string, context: ResolveContext): Promise<Resolution> {
    const { from, exclude } = context;
    const depth = context.depth ?? 0;
    const routed = await this.applicationRoute(address);
    if (routed) return routed;
    const bare = addressOf(address);
    const remote = bare === undefined ? isPhoneNumber(address) : !(await this.im.isLocalDomain(bare.slice(bare.indexOf('@') + 1)));
    if (bare === undefined && !remote) return { code: 404, reason: `${JSON.stringify(address.slice(0, 100))} is not an address that can be called` };
    if (remote) {
      // Only our own users' calls leave the server (no open relay for anyone's calls).
      if (context.callerAccountId === undefined) return { code: 403, reason: 'calls from outside are not relayed to other domains' };
      if (!this.remoteRouter) return { code: 503, reason: `calls to other domains and numbers are not available (SIP is off)` };
      return this.remoteRouter(address.trim(), from);
    }
    if (bare === undefined) return { code: 404, reason: 'not an address' };
    const account = await this.im.accountOf(bare);
    if (!account) return { code: 404, reason: `no such user: ${bare}` };
    let targets = await this.devices(account, exclude);
    if (targets.length === 0) targets = await this.applications(account);
    const rules = await this.calleeRules(account, bare, from, depth);
    if (rules) {
      const immediately = await rules.run('Immediately', 0);
      if (immediately && 'reject' in immediately) return immediately.reject;
      if (immediately) targets = immediately.replace ? immediately.targets : [...targets, ...immediately.targets];
    }
    if (targets.length === 0) return { targets, rules, nobody: `${bare} has no device to ring` };
    return { targets, rules };
  }

  /**
   * A call for an address of the routing table (config calls.applicationRoutes): the applications
   * of the route's account take it, whatever the address is (another domain's, a number).
   */
  private async applicationRoute(address: string): Promise<Resolution | undefined> {
    if (this.routes.length === 0) return undefined;
    const called = address.trim();
    const bare = called.replace(/^(sips?|tel):/i, '').split(/[;?]/)[0]!;
    const route = this.routes.find((r) => r.pattern.test(called) || r.pattern.test(bare) || r.pattern.test(`sip:${bare}`) || r.pattern.test(`tel:${bare}`));
    if (!route) return undefined;
    const account = await this.im.accountOf(route.account);
    if (!account) {
      this.log.warn({ event: 'call.route_failed', address: called.slice(0, 200), account: route.account }, 'a routed address names an account that does not exist');
      return { code: 404, reason: `${route.account} does not exist` };
    }
    if (route.program !== undefined) {
      const target = await this.programs?.(account, route.program, called);
      return target ? { targets: [target] } : { code: 503, reason: `the application ${route.program} is not available` };
    }
    const targets = await this.applications(account);
    return targets.length > 0 ? { targets } : { targets, nobody: `no application of ${route.account} is available` };
  }

  /** Anchors the media of calls through the gateway, as the policy says (media-bridge.ts). */
  useMedia(gateway: MediaGateway, policy: MediaPolicy, sessionsPerAccount?: number): void {
    this.media = new MediaBridges(this.router, gateway, policy, this.log, sessionsPerAccount);
  }

  /**
   * Who opens the legs of new calls for targets of a kind on this node, and what is known of
   * such a leg's media: a call whose caller speaks another, or a side behind NAT, is bridged
   * (as config media.relay says).
   */
  onTarget<K extends CallTarget['kind']>(kind: K, opener: TargetOpener<Extract<CallTarget, { kind: K }>>, mediaOf: (target: Extract<CallTarget, { kind: K }>) => MediaTraits): void {
    this.router.onTarget(kind, (target, invite, replyTo) => {
      const bridged = this.media?.interpose(mediaOf(target), invite, replyTo, (turned, to) => opener(target, turned, to));
      return bridged ?? opener(target, invite, replyTo);
    });
  }

  /** Where calls for other domains and phone numbers go (the SIP binding: DNS or a trunk). */
  routeRemote(router: RemoteRouter): void {
    this.remoteRouter = router;
  }

  /**
   * Adds a source of an account's devices besides its bound sessions (the SIP registrar's
   * bindings): every call for the account rings them too.
   */
  addDevices(locate: DeviceLocator): void {
    this.locators.push(locate);
  }

  /**
   * Adds applications that take an account's calls (Rayo: its available Rayo clients): they are
   * offered a call when the account has no device at all (before its Signal Rules run), or when
   * its Signal Rules redirect or fork the call to `#rayo`.
   */
  addApplications(locate: DeviceLocator): void {
    this.applicationLocators.push(locate);
  }

  /** Who starts the tasks of real-time applications for calls (`#<program>` targets, routes with a program). */
  usePrograms(locate: ProgramLocator): void {
    this.programs = locate;
  }

  /** The account's applications that would take a call now. */
  private async applications(account: AccountIdentity): Promise<CallTarget[]> {
    const targets: CallTarget[] = [];
    for (const locate of this.applicationLocators) {
      try {
        targets.push(...(await locate(account)));
      } catch (err) {
        this.log.error({ event: 'call.locate_failed', account: `${account.name}@${account.domain}`, error: errorText(err) }, "an account's applications could not be found");
      }
    }
    return targets;
  }

  /** Everything that rings for the account: its bound sessions and its other devices. */
  private async devices(account: AccountIdentity, exclude?: { accountId: number; resource: string }): Promise<CallTarget[]> {
    const targets = this.boundTargets(account.id, exclude);
    for (const locate of this.locators) {
      try {
        targets.push(...(await locate(account)));
      } catch (err) {
        this.log.error({ event: 'call.locate_failed', account: `${account.name}@${account.domain}`, error: errorText(err) }, "an account's devices could not be found");
      }
    }
    return targets;
  }

  /** The account's XIMSS sessions bound with signalBind, on every node. */
  private boundTargets(accountId: number, exclude?: { accountId: number; resource: string }): CallTarget[] {
    const targets: CallTarget[] = [];
    for (const { record } of this.im.router.resources(accountId)) {
      if (record.kind !== 'ximss') continue;
      if (exclude && exclude.accountId === accountId && exclude.resource === record.resource) continue;
      targets.push({ kind: 'ximss', node: record.node, accountId, resource: record.resource });
    }
    return targets;
  }

  /** The callee's active Signal Rules, ready to run at each stage; undefined when it has none. */
  private async calleeRules(account: AccountRecord, called: string, from: Party, depth: number): Promise<CalleeRules | undefined> {
    let rules: readonly RuleRecord[];
    try {
      rules = await this.deps.rules.of(account.id, 'signalIn');
    } catch (err) {
      this.log.error({ event: 'call.rules_failed', account: `${account.name}@${account.domain}`, error: errorText(err) }, 'signal rules not applied');
      return undefined;
    }
    if (rules.length === 0) return undefined;
    const who = `${account.name}@${account.domain}`;
    const run = async (stage: SignalStage, pendingSeconds: number): Promise<StageOutcome> => {
      try {
        const prefs = await this.deps.accounts.effectivePrefs(account);
        const zone = typeof prefs.TimeZone === 'string' && prefs.TimeZone !== '' && prefs.TimeZone !== 'HostOS' ? fromCommuniGateZone(prefs.TimeZone) : Intl.DateTimeFormat().resolvedOptions().timeZone;
        const decision = await runSignalRules(rules, stage, {
          from,
          to: called,
          presence: this.presenceOf(account.id),
          timeZone: zone,
          now: new Date(),
          pendingSeconds,
          inDataset: (dataset, address) => this.deps.datasets.hasAddress(account, dataset, address),
        });
        if (decision.applied.length === 0) return undefined;
        this.log.info({ event: 'call.rules_applied', account: who, stage: String(stage), rules: decision.applied }, 'signal rules applied');
        for (const dataset of decision.remember) {
          await this.deps.datasets.addAddress(account, dataset, from.address, from.name).catch((err: unknown) =>
            this.log.warn({ event: 'call.remember_failed', account: who, dataset, error: errorText(err) }, "Remember 'From' failed"),
          );
        }
        if (decision.reject) return { reject: decision.reject };
        const addresses = decision.redirect ?? decision.fork;
        if (!addresses || depth >= this.maxRedirects) return undefined;
        const targets: CallTarget[] = [];
        for (const target of addresses) {
          // A rule pointing back at the account itself rings its devices without its rules again;
          // `#rayo` is the account's applications (its available Rayo clients), `#<program>` a real-time application.
          const program = programTarget(target);
          const app = program !== undefined && program.toLowerCase() !== APPLICATIONS_TARGET ? await this.programs?.(account, program, called) : undefined;
          if (program !== undefined && program.toLowerCase() !== APPLICATIONS_TARGET && !app) {
            this.log.warn({ event: 'call.program_unknown', account: who, program }, 'a Signal Rule names an application that is not installed');
          }
          const resolved =
            program !== undefined
              ? { targets: program.toLowerCase() === APPLICATIONS_TARGET ? await this.applications(account) : app ? [app] : [] }
              : addressOf(target) === called
                ? { targets: await this.devices(account) }
                : await this.resolve(target, { from, callerAccountId: account.id, depth: depth + 1 });
          if ('targets' in resolved) targets.push(...resolved.targets);
        }
        return { targets, replace: decision.redirect !== undefined };
      } catch (err) {
        this.log.error({ event: 'call.rules_failed', account: who, error: errorText(err) }, 'signal rules not applied');
        return undefined;
      }
    };
    return { delays: timedStages(rules), run };
  }

  /** The account's presence as Signal Rules name it: that of its most available client, offline with none. */
  private presenceOf(accountId: number): string {
    let best: string | undefined;
    const rank = ['online', 'busy', 'be-back', 'away'];
    for (const known of this.im.router.resources(accountId)) {
      if (!known.record.available) continue;
      const show = known.presence?.element('show')?.text();
      const value = show === 'dnd' ? 'busy' : show === 'away' ? 'be-back' : show === 'xa' ? 'away' : 'online';
      if (best === undefined || rank.indexOf(value) < rank.indexOf(best)) best = value;
    }
    return best ?? 'offline';
  }

  ended(call: Call, outcome: { connected: boolean; code?: number; reason?: string }): void {
    if (!this.calls.delete(call)) return;
    const accountId = call.accountId;
    if (accountId !== undefined) {
      const left = (this.perAccount.get(accountId) ?? 1) - 1;
      if (left <= 0) this.perAccount.delete(accountId);
      else this.perAccount.set(accountId, left);
    }
    const result = outcome.connected ? 'connected' : outcome.code === 487 ? 'cancelled' : outcome.code === 408 ? 'unanswered' : 'refused';
    this.metrics?.callsActive.dec();
    this.metrics?.calls.inc({ result });
    this.log.info(
      { event: 'call.ended', callId: call.callId, result, code: outcome.code, reason: outcome.reason, seconds: Math.round((Date.now() - call.started) / 1000) },
      'a call ended',
    );
  }
}

/** user@domain of a called address (a bare address, or a sip:/sips: URI), lower-cased; undefined when it is not one. */
export function addressOf(address: string): string | undefined {
  let value = address.trim();
  const angle = /<([^>]*)>/.exec(value);
  if (angle) value = angle[1]!;
  value = value.replace(/^sips?:/i, '');
  value = value.split(/[;?]/, 1)[0]!;
  const at = value.lastIndexOf('@');
  if (at <= 0 || at === value.length - 1) return undefined;
  const user = value.slice(0, at);
  const domain = value.slice(at + 1).replace(/:\d+$/, '');
  if (!/^[^\s@<>"]{1,256}$/.test(user) || !/^[a-z0-9.-]{1,253}$/i.test(domain)) return undefined;
  try {
    return `${decodeURIComponent(user)}@${domain}`.toLowerCase();
  } catch {
    return undefined; // a broken %-escape
  }
}
