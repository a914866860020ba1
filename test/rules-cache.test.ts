/**
 * ActiveRules: the rules delivery and the call engine run are read from the store once and kept
 * until the bus says they changed — on this node or another one sharing the store.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventBus } from '../src/bus/bus.js';
import { ActiveRules } from '../src/services/rules/active-rules.js';
import type { ChangeRelay } from '../src/store/store.js';
import type { RuleRecord } from '../src/store/rules.js';

/** Two processes' buses joined as the store's relay joins them (PostgreSQL NOTIFY in a cluster). */
function sharedRelay(): () => ChangeRelay {
  const listeners = new Set<(message: string) => void>();
  return () => ({
    send: async (message) => {
      for (const listener of listeners) queueMicrotask(() => listener(message));
    },
    listen: async (onMessage) => {
      listeners.add(onMessage);
      return async () => void listeners.delete(onMessage);
    },
  });
}

function rule(name: string, priority: number): RuleRecord {
  return { type: 'signalIn', name, priority, stage: null, conditions: [], actions: [], comment: null };
}

/** A rule store that counts its reads; `gate` holds a read until released. */
function countingStore(rules: Map<string, RuleRecord[]>) {
  const store = {
    reads: 0,
    gate: undefined as Promise<void> | undefined,
    async list(accountId: number, type: string): Promise<RuleRecord[]> {
      store.reads++;
      const found = (rules.get(`${accountId} ${type}`) ?? []).map((r) => ({ ...r }));
      if (store.gate) await store.gate;
      return found;
    },
  };
  return store;
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('rules are read once, and again after a change published on another node', async () => {
  const relay = sharedRelay();
  const here = new EventBus(relay());
  const there = new EventBus(relay());
  await here.listen();
  await there.listen();
  const rules = new Map([['7 signalIn', [rule('busy', 5), rule('off', 0)]]]);
  const store = countingStore(rules);
  const active = new ActiveRules(store, here);
  assert.deepEqual((await active.of(7, 'signalIn')).map((r) => r.name), ['busy'], 'inactive rules (priority 0) are left out');
  await active.of(7, 'signalIn');
  assert.equal(store.reads, 1, 'the second read is served from what is kept');

  rules.set('7 signalIn', [rule('forward', 6)]);
  there.publish('rulesChanged', { accountId: 7, type: 'signalIn' });
  await settle();
  assert.deepEqual((await active.of(7, 'signalIn')).map((r) => r.name), ['forward']);
  assert.equal(store.reads, 2);

  // Another set of the account, and another account, are kept as they were.
  await active.of(7, 'mailIn');
  await active.of(8, 'signalIn');
  there.publish('rulesChanged', { accountId: 8, type: 'signalIn' });
  await settle();
  await active.of(7, 'mailIn');
  await active.of(7, 'signalIn');
  assert.equal(store.reads, 4);
  active.close();
});

test('a read that started before a change is not kept', async () => {
  const bus = new EventBus();
  const rules = new Map([['1 mailIn', [rule('old', 5)]]]);
  const store = countingStore(rules);
  const active = new ActiveRules(store, bus);
  let release!: () => void;
  store.gate = new Promise((resolve) => (release = resolve));
  const reading = active.of(1, 'mailIn');
  // The change commits and is published while the read above is under way.
  rules.set('1 mailIn', [rule('new', 5)]);
  bus.publish('rulesChanged', { accountId: 1, type: 'mailIn' });
  release();
  store.gate = undefined;
  assert.deepEqual((await reading).map((r) => r.name), ['old'], 'the read in flight returns what it read');
  assert.deepEqual((await active.of(1, 'mailIn')).map((r) => r.name), ['new'], 'but it was not kept');
  assert.equal(store.reads, 2);
  active.close();
});

test('an account removed, a resync, and the bound on kept sets', async () => {
  const bus = new EventBus();
  const store = countingStore(new Map());
  const active = new ActiveRules(store, bus, 2);
  await active.of(1, 'mailIn');
  await active.of(1, 'signalIn');
  bus.publish('accountRemoved', { accountId: 1 });
  await active.of(1, 'mailIn');
  await active.of(1, 'signalIn');
  assert.equal(store.reads, 4, 'both sets of the removed account are read again');

  // Only two sets are kept: a third pushes out the least recently used (1 mailIn).
  await active.of(2, 'mailIn');
  await active.of(1, 'signalIn');
  await active.of(1, 'mailIn');
  assert.equal(store.reads, 6);

  // resync is local: events may have been missed, so everything is read again.
  (bus as unknown as { deliver(topic: 'resync', event: Record<string, never>, remote: boolean): void }).deliver('resync', {}, true);
  await active.of(1, 'mailIn');
  assert.equal(store.reads, 7);
  active.close();
});
