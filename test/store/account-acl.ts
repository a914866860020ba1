/**
 * Store contract cases of the account ACL module (src/store/*\/account-acl.ts): changes are
 * deltas applied inside the store's transaction, on both engines.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { AccountAclLimitError, NotFoundError } from '../../src/store/store.js';
import { it, useStore, type FreshStore } from './contract.js';

export function accountAclContract(fresh: FreshStore): void {
  describe('account ACL', () => {
    const c = useStore(fresh);

    it('add, sub, set, clear per pattern; sorted list; an entry left empty goes', async () => {
      const a = await c.account();
      const acl = c.store.accountAcl;
      assert.deepEqual(await acl.list(a.id), []);
      let result = await acl.update(a.id, [
        { pattern: 'bob', mode: 'add', rights: 'rw' },
        { pattern: 'anyone', mode: 'set', rights: 'r' },
      ], 100);
      assert.deepEqual(result, [
        { pattern: 'anyone', rights: 'r' },
        { pattern: 'bob', rights: 'rw' },
      ]);
      result = await acl.update(a.id, [{ pattern: 'bob', mode: 'add', rights: 'wa' }], 100);
      assert.deepEqual(result.find((e) => e.pattern === 'bob'), { pattern: 'bob', rights: 'rwa' }, 'add keeps the letters held, each once');
      result = await acl.update(a.id, [{ pattern: 'bob', mode: 'sub', rights: 'r' }], 100);
      assert.deepEqual(result.find((e) => e.pattern === 'bob'), { pattern: 'bob', rights: 'wa' });
      result = await acl.update(a.id, [{ pattern: 'anyone', mode: 'sub', rights: 'r' }], 100);
      assert.deepEqual(result, [{ pattern: 'bob', rights: 'wa' }], 'an entry with no letters left is removed');
      result = await acl.update(a.id, [{ pattern: 'bob', mode: 'clear', rights: '' }, { pattern: '-carol', mode: 'set', rights: 's' }], 100);
      assert.deepEqual(result, [{ pattern: '-carol', rights: 's' }]);
      assert.deepEqual(await acl.list(a.id), result, 'list reads what update answered');
      const b = await c.account();
      assert.deepEqual(await acl.list(b.id), [], 'per account');
    });

    it('a change of a missing account is NotFoundError; the entry limit refuses the whole update', async () => {
      const a = await c.account();
      await assert.rejects(c.store.accountAcl.update(999_999_999, [{ pattern: 'x', mode: 'add', rights: 'r' }], 10), NotFoundError);
      await c.store.accountAcl.update(a.id, [{ pattern: 'p1', mode: 'add', rights: 'r' }], 2);
      await assert.rejects(
        c.store.accountAcl.update(a.id, [
          { pattern: 'p2', mode: 'add', rights: 'r' },
          { pattern: 'p3', mode: 'add', rights: 'r' },
        ], 2),
        AccountAclLimitError,
      );
      assert.deepEqual(await c.store.accountAcl.list(a.id), [{ pattern: 'p1', rights: 'r' }], 'nothing of the refused update was kept');
    });

    it('two handles (processes) adding letters at once both keep theirs', async () => {
      const a = await c.account();
      const other = await c.open();
      const letters = ['r', 'w', 's', 'a'];
      await Promise.all(
        letters.map((letter, i) => (i % 2 === 0 ? c.store : other).accountAcl.update(a.id, [{ pattern: 'bob', mode: 'add', rights: letter }], 100)),
      );
      const [entry] = await c.store.accountAcl.list(a.id);
      assert.equal([...entry!.rights].sort().join(''), 'arsw');
    });

    it('the ACL goes with its account', async () => {
      const a = await c.account();
      await c.store.accountAcl.update(a.id, [{ pattern: 'bob', mode: 'add', rights: 'r' }], 100);
      await c.store.accounts.remove(a.id);
      assert.deepEqual(await c.store.accountAcl.list(a.id), []);
    });
  });
}
