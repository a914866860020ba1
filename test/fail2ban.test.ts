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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, httpRequest, startTestServer, type TestServer } from './helpers.js';
import { rawLogger, smtpAuthFrom, ximssClientFrom, ximssLoginFrom } from './fixtures/wire-logins.js';

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
const captured = rawLogger();
const lines = captured.lines;
let server: TestServer;
let account: string;

before(async () => {
  server = await startTestServer(
    { ports: { smtp: await freePort() }, limits: { abusePerAddress: 2, abuseBlockSeconds: 60 } },
    { log: captured.log },
  );
  account = await server.newAccount('f2b', { password: PASSWORD });
});

after(async () => {
  await server?.stop();
});

const ximssLogin = (from: string, user: string, password: string): Promise<string | undefined> => ximssLoginFrom(server.ports.ximss, from, user, password);
const smtpAuth = (from: string, user: string, password: string): Promise<number> => smtpAuthFrom(server.ports.smtp!, from, user, password);

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
    const client = await ximssClientFrom(server.ports.ximss, '127.0.0.6');
    client.sendRaw('<login id="1" ');
    await client.waitClosed();
  }
  // Successful logins: not matched.
  assert.equal(await ximssLogin('127.0.0.5', account, PASSWORD), undefined, 'XIMSS: the right password');
  const httpOk = await httpRequest(server.ports.http, `/XIMSSLogin/?userName=${encodeURIComponent(account)}&password=${PASSWORD}`, { localAddress: '127.0.0.5' });
  assert.equal(httpOk.status, 200, 'HTTP: the right password');
  assert.equal(await smtpAuth('127.0.0.5', account, PASSWORD), 235, 'SMTP AUTH: the right password');

  const parsed = captured.records();
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
