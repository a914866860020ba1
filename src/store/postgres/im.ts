import {
  RosterFullError,
  RosterGroupsFullError,
  type Affiliation,
  type ArchivedMessage,
  type ArchiveQuery,
  type ArchiveStore,
  type BlockingStore,
  type MucStore,
  type OfflineMessage,
  type OfflineStore,
  type ResourceRecord,
  type ResourceStore,
  type RoomHistoryMessage,
  type RoomRecord,
  type RosterChange,
  type RosterDecision,
  type RosterItem,
  type RosterStore,
} from '../im.js';
import {
  ARCHIVE_COLUMNS,
  ARCHIVE_HIGHEST,
  ARCHIVE_LOWEST,
  archivePage,
  RESOURCE_COLUMNS,
  ROSTER_ITEM_COLUMNS,
  renamedGroups,
  roomService,
  rosterGroupNames,
  rosterWrite,
  toOfflineMessage,
  toResource,
  toRoom,
  toRoomHistory,
  toRosterItem,
  type ArchiveRow,
  type OfflineMessageRow,
  type ResourceRow,
  type RoomHistoryRow,
  type RoomRow,
  type RosterItemRow,
} from '../rows.js';
import { AlreadyExistsError, NotFoundError } from '../store.js';
import { isForeignKeyViolation, isUniqueViolation, type Db, type Sql, type Tx } from './db.js';

/*
 * Real-time messaging in PostgreSQL (see src/store/im.ts). A change decided on what is stored
 * holds a lock for its transaction: a roster's change, its row in roster_versions (FOR UPDATE);
 * the other per-account counts (offline messages, block list, resources) and a MUC service's
 * room count, an advisory lock on the account or service, as cluster.ts does for sessions.
 */

/** Advisory-lock namespaces (the account id, or a hash of the service domain, is the second key). */
const LOCK = { offline: 0x786f6666, blocking: 0x78626c6b, resources: 0x78726573, rooms: 0x786d7563 } as const; // 'xoff' 'xblk' 'xres' 'xmuc'

const LOCK_SQL = {
  account: { name: 'im.lockAccount', text: 'SELECT pg_advisory_xact_lock($1::int, ($2::bigint % 2147483647)::int)' },
  text: { name: 'im.lockText', text: 'SELECT pg_advisory_xact_lock($1::int, hashtext($2))' },
} satisfies Record<string, Sql>;

/** Runs a write; a foreign key violation (the account or room is gone) becomes NotFoundError. */
async function owned<T>(what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (isForeignKeyViolation(err)) throw new NotFoundError(`${what} not found`);
    throw err;
  }
}

const ROSTER_SQL = {
  items: { name: 'roster.items', text: `SELECT ${ROSTER_ITEM_COLUMNS} FROM roster_items WHERE account_id = $1 ORDER BY jid` },
  item: { name: 'roster.item', text: `SELECT ${ROSTER_ITEM_COLUMNS} FROM roster_items WHERE account_id = $1 AND jid = $2` },
  count: { name: 'roster.count', text: 'SELECT count(*) AS n FROM roster_items WHERE account_id = $1' },
  version: { name: 'roster.version', text: 'SELECT version FROM roster_versions WHERE account_id = $1' },
  // The row every change of the roster locks (made on the first change).
  versionRow: {
    name: 'roster.versionRow',
    text: 'INSERT INTO roster_versions (account_id, version) VALUES ($1, 0) ON CONFLICT (account_id) DO NOTHING',
  },
  lock: { name: 'roster.lock', text: 'SELECT version FROM roster_versions WHERE account_id = $1 FOR UPDATE' },
  bump: { name: 'roster.bump', text: 'UPDATE roster_versions SET version = version + 1 WHERE account_id = $1 RETURNING version' },
  write: {
    name: 'roster.write',
    text: `INSERT INTO roster_items (account_id, jid, name, subscription, ask, approved, pending_in, groups)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (account_id, jid) DO UPDATE SET name = excluded.name, subscription = excluded.subscription,
             ask = excluded.ask, approved = excluded.approved, pending_in = excluded.pending_in, groups = excluded.groups`,
  },
  remove: { name: 'roster.remove', text: 'DELETE FROM roster_items WHERE account_id = $1 AND jid = $2' },
  setGroups: { name: 'roster.setGroups', text: 'UPDATE roster_items SET groups = $3 WHERE account_id = $1 AND jid = $2' },
  emptyGroups: { name: 'roster.emptyGroups', text: 'SELECT name FROM roster_groups WHERE account_id = $1 ORDER BY name' },
  emptyGroup: { name: 'roster.emptyGroup', text: 'SELECT 1 AS one FROM roster_groups WHERE account_id = $1 AND name = $2' },
  addEmptyGroup: {
    name: 'roster.addEmptyGroup',
    text: 'INSERT INTO roster_groups (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING',
  },
  removeEmptyGroup: { name: 'roster.removeEmptyGroup', text: 'DELETE FROM roster_groups WHERE account_id = $1 AND name = $2' },
  withSubscription: {
    name: 'roster.withSubscription',
    text: `SELECT jid FROM roster_items WHERE account_id = $1 AND subscription IN ($2, 'both') ORDER BY jid`,
  },
} satisfies Record<string, Sql>;

export class PgRoster implements RosterStore {
  constructor(private readonly db: Db) {}

  async list(accountId: number): Promise<{ items: RosterItem[]; version: number }> {
    return this.db.tx(async (tx) => ({ items: await items(tx, accountId), version: await currentVersion(tx, accountId) }), { snapshot: true });
  }

  async get(accountId: number, jid: string): Promise<RosterItem | undefined> {
    const row = await this.db.row<RosterItemRow>(ROSTER_SQL.item, [accountId, jid]);
    return row && toRosterItem(row);
  }

  async version(accountId: number): Promise<number> {
    return (await this.db.row<{ version: number }>(ROSTER_SQL.version, [accountId]))?.version ?? 0;
  }

  async modify(accountId: number, jid: string, decide: (current: RosterItem | undefined) => RosterDecision, maxItems: number): Promise<RosterChange> {
    return this.db.tx(async (tx): Promise<RosterChange> => {
      const version = await lockRoster(tx, accountId);
      const row = await tx.row<RosterItemRow>(ROSTER_SQL.item, [accountId, jid]);
      const before = row && toRosterItem(row);
      const write = rosterWrite(jid, before, decide(before));
      if (write === undefined) return { before, after: before, version, changed: false };
      if (write === null) {
        await tx.run(ROSTER_SQL.remove, [accountId, jid]);
      } else {
        if (before === undefined && (await tx.row<{ n: number }>(ROSTER_SQL.count, [accountId]))!.n >= maxItems) throw new RosterFullError(maxItems);
        await tx.run(ROSTER_SQL.write, [
          accountId,
          write.jid,
          write.name,
          write.subscription,
          write.ask,
          write.approved,
          write.pendingIn,
          JSON.stringify(write.groups),
        ]);
      }
      return { before, after: write ?? undefined, version: await bump(tx, accountId), changed: true };
    });
  }

  async groups(accountId: number): Promise<string[]> {
    return this.db.tx((tx) => groupNames(tx, accountId), { snapshot: true });
  }

  async addGroup(accountId: number, name: string, maxGroups: number): Promise<boolean> {
    return this.db.tx(async (tx) => {
      await lockRoster(tx, accountId);
      const names = await groupNames(tx, accountId);
      if (names.includes(name)) return false;
      if (names.length >= maxGroups) throw new RosterGroupsFullError(maxGroups);
      await tx.run(ROSTER_SQL.addEmptyGroup, [accountId, name]);
      return true;
    });
  }

  async renameGroup(accountId: number, from: string, to: string | null): Promise<{ items: RosterItem[]; version: number }> {
    return this.db.tx(async (tx) => {
      const version = await lockRoster(tx, accountId);
      const empty = (await tx.row(ROSTER_SQL.emptyGroup, [accountId, from])) !== undefined;
      const changed: RosterItem[] = [];
      let found = empty;
      for (const item of await items(tx, accountId)) {
        if (!item.groups.includes(from)) continue;
        found = true;
        const groups = renamedGroups(item.groups, from, to)!;
        if (groups.length === item.groups.length && groups.every((g, i) => g === item.groups[i])) continue;
        await tx.run(ROSTER_SQL.setGroups, [accountId, item.jid, JSON.stringify(groups)]);
        changed.push({ ...item, groups });
      }
      if (!found) throw new NotFoundError(`there is no group ${from}`);
      if (empty && to !== from) {
        await tx.run(ROSTER_SQL.removeEmptyGroup, [accountId, from]);
        if (to !== null) await tx.run(ROSTER_SQL.addEmptyGroup, [accountId, to]);
      }
      return { items: changed, version: changed.length > 0 ? await bump(tx, accountId) : version };
    });
  }

  async subscribers(accountId: number): Promise<string[]> {
    return (await this.db.rows<{ jid: string }>(ROSTER_SQL.withSubscription, [accountId, 'from'])).map((r) => r.jid);
  }

  async following(accountId: number): Promise<string[]> {
    return (await this.db.rows<{ jid: string }>(ROSTER_SQL.withSubscription, [accountId, 'to'])).map((r) => r.jid);
  }
}

/** Locks the account's roster until the transaction ends; its version. NotFoundError when the account is gone. */
async function lockRoster(tx: Tx, accountId: number): Promise<number> {
  await owned('account', () => tx.run(ROSTER_SQL.versionRow, [accountId]));
  const row = await tx.row<{ version: number }>(ROSTER_SQL.lock, [accountId]);
  // Removed with its account between the two statements.
  if (!row) throw new NotFoundError('account not found');
  return row.version;
}

async function items(tx: Tx, accountId: number): Promise<RosterItem[]> {
  return (await tx.rows<RosterItemRow>(ROSTER_SQL.items, [accountId])).map(toRosterItem);
}

async function currentVersion(tx: Tx, accountId: number): Promise<number> {
  return (await tx.row<{ version: number }>(ROSTER_SQL.version, [accountId]))?.version ?? 0;
}

async function bump(tx: Tx, accountId: number): Promise<number> {
  return (await tx.row<{ version: number }>(ROSTER_SQL.bump, [accountId]))!.version;
}

async function groupNames(tx: Tx, accountId: number): Promise<string[]> {
  const [itemRows, emptyRows] = await Promise.all([items(tx, accountId), tx.rows<{ name: string }>(ROSTER_SQL.emptyGroups, [accountId])]);
  return rosterGroupNames(itemRows.map((item) => item.groups), emptyRows.map((r) => r.name));
}

const OFFLINE_SQL = {
  count: { name: 'offline.count', text: 'SELECT count(*) AS n FROM offline_messages WHERE account_id = $1' },
  push: { name: 'offline.push', text: 'INSERT INTO offline_messages (account_id, stamp, sender, xml) VALUES ($1, $2, $3, $4)' },
  // Rows another take holds are skipped, not waited for: two takes never return the same message.
  take: {
    name: 'offline.take',
    text: `DELETE FROM offline_messages WHERE id IN
             (SELECT id FROM offline_messages WHERE account_id = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING id, stamp, sender, xml`,
  },
  prune: { name: 'offline.prune', text: 'DELETE FROM offline_messages WHERE stamp < $1' },
} satisfies Record<string, Sql>;

export class PgOffline implements OfflineStore {
  constructor(private readonly db: Db) {}

  async push(accountId: number, message: Omit<OfflineMessage, 'id'>, maxCount: number): Promise<boolean> {
    return this.db.tx(async (tx) => {
      await tx.rows(LOCK_SQL.account, [LOCK.offline, accountId]);
      if ((await tx.row<{ n: number }>(OFFLINE_SQL.count, [accountId]))!.n >= maxCount) return false;
      await owned('account', () => tx.run(OFFLINE_SQL.push, [accountId, message.stamp, message.from, message.xml]));
      return true;
    });
  }

  async take(accountId: number, limit: number): Promise<OfflineMessage[]> {
    const rows = await this.db.rows<OfflineMessageRow>(OFFLINE_SQL.take, [accountId, limit]);
    return rows.sort((a, b) => a.id - b.id).map(toOfflineMessage);
  }

  async count(accountId: number): Promise<number> {
    return (await this.db.row<{ n: number }>(OFFLINE_SQL.count, [accountId]))!.n;
  }

  async prune(before: number): Promise<number> {
    return this.db.run(OFFLINE_SQL.prune, [before]);
  }
}

/** The page statements of the archive: by direction, with or without a `with` filter. */
function archivePageSql(backwards: boolean, withFilter: boolean): Sql {
  return {
    name: `archive.page${backwards ? 'Backward' : 'Forward'}${withFilter ? 'With' : ''}`,
    text: `SELECT ${ARCHIVE_COLUMNS} FROM archive_messages
           WHERE account_id = $1 AND stamp BETWEEN $2 AND $3
           AND (stamp, seq) > ($4::bigint, $5::bigint) AND (stamp, seq) < ($6::bigint, $7::bigint)
           ${withFilter ? 'AND with_jid = $9' : ''}
           ORDER BY ${backwards ? 'stamp DESC, seq DESC' : 'stamp, seq'} LIMIT $8`,
  };
}

const ARCHIVE_SQL = {
  append: {
    name: 'archive.append',
    text: 'INSERT INTO archive_messages (account_id, archive_id, stamp, with_jid, outgoing, xml) VALUES ($1, $2, $3, $4, $5, $6)',
  },
  appendMany: {
    name: 'archive.appendMany',
    text: `INSERT INTO archive_messages (account_id, archive_id, stamp, with_jid, outgoing, xml)
           SELECT u.a, u.i, u.s, u.w, u.o, u.x FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::boolean[], $6::text[]) WITH ORDINALITY AS u(a, i, s, w, o, x, n)
           WHERE EXISTS (SELECT 1 FROM accounts WHERE id = u.a) ORDER BY u.n
           ON CONFLICT DO NOTHING`,
  },
  pivot: { name: 'archive.pivot', text: 'SELECT stamp, seq FROM archive_messages WHERE account_id = $1 AND archive_id = $2' },
  forward: archivePageSql(false, false),
  backward: archivePageSql(true, false),
  forwardWith: archivePageSql(false, true),
  backwardWith: archivePageSql(true, true),
  count: { name: 'archive.count', text: 'SELECT count(*) AS n FROM archive_messages WHERE account_id = $1 AND stamp BETWEEN $2 AND $3' },
  countWith: {
    name: 'archive.countWith',
    text: 'SELECT count(*) AS n FROM archive_messages WHERE account_id = $1 AND stamp BETWEEN $2 AND $3 AND with_jid = $4',
  },
  prune: { name: 'archive.prune', text: 'DELETE FROM archive_messages WHERE stamp < $1' },
} satisfies Record<string, Sql>;

export class PgArchive implements ArchiveStore {
  constructor(private readonly db: Db) {}

  async append(accountId: number, message: ArchivedMessage): Promise<void> {
    try {
      await owned('account', () =>
        this.db.run(ARCHIVE_SQL.append, [accountId, message.id, message.stamp, message.with, message.outgoing, message.xml]),
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`the archive has a message ${message.id} already`);
      throw err;
    }
  }

  async appendMany(entries: readonly { accountId: number; message: ArchivedMessage }[]): Promise<void> {
    if (entries.length === 0) return;
    // One statement for the batch; a row whose account is gone meanwhile is left out.
    await this.db.run(ARCHIVE_SQL.appendMany, [
      entries.map((e) => e.accountId),
      entries.map((e) => e.message.id),
      entries.map((e) => e.message.stamp),
      entries.map((e) => e.message.with),
      entries.map((e) => e.message.outgoing),
      entries.map((e) => e.message.xml),
    ]);
  }

  async query(accountId: number, query: ArchiveQuery): Promise<{ messages: ArchivedMessage[]; complete: boolean; count: number }> {
    return this.db.tx(
      async (tx) => {
        const pivot = async (id: string): Promise<{ stamp: number; seq: number }> => {
          const row = await tx.row<{ stamp: number; seq: number }>(ARCHIVE_SQL.pivot, [accountId, id]);
          if (!row) throw new NotFoundError(`the archive has no message ${id}`);
          return row;
        };
        const low = query.after === undefined ? ARCHIVE_LOWEST : await pivot(query.after);
        const high = query.before === undefined || query.before === '' ? ARCHIVE_HIGHEST : await pivot(query.before);
        const backwards = query.before !== undefined;
        const filter = [accountId, query.start ?? Number.MIN_SAFE_INTEGER, query.end ?? Number.MAX_SAFE_INTEGER];
        const bounds = [low.stamp, low.seq, high.stamp, high.seq, query.limit + 1];
        const [rows, counted] = await Promise.all(
          query.with === undefined
            ? [tx.rows<ArchiveRow>(backwards ? ARCHIVE_SQL.backward : ARCHIVE_SQL.forward, [...filter, ...bounds]), tx.row<{ n: number }>(ARCHIVE_SQL.count, filter)]
            : [
                tx.rows<ArchiveRow>(backwards ? ARCHIVE_SQL.backwardWith : ARCHIVE_SQL.forwardWith, [...filter, ...bounds, query.with]),
                tx.row<{ n: number }>(ARCHIVE_SQL.countWith, [...filter, query.with]),
              ],
        );
        return { ...archivePage(rows, query.limit, backwards), count: counted!.n };
      },
      { snapshot: true },
    );
  }

  async prune(before: number): Promise<number> {
    return this.db.run(ARCHIVE_SQL.prune, [before]);
  }
}

const BLOCKING_SQL = {
  list: { name: 'blocking.list', text: 'SELECT jid FROM blocked_jids WHERE account_id = $1 ORDER BY jid' },
  has: { name: 'blocking.has', text: 'SELECT 1 AS one FROM blocked_jids WHERE account_id = $1 AND jid = $2' },
  // The JIDs of $2 not blocked yet.
  missing: {
    name: 'blocking.missing',
    text: `SELECT DISTINCT j.jid FROM unnest($2::text[]) AS j(jid)
           WHERE NOT EXISTS (SELECT 1 FROM blocked_jids b WHERE b.account_id = $1 AND b.jid = j.jid)`,
  },
  count: { name: 'blocking.count', text: 'SELECT count(*) AS n FROM blocked_jids WHERE account_id = $1' },
  add: {
    name: 'blocking.add',
    text: 'INSERT INTO blocked_jids (account_id, jid) SELECT $1, j.jid FROM unnest($2::text[]) AS j(jid) ON CONFLICT DO NOTHING',
  },
  remove: { name: 'blocking.remove', text: 'DELETE FROM blocked_jids WHERE account_id = $1 AND jid = ANY($2::text[]) RETURNING jid' },
  removeAll: { name: 'blocking.removeAll', text: 'DELETE FROM blocked_jids WHERE account_id = $1 RETURNING jid' },
} satisfies Record<string, Sql>;

export class PgBlocking implements BlockingStore {
  constructor(private readonly db: Db) {}

  async list(accountId: number): Promise<string[]> {
    return (await this.db.rows<{ jid: string }>(BLOCKING_SQL.list, [accountId])).map((r) => r.jid);
  }

  async add(accountId: number, jids: readonly string[], maxItems: number): Promise<boolean> {
    return this.db.tx(async (tx) => {
      await tx.rows(LOCK_SQL.account, [LOCK.blocking, accountId]);
      const added = (await tx.rows<{ jid: string }>(BLOCKING_SQL.missing, [accountId, [...jids]])).map((r) => r.jid);
      if ((await tx.row<{ n: number }>(BLOCKING_SQL.count, [accountId]))!.n + added.length > maxItems) return false;
      if (added.length > 0) await owned('account', () => tx.run(BLOCKING_SQL.add, [accountId, added]));
      return true;
    });
  }

  async remove(accountId: number, jids: readonly string[] | undefined): Promise<string[]> {
    const rows =
      jids === undefined
        ? await this.db.rows<{ jid: string }>(BLOCKING_SQL.removeAll, [accountId])
        : await this.db.rows<{ jid: string }>(BLOCKING_SQL.remove, [accountId, [...jids]]);
    return rows.map((r) => r.jid).sort();
  }

  async isBlocked(accountId: number, jid: string): Promise<boolean> {
    return (await this.db.row(BLOCKING_SQL.has, [accountId, jid])) !== undefined;
  }
}

const R_COLUMNS = RESOURCE_COLUMNS.replace(/(\w+)/g, 'r.$1');

const RESOURCE_SQL = {
  live: {
    name: 'resources.live',
    text: `SELECT 1 AS one FROM im_resources r JOIN nodes n ON n.id = r.node
           WHERE r.account_id = $1 AND r.resource = $2 AND n.alive_until >= $3`,
  },
  countLive: {
    name: 'resources.countLive',
    text: 'SELECT count(*) AS n FROM im_resources r JOIN nodes n ON n.id = r.node WHERE r.account_id = $1 AND n.alive_until >= $2',
  },
  put: {
    name: 'resources.put',
    text: `INSERT INTO im_resources (${RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (account_id, resource) DO UPDATE SET node = excluded.node, kind = excluded.kind, available = excluded.available,
             priority = excluded.priority, presence = excluded.presence, since = excluded.since`,
  },
  update: {
    name: 'resources.update',
    text: `UPDATE im_resources SET kind = $4, available = $5, priority = $6, presence = $7, since = $8
           WHERE account_id = $1 AND resource = $2 AND node = $3`,
  },
  remove: { name: 'resources.remove', text: 'DELETE FROM im_resources WHERE account_id = $1 AND resource = $2 AND node = $3' },
  ofAccount: {
    name: 'resources.ofAccount',
    text: `SELECT ${R_COLUMNS} FROM im_resources r JOIN nodes n ON n.id = r.node
           WHERE r.account_id = $1 AND n.alive_until >= $2 ORDER BY r.resource`,
  },
  all: {
    name: 'resources.all',
    text: `SELECT ${R_COLUMNS} FROM im_resources r JOIN nodes n ON n.id = r.node
           WHERE n.alive_until >= $1 ORDER BY r.account_id, r.resource`,
  },
  removeNode: { name: 'resources.removeNode', text: 'DELETE FROM im_resources WHERE node = $1' },
} satisfies Record<string, Sql>;

/** The connected clients of every node. Commits are relaxed, as the cluster's sessions' are (see cluster.ts). */
export class PgResources implements ResourceStore {
  constructor(private readonly db: Db) {}

  async add(record: ResourceRecord, limit: number, now: number): Promise<boolean> {
    return this.db.tx(
      async (tx) => {
        await tx.rows(LOCK_SQL.account, [LOCK.resources, record.accountId]);
        if ((await tx.row(RESOURCE_SQL.live, [record.accountId, record.resource, now])) !== undefined) return false;
        // A row of that name left by a dead node is not counted here, and is replaced below.
        if ((await tx.row<{ n: number }>(RESOURCE_SQL.countLive, [record.accountId, now]))!.n >= limit) return false;
        await owned('account', () => tx.run(RESOURCE_SQL.put, resourceParams(record)));
        return true;
      },
      { relaxed: true },
    );
  }

  async update(record: ResourceRecord): Promise<void> {
    await this.db.tx((tx) => tx.run(RESOURCE_SQL.update, resourceParams(record)), { relaxed: true });
  }

  async remove(accountId: number, resource: string, node: string): Promise<void> {
    await this.db.tx((tx) => tx.run(RESOURCE_SQL.remove, [accountId, resource, node]), { relaxed: true });
  }

  async ofAccount(accountId: number, now: number): Promise<ResourceRecord[]> {
    return (await this.db.rows<ResourceRow>(RESOURCE_SQL.ofAccount, [accountId, now])).map(toResource);
  }

  async all(now: number): Promise<ResourceRecord[]> {
    return (await this.db.rows<ResourceRow>(RESOURCE_SQL.all, [now])).map(toResource);
  }

  async removeNode(node: string): Promise<void> {
    await this.db.tx((tx) => tx.run(RESOURCE_SQL.removeNode, [node]), { relaxed: true });
  }
}

function resourceParams(record: ResourceRecord): (string | number | boolean)[] {
  return [record.accountId, record.resource, record.node, record.kind, record.available, record.priority, record.presence, record.since];
}

/** Removes a node's resources inside another transaction (ClusterStore.removeNode's). */
export async function removeNodeResources(tx: Tx, node: string): Promise<void> {
  await tx.run(RESOURCE_SQL.removeNode, [node]);
}

const MUC_SQL = {
  rooms: { name: 'muc.rooms', text: 'SELECT jid, config, subject, created FROM muc_rooms WHERE service = $1 ORDER BY jid' },
  get: { name: 'muc.get', text: 'SELECT jid, config, subject, created FROM muc_rooms WHERE jid = $1' },
  count: { name: 'muc.count', text: 'SELECT count(*) AS n FROM muc_rooms WHERE service = $1' },
  create: {
    name: 'muc.create',
    text: 'INSERT INTO muc_rooms (jid, service, config, subject, created) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
  },
  exists: { name: 'muc.exists', text: 'SELECT 1 AS one FROM muc_rooms WHERE jid = $1' },
  // Serializes the history of one room (and holds it while it is changed).
  lockRoom: { name: 'muc.lockRoom', text: 'SELECT 1 AS one FROM muc_rooms WHERE jid = $1 FOR NO KEY UPDATE' },
  update: { name: 'muc.update', text: 'UPDATE muc_rooms SET config = $2, subject = $3 WHERE jid = $1' },
  remove: { name: 'muc.remove', text: 'DELETE FROM muc_rooms WHERE jid = $1' },
  affiliations: { name: 'muc.affiliations', text: 'SELECT user_jid, affiliation FROM muc_affiliations WHERE room = $1 ORDER BY user_jid' },
  setAffiliation: {
    name: 'muc.setAffiliation',
    text: `INSERT INTO muc_affiliations (room, user_jid, affiliation) VALUES ($1, $2, $3)
           ON CONFLICT (room, user_jid) DO UPDATE SET affiliation = excluded.affiliation`,
  },
  removeAffiliation: { name: 'muc.removeAffiliation', text: 'DELETE FROM muc_affiliations WHERE room = $1 AND user_jid = $2' },
  appendHistory: { name: 'muc.appendHistory', text: 'INSERT INTO muc_history (room, stamp, nick, xml) VALUES ($1, $2, $3, $4)' },
  trimHistory: {
    name: 'muc.trimHistory',
    text: `DELETE FROM muc_history WHERE room = $1
           AND seq < (SELECT seq FROM muc_history WHERE room = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)`,
  },
  clearHistory: { name: 'muc.clearHistory', text: 'DELETE FROM muc_history WHERE room = $1' },
  history: {
    name: 'muc.history',
    text: 'SELECT stamp, nick, xml FROM muc_history WHERE room = $1 AND stamp >= $2 ORDER BY seq DESC LIMIT $3',
  },
} satisfies Record<string, Sql>;

export class PgMuc implements MucStore {
  constructor(private readonly db: Db) {}

  async rooms(serviceDomain: string): Promise<RoomRecord[]> {
    return (await this.db.rows<RoomRow>(MUC_SQL.rooms, [serviceDomain])).map(toRoom);
  }

  async get(jid: string): Promise<RoomRecord | undefined> {
    const row = await this.db.row<RoomRow>(MUC_SQL.get, [jid]);
    return row && toRoom(row);
  }

  async create(room: RoomRecord, maxRooms: number): Promise<boolean> {
    const service = roomService(room.jid);
    return this.db.tx(async (tx) => {
      await tx.rows(LOCK_SQL.text, [LOCK.rooms, service]);
      if ((await tx.row(MUC_SQL.exists, [room.jid])) !== undefined) return false;
      if ((await tx.row<{ n: number }>(MUC_SQL.count, [service]))!.n >= maxRooms) return false;
      return (await tx.run(MUC_SQL.create, [room.jid, service, JSON.stringify(room.config), room.subject, room.created])) > 0;
    });
  }

  async update(jid: string, config: RoomRecord['config'], subject: string): Promise<void> {
    if ((await this.db.run(MUC_SQL.update, [jid, JSON.stringify(config), subject])) === 0) throw new NotFoundError(`there is no room ${jid}`);
  }

  async remove(jid: string): Promise<boolean> {
    return (await this.db.run(MUC_SQL.remove, [jid])) > 0;
  }

  async affiliations(jid: string): Promise<{ jid: string; affiliation: Affiliation }[]> {
    return (await this.db.rows<{ user_jid: string; affiliation: string }>(MUC_SQL.affiliations, [jid])).map((r) => ({
      jid: r.user_jid,
      affiliation: r.affiliation as Affiliation,
    }));
  }

  async setAffiliation(room: string, user: string, affiliation: Affiliation | null): Promise<void> {
    await this.db.tx(async (tx) => {
      if ((await tx.row(MUC_SQL.lockRoom, [room])) === undefined) throw new NotFoundError(`there is no room ${room}`);
      if (affiliation === null) await tx.run(MUC_SQL.removeAffiliation, [room, user]);
      else await tx.run(MUC_SQL.setAffiliation, [room, user, affiliation]);
    });
  }

  async appendHistory(room: string, message: RoomHistoryMessage, keep: number): Promise<void> {
    await this.db.tx(async (tx) => {
      if ((await tx.row(MUC_SQL.lockRoom, [room])) === undefined) throw new NotFoundError(`there is no room ${room}`);
      if (keep <= 0) {
        await tx.run(MUC_SQL.clearHistory, [room]);
        return;
      }
      await tx.run(MUC_SQL.appendHistory, [room, message.stamp, message.nick, message.xml]);
      await tx.run(MUC_SQL.trimHistory, [room, keep - 1]);
    });
  }

  async history(room: string, limit: number, since?: number): Promise<RoomHistoryMessage[]> {
    const rows = await this.db.rows<RoomHistoryRow>(MUC_SQL.history, [room, since ?? Number.MIN_SAFE_INTEGER, limit]);
    return rows.reverse().map(toRoomHistory);
  }
}
