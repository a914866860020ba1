/**
 * Starting and stopping for real (`node dist/main.js serve`, and `npm start`): a port in use
 * stops the start with one line and exit 1, before any password is printed; the modes of
 * what the server creates (0700 directories, 0600 files), also when an earlier version left
 * them wider; SIGTERM/SIGINT with clients connected (XIMSS over TCP, an HTTP long poll, SMTP
 * in the middle of DATA) stops the process with exit code 0, within shutdownSeconds.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { defaultConfig, mergeConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import { SmtpWire } from './fixtures/smtp-wire.js';
import { capturingLogger, freePort, httpRequest, loginWithUrlId, postUpload, XimssClient, type HttpResult, type LogRecord } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');
const DOMAIN = 'startup.test';

const temporary: string[] = [];
const children = new Set<ChildProcess>();

before(() => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: build first (npm run build)`);
});
after(() => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory holding a config file; the data directory inside is not created yet. */
function workspace(settings: Record<string, unknown> = {}): { root: string; data: string; config: string } {
  const root = mkdtempSync(join(tmpdir(), 'ximssd-startup-'));
  temporary.push(root);
  const config = join(root, 'config.json');
  writeFileSync(config, JSON.stringify({ defaultDomain: DOMAIN, host: '127.0.0.1', ports: { xmpp: 0, xmppS2s: 0, sip: 0 }, limits: { loginFailureDelayMs: 20 }, ...settings }));
  return { root, data: join(root, 'data'), config };
}

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The structured log lines (stdout, JSON). */
  records: () => LogRecord[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function launch(command: string, args: string[], cwd = ROOT): Running {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const records = (): LogRecord[] =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogRecord);
  return { child, stdout: () => stdout, stderr: () => stderr, records, exited };
}

/** Waits until `ready()` holds, failing when the process exits first or after 20 s. */
async function until(run: Running, what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!ready()) {
    if (run.child.exitCode !== null || run.child.signalCode !== null) {
      throw new Error(`exited before ${what}:\n${run.stdout()}\n${run.stderr()}`);
    }
    if (Date.now() > deadline) throw new Error(`no ${what} after 20 s:\n${run.stdout()}\n${run.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface Served extends Running {
  ports: { ximss: number; http: number; smtp?: number };
}

/** `ximssd serve` on the workspace, waiting until it listens. */
async function serve(ws: { data: string; config: string }, ...extra: string[]): Promise<Served> {
  const run = launch(process.execPath, [MAIN, 'serve', '--data', ws.data, '--config', ws.config, ...extra]);
  await until(run, 'server.started', () => run.records().some((r) => r.event === 'server.started'));
  const started = run.records().find((r) => r.event === 'server.started')!;
  return { ...run, ports: started.ports as Served['ports'] };
}

function postmasterPassword(run: Running): string | undefined {
  return /postmaster password: (\S+)/.exec(run.stderr())?.[1];
}

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(3, '0');
}

/** Resolves true when something accepts connections on the port, false when refused. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Resolves once the socket is closed (by the server, or by its process ending). */
function closedSocket(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
  });
}

describe('a port that cannot be bound', () => {
  test('exits 1 naming the listener, prints no password, leaves nothing listening; the next start prints it', async () => {
    const ws = workspace();
    const ximss = await freePort();
    const http = await freePort();
    // Something else holds the SMTP port (bound last: XIMSS and HTTP were bound, then closed).
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const busy = (holder.address() as net.AddressInfo).port;
    try {
      const run = launch(process.execPath, [MAIN, 'serve', '--data', ws.data, '--config', ws.config, '--ximss', String(ximss), '--http', String(http), '--smtp', String(busy)]);
      const { code } = await run.exited;
      assert.equal(code, 1, run.stderr());
      assert.equal(run.stderr(), `ximssd: cannot listen for SMTP on 127.0.0.1:${busy}: the port is in use\n`);
      assert.doesNotMatch(run.stdout() + run.stderr(), /postmaster password/);
      assert.doesNotMatch(run.stdout() + run.stderr(), /^\s+at /m, 'no stack trace');
      const events = run.records().map((r) => r.event);
      assert.ok(events.includes('server.start_failed'), events.join());
      for (const event of ['server.started', 'domain.created', 'account.created']) assert.ok(!events.includes(event), `${event} logged`);
      assert.equal(await accepts(ximss), false, 'the XIMSS port was released');
      assert.equal(await accepts(http), false, 'the HTTP port was released');
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }

    // The same data directory, free ports: the password is printed now, and it works.
    const second = await serve(ws, '--ximss', '0', '--http', '0', '--smtp', '0');
    const password = postmasterPassword(second);
    assert.ok(password, second.stderr());
    const client = await XimssClient.connect(second.ports.ximss);
    await client.login(`postmaster@${DOMAIN}`, password);
    client.close();
    second.child.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });

  test('a store that cannot be reached: one line, exit 1', async () => {
    const ws = workspace();
    const closed = await freePort();
    const run = launch(process.execPath, [MAIN, 'serve', '--data', ws.data, '--config', ws.config, '--store', `postgres://ximssd:secret@127.0.0.1:${closed}/ximssd`, '--ximss', '0', '--http', '0', '--smtp', '0']);
    const { code } = await run.exited;
    assert.equal(code, 1, run.stderr());
    const lines = run.stderr().trimEnd().split('\n');
    assert.equal(lines.length, 1, run.stderr());
    assert.match(lines[0]!, new RegExp(`^ximssd: cannot open the store in database postgres://ximssd@127\\.0\\.0\\.1:${closed}/ximssd: .*ECONNREFUSED`));
    assert.doesNotMatch(run.stdout() + run.stderr(), /secret/, 'the password is not shown');
    assert.doesNotMatch(run.stdout() + run.stderr(), /postmaster password/);
  });

  test('a data directory served by another process: one line, exit 1', async () => {
    const ws = workspace();
    const first = await serve(ws, '--ximss', '0', '--http', '0', '--smtp', '0');
    const second = launch(process.execPath, [MAIN, 'serve', '--data', ws.data, '--config', ws.config, '--ximss', '0', '--http', '0', '--smtp', '0']);
    assert.equal((await second.exited).code, 1);
    assert.match(second.stderr(), new RegExp(`^ximssd: the data directory .* is in use by another ximssd server \\(pid ${first.child.pid}\\).*\\n$`));
    first.child.kill('SIGTERM');
    assert.equal((await first.exited).code, 0);
  });
});

describe('file modes', () => {
  /** Every directory under `dir` 0700, every file 0600. */
  function assertPrivate(dir: string): void {
    assert.equal(mode(dir), '700', dir);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) assertPrivate(path);
      else assert.equal(mode(path), '600', path);
    }
  }

  test('ximssd serve creates its directories 0700 and its files 0600 (store, -wal, -shm, TLS key and certificate, pid file)', async () => {
    const ws = workspace();
    const run = await serve(ws, '--ximss', '0', '--http', '0', '--smtp', '0');
    for (const name of ['ximssd.sqlite', 'ximssd.sqlite-wal', 'ximssd.sqlite-shm', 'ximssd.pid', 'tls/key.pem', 'tls/cert.pem']) {
      assert.equal(mode(join(ws.data, name)), '600', name);
    }
    for (const name of ['', 'tls', 'spool', 'spool/uploads']) assert.equal(mode(join(ws.data, name)), '700', name || 'the data directory');
    assertPrivate(ws.data);
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0);
    assert.ok(!existsSync(join(ws.data, 'ximssd.pid')), 'the pid file is removed');

    // An installation an earlier version made readable by everyone is tightened at the next start.
    chmodSync(ws.data, 0o755);
    chmodSync(join(ws.data, 'ximssd.sqlite'), 0o644);
    chmodSync(join(ws.data, 'tls'), 0o755);
    chmodSync(join(ws.data, 'tls', 'key.pem'), 0o644);
    chmodSync(join(ws.data, 'tls', 'cert.pem'), 0o644);
    chmodSync(join(ws.data, 'spool'), 0o755);
    const again = await serve(ws, '--ximss', '0', '--http', '0', '--smtp', '0');
    assertPrivate(ws.data);
    again.child.kill('SIGTERM');
    assert.equal((await again.exited).code, 0);
  });

  test('startServer in a process with umask 022 (no command line) creates the same modes, uploads included', async () => {
    const previous = process.umask(0o022);
    const root = mkdtempSync(join(tmpdir(), 'ximssd-modes-'));
    temporary.push(root);
    const dataDir = join(root, 'nested', 'data');
    try {
      const config = mergeConfig(defaultConfig(), { dataDir, host: '127.0.0.1', defaultDomain: DOMAIN, ports: { ximss: 0, http: 0, smtp: 0, xmpp: 0, xmppS2s: 0, sip: 0 } }, 'test');
      const { log } = capturingLogger('warn');
      const server = await startServer(config, { log, announcePassword: () => {} });
      try {
        await server.services.accounts.create({ address: `up@${DOMAIN}`, password: 'secret', createDomain: false });
        const session = await loginWithUrlId(server.ports.ximss, `up@${DOMAIN}`, 'secret');
        await postUpload(server, session, 'u1', Buffer.from('uploaded file\n'), 'note.txt', 'text/plain');
        const uploads = join(dataDir, 'spool', 'uploads');
        assert.ok(readdirSync(uploads, { recursive: true }).length > 0, 'the upload is spooled');
        assertPrivate(dataDir);
        session.client.close();
      } finally {
        await server.close();
      }
    } finally {
      process.umask(previous);
    }
  });
});

describe('stopping', () => {
  /** The clients held during a stop: a logged-in XIMSS session, an HTTP long poll, SMTP inside DATA. */
  async function connectClients(server: Served, password: string): Promise<{ ximss: XimssClient; poll: Promise<HttpResult | Error>; pollSocket: Promise<void>; smtp: SmtpWire }> {
    const ximss = await XimssClient.connect(server.ports.ximss);
    await ximss.login(`postmaster@${DOMAIN}`, password);

    const login = await httpRequest(server.ports.http, `/XIMSSLogin/?userName=${encodeURIComponent(`postmaster@${DOMAIN}`)}&password=${encodeURIComponent(password)}`);
    assert.equal(login.status, 200, login.text);
    const urlID = /urlID="([^"]+)"/.exec(login.text)?.[1];
    assert.ok(urlID, login.text);
    let pollSocketClosed!: () => void;
    const pollSocket = new Promise<void>((resolve) => (pollSocketClosed = resolve));
    const poll = new Promise<HttpResult | Error>((resolve) => {
      const socket = net.connect({ port: server.ports.http, host: '127.0.0.1' }, () => {
        socket.write(`GET /Session/${urlID}/get?ackSeq=0&maxWait=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      });
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('error', (err) => resolve(err));
      socket.on('close', () => {
        pollSocketClosed();
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), headers: {}, text });
      });
    });

    const smtp = await SmtpWire.connect(server.ports.smtp!);
    assert.equal((await smtp.command('EHLO client.example')).code, 250);
    assert.equal((await smtp.command('MAIL FROM:<someone@elsewhere.example>')).code, 250);
    assert.equal((await smtp.command(`RCPT TO:<postmaster@${DOMAIN}>`)).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    smtp.socket.write('Subject: half a message\r\n\r\nThe first line, and no end of data');
    // The XIMSS session answers a request: the server has read everything sent before it.
    assert.equal((await ximss.request('<noop/>')).response.attrs.errorText, undefined);
    return { ximss, poll, pollSocket, smtp };
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} with clients connected: the clients are disconnected, the process exits 0`, async () => {
      const ws = workspace();
      const server = await serve(ws, '--ximss', '0', '--http', '0', '--smtp', String(await freePort()));
      const password = postmasterPassword(server)!;
      const clients = await connectClients(server, password);
      server.child.kill(signal);
      const { code, signal: killedBy } = await server.exited;
      assert.equal(killedBy, null, 'not killed by the signal');
      assert.equal(code, 0, server.stderr());
      await Promise.all([closedSocket(clients.ximss.socket), clients.pollSocket, clients.smtp.waitClosed(20_000)]);
      const polled = await clients.poll;
      if (!(polled instanceof Error) && polled.status !== 0) assert.equal(polled.status, 200, polled.text);
      const records = server.records();
      const stopping = records.filter((r) => r.event === 'server.stopping');
      assert.equal(stopping.length, 1);
      assert.equal(stopping[0]!.signal, signal);
      assert.equal(stopping[0]!.shutdownSeconds, 5);
      assert.ok(records.some((r) => r.event === 'server.stopped' || r.event === 'server.stop_forced'), records.map((r) => r.event).join());
      assert.equal(await accepts(server.ports.ximss), false);
      assert.equal(await accepts(server.ports.http), false);
      assert.ok(!existsSync(join(ws.data, 'ximssd.pid')), 'the pid file is removed');
    });
  }

  test('past shutdownSeconds the connections left are dropped (server.stop_forced) and the process exits 0', async () => {
    // 0.2 s: shorter than the second a closing connection lingers for its client to read.
    const ws = workspace({ shutdownSeconds: 0.2 });
    const server = await serve(ws, '--ximss', '0', '--http', '0', '--smtp', String(await freePort()));
    const password = postmasterPassword(server)!;
    const clients = await connectClients(server, password);
    // A client that never closes its side: the server's close waits for it.
    const stubborn = net.connect({ port: server.ports.ximss, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise((resolve) => stubborn.once('connect', resolve));
    stubborn.on('data', () => {});
    stubborn.on('error', () => {});
    const ended = new Promise<void>((resolve) => {
      stubborn.once('end', resolve);
      stubborn.once('close', resolve);
    });
    server.child.kill('SIGTERM');
    const { code } = await server.exited;
    assert.equal(code, 0, server.stderr());
    await Promise.all([ended.then(() => stubborn.destroy()), closedSocket(clients.ximss.socket), clients.pollSocket, clients.smtp.waitClosed(20_000)]);
    const forced = server.records().filter((r) => r.event === 'server.stop_forced');
    assert.equal(forced.length, 1, server.stdout());
    assert.equal(forced[0]!.shutdownSeconds, 0.2);
    assert.equal(forced[0]!.level, 'warn');
    assert.ok(!existsSync(join(ws.data, 'ximssd.pid')), 'the pid file is removed');
  });

  test('npm start passes SIGTERM to the server, which stops cleanly', async () => {
    const ws = workspace();
    const run = launch('npm', ['start', '--silent', '--', '--data', ws.data, '--config', ws.config, '--ximss', '0', '--http', '0', '--smtp', '0']);
    await until(run, 'server.started', () => run.records().some((r) => r.event === 'server.started'));
    const ports = run.records().find((r) => r.event === 'server.started')!.ports as { ximss: number; http: number };
    const client = await XimssClient.connect(ports.ximss);
    await client.login(`postmaster@${DOMAIN}`, postmasterPassword(run)!);
    // The signal goes to npm, as a terminal's Ctrl-C or a process manager would send it.
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    await closedSocket(client.socket);
    const events = run.records().map((r) => r.event);
    assert.ok(events.includes('server.stopping'), events.join());
    assert.ok(events.includes('server.stopped'), `the server stopped cleanly: ${events.join()}`);
    assert.equal(code, 0, run.stderr());
    assert.equal(await accepts(ports.ximss), false, 'the XIMSS port is released');
    assert.equal(await accepts(ports.http), false, 'the HTTP port is released');
    assert.ok(!existsSync(join(ws.data, 'ximssd.pid')), 'the pid file is removed');
  });
});
