import type { Command } from 'commander';
import { dataOptions, withStore, type CommonOptions } from './common.js';

export function registerQueueCommands(program: Command): void {
  dataOptions(program.command('queue').description('list the outbound mail queue (like mailq)')).action(async (options: CommonOptions) =>
    withStore(options, async ({ store }) => {
      const queued = await store.queue.list();
      const now = Date.now();
      for (const { message, recipients, lease } of queued) {
        const pending = recipients.filter((r) => r.state === 'pending');
        const claimed = lease && lease.until > now ? `\tbeing tried by node ${lease.owner}` : '';
        console.log(`${message.id}\t${new Date(message.created).toISOString()}\t${message.size} bytes\t<${message.sender}>${claimed}`);
        for (const r of pending) {
          const next = new Date(r.nextAttempt).toISOString();
          console.log(`\t<${r.address}>\t${r.attempts} attempt(s), next ${next}${r.status ? `\t${r.status} ${r.diagnostic ?? ''}` : ''}`);
        }
      }
      console.log(`${queued.length} message(s) queued`);
    }),
  );
}
