import { setTimeout as sleep } from 'node:timers/promises';
import type { SharedStateStore } from '../store/store.js';
import { addressKey } from './client-address.js';

/**
 * Budgets of login attempts that parallel attempts cannot race, shared by every protocol.
 *
 * An attempt is reserved the moment it starts, before anything is looked up or verified: it
 * counts against its client address's budget at once, and is settled when the verdict is
 * known (a failure stays counted for the window, a success is forgotten). So of N attempts
 * sent in parallel from one address, only as many as the budget has room for are ever
 * verified; the others are refused without looking at their passwords.
 *
 * - The client ADDRESS (IPv6: its /64) past `perAddress` failures is refused, blocked for the window.
 * - The ACCOUNT (resolved through aliases by the caller, so every name of it shares one budget)
 *   past `perAccount` failures is only slowed down, never refused because of them: attempts from
 *   addresses its owner has not logged in from wait for the account's next slot (slots
 *   `slowdownMs` apart, taken in order, so parallel attempts never share one); attempts from a
 *   known address of the owner go straight through. The one bound: an attempt whose slot would
 *   come later than `horizonMs` (the time a client is given to log in) is refused at once, as
 *   "the account is busy", rather than left waiting past its client's patience.
 */

/** A reservation, to be settled exactly once. */
export interface Ticket {
  readonly key: string;
}

/** A count of attempts per key in a sliding window. */
export interface Budget {
  /** Keeps the budget's keys apart from other budgets' in the state. */
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
}

/**
 * Where the guard keeps its counts, slots and known addresses: this process's memory
 * (MemoryGuardState, a single server), or the store (SharedGuardState, a cluster: every
 * node counts the same attempts). Each method is ONE atomic step, check and change
 * together: a shared implementation must keep it so (one conditional statement or a
 * transaction), else parallel attempts could all pass a check before any of them is counted.
 */
export interface GuardState {
  /**
   * Reserves an attempt on `key` unless the key is blocked or `budget.limit` attempts
   * (failures in the window and reservations not settled yet) are counted already.
   */
  reserve(budget: Budget, key: string, now: number): Promise<Ticket | undefined>;
  /** Reserves an attempt on `key` whatever the count; `before` is the count without it. */
  add(budget: Budget, key: string, now: number): Promise<{ ticket: Ticket; before: number }>;
  /**
   * A failure stays counted for the window (and once `limit` failures are counted the key is
   * blocked for the window); a success is forgotten.
   */
  settle(budget: Budget, ticket: Ticket, failed: boolean, now: number): Promise<void>;
  /**
   * Takes `key`'s next slot: the later of `now` and the previous slot plus `spacingMs`.
   * Undefined (and nothing taken) when that is more than `horizonMs` away.
   */
  takeSlot(key: string, spacingMs: number, now: number, horizonMs: number): Promise<number | undefined>;
  /** Remembers that `account` was logged in to from `address` (a few addresses per account). */
  remember(account: string, address: string, now: number): Promise<void>;
  knows(account: string, address: string, now: number): Promise<boolean>;
}

interface Counter {
  /** Times of the failures in the window, oldest first. */
  failures: number[];
  /** Reservations not settled yet. */
  pending: number;
  blockedUntil: number;
}

/** Most keys each map keeps; past it the least recently used ones go (a reset budget at worst). */
const MAX_KEYS = 100_000;
/** Addresses remembered per account, most recent first, and for how long. */
const KNOWN_ADDRESSES = 8;
const KNOWN_FOR_MS = 30 * 24 * 3600_000;

/**
 * Re-inserts `key` so that the map's order is least recently used first, and bounds its size:
 * past MAX_KEYS the oldest entries not `inUse` go (a forgotten budget starts afresh).
 */
function touch<V>(map: Map<string, V>, key: string, value: V, inUse: (value: V) => boolean = () => false): void {
  map.delete(key);
  map.set(key, value);
  if (map.size <= MAX_KEYS) return;
  let scanned = 0;
  for (const [oldest, v] of map) {
    if (map.size <= MAX_KEYS || ++scanned > 64) break;
    if (!inUse(v)) map.delete(oldest);
  }
  while (map.size > MAX_KEYS) map.delete(map.keys().next().value!);
}

/** The guard's state in this process's memory (see GuardState: the cluster will share it). */
export class MemoryGuardState implements GuardState {
  private readonly counters = new Map<string, Counter>();
  private readonly slots = new Map<string, number>();
  private readonly known = new Map<string, { address: string; time: number }[]>();

  private counter(budget: Budget, key: string, now: number): Counter {
    const id = `${budget.name}\0${key}`;
    const counter = this.counters.get(id) ?? { failures: [], pending: 0, blockedUntil: 0 };
    let expired = 0;
    while (expired < counter.failures.length && now - counter.failures[expired]! >= budget.windowMs) expired++;
    if (expired > 0) counter.failures.splice(0, expired);
    touch(this.counters, id, counter, (c) => c.pending > 0);
    return counter;
  }

  async reserve(budget: Budget, key: string, now: number): Promise<Ticket | undefined> {
    const counter = this.counter(budget, key, now);
    if (counter.blockedUntil > now || counter.failures.length + counter.pending >= budget.limit) return undefined;
    counter.pending++;
    return { key };
  }

  async add(budget: Budget, key: string, now: number): Promise<{ ticket: Ticket; before: number }> {
    const counter = this.counter(budget, key, now);
    const before = counter.failures.length + counter.pending;
    counter.pending++;
    return { ticket: { key }, before };
  }

  async settle(budget: Budget, ticket: Ticket, failed: boolean, now: number): Promise<void> {
    const counter = this.counter(budget, ticket.key, now);
    counter.pending = Math.max(0, counter.pending - 1);
    if (!failed) {
      if (counter.pending === 0 && counter.failures.length === 0 && counter.blockedUntil <= now) this.counters.delete(`${budget.name}\0${ticket.key}`);
      return;
    }
    counter.failures.push(now);
    if (counter.failures.length >= budget.limit) counter.blockedUntil = now + budget.windowMs;
  }

  async takeSlot(key: string, spacingMs: number, now: number, horizonMs: number): Promise<number | undefined> {
    const slot = Math.max(now, this.slots.get(key) ?? 0);
    if (slot - now > horizonMs) return undefined;
    touch(this.slots, key, slot + spacingMs, (next) => next > now);
    return slot;
  }

  async remember(account: string, address: string, now: number): Promise<void> {
    const list = (this.known.get(account) ?? []).filter((k) => k.address !== address && now - k.time < KNOWN_FOR_MS);
    list.unshift({ address, time: now });
    touch(this.known, account, list.slice(0, KNOWN_ADDRESSES));
  }

  async knows(account: string, address: string, now: number): Promise<boolean> {
    return (this.known.get(account) ?? []).some((k) => k.address === address && now - k.time < KNOWN_FOR_MS);
  }
}

/** A Counter as the shared store keeps it (JSON). */
function storedCounter(value: unknown, budget: Budget, now: number): Counter {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Partial<Counter>;
  const failures = Array.isArray(v.failures) ? v.failures.filter((t): t is number => typeof t === 'number' && now - t < budget.windowMs) : [];
  return { failures, pending: typeof v.pending === 'number' ? v.pending : 0, blockedUntil: typeof v.blockedUntil === 'number' ? v.blockedUntil : 0 };
}

/** How long a stored counter matters: its block, its failures' window, a reservation's (a node that died with one). */
function counterExpiry(counter: Counter, budget: Budget, now: number): number {
  const lastFailure = counter.failures.length > 0 ? counter.failures[counter.failures.length - 1]! : 0;
  return Math.max(counter.blockedUntil, lastFailure + budget.windowMs, counter.pending > 0 ? now + budget.windowMs : 0);
}

/**
 * The guard's state in the store (SharedStateStore), for a cluster: each step is one atomic
 * update of one key, so that attempts on every node are counted against the same budgets.
 * A reservation held by a node that died is forgotten when its counter expires.
 */
export class SharedGuardState implements GuardState {
  constructor(private readonly shared: SharedStateStore) {}

  reserve(budget: Budget, key: string, now: number): Promise<Ticket | undefined> {
    return this.shared.update(budget.name, key, now, (value) => {
      const counter = storedCounter(value, budget, now);
      if (counter.blockedUntil > now || counter.failures.length + counter.pending >= budget.limit) {
        return { value, expires: counterExpiry(counter, budget, now), result: undefined };
      }
      counter.pending++;
      return { value: counter, expires: counterExpiry(counter, budget, now), result: { key } };
    });
  }

  add(budget: Budget, key: string, now: number): Promise<{ ticket: Ticket; before: number }> {
    return this.shared.update(budget.name, key, now, (value) => {
      const counter = storedCounter(value, budget, now);
      const before = counter.failures.length + counter.pending;
      counter.pending++;
      return { value: counter, expires: counterExpiry(counter, budget, now), result: { ticket: { key }, before } };
    });
  }

  settle(budget: Budget, ticket: Ticket, failed: boolean, now: number): Promise<void> {
    return this.shared.update(budget.name, ticket.key, now, (value) => {
      const counter = storedCounter(value, budget, now);
      counter.pending = Math.max(0, counter.pending - 1);
      if (failed) {
        counter.failures.push(now);
        if (counter.failures.length >= budget.limit) counter.blockedUntil = now + budget.windowMs;
      } else if (counter.pending === 0 && counter.failures.length === 0 && counter.blockedUntil <= now) {
        return { value: undefined, expires: 0, result: undefined };
      }
      return { value: counter, expires: counterExpiry(counter, budget, now), result: undefined };
    });
  }

  takeSlot(key: string, spacingMs: number, now: number, horizonMs: number): Promise<number | undefined> {
    return this.shared.update('login-slot', key, now, (value) => {
      const slot = Math.max(now, typeof value === 'number' ? value : 0);
      if (slot - now > horizonMs) return { value, expires: typeof value === 'number' ? value : now, result: undefined };
      return { value: slot + spacingMs, expires: slot + spacingMs, result: slot };
    });
  }

  remember(account: string, address: string, now: number): Promise<void> {
    return this.shared.update('login-known', account, now, (value) => {
      const list = knownList(value).filter((k) => k.address !== address && now - k.time < KNOWN_FOR_MS);
      list.unshift({ address, time: now });
      return { value: list.slice(0, KNOWN_ADDRESSES), expires: now + KNOWN_FOR_MS, result: undefined };
    });
  }

  async knows(account: string, address: string, now: number): Promise<boolean> {
    return knownList(await this.shared.get('login-known', account, now)).some((k) => k.address === address && now - k.time < KNOWN_FOR_MS);
  }
}

function knownList(value: unknown): { address: string; time: number }[] {
  if (!Array.isArray(value)) return [];
  return value.filter((k): k is { address: string; time: number } => typeof k === 'object' && k !== null && typeof k.address === 'string' && typeof k.time === 'number');
}

export interface GuardLimits {
  perAddress: number;
  perAccount: number;
  windowMs: number;
  /** Spacing of an account's slots once it is past `perAccount`. */
  slowdownMs: number;
  /** An attempt whose slot is further away than this is refused at once. */
  horizonMs: number;
}

/** What the guard decided, for whoever watches (the tests; a structured log later). */
export type GuardEvent =
  | { kind: 'refused'; address: string; reason: 'address' | 'account busy' }
  /** `slot`: the time of the account slot the attempt waited for; undefined when it went straight through. */
  | { kind: 'admitted'; address: string; account: string; slot: number | undefined };

export interface GuardOptions {
  state?: GuardState;
  now?: () => number;
  /** Waits `ms` on a timer (nothing else is held meanwhile). */
  wait?: (ms: number) => Promise<void>;
  observe?: (event: GuardEvent) => void;
}

/** Waits on an unreferenced timer: a login waiting for its slot does not keep a stopping process up. */
export const timerWait = (ms: number): Promise<void> => (ms > 0 ? sleep(ms, undefined, { ref: false }) : Promise.resolve());

export class LoginGuard {
  readonly state: GuardState;
  readonly now: () => number;
  readonly wait: (ms: number) => Promise<void>;
  private readonly observe: (event: GuardEvent) => void;
  readonly addressBudget: Budget;
  readonly accountBudget: Budget;

  constructor(
    readonly limits: GuardLimits,
    options: GuardOptions = {},
  ) {
    this.state = options.state ?? new MemoryGuardState();
    this.now = options.now ?? Date.now;
    this.wait = options.wait ?? timerWait;
    this.observe = options.observe ?? (() => {});
    this.addressBudget = { name: 'login-address', limit: limits.perAddress, windowMs: limits.windowMs };
    this.accountBudget = { name: 'login-account', limit: limits.perAccount, windowMs: limits.windowMs };
  }

  /**
   * Starts an attempt from `address`, reserved against the address's budget before anything
   * else happens; undefined when the address has no room left (refused, nothing verified).
   */
  async begin(address: string): Promise<LoginAttempt | undefined> {
    const key = addressKey(address);
    const ticket = await this.state.reserve(this.addressBudget, key, this.now());
    if (!ticket) {
      this.observe({ kind: 'refused', address: key, reason: 'address' });
      return undefined;
    }
    return new LoginAttempt(this, key, ticket);
  }

  /** Reports an event to the observer (LoginAttempt's). */
  report(event: GuardEvent): void {
    this.observe(event);
  }
}

/** One attempt between `begin` and its verdict; settle it exactly once. */
export class LoginAttempt {
  private account: { key: string; ticket: Ticket } | undefined;
  private settled = false;

  constructor(
    private readonly guard: LoginGuard,
    readonly address: string,
    private readonly ticket: Ticket,
  ) {}

  /**
   * Names the account attempted (its key: the account's own name, or the normalized name typed
   * when there is no such account) and counts the attempt against it. When the account is past
   * its failure budget and the address is not one its owner logged in from (remembered, or
   * `ownerAddresses`, e.g. the stored last login), waits for the account's next slot. False
   * when that slot is beyond the horizon: the attempt is refused, and must be abandoned.
   */
  async forAccount(accountKey: string, ownerAddresses: readonly (string | undefined)[] | false = []): Promise<boolean> {
    const { state, limits } = this.guard;
    const counted = await state.add(this.guard.accountBudget, accountKey, this.guard.now());
    this.account = { key: accountKey, ticket: counted.ticket };
    let slot: number | undefined;
    // `false`: no address is the owner's (not even remembered ones), as for a second factor.
    const exempt = ownerAddresses !== false && (await this.isOwnerAddress(accountKey, ownerAddresses));
    if (counted.before >= limits.perAccount && !exempt) {
      const now = this.guard.now();
      slot = await state.takeSlot(accountKey, limits.slowdownMs, now, limits.horizonMs);
      if (slot === undefined) {
        this.guard.report({ kind: 'refused', address: this.address, reason: 'account busy' });
        return false;
      }
      await this.guard.wait(slot - now);
    }
    this.guard.report({ kind: 'admitted', address: this.address, account: accountKey, slot });
    return true;
  }

  private async isOwnerAddress(accountKey: string, ownerAddresses: readonly (string | undefined)[]): Promise<boolean> {
    if (ownerAddresses.some((a) => a !== undefined && addressKey(a) === this.address)) return true;
    return this.guard.state.knows(accountKey, this.address, this.guard.now());
  }

  /**
   * The right credentials: the reservations are released, and the address is remembered as
   * the owner's (unless not `remember`: a login not complete before its second factor).
   */
  async succeeded(remember = true): Promise<void> {
    await this.settle(false);
    if (this.account && remember) await this.guard.state.remember(this.account.key, this.address, this.guard.now());
  }

  /** Wrong credentials: the reservations stay, as failures, for the window. */
  async failed(): Promise<void> {
    await this.settle(true);
  }

  /** No verdict (refused, or an internal error before one): released, counted nowhere. */
  async abandon(): Promise<void> {
    await this.settle(false);
  }

  private async settle(failed: boolean): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    const { state, addressBudget, accountBudget } = this.guard;
    const now = this.guard.now();
    await state.settle(addressBudget, this.ticket, failed, now);
    if (this.account) await state.settle(accountBudget, this.account.ticket, failed, now);
  }
}
