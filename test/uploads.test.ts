/**
 * The upload spool: files uploaded to a session's "uploaded file set" (PUT, multipart POST)
 * are written to <dataDir>/spool/uploads as they arrive, checked against the per-file,
 * per-session, per-account and server-wide limits while streaming, read from disk by their
 * users (messageAppend, DOWNLOAD with Range, listUploaded), and deleted however the
 * session ends. Real servers, real sockets; the bodies are streamed by node:http clients.
 */
import assert from 'node:assert/strict';
import { silentLogger } from '../src/log.js';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../src/server.js';
import { parseXml } from '../src/xml/parser.js';
import { eventually, expectOk, fails, loginWithUrlId, ok, postUpload, startTestServer, storedRaw, type TestServer, type XimssClient } from './helpers.js';

const KB = 1024;
const MB = 1024 * KB;

function spoolDir(server: TestServer): string {
  return join(server.dataDir, 'spool', 'uploads');
}

function spoolFiles(server: TestServer): string[] {
  return readdirSync(spoolDir(server)).sort();
}

/** Waits until the spool holds exactly `count` files and the server counts no upload bytes beyond `bytes`. */
async function spoolSettles(server: TestServer, count: number, bytes?: number): Promise<void> {
  await eventually(() => spoolFiles(server).length === count, `${count} files in the spool (there are ${spoolFiles(server).length})`);
  if (bytes !== undefined) assert.equal(server.services.uploads.bytes, bytes, 'bytes counted against the server-wide quota');
}

/** `count` chunks of `size` bytes of `fill` (one buffer, sent again and again). */
function* chunks(count: number, size = 64 * KB, fill = 0x61): Generator<Buffer> {
  const chunk = Buffer.alloc(size, fill);
  for (let i = 0; i < count; i++) yield chunk;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** What `send` tells the code that paces a body. */
interface Pacing {
  /** Bytes written so far. */
  sent: number;
  /** Settles when the answer has come or the connection is gone. */
  answered: Promise<void>;
  /** Drops the connection (a client that gives up). */
  abort(): void;
}

/**
 * Sends a request whose body is streamed from `body` (with backpressure; chunked unless a
 * Content-Length is given), and stops sending once the answer has come. `pace` runs before
 * each chunk is written. Resolves with the answer, or rejects if none came.
 */
function send(
  server: TestServer,
  method: 'PUT' | 'POST',
  path: string,
  body: Iterable<Buffer>,
  headers: Record<string, string | number> = {},
  pace?: (pacing: Pacing) => void | Promise<void>,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({ host: '127.0.0.1', port: server.ports.http, method, path, headers, agent: false });
    const settled = new Promise<void>((done) => {
      req.once('response', () => done());
      req.once('close', () => done());
    });
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      const finish = (): void => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') });
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', finish);
      // The server closes the connection after a refusal: its reset may end the answer.
      res.on('error', finish);
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    // The head goes out at once, even when the body is held back.
    req.flushHeaders();
    void (async () => {
      let sent = 0;
      for (const chunk of body) {
        if (answered || req.destroyed) return;
        await pace?.({ sent, answered: settled, abort: () => req.destroy() });
        if (answered || req.destroyed) return;
        if (!req.write(chunk)) {
          await new Promise<void>((next) => {
            req.once('drain', next);
            void settled.then(next);
          });
        }
        sent += chunk.length;
      }
      if (!answered && !req.destroyed) req.end();
    })();
  });
}

/** Sends the head only and waits for the answer (one that comes before any of the body). */
const headOnly = ({ answered }: Pacing): Promise<void> => answered;

function put(
  server: TestServer,
  urlID: string,
  uploadID: string,
  body: Iterable<Buffer>,
  headers: Record<string, string | number> = {},
  pace?: (pacing: Pacing) => void | Promise<void>,
): Promise<Answer> {
  return send(server, 'PUT', `/Session/${urlID}/UPLOAD/${encodeURIComponent(uploadID)}`, body, { 'Content-Type': 'application/octet-stream', ...headers }, pace);
}

/** A multipart/form-data body with a `comment` field and the file as `fileData`, in chunks. */
function* formBody(boundary: string, fileName: string, type: string, file: Iterable<Buffer>): Generator<Buffer> {
  yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nsome text\r\n`);
  yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="fileData"; filename="${fileName}"\r\nContent-Type: ${type}\r\n\r\n`);
  yield* file;
  yield Buffer.from(`\r\n--${boundary}--\r\n`);
}

function postForm(server: TestServer, urlID: string, uploadID: string, fileName: string, type: string, file: Iterable<Buffer>): Promise<Answer> {
  const boundary = '----ximssd-test-boundary';
  return send(server, 'POST', `/Session/${urlID}/UPLOAD/${encodeURIComponent(uploadID)}`, formBody(boundary, fileName, type, file), {
    'Content-Type': `multipart/form-data; boundary=${boundary}`,
  });
}

async function uploadedSizes(client: XimssClient): Promise<Record<string, number>> {
  const reply = await ok(client, '<listUploaded/>');
  return Object.fromEntries(reply.messages.map((m) => [m.attrs.uploadID!, Number(m.attrs.size)]));
}

describe('the spool: uploads are files on disk, read back by their users', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('the spool directory exists at start and leftovers of an earlier run are removed', async () => {
    assert.deepEqual(spoolFiles(server), []);
    const other = await startTestServer();
    writeFileSync(join(spoolDir(other), 'left-over'), 'from a crash');
    await other.close();
    // A new server on the same data directory starts with an empty spool.
    const again = await startServer(other.config, { log: silentLogger });
    try {
      assert.deepEqual(readdirSync(spoolDir(other)), []);
    } finally {
      await again.close();
      await other.stop();
    }
  });

  test('PUT and multipart POST land as files in the spool; messageAppend, DOWNLOAD (Range, OffsetFrom) and listUploaded read them', async () => {
    const address = await server.newAccount('spool');
    const { client, urlID } = await server.login(address, 'secret');
    const pdf = Buffer.from('%PDF-1.4 a spooled pdf\n'.repeat(300));
    const text = Buffer.from('plain text, spooled\n');

    const putAnswer = await put(server, urlID, 'att01', [pdf.subarray(0, 5000), pdf.subarray(5000)], { 'Content-Type': 'application/pdf' });
    assert.equal(putAnswer.status, 200, putAnswer.text);
    await client.nextAsync('newUploaded');
    const formAnswer = await postForm(server, urlID, 'att02', 'notes.txt', 'text/plain', [text]);
    assert.equal(formAnswer.status, 200, formAnswer.text);
    assert.equal((await client.nextAsync('newUploaded')).attrs.uploadID, 'att02');

    // One file each in the spool, holding the bytes as sent.
    const files = spoolFiles(server);
    assert.equal(files.length, 2);
    const contents = files.map((name) => readFileSync(join(spoolDir(server), name))).sort((a, b) => a.length - b.length);
    assert.deepEqual(contents, [text, pdf]);
    assert.deepEqual(await uploadedSizes(client), { att01: pdf.length, att02: text.length });
    assert.equal(server.services.uploads.bytes, pdf.length + text.length);

    // DOWNLOAD streams the file, whole or a range of it.
    const url = (path: string): string => `http://127.0.0.1:${server.ports.http}/Session/${urlID}/${path}`;
    const whole = await fetch(url('DOWNLOAD/$UPLOAD$/att01'));
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-type'), 'application/pdf');
    assert.equal(whole.headers.get('content-length'), String(pdf.length));
    assert.deepEqual(Buffer.from(await whole.arrayBuffer()), pdf);
    const ranged = await fetch(url('DOWNLOAD/$UPLOAD$/att01'), { headers: { Range: 'bytes=100-199' } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 100-199/${pdf.length}`);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), pdf.subarray(100, 200));
    const suffix = await fetch(url('DOWNLOAD/$UPLOAD$/att01'), { headers: { Range: 'bytes=-10' } });
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), pdf.subarray(pdf.length - 10));
    const offsets = await fetch(url('DOWNLOAD/$UPLOAD$/att02?OffsetFrom=6&OffsetTill=10'));
    assert.equal(offsets.status, 200);
    assert.equal(await offsets.text(), 'text');
    const empty = await fetch(url('DOWNLOAD/$UPLOAD$/att02?OffsetFrom=3&OffsetTill=3'));
    assert.equal(empty.status, 200);
    assert.equal(await empty.text(), '');
    const beyond = await fetch(url('DOWNLOAD/$UPLOAD$/att02'), { headers: { Range: `bytes=${text.length}-` } });
    assert.equal(beyond.status, 416);
    await beyond.arrayBuffer();

    // messageAppend reads both from the spool; the files stay until cleared (as the spec's example shows).
    const reply = await ok(
      client,
      `<messageAppend targetMailbox="INBOX" report="uid"><EMail><Subject>spooled</Subject><MIME type="multipart" subtype="mixed">
        <MIME type="text" subtype="plain">see attached</MIME><MIME uploadID="att01"/><MIME uploadID="att02"/></MIME></EMail></messageAppend>`,
    );
    const uid = Number(reply.messages.find((m) => m.name === 'messageAdded')!.attrs.UID);
    const raw = (await storedRaw(server, address, 'INBOX', uid))!.toString('latin1');
    assert.ok(raw.includes(pdf.subarray(0, 57).toString('base64')), 'the PDF is attached (base64)');
    assert.match(raw, /Content-Type: text\/plain;.* name="notes\.txt"\r\nContent-Disposition: attachment; filename="notes\.txt"/);
    assert.equal(spoolFiles(server).length, 2, 'messageAppend leaves the uploaded files in place');

    // A PUT to the same id replaces the file and deletes the old one.
    assert.equal((await put(server, urlID, 'att01', [Buffer.from('short')])).status, 200);
    await client.nextAsync('newUploaded');
    await spoolSettles(server, 2, text.length + 5);
    assert.deepEqual(await uploadedSizes(client), { att01: 5, att02: text.length });

    // clearUploaded of one id, then of all, deletes the files.
    await ok(client, '<clearUploaded uploadID="att02"/>');
    await spoolSettles(server, 1, 5);
    await ok(client, '<clearUploaded/>');
    await spoolSettles(server, 0, 0);
    await fails(client, '<messageAppend targetMailbox="INBOX"><EMail uploadID="att01"/></messageAppend>', /att01/);
    assert.equal((await fetch(url('DOWNLOAD/$UPLOAD$/att01'))).status, 404);
  });

  test('a fileData field without a file name is kept as text; a form without a file stores nothing', async () => {
    const address = await server.newAccount('form');
    const { client, urlID } = await server.login(address, 'secret');
    const form = new FormData();
    form.append('fileData', 'typed text, no file');
    const url = `http://127.0.0.1:${server.ports.http}/Session/${urlID}/UPLOAD/typed`;
    assert.equal((await fetch(url, { method: 'POST', body: form })).status, 200);
    await client.nextAsync('newUploaded');
    const listed = (await ok(client, '<listUploaded/>')).messages[0]!;
    assert.deepEqual([listed.attrs.size, listed.attrs.type, listed.attrs.subtype], ['19', 'text', 'plain']);
    assert.equal(await (await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/DOWNLOAD/$UPLOAD$/typed`)).text(), 'typed text, no file');

    const none = new FormData();
    none.append('comment', 'no file here');
    const refused = await fetch(url.replace('typed', 'none'), { method: 'POST', body: none });
    assert.equal(refused.status, 500);
    assert.match(await refused.text(), /no fileData field/);
    // A fileData file field wins over another file field sent before it.
    const both = new FormData();
    both.append('other', new Blob(['the other file']), 'other.txt');
    both.append('fileData', new Blob(['the real file'], { type: 'text/x-real' }), 'real.txt');
    assert.equal((await fetch(url.replace('typed', 'both'), { method: 'POST', body: both })).status, 200);
    await client.nextAsync('newUploaded');
    assert.equal(await (await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/DOWNLOAD/$UPLOAD$/both`)).text(), 'the real file');
    await ok(client, '<clearUploaded/>');
    await spoolSettles(server, 0, 0);

    // A form that breaks off in the middle of the file stores nothing; the server goes on.
    const boundary = 'cut-short';
    const cut = await send(server, 'POST', `/Session/${urlID}/UPLOAD/cut`, [...formBody(boundary, 'cut.bin', 'application/octet-stream', chunks(4))].slice(0, -1), {
      'Content-Type': `multipart/form-data; boundary=${boundary}`,
    });
    assert.equal(cut.status, 500);
    assert.match(cut.text, /malformed form/);
    await spoolSettles(server, 0, 0);
    assert.deepEqual(await uploadedSizes(client), {});
  });
});

describe('limits, checked while the body streams: one file, the session, the account, the server', () => {
  let server: TestServer;
  const FILE = 800 * KB;
  before(async () => {
    server = await startTestServer({
      limits: { maxMessageBytes: 1 * MB, uploadBytesPerSession: 1.5 * MB, uploadBytesPerAccount: 2 * MB, uploadBytesTotal: 3 * MB },
    });
  });
  after(() => server.stop());

  /** A refusal: 413 with the text, the connection closed, no partial file left. */
  function assertRefused(answer: Answer, text: RegExp): void {
    assert.equal(answer.status, 413, answer.text);
    assert.match(answer.text, text);
    assert.equal(answer.headers.connection, 'close');
  }

  test('a file past maxMessageBytes is refused with 413, by PUT (streamed or announced) and by POST; nothing is kept', async () => {
    const address = await server.newAccount('big');
    const { client, urlID } = await server.login(address, 'secret');
    // 17 chunks of 64 KB: the 17th crosses 1 MB while it streams.
    assertRefused(await put(server, urlID, 'big', chunks(17)), /the uploaded file is larger than 1048576 bytes/);
    await spoolSettles(server, 0, 0);
    // An announced Content-Length past the limit is refused before anything is read.
    assertRefused(await put(server, urlID, 'big', chunks(17), { 'Content-Length': 17 * 64 * KB }, headOnly), /larger than 1048576 bytes/);
    assertRefused(await postForm(server, urlID, 'big', 'big.bin', 'application/octet-stream', chunks(17)), /larger than 1048576 bytes/);
    await spoolSettles(server, 0, 0);
    // Exactly the limit is fine.
    assert.equal((await put(server, urlID, 'big', chunks(16))).status, 200);
    await client.nextAsync('newUploaded');
    await spoolSettles(server, 1, MB);
    await ok(client, '<clearUploaded/>');
    await spoolSettles(server, 0, 0);
  });

  test('a form may not go on past the file limit with parts that are dropped', async () => {
    const { urlID } = await server.login(await server.newAccount('form'), 'secret');
    const boundary = 'long-form';
    function* longForm(): Generator<Buffer> {
      yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="junk"\r\nContent-Type: application/octet-stream\r\n\r\n`);
      yield* chunks(160);
      yield Buffer.from(`\r\n--${boundary}--\r\n`);
    }
    const answer = await send(server, 'POST', `/Session/${urlID}/UPLOAD/long`, longForm(), { 'Content-Type': `multipart/form-data; boundary=${boundary}` });
    assertRefused(answer, /the form is larger than 9437184 bytes/);
    await spoolSettles(server, 0, 0);
  });

  test('the session, account and server-wide quotas each refuse the upload that would cross them, and keep what was there', async () => {
    const one = await server.newAccount('quota');
    const two = await server.newAccount('quota');
    const a = await server.login(one, 'secret');
    const b = await server.login(one, 'secret');
    const c = await server.login(one, 'secret');
    const d = await server.login(two, 'secret');
    const e = await server.login(two, 'secret');
    const file = (): Buffer[] => [Buffer.alloc(FILE, 1)];
    const okUpload = async (s: { client: XimssClient; urlID: string }, id: string): Promise<void> => {
      const answer = await put(server, s.urlID, id, file());
      assert.equal(answer.status, 200, answer.text);
      await s.client.nextAsync('newUploaded');
    };

    await okUpload(a, 'a1');
    // Session: 1.6 MB > 1.5 MB (the file is streamed in one piece after the headers).
    assertRefused(await put(server, a.urlID, 'a2', chunks(13)), /the uploaded files of this session would take more than 1572864 bytes/);
    await spoolSettles(server, 1, FILE);
    assert.deepEqual(await uploadedSizes(a.client), { a1: FILE });

    // Account (all its sessions): 0.8 + 0.8 + 0.8 > 2 MB, while each session is within its own quota.
    await okUpload(b, 'b1');
    assertRefused(await put(server, c.urlID, 'c1', chunks(13)), /the uploaded files of this account \(all its sessions\) would take more than 2097152 bytes/);
    await spoolSettles(server, 2, 2 * FILE);
    assert.equal(server.services.uploads.accountBytes((await server.services.accounts.find(one))!.id), 2 * FILE);

    // Server-wide: 2.4 MB + 0.8 MB > 3 MB, with another account well within its own quota.
    await okUpload(d, 'd1');
    assertRefused(await put(server, e.urlID, 'e1', chunks(13)), /the server's space for uploaded files \(3145728 bytes\) is full/);
    // The same by POST, and refused at once when the Content-Length says so.
    assertRefused(await postForm(server, e.urlID, 'e1', 'e.bin', 'application/octet-stream', chunks(13)), /server's space/);
    assertRefused(await put(server, e.urlID, 'e1', chunks(13), { 'Content-Length': 13 * 64 * KB }, headOnly), /server's space/);
    await spoolSettles(server, 3, 3 * FILE);
    assert.deepEqual(await uploadedSizes(e.client), {});

    // Freed quota can be used again.
    await ok(a.client, '<clearUploaded/>');
    await spoolSettles(server, 2, 2 * FILE);
    await okUpload(e, 'e1');
    for (const s of [b, d, e]) await ok(s.client, '<clearUploaded/>');
    await spoolSettles(server, 0, 0);
  });
});

describe('files are freed however the session ends', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  async function withUploads(): Promise<{ client: XimssClient; urlID: string; address: string }> {
    const address = await server.newAccount('ends');
    const session = await server.login(address, 'secret');
    for (const id of ['one', 'two']) {
      assert.equal((await put(server, session.urlID, id, chunks(4))).status, 200);
      await session.client.nextAsync('newUploaded');
    }
    await postUpload(server, session, 'three', Buffer.alloc(1000, 7), 'three.bin', 'application/octet-stream');
    assert.equal(spoolFiles(server).length, 3);
    return { ...session, address };
  }

  test('/Session/<id>/KILL', async () => {
    const { urlID } = await withUploads();
    const killed = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/KILL`);
    assert.equal(killed.status, 200);
    await spoolSettles(server, 0, 0);
  });

  test('bye', async () => {
    const { client } = await withUploads();
    await client.request('<bye/>');
    await spoolSettles(server, 0, 0);
  });

  test('the TCP connection closing', async () => {
    const { client } = await withUploads();
    client.close();
    await spoolSettles(server, 0, 0);
  });

  test('killOld at an HTTP login, and the account being removed', async () => {
    const { address } = await withUploads();
    const login = await fetch(`http://127.0.0.1:${server.ports.http}/XIMSSLogin/?userName=${address}&password=secret&killOld=1`);
    const urlID = parseXml(await login.text()).elements()[0]!.attrs.urlID!;
    await spoolSettles(server, 0, 0);
    // The new (HTTP) session uploads; removing the account ends it.
    assert.equal((await put(server, urlID, 'x', chunks(2))).status, 200);
    await spoolSettles(server, 1);
    await server.services.accounts.remove((await server.services.accounts.find(address))!);
    await spoolSettles(server, 0, 0);
  });

  test('an upload still arriving when the session ends is stopped and its partial file deleted; so is one the client abandons', async () => {
    const address = await server.newAccount('ends');
    const { urlID } = await server.login(address, 'secret');
    let killed = false;
    const answer = await put(server, urlID, 'slow', chunks(1000), {}, async ({ sent, answered }) => {
      if (sent < 256 * KB) return;
      if (!killed) {
        killed = true;
        // Part of the body is in the spool: end the session now.
        await eventually(() => server.services.uploads.bytes >= 256 * KB, 'the partial upload in the spool');
        await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/KILL`);
      }
      // Send no more: the server has stopped reading.
      await answered;
    });
    assert.equal(answer.status, 550, answer.text);
    assert.equal(answer.headers.connection, 'close');
    await spoolSettles(server, 0, 0);

    const other = await server.login(await server.newAccount('ends'), 'secret');
    const abandoned = put(server, other.urlID, 'abandoned', chunks(1000), {}, async ({ sent, abort }) => {
      if (sent < 256 * KB) return;
      await eventually(() => server.services.uploads.bytes >= 256 * KB, 'the partial upload in the spool');
      abort();
    });
    await assert.rejects(abandoned);
    await spoolSettles(server, 0, 0);
    assert.deepEqual(await uploadedSizes(other.client), {});
  });

  test('idle expiry', async () => {
    const idle = await startTestServer({ limits: { idleTimeoutSeconds: 1 } });
    try {
      const { client, urlID } = await loginWithUrlId(idle.ports.ximss, await idle.newAccount('idle'), 'secret');
      assert.equal((await put(idle, urlID, 'f', chunks(3))).status, 200);
      assert.equal(spoolFiles(idle).length, 1);
      await client.nextAsync('bye', 10_000);
      await spoolSettles(idle, 0, 0);
      client.close();
    } finally {
      await idle.stop();
    }
  });

  test('server stop: the spool is empty once close() resolves', async () => {
    const other = await startTestServer();
    try {
      const session = await other.login(await other.newAccount('stop'), 'secret');
      for (const id of ['a', 'b']) {
        assert.equal((await put(other, session.urlID, id, chunks(8))).status, 200);
        await session.client.nextAsync('newUploaded');
      }
      assert.equal(spoolFiles(other).length, 2);
      await other.close();
      assert.ok(existsSync(spoolDir(other)));
      assert.deepEqual(readdirSync(spoolDir(other)), []);
      assert.equal(other.services.uploads.bytes, 0);
    } finally {
      await other.stop();
    }
  });
});

test('a large PUT is streamed to disk: the server does not hold it in memory', async () => {
  const server = await startTestServer();
  try {
    const { client, urlID } = await server.login(await server.newAccount('memory'), 'secret');
    // Warm up the paths once, then measure.
    assert.equal((await put(server, urlID, 'warm', chunks(32))).status, 200);
    await client.nextAsync('newUploaded');
    await ok(client, '<clearUploaded/>');
    const before = process.memoryUsage();
    let peakRss = before.rss;
    let peakHeap = before.heapUsed + before.arrayBuffers;
    const sample = (): void => {
      const now = process.memoryUsage();
      peakRss = Math.max(peakRss, now.rss);
      peakHeap = Math.max(peakHeap, now.heapUsed + now.arrayBuffers);
    };
    const FILE = 40 * MB;
    for (let i = 0; i < 3; i++) {
      // The same id three times: each upload replaces (and deletes) the one before.
      const answer = await put(server, urlID, 'big', chunks(FILE / (64 * KB)), { 'Content-Length': FILE }, sample);
      assert.equal(answer.status, 200, answer.text);
      await client.nextAsync('newUploaded');
      sample();
    }
    assert.deepEqual(await uploadedSizes(client), { big: FILE });
    await spoolSettles(server, 1, FILE);
    assert.equal(statSync(join(spoolDir(server), spoolFiles(server)[0]!)).size, FILE);
    // 120 MB went through; in memory they would have taken at least that much.
    const budget = 60 * MB;
    assert.ok(peakRss - before.rss < budget, `resident memory grew by ${((peakRss - before.rss) / MB).toFixed(1)} MB (budget ${budget / MB} MB)`);
    assert.ok(peakHeap - (before.heapUsed + before.arrayBuffers) < budget, `heap and buffers grew by ${((peakHeap - before.heapUsed - before.arrayBuffers) / MB).toFixed(1)} MB`);
    expectOk(await client.request('<clearUploaded/>'));
    await spoolSettles(server, 0, 0);
  } finally {
    await server.stop();
  }
});
