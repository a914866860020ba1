/**
 * Instant messages, rosters and presence over XIMSS on the wire (spec sections "Instant
 * Messaging", "Roster and Presence", "XMPP-style requests", the IM part of "Signaling"):
 * signalBind options, subscription handshakes and roster pushes, aggregated presence,
 * readIM in both formats with chat states, errorIM, offline messages, roster groups,
 * another account's roster by its rights, iqSend/iqRead, bad input.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { fails, httpRequest, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

/** The first async message of this name that `match` accepts (taken off the list). */
const waitFor = (client: XimssClient, name: string, match: (m: XmlElement) => boolean = () => true): Promise<XmlElement> => client.takeAsync(name, match);

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
}

async function newUser(realName?: string): Promise<User> {
  const address = await server.newAccount('im', realName ? { realName } : {});
  const { client } = await server.login(address, 'secret');
  return { address, client };
}

/** A second session of the same account. */
async function secondSession(user: User): Promise<XimssClient> {
  return (await server.login(user.address, 'secret')).client;
}

async function bind(user: User | XimssClient, attrs = 'presence="yes" readIM="1"'): Promise<void> {
  const client = 'client' in user ? user.client : user;
  await ok(client, `<signalBind ${attrs}/>`);
}

/** Makes two users subscribe each other, both ways, and drops the messages that came of it. */
async function befriend(a: User, b: User): Promise<void> {
  await ok(a.client, `<rosterSet peer="${b.address}" subscription="subscribe"/>`);
  await waitFor(b.client, 'presence', (m) => m.attrs.type === 'subscribe' && m.attrs.peer === a.address);
  await ok(b.client, `<rosterSet peer="${a.address}" subscription="subBoth"/>`);
  await waitFor(a.client, 'presence', (m) => m.attrs.type === 'subscribe' && m.attrs.peer === b.address);
  await ok(a.client, `<rosterSet peer="${b.address}" subscription="subscribed"/>`);
  await waitFor(a.client, 'rosterItem', (m) => m.attrs.peer === b.address && m.attrs.subscription === 'both');
  await waitFor(b.client, 'rosterItem', (m) => m.attrs.peer === a.address && m.attrs.subscription === 'both');
  for (const c of [a.client, b.client]) c.asyncMessages.splice(0);
}

describe('roster and subscriptions', () => {
  test('a subscription request, its approval and the four states, with a roster push at every step', async () => {
    const alice = await newUser();
    const bob = await newUser();
    await bind(alice);
    await bind(bob);
    await ok(alice.client, `<rosterSet peer="${bob.address}" name="Bob" subscription="subscribe"><group>Friends</group></rosterSet>`);
    const pending = await waitFor(alice.client, 'rosterItem', (m) => m.attrs.ask === 'subscribe');
    assert.equal(pending.attrs.peer, bob.address);
    assert.equal(pending.attrs.subscription, 'none');
    assert.equal(pending.attrs.name, 'Bob');
    assert.deepEqual(pending.elements('group').map((g) => g.text()), ['Friends']);
    const request = await waitFor(bob.client, 'presence', (m) => m.attrs.type === 'subscribe');
    assert.equal(request.attrs.peer, alice.address);
    // The request is not a contact of Bob's yet.
    const bobRoster = await ok(bob.client, '<rosterList/>');
    assert.equal(bobRoster.messages.length, 0);

    await ok(bob.client, `<rosterSet peer="${alice.address}" subscription="subscribed"/>`);
    const fromItem = await waitFor(bob.client, 'rosterItem', (m) => m.attrs.peer === alice.address);
    assert.equal(fromItem.attrs.subscription, 'from');
    const toItem = await waitFor(alice.client, 'rosterItem', (m) => m.attrs.peer === bob.address && m.attrs.subscription === 'to');
    assert.equal(toItem.attrs.ask, undefined);

    // Alice's roster now shows Bob as `to`; a second session of Alice sees the same.
    const list = await ok(alice.client, '<rosterList/>');
    assert.deepEqual(
      list.messages.map((m) => [m.name, m.attrs.peer, m.attrs.subscription, m.attrs.name]),
      [['rosterItem', bob.address, 'to', 'Bob']],
    );

    // Bob asks back: Alice approves with subscribed → both.
    await ok(bob.client, `<rosterSet peer="${alice.address}" subscription="subscribe"/>`);
    await waitFor(alice.client, 'presence', (m) => m.attrs.type === 'subscribe' && m.attrs.peer === bob.address);
    await ok(alice.client, `<rosterSet peer="${bob.address}" subscription="subscribed"/>`);
    await waitFor(alice.client, 'rosterItem', (m) => m.attrs.subscription === 'both');
    await waitFor(bob.client, 'rosterItem', (m) => m.attrs.subscription === 'both');

    // Alice stops watching Bob: she is `from`, he is `to`.
    await ok(alice.client, `<rosterSet peer="${bob.address}" subscription="unsubscribe"/>`);
    await waitFor(alice.client, 'rosterItem', (m) => m.attrs.subscription === 'from');
    await waitFor(bob.client, 'rosterItem', (m) => m.attrs.subscription === 'to');
    // Alice revokes Bob's right to watch her: none on both sides.
    await ok(alice.client, `<rosterSet peer="${bob.address}" subscription="unsubscribed"/>`);
    await waitFor(alice.client, 'rosterItem', (m) => m.attrs.subscription === 'none');
    await waitFor(bob.client, 'rosterItem', (m) => m.attrs.subscription === 'none');

    // Removal pushes subscription="remove".
    await ok(alice.client, `<rosterSet peer="${bob.address}" subscription="remove"/>`);
    await waitFor(alice.client, 'rosterItem', (m) => m.attrs.subscription === 'remove' && m.attrs.peer === bob.address);
    assert.equal((await ok(alice.client, '<rosterList/>')).messages.length, 0);
    await fails(alice.client, `<rosterSet peer="${bob.address}" subscription="remove"/>`, /not in the roster/);
  });

  test('subBoth answers a request and asks back in one operation; a pre-approval answers the later request at once', async () => {
    const carol = await newUser();
    const dave = await newUser();
    await bind(carol);
    await bind(dave);
    await befriend(carol, dave);
    const roster = await ok(carol.client, '<rosterList/>');
    assert.equal(roster.messages[0]?.attrs.subscription, 'both');

    // Pre-approval: Erin approves Frank before he asks; his request is then granted without Erin seeing it.
    const erin = await newUser();
    const frank = await newUser();
    await bind(erin);
    await bind(frank);
    await ok(erin.client, `<rosterSet peer="${frank.address}" subscription="subscribed"/>`);
    await ok(frank.client, `<rosterSet peer="${erin.address}" subscription="subscribe"/>`);
    await waitFor(frank.client, 'rosterItem', (m) => m.attrs.subscription === 'to');
    await waitFor(erin.client, 'rosterItem', (m) => m.attrs.peer === frank.address && m.attrs.subscription === 'from');
    await erin.client.nothingMore('presence', (m) => m.attrs.type === 'subscribe');
  });

  test('a request to a contact with no session waits, and comes when the contact binds; a cancelled request does not', async () => {
    const asker = await newUser();
    const away = await newUser();
    const other = await newUser();
    away.client.close();
    await bind(asker);
    await ok(asker.client, `<rosterSet peer="${away.address}" subscription="subscribe"/>`);
    await bind(other);
    await ok(other.client, `<rosterSet peer="${away.address}" subscription="subscribe"/>`);
    // The second asker changes its mind before the answer.
    await ok(other.client, `<rosterSet peer="${away.address}" subscription="unsubscribe"/>`);
    const { client } = await server.login(away.address, 'secret');
    await bind(client);
    const waiting = await waitFor(client, 'presence', (m) => m.attrs.type === 'subscribe');
    assert.equal(waiting.attrs.peer, asker.address);
    await client.nothingMore('presence', (m) => m.attrs.type === 'subscribe');
    await ok(client, `<rosterSet peer="${asker.address}" subscription="subscribed"/>`);
    await waitFor(asker.client, 'rosterItem', (m) => m.attrs.peer === away.address && m.attrs.subscription === 'to');
  });

  test('rosterGroupSet adds, renames and deletes groups; contacts are pushed with their new groups', async () => {
    const gina = await newUser();
    const hal = await newUser();
    await bind(gina);
    await ok(gina.client, `<rosterSet peer="${hal.address}" name="Hal"><group>Work</group><group>Chess</group></rosterSet>`);
    await waitFor(gina.client, 'rosterItem');
    await ok(gina.client, '<rosterGroupSet group="Empty" mode="add"/>');
    await fails(gina.client, '<rosterGroupSet group="Empty" mode="add"/>', /exists/);
    await ok(gina.client, '<rosterGroupSet group="Work" mode="rename" newName="Office"/>');
    const renamed = await waitFor(gina.client, 'rosterItem');
    assert.deepEqual(renamed.elements('group').map((g) => g.text()).sort(), ['Chess', 'Office']);
    await ok(gina.client, '<rosterGroupSet group="Chess" mode="delete"/>');
    const deleted = await waitFor(gina.client, 'rosterItem');
    assert.deepEqual(deleted.elements('group').map((g) => g.text()), ['Office']);
    await fails(gina.client, '<rosterGroupSet group="Nope" mode="delete"/>', /no group/);
    await fails(gina.client, '<rosterGroupSet group="Office" mode="rename"/>', /newName/);
    await fails(gina.client, '<rosterGroupSet group="Office" mode="explode"/>', /add, delete or rename/);
  });

  test("another account's roster is read with its rights, and refused without", async () => {
    const owner = await newUser();
    const other = await newUser();
    const third = await newUser();
    await ok(owner.client, `<rosterSet peer="${third.address}" name="Third"/>`);
    await fails(other.client, `<rosterList accountName="${owner.address}"/>`, /access denied/);
    await fails(other.client, `<rosterSet accountName="${owner.address}" peer="${other.address}"/>`, /access denied/);
    await ok(owner.client, `<accountACLUpdate><aclElem pattern="${other.address}">r</aclElem></accountACLUpdate>`);
    const read = await ok(other.client, `<rosterList accountName="${owner.address}"/>`);
    assert.deepEqual(read.messages.map((m) => m.attrs.peer), [third.address]);
    // Reading is not changing.
    await fails(other.client, `<rosterSet accountName="${owner.address}" peer="${other.address}"/>`, /access denied/);
  });

  test('bad roster input is refused with a clear error', async () => {
    const user = await newUser();
    await fails(user.client, '<rosterSet/>', /peer is required/);
    await fails(user.client, '<rosterSet peer="not an address"/>', /not an address/);
    await fails(user.client, `<rosterSet peer="${user.address}"/>`, /itself/);
    await fails(user.client, '<rosterSet peer="x@example.org" subscription="maybe"/>', /unknown subscription/);
    await fails(user.client, '<rosterSet peer="x@example.org"><group></group></rosterSet>', /group name/);
  });
});

describe('presence', () => {
  test("presenceSet reaches subscribed contacts, aggregated over the account's sessions; the last one leaving makes it unavailable", async () => {
    const ivy = await newUser('Ivy Green');
    const jack = await newUser();
    await bind(ivy);
    await bind(jack);
    await befriend(ivy, jack);
    await ok(ivy.client, '<presenceSet><presence>in-meeting</presence><status>planning</status></presenceSet>');
    const seen = await waitFor(jack.client, 'presence', (m) => m.attrs.peer === ivy.address);
    assert.equal(seen.attrs.type, undefined);
    assert.equal(seen.element('presence')?.text(), 'in-meeting');
    assert.equal(seen.element('show')?.text(), 'away');
    assert.equal(seen.element('status')?.text(), 'planning');

    // A second session of Ivy binds and goes online: Jack sees one aggregated presence (the most recent).
    const ivy2 = await secondSession(ivy);
    await bind(ivy2, 'clientID="phone"');
    await ok(ivy2, '<presenceSet><show>dnd</show></presenceSet>');
    const busy = await waitFor(jack.client, 'presence', (m) => m.attrs.peer === ivy.address);
    assert.equal(busy.element('presence')?.text(), 'busy');
    assert.equal(busy.attrs.clientID, undefined);
    // The phone session ends: the first session's presence is shown again, not "unavailable".
    ivy2.close();
    const back = await waitFor(jack.client, 'presence', (m) => m.attrs.peer === ivy.address);
    assert.equal(back.attrs.type, undefined);
    assert.equal(back.element('presence')?.text(), 'in-meeting');
    // presenceSet type="unavailable" with no other session online: Jack sees Ivy offline.
    await ok(ivy.client, '<presenceSet type="unavailable"/>');
    const gone = await waitFor(jack.client, 'presence', (m) => m.attrs.peer === ivy.address);
    assert.equal(gone.attrs.type, 'unavailable');
  });

  test('a session binding with presence="yes" is told its contacts that are online; a contact not subscribed sees nothing', async () => {
    const kim = await newUser();
    const lee = await newUser();
    const stranger = await newUser();
    await bind(kim);
    await bind(lee);
    await bind(stranger);
    await befriend(kim, lee);
    await ok(lee.client, '<presenceSet><presence>online</presence></presenceSet>');
    await waitFor(kim.client, 'presence', (m) => m.attrs.peer === lee.address);
    const kim2 = await secondSession(kim);
    await bind(kim2);
    const told = await waitFor(kim2, 'presence', (m) => m.attrs.peer === lee.address);
    assert.equal(told.element('presence')?.text(), 'online');
    await stranger.client.nothingMore('presence', (m) => m.attrs.peer === lee.address);
  });

  test('presenceSet checks its input; sending presence needs a bound session', async () => {
    const user = await newUser();
    await fails(user.client, '<presenceSet/>', /signalBind/);
    await bind(user);
    await fails(user.client, '<presenceSet type="invisible"/>', /unavailable/);
    await fails(user.client, '<presenceSet><show>sleeping</show></presenceSet>', /dnd, away or xa/);
    await fails(user.client, '<presenceSet><presence>dancing</presence></presenceSet>', /unknown presence/);
    await fails(user.client, '<presenceSet peer="bad address"/>', /not an address/);
  });
});

describe('instant messages', () => {
  test('sendIM and readIM in the basic and the extended formats, with chat states, peerName and clientID', async () => {
    const mia = await newUser('Mia Wong');
    const ned = await newUser();
    await bind(mia, 'clientID="desk" readIM="1"');
    await bind(ned, 'clientID="laptop"');
    await ok(mia.client, `<sendIM peer="${ned.address}" iqid="m1">Hello &lt;Ned&gt;</sendIM>`);
    const basic = await waitFor(ned.client, 'readIM');
    assert.equal(basic.attrs.peer, mia.address);
    assert.equal(basic.attrs.peerName, 'Mia Wong');
    assert.equal(basic.attrs.clientID, 'desk');
    assert.equal(basic.attrs.iqid, 'm1');
    assert.equal(basic.text(), 'Hello <Ned>');
    assert.equal(basic.elements().length, 0);

    await ok(ned.client, `<sendIM peer="${mia.address}"><composing/></sendIM>`);
    const composing = await waitFor(mia.client, 'readIM');
    assert.equal(composing.elements()[0]?.name, 'composing');
    await ok(ned.client, `<sendIM peer="${mia.address}"><body>Hi Mia</body></sendIM>`);
    const extended = await waitFor(mia.client, 'readIM', (m) => m.element('body') !== undefined);
    // Extended format: the body element comes first; the reply went to the client that wrote (laptop).
    assert.equal(extended.elements()[0]?.name, 'body');
    assert.equal(extended.element('body')?.text(), 'Hi Mia');
    assert.equal(extended.attrs.clientID, 'laptop');
    await ok(ned.client, `<sendIM peer="${mia.address}"><subject>Lunch</subject><body>at noon?</body></sendIM>`);
    const withSubject = await waitFor(mia.client, 'readIM', (m) => m.element('subject') !== undefined);
    assert.equal(withSubject.element('subject')?.text(), 'Lunch');
    await ok(ned.client, `<sendIM peer="${mia.address}"><gone/></sendIM>`);
    assert.equal((await waitFor(mia.client, 'readIM')).elements()[0]?.name, 'gone');
  });

  test('a conversation follows the client that wrote; closeIM unlocks it and tells the peer', async () => {
    const oli = await newUser();
    const pam = await newUser();
    await bind(oli);
    await bind(pam, 'clientID="one"');
    const pam2 = await secondSession(pam);
    await bind(pam2, 'clientID="two"');
    await ok(pam2, `<sendIM peer="${oli.address}">from two</sendIM>`);
    await waitFor(oli.client, 'readIM');
    await ok(oli.client, `<sendIM peer="${pam.address}">back to you</sendIM>`);
    assert.equal((await waitFor(pam2, 'readIM')).text(), 'back to you');
    await pam.client.nothingMore('readIM');
    await ok(oli.client, `<closeIM peer="${pam.address}"/>`);
    assert.equal((await waitFor(pam2, 'readIM')).elements()[0]?.name, 'gone');
    // A message with clientID goes to that client alone.
    await ok(oli.client, `<sendIM peer="${pam.address}" clientID="one">to one</sendIM>`);
    assert.equal((await waitFor(pam.client, 'readIM')).text(), 'to one');
    await pam2.nothingMore('readIM');
  });

  test('messages to an account with no session are kept and come to its next bound session, oldest first', async () => {
    const quinn = await newUser();
    const rose = await newUser();
    rose.client.close();
    await bind(quinn);
    await ok(quinn.client, `<sendIM peer="${rose.address}">first</sendIM>`);
    await ok(quinn.client, `<sendIM peer="${rose.address}"><body>second</body></sendIM>`);
    // Chat states alone are not kept.
    await ok(quinn.client, `<sendIM peer="${rose.address}"><composing/></sendIM>`);
    const { client } = await server.login(rose.address, 'secret');
    await bind(client, 'readIM="1"');
    const first = await waitFor(client, 'readIM');
    const second = await waitFor(client, 'readIM');
    assert.deepEqual([first.element('body')?.text(), second.element('body')?.text()], ['first', 'second']);
    // When the server got it (the newer spec's gmtTime).
    assert.match(first.attrs.gmtTime ?? '', /^\d{8}T\d{6}Z?$/);
    await client.nothingMore('readIM');
    // Taken, not copied: another session binding later gets nothing.
    const again = await secondSession({ address: rose.address, client });
    await bind(again);
    await again.nothingMore('readIM');
  });

  test('errorIM for an unknown user and for another domain, with the sendIM id', async () => {
    const sam = await newUser();
    await bind(sam);
    const domain = server.config.defaultDomain;
    const sent = await ok(sam.client, `<sendIM id="s-1" peer="nobody-here@${domain}">hello?</sendIM>`);
    assert.equal(sent.response.attrs.errorText, undefined);
    const error = await waitFor(sam.client, 'errorIM');
    assert.equal(error.attrs.peer, `nobody-here@${domain}`);
    assert.equal(error.attrs.sendid, 's-1');
    assert.equal(error.attrs.signalCode, '503');
    assert.match(error.attrs.errorText ?? '', /does not exist/);
    await ok(sam.client, '<sendIM id="s-2" peer="someone@elsewhere.example">hello?</sendIM>');
    const remote = await waitFor(sam.client, 'errorIM');
    assert.equal(remote.attrs.sendid, 's-2');
    assert.match(remote.attrs.errorText ?? '', /not served here/);
  });

  test('bad sendIM input is refused', async () => {
    const user = await newUser();
    await fails(user.client, '<sendIM>no peer</sendIM>', /peer is required/);
    await fails(user.client, '<sendIM peer="a b">x</sendIM>', /not an address/);
    await fails(user.client, `<sendIM peer="${user.address}" type="shout">x</sendIM>`, /chat, groupchat/);
    await fails(user.client, `<sendIM peer="${user.address}">${'x'.repeat(70_000)}</sendIM>`, /longer than/);
  });
});

describe('signalBind and iq', () => {
  test('clientID modes: fixed refuses a name in use, kill closes the session holding it, the default picks another name', async () => {
    const tom = await newUser();
    await bind(tom, 'clientID="main"');
    const second = await secondSession(tom);
    await fails(second, '<signalBind clientID="main" mode="fixed"/>', /in use/);
    await ok(second, '<signalBind clientID="main"/>');
    await ok(tom.client, `<sendIM peer="${tom.address}" clientID="main">to main</sendIM>`);
    assert.equal((await waitFor(tom.client, 'readIM')).text(), 'to main');
    const third = await secondSession(tom);
    await ok(third, '<signalBind clientID="main" mode="kill"/>');
    await tom.client.waitClosed();
    await ok(third, '<signalUnbind/>');
    await fails(third, '<signalUnbind/>', /not bound/);
  });

  test("iqSend of a vCard request to a contact answers with iqRead of the account's vCard", async () => {
    const uma = await newUser();
    const vic = await newUser('Vic Torres');
    await ok(vic.client, '<prefsStore type="publicInfo"><title>Engineer</title></prefsStore>');
    await bind(uma);
    await ok(uma.client, `<iqSend peer="${vic.address}" type="get" iqid="v1"><vCard xmlns="vcard-temp"/></iqSend>`);
    const answer = await waitFor(uma.client, 'iqRead');
    assert.equal(answer.attrs.type, 'result');
    assert.equal(answer.attrs.iqid, 'v1');
    assert.equal(answer.attrs.peer, vic.address);
    const card = answer.elements()[0]!;
    assert.equal(card.name, 'vCard');
    assert.equal(card.element('FN')?.text(), 'Vic Torres');
    assert.equal(card.element('TITLE')?.text(), 'Engineer');
    // An iq to a client that is not there: service-unavailable comes back as an error iqRead.
    await ok(uma.client, `<iqSend peer="${vic.address}" clientID="nowhere" type="get" iqid="v2"><ping xmlns="urn:xmpp:ping"/></iqSend>`);
    const error = await waitFor(uma.client, 'iqRead');
    assert.equal(error.attrs.type, 'error');
    assert.equal(error.attrs.iqid, 'v2');
    // Between two bound sessions, a request and its answer travel as iqRead both ways.
    await bind(vic, 'clientID="pc"');
    await ok(uma.client, `<iqSend peer="${vic.address}" clientID="pc" type="get" iqid="v3"><query xmlns="jabber:iq:version"/></iqSend>`);
    const request = await waitFor(vic.client, 'iqRead');
    assert.equal(request.attrs.type, 'get');
    assert.equal(request.attrs.iqid, 'v3');
    assert.equal(request.elements()[0]?.attrs.xmlns, 'jabber:iq:version');
    await ok(vic.client, `<iqSend peer="${uma.address}" clientID="${request.attrs.clientID}" type="result" iqid="v3"><query xmlns="jabber:iq:version"><name>test</name></query></iqSend>`);
    const result = await waitFor(uma.client, 'iqRead', (m) => m.attrs.iqid === 'v3');
    assert.equal(result.attrs.type, 'result');
    assert.equal(result.elements()[0]?.element('name')?.text(), 'test');
    await fails(uma.client, `<iqSend peer="${vic.address}" type="get"><ping xmlns="urn:xmpp:ping"/></iqSend>`, /iqid/);
    await fails(uma.client, `<iqSend peer="${vic.address}" type="get" iqid="x"/>`, /exactly one/);
  });
});

describe('over HTTP', () => {
  test('a web client bound over the HTTP binding gets readIM through its long poll and writes through sync, as browser clients do', async () => {
    const web = await server.newAccount('imweb');
    const tcp = await newUser();
    const http = (path: string, body?: string) => httpRequest(server.ports.http, path, body === undefined ? {} : { body, headers: { 'Content-Type': 'text/xml' } });
    const login = parseXml((await http(`/XIMSSLogin/?userName=${encodeURIComponent(web)}&password=secret&errorAsXML=1&version=6.1`)).text);
    const urlID = login.elements()[0]!.attrs.urlID!;
    const batch = parseXml((await http(`/Session/${urlID}/sync?reqSeq=1`, '<XIMSS><signalBind id="b" clientID="browser" presence="yes" readIM="1"/><presenceSet id="p"><presence>online</presence></presenceSet></XIMSS>')).text);
    assert.deepEqual(batch.elements().map((e) => [e.name, e.attrs.id, e.attrs.errorText]), [['response', 'b', undefined], ['response', 'p', undefined]]);
    await bind(tcp);
    await ok(tcp.client, `<sendIM peer="${web}">hello browser</sendIM>`);
    const polled = parseXml((await http(`/Session/${urlID}/?ackSeq=0&maxWait=10`)).text);
    const read = polled.elements().find((e) => e.name === 'readIM');
    assert.ok(read, polled.toString());
    assert.equal(read.attrs.peer, tcp.address);
    assert.equal(read.elements()[0]?.name, 'body');
    assert.equal(read.element('body')?.text(), 'hello browser');
    const answer = parseXml((await http(`/Session/${urlID}/sync?reqSeq=2`, `<XIMSS><sendIM id="s" peer="${tcp.address}">hello tcp</sendIM></XIMSS>`)).text);
    assert.equal(answer.elements()[0]?.attrs.errorText, undefined);
    assert.equal((await waitFor(tcp.client, 'readIM')).element('body')?.text(), 'hello tcp');
  });
});

describe('limits', () => {
  let small: TestServer;
  before(async () => {
    small = await startTestServer({ im: { rosterItems: 2, offlineMessages: 2, resourcesPerAccount: 2, rosterGroups: 2 } });
  });
  after(() => small.stop());

  test('a full roster, a full offline queue and too many clients are refused with clear errors; nothing else is affected', async () => {
    const owner = await small.newAccount('lim');
    const { client } = await small.login(owner, 'secret');
    await ok(client, '<rosterSet peer="one@example.org"/>');
    await ok(client, '<rosterSet peer="two@example.org"/>');
    await fails(client, '<rosterSet peer="three@example.org"/>', /roster is full/);
    // Changing an existing contact is still fine.
    await ok(client, '<rosterSet peer="two@example.org" name="Two"/>');
    await fails(client, '<rosterSet peer="two@example.org"><group>a</group><group>b</group><group>c</group></rosterSet>', /at most 2 groups/);

    // Two messages wait for an offline user; the third bounces with errorIM.
    const away = await small.newAccount('lim');
    await ok(client, '<signalBind/>');
    await ok(client, `<sendIM id="o1" peer="${away}">1</sendIM>`);
    await ok(client, `<sendIM id="o2" peer="${away}">2</sendIM>`);
    await ok(client, `<sendIM id="o3" peer="${away}">3</sendIM>`);
    const bounced = await client.until(() => client.asyncMessages.find((m) => m.name === 'errorIM'));
    assert.equal(bounced.attrs.sendid, 'o3');
    assert.match(bounced.attrs.errorText ?? '', /cannot take more messages/);

    // Two bound clients at most: the third session cannot bind, the others are untouched.
    const second = (await small.login(owner, 'secret')).client;
    await ok(second, '<signalBind/>');
    const third = (await small.login(owner, 'secret')).client;
    await fails(third, '<signalBind/>', /too many clients/);
    await ok(second, `<sendIM peer="${owner}">still works</sendIM>`);
  });
});
