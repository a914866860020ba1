/**
 * Calls between XIMSS sessions on the wire (spec section "Signaling", examples 028–040): the
 * offer/answer exchanges with and without an initial SDP, both SDP presentations, forking to
 * every bound session of an account, busy and declined, cancel, hold and resume, DTMF and
 * INFO, redirection, a session that goes away mid-call, and bad requests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { fails, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
}

/** A new account and a session of it, bound for calls unless `bound` is false. */
async function newUser(bound = true): Promise<User> {
  const address = await server.newAccount('call');
  const { client } = await server.login(address, 'secret');
  if (bound) await ok(client, '<signalBind/>');
  return { address, client };
}

async function anotherSession(user: User, bindAttrs = ''): Promise<XimssClient> {
  const { client } = await server.login(user.address, 'secret');
  await ok(client, `<signalBind ${bindAttrs}/>`);
  return client;
}

/** An audio description with a recognisable port and direction, as SDP text. */
function sdpText(port: number, direction = 'sendrecv'): string {
  return [
    'v=0',
    `o=- ${port} 1 IN IP4 127.0.0.1`,
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${port} RTP/AVP 0 8 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:8 PCMA/8000',
    'a=rtpmap:101 telephone-event/8000',
    `a=${direction}`,
    '',
  ].join('\r\n');
}

const sdp = (port: number, direction?: string): string => `<sdpText>${sdpText(port, direction)}</sdpText>`;

/** The media port and direction of the SDP a message carries, in either presentation. */
function media(message: XmlElement): { port: number; direction: string } | undefined {
  const text = message.element('sdpText');
  if (text) {
    const body = text.text();
    const port = /^m=audio (\d+)/m.exec(body);
    const direction = /^a=(sendrecv|sendonly|recvonly|inactive)/m.exec(body);
    return port ? { port: Number(port[1]), direction: direction?.[1] ?? 'sendrecv' } : undefined;
  }
  const xml = message.element('sdp')?.element('media');
  if (!xml) return undefined;
  const ip = xml.attrs.ip ?? '';
  return { port: Number(ip.slice(ip.lastIndexOf(':') + 1)), direction: xml.attrs.direction ?? 'sendrecv' };
}

const next = (client: XimssClient, name: string, leg?: string): Promise<XmlElement> => client.takeAsync(name, (m) => leg === undefined || m.attrs.callLeg === leg);

/** A starts a call to B with an offer on `port`; B's callIncoming. */
async function call(a: User, b: User | string, leg: string, port = 4000): Promise<XmlElement | undefined> {
  await ok(a.client, `<callStart callLeg="${leg}" peer="${typeof b === 'string' ? b : b.address}">${sdp(port)}</callStart>`);
  return typeof b === 'string' ? undefined : next(b.client, 'callIncoming');
}

describe('a call between two sessions', () => {
  test('with an offer: incoming, provisioned, accepted, DTMF and INFO both ways, hung up by the callee', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const incoming = (await call(alice, bob, 'c1', 4000))!;
    assert.match(incoming.attrs.callLeg!, /^inp/);
    assert.equal(incoming.attrs.peer, alice.address);
    assert.ok(incoming.attrs.callId);
    // The session bound without SDP gets the XML presentation.
    assert.ok(incoming.element('sdp'), 'XML presentation');
    assert.deepEqual(media(incoming), { port: 4000, direction: 'sendrecv' });
    const inp = incoming.attrs.callLeg!;

    await ok(bob.client, `<callProvision callLeg="${inp}"/>`);
    const provisioned = await next(alice.client, 'callProvisioned', 'c1');
    assert.ok(provisioned.attrs.tag);
    assert.equal(provisioned.attrs.callId, incoming.attrs.callId, 'one Call-Id on both sides');
    assert.equal(media(provisioned), undefined);
    await ok(alice.client, `<callUpdateAccept callLeg="c1"/>`);

    await ok(bob.client, `<callAccept callLeg="${inp}">${sdp(5000)}</callAccept>`);
    const updated = await next(bob.client, 'callUpdated', inp);
    assert.equal(updated.attrs.signalCode, undefined);
    const connected = await next(alice.client, 'callConnected', 'c1');
    assert.equal(connected.attrs.tag, provisioned.attrs.tag);
    assert.equal(connected.attrs.peer, bob.address);
    assert.deepEqual(media(connected), { port: 5000, direction: 'sendrecv' });
    await ok(alice.client, `<callUpdateAccept callLeg="c1"/>`);

    await ok(alice.client, `<callSendDTMF callLeg="c1">11</callSendDTMF>`);
    assert.equal((await next(bob.client, 'callDTMF', inp)).text(), '11');
    await next(alice.client, 'callOpCompleted', 'c1');
    await ok(bob.client, `<callSendDTMF callLeg="${inp}">5</callSendDTMF>`);
    assert.equal((await next(alice.client, 'callDTMF', 'c1')).text(), '5');
    await next(bob.client, 'callOpCompleted', inp);

    await ok(alice.client, `<callSendInfo callLeg="c1"><MIME type="application" subtype="x-note">hello</MIME></callSendInfo>`);
    const info = await next(bob.client, 'callInfo', inp);
    assert.equal(info.element('MIME')?.attrs.subtype, 'x-note');
    assert.equal(info.element('MIME')?.text(), 'hello');
    await next(alice.client, 'callOpCompleted', 'c1');

    await ok(bob.client, `<callKill callLeg="${inp}"/>`);
    await next(alice.client, 'callDisconnected', 'c1');
    await ok(alice.client, `<callKill callLeg="c1"/>`);
    // The identifier may be used again once killed.
    await fails(alice.client, `<callKill callLeg="c1"/>`, /unknown call/);
  });

  test('without an offer: the callee offers in callAccept, the caller answers in callUpdateAccept (sdpText sessions)', async () => {
    const alice = await newUser(false);
    await ok(alice.client, `<signalBind>${sdp(1)}</signalBind>`);
    const bob = await newUser(false);
    await ok(bob.client, `<signalBind>${sdp(2)}</signalBind>`);
    await ok(alice.client, `<callStart callLeg="late" peer="${bob.address}"/>`);
    const incoming = await next(bob.client, 'callIncoming');
    assert.equal(media(incoming), undefined);
    const inp = incoming.attrs.callLeg!;
    await fails(bob.client, `<callAccept callLeg="${inp}"/>`, /offer/);
    await ok(bob.client, `<callAccept callLeg="${inp}">${sdp(6000)}</callAccept>`);
    const connected = await next(alice.client, 'callConnected', 'late');
    assert.ok(connected.element('sdpText'), 'the text presentation, as bound');
    assert.equal(media(connected)?.port, 6000);
    await fails(alice.client, `<callUpdateAccept callLeg="late"/>`, /answer/);
    await ok(alice.client, `<callUpdateAccept callLeg="late">${sdp(6001)}</callUpdateAccept>`);
    const updated = await next(bob.client, 'callUpdated', inp);
    assert.equal(media(updated)?.port, 6001);
    await ok(alice.client, `<callKill callLeg="late"/>`);
    const gone = await next(bob.client, 'callDisconnected', inp);
    assert.equal(gone.attrs.signalCode, undefined);
    await ok(bob.client, `<callKill callLeg="${inp}"/>`);
  });

  test('early media: the callee answers in callProvision, callAccept then carries no SDP', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const inp = (await call(alice, bob, 'early', 4100))!.attrs.callLeg!;
    await ok(bob.client, `<callProvision callLeg="${inp}">${sdp(5100, 'sendonly')}</callProvision>`);
    await next(bob.client, 'callUpdated', inp);
    const provisioned = await next(alice.client, 'callProvisioned', 'early');
    assert.deepEqual(media(provisioned), { port: 5100, direction: 'sendonly' });
    await fails(bob.client, `<callAccept callLeg="${inp}">${sdp(5101)}</callAccept>`, /callProvision/);
    await ok(bob.client, `<callAccept callLeg="${inp}"/>`);
    const connected = await next(alice.client, 'callConnected', 'early');
    assert.equal(media(connected), undefined, 'the answer came early');
    await ok(alice.client, `<callKill callLeg="early"/>`);
    await next(bob.client, 'callDisconnected', inp);
  });

  test('hold and resume with callUpdate; a refused update leaves the call as it was', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const inp = (await call(alice, bob, 'hold', 4200))!.attrs.callLeg!;
    await ok(bob.client, `<callAccept callLeg="${inp}">${sdp(5200)}</callAccept>`);
    await next(bob.client, 'callUpdated', inp);
    await next(alice.client, 'callConnected', 'hold');

    await ok(alice.client, `<callUpdate callLeg="hold">${sdp(4200, 'sendonly')}</callUpdate>`);
    const request = await next(bob.client, 'callUpdateRequest', inp);
    assert.deepEqual(media(request), { port: 4200, direction: 'sendonly' });
    await ok(bob.client, `<callUpdateAccept callLeg="${inp}">${sdp(5200, 'recvonly')}</callUpdateAccept>`);
    assert.deepEqual(media(await next(alice.client, 'callUpdated', 'hold')), { port: 5200, direction: 'recvonly' });

    await ok(alice.client, `<callUpdate callLeg="hold">${sdp(4200, 'sendrecv')}</callUpdate>`);
    await next(bob.client, 'callUpdateRequest', inp);
    await ok(bob.client, `<callUpdateReject callLeg="${inp}"/>`);
    const refused = await next(alice.client, 'callUpdated', 'hold');
    assert.equal(refused.attrs.signalCode, '488');
    assert.ok(refused.attrs.errorText);

    // Resumed from the other side.
    await ok(bob.client, `<callUpdate callLeg="${inp}">${sdp(5200, 'sendrecv')}</callUpdate>`);
    await next(alice.client, 'callUpdateRequest', 'hold');
    await ok(alice.client, `<callUpdateAccept callLeg="hold">${sdp(4200, 'sendrecv')}</callUpdateAccept>`);
    assert.deepEqual(media(await next(bob.client, 'callUpdated', inp)), { port: 4200, direction: 'sendrecv' });
    // callUpdate without SDP changes nothing and says so.
    await ok(alice.client, `<callUpdate callLeg="hold"/>`);
    const same = await next(alice.client, 'callUpdated', 'hold');
    assert.equal(media(same), undefined);
    await ok(alice.client, `<callKill callLeg="hold"/>`);
    await next(bob.client, 'callDisconnected', inp);
  });
});

describe('forking and refusals', () => {
  test('every bound session of the callee rings; the first answer wins, the others are cancelled', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const bob2 = await anotherSession(bob);
    const unbound = (await server.login(bob.address, 'secret')).client;
    const first = (await call(alice, bob, 'fork', 4300))!;
    const second = await next(bob2, 'callIncoming');
    assert.equal(first.attrs.callId, second.attrs.callId);
    await ok(bob.client, `<callProvision callLeg="${first.attrs.callLeg}"/>`);
    await ok(bob2, `<callProvision callLeg="${second.attrs.callLeg}"/>`);
    const tags = new Set([(await next(alice.client, 'callProvisioned', 'fork')).attrs.tag, (await next(alice.client, 'callProvisioned', 'fork')).attrs.tag]);
    assert.equal(tags.size, 2, 'a tag per device');
    await ok(bob2, `<callAccept callLeg="${second.attrs.callLeg}">${sdp(5300)}</callAccept>`);
    const connected = await next(alice.client, 'callConnected', 'fork');
    assert.ok(tags.has(connected.attrs.tag));
    const cancelled = await next(bob.client, 'callDisconnected', first.attrs.callLeg);
    assert.match(cancelled.attrs.errorText ?? '', /elsewhere/);
    await fails(bob.client, `<callAccept callLeg="${first.attrs.callLeg}">${sdp(1)}</callAccept>`, /over/);
    await unbound.nothingMore('callIncoming');
    await ok(alice.client, `<callKill callLeg="fork"/>`);
    await next(bob2, 'callDisconnected', second.attrs.callLeg);
  });

  test('486 from one device lets the others ring; when all are busy the caller gets 486', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const bob2 = await anotherSession(bob);
    const one = (await call(alice, bob, 'busy', 4400))!;
    const two = await next(bob2, 'callIncoming');
    await ok(bob.client, `<callReject callLeg="${one.attrs.callLeg}" signalCode="486"/>`);
    await alice.client.nothingMore('callDisconnected');
    await ok(bob2, `<callReject callLeg="${two.attrs.callLeg}" signalCode="486"/>`);
    const end = await next(alice.client, 'callDisconnected', 'busy');
    assert.equal(end.attrs.signalCode, '486');
    await ok(alice.client, `<callKill callLeg="busy"/>`);
  });

  test('603 (the default of callReject) stops every device', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const bob2 = await anotherSession(bob);
    const one = (await call(alice, bob, 'decline', 4500))!;
    const two = await next(bob2, 'callIncoming');
    await ok(bob.client, `<callReject callLeg="${one.attrs.callLeg}"/>`);
    assert.equal((await next(alice.client, 'callDisconnected', 'decline')).attrs.signalCode, '603');
    await next(bob2, 'callDisconnected', two.attrs.callLeg);
  });

  test('the caller cancels (callKill while calling): the callee stops ringing', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const inp = (await call(alice, bob, 'cancel', 4600))!.attrs.callLeg!;
    await ok(alice.client, `<callKill callLeg="cancel"/>`);
    await next(bob.client, 'callDisconnected', inp);
    await fails(bob.client, `<callAccept callLeg="${inp}">${sdp(1)}</callAccept>`, /over/);
    await ok(bob.client, `<callKill callLeg="${inp}"/>`);
  });

  test('callRedirect sends the call to another user; with fork="yes" both ring', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    const inp = (await call(alice, bob, 'redir', 4700))!.attrs.callLeg!;
    await ok(bob.client, `<callRedirect callLeg="${inp}"><To>${carol.address}</To></callRedirect>`);
    const atCarol = await next(carol.client, 'callIncoming');
    assert.equal(atCarol.attrs.peer, alice.address);
    await ok(carol.client, `<callAccept callLeg="${atCarol.attrs.callLeg}">${sdp(5700)}</callAccept>`);
    assert.equal((await next(alice.client, 'callConnected', 'redir')).attrs.peer, carol.address);
    await ok(alice.client, `<callKill callLeg="redir"/>`);
    await next(carol.client, 'callDisconnected', atCarol.attrs.callLeg);

    const inp2 = (await call(alice, bob, 'redir2', 4701))!.attrs.callLeg!;
    await ok(bob.client, `<callRedirect callLeg="${inp2}" fork="yes"><To>${carol.address}</To></callRedirect>`);
    const atCarol2 = await next(carol.client, 'callIncoming');
    await ok(bob.client, `<callAccept callLeg="${inp2}">${sdp(5701)}</callAccept>`);
    assert.equal((await next(alice.client, 'callConnected', 'redir2')).attrs.peer, bob.address);
    await next(carol.client, 'callDisconnected', atCarol2.attrs.callLeg);
    await ok(alice.client, `<callKill callLeg="redir2"/>`);
  });

  test('nobody bound: 480; no such user: 404; another domain: refused honestly', async () => {
    const alice = await newUser();
    const idle = await newUser(false);
    await call(alice, idle.address, 'nobody');
    assert.equal((await next(alice.client, 'callDisconnected', 'nobody')).attrs.signalCode, '480');
    await call(alice, 'nosuchuser@example.test', 'nouser');
    assert.equal((await next(alice.client, 'callDisconnected', 'nouser')).attrs.signalCode, '404');
    await call(alice, 'sip:someone@elsewhere.invalid', 'remote');
    const remote = await next(alice.client, 'callDisconnected', 'remote');
    assert.equal(remote.attrs.signalCode, '503');
    assert.match(remote.attrs.errorText ?? '', /other domains/);
  });

  test('a session that ends mid-call hangs up its calls', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const inp = (await call(alice, bob, 'bye', 4800))!.attrs.callLeg!;
    await ok(bob.client, `<callAccept callLeg="${inp}">${sdp(5800)}</callAccept>`);
    await next(alice.client, 'callConnected', 'bye');
    await ok(bob.client, '<bye/>');
    await next(alice.client, 'callDisconnected', 'bye');
  });
});

describe('transfers and makeCall', () => {
  /** A connected call from `a` to `b`; the callee's callLeg. */
  async function connect(a: User, b: User, leg: string, port: number): Promise<string> {
    const inp = (await call(a, b, leg, port))!.attrs.callLeg!;
    await ok(b.client, `<callAccept callLeg="${inp}">${sdp(port + 1)}</callAccept>`);
    await next(b.client, 'callUpdated', inp);
    await next(a.client, 'callConnected', leg);
    await ok(a.client, `<callUpdateAccept callLeg="${leg}"/>`);
    return inp;
  }

  test('blind: the peer is connected to the target, which offers media; the transferor drops out', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    const bobLeg = await connect(alice, bob, 't1', 7000);
    await ok(alice.client, `<callTransfer callLeg="t1" peer="${carol.address}"/>`);
    const incoming = await next(carol.client, 'callIncoming');
    assert.equal(incoming.attrs.peer, bob.address, 'the target sees the transferred party');
    assert.equal(incoming.attrs.transferredBy, alice.address);
    assert.equal(media(incoming), undefined, 'the new call asks the target for an offer');
    await ok(carol.client, `<callAccept callLeg="${incoming.attrs.callLeg}">${sdp(7100)}</callAccept>`);
    const reoffer = await next(bob.client, 'callUpdateRequest', bobLeg);
    assert.equal(media(reoffer)?.port, 7100);
    await ok(bob.client, `<callUpdateAccept callLeg="${bobLeg}">${sdp(7002)}</callUpdateAccept>`);
    assert.equal(media(await next(carol.client, 'callUpdated', incoming.attrs.callLeg))?.port, 7002);
    const transferred = await next(bob.client, 'callTransferred', bobLeg);
    assert.equal(transferred.attrs.peer, carol.address);
    assert.equal((await next(alice.client, 'callDisconnected', 't1')).attrs.errorText, 'transferred');
    await ok(alice.client, `<callKill callLeg="t1"/>`);
    // Bob and Carol talk: DTMF passes, and a hang-up reaches the other.
    await ok(bob.client, `<callSendDTMF callLeg="${bobLeg}">7</callSendDTMF>`);
    assert.equal((await next(carol.client, 'callDTMF', incoming.attrs.callLeg)).text(), '7');
    await ok(carol.client, `<callKill callLeg="${incoming.attrs.callLeg}"/>`);
    await next(bob.client, 'callDisconnected', bobLeg);
  });

  test('blind to an address nobody answers at: callOpFailed, and the call goes on', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const bobLeg = await connect(alice, bob, 't2', 7200);
    await ok(alice.client, `<callTransfer callLeg="t2" peer="nosuchuser@example.test"/>`);
    const failed = await next(alice.client, 'callOpFailed', 't2');
    assert.equal(failed.attrs.signalCode, '404');
    await ok(alice.client, `<callSendDTMF callLeg="t2">1</callSendDTMF>`);
    assert.equal((await next(bob.client, 'callDTMF', bobLeg)).text(), '1');
    await ok(alice.client, `<callKill callLeg="t2"/>`);
    await next(bob.client, 'callDisconnected', bobLeg);
  });

  test('attended: the peers of two calls are connected to each other', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    const bobLeg = await connect(alice, bob, 'a1', 7300);
    const carolLeg = await connect(alice, carol, 'a2', 7400);
    await ok(alice.client, `<callTransfer callLeg="a1" otherLeg="a2" peer="ignored@example.test"/>`);
    await next(bob.client, 'callUpdateSolicited', bobLeg);
    await ok(bob.client, `<callUpdate callLeg="${bobLeg}">${sdp(7302)}</callUpdate>`);
    const offer = await next(carol.client, 'callUpdateRequest', carolLeg);
    assert.equal(media(offer)?.port, 7302);
    await ok(carol.client, `<callUpdateAccept callLeg="${carolLeg}">${sdp(7402)}</callUpdateAccept>`);
    assert.equal(media(await next(bob.client, 'callUpdated', bobLeg))?.port, 7402);
    assert.equal((await next(bob.client, 'callTransferred', bobLeg)).attrs.peer, carol.address);
    assert.equal((await next(carol.client, 'callTransferred', carolLeg)).attrs.peer, bob.address);
    await next(alice.client, 'callDisconnected', 'a1');
    await next(alice.client, 'callDisconnected', 'a2');
    await ok(bob.client, `<callKill callLeg="${bobLeg}"/>`);
    await next(carol.client, 'callDisconnected', carolLeg);
  });

  test('makeCall: another device of the account rings, then the peer, with reports to the session', async () => {
    const alice = await newUser();
    const desk = await anotherSession(alice);
    const bob = await newUser();
    await ok(alice.client, `<makeCall peer="${bob.address}"/>`);
    const self = await next(desk, 'callIncoming');
    assert.equal(self.attrs.peer, bob.address);
    await alice.client.nothingMore('callIncoming');
    await ok(desk, `<callAccept callLeg="${self.attrs.callLeg}">${sdp(7500)}</callAccept>`);
    const atBob = await next(bob.client, 'callIncoming');
    assert.equal(atBob.attrs.peer, alice.address);
    assert.equal(media(atBob)?.port, 7500);
    await ok(bob.client, `<callAccept callLeg="${atBob.attrs.callLeg}">${sdp(7600)}</callAccept>`);
    assert.equal(media(await next(desk, 'callUpdated', self.attrs.callLeg))?.port, 7600);
    const reports: string[] = [];
    for (;;) {
      const report = (await next(alice.client, 'makeCallReport')).text();
      if (report === '') break;
      reports.push(report);
    }
    assert.ok(reports.some((r) => r.startsWith('connected')), reports.join('; '));
    await ok(bob.client, `<callKill callLeg="${atBob.attrs.callLeg}"/>`);
    await next(desk, 'callDisconnected', self.attrs.callLeg);
  });

  test('makeCall when no device answers: the reports say so', async () => {
    const alice = await newUser();
    await ok(alice.client, `<makeCall peer="someone@example.test"/>`);
    const reports: string[] = [];
    for (;;) {
      const report = (await next(alice.client, 'makeCallReport')).text();
      if (report === '') break;
      reports.push(report);
    }
    assert.match(reports.at(-1)!, /^failed: .*no device/);
  });
});

describe('Signal Rules', () => {
  /** Sets a Signal Rule of the user's (SignalRulesAllowed=Any first). */
  async function signalRule(user: User, name: string, stage: string, conditions: [string, string, string][], actions: [string, string][]): Promise<void> {
    const account = await server.services.accounts.find(user.address);
    await server.services.accounts.setSettings(account!, { SignalRulesAllowed: 'Any' });
    const body = [
      ...conditions.map(([opCode, operator, parameter]) => `<condition opCode="${opCode}" operator="${operator}">${parameter}</condition>`),
      ...actions.map(([opCode, parameter]) => `<action opCode="${opCode}">${parameter}</action>`),
    ].join('');
    await ok(user.client, `<ruleSet type="signalIn" name="${name}" priority="5" stage="${stage}">${body}</ruleSet>`);
  }

  test('Immediately: Reject with a code for one caller; Fork to rings another user as well', async () => {
    const alice = await newUser();
    const mallory = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    await signalRule(bob, 'block', 'Immediately', [['From', 'is', mallory.address]], [['Reject with', '486 not for you']]);
    await signalRule(bob, 'assistant', 'Immediately', [['From', 'is not', mallory.address]], [['Fork to', carol.address]]);
    await call(mallory, bob.address, 'm1');
    const refused = await next(mallory.client, 'callDisconnected', 'm1');
    assert.equal(refused.attrs.signalCode, '486');
    assert.equal(refused.attrs.errorText, 'not for you');
    await bob.client.nothingMore('callIncoming');

    await call(alice, bob.address, 'f1', 4900);
    const atBob = await next(bob.client, 'callIncoming');
    const atCarol = await next(carol.client, 'callIncoming');
    assert.equal(atCarol.attrs.callId, atBob.attrs.callId);
    await ok(carol.client, `<callAccept callLeg="${atCarol.attrs.callLeg}">${sdp(4901)}</callAccept>`);
    assert.equal((await next(alice.client, 'callConnected', 'f1')).attrs.peer, carol.address);
    await next(bob.client, 'callDisconnected', atBob.attrs.callLeg);
    await ok(alice.client, '<callKill callLeg="f1"/>');
  });

  test('Error: with nobody bound, the call goes where the rule says; Busy: after 486 everywhere', async () => {
    const alice = await newUser();
    const bob = await newUser(false);
    const carol = await newUser();
    await signalRule(bob, 'unreachable', 'Error', [], [['Redirect to', carol.address]]);
    await call(alice, bob.address, 'e1');
    const atCarol = await next(carol.client, 'callIncoming');
    await ok(carol.client, `<callReject callLeg="${atCarol.attrs.callLeg}" signalCode="486"/>`);
    assert.equal((await next(alice.client, 'callDisconnected', 'e1')).attrs.signalCode, '486');

    const dave = await newUser();
    await signalRule(dave, 'busy', 'Busy', [], [['Redirect to', carol.address]]);
    const atDave = (await call(alice, dave, 'b1'))!;
    await ok(dave.client, `<callReject callLeg="${atDave.attrs.callLeg}" signalCode="486"/>`);
    const second = await next(carol.client, 'callIncoming');
    assert.equal(second.attrs.peer, alice.address);
    await ok(alice.client, '<callKill callLeg="b1"/>');
    await next(carol.client, 'callDisconnected', second.attrs.callLeg);
  });

  test('a delay stage: after N seconds of ringing the call also rings elsewhere; presence conditions', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    await signalRule(bob, 'after1s', '1', [['Pending Time', 'greater than', '0']], [['Fork to', carol.address]]);
    await signalRule(bob, 'offline', 'Immediately', [['Presence', 'is', 'offline']], [['Reject with', '480 offline']]);
    // Bob's session is bound but has not announced presence: "offline" for the rules.
    await call(alice, bob.address, 'd1');
    assert.equal((await next(alice.client, 'callDisconnected', 'd1')).attrs.signalCode, '480');
    await ok(bob.client, '<presenceSet><presence>online</presence></presenceSet>');
    await call(alice, bob.address, 'd2');
    const atBob = await next(bob.client, 'callIncoming');
    const atCarol = await next(carol.client, 'callIncoming');
    assert.equal(atCarol.attrs.callId, atBob.attrs.callId);
    await ok(bob.client, `<callAccept callLeg="${atBob.attrs.callLeg}">${sdp(4950)}</callAccept>`);
    await next(carol.client, 'callDisconnected', atCarol.attrs.callLeg);
    await ok(alice.client, '<callKill callLeg="d2"/>');
  });
});

describe('bad signaling requests', () => {
  test('are refused with a clear error and leave the session working', async () => {
    const alice = await newUser();
    const bob = await newUser();
    await fails(alice.client, `<callStart peer="${bob.address}"/>`, /callLeg/);
    await fails(alice.client, `<callStart callLeg="x1"/>`, /peer/);
    await fails(alice.client, `<callStart callLeg="inp9" peer="${bob.address}"/>`, /inp/);
    await fails(alice.client, `<callStart callLeg="x2" peer="${bob.address}"><sdpText>not sdp at all</sdpText></callStart>`, /SDP/);
    await fails(alice.client, `<callKill callLeg="nope"/>`, /unknown call/);
    await ok(alice.client, `<callStart callLeg="dup" peer="${bob.address}">${sdp(1)}</callStart>`);
    await fails(alice.client, `<callStart callLeg="dup" peer="${bob.address}">${sdp(1)}</callStart>`, /already/);
    await fails(alice.client, `<callAccept callLeg="dup">${sdp(1)}</callAccept>`, /incoming/);
    await fails(alice.client, `<callSendDTMF callLeg="dup">5</callSendDTMF>`, /not connected/);
    const inp = (await next(bob.client, 'callIncoming')).attrs.callLeg!;
    await fails(bob.client, `<callReject callLeg="${inp}" signalCode="200"/>`, /signalCode/);
    await fails(bob.client, `<callRedirect callLeg="${inp}"/>`, /To/);
    await ok(bob.client, `<callAccept callLeg="${inp}">${sdp(2)}</callAccept>`);
    await next(alice.client, 'callConnected', 'dup');
    await fails(alice.client, `<callSendDTMF callLeg="dup">99</callSendDTMF>`, /DTMF/);
    await fails(alice.client, `<callSendInfo callLeg="dup"/>`, /MIME/);
    await ok(alice.client, `<callUpdateAccept callLeg="dup"/>`);
    await fails(alice.client, `<callUpdateReject callLeg="dup"/>`, /nothing/);
    await ok(alice.client, `<callKill callLeg="dup"/>`);
    await ok(alice.client, '<noop/>');
  });
});
