/**
 * Contacts over XIMSS on the wire (spec section "Contacts Operations"): the 026 example
 * replayed, contactAppend (targetMailbox and folder, report, replacesUID, flags, groups),
 * contactsImport of an uploaded .vcf (all or nothing), contactFind (exact, fuzzy, phone
 * numbers, limit, totalSizeLimit), vCard parts in folderRead and messageAppend, a second
 * session seeing appended contacts, bad input.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ContactService } from '../src/services/contacts/service.js';
import { parseVObject, splitCards } from '../src/services/contacts/text.js';
import { silentLogger } from '../src/log.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import {
  awaitNotifies,
  exampleRequest,
  fails,
  headerValues,
  ok,
  postUpload,
  startTestServer,
  storedMessages,
  storedRaw,
  storedUids,
  type TestServer,
  type XimssClient,
} from './helpers.js';

const EXAMPLE = fileURLToPath(new URL('../../shared/spec/examples/026-contactAppend.txt', import.meta.url));

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface User {
  address: string;
  client: XimssClient;
  urlID: string;
}

async function newUser(): Promise<User> {
  const address = await server.newAccount('contacts');
  const { client, urlID } = await server.login(address, 'secret');
  return { address, client, urlID };
}


const BJORN = `<vCard>
  <NAME>Bjorn Jensen</NAME>
  <N><FAMILY>Jensen</FAMILY><GIVEN>bjorn</GIVEN><MIDDLE>A</MIDDLE><PREFIX>Mr.</PREFIX><SUFFIX>II</SUFFIX></N>
  <EMAIL><INTERNET /><USERID>bjorn@domain.dom</USERID></EMAIL>
  <TEL><WORK /><VOICE /><MSG /><NUMBER>+1 313 747-4454</NUMBER></TEL>
  <KEY><x509 /><BINVAL>dGhpcyBjb3VsZCBiZSAKbXkgY2VydGlmaWNhdGUK</BINVAL></KEY>
</vCard>`;

function card(fn: string, email: string, tel?: string, extra = ''): string {
  return `<vCard><FN>${fn}</FN><EMAIL><INTERNET/><USERID>${email}</USERID></EMAIL>${tel ? `<TEL><CELL/><NUMBER>${tel}</NUMBER></TEL>` : ''}${extra}</vCard>`;
}

async function openFolder(client: XimssClient, folder: string, mailbox: string): Promise<void> {
  await ok(client, `<folderOpen folder="${folder}" mailbox="${mailbox}"><field>UID</field><field>Subject</field></folderOpen>`);
}

/** The body of a stored item (the vCard text). */
function itemBody(raw: Buffer): string {
  const text = raw.toString('utf8');
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

function vcardOf(folderMessage: XmlElement): XmlElement | undefined {
  return folderMessage.element('EMail')?.element('MIME')?.element('vCard');
}

describe('contactAppend', () => {
  test('the spec example 026 replayed: the Contacts mailbox is created with an item carrying the header fields', async () => {
    const u = await newUser();
    const { request, response } = exampleRequest(EXAMPLE);
    assert.match(request, /<contactAppend id="A011" targetMailbox="Contacts"/);
    const reply = await u.client.request(request);
    assert.equal(reply.messages.length, 0);
    assert.equal(reply.response.toString(), parseXml(response).toString());
    assert.equal(reply.response.toString(), '<response id="A011"/>');

    const list = await ok(u.client, '<mailboxList filter="Contacts"/>');
    assert.equal(list.messages[0]?.attrs.CLASS, 'IPF.Contact', 'created as a Contacts-class mailbox');
    const uids = await storedUids(server, u.address, 'Contacts');
    assert.equal(uids.length, 1);
    const raw = (await storedRaw(server, u.address, 'Contacts', uids[0]!))!;
    assert.deepEqual(headerValues(raw, 'Subject'), ['Bjorn Jensen'], 'Subject is the FN (made from NAME)');
    assert.match(headerValues(raw, 'To')[0]!, /bjorn@domain\.dom/);
    assert.deepEqual(headerValues(raw, 'X-Telnum'), ['+1 313 747-4454 (WORK)']);
    assert.deepEqual(headerValues(raw, 'X-Has-Certificate'), ['true']);
    assert.equal(headerValues(raw, 'MIME-Version')[0], '1.0');
    assert.equal(headerValues(raw, 'Date').length, 1);
    assert.match(headerValues(raw, 'Content-Type')[0]!, /^text\/directory/);
    const body = itemBody(raw);
    assert.match(body, /^BEGIN:VCARD\r\nVERSION:3\.0\r\n/);
    assert.match(body, /\r\nFN:Bjorn Jensen\r\n/, 'FN added');
    assert.match(body, /\r\nUID:urn:uuid:[0-9a-f-]{36}\r\n/, 'UID added');
    assert.match(body, /\r\nN:Jensen;bjorn;A;Mr\.;II\r\n/);
    assert.match(body, /\r\nKEY;TYPE=x509;ENCODING=b:dGhpcyBjb3VsZCBiZSAKbXkgY2VydGlmaWNhdGUK\r\n/);

    // Seen by default; folderRead shows the vCard XML.
    await openFolder(u.client, 'C', 'Contacts');
    const flags = await ok(u.client, `<messageAttrRead folder="C" UID="${uids[0]}"><field>FLAGS</field></messageAttrRead>`);
    assert.match(flags.messages[0]!.toString(), /Seen/);
    const read = await ok(u.client, `<folderRead folder="C" UID="${uids[0]}"/>`);
    const mime = read.messages[0]!.element('EMail')!.element('MIME')!;
    assert.equal(mime.attrs.type, 'text');
    assert.equal(mime.attrs.subtype, 'directory');
    const vcard = mime.element('vCard')!;
    assert.ok(vcard, read.messages[0]!.toString());
    assert.equal(vcard.element('NAME')?.text(), 'Bjorn Jensen');
    assert.equal(vcard.element('FN')?.text(), 'Bjorn Jensen');
    assert.equal(vcard.element('N')?.element('FAMILY')?.text(), 'Jensen');
    assert.equal(vcard.element('N')?.element('SUFFIX')?.text(), 'II');
    const email = vcard.element('EMAIL')!;
    assert.deepEqual(email.elements().map((e) => e.name), ['INTERNET', 'USERID']);
    assert.equal(email.element('USERID')?.text(), 'bjorn@domain.dom');
    assert.deepEqual(vcard.element('TEL')!.elements().map((e) => e.name), ['WORK', 'VOICE', 'MSG', 'NUMBER']);
    assert.equal(vcard.element('KEY')?.element('BINVAL')?.text(), 'dGhpcyBjb3VsZCBiZSAKbXkgY2VydGlmaWNhdGUK');
    assert.ok(vcard.element('KEY')?.element('x509'));
    assert.match(vcard.element('UID')?.text() ?? '', /^urn:uuid:/);
  });

  test('into an open folder: report="uid" gives messageAdded, the folder notifies, replacesUID replaces, flags are taken', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Book" mailboxClass="IPF.Contact"/>');
    await openFolder(u.client, 'B', 'Book');
    const first = await ok(u.client, `<contactAppend folder="B" report="uid">${card('Ann Smith', 'ann@example.com')}</contactAppend>`);
    assert.equal(first.messages.length, 1);
    assert.equal(first.messages[0]!.name, 'messageAdded');
    assert.equal(first.messages[0]!.attrs.folder, 'B');
    const uid = Number(first.messages[0]!.attrs.UID);
    assert.ok(uid > 0);
    assert.ok((await awaitNotifies(u.client, 'B')) >= 1, 'the open folder was notified');

    const second = await ok(u.client, `<contactAppend folder="B" report="uid" replacesUID="${uid}" flags="Flagged">${card('Ann Smythe', 'ann@example.com')}</contactAppend>`);
    const newUid = Number(second.messages[0]!.attrs.UID);
    assert.ok(newUid > uid);
    assert.deepEqual(await storedUids(server, u.address, 'Book'), [newUid], 'the old item is replaced');
    const raw = (await storedRaw(server, u.address, 'Book', newUid))!;
    assert.deepEqual(headerValues(raw, 'Subject'), ['Ann Smythe']);
    const flags = await ok(u.client, `<messageAttrRead folder="B" UID="${newUid}"><field>FLAGS</field></messageAttrRead>`);
    const text = flags.messages[0]!.toString();
    assert.match(text, /Flagged/);
    assert.doesNotMatch(text, /Seen/, 'a flags attribute replaces the Seen default');

    await fails(u.client, `<contactAppend folder="B" replacesUID="${uid}" replaceMode="checkOld">${card('X', 'x@example.com')}</contactAppend>`);
    await fails(u.client, `<contactAppend targetMailbox="Book" replacesUID="${newUid}">${card('X', 'x@example.com')}</contactAppend>`, /folder/);
    const byMailbox = await ok(u.client, `<contactAppend targetMailbox="Book" report="uid">${card('Bob', 'bob@example.com')}</contactAppend>`);
    assert.equal(byMailbox.messages[0]!.attrs.targetMailbox, 'Book');
  });

  test('a second session with the Contacts folder open sees the appended contact', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    const other = await server.login(u.address, 'secret');
    await openFolder(other.client, 'C2', 'Contacts');
    await ok(u.client, `<contactAppend targetMailbox="Contacts">${card('Carl Jung', 'carl@example.com')}</contactAppend>`);
    assert.ok((await awaitNotifies(other.client, 'C2')) >= 1, 'the other session got a notify');
    const sync = await ok(other.client, '<folderSync folder="C2"/>');
    const added = sync.messages.find((m) => m.name === 'folderReport' && m.attrs.mode !== 'notify');
    assert.ok(added, sync.messages.map(String).join('\n'));
    assert.equal(added.element('Subject')?.text(), 'Carl Jung');
    const read = await ok(other.client, `<folderRead folder="C2" UID="${added.attrs.UID}"/>`);
    assert.equal(vcardOf(read.messages[0]!)?.element('EMAIL')?.element('USERID')?.text(), 'carl@example.com');
  });

  test('a vCardGroup item: Subject is its NAME, folderRead shows the vCardGroup', async () => {
    const u = await newUser();
    const reply = await ok(
      u.client,
      '<contactAppend targetMailbox="Contacts" report="uid"><vCardGroup><NAME>Friends, all</NAME><MEMBER CN="Ann Smith">ann@example.com</MEMBER><MEMBER CN="Bob">bob@example.com</MEMBER></vCardGroup></contactAppend>',
    );
    const uid = Number(reply.messages[0]!.attrs.UID);
    const raw = (await storedRaw(server, u.address, 'Contacts', uid))!;
    assert.deepEqual(headerValues(raw, 'Subject'), ['Friends, all']);
    assert.match(headerValues(raw, 'Content-Type')[0]!, /^text\/x-vgroup/);
    assert.match(itemBody(raw), /^BEGIN:VGROUP\r\n/);
    assert.match(itemBody(raw), /\r\nMEMBER;CN="Ann Smith":ann@example\.com\r\n/);
    await openFolder(u.client, 'C', 'Contacts');
    const read = await ok(u.client, `<folderRead folder="C" UID="${uid}"/>`);
    const group = read.messages[0]!.element('EMail')!.element('MIME')!.element('vCardGroup')!;
    assert.ok(group, read.messages[0]!.toString());
    assert.equal(group.element('NAME')?.text(), 'Friends, all');
    assert.deepEqual(
      group.elements('MEMBER').map((m) => [m.attrs.CN, m.text()]),
      [
        ['Ann Smith', 'ann@example.com'],
        ['Bob', 'bob@example.com'],
      ],
    );
  });

  test('bad input: a clear error, nothing stored, the server goes on', async () => {
    const u = await newUser();
    await fails(u.client, `<contactAppend>${card('A', 'a@example.com')}</contactAppend>`, /targetMailbox/);
    await fails(u.client, '<contactAppend targetMailbox="Contacts"/>', /exactly one vCard/);
    await fails(u.client, `<contactAppend targetMailbox="Contacts">${card('A', 'a@example.com')}${card('B', 'b@example.com')}</contactAppend>`, /exactly one vCard/);
    await fails(u.client, '<contactAppend targetMailbox="Contacts"><EMail/></contactAppend>', /exactly one vCard/);
    await fails(u.client, '<contactAppend targetMailbox="Contacts"><vCard><PHOTO><BINVAL>not base64!</BINVAL></PHOTO></vCard></contactAppend>', /^illegal vCard data format: PHOTO: invalid base64/);
    await fails(u.client, '<contactAppend targetMailbox="Contacts"><vCard><N><FAMILY>A</FAMILY><NICK>b</NICK></N></vCard></contactAppend>', /^illegal vCard data format: N: unexpected element <NICK>/);
    await fails(u.client, '<contactAppend targetMailbox="Contacts"><vCard><FN group="a.b">x</FN></vCard></contactAppend>', /^illegal vCard data format/);
    await fails(u.client, '<contactAppend targetMailbox="Contacts"><vCard><EMAIL><USERID><b>x</b></USERID></EMAIL></vCard></contactAppend>', /^illegal vCard data format/);
    await fails(u.client, `<contactAppend folder="nope">${card('A', 'a@example.com')}</contactAppend>`, 'folder has not been opened');
    await fails(u.client, `<contactAppend targetMailbox="Contacts" flags="Bogus\\">${card('A', 'a@example.com')}</contactAppend>`);
    await ok(u.client, '<noop/>');
    assert.deepEqual(await storedUids(server, u.address, 'Contacts').catch(() => []), []);
  });
});

const VCF_GOOD = [
  'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Dora Explorer\r\nN:Explorer;Dora;;;\r\nEMAIL;TYPE=INTERNET,HOME:dora@example.com\r\nTEL;TYPE=CELL:+44 20 7946 0018\r\nEND:VCARD\r\n',
  'BEGIN:VCARD\nVERSION:4.0\nFN:Émile Zola\nEMAIL:emile@example.fr\nNOTE:a long note that is folded over two lines because it is longer than seventy-fi\n ve octets\nEND:VCARD\n',
  'BEGIN:VCARD\r\nVERSION:3.0\r\nN:Nameless;Frank;;;\r\nTEL;TYPE=WORK:555-0100\r\nEND:VCARD\r\n',
].join('');

describe('contactsImport', () => {
  test('imports every card of an uploaded .vcf into the open folder (UID and FN added)', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    await openFolder(u.client, 'C', 'Contacts');
    await postUpload(server, u, 'vcf1', Buffer.from(VCF_GOOD, 'utf8'), 'book.vcf', 'text/vcard');
    await ok(u.client, '<contactsImport folder="C" uploadID="vcf1"/>');
    const stored = await storedMessages(server, u.address, 'Contacts');
    assert.equal(stored.length, 3);
    const subjects = stored.map((m) => headerValues(m.raw, 'Subject')[0]);
    assert.equal(subjects[0], 'Dora Explorer');
    assert.match(subjects[1]!, /mile Zola|=\?/);
    assert.equal(subjects[2], 'Frank Nameless', 'FN made from N');
    const zola = itemBody(stored[1]!.raw);
    assert.match(zola, /NOTE:a long note that is folded over two lines because it is longer than se\r\n venty-five octets\r\n/);
    assert.match(zola, /\r\nUID:/);
    // The folder sees them.
    await awaitNotifies(u.client, 'C');
    const find = await ok(u.client, '<contactFind folder="C" peer="emile@example.fr"/>');
    assert.equal(find.messages.length, 1);
    assert.equal(vcardOf(find.messages[0]!)?.element('FN')?.text(), 'Émile Zola');
  });

  test('one malformed card: nothing is imported and the error names the card', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    await openFolder(u.client, 'C', 'Contacts');
    const bad = VCF_GOOD.replace('TEL;TYPE=CELL:+44 20 7946 0018\r\n', 'this line has no colon\r\n');
    await postUpload(server, u, 'bad', Buffer.from(bad, 'utf8'), 'bad.vcf', 'text/vcard');
    const error = await fails(u.client, '<contactsImport folder="C" uploadID="bad"/>', /^illegal vCard data format: card 1 \(line 1\): .*no colon.*nothing was imported/);
    assert.doesNotMatch(error, /card 2/);
    const unterminated = VCF_GOOD + 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cut\r\n';
    await postUpload(server, u, 'cut', Buffer.from(unterminated, 'utf8'), 'cut.vcf', 'text/vcard');
    await fails(u.client, '<contactsImport folder="C" uploadID="cut"/>', /card 4 \(line \d+\): the vCard has no END line/);
    await postUpload(server, u, 'junk', Buffer.from('hello world\r\n', 'utf8'), 'junk.vcf', 'text/plain');
    await fails(u.client, '<contactsImport folder="C" uploadID="junk"/>', /card 1 \(line 1\): text outside of a vCard/);
    await postUpload(server, u, 'empty', Buffer.from('\r\n', 'utf8'), 'empty.vcf', 'text/plain');
    await fails(u.client, '<contactsImport folder="C" uploadID="empty"/>', /has no vCard/);
    assert.deepEqual(await storedUids(server, u.address, 'Contacts'), []);
    await fails(u.client, '<contactsImport folder="C" uploadID="never"/>', /uploaded file not found/);
    await fails(u.client, '<contactsImport folder="C"/>', /uploadID/);
    await fails(u.client, '<contactsImport folder="X" uploadID="bad"/>', 'folder has not been opened');
  });

  test('a file of 500 cards is imported whole', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    await openFolder(u.client, 'C', 'Contacts');
    let vcf = '';
    for (let i = 0; i < 500; i++) vcf += `BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Person ${i}\r\nEMAIL:p${i}@example.com\r\nTEL;TYPE=CELL:+1 555 ${String(i).padStart(4, '0')}\r\nEND:VCARD\r\n`;
    await postUpload(server, u, 'many', Buffer.from(vcf, 'utf8'), 'many.vcf', 'text/vcard');
    await ok(u.client, '<contactsImport folder="C" uploadID="many"/>');
    assert.equal((await storedUids(server, u.address, 'Contacts')).length, 500);
    const found = await ok(u.client, '<contactFind folder="C" peer="+1 555 0499"/>');
    assert.equal(found.messages.length, 1);
    assert.equal(found.messages[0]!.attrs.peerName, 'Person 499');
  });

  test('the card count limit refuses the whole import', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    await openFolder(u.client, 'C', 'Contacts');
    const limits = server.services.contacts.limits;
    const saved = { ...limits };
    limits.importCards = 2;
    try {
      await postUpload(server, u, 'three', Buffer.from(VCF_GOOD, 'utf8'), 'three.vcf', 'text/vcard');
      await fails(u.client, '<contactsImport folder="C" uploadID="three"/>', /too many vCards to import: 3 \(at most 2\)/);
      limits.importBytes = 100;
      await fails(u.client, '<contactsImport folder="C" uploadID="three"/>', /too large to import/);
    } finally {
      Object.assign(limits, saved);
    }
    assert.deepEqual(await storedUids(server, u.address, 'Contacts'), []);
  });
});

describe('contactFind', () => {
  let u: User;
  const uids: Record<string, number> = {};
  before(async () => {
    u = await newUser();
    for (const [key, xml] of Object.entries({
      ann: card('Ann Smith', 'ann.smith@example.com', '+1 (415) 555-0101', '<X-FILE-AS>Smith, Ann</X-FILE-AS>'),
      bob: card('Bob Stone', 'bob@example.org', '+1 415 555 0202'),
      carla: card('Carla Smithers', 'carla@example.net'),
    })) {
      const reply = await ok(u.client, `<contactAppend targetMailbox="Contacts" report="uid">${xml}</contactAppend>`);
      uids[key] = Number(reply.messages[0]!.attrs.UID);
    }
    await openFolder(u.client, 'C', 'Contacts');
  });

  test('exact: an e-mail address (any case) gives the item with foundAddress and peerName', async () => {
    const reply = await ok(u.client, '<contactFind folder="C" peer="Ann.Smith@Example.com"/>');
    assert.equal(reply.messages.length, 1);
    const m = reply.messages[0]!;
    assert.equal(m.name, 'folderMessage');
    assert.equal(m.attrs.folder, 'C');
    assert.equal(m.attrs.peer, 'Ann.Smith@Example.com');
    assert.equal(Number(m.attrs.UID), uids.ann);
    assert.equal(m.attrs.foundAddress, 'ann.smith@example.com');
    assert.equal(m.attrs.peerName, 'Smith, Ann', 'the File-as name');
    assert.equal(vcardOf(m)?.element('FN')?.text(), 'Ann Smith');
    assert.equal((await ok(u.client, '<contactFind folder="C" peer="smith@example.com"/>')).messages.length, 0, 'exact is not a substring');
  });

  test('a telephone number matches by its digits', async () => {
    const reply = await ok(u.client, '<contactFind folder="C" peer="14155550202"/>');
    assert.equal(reply.messages.length, 1);
    assert.equal(Number(reply.messages[0]!.attrs.UID), uids.bob);
    assert.equal(reply.messages[0]!.attrs.foundAddress, '+1 415 555 0202');
    assert.equal(reply.messages[0]!.attrs.peerName, 'Bob Stone');
  });

  test('mode="sub": substrings of addresses and File-as names; limit; totalSizeLimit="0" leaves the body out', async () => {
    const smith = await ok(u.client, '<contactFind folder="C" peer="smith" mode="sub"/>');
    assert.deepEqual(smith.messages.map((m) => Number(m.attrs.UID)).sort(), [uids.ann, uids.carla].sort());
    const phone = await ok(u.client, '<contactFind folder="C" peer="555" mode="sub"/>');
    assert.equal(phone.messages.length, 2);
    const limited = await ok(u.client, '<contactFind folder="C" peer="example" mode="sub" limit="2"/>');
    assert.equal(limited.messages.length, 2);
    const bare = await ok(u.client, '<contactFind folder="C" peer="bob@example.org" totalSizeLimit="0"/>');
    assert.equal(bare.messages.length, 1);
    assert.equal(vcardOf(bare.messages[0]!), undefined, 'no vCard body');
    assert.ok(bare.messages[0]!.element('EMail')?.element('Subject'), 'the header fields are there');
  });

  test('bad input', async () => {
    await fails(u.client, '<contactFind folder="C"/>', /peer/);
    await fails(u.client, '<contactFind folder="C" peer=""/>', /peer/);
    await fails(u.client, '<contactFind folder="C" peer="a" mode="fuzzy"/>', /invalid mode/);
    await fails(u.client, '<contactFind folder="C" peer="a" limit="0"/>', /limit/);
    await fails(u.client, '<contactFind folder="Z" peer="a"/>', 'folder has not been opened');
  });
});

describe('vCard MIME parts', () => {
  test('messageAppend takes vCard XML in a text/directory part; folderRead shows it back', async () => {
    const u = await newUser();
    const reply = await ok(
      u.client,
      `<messageAppend targetMailbox="INBOX" report="uid"><EMail><Subject>my card</Subject><MIME type="multipart" subtype="mixed"><MIME type="text" subtype="plain">Here it is</MIME><MIME type="text" subtype="directory">${card('Ann, the 1st', 'ann@example.com')}${card('Bob', 'bob@example.com')}</MIME></MIME></EMail></messageAppend>`,
    );
    const uid = Number(reply.messages[0]!.attrs.UID);
    const raw = (await storedRaw(server, u.address, 'INBOX', uid))!.toString('utf8');
    assert.match(raw, /Content-Type: text\/directory/);
    assert.match(raw, /BEGIN:VCARD\r\nVERSION:3\.0\r\nFN:Ann\\, the 1st\r\n/);
    assert.equal(raw.match(/BEGIN:VCARD/g)?.length, 2);
    await openFolder(u.client, 'I', 'INBOX');
    const read = await ok(u.client, `<folderRead folder="I" UID="${uid}"/>`);
    const parts = read.messages[0]!.element('EMail')!.element('MIME')!.elements('MIME');
    const cards = parts[1]!.elements('vCard');
    assert.equal(cards.length, 2);
    assert.equal(cards[0]!.element('FN')?.text(), 'Ann, the 1st');
    assert.equal(cards[1]!.element('EMAIL')?.element('USERID')?.text(), 'bob@example.com');

    await ok(u.client, `<messageAppend targetMailbox="INBOX"><EMail><MIME type="text" subtype="x-vgroup"><vCardGroup><NAME>G</NAME><MEMBER CN="A">a@x.dom</MEMBER></vCardGroup></MIME></EMail></messageAppend>`);
    await fails(u.client, `<messageAppend targetMailbox="INBOX"><EMail><MIME type="text" subtype="directory"><vCardGroup><NAME>G</NAME></vCardGroup></MIME></EMail></messageAppend>`, /unexpected element <vCardGroup>/);
    await fails(u.client, `<messageAppend targetMailbox="INBOX"><EMail><MIME type="text" subtype="directory"><vCard><PHOTO><BINVAL>!!</BINVAL></PHOTO></vCard></MIME></EMail></messageAppend>`, /illegal vCard data format/);
  });

  test('a malformed vCard part is shown as text with a parserError', async () => {
    const u = await newUser();
    const reply = await ok(u.client, '<messageAppend targetMailbox="INBOX" report="uid"><EMail><MIME type="text" subtype="x-vcard">BEGIN:VCARD\nFN:never ends\n</MIME></EMail></messageAppend>');
    const uid = Number(reply.messages[0]!.attrs.UID);
    await openFolder(u.client, 'I', 'INBOX');
    const read = await ok(u.client, `<folderRead folder="I" UID="${uid}"/>`);
    const mime = read.messages[0]!.element('EMail')!.element('MIME')!;
    assert.match(mime.attrs.parserError ?? '', /vCard: card 1/);
    assert.match(mime.text(), /FN:never ends/);
  });
});

describe('the contacts service (what CardDAV uses)', () => {
  test('list, put (create and replace by the vCard UID), remove; XIMSS folders see the changes', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    await openFolder(u.client, 'C', 'Contacts');
    const account = (await server.services.accounts.find(u.address))!;
    const box = await server.services.mail.access(account, 'Contacts', 'r');
    // A service of its own (as a second node would have), over the same mail service.
    const contacts = new ContactService(server.services.mail, { hostname: 'test', log: silentLogger });
    assert.deepEqual(await contacts.listCards(box), []);
    const created = await contacts.putCard(box, 'BEGIN:VCARD\r\nVERSION:4.0\r\nUID:card-1\r\nFN:Dav Person\r\nEMAIL:dav@example.com\r\nEND:VCARD\r\n', { timeZone: 'UTC' });
    assert.equal(created.created, true);
    assert.ok((await awaitNotifies(u.client, 'C')) >= 1, 'the XIMSS folder saw the new card');
    let cards = await contacts.listCards(box);
    assert.equal(cards.length, 1);
    assert.equal(cards[0]!.cardUid, 'card-1');
    assert.equal(cards[0]!.uid, created.uid);
    assert.equal(cards[0]!.etag, created.etag);
    assert.match(cards[0]!.text, /FN:Dav Person/);

    // A card appended over XIMSS is listed too; replacing by UID keeps one item.
    await ok(u.client, `<contactAppend folder="C"><vCard><UID>card-2</UID><FN>From Ximss</FN></vCard></contactAppend>`);
    const replaced = await server.services.contacts.putCard(box, 'BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Dav Person Renamed\r\nEND:VCARD\r\n', { timeZone: 'UTC', expectUid: created.uid });
    assert.equal(replaced.created, false);
    assert.notEqual(replaced.etag, created.etag);
    cards = await contacts.listCards(box);
    assert.deepEqual(cards.map((c) => c.cardUid).sort(), ['card-1', 'card-2']);
    assert.match(cards.find((c) => c.cardUid === 'card-1')!.text, /Renamed/);
    await assert.rejects(contacts.putCard(box, 'BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:stale\r\nEND:VCARD\r\n', { timeZone: 'UTC', expectUid: created.uid }), /changed meanwhile/);
    await assert.rejects(contacts.putCard(box, 'BEGIN:VCARD\r\nFN:x\r\n', { timeZone: 'UTC' }), /illegal vCard data format/);

    const one = await contacts.readCard(box, replaced.uid);
    assert.equal(one?.cardUid, 'card-1');
    assert.equal(one?.etag, replaced.etag);
    assert.equal(await contacts.readCard(box, created.uid), undefined, 'the replaced message is gone');
    const exported = await contacts.exportText(box, '4.0');
    assert.equal(exported.match(/^BEGIN:VCARD\r\nVERSION:4\.0\r\n/gm)?.length, 2);
    assert.match(exported, /\r\nUID:card-2\r\n/);

    assert.equal(await contacts.removeCard(box, replaced.uid), true);
    assert.equal(await contacts.removeCard(box, replaced.uid), false);
    assert.deepEqual((await contacts.listCards(box)).map((c) => c.cardUid), ['card-2']);
    assert.equal(await contacts.findCard(box, 'card-1'), undefined);
  });
});

describe('HTTP Access: Export and PROFILE', () => {
  const get = async (u: User, path: string): Promise<{ status: number; type: string | null; body: Buffer }> => {
    const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${u.urlID}/${path}`);
    return { status: response.status, type: response.headers.get('content-type'), body: Buffer.from(await response.arrayBuffer()) };
  };

  test('Export of an open folder gives every vCard item as one vCard 3.0 text, or 2.1 with oldStyle', async () => {
    const u = await newUser();
    await ok(u.client, `<contactAppend targetMailbox="Contacts">${card('Ann Export', 'ann@example.com', '+1 555 0100')}</contactAppend>`);
    await ok(u.client, `<contactAppend targetMailbox="Contacts">${card('Bob Export', 'bob@example.com')}</contactAppend>`);
    assert.equal((await get(u, 'Export/Book/all.vcf')).status, 404, 'the folder is not open yet');
    await openFolder(u.client, 'Book', 'Contacts');
    const exported = await get(u, 'Export/Book/all.vcf');
    assert.equal(exported.status, 200);
    assert.equal(exported.type, 'text/vcard; charset=utf-8');
    const text = exported.body.toString('utf8');
    assert.equal(text.match(/BEGIN:VCARD\r\nVERSION:3\.0\r\n/g)?.length, 2);
    assert.match(text, /\r\nFN:Ann Export\r\n/);
    assert.match(text, /\r\nFN:Bob Export\r\n/);
    assert.match(text, /\r\nTEL;TYPE=CELL:\+1 555 0100\r\n/);
    // oldStyle: vCard 2.1 in UTF-8 — bare TYPE parameters, non-ASCII text quoted-printable, photos BASE64.
    const photo = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]).toString('base64');
    await ok(u.client, `<contactAppend targetMailbox="Contacts">${card('Zoë Müller', 'zoe@example.com', undefined, `<NOTE>line one\nline; two</NOTE><PHOTO><JPEG/><BINVAL>${photo}</BINVAL></PHOTO>`)}</contactAppend>`);
    const old = await get(u, 'Export/Book/all.vcf?oldStyle=1');
    assert.equal(old.status, 200);
    assert.equal(old.type, 'text/x-vcard; charset=utf-8');
    const text21 = old.body.toString('utf8');
    assert.equal(text21.match(/BEGIN:VCARD\r\nVERSION:2\.1\r\n/g)?.length, 3);
    assert.match(text21, /\r\nTEL;CELL:\+1 555 0100\r\n/);
    assert.match(text21, /\r\nFN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Zo=C3=AB M=C3=BCller\r\n/);
    assert.match(text21, /\r\nNOTE;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:line one=0D=0Aline\\; two\r\n/);
    assert.match(text21, new RegExp(`\\r\\nPHOTO;JPEG;ENCODING=BASE64:\\r\\n ${photo.replace(/[+/]/g, (c) => `\\${c}`)}\\r\\n\\r\\n`));
    // What the server writes in 2.1 it reads back as the same card (contactsImport takes 2.1).
    const { cards } = splitCards(text21);
    const zoe = cards.map((c) => parseVObject(c.text)).find((o) => o.properties.some((p) => p.name === 'FN' && p.value.kind === 'text' && p.value.values[0] === 'Zoë Müller'));
    assert.ok(zoe, 'the 2.1 card reads back');
    const note = zoe.properties.find((p) => p.name === 'NOTE')!;
    assert.deepEqual(note.value, { kind: 'text', values: ['line one\nline; two'] });
  });

  test('PROFILE serves the Profile vCard (private/profile.vcf) and one decoded value of a property', async () => {
    const u = await newUser();
    assert.equal((await get(u, 'PROFILE/')).status, 404);
    const photo = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);
    await ok(u.client, '<fileDirCreate fileName="private"/>');
    const profile = `<vCard><FN>Pat Profile</FN><PHOTO><JPEG/><BINVAL>${photo.toString('base64')}</BINVAL></PHOTO><EMAIL><INTERNET/><USERID>pat@example.com</USERID></EMAIL><EMAIL><INTERNET/><USERID>pat2@example.com</USERID></EMAIL></vCard>`;
    await ok(u.client, `<fileWrite fileName="private/profile.vcf" type="vcard">${profile}</fileWrite>`);
    const whole = await get(u, 'PROFILE/');
    assert.equal(whole.status, 200);
    assert.match(whole.body.toString('utf8'), /^BEGIN:VCARD\r\n[\s\S]*\r\nFN:Pat Profile\r\n/);
    const avatar = await get(u, 'PROFILE/PHOTO/0/avatar');
    assert.equal(avatar.status, 200);
    assert.equal(avatar.type, 'image/jpeg');
    assert.deepEqual(avatar.body, photo);
    assert.equal((await get(u, 'PROFILE/EMAIL/1')).body.toString(), 'pat2@example.com');
    assert.equal((await get(u, 'PROFILE/EMAIL/2')).status, 404);
    assert.equal((await get(u, 'PROFILE/PHOTO/x')).status, 404);
  });
});
