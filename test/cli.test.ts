/**
 * The command line (`node dist/main.js ...`, built by the test script): domain and account
 * management, alerts, and the same commands while a server process runs on the same data
 * directory; first-start bootstrap; SIGTERM.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { verifyPassword } from '../src/services/passwords.js';
import { openStore } from '../src/store/open.js';
import { Secret, TOTP } from 'otpauth';
import { XmlElement } from '../src/xml/element.js';
import { freePort, LOG_LOADS, loggedInClient, XimssClient } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const DOMAIN = 'cli.test';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const temporary: string[] = [];
const children = new Set<ChildProcess>();

/** A fresh data directory and a config file naming the default domain. */
function workspace(): { data: string; config: string } {
  const root = mkdtempSync(join(tmpdir(), 'ximssd-cli-'));
  temporary.push(root);
  const config = join(root, 'config.json');
  writeFileSync(config, JSON.stringify({ defaultDomain: DOMAIN, host: '127.0.0.1', ports: { xmpp: 0, xmppS2s: 0, sip: 0 }, limits: { loginFailureDelayMs: 20 } }));
  return { data: join(root, 'data'), config };
}

/** Runs node with these arguments; standard input gets `input` and ends (at once without it). */
function run(nodeArgs: string[], env: NodeJS.ProcessEnv = process.env, input = ''): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, nodeArgs, { timeout: 20_000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

/** A data directory with a store made by `ximssd init` (the postmaster's password: POSTMASTER_PASSWORD). */
async function initialized(): Promise<{ data: string; config: string }> {
  const ws = workspace();
  const result = await run([MAIN, 'init', '--data', ws.data, '--config', ws.config], process.env, `${POSTMASTER_PASSWORD}\n`);
  assert.equal(result.code, 0, `ximssd init failed: ${result.stderr}`);
  return ws;
}

const POSTMASTER_PASSWORD = 'postmaster-pw';

function cli(ws: { data: string; config: string }, ...args: string[]): Promise<Result> {
  return run([MAIN, ...args, '--data', ws.data, '--config', ws.config]);
}


/** Runs a command, and answers the files of dist/ and the packages it loaded (as ES modules). */
async function modulesLoaded(ws: { data: string; config: string }, ...args: string[]): Promise<string[]> {
  const log = join(ws.data, '..', 'loaded.txt');
  writeFileSync(log, '');
  const result = await run(['--import', LOG_LOADS, MAIN, ...args, '--data', ws.data, '--config', ws.config], { ...process.env, LOAD_LOG: log });
  assert.equal(result.code, 0, `ximssd ${args.join(' ')} failed: ${result.stderr}`);
  const dist = new URL('../dist/', import.meta.url).href;
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((url) => url.startsWith(dist) || url.includes('/node_modules/'))
    .map((url) => (url.startsWith(dist) ? url.slice(dist.length) : url.slice(url.lastIndexOf('/node_modules/') + 14)));
}

async function ok(ws: { data: string; config: string }, ...args: string[]): Promise<string> {
  const result = await cli(ws, ...args);
  assert.equal(result.code, 0, `ximssd ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

interface ServerProcess {
  child: ChildProcess;
  port: number;
  output: () => string;
  exited: Promise<number | null>;
}

/** Spawns `ximssd serve` on free ports and waits until it listens. */
async function serve(ws: { data: string; config: string }): Promise<ServerProcess> {
  const port = await freePort();
  const http = await freePort();
  const smtp = await freePort();
  const args = ['serve', '--data', ws.data, '--config', ws.config, '--ximss', String(port), '--http', String(http), '--smtp', String(smtp)];
  const child = spawn(process.execPath, [MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  const deadline = Date.now() + 15_000;
  while (!/listening/.test(output)) {
    if (child.exitCode !== null) throw new Error(`ximssd serve exited: ${output}`);
    if (Date.now() > deadline) throw new Error(`ximssd serve did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.match(output, new RegExp(`"ximss":${port}\\b`));
  return { child, port, output: () => output, exited };
}

async function loginFails(port: number, user: string, password: string): Promise<void> {
  const client = await XimssClient.connect(port);
  const reply = await client.request(new XmlElement('login', { authData: user, password }));
  assert.equal(reply.response.attrs.errorText, 'incorrect password or account name');
  client.close();
}

before(() => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: build first (npm test does, or npx tsc -p .)`);
});
after(() => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

describe('management commands', () => {
  test('domain add / list; a duplicate domain is an error', async () => {
    const ws = await initialized();
    assert.match(await ok(ws, 'domain', 'add', 'other.test'), /domain other\.test created/);
    assert.match(await ok(ws, 'domain', 'add', 'open.test', '--allow-signup'), /open\.test created/);
    const duplicate = await cli(ws, 'domain', 'add', 'other.test');
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists/);
    const invalid = await cli(ws, 'domain', 'add', 'bad_domain!');
    assert.equal(invalid.code, 1);
    assert.deepEqual((await ok(ws, 'domain', 'list')).trim().split('\n'), [DOMAIN, 'open.test', 'other.test']);
    const store = await openStore(undefined, ws.data);
    try {
      assert.equal((await store.domains.get('open.test'))?.settings.SignupAllowed, 'Yes');
      assert.equal((await store.domains.get('other.test'))?.settings.SignupAllowed, undefined);
    } finally {
      await store.close();
    }
  });

  test('account add (creating its domain) / list / passwd / remove; alert to an unknown account fails', async () => {
    const ws = await initialized();
    const first = await ok(ws, 'account', 'add', 'bob@new.test', '--password', 'pw-1', '--real-name', 'Bob Builder', '--create-domain');
    assert.doesNotMatch(first, /postmaster password/);
    assert.match(first, /account bob@new\.test created/);
    assert.deepEqual((await ok(ws, 'domain', 'list')).trim().split('\n'), [DOMAIN, 'new.test']);
    assert.deepEqual((await ok(ws, 'account', 'list')).trim().split('\n'), [`postmaster@${DOMAIN}\tPostmaster`, 'bob@new.test\tBob Builder']);
    assert.deepEqual((await ok(ws, 'account', 'list', 'new.test')).trim().split('\n'), ['bob@new.test\tBob Builder']);

    const duplicate = await cli(ws, 'account', 'add', 'bob@new.test', '--password', 'x');
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists/);
    const noPassword = await cli(ws, 'account', 'add', 'eve@new.test');
    assert.notEqual(noPassword.code, 0);

    // An application password (as passwordModify name= would add) goes with the old password.
    const before = await openStore(undefined, ws.data);
    try {
      const bob = (await before.accounts.get('new.test', 'bob'))!;
      assert.equal(await before.appPasswords.set({ accountId: bob.id, name: 'phone', hash: 'h', scram: null, digest: null, created: Date.now() }, 10), 'added');
    } finally {
      await before.close();
    }
    assert.match(
      await ok(ws, 'account', 'passwd', 'bob@new.test', '--password', 'pw-2'),
      /password of bob@new\.test changed; 1 application password\(s\) removed/,
    );
    const store = await openStore(undefined, ws.data);
    try {
      const bob = (await store.accounts.get('new.test', 'bob'))!;
      assert.deepEqual(await store.appPasswords.list(bob.id), []);
      assert.equal(bob.realName, 'Bob Builder');
      assert.ok(await verifyPassword('pw-2', bob.passwordHash));
      assert.equal(await verifyPassword('pw-1', bob.passwordHash), false);
    } finally {
      await store.close();
    }

    assert.match(await ok(ws, 'alert', 'bob@new.test', 'hello'), /alert posted/);
    const unknownAlert = await cli(ws, 'alert', 'nobody@new.test', 'hello');
    assert.equal(unknownAlert.code, 1);
    assert.match(unknownAlert.stderr, /unknown account/);

    assert.match(await ok(ws, 'account', 'remove', 'bob@new.test'), /removed/);
    assert.deepEqual((await ok(ws, 'account', 'list')).trim().split('\n'), [`postmaster@${DOMAIN}\tPostmaster`]);
    const again = await cli(ws, 'account', 'remove', 'bob@new.test');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /unknown account/);
    const passwd = await cli(ws, 'account', 'passwd', 'bob@new.test', '--password', 'x');
    assert.equal(passwd.code, 1);
  });
});

describe('start-up', () => {
  test('--version prints the version of package.json', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await run([MAIN, '--version']);
    assert.equal(result.code, 0);
    assert.equal(result.stdout.trim(), version);
  });

  test('the store commands load neither the server (listeners, XIMSS engine, XML) nor TLS', async () => {
    const ws = await initialized();
    for (const args of [
      ['account', 'list'],
      ['domain', 'list'],
      ['account', 'add', `u@${DOMAIN}`, '--password', 'pw'],
      ['alert', `u@${DOMAIN}`, 'hi'],
      ['account', 'set', `u@${DOMAIN}`, 'MaxAccountSize=1M'],
      ['account', 'show', `u@${DOMAIN}`],
      ['domain', 'show', DOMAIN],
      ['queue'],
      ['balance', 'credit', `u@${DOMAIN}`, '5'],
      ['balance', `u@${DOMAIN}`],
    ]) {
      const loaded = await modulesLoaded(ws, ...args);
      assert.ok(loaded.includes('main.js') && loaded.includes('store/open.js'), `${args.join(' ')}: ${loaded.join(' ')}`);
      const heavy = loaded.filter((file) => /^(server|tls)\.js$|^ximss\/|^xml\/|^(selfsigned|saxes|iconv-lite)\//.test(file));
      assert.deepEqual(heavy, [], `ximssd ${args.join(' ')} loaded them`);
    }
  });
});

describe('a running server and the command line on the same data directory', () => {
  test('first start prints the postmaster password once, and it logs in; a second start does not print it', async () => {
    const ws = workspace();
    const first = await serve(ws);
    const matches = [...first.output().matchAll(/postmaster password: (\S+)/g)];
    assert.equal(matches.length, 1, first.output());
    const password = matches[0]![1]!;
    const client = await loggedInClient(first.port, `postmaster@${DOMAIN}`, password);
    const session = client.received.find((m) => m.name === 'session')!;
    assert.equal(session.attrs.userName, `postmaster@${DOMAIN}`);
    first.child.kill('SIGTERM');
    assert.deepEqual((await client.nextAsync('bye', 5000)).attrs, {});
    await client.waitClosed();
    assert.equal(await first.exited, 0);

    const second = await serve(ws);
    assert.doesNotMatch(second.output(), /password/);
    const again = await loggedInClient(second.port, 'postmaster', password);
    again.close();
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });

  test('a second serve on the same data directory refuses to start, naming the running server; after it stops the directory serves again', async () => {
    const ws = workspace();
    const first = await serve(ws);
    const refused = await cli(ws, 'serve', '--ximss', String(await freePort()), '--http', String(await freePort()), '--smtp', '0');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`in use by another ximssd server \\(pid ${first.child.pid}\\)`));
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    const second = await serve(ws);
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });

  test('the server sees accounts, passwords, alerts and removals made by the command line', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `dave@${DOMAIN}`, '--password', 'dave-pw');
    const server = await serve(ws);
    try {
      const dave = await loggedInClient(server.port, `dave@${DOMAIN}`, 'dave-pw');

      // A new account can log in at once.
      await ok(ws, 'account', 'add', `carol@${DOMAIN}`, '--password', 'c-1', '--real-name', 'Carol');
      const carol = await loggedInClient(server.port, `carol@${DOMAIN}`, 'c-1');
      assert.equal(carol.received.find((m) => m.name === 'session')?.attrs.realName, 'Carol');

      // An alert reaches the logged-in session (through the relay the server polls).
      await ok(ws, 'alert', `carol@${DOMAIN}`, 'hello from the command line');
      const alert = await carol.nextAsync('alert', 5000);
      assert.equal(alert.text(), 'hello from the command line');
      assert.equal(dave.asyncMessages.length, 0, 'only the addressee gets it');

      // A password change applies to the next login.
      await ok(ws, 'account', 'passwd', `carol@${DOMAIN}`, '--password', 'c-2');
      await loginFails(server.port, `carol@${DOMAIN}`, 'c-1');
      const carol2 = await loggedInClient(server.port, `carol@${DOMAIN}`, 'c-2');

      // Removing the account ends its sessions with bye.
      await ok(ws, 'account', 'remove', `carol@${DOMAIN}`);
      const removed = Date.now();
      await carol.nextAsync('bye', 3000);
      await carol2.nextAsync('bye', 3000);
      assert.ok(Date.now() - removed < 1500);
      await carol.waitClosed();
      await carol2.waitClosed();
      await loginFails(server.port, `carol@${DOMAIN}`, 'c-2');
      assert.equal(dave.closed, false);
      assert.equal((await dave.request('<noop/>')).response.attrs.errorText, undefined);

      // SIGTERM: every session gets bye, the process exits 0.
      const idle = await XimssClient.connect(server.port);
      server.child.kill('SIGTERM');
      assert.deepEqual((await dave.nextAsync('bye', 5000)).attrs, {});
      await dave.waitClosed();
      await idle.waitClosed();
      assert.equal(await server.exited, 0);
    } finally {
      server.child.kill('SIGKILL');
    }
  });
});

describe('ximssd account second-factor', () => {
  test('shows whether an account logs in with a second factor, and turns it off for a user who lost it', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `otp@${DOMAIN}`, '--password', 'otp-pw');
    assert.equal(await ok(ws, 'account', 'second-factor', `otp@${DOMAIN}`), 'two-factor login: off\n');
    const server = await serve(ws);
    try {
      const client = await loggedInClient(server.port, `otp@${DOMAIN}`, 'otp-pw');
      const started = await client.request(new XmlElement('x2AuthStart', { password: 'otp-pw' }, ['totp']));
      const secret = started.messages.find((m) => m.name === 'x2auth')?.attrs.secret;
      assert.ok(secret, 'the enrolment gives a secret');
      const code = new TOTP({ secret: Secret.fromBase32(secret), period: 30, digits: 6, algorithm: 'SHA1' }).generate();
      assert.equal((await client.request(new XmlElement('x2AuthComplete', {}, [code]))).response.attrs.errorText, undefined);
      client.close();
      assert.match(await ok(ws, 'account', 'second-factor', `otp@${DOMAIN}`), /^two-factor login: on \(10 recovery codes left\)\n$/);
      const plain = await XimssClient.connect(server.port);
      const refused = await plain.request(new XmlElement('login', { authData: `otp@${DOMAIN}`, password: 'otp-pw' }));
      assert.match(refused.response.attrs.errorText ?? '', /requires two-factor authentication/);
      plain.close();
      assert.equal(await ok(ws, 'account', 'second-factor', `otp@${DOMAIN}`, 'off'), `two-factor login of otp@${DOMAIN} turned off\n`);
      (await loggedInClient(server.port, `otp@${DOMAIN}`, 'otp-pw')).close();
      assert.equal(await ok(ws, 'account', 'second-factor', `otp@${DOMAIN}`, 'off'), `otp@${DOMAIN} had no two-factor login\n`);
      const bad = await cli(ws, 'account', 'second-factor', `otp@${DOMAIN}`, 'on');
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /unknown action on/);
    } finally {
      server.child.kill('SIGKILL');
    }
  });
});

describe('ximssd balance', () => {
  test('show, credit, debit (with reason, currency and reference), history; bad amounts, insufficient funds and unknown accounts fail with a message', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `payer@${DOMAIN}`, '--password', 'p');
    assert.equal(await ok(ws, 'balance', `payer@${DOMAIN}`), `account payer@${DOMAIN}\nUSD\t0\t(0 entries)\n`);
    assert.match(await ok(ws, 'balance', 'credit', `payer@${DOMAIN}`, '1500', '--reason', 'top-up', '--reference', 'inv-1'), /^credited 1500 USD to payer@cli\.test: balance 1500 USD \(entry \d+\)\n$/);
    assert.match(await ok(ws, 'balance', 'credit', `payer@${DOMAIN}`, '1500', '--reference', 'inv-1'), /^reference inv-1 was already posted .*; nothing changed; balance 1500 USD\n$/);
    assert.match(await ok(ws, 'balance', 'debit', `payer@${DOMAIN}`, '400'), /^debited 400 USD from payer@cli\.test: balance 1100 USD/);
    await ok(ws, 'balance', 'credit', `payer@${DOMAIN}`, '7', '--currency', 'EUR');
    assert.equal(await ok(ws, 'balance', 'show', `payer@${DOMAIN}`), `account payer@${DOMAIN}\nEUR\t7\t(1 entry)\nUSD\t1100\t(2 entries)\n`);
    const history = (await ok(ws, 'balance', 'history', `payer@${DOMAIN}`)).trim().split('\n');
    assert.equal(history.pop(), '3 entries');
    assert.deepEqual(history.map((line) => line.split('\t').slice(2)), [['+7', 'EUR', 'cli', ''], ['-400', 'USD', 'cli', ''], ['+1500', 'USD', 'cli', 'top-up', '[inv-1]']]);

    const failures: [string[], RegExp][] = [
      [['balance', 'debit', `payer@${DOMAIN}`, '1101'], /^ximssd: insufficient funds\n$/],
      [['balance', 'credit', `payer@${DOMAIN}`, '12.50'], /^ximssd: bad amount "12\.50": a positive whole number of minor units/],
      [['balance', 'credit', `payer@${DOMAIN}`, '0'], /^ximssd: bad amount: it must be greater than 0/],
      [['balance', 'credit', `payer@${DOMAIN}`, '5', '--reference', 'inv-1'], /^ximssd: this reference was already used for another operation/],
      [['balance', 'credit', `payer@${DOMAIN}`, '5', '--currency', 'no such'], /^ximssd: bad balance name/],
      [['balance', `nobody@${DOMAIN}`], /^ximssd: unknown account nobody@cli\.test/],
      [['balance', 'credit', `nobody@${DOMAIN}`, '5'], /^ximssd: unknown account nobody@cli\.test/],
    ];
    for (const [args, expected] of failures) {
      const result = await cli(ws, ...args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n'), expected, args.join(' '));
    }
    assert.match(await ok(ws, 'balance', `payer@${DOMAIN}`), /USD\t1100\t/, 'the refused changes changed nothing');
  });

  test('beside a running server: a credit from the command line is what the account reads next; a change over XIMSS is what the command line shows', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `payer@${DOMAIN}`, '--password', 'p');
    const server = await serve(ws);
    try {
      const read = async (client: XimssClient, accountName?: string): Promise<string> => {
        const request = new XmlElement('balance', accountName ? { accountName } : {});
        request.add('subKey', { key: 'op' }, 'read');
        const reply = await client.request(request);
        assert.equal(reply.response.attrs.errorText, undefined);
        return reply.messages[0]!.elements().find((e) => e.attrs.key === 'amount')!.text();
      };
      const payer = await loggedInClient(server.port, `payer@${DOMAIN}`, 'p');
      assert.equal(await read(payer), '0');
      await ok(ws, 'balance', 'credit', `payer@${DOMAIN}`, '2500');
      assert.equal(await read(payer), '2500');

      const postmaster = await loggedInClient(server.port, `postmaster@${DOMAIN}`, POSTMASTER_PASSWORD);
      const charge = new XmlElement('balance', { accountName: `payer@${DOMAIN}` });
      charge.add('subKey', { key: 'op' }, 'charge');
      charge.add('subKey', { key: 'amount' }, '1000');
      assert.equal((await postmaster.request(charge)).response.attrs.errorText, undefined);
      assert.match(await ok(ws, 'balance', `payer@${DOMAIN}`), /^USD\t1500\t\(2 entries\)$/m);
      assert.match(await ok(ws, 'balance', 'history', `payer@${DOMAIN}`, '--limit', '1'), new RegExp(`\\t-1000\\tUSD\\tpostmaster@${DOMAIN.replace('.', '\\.')}\\t`));
      payer.close();
      postmaster.close();
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
