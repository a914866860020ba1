/**
 * SIP torture over the wire: a whole server (ports.sip) is sent messages shaped after the
 * torture tests of RFC 4475 (3.1.1 valid but tricky, 3.1.2 invalid, 3.3 application-layer
 * semantics, 3.4 backward compatibility), rewritten here for our domain and accounts, over
 * UDP and, where framing matters, TCP. Each one must be answered as the RFC expects (a valid
 * one processed: 200 to an OPTIONS, 401 to a REGISTER, 480/404 to an INVITE for nobody; an
 * invalid one 400, 505, 416, 420, 415, ...) or dropped when no response can be sent, and the
 * server must go on answering an OPTIONS after each. Then garbage: random bytes, header lines
 * and header counts over the limits, a Content-Length far over the limit on a stream.
 *
 * Silence is checked without a clock: the server reads a datagram and answers a parse error
 * before it reads the next one, so when the OPTIONS sent after a message is answered and
 * nothing came for that message first, nothing will.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SipHeaders } from '../src/transports/sip/headers.js';
import { SipMessageReader, parseSipMessage, type SipMessage, type SipResponse } from '../src/transports/sip/message.js';
import { freeSipPort, startTestServer, type TestServer } from './helpers.js';

const DOMAIN = 'example.test';
/** How long a test waits for an answer before it fails (a guard, not a measure). */
const WAIT_MS = 5000;
let counter = 0;

function callIdOf(message: SipMessage): string {
  return message.headers.get('Call-ID') ?? '';
}

function describeMessage(message: SipMessage): string {
  return message.kind === 'response' ? `${message.status} ${message.reason} (${callIdOf(message)})` : `${message.method} (${callIdOf(message)})`;
}

/** A message's lines joined with CRLF, the head ended by an empty line, then the body. */
function wire(lines: readonly string[], body = ''): Buffer {
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'utf8');
}

/**
 * A response our own parser refuses, read roughly: an error response copies the request's
 * headers (RFC 3261 8.2.6.2), so the answer to a malformed request is often malformed the same
 * way. The status line, then each line split at its first colon.
 */
function roughResponse(bytes: Buffer): SipResponse | undefined {
  const text = bytes.toString('utf8');
  const head = text.split('\r\n\r\n', 1)[0]!;
  const [first, ...lines] = head.split('\r\n');
  const status = /^SIP\/2\.0 (\d{3}) (.*)$/.exec(first ?? '');
  if (!status) return undefined;
  const headers = new SipHeaders();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.add(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return { kind: 'response', status: Number(status[1]), reason: status[2]!, version: 'SIP/2.0', headers, body: Buffer.alloc(0) };
}

/** The messages a peer received, and waiting for the ones to come. */
class Inbox {
  readonly received: SipMessage[] = [];
  private readonly waiters: { match: (m: SipMessage) => boolean; resolve: (m: SipMessage) => void }[] = [];

  push(message: SipMessage): void {
    this.received.push(message);
    for (const [i, waiter] of this.waiters.entries()) {
      if (waiter.match(message)) {
        this.waiters.splice(i, 1);
        waiter.resolve(message);
        return;
      }
    }
  }

  /** The first message (already received or to come) that matches and was not taken before. */
  take(match: (m: SipMessage) => boolean, what: string): Promise<SipMessage> {
    const index = this.received.findIndex((m) => !this.taken.has(m) && match(m));
    if (index >= 0) {
      const message = this.received[index]!;
      this.taken.add(message);
      return Promise.resolve(message);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} (got: ${this.received.map(describeMessage).join(', ') || 'nothing'})`)), WAIT_MS);
      this.waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer);
          this.taken.add(m);
          resolve(m);
        },
      });
    });
  }

  private readonly taken = new Set<SipMessage>();

  /** The final response (>= 200) for a Call-ID; provisional ones are passed over. */
  async final(callId: string): Promise<SipResponse> {
    for (;;) {
      const message = await this.take((m) => m.kind === 'response' && callIdOf(m) === callId, `response for ${callId}`);
      if (message.kind === 'response' && message.status >= 200) return message;
    }
  }

  about(callId: string): SipMessage[] {
    return this.received.filter((m) => callIdOf(m) === callId);
  }
}

class UdpPeer {
  readonly inbox = new Inbox();
  /** Datagrams that were not even a status line and headers. */
  readonly unreadable: Buffer[] = [];

  private constructor(readonly socket: dgram.Socket) {
    socket.on('message', (bytes) => {
      try {
        this.inbox.push(parseSipMessage(bytes));
      } catch {
        const rough = roughResponse(bytes);
        if (rough) this.inbox.push(rough);
        else this.unreadable.push(bytes);
      }
    });
  }

  static async open(): Promise<UdpPeer> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    return new UdpPeer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(bytes: Buffer, port: number): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(bytes, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    this.socket.close();
  }
}

class TcpPeer {
  readonly inbox = new Inbox();
  private readonly reader = new SipMessageReader();
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.reader.feed(chunk)) if (item.type === 'message') this.inbox.push(item.message);
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static async connect(port: number): Promise<TcpPeer> {
    const socket = net.connect({ port, host: '127.0.0.1' });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new TcpPeer(socket);
  }

  get port(): number {
    return this.socket.localPort!;
  }

  send(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A fresh Call-ID and branch for one vector. */
function ids(name: string): { callId: string; branch: string; tag: string } {
  const n = ++counter;
  return { callId: `${name}-${n}-${randomBytes(4).toString('hex')}@torture.invalid`, branch: `z9hG4bK-${name}-${n}`, tag: `t${n}` };
}

/** A plain OPTIONS to the server's domain (the "still serving" probe). */
function options(via: string, callId: string, branch: string): Buffer {
  return wire([
    `OPTIONS sip:${DOMAIN} SIP/2.0`,
    `Via: ${via};branch=${branch};rport`,
    'Max-Forwards: 70',
    `From: <sip:prober@elsewhere.invalid>;tag=probe`,
    `To: <sip:${DOMAIN}>`,
    `Call-ID: ${callId}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
  ]);
}

describe('SIP torture over the wire (after RFC 4475)', () => {
  let server: TestServer;
  let sipPort: number;
  let udp: UdpPeer;
  /** An account with no device registered (an INVITE for it: 480). */
  let alice: string;
  const via = (): string => `SIP/2.0/UDP 127.0.0.1:${udp.port}`;

  before(async () => {
    sipPort = await freeSipPort();
    server = await startTestServer({ ports: { sip: sipPort } });
    alice = (await server.newAccount('alice', { password: 'alice-secret' })).split('@')[0]!;
    udp = await UdpPeer.open();
  });

  after(async () => {
    udp?.close();
    await server?.stop();
  });

  /** The server still answers an OPTIONS over UDP, and nothing came for `silentCallIds` before it. */
  async function stillServing(silentCallIds: readonly string[] = []): Promise<void> {
    const probe = ids('probe');
    await udp.send(options(via(), probe.callId, probe.branch), sipPort);
    const answer = await udp.inbox.final(probe.callId);
    assert.equal(answer.status, 200, 'the OPTIONS after it');
    for (const callId of silentCallIds) {
      assert.deepEqual(udp.inbox.about(callId).map(describeMessage), [], `no answer to ${callId}`);
    }
  }

  /** Sends a datagram; resolves with the final response for `callId`, ACKing a non-2xx one to an INVITE. */
  async function exchange(bytes: Buffer, callId: string): Promise<SipResponse> {
    await udp.send(bytes, sipPort);
    const response = await udp.inbox.final(callId);
    if (response.headers.get('CSeq')?.endsWith('INVITE')) await ackFor(response);
    return response;
  }

  /** The ACK of a non-2xx final response (RFC 3261 17.1.1.3): same branch, the response's To. */
  async function ackFor(response: SipResponse): Promise<void> {
    const topVia = response.headers.getAll('Via')[0]!;
    const seq = response.headers.get('CSeq')!.trim().split(/\s+/)[0];
    await udp.send(
      wire([
        `ACK sip:${alice}@${DOMAIN} SIP/2.0`,
        `Via: ${topVia}`,
        'Max-Forwards: 70',
        `From: ${response.headers.get('From')}`,
        `To: ${response.headers.get('To')}`,
        `Call-ID: ${callIdOf(response)}`,
        `CSeq: ${seq} ACK`,
        'Content-Length: 0',
      ]),
      sipPort,
    );
  }

  /** Sends a message that must be answered `status` (or one of them), then checks the server still serves. */
  async function answered(bytes: Buffer, callId: string, status: number | readonly number[]): Promise<SipResponse> {
    const response = await exchange(bytes, callId);
    const expected = typeof status === 'number' ? [status] : status;
    assert.ok(expected.includes(response.status), `expected ${expected.join(' or ')}, got ${response.status} ${response.reason}`);
    await stillServing();
    return response;
  }

  /** Sends a message that must be dropped without an answer. */
  async function dropped(bytes: Buffer, callId: string): Promise<void> {
    await udp.send(bytes, sipPort);
    await stillServing([callId]);
  }

  describe('valid but tricky (after 3.1.1): processed', () => {
    test('a short tortuous INVITE (after 3.1.1.1): compact forms, folding, odd spacing and case, escapes; 480, nobody to ring', async () => {
      const { callId, branch } = ids('wsinv');
      const sdp = 'v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n';
      const bytes = wire(
        [
          `INVITE sip:${alice.replace('a', '%61')}@${DOMAIN.toUpperCase()};unknownparam SIP/2.0`,
          'TO :',
          ` sip:${alice}@${DOMAIN} ;   tag    = 1918181833n`,
          'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@caller.invalid>',
          '  ;',
          '  tag = 98asjd8',
          'MaX-fOrWaRdS: 0068',
          `Call-ID: ${callId}`,
          'Content-Length   : ' + Buffer.byteLength(sdp),
          'cseq: 0009',
          '  INVITE',
          'Via  : SIP  /   2.0',
          ' /UDP',
          `    127.0.0.1:${udp.port};rport;branch=${branch}`,
          's :',
          'NewFangledHeader:   newfangled value',
          ' continued newfangled value',
          'UnknownHeaderWithUnusualValue: ;;,,;;,;',
          'Content-Type: application/sdp',
          'Route:',
          ' <sip:services.caller.invalid;lr;unknownwith=value;unknown-no-value>',
          'v:  SIP  / 2.0  / TCP     spindle.caller.invalid   ;',
          '  branch  =   z9hG4bK9ikj8  ,',
          ' SIP  /    2.0   / UDP  192.168.255.111   ; branch=',
          ' z9hG4bK30239',
          'm:"Quoted string \\"\\"" <sip:jdrosen@caller.invalid> ; newparam =',
          '      newvalue ;',
          '  secondparam ; q = 0.33',
        ],
        sdp,
      );
      // The To carries a tag: the request belongs to a dialog the server does not have (481).
      const response = await exchange(bytes, callId);
      assert.equal(response.status, 481, `${response.status} ${response.reason}`);
      await stillServing();
    });

    test('the same tortuous INVITE without the To tag reaches the call engine: 480 (no device)', async () => {
      const { callId, branch } = ids('wsinv2');
      const sdp = 'v=0\r\no=- 1 1 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0\r\n';
      const bytes = wire(
        [
          `INVITE sip:${alice.replace('a', '%61')}@${DOMAIN.toUpperCase()};unknownparam SIP/2.0`,
          'TO :',
          ` sip:${alice}@${DOMAIN}`,
          'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@caller.invalid>',
          '  ;',
          '  tag = 98asjd8',
          'MaX-fOrWaRdS: 0068',
          `i: ${callId}`,
          'l   : ' + Buffer.byteLength(sdp),
          'cseq: 0009',
          '  INVITE',
          'Via  : SIP  /   2.0',
          ' /UDP',
          `    127.0.0.1:${udp.port};rport;branch=${branch}`,
          'NewFangledHeader:   newfangled value',
          ' continued newfangled value',
          'UnknownHeaderWithUnusualValue: ;;,,;;,;',
          'c: application/sdp',
          'm:"Quoted string \\"\\"" <sip:jdrosen@caller.invalid> ; newparam =',
          '      newvalue ;',
          '  secondparam ; q = 0.33',
        ],
        sdp,
      );
      const response = await exchange(bytes, callId);
      assert.equal(response.status, 480, `${response.status} ${response.reason}`);
      await stillServing();
    });

    test('a wide range of valid characters (after 3.1.1.2): an unknown token method is 501 with Allow', async () => {
      const { callId, branch } = ids('intmeth');
      const method = "!interesting-Method0123456789_*+`.%indeed'~";
      const response = await answered(
        wire([
          `${method} sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${branch};rport`,
          'Max-Forwards: 255',
          'From: "\\"\\\\\\"\\"" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@caller.invalid>;tag=_token~1\'+`*%!-.',
          `To: "BEL:\\\u0007 NUL:\\\u0000 DEL:\\\u007f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@${DOMAIN}>`,
          `call-id: ${callId}`,
          `cseq: 139122385 ${method}`,
          'extensionHeader-!.%*+_`\'~: 大停電',
          'Content-Length: 0',
        ]),
        callId,
        501,
      );
      assert.ok(response.headers.get('Allow')?.includes('OPTIONS'));
    });

    test('valid % escapes in the Request-URI (after 3.1.1.3): an unknown user, 404', async () => {
      const { callId, branch, tag } = ids('esc01');
      await answered(
        wire([
          `INVITE sip:sips%3Auser%40caller.invalid@${DOMAIN} SIP/2.0`,
          `To: sip:%61lice@${DOMAIN}`,
          `From: <sip:I%20have%20spaces@caller.invalid>;tag=${tag}`,
          'Max-Forwards: 87',
          `i: ${callId}`,
          `Via: ${via()};branch=${branch};rport`,
          'CSeq: 1 INVITE',
          `Contact: <sip:caller@127.0.0.1:${udp.port}>`,
          'Content-Length: 0',
        ]),
        callId,
        404,
      );
    });

    test('escaped NULs in URIs (after 3.1.1.4): a REGISTER, challenged 401', async () => {
      const { callId, branch, tag } = ids('escnull');
      await answered(
        wire([
          `REGISTER sip:${DOMAIN} SIP/2.0`,
          `To: sip:null-%00-null@${DOMAIN}`,
          `From: sip:null-%00-null@${DOMAIN};tag=${tag}`,
          `Via: ${via()};branch=${branch};rport`,
          `Call-ID: ${callId}`,
          'CSeq: 14398234 REGISTER',
          'Max-Forwards: 70',
          `Contact: <sip:%00@127.0.0.1:${udp.port}>`,
          `Contact: <sip:%00%00@127.0.0.1:${udp.port}>`,
          'L:0',
        ]),
        callId,
        401,
      );
    });

    test('% that is not an escape (after 3.1.1.5): RE%47IST%45R is an unknown method, 501', async () => {
      const { callId, branch, tag } = ids('esc02');
      await answered(
        wire([
          `RE%47IST%45R sip:${DOMAIN} SIP/2.0`,
          `To: "%Z%45" <sip:resource@${DOMAIN}>`,
          `From: "%Z%45" <sip:resource@${DOMAIN}>;tag=${tag}`,
          `Via: ${via()};branch=${branch};rport`,
          `Call-ID: ${callId}`,
          'CSeq: 29344 RE%47IST%45R',
          'Max-Forwards: 70',
          `Contact: <sip:alias1@127.0.0.1:${udp.port}>`,
          'C%6Fntact: <sip:alias2@192.0.2.21:5060>',
          'Contact: <sip:alias3@192.0.2.22:5060>',
          'l: 0',
        ]),
        callId,
        501,
      );
    });

    test('no LWS between a display name and < (after 3.1.1.6): OPTIONS, 200', async () => {
      const { callId, branch, tag } = ids('lwsdisp');
      await answered(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `To: sip:${DOMAIN}`,
          `From: caller<sip:caller@caller.invalid>;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          `Via: ${via()};branch=${branch};rport`,
          'CSeq: 3923239 OPTIONS',
          'l: 0',
        ]),
        callId,
        200,
      );
    });

    test('long values in header fields (after 3.1.1.7): long tags, display names, 30 Vias; 480', async () => {
      const { callId, branch } = ids('longreq');
      const long = 'longvalue'.repeat(40);
      const vias = Array.from({ length: 29 }, (_, i) => `Via: SIP/2.0/TCP sip${i}.${long.slice(0, 60)}.invalid:5060;branch=z9hG4bK${long.slice(0, 100)}${i}`);
      await answered(
        wire([
          `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
          `To: "I have a user name of ${'extreme'.repeat(30)} proportion" <sip:${alice}@${DOMAIN}:6000;unknownparam=${long};${long}>`,
          `From: sip:${'a'.repeat(300)}@caller.invalid;tag=${long}`,
          `Call-ID: ${callId}`,
          'CSeq: 18 INVITE',
          `Unknown-${long}-Header: ${long}`,
          `Via: ${via()};branch=${branch};rport`,
          ...vias,
          'Max-Forwards: 70',
          `Contact: <sip:${long}@127.0.0.1:${udp.port}>`,
          'Content-Length: 0',
        ]),
        callId,
        480,
      );
    });

    test('extra octets after Content-Length in a datagram (after 3.1.1.8): the second request in it is not read', async () => {
      const first = ids('dblreq');
      const second = ids('dblreq-inner');
      const inner = wire([
        `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
        `Via: ${via()};branch=${second.branch};rport`,
        'Max-Forwards: 70',
        `From: <sip:caller@caller.invalid>;tag=${second.tag}`,
        `To: <sip:${alice}@${DOMAIN}>`,
        `Call-ID: ${second.callId}`,
        'CSeq: 1 INVITE',
        'Content-Length: 0',
      ]);
      const outer = Buffer.concat([
        wire([
          `REGISTER sip:${DOMAIN} SIP/2.0`,
          `To: sip:${alice}@${DOMAIN}`,
          `From: sip:${alice}@${DOMAIN};tag=${first.tag}`,
          `Via: ${via()};branch=${first.branch};rport`,
          `Call-ID: ${first.callId}`,
          'CSeq: 2 REGISTER',
          'Max-Forwards: 70',
          `Contact: <sip:${alice}@127.0.0.1:${udp.port}>`,
          'Content-Length: 0',
        ]),
        inner,
      ]);
      const response = await exchange(outer, first.callId);
      assert.equal(response.status, 401);
      await stillServing([second.callId]);
    });

    test('semicolon-separated parameters in the user part (after 3.1.1.9): OPTIONS, 200', async () => {
      const { callId, branch, tag } = ids('semiuri');
      await answered(
        wire([
          `OPTIONS sip:user;par=u%40caller.invalid@${DOMAIN} SIP/2.0`,
          `To: sip:j_user@${DOMAIN}`,
          `From: sip:caller@caller.invalid;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 17766 OPTIONS',
          `Via: ${via()};branch=${branch};rport`,
          'Content-Length: 0',
        ]),
        callId,
        200,
      );
    });

    test('varied and unknown transports in Via (after 3.1.1.10): OPTIONS, 200, every Via sent back', async () => {
      const { callId, branch, tag } = ids('transports');
      const response = await answered(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `To: sip:user@${DOMAIN}`,
          `From: <sip:caller@caller.invalid>;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 60 OPTIONS',
          `Via: ${via()};branch=${branch};rport`,
          'Via: SIP/2.0/SCTP t2.caller.invalid;branch=z9hG4bKklasjdhf',
          'Via: SIP/2.0/TLS t3.caller.invalid;branch=z9hG4bK2980unddj',
          'Via: SIP/2.0/UNKNOWN t4.caller.invalid;branch=z9hG4bKasd0f3en',
          'Via: SIP/2.0/TCP t5.caller.invalid;branch=z9hG4bK0a9idfnee',
          'l: 0',
        ]),
        callId,
        200,
      );
      assert.equal(response.headers.getAll('Via').join(',').split(',').length, 5);
    });

    test('a multipart MIME body (after 3.1.1.11): read whole (blank lines inside are body), then refused 415 with Accept', async () => {
      const { callId, branch, tag } = ids('mpart01');
      const body = [
        '',
        '--7a9cbec02ceef655',
        'Content-Type: application/sdp',
        'Content-Transfer-Encoding: 8bit',
        '',
        'v=0',
        'o=- 1 1 IN IP4 192.0.2.5',
        's=-',
        'c=IN IP4 192.0.2.5',
        't=0 0',
        'm=audio 492170 RTP/AVP 0',
        '',
        '--7a9cbec02ceef655',
        'Content-Type: text/plain',
        '',
        'a blank line above, and one below',
        '',
        '--7a9cbec02ceef655--',
        '',
      ].join('\r\n');
      const response = await exchange(
        wire(
          [
            `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
            `Via: ${via()};branch=${branch};rport`,
            'Max-Forwards: 70',
            `From: <sip:caller@caller.invalid>;tag=${tag}`,
            `To: <sip:${alice}@${DOMAIN}>`,
            `Call-ID: ${callId}`,
            'CSeq: 1 INVITE',
            `Contact: <sip:caller@127.0.0.1:${udp.port}>`,
            'Content-Type: multipart/mixed;boundary=7a9cbec02ceef655',
            'MIME-Version: 1.0',
            `Content-Length: ${Buffer.byteLength(body)}`,
          ],
          body,
        ),
        callId,
      );
      // Framed right (a body cut at a blank line would be a 400), and a body that is not SDP is refused.
      assert.equal(response.status, 415, `${response.status} ${response.reason}`);
      assert.equal(response.headers.get('Accept'), 'application/sdp');
      await stillServing();
    });

    test('responses with an unusual reason phrase or none (after 3.1.1.12, 3.1.1.13), for no transaction: dropped', async () => {
      for (const reason of ['= 2**3 * 5**2 но сто девяносто девять - простое', '']) {
        const { callId, branch, tag } = ids('unreason');
        await dropped(
          wire([
            `SIP/2.0 200 ${reason}`,
            `Via: SIP/2.0/UDP 127.0.0.1:${sipPort};branch=${branch}`,
            `Call-ID: ${callId}`,
            'CSeq: 353494 INVITE',
            `From: <sip:${alice}@${DOMAIN}>;tag=${tag}`,
            'To: <sip:called@caller.invalid>;tag=2',
            'Content-Length: 0',
          ]),
          callId,
        );
      }
    });
  });

  describe('invalid (after 3.1.2): rejected with the right code', () => {
    /** A request with every mandatory header, `changes` replacing lines by their header name (a null removes it). */
    function request(method: string, changes: Record<string, string | null> = {}, extra: string[] = [], body = ''): { bytes: Buffer; callId: string } {
      const { callId, branch, tag } = ids(method.toLowerCase().replace(/[^a-z]/g, ''));
      const base: [string, string][] = [
        ['Start', `${method} sip:${alice}@${DOMAIN} SIP/2.0`],
        ['Via', `${via()};branch=${branch};rport`],
        ['Max-Forwards', '70'],
        ['From', `<sip:caller@caller.invalid>;tag=${tag}`],
        ['To', `<sip:${alice}@${DOMAIN}>`],
        ['Call-ID', callId],
        ['CSeq', `1 ${method}`],
      ];
      const lines: string[] = [];
      for (const [name, value] of base) {
        const changed = name in changes ? changes[name] : value;
        if (changed === null || changed === undefined) continue;
        lines.push(name === 'Start' ? changed : `${name}: ${changed}`);
      }
      lines.push(...extra);
      if (!extra.some((line) => /^(content-length|l)\s*:/i.test(line))) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
      return { bytes: wire(lines, body), callId };
    }

    test('extraneous header field separators (after 3.1.2.1): 400', async () => {
      const { bytes, callId } = request('INVITE', { To: `<sip:${alice}@${DOMAIN}>;;,;,,` });
      await answered(bytes, callId, 400);
    });

    test('a Content-Length larger than the datagram (after 3.1.2.2): 400', async () => {
      const { bytes, callId } = request('INVITE', {}, ['Content-Type: application/sdp', 'Content-Length: 9999'], 'v=0\r\n');
      await answered(bytes, callId, 400);
    });

    test('a negative Content-Length (after 3.1.2.3): 400', async () => {
      const { bytes, callId } = request('INVITE', {}, ['Content-Type: application/sdp', 'Content-Length: -999'], 'v=0\r\n');
      await answered(bytes, callId, 400);
    });

    test('overlarge scalar values in a request (after 3.1.2.4): CSeq, Max-Forwards, Expires; 400 each', async () => {
      for (const changes of [{ CSeq: '36893488147419103232 REGISTER' }, { 'Max-Forwards': '300' }] as Record<string, string>[]) {
        const { bytes, callId } = request('REGISTER', { ...changes, Start: `REGISTER sip:${DOMAIN} SIP/2.0` });
        await answered(bytes, callId, 400);
      }
      const { bytes, callId } = request('REGISTER', { Start: `REGISTER sip:${DOMAIN} SIP/2.0` }, ['Expires: 10000000000000000000000']);
      await answered(bytes, callId, 400);
    });

    test('overlarge scalar values in a response (after 3.1.2.5): dropped', async () => {
      const { callId, branch, tag } = ids('scalarresp');
      await dropped(
        wire([
          'SIP/2.0 503 Service Unavailable',
          `Via: SIP/2.0/UDP 127.0.0.1:${sipPort};branch=${branch}`,
          `From: <sip:${alice}@${DOMAIN}>;tag=${tag}`,
          'To: <sip:callee@caller.invalid>;tag=2',
          `Call-ID: ${callId}`,
          'CSeq: 36893488147419103232 INVITE',
          'Retry-After: 18446744073709551617',
          'Warning: 1812 overture "In Progress"',
          'Content-Length: 0',
        ]),
        callId,
      );
    });

    test('an unterminated quoted string in a display name (after 3.1.2.6): 400', async () => {
      const { bytes, callId } = request('INVITE', { From: '"Bell, Alexander <sip:a.g.bell@caller.invalid>;tag=43' });
      await answered(bytes, callId, 400);
    });

    test('<> around the Request-URI (after 3.1.2.7): 400', async () => {
      const { bytes, callId } = request('INVITE', { Start: `INVITE <sip:${alice}@${DOMAIN}> SIP/2.0` });
      await answered(bytes, callId, 400);
    });

    test('LWS inside the Request-URI (after 3.1.2.8): 400', async () => {
      const { bytes, callId } = request('INVITE', { Start: `INVITE sip:${alice}@${DOMAIN}; lr SIP/2.0` });
      await answered(bytes, callId, 400);
    });

    test('several SPs between request-line elements (after 3.1.2.9): 400', async () => {
      const { bytes, callId } = request('INVITE', { Start: `INVITE  sip:${alice}@${DOMAIN}   SIP/2.0` });
      await answered(bytes, callId, 400);
    });

    test('SP after the SIP-Version (after 3.1.2.10): 400', async () => {
      const { bytes, callId } = request('OPTIONS', { Start: `OPTIONS sip:${DOMAIN} SIP/2.0 ` });
      await answered(bytes, callId, 400);
    });

    test('escaped headers in the Request-URI (after 3.1.2.11): 400', async () => {
      const { bytes, callId } = request('INVITE', { Start: `INVITE sip:${alice}@${DOMAIN}?Route=%3Csip:sip.caller.invalid%3E SIP/2.0` });
      await answered(bytes, callId, 400);
    });

    test('an invalid Date (after 3.1.2.12) is not the server\'s business: the INVITE is taken, 480', async () => {
      const { bytes, callId } = request('INVITE', {}, ['Date: Fri, 01 Jan 2010 16:00:00 EST', `Contact: <sip:caller@127.0.0.1:${udp.port}>`]);
      await answered(bytes, callId, 480);
    });

    test('a Contact URI with ? not inside <> (after 3.1.2.13): 400', async () => {
      const { bytes, callId } = request('REGISTER', { Start: `REGISTER sip:${DOMAIN} SIP/2.0`, To: `sip:${alice}@${DOMAIN}`, From: `sip:${alice}@${DOMAIN};tag=x` }, [
        'Contact: sip:user@caller.invalid?Route=%3Csip:sip.caller.invalid%3E',
      ]);
      await answered(bytes, callId, 400);
    });

    test('spaces inside an addr-spec (after 3.1.2.14): 400', async () => {
      const { bytes, callId } = request('OPTIONS', { Start: `OPTIONS sip:${DOMAIN} SIP/2.0`, To: `sip:${alice} @ ${DOMAIN}` });
      await answered(bytes, callId, 400);
    });

    test('non-token characters in an unquoted display name (after 3.1.2.15): 400', async () => {
      const { bytes, callId } = request('OPTIONS', { Start: `OPTIONS sip:${DOMAIN} SIP/2.0`, From: 'Bell, Alexander <sip:a.g.bell@caller.invalid>;tag=43' });
      await answered(bytes, callId, 400);
    });

    test('an unknown protocol version (after 3.1.2.16): 505', async () => {
      const { bytes, callId } = request('OPTIONS', { Start: `OPTIONS sip:${DOMAIN} SIP/7.0` });
      await answered(bytes, callId, 505);
    });

    test('start line and CSeq method mismatch (after 3.1.2.17): 400', async () => {
      const { bytes, callId } = request('INVITE', { CSeq: '1 ACK' });
      await answered(bytes, callId, 400);
    });

    test('an unknown method with a mismatched CSeq (after 3.1.2.18): 400', async () => {
      const { bytes, callId } = request('NEWMETHOD', { CSeq: '8 INVITE', Start: `NEWMETHOD sip:${DOMAIN} SIP/2.0` });
      await answered(bytes, callId, 400);
    });

    test('an overlarge response code (after 3.1.2.19): dropped', async () => {
      const { callId, branch, tag } = ids('bigcode');
      await dropped(
        wire([
          'SIP/2.0 4294967301 better not break the receiver',
          `Via: SIP/2.0/UDP 127.0.0.1:${sipPort};branch=${branch}`,
          `Call-ID: ${callId}`,
          'CSeq: 1 INVITE',
          `From: <sip:${alice}@${DOMAIN}>;tag=${tag}`,
          'To: <sip:user@caller.invalid>;tag=39ansfi3',
          'Content-Length: 0',
        ]),
        callId,
      );
    });
  });

  describe('application-layer semantics and backward compatibility (after 3.3, 3.4)', () => {
    test('missing mandatory headers (after 3.3.1): no Call-ID, From or To to answer with, dropped', async () => {
      const { callId, branch } = ids('insuf');
      await dropped(
        wire([
          `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
          `CSeq: 193942 INVITE`,
          `Via: ${via()};branch=${branch};rport`,
          'Content-Type: application/sdp',
          `X-Call-ID-For-The-Test: ${callId}`,
          'l: 0',
        ]),
        callId,
      );
      // With its Call-ID but no To: still not answerable.
      const second = ids('insuf2');
      await dropped(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${second.branch};rport`,
          `From: <sip:caller@caller.invalid>;tag=${second.tag}`,
          `Call-ID: ${second.callId}`,
          'CSeq: 1 OPTIONS',
          'l: 0',
        ]),
        second.callId,
      );
    });

    test('an unknown Request-URI scheme (after 3.3.2): 416', async () => {
      const { callId, branch, tag } = ids('unkscm');
      await answered(
        wire([
          'OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0',
          `To: sip:${alice}@${DOMAIN}`,
          `From: sip:caller@caller.invalid;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 1 OPTIONS',
          `Via: ${via()};branch=${branch};rport`,
          'l: 0',
        ]),
        callId,
        416,
      );
    });

    test('a tel: Request-URI on an INVITE (after 3.3.3): 416 (calls take SIP URIs)', async () => {
      const { callId, branch, tag } = ids('novelsc');
      await answered(
        wire([
          'INVITE tel:+1-201-555-0123 SIP/2.0',
          `To: <tel:+1-201-555-0123>`,
          `From: <sip:caller@caller.invalid>;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 1 INVITE',
          `Via: ${via()};branch=${branch};rport`,
          'l: 0',
        ]),
        callId,
        416,
      );
    });

    test('unknown URI schemes in To, From and Contact (after 3.3.4): not the Request-URI, so an OPTIONS is 200', async () => {
      const { callId, branch, tag } = ids('unksm2');
      await answered(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          'To: isbn:2983792873',
          `From: <http://www.caller.invalid>;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 3923239 OPTIONS',
          `Via: ${via()};branch=${branch};rport`,
          'Contact: <name:John_Smith>',
          'l: 0',
        ]),
        callId,
        200,
      );
    });

    test('an unknown extension in Require (after 3.3.5, for the UAS): 420 with Unsupported', async () => {
      const { callId, branch, tag } = ids('bext01');
      const response = await answered(
        wire([
          `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
          `To: sip:${alice}@${DOMAIN}`,
          `From: sip:caller@caller.invalid;tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 1 INVITE',
          `Via: ${via()};branch=${branch};rport`,
          'Require: nothingSupportsThis, nothingSupportsThisEither',
          `Contact: <sip:caller@127.0.0.1:${udp.port}>`,
          'l: 0',
        ]),
        callId,
        420,
      );
      assert.match(response.headers.getAll('Unsupported').join(','), /nothingSupportsThis/i);
    });

    test('an unknown Content-Type (after 3.3.6): 415 with Accept', async () => {
      const { callId, branch, tag } = ids('invut');
      const body = '<audio> <pcmu port="443"/> </audio>';
      const response = await answered(
        wire(
          [
            `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
            `Contact: <sip:caller@127.0.0.1:${udp.port}>`,
            `To: sip:${alice}@${DOMAIN}`,
            `From: sip:caller@caller.invalid;tag=${tag}`,
            'Max-Forwards: 70',
            `Call-ID: ${callId}`,
            'CSeq: 1 INVITE',
            `Via: ${via()};branch=${branch};rport`,
            'Content-Type: application/unknownformat',
            `Content-Length: ${body.length}`,
          ],
          body,
        ),
        callId,
        415,
      );
      assert.ok(response.headers.get('Accept'), 'Accept says what would do');
    });

    test('an unknown authorization scheme (after 3.3.7): the REGISTER is challenged, 401', async () => {
      const { callId, branch, tag } = ids('regaut01');
      const response = await answered(
        wire([
          `REGISTER sip:${DOMAIN} SIP/2.0`,
          `To: sip:${alice}@${DOMAIN}`,
          `From: sip:${alice}@${DOMAIN};tag=${tag}`,
          'Max-Forwards: 70',
          `Call-ID: ${callId}`,
          'CSeq: 2 REGISTER',
          `Via: ${via()};branch=${branch};rport`,
          'Authorization: NoOneKnowsThisScheme opaque-data=here',
          `Contact: <sip:${alice}@127.0.0.1:${udp.port}>`,
          'Content-Length: 0',
        ]),
        callId,
        401,
      );
      assert.match(response.headers.get('WWW-Authenticate') ?? '', /^Digest /);
    });

    test('several values in single-value fields (after 3.3.8) and disagreeing Content-Lengths (after 3.3.9): 400', async () => {
      const cases: string[][] = [
        ['From: sip:caller@caller.invalid;tag=a', 'From: sip:other@caller.invalid;tag=b'],
        ['From: sip:caller@caller.invalid;tag=a', 'Content-Length: 0', 'Content-Length: 4'],
      ];
      for (const headers of cases) {
        const { callId, branch } = ids('multi');
        const lines = [
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${branch};rport`,
          'Max-Forwards: 70',
          `To: sip:${DOMAIN}`,
          `Call-ID: ${callId}`,
          'CSeq: 1 OPTIONS',
          ...headers,
        ];
        if (!headers.some((h) => h.startsWith('Content-Length'))) lines.push('Content-Length: 0');
        await answered(wire(lines), callId, 400);
      }
    });

    test('a 200 with a broadcast Via sent-by (after 3.3.10), for no transaction: dropped', async () => {
      const { callId, tag } = ids('bcast');
      await dropped(
        wire([
          'SIP/2.0 200 OK',
          'Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923',
          'Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23',
          `Call-ID: ${callId}`,
          'CSeq: 1 INVITE',
          `From: <sip:${alice}@${DOMAIN}>;tag=${tag}`,
          'To: <sip:user@caller.invalid>;tag=2',
          'Content-Length: 0',
        ]),
        callId,
      );
    });

    test('Max-Forwards of zero (after 3.3.11): an OPTIONS to the server is answered 200, an INVITE 483', async () => {
      const opt = ids('zeromf');
      await answered(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${opt.branch};rport`,
          'Max-Forwards: 0',
          `From: <sip:caller@caller.invalid>;tag=${opt.tag}`,
          `To: <sip:${DOMAIN}>`,
          `Call-ID: ${opt.callId}`,
          'CSeq: 1 OPTIONS',
          'Content-Length: 0',
        ]),
        opt.callId,
        200,
      );
      const inv = ids('zeromf-inv');
      await answered(
        wire([
          `INVITE sip:${alice}@${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${inv.branch};rport`,
          'Max-Forwards: 0',
          `From: <sip:caller@caller.invalid>;tag=${inv.tag}`,
          `To: <sip:${alice}@${DOMAIN}>`,
          `Call-ID: ${inv.callId}`,
          'CSeq: 1 INVITE',
          'Content-Length: 0',
        ]),
        inv.callId,
        483,
      );
    });

    test('REGISTER with a contact parameter, a URI parameter and an escaped header in Contact (after 3.3.12-3.3.14): 401', async () => {
      for (const contact of [
        `sip:${alice}@127.0.0.1:${udp.port};expires=280`,
        `<sip:${alice}@127.0.0.1:${udp.port};expires=280>`,
        `<sip:${alice}@127.0.0.1:${udp.port}?Route=%3Csip:sip.caller.invalid%3E>`,
      ]) {
        const { callId, branch, tag } = ids('cparam');
        await answered(
          wire([
            `REGISTER sip:${DOMAIN} SIP/2.0`,
            `Via: ${via()};branch=${branch};rport`,
            'Max-Forwards: 70',
            `From: sip:${alice}@${DOMAIN};tag=${tag}`,
            `To: sip:${alice}@${DOMAIN}`,
            `Call-ID: ${callId}`,
            'CSeq: 3 REGISTER',
            `Contact: ${contact}`,
            'Accept: text/nobodyknowsthis',
            'Content-Length: 0',
          ]),
          callId,
          401,
        );
      }
    });

    test('an RFC 2543 request without a branch (after 3.4.1): an OPTIONS, 200', async () => {
      const { callId, tag } = ids('inv2543');
      await answered(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: SIP/2.0/UDP 127.0.0.1:${udp.port};rport`,
          'Max-Forwards: 70',
          `From: sip:caller@caller.invalid;tag=${tag}`,
          `To: sip:${DOMAIN}`,
          `Call-ID: ${callId}`,
          'CSeq: 1 OPTIONS',
          'Content-Length: 0',
        ]),
        callId,
        200,
      );
    });
  });

  describe('garbage and limits', () => {
    test('random bytes in datagrams: dropped, the server still answers', async () => {
      const before = udp.inbox.received.length;
      let seed = 4475;
      const random = (): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed;
      };
      for (let i = 0; i < 50; i++) {
        const bytes = Buffer.alloc(1 + (random() % 1400));
        for (let j = 0; j < bytes.length; j++) bytes[j] = random() & 0xff;
        await udp.send(bytes, sipPort);
      }
      // Some SIP-looking garbage too: a start line alone, a start line and NULs, headers and no start line.
      await udp.send(Buffer.from(`INVITE sip:${alice}@${DOMAIN} SIP/2.0`), sipPort);
      await udp.send(Buffer.concat([Buffer.from(`OPTIONS sip:${DOMAIN} SIP/2.0\r\n`), Buffer.alloc(200)]), sipPort);
      await udp.send(Buffer.from('Via: SIP/2.0/UDP x\r\nCall-ID: y\r\n\r\n'), sipPort);
      await stillServing();
      // Only the probe's answer came back.
      assert.equal(udp.inbox.received.length, before + 1, udp.inbox.received.slice(before).map(describeMessage).join(', '));
      assert.equal(udp.unreadable.length, 0, 'the server sent nothing unreadable');
    });

    test('a header line over 8 KiB: an answerable request is still not read, dropped', async () => {
      const { callId, branch, tag } = ids('longline');
      await dropped(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${branch};rport`,
          'Max-Forwards: 70',
          `From: <sip:caller@caller.invalid>;tag=${tag}`,
          `To: <sip:${DOMAIN}>`,
          `Call-ID: ${callId}`,
          'CSeq: 1 OPTIONS',
          `X-Long: ${'x'.repeat(9000)}`,
          'Content-Length: 0',
        ]),
        callId,
      );
    });

    test('10,000 header lines in one datagram: dropped, the server still answers', async () => {
      const { callId, branch, tag } = ids('manyheaders');
      await dropped(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${branch};rport`,
          'Max-Forwards: 70',
          `From: <sip:caller@caller.invalid>;tag=${tag}`,
          `To: <sip:${DOMAIN}>`,
          `Call-ID: ${callId}`,
          'CSeq: 1 OPTIONS',
          ...Array.from({ length: 10_000 }, () => 'X:1'),
          'Content-Length: 0',
        ]),
        callId,
      );
    });

    test('71 Via values (over the limit of 70): 400', async () => {
      const { callId, branch, tag } = ids('manyvias');
      await answered(
        wire([
          `OPTIONS sip:${DOMAIN} SIP/2.0`,
          `Via: ${via()};branch=${branch};rport`,
          ...Array.from({ length: 70 }, (_, i) => `Via: SIP/2.0/UDP hop${i}.invalid;branch=z9hG4bK${i}`),
          'Max-Forwards: 70',
          `From: <sip:caller@caller.invalid>;tag=${tag}`,
          `To: <sip:${DOMAIN}>`,
          `Call-ID: ${callId}`,
          'CSeq: 1 OPTIONS',
          'Content-Length: 0',
        ]),
        callId,
        400,
      );
    });
  });

  describe('framing on TCP', () => {
    function tcpOptions(peer: TcpPeer, extra: string[] = [], contentLength: string | null = '0', body = ''): { bytes: Buffer; callId: string } {
      const { callId, branch, tag } = ids('tcp');
      const lines = [
        `OPTIONS sip:${DOMAIN} SIP/2.0`,
        `Via: SIP/2.0/TCP 127.0.0.1:${peer.port};branch=${branch}`,
        'Max-Forwards: 70',
        `From: <sip:caller@caller.invalid>;tag=${tag}`,
        `To: <sip:${DOMAIN}>`,
        `Call-ID: ${callId}`,
        'CSeq: 1 OPTIONS',
        ...extra,
      ];
      if (contentLength !== null) lines.push(`Content-Length: ${contentLength}`);
      return { bytes: wire(lines, body), callId };
    }

    test('a message split anywhere, and two in one write, with a Content-Length that waits for its body (after 3.1.2.2 on a stream)', async () => {
      const peer = await TcpPeer.connect(sipPort);
      try {
        const body = 'a body of 18 bytes';
        const one = tcpOptions(peer, ['Content-Type: text/plain'], String(body.length), body);
        // The head and part of the body, then the rest: the server waits for the Content-Length.
        await peer.send(one.bytes.subarray(0, one.bytes.length - 5));
        const two = tcpOptions(peer);
        const three = tcpOptions(peer);
        await peer.send(Buffer.concat([one.bytes.subarray(one.bytes.length - 5), two.bytes, three.bytes]));
        for (const { callId } of [one, two, three]) assert.equal((await peer.inbox.final(callId)).status, 200);
      } finally {
        peer.close();
      }
    });

    test('no Content-Length on a stream: 400, and the connection closed', async () => {
      const peer = await TcpPeer.connect(sipPort);
      const { bytes, callId } = tcpOptions(peer, [], null);
      await peer.send(bytes);
      assert.equal((await peer.inbox.final(callId)).status, 400);
      await peer.closed;
      await stillServing();
    });

    test('a negative Content-Length on a stream (after 3.1.2.3): 400, and the connection closed', async () => {
      const peer = await TcpPeer.connect(sipPort);
      const { bytes, callId } = tcpOptions(peer, [], '-999');
      await peer.send(bytes);
      assert.equal((await peer.inbox.final(callId)).status, 400);
      await peer.closed;
      await stillServing();
    });

    test('a Content-Length far over the limit on a stream: 413 at once, without waiting for the body, and closed', async () => {
      const peer = await TcpPeer.connect(sipPort);
      const { bytes, callId } = tcpOptions(peer, ['Content-Type: text/plain'], '100000000');
      await peer.send(bytes);
      assert.equal((await peer.inbox.final(callId)).status, 413);
      await peer.closed;
      await stillServing();
    });

    test('10,000 header lines (450 KB) on a stream: over the line limit, the connection closed, the server still answers', async () => {
      const peer = await TcpPeer.connect(sipPort);
      const { bytes } = tcpOptions(peer, Array.from({ length: 10_000 }, (_, i) => `X-Filler-${i}: ${'y'.repeat(30)}`));
      peer.socket.write(bytes, () => {});
      await peer.closed;
      assert.deepEqual(peer.inbox.received.map(describeMessage), [], 'nothing to answer: the start line was never read');
      await stillServing();
    });

    test('a head over 256 KiB in 40 lines of 8,000 bytes: 513 when it can still be answered, the connection closed', async () => {
      const peer = await TcpPeer.connect(sipPort);
      const { bytes, callId } = tcpOptions(peer, Array.from({ length: 40 }, (_, i) => `X-Filler-${i}: ${'z'.repeat(8000)}`));
      peer.socket.write(bytes, () => {});
      await peer.closed;
      // Read whole, the head is answered 513; cut by the limit while it was arriving, it cannot be.
      for (const message of peer.inbox.received) {
        assert.equal(message.kind === 'response' ? message.status : 0, 513, describeMessage(message));
        assert.equal(callIdOf(message), callId);
      }
      await stillServing();
    });

    test('random bytes on a stream: the connection closed, the server still answers', async () => {
      const peer = await TcpPeer.connect(sipPort);
      const garbage = Buffer.alloc(4096);
      for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 0xff;
      // A NUL-free line of garbage ends the head with something that is not a start line.
      peer.socket.write(Buffer.concat([Buffer.from('\u0001\u0002 garbage\r\n'), garbage, Buffer.from('\r\n\r\n')]), () => {});
      await peer.closed;
      await stillServing();
    });
  });
});
