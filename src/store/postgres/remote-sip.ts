import {
  REMOTE_SIP_COLUMNS,
  toRemoteSip,
  type RemoteSipPut,
  type RemoteSipRecord,
  type RemoteSipRow,
  type RemoteSipState,
  type RemoteSipStore,
} from '../remote-sip.js';
import type { Db, Sql } from './db.js';

const COLUMNS = REMOTE_SIP_COLUMNS;

const SQL = {
  // Serializes the updates of one account on every node, so that the limit holds.
  lockAccount: { name: 'remoteSip.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  list: { name: 'remoteSip.list', text: `SELECT ${COLUMNS} FROM remote_sip WHERE account_id = $1 ORDER BY name` },
  remove: { name: 'remoteSip.remove', text: 'DELETE FROM remote_sip WHERE account_id = $1 AND name = $2' },
  put: {
    name: 'remoteSip.put',
    text: `INSERT INTO remote_sip (account_id, name, domain, proxy, user_name, auth_name, password, expires, enabled, contact_user, version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)
           ON CONFLICT (account_id, name) DO UPDATE SET
             domain = excluded.domain, proxy = excluded.proxy, user_name = excluded.user_name, auth_name = excluded.auth_name,
             password = excluded.password, expires = excluded.expires, enabled = excluded.enabled, version = remote_sip.version + 1,
             registered_until = NULL, last_attempt = NULL, last_error = NULL`,
  },
  count: { name: 'remoteSip.count', text: 'SELECT count(*) AS n FROM remote_sip WHERE account_id = $1' },
  byContact: { name: 'remoteSip.byContact', text: `SELECT ${COLUMNS} FROM remote_sip WHERE contact_user = $1` },
  dropDisabled: { name: 'remoteSip.dropDisabled', text: 'UPDATE remote_sip SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND NOT enabled' },
  renew: { name: 'remoteSip.renew', text: 'UPDATE remote_sip SET lease_until = $2 WHERE lease_owner = $1 AND enabled' },
  heldCount: { name: 'remoteSip.heldCount', text: 'SELECT count(*) AS n FROM remote_sip WHERE lease_owner = $1 AND enabled' },
  // Rows another node is claiming right now are skipped; a row whose lease was taken meanwhile
  // is read again under its lock (FOR UPDATE re-checks the condition) and left out.
  take: {
    name: 'remoteSip.take',
    text: `WITH c AS (
             SELECT account_id, name FROM remote_sip
             WHERE enabled AND (lease_until IS NULL OR lease_until <= $2) AND (lease_owner IS NULL OR lease_owner <> $1)
             ORDER BY lease_until IS NOT NULL, account_id, name LIMIT $4 FOR UPDATE SKIP LOCKED)
           UPDATE remote_sip r SET lease_owner = $1, lease_until = $3 FROM c WHERE r.account_id = c.account_id AND r.name = c.name`,
  },
  held: { name: 'remoteSip.held', text: `SELECT ${COLUMNS} FROM remote_sip WHERE lease_owner = $1 AND enabled ORDER BY account_id, name` },
  release: { name: 'remoteSip.release', text: 'UPDATE remote_sip SET lease_owner = NULL, lease_until = NULL WHERE account_id = $1 AND name = $2 AND lease_owner = $3' },
  setState: {
    name: 'remoteSip.setState',
    text: `UPDATE remote_sip SET registered_until = $5, last_attempt = $6, last_error = $7
           WHERE account_id = $1 AND name = $2 AND lease_owner = $3 AND version = $4`,
  },
} satisfies Record<string, Sql>;

/** Thrown inside a transaction to roll it back when the limit would be passed. */
class OverLimit extends Error {}

/**
 * Remote SIP registrations in PostgreSQL (see src/store/remote-sip.ts). An update locks the
 * account's row first (the limit holds across nodes); claims take rows FOR UPDATE SKIP LOCKED,
 * so two nodes never take the same record.
 */
export class PgRemoteSip implements RemoteSipStore {
  constructor(private readonly db: Db) {}

  async list(accountId: number): Promise<RemoteSipRecord[]> {
    return (await this.db.rows<RemoteSipRow>(SQL.list, [accountId])).map(toRemoteSip);
  }

  async update(accountId: number, changes: { put: RemoteSipPut[]; remove: string[] }, maxPerAccount: number): Promise<'ok' | 'limit'> {
    try {
      await this.db.tx(async (tx) => {
        await tx.run(SQL.lockAccount, [accountId]);
        for (const name of changes.remove) await tx.run(SQL.remove, [accountId, name]);
        for (const p of changes.put) {
          await tx.run(SQL.put, [accountId, p.name, p.domain, p.proxy, p.user, p.authName, p.password, p.expires, p.enabled, p.contactUser]);
        }
        const row = await tx.row<{ n: number }>(SQL.count, [accountId]);
        if ((row?.n ?? 0) > maxPerAccount) throw new OverLimit();
      });
      return 'ok';
    } catch (err) {
      if (err instanceof OverLimit) return 'limit';
      throw err;
    }
  }

  async byContact(contactUser: string): Promise<RemoteSipRecord | undefined> {
    const row = await this.db.row<RemoteSipRow>(SQL.byContact, [contactUser]);
    return row === undefined ? undefined : toRemoteSip(row);
  }

  async claim(owner: string, now: number, until: number, limit: number): Promise<RemoteSipRecord[]> {
    return this.db.tx(async (tx) => {
      await tx.run(SQL.dropDisabled, [owner]);
      await tx.run(SQL.renew, [owner, until]);
      const held = (await tx.row<{ n: number }>(SQL.heldCount, [owner]))?.n ?? 0;
      const room = Math.max(0, limit - held);
      if (room > 0) await tx.run(SQL.take, [owner, now, until, room]);
      return (await tx.rows<RemoteSipRow>(SQL.held, [owner])).map(toRemoteSip);
    });
  }

  async release(accountId: number, name: string, owner: string): Promise<void> {
    await this.db.run(SQL.release, [accountId, name, owner]);
  }

  async setState(accountId: number, name: string, owner: string, version: number, state: RemoteSipState): Promise<boolean> {
    return (await this.db.run(SQL.setState, [accountId, name, owner, version, state.registeredUntil, state.lastAttempt, state.lastError])) > 0;
  }
}
