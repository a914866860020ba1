/**
 * The structured log and the operator's endpoints, over the wire: the log lines (parsed JSON)
 * of logins over XIMSS TCP, HTTP and SMTP AUTH, of sessions, of SMTP and of the queue (with a
 * real SMTP server standing in for the relay, test/fixtures/smtp-sink.ts), limits hit, no
 * secret or message body anywhere in the log; /healthz, /readyz (also while the server
 * closes) and /metrics (values moving with traffic, who may read it).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { sessionTag } from '../src/ximss/session.js';
import { sendmail, smtpSession } from './fixtures/smtp-client.js';
import { SmtpSink } from './fixtures/smtp-sink.js';
import { connectFrom, plainAuthData, rawLogger, smtpAuthFrom, ximssClientFrom, ximssLoginFrom, type LogLine } from './fixtures/wire-logins.js';
import { XimssClient, eventually, freePort, httpRequest, ok, rfc822, startTestServer, type TestServer } from './helpers.js';

const PASSWORD = 'Obs-Right-pw-5150';
const WRONG = 'Obs-Wrong-pw-6060';
/** Text that appears only in message bodies. */
const BODY = 'Obs-body-marker-7a1c';
const REMOTE = 'remote.example';
const WAIT_MS = 8000;

/** Every string that must never reach a log (passwords, authData, bodies). */
const secrets = new Set<string>([PASSWORD, WRONG, BODY]);

/** The relay's answers, by the local part's prefix. */
function policy(address: string): { code: number; text: string } | undefined {
  const local = address.slice(0, address.lastIndexOf('@')).toLowerCase();
  if (local.startsWith('refuse-')) return { code: 550, text: `5.1.1 <${address}>: no such mailbox here` };
  if (local.startsWith('defer-')) return { code: 451, text: `4.3.0 <${address}>: local problem, try again later` };
  return undefined;
}

let counter = 0;
const remote = (tag: string): string => `${tag}-${++counter}@${REMOTE}`;

// ---------------------------------------------------------------------------------------
// The Prometheus text format, read independently of prom-client.

type Samples = Map<string, number>;

/** `name{a="x",b="y"}` with the labels sorted, for every sample line. */
function parseMetrics(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a sample line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    samples.set(`${match[1]}{${labels.join(',')}}`, Number(match[3]));
  }
  return samples;
}

function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const key = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;
  return samples.get(key) ?? 0;
}

/** The sum of every sample of `name` (over all label values). */
function total(samples: Samples, name: string): number {
  let sum = 0;
  for (const [key, value] of samples) if (key.startsWith(`${name}{`)) sum += value;
  return sum;
}

// ---------------------------------------------------------------------------------------

const mainLog = rawLogger();
/** Every server's log lines, for the search for secrets. */
const allLines: string[][] = [mainLog.lines];
let sink: SmtpSink;
let server: TestServer;

before(async () => {
  sink = await SmtpSink.start({ policy });
  server = await startTestServer(
    {
      ports: { smtp: await freePort() },
      outbound: { relay: sink.relay, firstRetrySeconds: 1, maxRetrySeconds: 2, lifetimeSeconds: 3 },
      limits: { sessionsPerAccount: 2, loginFailuresPerAddress: 3 },
      metrics: { enabled: true, allow: ['127.0.0.1'] },
    },
    { log: mainLog.log },
  );
});

after(async () => {
  await server?.stop();
  await sink?.stop();
});

function newAccount(name: string): Promise<string> {
  return server.newAccount(name, { password: PASSWORD });
}

async function scrape(from = '127.0.0.1'): Promise<Samples> {
  const res = await httpRequest(server.ports.http, '/metrics', { localAddress: from });
  assert.equal(res.status, 200, `/metrics: ${res.text}`);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseMetrics(res.text);
}

/** The log lines of `event` whose fields include `fields`. */
function linesOf(event: string, fields: Record<string, unknown> = {}): LogLine[] {
  return mainLog.events(event).filter((r) => Object.entries(fields).every(([k, v]) => r[k] === v));
}

/** Waits for one line of `event` with `fields`; returns it. */
function awaitLine(event: string, fields: Record<string, unknown> = {}, timeoutMs = WAIT_MS): Promise<LogLine> {
  return eventually(() => linesOf(event, fields)[0], `a ${event} line with ${JSON.stringify(fields)}`, timeoutMs);
}

/** Checks the fields every line has: ISO time, level name, component, event, msg. */
function checkShape(line: LogLine, level: string, component: string): void {
  assert.match(line.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'an ISO time (UTC)');
  assert.equal(line.level, level);
  assert.equal(line.component, component);
  assert.equal(typeof line.msg, 'string');
}

async function httpLogin(account: string, password: string, extra = '', from?: string): Promise<{ status: number; urlID?: string; text: string }> {
  const res = await httpRequest(server.ports.http, `/XIMSSLogin/?userName=${encodeURIComponent(account)}&password=${encodeURIComponent(password)}${extra}`, { localAddress: from });
  return { status: res.status, urlID: /urlID="([^"]+)"/.exec(res.text)?.[1], text: res.text };
}

describe('logins', () => {
  test('XIMSS over TCP: login.ok (clear text and PLAIN), login.failed (wrong password, unknown account), login.refused', async () => {
    const account = await newAccount('tcplogin');
    assert.equal(await ximssLoginFrom(server.ports.ximss, '127.0.0.1', account, PASSWORD), undefined);
    const okLine = await awaitLine('login.ok', { user: account, protocol: 'ximss', mechanism: 'password' });
    checkShape(okLine, 'info', 'auth');
    assert.equal(okLine.address, '127.0.0.1');

    const plain = plainAuthData(account, PASSWORD);
    secrets.add(plain);
    const client = await XimssClient.connect(server.ports.ximss);
    const reply = await client.request(new XmlElement('login', { method: 'PLAIN', authData: plain }));
    assert.equal(reply.response.attrs.errorText, undefined);
    client.close();
    await awaitLine('login.ok', { user: account, protocol: 'ximss', mechanism: 'plain' });

    assert.ok(await ximssLoginFrom(server.ports.ximss, '127.0.0.11', account, WRONG));
    const failed = await awaitLine('login.failed', { user: account, address: '127.0.0.11', protocol: 'ximss' });
    checkShape(failed, 'warn', 'auth');
    assert.equal(failed.reason, 'wrong credentials');
    assert.equal(failed.mechanism, 'password');
    assert.ok(await ximssLoginFrom(server.ports.ximss, '127.0.0.11', 'nobody@example.test', WRONG));
    assert.equal((await awaitLine('login.failed', { user: 'nobody@example.test', address: '127.0.0.11' })).reason, 'unknown account');

    // loginFailuresPerAddress is 3: the fourth attempt from the address is refused unverified.
    for (let i = 0; i < 3; i++) assert.ok(await ximssLoginFrom(server.ports.ximss, '127.0.0.14', account, WRONG));
    assert.match((await ximssLoginFrom(server.ports.ximss, '127.0.0.14', account, PASSWORD)) ?? '', /too many/i);
    const refused = await awaitLine('login.refused', { address: '127.0.0.14' });
    checkShape(refused, 'warn', 'auth');
    assert.equal(refused.protocol, 'ximss');
    assert.match(String(refused.reason), /too many failed logins from this address/);
  });

  test('HTTP /XIMSSLogin/: login.ok and login.failed with protocol http', async () => {
    const account = await newAccount('httplogin');
    assert.equal((await httpLogin(account, PASSWORD)).status, 200);
    const okLine = await awaitLine('login.ok', { user: account, protocol: 'http' });
    assert.equal(okLine.address, '127.0.0.1');
    assert.equal((await httpLogin(account, WRONG, '', '127.0.0.12')).status, 401);
    const failed = await awaitLine('login.failed', { user: account, protocol: 'http' });
    assert.equal(failed.address, '127.0.0.12');
    assert.equal(failed.reason, 'wrong credentials');
  });

  test('HTTP /XIMSSLogin/ batch: a login operation (clear text, PLAIN) is logged with protocol http and its mechanism', async () => {
    const account = await newAccount('batchlogin');
    const clear = await httpRequest(server.ports.http, '/XIMSSLogin/', {
      method: 'POST',
      body: `<XIMSS><login id="1" authData="${account}" password="${PASSWORD}"/></XIMSS>`,
    });
    assert.match(clear.text, /<session /, clear.text);
    const okLine = await awaitLine('login.ok', { user: account, mechanism: 'password' });
    assert.equal(okLine.protocol, 'http');
    const plain = plainAuthData(account, PASSWORD);
    secrets.add(plain);
    const sasl = await httpRequest(server.ports.http, '/XIMSSLogin/', { method: 'POST', body: `<XIMSS><login id="1" method="PLAIN" authData="${plain}"/></XIMSS>` });
    assert.match(sasl.text, /<session /, sasl.text);
    assert.equal((await awaitLine('login.ok', { user: account, mechanism: 'plain' })).protocol, 'http');
    assert.equal(linesOf('login.ok', { user: account, protocol: 'ximss' }).length, 0, 'not logged as ximss');
  });

  test('SMTP AUTH: login.ok and login.failed with protocol smtp and the mechanism (plain, login)', async () => {
    const account = await newAccount('smtplogin');
    secrets.add(plainAuthData(account, PASSWORD)).add(plainAuthData(account, WRONG));
    assert.equal(await smtpAuthFrom(server.ports.smtp!, '127.0.0.1', account, PASSWORD), 235);
    const okLine = await awaitLine('login.ok', { user: account, protocol: 'smtp' });
    assert.equal(okLine.address, '127.0.0.1');
    assert.equal(okLine.mechanism, 'plain');
    assert.equal(await smtpAuthFrom(server.ports.smtp!, '127.0.0.13', account, WRONG), 535);
    const failed = await awaitLine('login.failed', { user: account, protocol: 'smtp' });
    assert.equal(failed.address, '127.0.0.13');
    assert.equal(failed.reason, 'wrong credentials');
    assert.equal(failed.mechanism, 'plain');

    secrets.add(Buffer.from(PASSWORD).toString('base64'));
    const login = await smtpSession(server.ports.smtp!, [{ op: 'ehlo' }, { op: 'auth', mechanism: 'LOGIN', user: account, password: PASSWORD }]);
    assert.equal(login[1]!.code, 235, JSON.stringify(login));
    assert.equal((await awaitLine('login.ok', { user: account, protocol: 'smtp', mechanism: 'login' })).address, '127.0.0.1');
    assert.equal(linesOf('login.ok', { user: account, mechanism: 'password' }).length, 0, 'SMTP AUTH is not logged as password');
  });
});

describe('sessions', () => {
  test('over TCP: session.started (account, address, binding, session tag, client version); session.ended by bye and by a lost connection; the gauge goes up and down', async () => {
    const account = await newAccount('tcpsession');
    const before = sample(await scrape(), 'ximssd_sessions', { binding: 'tcp' });
    const client = await XimssClient.connect(server.ports.ximss);
    await client.login(account, PASSWORD); // version 6.1
    const started = await awaitLine('session.started', { account });
    checkShape(started, 'info', 'ximss');
    assert.equal(started.address, '127.0.0.1');
    assert.equal(started.binding, 'tcp');
    assert.match(String(started.session), /^\d+-[A-Za-z0-9]{6}…$/, 'the urlID (a credential) is shortened');
    assert.equal(started.clientVersion, '6.1');
    assert.equal(sample(await scrape(), 'ximssd_sessions', { binding: 'tcp' }), before + 1, 'one more TCP session');

    await ok(client, '<bye/>');
    const ended = await awaitLine('session.ended', { session: started.session });
    checkShape(ended, 'info', 'ximss');
    assert.equal(ended.reason, 'bye');
    assert.equal(ended.account, account);
    assert.equal(ended.address, '127.0.0.1');
    assert.equal(ended.binding, 'tcp');
    assert.equal(typeof ended.duration, 'number');
    assert.ok((ended.duration as number) >= 0);
    await eventually(async () => sample(await scrape(), 'ximssd_sessions', { binding: 'tcp' }) === before, 'the gauge back down');
    client.close();

    const dropped = await XimssClient.connect(server.ports.ximss);
    await dropped.login(account, PASSWORD);
    const second = await eventually(() => linesOf('session.started', { account }).find((l) => l.session !== started.session), 'a second session');
    dropped.close();
    assert.equal((await awaitLine('session.ended', { session: second.session })).reason, 'connection_lost');
  });

  test('over HTTP: binding http; ended by /KILL (kill) and by a newer login with killOld (killed)', async () => {
    const account = await newAccount('httpsession');
    const first = await httpLogin(account, PASSWORD);
    assert.ok(first.urlID, first.text);
    const started = await awaitLine('session.started', { session: sessionTag(first.urlID) });
    assert.equal(started.binding, 'http');
    assert.equal(started.account, account);
    assert.ok(sample(await scrape(), 'ximssd_sessions', { binding: 'http' }) >= 1, 'the gauge counts HTTP sessions');
    assert.equal((await httpRequest(server.ports.http, `/Session/${first.urlID}/KILL`)).status, 200);
    assert.equal((await awaitLine('session.ended', { session: sessionTag(first.urlID!) })).reason, 'kill');

    const older = await httpLogin(account, PASSWORD);
    const newer = await httpLogin(account, PASSWORD, '&killOld=1');
    assert.ok(older.urlID && newer.urlID);
    const killed = await awaitLine('session.ended', { session: sessionTag(older.urlID) });
    assert.equal(killed.reason, 'killed');
    assert.equal(killed.binding, 'http');
    assert.equal(linesOf('session.ended', { session: sessionTag(newer.urlID) }).length, 0, 'the new session lives on');
    await httpRequest(server.ports.http, `/Session/${newer.urlID}/KILL`);
    for (const id of [first.urlID, older.urlID, newer.urlID]) assert.ok(!mainLog.lines.join('').includes(id!), 'no urlID in the log');
  });

  test('sessionsPerAccount: the refused session is logged as limit.sessions and counted', async () => {
    const account = await newAccount('manysessions');
    const before = sample(await scrape(), 'ximssd_limits_total', { limit: 'sessions' });
    const clients = [await XimssClient.connect(server.ports.ximss), await XimssClient.connect(server.ports.ximss)];
    for (const c of clients) await c.login(account, PASSWORD);
    const third = await ximssClientFrom(server.ports.ximss, '127.0.0.15');
    const reply = await third.request(new XmlElement('login', { authData: account, password: PASSWORD }));
    assert.match(reply.response.attrs.errorText ?? '', /too many sessions/);
    const line = await awaitLine('limit.sessions', { account });
    checkShape(line, 'warn', 'ximss');
    assert.equal(line.address, '127.0.0.15');
    assert.equal(line.binding, 'tcp');
    assert.equal(line.limit, 2);
    assert.equal(sample(await scrape(), 'ximssd_limits_total', { limit: 'sessions' }), before + 1);
    for (const c of [...clients, third]) c.close();
  });

  test('the idle timeout ends a session: reason idle', async () => {
    const log = rawLogger();
    allLines.push(log.lines);
    const idle = await startTestServer({ limits: { idleTimeoutSeconds: 1 } }, { log: log.log });
    try {
      const account = await idle.newAccount('idle', { password: PASSWORD });
      const client = await XimssClient.connect(idle.ports.ximss);
      await client.login(account, PASSWORD);
      const ended = await eventually(() => log.events('session.ended')[0], 'the session to time out', WAIT_MS);
      assert.equal(ended.reason, 'idle');
      assert.equal(ended.account, account);
      assert.ok((ended.duration as number) >= 1, `lasted the idle timeout: ${String(ended.duration)}`);
      await client.waitClosed();
    } finally {
      await idle.stop();
    }
  });
});

describe('SMTP and the queue', () => {
  test('SMTP: smtp.connect, smtp.accepted (queue id, size, sender, recipients), smtp.rcpt_refused with its reply; relayed', async () => {
    const account = await newAccount('smtpsender');
    secrets.add(plainAuthData(account, PASSWORD));
    const target = remote('relay');
    const raw = rfc822([['From', account], ['To', target], ['Subject', 'Obs SMTP']], `${BODY} over SMTP\r\n`);
    const results = await smtpSession(server.ports.smtp!, [
      { op: 'ehlo' },
      { op: 'auth', mechanism: 'PLAIN', user: account, password: PASSWORD },
      sendmail(account, [target], raw),
    ]);
    assert.equal(results[1]!.code, 235, JSON.stringify(results));
    assert.equal(results[2]!.code, 250, JSON.stringify(results));

    const connect = await awaitLine('smtp.connect');
    checkShape(connect, 'info', 'smtp');
    assert.equal(connect.address, '127.0.0.1');
    const accepted = await awaitLine('smtp.accepted', { sender: account });
    checkShape(accepted, 'info', 'smtp');
    assert.deepEqual(accepted.recipients, [target]);
    assert.equal(accepted.size, raw.length);
    assert.equal(accepted.user, account);
    assert.equal(typeof accepted.queueId, 'number');
    const relayed = await awaitLine('queue.relayed', { queueId: accepted.queueId, recipient: target });
    checkShape(relayed, 'info', 'queue');
    assert.match(String(relayed.reply), /^smtp; 250 /, 'the relay\'s reply');

    const unknown = `nobody-${++counter}@example.test`;
    const refusedRcpt = await smtpSession(server.ports.smtp!, [{ op: 'ehlo' }, { op: 'mail', from: 'someone@elsewhere.example' }, { op: 'rcpt', to: unknown }, { op: 'quit' }]);
    assert.equal(refusedRcpt[2]!.code, 550);
    const line = await awaitLine('smtp.rcpt_refused', { recipient: unknown });
    checkShape(line, 'info', 'smtp');
    assert.equal(line.sender, 'someone@elsewhere.example');
    assert.equal(line.address, '127.0.0.1');
    assert.match(String(line.reply), /^550 5\.1\.1 /);
  });

  test('the queue: delivered (local), deferred with the remote reply, bounced, expired', async () => {
    const sender = await newAccount('queuesender');
    const local = await newAccount('queuelocal');
    const refused = remote('refuse');
    const deferred = remote('defer');
    const client = await XimssClient.connect(server.ports.ximss);
    await client.login(sender, PASSWORD);
    const to = [local, refused, deferred].map((a) => `<To>${a}</To>`).join('');
    await ok(client, `<messageSubmit><EMail><Subject>Obs queue</Subject>${to}<MIME type="text" subtype="plain">${BODY} in the queue</MIME></EMail></messageSubmit>`);
    const queued = await awaitLine('queue.queued', { sender });
    checkShape(queued, 'info', 'queue');
    const queueId = queued.queueId;
    assert.deepEqual((queued.recipients as string[]).slice().sort(), [local, refused, deferred].sort());
    assert.equal(typeof queued.size, 'number');

    const delivered = await awaitLine('queue.delivered', { queueId, recipient: local });
    checkShape(delivered, 'info', 'queue');
    const bounced = await awaitLine('queue.bounced', { queueId, recipient: refused });
    checkShape(bounced, 'warn', 'queue');
    assert.match(String(bounced.reply), /^smtp; 550 5\.1\.1 .*no such mailbox/, 'the remote reply');
    assert.match(String(bounced.status), /^5\./);
    const deferral = await awaitLine('queue.deferred', { queueId, recipient: deferred });
    checkShape(deferral, 'info', 'queue');
    assert.match(String(deferral.reply), /^smtp; 451 4\.3\.0 .*local problem/, 'the remote reply');
    assert.match(String(deferral.nextAttempt), /^\d{4}-\d{2}-\d{2}T/);
    // lifetimeSeconds is 3: the recipient is given up.
    const expired = await awaitLine('queue.expired', { queueId, recipient: deferred }, 15_000);
    checkShape(expired, 'warn', 'queue');
    assert.match(String(expired.reply), /451/);
    client.close();
  });
});

describe('endpoints', () => {
  test('/healthz and /readyz answer 200; /metrics is Prometheus text', async () => {
    const health = await httpRequest(server.ports.http, '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.text, 'ok\n');
    const ready = await httpRequest(server.ports.http, '/readyz');
    assert.equal(ready.status, 200, ready.text);
    const samples = await scrape();
    assert.ok(samples.has('ximssd_process_resident_memory_bytes{}'), 'the process metrics');
    // The XIMSS paths are unchanged beside them.
    assert.equal((await httpRequest(server.ports.http, '/healthz/x')).status, 404);
    assert.equal((await httpRequest(server.ports.http, '/XIMSSLogin/', { method: 'GET' })).status, 401);
  });

  test('/metrics: 404 from an address outside metrics.allow, whatever a forwarding header says', async () => {
    const denied = await httpRequest(server.ports.http, '/metrics', { localAddress: '127.0.0.2' });
    assert.equal(denied.status, 404);
    assert.equal(denied.text, 'not found\n');
    const forwarded = await httpRequest(server.ports.http, '/metrics', {
      localAddress: '127.0.0.2',
      headers: { 'X-Forwarded-For': '127.0.0.1', 'X-Ximssd-Client-Address': '127.0.0.1' },
    });
    assert.equal(forwarded.status, 404);
    // /healthz and /readyz are for anyone.
    assert.equal((await httpRequest(server.ports.http, '/healthz', { localAddress: '127.0.0.2' })).status, 200);
  });

  test('/metrics values move with traffic: requests by op and outcome, latency, logins, SMTP messages, queue attempts, store operations', async () => {
    const account = await newAccount('traffic');
    const before = await scrape();
    const client = await XimssClient.connect(server.ports.ximss);
    await client.login(account, PASSWORD);
    for (let i = 0; i < 3; i++) await ok(client, '<noop/>');
    await client.request('<noSuchOperation/>');
    await client.request('<folderOpen folder="x" mailbox="No such mailbox"/>');
    assert.ok(await ximssLoginFrom(server.ports.ximss, '127.0.0.16', account, WRONG));
    const raw = rfc822([['From', 'someone@elsewhere.example'], ['To', account], ['Subject', 'Obs metrics']], `${BODY} counted\r\n`);
    const sent = await smtpSession(server.ports.smtp!, [{ op: 'ehlo' }, sendmail('someone@elsewhere.example', [account], raw)]);
    assert.equal(sent[1]!.code, 250, JSON.stringify(sent));
    await ok(client, `<messageSubmit><EMail><Subject>Obs metrics</Subject><To>${remote('metrics')}</To><MIME type="text" subtype="plain">${BODY}</MIME></EMail></messageSubmit>`);
    await awaitLine('queue.relayed', { sender: account });

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>): number => sample(after, name, labels) - sample(before, name, labels);
    assert.equal(delta('ximssd_ximss_requests_total', { op: 'noop', outcome: 'ok' }), 3);
    assert.equal(delta('ximssd_ximss_requests_total', { op: 'unknown', outcome: 'error' }), 1, 'an unknown operation counts as op="unknown"');
    assert.ok(![...after.keys()].some((k) => k.includes('noSuchOperation')), 'no label value made up by a client');
    assert.equal(delta('ximssd_ximss_requests_total', { op: 'folderOpen', outcome: 'error' }), 1);
    assert.equal(delta('ximssd_ximss_requests_total', { op: 'login', outcome: 'ok' }), 1);
    assert.equal(delta('ximssd_ximss_requests_total', { op: 'login', outcome: 'error' }), 1);
    assert.equal(delta('ximssd_ximss_request_duration_seconds_count', { op: 'noop' }), 3);
    assert.ok(sample(after, 'ximssd_ximss_request_duration_seconds_bucket', { op: 'noop', le: '+Inf' }) >= 3);
    assert.equal(delta('ximssd_logins_total', { protocol: 'ximss', outcome: 'ok' }), 1);
    assert.equal(delta('ximssd_logins_total', { protocol: 'ximss', outcome: 'failed' }), 1);
    assert.equal(delta('ximssd_sessions_started_total', { binding: 'tcp' }), 1);
    assert.equal(delta('ximssd_smtp_messages_total', { outcome: 'accepted' }), 1);
    assert.ok(delta('ximssd_smtp_connections_total', {}) >= 1);
    assert.ok(delta('ximssd_queue_attempts_total', { outcome: 'relayed' }) >= 1);
    assert.ok(total(after, 'ximssd_store_operation_duration_seconds_count') > total(before, 'ximssd_store_operation_duration_seconds_count'));
    assert.ok(sample(after, 'ximssd_store_operation_duration_seconds_count', { operation: 'accounts.recordLogin' }) > 0);
    assert.ok(after.has('ximssd_queue_messages{}'), 'the queue size');
    client.close();
  });
});

describe('limits and access', () => {
  const limitsLog = rawLogger();
  allLines.push(limitsLog.lines);
  let limited: TestServer;

  before(async () => {
    limited = await startTestServer(
      { limits: { connectionsPerAddress: 2, abusePerAddress: 2, abuseBlockSeconds: 60 }, metrics: { enabled: false } },
      { log: limitsLog.log },
    );
  });

  after(async () => {
    await limited?.stop();
  });

  test('connections per address, malformed requests before login and the abuse block are logged as limit.* with the address', async () => {
    // Two connections from .30 are admitted; the third is refused with the reason.
    const held = [await connectFrom(limited.ports.ximss, '127.0.0.30'), await connectFrom(limited.ports.ximss, '127.0.0.30')];
    const third = await ximssClientFrom(limited.ports.ximss, '127.0.0.30');
    await third.waitClosed();
    assert.match(third.raw[0] ?? '', /too many connections from this address/);
    const connections = await eventually(() => limitsLog.events('limit.connections')[0], 'limit.connections');
    checkShape(connections, 'warn', 'limits');
    assert.equal(connections.address, '127.0.0.30');
    assert.equal(connections.protocol, 'ximss');
    assert.equal(connections.limit, 2);
    for (const s of held) s.destroy();

    // Malformed requests from .31: each logged; the second blocks the address.
    // The first one carries a password with an unescaped entity reference: whatever the
    // parser says about it, the log must not carry it.
    const entity = 'Obs-entity-pw-4242';
    secrets.add(entity);
    for (const text of [`<login id="1" authData="a@example.test" password="x&${entity};y"/>`, '<login id="1" ']) {
      const c = await ximssClientFrom(limited.ports.ximss, '127.0.0.31');
      c.sendRaw(text);
      await c.waitClosed();
      assert.match(c.raw[0] ?? '', /malformed XML/);
    }
    const bad = limitsLog.events('limit.bad_request').filter((r) => r.address === '127.0.0.31');
    assert.equal(bad.length, 1, 'the second refusal within the window is counted, not logged');
    checkShape(bad[0]!, 'warn', 'limits');
    assert.equal(bad[0]!.reason, 'malformed XML', 'the kind of refusal, not the parser\'s words');
    const blocked = await eventually(() => limitsLog.events('limit.abuse_blocked')[0], 'limit.abuse_blocked');
    checkShape(blocked, 'warn', 'limits');
    assert.equal(blocked.address, '127.0.0.31');
    assert.equal(blocked.seconds, 60);
    // A new connection from the blocked address is dropped, and logged.
    const dropped = await ximssClientFrom(limited.ports.ximss, '127.0.0.31');
    await dropped.waitClosed();
    assert.equal((await eventually(() => limitsLog.events('limit.blocked')[0], 'limit.blocked')).address, '127.0.0.31');
    // Over HTTP too: the connection from the blocked address goes the same way.
    await assert.rejects(httpRequest(limited.ports.http, '/healthz', { localAddress: '127.0.0.31' }));
  });

  test('/metrics is 404 when metrics are disabled, even from loopback', async () => {
    const res = await httpRequest(limited.ports.http, '/metrics');
    assert.equal(res.status, 404);
    assert.equal((await httpRequest(limited.ports.http, '/healthz')).status, 200);
  });
});

/** Sends raw bytes on a socket and collects what comes back until the server closes it. */
function collect(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('close', () => resolve(text));
    socket.on('error', () => {});
  });
}

/** Reads until `pattern` shows in what the socket received. */
function readUntil(socket: net.Socket, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (pattern.test(text)) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before ${pattern}: ${text}`)));
  });
}

test('/readyz is 503 once the server is closing; its sessions end with reason shutdown', async () => {
  const log = rawLogger();
  allLines.push(log.lines);
  const closing = await startTestServer({}, { log: log.log });
  let closed = false;
  try {
    const account = await closing.newAccount('shutdown', { password: PASSWORD });
    const client = await XimssClient.connect(closing.ports.ximss);
    await client.login(account, PASSWORD);
    assert.equal((await httpRequest(closing.ports.http, '/readyz')).status, 200);

    // B: a kept-alive connection, with a /readyz request begun (headers not finished).
    const b = await connectFrom(closing.ports.http, '127.0.0.1');
    b.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await readUntil(b, /\r\n\r\nok\n$/);
    b.write('GET /readyz HTTP/1.1\r\nHost: x\r\n');
    // A: a request whose body is still coming keeps the listener's close waiting (its grace
    // period); the 100 Continue says the server has taken it (and B's beginning before it).
    const a = await connectFrom(closing.ports.http, '127.0.0.1');
    a.write('POST /XIMSSLogin/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n');
    await readUntil(a, /^HTTP\/1\.1 100 Continue\r\n\r\n/);

    const stopping = closing.stop().then(() => (closed = true));
    const answer = collect(b);
    b.write('\r\n');
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 503 /, text);
    assert.match(text, /not ready: the server is shutting down/);
    a.destroy();
    await stopping;
    const ended = log.events('session.ended');
    assert.equal(ended.length, 1);
    assert.equal(ended[0]!.reason, 'shutdown');
    assert.equal(ended[0]!.account, account);
    assert.equal(log.events('server.stopped').length, 1);
  } finally {
    if (!closed) await closing.stop().catch(() => {});
  }
});

test('no password, authData or message body anywhere in the log', () => {
  const lines = allLines.flat();
  assert.ok(lines.length > 50, `lines were logged (${lines.length})`);
  for (const line of lines) {
    JSON.parse(line); // one JSON object per line
    for (const secret of secrets) assert.ok(!line.includes(secret), `a secret in the log: ${line}`);
  }
  // The secrets were really sent: the log names the accounts that used them.
  assert.ok(mainLog.events('login.failed').length >= 4);
});
