/**
 * The MIME layer (src/services/mime): structure parsing of a corpus of real-world style
 * messages (test/corpus/*.eml), header decoding, the XIMSS XML presentation checked against
 * the specification's examples, reply templates, the composer (the spec's messageAppend
 * examples and round trips), HTTP part access, and robustness against broken input.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { ServiceError } from '../src/services/errors.js';
import {
  addressDisplay,
  composeMessage,
  contentTypeOf,
  decodeHeaderText,
  decodePartBody,
  decodeTextForSearch,
  findPart,
  findRelated,
  headerValue,
  headerValues,
  messageToXml,
  parseAddressList,
  parseDateHeader,
  parseHeaderBlock,
  parseMime,
  parsePriority,
  partBytes,
  partHeaderBytes,
  replyTemplate,
  type MimePart,
  type PartResolver,
  type ResolvedFile,
} from '../src/services/mime/index.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { seededRandom as random } from './helpers.js';

const CORPUS = new URL('./corpus/', import.meta.url);
const corpusFiles = readdirSync(CORPUS)
  .filter((f) => f.endsWith('.eml'))
  .sort();

function load(name: string): { raw: Buffer; root: MimePart } {
  const raw = readFileSync(new URL(name, CORPUS));
  return { raw, root: parseMime(raw) };
}

function xmlOf(name: string, timeZone = 'UTC', extra: { totalSizeLimit?: number; partID?: string } = {}): XmlElement {
  const { raw, root } = load(name);
  return messageToXml(raw, root, { timeZone, ...extra });
}

/** Every part id of the tree, depth first, enclosed messages included. */
function partIDs(root: MimePart): string[] {
  const out: string[] = [];
  const visit = (p: MimePart): void => {
    out.push(p.partID);
    for (const c of p.children) visit(c);
    if (p.message) visit(p.message);
  };
  visit(root);
  return out;
}

function part(root: MimePart, id: string): MimePart {
  const p = findPart(root, id);
  assert.ok(p, `part ${id} exists`);
  return p;
}

function child(e: XmlElement, name: string, index = 0): XmlElement {
  const c = e.elements(name)[index];
  assert.ok(c, `<${e.name}> has child <${name}> #${index}`);
  return c;
}

/** An element tree as plain data: names, attributes and trimmed non-empty text. */
interface Shape {
  name: string;
  attrs: Record<string, string>;
  text: string;
  children: Shape[];
}

function shape(e: XmlElement, ignoreAttrs: string[] = []): Shape {
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.attrs)) if (!ignoreAttrs.includes(k)) attrs[k] = v;
  return {
    name: e.name,
    attrs,
    text: e.text().trim(),
    children: e.elements().map((c) => shape(c, ignoreAttrs)),
  };
}

const fakeFiles: Record<string, ResolvedFile> = {
  att01: { data: Buffer.from('47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b', 'hex'), type: 'image', subtype: 'gif', fileName: 'test.gif' },
  att02: { data: Buffer.from('%PDF-1.2\r\n%\xe2\xe3\xcf\xd3\r\ntrailer\r\n%%EOF\r\n', 'latin1'), type: 'application', subtype: 'octet-stream', fileName: 'sample.pdf' },
  notes: { data: Buffer.from('line one\nline two\n'), type: 'text', subtype: 'plain', fileName: 'Notizen für Montag.txt' },
  message: { data: Buffer.from('From: a@b.example\nSubject: uploaded\n\nbody\n'), type: 'message', subtype: 'rfc822' },
};

const resolver: PartResolver = {
  async upload(id: string): Promise<ResolvedFile> {
    const f = fakeFiles[id];
    if (!f) throw new ServiceError('unknown uploadID', 500);
    return f;
  },
  async file(name: string): Promise<ResolvedFile> {
    if (name !== 'private/MyFile.jpg') throw new ServiceError('file not found', 500);
    return { data: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46]) };
  },
  async copyMIME(element: XmlElement) {
    const { raw, root } = load('02-related-cid.eml');
    const partID = element.attr('partID');
    if (partID === undefined) return { raw, wholeMessage: true };
    const p = findPart(root, partID);
    if (!p) throw new ServiceError('no such part', 500);
    return { raw: Buffer.from(partBytes(raw, p)), wholeMessage: false };
  },
};

const composeOptions = { timeZone: 'America/Los_Angeles', addMissing: false, hostname: 'my.server.domain', omitBcc: false };

async function compose(xml: string, options: Partial<typeof composeOptions> = {}): Promise<Buffer> {
  return composeMessage(parseXml(xml), resolver, { ...composeOptions, ...options });
}


describe('structure parser', () => {
  test('the corpus has at least 15 messages and every one parses into XML', () => {
    assert.ok(corpusFiles.length >= 15, `${corpusFiles.length} corpus messages`);
    for (const f of corpusFiles) {
      const xml = xmlOf(f);
      assert.equal(xml.name, 'EMail', f);
      // the serialized XML must be well-formed
      parseXml(xml.toString());
    }
  });

  test('multipart/alternative: part ids, types, offsets and headers', () => {
    const { raw, root } = load('01-alternative-html.eml');
    assert.equal(root.partID, '');
    assert.equal(root.type, 'multipart');
    assert.equal(root.subtype, 'alternative');
    assert.deepEqual(partIDs(root), ['', '01', '02']);
    const [plain, html] = root.children as [MimePart, MimePart];
    assert.equal(plain.type + '/' + plain.subtype, 'text/plain');
    assert.equal(plain.charset, 'utf-8');
    assert.equal(plain.encoding, 'quoted-printable');
    assert.equal(plain.params['format'], 'flowed');
    assert.equal(html.subtype, 'html');
    assert.ok(raw.subarray(plain.headerStart, plain.bodyStart).toString().startsWith('Content-Type: text/plain'));
    assert.ok(raw.subarray(plain.bodyStart, plain.end).toString().endsWith('Anna'), 'the CRLF before the delimiter is not body');
    assert.equal(headerValue(root.headers, 'message-id'), '<20230314091231.1234@example.org>');
    assert.equal(headerValue(root.headers, 'X-Mailer'), 'Thunderbird 102.8.0');
    assert.equal(headerValues(root.headers, 'received').length, 1);
    assert.match(headerValue(root.headers, 'Received')!, /^from mx\.example\.org .*\tby mail\.example\.com/, 'unfolded, white space kept');
    assert.equal(root.problems, undefined);
  });

  test('nested multipart/related with a cid image and an RFC 2231 attachment name', () => {
    const { root } = load('02-related-cid.eml');
    assert.deepEqual(partIDs(root), ['', '01', '01-01', '01-02', '02']);
    const image = part(root, '01-02');
    assert.equal(image.contentID, 'logo.png@shop.example');
    assert.equal(image.disposition, 'inline');
    assert.equal(image.encoding, 'base64');
    const pdf = part(root, '2');
    assert.equal(pdf.disposition, 'attachment');
    assert.equal(pdf.dispositionParams['filename'], 'Preisliste März 2023.pdf');
    assert.equal(pdf.params['name'], 'Preisliste März 2023.pdf', 'RFC 2047 inside a parameter');
    assert.equal(pdf.description, 'Price list');
    assert.equal(part(root, '1').params['type'], 'text/html');
  });

  test('message/rfc822: the enclosed message body parts are numbered like IMAP', () => {
    const { root } = load('03-forward-rfc822.eml');
    assert.deepEqual(partIDs(root), ['', '01', '02', '02', '02-01', '02-02', '03', '03-01']);
    const forwarded = part(root, '02');
    assert.equal(forwarded.type + '/' + forwarded.subtype, 'message/rfc822');
    assert.ok(forwarded.message);
    assert.equal(forwarded.message.subtype, 'alternative');
    assert.equal(headerValue(forwarded.message.headers, 'Subject'), 'Meeting notes');
    assert.equal(part(root, '2-1').subtype, 'plain');
    assert.equal(part(root, '02-02').subtype, 'html');
    const single = part(root, '03-01');
    assert.equal(single, part(root, '3').message, 'a single-part enclosed message is its own body part');
    assert.equal(headerValue(single.headers, 'Subject'), 'Older thread');
    assert.equal(findPart(root, '04'), undefined);
    assert.equal(findPart(root, 'x'), undefined);
    assert.equal(findPart(root, ''), root);
  });

  test('multipart/digest children default to message/rfc822', () => {
    const { root } = load('22-digest-xml.eml');
    const digest = part(root, '01');
    assert.equal(digest.subtype, 'digest');
    assert.deepEqual(
      digest.children.map((c) => c.type + '/' + c.subtype),
      ['message/rfc822', 'message/rfc822'],
    );
    assert.equal(part(root, '01-02-01').headers.length, 2);
  });

  test('parameters: RFC 2231 continuations keep quoted spaces; charsets and languages', () => {
    const { root } = load('12-rfc2231.eml');
    const long = part(root, '02');
    assert.equal(long.dispositionParams['filename'], 'a very long file name that needs continuation lines.bin');
    assert.equal(long.params['name'], 'a very long file name that needs continuation lines.bin');
    const resume = part(root, '03');
    assert.equal(resume.dispositionParams['filename'], 'résumé.txt');
    assert.equal(resume.dispositionParams['size'], '13');
    assert.equal(resume.params['name'], 'résumé.txt');
  });

  test('broken MIME is parsed as far as it goes and the problems are recorded', () => {
    const unterminated = load('15-missing-close.eml').root;
    assert.equal(unterminated.children.length, 2);
    assert.deepEqual(unterminated.problems, ['missing closing boundary']);

    const guessed = load('16-missing-boundary.eml');
    assert.equal(guessed.root.children.length, 1);
    assert.match(guessed.root.problems![0]!, /missing boundary parameter/);
    assert.equal(decodeTextForSearch(guessed.raw, guessed.root), 'Text of a multipart without boundary parameter.');

    const lf = load('18-lf-only.eml').root;
    assert.deepEqual(partIDs(lf), ['', '01', '02']);
    assert.equal(lf.problems, undefined);

    const headerOnly = load('19-header-only.eml');
    assert.equal(headerOnly.root.headers.length, 4);
    assert.equal(headerValue(headerOnly.root.headers, 'Date'), 'Tue, 14 Mar 2023 08:00:00 +0000');
    assert.equal(headerOnly.root.bodyStart, headerOnly.raw.length);

    // unknown boundary: no parts, a problem
    const unknown = parseMime(Buffer.from('Content-Type: multipart/mixed; boundary=nothere\r\n\r\n--other\r\n\r\ntext\r\n--other--\r\n'));
    assert.equal(unknown.children.length, 0);
    assert.deepEqual(unknown.problems, ['boundary "nothere" not found']);

    // body text right after the header, without the empty line
    const noBlank = parseMime(Buffer.from('Subject: x\r\nThis line is body text\r\nmore\r\n'));
    assert.equal(noBlank.headers.length, 1);
    assert.deepEqual(noBlank.problems, ['header not terminated by an empty line']);

    // a boundary that is a prefix of a longer line does not split the part
    const prefix = parseMime(Buffer.from('Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n\r\n--abc is text\r\n--ab--\r\n'));
    assert.equal(prefix.children.length, 1);
  });

  test('NUL bytes, a 5 MB single line and deep nesting do not throw and stay fast', () => {
    const nul = Buffer.concat([Buffer.from('Subject: nul\x00here\r\nContent-Type: text/plain\r\n\r\n'), Buffer.from([0, 1, 2, 0, 65, 0])]);
    const nulXml = messageToXml(nul, parseMime(nul), { timeZone: 'UTC' });
    parseXml(nulXml.toString());
    assert.equal(child(nulXml, 'Subject').text(), 'nulhere', 'NUL cannot travel in XML');

    const huge = Buffer.concat([Buffer.from('Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n'), Buffer.alloc(5 * 1024 * 1024, 0x61)]);
    const started = Date.now();
    const root = parseMime(huge);
    assert.equal(root.children.length, 1);
    assert.ok(root.problems?.includes('missing closing boundary'));
    const hugeHeader = Buffer.concat([Buffer.from('X-Long: '), Buffer.alloc(5 * 1024 * 1024, 0x62)]);
    assert.equal(parseMime(hugeHeader).headers[0]!.value.length, 5 * 1024 * 1024);
    assert.ok(Date.now() - started < 2000, 'linear time');

    let nested = 'Content-Type: text/plain\r\n\r\ndeep\r\n';
    for (let i = 0; i < 200; i++) nested = `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n${nested}\r\n--b${i}--\r\n`;
    const deep = parseMime(Buffer.from(nested));
    let depth = 0;
    for (let p: MimePart | undefined = deep; p; p = p.children[0]) depth++;
    assert.ok(depth <= 42, 'nesting is cut off');
    messageToXml(Buffer.from(nested), deep, { timeZone: 'UTC' });
  });

  test('parseHeaderBlock reads only the header; findPart accepts unpadded ids', () => {
    const raw = Buffer.from('From  mbox line\r\nSubject: a\r\n  b\r\nX-Empty:\r\n\r\nbody');
    const { fields, end } = parseHeaderBlock(raw);
    assert.deepEqual(fields, [
      { name: 'Subject', value: 'a  b' },
      { name: 'X-Empty', value: '' },
    ]);
    assert.equal(raw.subarray(end).toString(), 'body');
    const { root } = load('02-related-cid.eml');
    assert.equal(findPart(root, '1-2'), findPart(root, '01-02'));
    assert.equal(findPart(root, '1.2'), findPart(root, '01-02'));
    const single = load('06-latin1.eml').root;
    assert.equal(findPart(single, '1'), single, 'section 1 of a single-part message is its body');
  });
});

describe('header decoding', () => {
  test('encoded-words in several charsets, split multi-byte words, raw 8-bit bytes', () => {
    assert.equal(decodeHeaderText('=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?='), 'Grüße aus Köln');
    assert.equal(decodeHeaderText('=?UTF-8?B?0J/RgNC40A==?= =?UTF-8?B?stC10YIg0LzQuNGA?='), 'Привет мир');
    assert.equal(decodeHeaderText('=?utf-8?q?=E2=82?=\r\n =?utf-8?q?=ACuro?='), '€uro');
    assert.equal(decodeHeaderText('=?iso-2022-jp?B?GyRCJCIkaiQsJEgkJhsoQg==?='), 'ありがとう');
    assert.equal(decodeHeaderText('=?koi8-r?B?98PUPMXe?='.replace('98PUPMXe', Buffer.from([0xf7, 0xd3, 0xd4, 0xd2, 0xc5, 0xde, 0xc1]).toString('base64'))), 'Встреча');
    assert.equal(decodeHeaderText('a =?iso-8859-1?q?=E9?= b'), 'a é b');
    assert.equal(decodeHeaderText('=?x-unknown?Q?caf=C3=A9?='), 'café', 'unknown charset: UTF-8 when valid');
    assert.equal(decodeHeaderText('=?x-unknown?Q?caf=E9?='), 'café', 'else windows-1252');
    assert.equal(decodeHeaderText(Buffer.from('Überraschung ☺').toString('latin1')), 'Überraschung ☺');
    assert.equal(decodeHeaderText(Buffer.from([0x43, 0x61, 0x66, 0xe9, 0x20, 0x80]).toString('latin1')), 'Café €');
    assert.equal(decodeHeaderText('=?utf-8*en?Q?lang?='), 'lang');
    assert.equal(decodeHeaderText('plain =? not a word ?='), 'plain =? not a word ?=');
  });

  test('corpus subjects and names decode', () => {
    const expected: Record<string, [string, string]> = {
      '06-latin1.eml': ['Grüße aus München', 'Jürgen Weiß'],
      '07-cp1251.eml': ['Отчёт за март', 'Иван Петров'],
      '08-koi8r.eml': ['Встреча', 'Мария'],
      '09-iso2022jp.eml': ['会議のお知らせ', '山田太郎'],
      '10-gb2312.eml': ['报价单', '王小明'],
      '11-split-words.eml': ['Привет мир', 'ZoëΩ'],
      '13-raw-utf8-headers.eml': ['Überraschung für dich ☺', 'José Müller'],
    };
    for (const [file, [subject, name]] of Object.entries(expected)) {
      const xml = xmlOf(file);
      assert.equal(child(xml, 'Subject').text(), subject, file);
      assert.equal(child(xml, 'From').attr('realName'), name, file);
    }
    assert.equal(child(xmlOf('13-raw-utf8-headers.eml'), 'X-Legacy').text(), 'Café crème', 'raw windows-1252 header');
    assert.equal(child(xmlOf('11-split-words.eml'), 'To').attr('realName'), '€uro');
    assert.equal(child(xmlOf('11-split-words.eml'), 'Comments').text(), 'Ça va and ありがとう');
  });

  test('address lists: comments, groups, encoded names, garbage', () => {
    assert.deepEqual(parseAddressList('user2@example.com (My Friend),\r\n =?iso-8859-1?Q?=4Eot=20A=20Friend?= <user3@example.com>'), [
      { address: 'user2@example.com', realName: 'My Friend' },
      { address: 'user3@example.com', realName: 'Not A Friend' },
    ]);
    assert.deepEqual(parseAddressList('Team: a@x.example, "B, Jr." <b@x.example>;, c@x.example'), [
      { address: 'a@x.example' },
      { address: 'b@x.example', realName: 'B, Jr.' },
      { address: 'c@x.example' },
    ]);
    assert.deepEqual(parseAddressList('undisclosed-recipients:;'), []);
    assert.deepEqual(parseAddressList(''), []);
    assert.doesNotThrow(() => parseAddressList('<<<@@@>>>,,,"unterminated'));
    assert.equal(addressDisplay('"Mr. Sender." <user1@example.com>, other@example.com'), 'Mr. Sender., other@example.com');
    assert.equal(addressDisplay('=?UTF-8?Q?Anna_M=C3=BCller?= <anna@example.org>'), 'Anna Müller');
    assert.equal(addressDisplay('undisclosed-recipients:;'), 'undisclosed-recipients:;');
  });

  test('priority from X-Priority, Importance and Priority', () => {
    assert.equal(parsePriority([{ name: 'X-Priority', value: '1 (Highest)' }]), 'High');
    assert.equal(parsePriority([{ name: 'x-priority', value: '2' }]), 'High');
    assert.equal(parsePriority([{ name: 'X-Priority', value: '5 (Lowest)' }]), 'Low');
    assert.equal(parsePriority([{ name: 'X-Priority', value: '3 (Normal)' }, { name: 'Importance', value: 'high' }]), '');
    assert.equal(parsePriority([{ name: 'Importance', value: 'Low' }]), 'Low');
    assert.equal(parsePriority([{ name: 'Priority', value: 'urgent' }]), 'High');
    assert.equal(parsePriority([]), '');
  });

  test('dates: RFC 5322 and the obsolete forms', () => {
    const at = (s: string): [string, number] | undefined => {
      const d = parseDateHeader(s);
      return d && [new Date(d.time).toISOString(), d.shiftSeconds];
    };
    assert.deepEqual(at('Mon, 10 Apr 2006 13:15:48 -0700'), ['2006-04-10T20:15:48.000Z', -25200]);
    assert.deepEqual(at('10 Apr 2006 13:15:48 +0530'), ['2006-04-10T07:45:48.000Z', 19800]);
    assert.deepEqual(at('Mon, 10 Apr 06 13:15 PST'), ['2006-04-10T21:15:00.000Z', -28800]);
    assert.deepEqual(at('Sun, 5 Mar 99 07:08:09 GMT'), ['1999-03-05T07:08:09.000Z', 0]);
    assert.deepEqual(at('Tue, 14 Mar 2023 09:12:31 +0100 (CET)'), ['2023-03-14T08:12:31.000Z', 3600]);
    assert.deepEqual(at('Mon Apr 10 13:15:48 2006'), ['2006-04-10T13:15:48.000Z', 0], 'asctime, no zone');
    assert.deepEqual(at('10 apr 2006 13:15:48 UT'), ['2006-04-10T13:15:48.000Z', 0]);
    assert.deepEqual(at('Wed, 02 May 2007 00:33:13 EDT'), ['2007-05-02T04:33:13.000Z', -14400]);
    assert.deepEqual(at('1 Jan 2000 00:00:00 -07:00'), ['2000-01-01T07:00:00.000Z', -25200]);
    assert.equal(parseDateHeader('not a date'), undefined);
    assert.equal(parseDateHeader('31 Feb 2020 10:00:00 +0000'), undefined);
    assert.equal(parseDateHeader('10 Apr 2006 25:00:00 +0000'), undefined);
  });
});

describe('XML presentation', () => {
  test('the spec header example ("Mr. Sender.")', () => {
    // The spec's example shows user3 and a Bcc field in the XML that its header text lacks;
    // the corpus message has both so that header and XML agree.
    const expected = parseXml(`<EMail>
      <From realName="Mr. Sender.">user1@example.com</From>
      <To realName="My Friend">user2@example.com</To>
      <To realName="Not A Friend">user3@example.com</To>
      <Bcc>user1@example.com</Bcc>
      <Date timeShift="-25200" localTime="20060410T151548">20060410T201548Z</Date>
      <Subject>It's 1:15PM now, the meeting has started!</Subject>
    </EMail>`);
    const xml = xmlOf('20-spec-header-example.eml', 'America/Chicago');
    const actual = shape(xml);
    actual.children = actual.children.filter((c) => c.name !== 'MIME');
    assert.deepEqual(actual, shape(expected));
  });

  test('the spec multipart/alternative quoted-printable example', () => {
    // Spec typos fixed: "Type"/"Description" are lower case elsewhere in the spec, and the
    // html part has no paramX. Parameter names are presented in lower case.
    const expected = parseXml(`<EMail>
      <From>user1@example.com</From>
      <To>user2@example.com</To>
      <MIME type="multipart" subtype="alternative" description="Test Message">
        <MIME partID="01" type="text" subtype="plain" charset="iso-8859-1" Type-paramx="valueX">
          From where I stay, I can see &amp; hear a lot!
        </MIME>
        <MIME partID="02" type="text" subtype="html" charset="iso-8859-1">
        &lt;html&gt;&lt;body bgcolor=&quot;yellow&quot;&gt;
&lt;I&gt;From where I stay&lt;/I&gt;, I can see &amp;amp; hear a lot!
&lt;/body&gt;&lt;/html&gt;
        </MIME>
      </MIME>
    </EMail>`);
    assert.deepEqual(shape(xmlOf('21-spec-alternative.eml'), ['estimatedSize']), shape(expected));
  });

  test('the spec delivery report example', () => {
    // The spec's From shows a different host than its header text; the header wins.
    const expected = parseXml(`<EMail>
 <Subject>Delivery report: TEST - disposition and delivery</Subject>
 <From>MAILER-DAEMON@remote.example.com</From>
 <To>sender@local.example.com</To>
 <Date localTime="20070502T003313" timeShift="-25200">20070502T073313Z</Date>
 <Message-ID>&lt;receipt-39457791@remote.example.com&gt;</Message-ID>
 <X-MAPI-Message-Class>REPORT.IPM.Note.DR</X-MAPI-Message-Class>
 <MIME estimatedSize="1433" subtype="report" type="multipart" Type-report-type="delivery-status">
  <MIME charset="utf-8" estimatedSize="120" partID="01" subtype="plain" type="text">Message delivered to &#39;&lt;recepient@remote.example.com&gt;&#39;
LOCAL module(account recepient) reports:
 Delivered to the user mailbox

  </MIME>
  <MIME estimatedSize="158" partID="02" subtype="delivery-status" type="message">
   <MIMEReport>
    <Reporting-MTA>dns; remote.example.com</Reporting-MTA>
    <MIMEReport>
     <Original-Recipient>rfc822;&lt;recepient@remote.example.com&gt;</Original-Recipient>
     <Final-Recipient>LOCAL;&lt;recepient&gt;</Final-Recipient>
     <Action>delivered</Action>
     <Status>2.0.0</Status>
    </MIMEReport>
   </MIMEReport>
  </MIME>
  <MIME estimatedSize="787" partID="03" subtype="rfc822-headers" type="text">
   <EMail>
    <From realName="Sender Name">sender@local.example.com</From>
    <Subject>TEST - disposition and delivery</Subject>
    <To>recepient@remote.example.com</To>
    <X-Mailer>CommuniGate Pro WebUser v5.1.9</X-Mailer>
    <Date localTime="20070502T003551" timeShift="-25200">20070502T073551Z</Date>
    <Message-ID>&lt;web-3990004@local.example.com&gt;</Message-ID>
    <Disposition-Notification-To>sender@local.example.com</Disposition-Notification-To>
   </EMail>
  </MIME>
 </MIME>
</EMail>`);
    const xml = xmlOf('04-dsn-bounce.eml', 'America/Los_Angeles');
    assert.deepEqual(shape(xml, ['estimatedSize']), shape(expected, ['estimatedSize']));
    // the text keeps its line structure exactly, with LF line ends
    assert.equal(
      child(child(xml, 'MIME'), 'MIME').text(),
      "Message delivered to '<recepient@remote.example.com>'\nLOCAL module(account recepient) reports:\n Delivered to the user mailbox\n\n",
    );
  });

  test('MIME attributes: ids, dispositions, descriptions, Type-/Disposition- parameters', () => {
    const mixed = child(xmlOf('02-related-cid.eml'), 'MIME');
    const related = child(mixed, 'MIME');
    assert.equal(related.attr('Type-type'), 'text/html');
    const image = child(related, 'MIME', 1);
    assert.deepEqual(
      { ...image.attrs, estimatedSize: undefined },
      {
        partID: '01-02',
        estimatedSize: undefined,
        type: 'image',
        subtype: 'png',
        contentID: 'logo.png@shop.example',
        disposition: 'inline',
        'Type-name': 'logo.png',
        'Disposition-filename': 'logo.png',
      },
    );
    assert.equal(image.children.length, 0, 'images have no body');
    const pdf = child(mixed, 'MIME', 1);
    assert.equal(pdf.attr('Disposition-filename'), 'Preisliste März 2023.pdf');
    assert.equal(pdf.attr('description'), 'Price list');
    assert.ok(Math.abs(+pdf.attr('estimatedSize')! - 83) <= 2, 'decoded size estimate (83 bytes)');
  });

  test('charsets are decoded to text; flowed text is joined; CRLF becomes LF', () => {
    const body = (file: string): string => child(xmlOf(file), 'MIME').text();
    assert.equal(body('06-latin1.eml'), 'Liebe Grüße aus München!\nDie Besprechung ist am Montag. Café um 9 Uhr.\n');
    assert.equal(body('07-cp1251.eml'), 'Здравствуйте, коллеги!\nОтчёт за март во вложении.\n');
    assert.equal(body('08-koi8r.eml'), 'Привет! Встречаемся в субботу.\n');
    assert.equal(body('09-iso2022jp.eml'), 'こんにちは。\n会議は明日です。\n');
    assert.equal(body('10-gb2312.eml'), '你好，附件是报价单。\n');
    assert.equal(
      body('14-flowed.eml'),
      "This is a long paragraph that was wrapped by the sender's mail client because it is longer than seventy-eight characters, and it should be joined again.\n" +
        'From the second paragraph: a stuffed line.\n> quoted text that is flowed too\n-- \nSignature\n',
    );
    const alt = child(xmlOf('01-alternative-html.eml'), 'MIME');
    assert.equal(child(alt, 'MIME').text(), 'Hallo Bob,\n\nwir sehen uns nächste Woche in Köln. Das Treffen beginnt um 10 Uhr.\n\nViele Grüße\nAnna');
    const digest = child(xmlOf('22-digest-xml.eml'), 'MIME');
    // the line break before a boundary belongs to the boundary
    assert.equal(child(digest, 'MIME', 3).text(), 'Unknown charset body: café.', 'unknown charset falls back');
  });

  test('address, date, priority and unstructured header elements', () => {
    const xml = xmlOf('01-alternative-html.eml', 'Europe/Berlin');
    assert.deepEqual(
      xml.elements().map((e) => e.name),
      ['Return-Path', 'Received', 'From', 'To', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'Pty', 'X-Mailer', 'MIME'],
    );
    assert.equal(child(xml, 'To', 1).attr('realName'), 'Carol, Jr.');
    assert.equal(child(xml, 'Cc').attr('realName'), 'Dave D.');
    assert.deepEqual(child(xml, 'Date').attrs, { timeShift: '3600', localTime: '20230314T091231' });
    assert.equal(child(xml, 'Date').text(), '20230314T081231Z');
    assert.equal(child(xml, 'Pty').text(), 'High');

    const raw = Buffer.from(
      'x-mailer: lower\r\nMESSAGE-ID: <a@b>\r\nX-Telnum: +1 555 1234 (WORK), +1 555 9876;type=cell\r\nX-Bad!Name: skipped\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\nResent-Date: 1 Jan 2020 00:00:00 +0000\r\nDate: garbage\r\n\r\nx',
    );
    const other = messageToXml(raw, parseMime(raw), { timeZone: 'UTC' });
    assert.deepEqual(
      other.elements().map((e) => e.name),
      ['X-Mailer', 'Message-ID', 'X-Telnum', 'X-Telnum', 'Resent-Date', 'MIME'],
    );
    assert.deepEqual(child(other, 'X-Telnum').attrs, { type: 'WORK' });
    assert.equal(child(other, 'X-Telnum', 1).text(), '+1 555 9876');
    assert.equal(child(other, 'X-Telnum', 1).attr('type'), 'CELL');
  });

  test('enclosed messages, digests, XML bodies and parser errors', () => {
    const xml = xmlOf('03-forward-rfc822.eml');
    const mixed = child(xml, 'MIME');
    const forwarded = child(mixed, 'MIME', 1);
    assert.equal(forwarded.attr('partID'), '02');
    const inner = child(forwarded, 'EMail');
    assert.equal(child(inner, 'Subject').text(), 'Meeting notes');
    const innerAlt = child(inner, 'MIME');
    assert.equal(innerAlt.attr('partID'), undefined, 'the enclosed multipart has no id of its own');
    assert.deepEqual(
      innerAlt.elements('MIME').map((m) => m.attr('partID')),
      ['02-01', '02-02'],
    );
    const single = child(child(child(mixed, 'MIME', 2), 'EMail'), 'MIME');
    assert.equal(single.attr('partID'), '03-01');
    assert.equal(single.text(), 'Single part body of the older thread.\n');

    const digest = child(xmlOf('22-digest-xml.eml'), 'MIME');
    const order = child(child(digest, 'MIME', 1), 'order');
    assert.equal(order.attr('id'), '7');
    assert.equal(child(order, 'item').text(), 'Widget');
    const broken = child(digest, 'MIME', 2);
    assert.match(broken.attr('parserError')!, /^XML: /);
    assert.equal(broken.children.length, 0);

    assert.equal(child(xmlOf('15-missing-close.eml'), 'MIME').attr('parserError'), 'missing closing boundary');
    const bad = child(xmlOf('17-bad-base64.eml'), 'MIME');
    assert.equal(bad.attr('readError'), 'invalid base64 data');
    assert.equal(bad.text(), 'Hello world');
  });

  test('MDN report, partID selection and totalSizeLimit', () => {
    const mdn = child(child(child(xmlOf('05-mdn.eml'), 'MIME'), 'MIME', 1), 'MIMEReport');
    assert.equal(child(mdn, 'Disposition').text(), 'manual-action/MDN-sent-manually; displayed');
    assert.equal(mdn.elements('MIMEReport').length, 0);

    const email = xmlOf('03-forward-rfc822.eml', 'UTC', { partID: '2' });
    assert.equal(email.name, 'EMail');
    assert.equal(child(email, 'Subject').text(), 'Meeting notes');
    const one = xmlOf('03-forward-rfc822.eml', 'UTC', { partID: '02-02' });
    assert.equal(one.name, 'MIME');
    assert.equal(one.attr('partID'), '02-02');
    const headers = xmlOf('04-dsn-bounce.eml', 'UTC', { partID: '03' });
    assert.equal(headers.name, 'EMail');
    assert.equal(headers.elements('MIME').length, 0);
    assert.throws(() => xmlOf('04-dsn-bounce.eml', 'UTC', { partID: '09' }), ServiceError);

    // 125 + 250 bytes: the limit lets the first body in, not the second
    const limited = child(xmlOf('01-alternative-html.eml', 'UTC', { totalSizeLimit: 200 }), 'MIME');
    assert.ok(child(limited, 'MIME').text().startsWith('Hallo Bob'));
    assert.equal(child(limited, 'MIME', 1).children.length, 0);
    assert.equal(child(limited, 'MIME', 1).attr('subtype'), 'html');
    // attachments are never included
    const attached = child(child(xmlOf('12-rfc2231.eml'), 'MIME'), 'MIME', 2);
    assert.equal(attached.attr('disposition'), 'attachment');
    assert.equal(attached.children.length, 0);
  });
});

describe('reply and forward templates', () => {
  const own = ['bob@example.com'];

  test('replyFrom and replyAll', () => {
    const { raw, root } = load('01-alternative-html.eml');
    const reply = replyTemplate(raw, root, 'replyFrom', { timeZone: 'Europe/Berlin', ownAddresses: own });
    assert.deepEqual(
      reply.elements().map((e) => e.name),
      ['To', 'Subject', 'In-Reply-To', 'References', 'MIME'],
    );
    assert.equal(child(reply, 'To').text(), 'anna@example.org');
    assert.equal(child(reply, 'To').attr('realName'), 'Anna Müller');
    assert.equal(child(reply, 'Subject').text(), 'Re: Grüße aus Köln');
    assert.equal(child(reply, 'In-Reply-To').text(), '<20230314091231.1234@example.org>');
    const text = child(reply, 'MIME').text();
    assert.match(text, /On Tue, 14 Mar 2023 09:12:31, Anna Müller wrote:\n> Hallo Bob,\n>\n> wir sehen uns nächste Woche/);
    assert.equal(child(reply, 'MIME').attr('subtype'), 'plain');

    const all = replyTemplate(raw, root, 'replyAll', { timeZone: 'UTC', ownAddresses: ['BOB@example.com'] });
    assert.deepEqual(
      all.elements('Cc').map((e) => e.text()),
      ['carol@example.com', 'dave@example.net'],
    );
  });

  test('Re: and Fwd: are not doubled; Reply-To wins; References chain', () => {
    const raw = Buffer.from(
      'From: a@x.example\r\nReply-To: list@x.example\r\nTo: bob@example.com\r\nSubject: RE: status\r\nMessage-ID: <m2@x>\r\nReferences: <m0@x> <m1@x>\r\n\r\n> old\r\nnew\r\n',
    );
    const root = parseMime(raw);
    const reply = replyTemplate(raw, root, 'replyAll', { timeZone: 'UTC', ownAddresses: own });
    assert.equal(child(reply, 'Subject').text(), 'RE: status');
    assert.equal(child(reply, 'To').text(), 'list@x.example');
    assert.equal(reply.elements('Cc').length, 0, 'own address is not copied');
    assert.equal(child(reply, 'References').text(), '<m0@x> <m1@x> <m2@x>');
    assert.match(child(reply, 'MIME').text(), /\n>> old\n> new\n$/);
    const fwd = replyTemplate(raw, root, 'forward', { timeZone: 'UTC', ownAddresses: own });
    assert.equal(child(fwd, 'Subject').text(), 'Fwd: RE: status');
    const again = parseMime(Buffer.from('Subject: Fwd: x\r\n\r\ny'));
    assert.equal(child(replyTemplate(Buffer.from('Subject: Fwd: x\r\n\r\ny'), again, 'forward', { timeZone: 'UTC', ownAddresses: [] }), 'Subject').text(), 'Fwd: x');
  });

  test('forward and the HTML modes', () => {
    const { raw, root } = load('01-alternative-html.eml');
    const fwd = replyTemplate(raw, root, 'forward', { timeZone: 'UTC', ownAddresses: own });
    assert.equal(fwd.elements('To').length, 0);
    assert.equal(fwd.elements('In-Reply-To').length, 0);
    const text = child(fwd, 'MIME').text();
    assert.match(text, /-------- Original Message --------\nSubject: Grüße aus Köln\nDate: Tue, 14 Mar 2023 08:12:31\nFrom: Anna Müller <anna@example.org>\nTo: Bob Smith <bob@example.com>, Carol, Jr. <carol@example.com>\nCc: Dave D. <dave@example.net>\n\nHallo Bob,/);

    const html = replyTemplate(raw, root, 'replyFromHTML', { timeZone: 'UTC', ownAddresses: own });
    const body = child(html, 'MIME');
    assert.equal(body.attr('subtype'), 'html');
    assert.match(body.text(), /<blockquote type="cite"><p>Hallo Bob,<\/p><p>wir sehen uns <b>nächste Woche<\/b>/);
    assert.doesNotMatch(body.text(), /<head>|DOCTYPE/);

    const plainOnly = load('06-latin1.eml');
    const quoted = child(replyTemplate(plainOnly.raw, plainOnly.root, 'replyAllHTML', { timeZone: 'UTC', ownAddresses: [] }), 'MIME').text();
    assert.match(quoted, /<blockquote type="cite">Liebe Grüße aus München!<br>\nDie Besprechung/);
    const fwdHtml = child(replyTemplate(raw, root, 'forwardHTML', { timeZone: 'UTC', ownAddresses: [] }), 'MIME').text();
    assert.match(fwdHtml, /-------- Original Message --------.*Grüße aus Köln.*<p>Hallo Bob,<\/p>/s);

    const enclosed = load('03-forward-rfc822.eml');
    const inner = replyTemplate(enclosed.raw, enclosed.root, 'replyFrom', { timeZone: 'UTC', ownAddresses: [], partID: '02' });
    assert.equal(child(inner, 'Subject').text(), 'Re: Meeting notes');
    assert.match(child(inner, 'MIME').text(), /> 1\. Budget approved\n> 2\. Next meeting on Friday\n$/);
    assert.throws(() => replyTemplate(enclosed.raw, enclosed.root, 'replyFrom', { timeZone: 'UTC', ownAddresses: [], partID: '01' }), ServiceError);
  });
});

describe('composer', () => {
  test('the spec messageAppend example: a simple text message', async () => {
    const raw = await compose(`<EMail>
      <From realName="Sender Name">fromName@domain</From><Subject>I'll be there!</Subject>
      <To realName="Recipient Name">toName@domain</To><X-Mailer>SuperClient v7.77</X-Mailer>
      <Date localTime="20060621T215124" timeShift="-25200">20070830T045124Z</Date>
      <Message-ID>web-40721383@domain.dom</Message-ID>
      <MIME type="text" subtype="plain">Dear Susan,&#x0A;&#x0A;I will come to your place tomorrow, thank you for the invitation!&#x0A;Mary.&#x0A;</MIME>
    </EMail>`);
    const text = raw.toString();
    assert.ok(
      text.startsWith(
        'From: "Sender Name" <fromName@domain>\r\nSubject: I\'ll be there!\r\nTo: "Recipient Name" <toName@domain>\r\n' +
          'X-Mailer: SuperClient v7.77\r\nDate: Wed, 21 Jun 2006 21:51:24 -0700\r\nMessage-ID: <web-40721383@domain.dom>\r\n' +
          'Content-Type: text/plain; charset="utf-8"\r\n',
      ),
      text,
    );
    assert.ok(text.endsWith('\r\n\r\nDear Susan,\r\n\r\nI will come to your place tomorrow, thank you for the invitation!\r\nMary.\r\n'));
    assert.doesNotMatch(text, /MIME-Version/, 'nothing added without addMissing');
    assert.doesNotMatch(text.replace(/\r\n/g, ''), /\n/, 'CRLF only');
  });

  test('the spec example with alternative text, uploads, copyMIME and a stored file', async () => {
    const raw = await compose(`<EMail>
      <From realName="Sender Name">fromName@domain</From><Subject>Text with attachments</Subject>
      <To realName="Recipient Name">toName@domain</To>
      <Message-ID>web-40721383@domain.dom</Message-ID>
      <MIME type="multipart" subtype="mixed">
        <MIME type="multipart" subtype="alternative">
          <MIME type="text" subtype="plain">Dear Susan,&#x0A;Mary.&#x0A;</MIME>
          <MIME type="text" subtype="html">&lt;html&gt;&lt;body&gt;&lt;i&gt;Dear Susan,&lt;/i&gt;</MIME>
        </MIME>
        <MIME uploadID="att01" />
        <MIME uploadID="att02" type="application" subtype="pdf" />
        <copyMIME folder="INBOX" UID="156" partID="2"/>
        <MIME type="image" subtype="jpeg" fileName="private/MyFile.jpg" disposition-filename="photo.jpg" />
        <MIME uploadID="att01" disposition="none" />
      </MIME>
    </EMail>`);
    const root = parseMime(raw);
    assert.equal(root.problems, undefined);
    assert.deepEqual(
      root.children.map((c) => `${c.partID} ${c.type}/${c.subtype} ${c.disposition ?? '-'} ${c.dispositionParams['filename'] ?? '-'} ${c.params['name'] ?? '-'}`),
      [
        '01 multipart/alternative - - -',
        '02 image/gif attachment test.gif test.gif',
        '03 application/pdf attachment sample.pdf sample.pdf',
        '04 application/pdf attachment Preisliste März 2023.pdf Preisliste März 2023.pdf',
        '05 image/jpeg attachment photo.jpg photo.jpg',
        '06 image/gif - - -',
      ],
    );
    assert.deepEqual(decodePartBody(raw, part(root, '02')), fakeFiles['att01']!.data);
    assert.deepEqual(decodePartBody(raw, part(root, '03')), fakeFiles['att02']!.data);
    assert.equal(part(root, '01-01').encoding, '8bit');
    // the copied part keeps its Content-* fields as written, and its body verbatim
    const original = load('02-related-cid.eml');
    const source = part(original.root, '02');
    assert.deepEqual(
      raw.subarray(part(root, '04').bodyStart, part(root, '04').end),
      original.raw.subarray(source.bodyStart, source.end),
    );
    assert.match(partHeaderBytes(raw, part(root, '04')).toString(), /^Content-Type: application\/pdf; name="=\?UTF-8\?B\?UHJlaXNsaXN0ZSBNw6RyeiAyMDIzLnBkZg==\?="\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n filename\*0\*=UTF-8''Preisliste%20M%C3%A4rz;\r\n filename\*1\*=%202023.pdf\r\nContent-Description: Price list\r\n\r\n$/);
    // 8bit text bodies, base64 attachments
    assert.match(partHeaderBytes(raw, part(root, '01-02')).toString(), /Content-Transfer-Encoding: 8bit/);
    assert.match(partHeaderBytes(raw, part(root, '05')).toString(), /Content-Transfer-Encoding: base64/);
  });

  test('the spec format=flowed example wraps with a trailing space', async () => {
    const raw = await compose(`<EMail>
      <Subject>Test text</Subject>
      <MIME type="text" subtype="plain" format="flowed">This is a very long long long long long long long long long long superlong long long long long long long line, followed with a shorter line:
This is a shorter line.</MIME>
    </EMail>`);
    const text = raw.toString();
    assert.match(text, /^Subject: Test text\r\n/);
    assert.match(text, /\r\nContent-Type: text\/plain; format="flowed"; charset="utf-8"\r\n/);
    assert.match(text, /\r\nContent-Transfer-Encoding: 8bit\r\n/);
    assert.ok(
      text.endsWith(
        '\r\n\r\nThis is a very long long long long long long long long long long superlong \r\nlong long long long long long line, followed with a shorter line:\r\nThis is a shorter line.',
      ),
    );
    const root = parseMime(raw);
    assert.equal(
      child(messageToXml(raw, root, { timeZone: 'UTC' }), 'MIME').text(),
      'This is a very long long long long long long long long long long superlong long long long long long long line, followed with a shorter line:\nThis is a shorter line.',
    );
  });

  test('addMissing, omitBcc, Pty, folding and encoded words', async () => {
    const longSubject = 'Очень длинная тема письма, которая точно не поместится в одну строку заголовка, ' + 'x'.repeat(20);
    const raw = await compose(
      `<EMail>
        <From realName="Jöhn \\&quot;Q&quot; Doe">john@example.com</From>
        <To>a@example.com</To><To realName="B, Jr.">b@example.com</To><Cc>Carol &lt;c@example.com&gt;</Cc>
        <Bcc>secret@example.com</Bcc>
        <Subject>${longSubject}</Subject>
        <Pty>High</Pty>
        <X-Custom>line one
line two</X-Custom>
        <MIME type="text" subtype="plain" charset="iso-8859-1">Grüße</MIME>
      </EMail>`,
      { addMissing: true, omitBcc: true },
    );
    const text = raw.toString('latin1');
    assert.doesNotMatch(text, /secret/);
    assert.match(text, /\r\nMessage-ID: <ximss-\d+@my\.server\.domain>\r\n/);
    assert.match(text, /\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d -0[78]00\r\n/);
    assert.match(text, /\r\nMIME-Version: 1\.0\r\n/);
    assert.match(text, /\r\nX-Priority: 1 \(Highest\)\r\n/);
    assert.match(text, /\r\nX-Custom: line one line two\r\n/, 'no header injection');
    const header = text.slice(0, text.indexOf('\r\n\r\n'));
    for (const line of header.split('\r\n')) assert.ok(line.length <= 78, `folded: ${line}`);
    assert.ok(/[^\x00-\x7f]/.test(header) === false, 'the header is ASCII');
    assert.ok(text.endsWith('\r\n\r\nGr\xfc\xdfe'), 'the body is written in the requested charset');

    const root = parseMime(raw);
    const xml = messageToXml(raw, root, { timeZone: 'UTC' });
    assert.equal(child(xml, 'Subject').text(), longSubject);
    assert.equal(child(xml, 'From').attr('realName'), 'Jöhn \\"Q" Doe');
    assert.deepEqual(
      xml.elements('To').map((e) => [e.text(), e.attr('realName')]),
      [
        ['a@example.com', undefined],
        ['b@example.com', 'B, Jr.'],
      ],
    );
    assert.equal(child(xml, 'Cc').attr('realName'), 'Carol');
    assert.equal(child(xml, 'Pty').text(), 'High');
    assert.equal(child(xml, 'MIME').text(), 'Grüße');
  });

  test('a Date given only in GMT is written in the account zone', async () => {
    const raw = await compose('<EMail><Date>20070830T045124Z</Date><Subject>x</Subject></EMail>');
    assert.match(raw.toString(), /^Date: Wed, 29 Aug 2007 21:51:24 -0700\r\n/);
    const xml = messageToXml(raw, parseMime(raw), { timeZone: 'UTC' });
    assert.equal(child(xml, 'Date').text(), '20070830T045124Z');
  });

  test('round trip: EMail -> compose -> parse -> XML keeps headers, tree, text and attachments', async () => {
    const source = `<EMail>
      <From realName="Renée Müller">renee@example.fr</From>
      <To realName="山田太郎">yamada@example.jp</To>
      <To>plain@example.com</To>
      <Cc realName="O'Brien, Pat">pat@example.ie</Cc>
      <Subject>Ünïcödé subject — with “quotes” and emoji 😀</Subject>
      <Date localTime="20230314T091231" timeShift="3600">20230314T081231Z</Date>
      <Message-ID>&lt;rt-1@example.fr&gt;</Message-ID>
      <In-Reply-To>&lt;prev@example.fr&gt;</In-Reply-To>
      <X-Telnum type="CELL">+33 6 12 34 56 78</X-Telnum>
      <Pty>Low</Pty>
      <MIME type="multipart" subtype="mixed">
        <MIME type="multipart" subtype="related" Type-type="text/html">
          <MIME type="text" subtype="html">&lt;p&gt;Voilà &lt;img src="cid:pic@x"&gt;&lt;/p&gt;</MIME>
          <MIME type="image" subtype="gif" contentID="pic@x" disposition="inline" uploadID="att01"/>
        </MIME>
        <MIME type="text" subtype="plain" description="Ein Text">Zeile 1&#x0A;${'long '.repeat(250)}&#x0A;fin&#x0A;</MIME>
        <MIME uploadID="notes"/>
        <MIME uploadID="att02" disposition-filename="Überblick.pdf" type="application" subtype="pdf" Disposition-size="42"/>
        <MIME type="message" subtype="rfc822"><EMail><From>inner@example.com</From><Subject>Inner ✓</Subject><MIME type="text" subtype="plain">inner text</MIME></EMail></MIME>
        <MIME type="application" subtype="octet-stream">AAECAwQF</MIME>
      </MIME>
    </EMail>`;
    const raw = await compose(source);
    const root = parseMime(raw);
    assert.equal(root.problems, undefined);
    const xml = messageToXml(raw, root, { timeZone: 'Europe/Paris' });
    const original = parseXml(source);
    for (const name of ['From', 'To', 'Cc', 'Subject', 'Message-ID', 'In-Reply-To', 'X-Telnum', 'Pty']) {
      assert.deepEqual(
        xml.elements(name).map((e) => [e.text(), e.attrs]),
        original.elements(name).map((e) => [e.text(), e.attrs]),
        name,
      );
    }
    assert.deepEqual(child(xml, 'Date').attrs, { timeShift: '3600', localTime: '20230314T091231' });
    assert.equal(child(xml, 'Date').text(), '20230314T081231Z');
    assert.deepEqual(partIDs(root), ['', '01', '01-01', '01-02', '02', '03', '04', '05', '05-01', '06']);
    const mixed = child(xml, 'MIME');
    const related = child(mixed, 'MIME');
    assert.equal(related.attr('Type-type'), 'text/html');
    assert.equal(child(related, 'MIME').text(), '<p>Voilà <img src="cid:pic@x"></p>');
    const image = part(root, '01-02');
    assert.equal(image.contentID, 'pic@x');
    assert.equal(findRelated(root, part(root, '01-01'), 'cid:pic@x'), image);
    assert.deepEqual(decodePartBody(raw, image), fakeFiles['att01']!.data);
    const long = child(mixed, 'MIME', 1);
    assert.equal(long.text(), `Zeile 1\n${'long '.repeat(250)}\nfin\n`);
    assert.equal(long.attr('description'), 'Ein Text');
    assert.equal(part(root, '02').encoding, 'quoted-printable', 'a line over 998 bytes');
    const notes = part(root, '03');
    assert.equal(notes.dispositionParams['filename'], 'Notizen für Montag.txt');
    assert.equal(decodePartBody(raw, notes).toString(), 'line one\r\nline two\r\n');
    const pdf = part(root, '04');
    assert.equal(pdf.dispositionParams['filename'], 'Überblick.pdf');
    assert.equal(pdf.dispositionParams['size'], '42');
    assert.equal(contentTypeOf(pdf), 'application/pdf');
    const inner = child(child(mixed, 'MIME', 4), 'EMail');
    assert.equal(child(inner, 'Subject').text(), 'Inner ✓');
    assert.equal(child(inner, 'MIME').text(), 'inner text');
    assert.deepEqual([...decodePartBody(raw, part(root, '06'))], [0, 1, 2, 3, 4, 5]);
  });

  test('EMail uploadID and whole-message copyMIME', async () => {
    const uploaded = await compose('<EMail uploadID="message"/>');
    assert.equal(uploaded.toString(), 'From: a@b.example\r\nSubject: uploaded\r\n\r\nbody\r\n');
    const raw = await compose('<EMail><Subject>fwd</Subject><MIME type="multipart" subtype="mixed"><MIME type="text" subtype="plain">see attached</MIME><copyMIME folder="INBOX" UID="1"/></MIME></EMail>');
    const root = parseMime(raw);
    const attached = part(root, '02');
    assert.equal(attached.type + '/' + attached.subtype, 'message/rfc822');
    assert.equal(headerValue(attached.message!.headers, 'Subject'), 'Your March newsletter');
    assert.deepEqual(partIDs(root), ['', '01', '02', '02', '02-01', '02-01-01', '02-01-02', '02-02']);
  });

  test('bad input is rejected with a clear ServiceError; resolver errors propagate', async () => {
    const rejects = async (xml: string, pattern: RegExp): Promise<void> => {
      await assert.rejects(compose(xml), (err: unknown) => {
        assert.ok(err instanceof ServiceError, String(err));
        assert.equal(err.code, 500);
        assert.match(err.message, pattern);
        return true;
      });
    };
    await rejects('<EMail><MIME type="multipart" subtype="mixed"><Foo/></MIME></EMail>', /unexpected element <Foo> where a MIME element is expected/);
    await rejects('<EMail><MIME type="multipart" subtype="mixed"></MIME></EMail>', /multipart\/mixed MIME element without parts/);
    await rejects('<EMail><MIME type="image" subtype="png">not base64!</MIME></EMail>', /invalid base64 data/);
    await rejects('<EMail><MIME type="text" subtype="plain" charset="x-nothing">a</MIME></EMail>', /unknown charset/);
    await rejects('<EMail><Date>yesterday</Date></EMail>', /invalid Date element/);
    await rejects('<EMail><MIME uploadID="missing"/></EMail>', /unknown uploadID/);
    await rejects('<EMail><MIME type="image" subtype="jpeg" fileName="nope"/></EMail>', /file not found/);
    await rejects('<EMail><copyMIME folder="INBOX" UID="1" partID="9"/></EMail>', /no such part/);
    await rejects('<EMail sign="yes"><Subject>x</Subject></EMail>', /is taken on the topmost EMail element \(or its inner EMail\) only/);
    await rejects('<EMail><MIME type="te xt"/></EMail>', /invalid MIME type/);
  });
});

describe('HTTP part access and view helpers', () => {
  test('P.txt, H.txt, B.ext and Content-Type', () => {
    const { raw, root } = load('02-related-cid.eml');
    const html = part(root, '01-01');
    assert.match(partBytes(raw, html).toString(), /^Content-Type: text\/html; charset="us-ascii"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<html>.*<\/html>$/s);
    assert.equal(partHeaderBytes(raw, html).toString(), 'Content-Type: text/html; charset="us-ascii"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n');
    assert.equal(contentTypeOf(html), 'text/html; charset=us-ascii');
    const png = decodePartBody(raw, part(root, '01-02'));
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    assert.equal(contentTypeOf(part(root, '01-02')), 'image/png');
    const pdf = decodePartBody(raw, part(root, '02'));
    assert.ok(pdf.toString('latin1').startsWith('%PDF-1.4'));
    const latin = load('12-rfc2231.eml');
    assert.equal(decodePartBody(latin.raw, part(latin.root, '03')).toString('latin1'), 'Résumé text', 'QP decoded, not charset-converted');
    assert.equal(partBytes(raw, root).length, raw.length);
  });

  test('R/cid: related parts first, then the same message', () => {
    const { root } = load('02-related-cid.eml');
    const image = part(root, '01-02');
    assert.equal(findRelated(root, part(root, '01-01'), 'logo.png@shop.example'), image);
    assert.equal(findRelated(root, part(root, '01-01'), '<logo.png@shop.example>'), image);
    assert.equal(findRelated(root, part(root, '02'), 'cid:LOGO.png@shop.example'), image, 'anywhere in the message');
    assert.equal(findRelated(root, part(root, '01-01'), 'missing@x'), undefined);
  });

  test('text for search covers every text part, decoded, HTML reduced to text', () => {
    const { raw, root } = load('03-forward-rfc822.eml');
    const text = decodeTextForSearch(raw, root);
    assert.match(text, /See the notes below/);
    assert.match(text, /1\. Budget approved/);
    assert.match(text, /Single part body of the older thread/);
    assert.doesNotMatch(text, /<p>|<br>/);
    const cyr = load('07-cp1251.eml');
    assert.match(decodeTextForSearch(cyr.raw, cyr.root), /Отчёт за март во вложении/);
  });
});

describe('robustness', () => {
  test('truncations and mutations of every corpus message never throw', () => {
    const rand = random(0x5eed);
    for (const f of corpusFiles) {
      const raw = readFileSync(new URL(f, CORPUS));
      const variants: Buffer[] = [];
      for (let i = 0; i < 50; i++) variants.push(raw.subarray(0, Math.floor(rand() * raw.length)));
      for (let i = 0; i < 10; i++) {
        const copy = Buffer.from(raw);
        for (let j = 0; j < 8; j++) copy[Math.floor(rand() * copy.length)] = [0, 10, 13, 45, 61, 0x3f, 0xff, 0x1b][Math.floor(rand() * 8)]!;
        variants.push(copy);
      }
      variants.push(Buffer.from(raw.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'));
      variants.push(Buffer.from(raw.toString('latin1').replace(/\r\n/g, '\r'), 'latin1'));
      for (const v of variants) {
        const root = parseMime(v);
        const xml = messageToXml(v, root, { timeZone: 'Europe/Berlin', totalSizeLimit: 100000 });
        assert.equal(parseXml(xml.toString()).name, 'EMail', `${f}: a variant still reads as an EMail`);
        for (const mode of ['replyAll', 'forwardHTML'] as const) replyTemplate(v, root, mode, { timeZone: 'UTC', ownAddresses: [] });
        decodeTextForSearch(v, root);
      }
    }
  });
});
