/**
 * The SIP transaction layer (src/transports/sip/transactions.ts) on a fake clock: every timer
 * path of the four machines of RFC 3261 17 over UDP and over TCP, absorbed retransmissions,
 * matching (17.1.3, 17.2.3, the RFC 2543 fallback, ACK and CANCEL), the limits, and a seeded
 * randomized run that checks no transaction outlives its timers. No assertion reads the wall
 * clock: time is what FakeClock says. The messages are our own, shaped after RFC 3261's
 * examples of an INVITE and its responses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  parseSipMessage,
  responseTo,
  serializeSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from '../src/transports/sip/message.js';
import {
  ackForNonSuccess,
  cancelFor,
  clientKeyOfResponse,
  legacyAckKey,
  serverKey,
  tagOf,
} from '../src/transports/sip/transaction-matching.js';
import {
  TransactionLayer,
  TransactionLimitError,
  newBranch,
  type ClientEvent,
  type SipEndpoint,
  type TransactionLayerOptions,
  type TransactionUserEvent,
} from '../src/transports/sip/transactions.js';
// A seeded generator, so that a failing run can be replayed by its seed.
import { seededRandom } from './helpers.js';
import { FakeClock } from './fixtures/fake-clock.js';

const UA: SipEndpoint = { host: '192.0.2.10', port: 5060 };
const PEER: SipEndpoint = { host: '198.51.100.7', port: 5060 };

interface Sent {
  message: SipMessage;
  destination: SipEndpoint;
  at: number;
}

/** A layer on a fake clock, what it sent, what it told the TU; `failing` makes the transport throw. */
function harness(options: Partial<TransactionLayerOptions> = {}) {
  const clock = new FakeClock();
  const sent: Sent[] = [];
  const events: TransactionUserEvent[] = [];
  const state = { failing: false };
  const layer: TransactionLayer = new TransactionLayer({
    clock,
    ...options,
    send: (message, destination) => {
      if (state.failing) throw new Error('network unreachable');
      // A copy as the wire would carry it: what the test inspects is what a peer would read.
      sent.push({ message: parseSipMessage(serializeSipMessage(message)), destination, at: clock.now });
    },
    tu: (event) => events.push(event),
  });
  return { clock, sent, events, layer, state };
}

interface RequestShape {
  method?: string;
  branch?: string;
  /** sent-by of the top Via. */
  via?: string;
  transport?: string;
  uri?: string;
  toTag?: string;
  fromTag?: string;
  callId?: string;
  cseq?: number;
  route?: string;
}

/** A request as a UA would send it, read back through the parser. */
function makeRequest(shape: RequestShape = {}): SipRequest {
  const method = shape.method ?? 'INVITE';
  const branch = shape.branch ?? 'z9hG4bK-t-1';
  const lines = [
    `${method} ${shape.uri ?? 'sip:ben@example.org'} SIP/2.0`,
    `Via: SIP/2.0/${shape.transport ?? 'UDP'} ${shape.via ?? 'ua.example.net:5060'};branch=${branch}`,
    'Via: SIP/2.0/UDP earlier-hop.example.net;branch=z9hG4bK-earlier',
    ...(shape.route ? [`Route: ${shape.route}`] : []),
    'Max-Forwards: 70',
    `From: "Ann" <sip:ann@example.net>;tag=${shape.fromTag ?? 'ann-tag'}`,
    `To: <sip:ben@example.org>${shape.toTag ? `;tag=${shape.toTag}` : ''}`,
    `Call-ID: ${shape.callId ?? 'call-one@ua.example.net'}`,
    `CSeq: ${shape.cseq ?? 1} ${method}`,
    'Content-Length: 0',
  ];
  const message = parseSipMessage(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`));
  assert.equal(message.kind, 'request');
  return message;
}

function answer(request: SipRequest, status: number, toTag = 'ben-tag'): SipResponse {
  return responseTo(request, status, undefined, status === 100 ? {} : { toTag });
}

function sendTimes(sent: Sent[], predicate: (message: SipMessage) => boolean): number[] {
  return sent.filter((s) => predicate(s.message)).map((s) => s.at);
}

const isRequest = (method: string) => (m: SipMessage) => m.kind === 'request' && m.method === method;
const isStatus = (status: number) => (m: SipMessage) => m.kind === 'response' && m.status === status;

/** A client listener that records its events. */
function recorder(): { events: ClientEvent[]; listener: (event: ClientEvent) => void; types: () => string[] } {
  const events: ClientEvent[] = [];
  return {
    events,
    listener: (event) => events.push(event),
    types: () =>
      events.map((e) => (e.type === 'provisional' || e.type === 'final' ? `${e.type} ${e.response.status}` : e.type)),
  };
}

/** Every scenario ends with nothing live and no timer left. */
function assertDrained(h: { layer: TransactionLayer; clock: FakeClock }): void {
  assert.equal(h.layer.size, 0, 'live transactions');
  assert.equal(h.clock.pending, 0, 'timers left');
}

describe('SIP client INVITE transaction (17.1.1)', () => {
  test('over UDP timer A retransmits at T1, doubling, until timer B (64*T1) times out', () => {
    const h = harness();
    const rec = recorder();
    const tx = h.layer.request(makeRequest(), PEER, false, rec.listener);
    assert.equal(tx.state, 'calling');
    h.clock.advance(31_999);
    assert.deepEqual(sendTimes(h.sent, isRequest('INVITE')), [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert.deepEqual(rec.types(), []);
    h.clock.advance(1);
    assert.deepEqual(rec.types(), ['timeout']);
    assert.equal(tx.state, 'terminated');
    assert.ok(h.sent.every((s) => s.destination === PEER));
    assertDrained(h);
  });

  test('over TCP the request goes once and timer B still times out', () => {
    const h = harness();
    const rec = recorder();
    h.layer.request(makeRequest({ transport: 'TCP' }), PEER, true, rec.listener);
    h.clock.advance(40_000);
    assert.deepEqual(sendTimes(h.sent, isRequest('INVITE')), [0]);
    assert.deepEqual(rec.types(), ['timeout']);
    assertDrained(h);
  });

  test('a provisional response stops retransmissions and timer B; the proceeding guard ends a silent call', () => {
    const h = harness();
    const rec = recorder();
    const invite = makeRequest();
    const tx = h.layer.request(invite, PEER, false, rec.listener);
    h.clock.advance(600);
    assert.equal(h.layer.receive(answer(invite, 100), PEER, false), 'matched');
    assert.equal(h.layer.receive(answer(invite, 180), PEER, false), 'matched');
    assert.equal(tx.state, 'proceeding');
    h.clock.advance(100_000);
    assert.deepEqual(sendTimes(h.sent, isRequest('INVITE')), [0, 500]);
    assert.deepEqual(rec.types(), ['provisional 100', 'provisional 180']);
    h.clock.advance(80_600);
    assert.deepEqual(rec.types(), ['provisional 100', 'provisional 180', 'timeout']);
    assertDrained(h);
  });

  test('a non-2xx final response is acknowledged by the transaction (17.1.1.3), retransmissions re-acknowledged until timer D', () => {
    const h = harness();
    const rec = recorder();
    const invite = makeRequest({ route: '<sip:proxy.example.net;lr>' });
    h.layer.request(invite, PEER, false, rec.listener);
    h.layer.receive(answer(invite, 180), PEER, false);
    h.clock.advance(1_000);
    const busy = answer(invite, 486);
    h.layer.receive(busy, PEER, false);
    const acks = h.sent.filter((s) => isRequest('ACK')(s.message));
    assert.equal(acks.length, 1);
    const ack = acks[0]!.message as SipRequest;
    assert.equal(ack.uri, invite.uri);
    assert.deepEqual(ack.headers.getAll('Via'), [invite.headers.getAll('Via')[0]]);
    assert.equal(ack.headers.get('CSeq'), '1 ACK');
    assert.equal(ack.headers.get('To'), busy.headers.get('To'));
    assert.equal(tagOf(ack.headers, 'To'), 'ben-tag');
    assert.equal(ack.headers.get('From'), invite.headers.get('From'));
    assert.equal(ack.headers.get('Call-ID'), invite.headers.get('Call-ID'));
    assert.equal(ack.headers.get('Route'), '<sip:proxy.example.net;lr>');
    assert.equal(ack.body.length, 0);
    // The 486 again: ACK again, nothing more for the TU.
    h.clock.advance(2_000);
    assert.equal(h.layer.receive(answer(invite, 486), PEER, false), 'matched');
    assert.equal(h.sent.filter((s) => isRequest('ACK')(s.message)).length, 2);
    assert.deepEqual(rec.types(), ['provisional 180', 'final 486']);
    assert.equal(h.layer.size, 1);
    h.clock.advance(29_999);
    assert.equal(h.layer.size, 1, 'timer D (32 s) is not over');
    h.clock.advance(1);
    assertDrained(h);
    // Now the 486 is a stranger.
    assert.equal(h.layer.receive(answer(invite, 486), PEER, false), 'stray');
  });

  test('over TCP a non-2xx final response is acknowledged once and the transaction ends at once (D = 0)', () => {
    const h = harness();
    const rec = recorder();
    const invite = makeRequest({ transport: 'TCP' });
    h.layer.request(invite, PEER, true, rec.listener);
    h.layer.receive(answer(invite, 603), PEER, true);
    assert.deepEqual(rec.types(), ['final 603']);
    assert.equal(h.sent.filter((s) => isRequest('ACK')(s.message)).length, 1);
    assertDrained(h);
  });

  test('a 2xx goes up and ends the transaction; its retransmissions reach the TU as stray responses', () => {
    const h = harness();
    const rec = recorder();
    const invite = makeRequest();
    h.layer.request(invite, PEER, false, rec.listener);
    h.clock.advance(700);
    h.layer.receive(answer(invite, 200), PEER, false);
    assert.deepEqual(rec.types(), ['final 200']);
    assertDrained(h);
    assert.equal(h.sent.filter((s) => isRequest('ACK')(s.message)).length, 0, 'the TU acknowledges a 2xx');
    assert.equal(h.layer.receive(answer(invite, 200), PEER, false), 'stray');
    assert.equal(h.events.at(-1)?.type, 'response');
  });

  test('a transport error on the first send or on a retransmission is reported and ends the transaction', () => {
    const h = harness();
    h.state.failing = true;
    const first = recorder();
    h.layer.request(makeRequest({ branch: 'z9hG4bK-fail-1' }), PEER, false, first.listener);
    assert.deepEqual(first.types(), ['transport-error']);
    assertDrained(h);
    h.state.failing = false;
    const later = recorder();
    h.layer.request(makeRequest({ branch: 'z9hG4bK-fail-2' }), PEER, false, later.listener);
    h.state.failing = true;
    h.clock.advance(500);
    assert.deepEqual(later.types(), ['transport-error']);
    assertDrained(h);
  });

  test('a TU that throws on the final response cannot keep the transaction alive', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.request(invite, PEER, false, (event) => {
      if (event.type === 'final') throw new Error('a TU bug');
    });
    assert.throws(() => h.layer.receive(answer(invite, 500), PEER, false), /a TU bug/);
    h.clock.advance(32_000);
    assertDrained(h);
  });

  test('T1 is configurable: timer A and timer B follow it', () => {
    const h = harness({ timers: { t1: 100 } });
    const rec = recorder();
    h.layer.request(makeRequest(), PEER, false, rec.listener);
    h.clock.advance(6_400);
    assert.deepEqual(sendTimes(h.sent, isRequest('INVITE')), [0, 100, 300, 700, 1500, 3100, 6300]);
    assert.deepEqual(rec.types(), ['timeout']);
    assertDrained(h);
  });
});

describe('SIP client non-INVITE transaction (17.1.2)', () => {
  test('over UDP timer E doubles up to T2, and timer F times out at 64*T1', () => {
    const h = harness();
    const rec = recorder();
    h.layer.request(makeRequest({ method: 'OPTIONS' }), PEER, false, rec.listener);
    h.clock.advance(31_999);
    assert.deepEqual(
      sendTimes(h.sent, isRequest('OPTIONS')),
      [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500],
    );
    h.clock.advance(1);
    assert.deepEqual(rec.types(), ['timeout']);
    assertDrained(h);
  });

  test('once proceeding, timer E retransmits every T2', () => {
    const h = harness();
    const rec = recorder();
    const options = makeRequest({ method: 'OPTIONS' });
    h.layer.request(options, PEER, false, rec.listener);
    h.clock.advance(600);
    h.layer.receive(answer(options, 100), PEER, false);
    h.clock.advance(9_000);
    // E fired at 500 (next 1000 later, at 1500) and then at T2 = 4 s intervals.
    assert.deepEqual(sendTimes(h.sent, isRequest('OPTIONS')), [0, 500, 1500, 5500, 9500]);
    h.clock.advance(30_000);
    assert.deepEqual(rec.types(), ['provisional 100', 'timeout']);
    assertDrained(h);
  });

  test('a final response ends retransmissions; later copies are absorbed until timer K (T4)', () => {
    const h = harness();
    const rec = recorder();
    const register = makeRequest({ method: 'REGISTER' });
    const tx = h.layer.request(register, PEER, false, rec.listener);
    h.clock.advance(2_000);
    h.layer.receive(answer(register, 200), PEER, false);
    assert.equal(tx.state, 'completed');
    h.clock.advance(4_000);
    assert.equal(h.layer.receive(answer(register, 200), PEER, false), 'matched');
    assert.deepEqual(rec.types(), ['final 200']);
    assert.deepEqual(sendTimes(h.sent, isRequest('REGISTER')), [0, 500, 1500]);
    h.clock.advance(999);
    assert.equal(h.layer.size, 1);
    h.clock.advance(1);
    assertDrained(h);
  });

  test('over TCP: no retransmission, a final response ends it at once (K = 0), F still times out', () => {
    const h = harness();
    const answered = recorder();
    const bye = makeRequest({ method: 'BYE', transport: 'TCP', branch: 'z9hG4bK-bye' });
    h.layer.request(bye, PEER, true, answered.listener);
    h.layer.receive(answer(bye, 481), PEER, true);
    assert.deepEqual(answered.types(), ['final 481']);
    assertDrained(h);
    const silent = recorder();
    h.layer.request(makeRequest({ method: 'MESSAGE', transport: 'TCP' }), PEER, true, silent.listener);
    h.clock.advance(32_000);
    assert.deepEqual(silent.types(), ['timeout']);
    assert.equal(h.sent.filter((s) => isRequest('MESSAGE')(s.message)).length, 1);
    assertDrained(h);
  });

  test('T2 and T4 are configurable', () => {
    const h = harness({ timers: { t2: 1_000, t4: 2_000 } });
    const rec = recorder();
    const options = makeRequest({ method: 'OPTIONS' });
    h.layer.request(options, PEER, false, rec.listener);
    h.clock.advance(4_000);
    assert.deepEqual(sendTimes(h.sent, isRequest('OPTIONS')), [0, 500, 1500, 2500, 3500]);
    h.layer.receive(answer(options, 200), PEER, false);
    h.clock.advance(1_999);
    assert.equal(h.layer.size, 1);
    h.clock.advance(1);
    assertDrained(h);
  });
});

describe('SIP server INVITE transaction (17.2.1)', () => {
  test('100 Trying goes after 200 ms when the TU has not answered', () => {
    const h = harness();
    const invite = makeRequest();
    assert.equal(h.layer.receive(invite, UA, false), 'new');
    h.clock.advance(199);
    assert.equal(h.sent.length, 0);
    h.clock.advance(1);
    assert.deepEqual(sendTimes(h.sent, isStatus(100)), [200]);
    const trying = h.sent[0]!.message as SipResponse;
    assert.equal(tagOf(trying.headers, 'To'), '', 'a 100 carries no To tag');
    assert.equal(h.sent[0]!.destination, UA);
  });

  test('no 100 Trying when the TU answered within 200 ms', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.clock.advance(50);
    assert.ok(h.layer.respond(event.transaction, answer(invite, 180)));
    h.clock.advance(1_000);
    assert.deepEqual(h.sent.map((s) => (s.message as SipResponse).status), [180]);
  });

  test('a retransmitted INVITE gets the last provisional response again, or nothing before one', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    assert.equal(h.layer.receive(invite, UA, false), 'matched');
    assert.equal(h.sent.length, 0);
    h.clock.advance(200);
    assert.equal(h.layer.receive(invite, UA, false), 'matched');
    assert.deepEqual(h.sent.map((s) => (s.message as SipResponse).status), [100, 100]);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.layer.respond(event.transaction, answer(invite, 183));
    h.layer.receive(invite, UA, false);
    assert.deepEqual(h.sent.map((s) => (s.message as SipResponse).status), [100, 100, 183, 183]);
    assert.equal(h.events.length, 1, 'retransmissions never reach the TU');
  });

  test('over UDP a non-2xx final response is resent by timer G (doubling up to T2) until timer H reports no ACK', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.layer.respond(event.transaction, answer(invite, 486));
    assert.equal(event.transaction.state, 'completed');
    h.clock.advance(31_999);
    assert.deepEqual(
      sendTimes(h.sent, isStatus(486)),
      [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500],
    );
    assert.equal(h.layer.size, 1);
    h.clock.advance(1);
    assert.equal(h.events.at(-1)?.type, 'no-ack');
    assertDrained(h);
  });

  test('the ACK confirms: retransmissions stop, ACK copies are absorbed, timer I (T4) ends it', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.layer.respond(event.transaction, answer(invite, 404));
    h.clock.advance(600);
    const ack = ackForNonSuccess(invite, answer(invite, 404));
    assert.equal(h.layer.receive(ack, UA, false), 'matched');
    assert.equal(event.transaction.state, 'confirmed');
    h.clock.advance(3_000);
    assert.equal(h.layer.receive(ack, UA, false), 'matched');
    assert.equal(h.layer.receive(invite, UA, false), 'matched');
    assert.deepEqual(sendTimes(h.sent, isStatus(404)), [0, 500], 'nothing is resent once confirmed');
    assert.equal(h.events.length, 1, 'the ACK stays in the transaction');
    h.clock.advance(1_999);
    assert.equal(h.layer.size, 1);
    h.clock.advance(1);
    assertDrained(h);
  });

  test('a retransmitted INVITE while completed gets the final response again', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.layer.respond(event.transaction, answer(invite, 480));
    h.clock.advance(100);
    h.layer.receive(invite, UA, false);
    assert.deepEqual(sendTimes(h.sent, isStatus(480)), [0, 100]);
  });

  test('over TCP: no timer G, the ACK ends it at once (I = 0), timer H still runs without one', () => {
    const h = harness();
    const acked = makeRequest({ transport: 'TCP', branch: 'z9hG4bK-tcp-1' });
    h.layer.receive(acked, UA, true);
    const first = h.events[0];
    assert.ok(first?.type === 'request');
    h.layer.respond(first.transaction, answer(acked, 486));
    h.clock.advance(10_000);
    assert.deepEqual(sendTimes(h.sent, isStatus(486)), [0], 'no retransmission over TCP');
    h.layer.receive(ackForNonSuccess(acked, answer(acked, 486)), UA, true);
    assertDrained(h);

    const unacked = makeRequest({ transport: 'TCP', branch: 'z9hG4bK-tcp-2' });
    h.layer.receive(unacked, UA, true);
    const second = h.events.at(-1);
    assert.ok(second?.type === 'request');
    h.layer.respond(second.transaction, answer(unacked, 500));
    h.clock.advance(32_000);
    assert.equal(h.events.at(-1)?.type, 'no-ack');
    assert.equal(h.sent.filter((s) => isStatus(500)(s.message)).length, 1);
    assertDrained(h);
  });

  test('a 2xx ends the transaction at once; the ACK for it goes to the TU', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.layer.respond(event.transaction, answer(invite, 200));
    assert.equal(event.transaction.state, 'terminated');
    assertDrained(h);
    assert.equal(h.layer.respond(event.transaction, answer(invite, 200)), false, 'a finished transaction is not answered');
    // The ACK for a 2xx is a transaction of its own with a new branch (17.1.1.3, 13.2.2.4).
    const ack = makeRequest({ method: 'ACK', branch: 'z9hG4bK-ack-2xx', toTag: 'ben-tag' });
    assert.equal(h.layer.receive(ack, UA, false), 'stray');
    assert.equal(h.events.at(-1)?.type, 'ack');
    assertDrained(h);
  });

  test('the TU never answering: the answer guard sends 408 and the machine runs out as usual', () => {
    const h = harness({ timers: { inviteAnswerGuard: 60_000 } });
    h.layer.receive(makeRequest(), UA, false);
    h.clock.advance(60_000);
    assert.deepEqual(sendTimes(h.sent, isStatus(408)), [60_000]);
    assert.equal(h.events.at(-1)?.type, 'unanswered');
    h.clock.advance(32_000);
    assert.equal(h.events.at(-1)?.type, 'no-ack');
    assertDrained(h);
  });

  test('a transport error on a response is reported and ends the transaction', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.state.failing = true;
    assert.equal(h.layer.respond(event.transaction, answer(invite, 486)), false);
    assert.equal(h.events.at(-1)?.type, 'transport-error');
    assertDrained(h);
  });
});

describe('SIP server non-INVITE transaction (17.2.2)', () => {
  test('retransmissions: absorbed while trying, the provisional then the final response resent', () => {
    const h = harness();
    const message = makeRequest({ method: 'MESSAGE' });
    h.layer.receive(message, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    assert.equal(event.transaction.state, 'trying');
    assert.equal(h.layer.receive(message, UA, false), 'matched');
    assert.equal(h.sent.length, 0, 'nothing to resend while trying');
    h.layer.respond(event.transaction, answer(message, 100));
    assert.equal(event.transaction.state, 'proceeding');
    h.layer.receive(message, UA, false);
    h.layer.respond(event.transaction, answer(message, 202));
    h.layer.receive(message, UA, false);
    assert.deepEqual(h.sent.map((s) => (s.message as SipResponse).status), [100, 100, 202, 202]);
    assert.equal(h.events.length, 1);
  });

  test('over UDP timer J (64*T1) keeps the completed transaction, over TCP it ends at once', () => {
    const h = harness();
    const udp = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-j-udp' });
    h.layer.receive(udp, UA, false);
    const first = h.events[0];
    assert.ok(first?.type === 'request');
    h.layer.respond(first.transaction, answer(udp, 200));
    assert.equal(first.transaction.state, 'completed');
    h.clock.advance(31_999);
    assert.equal(h.layer.size, 1);
    assert.deepEqual(sendTimes(h.sent, isStatus(200)), [0], 'a server never retransmits a non-INVITE response on its own');
    h.clock.advance(1);
    assertDrained(h);

    const tcp = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-j-tcp', transport: 'TCP' });
    h.layer.receive(tcp, UA, true);
    const second = h.events.at(-1);
    assert.ok(second?.type === 'request');
    h.layer.respond(second.transaction, answer(tcp, 200));
    assertDrained(h);
  });

  test('the TU never answering: 408 after 64*T1, then timer J', () => {
    const h = harness({ timers: { t1: 250 } });
    h.layer.receive(makeRequest({ method: 'SUBSCRIBE' }), UA, false);
    h.clock.advance(16_000);
    assert.deepEqual(sendTimes(h.sent, isStatus(408)), [16_000]);
    assert.equal(h.events.at(-1)?.type, 'unanswered');
    h.clock.advance(16_000);
    assertDrained(h);
  });
});

describe('SIP transaction matching (17.1.3, 17.2.3)', () => {
  test('responses match by top Via branch and CSeq method', () => {
    const h = harness();
    const rec = recorder();
    const invite = makeRequest({ branch: 'z9hG4bK-match-1' });
    h.layer.request(invite, PEER, false, rec.listener);
    // The same branch with CSeq CANCEL is the CANCEL's transaction, not this one.
    const cancelAnswer = answer(cancelFor(invite), 200);
    assert.equal(h.layer.receive(cancelAnswer, PEER, false), 'stray');
    const otherBranch = answer(makeRequest({ branch: 'z9hG4bK-match-2' }), 180);
    assert.equal(h.layer.receive(otherBranch, PEER, false), 'stray');
    assert.deepEqual(rec.types(), []);
    assert.equal(h.layer.receive(answer(invite, 180), PEER, false), 'matched');
    assert.deepEqual(rec.types(), ['provisional 180']);
    assert.equal(clientKeyOfResponse(answer(invite, 180)), clientKeyOfResponse(answer(invite, 404)));
  });

  test('requests match by branch, sent-by and method; the default port counts as written', () => {
    const base = makeRequest({ via: 'ua.example.net' });
    assert.equal(serverKey(base), serverKey(makeRequest({ via: 'UA.example.net:5060' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ via: 'ua.example.net:5070' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ via: 'other.example.net' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ method: 'OPTIONS' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ branch: 'z9hG4bK-t-2' })));
    // With the cookie the rest does not matter: the branch is the transaction.
    assert.equal(serverKey(base), serverKey(makeRequest({ cseq: 9, callId: 'x@y' })));
    const tls = (via: string): SipRequest => makeRequest({ via, transport: 'TLS' });
    assert.equal(serverKey(tls('ua.example.net')), serverKey(tls('ua.example.net:5061')));

    const h = harness();
    h.layer.receive(base, UA, false);
    assert.equal(h.layer.receive(makeRequest({ via: 'other.example.net' }), UA, false), 'new');
    assert.equal(h.layer.receive(makeRequest({ method: 'INFO' }), UA, false), 'new');
    assert.equal(h.layer.receive(makeRequest({ via: 'ua.example.net:5060' }), UA, false), 'matched');
    assert.equal(h.layer.size, 3);
  });

  test('an ACK with the cookie matches its INVITE transaction; one for another branch goes to the TU', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    h.layer.respond(event.transaction, answer(invite, 603));
    const stranger = makeRequest({ method: 'ACK', branch: 'z9hG4bK-other', toTag: 'ben-tag' });
    assert.equal(h.layer.receive(stranger, UA, false), 'stray');
    assert.equal(event.transaction.state, 'completed');
    assert.equal(h.layer.receive(makeRequest({ method: 'ACK', toTag: 'ben-tag' }), UA, false), 'matched');
    assert.equal(event.transaction.state, 'confirmed');
  });

  test('RFC 2543 fallback: a request without the cookie matches by Request-URI, tags, Call-ID, CSeq and top Via', () => {
    const old = { branch: '1a2b3c' };
    const base = makeRequest(old);
    assert.equal(serverKey(base), serverKey(makeRequest(old)));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ ...old, uri: 'sip:ben@other.example.org' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ ...old, toTag: 'x' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ ...old, fromTag: 'x' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ ...old, callId: 'another@ua.example.net' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ ...old, cseq: 2 })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ ...old, via: 'ua.example.net:5070' })));
    assert.notEqual(serverKey(base), serverKey(makeRequest({ branch: '1a2b3d' })));
    const noBranch = makeRequest(old);
    noBranch.headers.set('Via', 'SIP/2.0/UDP ua.example.net:5060');
    assert.ok(serverKey(noBranch) !== undefined, 'a Via without a branch still matches the old way');

    const h = harness();
    h.layer.receive(base, UA, false);
    assert.equal(h.layer.receive(makeRequest(old), UA, false), 'matched');
    assert.equal(h.layer.receive(makeRequest({ ...old, cseq: 2 }), UA, false), 'new');
  });

  test('RFC 2543 fallback: the ACK matches by the To tag of the response the transaction sent', () => {
    const h = harness();
    const invite = makeRequest({ branch: 'old-style-1' });
    h.layer.receive(invite, UA, false);
    const event = h.events[0];
    assert.ok(event?.type === 'request');
    const rejection = answer(invite, 486, 'our-tag');
    h.layer.respond(event.transaction, rejection);
    const wrongTag = makeRequest({ method: 'ACK', branch: 'old-style-1', toTag: 'not-ours' });
    assert.equal(h.layer.receive(wrongTag, UA, false), 'stray');
    const ack = ackForNonSuccess(invite, rejection);
    assert.equal(legacyAckKey(ack) !== undefined, true);
    assert.equal(h.layer.receive(ack, UA, false), 'matched');
    assert.equal(event.transaction.state, 'confirmed');
    h.clock.advance(5_000);
    assertDrained(h);
  });

  test('a CANCEL is a transaction of its own that names the INVITE it matches; acceptCancel answers 200 and 487', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const inviteEvent = h.events[0];
    assert.ok(inviteEvent?.type === 'request');
    h.layer.respond(inviteEvent.transaction, answer(invite, 180, 'ring-tag'));
    const cancel = cancelFor(invite);
    assert.equal(h.layer.receive(cancel, UA, false), 'new');
    const cancelEvent = h.events[1];
    assert.ok(cancelEvent?.type === 'request');
    assert.equal(cancelEvent.cancels, inviteEvent.transaction);
    assert.notEqual(cancelEvent.transaction, inviteEvent.transaction);
    assert.equal(h.layer.acceptCancel(cancelEvent.transaction), inviteEvent.transaction);
    const cancelOk = h.sent.find((s) => isStatus(200)(s.message))!.message as SipResponse;
    const terminated = h.sent.find((s) => isStatus(487)(s.message))!.message as SipResponse;
    assert.equal(cancelOk.headers.get('CSeq'), '1 CANCEL');
    assert.equal(terminated.headers.get('CSeq'), '1 INVITE');
    assert.equal(tagOf(cancelOk.headers, 'To'), 'ring-tag');
    assert.equal(tagOf(terminated.headers, 'To'), 'ring-tag');
    assert.equal(inviteEvent.transaction.state, 'completed');
    // A retransmitted CANCEL gets its 200 again, without the TU.
    assert.equal(h.layer.receive(cancel, UA, false), 'matched');
    assert.equal(h.sent.filter((s) => isStatus(200)(s.message)).length, 2);
    h.layer.receive(ackForNonSuccess(invite, terminated), UA, false);
    h.clock.advance(32_000);
    assertDrained(h);
  });

  test('a CANCEL after the final response gets 200 alone; one matching nothing gets 481', () => {
    const h = harness();
    const invite = makeRequest();
    h.layer.receive(invite, UA, false);
    const inviteEvent = h.events[0];
    assert.ok(inviteEvent?.type === 'request');
    h.layer.respond(inviteEvent.transaction, answer(invite, 486));
    h.layer.receive(cancelFor(invite), UA, false);
    const late = h.events[1];
    assert.ok(late?.type === 'request');
    assert.equal(h.layer.acceptCancel(late.transaction), undefined);
    assert.deepEqual(h.sent.map((s) => (s.message as SipResponse).status), [486, 200]);

    const orphan = cancelFor(makeRequest({ branch: 'z9hG4bK-gone' }));
    h.layer.receive(orphan, UA, false);
    const none = h.events[2];
    assert.ok(none?.type === 'request');
    assert.equal(none.cancels, undefined);
    assert.equal(h.layer.acceptCancel(none.transaction), undefined);
    assert.equal((h.sent.at(-1)!.message as SipResponse).status, 481);
    assert.throws(() => h.layer.acceptCancel(inviteEvent.transaction), TypeError);
  });

  test('an RFC 2543 CANCEL finds its INVITE too', () => {
    const h = harness();
    const invite = makeRequest({ branch: 'legacy-cancel' });
    h.layer.receive(invite, UA, false);
    h.layer.receive(cancelFor(invite), UA, false);
    const cancelEvent = h.events[1];
    assert.ok(cancelEvent?.type === 'request');
    assert.equal(cancelEvent.cancels, (h.events[0] as { transaction: unknown }).transaction);
  });

  test('messages that name no transaction (no Via) are dropped', () => {
    const h = harness();
    const bare = makeRequest({ method: 'OPTIONS' });
    bare.headers.remove('Via');
    assert.equal(h.layer.receive(bare, UA, false), 'dropped');
    const response = answer(makeRequest(), 200);
    response.headers.remove('Via');
    assert.equal(h.layer.receive(response, PEER, false), 'dropped');
    assert.equal(h.events.length, 0);
  });
});

describe('SIP client CANCEL (9.1)', () => {
  test('a CANCEL waits for a provisional response, then goes with the INVITE branch in its own transaction', () => {
    const h = harness();
    const inviteEvents = recorder();
    const cancelEvents = recorder();
    const invite = makeRequest({ branch: newBranch(), route: '<sip:proxy.example.net;lr>' });
    const tx = h.layer.request(invite, PEER, false, inviteEvents.listener);
    assert.ok(h.layer.cancel(tx, cancelEvents.listener));
    assert.ok(h.layer.cancel(tx), 'asking again changes nothing');
    assert.equal(h.sent.filter((s) => isRequest('CANCEL')(s.message)).length, 0, 'not before a provisional response');
    h.layer.receive(answer(invite, 180), PEER, false);
    const cancel = h.sent.find((s) => isRequest('CANCEL')(s.message))!.message as SipRequest;
    assert.deepEqual(cancel.headers.getAll('Via'), [invite.headers.getAll('Via')[0]]);
    assert.equal(cancel.headers.get('CSeq'), '1 CANCEL');
    assert.equal(cancel.headers.get('To'), invite.headers.get('To'));
    assert.equal(cancel.headers.get('Route'), '<sip:proxy.example.net;lr>');
    assert.equal(cancel.uri, invite.uri);
    assert.equal(h.layer.size, 2);
    h.layer.receive(answer(cancel, 200), PEER, false);
    h.layer.receive(answer(invite, 487), PEER, false);
    assert.deepEqual(cancelEvents.types(), ['final 200']);
    assert.deepEqual(inviteEvents.types(), ['provisional 180', 'final 487']);
    assert.equal(h.layer.cancel(tx), false, 'nothing left to cancel');
    assert.equal(h.sent.filter((s) => isRequest('CANCEL')(s.message)).length, 1);
    h.clock.advance(32_000);
    assertDrained(h);
  });

  test('a CANCEL still waiting when the final response comes is never sent', () => {
    const h = harness();
    const invite = makeRequest();
    const tx = h.layer.request(invite, PEER, false, () => {});
    h.layer.cancel(tx);
    h.layer.receive(answer(invite, 404), PEER, false);
    h.clock.advance(40_000);
    assert.equal(h.sent.filter((s) => isRequest('CANCEL')(s.message)).length, 0);
    assertDrained(h);
  });

  test('newBranch makes distinct branches with the magic cookie', () => {
    const branches = new Set(Array.from({ length: 100 }, () => newBranch()));
    assert.equal(branches.size, 100);
    for (const branch of branches) assert.match(branch, /^z9hG4bK[A-Za-z0-9_-]{16}$/);
  });
});

describe('SIP transaction limits', () => {
  test('over the overall limit a new request is answered 503 with Retry-After; retransmissions still match', () => {
    const h = harness({ limits: { maxTransactions: 2, retryAfter: 30 } });
    const first = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l1' });
    h.layer.receive(first, UA, false);
    h.layer.receive(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l2' }), UA, false);
    const third = makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-l3' });
    assert.equal(h.layer.receive(third, { host: '203.0.113.5', port: 5060 }, false), 'rejected');
    const refusal = h.sent.at(-1)!;
    assert.equal((refusal.message as SipResponse).status, 503);
    assert.equal(refusal.message.headers.get('Retry-After'), '30');
    assert.equal(refusal.destination.host, '203.0.113.5');
    assert.equal(h.layer.size, 2);
    assert.equal(h.layer.receive(first, UA, false), 'matched');
    // An ACK is never refused: it opens no transaction.
    assert.equal(h.layer.receive(makeRequest({ method: 'ACK', branch: 'z9hG4bK-l4' }), UA, false), 'stray');
    h.clock.advance(64_000);
    assertDrained(h);
  });

  test('per source: one host at its limit is refused while another is served', () => {
    const h = harness({ limits: { maxPerSource: 2 } });
    const other = { host: '203.0.113.9', port: 5062 };
    const message = (branch: string): SipRequest => makeRequest({ method: 'MESSAGE', branch: `z9hG4bK-${branch}` });
    h.layer.receive(message('a'), UA, false);
    h.layer.receive(message('b'), UA, false);
    assert.equal(h.layer.sizeFrom(UA.host), 2);
    assert.equal(h.layer.receive(message('c'), { ...UA, port: 6000 }, false), 'rejected', 'another port of the same host');
    assert.equal(h.layer.receive(message('c'), other, false), 'new');
    assert.equal(h.layer.sizeFrom(other.host), 1);
    for (const event of h.events) {
      if (event.type === 'request') h.layer.respond(event.transaction, answer(event.request, 200));
    }
    h.clock.advance(32_000);
    assert.equal(h.layer.sizeFrom(UA.host), 0);
    assert.equal(h.layer.receive(makeRequest({ method: 'MESSAGE', branch: 'z9hG4bK-d' }), UA, false), 'new');
  });

  test('a client request over the limit is refused with TransactionLimitError', () => {
    const h = harness({ limits: { maxTransactions: 1 } });
    h.layer.request(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-c1' }), PEER, false, () => {});
    assert.throws(
      () => h.layer.request(makeRequest({ method: 'OPTIONS', branch: 'z9hG4bK-c2' }), PEER, false, () => {}),
      TransactionLimitError,
    );
    assert.equal(h.sent.length, 1);
    h.clock.advance(32_000);
    assertDrained(h);
  });

  test('a client request needs a unique branch and is not an ACK', () => {
    const h = harness();
    const options = makeRequest({ method: 'OPTIONS' });
    h.layer.request(options, PEER, false, () => {});
    assert.throws(() => h.layer.request(options, PEER, false, () => {}), TypeError);
    assert.throws(() => h.layer.request(makeRequest({ method: 'ACK' }), PEER, false, () => {}), TypeError);
  });
});

describe('SIP transactions under a randomized run', () => {
  for (const seed of [1, 7, 2026, 31337]) {
    test(`seed ${seed}: every transaction ends by its timers, each client gets exactly one outcome`, () => {
      const random = seededRandom(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      const h = harness({ limits: { maxTransactions: 60, maxPerSource: 25 } });
      const outcomes = new Map<number, string[]>();
      const clientRequests: Array<{ request: SipRequest; reliable: boolean; id: number }> = [];
      const serverRequests: Array<{ request: SipRequest; source: SipEndpoint; reliable: boolean }> = [];
      const sources: SipEndpoint[] = [UA, PEER, { host: '203.0.113.1', port: 5080 }];
      let answered = 0;

      for (let step = 0; step < 600; step++) {
        h.state.failing = random() < 0.02;
        const action = random();
        if (action < 0.2) {
          const reliable = random() < 0.4;
          const request = makeRequest({ method: pick(['INVITE', 'OPTIONS', 'BYE']), branch: newBranch(), cseq: step });
          const id = step;
          outcomes.set(id, []);
          try {
            h.layer.request(request, PEER, reliable, (event) => {
              if (event.type !== 'provisional') outcomes.get(id)!.push(event.type);
            });
            clientRequests.push({ request, reliable, id });
          } catch (error) {
            assert.ok(error instanceof TransactionLimitError);
            outcomes.delete(id);
          }
        } else if (action < 0.45 && clientRequests.length > 0) {
          // The peer answers one of our requests (perhaps again, perhaps long after).
          const { request, reliable } = pick(clientRequests);
          h.layer.receive(answer(request, pick([100, 180, 200, 404, 486, 503])), PEER, reliable);
        } else if (action < 0.65) {
          const reliable = random() < 0.4;
          const method = pick(['INVITE', 'INVITE', 'MESSAGE', 'CANCEL']);
          const branch = random() < 0.15 ? `legacy${step}` : newBranch();
          const request = makeRequest({ method, branch, cseq: step, callId: `c${step}@ua.example.net` });
          const source = pick(sources);
          serverRequests.push({ request, source, reliable });
          h.layer.receive(request, source, reliable);
        } else if (action < 0.8 && serverRequests.length > 0) {
          // A retransmission, or an ACK for whatever the answer was.
          const { request, source, reliable } = pick(serverRequests);
          const acknowledge = request.method === 'INVITE' && random() < 0.5;
          const copy = acknowledge ? ackForNonSuccess(request, answer(request, 486)) : request;
          h.layer.receive(copy, source, reliable);
        } else if (action < 0.92) {
          // The TU answers some request still open.
          const open = h.events.filter(
            (e): e is Extract<TransactionUserEvent, { type: 'request' }> => e.type === 'request' && !e.transaction.answered,
          );
          if (open.length > 0) {
            const event = pick(open);
            if (event.request.method === 'CANCEL' && random() < 0.7) h.layer.acceptCancel(event.transaction);
            else if (h.layer.respond(event.transaction, answer(event.request, pick([180, 200, 486, 603])))) answered++;
          }
        } else {
          h.clock.advance(Math.floor(random() * 5_000));
        }
        assert.ok(h.layer.size <= 60);
      }
      h.state.failing = false;
      // Long enough for every guard and terminal timer: nothing may survive it.
      h.clock.advance(10 * 60_000);
      assertDrained(h);
      for (const [id, events] of outcomes) {
        assert.equal(events.length, 1, `client transaction ${id}: ${events.join(', ')}`);
      }
      for (const event of h.events) {
        if (event.type === 'request') assert.equal(event.transaction.state, 'terminated');
      }
      // Over a reliable transport a request goes once, never retransmitted.
      for (const { request, reliable } of clientRequests) {
        if (!reliable) continue;
        const via = request.headers.getAll('Via')[0];
        const copies = h.sent.filter(
          ({ message }) =>
            message.kind === 'request' && message.method === request.method && message.headers.getAll('Via')[0] === via,
        );
        assert.ok(copies.length <= 1, `${request.method} sent ${copies.length} times over TCP`);
      }
      assert.ok(answered > 0 && outcomes.size > 0, 'the run exercised both sides');
    });
  }
});
