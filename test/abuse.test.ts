/**
 * The abuse suite: each attack a hostile client tried on ximssd (issue "Hardening"), run
 * against a real server over real sockets. Every test asserts that the attacker gets an
 * error or a closed connection, that the server's resident memory stays within a stated
 * budget, and that a well-behaved client's noop is answered during and after the attack.
 * No timings are asserted: the answers and their order are.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';
import type { ServerOptions } from '../src/server.js';
import { passwordVerifier } from '../src/services/passwords.js';
import { SmtpListener } from '../src/transports/smtp/inbound.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { deliverRaw, eventually, expectError, expectOk, freeSipPort, httpRequest, loginWithUrlId, raceNoop, rfc822, startTestServer, storedMessages, XimssClient, type TestServer } from './helpers.js';
import { SmtpWire } from './fixtures/smtp-wire.js';
import { Secret, TOTP } from 'otpauth';

/** How much the process's resident memory may grow during one attack (server and attacker share the process). */
const RSS_BUDGET = 256 * 1024 * 1024;

/** Samples the resident set size every 20 ms; stop() gives the peak growth. */
function watchRss(): { stop(): number } {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      return peak - base;
    },
  };
}

function assertWithinBudget(growth: number, budget = RSS_BUDGET): void {
  assert.ok(growth < budget, `RSS grew by ${Math.round(growth / 1048576)} MB (budget ${Math.round(budget / 1048576)} MB)`);
}

/** A XIMSS connection from `localAddress` (any of 127.0.0.0/8 plays another client). */
function connectFrom(port: number, localAddress = '127.0.0.1'): Promise<XimssClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(XimssClient.fromSocket(socket)));
    socket.once('error', reject);
  });
}

/** Writes `data` as fast as the server takes it; resolves when written or when the server cut the connection. */
function flood(socket: net.Socket, data: Buffer): Promise<'written' | 'cut'> {
  return new Promise((resolve) => {
    socket.on('error', () => resolve('cut'));
    socket.once('close', () => resolve('cut'));
    socket.write(data, (err) => resolve(err ? 'cut' : 'written'));
  });
}

/** A raw HTTP/1.1 exchange: sends `head` and `body` (as much as the server reads), resolves with what came back. */
function rawHttp(port: number, head: string, body: Buffer | undefined, localAddress = '127.0.0.1'): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let text = '';
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      resolve({ text, closed });
    };
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length:\s*(\d+)/i.exec(text);
      if (end >= 0 && length && text.length >= end + 4 + Number(length[1])) {
        finish(false);
        socket.destroy();
      }
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.write(head);
    if (body) socket.write(body, () => {});
  });
}

function status(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

function httpBody(text: string): string {
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

/** The well-behaved client: answers noop (checked during and after each attack). */
async function assertServes(client: XimssClient): Promise<void> {
  const reply = await client.request('<noop/>', 20_000);
  assert.equal(reply.response.attrs.errorText, undefined, 'the well-behaved client is served');
}

/** A server for one group of attacks, with the well-behaved client logged in. */
async function startAttacked(overrides: Record<string, unknown> = {}, options: ServerOptions = {}): Promise<{ server: TestServer; victim: XimssClient; user: string }> {
  const server = await startTestServer(overrides, options);
  const user = await server.newAccount('victim');
  const victim = (await server.login(user, 'secret')).client;
  return { server, victim, user };
}

const nested = (count: number, head = '<noop id="n1">'): Buffer => Buffer.from(head + '<a>'.repeat(count));

describe('abuse: XML and request sizes', () => {
  let server: TestServer;
  let victim: XimssClient;
  let user: string;
  before(async () => ({ server, victim, user } = await startAttacked()));
  after(() => server.stop());

  test('before login, 10 MB of nested elements: refused at once, the connection closed', async () => {
    const rss = watchRss();
    const attacker = await XimssClient.connect(server.ports.ximss);
    const sent = flood(attacker.socket, Buffer.concat([nested(3_300_000), Buffer.from([0])]));
    await assertServes(victim);
    await attacker.waitClosed(20_000);
    await sent;
    assert.match(attacker.received[0]?.attrs.errorText ?? '', /nested deeper than 64|larger than/);
    assertWithinBudget(rss.stop());
    await assertServes(victim);
  });

  test('before login, 2.5 million flat elements and 100,000 attributes: refused', async () => {
    const flat = await XimssClient.connect(server.ports.ximss);
    void flood(flat.socket, Buffer.from('<noop id="f">' + '<a/>'.repeat(2_500_000) + '</noop>\0'));
    await flat.waitClosed(20_000);
    assert.match(flat.received[0]?.attrs.errorText ?? '', /more than 256 elements|larger than/);

    const attrs = await XimssClient.connect(server.ports.ximss);
    let tag = '<noop id="a"';
    for (let i = 0; i < 100_000; i++) tag += ` a${i}="1"`;
    void flood(attrs.socket, Buffer.from(tag + '/>\0'));
    await attrs.waitClosed(20_000);
    assert.match(attrs.received[0]?.attrs.errorText ?? '', /more than 64 attributes|larger than/);
    await assertServes(victim);
  });

  test('logged in, 10 MB of nested elements: this request refused with its id, the session goes on', async () => {
    const rss = watchRss();
    const { client } = await server.login(user, 'secret');
    const sent = flood(client.socket, Buffer.concat([nested(3_300_000, '<noop id="deep">'), Buffer.from([0])]));
    await assertServes(victim);
    const refused = await client.until(() => client.received.find((m) => m.attrs.id === 'deep'), 20_000);
    assert.match(refused.attrs.errorText ?? '', /nested deeper than 64/);
    await sent;
    await assertServes(client);
    assertWithinBudget(rss.stop());
  });

  test('logged in, more elements than the limit (another shape: a flat batch of subscriptions)', async () => {
    const { client } = await server.login(user, 'secret');
    const body = '<mailboxSubUpdate id="many">' + '<mailboxSubscription mailbox="x" mode="add"/>'.repeat(120_000) + '</mailboxSubUpdate>';
    client.sendRaw(body);
    const refused = await client.until(() => client.received.find((m) => m.attrs.id === 'many'), 20_000);
    assert.match(refused.attrs.errorText ?? '', /more than 100000 elements/);
    await assertServes(client);
  });

  test('an attribute value and a text longer than allowed', async () => {
    const small = await startTestServer({ limits: { xmlAttributeChars: 1000, xmlTextChars: 2000 } });
    try {
      const address = await small.newAccount('small');
      const { client } = await small.login(address, 'secret');
      // The refusal names the request when its id came before the refused value.
      client.sendRaw(`<noop id="long" pad="${'x'.repeat(1001)}"/>`);
      const long = await client.until(() => client.received.find((m) => m.attrs.id === 'long'));
      assert.match(long.attrs.errorText ?? '', /attribute value is longer than 1000/);
      const text = await client.request(`<setSessionData name="t">${'y'.repeat(2001)}</setSessionData>`);
      assert.match(text.response.attrs.errorText ?? '', /text is longer than 2000/);
      await assertServes(client);
    } finally {
      await small.stop();
    }
  });

  test('/XIMSSLogin/: a large or nested body is refused before it is read', async () => {
    const rss = watchRss();
    const big = nested(3_300_000, '<XIMSS><listFeatures id="1">');
    const declared = await rawHttp(
      server.ports.http,
      `POST /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: ${big.length}\r\n\r\n`,
      big,
    );
    assert.equal(status(declared.text), 413);
    const chunked = await rawHttp(server.ports.http, 'POST /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', Buffer.concat([Buffer.from(big.length.toString(16) + '\r\n'), big, Buffer.from('\r\n0\r\n\r\n')]));
    assert.equal(status(chunked.text), 413);
    // Small enough to be read, too deep to be parsed.
    const deep = nested(10_000, '<XIMSS><listFeatures id="1">');
    const parsed = await rawHttp(server.ports.http, `POST /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${deep.length}\r\n\r\n`, deep);
    assert.match(httpBody(parsed.text), /nested deeper than 64/);
    assertWithinBudget(rss.stop());
    await assertServes(victim);
  });

  test('a session batch of 10 MB nested elements is refused while it arrives', async () => {
    const { urlID } = await loginHttp(server, user);
    const big = nested(3_300_000, '<XIMSS><noop id="1">');
    const reply = await rawHttp(server.ports.http, `POST /Session/${urlID}/sync HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`, big);
    assert.equal(status(reply.text), 200);
    assert.match(httpBody(reply.text), /nested deeper than 64/);
    await assertServes(victim);
  });
});

/** Logs in over HTTP (IP watch on, from 127.0.0.1); the urlID. */
async function loginHttp(server: TestServer, address: string): Promise<{ urlID: string }> {
  const response = await fetch(`http://127.0.0.1:${server.ports.http}/XIMSSLogin/?userName=${encodeURIComponent(address)}&password=secret&errorAsXML=1`);
  const root = parseXml(await response.text());
  const urlID = root.element('session')?.attrs.urlID;
  assert.ok(urlID, 'logged in over HTTP');
  return { urlID };
}

describe('abuse: answers larger than the question', () => {
  let server: TestServer;
  let victim: XimssClient;
  let user: string;
  before(async () => ({ server, victim, user } = await startAttacked()));
  after(() => server.stop());

  test('before login, a batch of 9,999 readStrings is refused', async () => {
    const rss = watchRss();
    const body = '<XIMSS>' + Array.from({ length: 9_999 }, (_, i) => `<readStrings id="${i}"/>`).join('') + '</XIMSS>';
    const replies = await Promise.all(
      Array.from({ length: 8 }, () => rawHttp(server.ports.http, `POST /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, Buffer.from(body))),
    );
    for (const reply of replies) {
      assert.ok(status(reply.text) === 413 || /too many requests/.test(httpBody(reply.text)), reply.text.slice(0, 200));
    }
    // Within the request limits, the pre-login answer budget still holds: 16 readStrings is about 200 KB.
    const sixteen = '<XIMSS>' + Array.from({ length: 16 }, (_, i) => `<readStrings id="${i}"/>`).join('') + '</XIMSS>';
    const allowed = await rawHttp(server.ports.http, `POST /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${sixteen.length}\r\n\r\n`, Buffer.from(sixteen));
    assert.equal(parseXml(httpBody(allowed.text)).elements('strings').length, 16);
    assertWithinBudget(rss.stop());
    await assertServes(victim);
  });

  test('before login, pipelined readStrings never read: each connection is cut after its answer budget', async () => {
    const rss = watchRss();
    const attackers = await Promise.all(Array.from({ length: 10 }, () => XimssClient.connect(server.ports.ximss)));
    const requests = Buffer.from(Array.from({ length: 5_000 }, (_, i) => `<readStrings id="${i}"/>\0`).join(''));
    for (const attacker of attackers) {
      attacker.socket.pause(); // never reads
      void flood(attacker.socket, requests);
    }
    await assertServes(victim);
    for (const attacker of attackers) {
      attacker.socket.resume();
      await attacker.waitClosed(20_000);
      const answered = attacker.received.filter((m) => m.name === 'strings').length;
      assert.ok(answered < 200, `${answered} readStrings answered before login`);
      assert.match(attacker.received.at(-1)?.attrs.errorText ?? '', /too much data requested before login/);
    }
    assertWithinBudget(rss.stop());
  });

  test('logged in, pipelined requests whose answers are never read stop at the output high-water mark', async () => {
    const { client } = await server.login(user, 'secret');
    client.socket.pause();
    const rss = watchRss();
    const count = 8_000; // about 100 MB of answers
    void flood(client.socket, Buffer.from(Array.from({ length: count }, (_, i) => `<readStrings id="r${i}"/>\0`).join('')));
    await sleep(500);
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 96 * 1024 * 1024);
    // Once the client reads, every answer arrives, in order.
    client.socket.resume();
    // (The login's response is among those received too: count this test's own.)
    // 100 MB through the parser: minutes on a machine loaded by other suites, seconds otherwise.
    await client.until(() => client.received.filter((m) => m.name === 'response' && m.attrs.id?.startsWith('r')).length >= count, 180_000);
    assert.equal(client.received.filter((m) => m.name === 'strings').length, count);
  });

  test('session data: values and keys are bounded', async () => {
    const rss = watchRss();
    const { client } = await server.login(user, 'secret');
    const five = 'v'.repeat(5 * 1024 * 1024);
    let refused = 0;
    for (let i = 0; i < 20; i++) {
      const reply = await client.request(new XmlElement('setSessionData', { name: `k${i}` }, [five]), 20_000);
      if (reply.response.attrs.errorText) refused++;
    }
    assert.equal(refused, 20, 'a 5 MB value is over the 1 MB session data limit');
    const small = await client.request(new XmlElement('setSessionData', { name: 'ok' }, ['fine']));
    assert.equal(small.response.attrs.errorText, undefined);
    // Another shape: many small keys at once, as one dictionary.
    const dict = new XmlElement('setSessionData');
    for (let i = 0; i < 2_000; i++) dict.add('subKey', { key: `k${i}` }, 'x');
    const many = await client.request(dict);
    assert.match(many.response.attrs.errorText ?? '', /too many session data keys/);
    assertWithinBudget(rss.stop());
    await assertServes(victim);
  });

  test('calls: a session that rings another thousands of times is bounded by its calls and the account\'s', async () => {
    const rss = watchRss();
    const { client: attacker } = await server.login(user, 'secret');
    const targetAddress = await server.newAccount('rung');
    const target = (await server.login(targetAddress, 'secret')).client;
    expectOk(await target.request('<signalBind/>'));
    const offer = '<sdpText>v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n</sdpText>';
    const replies = await Promise.all(Array.from({ length: 300 }, (_, i) => attacker.request(`<callStart callLeg="a${i}" peer="${targetAddress}">${offer}</callStart>`, 20_000)));
    const placed = replies.filter((r) => r.response.attrs.errorText === undefined).length;
    // 20 calls of one account at once (calls.callsPerAccount); the rest refused with the reason.
    assert.equal(placed, 20, `${placed} calls placed`);
    assert.match(replies.at(-1)!.response.attrs.errorText ?? '', /20 calls at once/);
    // Only the calls placed ring (each session also holds at most 64 calls: the README's Limits).
    await eventually(() => target.asyncMessages.filter((m) => m.name === 'callIncoming').length === 20 || undefined, 'the 20 calls ring');
    assertWithinBudget(rss.stop());
    await assertServes(victim);
    await assertServes(target);
  });
});

describe('abuse: connections', () => {
  let server: TestServer;
  let victim: XimssClient;
  let user: string;
  before(async () => ({ server, victim, user } = await startAttacked({ limits: { firstRequestSeconds: 2, loginSeconds: 4, httpHeadersSeconds: 2, connectionsPerAddress: 64 } })));
  after(() => server.stop());

  test('idle connections from one address: the limit refuses the rest with a reason, other addresses go on', async () => {
    const rss = watchRss();
    const held: XimssClient[] = [];
    for (let i = 0; i < 100; i++) held.push(await connectFrom(server.ports.ximss, '127.0.0.5'));
    await sleep(200);
    const refused = held.filter((c) => c.closed);
    assert.equal(refused.length, 100 - 64);
    assert.match(refused[0]!.received[0]?.attrs.errorText ?? '', /too many connections from this address/);
    // The HTTP port counts them too, and says so in HTTP.
    const http = await rawHttp(server.ports.http, 'GET /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\n\r\n', undefined, '127.0.0.5');
    assert.equal(status(http.text), 503);
    // Another address is not affected.
    const other = await connectFrom(server.ports.ximss, '127.0.0.6');
    await other.login(user, 'secret');
    await assertServes(other);
    await assertServes(victim);
    // Idle connections that never send a request are closed at the first-request deadline.
    for (const c of held) if (!c.closed) await c.waitClosed(10_000);
    assertWithinBudget(rss.stop());
  });

  test('a connection that sends requests but never logs in is closed at the login deadline', async () => {
    const client = await connectFrom(server.ports.ximss, '127.0.0.7');
    let answered = 0;
    while (!client.closed && answered < 100) {
      try {
        await client.request('<listFeatures/>', 10_000);
        answered++;
      } catch {
        break;
      }
      await sleep(200);
    }
    await client.waitClosed(10_000);
    assert.ok(answered > 0 && answered < 100);
  });

  test('unfinished 9 MB messages before login are cut at the pre-login size limit', async () => {
    const rss = watchRss();
    const attackers = await Promise.all(Array.from({ length: 40 }, () => connectFrom(server.ports.ximss, '127.0.0.8')));
    const body = Buffer.from(`<noop id="x" pad="${'p'.repeat(9 * 1024 * 1024)}`);
    await Promise.all(attackers.map((a) => flood(a.socket, body)));
    for (const a of attackers) await a.waitClosed(20_000);
    assert.match(attackers[0]!.received[0]?.attrs.errorText ?? '', /larger than 65536 bytes/);
    assertWithinBudget(rss.stop());
    await assertServes(victim);
  });

  test('an address that keeps sending refused messages is blocked: its new connections are closed at once', async () => {
    const blocking = await startTestServer({ limits: { abusePerAddress: 5, abuseBlockSeconds: 60 } });
    try {
      const address = await blocking.newAccount('blocked');
      for (let i = 0; i < 5; i++) {
        const attacker = await connectFrom(blocking.ports.ximss, '127.0.0.11');
        void flood(attacker.socket, Buffer.concat([nested(10_000), Buffer.from([0])]));
        await attacker.waitClosed(10_000);
        assert.match(attacker.received[0]?.attrs.errorText ?? '', /nested deeper than 64/);
      }
      // Blocked: XIMSS and HTTP connections from the address are closed without a word.
      const refused = await connectFrom(blocking.ports.ximss, '127.0.0.11');
      await refused.waitClosed(10_000);
      assert.deepEqual(refused.received, []);
      const http = await rawHttp(blocking.ports.http, 'GET /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\n\r\n', undefined, '127.0.0.11');
      assert.equal(http.text, '');
      // Another address, and a session already logged in, go on.
      const other = await connectFrom(blocking.ports.ximss, '127.0.0.12');
      await other.login(address, 'secret');
      await assertServes(other);
    } finally {
      await blocking.stop();
    }
  });

  test('an HTTP request whose head trickles in is answered 408 at the header deadline', async () => {
    const socket = net.connect({ port: server.ports.http, host: '127.0.0.1' });
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('GET /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 300);
    await closed;
    clearInterval(trickle);
    assert.equal(status(text), 408);
    await assertServes(victim);
  });

  test('the urlID of a TCP session works over HTTP from its login address only', async () => {
    const { urlID } = await loginWithUrlId(server.ports.ximss, user, 'secret');
    const elsewhere = await rawHttp(server.ports.http, `GET /Session/${urlID}/KILL HTTP/1.1\r\nHost: x\r\n\r\n`, undefined, '127.0.0.9');
    assert.equal(status(elsewhere.text), 550);
    assert.ok(server.services.sessions.get(urlID), 'the session lives on');
    const here = await rawHttp(server.ports.http, `GET /Session/${urlID}/KILL HTTP/1.1\r\nHost: x\r\n\r\n`, undefined);
    assert.equal(status(here.text), 200);
  });
});

describe('abuse: expensive work for one request', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked({ limits: { searchSeconds: 600, foldersPerAccount: 30, uploadBytesPerSession: 64 * 1024 * 1024 } })));
  after(() => server.stop());

  test('backtracking patterns: mailboxList, mailboxSubList (and a `%` variant) answer; over-long subscription names are refused', async () => {
    const address = await server.newAccount('patterns');
    const { client } = await server.login(address, 'secret');
    const long = 'a'.repeat(200);
    assert.equal((await client.request(`<mailboxCreate mailbox="${long}"/>`)).response.attrs.errorText, undefined);
    const listed = await client.request('<mailboxList filter="*a*a*a*a*a*a*a*a*a*a*b"/>', 20_000);
    assert.equal(listed.response.attrs.errorText, undefined);
    assert.equal(listed.messages.length, 0);
    const percent = await client.request('<mailboxList filter="%a%a%a%a%a%a%a%a%a%a%b"/>', 20_000);
    assert.equal(percent.messages.length, 0);
    const huge = await client.request(new XmlElement('mailboxSubUpdate', {}, [new XmlElement('mailboxSubscription', { mailbox: `~${'x'.repeat(1_000_000)}\t\n/INBOX`, mode: 'add' })]), 20_000);
    assert.match(huge.response.attrs.errorText ?? '', /invalid mailbox name/);
    assert.equal((await client.request(`<mailboxSubUpdate><mailboxSubscription mailbox="${long}" mode="add"/></mailboxSubUpdate>`)).response.attrs.errorText, undefined);
    const subs = await client.request('<mailboxSubList filter="*a*a*a*a*a*a*a*a*b"/>', 20_000);
    assert.equal(subs.messages.length, 0);
    await assertServes(victim);
  });

  test('folderSearch over a large mailbox lets another client in while it scans', async () => {
    const address = await server.newAccount('searcher');
    const filler = 'the quick brown fox jumps over the lazy dog\n'.repeat(100);
    for (let start = 0; start < 3000; start += 1000) {
      await deliverRaw(server, address, 'INBOX', Array.from({ length: 1000 }, (_, i) => rfc822([['Subject', `m${start + i}`]], filler)));
    }
    const { client } = await server.login(address, 'secret');
    assert.equal((await client.request('<folderOpen folder="f" mailbox="INBOX"><field>UID</field></folderOpen>')).response.attrs.errorText, undefined);
    const { scan, order } = await raceNoop(server, client, victim, '<folderSearch folder="f" filter="BODY nowhere-to-be-found"><UID from="1" till="3000"/></folderSearch>');
    assert.deepEqual(order, ['noop', 'scan']);
    assert.equal(scan.response.attrs.errorText, undefined);
    // Another shape: a folder whose body filter must read every message.
    const filtered = await raceNoop(server, client, victim, '<folderOpen folder="g" mailbox="INBOX" filterField="body" filter="nowhere-to-be-found"><field>UID</field></folderOpen>');
    assert.deepEqual(filtered.order, ['noop', 'scan']);
  });

  test('preferences and Public Info are bounded per account (names, count, bytes); a refused store keeps nothing', async () => {
    const address = await server.newAccount('prefs');
    const { client } = await server.login(address, 'secret');
    const store = async (body: string, type = ''): Promise<string | undefined> =>
      (await client.request(`<prefsStore${type}>${body}</prefsStore>`, 20_000)).response.attrs.errorText;
    assert.match((await store(Array.from({ length: 5000 }, (_, i) => `<P${i}>x</P${i}>`).join(''))) ?? '', /too many preferences/);
    assert.match((await store(`<Big>${'x'.repeat(1024 * 1024)}</Big>`, ' type="publicInfo"')) ?? '', /too large/);
    assert.match((await store(`<${'N'.repeat(200)}>x</${'N'.repeat(200)}>`, ' type="publicInfo"')) ?? '', /too long/);
    // Many small requests end at the same limit: what is kept stays bounded.
    for (let i = 0; i < 4; i++) assert.equal(await store(Array.from({ length: 120 }, (_, j) => `<Q${i}_${j}>y</Q${i}_${j}>`).join('')), undefined);
    assert.match((await store(Array.from({ length: 120 }, (_, j) => `<R${j}>z</R${j}>`).join(''))) ?? '', /too many preferences/);
    const account = (await server.services.accounts.find(address))!;
    assert.equal(Object.keys(account.prefs).length, 480);
    assert.deepEqual(account.publicInfo, {});
    await assertServes(victim);
  });

  test('open folders are bounded per account, across its sessions', async () => {
    const address = await server.newAccount('folders');
    const sessions = await Promise.all(Array.from({ length: 4 }, () => server.login(address, 'secret')));
    let opened = 0;
    let refusal = '';
    for (let i = 0; i < 40; i++) {
      const reply = await sessions[i % 4]!.client.request(`<folderOpen folder="f${i}" mailbox="INBOX"><field>UID</field></folderOpen>`);
      if (reply.response.attrs.errorText) refusal = reply.response.attrs.errorText;
      else opened++;
    }
    assert.equal(opened, 30);
    assert.match(refusal, /too many open folders in this account's sessions \(at most 30\)/);
    await assertServes(victim);
  });

  test('uploads are spooled to disk: large PUTs do not grow the heap, KILL frees them', async () => {
    const address = await server.newAccount('uploader');
    const sessions = await Promise.all(Array.from({ length: 3 }, () => loginWithUrlId(server.ports.ximss, address, 'secret')));
    const rss = watchRss();
    const data = Buffer.alloc(30 * 1024 * 1024, 0x61);
    const put = (urlID: string, id: string): Promise<number> =>
      new Promise((resolve, reject) => {
        // node:http writes the one buffer as it is (fetch would copy it per request).
        const req = http.request({ port: server.ports.http, host: '127.0.0.1', method: 'PUT', path: `/Session/${urlID}/UPLOAD/${id}` }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end(data);
      });
    const puts = sessions.flatMap(({ urlID }) => [put(urlID, 'u1'), put(urlID, 'u2')]);
    // Over the per-session quota (64 MB): the third file is refused.
    const statuses = [...(await Promise.all(puts)), await put(sessions[0]!.urlID, 'u3')];
    assert.equal(statuses.filter((s) => s === 200).length, 6);
    assert.equal(statuses.filter((s) => s === 413).length, 1);
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 128 * 1024 * 1024);
    for (const { urlID } of sessions) await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/KILL`);
    await eventually(() => server.services.uploads.bytes === 0, 'the spool is empty after KILL');
  });
});

describe('abuse: WebDAV and CardDAV', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked()));
  after(() => server.stop());

  /** One DAV request over a raw socket (the body written as the server reads it), with the user's Basic credentials. */
  const davRaw = (user: string, method: string, path: string, body: Buffer, headers = ''): Promise<{ text: string; closed: boolean }> =>
    rawHttp(
      server.ports.http,
      `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ${Buffer.from(`${user}:secret`).toString('base64')}\r\n` +
        `Content-Length: ${body.length}\r\n${headers}\r\n`,
      body,
    );

  test('request bodies: a 10 MB nested PROPFIND and a 5 MB vCard are refused while they arrive; the server goes on', async () => {
    const user = await server.newAccount('davbody');
    const rss = watchRss();
    const propfind = await davRaw(user, 'PROPFIND', `/dav/files/${user}/`, nested(10 * 1024 * 1024 / 3, '<D:propfind xmlns:D="DAV:">'), 'Depth: 0\r\n');
    assert.equal(status(propfind.text), 413, propfind.text.slice(0, 200));
    const card = Buffer.from(`BEGIN:VCARD\r\nVERSION:3.0\r\nUID:big\r\nFN:Big\r\nNOTE:${'x'.repeat(5 * 1024 * 1024)}\r\nEND:VCARD\r\n`);
    const account = (await server.services.accounts.find(user))!;
    await server.services.mail.access(account, 'Contacts', 'i', { mailboxClass: 'IPF.Contact' });
    const put = await davRaw(user, 'PUT', `/dav/addressbooks/${user}/Contacts/big.vcf`, card, 'Content-Type: text/vcard\r\n');
    assert.equal(status(put.text), 413, put.text.slice(0, 200));
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 64 * 1024 * 1024);
  });

  test('a 64 MB PUT beyond the storage limit is refused while it streams (507) and leaves nothing; the heap does not take it in', async () => {
    const address = await server.newAccount('davput');
    const account = (await server.services.accounts.find(address))!;
    await server.services.accounts.setSettings(account, { MaxWebSize: '8M' });
    const rss = watchRss();
    const put = await davRaw(address, 'PUT', `/dav/files/${address}/big.bin`, Buffer.alloc(64 * 1024 * 1024, 0x62));
    // The 507 goes out at once and the connection is closed: a client still writing may see
    // the reset before the answer.
    if (put.text !== '') assert.equal(status(put.text), 507, put.text.slice(0, 200));
    else assert.ok(put.closed, 'refused: answered 507, or cut before the answer could be read');
    assert.equal(await server.services.files.stat(account, 'big.bin'), undefined, 'nothing of it stays');
    assert.equal((await server.services.files.usage(account, '')).size, 0);
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 128 * 1024 * 1024);
  });

  test('password guessing over Basic authentication spends the same login budget as XIMSS', async () => {
    const address = await server.newAccount('davguess');
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const reply = await httpRequest(server.ports.http, `/dav/files/${address}/`, {
        method: 'PROPFIND',
        headers: { Authorization: `Basic ${Buffer.from(`${address}:wrong-${i}`).toString('base64')}`, Depth: '0' },
      });
      statuses.push(reply.status);
    }
    assert.ok(statuses.every((s) => s === 401 || s === 403 || s === 429), `only refusals: ${[...new Set(statuses)].join(', ')}`);
    const refusedLogins = (await server.services.store.accounts.get(address.split('@')[1]!, address.split('@')[0]!))?.lastFailedLogin;
    assert.ok(refusedLogins, 'the failures are recorded on the account');
    await assertServes(victim);
  });
});

describe('abuse: calendars', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked()));
  after(() => server.stop());

  test('runaway rules, a thousand exceptions and bad iCalendar: bounded answers, clean errors, the server goes on', async () => {
    const address = await server.newAccount('calabuse');
    const { client } = await server.login(address, 'secret');
    assert.equal((await client.request('<mailboxCreate mailbox="Calendar" mailboxClass="IPF.Appointment"/>')).response.attrs.errorText, undefined);
    assert.equal((await client.request('<calendarOpen calendar="C" mailbox="Calendar"/>')).response.attrs.errorText, undefined);
    const publish = (components: string): Promise<{ errorText: string | undefined }> =>
      client
        .request(`<calendarPublish calendar="C" sendRequests="no"><iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="t">${components}</vCalendar></iCalendar></calendarPublish>`, 60_000)
        .then((r) => ({ errorText: r.response.attrs.errorText }));
    // Every second forever, and a rule that never matches: stored, and a year's search stops on its own.
    assert.equal((await publish('<vevent><uid>sec</uid><summary>s</summary><dtstart>20240101T000000Z</dtstart><rrule>FREQ=SECONDLY</rrule></vevent>')).errorText, undefined);
    assert.equal((await publish('<vevent><uid>never</uid><summary>n</summary><dtstart>20240101T000000Z</dtstart><rrule>FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30</rrule></vevent>')).errorText, undefined);
    // A daily series with a thousand moved occurrences.
    const overrides = Array.from({ length: 1000 }, (_, i) => {
      const day = new Date(Date.UTC(2024, 0, 1 + i)).toISOString().slice(0, 10).replace(/-/g, '');
      return `<vevent><uid>many</uid><recurrence-id>${day}T090000Z</recurrence-id><summary>moved ${i}</summary><dtstart>${day}T100000Z</dtstart></vevent>`;
    }).join('');
    assert.equal((await publish(`<vevent><uid>many</uid><summary>m</summary><dtstart>20240101T090000Z</dtstart><rrule>FREQ=DAILY</rrule></vevent>${overrides}`)).errorText, undefined);
    const rss = watchRss();
    const year = await client.request('<findEvents calendar="C" timeFrom="20240101T000000" timeTill="20241231T000000" limit="100"/>', 120_000);
    assert.equal(year.response.attrs.errorText, undefined);
    assert.equal(year.messages.filter((m) => m.name === 'events').length, 365, 'one message a day');
    assert.ok(year.messages.flatMap((m) => m.elements('event')).length <= 100, 'limit holds');
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 256 * 1024 * 1024);
    // Bad iCalendar: an error naming the problem, never a crash.
    const bad = [
      '<vevent><uid>b1</uid><dtstart>not a date</dtstart></vevent>',
      '<vevent><uid>b2</uid><dtstart>20240101T000000Z</dtstart><rrule>FREQ=SOMETIMES</rrule></vevent>',
      '<vevent><uid>b3</uid><dtstart>20241345T250000</dtstart></vevent>',
      '<vevent><uid>a</uid><dtstart>20240101T000000Z</dtstart></vevent><vevent><uid>b</uid><dtstart>20240101T000000Z</dtstart></vevent>',
      '<vjournal><uid>j</uid></vjournal>',
      '<vevent>' + '<valarm>'.repeat(20) + '</valarm>'.repeat(20) + '</vevent>',
    ];
    for (const components of bad) assert.match((await publish(components)).errorText ?? '', /iCalendar|UID/, components.slice(0, 60));
    await assertServes(victim);
  });
});

describe('abuse: logins and SMTP', () => {
  let server: TestServer;
  let victim: XimssClient;
  let smtp: SmtpListener;
  let smtpPort: number;
  /** The passwords the server verified, in order (the right one is "secret"). */
  const verified: string[] = [];
  before(async () => {
    ({ server, victim } = await startAttacked(
      // One address may hold 250 connections here: the login budget is what this group attacks.
      { limits: { loginFailureDelayMs: 50, accountSlowdownMs: 200, connectionsPerAddress: 250 } },
      {
        auth: {
          verifier: {
            async verifyPassword(password, stored) {
              verified.push(password);
              return passwordVerifier.verifyPassword(password, stored);
            },
            verifyDigest: passwordVerifier.verifyDigest,
          },
        },
      },
    ));
    smtp = new SmtpListener(server.services);
    smtpPort = await smtp.start(0, '127.0.0.1');
  });
  after(async () => {
    await smtp.close();
    await server.stop();
  });

  test('200 parallel logins from one address: only the budget is verified, the right password last is refused', async () => {
    const target = await server.newAccount('target');
    verified.length = 0;
    const clients = await Promise.all(Array.from({ length: 200 }, () => connectFrom(server.ports.ximss, '127.0.0.20')));
    const replies = await Promise.all(
      clients.map((c, i) => c.request(new XmlElement('login', { authData: target, password: i === 199 ? 'secret' : `guess${i}` }), 30_000)),
    );
    assert.ok(verified.length <= server.config.limits.loginFailuresPerAddress, `${verified.length} passwords verified`);
    assert.match(replies[199]!.response.attrs.errorText ?? '', /too many/);
    assert.equal(replies.filter((r) => !r.response.attrs.errorText).length, 0);
    // The same address over HTTP and SMTP AUTH is refused too: one budget for every protocol.
    const http = await rawHttp(server.ports.http, `GET /XIMSSLogin/?userName=${target}&password=secret&errorAsXML=1 HTTP/1.1\r\nHost: x\r\n\r\n`, undefined, '127.0.0.20');
    assert.match(httpBody(http.text), /errorText="too many/);
    const wire = await SmtpWire.connect(smtpPort, '127.0.0.20');
    await wire.command('EHLO attacker.test');
    const auth = await wire.command(`AUTH PLAIN ${Buffer.from(`\0${target}\0secret`).toString('base64')}`);
    assert.equal(auth.code, 454);
    wire.socket.destroy();
    for (const c of clients) c.close();
    await assertServes(victim);
  });

  test("the owner is not locked out by others' failures on the account", async () => {
    const owner = await server.newAccount('owner');
    await (await connectFrom(server.ports.ximss, '127.0.0.21')).login(owner, 'secret');
    // Twelve attacker addresses fail twice each on the account: past its limit of 10.
    for (let a = 0; a < 12; a++) {
      const attacker = await connectFrom(server.ports.ximss, `127.0.0.${30 + a}`);
      for (let i = 0; i < 2; i++) await attacker.request(new XmlElement('login', { authData: owner, password: `x${a}-${i}` }), 30_000);
      attacker.close();
    }
    const back = await connectFrom(server.ports.ximss, '127.0.0.21');
    const reply = await back.request(new XmlElement('login', { authData: owner, password: 'secret' }), 30_000);
    assert.equal(reply.response.attrs.errorText, undefined, 'the owner, from an address it logged in from, gets in');
  });

  test('unknown names are verified against a dummy hash, like wrong passwords', async () => {
    verified.length = 0;
    const client = await connectFrom(server.ports.ximss, '127.0.0.22');
    const reply = await client.request(new XmlElement('login', { authData: 'nobody-here@example.test', password: 'guess-unknown' }), 30_000);
    assert.ok(reply.response.attrs.errorText);
    assert.deepEqual(verified, ['guess-unknown']);
  });

  test('SMTP: recipient probing is cut after the error limit; connections per address are bounded', async () => {
    const wire = await SmtpWire.connect(smtpPort, '127.0.0.23');
    await wire.command('EHLO prober.test');
    await wire.command('MAIL FROM:<probe@elsewhere.test>');
    const codes: number[] = [];
    for (let i = 0; i < 30 && !wire.closed && wire.replies.at(-1)?.code !== 421; i++) {
      codes.push((await wire.command(`RCPT TO:<nobody${i}@example.test>`)).code);
    }
    assert.equal(codes.filter((c) => c === 550).length, server.config.limits.smtpErrorsPerConnection);
    assert.equal(wire.replies.at(-1)?.code, 421);
    await wire.waitClosed();

    const limit = server.config.limits.connectionsPerAddress;
    const held: SmtpWire[] = [];
    const refused: string[] = [];
    // connect() reads the greeting: a refused connection's is the reason.
    await Promise.all(
      Array.from({ length: limit + 6 }, () =>
        SmtpWire.connect(smtpPort, '127.0.0.24').then(
          (w) => held.push(w),
          (err: Error) => refused.push(err.message),
        ),
      ),
    );
    assert.equal(held.length, limit);
    assert.equal(refused.length, 6);
    assert.match(refused[0]!, /421 4\.7\.0 too many connections from this address/);
    for (const w of held) w.close();
    await assertServes(victim);
  });
});

describe('abuse: pretending to be a cluster node', () => {
  let server: TestServer;
  let victim: XimssClient;
  let user: string;
  before(async () => ({ server, victim, user } = await startAttacked()));
  after(() => server.stop());

  /** The status of one HTTP request from `localAddress`, with extra headers. */
  const send = async (path: string, localAddress: string, headers: http.OutgoingHttpHeaders = {}): Promise<number> =>
    (await httpRequest(server.ports.http, path, { localAddress, headers })).status;

  test('a client cannot get around the IP watch by claiming to be a forwarding node, nor make the server forward for it', async () => {
    const answer = await httpRequest(server.ports.http, `/XIMSSLogin/?userName=${encodeURIComponent(user)}&password=secret`);
    const login = parseXml(answer.text).elements()[0]!.attrs.urlID!;
    assert.equal(await send(`/Session/${login}/?maxWait=0`, '127.0.0.1'), 200);
    // From another address, with the headers a node adds when it forwards: a made-up key, or none.
    for (const key of ['guessed-key', '', undefined]) {
      const headers: http.OutgoingHttpHeaders = { 'x-ximssd-client-address': '127.0.0.1' };
      if (key !== undefined) headers['x-ximssd-cluster-key'] = key;
      assert.equal(await send(`/Session/${login}/?maxWait=0`, '127.0.0.2', headers), 550, `key ${JSON.stringify(key)}`);
    }
    // A urlID naming another node that does not exist: 550, nothing forwarded anywhere.
    assert.equal(await send('/Session/42-AAAAAAAAAAAAAAAAAAAA/?maxWait=0', '127.0.0.1'), 550);
    await assertServes(victim);
  });
});

describe('abuse: XMPP streams', () => {
  let server: TestServer;
  let victim: XimssClient;
  let port: number;
  let s2sPort: number;
  before(async () => {
    const { freePort } = await import('./helpers.js');
    port = await freePort();
    s2sPort = await freePort();
    ({ server, victim } = await startAttacked({ ports: { ximss: 0, http: 0, smtp: 0, xmpp: port, xmppS2s: s2sPort }, limits: { abusePerAddress: 3, abuseBlockSeconds: 60 } }));
  });
  after(() => server.stop());

  const HEADER = "<?xml version='1.0'?><stream:stream to='example.test' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

  /** Writes `data` after a stream header from `localAddress`; resolves with what came back once the server closed. */
  const attack = (data: Buffer, localAddress: string, to = { port, header: HEADER }): Promise<string> =>
    new Promise((resolve) => {
      const socket = net.connect({ port: to.port, host: '127.0.0.1', localAddress });
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString('utf8')));
      socket.on('error', () => {});
      socket.on('close', () => resolve(text));
      socket.write(to.header);
      socket.write(data, () => {});
    });

  test('before authentication, 10 MB of nested elements and a 5 MB attribute end the stream with policy-violation at once; the server goes on', async () => {
    const rss = watchRss();
    const deep = await attack(Buffer.from('<message>' + '<a>'.repeat(3_500_000)), '127.0.0.21');
    assert.match(deep, /<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>|<policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    const wide = await attack(Buffer.from(`<message to='${'x'.repeat(5 * 1024 * 1024)}'/>`), '127.0.0.22');
    assert.match(wide, /policy-violation/);
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 64 * 1024 * 1024);
  });

  test('a server stream (federation) that sends 10 MB of nesting before proving its domain is ended with a stream error at once', async () => {
    const rss = watchRss();
    const header = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='evil.example' to='example.test' version='1.0'>";
    const answer = await attack(Buffer.from('<message>' + '<a>'.repeat(3_500_000)), '127.0.0.25', { port: s2sPort, header });
    assert.match(answer, /<stream:error>/);
    assert.match(answer, /policy-violation|not-authorized/);
    await assertServes(victim);
    assertWithinBudget(rss.stop(), 64 * 1024 * 1024);
  });

  test('an address that keeps sending malformed streams is blocked like any other abuse: its new connections close at once', async () => {
    // limits.abusePerAddress is 3 here: three refused streams, then the block.
    for (let i = 0; i < 3; i++) assert.match(await attack(Buffer.from('<message><</message>'), '127.0.0.23'), /not-well-formed|policy-violation/);
    // Blocked now: the connection is closed without a stream.
    assert.equal(await attack(Buffer.from('<presence/>'), '127.0.0.23'), '');
    // Another address is served, and so is the XIMSS user.
    assert.match(await attack(Buffer.from('<message><</message>'), '127.0.0.24'), /not-well-formed/);
    await assertServes(victim);
  });
});

describe('abuse: Rayo', () => {
  let server: TestServer;
  let victim: XimssClient;
  let port: number;
  before(async () => {
    const { freePort } = await import('./helpers.js');
    port = await freePort();
    ({ server, victim } = await startAttacked({ ports: { ximss: 0, http: 0, smtp: 0, xmpp: port }, calls: { rayoCallsPerAccount: 5 } }));
  });
  after(() => server.stop());

  test('malformed, oversized and unknown commands, and dials beyond the account\'s calls: each answered with an error, the server goes on', async () => {
    const { ensureSlixmpp, XmppPeer } = await import('./fixtures/xmpp-peer.js');
    await ensureSlixmpp();
    const app = await server.newAccount('rayo-abuser');
    await server.services.accounts.setSettings((await server.services.accounts.find(app))!, { RayoAllowed: 'Yes' });
    const callee = await server.newAccount('rayo-target');
    const ringing = (await server.login(callee, 'secret')).client;
    expectOk(await ringing.request('<signalBind/>'));
    const peer = await XmppPeer.connect({ jid: app, password: 'secret', host: '127.0.0.1', port, resource: 'app' });
    try {
      const NS = 'urn:xmpp:rayo:1';
      // Commands that are not: unknown elements and attributes, bad values, deep and wide payloads.
      const bad = [
        `<dial xmlns="${NS}"/>`,
        `<dial xmlns="${NS}" to="javascript:alert(1)"/>`,
        `<dial xmlns="${NS}" to="sip:x@example.test" timeout="-5"/>`,
        `<dial xmlns="${NS}" to="sip:x@example.test">${'<header name="X-A" value="b"/>'.repeat(500)}</dial>`,
        `<dial xmlns="${NS}" to="sip:x@example.test"><join call-uri="xmpp:"/></dial>`,
        `<frobnicate xmlns="${NS}"/>`,
        `<output xmlns="urn:xmpp:rayo:output:1"><document content-type="text/plain">${'x'.repeat(100_000)}</document></output>`,
        `<input xmlns="urn:xmpp:rayo:input:1"><grammar content-type="application/srgs+xml"><![CDATA[${'<rule>'.repeat(5000)}]]></grammar></input>`,
      ];
      for (let round = 0; round < 5; round++) {
        for (const payload of bad) {
          const answer = await peer.iq(`<iq type="set" to="example.test">${payload}</iq>`);
          assert.equal(answer.type, 'error', payload.slice(0, 80));
          assert.notEqual(answer.condition, 'internal-server-error', payload.slice(0, 80));
        }
      }
      // Calls beyond calls.rayoCallsPerAccount (5 here): the sixth dial is refused, the five ring on.
      const calls: string[] = [];
      for (let i = 0; i < 6; i++) {
        const answer = await peer.iq(`<iq type="set" to="example.test"><dial xmlns="${NS}" to="sip:${callee}"/></iq>`);
        if (i < 5) calls.push(/uri="xmpp:([^"]+)"/.exec(answer.xml)![1]!);
        else assert.equal(answer.condition, 'resource-constraint', answer.xml);
      }
      for (const call of calls) await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS}"/></iq>`);
      await assertServes(victim);
    } finally {
      await peer.close();
    }
  });
});

describe('abuse: real-time applications', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked({ apps: { tasksPerAccount: 3, meetingsPerAccount: 5 } })));
  after(() => server.stop());

  test('tasks, events, meetings and scripts beyond their limits or malformed: each answered with an error, the server goes on', async () => {
    const attacker = await server.newAccount('task-abuser');
    const client = (await server.login(attacker, 'secret')).client;
    // Tasks beyond tasks.perAccount (3 here).
    const refs: string[] = [];
    for (let i = 0; i < 3; i++) refs.push(expectOk(await client.request(`<taskStart programName="conference"><param>r${i}</param></taskStart>`)).messages[0]!.attrs.taskRef!);
    expectError(await client.request('<taskStart programName="conference"><param>r9</param></taskStart>'), 'an account may run 3 tasks at once');
    // Events: too large, badly named, malformed bodies, unknown refs, a flood the task answers.
    const bad = [
      `<taskSendEvent taskRef="${refs[0]}" eventName="x">${'y'.repeat(70_000)}</taskSendEvent>`,
      `<taskSendEvent taskRef="${refs[0]}" eventName="${'n'.repeat(300)}"/>`,
      `<taskSendEvent taskRef="${refs[0]}" eventName="a&#10;b"/>`,
      `<taskSendEvent taskRef="${refs[0]}" eventName="x"><subKey>no key</subKey></taskSendEvent>`,
      `<taskSendEvent taskRef="${refs[0]}" eventName="x"><subKey key="a">1</subKey><subValue>2</subValue></taskSendEvent>`,
      '<taskSendEvent taskRef="999999" eventName="x"/>',
      '<taskClose taskRef="-1"/>',
      '<taskStart programName="../../../etc/passwd"/>',
      '<runScript fileName="../../package.json"/>',
      '<runScript fileName="conference" name="__proto__"/>',
      '<callHelper name="constructor"/>',
      `<taskCreateMeeting meetingName="${'m'.repeat(300)}"/>`,
      `<taskCreateMeeting meetingName="big">${'p'.repeat(20_000)}</taskCreateMeeting>`,
      '<taskFindMeeting meetingSet="a&#9;b" meetingName="c"/>',
    ];
    for (const request of bad) expectError(await client.request(request), undefined, request.slice(0, 80));
    for (let round = 0; round < 25; round++) {
      await Promise.all(Array.from({ length: 20 }, () => client.request(`<taskSendEvent taskRef="${refs[1]}" eventName="list"/>`).then((r) => expectOk(r))));
    }
    // Meetings beyond meetingsPerAccount (5 here): the three rooms made theirs, two more fit.
    for (let i = 0; i < 2; i++) expectOk(await client.request(`<taskCreateMeeting meetingName="m${i}"/>`));
    expectError(await client.request('<taskCreateMeeting meetingName="m2"/>'), 'an account may have 5 meetings');
    for (const ref of refs) expectOk(await client.request(`<taskSendEvent taskRef="${ref}" eventName="close"/>`));
    await assertServes(victim);
  });
});

/** An OPTIONS from 127.0.0.1:`port` (a probe that the server still answers SIP). */
function optionsProbe(port: number, name: string): Buffer {
  return Buffer.from(
    [
      `OPTIONS sip:example.test SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${name};rport`,
      'Max-Forwards: 70',
      'From: <sip:probe@caller.invalid>;tag=1',
      'To: <sip:example.test>',
      `Call-ID: ${name}-probe`,
      'CSeq: 1 OPTIONS',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
}

describe('abuse: SIP over UDP', () => {
  let server: TestServer;
  let sipPort: number;

  before(async () => {
    sipPort = await freeSipPort();
    server = await startTestServer({ ports: { sip: sipPort } });
  });
  after(() => server?.stop());

  test('a flood of STUN Binding requests (spoofable, each answer larger than the request) gets a bounded number of answers; SIP goes on', async () => {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    const stun: Buffer[] = [];
    const sip: string[] = [];
    socket.on('message', (bytes) => (bytes.subarray(0, 3).toString() === 'SIP' ? sip.push(bytes.toString()) : stun.push(bytes)));
    try {
      for (let i = 0; i < 500; i++) {
        const request = Buffer.alloc(20);
        request.writeUInt16BE(0x0001, 0);
        request.writeUInt32BE(0x2112a442, 4);
        request.writeUInt32BE(i, 16);
        socket.send(request, sipPort, '127.0.0.1');
        if (i % 50 === 49) await sleep(1);
      }
      socket.send(optionsProbe(socket.address().port, 'stunflood'), sipPort, '127.0.0.1');
      await eventually(() => sip.length > 0 || undefined, 'the OPTIONS answered after the flood', 5000);
      assert.match(sip[0]!, /^SIP\/2\.0 200/);
      assert.ok(stun.length >= 1, 'keep-alives are answered');
      assert.ok(stun.length <= 50, `${stun.length} STUN answers to one address in a burst of 500`);
    } finally {
      socket.close();
    }
  });

  test('a flood that arrives while the server is busy waits within its bound: the rest is dropped and counted, SIP goes on', async () => {
    const watch = watchRss();
    // 2,000 datagrams of 50 KB (100 MB) from another thread, while this one (the server's) is
    // busy: SIP's UDP thread keeps reading, and may hold only 4 MiB for the main thread.
    const sender = new Worker(
      `const dgram = require('node:dgram');
       const { workerData } = require('node:worker_threads');
       const s = dgram.createSocket('udp4');
       const junk = Buffer.alloc(50_000, 0x41);
       let left = 2000;
       const next = () => { if (left-- === 0) { s.close(); return; } s.send(junk, workerData.port, '127.0.0.1', next); };
       next();`,
      { eval: true, workerData: { port: sipPort } },
    );
    const exited = once(sender, 'exit');
    await once(sender, 'online');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
    await exited;
    const dropped = async (): Promise<number> => Number(/^ximssd_sip_udp_dropped_total (\d+)/m.exec(await server.services.metrics.registry.metrics())?.[1] ?? 0);
    // The drops are reported about once a second.
    const count = await eventually(async () => (await dropped()) || undefined, 'datagrams dropped and counted', 5000).finally(() => assertWithinBudget(watch.stop()));
    // Some the kernel's buffer dropped before the thread read them; past the bound, the thread.
    assert.ok(count > 0 && count <= 2000, `${count} of 2,000 dropped`);

    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    const answers: string[] = [];
    socket.on('message', (bytes) => answers.push(bytes.toString()));
    try {
      socket.send(optionsProbe(socket.address().port, 'busyflood'), sipPort, '127.0.0.1');
      await eventually(() => answers.length > 0 || undefined, 'the OPTIONS answered after the flood', 5000);
      assert.match(answers[0]!, /^SIP\/2\.0 200/);
    } finally {
      socket.close();
    }
  });
});

describe('abuse: skins, configuration files and banners', () => {
  let server: TestServer;
  let victim: XimssClient;
  let skins: string;
  before(async () => {
    skins = mkdtempSync(join(tmpdir(), 'ximssd-abuse-skins-'));
    mkdirSync(join(skins, 'Crowded'));
    for (let i = 0; i <= 50; i++) writeFileSync(join(skins, 'Crowded', `f${i}.txt`), 'x');
    writeFileSync(join(skins, 'big.txt'), Buffer.alloc(64 * 1024, 0x61));
    writeFileSync(join(skins, 'deep.xml'), '<a>'.repeat(5000) + '</a>'.repeat(5000));
    ({ server, victim } = await startAttacked({ skins: { directory: skins, maxFiles: 50, maxFileBytes: 64 * 1024 } }));
  });
  after(async () => {
    await server.stop();
    rmSync(skins, { recursive: true, force: true });
  });

  test('hostile names, patterns and bodies are each answered; a crowded skin is not listed; reads stay within memory', async () => {
    const attacker = await server.newAccount('skin-abuser');
    const client = (await server.login(attacker, 'secret')).client;
    const watch = watchRss();
    const bad = [
      '<skinFileRead fileName="../../../../etc/passwd"/>',
      '<skinFileRead fileName="/etc/passwd" type="binary"/>',
      '<skinFileRead fileName="&#46;&#46;&#47;&#46;&#46;&#47;etc&#47;passwd"/>',
      '<skinFileRead fileName="a&#10;b"/>',
      `<skinFileRead fileName="${'a'.repeat(100_000)}"/>`,
      `<skinFileRead skinName="${'s'.repeat(100_000)}" fileName="x"/>`,
      '<skinFileRead skinName="../.." fileName="passwd"/>',
      '<skinFileRead fileName=""/>',
      '<skinFileRead fileName="nothing.txt"/>',
      '<skinFileList skinName="Crowded"/>',
      '<skinFileList skinName="__proto__"/>',
      '<readConfigFile name="../../package"/>',
      '<readConfigFile name="deep"/>',
      `<readConfigFile name="${'n'.repeat(10_000)}"/>`,
      '<bannerRead/>',
    ];
    for (const request of bad) expectError(await client.request(request), undefined, request.slice(0, 80));
    // Patterns that would be slow with backtracking, and names that look like object keys: answered.
    expectOk(await client.request(`<skinList filter="${'*a'.repeat(5000)}b"/>`));
    expectOk(await client.request(`<skinFileList filter="${'*a'.repeat(5000)}b"/>`));
    for (const type of ['__proto__', 'constructor', 'toString']) {
      assert.equal(expectOk(await client.request(`<bannerRead type="${type}"/>`)).messages.length, 0);
    }
    expectOk(await client.request(`<bannerRead type="x">${'<subKey key="k">v</subKey>'.repeat(2000)}</bannerRead>`));
    // Many reads of the largest file allowed at once: each answered, memory bounded.
    await Promise.all(
      Array.from({ length: 200 }, () =>
        client.request('<skinFileRead fileName="big.txt" type="binary"/>', 20_000).then((reply) => assert.equal(expectOk(reply).messages.length, 1)),
      ),
    );
    assertWithinBudget(watch.stop());
    await assertServes(victim);
  });
});

describe('abuse: billing', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked({ billing: { maxAmount: 1000, maxBalance: 5000, historyLimit: 20 } })));
  after(() => server.stop());

  test('malformed, oversized and unauthorized balance requests, and racing charges from two sessions: clear errors, no overdraft, the server goes on', async () => {
    await server.addAccount('postmaster@billing-abuse.test', 'secret');
    const payer = await server.newAccount('payer', { domain: 'billing-abuse.test' });
    const admin1 = (await server.login('postmaster@billing-abuse.test', 'secret')).client;
    const admin2 = (await server.login('postmaster@billing-abuse.test', 'secret')).client;
    const own = (await server.login(payer, 'secret')).client;
    const op = (params: Record<string, string>, accountName = payer): string =>
      `<balance accountName="${accountName}">${Object.entries(params).map(([k, v]) => `<subKey key="${k}">${v}</subKey>`).join('')}</balance>`;
    const bad = [
      op({ op: 'credit', amount: '9'.repeat(60_000) }),
      op({ op: 'x'.repeat(20_000) }),
      op({ op: 'read', ...Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, 'v'])) }),
      op({ op: 'credit', amount: '5', description: 'd'.repeat(50_000) }),
      op({ op: 'credit', amount: '5', reference: 'r'.repeat(50_000) }),
      op({ op: 'credit', amount: '5', balance: '../../etc' }),
      `<balance><subKey key="op">read</subKey><subKey key="__proto__">x</subKey></balance>`,
      op({ op: 'credit', amount: '1e3' }),
      op({ op: 'credit', amount: '0x10' }),
      op({ op: 'credit', amount: '1001' }),
      op({ op: 'history', limit: '1000000' }),
      op({ op: 'read' }, 'a'.repeat(5000)),
      op({ op: 'read' }, 'x&#9;y@billing-abuse.test'),
      `<balance>${'<subKey key="op">'.repeat(50)}read${'</subKey>'.repeat(50)}</balance>`,
      '<balance><subKey key="op">read</subKey><subValue>1</subValue></balance>',
    ];
    for (const request of bad) expectError(await admin1.request(request), undefined, request.slice(0, 80));
    // The account may not credit itself, however it asks.
    for (let i = 0; i < 20; i++) expectError(await own.request(op({ op: 'credit', amount: '1000' }, '')), /^access denied/);
    expectError(await own.request(op({ op: 'credit', amount: '1000', reference: 'self' })), /^access denied/);

    // 1000 in the balance; 40 charges of 100 from two sessions at once: exactly 10 pass.
    expectOk(await admin1.request(op({ op: 'credit', amount: '1000' })));
    const charges = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? admin1 : admin2).request(op({ op: 'charge', amount: '100', reference: `c${i}` })));
    const replies = await Promise.all(charges);
    const passed = replies.filter((r) => r.response.attrs.errorText === undefined).length;
    assert.equal(passed, 10);
    for (const r of replies) if (r.response.attrs.errorText !== undefined) assert.equal(r.response.attrs.errorText, 'insufficient funds');
    const read = expectOk(await own.request(op({ op: 'read' }, '')));
    assert.match(read.messages[0]!.toString(), /<subKey key="amount">0<\/subKey>/);
    // Credits stop at maxBalance (5000 here).
    for (let i = 0; i < 5; i++) expectOk(await admin2.request(op({ op: 'credit', amount: '1000' })));
    expectError(await admin2.request(op({ op: 'credit', amount: '1' })), 'the balance would exceed its limit (5000)');
    await assertServes(victim);
  });
});

describe('abuse: retrieveXML and httpCall as a flood source', () => {
  let server: TestServer;
  let victim: XimssClient;
  let target: http.Server;
  let targetPort: number;
  /** Requests that reached the target; while `hold`, they wait in `held` for an answer. */
  let reached = 0;
  let hold = true;
  const held = new Set<http.ServerResponse>();
  const answer = (res: http.ServerResponse): void => {
    res.writeHead(200, { 'Content-Type': 'application/xml' });
    res.end('<ok/>');
  };
  // 64 MB of zeros, about 64 KB on the wire.
  const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));

  before(async () => {
    target = http.createServer((req, res) => {
      req.resume();
      if (req.url === '/bomb') {
        res.writeHead(200, { 'Content-Type': 'application/xml', 'Content-Encoding': 'gzip' });
        res.end(bomb);
        return;
      }
      reached++;
      if (!hold) return answer(res);
      held.add(res);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as net.AddressInfo).port;
    ({ server, victim } = await startAttacked({ fetch: { httpCall: true, allow: [`127.0.0.1:${targetPort}`], concurrentPerAccount: 2, requestsPerMinute: 6 } }));
  });
  after(async () => {
    await server.stop();
    for (const res of held) res.destroy();
    target.closeAllConnections();
    await new Promise<void>((resolve) => target.close(() => resolve()));
  });

  test("one account's sessions pipelining requests to a slow target: 2 at once and 6 a minute reach it, the rest are refused at once", async () => {
    const attacker = await server.newAccount('flooder');
    const sessions = await Promise.all(Array.from({ length: 6 }, async () => (await server.login(attacker, 'secret')).client));
    const rss = watchRss();
    const settled: string[] = [];
    const replies = Promise.all(
      sessions.flatMap((client) =>
        Array.from({ length: 5 }, (_, i) =>
          client
            .request(i % 2 === 0 ? `<httpCall url="http://127.0.0.1:${targetPort}/slow" method="POST">${'x'.repeat(1000)}</httpCall>` : `<retrieveXML url="http://127.0.0.1:${targetPort}/slow"/>`, 60_000)
            .then((reply) => {
              settled.push(reply.response.attrs.errorText ?? 'ok');
              return reply;
            }),
        ),
      ),
    );
    // Two sessions hold a running request each; the four others' requests are all refused meanwhile.
    // (the two admitted requests reach the target a moment after they are admitted)
    await eventually(() => (settled.length >= 20 && reached >= 2) || undefined, 'the other sessions refused, two requests at the target', 30_000);
    assert.equal(settled.length, 20);
    assert.equal(reached, 2);
    assert.equal(held.size, 2);
    assert.deepEqual(new Set(settled), new Set(['too many HTTP requests at once (at most 2)']));
    await assertServes(victim);
    // The target answers: the two sessions go on one request at a time, until 6 have started in the minute.
    hold = false;
    for (const res of held) answer(res);
    held.clear();
    const texts = (await replies).map((reply) => reply.response.attrs.errorText ?? 'ok');
    assertWithinBudget(rss.stop());
    assert.equal(texts.filter((t) => t === 'ok').length, 6, texts.join('\n'));
    assert.equal(texts.filter((t) => t === 'too many HTTP requests (at most 6 a minute)').length, 4, texts.join('\n'));
    assert.equal(reached, 6);
    // Another account is untouched by the flooder's limits.
    const other = (await server.login(await server.newAccount('bystander'), 'secret')).client;
    expectOk(await other.request(`<retrieveXML url="http://127.0.0.1:${targetPort}/fine"/>`));
    await assertServes(victim);
  });

  test('a compressed answer that inflates far past fetch.maxBytes is cut off at the limit', async () => {
    const client = (await server.login(await server.newAccount('bomber'), 'secret')).client;
    const rss = watchRss();
    expectError(await client.request(`<retrieveXML url="http://127.0.0.1:${targetPort}/bomb"/>`, 60_000), `the document is too large (at most ${1024 * 1024} bytes)`);
    assertWithinBudget(rss.stop(), 64 * 1024 * 1024);
    await assertServes(victim);
  });
});

describe('abuse: spell checking', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked({ limits: { spellerTextBytes: 64 * 1024, spellerWords: 5000, spellerPending: 2 } })));
  after(() => server.stop());

  const check = (speller: string, text: string): XmlElement => new XmlElement('spellerCheck', { speller }, [text]);

  test('oversized texts, too many words, made-up spellers and element bodies get clear errors; the server goes on', async () => {
    const { client } = await server.login(await server.newAccount('speller'), 'secret');
    const big = await client.request(check('English-US', 'x'.repeat(64 * 1024 + 1)), 20_000);
    assert.equal(big.response.attrs.errorText, `the text is too large (${64 * 1024 + 1} bytes; at most ${64 * 1024})`);
    const many = await client.request(check('Russian', 'да '.repeat(5001)), 20_000);
    assert.equal(many.response.attrs.errorText, 'the text has too many words (at most 5000)');
    const name = await client.request(new XmlElement('spellerCheck', { speller: 'z'.repeat(100_000) }, ['hello']));
    assert.match(name.response.attrs.errorText ?? '', /^unknown speller "z{64}" \(known: English-US, Russian\)$/);
    const nested = await client.request('<spellerCheck speller="English-US">a<b><c>deep</c></b></spellerCheck>');
    assert.match(nested.response.attrs.errorText ?? '', /plain text/);
    // One huge word, apostrophes without end, a long made-up word: answered within the limits.
    for (const text of ['я'.repeat(30_000), "a'".repeat(20_000) + 'a', 'ыщвфжзхъэюбьтимсчяйцукенгшщзхъ'.repeat(2)]) {
      const reply = await client.request(check('Russian', text), 60_000);
      assert.equal(reply.response.attrs.errorText, undefined, reply.response.toString());
    }
    await assertServes(victim);
  });

  test('a burst of large texts from many clients: past spellerPending they are refused as busy, every request is answered, others are served', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, async (_, i) => (await server.login(await server.newAccount(`burst${i}`), 'secret')).client));
    // Distinct made-up words: each wants a guess search.
    const text = Array.from({ length: 3000 }, (_, i) => `карова${String.fromCharCode(0x430 + (i % 32), 0x430 + ((i >> 5) % 32))}`).join(' ');
    const replies = clients.map((c) => c.request(check('Russian', text), 120_000));
    await assertServes(victim);
    const answers = await Promise.all(replies);
    const errors = answers.map((a) => a.response.attrs.errorText);
    assert.ok(errors.some((e) => e === undefined), `some texts are checked: ${errors.join(' | ')}`);
    assert.ok(errors.some((e) => e === 'the spell checker is busy; try again later'), `past spellerPending texts are refused: ${errors.join(' | ')}`);
    assert.ok(errors.every((e) => e === undefined || e === 'the spell checker is busy; try again later'), errors.join(' | '));
    for (const a of answers) if (a.response.attrs.errorText === undefined) assert.equal(a.messages.length, 3000);
    await assertServes(victim);
  });
});

describe('abuse: CLI commands (cliExecute)', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked({ cli: { administrators: ['root@example.test'], maxCommandBytes: 4096, maxDepth: 8 } })));
  after(() => server.stop());

  const cli = (text: string): XmlElement => new XmlElement('cliExecute', {}, [text]);

  test('huge commands, deep nesting, endless strings and control bytes get clear errors; the server goes on', async () => {
    await server.addAccount('root@example.test', 'rootpw');
    const { client: root } = await server.login('root@example.test', 'rootpw');
    const huge = await root.request(cli(`SETACCOUNTALIASES root@example.test (${'a,'.repeat(3000)}a)`));
    assert.match(huge.response.attrs.errorText ?? '', /^the CLI command is too long \(\d+ bytes; at most 4096\)$/);
    const deep = await root.request(cli(`UPDATEACCOUNTPREFS root@example.test ${'('.repeat(200)}x${')'.repeat(200)}`));
    assert.match(deep.response.attrs.errorText ?? '', /^CLI syntax error: nested too deeply at position \d+$/);
    const dict = await root.request(cli(`UPDATEACCOUNTPREFS root@example.test ${'{a='.repeat(50)}x${';}'.repeat(50)}`));
    assert.match(dict.response.attrs.errorText ?? '', /nested too deeply/);
    const open = await root.request(cli(`GETACCOUNTALIASES "${'x'.repeat(4000)}`));
    assert.match(open.response.attrs.errorText ?? '', /unterminated string/);
    const control = await root.request(cli('GETACCOUNTALIASES "a\\001b"'));
    assert.equal(control.response.attrs.errorText, 'unknown account');
    const longName = await root.request(cli(`${'X'.repeat(1000)} y`));
    assert.match(longName.response.attrs.errorText ?? '', /a command name expected/);
    // An ordinary account can flood only with refusals.
    const { client: plain } = await server.login(await server.newAccount('clifld'), 'secret');
    const replies = await Promise.all(Array.from({ length: 50 }, () => plain.request(cli('LISTDOMAINS'))));
    assert.ok(replies.every((r) => r.response.attrs.errorText === 'access denied'));
    await assertServes(victim);
    await assertServes(root);
  });
});

describe('abuse: remote SIP records (rsipUpdate) and INVITEs to made-up registration Contacts', () => {
  let server: TestServer;
  let victim: XimssClient;
  let sipPort: number;
  before(async () => {
    sipPort = await freeSipPort();
    ({ server, victim } = await startAttacked({ ports: { sip: sipPort }, remoteSip: { recordsPerAccount: 2 } }));
  });
  after(() => server.stop());

  const rsip = (name: string, body: string): string => `<rsipRecord name="${name}">${body}</rsipRecord>`;
  const key = (k: string, v: string): string => `<subKey key="${k}">${v}</subKey>`;

  test('oversized, nested, malformed and too many records get clear errors and change nothing; the server goes on', async () => {
    const rsipper = await server.newAccount('rsipper');
    await server.services.accounts.setSettings((await server.services.accounts.find(rsipper))!, { RSIPAllowed: 'Yes' });
    const { client } = await server.login(rsipper, 'secret');
    const good = key('domain', 'sip.example.net') + key('fromName', '100');
    const cases: [string, RegExp][] = [
      [`<rsipUpdate>${Array.from({ length: 101 }, (_, i) => rsip(`r${i}`, good)).join('')}</rsipUpdate>`, /too many rsipRecord elements \(at most 100\)/],
      [`<rsipUpdate>${rsip('a', good)}${rsip('b', good)}${rsip('c', good)}</rsipUpdate>`, /too many RSIP records \(at most 2 in an account\)/],
      [`<rsipUpdate>${rsip('n'.repeat(65), good)}</rsipUpdate>`, /record name is too long/],
      [`<rsipUpdate>${rsip('a', good + key('password', 'p'.repeat(257)))}</rsipUpdate>`, /password is too long \(at most 256/],
      [`<rsipUpdate>${rsip('a', key('domain', `${'a'.repeat(64)}.test`) + key('fromName', '1'))}</rsipUpdate>`, /domain must be a host name/],
      [`<rsipUpdate>${rsip('a', good + `<subKey key="authName">${key('x', 'y')}</subKey>`)}</rsipUpdate>`, /the value of "authName" must be a string/],
      [`<rsipUpdate>${rsip('a', '<subValue>x</subValue>')}</rsipUpdate>`, /the body must be a dictionary/],
      [`<rsipUpdate>${rsip('a', '<subKey>x</subKey>')}</rsipUpdate>`, /subKey element without a key/],
      [`<rsipUpdate>${rsip('a', good + key('fromName', 'a&#9;b'))}</rsipUpdate>`, /control characters/],
      [`<rsipUpdate>${rsip('a', key('domain', 'x.test') + key('fromName', '1') + key('expires', '9'.repeat(40)))}</rsipUpdate>`, /expires must be a whole number of seconds/],
      [`<rsipUpdate>${rsip('a', key('domain', 'x.test') + key('fromName', '1') + key('proxy', '1.2.3.4;lr;transport=tcp'))}</rsipUpdate>`, /proxy must be host\[:port\]/],
      ['<rsipUpdate><rsipRecord>x</rsipRecord></rsipUpdate>', /the name attribute of an rsipRecord is missing/],
      ['<rsipUpdate><other name="a"/></rsipUpdate>', /unexpected <other> in rsipUpdate/],
    ];
    for (const [request, expected] of cases) {
      const reply = await client.request(request, 20_000);
      assert.match(reply.response.attrs.errorText ?? '(no error)', expected, request.slice(0, 120));
    }
    const listed = await client.request('<rsipList/>');
    assert.equal(listed.messages.filter((m) => m.name === 'rsipRecord').length, 0, 'nothing refused was kept');
    await assertServes(victim);
  });

  test('INVITEs to made-up, overlong or deleted registration Contacts are refused, never routed to an account', async () => {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const answers: string[] = [];
    socket.on('message', (bytes) => answers.push(bytes.toString('utf8').split('\r\n', 1)[0]!));
    const local = socket.address().port;
    try {
      for (const [i, user] of ['rsip-0123456789abcdef01234567', `rsip-${'f'.repeat(2000)}`, 'rsip-', 'rsip-%00'].entries()) {
        const invite = [
          `INVITE sip:${user}@127.0.0.1:${sipPort} SIP/2.0`,
          `Via: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-rsip${i}`,
          'Max-Forwards: 70',
          `From: <sip:attacker@elsewhere.invalid>;tag=a${i}`,
          `To: <sip:${user}@127.0.0.1>`,
          `Call-ID: rsip-abuse-${i}`,
          `CSeq: 1 INVITE`,
          `Contact: <sip:attacker@127.0.0.1:${local}>`,
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n');
        socket.send(invite, sipPort, '127.0.0.1');
        await eventually(() => answers.some((line) => /^SIP\/2\.0 [3-6]\d\d/.test(line)) && answers.length > 0, `an answer to INVITE ${i}`, 10_000);
        const final = answers.filter((line) => /^SIP\/2\.0 [3-6]\d\d/.test(line));
        assert.match(final[final.length - 1]!, /^SIP\/2\.0 (403|404|400|414|513)/, answers.join(' | '));
        answers.length = 0;
      }
    } finally {
      socket.close();
    }
    await assertServes(victim);
  });
});

describe('abuse: S/MIME', () => {
  let server: TestServer;
  let victim: XimssClient;
  let work: string;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'ximssd-smime-abuse-'));
    ({ server, victim } = await startAttacked({ smime: { maxUnlockFailures: 3, maxPfxBytes: 8192 } }));
  });
  after(async () => {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const openssl = (args: readonly string[], input?: Buffer): Buffer => execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });

  test('wrong passwords: each refused, then unlocking refused for the account for a while (the right password too); other accounts unaffected', async () => {
    const address = await server.newAccount('guessed');
    const { client } = await server.login(address, 'secret');
    expectOk(await client.request('<SMIMESet mode="new" password="right"/>', 20_000));
    expectOk(await client.request('<SMIMELock/>'));
    for (let i = 0; i < 3; i++) expectError(await client.request(`<SMIMEUnlock password="guess${i}"/>`, 20_000), 'wrong S/MIME password');
    expectError(await client.request('<SMIMEUnlock password="right"/>'), 'too many wrong S/MIME passwords; try again later');
    const other = (await server.login(await server.newAccount('unguessed'), 'secret')).client;
    expectOk(await other.request('<SMIMESet mode="new" password="pw"/>', 20_000));
    expectOk(await other.request('<SMIMELock/>'));
    expectOk(await other.request('<SMIMEUnlock password="pw"/>', 20_000));
    // Passwords and durations that are not what they should be.
    expectError(await other.request(`<SMIMEUnlock password="${'p'.repeat(2000)}"/>`), /too long/);
    expectError(await other.request('<SMIMEUnlock password="pw" duration="-5"/>'), /invalid duration/);
    expectError(await other.request('<SMIMEUnlock/>'), /password attribute is missing/);
    await assertServes(victim);
  });

  test('damaged, foreign, oversized and key-derivation-heavy PFX data get clear errors', async () => {
    const { client } = await server.login(await server.newAccount('pfxabuse'), 'secret');
    const key = join(work, 'k.pem');
    const cert = join(work, 'c.pem');
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '3', '-subj', '/CN=x/emailAddress=x@remote.test']);
    const good = openssl(['pkcs12', '-export', '-inkey', key, '-in', cert, '-passout', 'pass:f']);
    const heavy = openssl(['pkcs12', '-export', '-inkey', key, '-in', cert, '-passout', 'pass:f', '-iter', '5000000', '-maciter']);
    const add = (data: Buffer, filePassword = 'f'): string => `<SMIMESet mode="add" password="p" filePassword="${filePassword}"><PFX><base64>${data.toString('base64')}</base64></PFX></SMIMESet>`;
    expectError(await client.request(add(good, 'wrong')), 'wrong PFX password');
    expectError(await client.request(add(heavy), 5000), /too many key derivation rounds/);
    expectError(await client.request(add(Buffer.from('this is not PKCS#12 at all'))), /cannot be read/);
    expectError(await client.request(add(good.subarray(0, good.length >> 1))), /PFX/);
    expectError(await client.request(add(Buffer.alloc(9000, 0x30))), /too large \(at most 8192 bytes\)/);
    // A PFX that is a valid DER nesting bomb.
    const deep = Buffer.concat([Buffer.from('30'.repeat(1) + '82ffff', 'hex'), Buffer.from('3080'.repeat(2000), 'hex')]);
    expectError(await client.request(add(deep.subarray(0, 8000))), /PFX/);
    expectError(await client.request('<SMIMESet mode="add" password="p" filePassword="f"/>'), /PFX element/);
    expectOk(await client.request(add(good), 20_000));
    await assertServes(victim);
  });

  test('a locked or missing key and unknown recipients: every S/MIME request answered with a clear error', async () => {
    const { client, urlID } = await server.login(await server.newAccount('locked'), 'secret');
    expectError(await client.request('<SMIMEModifyPassword password="x"/>'), /locked/);
    expectError(await client.request('<SMIMESet mode="update"/>'), /locked/);
    expectError(await client.request('<messageAppend targetMailbox="INBOX"><EMail sign="yes"><MIME type="text" subtype="plain">x</MIME></EMail></messageAppend>'), /locked/);
    expectError(await client.request('<messageSubmit><EMail encrypt="yes"><To>nobody@nowhere.test</To><MIME type="text" subtype="plain">x</MIME></EMail></messageSubmit>'), /no S\/MIME certificate/);
    expectError(await client.request('<SMIMEUnlock password="x"/>'), /no S\/MIME key/);
    expectError(await client.request('<SMIMESet mode="delete" filePassword="f"><PFX><base64>AAAA</base64></PFX></SMIMESet>'), /PFX/);
    assert.equal((await httpRequest(server.ports.http, `/Session/${urlID}/CertAndKey.pfx?PFXPassword=x`)).status, 403);
    expectOk(await client.request('<SMIMESet mode="new" password="pw"/>', 20_000));
    expectError(await client.request(`<messageSubmit><EMail encrypt="yes"><To>${'a'.repeat(60)}@nowhere.test</To><MIME type="text" subtype="plain">x</MIME></EMail></messageSubmit>`), /no S\/MIME certificate/);
    await assertServes(victim);
  });

  test('hostile signed and encrypted mail: garbage signatures, garbage envelopes, many S/MIME parts; folderRead answers and the server goes on', async () => {
    const address = await server.newAccount('reader');
    const { client } = await server.login(address, 'secret');
    expectOk(await client.request('<SMIMESet mode="new" password="pw"/>', 20_000));
    expectOk(await client.request('<folderOpen folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>'));
    const signedPart = (i: number, signature: string): string =>
      `--s${i}\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n--s${i}\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n${signature}\r\n--s${i}--\r\n`;
    const garbageSignature = rfc822([['Subject', 'bad signature'], ['Content-Type', 'multipart/signed; protocol="application/pkcs7-signature"; boundary="s0"']], signedPart(0, Buffer.from('garbage').toString('base64')));
    const garbageEnvelope = rfc822([['Subject', 'bad envelope'], ['Content-Type', 'application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m'], ['Content-Transfer-Encoding', 'base64']], Buffer.alloc(5000, 0x42).toString('base64') + '\r\n');
    const many = rfc822(
      [['Subject', 'many'], ['Content-Type', 'multipart/mixed; boundary="m"']],
      Array.from({ length: 200 }, (_, i) => `--m\r\nContent-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="s${i}"\r\n\r\n${signedPart(i, 'MAA=')}`).join('') + '--m--\r\n',
    );
    const uids = await deliverRaw(server, address, 'INBOX', [garbageSignature, garbageEnvelope, many]);
    const first = await client.request(`<folderRead folder="INBOX" UID="${uids[0]}"/>`);
    expectOk(first);
    const top = first.messages[0]!.element('EMail')!.element('MIME')!;
    assert.equal(top.attrs.decryptionError, 'the signature data cannot be decoded');
    assert.equal(top.element('SMIMESignature')!.children.length, 0);
    const second = await client.request(`<folderRead folder="INBOX" UID="${uids[1]}"/>`);
    expectOk(second);
    assert.match(second.messages[0]!.element('EMail')!.element('MIME')!.attrs.decryptionError ?? '', /cannot be read/);
    const third = await client.request(`<folderRead folder="INBOX" UID="${uids[2]}"/>`, 60_000);
    expectOk(third);
    const parts = third.messages[0]!.element('EMail')!.element('MIME')!.elements('MIME');
    assert.equal(parts.length, 200);
    assert.equal(parts.filter((p) => p.element('SMIMESignature')).length, 16, 'only the first 16 S/MIME parts are examined');
    await assertServes(victim);
  });
});

describe('abuse: remote POP and IMAP accounts', () => {
  let server: TestServer;
  let victim: XimssClient;
  const config = { remoteMail: { allowPrivate: true, minIntervalSeconds: 1, defaultIntervalSeconds: 1, timeoutSeconds: 2, leaseSeconds: 10, maxBackoffSeconds: 2, maxMessageBytes: 64 * 1024 } };
  before(async () => ({ server, victim } = await startAttacked(config)));
  after(() => server.stop());

  async function allowedClient(target: TestServer, name: string): Promise<XimssClient> {
    const address = await target.newAccount(name);
    await target.services.accounts.setSettings((await target.services.accounts.find(address))!, { RPOPAllowed: 'Yes' });
    return (await target.login(address, 'secret')).client;
  }

  function record(element: string, name: string, entries: Record<string, string>): string {
    const keys = Object.entries(entries).map(([k, v]) => `<subKey key="${k}">${v}</subKey>`).join('');
    return `<${element} name="${name}">${keys}</${element}>`;
  }

  /** A POP3 server that misbehaves as `script` says once the client logged in. */
  async function hostilePop3(onCommand: (line: string, socket: net.Socket) => void, greeting = '+OK hostile\r\n'): Promise<{ port: number; close(): void }> {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.write(greeting);
      let buffered = '';
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        let end;
        while ((end = buffered.indexOf('\r\n')) >= 0) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          onCommand(line, socket);
        }
      });
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    return {
      port: (srv.address() as net.AddressInfo).port,
      close() {
        for (const s of sockets) s.destroy();
        srv.close();
      },
    };
  }

  test('oversized and malformed updates get clear errors; the server goes on', async () => {
    const client = await allowedClient(server, 'rpopflood');
    const base = { domain: 'pop.example.test', authName: 'u', password: 'p' };
    const many = Array.from({ length: 101 }, (_, i) => record('rpopRecord', `r${i}`, base)).join('');
    expectError(await client.request(`<rpopUpdate>${many}</rpopUpdate>`), 'at most 100 records per request');
    expectError(await client.request(`<rpopUpdate>${record('rpopRecord', 'a', { ...base, password: 'p'.repeat(100_000) })}</rpopUpdate>`), 'the password is longer than 256 characters');
    expectError(await client.request(`<rpopUpdate>${record('rpopRecord', 'a', { ...base, authName: 'u'.repeat(10_000) })}</rpopUpdate>`), 'the authName is longer than 256 characters');
    expectError(await client.request(`<rpopUpdate>${record('rpopRecord', 'a', { ...base, authName: 'u&#13;&#10;DELE 1' })}</rpopUpdate>`), 'the authName contains control characters');
    expectError(await client.request(`<rimapUpdate>${record('rimapRecord', 'a', { ...base, period: '9'.repeat(400) })}</rimapUpdate>`), /period value must be/);
    expectError(await client.request(`<rimapUpdate>${record('rimapRecord', 'a', { ...base, domain: 'a'.repeat(300) })}</rimapUpdate>`), /not a host name/);
    expectError(await client.request(`<rimapUpdate><rimapRecord name="a">${'<subKey key="x">'.repeat(50)}${'</subKey>'.repeat(50)}</rimapRecord></rimapUpdate>`), /must be a string/);
    // remoteMail.recordsPerAccount (10 by default) counts both kinds.
    for (let i = 0; i < 10; i++) expectOk(await client.request(`<${i % 2 ? 'rpop' : 'rimap'}Update>${record(`${i % 2 ? 'rpop' : 'rimap'}Record`, `n${i}`, base)}</${i % 2 ? 'rpop' : 'rimap'}Update>`));
    expectError(await client.request(`<rimapUpdate>${record('rimapRecord', 'eleventh', base)}</rimapUpdate>`), 'too many remote account records (at most 10 per account)');
    await assertServes(victim);
  });

  test('hostile POP3 servers (an endless greeting, an endless message): errors in the list, memory bounded, the server goes on', async () => {
    const endless = await hostilePop3(() => {}, 'x'.repeat(2 * 1024 * 1024));
    const flood = await hostilePop3((line, socket) => {
      const command = line.split(' ')[0]!.toUpperCase();
      if (command === 'UIDL') socket.write('+OK\r\n1 abc\r\n.\r\n');
      else if (command === 'LIST') socket.write('+OK\r\n1 100\r\n.\r\n');
      else if (command === 'RETR') {
        socket.write('+OK\r\n');
        const chunk = 'Subject: flood\r\n' + 'y'.repeat(1000) + '\r\n';
        for (let i = 0; i < 2000; i++) socket.write(chunk);
      } else socket.write('+OK\r\n');
    });
    // A message whose header lines are long and odd (a From of 60000 characters without an address).
    const odd = await hostilePop3((line, socket) => {
      const command = line.split(' ')[0]!.toUpperCase();
      if (command === 'UIDL') socket.write('+OK\r\n1 odd\r\n.\r\n');
      else if (command === 'LIST') socket.write('+OK\r\n1 60100\r\n.\r\n');
      else if (command === 'RETR') socket.write(`+OK\r\nFrom: <${'a'.repeat(60_000)}\r\nReturn-Path: ${'<'.repeat(900)}\r\nSubject: odd\r\n\r\nbody\r\n.\r\n`);
      else socket.write('+OK\r\n');
    });
    try {
      const client = await allowedClient(server, 'rpophostile');
      const rss = watchRss();
      expectOk(
        await client.request(
          `<rpopUpdate>${record('rpopRecord', 'endless', { domain: `127.0.0.1:${endless.port}`, authName: 'u', password: 'p' })}${record('rpopRecord', 'flood', { domain: `127.0.0.1:${flood.port}`, authName: 'u', password: 'p' })}</rpopUpdate>`,
        ),
      );
      const errors = await eventually(async () => {
        const list = (await client.request('<rpopList/>')).messages;
        const texts = Object.fromEntries(list.map((r) => [r.attrs.name, r.attrs.errorText]));
        return texts.endless !== undefined && texts.flood !== undefined && texts;
      }, 'both errors', 30_000);
      assert.equal(errors.endless, 'the server sent a line that is too long');
      assert.equal(errors.flood, `message 1 is larger than ${64 * 1024} bytes`);
      assertWithinBudget(rss.stop(), 64 * 1024 * 1024);
      await assertServes(victim);
      // The odd message is delivered (with the null reverse path), and the server answers meanwhile.
      const oddUser = await server.newAccount('rpopodd');
      await server.services.accounts.setSettings((await server.services.accounts.find(oddUser))!, { RPOPAllowed: 'Yes' });
      const oddClient = (await server.login(oddUser, 'secret')).client;
      expectOk(await oddClient.request(`<rpopUpdate>${record('rpopRecord', 'odd', { domain: `127.0.0.1:${odd.port}`, authName: 'u', password: 'p', leave: 'NO' })}</rpopUpdate>`));
      await eventually(async () => (await storedMessages(server, oddUser, 'INBOX')).length === 1, 'the odd message', 20_000);
      assert.match((await storedMessages(server, oddUser, 'INBOX'))[0]!.raw.toString('latin1'), /^Return-Path: <>\r\n/);
      await assertServes(victim);
    } finally {
      endless.close();
      flood.close();
      odd.close();
    }
  });

  test('without remoteMail.allowPrivate a record naming a loopback address is refused at poll time, and nothing connects there', async () => {
    const strict = await startTestServer({ remoteMail: { minIntervalSeconds: 1, defaultIntervalSeconds: 1, timeoutSeconds: 2, leaseSeconds: 10, maxBackoffSeconds: 2 } });
    let connections = 0;
    const listener = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    try {
      const client = await allowedClient(strict, 'rpopprivate');
      const port = (listener.address() as net.AddressInfo).port;
      expectOk(await client.request(`<rimapUpdate>${record('rimapRecord', 'inside', { domain: `127.0.0.1:${port}`, authName: 'u', password: 'p' })}</rimapUpdate>`));
      const error = await eventually(async () => (await client.request('<rimapList/>')).messages[0]?.attrs.errorText, 'the error', 20_000);
      assert.equal(error, '127.0.0.1 is a private or local address, which this server does not poll');
      assert.equal(connections, 0);
    } finally {
      listener.close();
      await strict.stop();
    }
  });
});
describe('abuse: second factors and application passwords', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => ({ server, victim } = await startAttacked({ limits: { loginFailuresPerAddress: 4 }, auth: { appPasswordsPerAccount: 3, appPasswordNameLength: 16 } })));
  after(() => server.stop());

  const body = (name: string, text: string): XmlElement => new XmlElement(name, {}, [text]);

  /** An account with TOTP on; its secret. */
  async function enrolled(address: string): Promise<string> {
    const { client } = await server.login(address, 'secret');
    const started = await client.request(new XmlElement('x2AuthStart', { password: 'secret' }, ['totp']));
    const secret = started.messages.find((m) => m.name === 'x2auth')!.attrs.secret!;
    const confirmed = await client.request(body('x2AuthComplete', new TOTP({ secret: Secret.fromBase32(secret) }).generate({ timestamp: Date.now() - 30_000 })));
    expectOk(confirmed, 'enrolment');
    client.close();
    return secret;
  }

  test('guessed codes count as failed logins: past the address budget even the right code is refused; oversized and malformed codes get clear errors', async () => {
    const address = await server.newAccount('guessed');
    const secret = await enrolled(address);
    const attacker = await connectFrom(server.ports.ximss, '127.0.0.61');
    expectOk(await attacker.request(new XmlElement('login', { authData: address, password: 'secret', x2auth: '1' })), 'the password step');
    expectError(await attacker.request(body('x2AuthStart', 'x'.repeat(100_000))), `unknown two-factor method ${'x'.repeat(32)}… (offered: totp, recovery)`);
    expectOk(await attacker.request(body('x2AuthStart', 'totp')));
    expectError(await attacker.request(body('x2AuthComplete', '1'.repeat(10_000))), 'the one-time code is too long');
    expectError(await attacker.request(body('x2AuthComplete', '')), /code \(the body of x2AuthComplete\) is missing/);
    const near = new Set([-2, -1, 0, 1, 2].map((o) => new TOTP({ secret: Secret.fromBase32(secret) }).generate({ timestamp: Date.now() + o * 30_000 })));
    const guesses = ['000000', '111111', '222222', '333333', '444444', '555555', '666666', '777777'].filter((g) => !near.has(g)).slice(0, 4);
    assert.equal(guesses.length, 4);
    const answers: string[] = [];
    // Two wrong codes in this waiting session, two in the next (a third would end it).
    for (const guess of guesses.slice(0, 2)) answers.push((await attacker.request(body('x2AuthComplete', guess), 30_000)).response.attrs.errorText ?? '');
    attacker.close();
    const again = await connectFrom(server.ports.ximss, '127.0.0.61');
    expectOk(await again.request(new XmlElement('login', { authData: address, password: 'secret', x2auth: '1' })), 'the password step again');
    expectOk(await again.request(body('x2AuthStart', 'totp')));
    for (const guess of guesses.slice(2)) answers.push((await again.request(body('x2AuthComplete', guess), 30_000)).response.attrs.errorText ?? '');
    assert.ok(answers.every((a) => a === 'incorrect or already used one-time code'), answers.join(' | '));
    const right = new TOTP({ secret: Secret.fromBase32(secret) }).generate();
    expectError(await again.request(body('x2AuthComplete', right), 30_000), /too many failed login/);
    again.close();
    await assertServes(victim);
  });

  test('oversized or control-character names, too many application passwords: clear errors; replacing one still works', async () => {
    const { client } = await server.login(await server.newAccount('apps'), 'secret');
    const add = (name: string, password = 'app-password-1') => client.request(new XmlElement('passwordModify', { oldPassword: 'secret', name, newPassword: password }));
    expectError(await add('n'.repeat(17)), 'the application password name is too long (at most 16 characters)');
    expectError(await add('n'.repeat(1000)), 'the application password name is too long (at most 16 characters)');
    expectError(await add('bad\u007fname'), 'the application password name has control characters');
    expectError(await add('   '), 'the application password name is empty');
    expectError(await add('long', 'p'.repeat(5000)), 'the password is too long');
    expectError(await client.request(new XmlElement('passwordModify', { oldPassword: 'secret', name: 'one', newPassword: 'app-password-1', remove: 'maybe' })), 'remove must be yes or no');
    for (const name of ['one', 'two', 'three']) expectOk(await add(name), name);
    expectError(await add('four'), 'too many application passwords (at most 3)');
    expectOk(await add('two', 'app-password-2'), 'replacing one of the three');
    const listed = await client.request('<listSpecPasswords/>');
    assert.deepEqual(listed.messages.map((m) => m.attrs.name), ['one', 'three', 'two']);
    await assertServes(victim);
  });
});

describe('abuse: S/MIME floods (issue 17)', () => {
  let server: TestServer;
  let victim: XimssClient;
  before(async () => {
    ({ server, victim } = await startAttacked({ smime: { maxUnlockFailures: 3, passwordWorkers: 1, pfxExportsPerHour: 2 } }));
  });
  after(async () => {
    await server.stop();
  });

  test('concurrent wrong S/MIME passwords from several sessions: at most the limit is checked, the rest refused; PKCS#12 imports and exports flooded get clear refusals; others are served', async () => {
    const address = await server.newAccount('flooded');
    const sessions = await Promise.all([1, 2, 3].map(() => server.login(address, 'secret')));
    const first = sessions[0]!;
    expectOk(await first.client.request('<SMIMESet mode="new" password="right"/>', 20_000));
    const guesses = await Promise.all(Array.from({ length: 15 }, (_, i) => sessions[i % 3]!.client.request(`<SMIMEUnlock password="g${i}"/>`, 30_000)));
    const texts = guesses.map((g) => g.response.attrs.errorText ?? '');
    assert.ok(texts.every((t) => t === 'wrong S/MIME password' || t === 'too many wrong S/MIME passwords; try again later'), JSON.stringify(texts));
    assert.ok(texts.filter((t) => t === 'wrong S/MIME password').length <= 3, JSON.stringify(texts));
    // PKCS#12 imports by an account without a key (each parsed, in turns, or refused as busy), and
    // exports (the key is unlocked in the first session).
    const importer = (await server.login(await server.newAccount('importer'), 'secret')).client;
    const garbage = Buffer.alloc(4000, 0x30).toString('base64');
    const imports = await Promise.all(Array.from({ length: 20 }, () => importer.request(`<SMIMESet mode="add" password="p" filePassword="f"><PFX><base64>${garbage}</base64></PFX></SMIMESet>`, 30_000)));
    for (const reply of imports) assert.match(reply.response.attrs.errorText ?? '', /PFX data cannot be read|busy with S\/MIME operations/);
    const exports = await Promise.all(Array.from({ length: 20 }, () => httpRequest(server.ports.http, `/Session/${first.urlID}/CertAndKey.pfx?PFXPassword=x`)));
    const statuses = exports.map((e) => e.status);
    assert.ok(statuses.every((s) => s === 200 || s === 429 || s === 503), JSON.stringify(statuses));
    assert.ok(statuses.filter((s) => s === 200).length <= 2, JSON.stringify(statuses));
    await assertServes(victim);
  });
});

describe('abuse: second-factor guessing from many addresses, and waiting sessions', () => {
  let server: TestServer;
  let victim: XimssClient;
  const PENDING_CAP = 2;
  before(
    async () =>
      ({ server, victim } = await startAttacked({
        limits: { loginFailuresPerAddress: 50, loginFailuresPerAccount: 1000, sessionsPerAccount: 2 },
        auth: { secondFactorFailures: 4, secondFactorWindowSeconds: 900, pendingSessionsPerAccount: PENDING_CAP },
      })),
  );
  after(() => server.stop());

  const body = (name: string, text: string): XmlElement => new XmlElement(name, {}, [text]);
  const totpAt = (secret: string, offsetSteps: number): string =>
    new TOTP({ secret: Secret.fromBase32(secret) }).generate({ timestamp: Date.now() + offsetSteps * 30_000 });
  /** `count` codes none of which is right near now (the server takes one step either way; two kept clear). */
  const wrongCodes = (secret: string, count: number): string[] => {
    const near = new Set([-2, -1, 0, 1, 2].map((o) => totpAt(secret, o)));
    const codes: string[] = [];
    for (let n = 1; codes.length < count; n++) {
      const candidate = String((n * 104_729) % 1_000_000).padStart(6, '0');
      if (!near.has(candidate)) codes.push(candidate);
    }
    return codes;
  };

  async function enrolled(address: string): Promise<string> {
    const { client } = await server.login(address, 'secret');
    const secret = (await client.request(new XmlElement('x2AuthStart', { password: 'secret' }, ['totp']))).messages.find((m) => m.name === 'x2auth')!.attrs.secret!;
    expectOk(await client.request(body('x2AuthComplete', totpAt(secret, -1))), 'enrolment');
    client.close();
    return secret;
  }

  async function passwordStep(address: string, from: string): Promise<XimssClient> {
    const client = await connectFrom(server.ports.ximss, from);
    expectOk(await client.request(new XmlElement('login', { authData: address, password: 'secret', x2auth: '1' })), `the password step from ${from}`);
    expectOk(await client.request(body('x2AuthStart', 'totp')));
    return client;
  }

  test('wrong codes from many addresses use up the account budget: then even the right code is refused, from anywhere; a waiting session ends after 3 wrong codes', async () => {
    const address = await server.newAccount('spread');
    const secret = await enrolled(address);
    const wrong = wrongCodes(secret, 5);
    // Two addresses, each past the password step, two wrong codes each: the account's 4.
    for (const [i, from] of ['127.0.0.81', '127.0.0.82'].entries()) {
      const attacker = await passwordStep(address, from);
      for (const guess of wrong.slice(2 * i, 2 * i + 2)) expectError(await attacker.request(body('x2AuthComplete', guess), 30_000), 'incorrect or already used one-time code');
      attacker.close();
    }
    // A fresh address with the right code: refused, not only slowed down.
    const late = await passwordStep(address, '127.0.0.83');
    expectError(await late.request(body('x2AuthComplete', totpAt(secret, 0)), 30_000), 'too many wrong second factors on this account; try again later');
    expectError(await late.request('<noop/>'), /two-factor authentication is not complete/);
    late.close();
    // Nothing of these password steps was recorded as a login.
    const account = (await server.services.accounts.find(address))!;
    assert.ok(!['127.0.0.81', '127.0.0.82', '127.0.0.83'].includes(account.prevLogin?.address ?? ''), JSON.stringify(account.prevLogin));
    await assertServes(victim);
  });

  test('sessions waiting for their second factor have a cap of their own (the oldest goes) and do not fill sessionsPerAccount', async () => {
    const address = await server.newAccount('crowded');
    const secret = await enrolled(address);
    const accountId = (await server.services.accounts.find(address))!.id;
    // The owner's complete session: 1 of the 2 sessionsPerAccount.
    const owner = await passwordStep(address, '127.0.0.1');
    expectOk(await owner.request(body('x2AuthComplete', totpAt(secret, 0))), 'the owner logs in');
    // A password-only attacker opens more waiting sessions than the cap.
    const waiting: XimssClient[] = [];
    for (const from of ['127.0.0.91', '127.0.0.92', '127.0.0.93', '127.0.0.94']) waiting.push(await passwordStep(address, from));
    const pending = () => server.services.sessions.forAccount(accountId).filter((s) => s.secondFactorPending).length;
    await eventually(() => pending() === PENDING_CAP || undefined, `at most ${PENDING_CAP} waiting sessions`);
    // The newest ones are kept: the last can still complete its login (it is the owner's, say).
    const newest = server.services.sessions.forAccount(accountId).filter((s) => s.secondFactorPending).map((s) => s.remoteAddress);
    assert.deepEqual(newest.sort(), ['127.0.0.93', '127.0.0.94']);
    // The owner still logs in (the waiting sessions take none of sessionsPerAccount), and is
    // still served.
    const second = await passwordStep(address, '127.0.0.1');
    expectOk(await second.request(body('x2AuthComplete', totpAt(secret, 1))), 'the owner logs in again');
    expectOk(await owner.request('<noop/>'));
    for (const client of [...waiting, owner, second]) client.close();
    await assertServes(victim);
  });

  test('a waiting session is ended at its third wrong code', async () => {
    const address = await server.newAccount('thrice');
    const secret = await enrolled(address);
    const attacker = await passwordStep(address, '127.0.0.84');
    const wrong = wrongCodes(secret, 3);
    expectError(await attacker.request(body('x2AuthComplete', wrong[0]!), 30_000), 'incorrect or already used one-time code');
    expectError(await attacker.request(body('x2AuthComplete', wrong[1]!), 30_000), 'incorrect or already used one-time code');
    expectError(await attacker.request(body('x2AuthComplete', wrong[2]!), 30_000), 'incorrect or already used one-time code');
    await eventually(async () => server.services.sessions.forAccount((await server.services.accounts.find(address))!.id).length === 0 || undefined, 'the waiting session ended');
    attacker.close();
    await assertServes(victim);
  });
});
