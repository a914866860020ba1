/**
 * The two SIP servers of the `sip` and `media` bench areas, started the same way for both:
 * Kamailio (test/fixtures/kamailio.ts: a stateful proxy + in-memory registrar, no auth) and
 * ximssd (`node dist/main.js serve … --sip PORT`, on SQLite in a temporary data directory,
 * the benchmark account `bench@bench.test` created first with `ximssd account add`, and the
 * bench's server hook loaded, as bench/lib/ximssd.ts does for the other areas), and the
 * registration of the called party (SIPp, bench/sip/register.xml, with Digest when
 * challenged). Everything is on 127.0.0.1 and stopped by its pid.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKamailio, startRtpengine } from '../../test/fixtures/kamailio.js';
import { runSipp, type SippResult } from '../../test/fixtures/sipp.js';
import { freePort, runCommand, spawnChild, type Child } from './proc.js';
import { DOMAIN, MAIN, PASSWORD, ROOT, USER } from './ximssd.js';

export const SCENARIOS = join(ROOT, 'bench', 'sip');
/** The called party's user part: it registers as USER (bench@bench.test). */
export const CALLEE = USER.split('@')[0]!;

/** A SIP server under measurement. */
export interface SipServer {
  readonly name: 'Kamailio' | 'Kamailio + rtpengine' | 'ximssd';
  /** The process whose CPU is measured (with its descendants): the server, or the media relay. */
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startKamailioServer(options: { children: number; rtpengineSocket?: string }): Promise<SipServer> {
  const k = await startKamailio({ domain: DOMAIN, children: options.children, ...(options.rtpengineSocket ? { rtpengineSocket: options.rtpengineSocket } : {}) });
  return { name: 'Kamailio', pid: k.pid, port: k.port, stop: () => k.stop() };
}

/** Kamailio anchoring the media in rtpengine (user space): a media relay to test the media area's harness with; the CPU measured is rtpengine's. */
export async function startKamailioRtpengineServer(options: { children: number }): Promise<SipServer> {
  const relay = await startRtpengine();
  try {
    const k = await startKamailio({ domain: DOMAIN, children: options.children, rtpengineSocket: relay.controlSocket });
    return {
      name: 'Kamailio + rtpengine',
      pid: relay.pid,
      port: k.port,
      async stop() {
        await k.stop();
        await relay.stop();
      },
    };
  } catch (err) {
    await relay.stop();
    throw err;
  }
}

/**
 * ximssd with its SIP listener on a free UDP port. Rejects with ximssd's own words when it
 * does not start (a build without `--sip` says "unknown option '--sip'").
 */
export async function startXimssdServer(options: { relayMedia?: boolean; nodeArgs?: string[]; main?: string } = {}): Promise<SipServer> {
  const main = options.main ?? MAIN;
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-sip-bench-'));
  const configFile = join(dir, 'config.json');
  // The media area anchors every call (two plain RTP ends would otherwise stream to each other), all of them for one account.
  const media = options.relayMedia ? { media: { relay: 'always', sessions: 2400, sessionsPerAccount: 2400 } } : {};
  writeFileSync(configFile, JSON.stringify({ dataDir: join(dir, 'data'), host: '127.0.0.1', defaultDomain: DOMAIN, ...media }));
  let child: Child | undefined;
  try {
    await runCommand(process.execPath, [main, 'init', '--config', configFile]);
    await runCommand(process.execPath, [main, 'account', 'add', USER, '--password', PASSWORD, '--config', configFile]);
    const port = await freePort();
    const hook = join(ROOT, 'bench', 'server-hook.cjs');
    const args = [...(options.nodeArgs ?? []), '--require', hook, main, 'serve', '--config', configFile, '--ximss', '0', '--http', '0', '--smtp', '0', '--xmpp', '0', '--xmpp-s2s', '0', '--sip', String(port)];
    child = spawnChild(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const started = await child.waitFor(/^\{.*"event":"server\.started".*\}$/m).catch((err: Error) => {
      const said = err.message.split('\n').find((l) => /error|unknown|invalid/i.test(l));
      throw new Error(`ximssd did not start with --sip ${port}: ${said?.trim() ?? err.message.split('\n')[0]}`);
    });
    const ports = (JSON.parse(started[0]) as { ports: Record<string, number | undefined> }).ports;
    const running = child;
    return {
      name: 'ximssd',
      pid: running.pid,
      port: ports.sip ?? port,
      async stop() {
        await running.stop();
        if (running.process.connected) running.process.disconnect();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await child?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Why a SIPp step did not succeed, in a line: the server's answers, or SIPp's failure causes. */
export function sippFailure(server: string, what: string, result: SippResult): string {
  // SIPp 3.6 answers the first Digest challenge of a 401/407 and knows only MD5: a server that
  // offers SHA-256 first (RFC 8760's order; ximssd offers MD5 alone by default) stops it here.
  const digest = result.output.split('\n').find((l) => l.includes('createAuthHeader'));
  if (digest) return `SIPp cannot answer ${server}'s Digest challenge to ${what}: ${digest.replace(/^.*createAuthHeader: /, '').trim()} (SIPp answers the first challenge and knows only MD5: the server must offer MD5 first)`;
  if (result.unexpected.length) return `${server} answered ${what} with ${result.unexpected.slice(0, 3).join(', ')}`;
  const failedBy = result.stats?.failedBy ?? {};
  const causes = Object.entries(failedBy).map(([cause, n]) => `${cause.replace(/^Failed/, '')} ${n}`);
  if (failedBy.FailedTimeoutOnRecv || failedBy.FailedMaxUDPRetrans) return `${server} did not answer ${what} (SIPp: ${causes.join(', ')})`;
  if (causes.length) return `${what} failed (SIPp: ${causes.join(', ')})`;
  const line = result.output.split('\n').find((l) => /error|unable|cannot/i.test(l));
  return `${what} failed: SIPp exited with ${result.exitCode}${line ? ` (${line.trim()})` : ''}`;
}

/**
 * Registers the called party (the SIPp server on `contactPort`) as USER, answering a Digest
 * challenge with the bench's password. Resolves with undefined, or why it failed.
 */
export async function registerCallee(server: SipServer, contactPort: number): Promise<string | undefined> {
  const result = await runSipp({
    scenario: join(SCENARIOS, 'register.xml'),
    remote: `127.0.0.1:${server.port}`,
    keys: { domain: DOMAIN, user: CALLEE, contact_port: contactPort },
    // The Digest uri is the Request-URI (RFC 7616 3.4.6, which ximssd checks); SIPp's default is the server's address, and it writes the sip: itself.
    args: ['-m', '1', '-au', CALLEE, '-ap', PASSWORD, '-auth_uri', DOMAIN, '-recv_timeout', '5000'],
    timeoutMs: 20_000,
  });
  return result.stats?.successful === 1 ? undefined : sippFailure(server.name, 'REGISTER', result);
}
