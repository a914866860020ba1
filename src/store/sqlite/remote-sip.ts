import type { Database as SqliteDatabase } from 'better-sqlite3';
import {
  REMOTE_SIP_COLUMNS,
  toRemoteSip,
  type RemoteSipPut,
  type RemoteSipRecord,
  type RemoteSipRow,
  type RemoteSipState,
  type RemoteSipStore,
} from '../remote-sip.js';
import { prepareAll } from './util.js';

const COLUMNS = REMOTE_SIP_COLUMNS;

/** Thrown inside a transaction to roll it back when the limit would be passed. */
class OverLimit extends Error {}

/**
 * Remote SIP registrations in SQLite (see src/store/remote-sip.ts). Writes and claims are
 * IMMEDIATE transactions: the write lock is taken before anything is read, so two processes
 * sharing the file decide one after the other.
 */
export class SqliteRemoteSip implements RemoteSipStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      list: `SELECT ${COLUMNS} FROM remote_sip WHERE account_id = ? ORDER BY name`,
      remove: 'DELETE FROM remote_sip WHERE account_id = ? AND name = ?',
      put: `INSERT INTO remote_sip (account_id, name, domain, proxy, user_name, auth_name, password, expires, enabled, contact_user, version)
            VALUES (@account, @name, @domain, @proxy, @user, @authName, @password, @expires, @enabled, @contactUser, 1)
            ON CONFLICT (account_id, name) DO UPDATE SET
              domain = excluded.domain, proxy = excluded.proxy, user_name = excluded.user_name, auth_name = excluded.auth_name,
              password = excluded.password, expires = excluded.expires, enabled = excluded.enabled, version = remote_sip.version + 1,
              registered_until = NULL, last_attempt = NULL, last_error = NULL`,
      count: 'SELECT count(*) AS n FROM remote_sip WHERE account_id = ?',
      byContact: `SELECT ${COLUMNS} FROM remote_sip WHERE contact_user = ?`,
      dropDisabled: 'UPDATE remote_sip SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ? AND enabled = 0',
      renew: 'UPDATE remote_sip SET lease_until = ? WHERE lease_owner = ? AND enabled = 1',
      free: `SELECT account_id, name FROM remote_sip WHERE enabled = 1 AND (lease_until IS NULL OR lease_until <= ?) AND (lease_owner IS NULL OR lease_owner <> ?)
             ORDER BY lease_until IS NOT NULL, account_id, name LIMIT ?`,
      take: 'UPDATE remote_sip SET lease_owner = ?, lease_until = ? WHERE account_id = ? AND name = ?',
      held: `SELECT ${COLUMNS} FROM remote_sip WHERE lease_owner = ? AND enabled = 1 ORDER BY account_id, name`,
      release: 'UPDATE remote_sip SET lease_owner = NULL, lease_until = NULL WHERE account_id = ? AND name = ? AND lease_owner = ?',
      setState: `UPDATE remote_sip SET registered_until = ?, last_attempt = ?, last_error = ?
                 WHERE account_id = ? AND name = ? AND lease_owner = ? AND version = ?`,
    });
  }

  async list(accountId: number): Promise<RemoteSipRecord[]> {
    return (this.sql.list.all(accountId) as RemoteSipRow[]).map(toRemoteSip);
  }

  async update(accountId: number, changes: { put: RemoteSipPut[]; remove: string[] }, maxPerAccount: number): Promise<'ok' | 'limit'> {
    try {
      this.db
        .transaction(() => {
          for (const name of changes.remove) this.sql.remove.run(accountId, name);
          for (const p of changes.put) {
            this.sql.put.run({
              account: accountId,
              name: p.name,
              domain: p.domain,
              proxy: p.proxy,
              user: p.user,
              authName: p.authName,
              password: p.password,
              expires: p.expires,
              enabled: p.enabled ? 1 : 0,
              contactUser: p.contactUser,
            });
          }
          if ((this.sql.count.get(accountId) as { n: number }).n > maxPerAccount) throw new OverLimit();
        })
        .immediate();
      return 'ok';
    } catch (err) {
      if (err instanceof OverLimit) return 'limit';
      throw err;
    }
  }

  async byContact(contactUser: string): Promise<RemoteSipRecord | undefined> {
    const row = this.sql.byContact.get(contactUser) as RemoteSipRow | undefined;
    return row === undefined ? undefined : toRemoteSip(row);
  }

  async claim(owner: string, now: number, until: number, limit: number): Promise<RemoteSipRecord[]> {
    return this.db
      .transaction(() => {
        this.sql.dropDisabled.run(owner);
        this.sql.renew.run(until, owner);
        const held = (this.sql.held.all(owner) as RemoteSipRow[]).length;
        const room = Math.max(0, limit - held);
        if (room > 0) {
          for (const r of this.sql.free.all(now, owner, room) as { account_id: number; name: string }[]) this.sql.take.run(owner, until, r.account_id, r.name);
        }
        return (this.sql.held.all(owner) as RemoteSipRow[]).map(toRemoteSip);
      })
      .immediate();
  }

  async release(accountId: number, name: string, owner: string): Promise<void> {
    this.sql.release.run(accountId, name, owner);
  }

  async setState(accountId: number, name: string, owner: string, version: number, state: RemoteSipState): Promise<boolean> {
    return this.sql.setState.run(state.registeredUntil, state.lastAttempt, state.lastError, accountId, name, owner, version).changes > 0;
  }
}
