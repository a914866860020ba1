/**
 * The XMPP test peers proven against a real server: Prosody 0.12 (test/fixtures/prosody.ts)
 * with slixmpp clients (test/fixtures/xmpp-peer.ts). What passes here is what the XMPP tests
 * of ximssd may rely on when they point the same peers at ximssd. Skipped only when Prosody
 * cannot be installed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../bench/lib/proc.js';
import { ensureProsody, startProsody, type Prosody } from './fixtures/prosody.js';
import { XmppPeer, type MessageEvent, type PresenceEvent, type RosterPushEvent } from './fixtures/xmpp-peer.js';

const availability = await ensureProsody();
const skip = availability.available ? false : availability.reason;

describe('XMPP peers against Prosody', { skip }, () => {
  let prosody: Prosody;
  /** A second server, `remote.test`, federated with the first over s2s (dialback) on loopback. */
  let remote: Prosody;
  let alice: XmppPeer;
  let bob: XmppPeer;
  const ALICE = 'alice@example.test';
  const BOB = 'bob@example.test';

  before(async () => {
    const [s2sPort, remoteS2sPort] = [await freePort(), await freePort()];
    [prosody, remote] = await Promise.all([
      startProsody({ users: { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' }, muc: true, s2sPort, s2sRoutes: { 'remote.test': remoteS2sPort } }),
      startProsody({ domain: 'remote.test', users: { dave: 'dave-pw' }, s2sPort: remoteS2sPort, s2sRoutes: { 'example.test': s2sPort } }),
    ]);
    const at = { host: '127.0.0.1', port: prosody.port };
    [alice, bob] = await Promise.all([
      XmppPeer.connect({ ...at, jid: ALICE, password: 'alice-pw', resource: 'desk', mechanism: 'SCRAM-SHA-256', streamManagement: true }),
      XmppPeer.connect({ ...at, jid: BOB, password: 'bob-pw', resource: 'phone', mechanism: 'SCRAM-SHA-1' }),
    ]);
  });

  after(async () => {
    await Promise.all([alice?.close(), bob?.close()]);
    await Promise.all([prosody?.stop(), remote?.stop()]);
  });

  it('logs in with the SASL mechanism asked for, after STARTTLS', () => {
    assert.equal(alice.mechanism, 'SCRAM-SHA-256');
    assert.equal(bob.mechanism, 'SCRAM-SHA-1');
    assert.equal(alice.jid, `${ALICE}/desk`);
  });

  it('reports a wrong password as a failed session; PLAIN over direct TLS works when chosen', async () => {
    const at = { host: '127.0.0.1', port: prosody.port };
    await assert.rejects(XmppPeer.connect({ ...at, jid: 'carol@example.test', password: 'wrong', mechanism: 'PLAIN' }), /session failed: authentication failed/);
    const carol = await XmppPeer.connect({ ...at, port: prosody.directTlsPort, tls: 'direct', jid: 'carol@example.test', password: 'carol-pw', mechanism: 'PLAIN' });
    assert.equal(carol.mechanism, 'PLAIN');
    await carol.close();
  });

  it('subscribes both ways, with roster pushes and presence', async () => {
    await Promise.all([alice.rosterGet(), bob.rosterGet()]); // interested resources get pushes
    await Promise.all([alice.presence({ status: 'at my desk' }), bob.presence({ show: 'away' })]);
    await alice.subscribe(BOB);
    await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === BOB && i.ask === 'subscribe'));
    await bob.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.type === 'subscribe' && e.from === ALICE);
    await bob.subscribed(ALICE);
    await bob.subscribe(ALICE);
    await alice.waitFor((e) => e.event === 'presence' && e.type === 'subscribe' && e.from === BOB);
    await alice.subscribed(BOB);
    const push = await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === BOB && i.subscription === 'both'));
    assert.equal(push.items[0]?.subscription, 'both');
    const seen = await bob.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${ALICE}/desk` && e.type === 'available');
    assert.equal(seen.status, 'at my desk');
    const seenBob = await alice.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${BOB}/phone` && e.type === 'available');
    assert.equal(seenBob.show, 'away');
    const roster = await bob.rosterGet();
    assert.deepEqual(roster.items.map((i) => [i.jid, i.subscription]), [[ALICE, 'both']]);
  });

  it('chats, with chat states, carbons and the archive', async () => {
    assert.equal((await bob.enableCarbons()).type, 'result');
    const id = await alice.message({ to: BOB, body: 'hello bob', chatState: 'active' });
    const got = await bob.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'hello bob');
    assert.equal(got.id, id);
    assert.equal(got.from, `${ALICE}/desk`);
    assert.equal(got.chatState, 'active');
    assert.equal(got.carbon, null);
    assert.ok(got.stanzaIds.some((s) => s.by === BOB), 'the archive stamped a stanza-id');
    const page = await alice.mam({ with: BOB, max: 10 });
    assert.ok(page.messages.some((m) => m.body === 'hello bob' && m.delay !== null));
  });

  it('answers an iq ping between clients and to the server', async () => {
    assert.equal((await alice.ping()).type, 'result');
    assert.equal((await alice.ping(`${BOB}/phone`)).type, 'result');
    const request = await bob.waitFor((e) => e.event === 'iq' && e.type === 'get' && e.from === `${ALICE}/desk` && e.xml.includes('urn:xmpp:ping'));
    assert.ok(request);
    const unknown = await alice.iq(`<iq type="get" to="${BOB}/phone"><query xmlns="urn:example:nothing"/></iq>`);
    assert.equal(unknown.type, 'error');
  });

  it('resumes a stream after the TCP connection is cut, keeping what was sent meanwhile', async () => {
    await alice.waitFor((e) => e.event === 'sm_enabled');
    await alice.dropConnection();
    await bob.message({ to: `${ALICE}/desk`, body: 'while you were away' });
    await alice.resume();
    await alice.waitFor((e) => e.event === 'message' && e.body === 'while you were away');
  });

  it('joins a MUC room and gets its groupchat', async () => {
    const room = `lounge@${prosody.mucDomain!}`;
    const codes = await alice.joinRoom(room, 'Alice');
    assert.ok(codes.includes('110'));
    await bob.joinRoom(room, 'Bob');
    await alice.groupchat(room, 'hi room');
    const got = await bob.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'groupchat' && e.body === 'hi room');
    assert.equal(got.from, `${room}/Alice`);
  });

  it('reaches an account of another server over s2s', async () => {
    const dave = await XmppPeer.connect({ host: '127.0.0.1', port: remote.port, jid: 'dave@remote.test', password: 'dave-pw', resource: 'laptop' });
    try {
      await dave.presence();
      await alice.message({ to: 'dave@remote.test', body: 'across servers' });
      const got = await dave.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'across servers');
      assert.equal(got.from, `${ALICE}/desk`);
    } finally {
      await dave.close();
    }
  });

  it('blocks and unblocks a contact', async () => {
    assert.equal((await bob.block(['spam@example.test'])).type, 'result');
    assert.deepEqual(await bob.blocklist(), ['spam@example.test']);
    await bob.unblock(['spam@example.test']);
    assert.deepEqual(await bob.blocklist(), []);
  });
});
