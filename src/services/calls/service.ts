import { randomBytes } from 'node:crypto';
import type { EventBus } from '../../bus/bus.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Store } from '../../store/store.js';
import type { ImService } from '../im/service.js';
import { Call, type CallHooks, type Resolution } from './call.js';
import { CallRouter, type PortAddress } from './router.js';
import type { CallTarget, Party, SdpText } from './signal.js';

export interface CallLimits {
  /** How long a call may ring unanswered, seconds. */
  ringSeconds: number;
  /** Calls one account may have going at once (placed from this node). */
  callsPerAccount: number;
  /** Calls this node may hold at once. */
  callsPerNode: number;
}

export const DEFAULT_CALL_LIMITS: Readonly<CallLimits> = Object.freeze({ ringSeconds: 120, callsPerAccount: 20, callsPerNode: 10_000 });

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
  /** A client of the caller's own account not to ring (the session calling). */
  exclude?: { accountId: number; resource: string };
  transferredBy?: string;
  suppl?: Record<string, string>;
}

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
  private readonly calls = new Set<Call>();
  private readonly perAccount = new Map<number, number>();
  readonly ringTimeoutMs: number;
  readonly maxRedirects = 3;
  readonly maxBranches = 32;

  constructor(
    store: Store,
    bus: EventBus,
    readonly node: string,
    private readonly im: ImService,
    private readonly log: Logger,
    private readonly limits: CallLimits = DEFAULT_CALL_LIMITS,
    private readonly metrics?: Metrics,
  ) {
    this.router = new CallRouter(store, bus, node, log);
    this.ringTimeoutMs = limits.ringSeconds * 1000;
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
    const callId = randomBytes(12).toString('hex');
    const to: Party = { address: request.to, name: request.peerName };
    const invite = { kind: 'invite' as const, callId, from: request.from, to, sdp: request.sdp, transferredBy: request.transferredBy, suppl: request.suppl };
    const call = new Call(this.router, this, callId, request.from, to, request.caller, invite);
    this.calls.add(call);
    if (request.accountId !== undefined) {
      this.perAccount.set(request.accountId, (this.perAccount.get(request.accountId) ?? 0) + 1);
      (call as { accountId?: number }).accountId = request.accountId;
    }
    this.metrics?.callsActive.inc();
    this.log.info({ event: 'call.started', callId, from: request.from.address, to: request.to }, 'a call was placed');
    void this.resolve(request.to, request.from, request.exclude).then(
      (resolution) => {
        if (call.state !== 'ringing') return;
        if ('code' in resolution) call.refuse(resolution.code, resolution.reason);
        else call.start(resolution.targets);
      },
      (err: unknown) => call.refuse(500, err instanceof Error ? err.message : String(err)),
    );
    return { address: call.address, callId };
  }

  /** The targets of an address: the bound sessions of one of our accounts. */
  async resolve(address: string, _from: Party, exclude?: { accountId: number; resource: string }): Promise<Resolution> {
    const bare = addressOf(address);
    if (bare === undefined) return { code: 404, reason: `${JSON.stringify(address.slice(0, 100))} is not an address that can be called` };
    const at = bare.indexOf('@');
    const domain = bare.slice(at + 1);
    if (!(await this.im.isLocalDomain(domain))) return { code: 503, reason: `calls to other domains (${domain}) are not available yet` };
    const account = await this.im.accountOf(bare);
    if (!account) return { code: 404, reason: `no such user: ${bare}` };
    const targets: CallTarget[] = [];
    for (const known of this.im.router.resources(account.id)) {
      const { record } = known;
      if (record.kind !== 'ximss') continue;
      if (exclude && exclude.accountId === account.id && exclude.resource === record.resource) continue;
      targets.push({ kind: 'ximss', node: record.node, accountId: account.id, resource: record.resource });
    }
    if (targets.length === 0) return { code: 480, reason: `${bare} has no device to ring` };
    return { targets };
  }

  ended(call: Call, outcome: { connected: boolean; code?: number; reason?: string }): void {
    if (!this.calls.delete(call)) return;
    const accountId = (call as { accountId?: number }).accountId;
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
