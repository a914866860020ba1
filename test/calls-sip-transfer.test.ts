/**
 * Attended transfer and call replacement from SIP phones, on the wire: a phone played on UDP
 * sockets (test/fixtures/sip-phone.ts) with two calls through the server sends REFER with
 * Replaces (RFC 5589 7) and the peers of its two calls, XIMSS sessions, end up talking to each
 * other (src/transports/sip/b2bua.ts over the call engine's AttendedTransfer), or, when the target
 * refuses the media, the NOTIFY says so and both calls end; another device of
 * an account takes a call over with an INVITE with Replaces (RFC 3891), with or without an
 * offer; and the refusals: a Replaces naming no call of the device's (NOTIFY 481, the calls go
 * on), an unreadable one (400), early-only on an answered call (486), another account's call
 * (481), a call still ringing (501: taking it over is not done), a caller from elsewhere (403).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SipMessage } from '../src/transports/sip/message.js';
import type { XmlElement } from '../src/xml/element.js';
import { SipPhone, type PhoneDialog } from './fixtures/sip-phone.js';
import { freeSipPort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let sipPort: number;

before(async () => {
  sipPort = await freeSipPort();
  server = await startTestServer({ ports: { sip: sipPort } });
});
after(() => server?.stop());

interface User {
  address: string;
  client: XimssClient;
}

/** A new account with a session bound for calls. */
async function newUser(): Promise<User> {
  const address = await server.newAccount('party');
  const { client } = await server.login(address, 'secret');
  await ok(client, '<signalBind/>');
  return { address, client };
}

/** A new account with a phone registered to it. */
async function newPhone(name: string, register = true): Promise<SipPhone> {
  const address = await server.newAccount(name, { password: 'phone-secret' });
  const phone = await SipPhone.open(sipPort, address, 'phone-secret');
  if (register) await phone.register();
  return phone;
}

function sdpText(port: number): string {
  return ['v=0', `o=- ${port} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
}

const sdp = (port: number): string => `<sdpText>${sdpText(port)}</sdpText>`;

/** The media port of the SDP a XIMSS message or a SIP message carries. */
function portOf(message: XmlElement | SipMessage): number | undefined {
  if ('kind' in message || message.element('sdpText')) {
    const text = 'kind' in message ? message.body.toString() : message.element('sdpText')!.text();
    const port = /^m=audio (\d+)/m.exec(text)?.[1];
    return port === undefined ? undefined : Number(port);
  }
  // The XML presentation (a session bound without sdpText): <sdp><media ip="host:port">.
  const ip = message.element('sdp')?.element('media')?.attrs.ip;
  return ip === undefined ? undefined : Number(ip.slice(ip.lastIndexOf(':') + 1));
}

const next = (client: XimssClient, name: string, leg: string): Promise<XmlElement> => client.takeAsync(name, (m) => m.attrs.callLeg === leg, 10_000);

/** `user` calls the phone's account and the phone answers: the phone's dialog. */
async function callPhone(user: User, phone: SipPhone, leg: string, port: number): Promise<PhoneDialog> {
  await ok(user.client, `<callStart callLeg="${leg}" peer="${phone.aor}">${sdp(port)}</callStart>`);
  const { dialog } = await phone.answer(port + 1);
  const connected = await next(user.client, 'callConnected', leg);
  assert.equal(portOf(connected), port + 1);
  return dialog;
}

/** The phone calls `user`, who accepts: the phone's dialog and the session's callLeg. */
async function phoneCalls(phone: SipPhone, user: User, port: number): Promise<{ dialog: PhoneDialog; leg: string }> {
  const calling = phone.invite(`sip:${user.address}`, `<sip:${user.address}>`, port);
  const incoming = await user.client.takeAsync('callIncoming', () => true, 10_000);
  assert.equal(portOf(incoming), port);
  const leg = incoming.attrs.callLeg!;
  await ok(user.client, `<callAccept callLeg="${leg}">${sdp(port + 1)}</callAccept>`);
  const { response, dialog } = await calling;
  assert.equal(response.status, 200);
  assert.equal(portOf(response), port + 1);
  return { dialog: dialog!, leg };
}

/** The status line a NOTIFY's sipfrag holds. */
function sipfrag(notify: SipMessage): string {
  assert.match(notify.headers.get('Content-Type') ?? '', /^message\/sipfrag/i);
  assert.match(notify.headers.get('Event') ?? '', /^refer/i);
  return notify.body.toString().split('\r\n', 1)[0]!;
}

describe('REFER with Replaces from a phone (attended transfer, RFC 5589)', { timeout: 60_000 }, () => {
  test('the peers of the phone\'s two calls are joined; the phone gets 202, NOTIFY 100 and 200, and BYE on both dialogs', async () => {
    const phone = await newPhone('transferor');
    try {
      const alice = await newUser();
      const carol = await newUser();
      // Call 1: Alice calls the phone. Call 2: the phone calls Carol (the transfer target).
      const toAlice = await callPhone(alice, phone, 'a1', 7300);
      const { dialog: toCarol, leg: carolLeg } = await phoneCalls(phone, carol, 7400);

      const referTo = `<sip:${carol.address}?Replaces=${encodeURIComponent(SipPhone.replaces(toCarol))}>`;
      const cseq = phone.request(toAlice, 'REFER', [`Refer-To: ${referTo}`, `Referred-By: <sip:${phone.aor}>`]);
      assert.equal((await phone.final(toAlice.callId, cseq)).status, 202);
      assert.equal(sipfrag(await phone.nextRequest('NOTIFY', toAlice)), 'SIP/2.0 100 Trying');

      // The transferee is asked for an offer, which goes to the target; its answer comes back.
      await next(alice.client, 'callUpdateSolicited', 'a1');
      await ok(alice.client, `<callUpdate callLeg="a1">${sdp(7302)}</callUpdate>`);
      const offer = await next(carol.client, 'callUpdateRequest', carolLeg);
      assert.equal(portOf(offer), 7302, 'the target gets the transferee\'s offer');
      await ok(carol.client, `<callUpdateAccept callLeg="${carolLeg}">${sdp(7402)}</callUpdateAccept>`);
      assert.equal(portOf(await next(alice.client, 'callUpdated', 'a1')), 7402);
      assert.equal((await next(alice.client, 'callTransferred', 'a1')).attrs.peer, carol.address);
      assert.equal((await next(carol.client, 'callTransferred', carolLeg)).attrs.peer, alice.address);

      const done = await phone.nextRequest('NOTIFY', toAlice);
      assert.equal(sipfrag(done), 'SIP/2.0 200 OK');
      assert.match(done.headers.get('Subscription-State') ?? '', /^terminated/);
      await phone.nextRequest('BYE', toCarol);
      await phone.nextRequest('BYE', toAlice);

      // Alice and Carol talk: DTMF passes, and a hang-up reaches the other.
      await ok(alice.client, '<callSendDTMF callLeg="a1">5</callSendDTMF>');
      assert.equal((await next(carol.client, 'callDTMF', carolLeg)).text(), '5');
      await ok(alice.client, '<callKill callLeg="a1"/>');
      await next(carol.client, 'callDisconnected', carolLeg);
    } finally {
      phone.close();
    }
  });

  test('the target refuses the transferee\'s media: NOTIFY with its refusal, and both calls end', async () => {
    const phone = await newPhone('transferor');
    try {
      const alice = await newUser();
      const carol = await newUser();
      const toAlice = await callPhone(alice, phone, 'm1', 7500);
      const toCarol = await callPhone(carol, phone, 'm2', 7550);
      const cseq = phone.request(toAlice, 'REFER', [`Refer-To: <sip:${carol.address}?Replaces=${encodeURIComponent(SipPhone.replaces(toCarol))}>`]);
      assert.equal((await phone.final(toAlice.callId, cseq)).status, 202);
      assert.equal(sipfrag(await phone.nextRequest('NOTIFY', toAlice)), 'SIP/2.0 100 Trying');
      await next(alice.client, 'callUpdateSolicited', 'm1');
      await ok(alice.client, `<callUpdate callLeg="m1">${sdp(7502)}</callUpdate>`);
      await next(carol.client, 'callUpdateRequest', 'm2');
      await ok(carol.client, '<callUpdateReject callLeg="m2" signalCode="488"/>');
      assert.match(sipfrag(await phone.nextRequest('NOTIFY', toAlice)), /^SIP\/2\.0 488 /);
      await next(alice.client, 'callDisconnected', 'm1');
      await next(carol.client, 'callDisconnected', 'm2');
      await phone.nextRequest('BYE', toCarol);
      await phone.nextRequest('BYE', toAlice);
    } finally {
      phone.close();
    }
  });

  test('a Replaces naming no call of the phone\'s: 202 and NOTIFY 481, and both calls go on; an unreadable one: 400', async () => {
    const phone = await newPhone('transferor');
    const stranger = await newPhone('stranger');
    try {
      const alice = await newUser();
      const bob = await newUser();
      const toAlice = await callPhone(alice, phone, 'n1', 7600);
      // Another account's call is as unknown to this phone as a missing one.
      const strangers = await callPhone(bob, stranger, 'n2', 7700);

      for (const replaces of [`nosuchcall;to-tag=${toAlice.remoteTag};from-tag=${toAlice.localTag}`, SipPhone.replaces(strangers)]) {
        const cseq = phone.request(toAlice, 'REFER', [`Refer-To: <sip:${bob.address}?Replaces=${encodeURIComponent(replaces)}>`]);
        assert.equal((await phone.final(toAlice.callId, cseq)).status, 202);
        const notify = await phone.nextRequest('NOTIFY', toAlice);
        assert.match(sipfrag(notify), /^SIP\/2\.0 481 /);
        assert.match(notify.headers.get('Subscription-State') ?? '', /^terminated/);
      }
      // Without a to-tag, or naming the REFER's own dialog: the REFER is refused.
      for (const replaces of [`${toAlice.callId};from-tag=${toAlice.localTag}`, SipPhone.replaces(toAlice)]) {
        const cseq = phone.request(toAlice, 'REFER', [`Refer-To: <sip:${bob.address}?Replaces=${encodeURIComponent(replaces)}>`]);
        assert.equal((await phone.final(toAlice.callId, cseq)).status, 400);
      }
      await alice.client.nothingMore('callDisconnected');
      await alice.client.nothingMore('callUpdateSolicited');
      assert.equal(phone.has((m) => m.kind === 'request' && m.method === 'BYE'), false, 'the phone keeps its call');
      await ok(alice.client, '<callKill callLeg="n1"/>');
      await phone.nextRequest('BYE', toAlice);
      await ok(bob.client, '<callKill callLeg="n2"/>');
      await stranger.nextRequest('BYE', strangers);
    } finally {
      phone.close();
      stranger.close();
    }
  });
});

describe('INVITE with Replaces (RFC 3891)', { timeout: 60_000 }, () => {
  test('another device of the account takes over an answered call: the peer gets its offer, the old device BYE', async () => {
    const desk = await newPhone('owner');
    const alice = await newUser();
    // The same account's second device (not registered: it is not rung, it takes the call).
    const mobile = await SipPhone.open(sipPort, desk.aor, 'phone-secret');
    try {
      const old = await callPhone(alice, desk, 'r1', 7800);
      const taking = mobile.invite(old.remoteTarget, `<sip:${alice.address}>`, 7900, [`Replaces: ${SipPhone.replaces(old)}`, 'Require: replaces']);
      const update = await next(alice.client, 'callUpdateRequest', 'r1');
      assert.equal(portOf(update), 7900, 'the peer gets the new device\'s offer');
      await ok(alice.client, `<callUpdateAccept callLeg="r1">${sdp(7802)}</callUpdateAccept>`);
      const { response, dialog } = await taking;
      assert.equal(response.status, 200);
      assert.equal(portOf(response), 7802, 'the new device is answered with the peer\'s media');
      await desk.nextRequest('BYE', old);
      await alice.client.nothingMore('callDisconnected');
      // The call goes on with the new device: the peer's hang-up reaches it.
      await ok(alice.client, '<callKill callLeg="r1"/>');
      await mobile.nextRequest('BYE', dialog!);
    } finally {
      desk.close();
      mobile.close();
    }
  });

  test('without an offer: the peer is asked for one, and the answer in the ACK reaches it', async () => {
    const desk = await newPhone('owner');
    const alice = await newUser();
    const mobile = await SipPhone.open(sipPort, desk.aor, 'phone-secret');
    try {
      const old = await callPhone(alice, desk, 's1', 8000);
      const taking = mobile.invite(old.remoteTarget, `<sip:${alice.address}>`, undefined, [`Replaces: ${SipPhone.replaces(old)}`], mobile.sdp(8100));
      await next(alice.client, 'callUpdateSolicited', 's1');
      await ok(alice.client, `<callUpdate callLeg="s1">${sdp(8002)}</callUpdate>`);
      const { response, dialog } = await taking;
      assert.equal(response.status, 200);
      assert.equal(portOf(response), 8002, 'the 200 carries the peer\'s offer');
      assert.equal(portOf(await next(alice.client, 'callUpdated', 's1')), 8100, 'the ACK\'s answer reaches the peer');
      await desk.nextRequest('BYE', old);
      await ok(alice.client, '<callKill callLeg="s1"/>');
      await mobile.nextRequest('BYE', dialog!);
    } finally {
      desk.close();
      mobile.close();
    }
  });

  test('the peer refuses the new offer: the INVITE gets its refusal, and the old device keeps the call', async () => {
    const desk = await newPhone('owner');
    const alice = await newUser();
    const mobile = await SipPhone.open(sipPort, desk.aor, 'phone-secret');
    try {
      const old = await callPhone(alice, desk, 'q1', 8400);
      const taking = mobile.invite(old.remoteTarget, `<sip:${alice.address}>`, 8500, [`Replaces: ${SipPhone.replaces(old)}`]);
      await next(alice.client, 'callUpdateRequest', 'q1');
      await ok(alice.client, '<callUpdateReject callLeg="q1" signalCode="488" errorText="not that codec"/>');
      assert.equal((await taking).response.status, 488);
      // The call is the old device's again: the peer's next offer and its hang-up reach it.
      await ok(alice.client, `<callUpdate callLeg="q1">${sdp(8402)}</callUpdate>`);
      const reinvite = await desk.nextRequest('INVITE', old);
      assert.equal(portOf(reinvite), 8402);
      assert.equal(desk.has((m) => m.kind === 'request' && m.method === 'BYE'), false);
      await ok(alice.client, '<callKill callLeg="q1"/>');
      await desk.nextRequest('BYE', old);
    } finally {
      desk.close();
      mobile.close();
    }
  });

  test('refusals: a call still ringing 501, no such call 481, another account\'s call 481, unreadable or twice 400, early-only on an answered call 486, from elsewhere 403; the call goes on', async () => {
    const desk = await newPhone('owner');
    const alice = await newUser();
    const mobile = await SipPhone.open(sipPort, desk.aor, 'phone-secret');
    const other = await newPhone('other', false);
    const outsider = await SipPhone.open(sipPort, 'someone@elsewhere.invalid', 'x');
    try {
      // A call that still rings at the desk phone: taking it by Replaces is not done (501).
      await ok(alice.client, `<callStart callLeg="f1" peer="${desk.aor}">${sdp(8200)}</callStart>`);
      const ringing = await desk.ring();
      const early = await mobile.invite(ringing.dialog.remoteTarget, `<sip:${alice.address}>`, 8300, [`Replaces: ${SipPhone.replaces(ringing.dialog)}`]);
      assert.equal(early.response.status, 501);
      assert.match(early.response.reason, /still rings/);
      assert.equal((await mobile.invite(ringing.dialog.remoteTarget, `<sip:${alice.address}>`, 8300, [`Replaces: ${SipPhone.replaces(ringing.dialog, ';early-only')}`])).response.status, 501);
      await ringing.accept(8201);
      await next(alice.client, 'callConnected', 'f1');
      const old = ringing.dialog;
      const target = old.remoteTarget;
      const status = async (phone: SipPhone, headers: string[]): Promise<number> => (await phone.invite(target, `<sip:${alice.address}>`, 8300, headers)).response.status;
      assert.equal(await status(mobile, [`Replaces: nosuchcall;to-tag=${old.remoteTag};from-tag=${old.localTag}`]), 481);
      assert.equal(await status(mobile, [`Replaces: ${old.callId};to-tag=${old.localTag};from-tag=${old.remoteTag}`]), 481, 'the tags as the server matches them');
      assert.equal(await status(other, [`Replaces: ${SipPhone.replaces(old)}`]), 481, 'a call of another account is not found');
      assert.equal(await status(mobile, [`Replaces: ${old.callId}`]), 400);
      assert.equal(await status(mobile, [`Replaces: ${SipPhone.replaces(old)}`, `Replaces: ${SipPhone.replaces(old)}`]), 400);
      assert.equal(await status(mobile, [`Replaces: ${SipPhone.replaces(old, ';early-only')}`]), 486);
      assert.equal(await status(outsider, [`Replaces: ${SipPhone.replaces(old)}`]), 403);
      await alice.client.nothingMore('callUpdateRequest');
      assert.equal(desk.has((m) => m.kind === 'request' && m.method === 'BYE'), false, 'the old device keeps its call');
      await ok(alice.client, '<callKill callLeg="f1"/>');
      await desk.nextRequest('BYE', old);
    } finally {
      desk.close();
      mobile.close();
      other.close();
      outsider.close();
    }
  });
});
