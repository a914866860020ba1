import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { ClusterStore, NodeRecord, SessionRecord, SharedStateStore, SharedUpdate } from '../store.js';
import { flowBound } from './registrations.js';
import { prepareAll, relaxedCommit } from './util.js';
import { toNode, toSession, type NodeRow, type SessionRow } from '../rows.js';


/**
 * Nodes and sessions in SQLite. Only one server serves a SQLite store (see DataDirLock), so
 * this is a cluster of one; the tables keep the contract the same as on PostgreSQL. A node
 * is alive at `now` while `alive_until >= now`. Commits are relaxed (see relaxedCommit):
 * these records describe the running processes, not data anyone was promised, and a login
 * must not cost an fsync; after a crash the dead node's records no longer count.
 */
export class SqliteCluster implements ClusterStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      heartbeat: `INSERT INTO nodes (id, http_url, alive_until) VALUES (?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET http_url = excluded.http_url, alive_until = excluded.alive_until`,
      node: 'SELECT * FROM nodes WHERE id = ?',
      removeNode: 'DELETE FROM nodes WHERE id = ?',
      removeNodeSessions: 'DELETE FROM sessions WHERE node = ?',
      removeNodeResources: 'DELETE FROM im_resources WHERE node = ?',
      removeNodeBindings: `DELETE FROM sip_bindings WHERE node = ? AND ${flowBound('')}`,
      deadNodes: 'SELECT * FROM nodes WHERE alive_until < ? ORDER BY id',
      countSessions: `SELECT count(*) AS n FROM sessions s JOIN nodes n ON n.id = s.node
        WHERE s.account_id = ? AND n.alive_until >= ?`,
      addSession: 'INSERT INTO sessions (url_id, account_id, node, created) VALUES (?, ?, ?, ?)',
      removeSession: 'DELETE FROM sessions WHERE url_id = ?',
      accountSessions: `SELECT s.* FROM sessions s JOIN nodes n ON n.id = s.node
        WHERE s.account_id = ? AND n.alive_until >= ? ORDER BY s.created, s.url_id`,
    });
  }

  async heartbeat(node: NodeRecord): Promise<void> {
    relaxedCommit(this.db, () => this.sql.heartbeat.run(node.id, node.httpUrl, node.aliveUntil));
  }

  async node(id: string): Promise<NodeRecord | undefined> {
    const row = this.sql.node.get(id) as NodeRow | undefined;
    return row && toNode(row);
  }

  async removeNode(id: string): Promise<void> {
    relaxedCommit(this.db, () =>
      this.db.transaction(() => {
        this.sql.removeNodeSessions.run(id);
        this.sql.removeNodeResources.run(id);
        this.sql.removeNodeBindings.run(id);
        this.sql.removeNode.run(id);
      }).immediate(),
    );
  }

  async deadNodes(now: number): Promise<NodeRecord[]> {
    return (this.sql.deadNodes.all(now) as NodeRow[]).map(toNode);
  }

  async addSession(session: SessionRecord, limit: number, now: number): Promise<boolean> {
    return relaxedCommit(this.db, () =>
      this.db.transaction(() => {
        const { n } = this.sql.countSessions.get(session.accountId, now) as { n: number };
        if (n >= limit) return false;
        this.sql.addSession.run(session.urlID, session.accountId, session.node, session.created);
        return true;
      }).immediate(),
    );
  }

  async removeSession(urlID: string): Promise<void> {
    relaxedCommit(this.db, () => this.sql.removeSession.run(urlID));
  }

  async accountSessions(accountId: number, now: number): Promise<SessionRecord[]> {
    return (this.sql.accountSessions.all(accountId, now) as SessionRow[]).map(toSession);
  }
}

/**
 * Shared values in SQLite. An update is an IMMEDIATE transaction (the write lock taken
 * before the read), committed with the relaxed sync of login bookkeeping: these are
 * login-failure counters, not data anyone was promised (see relaxedCommit).
 */
export class SqliteSharedState implements SharedStateStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      get: 'SELECT value FROM shared_state WHERE scope = ? AND key = ? AND expires > ?',
      put: `INSERT INTO shared_state (scope, key, value, expires) VALUES (?, ?, ?, ?)
        ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
      remove: 'DELETE FROM shared_state WHERE scope = ? AND key = ?',
      prune: 'DELETE FROM shared_state WHERE expires <= ?',
    });
  }

  async update<R>(scope: string, key: string, now: number, change: (value: unknown) => SharedUpdate<R>): Promise<R> {
    return relaxedCommit(this.db, () =>
      this.db.transaction((): R => {
        const update = change(this.read(scope, key, now));
        if (update.value === undefined) this.sql.remove.run(scope, key);
        else this.sql.put.run(scope, key, JSON.stringify(update.value), update.expires);
        return update.result;
      }).immediate(),
    );
  }

  async get(scope: string, key: string, now: number): Promise<unknown> {
    return this.read(scope, key, now);
  }

  async prune(now: number): Promise<void> {
    relaxedCommit(this.db, () => this.sql.prune.run(now));
  }

  /** The value unless missing or expired at `now` (expires <= now). */
  private read(scope: string, key: string, now: number): unknown {
    const row = this.sql.get.get(scope, key, now) as { value: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.value) as unknown);
  }
}
