/**
 * SMTP receiving on the wire: Python's smtplib (a real, independent SMTP client) talks to the
 * listener over loopback; what arrived is read back over XIMSS (folderOpen, folderRead) or
 * in-process. Covers recipients (local, unknown, relaying), AUTH, STARTTLS, SIZE, PIPELINING,
 * 8BITMIME, storage limits, shutdown, failing deliveries, a burst over concurrent connections
 * and a SIGKILL in the middle of one.
 */
import assert from 'node:assert/strict';
import { silentLogger } from '../src/log.js';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { defaultConfig, mergeConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';
import { Flag } from '../src/services/mail/flags.js';
import { SmtpListener, isLoopback } from '../src/transports/smtp/inbound.js';
import { LocalDelivery, type DeliveryEnvelope, type DeliveryOutcome } from '../src/transports/smtp/local-delivery.js';
import { XmlElement } from '../src/xml/element.js';
import { b64, run, sendmail, smtpSession, smtpSteps, type SmtpStep, type SmtpStepResult } from './fixtures/smtp-client.js';
import { authPlain, SmtpWire } from './fixtures/smtp-wire.js';
import { browseAll, capturingLogger, connectPlain, eventually, expectOk, freePort, loggedInClient, rfc822, startTestServer, storedMessages, type TestServer } from './helpers.js';

const MAX_MESSAGE_BYTES = 100_000;
const PASSWORD = 'smtp-secret';
const DOMAIN = 'example.test';

let server: TestServer;
let smtpPort: number;
/** Makes Message-IDs and aliases unique. */
let counter = 0;

before(async () => {
  // Mail for other domains goes to a relay that refuses connections (nothing listens on
  // port 1): it stays queued; test/queue.test.ts covers delivery to a real relay.
  server = await startTestServer({
    ports: { smtp: await freePort() },
    // The AUTH burst opens 100 connections from one address: the login budget is under test, not the connection limit.
    limits: { maxMessageBytes: MAX_MESSAGE_BYTES, connectionsPerAddress: 200 },
    outbound: { relay: '127.0.0.1:1' },
  });
  assert.ok(server.ports.smtp, 'the SMTP listener is on');
  smtpPort = server.ports.smtp;
});

after(() => server.stop());

/** A fresh local account. */
function newAccount(name = 'user'): Promise<string> {
  return server.newAccount(name, { password: PASSWORD });
}

// ---------------------------------------------------------------------------------------
// The SMTP client (test/fixtures/smtp-client.ts), by default on the server's SMTP port.

function smtp(steps: readonly SmtpStep[], port = smtpPort, host = '127.0.0.1'): Promise<SmtpStepResult[]> {
  return smtpSession(port, steps, host);
}

/** An RFC 5322 message (CRLF line ends). */
function message(options: { from?: string; to: string; subject?: string; messageId: string; body?: string; extra?: [string, string][] }): Buffer {
  return rfc822(
    [
      ['From', options.from ?? 'Sender <sender@remote.example>'],
      ['To', options.to],
      ['Subject', options.subject ?? 'Test'],
      ['Message-ID', `<${options.messageId}>`],
      ['Date', 'Sat, 21 Nov 2026 12:00:00 +0000'],
      ...(options.extra ?? []),
    ],
    options.body ?? 'Hello.\n',
  );
}

function uniqueId(tag: string): string {
  return `${tag}.${process.pid}.${++counter}@test.example`;
}

/** EHLO, STARTTLS and a TLS handshake by hand; resolves with the certificate's subject CN. */
async function startTls(port: number, servername: string | undefined): Promise<{ subject: string | undefined }> {
  const socket = await connectPlain(port);
  let buffer = '';
  const waitFor = (pattern: RegExp): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(buffer)) {
          socket.off('data', onData);
          resolve();
        }
      };
      const onData = (chunk: Buffer): void => {
        buffer += chunk.toString('latin1');
        check();
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error(`closed: ${buffer}`)));
      check();
    });
  await waitFor(/^220 .*\r\n/m);
  socket.write('EHLO client.example\r\n');
  await waitFor(/^250 .*\r\n/m);
  buffer = '';
  socket.write('STARTTLS\r\n');
  await waitFor(/^220 .*\r\n/m);
  socket.removeAllListeners('close');
  const secure = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ socket, servername, rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
  });
  const cn = secure.getPeerCertificate().subject?.CN;
  secure.destroy();
  return { subject: Array.isArray(cn) ? cn[0] : cn };
}

// ---------------------------------------------------------------------------------------
// Reading mailboxes back

/** The stored messages of a mailbox, in-process: UID and raw bytes. */
function stored(address: string, mailbox = 'INBOX', target: RunningServer = server): Promise<{ uid: number; raw: Buffer }[]> {
  return storedMessages(target, address, mailbox);
}

function messageIdOf(raw: Buffer): string | undefined {
  return /^Message-ID:\s*<([^>]*)>/im.exec(raw.toString('latin1'))?.[1];
}

async function withMessageId(address: string, id: string): Promise<{ uid: number; raw: Buffer }[]> {
  return (await stored(address)).filter((m) => messageIdOf(m.raw) === id);
}

/** Logs in over XIMSS, opens INBOX and reads every message (folderRead), in UID order. */
async function readInboxOverXimss(address: string): Promise<XmlElement[]> {
  const { client } = await server.login(address, PASSWORD);
  expectOk(await client.request(new XmlElement('folderOpen', { folder: 'IN', mailbox: 'INBOX' }, [new XmlElement('field', {}, ['UID'])])), 'folderOpen');
  const rows = await browseAll(client, 'IN');
  const read: XmlElement[] = [];
  for (const row of [...rows].sort((a, b) => a.uid - b.uid)) {
    const reply = expectOk(await client.request(new XmlElement('folderRead', { folder: 'IN', UID: row.uid })), 'folderRead');
    assert.equal(reply.messages[0]?.name, 'folderMessage');
    read.push(reply.messages[0]!);
  }
  client.close();
  return read;
}

function headerText(folderMessage: XmlElement, name: string): string[] {
  return folderMessage.element('EMail')!.elements(name).map((e) => e.text());
}

function bodyText(folderMessage: XmlElement): string {
  return folderMessage.element('EMail')!.element('MIME')!.text();
}

const RECEIVED = (helo: string, protocol: string, recipient: string): RegExp =>
  new RegExp(
    `^from ${helo.replace(/\./g, '\\.')} \\(\\[127\\.0\\.0\\.1\\]\\)\\s+by example\\.test with ${protocol} id \\S+\\s+` +
      `for <${recipient.replace(/\./g, '\\.')}>; \\w{3}, \\d{2} \\w{3} \\d{4} \\d{2}:\\d{2}:\\d{2} [+-]\\d{4}$`,
  );

// ---------------------------------------------------------------------------------------

describe('SMTP receiving', () => {
  test('greeting and EHLO: the default domain, ESMTP extensions, SIZE = maxMessageBytes', async () => {
    const [greeting, ehlo] = await smtpSteps([{ op: 'connect' }, { op: 'ehlo' }], smtpPort);
    assert.equal(greeting!.code, 220);
    assert.match(greeting!.text!, /^example\.test ESMTP/);
    assert.equal(ehlo!.code, 250);
    const features = ehlo!.features!;
    for (const name of ['pipelining', '8bitmime', 'enhancedstatuscodes', 'starttls']) assert.ok(name in features, `${name} advertised: ${JSON.stringify(features)}`);
    assert.equal(features.size, String(MAX_MESSAGE_BYTES));
    assert.deepEqual(features.auth!.trim().split(' ').sort(), ['LOGIN', 'PLAIN'], 'AUTH on loopback without TLS');
    assert.ok(!('smtputf8' in features), 'SMTPUTF8 is not claimed');
  });

  test('one local recipient: in INBOX (Recent) with Return-Path and Received, read over XIMSS', async () => {
    const alice = await newAccount('alice');
    const id = uniqueId('one');
    const [sent] = await smtp([{ op: 'ehlo', name: 'client.example' }, sendmail('sender@remote.example', [alice], message({ to: alice, messageId: id, body: 'First line.\nSecond line.\n' }))]).then((r) => r.slice(1));
    assert.deepEqual(sent, { code: 250, refused: {} });

    const [copy] = await stored(alice);
    const account = (await server.services.accounts.find(alice))!;
    const meta = await server.services.mail.getMessage(await server.services.mail.access(account, 'INBOX', 'r'), copy!.uid);
    assert.ok(meta && meta.flags & Flag.Recent, 'delivered as Recent');
    assert.match(copy!.raw.toString('latin1'), /^Return-Path: <sender@remote\.example>\r\nReceived: from client\.example /, 'Return-Path first, then Received');

    const [read] = await readInboxOverXimss(alice);
    assert.ok(read);
    assert.deepEqual(headerText(read, 'Return-Path'), ['sender@remote.example']);
    const received = headerText(read, 'Received');
    assert.equal(received.length, 1);
    assert.match(received[0]!.replace(/\r?\n\t/g, ' '), RECEIVED('client.example', 'ESMTP', alice));
    assert.deepEqual(headerText(read, 'Message-ID'), [`<${id}>`]);
    assert.equal(bodyText(read), 'First line.\nSecond line.\n');
  });

  test('two local recipients: each gets one copy whose Received names that recipient', async () => {
    const bob = await newAccount('bob');
    const carol = await newAccount('carol');
    const id = uniqueId('two');
    const results = await smtp([sendmail('sender@remote.example', [bob, carol], message({ to: `${bob}, ${carol}`, messageId: id, body: 'For both.\n' })), { op: 'quit' }]);
    assert.deepEqual(results[0], { code: 250, refused: {} });
    for (const who of [bob, carol]) {
      const read = await readInboxOverXimss(who);
      assert.equal(read.length, 1, `${who} has one message`);
      assert.deepEqual(headerText(read[0]!, 'Return-Path'), ['sender@remote.example']);
      const received = headerText(read[0]!, 'Received');
      assert.equal(received.length, 1);
      assert.match(received[0]!.replace(/\r?\n\t/g, ' '), RECEIVED('[^ ]+', 'ESMTP', who));
      assert.equal(bodyText(read[0]!), 'For both.\n');
    }
  });

  test('unknown local recipient 550 5.1.1, non-local recipient without AUTH 550 5.7.1; the others still get it', async () => {
    const dan = await newAccount('dan');
    const id = uniqueId('mixed');
    const results = await smtp([
      { op: 'ehlo' },
      { op: 'mail', from: 'sender@remote.example' },
      { op: 'rcpt', to: `nobody-here@${DOMAIN}` },
      { op: 'rcpt', to: 'someone@elsewhere.example' },
      { op: 'rcpt', to: 'someone@[192.0.2.55]' },
      { op: 'rcpt', to: dan },
      { op: 'data', b64: b64(message({ to: dan, messageId: id })) },
    ]);
    const [, mail, unknown, relay, literal, good, data] = results;
    assert.equal(mail!.code, 250);
    assert.equal(unknown!.code, 550);
    assert.match(unknown!.text!, /^5\.1\.1 /);
    assert.equal(relay!.code, 550);
    assert.match(relay!.text!, /^5\.7\.1 /);
    assert.equal(literal!.code, 550);
    assert.match(literal!.text!, /^5\.7\.1 /);
    assert.equal(good!.code, 250);
    assert.equal(data!.code, 250, JSON.stringify(data));
    assert.equal((await withMessageId(dan, id)).length, 1);

    // Only refused recipients: smtplib gives up before DATA.
    const [refused] = await smtp([sendmail('sender@remote.example', ['x@elsewhere.example'], message({ to: 'x@elsewhere.example', messageId: uniqueId('relay') }))]);
    assert.equal(refused!.error, 'SMTPRecipientsRefused');
    assert.equal(refused!.refused!['x@elsewhere.example']![0], 550);
  });

  test('the bare postmaster (and postmaster of a local domain) reaches postmaster of the default domain', async () => {
    const postmaster = `postmaster@${DOMAIN}`;
    const before = (await stored(postmaster)).length;
    const id = uniqueId('pm');
    const [sent] = await smtp([sendmail('sender@remote.example', ['postmaster'], message({ to: 'postmaster', messageId: id }))]);
    assert.deepEqual(sent, { code: 250, refused: {} });
    await server.services.accounts.createDomain('other.test');
    const id2 = uniqueId('pm2');
    const [sent2] = await smtp([sendmail('sender@remote.example', ['Postmaster@other.test'], message({ to: 'postmaster@other.test', messageId: id2 }))]);
    assert.deepEqual(sent2, { code: 250, refused: {} });
    assert.equal((await stored(postmaster)).length, before + 2);
    assert.equal((await withMessageId(postmaster, id2)).length, 1);
    // The null reverse path (a bounce).
    const id3 = uniqueId('bounce');
    const [sent3] = await smtp([sendmail('', [postmaster], message({ from: 'MAILER-DAEMON@remote.example', to: postmaster, messageId: id3 }))]);
    assert.deepEqual(sent3, { code: 250, refused: {} });
    assert.match((await withMessageId(postmaster, id3))[0]!.raw.toString('latin1'), /^Return-Path: <>\r\nReceived: /);
  });

  test('authenticated submission to the bare postmaster and another domain: queued, and postmaster gets it', async () => {
    const hank = await newAccount('hank');
    const postmaster = `postmaster@${DOMAIN}`;
    const id = uniqueId('pmsub');
    const results = await smtp([
      { op: 'ehlo' },
      { op: 'auth', mechanism: 'PLAIN', user: hank, password: PASSWORD },
      { op: 'mail', from: hank },
      { op: 'rcpt', to: 'postmaster' },
      { op: 'rcpt', to: 'pal@elsewhere.example' },
      { op: 'data', b64: b64(message({ from: hank, to: 'postmaster', messageId: id })) },
    ]);
    assert.equal(results[5]!.code, 250, JSON.stringify(results[5]));
    await eventually(async () => (await withMessageId(postmaster, id)).length > 0, 'the queue to deliver to postmaster');
    assert.equal((await withMessageId(postmaster, id)).length, 1);
  });

  test('an account alias receives the account\'s mail (and logs in); an alias cannot be another account\'s name', async () => {
    const gina = await newAccount('gina');
    const account = (await server.services.accounts.find(gina))!;
    const alias = `g.alias${counter}`;
    await server.services.accounts.setAliases(account, [alias]);
    const id = uniqueId('alias');
    const [sent] = await smtp([sendmail('sender@remote.example', [`${alias}@${DOMAIN}`], message({ to: `${alias}@${DOMAIN}`, messageId: id }))]);
    assert.deepEqual(sent, { code: 250, refused: {} });
    assert.equal((await withMessageId(gina, id)).length, 1, 'delivered into the account behind the alias');
    const client = await loggedInClient(server.ports.ximss, `${alias}@${DOMAIN}`, PASSWORD);
    client.close();
    await assert.rejects(server.services.accounts.setAliases(account, [gina.slice(0, gina.indexOf('@'))]), /own name/);
    const other = await newAccount('gina2');
    await assert.rejects(server.services.accounts.setAliases(account, [other.slice(0, other.indexOf('@'))]), /is an account/);
    await assert.rejects(server.services.accounts.create({ address: `${alias}@${DOMAIN}`, password: PASSWORD }), /alias of another account/);
    const otherAccount = (await server.services.accounts.find(other))!;
    await assert.rejects(server.services.accounts.setAliases(otherAccount, [alias]), /already used/);
    await server.services.accounts.setAliases(account, []);
    const [gone] = await smtp([sendmail('sender@remote.example', [`${alias}@${DOMAIN}`], message({ to: `${alias}@${DOMAIN}`, messageId: `${id}.2` }))]);
    assert.equal(gone!.error, 'SMTPRecipientsRefused', 'a removed alias is unknown again');
    assert.equal(gone!.refused![`${alias}@${DOMAIN}`]![0], 550);
  });

  test('AUTH PLAIN and LOGIN for local accounts; relaying then accepted and the whole transaction queued', async () => {
    const erin = await newAccount('erin');
    const frank = await newAccount('frank');
    const id = uniqueId('auth');
    const results = await smtp([
      { op: 'ehlo' },
      { op: 'auth', mechanism: 'PLAIN', user: erin, password: PASSWORD },
      { op: 'mail', from: erin },
      { op: 'rcpt', to: 'friend@elsewhere.example' },
      { op: 'rcpt', to: frank },
      { op: 'data', b64: b64(message({ from: erin, to: 'friend@elsewhere.example', messageId: id })) },
      // Local delivery from an authenticated session: ESMTPA in Received.
      sendmail(erin, [frank], message({ from: erin, to: frank, messageId: `${id}.local` })),
    ]);
    const [, auth, mail, remote, local, data, localOnly] = results;
    assert.equal(auth!.code, 235);
    assert.equal(mail!.code, 250);
    assert.equal(remote!.code, 250, 'an authenticated session may relay');
    assert.equal(local!.code, 250);
    assert.equal(data!.code, 250, JSON.stringify(data));
    assert.match(data!.text!, /queued/i);
    // The queue delivers the local recipient; the remote one waits for the relay.
    await eventually(async () => (await withMessageId(frank, id)).length > 0, 'the queue to deliver to the local recipient');
    assert.equal((await withMessageId(frank, id)).length, 1, 'the local recipient got it through the queue');
    const queuedFor = async (address: string) => (await server.services.store.queue.list()).find((q) => q.recipients.some((r) => r.address === address));
    const attempted = async () => (await queuedFor('friend@elsewhere.example'))?.recipients.find((r) => r.address === 'friend@elsewhere.example')?.attempts;
    await eventually(attempted, 'an attempt for the remote recipient', 10_000);
    const queued = await queuedFor('friend@elsewhere.example');
    assert.ok(queued, 'the remote recipient is queued');
    assert.deepEqual(
      queued.recipients.map((r) => [r.address, r.state, r.status]),
      [
        [frank, 'delivered', '2.0.0'],
        ['friend@elsewhere.example', 'pending', '4.4.1'],
      ],
      'the local recipient is done; the remote one waits for the relay (connection refused: 4.4.1)',
    );
    assert.deepEqual(localOnly, { code: 250, refused: {} });
    const [copy] = await withMessageId(frank, `${id}.local`);
    assert.match(copy!.raw.toString('latin1'), / with ESMTPA id /);

    // AUTH LOGIN; a wrong password.
    const [, login] = await smtp([{ op: 'ehlo' }, { op: 'auth', mechanism: 'LOGIN', user: frank, password: PASSWORD }]);
    assert.equal(login!.code, 235);
    const [, bad, retry] = await smtp([
      { op: 'ehlo' },
      { op: 'auth', mechanism: 'PLAIN', user: erin, password: 'wrong' },
      { op: 'auth', mechanism: 'LOGIN', user: `nobody@${DOMAIN}`, password: 'wrong' },
    ]);
    assert.equal(bad!.code, 535);
    assert.match(bad!.text!, /^5\.7\.8 /);
    assert.equal(retry!.code, 535);
    // Unauthenticated after the failure: relaying is refused.
    const [, , , relay] = await smtp([
      { op: 'ehlo' },
      { op: 'auth', mechanism: 'PLAIN', user: erin, password: 'wrong' },
      { op: 'mail', from: erin },
      { op: 'rcpt', to: 'friend@elsewhere.example' },
    ]);
    assert.equal(relay!.code, 550);
  });

  test('SIZE: a declared size over the limit 552 5.3.4 at MAIL, an oversized DATA 552 5.3.4; nothing stored, the session goes on', async () => {
    const gina = await newAccount('gina');
    const big = message({ to: gina, messageId: uniqueId('big'), body: ('x'.repeat(99) + '\n').repeat(1200) });
    assert.ok(big.length > MAX_MESSAGE_BYTES);
    const smallId = uniqueId('small');
    const results = await smtp([
      { op: 'ehlo' },
      sendmail('sender@remote.example', [gina], big), // smtplib declares SIZE=
      { op: 'mail', from: 'sender@remote.example' }, // no SIZE: found at the end of DATA
      { op: 'rcpt', to: gina },
      { op: 'data', b64: b64(big) },
      sendmail('sender@remote.example', [gina], message({ to: gina, messageId: smallId })),
    ]);
    const [, declared, mail, rcpt, data, small] = results;
    assert.equal(declared!.error, 'SMTPSenderRefused');
    assert.equal(declared!.code, 552);
    assert.match(declared!.text!, /^5\.3\.4 /);
    assert.equal(mail!.code, 250);
    assert.equal(rcpt!.code, 250);
    assert.equal(data!.code, 552, JSON.stringify(data));
    assert.match(data!.text!, /^5\.3\.4 /);
    assert.deepEqual(small, { code: 250, refused: {} });
    const all = await stored(gina);
    assert.deepEqual(all.map((m) => messageIdOf(m.raw)), [smallId]);
  });

  test('PIPELINING: MAIL, several RCPT and DATA in one write', async () => {
    const hal = await newAccount('hal');
    const ivy = await newAccount('ivy');
    const id = uniqueId('pipe');
    const group = `MAIL FROM:<sender@remote.example>\r\nRCPT TO:<${hal}>\r\nRCPT TO:<nobody@${DOMAIN}>\r\nRCPT TO:<${ivy}>\r\nDATA\r\n`;
    const body = Buffer.concat([message({ to: `${hal}, ${ivy}`, messageId: id, body: '.leading dot\nend\n' }).toString().replace(/\r\n\./g, '\r\n..'), '.\r\n'].map((s) => Buffer.from(s)));
    const [, first, second] = await smtp([
      { op: 'ehlo' },
      { op: 'raw', b64: b64(group), replies: 5 },
      { op: 'raw', b64: b64(body), replies: 1 },
    ]);
    assert.deepEqual(first!.replies!.map((r) => r.code), [250, 250, 550, 250, 354]);
    assert.equal(second!.replies![0]!.code, 250, JSON.stringify(second));
    for (const who of [hal, ivy]) {
      const copies = await withMessageId(who, id);
      assert.equal(copies.length, 1);
      assert.match(copies[0]!.raw.toString(), /\r\n\r\n\.leading dot\r\nend\r\n$/, 'dot-unstuffed');
    }
  });

  test('8BITMIME: a UTF-8 body arrives byte for byte', async () => {
    const jo = await newAccount('jo');
    const text = 'Grüße aus Köln — 日本語のテキスト ✓\nZweite Zeile: ½ € ñ\n';
    const raw = message({
      to: jo,
      messageId: uniqueId('8bit'),
      subject: '8-bit',
      body: text,
      extra: [['MIME-Version', '1.0'], ['Content-Type', 'text/plain; charset=utf-8'], ['Content-Transfer-Encoding', '8bit']],
    });
    const [, sent] = await smtp([{ op: 'ehlo' }, sendmail('sender@remote.example', [jo], raw, ['BODY=8BITMIME'])]);
    assert.deepEqual(sent, { code: 250, refused: {} });
    const [copy] = await stored(jo);
    assert.ok(copy!.raw.subarray(copy!.raw.length - raw.length).equals(raw), 'the message bytes follow the added trace fields unchanged');
    const [read] = await readInboxOverXimss(jo);
    assert.equal(bodyText(read!), text);
  });

  test('storage limit: 452 4.2.2 at RCPT when full or the declared size does not fit, 552 5.2.2 at the end of DATA', async () => {
    const kim = await newAccount('kim');
    const lee = await newAccount('lee');
    const account = (await server.services.accounts.find(kim))!;
    await server.services.accounts.setSettings(account, { MaxAccountSize: '3000' });
    const big = message({ to: kim, messageId: uniqueId('q-big'), body: ('y'.repeat(79) + '\n').repeat(50) });
    assert.ok(big.length > 3000);
    const firstId = uniqueId('q-first');
    const results = await smtp([
      { op: 'ehlo' },
      sendmail('sender@remote.example', [kim], message({ to: kim, messageId: firstId })),
      // SIZE= declared by smtplib: refused at RCPT.
      sendmail('sender@remote.example', [kim], big),
      // No SIZE=: accepted at RCPT, refused at the end of DATA.
      { op: 'mail', from: 'sender@remote.example' },
      { op: 'rcpt', to: kim },
      { op: 'data', b64: b64(big) },
    ]);
    const [, first, declared, , rcpt, data] = results;
    assert.deepEqual(first, { code: 250, refused: {} });
    assert.equal(declared!.error, 'SMTPRecipientsRefused');
    assert.equal(declared!.refused![kim]![0], 452);
    assert.match(declared!.refused![kim]![1], /^4\.2\.2 /);
    assert.equal(rcpt!.code, 250);
    assert.equal(data!.code, 552, JSON.stringify(data));
    assert.match(data!.text!, /^5\.2\.2 /);
    assert.deepEqual((await stored(kim)).map((m) => messageIdOf(m.raw)), [firstId]);

    // Full already: 452 at RCPT; the other recipient of the same transaction gets the message.
    await server.services.accounts.setSettings(account, { MaxAccountSize: '100' });
    const id = uniqueId('q-full');
    const [, , full, other, sent] = await smtp([
      { op: 'ehlo' },
      { op: 'mail', from: 'sender@remote.example' },
      { op: 'rcpt', to: kim },
      { op: 'rcpt', to: lee },
      { op: 'data', b64: b64(message({ to: `${kim}, ${lee}`, messageId: id })) },
    ]);
    assert.equal(full!.code, 452);
    assert.match(full!.text!, /^4\.2\.2 /);
    assert.equal(other!.code, 250);
    assert.equal(sent!.code, 250);
    assert.equal((await withMessageId(lee, id)).length, 1);
    assert.equal((await withMessageId(kim, id)).length, 0);
    await server.services.accounts.setSettings(account, { MaxAccountSize: 'unlimited' });
  });

  test('STARTTLS presents the server certificate (with and without SNI); without a certificate it is neither offered nor accepted', async () => {
    for (const servername of [undefined, 'example.test', 'other.name']) {
      const { subject } = await startTls(smtpPort, servername);
      assert.equal(subject, DOMAIN, `certificate subject with SNI ${servername}`);
    }
    const listener = new SmtpListener({ ...server.services, tls: undefined });
    const port = await listener.start(0, '127.0.0.1');
    try {
      const [ehlo, starttls] = await smtp([{ op: 'ehlo' }, { op: 'starttls' }], port);
      assert.ok(!('starttls' in ehlo!.features!));
      assert.ok('auth' in ehlo!.features!, 'loopback: AUTH without TLS');
      assert.ok(starttls!.error, JSON.stringify(starttls));
      const raw = await smtp([{ op: 'raw', b64: b64('STARTTLS\r\n'), replies: 1 }], port);
      assert.ok(raw[0]!.replies![0]!.code >= 500, JSON.stringify(raw));
    } finally {
      await listener.close();
    }
  });

  test('STARTTLS; from a non-loopback address AUTH is offered only after it', async (t) => {
    const address = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !isLoopback(i.address))?.address;
    if (!address) {
      t.skip('no non-loopback IPv4 address on this machine');
      return;
    }
    const listener = new SmtpListener(server.services);
    const port = await listener.start(0, '0.0.0.0');
    try {
      const mia = await newAccount('mia');
      const id = uniqueId('tls');
      const [plain, early, tls, secure, auth, sent] = await smtp(
        [
          { op: 'ehlo' },
          { op: 'auth', mechanism: 'PLAIN', user: mia, password: PASSWORD },
          { op: 'starttls' },
          { op: 'ehlo' },
          { op: 'auth', mechanism: 'PLAIN', user: mia, password: PASSWORD },
          sendmail(mia, [mia], message({ from: mia, to: mia, messageId: id })),
        ],
        port,
        address,
      );
      assert.ok('starttls' in plain!.features!);
      assert.ok(!('auth' in plain!.features!), `no AUTH before TLS: ${JSON.stringify(plain!.features)}`);
      assert.ok(early!.code! >= 500, `AUTH before TLS refused: ${JSON.stringify(early)}`);
      assert.equal(tls!.code, 220, JSON.stringify([early, tls]));
      assert.ok('auth' in secure!.features! && !('starttls' in secure!.features!));
      assert.equal(auth!.code, 235);
      assert.deepEqual(sent, { code: 250, refused: {} });
      const [copy] = await withMessageId(mia, id);
      assert.match(copy!.raw.toString('latin1'), new RegExp(`Received: from client\\.example \\(\\[${address.replace(/\./g, '\\.')}\\]\\)\\r\\n\\tby example\\.test with ESMTPSA id `));
    } finally {
      await listener.close();
    }
  });

  test('a delivery that fails: 451 4.3.0, no further recipient gets the message (the earlier ones keep theirs)', async () => {
    const [a, b, c] = [await newAccount('fa'), await newAccount('fb'), await newAccount('fc')];
    const { log, events } = capturingLogger();
    class FailingDelivery extends LocalDelivery {
      override async deliver(raw: Buffer, envelope: DeliveryEnvelope): Promise<DeliveryOutcome> {
        if (envelope.recipient === b) throw new Error('store unavailable');
        return super.deliver(raw, envelope);
      }
    }
    const listener = new SmtpListener({ ...server.services, delivery: new FailingDelivery(server.services.delivery.deps) }, { log });
    const port = await listener.start(0, '127.0.0.1');
    try {
      const id = uniqueId('fail');
      const [sent] = await smtp([sendmail('sender@remote.example', [a, b, c], message({ to: `${a}, ${b}, ${c}`, messageId: id }))], port);
      assert.equal(sent!.error, 'SMTPDataError');
      assert.equal(sent!.code, 451);
      assert.match(sent!.text!, /^4\.3\.0 /);
      assert.equal((await withMessageId(a, id)).length, 1, 'the recipient before the failure has it');
      assert.equal((await withMessageId(b, id)).length, 0);
      assert.equal((await withMessageId(c, id)).length, 0, 'nothing delivered after the failure');
      const [failure] = events('smtp.delivery_failed');
      assert.equal(failure?.recipient, b);
      assert.equal(failure?.storedBefore, 1);
      assert.equal(failure?.copies, 3);
      assert.match(String((failure?.err as { message?: string } | undefined)?.message), /store unavailable/);
    } finally {
      await listener.close();
    }
  });

  test('close() waits for a delivery in flight: the client still gets its 250, later connections are refused', async () => {
    const nat = await newAccount('nat');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const started = new Promise<void>((resolve) => (entered = resolve));
    class SlowDelivery extends LocalDelivery {
      override async deliver(raw: Buffer, envelope: DeliveryEnvelope): Promise<DeliveryOutcome> {
        entered();
        await gate;
        return super.deliver(raw, envelope);
      }
    }
    const listener = new SmtpListener({ ...server.services, delivery: new SlowDelivery(server.services.delivery.deps) });
    const port = await listener.start(0, '127.0.0.1');
    const id = uniqueId('close');
    const sending = smtp([sendmail('sender@remote.example', [nat], message({ to: nat, messageId: id })), { op: 'quit' }], port);
    await started;
    let closed = false;
    const closing = listener.close().then(() => (closed = true));
    await sleep(300);
    assert.equal(closed, false, 'close() waits for the delivery');
    release();
    await closing;
    const [sent] = await sending;
    assert.deepEqual(sent, { code: 250, refused: {} });
    assert.equal((await withMessageId(nat, id)).length, 1);
    const [refused] = await smtpSteps([{ op: 'connect' }], port);
    assert.ok(refused!.error, `a connection after close(): ${JSON.stringify(refused)}`);
  });
});

// ---------------------------------------------------------------------------------------
// Bursts

/** Sends `perConnection` messages on each of `connections` concurrent SMTP sessions; prints `ACK <Message-ID>` per 250. */
const BURST = String.raw`
import smtplib, sys, threading
host, port, conns, per, rcpt, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
lock = threading.Lock()
def say(line):
    with lock:
        sys.stdout.write(line + '\n')
        sys.stdout.flush()
def worker(c):
    try:
        s = smtplib.SMTP(host, port, timeout=30)
        s.ehlo('burst.example')
    except Exception as e:
        say('ERR %d connect %r' % (c, e))
        return
    for i in range(per):
        mid = '%s-%d-%d@burst.example' % (tag, c, i)
        msg = ('From: burst@remote.example\r\nTo: %s\r\nSubject: burst %d/%d\r\nMessage-ID: <%s>\r\n\r\n' % (rcpt, c, i, mid)) + ('line %d of a burst message\r\n' % i) * 20
        try:
            s.sendmail('burst@remote.example', [rcpt], msg.encode())
        except Exception as e:
            say('ERR %d %d %r' % (c, i, e))
            return
        say('ACK ' + mid)
    try:
        s.quit()
    except Exception:
        pass
threads = [threading.Thread(target=worker, args=(c,)) for c in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
`;

function countById(messages: readonly { raw: Buffer }[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) {
    const id = messageIdOf(m.raw);
    if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe('SMTP abuse limits', () => {
  test('100 parallel AUTH from one address: at most loginFailuresPerAddress verified; the right password, sent last, is refused with 454 4.7.0', async () => {
    const user = await newAccount('authburst');
    const limit = server.config.limits.loginFailuresPerAddress;
    // Another loopback address than the other tests': its budget is this test's alone.
    const wires = await Promise.all(Array.from({ length: 100 }, () => SmtpWire.connect(smtpPort, '127.0.0.50')));
    await Promise.all(wires.map((w) => w.command('EHLO burst.example')));
    // Written in one go, before any answer can come back; unknown names but the last.
    wires.forEach((w, i) => w.write(i === 99 ? authPlain(user, PASSWORD) : authPlain(`nobody-${i}@${DOMAIN}`, 'wrong')));
    const replies = await Promise.all(wires.map((w) => w.next(30_000)));
    const verified = replies.filter((r) => r.code === 535).length;
    assert.ok(verified > 0 && verified <= limit, `${verified} attempts verified (535)`);
    assert.equal(replies.filter((r) => r.code === 454).length, 100 - verified, 'every other attempt refused unverified');
    assert.deepEqual(replies[99], { code: 454, text: '4.7.0 too many failed login attempts; try again later' });
    for (const w of wires) w.close();
  });

  test('30 unknown RCPTs on one connection: 550 up to smtpErrorsPerConnection, then 421 4.7.0 Too many errors and the connection is closed', async () => {
    const limit = server.config.limits.smtpErrorsPerConnection;
    const wire = await SmtpWire.connect(smtpPort);
    assert.equal((await wire.command('EHLO probe.example')).code, 250);
    assert.equal((await wire.command('MAIL FROM:<probe@remote.example>')).code, 250);
    // Pipelined, as a harvester would send them.
    wire.write(...Array.from({ length: 30 }, (_, i) => `RCPT TO:<nobody-${i}@${DOMAIN}>`));
    await wire.waitClosed();
    const replies = wire.replies.slice(3);
    assert.equal(replies.length, limit + 1, JSON.stringify(replies));
    for (const r of replies.slice(0, limit)) assert.match(`${r.code} ${r.text}`, /^550 5\.1\.1 /);
    assert.deepEqual(replies[limit], { code: 421, text: '4.7.0 Too many errors' });
  });

  test('every kind of error counts: relaying denied, failed AUTH, bad syntax', async () => {
    const limit = server.config.limits.smtpErrorsPerConnection;
    const wire = await SmtpWire.connect(smtpPort, '127.0.0.51');
    assert.equal((await wire.command('EHLO probe.example')).code, 250);
    assert.equal((await wire.command(authPlain(`nobody@${DOMAIN}`, 'wrong'))).code, 535);
    assert.equal((await wire.command('MAIL FROM:<probe@remote.example>')).code, 250);
    assert.equal((await wire.command('RCPT TO:<someone@elsewhere.example>')).code, 550);
    assert.equal((await wire.command('RCPT TO:<not an address>')).code, 501);
    wire.write(...Array.from({ length: limit }, (_, i) => `RCPT TO:<nobody-${i}@${DOMAIN}>`));
    await wire.waitClosed();
    const replies = wire.replies.slice(6);
    assert.equal(replies.length, limit - 3 + 1, 'three errors were made before');
    assert.deepEqual(replies[replies.length - 1], { code: 421, text: '4.7.0 Too many errors' });
  });
});

describe('SMTP bursts', () => {
  test('200 messages over 4 concurrent connections: every 250 is in the mailbox exactly once', async () => {
    const rcpt = await newAccount('burst');
    const tag = `b${process.pid}`;
    const { stdout } = await run('python3', ['-c', BURST, '127.0.0.1', String(smtpPort), '4', '50', rcpt, tag]);
    const acked = stdout.split('\n').filter((l) => l.startsWith('ACK ')).map((l) => l.slice(4));
    assert.equal(acked.length, 200, stdout.split('\n').filter((l) => l.startsWith('ERR')).join('\n'));
    const counts = countById(await stored(rcpt));
    for (const id of acked) assert.equal(counts.get(id), 1, `${id} stored once`);
    assert.equal([...counts.values()].reduce((a, b) => a + b, 0), 200);
  });

  test('SIGKILL during a burst: after a restart every 250-acknowledged message is in the mailbox exactly once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ximssd-smtp-crash-'));
    const rcpt = `crash@${DOMAIN}`;
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./fixtures/smtp-child.ts', import.meta.url)), dataDir, String(await freePort()), rcpt, PASSWORD], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let restarted: RunningServer | undefined;
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const m = /READY (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`the server exited (${code}) before it was ready`)));
      });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // The burst, killed from here once 60 messages have been acknowledged.
      const acked: string[] = [];
      const burst = spawn('python3', ['-c', BURST, '127.0.0.1', String(port), '4', '50', rcpt, `k${process.pid}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      let buffer = '';
      burst.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith('ACK ')) acked.push(line.slice(4));
          if (acked.length >= 60 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
        }
      });
      await new Promise<void>((resolve) => burst.once('exit', () => resolve()));
      await exited;
      assert.equal(child.signalCode, 'SIGKILL', 'the server was killed during the burst');
      assert.ok(acked.length >= 60 && acked.length < 200, `killed mid-burst (${acked.length} acknowledged)`);

      const config = mergeConfig(defaultConfig(), { dataDir, host: '127.0.0.1', defaultDomain: DOMAIN, ports: { ximss: 0, http: 0, smtp: 0, xmpp: 0, xmppS2s: 0, sip: 0 } }, 'restart');
      restarted = await startServer(config, { log: silentLogger });
      const counts = countById(await stored(rcpt, 'INBOX', restarted));
      for (const id of acked) assert.equal(counts.get(id), 1, `${id} acknowledged, so stored exactly once`);
      for (const [id, n] of counts) assert.equal(n, 1, `${id} stored at most once`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await restarted?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
