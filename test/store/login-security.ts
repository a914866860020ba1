/**
 * Store contract cases of login security (src/store/login-security.ts): the TOTP state with
 * its one-use time steps and recovery codes, and application passwords with their limit,
 * on both engines; two handles stand for two processes sharing the store.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { it, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;

export function loginSecurityContract(fresh: FreshStore): void {
  describe('login security', () => {
    const c = useStore(fresh);

    it('two-factor: on with a secret and codes, off again; nothing for another account', async () => {
      const a = await c.account();
      const b = await c.account();
      assert.equal(await c.store.twoFactor.get(a.id), undefined);
      assert.equal(await c.store.twoFactor.enable(a.id, 'sealed-1', 100, ['h1', 'h2', 'h3'], T), 'enabled');
      assert.deepEqual(await c.store.twoFactor.get(a.id), { accountId: a.id, secret: 'sealed-1', enabled: T, lastStep: 100 });
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 3);
      assert.equal(await c.store.twoFactor.get(b.id), undefined);
      // Enabled again while on (a stale enrolment): nothing changes.
      assert.equal(await c.store.twoFactor.enable(a.id, 'sealed-2', 200, ['h4'], T + 1), 'on-already');
      assert.deepEqual(await c.store.twoFactor.get(a.id), { accountId: a.id, secret: 'sealed-1', enabled: T, lastStep: 100 });
      assert.equal(await c.store.twoFactor.useRecoveryCode(a.id, 'h4', T), false);
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 3);
      // Off, then on again: a new secret, the old codes gone.
      assert.equal(await c.store.twoFactor.disable(a.id), true);
      assert.equal(await c.store.twoFactor.enable(a.id, 'sealed-3', 300, ['h5'], T + 2), 'enabled');
      assert.equal((await c.store.twoFactor.get(a.id))?.secret, 'sealed-3');
      assert.equal(await c.store.twoFactor.useRecoveryCode(a.id, 'h1', T), false);
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 1);
      assert.equal(await c.store.twoFactor.disable(a.id), true);
      assert.equal(await c.store.twoFactor.disable(a.id), false);
      assert.equal(await c.store.twoFactor.get(a.id), undefined);
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 0);
      assert.equal(await c.store.twoFactor.enable(987_654_321, 's', 0, [], T), 'no-account');
    });

    it('two-factor: concurrent enrolments of one account: one turns it on, with its own recovery codes only', async () => {
      const a = await c.account();
      const outcomes = await Promise.all(
        ['p', 'q', 'r', 's'].map((x) => c.store.twoFactor.enable(a.id, `sealed-${x}`, 1, [`${x}1`, `${x}2`], T)),
      );
      assert.deepEqual(outcomes.filter((o) => o === 'enabled').length, 1, JSON.stringify(outcomes));
      assert.ok(outcomes.every((o) => o === 'enabled' || o === 'on-already'), JSON.stringify(outcomes));
      const winner = ['p', 'q', 'r', 's'][outcomes.indexOf('enabled')]!;
      assert.equal((await c.store.twoFactor.get(a.id))?.secret, `sealed-${winner}`);
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 2);
      for (const x of ['p', 'q', 'r', 's']) assert.equal(await c.store.twoFactor.useRecoveryCode(a.id, `${x}1`, T), x === winner);
    });

    it('a time step is taken once, only later ones after it, by one of two processes', async () => {
      const a = await c.account();
      await c.store.twoFactor.enable(a.id, 'sealed', 10, [], T);
      assert.equal(await c.store.twoFactor.useStep(a.id, 10), false);
      assert.equal(await c.store.twoFactor.useStep(a.id, 9), false);
      const other = await c.open();
      const results = await Promise.all([c.store.twoFactor.useStep(a.id, 11), other.twoFactor.useStep(a.id, 11)]);
      assert.deepEqual(results.sort(), [false, true]);
      assert.equal((await other.twoFactor.get(a.id))?.lastStep, 11);
      assert.equal(await c.store.twoFactor.useStep(a.id, 13), true);
      assert.equal(await c.store.twoFactor.useStep(a.id, 12), false);
    });

    it('a recovery code is used once, by one of two processes', async () => {
      const a = await c.account();
      await c.store.twoFactor.enable(a.id, 'sealed', 0, ['x', 'y'], T);
      const other = await c.open();
      const results = await Promise.all([c.store.twoFactor.useRecoveryCode(a.id, 'x', T), other.twoFactor.useRecoveryCode(a.id, 'x', T)]);
      assert.deepEqual(results.sort(), [false, true]);
      assert.equal(await c.store.twoFactor.useRecoveryCode(a.id, 'nope', T), false);
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 1);
    });

    it('application passwords: added, replaced, listed by name, removed; the limit counts others only', async () => {
      const a = await c.account();
      const record = (name: string, hash: string) => ({ accountId: a.id, name, hash, scram: '{"s":1}', digest: null, created: T });
      assert.equal(await c.store.appPasswords.set(record('phone', 'h1'), 2), 'added');
      assert.equal(await c.store.appPasswords.set(record('Mail client', 'h2'), 2), 'added');
      assert.equal(await c.store.appPasswords.set(record('third', 'h3'), 2), 'limit');
      assert.equal(await c.store.appPasswords.set(record('phone', 'h4'), 2), 'replaced');
      const list = await c.store.appPasswords.list(a.id);
      assert.deepEqual(
        list.map((p) => [p.name, p.hash, p.scram, p.digest, p.created, p.lastUsed]),
        [
          ['Mail client', 'h2', '{"s":1}', null, T, null],
          ['phone', 'h4', '{"s":1}', null, T, null],
        ],
      );
      assert.equal(await c.store.appPasswords.remove(a.id, 'phone'), true);
      assert.equal(await c.store.appPasswords.remove(a.id, 'phone'), false);
      assert.deepEqual((await c.store.appPasswords.list(a.id)).map((p) => p.name), ['Mail client']);
      assert.equal(await c.store.appPasswords.set({ ...record('x', 'h'), accountId: 987_654_321 }, 5), 'no-account');
    });

    it('two processes adding at the limit: one is refused', async () => {
      const a = await c.account();
      const other = await c.open();
      const record = (name: string) => ({ accountId: a.id, name, hash: 'h', scram: null, digest: null, created: T });
      const results = await Promise.all([c.store.appPasswords.set(record('one'), 1), other.appPasswords.set(record('two'), 1)]);
      assert.deepEqual(results.sort(), ['added', 'limit']);
      assert.equal((await c.store.appPasswords.list(a.id)).length, 1);
    });

    it('a use is recorded, not more often than the granularity; a removal is seen by the other process', async () => {
      const a = await c.account();
      await c.store.appPasswords.set({ accountId: a.id, name: 'dav', hash: 'h', scram: null, digest: '{"d":1}', created: T }, 5);
      await c.store.appPasswords.touch(a.id, 'dav', T + 1000, 60_000);
      await c.store.appPasswords.touch(a.id, 'dav', T + 2000, 60_000);
      assert.equal((await c.store.appPasswords.list(a.id))[0]?.lastUsed, T + 1000);
      await c.store.appPasswords.touch(a.id, 'dav', T + 70_000, 60_000);
      const other = await c.open();
      assert.equal((await other.appPasswords.list(a.id))[0]?.lastUsed, T + 70_000);
      await c.store.appPasswords.remove(a.id, 'dav');
      assert.deepEqual(await other.appPasswords.list(a.id), []);
    });

    it('everything goes with the account', async () => {
      const a = await c.account();
      await c.store.twoFactor.enable(a.id, 'sealed', 0, ['x'], T);
      await c.store.appPasswords.set({ accountId: a.id, name: 'p', hash: 'h', scram: null, digest: null, created: T }, 5);
      await c.store.accounts.remove(a.id);
      assert.equal(await c.store.twoFactor.get(a.id), undefined);
      assert.equal(await c.store.twoFactor.recoveryCodesLeft(a.id), 0);
      assert.deepEqual(await c.store.appPasswords.list(a.id), []);
    });
  });
}
