/**
 * The administration commands (`node dist/main.js ...`, built first): init, passwords from a
 * file and standard input, domain and account show/set/remove, the settings registry's
 * refusals, the queue commands, and the log lines they write on standard error (parsed);
 * then a running server seeing what the command line changes (storage limit at SMTP RCPT,
 * signup, a deferred message delivered at once after `queue retry`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { verifyPassword } from '../src/services/passwords.js';
import { openStore } from '../src/store/open.js';
import type { NewQueuedMessage } from '../src/store/queue.js';
import type { Store } from '../src/store/store.js';
import { sendmail, smtpSession } from './fixtures/smtp-client.js';
import { SmtpSink } from './fixtures/smtp-sink.js';
import { capturingLogger, eventually, freePort, loggedInClient, rfc822, startTestServer, XimssClient, type TestServer } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const DOMAIN = 'admin.test';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The JSON log lines of standard error. */
  log: Record<string, unknown>[];
}

interface Workspace {
  root: string;
  data: string;
  config: string;
  /** --store, when the store is not SQLite in the data directory. */
  store?: string;
}

const temporary: string[] = [];

function workspace(config: Record<string, unknown> = { defaultDomain: DOMAIN }): Workspace {
  const root = mkdtempSync(join(tmpdir(), 'ximssd-admin-'));
  temporary.push(root);
  const file = join(root, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return { root, data: join(root, 'data'), config: file };
}

function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs `ximssd ARGS --data ... --config ...`; standard input gets `input` and ends. */
function cli(ws: Workspace, args: readonly string[], input = ''): Promise<Result> {
  const all = [MAIN, ...args, '--data', ws.data, '--config', ws.config, ...(ws.store ? ['--store', ws.store] : [])];
  return new Promise((resolve) => {
    const child = execFile(process.execPath, all, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, log: logLines(stderr) });
    });
    child.stdin!.end(input);
  });
}

async function ok(ws: Workspace, args: readonly string[], input = ''): Promise<Result> {
  const result = await cli(ws, args, input);
  assert.equal(result.code, 0, `ximssd ${args.join(' ')} failed: ${result.stderr}`);
  return result;
}

async function refused(ws: Workspace, args: readonly string[], message: RegExp, input = ''): Promise<Result> {
  const result = await cli(ws, args, input);
  assert.equal(result.code, 1, `ximssd ${args.join(' ')} should fail: ${result.stdout}${result.stderr}`);
  assert.match(result.stderr, message);
  assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
  return result;
}

function events(result: Result, name: string): Record<string, unknown>[] {
  return result.log.filter((line) => line.event === name);
}

/** A file holding `text`. */
function file(ws: Workspace, name: string, text: string): string {
  const path = join(ws.root, name);
  writeFileSync(path, text);
  return path;
}

async function withStore<T>(ws: Workspace, use: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(ws.store, ws.data, { create: false });
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

async function initialized(): Promise<Workspace> {
  const ws = workspace();
  await ok(ws, ['init', '--password-file', file(ws, 'pm.txt', 'postmaster-pw\n')]);
  return ws;
}

function queued(sender: string, recipients: readonly string[], subject: string): NewQueuedMessage {
  const now = Date.now();
  return {
    sender,
    raw: Buffer.from(`From: <${sender}>\r\nTo: ${recipients.join(', ')}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@admin.test>\r\n\r\nbody\r\n`),
    created: now,
    expires: now + 86_400_000,
    ret: 'HDRS',
    envid: null,
    source: 'authenticated',
    key: null,
    recipients: recipients.map((address) => ({ address, notify: null, orcpt: null })),
  };
}

before(() => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: build first (npm run build)`);
});
after(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

describe('no store: only init (and serve) create one', () => {
  test('every other command, read-only or not, says there is no store and creates nothing', async () => {
    const ws = workspace();
    const empty = workspace();
    mkdirSync(empty.data);
    for (const args of [
      ['domain', 'list'],
      ['account', 'list'],
      ['queue'],
      ['queue', 'show', '1'],
      ['queue', 'retry'],
      ['domain', 'show', DOMAIN],
      ['domain', 'add', 'new.test'],
      ['domain', 'set', DOMAIN, 'SignupAllowed=Yes'],
      ['account', 'add', `bob@${DOMAIN}`, '--password', 'pw'],
      ['account', 'set', `bob@${DOMAIN}`, 'MaxAccountSize=1M'],
      ['alert', `bob@${DOMAIN}`, 'hello'],
    ]) {
      for (const target of [ws, empty]) {
        const result = await refused(target, args, /^ximssd: there is no ximssd store in (\S+) \(run `ximssd init` or `ximssd serve` first\)\n$/);
        assert.equal(/in (\S+) \(/.exec(result.stderr)![1], target.data);
      }
      assert.equal(existsSync(ws.data), false, `ximssd ${args.join(' ')} made the data directory`);
      assert.deepEqual(readdirSync(empty.data), [], `ximssd ${args.join(' ')} wrote into the empty data directory`);
    }
  });
});

describe('init', () => {
  test('with --password-file: the store, the default domain and the postmaster; a second init refuses; the password shows nowhere', async () => {
    const ws = workspace();
    const password = 'Init-Canary-7731';
    const result = await ok(ws, ['init', '--password-file', file(ws, 'pw.txt', `${password}\nsecond line ignored\n`)]);
    assert.match(result.stdout, new RegExp(`created the store in ${ws.data}, domain ${DOMAIN} and account postmaster@${DOMAIN}`));
    assert.ok(!result.stdout.includes(password) && !result.stderr.includes(password), 'the password is not shown');
    assert.deepEqual(events(result, 'domain.created').map((l) => [l.component, l.domain]), [['admin', DOMAIN]]);
    assert.deepEqual(events(result, 'account.created').map((l) => [l.component, l.account]), [['admin', `postmaster@${DOMAIN}`]]);
    for (const line of result.log) assert.ok(typeof line.time === 'string' && typeof line.level === 'string');
    await withStore(ws, async (store) => {
      const postmaster = (await store.accounts.get(DOMAIN, 'postmaster'))!;
      assert.ok(await verifyPassword(password, postmaster.passwordHash));
    });
    await refused(ws, ['init', '--password', 'other'], new RegExp(`^ximssd: there is already a ximssd store in ${ws.data} \\(domains: ${DOMAIN}\\); nothing changed`));
    await withStore(ws, async (store) => assert.ok(await verifyPassword(password, (await store.accounts.get(DOMAIN, 'postmaster'))!.passwordHash)));
  });

  test('from standard input (its first line); generated and printed once when standard input gives nothing; an empty password is refused', async () => {
    const piped = workspace();
    await ok(piped, ['init'], 'from-stdin-pw\n');
    await withStore(piped, async (store) => assert.ok(await verifyPassword('from-stdin-pw', (await store.accounts.get(DOMAIN, 'postmaster'))!.passwordHash)));

    const generated = workspace();
    const result = await ok(generated, ['init']);
    const shown = /postmaster password: (\S+) {3}\(shown once/.exec(result.stdout)?.[1];
    assert.ok(shown, result.stdout);
    assert.ok(!result.stderr.includes(shown), 'not in the log');
    await withStore(generated, async (store) => assert.ok(await verifyPassword(shown, (await store.accounts.get(DOMAIN, 'postmaster'))!.passwordHash)));

    const blank = workspace();
    await refused(blank, ['init'], /^ximssd: the password must not be empty/, '\n');
    await refused(blank, ['init', '--password-file', file(blank, 'empty.txt', '')], /^ximssd: the password must not be empty/);
    await refused(blank, ['init', '--password-file', join(blank.root, 'missing.txt')], /^ximssd: cannot read the password file .*ENOENT/);
    assert.equal(existsSync(blank.data), false, 'a refused init creates nothing');
  });
});

describe('accounts', () => {
  let ws: Workspace;
  before(async () => {
    ws = await initialized();
  });

  test('account add: an unknown domain is refused unless --create-domain; passwords from a file and standard input, never shown or logged', async () => {
    await refused(ws, ['account', 'add', 'carol@typo.example', '--password', 'pw'], /^ximssd: unknown domain typo\.example \(add it with `ximssd domain add`, or pass --create-domain\)/);
    await withStore(ws, async (store) => assert.equal(await store.domains.get('typo.example'), undefined));

    const filePassword = 'File-Canary-5512';
    const added = await ok(ws, ['account', 'add', `carol@${DOMAIN}`, '--password-file', file(ws, 'carol.txt', `${filePassword}\r\n`), '--real-name', 'Carol']);
    assert.match(added.stdout, new RegExp(`account carol@${DOMAIN} created`));
    assert.deepEqual(events(added, 'account.created').map((l) => l.account), [`carol@${DOMAIN}`]);

    const stdinPassword = 'Stdin-Canary-9920';
    const created = await ok(ws, ['account', 'add', 'dan@new.example', '--create-domain'], `${stdinPassword}\n`);
    assert.deepEqual(events(created, 'domain.created').map((l) => l.domain), ['new.example']);
    const passwd = await ok(ws, ['account', 'passwd', `carol@${DOMAIN}`], 'Changed-Canary-1234\n');
    assert.deepEqual(events(passwd, 'account.password_changed').map((l) => [l.component, l.account]), [['admin', `carol@${DOMAIN}`]]);
    for (const r of [added, created, passwd]) {
      for (const secret of [filePassword, stdinPassword, 'Changed-Canary-1234']) assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'a password was shown');
    }
    await withStore(ws, async (store) => {
      assert.ok(await verifyPassword('Changed-Canary-1234', (await store.accounts.get(DOMAIN, 'carol'))!.passwordHash));
      assert.ok(await verifyPassword(stdinPassword, (await store.accounts.get('new.example', 'dan'))!.passwordHash));
    });
    await refused(ws, ['account', 'add', `eve@${DOMAIN}`], /^ximssd: no password given/);
    await refused(ws, ['account', 'add', `eve@${DOMAIN}`, '--password-file', file(ws, 'blank.txt', '\n')], /^ximssd: the password must not be empty/);
    await refused(ws, ['account', 'passwd', `carol@${DOMAIN}`, '--password', ''], /^ximssd: the password must not be empty/);
    await withStore(ws, async (store) => assert.equal(await store.accounts.get(DOMAIN, 'eve'), undefined));
  });

  test('account set and show: the registered keys, validated as a whole; Key= and Key=default remove; refusals change nothing', async () => {
    await ok(ws, ['account', 'add', `fay@${DOMAIN}`, '--password', 'fay-pw']);
    const set = await ok(ws, ['account', 'set', `fay@${DOMAIN}`, 'maxaccountsize=10m', 'RulesAllowed=filter only', 'RealName=Fay Doe', 'RecoveryEmail=fay@elsewhere.example', 'PWDAllowed=no']);
    assert.match(set.stdout, /MaxAccountSize, RulesAllowed, RealName, RecoveryEmail, PWDAllowed changed/);
    const [line] = events(set, 'account.settings_changed');
    assert.deepEqual(line!.keys, ['MaxAccountSize', 'RulesAllowed', 'RealName', 'RecoveryEmail', 'PWDAllowed']);
    assert.ok(!set.stderr.includes('elsewhere.example') && !set.stderr.includes('Fay Doe'), 'values are not logged');

    let shown = (await ok(ws, ['account', 'show', `fay@${DOMAIN}`])).stdout;
    assert.match(shown, /^real name\tFay Doe$/m);
    assert.match(shown, /^recovery address\tfay@elsewhere\.example$/m);
    assert.match(shown, /^storage used\t0 bytes of 10\.0M \(10485760 bytes\)$/m);
    assert.match(shown, /^last login\t\(never\)$/m);
    assert.match(shown, /^ {2}MaxAccountSize\t10M\t\(set on the account\)$/m);
    assert.match(shown, /^ {2}RulesAllowed\tFilter Only\t\(set on the account\)$/m);
    assert.match(shown, /^ {2}SignalRulesAllowed\tNo\t\(built-in default\)$/m);

    const before = await withStore(ws, async (store) => (await store.accounts.get(DOMAIN, 'fay'))!);
    await refused(ws, ['account', 'set', `fay@${DOMAIN}`, 'MaxAccountSize=1M', 'Bogus=1'], /^ximssd: unknown setting Bogus \(account settings: RealName, RecoveryEmail, MaxAccountSize, MaxWebSize, MaxWebFiles, DomainAdminRights, RulesAllowed, SignalRulesAllowed, PWDAllowed, RPOPAllowed, RSIPAllowed, RayoAllowed\)/);
    await refused(ws, ['account', 'set', `fay@${DOMAIN}`, 'MaxAccountSize=1M', 'RulesAllowed=some'], /^ximssd: bad value for RulesAllowed: "some" \(accepted: None, Filter Only, No Redirect, Any;/);
    // Names of object methods are not values (nor aliases of one).
    await refused(ws, ['account', 'set', `fay@${DOMAIN}`, 'SignalRulesAllowed=constructor'], /^ximssd: bad value for SignalRulesAllowed: "constructor"/);
    await refused(ws, ['account', 'set', `fay@${DOMAIN}`, 'MaxAccountSize=lots'], /^ximssd: bad value for MaxAccountSize: "lots" \(accepted: a size in bytes, or with a K, M, G or T suffix/);
    await refused(ws, ['account', 'set', `fay@${DOMAIN}`, 'RecoveryEmail=not an address'], /^ximssd: bad value for RecoveryEmail/);
    await refused(ws, ['account', 'set', `fay@${DOMAIN}`, 'SignupAllowed=Yes'], /^ximssd: SignupAllowed is a domain setting, not settable on an account/);
    await refused(ws, ['account', 'set', `nobody@${DOMAIN}`, 'MaxAccountSize=1M'], /^ximssd: unknown account nobody@admin\.test/);
    const unchanged = await withStore(ws, async (store) => (await store.accounts.get(DOMAIN, 'fay'))!);
    assert.deepEqual(unchanged.settings, before.settings, 'nothing changed');

    // A domain default shows as such; Key= and Key=default remove the account's own values.
    await ok(ws, ['domain', 'set', DOMAIN, 'MaxAccountSize=2G']);
    await ok(ws, ['account', 'set', `fay@${DOMAIN}`, 'MaxAccountSize=', 'RulesAllowed=default', 'RecoveryEmail=']);
    shown = (await ok(ws, ['account', 'show', `fay@${DOMAIN}`])).stdout;
    assert.match(shown, new RegExp(`^ {2}MaxAccountSize\\t2G\\t\\(default of ${DOMAIN.replace('.', '\\.')}\\)$`, 'm'));
    assert.match(shown, /^ {2}RulesAllowed\tAny\t\(built-in default\)$/m);
    assert.match(shown, /^recovery address\t\(none\)$/m);
    await withStore(ws, async (store) => assert.deepEqual((await store.accounts.get(DOMAIN, 'fay'))!.settings, { PWDAllowed: 'No' }));
    await ok(ws, ['domain', 'set', DOMAIN, 'MaxAccountSize=default']);
  });

  test('domain show and set: its own settings and its accounts\' defaults; secrets of other features are not shown', async () => {
    await ok(ws, ['domain', 'add', 'shown.example']);
    await withStore(ws, async (store) => store.domains.mergeSettings('shown.example', { DKIM: { selector: 's1', privateKey: 'PRIVATE-KEY-CANARY' } }));
    const set = await ok(ws, ['domain', 'set', 'shown.example', 'SignupAllowed=yes', 'RulesAllowed=None']);
    assert.deepEqual(events(set, 'domain.settings_changed').map((l) => [l.domain, l.keys]), [['shown.example', ['SignupAllowed', 'RulesAllowed']]]);
    await ok(ws, ['account', 'add', 'gus@shown.example', '--password', 'pw']);
    const shown = (await ok(ws, ['domain', 'show', 'shown.example'])).stdout;
    assert.match(shown, /^accounts\t1$/m);
    assert.match(shown, /^ {2}SignupAllowed\tYes$/m);
    assert.match(shown, /^ {2}RulesAllowed\tNone$/m);
    assert.match(shown, /^ {2}MaxAccountSize\tunlimited \(built-in default\)$/m);
    assert.doesNotMatch(shown, /PRIVATE-KEY-CANARY/);
    await withStore(ws, async (store) => {
      const d = (await store.domains.get('shown.example'))!;
      assert.equal(d.settings.SignupAllowed, 'Yes');
      assert.deepEqual(d.settings.AccountDefaults, { RulesAllowed: 'None' });
    });
    await refused(ws, ['domain', 'set', 'shown.example', 'RealName=x'], /^ximssd: RealName is an account's own setting, not settable on a domain/);
    await refused(ws, ['domain', 'set', 'shown.example', 'SignupAllowed=maybe'], /^ximssd: bad value for SignupAllowed: "maybe" \(accepted: Yes, No;/);
    await refused(ws, ['domain', 'set', 'missing.example', 'SignupAllowed=Yes'], /^ximssd: unknown domain missing\.example/);
    await refused(ws, ['domain', 'show', 'missing.example'], /^ximssd: unknown domain missing\.example/);
  });

  test('domain dkim: through AccountService (the name normalized), logged as domain.dkim_changed with selector and algorithm, never the key; --log-level', async () => {
    await ok(ws, ['domain', 'add', 'signed.example']);
    const created = await ok(ws, ['domain', 'dkim', 'SIGNED.Example.', '--selector', 'adm1']);
    assert.match(created.stdout, /DKIM key of signed\.example created/);
    assert.deepEqual(
      events(created, 'domain.dkim_changed').map((l) => [l.component, l.domain, l.selector, l.algorithm]),
      [['admin', 'signed.example', 'adm1', 'rsa-sha256']],
    );
    const storedKey = (selector: string): Promise<string> =>
      withStore(ws, async (store) => {
        const key = (await store.domains.get('signed.example'))!.settings.DKIM as Record<string, string>;
        assert.equal(key.selector, selector);
        return key.privateKey!.replace(/-----[^-]+-----|\s/g, '');
      });
    const secrets = [await storedKey('adm1')];
    const replaced = await ok(ws, ['domain', 'dkim', 'signed.example', '--replace', '--selector', 'adm2', '--algorithm', 'ed25519-sha256']);
    assert.deepEqual(events(replaced, 'domain.dkim_changed').map((l) => [l.selector, l.algorithm]), [['adm2', 'ed25519-sha256']]);
    secrets.push(await storedKey('adm2'));
    const quiet = await ok(ws, ['domain', 'dkim', 'signed.example', '--show', '--log-level', 'warn']);
    assert.equal(quiet.log.length, 0, 'nothing logged at warn');
    const removed = await ok(ws, ['domain', 'dkim', 'signed.example', '--remove', '--log-level', 'debug']);
    assert.deepEqual(events(removed, 'domain.dkim_changed').map((l) => [l.domain, l.removed]), [['signed.example', true]]);
    for (const r of [created, replaced, quiet, removed]) {
      const output = r.stdout + r.stderr;
      assert.doesNotMatch(output, /PRIVATE KEY|privateKey/);
      for (const secret of secrets) {
        for (let i = 0; i + 24 <= secret.length; i += 24) assert.ok(!output.includes(secret.slice(i, i + 24)), 'no piece of the private key is printed or logged');
      }
    }
    await withStore(ws, async (store) => assert.equal((await store.domains.get('signed.example'))!.settings.DKIM, undefined));
    await refused(ws, ['domain', 'dkim', 'missing.example'], /^ximssd: unknown domain missing\.example/);
  });

  test('domain remove: refused while it has accounts, and for the default domain, unless --force', async () => {
    await ok(ws, ['domain', 'add', 'gone.example']);
    await ok(ws, ['account', 'add', 'hal@gone.example', '--password', 'pw']);
    await refused(ws, ['domain', 'remove', 'gone.example'], /^ximssd: domain gone\.example has 1 account\(s\); remove them first, or pass --force/);
    await withStore(ws, async (store) => assert.ok(await store.accounts.get('gone.example', 'hal')));
    const forced = await ok(ws, ['domain', 'remove', 'gone.example', '--force']);
    assert.match(forced.stdout, /domain gone\.example removed with 1 account\(s\)/);
    assert.deepEqual(events(forced, 'account.removed').map((l) => l.account), ['hal@gone.example']);
    assert.deepEqual(events(forced, 'domain.removed').map((l) => l.domain), ['gone.example']);
    await ok(ws, ['domain', 'add', 'empty.example']);
    await ok(ws, ['domain', 'remove', 'empty.example']);
    await withStore(ws, async (store) => {
      assert.equal(await store.domains.get('gone.example'), undefined);
      assert.equal(await store.domains.get('empty.example'), undefined);
    });
    await refused(ws, ['domain', 'remove', 'gone.example'], /^ximssd: unknown domain gone\.example/);
    const other = await initialized();
    await ok(other, ['account', 'remove', `postmaster@${DOMAIN}`]);
    await refused(other, ['domain', 'remove', DOMAIN], /^ximssd: admin\.test is the default domain; pass --force/);
  });
});

describe('queue commands (no server running)', () => {
  let ws: Workspace;
  before(async () => {
    ws = await initialized();
  });

  test('show, retry, delete; unknown ids refused; ids never come back', async () => {
    const id = await withStore(ws, async (store) => (await store.queue.enqueue(queued('alice@admin.test', ['x@remote.example', 'y@remote.example'], 'shown')))!);
    const shown = (await ok(ws, ['queue', 'show', String(id)])).stdout;
    assert.match(shown, new RegExp(`^message ${id}$`, 'm'));
    assert.match(shown, /^sender\t<alice@admin\.test>$/m);
    assert.match(shown, /^ {2}<x@remote\.example>\tpending\t0 attempt\(s\)/m);
    assert.match(shown, /^ {2}<y@remote\.example>\tpending/m);
    assert.match(shown, /^ {2}Subject: shown$/m);
    assert.match(shown, /^lease\t\(none\)$/m);

    // A deferred recipient is due again at once after retry.
    const later = Date.now() + 3_600_000;
    await withStore(ws, async (store) => {
      await store.queue.claimDue(Date.now() + 1000, 10, { owner: 'n1', until: Date.now() - 1 });
      await store.queue.recordAttempt(id, 'n1', [{ address: 'x@remote.example', state: 'pending', attempted: true, nextAttempt: later, status: '4.4.1', diagnostic: 'smtp; 451 4.4.1 try later', remoteMta: 'mx.remote.example' }], []);
    });
    assert.match((await ok(ws, ['queue', 'show', String(id)])).stdout, /last status 4\.4\.1 from mx\.remote\.example: smtp; 451 4\.4\.1 try later/);
    const retried = await ok(ws, ['queue', 'retry', String(id)]);
    assert.match(retried.stdout, /^1 recipient\(s\) of 1 message\(s\) due now$/m);
    assert.deepEqual(events(retried, 'queue.retried').map((l) => [l.queueId, l.recipients]), [[id, 1]]);
    await withStore(ws, async (store) => assert.ok((await store.queue.get(id))!.recipients.every((r) => r.nextAttempt <= Date.now())));

    const deleted = await ok(ws, ['queue', 'delete', String(id)]);
    assert.deepEqual(events(deleted, 'queue.deleted').map((l) => [l.queueId, l.sender]), [[id, 'alice@admin.test']]);
    await withStore(ws, async (store) => {
      assert.equal(await store.queue.get(id), undefined);
      assert.equal((await store.queue.list()).length, 0, 'no report');
    });
    for (const command of ['show', 'delete', 'bounce', 'retry']) await refused(ws, ['queue', command, String(id)], new RegExp(`^ximssd: no message ${id} in the queue`));
    await refused(ws, ['queue', 'show', 'abc'], /^ximssd: not a queue id: abc/);
    const next = await withStore(ws, async (store) => (await store.queue.enqueue(queued('alice@admin.test', ['z@remote.example'], 'next')))!);
    assert.ok(next > id, `a new id (${next}) after the deleted ${id}`);
    await ok(ws, ['queue', 'delete', String(next)]);
  });

  test('bounce: every pending recipient fails (5.0.0) and the sender gets one RFC 3464 report; a null sender gets none', async () => {
    const id = await withStore(ws, async (store) => (await store.queue.enqueue(queued('bob@admin.test', ['p@remote.example', 'q@remote.example'], 'bounced')))!);
    const bounced = await ok(ws, ['queue', 'bounce', String(id)]);
    assert.match(bounced.stdout, /2 recipient\(s\) failed; a report goes to <bob@admin\.test>/);
    assert.deepEqual(events(bounced, 'queue.bounced').map((l) => [l.queueId, l.sender, l.recipients]), [[id, 'bob@admin.test', ['p@remote.example', 'q@remote.example']]]);
    await withStore(ws, async (store) => {
      assert.equal(await store.queue.get(id), undefined, 'nothing pending: gone');
      const [report] = await store.queue.list();
      assert.ok(report, 'a report is queued');
      assert.equal(report.message.sender, '');
      assert.deepEqual(report.recipients.map((r) => r.address), ['bob@admin.test']);
      const raw = (await store.queue.readRaw(report.message.id))!.toString();
      assert.match(raw, /^Content-Type: multipart\/report;[^]*report-type=delivery-status/im);
      assert.match(raw, /^Final-Recipient: rfc822; ?p@remote\.example\r?$/m);
      assert.match(raw, /^Final-Recipient: rfc822; ?q@remote\.example\r?$/m);
      assert.match(raw, /^Action: failed\r?$/m);
      assert.match(raw, /^Status: 5\.0\.0\r?$/m);
      assert.match(raw, /returned by the administrator/);
      assert.match(raw, /Subject: bounced/, 'the original header comes back');
      // The report has the null sender: bouncing it sends nothing.
      const again = await cli(ws, ['queue', 'bounce', String(report.message.id)]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /no report/);
      assert.deepEqual(await store.queue.list(), []);
    });
  });
});

describe('a running server sees what the command line changes', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let ws: Workspace;
  const captured = capturingLogger('info');

  before(async () => {
    // The first attempt to the relay is deferred; the next would be an hour later.
    sink = await SmtpSink.start({ policy: (address, attempt) => (address.startsWith('later-') && attempt === 1 ? { code: 451, text: '4.2.0 greylisted, try again later' } : undefined) });
    server = await startTestServer(
      { ports: { smtp: await freePort() }, outbound: { relay: sink.relay, firstRetrySeconds: 3600, maxRetrySeconds: 3600, lifetimeSeconds: 86_400 } },
      { log: captured.log },
    );
    ws = workspace({ defaultDomain: server.config.defaultDomain });
    ws.data = server.dataDir;
    if (server.config.store) ws.store = server.config.store;
  });
  after(async () => {
    await server.stop();
    await sink.stop();
  });

  test('account set MaxAccountSize: the next SMTP RCPT is refused (452 4.2.2); Key=default lifts it', async () => {
    await ok(ws, ['account', 'add', 'kim@example.test', '--password-file', file(ws, 'kim.txt', 'kim-pw\n')]);
    (await loggedInClient(server.ports.ximss, 'kim@example.test', 'kim-pw')).close();
    const raw = rfc822([['From', '<s@remote.example>'], ['To', '<kim@example.test>'], ['Subject', 'quota']], 'x'.repeat(500));
    const send = async () => (await smtpSession(server.ports.smtp!, [{ op: 'ehlo' }, sendmail('s@remote.example', ['kim@example.test'], raw)]))[1]!;
    assert.deepEqual(await send(), { code: 250, refused: {} });
    await ok(ws, ['account', 'set', 'kim@example.test', 'MaxAccountSize=100']);
    const full = await send();
    assert.equal(full.error, 'SMTPRecipientsRefused', JSON.stringify(full));
    assert.equal(full.refused!['kim@example.test']![0], 452);
    assert.match(full.refused!['kim@example.test']![1], /^4\.2\.2 /);
    await ok(ws, ['account', 'set', 'kim@example.test', 'MaxAccountSize=default']);
    assert.deepEqual(await send(), { code: 250, refused: {} });
  });

  test('domain dkim: the running server hears domainChanged', async () => {
    await ok(ws, ['domain', 'add', 'heard.example']);
    const heard: string[] = [];
    const stop = server.services.bus.on('domainChanged', (event) => void heard.push(event.domain));
    try {
      await ok(ws, ['domain', 'dkim', 'heard.example', '--selector', 'h1']);
      await eventually(async () => (heard.includes('heard.example') ? true : undefined), 'domainChanged for heard.example', 10_000);
    } finally {
      stop();
    }
  });

  test('domain set SignupAllowed: signup is offered and works at once, and is refused again after', async () => {
    await ok(ws, ['domain', 'add', 'join.example']);
    const client = await XimssClient.connect(server.ports.ximss);
    try {
      const features = async () => (await client.request('<listFeatures domain="join.example"/>')).messages[0]!;
      assert.equal((await features()).element('signup'), undefined);
      await ok(ws, ['domain', 'set', 'join.example', 'SignupAllowed=Yes']);
      assert.ok((await features()).element('signup'), 'signup is offered');
      assert.equal((await client.request('<signup userName="joiner" password="join-pw"/>')).response.attrs.errorText, undefined);
      await ok(ws, ['domain', 'set', 'join.example', 'SignupAllowed=']);
      assert.equal((await features()).element('signup'), undefined);
      assert.match((await client.request('<signup userName="late" password="late-pw"/>')).response.attrs.errorText ?? '', /not allowed/);
    } finally {
      client.close();
    }
    // The server's own account service logs the sign-up (component accounts).
    assert.ok(captured.events('account.created').some((l) => l.component === 'accounts' && l.account === 'joiner@join.example'));
  });

  test('queue retry: a deferred message leaves at once; the queue gauges count it', async () => {
    const raw = rfc822([['From', '<kim@example.test>'], ['To', '<later-1@remote.example>'], ['Subject', 'retried']], 'hello');
    const [, sent] = await smtpSession(server.ports.smtp!, [
      { op: 'ehlo' },
      { op: 'auth', mechanism: 'PLAIN', user: 'kim@example.test', password: 'kim-pw' },
      sendmail('kim@example.test', ['later-1@remote.example'], raw),
    ]).then((r) => [r[1], r[2]]);
    assert.deepEqual(sent, { code: 250, refused: {} });
    await eventually(async () => sink.refusals.some((r) => r.address === 'later-1@remote.example') || undefined, 'the first attempt (deferred)', 10_000);
    const deferred = await eventually(
      async () => (await server.services.store.queue.list()).find((e) => e.recipients.some((r) => r.address === 'later-1@remote.example' && r.attempts === 1 && !e.lease)),
      'the deferral recorded',
      10_000,
    );
    assert.ok(deferred.recipients[0]!.nextAttempt > Date.now() + 3_000_000, 'the next attempt is an hour away');
    const metrics = await server.services.metrics.text();
    assert.match(metrics, /^ximssd_queue_messages 1$/m);
    assert.match(metrics, /^ximssd_queue_recipients_pending 1$/m);
    const listed = (await ok(ws, ['queue'])).stdout;
    assert.match(listed, new RegExp(`^${deferred.message.id}\\t`, 'm'));
    const retried = await ok(ws, ['queue', 'retry']);
    assert.deepEqual(events(retried, 'queue.retried').map((l) => l.recipients), [1]);
    await eventually(async () => sink.transactions.some((t) => t.recipients.some((r) => r.address === 'later-1@remote.example')) || undefined, 'delivery after retry', 10_000);
    await eventually(async () => (await server.services.store.queue.get(deferred.message.id)) === undefined || undefined, 'the message leaves the queue', 10_000);
    assert.match(await server.services.metrics.text(), /^ximssd_queue_messages 0$/m);
  });
});
