/**
 * retrieveXML and httpCall over the wire, against a local HTTP server that each test server's
 * configuration allows explicitly (fetch.allow names its address and port): what they answer,
 * which destinations they refuse (loopback and private addresses, the server's own ports,
 * other schemes, redirects to any of these), and their size, time and per-account limits.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { capturingLogger, eventually, fails, freePort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** The remote server the tests fetch from; `seen` records what reached it. */
async function startRemote(): Promise<{ port: number; seen: Seen[]; hanging: net.Socket[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const hanging: net.Socket[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://remote');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      switch (url.pathname) {
        case '/doc.xml':
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          res.end('<?xml version="1.0" encoding="UTF-8"?>\n<catalog version="2"><item id="1">caf\u00e9</item><item id="2"/></catalog>');
          return;
        case '/latin1.xml':
          res.writeHead(200, { 'Content-Type': 'text/xml' });
          res.end(Buffer.concat([Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><a>'), Buffer.from([0xe9]), Buffer.from('</a>')]));
          return;
        case '/plain':
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          res.end('just text, not a document');
          return;
        case '/deep.xml':
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          res.end('<a>'.repeat(200) + '</a>'.repeat(200));
          return;
        case '/laughs.xml':
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          res.end('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>');
          return;
        case '/big': {
          // No Content-Length: read until the limit is crossed.
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          const chunk = '<x>' + 'y'.repeat(8189) + '</x>';
          res.write('<big>');
          let sent = 0;
          const more = (): void => {
            while (sent < 64) {
              sent++;
              if (!res.write(chunk)) return void res.once('drain', more);
            }
            res.end('</big>');
          };
          more();
          return;
        }
        case '/big-declared':
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(4 * 1024 * 1024) });
          res.end(Buffer.alloc(4 * 1024 * 1024));
          return;
        case '/missing':
          res.writeHead(404, { 'Content-Type': 'text/plain' });
          res.end('no such thing');
          return;
        case '/binary':
          res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
          res.end(Buffer.from([0, 1, 2, 255]));
          return;
        case '/echo':
          res.writeHead(201, 'Made', { 'Content-Type': 'application/json', 'X-Echo': 'yes' });
          res.end(JSON.stringify({ method: req.method, url: req.url, contentType: req.headers['content-type'] ?? null, body: Buffer.concat(chunks).toString('latin1') }));
          return;
        case '/redirect':
          res.writeHead(Number(url.searchParams.get('status') ?? '302'), { Location: url.searchParams.get('to') ?? '/doc.xml' });
          res.end();
          return;
        case '/loop':
          res.writeHead(302, { Location: '/loop' });
          res.end();
          return;
        case '/hang':
          hanging.push(req.socket);
          return; // never answered
        default:
          res.writeHead(500);
          res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    seen,
    hanging,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of hanging) socket.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Remote = Awaited<ReturnType<typeof startRemote>>;

function retrieveXML(url: string, attrs: Record<string, string> = {}): XmlElement {
  return new XmlElement('retrieveXML', { url, ...attrs });
}

function httpCall(url: string, attrs: Record<string, string> = {}, body = ''): string {
  const attributes = Object.entries({ url, ...attrs })
    .map(([k, v]) => ` ${k}="${v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')}"`)
    .join('');
  return `<httpCall${attributes}>${body}</httpCall>`;
}

describe('retrieveXML and httpCall', () => {
  let remote: Remote;
  let closed: number;
  let server: TestServer;
  let client: XimssClient;
  let base: string;

  before(async () => {
    remote = await startRemote();
    closed = await freePort();
    server = await startTestServer({
      fetch: { httpCall: true, allow: [`127.0.0.1:${remote.port}`], maxBytes: 256 * 1024, requestsPerMinute: 1000, concurrentPerAccount: 4 },
    });
    base = `http://127.0.0.1:${remote.port}`;
    ({ client } = await server.login(await server.newAccount('fetcher'), 'secret'));
  });
  after(async () => {
    await server?.stop();
    await remote?.close();
  });

  test('retrieveXML answers retrievedXML with the document root, text decoded by its charset', async () => {
    const reply = await ok(client, retrieveXML(`${base}/doc.xml`));
    assert.equal(reply.messages.length, 1);
    const message = reply.messages[0]!;
    assert.equal(message.name, 'retrievedXML');
    assert.equal(message.attrs.url, `${base}/doc.xml`);
    const root = message.elements()[0]!;
    assert.equal(root.name, 'catalog');
    assert.equal(root.attrs.version, '2');
    assert.deepEqual(root.elements('item').map((i) => i.attrs.id), ['1', '2']);
    assert.equal(root.elements('item')[0]!.text(), 'caf\u00e9');
    const latin = await ok(client, retrieveXML(`${base}/latin1.xml`));
    assert.equal(latin.messages[0]!.elements()[0]!.text(), '\u00e9');
    assert.match(String(remote.seen.at(-1)!.headers.accept), /xml/);
  });

  test('a redirect to an allowed place is followed', async () => {
    const reply = await ok(client, retrieveXML(`${base}/redirect?to=${encodeURIComponent('/doc.xml')}`));
    assert.equal(reply.messages[0]!.elements()[0]!.name, 'catalog');
  });

  test('an answer that is not XML, breaks the XML guard or declares entities is a clear error', async () => {
    await fails(client, retrieveXML(`${base}/plain`), /^the document is not XML: /);
    await fails(client, retrieveXML(`${base}/deep.xml`), /not XML: .*nested deeper than 64/);
    await fails(client, retrieveXML(`${base}/laughs.xml`), /^the document is not XML: /);
    await fails(client, retrieveXML(`${base}/missing`), 'the document could not be retrieved: HTTP 404');
  });

  test('an answer over fetch.maxBytes is refused, with or without Content-Length', async () => {
    await fails(client, retrieveXML(`${base}/big`), 'the document is too large (at most 262144 bytes)');
    await fails(client, httpCall(`${base}/big-declared`), 'the document is too large (at most 262144 bytes)');
    await ok(client, '<noop/>');
  });

  test('a server that never answers is given up at the time limit', async () => {
    await fails(client, retrieveXML(`${base}/hang`, { timeout: '1' }), 'the document could not be retrieved: timed out');
    await fails(client, httpCall(`${base}/hang`, { timeout: '1' }), 'the document could not be retrieved: timed out');
    await ok(client, '<noop/>');
  });

  test('loopback and private addresses, and other schemes, are refused', async () => {
    const before = remote.seen.length;
    const privateText = 'the document url names a private or local address, which this server does not fetch';
    for (const url of [`http://127.0.0.1:${closed}/`, `http://[::1]:${remote.port}/`, 'http://10.1.2.3/', 'http://192.168.1.1/', 'http://169.254.169.254/latest/meta-data/', 'http://[fd00::1]/', 'http://0.0.0.0/', `http://localhost:${closed}/`]) {
      await fails(client, retrieveXML(url), privateText, url);
      await fails(client, httpCall(url), privateText, url);
    }
    for (const url of ['file:///etc/passwd', 'ftp://example.com/', 'gopher://127.0.0.1:70/', 'data:text/xml,<a/>']) {
      await fails(client, retrieveXML(url), 'the url must be http or https', url);
      await fails(client, httpCall(url), 'the url must be http or https', url);
    }
    await fails(client, retrieveXML('not a url'), /^invalid url: /);
    await fails(client, retrieveXML(`http://user:pw@127.0.0.1:${remote.port}/doc.xml`), 'the url must not carry a user name or password');
    await fails(client, '<retrieveXML/>', 'the url attribute is missing');
    assert.equal(remote.seen.length, before, 'nothing reached the allowed server');
  });

  test('the server\'s own ports are refused even where loopback is allowed, unless listed with the port', async () => {
    const httpPort = await freePort();
    const open = await startTestServer({ ports: { http: httpPort }, fetch: { httpCall: true, allow: ['127.0.0.0/8', '::1', `127.0.0.1:${httpPort}`] } });
    try {
      const { client: user } = await open.login(await open.newAccount('own'), 'secret');
      for (const port of [open.ports.ximss, open.ports.smtp].filter((p): p is number => p !== undefined)) {
        await fails(user, httpCall(`http://127.0.0.1:${port}/`), `the document url names this server's own port ${port}, which it does not fetch`);
        await fails(user, httpCall(`http://localhost:${port}/`), `the document url names this server's own port ${port}, which it does not fetch`);
      }
      // Another loopback port is allowed by 127.0.0.0/8; the HTTP port by its own entry.
      await ok(user, httpCall(`${base}/binary`));
      const ready = await ok(user, httpCall(`http://127.0.0.1:${httpPort}/readyz`));
      assert.equal(ready.messages[0]!.attrs.responseCode, '200');
      // Only that address was listed with the port.
      await fails(user, httpCall(`http://[::1]:${httpPort}/readyz`), /own port/);
    } finally {
      await open.stop();
    }
    // Where the port is not listed, the HTTP port is refused like the others.
    await fails(client, httpCall(`http://127.0.0.1:${server.ports.http}/readyz`), `the document url names this server's own port ${server.ports.http}, which it does not fetch`);
  });

  test('a redirect to a forbidden place is refused at that hop', async () => {
    const to = (target: string, status = '302'): string => `${base}/redirect?status=${status}&to=${encodeURIComponent(target)}`;
    await fails(client, retrieveXML(to(`http://127.0.0.1:${closed}/x`)), 'the document url names a private or local address, which this server does not fetch');
    await fails(client, retrieveXML(to('http://10.0.0.1/x', '301')), 'the document url names a private or local address, which this server does not fetch');
    await fails(client, httpCall(to('http://[::1]/x', '307'), { method: 'POST' }, 'data'), 'the document url names a private or local address, which this server does not fetch');
    await fails(client, retrieveXML(to(`http://127.0.0.1:${server.ports.ximss}/`)), `the document url names this server's own port ${server.ports.ximss}, which it does not fetch`);
    await fails(client, retrieveXML(to('file:///etc/passwd')), 'the document could not be retrieved: a redirect to another scheme');
    const loops = remote.seen.filter((s) => s.url === '/loop').length;
    await fails(client, retrieveXML(`${base}/loop`), 'the document could not be retrieved: too many redirects');
    assert.equal(remote.seen.filter((s) => s.url === '/loop').length - loops, 6, 'the first request and fetch.redirects (5) redirects');
  });

  test('httpCall sends the method, body, form fields, header fields and URL parameters it is given', async () => {
    const echo = async (request: string): Promise<{ method: string; url: string; contentType: string | null; body: string }> => {
      const reply = await ok(client, request);
      assert.equal(reply.messages.length, 1);
      const message = reply.messages[0]!;
      assert.equal(message.name, 'retrievedURL');
      assert.equal(message.attrs.responseCode, '201');
      assert.equal(message.attrs.responseText, 'Made');
      assert.equal(message.attrs['Content-Type'], 'application/json');
      assert.equal(message.attrs['X-Echo'], 'yes');
      return JSON.parse(message.text()) as { method: string; url: string; contentType: string | null; body: string };
    };
    const plain = await echo(httpCall(`${base}/echo`, { contentType: 'text/plain' }, 'hello &amp; bye'));
    assert.deepEqual(plain, { method: 'POST', url: '/echo', contentType: 'text/plain', body: 'hello & bye' });
    const inBody = await echo(httpCall(`${base}/echo`, { method: 'put' }, '<body>in a body</body>'));
    assert.equal(inBody.method, 'PUT');
    assert.equal(inBody.body, 'in a body');
    const binary = await echo(httpCall(`${base}/echo`, { contentType: 'application/octet-stream' }, `<base64>${Buffer.from([0xc3, 0x01, 0x7f]).toString('base64')}</base64>`));
    assert.equal(Buffer.from(binary.body, 'latin1').toString('hex'), 'c3017f');
    const form = await echo(httpCall(`${base}/echo`, {}, '<field name="a">1 2</field><field name="b">x&amp;y</field>'));
    assert.equal(form.contentType, 'application/x-www-form-urlencoded;charset=UTF-8');
    assert.equal(form.body, 'a=1+2&b=x%26y');
    const multipart = await echo(httpCall(`${base}/echo`, {}, `<field name="t">text</field><field name="f"><base64>${Buffer.from('file data').toString('base64')}</base64></field>`));
    assert.match(multipart.contentType ?? '', /^multipart\/form-data; boundary=/);
    assert.match(multipart.body, /name="t"\r\n\r\ntext\r\n/);
    assert.match(multipart.body, /name="f"; filename="f"[\s\S]*\r\n\r\nfile data\r\n/);
    const params = await echo(httpCall(`${base}/echo?x=1`, { method: 'GET' }, '<urlParams><subKey key="q">a b</subKey><subKey key="r">&amp;</subKey></urlParams><supplFields><subKey key="X-Token">t1</subKey></supplFields>'));
    assert.equal(params.method, 'GET');
    assert.equal(params.url, '/echo?x=1&q=a+b&r=%26');
    assert.equal(remote.seen.at(-1)!.headers['x-token'], 't1');
  });

  test('httpCall answers any status, and binary bodies as base64', async () => {
    const missing = await ok(client, httpCall(`${base}/missing`));
    assert.equal(missing.messages[0]!.attrs.responseCode, '404');
    assert.equal(missing.messages[0]!.text(), 'no such thing');
    const binary = await ok(client, httpCall(`${base}/binary`));
    assert.equal(binary.messages[0]!.element('base64')?.text(), Buffer.from([0, 1, 2, 255]).toString('base64'));
    const asXml = await ok(client, httpCall(`${base}/doc.xml`, { responseFormat: 'XML' }));
    assert.equal(asXml.messages[0]!.elements()[0]!.name, 'catalog');
    const asBinary = await ok(client, httpCall(`${base}/plain`, { responseFormat: 'binary' }));
    assert.equal(Buffer.from(asBinary.messages[0]!.element('base64')!.text(), 'base64').toString(), 'just text, not a document');
    await fails(client, httpCall(`${base}/plain`, { responseFormat: 'XML' }), /^the document is not XML: /);
    // 303 turns the POST into a GET without its body.
    const seeOther = await ok(client, httpCall(`${base}/redirect?status=303&to=${encodeURIComponent('/echo')}`, {}, 'gone'));
    assert.match(seeOther.messages[0]!.text(), /"method":"GET".*"body":""/);
  });

  test('bad httpCall requests get clear errors and send nothing', async () => {
    const before = remote.seen.length;
    const url = `${base}/echo`;
    await fails(client, httpCall(url, { method: 'CONNECT' }), /^the method must be one of GET, HEAD, POST/);
    await fails(client, httpCall(url, { method: 'GET' }, 'body text'), 'a GET request has no body');
    await fails(client, httpCall(url, { bogus: '1' }), /^unknown httpCall attribute "bogus"/);
    await fails(client, httpCall(url, { timeout: 'soon' }), 'the timeout attribute must be a number of seconds greater than 0');
    await fails(client, httpCall(url, { responseFormat: 'pdf' }), 'the responseFormat attribute must be text, binary or XML');
    await fails(client, httpCall(url, {}, 'text<body>more</body>'), /^the request body is given twice/);
    await fails(client, httpCall(url, {}, '<base64>***</base64>'), 'the base64 element is not base64');
    await fails(client, httpCall(url, {}, '<supplFields><subKey key="Host">evil</subKey></supplFields>'), 'supplFields: the Host field is set by the server');
    await fails(client, httpCall(url, {}, '<supplFields><subKey key="Bad Name">x</subKey></supplFields>'), /is not a header field name/);
    await fails(client, httpCall(url, {}, '<supplFields><subKey key="X-A">a&#13;&#10;Injected: 1</subKey></supplFields>'), 'supplFields: the value of X-A has a line break');
    await fails(client, httpCall(url, {}, '<supplFields><subValue>x</subValue></supplFields>'), 'supplFields must hold subKey elements');
    await fails(client, httpCall(url, {}, '<field>nameless</field>'), 'the name attribute is missing');
    await fails(client, httpCall(url, {}, '<field name="d"><subKey key="k">v</subKey></field>'), 'field "d": the value must be text or base64 data');
    await fails(client, httpCall(url, {}, '<script/>'), /^unexpected <script> in httpCall/);
    await fails(client, `<httpCall url="${url}" contentType="a&#10;b"/>`, 'the contentType attribute has a line break');
    assert.equal(remote.seen.length, before, 'nothing reached the remote server');
    await ok(client, '<noop/>');
  });
});

describe('retrieveXML and httpCall: configuration and per-account limits', () => {
  let remote: Remote;

  before(async () => {
    remote = await startRemote();
  });
  after(() => remote?.close());

  test('httpCall is off by default (retrieveXML on), and fetch.retrieveXML turns retrieveXML off', async () => {
    const plain = await startTestServer({ fetch: { allow: [`127.0.0.1:${remote.port}`] } });
    try {
      const { client } = await plain.login(await plain.newAccount('defaults'), 'secret');
      await fails(client, httpCall(`http://127.0.0.1:${remote.port}/doc.xml`), 'httpCall is disabled on this server');
      await ok(client, retrieveXML(`http://127.0.0.1:${remote.port}/doc.xml`));
      // Without the entry the remote server is a loopback address like any other.
      const strict = await startTestServer({ fetch: { retrieveXML: false } });
      try {
        const { client: other } = await strict.login(await strict.newAccount('strict'), 'secret');
        await fails(other, retrieveXML(`http://127.0.0.1:${remote.port}/doc.xml`), 'retrieveXML is disabled on this server');
      } finally {
        await strict.stop();
      }
    } finally {
      await plain.stop();
    }
  });

  test('fetch.allowPrivate opens private addresses but not the server\'s own ports', async () => {
    const open = await startTestServer({ fetch: { httpCall: true, allowPrivate: true } });
    try {
      const { client } = await open.login(await open.newAccount('private'), 'secret');
      await ok(client, retrieveXML(`http://127.0.0.1:${remote.port}/doc.xml`));
      await ok(client, retrieveXML(`http://localhost:${remote.port}/doc.xml`));
      await fails(client, httpCall(`http://127.0.0.1:${open.ports.http}/readyz`), `the document url names this server's own port ${open.ports.http}, which it does not fetch`);
    } finally {
      await open.stop();
    }
  });

  test('fetch.requestsPerMinute refuses an account\'s requests past the limit; other accounts go on', async () => {
    const limited = await startTestServer({ fetch: { httpCall: true, allow: [`127.0.0.1:${remote.port}`], requestsPerMinute: 3 } });
    try {
      const address = await limited.newAccount('counted');
      const { client } = await limited.login(address, 'secret');
      const { client: second } = await limited.login(address, 'secret');
      const url = `http://127.0.0.1:${remote.port}/doc.xml`;
      await ok(client, retrieveXML(url));
      await ok(second, httpCall(url));
      // A refused request counts too: it started.
      await fails(client, retrieveXML('http://10.0.0.1/'), /private/);
      await fails(client, retrieveXML(url), 'too many HTTP requests (at most 3 a minute)');
      await fails(second, httpCall(url), 'too many HTTP requests (at most 3 a minute)');
      const { client: other } = await limited.login(await limited.newAccount('other'), 'secret');
      await ok(other, retrieveXML(url));
    } finally {
      await limited.stop();
    }
  });

  test('fetch.concurrentPerAccount refuses a request while the account has that many running', async () => {
    const limited = await startTestServer({ fetch: { httpCall: true, allow: [`127.0.0.1:${remote.port}`], concurrentPerAccount: 1 } });
    try {
      const address = await limited.newAccount('busy');
      const { client } = await limited.login(address, 'secret');
      const { client: second } = await limited.login(address, 'secret');
      const hung = remote.hanging.length;
      const slow = client.request(retrieveXML(`http://127.0.0.1:${remote.port}/hang`, { timeout: '5' }), 20_000);
      // Wait until it is running (it has reached the remote server).
      await eventually(() => remote.hanging.length > hung || undefined, 'the first request at the remote server');
      await fails(second, httpCall(`http://127.0.0.1:${remote.port}/doc.xml`), 'too many HTTP requests at once (at most 1)');
      const answer = await slow;
      assert.equal(answer.response.attrs.errorText, 'the document could not be retrieved: timed out');
      await ok(second, httpCall(`http://127.0.0.1:${remote.port}/doc.xml`));
    } finally {
      await limited.stop();
    }
  });

  test('the log: fetch.done, fetch.failed, fetch.refused (with the addresses) and fetch.limited, never the path or the body', async () => {
    const capture = capturingLogger('info');
    const logged = await startTestServer({ fetch: { httpCall: true, allow: [`127.0.0.1:${remote.port}`], requestsPerMinute: 4 } }, { log: capture.log });
    try {
      const address = await logged.newAccount('logged');
      const { client } = await logged.login(address, 'secret');
      await ok(client, httpCall(`http://127.0.0.1:${remote.port}/echo?token=s3cret`, {}, 'body-s3cret'));
      await fails(client, retrieveXML(`http://127.0.0.1:${remote.port}/hang`, { timeout: '1' }), /timed out/);
      await fails(client, retrieveXML(`http://127.0.0.1:${remote.port}/redirect?to=${encodeURIComponent('http://10.9.8.7/x')}`), /private or local/);
      await ok(client, retrieveXML(`http://127.0.0.1:${remote.port}/doc.xml`));
      await fails(client, retrieveXML(`http://127.0.0.1:${remote.port}/doc.xml`), 'too many HTTP requests (at most 4 a minute)');
      const done = await eventually(() => capture.events('fetch.done')[0], 'fetch.done');
      assert.deepEqual([done.op, done.account, done.method, done.host, done.status], ['httpCall', address, 'POST', `127.0.0.1:${remote.port}`, 201]);
      const failed = await eventually(() => capture.events('fetch.failed')[0], 'fetch.failed');
      assert.equal(failed.error, 'the document could not be retrieved: timed out');
      const refused = await eventually(() => capture.events('fetch.refused')[0], 'fetch.refused');
      assert.deepEqual([refused.level, refused.host, refused.addresses], ['warn', '10.9.8.7', ['10.9.8.7']]);
      const limited = await eventually(() => capture.events('fetch.limited')[0], 'fetch.limited');
      assert.equal(limited.account, address);
      const text = JSON.stringify(capture.records);
      assert.ok(!text.includes('s3cret'), 'neither the query nor the body is logged');
    } finally {
      await logged.stop();
    }
  });

  test('fetch settings are validated', async () => {
    const { mergeConfig, defaultConfig, ConfigError } = await import('../src/config.js');
    const bad = (fetch: Record<string, unknown>, pattern: RegExp): void => {
      assert.throws(() => mergeConfig(defaultConfig(), { fetch }, 'test'), (err: unknown) => err instanceof ConfigError && pattern.test(err.message));
    };
    bad({ allow: ['not a host!'] }, /fetch\.allow\[0\]: must be an address, a CIDR prefix, a host name/);
    bad({ allow: ['10.0.0.0/33'] }, /fetch\.allow\[0\]/);
    bad({ allow: ['127.0.0.1:99999'] }, /fetch\.allow\[0\]/);
    bad({ timeoutSeconds: 0 }, /fetch\.timeoutSeconds/);
    bad({ concurrentPerAccount: 0 }, /fetch\.concurrentPerAccount/);
    bad({ redirects: 50 }, /fetch\.redirects/);
    bad({ httpcall: true }, /unknown setting \(did you mean fetch\.httpCall\?\)/);
    const good = mergeConfig(defaultConfig(), { fetch: { allow: ['10.0.0.0/8', '192.0.2.7:8080', '[::1]:8080', 'fd00::/8', 'intranet.example.com', '*.corp.example:443'] } }, 'test');
    assert.equal(good.fetch.allow.length, 6);
  });
});
