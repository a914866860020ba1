/**
 * Store contract cases of the accounts' S/MIME material (src/store/smime.ts), on both engines:
 * a key pair set, replaced and removed; the conditional password change (reseal) and
 * certificate renewal; a key added only where none is, replaced only over the sealed key read
 * before; peer certificates per address (trusted over untrusted; a newer trusted one replaces an
 * older; an untrusted one never replaces a trusted or a live untrusted one), the per-account
 * limit; an unknown account; the account's removal.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { SmimeKeyRecord } from '../../src/store/smime.js';
import { NotFoundError } from '../../src/store/store.js';
import { it, useStore, type FreshStore } from './contract.js';

const T = 1_700_000_000_000;
const DAY = 86_400_000;

function key(accountId: number, fields: Partial<SmimeKeyRecord> = {}): SmimeKeyRecord {
  return { accountId, certPem: 'CERT-1', sealedKey: 'SEALED-1', issued: true, updated: T, ...fields };
}

export function smimeContract(fresh: FreshStore): void {
  describe('smime', () => {
    const c = useStore(fresh);

    it('a key pair: set, read back as written, replaced, removed', async () => {
      const a = await c.account();
      const s = c.store.smime;
      assert.equal(await s.getKey(a.id), undefined, 'none at first');
      assert.equal(await s.putKey(key(a.id)), true);
      assert.deepEqual(await s.getKey(a.id), key(a.id));
      assert.equal(await s.putKey(key(a.id, { certPem: 'CERT-2', sealedKey: 'SEALED-2', issued: false, updated: T + 1 }), 'SEALED-1'), true);
      assert.deepEqual(await s.getKey(a.id), key(a.id, { certPem: 'CERT-2', sealedKey: 'SEALED-2', issued: false, updated: T + 1 }));
      assert.equal(await s.deleteKey(a.id), true);
      assert.equal(await s.getKey(a.id), undefined);
      assert.equal(await s.deleteKey(a.id), false, 'nothing left to remove');
    });

    it('a key is added only where there is none, and replaced only over the sealed key read before (two racing: one wins)', async () => {
      const a = await c.account();
      const s = c.store.smime;
      assert.equal(await s.putKey(key(a.id)), true);
      assert.equal(await s.putKey(key(a.id, { certPem: 'CERT-X', sealedKey: 'SEALED-X' })), false, 'an add over an existing key changes nothing');
      assert.deepEqual(await s.getKey(a.id), key(a.id));
      assert.equal(await s.putKey(key(a.id, { sealedKey: 'SEALED-X' }), 'SEALED-other'), false, 'a stale expectation changes nothing');
      assert.deepEqual(await s.getKey(a.id), key(a.id));
      // Two handles (two nodes) replace the same key at once: exactly one wins.
      const other = await c.open();
      const results = await Promise.all([
        s.putKey(key(a.id, { certPem: 'CERT-A', sealedKey: 'SEALED-A' }), 'SEALED-1'),
        other.smime.putKey(key(a.id, { certPem: 'CERT-B', sealedKey: 'SEALED-B' }), 'SEALED-1'),
      ]);
      assert.deepEqual(results.filter(Boolean).length, 1, 'one of the two replaced it');
      const kept = (await s.getKey(a.id))!;
      assert.equal(kept.sealedKey, results[0] ? 'SEALED-A' : 'SEALED-B');
      // Two adds on an account without a key: one wins.
      const b = await c.account();
      const adds = await Promise.all([s.putKey(key(b.id, { sealedKey: 'SEALED-A' })), other.smime.putKey(key(b.id, { sealedKey: 'SEALED-B' }))]);
      assert.equal(adds.filter(Boolean).length, 1);
    });

    it('peer certificates and trust: untrusted only where none (or an expired untrusted one) is, never over a trusted one; trusted over untrusted; same trust: later notAfter', async () => {
      const a = await c.account();
      const s = c.store.smime;
      const put = (certPem: string, trusted: boolean, notAfter: number, updated = T) => s.putPeerCertificate({ accountId: a.id, address: 'eve@x.test', certPem, notAfter, trusted, updated }, 10);
      assert.equal(await put('U1', false, T + DAY), 'stored', 'untrusted where there is none');
      assert.equal(await put('U2', false, T + 5 * DAY), 'kept', 'an untrusted one does not replace a live untrusted one, even a later one');
      assert.equal((await s.getPeerCertificate(a.id, 'eve@x.test'))!.certPem, 'U1');
      assert.equal(await put('T1', true, T + DAY / 2), 'stored', 'trusted replaces untrusted, even expiring earlier');
      assert.deepEqual(await s.getPeerCertificate(a.id, 'eve@x.test'), { accountId: a.id, address: 'eve@x.test', certPem: 'T1', notAfter: T + DAY / 2, trusted: true, updated: T });
      assert.equal(await put('U3', false, T + 9 * DAY, T + DAY), 'kept', 'untrusted never replaces trusted, even an expired one');
      assert.equal(await put('T0', true, T + DAY / 4), 'kept', 'trusted: an earlier notAfter does not replace');
      assert.equal(await put('T2', true, T + 2 * DAY), 'stored', 'trusted: a later notAfter replaces');
      assert.equal((await s.getPeerCertificate(a.id, 'eve@x.test'))!.certPem, 'T2');
      // An untrusted one kept then expired may give way to a newer untrusted one.
      const b = await c.account();
      const putB = (certPem: string, notAfter: number, updated: number) => s.putPeerCertificate({ accountId: b.id, address: 'eve@x.test', certPem, notAfter, trusted: false, updated }, 10);
      assert.equal(await putB('U1', T + DAY, T), 'stored');
      assert.equal(await putB('U2', T + 3 * DAY, T + DAY / 2), 'kept', 'the stored one is still valid');
      assert.equal(await putB('U2', T + 3 * DAY, T + 2 * DAY), 'stored', 'the stored one has expired');
      assert.equal((await s.getPeerCertificate(b.id, 'eve@x.test'))!.certPem, 'U2');
    });

    it('reseal and certificate renewal happen only over the sealed key read before', async () => {
      const a = await c.account();
      const s = c.store.smime;
      await s.putKey(key(a.id));
      assert.equal(await s.reseal(a.id, 'SEALED-other', 'SEALED-2', T + 1), false, 'a stale expectation changes nothing');
      assert.equal((await s.getKey(a.id))!.sealedKey, 'SEALED-1');
      assert.equal(await s.reseal(a.id, 'SEALED-1', 'SEALED-2', T + 2), true);
      assert.equal((await s.getKey(a.id))!.sealedKey, 'SEALED-2');
      assert.equal(await s.replaceCertificate(a.id, 'SEALED-1', 'CERT-x', T + 3), false, 'the key changed meanwhile');
      assert.equal(await s.replaceCertificate(a.id, 'SEALED-2', 'CERT-2', T + 3), true);
      assert.deepEqual(await s.getKey(a.id), key(a.id, { certPem: 'CERT-2', sealedKey: 'SEALED-2', updated: T + 3 }));
      // A second handle (another process) sees the same and races the same way.
      const other = await c.open();
      assert.equal(await other.smime.reseal(a.id, 'SEALED-1', 'SEALED-3', T + 4), false);
      assert.equal(await other.smime.reseal(a.id, 'SEALED-2', 'SEALED-3', T + 4), true);
      assert.equal((await s.getKey(a.id))!.sealedKey, 'SEALED-3');
      await s.deleteKey(a.id);
      assert.equal(await s.reseal(a.id, 'SEALED-3', 'SEALED-4', T + 5), false, 'no key: nothing to reseal');
    });

    it('peer certificates: one per address, a later notAfter replaces, the same or an earlier one is kept out; the limit', async () => {
      const a = await c.account();
      const s = c.store.smime;
      assert.equal(await s.getPeerCertificate(a.id, 'bob@x.test'), undefined);
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'bob@x.test', certPem: 'B1', notAfter: T + DAY, trusted: true, updated: T }, 2), 'stored');
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'bob@x.test', certPem: 'B0', notAfter: T, trusted: true, updated: T + 1 }, 2), 'kept');
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'bob@x.test', certPem: 'B1', notAfter: T + DAY, trusted: true, updated: T + 1 }, 2), 'kept', 'the same one again changes nothing');
      assert.equal((await s.getPeerCertificate(a.id, 'bob@x.test'))!.certPem, 'B1');
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'bob@x.test', certPem: 'B2', notAfter: T + 2 * DAY, trusted: true, updated: T + 2 }, 2), 'stored');
      assert.deepEqual(await s.getPeerCertificate(a.id, 'bob@x.test'), { accountId: a.id, address: 'bob@x.test', certPem: 'B2', notAfter: T + 2 * DAY, trusted: true, updated: T + 2 });
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'carol@x.test', certPem: 'C1', notAfter: T + DAY, trusted: true, updated: T }, 2), 'stored');
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'dave@x.test', certPem: 'D1', notAfter: T + DAY, trusted: true, updated: T }, 2), 'full');
      assert.equal(await s.getPeerCertificate(a.id, 'dave@x.test'), undefined);
      assert.equal(await s.putPeerCertificate({ accountId: a.id, address: 'carol@x.test', certPem: 'C2', notAfter: T + 3 * DAY, trusted: true, updated: T }, 2), 'stored', 'a known address may still be renewed at the limit');
      const b = await c.account();
      assert.equal(await s.getPeerCertificate(b.id, 'bob@x.test'), undefined, 'per account');
    });

    it('an unknown account is NotFoundError; removing the account removes its material', async () => {
      const s = c.store.smime;
      await assert.rejects(s.putKey(key(987654321)), NotFoundError);
      await assert.rejects(s.putPeerCertificate({ accountId: 987654321, address: 'x@y.test', certPem: 'X', notAfter: T, trusted: false, updated: T }, 10), NotFoundError);
      const a = await c.account();
      await s.putKey(key(a.id));
      await s.putPeerCertificate({ accountId: a.id, address: 'bob@x.test', certPem: 'B1', notAfter: T + DAY, trusted: true, updated: T }, 10);
      await c.store.accounts.remove(a.id);
      assert.equal(await s.getKey(a.id), undefined);
      assert.equal(await s.getPeerCertificate(a.id, 'bob@x.test'), undefined);
    });
  });
}
