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
 *   session that ended before its QUIT leaves those behind).
 * - IMAP: the INBOX's UIDs above the last one fetched, in order: fetch, deliver, delete and
 *   expunge (unless leave), then record the UID as the last one. A new UIDVALIDITY starts over.
 *
 * A crash between the delivery and the record fetches the message again, and the delivery key
 * stores it once; so a restart neither duplicates nor loses. A message larger than
 * remoteMail.maxMessageBytes is left on the remote server and named in the record's error. A
 * failing poll (a server down, a refused password, a silent server after timeoutSeconds) is
 * kept as the record's error (the list shows it) and tried again after a back-off.
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
import type { RemoteMailKind, RemoteMailRecord } from '../../store/remote-mail.js';
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

  constructor(private readonly deps: RemoteMailDeps) {}

  // ------------------------------------------------------------------ records

  /** Refuses unless the account may keep remote accounts (the RPOPAllowed setting). */
  private async checkAllowed(account: AccountRecord): Promise<void> {
    const settings = await this.deps.accounts.effectiveSettings(account);
    if (!settingIsYes(settings.RPOPAllowed)) throw new ServiceError('remote account polling is not allowed for this account');
  }

  async list(account: AccountRecord, kind: RemoteMailKind): Promise<RemoteMailRecord[]> {
    return this.deps.store.remoteMail.list(account.id, kind);
  }

  /** Applies rpopUpdate/rimapUpdate's changes in order; all are checked before any is applied. */
  async update(account: AccountRecord, kind: RemoteMailKind, changes: readonly RecordChange[]): Promise<void> {
    await this.checkAllowed(account);
    if (changes.length === 0) throw new ServiceError('no record to update');
    if (changes.length > MAX_CHANGES_PER_REQUEST) throw new ServiceError(`at most ${MAX_CHANGES_PER_REQUEST} records per request`);
    const { config, store, secrets, log } = this.deps;
    const checked = changes.map((change) => {
      const name = checkRecordName(change.name, kind === 'pop' ? 'rpopRecord' : 'rimapRecord');
      return change.remove ? { name, remove: true as const } : { name, remove: false as const, input: readRecord(kind, change.dictionary, config) };
    });
    for (const change of checked) {
      if (change.remove) {
        const removed = await store.remoteMail.remove(account.id, kind, change.name);
        if (removed) log.info({ event: 'remoteMail.record_removed', account: fullName(account), kind, name: change.name }, 'remote account record removed');
        continue;
      }
      const { input } = change;
      let sealedPassword: string;
      if (input.password !== undefined) {
        sealedPassword = secrets.seal(input.password, passwordContext(kind, account.id, change.name));
      } else {
        const old = await store.remoteMail.get(account.id, kind, change.name);
        if (!old || old.host !== input.host || old.port !== input.port || old.user !== input.user) {
          throw new ServiceError(`the record ${JSON.stringify(change.name)} needs a password`);
        }
        sealedPassword = old.sealedPassword;
      }
      const outcome = await store.remoteMail.put(
        account.id,
        kind,
        change.name,
        { host: input.host, port: input.port, tls: input.tls, user: input.user, sealedPassword, leave: input.leave, interval: input.interval, mailbox: input.mailbox },
        Date.now(),
        config.recordsPerAccount,
      );
      if (outcome === 'limit') throw new ServiceError(`too many remote account records (at most ${config.recordsPerAccount} per account)`);
      log.info(
        { event: 'remoteMail.record_updated', account: fullName(account), kind, name: change.name, host: input.host, port: input.port, tls: input.tls, leave: input.leave, interval: input.interval, outcome },
        'remote account record stored',
      );
    }
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

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.stopListening?.();
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
    const { store, accounts, secrets, config, node, log, metrics } = this.deps;
    const account = await accounts.getById(record.accountId);
    if (!account) return; // removed meanwhile (its records with it)
    const who = fullName(account);
    let error: string | null = null;
    let fetched = 0;
    let more = false;
    try {
      const password = secrets.open(record.sealedPassword, passwordContext(record.kind, record.accountId, record.name));
      const address = await this.resolve(record.host);
      const result =
        record.kind === 'pop' ? await this.pollPop(record, account, password, address, leaseLost) : await this.pollImap(record, account, password, address, leaseLost);
      fetched = result.fetched;
      more = result.more;
      error = result.skipped.length > 0 ? `${result.skipped.length} message(s) larger than ${config.maxMessageBytes} bytes left on the server (${result.skipped.slice(0, 5).join(', ')})` : null;
      if (error) log.warn({ event: 'remoteMail.message_too_large', account: who, kind: record.kind, name: record.name, messages: result.skipped.slice(0, 20) }, 'messages too large to fetch');
    } catch (err) {
      if (err instanceof LeaseLost) {
        log.warn({ event: 'remoteMail.lease_lost', account: who, kind: record.kind, name: record.name }, 'the lease was lost during a poll; it stops');
        return;
      }
      error = err instanceof Pop3Error || err instanceof ServiceError ? err.message : imapErrorText(err);
    }
    // What a remote server said goes into an XML attribute and the log: printable, and short.
    if (error !== null) error = error.replace(/[\u0000-\u001f\u007f-\u009f\ufffe\uffff]/g, '?').slice(0, 500);
    const now = Date.now();
    const failures = error === null ? 0 : record.failures + 1;
    const backoff = Math.min(record.interval * 1000 * 2 ** Math.min(failures - 1, 20), Math.max(config.maxBackoffSeconds, record.interval) * 1000);
    const nextPoll = error !== null ? now + backoff : more ? now + 1000 : now + record.interval * 1000;
    const held = await store.remoteMail.finish(record.id, node, { time: now, nextPoll, error });
    if (fetched > 0) metrics?.remoteMailFetched.inc({ kind: record.kind }, fetched);
    if (error !== null) {
      metrics?.remoteMailErrors.inc({ kind: record.kind });
      log.warn({ event: 'remoteMail.poll_failed', account: who, kind: record.kind, name: record.name, host: record.host, port: record.port, fetched, failures, error, retryInSeconds: Math.round((nextPoll - now) / 1000) }, 'polling a remote account failed');
    } else {
      log.info({ event: 'remoteMail.polled', account: who, kind: record.kind, name: record.name, host: record.host, fetched, more }, 'remote account polled');
    }
    if (!held) log.warn({ event: 'remoteMail.lease_lost', account: who, kind: record.kind, name: record.name }, 'the lease was lost before the poll was recorded');
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

  private async pollPop(
    record: RemoteMailRecord,
    account: AccountRecord,
    password: string,
    address: string,
    leaseLost: () => boolean,
  ): Promise<{ fetched: number; more: boolean; skipped: string[] }> {
    const { store, config, node } = this.deps;
    const client = await Pop3Client.connect({ address, port: record.port, servername: record.host, security: record.tls, timeoutMs: config.timeoutSeconds * 1000, tls: this.deps.tls });
    try {
      await client.login(record.user, password);
      const uidls = await client.uidl();
      const sizes = await client.list();
      const seen = await store.remoteMail.seen(record.id);
      if (!(await store.remoteMail.pruneSeen(record.id, node, [...uidls.values()]))) throw new LeaseLost();
      let fetched = 0;
      let more = false;
      const skipped: string[] = [];
      for (const [number, uidl] of [...uidls].sort((a, b) => a[0] - b[0])) {
        if (leaseLost()) throw new LeaseLost();
        if (seen.has(uidl)) {
          if (!record.leave) await client.delete(number);
          continue;
        }
        if (fetched >= config.messagesPerPoll || this.closed) {
          more = true;
          break;
        }
        if ((sizes.get(number) ?? 0) > config.maxMessageBytes) {
          skipped.push(`#${number}`);
          continue;
        }
        const raw = await client.retrieve(number, config.maxMessageBytes);
        await this.deliver(record, account, raw, `u:${uidl}`, address);
        if (!(await store.remoteMail.markSeen(record.id, node, uidl, Date.now()))) throw new LeaseLost();
        if (!record.leave) await client.delete(number);
        fetched++;
      }
      await client.quit();
      return { fetched, more, skipped };
    } finally {
      client.close();
    }
  }

  private async pollImap(
    record: RemoteMailRecord,
    account: AccountRecord,
    password: string,
    address: string,
    leaseLost: () => boolean,
  ): Promise<{ fetched: number; more: boolean; skipped: string[] }> {
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
    try {
      await client.connect();
      const box = await client.mailboxOpen('INBOX');
      const validity = Number(box.uidValidity);
      let lastUid = record.uidValidity === validity ? record.lastUid : 0;
      if (record.uidValidity !== validity) {
        if (record.uidValidity !== null) {
          log.warn({ event: 'remoteMail.uidvalidity_changed', account: fullName(account), name: record.name, was: record.uidValidity, now: validity }, 'the remote INBOX has a new UIDVALIDITY: fetching it all again');
        }
        if (!(await store.remoteMail.setImapState(record.id, node, validity, 0))) throw new LeaseLost();
      }
      const listed = box.exists > 0 ? await client.fetchAll(`${lastUid + 1}:*`, { uid: true, size: true }, { uid: true }) : [];
      // `n:*` answers the last message even when its UID is below n.
      const pending = listed.filter((m) => m.uid > lastUid).sort((a, b) => a.uid - b.uid);
      let fetched = 0;
      const skipped: string[] = [];
      let stopped = false;
      for (const message of pending.slice(0, config.messagesPerPoll)) {
        if (leaseLost()) throw new LeaseLost();
        // The server is stopping: what is done is recorded, the rest comes with the next poll.
        if (this.closed) {
          stopped = true;
          break;
        }
        if ((message.size ?? 0) > config.maxMessageBytes) {
          skipped.push(`UID ${message.uid}`);
        } else {
          const full = await client.fetchOne(String(message.uid), { uid: true, source: true }, { uid: true });
          if (full && full.source) {
            await this.deliver(record, account, full.source, `i:${validity}:${message.uid}`, address);
            if (!record.leave) await client.messageDelete(String(message.uid), { uid: true });
            fetched++;
          }
        }
        lastUid = message.uid;
        if (!(await store.remoteMail.setImapState(record.id, node, validity, lastUid))) throw new LeaseLost();
      }
      await client.logout();
      return { fetched, more: stopped || pending.length > config.messagesPerPoll, skipped };
    } finally {
      client.close();
    }
  }
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
