/**
 * Rayo (XEP-0327) call control over a real XMPP connection (slixmpp, test/fixtures/xmpp-peer.ts):
 * a client of an account with RayoAllowed becomes a potential controlling party with presence to
 * the domain, is offered the account's calls, accepts, answers, rejects, redirects and hangs
 * them up, and dials out; the other party is a XIMSS session (plain RTP SDP), so both ends of
 * every signal are on the wire. The media end of a Rayo call is the server's MediaEndpoint.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { buildTelephoneEvent, eventOfDigit, goertzelCoefficient, goertzelEnergy } from '../src/media/dtmf.js';
import { decodeUlaw, encodeUlaw } from '../src/media/g711.js';
import { dtmfSequence } from '../src/media/tones.js';
import { encodeWav } from '../src/media/wav.js';
import { ensureDebianTool } from './fixtures/debian.js';
import { SipPhone } from './fixtures/sip-phone.js';
import { servePrompts, type PromptServer } from './fixtures/prompt-server.js';
import { parseNlsml } from '../src/media/nlsml.js';
import { writeRtpHeader } from '../src/media/rtp.js';
import type { XmlElement } from '../src/xml/element.js';
import { ensureSlixmpp, XmppPeer, type PresenceEvent } from './fixtures/xmpp-peer.js';
import { freePort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const slixmpp = await ensureSlixmpp().then(
  () => false as const,
  (err: unknown) => `slixmpp cannot be installed: ${String(err)}`,
);

const NS_RAYO = 'urn:xmpp:rayo:1';
const RAYO_CLIENT_CAPS = `<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="urn:xmpp:rayo:client:1" ver="QgayPKawpkPSDYmwT/WM94uAlu0="/>`;

let server: TestServer;
let port: number;
let sipPort: number;
let domain = 'example.test';
const peers: XmppPeer[] = [];

before(async () => {
  port = await freePort();
  sipPort = await freePort();
  // The prompts of these tests are served on 127.0.0.1: the operator's opt-in for internal addresses.
  server = await startTestServer({
    ports: { ximss: 0, http: 0, smtp: 0, xmpp: port, sip: sipPort },
    media: { promptFetch: 'any' },
    // The routing table: numbers and another domain's addresses that the "ivr" application takes.
    calls: { applicationRoutes: [{ address: 'tel:+1800*', account: 'ivr@example.test' }, { address: '*@ivr.example.net', account: 'ivr@example.test' }] },
  });
});
after(async () => {
  await Promise.all(peers.map((p) => p.close().catch(() => {})));
  await server.stop();
});

/** An account whose XMPP client controls calls (RayoAllowed=Yes unless `allowed` is false), connected and available. */
async function rayoClient(name: string, options: { allowed?: boolean; available?: boolean } = {}): Promise<{ jid: string; peer: XmppPeer }> {
  const jid = await server.newAccount(name);
  domain = jid.slice(jid.indexOf('@') + 1);
  if (options.allowed !== false) {
    const account = await server.services.accounts.find(jid);
    await server.services.accounts.setSettings(account!, { RayoAllowed: 'Yes' });
  }
  const peer = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port, resource: 'app' });
  peers.push(peer);
  if (options.available !== false) await available(peer);
  return { jid, peer };
}

/** XEP example 012: presence to the domain with <show>chat</show>. */
async function available(peer: XmppPeer, show = 'chat'): Promise<void> {
  await peer.raw(`<presence to="${domain}">${RAYO_CLIENT_CAPS}<show>${show}</show></presence>`);
  // The presence goes before anything the test sends next on the same stream; a ping makes sure it was read.
  await peer.ping();
}

async function ximssUser(name: string, bind = true): Promise<{ address: string; client: XimssClient }> {
  const address = await server.newAccount(name);
  const { client } = await server.login(address, 'secret');
  if (bind) await ok(client, '<signalBind/>');
  return { address, client };
}

function sdpText(rtpPort: number, options: { events?: boolean } = {}): string {
  const events = options.events !== false;
  return ['v=0', `o=- ${rtpPort} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${rtpPort} RTP/AVP 0 8${events ? ' 101' : ''}`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', ...(events ? ['a=rtpmap:101 telephone-event/8000'] : []), 'a=sendrecv', ''].join('\r\n');
}

/** Waits until `done` holds (checked every 50 ms), at most 10 s. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** The caller's RTP socket: counts loud PCMU frames, and frames where 1 kHz dominates. */
async function listener(): Promise<{ socket: Socket; loud: () => number; tone: () => number; close: () => void }> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  let loud = 0;
  let tone = 0;
  const k1000 = goertzelCoefficient(1000, 8000);
  const k600 = goertzelCoefficient(600, 8000);
  socket.on('message', (packet) => {
    if (packet.length < 12 + 160 || (packet[1]! & 0x7f) !== 0) return;
    const pcm = decodeUlaw(new Uint8Array(packet.subarray(12, 12 + 160)));
    let energy = 0;
    for (const v of pcm) energy += v * v;
    if (energy / pcm.length > 200 * 200) {
      loud++;
      if (goertzelEnergy(pcm, k1000) > 20 * goertzelEnergy(pcm, k600)) tone++;
    }
  });
  return { socket, loud: () => loud, tone: () => tone, close: () => socket.close() };
}


/** Sends `ms` of a 1 kHz tone (PCMU, 20 ms packets, paced) from `socket` to a media port. */
async function sendTone(socket: Socket, port: number, ms: number, ssrc = 0x4242): Promise<void> {
  const k = (2 * Math.PI * 1000) / 8000;
  for (let n = 0; n < ms / 20; n++) {
    const pcm = new Int16Array(160);
    for (let i = 0; i < 160; i++) pcm[i] = Math.round(8000 * Math.sin(k * (n * 160 + i)));
    const packet = Buffer.alloc(12 + 160);
    writeRtpHeader(packet, { payloadType: 0, sequence: n + 1, timestamp: (n + 1) * 160, ssrc });
    packet.set(encodeUlaw(pcm), 12);
    await new Promise<void>((resolve) => socket.send(packet, port, '127.0.0.1', () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const next = (client: XimssClient, name: string, leg?: string): Promise<XmlElement> => client.takeAsync(name, (m) => leg === undefined || m.attrs.callLeg === leg);

/** The presence of a call event (`offer`, `end`…) the peer got, and the call's JID. */
async function callEvent(peer: XmppPeer, event: string, from?: string): Promise<{ call: string; xml: string }> {
  const got = (await peer.waitFor(
    (e): e is PresenceEvent => e.event === 'presence' && (from === undefined ? (e.from ?? '').includes(`@call.`) : e.from === from) && new RegExp(`<${event}[\\s/>]`).test(e.xml) && e.xml.includes('urn:xmpp:rayo:'),
    { timeoutMs: 15_000 },
  )) as PresenceEvent;
  return { call: got.from!, xml: got.xml };
}

/** The SIP-like code of a callDisconnected (signalCode), or of an error. */
const codeOf = (message: XmlElement): string | undefined => message.attrs.signalCode ?? message.attrs.errorNum;

describe('Rayo over XMPP', { skip: slixmpp }, () => {
  it('offers a call to the available client, which answers it; the caller hangs up and the client gets end/hungup', async () => {
    const { jid, peer } = await rayoClient('rayo-answer');
    const caller = await ximssUser('rayo-caller1');
    await ok(caller.client, `<callStart callLeg="c1" peer="${jid}"><sdpText>${sdpText(40_000)}</sdpText></callStart>`);
    const offer = await callEvent(peer, 'offer');
    // <id>~<node>@call.<domain>: the id names the node that holds the call (XEP-0349 forwarding).
    assert.match(offer.call, new RegExp(`^[a-z0-9]+~[0-9]+@call\\.${domain.replace(/\./g, '\\.')}$`));
    assert.match(offer.xml, /node="urn:xmpp:rayo:call:1"/, 'the offer carries the call caps');
    assert.match(offer.xml, new RegExp(`to="sip:${jid}"`));
    assert.match(offer.xml, new RegExp(`from="sip:${caller.address}"`));

    const answered = await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(answered.type, 'result', answered.xml);
    const connected = await next(caller.client, 'callConnected', 'c1');
    const answer = connected.element('sdp')?.element('media');
    assert.equal(answer?.attrs.protocol, 'RTP/AVP', 'the media endpoint answers plain RTP');
    assert.match(answer?.attrs.ip ?? '', /^\[127\.0\.0\.1\]:[1-9]\d*$/, 'on a port of its own');
    assert.deepEqual(answer?.elements('codec').map((c) => c.attrs.name), ['PCMU/8000', 'telephone-event/8000'], 'PCMU, the first G.711 the caller offered, and telephone-event');

    await ok(caller.client, '<callKill callLeg="c1"/>');
    const end = await callEvent(peer, 'end', offer.call);
    assert.match(end.xml, /<hungup\s*\/>/);
    assert.match(end.xml, /type="unavailable"/);
    // The call is gone: a command for it is item-not-found (XEP example 088).
    const late = await peer.iq(`<iq type="set" to="${offer.call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(late.condition, 'item-not-found');
  });

  it('accept rings the caller; reject busy refuses it with 486; the first to accept controls the call', async () => {
    const { jid, peer } = await rayoClient('rayo-accept');
    const second = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port, resource: 'second' });
    peers.push(second);
    await available(second);
    const caller = await ximssUser('rayo-caller2');
    await ok(caller.client, `<callStart callLeg="c2" peer="${jid}"><sdpText>${sdpText(40_002)}</sdpText></callStart>`);
    const offer = await callEvent(peer, 'offer');
    const offer2 = await callEvent(second, 'offer');
    assert.equal(offer2.call, offer.call, 'both potential controlling parties are offered the same call');

    assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><accept xmlns="${NS_RAYO}"/></iq>`)).type, 'result');
    await next(caller.client, 'callProvisioned', 'c2');
    // The other client was told the call is not its own any more, and may not act on it.
    await callEvent(second, 'end', offer.call);
    const taken = await second.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(taken.condition, 'conflict', taken.xml);

    assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><reject xmlns="${NS_RAYO}"><busy/></reject></iq>`)).type, 'result');
    const gone = await next(caller.client, 'callDisconnected', 'c2');
    assert.equal(codeOf(gone), '486');
    const end = await callEvent(peer, 'end', offer.call);
    assert.match(end.xml, /<rejected[\s/>]/);
    await available(second, 'dnd');
  });

  it('redirect sends the caller to another account', async () => {
    const { jid, peer } = await rayoClient('rayo-redirect');
    const caller = await ximssUser('rayo-caller3');
    const target = await ximssUser('rayo-target3');
    await ok(caller.client, `<callStart callLeg="c3" peer="${jid}"><sdpText>${sdpText(40_004)}</sdpText></callStart>`);
    const offer = await callEvent(peer, 'offer');
    const redirected = await peer.iq(`<iq type="set" to="${offer.call}"><redirect xmlns="${NS_RAYO}" to="sip:${target.address}"/></iq>`);
    assert.equal(redirected.type, 'result', redirected.xml);
    const incoming = await next(target.client, 'callIncoming');
    assert.equal(incoming.attrs.peer?.replace(/^sip:/, ''), caller.address);
    await ok(target.client, `<callReject callLeg="${incoming.attrs.callLeg}" signalCode="603"/>`);
    await next(caller.client, 'callDisconnected', 'c3');
  });

  it('dials a XIMSS session: ref, ringing, answered; hangup ends it with hangup-command', async () => {
    const { peer } = await rayoClient('rayo-dial');
    const callee = await ximssUser('rayo-callee4');
    const dialed = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${callee.address}" from="sip:app@${domain}"/></iq>`);
    assert.equal(dialed.type, 'result', dialed.xml);
    const ref = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(dialed.xml);
    assert.ok(ref, `a ref with the call's URI: ${dialed.xml}`);
    const call = ref[1]!;
    const incoming = await next(callee.client, 'callIncoming');
    const leg = incoming.attrs.callLeg!;
    assert.equal(incoming.element('sdp')?.element('media')?.attrs.protocol, 'RTP/AVP', 'the media endpoint offers plain RTP');
    await ok(callee.client, `<callProvision callLeg="${leg}"/>`);
    await callEvent(peer, 'ringing', call);
    await ok(callee.client, `<callAccept callLeg="${leg}"><sdpText>${sdpText(40_006)}</sdpText></callAccept>`);
    await callEvent(peer, 'answered', call);
    assert.equal((await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`)).type, 'result');
    await next(callee.client, 'callDisconnected', leg);
    const end = await callEvent(peer, 'end', call);
    assert.match(end.xml, /<hangup-command\s*\/>/);
  });

  it('a dial the callee refuses ends with busy; one to nobody ends with an error reason', async () => {
    const { peer } = await rayoClient('rayo-busy');
    const callee = await ximssUser('rayo-callee5');
    const dialed = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${callee.address}"/></iq>`);
    const call = /uri="xmpp:([^"]+)"/.exec(dialed.xml)![1]!;
    const incoming = await next(callee.client, 'callIncoming');
    await ok(callee.client, `<callReject callLeg="${incoming.attrs.callLeg}" signalCode="486"/>`);
    assert.match((await callEvent(peer, 'end', call)).xml, /<busy[\s/>]/);

    const nowhere = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:nobody-here@${domain}"/></iq>`);
    const lost = /uri="xmpp:([^"]+)"/.exec(nowhere.xml)![1]!;
    assert.match((await callEvent(peer, 'end', lost)).xml, /<(error|timeout|rejected)[\s/>]/);
  });

  it('is not offered calls of an account that has a device of its own', async () => {
    const { jid, peer } = await rayoClient('rayo-device');
    const own = await server.login(jid, 'secret');
    await ok(own.client, '<signalBind/>');
    const caller = await ximssUser('rayo-caller6');
    await ok(caller.client, `<callStart callLeg="c6" peer="${jid}"><sdpText>${sdpText(40_008)}</sdpText></callStart>`);
    const incoming = await next(own.client, 'callIncoming');
    // The bound session rang; after it refuses, the caller is told and no offer ever reached the Rayo client.
    await ok(own.client, `<callReject callLeg="${incoming.attrs.callLeg}" signalCode="486"/>`);
    await next(caller.client, 'callDisconnected', 'c6');
    assert.equal(await peer.ping().then((a) => a.type), 'result');
    assert.equal(peer.events.filter((e) => e.event === 'presence' && e.xml.includes('<offer')).length, 0, 'no offer was sent');
  });

  it('Signal Rules route calls to the Rayo clients with Redirect to #rayo, even with a device bound', async () => {
    const { jid, peer } = await rayoClient('rayo-rules');
    const own = await server.login(jid, 'secret');
    await ok(own.client, '<signalBind/>');
    const account = await server.services.accounts.find(jid);
    await server.services.accounts.setSettings(account!, { SignalRulesAllowed: 'Any' });
    await ok(own.client, `<ruleSet type="signalIn" name="to the app" priority="5" stage="Immediately"><action opCode="Redirect to">#rayo</action></ruleSet>`);
    const caller = await ximssUser('rayo-rules-caller');
    await ok(caller.client, `<callStart callLeg="r1" peer="${jid}"><sdpText>${sdpText(40_060)}</sdpText></callStart>`);
    const offer = await callEvent(peer, 'offer');
    assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`)).type, 'result');
    await next(caller.client, 'callConnected', 'r1');
    await own.client.nothingMore('callIncoming');
    await peer.iq(`<iq type="set" to="${offer.call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    await next(caller.client, 'callDisconnected', 'r1');
  });

  it('the routing table sends numbers and another domain\'s addresses to an account\'s Rayo clients', async () => {
    await server.addAccount('ivr@example.test', 'secret');
    const account = await server.services.accounts.find('ivr@example.test');
    await server.services.accounts.setSettings(account!, { RayoAllowed: 'Yes' });
    const peer = await XmppPeer.connect({ jid: 'ivr@example.test', password: 'secret', host: '127.0.0.1', port, resource: 'app' });
    peers.push(peer);
    await available(peer);
    const caller = await ximssUser('rayo-routed');
    for (const [leg, peerAddress] of [['n1', '+18005551212'], ['n2', 'support@ivr.example.net']] as const) {
      await ok(caller.client, `<callStart callLeg="${leg}" peer="${peerAddress}"><sdpText>${sdpText(40_070)}</sdpText></callStart>`);
      const offer = await callEvent(peer, 'offer');
      assert.match(offer.xml, leg === 'n1' ? /to="tel:\+18005551212"/ : /to="sip:support@ivr\.example\.net"/, offer.xml);
      await peer.iq(`<iq type="set" to="${offer.call}"><reject xmlns="${NS_RAYO}"><decline/></reject></iq>`);
      assert.equal(codeOf(await next(caller.client, 'callDisconnected', leg)), '603');
    }
    // With the application gone, a routed number has nobody to ring.
    await available(peer, 'dnd');
    await ok(caller.client, `<callStart callLeg="n3" peer="+18005550000"><sdpText>${sdpText(40_072)}</sdpText></callStart>`);
    assert.equal(codeOf(await next(caller.client, 'callDisconnected', 'n3')), '480');
  });

  it('answers errors as the XEP says: forbidden without RayoAllowed, bad-request, item-not-found, feature-not-implemented; disco', async () => {
    const { peer: denied } = await rayoClient('rayo-denied', { allowed: false });
    const forbidden = await denied.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:someone@${domain}"/></iq>`);
    assert.equal(forbidden.condition, 'forbidden', forbidden.xml);

    const { jid, peer } = await rayoClient('rayo-errors');
    const malformed = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="foo:bar"/></iq>`);
    assert.equal(malformed.condition, 'bad-request', malformed.xml);
    const noTo = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(noTo.condition, 'bad-request', noTo.xml);
    const unknown = await peer.iq(`<iq type="set" to="nosuchcall@call.${domain}"><answer xmlns="${NS_RAYO}"/></iq>`);
    assert.equal(unknown.condition, 'item-not-found', unknown.xml);
    const mixer = await peer.iq(`<iq type="set" to="nosuchroom@mixer.${domain}"><output xmlns="urn:xmpp:rayo:output:1"><document content-type="text/plain">hi</document></output></iq>`);
    assert.equal(mixer.condition, 'item-not-found', mixer.xml);
    const disco = await peer.iq(`<iq type="get" to="call.${domain}"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`);
    assert.equal(disco.type, 'result');
    assert.match(disco.xml, /var="urn:xmpp:rayo:1"/);

    // What a component on a live call cannot do: honestly said (a recording format other than wav).
    const caller = await ximssUser('rayo-caller7');
    await ok(caller.client, `<callStart callLeg="c7" peer="${jid}"><sdpText>${sdpText(40_010)}</sdpText></callStart>`);
    const offer = await callEvent(peer, 'offer');
    await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`);
    const record = await peer.iq(`<iq type="set" to="${offer.call}"><record xmlns="urn:xmpp:rayo:record:1" format="mp3"/></iq>`);
    assert.equal(record.condition, 'feature-not-implemented', record.xml);
    // A client that goes away ends the calls it controls.
    await peer.raw(`<presence to="${domain}" type="unavailable"/>`);
    await next(caller.client, 'callDisconnected', 'c7');
  });

  describe('the input component (DTMF against SRGS grammars, results in NLSML)', () => {
    const PIN_GRAMMAR = /<!\[CDATA\[([\s\S]*?)\]\]>/.exec(readFileSync(new URL('../../shared/spec/rayo-examples/071-client-requests-dtmf-input-collection-from-a-call.xml', import.meta.url), 'utf8'))![1]!;
    const input = (attrs: string, grammar: string): string =>
      `<input xmlns="urn:xmpp:rayo:input:1" mode="dtmf" ${attrs}>${grammar}</input>`;
    const inline = (body: string): string => `<grammar content-type="application/srgs+xml"><![CDATA[${body}]]></grammar>`;

    /** An answered call from a XIMSS session to the Rayo client; `rtp` is where the caller's media socket is. */
    async function answeredCall(name: string, rtp?: Socket, events = true): Promise<{ peer: XmppPeer; call: string; caller: { address: string; client: XimssClient }; leg: string; endpointPort: number }> {
      const { jid, peer } = await rayoClient(name);
      const caller = await ximssUser(`${name}-caller`);
      const leg = 'in1';
      await ok(caller.client, `<callStart callLeg="${leg}" peer="${jid}"><sdpText>${sdpText(rtp ? rtp.address().port : 40_020, { events })}</sdpText></callStart>`);
      const offer = await callEvent(peer, 'offer');
      assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`)).type, 'result');
      const connected = await next(caller.client, 'callConnected', leg);
      const ip = connected.element('sdp')?.element('media')?.attrs.ip ?? '';
      return { peer, call: offer.call, caller, leg, endpointPort: Number(ip.slice(ip.lastIndexOf(':') + 1)) };
    }

    async function start(peer: XmppPeer, call: string, xml: string): Promise<string> {
      const started = await peer.iq(`<iq type="set" to="${call}">${xml}</iq>`);
      assert.equal(started.type, 'result', started.xml);
      const ref = /<ref [^>]*uri="xmpp:([^"]+)"/.exec(started.xml);
      assert.ok(ref, started.xml);
      assert.ok(ref[1]!.startsWith(`${call}/`), 'the component is addressed as <call>/<id>');
      return ref[1]!;
    }

    /** The reason element of a component's complete, and its CDATA/text. */
    async function completion(peer: XmppPeer, component: string): Promise<{ reason: string; content: string; xml: string }> {
      const got = await callEvent(peer, 'complete', component);
      const reason = /<complete[^>]*>\s*<([a-z-]+)/.exec(got.xml)?.[1] ?? '';
      const content = /<match[^>]*>([\s\S]*?)<\/match>/.exec(got.xml)?.[1] ?? '';
      const unescaped = content.replace(/<!\[CDATA\[|\]\]>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
      return { reason, content: unescaped, xml: got.xml };
    }

    it('matches keys the caller signals (callSendDTMF) against the grammar of XEP example 071', async () => {
      const { peer, call, caller, leg } = await answeredCall('rayo-in1');
      const component = await start(peer, call, input('', inline(PIN_GRAMMAR)));
      // callSendDTMF carries one key, as its RFC 4733 code (10 is *, 11 is #).
      for (const code of [1, 2, 3, 4, 11]) await ok(caller.client, `<callSendDTMF callLeg="${leg}">${code}</callSendDTMF>`);
      const done = await completion(peer, component);
      assert.equal(done.reason, 'match', done.xml);
      const nlsml = parseNlsml(done.content);
      assert.equal(nlsml.interpretations[0]?.input?.text.replace(/\s+/g, ''), '1234#');
      // "* 9" is the other sentence; "5" then "*" starts none: nomatch.
      const second = await start(peer, call, input('', inline(PIN_GRAMMAR)));
      for (const code of [10, 5]) await ok(caller.client, `<callSendDTMF callLeg="${leg}">${code}</callSendDTMF>`);
      assert.equal((await completion(peer, second)).reason, 'nomatch');
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    });

    it('hears RFC 4733 events in the call\'s RTP: a builtin digits grammar and a terminator', async () => {
      const rtp = createSocket('udp4');
      await new Promise<void>((resolve) => rtp.bind(0, '127.0.0.1', resolve));
      try {
        const { peer, call, endpointPort } = await answeredCall('rayo-in2', rtp);
        const component = await start(peer, call, input('terminator="#" inter-digit-timeout="5000"', '<grammar url="builtin:dtmf/digits?minlength=2;maxlength=6"/>'));
        // Telephone-events as a phone sends them (payload type 101, as the caller offered): each key
        // a few packets of growing duration, then its end packet three times.
        let sequence = 1;
        let timestamp = 8000;
        const send = (payload: Uint8Array): Promise<void> => {
          const packet = Buffer.alloc(12 + payload.length);
          writeRtpHeader(packet, { payloadType: 101, sequence: sequence++, timestamp, ssrc: 0x1234 });
          packet.set(payload, 12);
          return new Promise((resolve) => rtp.send(packet, endpointPort, '127.0.0.1', () => resolve()));
        };
        const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
        for (const key of '905#') {
          const event = eventOfDigit(key)!;
          for (let tick = 1; tick <= 3; tick++) {
            await send(buildTelephoneEvent({ event, end: false, volume: 10, duration: tick * 160 }));
            await pause(20);
          }
          for (let i = 0; i < 3; i++) await send(buildTelephoneEvent({ event, end: true, volume: 10, duration: 640 }));
          timestamp += 1600;
          await pause(60);
        }
        const done = await completion(peer, component);
        assert.equal(done.reason, 'match', done.xml);
        const nlsml = parseNlsml(done.content);
        assert.equal(nlsml.interpretations[0]?.input?.text.replace(/\s+/g, ''), '905', 'the terminator ends the input and is not part of it');
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      } finally {
        rtp.close();
      }
    });

    it('hears in-band tones from a party that did not take telephone-events', async () => {
      const rtp = createSocket('udp4');
      await new Promise<void>((resolve) => rtp.bind(0, '127.0.0.1', resolve));
      try {
        const { peer, call, endpointPort } = await answeredCall('rayo-in5', rtp, false);
        const component = await start(peer, call, input('', '<grammar url="builtin:dtmf/digits?length=3"/>'));
        // 20 ms PCMU packets of the tones, as a phone sends them in its audio.
        const audio = dtmfSequence('357', { gapMs: 80 });
        const pcmu = encodeUlaw(audio);
        for (let i = 0, sequence = 1; i + 160 <= pcmu.length; i += 160, sequence++) {
          const packet = Buffer.alloc(12 + 160);
          writeRtpHeader(packet, { payloadType: 0, sequence, timestamp: sequence * 160, ssrc: 0x5678 });
          packet.set(pcmu.subarray(i, i + 160), 12);
          await new Promise<void>((resolve) => rtp.send(packet, endpointPort, '127.0.0.1', () => resolve()));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const done = await completion(peer, component);
        assert.equal(done.reason, 'match', done.xml);
        assert.equal(parseNlsml(done.content).interpretations[0]?.input?.text.replace(/\s+/g, ''), '357');
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      } finally {
        rtp.close();
      }
    });

    it('completes with noinput after the initial timeout, stop on command, hangup when the call ends', async () => {
      const { peer, call, caller, leg } = await answeredCall('rayo-in3');
      const quiet = await start(peer, call, input('initial-timeout="200"', '<grammar url="builtin:dtmf/digits?length=4"/>'));
      assert.equal((await completion(peer, quiet)).reason, 'noinput');

      const stopped = await start(peer, call, input('', '<grammar url="builtin:dtmf/digits?length=4"/>'));
      assert.equal((await peer.iq(`<iq type="set" to="${stopped}"><stop xmlns="urn:xmpp:rayo:ext:1"/></iq>`)).type, 'result');
      assert.equal((await completion(peer, stopped)).reason, 'stop');
      const again = await peer.iq(`<iq type="set" to="${stopped}"><stop xmlns="urn:xmpp:rayo:ext:1"/></iq>`);
      assert.equal(again.condition, 'item-not-found', 'a completed component is gone');

      const cut = await start(peer, call, input('', '<grammar url="builtin:dtmf/digits?length=4"/>'));
      await ok(caller.client, `<callKill callLeg="${leg}"/>`);
      assert.equal((await completion(peer, cut)).reason, 'hangup');
      assert.match((await callEvent(peer, 'end', call)).xml, /<hungup/);
    });

    it('refuses what it cannot do when the component starts: a bad grammar, voice, no grammar, a call not answered', async () => {
      const { peer, call } = await answeredCall('rayo-in4');
      const broken = await peer.iq(`<iq type="set" to="${call}">${input('', inline('<grammar mode="dtmf" version="1.0" xmlns="http://www.w3.org/2001/06/grammar"><rule id="r" scope="public">1 x 2</rule></grammar>'))}</iq>`);
      assert.equal(broken.condition, 'bad-request', broken.xml);
      const voice = await peer.iq(`<iq type="set" to="${call}"><input xmlns="urn:xmpp:rayo:input:1" mode="voice"><grammar url="builtin:dtmf/digits"/></input></iq>`);
      assert.equal(voice.condition, 'feature-not-implemented', voice.xml);
      const none = await peer.iq(`<iq type="set" to="${call}"><input xmlns="urn:xmpp:rayo:input:1" mode="dtmf"/></iq>`);
      assert.equal(none.condition, 'bad-request', none.xml);
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);

      const caller = await ximssUser('rayo-in4b');
      const { jid: other, peer: second } = await rayoClient('rayo-in4c');
      await ok(caller.client, `<callStart callLeg="x" peer="${other}"><sdpText>${sdpText(40_030)}</sdpText></callStart>`);
      const offer = await callEvent(second, 'offer');
      const early = await second.iq(`<iq type="set" to="${offer.call}">${input('', '<grammar url="builtin:dtmf/digits"/>')}</iq>`);
      assert.equal(early.condition, 'unexpected-request', early.xml);
    });
  });

  describe('the output and prompt components (played into the call\'s RTP)', () => {
    let prompts: PromptServer;
    let httpBase: string;
    before(async () => {
      await ensureDebianTool('/usr/bin/espeak-ng', 'espeak-ng');
      // A WAV prompt served over HTTP: 2 s of 1 kHz at 16 kHz (resampled to 8 kHz by the server).
      prompts = await servePrompts({ 'tone.wav': encodeWav(sine16k(2000), { sampleRate: 16_000 }) });
      httpBase = prompts.base;
    });
    after(() => prompts.close());

    /** A 1 kHz sine at 16 kHz. */
    function sine16k(ms: number): Int16Array {
      const samples = new Int16Array(16 * ms);
      for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 1000 * i) / 16_000));
      return samples;
    }

    async function answeredWith(name: string, rtp: Socket): Promise<{ peer: XmppPeer; call: string; caller: { address: string; client: XimssClient } }> {
      const { jid, peer } = await rayoClient(name);
      const caller = await ximssUser(`${name}-caller`);
      await ok(caller.client, `<callStart callLeg="o1" peer="${jid}"><sdpText>${sdpText(rtp.address().port)}</sdpText></callStart>`);
      const offer = await callEvent(peer, 'offer');
      assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`)).type, 'result');
      await next(caller.client, 'callConnected', 'o1');
      return { peer, call: offer.call, caller };
    }

    async function startComponent(peer: XmppPeer, call: string, xml: string): Promise<string> {
      const started = await peer.iq(`<iq type="set" to="${call}">${xml}</iq>`);
      assert.equal(started.type, 'result', started.xml);
      return /<ref [^>]*uri="xmpp:([^"]+)"/.exec(started.xml)![1]!;
    }

    const reasonOf = async (peer: XmppPeer, component: string): Promise<string> => /<complete[^>]*>\s*<([a-z-]+)/.exec((await callEvent(peer, 'complete', component)).xml)?.[1] ?? '';

    it('speaks a text document through espeak-ng into the call and completes with finish', async () => {
      const rtp = await listener();
      try {
        const { peer, call } = await answeredWith('rayo-out1', rtp.socket);
        const component = await startComponent(peer, call, `<output xmlns="urn:xmpp:rayo:output:1" voice="en"><document content-type="text/plain"><![CDATA[You have no new messages. Goodbye!]]></document></output>`);
        assert.equal(await reasonOf(peer, component), 'finish');
        assert.ok(rtp.loud() > 25, `speech reached the caller's RTP (${rtp.loud()} loud frames)`);
        // SSML (XEP example 061) is spoken as well.
        const before = rtp.loud();
        const ssml = await startComponent(peer, call, `<output xmlns="urn:xmpp:rayo:output:1"><document content-type="application/ssml+xml"><![CDATA[<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US"><p><s>Please enter your pin.</s></p></speak>]]></document></output>`);
        assert.equal(await reasonOf(peer, ssml), 'finish');
        assert.ok(rtp.loud() > before + 15);
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      } finally {
        rtp.close();
      }
    });

    it('plays a WAV fetched over HTTP; pause, resume, volume, speed and seek are taken; stop completes it', async () => {
      const rtp = await listener();
      try {
        const { peer, call } = await answeredWith('rayo-out2', rtp.socket);
        const component = await startComponent(peer, call, `<output xmlns="urn:xmpp:rayo:output:1" repeat-times="0"><document url="${httpBase}/tone.wav"/></output>`);
        for (const command of ['pause', 'resume', 'volume-down', 'volume-up', 'speed-up', 'speed-down']) {
          const answer = await peer.iq(`<iq type="set" to="${component}"><${command} xmlns="urn:xmpp:rayo:output:1"/></iq>`);
          assert.equal(answer.type, 'result', `${command}: ${answer.xml}`);
        }
        const seek = await peer.iq(`<iq type="set" to="${component}"><seek xmlns="urn:xmpp:rayo:output:1" direction="forward" amount="500"/></iq>`);
        assert.equal(seek.type, 'result', seek.xml);
        await until(() => rtp.tone() > 20);
        assert.ok(rtp.tone() > 20, `the 1 kHz tone reached the caller (${rtp.tone()} frames)`);
        assert.equal((await peer.iq(`<iq type="set" to="${component}"><stop xmlns="urn:xmpp:rayo:ext:1"/></iq>`)).type, 'result');
        assert.equal(await reasonOf(peer, component), 'stop');

        const limited = await startComponent(peer, call, `<output xmlns="urn:xmpp:rayo:output:1" repeat-times="0" max-time="300"><document url="${httpBase}/tone.wav"/></output>`);
        assert.equal(await reasonOf(peer, limited), 'max-time');

        const missing = await peer.iq(`<iq type="set" to="${call}"><output xmlns="urn:xmpp:rayo:output:1"><document url="${httpBase}/nothing.wav"/></output></iq>`);
        assert.equal(missing.condition, 'bad-request', missing.xml);
        const local = await peer.iq(`<iq type="set" to="${call}"><output xmlns="urn:xmpp:rayo:output:1"><document url="file:///etc/passwd"/></output></iq>`);
        assert.equal(local.condition, 'bad-request', local.xml);
        const badSsml = await peer.iq(`<iq type="set" to="${call}"><output xmlns="urn:xmpp:rayo:output:1"><document content-type="application/ssml+xml"><![CDATA[<speak><p>unclosed</speak>]]></document></output></iq>`);
        assert.equal(badSsml.condition, 'bad-request', badSsml.xml);
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      } finally {
        rtp.close();
      }
    });

    it('prompt: a key barges in on the output and the input completes with the match; input-timers-started after a short output', async () => {
      const rtp = await listener();
      try {
        const { peer, call, caller } = await answeredWith('rayo-prompt', rtp.socket);
        const prompt = await startComponent(
          peer,
          call,
          `<prompt xmlns="urn:xmpp:rayo:prompt:1" barge-in="true"><output xmlns="urn:xmpp:rayo:output:1" repeat-times="0"><document url="${httpBase}/tone.wav"/></output><input xmlns="urn:xmpp:rayo:input:1" mode="dtmf"><grammar url="builtin:dtmf/digits?length=2"/></input></prompt>`,
        );
        for (const code of [4, 2]) await ok(caller.client, `<callSendDTMF callLeg="o1">${code}</callSendDTMF>`);
        const done = await callEvent(peer, 'complete', prompt);
        assert.match(done.xml, /<match[\s>]/, done.xml);
        assert.match(done.xml, /4 2/);

        const short = await startComponent(
          peer,
          call,
          `<prompt xmlns="urn:xmpp:rayo:prompt:1"><output xmlns="urn:xmpp:rayo:output:1" max-time="200"><document url="${httpBase}/tone.wav"/></output><input xmlns="urn:xmpp:rayo:input:1" mode="dtmf" initial-timeout="300"><grammar url="builtin:dtmf/digits?length=2"/></input></prompt>`,
        );
        await callEvent(peer, 'input-timers-started', short);
        assert.equal(await reasonOf(peer, short), 'noinput');
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      } finally {
        rtp.close();
      }
    });
  });

  describe('joins and mixers (calls mixed at the server)', () => {
    /** An answered call to the Rayo client from a XIMSS caller whose media is `rtp`; the endpoint's port. */
    async function answered(peer: XmppPeer, jid: string, name: string, rtp: Socket): Promise<{ call: string; port: number; caller: XimssClient }> {
      const caller = await ximssUser(name);
      await ok(caller.client, `<callStart callLeg="j" peer="${jid}"><sdpText>${sdpText(rtp.address().port)}</sdpText></callStart>`);
      const offer = await callEvent(peer, 'offer');
      assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`)).type, 'result');
      const connected = await next(caller.client, 'callConnected', 'j');
      const ip = connected.element('sdp')?.element('media')?.attrs.ip ?? '';
      return { call: offer.call, port: Number(ip.slice(ip.lastIndexOf(':') + 1)), caller: caller.client };
    }

    it('joins two calls: each hears the other; unjoin parts them; the XEP\'s join errors', async () => {
      const { jid, peer } = await rayoClient('rayo-join');
      const [ra, rb] = [await listener(), await listener()];
      try {
        const a = await answered(peer, jid, 'rayo-join-a', ra.socket);
        const b = await answered(peer, jid, 'rayo-join-b', rb.socket);
        const joined = await peer.iq(`<iq type="set" to="${a.call}"><join xmlns="${NS_RAYO}" call-uri="xmpp:${b.call}"/></iq>`);
        assert.equal(joined.type, 'result', joined.xml);
        assert.match((await callEvent(peer, 'joined', a.call)).xml, new RegExp(`call-uri="xmpp:${b.call}"`));
        assert.match((await callEvent(peer, 'joined', b.call)).xml, new RegExp(`call-uri="xmpp:${a.call}"`));
        const before = rb.tone();
        await sendTone(ra.socket, a.port, 1000);
        await until(() => rb.tone() > before + 15);
        assert.ok(rb.tone() > before + 15, `B heard A's tone (${rb.tone() - before} frames)`);
        const heardBack = ra.tone();
        await sendTone(rb.socket, b.port, 1000, 0x4343);
        await until(() => ra.tone() > heardBack + 15);
        assert.ok(ra.tone() > heardBack + 15, `A heard B's tone (${ra.tone() - heardBack} frames)`);

        const again = await peer.iq(`<iq type="set" to="${a.call}"><join xmlns="${NS_RAYO}" call-uri="xmpp:${b.call}"/></iq>`);
        assert.equal(again.condition, 'conflict', again.xml);
        const unjoined = await peer.iq(`<iq type="set" to="${a.call}"><unjoin xmlns="${NS_RAYO}" call-uri="xmpp:${b.call}"/></iq>`);
        assert.equal(unjoined.type, 'result', unjoined.xml);
        await callEvent(peer, 'unjoined', a.call);
        await callEvent(peer, 'unjoined', b.call);
        const none = await peer.iq(`<iq type="set" to="${a.call}"><unjoin xmlns="${NS_RAYO}"/></iq>`);
        assert.equal(none.condition, 'service-unavailable', none.xml);
        const missing = await peer.iq(`<iq type="set" to="${a.call}"><join xmlns="${NS_RAYO}" call-uri="xmpp:nosuch@call.${domain}"/></iq>`);
        assert.equal(missing.condition, 'service-unavailable', missing.xml);
        const direct = await peer.iq(`<iq type="set" to="${a.call}"><join xmlns="${NS_RAYO}" call-uri="xmpp:${b.call}" media="direct" direction="recv"/></iq>`);
        assert.equal(direct.condition, 'feature-not-implemented', direct.xml);
        const malformed = await peer.iq(`<iq type="set" to="${a.call}"><join xmlns="${NS_RAYO}" call-uri="xmpp:"/></iq>`);
        assert.equal(malformed.condition, 'bad-request', malformed.xml);
        // Joined again, a hang-up of one side unjoins the other.
        assert.equal((await peer.iq(`<iq type="set" to="${a.call}"><join xmlns="${NS_RAYO}" call-uri="xmpp:${b.call}"/></iq>`)).type, 'result');
        await callEvent(peer, 'joined', b.call);
        await ok(a.caller, '<callKill callLeg="j"/>');
        await callEvent(peer, 'unjoined', b.call);
        await peer.iq(`<iq type="set" to="${b.call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      } finally {
        ra.close();
        rb.close();
      }
    });

    it('a mixer of three calls: the others hear a speaker, speaking events, output into the mixer; it goes with its last call', async () => {
      const { jid, peer } = await rayoClient('rayo-mixer');
      const sockets = [await listener(), await listener(), await listener()];
      try {
        const calls = [];
        for (const [i, rtp] of sockets.entries()) calls.push(await answered(peer, jid, `rayo-mixer-${i}`, rtp.socket));
        for (const [i, { call }] of calls.entries()) {
          assert.equal((await peer.iq(`<iq type="set" to="${call}"><join xmlns="${NS_RAYO}" mixer-name="Room"/></iq>`)).type, 'result');
          if (i === 0) {
            const first = await peer.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `room@mixer.${domain}` && e.xml.includes('urn:xmpp:rayo:mixer:1'));
            assert.ok(first, 'the new mixer presents itself with its caps');
          }
          assert.match((await callEvent(peer, 'joined', call)).xml, /mixer-name="room"/);
        }
        const [b0, c0] = [sockets[1]!.tone(), sockets[2]!.tone()];
        await sendTone(sockets[0]!.socket, calls[0]!.port, 1200);
        await until(() => sockets[1]!.tone() > b0 + 15 && sockets[2]!.tone() > c0 + 15);
        assert.ok(sockets[1]!.tone() > b0 + 15 && sockets[2]!.tone() > c0 + 15, 'both others heard the speaker');
        const spoke = await callEvent(peer, 'started-speaking', `room@mixer.${domain}`);
        assert.match(spoke.xml, new RegExp(`call-uri="xmpp:${calls[0]!.call}"`));
        await callEvent(peer, 'stopped-speaking', `room@mixer.${domain}`);

        const loud = sockets.map((s) => s.loud());
        const output = await peer.iq(`<iq type="set" to="room@mixer.${domain}"><output xmlns="urn:xmpp:rayo:output:1"><document content-type="text/plain">Welcome to the conference.</document></output></iq>`);
        assert.equal(output.type, 'result', output.xml);
        const component = /uri="xmpp:([^"]+)"/.exec(output.xml)![1]!;
        assert.ok(component.startsWith(`room@mixer.${domain}/`));
        assert.match((await callEvent(peer, 'complete', component)).xml, /<finish/);
        for (const [i, s] of sockets.entries()) assert.ok(s.loud() > loud[i]! + 15, `participant ${i} heard the output`);

        for (const { call } of calls) await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
        const gone = await peer.iq(`<iq type="set" to="room@mixer.${domain}"><output xmlns="urn:xmpp:rayo:output:1"><document content-type="text/plain">anyone?</document></output></iq>`);
        assert.equal(gone.condition, 'item-not-found', gone.xml);
      } finally {
        for (const s of sockets) s.close();
      }
    });
  });

  describe('with SIP phones: extension headers both ways, dial with a join', () => {
    it('carries X- headers from a phone\'s INVITE into the offer, and dial headers into the INVITE', async () => {
      const { jid, peer } = await rayoClient('rayo-hdr');
      const phoneAccount = await server.newAccount('rayo-phone');
      const phone = await SipPhone.open(sipPort, phoneAccount, 'secret');
      try {
        await phone.register();
        // The phone calls the Rayo account with headers of its own.
        const calling = phone.invite(`sip:${jid}`, `<sip:${jid}>`, 40_040, ['X-Customer-Id: 8877', 'X-Skill: agent', 'Subject: not carried']);
        const offer = await callEvent(peer, 'offer');
        assert.match(offer.xml, /<header [^>]*name="X-Customer-Id"[^>]*value="8877"/);
        assert.match(offer.xml, /<header [^>]*name="X-Skill"[^>]*value="agent"/);
        assert.doesNotMatch(offer.xml, /Subject/);
        // answer and hangup with headers (XEP examples 076 and 085): the 200 and the BYE carry the X- ones.
        assert.equal((await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"><header name="X-Queue" value="gold"/><header name="Subject" value="no"/></answer></iq>`)).type, 'result');
        const answered = await calling;
        assert.equal(answered.response.status, 200);
        assert.equal(answered.response.headers.get('X-Queue'), 'gold');
        assert.equal(answered.response.headers.get('Subject'), undefined, 'only extension headers');
        // A message to the call (XEP example 090) reaches the phone as a SIP MESSAGE in the call's dialog.
        await peer.raw(`<message to="${offer.call}" type="normal"><body>Art thou not Romeo?</body></message>`);
        const message = await phone.nextRequest('MESSAGE', answered.dialog!);
        assert.equal(message.body.toString('utf8'), 'Art thou not Romeo?');
        assert.match(message.headers.get('Content-Type') ?? '', /^text\/plain/);
        await peer.iq(`<iq type="set" to="${offer.call}"><hangup xmlns="${NS_RAYO}"><header name="X-Reason" value="done"/></hangup></iq>`);
        const bye = await phone.nextRequest('BYE', answered.dialog!);
        assert.equal(bye.headers.get('X-Reason'), 'done');

        // reject with headers: the refusal carries them.
        const refused = phone.invite(`sip:${jid}`, `<sip:${jid}>`, 40_044);
        const second = await callEvent(peer, 'offer');
        assert.equal((await peer.iq(`<iq type="set" to="${second.call}"><reject xmlns="${NS_RAYO}"><busy/><header name="X-Busy-Until" value="noon"/></reject></iq>`)).type, 'result');
        const refusal = await refused;
        assert.equal(refusal.response.status, 486);
        assert.equal(refusal.response.headers.get('X-Busy-Until'), 'noon');

        // The phone hangs up with a header: the end event shows it.
        const third = phone.invite(`sip:${jid}`, `<sip:${jid}>`, 40_046);
        const thirdOffer = await callEvent(peer, 'offer');
        await peer.iq(`<iq type="set" to="${thirdOffer.call}"><answer xmlns="${NS_RAYO}"/></iq>`);
        const thirdCall = await third;
        phone.request(thirdCall.dialog!, 'BYE', ['X-Hangup-Cause: customer']);
        const end = await callEvent(peer, 'end', thirdOffer.call);
        assert.match(end.xml, /<hungup/);
        assert.match(end.xml, /<header [^>]*name="X-Hangup-Cause"[^>]*value="customer"/);

        // The Rayo client dials the phone with headers (XEP example 014's form).
        const dialed = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${phoneAccount}"><header name="X-Skill" value="sales"/><header name="Priority" value="urgent"/></dial></iq>`);
        assert.equal(dialed.type, 'result', dialed.xml);
        const ringing = await phone.ring();
        assert.equal(ringing.invite.headers.get('X-Skill'), 'sales');
        assert.equal(ringing.invite.headers.get('Priority'), undefined, 'only extension (X-) headers are carried');
        await ringing.accept(40_042);
        const call = /uri="xmpp:([^"]+)"/.exec(dialed.xml)![1]!;
        await callEvent(peer, 'answered', call);
        await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
        await phone.nextRequest('BYE', ringing.dialog);
      } finally {
        phone.close();
      }
    });

    it('dial with a join: the new call is joined to the given call once answered', async () => {
      const { jid, peer } = await rayoClient('rayo-dialjoin');
      const caller = await ximssUser('rayo-dialjoin-a');
      await ok(caller.client, `<callStart callLeg="a" peer="${jid}"><sdpText>${sdpText(40_050)}</sdpText></callStart>`);
      const offer = await callEvent(peer, 'offer');
      await peer.iq(`<iq type="set" to="${offer.call}"><answer xmlns="${NS_RAYO}"/></iq>`);
      const callee = await ximssUser('rayo-dialjoin-b');
      const dialed = await peer.iq(`<iq type="set" to="${domain}"><dial xmlns="${NS_RAYO}" to="sip:${callee.address}"><join call-uri="xmpp:${offer.call}"/></dial></iq>`);
      assert.equal(dialed.type, 'result', dialed.xml);
      const call = /uri="xmpp:([^"]+)"/.exec(dialed.xml)![1]!;
      const incoming = await next(callee.client, 'callIncoming');
      await ok(callee.client, `<callAccept callLeg="${incoming.attrs.callLeg}"><sdpText>${sdpText(40_052)}</sdpText></callAccept>`);
      await callEvent(peer, 'answered', call);
      assert.match((await callEvent(peer, 'joined', call)).xml, new RegExp(`call-uri="xmpp:${offer.call}"`));
      assert.match((await callEvent(peer, 'joined', offer.call)).xml, new RegExp(`call-uri="xmpp:${call}"`));
      await peer.iq(`<iq type="set" to="${call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
      await callEvent(peer, 'unjoined', offer.call);
      await peer.iq(`<iq type="set" to="${offer.call}"><hangup xmlns="${NS_RAYO}"/></iq>`);
    });
  });
});
