/**
 * spellerList and spellerCheck over the wire (spec section "Service"): the spell checkers
 * listed, English and Russian texts, positions and sizes in UTF-8 bytes and in characters
 * (mode="glyphs") of the XML-decoded text, guesses, unknown spellers, empty text, mixed
 * scripts, Unicode beyond the BMP, the text limits, and the checking kept off the server's
 * event loop.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { expectOk, fails, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let client: XimssClient;

before(async () => {
  server = await startTestServer();
  client = (await server.login(await server.newAccount('speller'), 'secret')).client;
});
after(() => server.stop());

interface Report {
  position: number;
  size: number;
  guesses: string[];
}

function checkRequest(text: string, attrs: Record<string, string> = {}): XmlElement {
  return new XmlElement('spellerCheck', attrs, text === '' ? [] : [text]);
}

/** spellerCheck's reports, checking each message's shape. */
async function check(c: XimssClient, text: string, attrs: Record<string, string> = {}): Promise<Report[]> {
  // The first check in a language loads its dictionary (seconds for Russian).
  const reply = expectOk(await c.request(checkRequest(text, attrs), 60_000));
  return reply.messages.map((m) => {
    assert.equal(m.name, 'spellerReport', m.toString());
    assert.match(m.attrs.position ?? '', /^\d+$/);
    assert.match(m.attrs.size ?? '', /^\d+$/);
    for (const child of m.elements()) assert.equal(child.name, 'guess', m.toString());
    return { position: Number(m.attrs.position), size: Number(m.attrs.size), guesses: m.elements('guess').map((g) => g.text()) };
  });
}

/** The words the reports point at, cut from the text as the server measured it. */
function reported(text: string, reports: Report[], glyphs = false): string[] {
  if (glyphs) {
    const chars = [...text];
    return reports.map((r) => chars.slice(r.position, r.position + r.size).join(''));
  }
  const bytes = Buffer.from(text, 'utf8');
  return reports.map((r) => bytes.subarray(r.position, r.position + r.size).toString('utf8'));
}

describe('spellerList', () => {
  test('lists the installed spell checkers, English and Russian, as speller messages', async () => {
    const reply = await ok(client, '<spellerList/>');
    assert.ok(reply.messages.every((m) => m.name === 'speller' && m.attrs.id === reply.response.attrs.id));
    assert.deepEqual(reply.messages.map((m) => m.attrs.speller), ['English-US', 'Russian']);
  });
});

describe('spellerCheck', () => {
  test('English: each misspelled word is reported at its byte position with guesses', async () => {
    const text = 'I recieve a smple text, with no other errors.';
    const reports = await check(client, text, { speller: 'English-US' });
    assert.deepEqual(reported(text, reports), ['recieve', 'smple']);
    assert.deepEqual(reports.map((r) => [r.position, r.size]), [[2, 7], [12, 5]]);
    assert.ok(reports[0]!.guesses.includes('receive'), reports[0]!.guesses.join());
    assert.ok(reports[1]!.guesses.includes('simple'), reports[1]!.guesses.join());
  });

  test('English: contractions, capitals, numbers and hyphenated words are not errors', async () => {
    const text = "Don't worry: it’s the 3rd time R2D2 met a well-known friend in PARIS.";
    assert.deepEqual(await check(client, text, { speller: 'English-US' }), []);
  });

  test('Russian: positions in bytes by default, in characters with mode="glyphs"', async () => {
    const text = 'Привет, как дила? Всё карова.';
    const bytes = await check(client, text, { speller: 'Russian' });
    assert.deepEqual(reported(text, bytes), ['дила', 'карова']);
    assert.deepEqual(bytes.map((r) => [r.position, r.size]), [[21, 8], [38, 12]]);
    assert.ok(bytes[0]!.guesses.includes('дела'), bytes[0]!.guesses.join());
    assert.ok(bytes[1]!.guesses.includes('корова'), bytes[1]!.guesses.join());
    const glyphs = await check(client, text, { speller: 'Russian', mode: 'glyphs' });
    assert.deepEqual(glyphs.map((r) => [r.position, r.size]), [[12, 4], [22, 6]]);
    assert.deepEqual(reported(text, glyphs, true), ['дила', 'карова']);
    assert.deepEqual(glyphs.map((r) => r.guesses), bytes.map((r) => r.guesses));
  });

  test('speller names: aliases and any case are accepted; an unknown one is a clear error; absent, the session language is used', async () => {
    assert.equal((await check(client, 'teh', { speller: 'english' })).length, 1);
    assert.equal((await check(client, 'превет', { speller: 'ru-RU' })).length, 1);
    await fails(client, checkRequest('hello', { speller: 'Klingon' }), /^unknown speller "Klingon" \(known: English-US, Russian\)$/);
    await fails(client, checkRequest('', { speller: 'Klingon' }), /unknown speller/);
    // The session's Language is English: English is checked.
    assert.deepEqual(reported('a wrod', await check(client, 'a wrod')), ['wrod']);
  });

  test('empty text, and text without words, answer with no report', async () => {
    assert.deepEqual(await check(client, '', { speller: 'English-US' }), []);
    assert.deepEqual(await check(client, '   \n\t ', { speller: 'Russian' }), []);
    assert.deepEqual(await check(client, '12 + 34 = 46 ... !!!', { speller: 'English-US' }), []);
    assert.deepEqual((await ok(client, '<spellerCheck id="x" speller="Russian"/>')).messages, []);
  });

  test('mixed scripts: each speller judges the words of its script; a word mixing scripts is wrong in both', async () => {
    // "пpивет" has a Latin p in the middle: a look-alike.
    const text = 'Hello карова, wrld! Это test. пpивет';
    assert.deepEqual(reported(text, await check(client, text, { speller: 'English-US' })), ['wrld', 'пpивет']);
    assert.deepEqual(reported(text, await check(client, text, { speller: 'Russian' })), ['карова', 'пpивет']);
  });

  test('Unicode: characters outside the BMP and XML-decoded entities count as the spec says', async () => {
    // Sent as "&amp; &#x1F600; teh": the server checks the decoded text "& 😀 teh".
    const reply = await ok(client, '<spellerCheck speller="English-US">&amp; &#x1F600; teh</spellerCheck>');
    assert.deepEqual(reply.messages.map((m) => [m.attrs.position, m.attrs.size]), [['7', '3']]);
    const glyphs = await ok(client, '<spellerCheck speller="English-US" mode="glyphs">&amp; &#x1F600; teh</spellerCheck>');
    assert.deepEqual(glyphs.messages.map((m) => [m.attrs.position, m.attrs.size]), [['4', '3']]);
    // A word with a combining mark is one word, looked up composed: "е" + U+0308 is "ё" (ёлка is right).
    const text = 'е\u0308лка карова';
    const glyphReports = await check(client, text, { speller: 'Russian', mode: 'glyphs' });
    assert.deepEqual(glyphReports.map((r) => [r.position, r.size]), [[6, 6]]);
    assert.deepEqual(reported(text, glyphReports, true), ['карова']);
    const byteReports = await check(client, text, { speller: 'Russian' });
    assert.deepEqual(byteReports.map((r) => [r.position, r.size]), [[11, 12]]);
  });

  test('a body with elements is refused', async () => {
    await fails(client, '<spellerCheck speller="English-US">a <b>bold</b> text</spellerCheck>', /plain text/);
  });

  test('the same misspelling twice is reported twice, with the same guesses', async () => {
    const text = 'teh cat and teh dog';
    const reports = await check(client, text, { speller: 'English-US' });
    assert.deepEqual(reports.map((r) => r.position), [0, 12]);
    assert.deepEqual(reports[0]!.guesses, reports[1]!.guesses);
    assert.ok(reports[0]!.guesses.length > 0);
  });
});

describe('spellerCheck limits', () => {
  let tight: TestServer;
  let user: XimssClient;
  before(async () => {
    tight = await startTestServer({ limits: { spellerTextBytes: 200, spellerWords: 10, spellerGuessWords: 2 } });
    user = (await tight.login(await tight.newAccount('tight'), 'secret')).client;
  });
  after(() => tight.stop());

  test('a text larger than spellerTextBytes is refused; so is the default limit on a larger text', async () => {
    await fails(user, checkRequest('я'.repeat(101), { speller: 'Russian' }), 'the text is too large (202 bytes; at most 200)');
    // 200 bytes pass; a word that long is wrong and gets no guesses.
    assert.deepEqual(await check(user, 'я'.repeat(100), { speller: 'Russian' }), [{ position: 0, size: 200, guesses: [] }]);
    await fails(client, checkRequest('hello '.repeat(100_000), { speller: 'English-US' }), /^the text is too large \(600000 bytes; at most 524288\)$/);
  });

  test('more than spellerWords words are refused before any is checked', async () => {
    await fails(user, checkRequest('one two three four five six seven eight nine ten eleven', { speller: 'English-US' }), 'the text has too many words (at most 10)');
    assert.deepEqual(await check(user, 'one two three four five six seven eight nine ten', { speller: 'English-US' }), []);
    // Words of another script do not count.
    assert.deepEqual(await check(user, 'один два три четыре пять шесть семь восемь девять десять одиннадцать', { speller: 'English-US' }), []);
  });

  test('only the first spellerGuessWords distinct misspellings get guesses; all are reported', async () => {
    const reports = await check(user, 'teh wrold recieve teh', { speller: 'English-US' });
    assert.equal(reports.length, 4);
    assert.ok(reports[0]!.guesses.length > 0 && reports[1]!.guesses.length > 0);
    assert.deepEqual(reports[2]!.guesses, []);
    assert.deepEqual(reports[3]!.guesses, reports[0]!.guesses);
  });
});

describe('spellerCheck off the event loop', () => {
  test('a long Russian text with many misspellings does not hold up another client', async () => {
    const other = (await server.login(await server.newAccount('other'), 'secret')).client;
    const words: string[] = [];
    for (let i = 0; i < 20_000; i++) words.push(i % 50 === 0 ? `карова${String.fromCharCode(0x430 + (i % 32))}` : 'корова');
    const order: string[] = [];
    const big = client.request(checkRequest(words.join(' '), { speller: 'Russian' }), 120_000).then((reply) => {
      order.push('check');
      return reply;
    });
    const noop = other.request('<noop/>', 120_000).then(() => order.push('noop'));
    const [reply] = await Promise.all([big, noop]);
    assert.equal(reply.response.attrs.errorText, undefined);
    assert.equal(reply.messages.length, 400);
    assert.deepEqual(order, ['noop', 'check']);
  });
});
