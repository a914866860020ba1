/**
 * Store contract cases of the meetings of the real-time applications (src/store/meetings.ts),
 * on both engines: the per-account limit of live meetings, expiry (an expired meeting is as if
 * it were not there), sets as namespaces, one activation at a time and who may end it, the
 * clean-up when tasks end or a node dies, the sweep, the account's removal, and two handles
 * (two nodes, as far as the store can tell) racing for one meeting.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { MeetingRecord } from '../../src/store/meetings.js';
import { NotFoundError } from '../../src/store/store.js';
import { it, unique, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;
const HOUR = 3_600_000;

export function meetingsContract(fresh: FreshStore): void {
  describe('meetings', () => {
    const c = useStore(fresh);

    /** Creates a meeting that lives until `expires`; asserts it was created. */
    async function meeting(accountId: number, name: string, fields: { set?: string; parameter?: string | null; expires?: number; now?: number } = {}): Promise<void> {
      const m = c.store.meetings;
      const outcome = await m.create(
        { accountId, set: fields.set ?? '', name, parameter: fields.parameter ?? null, expires: fields.expires ?? T + HOUR },
        fields.now ?? T,
        100,
      );
      assert.equal(outcome, 'created', name);
    }

    function task(): { handle: string; node: string } {
      return { handle: unique('task-'), node: unique('node-') };
    }

    it('create: a live meeting of that name exists; the limit counts the live meetings of the account, in every set', async () => {
      const a = await c.account();
      const b = await c.account();
      const m = c.store.meetings;
      const create = (accountId: number, set: string, name: string, now = T) => m.create({ accountId, set, name, parameter: 'p', expires: T + HOUR }, now, 3);
      assert.equal(await create(a.id, '', 'one'), 'created');
      assert.equal(await create(a.id, '', 'one'), 'exists');
      assert.equal(await create(a.id, 'other', 'one'), 'created', 'the same name in another set');
      assert.equal(await create(a.id, 'other', 'two'), 'created');
      assert.equal(await create(a.id, '', 'three'), 'limit');
      assert.equal(await create(a.id, 'third', 'three'), 'limit', 'the limit is the account\'s, over all its sets');
      assert.equal(await create(b.id, '', 'three'), 'created', 'another account has its own');
      assert.equal(await m.remove(a.id, 'other', 'two'), true);
      assert.equal(await create(a.id, '', 'three'), 'created', 'room again after a removal');
      assert.equal((await m.find(a.id, '', 'one', T))!.parameter, 'p', 'the first one stays');
    });

    it('create: an expired meeting of that name is replaced, and expired meetings do not count towards the limit', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      const t = task();
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'old', parameter: 'first', expires: T + 100 }, T, 2), 'created');
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'gone', parameter: null, expires: T + 100 }, T, 2), 'created');
      assert.equal(await m.activate(a.id, '', 'old', t, T + 100, T), 'activated');
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'old', parameter: 'x', expires: T + 200 }, T + 99, 5), 'exists', 'still live at T+99');
      const later = T + 100; // both expired: their expiry is exclusive
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'old', parameter: 'second', expires: T + HOUR }, later, 2), 'created');
      assert.deepEqual(await m.find(a.id, '', 'old', later), {
        accountId: a.id,
        set: '',
        name: 'old',
        parameter: 'second',
        task: null,
        expires: T + HOUR,
        created: later,
      } satisfies MeetingRecord, 'a new meeting: new parameter, times, and no activation');
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'new', parameter: null, expires: T + HOUR }, later, 2), 'created', 'the expired "gone" does not count');
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'more', parameter: null, expires: T + HOUR }, later, 2), 'limit');
    });

    it('create for an account that is not there: NotFoundError', async () => {
      const a = await c.account();
      assert.equal(await c.store.accounts.remove(a.id), true);
      await assert.rejects(c.store.meetings.create({ accountId: a.id, set: '', name: 'm', parameter: null, expires: T + HOUR }, T, 10), NotFoundError);
    });

    it('find returns every field while the meeting lives; undefined after it expires, and for other accounts and sets', async () => {
      const a = await c.account();
      const b = await c.account();
      const m = c.store.meetings;
      const parameter = 'p\u0000q \u00e4\u{1f600} <x a="1"/>\uffff';
      const name = 'Na me\u0000\u00fc';
      assert.equal(await m.create({ accountId: a.id, set: 'S\u0000et', name, parameter, expires: T + 500 }, T - 10, 10), 'created');
      await meeting(a.id, 'plain', { parameter: null, now: T - 20 });
      const full: MeetingRecord = { accountId: a.id, set: 'S\u0000et', name, parameter, task: null, expires: T + 500, created: T - 10 };
      assert.deepEqual(await m.find(a.id, 'S\u0000et', name, T), full);
      assert.deepEqual(await m.find(a.id, 'S\u0000et', name, T + 499), full);
      assert.equal(await m.find(a.id, 'S\u0000et', name, T + 500), undefined, 'expires is exclusive');
      assert.equal(await m.find(a.id, 'S\u0000et', name, T + HOUR), undefined);
      assert.equal(await m.find(b.id, 'S\u0000et', name, T), undefined, 'another account');
      assert.equal(await m.find(a.id, '', name, T), undefined, 'another set');
      assert.equal(await m.find(a.id, 'S\u0000et', 'na me\u0000\u00fc', T), undefined, 'names are exact (case)');
      assert.deepEqual(await m.find(a.id, '', 'plain', T), { accountId: a.id, set: '', name: 'plain', parameter: null, task: null, expires: T + HOUR, created: T - 20 });
    });

    it('sets are separate namespaces (\'\' is the default set)', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      await meeting(a.id, 'room', { parameter: 'default' });
      await meeting(a.id, 'room', { set: 'conf', parameter: 'conf' });
      assert.equal((await m.find(a.id, '', 'room', T))!.parameter, 'default');
      assert.equal((await m.find(a.id, 'conf', 'room', T))!.parameter, 'conf');
      const t = task();
      assert.equal(await m.activate(a.id, 'conf', 'room', t, T + HOUR, T), 'activated');
      assert.equal((await m.find(a.id, '', 'room', T))!.task, null, 'the other set\'s meeting is not activated');
      assert.equal(await m.remove(a.id, '', 'room'), true);
      assert.equal(await m.find(a.id, '', 'room', T), undefined);
      assert.equal((await m.find(a.id, 'conf', 'room', T))!.task, t.handle, 'the other set\'s meeting stays');
      assert.deepEqual((await m.list(a.id, 'conf', T)).map((r) => r.name), ['room']);
      assert.deepEqual(await m.list(a.id, '', T), []);
    });

    it('remove deletes the meeting, live or expired; false when there is none', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      await meeting(a.id, 'live');
      await meeting(a.id, 'expired', { expires: T + 10 });
      assert.equal(await m.remove(a.id, '', 'live'), true);
      assert.equal(await m.find(a.id, '', 'live', T), undefined);
      assert.equal(await m.remove(a.id, '', 'live'), false, 'gone already');
      assert.equal(await m.remove(a.id, '', 'expired'), true, 'an expired one is still there to delete');
      assert.equal(await m.remove(a.id, '', 'expired'), false);
      assert.equal(await m.remove(a.id, '', 'never'), false);
    });

    it('activate: one task holds a meeting; a second activation is refused; unknown and expired meetings are not found', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      const first = task();
      const second = task();
      await meeting(a.id, 'm');
      await meeting(a.id, 'old', { expires: T + 10 });
      assert.equal(await m.activate(a.id, '', 'm', first, T + HOUR, T), 'activated');
      assert.equal((await m.find(a.id, '', 'm', T))!.task, first.handle);
      assert.equal(await m.activate(a.id, '', 'm', first, T + HOUR, T), 'already-activated', 'the same task again');
      assert.equal(await m.activate(a.id, '', 'm', second, T + HOUR, T), 'already-activated', 'another task');
      assert.equal((await m.find(a.id, '', 'm', T))!.task, first.handle, 'still the first');
      assert.equal(await m.activate(a.id, '', 'nope', second, T + HOUR, T), 'not-found');
      assert.equal(await m.activate(a.id, 'other', 'm', second, T + HOUR, T), 'not-found', 'another set');
      assert.equal(await m.activate(a.id, '', 'old', second, T + HOUR, T + 10), 'not-found', 'expired');
      assert.equal(await m.find(a.id, '', 'old', T + 10), undefined, 'and not brought back to life');
      assert.equal(await m.create({ accountId: a.id, set: '', name: 'old', parameter: null, expires: T + HOUR }, T + 10, 100), 'created');
      assert.equal((await m.find(a.id, '', 'old', T + 10))!.task, null);
    });

    it('activate extends the meeting\'s life to at least the given time, never shortens it', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      const t = task();
      await meeting(a.id, 'm', { expires: T + 1000 });
      assert.equal(await m.activate(a.id, '', 'm', t, T + 5000, T), 'activated');
      assert.equal((await m.find(a.id, '', 'm', T))!.expires, T + 5000, 'extended');
      assert.equal((await m.find(a.id, '', 'm', T + 4999))!.task, t.handle, 'alive past its first expiry');
      assert.equal(await m.deactivate(a.id, '', 'm', t.handle, T), 'deactivated');
      assert.equal(await m.activate(a.id, '', 'm', t, T + 2000, T), 'activated');
      assert.equal((await m.find(a.id, '', 'm', T))!.expires, T + 5000, 'not shortened');
      const created = (await m.find(a.id, '', 'm', T))!.created;
      assert.equal(created, T, 'created unchanged');
    });

    it('deactivate: only the holder lets the meeting go; not-activated otherwise; not-found when it is not there', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      const holder = task();
      const other = task();
      await meeting(a.id, 'm');
      await meeting(a.id, 'idle');
      await meeting(a.id, 'short', { expires: T + 10 });
      assert.equal(await m.deactivate(a.id, '', 'idle', holder.handle, T), 'not-activated', 'never activated');
      assert.equal(await m.activate(a.id, '', 'm', holder, T, T), 'activated');
      assert.equal(await m.deactivate(a.id, '', 'm', other.handle, T), 'not-activated', 'another task');
      assert.equal((await m.find(a.id, '', 'm', T))!.task, holder.handle, 'still held');
      assert.equal(await m.deactivate(a.id, '', 'm', holder.handle, T), 'deactivated');
      assert.equal((await m.find(a.id, '', 'm', T))!.task, null);
      assert.equal(await m.deactivate(a.id, '', 'm', holder.handle, T), 'not-activated', 'let go already');
      assert.equal(await m.activate(a.id, '', 'm', other, T, T), 'activated', 'free for another task');
      assert.equal(await m.deactivate(a.id, '', 'nope', holder.handle, T), 'not-found');
      assert.equal(await m.activate(a.id, '', 'short', holder, T, T), 'activated');
      assert.equal(await m.deactivate(a.id, '', 'short', holder.handle, T + 10), 'not-found', 'expired');
    });

    it('clear takes the activation away from whichever task holds it; false when the meeting is not there', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      const t = task();
      await meeting(a.id, 'm');
      await meeting(a.id, 'short', { expires: T + 10 });
      assert.equal(await m.activate(a.id, '', 'm', t, T, T), 'activated');
      assert.equal(await m.clear(a.id, '', 'm', T), true);
      assert.equal((await m.find(a.id, '', 'm', T))!.task, null);
      assert.equal(await m.deactivate(a.id, '', 'm', t.handle, T), 'not-activated', 'the task no longer holds it');
      assert.equal(await m.clear(a.id, '', 'm', T), true, 'a live meeting that nobody holds');
      assert.equal(await m.activate(a.id, '', 'm', task(), T, T), 'activated', 'free again');
      assert.equal(await m.clear(a.id, '', 'nope', T), false);
      assert.equal(await m.clear(a.id, '', 'short', T + 10), false, 'expired');
    });

    it('clearTasks and clearNode end those activations only, and count them', async () => {
      const a = await c.account();
      const m = c.store.meetings;
      const nodeA = unique('node-a-');
      const nodeB = unique('node-b-');
      const t1 = { handle: unique('task-'), node: nodeA };
      const t2 = { handle: unique('task-'), node: nodeA };
      const t3 = { handle: unique('task-'), node: nodeB };
      const t4 = { handle: unique('task-'), node: nodeB };
      for (const name of ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']) await meeting(a.id, name);
      assert.equal(await m.activate(a.id, '', 'm1', t1, T, T), 'activated');
      assert.equal(await m.activate(a.id, '', 'm2', t1, T, T), 'activated', 'a task may hold several meetings');
      assert.equal(await m.activate(a.id, '', 'm3', t2, T, T), 'activated');
      assert.equal(await m.activate(a.id, '', 'm4', t3, T, T), 'activated');
      assert.equal(await m.activate(a.id, '', 'm5', t4, T, T), 'activated');
      const holders = async (): Promise<(string | null)[]> => (await m.list(a.id, '', T)).map((r) => r.task);

      assert.equal(await m.clearTasks([t1.handle, t3.handle, unique('task-nobody-')]), 3);
      assert.deepEqual(await holders(), [null, null, t2.handle, null, t4.handle, null]);
      assert.equal(await m.clearTasks([t1.handle]), 0, 'nothing left of that task');
      assert.equal(await m.clearTasks([]), 0);

      assert.equal(await m.activate(a.id, '', 'm1', t1, T, T), 'activated');
      assert.equal(await m.clearNode(nodeA), 2, 't1 and t2 ran there');
      assert.deepEqual(await holders(), [null, null, null, null, t4.handle, null], "the other node's task keeps its meeting");
      assert.equal(await m.clearNode(nodeA), 0);
      assert.equal(await m.clearNode(unique('node-none-')), 0);
      assert.equal(await m.activate(a.id, '', 'm1', t3, T, T), 'activated', 'free again');
    });

    it('list returns the live meetings of the set, ordered by name', async () => {
      const a = await c.account();
      const b = await c.account();
      const m = c.store.meetings;
      const t = task();
      for (const name of ['b', 'a', 'C', '\u00e4', 'a b', '10', '9']) await meeting(a.id, name, { set: 'chat', parameter: `p-${name}` });
      await meeting(a.id, 'aa', { set: 'chat', expires: T + 10 });
      await meeting(a.id, 'other-set', { set: 'chat2' });
      await meeting(a.id, 'default-set');
      await meeting(b.id, 'other-account', { set: 'chat' });
      assert.equal(await m.activate(a.id, 'chat', 'b', t, T, T), 'activated');
      const listed = await m.list(a.id, 'chat', T + 10);
      assert.deepEqual(
        listed.map((r) => r.name),
        ['10', '9', 'C', 'a', 'a b', 'b', '\u00e4'],
        'by code point (the same on both engines), without the expired "aa"',
      );
      assert.deepEqual(listed[5], { accountId: a.id, set: 'chat', name: 'b', parameter: 'p-b', task: t.handle, expires: T + HOUR, created: T });
      assert.deepEqual((await m.list(a.id, 'chat', T)).map((r) => r.name).includes('aa'), true, 'still live before its expiry');
      assert.deepEqual(await m.list(a.id, 'nothing', T), []);
      assert.deepEqual(await m.list(a.id, 'chat', T + HOUR), [], 'all expired');
    });

    it('sweep deletes the expired meetings only, and counts them', async () => {
      // Times long before every other case's, so that this sweep deletes only its own meetings.
      const E = 1_000_000;
      const a = await c.account();
      const m = c.store.meetings;
      await meeting(a.id, 'x1', { expires: E + 100, now: E });
      await meeting(a.id, 'x2', { set: 's', expires: E + 200, now: E });
      await meeting(a.id, 'x3', { expires: E + 300, now: E });
      await meeting(a.id, 'live', { expires: E + 10_000, now: E });
      assert.equal(await m.activate(a.id, 's', 'x2', task(), E + 200, E), 'activated');
      assert.equal(await m.sweep(E + 50), 0, 'nothing expired yet');
      assert.equal(await m.sweep(E + 200), 2, 'expired at E+100 and E+200 (expiry is exclusive), activated or not');
      assert.equal(await m.remove(a.id, '', 'x1'), false, 'deleted');
      assert.equal(await m.remove(a.id, 's', 'x2'), false, 'deleted');
      assert.equal(await m.sweep(E + 200), 0, 'nothing more');
      assert.equal((await m.find(a.id, '', 'x3', E + 250))?.name, 'x3', 'not expired yet: kept');
      assert.equal((await m.find(a.id, '', 'live', E + 250))?.name, 'live');
      const h1 = await c.open();
      const h2 = await c.open();
      const [one, two] = await Promise.all([h1.meetings.sweep(E + 5000), h2.meetings.sweep(E + 5000)]);
      assert.equal(one + two, 1, 'two nodes sweeping at once delete x3 once');
      assert.equal((await m.find(a.id, '', 'live', E + 5000))?.name, 'live');
    });

    it('meetings go with their account', async () => {
      const a = await c.account();
      const b = await c.account();
      const m = c.store.meetings;
      await meeting(a.id, 'm');
      await meeting(a.id, 'n', { set: 's' });
      await meeting(b.id, 'm');
      assert.equal(await m.activate(a.id, '', 'm', task(), T, T), 'activated');
      assert.equal(await c.store.accounts.remove(a.id), true);
      assert.equal(await m.find(a.id, '', 'm', T), undefined);
      assert.deepEqual(await m.list(a.id, 's', T), []);
      assert.equal(await m.remove(a.id, '', 'm'), false, 'no row left behind');
      assert.equal(await m.remove(a.id, 's', 'n'), false, 'no row left behind');
      assert.equal((await m.find(b.id, '', 'm', T))?.accountId, b.id, "another account's stays");
    });

    it('two tasks on two nodes activating one meeting at once: exactly one gets it', async () => {
      const a = await c.account();
      const h1 = await c.open();
      const h2 = await c.open();
      for (let round = 0; round < 10; round++) {
        const name = `race-${round}`;
        await meeting(a.id, name);
        const t1 = task();
        const t2 = task();
        const outcomes = await Promise.all([h1.meetings.activate(a.id, '', name, t1, T, T), h2.meetings.activate(a.id, '', name, t2, T, T)]);
        assert.deepEqual([...outcomes].sort(), ['activated', 'already-activated'], `round ${round}: ${outcomes.join(', ')}`);
        const winner = outcomes[0] === 'activated' ? t1 : t2;
        assert.equal((await c.store.meetings.find(a.id, '', name, T))!.task, winner.handle, `round ${round}: the winner holds it`);
      }
    });

    it('creates racing on two nodes at the limit: only as many as the limit are made', async () => {
      const h1 = await c.open();
      const h2 = await c.open();
      for (let round = 0; round < 5; round++) {
        const a = await c.account();
        const outcomes = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            (i % 2 ? h1 : h2).meetings.create({ accountId: a.id, set: i % 3 ? '' : 'other', name: `m${i}`, parameter: null, expires: T + HOUR }, T, 2),
          ),
        );
        assert.equal(outcomes.filter((o) => o === 'created').length, 2, `round ${round}: ${outcomes.join(', ')}`);
        assert.equal(outcomes.filter((o) => o === 'limit').length, 4);
        const made = [...(await c.store.meetings.list(a.id, '', T)), ...(await c.store.meetings.list(a.id, 'other', T))];
        assert.equal(made.length, 2);
      }
    });
  });
}
