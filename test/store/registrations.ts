/**
 * Store contract cases of SIP registrations (src/store/registrations.ts), on both engines:
 * RFC 3261 10.3's Call-ID/CSeq ordering and all-or-nothing changes, the binding limit, what
 * counts as live (not expired, on a live node), the expiry sweep and a node's departure; the
 * concurrent cases race two handles on one store (two nodes, as far as the store can tell).
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { Binding, BindingFlow, ContactChange, RegisterChange, RegisterOutcome } from '../../src/store/registrations.js';
import { NotFoundError } from '../../src/store/store.js';
import { it, unique, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;
const ALIVE = T + 10_000_000;

function contact(key: string, fields: Partial<ContactChange> = {}): ContactChange {
  return { key, contact: `sip:${key}@192.0.2.7:5060`, contactParams: '', instance: null, regId: null, expires: 3600, q: null, outbound: false, ...fields };
}

function register(accountId: number, node: string, callId: string, cseq: number, contacts: ContactChange[], fields: Partial<RegisterChange> = {}): RegisterChange {
  // A connection: bound to its node (isFlowBound), as the node-liveness cases need.
  const source: BindingFlow = { transport: 'tcp', host: '192.0.2.7', port: 50600, flow: 'conn-1', node };
  return { accountId, callId, cseq, removeAll: false, contacts, source, path: [], userAgent: 'TestPhone/1.0', ...fields };
}

function ok(outcome: RegisterOutcome): Extract<RegisterOutcome, { outcome: 'ok' }> {
  assert.equal(outcome.outcome, 'ok', JSON.stringify(outcome));
  return outcome as Extract<RegisterOutcome, { outcome: 'ok' }>;
}

const keys = (bindings: readonly Binding[]): string[] => bindings.map((b) => b.key);

export function registrationsContract(fresh: FreshStore): void {
  describe('SIP registrations', () => {
    const c = useStore(fresh);

    async function node(aliveUntil = ALIVE): Promise<string> {
      const id = unique('sip-node-');
      await c.store.cluster.heartbeat({ id, httpUrl: 'http://192.0.2.1:8100', aliveUntil });
      return id;
    }

    it('apply adds bindings with every field kept; list orders them by q, then the most recent', async () => {
      const a = await c.account();
      const n = await node();
      const r = c.store.registrations;
      const full = contact('desk', {
        contact: 'sip:desk@[2001:db8::7]:5070;transport=tcp',
        contactParams: ';+sip.instance="<urn:uuid:00000000-0000-4000-8000-000000000001>";reg-id=1',
        instance: '<urn:uuid:00000000-0000-4000-8000-000000000001>',
        regId: 1,
        q: 500,
        outbound: true,
        expires: 600,
      });
      const source: BindingFlow = { transport: 'tls', host: '[2001:db8::7]', port: 50123, flow: 'conn-42', node: n };
      const first = ok(await r.apply(register(a.id, n, 'call-1', 1, [full], { source, path: ['<sip:edge.test;lr;ob>'] }), T, 10));
      const desk: Binding = {
        accountId: a.id,
        key: 'desk',
        contact: full.contact,
        contactParams: full.contactParams,
        instance: full.instance,
        regId: 1,
        callId: 'call-1',
        cseq: 1,
        expires: T + 600_000,
        q: 500,
        outbound: true,
        ...source,
        path: ['<sip:edge.test;lr;ob>'],
        userAgent: 'TestPhone/1.0',
        updated: T,
      };
      assert.deepEqual(first, { outcome: 'ok', bindings: [desk], added: [desk], updated: [], removed: [] });
      assert.deepEqual(await r.list(a.id, T), [desk]);

      ok(await r.apply(register(a.id, n, 'call-2', 1, [contact('phone', { q: 1000 }), contact('tablet')]), T + 1, 10));
      ok(await r.apply(register(a.id, n, 'call-3', 1, [contact('laptop', { q: 100 })]), T + 2, 10));
      assert.deepEqual(keys(await r.list(a.id, T + 5)), ['phone', 'tablet', 'desk', 'laptop'], 'q 1 and no q first (by key when equal), then 0.5, then 0.1');
      assert.equal((await r.list(a.id, T + 5))[0]!.userAgent, 'TestPhone/1.0');
    });

    it('the same Call-ID needs a higher CSeq, else nothing changes; another Call-ID replaces; expiry 0 removes', async () => {
      const a = await c.account();
      const n = await node();
      const r = c.store.registrations;
      ok(await r.apply(register(a.id, n, 'call-a', 5, [contact('one'), contact('two')]), T, 10));
      const before = await r.list(a.id, T);

      for (const cseq of [5, 4]) {
        const refused = await r.apply(register(a.id, n, 'call-a', cseq, [contact('three'), contact('one', { expires: 60 })]), T + 1, 10);
        assert.deepEqual(refused, { outcome: 'out-of-order', contact: 'sip:one@192.0.2.7:5060' }, `CSeq ${cseq}`);
      }
      assert.deepEqual(await r.list(a.id, T), before, 'nothing changed, not even the new contact');

      const refreshed = ok(await r.apply(register(a.id, n, 'call-a', 6, [contact('one', { expires: 60 })]), T + 2, 10));
      assert.deepEqual(keys(refreshed.updated), ['one']);
      assert.equal(refreshed.updated[0]!.expires, T + 2 + 60_000);
      assert.equal(refreshed.updated[0]!.cseq, 6);

      // A device that restarted: a new Call-ID, its CSeq starting over.
      const rebooted = ok(await r.apply(register(a.id, n, 'call-b', 1, [contact('two', { expires: 120 })]), T + 3, 10));
      assert.deepEqual(keys(rebooted.updated), ['two']);
      assert.equal(rebooted.updated[0]!.callId, 'call-b');

      const removed = ok(await r.apply(register(a.id, n, 'call-a', 7, [contact('one', { expires: 0 }), contact('never', { expires: 0 })]), T + 4, 10));
      assert.deepEqual(keys(removed.removed), ['one']);
      assert.deepEqual(removed.added, []);
      assert.deepEqual(keys(await r.list(a.id, T + 4)), ['two']);
    });

    it('"*" removes every binding, unless one of the same Call-ID has a CSeq not below the request\'s', async () => {
      const a = await c.account();
      const n = await node();
      const r = c.store.registrations;
      ok(await r.apply(register(a.id, n, 'call-a', 10, [contact('one')]), T, 10));
      ok(await r.apply(register(a.id, n, 'call-b', 3, [contact('two')]), T, 10));
      assert.deepEqual(await r.apply(register(a.id, n, 'call-a', 10, [], { removeAll: true }), T + 1, 10), { outcome: 'out-of-order', contact: 'sip:one@192.0.2.7:5060' });
      assert.equal((await r.list(a.id, T + 1)).length, 2);
      const all = ok(await r.apply(register(a.id, n, 'call-a', 11, [], { removeAll: true }), T + 1, 10));
      assert.deepEqual(keys(all.removed).sort(), ['one', 'two']);
      assert.deepEqual(all.bindings, []);
      assert.deepEqual(await r.list(a.id, T + 1), []);
    });

    it('the limit refuses a change that adds past it, all or nothing; refreshes and removals stay allowed above it', async () => {
      const a = await c.account();
      const n = await node();
      const r = c.store.registrations;
      ok(await r.apply(register(a.id, n, 'c1', 1, [contact('one'), contact('two')]), T, 3));
      assert.deepEqual(await r.apply(register(a.id, n, 'c2', 1, [contact('three'), contact('four')]), T, 3), { outcome: 'too-many', limit: 3 });
      assert.deepEqual(keys(await r.list(a.id, T)), ['one', 'two'], 'neither was added');
      ok(await r.apply(register(a.id, n, 'c2', 2, [contact('three'), contact('one', { expires: 0 }), contact('four')]), T, 3));
      assert.deepEqual(keys(await r.list(a.id, T)), ['four', 'three', 'two'].sort());
      // The limit lowered: what is there may be refreshed or removed, nothing added.
      ok(await r.apply(register(a.id, n, 'c2', 3, [contact('three', { expires: 90 })]), T, 1));
      assert.equal((await r.apply(register(a.id, n, 'c2', 4, [contact('five'), contact('two', { expires: 0 })]), T, 1)).outcome, 'too-many');
      ok(await r.apply(register(a.id, n, 'c2', 5, [contact('two', { expires: 0 })]), T, 1));
      assert.deepEqual(keys(await r.list(a.id, T)).sort(), ['four', 'three']);
    });

    it('live means not expired and on a live node; a row no longer live counts as absent and is replaced', async () => {
      const a = await c.account();
      const live = await node();
      const dying = await node(T + 60_000);
      const r = c.store.registrations;
      ok(await r.apply(register(a.id, live, 'c1', 1, [contact('short', { expires: 60 }), contact('long')]), T, 2));
      ok(await r.apply(register(a.id, dying, 'c2', 1, [contact('elsewhere')]), T, 3));
      assert.deepEqual(keys(await r.list(a.id, T)).sort(), ['elsewhere', 'long', 'short']);
      assert.deepEqual(keys(await r.list(a.id, T + 59_999)).sort(), ['elsewhere', 'long', 'short']);
      assert.deepEqual(keys(await r.list(a.id, T + 60_000)).sort(), ['elsewhere', 'long'], 'expired at its expiry');
      assert.deepEqual(keys(await r.list(a.id, T + 60_001)), ['long'], 'the dying node is dead');
      // An expired binding of the same Call-ID and a higher CSeq no longer orders anything.
      ok(await r.apply(register(a.id, live, 'c1', 1, [contact('short', { expires: 60 })]), T + 61_000, 2));
      assert.equal((await r.list(a.id, T + 61_000)).find((b) => b.key === 'short')?.expires, T + 121_000);
      ok(await r.apply(register(a.id, live, 'c3', 1, [contact('elsewhere')]), T + 61_000, 3));
      assert.deepEqual((await r.list(a.id, T + 61_000)).map((b) => [b.key, b.node]).sort(), [['elsewhere', live], ['long', live], ['short', live]]);
      // UDP without outbound is reached from any node: the node's death does not end it.
      const udp: BindingFlow = { transport: 'udp', host: '192.0.2.8', port: 5060, flow: null, node: dying };
      ok(await r.apply(register(a.id, dying, 'c5', 1, [contact('udp-phone'), contact('udp-outbound', { outbound: true, instance: '<urn:uuid:2>', regId: 1 })], { source: udp }), T, 10));
      assert.deepEqual(keys(await r.list(a.id, T + 60_001)).filter((k) => k.startsWith('udp')), ['udp-phone'], 'an outbound flow is bound to its node');
      const unregistered = 'no-such-node';
      ok(await r.apply(register(a.id, unregistered, 'c4', 1, [contact('ghost')]), T, 10));
      assert.equal((await r.list(a.id, T)).some((b) => b.key === 'ghost'), false, 'a node not registered is not alive');
      await assert.rejects(r.apply(register(999_999_999, live, 'c', 1, [contact('x')]), T, 10), NotFoundError);
    });

    it('count counts the live bindings of every account', async () => {
      const r = c.store.registrations;
      const [now, later] = [await r.count(T), await r.count(T + 60_000)];
      const a = await c.account();
      const b = await c.account();
      const n = await node();
      ok(await r.apply(register(a.id, n, 'c', 1, [contact('one'), contact('two', { expires: 60 })]), T, 10));
      ok(await r.apply(register(b.id, n, 'c', 1, [contact('one')]), T, 10));
      assert.equal(await r.count(T), now + 3);
      assert.equal(await r.count(T + 60_000), later + 2, 'one expired by then');
    });

    it('sweep removes the bindings expired at `now`, at most `limit`, and answers them; two handles sweeping never both take one', async () => {
      const far = T + 1_000 * DAY;
      const n = await node(far + DAY);
      const r = c.store.registrations;
      // Everything else of this store expired long before `far`; start clean.
      while ((await r.sweep(far, 1000)).length > 0);
      const accounts = [await c.account(), await c.account()];
      for (const [i, a] of accounts.entries()) {
        ok(await r.apply(register(a.id, n, 'c', 1, [contact('short', { expires: 60 }), contact('mid', { expires: 120 }), contact('long', { expires: 7200 })]), far + i, 10));
      }
      assert.deepEqual(await r.sweep(far + 59_999, 10), []);
      const first = await r.sweep(far + 60_000, 1);
      assert.equal(first.length, 1);
      assert.equal(first[0]!.key, 'short');
      const rest = await r.sweep(far + 200_000, 10);
      assert.deepEqual(rest.map((b) => b.key).sort(), ['mid', 'mid', 'short']);
      assert.deepEqual(keys(await r.list(accounts[0]!.id, far + 200_000)), ['long']);

      const h1 = await c.open();
      const h2 = await c.open();
      const many = await c.account();
      ok(await r.apply(register(many.id, n, 'c', 1, Array.from({ length: 20 }, (_, i) => contact(`k${i}`, { expires: 60 }))), far, 50));
      const [one, two] = await Promise.all([h1.registrations.sweep(far + 60_000, 100), h2.registrations.sweep(far + 60_000, 100)]);
      const swept = [...one, ...two].filter((b) => b.accountId === many.id).map((b) => b.key);
      assert.equal(swept.length, 20);
      assert.equal(new Set(swept).size, 20, 'each once');
    });

    it("removeNode removes a node's bindings and answers their accounts; so does the cluster's removeNode", async () => {
      const a = await c.account();
      const b = await c.account();
      const n1 = await node();
      const n2 = await node();
      const r = c.store.registrations;
      ok(await r.apply(register(a.id, n1, 'c1', 1, [contact('one'), contact('two')]), T, 10));
      ok(await r.apply(register(b.id, n1, 'c1', 1, [contact('one')]), T, 10));
      ok(await r.apply(register(a.id, n2, 'c2', 1, [contact('three')]), T, 10));
      const udp: BindingFlow = { transport: 'udp', host: '192.0.2.8', port: 5060, flow: null, node: n1 };
      ok(await r.apply(register(b.id, n1, 'c3', 1, [contact('udp-phone')], { source: udp }), T, 10));
      assert.deepEqual(await r.removeNode(n1), [a.id, b.id].sort((x, y) => x - y));
      assert.deepEqual(keys(await r.list(a.id, T)), ['three']);
      assert.deepEqual(keys(await r.list(b.id, T)), ['udp-phone'], 'not bound to the node: it stays');
      assert.deepEqual(await r.removeNode(n1), []);
      await c.store.cluster.removeNode(n2);
      await c.store.cluster.heartbeat({ id: n2, httpUrl: 'http://192.0.2.1:8100', aliveUntil: ALIVE });
      assert.deepEqual(await r.list(a.id, T), [], 'they went with the node');
    });

    it('two handles registering one account at once: the limit holds, and the Call-ID/CSeq order too', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const n1 = await node();
      const n2 = await node();
      for (let round = 0; round < 3; round++) {
        const a = await c.account();
        const outcomes = await Promise.all(
          Array.from({ length: 8 }, (_, i) => (i % 2 ? h1 : h2).registrations.apply(register(a.id, i % 2 ? n1 : n2, `call-${i}`, 1, [contact(`dev${i}`)]), T, 5)),
        );
        assert.equal(outcomes.filter((o) => o.outcome === 'ok').length, 5, `round ${round}`);
        assert.equal(outcomes.filter((o) => o.outcome === 'too-many').length, 3);
        assert.equal((await c.store.registrations.list(a.id, T)).length, 5);

        // The same binding, the same Call-ID, CSeqs racing: whatever the order, the highest stays.
        const b = await c.account();
        await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? h1 : h2).registrations.apply(register(b.id, n1, 'same-call', i + 1, [contact('dev', { expires: 100 + i })]), T, 5)));
        const [kept] = await c.store.registrations.list(b.id, T);
        assert.equal(kept!.cseq, 6);
        assert.equal(kept!.expires, T + 105_000);
      }
    });
  });
}

const DAY = 86_400_000;
