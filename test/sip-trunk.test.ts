/**
 * Digest of ours toward a SIP trunk (config sip.trunkUser, sip.trunkPassword): the client side
 * (src/transports/sip/digest-client.ts) against RFC 7616's example vectors, then a whole
 * server whose trunk is a UDP peer written here. The peer challenges the server's INVITE (407
 * with SHA-256 and MD5 challenges, or 401 with MD5), checks the INVITE sent again (same
 * Call-ID and From tag, CSeq + 1, a new branch, the answer computed here on its own from
 * RFC 7616 3.4.1) and refuses the call with a code the XIMSS caller then sees. A trunk that
 * challenges twice gets no third INVITE, and a device of ours that challenges gets no
 * credentials at all. Then RFC 3263 failover: another domain's servers found by a stub
 * resolver (NAPTR, SRV, A), the first answering 503 or refusing the TCP connection, the next
 * taking the INVITE (a new transaction: a new branch, the same Call-ID, From tag and CSeq).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseAuthHeader, parseCSeq, parseVia } from '../src/transports/sip/headers.js';
import { SipMessageReader, parseSipMessage, responseTo, serializeSipMessage, type SipRequest } from '../src/transports/sip/message.js';
import { digestAnswer } from '../src/transports/sip/digest-client.js';
import { UserAgentCore } from '../src/transports/sip/dialog.js';
import { TransactionLayer, type SipEndpoint } from '../src/transports/sip/transactions.js';
import { parseNameAddr } from '../src/transports/sip/uri.js';
import { FakeClock } from './fixtures/fake-clock.js';
import { freePort, freeSipPort, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const TRUNK_USER = 'pbx"7';
const TRUNK_PASSWORD = 'trunk secret';

function h(algorithm: 'MD5' | 'SHA-256', data: string): string {
  return createHash(algorithm === 'MD5' ? 'md5' : 'sha256').update(data).digest('hex');
}

describe('SIP Digest, the client side (RFC 7616 3.9.1 vectors)', () => {
  // RFC 7616 3.9.1: Mufasa's request for /dir/index.html, answered for MD5 and SHA-256.
  const challenge = (algorithm: string): string =>
    `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=${algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`;
  const options = {
    method: 'GET',
    uri: '/dir/index.html',
    credentials: { user: 'Mufasa', password: 'Circle of Life' },
    cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
  };

  test('MD5 and SHA-256 give the RFC\'s responses, with qop=auth, nc, cnonce and opaque', () => {
    for (const [algorithm, expected] of [
      ['MD5', '8ca523f5e9506fed4657c9700eebdbec'],
      ['SHA-256', '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1'],
    ] as const) {
      const answer = digestAnswer([challenge(algorithm)], options);
      assert.ok(answer, algorithm);
      const params = parseAuthHeader(answer).params;
      assert.equal(params.get('response'), expected, algorithm);
      assert.equal(params.get('username'), 'Mufasa');
      assert.equal(params.get('realm'), 'http-auth@example.org');
      assert.equal(params.get('uri'), '/dir/index.html');
      assert.equal(params.get('qop'), 'auth');
      assert.equal(params.get('nc'), '00000001');
      assert.equal(params.get('cnonce'), options.cnonce);
      assert.equal(params.get('algorithm'), algorithm);
      assert.equal(params.get('opaque'), 'FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS');
    }
  });

  test('the strongest challenge known is answered (SHA-256 over MD5), whatever the order', () => {
    for (const order of [['MD5', 'SHA-256'], ['SHA-256', 'MD5']]) {
      const answer = digestAnswer(order.map(challenge), options)!;
      assert.equal(parseAuthHeader(answer).params.get('algorithm'), 'SHA-256');
    }
    // An unknown algorithm is passed over for one we know.
    const answer = digestAnswer([challenge('SHA-512-256'), challenge('MD5')], options)!;
    assert.equal(parseAuthHeader(answer).params.get('algorithm'), 'MD5');
  });

  test('without qop, RFC 2069\'s form; without algorithm, MD5 (and none named back); a quote in the user escaped', () => {
    const answer = digestAnswer(['Digest realm="trunk.invalid", nonce="abc"'], { method: 'INVITE', uri: 'sip:1@trunk.invalid', credentials: { user: 'a"b\\c', password: 'pw' } })!;
    const params = parseAuthHeader(answer).params;
    assert.equal(params.get('username'), 'a"b\\c');
    assert.equal(params.get('qop'), undefined);
    assert.equal(params.get('algorithm'), undefined);
    const ha1 = h('MD5', 'a"b\\c:trunk.invalid:pw');
    assert.equal(params.get('response'), h('MD5', `${ha1}:abc:${h('MD5', 'INVITE:sip:1@trunk.invalid')}`));
  });

  test('MD5-sess: HA1 covers the nonce and cnonce', () => {
    const answer = digestAnswer(['Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess'], { method: 'INVITE', uri: 'sip:x@r', credentials: { user: 'u', password: 'p' }, cnonce: 'c' })!;
    const ha1 = h('MD5', `${h('MD5', 'u:r:p')}:n:c`);
    assert.equal(parseAuthHeader(answer).params.get('response'), h('MD5', `${ha1}:n:00000001:c:auth:${h('MD5', 'INVITE:sip:x@r')}`));
  });

  test('nothing to answer: another scheme, qop=auth-int alone, no nonce, -sess without qop, unreadable', () => {
    for (const value of [
      'Basic realm="r"',
      'Digest realm="r", nonce="n", qop="auth-int"',
      'Digest realm="r"',
      'Digest realm="r", nonce="n", algorithm=MD5-sess',
      'Digest realm="r, nonce=',
    ]) {
      assert.equal(digestAnswer([value], options), undefined, value);
    }
  });
});

type Script = (invite: SipRequest, index: number) => { status: number; headers?: [string, string][] };

/** The response a fake server's script gives to an INVITE, as bytes. */
function scripted(script: Script, invite: SipRequest, index: number): Buffer {
  const { status, headers = [] } = script(invite, index);
  const response = responseTo(invite, status, undefined, { toTag: `peer${index + 1}` });
  for (const [name, value] of headers) response.headers.add(name, value);
  return serializeSipMessage(response);
}

/** A SIP server on TCP: answers each INVITE with what `script` says (on the connection it came on). */
class TcpPeer {
  readonly invites: SipRequest[] = [];
  script: Script = () => ({ status: 486 });

  private constructor(readonly server: net.Server) {
    server.on('connection', (socket) => {
      const reader = new SipMessageReader();
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        let items;
        try {
          items = reader.feed(chunk);
        } catch {
          socket.destroy();
          return;
        }
        for (const item of items) {
          if (item.type !== 'message' || item.message.kind !== 'request' || item.message.method !== 'INVITE') continue;
          this.invites.push(item.message);
          socket.write(scripted(this.script, item.message, this.invites.length - 1));
        }
      });
    });
  }

  static async open(): Promise<TcpPeer> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return new TcpPeer(server);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): void {
    this.server.close();
  }
}

/** A trunk on UDP: answers each new INVITE with what `script` says; repeats a final for a retransmission. */
class FakeTrunk {
  readonly invites: SipRequest[] = [];
  private readonly answered = new Map<string, Buffer>();
  private waiters: (() => void)[] = [];
  script: Script = () => ({ status: 486 });

  private constructor(readonly socket: dgram.Socket) {
    socket.on('message', (bytes, rinfo) => {
      let message;
      try {
        message = parseSipMessage(bytes);
      } catch {
        return;
      }
      if (message.kind !== 'request' || message.method !== 'INVITE') return;
      const branch = parseVia(message.headers.getAll('Via')[0]!).branch ?? '';
      const again = this.answered.get(branch);
      if (again) {
        socket.send(again, rinfo.port, rinfo.address);
        return;
      }
      this.invites.push(message);
      const out = scripted(this.script, message, this.invites.length - 1);
      this.answered.set(branch, out);
      socket.send(out, rinfo.port, rinfo.address);
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static async open(): Promise<FakeTrunk> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    return new FakeTrunk(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  reset(): void {
    this.invites.length = 0;
  }

  close(): void {
    this.socket.close();
  }
}

/** The Digest answer in `header` of `invite`, checked here from RFC 7616 3.4.1 with the configured credentials. */
function checkAnswer(invite: SipRequest, header: string, nonce: string, realm: string): Map<string, string> {
  const values = invite.headers.getAll(header);
  assert.equal(values.length, 1, `one ${header}`);
  const { scheme, params } = parseAuthHeader(values[0]!);
  assert.equal(scheme, 'Digest');
  assert.equal(params.get('username'), TRUNK_USER);
  assert.equal(params.get('realm'), realm);
  assert.equal(params.get('nonce'), nonce);
  assert.equal(params.get('uri'), invite.uri);
  assert.equal(params.get('qop'), 'auth');
  const algorithm = (params.get('algorithm') ?? 'MD5') as 'MD5' | 'SHA-256';
  const ha1 = h(algorithm, `${TRUNK_USER}:${realm}:${TRUNK_PASSWORD}`);
  const ha2 = h(algorithm, `INVITE:${invite.uri}`);
  assert.equal(params.get('response'), h(algorithm, `${ha1}:${nonce}:${params.get('nc')}:${params.get('cnonce')}:auth:${ha2}`), 'the Digest response');
  return params;
}

/** The second INVITE is the first sent again (22.2): same Call-ID and From tag, CSeq + 1, a new branch. */
function checkSentAgain(first: SipRequest, second: SipRequest): void {
  assert.equal(second.uri, first.uri);
  assert.equal(second.headers.get('Call-ID'), first.headers.get('Call-ID'));
  assert.equal(parseNameAddr(second.headers.get('From')!).params.get('tag'), parseNameAddr(first.headers.get('From')!).params.get('tag'));
  assert.equal(parseCSeq(second.headers.get('CSeq')!).seq, parseCSeq(first.headers.get('CSeq')!).seq + 1);
  assert.notEqual(parseVia(second.headers.getAll('Via')[0]!).branch, parseVia(first.headers.getAll('Via')[0]!).branch);
  assert.equal(second.body.toString(), first.body.toString());
}

describe('INVITEs to a trunk that challenges (sip.trunkUser, sip.trunkPassword)', () => {
  let server: TestServer;
  let trunk: FakeTrunk;
  let session: XimssClient;
  let leg = 0;
  const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n';

  before(async () => {
    trunk = await FakeTrunk.open();
    server = await startTestServer({
      ports: { sip: await freeSipPort() },
      sip: { trunk: `sip:127.0.0.1:${trunk.port}`, trunkUser: TRUNK_USER, trunkPassword: TRUNK_PASSWORD },
    });
    const caller = await server.newAccount('caller');
    session = (await server.login(caller, 'secret')).client;
    const bind = await session.request(`<signalBind><sdpText>${sdp}</sdpText></signalBind>`);
    assert.equal(bind.response.attrs.errorText, undefined);
  });

  after(async () => {
    trunk?.close();
    await server?.stop();
  });

  /** Calls a number through the trunk; resolves with the code the caller is refused with. */
  async function callNumber(number: string): Promise<string | undefined> {
    const callLeg = `leg${++leg}`;
    const started = await session.request(`<callStart callLeg="${callLeg}" peer="${number}"><sdpText>${sdp}</sdpText></callStart>`);
    assert.equal(started.response.attrs.errorText, undefined);
    const ended = await session.takeAsync('callDisconnected', (m) => m.attrs.callLeg === callLeg, 10_000);
    return ended.attrs.signalCode;
  }

  test('a 407 with SHA-256 and MD5 challenges: the INVITE goes again once with Proxy-Authorization (SHA-256)', async () => {
    trunk.reset();
    trunk.script = (_invite, index) =>
      index === 0
        ? {
            status: 407,
            headers: [
              ['Proxy-Authenticate', 'Digest realm="trunk.invalid", nonce="n-sha-1", qop="auth", algorithm=SHA-256, opaque="op1"'],
              ['Proxy-Authenticate', 'Digest realm="trunk.invalid", nonce="n-md5-1", qop="auth", algorithm=MD5, opaque="op1"'],
            ],
          }
        : { status: 486 };
    assert.equal(await callNumber('+1 555 0100'), '486');
    assert.equal(trunk.invites.length, 2);
    const [first, second] = trunk.invites as [SipRequest, SipRequest];
    assert.match(first.uri, /^sip:\+15550100@127\.0\.0\.1:\d+;user=phone$/);
    assert.equal(first.headers.has('Proxy-Authorization'), false, 'no credentials before a challenge');
    checkSentAgain(first, second);
    const params = checkAnswer(second, 'Proxy-Authorization', 'n-sha-1', 'trunk.invalid');
    assert.equal(params.get('algorithm'), 'SHA-256');
    assert.equal(params.get('opaque'), 'op1');
    assert.equal(second.headers.has('Authorization'), false);
  });

  test('a 401 with an MD5 challenge: the INVITE goes again with Authorization (MD5)', async () => {
    trunk.reset();
    trunk.script = (_invite, index) =>
      index === 0 ? { status: 401, headers: [['WWW-Authenticate', 'Digest realm="trunk.invalid", nonce="n-md5-2", qop="auth"']] } : { status: 603 };
    assert.equal(await callNumber('5550101'), '603');
    assert.equal(trunk.invites.length, 2);
    const [first, second] = trunk.invites as [SipRequest, SipRequest];
    checkSentAgain(first, second);
    checkAnswer(second, 'Authorization', 'n-md5-2', 'trunk.invalid');
    assert.equal(second.headers.has('Proxy-Authorization'), false);
  });

  test('a trunk that refuses the credentials (a second 407): no third INVITE, the caller is refused 403', async () => {
    trunk.reset();
    trunk.script = (_invite, index) => ({
      status: 407,
      headers: [['Proxy-Authenticate', `Digest realm="trunk.invalid", nonce="n-again-${index}", qop="auth"`]],
    });
    assert.equal(await callNumber('5550102'), '403');
    assert.equal(trunk.invites.length, 2);
  });

  test('a challenge that cannot be answered (auth-int only): no second INVITE, 403', async () => {
    trunk.reset();
    trunk.script = () => ({ status: 407, headers: [['Proxy-Authenticate', 'Digest realm="trunk.invalid", nonce="n", qop="auth-int"']] });
    assert.equal(await callNumber('5550103'), '403');
    assert.equal(trunk.invites.length, 1);
  });

  test('a device of ours that challenges gets no credentials: one INVITE, the caller refused 403', async () => {
    // A phone registered to an account (with Digest, as a phone does), that then challenges the call.
    trunk.reset();
    const phone = await FakeTrunk.open();
    try {
      const callee = await server.newAccount('callee', { password: 'callee-secret' });
      const [user, domain] = callee.split('@') as [string, string];
      const registered = await register(phone.socket, server.config.ports.sip, user, domain, 'callee-secret');
      assert.equal(registered, 200);
      phone.script = () => ({ status: 407, headers: [['Proxy-Authenticate', 'Digest realm="phone.invalid", nonce="n-phone", qop="auth"']] });
      assert.equal(await callNumber(callee), '403');
      assert.equal(phone.invites.length, 1);
      assert.equal(trunk.invites.length, 0);
    } finally {
      phone.close();
    }
  });
});

describe('RFC 3263 failover: the next server after a 503 or a transport error', () => {
  let server: TestServer;
  let session: XimssClient;
  let leg = 0;
  const table: Record<string, unknown[]> = {};
  const resolver = async (name: string, rrtype: string): Promise<unknown> => {
    const records = table[`${name} ${rrtype}`];
    if (!records) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return records;
  };
  const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n';

  /** `domain`'s servers, in SRV priority order, over `transport`. */
  function servers(domain: string, transport: 'udp' | 'tcp', ports: number[]): void {
    const service = transport === 'udp' ? 'SIP+D2U' : 'SIP+D2T';
    const srv = `_sip._${transport}.${domain}`;
    table[`${domain} NAPTR`] = [{ order: 10, preference: 10, flags: 's', service, regexp: '', replacement: srv }];
    table[`${srv} SRV`] = ports.map((port, i) => ({ name: `sip${i}.${domain}`, port, priority: 10 * (i + 1), weight: 10 }));
    ports.forEach((_, i) => (table[`sip${i}.${domain} A`] = ['127.0.0.1']));
  }

  before(async () => {
    server = await startTestServer({ ports: { sip: await freeSipPort() } }, { sipResolver: resolver });
    const caller = await server.newAccount('caller');
    session = (await server.login(caller, 'secret')).client;
    await session.request(`<signalBind><sdpText>${sdp}</sdpText></signalBind>`);
  });

  after(async () => {
    await server?.stop();
  });

  async function call(peer: string): Promise<string | undefined> {
    const callLeg = `f${++leg}`;
    const started = await session.request(`<callStart callLeg="${callLeg}" peer="${peer}"><sdpText>${sdp}</sdpText></callStart>`);
    assert.equal(started.response.attrs.errorText, undefined);
    return (await session.takeAsync('callDisconnected', (m) => m.attrs.callLeg === callLeg, 10_000)).attrs.signalCode;
  }

  /** The INVITE to the next server is the same request as a new transaction (RFC 3263 4.3). */
  function checkNewTransaction(first: SipRequest, second: SipRequest): void {
    assert.equal(second.uri, first.uri);
    assert.equal(second.headers.get('Call-ID'), first.headers.get('Call-ID'));
    assert.equal(parseNameAddr(second.headers.get('From')!).params.get('tag'), parseNameAddr(first.headers.get('From')!).params.get('tag'));
    assert.equal(second.headers.get('CSeq'), first.headers.get('CSeq'));
    assert.notEqual(parseVia(second.headers.getAll('Via')[0]!).branch, parseVia(first.headers.getAll('Via')[0]!).branch);
  }

  test('the first server answers 503: the INVITE goes to the second, whose answer the caller gets', async () => {
    const first = await FakeTrunk.open();
    const second = await FakeTrunk.open();
    try {
      first.script = () => ({ status: 503, headers: [['Retry-After', '30']] });
      second.script = () => ({ status: 486 });
      servers('busy.test', 'udp', [first.port, second.port]);
      assert.equal(await call('dave@busy.test'), '486');
      assert.equal(first.invites.length, 1);
      assert.equal(second.invites.length, 1);
      checkNewTransaction(first.invites[0]!, second.invites[0]!);
    } finally {
      first.close();
      second.close();
    }
  });

  test('every server answers 503: each is tried once, and the caller gets the 503', async () => {
    const peers = [await FakeTrunk.open(), await FakeTrunk.open(), await FakeTrunk.open()];
    try {
      for (const peer of peers) peer.script = () => ({ status: 503 });
      servers('down.test', 'udp', peers.map((p) => p.port));
      assert.equal(await call('dave@down.test'), '503');
      assert.deepEqual(peers.map((p) => p.invites.length), [1, 1, 1]);
    } finally {
      for (const peer of peers) peer.close();
    }
  });

  test('the first server refuses the TCP connection: the INVITE goes to the second', async () => {
    const closed = await freePort();
    const second = await TcpPeer.open();
    try {
      second.script = () => ({ status: 603 });
      servers('refusing.test', 'tcp', [closed, second.port]);
      assert.equal(await call('dave@refusing.test'), '603');
      assert.equal(second.invites.length, 1);
    } finally {
      second.close();
    }
  });

  test('a refusal that is not a failure of the server (486) is not tried elsewhere', async () => {
    const first = await FakeTrunk.open();
    const second = await FakeTrunk.open();
    try {
      first.script = () => ({ status: 486 });
      servers('plain.test', 'udp', [first.port, second.port]);
      assert.equal(await call('dave@plain.test'), '486');
      assert.equal(first.invites.length, 1);
      assert.equal(second.invites.length, 0);
    } finally {
      first.close();
      second.close();
    }
  });
});

describe('RFC 3263 failover after a timeout (a fake clock, no network)', () => {
  test('a server that never answers: at timer B the INVITE goes to the next one; when none is left the timeout stands', async () => {
    const clock = new FakeClock();
    const sent: { message: SipRequest; to: SipEndpoint }[] = [];
    let core: UserAgentCore | undefined;
    const send = (message: Parameters<TransactionLayer['receive']>[0], to: SipEndpoint): void => {
      if (message.kind === 'request') sent.push({ message, to });
    };
    const layer = new TransactionLayer({ clock, send, tu: (event) => void core?.receive(event) });
    core = new UserAgentCore({
      transactions: layer,
      send,
      localAddress: () => ({ transport: 'udp', host: '192.0.2.1', port: 5060 }),
      resolve: () => ({ host: '192.0.2.99', port: 5060 }),
      clock,
      timers: { t1: 500 },
    });
    const first: SipEndpoint = { host: '192.0.2.10', port: 5060, transport: 'udp' };
    const second: SipEndpoint = { host: '192.0.2.11', port: 5070, transport: 'udp' };
    const call = core.invite({
      requestUri: 'sip:dave@far.invalid',
      from: '<sip:alice@example.test>',
      to: '<sip:dave@far.invalid>',
      destination: first,
      alternates: async () => [first, second],
    });
    const outcomes: string[] = [];
    call.on('failed', (failure) => outcomes.push(failure.kind));
    // Timer B is 64*T1: the first server's INVITE and its retransmissions, then the second's.
    clock.advance(64 * 500 + 1);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    const invites = (to: SipEndpoint): SipRequest[] => sent.filter((s) => s.to.host === to.host && s.message.method === 'INVITE').map((s) => s.message);
    assert.ok(invites(first).length > 1, 'retransmitted to the first server');
    assert.equal(invites(second).length, 1, 'then sent to the second');
    assert.deepEqual(outcomes, []);
    const [a, b] = [invites(first)[0]!, invites(second)[0]!];
    assert.equal(b.headers.get('CSeq'), a.headers.get('CSeq'));
    assert.equal(b.headers.get('Call-ID'), a.headers.get('Call-ID'));
    assert.notEqual(parseVia(b.headers.getAll('Via')[0]!).branch, parseVia(a.headers.getAll('Via')[0]!).branch);
    clock.advance(64 * 500 + 1);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.deepEqual(outcomes, ['timeout']);
    assert.equal(invites(first).filter((m) => parseVia(m.headers.getAll('Via')[0]!).branch !== parseVia(a.headers.getAll('Via')[0]!).branch).length, 0, 'the first server is not tried twice');
  });
});

/** A REGISTER from `socket` with Digest (RFC 7616 3.4.1 computed here); resolves with the final status. */
async function register(socket: dgram.Socket, port: number, user: string, domain: string, password: string): Promise<number> {
  const local = socket.address().port;
  const send = (cseq: number, authorization?: string): void => {
    const lines = [
      `REGISTER sip:${domain} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-reg-${cseq};rport`,
      'Max-Forwards: 70',
      `From: <sip:${user}@${domain}>;tag=reg`,
      `To: <sip:${user}@${domain}>`,
      `Call-ID: reg-${user}@127.0.0.1`,
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:${user}@127.0.0.1:${local}>`,
      'Expires: 300',
      ...(authorization ? [`Authorization: ${authorization}`] : []),
      'Content-Length: 0',
    ];
    socket.send(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), port, '127.0.0.1');
  };
  const next = (): Promise<{ status: number; challenge?: string }> =>
    new Promise((resolve) => {
      const on = (bytes: Buffer): void => {
        const message = parseSipMessage(bytes);
        if (message.kind !== 'response' || !message.headers.get('CSeq')?.endsWith('REGISTER') || message.status < 200) return;
        socket.off('message', on);
        resolve({ status: message.status, challenge: message.headers.get('WWW-Authenticate') });
      };
      socket.on('message', on);
    });
  let answer = next();
  send(1);
  const first = await answer;
  assert.equal(first.status, 401);
  const c = parseAuthHeader(first.challenge!).params;
  const algorithm = (c.get('algorithm') ?? 'MD5') as 'MD5' | 'SHA-256';
  const uri = `sip:${domain}`;
  const ha1 = h(algorithm, `${user}:${c.get('realm')}:${password}`);
  const response = h(algorithm, `${ha1}:${c.get('nonce')}:00000001:cn:auth:${h(algorithm, `REGISTER:${uri}`)}`);
  answer = next();
  send(2, `Digest username="${user}", realm="${c.get('realm')}", nonce="${c.get('nonce')}", uri="${uri}", response="${response}", algorithm=${algorithm}, qop=auth, nc=00000001, cnonce="cn", opaque="${c.get('opaque')}"`);
  return (await answer).status;
}
