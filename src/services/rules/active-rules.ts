import type { EventBus } from '../../bus/bus.js';
import type { RuleRecord, RuleStore } from '../../store/rules.js';

/** How many accounts' rule sets are kept (the least recently used go first). */
const DEFAULT_MAX_SETS = 10_000;

/**
 * The active rules (priority above 0) of each account's rule sets, as final delivery and the call
 * engine read them for every message and every call: read from the store once, then kept until the
 * bus says the set changed (`rulesChanged`, published by RuleService on whichever node made the
 * change), the account went (`accountRemoved`), or events may have been missed (`resync`). Only
 * read for decisions; changes always go to the store.
 */
export class ActiveRules {
  private readonly sets = new Map<string, readonly RuleRecord[]>();
  /** Bumped by every invalidation: a read that started before one is not kept. */
  private generation = 0;
  private readonly unsubscribe: (() => void)[];

  constructor(
    private readonly store: Pick<RuleStore, 'list'>,
    bus: EventBus,
    private readonly maxSets = DEFAULT_MAX_SETS,
  ) {
    this.unsubscribe = [
      bus.on('rulesChanged', ({ accountId, type }) => this.forget(accountId, type)),
      bus.on('accountRemoved', ({ accountId }) => this.forget(accountId)),
      bus.on('resync', () => this.forget()),
    ];
  }

  close(): void {
    for (const off of this.unsubscribe) off();
    this.sets.clear();
  }

  /** The account's active rules of a set, highest priority first (then by name). */
  async of(accountId: number, type: string): Promise<readonly RuleRecord[]> {
    const key = `${accountId} ${type}`;
    const known = this.sets.get(key);
    if (known !== undefined) {
      // Most recently used last (Map keeps insertion order).
      this.sets.delete(key);
      this.sets.set(key, known);
      return known;
    }
    const generation = this.generation;
    const rules = Object.freeze((await this.store.list(accountId, type)).filter((r) => r.priority > 0));
    if (generation === this.generation) {
      if (this.sets.size >= this.maxSets) this.sets.delete(this.sets.keys().next().value!);
      this.sets.set(key, rules);
    }
    return rules;
  }

  /** Drops what is kept of one set, of every set of an account, or of everything. */
  private forget(accountId?: number, type?: string): void {
    this.generation++;
    if (accountId === undefined) return this.sets.clear();
    if (type !== undefined) {
      this.sets.delete(`${accountId} ${type}`);
      return;
    }
    const prefix = `${accountId} `;
    for (const key of [...this.sets.keys()]) if (key.startsWith(prefix)) this.sets.delete(key);
  }
}
