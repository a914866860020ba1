/**
 * The SIP dialog layer (src/transports/sip/dialog.ts) between user agents on a fake in-memory
 * network: each agent is a TransactionLayer and a UserAgentCore; what one sends is serialised,
 * parsed back with parseSipMessage and delivered to the other, so that every test crosses real
 * wire text. Time is a FakeClock (as in the transaction tests): no assertion reads the wall
 * clock, and every scenario ends with nothing live in either layer or core and no timer left.
 * A small stateless proxy stands in the middle where forking and Record-Route are tested; a
 * back-to-back agent bridges two legs with the public API only; seeded runs on a lossy network
 * check that every call gets one outcome and nothing outlives its owners. The last test runs
 * two agents over real UDP sockets on loopback.
 *
 * The call flows are our own, shaped after the examples of RFC 3665 (basic call flows), RFC
 * 3262 (PRACK), RFC 3515 (REFER) and RFC 6026 (the 2xx and its ACK); the SDP bodies are
 * placeholders (the layer never reads them).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { describe, test } from 'node:test';
import {
  Dialog,
  DialogError,
  UserAgentCore,
  type CallFailure,
  type ClientCall,
  type IncomingRequest,
  type ReferProgress,
  type RequestOutcome,
  type ServerCall,
  type TerminationReason,
} from '../src/transports/sip/dialog.js';
import {
  bodyOf,
  dialogKey,
  formatReferTo,
  parseEventHeader,
  parseRAck,
  parseReferTo,
  parseSubscriptionState,
  requestTarget,
  sipfrag,
  sipfragStatus,
} from '../src/transports/sip/dialog-messages.js';
import { SipHeaders } from '../src/transports/sip/headers.js';
import {
  parseSipMessage,
  serializeSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from '../src/transports/sip/message.js';
import {
  TransactionLayer,
  newBranch,
  type SipEndpoint,
  type TransactionUserEvent,
} from '../src/transports/sip/transactions.js';
import { parseNameAddr, parseSipUri } from '../src/transports/sip/uri.js';
// A seeded generator, so that a failing run can be replayed by its seed.
import { seededRandom } from './helpers.js';
import { FakeClock } from './fixtures/fake-clock.js';

const T1 = 500;
const key = (endpoint: SipEndpoint): string => `${endpoint.host}:${endpoint.port}`;
const uriEndpoint = (uri: string): SipEndpoint => {
  const parsed = parseSipUri(uri);
  return { host: parsed.host, port: parsed.port ?? 5060 };
};

/** One line per message that crossed the network: `from > to METHOD` or `from > to 200 METHOD`. */
interface Carried {
  from: string;
  to: string;
  message: SipMessage;
  at: number;
}

function describeMessage(message: SipMessage): string {
  const method = message.headers.get('CSeq')?.split(' ')[1] ?? '?';
  return message.kind === 'request' ? message.method : `${message.status} ${method}`;
}

/** Messages go into a queue, delivered in order by flush() (after every action and every timer). */
class Network {
  private readonly nodes = new Map<string, (message: SipMessage, source: SipEndpoint) => void>();
  private readonly queue: Array<{ bytes: Buffer; from: SipEndpoint; to: SipEndpoint }> = [];
  readonly carried: Carried[] = [];
  /** Messages for which this says true are lost. */
  drop: (message: SipMessage, from: SipEndpoint, to: SipEndpoint) => boolean = () => false;

  constructor(readonly clock: FakeClock) {
    clock.afterEach = () => this.flush();
  }

  attach(endpoint: SipEndpoint, deliver: (message: SipMessage, source: SipEndpoint) => void): void {
    this.nodes.set(key(endpoint), deliver);
  }

  sender(from: SipEndpoint): (message: SipMessage, destination: SipEndpoint) => void {
    return (message, destination) => {
      this.queue.push({ bytes: serializeSipMessage(message), from, to: destination });
    };
  }

  flush(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      const next = this.queue.shift();
      if (next === undefined) return;
      const message = parseSipMessage(next.bytes);
      this.carried.push({ from: key(next.from), to: key(next.to), message, at: this.clock.now });
      if (this.drop(message, next.from, next.to)) continue;
      // A copy of its own for the receiver, which may change it (a proxy does): the log keeps what was sent.
      this.nodes.get(key(next.to))?.(parseSipMessage(next.bytes), { host: next.from.host, port: next.from.port });
    }
    throw new Error('The network never settles');
  }

  /** What crossed, as `from>to what`, filtered by a substring of `what`. */
  lines(filter?: string): string[] {
    return this.carried
      .map((c) => `${c.from.split(':')[0]}>${c.to.split(':')[0]} ${describeMessage(c.message)}`)
      .filter((line) => filter === undefined || line.includes(filter));
  }

  count(what: string, from?: string): number {
    return this.carried.filter((c) => describeMessage(c.message) === what && (from === undefined || c.from.startsWith(from)))
      .length;
  }
}

interface Agent {
  endpoint: SipEndpoint;
  layer: TransactionLayer;
  core: UserAgentCore;
  /** Incoming calls, in order. */
  calls: ServerCall[];
  /** TU events neither the core nor the agent took. */
  unhandled: TransactionUserEvent[];
  onCall: (call: ServerCall) => void;
  uri: string;
}

interface AgentOptions {
  maxDialogs?: number;
  resolve?: (uri: string) => SipEndpoint | Promise<SipEndpoint>;
  /** Makes the transport throw while it says true. */
  failing?: () => boolean;
  /** Takes every message as arriving on this connection (a stream transport), from the sender's address. */
  flow?: string;
}

function agent(net: Network, host: string, options: AgentOptions = {}): Agent {
  const endpoint: SipEndpoint = { host, port: 5060 };
  const wire = net.sender(endpoint);
  const send = (message: SipMessage, destination: SipEndpoint): void => {
    if (options.failing?.()) throw new Error('network unreachable');
    wire(message, destination);
  };
  const self: Agent = {
    endpoint,
    calls: [],
    unhandled: [],
    onCall: () => {},
    uri: `sip:user@${host}`,
  } as unknown as Agent;
  self.layer = new TransactionLayer({
    clock: net.clock,
    send,
    tu: (event) => {
      if (self.core.receive(event)) return;
      if (event.type === 'request' && event.request.method === 'INVITE') {
        const call = self.core.acceptInvite(event);
        if (call === undefined) return;
        self.calls.push(call);
        self.onCall(call);
        return;
      }
      self.unhandled.push(event);
    },
  });
  self.core = new UserAgentCore({
    transactions: self.layer,
    send,
    localAddress: () => ({ transport: 'udp', host, port: 5060 }),
    resolve: options.resolve ?? uriEndpoint,
    clock: net.clock,
    timers: { t1: T1 },
    limits: options.maxDialogs === undefined ? {} : { maxDialogs: options.maxDialogs },
  });
  const { flow } = options;
  net.attach(endpoint, (message, source) => {
    if (flow === undefined) self.layer.receive(message, source, false);
    else self.layer.receive(message, { ...source, transport: 'tcp', flow }, true);
  });
  return self;
}

/** A stateless proxy (RFC 3261 16.11): Record-Route when asked, an initial INVITE forked to `forks` when given. */
function proxy(net: Network, host: string, options: { recordRoute?: boolean; forks?: SipEndpoint[] } = {}): SipEndpoint {
  const self: SipEndpoint = { host, port: 5060 };
  const send = net.sender(self);
  const me = `sip:${host}:5060`;
  net.attach(self, (message, source) => {
    if (message.kind === 'response') {
      message.headers = withoutTopVia(message.headers);
      const via = message.headers.getAll('Via')[0];
      if (via === undefined) return;
      const sentBy = via.split(' ')[1]!.split(';')[0]!;
      send(message, uriEndpoint(`sip:${sentBy}`));
      return;
    }
    const routes = message.headers.getAll('Route');
    if (routes[0] !== undefined && parseNameAddr(routes[0]).uriText.startsWith(me)) {
      message.headers.remove('Route');
      for (const route of routes.slice(1)) message.headers.add('Route', route);
    }
    const branch = message.headers.getAll('Via')[0]?.split('branch=')[1]?.split(';')[0] ?? newBranch();
    message.headers.prepend('Via', `SIP/2.0/UDP ${host}:5060;branch=${branch}-p${source.port}`);
    const initial = message.method === 'INVITE' && !message.headers.get('To')!.includes('tag=');
    if (initial && options.recordRoute) message.headers.prepend('Record-Route', `<${me};lr>`);
    const nextRoute = message.headers.getAll('Route')[0];
    const next = nextRoute === undefined ? message.uri : parseNameAddr(nextRoute).uriText;
    const targets = (initial || message.method === 'CANCEL') && options.forks ? options.forks : [uriEndpoint(next)];
    for (const target of targets) send(message, target);
  });
  return self;
}

function withoutTopVia(headers: SipHeaders): SipHeaders {
  const vias = headers.getAll('Via').slice(1);
  const copy = headers.clone();
  copy.remove('Via');
  for (const via of vias.reverse()) copy.prepend('Via', via);
  return copy;
}

function world() {
  const clock = new FakeClock();
  const net = new Network(clock);
  const a = agent(net, '192.0.2.1');
  const b = agent(net, '192.0.2.2');
  return { clock, net, a, b };
}

/** Waits for promise callbacks (the outcome of a request resolves as a promise). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** Long enough for every timer of either layer (timer D is 32 s, the 2xx guard 64*T1). */
function drain(clock: FakeClock, net: Network): void {
  net.flush();
  clock.advance(70_000);
}

function assertIdle(clock: FakeClock, ...agents: Agent[]): void {
  for (const one of agents) {
    assert.equal(one.core.size, 0, `${one.endpoint.host}: the core holds something`);
    assert.equal(one.core.dialogCount, 0, `${one.endpoint.host}: live dialogs`);
    assert.equal(one.layer.size, 0, `${one.endpoint.host}: live transactions`);
  }
  assert.equal(clock.pending, 0, 'timers left');
}

const OFFER = 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n';
const ANSWER = 'v=0\r\no=- 2 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n';

function withoutSubscriptionRequested(incoming: IncomingRequest): boolean {
  return incoming.request.headers.get('Refer-Sub') === 'false';
}

/** Records a client call's events. */
function watchCall(call: ClientCall) {
  const seen = {
    provisional: [] as Array<{ dialog: Dialog | undefined; response: SipResponse }>,
    answered: [] as Array<{ dialog: Dialog; response: SipResponse }>,
    failed: [] as CallFailure[],
  };
  call.on('provisional', (dialog, response) => seen.provisional.push({ dialog, response }));
  call.on('answered', (dialog, response) => seen.answered.push({ dialog, response }));
  call.on('failed', (failure) => seen.failed.push(failure));
  return seen;
}

function watchDialog(dialog: Dialog) {
  const seen = { requests: [] as IncomingRequest[], acks: [] as Array<string | undefined>, ended: [] as TerminationReason[] };
  dialog.on('request', (incoming) => seen.requests.push(incoming));
  dialog.on('ack', (body) => seen.acks.push(body?.content));
  dialog.on('terminated', (reason) => seen.ended.push(reason));
  return seen;
}

/** A ringing-then-answered call from a to b; returns both dialogs, confirmed and acknowledged. */
function establish(w: ReturnType<typeof world>) {
  const { net, a, b } = w;
  const call = a.core.invite({ requestUri: b.uri, from: `"Ann" <${a.uri}>`, to: `<${b.uri}>`, body: OFFER });
  const seen = watchCall(call);
  net.flush();
  const incoming = b.calls.at(-1)!;
  incoming.provisional(180);
  incoming.answer(200, ANSWER);
  net.flush();
  const uac = seen.answered[0]!.dialog;
  uac.ack();
  net.flush();
  return { call, seen, incoming, uac, uas: incoming.dialog };
}

describe('SIP dialog messages (pure)', () => {
  test('loose routing keeps the remote target as Request-URI; strict routing puts it last among the Routes', () => {
    const loose = requestTarget(['<sip:p1.example.net;lr>', '<sip:p2.example.net;lr>'], 'sip:bob@192.0.2.2');
    assert.deepEqual(loose, {
      requestUri: 'sip:bob@192.0.2.2',
      routes: ['<sip:p1.example.net;lr>', '<sip:p2.example.net;lr>'],
      nextHop: 'sip:p1.example.net;lr',
    });
    const strict = requestTarget(['<sip:p1.example.net>', '<sip:p2.example.net;lr>'], 'sip:bob@192.0.2.2');
    assert.deepEqual(strict, {
      requestUri: 'sip:p1.example.net',
      routes: ['<sip:p2.example.net;lr>', '<sip:bob@192.0.2.2>'],
      nextHop: 'sip:p1.example.net',
    });
    assert.deepEqual(requestTarget([], 'sip:bob@192.0.2.2').routes, []);
  });

  test('Refer-To with an embedded Replaces survives the round trip; one without has none', () => {
    const replaces = { callId: 'abc@192.0.2.9', toTag: 't1', fromTag: 'f1', earlyOnly: true };
    const value = formatReferTo('sip:carol@192.0.2.3', replaces);
    assert.ok(value.includes('Replaces=abc%40192.0.2.9%3Bto-tag%3Dt1'), value);
    const read = parseReferTo(value);
    assert.equal(read.target, 'sip:carol@192.0.2.3');
    assert.deepEqual(read.replaces, replaces);
    assert.equal(parseReferTo('<sip:carol@192.0.2.3>').replaces, undefined);
    assert.throws(() => parseReferTo('<sip:carol@192.0.2.3?Replaces=only-a-call-id>'));
  });

  test('Event and Subscription-State headers (RFC 6665)', () => {
    assert.deepEqual(parseEventHeader('Refer ; id=93'), { package: 'refer', id: '93' });
    assert.deepEqual(parseEventHeader('refer'), { package: 'refer', id: undefined });
    assert.deepEqual(parseSubscriptionState('active;expires=60'), { state: 'active', expires: 60, reason: undefined });
    assert.deepEqual(parseSubscriptionState('Terminated; reason=NoResource'), {
      state: 'terminated',
      expires: undefined,
      reason: 'noresource',
    });
    assert.throws(() => parseSubscriptionState(''));
  });

  test('RAck, sipfrag and dialog keys', () => {
    assert.deepEqual(parseRAck(' 776656 1  INVITE'), { rseq: 776656, cseq: 1, method: 'INVITE' });
    assert.throws(() => parseRAck('1 INVITE'));
    assert.deepEqual(sipfragStatus(sipfrag(180, 'Ringing')), { status: 180, reason: 'Ringing' });
    assert.equal(sipfragStatus({ contentType: 'message/sipfrag', content: 'INVITE sip:x SIP/2.0\r\n' }), undefined);
    assert.equal(
      dialogKey({ callId: 'c', localTag: 'AB', remoteTag: 'cd' }),
      dialogKey({ callId: 'c', localTag: 'ab', remoteTag: 'CD' }),
    );
  });
});

describe('SIP dialogs: basic calls', () => {
  test('a call with an offer in the INVITE, ringing, answered, acknowledged, and BYE from the caller', async () => {
    const w = world();
    const { net, a, b, clock } = w;
    const { seen, incoming, uac, uas } = establish(w);
    assert.equal(incoming.body?.content, OFFER);
    assert.deepEqual(seen.provisional.map((p) => p.response.status), [180]);
    assert.equal(seen.provisional[0]!.dialog?.state, 'confirmed', 'the early dialog became the confirmed one');
    assert.equal(seen.answered[0]!.response.body.toString(), ANSWER);
    assert.equal(uac.state, 'confirmed');
    assert.equal(uas.state, 'confirmed');
    assert.equal(uac.callId, uas.callId);
    assert.equal(uac.localTag, uas.remoteTag);
    assert.equal(uac.remoteTag, uas.localTag);
    assert.equal(uac.remoteTarget, 'sip:192.0.2.2:5060');
    assert.equal(uas.remoteTarget, 'sip:192.0.2.1:5060');
    assert.equal(parseNameAddr(uas.remoteParty).displayName, 'Ann');
    const acks: Array<string | undefined> = [];
    incoming.on('ack', (body) => acks.push(body?.content));
    const uasSeen = watchDialog(uas);
    const uacSeen = watchDialog(uac);
    const outcome = uac.bye();
    net.flush();
    const result = await outcome;
    assert.equal(result.kind === 'response' && result.response.status, 200);
    assert.deepEqual(uacSeen.ended, ['local-bye']);
    assert.deepEqual(uasSeen.ended, ['remote-bye']);
    assert.deepEqual(net.lines().filter((l) => !l.endsWith('100 INVITE')), [
      '192.0.2.1>192.0.2.2 INVITE',
      '192.0.2.2>192.0.2.1 180 INVITE',
      '192.0.2.2>192.0.2.1 200 INVITE',
      '192.0.2.1>192.0.2.2 ACK',
      '192.0.2.1>192.0.2.2 BYE',
      '192.0.2.2>192.0.2.1 200 BYE',
    ]);
    drain(clock, net);
    assert.equal(net.count('200 INVITE'), 1, 'the 2xx was not retransmitted after its ACK');
    assertIdle(clock, a, b);
  });

  test('BYE from the callee ends both sides', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const uacSeen = watchDialog(uac);
    const outcome = uas.bye();
    w.net.flush();
    assert.equal(((await outcome) as { response: SipResponse }).response.status, 200);
    assert.deepEqual(uacSeen.ended, ['remote-bye']);
    assert.equal(uas.terminationReason, 'local-bye');
    await assert.rejects(uas.request('INFO'), DialogError);
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('late offer: the offer in the 200, the answer in the ACK', () => {
    const { net, a, b, clock } = world();
    const call = a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` });
    const seen = watchCall(call);
    net.flush();
    const incoming = b.calls[0]!;
    assert.equal(incoming.body, undefined);
    const acks: Array<string | undefined> = [];
    incoming.on('ack', (body) => acks.push(body?.content));
    incoming.answer(200, OFFER);
    net.flush();
    const dialog = seen.answered[0]!.dialog;
    assert.equal(seen.answered[0]!.response.body.toString(), OFFER);
    assert.ok(dialog.ackPending);
    // The owner takes its time (the other leg of a B2BUA): the 2xx is retransmitted meanwhile, not yet re-ACKed.
    clock.advance(600);
    assert.equal(net.count('200 INVITE'), 2);
    assert.equal(net.count('ACK'), 0);
    assert.equal(dialog.ack(ANSWER), true);
    assert.equal(dialog.ack(ANSWER), false, 'one ACK per 2xx');
    net.flush();
    assert.deepEqual(acks, [ANSWER]);
    void dialog.bye();
    drain(clock, net);
    assertIdle(clock, a, b);
  });
});

describe('SIP dialogs: forking, CANCEL, limits', () => {
  test('a forked INVITE: two early dialogs, two 2xx; the second is acknowledged and ended with BYE', () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const a = agent(net, '192.0.2.1');
    const b = agent(net, '192.0.2.2');
    const c = agent(net, '192.0.2.3');
    proxy(net, '192.0.2.9', { forks: [b.endpoint, c.endpoint] });
    const call = a.core.invite({
      requestUri: 'sip:group@192.0.2.9',
      from: `<${a.uri}>`,
      to: '<sip:group@192.0.2.9>',
      body: OFFER,
    });
    const seen = watchCall(call);
    net.flush();
    assert.equal(b.calls.length, 1);
    assert.equal(c.calls.length, 1);
    b.calls[0]!.provisional(180);
    c.calls[0]!.provisional(180);
    net.flush();
    assert.equal(seen.provisional.length, 2);
    const [early1, early2] = seen.provisional.map((p) => p.dialog!);
    assert.notEqual(early1!.remoteTag, early2!.remoteTag);
    assert.equal(a.core.dialogCount, 2);
    const cEnded = watchDialog(c.calls[0]!.dialog);
    b.calls[0]!.answer(200, ANSWER);
    c.calls[0]!.answer(200, ANSWER);
    net.flush();
    assert.equal(seen.answered.length, 1, 'only the first 2xx is reported');
    const kept = seen.answered[0]!.dialog;
    assert.equal(kept.remoteTag, b.calls[0]!.dialog.localTag);
    kept.ack();
    net.flush();
    assert.deepEqual(cEnded.ended, ['remote-bye']);
    assert.equal(call.dialogs.find((d) => d !== kept)!.terminationReason, 'unwanted-fork');
    assert.equal(net.count('ACK', '192.0.2.1'), 2);
    void kept.bye();
    drain(clock, net);
    assertIdle(clock, a, b, c);
  });

  test('CANCEL before the answer: 487 to the INVITE, the early dialogs end on both sides', () => {
    const { net, a, b, clock } = world();
    const call = a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER });
    const seen = watchCall(call);
    net.flush();
    const incoming = b.calls[0]!;
    let cancelled = 0;
    incoming.on('cancelled', () => cancelled++);
    incoming.provisional(180);
    net.flush();
    const early = seen.provisional[0]!.dialog!;
    assert.equal(early.state, 'early');
    assert.equal(call.cancel(), true);
    net.flush();
    assert.equal(cancelled, 1);
    assert.equal(incoming.dialog.terminationReason, 'cancelled');
    assert.equal(seen.failed.length, 1);
    const failure = seen.failed[0]!;
    assert.equal(failure.kind, 'cancelled');
    assert.equal(failure.kind === 'cancelled' && failure.response?.status, 487);
    assert.equal(early.terminationReason, 'cancelled');
    assert.equal(incoming.answer(200), false, 'too late to answer');
    assert.equal(call.cancel(), false);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('over the dialog limit a new INVITE is refused with 503 and Retry-After; invite() refuses too', () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const a = agent(net, '192.0.2.1');
    const b = agent(net, '192.0.2.2', { maxDialogs: 1 });
    const first = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    const second = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    assert.equal(b.calls.length, 1);
    assert.equal(first.failed.length, 0);
    const refused = second.failed[0];
    assert.equal(refused?.kind === 'response' && refused.response.status, 503);
    assert.equal(refused?.kind === 'response' && refused.response.headers.get('Retry-After'), '5');
    assert.throws(
      () => b.core.invite({ requestUri: a.uri, from: `<${b.uri}>`, to: `<${a.uri}>` }),
      DialogError,
    );
    assert.throws(() => a.core.invite({ requestUri: 'not a uri', from: `<${a.uri}>`, to: `<${b.uri}>` }), TypeError);
    assert.throws(() => a.core.invite({ requestUri: b.uri, from: `<${a.uri}>;tag=x`, to: `<${b.uri}>` }), TypeError);
    b.calls[0]!.reject(486);
    net.flush();
    assert.equal(first.failed[0]?.kind === 'response' && first.failed[0].response.status, 486);
    drain(clock, net);
    assertIdle(clock, a, b);
  });
});

describe('SIP dialogs: reliable provisional responses and UPDATE', () => {
  test('a reliable 183 with an offer is PRACKed with the answer; the 200 then has no body', () => {
    const { net, a, b, clock } = world();
    const call = a.core.invite({
      requestUri: b.uri,
      from: `<${a.uri}>`,
      to: `<${b.uri}>`,
      prackBody: (_dialog, response) => (response.body.length > 0 ? ANSWER : undefined),
    });
    const seen = watchCall(call);
    net.flush();
    const incoming = b.calls[0]!;
    assert.ok(incoming.reliableAllowed);
    const pracks: Array<string | undefined> = [];
    incoming.on('prack', (body) => pracks.push(body?.content));
    // The first PRACK is lost: the 183 is retransmitted and the PRACK's own transaction retransmits.
    let dropped = false;
    net.drop = (message) => {
      if (dropped || message.kind !== 'request' || message.method !== 'PRACK') return false;
      dropped = true;
      return true;
    };
    incoming.provisional(183, { reliable: true, body: OFFER });
    net.flush();
    clock.advance(T1);
    assert.deepEqual(pracks, [ANSWER]);
    assert.equal(seen.provisional.length, 1, 'a retransmitted 183 is not reported again');
    assert.ok(net.count('183 INVITE') >= 2);
    const rseq = net.carried.find((c) => describeMessage(c.message) === '183 INVITE')!.message.headers.get('RSeq');
    const prack = net.carried.find((c) => describeMessage(c.message) === 'PRACK')!.message;
    assert.equal(prack.headers.get('RAck'), `${rseq} 1 INVITE`);
    incoming.answer(200);
    net.flush();
    const dialog = seen.answered[0]!.dialog;
    assert.equal(dialog, seen.provisional[0]!.dialog);
    dialog.ack();
    void dialog.bye();
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('the PRACK waits for an answer the owner gets later (a promise)', async () => {
    const { net, a, b, clock } = world();
    let giveAnswer: (body: string) => void = () => {};
    a.core.invite({
      requestUri: b.uri,
      from: `<${a.uri}>`,
      to: `<${b.uri}>`,
      prackBody: () => new Promise((resolve) => (giveAnswer = resolve)),
    });
    net.flush();
    const incoming = b.calls[0]!;
    const pracks: Array<string | undefined> = [];
    incoming.on('prack', (body) => pracks.push(body?.content));
    incoming.provisional(183, { reliable: true, body: OFFER });
    net.flush();
    assert.equal(net.count('PRACK'), 0, 'no PRACK before the answer');
    giveAnswer(ANSWER);
    await settle();
    net.flush();
    assert.deepEqual(pracks, [ANSWER]);
    incoming.reject(603);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('a reliable provisional response never PRACKed: the INVITE is refused with 500 after 64*T1', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    net.drop = (message) => message.kind === 'request' && message.method === 'PRACK';
    const incoming = b.calls[0]!;
    incoming.provisional(180, { reliable: true });
    net.flush();
    clock.advance(64 * T1);
    assert.equal(incoming.dialog.terminationReason, 'no-prack');
    assert.equal(seen.failed[0]?.kind === 'response' && seen.failed[0].response.status, 500);
    // Over UDP: sent at 0, then after T1, 2T1, 4T1, ... (0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s) until the guard.
    assert.deepEqual(
      net.carried.filter((c) => describeMessage(c.message) === '180 INVITE').map((c) => c.at),
      [0, 500, 1500, 3500, 7500, 15500, 31500],
    );
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('an INVITE that requires 100rel gets every provisional response reliably', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, require100rel: true }));
    net.flush();
    const incoming = b.calls[0]!;
    assert.ok(incoming.reliableRequired);
    let pracks = 0;
    incoming.on('prack', () => pracks++);
    incoming.provisional(180);
    net.flush();
    incoming.provisional(182);
    net.flush();
    assert.equal(pracks, 2);
    const rseqs = net.carried.filter((c) => ['180 INVITE', '182 INVITE'].includes(describeMessage(c.message)))
      .map((c) => Number(c.message.headers.get('RSeq')));
    assert.equal(rseqs[1], rseqs[0]! + 1);
    assert.equal(seen.provisional.length, 2);
    incoming.reject(486);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('reliable provisional responses need the INVITE to offer 100rel', () => {
    const { net, a, b, clock } = world();
    a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, supported100rel: false });
    net.flush();
    assert.throws(() => b.calls[0]!.provisional(183, { reliable: true }), DialogError);
    b.calls[0]!.reject(603);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('UPDATE in the early dialog carries a new offer and its answer (RFC 3311)', async () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER }));
    net.flush();
    const incoming = b.calls[0]!;
    const uasSeen = watchDialog(incoming.dialog);
    incoming.provisional(183, { body: ANSWER });
    net.flush();
    const early = seen.provisional[0]!.dialog!;
    assert.equal(early.state, 'early');
    const outcome = early.request('UPDATE', { body: `${OFFER}a=sendonly\r\n` });
    net.flush();
    assert.equal(uasSeen.requests.length, 1);
    const update = uasSeen.requests[0]!;
    assert.equal(update.method, 'UPDATE');
    assert.equal(update.body?.content, `${OFFER}a=sendonly\r\n`);
    update.respond(200, { body: `${ANSWER}a=recvonly\r\n` });
    net.flush();
    const result = await outcome;
    assert.equal(result.kind === 'response' && result.body?.content, `${ANSWER}a=recvonly\r\n`);
    assert.equal(early.state, 'early');
    incoming.reject(480);
    net.flush();
    assert.equal(early.terminationReason, 'rejected');
    drain(clock, net);
    assertIdle(clock, a, b);
  });
});

describe('SIP dialogs: requests inside a confirmed dialog', () => {
  test('re-INVITE to hold and to resume, each answered and acknowledged', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const uasSeen = watchDialog(uas);
    uas.on('request', (incoming) => {
      const held = incoming.body?.content.includes('a=sendonly');
      incoming.respond(200, { body: `${ANSWER}${held ? 'a=recvonly' : 'a=sendrecv'}\r\n` });
    });
    for (const direction of ['sendonly', 'sendrecv']) {
      const outcome = uac.request('INVITE', { body: `${OFFER}a=${direction}\r\n` });
      w.net.flush();
      const result = await outcome;
      assert.equal(result.kind === 'response' && result.response.status, 200);
      assert.ok(result.kind === 'response' && result.body?.content.endsWith(direction === 'sendonly' ? 'a=recvonly\r\n' : 'a=sendrecv\r\n'));
    }
    assert.equal(uasSeen.acks.length, 2);
    assert.deepEqual(w.net.lines('INVITE').filter((l) => !/ 1\d\d /.test(l)).slice(2), [
      '192.0.2.1>192.0.2.2 INVITE',
      '192.0.2.2>192.0.2.1 200 INVITE',
      '192.0.2.1>192.0.2.2 INVITE',
      '192.0.2.2>192.0.2.1 200 INVITE',
    ]);
    assert.equal(uac.localSeq, 3);
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('re-INVITEs crossing each other both get 491 (glare); the owner retries', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const fromA = uac.request('INVITE', { body: OFFER });
    const fromB = uas.request('INVITE', { body: ANSWER });
    w.net.flush();
    const [ra, rb] = await Promise.all([fromA, fromB]);
    assert.equal(ra.kind === 'response' && ra.response.status, 491);
    assert.equal(rb.kind === 'response' && rb.response.status, 491);
    assert.equal(uac.state, 'confirmed');
    // After the back-off (the owner's choice, RFC 3261 14.1) one side tries again and succeeds.
    uas.on('request', (incoming) => incoming.respond(200, { body: ANSWER }));
    const retry = uac.request('INVITE', { body: OFFER });
    w.net.flush();
    assert.equal(((await retry) as { response: SipResponse }).response.status, 200);
    void uas.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('INFO and MESSAGE reach the owner with their bodies; without a listener the layer answers 501', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const noListener = uac.request('MESSAGE', { body: 'hello', contentType: 'text/plain' });
    w.net.flush();
    assert.equal(((await noListener) as { response: SipResponse }).response.status, 501);
    const uasSeen = watchDialog(uas);
    const outcome = uac.request('INFO', { body: 'Signal=5\r\nDuration=160\r\n', contentType: 'application/dtmf-relay' });
    w.net.flush();
    const info = uasSeen.requests[0]!;
    assert.equal(info.method, 'INFO');
    assert.deepEqual(info.body, { contentType: 'application/dtmf-relay', content: 'Signal=5\r\nDuration=160\r\n' });
    info.respond(200);
    assert.equal(info.respond(200), false);
    w.net.flush();
    assert.equal(((await outcome) as { response: SipResponse }).response.status, 200);
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('REFER with a Replaces, 202, then NOTIFYs with sipfrag bodies until a final status', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const replaces = { callId: 'other@192.0.2.3', toTag: 'x1', fromTag: 'y2', earlyOnly: false };
    const uasSeen = watchDialog(uas);
    const uacSeen = watchDialog(uac);
    const progress: ReferProgress[] = [];
    uac.on('referProgress', (p) => progress.push(p));
    const referred = uac.refer('sip:carol@192.0.2.3', { replaces });
    w.net.flush();
    const refer = uasSeen.requests[0]!;
    assert.equal(refer.method, 'REFER');
    const referTo = parseReferTo(refer.request.headers.get('Refer-To')!);
    assert.equal(referTo.target, 'sip:carol@192.0.2.3');
    assert.deepEqual(referTo.replaces, replaces);
    await assert.rejects(uas.notifyRefer(100), DialogError, 'no subscription before the 2xx');
    refer.respond(202);
    w.net.flush();
    assert.equal(((await referred) as { response: SipResponse }).response.status, 202);
    const notified: RequestOutcome[] = [];
    for (const status of [100, 200]) {
      const outcome = uas.notifyRefer(status);
      w.net.flush();
      notified.push(await outcome);
    }
    assert.deepEqual(notified.map((o) => o.kind === 'response' && o.response.status), [200, 200]);
    assert.deepEqual(uacSeen.requests, [], 'the layer answers the NOTIFYs of its REFER');
    const referSeq = refer.request.headers.get('CSeq')!.split(' ')[0];
    assert.deepEqual(progress.map((p) => [p.id, p.status, p.reason, p.final]), [
      [referSeq, 100, 'Trying', false],
      [referSeq, 200, 'OK', true],
    ]);
    const notify = progress[0]!.request!;
    assert.equal(notify.headers.get('Event'), `refer;id=${referSeq}`);
    assert.equal(notify.headers.get('Content-Type'), 'message/sipfrag;version=2.0');
    assert.equal(notify.headers.get('Subscription-State'), 'active;expires=60');
    assert.equal(progress[1]!.request!.headers.get('Subscription-State'), 'terminated;reason=noresource');
    await assert.rejects(uas.notifyRefer(200), DialogError, 'the subscription ended');
    // A NOTIFY for no subscription gets 481, which ends the subscription but not the dialog (RFC 5057).
    const stray = uas.request('NOTIFY', {
      body: sipfrag(200, 'OK'),
      headers: [['Event', 'refer;id=999'], ['Subscription-State', 'terminated']],
    });
    w.net.flush();
    assert.equal(((await stray) as { response: SipResponse }).response.status, 481);
    assert.equal(uas.state, 'confirmed');
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('REFER without a subscription (RFC 4488), and a subscription that expires without a final NOTIFY', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    uas.on('request', (incoming) => incoming.respond(202, {
      headers: withoutSubscriptionRequested(incoming) ? [['Refer-Sub', 'false']] : [],
    }));
    const progress: ReferProgress[] = [];
    uac.on('referProgress', (p) => progress.push(p));
    const quiet = uac.refer('sip:carol@192.0.2.3', { noSubscription: true });
    w.net.flush();
    assert.equal(((await quiet) as { response: SipResponse }).response.status, 202);
    await assert.rejects(uas.notifyRefer(100), DialogError);
    const watched = uac.refer('sip:dave@192.0.2.4');
    w.net.flush();
    await watched;
    const trying = uas.notifyRefer(100);
    w.net.flush();
    await trying;
    w.clock.advance(60_000);
    assert.deepEqual(progress.map((p) => [p.status, p.final, p.reason]), [[100, false, 'Trying'], [undefined, true, 'expired']]);
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('a request for an unknown dialog gets 481; a 481 to ours ends our dialog (12.2.1.2)', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    // b forgets the dialog without telling a (a crash, say): a's next request gets 481.
    uas.terminate('transport');
    const uacSeen = watchDialog(uac);
    const outcome = uac.request('INFO', { body: 'x', contentType: 'text/plain' });
    w.net.flush();
    const result = await outcome;
    assert.equal(result.kind === 'response' && result.response.status, 481);
    assert.deepEqual(uacSeen.ended, ['gone']);
    assert.deepEqual(w.a.unhandled, []);
    assert.deepEqual(w.b.unhandled, []);
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('a request older than the last one (CSeq lower) is refused with 500', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    uas.on('request', (incoming) => incoming.respond(200));
    uac.localSeq = 10;
    const first = uac.request('INFO');
    w.net.flush();
    uac.localSeq = 5;
    const second = uac.request('INFO');
    w.net.flush();
    assert.equal(((await first) as { response: SipResponse }).response.status, 200);
    assert.equal(((await second) as { response: SipResponse }).response.status, 500);
    uac.localSeq = 20;
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });
});

describe('SIP dialogs: the 2xx and its ACK (RFC 3261 13.3.1.4, RFC 6026)', () => {
  test('a lost ACK: the 2xx is retransmitted and acknowledged again with the same ACK', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    const incoming = b.calls[0]!;
    const acks: Array<string | undefined> = [];
    incoming.on('ack', (body) => acks.push(body?.content));
    incoming.answer(200, OFFER);
    let lost = 0;
    net.drop = (message) => message.kind === 'request' && message.method === 'ACK' && lost++ === 0;
    net.flush();
    seen.answered[0]!.dialog.ack(ANSWER);
    net.flush();
    assert.deepEqual(acks, []);
    clock.advance(T1);
    assert.deepEqual(acks, [ANSWER]);
    const sentAcks = net.carried.filter((c) => c.message.kind === 'request' && c.message.method === 'ACK');
    assert.equal(sentAcks.length, 2);
    assert.equal(sentAcks[1]!.message.body.toString(), ANSWER);
    assert.equal(sentAcks[0]!.message.headers.get('Via'), sentAcks[1]!.message.headers.get('Via'), 'the same ACK');
    clock.advance(10_000);
    assert.equal(net.count('200 INVITE'), 2);
    void seen.answered[0]!.dialog.bye();
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('a 2xx never acknowledged: retransmitted from T1 doubling to T2, then BYE after 64*T1', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    net.drop = (message) => message.kind === 'request' && message.method === 'ACK';
    const incoming = b.calls[0]!;
    incoming.answer(200, OFFER);
    net.flush();
    const uacSeen = watchDialog(seen.answered[0]!.dialog);
    seen.answered[0]!.dialog.ack(ANSWER);
    net.flush();
    clock.advance(64 * T1);
    const times = net.carried.filter((c) => describeMessage(c.message) === '200 INVITE').map((c) => c.at);
    assert.deepEqual(times, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    assert.equal(net.count('ACK'), times.length, 'every 2xx was re-acknowledged');
    assert.equal(incoming.dialog.terminationReason, 'no-ack');
    assert.deepEqual(uacSeen.ended, ['remote-bye']);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('an owner that never acknowledges a 2xx: the layer ACKs and ends the dialog after 64*T1', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    b.calls[0]!.answer(200, OFFER);
    net.flush();
    // b would end the dialog with a BYE at 64*T1 too: that BYE is lost, so a's own guard acts.
    net.drop = (message) => message.kind === 'request' && message.method === 'BYE' && message.headers.get('From')!.includes('192.0.2.2');
    clock.advance(64 * T1 - 1);
    assert.equal(net.count('ACK'), 0);
    const uacSeen = watchDialog(seen.answered[0]!.dialog);
    clock.advance(1);
    assert.ok(net.count('ACK') >= 1);
    assert.deepEqual(uacSeen.ended, ['no-ack']);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('Record-Route through a proxy: the route set is honoured by in-dialog requests both ways', async () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const a = agent(net, '192.0.2.1');
    const b = agent(net, '192.0.2.2');
    proxy(net, '192.0.2.9', { recordRoute: true });
    const call = a.core.invite({
      requestUri: b.uri,
      from: `<${a.uri}>`,
      to: `<${b.uri}>`,
      headers: [['Route', '<sip:192.0.2.9:5060;lr>']],
    });
    const seen = watchCall(call);
    net.flush();
    b.calls[0]!.answer(200, OFFER);
    net.flush();
    const uac = seen.answered[0]!.dialog;
    const uas = b.calls[0]!.dialog;
    assert.deepEqual(uac.routeSet, ['<sip:192.0.2.9:5060;lr>']);
    assert.deepEqual(uas.routeSet, ['<sip:192.0.2.9:5060;lr>']);
    uac.ack(ANSWER);
    net.flush();
    uas.on('request', (incoming) => incoming.respond(200));
    const info = uac.request('INFO');
    net.flush();
    await info;
    void uas.bye();
    drain(clock, net);
    assert.deepEqual(net.lines().filter((l) => /ACK|INFO|BYE/.test(l) && !l.startsWith('192.0.2.9')), [
      '192.0.2.1>192.0.2.9 ACK',
      '192.0.2.1>192.0.2.9 INFO',
      '192.0.2.2>192.0.2.9 200 INFO',
      '192.0.2.2>192.0.2.9 BYE',
      '192.0.2.1>192.0.2.9 200 BYE',
    ]);
    const bye = net.carried.find((c) => c.from.startsWith('192.0.2.2') && describeMessage(c.message) === 'BYE')!
      .message as SipRequest;
    assert.equal(bye.uri, 'sip:192.0.2.1:5060', 'the remote target is the Request-URI (loose routing)');
    assert.equal(bye.headers.get('Route'), '<sip:192.0.2.9:5060;lr>');
    assertIdle(clock, a, b);
  });
});

describe('SIP dialogs: refusals, early ends and crossings', () => {
  test('an INVITE requiring an extension we lack gets 420 with Unsupported; one without Contact 400', async () => {
    const { net, a, b, clock } = world();
    const required = watchCall(a.core.invite({
      requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, headers: [['Require', 'timer, 100rel']],
    }));
    net.flush();
    const refused = required.failed[0];
    assert.equal(refused?.kind === 'response' && refused.response.status, 420);
    assert.equal(refused?.kind === 'response' && refused.response.headers.get('Unsupported'), 'timer');
    // An INVITE without Contact, made by hand and sent through a's transaction layer.
    const headers = new SipHeaders([
      ['Via', `SIP/2.0/UDP 192.0.2.1:5060;branch=${newBranch()}`], ['Max-Forwards', '70'],
      ['From', `<${a.uri}>;tag=hand`], ['To', `<${b.uri}>`], ['Call-ID', 'by-hand'], ['CSeq', '1 INVITE'],
    ]);
    const statuses: number[] = [];
    a.layer.request({ kind: 'request', method: 'INVITE', uri: b.uri, version: 'SIP/2.0', headers, body: Buffer.alloc(0) },
      b.endpoint, false, (event) => { if (event.type === 'final') statuses.push(event.response.status); });
    net.flush();
    assert.deepEqual(statuses, [400]);
    assert.equal(b.calls.length, 0);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('a 302 with Contacts reaches the caller as its failure', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    b.calls[0]!.reject(302, undefined, [['Contact', '<sip:ben@192.0.2.7>'], ['Contact', '<sip:ben@192.0.2.8>']]);
    net.flush();
    const failure = seen.failed[0];
    assert.equal(failure?.kind, 'response');
    assert.deepEqual(failure?.kind === 'response' && failure.response.headers.getAll('Contact'),
      ['<sip:ben@192.0.2.7>', '<sip:ben@192.0.2.8>']);
    assert.equal(b.calls[0]!.dialog.terminationReason, 'rejected');
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('a BYE in the early dialog: the INVITE is answered 487 (RFC 3261 15.1.2)', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    net.flush();
    const incoming = b.calls[0]!;
    incoming.provisional(180);
    net.flush();
    void seen.provisional[0]!.dialog!.bye();
    net.flush();
    assert.equal(incoming.dialog.terminationReason, 'remote-bye');
    assert.equal(incoming.answer(200), false);
    assert.equal(seen.failed[0]?.kind === 'response' && seen.failed[0].response.status, 487);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('the INVITE retransmitted after its 2xx was lost gets the same 2xx, not a second call', () => {
    const { net, a, b, clock } = world();
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER }));
    // The 100 and the 2xx of b are lost until a retransmits its INVITE.
    net.drop = (message) => message.kind === 'response' && clock.now < T1;
    net.flush();
    b.calls[0]!.answer(200, ANSWER);
    net.flush();
    // At T1 a retransmits its INVITE (its timer A was set before b's 2xx timer): b's core answers it with the 2xx.
    clock.advance(T1);
    assert.equal(net.count('INVITE'), 2);
    assert.equal(b.calls.length, 1, 'the retransmission made no second call');
    assert.equal(seen.answered.length, 1);
    seen.answered[0]!.dialog.ack();
    void seen.answered[0]!.dialog.bye();
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('forks "all": every 2xx is the owner\'s to acknowledge or end', () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const a = agent(net, '192.0.2.1');
    const b = agent(net, '192.0.2.2');
    const c = agent(net, '192.0.2.3');
    proxy(net, '192.0.2.9', { forks: [b.endpoint, c.endpoint] });
    const call = a.core.invite({ requestUri: 'sip:g@192.0.2.9', from: `<${a.uri}>`, to: '<sip:g@192.0.2.9>', forks: 'all' });
    const seen = watchCall(call);
    net.flush();
    b.calls[0]!.answer(200, OFFER);
    c.calls[0]!.answer(200, OFFER);
    net.flush();
    assert.equal(seen.answered.length, 2);
    const [first, second] = seen.answered.map((x) => x.dialog);
    first!.ack(ANSWER);
    call.endOtherForks(first!);
    net.flush();
    assert.equal(second!.terminationReason, 'unwanted-fork');
    assert.equal(c.calls[0]!.dialog.terminationReason, 'remote-bye');
    assert.equal(first!.state, 'confirmed');
    void first!.bye();
    drain(clock, net);
    assertIdle(clock, a, b, c);
  });

  test('a re-INVITE with the offer in its 2xx: the owner answers in the ACK (ackLater)', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const uasSeen = watchDialog(uas);
    uas.on('request', (incoming) => incoming.respond(200, { body: OFFER }));
    const outcome = uac.request('INVITE', { ackLater: true });
    w.net.flush();
    const result = await outcome;
    assert.equal(result.kind === 'response' && result.body?.content, OFFER);
    assert.ok(uac.ackPending);
    await assert.rejects(uac.request('INVITE'), DialogError, 'no new INVITE before the ACK');
    uac.ack(ANSWER);
    w.net.flush();
    assert.deepEqual(uasSeen.acks, [ANSWER]);
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('a re-INVITE while the peer\'s is unanswered gets 500 with Retry-After (RFC 3261 14.2)', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const pending: IncomingRequest[] = [];
    uas.on('request', (incoming) => pending.push(incoming));
    const first = uac.request('INVITE', { body: OFFER });
    w.net.flush();
    // a's own guard forbids a second INVITE; one sent anyway, by hand (the CSeq moves on), is refused by b.
    await assert.rejects(uac.request('INVITE'), DialogError);
    const rogue = uac.buildRequest('INVITE', ++uac.localSeq, {});
    rogue.headers.prepend('Via', `SIP/2.0/UDP 192.0.2.1:5060;branch=${newBranch()}`);
    const finals: SipResponse[] = [];
    w.a.layer.request(rogue, w.b.endpoint, false, (event) => {
      if (event.type === 'final') finals.push(event.response);
    });
    w.net.flush();
    assert.equal(finals[0]?.status, 500);
    const retryAfter = Number(finals[0]?.headers.get('Retry-After'));
    assert.ok(retryAfter >= 0 && retryAfter <= 10);
    assert.equal(pending.length, 1, 'the owner never saw the second INVITE');
    pending[0]!.respond(488);
    w.net.flush();
    assert.equal(((await first) as { response: SipResponse }).response.status, 488);
    assert.equal(uac.state, 'confirmed');
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('a BYE while the owner holds a re-INVITE unanswered: the re-INVITE gets 487 (RFC 3261 15.1.2)', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const held: IncomingRequest[] = [];
    uas.on('request', (incoming) => held.push(incoming));
    const reinvite = uac.request('INVITE', { body: OFFER });
    w.net.flush();
    assert.equal(held.length, 1);
    const bye = uac.bye();
    w.net.flush();
    assert.equal(((await reinvite) as { response: SipResponse }).response.status, 487);
    assert.equal(((await bye) as { response: SipResponse }).response.status, 200);
    assert.equal(held[0]!.answered, true);
    assert.equal(held[0]!.respond(200, { body: ANSWER }), false, 'too late for the owner');
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('a re-INVITE cancelled while the owner holds it: 487, and the owner is told', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const held: IncomingRequest[] = [];
    let cancelled = 0;
    uas.on('request', (incoming) => {
      held.push(incoming);
      incoming.on('cancelled', () => cancelled++);
      incoming.respond(180);
    });
    const reinvite = uac.request('INVITE', { body: OFFER });
    w.net.flush();
    assert.equal(uac.cancelInvite(), true);
    w.net.flush();
    assert.equal(((await reinvite) as { response: SipResponse }).response.status, 487);
    assert.equal(cancelled, 1);
    assert.equal(held[0]!.respond(200, { body: ANSWER }), false);
    assert.equal(uac.cancelInvite(), false);
    assert.equal(uac.state, 'confirmed');
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('UPDATEs crossing each other both get 491 (RFC 3311 5.2)', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    const [ra, rb] = [uac.request('UPDATE', { body: OFFER }), uas.request('UPDATE', { body: ANSWER })];
    w.net.flush();
    assert.equal(((await ra) as { response: SipResponse }).response.status, 491);
    assert.equal(((await rb) as { response: SipResponse }).response.status, 491);
    void uac.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });

  test('a request inside the dialog that gets no response ends the dialog (timeout)', async () => {
    const w = world();
    const { uac, uas } = establish(w);
    w.net.drop = (message) => message.kind === 'request' && message.method === 'INFO';
    const outcome = uac.request('INFO');
    w.net.flush();
    w.clock.advance(64 * T1);
    assert.deepEqual(await outcome, { kind: 'timeout' });
    assert.equal(uac.terminationReason, 'timeout');
    void uas.bye();
    drain(w.clock, w.net);
    assertIdle(w.clock, w.a, w.b);
  });
});

describe('SIP dialogs: a back-to-back user agent on top', () => {
  test('m bridges a call from a to c: offer and answer carried across, CANCEL and BYE passed on', () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const a = agent(net, '192.0.2.1');
    const m = agent(net, '192.0.2.5');
    const c = agent(net, '192.0.2.3');
    const legs: Array<{ inbound: ServerCall; outbound: ClientCall }> = [];
    // The bridge, as a call engine would write it with this API (and nothing else).
    m.onCall = (inbound) => {
      inbound.provisional(183);
      const outbound = m.core.invite({ requestUri: c.uri, from: `<${m.uri}>`, to: `<${c.uri}>`, body: inbound.body });
      legs.push({ inbound, outbound });
      outbound.on('provisional', (_dialog, response) => response.status === 180 && inbound.provisional(180));
      outbound.on('answered', (dialog, response) => {
        dialog.ack();
        inbound.answer(200, bodyOf(response));
        const hangUp = (other: Dialog) => () => other.state !== 'terminated' && void other.bye();
        dialog.on('bye', hangUp(inbound.dialog));
        inbound.dialog.on('bye', hangUp(dialog));
      });
      outbound.on('failed', (failure) => inbound.reject(failure.kind === 'response' ? failure.response.status : 480));
      inbound.on('cancelled', () => outbound.cancel());
    };
    c.onCall = (call) => call.provisional(180);
    // A call answered, then ended by a.
    const first = watchCall(a.core.invite({ requestUri: m.uri, from: `<${a.uri}>`, to: `<${m.uri}>`, body: OFFER }));
    net.flush();
    assert.equal(c.calls[0]!.body?.content, OFFER, 'the offer crossed the bridge');
    const cAck: Array<string | undefined> = [];
    c.calls[0]!.on('ack', (body) => cAck.push(body?.content));
    c.calls[0]!.answer(200, ANSWER);
    net.flush();
    assert.deepEqual(first.provisional.map((p) => p.response.status), [183, 180]);
    assert.equal(first.answered[0]!.response.body.toString(), ANSWER, 'the answer crossed back');
    first.answered[0]!.dialog.ack();
    net.flush();
    assert.equal(legs[0]!.inbound.state, 'answered');
    assert.deepEqual(cAck, [undefined]);
    void first.answered[0]!.dialog.bye();
    net.flush();
    assert.equal(c.calls[0]!.dialog.terminationReason, 'remote-bye');
    // A call cancelled by a while c rings: the CANCEL is passed on.
    const secondCall = a.core.invite({ requestUri: m.uri, from: `<${a.uri}>`, to: `<${m.uri}>`, body: OFFER });
    const second = watchCall(secondCall);
    net.flush();
    assert.equal(c.calls.length, 2);
    secondCall.cancel();
    net.flush();
    assert.equal(second.failed[0]?.kind, 'cancelled');
    assert.equal(legs[1]!.inbound.state, 'cancelled');
    assert.equal(c.calls[1]!.dialog.terminationReason, 'cancelled');
    assert.equal(legs[1]!.outbound.outcome, 'failed');
    drain(clock, net);
    assertIdle(clock, a, m, c);
  });
});

describe('SIP dialogs: next hops, flows and failures', () => {
  test('a resolver that answers later (a promise): the call and its BYE still go', async () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const resolved: string[] = [];
    const a = agent(net, '192.0.2.1', {
      resolve: async (uri) => {
        resolved.push(uri);
        return uriEndpoint(uri);
      },
    });
    const b = agent(net, '192.0.2.2');
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER }));
    net.flush();
    assert.equal(b.calls.length, 0, 'nothing sent before the resolver answered');
    await settle();
    net.flush();
    b.calls[0]!.answer(200, ANSWER);
    net.flush();
    const dialog = seen.answered[0]!.dialog;
    const acks: Array<string | undefined> = [];
    b.calls[0]!.on('ack', (body) => acks.push(body?.content));
    dialog.ack(ANSWER);
    await settle();
    net.flush();
    assert.deepEqual(acks, [ANSWER]);
    const bye = dialog.bye();
    await settle();
    net.flush();
    assert.equal(((await bye) as { response: SipResponse }).response.status, 200);
    assert.deepEqual(resolved, [b.uri, 'sip:192.0.2.2:5060', 'sip:192.0.2.2:5060']);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('a next hop that cannot be resolved, or a transport that throws: failed {transport}, told after invite() returns', async () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    let failing = false;
    const a = agent(net, '192.0.2.1', {
      resolve: (uri) => {
        if (uri.includes('nowhere')) throw new Error('no such host');
        if (uri.includes('later')) return Promise.reject(new Error('no such host'));
        return uriEndpoint(uri);
      },
      failing: () => failing,
    });
    const b = agent(net, '192.0.2.2');
    const kinds: string[] = [];
    for (const requestUri of ['sip:x@nowhere.invalid', 'sip:x@later.invalid', b.uri]) {
      failing = requestUri === b.uri;
      const call = a.core.invite({ requestUri, from: `<${a.uri}>`, to: `<${requestUri}>` });
      call.on('failed', (failure) => kinds.push(failure.kind));
    }
    failing = false;
    assert.deepEqual(kinds, [], 'nothing is told before the owner could listen');
    await settle();
    assert.deepEqual(kinds, ['transport', 'transport', 'transport']);
    drain(clock, net);
    assertIdle(clock, a, b);
  });

  test('a dialog whose peer came over a connection (a flow) sends on it, without resolving', async () => {
    const clock = new FakeClock();
    const net = new Network(clock);
    const a = agent(net, '192.0.2.1');
    const resolvedByB: string[] = [];
    const b = agent(net, '192.0.2.2', {
      flow: 'conn-7',
      resolve: (uri) => {
        resolvedByB.push(uri);
        return uriEndpoint(uri);
      },
    });
    const seen = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER }));
    net.flush();
    b.calls[0]!.answer(200, ANSWER);
    net.flush();
    seen.answered[0]!.dialog.ack();
    net.flush();
    const uas = b.calls[0]!.dialog;
    const uacSeen = watchDialog(seen.answered[0]!.dialog);
    const bye = uas.bye();
    net.flush();
    assert.equal(((await bye) as { response: SipResponse }).response.status, 200);
    assert.deepEqual(resolvedByB, []);
    assert.deepEqual(uacSeen.ended, ['remote-bye']);
    const sentBye = net.carried.find((c) => describeMessage(c.message) === 'BYE')!;
    assert.ok(sentBye.message.headers.get('Via')!.startsWith('SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK'));
    drain(clock, net);
    assertIdle(clock, a, b);
  });
});

describe('SIP dialogs: shutdown', () => {
  test('shutdown() ends every call: BYE, CANCEL, 503', () => {
    const w = world();
    const { net, a, b, clock } = w;
    const { uac, uas } = establish(w);
    const outgoing = watchCall(a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>` }));
    const incoming = watchCall(b.core.invite({ requestUri: a.uri, from: `<${b.uri}>`, to: `<${a.uri}>` }));
    net.flush();
    b.calls[1]!.provisional(180);
    net.flush();
    a.core.shutdown();
    net.flush();
    assert.equal(uac.terminationReason, 'shutdown');
    assert.equal(uas.terminationReason, 'remote-bye');
    assert.equal(outgoing.failed[0]?.kind, 'cancelled');
    assert.equal(incoming.failed[0]?.kind === 'response' && incoming.failed[0].response.status, 503);
    assert.equal(a.core.dialogCount, 0);
    drain(clock, net);
    assertIdle(clock, a, b);
  });
});

describe('SIP dialogs on a lossy network (seeded)', () => {
  for (const seed of [1, 7, 2026, 31337]) {
    test(`seed ${seed}: each call has one outcome, and every dialog ends once its owners hang up`, () => {
      const random = seededRandom(seed);
      const { net, a, b, clock } = world();
      const later = (maxMs: number, run: () => void): void => {
        clock.schedule(Math.floor(random() * maxMs), run);
      };
      const quietly = (promise: Promise<unknown>): void => void promise.catch(() => undefined);
      const dialogs: Dialog[] = [];
      /** Requests inside the dialogs, the BYEs, the re-INVITEs: some of them cross or are lost. */
      const busy = (dialog: Dialog): void => {
        dialogs.push(dialog);
        dialog.on('request', (incoming) => later(2_000, () => incoming.respond(200, { body: ANSWER })));
        if (random() < 0.5) later(10_000, () => dialog.state === 'confirmed' && quietly(dialog.request('INVITE', { body: OFFER })));
        if (random() < 0.3) later(10_000, () => dialog.state !== 'terminated' && quietly(dialog.request('INFO')));
        if (random() < 0.4) later(20_000, () => dialog.state === 'confirmed' && quietly(dialog.bye()));
      };
      b.onCall = (call) => {
        busy(call.dialog);
        const choice = random();
        later(3_000, () => {
          if (choice < 0.2) call.reject(486);
          else if (choice < 0.3) return; // never answered: the transaction's guard answers 408
          else {
            call.provisional(180, { reliable: random() < 0.5 });
            later(3_000, () => call.answer(200, ANSWER));
          }
        });
      };
      const outcomes: string[][] = [];
      for (let i = 0; i < 25; i++) {
        clock.schedule(i * 700, () => {
          const call = a.core.invite({ requestUri: b.uri, from: `<${a.uri}>`, to: `<${b.uri}>`, body: OFFER });
          const seen: string[] = [];
          outcomes.push(seen);
          call.on('provisional', (dialog) => dialog !== undefined && !dialogs.includes(dialog) && busy(dialog));
          call.on('answered', (dialog) => {
            seen.push('answered');
            if (!dialogs.includes(dialog)) busy(dialog);
            later(2_000, () => dialog.ack(ANSWER));
          });
          call.on('failed', (failure) => seen.push(failure.kind));
          if (random() < 0.2) later(4_000, () => call.cancel());
        });
      }
      net.drop = () => random() < 0.1;
      clock.advance(250_000);
      assert.ok(outcomes.every((seen) => seen.length === 1), JSON.stringify(outcomes));
      // What is still up is hung up by its owners, on a network that no longer loses anything.
      net.drop = () => false;
      for (const dialog of dialogs) if (dialog.state !== 'terminated') quietly(dialog.bye());
      drain(clock, net);
      assert.ok(dialogs.every((dialog) => dialog.state === 'terminated'));
      assertIdle(clock, a, b);
    });
  }
});

describe('SIP dialogs over real UDP sockets on loopback', () => {
  test('a call and its BYE between two cores, each on its own socket', async () => {
    const sockets: Socket[] = [];
    type Node = { core: UserAgentCore; layer: TransactionLayer; endpoint: SipEndpoint; calls: ServerCall[] };
    const open = async (): Promise<Node> => {
      const socket = createSocket('udp4');
      sockets.push(socket);
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      const endpoint: SipEndpoint = { host: '127.0.0.1', port: socket.address().port };
      const send = (message: SipMessage, destination: SipEndpoint): void => {
        socket.send(serializeSipMessage(message), destination.port, destination.host);
      };
      const node = { endpoint, calls: [] as ServerCall[] } as unknown as Node;
      node.layer = new TransactionLayer({
        send,
        tu: (event) => {
          if (node.core.receive(event)) return;
          if (event.type === 'request' && event.request.method === 'INVITE') {
            const call = node.core.acceptInvite(event);
            if (call !== undefined) node.calls.push(call);
          }
        },
      });
      node.core = new UserAgentCore({
        transactions: node.layer,
        send,
        localAddress: () => ({ transport: 'udp', host: '127.0.0.1', port: endpoint.port }),
        resolve: uriEndpoint,
      });
      socket.on('message', (bytes, remote) => {
        node.layer.receive(parseSipMessage(bytes), { host: remote.address, port: remote.port }, false);
      });
      return node;
    };
    try {
      const a = await open();
      const b = await open();
      const bUri = `sip:b@127.0.0.1:${b.endpoint.port}`;
      const call = a.core.invite({ requestUri: bUri, from: `<sip:a@127.0.0.1:${a.endpoint.port}>`, to: `<${bUri}>`, body: OFFER });
      const answered = new Promise<Dialog>((resolve, reject) => {
        call.on('answered', (dialog) => resolve(dialog));
        call.on('failed', (failure) => reject(new Error(failure.kind)));
      });
      const ringing = await waitFor(() => b.calls[0]);
      const acked = new Promise<string | undefined>((resolve) => ringing.on('ack', (body) => resolve(body?.content)));
      ringing.provisional(180);
      ringing.answer(200, ANSWER);
      const dialog = await answered;
      dialog.ack();
      await acked;
      const ended = new Promise<TerminationReason>((resolve) => ringing.dialog.on('terminated', resolve));
      const bye = await dialog.bye();
      assert.equal(bye.kind === 'response' && bye.response.status, 200);
      assert.equal(await ended, 'remote-bye');
      assert.equal(a.core.dialogCount + b.core.dialogCount, 0);
    } finally {
      for (const socket of sockets) socket.close();
    }
  });
});

/** Polls (on real time) until `read` gives a value. */
async function waitFor<T>(read: () => T | undefined, timeoutMs = 2_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = read();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error('Timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
