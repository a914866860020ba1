/**
 * The store contract of the File Storage (src/store/files.ts): run on both engines from
 * storeContract (test/store/contract.ts).
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { CHUNK, FileStoreError, type FileGuard, type LockRecord } from '../../src/store/files.js';
import type { Store } from '../../src/store/store.js';
import { it, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;
const G: FileGuard = { now: T };
const NO_LIMITS = {};

async function put(store: Store, accountId: number, path: string, data: Buffer, mode: Parameters<Store['files']['commitWrite']>[4] = { kind: 'replace' }, guard: FileGuard = G, limits = NO_LIMITS) {
  const blob = await store.files.stage(accountId, T);
  for (let i = 0; i < data.length; i += CHUNK) await store.files.stageChunk(blob, i, data.subarray(i, i + CHUNK));
  try {
    return await store.files.commitWrite(accountId, path, blob, data.length, mode, guard, limits);
  } catch (err) {
    await store.files.discard(blob);
    throw err;
  }
}

async function content(store: Store, accountId: number, path: string): Promise<string> {
  const data = Buffer.concat((await store.files.read(accountId, path, 0, Number.MAX_SAFE_INTEGER)).pieces);
  return data.toString();
}

async function refused(reason: string, work: Promise<unknown>): Promise<void> {
  await assert.rejects(work, (err: unknown) => err instanceof FileStoreError && err.reason === reason);
}

function lock(path: string, extra: Partial<LockRecord> = {}): LockRecord {
  return { token: `opaquelocktoken:${path}-${Math.random()}`, path, scope: 'exclusive', type: 'write', depth: 0, ownerXml: '', lockedBy: 1, expires: T + 60_000, ...extra };
}

export function fileStoreContract(fresh: FreshStore): void {
  describe('files', () => {
    const c = useStore(fresh);

    it('write, stat, read ranges, replace, append and positional writes', async () => {
      const a = await c.account();
      const first = await put(c.store, a.id, 'a.txt', Buffer.from('hello world'));
      assert.equal(first.created, true);
      assert.equal(first.record.size, 11);
      assert.equal(await content(c.store, a.id, 'a.txt'), 'hello world');
      assert.equal(Buffer.concat((await c.store.files.read(a.id, 'a.txt', 6, 9)).pieces).toString(), 'wor');
      await refused('beyond-eof', c.store.files.read(a.id, 'a.txt', 12, 20));
      const appended = await put(c.store, a.id, 'a.txt', Buffer.from('!!'), { kind: 'append' });
      assert.equal(appended.created, false);
      assert.notEqual(appended.record.etag, first.record.etag);
      await put(c.store, a.id, 'a.txt', Buffer.from('W'), { kind: 'at', position: 6 });
      assert.equal(await content(c.store, a.id, 'a.txt'), 'hello World!!');
      await put(c.store, a.id, 'a.txt', Buffer.from('XYZ'), { kind: 'at', position: 12 });
      assert.equal(await content(c.store, a.id, 'a.txt'), 'hello World!XYZ');
      await refused('beyond-eof', put(c.store, a.id, 'a.txt', Buffer.from('x'), { kind: 'at', position: 100 }));
      await refused('exists', put(c.store, a.id, 'a.txt', Buffer.from('x'), { kind: 'new' }));
      await put(c.store, a.id, 'a.txt', Buffer.from('short'));
      assert.equal(await content(c.store, a.id, 'a.txt'), 'short');
      // Another handle (another process) sees the same.
      const other = await c.open();
      assert.equal(await content(other, a.id, 'a.txt'), 'short');
    });

    it('large content in chunks: positional writes across chunk boundaries, ranges', async () => {
      const a = await c.account();
      const size = CHUNK * 3 + 1000;
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i++) data[i] = i % 251;
      await put(c.store, a.id, 'big', data.subarray(0, CHUNK + 5));
      await put(c.store, a.id, 'big', data.subarray(CHUNK + 5), { kind: 'append' });
      const { pieces } = await c.store.files.read(a.id, 'big', 0, size);
      assert.ok(pieces.length > 1, 'a read across chunks gives them one by one, not copied into one buffer');
      assert.deepEqual(Buffer.concat(pieces), data);
      const patch = Buffer.alloc(CHUNK + 10, 7);
      await put(c.store, a.id, 'big', patch, { kind: 'at', position: CHUNK - 5 });
      patch.copy(data, CHUNK - 5);
      assert.deepEqual(Buffer.concat((await c.store.files.read(a.id, 'big', 0, size)).pieces), data);
      assert.deepEqual(Buffer.concat((await c.store.files.read(a.id, 'big', CHUNK - 100, CHUNK * 2 + 100)).pieces), data.subarray(CHUNK - 100, CHUNK * 2 + 100));
      await refused('precondition-failed', c.store.files.read(a.id, 'big', 0, 10, 'not-the-etag'));
    });

    it('a discarded staging blob leaves nothing; directories, listing, usage', async () => {
      const a = await c.account();
      const blob = await c.store.files.stage(a.id, T);
      await c.store.files.stageChunk(blob, 0, Buffer.from('partial'));
      await c.store.files.discard(blob);
      assert.equal(await c.store.files.stat(a.id, 'x'), undefined);
      await refused('parent-missing', put(c.store, a.id, 'd/x', Buffer.from('1')));
      await c.store.files.createDirectory(a.id, 'd', G, NO_LIMITS);
      await refused('exists', c.store.files.createDirectory(a.id, 'd', G, NO_LIMITS));
      await c.store.files.createDirectory(a.id, 'd/e', G, NO_LIMITS);
      await put(c.store, a.id, 'd/x', Buffer.from('12'));
      await put(c.store, a.id, 'd/e/y', Buffer.from('345'));
      await put(c.store, a.id, 'top', Buffer.from('6'));
      assert.deepEqual((await c.store.files.list(a.id, '')).map((r) => [r.path, r.kind]), [['d', 'directory'], ['top', 'file']]);
      assert.deepEqual((await c.store.files.list(a.id, 'd')).map((r) => r.path), ['d/e', 'd/x']);
      await refused('not-a-directory', c.store.files.list(a.id, 'top'));
      await refused('not-found', c.store.files.list(a.id, 'nope'));
      assert.deepEqual(await c.store.files.directories(a.id), ['d', 'd/e']);
      assert.deepEqual(await c.store.files.usage(a.id, ''), { files: 3, size: 6 });
      assert.deepEqual(await c.store.files.usage(a.id, 'd'), { files: 2, size: 5 });
      assert.deepEqual(await c.store.files.totals(a.id), { entries: 5, size: 6 });
      await refused('not-empty', c.store.files.remove(a.id, 'd', { recursive: false }, G));
      await c.store.files.remove(a.id, 'd/e/y', { recursive: false }, G);
      await c.store.files.remove(a.id, 'd', { recursive: true }, G);
      assert.deepEqual(await c.store.files.directories(a.id), []);
      assert.deepEqual(await c.store.files.totals(a.id), { entries: 1, size: 1 });
    });

    it('limits are checked in the write', async () => {
      const a = await c.account();
      await put(c.store, a.id, 'one', Buffer.from('12345'), { kind: 'replace' }, G, { maxBytes: 8, maxFiles: 2 });
      await refused('limit-exceeded', put(c.store, a.id, 'one', Buffer.from('67890'), { kind: 'append' }, G, { maxBytes: 8 }));
      await put(c.store, a.id, 'two', Buffer.from('678'), { kind: 'replace' }, G, { maxBytes: 8, maxFiles: 2 });
      await refused('limit-exceeded', put(c.store, a.id, 'three', Buffer.from(''), { kind: 'replace' }, G, { maxFiles: 2 }));
      await refused('limit-exceeded', c.store.files.createDirectory(a.id, 'dir', G, { maxFiles: 2 }));
      // A replacement that shrinks is fine at the limit.
      await put(c.store, a.id, 'one', Buffer.from('1'), { kind: 'replace' }, G, { maxBytes: 8, maxFiles: 2 });
      assert.deepEqual(await c.store.files.totals(a.id), { entries: 2, size: 4 });
    });

    it('rename moves a tree in one step; copy duplicates it', async () => {
      const a = await c.account();
      await c.store.files.createDirectory(a.id, 'src', G, NO_LIMITS);
      await c.store.files.createDirectory(a.id, 'src/sub', G, NO_LIMITS);
      await put(c.store, a.id, 'src/sub/f', Buffer.from('data'));
      await c.store.files.updateAttributes(a.id, 'src/sub/f', [{ mode: 'add', attribute: { name: 'k', xml: '<k>v</k>' } }], G);
      await c.store.files.createDirectory(a.id, 'other', G, NO_LIMITS);
      await refused('invalid-name', c.store.files.move(a.id, 'src', 'src/sub/x', { overwrite: false }, G));
      await c.store.files.move(a.id, 'src', 'other/dst', { overwrite: false }, G);
      assert.equal(await c.store.files.stat(a.id, 'src'), undefined);
      assert.deepEqual((await c.store.files.list(a.id, 'other/dst/sub')).map((r) => r.path), ['other/dst/sub/f']);
      assert.equal(await content(c.store, a.id, 'other/dst/sub/f'), 'data');
      await c.store.files.copy(a.id, 'other/dst', 'copy', { overwrite: false, depth: 'infinity' }, G, NO_LIMITS);
      assert.equal(await content(c.store, a.id, 'copy/sub/f'), 'data');
      assert.deepEqual(await c.store.files.attributes(a.id, 'copy/sub/f'), [{ name: 'k', xml: '<k>v</k>' }]);
      await refused('exists', c.store.files.copy(a.id, 'other/dst', 'copy', { overwrite: false, depth: 'infinity' }, G, NO_LIMITS));
      await put(c.store, a.id, 'copy/sub/f', Buffer.from('changed'));
      assert.equal(await content(c.store, a.id, 'other/dst/sub/f'), 'data');
      await put(c.store, a.id, 'file2', Buffer.from('two'));
      await refused('exists', c.store.files.move(a.id, 'file2', 'copy/sub/f', { overwrite: false }, G));
      assert.deepEqual(await c.store.files.move(a.id, 'file2', 'copy/sub/f', { overwrite: true }, G), { created: false });
      assert.equal(await content(c.store, a.id, 'copy/sub/f'), 'two');
    });

    it('attributes: add, replace, delete', async () => {
      const a = await c.account();
      await put(c.store, a.id, 'f', Buffer.from(''));
      const f = c.store.files;
      await f.updateAttributes(a.id, 'f', [{ mode: 'add', attribute: { name: 'x', xml: '<x>1</x>' } }, { mode: 'add', attribute: { name: 'x', xml: '<x>2</x>' } }], G);
      assert.equal((await f.attributes(a.id, 'f'))!.length, 2);
      await f.updateAttributes(a.id, 'f', [{ mode: 'replace', attribute: { name: 'x', xml: '<x>3</x>' } }], G);
      assert.deepEqual(await f.attributes(a.id, 'f'), [{ name: 'x', xml: '<x>3</x>' }]);
      await f.updateAttributes(a.id, 'f', [{ mode: 'delete', name: 'x' }], G);
      assert.deepEqual(await f.attributes(a.id, 'f'), []);
      await refused('not-found', f.updateAttributes(a.id, 'nope', [], G));
    });

    it('locks: conflicts, tokens, depth, expiry, create', async () => {
      const a = await c.account();
      const f = c.store.files;
      await f.createDirectory(a.id, 'dir', G, NO_LIMITS);
      await put(c.store, a.id, 'dir/f', Buffer.from('x'));
      await refused('not-found', f.lock(a.id, lock('dir/none'), { create: false, now: T }, NO_LIMITS));
      const created = await f.lock(a.id, lock('dir/new'), { create: true, now: T }, NO_LIMITS);
      assert.equal((await f.stat(a.id, 'dir/new'))?.size, 0);
      await refused('locked', put(c.store, a.id, 'dir/new', Buffer.from('y')));
      await put(c.store, a.id, 'dir/new', Buffer.from('y'), { kind: 'replace' }, { now: T, lockTokens: [created.token] });
      assert.equal(await f.unlock(a.id, 'dir/new', created.token), true);
      assert.equal(await f.unlock(a.id, 'dir/new', created.token), false);

      const deep = await f.lock(a.id, lock('dir', { depth: 'infinity' }), { create: false, now: T }, NO_LIMITS);
      await refused('locked', put(c.store, a.id, 'dir/f', Buffer.from('z')));
      await refused('locked', f.lock(a.id, lock('dir/f', { scope: 'shared' }), { create: false, now: T }, NO_LIMITS));
      await refused('locked', f.remove(a.id, 'dir', { recursive: true }, G));
      // Seen from another handle (another node).
      const other = await c.open();
      await refused('locked', put(other, a.id, 'dir/f', Buffer.from('z')));
      // Expired: ignored, and pruned by the next lock.
      await put(c.store, a.id, 'dir/f', Buffer.from('z'), { kind: 'replace' }, { now: T + 120_000 });
      await f.lock(a.id, lock('dir/f'), { create: false, now: T + 120_000 }, NO_LIMITS);
      assert.equal((await f.locks(a.id, T + 120_000)).some((l) => l.token === deep.token), false);

      // Shared locks share; an exclusive one conflicts with them.
      await put(c.store, a.id, 's', Buffer.from(''));
      await f.lock(a.id, lock('s', { scope: 'shared' }), { create: false, now: T }, NO_LIMITS);
      await f.lock(a.id, lock('s', { scope: 'shared' }), { create: false, now: T }, NO_LIMITS);
      await refused('locked', f.lock(a.id, lock('s'), { create: false, now: T }, NO_LIMITS));
      const refreshed = await f.refreshLock(a.id, 's', (await f.locks(a.id, T)).find((l) => l.path === 's')!.token, T + 999_000, T);
      assert.equal(refreshed.expires, T + 999_000);
      await refused('not-found', f.refreshLock(a.id, 's', 'opaquelocktoken:none', T + 1, T));
    });

    it('preconditions: If-Match and If-None-Match', async () => {
      const a = await c.account();
      const { record } = await put(c.store, a.id, 'p', Buffer.from('1'));
      await refused('precondition-failed', put(c.store, a.id, 'p', Buffer.from('2'), { kind: 'replace' }, { now: T, ifMatch: 'other' }));
      await refused('precondition-failed', put(c.store, a.id, 'p', Buffer.from('2'), { kind: 'replace' }, { now: T, ifNoneMatch: '*' }));
      await put(c.store, a.id, 'p', Buffer.from('2'), { kind: 'replace' }, { now: T, ifMatch: record.etag });
      await refused('precondition-failed', put(c.store, a.id, 'q', Buffer.from('2'), { kind: 'replace' }, { now: T, ifMatch: '*' }));
    });

    it('subscriptions: added and removed at once; beyond the limit nothing changes, also when two handles add at once', async () => {
      const a = await c.account();
      assert.equal(await c.store.files.updateSubscriptions(a.id, [{ name: 'b', add: true }, { name: 'a', add: true }, { name: 'a', add: true }], 3), true);
      assert.deepEqual(await c.store.files.subscriptions(a.id), ['a', 'b']);
      assert.equal(await c.store.files.updateSubscriptions(a.id, [{ name: 'b', add: false }], 3), true);
      assert.deepEqual(await c.store.files.subscriptions(a.id), ['a']);
      assert.equal(await c.store.files.updateSubscriptions(a.id, [{ name: 'x', add: true }, { name: 'a', add: false }, { name: 'y', add: true }, { name: 'z', add: true }], 2), false);
      assert.deepEqual(await c.store.files.subscriptions(a.id), ['a'], 'a refused update changes nothing, not even its removals');
      // Two handles each adding two names to an account with room for three more: one of them is refused.
      const other = await c.open();
      const results = await Promise.all([
        c.store.files.updateSubscriptions(a.id, [{ name: 'p1', add: true }, { name: 'p2', add: true }], 4),
        other.files.updateSubscriptions(a.id, [{ name: 'q1', add: true }, { name: 'q2', add: true }], 4),
      ]);
      assert.deepEqual([...results].sort(), [false, true]);
      assert.equal((await c.store.files.subscriptions(a.id)).length, 3);
    });

    it('concurrent appends from two handles all land', async () => {
      const a = await c.account();
      const other = await c.open();
      await put(c.store, a.id, 'log', Buffer.from(''));
      await Promise.all(Array.from({ length: 10 }, (_, i) => put(i % 2 ? other : c.store, a.id, 'log', Buffer.from('ab'), { kind: 'append' })));
      assert.equal((await c.store.files.stat(a.id, 'log'))!.size, 20);
    });
  });
}
