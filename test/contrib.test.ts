/**
 * The deployment files in contrib/: the systemd unit (`systemd-analyze verify`, its hardening
 * and exposure score) and the Dockerfile (no Docker engine here: its instructions are parsed
 * and checked against the repository after `npm ci` and the build: every COPY source exists,
 * the command is the one `npm start` runs, the health check and the image conventions).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { defaultConfig } from '../src/config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const UNIT = join(ROOT, 'contrib', 'systemd', 'ximssd.service');
const DOCKERFILE = join(ROOT, 'contrib', 'docker', 'Dockerfile');
const temporary: string[] = [];
after(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { env: options.env ?? process.env, timeout: options.timeout ?? 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** systemd-analyze, installing Debian's systemd package when missing (as root); else the reason it cannot be had. */
async function systemdAnalyze(): Promise<{ path: string } | { missing: string }> {
  const found = findOnPath('systemd-analyze');
  if (found) return { path: found };
  if (!isRoot) return { missing: 'systemd-analyze is not installed and the tests do not run as root to install it (apt-get install systemd)' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let install = await run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '--no-install-recommends', 'systemd'], { env, timeout: 600_000 });
  if (install.code !== 0) {
    // A fresh machine has no package lists yet.
    await run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update'], { env, timeout: 600_000 });
    install = await run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '--no-install-recommends', 'systemd'], { env, timeout: 600_000 });
  }
  const path = findOnPath('systemd-analyze');
  return path ? { path } : { missing: `apt-get could not install systemd: ${install.stderr.trim().split('\n').pop() ?? ''}` };
}

/** The unit's settings: `[Section] Key=Value` lines, values of repeated keys in order. */
function unitSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not a setting: ${line}`);
    const key = `${section}.${line.slice(0, eq).trim()}`;
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return settings;
}

describe('contrib/systemd/ximssd.service', () => {
  const text = readFileSync(UNIT, 'utf8');
  const settings = unitSettings(text);
  const one = (key: string): string | undefined => settings.get(key)?.at(-1);

  test('systemd-analyze verify accepts it without a warning, and its exposure score is low', async (t) => {
    const analyze = await systemdAnalyze();
    if ('missing' in analyze) return t.skip(analyze.missing);
    // verify checks that the ExecStart binary exists: a copy naming this machine's node.
    const dir = mkdtempSync(join(tmpdir(), 'ximssd-unit-'));
    temporary.push(dir);
    const copy = join(dir, 'ximssd.service');
    writeFileSync(copy, text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
    const verify = await run(analyze.path, ['verify', copy], { env: { ...process.env, SYSTEMD_LOG_COLOR: '0' } });
    assert.equal(verify.code, 0, verify.stderr);
    const ours = (verify.stdout + verify.stderr).split('\n').filter((line) => line.includes('ximssd'));
    assert.deepEqual(ours, [], 'no warning about the unit');

    // A unit naming a binary that does not exist fails: verify really looked.
    mkdirSync(join(dir, 'broken'));
    const broken = join(dir, 'broken', 'ximssd.service');
    writeFileSync(broken, text.replace(/^ExecStart=\/usr\/bin\/node /m, 'ExecStart=/nonexistent/node '));
    assert.notEqual((await run(analyze.path, ['verify', broken])).code, 0);

    // Exposure (0 safe … 10 unsafe): --threshold=25 fails above 2.5.
    const security = await run(analyze.path, ['security', '--offline=yes', '--threshold=25', '--no-pager', copy]);
    assert.equal(security.code, 0, `exposure above 2.5:\n${security.stdout.split('\n').slice(-3).join('\n')}`);
  });

  test('a dedicated user, the state directory 0700, umask 0077, the server command', () => {
    assert.equal(one('Service.User'), 'ximssd');
    assert.equal(one('Service.StateDirectory'), 'ximssd');
    assert.equal(one('Service.StateDirectoryMode'), '0700');
    assert.equal(one('Service.UMask'), '0077');
    const exec = one('Service.ExecStart')!.split(/\s+/);
    assert.deepEqual(exec.slice(0, 3), ['/usr/bin/node', '/opt/ximssd/dist/main.js', 'serve']);
    assert.equal(exec[exec.indexOf('--data') + 1], '/var/lib/ximssd', 'the data directory is the state directory');
    assert.equal(exec[exec.indexOf('--config') + 1], '/etc/ximssd/config.json');
    // The path inside the release is the one package.json runs.
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.equal(posix.relative('/opt/ximssd', exec[1]!), pkg.bin.ximssd);
  });

  test('stopping and restarting: SIGTERM, a stop timeout above shutdownSeconds, restart on failure but not on a configuration error', () => {
    assert.equal(one('Service.KillSignal'), 'SIGTERM');
    const timeout = Number(one('Service.TimeoutStopSec'));
    assert.ok(timeout > defaultConfig().shutdownSeconds, `TimeoutStopSec ${timeout}`);
    assert.equal(one('Service.Restart'), 'on-failure');
    assert.equal(one('Service.RestartPreventExitStatus'), '2');
    assert.ok(Number(one('Service.LimitNOFILE')) >= 65536);
  });

  test('hardening options, and no MemoryDenyWriteExecute (V8 compiles code at run time)', () => {
    for (const key of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups']) {
      assert.equal(one(`Service.${key}`), 'yes', key);
    }
    assert.equal(one('Service.ProtectSystem'), 'strict');
    assert.equal(one('Service.RestrictAddressFamilies'), 'AF_INET AF_INET6 AF_UNIX');
    assert.equal(one('Service.AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('Service.CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(settings.get('Service.SystemCallFilter')?.[0], '@system-service');
    assert.equal(settings.get('Service.MemoryDenyWriteExecute'), undefined);
  });
});

/** A Dockerfile's instructions (continuation lines joined, comments dropped), with their stage. */
interface Instruction {
  stage: number;
  keyword: string;
  args: string;
}

function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    const whole = (pending + line).trim();
    pending = '';
    if (whole === '') continue;
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(whole);
    assert.ok(m, `not an instruction: ${whole}`);
    const keyword = m[1]!.toUpperCase();
    if (keyword === 'FROM') stage++;
    instructions.push({ stage, keyword, args: m[2]!.replace(/\s+/g, ' ') });
  }
  return instructions;
}

/** The exec form (`["node", "x"]`) of CMD/ENTRYPOINT/HEALTHCHECK CMD. */
function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  assert.ok(Array.isArray(parsed) && parsed.every((a) => typeof a === 'string'), `not the exec form: ${args}`);
  return parsed as string[];
}

/** The patterns of .dockerignore, and whether a path (relative to the root) is left out of the build context. */
function dockerignore(): (path: string) => boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const toRegex = (pattern: string): RegExp =>
    new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}(/.*)?$`);
  return (path) => patterns.some((p) => !p.startsWith('!') && toRegex(p).test(path));
}

describe('contrib/docker/Dockerfile', () => {
  const instructions = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  const stages = instructions.filter((i) => i.keyword === 'FROM');
  const last = stages.length - 1;
  const runtime = instructions.filter((i) => i.stage === last);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };

  test('two stages on the official Node 20 Debian image', () => {
    assert.equal(stages.length, 2);
    for (const from of stages) assert.match(from.args, /^node:20-bookworm-slim( AS \w+)?$/i);
    const build = instructions.filter((i) => i.stage === 0 && i.keyword === 'RUN').map((i) => i.args);
    assert.ok(build.some((r) => /apt-get install .*python3.*make.*g\+\+/.test(r)), 'the compilers better-sqlite3 needs');
    assert.ok(build.some((r) => /\bnpm ci\b/.test(r)));
    assert.ok(build.some((r) => /\bnpm run build\b/.test(r) && /\bnpm prune --omit=dev\b/.test(r)));
  });

  test('every COPY source exists in the repository (after npm ci and the build) and is in the build context', () => {
    const ignored = dockerignore();
    const workdir = (stage: number): string => instructions.filter((i) => i.stage === stage && i.keyword === 'WORKDIR').at(-1)?.args ?? '/';
    const stageNames = new Map(stages.map((s, i) => [/ AS (\w+)$/i.exec(s.args)?.[1]?.toLowerCase() ?? String(i), i]));
    const copies = instructions.filter((i) => i.keyword === 'COPY');
    assert.ok(copies.length > 0);
    const runtimeFiles: string[] = [];
    for (const copy of copies) {
      const words = copy.args.split(' ');
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      const sources = paths.slice(0, -1);
      for (const source of sources) {
        let relative: string;
        if (from === undefined) {
          relative = posix.normalize(source).replace(/\/$/, '');
          assert.ok(!ignored(relative), `${source} is excluded by .dockerignore`);
        } else {
          const stage = stageNames.get(from.toLowerCase());
          assert.ok(stage !== undefined, `no stage ${from}`);
          relative = posix.relative(workdir(stage), source);
          assert.ok(!relative.startsWith('..'), `${source} is outside the build stage's ${workdir(stage)}`);
        }
        assert.ok(existsSync(join(ROOT, relative)), `COPY ${source}: ${relative} is missing (npm ci and npm run build make node_modules and dist)`);
        if (copy.stage === last) runtimeFiles.push(relative);
      }
    }
    // The runtime has what `npm start` needs.
    for (const needed of ['package.json', 'node_modules', 'dist', 'resources']) assert.ok(runtimeFiles.includes(needed), `${needed} is copied into the runtime image`);
    assert.ok(statSync(join(ROOT, 'dist', 'main.js')).isFile());
    assert.ok(existsSync(join(ROOT, 'node_modules', 'better-sqlite3')), 'a production dependency is in node_modules');
    // The host's own build output never enters the context.
    for (const path of ['node_modules', 'dist', 'data', '.git']) assert.ok(ignored(path), `.dockerignore leaves out ${path}`);
  });

  test('the command is the one npm start runs, on the data volume', () => {
    const entrypoint = execForm(runtime.find((i) => i.keyword === 'ENTRYPOINT')!.args);
    const cmd = execForm(runtime.find((i) => i.keyword === 'CMD')!.args);
    const command = [...entrypoint, ...cmd];
    assert.deepEqual(command.slice(0, 3), ['node', pkg.bin.ximssd, 'serve']);
    assert.match(pkg.scripts.start!, new RegExp(`\\bnode ${pkg.bin.ximssd.replace('.', '\\.')} serve$`));
    const volume = runtime.find((i) => i.keyword === 'VOLUME')!.args;
    assert.equal(command[command.indexOf('--data') + 1], volume);
    assert.equal(volume, '/var/lib/ximssd');
  });

  test('not root, the default ports exposed, SIGTERM to stop', () => {
    const user = runtime.filter((i) => i.keyword === 'USER').at(-1)?.args;
    assert.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user}`);
    const { ports } = defaultConfig();
    assert.deepEqual(runtime.find((i) => i.keyword === 'EXPOSE')!.args.split(' ').map(Number).sort(), [ports.ximss, ports.http, ports.smtp].sort());
    assert.equal(runtime.find((i) => i.keyword === 'STOPSIGNAL')!.args, 'SIGTERM');
  });

  test('the health check asks /healthz of the HTTP listener with node itself, and fails when it is not healthy', async () => {
    const healthcheck = runtime.find((i) => i.keyword === 'HEALTHCHECK')!.args;
    const m = /^((?:--\S+ )*)CMD (\[.*\])$/.exec(healthcheck);
    assert.ok(m, healthcheck);
    const command = execForm(m[2]!);
    assert.equal(command[0], 'node');
    const script = command[command.indexOf('-e') + 1]!;
    assert.ok(script.includes(`http://127.0.0.1:${defaultConfig().ports.http}/healthz`), script);

    // Run the check's script against a listener answering /healthz 200, then 503, then nothing.
    let status = 200;
    const asked: string[] = [];
    const probe = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      res.writeHead(status).end();
    });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    const check = script.replace(`127.0.0.1:${defaultConfig().ports.http}`, `127.0.0.1:${port}`);
    try {
      assert.equal((await run(process.execPath, ['-e', check])).code, 0);
      status = 503;
      assert.equal((await run(process.execPath, ['-e', check])).code, 1);
    } finally {
      await new Promise((resolve) => probe.close(resolve));
    }
    assert.equal((await run(process.execPath, ['-e', check])).code, 1, 'nothing listening');
    assert.deepEqual(asked, ['/healthz', '/healthz']);
  });
});
