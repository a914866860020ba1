/**
 * Meetings between people (iTIP, RFC 5546, over iMIP, RFC 6047): an organizer publishes a
 * meeting with a local and a remote attendee (the remote one through an SMTP sink acting as the
 * relay); the local attendee reads the invitation from the INBOX, accepts it (calendarAccept: the
 * item in their calendar, a REPLY to the organizer), the organizer applies the reply
 * (calendarUpdate); the remote attendee dropped gets a CANCEL; the meeting cancelled reaches the
 * local attendee, whose calendarDecline of the cancellation removes it; RSVP=FALSE and
 * sendReply="no" send nothing; calendarForward invites one more.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import ICAL from 'ical.js';
import type { XmlElement } from '../src/xml/element.js';
import { SmtpSink } from './fixtures/smtp-sink.js';
import { eventually, fails, ok, startTestServer, storedMessages, type TestServer, type XimssClient } from './helpers.js';

let sink: SmtpSink;
let server: TestServer;

before(async () => {
  sink = await SmtpSink.start();
  server = await startTestServer({ outbound: { relay: sink.relay, firstRetrySeconds: 1, maxRetrySeconds: 2, lifetimeSeconds: 30 } });
});
after(async () => {
  await server.stop();
  await sink.stop();
});

interface User {
  address: string;
  client: XimssClient;
}

async function newUser(name: string): Promise<User> {
  const address = await server.newAccount(name);
  const { client } = await server.login(address, 'secret');
  await ok(client, '<prefsStore><TimeZone>UTC</TimeZone></prefsStore>');
  await ok(client, '<mailboxCreate mailbox="Calendar" mailboxClass="IPF.Appointment"/>');
  await ok(client, '<calendarOpen calendar="Calendar"/>');
  return { address, client };
}

/** The iCalendar text of the text/calendar part of a message, with the part's method parameter. */
function calendarOf(raw: Buffer): { method: string; text: string } {
  const message = raw.toString('utf8');
  const m = /Content-Type: text\/calendar; charset=utf-8; method=(\w+)\r\nContent-Transfer-Encoding: base64\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(message);
  assert.ok(m, 'an iMIP text/calendar part');
  return { method: m[1]!, text: Buffer.from(m[2]!.replace(/\r\n/g, ''), 'base64').toString('utf8') };
}

/** The messages of an INBOX that carry a text/calendar part of this method. */
async function inboxCalendars(address: string, method: string, count = 1): Promise<{ uid: number; text: string }[]> {
  return eventually(async () => {
    const found = (await storedMessages(server, address, 'INBOX')).filter((m) => /method=/.test(m.raw.toString('utf8'))).map((m) => ({ uid: m.uid, ...calendarOf(m.raw) }));
    const wanted = found.filter((f) => f.method === method);
    return wanted.length >= count ? wanted : undefined;
  }, `${count} ${method} in ${address}'s INBOX`);
}

function vcalendar(components: string, method?: string): string {
  return `<iCalendar xmlns="urn:ietf:params:xml:ns:xcal"><vCalendar version="2.0" prodid="test"${method ? ` method="${method}"` : ''}>${components}</vCalendar></iCalendar>`;
}

async function events(client: XimssClient, from: string, till: string): Promise<XmlElement[]> {
  const reply = await ok(client, `<findEvents calendar="Calendar" timeFrom="${from}" timeTill="${till}"/>`);
  return reply.messages.flatMap((m) => m.elements('event'));
}

/** An iCalendar text as the element a client sends back (via folderRead's XML of the part). */
async function readInvitation(client: XimssClient, uid: number): Promise<string> {
  // Opened by the first call; later ones find it open.
  const opened = await client.request('<folderOpen folder="IN" mailbox="INBOX"><field>Subject</field></folderOpen>');
  const error = opened.response.attrs.errorText;
  assert.ok(error === undefined || error === 'folder has already been opened', error);
  const read = await ok(client, `<folderRead folder="IN" UID="${uid}"/>`);
  const calendar = read.messages[0]!.element('EMail')!.element('MIME')!.elements('MIME').map((p) => p.element('iCalendar')).find((e) => e !== undefined);
  assert.ok(calendar, 'folderRead shows the invitation as iCalendar XML');
  return calendar.toString();
}

function partstatOf(text: string, address: string): string | undefined {
  const calendar = new ICAL.Component(ICAL.parse(text) as unknown[]);
  for (const c of calendar.getAllSubcomponents('vevent')) {
    for (const p of c.getAllProperties('attendee')) {
      if (String(p.getFirstValue()).toLowerCase() === `mailto:${address}`.toLowerCase()) return String(p.getParameter('partstat') ?? '');
    }
  }
  return undefined;
}

describe('meetings over iTIP/iMIP', () => {
  test('request, accept, reply applied, an attendee dropped, the meeting cancelled and declined', async () => {
    const boss = await newUser('boss');
    const boy = await newUser('boy');
    const remote = 'partner@remote.example';
    const meeting = (attendees: string[], sequence = 0): string =>
      vcalendar(
        `<vevent><uid>meet-1</uid><sequence>${sequence}</sequence><summary>Planning</summary><dtstart>20240610T140000Z</dtstart><dtend>20240610T150000Z</dtend>` +
          `<organizer CN="Big Boss">MAILTO:${boss.address}</organizer>` +
          attendees.map((a) => `<attendee CN="${a.split('@')[0]}" RSVP="TRUE" PARTSTAT="NEEDS-ACTION">MAILTO:${a}</attendee>`).join('') +
          '</vevent>',
      );
    await ok(boss.client, `<calendarPublish calendar="Calendar">${meeting([boy.address, remote])}</calendarPublish>`);
    // The organizer's calendar has the meeting, with boss as organizer.
    const own = await events(boss.client, '20240610T000000', '20240611T000000');
    assert.equal(own[0]!.attrs.organizer, 'yes');
    assert.equal(own[0]!.attrs.attendees, '2');

    // The remote attendee: a REQUEST through the relay.
    const relayed = await sink.waitTo(remote);
    const request = calendarOf(relayed.data);
    assert.equal(request.method, 'REQUEST');
    assert.match(request.text, /METHOD:REQUEST/);
    assert.match(request.text, /UID:meet-1/);
    assert.match(relayed.data.toString('utf8'), /^Subject: Invitation: Planning/m);
    assert.equal(relayed.mailFrom, boss.address);

    // The local attendee: the REQUEST in the INBOX, accepted from its XML.
    const [invitation] = await inboxCalendars(boy.address, 'REQUEST');
    const xml = await readInvitation(boy.client, invitation!.uid);
    await ok(boy.client, `<calendarAccept calendar="Calendar" PARTSTAT="ACCEPTED">${xml}<replyComment>See you there</replyComment></calendarAccept>`);
    const accepted = await events(boy.client, '20240610T000000', '20240611T000000');
    assert.equal(accepted.length, 1);
    assert.equal(accepted[0]!.attrs.organizer, undefined);

    // The organizer gets the REPLY and applies it.
    const [reply] = await inboxCalendars(boss.address, 'REPLY');
    assert.match(reply!.text, /METHOD:REPLY/);
    assert.equal(partstatOf(reply!.text, boy.address), 'ACCEPTED');
    assert.match(reply!.text, /COMMENT:See you there/);
    assert.equal((reply!.text.match(/ATTENDEE/g) ?? []).length, 1, 'a reply names its attendee only');
    const replyXml = await readInvitation(boss.client, reply!.uid);
    await ok(boss.client, `<calendarUpdate calendar="Calendar">${replyXml}</calendarUpdate>`);
    const updated = (await events(boss.client, '20240610T000000', '20240611T000000'))[0]!;
    assert.notEqual(updated.attrs.UID, own[0]!.attrs.UID, 'the item was stored again');
    const stored = await ok(boss.client, `<calendarReadItem calendar="Calendar" UID="${updated.attrs.UID}"/>`);
    assert.match(stored.messages[0]!.toString(), new RegExp(`PARTSTAT="ACCEPTED"[^>]*>MAILTO:${boy.address}`, 'i'));

    // The remote attendee is dropped: a CANCEL to them alone (sendRequests="new": no new REQUEST to boy).
    const before = sink.to(remote).length;
    await ok(boss.client, `<calendarPublish calendar="Calendar" sendRequests="new">${meeting([boy.address], 1)}</calendarPublish>`);
    const cancelled = await eventually(() => (sink.to(remote).length > before ? sink.to(remote).at(-1) : undefined), 'a CANCEL to the remote attendee');
    const cancel = calendarOf(cancelled.data);
    assert.equal(cancel.method, 'CANCEL');
    assert.match(cancel.text, /STATUS:CANCELLED/);
    assert.equal((await inboxCalendars(boy.address, 'REQUEST')).length, 1, 'no second REQUEST to boy');

    // The meeting cancelled: boy gets a CANCEL; declining it with the calendar removes the meeting.
    await ok(boss.client, '<calendarCancel calendar="Calendar" itemUID="meet-1"><requestComment>Postponed</requestComment></calendarCancel>');
    assert.equal((await events(boss.client, '20240610T000000', '20240611T000000')).length, 0);
    const [cancelNote] = await inboxCalendars(boy.address, 'CANCEL');
    assert.match(cancelNote!.text, /METHOD:CANCEL/);
    const cancelXml = await readInvitation(boy.client, cancelNote!.uid);
    const repliesBefore = (await inboxCalendars(boss.address, 'REPLY')).length;
    await ok(boy.client, `<calendarDecline calendar="Calendar">${cancelXml}</calendarDecline>`);
    assert.equal((await events(boy.client, '20240610T000000', '20240611T000000')).length, 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await inboxCalendars(boss.address, 'REPLY')).length, repliesBefore, 'a cancellation is not answered');
    // What was sent is counted on /metrics.
    const metrics = await (await fetch(`http://127.0.0.1:${server.ports.http}/metrics`)).text();
    for (const method of ['REQUEST', 'CANCEL', 'REPLY']) assert.match(metrics, new RegExp(`ximssd_calendar_itip_messages_total\\{method="${method}"\\} [1-9]`), method);
    assert.match(metrics, /ximssd_calendar_items_indexed_total\{kind="event"\} [1-9]/);
  });

  test('with ApplyCalendarReplies=yes a reply updates the organizer\'s item when it arrives', async () => {
    const host = await newUser('host');
    const visitor = await newUser('visitor');
    await ok(host.client, '<prefsStore><ApplyCalendarReplies>yes</ApplyCalendarReplies></prefsStore>');
    await ok(
      host.client,
      `<calendarPublish calendar="Calendar">${vcalendar(`<vevent><uid>auto-1</uid><summary>Visit</summary><dtstart>20240801T100000Z</dtstart><organizer>MAILTO:${host.address}</organizer><attendee RSVP="TRUE" PARTSTAT="NEEDS-ACTION">MAILTO:${visitor.address}</attendee></vevent>`)}</calendarPublish>`,
    );
    const [invitation] = await inboxCalendars(visitor.address, 'REQUEST');
    await ok(visitor.client, `<calendarAccept calendar="Calendar" PARTSTAT="TENTATIVE">${await readInvitation(visitor.client, invitation!.uid)}</calendarAccept>`);
    await eventually(async () => {
      const [e] = await events(host.client, '20240801T000000', '20240802T000000');
      if (!e) return undefined;
      // The item may be replaced between the two requests: then look again.
      const item = await host.client.request(`<calendarReadItem calendar="Calendar" UID="${e.attrs.UID}"/>`);
      return /PARTSTAT="TENTATIVE"/.test(item.messages[0]?.toString() ?? '') || undefined;
    }, 'the organizer item updated by the reply');
    await fails(host.client, '<prefsStore><ApplyCalendarReplies>maybe</ApplyCalendarReplies></prefsStore>', /yes or no/);
  });

  test('decline of a request sends DECLINED; RSVP=FALSE and sendReply="no" send nothing; bad PARTSTAT', async () => {
    const org = await newUser('org');
    const guest = await newUser('guest');
    const request = (uid: string, rsvp: string): string =>
      vcalendar(
        `<vevent><uid>${uid}</uid><summary>Talk</summary><dtstart>20240701T100000Z</dtstart><dtend>20240701T110000Z</dtend>` +
          `<organizer>MAILTO:${org.address}</organizer><attendee RSVP="${rsvp}">MAILTO:${guest.address}</attendee></vevent>`,
        'REQUEST',
      );
    await ok(guest.client, `<calendarDecline>${request('d-1', 'TRUE')}<replyComment>Busy</replyComment></calendarDecline>`);
    const [declined] = await inboxCalendars(org.address, 'REPLY');
    assert.equal(partstatOf(declined!.text, guest.address), 'DECLINED');
    await ok(guest.client, `<calendarAccept calendar="Calendar">${request('d-2', 'FALSE')}</calendarAccept>`);
    await ok(guest.client, `<calendarAccept calendar="Calendar" sendReply="no" PARTSTAT="TENTATIVE">${request('d-3', 'TRUE')}</calendarAccept>`);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await inboxCalendars(org.address, 'REPLY')).length, 1, 'only the decline was answered');
    // The tentative one is in the calendar with the guest's PARTSTAT.
    const found = await events(guest.client, '20240701T000000', '20240702T000000');
    assert.equal(found.length, 2);
    // Declining a published item with its calendar: removed there, and DECLINED sent.
    await ok(guest.client, `<calendarAccept calendar="Calendar">${request('d-5', 'TRUE')}</calendarAccept>`);
    const repliesSoFar = (await inboxCalendars(org.address, 'REPLY', 2)).length;
    await ok(guest.client, `<calendarDecline calendar="Calendar">${request('d-5', 'TRUE')}</calendarDecline>`);
    const afterDecline = await inboxCalendars(org.address, 'REPLY', repliesSoFar + 1);
    assert.ok(afterDecline.some((r) => /UID:d-5/.test(r.text) && partstatOf(r.text, guest.address) === 'DECLINED'));
    assert.equal((await events(guest.client, '20240701T000000', '20240702T000000')).filter((e) => e.attrs.itemUID === 'd-5').length, 0);
    // calendarForward: the item gets the new attendee and is sent to them as a REQUEST.
    const carol = await newUser('carol');
    const tentative = found.find((e) => e.attrs.itemUID === 'd-3')!;
    await ok(guest.client, `<calendarForward calendar="Calendar" UID="${tentative.attrs.UID}"><To>${carol.address}</To></calendarForward>`);
    const [forwarded] = await inboxCalendars(carol.address, 'REQUEST');
    assert.match(forwarded!.text, /UID:d-3/);
    assert.equal(partstatOf(forwarded!.text, carol.address), 'NEEDS-ACTION');
    assert.equal((await events(guest.client, '20240701T000000', '20240702T000000')).find((e) => e.attrs.itemUID === 'd-3')!.attrs.attendees, '2');
    await fails(guest.client, `<calendarForward calendar="Calendar" UID="${tentative.attrs.UID}"/>`, /no recipient/);
    // This server keeps the default: no calendar urls on private or local addresses, nor redirects to them.
    await fails(guest.client, '<calendarOpen calendar="Local" url="http://127.0.0.1:9/x.ics"/>', /private or local address/);
    await fails(guest.client, '<calendarOpen calendar="Local" url="http://[::1]:9/x.ics"/>', /private or local address/);
    await fails(guest.client, '<calendarOpen calendar="Local" url="http://10.1.2.3/x.ics"/>', /private or local address/);
    await fails(guest.client, `<calendarAccept calendar="Calendar" PARTSTAT="MAYBE">${request('d-4', 'TRUE')}</calendarAccept>`, /invalid PARTSTAT/);
    await fails(guest.client, '<calendarUpdate calendar="Calendar">' + vcalendar(`<vevent><uid>nothing</uid><attendee PARTSTAT="ACCEPTED">MAILTO:x@y.test</attendee></vevent>`, 'REPLY') + '</calendarUpdate>', /not found/);
  });
});
