/**
 * CardDAV (RFC 6352) over the Contacts mailboxes on the wire (issue 12): discovery from
 * /.well-known/carddav, PROPFIND of the home and a book, PUT/GET/DELETE with ETags and
 * preconditions, no-uid-conflict, addressbook-multiget and -query, sync-collection, changes
 * seen both ways between CardDAV and XIMSS, authentication, and Debian's vdirsyncer as a
 * real client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseXml } from '../src/xml/parser.js';
import type { XmlElement } from '../src/xml/element.js';
import { startNode, ximssd, type ClusterNodeProcess } from './fixtures/cluster.js';
import { startPostgres, type PostgresServer } from './fixtures/postgres.js';
import { Vdirsyncer } from './fixtures/vdirsyncer.js';
import { awaitNotifies, folderSync, httpRequest, ok, startTestServer, takeNotifies, type HttpRequestOptions, type HttpResult, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;

before(async () => {
  server = await startTestServer({});
});
after(() => server.stop());

const CARD_NS = 'urn:ietf:params:xml:ns:carddav';

interface User {
  address: string;
  name: string;
  auth: string;
  home: string;
  book: string;
}

async function newUser(): Promise<User> {
  const address = await server.newAccount('card');
  const name = address.split('@')[0]!;
  return { address, name, auth: `Basic ${Buffer.from(`${address}:secret`).toString('base64')}`, home: `/dav/addressbooks/${name}/`, book: `/dav/addressbooks/${name}/Contacts/` };
}

function dav(user: User | undefined, method: string, path: string, options: HttpRequestOptions = {}): Promise<HttpResult> {
  return httpRequest(server.ports.http, path, { ...options, method, headers: { ...(user ? { Authorization: user.auth } : {}), ...options.headers } });
}

interface Response {
  status?: string;
  props: Map<string, { status: string; element: XmlElement }>;
}

/** A multistatus by href; properties by local name (they are distinct enough here). */
function multistatus(result: HttpResult): { responses: Map<string, Response>; root: XmlElement } {
  assert.equal(result.status, 207, result.text);
  const root = parseXml(result.text);
  const responses = new Map<string, Response>();
  for (const response of root.elements('D:response')) {
    const href = decodeURIComponent(response.element('D:href')!.text());
    const props = new Map<string, { status: string; element: XmlElement }>();
    for (const propstat of response.elements('D:propstat')) {
      const code = propstat.element('D:status')!.text().split(' ')[1]!;
      for (const prop of propstat.element('D:prop')!.elements()) props.set(prop.name.replace(/^.*:/, ''), { status: code, element: prop });
    }
    const status = response.element('D:status')?.text().split(' ')[1];
    responses.set(href, status === undefined ? { props } : { status, props });
  }
  return { responses, root };
}

function vcard(uid: string, fn: string, extra: string[] = []): string {
  return ['BEGIN:VCARD', 'VERSION:3.0', `UID:${uid}`, `FN:${fn}`, `N:${fn.split(' ').reverse().join(';')};;;`, ...extra, 'END:VCARD', ''].join('\r\n');
}

function put(user: User, href: string, text: string, headers: Record<string, string> = {}): Promise<HttpResult> {
  return dav(user, 'PUT', href, { body: text, headers: { 'Content-Type': 'text/vcard; charset=utf-8', ...headers } });
}

const MULTIGET = (hrefs: string[], extra = ''): string =>
  `<?xml version="1.0"?><C:addressbook-multiget xmlns:D="DAV:" xmlns:C="${CARD_NS}"><D:prop><D:getetag/><C:address-data${extra}/></D:prop>${hrefs.map((h) => `<D:href>${h}</D:href>`).join('')}</C:addressbook-multiget>`;

function report(user: User, path: string, body: string, depth = '1'): Promise<HttpResult> {
  return dav(user, 'REPORT', path, { body, headers: { 'Content-Type': 'application/xml', Depth: depth } });
}

function syncBody(token: string): string {
  return `<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>${token}</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>`;
}

describe('CardDAV: discovery and collections', () => {
  test('from /.well-known/carddav to the principal, its addressbook-home-set and the books', async () => {
    const u = await newUser();
    const wk = await dav(undefined, 'PROPFIND', '/.well-known/carddav');
    assert.equal(wk.status, 301);
    assert.equal(wk.headers.location, '/dav/');
    const root = multistatus(
      await dav(u, 'PROPFIND', '/dav/', { body: '<D:propfind xmlns:D="DAV:"><D:prop><D:current-user-principal/></D:prop></D:propfind>', headers: { Depth: '0' } }),
    );
    const principal = root.responses.get('/dav/')!.props.get('current-user-principal')!.element.element('D:href')!.text();
    assert.equal(principal, `/dav/principals/${u.name}/`);
    const p = multistatus(
      await dav(u, 'PROPFIND', principal, { body: `<D:propfind xmlns:D="DAV:" xmlns:C="${CARD_NS}"><D:prop><C:addressbook-home-set/></D:prop></D:propfind>`, headers: { Depth: '0' } }),
    );
    const homeSet = p.responses.get(principal)!.props.get('addressbook-home-set')!;
    assert.equal(homeSet.status, '200');
    assert.equal(homeSet.element.elements()[0]!.text(), u.home);
    const home = multistatus(
      await dav(u, 'PROPFIND', u.home, {
        body: `<D:propfind xmlns:D="DAV:" xmlns:C="${CARD_NS}"><D:prop><D:resourcetype/><D:displayname/><C:supported-address-data/><D:sync-token/><D:current-user-privilege-set/></D:prop></D:propfind>`,
        headers: { Depth: '1' },
      }),
    );
    const book = home.responses.get(u.book);
    assert.ok(book, `the default book is listed: ${[...home.responses.keys()].join(', ')}`);
    const types = book.props.get('resourcetype')!.element.elements().map((e) => e.name.replace(/^.*:/, ''));
    assert.deepEqual(types.sort(), ['addressbook', 'collection']);
    assert.equal(book.props.get('displayname')!.element.text(), 'Contacts');
    assert.match(book.props.get('sync-token')!.element.text(), /^http:\/\//);
    assert.match(book.props.get('supported-address-data')!.element.toString(), /version="4.0"/);
    assert.match(book.props.get('current-user-privilege-set')!.element.toString(), /write/);
  });

  test('MKCOL (extended) makes a Contacts-class mailbox that XIMSS lists; DELETE removes it', async () => {
    const u = await newUser();
    const body = `<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:C="${CARD_NS}"><D:set><D:prop><D:resourcetype><D:collection/><C:addressbook/></D:resourcetype><D:displayname>Work</D:displayname></D:prop></D:set></D:mkcol>`;
    assert.equal((await dav(u, 'MKCOL', `${u.home}Work/`, { body })).status, 201);
    assert.equal((await dav(u, 'MKCOL', `${u.home}Work/`, { body })).status, 405);
    const { client } = await server.login(u.address, 'secret');
    const list = await ok(client, '<mailboxList filter="Work"/>');
    assert.equal(list.messages.find((d) => d.name === 'mailbox')?.attrs.CLASS, 'IPF.Contact', list.messages.map(String).join());
    const bad = `<?xml version="1.0"?><D:mkcol xmlns:D="DAV:"><D:set><D:prop><D:resourcetype><D:collection/><D:other/></D:resourcetype></D:prop></D:set></D:mkcol>`;
    assert.equal((await dav(u, 'MKCOL', `${u.home}Odd/`, { body: bad })).status, 403);
    assert.equal((await dav(u, 'DELETE', `${u.home}Work/`)).status, 204);
    assert.equal((await dav(u, 'PROPFIND', `${u.home}Work/`, { headers: { Depth: '0' } })).status, 404);
    client.close();
  });

  test('authentication: none or wrong → 401; another account\'s home → 403', async () => {
    const u = await newUser();
    const v = await newUser();
    assert.equal((await dav(undefined, 'PROPFIND', u.home, { headers: { Depth: '0' } })).status, 401);
    const wrong = await httpRequest(server.ports.http, u.home, { method: 'PROPFIND', headers: { Depth: '0', Authorization: `Basic ${Buffer.from(`${u.address}:nope`).toString('base64')}` } });
    assert.equal(wrong.status, 401);
    assert.equal((await dav(v, 'PROPFIND', u.home, { headers: { Depth: '0' } })).status, 403);
    assert.equal((await dav(v, 'GET', `${u.book}x.vcf`)).status, 403);
  });
});

describe('CardDAV: cards', () => {
  test('PUT creates under the client\'s name, GET returns it with its ETag, preconditions hold', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    const href = `${u.book}a1b2-c3.vcf`;
    const created = await put(u, href, vcard('uid-ann', 'Ann Smith', ['EMAIL;TYPE=INTERNET:ann@example.com']), { 'If-None-Match': '*' });
    assert.equal(created.status, 201, created.text);
    const etag = created.headers.etag as string;
    assert.match(etag, /^"\d+"$/);
    const got = await dav(u, 'GET', href);
    assert.equal(got.status, 200);
    assert.equal(got.headers.etag, etag);
    assert.match(String(got.headers['content-type']), /^text\/vcard/);
    assert.match(got.text, /FN:Ann Smith/);
    assert.match(got.text, /UID:uid-ann/);
    const v4 = await dav(u, 'GET', href, { headers: { Accept: 'text/vcard; version=4.0' } });
    assert.match(v4.text, /VERSION:4\.0/);
    assert.equal((await put(u, href, vcard('uid-ann', 'Ann X'), { 'If-None-Match': '*' })).status, 412, 'If-None-Match: * on an existing card');
    assert.equal((await put(u, href, vcard('uid-ann', 'Ann X'), { 'If-Match': '"999"' })).status, 412, 'a stale If-Match');
    const replaced = await put(u, href, vcard('uid-ann', 'Ann Smythe'), { 'If-Match': etag });
    assert.equal(replaced.status, 204, replaced.text);
    assert.notEqual(replaced.headers.etag, etag);
    assert.match((await dav(u, 'GET', href)).text, /FN:Ann Smythe/);
    assert.equal((await dav(u, 'DELETE', href, { headers: { 'If-Match': etag } })).status, 412);
    assert.equal((await dav(u, 'DELETE', href, { headers: { 'If-Match': replaced.headers.etag as string } })).status, 204);
    assert.equal((await dav(u, 'GET', href)).status, 404);
    assert.equal((await dav(u, 'DELETE', href)).status, 404);
  });

  test('bad input: not a vCard → 400 valid-address-data, another type → 415, no-uid-conflict → 403 naming the holder', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    const bad = await put(u, `${u.book}bad.vcf`, 'hello world');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /valid-address-data/);
    const broken = await put(u, `${u.book}bad.vcf`, 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:X\r\n');
    assert.equal(broken.status, 400);
    assert.equal((await put(u, `${u.book}t.vcf`, vcard('u', 'X'), { 'Content-Type': 'text/plain' })).status, 415);
    assert.equal((await put(u, `${u.book}one.vcf`, vcard('same-uid', 'One'))).status, 201);
    const conflict = await put(u, `${u.book}two.vcf`, vcard('same-uid', 'Two'));
    assert.equal(conflict.status, 403);
    assert.match(conflict.text, /no-uid-conflict/);
    assert.match(conflict.text, /one\.vcf/);
    assert.equal((await dav(u, 'GET', `${u.book}two.vcf`)).status, 404);
    // Two PUTs of one UID under two names at once: exactly one wins.
    const racing = await Promise.all([put(u, `${u.book}r1.vcf`, vcard('race-uid', 'R1')), put(u, `${u.book}r2.vcf`, vcard('race-uid', 'R2'))]);
    assert.deepEqual(racing.map((r) => r.status).sort(), [201, 403]);
    assert.equal((await put(u, `${u.book}x.vcf`, vcard('u', 'X'), { 'If-Match': '"5"' })).status, 412);
    assert.equal((await put(u, `/dav/addressbooks/${u.name}/Nope/x.vcf`, vcard('u2', 'X'))).status, 409);
  });

  test('addressbook-multiget returns etag and address-data (4.0 on request), 404 for unknown hrefs', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    const hrefs: string[] = [];
    for (let i = 0; i < 5; i++) {
      const href = `${u.book}m${i}.vcf`;
      assert.equal((await put(u, href, vcard(`m-${i}`, `Person ${i}`))).status, 201);
      hrefs.push(href);
    }
    const result = multistatus(await report(u, u.book, MULTIGET([...hrefs, `${u.book}missing.vcf`])));
    for (let i = 0; i < 5; i++) {
      const r = result.responses.get(hrefs[i]!)!;
      assert.match(r.props.get('address-data')!.element.text(), new RegExp(`FN:Person ${i}`));
      assert.match(r.props.get('getetag')!.element.text(), /^"\d+"$/);
    }
    assert.equal(result.responses.get(`${u.book}missing.vcf`)!.status, '404');
    const v4 = multistatus(await report(u, u.book, MULTIGET([hrefs[0]!], ' content-type="text/vcard" version="4.0"')));
    assert.match(v4.responses.get(hrefs[0]!)!.props.get('address-data')!.element.text(), /VERSION:4\.0/);
    const subset = multistatus(
      await report(u, u.book, `<?xml version="1.0"?><C:addressbook-multiget xmlns:D="DAV:" xmlns:C="${CARD_NS}"><D:prop><C:address-data><C:prop name="FN"/></C:address-data></D:prop><D:href>${hrefs[1]}</D:href></C:addressbook-multiget>`),
    );
    const text = subset.responses.get(hrefs[1]!)!.props.get('address-data')!.element.text();
    assert.match(text, /FN:Person 1/);
    assert.match(text, /UID:m-1/);
    assert.doesNotMatch(text, /^N:/m, 'only the properties asked for');
  });

  test('addressbook-query: prop-filter, text-match types and collations, negate, allof/anyof, limit', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    await put(u, `${u.book}q1.vcf`, vcard('q1', 'Ann Smith', ['EMAIL;TYPE=WORK:ann@work.example', 'TEL;TYPE=CELL:+1 555 0101']));
    await put(u, `${u.book}q2.vcf`, vcard('q2', 'Bob Jones', ['EMAIL;TYPE=HOME:bob@home.example']));
    await put(u, `${u.book}q3.vcf`, vcard('q3', 'Ángela Smith'));
    const query = (filter: string, limit = ''): Promise<HttpResult> =>
      report(u, u.book, `<?xml version="1.0"?><C:addressbook-query xmlns:D="DAV:" xmlns:C="${CARD_NS}"><D:prop><D:getetag/></D:prop>${filter}${limit}</C:addressbook-query>`);
    const names = async (filter: string, limit = ''): Promise<string[]> =>
      [...multistatus(await query(filter, limit)).responses.entries()].filter(([, r]) => r.status === undefined).map(([h]) => h.slice(u.book.length)).sort();
    const tm = (prop: string, text: string, attrs = ''): string => `<C:prop-filter name="${prop}"><C:text-match${attrs}>${text}</C:text-match></C:prop-filter>`;
    assert.deepEqual(await names(`<C:filter>${tm('FN', 'smith')}</C:filter>`), ['q1.vcf', 'q3.vcf']);
    assert.deepEqual(await names(`<C:filter>${tm('FN', 'áNGELA', ' match-type="starts-with"')}</C:filter>`), ['q3.vcf'], 'unicode-casemap folds non-ASCII letters');
    assert.deepEqual(await names(`<C:filter>${tm('FN', 'áNGELA', ' collation="i;ascii-casemap" match-type="starts-with"')}</C:filter>`), []);
    assert.deepEqual(await names(`<C:filter>${tm('EMAIL', 'bob@home.example', ' match-type="equals"')}</C:filter>`), ['q2.vcf']);
    assert.deepEqual(await names(`<C:filter>${tm('FN', 'smith', ' match-type="ends-with" negate-condition="yes"')}</C:filter>`), ['q2.vcf']);
    assert.deepEqual(await names(`<C:filter test="allof">${tm('FN', 'smith')}${tm('EMAIL', 'work')}</C:filter>`), ['q1.vcf']);
    assert.deepEqual(await names(`<C:filter test="anyof">${tm('TEL', '0101')}${tm('EMAIL', 'home')}</C:filter>`), ['q1.vcf', 'q2.vcf']);
    assert.deepEqual(await names(`<C:filter><C:prop-filter name="EMAIL"><C:is-not-defined/></C:prop-filter></C:filter>`), ['q3.vcf']);
    assert.deepEqual(await names(`<C:filter><C:prop-filter name="EMAIL"><C:param-filter name="TYPE"><C:text-match match-type="equals">home</C:text-match></C:param-filter></C:prop-filter></C:filter>`), ['q2.vcf']);
    const limited = multistatus(await query('<C:filter><C:prop-filter name="FN"/></C:filter>', '<C:limit><C:nresults>2</C:nresults></C:limit>'));
    assert.equal([...limited.responses.values()].filter((r) => r.status === undefined).length, 2);
    assert.equal(limited.responses.get(u.book)?.status, '507');
    const badCollation = await query(`<C:filter>${tm('FN', 'x', ' collation="i;nope"')}</C:filter>`);
    assert.equal(badCollation.status, 403);
    assert.match(badCollation.text, /supported-collation/);
  });

  test('sync-collection: initial, after a change, after a delete, bad token', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    await put(u, `${u.book}s1.vcf`, vcard('s1', 'One'));
    await put(u, `${u.book}s2.vcf`, vcard('s2', 'Two'));
    const first = multistatus(await report(u, u.book, syncBody('')));
    assert.deepEqual([...first.responses.keys()].sort(), [`${u.book}s1.vcf`, `${u.book}s2.vcf`]);
    const token1 = first.root.element('D:sync-token')!.text();
    const again = multistatus(await report(u, u.book, syncBody(token1)));
    assert.equal(again.responses.size, 0);
    assert.equal(again.root.element('D:sync-token')!.text(), token1);
    const etag2 = (await dav(u, 'GET', `${u.book}s2.vcf`)).headers.etag as string;
    await put(u, `${u.book}s2.vcf`, vcard('s2', 'Two changed'), { 'If-Match': etag2 });
    await put(u, `${u.book}s3.vcf`, vcard('s3', 'Three'));
    const second = multistatus(await report(u, u.book, syncBody(token1)));
    assert.deepEqual([...second.responses.keys()].sort(), [`${u.book}s2.vcf`, `${u.book}s3.vcf`]);
    assert.equal(second.responses.get(`${u.book}s2.vcf`)!.props.get('getetag')!.status, '200');
    const token2 = second.root.element('D:sync-token')!.text();
    assert.equal((await dav(u, 'DELETE', `${u.book}s1.vcf`)).status, 204);
    const third = multistatus(await report(u, u.book, syncBody(token2)));
    assert.deepEqual([...third.responses.keys()], [`${u.book}s1.vcf`]);
    assert.equal(third.responses.get(`${u.book}s1.vcf`)!.status, '404');
    const bad = await report(u, u.book, syncBody('http://example.com/nope'));
    assert.equal(bad.status, 403);
    assert.match(bad.text, /valid-sync-token/);
  });
});

describe('CardDAV: COPY and MOVE', () => {
  test('a card copied and moved between books keeps its text under the new name; UID conflicts and Overwrite hold', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    assert.equal((await dav(u, 'MKCOL', `${u.home}Other/`)).status, 201);
    const other = `${u.home}Other/`;
    assert.equal((await put(u, `${u.book}c1.vcf`, vcard('c-1', 'Copy Me'))).status, 201);
    const copy = await dav(u, 'COPY', `${u.book}c1.vcf`, { headers: { Destination: `${other}copied.vcf` } });
    assert.equal(copy.status, 201, copy.text);
    assert.match((await dav(u, 'GET', `${other}copied.vcf`)).text, /FN:Copy Me/);
    assert.equal((await dav(u, 'GET', `${u.book}c1.vcf`)).status, 200, 'COPY leaves the source');
    const again = await dav(u, 'COPY', `${u.book}c1.vcf`, { headers: { Destination: `${other}again.vcf` } });
    assert.equal(again.status, 403, 'the UID is taken in the target');
    assert.match(again.text, /no-uid-conflict/);
    assert.equal((await dav(u, 'COPY', `${u.book}c1.vcf`, { headers: { Destination: `${u.book}same.vcf` } })).status, 403);
    assert.equal((await dav(u, 'COPY', `${u.book}c1.vcf`, { headers: { Destination: `${other}copied.vcf`, Overwrite: 'F' } })).status, 412);
    assert.equal((await dav(u, 'COPY', `${u.book}c1.vcf`, { headers: { Destination: `${other}copied.vcf` } })).status, 204, 'Overwrite T replaces');
    assert.equal((await put(u, `${u.book}m1.vcf`, vcard('m-1', 'Move Me'))).status, 201);
    const moved = await dav(u, 'MOVE', `${u.book}m1.vcf`, { headers: { Destination: `http://127.0.0.1:${server.ports.http}${other}moved.vcf`, Host: `127.0.0.1:${server.ports.http}` } });
    assert.equal(moved.status, 201, moved.text);
    assert.equal((await dav(u, 'GET', `${u.book}m1.vcf`)).status, 404);
    assert.match((await dav(u, 'GET', `${other}moved.vcf`)).text, /FN:Move Me/);
    assert.equal((await dav(u, 'MOVE', `${other}moved.vcf`, { headers: { Destination: '/dav/addressbooks/someone/Contacts/x.vcf' } })).status, 403);
  });
});

describe('CardDAV and XIMSS', () => {
  test('a CardDAV PUT is seen by a XIMSS folder (notify, folderSync); a contactAppend by CardDAV (sync, multiget)', async () => {
    const u = await newUser();
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    const { client } = await server.login(u.address, 'secret');
    await ok(client, '<folderOpen folder="C" mailbox="Contacts"><field>UID</field><field>Subject</field></folderOpen>');
    await folderSync(client, 'C');
    takeNotifies(client, 'C');
    const token = multistatus(await report(u, u.book, syncBody(''))).root.element('D:sync-token')!.text();
    assert.equal((await put(u, `${u.book}from-dav.vcf`, vcard('dav-1', 'Dav Person'))).status, 201);
    assert.ok((await awaitNotifies(client, 'C')) > 0, 'the open folder was told');
    const synced = await folderSync(client, 'C');
    assert.ok(synced.some((e) => e.toString().includes('Dav Person')), synced.map(String).join('\n'));
    await ok(client, '<contactAppend targetMailbox="Contacts"><vCard><FN>Ximss Person</FN><UID>ximss-1</UID></vCard></contactAppend>');
    const changes = multistatus(await report(u, u.book, syncBody(token)));
    const hrefs = [...changes.responses.keys()];
    const ximssHref = hrefs.find((h) => h !== `${u.book}from-dav.vcf`);
    assert.ok(ximssHref, hrefs.join(', '));
    const got = multistatus(await report(u, u.book, MULTIGET([ximssHref])));
    assert.match(got.responses.get(ximssHref)!.props.get('address-data')!.element.text(), /FN:Ximss Person/);
    // A card removed over XIMSS is a 404 under the name the CardDAV client gave it.
    const token2 = changes.root.element('D:sync-token')!.text();
    const uid = Number(((await dav(u, 'GET', `${u.book}from-dav.vcf`)).headers.etag as string).replace(/"/g, ''));
    await ok(client, `<messageRemove folder="C" mode="Immediately"><UID>${uid}</UID></messageRemove>`);
    const removed = multistatus(await report(u, u.book, syncBody(token2)));
    assert.equal(removed.responses.get(`${u.book}from-dav.vcf`)?.status, '404', [...removed.responses.keys()].join(', '));
    client.close();
  });
});

describe('CardDAV: vdirsyncer as a real client', () => {
  let sync: Vdirsyncer;
  let u: User;
  let client: XimssClient;
  before(async () => {
    u = await newUser();
    sync = await Vdirsyncer.create({ url: `http://127.0.0.1:${server.ports.http}/`, user: u.address, password: 'secret' });
    ({ client } = await server.login(u.address, 'secret'));
  });
  after(() => {
    sync?.close();
    client?.close();
  });

  test('discovers the books, syncs down, uploads, changes and deletes, and sees a XIMSS change', async () => {
    // The book appears when the home is first listed (a PUT before that finds no book: 409).
    assert.equal((await put(u, `${u.book}server-1.vcf`, vcard('server-1', 'Server One'))).status, 409);
    await dav(u, 'PROPFIND', u.home, { headers: { Depth: '1' } });
    assert.equal((await put(u, `${u.book}server-1.vcf`, vcard('server-1', 'Server One'))).status, 201);
    const discovered = await sync.discover();
    assert.equal(discovered.code, 0, discovered.output);
    assert.deepEqual(sync.collections(), ['Contacts']);
    let run = await sync.sync();
    assert.equal(run.code, 0, run.output);
    let cards = sync.items('Contacts');
    assert.equal(cards.size, 1, run.output);
    assert.match([...cards.values()][0]!, /FN:Server One/);
    // Upload a new card.
    sync.write('Contacts', 'local-1.vcf', vcard('local-1', 'Local One'));
    run = await sync.sync();
    assert.equal(run.code, 0, run.output);
    const listed = multistatus(await dav(u, 'PROPFIND', u.book, { headers: { Depth: '1' } }));
    assert.ok([...listed.responses.keys()].some((h) => h.endsWith('local-1.vcf')), [...listed.responses.keys()].join(', '));
    // Change one and delete one locally.
    const serverFile = [...sync.items('Contacts').entries()].find(([, t]) => t.includes('Server One'))![0];
    sync.write('Contacts', serverFile, vcard('server-1', 'Server One Changed'));
    sync.remove('Contacts', 'local-1.vcf');
    run = await sync.sync();
    assert.equal(run.code, 0, run.output);
    assert.match((await dav(u, 'GET', `${u.book}server-1.vcf`)).text, /Server One Changed/);
    assert.equal((await dav(u, 'GET', `${u.book}local-1.vcf`)).status, 404);
    // A XIMSS-side change shows at the next sync.
    await ok(client, '<contactAppend targetMailbox="Contacts"><vCard><FN>From Ximss</FN><UID>ximss-v</UID></vCard></contactAppend>');
    run = await sync.sync();
    assert.equal(run.code, 0, run.output);
    cards = sync.items('Contacts');
    assert.equal(cards.size, 2, [...cards.keys()].join(', '));
    assert.ok([...cards.values()].some((t) => t.includes('From Ximss')));
  });
});

describe('CardDAV on two nodes of one PostgreSQL store', () => {
  let pg: PostgresServer;
  let nodes: ClusterNodeProcess[] = [];
  let address: string;
  let auth: string;
  before(async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase('carddav');
    nodes = await Promise.all([startNode('1', url), startNode('2', url)]);
    address = 'racer@example.test';
    const added = await ximssd(['account', 'add', address, '--password', 'secret', '--store', url]);
    assert.equal(added.code, 0, added.stderr);
    auth = `Basic ${Buffer.from(`${address}:secret`).toString('base64')}`;
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await pg?.stop();
  });

  test('two PUTs of one vCard UID under two names on two nodes at once: exactly one card stays', async () => {
    const book = `/dav/addressbooks/${address}/Contacts/`;
    const on = (node: ClusterNodeProcess, method: string, path: string, options: HttpRequestOptions = {}): Promise<HttpResult> =>
      httpRequest(node.ports.http, path, { ...options, method, headers: { Authorization: auth, ...options.headers } });
    assert.equal((await on(nodes[0]!, 'PROPFIND', `/dav/addressbooks/${address}/`, { headers: { Depth: '1' } })).status, 207);
    for (let round = 0; round < 6; round++) {
      const text = vcard(`race-${round}`, `Racer ${round}`);
      const headers = { 'Content-Type': 'text/vcard' };
      const replies = await Promise.all([
        on(nodes[0]!, 'PUT', `${book}a-${round}.vcf`, { body: text, headers }),
        on(nodes[1]!, 'PUT', `${book}b-${round}.vcf`, { body: text, headers }),
      ]);
      assert.deepEqual(replies.map((r) => r.status).sort(), [201, 403], replies.map((r) => `${r.status} ${r.text}`).join('\n'));
    }
    // What the store holds, read on either node: one card per UID.
    const listed = multistatus(await on(nodes[1]!, 'REPORT', book, { body: syncBody(''), headers: { 'Content-Type': 'application/xml' } }));
    assert.equal(listed.responses.size, 6, [...listed.responses.keys()].join(', '));
  });
});
