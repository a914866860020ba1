import type { CallRouter, PortAddress } from './router.js';
import type { SignalStage } from './signal-rules.js';
import { bestRefusal, reasonOf, type CallTarget, type Party, type Signal } from './signal.js';

/**
 * Where an address leads: targets to ring (maybe none: nobody is there) and the callee's
 * rules for the later stages of the call, or the refusal to give the caller.
 */
export type Resolution = { targets: CallTarget[]; rules?: CalleeRules; nobody?: string } | { code: number; reason: string };

/** The callee's Signal Rules for the stages after the call began to ring (see signal-rules.ts). */
export interface CalleeRules {
  /** The delays (seconds of ringing) at which some rule is to be tried. */
  readonly delays: readonly number[];
  /** What the rules of a stage decide: a refusal, or targets to ring (instead of, or besides, the others). */
  run(stage: SignalStage, pendingSeconds: number): Promise<StageOutcome>;
}

export type StageOutcome = { reject: { code: number; reason: string } } | { targets: CallTarget[]; replace: boolean } | undefined;

/** What a call needs of the engine around it. */
export interface CallHooks {
  /** The targets of an address a callee redirected to. */
  resolve(address: string, context: ResolveContext): Promise<Resolution>;
  /** The call is over (for the counts, the log and the limits). */
  ended(call: Call, outcome: { connected: boolean; code?: number; reason?: string }): void;
  /** How long the call may ring unanswered, ms. */
  readonly ringTimeoutMs: number;
  /** Redirections followed, and branches rung, at most, for one call. */
  readonly maxRedirects: number;
  readonly maxBranches: number;
}

/** Who is calling, for the resolution of an address. */
export interface ResolveContext {
  from: Party;
  /** The caller's account when it is one of ours (only they may call other domains). */
  callerAccountId?: number;
  /** A client of the called account not to ring (the session calling itself). */
  exclude?: { accountId: number; resource: string };
  /** Redirections and rules followed so far. */
  depth?: number;
}

export type CallState = 'ringing' | 'connected' | 'ended';

/** One device (target) the call rings. */
interface Branch {
  /** Our port for it: its signals come here. */
  readonly port: PortAddress;
  /** Its leg's port, known from its first signal. */
  leg: PortAddress | undefined;
  tag: string | undefined;
  /** It answered, refused, redirected away or was cancelled. */
  done: boolean;
  /** A cancel waits for the leg's address. */
  cancelPending: string | undefined;
  redirects: number;
}

/**
 * One call: a caller, the devices its call rings (forking), then two sides bridged. It holds a
 * port for the caller's side and one per branch; the legs (a XIMSS session's call, later a SIP
 * dialog) may be on any node. Forking follows a proxy's rules (RFC 3261 16.7): provisional
 * signals of every branch reach the caller with their tags; the first answer wins and the
 * others are cancelled (a late second answer is hung up); a 6xx refusal ends the call
 * everywhere; when every branch has refused, the caller gets the most meaningful refusal.
 * Once connected, signals pass between the two sides as they are.
 */
export class Call {
  state: CallState = 'ringing';
  readonly started = Date.now();
  /** The caller's account, when it is one of ours (for its limit and what it may call). */
  accountId: number | undefined;
  /** The caller's leg (learned from its signals: a junction may take its place). */
  private caller: PortAddress;
  private readonly callerPort: PortAddress;
  private readonly branches = new Map<string, Branch>();
  private readonly refusals: number[] = [];
  /** The extension headers a callee gave with its refusal, by code (a Rayo reject's), for the final one. */
  private readonly refusalHeaders = new Map<number, [string, string][]>();
  private winner: Branch | undefined;
  private ringTimer: NodeJS.Timeout | undefined;
  private pendingResolutions = 0;
  private totalBranches = 0;
  private rules: CalleeRules | undefined;
  private readonly stagesTried = new Set<SignalStage>();
  private readonly stageTimers: NodeJS.Timeout[] = [];
  /** Why nobody was rung, when nobody was. */
  private nobody: string | undefined;

  constructor(
    private readonly router: CallRouter,
    private readonly hooks: CallHooks,
    readonly callId: string,
    readonly from: Party,
    readonly to: Party,
    caller: PortAddress,
    private readonly invite: Extract<Signal, { kind: 'invite' }>,
  ) {
    this.caller = caller;
    this.callerPort = router.open({ receive: (signal, from) => this.fromCaller(signal, from) });
  }

  /** The port the caller's leg sends to. */
  get address(): PortAddress {
    return this.callerPort;
  }

  /**
   * Rings the targets; the callee's rules then act at their stages. With no target the call
   * fails (480, `nobody` says why) unless an Error rule sends it somewhere.
   */
  start(targets: readonly CallTarget[], rules?: CalleeRules, nobody?: string): void {
    this.rules = rules;
    this.nobody = nobody;
    this.ringTimer = setTimeout(() => void this.ringTimeout(), this.hooks.ringTimeoutMs);
    this.ringTimer.unref();
    for (const delay of rules?.delays ?? []) {
      const timer = setTimeout(() => void this.stage(delay), delay * 1000);
      timer.unref();
      this.stageTimers.push(timer);
    }
    for (const target of targets) this.ring(target, 0);
    if (targets.length === 0) this.refusals.push(480);
    this.settleIfAllDone();
  }

  /**
   * Tries the callee's rules of a stage (once): true when they rang something new or ended
   * the call, so that the caller's fate is settled by them.
   */
  private async stage(stage: SignalStage): Promise<boolean> {
    if (!this.rules || this.stagesTried.has(stage) || this.state !== 'ringing') return false;
    this.stagesTried.add(stage);
    this.pendingResolutions++;
    let outcome: StageOutcome;
    try {
      outcome = await this.rules.run(stage, Math.round((Date.now() - this.started) / 1000));
    } finally {
      this.pendingResolutions--;
    }
    if (this.state !== 'ringing' || !outcome) return false;
    if ('reject' in outcome) {
      this.cancelBranches(outcome.reject.reason);
      this.toCaller({ kind: 'reject', code: outcome.reject.code, reason: outcome.reject.reason });
      this.end({ connected: false, code: outcome.reject.code, reason: outcome.reject.reason });
      return true;
    }
    if (outcome.targets.length === 0) return false;
    if (outcome.replace) this.cancelBranches('redirected by a rule');
    for (const target of outcome.targets) this.ring(target, 0);
    return true;
  }

  /** Refuses the call before any target was rung. */
  refuse(code: number, reason: string): void {
    this.toCaller({ kind: 'reject', code, reason });
    this.end({ connected: false, code, reason });
  }

  private ring(target: CallTarget, redirects: number): void {
    if (this.totalBranches >= this.hooks.maxBranches) return;
    this.totalBranches++;
    // The port hears nothing before the invite below goes out, by when `branch` is there.
    const port = this.router.open({ receive: (signal, from) => this.fromBranch(branch, signal, from) });
    const branch: Branch = { port, leg: undefined, tag: undefined, done: false, cancelPending: undefined, redirects };
    this.branches.set(branch.port.id, branch);
    this.router.invite(target, this.invite, branch.port);
  }

  // ---------------------------------------------------------------------------------------
  // Signals from the caller

  private fromCaller(signal: Signal, from: PortAddress): void {
    if (this.state === 'ended') return lateForCaller(this.router, this.callerPort, signal, from);
    this.caller = from;
    switch (signal.kind) {
      case 'cancel':
        if (this.state === 'ringing') {
          this.cancelBranches(signal.reason ?? 'cancelled by the caller', undefined, signal.headers);
          this.end({ connected: false, code: 487, reason: 'cancelled' });
          return;
        }
        return this.hangUp('caller', { kind: 'bye', reason: signal.reason, ...(signal.headers && { headers: signal.headers }) });
      case 'gone':
        if (this.state === 'ringing') {
          this.cancelBranches('the caller is gone');
          this.end({ connected: false, code: 487, reason: 'the caller is gone' });
          return;
        }
        return this.hangUp('caller', { kind: 'bye', code: 481, reason: 'the other side is gone' });
      case 'bye':
        if (this.state === 'ringing') {
          this.cancelBranches(signal.reason ?? 'cancelled by the caller');
          this.end({ connected: false, code: 487, reason: 'cancelled' });
          return;
        }
        return this.hangUp('caller', signal);
      default: {
        // Before the answer, what the caller says goes to the early dialog it names.
        const branch = this.winner ?? this.branchOfTag('tag' in signal ? signal.tag : undefined);
        if (!branch?.leg) {
          if (signal.kind === 'update') this.toCaller({ kind: 'updated', tag: signal.tag, code: 481, reason: 'no such early dialog' });
          else if (signal.kind === 'dtmf' || signal.kind === 'info') {
            if (signal.op) this.toCaller({ kind: 'result', op: signal.op, code: 481, reason: 'the call is not connected' });
          }
          return;
        }
        this.router.send(branch.leg, signal, branch.port);
      }
    }
  }

  private branchOfTag(tag: string | undefined): Branch | undefined {
    for (const branch of this.branches.values()) if (!branch.done && branch.tag !== undefined && branch.tag === tag) return branch;
    // Without a tag, the one early dialog there is.
    if (tag === undefined) {
      const early = [...this.branches.values()].filter((b) => !b.done && b.tag !== undefined);
      if (early.length === 1) return early[0];
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Signals from the devices rung

  private fromBranch(branch: Branch, signal: Signal, from: PortAddress): void {
    if (this.state === 'ended' || (branch.done && branch !== this.winner)) return lateForBranch(this.router, branch, signal, from);
    // The branch's leg, or whoever speaks for it now (a junction of a transfer).
    if (from.id !== '-') branch.leg = from;
    if (branch.cancelPending !== undefined && branch.leg && signal.kind !== 'gone') return hangUpUnwanted(this.router, branch, signal);
    if (signal.kind === 'trying') return;
    if (this.winner) {
      if (branch !== this.winner) return;
      if (signal.kind === 'bye') return this.hangUp('callee', signal);
      if (signal.kind === 'gone') return this.hangUp('callee', { kind: 'bye', code: 481, reason: 'the other side is gone' });
      this.toCaller(signal);
      return;
    }
    switch (signal.kind) {
      case 'progress':
        branch.tag = signal.tag;
        this.toCaller(signal);
        return;
      case 'answer':
        branch.tag = signal.tag;
        this.winner = branch;
        this.state = 'connected';
        clearTimeout(this.ringTimer);
        for (const timer of this.stageTimers) clearTimeout(timer);
        this.cancelBranches('answered elsewhere', branch);
        this.toCaller(signal);
        return;
      case 'reject':
        branch.done = true;
        this.refusals.push(signal.code);
        if (signal.headers) this.refusalHeaders.set(signal.code, signal.headers);
        if (signal.code >= 600) {
          this.cancelBranches(signal.reason ?? reasonOf(signal.code));
          this.toCaller(signal);
          this.end({ connected: false, code: signal.code, reason: signal.reason });
          return;
        }
        this.settleIfAllDone();
        return;
      case 'gone':
        branch.done = true;
        this.refusals.push(480);
        this.settleIfAllDone();
        return;
      case 'redirect':
        if (!signal.fork) branch.done = true;
        void this.redirect(branch, signal.targets);
        return;
      case 'bye':
      case 'cancel':
        branch.done = true;
        this.refusals.push(signal.kind === 'bye' && signal.code ? signal.code : 480);
        this.settleIfAllDone();
        return;
      default:
        // Early-dialog exchanges (an update, the answer to an offer in a provisional signal).
        this.toCaller(signal);
    }
  }

  private async redirect(branch: Branch, targets: readonly string[]): Promise<void> {
    this.pendingResolutions++;
    try {
      if (branch.redirects >= this.hooks.maxRedirects) {
        this.refusals.push(482);
        return;
      }
      for (const address of targets) {
        const resolved = await this.hooks.resolve(address, { from: this.from, callerAccountId: this.accountId });
        if (this.state !== 'ringing') return;
        if ('code' in resolved) this.refusals.push(resolved.code);
        else if (resolved.targets.length === 0) this.refusals.push(480);
        else for (const target of resolved.targets) this.ring(target, branch.redirects + 1);
      }
    } finally {
      this.pendingResolutions--;
      this.settleIfAllDone();
    }
  }

  private settleIfAllDone(): void {
    if (this.state !== 'ringing' || this.pendingResolutions > 0) return;
    for (const branch of this.branches.values()) if (!branch.done) return;
    const code = bestRefusal(this.refusals);
    // The callee's Busy or Error rules may send the call elsewhere before the caller hears.
    const stage: SignalStage = code === 486 || code === 600 ? 'Busy' : 'Error';
    if (this.rules && !this.stagesTried.has(stage)) {
      void this.stage(stage).then((settled) => {
        if (!settled) this.settleIfAllDone();
      });
      return;
    }
    const reason = code === 480 && this.nobody ? this.nobody : reasonOf(code);
    const headers = this.refusalHeaders.get(code);
    this.toCaller({ kind: 'reject', code, reason, ...(headers && { headers }) });
    this.end({ connected: false, code, reason });
  }

  private async ringTimeout(): Promise<void> {
    if (this.state !== 'ringing') return;
    if (this.rules && !this.stagesTried.has('No Answer') && (await this.stage('No Answer'))) {
      if (this.state !== 'ringing') return;
      // What the rule rang gets a ring time of its own.
      this.ringTimer = setTimeout(() => void this.ringTimeout(), this.hooks.ringTimeoutMs);
      this.ringTimer.unref();
      return;
    }
    if (this.state !== 'ringing') return;
    this.cancelBranches('no answer');
    this.toCaller({ kind: 'reject', code: 408, reason: reasonOf(408) });
    this.end({ connected: false, code: 408, reason: 'no answer' });
  }

  private cancelBranches(reason: string, except?: Branch, headers?: [string, string][]): void {
    for (const branch of this.branches.values()) {
      if (branch === except || branch.done) continue;
      branch.done = true;
      if (branch.leg) this.router.send(branch.leg, { kind: 'cancel', reason, ...(headers && { headers }) }, branch.port);
      else branch.cancelPending = reason;
    }
  }

  // ---------------------------------------------------------------------------------------

  private toCaller(signal: Signal): void {
    this.router.send(this.caller, signal, this.callerPort);
  }

  /** An established call ends: the other side is told. */
  private hangUp(by: 'caller' | 'callee', signal: Extract<Signal, { kind: 'bye' }>): void {
    if (by === 'caller') {
      if (this.winner?.leg) this.router.send(this.winner.leg, signal, this.winner.port);
    } else this.toCaller(signal);
    this.end({ connected: true, code: signal.code, reason: signal.reason });
  }

  private end(outcome: { connected: boolean; code?: number; reason?: string }): void {
    if (this.state === 'ended') return;
    const wasConnected = this.state === 'connected';
    this.state = 'ended';
    clearTimeout(this.ringTimer);
    for (const timer of this.stageTimers) clearTimeout(timer);
    // The ports stay a little, so that late signals (an answer racing a cancel) are answered;
    // by stand-ins that keep only the branch records, not the whole call.
    const router = this.router;
    const callerPort = this.callerPort;
    router.retire(callerPort, { receive: (signal, from) => lateForCaller(router, callerPort, signal, from) });
    for (const branch of this.branches.values()) router.retire(branch.port, { receive: (signal, from) => lateForBranch(router, branch, signal, from) });
    this.hooks.ended(this, { ...outcome, connected: wasConnected || outcome.connected });
  }
}

// -----------------------------------------------------------------------------------------
// What an ended call (or a branch it no longer wants) does with late signals: also its ports'
// stand-ins once it has ended (CallRouter.retire), so these keep nothing of the call itself.

/** The caller's side of an ended call hears `gone` (it is over). */
function lateForCaller(router: CallRouter, callerPort: PortAddress, signal: Signal, from: PortAddress): void {
  if (signal.kind !== 'gone') router.send(from, { kind: 'gone' }, callerPort);
}

/** A branch the call no longer wants: a cancel that waited for its leg goes out, a device that answers anyway is hung up. */
function lateForBranch(router: CallRouter, branch: Branch, signal: Signal, from: PortAddress): void {
  if (from.id !== '-') branch.leg = from;
  if (branch.cancelPending !== undefined && branch.leg && signal.kind !== 'gone') return hangUpUnwanted(router, branch, signal);
  if (signal.kind === 'answer' && branch.leg) router.send(branch.leg, { kind: 'bye', reason: 'the call is over' }, branch.port);
}

/** The cancel a branch's leg was waiting for; a device that answered after it was cancelled is hung up instead. */
function hangUpUnwanted(router: CallRouter, branch: Branch, signal: Signal): void {
  const reason = branch.cancelPending!;
  branch.cancelPending = undefined;
  router.send(branch.leg!, signal.kind === 'answer' ? { kind: 'bye', reason } : { kind: 'cancel', reason }, branch.port);
}
