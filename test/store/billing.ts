/**
 * Store contract cases of the account balances (src/store/billing.ts), on both engines: posts
 * and the balance they leave, the floor (no overdraft) and the ceiling, idempotency keys (a
 * repeat changes nothing; a key reused for another amount is refused), balances per currency,
 * history newest first with paging, an unknown account, the account's removal, and two
 * handles (two processes, as far as the store can tell) debiting one balance at once.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { LedgerWrite } from '../../src/store/billing.js';
import { NotFoundError } from '../../src/store/store.js';
import { it, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;
const CEILING = 1_000_000_000_000;

function write(accountId: number, amount: number, fields: Partial<LedgerWrite> = {}): LedgerWrite {
  return { accountId, currency: 'USD', amount, reason: 'test', actor: 'cli', time: T, key: null, floor: 0, ceiling: CEILING, ...fields };
}

export function billingContract(fresh: FreshStore): void {
  describe('billing', () => {
    const c = useStore(fresh);

    it('a credit and a debit: the balance is the sum of the entries; the entry is as written', async () => {
      const a = await c.account();
      const b = c.store.billing;
      assert.equal(await b.balance(a.id, 'USD'), 0, 'no entries: 0');
      const credit = await b.post(write(a.id, 1500, { reason: 'top-up', actor: 'postmaster@x.test', time: T + 1 }));
      assert.equal(credit.outcome, 'posted');
      assert.ok(credit.outcome === 'posted');
      assert.equal(credit.balance, 1500);
      assert.deepEqual({ ...credit.entry, id: 0 }, { id: 0, accountId: a.id, currency: 'USD', amount: 1500, reason: 'top-up', actor: 'postmaster@x.test', time: T + 1, key: null });
      const debit = await b.post(write(a.id, -400, { time: T + 2 }));
      assert.ok(debit.outcome === 'posted');
      assert.equal(debit.balance, 1100);
      assert.ok(debit.entry.id > credit.entry.id, 'ids grow');
      assert.equal(await b.balance(a.id, 'USD'), 1100);
    });

    it('a debit below the floor is refused and changes nothing; no floor allows an overdraft', async () => {
      const a = await c.account();
      const b = c.store.billing;
      await b.post(write(a.id, 100));
      assert.deepEqual(await b.post(write(a.id, -101)), { outcome: 'insufficient', balance: 100 });
      assert.equal(await b.balance(a.id, 'USD'), 100);
      assert.equal((await b.history(a.id, { limit: 10 })).length, 1, 'no entry for the refused debit');
      const exact = await b.post(write(a.id, -100));
      assert.equal(exact.outcome, 'posted', 'down to exactly the floor');
      const over = await b.post(write(a.id, -50, { floor: null }));
      assert.ok(over.outcome === 'posted');
      assert.equal(over.balance, -50);
      assert.deepEqual(await b.post(write(a.id, 10, { floor: 0 })), { outcome: 'posted', entry: (await b.history(a.id, { limit: 1 }))[0] ?? assert.fail(), balance: -40 }, 'a credit is never refused for the floor');
    });

    it('a credit above the ceiling is refused and changes nothing', async () => {
      const a = await c.account();
      const b = c.store.billing;
      await b.post(write(a.id, 900, { ceiling: 1000 }));
      assert.deepEqual(await b.post(write(a.id, 101, { ceiling: 1000 })), { outcome: 'ceiling', balance: 900 });
      assert.equal((await b.post(write(a.id, 100, { ceiling: 1000 }))).outcome, 'posted');
      assert.equal(await b.balance(a.id, 'USD'), 1000);
    });

    it('an idempotency key: a repeat answers the first entry and posts nothing; another amount with it is a conflict; keys are per account', async () => {
      const a = await c.account();
      const other = await c.account();
      const b = c.store.billing;
      const first = await b.post(write(a.id, 700, { key: 'k-1' }));
      assert.ok(first.outcome === 'posted');
      const again = await b.post(write(a.id, 700, { key: 'k-1', time: T + 5, reason: 'retried' }));
      assert.deepEqual(again, { outcome: 'duplicate', entry: first.entry, balance: 700 });
      const conflict = await b.post(write(a.id, 800, { key: 'k-1' }));
      assert.deepEqual(conflict, { outcome: 'key-conflict', entry: first.entry, balance: 700 });
      const otherCurrency = await b.post(write(a.id, 700, { key: 'k-1', currency: 'EUR' }));
      assert.equal(otherCurrency.outcome, 'key-conflict', 'the same amount in another currency is another entry');
      // A repeated debit that would now be refused for funds is still just the duplicate.
      const debit = await b.post(write(a.id, -700, { key: 'k-2' }));
      assert.equal(debit.outcome, 'posted');
      assert.equal((await b.post(write(a.id, -700, { key: 'k-2' }))).outcome, 'duplicate');
      assert.equal(await b.balance(a.id, 'USD'), 0);
      assert.equal((await b.post(write(other.id, 5, { key: 'k-1' }))).outcome, 'posted', 'another account has its own keys');
      assert.equal((await b.history(a.id, { limit: 10 })).length, 2);
    });

    it('balances per currency, and history newest first, by currency, paged with before', async () => {
      const a = await c.account();
      const b = c.store.billing;
      assert.deepEqual(await b.balances(a.id), []);
      for (let i = 1; i <= 5; i++) await b.post(write(a.id, i * 10, { time: T + i, reason: `usd ${i}` }));
      await b.post(write(a.id, 3, { currency: 'EUR', reason: 'eur' }));
      await b.post(write(a.id, -1, { currency: 'EUR', reason: 'eur debit' }));
      assert.deepEqual(await b.balances(a.id), [
        { currency: 'EUR', amount: 2, entries: 2 },
        { currency: 'USD', amount: 150, entries: 5 },
      ]);
      const all = await b.history(a.id, { limit: 100 });
      assert.deepEqual(all.map((e) => e.reason), ['eur debit', 'eur', 'usd 5', 'usd 4', 'usd 3', 'usd 2', 'usd 1']);
      const usd = await b.history(a.id, { currency: 'USD', limit: 2 });
      assert.deepEqual(usd.map((e) => e.amount), [50, 40]);
      const next = await b.history(a.id, { currency: 'USD', limit: 2, before: usd[1]!.id });
      assert.deepEqual(next.map((e) => e.amount), [30, 20]);
      assert.deepEqual(await b.history(a.id, { currency: 'GBP', limit: 10 }), []);
    });

    it('names and keys with any characters (a NUL too) come back as written', async () => {
      const a = await c.account();
      const b = c.store.billing;
      const odd = 'a\u0000b\uffffc';
      const posted = await b.post(write(a.id, 1, { currency: odd, reason: odd, key: odd }));
      assert.ok(posted.outcome === 'posted');
      const [entry] = await b.history(a.id, { limit: 1 });
      assert.deepEqual(entry, posted.entry);
      assert.equal((await b.post(write(a.id, 1, { currency: odd, key: odd }))).outcome, 'duplicate');
      assert.deepEqual(await b.balances(a.id), [{ currency: odd, amount: 1, entries: 1 }]);
    });

    it('an account that is not there: NotFoundError; a removed account takes its ledger along', async () => {
      const a = await c.account();
      const b = c.store.billing;
      await b.post(write(a.id, 10));
      assert.equal(await c.store.accounts.remove(a.id), true);
      await assert.rejects(b.post(write(a.id, 10)), NotFoundError);
      assert.deepEqual(await b.history(a.id, { limit: 10 }), []);
      assert.equal(await b.balance(a.id, 'USD'), 0);
    });

    it('two handles debiting one balance at once never overdraw it', async () => {
      const a = await c.account();
      const h1 = await c.open();
      const h2 = await c.open();
      await h1.billing.post(write(a.id, 1000));
      const debits = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? h1 : h2).billing.post(write(a.id, -100, { key: `d-${i}` })));
      const outcomes = (await Promise.all(debits)).map((r) => r.outcome);
      assert.equal(outcomes.filter((o) => o === 'posted').length, 10, outcomes.join(' '));
      assert.equal(outcomes.filter((o) => o === 'insufficient').length, 20);
      assert.equal(await h2.billing.balance(a.id, 'USD'), 0);
    });

    it('two handles posting one key at once post it once', async () => {
      const a = await c.account();
      const h1 = await c.open();
      const h2 = await c.open();
      const results = await Promise.all([h1, h2, h1, h2].map((h) => h.billing.post(write(a.id, 250, { key: 'same' }))));
      assert.deepEqual(results.map((r) => r.outcome).sort(), ['duplicate', 'duplicate', 'duplicate', 'posted']);
      assert.equal(await h1.billing.balance(a.id, 'USD'), 250);
    });
  });
}
