/**
 * Multi-user chat (XEP-0045) on the wire, through XIMSS sessions (presenceSet to join, sendIM
 * type="groupchat" to talk, readIM and presence to read, iqSend for the muc#owner and
 * muc#admin requests), and through an in-process XMPP client for what XIMSS cannot say (the
 * MUC join element: locked rooms, passwords, history requests): instant rooms, nickname
 * conflicts, messages both ways, history and subject, private messages, kick, ban, members-only
 * rooms, configuration, destroy, leaving on disconnect, a persistent room across a restart,
 * the service's disco, bad input.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../src/log.js';
import { startServer } from '../src/server.js';
import type { ImClient } from '../src/services/im/router.js';
import type { ImService } from '../src/services/im/service.js';
import type { AccountRecord } from '../src/store/store.js';
import type { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { startPostgres } from './fixtures/postgres.js';
import { fails, loginWithUrlId, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const SERVICE = 'conference.example.test';
const MUC_USER = 'http://jabber.org/protocol/muc#user';

/** The first async message of this name that `match` accepts (taken off the list). */
const waitFor = (client: XimssClient, name: string, match: (m: XmlElement) => boolean = () => true): Promise<XmlElement> => client.takeAsync(name, match);

let server: TestServer;
before(async () => {
  server = await startTestServer({ im: { mucOccupantsPerRoom: 5, mucHistory: 20 } });
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
}

let roomCounter = 0;
function newRoom(): string {
  return `room${++roomCounter}@${SERVICE}`;
}

/** A new account's session, bound (readIM in the extended format). */
async function newUser(target: TestServer = server): Promise<User> {
  const address = await target.newAccount('muc');
  const { client } = await target.login(address, 'secret');
  await ok(client, '<signalBind readIM="1"/>');
  return { address, client };
}

function codes(m: XmlElement): string[] {
  return (m.elements('x').find((x) => x.attrs.xmlns === MUC_USER)?.elements('status') ?? []).map((s) => s.attrs.code!).sort();
}

function item(m: XmlElement): Record<string, string> {
  return m.elements('x').find((x) => x.attrs.xmlns === MUC_USER)?.element('item')?.attrs ?? {};
}

/** Enters the room; resolves with the self-presence (status 110). */
async function join(user: User, room: string, nick: string): Promise<XmlElement> {
  await ok(user.client, `<presenceSet peer="${room}" clientID="${nick}"><presence>online</presence></presenceSet>`);
  const self = await waitFor(user.client, 'presence', (m) => m.attrs.peer === room && m.attrs.clientID === nick && codes(m).includes('110'));
  // Every room sends its subject after the history: the entrance is complete.
  await waitFor(user.client, 'readIM', (m) => m.attrs.peer === room && m.element('subject') !== undefined && m.element('body') === undefined);
  return self;
}

async function joinFails(user: User, room: string, nick: string, text: RegExp): Promise<XmlElement> {
  await ok(user.client, `<presenceSet peer="${room}" clientID="${nick}"/>`);
  const error = await waitFor(user.client, 'presence', (m) => m.attrs.peer === room && m.attrs.type === 'error');
  assert.match(error.attrs.errorText ?? '', text);
  return error;
}

async function say(user: User, room: string, text: string): Promise<void> {
  await ok(user.client, `<sendIM peer="${room}" type="groupchat">${text}</sendIM>`);
}

async function heard(user: User, room: string, from: string, text: string): Promise<XmlElement> {
  const m = await waitFor(user.client, 'readIM', (r) => r.attrs.peer === room && r.attrs.clientID === from && r.element('body')?.text() === text);
  assert.equal(m.attrs.type, 'groupchat');
  return m;
}

let iqCounter = 0;
/** An iq to the room (or one of its occupants) through iqSend; resolves with its iqRead answer. */
async function iq(user: User, peer: string, type: 'get' | 'set', payload: string, clientID?: string): Promise<XmlElement> {
  const iqid = `q${++iqCounter}`;
  await ok(user.client, `<iqSend peer="${peer}"${clientID ? ` clientID="${clientID}"` : ''} type="${type}" iqid="${iqid}">${payload}</iqSend>`);
  return waitFor(user.client, 'iqRead', (m) => m.attrs.iqid === iqid);
}

function errorCondition(answer: XmlElement): string | undefined {
  assert.equal(answer.attrs.type, 'error', `an error: ${answer.toString()}`);
  return answer.element('error')?.elements().find((c) => c.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas' && c.name !== 'text')?.name;
}

const admin = (items: string): string => `<query xmlns="http://jabber.org/protocol/muc#admin">${items}</query>`;
function ownerSubmit(fields: Record<string, string>): string {
  const f = Object.entries(fields)
    .map(([v, value]) => `<field var="${v}"><value>${value}</value></field>`)
    .join('');
  return `<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#roomconfig</value></field>${f}</x></query>`;
}

describe('entering, talking, leaving', () => {
  test('the first to enter makes an instant room and owns it; occupants see each other; messages reach everyone; a taken nickname is refused; leaving is seen', async () => {
    const alice = await newUser();
    const bob = await newUser();
    const carol = await newUser();
    const room = newRoom();
    const self = await join(alice, room, 'Alice');
    assert.deepEqual(codes(self), ['110', '201']);
    assert.equal(item(self).affiliation, 'owner');
    assert.equal(item(self).role, 'moderator');
    assert.match(item(self).jid ?? '', new RegExp(`^${alice.address}/`));

    await ok(bob.client, `<presenceSet peer="${room}" clientID="Bob"><show>away</show><status>reading</status></presenceSet>`);
    // Bob learns who is there first, then sees himself (semi-anonymous: Alice's address hidden from a participant).
    const aliceSeen = await waitFor(bob.client, 'presence', (m) => m.attrs.clientID === 'Alice');
    assert.equal(aliceSeen.attrs.peer, room);
    assert.equal(item(aliceSeen).role, 'moderator');
    assert.equal(item(aliceSeen).jid, undefined);
    const bobSelf = await waitFor(bob.client, 'presence', (m) => m.attrs.clientID === 'Bob');
    assert.deepEqual(codes(bobSelf), ['110']);
    assert.equal(item(bobSelf).role, 'participant');
    assert.equal(item(bobSelf).affiliation, 'none');
    // The moderator sees Bob's real address and his presence.
    const bobSeen = await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Bob');
    assert.match(item(bobSeen).jid ?? '', new RegExp(`^${bob.address}/`));
    assert.equal(bobSeen.element('show')?.text(), 'away');
    assert.equal(bobSeen.element('status')?.text(), 'reading');

    await say(bob, room, 'hello room');
    await heard(alice, room, 'Bob', 'hello room');
    await heard(bob, room, 'Bob', 'hello room');
    await say(alice, room, 'hi Bob');
    await heard(bob, room, 'Alice', 'hi Bob');
    await heard(alice, room, 'Alice', 'hi Bob');

    const error = await joinFails(carol, room, 'Bob', /taken/);
    assert.equal(error.attrs.clientID, 'Bob');
    assert.equal(error.attrs.signalCode, '409');
    await alice.client.nothingMore('presence', (m) => m.attrs.type !== 'unavailable' && m.attrs.clientID === 'Bob');

    // A presence change is seen by all.
    await ok(bob.client, `<presenceSet peer="${room}" clientID="Bob"><presence>busy</presence></presenceSet>`);
    const busy = await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Bob');
    assert.equal(busy.element('show')?.text(), 'dnd');

    // A nickname change: 303 with the new nick, then the presence under the new one.
    await ok(bob.client, `<presenceSet peer="${room}" clientID="Robert"/>`);
    const renamed = await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Bob' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(renamed), ['303']);
    assert.equal(item(renamed).nick, 'Robert');
    await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Robert' && m.attrs.type === undefined);
    const ownRename = await waitFor(bob.client, 'presence', (m) => m.attrs.clientID === 'Bob' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(ownRename), ['110', '303']);
    await say(bob, room, 'renamed');
    await heard(alice, room, 'Robert', 'renamed');

    await ok(bob.client, `<presenceSet peer="${room}" clientID="Robert" type="unavailable"/>`);
    const gone = await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Robert' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(gone), []);
    const ownGone = await waitFor(bob.client, 'presence', (m) => m.attrs.clientID === 'Robert' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(ownGone), ['110']);
    // Out of the room, Bob's messages are refused.
    await ok(bob.client, `<sendIM peer="${room}" type="groupchat">still here?</sendIM>`);
    const refused = await waitFor(bob.client, 'errorIM', (m) => m.attrs.peer === room);
    assert.match(refused.attrs.errorText ?? '', /only occupants/);
    await alice.client.nothingMore('readIM', (m) => m.element('body')?.text() === 'still here?');
  });

  test('a client that disconnects leaves its rooms; the last one out ends a temporary room', async () => {
    const dan = await newUser();
    const eve = await newUser();
    const room = newRoom();
    await join(dan, room, 'Dan');
    await join(eve, room, 'Eve');
    eve.client.close();
    const gone = await waitFor(dan.client, 'presence', (m) => m.attrs.clientID === 'Eve' && m.attrs.type === 'unavailable');
    assert.equal(gone.attrs.peer, room);
    await ok(dan.client, `<presenceSet peer="${room}" clientID="Dan" type="unavailable"/>`);
    await waitFor(dan.client, 'presence', (m) => m.attrs.clientID === 'Dan' && m.attrs.type === 'unavailable');
    // The room ended with its last occupant.
    assert.equal(errorCondition(await iq(dan, room, 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>')), 'item-not-found');
    // Entering again makes a new room (201 again).
    assert.deepEqual(codes(await join(dan, room, 'Dan')), ['110', '201']);
  });

  test('a full room refuses newcomers (the configured limit, and the service limit)', async () => {
    const owner = await newUser();
    const room = newRoom();
    await join(owner, room, 'Owner');
    const answer = await iq(owner, room, 'set', ownerSubmit({ 'muc#roomconfig_maxusers': '2' }));
    assert.equal(answer.attrs.type, 'result');
    const second = await newUser();
    await join(second, room, 'Second');
    const third = await newUser();
    await joinFails(third, room, 'Third', /full/);
    assert.equal(errorCondition(await iq(owner, room, 'set', ownerSubmit({ 'muc#roomconfig_maxusers': '99' }))), 'not-acceptable');
  });
});

describe('service limits', () => {
  test('rooms per service: a new room beyond the limit is refused until one ends; occupants per room', async () => {
    const small = await startTestServer({ im: { mucRoomsPerService: 2, mucOccupantsPerRoom: 2 } });
    try {
      const wes = await newUser(small);
      await join(wes, `one@${SERVICE}`, 'Wes');
      await join(wes, `two@${SERVICE}`, 'Wes');
      const refused = await joinFails(wes, `three@${SERVICE}`, 'Wes', /2 rooms already/);
      assert.equal(refused.attrs.signalCode, '405');
      // A room of another local domain's service counts apart.
      await small.addAccount('someone@other.test', 'secret');
      await join(wes, 'one@conference.other.test', 'Wes');
      await ok(wes.client, `<presenceSet peer="two@${SERVICE}" clientID="Wes" type="unavailable"/>`);
      await waitFor(wes.client, 'presence', (m) => m.attrs.peer === `two@${SERVICE}` && m.attrs.type === 'unavailable');
      await join(wes, `three@${SERVICE}`, 'Wes');
      // Two occupants at most (the owner's admins excepted).
      const xan = await newUser(small);
      await join(xan, `one@${SERVICE}`, 'Xan');
      const yul = await newUser(small);
      await joinFails(yul, `one@${SERVICE}`, 'Yul', /full/);
    } finally {
      await small.stop();
    }
  });
});

describe('history, subject and private messages', () => {
  test('a newcomer gets the recent history then the subject; the subject is the moderators’; a private message goes to one occupant', async () => {
    const fay = await newUser();
    const gus = await newUser();
    const hal = await newUser();
    const room = newRoom();
    await join(fay, room, 'Fay');
    for (const text of ['one', 'two', 'three']) await say(fay, room, text);
    await ok(fay.client, `<sendIM peer="${room}" type="groupchat"><subject>Plans for Monday</subject></sendIM>`);
    const subjectEcho = await waitFor(fay.client, 'readIM', (m) => m.element('subject')?.text() === 'Plans for Monday');
    assert.equal(subjectEcho.attrs.clientID, 'Fay');

    await ok(gus.client, `<presenceSet peer="${room}" clientID="Gus"/>`);
    const history: string[] = [];
    for (const _ of [1, 2, 3]) history.push((await waitFor(gus.client, 'readIM', (m) => m.element('body') !== undefined)).element('body')!.text());
    assert.deepEqual(history, ['one', 'two', 'three']);
    const replayed = gus.client.received.filter((m) => m.name === 'readIM' && m.element('body')?.text() === 'two');
    assert.match(replayed[0]?.element('delay')?.attrs.stamp ?? '', /^\d{4}-\d\d-\d\dT/, 'history is stamped');
    assert.equal(fay.client.received.find((m) => m.name === 'readIM' && m.element('body')?.text() === 'two')?.element('delay'), undefined, 'live messages are not');
    const subject = await waitFor(gus.client, 'readIM', (m) => m.element('subject') !== undefined);
    assert.equal(subject.element('subject')!.text(), 'Plans for Monday');
    assert.equal(subject.attrs.clientID, 'Fay');

    // A participant may not change the subject (the room does not let participants).
    await ok(gus.client, `<sendIM peer="${room}" type="groupchat"><subject>Mine now</subject></sendIM>`);
    const refused = await waitFor(gus.client, 'errorIM');
    assert.match(refused.attrs.errorText ?? '', /subject/);
    assert.equal(refused.attrs.signalCode, '403');

    // A private message: to Fay only, from the room address with Gus's nickname.
    await ok(gus.client, `<sendIM peer="${room}" clientID="Fay" type="chat">just between us</sendIM>`);
    const pm = await waitFor(fay.client, 'readIM', (m) => m.element('body')?.text() === 'just between us');
    assert.equal(pm.attrs.peer, room);
    assert.equal(pm.attrs.clientID, 'Gus');
    assert.equal(pm.attrs.type, 'chat');
    await gus.client.nothingMore('readIM', (m) => m.element('body')?.text() === 'just between us');
    // Fay's next groupchat still goes to the whole room (the private message locked nothing).
    await say(fay, room, 'back to everyone');
    await heard(gus, room, 'Fay', 'back to everyone');
    // A private message to nobody, a groupchat to an occupant, one from outside: errors.
    await ok(gus.client, `<sendIM peer="${room}" clientID="Nobody" type="chat">hello?</sendIM>`);
    assert.equal((await waitFor(gus.client, 'errorIM')).attrs.signalCode, '404');
    await ok(gus.client, `<sendIM peer="${room}" clientID="Fay" type="groupchat">wrong</sendIM>`);
    assert.equal((await waitFor(gus.client, 'errorIM')).attrs.signalCode, '400');
    await ok(hal.client, `<sendIM peer="${room}" clientID="Fay" type="chat">outsider</sendIM>`);
    assert.equal((await waitFor(hal.client, 'errorIM')).attrs.signalCode, '406');

    // The owner lets participants change the subject.
    assert.equal((await iq(fay, room, 'set', ownerSubmit({ 'muc#roomconfig_changesubject': '1' }))).attrs.type, 'result');
    await ok(gus.client, `<sendIM peer="${room}" type="groupchat"><subject>Mine now</subject></sendIM>`);
    await waitFor(fay.client, 'readIM', (m) => m.element('subject')?.text() === 'Mine now' && m.attrs.clientID === 'Gus');
  });

  test('an iq to an occupant: a vCard request is answered from its account; other requests are forwarded to its client', async () => {
    const ian = await newUser();
    const jo = await newUser();
    await ok(jo.client, '<prefsStore type="publicInfo"><title>Pilot</title></prefsStore>');
    const room = newRoom();
    await join(ian, room, 'Ian');
    await join(jo, room, 'Jo');
    const card = await iq(ian, room, 'get', '<vCard xmlns="vcard-temp"/>', 'Jo');
    assert.equal(card.attrs.type, 'result');
    assert.equal(card.attrs.peer, room);
    assert.equal(card.attrs.clientID, 'Jo');
    assert.equal(card.elements()[0]?.element('TITLE')?.text(), 'Pilot');
    // A version request reaches Jo's session from the room address, and its answer comes back.
    await ok(ian.client, `<iqSend peer="${room}" clientID="Jo" type="get" iqid="ver1"><query xmlns="jabber:iq:version"/></iqSend>`);
    const request = await waitFor(jo.client, 'iqRead', (m) => m.attrs.type === 'get');
    assert.equal(request.attrs.peer, room);
    assert.equal(request.attrs.clientID, 'Ian');
    assert.notEqual(request.attrs.iqid, 'ver1', 'the room rewrites the id');
    await ok(jo.client, `<iqSend peer="${room}" clientID="Ian" type="result" iqid="${request.attrs.iqid}"><query xmlns="jabber:iq:version"><name>jo-client</name></query></iqSend>`);
    const answer = await waitFor(ian.client, 'iqRead', (m) => m.attrs.iqid === 'ver1');
    assert.equal(answer.attrs.type, 'result');
    assert.equal(answer.attrs.clientID, 'Jo');
    assert.equal(answer.elements()[0]?.element('name')?.text(), 'jo-client');
    // A self-ping (XEP-0410) is answered by the room: in the room, a result; outside, not-acceptable.
    assert.equal((await iq(ian, room, 'get', '<ping xmlns="urn:xmpp:ping"/>', 'Ian')).attrs.type, 'result');
    await ian.client.nothingMore('iqRead', (m) => m.attrs.type === 'get');
    const outsider = await newUser();
    assert.equal(errorCondition(await iq(outsider, room, 'get', '<ping xmlns="urn:xmpp:ping"/>', 'Ian')), 'not-acceptable');
  });
});

describe('moderation (muc#admin through iqSend)', () => {
  test('kick (307) and ban (301) with actor and reason; a banned user cannot come back; lists; a participant may not moderate', async () => {
    const kim = await newUser();
    const lou = await newUser();
    const max = await newUser();
    const room = newRoom();
    await join(kim, room, 'Kim');
    await join(lou, room, 'Lou');
    await join(max, room, 'Max');

    assert.equal(errorCondition(await iq(lou, room, 'set', admin('<item nick="Max" role="none"/>'))), 'forbidden');
    assert.equal(errorCondition(await iq(lou, room, 'set', admin('<item nick="Kim" role="none"/>'))), 'forbidden');
    assert.equal(errorCondition(await iq(kim, room, 'set', admin('<item nick="Nobody" role="none"/>'))), 'item-not-found');
    assert.equal(errorCondition(await iq(kim, room, 'set', admin('<item nick="Max" role="emperor"/>'))), 'bad-request');

    // Kim revokes Lou's voice, then gives it back.
    assert.equal((await iq(kim, room, 'set', admin('<item nick="Lou" role="visitor"/>'))).attrs.type, 'result');
    const muted = await waitFor(max.client, 'presence', (m) => m.attrs.clientID === 'Lou' && item(m).role !== 'participant');
    assert.equal(item(muted).role, 'visitor');
    await ok(lou.client, `<sendIM peer="${room}" type="groupchat">can I speak?</sendIM>`);
    assert.equal((await waitFor(lou.client, 'errorIM')).attrs.signalCode, '403');
    assert.equal((await iq(kim, room, 'set', admin('<item nick="Lou" role="participant"/>'))).attrs.type, 'result');
    await waitFor(max.client, 'presence', (m) => m.attrs.clientID === 'Lou' && item(m).role === 'participant');

    // Kick.
    const kick = await iq(kim, room, 'set', admin('<item nick="Max" role="none"><reason>Be nice</reason></item>'));
    assert.equal(kick.attrs.type, 'result');
    const kicked = await waitFor(max.client, 'presence', (m) => m.attrs.clientID === 'Max' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(kicked), ['110', '307']);
    const kickedItem = kicked.elements('x').find((x) => x.attrs.xmlns === MUC_USER)!.element('item')!;
    assert.equal(kickedItem.element('reason')?.text(), 'Be nice');
    assert.equal(kickedItem.element('actor')?.attrs.nick, 'Kim');
    assert.deepEqual(codes(await waitFor(lou.client, 'presence', (m) => m.attrs.clientID === 'Max' && m.attrs.type === 'unavailable')), ['307']);
    // A kicked user may come back.
    await join(max, room, 'Max');

    // Ban by address: Max is thrown out (301) and cannot come back.
    const maxBare = max.address;
    assert.equal((await iq(kim, room, 'set', admin(`<item jid="${maxBare}" affiliation="outcast"><reason>Spam</reason></item>`))).attrs.type, 'result');
    const banned = await waitFor(max.client, 'presence', (m) => m.attrs.clientID === 'Max' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(banned), ['110', '301']);
    assert.equal(item(banned).affiliation, 'outcast');
    const error = await joinFails(max, room, 'Max', /banned/);
    assert.equal(error.attrs.signalCode, '403');

    // The ban list, for admins and owners only.
    const list = await iq(kim, room, 'get', admin('<item affiliation="outcast"/>'));
    assert.deepEqual(list.elements()[0]!.elements('item').map((i) => [i.attrs.jid, i.attrs.affiliation]), [[maxBare, 'outcast']]);
    assert.equal(errorCondition(await iq(lou, room, 'get', admin('<item affiliation="outcast"/>'))), 'forbidden');
    const participants = await iq(kim, room, 'get', admin('<item role="participant"/>'));
    assert.deepEqual(participants.elements()[0]!.elements('item').map((i) => i.attrs.nick), ['Lou']);
    // The owner cannot leave the room without an owner; an unban lets Max in again.
    assert.equal(errorCondition(await iq(kim, room, 'set', admin(`<item jid="${kim.address}" affiliation="member"/>`))), 'conflict');
    assert.equal((await iq(kim, room, 'set', admin(`<item jid="${maxBare}" affiliation="none"/>`))).attrs.type, 'result');
    await join(max, room, 'Max');
    // Making Lou an admin makes her a moderator at once.
    assert.equal((await iq(kim, room, 'set', admin(`<item jid="${lou.address}" affiliation="admin"/>`))).attrs.type, 'result');
    const promoted = await waitFor(max.client, 'presence', (m) => m.attrs.clientID === 'Lou' && item(m).role === 'moderator');
    assert.equal(item(promoted).affiliation, 'admin');
    // An admin may not touch the owner.
    assert.equal(errorCondition(await iq(lou, room, 'set', admin('<item nick="Kim" role="none"/>'))), 'not-allowed');
  });

  test('members-only: configuring it removes non-members (322); a non-member is refused; a member enters; an invitation makes a member', async () => {
    const ned = await newUser();
    const oz = await newUser();
    const pat = await newUser();
    const quin = await newUser();
    const room = newRoom();
    await join(ned, room, 'Ned');
    await join(oz, room, 'Oz');
    const form = await iq(ned, room, 'get', '<query xmlns="http://jabber.org/protocol/muc#owner"/>');
    const fields = form.elements()[0]!.element('x')!.elements('field').map((f) => f.attrs.var);
    for (const v of ['muc#roomconfig_roomname', 'muc#roomconfig_membersonly', 'muc#roomconfig_persistentroom', 'muc#roomconfig_whois', 'muc#roomconfig_roomsecret']) assert.ok(fields.includes(v), v);
    assert.equal(errorCondition(await iq(oz, room, 'get', '<query xmlns="http://jabber.org/protocol/muc#owner"/>')), 'forbidden');

    assert.equal((await iq(ned, room, 'set', ownerSubmit({ 'muc#roomconfig_membersonly': '1', 'muc#roomconfig_roomname': 'Staff' }))).attrs.type, 'result');
    const removed = await waitFor(oz.client, 'presence', (m) => m.attrs.clientID === 'Oz' && m.attrs.type === 'unavailable');
    assert.deepEqual(codes(removed), ['110', '322']);
    const refused = await joinFails(pat, room, 'Pat', /members only/);
    assert.equal(refused.attrs.clientID, 'Pat');

    assert.equal((await iq(ned, room, 'set', admin(`<item jid="${pat.address}" affiliation="member"/>`))).attrs.type, 'result');
    const self = await join(pat, room, 'Pat');
    assert.equal(item(self).affiliation, 'member');
    const members = await iq(ned, room, 'get', admin('<item affiliation="member"/>'));
    assert.deepEqual(members.elements()[0]!.elements('item').map((i) => [i.attrs.jid, i.attrs.nick]), [[pat.address, 'Pat']]);

    // The owner invites Quin: Quin is told (a message from the room) and may enter.
    await ok(ned.client, `<sendIM peer="${room}" type="normal"><x xmlns="${MUC_USER}"><invite to="${quin.address}"><reason>Join us</reason></invite></x></sendIM>`);
    const invitation = await waitFor(quin.client, 'readIM', (m) => m.attrs.peer === room);
    assert.match(invitation.element('body')?.text() ?? '', /Staff: Join us/);
    // Declining tells the inviter (through the room).
    await ok(quin.client, `<sendIM peer="${room}" type="normal"><x xmlns="${MUC_USER}"><decline to="${ned.address}"><reason>Busy now</reason></decline></x></sendIM>`);
    const declined = await waitFor(ned.client, 'readIM', (m) => m.attrs.peer === room && /declines/.test(m.element('body')?.text() ?? ''));
    assert.match(declined.element('body')!.text(), new RegExp(`^${quin.address} declines the invitation: Busy now$`));
    await join(quin, room, 'Quin');
    // A member may not invite to a members-only room.
    await ok(pat.client, `<sendIM peer="${room}" type="normal"><x xmlns="${MUC_USER}"><invite to="${oz.address}"/></x></sendIM>`);
    assert.equal((await waitFor(pat.client, 'errorIM')).attrs.signalCode, '403');
  });
});

describe('configuration and destruction', () => {
  test('the owner destroys the room: everyone leaves with the reason and the alternate venue; the room is gone', async () => {
    const ray = await newUser();
    const sue = await newUser();
    const room = newRoom();
    await join(ray, room, 'Ray');
    await join(sue, room, 'Sue');
    assert.equal(errorCondition(await iq(sue, room, 'set', `<query xmlns="http://jabber.org/protocol/muc#owner"><destroy/></query>`)), 'forbidden');
    const alternate = newRoom();
    const answer = await iq(ray, room, 'set', `<query xmlns="http://jabber.org/protocol/muc#owner"><destroy jid="${alternate}"><reason>Moved</reason></destroy></query>`);
    assert.equal(answer.attrs.type, 'result');
    const out = await waitFor(sue.client, 'presence', (m) => m.attrs.clientID === 'Sue' && m.attrs.type === 'unavailable');
    const destroy = out.elements('x').find((x) => x.attrs.xmlns === MUC_USER)!.element('destroy')!;
    assert.equal(destroy.attrs.jid, alternate);
    assert.equal(destroy.element('reason')?.text(), 'Moved');
    await waitFor(ray.client, 'presence', (m) => m.attrs.clientID === 'Ray' && m.attrs.type === 'unavailable');
    assert.equal(errorCondition(await iq(ray, room, 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>')), 'item-not-found');
  });

  test('the service: disco#info, listed by the server, its public rooms in disco#items; a room’s disco#info tells its features', async () => {
    const tia = await newUser();
    const info = await iq(tia, SERVICE, 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>');
    const query = info.elements()[0]!;
    assert.equal(query.element('identity')?.attrs.category, 'conference');
    assert.ok(query.elements('feature').some((f) => f.attrs.var === 'http://jabber.org/protocol/muc'));
    const unique = await iq(tia, SERVICE, 'get', '<unique xmlns="http://jabber.org/protocol/muc#unique"/>');
    assert.match(unique.elements()[0]?.text() ?? '', /^[0-9a-f]{24}$/);
    const serverItems = await iq(tia, 'example.test', 'get', '<query xmlns="http://jabber.org/protocol/disco#items"/>');
    assert.ok(serverItems.elements()[0]!.elements('item').some((i) => i.attrs.jid === SERVICE));

    const room = newRoom();
    await join(tia, room, 'Tia');
    assert.equal((await iq(tia, room, 'set', ownerSubmit({ 'muc#roomconfig_roomname': 'Tea room', 'muc#roomconfig_whois': 'anyone' }))).attrs.type, 'result');
    const items = await iq(tia, SERVICE, 'get', '<query xmlns="http://jabber.org/protocol/disco#items"/>');
    const listed = items.elements()[0]!.elements('item').find((i) => i.attrs.jid === room);
    assert.equal(listed?.attrs.name, 'Tea room');
    const roomInfo = (await iq(tia, room, 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>')).elements()[0]!;
    const features = roomInfo.elements('feature').map((f) => f.attrs.var);
    for (const f of ['http://jabber.org/protocol/muc', 'muc_temporary', 'muc_public', 'muc_open', 'muc_nonanonymous']) assert.ok(features.includes(f), f);
    assert.equal(roomInfo.element('identity')?.attrs.name, 'Tea room');
    // Hidden: not listed any more.
    assert.equal((await iq(tia, room, 'set', ownerSubmit({ 'muc#roomconfig_publicroom': '0' }))).attrs.type, 'result');
    const hidden = await iq(tia, SERVICE, 'get', '<query xmlns="http://jabber.org/protocol/disco#items"/>');
    assert.equal(hidden.elements()[0]!.elements('item').find((i) => i.attrs.jid === room), undefined);
    // Non-anonymous: a newcomer is told (100) and sees real addresses.
    const uri = await newUser();
    const self = await join(uri, room, 'Uri');
    assert.deepEqual(codes(self), ['100', '110']);
    const tiaSeen = uri.client.asyncMessages.find((m) => m.name === 'presence' && m.attrs.clientID === 'Tia');
    assert.match(item(tiaSeen!).jid ?? '', new RegExp(`^${tia.address}/`));
  });

  test('bad input: no nickname, a long one, an unknown service domain, an unbound session, a bad form value', async () => {
    const vi = await newUser();
    const room = newRoom();
    await ok(vi.client, `<presenceSet peer="${room}"/>`);
    assert.match((await waitFor(vi.client, 'presence', (m) => m.attrs.type === 'error')).attrs.errorText ?? '', /nickname/);
    await joinFails(vi, room, 'n'.repeat(129), /at most 128/);
    await ok(vi.client, `<presenceSet peer="room@conference.nowhere.test" clientID="Vi"/>`);
    assert.match((await waitFor(vi.client, 'presence', (m) => m.attrs.type === 'error')).attrs.errorText ?? '', /not served/);
    assert.equal(errorCondition(await iq(vi, 'room@conference.nowhere.test', 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>')), 'remote-server-not-found');
    // An unbound session could not receive the room: it is told to bind first.
    const address = await server.newAccount('muc');
    const { client } = await server.login(address, 'secret');
    await ok(client, `<presenceSet peer="${room}" clientID="Lone"/>`);
    assert.match((await waitFor(client, 'presence', (m) => m.attrs.type === 'error')).attrs.errorText ?? '', /signalBind/);
    await join(vi, room, 'Vi');
    assert.equal(errorCondition(await iq(vi, room, 'set', ownerSubmit({ 'muc#roomconfig_persistentroom': 'maybe' }))), 'not-acceptable');
    assert.equal(errorCondition(await iq(vi, room, 'set', ownerSubmit({ 'muc#roomconfig_passwordprotectedroom': '1' }))), 'not-acceptable');
    assert.equal(errorCondition(await iq(vi, room, 'set', '<query xmlns="http://jabber.org/protocol/muc#owner"/>')), 'bad-request');
    assert.equal(errorCondition(await iq(vi, room, 'set', admin(''))), 'bad-request');
    assert.equal(errorCondition(await iq(vi, room, 'get', '<query xmlns="jabber:iq:last"/>')), 'service-unavailable');
    await fails(vi.client, `<presenceSet peer="not an address" clientID="x"/>`, /not an address/);
  });
});

/**
 * An in-process XMPP client of an account: what XIMSS cannot send (the MUC join element with
 * a password or a history request) goes through the IM service as an XMPP resource would.
 */
class XmppTestClient implements ImClient {
  readonly kind = 'xmpp';
  available = true;
  interested = true;
  priority = 0;
  presence: XmlElement | undefined;
  carbons = false;
  readonly directed = new Set<string>();
  readonly received: XmlElement[] = [];
  private waiters: (() => void)[] = [];

  constructor(
    private readonly im: ImService,
    public account: AccountRecord,
    readonly resource: string,
  ) {}

  get jid(): string {
    return `${this.account.name}@${this.account.domain}/${this.resource}`;
  }

  deliver(stanza: XmlElement): void {
    this.received.push(parseXml(stanza.toString()));
    for (const w of this.waiters.splice(0)) w();
  }

  rosterPush(): void {}
  blockingPush(): void {}
  end(): void {}

  send(xml: string): Promise<void> {
    return this.im.fromClient(this, parseXml(xml));
  }

  /** Waits for a stanza matching `match` and takes it. */
  async next(match: (s: XmlElement) => boolean): Promise<XmlElement> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const index = this.received.findIndex(match);
      if (index >= 0) return this.received.splice(index, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`no such stanza; received: ${this.received.map(String).join('\n')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }
}

async function xmppClient(target: TestServer, resource: string): Promise<XmppTestClient> {
  const address = await target.newAccount('xmpp');
  const account = (await target.services.accounts.find(address))!;
  const client = new XmppTestClient(target.services.im, account, resource);
  assert.ok(await target.services.im.attach(client));
  return client;
}

describe('the MUC protocol of XMPP clients', () => {
  test('a room created with the MUC element is locked until the owner accepts the instant configuration; a password; a history request', async () => {
    const owner = await xmppClient(server, 'phone');
    const guest = await xmppClient(server, 'laptop');
    const room = newRoom();
    await owner.send(`<presence to="${room}/Boss"><x xmlns="http://jabber.org/protocol/muc"/></presence>`);
    const self = await owner.next((s) => s.name === 'presence' && s.attrs.from === `${room}/Boss`);
    assert.deepEqual(codes(self), ['110', '201']);
    assert.equal(self.attrs.to, owner.jid);
    await owner.next((s) => s.name === 'message' && s.element('subject') !== undefined);
    // Locked: nobody else enters yet.
    await guest.send(`<presence to="${room}/Guest"><x xmlns="http://jabber.org/protocol/muc"/></presence>`);
    const locked = await guest.next((s) => s.name === 'presence' && s.attrs.type === 'error');
    assert.ok(locked.element('error')?.element('item-not-found'));
    // The instant room (an empty submitted form) unlocks it, with a password set by a second form.
    await owner.send(`<iq to="${room}" type="set" id="c1"><query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"/></query></iq>`);
    assert.equal((await owner.next((s) => s.name === 'iq' && s.attrs.id === 'c1')).attrs.type, 'result');
    await owner.send(
      `<iq to="${room}" type="set" id="c2"><query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"><field var="muc#roomconfig_passwordprotectedroom"><value>1</value></field><field var="muc#roomconfig_roomsecret"><value>cauliflower</value></field></x></query></iq>`,
    );
    assert.equal((await owner.next((s) => s.name === 'iq' && s.attrs.id === 'c2')).attrs.type, 'result');
    for (const text of ['first', 'second', 'third']) await owner.send(`<message to="${room}" type="groupchat" id="${text}"><body>${text}</body></message>`);
    // The sender gets its own message back, with its id.
    const echo = await owner.next((s) => s.name === 'message' && s.attrs.id === 'third');
    assert.equal(echo.attrs.from, `${room}/Boss`);

    await guest.send(`<presence to="${room}/Guest"><x xmlns="http://jabber.org/protocol/muc"><password>wrong</password></x></presence>`);
    assert.ok((await guest.next((s) => s.name === 'presence' && s.attrs.type === 'error')).element('error')?.element('not-authorized'));
    await guest.send(`<presence to="${room}/Guest"><x xmlns="http://jabber.org/protocol/muc"><password>cauliflower</password><history maxstanzas="2"/></x></presence>`);
    await guest.next((s) => s.name === 'presence' && s.attrs.from === `${room}/Guest` && codes(s).includes('110'));
    const h1 = await guest.next((s) => s.name === 'message' && s.element('body') !== undefined);
    const h2 = await guest.next((s) => s.name === 'message' && s.element('body') !== undefined);
    assert.deepEqual([h1.element('body')!.text(), h2.element('body')!.text()], ['second', 'third']);
    assert.equal(h1.element('delay')?.attrs.from, room);
    assert.match(h1.element('delay')?.attrs.stamp ?? '', /^\d{4}-\d\d-\d\dT/);
    const subject = await guest.next((s) => s.name === 'message' && s.element('subject') !== undefined);
    assert.ok(subject.attrs.id);
    assert.equal(guest.received.filter((s) => s.name === 'message' && s.element('body')).length, 0, 'no more history than asked');
    // Going unavailable leaves every room the client entered.
    await server.services.im.detach(guest);
    const left = await owner.next((s) => s.name === 'presence' && s.attrs.from === `${room}/Guest` && s.attrs.type === 'unavailable');
    assert.equal(item(left).role, 'none');
    await server.services.im.detach(owner);
  });
});

describe('occupants that vanish', () => {
  test('an occupant whose client is gone without a word (its node died) is taken out at the next stanza', async () => {
    const owner = await xmppClient(server, 'desk');
    const ghost = await xmppClient(server, 'ghost');
    const room = newRoom();
    await owner.send(`<presence to="${room}/Owner"/>`);
    await owner.next((s) => s.name === 'message' && s.element('subject') !== undefined);
    await ghost.send(`<presence to="${room}/Ghost"/>`);
    await owner.next((s) => s.name === 'presence' && s.attrs.from === `${room}/Ghost`);
    // The client disappears from the directory, as when its node dies: no unavailable presence is sent.
    await server.services.im.router.unregister(ghost);
    await owner.send(`<message to="${room}" type="groupchat" id="m1"><body>anyone there?</body></message>`);
    const gone = await owner.next((s) => s.name === 'presence' && s.attrs.from === `${room}/Ghost` && s.attrs.type === 'unavailable');
    assert.equal(item(gone).role, 'none');
    await server.services.im.detach(owner);
  });
});

describe('persistent rooms', () => {
  test('a persistent room keeps its configuration, subject, affiliations and history across a restart', async () => {
    const first = await startTestServer();
    let second: Awaited<ReturnType<typeof startServer>> | undefined;
    const clients: XimssClient[] = [];
    try {
      const owner = await newUser(first);
      const banned = await newUser(first);
      const room = `lasting@${SERVICE}`;
      await join(owner, room, 'Keeper');
      assert.equal((await iq(owner, room, 'set', ownerSubmit({ 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_roomname': 'Lasting' }))).attrs.type, 'result');
      await say(owner, room, 'kept for later');
      await ok(owner.client, `<sendIM peer="${room}" type="groupchat"><subject>Long-lived</subject></sendIM>`);
      assert.equal((await iq(owner, room, 'set', admin(`<item jid="${banned.address}" affiliation="outcast"/>`))).attrs.type, 'result');
      await ok(owner.client, `<presenceSet peer="${room}" clientID="Keeper" type="unavailable"/>`);
      await waitFor(owner.client, 'presence', (m) => m.attrs.clientID === 'Keeper' && m.attrs.type === 'unavailable');
      await first.close();

      second = await startServer(first.config, { log: silentLogger, announcePassword: () => {} });
      const login = async (address: string): Promise<User> => {
        const { client } = await loginWithUrlId(second!.ports.ximss, address, 'secret');
        clients.push(client);
        await ok(client, '<signalBind readIM="1"/>');
        return { address, client };
      };
      const back = await login(owner.address);
      // Listed by the service while empty.
      const items = await iq(back, SERVICE, 'get', '<query xmlns="http://jabber.org/protocol/disco#items"/>');
      assert.equal(items.elements()[0]!.elements('item').find((i) => i.attrs.jid === room)?.attrs.name, 'Lasting');
      await ok(back.client, `<presenceSet peer="${room}" clientID="Keeper"/>`);
      const self = await waitFor(back.client, 'presence', (m) => m.attrs.clientID === 'Keeper' && codes(m).includes('110'));
      assert.deepEqual(codes(self), ['110'], 'not a new room');
      assert.equal(item(self).affiliation, 'owner');
      assert.equal((await waitFor(back.client, 'readIM', (m) => m.element('body') !== undefined)).element('body')!.text(), 'kept for later');
      assert.equal((await waitFor(back.client, 'readIM', (m) => m.element('subject') !== undefined)).element('subject')!.text(), 'Long-lived');
      const stillBanned = await login(banned.address);
      await joinFails(stillBanned, room, 'Again', /banned/);
      const info = (await iq(back, room, 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>')).elements()[0]!;
      assert.ok(info.elements('feature').some((f) => f.attrs.var === 'muc_persistent'));
      // Made temporary again, it ends with its last occupant.
      assert.equal((await iq(back, room, 'set', ownerSubmit({ 'muc#roomconfig_persistentroom': '0' }))).attrs.type, 'result');
      await ok(back.client, `<presenceSet peer="${room}" clientID="Keeper" type="unavailable"/>`);
      await waitFor(back.client, 'presence', (m) => m.attrs.clientID === 'Keeper' && m.attrs.type === 'unavailable');
      assert.equal(errorCondition(await iq(back, room, 'get', '<query xmlns="http://jabber.org/protocol/disco#info"/>')), 'item-not-found');
    } finally {
      for (const c of clients) c.close();
      await second?.close();
      await first.close().catch(() => {});
      rmSync(first.dataDir, { recursive: true, force: true });
    }
  });
});

describe('a room in a cluster', () => {
  test('two nodes on one PostgreSQL: a room hosted by one node serves occupants of both; large stanzas travel through the store; leaving on disconnect crosses nodes', async () => {
    const pg = await startPostgres();
    const nodes: TestServer[] = [];
    try {
      const url = await pg.createDatabase('muc');
      nodes.push(await startTestServer({ store: url, cluster: { nodeId: '101' } }));
      nodes.push(await startTestServer({ store: url, cluster: { nodeId: '102' } }));
      const [a, b] = nodes as [TestServer, TestServer];
      const login = async (node: TestServer, address: string): Promise<User> => {
        const { client } = await node.login(address, 'secret');
        await ok(client, '<signalBind readIM="1"/>');
        return { address, client };
      };
      const alice = await login(a, await a.newAccount('cl'));
      const bob = await login(b, await a.newAccount('cl'));
      const room = `shared@${SERVICE}`;
      await join(alice, room, 'Alice');
      // Node A hosts the room: Bob's entrance on node B travels there, and the room's answers come back.
      await join(bob, room, 'Bob');
      await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Bob');
      const host = async (): Promise<unknown> => ((await a.services.store.shared.get('muc-host', room, Date.now())) as { node?: string } | undefined)?.node;
      assert.equal(await host(), '101');
      await say(bob, room, 'from node B');
      await heard(alice, room, 'Bob', 'from node B');
      await heard(bob, room, 'Bob', 'from node B');
      const long = 'x'.repeat(12_000);
      await say(alice, room, long);
      await heard(bob, room, 'Alice', long);
      await say(bob, room, `${long}y`);
      await heard(alice, room, 'Bob', `${long}y`);
      assert.equal((await iq(bob, room, 'get', admin('<item affiliation="owner"/>'))).attrs.type, 'error', 'a participant reads no owner list, wherever it is');
      // Bob's session on node B ends: node A's room sees him go.
      bob.client.close();
      await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Bob' && m.attrs.type === 'unavailable');
      // The room ends with Alice; the next one to enter (on node B) hosts it anew.
      await ok(alice.client, `<presenceSet peer="${room}" clientID="Alice" type="unavailable"/>`);
      await waitFor(alice.client, 'presence', (m) => m.attrs.clientID === 'Alice' && m.attrs.type === 'unavailable');
      const carol = await login(b, await a.newAccount('cl'));
      assert.deepEqual(codes(await join(carol, room, 'Carol')), ['110', '201']);
      assert.equal(await host(), '102');
      await join(alice, room, 'Alice');
      await say(alice, room, 'now hosted on B');
      await heard(carol, room, 'Alice', 'now hosted on B');
    } finally {
      for (const node of nodes.reverse()) await node.stop();
      await pg.stop();
    }
  });
});
