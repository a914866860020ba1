import { randomUUID } from 'node:crypto';
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
import { fromText, isUniqueViolation, sqlState, toText, violatedConstraint, withoutNul, type Db, type Param, type Sql, type Tx } from './db.js';
import { JOURNAL_KEEP, keywordsColumn, newUidValidity, NO_KEYWORDS } from '../rows.js';

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

/**
 * The columns of MessageMeta as `toMeta` reads them (rows as arrays): the numbers packed in
 * one text column (`uid,orig_uid,modseq,flags,internal_date,size,date,date_shift,priority`,
 * date '' when NULL), then keywords, from, to, cc, subject, attrs. Reading a 100,000-message
 * mailbox is mostly the driver making a string of every column: packing the nine numbers
 * saves a fifth of it. `m` names the row, or gives an expression for each column.
 */
function metaColumns(m: string | ((column: string) => string) = ''): string {
  const c = typeof m === 'function' ? m : (column: string): string => (m === '' ? column : `${m}.${column}`);
  return (
    `concat_ws(',', ${c('uid')}, ${c('orig_uid')}, ${c('modseq')}, ${c('flags')}, ${c('internal_date')}, ${c('size')}, ` +
    `coalesce((${c('date')})::text, ''), ${c('date_shift')}, ${c('priority')}), ` +
    `${c('keywords')}, ${c('from_')}, ${c('to_')}, ${c('cc')}, ${c('subject')}, ${c('attrs')}`
  );
}

const META_COLUMNS = metaColumns();

/** The message columns themselves (to be packed by an outer SELECT). */
const RAW_META_COLUMNS = (m: string): string =>
  ['uid', 'orig_uid', 'modseq', 'flags', 'keywords', 'internal_date', 'size', 'date', 'date_shift', 'from_', 'to_', 'cc', 'subject', 'priority', 'attrs']
    .map((c) => `${m}.${c}`)
    .join(', ');


/** The flag bits the mailbox counters follow (see services/mail/flags.ts). */
const SEEN = 1;
const MEDIA = 64;

/** A message's contribution to the unseen, media and unseen-media counters. */
function counted(flags: number): [number, number, number] {
  return [(flags & SEEN) === 0 ? 1 : 0, (flags & MEDIA) !== 0 ? 1 : 0, (flags & (SEEN | MEDIA)) === MEDIA ? 1 : 0];
}


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

/** A message row read as an array of metaColumns(). */
function toMeta(r: unknown[]): MessageMeta {
  const n = (r[0] as string).split(',');
  const keywords = r[1] as string | null;
  const attrs = r[6] as string | null;
  const date = n[6]!;
  return {
    uid: Number(n[0]),
    origUid: Number(n[1]),
    modseq: Number(n[2]),
    flags: Number(n[3]),
    keywords: keywords === null ? NO_KEYWORDS : (JSON.parse(keywords) as string[]),
    internalDate: Number(n[4]),
    size: Number(n[5]),
    date: date === '' ? null : Number(date),
    dateShift: Number(n[7]),
    from: fromText(r[2] as string),
    to: fromText(r[3] as string),
    cc: fromText(r[4] as string),
    subject: fromText(r[5] as string),
    priority: Number(n[8]),
    attrs: attrs === null ? null : (JSON.parse(attrs) as { [key: string]: XimssValue }),
  };
}


function attrsColumn(attrs: { [key: string]: XimssValue } | null | undefined): string | null {
  return attrs ? JSON.stringify(attrs) : null;
}


/** The counters of a set of message rows (flag bits: 1 Seen, 64 Media), for a mailbox's. */
const COUNTS = `count(*) AS n, coalesce(sum(size), 0) AS size, count(*) FILTER (WHERE flags & 1 = 0) AS unseen,
  count(*) FILTER (WHERE flags & 64 <> 0) AS media, count(*) FILTER (WHERE flags & 65 = 64) AS unseen_media`;

const SQL = {
  listMailboxes: { name: 'mail.listMailboxes', text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = $1 ORDER BY name` },
  getMailbox: { name: 'mail.getMailbox', text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = $1 AND name = $2` },
  getMailboxById: { name: 'mail.getMailboxById', text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE id = $1` },
  modseqs: { name: 'mail.modseqs', text: 'SELECT id, modseq FROM mailboxes WHERE id = ANY($1)' },
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
    text: `SELECT ${MAILBOX_COLUMNS} FROM mailboxes WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE`,
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
  lockAcl: { name: 'mail.lockAcl', text: 'SELECT acl FROM mailboxes WHERE id = $1 FOR NO KEY UPDATE' },
  // Flag bit 8: Deleted (see services/mail/flags.ts).
  deletedAmong: { name: 'mail.deletedAmong', text: 'SELECT uid FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) AND flags & 8 <> 0' },
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
  // The bodies of messages about to be copied or removed, locked in id order (as every
  // writer of their refs locks them: no deadlocks between two such writers).
  lockBodies: {
    name: 'mail.lockBodies',
    text: `SELECT 1 FROM message_bodies WHERE id IN (SELECT body_id FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]))
           ORDER BY id FOR UPDATE`,
  },
  copy: {
    name: 'mail.copy',
    text: `WITH src AS MATERIALIZED (
             SELECT m.*, s.uid AS from_uid, row_number() OVER (ORDER BY s.ord) - 1 AS rn
             FROM unnest($3::bigint[]) WITH ORDINALITY AS s(uid, ord)
             JOIN messages m ON m.mailbox_id = $2 AND m.uid = s.uid),
           agg AS (SELECT ${COUNTS} FROM src),
           box AS (
             UPDATE mailboxes b SET modseq = b.modseq + 1, uid_next = b.uid_next + agg.n, messages = b.messages + agg.n,
               size = b.size + agg.size, unseen = b.unseen + agg.unseen, media = b.media + agg.media,
               unseen_media = b.unseen_media + agg.unseen_media
             FROM agg WHERE b.id = $1 AND agg.n > 0
             RETURNING b.uid_next - agg.n AS first_uid, b.modseq),
           refs AS (
             UPDATE message_bodies mb SET refs = mb.refs + d.n
             FROM (SELECT body_id, count(*) AS n FROM src GROUP BY body_id) d
             WHERE mb.id = d.body_id AND EXISTS (SELECT 1 FROM box)),
           ins AS (
             INSERT INTO messages (mailbox_id, uid, orig_uid, modseq, flags, keywords, internal_date, size, body_id,
               date, date_shift, from_, to_, cc, subject, priority, attrs)
             SELECT $1, box.first_uid + src.rn, box.first_uid + src.rn, box.modseq, src.flags | 32, src.keywords,
               src.internal_date, src.size, src.body_id, src.date, src.date_shift, src.from_, src.to_, src.cc,
               src.subject, src.priority, src.attrs
             FROM src CROSS JOIN box)
           SELECT src.from_uid, ${metaColumns((c) =>
             c === 'uid' || c === 'orig_uid' ? 'box.first_uid + src.rn' : c === 'modseq' ? 'box.modseq' : c === 'flags' ? 'src.flags | 32' : `src.${c}`,
           )}
           FROM src CROSS JOIN box ORDER BY src.rn`,
  },
  bump: { name: 'mail.bump', text: 'UPDATE mailboxes SET modseq = modseq + 1 WHERE id = $1 RETURNING modseq, uid_next' },
  // Removes messages (their bodies locked first: lockBodies) in one statement: journals
  // each removal under the mailbox's modseq (bumped earlier in the transaction), drops the
  // references to the bodies (and the bodies no message uses any more), keeps the counters.
  remove: {
    name: 'mail.remove',
    text: `WITH d AS (
             DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])
             RETURNING uid, orig_uid, size, flags, body_id),
           j AS (
             INSERT INTO expunged (mailbox_id, modseq, uid, orig_uid)
             SELECT $1, (SELECT modseq FROM mailboxes WHERE id = $1), uid, orig_uid FROM d),
           counts AS (SELECT body_id, count(*) AS n FROM d GROUP BY body_id),
           gone AS (DELETE FROM message_bodies mb USING counts c WHERE mb.id = c.body_id AND mb.refs <= c.n),
           refs AS (UPDATE message_bodies mb SET refs = mb.refs - c.n FROM counts c WHERE mb.id = c.body_id AND mb.refs > c.n),
           agg AS (SELECT ${COUNTS} FROM d),
           box AS (
             UPDATE mailboxes b SET journal_size = b.journal_size + agg.n, messages = b.messages - agg.n,
               size = b.size - agg.size, unseen = b.unseen - agg.unseen, media = b.media - agg.media,
               unseen_media = b.unseen_media - agg.unseen_media
             FROM agg WHERE b.id = $1 AND agg.n > 0
             RETURNING b.journal_size)
           SELECT d.uid, d.orig_uid, box.journal_size FROM d CROSS JOIN box`,
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
    text: 'SELECT uid FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) AND modseq > $3',
  },
  // A delta without keywords, decided by PostgreSQL on each stored row, under the modseq
  // bumped earlier in the transaction; the counters follow.
  setSystemFlags: {
    name: 'mail.setSystemFlags',
    text: `WITH u AS (
             UPDATE messages m SET flags = (o.flags | $3::int) & ~$4::int, modseq = (SELECT modseq FROM mailboxes WHERE id = $1)
             FROM (
               SELECT uid, flags FROM messages
               WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) AND ((flags | $3::int) & ~$4::int) <> flags
                 AND ($5::bigint IS NULL OR modseq <= $5)
             ) o
             WHERE m.mailbox_id = $1 AND m.uid = o.uid
             RETURNING ${RAW_META_COLUMNS('m')}, o.flags AS old_flags),
           d AS (
             SELECT sum((flags & 1 = 0)::int - (old_flags & 1 = 0)::int) AS unseen,
               sum((flags & 64 <> 0)::int - (old_flags & 64 <> 0)::int) AS media,
               sum((flags & 65 = 64)::int - (old_flags & 65 = 64)::int) AS unseen_media
             FROM u),
           c AS (
             UPDATE mailboxes b SET unseen = b.unseen + d.unseen, media = b.media + d.media, unseen_media = b.unseen_media + d.unseen_media
             FROM d WHERE b.id = $1 AND (d.unseen <> 0 OR d.media <> 0 OR d.unseen_media <> 0))
           SELECT ${metaColumns('u')} FROM u`,
  },
  readFlags: {
    name: 'mail.readFlags',
    text: 'SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])',
  },
  // Flags and keywords decided by the store ($6..$8: the counters' changes).
  writeFlags: {
    name: 'mail.writeFlags',
    text: `WITH c AS (
             UPDATE mailboxes SET unseen = unseen + $6::int, media = media + $7::int, unseen_media = unseen_media + $8::int
             WHERE id = $1 AND ($6::int <> 0 OR $7::int <> 0 OR $8::int <> 0))
           UPDATE messages m SET flags = u.flags, keywords = u.keywords, modseq = $2
           FROM unnest($3::bigint[], $4::int[], $5::text[]) AS u(uid, flags, keywords)
           WHERE m.mailbox_id = $1 AND m.uid = u.uid
           RETURNING ${metaColumns('m')}`,
  },
  setAttrs: {
    name: 'mail.setAttrs',
    text: `UPDATE messages SET attrs = $3, modseq = (SELECT modseq FROM mailboxes WHERE id = $1)
           WHERE mailbox_id = $1 AND uid = $2 RETURNING ${META_COLUMNS}`,
  },
  changedSince: {
    name: 'mail.changedSince',
    // Sorted by the caller: without ORDER BY uid no plan is tempted to walk the whole mailbox.
    text: `SELECT ${META_COLUMNS} FROM messages WHERE mailbox_id = $1 AND modseq > $2`,
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

/** Parameters of an append statement before its messages', and of one appended message. */
const APPEND_FIXED_PARAMS = 11;
const APPEND_PARAMS = 15;

/** SQLSTATE of ximssd_quota_exceeded() (see migrations.ts). */
const QUOTA_EXCEEDED = 'XM001';

/**
 * The append of `n` messages as one statement: the mailbox's modseq bumped by $3 (1; 0 for
 * the further chunks of a large batch), uid_next by n and the counters by theirs (its row
 * locked), the delivery key recorded, bodies and messages inserted with the UIDs that
 * follow. Returns the first UID and the modseq, or no row when the mailbox does not exist
 * (nothing written). Fails with QUOTA_EXCEEDED when the bytes do not fit, and with a unique
 * violation of delivery_keys_pkey when the key was recorded before.
 *
 * $1 mailbox, $2 n, $3 the bump, $4 bytes, $5 unseen, $6 media, $7 unseen media, $8 the
 * account whose usage the bytes must fit in $9 (NULL: no check; the account's row locked
 * by an earlier statement, so that the usage read is the latest), $10 the delivery key
 * (NULL: none), $11 now; then per message: header, data, orig_uid (NULL: its UID), flags,
 * keywords, internal_date, size, date, date_shift, from, to, cc, subject, priority, attrs.
 */
function appendSql(n: number): Sql {
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = APPEND_FIXED_PARAMS + 1 + i * APPEND_PARAMS;
    const $ = (k: number): string => `$${p + k}`;
    rows.push(
      `(${i}, ${$(0)}::bytea, ${$(1)}::bytea, ${$(2)}::bigint, ${$(3)}::int, ${$(4)}::text, ${$(5)}::bigint, ${$(6)}::bigint, ` +
        `${$(7)}::bigint, ${$(8)}::int, ${$(9)}::text, ${$(10)}::text, ${$(11)}::text, ${$(12)}::text, ${$(13)}::int, ${$(14)}::text)`,
    );
  }
  return {
    name: n <= PREPARED_APPEND_SIZES ? `mail.append${n}` : undefined,
    text: `WITH box AS (
             UPDATE mailboxes SET modseq = modseq + $3::int, uid_next = uid_next + $2::int, messages = messages + $2::int,
               size = size + $4::bigint, unseen = unseen + $5::int, media = media + $6::int, unseen_media = unseen_media + $7::int
             WHERE id = $1 AND CASE
               WHEN $8::bigint IS NULL OR $4::bigint <= 0 OR account_id <> $8::bigint THEN true
               WHEN (SELECT coalesce(sum(size), 0) FROM mailboxes WHERE account_id = $8::bigint) + $4::bigint <= $9::bigint THEN true
               ELSE ximssd_quota_exceeded() END
             RETURNING uid_next - $2::int AS first_uid, modseq),
           k AS (INSERT INTO delivery_keys (key, created) SELECT $10::text, $11::bigint FROM box WHERE $10::text IS NOT NULL),
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

/** Append statements by size (their texts are long for large batches: built once). */
const appendStatements = new Map<number, Sql>();

function appendStatement(n: number): Sql {
  let sql = appendStatements.get(n);
  if (!sql) {
    sql = appendSql(n);
    if (appendStatements.size >= 64) appendStatements.clear();
    appendStatements.set(n, sql);
  }
  return sql;
}

function appendParams(
  mailboxId: number,
  bump: number,
  messages: readonly NewMessage[],
  origUids: readonly (number | null)[],
  quota?: QuotaCheck,
  deliveryKey?: string,
): Param[] {
  let bytes = 0;
  let unseen = 0;
  let media = 0;
  let unseenMedia = 0;
  for (const m of messages) {
    bytes += m.raw.length;
    if ((m.flags & SEEN) === 0) unseen++;
    if ((m.flags & MEDIA) !== 0) media++;
    if ((m.flags & (SEEN | MEDIA)) === MEDIA) unseenMedia++;
  }
  const params: Param[] = [
    mailboxId,
    messages.length,
    bump,
    bytes,
    unseen,
    media,
    unseenMedia,
    quota?.accountId ?? null,
    quota?.limit ?? null,
    deliveryKey ?? null,
    Date.now(),
  ];
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
      toText(e.from),
      toText(e.to),
      toText(e.cc),
      toText(e.subject),
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

  async highestModseqs(ids: readonly number[]): Promise<Map<number, number>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db.rows<{ id: number; modseq: number }>(SQL.modseqs, [ids]);
    return new Map(rows.map((r) => [r.id, r.modseq]));
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
    const tag = randomUUID();
    const temps = renames.map((_, i) => `\u0001rename-${tag}-${i}`);
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

  async updateMailboxAcl(id: number, change: (acl: readonly AclEntryRecord[]) => AclEntryRecord[]): Promise<AclEntryRecord[]> {
    return this.db.tx(async (tx) => {
      const row = await tx.row<{ acl: string }>(SQL.lockAcl, [id]);
      if (!row) throw new NotFoundError('mailbox not found');
      const acl = change(JSON.parse(row.acl) as AclEntryRecord[]);
      await tx.run(SQL.setAcl, [JSON.stringify(acl), id]);
      return acl;
    });
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
    const n = messages.length;
    if (!replace && n > 0 && n <= APPEND_CHUNK) {
      // One statement decides everything (the delivery key, the quota): one round trip,
      // as its own transaction, or after the account's lock (quota) with BEGIN and COMMIT
      // written together.
      const key = deliveryKey === undefined ? undefined : withoutNul(deliveryKey);
      const statement = { sql: appendStatement(n), values: appendParams(mailboxId, 1, messages, origUids, quota, key) };
      let rows: unknown[][];
      try {
        rows = quota
          ? (await this.db.batch([{ sql: SQL.lockAccount, values: [quota.accountId] }, statement]))[1]!
          : await this.db.arrays(statement.sql, statement.values);
      } catch (err) {
        if (sqlState(err) === QUOTA_EXCEEDED) throw new QuotaExceededError(`the account would exceed its storage limit (${quota?.limit} bytes)`);
        if (isUniqueViolation(err) && violatedConstraint(err) === 'delivery_keys_pkey') {
          // Delivered before: nothing is stored.
          const box = await this.db.row<MailboxRow>(SQL.getMailboxById, [mailboxId]);
          if (!box) throw new NotFoundError('mailbox not found');
          return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
        }
        throw err;
      }
      const row = rows[0];
      if (!row) throw new NotFoundError('mailbox not found');
      const firstUid = row[0] as number;
      const modseq = row[1] as number;
      return { messages: appended(messages, firstUid, modseq, origUids), modseq, replaced: null, uidNext: firstUid + n };
    }
    return this.db.tx(async (tx): Promise<AppendResult> => {
      // The account's lock (quota), the mailbox's and the delivery key travel together (in
      // the order of the one-statement append, so that the two never deadlock).
      const accountLocking = lockAccount(tx, quota);
      const boxLocking = tx.rows<MailboxRow>(SQL.lockMailboxes, [[mailboxId]]);
      const keying = deliveryKey === undefined ? undefined : tx.run(SQL.recordDeliveryKey, [withoutNul(deliveryKey), Date.now()]);
      const [, [box], keyed] = await Promise.all([accountLocking, boxLocking, keying]);
      if (!box) throw new NotFoundError('mailbox not found');
      if (keyed === 0) {
        // Delivered before: nothing is stored.
        tx.rollback();
        return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
      }
      let replaced: { uid: number; orig_uid: number; size: number } | undefined;
      if (replace) {
        replaced = await tx.row(replace.byOrigUid ? SQL.findToReplaceByOrigUid : SQL.findToReplace, [mailboxId, replace.uid]);
        if (!replaced && replace.mustExist) throw new NotFoundError('the message to replace does not exist');
        if (replaced && replace.keepOrigUid) {
          for (let i = 0; i < origUids.length; i++) origUids[i] ??= replaced.orig_uid;
        }
      }
      if (quota && box.account_id === quota.accountId) {
        const adding = messages.reduce((sum, m) => sum + m.raw.length, 0) - (replaced?.size ?? 0);
        await checkQuota(tx, quota, adding);
      }
      if (n === 0 && !replaced) {
        tx.rollback();
        return { messages: [], modseq: box.modseq, replaced: null, uidNext: box.uid_next };
      }
      const added: MessageMeta[] = [];
      if (n === 0) await tx.rows(SQL.bump, [mailboxId]);
      for (let start = 0; start < n; start += APPEND_CHUNK) {
        // The first chunk bumps the modseq, the others add to the same one.
        const chunk = messages.slice(start, start + APPEND_CHUNK);
        const chunkOrig = origUids.slice(start, start + APPEND_CHUNK);
        const params = appendParams(mailboxId, start === 0 ? 1 : 0, chunk, chunkOrig);
        const row = (await tx.row<{ first_uid: number; modseq: number }>(appendStatement(chunk.length), params))!;
        added.push(...appended(chunk, row.first_uid, row.modseq, chunkOrig));
      }
      if (replaced) await this.removeMessages(tx, mailboxId, [replaced.uid]);
      return { messages: added, modseq: box.modseq + 1, replaced: replaced ? replaced.uid : null, uidNext: box.uid_next + n };
    });
  }

  async copy(fromMailboxId: number, uids: readonly number[], toMailboxId: number, options: { move: boolean; quota?: QuotaCheck }): Promise<CopyResult> {
    return this.db.tx(async (tx): Promise<CopyResult> => {
      const { quota } = options;
      const accountLocking = lockAccount(tx, quota);
      // Without a quota to check first, the copy travels with the locks (pipelined); it
      // inserts nothing when a mailbox is missing, and the transaction is rolled back then.
      const locking = tx.rows<MailboxRow>(SQL.lockMailboxes, [[fromMailboxId, toMailboxId]]);
      let copying: Promise<unknown[][]> | undefined;
      if (!quota && uids.length > 0) copying = this.copyRows(tx, fromMailboxId, uids, toMailboxId);
      const [, boxes, early] = await Promise.all([accountLocking, locking, copying]);
      const source = boxes.find((b) => b.id === fromMailboxId);
      const target = boxes.find((b) => b.id === toMailboxId);
      if (!source || !target) throw new NotFoundError('mailbox not found');
      const unchanged = { copied: [], modseq: target.modseq, sourceModseq: source.modseq, uidNext: target.uid_next };
      let rows = early;
      if (!rows && uids.length > 0 && quota) {
        // What the account holds after, less what it holds now (a move inside it: nothing).
        const { size } = (await tx.row<{ size: number }>(SQL.copiedSize, [fromMailboxId, uids]))!;
        const adding =
          (target.account_id === quota.accountId ? size : 0) - (options.move && source.account_id === quota.accountId ? size : 0);
        await checkQuota(tx, quota, adding);
        rows = await this.copyRows(tx, fromMailboxId, uids, toMailboxId);
      }
      if (!rows || rows.length === 0) {
        tx.rollback();
        return unchanged;
      }
      const copied = rows.map((r) => ({ from: r[0] as number, to: toMeta(r.slice(1)) }));
      const modseq = copied[0]!.to.modseq;
      const uidNext = copied[copied.length - 1]!.to.uid + 1;
      let sourceModseq = fromMailboxId === toMailboxId ? modseq : source.modseq;
      if (options.move) {
        const bumping = tx.row<{ modseq: number }>(SQL.bump, [fromMailboxId]);
        const removing = this.removeMessages(tx, fromMailboxId, copied.map((c) => c.from));
        sourceModseq = (await Promise.all([bumping, removing]))[0]!.modseq;
      }
      return { copied, modseq, sourceModseq, uidNext };
    });
  }

  /** Locks the bodies to share, then copies (the mailboxes locked): the copy statement's rows. */
  private copyRows(tx: Tx, fromMailboxId: number, uids: readonly number[], toMailboxId: number): Promise<unknown[][]> {
    const locking = tx.rows(SQL.lockBodies, [fromMailboxId, uids]);
    const copying = tx.arrays(SQL.copy, [toMailboxId, fromMailboxId, uids]);
    return Promise.all([locking, copying]).then(([, rows]) => rows);
  }

  async updateFlags(mailboxId: number, uids: readonly number[], delta: FlagDelta, options: { unchangedSince?: number } = {}): Promise<FlagResult> {
    const since = options.unchangedSince ?? null;
    return this.db.tx(async (tx): Promise<FlagResult> => {
      // Bumped first (the mailbox's writers wait here), rolled back when nothing changes;
      // what follows travels with it.
      const bumping = tx.row<{ modseq: number }>(SQL.bump, [mailboxId]);
      let changed: MessageMeta[] = [];
      let modified: number[] = [];
      if (uids.length === 0) {
        await bumping;
      } else if (delta.addKeywords.length === 0 && delta.removeKeywords.length === 0) {
        // System flags only: PostgreSQL applies the delta to each row as stored.
        const checking = since === null ? undefined : tx.rows<{ uid: number }>(SQL.flagsModified, [mailboxId, uids, since]);
        const updating = tx.arrays(SQL.setSystemFlags, [mailboxId, uids, delta.set, delta.clear, since]);
        const [, refused, rows] = await Promise.all([bumping, checking, updating]);
        modified = refused?.map((r) => r.uid) ?? [];
        changed = rows.map(toMeta);
      } else {
        // Keywords: applyFlagDelta on the rows as stored (read under the mailbox's lock).
        const reading = tx.rows<{ uid: number; modseq: number; flags: number; keywords: string | null }>(SQL.readFlags, [mailboxId, uids]);
        const [box, rows] = await Promise.all([bumping, reading]);
        if (box) {
          const updates: { uid: number; flags: number; keywords: string | null }[] = [];
          const counters = [0, 0, 0];
          for (const row of rows) {
            if (since !== null && row.modseq > since) {
              modified.push(row.uid);
              continue;
            }
            const keywords = row.keywords === null ? NO_KEYWORDS : (JSON.parse(row.keywords) as string[]);
            const next = applyFlagDelta(row.flags, keywords, delta);
            if (next.flags === row.flags && next.keywords === keywords) continue;
            updates.push({ uid: row.uid, flags: next.flags, keywords: keywordsColumn(next.keywords) });
            const [u0, m0, um0] = counted(row.flags);
            const [u1, m1, um1] = counted(next.flags);
            counters[0]! += u1 - u0;
            counters[1]! += m1 - m0;
            counters[2]! += um1 - um0;
          }
          if (updates.length > 0) {
            const written = await tx.arrays(SQL.writeFlags, [
              mailboxId,
              box.modseq,
              updates.map((u) => u.uid),
              updates.map((u) => u.flags),
              updates.map((u) => u.keywords),
              ...counters,
            ]);
            changed = written.map(toMeta);
          }
        }
      }
      const box = await bumping;
      if (!box) throw new NotFoundError('mailbox not found');
      if (uids.length > 1) {
        // In the order of the UIDs asked for (like the SQLite engine).
        const position = new Map<number, number>();
        uids.forEach((uid, i) => {
          if (!position.has(uid)) position.set(uid, i);
        });
        changed.sort((a, b) => position.get(a.uid)! - position.get(b.uid)!);
        modified.sort((a, b) => position.get(a)! - position.get(b)!);
      }
      if (changed.length === 0) {
        tx.rollback();
        return { modseq: box.modseq - 1, changed, modified };
      }
      return { modseq: box.modseq, changed, modified };
    });
  }

  async setAttrs(mailboxId: number, uid: number, attrs: { [key: string]: XimssValue } | null): Promise<{ modseq: number; changed: MessageMeta | undefined }> {
    return this.db.tx(async (tx) => {
      const bumping = tx.row<{ modseq: number }>(SQL.bump, [mailboxId]);
      const updating = tx.arrays(SQL.setAttrs, [mailboxId, uid, attrsColumn(attrs)]);
      const [box, rows] = await Promise.all([bumping, updating]);
      if (!box) throw new NotFoundError('mailbox not found');
      const row = rows[0];
      if (!row) {
        tx.rollback();
        return { modseq: box.modseq - 1, changed: undefined };
      }
      return { modseq: box.modseq, changed: toMeta(row) };
    });
  }

  async expunge(
    mailboxId: number,
    uids: readonly number[],
    options: { onlyDeleted?: boolean } = {},
  ): Promise<{ modseq: number; removed: { uid: number; origUid: number }[] }> {
    return this.db.tx(async (tx) => {
      const bumping = tx.row<{ modseq: number }>(SQL.bump, [mailboxId]);
      // The mailbox row is taken first: flag writers wait for it, so the Deleted flags read are the ones removed.
      const removing = uids.length === 0
        ? []
        : options.onlyDeleted
          ? bumping.then(async () => {
              const deleted = (await tx.rows<{ uid: number }>(SQL.deletedAmong, [mailboxId, uids])).map((r) => r.uid);
              return deleted.length === 0 ? [] : this.removeMessages(tx, mailboxId, deleted);
            })
          : this.removeMessages(tx, mailboxId, uids);
      const [box, removed] = await Promise.all([bumping, removing]);
      if (!box) throw new NotFoundError('mailbox not found');
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
          changed: changed.map(toMeta).sort((a, b) => a.uid - b.uid),
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
   * Removes messages of a mailbox whose modseq this transaction has bumped (issued at once,
   * so it may travel with the bump): journals the removals under that modseq, and keeps the
   * journal bounded. In the order of `uids`.
   */
  private async removeMessages(tx: Tx, mailboxId: number, uids: readonly number[]): Promise<{ uid: number; origUid: number }[]> {
    const locking = tx.rows(SQL.lockBodies, [mailboxId, uids]);
    const removing = tx.rows<{ uid: number; orig_uid: number; journal_size: number }>(SQL.remove, [mailboxId, uids]);
    const [, rows] = await Promise.all([locking, removing]);
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
function lockAccount(tx: Tx, quota: QuotaCheck | undefined): Promise<unknown> | undefined {
  return quota && tx.rows(SQL.lockAccount, [quota.accountId]);
}

/** QuotaExceededError when the account would hold more than its limit with `adding` more bytes. */
async function checkQuota(tx: Tx, quota: QuotaCheck, adding: number): Promise<void> {
  const { total } = (await tx.row<{ total: number }>(SQL.usage, [quota.accountId]))!;
  if (adding > 0 && total + adding > quota.limit) {
    throw new QuotaExceededError(`the account would exceed its storage limit (${quota.limit} bytes)`);
  }
}
