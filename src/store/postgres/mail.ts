import { randomInt } from 'node:crypto';
import type { XimssValue } from '../../xml/objects.js';
import {
  AlreadyExistsError,
  NotFoundError,
  QuotaExceededError,
  applyFlagDelta,
  type AclEntryRecord,
  type AppendOptions,
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
  type QuotaCheck,
} from '../store.js';
import { isUniqueViolation, type Db, type Param, type Sql, type Tx } from './db.js';

interface MailboxRow {
  id: number;
  account_id: number;
  name: string;
  class: string;
  pure_folder: boolean;
  uid_validity: number;
  uid_next: number;
  modseq: number;
  journal_horizon: number;
  acl: string;
}

const MAILBOX_COLUMNS = 'id, account_id, name, class, pure_folder, uid_validity, uid_next, modseq, journal_horizon, acl';

/** The columns of MessageMeta, in the order `toMeta` reads them (rows as arrays). */
const META_COLUMNS =
  'uid, orig_uid, modseq, flags, keywords, internal_date, size, date, date_shift, from_, to_, cc, subject, priority, attrs';

const NO_KEYWORDS: readonly string[] = Object.freeze([]);

/** Removal journal entries kept per mailbox once it is pruned (it is pruned at twice this). */
const JOURNAL_KEEP = 10_000;

/** Messages per INSERT of an append (15 parameters each; PostgreSQL takes at most 65535). */
const APPEND_CHUNK = 1000;

/** Appends of up to this many messages use a prepared statement (one per size). */
const PREPARED_APPEND_SIZES = 8;

function toMailbox(row: MailboxRow): MailboxRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    mailboxClass: row.class,
    pureFolder: row.pure_folder,
    uidValidity: row.uid_validity,
    uidNext: row.uid_next,
    highestModseq: row.modseq,
    journalHorizon: row.journal_horizon,
    acl: JSON.parse(row.acl) as AclEntryRecord[],
  };
}

/** A message row read as an array of META_COLUMNS. */
function toMeta(r: unknown[]): MessageMeta {
  const keywords = r[4] as string | null;
  const attrs = r[14] as string | null;
  return {
    uid: r[0] as number,
    origUid: r[1] as number,
    modseq: r[2] as number,
    flags: r[3] as number,
    keywords: keywords === null ? NO_KEYWORDS : (JSON.parse(keywords) as string[]),
    internalDate: r[5] as number,
    size: r[6] as number,
    date: r[7] as number | null,
    dateShift: r[8] as number,
    from: r[9] as string,
    to: r[10] as string,
    cc: r[11] as string,
    subject: r[12] as string,
    priority: r[13] as number,
    attrs: attrs === null ? null : (JSON.parse(attrs) as { [key: string]: XimssValue }),
  };
}

function keywordsColumn(keywords: readonly string[]): string | null {
  return keywords.length === 0 ? null : JSON.stringify(keywords);
}

function attrsColumn(attrs: { [key: string]: XimssValue } | null | undefined): string | null {
  return attrs ? JSON.stringify(attrs) : null;
}

/** UIDVALIDITY: seconds since the epoch plus noise, so a re-created name never reuses one. */
function newUidValidity(): number {
  return (Math.floor(Date.now() / 1000) + randomInt(1000)) % 0x7fffffff;
}

const SQL = {
  listMailboxes: { name: 'mail.listMailboxes', text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = $1 ORDER BY name` },
  getMailbox: { name: 'mail.getMailbox', text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = $1 AND name = $2` },
  getMailboxById: { name: 'mail.getMailboxById', text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE id = $1` },
  createMailbox: {
    name: 'mail.createMailbox',
    text: `INSERT INTO mailboxes (account_id, name, class, pure_folder, uid_validity) VALUES ($1, $2, $3, $4, $5)
           RETURNING ${MAILBOX_COLUMNS}`,
  },
  // The name is taken by a pure folder: that row becomes the new mailbox (its id kept).
  createOverPureFolder: {
    name: 'mail.createOverPureFolder',
    text: `INSERT INTO mailboxes (account_id, name, class, pure_folder, uid_validity) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (account_id, name) DO UPDATE SET class = excluded.class, pure_folder = excluded.pure_folder
           WHERE mailboxes.pure_folder
           RETURNING ${MAILBOX_COLUMNS}`,
  },
  renameToTemp: {
    name: 'mail.renameToTemp',
    text: `UPDATE mailboxes m SET name = r.temp FROM unnest($2::text[], $3::text[]) AS r(from_name, temp)
           WHERE m.account_id = $1 AND m.name = r.from_name`,
  },
  renameFromTemp: {
    name: 'mail.renameFromTemp',
    text: `UPDATE mailboxes m SET name = r.to_name FROM unnest($2::text[], $3::text[]) AS r(temp, to_name)
           WHERE m.account_id = $1 AND m.name = r.temp`,
  },
  // Writers lock mailboxes in id order (copy: two at once), so that they never deadlock.
  lockMailboxes: {
    name: 'mail.lockMailboxes',
    text: `SELECT ${MAILBOX_COLUMNS}, journal_size FROM mailboxes WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE`,
  },
  removeMailboxes: {
    name: 'mail.removeMailboxes',
    text: 'DELETE FROM mailboxes WHERE id = ANY($1::bigint[]) RETURNING account_id, name',
  },
  recreatePureFolders: {
    name: 'mail.recreatePureFolders',
    text: `INSERT INTO mailboxes (account_id, name, class, pure_folder, uid_validity)
           SELECT r.account_id, r.name, '', true, $3::bigint FROM unnest($1::bigint[], $2::text[]) AS r(account_id, name)`,
  },
  setAcl: { name: 'mail.setAcl', text: 'UPDATE mailboxes SET acl = $1 WHERE id = $2' },
  setClass: { name: 'mail.setClass', text: 'UPDATE mailboxes SET class = $1, pure_folder = $2 WHERE id = $3' },
  stats: {
    name: 'mail.stats',
    text: `SELECT id, messages, unseen, media, unseen_media, size,
             (SELECT min(internal_date) FROM messages m WHERE m.mailbox_id = b.id) AS oldest
           FROM mailboxes b WHERE account_id = $1`,
  },
  usage: { name: 'mail.usage', text: 'SELECT coalesce(sum(size), 0)::bigint AS total FROM mailboxes WHERE account_id = $1' },
  lockAccount: { name: 'mail.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  listMessages: { name: 'mail.listMessages', text: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = $1 ORDER BY uid` },
  // Keyset paging on the primary key (mailbox_id, uid): a seek, then `limit` rows in order.
  listMessagesPage: {
    name: 'mail.listMessagesPage',
    text: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = $1 AND uid > $2 ORDER BY uid LIMIT $3`,
  },
  getMessage: { name: 'mail.getMessage', text: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = $1 AND uid = $2` },
  findToReplace: {
    name: 'mail.findToReplace',
    text: 'SELECT uid, orig_uid, size FROM messages WHERE mailbox_id = $1 AND uid = $2',
  },
  findToReplaceByOrigUid: {
    name: 'mail.findToReplaceByOrigUid',
    text: 'SELECT uid, orig_uid, size FROM messages WHERE mailbox_id = $1 AND orig_uid = $2 ORDER BY uid DESC LIMIT 1',
  },
  readRaw: {
    name: 'mail.readRaw',
    text: 'SELECT b.data FROM messages m JOIN message_bodies b ON b.id = m.body_id WHERE m.mailbox_id = $1 AND m.uid = $2',
  },
  readHeaders: {
    name: 'mail.readHeaders',
    text: `SELECT m.uid, b.header FROM messages m JOIN message_bodies b ON b.id = m.body_id
           WHERE m.mailbox_id = $1 AND m.uid = ANY($2::bigint[])`,
  },
  recordDeliveryKey: {
    name: 'mail.recordDeliveryKey',
    text: 'INSERT INTO delivery_keys (key, created) VALUES ($1, $2) ON CONFLICT DO NOTHING',
  },
  // The bytes a copy adds (quota).
  copiedSize: {
    name: 'mail.copiedSize',
    text: `SELECT coalesce(sum(m.size), 0)::bigint AS size FROM messages m
           JOIN unnest($2::bigint[]) AS s(uid) ON m.uid = s.uid WHERE m.mailbox_id = $1`,
  },
  // The bodies a copy shares, locked in id order (as the delete trigger locks them).
  lockBodies: {
    name: 'mail.lockBodies',
    text: `SELECT 1 FROM message_bodies WHERE id IN (SELECT body_id FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]))
           ORDER BY id FOR NO KEY UPDATE`,
  },
  copy: {
    name: 'mail.copy',
    text: `WITH src AS MATERIALIZED (
             SELECT m.*, s.uid AS from_uid, row_number() OVER (ORDER BY s.ord) - 1 AS rn
             FROM unnest($3::bigint[]) WITH ORDINALITY AS s(uid, ord)
             JOIN messages m ON m.mailbox_id = $2 AND m.uid = s.uid),
           box AS (
             UPDATE mailboxes SET modseq = modseq + 1, uid_next = uid_next + (SELECT count(*) FROM src)
             WHERE id = $1 AND EXISTS (SELECT 1 FROM src)
             RETURNING uid_next - (SELECT count(*) FROM src) AS first_uid, modseq),
           refs AS (
             UPDATE message_bodies mb SET refs = mb.refs + d.n
             FROM (SELECT body_id, count(*) AS n FROM src GROUP BY body_id) d WHERE mb.id = d.body_id),
           ins AS (
             INSERT INTO messages (mailbox_id, uid, orig_uid, modseq, flags, keywords, internal_date, size, body_id,
               date, date_shift, from_, to_, cc, subject, priority, attrs)
             SELECT $1, box.first_uid + src.rn, box.first_uid + src.rn, box.modseq, src.flags | 32, src.keywords,
               src.internal_date, src.size, src.body_id, src.date, src.date_shift, src.from_, src.to_, src.cc,
               src.subject, src.priority, src.attrs
             FROM src CROSS JOIN box)
           SELECT src.from_uid, box.first_uid + src.rn AS uid, box.first_uid + src.rn AS orig_uid, box.modseq,
             src.flags | 32 AS flags, src.keywords, src.internal_date, src.size, src.date, src.date_shift, src.from_,
             src.to_, src.cc, src.subject, src.priority, src.attrs
           FROM src CROSS JOIN box ORDER BY src.rn`,
  },
  bump: { name: 'mail.bump', text: 'UPDATE mailboxes SET modseq = modseq + 1 WHERE id = $1 RETURNING modseq, uid_next' },
  // Removes messages and journals each removal under `modseq`, in one statement.
  remove: {
    name: 'mail.remove',
    text: `WITH d AS (DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) RETURNING uid, orig_uid),
           j AS (INSERT INTO expunged (mailbox_id, modseq, uid, orig_uid) SELECT $1, $3, uid, orig_uid FROM d),
           n AS (UPDATE mailboxes SET journal_size = journal_size + (SELECT count(*) FROM d) WHERE id = $1
                 RETURNING journal_size)
           SELECT d.uid, d.orig_uid, n.journal_size FROM d CROSS JOIN n`,
  },
  journalCut: {
    name: 'mail.journalCut',
    text: 'SELECT modseq FROM expunged WHERE mailbox_id = $1 ORDER BY modseq DESC LIMIT 1 OFFSET $2',
  },
  journalPrune: {
    name: 'mail.journalPrune',
    text: `WITH d AS (DELETE FROM expunged WHERE mailbox_id = $1 AND modseq <= $2 RETURNING 1)
           UPDATE mailboxes SET journal_horizon = $2, journal_size = journal_size - (SELECT count(*) FROM d) WHERE id = $1`,
  },
  flagsModified: {
    name: 'mail.flagsModified',
    text: 'SELECT uid FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) AND modseq > $3 ORDER BY uid',
  },
  // A delta without keywords, decided by PostgreSQL on each stored row.
  setSystemFlags: {
    name: 'mail.setSystemFlags',
    text: `UPDATE messages SET flags = (flags | $3) & ~$4::int, modseq = $5
           WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) AND ((flags | $3) & ~$4::int) <> flags
             AND ($6::bigint IS NULL OR modseq <= $6)
           RETURNING ${META_COLUMNS}`,
  },
  readFlags: {
    name: 'mail.readFlags',
    text: 'SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])',
  },
  writeFlags: {
    name: 'mail.writeFlags',
    text: `UPDATE messages m SET flags = u.flags, keywords = u.keywords, modseq = $2
           FROM unnest($3::bigint[], $4::int[], $5::text[]) AS u(uid, flags, keywords)
           WHERE m.mailbox_id = $1 AND m.uid = u.uid
           RETURNING ${META_COLUMNS.replace(/(\w+)/g, 'm.$1')}`,
  },
  setAttrs: {
    name: 'mail.setAttrs',
    text: `UPDATE messages SET attrs = $3, modseq = $4 WHERE mailbox_id = $1 AND uid = $2 RETURNING ${META_COLUMNS}`,
  },
  changedSince: {
    name: 'mail.changedSince',
    text: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid`,
  },
  removedSince: {
    name: 'mail.removedSince',
    text: 'SELECT uid, orig_uid, modseq FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY modseq, uid',
  },
  subscriptions: { name: 'mail.subscriptions', text: 'SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name' },
  subscribe: { name: 'mail.subscribe', text: 'INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING' },
  unsubscribe: { name: 'mail.unsubscribe', text: 'DELETE FROM subscriptions WHERE account_id = $1 AND name = $2' },
  aliases: { name: 'mail.aliases', text: 'SELECT name, target FROM mailbox_aliases WHERE account_id = $1 ORDER BY name' },
  setAlias: {
    name: 'mail.setAlias',
    text: `INSERT INTO mailbox_aliases (account_id, name, target) VALUES ($1, $2, $3)
           ON CONFLICT (account_id, name) DO UPDATE SET target = excluded.target`,
  },
  removeAlias: { name: 'mail.removeAlias', text: 'DELETE FROM mailbox_aliases WHERE account_id = $1 AND name = $2' },
} satisfies Record<string, Sql>;

/** Parameters of one appended message, in the order of `appendSql`'s VALUES. */
const APPEND_PARAMS = 15;

/**
 * The append of `n` messages as one statement: the mailbox's modseq bumped by $3 (1; 0 for
 * the further chunks of a large batch) and uid_next by n (its row locked), bodies and
 * messages inserted with the UIDs that follow. Returns the first UID and the modseq, or no
 * row when the mailbox does not exist (nothing inserted). $1 mailbox, $2 n, $3 the bump;
 * then per message: header, data, orig_uid (NULL: its UID), flags, keywords, internal_date,
 * size, date, date_shift, from, to, cc, subject, priority, attrs.
 */
function appendSql(n: number): Sql {
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = 4 + i * APPEND_PARAMS;
    const $ = (k: number): string => `$${p + k}`;
    rows.push(
      `(${i}, ${$(0)}::bytea, ${$(1)}::bytea, ${$(2)}::bigint, ${$(3)}::int, ${$(4)}::text, ${$(5)}::bigint, ${$(6)}::bigint, ` +
        `${$(7)}::bigint, ${$(8)}::int, ${$(9)}::text, ${$(10)}::text, ${$(11)}::text, ${$(12)}::text, ${$(13)}::int, ${$(14)}::text)`,
    );
  }
  return {
    name: n <= PREPARED_APPEND_SIZES ? `mail.append${n}` : undefined,
    text: `WITH box AS (
             UPDATE mailboxes SET modseq = modseq + $3::int, uid_next = uid_next + $2::int WHERE id = $1
             RETURNING uid_next - $2::int AS first_uid, modseq),
           v (ord, header, data, orig_uid, flags, keywords, internal_date, size, date, date_shift, from_, to_, cc,
              subject, priority, attrs) AS (VALUES ${rows.join(', ')}),
           vb AS MATERIALIZED (
             SELECT nextval('message_bodies_id_seq') AS body_id, box.first_uid + v.ord AS uid, box.modseq, v.*
             FROM v CROSS JOIN box),
           b AS (INSERT INTO message_bodies (id, refs, header, data) SELECT body_id, 1, header, data FROM vb)
           , m AS (INSERT INTO messages (mailbox_id, uid, orig_uid, modseq, flags, keywords, internal_date, size, body_id,
               date, date_shift, from_, to_, cc, subject, priority, attrs)
             SELECT $1, uid, coalesce(orig_uid, uid), modseq, flags, keywords, internal_date, size, body_id, date,
               date_shift, from_, to_, cc, subject, priority, attrs
             FROM vb)
           SELECT first_uid, modseq FROM box`,
  };
}

const appendStatements = new Map<number, Sql>();

function appendStatement(n: number): Sql {
  let sql = appendStatements.get(n);
  if (!sql) {
    sql = appendSql(n);
    if (n <= PREPARED_APPEND_SIZES) appendStatements.set(n, sql);
  }
  return sql;
}

function appendParams(mailboxId: number, bump: number, messages: readonly NewMessage[], origUids: readonly (number | null)[]): Param[] {
  const params: Param[] = [mailboxId, messages.length, bump];
  messages.forEach((m, i) => {
    const e = m.envelope;
    params.push(
      Buffer.from(m.header, 'latin1'),
      m.raw,
      origUids[i] ?? null,
      m.flags,
      keywordsColumn(m.keywords),
      m.internalDate,
      m.raw.length,
      e.date,
      e.dateShift,
      e.from,
      e.to,
      e.cc,
      e.subject,
      e.priority,
      attrsColumn(m.attrs),
    );
  });
  return params;
}

function appended(messages: readonly NewMessage[], firstUid: number, modseq: number, origUids: readonly (number | null)[]): MessageMeta[] {
  return messages.map((m, i) => {
    const uid = firstUid + i;
    return {
      uid,
      origUid: origUids[i] ?? uid,
      modseq,
      flags: m.flags,
      keywords: m.keywords,
      internalDate: m.internalDate,
      size: m.raw.length,
      ...m.envelope,
      attrs: m.attrs ?? null,
    };
  });
}

interface LockedMailbox extends MailboxRow {
  journal_size: number;
}

/**
 * Mailboxes and messages in PostgreSQL. Every method is one transaction (or one
 * statement). A transaction that changes a mailbox's messages first takes the mailbox row
 * (bumping its modseq, or `lockMailboxes` in id order): writers of one mailbox follow each
 * other, and each commit is exactly one modseq. Lock order, everywhere: the account row
 * (quota checks), mailbox rows by id, message bodies by id.
 */
export class PgMail implements MailStore {
  constructor(private readonly db: Db) {}

  async listMailboxes(accountId: number): Promise<MailboxRecord[]> {
    return (await this.db.rows<MailboxRow>(SQL.listMailboxes, [accountId])).map(toMailbox);
  }

  async getMailbox(accountId: number, name: string): Promise<MailboxRecord | undefined> {
    const row = await this.db.row<MailboxRow>(SQL.getMailbox, [accountId, name]);
    return row && toMailbox(row);
  }

  async getMailboxById(id: number): Promise<MailboxRecord | undefined> {
    const row = await this.db.row<MailboxRow>(SQL.getMailboxById, [id]);
    return row && toMailbox(row);
  }

  async createMailbox(
    accountId: number,
    name: string,
    mailboxClass: string,
    pureFolder: boolean,
    options: { overPureFolder?: boolean } = {},
  ): Promise<MailboxRecord> {
    const sql = options.overPureFolder ? SQL.createOverPureFolder : SQL.createMailbox;
    let row: MailboxRow | undefined;
    try {
      row = await this.db.row<MailboxRow>(sql, [accountId, name, mailboxClass, pureFolder, newUidValidity()]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`mailbox ${name} already exists`);
      throw err;
    }
    // No row: the name is taken by a mailbox that is not a pure folder.
    if (!row) throw new AlreadyExistsError(`mailbox ${name} already exists`);
    return toMailbox(row);
  }

  async renameMailboxes(accountId: number, renames: readonly { from: string; to: string }[]): Promise<void> {
    if (renames.length === 0) return;
    // Two passes through temporary names, so that renames may swap or shift names.
    const temps = renames.map((_, i) => `\u0001rename-${i}`);
    try {
      await this.db.tx(async (tx) => {
        await tx.run(SQL.renameToTemp, [accountId, renames.map((r) => r.from), temps]);
        await tx.run(SQL.renameFromTemp, [accountId, temps, renames.map((r) => r.to)]);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError('a mailbox with the new name already exists');
      throw err;
    }
  }

  async removeMailboxes(ids: readonly number[], options: { leavePureFolders?: boolean } = {}): Promise<void> {
    if (ids.length === 0) return;
    await this.db.tx(async (tx) => {
      await tx.rows(SQL.lockMailboxes, [ids]);
      // Messages and journal go by the mailboxes trigger.
      const removed = await tx.rows<{ account_id: number; name: string }>(SQL.removeMailboxes, [ids]);
      if (options.leavePureFolders && removed.length > 0) {
        await tx.run(SQL.recreatePureFolders, [removed.map((r) => r.account_id), removed.map((r) => r.name), newUidValidity()]);
      }
    });
  }

  async setMailboxAcl(id: number, acl: readonly AclEntryRecord[]): Promise<void> {
    await this.db.run(SQL.setAcl, [JSON.stringify(acl), id]);
  }

  async setMailboxClass(id: number, mailboxClass: string, pureFolder: boolean): Promise<void> {
    await this.db.run(SQL.setClass, [mailboxClass, pureFolder, id]);
  }

  async mailboxStats(accountId: number): Promise<Map<number, MailboxStats>> {
    const rows = await this.db.rows<{
      id: number;
      messages: number;
      unseen: number;
      media: number;
      unseen_media: number;
      size: number;
      oldest: number | null;
    }>(SQL.stats, [accountId]);
    return new Map(
      rows.map((r) => [
        r.id,
        { messages: r.messages, unseen: r.unseen, media: r.media, unseenMedia: r.unseen_media, size: r.size, oldest: r.oldest },
      ]),
    );
  }

  async accountUsage(accountId: number): Promise<number> {
    return (await this.db.row<{ total: number }>(SQL.usage, [accountId]))!.total;
  }

  async listMessages(mailboxId: number, page?: MessagePage): Promise<MessageMeta[]> {
    const rows = page
      ? await this.db.arrays(SQL.listMessagesPage, [mailboxId, page.afterUid, page.limit])
      : await this.db.arrays(SQL.listMessages, [mailboxId]);
    return rows.map(toMeta);
  }

  async getMessage(mailboxId: number, uid: number): Promise<MessageMeta | undefined> {
    const row = (await this.db.arrays(SQL.getMessage, [mailboxId, uid]))[0];
    return row && toMeta(row);
  }

  async readRaw(mailboxId: number, uid: number): Promise<Buffer | undefined> {
    return (await this.db.row<{ data: Buffer }>(SQL.readRaw, [mailboxId, uid]))?.data;
  }

  async readHeaders(mailboxId: number, uids: readonly number[]): Promise<Map<number, string>> {
    const headers = new Map<number, string>();
    if (uids.length === 0) return headers;
    const rows = await this.db.rows<{ uid: number; header: Buffer }>(SQL.readHeaders, [mailboxId, uids]);
    const byUid = new Map(rows.map((r) => [r.uid, r.header.toString('latin1')]));
    // In the order asked for, like the SQLite engine.
    for (const uid of uids) {
      const header = byUid.get(uid);
      if (header !== undefined) headers.set(uid, header);
    }
    return headers;
  }

  async append(mailboxId: number, messages: readonly NewMessage[], options: AppendOptions = {}): Promise<AppendResult> {
    const { replace, deliveryKey, quota } = options;
    const origUids = messages.map((m) => m.origUid ?? null);
    // The common case is one statement: its own transaction, one round trip.
    if (!replace && deliveryKey === undefined && !quota && messages.length > 0 && messages.length <= APPEND_CHUNK) {
      const row = await this.db.row<{ first_uid: number; modseq: number }>(
        appendStatement(messages.length),
        appendParams(mailboxId, 1, messages, origUids),
      );
      if (!row) throw new NotFoundError('mailbox not found');
      return {
        messages: appended(messages, row.first_uid, row.modseq, origUids),
        modseq: row.modseq,
        replaced: null,
        uidNext: row.first_uid + messages.length,
      };
    }
    return this.db.tx(async (tx): Promise<AppendResult> => {
      if (deliveryKey !== undefined && (await tx.run(SQL.recordDeliveryKey, [deliveryKey, Date.now()])) === 0) {
        // Delivered before: nothing is stored.
        tx.rollback();
        const box = await tx.row<MailboxRow>(SQL.getMailboxById, [mailboxId]);
        if (!box) throw new NotFoundError('mailbox not found');
        return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
      }
      if (quota) await lockAccount(tx, quota);
      const [box] = await tx.rows<LockedMailbox>(SQL.lockMailboxes, [[mailboxId]]);
      if (!box) throw new NotFoundError('mailbox not found');
      let replaced: { uid: number; orig_uid: number; size: number } | undefined;
      if (replace) {
        replaced = await tx.row(replace.byOrigUid ? SQL.findToReplaceByOrigUid : SQL.findToReplace, [mailboxId, replace.uid]);
        if (!replaced && replace.mustExist) throw new NotFoundError('the message to replace does not exist');
        if (replaced && replace.keepOrigUid) {
          for (let i = 0; i < origUids.length; i++) origUids[i] ??= replaced.orig_uid;
        }
      }
      if (quota) {
        const adding = messages.reduce((sum, m) => sum + m.raw.length, 0) - (replaced?.size ?? 0);
        await checkQuota(tx, quota, adding);
      }
      if (messages.length === 0 && !replaced) {
        tx.rollback();
        return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
      }
      const modseq = box.modseq + 1;
      const added: MessageMeta[] = [];
      if (messages.length === 0) await tx.rows(SQL.bump, [mailboxId]);
      for (let start = 0; start < messages.length; start += APPEND_CHUNK) {
        // The first chunk bumps the modseq, the others add to the same one.
        const chunk = messages.slice(start, start + APPEND_CHUNK);
        const chunkOrig = origUids.slice(start, start + APPEND_CHUNK);
        const params = appendParams(mailboxId, start === 0 ? 1 : 0, chunk, chunkOrig);
        const row = (await tx.row<{ first_uid: number; modseq: number }>(appendStatement(chunk.length), params))!;
        added.push(...appended(chunk, row.first_uid, row.modseq, chunkOrig));
      }
      if (replaced) await this.removeMessages(tx, mailboxId, [replaced.uid], modseq);
      return { messages: added, modseq, replaced: replaced ? replaced.uid : null, uidNext: box.uid_next + messages.length };
    });
  }

  async copy(fromMailboxId: number, uids: readonly number[], toMailboxId: number, options: { move: boolean; quota?: QuotaCheck }): Promise<CopyResult> {
    return this.db.tx(async (tx): Promise<CopyResult> => {
      if (options.quota) await lockAccount(tx, options.quota);
      const boxes = await tx.rows<LockedMailbox>(SQL.lockMailboxes, [[fromMailboxId, toMailboxId]]);
      const source = boxes.find((b) => b.id === fromMailboxId);
      const target = boxes.find((b) => b.id === toMailboxId);
      if (!source || !target) throw new NotFoundError('mailbox not found');
      const unchanged = { copied: [], modseq: target.modseq, sourceModseq: source.modseq, uidNext: target.uid_next };
      if (uids.length === 0) {
        tx.rollback();
        return unchanged;
      }
      if (options.quota) {
        // A move inside one account adds nothing to it.
        const { size } = (await tx.row<{ size: number }>(SQL.copiedSize, [fromMailboxId, uids]))!;
        await checkQuota(tx, options.quota, options.move && source.account_id === target.account_id ? 0 : size);
      }
      await tx.rows(SQL.lockBodies, [fromMailboxId, uids]);
      const rows = await tx.arrays(SQL.copy, [toMailboxId, fromMailboxId, uids]);
      if (rows.length === 0) {
        tx.rollback();
        return unchanged;
      }
      const copied = rows.map((r) => ({ from: r[0] as number, to: toMeta(r.slice(1)) }));
      const modseq = copied[0]!.to.modseq;
      const uidNext = copied[copied.length - 1]!.to.uid + 1;
      let sourceModseq = fromMailboxId === toMailboxId ? modseq : source.modseq;
      if (options.move) {
        const bumped = (await tx.row<{ modseq: number }>(SQL.bump, [fromMailboxId]))!;
        sourceModseq = bumped.modseq;
        await this.removeMessages(tx, fromMailboxId, copied.map((c) => c.from), sourceModseq);
      }
      return { copied, modseq, sourceModseq, uidNext };
    });
  }

  async updateFlags(mailboxId: number, uids: readonly number[], delta: FlagDelta, options: { unchangedSince?: number } = {}): Promise<FlagResult> {
    const since = options.unchangedSince ?? null;
    return this.db.tx(async (tx): Promise<FlagResult> => {
      // Bumped first: the mailbox's writers wait here; rolled back when nothing changes.
      const box = await tx.row<{ modseq: number }>(SQL.bump, [mailboxId]);
      if (!box) throw new NotFoundError('mailbox not found');
      const modseq = box.modseq;
      let changed: MessageMeta[];
      let modified: number[] = [];
      if (uids.length === 0) {
        changed = [];
      } else if (delta.addKeywords.length === 0 && delta.removeKeywords.length === 0) {
        if (since !== null) modified = (await tx.rows<{ uid: number }>(SQL.flagsModified, [mailboxId, uids, since])).map((r) => r.uid);
        const rows = await tx.arrays(SQL.setSystemFlags, [mailboxId, uids, delta.set, delta.clear, modseq, since]);
        changed = rows.map(toMeta).sort((a, b) => a.uid - b.uid);
      } else {
        const rows = await tx.rows<{ uid: number; modseq: number; flags: number; keywords: string | null }>(SQL.readFlags, [mailboxId, uids]);
        const updates: { uid: number; flags: number; keywords: string | null }[] = [];
        for (const row of rows) {
          if (since !== null && row.modseq > since) {
            modified.push(row.uid);
            continue;
          }
          const keywords = row.keywords === null ? NO_KEYWORDS : (JSON.parse(row.keywords) as string[]);
          const next = applyFlagDelta(row.flags, keywords, delta);
          if (next.flags !== row.flags || next.keywords !== keywords) {
            updates.push({ uid: row.uid, flags: next.flags, keywords: keywordsColumn(next.keywords) });
          }
        }
        modified.sort((a, b) => a - b);
        if (updates.length === 0) {
          changed = [];
        } else {
          const written = await tx.arrays(SQL.writeFlags, [
            mailboxId,
            modseq,
            updates.map((u) => u.uid),
            updates.map((u) => u.flags),
            updates.map((u) => u.keywords),
          ]);
          changed = written.map(toMeta).sort((a, b) => a.uid - b.uid);
        }
      }
      if (changed.length === 0) {
        tx.rollback();
        return { modseq: modseq - 1, changed, modified };
      }
      return { modseq, changed, modified };
    });
  }

  async setAttrs(mailboxId: number, uid: number, attrs: { [key: string]: XimssValue } | null): Promise<{ modseq: number; changed: MessageMeta | undefined }> {
    return this.db.tx(async (tx) => {
      const box = await tx.row<{ modseq: number }>(SQL.bump, [mailboxId]);
      if (!box) throw new NotFoundError('mailbox not found');
      const row = (await tx.arrays(SQL.setAttrs, [mailboxId, uid, attrsColumn(attrs), box.modseq]))[0];
      if (!row) {
        tx.rollback();
        return { modseq: box.modseq - 1, changed: undefined };
      }
      return { modseq: box.modseq, changed: toMeta(row) };
    });
  }

  async expunge(mailboxId: number, uids: readonly number[]): Promise<{ modseq: number; removed: { uid: number; origUid: number }[] }> {
    return this.db.tx(async (tx) => {
      const box = await tx.row<{ modseq: number }>(SQL.bump, [mailboxId]);
      if (!box) throw new NotFoundError('mailbox not found');
      const removed = uids.length === 0 ? [] : await this.removeMessages(tx, mailboxId, uids, box.modseq);
      if (removed.length === 0) {
        tx.rollback();
        return { modseq: box.modseq - 1, removed };
      }
      return { modseq: box.modseq, removed };
    });
  }

  async changesSince(mailboxId: number, modseq: number): Promise<ChangeSet> {
    // One snapshot; the three reads travel together (pipelined).
    return this.db.tx(
      async (tx): Promise<ChangeSet> => {
        const [box, changed, removed] = await Promise.all([
          tx.row<MailboxRow>(SQL.getMailboxById, [mailboxId]),
          tx.arrays(SQL.changedSince, [mailboxId, modseq]),
          tx.rows<{ uid: number; orig_uid: number; modseq: number }>(SQL.removedSince, [mailboxId, modseq]),
        ]);
        if (!box) throw new NotFoundError('mailbox not found');
        return {
          modseq: box.modseq,
          uidNext: box.uid_next,
          changed: changed.map(toMeta),
          removed: removed.map((r) => ({ uid: r.uid, origUid: r.orig_uid, modseq: r.modseq })),
          complete: modseq >= box.journal_horizon,
        };
      },
      { snapshot: true },
    );
  }

  async subscriptions(accountId: number): Promise<string[]> {
    return (await this.db.rows<{ name: string }>(SQL.subscriptions, [accountId])).map((r) => r.name);
  }

  async setSubscribed(accountId: number, name: string, subscribed: boolean): Promise<void> {
    await this.db.run(subscribed ? SQL.subscribe : SQL.unsubscribe, [accountId, name]);
  }

  async aliases(accountId: number): Promise<{ name: string; target: string }[]> {
    return this.db.rows<{ name: string; target: string }>(SQL.aliases, [accountId]);
  }

  async setAlias(accountId: number, name: string, target: string | null): Promise<void> {
    if (target === null) await this.db.run(SQL.removeAlias, [accountId, name]);
    else await this.db.run(SQL.setAlias, [accountId, name, target]);
  }

  /**
   * Removes messages (the mailbox row already locked by this transaction), journals the
   * removals under `modseq`, and keeps the journal bounded. In the order of `uids`.
   */
  private async removeMessages(tx: Tx, mailboxId: number, uids: readonly number[], modseq: number): Promise<{ uid: number; origUid: number }[]> {
    const rows = await tx.rows<{ uid: number; orig_uid: number; journal_size: number }>(SQL.remove, [mailboxId, uids, modseq]);
    if (rows.length === 0) return [];
    const byUid = new Map(rows.map((r) => [r.uid, r.orig_uid]));
    const removed: { uid: number; origUid: number }[] = [];
    for (const uid of uids) {
      const origUid = byUid.get(uid);
      if (origUid === undefined) continue;
      byUid.delete(uid);
      removed.push({ uid, origUid });
    }
    if (rows[0]!.journal_size > JOURNAL_KEEP * 2) {
      // A mailboxSync from before the horizon resynchronises fully.
      const cut = await tx.row<{ modseq: number }>(SQL.journalCut, [mailboxId, JOURNAL_KEEP]);
      if (cut) await tx.run(SQL.journalPrune, [mailboxId, cut.modseq]);
    }
    return removed;
  }
}

/** Takes the account's row (quota checks of one account follow each other). */
async function lockAccount(tx: Tx, quota: QuotaCheck): Promise<void> {
  await tx.rows(SQL.lockAccount, [quota.accountId]);
}

/** QuotaExceededError when the account would hold more than its limit with `adding` more bytes. */
async function checkQuota(tx: Tx, quota: QuotaCheck, adding: number): Promise<void> {
  const { total } = (await tx.row<{ total: number }>(SQL.usage, [quota.accountId]))!;
  if (adding > 0 && total + adding > quota.limit) {
    throw new QuotaExceededError(`the account would exceed its storage limit (${quota.limit} bytes)`);
  }
}
