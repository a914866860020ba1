/**
 * Mail over XIMSS on the wire: mailbox management, folders (views, viewer fields, sorting,
 * filtering), the folderSync model, and message operations (compose, read, copy, flags,
 * removal, attributes, search, mailboxSync, quota). Every test uses fresh accounts on one
 * server; messages are delivered in-process (as a delivery would) or appended over XIMSS.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { AccountRecord, Settings } from '../src/store/store.js';
import { XmlElement, serialize } from '../src/xml/element.js';
import {
  awaitNotifies,
  browseAll,
  deliverRaw,
  expectError,
  expectOk,
  fails,
  FolderModel,
  folderSync,
  ok,
  postUpload,
  rfc822,
  seededRandom,
  storedRaw,
  storedUids,
  takeNotifies,
  startTestServer,
  type Reply,
  type TestServer,
  type XimssClient,
} from './helpers.js';

let server: TestServer;
/** Makes Message-IDs unique. */
let counter = 0;

before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

interface User {
  address: string;
  password: string;
  client: XimssClient;
  urlID: string;
  account(): Promise<AccountRecord>;
  /** Another logged-in session of the same account. */
  another(): Promise<XimssClient>;
}

/** A fresh account (with these preferences and settings) and a logged-in session. */
async function newUser(options: { prefs?: Settings; settings?: Settings; name?: string } = {}): Promise<User> {
  const password = 'secret';
  const address = await server.newAccount(options.name ?? 'mail', { password });
  const account = async (): Promise<AccountRecord> => (await server.services.accounts.find(address))!;
  if (options.prefs) await server.services.accounts.updatePrefs(await account(), options.prefs);
  if (options.settings) await server.services.accounts.setSettings(await account(), options.settings);
  const { client, urlID } = await server.login(address, password);
  return {
    address,
    password,
    client,
    urlID,
    account,
    async another() {
      return (await server.login(address, password)).client;
    },
  };
}

/** mailboxList: the mailbox messages by name (their attributes, without id). */
async function list(client: XimssClient, attrs = ''): Promise<Map<string, Record<string, string>>> {
  const reply = await ok(client, `<mailboxList ${attrs}/>`);
  const out = new Map<string, Record<string, string>>();
  for (const m of reply.messages) {
    assert.equal(m.name, 'mailbox');
    const { id, mailbox, ...rest } = m.attrs;
    assert.ok(id);
    assert.ok(mailbox !== undefined);
    assert.ok(!out.has(mailbox), `${mailbox} listed twice`);
    out.set(mailbox, rest);
  }
  return out;
}

function fieldsXml(fields: readonly string[]): string {
  return fields.map((f) => `<field>${f}</field>`).join('');
}

/** folderOpen; asserts the init report comes first, then the response; returns the init report. */
async function open(client: XimssClient, folder: string, mailbox: string, fields: readonly string[], attrs = ''): Promise<XmlElement> {
  const reply = await ok(
    client,
    `<folderOpen folder="${folder}" mailbox="${mailbox}" ${attrs}>${fieldsXml(fields)}</folderOpen>`,
  );
  assert.equal(reply.messages.length, 1, 'one data message: the init report');
  const init = reply.messages[0]!;
  assert.equal(init.name, 'folderReport');
  assert.equal(init.attrs.mode, 'init');
  assert.equal(init.attrs.folder, folder);
  assert.match(init.attrs.messages ?? '', /^\d+$/);
  assert.match(init.attrs.unseen ?? '', /^\d+$/);
  return init;
}

/** The UIDs of a folder's whole view, in view order. */
async function viewUids(client: XimssClient, folder: string): Promise<number[]> {
  return (await browseAll(client, folder)).map((r) => r.uid);
}

/** folderBrowse of a message set; the reports. */
async function browse(client: XimssClient, folder: string, set: string): Promise<XmlElement[]> {
  return (await ok(client, `<folderBrowse folder="${folder}">${set}</folderBrowse>`)).messages;
}

function flagSet(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .filter((f) => f !== '')
    .sort();
}

/** The FLAGS of one UID in a folder that shows FLAGS. */
async function flagsOf(client: XimssClient, folder: string, uid: number): Promise<string[]> {
  const [report] = await browse(client, folder, `<UID>${uid}</UID>`);
  assert.ok(report, `UID ${uid} is in ${folder}`);
  return flagSet(report.element('FLAGS')?.text()).filter((f) => f !== 'Recent');
}

/** A plain text message. */
function textMail(subject: string, options: { from?: string; to?: string; date?: string; body?: string; extra?: [string, string][] } = {}): Buffer {
  return rfc822(
    [
      ['From', options.from ?? 'Sender <sender@example.org>'],
      ['To', options.to ?? 'rcpt@example.test'],
      ['Subject', subject],
      ['Date', options.date ?? 'Mon, 10 Apr 2006 13:15:48 -0700'],
      ['Message-ID', `<${subject.replace(/[^A-Za-z0-9]/g, '') || 'x'}.${++counter}@example.org>`],
      ...(options.extra ?? []),
      ['MIME-Version', '1.0'],
      ['Content-Type', 'text/plain; charset=utf-8'],
    ],
    options.body ?? `Body of ${subject}\n`,
  );
}

/** A messageAppend request of a small text message. */
function appendXml(target: string, subject: string, attrs = '', body = 'text'): string {
  return `<messageAppend ${target} ${attrs}><EMail><From>me@example.test</From><Subject>${subject}</Subject><MIME type="text" subtype="plain">${body}</MIME></EMail></messageAppend>`;
}

/** HTTP GET of a session resource. */
async function get(urlID: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/${path}`, { headers });
}

/** Uploads a file with PUT; waits for newUploaded. */
async function putUpload(user: User, uploadID: string, data: Buffer | string, contentType: string, extraHeaders: Record<string, string> = {}): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${user.urlID}/UPLOAD/${encodeURIComponent(uploadID)}`, {
    method: 'PUT',
    headers: { 'Content-Type': contentType, ...extraHeaders },
    body: typeof data === 'string' ? data : new Uint8Array(data),
  });
  assert.equal(response.status, 200, await response.text());
  const note = await user.client.nextAsync('newUploaded');
  assert.equal(note.attrs.uploadID, uploadID);
}

/** A tiny GIF (the spec's test.gif is longer; any bytes do). */
const GIF = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

// =======================================================================================
// 1. Mailbox management

describe('mailbox management', () => {
  test('reportMailboxChanges: the owner\'s sessions that asked get mailboxModified, coalesced per mailbox', async () => {
    const u = await newUser();
    const watcher = await u.another();
    await ok(watcher, '<setSessionOption name="reportMailboxChanges" value="yes"/>');
    await ok(u.client, '<mailboxCreate mailbox="Watched"/>');
    assert.equal((await watcher.nextAsync('mailboxModified')).attrs.mailbox, 'Watched');
    // Three changes in one turn: one message.
    await deliverRaw(server, u.address, 'Watched', [textMail('a'), textMail('b'), textMail('c')]);
    assert.equal((await watcher.nextAsync('mailboxModified')).attrs.mailbox, 'Watched');
    await ok(watcher, '<noop/>');
    assert.equal(watcher.asyncMessages.filter((m) => m.name === 'mailboxModified').length, 0);
    // The session that did not ask hears nothing; after "no" neither does the watcher.
    await ok(watcher, '<setSessionOption name="reportMailboxChanges" value="no"/>');
    await deliverRaw(server, u.address, 'Watched', [textMail('d')]);
    await ok(watcher, '<noop/>');
    await ok(u.client, '<noop/>');
    assert.equal(watcher.asyncMessages.filter((m) => m.name === 'mailboxModified').length, 0);
    assert.equal(u.client.asyncMessages.filter((m) => m.name === 'mailboxModified').length, 0);
  });

  test('mailboxCreate with a class; a duplicate is refused; mailboxList reports the IMAP attributes', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Notes" mailboxClass="IPF.StickyNote"/>');
    await fails(u.client, '<mailboxCreate mailbox="Notes"/>', /already exists/);
    await fails(u.client, '<mailboxCreate mailbox="Notes" mailboxClass="IPF.StickyNote"/>', /already exists/);
    for (const bad of ['', '/Lead', 'Trail/', 'Dou//ble']) await fails(u.client, `<mailboxCreate mailbox="${bad}"/>`);
    await ok(u.client, '<mailboxCreate mailbox="Work"/>');
    const raws = [textMail('one'), textMail('two'), textMail('three')];
    await deliverRaw(server, u.address, 'Work', [{ raw: raws[0]!, flags: 'Seen' }, raws[1]!, { raw: raws[2]!, flags: 'Flagged' }]);

    const boxes = await list(u.client);
    assert.deepEqual([...boxes.keys()].sort(), ['INBOX', 'Notes', 'Work']);
    const notes = boxes.get('Notes')!;
    assert.equal(notes.CLASS, 'IPF.StickyNote');
    assert.equal(notes.MESSAGES, '0');
    assert.equal(notes.UIDNEXT, '1');
    assert.equal(notes.UNSEEN, '0');
    assert.equal(notes.SIZE, '0');
    assert.match(notes.UIDVALIDITY ?? '', /^\d+$/);
    assert.equal(notes.pureFolder, undefined);
    assert.equal(notes.isFolder, undefined);

    const work = boxes.get('Work')!;
    assert.equal(work.CLASS, undefined, 'a mail-class mailbox has no CLASS');
    assert.equal(work.MESSAGES, '3');
    assert.equal(work.UNSEEN, '2');
    assert.equal(work.UIDNEXT, '4');
    assert.equal(work.SIZE, String(raws.reduce((s, r) => s + r.length, 0)));
    const init = await open(u.client, 'W', 'Work', ['SIZE']);
    assert.equal(init.attrs.UIDValidity, work.UIDVALIDITY, 'folderOpen and mailboxList agree on UIDVALIDITY');
    assert.equal(init.attrs.UIDNext, '4');
    const sizes = (await browseAll(u.client, 'W')).map((r) => r.fields);
    assert.deepEqual(sizes, raws.map((r) => `<SIZE>${r.length}</SIZE>`));
    assert.notEqual(work.UIDVALIDITY, notes.UIDVALIDITY);
  });

  test('mailboxRename: children follow only with `children`; names are checked', async () => {
    const u = await newUser();
    for (const name of ['Work', 'Work/2024', 'Work/2024/Q1', 'Misc']) await ok(u.client, `<mailboxCreate mailbox="${name}"/>`);
    await deliverRaw(server, u.address, 'Work', [textMail('w1'), textMail('w2')]);
    await deliverRaw(server, u.address, 'Work/2024/Q1', [textMail('q1')]);

    // Without children: only Work moves; Work stays as the parent of its children (a pure folder).
    await ok(u.client, '<mailboxRename mailbox="Work" newName="Job"/>');
    let boxes = await list(u.client);
    assert.deepEqual([...boxes.keys()].sort(), ['INBOX', 'Job', 'Misc', 'Work', 'Work/2024', 'Work/2024/Q1']);
    assert.equal(boxes.get('Job')!.MESSAGES, '2', 'the messages moved with the mailbox');
    assert.equal(boxes.get('Work')!.pureFolder, 'yes');
    assert.equal(boxes.get('Work')!.MESSAGES, undefined);
    assert.equal(boxes.get('Work/2024/Q1')!.MESSAGES, '1');

    // With children: the whole subtree moves.
    await ok(u.client, '<mailboxRename mailbox="Work/2024" newName="Archive/2024" children="yes"/>');
    boxes = await list(u.client);
    assert.deepEqual([...boxes.keys()].sort(), ['Archive', 'Archive/2024', 'Archive/2024/Q1', 'INBOX', 'Job', 'Misc']);
    assert.equal(boxes.get('Archive/2024/Q1')!.MESSAGES, '1');
    assert.equal(boxes.get('Archive/2024')!.isFolder, 'yes');
    assert.equal(boxes.get('Archive')!.pureFolder, 'yes');

    // An existing target name, a missing source, INBOX: refused.
    await fails(u.client, '<mailboxRename mailbox="Job" newName="Misc"/>', /exists/);
    await fails(u.client, '<mailboxRename mailbox="Nothing" newName="Other"/>');
    await fails(u.client, '<mailboxRename mailbox="INBOX" newName="Old"/>');
    await fails(u.client, '<mailboxRename mailbox="inbox" newName="Old"/>');
    boxes = await list(u.client);
    assert.ok(boxes.has('INBOX') && !boxes.has('Old'));
    assert.equal(boxes.get('Misc')!.pureFolder, undefined);
  });

  test('mailboxRemove: with children all go; without, a mailbox with children becomes a pure folder; INBOX stays', async () => {
    const u = await newUser();
    for (const name of ['A', 'A/B', 'A/B/C', 'D', 'D/E']) await ok(u.client, `<mailboxCreate mailbox="${name}"/>`);
    await deliverRaw(server, u.address, 'A', [textMail('a')]);
    await deliverRaw(server, u.address, 'A/B/C', [textMail('c')]);

    await ok(u.client, '<mailboxRemove mailbox="A"/>');
    let boxes = await list(u.client);
    assert.deepEqual([...boxes.keys()].sort(), ['A', 'A/B', 'A/B/C', 'D', 'D/E', 'INBOX']);
    assert.equal(boxes.get('A')!.pureFolder, 'yes', 'A keeps its children as a pure folder');
    assert.equal(boxes.get('A')!.MESSAGES, undefined);
    assert.equal(boxes.get('A/B/C')!.MESSAGES, '1');
    await fails(u.client, '<folderOpen folder="A" mailbox="A"><field>UID</field></folderOpen>');
    await fails(u.client, appendXml('targetMailbox="A"', 'into a pure folder'));
    // A pure folder can be made a mailbox again, empty.
    await ok(u.client, '<mailboxCreate mailbox="A"/>');
    assert.equal((await list(u.client, 'filter="A"')).get('A')!.MESSAGES, '0');

    await ok(u.client, '<mailboxRemove mailbox="A/B" children="yes"/>');
    boxes = await list(u.client);
    assert.deepEqual([...boxes.keys()].sort(), ['A', 'D', 'D/E', 'INBOX']);
    await ok(u.client, '<mailboxRemove mailbox="D/E"/>');
    assert.deepEqual([...(await list(u.client)).keys()].sort(), ['A', 'D', 'INBOX']);
    assert.equal((await list(u.client)).get('D')!.isFolder, undefined, 'D has no children any more');

    await fails(u.client, '<mailboxRemove mailbox="INBOX"/>');
    await fails(u.client, '<mailboxRemove mailbox="INBOX" children="yes"/>');
    await fails(u.client, '<mailboxRemove mailbox="Nothing"/>');
    assert.ok((await list(u.client)).has('INBOX'));
  });

  test('mailboxList: * and % filters, mailboxClass ("" = mail only), pureFolder yes/no', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Notes" mailboxClass="IPF.StickyNote"/>');
    await ok(u.client, '<mailboxCreate mailbox="Contacts" mailboxClass="IPF.Contact"/>');
    await ok(u.client, '<mailboxCreate mailbox="Work/2024/Q1"/>');
    await ok(u.client, '<mailboxCreate mailbox="Work/Plans"/>');
    await ok(u.client, '<mailboxCreate mailbox="Sent"/>');
    const names = async (attrs: string): Promise<string[]> => [...(await list(u.client, attrs)).keys()].sort();

    assert.deepEqual(await names('filter="*"'), ['Contacts', 'INBOX', 'Notes', 'Sent', 'Work', 'Work/2024', 'Work/2024/Q1', 'Work/Plans']);
    assert.deepEqual(await names(''), await names('filter="*"'));
    assert.deepEqual(await names('filter="%"'), ['Contacts', 'INBOX', 'Notes', 'Sent', 'Work']);
    assert.deepEqual(await names('filter="Work/%"'), ['Work/2024', 'Work/Plans']);
    assert.deepEqual(await names('filter="Work/*"'), ['Work/2024', 'Work/2024/Q1', 'Work/Plans']);
    assert.deepEqual(await names('filter="*Q1"'), ['Work/2024/Q1']);
    assert.deepEqual(await names('filter="S%"'), ['Sent']);
    assert.deepEqual(await names('filter="inbox"'), ['INBOX'], 'INBOX matches case-insensitively');
    assert.deepEqual(await names('filter="Nothing*"'), []);

    // Hierarchy nodes that exist only as parents are pure folders.
    const all = await list(u.client);
    assert.equal(all.get('Work')!.pureFolder, 'yes');
    assert.equal(all.get('Work/2024')!.pureFolder, 'yes');
    assert.equal(all.get('Work/2024/Q1')!.pureFolder, undefined);
    assert.equal(all.get('Contacts')!.CLASS, 'IPF.Contact');

    assert.deepEqual(await names('pureFolder="no"'), ['Contacts', 'INBOX', 'Notes', 'Sent', 'Work/2024/Q1', 'Work/Plans']);
    assert.deepEqual(await names('mailboxClass="" pureFolder="no"'), ['INBOX', 'Sent', 'Work/2024/Q1', 'Work/Plans']);
    assert.deepEqual(await names('mailboxClass="IPF.Contact" pureFolder="no"'), ['Contacts']);
    // With pureFolder="yes", mailboxes of another class are listed as pure folders.
    const mailOnly = await list(u.client, 'mailboxClass="" pureFolder="yes"');
    assert.deepEqual([...mailOnly.keys()].sort(), ['Contacts', 'INBOX', 'Notes', 'Sent', 'Work', 'Work/2024', 'Work/2024/Q1', 'Work/Plans']);
    assert.equal(mailOnly.get('Notes')!.pureFolder, 'yes');
    assert.equal(mailOnly.get('Notes')!.MESSAGES, undefined);
    assert.equal(mailOnly.get('Notes')!.CLASS, undefined);
    assert.equal(mailOnly.get('Sent')!.pureFolder, undefined);
    assert.equal(mailOnly.get('Sent')!.MESSAGES, '0');
    const contacts = await list(u.client, 'mailboxClass="IPF.Contact" pureFolder="yes" filter="%"');
    assert.deepEqual([...contacts.keys()].sort(), ['Contacts', 'INBOX', 'Notes', 'Sent', 'Work']);
    assert.equal(contacts.get('Contacts')!.pureFolder, undefined);
    assert.equal(contacts.get('INBOX')!.pureFolder, 'yes');
  });

  test('isFolder marks mailboxes that have children', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Lists"/>');
    await ok(u.client, '<mailboxCreate mailbox="Lists/node"/>');
    const boxes = await list(u.client);
    assert.equal(boxes.get('Lists')!.isFolder, 'yes');
    assert.equal(boxes.get('Lists')!.pureFolder, undefined);
    assert.equal(boxes.get('Lists')!.MESSAGES, '0');
    assert.equal(boxes.get('Lists/node')!.isFolder, undefined);
    assert.equal(boxes.get('INBOX')!.isFolder, undefined);
  });

  test('subscriptions: mailboxSubUpdate add/remove (body elements or attributes), mailboxSubList with a filter', async () => {
    const u = await newUser();
    const subs = async (attrs = ''): Promise<string[]> => {
      const reply = await ok(u.client, `<mailboxSubList ${attrs}/>`);
      for (const m of reply.messages) assert.equal(m.name, 'mailboxSubscription');
      return reply.messages.map((m) => m.attrs.mailbox!).sort();
    };
    assert.deepEqual(await subs(), []);
    await ok(u.client, '<mailboxCreate mailbox="Work"/>');
    await ok(
      u.client,
      '<mailboxSubUpdate><mailboxSubscription mailbox="Work" mode="add"/><mailboxSubscription mailbox="Ghost/Box" mode="add"/><mailboxSubscription mailbox="Lists/ximss" mode="add"/></mailboxSubUpdate>',
    );
    assert.deepEqual(await subs(), ['Ghost/Box', 'Lists/ximss', 'Work'], 'subscriptions need not exist');
    await ok(u.client, '<mailboxSubUpdate><mailboxSubscription mailbox="Work" mode="add"/></mailboxSubUpdate>');
    assert.deepEqual(await subs(), ['Ghost/Box', 'Lists/ximss', 'Work'], 'adding twice keeps one');
    await ok(u.client, '<mailboxSubUpdate mailbox="Проекты" mode="add"/>');
    assert.deepEqual(await subs('filter="G*"'), ['Ghost/Box']);
    assert.deepEqual(await subs('filter="%"'), ['Work', 'Проекты']);
    assert.deepEqual(await subs('filter="*/*"'), ['Ghost/Box', 'Lists/ximss']);
    await ok(u.client, '<mailboxSubUpdate><mailboxSubscription mailbox="Ghost/Box" mode="remove"/><mailboxSubscription mailbox="Work"/></mailboxSubUpdate>');
    assert.deepEqual(await subs(), ['Lists/ximss', 'Проекты']);
    await ok(u.client, '<mailboxSubUpdate><mailboxSubscription mailbox="Never/Subscribed" mode="remove"/></mailboxSubUpdate>');
    assert.deepEqual(await subs(), ['Lists/ximss', 'Проекты']);
    // Another session of the account sees the same set.
    const other = await u.another();
    const seen = (await ok(other, '<mailboxSubList/>')).messages.map((m) => m.attrs.mailbox).sort();
    assert.deepEqual(seen, ['Lists/ximss', 'Проекты']);
  });

  test('aliases: add, replace, remove; an alias works as a mailbox name', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Work/2024"/>');
    await ok(u.client, '<mailboxCreate mailbox="Work/2025"/>');
    await deliverRaw(server, u.address, 'Work/2024', [textMail('old one'), textMail('old two')]);
    const aliases = async (): Promise<[string, string][]> => {
      const reply = await ok(u.client, '<mailboxAliasList/>');
      for (const m of reply.messages) assert.equal(m.name, 'mailboxAlias');
      return reply.messages.map((m): [string, string] => [m.attrs.name!, m.text()]).sort();
    };
    assert.deepEqual(await aliases(), []);
    await ok(u.client, '<mailboxAliasUpdate><mailboxAlias name="Current" mode="add">Work/2024</mailboxAlias><mailboxAlias name="Next" mode="add">Work/2025</mailboxAlias></mailboxAliasUpdate>');
    assert.deepEqual(await aliases(), [['Current', 'Work/2024'], ['Next', 'Work/2025']]);

    const init = await open(u.client, 'C', 'Current', ['Subject']);
    assert.equal(init.attrs.messages, '2', 'the alias opens its target');
    await ok(u.client, appendXml('targetMailbox="Current"', 'via alias'));
    assert.equal((await list(u.client, 'filter="Work/2024"')).get('Work/2024')!.MESSAGES, '3');
    await ok(u.client, '<folderClose folder="C"/>');

    await ok(u.client, '<mailboxAliasUpdate><mailboxAlias name="Current" mode="add">Work/2025</mailboxAlias></mailboxAliasUpdate>');
    assert.deepEqual(await aliases(), [['Current', 'Work/2025'], ['Next', 'Work/2025']], 'adding an existing name replaces it');
    assert.equal((await open(u.client, 'C', 'Current', ['Subject'])).attrs.messages, '0');
    await ok(u.client, '<folderClose folder="C"/>');

    await ok(u.client, '<mailboxAliasUpdate><mailboxAlias name="Current" mode="remove"/></mailboxAliasUpdate>');
    assert.deepEqual(await aliases(), [['Next', 'Work/2025']]);
    await fails(u.client, '<folderOpen folder="C" mailbox="Current"><field>Subject</field></folderOpen>');
    await ok(u.client, '<mailboxAliasUpdate><mailboxAlias name="Next"/></mailboxAliasUpdate>');
    assert.deepEqual(await aliases(), []);
  });

  test('ACL: the spec example exchange (lr; add di, sub r -> lrdi and l); mailboxRightsGet', async () => {
    const u = await newUser();
    const A001 = await u.client.request('<mailboxCreate id="A001" mailbox="MyNotes" mailboxClass="IPF.StickyNote" />');
    assert.equal(A001.response.toString(), '<response id="A001"/>');
    assert.equal((await u.client.request('<mailboxRename id="A002" mailbox="MyNotes" newName="SharedNotes" />')).response.toString(), '<response id="A002"/>');
    const A003 = await u.client.request(
      '<mailboxACLUpdate id="A003" mailbox="SharedNotes"><aclElem pattern="user1">lr</aclElem><aclElem pattern="user2">lr</aclElem></mailboxACLUpdate>',
    );
    assert.equal(A003.response.toString(), '<response id="A003"/>');
    const A004 = await u.client.request(
      '<mailboxACLUpdate id="A004" mailbox="SharedNotes"><aclElem pattern="user1" mode="add">di</aclElem><aclElem pattern="user2" mode="sub">r</aclElem></mailboxACLUpdate>',
    );
    assert.equal(A004.response.toString(), '<response id="A004"/>');
    const A005 = await u.client.request('<mailboxACLList id="A005" mailbox="SharedNotes"/>');
    assert.equal(A005.messages.length, 1);
    assert.equal(
      A005.messages[0]!.toString(),
      '<mailboxACL id="A005" mailbox="SharedNotes"><aclElem pattern="user1">lrdi</aclElem><aclElem pattern="user2">l</aclElem></mailboxACL>',
    );
    assert.equal(A005.response.toString(), '<response id="A005"/>');

    // clear removes an element; a plain element replaces the rights.
    await ok(u.client, '<mailboxACLUpdate mailbox="SharedNotes"><aclElem pattern="user2" mode="clear"/><aclElem pattern="user1">w</aclElem><aclElem pattern="anyone">l</aclElem></mailboxACLUpdate>');
    const acl = (await ok(u.client, '<mailboxACLList mailbox="SharedNotes"/>')).messages[0]!;
    assert.deepEqual(acl.elements('aclElem').map((e) => [e.attrs.pattern, e.text()]), [['user1', 'w'], ['anyone', 'l']]);

    // The owner has every right.
    const rights = (await ok(u.client, '<mailboxRightsGet mailbox="SharedNotes"/>')).messages[0]!;
    assert.equal(rights.name, 'mailboxRights');
    assert.equal(rights.attrs.mailbox, 'SharedNotes');
    for (const letter of 'lrswipcda') assert.ok(rights.text().includes(letter), `owner has ${letter}: ${rights.text()}`);
    await fails(u.client, '<mailboxRightsGet mailbox="NoSuchBox"/>');
    await fails(u.client, '<mailboxACLList mailbox="NoSuchBox"/>');
  });

  describe('ACL enforcement across two accounts', () => {
    let alice: User;
    let bob: User;
    const shared = (who: User): string => `~${who.address}/Shared`;

    before(async () => {
      alice = await newUser({ name: 'alice' });
      bob = await newUser({ name: 'bob' });
      await ok(alice.client, '<mailboxCreate mailbox="Shared"/>');
      await ok(alice.client, '<mailboxCreate mailbox="Private"/>');
      await ok(alice.client, '<mailboxCreate mailbox="Listed"/>');
      await deliverRaw(server, alice.address, 'Shared', [textMail('shared one'), textMail('shared two')]);
      await deliverRaw(server, alice.address, 'Private', [textMail('secret')]);
    });

    test('without rights bob can neither open, list nor append', async () => {
      const error = await fails(bob.client, `<folderOpen folder="S" mailbox="${shared(alice)}"><field>Subject</field></folderOpen>`);
      assert.match(error, /mailbox is not found|mailbox access denied/);
      assert.deepEqual([...(await list(bob.client, `filter="~${alice.address}/*"`)).keys()], []);
      await fails(bob.client, `<mailboxRightsGet mailbox="${shared(alice)}"/>`);
      await fails(bob.client, appendXml(`targetMailbox="${shared(alice)}"`, 'intruder'));
      await fails(bob.client, `<mailboxACLUpdate mailbox="${shared(alice)}"><aclElem pattern="bob">lrswipcda</aclElem></mailboxACLUpdate>`);
      assert.deepEqual(await storedUids(server, alice.address, 'Shared'), [1, 2]);
    });

    test('with lr bob reads, but marking Deleted and appending are refused with "mailbox access denied"', async () => {
      await ok(alice.client, `<mailboxACLUpdate mailbox="Shared"><aclElem pattern="${bob.address}">lr</aclElem></mailboxACLUpdate>`);
      await ok(alice.client, `<mailboxACLUpdate mailbox="Listed"><aclElem pattern="${bob.address}">l</aclElem></mailboxACLUpdate>`);

      const listed = await list(bob.client, `filter="~${alice.address}/*"`);
      assert.deepEqual([...listed.keys()].sort(), [`~${alice.address}/Listed`, shared(alice)], 'only what bob may look up');
      assert.equal(listed.get(shared(alice))!.rights, 'lr');
      assert.equal(listed.get(`~${alice.address}/Listed`)!.rights, 'l');
      assert.equal(listed.get(shared(alice))!.MESSAGES, '2');
      assert.equal((await list(alice.client)).get('Shared')!.rights, undefined, 'the owner sees no rights attribute');

      const rights = (await ok(bob.client, `<mailboxRightsGet mailbox="${shared(alice)}"/>`)).messages[0]!;
      assert.equal(rights.attrs.mailbox, shared(alice));
      assert.equal(rights.text(), 'lr');

      const init = await open(bob.client, 'S', shared(alice), ['Subject', 'FLAGS'], 'sortField="UID"');
      assert.equal(init.attrs.messages, '2');
      assert.equal(init.attrs.rights, 'lr');
      assert.deepEqual((await browseAll(bob.client, 'S')).map((r) => r.fields.replace(/<FLAGS>.*<\/FLAGS>|<FLAGS\/>/, '')), [
        '<Subject>shared one</Subject>',
        '<Subject>shared two</Subject>',
      ]);
      const read = (await ok(bob.client, '<folderRead folder="S" UID="1"/>')).messages[0]!;
      assert.equal(read.element('EMail')?.element('Subject')?.text(), 'shared one');

      await fails(bob.client, '<messageMark folder="S" flags="Deleted"><UID>1</UID></messageMark>', 'mailbox access denied');
      await fails(bob.client, '<messageRemove folder="S" mode="Immediately"><UID>1</UID></messageRemove>', 'mailbox access denied');
      await fails(bob.client, '<folderExpunge folder="S"/>', 'mailbox access denied');
      await fails(bob.client, appendXml(`targetMailbox="${shared(alice)}"`, 'intruder'), 'mailbox access denied');
      await fails(bob.client, appendXml('folder="S"', 'intruder'), 'mailbox access denied');
      await fails(bob.client, `<mailboxACLList mailbox="${shared(alice)}"/>`, 'mailbox access denied');
      await fails(bob.client, `<mailboxRename mailbox="${shared(alice)}" newName="~${alice.address}/Mine"/>`);
      await fails(bob.client, `<mailboxRemove mailbox="${shared(alice)}"/>`);
      // "l" without "r": listed, but not readable.
      await fails(bob.client, `<folderOpen folder="L" mailbox="~${alice.address}/Listed"><field>UID</field></folderOpen>`, 'mailbox access denied');
      // Private was never granted: not even its existence shows.
      await fails(bob.client, `<folderOpen folder="P" mailbox="~${alice.address}/Private"><field>UID</field></folderOpen>`, /mailbox is not found|mailbox access denied/);
      assert.deepEqual(await storedUids(server, alice.address, 'Shared'), [1, 2]);
      // Reading allows copying out; moving out needs the delete right, and copies nothing when refused.
      const copied = await ok(bob.client, '<messageCopy folder="S" targetMailbox="FromAlice" mailboxClass="" report="uid"><UID>1</UID></messageCopy>');
      assert.deepEqual(copied.messages.map((m) => m.attrs.UID), ['1']);
      await fails(bob.client, '<messageMove folder="S" targetMailbox="FromAlice"><UID>2</UID></messageMove>', 'mailbox access denied');
      assert.deepEqual(await storedUids(server, bob.address, 'FromAlice'), [1]);
      assert.deepEqual(await storedUids(server, alice.address, 'Shared'), [1, 2]);
    });

    test('with i added bob can append (by name)', async () => {
      await ok(alice.client, `<mailboxACLUpdate mailbox="Shared"><aclElem pattern="${bob.address}" mode="add">i</aclElem></mailboxACLUpdate>`);
      assert.equal((await ok(bob.client, `<mailboxRightsGet mailbox="${shared(alice)}"/>`)).messages[0]!.text(), 'lri');
      const added = (await ok(bob.client, appendXml(`targetMailbox="${shared(alice)}"`, 'from bob', 'report="uid"'))).messages;
      assert.equal(added[0]?.name, 'messageAdded');
      assert.equal(added[0]!.attrs.UID, '3');
      assert.deepEqual(await storedUids(server, alice.address, 'Shared'), [1, 2, 3]);
      await fails(bob.client, '<messageMark folder="S" flags="Deleted"><UID>1</UID></messageMark>', 'mailbox access denied');
    });

    test('rights granted after folderOpen apply to the open folder', async () => {
      // bob opened S with lr; alice has since granted i: appending through the folder works.
      const before = await storedUids(server, alice.address, 'Shared');
      await ok(bob.client, appendXml('folder="S"', 'through the folder'));
      assert.equal((await storedUids(server, alice.address, 'Shared')).length, before.length + 1);
    });

    test('rights revoked after folderOpen are enforced on the open folder', async () => {
      // bob has lri now; he opens a second folder, then alice takes i and r away.
      await open(bob.client, 'S2', shared(alice), ['UID']);
      await ok(alice.client, `<mailboxACLUpdate mailbox="Shared"><aclElem pattern="${bob.address}" mode="sub">ir</aclElem></mailboxACLUpdate>`);
      const before = await storedUids(server, alice.address, 'Shared');
      await fails(bob.client, appendXml('folder="S2"', 'no longer allowed'), 'mailbox access denied');
      assert.deepEqual(await storedUids(server, alice.address, 'Shared'), before);
      await fails(bob.client, '<folderRead folder="S2" UID="1"/>', /mailbox access denied|mailbox is not found/);
    });
  });

  test('mailbox names are UTF-8: Проекты/Отчёты', async () => {
    const u = await newUser();
    const name = 'Проекты/Отчёты';
    await ok(u.client, `<mailboxCreate mailbox="${name}"/>`);
    const boxes = await list(u.client, 'filter="Проекты/%"');
    assert.deepEqual([...boxes.keys()], [name]);
    assert.ok(u.client.raw.some((text) => text.includes(`mailbox="${name}"`)), 'the name travels as UTF-8, not IMAP UTF-7');
    assert.equal((await list(u.client, 'filter="%"')).get('Проекты')!.pureFolder, 'yes');
    await ok(u.client, appendXml(`targetMailbox="${name}"`, 'Отчёт за март'));
    const init = await open(u.client, 'Отчёты', name, ['Subject']);
    assert.equal(init.attrs.messages, '1');
    assert.deepEqual((await browseAll(u.client, 'Отчёты')).map((r) => r.fields), ['<Subject>Отчёт за март</Subject>']);
    await ok(u.client, '<folderClose folder="Отчёты"/>');
    await ok(u.client, `<mailboxRename mailbox="${name}" newName="Проекты/Отчёты 2024"/>`);
    assert.deepEqual([...(await list(u.client, 'filter="Проекты/*"')).keys()], ['Проекты/Отчёты 2024']);
    assert.equal((await list(u.client, 'filter="Проекты/*"')).get('Проекты/Отчёты 2024')!.MESSAGES, '1');
  });
});

// =======================================================================================
// 2. Folders

describe('folders', () => {
  test('folderOpen: the init report comes before the response; open/close errors use the texts clients match', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [{ raw: textMail('a'), flags: 'Seen' }, textMail('b'), textMail('c')]);
    const uidValidity = (await list(u.client)).get('INBOX')!.UIDVALIDITY;
    const reply = await u.client.request('<folderOpen id="o1" folder="INBOX-MM-1" mailbox="INBOX"><field>Subject</field></folderOpen>');
    assert.deepEqual(
      reply.messages.map((m) => m.toString()),
      [`<folderReport id="o1" folder="INBOX-MM-1" mode="init" messages="3" unseen="2" UIDValidity="${uidValidity}" UIDNext="4"/>`],
    );
    assert.equal(reply.response.toString(), '<response id="o1"/>');
    const index = u.client.received.indexOf(reply.messages[0]!);
    assert.equal(u.client.received[index + 1], reply.response, 'the init report immediately precedes the response');

    await fails(u.client, '<folderOpen folder="INBOX-MM-1" mailbox="INBOX"><field>Subject</field></folderOpen>', 'folder has already been opened');
    // The same mailbox may be open as another folder.
    assert.equal((await open(u.client, 'second', 'INBOX', ['UID'])).attrs.messages, '3');
    // Without a mailbox attribute the folder name is the mailbox name.
    assert.equal((await open(u.client, 'INBOX', 'INBOX', ['UID'])).attrs.messages, '3');
    for (const request of [
      '<folderBrowse folder="nope"><index>0</index></folderBrowse>',
      '<folderSync folder="nope"/>',
      '<folderClose folder="nope"/>',
      '<folderReopen folder="nope"/>',
      '<folderRead folder="nope" UID="1"/>',
      '<messageMark folder="nope" flags="Seen"><UID>1</UID></messageMark>',
      '<folderExpunge folder="nope"/>',
      '<folderSearch folder="nope" filter="ALL"/>',
    ]) {
      await fails(u.client, request, 'folder has not been opened');
    }
    await ok(u.client, '<folderClose folder="second"/>');
    await fails(u.client, '<folderBrowse folder="second"><index>0</index></folderBrowse>', 'folder has not been opened');
    await ok(u.client, '<closeMailbox folder="INBOX"/>');
    await fails(u.client, '<folderSync folder="INBOX"/>', 'folder has not been opened');
    await ok(u.client, '<folderClose folder="INBOX-MM-1"/>');
    await fails(u.client, '<folderClose folder="INBOX-MM-1"/>', 'folder has not been opened');

    // A missing mailbox: an error, unless mailboxClass asks for it to be created.
    await fails(u.client, '<folderOpen folder="X" mailbox="Missing"><field>UID</field></folderOpen>');
    const created = await open(u.client, 'X', 'Missing', ['UID'], 'mailboxClass=""');
    assert.equal(created.attrs.messages, '0');
    assert.equal(created.attrs.UIDNext, '1');
    assert.ok((await list(u.client)).has('Missing'));
  });

  test('viewer fields: every kind, names echoed exactly, dates in GMT with localTime in the account time zone', async () => {
    const u = await newUser({ prefs: { TimeZone: 'Asia/Tokyo' } });
    const m1 = rfc822(
      [
        ['From', '"John Smith" <john@example.com>'],
        ['To', 'jane@example.org'],
        ['Cc', '=?iso-8859-1?Q?Andr=E9_Blanc?= <andre@example.net>'],
        ['Date', 'Tue, 15 Mar 2011 10:00:00 -0500'],
        ['Subject', '=?koi8-r?B?8NLJ18XU?= =?iso-8859-1?Q?_Caf=E9?='],
        ['X-Mailer', 'TestMailer 1.0'],
        ['X-Priority', '1 (Highest)'],
      ],
      'one\n',
    );
    const m2 = rfc822(
      [
        ['From', 'plain@example.com'],
        ['To', '"Jane Roe" <jane@example.org>'],
        ['Date', 'Sat, 31 Dec 2011 23:30:00 +0000'],
        ['Subject', '=?iso-8859-1?Q?Caf=E9_cr=E8me?='],
        ['X-Priority', '5'],
      ],
      'two\n',
    );
    const m3 = rfc822([['From', '=?utf-8?B?0JjQstCw0L0=?= <ivan@example.ru>'], ['Subject', 'no date']], 'three\n');
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: m1, flags: 'Seen,Flagged,$Work', internalDate: Date.UTC(2012, 0, 2, 3, 4, 5) },
      { raw: m2, internalDate: Date.UTC(2012, 0, 3, 20, 0, 0) },
      { raw: m3, flags: 'Answered', internalDate: Date.UTC(2012, 0, 4, 0, 0, 0) },
    ]);
    const fields = ['From', 'FROM', 'E-From', 'To', 'E-To', 'Cc', 'Date', 'INTERNALDATE', 'Pty', 'UID', 'ORIGUID', 'SIZE', 'FLAGS', 'Subject', 'X-Mailer', 'X-Missing'];
    await open(u.client, 'F', 'INBOX', fields, 'sortField="UID"');
    const reports = await browse(u.client, 'F', '<index from="0" till="2"/>');
    assert.equal(reports.length, 3);
    for (const r of reports) assert.deepEqual(r.elements().map((e) => e.name).filter((n, i, all) => all.indexOf(n) === i), fields);
    const value = (r: XmlElement, name: string): string => {
      const e = r.elements(name);
      assert.equal(e.length, 1, `one ${name}`);
      return e[0]!.text();
    };
    const [r1, r2, r3] = reports as [XmlElement, XmlElement, XmlElement];
    assert.deepEqual([r1.attrs.index, r1.attrs.UID, r2.attrs.UID, r3.attrs.UID], ['0', '1', '2', '3']);

    assert.equal(value(r1, 'From'), 'John Smith');
    assert.equal(value(r1, 'FROM'), 'John Smith');
    assert.equal(r1.element('E-From')!.toString(), '<E-From realName="John Smith">john@example.com</E-From>');
    assert.equal(value(r1, 'To'), 'jane@example.org', 'no real name: the address');
    assert.equal(r1.element('E-To')!.toString(), '<E-To>jane@example.org</E-To>');
    assert.equal(value(r1, 'Cc'), 'André Blanc');
    assert.equal(r1.element('Date')!.attrs.localTime, '20110316T000000', 'Tokyo is 14 hours ahead of -0500');
    assert.equal(value(r1, 'Date'), '20110315T150000Z');
    assert.equal(r1.element('INTERNALDATE')!.attrs.localTime, '20120102T120405');
    assert.equal(value(r1, 'INTERNALDATE'), '20120102T030405Z');
    assert.equal(value(r1, 'Pty'), 'High');
    assert.equal(value(r1, 'UID'), '1');
    assert.equal(value(r1, 'ORIGUID'), '1');
    assert.equal(value(r1, 'SIZE'), String(m1.length));
    assert.deepEqual(flagSet(value(r1, 'FLAGS')), ['$Work', 'Flagged', 'Seen']);
    assert.equal(value(r1, 'Subject'), 'Привет Café');
    assert.equal(value(r1, 'X-Mailer'), 'TestMailer 1.0');
    assert.equal(value(r1, 'X-Missing'), '');

    assert.equal(value(r2, 'From'), 'plain@example.com');
    assert.equal(r2.element('E-From')!.toString(), '<E-From>plain@example.com</E-From>');
    assert.equal(value(r2, 'To'), 'Jane Roe');
    assert.equal(r2.element('E-To')!.toString(), '<E-To realName="Jane Roe">jane@example.org</E-To>');
    assert.equal(value(r2, 'Cc'), '');
    assert.equal(r2.element('Date')!.attrs.localTime, '20120101T083000');
    assert.equal(value(r2, 'Date'), '20111231T233000Z');
    assert.equal(r2.element('INTERNALDATE')!.attrs.localTime, '20120104T050000');
    assert.equal(value(r2, 'Pty'), 'Low');
    assert.equal(value(r2, 'SIZE'), String(m2.length));
    assert.deepEqual(flagSet(value(r2, 'FLAGS')), []);
    assert.equal(value(r2, 'Subject'), 'Café crème');
    assert.equal(value(r2, 'X-Mailer'), '');

    assert.equal(value(r3, 'From'), 'Иван');
    assert.equal(r3.element('E-From')!.toString(), '<E-From realName="Иван">ivan@example.ru</E-From>');
    assert.equal(value(r3, 'Date'), '', 'no Date field: empty');
    assert.equal(value(r3, 'Pty'), '');
    assert.deepEqual(flagSet(value(r3, 'FLAGS')), ['Answered']);
    assert.equal(value(r3, 'Subject'), 'no date');
  });

  test('Date and INTERNALDATE viewer values are GMT times written YYYYMMDDTHHMMSSZ', async () => {
    const u = await newUser({ prefs: { TimeZone: 'Europe/Berlin' } });
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: textMail('dated', { date: 'Thu, 30 Aug 2007 11:43:18 -0700' }), internalDate: Date.UTC(2007, 7, 30, 18, 43, 20) },
    ]);
    await open(u.client, 'F', 'INBOX', ['Date', 'INTERNALDATE']);
    const [report] = await browse(u.client, 'F', '<index>0</index>');
    assert.equal(report!.element('Date')!.toString(), '<Date localTime="20070830T204318">20070830T184318Z</Date>');
    assert.equal(report!.element('INTERNALDATE')!.toString(), '<INTERNALDATE localTime="20070830T204320">20070830T184320Z</INTERNALDATE>');
  });

  test('sortField: Date, From, Subject, SIZE, UID, INTERNALDATE, X-Mailer; sortOrder desc reverses', async () => {
    const u = await newUser();
    const spec = [
      { day: 3, from: '"Carol" <carol@example.org>', subject: 'delta', mailer: 'm2', internal: 5, size: 2 },
      { day: 1, from: '"Eve" <eve@example.org>', subject: 'alpha', mailer: 'm5', internal: 4, size: 3 },
      { day: 5, from: '"Alice" <alice@example.org>', subject: 'echo', mailer: 'm1', internal: 3, size: 1 },
      { day: 2, from: '"Dave" <dave@example.org>', subject: 'bravo', mailer: 'm4', internal: 2, size: 5 },
      { day: 4, from: '"Bob" <bob@example.org>', subject: 'charlie', mailer: 'm3', internal: 1, size: 4 },
    ];
    await deliverRaw(
      server,
      u.address,
      'INBOX',
      spec.map((s) => ({
        raw: rfc822(
          [
            ['From', s.from],
            ['Subject', s.subject],
            ['Date', `Wed, 0${s.day} Jan 2020 12:00:00 +0000`],
            ['X-Mailer', s.mailer],
          ],
          'x'.repeat(200 * s.size) + '\n',
        ),
        internalDate: Date.UTC(2021, 0, s.internal),
      })),
    );
    await open(u.client, 'S', 'INBOX', ['UID', 'Subject'], 'sortField="UID"');
    const expected: Record<string, number[]> = {
      Date: [2, 4, 1, 5, 3],
      From: [3, 5, 1, 4, 2],
      Subject: [2, 4, 5, 1, 3],
      SIZE: [3, 1, 2, 5, 4],
      UID: [1, 2, 3, 4, 5],
      INTERNALDATE: [5, 4, 3, 2, 1],
      'X-Mailer': [3, 1, 5, 4, 2],
    };
    for (const [field, order] of Object.entries(expected)) {
      for (const desc of [false, true]) {
        const reply = await ok(u.client, `<folderReopen folder="S" sortField="${field}"${desc ? ' sortOrder="desc"' : ''}/>`);
        assert.equal(reply.messages[0]?.attrs.mode, 'init', 'folderReopen answers mode="init"');
        assert.equal(reply.messages[0]!.attrs.messages, '5');
        assert.deepEqual(await viewUids(u.client, 'S'), desc ? [...order].reverse() : order, `${field} ${desc ? 'desc' : 'asc'}`);
      }
    }
    // Opening with the sort attributes directly gives the same order.
    await open(u.client, 'S2', 'INBOX', ['UID'], 'sortField="Subject" sortOrder="desc"');
    assert.deepEqual(await viewUids(u.client, 'S2'), [3, 1, 5, 4, 2]);
  });

  test('filters: FLAGS (negative names, several, keywords), a header field, the body, any field', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: textMail('Invoice 42', { body: 'please pay now' }), flags: 'Seen' },
      { raw: textMail('Lunch', { body: 'the needle is in this body' }), flags: 'Flagged' },
      { raw: textMail('Report', { body: 'nothing here', extra: [['X-Mailer', 'needle-mailer']] }), flags: '$Work' },
      { raw: textMail('Old invoice copy', { body: 'archived' }), flags: 'Seen,Flagged,$Work' },
      { raw: textMail('Misc', { body: 'misc' }), flags: 'Media' },
    ]);
    const cases: [string, number[], number][] = [
      ['filterField="FLAGS" filter="Unseen"', [2, 3, 5], 3],
      ['filterField="FLAGS" filter="Seen"', [1, 4], 0],
      ['filterField="FLAGS" filter="Flagged,Unseen"', [2], 1],
      ['filterField="FLAGS" filter="Seen,Flagged"', [4], 0],
      ['filterField="FLAGS" filter="$Work"', [3, 4], 1],
      ['filterField="FLAGS" filter="Unflagged,Unseen"', [3, 5], 2],
      ['filterField="FLAGS" filter="Media,Unseen"', [5], 1],
      ['filterField="Subject" filter="nvoice"', [1, 4], 0],
      ['filterField="body" filter="needle"', [2], 1],
      ['filter="needle"', [2, 3], 2],
      ['filterField="X-Mailer" filter="needle"', [3], 1],
    ];
    let n = 0;
    for (const [attrs, uids, unseen] of cases) {
      const folder = `f${++n}`;
      const init = await open(u.client, folder, 'INBOX', ['UID'], `sortField="UID" ${attrs}`);
      assert.equal(init.attrs.messages, String(uids.length), attrs);
      assert.equal(init.attrs.unseen, String(unseen), attrs);
      assert.deepEqual(await viewUids(u.client, folder), uids, attrs);
      await ok(u.client, `<folderClose folder="${folder}"/>`);
    }
  });

  test('a FLAGS-filtered view follows flag changes at folderSync', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('a'), textMail('b'), { raw: textMail('c'), flags: 'Seen' }]);
    await open(u.client, 'U', 'INBOX', ['UID', 'FLAGS'], 'sortField="UID" filterField="FLAGS" filter="Unseen"');
    const model = await FolderModel.load(u.client, 'U');
    assert.deepEqual(model.uids(), [1, 2]);
    await ok(u.client, '<folderOpen folder="ALL" mailbox="INBOX" sortField="UID"><field>UID</field></folderOpen>');
    await ok(u.client, '<messageMark folder="ALL" flags="Seen"><UID>1</UID></messageMark>');
    await ok(u.client, '<messageMark folder="ALL" flags="Unseen"><UID>3</UID></messageMark>');
    await awaitNotifies(u.client, 'U');
    await model.syncAndCheck(u.client);
    assert.deepEqual(model.uids(), [2, 3]);
  });

  test('hideDeleted: on by default unless DeleteMode is Mark; explicit yes/no; hidden messages come back only on reopen', async () => {
    const trashUser = await newUser();
    const markUser = await newUser({ prefs: { DeleteMode: 'Mark' } });
    for (const u of [trashUser, markUser]) {
      await deliverRaw(server, u.address, 'INBOX', [textMail('a'), { raw: textMail('b'), flags: 'Deleted' }, textMail('c')]);
    }
    assert.equal((await open(trashUser.client, 'd', 'INBOX', ['UID'])).attrs.messages, '2');
    assert.equal((await open(trashUser.client, 'no', 'INBOX', ['UID'], 'hideDeleted="no"')).attrs.messages, '3');
    assert.equal((await open(markUser.client, 'd', 'INBOX', ['UID'])).attrs.messages, '3');
    assert.equal((await open(markUser.client, 'yes', 'INBOX', ['UID'], 'hideDeleted="yes"')).attrs.messages, '2');
    assert.deepEqual(await viewUids(markUser.client, 'yes'), [1, 3]);

    // Marking Deleted removes the message from a hide-deleted view at the next sync...
    const client = trashUser.client;
    await open(client, 'h', 'INBOX', ['UID', 'FLAGS'], 'sortField="UID"');
    const model = await FolderModel.load(client, 'h');
    assert.deepEqual(model.uids(), [1, 3]);
    await ok(client, '<messageMark folder="h" flags="Deleted"><UID>1</UID></messageMark>');
    await awaitNotifies(client, 'h');
    const removal = await model.syncAndCheck(client);
    assert.deepEqual(removal.map((r) => [r.attrs.mode, r.attrs.UID]), [['removed', '1']]);
    // ...and removing the flag does not bring it back...
    await ok(client, '<messageMark folder="no" flags="Undeleted"><UID>1</UID><UID>2</UID></messageMark>');
    await awaitNotifies(client, 'h');
    await model.syncAndCheck(client);
    assert.deepEqual(model.uids(), [3]);
    // ...until the folder is re-opened.
    const reopened = await ok(client, '<folderReopen folder="h"/>');
    assert.equal(reopened.messages[0]!.attrs.messages, '3');
    assert.deepEqual(await viewUids(client, 'h'), [1, 2, 3]);
  });

  test('UIDValidity and UIDMin: only newer messages when the UIDValidity matches', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('1'), textMail('2'), textMail('3'), textMail('4')]);
    const validity = (await list(u.client)).get('INBOX')!.UIDVALIDITY!;
    const init = await open(u.client, 'new', 'INBOX', ['UID'], `sortField="UID" UIDValidity="${validity}" UIDMin="3"`);
    assert.equal(init.attrs.messages, '2');
    assert.deepEqual(await viewUids(u.client, 'new'), [3, 4]);
    const stale = await open(u.client, 'stale', 'INBOX', ['UID'], `sortField="UID" UIDValidity="${Number(validity) + 1}" UIDMin="3"`);
    assert.equal(stale.attrs.messages, '4', 'another UIDValidity: every message');
    // New messages above UIDMin arrive at folderSync.
    const model = await FolderModel.load(u.client, 'new');
    await deliverRaw(server, u.address, 'INBOX', [textMail('5')]);
    await awaitNotifies(u.client, 'new');
    await model.syncAndCheck(u.client);
    assert.deepEqual(model.uids(), [3, 4, 5]);
  });

  test('folderBrowse: index ranges (till clamped), single indexes, UID elements, UID ranges, lowercase uid', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [1, 2, 3, 4, 5].map((i) => textMail(`m${i}`)));
    await open(u.client, 'B', 'INBOX', ['Subject'], 'sortField="UID" sortOrder="desc"');
    const pairs = (reports: XmlElement[]): string[] => reports.map((r) => `${r.attrs.index}:${r.attrs.UID}:${r.element('Subject')?.text()}`);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<index from="1" till="2"/>')), ['1:4:m4', '2:3:m3']);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<index from="3" till="100"/>')), ['3:2:m2', '4:1:m1']);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<index from="7" till="9"/>')), []);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<index>4</index><index>0</index>')), ['4:1:m1', '0:5:m5']);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<index>5</index>')), []);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<UID>3</UID>')), ['2:3:m3']);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<UID from="2" till="4"/>')).sort(), ['1:4:m4', '2:3:m3', '3:2:m2']);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<uid>5</uid><UID>1</UID>')).sort(), ['0:5:m5', '4:1:m1']);
    assert.deepEqual(pairs(await browse(u.client, 'B', '<UID>99</UID>')), []);
    for (const r of await browse(u.client, 'B', '<index from="0" till="4"/>')) {
      assert.equal(r.attrs.folder, 'B');
      assert.equal(r.attrs.mode, undefined);
      assert.deepEqual(r.elements().map((e) => e.name), ['Subject']);
    }
    await fails(u.client, '<folderBrowse folder="B"><UID>1</UID><index>0</index></folderBrowse>');
    await fails(u.client, '<folderBrowse folder="B"><index>x</index></folderBrowse>');
  });

  test('folderReopen: new sort and filter answer mode="init"; new fields replace the old, none keep them', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: textMail('b'), flags: 'Seen' },
      textMail('c'),
      textMail('a'),
    ]);
    await open(u.client, 'R', 'INBOX', ['Subject'], 'sortField="UID"');
    assert.deepEqual((await browseAll(u.client, 'R')).map((r) => r.fields), ['<Subject>b</Subject>', '<Subject>c</Subject>', '<Subject>a</Subject>']);
    let reply = await ok(u.client, '<folderReopen folder="R" sortField="Subject"/>');
    assert.deepEqual(reply.messages.map((m) => [m.name, m.attrs.mode, m.attrs.folder, m.attrs.messages, m.attrs.unseen]), [['folderReport', 'init', 'R', '3', '2']]);
    assert.deepEqual((await browseAll(u.client, 'R')).map((r) => r.fields), ['<Subject>a</Subject>', '<Subject>b</Subject>', '<Subject>c</Subject>']);
    reply = await ok(u.client, '<folderReopen folder="R" sortField="Subject" filterField="FLAGS" filter="Unseen"><field>UID</field><field>From</field></folderReopen>');
    assert.equal(reply.messages[0]!.attrs.messages, '2');
    assert.deepEqual((await browseAll(u.client, 'R')).map((r) => r.fields), ['<UID>3</UID><From>Sender</From>', '<UID>2</UID><From>Sender</From>']);
    await ok(u.client, '<folderReopen folder="R" sortField="UID" sortOrder="desc"/>');
    assert.deepEqual((await browseAll(u.client, 'R')).map((r) => r.fields), ['<UID>3</UID><From>Sender</From>', '<UID>2</UID><From>Sender</From>', '<UID>1</UID><From>Sender</From>']);
    await ok(u.client, '<closeMailbox folder="R"/>');
    await fails(u.client, '<folderReopen folder="R"/>', 'folder has not been opened');
  });
});

// =======================================================================================
// 3. folderSync: notify once, then removed/added/updated reports the client model follows

describe('folderSync', () => {
  test('several changes give exactly one notify until the client syncs; then the next change notifies again', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('a'), textMail('b')]);
    const other = await u.another();
    await open(u.client, 'INBOX-MM-1', 'INBOX', ['UID', 'FLAGS', 'Subject'], 'sortField="UID"');
    await open(other, 'mine', 'INBOX', ['UID'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'INBOX-MM-1');

    await ok(other, appendXml('folder="mine"', 'c'));
    await ok(other, appendXml('folder="mine"', 'd'));
    await ok(other, '<messageMark folder="mine" flags="Seen"><UID>1</UID></messageMark>');
    await deliverRaw(server, u.address, 'INBOX', [textMail('e')]);
    assert.equal(await awaitNotifies(u.client, 'INBOX-MM-1', 150), 1, 'one notify for four changes');
    const notify = u.client.received.find((m) => m.name === 'folderReport' && m.attrs.mode === 'notify' && m.attrs.folder === 'INBOX-MM-1')!;
    assert.equal(notify.toString(), '<folderReport folder="INBOX-MM-1" mode="notify"/>');
    await ok(other, '<messageMark folder="mine" flags="Flagged"><UID>2</UID></messageMark>');
    await sleep(100);
    assert.equal(takeNotifies(u.client, 'INBOX-MM-1'), 0, 'no second notify before the sync');

    // The server-side view did not change: index-based sets still mean what they meant.
    assert.equal((await browse(u.client, 'INBOX-MM-1', '<index from="0" till="10"/>')).length, 2);
    const reports = await model.syncAndCheck(u.client);
    assert.deepEqual(reports.map((r) => r.attrs.mode).sort(), ['added', 'added', 'added', 'updated', 'updated']);
    assert.deepEqual(model.uids(), [1, 2, 3, 4, 5]);

    await ok(other, '<messageMark folder="mine" flags="Seen"><UID>3</UID></messageMark>');
    assert.equal(await awaitNotifies(u.client, 'INBOX-MM-1'), 1, 'after the sync, the next change notifies');
    await model.syncAndCheck(u.client);
    // A change by the session itself notifies it too.
    await ok(u.client, '<messageMark folder="INBOX-MM-1" flags="Seen"><UID>4</UID></messageMark>');
    assert.equal(await awaitNotifies(u.client, 'INBOX-MM-1'), 1);
    await model.syncAndCheck(u.client);
    // Nothing pending: an empty sync.
    assert.deepEqual(await folderSync(u.client, 'INBOX-MM-1'), []);
  });

  test('removed: each index is counted after the previous removals; messages and unseen follow', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', Array.from({ length: 10 }, (_, i) => ({ raw: textMail(`m${i + 1}`), flags: i % 3 === 0 ? 'Seen' : '' })));
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'F');
    await open(u.client, 'G', 'INBOX', ['UID']);
    // Positions 2, 5, 6 and 9 (UIDs 3, 6, 7, 10).
    await ok(u.client, '<messageRemove folder="G" mode="Immediately"><UID>3</UID><UID>6</UID><UID>7</UID><UID>10</UID></messageRemove>');
    await awaitNotifies(u.client, 'F');
    const reports = await model.syncAndCheck(u.client);
    assert.equal(reports.length, 4);
    assert.deepEqual(reports.map((r) => r.attrs.mode), ['removed', 'removed', 'removed', 'removed']);
    assert.deepEqual(reports.map((r) => r.attrs.UID).sort(), ['10', '3', '6', '7']);
    assert.deepEqual(reports.map((r) => r.attrs.messages), ['9', '8', '7', '6']);
    assert.deepEqual(model.uids(), [1, 2, 4, 5, 8, 9]);
    // In view order the indexes are 2, 4, 4, 6 (each after the removals before it).
    assert.deepEqual(
      reports.map((r) => [r.attrs.UID, r.attrs.index]),
      [['3', '2'], ['6', '4'], ['7', '4'], ['10', '6']],
    );
    // UID 10 was Seen (i = 9): unseen goes 7 -> 6 -> 5 -> 4 (UIDs 3, 6, 7 unseen).
    assert.equal(reports.at(-1)!.attrs.unseen, '4');
  });

  test('added: ascending final positions, messages counted after each insertion', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', ['b', 'd', 'f'].map((s) => textMail(s)));
    await open(u.client, 'F', 'INBOX', ['Subject', 'FLAGS'], 'sortField="Subject"');
    const model = await FolderModel.load(u.client, 'F');
    await deliverRaw(server, u.address, 'INBOX', ['g', 'c', 'a', 'e'].map((s) => textMail(s)));
    await awaitNotifies(u.client, 'F');
    const reports = await model.syncAndCheck(u.client);
    assert.deepEqual(
      reports.map((r) => [r.attrs.mode, r.attrs.index, r.attrs.messages, r.element('Subject')?.text()]),
      [
        ['added', '0', '4', 'a'],
        ['added', '2', '5', 'c'],
        ['added', '4', '6', 'e'],
        ['added', '6', '7', 'g'],
      ],
    );
    assert.deepEqual(reports.map((r) => r.attrs.unseen), ['4', '5', '6', '7']);
  });

  test('updated: flag changes at their positions with the unseen count', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', ['a', 'b', 'c', 'd'].map((s) => textMail(s)));
    await open(u.client, 'F', 'INBOX', ['Subject', 'FLAGS'], 'sortField="Subject" sortOrder="desc"');
    const model = await FolderModel.load(u.client, 'F');
    await open(u.client, 'G', 'INBOX', ['UID']);
    await ok(u.client, '<messageMark folder="G" flags="Seen"><UID>1</UID><UID>3</UID></messageMark>');
    await ok(u.client, '<messageMark folder="G" flags="Flagged"><UID>3</UID></messageMark>');
    await awaitNotifies(u.client, 'F');
    const reports = await model.syncAndCheck(u.client);
    assert.deepEqual(
      reports.map((r) => [r.attrs.mode, r.attrs.index, r.attrs.UID, flagSet(r.element('FLAGS')?.text()).join(), r.attrs.unseen]),
      [
        ['updated', '1', '3', 'Flagged,Seen', '3'],
        ['updated', '3', '1', 'Seen', '2'],
      ],
    );
    for (const r of reports) assert.equal(r.attrs.messages, undefined, 'updated reports carry no messages count');
  });

  test('the spec example 3 shape: messageMark Deleted -> updated; folderExpunge -> removed; closeMailbox', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: textMail('one'), flags: 'Seen' },
      textMail('two'),
      { raw: textMail('three'), flags: 'Seen,Flagged' },
      textMail('four'),
    ]);
    const init = await open(u.client, 'INBOX', 'INBOX', ['FLAGS', 'From', 'Subject'], 'sortField="INTERNALDATE" sortOrder="asc" hideDeleted="no"');
    assert.equal(init.attrs.unseen, '2');
    const model = await FolderModel.load(u.client, 'INBOX');

    const start = u.client.received.length;
    const mark = await u.client.request('<messageMark id="A020" folder="INBOX" flags="Deleted"><UID>3</UID><UID>1</UID><UID>2</UID></messageMark>');
    assert.equal(mark.response.toString(), '<response id="A020"/>');
    await awaitNotifies(u.client, 'INBOX', 0);
    const names = u.client.received.slice(start).map((m) => `${m.name}:${m.attrs.mode ?? ''}${m.attrs.id ?? ''}`);
    assert.deepEqual(names.filter((n) => n.startsWith('folderReport')), ['folderReport:notify']);

    const updated = await model.syncAndCheck(u.client);
    assert.deepEqual(
      updated.map((r) => [r.attrs.mode, r.attrs.index, r.attrs.UID, r.attrs.unseen, r.attrs.messages]),
      [
        ['updated', '0', '1', '2', undefined],
        ['updated', '1', '2', '2', undefined],
        ['updated', '2', '3', '2', undefined],
      ],
    );
    for (const r of updated) {
      assert.ok(flagSet(r.element('FLAGS')!.text()).includes('Deleted'));
      assert.deepEqual(r.elements().map((e) => e.name), ['FLAGS', 'From', 'Subject']);
      assert.equal(r.element('From')!.text(), 'Sender');
    }

    const expunge = await u.client.request('<folderExpunge id="A022" folder="INBOX"/>');
    assert.equal(expunge.response.toString(), '<response id="A022"/>');
    assert.equal(await awaitNotifies(u.client, 'INBOX', 20), 1);
    const removed = await model.syncAndCheck(u.client);
    assert.deepEqual(
      removed.map((r) => [r.attrs.mode, r.attrs.index, r.attrs.UID, r.attrs.messages, r.attrs.unseen]),
      [
        ['removed', '0', '1', '3', '2'],
        ['removed', '0', '2', '2', '1'],
        ['removed', '0', '3', '1', '1'],
      ],
    );
    assert.deepEqual(model.uids(), [4]);
    const close = await u.client.request('<closeMailbox id="A024" folder="INBOX"/>');
    assert.equal(close.response.toString(), '<response id="A024"/>');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [4]);
  });

  test('a removed message still in the unsynced view shows empty fields (and its flags)', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('keep'), { raw: textMail('gone'), flags: 'Seen,Media' }]);
    await open(u.client, 'F', 'INBOX', ['FLAGS', 'From', 'Subject'], 'sortField="UID"');
    const other = await u.another();
    await open(other, 'G', 'INBOX', ['UID']);
    await ok(other, '<messageRemove folder="G" mode="Immediately"><UID>2</UID></messageRemove>');
    await awaitNotifies(u.client, 'F');
    const rows = await browse(u.client, 'F', '<index from="0" till="3"/>');
    assert.equal(rows.length, 2, 'the view is unchanged until folderSync');
    assert.equal(rows[1]!.attrs.UID, '2');
    assert.equal(rows[1]!.element('From')!.text(), '');
    assert.equal(rows[1]!.element('Subject')!.text(), '');
    assert.deepEqual(flagSet(rows[1]!.element('FLAGS')!.text()), ['Media', 'Seen']);
  });

  test('folderSync limit: part of the reports, the rest at the next sync, no notify in between', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('a')]);
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS', 'Subject'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'F');
    await deliverRaw(server, u.address, 'INBOX', ['b', 'c', 'd', 'e', 'f'].map((s) => textMail(s)));
    await awaitNotifies(u.client, 'F');

    const first = await model.syncAndCheck(u.client, 2);
    assert.equal(first.length, 2);
    await deliverRaw(server, u.address, 'INBOX', [textMail('g')]);
    await sleep(150);
    assert.equal(takeNotifies(u.client, 'F'), 0, 'no notify while a limited sync is unfinished');
    const second = await model.syncAndCheck(u.client, 2);
    assert.equal(second.length, 2);
    await sleep(50);
    assert.equal(takeNotifies(u.client, 'F'), 0);
    const rest = await model.syncAndCheck(u.client);
    assert.ok(rest.length >= 2, 'the rest, with the change made in between');
    assert.deepEqual(model.uids(), [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(model.counts.added, 6);
    // Synced in full: notifies resume.
    await deliverRaw(server, u.address, 'INBOX', [textMail('h')]);
    assert.equal(await awaitNotifies(u.client, 'F'), 1);
    await model.syncAndCheck(u.client);
    assert.equal(model.rows.length, 8);
  });

  test('changes that cancel out between two syncs are not reported; a changed then removed message is only removed', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', ['a', 'b', 'c'].map((s) => textMail(s)));
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'F');
    const other = await u.another();
    await open(other, 'G', 'INBOX', ['UID']);
    await ok(other, appendXml('folder="G"', 'short-lived', 'report="uid"'));
    await ok(other, '<messageMark folder="G" flags="Flagged"><UID>2</UID></messageMark>');
    await ok(other, '<messageRemove folder="G" mode="Immediately"><UID>4</UID><UID>2</UID></messageRemove>');
    await awaitNotifies(u.client, 'F');
    const reports = await model.syncAndCheck(u.client);
    assert.deepEqual(reports.map((r) => [r.attrs.mode, r.attrs.UID]), [['removed', '2']]);
    assert.deepEqual(model.uids(), [1, 3]);
  });

  test('a content-filtered view decides for new messages at folderSync', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('one', { body: 'the needle' }), textMail('two', { body: 'hay' })]);
    await open(u.client, 'B', 'INBOX', ['UID', 'Subject'], 'sortField="UID" filterField="body" filter="needle"');
    await open(u.client, 'S', 'INBOX', ['UID', 'Subject'], 'sortField="UID" filterField="Subject" filter="hre"');
    const body = await FolderModel.load(u.client, 'B');
    const subject = await FolderModel.load(u.client, 'S');
    assert.deepEqual([body.uids(), subject.uids()], [[1], []]);
    await deliverRaw(server, u.address, 'INBOX', [textMail('three', { body: 'hay' }), textMail('four', { body: 'a needle again' })]);
    await awaitNotifies(u.client, 'B');
    await body.syncAndCheck(u.client);
    await subject.syncAndCheck(u.client);
    assert.deepEqual([body.uids(), subject.uids()], [[1, 4], [3]]);
  });

  test('a folder keeps following its mailbox when another session renames the mailbox', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Work"/>');
    await deliverRaw(server, u.address, 'Work', [textMail('w1')]);
    await open(u.client, 'W', 'Work', ['UID', 'Subject'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'W');
    const other = await u.another();
    await ok(other, '<mailboxRename mailbox="Work" newName="Job"/>');
    await ok(other, appendXml('targetMailbox="Job"', 'after rename'));
    assert.equal(await awaitNotifies(u.client, 'W', 20, 1000), 1, 'the folder is told about the new message');
    await model.syncAndCheck(u.client);
    assert.deepEqual(model.uids(), [1, 2]);
  });

  test('a folder sorted by FLAGS moves messages whose flags change', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', ['a', 'b', 'c', 'd'].map((s) => textMail(s)));
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS'], 'sortField="FLAGS"');
    const model = await FolderModel.load(u.client, 'F', { ordered: false });
    await open(u.client, 'G', 'INBOX', ['UID']);
    await ok(u.client, '<messageMark folder="G" flags="Flagged"><UID>1</UID></messageMark>');
    await ok(u.client, '<messageMark folder="G" flags="Seen"><UID>2</UID></messageMark>');
    await awaitNotifies(u.client, 'F');
    await model.syncAndCheck(u.client);
    assert.deepEqual(new Set(model.uids()), new Set([1, 2, 3, 4]));
  });

  test('a session that opens the mailbox does not silently change what another synced view shows', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('first')]);
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'F');
    await deliverRaw(server, u.address, 'INBOX', [{ raw: textMail('new'), flags: 'Recent' }]);
    await awaitNotifies(u.client, 'F');
    await model.syncAndCheck(u.client);
    // Another session opens the mailbox (taking the Recent flags over).
    const other = await u.another();
    await open(other, 'G', 'INBOX', ['UID', 'FLAGS']);
    await sleep(100);
    // Either the first view still shows what it was told, or it is told about the change.
    if (takeNotifies(u.client, 'F') > 0) await model.syncAndCheck(u.client);
    assert.deepEqual(await browseAll(u.client, 'F'), model.rows);
  });

  test('two sessions on one mailbox: ~200 random appends, flag changes and expunges keep every view equal to its model', async () => {
    const u = await newUser();
    const a = u.client;
    const b = await u.another();
    await deliverRaw(server, u.address, 'INBOX', Array.from({ length: 12 }, (_, i) => textMail(`seed ${String(i).padStart(2, '0')}`)));
    const fields = ['UID', 'FLAGS', 'Subject'];
    await open(a, 'F1', 'INBOX', fields, 'sortField="Subject" hideDeleted="no"');
    await open(b, 'F2', 'INBOX', fields, 'sortField="INTERNALDATE" sortOrder="desc" hideDeleted="no"');
    await open(b, 'F3', 'INBOX', fields, 'sortField="UID" hideDeleted="yes"');
    await open(a, 'F4', 'INBOX', fields, 'sortField="UID" filterField="FLAGS" filter="Unseen"');
    const views: { client: XimssClient; model: FolderModel }[] = [
      { client: a, model: await FolderModel.load(a, 'F1') },
      { client: b, model: await FolderModel.load(b, 'F2') },
      { client: b, model: await FolderModel.load(b, 'F3') },
      { client: a, model: await FolderModel.load(a, 'F4') },
    ];
    const random = seededRandom(20240611);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const FLAG_CHANGES = ['Seen', 'Unseen', 'Flagged', 'Unflagged', 'Deleted', 'Undeleted', '$Label1', 'Seen,Flagged'];
    let operations = 0;
    let appended = 0;
    for (let round = 0; round < 40; round++) {
      const requests: Promise<Reply>[] = [];
      for (let i = 0; i < 5; i++) {
        const [client, folder] = random() < 0.5 ? [a, 'F1'] : [b, 'F2'];
        const known = await storedUids(server, u.address, 'INBOX');
        const roll = random();
        let xml: string;
        if (roll < 0.35 || known.length < 4) {
          xml = appendXml(`folder="${folder}"`, `r${round} ${pick(['alpha', 'bravo', 'charlie', 'delta', 'echo'])} ${appended++}`, random() < 0.3 ? 'flags="Seen"' : '');
        } else if (roll < 0.8) {
          const uids = Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(known));
          const negate = random() < 0.15 ? ' mode="delete"' : '';
          xml = `<messageMark folder="${folder}" flags="${pick(FLAG_CHANGES)}"${negate}>${uids.map((x) => `<UID>${x}</UID>`).join('')}</messageMark>`;
        } else if (roll < 0.9) {
          xml = `<folderExpunge folder="${folder}"/>`;
        } else {
          xml = `<messageRemove folder="${folder}" mode="Immediately"><UID>${pick(known)}</UID></messageRemove>`;
        }
        // Both sessions' requests run concurrently.
        requests.push(client.request(xml));
        operations++;
      }
      for (const reply of await Promise.all(requests)) expectOk(reply, `round ${round}`);
      await sleep(5);
      for (const view of views) {
        // Notifies written before the sync's response (on this connection) belong to this round.
        const before = takeNotifies(view.client, view.model.folder);
        await view.model.syncAndCheck(view.client);
        const notifies = before + takeNotifies(view.client, view.model.folder);
        assert.ok(notifies <= 1, `at most one notify per folder between syncs (round ${round}): ${notifies}`);
      }
      // The two full views agree with each other and with the store.
      const stored = await storedUids(server, u.address, 'INBOX');
      const f1 = views[0]!.model;
      const f2 = views[1]!.model;
      assert.deepEqual([...f1.uids()].sort((x, y) => x - y), stored, `F1 holds the mailbox (round ${round})`);
      assert.deepEqual([...f2.uids()].sort((x, y) => x - y), stored, `F2 holds the mailbox (round ${round})`);
      const flagsBy = (m: FolderModel): Map<number, string> =>
        new Map(m.rows.map((r) => [r.uid, flagSet(r.flags).filter((f) => f !== 'Recent').join()]));
      assert.deepEqual(flagsBy(f1), flagsBy(f2), `F1 and F2 agree on flags (round ${round})`);
      for (const row of views[2]!.model.rows) assert.ok(!flagSet(row.flags).includes('Deleted'), 'F3 hides Deleted messages');
      for (const row of views[3]!.model.rows) assert.ok(!flagSet(row.flags).includes('Seen'), 'F4 shows only unseen');
    }
    assert.equal(operations, 200);
    const totals = views.map((v) => v.model.counts);
    assert.ok(totals[0]!.added > 20 && totals[0]!.removed > 5 && totals[0]!.updated > 20, JSON.stringify(totals));
  });
});

// =======================================================================================
// 4. Messages

/** The header block of a stored message, unfolded, as "Name: value" lines. */
function headerLines(raw: Buffer): string[] {
  const text = raw.toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  return text
    .slice(0, end < 0 ? text.length : end)
    .replace(/\r\n[ \t]+/g, ' ')
    .split('\r\n');
}

/** The body of a stored message (after the first empty line). */
function bodyOf(raw: Buffer): string {
  const text = raw.toString('utf8');
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

/** The MIME element with this partID in a folderRead EMail (depth first). */
function findMime(root: XmlElement, partID: string): XmlElement | undefined {
  for (const child of root.elements()) {
    if (child.name === 'MIME' && child.attrs.partID === partID) return child;
    const inner = findMime(child, partID);
    if (inner) return inner;
  }
  return undefined;
}

async function readMessage(client: XimssClient, folder: string, uid: number, attrs = ''): Promise<XmlElement> {
  const reply = await ok(client, `<folderRead folder="${folder}" UID="${uid}" ${attrs}/>`);
  assert.equal(reply.messages.length, 1);
  const message = reply.messages[0]!;
  assert.equal(message.name, 'folderMessage');
  assert.equal(message.attrs.folder, folder);
  assert.equal(message.attrs.UID, String(uid));
  return message;
}

const MIXED = `From: "Mr. Sender." <user1@example.com>
To: user2@example.com (My Friend),
 =?iso-8859-1?Q?=4Eot=20A=20Friend?= <user3@example.com>
Cc: OWNER
Date: Mon, 10 Apr 2006 13:15:48 -0700
Subject: It's 1:15PM now, the meeting has started!
Message-ID: <m1@example.com>
X-Mailer: Mixer 2
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"
Content-Description: Test Message

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset="iso-8859-1";
 format=flowed; paramX="valueX"
Content-Transfer-Encoding: quoted-printable

=46rom where I stay, I can see & hear a lot! Caf=E9

--alt
Content-Type: text/html; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

<html><body bgcolor=3D"yellow">
<I>From where I stay</I>, I can see &amp; hear a lot!
</body></html>
--alt--

--outer
Content-Type: application/pdf; name="doc.pdf"
Content-Disposition: attachment; filename="doc.pdf"
X-Part-Note: not a content field
Content-Transfer-Encoding: base64

JVBERi0xLjIK

--outer
Content-Type: message/rfc822

From: inner@example.com
Subject: Inner message
Content-Type: text/plain

Inner body

--outer--
`;

function mixedMessage(owner: string): Buffer {
  return Buffer.from(MIXED.replace('OWNER', owner).replace(/\n/g, '\r\n'));
}

const REPORT = `Subject: Delivery report: TEST - disposition and delivery
From: <MAILER-DAEMON@remote.example.com>
To: <sender@local.example.com>
Date: Wed, 02 May 2007 00:33:13 -0700
Message-ID: <receipt-39457791@remote.example.com>
X-MAPI-Message-Class: REPORT.IPM.Note.DR
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="_===39457791====remote.example.com===_"


--_===39457791====remote.example.com===_
Content-Type: text/plain; charset="utf-8"

Message delivered to '<recepient@remote.example.com>'
LOCAL module(account recepient) reports:
 Delivered to the user mailbox


--_===39457791====remote.example.com===_
Content-Type: message/delivery-status

Reporting-MTA: dns; remote.example.com

Original-Recipient: rfc822;<recepient@remote.example.com>
Final-Recipient: LOCAL;<recepient>
Action: delivered
Status: 2.0.0

--_===39457791====remote.example.com===_
Content-Type: text/rfc822-headers

From: "Sender Name" <sender@local.example.com>
Subject: TEST - disposition and delivery
To: recepient@remote.example.com
X-Mailer: CommuniGate Pro WebUser v5.1.9
Date: Wed, 02 May 2007 00:35:51 -0700
Message-ID: <web-3990004@local.example.com>
MIME-Version: 1.0
Disposition-Notification-To: <sender@local.example.com>
Content-Type: text/plain;charset="utf-8";format="flowed"
Content-Transfer-Encoding: 8bit

--_===39457791====remote.example.com===_--
`;

describe('messages', () => {
  test('messageAppend: the plain text example is stored as the spec shows it; flags honoured', async () => {
    const u = await newUser();
    const reply = await u.client.request(`<messageAppend id="A001" targetMailbox="Sent" flags="Seen,Answered" mailboxClass="" >
    <EMail>
      <From realName="Sender Name">fromName@domain</From><Subject>I'll be there!</Subject>
      <To realName="Recipient Name">toName@domain</To><X-Mailer>SuperClient v7.77</X-Mailer>
      <Date localTime="20060621T215124" timeShift="-25200">20070830T045124Z</Date>
      <Message-ID>web-40721383@domain.dom</Message-ID>
      <MIME type="text" subtype="plain">Dear Susan,&#x0A;&#x0A;I will come to your place tomorrow, thank you for the invitation!&#x0A;Mary.&#x0A;</MIME>
    </EMail>
  </messageAppend>`);
    assert.deepEqual(reply.messages, []);
    assert.equal(reply.response.toString(), '<response id="A001"/>');
    const raw = (await storedRaw(server, u.address, 'Sent', 1))!;
    const lines = headerLines(raw);
    for (const line of [
      'From: "Sender Name" <fromName@domain>',
      "Subject: I'll be there!",
      'To: "Recipient Name" <toName@domain>',
      'X-Mailer: SuperClient v7.77',
      'Date: Wed, 21 Jun 2006 21:51:24 -0700',
      'Message-ID: <web-40721383@domain.dom>',
    ]) {
      assert.ok(lines.includes(line), `stored header has ${line}: ${lines.join(' | ')}`);
    }
    assert.ok(lines.some((l) => /^Content-Type: text\/plain; charset="?utf-8"?$/i.test(l)), lines.join(' | '));
    assert.equal(bodyOf(raw), 'Dear Susan,\r\n\r\nI will come to your place tomorrow, thank you for the invitation!\r\nMary.\r\n');
    await open(u.client, 'Sent', 'Sent', ['FLAGS', 'From', 'Subject']);
    const [row] = await browse(u.client, 'Sent', '<index>0</index>');
    assert.deepEqual(flagSet(row!.element('FLAGS')!.text()).filter((f) => f !== 'Recent'), ['Answered', 'Seen']);
    assert.equal(row!.element('From')!.text(), 'Sender Name');
    assert.equal(row!.element('Subject')!.text(), "I'll be there!");
  });

  test('messageAppend: without mailboxClass a missing target is an error; with it the mailbox is created', async () => {
    const u = await newUser();
    await fails(u.client, appendXml('targetMailbox="Nowhere"', 'lost'));
    assert.ok(!(await list(u.client)).has('Nowhere'));
    await ok(u.client, appendXml('targetMailbox="Journal" mailboxClass="IPF.Journal"', 'kept'));
    const box = (await list(u.client)).get('Journal')!;
    assert.equal(box.CLASS, 'IPF.Journal');
    assert.equal(box.MESSAGES, '1');
    await fails(u.client, '<messageAppend targetMailbox="Journal"/>');
    await fails(u.client, '<messageAppend><EMail><Subject>x</Subject></EMail></messageAppend>');
  });

  test('messageAppend: flags, keywords and internalDate are honoured; report="uid" answers messageAdded', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Box"/>');
    await deliverRaw(server, u.address, 'Box', [textMail('existing')]);
    const reply = await ok(u.client, appendXml('targetMailbox="Box"', 'flagged', 'flags="Seen,Flagged,$Work" internalDate="20200101T101010Z" report="uid"'));
    assert.deepEqual(reply.messages.map((m) => m.toString()), [`<messageAdded id="${reply.response.attrs.id}" targetMailbox="Box" UID="2"/>`]);
    await open(u.client, 'B', 'Box', ['UID', 'FLAGS', 'INTERNALDATE'], 'sortField="UID"');
    const [row] = await browse(u.client, 'B', '<UID>2</UID>');
    assert.deepEqual(flagSet(row!.element('FLAGS')!.text()).filter((f) => f !== 'Recent'), ['$Work', 'Flagged', 'Seen']);
    assert.equal(row!.element('INTERNALDATE')!.text(), '20200101T101010Z');
    // Into an open folder, with report="uid": messageAdded names the folder; the folder is notified.
    const added = await ok(u.client, appendXml('folder="B"', 'into folder', 'report="uid"'));
    assert.equal(added.messages[0]!.toString(), `<messageAdded id="${added.response.attrs.id}" folder="B" UID="3"/>`);
    assert.equal(await awaitNotifies(u.client, 'B'), 1);
    // With both folder and targetMailbox, the folder is the target.
    const both = await ok(u.client, appendXml('folder="B" targetMailbox="Elsewhere"', 'folder wins', 'report="uid"'));
    assert.equal(both.messages[0]!.attrs.UID, '4');
    assert.ok(!(await list(u.client)).has('Elsewhere'));
    await fails(u.client, appendXml('targetMailbox="Box"', 'bad date', 'internalDate="yesterday-ish"'));
    await fails(u.client, appendXml('targetMailbox="Box"', 'bad flag', 'flags="Seen,(bad)"'));
    assert.deepEqual(await storedUids(server, u.address, 'Box'), [1, 2, 3, 4]);
  });

  test('messageAppend: multipart with uploaded files (PUT and POST fileData), replacesUID, report, then folderSync', async () => {
    const u = await newUser();
    const pdf = Buffer.from('%PDF-1.2 fake pdf body\n');
    await ok(u.client, '<mailboxCreate mailbox="Drafts"/>');
    await deliverRaw(server, u.address, 'Drafts', [{ raw: textMail('old draft'), flags: 'Draft,Seen' }]);
    await open(u.client, 'Drafts', 'Drafts', ['FLAGS', 'From', 'Subject'], 'sortField="UID"');
    const model = await FolderModel.load(u.client, 'Drafts');

    await putUpload(u, 'att01', GIF, 'image/gif', { 'Content-Disposition': 'attachment; filename="test.gif"' });
    await postUpload(server, u, 'att02', pdf, 'sample.pdf', 'application/octet-stream');
    const uploaded = (await ok(u.client, '<listUploaded/>')).messages;
    assert.deepEqual(
      uploaded.map((m) => [m.attrs.uploadID, m.attrs.size, m.attrs.type, m.attrs.subtype]).sort(),
      [
        ['att01', String(GIF.length), 'image', 'gif'],
        ['att02', String(pdf.length), 'application', 'octet-stream'],
      ],
    );
    assert.equal(uploaded.find((m) => m.attrs.uploadID === 'att02')!.attrs.fileName, 'sample.pdf');

    // Meanwhile another process adds a message to Drafts.
    await deliverRaw(server, u.address, 'Drafts', [{ raw: textMail('other', { from: '"Other Name" <other@example.org>' }), flags: 'Draft' }]);
    const reply = await ok(
      u.client,
      `<messageAppend folder="Drafts" flags="Draft,Seen" replacesUID="1" report="uid">
    <EMail>
      <From realName="Sender Name">fromName@domain</From><Subject>Text with attachments</Subject>
      <To realName="Recipient Name">toName@domain</To><X-Mailer>SuperClient v7.77</X-Mailer>
      <MIME type="multipart" subtype="mixed">
        <MIME type="multipart" subtype="alternative">
          <MIME type="text" subtype="plain">Dear Susan,&#x0A;Mary.&#x0A;</MIME>
          <MIME type="text" subtype="html">&lt;html&gt;&lt;body&gt;&lt;i&gt;Dear Susan,&lt;/i&gt;</MIME>
        </MIME>
        <MIME uploadID="att01" />
        <MIME uploadID="att02" type="application" subtype="pdf" />
      </MIME>
    </EMail>
  </messageAppend>`,
    );
    assert.deepEqual(reply.messages.map((m) => [m.name, m.attrs.folder, m.attrs.UID]), [['messageAdded', 'Drafts', '3']]);
    assert.equal(await awaitNotifies(u.client, 'Drafts'), 1);
    await ok(u.client, '<clearUploaded/>');
    assert.deepEqual((await ok(u.client, '<listUploaded/>')).messages, []);

    const reports = await model.syncAndCheck(u.client);
    assert.deepEqual(
      reports.map((r) => [r.attrs.mode, r.attrs.UID]),
      [
        ['removed', '1'],
        ['added', '2'],
        ['added', '3'],
      ],
    );
    const added = reports.find((r) => r.attrs.UID === '3')!;
    assert.equal(added.element('From')!.text(), 'Sender Name');
    assert.deepEqual(flagSet(added.element('FLAGS')!.text()), ['Draft', 'Recent', 'Seen']);

    const email = (await readMessage(u.client, 'Drafts', 3)).element('EMail')!;
    const top = email.element('MIME')!;
    assert.deepEqual([top.attrs.type, top.attrs.subtype], ['multipart', 'mixed']);
    const parts = top.elements('MIME').map((p) => [p.attrs.partID, p.attrs.type, p.attrs.subtype, p.attrs.disposition, p.attrs['Disposition-filename']]);
    assert.deepEqual(parts, [
      ['01', 'multipart', 'alternative', undefined, undefined],
      ['02', 'image', 'gif', 'attachment', 'test.gif'],
      ['03', 'application', 'pdf', 'attachment', 'sample.pdf'],
    ]);
    assert.equal(findMime(email, '01-01')!.text(), 'Dear Susan,\nMary.\n');
    assert.equal(findMime(email, '01-02')!.attrs.subtype, 'html');
    const raw = (await storedRaw(server, u.address, 'Drafts', 3))!.toString('latin1');
    assert.match(raw, /Content-Type: image\/gif; name="test\.gif"\r\nContent-Disposition: attachment; filename="test\.gif"\r\nContent-Transfer-Encoding: base64\r\n/);
    assert.match(raw, /Content-Type: application\/pdf; name="sample\.pdf"\r\nContent-Disposition: attachment; filename="sample\.pdf"/);
    const gif = await get(u.urlID, 'MIME/Drafts/3-02-B.gif');
    assert.equal(gif.status, 200);
    assert.deepEqual(Buffer.from(await gif.arrayBuffer()), GIF);
    assert.deepEqual(Buffer.from(await (await get(u.urlID, 'MIME/Drafts/3-03-B.pdf')).arrayBuffer()), pdf);
    // The uploaded files are gone: using one again is an error.
    await fails(u.client, '<messageAppend folder="Drafts"><EMail><MIME uploadID="att01"/></EMail></messageAppend>', /att01/);
  });

  test('messageAppend: disposition="none" makes no Content-Disposition and no name parameter', async () => {
    const u = await newUser();
    await postUpload(server, u, 'pic', GIF, 'logo.gif', 'image/gif');
    await ok(
      u.client,
      '<messageAppend targetMailbox="Notes" mailboxClass=""><EMail><Subject>inline</Subject><MIME type="multipart" subtype="related"><MIME type="text" subtype="html">&lt;img src="cid:logo1"&gt;</MIME><MIME uploadID="pic" disposition="none" contentID="logo1"/></MIME></EMail></messageAppend>',
    );
    const raw = (await storedRaw(server, u.address, 'Notes', 1))!.toString('latin1');
    const gifPart = raw.slice(raw.indexOf('Content-Type: image/gif'));
    const head = gifPart.slice(0, gifPart.indexOf('\r\n\r\n'));
    assert.match(head, /^Content-Type: image\/gif\r\n/);
    assert.doesNotMatch(head, /Content-Disposition/i);
    assert.doesNotMatch(head, /name=/i);
    assert.match(head, /Content-ID: <logo1>/);
  });

  test('messageAppend: format="flowed" (the spec example, byte for byte)', async () => {
    const u = await newUser();
    await ok(
      u.client,
      `<messageAppend targetMailbox="Notes" mailboxClass="" flags="Seen"><EMail><Subject>Test text</Subject><MIME type="text" subtype="plain" format="flowed">This is a very long long long long long long long long long long superlong long long long long long long line, followed with a shorter line:
This is a shorter line.</MIME></EMail></messageAppend>`,
    );
    const raw = (await storedRaw(server, u.address, 'Notes', 1))!;
    const lines = headerLines(raw);
    assert.ok(lines.includes('Subject: Test text'));
    assert.ok(lines.includes('Content-Transfer-Encoding: 8bit'));
    assert.ok(lines.some((l) => /^Content-Type: text\/plain; format="?flowed"?; charset="?utf-8"?$/.test(l)), lines.join(' | '));
    assert.equal(
      bodyOf(raw).replace(/\r\n$/, ''),
      'This is a very long long long long long long long long long long superlong \r\nlong long long long long long line, followed with a shorter line:\r\nThis is a shorter line.',
    );
  });

  test('messageAppend: <EMail uploadID> stores the uploaded RFC 822 text (line ends made CRLF)', async () => {
    const u = await newUser();
    const text = 'From: raw@example.org\nSubject: Raw upload\nX-Custom: kept as is\n\nraw body line 1\nline 2\n';
    await putUpload(u, 'rawmsg', text, 'message/rfc822');
    const reply = await ok(u.client, '<messageAppend targetMailbox="INBOX" report="uid"><EMail uploadID="rawmsg"/></messageAppend>');
    const uid = Number(reply.messages[0]!.attrs.UID);
    assert.deepEqual(await storedRaw(server, u.address, 'INBOX', uid), Buffer.from(text.replace(/\n/g, '\r\n')));
    await fails(u.client, '<messageAppend targetMailbox="INBOX"><EMail uploadID="missing"/></messageAppend>');
  });

  test('messageAppend: copyMIME from an open folder, with a partID (content fields only) and without (message/rfc822)', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [mixedMessage(u.address)]);
    await open(u.client, 'IN', 'INBOX', ['UID']);
    await ok(
      u.client,
      `<messageAppend targetMailbox="Notes" mailboxClass="" flags="Seen"><EMail><From realName="Sender Name">fromName@domain</From><Subject>Vacation Pictures</Subject>
        <MIME type="multipart" subtype="mixed"><MIME type="text" subtype="plain">The first part.</MIME>
          <copyMIME folder="IN" UID="1" partID="2"/><copyMIME folder="IN" UID="1" partID="01-01"/></MIME></EMail></messageAppend>`,
    );
    await open(u.client, 'Notes', 'Notes', ['UID']);
    const email = (await readMessage(u.client, 'Notes', 1)).element('EMail')!;
    const pdfPart = findMime(email, '02')!;
    assert.deepEqual([pdfPart.attrs.type, pdfPart.attrs.subtype, pdfPart.attrs.disposition, pdfPart.attrs['Disposition-filename']], ['application', 'pdf', 'attachment', 'doc.pdf']);
    const textPart = findMime(email, '03')!;
    assert.deepEqual([textPart.attrs.type, textPart.attrs.subtype, textPart.attrs.charset], ['text', 'plain', 'iso-8859-1']);
    assert.equal(textPart.text(), 'From where I stay, I can see & hear a lot! Café\n');
    const copied = Buffer.from(await (await get(u.urlID, 'MIME/Notes/1-02-B.pdf')).arrayBuffer());
    assert.equal(copied.toString('latin1'), '%PDF-1.2\n');
    const raw = (await storedRaw(server, u.address, 'Notes', 1))!.toString('latin1');
    assert.doesNotMatch(raw, /X-Part-Note/, 'fields other than Content-* are not copied');

    await ok(u.client, `<messageAppend targetMailbox="Notes"><EMail><Subject>Whole</Subject><MIME type="multipart" subtype="mixed"><MIME type="text" subtype="plain">See the enclosed message.</MIME><copyMIME folder="IN" UID="1"/></MIME></EMail></messageAppend>`);
    const whole = (await readMessage(u.client, 'Notes', 2)).element('EMail')!;
    const enclosed = findMime(whole, '02')!;
    assert.deepEqual([enclosed.attrs.type, enclosed.attrs.subtype], ['message', 'rfc822']);
    assert.equal(enclosed.element('EMail')!.element('Subject')!.text(), "It's 1:15PM now, the meeting has started!");
    const inner = Buffer.from(await (await get(u.urlID, 'MIME/Notes/2-02-B.eml')).arrayBuffer());
    assert.deepEqual(inner, (await storedRaw(server, u.address, 'INBOX', 1))!, 'the whole message is enclosed unchanged');

    await fails(u.client, '<messageAppend targetMailbox="Notes"><EMail><copyMIME folder="nope" UID="1"/></EMail></messageAppend>', 'folder has not been opened');
    await fails(u.client, '<messageAppend targetMailbox="Notes"><EMail><copyMIME folder="IN" UID="1" partID="09"/></EMail></messageAppend>');
    await fails(u.client, '<messageAppend targetMailbox="Notes"><EMail><copyMIME folder="IN" UID="77"/></EMail></messageAppend>');
    assert.deepEqual(await storedUids(server, u.address, 'Notes'), [1, 2]);
  });

  test('messageAppend replacesUID: plain, checkOld, copyOrigUID, origUID', async () => {
    const u = await newUser();
    await ok(u.client, '<mailboxCreate mailbox="Drafts"/>');
    await deliverRaw(server, u.address, 'Drafts', [textMail('d1'), textMail('d2'), textMail('d3')]);
    await open(u.client, 'D', 'Drafts', ['UID', 'ORIGUID', 'Subject'], 'sortField="UID"');
    const rows = async (): Promise<string[]> => {
      await folderSync(u.client, 'D');
      takeNotifies(u.client, 'D');
      return (await browseAll(u.client, 'D')).map((r) => r.fields.replace(/<\/?\w+>/g, (t) => (t.startsWith('</') ? ' ' : '')).trim());
    };
    const replace = (attrs: string, subject: string): string =>
      `<messageAppend folder="D" report="uid" ${attrs}><EMail><Subject>${subject}</Subject><MIME type="text" subtype="plain">v</MIME></EMail></messageAppend>`;

    await ok(u.client, replace('replacesUID="1"', 'd1 v2'));
    assert.deepEqual(await rows(), ['2 2 d2', '3 3 d3', '4 4 d1 v2']);
    // Without a mode, a missing message is no obstacle.
    await ok(u.client, replace('replacesUID="1"', 'd1 v3'));
    assert.deepEqual(await rows(), ['2 2 d2', '3 3 d3', '4 4 d1 v2', '5 5 d1 v3']);
    await fails(u.client, replace('replacesUID="1" replaceMode="checkOld"', 'never'));
    await ok(u.client, replace('replacesUID="5" replaceMode="checkOld"', 'd1 v4'));
    assert.deepEqual(await rows(), ['2 2 d2', '3 3 d3', '4 4 d1 v2', '6 6 d1 v4']);
    await ok(u.client, replace('replacesUID="2" replaceMode="copyOrigUID"', 'd2 v2'));
    assert.deepEqual(await rows(), ['3 3 d3', '4 4 d1 v2', '6 6 d1 v4', '7 2 d2 v2'], 'the ORIGUID is kept');
    await fails(u.client, replace('replacesUID="2" replaceMode="copyOrigUID"', 'never'));
    // origUID: replacesUID names an ORIGUID.
    await ok(u.client, replace('replacesUID="2" replaceMode="origUID"', 'd2 v3'));
    assert.deepEqual(await rows(), ['3 3 d3', '4 4 d1 v2', '6 6 d1 v4', '8 2 d2 v3']);
    await fails(u.client, replace('replacesUID="7" replaceMode="origUID"', 'never'));
    await fails(u.client, replace('replacesUID="3" replaceMode="sideways"', 'never'));
    await fails(u.client, appendXml('targetMailbox="Drafts"', 'never', 'replacesUID="3"'));
    assert.deepEqual(await storedUids(server, u.address, 'Drafts'), [3, 4, 6, 8]);
  });

  test('folderRead: header elements, MIME partIDs, Type-/Disposition- attributes, decoded text, attachments without bodies, nested EMail', async () => {
    const u = await newUser({ prefs: { TimeZone: 'America/Los_Angeles' } });
    await deliverRaw(server, u.address, 'INBOX', [mixedMessage(u.address)]);
    await open(u.client, 'F', 'INBOX', ['UID']);
    const message = await readMessage(u.client, 'F', 1);
    assert.equal(message.attrs.partID, undefined);
    const email = message.element('EMail')!;
    const headers = email.elements().filter((e) => e.name !== 'MIME').map((e) => e.toString());
    assert.deepEqual(headers, [
      '<From realName="Mr. Sender.">user1@example.com</From>',
      '<To realName="My Friend">user2@example.com</To>',
      '<To realName="Not A Friend">user3@example.com</To>',
      `<Cc>${u.address}</Cc>`,
      '<Date timeShift="-25200" localTime="20060410T131548">20060410T201548Z</Date>',
      "<Subject>It's 1:15PM now, the meeting has started!</Subject>",
      '<Message-ID>&lt;m1@example.com&gt;</Message-ID>',
      '<X-Mailer>Mixer 2</X-Mailer>',
    ]);
    const top = email.element('MIME')!;
    assert.deepEqual([top.attrs.type, top.attrs.subtype, top.attrs.partID, top.attrs.description], ['multipart', 'mixed', undefined, 'Test Message']);
    const ids: string[] = [];
    const walk = (e: XmlElement): void => {
      for (const c of e.elements('MIME')) {
        ids.push(`${c.attrs.partID}:${c.attrs.type}/${c.attrs.subtype}`);
        walk(c);
      }
      const inner = e.element('EMail');
      if (inner) walk(inner);
    };
    walk(top);
    assert.deepEqual(ids, ['01:multipart/alternative', '01-01:text/plain', '01-02:text/html', '02:application/pdf', '03:message/rfc822', '03-01:text/plain']);
    const plain = findMime(email, '01-01')!;
    assert.equal(plain.attrs.charset, 'iso-8859-1');
    const paramX = Object.entries(plain.attrs).find(([k]) => k.toLowerCase() === 'type-paramx');
    assert.deepEqual(paramX?.[1], 'valueX', 'a Type-paramX attribute');
    assert.ok(!Object.keys(plain.attrs).some((k) => /^type-(format|charset|boundary)$/i.test(k)), 'format/charset/boundary are not Type- attributes');
    assert.equal(plain.text(), 'From where I stay, I can see & hear a lot! Café\n', 'quoted-printable iso-8859-1 decoded');
    assert.match(plain.attrs.estimatedSize ?? '', /^\d+$/);
    assert.equal(findMime(email, '01-02')!.text(), '<html><body bgcolor="yellow">\n<I>From where I stay</I>, I can see &amp; hear a lot!\n</body></html>');
    const pdf = findMime(email, '02')!;
    assert.deepEqual(
      [pdf.attrs.disposition, pdf.attrs['Disposition-filename'], pdf.attrs['Type-name'], pdf.children.length],
      ['attachment', 'doc.pdf', 'doc.pdf', 0],
      'an attachment comes without its body',
    );
    const nested = findMime(email, '03')!.element('EMail')!;
    assert.deepEqual(nested.elements().filter((e) => e.name !== 'MIME').map((e) => e.toString()), ['<From>inner@example.com</From>', '<Subject>Inner message</Subject>']);
    assert.equal(findMime(nested, '03-01')!.text(), 'Inner body\n');

    // A part by partID; an enclosed message part as an EMail.
    const part = await readMessage(u.client, 'F', 1, 'partID="01-01"');
    assert.equal(part.attrs.partID, '01-01');
    assert.equal(part.element('MIME')!.text(), 'From where I stay, I can see & hear a lot! Café\n');
    assert.equal((await readMessage(u.client, 'F', 1, 'partID="03"')).element('EMail')!.element('Subject')!.text(), 'Inner message');
    await fails(u.client, '<folderRead folder="F" UID="1" partID="07"/>');
    await fails(u.client, '<folderRead folder="F" UID="9"/>');
    // The lenient uid= spelling.
    assert.equal((await ok(u.client, '<folderRead folder="F" uid="1"/>')).messages[0]!.attrs.UID, '1');
  });

  test('folderRead totalSizeLimit: bodies beyond the limit are left out, the structure stays', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [mixedMessage(u.address)]);
    await open(u.client, 'F', 'INBOX', ['UID']);
    const email = (await readMessage(u.client, 'F', 1, 'totalSizeLimit="10"')).element('EMail')!;
    for (const id of ['01-01', '01-02', '03-01']) assert.equal(findMime(email, id)!.children.length, 0, `${id} has no body`);
    assert.ok(findMime(email, '03')!.element('EMail'), 'enclosed message headers stay');
    // A limit fitting the plain text only: the first text part keeps its body.
    const some = (await readMessage(u.client, 'F', 1, 'totalSizeLimit="60"')).element('EMail')!;
    assert.equal(findMime(some, '01-01')!.text(), 'From where I stay, I can see & hear a lot! Café\n');
    assert.equal(findMime(some, '01-02')!.children.length, 0);
    await fails(u.client, '<folderRead folder="F" UID="1" totalSizeLimit="-4"/>');
  });

  test('folderRead: a delivery report as MIMEReport, text/rfc822-headers as EMail (the spec example)', async () => {
    const u = await newUser({ prefs: { TimeZone: 'America/Los_Angeles' } });
    await deliverRaw(server, u.address, 'INBOX', [Buffer.from(REPORT.replace(/\n/g, '\r\n'))]);
    await open(u.client, 'F', 'INBOX', ['UID']);
    const email = (await readMessage(u.client, 'F', 1)).element('EMail')!;
    assert.equal(email.element('From')!.toString(), '<From>MAILER-DAEMON@remote.example.com</From>');
    assert.equal(email.element('Date')!.toString(), '<Date timeShift="-25200" localTime="20070502T003313">20070502T073313Z</Date>');
    assert.equal(email.element('X-MAPI-Message-Class')!.text(), 'REPORT.IPM.Note.DR');
    const top = email.element('MIME')!;
    assert.deepEqual([top.attrs.type, top.attrs.subtype, top.attrs['Type-report-type']], ['multipart', 'report', 'delivery-status']);
    assert.equal(findMime(email, '01')!.text(), "Message delivered to '<recepient@remote.example.com>'\nLOCAL module(account recepient) reports:\n Delivered to the user mailbox\n\n");
    const report = findMime(email, '02')!.element('MIMEReport')!;
    assert.equal(
      report.toString(),
      '<MIMEReport><Reporting-MTA>dns; remote.example.com</Reporting-MTA><MIMEReport><Original-Recipient>rfc822;&lt;recepient@remote.example.com&gt;</Original-Recipient><Final-Recipient>LOCAL;&lt;recepient&gt;</Final-Recipient><Action>delivered</Action><Status>2.0.0</Status></MIMEReport></MIMEReport>',
    );
    const headers = findMime(email, '03')!.element('EMail')!;
    assert.deepEqual(
      headers.elements().map((e) => e.toString()),
      [
        '<From realName="Sender Name">sender@local.example.com</From>',
        '<Subject>TEST - disposition and delivery</Subject>',
        '<To>recepient@remote.example.com</To>',
        '<X-Mailer>CommuniGate Pro WebUser v5.1.9</X-Mailer>',
        '<Date timeShift="-25200" localTime="20070502T003551">20070502T073551Z</Date>',
        '<Message-ID>&lt;web-3990004@local.example.com&gt;</Message-ID>',
        '<Disposition-Notification-To>sender@local.example.com</Disposition-Notification-To>',
      ],
    );
  });

  test('folderRead modes: replyFrom, replyAll, forward and the HTML forms give EMail templates', async () => {
    const u = await newUser({ prefs: { TimeZone: 'America/Los_Angeles' } });
    await deliverRaw(server, u.address, 'INBOX', [
      mixedMessage(u.address),
      textMail('Re: Plans', { from: '"Alice" <alice@example.org>', to: `${u.address}, carol@example.org` }),
    ]);
    await open(u.client, 'F', 'INBOX', ['UID']);
    const template = async (mode: string, uid = 1, extra = ''): Promise<XmlElement> => {
      const m = await readMessage(u.client, 'F', uid, `mode="${mode}" ${extra}`);
      assert.equal(m.attrs.mode, mode);
      return m.element('EMail')!;
    };
    const reply = await template('replyFrom');
    assert.deepEqual(reply.elements('To').map((e) => e.toString()), ['<To realName="Mr. Sender.">user1@example.com</To>']);
    assert.deepEqual(reply.elements('Cc'), []);
    assert.equal(reply.element('Subject')!.text(), "Re: It's 1:15PM now, the meeting has started!");
    assert.equal(reply.element('In-Reply-To')!.text(), '<m1@example.com>');
    const body = reply.element('MIME')!;
    assert.deepEqual([body.attrs.type, body.attrs.subtype], ['text', 'plain']);
    assert.match(body.text(), /^> From where I stay, I can see & hear a lot! Café$/m);
    assert.match(body.text(), /Mr\. Sender\. wrote:/);

    const all = await template('replyAll');
    assert.deepEqual(all.elements('To').map((e) => e.text()), ['user1@example.com']);
    assert.deepEqual(all.elements('Cc').map((e) => e.toString()), [
      '<Cc realName="My Friend">user2@example.com</Cc>',
      '<Cc realName="Not A Friend">user3@example.com</Cc>',
    ], 'the account itself is left out');

    const forward = await template('forward');
    assert.deepEqual(forward.elements('To'), []);
    assert.equal(forward.element('Subject')!.text(), "Fwd: It's 1:15PM now, the meeting has started!");
    assert.equal(forward.element('In-Reply-To'), undefined);
    assert.match(forward.element('MIME')!.text(), /From where I stay, I can see & hear a lot! Café/);

    const html = await template('replyFromHTML');
    assert.equal(html.element('MIME')!.attrs.subtype, 'html');
    assert.match(html.element('MIME')!.text(), /<blockquote[^>]*>.*From where I stay/s);
    assert.equal(html.element('Subject')!.text(), "Re: It's 1:15PM now, the meeting has started!");
    assert.equal((await template('replyAllHTML')).elements('Cc').length, 2);
    const fwdHtml = await template('forwardHTML');
    assert.equal(fwdHtml.element('MIME')!.attrs.subtype, 'html');
    assert.equal(fwdHtml.element('Subject')!.text(), "Fwd: It's 1:15PM now, the meeting has started!");

    // Replying to "Re: Plans" does not stack prefixes; replyAll leaves the account out.
    const again = await template('replyAll', 2);
    assert.equal(again.element('Subject')!.text(), 'Re: Plans');
    assert.deepEqual(again.elements('To').map((e) => e.toString()), ['<To realName="Alice">alice@example.org</To>']);
    assert.deepEqual(again.elements('Cc').map((e) => e.text()), ['carol@example.org']);
    // A reply to an enclosed message (partID names the message/rfc822 part).
    const inner = await template('replyFrom', 1, 'partID="03"');
    assert.equal(inner.element('Subject')!.text(), 'Re: Inner message');
    assert.deepEqual(inner.elements('To').map((e) => e.text()), ['inner@example.com']);
    await fails(u.client, '<folderRead folder="F" UID="1" mode="replySideways"/>');
    await fails(u.client, '<folderRead folder="F" UID="1" mode="replyFrom" partID="01-01"/>');
  });

  test('messageCopy and messageMove with report="uid": UIDs in the target, ORIGUID of a copy, notify for an open target', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('m1'), { raw: textMail('m2'), flags: 'Seen,Flagged' }, textMail('m3'), textMail('m4')]);
    await ok(u.client, '<mailboxCreate mailbox="Archive"/>');
    await deliverRaw(server, u.address, 'Archive', [textMail('a1')]);
    await open(u.client, 'IN', 'INBOX', ['UID', 'FLAGS', 'Subject'], 'sortField="UID"');
    await open(u.client, 'Archive', 'Archive', ['UID', 'ORIGUID', 'FLAGS', 'Subject'], 'sortField="UID"');
    const inbox = await FolderModel.load(u.client, 'IN');
    const archive = await FolderModel.load(u.client, 'Archive');

    const copy = await ok(u.client, '<messageCopy folder="IN" targetMailbox="Archive" report="uid"><UID>2</UID><UID>3</UID></messageCopy>');
    assert.deepEqual(copy.messages.map((m) => [m.name, m.attrs.targetMailbox, m.attrs.UID]), [
      ['messageAdded', 'Archive', '2'],
      ['messageAdded', 'Archive', '3'],
    ]);
    assert.equal(await awaitNotifies(u.client, 'Archive'), 1);
    await archive.syncAndCheck(u.client);
    assert.deepEqual(archive.rows.map((r) => r.fields.replace(/<FLAGS>.*?<\/FLAGS>|<FLAGS\/>/, '')), [
      '<UID>1</UID><ORIGUID>1</ORIGUID><Subject>a1</Subject>',
      '<UID>2</UID><ORIGUID>2</ORIGUID><Subject>m2</Subject>',
      '<UID>3</UID><ORIGUID>3</ORIGUID><Subject>m3</Subject>',
    ]);
    assert.deepEqual(flagSet(archive.rows[1]!.flags).filter((f) => f !== 'Recent'), ['Flagged', 'Seen'], 'flags are copied');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [1, 2, 3, 4], 'copy leaves the source');

    const move = await ok(u.client, '<messageMove folder="IN" targetMailbox="Archive" report="uid"><index from="0" till="1"/></messageMove>');
    assert.deepEqual(move.messages.map((m) => m.attrs.UID), ['4', '5']);
    await awaitNotifies(u.client, 'IN');
    const removed = await inbox.syncAndCheck(u.client);
    assert.deepEqual(removed.map((r) => [r.attrs.mode, r.attrs.UID]), [['removed', '1'], ['removed', '2']]);
    await archive.syncAndCheck(u.client);
    assert.deepEqual(archive.uids(), [1, 2, 3, 4, 5]);
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [3, 4]);

    // Without report: no messageAdded. A missing target: an error unless mailboxClass creates it.
    assert.deepEqual((await ok(u.client, '<messageCopy folder="IN" targetMailbox="Archive"><UID>3</UID></messageCopy>')).messages, []);
    await fails(u.client, '<messageCopy folder="IN" targetMailbox="Nowhere"><UID>3</UID></messageCopy>');
    await ok(u.client, '<messageCopy folder="IN" targetMailbox="Later" mailboxClass=""><UID>3</UID><UID>4</UID></messageCopy>');
    assert.equal((await list(u.client)).get('Later')!.MESSAGES, '2');
  });

  test('messageMark: names, negative names, keywords, mode="delete", Read = Seen', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('a'), textMail('b')]);
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS'], 'sortField="UID" hideDeleted="no"');
    const mark = async (flags: string, extra = '', set = '<UID>1</UID>'): Promise<string[]> => {
      await ok(u.client, `<messageMark folder="F" flags="${flags}" ${extra}>${set}</messageMark>`);
      await folderSync(u.client, 'F');
      takeNotifies(u.client, 'F');
      return flagsOf(u.client, 'F', 1);
    };
    assert.deepEqual(await mark('Seen,Flagged'), ['Flagged', 'Seen']);
    assert.deepEqual(await mark('Unseen'), ['Flagged']);
    assert.deepEqual(await mark('Read'), ['Flagged', 'Seen']);
    assert.deepEqual(await mark('Unflagged,$Label1,Answered'), ['$Label1', 'Answered', 'Seen']);
    assert.deepEqual(await mark('Business'), ['$Label1', 'Answered', 'Business', 'Seen']);
    assert.deepEqual(await mark('$Label1,Answered', 'mode="delete"'), ['Business', 'Seen']);
    assert.deepEqual(await mark('Unread'), ['Business']);
    assert.deepEqual(await mark('Deleted,Draft'), ['Business', 'Deleted', 'Draft']);
    assert.deepEqual(await mark('Deleted,Draft,Business', 'mode="delete"'), []);
    assert.deepEqual(await flagsOf(u.client, 'F', 2), [], 'the other message is untouched');
    assert.deepEqual(await mark('Flagged', '', '<index>1</index>'), [], 'an index set names message 2');
    assert.deepEqual(await flagsOf(u.client, 'F', 2), ['Flagged']);
    await fails(u.client, '<messageMark folder="F" flags="Seen"/>');
    await fails(u.client, '<messageMark folder="F" flags="bad(name"><UID>1</UID></messageMark>');
  });

  test('messageRemove: Immediately, Mark, Move To Trash (Trash is created; in Trash itself it expunges)', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', ['a', 'b', 'c', 'd'].map((s) => textMail(s)));
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS', 'Subject'], 'sortField="UID" hideDeleted="no"');
    await ok(u.client, '<messageRemove folder="F" mode="Immediately"><UID>1</UID></messageRemove>');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [2, 3, 4]);
    await ok(u.client, '<messageRemove folder="F" mode="Mark"><UID>2</UID></messageRemove>');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [2, 3, 4]);
    assert.deepEqual(await flagsOf(u.client, 'F', 2), ['Deleted']);
    assert.ok(!(await list(u.client)).has('Trash'));
    await ok(u.client, '<messageRemove folder="F" mode="Move To Trash"><UID>3</UID></messageRemove>');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [2, 4]);
    assert.equal((await list(u.client)).get('Trash')?.MESSAGES, '1', 'Trash was created and holds the message');
    await open(u.client, 'T', 'Trash', ['Subject']);
    assert.deepEqual((await browseAll(u.client, 'T')).map((r) => r.fields), ['<Subject>c</Subject>']);
    await ok(u.client, '<messageRemove folder="T" mode="Move To Trash"><index>0</index></messageRemove>');
    assert.deepEqual(await storedUids(server, u.address, 'Trash'), [], 'removing from Trash expunges');
    await fails(u.client, '<messageRemove folder="F" mode="Shred"><UID>4</UID></messageRemove>');
  });

  test('messageRemove without mode follows DeleteMode (and TrashBox)', async () => {
    const trash = await newUser();
    const mark = await newUser({ prefs: { DeleteMode: 'Mark' } });
    const now = await newUser({ prefs: { DeleteMode: 'Immediately' } });
    const bin = await newUser({ prefs: { TrashBox: 'Bin' } });
    for (const u of [trash, mark, now, bin]) {
      await deliverRaw(server, u.address, 'INBOX', [textMail('x'), textMail('y')]);
      await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS'], 'hideDeleted="no"');
      await ok(u.client, '<messageRemove folder="F"><UID>1</UID></messageRemove>');
    }
    assert.deepEqual(await storedUids(server, trash.address, 'INBOX'), [2]);
    assert.deepEqual(await storedUids(server, trash.address, 'Trash'), [1]);
    assert.deepEqual(await storedUids(server, mark.address, 'INBOX'), [1, 2]);
    assert.deepEqual(await flagsOf(mark.client, 'F', 1), ['Deleted']);
    assert.deepEqual(await storedUids(server, now.address, 'INBOX'), [2]);
    assert.ok(!(await list(now.client)).has('Trash'));
    assert.deepEqual(await storedUids(server, bin.address, 'Bin'), [1]);
    assert.ok(!(await list(bin.client)).has('Trash'));
  });

  test('folderExpunge removes every Deleted message of the mailbox, only those, even ones the folder does not show', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: textMail('a'), flags: 'Deleted' },
      textMail('b'),
      { raw: textMail('c'), flags: 'Seen,Deleted' },
      { raw: textMail('d'), flags: 'Seen' },
    ]);
    await open(u.client, 'U', 'INBOX', ['UID'], 'filterField="FLAGS" filter="Unseen" hideDeleted="no"');
    assert.deepEqual(await viewUids(u.client, 'U'), [1, 2]);
    await ok(u.client, '<folderExpunge folder="U"/>');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [2, 4]);
    await ok(u.client, '<folderExpunge folder="U"/>');
    assert.deepEqual(await storedUids(server, u.address, 'INBOX'), [2, 4], 'nothing Deleted: nothing removed');
  });

  test('emptyMailbox (duration 0, and a duration keeping newer messages) and emptyTrash', async () => {
    const u = await newUser();
    const day = 86400_000;
    for (const box of ['Old', 'Mixed']) {
      await ok(u.client, `<mailboxCreate mailbox="${box}"/>`);
      await deliverRaw(server, u.address, box, [
        { raw: textMail('ten days'), internalDate: Date.now() - 10 * day },
        { raw: textMail('five days'), internalDate: Date.now() - 5 * day },
        { raw: textMail('now'), internalDate: Date.now() },
      ]);
    }
    await ok(u.client, '<emptyMailbox mailbox="Old" duration="0"/>');
    assert.deepEqual(await storedUids(server, u.address, 'Old'), []);
    assert.ok((await list(u.client)).has('Old'), 'the mailbox itself stays');
    await ok(u.client, `<emptyMailbox mailbox="Mixed" duration="${7 * 86400}"/>`);
    assert.deepEqual(await storedUids(server, u.address, 'Mixed'), [2, 3]);
    await ok(u.client, '<emptyMailbox mailbox="Mixed" duration="2d"/>');
    assert.deepEqual(await storedUids(server, u.address, 'Mixed'), [3]);
    await fails(u.client, '<emptyMailbox mailbox="Missing" duration="0"/>');

    await deliverRaw(server, u.address, 'Trash', [textMail('t1'), textMail('t2')]);
    await ok(u.client, '<emptyTrash/>');
    assert.deepEqual(await storedUids(server, u.address, 'Trash'), []);
    assert.equal((await list(u.client)).get('Trash')!.MESSAGES, '0');
  });

  test('messageAttrWrite / messageAttrRead: a dictionary round trip; <null/> removes; attrsUpdated at folderSync', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [{ raw: textMail('attrs'), flags: 'Seen', internalDate: Date.UTC(2019, 4, 6, 7, 8, 9) }]);
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS', 'Subject']);
    const model = await FolderModel.load(u.client, 'F');
    const read = async (fields = ''): Promise<Record<string, string>> => {
      const reply = await ok(u.client, `<messageAttrRead folder="F" UID="1">${fields}</messageAttrRead>`);
      const data = reply.messages[0]!;
      assert.equal(data.name, 'messageAttrData');
      assert.equal(data.attrs.folder, 'F');
      assert.equal(data.attrs.UID, '1');
      return Object.fromEntries(data.elements('subKey').map((k) => [k.attrs.key!, k.children.map((c) => serialize(c)).join('')]));
    };
    const before = await read();
    assert.equal(before.UID, '1');
    assert.equal(before.ORIGUID, '1');
    assert.equal(before.FLAGS, 'Seen');
    assert.equal(before.SIZE, String(textMail('attrs').length));
    assert.equal(before.INTERNALDATE, '20190506T070809Z');

    await ok(
      u.client,
      '<messageAttrWrite folder="F" UID="1"><subKey key="color">red</subKey><subKey key="tags"><subValue>a</subValue><subValue>b</subValue></subKey><subKey key="nested"><subKey key="k">v</subKey></subKey></messageAttrWrite>',
    );
    await awaitNotifies(u.client, 'F');
    const reports = await model.syncAndCheck(u.client);
    assert.deepEqual(reports.map((r) => [r.attrs.mode, r.attrs.UID]), [['attrsUpdated', '1']]);
    const after = await read();
    assert.equal(after.color, 'red');
    assert.equal(after.tags, '<subValue>a</subValue><subValue>b</subValue>');
    assert.equal(after.nested, '<subKey key="k">v</subKey>');
    assert.deepEqual(await read('<field>color</field><field>UID</field><field>absent</field>'), { color: 'red', UID: '1' });

    await ok(u.client, '<messageAttrWrite folder="F" UID="1"><subKey key="color"><null/></subKey><subKey key="size">XL</subKey></messageAttrWrite>');
    const last = await read();
    assert.equal(last.color, undefined, '<null/> removed it');
    assert.equal(last.size, 'XL');
    assert.equal(last.tags, '<subValue>a</subValue><subValue>b</subValue>');
    await fails(u.client, '<messageAttrWrite folder="F" UID="1"><subKey key="FLAGS">Seen</subKey></messageAttrWrite>');
    await fails(u.client, '<messageAttrWrite folder="F" UID="5"><subKey key="a">b</subKey></messageAttrWrite>');
    await fails(u.client, '<messageAttrRead folder="F" UID="5"/>');
  });

  test('folderSearch: the spec filter, limit with next, UID or index results, syntax errors', async () => {
    const u = await newUser();
    const at = (y: number, m: number, d: number): number => Date.UTC(y, m - 1, d, 12);
    await deliverRaw(server, u.address, 'INBOX', [
      { raw: textMail('test 1', { from: 'jones@example.org' }), internalDate: at(2008, 1, 15) },
      { raw: textMail('test 2', { from: '"John Smith" <john@example.org>' }), internalDate: at(2008, 3, 1) },
      { raw: textMail('a test', { from: 'jones@example.org' }), internalDate: at(2008, 3, 2) },
      { raw: textMail('xxx report', { from: 'jones@example.org' }), internalDate: at(2008, 3, 3) },
      { raw: textMail('other', { from: 'jones@example.org' }), internalDate: at(2008, 3, 4) },
      { raw: textMail('Test again', { from: 'brown@example.org' }), internalDate: at(2009, 1, 1) },
      { raw: textMail('xxx', { from: 'brown@example.org' }), internalDate: at(2009, 1, 2) },
      { raw: textMail('testing', { from: 'brown@example.org' }), internalDate: at(2010, 1, 1) },
    ]);
    await open(u.client, 'INBOX', 'INBOX', ['UID'], 'sortField="UID" sortOrder="desc"');
    const search = async (attrs: string, set = ''): Promise<XmlElement> => {
      const reply = await ok(u.client, `<folderSearch folder="INBOX" ${attrs}>${set}</folderSearch>`);
      assert.equal(reply.messages.length, 1);
      const result = reply.messages[0]!;
      assert.equal(result.name, 'folderSearchResult');
      assert.equal(result.attrs.folder, 'INBOX');
      return result;
    };
    const filter = 'filter="SINCE 1-Feb-2008 NOT FROM Smith OR SUBJECT test SUBJECT xxx"';
    const all = await search(`limit="5" timeout="1" ${filter}`, '<UID from="0" till="1000"/>');
    assert.equal(all.toString().replace(/ id="[^"]*"/, ''), '<folderSearchResult folder="INBOX"><UID>3</UID><UID>4</UID><UID>6</UID><UID>7</UID><UID>8</UID></folderSearchResult>');
    const first = await search(`limit="2" ${filter}`, '<UID from="0" till="1000"/>');
    assert.deepEqual(first.elements('UID').map((e) => e.text()), ['3', '4']);
    assert.equal(first.attrs.next, '5');
    const more = await search(`limit="2" ${filter}`, `<UID from="${first.attrs.next}" till="1000"/>`);
    assert.deepEqual(more.elements('UID').map((e) => e.text()), ['6', '7']);
    assert.equal(more.attrs.next, '8');
    // Without a message set: the whole view, answered by index (view sorted by UID descending).
    const byIndex = await search(filter);
    assert.deepEqual(byIndex.elements('index').map((e) => e.text()).sort(), ['0', '1', '2', '4', '5']);
    assert.deepEqual(byIndex.elements('UID'), []);
    const limited = await search(`limit="1" ${filter}`, '<index from="1" till="7"/>');
    assert.deepEqual(limited.elements('index').map((e) => e.text()), ['1']);
    assert.equal(limited.attrs.next, '2');
    assert.deepEqual((await search('filter="FROM nobody"')).children, []);
    expectError(await u.client.request('<folderSearch folder="INBOX" filter="SINCE"/>'), /.+/);
    expectError(await u.client.request('<folderSearch folder="INBOX" filter="FROBNICATE 3"/>'), /.+/);
    expectError(await u.client.request('<folderSearch folder="INBOX" filter="OR SUBJECT a"/>'), /.+/);
  });

  test('mailboxSync: syncID 0 lists everything; later only the changes; removed with origUID; limit with hasMore', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', [textMail('s1'), { raw: textMail('s2'), flags: 'Seen' }, textMail('s3')]);
    await open(u.client, 'F', 'INBOX', ['UID', 'FLAGS', 'Subject']);
    const sync = async (attrs: string): Promise<{ reports: XmlElement[]; info: XmlElement }> => {
      const reply = await ok(u.client, `<mailboxSync folder="F" ${attrs}/>`);
      for (const m of reply.messages) {
        assert.equal(m.name, 'mailboxSyncReport');
        assert.equal(m.attrs.folder, 'F');
      }
      const info = reply.messages.at(-1)!;
      assert.equal(info.attrs.mode, 'info');
      assert.ok(info.attrs.syncID, 'info carries the next syncID');
      return { reports: reply.messages.slice(0, -1), info };
    };
    const initial = await sync('syncID="0"');
    assert.deepEqual(initial.reports.map((r) => [r.attrs.mode, r.attrs.UID, r.attrs.origUID]).sort(), [
      ['added', '1', '1'],
      ['added', '2', '2'],
      ['added', '3', '3'],
    ]);
    const s2 = initial.reports.find((r) => r.attrs.UID === '2')!;
    assert.equal(s2.element('Subject')!.text(), 's2');
    assert.ok(flagSet(s2.element('FLAGS')!.text()).includes('Seen'));
    assert.equal(s2.element('EMail')?.element('Subject')?.text(), 's2', 'added records carry the message');
    assert.equal(initial.info.attrs.hasMore, undefined);

    const quiet = await sync(`syncID="${initial.info.attrs.syncID}"`);
    assert.deepEqual(quiet.reports, []);

    await ok(u.client, '<messageMark folder="F" flags="Seen"><UID>1</UID></messageMark>');
    await ok(u.client, '<messageRemove folder="F" mode="Immediately"><UID>2</UID></messageRemove>');
    await deliverRaw(server, u.address, 'INBOX', [textMail('s4')]);
    const changes = await sync(`syncID="${initial.info.attrs.syncID}"`);
    assert.deepEqual(changes.reports.map((r) => [r.attrs.mode, r.attrs.UID, r.attrs.origUID]).sort(), [
      ['added', '4', '4'],
      ['flagsUpdated', '1', '1'],
      ['removed', '2', '2'],
    ]);
    const flagged = changes.reports.find((r) => r.attrs.mode === 'flagsUpdated')!;
    assert.ok(flagSet(flagged.element('FLAGS')!.text()).includes('Seen'));
    assert.equal(flagged.element('EMail'), undefined);
    assert.equal(changes.reports.find((r) => r.attrs.mode === 'removed')!.children.length, 0);
    assert.deepEqual((await sync(`syncID="${changes.info.attrs.syncID}"`)).reports, []);

    // Five more changes, fetched two at a time.
    for (let i = 5; i <= 9; i++) await deliverRaw(server, u.address, 'INBOX', [textMail(`s${i}`)]);
    const seen: string[] = [];
    let syncID = changes.info.attrs.syncID!;
    let rounds = 0;
    for (;;) {
      const page = await sync(`syncID="${syncID}" limit="2"`);
      assert.ok(page.reports.length <= 2);
      seen.push(...page.reports.map((r) => `${r.attrs.mode}:${r.attrs.UID}`));
      syncID = page.info.attrs.syncID!;
      rounds++;
      if (page.info.attrs.hasMore === undefined) break;
      assert.equal(page.info.attrs.hasMore, 'yes');
      assert.ok(rounds < 10);
    }
    assert.deepEqual(seen, ['added:5', 'added:6', 'added:7', 'added:8', 'added:9']);
    assert.equal(rounds, 3);
    await fails(u.client, '<mailboxSync folder="F" syncID="not-a-sync-id"/>');
  });

  test('mailboxSync with a limit smaller than one change (a batch of messages) still reports every message', async () => {
    const u = await newUser();
    await deliverRaw(server, u.address, 'INBOX', ['b1', 'b2', 'b3', 'b4', 'b5'].map((s) => textMail(s)));
    await open(u.client, 'F', 'INBOX', ['UID']);
    let syncID = '0';
    /** mailboxSync with limit="2" until hasMore is gone; the reports as mode:UID. */
    const syncAll = async (): Promise<string[]> => {
      const seen: string[] = [];
      for (let round = 0; ; round++) {
        assert.ok(round < 10, `mailboxSync still has more after ${round} rounds`);
        const reply = await ok(u.client, `<mailboxSync folder="F" syncID="${syncID}" limit="2"/>`);
        const info = reply.messages.at(-1)!;
        seen.push(...reply.messages.slice(0, -1).map((r) => `${r.attrs.mode}:${r.attrs.UID}`));
        syncID = info.attrs.syncID!;
        if (info.attrs.hasMore === undefined) return seen;
      }
    };
    assert.deepEqual((await syncAll()).sort(), ['added:1', 'added:2', 'added:3', 'added:4', 'added:5']);
    // The same for one flag change of five messages.
    await ok(u.client, '<messageMark folder="F" flags="Flagged"><UID from="1" till="5"/></messageMark>');
    assert.deepEqual((await syncAll()).sort(), ['flagsUpdated:1', 'flagsUpdated:2', 'flagsUpdated:3', 'flagsUpdated:4', 'flagsUpdated:5']);
  });

  test('readStatus messageStore grows with appends; MaxAccountSize 1K refuses a large append and stores nothing', async () => {
    const u = await newUser();
    const used = async (client: XimssClient): Promise<Record<string, string>> =>
      (await ok(client, '<readStatus/>')).messages[0]!.element('messageStore')!.attrs;
    assert.equal((await used(u.client)).used, '0');
    const first = textMail('size one', { body: 'x'.repeat(300) });
    await deliverRaw(server, u.address, 'INBOX', [first]);
    assert.equal((await used(u.client)).used, String(first.length));
    await ok(u.client, appendXml('targetMailbox="INBOX"', 'second'));
    const second = (await storedRaw(server, u.address, 'INBOX', 2))!;
    assert.equal((await used(u.client)).used, String(first.length + second.length));

    const small = await newUser({ settings: { MaxAccountSize: '1K' } });
    assert.equal((await used(small.client)).limit, '1024');
    await ok(small.client, appendXml('targetMailbox="INBOX"', 'fits', '', 'short'));
    const afterSmall = Number((await used(small.client)).used);
    assert.ok(afterSmall > 0 && afterSmall < 1024);
    await fails(small.client, appendXml('targetMailbox="INBOX"', 'too big', '', 'y'.repeat(2000)));
    assert.deepEqual(await storedUids(server, small.address, 'INBOX'), [1], 'nothing stored');
    assert.equal(Number((await used(small.client)).used), afterSmall);
    // Copies count too.
    await open(small.client, 'F', 'INBOX', ['UID']);
    await ok(small.client, appendXml('targetMailbox="INBOX"', 'second fits', '', 'z'.repeat(1024 - afterSmall - 300)));
    await fails(small.client, '<messageCopy folder="F" targetMailbox="Copies" mailboxClass=""><UID>1</UID><UID>2</UID></messageCopy>');
    assert.deepEqual(await storedUids(server, small.address, 'INBOX'), [1, 2]);
  });
});
