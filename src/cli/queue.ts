import type { Command } from 'commander';
import { ServiceError } from '../services/errors.js';
import type { QueueEntry, RecipientUpdate } from '../store/queue.js';
import { adminOptions, withStore, type AdminOptions } from './common.js';

/** What a pending recipient fails with when the administrator returns its message. */
const BOUNCE_STATUS = '5.0.0';
const BOUNCE_DIAGNOSTIC = 'returned by the administrator';

function iso(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString();
}

function queueId(value: string): number {
  const id = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(id)) throw new ServiceError(`not a queue id: ${value}`);
  return id;
}

function unknownMessage(id: number): ServiceError {
  return new ServiceError(`no message ${id} in the queue (\`ximssd queue\` lists them)`);
}

function leaseText(entry: QueueEntry, now: number): string {
  if (!entry.lease) return '';
  return entry.lease.until > now ? `being tried by node ${entry.lease.owner} (until ${iso(entry.lease.until)})` : `last tried by node ${entry.lease.owner} (lease expired)`;
}

/** The header block of a message, its lines as they are (folded lines kept). */
function headerLines(raw: Buffer): string[] {
  const text = raw.toString('utf8');
  const end = text.search(/\r?\n\r?\n/);
  return (end < 0 ? text : text.slice(0, end)).split(/\r?\n/).filter((line) => line !== '');
}

export function registerQueueCommands(program: Command): void {
  const queue = program.command('queue').description('the outbound mail queue: list (like mailq), show, retry, delete, bounce');
  adminOptions(queue.command('list', { isDefault: true }).description('list the queued messages and their pending recipients (the default)')).action(
    async (options: AdminOptions) =>
      withStore(options, async ({ store }) => {
        const queued = await store.queue.list();
        const now = Date.now();
        for (const entry of queued) {
          const { message, recipients } = entry;
          const pending = recipients.filter((r) => r.state === 'pending');
          const lease = leaseText(entry, now);
          const claimed = lease && entry.lease!.until > now ? `\t${lease}` : '';
          console.log(`${message.id}\t${iso(message.created)}\t${message.size} bytes\t<${message.sender}>${claimed}`);
          for (const r of pending) {
            console.log(`\t<${r.address}>\t${r.attempts} attempt(s), next ${iso(r.nextAttempt)}${r.status ? `\t${r.status} ${r.diagnostic ?? ''}` : ''}`);
          }
        }
        console.log(`${queued.length} message(s) queued`);
      }),
  );
  adminOptions(queue.command('show <id>').description('show a queued message: envelope, recipients and their attempts, header fields')).action(
    async (id: string, options: AdminOptions) =>
      withStore(options, async ({ store }) => {
        const n = queueId(id);
        const entry = await store.queue.get(n);
        const raw = entry && (await store.queue.readRaw(n));
        if (!entry || !raw) throw unknownMessage(n);
        const { message } = entry;
        const now = Date.now();
        console.log(`message ${message.id}`);
        console.log(`sender\t<${message.sender}>`);
        console.log(`size\t${message.size} bytes`);
        console.log(`created\t${iso(message.created)}`);
        console.log(`expires\t${iso(message.expires)}`);
        console.log(`source\t${message.source}`);
        if (message.envid !== null) console.log(`envid\t${message.envid}`);
        if (message.ret !== null) console.log(`ret\t${message.ret}`);
        console.log(`lease\t${leaseText(entry, now) || '(none)'}`);
        console.log('recipients:');
        for (const r of entry.recipients) {
          console.log(`  <${r.address}>\t${r.state}\t${r.attempts} attempt(s)\tlast ${iso(r.lastAttempt)}\tnext ${r.state === 'pending' ? iso(r.nextAttempt) : '-'}`);
          if (r.status || r.diagnostic) console.log(`    last status ${r.status ?? '-'}${r.remoteMta ? ` from ${r.remoteMta}` : ''}: ${r.diagnostic ?? ''}`);
          if (r.notify !== null || r.orcpt !== null) console.log(`    notify ${r.notify ?? '(default)'}${r.orcpt ? `, orcpt ${r.orcpt}` : ''}`);
        }
        console.log('header:');
        for (const line of headerLines(raw)) console.log(`  ${line}`);
      }),
  );
  adminOptions(queue.command('retry [id]').description('make the pending recipients of message ID (or of every message) due now')).action(
    async (id: string | undefined, options: AdminOptions) =>
      withStore(options, async ({ store, bus, log }) => {
        const n = id === undefined ? undefined : queueId(id);
        if (n !== undefined && !(await store.queue.get(n))) throw unknownMessage(n);
        const changed = await store.queue.retry(Date.now(), n);
        log.info({ event: 'queue.retried', ...(n !== undefined ? { queueId: n } : {}), messages: changed.messages, recipients: changed.recipients }, 'queue retry');
        // A running server's queue looks for due work at once.
        bus.publish('queueChanged', {});
        console.log(`${changed.recipients} recipient(s) of ${changed.messages} message(s) due now`);
      }),
  );
  adminOptions(queue.command('delete <id>').description('remove a queued message without a report to its sender')).action(
    async (id: string, options: AdminOptions) =>
      withStore(options, async ({ store, bus, log }) => {
        const n = queueId(id);
        const entry = await store.queue.get(n);
        if (!entry || !(await store.queue.remove(n))) throw unknownMessage(n);
        log.info(
          { event: 'queue.deleted', queueId: n, sender: entry.message.sender, recipients: entry.recipients.filter((r) => r.state === 'pending').map((r) => r.address) },
          'queued message deleted',
        );
        bus.publish('queueChanged', {});
        console.log(`message ${n} deleted`);
      }),
  );
  adminOptions(queue.command('bounce <id>').description(`fail every pending recipient of a message (${BOUNCE_STATUS}) and report it to the sender`)).action(
    async (id: string, options: AdminOptions) =>
      withStore(options, async ({ store, bus, log, config }) => {
        const n = queueId(id);
        const { reportMessage, wantsNotify } = await import('../transports/smtp/dsn.js');
        const now = Date.now();
        const bounced = await store.queue.settle(n, ({ message, recipients }, raw) => {
          const pending = recipients.filter((r) => r.state === 'pending');
          const updates: RecipientUpdate[] = pending.map((r) => ({
            address: r.address,
            state: 'failed',
            attempted: false,
            nextAttempt: r.nextAttempt,
            status: BOUNCE_STATUS,
            diagnostic: BOUNCE_DIAGNOSTIC,
            remoteMta: null,
          }));
          const reported = pending
            .filter((r) => wantsNotify(r.notify, 'FAILURE'))
            .map((r) => ({ address: r.address, orcpt: r.orcpt, action: 'failed' as const, status: BOUNCE_STATUS, diagnostic: BOUNCE_DIAGNOSTIC, remoteMta: null, lastAttempt: r.lastAttempt }));
          const reports = reported.length > 0 && message.sender !== '' ? [reportMessage(config.defaultDomain, config.outbound.lifetimeSeconds, message, raw, reported, now)] : [];
          return { updates, reports, result: { sender: message.sender, recipients: pending.map((r) => r.address), reported: reports.length > 0 } };
        });
        if (!bounced) throw unknownMessage(n);
        log.info({ event: 'queue.bounced', queueId: n, sender: bounced.sender, recipients: bounced.recipients, reported: bounced.reported }, 'queued message returned to its sender');
        bus.publish('queueChanged', {});
        console.log(`message ${n} bounced: ${bounced.recipients.length} recipient(s) failed${bounced.reported ? `; a report goes to <${bounced.sender}>` : '; no report (null sender, or NOTIFY)'}`);
      }),
  );
}
