/**
 * WebDAV over File Storage on the wire (issue 12): authentication, PROPFIND, PUT/GET with
 * ETags and ranges, MKCOL, COPY/MOVE, locks shared with XIMSS fileLock, changes seen both
 * ways between DAV and XIMSS file operations, and Debian's litmus suite (basic, copymove,
 * props, locks, http) run against the server on loopback.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HttpListener } from '../src/ximss/bindings/http.js';
import { TcpListener } from '../src/ximss/bindings/tcp.js';
import { Engine } from '../src/ximss/engine.js';
import { registerOperations } from '../src/ximss/ops/index.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { ensureDebianPackages } from './fixtures/debian.js';
import { capturingLogger, fails, httpRequest, ok, startTestServer, type HttpRequestOptions, type HttpResult, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
const captured = capturingLogger('info');

before(async () => {
  server = await startTestServer({}, { log: captured.log });
});
after(() => server.stop());

interface DavUser {
  address: string;
  name: string;
  auth: string;
  /** `/dav/files/<name>/` */
  root: string;
}

async function newUser(prefix = 'dav'): Promise<DavUser> {
  const address = await server.newAccount(prefix);
  const name = address.split('@')[0]!;
  return { address, name, auth: `Basic ${Buffer.from(`${address}:secret`).toString('base64')}`, root: `/dav/files/${name}/` };
}

function dav(user: DavUser | undefined, method: string, path: string, options: HttpRequestOptions = {}): Promise<HttpResult> {
  return httpRequest(server.ports.http, path, {
    ...options,
    method,
    headers: { ...(user ? { Authorization: user.auth } : {}), ...options.headers },
  });
}

/** The responses of a multistatus: href → {status of each property by its prefixed name, values}. */
function multistatus(result: HttpResult): Map<string, { status: Map<string, string>; props: Map<string, XmlElement> }> {
  assert.equal(result.status, 207, result.text);
  const root = parseXml(result.text);
  assert.equal(root.name, 'D:multistatus', result.text);
  const out = new Map<string, { status: Map<string, string>; props: Map<string, XmlElement> }>();
  for (const response of root.elements('D:response')) {
    const href = response.element('D:href')!.text();
    const status = new Map<string, string>();
    const props = new Map<string, XmlElement>();
    for (const propstat of response.elements('D:propstat')) {
      const code = propstat.element('D:status')!.text().split(' ')[1]!;
      for (const prop of propstat.element('D:prop')!.elements()) {
        // DAV: properties as D:name; others by their expanded name (each declares its own prefix).
        const colon = prop.name.indexOf(':');
        const prefix = colon < 0 ? '' : prop.name.slice(0, colon);
        const key = prefix === 'D' ? prop.name : `{${prop.attrs[prefix === '' ? 'xmlns' : `xmlns:${prefix}`] ?? ''}}${prop.name.slice(colon + 1)}`;
        status.set(key, code);
        props.set(key, prop);
      }
    }
    out.set(href, { status, props });
  }
  return out;
}

const PROPFIND_BASIC =
  '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getetag/><D:current-user-principal/></D:prop></D:propfind>';

describe('WebDAV: authentication and discovery', () => {
  test('no credentials: 401 with a Basic challenge; wrong ones: 401 and a login.failed of protocol dav', async () => {
    const user = await newUser();
    const anonymous = await dav(undefined, 'PROPFIND', user.root, { headers: { Depth: '0' } });
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /^Basic realm="/);
    const wrong = await dav({ ...user, auth: `Basic ${Buffer.from(`${user.address}:nope`).toString('base64')}` }, 'PROPFIND', user.root, { headers: { Depth: '0' } });
    assert.equal(wrong.status, 401);
    const failed = captured.events('login.failed').filter((r) => r.protocol === 'dav' && r.user === user.address);
    assert.equal(failed.length, 1, JSON.stringify(captured.events('login.failed')));
    const right = await dav(user, 'PROPFIND', user.root, { headers: { Depth: '0' } });
    assert.equal(right.status, 207, right.text);
    assert.ok(captured.events('login.ok').some((r) => r.protocol === 'dav' && r.user === user.address));
  });

  test('Basic over plain HTTP is refused from a non-loopback address; over TLS it is taken', async (t) => {
    const user = await newUser();
    const engine = new Engine(server.services);
    registerOperations(engine);
    const tcp = new TcpListener(engine);
    const plain = new HttpListener(engine, tcp);
    const secure = new HttpListener(engine, tcp, server.services.tls);
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    try {
      if (external) {
        const port = await plain.listen(0, external);
        const refused = await new Promise<number>((resolve, reject) => {
          const req = http.request({ host: external, port, path: user.root, method: 'PROPFIND', headers: { Authorization: user.auth, Depth: '0' }, agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', reject);
          req.end();
        });
        assert.equal(refused, 403);
      } else {
        t.diagnostic('no non-loopback IPv4 address on this machine: the plain-HTTP refusal is not exercised');
      }
      const port = await secure.listen(0, '127.0.0.1');
      const accepted = await new Promise<number>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port, path: user.root, method: 'PROPFIND', headers: { Authorization: user.auth, Depth: '0' }, rejectUnauthorized: false, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(accepted, 207);
    } finally {
      await plain.close();
      await secure.close();
      await tcp.close();
    }
  });

  test('OPTIONS names DAV classes 1 and 2 and the methods', async () => {
    const user = await newUser();
    const reply = await dav(user, 'OPTIONS', user.root);
    assert.equal(reply.status, 200);
    // The CardDAV provider adds its class (RFC 6352 6.1) to the one DAV header of the listener.
    assert.equal(reply.headers.dav, '1, 2, addressbook, calendar-access');
    for (const method of ['PROPFIND', 'PROPPATCH', 'LOCK', 'UNLOCK', 'COPY', 'MOVE', 'MKCOL', 'PUT']) assert.match(String(reply.headers.allow), new RegExp(method));
  });

  test('/, /dav/ and the principal answer current-user-principal; .well-known redirects', async () => {
    const user = await newUser();
    const body = '<D:propfind xmlns:D="DAV:"><D:prop><D:current-user-principal/><D:principal-URL/><D:displayname/></D:prop></D:propfind>';
    for (const path of ['/', '/dav/']) {
      const found = multistatus(await dav(user, 'PROPFIND', path, { body, headers: { Depth: '0' } }));
      const entry = found.get(path)!;
      assert.equal(entry.status.get('D:current-user-principal'), '200');
      assert.equal(entry.props.get('D:current-user-principal')!.element('D:href')!.text(), `/dav/principals/${user.name}/`);
    }
    assert.deepEqual([...multistatus(await dav(user, 'PROPFIND', '/', { body, headers: { Depth: '1' } })).keys()], ['/', '/dav/']);
    const davRoot = [...multistatus(await dav(user, 'PROPFIND', '/dav/', { body, headers: { Depth: '1' } })).keys()];
    assert.deepEqual(davRoot, ['/dav/', '/dav/principals/', '/dav/files/', '/dav/addressbooks/', '/dav/calendars/']);
    const files = [...multistatus(await dav(user, 'PROPFIND', '/dav/files/', { body, headers: { Depth: '1' } })).keys()];
    assert.deepEqual(files, ['/dav/files/', user.root]);
    const principal = multistatus(await dav(user, 'PROPFIND', `/dav/principals/${user.name}/`, { body, headers: { Depth: '0' } }));
    const entry = principal.get(`/dav/principals/${user.name}/`)!;
    assert.equal(entry.props.get('D:principal-URL')!.element('D:href')!.text(), `/dav/principals/${user.name}/`);
    const other = await newUser();
    assert.equal((await dav(user, 'PROPFIND', `/dav/principals/${other.name}/`, { body, headers: { Depth: '0' } })).status, 403);
    const rootOptions = await dav(undefined, 'OPTIONS', '/');
    assert.equal(rootOptions.headers.dav, '1, 2, addressbook, calendar-access');
    const preflight = await dav(undefined, 'OPTIONS', '/', { headers: { Origin: 'https://web.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(preflight.headers['access-control-allow-origin'], '*');
    const wellKnown = await dav(undefined, 'GET', '/.well-known/carddav');
    assert.equal(wellKnown.status, 301);
    assert.equal(wellKnown.headers.location, '/dav/');
  });

  test('another account\'s storage without CanAccessWebSites is refused', async () => {
    const user = await newUser();
    const other = await newUser();
    const reply = await dav(user, 'PROPFIND', other.root, { headers: { Depth: '0' } });
    assert.ok(reply.status === 403 || reply.status === 404, `${reply.status} ${reply.text}`);
    const put = await dav(user, 'PUT', `${other.root}x.txt`, { body: 'x' });
    assert.ok(put.status === 403 || put.status === 404, `${put.status} ${put.text}`);
  });

  test('bad input: a malformed body is 400, infinite depth is 403 propfind-finite-depth, a bad path is 400', async () => {
    const user = await newUser();
    assert.equal((await dav(user, 'PROPFIND', user.root, { body: '<D:propfind xmlns:D="DAV:"><D:prop>', headers: { Depth: '0' } })).status, 400);
    const infinite = await dav(user, 'PROPFIND', user.root, { headers: { Depth: 'infinity' } });
    assert.equal(infinite.status, 403);
    assert.match(infinite.text, /propfind-finite-depth/);
    assert.equal((await dav(user, 'GET', `${user.root}%ZZ`)).status, 400);
    assert.equal((await dav(user, 'PROPFIND', user.root, { headers: { Depth: '2' } })).status, 400);
    await dav(user, 'PUT', `${user.root}f.txt`, { body: 'f' });
    assert.equal((await dav(user, 'COPY', `${user.root}f.txt`, { headers: { Destination: 'not a uri' } })).status, 400);
    assert.equal((await dav(user, 'COPY', `${user.root}f.txt`)).status, 400);
    assert.equal((await dav(user, 'PUT', `${user.root}f.txt`, { body: 'g', headers: { If: '(<unclosed' } })).status, 400);
    assert.equal((await dav(user, 'UNLOCK', `${user.root}f.txt`)).status, 400);
    assert.equal((await dav(user, 'LOCK', `${user.root}f.txt`, { body: '<D:lockinfo xmlns:D="DAV:"/>' })).status, 400);
    assert.equal((await dav(user, 'PROPPATCH', `${user.root}f.txt`, { body: '<D:propfind xmlns:D="DAV:"/>' })).status, 400);
    const bomb = `<D:propfind xmlns:D="DAV:"><D:prop>${'<a>'.repeat(200)}${'</a>'.repeat(200)}</D:prop></D:propfind>`;
    assert.equal((await dav(user, 'PROPFIND', user.root, { body: bomb, headers: { Depth: '0' } })).status, 400);
    const huge = await dav(user, 'PROPFIND', user.root, { body: `<D:propfind xmlns:D="DAV:"><!--${'x'.repeat(2 * 1024 * 1024)}--></D:propfind>`, headers: { Depth: '0' } });
    assert.equal(huge.status, 413);
    assert.equal((await dav(user, 'GET', `${user.root}f.txt`)).text, 'f');
  });

  test('a PUT cut off midway stores nothing, and the server goes on', async () => {
    const user = await newUser();
    await new Promise<void>((resolve) => {
      const socket = net.connect(server.ports.http, '127.0.0.1', () => {
        socket.write(`PUT ${user.root}cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${user.auth}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(5000)}`);
        setTimeout(() => socket.destroy(), 200);
      });
      socket.on('close', () => resolve());
      socket.on('error', () => {});
    });
    assert.equal((await dav(user, 'GET', `${user.root}cut.bin`)).status, 404);
    const listing = multistatus(await dav(user, 'PROPFIND', user.root, { body: PROPFIND_BASIC, headers: { Depth: '1' } }));
    assert.deepEqual([...listing.keys()], [user.root]);
    // The name is free: a whole PUT creates it.
    assert.equal((await dav(user, 'PUT', `${user.root}cut.bin`, { body: 'whole' })).status, 201);
  });
});

describe('WebDAV: files', () => {
  test('PUT and GET with ETags, conditional requests and ranges', async () => {
    const user = await newUser();
    const path = `${user.root}hello.txt`;
    const created = await dav(user, 'PUT', path, { body: 'hello, world', headers: { 'Content-Type': 'text/plain' } });
    assert.equal(created.status, 201, created.text);
    const etag = String(created.headers.etag);
    assert.match(etag, /^"[^"]+"$/);
    const got = await dav(user, 'GET', path);
    assert.equal(got.status, 200);
    assert.equal(got.text, 'hello, world');
    assert.equal(got.headers.etag, etag);
    assert.equal(got.headers['content-type'], 'text/plain');
    assert.ok(got.headers['last-modified']);
    assert.equal((await dav(user, 'GET', path, { headers: { 'If-None-Match': etag } })).status, 304);
    const range = await dav(user, 'GET', path, { headers: { Range: 'bytes=7-' } });
    assert.equal(range.status, 206);
    assert.equal(range.text, 'world');
    assert.equal(range.headers['content-range'], 'bytes 7-11/12');
    assert.equal((await dav(user, 'GET', path, { headers: { Range: 'bytes=50-' } })).status, 416);
    const head = await dav(user, 'HEAD', path);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '12');
    assert.equal(head.text, '');

    assert.equal((await dav(user, 'PUT', path, { body: 'lost', headers: { 'If-Match': '"not-the-etag"' } })).status, 412);
    assert.equal((await dav(user, 'PUT', path, { body: 'lost', headers: { 'If-None-Match': '*' } })).status, 412);
    const replaced = await dav(user, 'PUT', path, { body: 'hello again', headers: { 'If-Match': etag } });
    assert.equal(replaced.status, 204);
    assert.notEqual(replaced.headers.etag, etag);
    assert.equal((await dav(user, 'GET', path)).text, 'hello again');
  });

  test('MKCOL, PROPFIND depth 1, COPY, MOVE, DELETE', async () => {
    const user = await newUser();
    assert.equal((await dav(user, 'MKCOL', `${user.root}docs`)).status, 201);
    assert.equal((await dav(user, 'MKCOL', `${user.root}docs`)).status, 405);
    assert.equal((await dav(user, 'MKCOL', `${user.root}missing/child`)).status, 409);
    assert.equal((await dav(user, 'MKCOL', `${user.root}withbody`, { body: '<x/>' })).status, 415);
    assert.equal((await dav(user, 'PUT', `${user.root}missing/file.txt`, { body: 'x' })).status, 409);
    assert.equal((await dav(user, 'PUT', `${user.root}docs/a.txt`, { body: 'AAA' })).status, 201);
    assert.equal((await dav(user, 'PUT', `${user.root}docs`, { body: 'x' })).status, 405);

    const listing = multistatus(await dav(user, 'PROPFIND', `${user.root}docs/`, { body: PROPFIND_BASIC, headers: { Depth: '1' } }));
    assert.deepEqual([...listing.keys()].sort(), [`${user.root}docs/`, `${user.root}docs/a.txt`]);
    assert.ok(listing.get(`${user.root}docs/`)!.props.get('D:resourcetype')!.element('D:collection'));
    assert.equal(listing.get(`${user.root}docs/a.txt`)!.props.get('D:getcontentlength')!.text(), '3');

    const host = `127.0.0.1:${server.ports.http}`;
    const copy = await dav(user, 'COPY', `${user.root}docs/a.txt`, { headers: { Destination: `http://${host}${user.root}docs/b.txt` } });
    assert.equal(copy.status, 201, copy.text);
    assert.equal((await dav(user, 'COPY', `${user.root}docs/a.txt`, { headers: { Destination: `${user.root}docs/b.txt`, Overwrite: 'F' } })).status, 412);
    assert.equal((await dav(user, 'COPY', `${user.root}docs/a.txt`, { headers: { Destination: `http://elsewhere.test${user.root}x` } })).status, 502);
    const move = await dav(user, 'MOVE', `${user.root}docs`, { headers: { Destination: `${user.root}moved` } });
    assert.equal(move.status, 201, move.text);
    assert.equal((await dav(user, 'GET', `${user.root}moved/b.txt`)).text, 'AAA');
    assert.equal((await dav(user, 'GET', `${user.root}docs/a.txt`)).status, 404);
    assert.equal((await dav(user, 'DELETE', `${user.root}moved`)).status, 204);
    assert.equal((await dav(user, 'PROPFIND', `${user.root}moved`, { headers: { Depth: '0' } })).status, 404);
  });

  test('PROPPATCH sets and removes dead properties; protected ones are 403', async () => {
    const user = await newUser();
    await dav(user, 'PUT', `${user.root}p.txt`, { body: 'p' });
    const set = await dav(user, 'PROPPATCH', `${user.root}p.txt`, {
      body: '<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:color>red</Z:color></D:prop></D:set></D:propertyupdate>',
    });
    assert.equal(multistatus(set).get(`${user.root}p.txt`)!.status.get('{urn:z}color'), '200');
    const read = multistatus(
      await dav(user, 'PROPFIND', `${user.root}p.txt`, { body: '<D:propfind xmlns:D="DAV:"><D:prop><Z:color xmlns:Z="urn:z"/></D:prop></D:propfind>', headers: { Depth: '0' } }),
    );
    assert.equal(read.get(`${user.root}p.txt`)!.props.get('{urn:z}color')!.text(), 'red');
    const refused = multistatus(
      await dav(user, 'PROPPATCH', `${user.root}p.txt`, {
        body: '<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>x</D:getetag><D:other>y</D:other></D:prop></D:set></D:propertyupdate>',
      }),
    );
    assert.equal(refused.get(`${user.root}p.txt`)!.status.get('D:getetag'), '403');
    assert.equal(refused.get(`${user.root}p.txt`)!.status.get('D:other'), '424');
  });
});

describe('WebDAV: rights, limits, locks', () => {
  test('CanAccessWebSites reaches another account\'s storage, within its domain', async () => {
    const admin = await newUser('admin');
    const owner = await newUser();
    const account = (await server.services.accounts.find(admin.address))!;
    await server.services.accounts.setSettings(account, { DomainAdminRights: 'CanAccessWebSites' });
    const put = await dav(admin, 'PUT', `${owner.root}by-admin.txt`, { body: 'from the admin' });
    assert.equal(put.status, 201, put.text);
    assert.equal((await dav(owner, 'GET', `${owner.root}by-admin.txt`)).text, 'from the admin');
    // name@domain spelling of the same storage
    const qualified = multistatus(await dav(admin, 'PROPFIND', `/dav/files/${owner.address}/`, { body: PROPFIND_BASIC, headers: { Depth: '1' } }));
    assert.ok(qualified.has(`/dav/files/${owner.address}/by-admin.txt`), [...qualified.keys()].join(' '));
    // A move into the admin's own storage is not a move within one storage.
    const move = await dav(admin, 'MOVE', `${owner.root}by-admin.txt`, { headers: { Destination: `${admin.root}stolen.txt` } });
    assert.equal(move.status, 403);
  });

  test('the storage limit answers 507 and writes nothing; quota properties show the use', async () => {
    const user = await newUser();
    const account = (await server.services.accounts.find(user.address))!;
    await server.services.accounts.setSettings(account, { MaxWebSize: '1K' });
    const big = await dav(user, 'PUT', `${user.root}big.bin`, { body: 'x'.repeat(4096) });
    assert.equal(big.status, 507, big.text);
    assert.equal((await dav(user, 'GET', `${user.root}big.bin`)).status, 404);
    assert.equal((await dav(user, 'PUT', `${user.root}small.txt`, { body: 'x'.repeat(100) })).status, 201);
    const quota = multistatus(
      await dav(user, 'PROPFIND', user.root, {
        body: '<D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>',
        headers: { Depth: '0' },
      }),
    ).get(user.root)!;
    assert.equal(quota.props.get('D:quota-used-bytes')!.text(), '100');
    assert.equal(quota.props.get('D:quota-available-bytes')!.text(), String(1024 - 100));
  });

  test('LOCK of an unmapped URL creates an empty file; a refresh extends it; a locked member makes DELETE of its tree a 207', async () => {
    const user = await newUser();
    assert.equal((await dav(user, 'MKCOL', `${user.root}tree`)).status, 201);
    const lockinfo = '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
    const lock = await dav(user, 'LOCK', `${user.root}tree/new.txt`, { body: lockinfo, headers: { Timeout: 'Second-100', Depth: '0' } });
    assert.equal(lock.status, 201, lock.text);
    const token = String(lock.headers['lock-token']).replace(/^<|>$/g, '');
    const created = await dav(user, 'GET', `${user.root}tree/new.txt`);
    assert.equal(created.status, 200);
    assert.equal(created.text, '');
    const refresh = await dav(user, 'LOCK', `${user.root}tree/new.txt`, { headers: { If: `(<${token}>)`, Timeout: 'Second-500' } });
    assert.equal(refresh.status, 200, refresh.text);
    assert.match(refresh.text, /Second-(49\d|500)/);
    assert.equal((await dav(user, 'LOCK', `${user.root}tree/new.txt`, { headers: { If: '(<opaquelocktoken:unknown>)' } })).status, 412);
    // Another lock on the locked file conflicts.
    assert.equal((await dav(user, 'LOCK', `${user.root}tree/new.txt`, { body: lockinfo })).status, 423);
    const refused = await dav(user, 'DELETE', `${user.root}tree`);
    assert.equal(refused.status, 207, refused.text);
    const entries = multistatusStatuses(refused.text);
    assert.deepEqual(entries, [[`${user.root}tree/new.txt`, '423']]);
    const deleted = await dav(user, 'DELETE', `${user.root}tree`, { headers: { If: `<http://127.0.0.1:${server.ports.http}${user.root}tree/new.txt> (<${token}>)` } });
    assert.equal(deleted.status, 204, deleted.text);
  });
});

/** [href, status code] of each whole-resource response of a multistatus. */
function multistatusStatuses(text: string): [string, string][] {
  return parseXml(text)
    .elements('D:response')
    .map((r) => [r.element('D:href')!.text(), r.element('D:status')!.text().split(' ')[1]!]);
}

describe('WebDAV and XIMSS on the same storage', () => {
  let user: DavUser;
  let client: XimssClient;
  before(async () => {
    user = await newUser('mix');
    client = (await server.login(user.address, 'secret')).client;
  });

  test('a file written through DAV is read through XIMSS, and the other way round', async () => {
    assert.equal((await dav(user, 'PUT', `${user.root}from-dav.txt`, { body: 'written by DAV' })).status, 201);
    const read = await ok(client, new XmlElement('fileRead', { fileName: 'from-dav.txt' }));
    assert.equal(read.messages[0]?.name, 'fileData');
    assert.equal(read.messages[0]!.text(), 'written by DAV');
    const list = await ok(client, new XmlElement('fileList', {}));
    assert.ok(list.messages.some((m) => m.attrs.fileName === 'from-dav.txt'));

    await ok(client, new XmlElement('fileWrite', { fileName: 'from-ximss.txt' }, ['written by XIMSS']));
    const got = await dav(user, 'GET', `${user.root}from-ximss.txt`);
    assert.equal(got.status, 200);
    assert.equal(got.text, 'written by XIMSS');
  });

  test('dead properties are the XIMSS file attributes', async () => {
    assert.equal((await dav(user, 'PUT', `${user.root}attrs.txt`, { body: 'a' })).status, 201);
    const set = await dav(user, 'PROPPATCH', `${user.root}attrs.txt`, {
      body: '<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:color>red</Z:color></D:prop></D:set></D:propertyupdate>',
    });
    assert.equal(set.status, 207);
    const read = await ok(client, new XmlElement('fileAttrRead', { fileName: 'attrs.txt' }));
    assert.match(read.messages[0]!.toString(), /<Z:color xmlns:Z="urn:z">red<\/Z:color>/);
    await ok(client, new XmlElement('fileAttrWrite', { fileName: 'attrs.txt' }, [new XmlElement('note', {}, ['from XIMSS'])]));
    const all = multistatus(await dav(user, 'PROPFIND', `${user.root}attrs.txt`, { headers: { Depth: '0' } })).get(`${user.root}attrs.txt`)!;
    assert.equal(all.props.get('{}note')?.text(), 'from XIMSS');
    assert.equal(all.props.get('{urn:z}color')?.text(), 'red');
  });

  test('a XIMSS fileLock makes a DAV PUT answer 423', async () => {
    await ok(client, new XmlElement('fileWrite', { fileName: 'locked-by-ximss.txt' }, ['v1']));
    const locked = await ok(client, new XmlElement('fileLock', { fileName: 'locked-by-ximss.txt', mode: 'lock', scope: 'exclusive', type: 'write' }, [new XmlElement('owner', {}, ['ximss'])]));
    const token = locked.messages[0]?.attrs.token ?? locked.messages[0]?.element('token')?.text();
    assert.ok(token, locked.messages[0]?.toString());
    assert.equal((await dav(user, 'PUT', `${user.root}locked-by-ximss.txt`, { body: 'v2' })).status, 423);
    // The token the XIMSS session holds lets the DAV client write.
    const withToken = await dav(user, 'PUT', `${user.root}locked-by-ximss.txt`, { body: 'v2', headers: { If: `(<${token}>)` } });
    assert.equal(withToken.status, 204, withToken.text);
  });

  test('a DAV LOCK makes a XIMSS fileWrite fail, and UNLOCK frees it', async () => {
    const path = `${user.root}locked-by-dav.txt`;
    const lock = await dav(user, 'LOCK', path, {
      body: '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>dav client</D:owner></D:lockinfo>',
      headers: { Timeout: 'Second-600' },
    });
    assert.equal(lock.status, 201, lock.text);
    const token = String(lock.headers['lock-token']).replace(/^<|>$/g, '');
    assert.match(token, /^opaquelocktoken:/);
    await fails(client, new XmlElement('fileWrite', { fileName: 'locked-by-dav.txt' }, ['from XIMSS']));
    const discovery = multistatus(
      await dav(user, 'PROPFIND', path, { body: '<D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>', headers: { Depth: '0' } }),
    );
    assert.match(discovery.get(path)!.props.get('D:lockdiscovery')!.toString(), new RegExp(token));
    assert.equal((await dav(user, 'UNLOCK', path, { headers: { 'Lock-Token': '<opaquelocktoken:not-this-one>' } })).status, 409);
    assert.equal((await dav(user, 'UNLOCK', path, { headers: { 'Lock-Token': `<${token}>` } })).status, 204);
    await ok(client, new XmlElement('fileWrite', { fileName: 'locked-by-dav.txt' }, ['from XIMSS']));
    assert.equal((await dav(user, 'GET', path)).text, 'from XIMSS');
  });
});

// --- litmus ---

interface LitmusResult {
  group: string;
  passed: string[];
  failed: string[];
  warnings: string[];
  output: string;
}

function runLitmus(group: string, url: string, user: string, password: string, cwd: string): Promise<LitmusResult> {
  return new Promise((resolve) => {
    execFile(`/usr/libexec/litmus/${group}`, [url, user, password], { cwd, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (_error, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      const passed: string[] = [];
      const failed: string[] = [];
      const warnings: string[] = [];
      for (const line of output.split('\n')) {
        const m = /\d+\.\s+(\S+?)\.*\s+(pass|FAIL|SKIPPED|WARNING)(.*)$/.exec(line);
        if (!m) continue;
        if (m[2] === 'FAIL') failed.push(`${m[1]}${m[3]}`);
        else if (m[2] === 'pass') passed.push(m[1]!);
        else if (m[2] === 'WARNING') warnings.push(`${m[1]}${m[3]}`);
      }
      for (const line of output.split('\n')) if (/^WARNING:/.test(line.trim())) warnings.push(line.trim());
      resolve({ group, passed, failed, warnings, output });
    });
  });
}

describe('litmus', () => {
  const groups = ['basic', 'copymove', 'props', 'locks', 'http'];
  let cwd: string;
  let account: DavUser;
  before(async () => {
    await ensureDebianPackages(['litmus'], () => existsSync('/usr/libexec/litmus/basic'));
    cwd = mkdtempSync(join(tmpdir(), 'litmus-'));
    // The test programs read their files from htdocs/ in the working directory.
    symlinkSync('/usr/share/litmus/htdocs', join(cwd, 'htdocs'));
    account = await newUser('litmus');
  });
  after(() => rmSync(cwd, { recursive: true, force: true }));

  for (const group of groups) {
    test(`litmus ${group}`, async () => {
      const url = `http://127.0.0.1:${server.ports.http}${account.root}`;
      const result = await runLitmus(group, url, account.address, 'secret', cwd);
      console.log(`litmus ${group}: ${result.passed.length} passed${result.failed.length ? `, failed: ${result.failed.join('; ')}` : ''}${result.warnings.length ? `; warnings: ${result.warnings.join('; ')}` : ''}`);
      assert.ok(result.passed.length > 0, `litmus ${group} ran no test:\n${result.output}`);
      assert.deepEqual(result.failed, [], `litmus ${group} failures`);
    });
  }
});
