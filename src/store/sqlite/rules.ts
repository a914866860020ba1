import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { RuleGuard, RuleRecord, RuleStore } from '../rules.js';
import { AlreadyExistsError, NotFoundError } from '../store.js';
import { prepareAll } from './util.js';
import { MAIL_RULES, ruleBodyColumn, toRule, type RuleRow } from '../rows.js';


/**
 * Rules in SQLite: one row per rule, its conditions, actions and comment as JSON (they are
 * only ever read and written whole). Every write is one transaction that runs the service's
 * guard on the rule as stored, so that checks and the change cannot interleave with another
 * session's change.
 */
export class SqliteRules implements RuleStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      list: 'SELECT type, name, priority, stage, body FROM rules WHERE account_id = ? AND type = ? ORDER BY priority DESC, name',
      get: 'SELECT type, name, priority, stage, body FROM rules WHERE account_id = ? AND type = ? AND name = ?',
      count: 'SELECT count(*) AS n FROM rules WHERE account_id = ? AND type = ?',
      upsert:
        'INSERT INTO rules (account_id, type, name, priority, stage, body) VALUES (?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (account_id, type, name) DO UPDATE SET priority = excluded.priority, stage = excluded.stage, body = excluded.body',
      update: 'UPDATE rules SET priority = ?, stage = ? WHERE account_id = ? AND type = ? AND name = ?',
      rename: 'UPDATE rules SET name = ? WHERE account_id = ? AND type = ? AND name = ?',
      remove: 'DELETE FROM rules WHERE account_id = ? AND type = ? AND name = ?',
      forgetReplies: 'DELETE FROM vacation_replies WHERE account_id = ? AND rule = ?',
      renameReplies: 'UPDATE vacation_replies SET rule = ? WHERE account_id = ? AND rule = ?',
      getReply: 'SELECT sent, key FROM vacation_replies WHERE account_id = ? AND rule = ? AND address = ?',
      putReply:
        'INSERT INTO vacation_replies (account_id, rule, address, sent, key) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (account_id, rule, address) DO UPDATE SET sent = excluded.sent, key = excluded.key',
      pruneReplies: 'DELETE FROM vacation_replies WHERE account_id = ? AND sent < ?',
      releaseReply: 'DELETE FROM vacation_replies WHERE account_id = ? AND rule = ? AND address = ? AND sent = ?',
    });
  }

  async list(accountId: number, type: string): Promise<RuleRecord[]> {
    return (this.sql.list.all(accountId, type) as RuleRow[]).map(toRule);
  }

  async get(accountId: number, type: string, name: string): Promise<RuleRecord | undefined> {
    return this.current(accountId, type, name);
  }

  /** The rule as stored (synchronous: for use inside a transaction). */
  private current(accountId: number, type: string, name: string): RuleRecord | undefined {
    const row = this.sql.get.get(accountId, type, name) as RuleRow | undefined;
    return row && toRule(row);
  }

  private count(accountId: number, type: string): number {
    return (this.sql.count.get(accountId, type) as { n: number }).n;
  }

  async put(accountId: number, rule: RuleRecord, guard: RuleGuard): Promise<void> {
    this.db.transaction(() => {
      guard(this.current(accountId, rule.type, rule.name), this.count(accountId, rule.type));
      this.sql.upsert.run(accountId, rule.type, rule.name, rule.priority, rule.stage, ruleBodyColumn(rule));
    }).immediate();
  }

  async update(
    accountId: number,
    type: string,
    name: string,
    changes: { priority?: number; stage?: string | null },
    guard: RuleGuard,
  ): Promise<void> {
    this.db.transaction(() => {
      const existing = this.current(accountId, type, name);
      if (!existing) throw new NotFoundError('rule not found');
      guard(existing, this.count(accountId, type));
      this.sql.update.run(changes.priority ?? existing.priority, changes.stage === undefined ? existing.stage : changes.stage, accountId, type, name);
    }).immediate();
  }

  async rename(accountId: number, type: string, name: string, newName: string, guard: RuleGuard): Promise<void> {
    this.db.transaction(() => {
      const existing = this.current(accountId, type, name);
      if (!existing) throw new NotFoundError('rule not found');
      guard(existing, this.count(accountId, type));
      if (newName === name) return;
      if (this.current(accountId, type, newName)) throw new AlreadyExistsError('a rule with this name already exists');
      this.sql.rename.run(newName, accountId, type, name);
      // The vacation log belongs to Mail Rules and follows the rule.
      if (type === MAIL_RULES) {
        this.sql.forgetReplies.run(accountId, newName);
        this.sql.renameReplies.run(newName, accountId, name);
      }
    }).immediate();
  }

  async remove(accountId: number, type: string, name: string, guard: RuleGuard): Promise<void> {
    this.db.transaction(() => {
      const existing = this.current(accountId, type, name);
      if (!existing) throw new NotFoundError('rule not found');
      guard(existing, this.count(accountId, type));
      this.sql.remove.run(accountId, type, name);
      if (type === MAIL_RULES) this.sql.forgetReplies.run(accountId, name);
    }).immediate();
  }

  async claimReply(accountId: number, rule: string, address: string, now: number, since: number, key?: string): Promise<boolean> {
    return this.db.transaction((): boolean => {
      this.sql.pruneReplies.run(accountId, since);
      const row = this.sql.getReply.get(accountId, rule, address) as { sent: number; key: string | null } | undefined;
      if (row) return key !== undefined && row.key === key;
      this.sql.putReply.run(accountId, rule, address, now, key ?? null);
      return true;
    }).immediate();
  }

  async releaseReply(accountId: number, rule: string, address: string, sent: number): Promise<void> {
    this.sql.releaseReply.run(accountId, rule, address, sent);
  }
}
