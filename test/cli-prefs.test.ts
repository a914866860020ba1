/**
 * The command line's preferences (`node dist/main.js ...`, built by the test script):
 * `ximssd account prefs <address> [Key=Value...]` and `ximssd domain prefs <domain>
 * [Key=Value...]` show and set preferences, checked as prefsStore checks them; a running
 * server's sessions are told (prefsModified) and use the new values; the commands keep
 * clear of the server's modules.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { freePort, LOG_LOADS, loggedInClient, ok as ximssOk } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const DOMAIN = 'prefs-cli.test';
const temporary: string[] = [];
const children = new Set<ChildProcess>();

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}
type Workspace = { data: string; config: string };

function run(nodeArgs: string[], env: NodeJS.ProcessEnv = process.env, input = ''): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, nodeArgs, { timeout: 20_000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

async function initialized(): Promise<Workspace> {
  const root = mkdtempSync(join(tmpdir(), 'ximssd-cli-prefs-'));
  temporary.push(root);
  const config = join(root, 'config.json');
  writeFileSync(config, JSON.stringify({ defaultDomain: DOMAIN, host: '127.0.0.1', ports: { xmpp: 0, xmppS2s: 0, sip: 0 }, limits: { loginFailureDelayMs: 20 } }));
  const ws = { data: join(root, 'data'), config };
  const result = await run([MAIN, 'init', '--data', ws.data, '--config', ws.config], process.env, 'postmaster-pw\n');
  assert.equal(result.code, 0, `ximssd init failed: ${result.stderr}`);
  return ws;
}

function cli(ws: Workspace, ...args: string[]): Promise<Result> {
  return run([MAIN, ...args, '--data', ws.data, '--config', ws.config]);
}

async function ok(ws: Workspace, ...args: string[]): Promise<string> {
  const result = await cli(ws, ...args);
  assert.equal(result.code, 0, `ximssd ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

async function refused(ws: Workspace, expected: RegExp, ...args: string[]): Promise<void> {
  const result = await cli(ws, ...args);
  assert.equal(result.code, 1, `ximssd ${args.join(' ')} should fail: ${result.stdout}`);
  assert.match(result.stderr, expected);
}

/** Spawns `ximssd serve` on free ports and waits until it listens. */
async function serve(ws: Workspace): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const args = ['serve', '--data', ws.data, '--config', ws.config, '--ximss', String(port), '--http', String(await freePort()), '--smtp', '0'];
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 15_000;
  while (!/listening/.test(output)) {
    if (child.exitCode !== null) throw new Error(`ximssd serve exited: ${output}`);
    if (Date.now() > deadline) throw new Error(`ximssd serve did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { child, port };
}

/** The value a `prefs` listing shows for a name, with where it comes from. */
function shownPref(listing: string, name: string): string | undefined {
  const line = listing.split('\n').find((l) => l.trimStart().startsWith(`${name}\t`));
  return line?.trim().split('\t').slice(1).join('\t');
}

before(() => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: build first (npm run build)`);
});
after(() => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

describe('account prefs and domain prefs', () => {
  test('show; set (checked like prefsStore); Key= removes; CommuniGate zone names; domain defaults beneath', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `amy@${DOMAIN}`, '--password', 'pw-amy');
    let listing = await ok(ws, 'account', 'prefs', `amy@${DOMAIN}`);
    assert.equal(shownPref(listing, 'TimeZone'), 'HostOS\t(default)');
    assert.match(await ok(ws, 'account', 'prefs', `amy@${DOMAIN}`, 'TimeZone=NorthAmerica/Pacific', 'DeleteMode=Immediately', 'MyClientKey=x y'), /TimeZone, DeleteMode, MyClientKey changed/);
    listing = await ok(ws, 'account', 'prefs', `amy@${DOMAIN}`);
    assert.equal(shownPref(listing, 'TimeZone'), 'NorthAmerica/Pacific\t(custom)');
    assert.equal(shownPref(listing, 'DeleteMode'), 'Immediately\t(custom)');
    assert.equal(shownPref(listing, 'MyClientKey'), 'x y\t(custom)');

    await refused(ws, /TimeZone: must be HostOS/, 'account', 'prefs', `amy@${DOMAIN}`, 'TimeZone=Mars/Olympus');
    await refused(ws, /DeleteMode: must be one of/, 'account', 'prefs', `amy@${DOMAIN}`, 'DeleteMode=Sometimes');
    await refused(ws, /expected Key=Value/, 'account', 'prefs', `amy@${DOMAIN}`, 'TimeZone');
    await refused(ws, /given twice/, 'account', 'prefs', `amy@${DOMAIN}`, 'A=1', 'A=2');
    await refused(ws, /unknown account/, 'account', 'prefs', `nobody@${DOMAIN}`, 'A=1');
    assert.equal(shownPref(await ok(ws, 'account', 'prefs', `amy@${DOMAIN}`), 'TimeZone'), 'NorthAmerica/Pacific\t(custom)', 'refused changes change nothing');

    await ok(ws, 'domain', 'prefs', DOMAIN, 'TimeZone=Europe/Central', 'Language=German');
    const domainListing = await ok(ws, 'domain', 'prefs', DOMAIN);
    assert.equal(shownPref(domainListing, 'TimeZone'), 'Europe/Central\t(set on the domain)');
    assert.equal(shownPref(domainListing, 'TrashBox'), 'Trash\t(built-in default)');
    await refused(ws, /TimeZone: must be HostOS/, 'domain', 'prefs', DOMAIN, 'TimeZone=Nowhere');
    await refused(ws, /unknown domain/, 'domain', 'prefs', 'nosuch.test', 'Language=German');

    await ok(ws, 'account', 'prefs', `amy@${DOMAIN}`, 'TimeZone=', 'MyClientKey=default');
    listing = await ok(ws, 'account', 'prefs', `amy@${DOMAIN}`);
    assert.equal(shownPref(listing, 'TimeZone'), 'Europe/Central\t(default)', "the custom value went: the domain's default shows");
    assert.equal(shownPref(listing, 'Language'), 'German\t(default)');
    assert.equal(shownPref(listing, 'MyClientKey'), undefined);
  });

  test('a running server: its sessions are told (prefsModified) and use the new values', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `ben@${DOMAIN}`, '--password', 'pw-ben');
    const server = await serve(ws);
    try {
      const client = await loggedInClient(server.port, `ben@${DOMAIN}`, 'pw-ben');
      try {
        await ok(ws, 'account', 'prefs', `ben@${DOMAIN}`, 'TimeZone=(+0300) Saudi Arabia');
        await client.nextAsync('prefsModified');
        const time = (await ximssOk(client, '<readTime/>')).messages[0]!;
        const gmt = time.attrs.gmtTime!;
        const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})$/.exec(gmt)!;
        const shifted = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]! + 3, +m[5]!, +m[6]!)).toISOString().replace(/[-:]/g, '').slice(0, 15);
        assert.equal(time.attrs.localTime, shifted, 'GMT+3');

        await ok(ws, 'domain', 'prefs', DOMAIN, 'Language=French');
        await client.nextAsync('prefsModified');
        const prefs = (await ximssOk(client, '<prefsRead><name>Language</name></prefsRead>')).messages[0]!;
        assert.equal(prefs.element('Language')?.text(), 'French');
      } finally {
        client.close();
      }
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  test('the commands keep clear of the server and XML modules', async () => {
    const ws = await initialized();
    await ok(ws, 'account', 'add', `cat@${DOMAIN}`, '--password', 'pw-cat');
    const log = join(ws.data, '..', 'loaded.txt');
    const dist = new URL('../dist/', import.meta.url).href;
    for (const args of [
      ['account', 'prefs', `cat@${DOMAIN}`, 'TimeZone=NorthAmerica/Eastern'],
      ['domain', 'prefs', DOMAIN],
    ]) {
      writeFileSync(log, '');
      const result = await run(['--import', LOG_LOADS, MAIN, ...args, '--data', ws.data, '--config', ws.config], { ...process.env, LOAD_LOG: log });
      assert.equal(result.code, 0, result.stderr);
      const loaded = readFileSync(log, 'utf8').split('\n').filter((url) => url.startsWith(dist)).map((url) => url.slice(dist.length));
      assert.ok(loaded.includes('services/time-zones.js'), loaded.join(' '));
      const heavy = loaded.filter((file) => /^(server|tls)\.js$|^ximss\/|^xml\//.test(file));
      assert.deepEqual(heavy, [], `ximssd ${args.join(' ')} loaded them`);
    }
  });
});
