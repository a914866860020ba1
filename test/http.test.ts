import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { after, before, mock, test } from 'node:test';
import tls from 'node:tls';
import { BYE_GRACE_MS, endedHttpSession } from '../src/ximss/bindings/http-session.js';
import { HttpListener } from '../src/ximss/bindings/http.js';
import { TcpListener } from '../src/ximss/bindings/tcp.js';
import { Engine } from '../src/ximss/engine.js';
import { registerOperations } from '../src/ximss/ops/index.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { hmacMd5Hex, httpRequest, XimssClient, startTestServer, type HttpRequestOptions, type HttpResult, type TestServer } from './helpers.js';

/** XIMSS over HTTP, driven the way the existing web clients drive it. */

let server: TestServer;
before(async () => {
  server = await startTestServer();
  await server.addAccount('web@example.test', 'secret', 'Web User');
  await server.addAccount('other@example.test', 'pass2');
});
after(() => server.stop());

/** An HTTP request to the server's port, or to `options.port`. */
type RequestOptions = HttpRequestOptions & { port?: number };

/** One HTTP request to the server (or `options.port`). */
function request(path: string, options: RequestOptions = {}): Promise<HttpResult> {
  return httpRequest(options.port ?? server.ports.http, path, options);
}

function xml(result: HttpResult): XmlElement {
  assert.equal(result.status, 200, `status ${result.status}: ${result.text}`);
  return parseXml(result.text);
}

function names(root: XmlElement): string[] {
  return root.elements().map((e) => e.name);
}

async function login(userName = 'web@example.test', password = 'secret', extra = ''): Promise<string> {
  const root = xml(await request(`/XIMSSLogin/?userName=${encodeURIComponent(userName)}&password=${password}${extra}`));
  const session = root.elements()[0];
  assert.equal(session?.name, 'session', root.toString());
  return session.attrs.urlID!;
}

function sync(urlID: string, body: string, query = '', options: RequestOptions = {}): Promise<HttpResult> {
  return request(`/Session/${urlID}/sync${query}`, { body, headers: { 'Content-Type': 'text/xml' }, ...options });
}

function poll(urlID: string, ackSeq: number, maxWait: number, path = ''): Promise<HttpResult> {
  return request(`/Session/${urlID}/${path}?ackSeq=${ackSeq}&maxWait=${maxWait}`);
}

async function account(address: string) {
  const record = await server.services.accounts.find(address);
  assert.ok(record);
  return record;
}

test('login with userName and password over GET answers the session element first, without id', async () => {
  const result = await request('/XIMSSLogin/?userName=web@example.test&password=secret&errorAsXML=1&version=6.1&unknownThing=7');
  assert.equal(result.status, 200);
  assert.equal(result.headers['content-type'], 'text/xml; charset=utf-8');
  assert.match(result.text, /^<XIMSS><session /);
  const session = parseXml(result.text).elements()[0]!;
  assert.equal(session.attrs.id, undefined);
  assert.match(session.attrs.urlID!, /^\d+-[A-Za-z0-9]{20}$/);
  assert.equal(session.attrs.userName, 'web@example.test');
  assert.equal(session.attrs.realName, 'Web User');
  assert.match(session.attrs.version!, /^6\.\d+\.\d+$/);
  assert.doesNotMatch(result.text, /<response/);
});

test('login by POSTed form, username casing, path casing and Basic authorization', async () => {
  const form = await request('/ximsslogin', {
    body: 'username=web%40example.test&password=secret',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  assert.equal(xml(form).elements()[0]!.name, 'session');
  const mixed = await request('/ximssLogin/?username=web&password=secret');
  assert.equal(xml(mixed).elements()[0]!.attrs.userName, 'web@example.test');
  const basic = await request('/XIMSSLogin/', {
    headers: { Authorization: 'Basic ' + Buffer.from('web@example.test:secret').toString('base64') },
  });
  assert.equal(xml(basic).elements()[0]!.name, 'session');
});

test('a failed login: errorAsXML gives the response element, otherwise a 401', async () => {
  const asXml = await request('/XIMSSLogin/?userName=web@example.test&password=wrong&errorAsXML=1');
  assert.equal(asXml.status, 200);
  assert.equal(asXml.text, '<XIMSS><response errorText="incorrect password or account name" errorNum="500"/></XIMSS>');
  const plain = await request('/XIMSSLogin/?userName=web@example.test&password=wrong');
  assert.equal(plain.status, 401);
  const none = await request('/XIMSSLogin/');
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /^Basic/);
  const badBasic = await request('/XIMSSLogin/?errorAsXML=1', {
    headers: { Authorization: 'Basic ' + Buffer.from('web@example.test:nope').toString('base64') },
  });
  assert.match(badBasic.text, /incorrect password or account name/);
});

async function nonce(): Promise<string> {
  const root = xml(await request('/XIMSSLogin/', { body: '<XIMSS><listFeatures id="1"/></XIMSS>' }));
  assert.deepEqual(names(root), ['features', 'response']);
  const features = root.elements()[0]!;
  assert.equal(features.attrs.id, '1');
  assert.deepEqual(features.elements('sasl').map((s) => s.text()), ['CRAM-MD5', 'PLAIN']);
  return features.element('nonce')!.text();
}

test('CRAM-MD5 login with a nonce from a pre-login listFeatures batch', async () => {
  const digest = (n: string): string => hmacMd5Hex('secret', n);
  const first = await nonce();
  const authData = Buffer.from(digest(first)).toString('base64');
  const query = `nonce=${encodeURIComponent(first)}&username=web@example.test&authData=${encodeURIComponent(authData)}&errorAsXML=1`;
  assert.equal(xml(await request(`/XIMSSLogin/?${query}`)).elements()[0]!.name, 'session');
  // A nonce is good for one login only.
  assert.match(xml(await request(`/XIMSSLogin/?${query}`)).toString(), /errorText="the nonce is unknown/);

  const second = await nonce();
  const withUser = Buffer.from(`web@example.test ${digest(second)}`).toString('base64');
  const form = `nonce=${encodeURIComponent(second)}&authData=${encodeURIComponent(withUser)}`;
  assert.equal(xml(await request('/XIMSSLogin/', { body: form })).elements()[0]!.name, 'session');

  const third = await nonce();
  const wrong = Buffer.from(hmacMd5Hex('bad', third)).toString('base64');
  const failed = await request(`/XIMSSLogin/?nonce=${encodeURIComponent(third)}&userName=web&authData=${encodeURIComponent(wrong)}&errorAsXML=1`);
  assert.match(failed.text, /incorrect password or account name/);
});

test('a login inside a pre-login batch starts an HTTP session', async () => {
  const root = xml(await request('/XIMSSLogin/', { body: '<XIMSS><login id="L" authData="web@example.test" password="secret"/></XIMSS>' }));
  assert.deepEqual(names(root), ['session', 'response']);
  const urlID = root.elements()[0]!.attrs.urlID!;
  assert.equal(root.elements()[1]!.toString(), '<response id="L"/>');
  assert.equal(xml(await sync(urlID, '<XIMSS><noop id="n"/></XIMSS>')).toString(), '<XIMSS><response id="n"/></XIMSS>');
});

test('a sync batch runs its requests in order and answers compactly', async () => {
  const urlID = await login();
  const body = `<?xml version="1.0"?>
<XIMSS>
  <setSessionData id="a" name="k">v1</setSessionData>
  <getSessionData id="b" name="k"/>
  <noop id="0"/>
  <noSuchThing id="c"/>
</XIMSS>`;
  const result = await sync(urlID, body, '?reqSeq=1&random=0.5');
  assert.equal(
    xml(result).toString(),
    '<XIMSS><response id="a"/><sessionData id="b" name="k">v1</sessionData><response id="b"/><response id="0"/>' +
      '<response id="c" errorText="unknown command" errorNum="500"/></XIMSS>',
  );
  assert.equal(result.text, xml(result).toString());
});

test('a repeated reqSeq answers again without running the batch again', async () => {
  const urlID = await login();
  await sync(urlID, '<XIMSS><setSessionData id="1" name="k">old</setSessionData></XIMSS>', '?reqSeq=1');
  const first = await sync(urlID, '<XIMSS><getSessionData id="2" name="k"/></XIMSS>', '?reqSeq=2');
  await sync(urlID, '<XIMSS><setSessionData id="3" name="k">new</setSessionData></XIMSS>', '?reqSeq=3');
  const retried = await sync(urlID, '<XIMSS><getSessionData id="2" name="k"/></XIMSS>', '?reqSeq=2');
  assert.equal(retried.text, first.text);
  assert.match(retried.text, />old</);
  const fresh = await sync(urlID, '<XIMSS><getSessionData id="4" name="k"/></XIMSS>', '?reqSeq=4');
  assert.match(fresh.text, />new</);
  // A retried set does not run again either.
  await sync(urlID, '<XIMSS><setSessionData id="3" name="k">again</setSessionData></XIMSS>', '?reqSeq=3');
  assert.match((await sync(urlID, '<XIMSS><getSessionData id="5" name="k"/></XIMSS>')).text, />new</);
});

test('sync sent as GET with a body, with any Content-Type or none', async () => {
  const urlID = await login();
  const get = await request(`/Session/${urlID}/sync`, { method: 'GET', body: '<XIMSS><noop id="g"/></XIMSS>' });
  assert.equal(xml(get).toString(), '<XIMSS><response id="g"/></XIMSS>');
  const json = await sync(urlID, '<XIMSS><noop id="j"/></XIMSS>', '', { headers: { 'Content-Type': 'application/json' } });
  assert.equal(xml(json).toString(), '<XIMSS><response id="j"/></XIMSS>');
  const bare = await sync(urlID, '<XIMSS><noop id="noop"/></XIMSS>', '', { headers: {} });
  assert.equal(xml(bare).toString(), '<XIMSS><response id="noop"/></XIMSS>');
});

test('an async batch is answered at once and its output comes through the long poll', async () => {
  const urlID = await login();
  const queued = await request(`/Session/${urlID}/async?reqSeq=1`, { body: '<XIMSS><readSession id="r"/><noop id="n"/></XIMSS>' });
  assert.equal(queued.text, '<XIMSS/>');
  const root = xml(await poll(urlID, 0, 1));
  assert.equal(root.attrs.respSeq, '1');
  assert.deepEqual(names(root), ['session', 'response', 'response']);
  assert.equal(root.elements()[0]!.attrs.id, 'r');
  assert.equal(root.elements()[2]!.attrs.id, 'n');
});

test('syncAsync=1 brings pending async messages along with the sync answer', async () => {
  const urlID = await login();
  await request(`/Session/${urlID}/async`, { body: '<XIMSS><noop id="queued"/></XIMSS>' });
  const root = xml(await sync(urlID, '<XIMSS><noop id="s"/></XIMSS>', '?syncAsync=1'));
  assert.equal(root.toString(), '<XIMSS><response id="s"/><response id="queued"/></XIMSS>');
  assert.equal((await poll(urlID, 0, 0)).text, '<XIMSS/>');
});

test('long poll: alerts arrive, respSeq counts non-empty answers, an unacknowledged answer is resent', async () => {
  const urlID = await login();
  const web = await account('web@example.test');
  const waiting = poll(urlID, 0, 1, 'get');
  await server.services.alerts.post(web, 'first');
  const first = xml(await waiting);
  assert.equal(first.attrs.respSeq, '1');
  assert.deepEqual(first.elements().map((e) => [e.name, e.text()]), [['alert', 'first']]);
  assert.ok(first.elements()[0]!.attrs.gmtTime);

  // Not acknowledged: the same answer again, under the same number.
  const again = xml(await poll(urlID, 0, 1));
  assert.equal(again.toString(), first.toString());

  // Acknowledged: the next non-empty answer is number 2.
  const next = poll(urlID, 1, 1);
  await server.services.alerts.post(web, 'second');
  const second = xml(await next);
  assert.equal(second.attrs.respSeq, '2');
  assert.deepEqual(second.elements().map((e) => e.text()), ['second']);
  assert.deepEqual(xml(await poll(urlID, 1, 0)).elements().map((e) => e.text()), ['second']);

  // Acknowledged: nothing more to say.
  assert.equal((await poll(urlID, 2, 0)).text, '<XIMSS/>');
});

test('an unacknowledged answer is resent together with new messages', async () => {
  const urlID = await login();
  await request(`/Session/${urlID}/async`, { body: '<XIMSS><noop id="a"/></XIMSS>' });
  assert.equal((await poll(urlID, 0, 1)).text, '<XIMSS respSeq="1"><response id="a"/></XIMSS>');
  await request(`/Session/${urlID}/async`, { body: '<XIMSS><noop id="b"/></XIMSS>' });
  await sync(urlID, '<XIMSS><noop id="after"/></XIMSS>'); // the async batch has run by now
  assert.equal((await poll(urlID, 0, 1)).text, '<XIMSS respSeq="1"><response id="a"/><response id="b"/></XIMSS>');
  await request(`/Session/${urlID}/async`, { body: '<XIMSS><noop id="c"/></XIMSS>' });
  assert.equal((await poll(urlID, 1, 1)).text, '<XIMSS respSeq="2"><response id="c"/></XIMSS>');
});

test('an idle poll answers empty after maxWait, and a newer poll supersedes a waiting one', async () => {
  const urlID = await login();
  let started = Date.now();
  assert.equal((await poll(urlID, 0, 1)).text, '<XIMSS/>');
  const waited = Date.now() - started;
  assert.ok(waited >= 900 && waited < 1800, `waited ${waited} ms`);

  started = Date.now();
  const older = poll(urlID, 0, 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const newer = await poll(urlID, 0, 0);
  assert.equal((await older).text, '<XIMSS/>');
  assert.equal(newer.text, '<XIMSS/>');
  assert.ok(Date.now() - started < 500);
});

test('a server-side logout reaches the waiting poll as bye; then the session answers 550', async () => {
  const urlID = await login();
  const waiting = poll(urlID, 0, 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  server.services.sessions.end(server.services.sessions.get(urlID)!, true);
  const root = xml(await waiting);
  assert.equal(root.toString(), '<XIMSS respSeq="1"><bye/></XIMSS>');
  assert.equal((await poll(urlID, 1, 0)).status, 550);
  assert.equal((await sync(urlID, '<XIMSS><noop id="1"/></XIMSS>')).status, 550);
});

test('a server-side logout while no poll waits: the next poll gets bye (after what was queued) once, then 550', async () => {
  const { sessions } = server.services;
  // Ended by the server (as shutdown and the idle time-out do), with an answer not yet polled.
  const urlID = await login();
  await request(`/Session/${urlID}/async`, { body: '<XIMSS><noop id="q"/></XIMSS>' });
  await sync(urlID, '<XIMSS><noop id="after"/></XIMSS>'); // the async batch has run by now
  sessions.end(sessions.get(urlID)!, true);
  assert.equal(sessions.get(urlID), undefined);
  // Requests other than polls learn at once that the session is gone, and leave the bye alone.
  assert.equal((await sync(urlID, '<XIMSS><noop id="1"/></XIMSS>')).status, 550);
  assert.equal((await request(`/Session/${urlID}/async`, { body: '<XIMSS><noop id="2"/></XIMSS>' })).status, 550);
  assert.equal((await request(`/Session/${urlID}/KILL`)).status, 550);
  // Not from another address either (the session's IP watch still applies).
  assert.equal((await request(`/Session/${urlID}/?ackSeq=0&maxWait=0`, { localAddress: '127.0.0.2' })).status, 550);
  const started = Date.now();
  assert.equal((await poll(urlID, 0, 5, 'get')).text, '<XIMSS respSeq="1"><response id="q"/><bye/></XIMSS>');
  assert.ok(Date.now() - started < 1000, 'answered at once');
  assert.equal((await poll(urlID, 0, 0)).status, 550);
  assert.equal((await poll(urlID, 1, 0)).status, 550);

  // An answer sent but not acknowledged comes again with the bye.
  await server.addAccount('removed@example.test', 'pass3');
  const removed = await login('removed@example.test', 'pass3');
  await request(`/Session/${removed}/async`, { body: '<XIMSS><noop id="a"/></XIMSS>' });
  assert.equal((await poll(removed, 0, 1)).text, '<XIMSS respSeq="1"><response id="a"/></XIMSS>');
  await server.services.accounts.remove(await account('removed@example.test'));
  assert.equal((await poll(removed, 0, 0)).text, '<XIMSS respSeq="1"><response id="a"/><bye/></XIMSS>');
  assert.equal((await poll(removed, 1, 0)).status, 550);

  // A session the client ended itself (bye, KILL) has no bye waiting: 550 at once.
  const byClient = await login();
  assert.equal(xml(await sync(byClient, '<XIMSS><bye id="b"/></XIMSS>')).toString(), '<XIMSS><response id="b"/></XIMSS>');
  assert.equal((await poll(byClient, 0, 0)).status, 550);
  const killed = await login();
  assert.equal((await request(`/Session/${killed}/KILL`)).status, 200);
  assert.equal((await poll(killed, 0, 0)).status, 550);
});

test('an uncollected bye is kept for a grace period only', async () => {
  const first = await login();
  const second = await login();
  server.services.sessions.end(server.services.sessions.get(first)!, true);
  const ended = Date.now();
  mock.timers.enable({ apis: ['Date'], now: ended + BYE_GRACE_MS - 1000 });
  try {
    assert.ok(endedHttpSession(server.services.sessions, first), 'kept until the grace period ends');
    server.services.sessions.end(server.services.sessions.get(second)!, true);
    mock.timers.setTime(ended + BYE_GRACE_MS + 1);
    assert.equal(endedHttpSession(server.services.sessions, first), undefined, 'dropped after it');
    assert.ok(endedHttpSession(server.services.sessions, second), 'a later one is still kept');
  } finally {
    mock.timers.reset();
  }
  assert.equal((await poll(first, 0, 0)).status, 550);
  assert.equal((await poll(second, 0, 0)).text, '<XIMSS respSeq="1"><bye/></XIMSS>');
});

test('bye in a sync batch is answered, then the session is gone', async () => {
  const urlID = await login();
  const waiting = poll(urlID, 0, 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(xml(await sync(urlID, '<XIMSS><bye id="b"/></XIMSS>')).toString(), '<XIMSS><response id="b"/></XIMSS>');
  assert.equal((await waiting).status, 550);
  assert.equal((await sync(urlID, '<XIMSS><noop id="1"/></XIMSS>')).status, 550);
});

test('KILL ends the session; unknown sessions answer 550 on every URL', async () => {
  const urlID = await login();
  assert.equal((await request(`/Session/${urlID}/KILL`)).status, 200);
  assert.equal(server.services.sessions.get(urlID), undefined);
  for (const path of ['/sync', '/', '/get', '/async', '/MIME/INBOX/1-B.txt', '/KILL']) {
    assert.equal((await request(`/Session/${urlID}${path}`)).status, 550, path);
  }
  assert.equal((await request('/Session/1-AAAAAAAAAAAAAAAAAAAA/sync', { body: '<XIMSS/>' })).status, 550);
  assert.equal((await request('/Session/%E0%A4%A/?ackSeq=0&maxWait=0')).status, 550);
});

test('killOld ends the account\'s other sessions; sessionid re-attaches to a live session', async () => {
  const a = await login('other@example.test', 'pass2');
  const b = await login('other@example.test', 'pass2');
  const c = await login('other@example.test', 'pass2', '&killOld=1');
  assert.notEqual(c, a);
  for (const killed of [a, b]) {
    assert.equal((await poll(killed, 0, 0)).text, '<XIMSS respSeq="1"><bye/></XIMSS>');
    assert.equal((await poll(killed, 1, 0)).status, 550);
  }
  assert.equal((await poll(c, 0, 0)).status, 200);

  const d = await login('other@example.test', 'pass2');
  assert.equal(await login('other@example.test', 'pass2', `&sessionid=${c}`), c);
  assert.equal((await poll(d, 0, 0)).status, 200);
  assert.equal(await login('other@example.test', 'pass2', `&sessionid=${c}&killOld=1`), c);
  assert.match((await poll(d, 0, 0)).text, /<bye\/><\/XIMSS>$/);
  assert.equal((await poll(d, 0, 0)).status, 550);
  assert.equal((await poll(c, 0, 0)).status, 200);

  // Another account's session is not taken over.
  const mine = await login();
  assert.notEqual(await login('other@example.test', 'pass2', `&sessionid=${mine}`), mine);
  // Wrong credentials never re-attach.
  const refused = await request(`/XIMSSLogin/?userName=other@example.test&password=bad&sessionid=${c}`);
  assert.equal(refused.status, 401);
});

test('requests must come from the login address unless DisableIPWatch=1', async () => {
  const guarded = await login();
  assert.equal((await poll(guarded, 0, 0, 'get')).status, 200);
  assert.equal((await request(`/Session/${guarded}/?maxWait=0`, { localAddress: '127.0.0.2' })).status, 550);
  const free = await login('web@example.test', 'secret', '&DisableIPWatch=1');
  const result = await sync(free, '<XIMSS><noop id="x"/></XIMSS>', '', { localAddress: '127.0.0.2' });
  assert.equal(xml(result).toString(), '<XIMSS><response id="x"/></XIMSS>');
});

test('EnableUseCookie=1 sets the session cookie, which later requests must carry', async () => {
  const result = await request('/XIMSSLogin/?userName=web&password=secret&EnableUseCookie=1');
  const urlID = xml(result).elements()[0]!.attrs.urlID!;
  const cookie = String(result.headers['set-cookie']);
  assert.match(cookie, new RegExp(`^CGateProWebUser=${urlID};`));
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /Path=\//);
  assert.equal((await sync(urlID, '<XIMSS><noop id="1"/></XIMSS>')).status, 550);
  const withCookie = await sync(urlID, '<XIMSS><noop id="1"/></XIMSS>', '', {
    headers: { Cookie: `theme=dark; CGateProWebUser=${urlID}` },
  });
  assert.equal(xml(withCookie).toString(), '<XIMSS><response id="1"/></XIMSS>');
  // Without the option no cookie is set, and none is needed.
  const plain = await request('/XIMSSLogin/?userName=web&password=secret&DisableUseCookie=1');
  assert.equal(plain.headers['set-cookie'], undefined);
});

test('polls keep an HTTP session alive; its idle time-out ends it', async () => {
  const urlID = await login();
  const session = server.services.sessions.get(urlID)!;
  session.setIdleTimeout(0.3);
  for (let i = 0; i < 4; i++) {
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.equal((await poll(urlID, 0, 0)).status, 200);
  }
  await new Promise((resolve) => setTimeout(resolve, 450));
  assert.equal((await poll(urlID, 0, 0)).text, '<XIMSS respSeq="1"><bye/></XIMSS>');
  assert.equal((await poll(urlID, 0, 0)).status, 550);
});

test('a raw XIMSS connection on the HTTP port is served as XIMSS over TCP', async () => {
  const client = await XimssClient.connect(server.ports.http);
  await client.login('web@example.test', 'secret');
  assert.equal((await client.request('<noop/>')).response.attrs.errorText, undefined);
  client.close();
});

test('bad input: malformed XML, bad encodings, unknown paths and methods, later resources, CORS', async () => {
  const urlID = await login();
  const malformed = xml(await sync(urlID, '<XIMSS><noop id="1"></XIMSS>'));
  assert.match(malformed.elements()[0]!.attrs.errorText!, /^malformed XML/);
  assert.match(xml(await sync(urlID, 'this is not XML')).elements()[0]!.attrs.errorText!, /^malformed XML/);
  assert.equal(xml(await sync(urlID, '')).toString(), '<XIMSS/>');
  assert.match(xml(await sync(urlID, '<XIMSS><noop/></XIMSS>')).toString(), /the id attribute is missing/);
  assert.match(xml(await request('/XIMSSLogin/', { body: '<XIMSS><listFeatures' })).toString(), /malformed XML/);
  assert.equal((await request('/XIMSSLogin/?userName=%E0%A4%A&password=%%%&errorAsXML=1')).status, 200);
  assert.equal((await request('/nothing/here')).status, 404);
  assert.equal((await request('/%%%')).status, 404);
  assert.equal((await request(`/Session/${urlID}/whatever`)).status, 404);
  for (const [resource, text] of [
    ['MIME/INBOX/5-01-B.gif', /folder has not been opened/],
    ['MIME/INBOX/nonsense', /expected \/MIME/],
    ['DOWNLOAD/file.txt', /file is not found/],
    ['DOWNLOAD/$UPLOAD$/none', /file is not found/],
    ['Export/Contacts/c.vcf', /not implemented/],
  ] as const) {
    const result = await request(`/Session/${urlID}/${resource}`);
    assert.equal(result.status, 404, resource);
    assert.match(result.text, text);
  }
  assert.equal((await request('/XIMSSLogin/', { method: 'PUT', body: 'x' })).status, 405);
  const preflight = await request(`/Session/${urlID}/sync`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://client.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers['access-control-allow-origin'], '*');
  assert.match(String(preflight.headers['access-control-allow-methods']), /POST/);
  assert.equal(preflight.headers['access-control-allow-headers'], 'content-type');
  // The session survived all of it.
  assert.equal(xml(await sync(urlID, '<XIMSS><noop id="ok"/></XIMSS>')).toString(), '<XIMSS><response id="ok"/></XIMSS>');
});

test('keep-alive: several requests on one connection', async () => {
  const urlID = await login();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<unknown>();
  for (let i = 0; i < 3; i++) {
    const text = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: server.ports.http, path: `/Session/${urlID}/sync`, method: 'POST', agent },
        (res) => {
          sockets.add(res.socket);
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
      req.end(`<XIMSS><noop id="${i}"/></XIMSS>`);
    });
    assert.equal(text, `<XIMSS><response id="${i}"/></XIMSS>`);
  }
  assert.equal(sockets.size, 1);
  agent.destroy();
});

test('limits: request size and requests per batch', async () => {
  const small = await startTestServer({ limits: { maxRequestBytes: 2000, maxPendingRequests: 3 } });
  try {
    await small.addAccount('web@example.test', 'secret');
    const login = parseXml((await request('/XIMSSLogin/?userName=web&password=secret', { port: small.ports.http })).text);
    const urlID = login.elements()[0]!.attrs.urlID!;
    const big = `<XIMSS><noop id="${'x'.repeat(3000)}"/></XIMSS>`;
    const tooLarge = await sync(urlID, big, '', { port: small.ports.http });
    assert.equal(tooLarge.status, 413);
    const four = '<XIMSS><noop id="1"/><noop id="2"/><noop id="3"/><noop id="4"/></XIMSS>';
    assert.match((await sync(urlID, four, '', { port: small.ports.http })).text, /too many requests/);
    const three = '<XIMSS><noop id="1"/><noop id="2"/><noop id="3"/></XIMSS>';
    assert.equal((await sync(urlID, three, '', { port: small.ports.http })).text, '<XIMSS><response id="1"/><response id="2"/><response id="3"/></XIMSS>');
  } finally {
    await small.stop();
  }
});

test('stopping the server answers waiting polls with bye and closes connections', async () => {
  const other = await startTestServer();
  await other.addAccount('web@example.test', 'secret');
  const login = parseXml((await request('/XIMSSLogin/?userName=web&password=secret', { port: other.ports.http })).text);
  const urlID = login.elements()[0]!.attrs.urlID!;
  const waiting = request(`/Session/${urlID}/?ackSeq=0&maxWait=1`, { port: other.ports.http });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const started = Date.now();
  await other.stop();
  assert.equal((await waiting).text, '<XIMSS respSeq="1"><bye/></XIMSS>');
  assert.ok(Date.now() - started < 500);
});

test('HTTPS: the same listener over TLS, raw XIMSS over TLS included', async () => {
  assert.ok(server.services.tls, 'the test server has a TLS context');
  const engine = new Engine(server.services);
  registerOperations(engine);
  const tcp = new TcpListener(engine);
  const listener = new HttpListener(engine, tcp, server.services.tls);
  const port = await listener.listen(0, '127.0.0.1');
  const get = (path: string, body?: string): Promise<HttpResult> =>
    new Promise((resolve, reject) => {
      const options = { host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', rejectUnauthorized: false, agent: false };
      const req = https.request(options, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  try {
    const loggedIn = await get('/XIMSSLogin/?userName=web&password=secret&EnableUseCookie=1');
    const urlID = xml(loggedIn).elements()[0]!.attrs.urlID!;
    assert.match(String(loggedIn.headers['set-cookie']), /; Secure/);
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => socket.write('<listFeatures id="f"/>\0'));
      socket.on('data', (data: Buffer) => {
        resolve(data.toString());
        socket.destroy();
      });
      socket.on('error', reject);
    });
    assert.match(raw, /^<features id="f">/);
    server.services.sessions.end(server.services.sessions.get(urlID)!, false);
  } finally {
    await listener.close();
    await tcp.close();
  }
});
