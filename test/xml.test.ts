/**
 * The XML layer on its own: the CommuniGate object presentation (objects.ts), XIMSS times
 * (time.ts), and the parser's fast path against the full parser on generated input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { XmlElement } from '../src/xml/element.js';
import { appendValue, isDictionary, readValue, valueChildren, type XimssValue } from '../src/xml/objects.js';
import { XmlDocumentParser, XmlParseError, parseXml, parseXmlRange } from '../src/xml/parser.js';
import { formatGmt, formatLocal, hostTimeZone, isKnownTimeZone, parseGmt } from '../src/xml/time.js';
import { seededRandom as prng } from './helpers.js';

/** `value` written into an element, serialized, parsed again and read back. */
function roundTrip(value: XimssValue): XimssValue {
  const written = appendValue(new XmlElement('x'), value);
  assert.deepEqual(readValue(written), value, 'read back from the element tree');
  return readValue(parseXml(written.toString()));
}

function body(xml: string): XimssValue {
  return readValue(parseXml(xml));
}

describe('object presentation', () => {
  test('strings, arrays, dictionaries and datablocks survive a round trip through XML text', () => {
    const values: XimssValue[] = [
      'plain',
      'special & <chars> "quoted" \'single\' ]]> é ☺ 😀',
      ['one', 'two', ''],
      { key: 'value', 'odd key & "quotes"': 'x', empty: '' },
      { nested: { list: ['a', { deep: ['1', '2'] }], blob: Buffer.from([0, 1, 2, 250, 255]) }, after: 'last' },
      Buffer.from('hello, world'),
      Buffer.alloc(0),
      [[['deep']], ['']],
    ];
    for (const value of values) assert.deepEqual(roundTrip(value), value, JSON.stringify(value));
  });

  test('the presentation has the documented shape; dictionary keys keep their order', () => {
    const element = appendValue(new XmlElement('prefs'), { b: '2', a: ['x', Buffer.from('hi')] });
    assert.equal(
      element.toString(),
      '<prefs><subKey key="b">2</subKey><subKey key="a"><subValue>x</subValue><subValue><base64>aGk=</base64></subValue></subKey></prefs>',
    );
    assert.deepEqual(Object.keys(readValue(element) as object), ['b', 'a']);
    assert.deepEqual(valueChildren(['1']).map(String), ['<subValue>1</subValue>']);
    assert.deepEqual(valueChildren('text'), ['text']);
    assert.deepEqual(valueChildren(''), []);
  });

  test('an empty string, dictionary and array all have an empty presentation, read back as the empty string', () => {
    for (const empty of ['', {}, []] as XimssValue[]) {
      const element = appendValue(new XmlElement('x'), empty);
      assert.equal(element.toString(), '<x/>');
      assert.equal(readValue(element), '');
    }
  });

  test('base64 may be wrapped over lines', () => {
    assert.deepEqual(body('<x><base64>\n  aGVs\n  bG8=\n</base64></x>'), Buffer.from('hello'));
  });

  test('a "__proto__" key is an ordinary key, not the prototype', () => {
    const value = body('<x><subKey key="__proto__"><subKey key="polluted">yes</subKey></subKey><subKey key="k">v</subKey></x>');
    assert.ok(isDictionary(value));
    assert.equal(Object.getPrototypeOf(value), Object.prototype);
    assert.deepEqual(Object.keys(value), ['__proto__', 'k']);
    assert.equal((value as { polluted?: string }).polluted, undefined);
    assert.equal(appendValue(new XmlElement('x'), value).toString(), '<x><subKey key="__proto__"><subKey key="polluted">yes</subKey></subKey><subKey key="k">v</subKey></x>');
  });

  test('isDictionary', () => {
    assert.equal(isDictionary({ a: '1' }), true);
    assert.equal(isDictionary({}), true);
    for (const other of ['s', [], Buffer.from('b'), undefined] as (XimssValue | undefined)[]) assert.equal(isDictionary(other), false);
  });

  test('malformed presentations are TypeErrors naming the problem', () => {
    const cases: [string, RegExp][] = [
      ['<x><subKey key="a">1</subKey><subValue>2</subValue></x>', /unexpected <subValue> in a dictionary/],
      ['<x><subKey>1</subKey></x>', /subKey element without a key attribute/],
      ['<x><subValue>1</subValue><subKey key="a">2</subKey></x>', /unexpected <subKey> in an array/],
      ['<x><foo/></x>', /unexpected <foo> in an object presentation/],
      ['<x><base64>aGk=</base64><base64>aGk=</base64></x>', /unexpected <base64>/],
      ['<x><subValue><subKey key="a">1</subKey><bad/></subValue></x>', /unexpected <bad> in a dictionary/],
    ];
    for (const [xml, message] of cases) assert.throws(() => body(xml), (err: unknown) => err instanceof TypeError && message.test(err.message), xml);
  });
});

describe('XIMSS times', () => {
  const sample = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));

  test('formatGmt: YYYYMMDDTHHMMSS in GMT, zero-padded', () => {
    assert.equal(formatGmt(sample), '20240102T030405');
    assert.equal(formatGmt(new Date(Date.UTC(2023, 11, 31, 23, 59, 59, 999))), '20231231T235959');
    const early = new Date(0);
    early.setUTCFullYear(987, 5, 7);
    assert.equal(formatGmt(early), '09870607T000000');
  });

  test('formatLocal in Asia/Tokyo (UTC+9, no daylight saving): across midnight and the year, hours 00-23', () => {
    assert.equal(formatLocal(sample, 'Asia/Tokyo'), '20240102T120405');
    assert.equal(formatLocal(new Date(Date.UTC(2024, 11, 31, 15, 30, 0)), 'Asia/Tokyo'), '20250101T003000');
    assert.equal(formatLocal(new Date(Date.UTC(2024, 1, 28, 20, 0, 1)), 'Asia/Tokyo'), '20240229T050001');
  });

  test('formatLocal with HostOS, no zone or an unknown zone is the server\'s wall-clock time', () => {
    const local = (d: Date): string =>
      `${String(d.getFullYear()).padStart(4, '0')}${String(d.getMonth() + 1).padStart(2, '0')}${String(d.getDate()).padStart(2, '0')}T` +
      `${String(d.getHours()).padStart(2, '0')}${String(d.getMinutes()).padStart(2, '0')}${String(d.getSeconds()).padStart(2, '0')}`;
    for (const date of [sample, new Date(Date.UTC(2024, 6, 15, 12, 0, 0)), new Date()]) {
      const expected = local(date);
      assert.equal(formatLocal(date, 'HostOS'), expected);
      assert.equal(formatLocal(date, undefined), expected);
      assert.equal(formatLocal(date, 'Not/AZone'), expected);
      assert.equal(formatLocal(date, hostTimeZone()), expected);
    }
  });

  test('isKnownTimeZone', () => {
    assert.equal(isKnownTimeZone('Asia/Tokyo'), true);
    assert.equal(isKnownTimeZone('UTC'), true);
    assert.equal(isKnownTimeZone('Not/AZone'), false);
    assert.equal(isKnownTimeZone(''), false);
  });

  test('parseGmt reads what formatGmt writes, with an optional Z and surrounding blanks', () => {
    assert.deepEqual(parseGmt('20240102T030405'), sample);
    assert.deepEqual(parseGmt('20240102T030405Z'), sample);
    assert.deepEqual(parseGmt(' 20240102T030405\n'), sample);
    assert.deepEqual(parseGmt('20240229T235959'), new Date(Date.UTC(2024, 1, 29, 23, 59, 59)));
    for (const date of [new Date(0), new Date(Date.UTC(2099, 11, 31, 23, 59, 59)), new Date(Math.floor(Date.now() / 1000) * 1000)]) {
      assert.deepEqual(parseGmt(formatGmt(date)), date);
    }
    const early = new Date(0);
    early.setUTCFullYear(50, 0, 1);
    assert.deepEqual(parseGmt('00500101T000000'), early, 'years below 100 are not taken for 19xx');
  });

  test('parseGmt rejects garbage and impossible dates', () => {
    for (const bad of [
      '',
      'garbage',
      '2024-01-02T03:04:05',
      '2024-01-02',
      '20240102',
      '20240102T0304',
      '20240102T030405+0900',
      '20240102T030405ZZ',
      '20240102 030405',
      '20240102t030405',
      '２０２４0102T030405',
      '20241302T000000',
      '20240001T000000',
      '20240100T000000',
      '20240132T000000',
      '20230229T000000',
      '20240431T000000',
      '20240102T240000',
      '20240102T236000',
      '20240102T235960',
    ]) {
      assert.equal(parseGmt(bad), undefined, JSON.stringify(bad));
    }
  });
});


/**
 * Random documents shaped like requests, well-formed or broken in the ways the fast path
 * must notice. Each document has a noise level: the chance that any one part of it is
 * taken from the irregular choices rather than the regular ones.
 */
function generator(random: () => number): () => string {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  let noise = 0;
  /** A regular choice, or (with the document's noise level) an irregular one. */
  const choose = <T>(regular: readonly T[], irregular: readonly T[]): T => (random() < noise ? pick(irregular) : pick(regular));
  const repeat = (max: number, part: () => string): string => {
    let s = '';
    for (let n = Math.floor(random() * (max + 1)); n > 0; n--) s += part();
    return s;
  };
  const names = ['noop', 'a', 'XIMSS', 'login', 'x-y', 'a.b', '_z', 'a1', 'A_b-c.9'];
  const badNames = ['é', 'a:b', '1a', '-a', '.a', 'a b', '', '<a', 'a/'];
  const attrNames = ['id', 'id', 'x', 'y', 'authData', 'a-b', '_c', 'd.e', 'z9', 'xmlns', '__proto__', 'constructor'];
  const badAttrNames = ['x:y', 'xmlns:p', '1bad', '-a', 'é', '', 'a"', 'a=', '/'];
  const valueParts = ['a', 'Z', '1', '-', ' ', '  ', 'word', 'é', '☺', '😀', '>', '=', '/', '/>', ']]>', '\u00a0', '?', '#', ';'];
  const badValueParts = [
    '&amp;', '&lt;', '&gt;', '&quot;', '&apos;', '&#10;', '&#x41;', '&#9;', '&', '&bogus;', '&amp', '<', '"', "'", '\t',
    '\n', '\r', '\r\n', '\u0001', '\u0000', '\u001f', '\ufffe', '\uffff', '\ud800', '\udfff', '\udc00x',
  ];
  const separators = [' ', ' ', ' ', '  ', '\t', '\n', '\r\n', ' \t'];
  const around = ['', '', '', '', ' ', '\t', '\n'];
  const attribute = (): string => {
    const quote = pick(['"', '"', '"', "'"]);
    const value = repeat(4, () => choose(valueParts, badValueParts));
    return (
      choose(separators, ['', '', '/', ',']) +
      choose(attrNames, badAttrNames) +
      pick(around) +
      choose(['='], ['', '==', ':', '= =']) +
      pick(around) +
      choose([quote], ['', '`', quote === '"' ? "'" : '"']) +
      value +
      choose([quote], ['', quote + quote, quote === '"' ? "'" : '"'])
    );
  };
  const endings = (name: string): string[] => ['/>', '/>', '/>', '/>', ' />', '\n/>', `></${name}>`, `>text</${name}>`, `> </${name}>`, `><child a="1"/></${name}>`, `>&amp;</${name}>`];
  const badEndings = ['/ >', '/', '>', '', '></other>', '//>', '/>>', '?>'];
  const trailers = ['', '', '', '', '', ' ', '\n', '\r\n\t ', '<!-- note -->', '<?pi x?>'];
  const badTrailers = ['junk', '<b/>', '\u0000', '>', ' x', '</a>', '<', '&amp;'];
  const prologs = ['', '', '', '', '', ' ', '\n\t', '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>\n', '<!-- c -->'];
  const badPrologs = ['x', '\ufeff', '<?xml version="1.0"?><?xml version="1.0"?>', '<!DOCTYPE a>', '&amp;'];
  // Pipelined requests come in runs of one shape: `<noop id="1"/>`, `<noop id="2"/>`...
  let shape = '<noop id="';
  const sameShape = (): string => {
    if (random() < 0.2) shape = `<${pick(names)} ${pick(attrNames)}="`;
    const name = shape.slice(1, shape.indexOf(' '));
    return choose([''], prologs) + shape + repeat(3, () => choose(valueParts, badValueParts)) + choose(['"/>'], ['"', '" />', "'/>", `"></${name}>`, '"/', '""/>', '" x="1"/>']) + choose([''], trailers);
  };
  return () => {
    noise = pick([0, 0, 0.02, 0.05, 0.1, 0.3]);
    if (random() < 0.25) return sameShape();
    const name = choose(names, badNames);
    return choose(prologs, badPrologs) + '<' + name + repeat(4, attribute) + choose(endings(name), badEndings) + choose(trailers, badTrailers);
  };
}

/** What a parse produced, as text: the serialization, or the failure. */
function outcome(parse: () => XmlElement): string {
  try {
    return `ok ${parse().toString()}`;
  } catch (err) {
    if (err instanceof XmlParseError) return `error ${err.message}`;
    return `threw ${String(err)}`;
  }
}

describe('parser fast path', () => {
  test('parseXml and parseXmlRange answer exactly as the full parser on generated input', () => {
    // XML_FUZZ_SEED / XML_FUZZ_COUNT run other inputs, or more of them.
    const seed = Number(process.env.XML_FUZZ_SEED ?? 20240611);
    const count = Number(process.env.XML_FUZZ_COUNT ?? 5000);
    const random = prng(seed);
    const next = generator(random);
    // Counts the documents the fast path did not take (it hands them to XmlDocumentParser).
    let fullParses = 0;
    const fullParse = XmlDocumentParser.prototype.parse;
    XmlDocumentParser.prototype.parse = function (this: XmlDocumentParser, source: string): XmlElement {
      fullParses++;
      return fullParse.call(this, source);
    };
    const mismatches: string[] = [];
    let accepted = 0;
    let fastAccepted = 0;
    try {
      for (let i = 0; i < count; i++) {
        const input = next();
        fullParses = 0;
        const expected = outcome(() => new XmlDocumentParser().parse(input));
        fullParses = 0;
        const fast = outcome(() => parseXml(input));
        const tookFastPath = fullParses === 0;
        const padding = '<p x="1"/>\0';
        const inBuffer = padding + input + '\0' + padding;
        const ranged = outcome(() => parseXmlRange(inBuffer, padding.length, padding.length + input.length));
        if (expected.startsWith('ok')) accepted++;
        if (tookFastPath && fast.startsWith('ok')) fastAccepted++;
        if (fast !== expected || ranged !== expected) {
          mismatches.push(
            `#${i} input ${JSON.stringify(input)}\n  full parser:   ${expected}\n  parseXml:      ${fast}${tookFastPath ? ' (fast path)' : ''}\n  parseXmlRange: ${ranged}`,
          );
        }
      }
    } finally {
      XmlDocumentParser.prototype.parse = fullParse;
    }
    assert.deepEqual(mismatches.slice(0, 10), [], `seed ${seed}: ${mismatches.length} of ${count} inputs differ`);
    // The generator must keep exercising both paths, or the comparison proves little.
    assert.ok(fastAccepted > count * 0.1, `only ${fastAccepted} of ${count} inputs took the fast path`);
    assert.ok(accepted - fastAccepted > count * 0.05, `only ${accepted - fastAccepted} well-formed inputs went to the full parser`);
    assert.ok(count - accepted > count * 0.2, `only ${count - accepted} malformed inputs`);
  });

  test('characters XML does not allow in attribute values: U+FFFE, U+FFFF, unpaired surrogates', () => {
    const full = new XmlDocumentParser();
    const differ: string[] = [];
    const units = [0xfffe, 0xffff];
    for (let c = 0xd800; c <= 0xdfff; c++) units.push(c);
    for (const unit of units) {
      const input = `<noop id="${String.fromCharCode(unit)}"/>`;
      const expected = outcome(() => full.parse(input));
      const actual = outcome(() => parseXml(input));
      if (actual !== expected) differ.push(`U+${unit.toString(16).toUpperCase()}: full parser ${expected}, parseXml ${actual}`);
    }
    assert.deepEqual(differ.slice(0, 4), [], `${differ.length} of ${units.length} differ`);
  });

  test('the fast path hands over what it must not decide (examples)', () => {
    const full = new XmlDocumentParser();
    for (const input of [
      '<noop id="A001"/>',
      ' <noop id="1" exeTime="1" />\n',
      "<a x='1' y=\"'\"/>",
      '<a x="1&amp;2"/>',
      '<a x="1" x="2"/>',
      '<a x="1"y="2"/>',
      '<a x="\t\n"/>',
      '<a x="<"/>',
      '<a x=">"/>',
      '<a/><b/>',
      '<a/>junk',
      '<a x=1/>',
      '<é x="1"/>',
      '<a:b c:d="1"/>',
      '<a/ >',
    ]) {
      assert.equal(outcome(() => parseXml(input)), outcome(() => full.parse(input)), JSON.stringify(input));
    }
  });
});
