/**
 * What the SIP registrar keeps (src/transports/sip/registrar.ts): the bindings of each
 * account's address-of-record to the contacts its devices registered (RFC 3261 10.3), with
 * the flow each device is reached back on (RFC 5626).
 *
 * A binding is identified within its account by a key the registrar computes: the
 * `+sip.instance` and `reg-id` of the Contact when it carries them, else the Contact URI
 * normalised for comparison (RFC 3261 19.1.4). The store compares keys as they are.
 *
 * Several nodes may register the same account at once: `apply` reads the account's bindings,
 * decides the REGISTER's changes with `decideRegistration` (below, pure, shared by both
 * engines) and writes them in one transaction that excludes every other `apply` of the
 * account, so that the Call-ID/CSeq ordering and the limit hold across the cluster.
 *
 * A binding is live while it has not expired and, when it is bound to its flow (see
 * isFlowBound), while the node holding the flow is alive, as IM resources are
 * (src/store/im.ts): such bindings stop counting the moment their node is dead, and go with
 * it (ClusterStore.removeNode, or `removeNode` here). A UDP binding without outbound is not
 * bound to a node: the device is reached at its address from any node, and its registration
 * outlives a restart of the node that took it (whose id may change).
 */

/** Where a device is reached back: the flow its REGISTER came on, held by a node. */
export interface BindingFlow {
  /** udp, tcp, tls, ws, wss (SipEndpoint's transport; udp when it had none). */
  transport: string;
  /** The source address and port of the REGISTER. */
  host: string;
  port: number;
  /** The connection id the transport gave (stream transports), else null. */
  flow: string | null;
  /** The cluster node holding the flow (ClusterNode.id). */
  node: string;
}

export interface Binding extends BindingFlow {
  accountId: number;
  /** What identifies the binding within the account (see the module comment). */
  key: string;
  /** The Contact URI as sent. */
  contact: string;
  /**
   * The Contact's header parameters other than `expires` and `q`, written back
   * (`;+sip.instance="<urn:uuid:...>";reg-id=1`), '' when none: the 200 lists them, and a
   * call engine reads the device's feature tags from them.
   */
  contactParams: string;
  /** The `+sip.instance` value (RFC 5626 4.1), without its quotes; null when absent. */
  instance: string | null;
  /** The `reg-id` (RFC 5626 4.2) when outbound applies to this binding; null otherwise. */
  regId: number | null;
  callId: string;
  cseq: number;
  /** ms since the epoch: the binding is live until then (exclusive). */
  expires: number;
  /** The `q` parameter in thousandths (0..1000); null when the Contact had none. */
  q: number | null;
  /** RFC 5626: requests to this device must go over its flow (`node`, `flow`, `host`, `port`). */
  outbound: boolean;
  /** The Path header values of the REGISTER (RFC 3327), in order: the route back to the device. */
  path: string[];
  /** The User-Agent header ('' when none). */
  userAgent: string;
  /** ms: when the binding was last written. */
  updated: number;
}

/** One Contact of a REGISTER, as the registrar read it. */
export interface ContactChange {
  key: string;
  contact: string;
  contactParams: string;
  instance: string | null;
  regId: number | null;
  /** Seconds granted; 0 removes the binding. */
  expires: number;
  q: number | null;
  outbound: boolean;
}

/** A REGISTER's changes to one account's bindings. */
export interface RegisterChange {
  accountId: number;
  callId: string;
  cseq: number;
  /** `Contact: *` with `Expires: 0`: every binding goes (RFC 3261 10.3 step 6). */
  removeAll: boolean;
  /** In the order of the request; a later Contact with an earlier one's key wins. */
  contacts: ContactChange[];
  source: BindingFlow;
  path: string[];
  userAgent: string;
}

export type RegisterOutcome =
  | {
      outcome: 'ok';
      /** The account's live bindings after the change, in locate order (see orderBindings). */
      bindings: Binding[];
      added: Binding[];
      /** Bindings refreshed or replaced (their state after the change). */
      updated: Binding[];
      /** Bindings removed (their state before). */
      removed: Binding[];
    }
  /** A binding of the same Call-ID has a CSeq not below the request's: nothing changed (RFC 3261 10.3 step 6 and 7). */
  | { outcome: 'out-of-order'; contact: string }
  /** The change would leave the account more than `limit` bindings: nothing changed. */
  | { outcome: 'too-many'; limit: number };

export interface RegistrationStore {
  /**
   * Applies a REGISTER's changes (decideRegistration on the account's live bindings at
   * `now`) in one transaction that excludes every other apply of the same account, on every
   * node; rows no longer live (expired, or flow-bound on a dead node) count as absent and are replaced
   * by a binding of their key. NotFoundError from store.ts when the account is gone.
   */
  apply(change: RegisterChange, now: number, maxBindings: number): Promise<RegisterOutcome>;
  /** The account's live bindings at `now`, in locate order. */
  list(accountId: number, now: number): Promise<Binding[]>;
  /** Live bindings of every account at `now` (the gauge). */
  count(now: number): Promise<number>;
  /**
   * Removes up to `limit` bindings expired at `now` (expires <= now) and answers them. Safe on
   * several nodes at once: each row is removed, and answered, by one of them only.
   */
  sweep(now: number, limit: number): Promise<Binding[]>;
  /** Removes every flow-bound binding (isFlowBound) whose flow `node` holds (it stopped or died); answers the accounts that had some, by id. */
  removeNode(node: string): Promise<number[]>;
}

/**
 * Whether a binding can only be reached through the node that holds its flow: an outbound
 * flow (RFC 5626), or a connection (every transport but UDP: a TCP, TLS or WebSocket
 * connection ends with its node).
 */
export function isFlowBound(binding: Pick<Binding, 'outbound' | 'transport'>): boolean {
  return binding.outbound || binding.transport !== 'udp';
}

/** Locate order: the highest q first (a Contact without q counts as 1, RFC 3261 leaves it open), then the most recent. */
export function orderBindings(bindings: readonly Binding[]): Binding[] {
  return [...bindings].sort((a, b) => (b.q ?? 1000) - (a.q ?? 1000) || b.updated - a.updated || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * RFC 3261 10.3 steps 6 and 7 (with RFC 5626's keys) on an account's live bindings:
 * - `*` removes every binding, unless one has the request's Call-ID and a CSeq not below it;
 * - a Contact whose key has a binding replaces it (its Call-ID differs, or its CSeq is
 *   higher), or removes it when its expiry is 0; a same Call-ID with a CSeq not higher
 *   aborts the whole request;
 * - a Contact without a binding adds one, unless its expiry is 0.
 * All or nothing: an abort or a result above `maxBindings` (only when the change adds
 * bindings: an account over a lowered limit may still refresh and remove) changes nothing.
 */
export function decideRegistration(current: readonly Binding[], change: RegisterChange, now: number, maxBindings: number): RegisterOutcome {
  const byKey = new Map(current.map((b) => [b.key, b]));
  const stale = (existing: Binding): boolean => existing.callId === change.callId && change.cseq <= existing.cseq;
  if (change.removeAll) {
    const blocking = current.find(stale);
    if (blocking) return { outcome: 'out-of-order', contact: blocking.contact };
    return { outcome: 'ok', bindings: [], added: [], updated: [], removed: [...current] };
  }
  const result = new Map(byKey);
  for (const contact of change.contacts) {
    const existing = byKey.get(contact.key);
    if (existing && stale(existing)) return { outcome: 'out-of-order', contact: existing.contact };
    if (contact.expires === 0) result.delete(contact.key);
    else result.set(contact.key, toBinding(change, contact, now));
  }
  const added = [...result.values()].filter((b) => !byKey.has(b.key));
  if (added.length > 0 && result.size > maxBindings) return { outcome: 'too-many', limit: maxBindings };
  return {
    outcome: 'ok',
    bindings: orderBindings([...result.values()]),
    added,
    updated: [...result.values()].filter((b) => byKey.has(b.key) && byKey.get(b.key) !== b),
    removed: current.filter((b) => !result.has(b.key)),
  };
}

function toBinding(change: RegisterChange, contact: ContactChange, now: number): Binding {
  return {
    accountId: change.accountId,
    key: contact.key,
    contact: contact.contact,
    contactParams: contact.contactParams,
    instance: contact.instance,
    regId: contact.regId,
    callId: change.callId,
    cseq: change.cseq,
    expires: now + contact.expires * 1000,
    q: contact.q,
    outbound: contact.outbound,
    ...change.source,
    path: [...change.path],
    userAgent: change.userAgent,
    updated: now,
  };
}

/** A binding as both engines store it (booleans as numbers on SQLite; path as a JSON array). */
export interface BindingRow {
  account_id: number;
  binding_key: string;
  contact: string;
  contact_params: string;
  instance: string | null;
  reg_id: number | null;
  call_id: string;
  cseq: number;
  expires: number;
  q: number | null;
  transport: string;
  host: string;
  port: number;
  flow: string | null;
  node: string;
  outbound: number | boolean;
  path: string;
  user_agent: string;
  updated: number;
}

export const BINDING_COLUMNS =
  'account_id, binding_key, contact, contact_params, instance, reg_id, call_id, cseq, expires, q, transport, host, port, flow, node, outbound, path, user_agent, updated';

export function fromBindingRow(row: BindingRow): Binding {
  return {
    accountId: row.account_id,
    key: row.binding_key,
    contact: row.contact,
    contactParams: row.contact_params,
    instance: row.instance,
    regId: row.reg_id,
    callId: row.call_id,
    cseq: row.cseq,
    expires: row.expires,
    q: row.q,
    transport: row.transport,
    host: row.host,
    port: row.port,
    flow: row.flow,
    node: row.node,
    outbound: Boolean(row.outbound),
    path: JSON.parse(row.path) as string[],
    userAgent: row.user_agent,
    updated: row.updated,
  };
}

/** The values of a binding in BINDING_COLUMNS order (`outbound` as the engine's boolean). */
export function bindingValues(b: Binding, outbound: (value: boolean) => number | boolean): (string | number | boolean | null)[] {
  return [
    b.accountId,
    b.key,
    b.contact,
    b.contactParams,
    b.instance,
    b.regId,
    b.callId,
    b.cseq,
    b.expires,
    b.q,
    b.transport,
    b.host,
    b.port,
    b.flow,
    b.node,
    outbound(b.outbound),
    JSON.stringify(b.path),
    b.userAgent,
    b.updated,
  ];
}
