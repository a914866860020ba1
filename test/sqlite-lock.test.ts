/**
 * What only the SQLite engine does: one serving process per data directory (the
 * `ximssd.pid` lock, checked in-process and against real child processes, stale files after
 * a crash taken over, by exactly one of several starting at once), the command line beside a
 * server, and the change relay from the command line to the server (a table it polls).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { openStore, StoreLockedError } from '../src/store/open.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import type { Store } from '../src/store/store.js';

const OPEN_TS = pathToFileURL(fileURLToPath(new URL('../src/store/open.ts', import.meta.url))).href;

let dir: string;
const opened: Store[] = [];
const children: ChildProcessWithoutNullStreams[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ximssd-lock-'));
});
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

async function open(serve: boolean): Promise<Store> {
  const store = await openStore(undefined, dir, { serve });
  opened.push(store);
  return store;
}

const pidFile = (): string => join(dir, 'ximssd.pid');

/**
 * A child process that opens the data directory (serving), prints `locked <message>` or
 * `open <pid>`, and keeps the store open until its stdin ends (then closes it and exits).
 */
function child(): { process: ChildProcessWithoutNullStreams; line: Promise<string> } {
  const script = `
    const { openStore, StoreLockedError } = await import(${JSON.stringify(OPEN_TS)});
    let store;
    try {
      store = await openStore(undefined, ${JSON.stringify(dir)}, { serve: true });
      console.log('open ' + process.pid);
    } catch (err) {
      console.log((err instanceof StoreLockedError ? 'locked ' : 'error ') + err.message);
      process.exit(0);
    }
    process.stdin.resume();
    process.stdin.on('end', async () => { await store.close(); process.exit(0); });
  `;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'pipe' });
  children.push(proc);
  let out = '';
  let err = '';
  proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const line = new Promise<string>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    proc.on('exit', (code) => reject(new Error(`child exited (${code}) before answering: ${err}`)));
  });
  return { process: proc, line };
}

/** A pid that names no process: one that ran and was reaped. */
function deadPid(): number {
  const result = spawnSync(process.execPath, ['-e', '0']);
  assert.ok(result.pid);
  return result.pid;
}

describe('the data directory lock', () => {
  test('a second serving open in the same process is refused, naming the pid; after close it can be served again', async () => {
    const first = await open(true);
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(process.pid));
    await assert.rejects(open(true), (err: unknown) => {
      assert.ok(err instanceof StoreLockedError);
      assert.match(err.message, new RegExp(`^the data directory .+ is in use by another ximssd server \\(pid ${process.pid}\\); stop it first`));
      return true;
    });
    // The refused open left the lock as it was.
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(process.pid));
    await first.close();
    assert.equal(existsSync(pidFile()), false);
    const again = await open(true);
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(process.pid));
    await again.close();
  });

  test('a server in another process: refused here, naming its pid; and it refuses this one', async () => {
    const server = child();
    const answer = await server.line;
    assert.match(answer, /^open \d+$/);
    const pid = Number(answer.split(' ')[1]);
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(pid));
    await assert.rejects(open(true), (err: unknown) => err instanceof StoreLockedError && err.message.includes(`(pid ${pid})`));

    // The other way round: this process serves, a child is refused.
    server.process.stdin.end();
    await once(server.process, 'exit');
    assert.equal(existsSync(pidFile()), false);
    await open(true);
    const second = child();
    assert.equal(await second.line, `locked the data directory ${dir} is in use by another ximssd server (pid ${process.pid}); stop it first, or give this one its own --data`);
  });

  test('the command line opens the store beside a server, and can change it', async () => {
    const server = await open(true);
    const cli = await open(false);
    await cli.domains.create('beside.test');
    assert.deepEqual((await server.domains.list()).map((d) => d.name), ['beside.test']);
    await cli.close();
    // Closing a store that does not hold the lock leaves the server's lock alone.
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(process.pid));
  });

  test('a stale pid file (a dead process, or garbage) is taken over', async () => {
    writeFileSync(pidFile(), `${deadPid()}\n`);
    const store = await open(true);
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(process.pid));
    await store.close();

    // Garbage old enough not to be a server between creating the file and writing its pid.
    writeFileSync(pidFile(), 'not a pid');
    const past = new Date(Date.now() - 60_000);
    const { utimesSync } = await import('node:fs');
    utimesSync(pidFile(), past, past);
    await (await open(true)).close();
  });

  test('this process\'s own pid in a file it does not hold is stale (a restarted container\'s pid 1)', async () => {
    writeFileSync(pidFile(), `${process.pid}\n`);
    const store = await open(true);
    await assert.rejects(open(true), StoreLockedError);
    await store.close();
    assert.equal(existsSync(pidFile()), false);
  });

  test('a server killed outright leaves its pid file, which the next server takes over', async () => {
    const server = child();
    assert.match(await server.line, /^open \d+$/);
    server.process.kill('SIGKILL');
    await once(server.process, 'exit');
    assert.ok(existsSync(pidFile()));
    await open(true);
    assert.equal(readFileSync(pidFile(), 'utf8').trim(), String(process.pid));
  });

  test('a server that exits without closing the store releases the lock', async () => {
    const script = `
      const { openStore } = await import(${JSON.stringify(OPEN_TS)});
      await openStore(undefined, ${JSON.stringify(dir)}, { serve: true });
      process.exit(0);
    `;
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(existsSync(pidFile()), false);
  });

  test('of several servers starting at once on a stale pid file, exactly one wins', async () => {
    for (let round = 0; round < 2; round++) {
      writeFileSync(pidFile(), `${deadPid()}\n`);
      const starting = [child(), child(), child()];
      const answers = await Promise.all(starting.map((c) => c.line));
      const winners = answers.filter((a) => a.startsWith('open '));
      assert.equal(winners.length, 1, answers.join('\n'));
      const winner = winners[0]!.slice('open '.length);
      for (const a of answers) if (!a.startsWith('open ')) assert.ok(a.startsWith('locked ') && a.includes(`(pid ${winner})`), a);
      assert.equal(readFileSync(pidFile(), 'utf8').trim(), winner);
      for (const c of starting) c.process.stdin.end();
      await Promise.all(starting.map((c) => (c.process.exitCode === null ? once(c.process, 'exit') : undefined)));
      assert.equal(existsSync(pidFile()), false);
    }
  });
});

describe('the change relay', () => {
  test('the command line\'s messages reach the server\'s listener in order, not its own', async () => {
    const server = await open(true);
    const cli = await open(false);
    const heard: string[] = [];
    const heardByCli: string[] = [];
    const stop = await server.relay.listen((m) => heard.push(m), () => assert.fail('no resync on SQLite'));
    const stopCli = await cli.relay.listen((m) => heardByCli.push(m), () => assert.fail('no resync on SQLite'));
    for (let i = 0; i < 5; i++) await cli.relay.send(`{"n":${i}}`);
    for (let waited = 0; heard.length < 5 && waited < 3000; waited += 50) await sleep(50);
    assert.deepEqual(heard, [0, 1, 2, 3, 4].map((i) => `{"n":${i}}`));
    assert.deepEqual(heardByCli, []);

    // Another command-line process: its listener hears the first one's messages, too.
    const other = await open(false);
    const heardByOther: string[] = [];
    const stopOther = await other.relay.listen((m) => heardByOther.push(m), () => {});
    await cli.relay.send('later');
    for (let waited = 0; (heard.length < 6 || heardByOther.length < 1) && waited < 3000; waited += 50) await sleep(50);
    assert.equal(heard.at(-1), 'later');
    assert.deepEqual(heardByOther, ['later']); // not what was sent before it listened
    await Promise.all([stop(), stopCli(), stopOther()]);
  });

  test('the server\'s own sends write nothing', async () => {
    const server = await open(true);
    assert.ok(server instanceof SqliteStore);
    const cli = await open(false);
    const heard: string[] = [];
    const stop = await cli.relay.listen((m) => heard.push(m), () => {});
    const before = server.db.pragma('data_version', { simple: true });
    for (let i = 0; i < 10; i++) await server.relay.send(`{"n":${i}}`);
    assert.equal((server.db.prepare('SELECT count(*) AS n FROM relay_messages').get() as { n: number }).n, 0);
    await sleep(600);
    assert.deepEqual(heard, []);
    assert.equal(server.db.pragma('data_version', { simple: true }), before);
    await stop();
  });

  test('rows older than a minute are pruned by senders', async () => {
    const cli = await open(false);
    assert.ok(cli instanceof SqliteStore);
    cli.db.prepare('INSERT INTO relay_messages (origin, message, created) VALUES (?, ?, ?)').run('old', 'x', Date.now() - 120_000);
    await cli.relay.send('new');
    assert.deepEqual((cli.db.prepare('SELECT message FROM relay_messages').all() as { message: string }[]).map((r) => r.message), ['new']);
  });
});
