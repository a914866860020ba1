/**
 * Hardening: no operation monopolises the event loop, every wildcard match is linear, and
 * mailbox names are checked the same way wherever they enter.
 *
 *  - the wildcard matcher against a reference (a regular expression built from the pattern)
 *    on small random inputs: `*`, `%`, case rules, the INBOX rule of IMAP LIST;
 *  - pathological mailboxList / mailboxSubList patterns over 200+-character names;
 *  - bad names refused where they enter (subscriptions, alias targets, copy targets, ACLs);
 *  - folderSearch and a filtered folderOpen over a mailbox large enough to need many slices:
 *    another client's noop, sent once the scan has started, is answered before the scan;
 *  - the first folderOpen of a large mailbox loads its index page by page (the same noop
 *    answered first), and exactly: appends, flag and attribute changes and expunges made
 *    while it loads (before its catch-up and after it) are all in the index it registers;
 *  - a full mailboxSync reads the mailbox in pages too (the noop first), and its syncID is the
 *    state it read: a message arriving while the answer is made is new at the next sync;
 *  - the sort in slices against Array.prototype.sort;
 *  - the deadlines: `timeout` capped by limits.searchSeconds, filterSeconds refusing the open.
 * No wall-clock assertions: answers and their order only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { listPattern, Wildcard, wildcardMatch } from '../src/services/wildcard.js';
import { pictureMatch } from '../src/services/rules/match.js';
import { XmlElement } from '../src/xml/element.js';
import { Flag } from '../src/services/mail/flags.js';
import { Slicer, sortInSlices } from '../src/services/slices.js';
import type { MessageMeta } from '../src/store/store.js';
import {
  awaitNotifies,
  browseAll,
  deliverRaw,
  expectError,
  fails,
  FolderModel,
  ok,
  pagedReadStarted,
  raceNoop,
  rfc822,
  seededRandom,
  startTestServer,
  type TestServer,
  type XimssClient,
} from './helpers.js';

// ---------------------------------------------------------------------------------------
// The matcher

/** The reference: the regular expression the matcher replaced (fine on small inputs). */
function reference(pattern: string, options: { separator?: string; caseInsensitive?: boolean }): RegExp {
  let source = '^';
  for (const ch of pattern) {
    if (ch === '*') source += '.*';
    else if (ch === '%' && options.separator !== undefined) source += '[^/]*';
    else source += ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(source + '$', options.caseInsensitive ? 'isu' : 'su');
}

/** IMAP LIST as the reference sees it: case-sensitive, a leading `inbox` also matching INBOX. */
function referenceList(pattern: string, name: string): boolean {
  if (reference(pattern, { separator: '/' }).test(name)) return true;
  return /^inbox(\/|$)/i.test(pattern) && reference('INBOX' + pattern.slice(5), { separator: '/' }).test(name);
}

describe('the wildcard matcher', () => {
  const random = seededRandom(20_261_206);
  const pick = (alphabet: readonly string[], length: number): string => {
    let out = '';
    for (let i = 0; i < length; i++) out += alphabet[Math.floor(random() * alphabet.length)];
    return out;
  };

  test('agrees with the reference on random patterns and texts (`*`, `%`, case)', () => {
    const patternChars = ['a', 'b', 'A', '/', '*', '%', '.'];
    const textChars = ['a', 'b', 'A', '/', '%', '.'];
    for (let i = 0; i < 4000; i++) {
      const pattern = pick(patternChars, Math.floor(random() * 8));
      const compiled = [
        { options: { separator: '/' }, wildcard: new Wildcard(pattern, { separator: '/' }) },
        { options: { separator: '/', caseInsensitive: true }, wildcard: new Wildcard(pattern, { separator: '/', caseInsensitive: true }) },
        { options: {}, wildcard: new Wildcard(pattern) },
        { options: { caseInsensitive: true }, wildcard: new Wildcard(pattern, { caseInsensitive: true }) },
      ];
      for (let j = 0; j < 8; j++) {
        const text = pick(textChars, Math.floor(random() * 9));
        for (const { options, wildcard } of compiled) {
          const expected = reference(pattern, options).test(text);
          assert.equal(wildcard.test(text), expected, `${JSON.stringify(pattern)} ~ ${JSON.stringify(text)} ${JSON.stringify(options)}`);
          assert.equal(wildcardMatch(pattern, text, options), expected);
        }
      }
    }
  });

  test('IMAP LIST: case-sensitive except a leading INBOX; `%` stops at `/`', () => {
    const names = ['INBOX', 'INBOX/a', 'INBOX/a/b', 'Inbox2', 'inboxes', 'Work', 'work', 'Work/INBOX', 'a/b/c', 'Проекты/Отчёт'];
    const patterns = ['*', '%', 'inbox', 'INBOX', 'Inbox/*', 'inbox/%', 'inbox*', 'INB*', '%/%', '*/INBOX', 'work', 'W%', '*b*', 'Проекты/%', 'inboX/%/b'];
    for (const pattern of patterns) {
      const matcher = listPattern(pattern);
      for (const name of names) assert.equal(matcher(name), referenceList(pattern, name), `${pattern} ~ ${name}`);
    }
    for (let i = 0; i < 3000; i++) {
      const pattern = pick(['i', 'n', 'b', 'o', 'x', 'I', 'N', 'B', 'O', 'X', '/', '*', '%'], Math.floor(random() * 9));
      const name = pick(['I', 'N', 'B', 'O', 'X', 'i', 'x', '/'], 1 + Math.floor(random() * 8));
      assert.equal(listPattern(pattern)(name), referenceList(pattern, name), `${JSON.stringify(pattern)} ~ ${JSON.stringify(name)}`);
    }
  });

  test('rule pictures: case-insensitive `*`, `%` an ordinary character', () => {
    assert.equal(pictureMatch('*@EXAMPLE.com', 'bob@example.COM'), true);
    assert.equal(pictureMatch('100%', '100%'), true);
    assert.equal(pictureMatch('100%', '1000'), false);
    assert.equal(pictureMatch('*a*b*', 'xxAyyBzz'), true);
  });

  test('pathological patterns answer (the work is bounded by pattern × text)', () => {
    const name = 'a'.repeat(300);
    assert.equal(listPattern('*a*a*a*a*a*b')(name), false);
    assert.equal(listPattern('%a%a%a%a%a%b')(name), false);
    assert.equal(listPattern('*a*a*a*a*a*')(name), true);
    assert.equal(listPattern('%a'.repeat(150) + '%')(name), true);
    assert.equal(listPattern('*a'.repeat(100_000) + '*b')(name), false);
    assert.equal(pictureMatch('*a'.repeat(2000) + '*b', 'a'.repeat(16_000)), false);
  });
});

describe('sorting in slices', () => {
  test('sortInSlices agrees with the stable Array.prototype.sort, and yields on a large input', async () => {
    const random = seededRandom(4242);
    for (const n of [0, 1, 2, 2047, 2048, 2049, 4096, 4097, 10_000, 33_333]) {
      for (const shape of ['random', 'few keys', 'sorted', 'reversed', 'nearly sorted']) {
        const items = Array.from({ length: n }, (_, i) => {
          const key =
            shape === 'random' ? Math.floor(random() * 1e6)
            : shape === 'few keys' ? Math.floor(random() * 5)
            : shape === 'sorted' ? i
            : shape === 'reversed' ? n - i
            : i + (random() < 0.01 ? Math.floor(random() * 500) - 250 : 0);
          return { key, at: i };
        });
        const compare = (a: { key: number }, b: { key: number }): number => a.key - b.key;
        const expected = [...items].sort(compare);
        const slicer = new Slicer({ sliceMs: 0 });
        const sorted = await sortInSlices(items, compare, slicer);
        assert.equal(sorted, items, 'sorted in place');
        assert.deepEqual(sorted, expected, `${n} ${shape}: the same order, ties in their first order`);
        if (n > 2048) assert.ok(slicer.yields > 0, `${n} ${shape}: yielded`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------
// Over the wire

/** A server whose scans may run long (searchSeconds high), with one large mailbox. */
let server: TestServer;
/** A server whose scan budgets are next to nothing. */
let tight: TestServer;
const BIG = 6000;
const NEEDLE = 'needle-in-the-haystack';
/** UIDs of the large mailbox's messages whose body holds NEEDLE. */
const needleUids: number[] = [];
const filler = ('lorem ipsum dolor sit amet, consectetur adipiscing elit; sed do eiusmod tempor '.repeat(12) + '\n').repeat(4);

function bigMessage(i: number): Buffer {
  const body = i % 500 === 7 ? `${filler}and here is the ${NEEDLE} at last\n` : `${filler}message ${i}\n`;
  return rfc822(
    [
      ['From', `sender${i}@example.org`],
      ['To', 'big@example.test'],
      ['Subject', `message ${i}`],
      ['Message-ID', `<scan-${i}@example.org>`],
    ],
    body,
  );
}

/** Fills a mailbox in-process, 1000 messages per store transaction. */
async function fill(target: TestServer, address: string, mailbox: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const batch = [];
    for (let i = start; i < Math.min(count, start + 1000); i++) batch.push(bigMessage(i));
    const uids = await deliverRaw(target, address, mailbox, batch);
    if (target === server) uids.forEach((uid, k) => (start + k) % 500 === 7 && needleUids.push(uid));
  }
}

let big: XimssClient;
let bystander: XimssClient;

before(async () => {
  server = await startTestServer({ limits: { searchSeconds: 600 } });
  tight = await startTestServer({ limits: { searchSeconds: 0.000_001, filterSeconds: 0.000_001 } });
  await server.addAccount('big@example.test', 'secret');
  await server.addAccount('other@example.test', 'secret');
  await fill(server, 'big@example.test', 'INBOX', BIG);
  big = (await server.login('big@example.test', 'secret')).client;
  bystander = (await server.login('other@example.test', 'secret')).client;
  await tight.addAccount('small@example.test', 'secret');
  await fill(tight, 'small@example.test', 'INBOX', 300);
});

after(async () => {
  await server.stop();
  await tight.stop();
});

describe('mailbox names and patterns', () => {
  test('pathological mailboxList / mailboxSubList patterns over a 200+-character name answer correctly', async () => {
    const address = await server.newAccount('names');
    const { client } = await server.login(address, 'secret');
    const long = 'a'.repeat(240);
    await ok(client, `<mailboxCreate mailbox="${long}"/>`);
    await ok(client, `<mailboxCreate mailbox="${long}/${long}"/>`);
    const listed = async (filter: string): Promise<string[]> => (await ok(client, `<mailboxList filter="${filter}"/>`)).messages.map((m) => m.attrs.mailbox!);
    const noop = bystander.request('<noop/>');
    assert.deepEqual(await listed('*a*a*a*a*a*b'), []);
    assert.deepEqual(await listed('%a%a%a%a%a%b'), []);
    assert.deepEqual(await listed('*a*a*a*a*a*'), [long, `${long}/${long}`]);
    assert.deepEqual(await listed('%a%a%a%a%a%'), [long]);
    assert.deepEqual(await listed('*a'.repeat(5000) + '*b'), []);
    assert.equal((await noop).response.attrs.errorText, undefined, "another client's noop answers");

    await ok(client, `<mailboxSubUpdate><mailboxSubscription mailbox="${long}" mode="add"/><mailboxSubscription mailbox="${long}/${long}" mode="add"/></mailboxSubUpdate>`);
    const subscribed = async (filter: string): Promise<string[]> =>
      (await ok(client, `<mailboxSubList filter="${filter}"/>`)).messages.map((m) => m.attrs.mailbox!).sort();
    assert.deepEqual(await subscribed('*a*a*b'), []);
    assert.deepEqual(await subscribed('*a*a*a*a*a*a*a*a*a*a*b'), []);
    assert.deepEqual(await subscribed('%a%a*'), [long, `${long}/${long}`]);
    assert.deepEqual(await subscribed('%a%a%'), [long]);
    assert.equal((await bystander.request('<noop/>')).response.attrs.errorText, undefined);
  });

  test('subscriptions with control characters, over-long names or bad ~owners are refused', async () => {
    const address = await server.newAccount('subs');
    const { client } = await server.login(address, 'secret');
    const refused = [
      'Tab&#9;Name',
      'Line&#10;Feed',
      'x'.repeat(513),
      '/Leading',
      'Trailing/',
      'Double//Slash',
      '~/Box',
      '~bob',
      '~bad owner/Box',
      `~${'o'.repeat(400)}/Box`,
      `~bob@${'d'.repeat(300)}.test/Box`,
      '~bob@-bad-.test/Box',
      '~bob@example.test/Tab&#9;',
      `~bob@example.test/${'y'.repeat(513)}`,
      '~bob@example.test/',
    ];
    for (const name of refused) {
      await fails(client, `<mailboxSubUpdate><mailboxSubscription mailbox="${name}" mode="add"/></mailboxSubUpdate>`, /^invalid mailbox name: /, name.slice(0, 60));
    }
    // A million characters with a tab and a line feed: refused, and the error quotes a little of it.
    const huge = `${'z'.repeat(500_000)}&#9;&#10;${'z'.repeat(499_998)}`;
    const text = await fails(client, `<mailboxSubUpdate mailbox="${huge}" mode="add"/>`, /^invalid mailbox name: /);
    assert.ok(text.length < 200, 'the error quotes a short piece of the name');
    assert.deepEqual((await ok(client, '<mailboxSubList/>')).messages, [], 'nothing was stored');
    // Good ones are kept (INBOX spelled canonically, the owner as written).
    await ok(client, '<mailboxSubUpdate><mailboxSubscription mailbox="inbox/Lists" mode="add"/><mailboxSubscription mailbox="~Bob@Example.test/inbox" mode="add"/></mailboxSubUpdate>');
    const kept = (await ok(client, '<mailboxSubList/>')).messages.map((m) => m.attrs.mailbox).sort();
    assert.deepEqual(kept, ['INBOX/Lists', '~Bob@Example.test/INBOX']);
  });

  test('alias targets, copy targets and ACL patterns are checked the same way', async () => {
    const address = await server.newAccount('targets');
    const { client } = await server.login(address, 'secret');
    await fails(client, '<mailboxAliasUpdate><mailboxAlias name="Mine" mode="add">~bad owner/INBOX</mailboxAlias></mailboxAliasUpdate>', /^invalid mailbox name: /);
    await fails(client, '<mailboxAliasUpdate><mailboxAlias name="Mine" mode="add">Work//2024</mailboxAlias></mailboxAliasUpdate>', /^invalid mailbox name: /);
    await fails(client, `<mailboxAliasUpdate><mailboxAlias name="${'n'.repeat(600)}" mode="add">Work</mailboxAlias></mailboxAliasUpdate>`, /^invalid mailbox name: /);
    await ok(client, '<mailboxAliasUpdate><mailboxAlias name="Mine" mode="add">~someone@example.test/Shared</mailboxAlias></mailboxAliasUpdate>');
    assert.deepEqual(
      (await ok(client, '<mailboxAliasList/>')).messages.map((m) => [m.attrs.name, m.text()]),
      [['Mine', '~someone@example.test/Shared']],
    );

    await deliverRaw(server, address, 'INBOX', [rfc822([['Subject', 'one']], 'one\n')]);
    await ok(client, '<folderOpen folder="in" mailbox="INBOX"><field>UID</field></folderOpen>');
    await fails(client, `<messageCopy folder="in" targetMailbox="~${'q'.repeat(1000)}/INBOX"><index>0</index></messageCopy>`, /^invalid mailbox name: /);
    await fails(client, '<messageCopy folder="in" targetMailbox="Bad&#10;Name" mailboxClass=""><index>0</index></messageCopy>', /^invalid mailbox name: /);
    await fails(client, '<messageCopy folder="in" targetMailbox="~nobody@example.test/INBOX"><index>0</index></messageCopy>', 'mailbox is not found');
    await ok(client, '<folderClose folder="in"/>');

    await ok(client, '<mailboxCreate mailbox="Shared"/>');
    await fails(client, `<mailboxACLUpdate mailbox="Shared"><aclElem pattern="${'p'.repeat(500)}">lr</aclElem></mailboxACLUpdate>`, /^invalid ACL pattern: /);
    await fails(client, '<mailboxACLUpdate mailbox="Shared"><aclElem pattern="two words">lr</aclElem></mailboxACLUpdate>', /^invalid ACL pattern: /);
    await fails(client, '<mailboxACLUpdate mailbox="Shared"><aclElem pattern=" - ">lr</aclElem></mailboxACLUpdate>', 'an ACL element has an empty pattern');
    await ok(client, '<mailboxACLUpdate mailbox="Shared"><aclElem pattern="anyone">l</aclElem></mailboxACLUpdate>');
  });
});

describe('long scans in slices', () => {
  test("the first folderOpen of a large mailbox loads its index page by page: another client's noop is answered first", async () => {
    const hook = pagedReadStarted(server);
    const { scan, order } = await raceNoop(
      server,
      big,
      bystander,
      '<folderOpen folder="first" mailbox="INBOX" sortField="Subject"><field>UID</field><field>Subject</field></folderOpen>',
      hook.started,
    );
    assert.deepEqual(order, ['noop', 'scan'], "the other client's noop is answered while the index loads");
    assert.equal(scan.response.attrs.errorText, undefined);
    assert.ok((await hook.pages) >= 3, 'the mailbox was read in pages');
    const init = scan.messages.find((m) => m.name === 'folderReport' && m.attrs.mode === 'init')!;
    assert.equal(Number(init.attrs.messages), BIG);
    const rows = await browseAll(big, 'first');
    const subjects = rows.map((r) => r.fields.replace(/^.*<Subject>(.*)<\/Subject>.*$/, '$1'));
    assert.deepEqual(subjects, Array.from({ length: BIG }, (_, i) => `message ${i}`).sort(), 'sorted by Subject (sorted in slices too)');
    await ok(big, '<folderClose folder="first"/>');
  });

  test('folderSearch BODY over a large mailbox: a noop sent after it started is answered first', async () => {
    await ok(big, '<folderOpen folder="big" mailbox="INBOX"><field>UID</field></folderOpen>');
    const { scan, order } = await raceNoop(server, big, bystander, `<folderSearch folder="big" filter="BODY ${NEEDLE}"><UID from="1" till="${BIG}"/></folderSearch>`);
    assert.deepEqual(order, ['noop', 'scan'], "the other client's noop is answered while the search goes on");
    assert.equal(scan.response.attrs.errorText, undefined);
    const result = scan.messages[0]!;
    assert.equal(result.name, 'folderSearchResult');
    assert.equal(result.attrs.next, undefined, 'the search went through the whole mailbox');
    assert.deepEqual(result.elements('UID').map((e) => Number(e.text())), needleUids);
  });

  test('folderSearch: a short timeout answers what it found with next, and going on from next progresses', async () => {
    const search = async (from: number): Promise<XmlElement> => {
      const reply = await ok(big, `<folderSearch folder="big" timeout="0.000001" filter="BODY ${NEEDLE}"><UID from="${from}" till="${BIG}"/></folderSearch>`);
      return reply.messages[0]!;
    };
    let from = 1;
    const found: number[] = [];
    for (let round = 0; round < 3; round++) {
      const result = await search(from);
      const next = Number(result.attrs.next);
      assert.ok(Number.isInteger(next) && next > from && next <= BIG, `next ${result.attrs.next} goes beyond ${from}`);
      found.push(...result.elements('UID').map((e) => Number(e.text())));
      from = next;
    }
    assert.deepEqual(found, needleUids.filter((uid) => uid < from), 'the matches of the examined messages');
  });

  test('folderSearch: the timeout attribute is capped by limits.searchSeconds', async () => {
    const { client } = await tight.login('small@example.test', 'secret');
    await ok(client, '<folderOpen folder="in" mailbox="INBOX"/>');
    for (const timeout of ['600', '5', undefined]) {
      const reply = await client.request(new XmlElement('folderSearch', { folder: 'in', filter: 'BODY nothing-like-this', timeout }));
      const result = reply.messages[0]!;
      assert.equal(result.name, 'folderSearchResult');
      const next = Number(result.attrs.next);
      assert.ok(Number.isInteger(next) && next >= 1 && next < 300, `timeout=${timeout}: stopped early at ${result.attrs.next}`);
    }
  });

  test('a filtered folderOpen over a large mailbox lets a noop through first; new messages are decided at sync', async () => {
    const { scan, order } = await raceNoop(server, big, bystander, `<folderOpen folder="filtered" mailbox="INBOX" filterField="body" filter="${NEEDLE}"><field>UID</field></folderOpen>`);
    assert.deepEqual(order, ['noop', 'scan']);
    assert.equal(scan.response.attrs.errorText, undefined);
    const init = scan.messages.find((m) => m.name === 'folderReport' && m.attrs.mode === 'init')!;
    assert.equal(Number(init.attrs.messages), needleUids.length);
    const rows = (await ok(big, `<folderBrowse folder="filtered"><index from="0" till="${BIG}"/></folderBrowse>`)).messages;
    assert.deepEqual(rows.map((r) => Number(r.attrs.UID)), needleUids);

    const added = await deliverRaw(server, 'big@example.test', 'INBOX', [
      rfc822([['Subject', 'late one']], `a late ${NEEDLE}\n`),
      rfc822([['Subject', 'late two']], 'nothing here\n'),
    ]);
    await awaitNotifies(big, 'filtered');
    const reports = (await ok(big, '<folderSync folder="filtered"/>')).messages;
    assert.deepEqual(
      reports.map((r) => [r.attrs.mode, Number(r.attrs.UID)]),
      [['added', added[0]]],
      'only the new message holding the text joins the view',
    );
    await ok(big, '<folderClose folder="filtered"/>');
  });

  test('a filter that cannot be decided within limits.filterSeconds fails folderOpen, and nothing is left open', async () => {
    const { client } = await tight.login('small@example.test', 'secret');
    await fails(client, '<folderOpen folder="f" mailbox="INBOX" filterField="body" filter="anything"/>', 'the filter takes too long on this mailbox: use folderSearch');
    await fails(client, '<folderOpen folder="f" mailbox="INBOX" filter="anything"/>', 'the filter takes too long on this mailbox: use folderSearch');
    await fails(client, '<folderBrowse folder="f"><index>0</index></folderBrowse>', 'folder has not been opened');
    // Without a filter the same open works.
    const opened = await ok(client, '<folderOpen folder="f" mailbox="INBOX"/>');
    assert.equal(opened.messages[0]!.attrs.messages, '300');
    expectError(await client.request('<folderReopen folder="f" filterField="body" filter="x"/>'), 'the filter takes too long on this mailbox: use folderSearch');
    const still = await ok(client, '<folderBrowse folder="f"><index>299</index></folderBrowse>');
    assert.equal(still.messages.length, 1, 'a failed reopen leaves the folder as it was');
  });
});

// ---------------------------------------------------------------------------------------
// Loading an index while the mailbox changes

describe('a mailbox index loaded in slices is exact', () => {
  const COUNT = 3000;

  /** The store's truth: every message of the mailbox, by UID. */
  async function truth(mailboxId: number): Promise<MessageMeta[]> {
    return (await server.services.store.mail.changesSince(mailboxId, 0)).changed.sort((a, b) => a.uid - b.uid);
  }

  test('appends, flag and attribute changes and expunges while the index loads are all in it', async () => {
    const address = await server.newAccount('exact');
    const messages = Array.from({ length: COUNT }, (_, i) => ({
      raw: rfc822([['From', `s${i}@example.org`], ['Subject', `exact ${i}`]], `body ${i}\n`),
      flags: i % 7 === 0 ? 'Seen' : i % 11 === 0 ? 'Recent' : undefined,
    }));
    const uids: number[] = [];
    for (let start = 0; start < COUNT; start += 1000) uids.push(...(await deliverRaw(server, address, 'INBOX', messages.slice(start, start + 1000))));
    const moved = await deliverRaw(server, address, 'Source', [rfc822([['Subject', 'moved in']], 'moved\n')]);
    const { client: reader } = await server.login(address, 'secret');
    const { client: writer } = await server.login(address, 'secret');
    const { client: second } = await server.login(address, 'secret');
    await ok(writer, '<folderOpen folder="src" mailbox="Source"><field>UID</field></folderOpen>');

    const mail = server.services.mail;
    const store = server.services.store.mail;
    const account = (await server.services.accounts.find(address))!;
    const box = await mail.access(account, 'INBOX', 'rwsid');
    const id = box.record.id;
    const appendXml = (subject: string): string =>
      `<messageAppend targetMailbox="INBOX" flags="Flagged"><EMail><From>me@example.test</From><Subject>${subject}</Subject><MIME type="text" subtype="plain">text</MIME></EMail></messageAppend>`;

    // The load pauses before its third page (the first two have been read); its catch-up
    // answers a turn after reading, as an engine over the network would: changes are made
    // in both pauses.
    const listMessages = store.listMessages;
    const changesSince = store.changesSince;
    let pages = 0;
    let pausedAtPage!: () => void;
    let resumePages!: () => void;
    let caughtUp!: () => void;
    let resumeCatchUp!: () => void;
    const atPage = new Promise<void>((resolve) => (pausedAtPage = resolve));
    const pagesResumed = new Promise<void>((resolve) => (resumePages = resolve));
    const atCatchUp = new Promise<void>((resolve) => (caughtUp = resolve));
    const catchUpResumed = new Promise<void>((resolve) => (resumeCatchUp = resolve));
    let readBeforePause = 0;
    store.listMessages = async (mailboxId, page) => {
      if (mailboxId === id && page && ++pages === 3) {
        readBeforePause = page.afterUid;
        pausedAtPage();
        await pagesResumed;
      }
      return listMessages.call(store, mailboxId, page);
    };
    let catchUps = 0;
    store.changesSince = async (mailboxId, modseq) => {
      const changes = await changesSince.call(store, mailboxId, modseq);
      if (mailboxId === id && modseq > 0 && ++catchUps === 1) {
        caughtUp();
        await catchUpResumed;
      }
      return changes;
    };
    try {
      const opening = reader.request('<folderOpen folder="in" mailbox="INBOX" sortField="UID"><field>UID</field><field>FLAGS</field></folderOpen>');
      await atPage;
      assert.ok(readBeforePause > 0 && readBeforePause < uids[COUNT - 1]!, `paused inside the mailbox (after UID ${readBeforePause})`);
      const read = uids.filter((uid) => uid <= readBeforePause);
      const unread = uids.filter((uid) => uid > readBeforePause);
      // A second first user of the mailbox (a session of its own: a session's requests are
      // answered in turn) shares the load.
      const sharing = second.request('<folderOpen folder="in" mailbox="INBOX" sortField="UID"><field>UID</field><field>FLAGS</field></folderOpen>');

      // 1. Between pages: another session appends and moves a message in; this process
      // (as a delivery would) appends, expunges and changes attributes; another process
      // changes flags and expunges in the store.
      await ok(writer, appendXml('appended between pages'));
      await ok(writer, `<messageMove folder="src" targetMailbox="INBOX"><UID>${moved[0]}</UID></messageMove>`);
      await deliverRaw(server, address, 'INBOX', [rfc822([['Subject', 'delivered between pages']], 'x\n')]);
      assert.equal(await mail.expunge(box, [read[10]!, unread[10]!]), 2);
      await mail.setAttrs(box, read[20]!, { note: 'read page' });
      await mail.setAttrs(box, unread[20]!, { note: 'unread page' });
      const flagged = (await store.getMessage(id, read[30]!))!;
      const flaggedToo = (await store.getMessage(id, unread[30]!))!;
      await store.updateFlags(id, [flagged.uid], { set: Flag.Flagged | Flag.Seen, clear: 0, addKeywords: ['$Label1'], removeKeywords: [] });
      await store.updateFlags(id, [flaggedToo.uid], { set: Flag.Answered, clear: Flag.Seen, addKeywords: [], removeKeywords: [] });
      await store.expunge(id, [read[40]!, unread[40]!]);
      resumePages();

      // 2. After the catch-up's snapshot, before the index is registered: changes of this
      // process only (another process's later changes reach no index, loading or not).
      await atCatchUp;
      await ok(writer, appendXml('appended after the catch-up'));
      const late = await deliverRaw(server, address, 'INBOX', [rfc822([['Subject', 'delivered after the catch-up']], 'y\n')]);
      assert.equal(await mail.expunge(box, [read[50]!, unread[50]!, late[0]!]), 3);
      await mail.setAttrs(box, unread[60]!, { note: 'after the catch-up' });
      resumeCatchUp();

      const opened = expectOpened(await opening);
      const shared = expectOpened(await sharing);
      assert.ok(pages >= 3, 'the load read the rest after the pause');
      assert.equal(catchUps, 1, 'one load for both folders');

      // The index is the store's truth, and so are both views.
      const index = await mail.index(box);
      const stored = await truth(id);
      assert.deepEqual([...index.byUid.values()].sort((a, b) => a.uid - b.uid), stored, 'the index equals the store');
      assert.equal(index.modseq, (await store.getMailboxById(id))!.highestModseq);
      assert.equal(index.mailbox.uidNext, (await store.getMailboxById(id))!.uidNext);
      assert.equal(stored.length, COUNT + 5 - 7, 'five added, seven removed');
      for (const [client, init] of [[reader, opened], [second, shared]] as const) {
        assert.equal(Number(init.attrs.messages), stored.length);
        const rows = await browseAll(client, 'in');
        assert.deepEqual(rows.map((r) => r.uid), stored.map((m) => m.uid), 'the view shows the stored messages');
      }
      const row = (rows: Awaited<ReturnType<typeof browseAll>>, uid: number) => rows.find((r) => r.uid === uid)!;
      const rows = await browseAll(reader, 'in');
      assert.equal(row(rows, flagged.uid).flags?.split(',').sort().join(','), ['$Label1', 'Flagged', 'Seen'].sort().join(','));
      assert.match(row(rows, flaggedToo.uid).flags ?? '', /Answered/);

      // The index registered goes on: changes after the load reach both views by folderSync.
      const model = await FolderModel.load(reader, 'in');
      await ok(second, `<messageMark folder="in" flags="Flagged"><UID>${unread[70]}</UID></messageMark>`);
      await ok(second, `<messageRemove folder="in" mode="Immediately"><UID>${read[70]}</UID></messageRemove>`);
      await ok(writer, appendXml('appended after the load'));
      await awaitNotifies(reader, 'in');
      await model.syncAndCheck(reader);
      assert.deepEqual(model.uids(), (await truth(id)).map((m) => m.uid));
    } finally {
      store.listMessages = listMessages;
      store.changesSince = changesSince;
    }
  });
});

describe('a mailbox index whose removal journal is outrun while it loads', () => {
  test('is read again, and the third time in one piece: still the store\'s truth', async () => {
    const address = await server.newAccount('outrun');
    const uids = await deliverRaw(server, address, 'INBOX', Array.from({ length: 1500 }, (_, i) => rfc822([['Subject', `outrun ${i}`]], `${i}\n`)));
    const account = (await server.services.accounts.find(address))!;
    const box = await server.services.mail.access(account, 'INBOX', 'r');
    const store = server.services.store.mail;
    const changesSince = store.changesSince;
    const asked: number[] = [];
    // The catch-up after each of the two sliced attempts finds the journal pruned past it.
    store.changesSince = async (mailboxId, modseq) => {
      const changes = await changesSince.call(store, mailboxId, modseq);
      if (mailboxId !== box.record.id) return changes;
      asked.push(modseq);
      if (asked.length <= 2) {
        await server.services.mail.expunge(box, [uids[asked.length * 100]!]);
        return { ...changes, complete: false };
      }
      return changes;
    };
    let index;
    try {
      index = await server.services.mail.index(box);
    } finally {
      store.changesSince = changesSince;
    }
    assert.equal(asked.length, 3);
    assert.equal(asked[2], 0, 'the third read is the whole mailbox in one piece');
    const stored = (await changesSince.call(store, box.record.id, 0)).changed;
    assert.equal(stored.length, 1498);
    assert.deepEqual([...index.byUid.values()].sort((a, b) => a.uid - b.uid), stored);
  });
});

function expectOpened(reply: Awaited<ReturnType<XimssClient['request']>>): XmlElement {
  assert.equal(reply.response.attrs.errorText, undefined, reply.response.toString());
  return reply.messages.find((m) => m.name === 'folderReport' && m.attrs.mode === 'init')!;
}

describe('a full mailboxSync in slices', () => {
  test("the first mailboxSync of a large mailbox reads it page by page: another client's noop is answered first", async () => {
    await ok(big, '<folderOpen folder="sync" mailbox="INBOX"><field>UID</field></folderOpen>');
    const hook = pagedReadStarted(server);
    const { scan, order } = await raceNoop(server, big, bystander, '<mailboxSync folder="sync" limit="5"/>', hook.started);
    assert.deepEqual(order, ['noop', 'scan']);
    assert.equal(scan.response.attrs.errorText, undefined);
    assert.ok((await hook.pages) >= 3, 'the mailbox was read in pages');
    const reports = scan.messages.filter((m) => m.name === 'mailboxSyncReport');
    assert.equal(reports.length, 6, 'five messages and the info');
    assert.deepEqual(reports.slice(0, 5).map((r) => r.attrs.mode), ['added', 'added', 'added', 'added', 'added']);
    assert.equal(reports[5]!.attrs.mode, 'info');
    assert.equal(reports[5]!.attrs.hasMore, 'yes');
    await ok(big, '<folderClose folder="sync"/>');
  });

  test('a message arriving while a complete answer is made is reported as added at the next sync', async () => {
    const address = await server.newAccount('syncing');
    const first = await deliverRaw(server, address, 'INBOX', [rfc822([['Subject', 'one']], 'one\n'), rfc822([['Subject', 'two']], 'two\n')]);
    const { client } = await server.login(address, 'secret');
    await ok(client, '<folderOpen folder="F" mailbox="INBOX"><field>UID</field></folderOpen>');
    // The answer reads the new messages' bodies: the first read waits for a delivery.
    const store = server.services.store.mail;
    const readRaw = store.readRaw;
    let arrived: number[] = [];
    store.readRaw = async (mailboxId, uid) => {
      store.readRaw = readRaw;
      arrived = await deliverRaw(server, address, 'INBOX', [rfc822([['Subject', 'three']], 'three\n')]);
      return readRaw.call(store, mailboxId, uid);
    };
    let reply;
    try {
      reply = await ok(client, '<mailboxSync folder="F"/>');
    } finally {
      store.readRaw = readRaw;
    }
    assert.equal(arrived.length, 1, 'delivered during the answer');
    const reports = reply.messages.filter((m) => m.name === 'mailboxSyncReport');
    assert.deepEqual(reports.map((r) => [r.attrs.mode, Number(r.attrs.UID ?? 0)]), [['added', first[0]], ['added', first[1]], ['info', 0]]);
    const syncID = reports[2]!.attrs.syncID!;
    const next = (await ok(client, `<mailboxSync folder="F" syncID="${syncID}"/>`)).messages.filter((m) => m.name === 'mailboxSyncReport');
    assert.deepEqual(next.map((r) => [r.attrs.mode, Number(r.attrs.UID ?? 0)]).slice(0, -1), [['added', arrived[0]]], 'new to the client: added, with its content');
    assert.ok(next[0]!.element('EMail'), 'the message goes out whole');
  });
});
