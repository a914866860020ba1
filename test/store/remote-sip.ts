/**
 * Store contract cases of the remote SIP registrations (src/store/remote-sip.ts), on both
 * engines: updates (add, replace, delete, the per-account limit), the Contact user part as a
 * key, leases (renewed by their holder, taken when expired, given up for disabled records, two
 * claimers racing never get the same record), state written only by the holder of the current
 * version, and the records going with their account.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { RemoteSipPut } from '../../src/store/remote-sip.js';
import { it, unique, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;
const MINUTE = 60_000;

function put(name: string, fields: Partial<RemoteSipPut> = {}): RemoteSipPut {
  return {
    name,
    domain: 'sip.example.net',
    proxy: '',
    user: 'alice',
    authName: '',
    password: 'sealed-password',
    expires: 3600,
    enabled: true,
    contactUser: unique('rsip-c'),
    ...fields,
  };
}

export function remoteSipContract(fresh: FreshStore): void {
  describe('remote SIP registrations', () => {
    const c = useStore(fresh);

    it('update adds, replaces (state cleared, version bumped, Contact kept) and deletes; the limit changes nothing when passed', async () => {
      const a = await c.account();
      const s = c.store.remoteSip;
      assert.equal(await s.update(a.id, { put: [put('one', { contactUser: 'rsip-k1' }), put('two')], remove: [] }, 3), 'ok');
      let list = await s.list(a.id);
      assert.deepEqual(list.map((r) => r.name), ['one', 'two']);
      const one = list[0]!;
      assert.equal(one.version, 1);
      assert.equal(one.enabled, true);
      assert.equal(one.contactUser, 'rsip-k1');
      assert.equal(one.registeredUntil, null);
      const [claimed] = (await s.claim('node-a', T, T + MINUTE, 100)).filter((r) => r.accountId === a.id && r.name === 'one');
      assert.ok(claimed);
      assert.equal(await s.setState(a.id, 'one', 'node-a', 1, { registeredUntil: T + 3600_000, lastAttempt: T, lastError: null }), true);
      assert.equal((await s.list(a.id))[0]!.registeredUntil, T + 3600_000);

      assert.equal(await s.update(a.id, { put: [put('one', { user: 'bob', contactUser: 'rsip-other', expires: 60 })], remove: [] }, 3), 'ok');
      const replaced = (await s.list(a.id))[0]!;
      assert.equal(replaced.user, 'bob');
      assert.equal(replaced.expires, 60);
      assert.equal(replaced.version, 2);
      assert.equal(replaced.contactUser, 'rsip-k1', 'a replaced record keeps its Contact');
      assert.equal(replaced.registeredUntil, null, 'the state is cleared');
      assert.equal(replaced.leaseOwner, 'node-a', 'the holder keeps the lease (it registers the new settings)');
      assert.equal(await s.setState(a.id, 'one', 'node-a', 1, { registeredUntil: T, lastAttempt: T, lastError: null }), false, 'state of the old version is dropped');

      assert.equal(await s.update(a.id, { put: [put('three'), put('four')], remove: [] }, 3), 'limit');
      assert.deepEqual((await s.list(a.id)).map((r) => r.name), ['one', 'two'], 'nothing changed');
      assert.equal(await s.update(a.id, { put: [put('three'), put('four')], remove: ['two'] }, 3), 'ok', 'a removal makes room in the same update');
      list = await s.list(a.id);
      assert.deepEqual(list.map((r) => r.name), ['four', 'one', 'three']);
      assert.equal(await s.update(a.id, { put: [], remove: ['one', 'missing'] }, 3), 'ok');
      assert.deepEqual((await s.list(a.id)).map((r) => r.name), ['four', 'three']);
      assert.equal(await s.byContact('rsip-k1'), undefined, 'the deleted record is no longer found by its Contact');
    });

    it('byContact finds the record of a Contact user part, in any account', async () => {
      const a = await c.account();
      const b = await c.account();
      const s = c.store.remoteSip;
      const key = unique('rsip-find');
      await s.update(a.id, { put: [put('x')], remove: [] }, 5);
      await s.update(b.id, { put: [put('x', { contactUser: key })], remove: [] }, 5);
      const found = await s.byContact(key);
      assert.equal(found?.accountId, b.id);
      assert.equal(found?.name, 'x');
      assert.equal(await s.byContact('rsip-none'), undefined);
    });

    it('leases: the holder renews, another node waits until they expire, then takes them; disabled records are given up', async () => {
      const a = await c.account();
      const s = c.store.remoteSip;
      await s.update(a.id, { put: [put('l1'), put('l2'), put('off', { enabled: false })], remove: [] }, 5);
      const mine = (records: { accountId: number; name: string }[]): string[] => records.filter((r) => r.accountId === a.id).map((r) => r.name).sort();
      const n1 = unique('node-');
      const n2 = unique('node-');
      const t = T + 10 * MINUTE;
      assert.deepEqual(mine(await s.claim(n1, t, t + MINUTE, 1000)), ['l1', 'l2'], 'a disabled record is not claimed');
      assert.deepEqual(mine(await s.claim(n2, t + 1000, t + 1000 + MINUTE, 1000)), [], 'held by n1');
      assert.deepEqual(mine(await s.claim(n1, t + 30_000, t + 30_000 + MINUTE, 1000)), ['l1', 'l2'], 'n1 renews');
      assert.deepEqual(mine(await s.claim(n2, t + MINUTE + 1, t + 2 * MINUTE, 1000)), [], 'renewed: not expired yet');
      // n1 dies: its leases run out and n2 takes them.
      const later = t + 30_000 + MINUTE + 1;
      assert.deepEqual(mine(await s.claim(n2, later, later + MINUTE, 1000)), ['l1', 'l2'], 'taken after expiry');
      assert.equal(await s.setState(a.id, 'l1', n1, 1, { registeredUntil: null, lastAttempt: later, lastError: 'x' }), false, 'the old holder writes nothing');
      assert.equal(await s.setState(a.id, 'l1', n2, 1, { registeredUntil: null, lastAttempt: later, lastError: 'timeout' }), true);
      assert.equal((await s.list(a.id)).find((r) => r.name === 'l1')?.lastError, 'timeout');
      // Disabled while held: the lease is given up at the next claim.
      await s.update(a.id, { put: [put('l2', { enabled: false })], remove: [] }, 5);
      assert.deepEqual(mine(await s.claim(n2, later + 1, later + MINUTE, 1000)), ['l1']);
      assert.equal((await s.list(a.id)).find((r) => r.name === 'l2')?.leaseOwner, null);
      await s.release(a.id, 'l1', n1);
      assert.equal((await s.list(a.id)).find((r) => r.name === 'l1')?.leaseOwner, n2, 'only the holder releases');
      await s.release(a.id, 'l1', n2);
      assert.equal((await s.list(a.id)).find((r) => r.name === 'l1')?.leaseOwner, null);
    });

    it('two nodes claiming at once (two handles) never get the same record, and every record gets one', async () => {
      const a = await c.account();
      const other = await c.open();
      const names = Array.from({ length: 12 }, (_, i) => `race${i}`);
      await c.store.remoteSip.update(a.id, { put: names.map((n) => put(n)), remove: [] }, 20);
      const t = T + 100 * MINUTE;
      for (let round = 0; round < 3; round++) {
        const now = t + round * 10 * MINUTE;
        const [x, y] = await Promise.all([
          c.store.remoteSip.claim(`racer-x${round}`, now, now + MINUTE, 1000),
          other.remoteSip.claim(`racer-y${round}`, now, now + MINUTE, 1000),
        ]);
        const xs = x.filter((r) => r.accountId === a.id).map((r) => r.name);
        const ys = y.filter((r) => r.accountId === a.id).map((r) => r.name);
        assert.equal(xs.filter((n) => ys.includes(n)).length, 0, `round ${round}: both got ${xs.filter((n) => ys.includes(n)).join(', ')}`);
        assert.deepEqual([...xs, ...ys].sort(), [...names].sort(), `round ${round}: every record is held`);
      }
      // The limit: a node takes no more than it is allowed.
      const now = t + 100 * MINUTE;
      const limited = (await c.store.remoteSip.claim('racer-z', now, now + MINUTE, 5)).filter((r) => r.accountId === a.id);
      assert.ok(limited.length <= 5, `${limited.length} claimed`);
    });

    it('the records go with their account', async () => {
      const a = await c.account();
      const key = unique('rsip-gone');
      await c.store.remoteSip.update(a.id, { put: [put('x', { contactUser: key })], remove: [] }, 5);
      await c.store.accounts.remove(a.id);
      assert.equal(await c.store.remoteSip.byContact(key), undefined);
      assert.deepEqual(await c.store.remoteSip.list(a.id), []);
    });
  });
}
