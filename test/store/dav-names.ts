/**
 * Store contract cases of the CardDAV resource names (src/store/*\/dav-names.ts): kept by
 * (mailbox, ORIGUID), the first record wins, gone with the mailbox, on both engines.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { it, useStore, type FreshStore } from './contract.js';

export function davNamesContract(fresh: FreshStore): void {
  describe('DAV names', () => {
    const c = useStore(fresh);

    it('records names by ORIGUID; the first record stays; lists all or some', async () => {
      const a = await c.account();
      const box = await c.store.mail.createMailbox(a.id, 'Contacts', 'IPF.Contact', false);
      const other = await c.store.mail.createMailbox(a.id, 'Other', 'IPF.Contact', false);
      await c.store.davNames.record(box.id, 1, 'a.vcf');
      await c.store.davNames.record(box.id, 2, 'b c.vcf');
      await c.store.davNames.record(box.id, 1, 'again.vcf');
      await c.store.davNames.record(other.id, 1, 'x.vcf');
      assert.deepEqual([...(await c.store.davNames.names(box.id)).entries()].sort(), [[1, 'a.vcf'], [2, 'b c.vcf']]);
      assert.deepEqual([...(await c.store.davNames.names(box.id, [2, 7])).entries()], [[2, 'b c.vcf']]);
      assert.deepEqual([...(await c.store.davNames.names(other.id)).entries()], [[1, 'x.vcf']]);
    });

    it('names go with their mailbox; a record for a mailbox that is gone does nothing', async () => {
      const a = await c.account();
      const box = await c.store.mail.createMailbox(a.id, 'Gone', 'IPF.Contact', false);
      await c.store.davNames.record(box.id, 1, 'a.vcf');
      await c.store.mail.removeMailboxes([box.id]);
      assert.equal((await c.store.davNames.names(box.id)).size, 0);
      await c.store.davNames.record(box.id, 2, 'b.vcf');
      assert.equal((await c.store.davNames.names(box.id)).size, 0);
    });
  });
}
