/**
 * Store contract cases of real-time messaging (src/store/im.ts): rosters (changes decided on
 * the stored item, versions, groups), offline messages, the message archive's pages, block
 * lists, the resources of live nodes and MUC rooms, on both engines; concurrent cases race two
 * handles on one store (two processes, as far as the store can tell).
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { RosterFullError, RosterGroupsFullError, type ArchivedMessage, type ResourceRecord, type RosterItem, type RoomRecord } from '../../src/store/im.js';
import { AlreadyExistsError, NotFoundError } from '../../src/store/store.js';
import { it, unique, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;

function item(jid: string, fields: Partial<RosterItem> = {}): RosterItem {
  return { jid, name: '', subscription: 'none', ask: false, approved: false, pendingIn: null, groups: [], ...fields };
}

/** A decision that sets these fields on the item (creating it when absent). */
function set(jid: string, fields: Partial<RosterItem>): (current: RosterItem | undefined) => RosterItem {
  return (current) => ({ ...(current ?? item(jid)), ...fields });
}

const MANY = 1000;

export function imContract(fresh: FreshStore): void {
  rosters(fresh);
  offlineMessages(fresh);
  archive(fresh);
  blocking(fresh);
  resources(fresh);
  muc(fresh);
}

function rosters(fresh: FreshStore): void {
  describe('IM: rosters', () => {
    const c = useStore(fresh);

    it('an empty roster has version 0; a real change bumps it by one, no change keeps it', async () => {
      const a = await c.account();
      const r = c.store.roster;
      assert.deepEqual(await r.list(a.id), { items: [], version: 0 });
      assert.equal(await r.version(a.id), 0);
      assert.equal(await r.get(a.id, 'bob@x.test'), undefined);

      const bob = item('bob@x.test', { name: 'Bob', ask: true, groups: ['Friends', 'Work'] });
      const created = await r.modify(a.id, 'bob@x.test', () => bob, MANY);
      assert.deepEqual(created, { before: undefined, after: bob, version: 1, changed: true });
      assert.deepEqual(await r.get(a.id, 'bob@x.test'), bob);

      const same = await r.modify(a.id, 'bob@x.test', (current) => (current ? { ...current, groups: [...current.groups] } : undefined), MANY);
      assert.deepEqual(same, { before: bob, after: bob, version: 1, changed: false }, 'equal contents are no change');
      assert.deepEqual(await r.modify(a.id, 'bob@x.test', () => undefined, MANY), { before: bob, after: bob, version: 1, changed: false });
      assert.deepEqual(await r.modify(a.id, 'nobody@x.test', () => null, MANY), { before: undefined, after: undefined, version: 1, changed: false });
      assert.equal(await r.get(a.id, 'nobody@x.test'), undefined);

      let seen: RosterItem | undefined;
      const subscribed = await r.modify(
        a.id,
        'bob@x.test',
        (current) => {
          seen = current;
          return current && { ...current, subscription: 'to', ask: false };
        },
        MANY,
      );
      assert.deepEqual(seen, bob, 'decide gets the item as stored');
      assert.deepEqual(subscribed.after, { ...bob, subscription: 'to', ask: false });
      assert.equal(subscribed.version, 2);
      const reordered = await r.modify(a.id, 'bob@x.test', set('bob@x.test', { groups: ['Work', 'Friends'] }), MANY);
      assert.equal(reordered.changed, true, 'group order is part of the item');
      assert.equal(reordered.version, 3);

      const removed = await r.modify(a.id, 'bob@x.test', () => null, MANY);
      assert.deepEqual(removed, { before: reordered.after, after: undefined, version: 4, changed: true });
      assert.deepEqual(await r.list(a.id), { items: [], version: 4 });
      assert.equal(await r.version(a.id), 4);
    });

    it('items come back as written: each field, groups once each in the order given, under the JID changed', async () => {
      const a = await c.account();
      const r = c.store.roster;
      const full = item('carol@x.test', { name: 'Carol ☕', subscription: 'both', ask: true, approved: true, pendingIn: '', groups: ['B', 'A', 'B', 'C', 'A'] });
      const change = await r.modify(a.id, full.jid, () => full, MANY);
      const expected = { ...full, groups: ['B', 'A', 'C'] };
      assert.deepEqual(change.after, expected);
      assert.deepEqual(await r.get(a.id, full.jid), expected);
      const pending = await r.modify(a.id, full.jid, set(full.jid, { pendingIn: 'please add me', approved: false }), MANY);
      assert.equal(pending.after?.pendingIn, 'please add me');
      assert.equal((await r.get(a.id, full.jid))?.approved, false);
      await assert.rejects(r.modify(a.id, 'dave@x.test', () => item('eve@x.test'), MANY), /eve@x\.test/);
      assert.equal(await r.get(a.id, 'eve@x.test'), undefined);
      assert.equal(await r.get(a.id, 'dave@x.test'), undefined);
      assert.equal(await r.version(a.id), 2);
    });

    it('list is by JID with its version; subscribers are from/both, following to/both; rosters are per account', async () => {
      const a = await c.account();
      const b = await c.account();
      const r = c.store.roster;
      const subscriptions = { 'd@x.test': 'both', 'a@x.test': 'to', 'c@x.test': 'from', 'b@x.test': 'none', 'e@x.test': 'from' } as const;
      for (const [jid, subscription] of Object.entries(subscriptions)) await r.modify(a.id, jid, () => item(jid, { subscription }), MANY);
      await r.modify(b.id, 'z@x.test', () => item('z@x.test', { subscription: 'both' }), MANY);
      const listed = await r.list(a.id);
      assert.deepEqual(listed.items.map((i) => i.jid), ['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test', 'e@x.test']);
      assert.equal(listed.version, 5);
      assert.deepEqual(await r.subscribers(a.id), ['c@x.test', 'd@x.test', 'e@x.test']);
      assert.deepEqual(await r.following(a.id), ['a@x.test', 'd@x.test']);
      assert.deepEqual(await r.list(b.id), { items: [item('z@x.test', { subscription: 'both' })], version: 1 });
      assert.deepEqual(await r.subscribers(b.id), ['z@x.test']);
    });

    it('maxItems counts the items after the change: only a new item can exceed it (RosterFullError, nothing changed)', async () => {
      const a = await c.account();
      const r = c.store.roster;
      await r.modify(a.id, 'one@x.test', set('one@x.test', {}), 2);
      await r.modify(a.id, 'two@x.test', set('two@x.test', {}), 2);
      await assert.rejects(r.modify(a.id, 'three@x.test', set('three@x.test', {}), 2), (err: unknown) => err instanceof RosterFullError && err.maxItems === 2);
      assert.equal(await r.get(a.id, 'three@x.test'), undefined);
      assert.equal(await r.version(a.id), 2);
      const renamed = await r.modify(a.id, 'two@x.test', set('two@x.test', { name: 'Two' }), 2);
      assert.equal(renamed.changed, true, 'changing an item of a full roster is allowed');
      assert.equal((await r.modify(a.id, 'three@x.test', () => undefined, 2)).changed, false, 'no decision: no error');
      await r.modify(a.id, 'one@x.test', () => null, 2);
      assert.equal((await r.modify(a.id, 'three@x.test', set('three@x.test', {}), 2)).changed, true);
      assert.deepEqual((await r.list(a.id)).items.map((i) => i.jid), ['three@x.test', 'two@x.test']);
    });

    it('groups: those of items and those created empty, sorted; addGroup refuses a name in use and past maxGroups', async () => {
      const a = await c.account();
      const r = c.store.roster;
      assert.deepEqual(await r.groups(a.id), []);
      await r.modify(a.id, 'p@x.test', set('p@x.test', { groups: ['Work', 'Family'] }), MANY);
      await r.modify(a.id, 'q@x.test', set('q@x.test', { groups: ['Work'] }), MANY);
      assert.equal(await r.addGroup(a.id, 'Clubs', 10), true);
      assert.equal(await r.addGroup(a.id, 'Clubs', 10), false, 'exists empty');
      assert.equal(await r.addGroup(a.id, 'Work', 10), false, 'exists on an item');
      assert.deepEqual(await r.groups(a.id), ['Clubs', 'Family', 'Work']);
      assert.equal(await r.version(a.id), 2, 'an empty group is no roster change');
      await assert.rejects(r.addGroup(a.id, 'Gym', 3), (err: unknown) => err instanceof RosterGroupsFullError && err.maxGroups === 3);
      assert.equal(await r.addGroup(a.id, 'Gym', 4), true);
      assert.deepEqual(await r.groups(a.id), ['Clubs', 'Family', 'Gym', 'Work']);
      // A created group stays while items take it and leave it.
      await r.modify(a.id, 'q@x.test', set('q@x.test', { groups: ['Gym'] }), MANY);
      await r.modify(a.id, 'q@x.test', set('q@x.test', { groups: [] }), MANY);
      assert.deepEqual(await r.groups(a.id), ['Clubs', 'Family', 'Gym', 'Work']);
      await assert.rejects(r.addGroup(999_999_999, 'X', 10), NotFoundError);
    });

    it('renameGroup renames on every item and the empty group, merges onto a name in use, deletes with null; NotFoundError for none', async () => {
      const a = await c.account();
      const r = c.store.roster;
      await r.modify(a.id, 'p@x.test', set('p@x.test', { groups: ['Work', 'Family', 'Old'] }), MANY);
      await r.modify(a.id, 'q@x.test', set('q@x.test', { groups: ['Old'] }), MANY);
      await r.modify(a.id, 'r@x.test', set('r@x.test', { groups: ['Family'] }), MANY);
      await r.addGroup(a.id, 'Empty', 10);
      assert.equal(await r.version(a.id), 3);

      const renamed = await r.renameGroup(a.id, 'Old', 'Former');
      assert.deepEqual(renamed.items, [item('p@x.test', { groups: ['Work', 'Family', 'Former'] }), item('q@x.test', { groups: ['Former'] })]);
      assert.equal(renamed.version, 4, 'one bump for the whole rename');
      assert.deepEqual(await r.groups(a.id), ['Empty', 'Family', 'Former', 'Work']);

      const merged = await r.renameGroup(a.id, 'Former', 'Family');
      assert.deepEqual(merged.items, [item('p@x.test', { groups: ['Work', 'Family'] }), item('q@x.test', { groups: ['Family'] })]);
      assert.equal(merged.version, 5);
      assert.deepEqual(await r.get(a.id, 'p@x.test'), item('p@x.test', { groups: ['Work', 'Family'] }), 'no name twice');

      const emptyRenamed = await r.renameGroup(a.id, 'Empty', 'Vacant');
      assert.deepEqual(emptyRenamed, { items: [], version: 5 }, 'no item changed: no bump');
      assert.deepEqual(await r.groups(a.id), ['Family', 'Vacant', 'Work']);

      const deleted = await r.renameGroup(a.id, 'Family', null);
      assert.deepEqual(deleted.items, [item('p@x.test', { groups: ['Work'] }), item('q@x.test'), item('r@x.test')]);
      assert.equal(deleted.version, 6);
      assert.deepEqual((await r.list(a.id)).items.map((i) => i.jid), ['p@x.test', 'q@x.test', 'r@x.test'], 'the items stay');
      await r.renameGroup(a.id, 'Vacant', null);
      assert.deepEqual(await r.groups(a.id), ['Work']);

      await assert.rejects(r.renameGroup(a.id, 'Family', 'X'), NotFoundError);
      await assert.rejects(r.renameGroup(a.id, 'Vacant', null), NotFoundError);
      assert.equal(await r.version(a.id), 6);
    });

    it('changes of a removed account are refused (NotFoundError); its roster goes with it', async () => {
      const a = await c.account();
      const r = c.store.roster;
      await r.modify(a.id, 'p@x.test', set('p@x.test', { groups: ['G'] }), MANY);
      await r.addGroup(a.id, 'E', 10);
      await c.store.accounts.remove(a.id);
      assert.deepEqual(await r.list(a.id), { items: [], version: 0 });
      assert.deepEqual(await r.groups(a.id), []);
      await assert.rejects(r.modify(a.id, 'p@x.test', set('p@x.test', {}), MANY), NotFoundError);
    });

    it('two handles racing modify on the same item: both changes apply, the version bumps twice', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const a = await c.account();
      const jid = 'race@x.test';
      const addGroup = (name: string) => (current: RosterItem | undefined): RosterItem => {
        const base = current ?? item(jid);
        return { ...base, groups: [...base.groups, name] };
      };
      for (let i = 0; i < 10; i++) {
        const [one, two] = await Promise.all([h1.roster.modify(a.id, jid, addGroup(`a${i}`), MANY), h2.roster.modify(a.id, jid, addGroup(`b${i}`), MANY)]);
        assert.equal(one.changed && two.changed, true);
        assert.deepEqual([one.version, two.version].sort((x, y) => x - y), [2 * i + 1, 2 * i + 2], `round ${i}`);
      }
      const stored = (await c.store.roster.get(a.id, jid))!;
      assert.equal(stored.groups.length, 20, 'no change overwrote another');
      for (let i = 0; i < 10; i++) assert.ok(stored.groups.includes(`a${i}`) && stored.groups.includes(`b${i}`));
      assert.equal(await c.store.roster.version(a.id), 20);
    });

    it('two handles racing to add the last item a full roster has room for: exactly one wins', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      for (let i = 0; i < 5; i++) {
        const a = await c.account();
        const results = await Promise.allSettled([
          h1.roster.modify(a.id, 'one@x.test', set('one@x.test', {}), 1),
          h2.roster.modify(a.id, 'two@x.test', set('two@x.test', {}), 1),
        ]);
        assert.equal(results.filter((x) => x.status === 'fulfilled').length, 1, `round ${i}`);
        const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected')!;
        assert.ok(failed.reason instanceof RosterFullError);
        assert.equal((await c.store.roster.list(a.id)).items.length, 1);
        assert.equal(await c.store.roster.version(a.id), 1);
      }
    });
  });
}

function offlineMessages(fresh: FreshStore): void {
  describe('IM: offline messages', () => {
    const c = useStore(fresh);
    const msg = (i: number) => ({ stamp: T + i, from: `s${i}@x.test/r`, xml: `<message from="s${i}@x.test/r"><body>${i}</body></message>` });

    it('push keeps up to maxCount; take gives the oldest and removes them; count; per account', async () => {
      const a = await c.account();
      const b = await c.account();
      const o = c.store.offline;
      assert.equal(await o.count(a.id), 0);
      assert.deepEqual(await o.take(a.id, 10), []);
      for (let i = 0; i < 3; i++) assert.equal(await o.push(a.id, msg(i), 3), true);
      assert.equal(await o.push(a.id, msg(3), 3), false, 'full');
      assert.equal(await o.push(b.id, msg(9), 3), true, 'another account counts its own');
      assert.equal(await o.count(a.id), 3);
      const first = await o.take(a.id, 2);
      assert.deepEqual(first.map(({ id: _id, ...rest }) => rest), [msg(0), msg(1)]);
      assert.ok(first[0]!.id < first[1]!.id);
      assert.equal(await o.count(a.id), 1);
      assert.equal(await o.push(a.id, msg(4), 3), true, 'room again');
      assert.deepEqual((await o.take(a.id, 10)).map((m) => m.xml), [msg(2).xml, msg(4).xml]);
      assert.deepEqual(await o.take(a.id, 10), []);
      assert.deepEqual((await o.take(b.id, 10)).map((m) => m.from), [msg(9).from]);
      await assert.rejects(o.push(999_999_999, msg(1), 3), NotFoundError);
    });

    it('prune deletes messages kept since before a time, every account', async () => {
      const a = await c.account();
      const b = await c.account();
      const o = c.store.offline;
      await o.push(a.id, { ...msg(1), stamp: 1000 }, 10);
      await o.push(a.id, { ...msg(2), stamp: 2000 }, 10);
      await o.push(b.id, { ...msg(3), stamp: 1500 }, 10);
      await o.push(b.id, { ...msg(4), stamp: 2500 }, 10);
      assert.equal(await o.prune(2000), 2);
      assert.deepEqual((await o.take(a.id, 10)).map((m) => m.stamp), [2000]);
      assert.deepEqual((await o.take(b.id, 10)).map((m) => m.stamp), [2500]);
    });

    it('two handles taking at once never get the same message, and together get them all', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const a = await c.account();
      for (let i = 0; i < 40; i++) await c.store.offline.push(a.id, msg(i), 100);
      const taken: number[] = [];
      while (taken.length < 40) {
        const [one, two] = await Promise.all([h1.offline.take(a.id, 3), h2.offline.take(a.id, 3)]);
        assert.ok(one.length + two.length > 0, 'progress');
        taken.push(...one.map((m) => m.stamp), ...two.map((m) => m.stamp));
      }
      assert.equal(new Set(taken).size, 40, 'no message twice');
      assert.deepEqual([...taken].sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => T + i));
      assert.equal(await c.store.offline.count(a.id), 0);
    });

    it('two handles pushing at once never exceed maxCount', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const a = await c.account();
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? h1 : h2).offline.push(a.id, msg(i), 5)));
      assert.equal(results.filter(Boolean).length, 5);
      assert.equal(await c.store.offline.count(a.id), 5);
    });
  });
}

function archive(fresh: FreshStore): void {
  describe('IM: message archive', () => {
    const c = useStore(fresh);

    function archived(i: number, fields: Partial<ArchivedMessage> = {}): ArchivedMessage {
      return { id: `id-${i}`, stamp: T + i * 1000, with: i % 2 ? 'odd@x.test' : 'even@x.test', outgoing: i % 3 === 0, xml: `<message><body>${i}</body></message>`, ...fields };
    }

    /** An account with messages 0..n-1 appended in order. */
    async function filled(n: number, fields: (i: number) => Partial<ArchivedMessage> = () => ({})): Promise<number> {
      const a = await c.account();
      for (let i = 0; i < n; i++) await c.store.archive.append(a.id, archived(i, fields(i)));
      return a.id;
    }

    const ids = (page: { messages: ArchivedMessage[] }): string[] => page.messages.map((m) => m.id);

    it('append keeps every field; an id is unique per account (AlreadyExistsError); no paging gives the first page', async () => {
      const a = await filled(3);
      const ar = c.store.archive;
      const all = await ar.query(a, { limit: 10 });
      assert.deepEqual(all, { messages: [archived(0), archived(1), archived(2)], complete: true, count: 3 });
      await assert.rejects(ar.append(a, archived(1, { stamp: T })), AlreadyExistsError);
      const b = (await c.account()).id;
      await ar.append(b, archived(1));
      assert.deepEqual(ids(await ar.query(b, { limit: 10 })), ['id-1'], 'another account may use the id');
      const first = await ar.query(a, { limit: 2 });
      assert.deepEqual(first, { messages: [archived(0), archived(1)], complete: false, count: 3 });
      await assert.rejects(ar.append(999_999_999, archived(1)), NotFoundError);
    });

    it('pages forward with after, and backward with before (\'\': the last page), oldest first within a page', async () => {
      const a = await filled(7);
      const ar = c.store.archive;
      assert.deepEqual(ids(await ar.query(a, { after: 'id-1', limit: 2 })), ['id-2', 'id-3']);
      const tail = await ar.query(a, { after: 'id-4', limit: 2 });
      assert.deepEqual({ ids: ids(tail), complete: tail.complete, count: tail.count }, { ids: ['id-5', 'id-6'], complete: true, count: 7 });
      const last = await ar.query(a, { before: '', limit: 3 });
      assert.deepEqual({ ids: ids(last), complete: last.complete }, { ids: ['id-4', 'id-5', 'id-6'], complete: false });
      const previous = await ar.query(a, { before: 'id-4', limit: 3 });
      assert.deepEqual({ ids: ids(previous), complete: previous.complete }, { ids: ['id-1', 'id-2', 'id-3'], complete: false });
      const head = await ar.query(a, { before: 'id-1', limit: 3 });
      assert.deepEqual({ ids: ids(head), complete: head.complete }, { ids: ['id-0'], complete: true });
      const between = await ar.query(a, { after: 'id-1', before: 'id-5', limit: 10 });
      assert.deepEqual({ ids: ids(between), complete: between.complete }, { ids: ['id-2', 'id-3', 'id-4'], complete: true });
      const exact = await ar.query(a, { before: '', limit: 7 });
      assert.deepEqual({ n: exact.messages.length, complete: exact.complete }, { n: 7, complete: true });
      const none = await ar.query(a, { limit: 0 });
      assert.deepEqual(none, { messages: [], complete: false, count: 7 }, 'limit 0: the count alone');
      await assert.rejects(ar.query(a, { after: 'no-such-id', limit: 2 }), NotFoundError);
      await assert.rejects(ar.query(a, { before: 'no-such-id', limit: 2 }), NotFoundError);
      const other = await filled(1);
      await assert.rejects(ar.query(other, { after: 'id-3', limit: 2 }), NotFoundError, "another account's id is unknown here");
    });

    it('time order is the stamp, then the order of append: equal stamps page stably; a late message with an old stamp sorts by its stamp', async () => {
      const a = await filled(6, (i) => ({ stamp: T + Math.floor(i / 3) }));
      const ar = c.store.archive;
      await ar.append(a, archived(99, { id: 'late', stamp: T - 5 }));
      assert.deepEqual(ids(await ar.query(a, { limit: 10 })), ['late', 'id-0', 'id-1', 'id-2', 'id-3', 'id-4', 'id-5']);
      const pages: string[][] = [];
      let after: string | undefined;
      for (;;) {
        const page = await ar.query(a, { limit: 2, ...(after === undefined ? {} : { after }) });
        pages.push(ids(page));
        if (page.complete) break;
        after = page.messages.at(-1)!.id;
      }
      assert.deepEqual(pages, [['late', 'id-0'], ['id-1', 'id-2'], ['id-3', 'id-4'], ['id-5']]);
      const back: string[][] = [];
      let before = '';
      for (;;) {
        const page = await ar.query(a, { limit: 2, before });
        back.push(ids(page));
        if (page.complete) break;
        before = page.messages[0]!.id;
      }
      assert.deepEqual(back, [['id-4', 'id-5'], ['id-2', 'id-3'], ['id-0', 'id-1'], ['late']]);
    });

    it('filters by with and by start/end (inclusive); count counts the filter, not the page', async () => {
      const a = await filled(10);
      const ar = c.store.archive;
      const odd = await ar.query(a, { with: 'odd@x.test', limit: 2 });
      assert.deepEqual({ ids: ids(odd), complete: odd.complete, count: odd.count }, { ids: ['id-1', 'id-3'], complete: false, count: 5 });
      assert.deepEqual(ids(await ar.query(a, { with: 'odd@x.test', after: 'id-3', limit: 10 })), ['id-5', 'id-7', 'id-9']);
      assert.deepEqual(ids(await ar.query(a, { with: 'odd@x.test', before: '', limit: 2 })), ['id-7', 'id-9']);
      const window = await ar.query(a, { start: T + 2000, end: T + 5000, limit: 10 });
      assert.deepEqual({ ids: ids(window), count: window.count, complete: window.complete }, { ids: ['id-2', 'id-3', 'id-4', 'id-5'], count: 4, complete: true });
      const both = await ar.query(a, { with: 'even@x.test', start: T + 2000, end: T + 8000, before: '', limit: 2 });
      assert.deepEqual({ ids: ids(both), count: both.count, complete: both.complete }, { ids: ['id-6', 'id-8'], count: 4, complete: false });
      assert.deepEqual(await ar.query(a, { with: 'nobody@x.test', limit: 5 }), { messages: [], complete: true, count: 0 });
      // A pivot outside the filter still places the page.
      assert.deepEqual(ids(await ar.query(a, { with: 'odd@x.test', after: 'id-4', limit: 10 })), ['id-5', 'id-7', 'id-9']);
    });

    it('prune deletes messages older than a time, every account', async () => {
      const a = await filled(5);
      const b = await filled(5);
      const ar = c.store.archive;
      assert.ok((await ar.prune(T + 2000)) >= 4);
      assert.deepEqual(ids(await ar.query(a, { limit: 10 })), ['id-2', 'id-3', 'id-4']);
      assert.deepEqual((await ar.query(b, { limit: 10 })).count, 3);
    });
  });
}

function blocking(fresh: FreshStore): void {
  describe('IM: block lists', () => {
    const c = useStore(fresh);

    it('add (duplicates and JIDs already there add nothing), list by JID, isBlocked, the limit, remove some or all', async () => {
      const a = await c.account();
      const b = await c.account();
      const bl = c.store.blocking;
      assert.deepEqual(await bl.list(a.id), []);
      assert.equal(await bl.add(a.id, ['m@x.test', 'k@x.test', 'm@x.test'], 3), true);
      assert.equal(await bl.add(a.id, ['k@x.test', 'z.test'], 3), true);
      assert.deepEqual(await bl.list(a.id), ['k@x.test', 'm@x.test', 'z.test']);
      assert.equal(await bl.add(a.id, ['k@x.test'], 3), true, 'nothing new: within the limit');
      assert.equal(await bl.add(a.id, ['n@x.test', 'k@x.test'], 3), false, 'one more would be too many');
      assert.deepEqual(await bl.list(a.id), ['k@x.test', 'm@x.test', 'z.test'], 'nothing added');
      assert.equal(await bl.isBlocked(a.id, 'k@x.test'), true);
      assert.equal(await bl.isBlocked(a.id, 'n@x.test'), false);
      assert.equal(await bl.isBlocked(b.id, 'k@x.test'), false, 'per account');
      await bl.add(b.id, ['k@x.test'], 3);
      assert.deepEqual(await bl.remove(a.id, ['z.test', 'nobody@x.test', 'k@x.test']), ['k@x.test', 'z.test']);
      assert.deepEqual(await bl.list(a.id), ['m@x.test']);
      await bl.add(a.id, ['a@x.test'], 3);
      assert.deepEqual(await bl.remove(a.id, undefined), ['a@x.test', 'm@x.test']);
      assert.deepEqual(await bl.list(a.id), []);
      assert.deepEqual(await bl.remove(a.id, undefined), []);
      assert.deepEqual(await bl.list(b.id), ['k@x.test'], "the other account's list stays");
      await assert.rejects(bl.add(999_999_999, ['x@x.test'], 3), NotFoundError);
    });

    it('two handles adding at once never exceed the limit', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const a = await c.account();
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? h1 : h2).blocking.add(a.id, [`j${i}@x.test`, `k${i}@x.test`], 6)));
      assert.equal(results.filter(Boolean).length, 3);
      assert.equal((await c.store.blocking.list(a.id)).length, 6);
    });
  });
}

function resources(fresh: FreshStore): void {
  describe('IM: resources', () => {
    const c = useStore(fresh);

    async function node(aliveUntil: number): Promise<string> {
      const id = unique('im-node-');
      await c.store.cluster.heartbeat({ id, httpUrl: 'http://192.0.2.1:8100', aliveUntil });
      return id;
    }

    function resource(accountId: number, name: string, nodeId: string, fields: Partial<ResourceRecord> = {}): ResourceRecord {
      return { accountId, resource: name, node: nodeId, kind: 'xmpp', available: false, priority: 0, presence: '', since: T, ...fields };
    }

    it('add refuses a name held on a live node and past the limit on live nodes; a dead node\'s row is replaced', async () => {
      const a = await c.account();
      const live = await node(T + 100_000);
      const dying = await node(T + 10_000);
      const rs = c.store.resources;
      const phone = resource(a.id, 'phone', live, { available: true, priority: 5, presence: '<presence/>' });
      const laptop = resource(a.id, 'laptop', dying);
      assert.equal(await rs.add(phone, 2, T), true);
      assert.equal(await rs.add(laptop, 2, T), true);
      assert.deepEqual(await rs.ofAccount(a.id, T), [laptop, phone], 'by resource');
      assert.equal(await rs.add(resource(a.id, 'phone', dying), 5, T), false, 'the name is held on a live node');
      assert.equal(await rs.add(resource(a.id, 'tablet', live), 2, T), false, 'two live already');
      // Past the dying node's aliveUntil its row no longer counts, and its name is free.
      assert.deepEqual(await rs.ofAccount(a.id, T + 20_000), [phone]);
      assert.equal(await rs.add(resource(a.id, 'tablet', live), 2, T + 20_000), true);
      const rebound = resource(a.id, 'laptop', live, { since: T + 20_000 });
      assert.equal(await rs.add(rebound, 3, T + 20_000), true, "the dead node's row is replaced");
      assert.deepEqual(await rs.ofAccount(a.id, T + 20_000), [rebound, phone, resource(a.id, 'tablet', live)]);
      assert.deepEqual(await rs.ofAccount(a.id, T), [rebound, phone, resource(a.id, 'tablet', live)]);
      const unregistered = resource(a.id, 'ghost', 'no-such-node');
      assert.equal(await rs.add(unregistered, 10, T), true);
      assert.equal(await rs.add(resource(a.id, 'ghost', live), 10, T), true, 'a node not registered is not alive');
      await assert.rejects(rs.add(resource(999_999_999, 'x', live), 10, T), NotFoundError);
    });

    it('update and remove act only on the node that holds the resource; all() lists live nodes\' resources', async () => {
      const a = await c.account();
      const b = await c.account();
      const n1 = await node(T + 100_000);
      const n2 = await node(T + 100_000);
      const rs = c.store.resources;
      await rs.add(resource(a.id, 'r', n1), 10, T);
      await rs.add(resource(b.id, 'r', n2), 10, T);
      const announced = resource(a.id, 'r', n1, { available: true, priority: -3, presence: '<presence><show>away</show></presence>', since: T + 5 });
      await rs.update(announced);
      await rs.update(resource(a.id, 'r', n2, { priority: 99 }));
      assert.deepEqual(await rs.ofAccount(a.id, T), [announced]);
      await rs.remove(a.id, 'r', n2);
      assert.deepEqual(await rs.ofAccount(a.id, T), [announced], 'another node cannot remove it');
      const ours = (list: ResourceRecord[]): ResourceRecord[] => list.filter((r) => r.accountId === a.id || r.accountId === b.id);
      assert.deepEqual(ours(await rs.all(T)), [announced, resource(b.id, 'r', n2)].sort((x, y) => x.accountId - y.accountId));
      await rs.remove(a.id, 'r', n1);
      assert.deepEqual(await rs.ofAccount(a.id, T), []);
      assert.deepEqual(ours(await rs.all(T + 200_000)), [], 'dead nodes');
    });

    it("removeNode forgets a node's resources, and so does the cluster's removeNode", async () => {
      const a = await c.account();
      const n1 = await node(T + 100_000);
      const n2 = await node(T + 100_000);
      const rs = c.store.resources;
      await rs.add(resource(a.id, 'one', n1), 10, T);
      await rs.add(resource(a.id, 'two', n2), 10, T);
      await rs.add(resource(a.id, 'three', n2), 10, T);
      await rs.removeNode(n1);
      assert.deepEqual((await rs.ofAccount(a.id, T)).map((r) => r.resource), ['three', 'two']);
      await c.store.cluster.removeNode(n2);
      await c.store.cluster.heartbeat({ id: n2, httpUrl: 'http://192.0.2.1:8100', aliveUntil: T + 100_000 });
      assert.deepEqual(await rs.ofAccount(a.id, T), [], 'they went with the node');
    });

    it('two handles binding the same resource name at once: exactly one wins', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const n1 = await node(T + 100_000);
      const n2 = await node(T + 100_000);
      for (let i = 0; i < 5; i++) {
        const a = await c.account();
        const [one, two] = await Promise.all([h1.resources.add(resource(a.id, 'same', n1), 10, T), h2.resources.add(resource(a.id, 'same', n2), 10, T)]);
        assert.equal(Number(one) + Number(two), 1, `round ${i}`);
        assert.deepEqual((await c.store.resources.ofAccount(a.id, T)).map((r) => r.node), [one ? n1 : n2]);
      }
    });
  });
}

function muc(fresh: FreshStore): void {
  describe('IM: MUC rooms', () => {
    const c = useStore(fresh);

    function room(jid: string, fields: Partial<RoomRecord> = {}): RoomRecord {
      return { jid, config: { name: 'Room', persistent: true, maxUsers: 50, owners: ['a@x.test', 'b@x.test'] }, subject: '', created: T, ...fields };
    }

    it('create (false when it exists or the service is full), get, rooms by service, update, remove', async () => {
      const service = `${unique('conference')}.x.test`;
      const other = `${unique('conference')}.x.test`;
      const m = c.store.muc;
      const lounge = room(`lounge@${service}`);
      assert.equal(await m.create(lounge, 2), true);
      assert.deepEqual(await m.get(lounge.jid), lounge);
      assert.equal(await m.create(room(lounge.jid, { subject: 'other' }), 10), false, 'exists');
      assert.deepEqual(await m.get(lounge.jid), lounge);
      assert.equal(await m.create(room(`attic@${service}`), 2), true);
      assert.equal(await m.create(room(`cellar@${service}`), 2), false, 'the service has two rooms');
      assert.equal(await m.create(room(`cellar@${other}`), 2), true, 'another service counts its own');
      assert.deepEqual((await m.rooms(service)).map((r) => r.jid), [`attic@${service}`, lounge.jid]);
      assert.deepEqual(await m.rooms('none.x.test'), []);
      await m.update(lounge.jid, { name: 'Lounge', members_only: false }, 'Welcome');
      assert.deepEqual(await m.get(lounge.jid), { ...lounge, config: { name: 'Lounge', members_only: false }, subject: 'Welcome' });
      await assert.rejects(m.update(`gone@${service}`, {}, ''), NotFoundError);
      assert.equal(await m.remove(lounge.jid), true);
      assert.equal(await m.remove(lounge.jid), false);
      assert.equal(await m.get(lounge.jid), undefined);
      assert.equal(await m.create(room(`cellar@${service}`), 2), true, 'room again');
    });

    it('affiliations: set, replace, remove, by user JID; NotFoundError for a room that is gone', async () => {
      const service = `${unique('conference')}.x.test`;
      const m = c.store.muc;
      const jid = `r@${service}`;
      await m.create(room(jid), 10);
      await m.setAffiliation(jid, 'owner@x.test', 'owner');
      await m.setAffiliation(jid, 'bad@x.test', 'outcast');
      await m.setAffiliation(jid, 'member@x.test', 'member');
      await m.setAffiliation(jid, 'member@x.test', 'admin');
      await m.setAffiliation(jid, 'nobody@x.test', null);
      assert.deepEqual(await m.affiliations(jid), [
        { jid: 'bad@x.test', affiliation: 'outcast' },
        { jid: 'member@x.test', affiliation: 'admin' },
        { jid: 'owner@x.test', affiliation: 'owner' },
      ]);
      await m.setAffiliation(jid, 'bad@x.test', null);
      assert.deepEqual((await m.affiliations(jid)).map((x) => x.jid), ['member@x.test', 'owner@x.test']);
      await assert.rejects(m.setAffiliation(`gone@${service}`, 'a@x.test', 'member'), NotFoundError);
      await m.remove(jid);
      await m.create(room(jid), 10);
      assert.deepEqual(await m.affiliations(jid), [], 'they went with the room');
    });

    it('history keeps the last `keep`, reads the last `limit` since a time, oldest first; goes with the room', async () => {
      const service = `${unique('conference')}.x.test`;
      const m = c.store.muc;
      const jid = `h@${service}`;
      const other = `o@${service}`;
      await m.create(room(jid), 10);
      await m.create(room(other), 10);
      const said = (i: number) => ({ stamp: T + i * 1000, nick: `n${i}`, xml: `<message type="groupchat"><body>${i}</body></message>` });
      for (let i = 0; i < 6; i++) await m.appendHistory(jid, said(i), 4);
      await m.appendHistory(other, said(100), 4);
      assert.deepEqual(await m.history(jid, 10), [said(2), said(3), said(4), said(5)]);
      assert.deepEqual(await m.history(jid, 2), [said(4), said(5)]);
      assert.deepEqual(await m.history(jid, 10, T + 3000), [said(3), said(4), said(5)], 'since is inclusive');
      assert.deepEqual(await m.history(jid, 1, T + 3000), [said(5)]);
      assert.deepEqual(await m.history(other, 10), [said(100)]);
      await m.appendHistory(jid, said(6), 2);
      assert.deepEqual(await m.history(jid, 10), [said(5), said(6)], 'a smaller keep trims further');
      await m.appendHistory(jid, said(7), 0);
      assert.deepEqual(await m.history(jid, 10), [], 'keep 0: none');
      await assert.rejects(m.appendHistory(`gone@${service}`, said(1), 4), NotFoundError);
      await m.appendHistory(jid, said(8), 4);
      await m.remove(jid);
      await m.create(room(jid), 10);
      assert.deepEqual(await m.history(jid, 10), [], 'it went with the room');
      assert.deepEqual(await m.history(`never@${service}`, 10), []);
    });

    it('two handles creating rooms of one service at once never exceed maxRooms', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      const service = `${unique('conference')}.x.test`;
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? h1 : h2).muc.create(room(`r${i}@${service}`), 3)));
      assert.equal(results.filter(Boolean).length, 3);
      assert.equal((await c.store.muc.rooms(service)).length, 3);
    });
  });
}
