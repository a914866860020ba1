import type { RosterDecision, RosterItem, Subscription } from '../../store/im.js';

/**
 * RFC 6121's presence subscription model as pure functions of a roster item: what each
 * subscription stanza, sent by the user ("outbound") or received for the user ("inbound"),
 * does to the user's item. The store runs them inside the transaction that reads and writes
 * the item (RosterStore.modify), so that two nodes handling stanzas for the same contact at
 * once never lose one of the changes. `undefined`: the stanza changes nothing (an item equal to
 * the stored one is no change either: the store neither writes it nor bumps the version).
 */

export type SubscriptionType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

export function newItem(jid: string): RosterItem {
  return { jid, name: '', subscription: 'none', ask: false, approved: false, pendingIn: null, groups: [] };
}

const hasTo = (s: Subscription): boolean => s === 'to' || s === 'both';
const hasFrom = (s: Subscription): boolean => s === 'from' || s === 'both';

function withSubscription(to: boolean, from: boolean): Subscription {
  return to ? (from ? 'both' : 'to') : from ? 'from' : 'none';
}

/** The user sends a subscription stanza to `jid` (RFC 6121 3.1.2, 3.2.2, 3.3.2, 3.1.4 pre-approval). */
export function outbound(type: SubscriptionType, jid: string): (item: RosterItem | undefined) => RosterDecision {
  return (current) => {
    const item = current ?? newItem(jid);
    switch (type) {
      case 'subscribe':
        // Asking again while already subscribed changes nothing (the stanza still goes out).
        if (hasTo(item.subscription)) return undefined;
        return { ...item, ask: true };
      case 'subscribed':
        if (item.pendingIn !== null) {
          return { ...item, subscription: withSubscription(hasTo(item.subscription), true), pendingIn: null, approved: false };
        }
        // No request waits: a pre-approval (RFC 6121 3.4), unless the contact may see us already.
        if (hasFrom(item.subscription)) return undefined;
        return { ...item, approved: true };
      case 'unsubscribe':
        if (!current) return undefined;
        return { ...item, subscription: withSubscription(false, hasFrom(item.subscription)), ask: false };
      case 'unsubscribed':
        if (!current) return undefined;
        return { ...item, subscription: withSubscription(hasTo(item.subscription), false), pendingIn: null, approved: false };
    }
  };
}

/**
 * What an outbound subscription stanza must do besides the roster change: whether it is
 * routed to the contact at all (RFC 6121: `subscribed` with nothing pending is a
 * pre-approval, kept locally; `unsubscribe`/`unsubscribed` for an unknown contact still go).
 */
export function outboundIsRouted(type: SubscriptionType, before: RosterItem | undefined): boolean {
  if (type === 'subscribed') return before?.pendingIn !== null && before?.pendingIn !== undefined;
  return true;
}

/**
 * How a subscription stanza from `jid` is handled for the user: the roster decision, and
 * what happens to the stanza: `deliver` to the user's clients, `autoReply` (the server
 * answers `subscribed` itself: the contact may already see the user, or was pre-approved),
 * or `drop`.
 */
export interface InboundOutcome {
  decide: (item: RosterItem | undefined) => RosterDecision;
  /** Decided from the item as it was inside the transaction (see inboundOutcome). */
  action(before: RosterItem | undefined): 'deliver' | 'autoReply' | 'drop';
}

export function inbound(type: SubscriptionType, jid: string, status: string): InboundOutcome {
  switch (type) {
    case 'subscribe':
      return {
        decide: (current) => {
          const item = current ?? newItem(jid);
          if (hasFrom(item.subscription)) return undefined;
          if (item.approved) return { ...item, subscription: withSubscription(hasTo(item.subscription), true), approved: false, pendingIn: null };
          // A request is kept (RFC 6121 3.1.3) even before the contact is on the roster.
          return { ...item, pendingIn: status };
        },
        action: (before) => (before && (hasFrom(before.subscription) || before.approved) ? 'autoReply' : 'deliver'),
      };
    case 'subscribed':
      return {
        decide: (current) => (current?.ask ? { ...current, subscription: withSubscription(true, hasFrom(current.subscription)), ask: false } : undefined),
        action: (before) => (before?.ask ? 'deliver' : 'drop'),
      };
    case 'unsubscribe':
      return {
        decide: (current) =>
          current && (hasFrom(current.subscription) || current.pendingIn !== null)
            ? { ...current, subscription: withSubscription(hasTo(current.subscription), false), pendingIn: null }
            : undefined,
        action: (before) => (before && (hasFrom(before.subscription) || before.pendingIn !== null) ? 'deliver' : 'drop'),
      };
    case 'unsubscribed':
      return {
        decide: (current) =>
          current && (hasTo(current.subscription) || current.ask)
            ? { ...current, subscription: withSubscription(false, hasFrom(current.subscription)), ask: false }
            : undefined,
        action: (before) => (before && (hasTo(before.subscription) || before.ask) ? 'deliver' : 'drop'),
      };
  }
}

/** A roster `set` from the user (name, groups): creates the item with subscription none, keeps the rest. */
export function update(jid: string, name: string, groups: string[]): (item: RosterItem | undefined) => RosterDecision {
  return (current) => ({ ...(current ?? newItem(jid)), name, groups: [...new Set(groups)] });
}

export { hasFrom, hasTo };
