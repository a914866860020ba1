/**
 * The smtp section of the bench: delivery throughput into local mailboxes, ximssd over SMTP
 * against Dovecot over LMTP, on the same machine, over loopback, with the same generated
 * messages (bench/lib/mail-corpus.ts, RFC 822 form) and the same client code (nodemailer's
 * SMTPConnection, `lmtp: true` for Dovecot).
 *
 * K = 16 sender connections per server, each delivering messages back to back: one
 * transaction after another on the same connection (MAIL FROM, RCPT TO, DATA pipelined as
 * the client does it when PIPELINING is advertised; no RSET in between, as nodemailer does
 * with repeated `send`). Sender k always writes to account k of the current set, so the
 * messages are spread over K accounts, one INBOX per sender, on both sides. The warm-up and
 * each run have a set of K accounts of their own (`smtp-w-NN@bench.test`,
 * `smtp-R-NN@bench.test`), created empty beforehand, so that every run starts with empty
 * INBOXes (Dovecot's deliveries get slower as a Maildir fills up). The servers keep
 * their defaults for durability: ximssd commits to its store (SQLite, synchronous=FULL; or
 * the run's PostgreSQL, fsync and synchronous_commit on) before the 250; Dovecot keeps
 * `mail_fsync = optimized` and Maildir. ximssd runs on each engine asked for, side by side.
 *
 * Afterwards the counts are checked on every side (ximssd: XIMSS mailboxList of each INBOX;
 * Dovecot: IMAP STATUS), so that a broken delivery cannot make a fast figure.
 */
import { existsSync } from 'node:fs';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { ensureDovecot, startDovecot, type Dovecot } from './dovecot.js';
import { ENGINE_LABEL, type Engine, type Side } from './engines.js';
import { ErrorLog, fmt } from './figures.js';
import { ImapClient } from './imap-client.js';
import { MailCorpus, type CorpusMessage } from './mail-corpus.js';
import type { BenchPostgres } from './postgres.js';
import { cpuSeconds, meter } from './proc.js';
import { XimssClient, attr } from './ximss-client.js';
import { DOMAIN, PASSWORD, startXimssd, type Ximssd } from './ximssd.js';

export interface SmtpOptions {
  /** The store engines ximssd runs on (postgres only when `postgres` is given). */
  engines: Engine[];
  /** The run's PostgreSQL server. */
  postgres?: BenchPostgres;
  /** Concurrent sender connections per server (one recipient account each). */
  senders: number;
  /** Messages delivered per timed run, on each side. */
  count: number;
  /** Messages delivered (untimed) before the runs, on each side. */
  warmup: number;
  runs: number;
  cpuProfileDir?: string;
  log: (line: string) => void;
}

export interface SmtpRun {
  /** Messages sent (the run's fixed count). */
  messages: number;
  /** Messages answered 250 (what the rate counts). */
  delivered: number;
  /** Bytes of the delivered messages, as sent (before the servers' trace fields). */
  bytes: number;
  seconds: number;
  /** Delivered messages per second. */
  rate: number;
  /** Server CPU seconds per delivered message (Dovecot: all its processes; PostgreSQL engine: ximssd and all of PostgreSQL's). */
  cpuPerMessage: number | undefined;
  /** On PostgreSQL: the part of cpuPerMessage spent in ximssd's process and in PostgreSQL's. */
  cpuSplit?: { ximssd: number; postgres: number };
  /** Server CPU over the run, in cores. */
  serverCpu: number;
  /** CPU of the bench process (the senders), in cores. */
  clientCpu: number;
  /** CPU used meanwhile by everything else on the machine, in cores: high means disturbed. */
  otherCpu: number;
  errors: number;
}

export interface SmtpVerification {
  ok: boolean;
  /** Messages answered 250 over the whole section (warm-up included), all accounts. */
  expected: number;
  /** Messages the INBOXes hold. */
  found: number;
  /** Bytes sent in the delivered messages. */
  expectedBytes: number;
  /** What the server reports as the INBOXes' size (ximssd SIZE, Dovecot X-SIZE), if it does. */
  foundBytes?: number;
  text: string;
}

export interface SmtpResult {
  dovecot: { available: true; version: string } | { available: false; reason: string };
  engines: Engine[];
  senders: number;
  /** The recipient of each sender: one set for the warm-up, then one per run; the same on every side. */
  accounts: string[][];
  /** Why a side was not measured, if so. */
  unavailable: Partial<Record<Side, string>>;
  /** The extensions each server advertised in its EHLO/LHLO reply. */
  extensions: Partial<Record<Side, string[]>>;
  runs: Record<Side, SmtpRun[]>;
  verify: Partial<Record<Side, SmtpVerification>>;
  /** First distinct error texts seen, quoted as received. */
  errors: string[];
}

/** What the servers may add to each message (Return-Path, Received, Delivered-To): generous. */
const TRACE_ALLOWANCE = 2048;

/** One sender: an SMTP (or LMTP) connection of nodemailer's, kept open, one transaction at a time. */
class Sender {
  /** The EHLO/LHLO lines of the server (known after the first send). */
  extensions: string[] | undefined;
  private failure: Error | undefined;
  private closed = false;

  private constructor(private readonly connection: SMTPConnection) {
    connection.on('error', (err: Error) => (this.failure ??= err));
    connection.on('end', () => (this.failure ??= new Error('connection closed by the server')));
  }

  static open(port: number, lmtp: boolean): Promise<Sender> {
    const connection = new SMTPConnection({
      host: '127.0.0.1',
      port,
      lmtp,
      name: 'sender.bench.test',
      ignoreTLS: true,
      logger: false,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 10 * 60_000,
    });
    const sender = new Sender(connection);
    return new Promise((resolve, reject) => connection.connect((err) => (err ? reject(err) : resolve(sender))));
  }

  /** Delivers one message; resolves with undefined when it was accepted, else the error text. */
  send(to: string, message: CorpusMessage): Promise<string | undefined> {
    if (this.failure) return Promise.resolve(`connection failed: ${this.failure.message}`);
    return new Promise((resolve) => {
      this.connection.send({ from: message.from.address, to: [to], size: message.raw.length, use8BitMime: true }, message.raw, (err, info) => {
        if (err) resolve(err.message);
        else if (!info || !info.accepted.includes(to)) resolve(`not accepted: ${info?.response ?? '(no reply)'}`);
        else {
          this.extensions ??= info.ehlo;
          resolve(undefined);
        }
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.connection.quit();
    } catch {
      // already gone
    }
    setTimeout(() => this.connection.close(), 500).unref();
  }
}

/** What one side has had accepted so far, per account. */
type Tally = Map<string, { delivered: number; bytes: number }>;

function newTally(sets: string[][]): Tally {
  return new Map(sets.flat().map((address) => [address, { delivered: 0, bytes: 0 }]));
}

/**
 * Delivers `messages` over the senders: each sender takes the next message as soon as its
 * previous one is answered, and always sends to its own account.
 */
async function deliver(senders: Sender[], accounts: string[], messages: CorpusMessage[], tally: Tally, errors: ErrorLog, side: string): Promise<{ delivered: number; bytes: number; failed: number }> {
  let next = 0;
  let delivered = 0;
  let bytes = 0;
  let failed = 0;
  await Promise.all(
    senders.map(async (sender, k) => {
      for (let i = next++; i < messages.length; i = next++) {
        const message = messages[i]!;
        const error = await sender.send(accounts[k]!, message);
        if (error === undefined) {
          delivered++;
          bytes += message.raw.length;
          const t = tally.get(accounts[k]!)!;
          t.delivered++;
          t.bytes += message.raw.length;
        } else {
          failed++;
          errors.add(`${side}: ${error}`);
        }
      }
    }),
  );
  return { delivered, bytes, failed };
}

/** One side of the section: ximssd on an engine, or Dovecot, with its senders and tally. */
interface SmtpSide {
  side: Side;
  label: string;
  senders: Sender[];
  tally: Tally;
  /** CPU seconds so far: the server's own process(es), and PostgreSQL's (ximssd on PostgreSQL only). */
  cpu(): { main: number; postgres: number };
  verify(): Promise<SmtpVerification>;
  /** The log tail to quote when the first message is refused (Dovecot). */
  logTail?: () => string;
}

export async function smtpBench(options: SmtpOptions): Promise<SmtpResult> {
  const { log } = options;
  const errors = new ErrorLog();
  const k = options.senders;
  const engines = options.engines.filter((e) => e !== 'postgres' || options.postgres !== undefined);
  const set = (name: string): string[] => Array.from({ length: k }, (_, i) => `smtp-${name}-${String(i + 1).padStart(2, '0')}@${DOMAIN}`);
  const sets = [set('w'), ...Array.from({ length: options.runs }, (_, r) => set(String(r + 1)))];
  const all = sets.flat();
  const result: SmtpResult = {
    dovecot: { available: false, reason: 'not checked' },
    engines,
    senders: k,
    accounts: sets,
    unavailable: {},
    extensions: {},
    runs: { sqlite: [], postgres: [], dovecot: [] },
    verify: {},
    errors: errors.texts,
  };
  const availability = await ensureDovecot(log);
  result.dovecot = availability;
  if (availability.available && !existsSync('/usr/lib/dovecot/lmtp')) {
    result.dovecot = { available: false, reason: "Dovecot's LMTP server (/usr/lib/dovecot/lmtp) is missing: apt-get install dovecot-lmtpd" };
  }
  if (!result.dovecot.available) log(`Dovecot side skipped: ${result.dovecot.reason}`);

  const corpus = new MailCorpus('smtp');
  const slice = (from: number, count: number): CorpusMessage[] => Array.from({ length: count }, (_, i) => corpus.message(from + i));
  const servers: Ximssd[] = [];
  let dovecot: Dovecot | undefined;
  const sides: SmtpSide[] = [];
  const allSenders = (): Sender[] => sides.flatMap((s) => s.senders);
  try {
    // ---- Start the servers and open the senders: ximssd on each engine, then Dovecot
    for (const engine of engines) {
      const label = ENGINE_LABEL[engine];
      try {
        const store = engine === 'postgres' ? await options.postgres!.createDatabase('smtp') : undefined;
        // Dovecot's LMTP is final delivery without SPF/DKIM/DMARC checks: so is ximssd here (the
        // checks wait on DNS, which this machine does not have; see README "Mail authentication").
        const x = await startXimssd({ smtp: true, accounts: all, store, cpuProfileDir: options.cpuProfileDir, config: { inbound: { authenticationChecks: false } } });
        servers.push(x);
        const senders: Sender[] = [];
        for (let i = 0; i < k; i++) senders.push(await Sender.open(x.ports.smtp!, false));
        const postgres = engine === 'postgres' ? options.postgres : undefined;
        const tally = newTally(sets);
        sides.push({
          side: engine,
          label,
          senders,
          tally,
          cpu: () => ({ main: cpuSeconds(x.pid), postgres: postgres ? postgres.cpuSeconds() : 0 }),
          verify: () => verifyXimssd(x, tally),
        });
        log(`${label}: SMTP on 127.0.0.1:${x.ports.smtp} (pid ${x.pid}${store ? `, store ${store}` : ''})`);
      } catch (err) {
        result.unavailable[engine] = (err as Error).message;
        errors.add(result.unavailable[engine]!);
        log(`${label} side not measured: ${result.unavailable[engine]}`);
      }
    }
    if (result.dovecot.available) {
      try {
        const d = await startDovecot({ users: all.map((name) => ({ name, password: PASSWORD })), lmtp: true });
        dovecot = d;
        const senders: Sender[] = [];
        for (let i = 0; i < k; i++) senders.push(await Sender.open(d.lmtpPort!, true));
        const tally = newTally(sets);
        sides.push({
          side: 'dovecot',
          label: 'Dovecot',
          senders,
          tally,
          cpu: () => ({ main: d.cpuSeconds(), postgres: 0 }),
          verify: () => verifyDovecot(d, tally),
          logTail: () => d.logTail(8),
        });
        log(`Dovecot ${d.version}: LMTP on 127.0.0.1:${d.lmtpPort} (pid ${d.pid}, mail_fsync default, Maildir)`);
      } catch (err) {
        result.unavailable.dovecot = (err as Error).message;
        errors.add(result.unavailable.dovecot);
        log(`Dovecot side not measured: ${result.unavailable.dovecot}`);
      }
    }
    const on = (s: SmtpSide): boolean => result.unavailable[s.side] === undefined;
    log(
      `\nsmtp: ${k} sender connections per server, each to its own account, messages back to back on each; ` +
        `${fmt(options.warmup)} warm-up messages, then ${options.runs} run(s) × ${fmt(options.count)} messages, on each side ` +
        `(${sides.map((s) => s.label).join(', ')}, in this order in each run); ` +
        `a fresh set of ${k} accounts for the warm-up and for each run (${sets[0]![0]} … ${sets[sets.length - 1]![k - 1]})`,
    );

    // ---- Probe (message 0 on sender 0) and warm-up, untimed
    const probe = corpus.message(0);
    const first = sets[0]![0]!;
    const advertises = (list: string[] | undefined): string =>
      list ? ['PIPELINING', '8BITMIME', 'SIZE'].map((e) => `${e} ${list.some((l) => l.toUpperCase().startsWith(e)) ? 'yes' : 'no'}`).join(', ') : '?';
    for (const s of sides) {
      if (!on(s)) continue;
      const error = await s.senders[0]!.send(first, probe);
      if (error !== undefined) {
        const tail = s.logTail ? `\n${s.logTail()}` : '';
        result.unavailable[s.side] = `${s.label} ${s.side === 'dovecot' ? 'LMTP' : 'SMTP'}: ${error}${tail}`;
        log(`${s.label} side not measured: the first message was refused: ${error}${tail}`);
        continue;
      }
      const t = s.tally.get(first)!;
      t.delivered++;
      t.bytes += probe.raw.length;
      result.extensions[s.side] = s.senders[0]!.extensions;
      log(`${s.label} ${s.side === 'dovecot' ? 'LHLO' : 'EHLO'}: ${advertises(result.extensions[s.side])}`);
    }
    const warm = slice(1, Math.max(0, options.warmup - 1));
    for (const s of sides) if (on(s)) await deliver(s.senders, sets[0]!, warm, s.tally, errors, s.label);

    // ---- Timed runs: the same messages on every side, in turn
    const timed = async (s: SmtpSide, accounts: string[], messages: CorpusMessage[]): Promise<SmtpRun> => {
      const c0 = s.cpu();
      const done = meter(() => {
        const c = s.cpu();
        return c.main + c.postgres;
      });
      const r = await deliver(s.senders, accounts, messages, s.tally, errors, s.label);
      const m = done();
      const c1 = s.cpu();
      const split = s.side === 'postgres' && r.delivered ? { ximssd: (c1.main - c0.main) / r.delivered, postgres: (c1.postgres - c0.postgres) / r.delivered } : undefined;
      return {
        messages: messages.length,
        delivered: r.delivered,
        bytes: r.bytes,
        seconds: m.seconds,
        rate: r.delivered / m.seconds,
        cpuPerMessage: r.delivered ? m.server / r.delivered : undefined,
        ...(split ? { cpuSplit: split } : {}),
        serverCpu: m.server / m.seconds,
        clientCpu: m.client / m.seconds,
        otherCpu: m.other,
        errors: r.failed,
      };
    };
    const line = (tag: string, name: string, r: SmtpRun, extra = ''): void =>
      log(
        `${tag} ${name.padEnd(22)} ${fmt(r.rate).padStart(7)} msg/s  (${fmt(r.delivered)} of ${fmt(r.messages)} in ${fmt(r.seconds, 2)} s, ` +
          `${fmt(r.bytes / r.seconds / 1e6, 1)} MB/s; server CPU ${Math.round(r.serverCpu * 100)}%, ` +
          `${r.cpuPerMessage === undefined ? '?' : fmt(r.cpuPerMessage * 1e6)} µs/msg` +
          (r.cpuSplit ? ` = ximssd ${fmt(r.cpuSplit.ximssd * 1e6)} + PostgreSQL ${fmt(r.cpuSplit.postgres * 1e6)}` : '') +
          `; senders' CPU ${Math.round(r.clientCpu * 100)}%, other CPU ${Math.round(r.otherCpu * 100)}%, errors ${r.errors})${extra}`,
      );
    for (let run = 1; run <= options.runs; run++) {
      const tag = `[smtp ${run}/${options.runs}]`;
      const messages = slice(Math.max(1, options.warmup) + (run - 1) * options.count, options.count);
      const these: [SmtpSide, SmtpRun][] = [];
      for (const s of sides) {
        if (!on(s)) continue;
        const r = await timed(s, sets[run]!, messages);
        result.runs[s.side].push(r);
        let extra = '';
        if (s.side === 'dovecot' && these.length) extra = `; ratio to Dovecot: ${these.map(([x, xr]) => `${x.label} ${fmt(xr.rate / r.rate, 2)}`).join(', ')}`;
        these.push([s, r]);
        line(tag, s.side === 'dovecot' ? 'Dovecot LMTP' : `${s.label} SMTP`, r, extra);
      }
    }
    const runErrors = Object.values(result.runs).some((runs) => runs.some((r) => r.errors > 0));
    if (runErrors) for (const e of errors.texts) log(`  error seen: ${e}`);

    // ---- Did it all arrive?
    for (const s of allSenders()) s.close();
    for (const s of sides) {
      if (!on(s)) continue;
      const v = await s.verify();
      result.verify[s.side] = v;
      log(`  check: ${s.label}: ${v.text}`);
    }
  } finally {
    for (const s of allSenders()) s.close();
    for (const x of servers) await x.stop();
    await dovecot?.stop();
  }
  return result;
}

function verdict(expected: number, found: number, expectedBytes: number, foundBytes: number | undefined, wrong: string[]): SmtpVerification {
  const bytesOk = foundBytes === undefined || (foundBytes >= expectedBytes && foundBytes <= expectedBytes + expected * TRACE_ALLOWANCE);
  const ok = wrong.length === 0 && found === expected && bytesOk;
  let text = `the INBOXes hold ${fmt(found)} messages, ${fmt(expected)} were accepted`;
  if (foundBytes !== undefined) text += `; ${fmt(foundBytes)} bytes stored for ${fmt(expectedBytes)} sent`;
  text += ok ? ' (ok)' : ` — MISMATCH${wrong.length ? `: ${wrong.slice(0, 4).join('; ')}` : ''}${bytesOk ? '' : ' (sizes out of range)'}`;
  return { ok, expected, found, expectedBytes, ...(foundBytes === undefined ? {} : { foundBytes }), text };
}

/** ximssd: `mailboxList filter="INBOX"` of each account (MESSAGES and SIZE). */
async function verifyXimssd(ximssd: Ximssd, tally: Tally): Promise<SmtpVerification> {
  let found = 0;
  let foundBytes = 0;
  const wrong: string[] = [];
  for (const [address, sent] of tally) {
    const client = await XimssClient.connect(ximssd.ports.ximss, address, PASSWORD);
    try {
      const reply = await client.call((id) => `<mailboxList id="${id}" filter="INBOX"/>`);
      const inbox = reply.data.find((d) => attr(d, 'mailbox') === 'INBOX');
      const messages = Number(inbox ? attr(inbox, 'MESSAGES') : NaN);
      const size = Number(inbox ? attr(inbox, 'SIZE') : NaN);
      if (!Number.isFinite(messages)) wrong.push(`${address}: no INBOX count in ${reply.data[0] ?? '(nothing)'}`);
      else {
        found += messages;
        if (messages !== sent.delivered) wrong.push(`${address}: ${messages} instead of ${sent.delivered}`);
      }
      if (Number.isFinite(size)) foundBytes += size;
      else foundBytes = NaN;
    } finally {
      await client.close();
    }
  }
  const expected = [...tally.values()].reduce((sum, t) => sum + t.delivered, 0);
  const expectedBytes = [...tally.values()].reduce((sum, t) => sum + t.bytes, 0);
  return verdict(expected, found, expectedBytes, Number.isNaN(foundBytes) ? undefined : foundBytes, wrong);
}

/** Dovecot: IMAP `STATUS INBOX (MESSAGES X-SIZE)` of each user (MESSAGES alone if X-SIZE is refused). */
async function verifyDovecot(dovecot: Dovecot, tally: Tally): Promise<SmtpVerification> {
  let found = 0;
  let foundBytes: number | undefined = 0;
  const wrong: string[] = [];
  for (const [address, sent] of tally) {
    const client = await ImapClient.connect(dovecot.port);
    try {
      await client.login(address, PASSWORD);
      let status = await client.command(['STATUS INBOX (MESSAGES X-SIZE)'], true);
      if (status.status !== 'OK') {
        foundBytes = undefined;
        status = await client.command(['STATUS INBOX (MESSAGES)']);
      }
      const line = status.untagged.find((u) => u.startsWith('STATUS ')) ?? '';
      const messages = Number(line.match(/\bMESSAGES (\d+)/)?.[1] ?? NaN);
      const size = Number(line.match(/\bX-SIZE (\d+)/)?.[1] ?? NaN);
      if (!Number.isFinite(messages)) wrong.push(`${address}: no count in "${line}"`);
      else {
        found += messages;
        if (messages !== sent.delivered) wrong.push(`${address}: ${messages} instead of ${sent.delivered}`);
      }
      if (foundBytes !== undefined) foundBytes = Number.isFinite(size) ? foundBytes + size : undefined;
    } finally {
      await client.logout().catch(() => undefined);
    }
  }
  const expected = [...tally.values()].reduce((sum, t) => sum + t.delivered, 0);
  const expectedBytes = [...tally.values()].reduce((sum, t) => sum + t.bytes, 0);
  return verdict(expected, found, expectedBytes, foundBytes, wrong);
}
