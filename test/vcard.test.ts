/**
 * The vCard converter (src/services/contacts/): XML presentation ↔ vCard 3.0/4.0 text and
 * the vCardGroup text form, both ways, with many vectors: round trips, escaping, folding,
 * binary values, groups and parameters, what clients write, malformed input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  completeObject,
  composeItem,
  foldLine,
  fromXml,
  parseVObject,
  splitCards,
  toXml,
  VCardFormatError,
  writeVObject,
  type VCard,
  type VObject,
} from '../src/services/contacts/index.js';
import { vCardPartText, vCardPartXml } from '../src/services/contacts/mime.js';
import { parseXml } from '../src/xml/parser.js';
import { seededRandom } from './helpers.js';

const xml = (text: string): VObject => fromXml(parseXml(text));
const compact = (text: string): string => parseXml(text).toString();

/** XML -> text (version) -> XML gives the same XML. */
function xmlRoundTrip(source: string, version: '3.0' | '4.0' = '3.0'): string {
  const text = writeVObject(xml(source), version);
  const back = toXml(parseVObject(text)).toString();
  assert.equal(back, compact(source), `through:\n${text}`);
  return text;
}

/** text -> model -> text (same version) gives the same text. */
function textRoundTrip(text: string): void {
  const object = parseVObject(text);
  const version = object.kind === 'vcard' ? (object.version as '3.0' | '4.0') : '3.0';
  assert.equal(writeVObject(object, version), text);
}

const XML_VECTORS: [string, string][] = [
  ['the 026 example', '<vCard><NAME>Bjorn Jensen</NAME><N><FAMILY>Jensen</FAMILY><GIVEN>bjorn</GIVEN><MIDDLE>A</MIDDLE><PREFIX>Mr.</PREFIX><SUFFIX>II</SUFFIX></N><EMAIL><INTERNET/><USERID>bjorn@domain.dom</USERID></EMAIL><TEL><WORK/><VOICE/><MSG/><NUMBER>+1 313 747-4454</NUMBER></TEL><KEY><x509/><BINVAL>dGhpcyBjb3VsZCBiZSAKbXkgY2VydGlmaWNhdGUK</BINVAL></KEY></vCard>'],
  ['FN only', '<vCard><FN>Plain Name</FN></vCard>'],
  ['escapes in text', '<vCard><FN>a, b; c\\d</FN><NOTE>line 1\nline 2, with; all: of \\ them</NOTE></vCard>'],
  ['address', '<vCard><ADR><HOME/><POBOX>PO 1</POBOX><EXTADD>Apt 2</EXTADD><STREET>1 Main St, Rear</STREET><LOCALITY>Springfield</LOCALITY><REGION>IL</REGION><PCODE>62701</PCODE><CTRY>USA</CTRY></ADR></vCard>'],
  ['partial address', '<vCard><ADR><WORK/><STREET>Only street</STREET><CTRY>FR</CTRY></ADR></vCard>'],
  ['organisation', '<vCard><ORG><ORGNAME>Acme; Inc.</ORGNAME><ORGUNIT>R&amp;D</ORGUNIT><ORGUNIT>Lab 3</ORGUNIT></ORG><TITLE>Engineer</TITLE><ROLE>Lead</ROLE></vCard>'],
  ['several e-mails and phones', '<vCard><EMAIL><INTERNET/><PREF/><USERID>a@x.dom</USERID></EMAIL><EMAIL><HOME/><USERID>a@home.dom</USERID></EMAIL><TEL><CELL/><NUMBER>+33 6 12 34 56 78</NUMBER></TEL><TEL><FAX/><WORK/><NUMBER>+1 555 0100</NUMBER></TEL></vCard>'],
  ['categories', '<vCard><CATEGORIES><KEYWORD>friends</KEYWORD><KEYWORD>a, b</KEYWORD></CATEGORIES></vCard>'],
  ['birthday, URL, UID', '<vCard><BDAY>1990-01-02</BDAY><URL>http://example.com/a,b</URL><UID>urn:uuid:0d3e5f0a-1111-2222-3333-444455556666</UID></vCard>'],
  ['typed URL and note', '<vCard><URL><WORK/><VALUE>http://work.example/</VALUE></URL><NICKNAME><VALUE>first</VALUE><VALUE>second, too</VALUE></NICKNAME></vCard>'],
  ['photo binary', `<vCard><PHOTO><JPEG/><BINVAL>${Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256)).toString('base64')}</BINVAL></PHOTO></vCard>`],
  ['photo by reference', '<vCard><PHOTO><EXTVAL>http://example.com/me.jpg</EXTVAL></PHOTO></vCard>'],
  ['X- properties with parameters and groups', '<vCard><X-FILE-AS>Jensen, Bjorn</X-FILE-AS><X-ABLABEL group="item1">_$!&lt;Other&gt;!$_</X-ABLABEL><EMAIL group="item1"><USERID>o@x.dom</USERID></EMAIL><X-CUSTOM X-PARAM="one two">value; with, escapes</X-CUSTOM></vCard>'],
  ['geo', '<vCard><GEO><LAT>37.386013</LAT><LON>-122.082932</LON></GEO></vCard>'],
  ['non-ASCII', '<vCard><FN>Émile Zola — 左拉</FN><N><FAMILY>Zola</FAMILY><GIVEN>Émile</GIVEN></N></vCard>'],
  ['several given names', '<vCard><N><FAMILY>Doe</FAMILY><GIVEN>John</GIVEN><GIVEN>Paul</GIVEN></N></vCard>'],
  ['a parameter besides TYPE', '<vCard><TEL PREF="1"><HOME/><NUMBER>123</NUMBER></TEL></vCard>'],
  ['vCardGroup', '<vCardGroup><NAME>Friends, all</NAME><MEMBER CN="Ann Smith">ann@example.com</MEMBER><MEMBER CN="Doe, John">john@example.com</MEMBER><UID>g-1</UID></vCardGroup>'],
];

describe('XML -> text -> XML', () => {
  for (const [name, source] of XML_VECTORS) {
    test(`${name} (3.0)`, () => {
      xmlRoundTrip(source, '3.0');
    });
  }
  for (const [name, source] of XML_VECTORS.filter(([n]) => !['the 026 example', 'photo binary', 'geo', 'vCardGroup', 'birthday, URL, UID'].includes(n))) {
    test(`${name} (4.0)`, () => {
      xmlRoundTrip(source, '4.0');
    });
  }
});

describe('text -> XML -> text', () => {
  const TEXTS = [
    'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Simple\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:3.0\r\nN:Jensen;Bjorn;A;Mr.;II\r\nFN:Bjorn Jensen\r\nEMAIL;TYPE=INTERNET,PREF:b@x.dom\r\nTEL;TYPE=WORK,VOICE:+1 313 747-4454\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Esc\\, aped\\; text\\\\ and\\nnewline\r\nNOTE:x\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nitem1.EMAIL;TYPE=INTERNET:a@b.c\r\nitem1.X-ABLABEL:Other\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nKEY;TYPE=X509;ENCODING=b:MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nCATEGORIES:one,two\\,three\r\nADR;TYPE=HOME:;;1 Main St;Town;;12345;USA\r\nORG:Acme;Dept\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Four\r\nPHOTO:data:image/png;base64,iVBORw0KGgo=\r\nTEL;TYPE=CELL:+1 555 0101\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Four\r\nTEL;TYPE=HOME;VALUE=uri:tel:+1-555-0102\r\nEND:VCARD\r\n',
    'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:X\r\nX-CUSTOM;X-P=a:b\\;c\\,d\r\nEND:VCARD\r\n',
    'BEGIN:VGROUP\r\nNAME:The group\r\nMEMBER;CN="Doe, J":j@x.dom\r\nMEMBER:k@x.dom\r\nEND:VGROUP\r\n',
  ];
  TEXTS.forEach((text, i) => {
    test(`vector ${i + 1}`, () => {
      textRoundTrip(text);
      // And through the XML presentation.
      const object = parseVObject(text);
      const again = fromXml(parseXml(toXml(object).toString()));
      const version = object.kind === 'vcard' ? (object.version as '3.0' | '4.0') : '3.0';
      assert.equal(writeVObject(again, version), text);
    });
  });
});

describe('escaping and folding', () => {
  test('a backslash before a semicolon stays a backslash (ical.js alone reads both alike)', () => {
    const card = parseVObject('BEGIN:VCARD\r\nVERSION:3.0\r\nNOTE:a\\\\;b\r\nFN:x\\;y\r\nEND:VCARD\r\n') as VCard;
    assert.deepEqual(card.properties[0]!.value, { kind: 'text', values: ['a\\;b'] });
    assert.deepEqual(card.properties[1]!.value, { kind: 'text', values: ['x;y'] });
  });

  test('long lines fold at 75 octets without splitting UTF-8 sequences, and unfold back', () => {
    const long = 'Ж'.repeat(50) + ' and some ASCII ' + '€'.repeat(40) + '😀'.repeat(20);
    const text = writeVObject(xml(`<vCard><NOTE>${long}</NOTE></vCard>`));
    const lines = text.split('\r\n').slice(0, -1);
    for (const line of lines) {
      assert.ok(Buffer.byteLength(line, 'utf8') <= 75, `line too long: ${Buffer.byteLength(line)}`);
      assert.doesNotMatch(line, /\uFFFD/);
      assert.equal(Buffer.from(line, 'utf8').toString('utf8'), line);
    }
    assert.ok(lines.filter((l) => l.startsWith(' ')).length >= 3, 'folded');
    const back = parseVObject(text) as VCard;
    assert.deepEqual(back.properties[0]!.value, { kind: 'text', values: [long] });
  });

  test('foldLine: short lines unchanged, long ASCII lines in 75/74-octet pieces', () => {
    assert.equal(foldLine('FN:x'), 'FN:x\r\n');
    const folded = foldLine('NOTE:' + 'a'.repeat(200));
    const pieces = folded.split('\r\n');
    assert.equal(pieces[0]!.length, 75);
    assert.equal(pieces[1]!.length, 75);
    assert.ok(pieces[1]!.startsWith(' '));
    assert.equal(pieces.map((p, i) => (i === 0 ? p : p.slice(1))).join(''), 'NOTE:' + 'a'.repeat(200));
  });

  test('parameter values with separators are quoted; DQUOTE cannot be written and becomes an apostrophe', () => {
    const text = writeVObject(xml('<vCardGroup><MEMBER CN="Doe, J: &quot;JD&quot;">j@x.dom</MEMBER></vCardGroup>'));
    assert.match(text, /\r\nMEMBER;CN="Doe, J: 'JD'":j@x\.dom\r\n/);
  });

  test('CR LF and CR in values are written as \\n', () => {
    const text = writeVObject(xml('<vCard><NOTE>a&#13;&#10;b&#13;c</NOTE></vCard>'));
    assert.match(text, /\r\nNOTE:a\\nb\\nc\r\n/);
  });
});

describe('binary values and versions', () => {
  test('3.0 ENCODING=b with a TYPE becomes a 4.0 data: URI and back to BINVAL', () => {
    const v3 = 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRg==\r\nEND:VCARD\r\n';
    const v4 = writeVObject(parseVObject(v3), '4.0');
    assert.match(v4, /\r\nPHOTO:data:image\/jpeg;base64,\/9j\/4AAQSkZJRg==\r\n/);
    const photo = toXml(parseVObject(v4)).element('PHOTO')!;
    assert.equal(photo.element('TYPE')?.text(), 'image/jpeg');
    assert.equal(photo.element('BINVAL')?.text(), '/9j/4AAQSkZJRg==');
    // XEP-0054 style (TYPE with a media type) written as 3.0.
    assert.match(writeVObject(fromXml(photo.name === 'PHOTO' ? parseXml(`<vCard>${photo.toString()}</vCard>`) : photo)), /\r\nPHOTO;TYPE=JPEG;ENCODING=b:\/9j\/4AAQSkZJRg==\r\n/);
  });

  test('BINVAL with white space is taken, invalid base64 refused', () => {
    const card = xml('<vCard><PHOTO><BINVAL>\n  AAEC\n  AwQF\n</BINVAL></PHOTO></vCard>') as VCard;
    assert.deepEqual(card.properties[0]!.value, { kind: 'binary', base64: 'AAECAwQF' });
    assert.throws(() => xml('<vCard><PHOTO><BINVAL>AA*=</BINVAL></PHOTO></vCard>'), VCardFormatError);
    assert.throws(() => parseVObject('BEGIN:VCARD\r\nVERSION:3.0\r\nPHOTO;ENCODING=b:AA*=\r\nEND:VCARD\r\n'), /invalid base64/);
  });

  test('dates are written in the basic form in 4.0', () => {
    const text = writeVObject(parseVObject('BEGIN:VCARD\r\nVERSION:3.0\r\nFN:D\r\nBDAY:1990-01-02\r\nREV:2020-01-01T10:10:10Z\r\nEND:VCARD\r\n'), '4.0');
    assert.match(text, /\r\nBDAY:19900102\r\n/);
    assert.match(text, /\r\nREV:20200101T101010Z\r\n/);
  });
});

describe('vCard 2.1 (old phones, Outlook)', () => {
  test('bare parameters, QUOTED-PRINTABLE with CHARSET and soft breaks, BASE64 with a closing empty line', () => {
    const v21 =
      'BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Zola;=C3=89mile\r\nFN:Emile Zola\r\nTEL;WORK;VOICE:+33 1 23\r\n' +
      'NOTE;ENCODING=QUOTED-PRINTABLE:line one=0D=0Aline=\r\n two\r\nADR;HOME;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:;;Rue=E9;Paris;;;FR\r\n' +
      'PHOTO;JPEG;ENCODING=BASE64:\r\n    /9j/4AAQ\r\n    SkZJRg==\r\n\r\nEMAIL;PREF;INTERNET:e@z.fr\r\nEND:VCARD\r\n';
    assert.equal(
      writeVObject(parseVObject(v21)),
      'BEGIN:VCARD\r\nVERSION:3.0\r\nN:Zola;Émile\r\nFN:Emile Zola\r\nTEL;TYPE=WORK,VOICE:+33 1 23\r\nNOTE:line one\\nline two\r\n' +
        'ADR;TYPE=HOME:;;Rueé;Paris;;;FR\r\nPHOTO;TYPE=JPEG;ENCODING=b:/9j/4AAQSkZJRg==\r\nEMAIL;TYPE=PREF,INTERNET:e@z.fr\r\nEND:VCARD\r\n',
    );
  });
});

describe('what clients write', () => {
  test('values wrapped in VALUE, LABEL with LINE, ORG with ORGNAME/ORGUNIT, ALIAS, X-FILE-AS', () => {
    const card = xml(
      '<vCard><FN><VALUE>Wrapped Name</VALUE></FN><X-FILE-AS>Name, Wrapped</X-FILE-AS><LABEL><HOME/><LINE>1 Main St</LINE><LINE>Town</LINE></LABEL><ORG><ORGNAME>Acme</ORGNAME><ORGUNIT>Sales</ORGUNIT></ORG><ALIAS>wn</ALIAS></vCard>',
    ) as VCard;
    const text = writeVObject(card);
    assert.match(text, /\r\nFN:Wrapped Name\r\n/);
    assert.match(text, /\r\nLABEL;TYPE=HOME:1 Main St\\nTown\r\n/);
    assert.match(text, /\r\nORG:Acme;Sales\r\n/);
    assert.match(text, /\r\nALIAS:wn\r\n/);
    assert.match(text, /\r\nX-FILE-AS:Name\\, Wrapped\r\n/);
  });

  test('pretty-printed XML: white space around values is layout', () => {
    const card = xml('<vCard>\n  <N>\n    <FAMILY> Doe </FAMILY>\n    <GIVEN>Jane</GIVEN>\n  </N>\n  <EMAIL>\n    <INTERNET/>\n    <USERID>\n      jane@x.dom\n    </USERID>\n  </EMAIL>\n  <NOTE>\n    hello\n  </NOTE>\n</vCard>');
    assert.equal(writeVObject(card), 'BEGIN:VCARD\r\nVERSION:3.0\r\nN:Doe;Jane\r\nEMAIL;TYPE=INTERNET:jane@x.dom\r\nNOTE:hello\r\nEND:VCARD\r\n');
  });

  test('completeObject adds a UID and an FN (from N, NAME, ORG or an address) and keeps given ones', () => {
    const fromN = xml('<vCard><N><FAMILY>Doe</FAMILY><GIVEN>Jane</GIVEN><PREFIX>Dr.</PREFIX></N></vCard>') as VCard;
    const uid = completeObject(fromN);
    assert.match(uid, /^urn:uuid:[0-9a-f-]{36}$/);
    assert.match(writeVObject(fromN), /\r\nN:Doe;Jane;;Dr\.\r\nFN:Dr\. Jane Doe\r\n/);
    const fromOrg = xml('<vCard><ORG><ORGNAME>Acme</ORGNAME></ORG><UID>keep-me</UID></vCard>') as VCard;
    assert.equal(completeObject(fromOrg), 'keep-me');
    assert.match(writeVObject(fromOrg), /\r\nFN:Acme\r\n/);
    const fromMail = xml('<vCard><EMAIL><USERID>only@x.dom</USERID></EMAIL></vCard>') as VCard;
    completeObject(fromMail);
    assert.match(writeVObject(fromMail), /^BEGIN:VCARD\r\nVERSION:3\.0\r\nFN:only@x\.dom\r\n/);
  });

  test('the item message: header fields for contactFind, a text/directory body', () => {
    const card = xml('<vCard><FN>Zoë Example</FN><X-FILE-AS>Example, Zoë</X-FILE-AS><EMAIL><USERID>z@x.dom</USERID></EMAIL><EMAIL><USERID>z2@x.dom</USERID></EMAIL><TEL><HOME/><NUMBER>+1 555 0100</NUMBER></TEL><TEL><NUMBER>555 0200</NUMBER></TEL></vCard>');
    completeObject(card);
    const raw = composeItem(card, { timeZone: 'UTC', hostname: 'example.dom', date: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) }).toString('utf8');
    const header = raw.slice(0, raw.indexOf('\r\n\r\n'));
    assert.match(header, /^Subject: =\?UTF-8\?Q\?Zo=C3=AB\?= Example$/m);
    assert.match(header, /^To: =\?UTF-8\?Q\?Example=2C_Zo=C3=AB\?= <z@x\.dom>,\r\n =\?UTF-8\?Q\?Example=2C_Zo=C3=AB\?= <z2@x\.dom>$/m);
    assert.match(header, /^X-Telnum: \+1 555 0100 \(HOME\),\r\n 555 0200$/m);
    assert.doesNotMatch(header, /X-Has-Certificate/);
    assert.match(header, /^Date: Tue, 02 Jan 2024 03:04:05 \+0000$/m);
    assert.match(header, /^Content-Type: text\/directory; charset=utf-8; profile=vCard$/m);
    assert.match(raw.slice(header.length), /^\r\n\r\nBEGIN:VCARD\r\n/);
  });
});

describe('vCard MIME parts', () => {
  test('several vCards in a text/directory part, one vCardGroup in text/x-vgroup', () => {
    const text = vCardPartText('directory', [parseXml('<vCard><FN>A</FN></vCard>'), parseXml('<vCard><FN>B</FN></vCard>')]);
    assert.equal(text, 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:B\r\nEND:VCARD\r\n');
    const shown = vCardPartXml('directory', text.replace(/\r\n/g, '\n'));
    assert.deepEqual(shown.problems, []);
    assert.deepEqual(shown.elements.map(String), ['<vCard><FN>A</FN></vCard>', '<vCard><FN>B</FN></vCard>']);
    assert.throws(() => vCardPartText('x-vgroup', [parseXml('<vCard><FN>A</FN></vCard>')]), /unexpected element <vCard>/);
    assert.throws(() => vCardPartText('x-vgroup', []), /one vCardGroup/);
    const group = vCardPartXml('x-vgroup', 'BEGIN:VGROUP\nNAME:G\nEND:VGROUP\n');
    assert.deepEqual(group.elements.map(String), ['<vCardGroup><NAME>G</NAME></vCardGroup>']);
    const mixed = vCardPartXml('directory', 'BEGIN:VCARD\nVERSION:3.0\nFN:ok\nEND:VCARD\nBEGIN:VCARD\nVERSION:3.0\nbroken\nEND:VCARD\n');
    assert.equal(mixed.elements.length, 1);
    assert.match(mixed.problems[0]!, /^card 2: /);
  });
});

describe('malformed input is refused with a reason', () => {
  const BAD_TEXT: [string, string, RegExp][] = [
    ['no END', 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\n', /did not end|END/],
    ['a line without a colon', 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN x\r\nEND:VCARD\r\n', /invalid line/],
    ['not a vCard at all', 'hello', /BEGIN:VCARD/],
    ['empty', '', /BEGIN:VCARD/],
    ['an unknown version', 'BEGIN:VCARD\r\nVERSION:9.9\r\nFN:x\r\nEND:VCARD\r\n', /unsupported vCard version/],
    ['two cards where one is expected', 'BEGIN:VCARD\r\nVERSION:3.0\r\nFN:a\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:b\r\nEND:VCARD\r\n', /more than one/],
    ['an iCalendar', 'BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n', /BEGIN:VCARD/],
  ];
  for (const [name, text, reason] of BAD_TEXT) {
    test(`text: ${name}`, () => {
      assert.throws(() => parseVObject(text), (err: unknown) => err instanceof VCardFormatError && reason.test(err.message));
    });
  }
  const BAD_XML: [string, string, RegExp][] = [
    ['not a vCard element', '<vcard><FN>x</FN></vcard>', /not a vCard/],
    ['a property name with a dot', '<vCard><F.N>x</F.N></vCard>', /invalid property element/],
    ['an unknown N component', '<vCard><N><FAMILY>a</FAMILY><NICK>b</NICK></N></vCard>', /unexpected element <NICK>/],
    ['nested elements in a value', '<vCard><EMAIL><USERID><b>x</b></USERID></EMAIL></vCard>', /not expected/],
    ['text beside value elements', '<vCard><NOTE>t<VALUE>v</VALUE></NOTE></vCard>', /both text and value/],
    ['loose text in the vCard', '<vCard>loose<FN>x</FN></vCard>', /text directly inside/],
    ['a bad group', '<vCard><FN group="a b">x</FN></vCard>', /invalid group/],
  ];
  for (const [name, source, reason] of BAD_XML) {
    test(`XML: ${name}`, () => {
      assert.throws(() => xml(source), (err: unknown) => err instanceof VCardFormatError && reason.test(err.message));
    });
  }

  test('splitCards: positions and lines of the cards and of what lies between them', () => {
    const text = 'BEGIN:VCARD\nVERSION:3.0\nFN:a\nEND:VCARD\n\njunk line\nBEGIN:VCARD\nVERSION:3.0\nFN:b\nEND:VCARD\nBEGIN:VCARD\nFN:c\n';
    const { cards, problems } = splitCards(text);
    assert.deepEqual(cards.map((c) => [c.index, c.line]), [[1, 1], [3, 7]]);
    assert.deepEqual(problems.map((p) => [p.index, p.line]), [[2, 6], [4, 11]]);
    assert.match(problems[0]!.reason, /text outside of a vCard/);
    assert.match(problems[1]!.reason, /no END line/);
  });

  test('an AGENT card nested inside a card stays inside it', () => {
    const { cards, problems } = splitCards('BEGIN:VCARD\nVERSION:3.0\nFN:a\nBEGIN:VCARD\nFN:agent\nEND:VCARD\nEND:VCARD\n');
    assert.equal(cards.length, 1);
    assert.deepEqual(problems, []);
  });
});

describe('mutated input', () => {
  test('3,000 mutations of valid cards: each is read or refused with a VCardFormatError, never another error', () => {
    const random = seededRandom(12);
    const seeds = [
      'BEGIN:VCARD\r\nVERSION:3.0\r\nN:Jensen;Bjorn;A;Mr.;II\r\nFN:Bjorn\\, Jensen\r\nitem1.EMAIL;TYPE=INTERNET,PREF:b@x.dom\r\nTEL;TYPE=WORK:+1 313\r\nKEY;ENCODING=b;TYPE=X509:dGhpcw==\r\nADR:;;a\\,b;c;;;d\r\nCATEGORIES:x,y\r\nX-A;X-P="q;r":v\\;w\r\nEND:VCARD\r\n',
      'BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Four\r\nPHOTO:data:image/png;base64,iVBORw0KGgo=\r\nTEL;VALUE=uri:tel:+1\r\nBDAY:--0102\r\nGENDER:M;x\r\nEND:VCARD\r\n',
      'BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C3=89;a\r\nTEL;WORK;VOICE:1\r\nPHOTO;JPEG;ENCODING=BASE64:\r\n  AAAA\r\n\r\nEND:VCARD\r\n',
      'BEGIN:VGROUP\r\nNAME:G\r\nMEMBER;CN="A, B":a@x\r\nEND:VGROUP\r\n',
    ];
    const pieces = [':', ';', ',', '=', '"', '\\', '\r\n', '\n ', 'BEGIN:VCARD', 'END:VCARD', 'VERSION:4.0', '=C3', 'data:', 'TYPE=', '\u0000', 'é', ''];
    let read = 0;
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      let text = seeds[i % seeds.length]!;
      for (let n = 1 + Math.floor(random() * 4); n > 0; n--) {
        const at = Math.floor(random() * text.length);
        const cut = Math.floor(random() * 4);
        text = text.slice(0, at) + pieces[Math.floor(random() * pieces.length)]! + text.slice(at + cut);
      }
      try {
        const object = parseVObject(text);
        // What was read can be written and shown.
        writeVObject(object, '3.0');
        writeVObject(object, '4.0');
        toXml(object);
        read++;
      } catch (err) {
        if (!(err instanceof VCardFormatError)) assert.fail(`not a VCardFormatError (${String(err)}) for ${JSON.stringify(text)}`);
        refused++;
      }
    }
    assert.ok(read > 100 && refused > 100, `both outcomes were exercised: ${read} read, ${refused} refused`);
  });
});
