/**
 * A small typed event emitter for the dialog layer's objects (dialogs, client and server
 * calls): each event name has its argument list, so that an owner's listener is checked by
 * the compiler. Listeners run synchronously, in the order added; the emitting object settles
 * its own state before it emits, so a listener that throws leaves nothing half done.
 */
export type EventMap = Record<string, unknown[]>;

export class Emitter<Events extends EventMap> {
  /** Listeners of differing signatures share the map: each is cast back by its event's key. */
  private readonly listeners = new Map<keyof Events, unknown[]>();

  on<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): this {
    const list = this.listeners.get(event) ?? [];
    list.push(listener);
    this.listeners.set(event, list);
    return this;
  }

  off<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): this {
    const list = this.listeners.get(event);
    const index = list?.indexOf(listener) ?? -1;
    if (list !== undefined && index >= 0) list.splice(index, 1);
    return this;
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.length ?? 0;
  }

  protected emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    // A copy: a listener that removes itself does not make the next one skipped.
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      (listener as (...args: Events[K]) => void)(...args);
    }
  }
}
