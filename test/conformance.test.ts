/**
 * Conformance: the spec's examples (../shared/spec/examples) replayed against a real
 * server, comparing element names, the order of messages and the attributes whose values
 * are defined (id, errorText, errorNum, names we chose to match), not random values
 * (urlID, times, challenges). Then: every operation of the spec's inventory that the server
 * does not implement answers errorNum="500" with an errorText, never a success.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';
import { cramMd5Context, cramMd5Digest } from '../src/services/passwords.js';
import type { Engine, OperationTable } from '../src/ximss/engine.js';
import { registerOperations } from '../src/ximss/ops/index.js';
import { Vocabulary } from '../src/ximss/vocabulary.js';
import { serialize, XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import {
  awaitNotifies,
  browseAll,
  deliverRaw,
  expectError,
  expectOk,
  FolderModel,
  hmacMd5Hex,
  loggedInClient,
  loginWithUrlId,
  postUpload,
  rfc822,
  startTestServer,
  storedRaw,
  storedUids,
  takeNotifies,
  XimssClient,
  type TestServer,
} from './helpers.js';

const SPEC = fileURLToPath(new URL('../../shared/spec/', import.meta.url));
const EXAMPLES = join(SPEC, 'examples');
const OPERATIONS_TSV = join(SPEC, 'ximss-operations.tsv');

const URL_ID = /^\d+-[A-Za-z0-9]{20}$/;
const TIME = /^\d{8}T\d{6}$/;
/** Attributes whose values the spec defines and we must reproduce exactly. */
const DEFINED = ['id', 'errorText', 'errorNum'];

interface Step {
  from: 'C' | 'S';
  xml: string;
}

/** The C:/S: lines of an example file; indented lines continue the previous message. */
function loadExample(name: string): Step[] {
  const steps: Step[] = [];
  for (const line of readFileSync(join(EXAMPLES, name), 'utf8').split('\n')) {
    // M: lines show the message a request stores (see loadStored).
    if (line.startsWith('#') || line.startsWith('M:') || line.trim() === '') continue;
    const m = /^([CS]):(.*)$/.exec(line);
    if (m) steps.push({ from: m[1] as 'C' | 'S', xml: m[2]!.trim() });
    else steps[steps.length - 1]!.xml += '\n' + line;
  }
  return steps;
}

/**
 * Skips a test whose part of the spec is not beside the checkout (a clone on its own); in
 * CI, where ../shared is always there, its absence is a failure, not a skip.
 */
function specMissing(t: TestContext, what: string): void {
  if (process.env.CI) assert.fail(`${what} (CI runs with ../shared beside the checkout)`);
  t.skip(what);
}

function haveExamples(t: TestContext, ...files: string[]): boolean {
  const missing = files.filter((f) => !existsSync(join(EXAMPLES, f)));
  if (missing.length > 0) specMissing(t, `spec examples not present: ${missing.join(', ')} (looked in ${EXAMPLES})`);
  return missing.length === 0;
}

/**
 * `actual` has the element name of `expected` and every attribute `expected` has; the
 * DEFINED ones (and those in `same`) with the same value. `extra` lists attributes the
 * spec defines for this message that the example happens not to show.
 */
function assertLike(actual: XmlElement | undefined, expected: XmlElement, options: { same?: string[]; extra?: string[] } = {}): void {
  assert.ok(actual, `expected <${expected.name}>, got nothing`);
  assert.equal(actual.name, expected.name);
  const same = [...DEFINED, ...(options.same ?? [])];
  for (const key of Object.keys(expected.attrs)) {
    assert.ok(key in actual.attrs, `<${actual.name}> lacks ${key}`);
    if (same.includes(key)) assert.equal(actual.attrs[key], expected.attrs[key], `<${actual.name}> ${key}`);
  }
  for (const key of Object.keys(actual.attrs)) {
    assert.ok(key in expected.attrs || (options.extra ?? []).includes(key), `<${actual.name}> has an unexpected ${key}`);
  }
}

/** Sends one request as written in the example and returns what came back up to its response. */
async function exchange(client: XimssClient, xml: string): Promise<{ messages: XmlElement[]; raw: string[] }> {
  const id = parseXml(xml).attrs.id!;
  const start = client.received.length;
  client.sendRaw(xml);
  const end = await client.until(() => {
    const i = client.received.findIndex((m, index) => index >= start && m.name === 'response' && m.attrs.id === id);
    return i >= 0 ? i + 1 : undefined;
  });
  return { messages: client.received.slice(start, end), raw: client.raw.slice(start, end) };
}

/** Splits an example into requests, each with the server messages that follow it. */
function turns(steps: Step[]): { request: string; replies: XmlElement[] }[] {
  const out: { request: string; replies: XmlElement[] }[] = [];
  for (const step of steps) {
    if (step.from === 'C') out.push({ request: step.xml, replies: [] });
    else out[out.length - 1]!.replies.push(parseXml(step.xml));
  }
  return out;
}

let server: TestServer;
before(async () => {
  server = await startTestServer();
  await server.addAccount('user1@example.dom', '123rtu', 'User J. Smith');
  await server.addAccount('user1@example2.dom', 'rrr123', 'User J. Smith');
  await server.addAccount('tim@example.test', 'tanstaaftanstaaf', 'Tim');
});
after(() => server.stop());

describe('spec examples', () => {
  test('001: noop and an unknown command, byte for byte', async (t) => {
    if (!haveExamples(t, '001-noop.txt')) return;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    for (const turn of turns(loadExample('001-noop.txt'))) {
      const { messages, raw } = await exchange(client, turn.request);
      assert.equal(messages.length, turn.replies.length, `replies to ${turn.request}`);
      turn.replies.forEach((expected, i) => {
        assertLike(messages[i], expected);
        // Nothing random in these responses: the compact serialization must match exactly.
        assert.equal(raw[i], serialize(expected));
      });
    }
    client.close();
  });

  test('002: asynchronous alerts around a synchronous noop', async (t) => {
    if (!haveExamples(t, '002-noop.txt')) return;
    const steps = loadExample('002-noop.txt');
    const expected = steps.filter((s) => s.from === 'S').map((s) => parseXml(s.xml));
    assert.deepEqual(expected.map((e) => e.name), ['alert', 'response', 'alert']);
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    const account = (await server.services.accounts.find('user1@example.dom'))!;
    const start = client.received.length;
    await server.services.alerts.post(account, expected[0]!.text());
    await client.until(() => client.received.length > start);
    const { messages } = await exchange(client, steps[0]!.xml);
    await server.services.alerts.post(account, expected[2]!.text());
    await client.until(() => client.received.length >= start + 3);
    const got = client.received.slice(start);
    assert.equal(got.length, 3);
    assert.equal(messages.at(-1), got[1]);
    got.forEach((message, i) => {
      assertLike(message, expected[i]!);
      if (message.name === 'alert') {
        assert.equal(message.text(), expected[i]!.text());
        assert.match(message.attrs.gmtTime!, TIME);
        assert.match(message.attrs.localTime!, TIME);
      }
    });
    client.close();
  });

  test('003: clear-text login', async (t) => {
    if (!haveExamples(t, '003-login.txt')) return;
    const [turn] = turns(loadExample('003-login.txt'));
    const client = await XimssClient.connect(server.ports.ximss);
    const { messages, raw } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    // The account was created with the example's name and real name: those must match too.
    assertLike(messages[0], turn!.replies[0]!, { same: ['userName', 'realName'], extra: ['version'] });
    assert.match(messages[0]!.attrs.urlID!, URL_ID);
    assert.match(messages[0]!.attrs.version!, /^\d+(\.\d+)+$/);
    assert.ok(raw[0]!.startsWith('<session id="A001" '), 'id comes first, as in the example');
    assertLike(messages[1], turn!.replies[1]!);
    assert.equal(raw[1], serialize(turn!.replies[1]!));
    client.close();
  });

  test('004: the session data message carries urlID, userName, realName and version', async (t) => {
    if (!haveExamples(t, '004-login.txt')) return;
    const [turn] = turns(loadExample('004-login.txt'));
    const client = await XimssClient.connect(server.ports.ximss);
    const { messages } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    assertLike(messages[0], turn!.replies[0]!, { same: ['realName'] });
    // The example logs in as user1@example2.dom and shows user1@example.dom (a slip in the
    // spec): the server reports the account actually authenticated.
    assert.equal(messages[0]!.attrs.userName, parseXml(turn!.request).attrs.authData);
    assert.match(messages[0]!.attrs.version!, /^\d+\.\d+\.\d+$/);
    assertLike(messages[1], turn!.replies[1]!);
    client.close();
  });

  test('005: CRAM-MD5 login with a challenge (RFC 2195)', async (t) => {
    if (!haveExamples(t, '005-login.txt')) return;
    const steps = loadExample('005-login.txt');
    assert.deepEqual(steps.map((s) => s.from), ['C', 'S', 'C', 'S', 'S']);
    const [login, challengeExample, authExample, sessionExample, responseExample] = steps.map((s) => parseXml(s.xml)) as XmlElement[];

    // The example is the RFC 2195 one: check our HMAC-MD5 (client side here, and the
    // server's precomputed-context implementation) against it.
    const rfcChallenge = Buffer.from(challengeExample!.attrs.value!, 'base64').toString('utf8');
    const rfcAnswer = Buffer.from(authExample!.attrs.value!, 'base64').toString('utf8');
    assert.equal(rfcAnswer, `tim ${hmacMd5Hex('tanstaaftanstaaf', rfcChallenge)}`);
    assert.equal(rfcAnswer, `tim ${cramMd5Digest(cramMd5Context('tanstaaftanstaaf'), rfcChallenge)}`);

    // Our challenge is random, so the answer is computed the same way for it.
    const client = await XimssClient.connect(server.ports.ximss);
    const start = client.received.length;
    client.sendRaw(steps[0]!.xml);
    const challenge = await client.until(() => client.received[start]);
    assertLike(challenge, challengeExample!);
    const text = Buffer.from(challenge.attrs.value!, 'base64').toString('utf8');
    assert.match(text, /^<.+@.+>$/);
    const auth = new XmlElement('auth', {
      id: authExample!.attrs.id,
      value: Buffer.from(`tim ${hmacMd5Hex('tanstaaftanstaaf', text)}`).toString('base64'),
    });
    assert.equal(auth.attrs.id, login!.attrs.id, 'auth reuses the login id');
    const { messages } = await exchange(client, auth.toString());
    assert.equal(messages.length, 2);
    assertLike(messages[0], sessionExample!, { extra: ['version'] });
    assert.equal(messages[0]!.attrs.userName, 'tim@example.test');
    assert.equal(messages[0]!.attrs.realName, 'Tim');
    assertLike(messages[1], responseExample!);
    assert.equal(client.received.length, start + 3, 'challenge, session, response: nothing else');
    client.close();
  });

  test('006: readStrings answers a strings message in the example shape', async (t) => {
    if (!haveExamples(t, '006-readStrings.txt')) return;
    const [turn] = turns(loadExample('006-readStrings.txt'));
    const expected = turn!.replies[0]!;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    const { messages } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    const strings = messages[0]!;
    assertLike(strings, expected, { same: ['language'], extra: ['skinName', 'timeModified'] });
    assertLike(messages[1], turn!.replies[1]!);
    // Every entry of the example that the server's vocabulary has takes the example's form.
    const byName = new Map(strings.elements().map((e) => [e.attrs.name, e]));
    for (const entry of expected.elements()) {
      const ours = byName.get(entry.attrs.name);
      if (!ours) continue;
      assert.equal(ours.name, entry.name, `${entry.attrs.name} is a <${entry.name}>`);
      if (entry.name === 'string') assert.equal(ours.text(), entry.text());
      else {
        const named = entry.elements('string').every((s) => s.attrs.name !== undefined);
        for (const item of ours.elements()) {
          assert.equal(item.name, 'string');
          assert.equal(item.attrs.name !== undefined, named, `${entry.attrs.name}: dictionary items are named, array items are not`);
        }
      }
    }
    assert.ok(byName.has('AppendButton'), 'the example entries are in the English vocabulary');
    client.close();
  });

  test('006: the vocabulary of the example is served exactly as the example shows it', async (t) => {
    if (!haveExamples(t, '006-readStrings.txt')) return;
    const [turn] = turns(loadExample('006-readStrings.txt'));
    const expected = turn!.replies[0]!;
    const dir = mkdtempSync(join(tmpdir(), 'ximssd-vocab-'));
    try {
      writeFileSync(
        join(dir, 'English.json'),
        JSON.stringify({
          AppendButton: 'Append',
          AppendModes: { simple: 'Simple Mode', advanced: 'Advanced Mode' },
          KnownFields: ['From', 'Subject'],
        }),
      );
      const body = new Vocabulary(dir).body('english');
      assert.equal(body.map((e) => e.toString()).join(''), expected.children.map((c) => serialize(c)).join(''));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('045: exeTime in the response when the request asks for it', async (t) => {
    if (!haveExamples(t, '045-noop.txt')) return;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    for (const turn of turns(loadExample('045-noop.txt'))) {
      const { messages, raw } = await exchange(client, turn.request);
      assert.equal(messages.length, turn.replies.length);
      turn.replies.forEach((expected, i) => {
        assertLike(messages[i], expected);
        if ('exeTime' in expected.attrs) {
          assert.match(messages[i]!.attrs.exeTime!, /^\d+$/);
          assert.ok(Number(messages[i]!.attrs.exeTime) < 5000);
        } else {
          assert.equal(raw[i], serialize(expected));
        }
      });
    }
    client.close();
  });
});

/** Every operation name the server registers. */
function registeredOperations(): Set<string> {
  const names = new Set<string>();
  registerOperations({ register: (table: OperationTable) => Object.keys(table).forEach((n) => names.add(n)) } as unknown as Engine);
  return names;
}

describe('operations of the spec inventory', () => {
  function inventory(t: TestContext): string[] | undefined {
    if (!existsSync(OPERATIONS_TSV)) {
      specMissing(t, `${OPERATIONS_TSV} is not present`);
      return undefined;
    }
    const [header, ...rows] = readFileSync(OPERATIONS_TSV, 'utf8').split('\n').filter((l) => l.trim() !== '');
    assert.equal(header!.split('\t')[0], 'op');
    return rows.map((r) => r.split('\t')[0]!);
  }

  test('every spec operation is known to the server (test/inventory.test.ts checks that each does its work)', (t) => {
    const ops = inventory(t);
    if (!ops) return;
    const registered = registeredOperations();
    assert.deepEqual(
      ops.filter((op) => !registered.has(op)),
      [],
      'operations answered only as "unknown command"',
    );
  });
});

// ---------------------------------------------------------------------------------------
// Mail examples (Mailbox Management, Mailbox Operations, Message Operations, S/MIME reads,
// folderSearch). Numbers the spec made up (UIDs, counts, boundaries) are mapped to the
// ones of the mailboxes built here; everything else is compared as the examples show it.

/** The M: lines of an example: the message a request stores. */
function loadStored(name: string): string[] {
  return readFileSync(join(EXAMPLES, name), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('M:'))
    .map((l) => l.slice(2));
}

/** The header lines of a stored message or of its parts, unfolded. */
function storedHeaderLines(raw: Buffer): string[] {
  return raw
    .toString('utf8')
    .replace(/\r\n[ \t]+/g, ' ')
    .split('\r\n')
    .filter((l) => /^[A-Za-z][A-Za-z0-9-]*: /.test(l));
}

/** Example text with its UIDs replaced by ours. */
function mapUids(xml: string, uids: Record<string, number>): string {
  return xml.replace(/\b(UID|replacesUID)="(\d+)"/g, (all, name: string, uid: string) => (uid in uids ? `${name}="${uids[uid]}"` : all)).replace(/<UID>(\d+)<\/UID>/g, (all, uid: string) => (uid in uids ? `<UID>${uids[uid]}</UID>` : all));
}

function flagList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .filter((f) => f !== '')
    .map((f) => (f === 'Drafts' ? 'Draft' : f))
    .sort();
}

/** A folderReport with viewer fields compared as the example shows them (FLAGS as a set). */
function assertReportLike(actual: XmlElement | undefined, expected: XmlElement, uids: Record<string, number>, options: { sameIndex?: boolean } = {}): void {
  assertLike(actual, expected, { same: options.sameIndex === false ? ['folder'] : ['folder', 'index'] });
  if (expected.attrs.UID !== undefined) assert.equal(actual!.attrs.UID, String(uids[expected.attrs.UID] ?? expected.attrs.UID), 'UID');
  assert.deepEqual(actual!.elements().map((e) => e.name), expected.elements().map((e) => e.name));
  for (const field of expected.elements()) {
    const mine = actual!.element(field.name)!;
    if (field.name === 'FLAGS') assert.deepEqual(flagList(mine.text()), flagList(field.text()), `FLAGS of UID ${actual!.attrs.UID}`);
    else assert.equal(mine.text(), field.text(), `${field.name} of UID ${actual!.attrs.UID}`);
  }
}

/** Sends an example request and collects what follows up to its response (async messages included). */
async function replay(client: XimssClient, xml: string): Promise<{ withId: XmlElement[]; async: XmlElement[]; response: XmlElement }> {
  const { messages } = await exchange(client, xml);
  const response = messages.at(-1)!;
  return { withId: messages.slice(0, -1).filter((m) => m.attrs.id !== undefined), async: messages.filter((m) => m.attrs.id === undefined), response };
}

/** The response line of an example turn (async messages may follow it). */
function responseOf(turn: { replies: XmlElement[] }): XmlElement {
  const response = turn.replies.find((r) => r.name === 'response');
  assert.ok(response, 'the example turn has a response');
  return response;
}

function assertResponse(actual: XmlElement, expected: XmlElement): void {
  assertLike(actual, expected);
  assert.equal(actual.toString(), serialize(expected), 'a success is exactly <response id="X"/>');
}

describe('spec examples: mail', () => {
  const MAILER = 'mailer@example.dom';
  const when = (n: number): number => Date.UTC(2008, 0, 1) + n * 60_000;

  test('008: mailboxCreate, mailboxRename, mailboxACLUpdate (replace, add, sub), mailboxACLList', async (t) => {
    if (!haveExamples(t, '008-mailboxCreate.txt')) return;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    for (const turn of turns(loadExample('008-mailboxCreate.txt'))) {
      const { messages, raw } = await exchange(client, turn.request);
      assert.equal(messages.length, turn.replies.length, turn.request);
      turn.replies.forEach((expected, i) => {
        assertLike(messages[i], expected, { same: ['mailbox'] });
        if (expected.name === 'response') assert.equal(raw[i], serialize(expected));
        else {
          const got = messages[i]!.elements('aclElem').map((e) => [e.attrs.pattern, e.text()]);
          assert.deepEqual(got, expected.elements('aclElem').map((e) => [e.attrs.pattern, e.text()]));
        }
      });
    }
    const list = (await client.request('<mailboxList filter="SharedNotes"/>')).messages;
    assert.equal(list[0]?.attrs.CLASS, 'IPF.StickyNote', 'the class survived the rename');
    client.close();
  });

  describe('009, 010, 011: a folder, its notifications and folderSync', () => {
    let client: XimssClient;
    let model: FolderModel;
    // The example's UIDs, mapped to the messages built below.
    const uids: Record<string, number> = { '123': 1, '543': 2, '343': 3, '512': 4 };

    before(async () => {
      await server.addAccount(MAILER, 'mail-pass', 'Mailer');
      const account = (await server.services.accounts.find(MAILER))!;
      // The example shows a Deleted message in the folder: the account's DeleteMode is Mark.
      await server.services.accounts.updatePrefs(account, { DeleteMode: 'Mark' });
      const first = [
        { from: '"John H. Smith" <john@example.com>', subject: 'Hello - just a test', flags: 'Seen,Deleted' },
        { from: '"Jim Spammer" <jim@spam.example>', subject: 'This is the best offer!', flags: 'Seen,Answered' },
        { from: 'user@example.com', subject: 'Meeting reminder', flags: 'Seen,Media' },
        { from: 'Admin@hq.example.com', subject: 'Shutdown @ 4:45AM', flags: 'Seen,Flagged' },
      ];
      const messages = first.map((m, i) => ({ raw: rfc822([['From', m.from], ['Subject', m.subject]], 'x\n'), flags: m.flags, internalDate: when(10 * i) }));
      for (let i = 4; i < 40; i++) {
        // Index 29 and the last one are Deleted already (the example's 446 and 756); some are unseen.
        const flags = i === 29 || i === 39 ? 'Seen,Deleted' : i % 4 === 0 ? '' : 'Seen';
        messages.push({ raw: rfc822([['From', `filler${i}@example.com`], ['Subject', `filler ${i}`]], 'x\n'), flags, internalDate: when(10 * i) });
      }
      assert.deepEqual(await deliverRaw(server, MAILER, 'INBOX', messages), Array.from({ length: 40 }, (_, i) => i + 1));
      uids['117'] = 36;
      uids['446'] = 30;
      uids['756'] = 40;
      client = await loggedInClient(server.ports.ximss, MAILER, 'mail-pass');
    });
    after(() => client.close());

    test('009: folderOpen, folderBrowse, notify, the unsynced view, folderSync, the synced view', async (t) => {
      if (!haveExamples(t, '009-folderOpen.txt')) return;
      const [open, browse1, browse2, sync, browse3] = turns(loadExample('009-folderOpen.txt'));
      let got = await replay(client, open!.request);
      assert.equal(got.withId.length, 1);
      assertLike(got.withId[0], open!.replies[0]!, { same: ['folder', 'mode'], extra: ['UIDValidity', 'UIDNext'] });
      assert.equal(got.withId[0]!.attrs.messages, '40');
      assert.equal(got.withId[0]!.attrs.unseen, '9');
      assertResponse(got.response, open!.replies[1]!);
      model = await FolderModel.load(client, 'INBOX', { ordered: false });

      got = await replay(client, browse1!.request);
      const expectedRows = browse1!.replies.filter((r) => r.name === 'folderReport' && r.attrs.id !== undefined);
      assert.equal(got.withId.length, 4);
      got.withId.forEach((m, i) => assertReportLike(m, expectedRows[i]!, uids));
      assertResponse(got.response, responseOf(browse1!));

      // "Meanwhile": another client expunges 343 and 117 and a new message (the example's 976) arrives.
      const other = await loggedInClient(server.ports.ximss, MAILER, 'mail-pass');
      await other.request('<folderOpen id="o" folder="x" mailbox="INBOX"><field>UID</field></folderOpen>');
      await other.request('<messageRemove id="r" folder="x" mode="Immediately"><UID>3</UID><UID>36</UID></messageRemove>');
      other.close();
      const [added] = await deliverRaw(server, MAILER, 'INBOX', [
        { raw: rfc822([['From', '"CGatePro Discussions" <cgatepro@example.com>'], ['Subject', '[CGP] Re: Session Timer?']], 'x\n'), flags: 'Recent', internalDate: when(5) },
      ]);
      uids['976'] = added!;
      const notify = await client.nextAsync('folderReport');
      assertLike(notify, parseXml('<folderReport folder="INBOX" mode="notify" />'), { same: ['folder', 'mode'] });

      got = await replay(client, browse2!.request);
      const unsynced = browse2!.replies.filter((r) => r.attrs.id !== undefined && r.name === 'folderReport');
      got.withId.forEach((m, i) => assertReportLike(m, unsynced[i]!, uids));
      assert.equal(got.withId[2]!.element('From')!.text(), '', 'a removed message not yet synced: empty fields');

      got = await replay(client, sync!.request);
      const expectedSync = sync!.replies.filter((r) => r.name === 'folderReport');
      assert.equal(got.withId.length, expectedSync.length);
      for (const expected of expectedSync) {
        const mine = got.withId.find((m) => m.attrs.UID === String(uids[expected.attrs.UID!]));
        assert.ok(mine, `a report for the example's UID ${expected.attrs.UID}`);
        // The spec text calls removals "removed"; the example writes "deleted".
        assert.equal(mine.attrs.mode, expected.attrs.mode === 'deleted' ? 'removed' : expected.attrs.mode);
        assertLike(mine, expected, { same: ['folder'] });
        if (expected.attrs.mode === 'added') assertReportLike(mine, expected, uids);
      }
      model.apply(got.withId);
      assert.deepEqual(model.rows, await browseAll(client, 'INBOX'));
      assertResponse(got.response, responseOf(sync!));

      got = await replay(client, browse3!.request);
      assert.equal(got.withId.length, 4);
      got.withId.forEach((m, i) => assertReportLike(m, browse3!.replies[i]!, uids));
      assertResponse(got.response, responseOf(browse3!));
    });

    test('010: messageCopy to a mailbox open as a folder notifies that folder', async (t) => {
      if (!haveExamples(t, '010-messageCopy.txt')) return;
      const [turn] = turns(loadExample('010-messageCopy.txt'));
      await exchange(client, '<folderOpen id="arch" folder="Archive" mailbox="Archive" mailboxClass=""><field>UID</field></folderOpen>');
      const got = await replay(client, mapUids(turn!.request, uids));
      assertResponse(got.response, responseOf(turn!));
      const notify = got.async.find((m) => m.attrs.folder === 'Archive') ?? (await client.nextAsync('folderReport'));
      assertLike(notify, turn!.replies[0]!, { same: ['folder', 'mode'] });
      assert.deepEqual(await storedUids(server, MAILER, 'Archive'), [1, 2, 3]);
    });

    test('011: messageMark Deleted -> updated reports; folderExpunge -> removed reports; closeMailbox', async (t) => {
      if (!haveExamples(t, '011-messageMark.txt')) return;
      const [mark, sync1, expunge, sync2, close] = turns(loadExample('011-messageMark.txt'));
      const unseenBefore = model.unseen();
      let got = await replay(client, mapUids(mark!.request, uids));
      assertResponse(got.response, responseOf(mark!));
      const notify = got.async.find((m) => m.attrs.folder === 'INBOX') ?? (await client.nextAsync('folderReport'));
      assertLike(notify, mark!.replies[0]!, { same: ['folder', 'mode'] });

      got = await replay(client, sync1!.request);
      const expected1 = sync1!.replies.filter((r) => r.name === 'folderReport');
      // 123 was Deleted already: only 976 and 512 change, at indexes 1 and 3 as in the example.
      assert.equal(got.withId.length, expected1.length);
      got.withId.forEach((m, i) => {
        assertReportLike(m, expected1[i]!, uids);
        assert.equal(m.attrs.mode, 'updated');
        assert.equal(m.attrs.unseen, String(unseenBefore), 'Deleted does not change unseen');
      });
      model.apply(got.withId);
      assertResponse(got.response, responseOf(sync1!));

      takeNotifies(client, 'INBOX');
      got = await replay(client, expunge!.request);
      assertResponse(got.response, responseOf(expunge!));
      assert.equal(await awaitNotifies(client, 'INBOX', 20), 1, 'one notify for the expunge');

      got = await replay(client, sync2!.request);
      const expected2 = sync2!.replies.filter((r) => r.name === 'folderReport');
      assert.equal(got.withId.length, expected2.length);
      const byUid = new Map(got.withId.map((m) => [m.attrs.UID, m]));
      for (const expected of expected2) {
        const mine = byUid.get(String(uids[expected.attrs.UID!]));
        assert.ok(mine, `removal of the example's ${expected.attrs.UID}`);
        assert.equal(mine.attrs.mode, 'removed');
        assertLike(mine, expected, { same: ['folder'] });
      }
      assert.deepEqual(got.withId.map((m) => m.attrs.messages), ['38', '37', '36', '35', '34']);
      model.apply(got.withId);
      assert.deepEqual(model.rows, await browseAll(client, 'INBOX'));
      assertResponse(got.response, responseOf(sync2!));

      got = await replay(client, close!.request);
      assertResponse(got.response, responseOf(close!));
      expectError(await client.request('<folderSync folder="INBOX"/>'), 'folder has not been opened');
    });
  });

  describe('012-017: messageAppend', () => {
    const APPENDER = 'appender@example.dom';
    let client: XimssClient;
    let urlID: string;

    before(async () => {
      await server.addAccount(APPENDER, 'app-pass', 'Appender');
      ({ client, urlID } = await loginWithUrlId(server.ports.ximss, APPENDER, 'app-pass'));
    });
    after(() => client.close());

    test('012: a plain text message appended to Sent (created) is stored as the example shows it', async (t) => {
      if (!haveExamples(t, '012-messageAppend.txt')) return;
      const [turn] = turns(loadExample('012-messageAppend.txt'));
      const got = await replay(client, turn!.request);
      assert.deepEqual(got.withId, []);
      assertResponse(got.response, turn!.replies[0]!);
      const raw = (await storedRaw(server, APPENDER, 'Sent', 1))!;
      const stored = loadStored('012-messageAppend.txt');
      const blank = stored.indexOf('');
      const lines = storedHeaderLines(raw);
      for (const line of stored.slice(0, blank)) assert.ok(lines.includes(line), `stored: ${line} (have: ${lines.join(' | ')})`);
      const body = raw.toString('utf8').split('\r\n\r\n').slice(1).join('\r\n\r\n');
      assert.equal(body.replace(/\r\n$/, ''), stored.slice(blank + 1).join('\r\n'));
    });

    test('013: uploaded attachments, replacesUID, report="uid", clearUploaded, folderSync', async (t) => {
      if (!haveExamples(t, '013-messageAppend.txt')) return;
      const [append, clear, sync] = turns(loadExample('013-messageAppend.txt'));
      await postUpload(server, { client, urlID }, 'att01', Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1'), 'test.gif', 'image/gif');
      await postUpload(server, { client, urlID }, 'att02', Buffer.from('%PDF-1.2 sample'), 'sample.pdf', 'application/octet-stream');
      const drafts = await deliverRaw(server, APPENDER, 'Drafts', [
        { raw: rfc822([['From', '"Sender Name" <fromName@domain>'], ['Subject', 'draft v1']], 'x\n'), flags: 'Draft,Seen' },
        { raw: rfc822([['From', 'someone@domain'], ['Subject', 'another draft']], 'x\n'), flags: 'Draft,Seen' },
      ]);
      const uids: Record<string, number> = { '578': drafts[0]! };
      await exchange(client, '<folderOpen id="d" folder="Drafts" mailbox="Drafts"><field>FLAGS</field><field>From</field></folderOpen>');
      const model = await FolderModel.load(client, 'Drafts', { ordered: false });

      // "A different process added some other message" while the client was appending.
      const start = client.received.length;
      const [other] = await deliverRaw(server, APPENDER, 'Drafts', [{ raw: rfc822([['From', '"Other Name" <other@domain>'], ['Subject', 'other']], 'x\n'), flags: 'Draft,Recent' }]);
      uids['755'] = other!;
      uids['756'] = other! + 1;
      const got = await replay(client, mapUids(append!.request, uids));
      const seen = client.received.slice(start);
      assert.deepEqual(seen.map((m) => m.name), ['folderReport', 'messageAdded', 'response'], 'notify, messageAdded, response');
      assertLike(seen[0], append!.replies[0]!, { same: ['folder', 'mode'] });
      assertLike(got.withId[0], append!.replies[1]!, { same: ['folder'] });
      assert.equal(got.withId[0]!.attrs.UID, String(uids['756']));
      assertResponse(got.response, append!.replies[2]!);

      assertResponse((await replay(client, clear!.request)).response, clear!.replies[0]!);
      expectError(await client.request('<listUploaded uploadID="att01"/>'));

      const synced = await replay(client, sync!.request);
      const expectedSync = sync!.replies.filter((r) => r.name === 'folderReport');
      assert.equal(synced.withId.length, expectedSync.length);
      for (const expected of expectedSync) {
        const mine = synced.withId.find((m) => m.attrs.UID === String(uids[expected.attrs.UID!]))!;
        assert.ok(mine, `a report for ${expected.attrs.UID}`);
        assert.equal(mine.attrs.mode, expected.attrs.mode);
        assertLike(mine, expected, { same: ['folder'] });
        if (expected.attrs.mode === 'added') assertReportLike(mine, expected, uids, { sameIndex: false });
      }
      model.apply(synced.withId);
      assert.deepEqual(model.rows, await browseAll(client, 'Drafts'));
      assertResponse(synced.response, responseOf(sync!));

      // The stored message: its header fields and the Content-* fields of every part, in order.
      const raw = (await storedRaw(server, APPENDER, 'Drafts', uids['756']!))!;
      const lines = storedHeaderLines(raw);
      const stored = loadStored('013-messageAppend.txt');
      const mask = (l: string): string => l.replace(/boundary="[^"]*"/, 'boundary=*');
      for (const line of stored.slice(0, stored.indexOf(''))) {
        if (!line.startsWith('Content-')) assert.ok(lines.includes(line), `stored: ${line}`);
      }
      assert.deepEqual(
        lines.filter((l) => l.startsWith('Content-')).map(mask),
        stored.filter((l) => l.startsWith('Content-')).map(mask),
      );
      assert.deepEqual(await storedUids(server, APPENDER, 'Drafts'), [drafts[1]!, uids['755']!, uids['756']!]);
    });

    test('014: copyMIME parts 3 and 4 of a message in an open folder', async (t) => {
      if (!haveExamples(t, '014-messageAppend.txt')) return;
      const [turn] = turns(loadExample('014-messageAppend.txt'));
      const parts = ['text/plain', 'text/plain', 'image/jpeg', 'image/png'].map((type, i) =>
        [`--b`, `Content-Type: ${type}${type.startsWith('image') ? `; name="shot${i}.${type.slice(6)}"` : ''}`, `Content-Disposition: ${type.startsWith('image') ? `attachment; filename="shot${i}.${type.slice(6)}"` : 'inline'}`, 'Content-Transfer-Encoding: base64', '', Buffer.from(`part ${i + 1} data`).toString('base64'), ''].join('\r\n'),
      );
      const source = Buffer.from(`From: diver@example.com\r\nSubject: Underwater\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n${parts.join('')}--b--\r\n`);
      const [uid] = await deliverRaw(server, APPENDER, 'INBOX', [source]);
      await exchange(client, '<folderOpen id="i" folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>');
      await exchange(client, '<mailboxCreate id="n" mailbox="Notes"/>');
      const got = await replay(client, mapUids(turn!.request, { '156': uid! }));
      assertResponse(got.response, turn!.replies[0]!);
      const [note] = await storedUids(server, APPENDER, 'Notes');
      await exchange(client, '<folderOpen id="no" folder="Notes" mailbox="Notes"><field>UID</field></folderOpen>');
      const { messages } = await exchange(client, `<folderRead id="r" folder="Notes" UID="${note}"/>`);
      const top = messages[0]!.element('EMail')!.element('MIME')!;
      assert.deepEqual(
        top.elements('MIME').map((m) => [m.attrs.partID, `${m.attrs.type}/${m.attrs.subtype}`, m.attrs['Disposition-filename']]),
        [
          ['01', 'text/plain', undefined],
          ['02', 'image/jpeg', 'shot2.jpeg'],
          ['03', 'image/png', 'shot3.png'],
        ],
      );
      const body = async (part: string): Promise<string> =>
        (await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/MIME/Notes/${note}-${part}-B.bin`)).text();
      assert.equal(await body('02'), 'part 3 data');
      assert.equal(await body('03'), 'part 4 data');
    });

    test('015: a File Storage file becomes the attachment (refused, storing nothing, while the file is missing)', async (t) => {
      if (!haveExamples(t, '015-messageAppend.txt')) return;
      const [turn] = turns(loadExample('015-messageAppend.txt'));
      const before = await storedUids(server, APPENDER, 'Notes');
      const missing = await replay(client, turn!.request);
      assert.equal(missing.response.attrs.errorText, 'file is not found');
      assert.equal(missing.response.attrs.errorNum, '500');
      assert.deepEqual(await storedUids(server, APPENDER, 'Notes'), before);

      const photo = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0xff, 0xd9]);
      await exchange(client, '<fileDirCreate id="d" fileName="private"/>');
      const written = await replay(client, `<fileWrite id="w" fileName="private/MyFile.jpg" type="binary"><base64>${photo.toString('base64')}</base64></fileWrite>`);
      assert.equal(written.response.attrs.errorText, undefined);
      const got = await replay(client, turn!.request);
      assertResponse(got.response, turn!.replies[0]!);
      const uid = (await storedUids(server, APPENDER, 'Notes')).find((u) => !before.includes(u))!;
      await exchange(client, '<folderOpen id="o15" folder="Notes15" mailbox="Notes"><field>UID</field></folderOpen>');
      const { messages } = await exchange(client, `<folderRead id="r15" folder="Notes15" UID="${uid}"/>`);
      const parts = messages[0]!.element('EMail')!.element('MIME')!.elements('MIME');
      const jpeg = parts.find((m) => m.attrs.type === 'image' && m.attrs.subtype === 'jpeg');
      assert.ok(jpeg, 'the jpeg part is stored');
      assert.equal(jpeg.attrs['Disposition-filename'], 'photo.jpg');
      const body = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/MIME/Notes15/${uid}-${jpeg.attrs.partID}-B.jpg`);
      assert.deepEqual(Buffer.from(await body.arrayBuffer()), photo);
      await exchange(client, '<folderClose id="c15" folder="Notes15"/>');
    });

    test('016: format="flowed" is stored as the example shows it, byte for byte', async (t) => {
      if (!haveExamples(t, '016-messageAppend.txt')) return;
      const [turn] = turns(loadExample('016-messageAppend.txt'));
      const before = await storedUids(server, APPENDER, 'Notes');
      const got = await replay(client, turn!.request);
      assertResponse(got.response, turn!.replies[0]!);
      const uid = (await storedUids(server, APPENDER, 'Notes')).find((u) => !before.includes(u))!;
      const raw = (await storedRaw(server, APPENDER, 'Notes', uid))!;
      // The example notes "there is a trailing space after the superlong word" (a soft break).
      assert.match(readFileSync(join(EXAMPLES, '016-messageAppend.txt'), 'utf8'), /trailing space after the "superlong" word/);
      const stored = loadStored('016-messageAppend.txt').map((l) => (l.endsWith(' superlong') ? l + ' ' : l));
      const blank = stored.indexOf('');
      assert.deepEqual([...storedHeaderLines(raw)].sort(), stored.slice(0, blank).sort());
      assert.equal(raw.toString('utf8').split('\r\n\r\n')[1]!.replace(/\r\n$/, ''), stored.slice(blank + 1).join('\r\n'));
    });

    test('017: a signed message: refused (nothing stored) without an unlocked S/MIME key; with one, stored signed as the example shows (SHA-256 for SHA1), and openssl verifies it', async (t) => {
      if (!haveExamples(t, '017-messageAppend.txt')) return;
      const [turn] = turns(loadExample('017-messageAppend.txt'));
      const before: number[] = await storedUids(server, APPENDER, 'Sent').catch(() => []);
      const got = await replay(client, turn!.request);
      assert.match(got.response.attrs.errorText ?? '', /S\/MIME Private Key is locked/);
      assert.equal(got.response.attrs.errorNum, '500');
      assert.deepEqual(await storedUids(server, APPENDER, 'Sent').catch(() => []), before);

      expectOk(await client.request('<SMIMESet mode="new" password="smime-password"/>', 20_000));
      assertResponse((await replay(client, turn!.request)).response, turn!.replies[0]!);
      const added = (await storedUids(server, APPENDER, 'Sent')).filter((u) => !before.includes(u));
      assert.equal(added.length, 1);
      const raw = (await storedRaw(server, APPENDER, 'Sent', added[0]!))!;
      const expected = loadStored('017-messageAppend.txt');
      const lines = storedHeaderLines(raw);
      for (const field of expected.slice(0, 4)) assert.ok(lines.includes(field), `${field} is stored`);
      assert.ok(lines.some((l) => /^Content-Type: multipart\/signed; protocol="application\/pkcs7-signature"; micalg=sha-256;/.test(l)));
      const text = raw.toString('utf8');
      assert.ok(text.includes('\r\nThis is a signed S/MIME message\r\n'));
      assert.ok(text.includes('Content-Type: application/pkcs7-signature; name="smime.p7s"'));
      assert.ok(text.includes('Content-Disposition: attachment; filename="smime.p7s"'));
      const verified = execFileSync('openssl', ['smime', '-verify', '-noverify'], { input: raw, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
      assert.match(verified, /Dear Susan,\r?\n\r?\nI will come to your place tomorrow, thank you for the invitation!\r?\nMary\./);
    });
  });

  describe('022, 023: folderRead of signed and encrypted messages (the examples carry no real signature or key: shown as structure)', () => {
    const READER = 'reader@example.dom';
    let client: XimssClient;
    const headers: [string, string][] = [
      ['Return-Path', '<fromName@domain>'],
      ['From', '"Sender Name" <fromName@domain>'],
      ['Subject', "Re: I'll be there!"],
      ['To', '"Recipient Name" <a1@domain>'],
      ['X-Mailer', 'SuperClient v7.77'],
      ['Date', 'Thu, 30 Aug 2007 11:43:18 -0700'],
      ['Message-ID', '<web-40721383@domain.dom>'],
      ['MIME-Version', '1.0'],
    ];
    const uids: Record<string, number> = {};

    before(async () => {
      await server.addAccount(READER, 'read-pass');
      // The example's localTime is GMT+2 in August.
      await server.services.accounts.updatePrefs((await server.services.accounts.find(READER))!, { TimeZone: 'Europe/Berlin' });
      const signed = rfc822(
        [...headers, ['Content-Type', 'multipart/signed; protocol="application/x-pkcs7-signature"; micalg="SHA1"; boundary="sig"']],
        [
          'This is a signed S/MIME message',
          '',
          '--sig',
          'Content-Type: multipart/mixed; boundary="mix"',
          '',
          '--mix',
          'Content-Type: text/plain; charset="utf-8"',
          'Content-Transfer-Encoding: 8bit',
          '',
          'Dear Susan,',
          '',
          'Attached please find a file I received this morning...',
          'Mary.',
          '',
          '--mix',
          'Content-Type: image/gif; name="logo.gif"',
          'Content-Disposition: attachment; filename="logo.gif"',
          'Content-Transfer-Encoding: base64',
          '',
          'R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7',
          '--mix--',
          '',
          '--sig',
          'Content-Type: application/x-pkcs7-signature; name="smime.p7s"',
          'Content-Transfer-Encoding: base64',
          'Content-Disposition: attachment; filename="smime.p7s"',
          '',
          'MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUA',
          '--sig--',
          '',
        ].join('\n'),
      );
      const encrypted = rfc822(
        [
          ...headers,
          ['Content-Type', 'application/x-pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'],
          ['Content-Transfer-Encoding', 'base64'],
          ['Content-Disposition', 'attachment; filename="smime.p7m"'],
        ],
        'MIAGCSqGSIb3DQEHA6CAMIACAQAxggFAMIIBPAIBADCBpDCBnjELMAkGA1UEBhMCVVMx\n',
      );
      const [a, b] = await deliverRaw(server, READER, 'INBOX', [signed, encrypted]);
      uids.signed = a!;
      uids.encrypted = b!;
      client = await loggedInClient(server.ports.ximss, READER, 'read-pass');
      await exchange(client, '<folderOpen id="o" folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>');
    });
    after(() => client.close());

    /** The example's header elements (they are the same in both examples). */
    function assertHeaderElements(email: XmlElement): void {
      const fields = email.elements().filter((e) => e.name !== 'MIME');
      assert.deepEqual(fields.map((e) => e.name), ['Return-Path', 'From', 'Subject', 'To', 'X-Mailer', 'Date', 'Message-ID']);
      assert.equal(fields[0]!.toString(), '<Return-Path>fromName@domain</Return-Path>');
      assert.deepEqual([fields[1]!.attrs, fields[1]!.text()], [{ realName: 'Sender Name' }, 'fromName@domain']);
      assert.equal(fields[2]!.text(), "Re: I'll be there!");
      assert.deepEqual([fields[3]!.attrs, fields[3]!.text()], [{ realName: 'Recipient Name' }, 'a1@domain']);
      assert.equal(fields[4]!.text(), 'SuperClient v7.77');
      assert.equal(fields[5]!.text(), '20070830T184318Z');
      assert.deepEqual(Object.keys(fields[5]!.attrs).sort(), ['localTime', 'timeShift']);
      assert.equal(fields[5]!.attrs.localTime, '20070830T204318');
      assert.equal(fields[5]!.attrs.timeShift, '-25200');
      assert.match(fields[6]!.text(), /^<?web-40721383@domain\.dom>?$/);
    }

    test('022: a signed message: headers, the multipart/signed structure, partIDs 01, 01-01, 01-02', async (t) => {
      if (!haveExamples(t, '022-folderRead.txt')) return;
      const [request] = loadExample('022-folderRead.txt').filter((s) => s.from === 'C');
      const { messages } = await exchange(client, mapUids(request!.xml, { '55': uids.signed! }));
      assert.deepEqual(messages.map((m) => m.name), ['folderMessage', 'response']);
      const message = messages[0]!;
      assert.deepEqual([message.attrs.id, message.attrs.folder, message.attrs.UID], ['A001', 'INBOX', String(uids.signed)]);
      const email = message.element('EMail')!;
      assertHeaderElements(email);
      const top = email.element('MIME')!;
      assert.deepEqual(
        [top.attrs.type, top.attrs.subtype, top.attrs['Type-micalg'], top.attrs['Type-protocol'], top.attrs.partID],
        ['multipart', 'signed', 'SHA1', 'application/x-pkcs7-signature', undefined],
      );
      assert.match(top.attrs.estimatedSize ?? '', /^\d+$/);
      const mixed = top.elements('MIME')[0]!;
      assert.deepEqual([mixed.attrs.partID, mixed.attrs.type, mixed.attrs.subtype], ['01', 'multipart', 'mixed']);
      const [text, gif] = mixed.elements('MIME');
      assert.deepEqual([text!.attrs.partID, text!.attrs.type, text!.attrs.subtype, text!.attrs.charset], ['01-01', 'text', 'plain', 'utf-8']);
      assert.equal(text!.text(), 'Dear Susan,\n\nAttached please find a file I received this morning...\nMary.\n');
      assert.deepEqual(
        [gif!.attrs.partID, gif!.attrs.type, gif!.attrs.subtype, gif!.attrs.disposition, gif!.attrs['Disposition-filename'], gif!.children.length],
        ['01-02', 'image', 'gif', 'attachment', 'logo.gif', 0],
      );
      assert.equal(messages[1]!.toString(), '<response id="A001"/>');
    });

    test('023: an encrypted message without the key: one attachment MIME element, as the example shows; SMIMEUnlock of an account without an S/MIME key is an error', async (t) => {
      if (!haveExamples(t, '023-folderRead.txt')) return;
      const [read, unlock] = turns(loadExample('023-folderRead.txt'));
      const { messages } = await exchange(client, mapUids(read!.request, { '55': uids.encrypted! }));
      assert.deepEqual(messages.map((m) => m.name), ['folderMessage', 'response']);
      const expected = read!.replies[0]!;
      assertLike(messages[0], expected, { same: ['folder'] });
      const email = messages[0]!.element('EMail')!;
      assertHeaderElements(email);
      const mime = email.element('MIME')!;
      const expectedMime = expected.element('EMail')!.element('MIME')!;
      assertLike(mime, expectedMime, { same: ['disposition', 'Disposition-filename', 'subtype', 'type', 'Type-name', 'Type-smime-type'] });
      assert.equal(mime.children.length, 0);
      assertResponse(messages[1]!, read!.replies[1]!);
      const refused = await exchange(client, unlock!.request);
      assert.equal(refused.messages.length, 1);
      assert.equal(refused.messages[0]!.attrs.id, 'A002');
      assert.equal(refused.messages[0]!.attrs.errorNum, '500');
    });
  });

  test('047: folderSearch with the example filter, limit and next', async (t) => {
    if (!haveExamples(t, '047-folderSearch.txt')) return;
    const [turn] = turns(loadExample('047-folderSearch.txt'));
    const SEARCHER = 'searcher@example.dom';
    await server.addAccount(SEARCHER, 'search-pass');
    const at = (y: number, m: number, d: number): number => Date.UTC(y, m - 1, d, 12);
    const mail = (from: string, subject: string, date: number): { raw: Buffer; internalDate: number } => ({ raw: rfc822([['From', from], ['Subject', subject]], 'x\n'), internalDate: date });
    await deliverRaw(server, SEARCHER, 'INBOX', [
      mail('jones@example.org', 'test early', at(2008, 1, 15)), // 1: before SINCE
      mail('"John Smith" <john@example.org>', 'test smith', at(2008, 3, 1)), // 2: FROM Smith
      mail('jones@example.org', 'a test', at(2008, 3, 2)), // 3
      mail('jones@example.org', 'xxx report', at(2008, 3, 3)), // 4
      mail('jones@example.org', 'other', at(2008, 3, 4)), // 5: neither subject
      mail('brown@example.org', 'Test again', at(2009, 1, 1)), // 6
      mail('brown@example.org', 'xxx', at(2009, 1, 2)), // 7
      mail('brown@example.org', 'testing', at(2010, 1, 1)), // 8
      mail('brown@example.org', 'one more test', at(2010, 1, 2)), // 9
      mail('brown@example.org', 'nothing', at(2010, 1, 3)), // 10
      mail('brown@example.org', 'last test', at(2010, 1, 4)), // 11
    ]);
    const client = await loggedInClient(server.ports.ximss, SEARCHER, 'search-pass');
    await exchange(client, '<folderOpen id="o" folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>');
    const { messages } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    // Matches are 3, 4, 6, 7, 8, 9, 11: the limit of 5 stops at 8; the search goes on at 9.
    assertLike(messages[0], turn!.replies[0]!, { same: ['folder'] });
    assert.equal(messages[0]!.attrs.next, '9');
    assert.deepEqual(messages[0]!.elements().map((e) => e.toString()), ['<UID>3</UID>', '<UID>4</UID>', '<UID>6</UID>', '<UID>7</UID>', '<UID>8</UID>']);
    assertResponse(messages[1]!, turn!.replies[1]!);
    client.close();
  });
});

describe('mail operations of the spec inventory', () => {
  test('the Mailbox Management, Mailbox and Message operations are implemented, not pending', () => {
    const names = registeredOperations();
    const mail = (
      'mailboxCreate mailboxRename mailboxRemove mailboxList mailboxSubList mailboxSubUpdate mailboxAliasList ' +
      'mailboxAliasUpdate mailboxRightsGet mailboxACLList mailboxACLUpdate folderOpen folderBrowse folderSync ' +
      'folderSearch mailboxSync messageCopy messageMove messageMark messageRemove folderExpunge folderClose ' +
      'folderReopen emptyTrash emptyMailbox folderRead messageAppend messageAttrRead messageAttrWrite'
    ).split(' ');
    for (const op of mail) {
      assert.ok(names.has(op), `${op} is registered`);
    }
    if (existsSync(OPERATIONS_TSV)) {
      const inventory = new Set(readFileSync(OPERATIONS_TSV, 'utf8').split('\n').map((l) => l.split('\t')[0]));
      for (const op of mail) if (op !== 'folderSearch' && op !== 'mailboxSync') assert.ok(inventory.has(op), `${op} is in the inventory`);
    }
  });
});
