/**
 * The File Storage over the wire (spec section "File Storage Operations", fileRights of the
 * newer text, DOWNLOAD of "HTTP Access"): every operation over TCP XIMSS, example 041
 * replayed exactly, bad names, the limits (MaxWebSize, MaxWebFiles), locks of another
 * session or account, `~account/` names with and without CanAccessWebSites, two sessions
 * seeing each other's changes, a 20 MB file written by appends and read back by ranges.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Readable } from 'node:stream';
import { XmlElement } from '../src/xml/element.js';
import { capturingLogger, deliverRaw, expectOk, fails, httpRequest, ok, postUpload, rfc822, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
const logs = capturingLogger('debug');

before(async () => {
  server = await startTestServer({}, { log: logs.log });
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
  urlID: string;
}

async function newUser(options: { timeZone?: string } = {}): Promise<User> {
  const address = await server.newAccount('files');
  if (options.timeZone) {
    const account = (await server.services.accounts.find(address))!;
    await server.services.accounts.updatePrefs(account, { TimeZone: options.timeZone });
  }
  const { client, urlID } = await server.login(address, 'secret');
  return { address, client, urlID };
}

async function second(user: User): Promise<User> {
  const { client, urlID } = await server.login(user.address, 'secret');
  return { address: user.address, client, urlID };
}

function req(name: string, attrs: Record<string, string | undefined> = {}, ...body: (XmlElement | string)[]): XmlElement {
  return new XmlElement(name, attrs, body);
}

async function write(client: XimssClient, fileName: string, text: string, attrs: Record<string, string> = {}): Promise<void> {
  await ok(client, req('fileWrite', { fileName, ...attrs }, text));
}

async function read(client: XimssClient, fileName: string, attrs: Record<string, string> = {}): Promise<XmlElement> {
  const reply = await ok(client, req('fileRead', { fileName, ...attrs }));
  assert.equal(reply.messages.length, 1);
  assert.equal(reply.messages[0]!.name, 'fileData');
  return reply.messages[0]!;
}

async function listing(client: XimssClient, attrs: Record<string, string> = {}): Promise<XmlElement[]> {
  const reply = await ok(client, req('fileList', attrs));
  for (const m of reply.messages) assert.equal(m.name, 'fileInfo');
  return reply.messages;
}

async function names(client: XimssClient, directory?: string): Promise<string[]> {
  return (await listing(client, directory === undefined ? {} : { directory })).map((m) => m.attrs.fileName! + (m.attrs.type === 'directory' ? '/' : ''));
}

async function account(address: string) {
  return (await server.services.accounts.find(address))!;
}

function download(user: User, path: string, options: { method?: string; headers?: http.OutgoingHttpHeaders } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: '127.0.0.1', port: server.ports.http, path: `/Session/${user.urlID}/DOWNLOAD/${path}`, method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end();
  });
}

describe('example 041 (fileRead) replayed exactly', () => {
  test('the five requests get the spec replies, byte for byte', async () => {
    const user = await newUser({ timeZone: 'Asia/Tokyo' });
    const owner = await account(user.address);
    // Written at 2006-10-18 11:58:36 Tokyo time (02:58:36 GMT), as in the example.
    const store = server.services.store;
    const blob = await store.files.stage(owner.id, Date.now());
    await store.files.stageChunk(blob, 0, Buffer.from('This is not your file!'));
    await store.files.commitWrite(owner.id, 'test.txt', blob, 22, { kind: 'replace' }, { now: Date.UTC(2006, 9, 18, 2, 58, 36) }, {});
    const exchange: [string, string[]][] = [
      ['<fileRead id="A001" fileName="test.txt" />', ['<fileData id="A001" fileName="test.txt" position="0" slice="22" size="22" timeModified="20061018T115836">This is not your file!</fileData>', '<response id="A001"/>']],
      ['<fileRead id="A002" fileName="test.txt" limit="15" />', ['<fileData id="A002" fileName="test.txt" position="0" slice="15" size="22" timeModified="20061018T115836">This is not you</fileData>', '<response id="A002"/>']],
      ['<fileRead id="A003" fileName="test.txt" limit="15" position="15" />', ['<fileData id="A003" fileName="test.txt" position="15" slice="7" size="22" timeModified="20061018T115836">r file!</fileData>', '<response id="A003"/>']],
      [
        '<fileRead id="A004" fileName="test.txt" limit="15" position="15" type="binary" />',
        ['<fileData id="A004" fileName="test.txt" position="15" slice="7" size="22" timeModified="20061018T115836" type="binary"><base64>ciBmaWxlIQ==</base64></fileData>', '<response id="A004"/>'],
      ],
      ['<fileRead id="A005" fileName="test.txt" position="25" />', ['<response id="A005" errorText="reading beyond the EOF mark" errorNum="500"/>']],
    ];
    for (const [request, expected] of exchange) {
      const start = user.client.raw.length;
      await user.client.request(request);
      assert.deepEqual(user.client.raw.slice(start), expected, request);
    }
  });
});

describe('file operations', () => {
  test('fileWrite modes and types; fileRead types; fileList, fileDirInfo, fileDirList', async () => {
    const { client } = await newUser();
    await write(client, 'a.txt', 'hello');
    await write(client, 'a.txt', ' world', { position: 'append' });
    await write(client, 'a.txt', 'W', { position: '6' });
    assert.equal((await read(client, 'a.txt')).text(), 'hello World');
    await fails(client, req('fileWrite', { fileName: 'a.txt', position: 'new' }, 'x'), /already exists/);
    await fails(client, req('fileWrite', { fileName: 'a.txt', position: '100' }, 'x'));
    await fails(client, req('fileWrite', { fileName: 'missing.txt', position: '0' }, 'x'), 'file is not found');
    await fails(client, req('fileWrite', { fileName: 'a.txt', position: 'sideways' }, 'x'), /invalid position/);
    await write(client, 'b.txt', 'new one', { position: 'new' });

    await ok(client, req('fileWrite', { fileName: 'bin', type: 'binary' }, req('base64', {}, Buffer.from([0, 1, 2, 255]).toString('base64'))));
    const bin = await read(client, 'bin', { type: 'binary' });
    assert.deepEqual(Buffer.from(bin.element('base64')!.text(), 'base64'), Buffer.from([0, 1, 2, 255]));
    await fails(client, req('fileRead', { fileName: 'bin' }), /type="binary"/);

    const object = req('fileWrite', { fileName: 'obj', type: 'object' }, req('subKey', { key: 'name' }, 'Bob "B"'), req('subKey', { key: 'list' }, req('subValue', {}, 'a'), req('subValue', {}, 'b c')));
    await ok(client, object);
    assert.equal((await read(client, 'obj')).text(), '{name="Bob \\"B\\"";list=(a,"b c");}');
    const objRead = await read(client, 'obj', { type: 'object' });
    assert.equal(objRead.toString().replace(/ id="[^"]*"/, ''), '<fileData fileName="obj" position="0" slice="34" size="34" timeModified="' + objRead.attrs.timeModified + '" type="object"><subKey key="name">Bob "B"</subKey><subKey key="list"><subValue>a</subValue><subValue>b c</subValue></subKey></fileData>');
    await fails(client, req('fileWrite', { fileName: 'obj', type: 'object', position: 'append' }, 'x'), /position/);
    await fails(client, req('fileRead', { fileName: 'a.txt', type: 'object' }), /not a valid object/);

    await ok(client, req('fileWrite', { fileName: 'doc.xml', type: 'xml' }, req('doc', { a: '1' }, req('item', {}, 'x&y'))));
    assert.equal((await read(client, 'doc.xml')).text(), '<doc a="1"><item>x&amp;y</item></doc>');
    assert.equal((await read(client, 'doc.xml', { type: 'xml' })).elements()[0]!.toString(), '<doc a="1"><item>x&amp;y</item></doc>');
    await fails(client, req('fileWrite', { fileName: 'two.xml', type: 'xml' }, req('a'), req('b')), /exactly one/);
    await fails(client, req('fileRead', { fileName: 'a.txt', type: 'xml' }), /not valid XML/);
    // type="vcard": the XML presentation written as vCard text, and read back as XML.
    const card = req('vCard', {}, req('FN', {}, 'Ann Example'), req('N', {}, req('FAMILY', {}, 'Example'), req('GIVEN', {}, 'Ann')), req('EMAIL', {}, req('INTERNET'), req('USERID', {}, 'ann@example.com')));
    await ok(client, req('fileWrite', { fileName: 'c.vcf', type: 'vcard' }, card));
    const cardText = Buffer.from((await read(client, 'c.vcf', { type: 'binary' })).element('base64')!.text(), 'base64').toString('utf8');
    assert.equal(cardText, 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann Example\r\nN:Example;Ann\r\nEMAIL;TYPE=INTERNET:ann@example.com\r\nEND:VCARD\r\n');
    const cardRead = (await read(client, 'c.vcf', { type: 'vcard' })).element('vCard')!;
    assert.equal(cardRead.element('FN')!.text(), 'Ann Example');
    assert.equal(cardRead.element('EMAIL')!.element('USERID')!.text(), 'ann@example.com');
    await fails(client, req('fileWrite', { fileName: 'c.vcf', type: 'vcard' }, req('vCard'), req('vCard')), /exactly one vCard/);
    await fails(client, req('fileWrite', { fileName: 'c.vcf', type: 'vcard' }, req('notACard')), /^illegal vCard data format/);
    await fails(client, req('fileRead', { fileName: 'a.txt', type: 'vcard' }), /^illegal vCard data format/);
    await fails(client, req('fileRead', { fileName: 'a.txt', limit: String(3 * 1024 * 1024 + 1) }), /limit/);
    await fails(client, req('fileRead', { fileName: 'nope' }), 'file is not found');
    await fails(client, req('fileRead', { fileName: 'a.txt', type: 'sideways' }), /unknown type/);

    await ok(client, req('fileDirCreate', { fileName: 'docs' }));
    await fails(client, req('fileDirCreate', { fileName: 'docs' }), /exists/);
    await fails(client, req('fileDirCreate', { fileName: 'none/sub' }), /does not exist/);
    await ok(client, req('fileDirCreate', { fileName: 'docs/deep' }));
    await write(client, 'docs/deep/x', '12345');
    assert.deepEqual(await names(client), ['a.txt', 'b.txt', 'bin', 'c.vcf', 'doc.xml', 'docs/', 'obj']);
    const inDocs = await listing(client, { directory: 'docs' });
    assert.equal(inDocs.length, 1);
    assert.equal(inDocs[0]!.attrs.fileName, 'deep');
    assert.equal(inDocs[0]!.attrs.directory, 'docs');
    assert.equal(inDocs[0]!.attrs.type, 'directory');
    assert.equal(inDocs[0]!.attrs.size, undefined);
    const one = await listing(client, { fileName: 'docs/deep/x' });
    assert.deepEqual([one[0]!.attrs.fileName, one[0]!.attrs.size, one[0]!.attrs.directory], ['docs/deep/x', '5', undefined]);
    assert.match(one[0]!.attrs.timeModified!, /^\d{8}T\d{6}$/);
    assert.match(one[0]!.attrs.timeAttrModified!, /^\d{8}T\d{6}$/);
    const asDirectory = await listing(client, { directory: 'a.txt' });
    assert.deepEqual([asDirectory[0]!.attrs.fileName, asDirectory[0]!.attrs.directory], ['a.txt', undefined]);
    await fails(client, req('fileList', { directory: 'nope' }), 'file is not found');

    const info = (await ok(client, req('fileDirInfo'))).messages[0]!;
    assert.equal(info.name, 'fileDirInfo');
    assert.equal(info.attrs.files, '7');
    assert.equal(info.attrs.filesLimit, '100000');
    assert.equal(info.attrs.sizeLimit, String(1024 ** 3));
    const docsInfo = (await ok(client, req('fileDirInfo', { directory: 'docs' }))).messages[0]!;
    assert.deepEqual([docsInfo.attrs.directory, docsInfo.attrs.files, docsInfo.attrs.size], ['docs', '1', '5']);
    const dirs = (await ok(client, req('fileDirList'))).messages.map((m) => m.attrs.directory);
    assert.deepEqual(dirs, ['docs', 'docs/deep']);
  });

  test('rename, remove, copy; directories: rename moves the tree, remove only when empty', async () => {
    const { client } = await newUser();
    await write(client, 'one', '1');
    await ok(client, req('fileRename', { fileName: 'one', newName: 'two' }));
    await fails(client, req('fileRead', { fileName: 'one' }), 'file is not found');
    assert.equal((await read(client, 'two')).text(), '1');
    await write(client, 'three', '3');
    await fails(client, req('fileRename', { fileName: 'two', newName: 'three' }), /exists/);
    await ok(client, req('fileCopy', { fileName: 'two', newName: 'three' }));
    assert.equal((await read(client, 'three')).text(), '1');
    await fails(client, req('fileCopy', { newName: 'x' }), /either the fileName attribute or one copyMIME element/);
    await ok(client, req('fileRemove', { fileName: 'three' }));
    await fails(client, req('fileRemove', { fileName: 'three' }), 'file is not found');

    await ok(client, req('fileDirCreate', { fileName: 'd' }));
    await ok(client, req('fileDirCreate', { fileName: 'd/e' }));
    await write(client, 'd/e/f', 'deep');
    await fails(client, req('fileRemove', { fileName: 'd' }), /is a directory/);
    await fails(client, req('fileDirRemove', { fileName: 'd' }), /not empty/);
    await fails(client, req('fileDirRemove', { fileName: 'two' }), /not a directory/);
    await ok(client, req('fileDirRename', { fileName: 'd', newName: 'moved' }));
    assert.equal((await read(client, 'moved/e/f')).text(), 'deep');
    await fails(client, req('fileDirRename', { fileName: 'moved', newName: 'moved/e/inside' }), /inside/);
    await ok(client, req('fileRemove', { fileName: 'moved/e/f' }));
    await ok(client, req('fileDirRemove', { fileName: 'moved/e' }));
    await ok(client, req('fileDirRemove', { fileName: 'moved' }));
    assert.deepEqual(await names(client), ['two']);
  });

  test('fileAttrWrite (replace, add, delete) and fileAttrRead (all, by field)', async () => {
    const { client } = await newUser();
    await write(client, 'f', 'x');
    await ok(client, req('fileAttrWrite', { fileName: 'f' }, req('color', {}, 'red'), req('tag', { mode: 'add' }, 'a'), req('tag', { mode: 'add' }, 'b')));
    let data = (await ok(client, req('fileAttrRead', { fileName: 'f' }))).messages[0]!;
    assert.equal(data.toString().replace(/ id="[^"]*"/, ''), '<fileAttrData fileName="f"><color>red</color><tag>a</tag><tag>b</tag></fileAttrData>');
    await ok(client, req('fileAttrWrite', { fileName: 'f' }, req('color', {}, 'blue'), req('tag', { mode: 'delete' })));
    data = (await ok(client, req('fileAttrRead', { fileName: 'f' }, req('field', {}, 'color')))).messages[0]!;
    assert.equal(data.elements().map((e) => e.toString()).join(''), '<color>blue</color>');
    data = (await ok(client, req('fileAttrRead', { fileName: 'f' }, req('field', {}, 'tag')))).messages[0]!;
    assert.equal(data.elements().length, 0);
    await fails(client, req('fileAttrRead', { fileName: 'none' }), 'file is not found');
    await fails(client, req('fileAttrWrite', { fileName: 'none' }, req('a')), 'file is not found');
  });

  test('fileSubList and fileSubUpdate', async () => {
    const { client } = await newUser();
    await ok(client, req('fileSubUpdate', {}, req('fileSubscription', { fileName: 'b/x', mode: 'add' }), req('fileSubscription', { fileName: 'a', mode: 'add' })));
    let subs = (await ok(client, req('fileSubList'))).messages;
    assert.deepEqual(subs.map((m) => [m.name, m.attrs.fileName]), [['fileSubscription', 'a'], ['fileSubscription', 'b/x']]);
    await ok(client, req('fileSubUpdate', {}, req('fileSubscription', { fileName: 'a', mode: 'remove' })));
    subs = (await ok(client, req('fileSubList'))).messages;
    assert.deepEqual(subs.map((m) => m.attrs.fileName), ['b/x']);
    await fails(client, req('fileSubUpdate', {}, req('fileSubscription', {})), /fileName/);
  });

  test('bad names are refused with a clear error, and the session goes on', async () => {
    const { client } = await newUser();
    // (Control characters cannot travel in XML: DOWNLOAD below tries one.)
    for (const bad of ['a/../b', '..', 'a/./b', 'a//b', 'x/~y', 'a\\b', 'x'.repeat(256), 'a/'.repeat(600) + 'a']) {
      await fails(client, req('fileWrite', { fileName: bad }, 'x'), /invalid file name/, JSON.stringify(bad.slice(0, 30)));
    }
    await fails(client, req('fileWrite', { fileName: '' }, 'x'), /fileName attribute is missing/);
    await fails(client, req('fileWrite', { fileName: '/' }, 'x'), /directory/);
    // Leading and trailing slashes are dropped.
    await write(client, '/lead/', 'ok');
    assert.equal((await read(client, 'lead')).text(), 'ok');
    await fails(client, req('fileRead', { fileName: '~nobody-here/x' }), /unknown account/);
    await ok(client, req('noop'));
  });

  test('fileStore from an uploaded file and from a message part; fileCopy with copyMIME', async () => {
    const user = await newUser();
    const { client } = user;
    await postUpload(server, user, 'up1', Buffer.from('uploaded data'), 'u.txt', 'text/plain');
    await ok(client, req('fileStore', { fileName: 'from-upload.txt', uploadID: 'up1' }));
    assert.equal((await read(client, 'from-upload.txt')).text(), 'uploaded data');
    await ok(client, req('fileStore', { fileName: 'from-upload.txt', uploadID: 'up1', position: 'append' }));
    assert.equal((await read(client, 'from-upload.txt')).text(), 'uploaded datauploaded data');
    await fails(client, req('fileStore', { fileName: 'x', uploadID: 'none' }), /uploaded file not found/);
    await fails(client, req('fileStore', { fileName: 'x' }), /exactly one/);
    await fails(client, req('fileStore', { fileName: 'x', uploadID: 'up1', folder: 'INBOX' }), /exactly one/);
    await fails(client, req('fileStore', { fileName: 'x', calendar: 'Calendar' }), 'calendar has not been opened');

    const attachment = Buffer.from('attachment bytes \u0001\u0002').toString('base64');
    const raw = rfc822(
      [
        ['From', 'a@example.test'],
        ['To', user.address],
        ['Subject', 'with attachment'],
        ['MIME-Version', '1.0'],
        ['Content-Type', 'multipart/mixed; boundary="b1"'],
      ],
      `--b1\r\nContent-Type: text/plain\r\n\r\nbody text\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${attachment}\r\n--b1--\r\n`,
    );
    const [uid] = await deliverRaw(server, user.address, 'INBOX', [raw]);
    await fails(client, req('fileStore', { fileName: 'part', folder: 'INBOX', UID: String(uid), partID: '2' }), /folder has not been opened/);
    expectOk(await client.request('<folderOpen folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>'));
    await ok(client, req('fileStore', { fileName: 'part', folder: 'INBOX', UID: String(uid), partID: '2' }));
    const stored = await read(client, 'part', { type: 'binary' });
    assert.equal(Buffer.from(stored.element('base64')!.text(), 'base64').toString(), 'attachment bytes \u0001\u0002');
    await ok(client, req('fileCopy', { newName: 'copied' }, req('copyMIME', { folder: 'INBOX', UID: String(uid), partID: '1' })));
    assert.equal((await read(client, 'copied')).text(), 'body text');
    await fails(client, req('fileStore', { fileName: 'part', folder: 'INBOX', UID: String(uid), partID: '9' }), /message part not found/);
  });
});

describe('limits', () => {
  test('MaxWebSize and MaxWebFiles refuse writes beyond them with a clear error (and a log event)', async () => {
    const user = await newUser();
    const { client } = user;
    const owner = await account(user.address);
    await server.services.accounts.setSettings(owner, { MaxWebSize: '10', MaxWebFiles: '3' });
    await write(client, 'a', '12345');
    await write(client, 'b', '12345');
    await fails(client, req('fileWrite', { fileName: 'a', position: 'append' }, 'x'), /the File Storage is full \(at most 10 bytes\)/);
    await fails(client, req('fileWrite', { fileName: 'c' }, 'toolong-toolong'), /full/);
    await write(client, 'c', '');
    await fails(client, req('fileWrite', { fileName: 'd' }, ''), /too many files \(at most 3/);
    await fails(client, req('fileDirCreate', { fileName: 'dir' }), /too many files/);
    await fails(client, req('fileCopy', { fileName: 'a', newName: 'e' }), /too many files|full/);
    // Nothing refused was stored.
    assert.deepEqual(await names(client), ['a', 'b', 'c']);
    assert.equal((await read(client, 'a')).text(), '12345');
    const info = (await ok(client, req('fileDirInfo'))).messages[0]!;
    assert.deepEqual([info.attrs.files, info.attrs.size, info.attrs.filesLimit, info.attrs.sizeLimit], ['3', '10', '3', '10']);
    assert.ok(logs.events('file.limit').some((r) => String(r.account).startsWith('files')), 'a file.limit log event');
    // Raised limits apply at once (read as stored).
    await server.services.accounts.setSettings(owner, { MaxWebSize: 'unlimited', MaxWebFiles: 'unlimited' });
    await write(client, 'd', 'fine now');
  });
});

describe('locks', () => {
  test('a lock of another session or account refuses changes; the locking session may change; unlock, testlock, refresh', async () => {
    const user = await newUser({ timeZone: 'Asia/Tokyo' });
    const other = await second(user);
    await write(user.client, 'doc', 'v1');
    const locked = (await ok(user.client, req('fileLock', { fileName: 'doc', mode: 'lock', scope: 'exclusive', type: 'write', timeTill: '20990101T090000' }, req('owner', {}, 'me')))).messages[0]!;
    assert.equal(locked.name, 'fileLockData');
    assert.match(locked.attrs.token!, /^opaquelocktoken:/);
    assert.equal(locked.attrs.create, undefined);
    // The lock's lifetime is bounded (a week), so a year-2099 timeTill is cut down; its expiry is shown in Tokyo time.
    assert.match(locked.attrs.expires!, /^\d{8}T\d{6}$/);
    const items = locked.elements('fileLockData');
    assert.equal(items.length, 1);
    assert.deepEqual([items[0]!.attrs.scope, items[0]!.attrs.type], ['exclusive', 'write']);
    assert.equal(items[0]!.element('owner')?.text(), 'me');

    await fails(other.client, req('fileWrite', { fileName: 'doc' }, 'v2'), /doc is locked/);
    await fails(other.client, req('fileRemove', { fileName: 'doc' }), /locked/);
    await fails(other.client, req('fileAttrWrite', { fileName: 'doc' }, req('a', {}, '1')), /locked/);
    await fails(other.client, req('fileLock', { fileName: 'doc', mode: 'lock', scope: 'shared', type: 'write' }), /locked/);
    await write(user.client, 'doc', 'v2');
    assert.equal((await read(other.client, 'doc')).text(), 'v2');

    const test1 = (await ok(other.client, req('fileLock', { fileName: 'doc', mode: 'testlock' }))).messages[0]!;
    assert.equal(test1.elements('fileLockData').length, 1);
    const rights = (await ok(other.client, req('fileRights', { fileName: 'doc' }))).messages;
    assert.deepEqual(rights.map((m) => m.name), ['rights', 'lock']);
    assert.equal(rights[0]!.text(), 'rwdal');

    // Refreshing with a time in the session's zone: 09:00 Tokyo is 00:00 GMT.
    const soon = new Date(Date.now() + 3600_000);
    const tokyo = new Date(soon.getTime() + 9 * 3600_000);
    const local = tokyo.toISOString().replace(/[-:]/g, '').slice(0, 15);
    const refreshed = (await ok(user.client, req('fileLock', { fileName: 'doc', mode: 'lock', token: locked.attrs.token, timeTill: local }))).messages[0]!;
    assert.equal(refreshed.attrs.expires, local);
    await fails(user.client, req('fileLock', { fileName: 'doc', mode: 'lock', token: 'opaquelocktoken:nope' }), 'file is not found');
    await fails(user.client, req('fileLock', { fileName: 'doc', mode: 'lock', scope: 'exclusive', type: 'write', timeTill: 'tomorrow' }), /invalid timeTill/);
    await fails(user.client, req('fileLock', { fileName: 'doc', mode: 'sideways' }), /invalid mode/);
    await fails(user.client, req('fileLock', { fileName: 'doc', mode: 'lock', scope: 'partial', type: 'write' }), /invalid scope/);

    await ok(user.client, req('fileLock', { fileName: 'doc', mode: 'unlock', token: locked.attrs.token }));
    await write(other.client, 'doc', 'v3');
    const none = (await ok(other.client, req('fileRights', { fileName: 'doc' }))).messages;
    assert.deepEqual(none.map((m) => m.name), ['rights']);

    // create="yes" makes an empty file; a directory lock covers what is below it.
    const created = (await ok(user.client, req('fileLock', { fileName: 'fresh', mode: 'lock', scope: 'shared', type: 'write', create: 'yes' }))).messages[0]!;
    assert.equal(created.attrs.create, 'yes');
    assert.equal((await read(user.client, 'fresh')).attrs.size, '0');
    await fails(user.client, req('fileLock', { fileName: 'absent', mode: 'lock', scope: 'shared', type: 'write' }), 'file is not found');
    await ok(user.client, req('fileDirCreate', { fileName: 'dir' }));
    await ok(user.client, req('fileLock', { fileName: 'dir', mode: 'lock', scope: 'exclusive', type: 'write' }));
    await fails(other.client, req('fileWrite', { fileName: 'dir/new' }, 'x'), /dir is locked/);
    await write(user.client, 'dir/new', 'x');
  });
});

describe('other accounts: ~account/ names', () => {
  test('refused without CanAccessWebSites, allowed with it (and for the postmaster)', async () => {
    const owner = await newUser();
    const admin = await newUser();
    await write(owner.client, 'private.txt', 'secret stuff');
    const ownerName = owner.address.split('@')[0]!;
    await fails(admin.client, req('fileRead', { fileName: `~${ownerName}/private.txt` }), 'access denied');
    await fails(admin.client, req('fileList', { directory: `~${owner.address}` }), 'access denied');
    assert.equal((await download(admin, `~${ownerName}/private.txt`)).status, 403);
    // Own storage by the prefix works for anyone.
    await write(owner.client, `~${ownerName}/mine.txt`, 'mine');
    assert.equal((await read(owner.client, 'mine.txt')).text(), 'mine');

    await server.services.accounts.setSettings(await account(admin.address), { DomainAdminRights: 'CanAccessWebSites' });
    assert.equal((await read(admin.client, `~${ownerName}/private.txt`)).text(), 'secret stuff');
    await write(admin.client, `~${ownerName}/from-admin.txt`, 'hi');
    assert.equal((await read(owner.client, 'from-admin.txt')).text(), 'hi');
    assert.deepEqual((await names(admin.client, `~${owner.address}`)).sort(), ['from-admin.txt', 'mine.txt', 'private.txt']);
    await ok(admin.client, req('fileCopy', { fileName: `~${ownerName}/private.txt`, newName: 'copy-of-private.txt' }));
    assert.equal((await read(admin.client, 'copy-of-private.txt')).text(), 'secret stuff');
    await fails(admin.client, req('fileRename', { fileName: `~${ownerName}/mine.txt`, newName: 'stolen.txt' }), /two accounts/);
    const dl = await download(admin, `~${ownerName}/private.txt`);
    assert.equal(dl.status, 200);
    assert.equal(dl.body.toString(), 'secret stuff');
    // A lock of another account refuses the change too, both ways.
    const lock = (await ok(owner.client, req('fileLock', { fileName: 'private.txt', mode: 'lock', scope: 'exclusive', type: 'write' }))).messages[0]!;
    await fails(admin.client, req('fileWrite', { fileName: `~${ownerName}/private.txt` }, 'overwritten'), /private.txt is locked/);
    await ok(owner.client, req('fileLock', { fileName: 'private.txt', mode: 'unlock', token: lock.attrs.token }));
    await ok(admin.client, req('fileLock', { fileName: `~${ownerName}/from-admin.txt`, mode: 'lock', scope: 'exclusive', type: 'write' }));
    await fails(owner.client, req('fileRemove', { fileName: 'from-admin.txt' }), /locked/);
    await write(admin.client, `~${ownerName}/from-admin.txt`, 'still mine to change');
  });
});

describe('other accounts: Account Access Rights', () => {
  test('an ACL grant of r opens reading only, w everything; revoking closes it again', async () => {
    const owner = await newUser();
    const reader = await newUser();
    await write(owner.client, 'shared.txt', 'for your eyes');
    const ownerName = owner.address.split('@')[0]!;
    const readerName = reader.address.split('@')[0]!;
    const grant = (rights: string): XmlElement => req('accountACLUpdate', {}, req('aclElem', { pattern: readerName }, rights));

    await ok(owner.client, grant('r'));
    assert.equal((await read(reader.client, `~${ownerName}/shared.txt`)).text(), 'for your eyes');
    assert.deepEqual(await names(reader.client, `~${ownerName}`), ['shared.txt']);
    assert.equal((await ok(reader.client, req('fileRights', { fileName: `~${ownerName}/shared.txt` }))).messages[0]!.text(), 'r');
    assert.equal((await download(reader, `~${ownerName}/shared.txt`)).status, 200);
    await fails(reader.client, req('fileWrite', { fileName: `~${ownerName}/shared.txt` }, 'changed'), 'access denied');
    await fails(reader.client, req('fileRemove', { fileName: `~${ownerName}/shared.txt` }), 'access denied');
    await fails(reader.client, req('fileLock', { fileName: `~${ownerName}/shared.txt`, mode: 'lock', scope: 'shared', type: 'write' }), 'access denied');

    await ok(owner.client, grant('rw'));
    await write(reader.client, `~${ownerName}/shared.txt`, 'changed');
    assert.equal((await read(owner.client, 'shared.txt')).text(), 'changed');
    assert.equal((await ok(reader.client, req('fileRights', { fileName: `~${ownerName}/shared.txt` }))).messages[0]!.text(), 'rwdal');

    await ok(owner.client, req('accountACLUpdate', {}, req('aclElem', { pattern: readerName, mode: 'clear' })));
    await fails(reader.client, req('fileRead', { fileName: `~${ownerName}/shared.txt` }), 'access denied');
    assert.equal((await download(reader, `~${ownerName}/shared.txt`)).status, 403);
  });
});

describe('two sessions', () => {
  test('one session sees what another wrote, renamed and removed', async () => {
    const a = await newUser();
    const b = await second(a);
    await write(a.client, 'shared.txt', 'from a');
    assert.deepEqual(await names(b.client), ['shared.txt']);
    assert.equal((await read(b.client, 'shared.txt')).text(), 'from a');
    await write(b.client, 'shared.txt', ' and b', { position: 'append' });
    assert.equal((await read(a.client, 'shared.txt')).text(), 'from a and b');
    await ok(a.client, req('fileRename', { fileName: 'shared.txt', newName: 'renamed.txt' }));
    assert.deepEqual(await names(b.client), ['renamed.txt']);
    await ok(b.client, req('fileRemove', { fileName: 'renamed.txt' }));
    assert.deepEqual(await names(a.client), []);
  });
});

describe('concurrent appends', () => {
  test('appends of two sessions at once all land, none lost or torn', async () => {
    const a = await newUser();
    const b = await second(a);
    await write(a.client, 'log', '');
    const lines = Array.from({ length: 40 }, (_, i) => `line ${String(i).padStart(2, '0')}\n`);
    await Promise.all(lines.map((line, i) => ok((i % 2 ? a : b).client, req('fileWrite', { fileName: 'log', position: 'append' }, line))));
    const text = (await read(a.client, 'log')).text();
    assert.equal(text.length, lines.join('').length);
    assert.deepEqual(text.split('\n').filter(Boolean).sort(), lines.map((l) => l.trim()).sort());
  });
});

describe('DOWNLOAD', () => {
  test('Content-Type, Content-Length, ETag, Last-Modified, Range (206, 416), HEAD, If-None-Match, not found', async () => {
    const user = await newUser();
    await write(user.client, 'page.html', '<p>0123456789</p>');
    const whole = await download(user, 'page.html');
    assert.equal(whole.status, 200);
    assert.equal(whole.body.toString(), '<p>0123456789</p>');
    assert.equal(whole.headers['content-type'], 'text/html');
    assert.equal(whole.headers['content-length'], '17');
    assert.match(String(whole.headers.etag), /^".+"$/);
    assert.ok(!Number.isNaN(Date.parse(String(whole.headers['last-modified']))));
    assert.equal(whole.headers['accept-ranges'], 'bytes');
    assert.equal(whole.headers['content-security-policy'], 'sandbox');

    const part = await download(user, 'page.html', { headers: { Range: 'bytes=3-6' } });
    assert.equal(part.status, 206);
    assert.equal(part.body.toString(), '0123');
    assert.equal(part.headers['content-range'], 'bytes 3-6/17');
    const tail = await download(user, 'page.html', { headers: { Range: 'bytes=-4' } });
    assert.equal(tail.body.toString(), '</p>');
    const beyond = await download(user, 'page.html', { headers: { Range: 'bytes=100-' } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], 'bytes */17');

    const head = await download(user, 'page.html', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '17');
    assert.equal(head.body.length, 0);
    const cached = await download(user, 'page.html', { headers: { 'If-None-Match': String(whole.headers.etag) } });
    assert.equal(cached.status, 304);
    await write(user.client, 'page.html', 'changed');
    const fresh = await download(user, 'page.html', { headers: { 'If-None-Match': String(whole.headers.etag) } });
    assert.equal(fresh.status, 200);
    assert.notEqual(fresh.headers.etag, whole.headers.etag);

    await ok(user.client, req('fileDirCreate', { fileName: 'sub dir' }));
    await write(user.client, 'sub dir/é.png', 'png?');
    const encoded = await download(user, 'sub%20dir/%C3%A9.png');
    assert.equal(encoded.status, 200);
    assert.equal(encoded.headers['content-type'], 'image/png');
    assert.equal((await download(user, 'none.txt')).status, 404);
    assert.equal((await download(user, 'sub%20dir')).status, 404);
    assert.equal((await download(user, 'a/../b')).status, 400);
    assert.equal((await download(user, 'a%07b')).status, 400);
    const gone = await httpRequest(server.ports.http, `/Session/nosuchsession/DOWNLOAD/page.html`);
    assert.equal(gone.status, 550);
  });

  test('a 20 MB file written by appends is read back whole and by ranges', async () => {
    const user = await newUser();
    const piece = 1024 * 1024;
    const hash = createHash('sha256');
    const pieceOf = (i: number): Buffer => {
      const b = Buffer.alloc(piece);
      for (let j = 0; j < piece; j += 4) b.writeUInt32BE((i * piece + j) >>> 0, j);
      return b;
    };
    for (let i = 0; i < 20; i++) {
      const data = pieceOf(i);
      hash.update(data);
      await ok(user.client, req('fileWrite', { fileName: 'big.bin', type: 'binary', position: i === 0 ? 'new' : 'append' }, req('base64', {}, data.toString('base64'))));
    }
    const info = (await listing(user.client, { fileName: 'big.bin' }))[0]!;
    assert.equal(info.attrs.size, String(20 * piece));
    // Read back as a stream, hashed as it comes.
    const whole = await new Promise<{ status: number; digest: string; length: string | undefined }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.ports.http, path: `/Session/${user.urlID}/DOWNLOAD/big.bin`, agent: false }, (res) => {
          const h = createHash('sha256');
          Readable.from(res)
            .on('data', (c: Buffer) => h.update(c))
            .on('end', () => resolve({ status: res.statusCode ?? 0, digest: h.digest('hex'), length: res.headers['content-length'] }))
            .on('error', reject);
        })
        .on('error', reject);
    });
    assert.deepEqual(whole, { status: 200, digest: hash.digest('hex'), length: String(20 * piece) });
    // Ranges across piece boundaries.
    for (const [start, end] of [
      [0, 9],
      [piece - 3, piece + 3],
      [7 * piece + 100, 9 * piece + 50],
      [20 * piece - 10, 20 * piece - 1],
    ] as const) {
      const got = await download(user, 'big.bin', { headers: { Range: `bytes=${start}-${end}` } });
      assert.equal(got.status, 206);
      const expected = Buffer.concat(Array.from({ length: Math.floor(end / piece) - Math.floor(start / piece) + 1 }, (_, k) => pieceOf(Math.floor(start / piece) + k)));
      const from = start - Math.floor(start / piece) * piece;
      assert.deepEqual(got.body, expected.subarray(from, from + end - start + 1), `bytes ${start}-${end}`);
    }
    // fileRead of a middle portion with type binary.
    const mid = await read(user.client, 'big.bin', { type: 'binary', position: String(5 * piece - 2), limit: '4' });
    assert.deepEqual(Buffer.from(mid.element('base64')!.text(), 'base64'), Buffer.concat([pieceOf(4), pieceOf(5)]).subarray(piece - 2, piece + 2));
    assert.equal(mid.attrs.slice, '4');
  });
});
