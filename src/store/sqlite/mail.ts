import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { XimssValue } from '../../xml/objects.js';
import {
  AlreadyExistsError,
  NotFoundError,
  QuotaExceededError,
  applyFlagDelta,
  type AclEntryRecord,
  type AppendResult,
  type ChangeSet,
  type CopyResult,
  type FlagDelta,
  type FlagResult,
  type MailboxRecord,
  type MailboxStats,
  type MailStore,
  type MessageMeta,
  type MessagePage,
  type NewMessage,
  type AppendOptions,
  type QuotaCheck,
} from '../store.js';
import { isUniqueViolation, prepareAll } from './util.js';
import { JOURNAL_KEEP, keywordsColumn, newUidValidity, NO_KEYWORDS } from '../rows.js';

interface MailboxRow {
  id: number;
  account_id: number;
  name: string;
  class: string;
  pure_folder: number;
  uid_validity: number;
  uid_next: number;
  modseq: number;
  journal_horizon: number;
  acl: string;
}

interface MessageRow {
  uid: number;
  orig_uid: number;
  modseq: number;
  flags: number;
  keywords: string | null;
  internal_date: number;
  size: number;
  date: number | null;
  date_shift: number;
  from_: string;
  to_: string;
  cc: string;
  subject: string;
  priority: number;
  attrs: string | null;
}

const META_COLUMNS =
  'uid, orig_uid, modseq, flags, keywords, internal_date, size, date, date_shift, from_, to_, cc, subject, priority, attrs';

/** The Deleted flag bit (see services/mail/flags.ts). */
const DELETED = 8;


function toMailbox(row: MailboxRow): MailboxRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    mailboxClass: row.class,
    pureFolder: row.pure_folder !== 0,
    uidValidity: row.uid_validity,
    uidNext: row.uid_next,
    highestModseq: row.modseq,
    journalHorizon: row.journal_horizon,
    acl: JSON.parse(row.acl) as AclEntryRecord[],
  };
}

function toMeta(row: MessageRow): MessageMeta {
  return {
    uid: row.uid,
    origUid: row.orig_uid,
    modseq: row.modseq,
    flags: row.flags,
    keywords: row.keywords === null ? NO_KEYWORDS : (JSON.parse(row.keywords) as string[]),
    internalDate: row.internal_date,
    size: row.size,
    date: row.date,
    dateShift: row.date_shift,
    from: row.from_,
    to: row.to_,
    cc: row.cc,
    subject: row.subject,
    priority: row.priority,
    attrs: row.attrs === null ? null : (JSON.parse(row.attrs) as { [key: string]: XimssValue }),
  };
}



/**
 * Mailboxes and messages in SQLite. Message bytes live in `message_bodies`, shared by
 * copies (triggers keep the reference count); the views' header fields are columns of
 * `messages`. Every mutation is one IMMEDIATE transaction (it holds SQLite's write lock
 * from its first read, so what it reads is what it changes, whichever process shares the
 * file), committed and synced before the promise resolves; appends share theirs (see
 * groupCommit). Each transaction that changes a mailbox's messages bumps its modseq by one;
 * one that changes nothing leaves it alone.
 */
export class SqliteMail implements MailStore {
  private readonly sql: ReturnType<typeof prepareStatements>;
  private commitQueue: { work: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }[] = [];

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareStatements(db);
  }


  async listMailboxes(accountId: number): Promise<MailboxRecord[]> {
    return (this.sql.listMailboxes.all(accountId) as MailboxRow[]).map(toMailbox);
  }

  async getMailbox(accountId: number, name: string): Promise<MailboxRecord | undefined> {
    const row = this.sql.getMailbox.get(accountId, name) as MailboxRow | undefined;
    return row && toMailbox(row);
  }

  async getMailboxById(id: number): Promise<MailboxRecord | undefined> {
    const row = this.sql.getMailboxById.get(id) as MailboxRow | undefined;
    return row && toMailbox(row);
  }

  async highestModseqs(ids: readonly number[]): Promise<Map<number, number>> {
    const result = new Map<number, number>();
    for (const id of ids) {
      const row = this.sql.getModseq.get(id) as { modseq: number } | undefined;
      if (row) result.set(id, row.modseq);
    }
    return result;
  }

  async createMailbox(
    accountId: number,
    name: string,
    mailboxClass: string,
    pureFolder: boolean,
    options: { overPureFolder?: boolean } = {},
  ): Promise<MailboxRecord> {
    return this.db.transaction((): MailboxRecord => {
      const existing = this.sql.getMailbox.get(accountId, name) as MailboxRow | undefined;
      if (existing) {
        if (!options.overPureFolder || existing.pure_folder === 0) throw new AlreadyExistsError(`mailbox ${name} already exists`);
        // A pure folder never held messages: it becomes the mailbox, id and UIDVALIDITY kept.
        return toMailbox(this.sql.convertFolder.get(mailboxClass, pureFolder ? 1 : 0, existing.id) as MailboxRow);
      }
      return toMailbox(this.sql.createMailbox.get(accountId, name, mailboxClass, pureFolder ? 1 : 0, newUidValidity()) as MailboxRow);
    }).immediate();
  }

  async renameMailboxes(accountId: number, renames: readonly { from: string; to: string }[]): Promise<void> {
    try {
      this.db.transaction(() => {
        // Two passes through temporary names, so that renames may swap or shift names.
        const temps = renames.map((r, i) => ({ ...r, temp: `\u0000rename-${i}-${r.from}` }));
        for (const r of temps) this.sql.renameMailbox.run(r.temp, accountId, r.from);
        for (const r of temps) this.sql.renameMailbox.run(r.to, accountId, r.temp);
      }).immediate();
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError('a mailbox with the new name already exists');
      throw err;
    }
  }

  async removeMailboxes(ids: readonly number[], options: { leavePureFolders?: boolean } = {}): Promise<void> {
    this.db.transaction(() => {
      for (const id of ids) {
        const box = this.sql.getMailboxById.get(id) as MailboxRow | undefined;
        if (!box) continue;
        this.sql.removeMessages.run(id);
        this.sql.removeMailbox.run(id);
        // A new record (new id and UIDVALIDITY): nothing of the removed mailbox carries over.
        if (options.leavePureFolders) this.sql.createMailbox.run(box.account_id, box.name, '', 1, newUidValidity());
      }
    }).immediate();
  }

  async updateMailboxAcl(id: number, change: (acl: readonly AclEntryRecord[]) => AclEntryRecord[]): Promise<AclEntryRecord[]> {
    return this.db.transaction(() => {
      const box = this.sql.getMailboxById.get(id) as MailboxRow | undefined;
      if (!box) throw new NotFoundError('mailbox not found');
      const acl = change(JSON.parse(box.acl) as AclEntryRecord[]);
      this.sql.setAcl.run(JSON.stringify(acl), id);
      return acl;
    }).immediate();
  }

  async mailboxStats(accountId: number): Promise<Map<number, MailboxStats>> {
    const rows = this.sql.stats.all(accountId) as (MailboxStats & { id: number })[];
    return new Map(rows.map(({ id, ...stats }) => [id, stats]));
  }

  async accountUsage(accountId: number): Promise<number> {
    return (this.sql.usage.get(accountId) as { total: number }).total;
  }

  async listMessages(mailboxId: number, page?: MessagePage): Promise<MessageMeta[]> {
    const rows = page ? this.sql.listMessagesPage.all(mailboxId, page.afterUid, page.limit) : this.sql.listMessages.all(mailboxId);
    return (rows as MessageRow[]).map(toMeta);
  }

  async getMessage(mailboxId: number, uid: number): Promise<MessageMeta | undefined> {
    const row = this.sql.getMessage.get(mailboxId, uid) as MessageRow | undefined;
    return row && toMeta(row);
  }

  async readRaw(mailboxId: number, uid: number): Promise<Buffer | undefined> {
    const row = this.sql.readRaw.get(mailboxId, uid) as { data: Buffer } | undefined;
    return row?.data;
  }

  async readHeaders(mailboxId: number, uids: readonly number[]): Promise<Map<number, string>> {
    const headers = new Map<number, string>();
    for (const uid of uids) {
      const row = this.sql.readHeader.get(mailboxId, uid) as { header: string } | undefined;
      if (row) headers.set(uid, row.header);
    }
    return headers;
  }

  async append(mailboxId: number, messages: readonly NewMessage[], options: AppendOptions = {}): Promise<AppendResult> {
    const { replace, deliveryKey, quota } = options;
    return this.groupCommit((): AppendResult => {
      const box = this.sql.getMailboxById.get(mailboxId) as MailboxRow | undefined;
      if (!box) throw new NotFoundError('mailbox not found');
      if (deliveryKey !== undefined && this.sql.recordDeliveryKey.run(deliveryKey, Date.now()).changes === 0) {
        return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
      }
      let replaced: MessageRow | undefined;
      if (replace) {
        replaced = (replace.byOrigUid
          ? this.sql.getByOrigUid.get(mailboxId, replace.uid)
          : this.sql.getMessage.get(mailboxId, replace.uid)) as MessageRow | undefined;
        if (!replaced && replace.mustExist) throw new NotFoundError('the message to replace does not exist');
      }
      if (messages.length === 0 && !replaced) return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
      const usageBefore = quota && this.usage(quota.accountId);
      const modseq = box.modseq + 1;
      let uid = box.uid_next;
      const added: MessageMeta[] = [];
      for (const m of messages) {
        const bodyId = this.sql.insertBody.run(m.header, m.raw).lastInsertRowid;
        const origUid = m.origUid ?? (replace?.keepOrigUid && replaced ? replaced.orig_uid : uid);
        const e = m.envelope;
        const attrs = m.attrs ? JSON.stringify(m.attrs) : null;
        this.sql.insertMessage.run(mailboxId, uid, origUid, modseq, m.flags, keywordsColumn(m.keywords), m.internalDate,
          m.raw.length, bodyId, e.date, e.dateShift, e.from, e.to, e.cc, e.subject, e.priority, attrs);
        added.push({
          uid, origUid, modseq, flags: m.flags, keywords: m.keywords, internalDate: m.internalDate, size: m.raw.length,
          ...e, attrs: m.attrs ?? null,
        });
        uid++;
      }
      if (replaced) this.removeOne(mailboxId, replaced.uid, modseq);
      this.sql.bumpMailbox.run(uid, modseq, mailboxId);
      if (quota) this.checkQuota(quota, usageBefore!);
      return { messages: added, modseq, replaced: replaced ? replaced.uid : null, uidNext: uid };
    });
  }

  async copy(
    fromMailboxId: number,
    uids: readonly number[],
    toMailboxId: number,
    options: { move: boolean; quota?: QuotaCheck },
  ): Promise<CopyResult> {
    const { quota } = options;
    return this.db.transaction((): CopyResult => {
      const target = this.sql.getMailboxById.get(toMailboxId) as MailboxRow | undefined;
      const source = this.sql.getMailboxById.get(fromMailboxId) as MailboxRow | undefined;
      if (!target || !source) throw new NotFoundError('mailbox not found');
      const usageBefore = quota && this.usage(quota.accountId);
      const modseq = target.modseq + 1;
      let uid = target.uid_next;
      const copied: { from: number; to: MessageMeta }[] = [];
      for (const from of uids) {
        // A copy is a new message of the target: its own UID and ORIGUID, marked Recent.
        const result = this.sql.copyMessage.run(toMailboxId, uid, uid, modseq, fromMailboxId, from);
        if (result.changes === 0) continue;
        copied.push({ from, to: toMeta(this.sql.getMessage.get(toMailboxId, uid) as MessageRow) });
        uid++;
      }
      if (copied.length === 0) return { copied, modseq: target.modseq, sourceModseq: source.modseq, uidNext: target.uid_next };
      this.sql.bumpMailbox.run(uid, modseq, toMailboxId);
      // The removal from the source is a transaction's change of its own: a move inside one
      // mailbox takes two modseqs (the copies, then the removal).
      let sourceModseq = fromMailboxId === toMailboxId ? modseq : source.modseq;
      if (options.move) {
        sourceModseq++;
        for (const { from } of copied) this.removeOne(fromMailboxId, from, sourceModseq);
        this.sql.bumpModseq.run(sourceModseq, fromMailboxId);
        this.pruneJournal(fromMailboxId);
      }
      // A move within the account changes nothing of its usage (the check lets it through).
      if (quota) this.checkQuota(quota, usageBefore!);
      return { copied, modseq, sourceModseq, uidNext: uid };
    }).immediate();
  }

  async updateFlags(mailboxId: number, uids: readonly number[], delta: FlagDelta, options: { unchangedSince?: number } = {}): Promise<FlagResult> {
    const { unchangedSince } = options;
    return this.db.transaction((): FlagResult => {
      const box = this.sql.getMailboxById.get(mailboxId) as MailboxRow | undefined;
      if (!box) throw new NotFoundError('mailbox not found');
      const modseq = box.modseq + 1;
      const changed: MessageMeta[] = [];
      const modified: number[] = [];
      // Each UID once: a repeated one would otherwise see its own new modseq.
      for (const uid of new Set(uids)) {
        const row = this.sql.getMessage.get(mailboxId, uid) as MessageRow | undefined;
        if (!row) continue;
        if (unchangedSince !== undefined && row.modseq > unchangedSince) {
          modified.push(uid);
          continue;
        }
        const stored = toMeta(row);
        const next = applyFlagDelta(stored.flags, stored.keywords, delta);
        if (next.flags === stored.flags && next.keywords === stored.keywords) continue;
        this.sql.setFlags.run(next.flags, keywordsColumn(next.keywords), modseq, mailboxId, uid);
        changed.push({ ...stored, flags: next.flags, keywords: next.keywords, modseq });
      }
      if (changed.length > 0) this.sql.bumpModseq.run(modseq, mailboxId);
      return { modseq: changed.length > 0 ? modseq : box.modseq, changed, modified };
    }).immediate();
  }

  async setAttrs(mailboxId: number, uid: number, attrs: { [key: string]: XimssValue } | null) {
    return this.db.transaction(() => {
      const box = this.sql.getMailboxById.get(mailboxId) as MailboxRow | undefined;
      if (!box) throw new NotFoundError('mailbox not found');
      const modseq = box.modseq + 1;
      const result = this.sql.setAttrs.run(attrs ? JSON.stringify(attrs) : null, modseq, mailboxId, uid);
      if (result.changes === 0) return { modseq: box.modseq, changed: undefined };
      this.sql.bumpModseq.run(modseq, mailboxId);
      return { modseq, changed: toMeta(this.sql.getMessage.get(mailboxId, uid) as MessageRow) };
    }).immediate();
  }

  async expunge(mailboxId: number, uids: readonly number[], options: { onlyDeleted?: boolean } = {}) {
    return this.db.transaction(() => {
      const box = this.sql.getMailboxById.get(mailboxId) as MailboxRow | undefined;
      if (!box) throw new NotFoundError('mailbox not found');
      const modseq = box.modseq + 1;
      const removed: { uid: number; origUid: number }[] = [];
      for (const uid of uids) {
        if (options.onlyDeleted && (((this.sql.getMessage.get(mailboxId, uid) as MessageRow | undefined)?.flags ?? 0) & DELETED) === 0) continue;
        const gone = this.removeOne(mailboxId, uid, modseq);
        if (gone) removed.push(gone);
      }
      if (removed.length > 0) {
        this.sql.bumpModseq.run(modseq, mailboxId);
        this.pruneJournal(mailboxId);
      }
      return { modseq: removed.length > 0 ? modseq : box.modseq, removed };
    }).immediate();
  }

  async changesSince(mailboxId: number, modseq: number): Promise<ChangeSet> {
    return this.db.transaction((): ChangeSet => {
      const box = this.sql.getMailboxById.get(mailboxId) as MailboxRow | undefined;
      if (!box) throw new NotFoundError('mailbox not found');
      const changed = (this.sql.changedSince.all(mailboxId, modseq) as MessageRow[]).map(toMeta);
      const removed = (this.sql.removedSince.all(mailboxId, modseq) as { uid: number; orig_uid: number; modseq: number }[]).map(
        (r) => ({ uid: r.uid, origUid: r.orig_uid, modseq: r.modseq }),
      );
      return { modseq: box.modseq, uidNext: box.uid_next, changed, removed, complete: modseq >= box.journal_horizon };
    }).deferred();
  }

  async subscriptions(accountId: number): Promise<string[]> {
    return (this.sql.subscriptions.all(accountId) as { name: string }[]).map((r) => r.name);
  }

  async setSubscribed(accountId: number, name: string, subscribed: boolean): Promise<void> {
    (subscribed ? this.sql.subscribe : this.sql.unsubscribe).run(accountId, name);
  }

  async aliases(accountId: number): Promise<{ name: string; target: string }[]> {
    return this.sql.aliases.all(accountId) as { name: string; target: string }[];
  }

  async setAlias(accountId: number, name: string, target: string | null): Promise<void> {
    if (target === null) this.sql.removeAlias.run(accountId, name);
    else this.sql.setAlias.run(accountId, name, target);
  }

  /**
   * Runs `work` in a transaction shared with the other appends queued in the same turn of
   * the event loop: one commit (one fsync) for all of them, each in its own savepoint so
   * that one failing does not undo the others. Every promise resolves after the commit.
   */
  private groupCommit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.commitQueue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.commitQueue.length === 1) setImmediate(() => this.flushCommitQueue());
    });
  }

  private flushCommitQueue(): void {
    const jobs = this.commitQueue;
    this.commitQueue = [];
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.db.transaction(() => {
        for (const job of jobs) {
          try {
            outcomes.push({ ok: true, value: this.db.transaction(job.work)() });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      }).immediate();
    } catch (error) {
      for (const job of jobs) job.reject(error);
      return;
    }
    jobs.forEach((job, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.error);
    });
  }

  /** The account's usage: the sum of its mailboxes' size counters (kept by triggers). */
  private usage(accountId: number): number {
    return (this.sql.usage.get(accountId) as { total: number }).total;
  }

  /**
   * Called at the end of a transaction that added messages (the caller's transaction or
   * savepoint is rolled back by the throw): refuses when the account now holds more than its
   * limit and more than before, so that removing or moving within an account over its limit
   * still works.
   */
  private checkQuota(quota: QuotaCheck, before: number): void {
    const after = this.usage(quota.accountId);
    if (after > quota.limit && after > before) {
      throw new QuotaExceededError(`the account's storage limit (${quota.limit} bytes) would be exceeded`);
    }
  }

  /** Deletes one message inside a transaction and journals the removal. */
  private removeOne(mailboxId: number, uid: number, modseq: number): { uid: number; origUid: number } | undefined {
    const row = this.sql.deleteMessage.get(mailboxId, uid) as { uid: number; orig_uid: number } | undefined;
    if (!row) return undefined;
    this.sql.journal.run(mailboxId, modseq, row.uid, row.orig_uid);
    return { uid: row.uid, origUid: row.orig_uid };
  }

  /** Keeps the removal journal bounded; mailboxSync from before the horizon resynchronises fully. */
  private pruneJournal(mailboxId: number): void {
    const count = (this.sql.journalCount.get(mailboxId) as { n: number }).n;
    if (count <= JOURNAL_KEEP * 2) return;
    const cut = this.sql.journalCut.get(mailboxId, JOURNAL_KEEP) as { modseq: number } | undefined;
    if (!cut) return;
    this.sql.journalPrune.run(mailboxId, cut.modseq);
    this.sql.setHorizon.run(cut.modseq, mailboxId);
  }
}

function prepareStatements(db: SqliteDatabase) {
  return prepareAll(db, {
    listMailboxes: 'SELECT * FROM mailboxes WHERE account_id = ? ORDER BY name',
    getMailbox: 'SELECT * FROM mailboxes WHERE account_id = ? AND name = ?',
    getMailboxById: 'SELECT * FROM mailboxes WHERE id = ?',
    getModseq: 'SELECT modseq FROM mailboxes WHERE id = ?',
    createMailbox:
      'INSERT INTO mailboxes (account_id, name, class, pure_folder, uid_validity) VALUES (?, ?, ?, ?, ?) RETURNING *',
    convertFolder: 'UPDATE mailboxes SET class = ?, pure_folder = ? WHERE id = ? RETURNING *',
    renameMailbox: 'UPDATE mailboxes SET name = ? WHERE account_id = ? AND name = ?',
    removeMessages: 'DELETE FROM messages WHERE mailbox_id = ?',
    removeMailbox: 'DELETE FROM mailboxes WHERE id = ?',
    setAcl: 'UPDATE mailboxes SET acl = ? WHERE id = ?',
    bumpMailbox: 'UPDATE mailboxes SET uid_next = ?, modseq = ? WHERE id = ?',
    bumpModseq: 'UPDATE mailboxes SET modseq = ? WHERE id = ?',
    stats: `SELECT id, messages, unseen, media, unseen_media AS unseenMedia, size,
              (SELECT min(internal_date) FROM messages m WHERE m.mailbox_id = b.id) AS oldest
            FROM mailboxes b WHERE account_id = ?`,
    usage: 'SELECT coalesce(sum(size), 0) AS total FROM mailboxes WHERE account_id = ?',
    listMessages: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid`,
    // Keyset paging on the primary key (mailbox_id, uid): a seek, then `limit` rows in order.
    listMessagesPage: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid > ? ORDER BY uid LIMIT ?`,
    getMessage: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?`,
    getByOrigUid: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = ? AND orig_uid = ? ORDER BY uid DESC LIMIT 1`,
    readRaw: `SELECT b.data AS data FROM messages m JOIN message_bodies b ON b.id = m.body_id
              WHERE m.mailbox_id = ? AND m.uid = ?`,
    readHeader: `SELECT b.header AS header FROM messages m JOIN message_bodies b ON b.id = m.body_id
                 WHERE m.mailbox_id = ? AND m.uid = ?`,
    insertBody: 'INSERT INTO message_bodies (header, data) VALUES (?, ?)',
    recordDeliveryKey: 'INSERT OR IGNORE INTO delivery_keys (key, created) VALUES (?, ?)',
    insertMessage: `INSERT INTO messages (mailbox_id, uid, orig_uid, modseq, flags, keywords, internal_date, size,
                      body_id, date, date_shift, from_, to_, cc, subject, priority, attrs)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    copyMessage: `INSERT INTO messages (mailbox_id, uid, orig_uid, modseq, flags, keywords, internal_date, size,
                    body_id, date, date_shift, from_, to_, cc, subject, priority, attrs)
                  SELECT ?, ?, ?, ?, flags | 32, keywords, internal_date, size, body_id, date, date_shift,
                    from_, to_, cc, subject, priority, attrs
                  FROM messages WHERE mailbox_id = ? AND uid = ?`,
    deleteMessage: 'DELETE FROM messages WHERE mailbox_id = ? AND uid = ? RETURNING uid, orig_uid',
    journal: 'INSERT OR IGNORE INTO expunged (mailbox_id, modseq, uid, orig_uid) VALUES (?, ?, ?, ?)',
    journalCount: 'SELECT count(*) AS n FROM expunged WHERE mailbox_id = ?',
    journalCut: 'SELECT modseq FROM expunged WHERE mailbox_id = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?',
    journalPrune: 'DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?',
    setHorizon: 'UPDATE mailboxes SET journal_horizon = ? WHERE id = ?',
    setFlags: 'UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?',
    setAttrs: 'UPDATE messages SET attrs = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?',
    changedSince: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`,
    removedSince: 'SELECT uid, orig_uid, modseq FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY modseq, uid',
    subscriptions: 'SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name',
    subscribe: 'INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)',
    unsubscribe: 'DELETE FROM subscriptions WHERE account_id = ? AND name = ?',
    aliases: 'SELECT name, target FROM mailbox_aliases WHERE account_id = ? ORDER BY name',
    setAlias: 'INSERT OR REPLACE INTO mailbox_aliases (account_id, name, target) VALUES (?, ?, ?)',
    removeAlias: 'DELETE FROM mailbox_aliases WHERE account_id = ? AND name = ?',
  });
}

