/**
 * IM and presence between real XMPP clients (Debian's slixmpp, test/fixtures/xmpp-peer.ts) and
 * XIMSS sessions on one ximssd: login with each SASL mechanism, roster pushes and versioning,
 * subscription handshakes across the two protocols, chat both ways with chat states, offline
 * delivery, carbons to a second resource, the archive (MAM) by peer and time, stream resumption
 * after a dropped TCP connection, iq round trips, server disco/vCard, block lists.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { ensureSlixmpp, XmppPeer, type IqEvent, type MessageEvent, type PresenceEvent, type RosterPushEvent } from './fixtures/xmpp-peer.js';
import { freePort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const slixmpp = await ensureSlixmpp().then(
  () => false as const,
  (err: unknown) => `slixmpp cannot be installed: ${String(err)}`,
);

/** The first async message of this name that `match` accepts (taken off the list). */
const waitAsync = (client: XimssClient, name: string, match: (m: XmlElement) => boolean = () => true): Promise<XmlElement> => client.takeAsync(name, match);

let server: TestServer;
let port: number;
const peers: XmppPeer[] = [];

before(async () => {
  port = await freePort();
  server = await startTestServer({ ports: { ximss: 0, http: 0, smtp: 0, xmpp: port } });
});
after(async () => {
  await Promise.all(peers.map((p) => p.close().catch(() => {})));
  await server.stop();
});

async function account(name: string, realName?: string): Promise<string> {
  return server.newAccount(name, realName ? { realName } : {});
}

async function peer(jid: string, options: Partial<Parameters<typeof XmppPeer.connect>[0]> = {}): Promise<XmppPeer> {
  const p = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port, ...options });
  peers.push(p);
  return p;
}

describe('XMPP clients on ximssd', { skip: slixmpp }, () => {
  it('logs in with SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN after STARTTLS, and refuses a wrong password', async () => {
    const jid = await account('xlogin');
    for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'] as const) {
      const p = await peer(jid, { mechanism, resource: mechanism });
      assert.equal(p.mechanism, mechanism);
      assert.equal(p.jid, `${jid}/${mechanism}`);
      await p.close();
    }
    await assert.rejects(XmppPeer.connect({ jid, password: 'wrong', host: '127.0.0.1', port, mechanism: 'SCRAM-SHA-256' }), /authentication failed|not-authorized/);
  });

  it('subscribes both ways between two XMPP users, with roster pushes, presence and roster versions', async () => {
    const a = await account('xsub');
    const b = await account('xsub');
    const alice = await peer(a, { resource: 'desk' });
    const bob = await peer(b, { resource: 'phone' });
    const first = await alice.rosterGet();
    assert.deepEqual(first.items, []);
    await bob.rosterGet();
    await Promise.all([alice.presence({ status: 'at my desk' }), bob.presence({ show: 'away' })]);
    await alice.subscribe(b);
    await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === b && i.ask === 'subscribe'));
    await bob.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.type === 'subscribe' && e.from === a);
    await bob.subscribed(a);
    await bob.subscribe(a);
    await alice.waitFor((e) => e.event === 'presence' && e.type === 'subscribe' && e.from === b);
    await alice.subscribed(b);
    await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === b && i.subscription === 'both'));
    const seen = await bob.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${a}/desk` && e.type === 'available');
    assert.equal(seen.status, 'at my desk');
    const seenBob = await alice.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${b}/phone` && e.type === 'available');
    assert.equal(seenBob.show, 'away');
    const roster = await bob.rosterGet();
    assert.deepEqual(roster.items.map((i) => [i.jid, i.subscription]), [[a, 'both']]);
    assert.ok(roster.ver !== null && roster.ver !== first.ver, 'the roster version moved on');
    // The client's version is current: the server answers with an empty result (RFC 6121 2.6.3).
    const again = await bob.iq(`<iq type="get"><query xmlns="jabber:iq:roster" ver="${roster.ver}"/></iq>`);
    assert.equal(again.type, 'result');
    assert.ok(!again.xml.includes('<item'), 'no items for a current version');
    // Bob goes away: Alice sees him unavailable.
    await bob.close();
    await alice.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${b}/phone` && e.type === 'unavailable');
  });

  it('an XMPP user and a XIMSS user subscribe, see each other and chat both ways with chat states', async () => {
    const x = await account('xmix', 'Xavier XMPP');
    const w = await account('wmix', 'Wendy Web');
    const xavier = await peer(x, { resource: 'pc' });
    const { client: wendy } = await server.login(w, 'secret');
    await ok(wendy, '<signalBind clientID="browser" presence="yes" readIM="1"/>');
    await ok(wendy, '<presenceSet><presence>online</presence><status>hello</status></presenceSet>');
    await xavier.rosterGet();
    await xavier.presence({ show: 'dnd', status: 'coding' });
    // XMPP asks, XIMSS answers with subBoth, XMPP approves.
    await xavier.subscribe(w);
    const request = await waitAsync(wendy, 'presence', (m) => m.attrs.type === 'subscribe');
    assert.equal(request.attrs.peer, x);
    await ok(wendy, `<rosterSet peer="${x}" name="Xavier" subscription="subBoth"/>`);
    await xavier.waitFor((e) => e.event === 'presence' && e.type === 'subscribe' && e.from === w);
    await xavier.subscribed(w);
    const item = await waitAsync(wendy, 'rosterItem', (m) => m.attrs.subscription === 'both');
    assert.equal(item.attrs.name, 'Xavier');
    const shown = await waitAsync(wendy, 'presence', (m) => m.attrs.peer === x && m.attrs.type === undefined);
    assert.equal(shown.element('show')?.text(), 'dnd');
    assert.equal(shown.element('presence')?.text(), 'busy');
    assert.equal(shown.element('status')?.text(), 'coding');
    const seen = await xavier.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${w}/browser` && e.type === 'available');
    assert.equal(seen.status, 'hello');

    // XIMSS → XMPP, with a chat state first.
    await ok(wendy, `<sendIM peer="${x}"><composing/></sendIM>`);
    const typing = await xavier.waitFor((e): e is MessageEvent => e.event === 'message' && e.chatState === 'composing');
    assert.equal(typing.from, `${w}/browser`);
    await ok(wendy, `<sendIM peer="${x}" iqid="w-1">Hi Xavier</sendIM>`);
    const got = await xavier.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'Hi Xavier');
    assert.equal(got.id, 'w-1');
    assert.equal(got.type, 'chat');
    // XMPP → XIMSS: the reply goes to the browser (the conversation's client), extended format.
    await xavier.message({ to: w, body: 'Hi Wendy', chatState: 'active' });
    const read = await waitAsync(wendy, 'readIM', (m) => m.element('body') !== undefined);
    assert.equal(read.attrs.peer, x);
    assert.equal(read.attrs.peerName, 'Xavier XMPP');
    assert.equal(read.attrs.clientID, 'pc');
    assert.equal(read.elements()[0]?.name, 'body');
    assert.equal(read.element('body')?.text(), 'Hi Wendy');
    await xavier.message({ to: `${w}/browser`, chatState: 'gone' });
    assert.equal((await waitAsync(wendy, 'readIM')).elements()[0]?.name, 'gone');
  });

  it('keeps messages for an offline user and delivers them, with delay stamps, at the next login', async () => {
    const s = await account('xoff');
    const r = await account('xoff');
    const sender = await peer(s, { resource: 'a' });
    await sender.message({ to: r, body: 'are you there?' });
    await sender.message({ to: r, body: 'call me' });
    const receiver = await peer(r, { resource: 'b' });
    await receiver.presence();
    const first = await receiver.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'are you there?');
    assert.ok(first.delay, 'a delay stamp');
    await receiver.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'call me');
    assert.equal(await server.services.store.offline.count((await server.services.accounts.find(r))!.id), 0);
  });

  it('copies messages to a second resource with carbons, and archives them for MAM by peer and time', async () => {
    const a = await account('xcarb');
    const b = await account('xcarb');
    const alice = await peer(a, { resource: 'one' });
    const alice2 = await peer(a, { resource: 'two' });
    const bob = await peer(b, { resource: 'x' });
    await Promise.all([alice.presence({ priority: 5 }), alice2.presence({ priority: 1 }), bob.presence()]);
    assert.equal((await alice2.enableCarbons()).type, 'result');
    const before = new Date(Date.now() - 1000).toISOString();
    await bob.message({ to: a, body: 'to alice' });
    const direct = await alice.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'to alice');
    assert.equal(direct.carbon, null);
    assert.ok(direct.stanzaIds.some((id) => id.by === a), 'stamped by the archive');
    const received = await alice2.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'to alice');
    assert.equal(received.carbon, 'received');
    await alice.message({ to: b, body: 'from one', type: 'chat' });
    const sent = await alice2.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'from one');
    assert.equal(sent.carbon, 'sent');
    await bob.waitFor((e) => e.event === 'message' && 'body' in e && e.body === 'from one');

    const page = await alice.mam({ with: b, start: before, max: 10 });
    assert.deepEqual(page.messages.map((m) => m.body), ['to alice', 'from one']);
    assert.equal(page.complete, true);
    const none = await alice.mam({ with: b, end: before });
    assert.equal(none.messages.length, 0);
    const firstOnly = await alice.mam({ with: b, max: 1 });
    assert.deepEqual(firstOnly.messages.map((m) => m.body), ['to alice']);
    const next = await alice.mam({ with: b, max: 1, after: firstOnly.last ?? undefined });
    assert.deepEqual(next.messages.map((m) => m.body), ['from one']);
  });

  it('resumes a stream after the TCP connection is cut, keeping what was sent meanwhile', async () => {
    const a = await account('xsm');
    const b = await account('xsm');
    const alice = await peer(a, { resource: 'desk', streamManagement: true });
    const bob = await peer(b, { resource: 'phone' });
    await alice.presence();
    await alice.waitFor((e) => e.event === 'sm_enabled');
    await alice.dropConnection();
    await bob.message({ to: `${a}/desk`, body: 'while you were away' });
    await alice.resume();
    await alice.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'while you were away');
  });

  it('routes iq between clients and answers server iqs: ping, disco, vCard, version', async () => {
    const a = await account('xiq');
    const b = await account('xiq', 'Bea Iq');
    const alice = await peer(a, { resource: 'desk' });
    const bob = await peer(b, { resource: 'phone' });
    assert.equal((await alice.ping()).type, 'result');
    assert.equal((await alice.ping(`${b}/phone`)).type, 'result');
    const request = await bob.waitFor((e): e is IqEvent => e.event === 'iq' && e.type === 'get' && e.from === `${a}/desk` && e.xml.includes('urn:xmpp:ping'));
    assert.ok(request);
    const unknown = await alice.iq(`<iq type="get" to="${b}/nowhere"><ping xmlns="urn:xmpp:ping"/></iq>`);
    assert.equal(unknown.type, 'error');
    assert.equal(unknown.condition, 'service-unavailable');
    const disco = await alice.iq(`<iq type="get" to="${server.config.defaultDomain}"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`);
    assert.match(disco.xml, /urn:xmpp:mam:2/);
    assert.match(disco.xml, /urn:xmpp:carbons:2/);
    const card = await alice.iq(`<iq type="get" to="${b}"><vCard xmlns="vcard-temp"/></iq>`);
    assert.match(card.xml, /<FN>Bea Iq<\/FN>/);
    const version = await alice.iq(`<iq type="get" to="${server.config.defaultDomain}"><query xmlns="jabber:iq:version"/></iq>`);
    assert.match(version.xml, /<name>ximssd<\/name>/);
    const bad = await alice.iq(`<iq type="get" to="${b}"><query xmlns="urn:example:unknown"/></iq>`);
    assert.equal(bad.condition, 'service-unavailable');
  });

  it('a blocked contact cannot write, and sees the user go; unblocking lets it write again', async () => {
    const a = await account('xblk');
    const b = await account('xblk');
    const alice = await peer(a, { resource: 'desk' });
    const bob = await peer(b, { resource: 'phone' });
    await alice.presence();
    assert.equal((await alice.block([b])).type, 'result');
    assert.deepEqual(await alice.blocklist(), [b]);
    await bob.message({ to: a, body: 'let me in' });
    const refused = await bob.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error');
    assert.match(refused.xml, /service-unavailable/);
    await alice.message({ to: b, body: 'not to you' });
    const own = await alice.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error');
    assert.match(own.xml, /blocking:errors/);
    await alice.unblock([b]);
    assert.deepEqual(await alice.blocklist(), []);
    await bob.message({ to: a, body: 'hello again' });
    await alice.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'hello again');
  });

  it('a group chat room with an XMPP member and a XIMSS member: both see each other join and talk', async () => {
    const x = await account('xmuc');
    const w = await account('wmuc');
    const xavier = await peer(x, { resource: 'pc' });
    const { client: wendy } = await server.login(w, 'secret');
    await ok(wendy, '<signalBind clientID="web" readIM="1"/>');
    const room = `lounge-${Date.now()}@conference.${server.config.defaultDomain}`;
    const codes = await xavier.joinRoom(room, 'Xavier');
    assert.ok(codes.includes('110') && codes.includes('201'), `self-presence codes: ${codes.join(',')}`);
    // An XMPP client entering with the MUC element gets a locked room: it accepts the instant room.
    const instant = await xavier.iq(`<iq type="set" to="${room}"><query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"/></query></iq>`);
    assert.equal(instant.type, 'result');
    await ok(wendy, `<presenceSet peer="${room}" clientID="Wendy"><presence>online</presence></presenceSet>`);
    await xavier.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${room}/Wendy` && e.type === 'available');
    const xavierSeen = await waitAsync(wendy, 'presence', (m) => m.attrs.peer === room && m.attrs.clientID === 'Xavier');
    assert.equal(xavierSeen.attrs.type, undefined);
    await xavier.groupchat(room, 'hello room');
    const read = await waitAsync(wendy, 'readIM', (m) => m.element('body')?.text() === 'hello room');
    assert.equal(read.attrs.peer, room);
    assert.equal(read.attrs.clientID, 'Xavier');
    assert.equal(read.attrs.type, 'groupchat');
    await ok(wendy, `<sendIM peer="${room}" type="groupchat">hi Xavier</sendIM>`);
    const got = await xavier.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'groupchat' && e.body === 'hi Xavier');
    assert.equal(got.from, `${room}/Wendy`);
    // Wendy's session ends: the room tells Xavier she left.
    wendy.close();
    await xavier.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${room}/Wendy` && e.type === 'unavailable');
  });
});
