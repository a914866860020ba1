import { AlreadyExistsError, type ClusterStore, type NodeRecord, type SessionRecord, type SharedStateStore, type SharedUpdate } from '../store.js';
import { isUniqueViolation, toText, type Db, type Sql } from './db.js';
import { toNode, toSession, type NodeRow, type SessionRow } from '../rows.js';
import { removeNodeResources } from './im.js';
import { removeNodeBindings } from './registrations.js';


/** The advisory-lock namespace of an account's session count (the account id is the second key). */
const SESSION_LOCK = 0x78736573; // 'xses'

const CLUSTER_SQL = {
  heartbeat: {
    name: 'cluster.heartbeat',
    text: `INSERT INTO nodes (id, http_url, alive_until) VALUES ($1, $2, $3)
           ON CONFLICT (id) DO UPDATE SET http_url = excluded.http_url, alive_until = excluded.alive_until`,
  },
  node: { name: 'cluster.node', text: 'SELECT id, http_url, alive_until FROM nodes WHERE id = $1' },
  removeSessions: { name: 'cluster.removeSessions', text: 'DELETE FROM sessions WHERE node = $1' },
  removeNode: { name: 'cluster.removeNode', text: 'DELETE FROM nodes WHERE id = $1' },
  deadNodes: { name: 'cluster.deadNodes', text: 'SELECT id, http_url, alive_until FROM nodes WHERE alive_until < $1 ORDER BY id' },
  // Serializes the session counts of one account, on every node. (An advisory lock rather
  // than the account's row: it holds whether or not the account has one.)
  lockAccount: {
    name: 'cluster.lockAccount',
    text: 'SELECT pg_advisory_xact_lock($1::int, ($2::bigint % 2147483647)::int)',
  },
  countSessions: {
    name: 'cluster.countSessions',
    text: `SELECT count(*) AS n FROM sessions s JOIN nodes n ON n.id = s.node WHERE s.account_id = $1 AND n.alive_until >= $2`,
  },
  addSession: {
    name: 'cluster.addSession',
    text: 'INSERT INTO sessions (url_id, account_id, node, created) VALUES ($1, $2, $3, $4)',
  },
  removeSession: { name: 'cluster.removeSession', text: 'DELETE FROM sessions WHERE url_id = $1' },
  accountSessions: {
    name: 'cluster.accountSessions',
    text: `SELECT s.url_id, s.account_id, s.node, s.created FROM sessions s JOIN nodes n ON n.id = s.node
           WHERE s.account_id = $1 AND n.alive_until >= $2 ORDER BY s.created, s.url_id`,
  },
} satisfies Record<string, Sql>;

/**
 * Cluster nodes and their XIMSS sessions. A node is alive while its aliveUntil is not
 * before `now`; sessions count only on live nodes. Commits do not wait for the WAL flush
 * (synchronous_commit off): these records describe running processes, not data anyone was
 * promised, and a login must not wait for a disk.
 */
export class PgCluster implements ClusterStore {
  constructor(private readonly db: Db) {}

  async heartbeat(node: NodeRecord): Promise<void> {
    await this.db.tx((tx) => tx.run(CLUSTER_SQL.heartbeat, [node.id, node.httpUrl, node.aliveUntil]), { relaxed: true });
  }

  async node(id: string): Promise<NodeRecord | undefined> {
    const row = await this.db.row<NodeRow>(CLUSTER_SQL.node, [id]);
    return row && toNode(row);
  }

  async removeNode(id: string): Promise<void> {
    await this.db.tx(
      async (tx) => {
        await tx.run(CLUSTER_SQL.removeNode, [id]);
        await tx.run(CLUSTER_SQL.removeSessions, [id]);
        await removeNodeResources(tx, id);
        await removeNodeBindings(tx, id);
      },
      { relaxed: true },
    );
  }

  async deadNodes(now: number): Promise<NodeRecord[]> {
    return (await this.db.rows<NodeRow>(CLUSTER_SQL.deadNodes, [now])).map(toNode);
  }

  async addSession(session: SessionRecord, limit: number, now: number): Promise<boolean> {
    try {
      return await this.db.tx(async (tx) => {
        await tx.rows(CLUSTER_SQL.lockAccount, [SESSION_LOCK, session.accountId]);
        const { n } = (await tx.row<{ n: number }>(CLUSTER_SQL.countSessions, [session.accountId, now]))!;
        if (n >= limit) return false;
        await tx.run(CLUSTER_SQL.addSession, [session.urlID, session.accountId, session.node, session.created]);
        return true;
      }, { relaxed: true });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`session ${session.urlID} already exists`);
      throw err;
    }
  }

  async removeSession(urlID: string): Promise<void> {
    await this.db.tx((tx) => tx.run(CLUSTER_SQL.removeSession, [urlID]), { relaxed: true });
  }

  async accountSessions(accountId: number, now: number): Promise<SessionRecord[]> {
    return (await this.db.rows<SessionRow>(CLUSTER_SQL.accountSessions, [accountId, now])).map(toSession);
  }
}

const SHARED_SQL = {
  // A row to lock even when the key has no value yet (a NULL value reads as missing).
  placeholder: {
    name: 'shared.placeholder',
    text: 'INSERT INTO shared_state (scope, key, value, expires) VALUES ($1, $2, NULL, 0) ON CONFLICT DO NOTHING',
  },
  lock: {
    name: 'shared.lock',
    text: 'SELECT value, expires FROM shared_state WHERE scope = $1 AND key = $2 FOR UPDATE',
  },
  write: {
    name: 'shared.write',
    text: 'UPDATE shared_state SET value = $3, expires = $4 WHERE scope = $1 AND key = $2',
  },
  remove: { name: 'shared.remove', text: 'DELETE FROM shared_state WHERE scope = $1 AND key = $2' },
  get: {
    name: 'shared.get',
    text: 'SELECT value FROM shared_state WHERE scope = $1 AND key = $2 AND value IS NOT NULL AND expires > $3',
  },
  prune: { name: 'shared.prune', text: 'DELETE FROM shared_state WHERE expires <= $1' },
} satisfies Record<string, Sql>;

/**
 * Values shared by every node, as JSON texts by (scope, key). A value is live while its
 * expiry is after `now`. update() locks the key's row (creating a placeholder first, so
 * that there is one to lock) and decides inside the transaction. Scopes and keys may be
 * anything a client sent (a login name): stored with toText, so a NUL does no harm.
 */
export class PgSharedState implements SharedStateStore {
  constructor(private readonly db: Db) {}

  async update<R>(scope: string, key: string, now: number, change: (value: unknown) => SharedUpdate<R>): Promise<R> {
    return this.db.tx(
      async (tx) => {
        const k = [toText(scope), toText(key)];
        let row: { value: string | null; expires: number } | undefined;
        // The row may be removed by another update between the two statements: then again.
        while (!row) {
          await tx.run(SHARED_SQL.placeholder, k);
          row = await tx.row<{ value: string | null; expires: number }>(SHARED_SQL.lock, k);
        }
        const current = row.value !== null && row.expires > now ? (JSON.parse(row.value) as unknown) : undefined;
        const decided = change(current);
        const json = decided.value === undefined ? undefined : JSON.stringify(decided.value);
        if (json === undefined) await tx.run(SHARED_SQL.remove, k);
        else await tx.run(SHARED_SQL.write, [...k, json, decided.expires]);
        return decided.result;
      },
      // Login-failure counters and slots: not data anyone was promised (see AccountStore.recordLogin).
      { relaxed: true },
    );
  }

  async get(scope: string, key: string, now: number): Promise<unknown> {
    const row = await this.db.row<{ value: string }>(SHARED_SQL.get, [toText(scope), toText(key), now]);
    return row === undefined ? undefined : (JSON.parse(row.value) as unknown);
  }

  async prune(now: number): Promise<void> {
    await this.db.run(SHARED_SQL.prune, [now]);
  }
}
