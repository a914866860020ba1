/**
 * Store contract cases of remote mail accounts (src/store/remote-mail.ts), on both engines:
 * put and replace (the fetch state kept for the same remote mailbox, dropped for another),
 * the per-account limit, claims and leases (due records only, one holder, expiry), writes
 * conditional on the lease, POP3 UIDLs and IMAP state, finish and back-off bookkeeping, the
 * account's removal, and two handles (two nodes, as far as the store can tell) racing for one
 * record.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { RemoteMailLimitError, type RemoteMailSettings } from '../../src/store/remote-mail.js';
import { it, unique, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;

function settings(extra: Partial<RemoteMailSettings> = {}): RemoteMailSettings {
  return { host: 'pop.example.test', port: 110, tls: 'none', user: 'alice', sealedPassword: 'v1.sealed', leave: true, interval: 600, mailbox: 'INBOX', ...extra };
}

export function remoteMailContract(fresh: FreshStore): void {
  describe('remote mail', () => {
    const c = useStore(fresh);

    it('put creates, replaces by (account, kind, name), and lists by kind and name', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      assert.equal(await r.put(a.id, 'pop', 'work', settings(), T, 10), 'created');
      assert.equal(await r.put(a.id, 'pop', 'home', settings({ host: 'other.test' }), T, 10), 'created');
      assert.equal(await r.put(a.id, 'imap', 'work', settings({ port: 143 }), T, 10), 'created', 'the same name of another kind');
      assert.equal(await r.put(a.id, 'pop', 'work', settings({ leave: false, interval: 900, mailbox: 'Remote' }), T + 5, 10), 'replaced');
      const pops = await r.list(a.id, 'pop');
      assert.deepEqual(pops.map((p) => p.name), ['home', 'work']);
      const work = pops[1]!;
      assert.equal(work.leave, false);
      assert.equal(work.interval, 900);
      assert.equal(work.mailbox, 'Remote');
      assert.equal(work.nextPoll, T + 5, 'due again when replaced');
      assert.equal(work.sealedPassword, 'v1.sealed');
      assert.equal(work.lastError, null);
      assert.equal(work.lastPoll, null);
      assert.deepEqual((await r.list(a.id, 'imap')).map((p) => [p.name, p.port]), [['work', 143]]);
      assert.equal(await r.remove(a.id, 'pop', 'home'), true);
      assert.equal(await r.remove(a.id, 'pop', 'home'), false);
      assert.equal(await r.get(a.id, 'pop', 'home'), undefined);
      assert.ok(await r.get(a.id, 'imap', 'work'));
    });

    it('the limit counts the records of both kinds; a replacement is not refused by it', async () => {
      const a = await c.account();
      const b = await c.account();
      const r = c.store.remoteMail;
      assert.equal(await r.put(a.id, 'pop', 'one', settings(), T, 2), 'created');
      assert.equal(await r.put(a.id, 'imap', 'two', settings(), T, 2), 'created');
      assert.equal(await r.put(a.id, 'pop', 'three', settings(), T, 2), 'limit');
      assert.equal(await r.get(a.id, 'pop', 'three'), undefined, 'nothing written');
      assert.equal(await r.put(a.id, 'pop', 'one', settings({ port: 995, tls: 'tls' }), T, 2), 'replaced');
      assert.equal(await r.put(b.id, 'pop', 'three', settings(), T, 2), 'created', 'another account has its own');
    });

    it('claims only due records nobody holds; a lease is held until it expires or the poll finishes', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'due', settings(), T, 10);
      await r.put(a.id, 'imap', 'later', settings(), T + 1000, 10);
      const n1 = unique('node-');
      const n2 = unique('node-');
      const claimed = (await r.claimDue(T, 100, { owner: n1, until: T + 100 })).filter((x) => x.accountId === a.id);
      assert.deepEqual(claimed.map((x) => x.name), ['due']);
      assert.equal(claimed[0]!.leaseOwner, n1);
      const id = claimed[0]!.id;
      assert.equal((await r.claimDue(T + 50, 100, { owner: n2, until: T + 200 })).filter((x) => x.accountId === a.id).length, 0, 'held');
      assert.equal(await r.renewLease(id, { owner: n2, until: T + 500 }), false, 'only the holder renews');
      assert.equal(await r.renewLease(id, { owner: n1, until: T + 150 }), true);
      assert.equal(await r.nextDue(T + 60) !== undefined, true);
      // The lease runs out: another node takes the record; the first one's writes are refused.
      const taken = (await r.claimDue(T + 150, 100, { owner: n2, until: T + 400 })).filter((x) => x.accountId === a.id);
      assert.deepEqual(taken.map((x) => x.id), [id]);
      assert.equal(await r.markSeen(id, n1, 'u1', T), false);
      assert.equal(await r.setImapState(id, n1, 7, 9), false);
      assert.equal(await r.finish(id, n1, { time: T, nextPoll: T + 600, error: null }), false);
      assert.equal(await r.renewLease(id, { owner: n1, until: T + 900 }), false);
      assert.equal((await r.seen(id)).size, 0, 'nothing recorded for the loser');
      // The holder finishes: the lease is gone, the next poll is set.
      assert.equal(await r.finish(id, n2, { time: T + 160, nextPoll: T + 10_000, error: 'connection refused' }), true);
      const after = (await r.get(a.id, 'pop', 'due'))!;
      assert.equal(after.leaseOwner, null);
      assert.equal(after.lastError, 'connection refused');
      assert.equal(after.failures, 1);
      assert.equal(after.lastPoll, T + 160);
      assert.equal(after.nextPoll, T + 10_000);
      assert.equal((await r.claimDue(T + 9_999, 100, { owner: n1, until: T + 20_000 })).filter((x) => x.accountId === a.id && x.name === 'due').length, 0, 'not due yet');
      // A replacement while a poll runs: the poll loses its lease, the record is due at once.
      const [held] = (await r.claimDue(T + 10_000, 100, { owner: n1, until: T + 20_000 })).filter((x) => x.accountId === a.id && x.name === 'due');
      assert.ok(held);
      assert.equal(await r.put(a.id, 'pop', 'due', settings({ interval: 60 }), T + 10_001, 10), 'replaced');
      assert.equal(await r.markSeen(id, n1, 'late', T), false, 'the old poll records nothing');
      assert.equal(await r.finish(id, n1, { time: T + 10_002, nextPoll: T + 99_999, error: 'stale' }), false);
      const fresh = (await r.get(a.id, 'pop', 'due'))!;
      assert.deepEqual([fresh.leaseOwner, fresh.nextPoll, fresh.lastError], [null, T + 10_001, null]);
    });

    it('failures count up and a success resets them', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'x', settings(), T, 10);
      const owner = unique('node-');
      for (let i = 1; i <= 3; i++) {
        const [rec] = (await r.claimDue(T + i * 1000, 100, { owner, until: T + i * 1000 + 100 })).filter((x) => x.accountId === a.id);
        assert.ok(rec, `claim ${i}`);
        assert.equal(await r.finish(rec.id, owner, { time: T + i * 1000, nextPoll: T + i * 1000 + 1, error: `failed ${i}` }), true);
      }
      assert.equal((await r.get(a.id, 'pop', 'x'))!.failures, 3);
      const [rec] = (await r.claimDue(T + 5000, 100, { owner, until: T + 5100 })).filter((x) => x.accountId === a.id);
      assert.equal(await r.finish(rec!.id, owner, { time: T + 5000, nextPoll: T + 6000, error: null }), true);
      const ok = (await r.get(a.id, 'pop', 'x'))!;
      assert.equal(ok.failures, 0);
      assert.equal(ok.lastError, null);
    });

    it('POP3 UIDLs and IMAP state: recorded by the holder, pruned, kept by a replacement of the same remote mailbox, dropped for another', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'p', settings(), T, 10);
      await r.put(a.id, 'imap', 'i', settings({ port: 143 }), T, 10);
      const owner = unique('node-');
      const mine = (await r.claimDue(T, 100, { owner, until: T + 1000 })).filter((x) => x.accountId === a.id);
      const pop = mine.find((x) => x.kind === 'pop')!;
      const imap = mine.find((x) => x.kind === 'imap')!;
      for (const uidl of ['a1', 'b2', 'c3']) assert.equal(await r.markSeen(pop.id, owner, uidl, T), true);
      assert.equal(await r.markSeen(pop.id, owner, 'a1', T), true, 'again: no error');
      assert.deepEqual([...(await r.seen(pop.id))].sort(), ['a1', 'b2', 'c3']);
      const now = { misses: 1, ageMs: 0 };
      assert.equal(await r.pruneSeen(pop.id, owner, ['b2', 'c3', 'zz'], T, now), true);
      assert.deepEqual([...(await r.seen(pop.id))].sort(), ['b2', 'c3']);
      assert.equal(await r.setImapState(imap.id, owner, 12345, 42), true);
      assert.deepEqual(((x) => [x.uidValidity, x.lastUid])((await r.get(a.id, 'imap', 'i'))!), [12345, 42]);
      await r.finish(pop.id, owner, { time: T, nextPoll: T + 1, error: null });
      await r.finish(imap.id, owner, { time: T, nextPoll: T + 1, error: null });

      // The same remote mailbox (another interval, password, mailbox): the state stays.
      assert.equal(await r.put(a.id, 'pop', 'p', settings({ interval: 1200, sealedPassword: 'v1.other', host: 'POP.example.test' }), T + 2, 10), 'replaced');
      assert.equal(await r.put(a.id, 'imap', 'i', settings({ port: 143, leave: false }), T + 2, 10), 'replaced');
      assert.deepEqual([...(await r.seen(pop.id))].sort(), ['b2', 'c3']);
      assert.equal((await r.get(a.id, 'imap', 'i'))!.lastUid, 42);
      // Another user, another port: the state goes.
      assert.equal(await r.put(a.id, 'pop', 'p', settings({ user: 'bob' }), T + 3, 10), 'replaced');
      assert.equal(await r.put(a.id, 'imap', 'i', settings({ port: 993 }), T + 3, 10), 'replaced');
      assert.equal((await r.seen(pop.id)).size, 0);
      const i2 = (await r.get(a.id, 'imap', 'i'))!;
      assert.deepEqual([i2.uidValidity, i2.lastUid, i2.id], [null, 0, imap.id]);
    });

    it('POP3 pruning: an empty listing forgets nothing; a UIDL goes only after enough misses in a row, for long enough', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'p', settings(), T, 10);
      const owner = unique('node-');
      const [pop] = (await r.claimDue(T, 100, { owner, until: T + 1_000_000 })).filter((x) => x.accountId === a.id);
      for (const uidl of ['a', 'b', 'c']) await r.markSeen(pop!.id, owner, uidl, T);
      const policy = { misses: 3, ageMs: 1000 };
      const seen = async (): Promise<string[]> => [...(await r.seen(pop!.id))].sort();
      assert.equal(await r.pruneSeen(pop!.id, owner, [], T + 10_000, policy), true);
      assert.deepEqual(await seen(), ['a', 'b', 'c'], 'an empty listing forgets nothing');
      // 'a' and 'b' missing: two misses (long enough, but too few), then 'b' listed again (its misses start over).
      await r.pruneSeen(pop!.id, owner, ['c'], T + 20_000, policy);
      await r.pruneSeen(pop!.id, owner, ['c'], T + 30_000, policy);
      assert.deepEqual(await seen(), ['a', 'b', 'c'], 'two misses are not enough');
      await r.pruneSeen(pop!.id, owner, ['b', 'c'], T + 30_500, policy);
      // The third miss of 'a' (missing since T + 20000): forgotten; 'b' missed once since.
      await r.pruneSeen(pop!.id, owner, ['c'], T + 31_000, policy);
      assert.deepEqual(await seen(), ['b', 'c']);
      await r.pruneSeen(pop!.id, owner, ['c'], T + 31_100, policy);
      await r.pruneSeen(pop!.id, owner, ['c'], T + 31_200, policy);
      assert.deepEqual(await seen(), ['b', 'c'], 'three misses in a row, but not missing for long enough');
      await r.pruneSeen(pop!.id, owner, ['c'], T + 32_000, policy);
      assert.deepEqual(await seen(), ['c']);
      assert.equal(await r.pruneSeen(pop!.id, 'someone-else', ['x'], T + 40_000, { misses: 1, ageMs: 0 }), false, 'only the holder');
      assert.deepEqual(await seen(), ['c']);
    });

    it('IMAP UIDs left on the server and the standing note: kept by polls that do not set them, dropped for another remote mailbox', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'imap', 'i', settings({ port: 143 }), T, 10);
      const owner = unique('node-');
      const [rec] = (await r.claimDue(T, 100, { owner, until: T + 1000 })).filter((x) => x.accountId === a.id);
      assert.deepEqual([rec!.skipped, rec!.note], [[], null]);
      assert.equal(await r.setImapState(rec!.id, owner, 7, 10, [3, 8]), true);
      assert.equal(await r.setImapState(rec!.id, owner, 7, 12), true, 'without UIDs: they stay');
      assert.equal(await r.finish(rec!.id, owner, { time: T, nextPoll: T + 1, error: null, note: 'left on the server: 2' }), true);
      let got = (await r.get(a.id, 'imap', 'i'))!;
      assert.deepEqual([got.lastUid, got.skipped, got.note], [12, [3, 8], 'left on the server: 2']);
      // A failed poll (no note given) keeps it; a successful one replaces it.
      const [again] = (await r.claimDue(T + 1, 100, { owner, until: T + 1000 })).filter((x) => x.accountId === a.id);
      assert.equal(await r.finish(again!.id, owner, { time: T + 2, nextPoll: T + 3, error: 'connection refused' }), true);
      got = (await r.get(a.id, 'imap', 'i'))!;
      assert.deepEqual([got.lastError, got.note], ['connection refused', 'left on the server: 2']);
      const [third] = (await r.claimDue(T + 3, 100, { owner, until: T + 1000 })).filter((x) => x.accountId === a.id);
      assert.equal(await r.setImapState(third!.id, owner, 7, 12, [8]), true);
      assert.equal(await r.finish(third!.id, owner, { time: T + 4, nextPoll: T + 5, error: null, note: null }), true);
      got = (await r.get(a.id, 'imap', 'i'))!;
      assert.deepEqual([got.lastError, got.note, got.skipped], [null, null, [8]]);
      // Another remote mailbox: no UIDs, no note.
      await r.put(a.id, 'imap', 'i', settings({ port: 993 }), T + 6, 10);
      got = (await r.get(a.id, 'imap', 'i'))!;
      assert.deepEqual([got.skipped, got.note], [[], null]);
    });

    it('release gives a lease up and records nothing', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'p', settings(), T, 10);
      const owner = unique('node-');
      const [rec] = (await r.claimDue(T, 100, { owner, until: T + 100_000 })).filter((x) => x.accountId === a.id);
      assert.equal(await r.release(rec!.id, 'someone-else'), false);
      assert.equal(await r.release(rec!.id, owner), true);
      const got = (await r.get(a.id, 'pop', 'p'))!;
      assert.deepEqual([got.leaseOwner, got.leaseUntil, got.lastPoll, got.nextPoll, got.failures], [null, null, null, T, 0]);
      assert.equal((await r.claimDue(T + 1, 100, { owner: unique('node-'), until: T + 2 })).filter((x) => x.accountId === a.id).length, 1, 'claimable again at once');
    });

    it('apply: the changes of one request in order, all or none', async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'old', settings(), T, 3);
      assert.deepEqual(
        await r.apply(a.id, 'pop', [{ name: 'one', remove: false, settings: settings() }, { name: 'old', remove: true }, { name: 'gone', remove: true }, { name: 'one', remove: false, settings: settings({ interval: 60 }) }], T + 1, 3),
        ['created', 'removed', 'absent', 'replaced'],
      );
      assert.deepEqual((await r.list(a.id, 'pop')).map((x) => [x.name, x.interval]), [['one', 60]]);
      // The third new record passes the limit of 3: the first two, and the removal, are undone.
      await assert.rejects(
        r.apply(
          a.id,
          'pop',
          [{ name: 'one', remove: true }, { name: 'two', remove: false, settings: settings() }, { name: 'three', remove: false, settings: settings() }, { name: 'four', remove: false, settings: settings() }, { name: 'five', remove: false, settings: settings() }],
          T + 2,
          3,
        ),
        (err: unknown) => err instanceof RemoteMailLimitError && err.record === 'five',
      );
      assert.deepEqual((await r.list(a.id, 'pop')).map((x) => x.name), ['one'], 'nothing applied');
    });

    it("an account's removal removes its records and their state", async () => {
      const a = await c.account();
      const r = c.store.remoteMail;
      await r.put(a.id, 'pop', 'p', settings(), T, 10);
      const owner = unique('node-');
      const [rec] = (await r.claimDue(T, 100, { owner, until: T + 1000 })).filter((x) => x.accountId === a.id);
      await r.markSeen(rec!.id, owner, 'u', T);
      await c.store.accounts.remove(a.id);
      assert.deepEqual(await r.list(a.id, 'pop'), []);
      assert.equal((await r.seen(rec!.id)).size, 0);
      assert.equal(await r.markSeen(rec!.id, owner, 'v', T), false, 'the record is gone');
    });

    it('two handles claiming at once: each due record goes to exactly one of them', async () => {
      const a = await c.account();
      const other = await c.open();
      for (let i = 0; i < 6; i++) await c.store.remoteMail.put(a.id, 'pop', `r${i}`, settings(), T - 10, 100);
      const n1 = unique('node-');
      const n2 = unique('node-');
      const [x, y] = await Promise.all([
        c.store.remoteMail.claimDue(T, 100, { owner: n1, until: T + 1000 }),
        other.remoteMail.claimDue(T, 100, { owner: n2, until: T + 1000 }),
      ]);
      const mine = (list: typeof x) => list.filter((r) => r.accountId === a.id).map((r) => r.name);
      const all = [...mine(x), ...mine(y)].sort();
      assert.deepEqual(all, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'], 'every record once');
      for (const rec of (await c.store.remoteMail.list(a.id, 'pop'))) {
        assert.equal(rec.leaseOwner, mine(x).includes(rec.name) ? n1 : n2, rec.name);
      }
      // And for one record: only one of two racing claims gets it.
      await c.store.remoteMail.put(a.id, 'imap', 'single', settings(), T + 5000, 100);
      const [p, q] = await Promise.all([
        c.store.remoteMail.claimDue(T + 5000, 100, { owner: n1, until: T + 9000 }),
        other.remoteMail.claimDue(T + 5000, 100, { owner: n2, until: T + 9000 }),
      ]);
      const got = [...p, ...q].filter((r) => r.accountId === a.id && r.name === 'single');
      assert.equal(got.length, 1);
    });
  });
}
