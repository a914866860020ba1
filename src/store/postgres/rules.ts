import type { RuleGuard, RuleRecord, RuleStore } from '../rules.js';
import { AlreadyExistsError, NotFoundError } from '../store.js';
import { withoutNul, type Db, type Sql, type Tx } from './db.js';
import { MAIL_RULES, ruleBodyColumn, toRule, type RuleRow } from '../rows.js';


const SQL = {
  // Rule writes of one account follow each other (the guard sees the count as it stays).
  lockAccount: { name: 'rules.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  list: {
    name: 'rules.list',
    text: 'SELECT type, name, priority, stage, body FROM rules WHERE account_id = $1 AND type = $2 ORDER BY priority DESC, name',
  },
  get: {
    name: 'rules.get',
    text: 'SELECT type, name, priority, stage, body FROM rules WHERE account_id = $1 AND type = $2 AND name = $3',
  },
  getWithCount: {
    name: 'rules.getWithCount',
    text: `SELECT (SELECT count(*) FROM rules WHERE account_id = $1 AND type = $2) AS n, r.type, r.name, r.priority, r.stage, r.body
           FROM (SELECT 1) AS one LEFT JOIN rules r ON r.account_id = $1 AND r.type = $2 AND r.name = $3`,
  },
  upsert: {
    name: 'rules.upsert',
    text: `INSERT INTO rules (account_id, type, name, priority, stage, body) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (account_id, type, name) DO UPDATE SET priority = excluded.priority, stage = excluded.stage, body = excluded.body`,
  },
  update: { name: 'rules.update', text: 'UPDATE rules SET priority = $1, stage = $2 WHERE account_id = $3 AND type = $4 AND name = $5' },
  rename: { name: 'rules.rename', text: 'UPDATE rules SET name = $1 WHERE account_id = $2 AND type = $3 AND name = $4' },
  remove: { name: 'rules.remove', text: 'DELETE FROM rules WHERE account_id = $1 AND type = $2 AND name = $3' },
  forgetReplies: { name: 'rules.forgetReplies', text: 'DELETE FROM vacation_replies WHERE account_id = $1 AND rule = $2' },
  renameReplies: { name: 'rules.renameReplies', text: 'UPDATE vacation_replies SET rule = $1 WHERE account_id = $2 AND rule = $3' },
  pruneReplies: { name: 'rules.pruneReplies', text: 'DELETE FROM vacation_replies WHERE account_id = $1 AND sent < $2' },
  claimReply: {
    name: 'rules.claimReply',
    text: `INSERT INTO vacation_replies (account_id, rule, address, sent, key) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (account_id, rule, address) DO NOTHING`,
  },
  getReply: {
    name: 'rules.getReply',
    text: 'SELECT sent, key FROM vacation_replies WHERE account_id = $1 AND rule = $2 AND address = $3 FOR UPDATE',
  },
  replaceReply: {
    name: 'rules.replaceReply',
    text: 'UPDATE vacation_replies SET sent = $4, key = $5 WHERE account_id = $1 AND rule = $2 AND address = $3',
  },
  releaseReply: {
    name: 'rules.releaseReply',
    text: 'DELETE FROM vacation_replies WHERE account_id = $1 AND rule = $2 AND address = $3 AND sent = $4',
  },
} satisfies Record<string, Sql>;

/**
 * Rules in PostgreSQL: one row per rule, its conditions, actions and comment as JSON.
 * Every write is one transaction that takes the account's row, reads the rule as stored and
 * the set's count, and runs the service's guard on them before writing.
 */
export class PgRules implements RuleStore {
  constructor(private readonly db: Db) {}

  async list(accountId: number, type: string): Promise<RuleRecord[]> {
    return (await this.db.rows<RuleRow>(SQL.list, [accountId, type])).map(toRule);
  }

  async get(accountId: number, type: string, name: string): Promise<RuleRecord | undefined> {
    const row = await this.db.row<RuleRow>(SQL.get, [accountId, type, name]);
    return row && toRule(row);
  }

  /** Locks the account's rules and reads one rule with the count of its set. */
  private async current(tx: Tx, accountId: number, type: string, name: string): Promise<{ rule: RuleRecord | undefined; count: number }> {
    await tx.rows(SQL.lockAccount, [accountId]);
    const row = (await tx.row<{ n: number } & { [K in keyof RuleRow]: RuleRow[K] | null }>(SQL.getWithCount, [accountId, type, name]))!;
    const rule =
      row.name === null ? undefined : toRule({ type: row.type!, name: row.name, priority: row.priority!, stage: row.stage, body: row.body! });
    return { rule, count: row.n };
  }

  async put(accountId: number, rule: RuleRecord, guard: RuleGuard): Promise<void> {
    await this.db.tx(async (tx) => {
      const { rule: existing, count } = await this.current(tx, accountId, rule.type, rule.name);
      guard(existing, count);
      await tx.run(SQL.upsert, [accountId, rule.type, rule.name, rule.priority, rule.stage, ruleBodyColumn(rule)]);
    });
  }

  async update(
    accountId: number,
    type: string,
    name: string,
    changes: { priority?: number; stage?: string | null },
    guard: RuleGuard,
  ): Promise<void> {
    await this.db.tx(async (tx) => {
      const { rule: existing, count } = await this.current(tx, accountId, type, name);
      if (!existing) throw new NotFoundError('rule not found');
      guard(existing, count);
      const stage = changes.stage === undefined ? existing.stage : changes.stage;
      await tx.run(SQL.update, [changes.priority ?? existing.priority, stage, accountId, type, name]);
    });
  }

  async rename(accountId: number, type: string, name: string, newName: string, guard: RuleGuard): Promise<void> {
    await this.db.tx(async (tx) => {
      const { rule: existing, count } = await this.current(tx, accountId, type, name);
      if (!existing) throw new NotFoundError('rule not found');
      guard(existing, count);
      if (newName === name) return;
      if (await tx.row(SQL.get, [accountId, type, newName])) throw new AlreadyExistsError('a rule with this name already exists');
      await tx.run(SQL.rename, [newName, accountId, type, name]);
      // The vacation log belongs to Mail Rules and follows the rule.
      if (type === MAIL_RULES) {
        await tx.run(SQL.forgetReplies, [accountId, newName]);
        await tx.run(SQL.renameReplies, [newName, accountId, name]);
      }
    });
  }

  async remove(accountId: number, type: string, name: string, guard: RuleGuard): Promise<void> {
    await this.db.tx(async (tx) => {
      const { rule: existing, count } = await this.current(tx, accountId, type, name);
      if (!existing) throw new NotFoundError('rule not found');
      guard(existing, count);
      await tx.run(SQL.remove, [accountId, type, name]);
      if (type === MAIL_RULES) await tx.run(SQL.forgetReplies, [accountId, name]);
    });
  }

  async claimReply(accountId: number, rule: string, sender: string, now: number, since: number, key?: string): Promise<boolean> {
    // The address comes from a received message: a NUL in it cannot be stored as TEXT.
    const address = withoutNul(sender);
    return this.db.tx(async (tx) => {
      await tx.run(SQL.pruneReplies, [accountId, since]);
      if ((await tx.run(SQL.claimReply, [accountId, rule, address, now, key ?? null])) > 0) return true;
      // Already recorded (or recorded meanwhile by another process, now committed).
      const row = await tx.row<{ sent: number; key: string | null }>(SQL.getReply, [accountId, rule, address]);
      // Removed since (a release): claim again; another claim that won meanwhile stands.
      if (!row) return (await tx.run(SQL.claimReply, [accountId, rule, address, now, key ?? null])) > 0;
      if (row.sent < since) {
        // Stale, committed after the prune's snapshot: this claim takes its place.
        await tx.run(SQL.replaceReply, [accountId, rule, address, now, key ?? null]);
        return true;
      }
      return key !== undefined && row.key === key;
    });
  }

  async releaseReply(accountId: number, rule: string, address: string, sent: number): Promise<void> {
    await this.db.run(SQL.releaseReply, [accountId, rule, withoutNul(address), sent]);
  }
}
