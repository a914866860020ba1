import type { Command } from 'commander';
import type { Config } from '../config.js';
import { StoreLockedError } from '../store/open.js';
import { configFrom, dataOptions, port, type CommonOptions } from './common.js';

interface ServeOptions extends CommonOptions {
  host?: string;
  ximss?: number;
  http?: number;
  smtp?: number;
  xmpp?: number;
  relay?: string;
  logLevel?: string;
}

export function registerServe(program: Command): void {
  dataOptions(program.command('serve').description('run the server'))
    .option('--host <addr>', 'address to listen on (default 0.0.0.0)')
    .option('--ximss <port>', 'XIMSS TCP port (default 11024)', port)
    .option('--http <port>', 'HTTP port (default 8100)', port)
    .option('--smtp <port>', 'SMTP port (default 2525; 0 turns SMTP off)', port)
    .option('--xmpp <port>', 'XMPP port (default 5222)', port)
    .option('--relay <host:port>', "send mail for other domains through this SMTP relay (default: to each domain's MX)")
    .option('--log-level <level>', 'trace, debug, info (default), warn, error, fatal or silent')
    .action(async (options: ServeOptions) => {
      const ports: Partial<Config['ports']> = {};
      if (options.ximss !== undefined) ports.ximss = options.ximss;
      if (options.http !== undefined) ports.http = options.http;
      if (options.smtp !== undefined) ports.smtp = options.smtp;
      if (options.xmpp !== undefined) ports.xmpp = options.xmpp;
      const config = configFrom(options, {
        ...(options.host ? { host: options.host } : {}),
        ...(options.relay ? { outbound: { relay: options.relay } } : {}),
        ...(options.logLevel ? { log: { level: options.logLevel as Config['log']['level'] } } : {}),
        ports,
      });
      // Loaded here only: the listeners, TLS and the XML engine are not needed by the store commands.
      const { startServer } = await import('../server.js');
      let server;
      try {
        server = await startServer(config);
      } catch (err) {
        if (err instanceof StoreLockedError) {
          console.error(`ximssd: ${err.message}`);
          process.exit(1);
        }
        throw err;
      }
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        console.log(`${signal}: shutting down`);
        server.close().then(
          () => process.exit(0),
          (err: unknown) => {
            console.error('shutdown failed:', err);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
