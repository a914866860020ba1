/**
 * The folderSearch filter: IMAP SEARCH keys parsed by parseSearch and matched against
 * in-memory messages.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSearch, SearchSyntaxError, type SearchableMessage } from '../src/services/mail/search.js';
import { seededRandom as mulberry32 } from './helpers.js';

interface Fixture {
  uid: number;
  seq: number;
  flags?: string[];
  internalDate: string | number;
  size?: number;
  sentDate?: string;
  headers?: Array<[string, string]>;
  body?: string;
}

interface TestMessage extends SearchableMessage {
  calls: { header: number; headerText: number; bodyText: number };
}

function message(f: Fixture): TestMessage {
  const headers = f.headers ?? [];
  const calls = { header: 0, headerText: 0, bodyText: 0 };
  return {
    uid: f.uid,
    seq: f.seq,
    flags: new Set(f.flags ?? []),
    internalDate: typeof f.internalDate === 'number' ? f.internalDate : Date.parse(f.internalDate),
    size: f.size ?? 100,
    sentDate: f.sentDate === undefined ? undefined : Date.parse(f.sentDate),
    calls,
    header(name: string): string[] {
      calls.header++;
      return headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
    },
    headerText(): string {
      calls.headerText++;
      return headers.map(([n, v]) => `${n}: ${v}\r\n`).join('');
    },
    bodyText(): string {
      calls.bodyText++;
      return f.body ?? '';
    },
  };
}

const messages: TestMessage[] = [
  message({
    uid: 10,
    seq: 1,
    flags: ['Seen', 'Answered', '$Label1'],
    internalDate: '2008-02-01T10:00:00Z',
    size: 1000,
    sentDate: '2008-01-31T23:30:00Z',
    headers: [
      ['From', 'John Smith <smith@example.com>'],
      ['To', 'Alice <alice@example.org>'],
      ['Cc', 'Bob <bob@example.net>'],
      ['Subject', 'Test message'],
      ['X-Mailer', 'Mutt/1.5'],
      ['Received', 'from a'],
      ['Received', 'from b'],
    ],
    body: 'Hello world, this is the body.',
  }),
  message({
    uid: 20,
    seq: 2,
    flags: ['Flagged', 'Draft', 'Recent'],
    internalDate: '2008-01-15T12:00:00Z',
    size: 5000,
    headers: [
      ['From', 'Jane Doe <jane@example.com>'],
      ['To', 'smith@example.com'],
      ['Bcc', 'secret@example.com'],
      ['Subject', 'Re: xxx report'],
    ],
    body: 'Café au lait — ΟΔΟΣ',
  }),
  message({
    uid: 30,
    seq: 3,
    flags: ['Deleted', 'Recent', 'Seen'],
    internalDate: '2008-03-01T00:00:00Z',
    size: 20000,
    sentDate: '2008-02-29T12:00:00Z',
    headers: [
      ['From', 'Agent <agent@example.org>'],
      ['Subject', 'cafe\u0301 test'], // NFD
      ['X-Empty', ''],
    ],
    body: '',
  }),
  message({
    uid: 45,
    seq: 4,
    internalDate: '2007-12-31T23:59:59Z',
    size: 1,
    sentDate: '2007-12-31T23:59:59Z',
    headers: [
      ['From', 'no-reply@example.com'],
      ['Subject', 'ΣΟΦΊΑ Straße'],
      ['X-Quote', 'say "hi" \\ back'],
    ],
    body: 'plain',
  }),
  message({
    uid: 50,
    seq: 5,
    flags: ['Seen', 'NonJunk'],
    internalDate: '2008-02-10T08:00:00Z',
    size: 1000,
    sentDate: '2008-02-10T07:00:00Z',
    headers: [
      ['From', 'Carol <carol@example.com>'],
      ['Subject', 'XXX files'],
      ['Cc', 'smith@example.com'],
    ],
    body: 'nothing',
  }),
];

const ALL_UIDS = [10, 20, 30, 45, 50];
const BOUNDS = { maxSeq: 5, maxUid: 50 };

function uids(filter: string, options: Parameters<typeof parseSearch>[1] = BOUNDS, list = messages): number[] {
  const program = parseSearch(filter, options);
  return list.filter((m) => program.matches(m)).map((m) => m.uid);
}

function except(...excluded: number[]): number[] {
  return ALL_UIDS.filter((u) => !excluded.includes(u));
}

function assertSearch(filter: string, expected: number[], options?: Parameters<typeof parseSearch>[1]): void {
  assert.deepEqual(uids(filter, options), expected, filter);
}

function assertSyntaxError(filter: string, expected: string, options?: Parameters<typeof parseSearch>[1]): void {
  assert.throws(
    () => parseSearch(filter, options),
    (e: unknown) => {
      assert.ok(e instanceof SearchSyntaxError, `${JSON.stringify(filter)} threw ${String(e)}`);
      assert.ok(e.message.includes(expected), `${JSON.stringify(filter)}: "${e.message}" lacks "${expected}"`);
      return true;
    },
    filter,
  );
}

describe('search keys', () => {
  test('flag keys and their negations', () => {
    assertSearch('ALL', ALL_UIDS);
    assertSearch('ANSWERED', [10]);
    assertSearch('UNANSWERED', except(10));
    assertSearch('DELETED', [30]);
    assertSearch('UNDELETED', except(30));
    assertSearch('DRAFT', [20]);
    assertSearch('UNDRAFT', except(20));
    assertSearch('FLAGGED', [20]);
    assertSearch('UNFLAGGED', except(20));
    assertSearch('RECENT', [20, 30]);
    assertSearch('OLD', [10, 45, 50]);
    assertSearch('NEW', [20]);
    assertSearch('SEEN', [10, 30, 50]);
    assertSearch('UNSEEN', [20, 45]);
  });

  test('keys are case-insensitive', () => {
    assertSearch('seen', [10, 30, 50]);
    assertSearch('UnSeen', [20, 45]);
    assertSearch('since 1-feb-2008 from SMITH', [10]);
  });

  test('KEYWORD and UNKEYWORD, case-insensitive, with \\System names', () => {
    assertSearch('KEYWORD $Label1', [10]);
    assertSearch('KEYWORD $label1', [10]);
    assertSearch('KEYWORD nonjunk', [50]);
    assertSearch('KEYWORD Junk', []);
    assertSearch('UNKEYWORD $Label1', except(10));
    assertSearch('UNKEYWORD Junk', ALL_UIDS);
    assertSearch('KEYWORD \\Seen', [10, 30, 50]);
    assertSearch('UNKEYWORD \\deleted', except(30));
  });

  test('address and subject keys', () => {
    assertSearch('FROM smith', [10]);
    assertSearch('FROM "JANE DOE"', [20]);
    assertSearch('FROM nobody', []);
    assertSearch('FROM ""', ALL_UIDS);
    assertSearch('TO alice', [10]);
    assertSearch('TO smith', [20]);
    assertSearch('TO ""', [10, 20]);
    assertSearch('CC smith', [50]);
    assertSearch('CC bob', [10]);
    assertSearch('CC carol', []);
    assertSearch('BCC secret', [20]);
    assertSearch('BCC smith', []);
    assertSearch('SUBJECT test', [10, 30]);
    assertSearch('SUBJECT "Test message"', [10]);
    assertSearch('SUBJECT missing', []);
  });

  test('Unicode: case folding and NFC/NFD equivalence', () => {
    assertSearch('SUBJECT café', [30]); // NFC needle, NFD subject
    assertSearch('SUBJECT "CAFE\u0301"', [30]); // NFD needle
    assertSearch('BODY "CAFE\u0301 AU"', [20]); // NFD needle, NFC body
    assertSearch('SUBJECT σοφία', [45]);
    assertSearch('SUBJECT STRAßE', [45]);
    assertSearch('BODY οδοσ', [20]); // final sigma in the message
    assertSearch('BODY ΟΔΟΣ', [20]);
    assertSearch('BODY cafe', []); // accents still matter
  });

  test('HEADER: substring, presence, several fields of one name', () => {
    assertSearch('HEADER X-Mailer mutt', [10]);
    assertSearch('HEADER x-mailer ""', [10]);
    assertSearch('HEADER X-Empty ""', [30]);
    assertSearch('HEADER X-Nothing ""', []);
    assertSearch('HEADER Received "from b"', [10]);
    assertSearch('HEADER Received "from c"', []);
    assertSearch('HEADER Subject xxx', [20, 50]);
    assertSearch('HEADER X-Quote "\\"hi\\" \\\\"', [45]);
  });

  test('BODY and TEXT', () => {
    assertSearch('BODY world', [10]);
    assertSearch('BODY "CAFÉ"', [20]);
    assertSearch('BODY nothing', [50]);
    assertSearch('BODY smith', []);
    assertSearch('BODY ""', ALL_UIDS);
    assertSearch('TEXT mutt', [10]);
    assertSearch('TEXT lait', [20]);
    assertSearch('TEXT "agent@"', [30]);
    assertSearch('TEXT "x-mailer:"', [10]);
    assertSearch('TEXT zebra', []);
  });

  test('LARGER and SMALLER are strict', () => {
    assertSearch('LARGER 1000', [20, 30]);
    assertSearch('LARGER 999', [10, 20, 30, 50]);
    assertSearch('SMALLER 1000', [45]);
    assertSearch('SMALLER 1001', [10, 45, 50]);
    assertSearch('LARGER 0', ALL_UIDS);
    assertSearch('SMALLER 1', []);
  });

  test('internal date keys compare calendar dates', () => {
    assertSearch('BEFORE 1-Feb-2008', [20, 45]);
    assertSearch('ON 1-Feb-2008', [10]);
    assertSearch('ON 01-Feb-2008', [10]);
    assertSearch('ON "1-Feb-2008"', [10]);
    assertSearch('ON 31-Dec-2007', [45]);
    assertSearch('ON 2-Feb-2008', []);
    assertSearch('SINCE 1-Feb-2008', [10, 30, 50]);
    assertSearch('SINCE 1-Mar-2008', [30]);
    assertSearch('BEFORE 1-Mar-2008', [10, 20, 45, 50]);
  });

  test('sent date keys; a message without a Date header matches none of them', () => {
    assertSearch('SENTBEFORE 1-Feb-2008', [10, 45]);
    assertSearch('SENTON 31-Jan-2008', [10]);
    assertSearch('SENTON 29-Feb-2008', [30]);
    assertSearch('SENTSINCE 1-Feb-2008', [30, 50]);
    assertSearch('NOT SENTBEFORE 1-Feb-2008', [20, 30, 50]);
    assertSearch('OR SENTBEFORE 1-Jan-2100 SENTSINCE 1-Jan-1900', [10, 30, 45, 50]);
  });

  test('OLDER and YOUNGER are relative to parse time, in seconds', () => {
    const now = Date.now();
    const hourOld = message({ uid: 1, seq: 1, internalDate: now - 3_600_000 });
    const dayOld = message({ uid: 2, seq: 2, internalDate: now - 86_400_000 });
    const list = [hourOld, dayOld];
    assert.deepEqual(uids('OLDER 60', {}, list), [1, 2]);
    assert.deepEqual(uids('OLDER 7200', {}, list), [2]);
    assert.deepEqual(uids('YOUNGER 7200', {}, list), [1]);
    assert.deepEqual(uids('YOUNGER 60', {}, list), []);
    assert.deepEqual(uids('YOUNGER 172800', {}, list), [1, 2]);
  });

  test('UID sets, with * as maxUid', () => {
    assertSearch('UID 20:30', [20, 30]);
    assertSearch('UID 30:20', [20, 30]);
    assertSearch('UID 1,45', [45]);
    assertSearch('UID 10:20,45:46', [10, 20, 45]);
    assertSearch('UID 10,20,30,40,50', [10, 20, 30, 50]);
    assertSearch('UID 30:*', [30, 45, 50]);
    assertSearch('UID *', [50]);
    assertSearch('UID 60:*', [50]); // n:* with n past the end is the last message
    assertSearch('UID "20"', [20]);
    assertSearch('UID 11:19', []);
    // Without maxUid, * is unbounded.
    assertSearch('UID 30:*', [30, 45, 50], {});
    assertSearch('UID *', [], {});
  });

  test('bare sequence sets, with * as maxSeq', () => {
    assertSearch('2:3', [20, 30]);
    assertSearch('1,3:4', [10, 30, 45]);
    assertSearch('1:5,7,9:*', ALL_UIDS);
    assertSearch('*', [50]);
    assertSearch('4:*', [45, 50]);
    assertSearch('*:4', [45, 50]);
    assertSearch('6:*', [50]);
    assertSearch('2,4 SEEN', []);
    assertSearch('1:3 SEEN', [10, 30]);
    assertSearch('*', [45], { maxSeq: 4 });
  });

  test('the folderSearch example from the spec', () => {
    assertSearch('SINCE 1-Feb-2008 NOT FROM Smith OR SUBJECT test SUBJECT xxx', [30, 50]);
    // Its parts, to show each one does something.
    assertSearch('SINCE 1-Feb-2008', [10, 30, 50]);
    assertSearch('NOT FROM Smith', except(10));
    assertSearch('OR SUBJECT test SUBJECT xxx', [10, 20, 30, 50]);
  });
});

describe('operators and precedence', () => {
  test('NOT applies to one key: NOT A B is (NOT A) B', () => {
    assertSearch('NOT SEEN FLAGGED', [20]);
    assertSearch('(NOT SEEN) FLAGGED', [20]);
    assertSearch('NOT (SEEN FLAGGED)', ALL_UIDS);
    assertSearch('NOT NOT SEEN', [10, 30, 50]);
    assertSearch('NOT NOT NOT SEEN', [20, 45]);
    assertSearch('NOT ALL', []);
    assertSearch('NOT (OR SEEN FLAGGED)', [45]);
  });

  test('OR takes two keys: OR A B C is (OR A B) C', () => {
    assertSearch('OR SEEN DRAFT DELETED', [30]);
    assertSearch('(OR SEEN DRAFT) DELETED', [30]);
    assertSearch('OR SEEN (DRAFT DELETED)', [10, 30, 50]);
    assertSearch('OR ANSWERED OR DRAFT DELETED', [10, 20, 30]);
    assertSearch('OR OR ANSWERED DRAFT DELETED', [10, 20, 30]);
    assertSearch('OR NOT SEEN DELETED', [20, 30, 45]);
    assertSearch('OR ALL NOT ALL', ALL_UIDS);
  });

  test('parentheses group and AND their keys', () => {
    assertSearch('(SEEN)', [10, 30, 50]);
    assertSearch('((SEEN) (NOT DELETED))', [10, 50]);
    assertSearch('(SEEN UNDELETED)(LARGER 999)', [10, 50]);
    assertSearch('SEEN(UNDELETED)', [10, 50]);
    assertSearch('OR (FROM smith SUBJECT test) (FROM agent SUBJECT test)', [10, 30]);
  });

  test('long OR chains and NOT chains are not nesting', () => {
    const orChain = 'OR UID 1 '.repeat(450) + 'UID 50';
    assert.ok(orChain.length < 4096);
    assertSearch(orChain, [50]);
    assertSearch('NOT '.repeat(1001) + 'SEEN', [20, 45]);
  });

  test('CHARSET first, UTF-8 or US-ASCII', () => {
    assertSearch('CHARSET UTF-8 SUBJECT café', [30]);
    assertSearch('charset us-ascii SEEN', [10, 30, 50]);
    assertSearch('CHARSET "utf-8" ALL', ALL_UIDS);
  });

  test('quoted strings and literals as arguments', () => {
    assertSearch('SUBJECT {4}\r\ntest', [10, 30]);
    assertSearch('SUBJECT {4+}\r\ncafé', [30]);
    assertSearch('SUBJECT {6}\r\nxxx re', [20]);
    assertSearch('SUBJECT {6}\nxxx re SEEN', []);
    assertSearch('HEADER {8}\r\nX-Mailer {4}\r\nmutt', [10]);
    assertSearch('SUBJECT {0}\r\n', ALL_UIDS);
    assertSearch('SUBJECT {4}\r\n(xx)', []);
    assertSearch('BODY {2}\r\n😀x', []); // counts characters, not UTF-16 units
    assertSearch('SUBJECT "re: "', [20]);
    assertSearch('SUBJECT ""', ALL_UIDS);
  });
});

describe('dates in a time zone', () => {
  function at(iso: string, uid: number): TestMessage {
    return message({ uid, seq: uid, internalDate: iso, sentDate: iso });
  }

  test('around midnight in America/New_York (UTC-5 in February)', () => {
    const before = at('2008-02-01T04:59:59.999Z', 1); // 31 Jan 23:59:59.999 local
    const after = at('2008-02-01T05:00:00.000Z', 2); // 1 Feb 00:00 local
    const list = [before, after];
    const ny = { timeZone: 'America/New_York' };
    assert.deepEqual(uids('SINCE 1-Feb-2008', ny, list), [2]);
    assert.deepEqual(uids('BEFORE 1-Feb-2008', ny, list), [1]);
    assert.deepEqual(uids('ON 31-Jan-2008', ny, list), [1]);
    assert.deepEqual(uids('ON 1-Feb-2008', ny, list), [2]);
    assert.deepEqual(uids('SENTSINCE 1-Feb-2008', ny, list), [2]);
    assert.deepEqual(uids('SENTBEFORE 1-Feb-2008', ny, list), [1]);
    assert.deepEqual(uids('SENTON 31-Jan-2008', ny, list), [1]);
    // In UTC (the default) both are on 1 February.
    assert.deepEqual(uids('ON 1-Feb-2008', {}, list), [1, 2]);
    assert.deepEqual(uids('ON 1-Feb-2008', { timeZone: 'UTC' }, list), [1, 2]);
  });

  test('around midnight in Asia/Tokyo (UTC+9)', () => {
    const list = [at('2008-01-31T14:59:59.999Z', 1), at('2008-01-31T15:00:00.000Z', 2), at('2008-02-01T14:59:59.999Z', 3), at('2008-02-01T15:00:00Z', 4)];
    const tokyo = { timeZone: 'Asia/Tokyo' };
    assert.deepEqual(uids('ON 1-Feb-2008', tokyo, list), [2, 3]);
    assert.deepEqual(uids('SENTON 1-Feb-2008', tokyo, list), [2, 3]);
    assert.deepEqual(uids('BEFORE 1-Feb-2008', tokyo, list), [1]);
    assert.deepEqual(uids('SINCE 2-Feb-2008', tokyo, list), [4]);
  });

  test('a day that starts at 01:00 because of DST (America/Sao_Paulo, 4 Nov 2018)', () => {
    const list = [at('2018-11-04T02:59:59.999Z', 1), at('2018-11-04T03:00:00Z', 2)];
    const sp = { timeZone: 'America/Sao_Paulo' };
    assert.deepEqual(uids('ON 3-Nov-2018', sp, list), [1]);
    assert.deepEqual(uids('ON 4-Nov-2018', sp, list), [2]);
    assert.deepEqual(uids('SINCE 4-Nov-2018', sp, list), [2]);
  });

  test('agrees with Intl.DateTimeFormat on random instants', () => {
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    const random = mulberry32(7);
    for (const timeZone of ['America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'Pacific/Chatham']) {
      const format = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
      for (let i = 0; i < 25; i++) {
        const t = Date.UTC(2000, 0, 1) + Math.floor(random() * 30 * 365 * 86_400_000);
        const [y, m, d] = format.format(t).split('-').map(Number) as [number, number, number];
        const date = `${d}-${months[m - 1]}-${y}`;
        const next = new Date(Date.UTC(y, m - 1, d + 1));
        const nextDate = `${next.getUTCDate()}-${months[next.getUTCMonth()]}-${next.getUTCFullYear()}`;
        const list = [at(new Date(t).toISOString(), 1)];
        const where = `${new Date(t).toISOString()} in ${timeZone}`;
        assert.deepEqual(uids(`ON ${date}`, { timeZone }, list), [1], where);
        assert.deepEqual(uids(`SINCE ${date} BEFORE ${nextDate}`, { timeZone }, list), [1], where);
        assert.deepEqual(uids(`OR BEFORE ${date} SINCE ${nextDate}`, { timeZone }, list), [], where);
      }
    }
  });

  test('an unknown time zone is the caller’s error, not a syntax error', () => {
    assert.throws(() => parseSearch('SEEN', { timeZone: 'Mars/Olympus_Mons' }), RangeError);
  });
});

describe('what the caller must load', () => {
  function needs(filter: string): [boolean, boolean] {
    const p = parseSearch(filter, BOUNDS);
    return [p.needsHeaders, p.needsBody];
  }

  test('needsHeaders and needsBody', () => {
    assert.deepEqual(needs('SEEN LARGER 5 SINCE 1-Jan-2008 UID 1:*'), [false, false]);
    // The store caches Subject, From, To and Cc with each message (and the parsed date); other fields need the header.
    assert.deepEqual(needs('FROM x TO y CC z SUBJECT s SENTON 1-Jan-2008'), [false, false]);
    assert.deepEqual(needs('HEADER Date 2008'), [true, false]);
    assert.deepEqual(needs('BCC w'), [true, false]);
    assert.deepEqual(needs('HEADER Message-ID abc HEADER reply-to x'), [true, false]);
    assert.deepEqual(needs('HEADER X-Mailer mutt'), [true, false]);
    assert.deepEqual(needs('OR SEEN HEADER List-Id x'), [true, false]);
    assert.deepEqual(needs('BODY x'), [false, true]);
    assert.deepEqual(needs('NOT BODY x'), [false, true]);
    assert.deepEqual(needs('TEXT x'), [true, true]);
    assert.deepEqual(needs('BODY ""'), [false, false]);
  });

  test('the body is read lazily and at most once per match', () => {
    const m = message({ uid: 1, seq: 1, internalDate: 0, body: 'hello', headers: [['Subject', 'hi']] });
    parseSearch('SEEN FLAGGED UID 1 SINCE 1-Jan-1970').matches(m);
    assert.deepEqual(m.calls, { header: 0, headerText: 0, bodyText: 0 });
    // The cheap flag test runs first even when written last, and fails.
    parseSearch('BODY hello TEXT hello SEEN').matches(m);
    assert.equal(m.calls.bodyText, 0);
    assert.equal(parseSearch('BODY hello TEXT zzz').matches(m), false);
    assert.equal(m.calls.bodyText, 1);
    assert.equal(parseSearch('OR SUBJECT hi BODY hello').matches(m), true);
    assert.equal(m.calls.bodyText, 1);
  });
});

describe('syntax errors', () => {
  test('empty filters and unknown keys', () => {
    assertSyntaxError('', 'empty search filter');
    assertSyntaxError('  \r\n ', 'empty search filter');
    assertSyntaxError('FOO', 'unknown search key "FOO"');
    assertSyntaxError('SEEN foo', 'unknown search key "foo"');
    assertSyntaxError('UNREAD', 'unknown search key "UNREAD"');
    assertSyntaxError('ſEEN', 'unknown search key "ſEEN"');
    assertSyntaxError('"SEEN"', 'search key expected instead of string "SEEN"');
    assertSyntaxError('SEEN \u0000', 'unexpected control character U+0000');
  });

  test('missing arguments and operands', () => {
    for (const key of ['BCC', 'BEFORE', 'BODY', 'CC', 'FROM', 'HEADER', 'KEYWORD', 'LARGER', 'ON', 'OLDER', 'SENTBEFORE', 'SENTON', 'SENTSINCE', 'SINCE', 'SMALLER', 'SUBJECT', 'TEXT', 'TO', 'UID', 'UNKEYWORD', 'YOUNGER']) {
      assertSyntaxError(key, `missing argument for ${key}`);
      assertSyntaxError(`(${key.toLowerCase()})`, `missing argument for ${key}`);
    }
    assertSyntaxError('HEADER X-Mailer', 'missing argument for HEADER');
    assertSyntaxError('NOT', 'missing search key after NOT');
    assertSyntaxError('(NOT)', 'missing search key after NOT');
    assertSyntaxError('OR SEEN', 'missing search key after OR');
    assertSyntaxError('OR', 'missing search key after OR');
    assertSyntaxError('CHARSET', 'missing argument for CHARSET');
    assertSyntaxError('CHARSET UTF-8', 'missing search key after CHARSET');
  });

  test('bad dates', () => {
    for (const date of ['31-Foo-2008', '31-Feb-2008', '29-Feb-2007', '0-Jan-2008', '32-Jan-2008', '1-Jan-0000', '1-Jan-08', '1-January-2008', '2008-01-01', '001-Jan-2008', '']) {
      assertSyntaxError(`SINCE "${date}"`, `bad date ${JSON.stringify(date)}`);
    }
    assertSyntaxError('SENTON 31-Foo-2008', 'bad date "31-Foo-2008"');
    assertSearch('ON 29-Feb-2008', []);
  });

  test('bad numbers and sets', () => {
    assertSyntaxError('LARGER x', 'bad number "x" for LARGER');
    assertSyntaxError('SMALLER -1', 'bad number "-1" for SMALLER');
    assertSyntaxError('LARGER 99999999999999999999', 'bad number');
    assertSyntaxError('OLDER 1.5', 'bad number "1.5" for OLDER');
    for (const set of ['0', '1:x', '1,,2', '3,', '""', '1:2:3', ':4', '-1']) {
      assertSyntaxError(`UID ${set}`, 'bad UID set');
    }
    for (const set of ['0', '1:0', '3,', '*,', '1x', '**']) {
      assertSyntaxError(set, `bad sequence set ${JSON.stringify(set)}`);
    }
  });

  test('parentheses', () => {
    assertSyntaxError('(SEEN', 'unbalanced parentheses');
    assertSyntaxError('SEEN)', 'unbalanced parentheses');
    assertSyntaxError('((SEEN)', 'unbalanced parentheses');
    assertSyntaxError(')', 'unbalanced parentheses');
    assertSyntaxError('()', 'empty parentheses');
    assertSyntaxError('(SEEN ())', 'empty parentheses');
  });

  test('strings and literals', () => {
    assertSyntaxError('SUBJECT "abc', 'unterminated quoted string');
    assertSyntaxError('SUBJECT "abc\\', 'unterminated quoted string');
    assertSyntaxError('SUBJECT "a\\b"', 'bad escape "\\\\b" in quoted string');
    assertSyntaxError('SUBJECT {3}abc', 'literal "{3}" must be followed by CRLF');
    assertSyntaxError('SUBJECT {9}\r\nabc', 'literal {9} is longer than the rest of the filter');
    assertSyntaxError('SUBJECT {99999999999999999999}\r\nabc', 'is longer than the rest');
    assertSyntaxError('HEADER "" x', 'empty header field name');
    assertSyntaxError('KEYWORD \\Foo', 'bad keyword "\\\\Foo" for KEYWORD');
    assertSyntaxError('UNKEYWORD ""', 'bad keyword "" for UNKEYWORD');
  });

  test('CHARSET', () => {
    assertSyntaxError('CHARSET ISO-8859-1 ALL', 'unsupported charset "ISO-8859-1"');
    assertSyntaxError('CHARSET KOI8-R SUBJECT x', 'unsupported charset "KOI8-R"');
    assertSyntaxError('SEEN CHARSET UTF-8', 'CHARSET must come before the search keys');
  });

  test('nesting is capped at 100 levels, without overflowing the stack', () => {
    assertSearch('('.repeat(100) + 'SEEN' + ')'.repeat(100), [10, 30, 50]);
    assertSyntaxError('('.repeat(101) + 'SEEN' + ')'.repeat(101), 'nested too deeply');
    assertSyntaxError('('.repeat(4096), 'nested too deeply');
    assertSyntaxError('NOT ('.repeat(800) + 'SEEN', 'nested too deeply');
    assertSyntaxError('OR '.repeat(1300) + 'SEEN '.repeat(1301), 'nested too deeply');
    assertSyntaxError('OR ('.repeat(1000), 'nested too deeply');
  });
});


describe('fuzz', () => {
  test('random token soup only ever throws SearchSyntaxError', () => {
    const random = mulberry32(20080201);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    const keys = ['ALL', 'ANSWERED', 'BCC', 'BEFORE', 'BODY', 'CC', 'DELETED', 'DRAFT', 'FLAGGED', 'FROM', 'HEADER', 'KEYWORD', 'LARGER', 'NEW', 'NOT', 'OLD', 'ON', 'OR', 'RECENT', 'SEEN', 'SENTBEFORE', 'SENTON', 'SENTSINCE', 'SINCE', 'SMALLER', 'SUBJECT', 'TEXT', 'TO', 'UID', 'UNANSWERED', 'UNDELETED', 'UNDRAFT', 'UNFLAGGED', 'UNKEYWORD', 'UNSEEN', 'OLDER', 'YOUNGER', 'CHARSET', 'not', 'or', 'Since'];
    const args = ['1-Feb-2008', '31-Foo-2008', '"1-Feb-2008"', '29-Feb-2008', '1:*', '*', '0', '5', '-1', '2:4,1', '"x"', '""', '"\\"q\\\\"', '"a\\b"', '"open', '{3}\r\nabc', '{2}', '{9}\r\nab', '{1}\nx', '(', ')', '((', '))', '\\Seen', '\\Nope', 'UTF-8', 'KOI8-R', 'é', 'ſ', '\u0000', '\t', '😀', 'X-Mailer', 'smith', '99999999999999999999', '{', '}', '\\', '"'];
    const printable = ' ()"{}\\*:,-0123456789abcXYZ\r\n\u00e9\u03a3';
    let parsed = 0;
    let rejected = 0;
    const simple = ['ALL', 'ANSWERED', 'DELETED', 'DRAFT', 'FLAGGED', 'NEW', 'OLD', 'RECENT', 'SEEN', 'UNANSWERED', 'UNDELETED', 'UNDRAFT', 'UNFLAGGED', 'UNSEEN', '2:*', '*'];
    const withString = ['BCC', 'BODY', 'CC', 'FROM', 'SUBJECT', 'TEXT', 'TO', 'KEYWORD', 'UNKEYWORD'];
    const withDate = ['BEFORE', 'ON', 'SINCE', 'SENTBEFORE', 'SENTON', 'SENTSINCE'];
    const strings = ['smith', '"xxx re"', '""', '{4}\r\ntest', 'café', '$Label1', '"\\"hi\\""'];
    /** A well-formed key, as a list of tokens. */
    const wellFormed = (depth: number): string[] => {
      const r = random();
      if (depth > 3 || r < 0.3) return [pick(simple)];
      if (r < 0.45) return [pick(withString), pick(strings)];
      if (r < 0.55) return [pick(withDate), pick(['1-Feb-2008', '"29-Feb-2008"', '31-Dec-2007'])];
      if (r < 0.6) return [pick(['LARGER', 'SMALLER', 'OLDER', 'YOUNGER']), pick(['0', '1000', '86400'])];
      if (r < 0.65) return ['UID', pick(['1:*', '20,45:50', '*'])];
      if (r < 0.7) return ['HEADER', pick(['X-Mailer', 'received', 'X-Empty']), pick(strings)];
      if (r < 0.8) return ['NOT', ...wellFormed(depth + 1)];
      if (r < 0.9) return ['OR', ...wellFormed(depth + 1), ...wellFormed(depth + 1)];
      return ['(', ...wellFormed(depth + 1), ...wellFormed(depth + 1), ')'];
    };
    for (let i = 0; i < 2000; i++) {
      const parts: string[] = [];
      if (i % 2 === 0) {
        // A well-formed filter, damaged now and then by one token dropped or inserted.
        const count = 1 + Math.floor(random() * 4);
        for (let j = 0; j < count; j++) parts.push(...wellFormed(0));
        if (random() < 0.3) parts.splice(Math.floor(random() * parts.length), 1);
        if (random() < 0.3) parts.splice(Math.floor(random() * (parts.length + 1)), 0, pick(args));
      }
      const count = i % 2 === 0 ? 0 : 1 + Math.floor(random() * 12);
      for (let j = 0; j < count; j++) {
        const r = random();
        if (r < 0.45) parts.push(pick(keys));
        else if (r < 0.9) parts.push(pick(args));
        else {
          let junk = '';
          const n = 1 + Math.floor(random() * 6);
          for (let k = 0; k < n; k++) junk += pick([...printable]);
          parts.push(junk);
        }
      }
      const filter = parts.join(random() < 0.9 ? ' ' : '');
      const options = pick([{}, BOUNDS, { timeZone: 'Asia/Tokyo', maxSeq: 3 }, { timeZone: 'UTC', maxUid: 0 }]);
      try {
        const program = parseSearch(filter, options);
        parsed++;
        for (const m of messages) assert.equal(typeof program.matches(m), 'boolean');
      } catch (e) {
        if (!(e instanceof SearchSyntaxError)) {
          assert.fail(`${JSON.stringify(filter)} threw ${e instanceof Error ? e.stack : String(e)}`);
        }
        assert.ok(e.message.length > 0);
        rejected++;
      }
    }
    assert.ok(parsed > 400, `only ${parsed} fuzz inputs parsed`);
    assert.ok(rejected > 500, `only ${rejected} fuzz inputs rejected`);
  });
});
