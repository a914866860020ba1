/**
 * The fail2ban filter (contrib/fail2ban/filter.d/ximssd.conf) against log lines a real server
 * wrote: failed logins over XIMSS TCP, HTTP /XIMSSLogin/ and SMTP AUTH, each from a loopback
 * address of its own, an address blocked for abuse, and successful logins that must not
 * match. Checked with Debian's `fail2ban-regex` (installed from the package when missing and
 * the tests run as root, as test/fixtures/postgres.ts does for PostgreSQL).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/log.js';
import { XmlElement } from '../src/xml/element.js';
import { XimssClient, freePort, httpRequest, startTestServer, type TestServer } from './helpers.js';

const FILTER = fileURLToPath(new URL('../contrib/fail2ban/filter.d/ximssd.conf', import.meta.url));
const PASSWORD = 'f2b-Right-pw-81';
const WRONG = 'f2b-Wrong-pw-27';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function run(file: string, args: readonly string[], timeout = 600_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

function findFail2banRegex(): string | undefined {
  return ['/usr/bin/fail2ban-regex', '/usr/local/bin/fail2ban-regex'].find((p) => existsSync(p));
}

/** fail2ban-regex, installed from Debian's package when missing (root only); or why not. */
async function fail2banRegex(): Promise<string | { skip: string }> {
  const found = findFail2banRegex();
  if (found) return found;
  if (!isRoot) return { skip: 'fail2ban-regex is not installed and the tests do not run as root (apt-get install fail2ban)' };
  // Waits for another apt-get or dpkg of the machine to finish.
  const install = ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '--no-install-recommends', 'fail2ban'];
  try {
    try {
      await run('apt-get', install);
    } catch {
      // A fresh machine has no package lists yet.
      await run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update']);
      await run('apt-get', install);
    }
  } catch (err) {
    return { skip: `fail2ban could not be installed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` };
  }
  return findFail2banRegex() ?? { skip: 'apt-get installed fail2ban, but fail2ban-regex is still missing' };
}

/** The server's log lines as written (raw JSON text). */
const lines: string[] = [];
let server: TestServer;
let account: string;

before(async () => {
  const log = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } });
  server = await startTestServer(
    { ports: { smtp: await freePort() }, limits: { abusePerAddress: 2, abuseBlockSeconds: 60 } },
    { log },
  );
  account = await server.newAccount('f2b', { password: PASSWORD });
});

after(async () => {
  await server?.stop();
});

function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A XIMSS clear-text login over TCP from `from`: the response's name (response) and errorText if any. */
async function ximssLogin(from: string, user: string, password: string): Promise<string | undefined> {
  const client = XimssClient.fromSocket(await connectFrom(server.ports.ximss, from));
  try {
    const reply = await client.request(new XmlElement('login', { authData: user, password }));
    return reply.response.attrs.errorText;
  } finally {
    client.close();
  }
}

/** An SMTP AUTH PLAIN from `from`: the reply code. */
async function smtpAuth(from: string, user: string, password: string): Promise<number> {
  const socket = await connectFrom(server.ports.smtp!, from);
  let buffer = '';
  const reply = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        // The last line of a reply: code and a space.
        const match = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buffer);
        if (!match) return;
        socket.off('data', onData);
        const text = buffer;
        buffer = '';
        resolve(text);
      };
      const onData = (chunk: Buffer): void => {
        buffer += chunk.toString('latin1');
        check();
      };
      socket.on('data', onData);
      socket.once('error', reject);
      check();
    });
  try {
    assert.match(await reply(), /^220/);
    socket.write('EHLO client.example\r\n');
    assert.match(await reply(), /^250/);
    socket.write(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}\r\n`);
    const answer = await reply();
    socket.write('QUIT\r\n');
    return Number(answer.slice(0, 3));
  } finally {
    socket.destroy();
  }
}

test('fail2ban-regex finds the address of every failed login and abuse block, and of no successful login', async (t) => {
  // Failed logins, each protocol from an address of its own.
  assert.ok(await ximssLogin('127.0.0.2', account, WRONG), 'XIMSS: a wrong password fails');
  assert.ok(await ximssLogin('127.0.0.2', 'nobody@example.test', WRONG), 'XIMSS: an unknown account fails');
  // A user name that imitates an address field: the real address is the one taken.
  assert.ok(await ximssLogin('127.0.0.2', 'x","address":"10.9.9.9', WRONG), 'XIMSS: a forged name fails');
  const http = await httpRequest(server.ports.http, `/XIMSSLogin/?userName=${encodeURIComponent(account)}&password=${WRONG}`, { localAddress: '127.0.0.3' });
  assert.equal(http.status, 401, 'HTTP: a wrong password fails');
  assert.equal(await smtpAuth('127.0.0.4', account, WRONG), 535, 'SMTP AUTH: a wrong password fails');
  // Malformed requests before login, until the address is blocked.
  for (let i = 0; i < 2; i++) {
    const client = XimssClient.fromSocket(await connectFrom(server.ports.ximss, '127.0.0.6'));
    client.sendRaw('<login id="1" ');
    await client.waitClosed();
  }
  // Successful logins: not matched.
  assert.equal(await ximssLogin('127.0.0.5', account, PASSWORD), undefined, 'XIMSS: the right password');
  const httpOk = await httpRequest(server.ports.http, `/XIMSSLogin/?userName=${encodeURIComponent(account)}&password=${PASSWORD}`, { localAddress: '127.0.0.5' });
  assert.equal(httpOk.status, 200, 'HTTP: the right password');
  assert.equal(await smtpAuth('127.0.0.5', account, PASSWORD), 235, 'SMTP AUTH: the right password');

  const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  const failed = parsed.filter((r) => r.event === 'login.failed');
  assert.deepEqual([...new Set(failed.map((r) => r.address))].sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4'], 'the failed logins were logged');
  assert.deepEqual(
    parsed.filter((r) => r.event === 'limit.abuse_blocked').map((r) => r.address),
    ['127.0.0.6'],
    'the abuse block was logged',
  );
  assert.equal(parsed.filter((r) => r.event === 'login.ok' && r.address === '127.0.0.5').length, 3, 'the successful logins were logged');

  const tool = await fail2banRegex();
  if (typeof tool !== 'string') {
    t.skip(tool.skip);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-f2b-'));
  try {
    const logFile = join(dir, 'ximssd.log');
    writeFileSync(logFile, lines.join(''));
    // One line per match: the address fail2ban would ban.
    const { stdout } = await run(tool, ['--out', 'ip', logFile, FILTER], 120_000);
    const banned = stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    const expected = [
      ...failed.map((r) => String(r.address)),
      '127.0.0.6', // the abuse block
    ].sort();
    assert.deepEqual(banned.slice().sort(), expected, `fail2ban-regex matched: ${stdout}`);
    assert.ok(!banned.includes('127.0.0.5'), 'no successful login matched');
    assert.ok(!banned.includes('10.9.9.9'), 'an address inside a user name is not taken');
    // The time of each line is read from its "time" field.
    const summary = await run(tool, [logFile, FILTER], 120_000);
    const hits = /Date template hits:[\s\S]*?\[(\d+)\] "time":/.exec(summary.stdout);
    assert.equal(Number(hits?.[1]), lines.length, `the datepattern reads every line's time:\n${summary.stdout}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
