/**
 * Remote POP and IMAP accounts: the records an account keeps (rpopList/rpopUpdate,
 * rimapList/rimapUpdate) and the poller that fetches their mail into the account.
 *
 * Polling is work that must run once in a cluster: a node claims due records with a lease
 * (remoteMail.leaseSeconds, renewed while the poll runs), like the outbound queue claims
 * messages; a node that dies loses its leases when they run out, and another takes over.
 *
 * Each message is delivered through the account's Mail Rules (LocalDelivery) into the record's
 * mailbox with a delivery key made of the record and the message's unique id, then recorded:
 *
 * - POP3: RETR, deliver, record the UIDL as fetched, then DELE (unless leave), and QUIT to
 *   commit the deletions. A UIDL already fetched is skipped (and deleted, unless leave: a
 *   session that ended before its QUIT leaves those behind). Fetched UIDLs are forgotten late
 *   (SEEN_PRUNING): never from an empty listing, only after a QUIT that succeeded.
 * - IMAP: the INBOX's UIDs above the last one fetched, in order: fetch, deliver, delete (unless
 *   leave: UID EXPUNGE with UIDPLUS; without it only \Deleted, since a plain EXPUNGE would
 *   remove other clients' deleted messages too), then record the UID as the last one. A new
 *   UIDVALIDITY starts over.
 *
 * A crash between the delivery and the record fetches the message again, and the delivery key
 * stores it once; so a restart neither duplicates nor loses. A message larger than
 * remoteMail.maxMessageBytes is left on the remote server and named in the record's standing
 * note (not an error: no back-off), which later polls keep until it is gone or fits (IMAP
 * keeps its UIDs and looks at their sizes again; POP3 sees them in every LIST). A failing poll
 * (a server down, a refused password, a silent server after timeoutSeconds) is kept as the
 * record's error (the list shows it) and tried again after a back-off. An account whose
 * RPOPAllowed is no longer Yes has its records kept but not polled. close() cuts the open
 * connections at once; the polls cut give their lease up and record no failure.
 */
import { lookup } from 'node:dns/promises';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { EventBus } from '../../bus/bus.js';
import { ImapFlow } from 'imapflow';
import type { Config } from '../../config.js';
import { errorText, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { RemoteMailLimitError, type RemoteMailChange, type RemoteMailKind, type RemoteMailRecord, type SeenPruning } from '../../store/remote-mail.js';
import type { AccountRecord, Store } from '../../store/store.js';
import type { LocalDelivery } from '../../transports/smtp/local-delivery.js';
import { fullName, settingIsYes, type AccountService } from '../accounts.js';
import { ServiceError } from '../errors.js';
import { isPublicAddress } from '../remote-fetch.js';
import type { SecretBox } from '../secret-box.js';
import { Pop3Client, Pop3Error, connectionError } from './pop3.js';
import { checkRecordName, readRecord } from './records.js';

export interface RemoteMailDeps {
  store: Store;
  bus: EventBus;
  accounts: AccountService;
  secrets: SecretBox;
  config: Config['remoteMail'];
  /** This node's id (the lease owner). */
  node: string;
  /** This server's name (the Received field of fetched messages). */
  hostName: string;
  log: Logger;
  metrics?: Metrics;
  /** Extra TLS options for the connections to remote servers (tests: a CA to trust). */
  tls?: ConnectionOptions;
}

/** One change of rpopUpdate/rimapUpdate. */
export type RecordChange = { name: string; remove: true } | { name: string; remove: false; dictionary: Record<string, string> };

/** Changes one request may carry. */
export const MAX_CHANGES_PER_REQUEST = 100;

class LeaseLost extends Error {}

/**
 * When a fetched POP3 UIDL the remote server no longer lists is forgotten: missing from three
 * complete listings in a row, and for 30 days. A listing that drops messages for a while (a
 * locked or broken maildrop lists none, or some) forgets nothing, so with leave-on-server
 * nothing is fetched twice; delivery keys (kept 30 days) only cover the crash window between
 * a delivery and its record.
 */
export const SEEN_PRUNING: SeenPruning = { misses: 3, ageMs: 30 * 86_400_000 };

/** The error shown while the account may no longer keep remote accounts (its records stay, unpolled). */
export const NOT_ALLOWED = 'remote account polling is not allowed for this account';

/** What one poll did. */
interface PollResult {
  fetched: number;
  more: boolean;
  /** The record's standing note (messages left on the server), null when there is none. */
  note: string | null;
}

/** The context a record's password is sealed with: the record it belongs to. */
export function passwordContext(kind: RemoteMailKind, accountId: number, name: string): string {
  return `${kind === 'pop' ? 'rpop' : 'rimap'}:${accountId}:${name}`;
}

/** Names the remote mailbox in delivery keys: a record pointed elsewhere does not share them. */
function remoteTag(record: Pick<RemoteMailRecord, 'host' | 'port' | 'user'>): string {
  return createHash('sha256').update(`${record.host.toLowerCase()}\0${record.port}\0${record.user}`).digest('hex').slice(0, 12);
}

/** The reverse path for the Mail Rules: the message's Return-Path, else its From address, else ''. */
function senderOf(raw: Buffer): string {
  const end = raw.indexOf('\r\n\r\n');
  const header = raw.subarray(0, end < 0 ? Math.min(raw.length, 65536) : Math.min(end, 65536)).toString('latin1');
  for (const field of ['return-path', 'from']) {
    // The field's first line, at most a line's worth (RFC 5322: 998): the address is looked for in that only.
    const start = header.toLowerCase().search(new RegExp(`(^|\\n)${field}:`));
    if (start < 0) continue;
    const line = header.slice(start).replace(/^\n/, '').slice(field.length + 1, 1000).split(/\r?\n/)[0]!;
    const m = /<([^<>\s"]+@[^<>\s"]+)>/.exec(line) ?? /([^<>\s",;:]+@[^<>\s",;]+)/.exec(line);
    if (m) return m[1]!;
  }
  return '';
}

export class RemoteMailService {
  private delivery: LocalDelivery | undefined;
  private readonly busy = new Set<number>();
  private readonly polls = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private scanning = false;
  private rescan = false;
  private closed = false;
  private stopListening: (() => void) | undefined;
  /** Aborted by close(): destroys the connections to remote servers at once. */
  private readonly stopping = new AbortController();

  constructor(private readonly deps: RemoteMailDeps) {}

  // ------------------------------------------------------------------ records

  /** Refuses unless the account may keep remote accounts (the RPOPAllowed setting). */
  private async checkAllowed(account: AccountRecord): Promise<void> {
    const settings = await this.deps.accounts.effectiveSettings(account);
    if (!settingIsYes(settings.RPOPAllowed)) throw new ServiceError(NOT_ALLOWED);
  }

  async list(account: AccountRecord, kind: RemoteMailKind): Promise<RemoteMailRecord[]> {
    return this.deps.store.remoteMail.list(account.id, kind);
  }

  /**
   * Applies rpopUpdate/rimapUpdate's changes in order, all or none: they are checked (and the
   * passwords sealed) first, then stored in one transaction; the change event follows the commit.
   */
  async update(account: AccountRecord, kind: RemoteMailKind, changes: readonly RecordChange[]): Promise<void> {
    await this.checkAllowed(account);
    if (changes.length === 0) throw new ServiceError('no record to update');
    if (changes.length > MAX_CHANGES_PER_REQUEST) throw new ServiceError(`at most ${MAX_CHANGES_PER_REQUEST} records per request`);
    const { config, store, secrets, log } = this.deps;
    const checked = changes.map((change) => {
      const name = checkRecordName(change.name, kind === 'pop' ? 'rpopRecord' : 'rimapRecord');
      return change.remove ? { name, remove: true as const } : { name, remove: false as const, input: readRecord(kind, change.dictionary, config) };
    });
    // The records as the request finds them, updated as its changes go (a record added earlier in it has its password).
    const current = new Map<string, { host: string; port: number; user: string; sealedPassword: string } | undefined>();
    const planned: RemoteMailChange[] = [];
    for (const change of checked) {
      if (change.remove) {
        current.set(change.name, undefined);
        planned.push({ name: change.name, remove: true });
        continue;
      }
      const { input } = change;
      let sealedPassword: string;
      if (input.password !== undefined) {
        sealedPassword = secrets.seal(input.password, passwordContext(kind, account.id, change.name));
      } else {
        const old = current.has(change.name) ? current.get(change.name) : await store.remoteMail.get(account.id, kind, change.name);
        if (!old || old.host !== input.host || old.port !== input.port || old.user !== input.user) {
          throw new ServiceError(`the record ${JSON.stringify(change.name)} needs a password`);
        }
        sealedPassword = old.sealedPassword;
      }
      const settings = { host: input.host, port: input.port, tls: input.tls, user: input.user, sealedPassword, leave: input.leave, interval: input.interval, mailbox: input.mailbox };
      current.set(change.name, settings);
      planned.push({ name: change.name, remove: false, settings });
    }
    let results;
    try {
      results = await store.remoteMail.apply(account.id, kind, planned, Date.now(), config.recordsPerAccount);
    } catch (err) {
      if (err instanceof RemoteMailLimitError) throw new ServiceError(`too many remote account records (at most ${config.recordsPerAccount} per account)`);
      throw err;
    }
    planned.forEach((change, i) => {
      const outcome = results[i];
      if (change.remove) {
        if (outcome === 'removed') log.info({ event: 'remoteMail.record_removed', account: fullName(account), kind, name: change.name }, 'remote account record removed');
        return;
      }
      const { host, port, tls, leave, interval } = change.settings;
      log.info({ event: 'remoteMail.record_updated', account: fullName(account), kind, name: change.name, host, port, tls, leave, interval, outcome }, 'remote account record stored');
    });
    // Every node's poller looks for due records now (this one included).
    this.deps.bus.publish('remoteMailChanged', { accountId: account.id });
  }

  // ------------------------------------------------------------------ the poller

  private get leaseMs(): number {
    return this.deps.config.leaseSeconds * 1000;
  }

  /** Starts polling (records a previous run left due first). */
  start(delivery: LocalDelivery): void {
    if (!this.deps.config.poll) return;
    this.delivery = delivery;
    this.stopListening = this.deps.bus.on('remoteMailChanged', () => this.kick());
    this.kick();
  }

  /** Stops polling: open connections to remote servers are cut at once, and those polls record nothing more. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.stopListening?.();
    this.stopping.abort();
    while (this.polls.size > 0) await Promise.allSettled([...this.polls]);
  }

  /** Looks for due records soon. */
  kick(): void {
    if (this.closed || !this.delivery) return;
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.scan(), 0);
  }

  private async scan(): Promise<void> {
    const { store, config, node } = this.deps;
    this.scanning = true;
    try {
      do {
        this.rescan = false;
        const free = config.concurrency - this.busy.size;
        if (free <= 0 || this.closed) break;
        const now = Date.now();
        const due = await store.remoteMail.claimDue(now, free, { owner: node, until: now + this.leaseMs });
        for (const record of due) this.startPoll(record);
        if (due.length === free) this.rescan = true;
      } while (this.rescan && this.busy.size < config.concurrency);
      // Wake for the next due record; at least every half lease, for records other nodes
      // added or leases that ran out.
      if (!this.closed) {
        const next = this.busy.size < config.concurrency ? await store.remoteMail.nextDue(Date.now()) : undefined;
        const delay = Math.min(next === undefined ? this.leaseMs / 2 : Math.max(0, next - Date.now()), this.leaseMs / 2);
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.scan(), delay);
        this.timer.unref();
      }
    } catch (err) {
      this.deps.log.error({ event: 'remoteMail.scan_failed', error: errorText(err) }, 'looking for remote accounts to poll failed');
      if (!this.closed) {
        this.timer = setTimeout(() => void this.scan(), 5000);
        this.timer.unref();
      }
    } finally {
      this.scanning = false;
      // A kick() during the scan's last store calls set `rescan` after the loop looked at it: scan again now.
      if (this.rescan && !this.closed) {
        this.rescan = false;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.scan(), 0);
      }
    }
  }

  private startPoll(record: RemoteMailRecord): void {
    const { store, node, log } = this.deps;
    this.busy.add(record.id);
    let lost = false;
    const renewal = setInterval(() => {
      void store.remoteMail.renewLease(record.id, { owner: node, until: Date.now() + this.leaseMs }).then(
        (held) => {
          if (held) return;
          lost = true;
          clearInterval(renewal);
        },
        (err: unknown) => log.warn({ event: 'remoteMail.renew_failed', record: record.id, error: errorText(err) }, 'renewing a lease failed'),
      );
    }, this.leaseMs / 3);
    const poll = this.poll(record, () => lost)
      .catch((err: unknown) => log.error({ event: 'remoteMail.poll_crashed', record: record.id, error: errorText(err) }, 'a poll failed unexpectedly'))
      .finally(() => {
        clearInterval(renewal);
        this.busy.delete(record.id);
        this.polls.delete(poll);
        this.kick();
      });
    this.polls.add(poll);
  }

  private async poll(record: RemoteMailRecord, leaseLost: () => boolean): Promise<void> {
    const { store, accounts, secrets, node, log, metrics } = this.deps;
    const account = await accounts.getById(record.accountId);
    if (!account) return; // removed meanwhile (its records with it)
    const who = fullName(account);
    let error: string | null = null;
    let note: string | null | undefined;
    let fetched = 0;
    let more = false;
    // Whether the account may (still) keep remote accounts: a record of one that may not stays, unpolled.
    const allowed = settingIsYes((await accounts.effectiveSettings(account)).RPOPAllowed);
    if (!allowed) {
      error = NOT_ALLOWED;
      log.info({ event: 'remoteMail.not_allowed', account: who, kind: record.kind, name: record.name }, 'remote account polling is not allowed for this account: the record is not polled');
    } else {
      try {
        const password = secrets.open(record.sealedPassword, passwordContext(record.kind, record.accountId, record.name));
        const address = await this.resolve(record.host);
        const result =
          record.kind === 'pop' ? await this.pollPop(record, account, password, address, leaseLost) : await this.pollImap(record, account, password, address, leaseLost);
        fetched = result.fetched;
        more = result.more;
        note = result.note;
      } catch (err) {
        if (err instanceof LeaseLost) {
          log.warn({ event: 'remoteMail.lease_lost', account: who, kind: record.kind, name: record.name }, 'the lease was lost during a poll; it stops');
          return;
        }
        error = err instanceof Pop3Error || err instanceof ServiceError ? err.message : imapErrorText(err);
      }
    }
    if (this.closed) {
      // Stopping: the connection was cut (or the poll ended early); what was fetched is recorded, the rest waits for the next run.
      await store.remoteMail.release(record.id, node);
      log.info({ event: 'remoteMail.poll_stopped', account: who, kind: record.kind, name: record.name, fetched }, 'the server is stopping: the poll stopped');
      return;
    }
    // What a remote server said goes into an XML attribute and the log: printable, and short.
    if (error !== null) error = printable(error);
    if (typeof note === 'string') note = printable(note);
    const now = Date.now();
    const failures = error === null ? 0 : record.failures + 1;
    const config = this.deps.config;
    const backoff = Math.min(record.interval * 1000 * 2 ** Math.min(failures - 1, 20), Math.max(config.maxBackoffSeconds, record.interval) * 1000);
    const nextPoll = !allowed ? now + record.interval * 1000 : error !== null ? now + backoff : more ? now + 1000 : now + record.interval * 1000;
    const held = await store.remoteMail.finish(record.id, node, { time: now, nextPoll, error, note });
    if (fetched > 0) metrics?.remoteMailFetched.inc({ kind: record.kind }, fetched);
    // Messages left on the server count as an error in the metrics (as they always did), though not for the back-off.
    if (error === null && note) metrics?.remoteMailErrors.inc({ kind: record.kind });
    if (error !== null) {
      if (allowed) {
        metrics?.remoteMailErrors.inc({ kind: record.kind });
        log.warn({ event: 'remoteMail.poll_failed', account: who, kind: record.kind, name: record.name, host: record.host, port: record.port, fetched, failures, error, retryInSeconds: Math.round((nextPoll - now) / 1000) }, 'polling a remote account failed');
      }
    } else {
      log.info({ event: 'remoteMail.polled', account: who, kind: record.kind, name: record.name, host: record.host, fetched, more, note }, 'remote account polled');
    }
    if (!held) log.warn({ event: 'remoteMail.lease_lost', account: who, kind: record.kind, name: record.name }, 'the lease was lost before the poll was recorded');
  }

  /** The note naming the messages left on the server for their size. */
  private tooLarge(record: RemoteMailRecord, account: AccountRecord, ids: readonly string[]): string | null {
    if (ids.length === 0) return null;
    const limit = this.deps.config.maxMessageBytes;
    this.deps.log.warn({ event: 'remoteMail.message_too_large', account: fullName(account), kind: record.kind, name: record.name, count: ids.length, messages: ids.slice(0, 20), limit }, 'messages too large to fetch');
    return `${ids.length} message(s) larger than ${limit} bytes left on the server (${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', ...' : ''})`;
  }

  /** The address to connect to; refuses private and local ones unless remoteMail.allowPrivate. */
  private async resolve(host: string): Promise<string> {
    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else {
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), this.deps.config.timeoutSeconds * 1000)));
        addresses = (await Promise.race([lookup(host, { all: true, verbatim: true }), timeout])).map((a) => a.address);
      } catch {
        throw new ServiceError(`unknown host ${host}`);
      } finally {
        clearTimeout(timer);
      }
    }
    if (addresses.length === 0) throw new ServiceError(`unknown host ${host}`);
    if (!this.deps.config.allowPrivate && addresses.some((a) => !isPublicAddress(a))) {
      throw new ServiceError(`${host} is a private or local address, which this server does not poll`);
    }
    return addresses[0]!;
  }

  private async deliver(record: RemoteMailRecord, account: AccountRecord, raw: Buffer, id: string, address: string): Promise<void> {
    const delivery = this.delivery!;
    const protocol = record.kind === 'pop' ? 'POP3' : 'IMAP';
    const received = `Received: from ${record.host} ([${address}]) by ${this.deps.hostName} with ${protocol} for <${fullName(account)}>; ${new Date().toUTCString()}\r\n`;
    await delivery.deliver(
      Buffer.concat([Buffer.from(received, 'latin1'), raw]),
      { sender: senderOf(raw), recipient: fullName(account), account, authenticated: false, remoteAddress: address },
      { key: `rm${record.id}.${remoteTag(record)}/${id}`, mailbox: record.mailbox },
    );
  }

  private async pollPop(record: RemoteMailRecord, account: AccountRecord, password: string, address: string, leaseLost: () => boolean): Promise<PollResult> {
    const { store, config, node } = this.deps;
    const client = await Pop3Client.connect({
      address,
      port: record.port,
      servername: record.host,
      security: record.tls,
      timeoutMs: config.timeoutSeconds * 1000,
      tls: this.deps.tls,
      signal: this.stopping.signal,
    });
    try {
      await client.login(record.user, password);
      const uidls = await client.uidl();
      const sizes = await client.list();
      const seen = await store.remoteMail.seen(record.id);
      const listing = [...uidls].sort((a, b) => a[0] - b[0]);
      // Every message not fetched yet that is too large (whether this poll reaches it or not).
      const skipped = listing.filter(([number, uidl]) => !seen.has(uidl) && (sizes.get(number) ?? 0) > config.maxMessageBytes).map(([number]) => `#${number}`);
      let fetched = 0;
      let more = false;
      for (const [number, uidl] of listing) {
        if (leaseLost()) throw new LeaseLost();
        if (seen.has(uidl)) {
          if (!record.leave) await client.delete(number);
          continue;
        }
        if ((sizes.get(number) ?? 0) > config.maxMessageBytes) continue;
        if (fetched >= config.messagesPerPoll || this.closed) {
          more = true;
          break;
        }
        const raw = await client.retrieve(number, config.maxMessageBytes);
        await this.deliver(record, account, raw, `u:${uidl}`, address);
        if (!(await store.remoteMail.markSeen(record.id, node, uidl, Date.now()))) throw new LeaseLost();
        if (!record.leave) await client.delete(number);
        fetched++;
      }
      await client.quit();
      // Only a session that ended well lists what the server has; even then, see SEEN_PRUNING.
      if (!(await store.remoteMail.pruneSeen(record.id, node, [...uidls.values()], Date.now(), SEEN_PRUNING))) throw new LeaseLost();
      return { fetched, more, note: this.tooLarge(record, account, skipped) };
    } finally {
      client.close();
    }
  }

  private async pollImap(record: RemoteMailRecord, account: AccountRecord, password: string, address: string, leaseLost: () => boolean): Promise<PollResult> {
    const { store, config, node, log } = this.deps;
    const timeout = config.timeoutSeconds * 1000;
    const client = new ImapFlow({
      host: address,
      port: record.port,
      secure: record.tls === 'tls',
      servername: isIP(record.host) ? undefined : record.host,
      doSTARTTLS: record.tls === 'starttls',
      auth: { user: record.user, pass: password },
      logger: false,
      disableAutoIdle: true,
      disableCompression: true,
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
      maxLiteralSize: config.maxMessageBytes + 1024,
      maxResponseSize: config.maxMessageBytes + 64 * 1024,
      tls: this.deps.tls,
    });
    // Errors come back from the calls; the event would otherwise be unhandled.
    client.on('error', () => {});
    const cut = (): void => client.close();
    this.stopping.signal.addEventListener('abort', cut, { once: true });
    try {
      if (this.stopping.signal.aborted) throw new ServiceError('the server is stopping');
      await client.connect();
      const box = await client.mailboxOpen('INBOX');
      const validity = Number(box.uidValidity);
      let lastUid = record.uidValidity === validity ? record.lastUid : 0;
      let skipped = record.uidValidity === validity ? record.skipped : [];
      if (record.uidValidity !== validity) {
        if (record.uidValidity !== null) {
          log.warn({ event: 'remoteMail.uidvalidity_changed', account: fullName(account), name: record.name, was: record.uidValidity, now: validity }, 'the remote INBOX has a new UIDVALIDITY: fetching it all again');
        }
        if (!(await store.remoteMail.setImapState(record.id, node, validity, 0, []))) throw new LeaseLost();
      }
      // Without UIDPLUS there is no UID EXPUNGE, and a plain EXPUNGE (or CLOSE) would remove every
      // message marked deleted in the remote INBOX, other clients' too: fetched messages are only
      // marked \Deleted there (the remote server or its user expunges them), and the note says so.
      const uidExpunge = client.capabilities.has('UIDPLUS');
      if (!record.leave && !uidExpunge) {
        log.warn({ event: 'remoteMail.no_uidplus', account: fullName(account), name: record.name, host: record.host }, 'the remote server has no UIDPLUS: fetched messages are marked deleted, not expunged');
      }
      let fetched = 0;
      const take = async (uid: number): Promise<void> => {
        const full = await client.fetchOne(String(uid), { uid: true, source: true }, { uid: true });
        if (!full || !full.source) return;
        await this.deliver(record, account, full.source, `i:${validity}:${uid}`, address);
        if (!record.leave) {
          if (uidExpunge) await client.messageDelete(String(uid), { uid: true });
          else await client.messageFlagsAdd(String(uid), ['\\Deleted'], { uid: true });
        }
        fetched++;
      };
      // Messages earlier polls left on the server for their size: gone, still too large, or (the limit grew) fetched now.
      if (skipped.length > 0) {
        const known = new Set(skipped);
        const again = box.exists > 0 ? await client.fetchAll(skipped.join(','), { uid: true, size: true }, { uid: true }) : [];
        const still: number[] = [];
        for (const message of again.filter((m) => known.has(m.uid)).sort((a, b) => a.uid - b.uid)) {
          if (leaseLost()) throw new LeaseLost();
          if ((message.size ?? 0) > config.maxMessageBytes || fetched >= config.messagesPerPoll || this.closed) still.push(message.uid);
          else await take(message.uid);
        }
        skipped = still;
        if (!(await store.remoteMail.setImapState(record.id, node, validity, lastUid, skipped))) throw new LeaseLost();
      }
      const listed = box.exists > 0 ? await client.fetchAll(`${lastUid + 1}:*`, { uid: true, size: true }, { uid: true }) : [];
      // `n:*` answers the last message even when its UID is below n.
      const pending = listed.filter((m) => m.uid > lastUid).sort((a, b) => a.uid - b.uid);
      let stopped = false;
      let handled = 0;
      for (const message of pending) {
        if (leaseLost()) throw new LeaseLost();
        // The server is stopping: what is done is recorded, the rest comes with the next poll.
        if (this.closed || fetched >= config.messagesPerPoll) {
          stopped = true;
          break;
        }
        // A message too large stays on the server, named in the note, and is looked at again by each poll (not fetched).
        if ((message.size ?? 0) > config.maxMessageBytes) skipped = [...skipped, message.uid];
        else await take(message.uid);
        handled++;
        lastUid = message.uid;
        if (!(await store.remoteMail.setImapState(record.id, node, validity, lastUid, skipped))) throw new LeaseLost();
      }
      await client.logout();
      const notes = [this.tooLarge(record, account, skipped.map((uid) => `UID ${uid}`))];
      if (!record.leave && !uidExpunge) notes.push('the server has no UIDPLUS: fetched messages are marked deleted there, not expunged');
      const note = notes.filter((n) => n !== null).join('; ');
      return { fetched, more: stopped || handled < pending.length, note: note === '' ? null : note };
    } finally {
      this.stopping.signal.removeEventListener('abort', cut);
      client.close();
    }
  }
}

/** Printable and short: what a remote server said goes into an XML attribute and the log. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\ufffe\uffff]/g, '?').slice(0, 500);
}

/** An IMAP (or socket) failure as a short sentence for the record's error. */
function imapErrorText(err: unknown): string {
  const e = err as { authenticationFailed?: boolean; code?: string; responseText?: string; message?: string };
  if (e.authenticationFailed) return `login refused${e.responseText ? ` (the server said: ${e.responseText.slice(0, 200)})` : ''}`;
  if (e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH') return connectionError(err as Error);
  if (e.code === 'GreetingTimeout' || e.code === 'ETIMEOUT' || e.code === 'ConnectionTimeout' || e.code === 'SocketTimeout' || /timeout/i.test(e.code ?? '')) {
    return 'the server did not answer in time';
  }
  if (e.responseText) return `the server said: ${e.responseText.slice(0, 200)}`;
  return errorText(err).slice(0, 300);
}
