import { NoStoreError, StoreVersionError, type Store } from '../store.js';
import { PgAccounts, PgAlerts, PgDomains, PgMeta } from './accounts.js';
import { PgCluster, PgSharedState } from './cluster.js';
import { PgDatasets } from './datasets.js';
import { PgFiles } from './files.js';
import { PgAccountAcl } from './account-acl.js';
import { PgCalendarIndex } from './calendar-index.js';
import { PgDavNames } from './dav-names.js';
import { PgAppPasswords, PgTwoFactor } from './login-security.js';
import { PgArchive, PgBlocking, PgMuc, PgOffline, PgResources, PgRoster } from './im.js';
import { Db, parseStoreUrl } from './db.js';
import { PgMail } from './mail.js';
import { PgMeetings } from './meetings.js';
import { PgRemoteSip } from './remote-sip.js';
import { PgBilling } from './billing.js';
import { PgSmime } from './smime.js';
import { PgRemoteMail } from './remote-mail.js';
import { migrate, migrations, schemaVersion } from './migrations.js';
import { PgQueue } from './queue.js';
import { PgRegistrations } from './registrations.js';
import { PgRelay } from './relay.js';
import { PgRules } from './rules.js';

/**
 * The PostgreSQL engine, for production and clusters: any number of server processes share
 * one database. Every method is one transaction (or one statement) that decides what it
 * changes from what is stored (see the locking notes in mail.ts); change events travel
 * between the processes by LISTEN/NOTIFY (relay.ts).
 *
 * `postgres://user:password@host:port/database?pool=N`: N connections per process (10 by
 * default); every other parameter is the driver's.
 */
export class PostgresStore implements Store {
  readonly engine = 'postgres';
  readonly domains: PgDomains;
  readonly accounts: PgAccounts;
  readonly alerts: PgAlerts;
  readonly meta: PgMeta;
  readonly mail: PgMail;
  readonly queue: PgQueue;
  readonly rules: PgRules;
  readonly datasets: PgDatasets;
  readonly files: PgFiles;
  readonly accountAcl: PgAccountAcl;
  readonly davNames: PgDavNames;
  readonly twoFactor: PgTwoFactor;
  readonly appPasswords: PgAppPasswords;
  readonly calendarIndex: PgCalendarIndex;
  readonly roster: PgRoster;
  readonly offline: PgOffline;
  readonly archive: PgArchive;
  readonly blocking: PgBlocking;
  readonly resources: PgResources;
  readonly muc: PgMuc;
  readonly registrations: PgRegistrations;
  readonly meetings: PgMeetings;
  readonly remoteSip: PgRemoteSip;
  readonly billing: PgBilling;
  readonly smime: PgSmime;
  readonly remoteMail: PgRemoteMail;
  readonly cluster: PgCluster;
  readonly shared: PgSharedState;
  readonly relay: PgRelay;
  private closed: Promise<void> | undefined;

  /**
   * Connects, brings the schema up to date, and returns the store. With `existing`, the
   * database must hold the current schema already (nothing is created or migrated):
   * NoStoreError without one, StoreVersionError with another version.
   */
  static async open(url: string, options: { existing?: { where: string } } = {}): Promise<PostgresStore> {
    const { connectionString, poolSize } = parseStoreUrl(url);
    const db = new Db(connectionString, poolSize);
    try {
      if (options.existing) {
        const version = await schemaVersion(db.pool);
        if (version === undefined) throw new NoStoreError(options.existing.where);
        if (version !== migrations.length) throw new StoreVersionError(options.existing.where, version, migrations.length);
      } else {
        await migrate(db.pool);
      }
    } catch (err) {
      await db.end().catch(() => {});
      throw err;
    }
    return new PostgresStore(db);
  }

  private constructor(readonly db: Db) {
    this.domains = new PgDomains(db);
    this.accounts = new PgAccounts(db);
    this.alerts = new PgAlerts(db);
    this.meta = new PgMeta(db);
    this.mail = new PgMail(db);
    this.queue = new PgQueue(db);
    this.rules = new PgRules(db);
    this.datasets = new PgDatasets(db);
    this.files = new PgFiles(db);
    this.accountAcl = new PgAccountAcl(db);
    this.davNames = new PgDavNames(db);
    this.twoFactor = new PgTwoFactor(db);
    this.appPasswords = new PgAppPasswords(db);
    this.calendarIndex = new PgCalendarIndex(db);
    this.roster = new PgRoster(db);
    this.offline = new PgOffline(db);
    this.archive = new PgArchive(db);
    this.blocking = new PgBlocking(db);
    this.resources = new PgResources(db);
    this.muc = new PgMuc(db);
    this.registrations = new PgRegistrations(db);
    this.meetings = new PgMeetings(db);
    this.remoteSip = new PgRemoteSip(db);
    this.billing = new PgBilling(db);
    this.smime = new PgSmime(db);
    this.remoteMail = new PgRemoteMail(db);
    this.cluster = new PgCluster(db);
    this.shared = new PgSharedState(db);
    this.relay = new PgRelay(db);
  }

  /** Stops the relay's listeners and closes every connection (after the queries in flight). */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.relay.close();
      await this.db.end();
    })();
    return this.closed;
  }
}
