/**
 * The in-process event bus: services publish changes, sessions subscribe. In a cluster the
 * same topics will be carried between nodes (PostgreSQL LISTEN/NOTIFY); nothing that
 * subscribes needs to know.
 */
export interface BusEvents {
  /** An alert was posted for an account. */
  alertPosted: { accountId: number };
  /** An account's password changed. */
  credentialsChanged: { accountId: number };
  /** An account was removed. */
  accountRemoved: { accountId: number };
  /** An account's settings or preferences changed. */
  accountChanged: { accountId: number };
  /** A mailbox of an account was created, removed, renamed, or its messages changed. */
  mailboxChanged: { accountId: number; mailboxId: number | undefined; name: string };
}

type Listener<T> = (event: T) => void;

export class EventBus {
  private listeners = new Map<keyof BusEvents, Set<Listener<never>>>();

  on<K extends keyof BusEvents>(topic: K, listener: Listener<BusEvents[K]>): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  publish<K extends keyof BusEvents>(topic: K, event: BusEvents[K]): void {
    const set = this.listeners.get(topic);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<BusEvents[K]>)(event);
      } catch (err) {
        console.error(`bus listener for ${topic} failed:`, err);
      }
    }
  }
}
