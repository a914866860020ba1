/**
 * WebDAV beside Apache's mod_dav (Debian apache2) on the same data, on loopback: a PROPFIND
 * depth 1 of a directory of 1,000 files, and a GET of a 100 MB file; ximssd's RSS sampled
 * during its GETs. Both run at once and are asked in turn (see measureBoth). Apache runs with a configuration of its own (a private ServerRoot and
 * DocumentRoot, a free loopback port), started and stopped by its pid; it is installed with
 * apt-get when missing.
 */
import { chmodSync, chownSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execFileSync } from 'node:child_process';
import { ensureDebianPackages } from '../../test/fixtures/debian.js';
import { median } from './figures.js';
import { freePort, rssKb, sleep, spawnChild, type Child } from './proc.js';
import { PASSWORD, USER, startXimssd, type Ximssd } from './ximssd.js';

const APACHE = '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';
const PROPFIND_BODY =
  '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>';

export interface WebdavParams {
  files: number;
  bigBytes: number;
  propfindRuns: number;
  getRuns: number;
  /** Write a V8 CPU profile of ximssd here (--profile). */
  cpuProfileDir?: string;
}

export interface Side {
  propfindMs: number;
  getMs: number;
  propfindBytes: number;
}

export type WebdavResult =
  | { available: false; reason: string }
  | {
      available: true;
      ximssd: Side;
      apache: Side | undefined;
      apacheReason?: string;
      /** ximssd RSS before and its peak during the big GETs (KiB). */
      rssBeforeKb: number;
      rssPeakKb: number;
    };

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

interface Target {
  port: number;
  auth?: string;
}

/** One request; the body is counted and dropped. */
function request(target: Target, method: string, path: string, options: { body?: string | Readable; headers?: http.OutgoingHttpHeaders; length?: number } = {}): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...options.headers };
    if (target.auth) headers.Authorization = target.auth;
    if (typeof options.body === 'string') headers['Content-Length'] = Buffer.byteLength(options.body);
    else if (options.length !== undefined) headers['Content-Length'] = options.length;
    const req = http.request({ host: '127.0.0.1', port: target.port, method, path, headers, agent }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.body instanceof Readable) options.body.pipe(req);
    else req.end(options.body);
  });
}

/** The big file's content: a repeating pattern, generated as it is sent. */
function bigStream(bytes: number): Readable {
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31 + 7) & 0xff;
  let left = bytes;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

function smallContent(i: number): string {
  return `file ${i}\n`.repeat(8);
}

async function expect(what: string, promise: Promise<{ status: number; bytes: number }>, statuses: number[]): Promise<{ status: number; bytes: number }> {
  const result = await promise;
  if (!statuses.includes(result.status)) throw new Error(`${what}: HTTP ${result.status}`);
  return result;
}

interface Contender {
  target: Target;
  base: string;
  /** Called every 20 ms during its GETs (ximssd's RSS sampler). */
  sample?: () => void;
}

async function propfind(c: Contender): Promise<{ ms: number; bytes: number }> {
  const t = performance.now();
  const got = await expect('PROPFIND', request(c.target, 'PROPFIND', `${c.base}dir/`, { body: PROPFIND_BODY, headers: { Depth: '1', 'Content-Type': 'application/xml' } }), [207]);
  return { ms: performance.now() - t, bytes: got.bytes };
}

async function get(c: Contender, params: WebdavParams): Promise<number> {
  const timer = c.sample ? setInterval(c.sample, 20) : undefined;
  const t = performance.now();
  const got = await expect('GET', request(c.target, 'GET', `${c.base}big.bin`), [200]).finally(() => clearInterval(timer));
  const ms = performance.now() - t;
  if (got.bytes !== params.bigBytes) throw new Error(`GET gave ${got.bytes} bytes, not ${params.bigBytes}`);
  return ms;
}

/**
 * Both servers up at once and asked in turn, request by request: this VM's state drifts
 * (memory reclaim, write-back, CPU boost) by more than the difference being measured, and
 * alternating lets the drift fall on both alike. Each side is warmed up first (one PROPFIND,
 * one GET: the first pass over 100 MB costs several warm ones, for either server).
 */
async function measureBoth(contenders: Contender[], params: WebdavParams): Promise<Side[]> {
  // The data was just written: its dirty pages are flushed before anything is timed.
  execFileSync('sync');
  const first: number[] = [];
  for (const c of contenders) {
    first.push((await propfind(c)).bytes);
    await get(c, params);
  }
  const propfinds = contenders.map((): number[] => []);
  const gets = contenders.map((): number[] => []);
  for (let i = 0; i < params.propfindRuns; i++) for (const [k, c] of contenders.entries()) propfinds[k]!.push((await propfind(c)).ms);
  for (let i = 0; i < params.getRuns; i++) for (const [k, c] of contenders.entries()) gets[k]!.push(await get(c, params));
  return contenders.map((_, k) => ({ propfindMs: median(propfinds[k]!), getMs: median(gets[k]!), propfindBytes: first[k]! }));
}

async function populateXimssd(server: Ximssd, params: WebdavParams): Promise<Target> {
  const target: Target = { port: server.ports.http, auth: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };
  const base = `/dav/files/${USER.split('@')[0]}/`;
  await expect('MKCOL', request(target, 'MKCOL', `${base}dir`), [201]);
  for (let i = 0; i < params.files; i++) await expect('PUT', request(target, 'PUT', `${base}dir/f${i}.txt`, { body: smallContent(i) }), [201]);
  await expect('PUT big', request(target, 'PUT', `${base}big.bin`, { body: bigStream(params.bigBytes), length: params.bigBytes }), [201]);
  return target;
}

interface Apache {
  port: number;
  stop(): Promise<void>;
}

async function startApache(params: WebdavParams): Promise<Apache> {
  await ensureDebianPackages(['apache2'], () => existsSync(APACHE));
  const dir = mkdtempSync(join(tmpdir(), 'apache-bench-'));
  chmodSync(dir, 0o755);
  const docs = join(dir, 'htdocs');
  mkdirSync(join(docs, 'dir'), { recursive: true });
  mkdirSync(join(dir, 'lock'));
  for (let i = 0; i < params.files; i++) writeFileSync(join(docs, 'dir', `f${i}.txt`), smallContent(i));
  await pipeline(bigStream(params.bigBytes), createWriteStream(join(docs, 'big.bin')));
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    // Apache drops to www-data: it must be able to write its lock database.
    const uid = Number(execFileSync('id', ['-u', 'www-data']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'www-data']).toString().trim());
    chownSync(join(dir, 'lock'), uid, gid);
  }
  const port = await freePort();
  const conf = join(dir, 'httpd.conf');
  writeFileSync(
    conf,
    [
      `ServerRoot "${dir}"`,
      `DefaultRuntimeDir "${dir}"`,
      `PidFile "${dir}/httpd.pid"`,
      `ErrorLog "${dir}/error.log"`,
      `Listen 127.0.0.1:${port}`,
      'ServerName 127.0.0.1',
      `LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so`,
      `LoadModule authz_core_module ${MODULES}/mod_authz_core.so`,
      `LoadModule mime_module ${MODULES}/mod_mime.so`,
      `LoadModule dav_module ${MODULES}/mod_dav.so`,
      `LoadModule dav_fs_module ${MODULES}/mod_dav_fs.so`,
      ...(isRoot ? ['User www-data', 'Group www-data'] : []),
      'TypesConfig /etc/mime.types',
      'KeepAlive On',
      'MaxKeepAliveRequests 0',
      `DocumentRoot "${docs}"`,
      `DavLockDB "${dir}/lock/DavLock"`,
      `<Directory "${docs}">`,
      '  Dav On',
      '  Require all granted',
      '</Directory>',
      '',
    ].join('\n'),
  );
  const child: Child = spawnChild(APACHE, ['-f', conf, '-DFOREGROUND'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Ready when it answers.
  for (let i = 0; ; i++) {
    try {
      await request({ port }, 'OPTIONS', '/');
      break;
    } catch (err) {
      if (i > 100) {
        await child.stop();
        throw new Error(`apache2 did not start: ${String(err)}\n${child.output()}`);
      }
      await sleep(100);
    }
  }
  return {
    port,
    async stop() {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function webdavBench(params: WebdavParams): Promise<WebdavResult> {
  let server: Ximssd | undefined;
  let apache: Apache | undefined;
  try {
    server = await startXimssd({ cpuProfileDir: params.cpuProfileDir });
    const target = await populateXimssd(server, params);
    const pid = server.pid;
    const rssBeforeKb = rssKb(pid);
    let rssPeakKb = rssBeforeKb;
    const ours: Contender = {
      target,
      base: `/dav/files/${USER.split('@')[0]}/`,
      sample: () => {
        rssPeakKb = Math.max(rssPeakKb, rssKb(pid));
      },
    };
    let apacheReason: string | undefined;
    try {
      apache = await startApache(params);
    } catch (err) {
      apacheReason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    }
    const [ximssd, apacheSide] = await measureBoth(apache ? [ours, { target: { port: apache.port }, base: '/' }] : [ours], params);
    return { available: true, ximssd: ximssd!, apache: apacheSide, apacheReason, rssBeforeKb, rssPeakKb };
  } catch (err) {
    return { available: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    agent.destroy();
    await server?.stop();
    await apache?.stop();
  }
}
