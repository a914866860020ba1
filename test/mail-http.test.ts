/**
 * The spec's "HTTP Access" resources for mail: message parts (/Session/<id>/MIME/...),
 * the uploaded file set (UPLOAD by PUT and by POST multipart/form-data, listUploaded,
 * clearUploaded, DOWNLOAD/$UPLOAD$/<id>), with real fetch requests against a session
 * started over XIMSS/TCP (and one started over HTTP).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseXml } from '../src/xml/parser.js';
import { deliverRaw, expectError, expectOk, loginWithUrlId, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let client: XimssClient;
let urlID: string;
let raw: Buffer;
const ADDRESS = 'web@example.test';

const GIF = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function base64Lines(data: Buffer): string {
  return (data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
}

/** multipart/mixed: 01 multipart/related (01-01 html citing cid:logo, 01-02 gif), 02 QP latin-1 text, 03 binary attachment. */
function partsMessage(): Buffer {
  return Buffer.from(
    [
      'From: "Parts Sender" <parts@example.org>',
      'To: web@example.test',
      'Subject: HTTP parts',
      'Date: Mon, 10 Apr 2006 13:15:48 -0700',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="mix"',
      '',
      '--mix',
      'Content-Type: multipart/related; boundary="rel"',
      '',
      '--rel',
      'Content-Type: text/html; charset=utf-8',
      '',
      '<html><body><img src="cid:logo@example.org"></body></html>',
      '--rel',
      'Content-Type: image/gif',
      'Content-ID: <logo@example.org>',
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(GIF),
      '--rel--',
      '',
      '--mix',
      'Content-Type: text/plain; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Caf=E9 au lait',
      '--mix',
      'Content-Type: application/octet-stream; name="data.bin"',
      'Content-Disposition: attachment; filename="data.bin"',
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(BINARY),
      '--mix--',
      '',
    ].join('\r\n'),
  );
}

before(async () => {
  server = await startTestServer();
  await server.addAccount(ADDRESS, 'secret');
  raw = partsMessage();
  await deliverRaw(server, ADDRESS, 'INBOX', [raw]);
  ({ client, urlID } = await loginWithUrlId(server.ports.ximss, ADDRESS, 'secret'));
  expectOk(await client.request('<folderOpen folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>'));
});
after(async () => {
  client.close();
  await server.stop();
});

function url(path: string, session = urlID): string {
  return `http://127.0.0.1:${server.ports.http}/Session/${session}/${path}`;
}

async function getBytes(path: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; headers: Headers; body: Buffer }> {
  const response = await fetch(url(path), { headers });
  return { status: response.status, type: response.headers.get('content-type'), headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

describe('message parts: /Session/<id>/MIME/<folder>/<UID>-<partID>-<suffix>', () => {
  test('P.txt and H.txt: the undecoded message or part, and its headers', async () => {
    const whole = await getBytes('MIME/INBOX/1-P.txt');
    assert.equal(whole.status, 200);
    assert.match(whole.type ?? '', /^text\/plain/);
    assert.deepEqual(whole.body, raw, 'the whole message, byte for byte');

    const headerEnd = raw.indexOf('\r\n\r\n') + 4;
    const head = await getBytes('MIME/INBOX/1-H.txt');
    assert.equal(head.status, 200);
    assert.deepEqual(head.body, raw.subarray(0, headerEnd), 'the header block with its empty line');

    const text = raw.toString('latin1');
    const partStart = text.indexOf('Content-Type: text/plain; charset=iso-8859-1');
    const partEnd = text.indexOf('\r\n--mix\r\nContent-Type: application/octet-stream');
    const part = await getBytes('MIME/INBOX/1-02-P.txt');
    assert.equal(part.status, 200);
    assert.equal(part.body.toString('latin1'), text.slice(partStart, partEnd));
    const partHead = await getBytes('MIME/INBOX/1-02-H.txt');
    assert.equal(partHead.body.toString('latin1'), 'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n');
    // partIDs may be written without padding.
    assert.deepEqual((await getBytes('MIME/INBOX/1-2-H.txt')).body, partHead.body);
  });

  test('B.<ext>: the decoded body with the part Content-Type; a trailing file name is ignored', async () => {
    const text = await getBytes('MIME/INBOX/1-02-B.txt');
    assert.equal(text.status, 200);
    assert.match(text.type ?? '', /^text\/plain/);
    assert.match(text.type ?? '', /charset="?iso-8859-1"?/i);
    assert.deepEqual(text.body, Buffer.from('Caf\xe9 au lait', 'latin1'), 'quoted-printable decoded, charset kept');

    const gif = await getBytes('MIME/INBOX/1-01-02-B.gif');
    assert.equal(gif.status, 200);
    assert.equal(gif.type, 'image/gif');
    assert.deepEqual(gif.body, GIF);

    const bin = await getBytes('MIME/INBOX/1-03-B.bin/data.bin');
    assert.equal(bin.status, 200);
    assert.match(bin.type ?? '', /^application\/octet-stream/);
    assert.deepEqual(bin.body, BINARY);
    assert.deepEqual((await getBytes('MIME/INBOX/1-03-B.whatever/some%20name.dat')).body, BINARY);

    const html = await getBytes('MIME/INBOX/1-01-01-B.html');
    assert.match(html.type ?? '', /^text\/html/);
    assert.equal(html.body.toString('utf8'), '<html><body><img src="cid:logo@example.org"></body></html>');
  });

  test('R/<cid>: a part related to the current one, found by its Content-ID', async () => {
    for (const cid of ['logo%40example.org', encodeURIComponent('<logo@example.org>')]) {
      const image = await getBytes(`MIME/INBOX/1-01-01-R/${cid}`);
      assert.equal(image.status, 200, cid);
      assert.equal(image.type, 'image/gif');
      assert.deepEqual(image.body, GIF);
    }
    const missing = await getBytes('MIME/INBOX/1-01-01-R/nothing%40example.org');
    assert.equal(missing.status, 404);
  });

  test('Range gives 206 with Content-Range; OffsetFrom/OffsetTill give the bytes from..till-1', async () => {
    const first = await getBytes('MIME/INBOX/1-03-B.bin', { Range: 'bytes=0-9' });
    assert.equal(first.status, 206);
    assert.equal(first.headers.get('content-range'), 'bytes 0-9/256');
    assert.deepEqual(first.body, BINARY.subarray(0, 10));
    const tail = await getBytes('MIME/INBOX/1-03-B.bin', { Range: 'bytes=250-' });
    assert.equal(tail.status, 206);
    assert.equal(tail.headers.get('content-range'), 'bytes 250-255/256');
    assert.deepEqual(tail.body, BINARY.subarray(250));
    const suffix = await getBytes('MIME/INBOX/1-03-B.bin', { Range: 'bytes=-4' });
    assert.equal(suffix.status, 206);
    assert.equal(suffix.headers.get('content-range'), 'bytes 252-255/256');
    assert.deepEqual(suffix.body, BINARY.subarray(252));
    const beyond = await getBytes('MIME/INBOX/1-03-B.bin', { Range: 'bytes=300-400' });
    assert.equal(beyond.status, 416);

    const window = await getBytes('MIME/INBOX/1-03-B.bin?OffsetFrom=100&OffsetTill=200');
    assert.equal(window.status, 200);
    assert.deepEqual(window.body, BINARY.subarray(100, 200));
    const open = await getBytes('MIME/INBOX/1-03-B.bin?OffsetFrom=250');
    assert.deepEqual(open.body, BINARY.subarray(250));
    const gif = await getBytes('MIME/INBOX/1-01-02-B.gif?OffsetFrom=0&OffsetTill=6');
    assert.equal(gif.body.toString('latin1'), 'GIF89a');
  });

  test('404 with a text for an unopened folder, a missing message or part; 550 for an unknown session', async () => {
    const cases: [string, RegExp][] = [
      ['MIME/Closed/1-P.txt', /folder has not been opened/],
      ['MIME/INBOX/9-P.txt', /not found/],
      ['MIME/INBOX/1-07-B.txt', /not found/],
      ['MIME/INBOX/1-03-07-B.txt', /not found/],
      ['MIME/INBOX/nonsense', /expected/],
    ];
    for (const [path, text] of cases) {
      const response = await fetch(url(path));
      assert.equal(response.status, 404, path);
      assert.match(await response.text(), text, path);
    }
    for (const path of ['MIME/INBOX/1-P.txt', 'DOWNLOAD/$UPLOAD$/x', 'UPLOAD/x']) {
      const response = await fetch(url(path, '1-AAAAAAAAAAAAAAAAAAAA'), path.startsWith('UPLOAD') ? { method: 'PUT', body: 'x' } : {});
      assert.equal(response.status, 550, path);
    }
  });

  test('folder names are URL-encoded UTF-8; a folder name may contain a slash', async () => {
    const names = ['Входящие', 'Проекты/Отчёты', 'my box #1', '100%'];
    for (const name of names) expectOk(await client.request(`<folderOpen folder="${name}" mailbox="INBOX"><field>UID</field></folderOpen>`));
    for (const name of names) {
      for (const encoded of [encodeURIComponent(name), name.split('/').map(encodeURIComponent).join('/')]) {
        const response = await getBytes(`MIME/${encoded}/1-02-B.txt`);
        assert.equal(response.status, 200, `${name} as ${encoded}`);
        assert.deepEqual(response.body, Buffer.from('Caf\xe9 au lait', 'latin1'));
      }
    }
    // Percent-encoding that is not UTF-8 (Latin-1 é) names no open folder; the session is unharmed.
    expectOk(await client.request('<folderOpen folder="Café" mailbox="INBOX"><field>UID</field></folderOpen>'));
    assert.equal((await getBytes('MIME/Caf%E9/1-P.txt')).status, 404);
    assert.equal((await getBytes(`MIME/${encodeURIComponent('Café')}/1-P.txt`)).status, 200);
    expectOk(await client.request('<folderClose folder="Входящие"/>'));
    assert.equal((await getBytes(`MIME/${encodeURIComponent('Входящие')}/1-P.txt`)).status, 404);
  });

  test('a session that logged in over HTTP reads parts of the folders it opened', async () => {
    const login = await fetch(`http://127.0.0.1:${server.ports.http}/XIMSSLogin/?userName=${ADDRESS}&password=secret`);
    const session = parseXml(await login.text()).elements()[0]!;
    const id = session.attrs.urlID!;
    const sync = await fetch(url('sync', id), { method: 'POST', body: '<XIMSS><folderOpen id="1" folder="F"  mailbox="INBOX"><field>UID</field></folderOpen></XIMSS>' });
    const reply = parseXml(await sync.text());
    assert.deepEqual(reply.elements().map((e) => [e.name, e.attrs.mode]), [['folderReport', 'init'], ['response', undefined]]);
    const part = await fetch(url('MIME/F/1-01-02-B.gif', id));
    assert.equal(part.status, 200);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), GIF);
    await fetch(url('KILL', id));
    assert.equal((await fetch(url('MIME/F/1-P.txt', id))).status, 550, 'a killed session answers 550');
  });
});

describe('uploads: /Session/<id>/UPLOAD/<uploadID>, listUploaded, clearUploaded, DOWNLOAD/$UPLOAD$/<id>', () => {
  async function listUploaded(): Promise<Map<string, Record<string, string>>> {
    const reply = expectOk(await client.request('<listUploaded/>'));
    return new Map(
      reply.messages.map((m) => {
        assert.equal(m.name, 'uploadedFile');
        const { id, uploadID, ...rest } = m.attrs;
        assert.ok(id);
        return [uploadID!, rest];
      }),
    );
  }

  test('PUT stores the body with its Content-Type and tells the session (newUploaded); a PUT to the same id replaces it', async () => {
    expectOk(await client.request('<clearUploaded/>'));
    const response = await fetch(url('UPLOAD/note1'), { method: 'PUT', headers: { 'Content-Type': 'text/plain; charset=koi8-r' }, body: 'first version' });
    assert.equal(response.status, 200);
    const note = await client.nextAsync('newUploaded');
    assert.equal(note.toString(), '<newUploaded uploadID="note1"/>');
    let files = await listUploaded();
    assert.deepEqual(files.get('note1'), { size: '13', type: 'text', subtype: 'plain', charset: 'koi8-r' });

    const download = await fetch(url('DOWNLOAD/$UPLOAD$/note1'));
    assert.equal(download.status, 200);
    assert.match(download.headers.get('content-type') ?? '', /^text\/plain; charset=koi8-r/);
    assert.equal(await download.text(), 'first version');

    assert.equal((await fetch(url('UPLOAD/note1'), { method: 'PUT', headers: { 'Content-Type': 'image/gif' }, body: new Uint8Array(GIF) })).status, 200);
    await client.nextAsync('newUploaded');
    files = await listUploaded();
    assert.equal(files.size, 1);
    assert.deepEqual(files.get('note1'), { size: String(GIF.length), type: 'image', subtype: 'gif' });
    assert.deepEqual(Buffer.from(await (await fetch(url('DOWNLOAD/$UPLOAD$/note1'))).arrayBuffer()), GIF);
    const ranged = await fetch(url('DOWNLOAD/$UPLOAD$/note1'), { headers: { Range: 'bytes=0-2' } });
    assert.equal(ranged.status, 206);
    assert.equal(await ranged.text(), 'GIF');
  });

  test('POST multipart/form-data: the fileData field, its file name and type are kept', async () => {
    expectOk(await client.request('<clearUploaded/>'));
    const form = new FormData();
    form.append('comment', 'ignored field');
    form.append('fileData', new Blob([new Uint8Array(BINARY)], { type: 'application/x-test' }), 'report 2024.bin');
    const response = await fetch(url('UPLOAD/form1'), { method: 'POST', body: form });
    assert.equal(response.status, 200, await response.text());
    assert.equal((await client.nextAsync('newUploaded')).attrs.uploadID, 'form1');
    const files = await listUploaded();
    assert.deepEqual(files.get('form1'), { fileName: 'report 2024.bin', size: '256', type: 'application', subtype: 'x-test' });
    const download = await fetch(url('DOWNLOAD/$UPLOAD$/form1'));
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), BINARY);
    assert.match(download.headers.get('content-disposition') ?? '', /report%202024\.bin|report 2024\.bin/);
    // listUploaded of one id.
    const one = expectOk(await client.request('<listUploaded uploadID="form1"/>'));
    assert.deepEqual(one.messages.map((m) => m.attrs.uploadID), ['form1']);
    expectError(await client.request('<listUploaded uploadID="none"/>'));

    // A form without a file field fails with 500.
    const empty = new FormData();
    empty.append('comment', 'no file');
    assert.equal((await fetch(url('UPLOAD/form2'), { method: 'POST', body: empty })).status, 500);
    assert.ok(!(await listUploaded()).has('form2'));
  });

  test('clearUploaded removes one file or all; DOWNLOAD of a missing file is 404 "file is not found"', async () => {
    expectOk(await client.request('<clearUploaded/>'));
    for (const id of ['a', 'b', 'with space']) {
      assert.equal((await fetch(url(`UPLOAD/${encodeURIComponent(id)}`), { method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: id })).status, 200);
      assert.equal((await client.nextAsync('newUploaded')).attrs.uploadID, id);
    }
    assert.deepEqual([...(await listUploaded()).keys()].sort(), ['a', 'b', 'with space']);
    assert.equal(await (await fetch(url(`DOWNLOAD/$UPLOAD$/${encodeURIComponent('with space')}`))).text(), 'with space');
    expectOk(await client.request('<clearUploaded uploadID="a"/>'));
    assert.deepEqual([...(await listUploaded()).keys()].sort(), ['b', 'with space']);
    const gone = await fetch(url('DOWNLOAD/$UPLOAD$/a'));
    assert.equal(gone.status, 404);
    assert.match(await gone.text(), /file is not found/);
    expectOk(await client.request('<clearUploaded/>'));
    assert.deepEqual([...(await listUploaded()).keys()], []);
    assert.equal((await fetch(url('UPLOAD/a'))).status, 405, 'GET is not an upload');
  });

  test('a fileName query parameter names a PUT upload', async () => {
    expectOk(await client.request('<clearUploaded/>'));
    assert.equal((await fetch(url('UPLOAD/named?fileName=test.gif'), { method: 'PUT', headers: { 'Content-Type': 'image/gif' }, body: new Uint8Array(GIF) })).status, 200);
    await client.nextAsync('newUploaded');
    assert.equal((await listUploaded()).get('named')?.fileName, 'test.gif');
  });
});
