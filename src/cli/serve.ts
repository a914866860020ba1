import type { Command } from 'commander';
import type { Config } from '../config.js';
import { createLogger, errorText } from '../log.js';
import { StoreLockedError } from '../store/open.js';
import { configFrom, dataOptions, port, type CommonOptions } from './common.js';

interface ServeOptions extends CommonOptions {
  host?: string;
  ximss?: number;
  http?: number;
  smtp?: number;
  xmpp?: number;
  xmppTls?: number;
  xmppS2s?: number;
  sip?: number;
  sipTls?: number;
  relay?: string;
  logLevel?: string;
}

export function registerServe(program: Command): void {
  dataOptions(program.command('serve').description('run the server'))
    .option('--host <addr>', 'address to listen on (default 0.0.0.0)')
    .option('--ximss <port>', 'XIMSS TCP port (default 11024; 0 = any free port)', port)
    .option('--http <port>', 'HTTP port (default 8100; 0 = any free port)', port)
    .option('--smtp <port>', 'SMTP port (default 2525; 0 turns SMTP off)', port)
    .option('--xmpp <port>', 'XMPP port (default 5222)', port)
    .option('--xmpp-tls <port>', 'direct-TLS XMPP port (default 0 = off; 5223 is usual)', port)
    .option('--xmpp-s2s <port>', 'XMPP server-to-server (federation) port (default 5269; 0 = off)', port)
    .option('--sip <port>', 'SIP port, UDP and TCP (default 5060; 0 = off)', port)
    .option('--sip-tls <port>', 'SIP over TLS port (default 0 = off; 5061 is usual)', port)
    .option('--relay <host:port>', "send mail for other domains through this SMTP relay (default: to each domain's MX)")
    .option('--log-level <level>', 'trace, debug, info (default), warn, error, fatal or silent')
    .action(async (options: ServeOptions) => {
      const ports: Partial<Config['ports']> = {};
      if (options.ximss !== undefined) ports.ximss = options.ximss;
      if (options.http !== undefined) ports.http = options.http;
      if (options.smtp !== undefined) ports.smtp = options.smtp;
      if (options.xmpp !== undefined) ports.xmpp = options.xmpp;
      if (options.xmppTls !== undefined) ports.xmppTls = options.xmppTls;
      if (options.xmppS2s !== undefined) ports.xmppS2s = options.xmppS2s;
      if (options.sip !== undefined) ports.sip = options.sip;
      if (options.sipTls !== undefined) ports.sipTls = options.sipTls;
      // The flags go through the same validation as the file (a ConfigError exits 2, see main.ts).
      const config = configFrom(options, {
        ...(options.host !== undefined ? { host: options.host } : {}),
        ...(options.relay !== undefined ? { outbound: { relay: options.relay } } : {}),
        ...(options.logLevel !== undefined ? { log: { level: options.logLevel } } : {}),
        ports,
      });
      const log = createLogger({ level: config.log.level });
      // Loaded here only: the listeners, TLS and the XML engine are not needed by the store commands.
      const { startServer, ListenError, StoreOpenError } = await import('../server.js');
      // The handlers are there before the server starts: a signal that arrives while it starts
      // (right after server.started is logged, say) stops it cleanly once it is up, instead of
      // killing the process half way.
      let pendingSignal: NodeJS.Signals | undefined;
      let stop: (signal: NodeJS.Signals) => void = (signal) => {
        pendingSignal ??= signal;
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      let server;
      try {
        server = await startServer(config, { log });
      } catch (err) {
        // One line, exit 1: a port in use, the store unreachable or served by another process.
        const known = err instanceof ListenError || err instanceof StoreLockedError || err instanceof StoreOpenError;
        log.error(
          { component: 'server', event: 'server.start_failed', error: errorText(err), ...(known ? {} : { err }) },
          'ximssd could not start',
        );
        console.error(`ximssd: ${known ? errorText(err) : `cannot start: ${errorText(err)}`}`);
        process.exit(1);
      }
      const running = server;
      let stopping = false;
      stop = (signal: NodeJS.Signals): void => {
        if (stopping) {
          // A second signal: stop now.
          running.shutdown(signal, 0).then(() => process.exit(0), () => process.exit(1));
          return;
        }
        stopping = true;
        running.shutdown(signal).then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ component: 'server', event: 'server.stop_failed', err }, 'shutdown failed');
            console.error(`ximssd: shutdown failed: ${errorText(err)}`);
            process.exit(1);
          },
        );
      };
      if (pendingSignal) stop(pendingSignal);
    });
}
