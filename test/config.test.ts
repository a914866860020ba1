/**
 * Configuration validation: broken configuration files and flags run through the real
 * command line (`node dist/main.js serve`): exit code 2, one line per problem naming the
 * file (or the command line), the key, what is wrong and what was given; no stack trace;
 * nothing created. Then loadConfig/mergeConfig in process: precedence, every problem at
 * once, the README's example.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { generate } from 'selfsigned';
import { ConfigError, defaultConfig, loadConfig, mergeConfig } from '../src/config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');
const temporary: string[] = [];

before(() => {
  assert.ok(existsSync(MAIN), `${MAIN} is missing: build first (npm run build)`);
});
after(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-config-'));
  temporary.push(dir);
  return dir;
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], options: { cwd?: string; uid?: number; gid?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 20_000, ...options }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * Runs `ximssd serve` with `config` (an object, or the file's text) as config.json in a fresh
 * directory; checks exit code 2, no stack trace, no output on stdout, nothing created; answers
 * the lines printed on standard error.
 */
async function refused(config: unknown, flags: string[] = [], options: { uid?: number; gid?: number; files?: Record<string, string> } = {}): Promise<string[]> {
  const dir = scratch();
  const data = join(dir, 'data');
  writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  if (options.uid !== undefined) chmodSync(dir, 0o755);
  const result = await run(['serve', '--config', 'config.json', '--data', data, ...flags], { cwd: dir, ...options });
  assert.equal(result.code, 2, `exit code (stderr: ${result.stderr})`);
  assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
  assert.equal(result.stdout, '', 'nothing started (no log)');
  assert.ok(!existsSync(data), 'the data directory is not created');
  assert.match(result.stderr, /\n$/);
  const lines = result.stderr.trimEnd().split('\n');
  for (const line of lines) assert.match(line, /^ximssd: /);
  return lines;
}

describe('broken configuration files: exit 2, one line per problem', () => {
  test('an unknown key, at the top and deeper, with the nearest known one suggested', async () => {
    assert.deepEqual(await refused({ hots: '127.0.0.1', outbound: { startls: 'required' }, limits: { bogus: 1 } }), [
      'ximssd: config.json: outbound.startls: unknown setting (did you mean outbound.starttls?)',
      'ximssd: config.json: limits.bogus: unknown setting',
      'ximssd: config.json: hots: unknown setting (did you mean host?)',
    ]);
  });

  test('a wrong type', async () => {
    assert.deepEqual(await refused({ ports: { http: '8100' }, metrics: { enabled: 'yes' }, limits: 5 }), [
      'ximssd: config.json: metrics.enabled: must be true or false (got "yes")',
      'ximssd: config.json: ports.http: must be a number (got "8100")',
      'ximssd: config.json: limits: must be an object ({ … }) (got 5)',
    ]);
  });

  test('a port out of range, a fractional port, a negative limit', async () => {
    assert.deepEqual(await refused({ ports: { smtp: 99999, ximss: 1.5 }, limits: { sessionsPerAccount: -1, idleTimeoutSeconds: 0 } }), [
      'ximssd: config.json: ports.ximss: must be a port number, 0 to 65535 (0 = any free port) (got 1.5)',
      'ximssd: config.json: ports.smtp: must be a port number, 0 to 65535 (0 = off) (got 99999)',
      'ximssd: config.json: limits.idleTimeoutSeconds: must be a number of seconds greater than 0 and at most 2147483 (got 0)',
      'ximssd: config.json: limits.sessionsPerAccount: must be a whole number, at least 1 (got -1)',
    ]);
  });

  test('outbound.starttls "requred"', async () => {
    assert.deepEqual(await refused({ outbound: { starttls: 'requred' } }), [
      'ximssd: config.json: outbound.starttls: must be one of opportunistic, required, off (got "requred")',
    ]);
  });

  test('a log level that does not exist', async () => {
    assert.deepEqual(await refused({ log: { level: 'verbose' } }), [
      'ximssd: config.json: log.level: must be one of trace, debug, info, warn, error, fatal, silent (got "verbose")',
    ]);
  });

  test('metrics.allow entries that are neither addresses nor CIDR prefixes', async () => {
    assert.deepEqual(await refused({ metrics: { allow: ['10.0.0.0/8', '10.0.0.0/33', 'localhost', 'fd00::/8', '::1/129'] } }), [
      'ximssd: config.json: metrics.allow[1]: must be an IP address or a CIDR prefix (such as 10.0.0.0/8 or fd00::/8) (got "10.0.0.0/33")',
      'ximssd: config.json: metrics.allow[2]: must be an IP address or a CIDR prefix (such as 10.0.0.0/8 or fd00::/8) (got "localhost")',
      'ximssd: config.json: metrics.allow[4]: must be an IP address or a CIDR prefix (such as 10.0.0.0/8 or fd00::/8) (got "::1/129")',
    ]);
  });

  test('relay, store, node id, URLs, host', async () => {
    assert.deepEqual(
      await refused({
        outbound: { relay: 'smtp.example.com:0' },
        store: 'mysql://ximssd:secret@db/ximssd',
        cluster: { nodeId: 'node-1', internalUrl: 'ftp://10.0.0.1' },
        publicUrl: 'mail.example.com',
        host: 'not a host',
      }),
      [
        'ximssd: config.json: store: must be empty (SQLite in the data directory) or a postgres:// URL',
        'ximssd: config.json: cluster.nodeId: must be empty (a random id at each start) or a number from 1 to 999999999, in quotes (got "node-1")',
        'ximssd: config.json: cluster.internalUrl: must be empty or an http:// URL (got "ftp://10.0.0.1")',
        'ximssd: config.json: host: must be an IP address (0.0.0.0 or :: for every address) or a host name (got "not a host")',
        'ximssd: config.json: publicUrl: must be empty or an http:// or https:// URL (got "mail.example.com")',
        `ximssd: config.json: outbound.relay: must be empty (to each domain's MX hosts) or host:port (got "smtp.example.com:0")`,
      ],
    );
  });

  test('a password is never shown', async () => {
    const lines = await refused({ outbound: { relayPassword: 12345 } });
    assert.deepEqual(lines, ['ximssd: config.json: outbound.relayPassword: must be a string (in quotes)']);
  });

  test('rules between keys', async () => {
    assert.deepEqual(await refused({ cluster: { heartbeatSeconds: 30 }, limits: { httpHeadersSeconds: 400 } }), [
      'ximssd: config.json: cluster.nodeTimeoutSeconds: must be greater than cluster.heartbeatSeconds (30) (got 20)',
      'ximssd: config.json: limits.httpHeadersSeconds: must be at most limits.httpRequestSeconds (300) (got 400)',
    ]);
  });

  test('a certificate without its key, and the other way round', async () => {
    assert.deepEqual(await refused({ tls: { certFile: '/etc/ximssd/cert.pem' } }), [
      'ximssd: config.json: tls.keyFile: must be set together with tls.certFile (both, or neither for a generated certificate)',
    ]);
    assert.deepEqual(await refused({ tls: { keyFile: '/etc/ximssd/key.pem' } }), [
      'ximssd: config.json: tls.certFile: must be set together with tls.keyFile (both, or neither for a generated certificate)',
    ]);
  });

  test('certificate files that are missing, not PEM, or not a pair', async () => {
    const one = await generate([{ name: 'commonName', value: 'one.test' }], { keyType: 'ec', curve: 'P-256' });
    const two = await generate([{ name: 'commonName', value: 'two.test' }], { keyType: 'ec', curve: 'P-256' });
    const files = { 'cert.pem': one.cert, 'key.pem': one.private, 'other-key.pem': two.private, 'notes.txt': 'not a certificate\n' };
    assert.deepEqual(await refused({ tls: { certFile: 'missing.pem', keyFile: 'key.pem' } }, [], { files }), [
      'ximssd: config.json: tls.certFile: cannot be read: no such file (got "missing.pem")',
    ]);
    assert.deepEqual(await refused({ tls: { certFile: 'key.pem', keyFile: 'notes.txt' } }, [], { files }), [
      'ximssd: config.json: tls.certFile: is not a PEM certificate (-----BEGIN CERTIFICATE-----) (got "key.pem")',
      'ximssd: config.json: tls.keyFile: is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----) (got "notes.txt")',
    ]);
    assert.deepEqual(await refused({ tls: { certFile: 'cert.pem', keyFile: 'other-key.pem' } }, [], { files }), [
      'ximssd: config.json: tls.keyFile: is not the key of the certificate in tls.certFile (got "other-key.pem")',
    ]);
  });

  test('a certificate file the server cannot read (permission denied)', async () => {
    const pems = await generate([{ name: 'commonName', value: 'one.test' }], { keyType: 'ec', curve: 'P-256' });
    const files = { 'cert.pem': pems.cert, 'key.pem': pems.private };
    // As root every file is readable: the server then runs as nobody, as a packaged one runs as its own user.
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const dir = scratch();
    chmodSync(dir, 0o755);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o644 });
    chmodSync(join(dir, 'key.pem'), 0o000);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') } }), { mode: 0o644 });
    const data = join(dir, 'data');
    const result = await run(['serve', '--config', join(dir, 'config.json'), '--data', data], { cwd: dir, ...asUser });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr, `ximssd: ${join(dir, 'config.json')}: tls.keyFile: cannot be read: permission denied (got ${JSON.stringify(join(dir, 'key.pem'))})\n`);
    assert.ok(!existsSync(data));
  });

  test('invalid JSON: the file, the line and the column', async () => {
    assert.deepEqual(await refused('{\n  "host": "127.0.0.1",\n  "ports": { "http": 8100, }\n}\n'), [
      'ximssd: config.json: line 3, column 28: not valid JSON: Expected double-quoted property name',
    ]);
    assert.deepEqual(await refused('{\n  "host": "127.0.0.1"\n  "store": ""\n}\n'), [
      "ximssd: config.json: line 3, column 3: not valid JSON: Expected ',' or '}' after property value",
    ]);
    assert.deepEqual(await refused('{ "host": \n'), ['ximssd: config.json: line 2, column 1: not valid JSON: unexpected end of the file']);
    assert.deepEqual(await refused('["not", "an", "object"]'), ['ximssd: config.json: must hold a JSON object ({ … })']);
  });

  test('a configuration file that does not exist', async () => {
    const dir = scratch();
    const result = await run(['serve', '--config', join(dir, 'nope.json'), '--data', join(dir, 'data')]);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, `ximssd: ${join(dir, 'nope.json')}: cannot be read: no such file\n`);
    assert.ok(!existsSync(join(dir, 'data')));
  });

  test('every problem is reported at once', async () => {
    const lines = await refused({ ports: { smtp: 99999 }, outbound: { starttls: 'requred' }, log: { level: 'loud' }, bogus: true });
    assert.equal(lines.length, 4, lines.join('\n'));
  });
});

describe('flags: the same validation, exit 2', () => {
  test('a port flag out of range or not a number: one line naming the flag', async () => {
    assert.deepEqual(await refused({}, ['--smtp', '99999']), ["ximssd: option '--smtp <port>' argument '99999' is invalid. It must be a port number, 0 to 65535."]);
    assert.deepEqual(await refused({}, ['--http', 'eighty']), ["ximssd: option '--http <port>' argument 'eighty' is invalid. It must be a port number, 0 to 65535."]);
  });

  test('flags that the configuration schema refuses name the command line, the key and the flag', async () => {
    assert.deepEqual(await refused({}, ['--log-level', 'loud', '--relay', 'relay.example:99999', '--host', 'a b']), [
      'ximssd: command line: host (--host): must be an IP address (0.0.0.0 or :: for every address) or a host name (got "a b")',
      'ximssd: command line: log.level (--log-level): must be one of trace, debug, info, warn, error, fatal, silent (got "loud")',
      "ximssd: command line: outbound.relay (--relay): must be empty (to each domain's MX hosts) or host:port (got \"relay.example:99999\")",
    ]);
  });

  test('a flag fixes what the file got wrong; the file and the flags are both reported', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ log: { level: 'loud' }, outbound: { starttls: 'requred' } }));
    const result = await run(['serve', '--config', 'config.json', '--data', join(dir, 'data'), '--log-level', 'quiet'], { cwd: dir });
    assert.equal(result.code, 2);
    assert.deepEqual(result.stderr.trimEnd().split('\n'), [
      'ximssd: command line: log.level (--log-level): must be one of trace, debug, info, warn, error, fatal, silent (got "quiet")',
      'ximssd: config.json: outbound.starttls: must be one of opportunistic, required, off (got "requred")',
    ]);
  });

  test('an unknown option, a missing argument: one line, exit 2', async () => {
    assert.deepEqual(await refused({}, ['--bogus']), ["ximssd: unknown option '--bogus'"]);
    assert.deepEqual(await refused({}, ['--relay']), ["ximssd: option '--relay <host:port>' argument missing"]);
  });

  test('--help and --version exit 0', async () => {
    const help = await run(['serve', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: ximssd serve/);
    const version = await run(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  });

  test('the administration commands validate the configuration too', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ defaultDomain: 'not a domain' }));
    const result = await run(['domain', 'list', '--config', 'config.json', '--data', join(dir, 'data')], { cwd: dir });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr, 'ximssd: config.json: defaultDomain: must be a domain name (got "not a domain")\n');
    assert.ok(!existsSync(join(dir, 'data')));
  });
});

describe('loadConfig and mergeConfig', () => {
  test('defaults < file < flags', () => {
    const dir = scratch();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ host: '127.0.0.1', ports: { http: 9000, smtp: 0 }, limits: { idleTimeoutSeconds: 60 } }));
    const config = loadConfig(file, { ports: { http: 9100 }, dataDir: 'relative' });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.ports.http, 9100, 'the flag wins');
    assert.equal(config.ports.smtp, 0, 'the file wins over the default');
    assert.equal(config.ports.ximss, 11024, 'the default stays');
    assert.equal(config.limits.idleTimeoutSeconds, 60);
    assert.equal(config.limits.sessionsPerAccount, defaultConfig().limits.sessionsPerAccount);
    assert.equal(config.shutdownSeconds, 5);
    assert.equal(config.dataDir, join(process.cwd(), 'relative'), 'the data directory is made absolute');
  });

  test('a configuration with certificate files that are a pair loads', async () => {
    const dir = scratch();
    const pems = await generate([{ name: 'commonName', value: 'ok.test' }], { keyType: 'rsa', keySize: 2048 });
    writeFileSync(join(dir, 'cert.pem'), pems.cert);
    writeFileSync(join(dir, 'key.pem'), pems.private);
    const config = loadConfig(undefined, { tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') } });
    assert.equal(config.tls.certFile, join(dir, 'cert.pem'));
  });

  test('the defaults are valid; mergeConfig throws a ConfigError listing every problem', () => {
    assert.deepEqual(mergeConfig(defaultConfig(), {}, 'test'), defaultConfig());
    assert.throws(
      () => mergeConfig(defaultConfig(), { ports: { smtp: -1 }, outbound: { concurrency: 0, starttls: 'sometimes' } }, 'overrides'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(
          err.problems.map((p) => `${p.origin}|${p.path}`),
          ['overrides|ports.smtp', 'overrides|outbound.starttls', 'overrides|outbound.concurrency'],
        );
        assert.equal(err.lines().length, 3);
        return true;
      },
    );
  });

  test('the example configuration in the README is valid', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Configuration file'));
    const example = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
    assert.ok(example, 'the README has a JSON example under "Configuration file"');
    // The certificate files it names do not exist here: mergeConfig checks everything else.
    const config = mergeConfig(defaultConfig(), JSON.parse(example), 'README.md');
    assert.equal(config.outbound.starttls, 'opportunistic');
  });
});

describe('SIP settings', () => {
  test('the defaults: SIP on 5060 (UDP and TCP), TLS off, media ports 20000-29999', () => {
    const config = defaultConfig();
    assert.equal(config.ports.sip, 5060);
    assert.equal(config.ports.sipTls, 0);
    assert.deepEqual(config.sip.mediaPorts, { min: 20000, max: 29999 });
    assert.equal(config.sip.publicHost, '');
    assert.equal(mergeConfig(config, { ports: { sip: 0, sipTls: 5061 }, sip: { publicHost: 'sip.example.com', idleSeconds: 60 } }, 'test').ports.sipTls, 5061);
  });

  test('a bad public host, media ports out of range or the wrong way round, a misspelt key', () => {
    assert.throws(
      () =>
        mergeConfig(defaultConfig(), { ports: { sip: 65536 }, sip: { publicHost: 'not a host', mediaPorts: { min: 30000, max: 20000 }, conections: 5 } }, 'overrides'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.lines(), [
          'ximssd: overrides: ports.sip: must be a port number, 0 to 65535 (0 = off) (got 65536)',
          'ximssd: overrides: sip.publicHost: must be empty (the local address) or an IP address or host name (got "not a host")',
          'ximssd: overrides: sip.conections: unknown setting (did you mean sip.connections?)',
          'ximssd: overrides: sip.mediaPorts.max: must be greater than sip.mediaPorts.min (30000) (got 20000)',
        ]);
        return true;
      },
    );
    assert.throws(() => mergeConfig(defaultConfig(), { sip: { mediaPorts: { min: 80, max: 70000 } } }, 'overrides'), /sip\.mediaPorts\.min: must be a UDP port number, 1024 to 65535 \(got 80\)[\s\S]*sip\.mediaPorts\.max/);
  });

  test('--sip and --sip-tls are port flags; the schema names them', async () => {
    assert.deepEqual(await refused({}, ['--sip', '70000']), ["ximssd: option '--sip <port>' argument '70000' is invalid. It must be a port number, 0 to 65535."]);
    const flags = loadConfig(undefined, { ports: { sip: 5080, sipTls: 5081 } });
    assert.deepEqual([flags.ports.sip, flags.ports.sipTls], [5080, 5081]);
  });
});
