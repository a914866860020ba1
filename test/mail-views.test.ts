/**
 * A 10,000-message mailbox: views sorted by Date (descending) and by Subject, checked
 * page by page against an independent sort; then another session appends 50, flags 100
 * and expunges 100 messages, and the folderSync reports must turn each client model into
 * the fresh view exactly (and the fresh view must still be in the right order).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { awaitNotifies, deliverRaw, expectOk, FolderModel, rfc822, seededRandom, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const COUNT = 10_000;
const ADDRESS = 'big@example.test';
const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima', 'mike', 'november'];
const NAMES = ['Ann', 'Boris', 'Chen', 'Dora', 'Emil', 'Fatima', 'Goran', 'Hana'];
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const SHIFTS = [0, -7 * 3600, 5.5 * 3600, 9 * 3600, -3.5 * 3600];

/** What the test knows about each message, to sort independently of the server. */
interface Known {
  uid: number;
  date: number;
  subject: string;
  flags: string;
}

let server: TestServer;
let reader: XimssClient;
let writer: XimssClient;
const known = new Map<number, Known>();
const random = seededRandom(1_000_003);

function shuffled(n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** An RFC 5322 date for `time` written in a zone `shift` seconds east of GMT. */
function rfcDate(time: number, shift: number): string {
  const local = new Date(time + shift * 1000);
  const sign = shift < 0 ? '-' : '+';
  const abs = Math.abs(shift);
  return `${WEEKDAYS[local.getUTCDay()]}, ${pad(local.getUTCDate())} ${MONTHS[local.getUTCMonth()]} ${local.getUTCFullYear()} ${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())} ${sign}${pad(Math.floor(abs / 3600))}${pad((abs % 3600) / 60)}`;
}

function gmt(time: number): string {
  const d = new Date(time);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
}

const BASE = Date.UTC(2015, 0, 1);

before(async () => {
  server = await startTestServer();
  await server.addAccount(ADDRESS, 'secret');
  const datePerm = shuffled(COUNT);
  const subjectPerm = shuffled(COUNT);
  for (let start = 0; start < COUNT; start += 1000) {
    const batch = [];
    for (let i = start; i < Math.min(COUNT, start + 1000); i++) {
      const date = BASE + datePerm[i]! * 3607_000;
      const subject = `${WORDS[Math.floor(random() * WORDS.length)]} ${WORDS[Math.floor(random() * WORDS.length)]} ${subjectPerm[i]}`;
      const encoded = i % 7 === 0 ? `=?utf-8?B?${Buffer.from(subject).toString('base64')}?=` : subject;
      const name = NAMES[i % NAMES.length]!;
      const from = i % 5 === 0 ? `${name.toLowerCase()}${i}@example.org` : `"${name} ${i}" <${name.toLowerCase()}${i}@example.org>`;
      const roll = random();
      const flags = roll < 0.55 ? 'Seen' : roll < 0.65 ? 'Seen,Flagged' : roll < 0.7 ? 'Flagged' : '';
      const raw = rfc822(
        [
          ['From', from],
          ['To', ADDRESS],
          ['Subject', encoded],
          ['Date', rfcDate(date, SHIFTS[i % SHIFTS.length]!)],
          ['Message-ID', `<big-${i}@example.org>`],
        ],
        `message ${i}\n`,
      );
      batch.push({ raw, flags, internalDate: BASE + i * 1000 });
      known.set(i + 1, { uid: i + 1, date, subject, flags });
    }
    const added = await deliverRaw(server, ADDRESS, 'INBOX', batch);
    assert.equal(added[0], start + 1);
  }
  reader = (await server.login(ADDRESS, 'secret')).client;
  writer = (await server.login(ADDRESS, 'secret')).client;
});

after(() => server.stop());

function byDateDesc(a: Known, b: Known): number {
  return b.date - a.date || b.uid - a.uid;
}

function bySubject(a: Known, b: Known): number {
  return a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : a.uid - b.uid;
}

function expectedOrder(compare: (a: Known, b: Known) => number): Known[] {
  return [...known.values()].sort(compare);
}

async function page(folder: string, from: number, till: number): Promise<XmlElement[]> {
  const reply = expectOk(await reader.request(`<folderBrowse folder="${folder}"><index from="${from}" till="${till}"/></folderBrowse>`));
  return reply.messages;
}

function checkPage(reports: XmlElement[], order: Known[], from: number, till: number): void {
  const last = Math.min(till, order.length - 1);
  assert.equal(reports.length, last - from + 1, `page ${from}..${till}`);
  reports.forEach((r, i) => {
    const expected = order[from + i]!;
    assert.equal(r.attrs.index, String(from + i));
    assert.equal(r.attrs.UID, String(expected.uid), `index ${from + i}`);
    assert.equal(r.element('Subject')!.text(), expected.subject, `subject at ${from + i}`);
    assert.equal(r.element('Date')!.text(), `${gmt(expected.date)}Z`, `date at ${from + i}`);
  });
}

test('10,000 messages: Date-desc and Subject views page by page, then 250 changes from another session synced exactly', async () => {
  const fields = '<field>UID</field><field>Date</field><field>Subject</field><field>FLAGS</field>';
  const byDate = expectOk(await reader.request(`<folderOpen folder="D" mailbox="INBOX" sortField="Date" sortOrder="desc">${fields}</folderOpen>`));
  assert.equal(byDate.messages[0]!.attrs.messages, String(COUNT));
  const unseen = Number(byDate.messages[0]!.attrs.unseen);
  assert.ok(unseen > 2000 && unseen < 5000, `unseen ${unseen}`);
  const bySubj = expectOk(await reader.request(`<folderOpen folder="S" mailbox="INBOX" sortField="Subject">${fields}</folderOpen>`));
  assert.equal(bySubj.messages[0]!.attrs.messages, String(COUNT));
  assert.equal(bySubj.messages[0]!.attrs.unseen, String(unseen));

  const dateOrder = expectedOrder(byDateDesc);
  const subjectOrder = expectedOrder(bySubject);
  for (const [from, till] of [
    [0, 49],
    [4975, 5024],
    [9950, 10_049],
  ] as const) {
    checkPage(await page('D', from, till), dateOrder, from, till);
    checkPage(await page('S', from, till), subjectOrder, from, till);
  }

  const models = [await FolderModel.load(reader, 'D'), await FolderModel.load(reader, 'S')];
  assert.deepEqual(models[0]!.uids(), dateOrder.map((k) => k.uid), 'the whole Date view is in order');
  assert.deepEqual(models[1]!.uids(), subjectOrder.map((k) => k.uid), 'the whole Subject view is in order');
  assert.equal(models[0]!.unseen(), unseen);

  // Another session: 50 appends, 100 flag changes, 100 expunges.
  expectOk(await writer.request('<folderOpen folder="W" mailbox="INBOX" sortField="UID"><field>UID</field></folderOpen>'));
  const appends = [];
  for (let i = 0; i < 50; i++) {
    const date = BASE + Math.floor(random() * COUNT) * 3607_000 + 1000 + i; // between existing dates
    const subject = `${WORDS[i % WORDS.length]} appended ${i}`;
    const stamp = gmt(date);
    appends.push(
      writer.request(
        `<messageAppend folder="W" report="uid"><EMail><From>writer@example.org</From><Subject>${subject}</Subject><Date localTime="${stamp}" timeShift="0">${stamp}Z</Date><MIME type="text" subtype="plain">new ${i}</MIME></EMail></messageAppend>`,
      ),
    );
    known.set(COUNT + i + 1, { uid: COUNT + i + 1, date, subject, flags: '' });
  }
  const added = (await Promise.all(appends)).map((r) => Number(expectOk(r).messages[0]!.attrs.UID)).sort((a, b) => a - b);
  assert.deepEqual(added, Array.from({ length: 50 }, (_, i) => COUNT + i + 1));
  const victims = shuffled(COUNT).map((i) => i + 1);
  const flagged = victims.slice(0, 100);
  const expunged = victims.slice(100, 200);
  const uidSet = (uids: number[]): string => uids.map((u) => `<UID>${u}</UID>`).join('');
  expectOk(await writer.request(`<messageMark folder="W" flags="Seen,Flagged">${uidSet(flagged.slice(0, 50))}</messageMark>`));
  expectOk(await writer.request(`<messageMark folder="W" flags="Unseen,$Later">${uidSet(flagged.slice(50))}</messageMark>`));
  expectOk(await writer.request(`<messageRemove folder="W" mode="Immediately">${uidSet(expunged)}</messageRemove>`));
  for (const uid of expunged) known.delete(uid);
  // "Seen,Flagged" changes nothing on a message that had both; "$Later" is new to all.
  const changedByMark = flagged.slice(0, 50).filter((uid) => known.get(uid)!.flags !== 'Seen,Flagged').length + 50;
  assert.ok(changedByMark > 90 && changedByMark <= 100);

  for (const model of models) {
    assert.equal(await awaitNotifies(reader, model.folder, 30), 1, `one notify for ${model.folder}`);
    const reports = await model.syncAndCheck(reader);
    const modes = new Map<string, number>();
    for (const r of reports) modes.set(r.attrs.mode!, (modes.get(r.attrs.mode!) ?? 0) + 1);
    assert.equal(modes.get('removed'), 100, model.folder);
    assert.equal(modes.get('added'), 50, model.folder);
    assert.equal(modes.get('updated'), changedByMark, `${model.folder}: a report for each message whose flags changed`);
    assert.equal(model.rows.length, COUNT - 50);
  }
  assert.deepEqual(models[0]!.uids(), expectedOrder(byDateDesc).map((k) => k.uid), 'the synced Date view is in order');
  assert.deepEqual(models[1]!.uids(), expectedOrder(bySubject).map((k) => k.uid), 'the synced Subject view is in order');
  const flagsOf = (uid: number): string[] => models[0]!.rows.find((r) => r.uid === uid)!.flags!.split(',').sort();
  assert.deepEqual(flagsOf(flagged[0]!), ['Flagged', 'Seen']);
  assert.ok(flagsOf(flagged[99]!).includes('$Later') && !flagsOf(flagged[99]!).includes('Seen'));
  assert.equal(models[1]!.unseen(), models[0]!.unseen());
});
