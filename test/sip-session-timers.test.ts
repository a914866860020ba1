/**
 * SIP session timers (RFC 4028). First the dialog layer (src/transports/sip/dialog*.ts) between
 * two user agent cores on an in-memory network whose every message is serialised and parsed
 * back, with a FakeClock for time: what the INVITE and the 2xx say, who refreshes and how
 * (UPDATE, or a re-INVITE with the same SDP when UPDATE is refused), the BYE when no refresh
 * comes by the interval minus min(32 s, a third of it) (section 10), and 422 both ways (section
 * 7.4, section 9). Then on the wire, through the server's B2BUA (src/transports/sip/b2bua.ts),
 * with a raw UDP phone (test/fixtures/sip-phone.ts) and a small sip.minSE (a test-only value:
 * RFC 4028 wants 90 s at least): a phone that stops refreshing gets a BYE and the XIMSS side
 * callDisconnected; a phone that refreshes keeps its call, and a refresh that changes no
 * media is answered by the server without bothering the other side; 422 to a phone's INVITE
 * that asks too little, and our INVITE sent again with the Min-SE a phone's 422 asks for. The
 * wire tests wait a few seconds of real time (a 3 s session interval); nothing asserts on it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  UserAgentCore,
  type ClientCall,
  type Dialog,
  type IncomingRequest,
  type ServerCall,
  type TerminationReason,
} from '../src/transports/sip/dialog.js';
import {
  parseMinSE,
  parseSessionExpires,
  sdpOrigin,
  sessionTermsAsUas,
} from '../src/transports/sip/dialog-messages.js';
import type { SessionTimerSettings } from '../src/transports/sip/dialog-types.js';
import { SipHeaders } from '../src/transports/sip/headers.js';
import { parseSipMessage, serializeSipMessage, type SipMessage } from '../src/transports/sip/message.js';
import { TransactionLayer, type SipEndpoint } from '../src/transports/sip/transactions.js';
import { parseSipUri } from '../src/transports/sip/uri.js';
import { FakeClock } from './fixtures/fake-clock.js';
import { SipPhone, type PhoneDialog } from './fixtures/sip-phone.js';
import { freeSipPort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// The dialog layer on an in-memory network

const OFFER = 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n';
const ANSWER = 'v=0\r\no=- 2 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n';

interface Sent {
  from: string;
  message: SipMessage;
  at: number;
}

/** Messages queue up and are delivered in order after every action and every timer. */
class Network {
  private readonly nodes = new Map<string, (message: SipMessage, source: SipEndpoint) => void>();
  private readonly queue: Array<{ bytes: Buffer; from: SipEndpoint; to: SipEndpoint }> = [];
  readonly sent: Sent[] = [];
  /** Messages for which this says true are lost. */
  drop: (message: SipMessage) => boolean = () => false;

  constructor(readonly clock: FakeClock) {
    clock.afterEach = () => this.flush();
  }

  attach(endpoint: SipEndpoint, deliver: (message: SipMessage, source: SipEndpoint) => void): void {
    this.nodes.set(endpoint.host, deliver);
  }

  send(from: SipEndpoint, message: SipMessage, to: SipEndpoint): void {
    this.queue.push({ bytes: serializeSipMessage(message), from, to });
  }

  flush(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      const next = this.queue.shift();
      if (next === undefined) return;
      const message = parseSipMessage(next.bytes);
      this.sent.push({ from: next.from.host, message, at: this.clock.now });
      if (this.drop(message)) continue;
      this.nodes.get(next.to.host)?.(parseSipMessage(next.bytes), { host: next.from.host, port: next.from.port });
    }
    throw new Error('The network never settles');
  }

  /** Requests of `method` sent by `from`. */
  requests(method: string, from?: string): Array<Sent & { message: Extract<SipMessage, { kind: 'request' }> }> {
    return this.sent.filter((s): s is Sent & { message: Extract<SipMessage, { kind: 'request' }> } =>
      s.message.kind === 'request' && s.message.method === method && (from === undefined || s.from === from));
  }

  /** Responses with `status` to `method`. */
  responses(status: number, method: string): SipMessage[] {
    return this.sent
      .map((s) => s.message)
      .filter((m) => m.kind === 'response' && m.status === status && m.headers.get('CSeq')?.endsWith(` ${method}`));
  }
}

interface Agent {
  host: string;
  uri: string;
  core: UserAgentCore;
  calls: ServerCall[];
  /** Requests inside dialogs reach this owner: it answers 200, or what `answer` says. */
  answer: (incoming: IncomingRequest) => number;
}

function agent(net: Network, host: string, sessionTimer: SessionTimerSettings | undefined): Agent {
  const endpoint: SipEndpoint = { host, port: 5060 };
  const send = (message: SipMessage, destination: SipEndpoint): void => net.send(endpoint, message, destination);
  const self = { host, uri: `sip:user@${host}`, calls: [] as ServerCall[], answer: () => 200 } as unknown as Agent;
  const layer = new TransactionLayer({
    clock: net.clock,
    send,
    tu: (event) => {
      if (self.core.receive(event)) return;
      if (event.type === 'request' && event.request.method === 'INVITE') {
        const call = self.core.acceptInvite(event);
        if (call !== undefined) self.calls.push(call);
      }
    },
  });
  self.core = new UserAgentCore({
    transactions: layer,
    send,
    localAddress: () => ({ transport: 'udp', host, port: 5060 }),
    resolve: (uri) => ({ host: parseSipUri(uri).host, port: 5060 }),
    clock: net.clock,
    timers: { t1: 500 },
    ...(sessionTimer === undefined ? {} : { sessionTimer }),
  });
  net.attach(endpoint, (message, source) => layer.receive(message, source, false));
  return self;
}

/** The owner of a dialog: answers what comes in (with `agent.answer`'s status) and records how it ended. */
function own(dialog: Dialog, owner: Agent): { ended: TerminationReason[]; requests: IncomingRequest[] } {
  const seen = { ended: [] as TerminationReason[], requests: [] as IncomingRequest[] };
  dialog.on('request', (incoming) => {
    seen.requests.push(incoming);
    const status = owner.answer(incoming);
    incoming.respond(status, status === 200 && incoming.method === 'INVITE' ? { body: dialog.localSdp } : {});
  });
  dialog.on('terminated', (reason) => seen.ended.push(reason));
  return seen;
}

const RFC_DEFAULTS: SessionTimerSettings = { expires: 1800, minSE: 90 };

/** a calls b (with `headers` on the INVITE); b answers; both dialogs confirmed, acknowledged and owned. */
function call(a: Agent, b: Agent, net: Network, headers: Array<[string, string]> = []) {
  const outgoing: ClientCall = a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER, headers });
  let uac: Dialog | undefined;
  outgoing.on('answered', (dialog) => {
    uac = dialog;
    dialog.ack();
  });
  net.flush();
  const incoming = b.calls.at(-1)!;
  incoming.answer(200, ANSWER);
  net.flush();
  assert.ok(uac, 'the call was answered');
  const uas = incoming.dialog;
  return { outgoing, uac, uas, a: own(uac, a), b: own(uas, b) };
}

function world(aTimer: SessionTimerSettings | undefined, bTimer: SessionTimerSettings | undefined) {
  const clock = new FakeClock();
  const net = new Network(clock);
  return { clock, net, a: agent(net, '192.0.2.1', aTimer), b: agent(net, '192.0.2.2', bTimer) };
}

describe('RFC 4028 headers (pure)', () => {
  test('Session-Expires, Min-SE and the SDP origin read; garbage is a parse error', () => {
    assert.deepEqual(parseSessionExpires('1800'), { delta: 1800, refresher: undefined });
    assert.deepEqual(parseSessionExpires(' 90 ; refresher=UAS ;foo=bar'), { delta: 90, refresher: 'uas' });
    assert.throws(() => parseSessionExpires('0'));
    assert.throws(() => parseSessionExpires('soon'));
    assert.throws(() => parseSessionExpires('90;refresher=both'));
    assert.equal(parseMinSE('120;x=y'), 120);
    assert.throws(() => parseMinSE('-1'));
    assert.equal(sdpOrigin({ contentType: 'application/sdp', content: OFFER }), '- 1 1 IN IP4 192.0.2.1');
    assert.equal(sdpOrigin({ contentType: 'text/plain', content: OFFER }), undefined);
  });

  test('what a UAS grants: 422 below its minimum, the interval bounded by its own, the refresher', () => {
    const headers = (...lines: Array<[string, string]>): SipHeaders => new SipHeaders(lines);
    const ours = { expires: 1800, minSE: 90 };
    assert.deepEqual(sessionTermsAsUas(headers(['Session-Expires', '60']), ours), { tooSmall: 90 });
    // A caller that supports timer refreshes unless it asks otherwise.
    assert.deepEqual(sessionTermsAsUas(headers(['Supported', 'timer'], ['Session-Expires', '120']), ours),
      { interval: 120, refresher: 'uac', require: true });
    assert.deepEqual(sessionTermsAsUas(headers(['Supported', '100rel, timer'], ['x', '600;refresher=uas']), ours),
      { interval: 600, refresher: 'uas', require: true });
    // Longer than ours is cut down to ours, but never below the caller's Min-SE.
    assert.equal((sessionTermsAsUas(headers(['Session-Expires', '86400']), ours) as { interval: number }).interval, 1800);
    assert.equal((sessionTermsAsUas(headers(['Session-Expires', '86400'], ['Min-SE', '3600']), ours) as { interval: number }).interval, 3600);
    // A caller that does not know session timers cannot refresh: we do, and do not require it.
    assert.deepEqual(sessionTermsAsUas(headers(), ours), { interval: 1800, refresher: 'uas', require: false });
    assert.deepEqual(sessionTermsAsUas(headers(['Session-Expires', '300;refresher=uac']), ours),
      { interval: 300, refresher: 'uas', require: false });
    assert.throws(() => sessionTermsAsUas(headers(['Session-Expires', 'never']), ours));
  });
});

describe('SIP session timers in the dialog layer (fake clock)', () => {
  test('both support timer: the INVITE asks, the 2xx grants with refresher=uac, the caller refreshes with UPDATE at half the interval', () => {
    const { clock, net, a, b } = world(RFC_DEFAULTS, RFC_DEFAULTS);
    const c = call(a, b, net);
    const invite = net.requests('INVITE', a.host)[0]!.message;
    assert.equal(invite.headers.get('Session-Expires'), '1800');
    assert.equal(invite.headers.get('Min-SE'), '90');
    assert.ok(invite.headers.getAll('Supported').includes('timer'));
    const ok = net.responses(200, 'INVITE')[0]!;
    assert.equal(ok.headers.get('Session-Expires'), '1800;refresher=uac');
    assert.ok(ok.headers.getAll('Require').includes('timer'));
    assert.deepEqual(c.uac.sessionTimer, { interval: 1800, refresher: 'local' });
    assert.deepEqual(c.uas.sessionTimer, { interval: 1800, refresher: 'remote' });

    clock.advance(899_000);
    assert.equal(net.requests('UPDATE').length, 0, 'no refresh before half the interval');
    clock.advance(1_000);
    const updates = net.requests('UPDATE', a.host);
    assert.equal(updates.length, 1);
    assert.equal(updates[0]!.message.body.length, 0, 'a refresh UPDATE carries no offer');
    assert.equal(updates[0]!.message.headers.get('Session-Expires'), '1800;refresher=uac');
    assert.equal(net.responses(200, 'UPDATE')[0]!.headers.get('Session-Expires'), '1800;refresher=uac');
    // Refreshes go on every half interval, and keep the call: 3 hours, 12 refreshes, no BYE.
    clock.advance(3 * 3600_000 - 900_000);
    assert.equal(net.requests('UPDATE', a.host).length, 12);
    assert.equal(net.requests('BYE').length, 0);
    assert.equal(c.uac.state, 'confirmed');
    assert.equal(c.uas.state, 'confirmed');
    c.uac.endWithBye('local-bye');
    net.flush();
    assert.equal(c.uas.state, 'terminated');
  });

  test('a caller that does not know session timers: the callee grants refresher=uas without Require, and refreshes itself', () => {
    const { clock, net, a, b } = world(undefined, RFC_DEFAULTS);
    const c = call(a, b, net);
    const invite = net.requests('INVITE', a.host)[0]!.message;
    assert.equal(invite.headers.get('Session-Expires'), undefined);
    const ok = net.responses(200, 'INVITE')[0]!;
    assert.equal(ok.headers.get('Session-Expires'), '1800;refresher=uas');
    assert.ok(!ok.headers.getAll('Require').includes('timer'));
    assert.equal(c.uac.sessionTimer, undefined);
    clock.advance(1800_000);
    // The caller's 2xx to our UPDATEs has no Session-Expires: we go on refreshing all the same.
    assert.equal(net.requests('UPDATE', b.host).length, 2);
    assert.equal(net.requests('BYE').length, 0);
    assert.deepEqual(c.uas.sessionTimer, { interval: 1800, refresher: 'local' });
  });

  test('a refresher that never refreshes: BYE at the interval minus min(32 s, a third), and the dialog ends session-expired', () => {
    const { clock, net, a, b } = world(undefined, RFC_DEFAULTS);
    // The caller asks for 90 s and says it refreshes, but a core without timers never does.
    const c = call(a, b, net, [['Supported', 'timer'], ['Session-Expires', '90;refresher=uac']]);
    assert.equal(net.responses(200, 'INVITE')[0]!.headers.get('Session-Expires'), '90;refresher=uac');
    const answeredAt = clock.now;
    clock.advance(59_999);
    assert.equal(net.requests('BYE').length, 0);
    clock.advance(1);
    const byes = net.requests('BYE', b.host);
    assert.equal(byes.length, 1);
    assert.equal(byes[0]!.at - answeredAt, 60_000, '90 s less a third of it');
    assert.deepEqual(c.b.ended, ['session-expired']);
    assert.deepEqual(c.a.ended, ['remote-bye']);
    assert.equal(b.core.sessionsExpired, 1);
    // Longer intervals keep 32 s: 1800 s -> BYE at 1768 s.
    const second = call(a, b, net, [['Supported', 'timer'], ['Session-Expires', '1800;refresher=uac']]);
    const start = clock.now;
    clock.advance(1800_000);
    assert.equal(net.requests('BYE', b.host).at(-1)!.at - start, 1_768_000);
    assert.deepEqual(second.b.ended, ['session-expired']);
  });

  test('a refresh from the peer restarts the interval: the call outlives several intervals', () => {
    const { clock, net, a, b } = world(undefined, RFC_DEFAULTS);
    const c = call(a, b, net, [['Supported', 'timer'], ['Session-Expires', '90;refresher=uac']]);
    for (let i = 0; i < 6; i++) {
      clock.advance(45_000);
      void c.uac.request('UPDATE', { headers: [['Supported', 'timer'], ['Session-Expires', '90;refresher=uac']] });
      net.flush();
    }
    assert.equal(net.requests('BYE').length, 0);
    assert.equal(net.responses(200, 'UPDATE').length, 6);
    assert.equal(net.responses(200, 'UPDATE')[5]!.headers.get('Session-Expires'), '90;refresher=uac');
    // A re-INVITE refreshes as well.
    clock.advance(45_000);
    void c.uac.request('INVITE', { body: OFFER, headers: [['Supported', 'timer'], ['Session-Expires', '90;refresher=uac']] });
    net.flush();
    clock.advance(59_000);
    assert.equal(net.requests('BYE').length, 0);
    clock.advance(1_000);
    assert.equal(net.requests('BYE', b.host).length, 1, 'and once they stop, the BYE comes');
    assert.deepEqual(c.b.ended, ['session-expired']);
  });

  test('a peer that refuses UPDATE (405): the refresh goes as a re-INVITE with the SDP we sent last, unchanged', async () => {
    const { clock, net, a, b } = world(RFC_DEFAULTS, RFC_DEFAULTS);
    const c = call(a, b, net);
    b.answer = (incoming) => (incoming.method === 'UPDATE' ? 405 : 200);
    clock.advance(900_000);
    // The outcome of the UPDATE comes as a promise: the re-INVITE is scheduled once it settles.
    await settle();
    clock.advance(0);
    assert.equal(net.responses(405, 'UPDATE').length, 1);
    const reinvites = net.requests('INVITE', a.host).slice(1);
    assert.equal(reinvites.length, 1);
    assert.equal(reinvites[0]!.message.body.toString(), OFFER, 'the same SDP as before, version and all');
    assert.equal(reinvites[0]!.message.headers.get('Session-Expires'), '1800;refresher=uac');
    assert.equal(net.requests('ACK', a.host).length, 2, 'the re-INVITE\'s 2xx acknowledged by the layer');
    clock.advance(900_000);
    assert.equal(net.requests('INVITE', a.host).length, 3, 'UPDATE is not tried again');
    assert.equal(net.requests('UPDATE', a.host).length, 1);
    assert.equal(c.uas.state, 'confirmed');
  });

  test('a refresh that gets no answer ends the dialog (RFC 4028 10: 408 or timeout)', () => {
    const { clock, net, a, b } = world(RFC_DEFAULTS, RFC_DEFAULTS);
    const c = call(a, b, net);
    net.drop = (message) => message.kind === 'request' && message.method === 'UPDATE';
    clock.advance(900_000 + 32_000);
    assert.deepEqual(c.a.ended, ['timeout']);
    // The callee hears nothing, and ends the call itself at 1768 s.
    clock.advance(1800_000);
    assert.deepEqual(c.b.ended, ['session-expired']);
  });

  test('422 to our INVITE: sent again once, with a new CSeq, asking for the Min-SE given', () => {
    const { net, a, b } = world({ expires: 100, minSE: 90 }, { expires: 1800, minSE: 600 });
    const c = call(a, b, net);
    const invites = net.requests('INVITE', a.host).map((s) => s.message);
    assert.equal(invites.length, 2);
    const refused = net.responses(422, 'INVITE')[0]!;
    assert.equal(refused.headers.get('Min-SE'), '600');
    assert.equal(invites[0]!.headers.get('CSeq'), '1 INVITE');
    assert.equal(invites[1]!.headers.get('CSeq'), '2 INVITE');
    assert.equal(invites[1]!.headers.get('Call-ID'), invites[0]!.headers.get('Call-ID'));
    assert.equal(invites[1]!.headers.get('Session-Expires'), '600');
    assert.equal(invites[1]!.headers.get('Min-SE'), '600');
    assert.deepEqual(c.uac.sessionTimer, { interval: 600, refresher: 'local' });
  });

  test('422 to a re-INVITE or UPDATE below our minimum, inside the dialog; the owner never sees it', () => {
    const { net, a, b } = world(undefined, RFC_DEFAULTS);
    const c = call(a, b, net);
    void c.uac.request('UPDATE', { headers: [['Session-Expires', '30']] });
    void c.uac.request('INFO', { headers: [['Session-Expires', 'garbage']] });
    net.flush();
    const refused = net.responses(422, 'UPDATE');
    assert.equal(refused.length, 1);
    assert.equal(refused[0]!.headers.get('Min-SE'), '90');
    assert.equal(c.b.requests.filter((r) => r.method === 'UPDATE').length, 0);
    void c.uac.request('UPDATE', { headers: [['Session-Expires', 'never']] });
    net.flush();
    assert.equal(net.responses(400, 'UPDATE').length, 1, 'an unreadable one is a 400');
  });

  test('without session timers configured nothing changes: no headers, no timers', () => {
    const { clock, net, a, b } = world(undefined, undefined);
    const c = call(a, b, net);
    assert.equal(net.requests('INVITE')[0]!.message.headers.get('Session-Expires'), undefined);
    assert.equal(net.responses(200, 'INVITE')[0]!.headers.get('Session-Expires'), undefined);
    assert.equal(c.uas.sessionTimer, undefined);
    // Only the transaction layer's timers remain, and they run out.
    clock.advance(70_000);
    assert.equal(clock.pending, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// On the wire, through the server

let server: TestServer;
let sipPort: number;

/** The interval the phones ask for; sip.minSE is set below it for these tests (RFC 4028 wants 90 at least). */
const SE = 3;

before(async () => {
  sipPort = await freeSipPort();
  server = await startTestServer({ ports: { sip: sipPort }, sip: { minSE: 2, sessionExpires: 1800 } });
});
after(() => server?.stop());

async function newUser(): Promise<{ address: string; client: XimssClient }> {
  const address = await server.newAccount('party');
  const { client } = await server.login(address, 'secret');
  await ok(client, '<signalBind/>');
  return { address, client };
}

async function newPhone(name: string): Promise<SipPhone> {
  const address = await server.newAccount(name, { password: 'phone-secret' });
  const phone = await SipPhone.open(sipPort, address, 'phone-secret');
  await phone.register();
  return phone;
}

function sdp(port: number, version = 1): string {
  return ['v=0', `o=- ${port} ${version} IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
}

/** The phone calls `user` asking for a session timer, and `user` accepts. */
async function phoneCalls(phone: SipPhone, user: { address: string; client: XimssClient }, port: number,
  headers: string[]): Promise<{ dialog: PhoneDialog; leg: string; response: SipMessage }> {
  const calling = phone.invite(`sip:${user.address}`, `<sip:${user.address}>`, port, headers);
  const incoming = await user.client.takeAsync('callIncoming', () => true, 10_000);
  const leg = incoming.attrs.callLeg!;
  await ok(user.client, `<callAccept callLeg="${leg}"><sdpText>${sdp(port + 1)}</sdpText></callAccept>`);
  const { response, dialog } = await calling;
  assert.equal(response.status, 200);
  return { dialog: dialog!, leg, response };
}

/** Lets promise callbacks run (the outcome of a request is a promise). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('SIP session timers through the B2BUA (a raw UDP phone)', { timeout: 60_000 }, () => {
  test('a phone that asks for a session timer and never refreshes gets a BYE; the XIMSS side gets callDisconnected', async () => {
    const phone = await newPhone('silent');
    try {
      const user = await newUser();
      const { dialog, leg, response } = await phoneCalls(phone, user, 7600, ['Supported: timer', `Session-Expires: ${SE};refresher=uac`]);
      assert.equal(response.headers.get('Session-Expires'), `${SE};refresher=uac`);
      assert.ok(response.headers.getAll('Require').includes('timer'));
      assert.ok(response.headers.getAll('Supported').includes('timer'));
      // The phone says nothing more: the server ends the call (after 2 s of real time).
      const bye = await phone.nextRequest('BYE', dialog);
      assert.equal(bye.kind, 'request');
      const gone = await user.client.takeAsync('callDisconnected', (m) => m.attrs.callLeg === leg, 10_000);
      assert.match(gone.attrs.errorText ?? '', /session expired/i);
    } finally {
      phone.close();
    }
  });

  test('a phone that refreshes keeps its call; a refresh that changes no media never reaches the other side', async () => {
    const phone = await newPhone('refresher');
    try {
      const user = await newUser();
      const { dialog, leg, response } = await phoneCalls(phone, user, 7700, ['Supported: timer', `Session-Expires: ${SE};refresher=uac`]);
      const ours = response.body.toString();
      // Refreshes for twice the interval: by UPDATE without a body, and by re-INVITE with the same SDP.
      for (let i = 0; i < 4; i++) {
        await sleep(1_000);
        const refresh = i % 2 === 0
          ? phone.request(dialog, 'UPDATE', ['Supported: timer', `Session-Expires: ${SE};refresher=uac`])
          : phone.request(dialog, 'INVITE', ['Supported: timer', `Session-Expires: ${SE};refresher=uac`], { type: 'application/sdp', text: sdp(7700) });
        const answer = await phone.final(dialog.callId, refresh);
        assert.equal(answer.status, 200, refresh);
        assert.equal(answer.headers.get('Session-Expires'), `${SE};refresher=uac`);
        if (refresh.endsWith('INVITE')) {
          assert.equal(answer.body.toString(), ours, 'the re-INVITE is answered with the SDP the server sent last');
          phone.send([`ACK ${dialog.remoteTarget} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${phone.port};branch=z9hG4bKack${i};rport`,
            'Max-Forwards: 70', `From: ${dialog.local};tag=${dialog.localTag}`, `To: ${dialog.remote};tag=${dialog.remoteTag}`,
            `Call-ID: ${dialog.callId}`, `CSeq: ${refresh.split(' ')[0]} ACK`, 'Content-Length: 0', '', ''].join('\r\n'));
        }
      }
      assert.ok(!phone.has((m) => m.kind === 'request' && m.method === 'BYE'), 'the call is still up');
      await user.client.nothingMore('callUpdateRequest');
      await user.client.nothingMore('callDisconnected');
      // A re-INVITE with a new SDP version is a media change: it goes to the other side.
      const change = phone.request(dialog, 'INVITE', [], { type: 'application/sdp', text: sdp(7700, 2) });
      await user.client.takeAsync('callUpdateRequest', (m) => m.attrs.callLeg === leg, 10_000);
      await ok(user.client, `<callUpdateAccept callLeg="${leg}"><sdpText>${sdp(7701, 2)}</sdpText></callUpdateAccept>`);
      assert.equal((await phone.final(dialog.callId, change)).status, 200);
      await ok(user.client, `<callKill callLeg="${leg}"/>`);
      await phone.nextRequest('BYE', dialog);
    } finally {
      phone.close();
    }
  });

  test('422 both ways: a phone that asks below sip.minSE; a phone whose 422 makes the server ask again', async () => {
    const phone = await newPhone('picky');
    try {
      const user = await newUser();
      const { response } = await phone.invite(`sip:${user.address}`, `<sip:${user.address}>`, 7800, ['Supported: timer', 'Session-Expires: 1']);
      assert.equal(response.status, 422);
      assert.equal(response.headers.get('Min-SE'), '2');

      // The server calls the phone: its INVITE asks for 1800 s; the phone wants at least an hour.
      await ok(user.client, `<callStart callLeg="out" peer="${phone.aor}"><sdpText>${sdp(7810)}</sdpText></callStart>`);
      const first = await phone.nextRequest('INVITE');
      assert.equal(first.headers.get('Session-Expires'), '1800');
      assert.equal(first.headers.get('Min-SE'), '2');
      assert.ok(first.headers.getAll('Supported').includes('timer'));
      const h = first.headers;
      phone.send([`SIP/2.0 422 Session Interval Too Small`, ...h.getAll('Via').map((v) => `Via: ${v}`), `From: ${h.get('From')}`,
        `To: ${h.get('To')};tag=picky1`, `Call-ID: ${h.get('Call-ID')}`, `CSeq: ${h.get('CSeq')}`, 'Min-SE: 3600', 'Content-Length: 0', '', ''].join('\r\n'));
      const ringing = await phone.ring();
      const again = ringing.invite;
      assert.equal(again.headers.get('Call-ID'), h.get('Call-ID'));
      assert.equal(again.headers.get('CSeq'), '2 INVITE');
      assert.equal(again.headers.get('Session-Expires'), '3600');
      assert.equal(again.headers.get('Min-SE'), '3600');
      await ringing.accept(7811);
      await user.client.takeAsync('callConnected', (m) => m.attrs.callLeg === 'out', 10_000);
      await ok(user.client, '<callKill callLeg="out"/>');
      await phone.nextRequest('BYE', ringing.dialog);
    } finally {
      phone.close();
    }
  });
});
