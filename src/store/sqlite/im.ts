import type { Database as SqliteDatabase } from 'better-sqlite3';
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
import { isForeignKeyViolation, isUniqueViolation, prepareAll, relaxedCommit } from './util.js';

/*
 * Real-time messaging in SQLite (see src/store/im.ts). A change decided on what is stored is
 * an IMMEDIATE transaction: it takes the database's write lock before it reads, so two
 * processes never interleave inside one (the contract's "excludes every other change").
 * Resources describe running processes, not data anyone was promised: their commits are
 * relaxed, as the cluster's sessions are (see relaxedCommit).
 */

/** Runs a write; a foreign key violation (the account or room is gone) becomes NotFoundError. */
function owned<T>(what: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    if (isForeignKeyViolation(err)) throw new NotFoundError(`${what} not found`);
    throw err;
  }
}

export class SqliteRoster implements RosterStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      account: 'SELECT 1 FROM accounts WHERE id = ?',
      items: `SELECT ${ROSTER_ITEM_COLUMNS} FROM roster_items WHERE account_id = ? ORDER BY jid`,
      item: `SELECT ${ROSTER_ITEM_COLUMNS} FROM roster_items WHERE account_id = ? AND jid = ?`,
      count: 'SELECT count(*) AS n FROM roster_items WHERE account_id = ?',
      version: 'SELECT version FROM roster_versions WHERE account_id = ?',
      bump: `INSERT INTO roster_versions (account_id, version) VALUES (?, 1)
             ON CONFLICT (account_id) DO UPDATE SET version = version + 1 RETURNING version`,
      write: `INSERT INTO roster_items (account_id, jid, name, subscription, ask, approved, pending_in, groups)
              VALUES (@account, @jid, @name, @subscription, @ask, @approved, @pendingIn, @groups)
              ON CONFLICT (account_id, jid) DO UPDATE SET name = excluded.name, subscription = excluded.subscription,
                ask = excluded.ask, approved = excluded.approved, pending_in = excluded.pending_in, groups = excluded.groups`,
      remove: 'DELETE FROM roster_items WHERE account_id = ? AND jid = ?',
      setGroups: 'UPDATE roster_items SET groups = ? WHERE account_id = ? AND jid = ?',
      emptyGroups: 'SELECT name FROM roster_groups WHERE account_id = ? ORDER BY name',
      emptyGroup: 'SELECT 1 FROM roster_groups WHERE account_id = ? AND name = ?',
      addEmptyGroup: 'INSERT INTO roster_groups (account_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING',
      removeEmptyGroup: 'DELETE FROM roster_groups WHERE account_id = ? AND name = ?',
      withSubscription: `SELECT jid FROM roster_items WHERE account_id = ? AND subscription IN (?, 'both') ORDER BY jid`,
    });
  }

  async list(accountId: number): Promise<{ items: RosterItem[]; version: number }> {
    // One snapshot: the items and the version that goes with them.
    return this.db.transaction(() => ({ items: this.items(accountId), version: this.currentVersion(accountId) }))();
  }

  async get(accountId: number, jid: string): Promise<RosterItem | undefined> {
    const row = this.sql.item.get(accountId, jid) as RosterItemRow | undefined;
    return row && toRosterItem(row);
  }

  async version(accountId: number): Promise<number> {
    return this.currentVersion(accountId);
  }

  async modify(accountId: number, jid: string, decide: (current: RosterItem | undefined) => RosterDecision, maxItems: number): Promise<RosterChange> {
    return this.db.transaction((): RosterChange => {
      this.requireAccount(accountId);
      const row = this.sql.item.get(accountId, jid) as RosterItemRow | undefined;
      const before = row && toRosterItem(row);
      const write = rosterWrite(jid, before, decide(before));
      if (write === undefined) return { before, after: before, version: this.currentVersion(accountId), changed: false };
      if (write === null) {
        this.sql.remove.run(accountId, jid);
      } else {
        if (before === undefined && (this.sql.count.get(accountId) as { n: number }).n >= maxItems) throw new RosterFullError(maxItems);
        this.writeItem(accountId, write);
      }
      return { before, after: write ?? undefined, version: this.bump(accountId), changed: true };
    }).immediate();
  }

  async groups(accountId: number): Promise<string[]> {
    return this.db.transaction(() => this.groupNames(accountId))();
  }

  async addGroup(accountId: number, name: string, maxGroups: number): Promise<boolean> {
    return this.db.transaction((): boolean => {
      this.requireAccount(accountId);
      const names = this.groupNames(accountId);
      if (names.includes(name)) return false;
      if (names.length >= maxGroups) throw new RosterGroupsFullError(maxGroups);
      this.sql.addEmptyGroup.run(accountId, name);
      return true;
    }).immediate();
  }

  async renameGroup(accountId: number, from: string, to: string | null): Promise<{ items: RosterItem[]; version: number }> {
    return this.db.transaction(() => {
      const empty = this.sql.emptyGroup.get(accountId, from) !== undefined;
      const changed: RosterItem[] = [];
      let found = empty;
      for (const item of this.items(accountId)) {
        if (!item.groups.includes(from)) continue;
        found = true;
        const groups = renamedGroups(item.groups, from, to)!;
        if (groups.length === item.groups.length && groups.every((g, i) => g === item.groups[i])) continue;
        this.sql.setGroups.run(JSON.stringify(groups), accountId, item.jid);
        changed.push({ ...item, groups });
      }
      if (!found) throw new NotFoundError(`there is no group ${from}`);
      if (empty && to !== from) {
        this.sql.removeEmptyGroup.run(accountId, from);
        if (to !== null) this.sql.addEmptyGroup.run(accountId, to);
      }
      return { items: changed, version: changed.length > 0 ? this.bump(accountId) : this.currentVersion(accountId) };
    }).immediate();
  }

  async subscribers(accountId: number): Promise<string[]> {
    return (this.sql.withSubscription.all(accountId, 'from') as { jid: string }[]).map((r) => r.jid);
  }

  async following(accountId: number): Promise<string[]> {
    return (this.sql.withSubscription.all(accountId, 'to') as { jid: string }[]).map((r) => r.jid);
  }

  private requireAccount(accountId: number): void {
    if (this.sql.account.get(accountId) === undefined) throw new NotFoundError('account not found');
  }

  private items(accountId: number): RosterItem[] {
    return (this.sql.items.all(accountId) as RosterItemRow[]).map(toRosterItem);
  }

  private currentVersion(accountId: number): number {
    return (this.sql.version.get(accountId) as { version: number } | undefined)?.version ?? 0;
  }

  private bump(accountId: number): number {
    return (this.sql.bump.get(accountId) as { version: number }).version;
  }

  private groupNames(accountId: number): string[] {
    const empty = (this.sql.emptyGroups.all(accountId) as { name: string }[]).map((r) => r.name);
    return rosterGroupNames(this.items(accountId).map((item) => item.groups), empty);
  }

  private writeItem(accountId: number, item: RosterItem): void {
    this.sql.write.run({
      account: accountId,
      jid: item.jid,
      name: item.name,
      subscription: item.subscription,
      ask: item.ask ? 1 : 0,
      approved: item.approved ? 1 : 0,
      pendingIn: item.pendingIn,
      groups: JSON.stringify(item.groups),
    });
  }
}

export class SqliteOffline implements OfflineStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      count: 'SELECT count(*) AS n FROM offline_messages WHERE account_id = ?',
      push: 'INSERT INTO offline_messages (account_id, stamp, sender, xml) VALUES (?, ?, ?, ?)',
      take: `DELETE FROM offline_messages WHERE id IN (SELECT id FROM offline_messages WHERE account_id = ? ORDER BY id LIMIT ?)
             RETURNING id, stamp, sender, xml`,
      prune: 'DELETE FROM offline_messages WHERE stamp < ?',
    });
  }

  async push(accountId: number, message: Omit<OfflineMessage, 'id'>, maxCount: number): Promise<boolean> {
    return this.db.transaction((): boolean => {
      if ((this.sql.count.get(accountId) as { n: number }).n >= maxCount) return false;
      owned('account', () => this.sql.push.run(accountId, message.stamp, message.from, message.xml));
      return true;
    }).immediate();
  }

  async take(accountId: number, limit: number): Promise<OfflineMessage[]> {
    const rows = this.db.transaction(() => this.sql.take.all(accountId, limit) as OfflineMessageRow[]).immediate();
    // RETURNING gives rows in no promised order.
    return rows.sort((a, b) => a.id - b.id).map(toOfflineMessage);
  }

  async count(accountId: number): Promise<number> {
    return (this.sql.count.get(accountId) as { n: number }).n;
  }

  async prune(before: number): Promise<number> {
    return this.sql.prune.run(before).changes;
  }
}

/** The page statements of the archive: by direction, with or without a `with` filter. */
function archivePageSql(backwards: boolean, withFilter: boolean): string {
  return `SELECT ${ARCHIVE_COLUMNS} FROM archive_messages
          WHERE account_id = @account ${withFilter ? 'AND with_jid = @withJid' : ''} AND stamp BETWEEN @start AND @end
          AND (stamp, seq) > (@lowStamp, @lowSeq) AND (stamp, seq) < (@highStamp, @highSeq)
          ORDER BY ${backwards ? 'stamp DESC, seq DESC' : 'stamp, seq'} LIMIT @limit`;
}

export class SqliteArchive implements ArchiveStore {
  private readonly sql;
  /** A batch in one transaction; a row whose account is gone meanwhile is left out. */
  private readonly appendAll: (entries: readonly { accountId: number; message: ArchivedMessage }[]) => void;

  constructor(private readonly db: SqliteDatabase) {
    this.appendAll = db.transaction((entries: readonly { accountId: number; message: ArchivedMessage }[]) => {
      for (const { accountId, message: m } of entries) this.sql.appendIfAccount.run(accountId, m.id, m.stamp, m.with, m.outgoing ? 1 : 0, m.xml, accountId);
    });
    this.sql = prepareAll(db, {
      append: `INSERT INTO archive_messages (account_id, archive_id, stamp, with_jid, outgoing, xml) VALUES (?, ?, ?, ?, ?, ?)`,
      appendIfAccount: `INSERT INTO archive_messages (account_id, archive_id, stamp, with_jid, outgoing, xml)
                        SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?) ON CONFLICT DO NOTHING`,
      pivot: 'SELECT stamp, seq FROM archive_messages WHERE account_id = ? AND archive_id = ?',
      forward: archivePageSql(false, false),
      backward: archivePageSql(true, false),
      forwardWith: archivePageSql(false, true),
      backwardWith: archivePageSql(true, true),
      count: 'SELECT count(*) AS n FROM archive_messages WHERE account_id = @account AND stamp BETWEEN @start AND @end',
      countWith: 'SELECT count(*) AS n FROM archive_messages WHERE account_id = @account AND with_jid = @withJid AND stamp BETWEEN @start AND @end',
      prune: 'DELETE FROM archive_messages WHERE stamp < ?',
    });
  }

  async append(accountId: number, message: ArchivedMessage): Promise<void> {
    try {
      owned('account', () => this.sql.append.run(accountId, message.id, message.stamp, message.with, message.outgoing ? 1 : 0, message.xml));
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`the archive has a message ${message.id} already`);
      throw err;
    }
  }

  async appendMany(entries: readonly { accountId: number; message: ArchivedMessage }[]): Promise<void> {
    if (entries.length === 0) return;
    this.appendAll(entries);
  }


  async query(accountId: number, query: ArchiveQuery): Promise<{ messages: ArchivedMessage[]; complete: boolean; count: number }> {
    return this.db.transaction(() => {
      const low = query.after === undefined ? ARCHIVE_LOWEST : this.pivot(accountId, query.after);
      const high = query.before === undefined || query.before === '' ? ARCHIVE_HIGHEST : this.pivot(accountId, query.before);
      const backwards = query.before !== undefined;
      const withFilter = query.with !== undefined;
      const filter = {
        account: accountId,
        start: query.start ?? Number.MIN_SAFE_INTEGER,
        end: query.end ?? Number.MAX_SAFE_INTEGER,
        ...(withFilter ? { withJid: query.with } : {}),
      };
      const page = backwards ? (withFilter ? this.sql.backwardWith : this.sql.backward) : withFilter ? this.sql.forwardWith : this.sql.forward;
      const rows = page.all({ ...filter, lowStamp: low.stamp, lowSeq: low.seq, highStamp: high.stamp, highSeq: high.seq, limit: query.limit + 1 }) as ArchiveRow[];
      const { n } = (withFilter ? this.sql.countWith : this.sql.count).get(filter) as { n: number };
      return { ...archivePage(rows, query.limit, backwards), count: n };
    })();
  }

  async prune(before: number): Promise<number> {
    return this.sql.prune.run(before).changes;
  }

  private pivot(accountId: number, id: string): { stamp: number; seq: number } {
    const row = this.sql.pivot.get(accountId, id) as { stamp: number; seq: number } | undefined;
    if (!row) throw new NotFoundError(`the archive has no message ${id}`);
    return row;
  }
}

export class SqliteBlocking implements BlockingStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      list: 'SELECT jid FROM blocked_jids WHERE account_id = ? ORDER BY jid',
      has: 'SELECT 1 FROM blocked_jids WHERE account_id = ? AND jid = ?',
      count: 'SELECT count(*) AS n FROM blocked_jids WHERE account_id = ?',
      add: 'INSERT INTO blocked_jids (account_id, jid) VALUES (?, ?) ON CONFLICT DO NOTHING',
      remove: 'DELETE FROM blocked_jids WHERE account_id = ? AND jid = ? RETURNING jid',
      removeAll: 'DELETE FROM blocked_jids WHERE account_id = ? RETURNING jid',
    });
  }

  async list(accountId: number): Promise<string[]> {
    return (this.sql.list.all(accountId) as { jid: string }[]).map((r) => r.jid);
  }

  async add(accountId: number, jids: readonly string[], maxItems: number): Promise<boolean> {
    return this.db.transaction((): boolean => {
      const added = [...new Set(jids)].filter((jid) => this.sql.has.get(accountId, jid) === undefined);
      if ((this.sql.count.get(accountId) as { n: number }).n + added.length > maxItems) return false;
      owned('account', () => {
        for (const jid of added) this.sql.add.run(accountId, jid);
      });
      return true;
    }).immediate();
  }

  async remove(accountId: number, jids: readonly string[] | undefined): Promise<string[]> {
    const removed = this.db.transaction((): string[] => {
      if (jids === undefined) return (this.sql.removeAll.all(accountId) as { jid: string }[]).map((r) => r.jid);
      return [...new Set(jids)].filter((jid) => this.sql.remove.get(accountId, jid) !== undefined);
    }).immediate();
    return removed.sort();
  }

  async isBlocked(accountId: number, jid: string): Promise<boolean> {
    return this.sql.has.get(accountId, jid) !== undefined;
  }
}

export class SqliteResources implements ResourceStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      live: `SELECT 1 FROM im_resources r JOIN nodes n ON n.id = r.node
             WHERE r.account_id = ? AND r.resource = ? AND n.alive_until >= ?`,
      countLive: `SELECT count(*) AS n FROM im_resources r JOIN nodes n ON n.id = r.node
                  WHERE r.account_id = ? AND n.alive_until >= ?`,
      put: `INSERT INTO im_resources (${RESOURCE_COLUMNS}) VALUES (@accountId, @resource, @node, @kind, @available, @priority, @presence, @since)
            ON CONFLICT (account_id, resource) DO UPDATE SET node = excluded.node, kind = excluded.kind, available = excluded.available,
              priority = excluded.priority, presence = excluded.presence, since = excluded.since`,
      update: `UPDATE im_resources SET available = @available, priority = @priority, presence = @presence, since = @since
               WHERE account_id = @accountId AND resource = @resource AND node = @node`,
      remove: 'DELETE FROM im_resources WHERE account_id = ? AND resource = ? AND node = ?',
      ofAccount: `SELECT ${RESOURCE_COLUMNS.replace(/(\w+)/g, 'r.$1')} FROM im_resources r JOIN nodes n ON n.id = r.node
                  WHERE r.account_id = ? AND n.alive_until >= ? ORDER BY r.resource`,
      all: `SELECT ${RESOURCE_COLUMNS.replace(/(\w+)/g, 'r.$1')} FROM im_resources r JOIN nodes n ON n.id = r.node
            WHERE n.alive_until >= ? ORDER BY r.account_id, r.resource`,
      removeNode: 'DELETE FROM im_resources WHERE node = ?',
    });
  }

  async add(record: ResourceRecord, limit: number, now: number): Promise<boolean> {
    return relaxedCommit(this.db, () =>
      this.db.transaction((): boolean => {
        if (this.sql.live.get(record.accountId, record.resource, now) !== undefined) return false;
        // A row of that name left by a dead node is not counted here, and is replaced below.
        if ((this.sql.countLive.get(record.accountId, now) as { n: number }).n >= limit) return false;
        owned('account', () => this.sql.put.run(resourceParams(record)));
        return true;
      }).immediate(),
    );
  }

  async update(record: ResourceRecord): Promise<void> {
    relaxedCommit(this.db, () => this.sql.update.run(resourceParams(record)));
  }

  async remove(accountId: number, resource: string, node: string): Promise<void> {
    relaxedCommit(this.db, () => this.sql.remove.run(accountId, resource, node));
  }

  async ofAccount(accountId: number, now: number): Promise<ResourceRecord[]> {
    return (this.sql.ofAccount.all(accountId, now) as ResourceRow[]).map(toResource);
  }

  async all(now: number): Promise<ResourceRecord[]> {
    return (this.sql.all.all(now) as ResourceRow[]).map(toResource);
  }

  async removeNode(node: string): Promise<void> {
    relaxedCommit(this.db, () => this.sql.removeNode.run(node));
  }
}

function resourceParams(record: ResourceRecord): Record<string, string | number> {
  return {
    accountId: record.accountId,
    resource: record.resource,
    node: record.node,
    kind: record.kind,
    available: record.available ? 1 : 0,
    priority: record.priority,
    presence: record.presence,
    since: record.since,
  };
}

export class SqliteMuc implements MucStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      rooms: 'SELECT jid, config, subject, created FROM muc_rooms WHERE service = ? ORDER BY jid',
      get: 'SELECT jid, config, subject, created FROM muc_rooms WHERE jid = ?',
      count: 'SELECT count(*) AS n FROM muc_rooms WHERE service = ?',
      create: 'INSERT INTO muc_rooms (jid, service, config, subject, created) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      update: 'UPDATE muc_rooms SET config = ?, subject = ? WHERE jid = ?',
      remove: 'DELETE FROM muc_rooms WHERE jid = ?',
      affiliations: 'SELECT user_jid, affiliation FROM muc_affiliations WHERE room = ? ORDER BY user_jid',
      setAffiliation: `INSERT INTO muc_affiliations (room, user_jid, affiliation) VALUES (?, ?, ?)
                       ON CONFLICT (room, user_jid) DO UPDATE SET affiliation = excluded.affiliation`,
      removeAffiliation: 'DELETE FROM muc_affiliations WHERE room = ? AND user_jid = ?',
      exists: 'SELECT 1 FROM muc_rooms WHERE jid = ?',
      appendHistory: 'INSERT INTO muc_history (room, stamp, nick, xml) VALUES (?, ?, ?, ?)',
      trimHistory: `DELETE FROM muc_history WHERE room = @room
                    AND seq < (SELECT seq FROM muc_history WHERE room = @room ORDER BY seq DESC LIMIT 1 OFFSET @skip)`,
      clearHistory: 'DELETE FROM muc_history WHERE room = ?',
      history: `SELECT stamp, nick, xml FROM muc_history WHERE room = ? AND stamp >= ? ORDER BY seq DESC LIMIT ?`,
    });
  }

  async rooms(serviceDomain: string): Promise<RoomRecord[]> {
    return (this.sql.rooms.all(serviceDomain) as RoomRow[]).map(toRoom);
  }

  async get(jid: string): Promise<RoomRecord | undefined> {
    const row = this.sql.get.get(jid) as RoomRow | undefined;
    return row && toRoom(row);
  }

  async create(room: RoomRecord, maxRooms: number): Promise<boolean> {
    const service = roomService(room.jid);
    return this.db.transaction((): boolean => {
      if (this.sql.exists.get(room.jid) !== undefined) return false;
      if ((this.sql.count.get(service) as { n: number }).n >= maxRooms) return false;
      return this.sql.create.run(room.jid, service, JSON.stringify(room.config), room.subject, room.created).changes > 0;
    }).immediate();
  }

  async update(jid: string, config: RoomRecord['config'], subject: string): Promise<void> {
    if (this.sql.update.run(JSON.stringify(config), subject, jid).changes === 0) throw new NotFoundError(`there is no room ${jid}`);
  }

  async remove(jid: string): Promise<boolean> {
    return this.sql.remove.run(jid).changes > 0;
  }

  async affiliations(jid: string): Promise<{ jid: string; affiliation: Affiliation }[]> {
    return (this.sql.affiliations.all(jid) as { user_jid: string; affiliation: string }[]).map((r) => ({
      jid: r.user_jid,
      affiliation: r.affiliation as Affiliation,
    }));
  }

  async setAffiliation(room: string, user: string, affiliation: Affiliation | null): Promise<void> {
    this.db.transaction(() => {
      if (this.sql.exists.get(room) === undefined) throw new NotFoundError(`there is no room ${room}`);
      if (affiliation === null) this.sql.removeAffiliation.run(room, user);
      else this.sql.setAffiliation.run(room, user, affiliation);
    }).immediate();
  }

  async appendHistory(room: string, message: RoomHistoryMessage, keep: number): Promise<void> {
    this.db.transaction(() => {
      if (this.sql.exists.get(room) === undefined) throw new NotFoundError(`there is no room ${room}`);
      if (keep <= 0) {
        this.sql.clearHistory.run(room);
        return;
      }
      this.sql.appendHistory.run(room, message.stamp, message.nick, message.xml);
      this.sql.trimHistory.run({ room, skip: keep - 1 });
    }).immediate();
  }

  async history(room: string, limit: number, since?: number): Promise<RoomHistoryMessage[]> {
    const rows = this.sql.history.all(room, since ?? Number.MIN_SAFE_INTEGER, limit) as RoomHistoryRow[];
    return rows.reverse().map(toRoomHistory);
  }
}
