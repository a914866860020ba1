/**
 * Outbound mail end to end: XIMSS messageSubmit / messageRedirect / messageForward /
 * messageConfirm, authenticated SMTP submission, delivery reports and password recovery go
 * through the queue (src/transports/smtp/queue.ts) to a real SMTP server standing in for the
 * relay or an MX host (test/fixtures/smtp-sink.ts). Every check is on what crossed the wire
 * (the sink's record of MAIL FROM, RCPT and the data bytes) or what landed in a mailbox; the
 * queue listing (store.queue.list()) shows what is still waiting. Retries use 1 s intervals;
 * waits poll with a deadline.
 */
import assert from 'node:assert/strict';
import { silentLogger } from '../src/log.js';
import { rmSync } from 'node:fs';
import type { MxRecord } from 'node:dns';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startServer, type RunningServer } from '../src/server.js';
import { defaultConfig } from '../src/config.js';
import { RemoteDelivery } from '../src/transports/smtp/remote.js';
import { XmlElement } from '../src/xml/element.js';
import { sendmail, smtpSession } from './fixtures/smtp-client.js';
import { SmtpSink, type SinkTransaction } from './fixtures/smtp-sink.js';
import {
  XimssClient,
  deliverRaw,
  eventually,
  expectError,
  freePort,
  ok,
  rfc822,
  startTestServer,
  storedMessages,
  storedRaw,
  type TestServer,
} from './helpers.js';

const DOMAIN = 'example.test';
const PASSWORD = 'queue-secret';
const REMOTE = 'remote.example';
/** How long a wait for something that should happen soon may take. */
const WAIT_MS = 6000;

/** Makes remote addresses, Message-IDs and folder names unique. */
let counter = 0;

/** A unique remote address with a tag the main sink's policy reads (refuse-, defer-once-, defer-always-). */
function remote(tag: string): string {
  return `${tag}-${++counter}@${REMOTE}`;
}

/** The main sink's policy: by the local part's prefix. */
function policy(address: string, attempt: number): { code: number; text: string } | undefined {
  const local = address.slice(0, address.lastIndexOf('@')).toLowerCase();
  if (local.startsWith('refuse-')) return { code: 550, text: `5.1.1 <${address}>: no such mailbox here` };
  if (local.startsWith('defer-once-') && attempt === 1) return { code: 451, text: `4.2.0 <${address}>: greylisted, try again later` };
  if (local.startsWith('defer-always-')) return { code: 451, text: `4.3.0 <${address}>: local problem, try again later` };
  return undefined;
}

/** The main sink's end-of-DATA policy: by the first recipient's prefix. */
function dataPolicy(t: { recipients: string[]; attempt: number }): { code: number; text: string } | undefined {
  const first = t.recipients[0]?.toLowerCase() ?? '';
  if (first.startsWith('data-once-') && t.attempt === 1) return { code: 451, text: '4.3.0 Temporary failure after DATA, try again' };
  if (first.startsWith('data-refuse-')) return { code: 554, text: '5.6.0 Content refused by policy' };
  return undefined;
}

function newAccount(server: TestServer, name: string, realName?: string): Promise<string> {
  return server.newAccount(name, { password: PASSWORD, realName });
}

async function client(server: TestServer, address: string): Promise<XimssClient> {
  return (await server.login(address, PASSWORD)).client;
}

/** The stored messages of a mailbox, read in-process. */
function mailbox(server: RunningServer, address: string, name = 'INBOX'): Promise<{ uid: number; raw: Buffer }[]> {
  return storedMessages(server, address, name);
}

/** Waits until the mailbox holds at least `count` messages; returns them. */
async function waitMailbox(server: RunningServer, address: string, count = 1, name = 'INBOX'): Promise<{ uid: number; raw: Buffer }[]> {
  return eventually(async () => {
    const messages = await mailbox(server, address, name);
    return messages.length >= count ? messages : undefined;
  }, `${count} message(s) in ${address}'s ${name}`, WAIT_MS);
}

/** Queue entries that have one of these addresses as a recipient (the sender's reports included). */
async function queuedFor(server: RunningServer, addresses: readonly string[]) {
  const wanted = new Set(addresses.map((a) => a.toLowerCase()));
  return (await server.services.store.queue.list()).filter((q) => q.recipients.some((r) => wanted.has(r.address.toLowerCase())));
}

/** Waits until nothing for these addresses is queued (delivered or given up, reports delivered too). */
async function drained(server: RunningServer, addresses: readonly string[], timeoutMs = WAIT_MS): Promise<void> {
  await eventually(async () => (await queuedFor(server, addresses)).length === 0, `the queue to drain of ${addresses.join(', ')}`, timeoutMs);
}

// ---------------------------------------------------------------------------------------
// Reading messages (independently of the server's MIME code).

/** The header block (unfolded fields) and the body of a message. */
function split(raw: Buffer | string): { fields: [string, string][]; head: string; body: string } {
  const text = typeof raw === 'string' ? raw : raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end + 2);
  const body = end < 0 ? '' : text.slice(end + 4);
  const fields: [string, string][] = [];
  for (const line of head.split('\r\n')) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1]![1] += ' ' + line.trim();
    else {
      const colon = line.indexOf(':');
      fields.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
  }
  return { fields, head, body };
}

function field(raw: Buffer | string, name: string): string | undefined {
  return split(raw).fields.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}

function fieldNames(raw: Buffer | string): string[] {
  return split(raw).fields.map(([k]) => k.toLowerCase());
}

/** The parts of a multipart message: each one's header fields and body (latin1 text). */
function parts(raw: Buffer | string): { type: string; fields: [string, string][]; body: string }[] {
  const { body } = split(raw);
  const boundary = /boundary="?([^";\s]+)"?/i.exec(field(raw, 'Content-Type') ?? '')?.[1];
  assert.ok(boundary, 'a multipart boundary');
  const sections = body.split(`--${boundary}`);
  const out = [];
  for (const section of sections.slice(1)) {
    if (section.startsWith('--')) break;
    const s = split(section.replace(/^\r\n/, ''));
    out.push({ type: (s.fields.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? 'text/plain').split(';')[0]!.trim().toLowerCase(), fields: s.fields, body: s.body });
  }
  return out;
}

/** The field groups of a message/delivery-status or disposition-notification body. */
function reportGroups(body: string): Record<string, string>[] {
  return body
    .split(/\r\n\r\n/)
    .map((group) => group.trim())
    .filter((group) => group !== '')
    .map((group) => Object.fromEntries(split(group + '\r\n\r\n').fields.map(([k, v]) => [k.toLowerCase(), v])));
}

/** A delivery status notification: per-message fields, per-recipient groups, the parts. */
function dsn(raw: Buffer): { perMessage: Record<string, string>; recipients: Record<string, string>[]; parts: ReturnType<typeof parts> } {
  assert.match(field(raw, 'Content-Type') ?? '', /^multipart\/report;.*report-type=delivery-status/i, 'a multipart/report of type delivery-status');
  const all = parts(raw);
  const status = all.find((p) => p.type === 'message/delivery-status');
  assert.ok(status, 'a message/delivery-status part');
  const [perMessage, ...recipients] = reportGroups(status.body);
  return { perMessage: perMessage!, recipients, parts: all };
}

/** The one report in a mailbox for this recipient address (Final-Recipient). */
function reportsFor(messages: readonly { raw: Buffer }[], address: string): { raw: Buffer; group: Record<string, string> }[] {
  const out = [];
  for (const m of messages) {
    if (!/report-type=delivery-status/i.test(field(m.raw, 'Content-Type') ?? '')) continue;
    for (const group of dsn(m.raw).recipients) {
      if ((group['final-recipient'] ?? '').toLowerCase() === `rfc822; ${address.toLowerCase()}`) out.push({ raw: m.raw, group });
    }
  }
  return out;
}

function recipientsOf(t: SinkTransaction): string[] {
  return t.recipients.map((r) => r.address.toLowerCase()).sort();
}

/** The flags of a message, read over XIMSS (folderOpen with FLAGS, folderBrowse). */
async function flagsOf(c: XimssClient, mailboxName: string, uid: number): Promise<string[]> {
  const folder = `flags${++counter}`;
  await ok(c, `<folderOpen folder="${folder}" mailbox="${mailboxName}"><field>FLAGS</field></folderOpen>`);
  const reply = await ok(c, `<folderBrowse folder="${folder}"><UID>${uid}</UID></folderBrowse>`);
  await ok(c, `<folderClose folder="${folder}"/>`);
  const report = reply.messages.find((m) => m.name === 'folderReport' && m.attrs.UID === String(uid));
  assert.ok(report, `a folderReport for UID ${uid}`);
  return (report.element('FLAGS')?.text() ?? '').split(',').filter(Boolean);
}

/** Depth-first search of an XML tree. */
function findElement(root: XmlElement, predicate: (e: XmlElement) => boolean): XmlElement | undefined {
  for (const child of root.elements()) {
    if (predicate(child)) return child;
    const inner = findElement(child, predicate);
    if (inner) return inner;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// An SMTP submission (test/fixtures/smtp-client.ts): one session, optional AUTH PLAIN, DSN options.

interface SmtpJob {
  from: string;
  to: string[];
  raw: Buffer;
  user?: string;
  password?: string;
  mailOptions?: string[];
  rcptOptions?: string[];
}

async function smtpSend(port: number, job: SmtpJob): Promise<{ features: string[]; auth?: number; refused?: Record<string, [number, string]>; error?: string }> {
  const auth = job.user ? [{ op: 'auth', mechanism: 'PLAIN', user: job.user, password: job.password! } as const] : [];
  const results = await smtpSession(port, [{ op: 'ehlo' }, ...auth, sendmail(job.from, job.to, job.raw, job.mailOptions, job.rcptOptions)]);
  const [ehlo, sent] = [results[0]!, results.at(-1)!];
  return {
    features: Object.keys(ehlo.features ?? {}).sort(),
    auth: job.user ? results[1]!.code : undefined,
    refused: sent.refused,
    // The exception with what the server answered (the refused recipients and their replies).
    error: sent.error && `${sent.error}: ${JSON.stringify(sent.refused ?? [sent.code, sent.text])}`,
  };
}

// ---------------------------------------------------------------------------------------
// The main server: relay = the main sink; retries after 1 s, 2 s, 2 s...; lifetime 30 s.

let sink: SmtpSink;
let server: TestServer;
let smtpPort: number;
const extraServers: TestServer[] = [];

before(async () => {
  sink = await SmtpSink.start({ policy, dataPolicy });
  server = await startTestServer({
    ports: { smtp: await freePort() },
    outbound: { relay: sink.relay, firstRetrySeconds: 1, maxRetrySeconds: 2, lifetimeSeconds: 30 },
  });
  assert.ok(server.ports.smtp, 'the SMTP listener is on');
  smtpPort = server.ports.smtp;
});

after(async () => {
  for (const s of extraServers) await s.stop().catch(() => {});
  await server.stop();
  await sink.stop();
});

/** A message composed by messageSubmit (example 018's shape). */
function submitXml(options: {
  attrs?: string;
  from?: string;
  to?: string[];
  cc?: string[];
  bcc?: string[];
  envelope?: string[];
  subject?: string;
  body?: string;
}): string {
  // An entry is an address, or a whole element (`<To realName="...">addr</To>`).
  const list = (name: string, values: string[] | undefined) => (values ?? []).map((v) => (v.startsWith('<') ? v : `<${name}>${v}</${name}>`)).join('');
  return (
    `<messageSubmit ${options.attrs ?? ''}>` +
    list('Envelope-To', options.envelope) +
    '<EMail>' +
    (options.from ?? '') +
    `<Subject>${options.subject ?? "I'll be there!"}</Subject>` +
    list('To', options.to) +
    '<X-Mailer>SuperClient v7.77</X-Mailer>' +
    list('Cc', options.cc) +
    list('Bcc', options.bcc) +
    `<MIME type="text" subtype="plain">${options.body ?? 'Dear Susan,&#x0A;&#x0A;I will come to your place tomorrow, thank you for the invitation!&#x0A;Mary.&#x0A;'}</MIME>` +
    '</EMail></messageSubmit>'
  );
}

describe('messageSubmit', () => {
  test('To, Cc and Bcc to remote addresses: one transaction, no Bcc on the wire; the Seen copy keeps Bcc; NOTIFY passed on', async () => {
    const alice = await newAccount(server, 'alice', 'Alice Sender');
    const c = await client(server, alice);
    await ok(c, '<mailboxCreate mailbox="Sent Items"/>');
    const [to, cc, bcc] = [remote('to'), remote('cc'), remote('bcc')];
    await ok(
      c,
      submitXml({
        attrs: 'useDSN="yes" targetMailbox="Sent Items" flags="Seen"',
        from: '<From realName="Sender Name">fromName@domain</From>',
        to: [`<To realName="Recipient Name">${to}</To>`],
        cc: [cc],
        bcc: [bcc],
      }),
    );
    const t = await sink.waitTo(to);
    assert.equal(sink.to(to).length, 1, 'one transaction');
    assert.equal(sink.to(bcc).length, 1);
    assert.deepEqual(recipientsOf(t), [bcc, cc, to].sort(), 'To, Cc and Bcc in the one transaction');
    assert.equal(t.mailFrom, alice, 'MAIL FROM is the user');
    // The sink advertises DSN: useDSN's NOTIFY is passed on (and the sink reports success itself).
    for (const r of t.recipients) assert.deepEqual(r.notify, ['SUCCESS', 'FAILURE'], `NOTIFY of ${r.address}`);

    const names = fieldNames(t.data);
    assert.ok(!names.includes('bcc'), 'no Bcc on the wire');
    for (const name of ['message-id', 'date', 'mime-version', 'from', 'to', 'cc', 'subject', 'x-mailer']) assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
    assert.match(field(t.data, 'From')!, /"?Sender Name"? <fromName@domain>/);
    assert.match(field(t.data, 'Sender')!, new RegExp(`Alice Sender.*<${alice}>`), 'a From that is not the user gets Sender');
    assert.ok(!t.data.toString('latin1').includes(bcc), 'the Bcc address appears nowhere in the data');
    assert.match(t.data.toString('latin1'), /I will come to your place tomorrow/);

    // The stored copy: Seen, with Bcc, the same Message-ID.
    const [copy] = await waitMailbox(server, alice, 1, 'Sent Items');
    assert.equal(field(copy!.raw, 'Message-ID'), field(t.data, 'Message-ID'), 'the copy is the message sent');
    assert.match(field(copy!.raw, 'Bcc') ?? '', new RegExp(bcc.replace(/[.]/g, '\\.')), 'the copy keeps Bcc');
    assert.ok((await flagsOf(c, 'Sent Items', copy!.uid)).includes('Seen'), 'the copy has the Seen flag');

    // The relay took the DSN request over: no report from here.
    await drained(server, [to, cc, bcc, alice]);
    assert.deepEqual(await mailbox(server, alice), [], 'no report in the INBOX (the relay advertises DSN)');
  });

  test('Envelope-To (example 019, "a1@domain address") overrides To and Cc; the copy is stored Seen', async () => {
    const user = await newAccount(server, 'envelope');
    const c = await client(server, user);
    await ok(c, '<mailboxCreate mailbox="Sent Items"/>');
    const tag = ++counter;
    const [a1, a2] = [`a1-${tag}@domain`, `a2-${tag}@domain`];
    const [toName, ccName] = [`toName-${tag}@domain`, `ccName-${tag}@domain`];
    const request =
      '<messageSubmit id="A001" targetMailbox="Sent Items" flags="Seen" >\n' +
      `    <Envelope-To>${a1} address</Envelope-To>\n` +
      `    <Envelope-To>${a2} address</Envelope-To>\n` +
      '    <EMail>\n' +
      '      <From realName="Sender Name">fromName@domain</From>\n' +
      "      <Subject>I'll be there!</Subject>\n" +
      `      <To realName="Recipient Name">${toName}</To>\n` +
      '      <X-Mailer>SuperClient v7.77</X-Mailer>\n' +
      `      <Cc>${ccName}</Cc>\n` +
      '      <MIME type="text" subtype="plain">Dear Susan,&#x0A;&#x0A;I will come to your place tomorrow, thank you for the invitation!&#x0A;Mary.&#x0A;</MIME>\n' +
      '    </EMail>\n' +
      '  </messageSubmit>';
    const reply = await ok(c, request);
    assert.equal(reply.response.attrs.id, 'A001');
    const t = await sink.waitTo(a1);
    assert.deepEqual(recipientsOf(t), [a1, a2].map((a) => a.toLowerCase()).sort(), 'only the Envelope-To addresses');
    assert.equal(t.mailFrom, user);
    assert.match(field(t.data, 'To')!, new RegExp(toName), 'the To field is as composed');
    assert.match(field(t.data, 'Cc')!, new RegExp(ccName));
    await drained(server, [a1, a2, user]);
    assert.equal(sink.to(toName).length + sink.to(ccName).length, 0, 'To and Cc got nothing');
    const [copy] = await waitMailbox(server, user, 1, 'Sent Items');
    assert.ok((await flagsOf(c, 'Sent Items', copy!.uid)).includes('Seen'));
    assert.equal(field(copy!.raw, 'Message-ID'), field(t.data, 'Message-ID'));
  });

  test('one recipient refused 550, one 451 the first time, one good: a failure report for the 550 one only; the 451 one retried', async () => {
    const dave = await newAccount(server, 'dave');
    const c = await client(server, dave);
    const [good, refused, deferred] = [remote('good'), remote('refuse'), remote('defer-once')];
    await ok(c, submitXml({ to: [good, refused], cc: [deferred], subject: 'Mixed fortunes' }));

    // First attempt: good accepted, the others refused; the retry a second later takes the deferred one.
    const first = await sink.waitTo(good);
    assert.deepEqual(recipientsOf(first), [good], 'the first transaction carried only the accepted recipient');
    const retried = await sink.waitTo(deferred, WAIT_MS);
    assert.ok(retried.at - first.at >= 800, `retried after the back-off (${retried.at - first.at} ms)`);
    assert.deepEqual(recipientsOf(retried), [deferred], 'the retry is for the deferred recipient only');
    assert.deepEqual(
      sink.refused(deferred).map((r) => r.code),
      [451],
    );
    assert.deepEqual(
      sink.refused(refused).map((r) => r.code),
      [550],
      'the refused recipient is not tried again',
    );
    await drained(server, [good, refused, deferred, dave]);
    assert.equal(sink.to(good).length, 1, 'the good recipient got it once');
    assert.equal(sink.to(deferred).length, 1, 'the deferred recipient got it once');

    // The report: one, for the 550 recipient only.
    const inbox = await mailbox(server, dave);
    assert.equal(inbox.length, 1, 'one report in the INBOX');
    const raw = inbox[0]!.raw;
    const report = dsn(raw);
    assert.equal(report.recipients.length, 1, 'the report names one recipient');
    const group = report.recipients[0]!;
    assert.equal(group['final-recipient'], `rfc822; ${refused}`);
    assert.equal(group['action'], 'failed');
    assert.match(group['status']!, /^5\.\d+\.\d+$/);
    assert.equal(group['status'], '5.1.1', 'the enhanced code the sink gave');
    assert.equal(group['diagnostic-code'], `smtp; 550 5.1.1 <${refused}>: no such mailbox here`);
    assert.ok(report.perMessage['reporting-mta'], 'Reporting-MTA');
    assert.equal(field(raw, 'To'), `<${dave}>`);
    assert.match(field(raw, 'From')!, /MAILER-DAEMON@/i);
    // (The returned header names every recipient; the report's own parts do not name the deferred one.)
    const statusBody = report.parts.find((p) => p.type === 'message/delivery-status')!.body;
    assert.ok(!statusBody.includes(deferred) && !report.parts[0]!.body.includes(deferred), 'the deferred recipient is not reported');
    assert.ok(!statusBody.includes(good) && !report.parts[0]!.body.includes(good), 'the delivered recipient is not reported');
    const headers = report.parts.find((p) => p.type === 'text/rfc822-headers');
    assert.ok(headers, 'the original header as text/rfc822-headers');
    assert.equal(field(headers.body, 'Subject'), 'Mixed fortunes');
    assert.equal(field(headers.body, 'Message-ID'), field(first.data, 'Message-ID'), "the original's header");
    assert.ok(!headers.body.includes('I will come'), 'only the header (RET not FULL)');
    assert.equal(report.parts[0]!.type, 'text/plain', 'a human-readable first part');

    // Over XIMSS: folderRead shows the report fields (MIMEReport) and the header part.
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"><field>Subject</field></folderOpen>');
    const read = await ok(c, `<folderRead folder="INBOX" UID="${inbox[0]!.uid}"/>`);
    const message = read.messages.find((m) => m.name === 'folderMessage');
    assert.ok(message, 'folderMessage');
    const top = findElement(message, (e) => e.name === 'MIME' && e.attrs.type === 'multipart');
    assert.equal(top?.attrs.subtype, 'report');
    assert.equal(top?.attrs['Type-report-type'], 'delivery-status');
    const statusPart = findElement(message, (e) => e.name === 'MIME' && e.attrs.subtype === 'delivery-status');
    const xmlReport = statusPart?.element('MIMEReport');
    assert.ok(xmlReport, `a MIMEReport element: ${message.toString().slice(0, 2000)}`);
    assert.ok(xmlReport.element('Reporting-MTA'), 'per-message fields as elements');
    const perRecipient = xmlReport.elements('MIMEReport');
    assert.equal(perRecipient.length, 1);
    assert.equal(perRecipient[0]!.element('Final-Recipient')?.text(), `rfc822; ${refused}`);
    assert.equal(perRecipient[0]!.element('Action')?.text(), 'failed');
    assert.equal(perRecipient[0]!.element('Status')?.text(), '5.1.1');
    assert.match(perRecipient[0]!.element('Diagnostic-Code')?.text() ?? '', /no such mailbox here/);
    const headerPart = findElement(message, (e) => e.name === 'MIME' && e.attrs.subtype === 'rfc822-headers');
    assert.equal(headerPart?.element('EMail')?.element('Subject')?.text(), 'Mixed fortunes');
  });

  test('useDSN="yes" to a local account: a "delivered" report; the message arrives once', async () => {
    const sender = await newAccount(server, 'sender');
    const bob = await newAccount(server, 'bob');
    const c = await client(server, sender);
    await ok(c, submitXml({ attrs: 'useDSN="yes"', to: [bob], subject: 'For Bob' }));
    const [arrived] = await waitMailbox(server, bob);
    assert.equal(field(arrived!.raw, 'Subject'), 'For Bob');
    assert.match(field(arrived!.raw, 'Return-Path') ?? '', new RegExp(`<${sender}>`), 'Return-Path is the envelope sender');
    const [report] = await waitMailbox(server, sender);
    await drained(server, [bob, sender]);
    assert.equal((await mailbox(server, bob)).length, 1, 'delivered once');
    const groups = reportsFor([report!], bob);
    assert.equal(groups.length, 1, 'a report about bob');
    assert.equal(groups[0]!.group['action'], 'delivered');
    assert.match(groups[0]!.group['status']!, /^2\.\d+\.\d+$/);
    assert.equal((await mailbox(server, sender)).length, 1, 'one report');
    assert.equal(sink.to(bob).length, 0, 'nothing went to the relay');
  });

  test('to a local account without useDSN: it arrives in the INBOX once, no report', async () => {
    const sender = await newAccount(server, 'plain');
    const bob = await newAccount(server, 'bob');
    const c = await client(server, sender);
    await ok(c, submitXml({ to: [bob], subject: 'Just once' }));
    await waitMailbox(server, bob);
    await drained(server, [bob, sender]);
    await sleep(300);
    const inbox = await mailbox(server, bob);
    assert.equal(inbox.length, 1, 'exactly one copy');
    assert.equal(field(inbox[0]!.raw, 'Subject'), 'Just once');
    assert.ok(!fieldNames(inbox[0]!.raw).includes('bcc'));
    assert.match(field(inbox[0]!.raw, 'From') ?? '', new RegExp(`<?${sender}>?`), 'without a From element, the From is the user');
    assert.ok(!fieldNames(inbox[0]!.raw).includes('sender'), 'no Sender when the From is the user');
    assert.deepEqual(await mailbox(server, sender), [], 'no report without useDSN');
  });

  test('dataset="RepliedAddresses": the recipients are remembered (datasetList)', async () => {
    const user = await newAccount(server, 'remember');
    const c = await client(server, user);
    const [rita, sam] = [remote('rita'), remote('sam')];
    await ok(c, submitXml({ attrs: 'dataset="RepliedAddresses"', to: [`<To realName="Rita Remote">${rita}</To>`], cc: [sam] }));
    const list = await ok(c, '<datasetList dataset="RepliedAddresses"/>');
    const entries = list.messages.filter((m) => m.name === 'datasetData');
    const byEmail = new Map(entries.map((e) => [e.element('email')?.text(), e]));
    assert.deepEqual([...byEmail.keys()].sort(), [rita, sam].sort(), `entries: ${entries.map((e) => e.toString()).join(' ')}`);
    assert.equal(byEmail.get(rita)!.element('realName')?.text(), 'Rita Remote');
    await sink.waitTo(rita);
    await drained(server, [rita, sam, user]);
  });
});

describe('messageRedirect, messageForward, messageConfirm', () => {
  const ORIGINAL = rfc822(
    [
      ['From', '"Barbara Smith" <barbara@other.example>'],
      ['To', '"Sender Name" <frank@example.test>'],
      ['Subject', 'Sorry, I cannot make it :-('],
      ['X-Mailer', 'OtherClient v8.88'],
      ['X-Folded', 'first part\r\n\tsecond part'],
      ['Date', 'Wed, 21 Jun 2006 21:51:24 -0800'],
      ['Message-ID', '<zzzzzzzzz@other.server.dom>'],
      ['Content-Type', 'text/plain; charset="utf-8"'],
    ],
    'Mary,\n\nSorry, but I will be out of town tomorrow... Grüße!\n.a line starting with a dot\n..and two\n\nBarbara.\n',
  );

  test('messageRedirect (example 021): Resent- fields prepended, the rest byte-identical; the original gets Redirected', async () => {
    const frank = await newAccount(server, 'frank');
    const [uid] = await deliverRaw(server, frank, 'INBOX', [ORIGINAL]);
    const stored = (await storedRaw(server, frank, 'INBOX', uid!))!;
    const c = await client(server, frank);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"><field>FLAGS</field></folderOpen>');
    const [a1, a2] = [remote('a1'), remote('a2')];
    await ok(c, `<messageRedirect id="A001" folder="INBOX" UID="${uid}"><To realName="Recipient Name">${a1}</To><To realName="Recipient-2">${a2}</To></messageRedirect>`);
    const t = await sink.waitTo(a1);
    assert.deepEqual(recipientsOf(t), [a1, a2].sort());
    assert.equal(t.mailFrom, frank);
    assert.equal(t.mailParams.BODY, '8BITMIME', 'an 8-bit message goes with BODY=8BITMIME');
    assert.ok(t.data.subarray(t.data.length - stored.length).equals(stored), 'the original follows byte for byte');
    const prefix = t.data.subarray(0, t.data.length - stored.length).toString('latin1');
    const resent = split(prefix + '\r\n').fields;
    assert.deepEqual(resent.map(([k]) => k).sort(), ['Resent-Date', 'Resent-From', 'Resent-Message-ID', 'Resent-To'], `the prepended block: ${prefix}`);
    const get = (name: string) => resent.find(([k]) => k === name)![1];
    assert.match(get('Resent-From'), new RegExp(`<?${frank}>?`));
    assert.deepEqual(get('Resent-To').split(/\s*,\s*/).sort(), [a1, a2].sort());
    assert.match(get('Resent-Message-ID'), /^<[^<>@\s]+@[^<>\s]+>$/);
    assert.ok(!Number.isNaN(Date.parse(get('Resent-Date'))), `Resent-Date: ${get('Resent-Date')}`);
    assert.ok((await flagsOf(c, 'INBOX', uid!)).includes('Redirected'), 'the original is marked Redirected');
    await drained(server, [a1, a2, frank]);
  });

  test('messageRedirect mirror="yes": byte-identical, no Resent- fields', async () => {
    const frank = await newAccount(server, 'frank');
    const [uid] = await deliverRaw(server, frank, 'INBOX', [ORIGINAL]);
    const stored = (await storedRaw(server, frank, 'INBOX', uid!))!;
    const c = await client(server, frank);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"/>');
    const target = remote('mirror');
    await ok(c, `<messageRedirect folder="INBOX" UID="${uid}" mirror="yes"><To>${target}</To></messageRedirect>`);
    const t = await sink.waitTo(target);
    assert.ok(t.data.equals(stored), 'the stored message as it is');
    assert.ok(!/^Resent-/im.test(t.data.toString('latin1')));
    assert.equal(t.mailFrom, frank);
  });

  test('messageRedirect partID of a message/rfc822 part sends the enclosed message (not marked Redirected)', async () => {
    const frank = await newAccount(server, 'frank');
    const boundary = 'outer-boundary-42';
    const wrapper = Buffer.concat([
      Buffer.from(
        'From: Someone <someone@other.example>\r\nTo: frank@example.test\r\nSubject: Fwd: the enclosed one\r\n' +
          'Message-ID: <wrapper@other.example>\r\nDate: Wed, 21 Jun 2006 22:55:24 -0800\r\nMIME-Version: 1.0\r\n' +
          `Content-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n` +
          `--${boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\nSee below.\r\n\r\n` +
          `--${boundary}\r\nContent-Type: message/rfc822\r\n\r\n`,
      ),
      ORIGINAL,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const [uid] = await deliverRaw(server, frank, 'INBOX', [wrapper]);
    const c = await client(server, frank);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"/>');
    const read = await ok(c, `<folderRead folder="INBOX" UID="${uid}"/>`);
    const part = findElement(read.messages[0]!, (e) => e.name === 'MIME' && e.attrs.type === 'message' && e.attrs.subtype === 'rfc822');
    assert.ok(part?.attrs.partID, `the message/rfc822 part has a partID: ${read.messages[0]!.toString().slice(0, 1500)}`);
    const target = remote('part');
    await ok(c, `<messageRedirect folder="INBOX" UID="${uid}" partID="${part.attrs.partID}"><To>${target}</To></messageRedirect>`);
    const t = await sink.waitTo(target);
    const data = t.data.toString('latin1');
    const start = data.search(/^From: "Barbara Smith"/m);
    assert.ok(start > 0, `the enclosed message after the Resent- block: ${data.slice(0, 400)}`);
    assert.ok(data.slice(0, start).split('\r\n').filter(Boolean).every((line) => /^(Resent-[\w-]+:|\t| )/.test(line)), 'only Resent- fields before it');
    const enclosed = data.slice(start);
    const expected = ORIGINAL.toString('latin1');
    assert.ok(enclosed === expected || enclosed === expected + '\r\n', `the enclosed message byte for byte: ${JSON.stringify(enclosed.slice(-60))}`);
    assert.ok(!data.includes('See below.') && !data.includes(boundary), 'nothing of the wrapper');
    assert.ok(!(await flagsOf(c, 'INBOX', uid!)).includes('Redirected'), 'a part redirect does not mark the message by default');
  });

  test('messageForward: a new message carrying the original as message/rfc822', async () => {
    const frank = await newAccount(server, 'frank', 'Frank Forwarder');
    const [uid] = await deliverRaw(server, frank, 'INBOX', [ORIGINAL]);
    const stored = (await storedRaw(server, frank, 'INBOX', uid!))!;
    const c = await client(server, frank);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"/>');
    const target = remote('fwd');
    await ok(c, `<messageForward folder="INBOX" UID="${uid}"><To>${target}</To></messageForward>`);
    const t = await sink.waitTo(target);
    assert.equal(t.mailFrom, frank);
    assert.match(field(t.data, 'From')!, new RegExp(`Frank Forwarder.*<${frank}>`));
    assert.match(field(t.data, 'To')!, new RegExp(target));
    assert.equal(field(t.data, 'Subject'), 'Fwd: Sorry, I cannot make it :-(');
    assert.ok(field(t.data, 'Message-ID'), 'a new Message-ID');
    assert.notEqual(field(t.data, 'Message-ID'), '<zzzzzzzzz@other.server.dom>');
    assert.match(field(t.data, 'Content-Type')!, /^multipart\/mixed/);
    const enclosed = parts(t.data).find((p) => p.type === 'message/rfc822');
    assert.ok(enclosed, 'a message/rfc822 part');
    assert.ok(enclosed.body === stored.toString('latin1') || enclosed.body === stored.toString('latin1') + '\r\n', 'the original inside, byte for byte');
    assert.ok((await flagsOf(c, 'INBOX', uid!)).includes('Redirected'), 'the forwarded message is marked (markRedirected defaults to yes)');
  });

  test('messageConfirm: an MDN with the null sender; $MDNSent; a second one and one for a message without Disposition-Notification-To fail', async () => {
    const grace = await newAccount(server, 'grace');
    const receipts = remote('receipts');
    const asking = rfc822(
      [
        ['From', `Requester <${receipts}>`],
        ['To', grace],
        ['Subject', 'Please confirm'],
        ['Message-ID', '<confirm-me@other.example>'],
        ['Date', 'Wed, 21 Jun 2006 21:51:24 -0800'],
        ['Disposition-Notification-To', `Requester <${receipts}>`],
      ],
      'Did you read this?\n',
    );
    const plain = rfc822([['From', 'someone@other.example'], ['To', grace], ['Subject', 'No receipt wanted'], ['Message-ID', '<plain@other.example>']], 'Hi.\n');
    const [uid, plainUid] = await deliverRaw(server, grace, 'INBOX', [asking, plain]);
    const c = await client(server, grace);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"/>');
    await ok(c, `<messageConfirm folder="INBOX" UID="${uid}" type="manual"/>`);
    const t = await sink.waitTo(receipts);
    assert.equal(t.mailFrom, '', 'MAIL FROM:<>');
    assert.deepEqual(recipientsOf(t), [receipts]);
    assert.match(field(t.data, 'Content-Type')!, /^multipart\/report;.*report-type=disposition-notification/i);
    assert.equal(field(t.data, 'To'), `<${receipts}>`);
    assert.match(field(t.data, 'From')!, new RegExp(grace));
    assert.equal(field(t.data, 'In-Reply-To'), '<confirm-me@other.example>');
    const notification = parts(t.data).find((p) => p.type === 'message/disposition-notification');
    assert.ok(notification, 'a message/disposition-notification part');
    const [fields] = reportGroups(notification.body);
    assert.equal(fields!['disposition'], 'manual-action/MDN-sent-manually; displayed');
    assert.equal(fields!['final-recipient'], `rfc822; ${grace}`);
    assert.equal(fields!['original-message-id'], '<confirm-me@other.example>');
    assert.ok((await flagsOf(c, 'INBOX', uid!)).includes('$MDNSent'), 'the message gets $MDNSent');

    expectError(await c.request(`<messageConfirm folder="INBOX" UID="${uid}" type="manual"/>`), /already/, 'a second confirmation');
    expectError(await c.request(`<messageConfirm folder="INBOX" UID="${plainUid}" type="auto"/>`), /Disposition-Notification-To/, 'no Disposition-Notification-To');
    await drained(server, [receipts]);
    assert.equal(sink.to(receipts).length, 1, 'one notification only');
    assert.ok(!(await flagsOf(c, 'INBOX', plainUid!)).includes('$MDNSent'));
  });
});

describe('delivery failures and reports', () => {
  test('expiry: a recipient always refused with 451 is given up after lifetimeSeconds: Status 4.4.7, the message leaves the queue', async () => {
    const short = await startTestServer({ outbound: { relay: sink.relay, firstRetrySeconds: 1, maxRetrySeconds: 2, lifetimeSeconds: 3 } });
    extraServers.push(short);
    const erin = await newAccount(short, 'erin');
    const c = await client(short, erin);
    const target = remote('defer-always');
    const started = Date.now();
    await ok(c, submitXml({ to: [target], subject: 'Never arrives' }));
    await eventually(async () => (await queuedFor(short, [target])).length === 1 || undefined, 'the message queued', WAIT_MS);
    const [report] = await waitMailbox(short, erin, 1);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 2500, `given up after the lifetime (${elapsed} ms)`);
    assert.ok(sink.refused(target).length >= 2, `retried meanwhile (${sink.refused(target).length} attempts)`);
    assert.equal(sink.to(target).length, 0);
    const groups = reportsFor([report!], target);
    assert.equal(groups.length, 1);
    assert.equal(groups[0]!.group['action'], 'failed');
    assert.equal(groups[0]!.group['status'], '4.4.7');
    assert.match(groups[0]!.group['diagnostic-code'] ?? '', /451 4\.3\.0 .*local problem/);
    await drained(short, [target, erin]);
    assert.deepEqual(await queuedFor(short, [target]), [], 'the message left the queue');
  });
});

describe('refusals at the end of DATA; RET=FULL', () => {
  test('451 after DATA: the whole message is retried and delivered once; 554 after DATA: a failure report', async () => {
    const user = await newAccount(server, 'datastage');
    const c = await client(server, user);
    const [once, other, refused] = [remote('data-once'), remote('plain'), remote('data-refuse')];
    await ok(c, submitXml({ to: [once, other], subject: 'Deferred after DATA' }));
    await ok(c, submitXml({ to: [refused], subject: 'Refused after DATA' }));
    const t = await sink.waitTo(once, WAIT_MS);
    assert.deepEqual(recipientsOf(t), [once, other].sort(), 'both recipients in the retry');
    assert.equal(sink.dataRefusals.filter((r) => r.recipients.some((x) => x.address === once)).length, 1, 'refused once before');
    const [report] = await waitMailbox(server, user);
    await drained(server, [once, other, refused, user]);
    assert.equal(sink.to(once).length, 1, 'delivered once');
    assert.equal(sink.to(other).length, 1, 'delivered once');
    assert.equal(sink.to(refused).length, 0);
    assert.equal((await mailbox(server, user)).length, 1, 'one report: for the refused message');
    const groups = reportsFor([report!], refused);
    assert.equal(groups.length, 1);
    assert.equal(groups[0]!.group['action'], 'failed');
    assert.equal(groups[0]!.group['status'], '5.6.0');
    assert.equal(groups[0]!.group['diagnostic-code'], 'smtp; 554 5.6.0 Content refused by policy');
  });

  test('SMTP submission with RET=FULL to a refused recipient: the report returns the whole message (message/rfc822)', async () => {
    const judy = await newAccount(server, 'retfull');
    const target = remote('refuse');
    const raw = rfc822([['From', judy], ['To', target], ['Subject', 'Return it all'], ['Message-ID', `<full-${++counter}@example.test>`]], 'The whole body.\n');
    const result = await smtpSend(smtpPort, { from: judy, to: [target], raw, user: judy, password: PASSWORD, mailOptions: ['RET=FULL', 'ENVID=full-env'] });
    assert.deepEqual(result.refused, {}, JSON.stringify(result));
    const [report] = await waitMailbox(server, judy);
    const parsed = dsn(report!.raw);
    assert.equal(parsed.perMessage['original-envelope-id'], 'full-env');
    assert.equal(parsed.recipients[0]!['final-recipient'], `rfc822; ${target}`);
    const returned = parsed.parts.find((p) => p.type === 'message/rfc822');
    assert.ok(returned, `the original as message/rfc822: ${parsed.parts.map((p) => p.type).join(', ')}`);
    assert.ok(returned.body.includes('The whole body.'), 'with its body');
    assert.equal(field(returned.body, 'Subject'), 'Return it all');
    await drained(server, [target, judy]);
  });
});

describe('relay AUTH (the relay requires it and does not offer DSN)', () => {
  let authSink: SmtpSink;
  let good: TestServer;
  let bad: TestServer;

  before(async () => {
    authSink = await SmtpSink.start({ authMethods: ['PLAIN', 'LOGIN'], user: 'relay-user', password: 'relay-pass', hideDSN: true });
    const outbound = { relay: authSink.relay, firstRetrySeconds: 1, maxRetrySeconds: 2, lifetimeSeconds: 30, relayUser: 'relay-user' };
    good = await startTestServer({ outbound: { ...outbound, relayPassword: 'relay-pass' } });
    bad = await startTestServer({ outbound: { ...outbound, relayPassword: 'wrong-pass' } });
    extraServers.push(good, bad);
  });

  after(async () => {
    await authSink.stop();
  });

  test('with the right credentials: delivered; useDSN="yes" gets a "relayed" report (the relay has no DSN)', async () => {
    const user = await newAccount(good, 'relayed');
    const c = await client(good, user);
    const target = remote('authed');
    await ok(c, submitXml({ attrs: 'useDSN="yes"', to: [target], subject: 'Via the relay' }));
    const t = await authSink.waitTo(target);
    assert.equal(t.user, 'relay-user', 'the transaction was authenticated');
    assert.equal(t.mailFrom, user);
    assert.equal(t.recipients[0]!.notify, undefined, 'no NOTIFY to a server without DSN');
    assert.deepEqual(t.recipients[0]!.params, {}, 'no DSN parameters at all');
    const [report] = await waitMailbox(good, user);
    const groups = reportsFor([report!], target);
    assert.equal(groups.length, 1, 'a report for the relayed recipient');
    assert.equal(groups[0]!.group['action'], 'relayed');
    assert.match(groups[0]!.group['status']!, /^2\.\d+\.\d+$/);
    assert.match(groups[0]!.group['remote-mta'] ?? '', /127\.0\.0\.1/);
    await drained(good, [target, user]);
    assert.equal(authSink.to(target).length, 1);
  });

  test('with a wrong password: the configured user is tried, the relay refuses it, nothing is sent', async () => {
    const user = await newAccount(bad, 'badauth');
    const c = await client(bad, user);
    const target = remote('unauthed');
    const tried = authSink.authAttempts.length;
    await ok(c, submitXml({ to: [target], subject: 'Stuck at the relay' }));
    await authSink.waitFor(() => authSink.authAttempts.length > tried || undefined, 'an AUTH attempt');
    assert.deepEqual(authSink.authAttempts.slice(tried, tried + 1), [{ user: 'relay-user', ok: false }]);
    // Either still queued with the 535 recorded, or given up with a report: wait for one of them.
    await eventually(async () => {
      const [q] = await queuedFor(bad, [target]);
      return (q?.recipients[0]?.attempts ?? 0) > 0 || (await mailbox(bad, user)).length > 0;
    }, 'the attempt recorded', WAIT_MS);
    assert.equal(authSink.to(target).length, 0, 'nothing delivered');
  });

  test(
    'with a wrong password: a temporary failure: the message stays queued, no failure report',
    async () => {
      const user = await newAccount(bad, 'badauth');
      const c = await client(bad, user);
      const target = remote('unauthed');
      await ok(c, submitXml({ to: [target], subject: 'Stuck at the relay' }));
      const seen = await eventually(async () => {
        const [q] = await queuedFor(bad, [target]);
        const r = q?.recipients.find((x) => x.address === target);
        if (r && r.attempts > 0) return { queued: r };
        const inbox = await mailbox(bad, user);
        return inbox.length > 0 ? { bounced: inbox[0]!.raw } : undefined;
      }, 'the attempt recorded', WAIT_MS);
      assert.equal(authSink.to(target).length, 0, 'nothing delivered');
      assert.ok(seen.queued, `still queued (instead: a report ${seen.bounced ? JSON.stringify(reportsFor([{ raw: seen.bounced }], target)[0]?.group) : ''})`);
      assert.equal(seen.queued.state, 'pending');
      assert.match(seen.queued.status ?? '', /^[45]\.\d+\.\d+$/);
      assert.match(seen.queued.diagnostic ?? '', /535/);
      await sleep(300);
      assert.deepEqual(await mailbox(bad, user), [], 'no failure report for a relay configuration problem');
    },
  );
});

describe('restart', () => {
  test('relay down: queued; a new server on the same data directory delivers it once the relay is back (exactly once)', async () => {
    const downSink = await SmtpSink.start();
    await downSink.stop();
    const first = await startTestServer({ outbound: { relay: downSink.relay, firstRetrySeconds: 1, maxRetrySeconds: 2, lifetimeSeconds: 60 } });
    let second: RunningServer | undefined;
    try {
      const user = await newAccount(first, 'restart');
      const c = await client(first, user);
      const target = remote('later');
      await ok(c, submitXml({ to: [target], subject: 'After the restart' }));
      const pending = await eventually(async () => {
        const [q] = await queuedFor(first, [target]);
        const r = q?.recipients.find((x) => x.address === target);
        return r && r.attempts > 0 ? r : undefined;
      }, 'a failed attempt', WAIT_MS);
      assert.equal(pending.state, 'pending');
      assert.equal(pending.status, '4.4.1', 'cannot connect: 4.4.1');
      c.close();
      await first.close();

      await downSink.start();
      second = await startServer(first.config, { log: silentLogger });
      const t = await downSink.waitTo(target, WAIT_MS);
      assert.equal(t.mailFrom, user);
      assert.equal(field(t.data, 'Subject'), 'After the restart');
      await drained(second, [target, user]);
      await sleep(1200); // longer than a retry interval
      assert.equal(downSink.to(target).length, 1, 'delivered exactly once');
      assert.deepEqual(await mailbox(second, user), [], 'no report');
    } finally {
      await second?.close();
      await first.close();
      rmSync(first.dataDir, { recursive: true, force: true });
      await downSink.stop();
    }
  });
});

describe('MX routing (RemoteDelivery, no relay)', () => {
  let mxA: SmtpSink;
  let mxB: SmtpSink;

  before(async () => {
    mxA = await SmtpSink.start({ host: '127.0.0.2' });
    mxB = await SmtpSink.start({ host: '127.0.0.3', port: mxA.port });
  });

  after(async () => {
    await mxA.stop();
    await mxB.stop();
  });

  const message = (id: string) => ({
    sender: `mx@${DOMAIN}`,
    raw: rfc822([['From', `mx@${DOMAIN}`], ['To', 'x@mx.example'], ['Subject', id], ['Message-ID', `<${id}@example.test>`]], 'MX test.\n'),
    ret: null,
    envid: null,
  });
  const outbound = (port: number) => ({ ...defaultConfig().outbound, relay: '', mxPort: port, starttls: 'off' });
  const dnsError = (code: string) => Object.assign(new Error(`queryMx ${code} mx.example`), { code });

  test('the MX with the lowest preference is used', async () => {
    const asked: string[] = [];
    const remoteDelivery = new RemoteDelivery(outbound(mxA.port), DOMAIN, {
      resolveMx: async (domain) => {
        asked.push(domain);
        return [
          { priority: 20, exchange: '127.0.0.3' },
          { priority: 10, exchange: '127.0.0.2' },
        ] satisfies MxRecord[];
      },
    });
    const to = `pref-${++counter}@MX.Example`;
    const [outcome] = await remoteDelivery.deliver(message('pref'), [{ address: to, notify: null, orcpt: null }]);
    assert.deepEqual(asked, ['mx.example'], 'the domain is looked up (lower case)');
    assert.equal(outcome!.kind, 'sent', JSON.stringify(outcome));
    assert.equal(outcome!.remoteMta, '127.0.0.2');
    assert.equal(mxA.to(to).length, 1, 'the preferred MX got it');
    assert.equal(mxB.to(to).length, 0);
  });

  test('an unreachable first MX falls back to the next one; none reachable is a temporary 4.4.1', async () => {
    const remoteDelivery = new RemoteDelivery(outbound(mxA.port), DOMAIN, {
      resolveMx: async () => [
        { priority: 5, exchange: '127.0.0.4' }, // nothing listens there
        { priority: 10, exchange: '127.0.0.3.' }, // a trailing dot, as DNS gives it
      ],
    });
    const to = `fallback-${++counter}@mx.example`;
    const [outcome] = await remoteDelivery.deliver(message('fallback'), [{ address: to, notify: null, orcpt: null }]);
    assert.equal(outcome!.kind, 'sent', JSON.stringify(outcome));
    assert.equal(outcome!.remoteMta, '127.0.0.3');
    assert.equal(mxB.to(to).length, 1);

    const none = new RemoteDelivery(outbound(mxA.port), DOMAIN, { resolveMx: async () => [{ priority: 5, exchange: '127.0.0.4' }] });
    const [down] = await none.deliver(message('down'), [{ address: `down-${++counter}@mx.example`, notify: null, orcpt: null }]);
    assert.equal(down!.kind, 'temporary');
    assert.equal(down!.status, '4.4.1');
  });

  test('a null MX is a permanent 5.1.10; ENOTFOUND a permanent 5.1.2; another DNS error temporary', async () => {
    for (const exchange of ['', '.']) {
      const remoteDelivery = new RemoteDelivery(outbound(mxA.port), DOMAIN, { resolveMx: async () => [{ priority: 0, exchange }] });
      const [outcome] = await remoteDelivery.deliver(message('null'), [{ address: `null-${++counter}@mx.example`, notify: null, orcpt: null }]);
      assert.equal(outcome!.kind, 'permanent', `null MX "${exchange}"`);
      assert.equal(outcome!.status, '5.1.10');
    }
    const missing = new RemoteDelivery(outbound(mxA.port), DOMAIN, { resolveMx: async () => Promise.reject(dnsError('ENOTFOUND')) });
    const [nx] = await missing.deliver(message('nx'), [{ address: `nx-${++counter}@mx.example`, notify: null, orcpt: null }]);
    assert.equal(nx!.kind, 'permanent');
    assert.equal(nx!.status, '5.1.2');
    const failing = new RemoteDelivery(outbound(mxA.port), DOMAIN, { resolveMx: async () => Promise.reject(dnsError('ESERVFAIL')) });
    const [servfail] = await failing.deliver(message('servfail'), [{ address: `sf-${++counter}@mx.example`, notify: null, orcpt: null }]);
    assert.equal(servfail!.kind, 'temporary');
    assert.match(servfail!.status, /^4\./);
    assert.equal(mxA.transactions.filter((t) => /null|nx|sf/.test(t.recipients[0]!.address)).length, 0, 'nothing sent');
  });

  test('ENODATA (no MX records): the domain itself is the mail server', async () => {
    const asked: string[] = [];
    const remoteDelivery = new RemoteDelivery(outbound(sink.port), DOMAIN, {
      resolveMx: async (domain) => {
        asked.push(domain);
        throw dnsError('ENODATA');
      },
    });
    const to = `implicit-${++counter}@localhost`;
    const [outcome] = await remoteDelivery.deliver(message('implicit'), [{ address: to, notify: null, orcpt: null }]);
    assert.deepEqual(asked, ['localhost']);
    assert.equal(outcome!.kind, 'sent', JSON.stringify(outcome));
    assert.equal(outcome!.remoteMta, 'localhost');
    assert.equal(sink.to(to).length, 1, 'the sink on localhost got it');
  });
});

describe('SMTP in', () => {
  test('DSN advertised; NOTIFY=SUCCESS for a local recipient: a "delivered" report to the (local) sender', async () => {
    const heidi = await newAccount(server, 'heidi');
    const ivan = await newAccount(server, 'ivan');
    const raw = rfc822([['From', heidi], ['To', ivan], ['Subject', 'DSN please'], ['Message-ID', `<dsn-${++counter}@example.test>`]], 'Hello Ivan.\n');
    const result = await smtpSend(smtpPort, { from: heidi, to: [ivan], raw, mailOptions: ['RET=HDRS', 'ENVID=env-42'], rcptOptions: ['NOTIFY=SUCCESS'] });
    assert.ok(result.features.includes('dsn'), `DSN in EHLO: ${result.features.join(' ')}`);
    assert.deepEqual(result.refused, {}, JSON.stringify(result));
    const [arrived] = await waitMailbox(server, ivan);
    assert.equal(field(arrived!.raw, 'Subject'), 'DSN please');
    const [report] = await waitMailbox(server, heidi);
    const groups = reportsFor([report!], ivan);
    assert.equal(groups.length, 1, 'a report about ivan');
    assert.equal(groups[0]!.group['action'], 'delivered');
    assert.match(groups[0]!.group['status']!, /^2\./);
    assert.equal(dsn(report!.raw).perMessage['original-envelope-id'], 'env-42', 'ENVID comes back');
    await drained(server, [heidi, ivan]);
    assert.equal((await mailbox(server, ivan)).length, 1);
    assert.equal((await mailbox(server, heidi)).length, 1);
  });

  test('authenticated submission (AUTH PLAIN on loopback) to a remote address: the relay gets it with the DSN parameters', async () => {
    const judy = await newAccount(server, 'judy');
    const target = remote('submitted');
    const raw = rfc822([['From', judy], ['To', target], ['Subject', 'Submitted'], ['Message-ID', `<sub-${++counter}@example.test>`]], 'Over SMTP.\n');
    const result = await smtpSend(smtpPort, {
      from: judy,
      to: [target],
      raw,
      user: judy,
      password: PASSWORD,
      mailOptions: ['RET=HDRS', 'ENVID=sub-env'],
      rcptOptions: ['NOTIFY=SUCCESS,FAILURE', `ORCPT=rfc822;${target}`],
    });
    assert.equal(result.auth, 235, JSON.stringify(result));
    assert.deepEqual(result.refused, {}, JSON.stringify(result));
    const t = await sink.waitTo(target);
    assert.equal(t.mailFrom, judy);
    assert.deepEqual(t.recipients[0]!.notify, ['SUCCESS', 'FAILURE'], 'NOTIFY passed on');
    assert.equal(t.mailParams.RET, 'HDRS', 'RET passed on');
    assert.equal(t.mailParams.ENVID, 'sub-env', 'ENVID passed on');
    const data = t.data.toString('latin1');
    assert.match(data, /^Received: from /, 'a Received field on top');
    assert.ok(data.endsWith(raw.toString('latin1')), 'the submitted message follows unchanged');
    await drained(server, [target, judy]);
  });

  test(
    'authenticated submission: ORCPT is passed on to the relay',
    async () => {
      const judy = await newAccount(server, 'judy');
      const target = remote('orcpt');
      const raw = rfc822([['From', judy], ['To', target], ['Subject', 'ORCPT'], ['Message-ID', `<orcpt-${++counter}@example.test>`]], 'Over SMTP.\n');
      const result = await smtpSend(smtpPort, { from: judy, to: [target], raw, user: judy, password: PASSWORD, rcptOptions: [`ORCPT=rfc822;${target}`] });
      assert.deepEqual(result.refused, {}, JSON.stringify(result));
      const t = await sink.waitTo(target);
      await drained(server, [target, judy]);
      assert.equal(t.recipients[0]!.orcpt, `rfc822;${target}`, 'ORCPT passed on');
    },
  );

  test('unauthenticated relaying is still refused', async () => {
    const target = remote('open-relay');
    const raw = rfc822([['From', 'spammer@other.example'], ['To', target], ['Subject', 'Relay?']], 'No.\n');
    const result = await smtpSend(smtpPort, { from: 'spammer@other.example', to: [target], raw });
    assert.match(result.error ?? '', /550/, JSON.stringify(result));
    await sleep(200);
    assert.equal(sink.to(target).length, 0);
  });
});

describe('recoverPassword', () => {
  test('a reset link goes to the recovery address; the page sets a new password once; the old one stops working', async () => {
    const name = `kim${++counter}`;
    const address = `${name}@${DOMAIN}`;
    const recovery = remote('kim-recovery');
    await server.services.accounts.create({ address, password: 'old-password-1', recoveryEmail: recovery, createDomain: true });
    const pre = await XimssClient.connect(server.ports.ximss);
    await ok(pre, `<recoverPassword userName="${name}"/>`);
    const t = await sink.waitTo(recovery);
    assert.equal(t.mailFrom, '', 'sent with the null sender');
    assert.match(field(t.data, 'Subject')!, new RegExp(address));
    const link = /https?:\/\/\S+\/ResetPassword\?token=([A-Za-z0-9_-]+)/.exec(t.data.toString('utf8'));
    assert.ok(link, `a reset link in: ${t.data.toString('utf8')}`);
    const token = link[1]!;
    const base = `http://127.0.0.1:${server.ports.http}/ResetPassword`;

    const form = await fetch(`${base}?token=${token}`);
    assert.equal(form.status, 200);
    const html = await form.text();
    assert.match(html, /<form/);
    assert.ok(html.includes(token), 'the form carries the token');
    assert.ok(html.includes(address), 'the form names the account');

    const post = (fields: Record<string, string>) =>
      fetch(base, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
    const mismatch = await post({ token, password: 'new-password-2', confirm: 'different-3' });
    assert.equal(mismatch.status, 400, 'two different passwords');
    await mismatch.text();
    const done = await post({ token, password: 'new-password-2', confirm: 'new-password-2' });
    assert.equal(done.status, 200, await done.clone().text());
    assert.match(await done.text(), /changed/i);

    const fresh = await XimssClient.connect(server.ports.ximss);
    await fresh.login(address, 'new-password-2');
    const old = await XimssClient.connect(server.ports.ximss);
    expectError(await old.request(new XmlElement('login', { authData: address, password: 'old-password-1', version: '6.1' })), undefined, 'login with the old password');

    const again = await fetch(`${base}?token=${token}`);
    assert.equal(again.status, 404, 'the link works once');
    await again.text();
    const replay = await post({ token, password: 'third-password-4', confirm: 'third-password-4' });
    assert.equal(replay.status, 404);
    await replay.text();
    const bogus = await fetch(`${base}?token=not-a-token`);
    assert.equal(bogus.status, 404);
    await bogus.text();
  });

  test('an unknown account and an account without a recovery address get the same error; nothing is sent', async () => {
    const name = `norecovery${++counter}`;
    await server.addAccount(`${name}@${DOMAIN}`, PASSWORD);
    const before = sink.transactions.length;
    const pre = await XimssClient.connect(server.ports.ximss);
    const unknown = expectError(await pre.request(`<recoverPassword userName="nobody-${++counter}"/>`), undefined, 'unknown account');
    const without = expectError(await pre.request(`<recoverPassword userName="${name}"/>`), undefined, 'no recovery address');
    assert.equal(unknown, without, 'one answer for both: no probing');
    await sleep(300);
    assert.equal(sink.transactions.length, before, 'nothing sent');
  });
});

describe('bad input', () => {
  test('errors, never a crash or a faked success; nothing is sent', async () => {
    const user = await newAccount(server, 'careless');
    const c = await client(server, user);
    const good = remote('never');
    const queuedBefore = (await server.services.store.queue.list()).length;
    const before = sink.transactions.length;

    expectError(await c.request(submitXml({})), /no recipients/, 'messageSubmit without recipients');
    expectError(await c.request(submitXml({ to: ['not an address'] })), /invalid/, 'an invalid address');
    expectError(await c.request(submitXml({ to: [good, 'broken@'] })), /invalid/, 'one invalid among good ones: nothing sent');
    expectError(await c.request(submitXml({ to: ['a@@b'] })), /invalid/, 'two @');
    expectError(await c.request(`<messageSubmit><Envelope-To>nowhere</Envelope-To><EMail><Subject>x</Subject></EMail></messageSubmit>`), /invalid/, 'a bad Envelope-To');
    expectError(await c.request('<messageSubmit><Envelope-To>x@remote.example</Envelope-To></messageSubmit>'), /EMail/, 'without EMail');
    expectError(await c.request(submitXml({ to: [good], attrs: 'targetMailbox="No Such Box"' })), undefined, 'a missing targetMailbox: nothing sent');
    expectError(await c.request(submitXml({ to: [good], attrs: 'flags="Bogus Flag"' })), undefined, 'bad flags: nothing sent');

    const [uid] = await deliverRaw(server, user, 'INBOX', [rfc822([['From', 'x@other.example'], ['Subject', 'Hi'], ['Disposition-Notification-To', good]], 'Hi.\n')]);
    await ok(c, '<folderOpen folder="INBOX" mailbox="INBOX"/>');
    expectError(await c.request(`<messageRedirect folder="INBOX" UID="${uid}"/>`), /no recipients/, 'messageRedirect without To');
    expectError(await c.request(`<messageRedirect folder="INBOX" UID="999999"><To>${good}</To></messageRedirect>`), undefined, 'a UID that does not exist');
    expectError(await c.request(`<messageRedirect folder="NoSuchFolder" UID="${uid}"><To>${good}</To></messageRedirect>`), undefined, 'a folder that is not open');
    expectError(await c.request(`<messageRedirect folder="INBOX" UID="${uid}" partID="7"><To>${good}</To></messageRedirect>`), /part/, 'a part that does not exist');
    expectError(await c.request(`<messageForward folder="INBOX" UID="${uid}" mirror="yes"><To>${good}</To></messageForward>`), /mirror/, 'messageForward with mirror');
    expectError(await c.request(`<messageForward folder="INBOX" UID="999999"><To>${good}</To></messageForward>`), undefined, 'messageForward of a missing UID');
    expectError(await c.request(`<messageConfirm folder="INBOX" UID="${uid}" type="bogus"/>`), /type/, 'messageConfirm type="bogus"');
    expectError(await c.request('<messageConfirm folder="INBOX" UID="999999" type="manual"/>'), undefined, 'messageConfirm of a missing UID');

    // The session still works; nothing was queued or sent; the message is unmarked.
    await ok(c, '<noop/>');
    assert.equal((await server.services.store.queue.list()).length, queuedBefore, 'nothing queued');
    await sleep(300);
    assert.equal(sink.transactions.length, before, 'nothing sent');
    assert.deepEqual(await mailbox(server, user, 'INBOX').then((m) => m.length), 1);
    const flags = await flagsOf(c, 'INBOX', uid!);
    assert.ok(!flags.includes('$MDNSent') && !flags.includes('Redirected'), `flags: ${flags.join(',')}`);
  });

  test(
    'an address list with an invalid entry is refused, not sent to the valid part only',
    async () => {
      const user = await newAccount(server, 'sloppy');
      const c = await client(server, user);
      const good = remote('partial');
      const reply = await c.request(submitXml({ to: [`${good}, not an address`] }));
      await drained(server, [good, user]);
      assert.equal(sink.to(good).length, 0, `sent to the valid part of the list only (response: ${reply.response.toString()})`);
      expectError(reply, /invalid/, 'a list with an invalid entry');
    },
  );
});
