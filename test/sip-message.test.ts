/**
 * The SIP message layer on its own (src/transports/sip): start lines, headers and their
 * compact forms, folding, URIs, addresses, Via, digest parameters, bodies and Content-Length,
 * the stream reader, the serializer, responseTo, limits, a torture group after the categories
 * of RFC 4475 (messages of our own, each naming the case that informed it) and a fuzz loop.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  SipHeaders,
  canonicalName,
  isListHeader,
  parseAuthHeader,
  parseCSeq,
  parseContact,
  parseContentLength,
  parseExpires,
  parseMaxForwards,
  parseVia,
} from '../src/transports/sip/headers.js';
import {
  DEFAULT_DATAGRAM_LIMITS,
  DEFAULT_STREAM_LIMITS,
  SipMessageReader,
  SipParseError,
  parseSipMessage,
  responseTo,
  serializeSipMessage,
  type SipLimits,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  type SipStreamItem,
} from '../src/transports/sip/message.js';
import { Memo } from '../src/transports/sip/lexer.js';
import { formatSipUri, isHost, parseNameAddr, parseSipUri, parseTelUri, parseUri } from '../src/transports/sip/uri.js';
// A seeded generator, so that a failing mutation can be replayed.
import { seededRandom } from './helpers.js';

const CRLF = '\r\n';

/** The headers every test request starts from; `CSeq` follows the method. */
function baseHeaders(method: string): string[] {
  return [
    'Via: SIP/2.0/UDP client.example.net:5060;branch=z9hG4bK-base-1',
    'Max-Forwards: 70',
    'From: "Ann" <sip:ann@example.net>;tag=ann-1',
    'To: <sip:ben@example.org>',
    'Call-ID: base-call-1@client.example.net',
    `CSeq: 7 ${method}`,
  ];
}

/** A message from its lines and body; Content-Length added unless a line sets it or `length` is null. */
function wire(lines: string[], body = '', length: number | null = Buffer.byteLength(body)): Buffer {
  const all = [...lines];
  if (length !== null && !lines.some((l) => /^(content-length|l)\s*:/i.test(l))) all.push(`Content-Length: ${length}`);
  return Buffer.from(`${all.join(CRLF)}${CRLF}${CRLF}${body}`, 'utf8');
}

/** A request: its line, the base headers (less `omit`, plus `extra`), a body. */
function request(
  line: string,
  options: { extra?: string[]; omit?: string[]; body?: string; method?: string } = {},
): Buffer {
  const method = options.method ?? line.split(' ')[0]!;
  const omit = new Set((options.omit ?? []).map((n) => n.toLowerCase()));
  const headers = baseHeaders(method).filter((h) => !omit.has(h.slice(0, h.indexOf(':')).toLowerCase()));
  return wire([line, ...headers, ...(options.extra ?? [])], options.body ?? '');
}

function parse(bytes: Buffer, limits?: SipLimits): SipMessage {
  return parseSipMessage(bytes, limits);
}

function parseRequest(bytes: Buffer, limits?: SipLimits): SipRequest {
  const message = parse(bytes, limits);
  assert.equal(message.kind, 'request');
  return message as SipRequest;
}

function parseResponse(bytes: Buffer): SipResponse {
  const message = parse(bytes);
  assert.equal(message.kind, 'response');
  return message as SipResponse;
}

/** The SipParseError `run` throws (failing when it throws nothing or something else). */
function errorOf(run: () => unknown): SipParseError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof SipParseError, `not a SipParseError: ${String(error)}`);
    assert.equal(error.cause, undefined, `an internal error: ${String(error.cause)}`);
    return error;
  }
  assert.fail('no error');
}

/** Parsing `bytes` is refused with `status`; `answerable` says whether the error carries the request. */
function rejects(bytes: Buffer, status: number, answerable: boolean, reasonIncludes?: string, limits?: SipLimits): SipParseError {
  const error = errorOf(() => parseSipMessage(bytes, limits));
  assert.equal(error.status, status, `status of "${error.reason}"`);
  assert.equal(error.answerable, answerable, `answerable for "${error.reason}"`);
  if (reasonIncludes !== undefined) assert.ok(error.reason.includes(reasonIncludes), error.reason);
  return error;
}

describe('SIP start lines', () => {
  test('a request line: method, Request-URI and version', () => {
    const req = parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0'));
    assert.equal(req.method, 'OPTIONS');
    assert.equal(req.uri, 'sip:ben@example.org');
    assert.equal(req.version, 'SIP/2.0');
    assert.equal(req.body.length, 0);
  });

  test('the version token is case-insensitive; another version is 505, a malformed one 400', () => {
    assert.equal(parseRequest(request('OPTIONS sip:ben@example.org sip/2.0')).version, 'SIP/2.0');
    rejects(request('OPTIONS sip:ben@example.org SIP/3.0'), 505, true);
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0.1'), 400, true);
    rejects(request('OPTIONS sip:ben@example.org HTTP/1.1'), 400, true);
  });

  test('unknown methods are kept as written (methods are case-sensitive)', () => {
    const req = parseRequest(request('Fetch-Things.v2 sip:ben@example.org SIP/2.0'));
    assert.equal(req.method, 'Fetch-Things.v2');
  });

  test('a status line: code and reason, an empty reason allowed', () => {
    const ok = parseResponse(wire(['SIP/2.0 200 OK', ...baseHeaders('INVITE').slice(0, 1), ...baseHeaders('INVITE').slice(2)]));
    assert.equal(ok.status, 200);
    assert.equal(ok.reason, 'OK');
    const empty = parseResponse(wire(['SIP/2.0 183 ', ...baseHeaders('INVITE')]));
    assert.equal(empty.reason, '');
    assert.equal(parseResponse(wire(['SIP/2.0 183', ...baseHeaders('INVITE')])).reason, '');
  });

  test('a bad status code is refused and never answered', () => {
    rejects(wire(['SIP/2.0 2000 OK', ...baseHeaders('INVITE')]), 400, false);
    rejects(wire(['SIP/2.0 20 OK', ...baseHeaders('INVITE')]), 400, false);
    rejects(wire(['SIP/2.0 099 Low', ...baseHeaders('INVITE')]), 400, false);
    rejects(wire(['SIP/2.0 700 High', ...baseHeaders('INVITE')]), 400, false);
  });

  test('CRLFs before the start line are skipped (RFC 3261 7.5)', () => {
    const bytes = Buffer.concat([Buffer.from('\r\n\r\n'), request('OPTIONS sip:ben@example.org SIP/2.0')]);
    assert.equal(parseRequest(bytes).method, 'OPTIONS');
  });

  test('an empty datagram or one of line ends is refused, unanswered', () => {
    rejects(Buffer.alloc(0), 400, false);
    rejects(Buffer.from('\r\n\r\n'), 400, false);
  });
});

describe('SIP headers and compact forms', () => {
  test('compact forms become long names; names are case-insensitive; unknown names kept as written', () => {
    const req = parseRequest(
      wire([
        'MESSAGE sip:ben@example.org SIP/2.0',
        'v: SIP/2.0/TCP client.example.net;branch=z9hG4bK-c1',
        'max-forwards: 70',
        'f: <sip:ann@example.net>;tag=1',
        't: <sip:ben@example.org>',
        'i: compact-1',
        'cseq: 1 MESSAGE',
        'c: text/plain',
        'k: path, outbound',
        's: hello',
        'o: presence',
        'u: dialog',
        'r: <sip:carl@example.org>',
        'b: <sip:ann@example.net>',
        'x: 1800',
        'y: abc',
        'e: gzip',
        'm: <sip:ann@192.0.2.4>',
        'X-Custom-HEADER: kept',
        'l: 2',
      ], 'hi'),
    );
    assert.deepEqual(
      [...req.headers].map(([n]) => n),
      [
        'Via', 'Max-Forwards', 'From', 'To', 'Call-ID', 'CSeq', 'Content-Type', 'Supported', 'Subject', 'Event',
        'Allow-Events', 'Refer-To', 'Referred-By', 'Session-Expires', 'Identity', 'Content-Encoding', 'Contact',
        'X-Custom-HEADER', 'Content-Length',
      ],
    );
    assert.equal(req.headers.get('CALL-ID'), 'compact-1');
    assert.equal(req.headers.get('i'), 'compact-1');
    assert.equal(req.headers.get('x-custom-header'), 'kept');
    assert.deepEqual(req.headers.getAll('Supported'), ['path', 'outbound']);
    assert.equal(req.body.toString(), 'hi');
    assert.equal(canonicalName('WWW-AUTHENTICATE'), 'WWW-Authenticate');
    assert.equal(canonicalName('cseq'), 'CSeq');
    assert.equal(canonicalName('Q'), 'Q');
  });

  test('white space around the colon and empty values where allowed', () => {
    const req = parseRequest(
      request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Subject    :   spaced out  ', 'Supported:', 'Organization :'] }),
    );
    assert.equal(req.headers.get('Subject'), 'spaced out');
    assert.equal(req.headers.get('Supported'), '');
    assert.deepEqual(req.headers.getAll('Supported'), []);
    assert.equal(req.headers.get('Organization'), '');
  });

  test('several headers of one name, and list values split outside quotes and <>', () => {
    const req = parseRequest(
      request('INVITE sip:ben@example.org SIP/2.0', {
        extra: [
          'Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>',
          'Route: <sip:p3.example.net;lr;x="a,b">',
          'Contact: "Ben, the second" <sip:ben@192.0.2.9>;q=0.5, <sip:ben,2@192.0.2.10>',
          'Allow: INVITE,ACK , CANCEL',
          'Date: Sat, 13 Nov 2010 23:29:00 GMT',
          'Warning: 399 example.net "one, two", 399 example.org "three"',
        ],
      }),
    );
    assert.deepEqual(req.headers.getAll('Route'), [
      '<sip:p1.example.net;lr>',
      '<sip:p2.example.net;lr>',
      '<sip:p3.example.net;lr;x="a,b">',
    ]);
    assert.deepEqual(req.headers.getAll('m'), [
      '"Ben, the second" <sip:ben@192.0.2.9>;q=0.5',
      '<sip:ben,2@192.0.2.10>',
    ]);
    assert.deepEqual(req.headers.getAll('Allow'), ['INVITE', 'ACK', 'CANCEL']);
    assert.deepEqual(req.headers.getAll('Date'), ['Sat, 13 Nov 2010 23:29:00 GMT']);
    assert.deepEqual(req.headers.getAll('Warning'), ['399 example.net "one, two"', '399 example.org "three"']);
    assert.equal(req.headers.count('Route'), 2);
    assert.ok(isListHeader('v'));
    assert.ok(!isListHeader('Authorization'));
  });

  test('Contact "*" is one value', () => {
    const headers = new SipHeaders([['Contact', '*']]);
    assert.deepEqual(headers.getAll('Contact'), ['*']);
    assert.equal(parseContact('*'), '*');
  });

  test('set, add, remove and prepend keep the order', () => {
    const headers = new SipHeaders([
      ['v', 'SIP/2.0/UDP a.example;branch=z9hG4bK1'],
      ['Record-Route', '<sip:r1.example;lr>'],
      ['To', '<sip:x@example>'],
      ['Subject', 'one'],
      ['subject', 'two'],
    ]);
    headers.prepend('Via', 'SIP/2.0/UDP proxy.example;branch=z9hG4bK2');
    headers.prepend('Record-Route', '<sip:proxy.example;lr>');
    headers.set('SUBJECT', 'three');
    headers.add('X-New', 'last');
    headers.prepend('Route', '<sip:first.example;lr>');
    assert.deepEqual(
      [...headers],
      [
        ['Route', '<sip:first.example;lr>'],
        ['Via', 'SIP/2.0/UDP proxy.example;branch=z9hG4bK2'],
        ['Via', 'SIP/2.0/UDP a.example;branch=z9hG4bK1'],
        ['Record-Route', '<sip:proxy.example;lr>'],
        ['Record-Route', '<sip:r1.example;lr>'],
        ['To', '<sip:x@example>'],
        ['Subject', 'three'],
        ['X-New', 'last'],
      ],
    );
    assert.equal(headers.remove('v'), 2);
    assert.equal(headers.get('Via'), undefined);
    assert.equal(headers.has('via'), false);
    headers.set('Max-Forwards', '69');
    assert.equal(headers.get('max-forwards'), '69');
    assert.equal(headers.size, 7);
  });

  test('a header line without a colon or with a bad name is refused', () => {
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['This line has no colon'] }), 400, true);
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Bad Name: x'] }), 400, true);
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: [': no name'] }), 400, true);
  });

  test('only spaces and tabs may come before the colon (no other white space or control)', () => {
    for (const name of ['To\u000b', 'To\u000c', 'To\u0001', 'To\u00a0']) {
      rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: [`${name}: <sip:carl@example.org>`] }), 400, true, 'header line');
    }
    const tabbed = parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Subject \t :\t x \t'] }));
    assert.equal(tabbed.headers.get('Subject'), 'x');
    // Vertical tab and form feed are not white space here: not trimmed away, refused.
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Subject: \u000bx\u000c'] }), 400, true, 'control');
  });

  test('control characters in a header value are refused', () => {
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Subject: a\u0000b'] }), 400, true);
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Subject: a\u0007b'] }), 400, true);
  });
});

describe('SIP line folding', () => {
  test('continuation lines join their header with one space', () => {
    const req = parseRequest(
      wire([
        'OPTIONS sip:ben@example.org SIP/2.0',
        'Via: SIP/2.0/UDP client.example.net',
        '    ;branch=z9hG4bK-fold',
        'Max-Forwards: 70',
        'From: <sip:ann@example.net>',
        '\t;tag=f1',
        'To:',
        ' <sip:ben@example.org>',
        'Call-ID: fold-1',
        'CSeq: 2',
        '  OPTIONS',
        'Subject: a',
        ' \t b',
        '   c',
      ]),
    );
    assert.equal(req.headers.get('Via'), 'SIP/2.0/UDP client.example.net ;branch=z9hG4bK-fold');
    assert.equal(parseVia(req.headers.get('Via')!).branch, 'z9hG4bK-fold');
    assert.equal(req.headers.get('From'), '<sip:ann@example.net> ;tag=f1');
    assert.equal(req.headers.get('To'), '<sip:ben@example.org>');
    assert.equal(req.headers.get('CSeq'), '2 OPTIONS');
    assert.equal(req.headers.get('Subject'), 'a b c');
  });

  test('a continuation line before any header is refused', () => {
    rejects(wire(['OPTIONS sip:ben@example.org SIP/2.0', '  stray', ...baseHeaders('OPTIONS')]), 400, true);
  });

  test('bare LF line ends are tolerated', () => {
    const text = ['OPTIONS sip:ben@example.org SIP/2.0', ...baseHeaders('OPTIONS'), 'Content-Length: 0', '', ''].join('\n');
    assert.equal(parseRequest(Buffer.from(text)).headers.get('Call-ID'), 'base-call-1@client.example.net');
  });
});

describe('SIP URIs', () => {
  test('a SIP URI in full', () => {
    const uri = parseSipUri('sips:ann:se%63ret@Example.NET:5061;transport=TCP;lr;maddr=239.255.255.1?subject=Hi%20there&priority=urgent');
    assert.equal(uri.scheme, 'sips');
    assert.equal(uri.user, 'ann');
    assert.equal(uri.password, 'secret');
    assert.equal(uri.host, 'example.net');
    assert.equal(uri.port, 5061);
    assert.deepEqual([...uri.params], [['transport', 'TCP'], ['lr', null], ['maddr', '239.255.255.1']]);
    assert.deepEqual(uri.headers, [['subject', 'Hi there'], ['priority', 'urgent']]);
  });

  test('hosts: names, IPv4 and IPv6 references, with and without ports', () => {
    assert.equal(parseSipUri('sip:example.org').host, 'example.org');
    assert.equal(parseSipUri('sip:example.org.').host, 'example.org.');
    assert.equal(parseSipUri('sip:192.0.2.1:5070').port, 5070);
    const v6 = parseSipUri('sip:ben@[2001:DB8::10]:5070;transport=udp');
    assert.equal(v6.host, '[2001:db8::10]');
    assert.equal(v6.port, 5070);
    assert.equal(parseSipUri('sip:[::1]').port, undefined);
  });

  test('escapes in the user part, parameters and headers are decoded', () => {
    const uri = parseSipUri('sip:%61nn%20b@example.net;%74ransport=t%63p;x=%5B1%5D');
    assert.equal(uri.user, 'ann b');
    assert.equal(uri.params.get('transport'), 'tcp');
    assert.equal(uri.params.get('x'), '[1]');
    assert.equal(parseSipUri('sip:%E2%98%83@example.net').user, '\u2603');
  });

  test('a user part holding ; ? and / (user-unreserved)', () => {
    const uri = parseSipUri('sip:+1-555;phone-context=example.net?x/y@gw.example.net;user=phone');
    assert.equal(uri.user, '+1-555;phone-context=example.net?x/y');
    assert.equal(uri.params.get('user'), 'phone');
  });

  test('malformed SIP URIs are refused', () => {
    for (const bad of [
      'sip:',
      'sip:@example.net',
      'sip:ann@',
      'sip:ann@example.net:',
      'sip:ann@example.net:65536',
      'sip:ann@example.net:5o60',
      'sip:ann@[2001:db8::1',
      'sip:ann@[not-v6]',
      'sip:ann@exa mple.net',
      'sip:ann@example..net',
      'sip:ann@-example.net',
      'sip:ann@example.123',
      'sip:ann@256.1.1.1',
      'sip:a%4@example.net',
      'sip:a%zz@example.net',
      'sip:ann@example.net;;lr',
      'sip:ann@example.net;x=',
      'sip:ann@example.net?=v',
      'sip:ann<@example.net',
      'sip:ann@example.net;p="q"',
    ]) {
      const error = errorOf(() => parseSipUri(bad));
      assert.equal(error.status, 400, bad);
    }
  });

  test('TEL URIs and other schemes', () => {
    const tel = parseTelUri('tel:+1-201-555-0123;ext=42;phone-context=example.com');
    assert.equal(tel.number, '+1-201-555-0123');
    assert.equal(tel.params.get('ext'), '42');
    assert.equal(parseUri('TEL:7042;phone-context=example.com').kind, 'tel');
    const other = parseUri('urn:service:sos');
    assert.deepEqual(other, { kind: 'other', scheme: 'urn', opaque: 'service:sos' });
    errorOf(() => parseTelUri('tel:'));
    errorOf(() => parseTelUri('tel:12+34'));
    errorOf(() => parseUri('no-scheme-here'));
    errorOf(() => parseUri('1sip:x'));
    errorOf(() => parseUri('http:a b'));
  });

  test('formatSipUri escapes what needs it and reads back the same', () => {
    const uri = parseSipUri('sip:%61nn%20b@example.net:5060;tr=x%3By;lr?h=a%26b');
    const text = formatSipUri(uri);
    assert.equal(text, 'sip:ann%20b@example.net:5060;tr=x%3By;lr?h=a%26b');
    assert.deepEqual(parseSipUri(text), uri);
  });
});

describe('SIP addresses (name-addr / addr-spec)', () => {
  test('a quoted display name with escapes and UTF-8, URI parameters inside the brackets', () => {
    const a = parseNameAddr('"Ann \\"The\\" Ænglish 名" <sip:ann@example.net;transport=tcp>;tag=x1;Foo="b;a,r"');
    assert.equal(a.displayName, 'Ann "The" Ænglish 名');
    assert.equal(a.angle, true);
    assert.equal(a.uriText, 'sip:ann@example.net;transport=tcp');
    assert.equal(a.uri.kind === 'sip' && a.uri.params.get('transport'), 'tcp');
    assert.deepEqual([...a.params], [['tag', 'x1'], ['foo', 'b;a,r']]);
  });

  test('an unquoted display name of tokens, and none', () => {
    assert.equal(parseNameAddr('Ann  Example <sip:ann@example.net>').displayName, 'Ann Example');
    assert.equal(parseNameAddr('<sip:ann@example.net>').displayName, undefined);
    assert.equal(parseNameAddr('Ann<sip:ann@example.net>').displayName, 'Ann');
    assert.equal(parseNameAddr('""<sip:ann@example.net>').displayName, '');
  });

  test('without angle brackets, parameters after the URI are the header\'s', () => {
    const a = parseNameAddr('sip:ann@example.net;tag=t9;expires=60');
    assert.equal(a.angle, false);
    assert.equal(a.uriText, 'sip:ann@example.net');
    assert.equal(a.uri.kind === 'sip' && a.uri.params.size, 0);
    assert.deepEqual([...a.params], [['tag', 't9'], ['expires', '60']]);
  });

  test('malformed addresses are refused', () => {
    for (const bad of [
      '"Ann <sip:ann@example.net>',
      '"Ann" sip:ann@example.net',
      'Ann <sip:ann@example.net',
      'Ann@home <sip:ann@example.net>',
      'sip:ann@example.net?subject=x',
      'sip:ann @example.net',
      '<sip:ann@example.net>;;tag=1',
      '<sip:ann@example.net>;tag=',
      '<sip:ann@example.net> junk',
      '<>',
      '',
    ]) {
      errorOf(() => parseNameAddr(bad));
    }
  });

  test('Contact with expires and q', () => {
    const c = parseContact('<sip:ann@192.0.2.4:5060;ob>;expires=3600;q=0.75;+sip.instance="<urn:uuid:1>"');
    assert.ok(c !== '*');
    assert.equal(c.expires, 3600);
    assert.equal(c.q, 0.75);
    assert.equal(c.params.get('+sip.instance'), '<urn:uuid:1>');
    const plain = parseContact('sip:ann@192.0.2.4;expires=0');
    assert.ok(plain !== '*');
    assert.equal(plain.expires, 0);
    assert.equal(plain.q, undefined);
    for (const bad of ['<sip:a@b.example>;q=1.5', '<sip:a@b.example>;q=0.1234', '<sip:a@b.example>;q=x', '<sip:a@b.example>;expires=-1', '<sip:a@b.example>;expires']) {
      errorOf(() => parseContact(bad));
    }
  });
});

describe('SIP Via, CSeq and the scalar headers', () => {
  test('a Via in full', () => {
    const via = parseVia('SIP/2.0/UDP [2001:db8::5]:5062;branch=z9hG4bK-v1;received=2001:db8::9;rport=40000;maddr=224.2.0.1;ttl=16;x-custom');
    assert.equal(via.protocol, 'SIP/2.0');
    assert.equal(via.transport, 'UDP');
    assert.equal(via.host, '[2001:db8::5]');
    assert.equal(via.port, 5062);
    assert.equal(via.branch, 'z9hG4bK-v1');
    assert.equal(via.received, '2001:db8::9');
    assert.equal(via.rport, 40000);
    assert.equal(via.maddr, '224.2.0.1');
    assert.equal(via.ttl, 16);
    assert.equal(via.params.get('x-custom'), null);
  });

  test('white space around the separators, rport without a value, lower-case transport', () => {
    const via = parseVia('SIP / 2.0 / tcp  Host.Example.NET : 5060 ; rport ; branch = z9hG4bK-v2');
    assert.equal(via.transport, 'TCP');
    assert.equal(via.host, 'host.example.net');
    assert.equal(via.port, 5060);
    assert.equal(via.rport, true);
    assert.equal(via.branch, 'z9hG4bK-v2');
    assert.equal(parseVia('SIP/2.0/WSS abc.invalid;branch=z9hG4bK3').port, undefined);
  });

  test('malformed Via values are refused', () => {
    for (const bad of [
      'SIP/2.0 host.example',
      'SIP/2.0/UDP',
      'SIP/2.0/UDPhost.example',
      'SIP/2.0/UDP host.example:99999',
      'SIP/2.0/UDP host.example;branch',
      'SIP/2.0/UDP host.example;rport=x',
      'SIP/2.0/UDP host.example;ttl=256',
      'SIP/2.0/UDP host.example;received=not_an_address',
      'SIP/2.0/UDP host.example;maddr',
      'SIP/2.0/UDP host.example;;branch=z9hG4bK1',
      'SIP/2.0/UDP host example',
    ]) {
      errorOf(() => parseVia(bad));
    }
  });

  test('CSeq: a number 0..2^31-1 and a method', () => {
    assert.deepEqual(parseCSeq('0 INVITE'), { seq: 0, method: 'INVITE' });
    assert.deepEqual(parseCSeq('  2147483647   foo '), { seq: 2147483647, method: 'foo' });
    assert.deepEqual(parseCSeq('007 ACK'), { seq: 7, method: 'ACK' });
    for (const bad of ['2147483648 INVITE', '-1 INVITE', 'INVITE', '1', '1INVITE', '1 INVITE x', '1 INV@TE', '']) {
      errorOf(() => parseCSeq(bad));
    }
  });

  test('Max-Forwards, Content-Length and Expires', () => {
    assert.equal(parseMaxForwards(' 0 '), 0);
    assert.equal(parseMaxForwards('255'), 255);
    errorOf(() => parseMaxForwards('256'));
    errorOf(() => parseMaxForwards('-1'));
    assert.equal(parseContentLength('0000000012'), 12);
    errorOf(() => parseContentLength('+12'));
    errorOf(() => parseContentLength('1 2'));
    errorOf(() => parseContentLength('99999999999999999999999'));
    assert.equal(parseExpires('4294967295'), 4294967295);
    errorOf(() => parseExpires('4294967296'));
    errorOf(() => parseExpires('Thu, 01 Dec 1994 16:00:00 GMT'));
  });
});

describe('SIP digest parameters', () => {
  test('Authorization: quoted strings with escapes, commas inside quotes, unquoted tokens', () => {
    const auth = parseAuthHeader(
      'Digest username="ann\\\\x \\"q\\"", realm="example.net",nonce="n,1" , uri="sip:ben@example.org", response="0123abcd", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", opaque=""',
    );
    assert.equal(auth.scheme, 'Digest');
    assert.equal(auth.params.get('username'), 'ann\\x "q"');
    assert.equal(auth.params.get('nonce'), 'n,1');
    assert.equal(auth.params.get('uri'), 'sip:ben@example.org');
    assert.equal(auth.params.get('algorithm'), 'MD5');
    assert.equal(auth.params.get('nc'), '00000001');
    assert.equal(auth.params.get('opaque'), '');
    assert.equal(auth.params.size, 10);
  });

  test('WWW-Authenticate with a quoted qop list; a scheme alone', () => {
    const challenge = parseAuthHeader('digest realm="example.net", qop="auth,auth-int", nonce="abc", stale=FALSE');
    assert.equal(challenge.scheme, 'digest');
    assert.equal(challenge.params.get('qop'), 'auth,auth-int');
    assert.equal(challenge.params.get('stale'), 'FALSE');
    assert.equal(parseAuthHeader('Unknown').params.size, 0);
  });

  test('malformed credentials are refused', () => {
    for (const bad of [
      'Digest realm="unterminated',
      'Digest realm',
      'Digest realm=',
      'Digest realm="a" nonce="b"',
      'Digest realm="a", realm="b"',
      'Digest realm="a",',
      'Digest ,realm="a"',
      '"Digest" realm="a"',
    ]) {
      errorOf(() => parseAuthHeader(bad));
    }
  });
});

describe('SIP body and Content-Length', () => {
  test('the body is Content-Length octets; octets beyond it in a datagram are dropped', () => {
    const req = parseRequest(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Type: text/plain', 'l: 5'], body: 'hello, and more' }));
    assert.equal(req.body.toString(), 'hello');
  });

  test('a datagram without Content-Length: the body is the rest of it', () => {
    const bytes = wire(['MESSAGE sip:ben@example.org SIP/2.0', ...baseHeaders('MESSAGE')], 'all of this', null);
    assert.equal(parseRequest(bytes).body.toString(), 'all of this');
  });

  test('UTF-8 bodies are counted in octets', () => {
    const req = parseRequest(request('MESSAGE sip:ben@example.org SIP/2.0', { body: 'zoë ☃' }));
    assert.equal(req.body.toString('utf8'), 'zoë ☃');
    assert.equal(req.body.length, 8);
  });

  test('a body shorter than Content-Length, and bad Content-Length values, are refused', () => {
    rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: 50'], body: 'short' }), 400, true, 'shorter');
    rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: -5'], body: 'short' }), 400, true, 'Content-Length');
    rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: five'], body: 'short' }), 400, true);
    rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: '], body: '' }), 400, true);
  });

  test('two Content-Length headers: equal ones tolerated, different ones refused', () => {
    const same = request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: 2', 'l: 2'], body: 'ok' });
    assert.equal(parseRequest(same).body.toString(), 'ok');
    rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: 2', 'l: 3'], body: 'abc' }), 400, true);
  });
});

/** Two requests and a response with keep-alives around them, as a TCP peer may send them. */
function twoMessageStream(): { bytes: Buffer; messages: Buffer[] } {
  const first = request('INVITE sip:ben@example.org SIP/2.0', { extra: ['Content-Type: application/sdp'], body: 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\r\n' });
  const second = wire(['SIP/2.0 180 Ringing', ...baseHeaders('INVITE')], '');
  const bytes = Buffer.concat([Buffer.from('\r\n\r\n'), first, Buffer.from('\r\n'), second, Buffer.from('\r\n\r\n')]);
  return { bytes, messages: [first, second] };
}

function messagesOf(items: SipStreamItem[]): SipMessage[] {
  return items.flatMap((item) => (item.type === 'message' ? [item.message] : []));
}

describe('SIP stream reader', () => {
  test('messages and keep-alives in one read', () => {
    const { bytes, messages } = twoMessageStream();
    const items = new SipMessageReader().feed(bytes);
    assert.deepEqual(items.map((i) => i.type), ['ping', 'message', 'pong', 'message', 'ping']);
    const got = messagesOf(items);
    assert.deepEqual(got, messages.map((m) => parseSipMessage(m)));
    assert.equal(got[0]!.body.toString(), 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\r\n');
  });

  test('split at every byte boundary, the same two messages come out', () => {
    const { bytes, messages } = twoMessageStream();
    const expected = messages.map((m) => parseSipMessage(m));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const reader = new SipMessageReader();
      const items = [...reader.feed(bytes.subarray(0, cut)), ...reader.feed(bytes.subarray(cut))];
      assert.deepEqual(messagesOf(items), expected, `cut at ${cut}`);
      assert.equal(reader.buffered, 0);
      // A keep-alive cut in two may be seen as a pong then a ping; never lost, never a message.
      assert.ok(items.filter((i) => i.type === 'ping').length >= 1, `cut at ${cut}`);
    }
  });

  test('fed a byte at a time', () => {
    const { bytes, messages } = twoMessageStream();
    const reader = new SipMessageReader();
    const items: SipStreamItem[] = [];
    for (let i = 0; i < bytes.length; i++) items.push(...reader.feed(bytes.subarray(i, i + 1)));
    assert.deepEqual(messagesOf(items), messages.map((m) => parseSipMessage(m)));
  });

  test('a large body arriving in many reads', () => {
    const body = 'x'.repeat(100_000);
    const bytes = request('MESSAGE sip:ben@example.org SIP/2.0', { body });
    const reader = new SipMessageReader();
    const items: SipStreamItem[] = [];
    for (let i = 0; i < bytes.length; i += 1000) items.push(...reader.feed(bytes.subarray(i, i + 1000)));
    const [message] = messagesOf(items);
    assert.equal(message!.body.toString(), body);
  });

  test('many messages in reads of random sizes: the buffer moves under a half-read head and a half-read body', () => {
    const random = seededRandom(7);
    const messages = Array.from({ length: 60 }, (_, i) =>
      request(`MESSAGE sip:ben${i}@example.org SIP/2.0`, {
        extra: Array.from({ length: i % 7 }, (_, j) => `X-Pad-${j}: ${'p'.repeat(Math.floor(random() * 300))}`),
        body: 'b'.repeat(Math.floor(random() * 3000)),
      }),
    );
    const keepAlives = ['', '\r\n', '\r\n\r\n'];
    const bytes = Buffer.concat(messages.flatMap((m, i) => [m, Buffer.from(keepAlives[i % 3]!)]));
    const reader = new SipMessageReader();
    const items: SipStreamItem[] = [];
    for (let at = 0; at < bytes.length; ) {
      const size = 1 + Math.floor(random() * (random() < 0.5 ? 10 : 5000));
      items.push(...reader.feed(bytes.subarray(at, at + size)));
      at += size;
    }
    assert.deepEqual(messagesOf(items), messages.map((m) => parseSipMessage(m)));
    assert.equal(reader.buffered, 0);
  });

  test('Content-Length is mandatory on a stream; the reader refuses more input after an error', () => {
    const reader = new SipMessageReader();
    const bytes = wire(['OPTIONS sip:ben@example.org SIP/2.0', ...baseHeaders('OPTIONS')], '', null);
    const error = errorOf(() => reader.feed(bytes));
    assert.equal(error.status, 400);
    assert.ok(error.answerable);
    assert.ok(error.reason.includes('Content-Length'));
    assert.equal(errorOf(() => reader.feed(Buffer.from('\r\n\r\n'))), error);
  });

  test('a head that never ends, and a body over the limits', () => {
    const endless = new SipMessageReader({ ...DEFAULT_STREAM_LIMITS, messageBytes: 4096, headerLineBytes: 200 });
    const line = Buffer.from(`X-Filler: ${'y'.repeat(100)}\r\n`);
    endless.feed(Buffer.from('OPTIONS sip:ben@example.org SIP/2.0\r\n'));
    let error: SipParseError | undefined;
    for (let i = 0; i < 100 && error === undefined; i++) {
      try {
        endless.feed(line);
      } catch (e) {
        error = e as SipParseError;
      }
    }
    assert.ok(error instanceof SipParseError);
    assert.ok(error.status === 513 || error.status === 400, String(error.status));

    const bigBody = new SipMessageReader({ ...DEFAULT_STREAM_LIMITS, bodyBytes: 100 });
    const e2 = errorOf(() => bigBody.feed(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: 1000'] })));
    assert.equal(e2.status, 413);
    assert.ok(e2.answerable);

    const bigMessage = new SipMessageReader({ ...DEFAULT_STREAM_LIMITS, messageBytes: 600, bodyBytes: 10_000 });
    const e3 = errorOf(() => bigMessage.feed(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Length: 5000'] })));
    assert.equal(e3.status, 513);
  });

  test('a line without end is refused at its limit, not buffered', () => {
    const reader = new SipMessageReader({ ...DEFAULT_STREAM_LIMITS, headerLineBytes: 1000 });
    const error = errorOf(() => {
      for (let i = 0; i < 100; i++) reader.feed(Buffer.alloc(100, 0x61));
    });
    assert.equal(error.status, 400);
    assert.ok(reader.buffered <= 1100);
  });
});

describe('SIP serializer', () => {
  test('round trip: long names, CRLF, Content-Length from the body', () => {
    const original = wire(
      [
        'INVITE sip:ben@example.org;transport=tcp SIP/2.0',
        'v: SIP/2.0/TCP client.example.net;branch=z9hG4bK-rt',
        'Max-Forwards: 70',
        'f: "Ann" <sip:ann@example.net>;tag=rt',
        't: <sip:ben@example.org>',
        'i: rt-1',
        'CSeq: 1 INVITE',
        'Subject: folded',
        '  twice',
        'c: text/plain',
        'l: 3',
      ],
      'abc',
      null,
    );
    const parsed = parseRequest(original);
    const text = serializeSipMessage(parsed).toString();
    assert.equal(
      text,
      [
        'INVITE sip:ben@example.org;transport=tcp SIP/2.0',
        'Via: SIP/2.0/TCP client.example.net;branch=z9hG4bK-rt',
        'Max-Forwards: 70',
        'From: "Ann" <sip:ann@example.net>;tag=rt',
        'To: <sip:ben@example.org>',
        'Call-ID: rt-1',
        'CSeq: 1 INVITE',
        'Subject: folded twice',
        'Content-Type: text/plain',
        'Content-Length: 3',
        '',
        'abc',
      ].join('\r\n'),
    );
    assert.deepEqual(parseSipMessage(serializeSipMessage(parsed)), parsed);
  });

  test('Content-Length follows a changed body, and is added when missing', () => {
    const parsed = parseRequest(request('MESSAGE sip:ben@example.org SIP/2.0', { body: 'one' }));
    parsed.body = Buffer.from('three');
    assert.ok(serializeSipMessage(parsed).toString().includes('Content-Length: 5\r\n\r\nthree'));
    parsed.headers.remove('Content-Length');
    const again = serializeSipMessage(parsed).toString();
    assert.ok(again.endsWith('Content-Length: 5\r\n\r\nthree'));
    assert.equal(again.split('Content-Length').length, 2);
  });

  test('a line break in a value set by code is refused, not written', () => {
    const response = responseTo(parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0')), 200);
    response.headers.add('Subject', 'x\r\nVia: SIP/2.0/UDP injected.example');
    assert.equal(errorOf(() => serializeSipMessage(response)).status, 500);
    response.headers.remove('Subject');
    response.reason = 'OK\r\nX: y';
    errorOf(() => serializeSipMessage(response));
  });

  test('a reason phrase built from bad input holds no control characters', () => {
    const error = rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Bad\rName: x'] }), 400, true);
    assert.ok(!/[\r\n\u0000]/.test(error.reason), error.reason);
    const response = serializeSipMessage(responseTo(error.request!, error.status, error.reason));
    assert.equal(parseResponse(response).reason, error.reason);
  });

  test('a response with a UTF-8 reason round trips', () => {
    const response = parseResponse(wire(['SIP/2.0 486 Besetzt – später', ...baseHeaders('INVITE')]));
    assert.equal(response.reason, 'Besetzt – später');
    assert.deepEqual(parseSipMessage(serializeSipMessage(response)), response);
  });
});

describe('SIP responseTo', () => {
  const invite = (): SipRequest =>
    parseRequest(
      wire([
        'INVITE sip:ben@example.org SIP/2.0',
        'Via: SIP/2.0/UDP proxy.example.org;branch=z9hG4bK-p, SIP/2.0/UDP relay.example.org;branch=z9hG4bK-r',
        'Via: SIP/2.0/UDP client.example.net;branch=z9hG4bK-c;received=192.0.2.7',
        'Max-Forwards: 68',
        'From: "Ann" <sip:ann@example.net>;tag=a-1',
        'To: Ben <sip:ben@example.org>',
        'Call-ID: resp-1@client.example.net',
        'CSeq: 4 INVITE',
        'Timestamp: 54.1',
        'Subject: not copied',
      ], 'v=0'),
    );

  test('copies every Via in order, From, To, Call-ID and CSeq; tags To when asked', () => {
    const response = responseTo(invite(), 486, undefined, { toTag: 'b-9' });
    assert.equal(response.status, 486);
    assert.equal(response.reason, 'Busy Here');
    assert.deepEqual(
      [...response.headers],
      [
        ['Via', 'SIP/2.0/UDP proxy.example.org;branch=z9hG4bK-p, SIP/2.0/UDP relay.example.org;branch=z9hG4bK-r'],
        ['Via', 'SIP/2.0/UDP client.example.net;branch=z9hG4bK-c;received=192.0.2.7'],
        ['From', '"Ann" <sip:ann@example.net>;tag=a-1'],
        ['To', 'Ben <sip:ben@example.org>;tag=b-9'],
        ['Call-ID', 'resp-1@client.example.net'],
        ['CSeq', '4 INVITE'],
      ],
    );
    assert.equal(response.body.length, 0);
    const parsed = parseResponse(serializeSipMessage(response));
    assert.equal(parsed.headers.getAll('Via').length, 3);
  });

  test('a To that has a tag keeps it; a 100 copies Timestamp; a reason of our own', () => {
    const request = invite();
    request.headers.set('To', '<sip:ben@example.org>;tag=already');
    assert.equal(responseTo(request, 200, 'OK', { toTag: 'new' }).headers.get('To'), '<sip:ben@example.org>;tag=already');
    const trying = responseTo(invite(), 100);
    assert.equal(trying.reason, 'Trying');
    assert.equal(trying.headers.get('Timestamp'), '54.1');
    assert.equal(trying.headers.get('To'), 'Ben <sip:ben@example.org>');
    assert.equal(responseTo(invite(), 200, 'Fine').headers.get('Timestamp'), undefined);
    assert.equal(responseTo(invite(), 299).reason, '');
  });

  test('answers the request a SipParseError carries', () => {
    const error = rejects(request('OPTIONS sip:ben@example.org SIP/4.0'), 505, true);
    const response = responseTo(error.request!, error.status, error.reason, { toTag: 'err' });
    const text = serializeSipMessage(response).toString();
    assert.ok(text.startsWith('SIP/2.0 505 Version Not Supported\r\nVia: SIP/2.0/UDP client.example.net:5060;branch=z9hG4bK-base-1\r\n'));
    assert.ok(text.includes('To: <sip:ben@example.org>;tag=err\r\n'));
  });
});

describe('SIP limits', () => {
  test('a datagram over messageBytes is 513, still answerable', () => {
    const body = 'z'.repeat(70_000);
    const error = rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { body }), 513, true);
    assert.equal(error.request?.method, 'MESSAGE');
  });

  test('a body over bodyBytes is 413', () => {
    const limits = { ...DEFAULT_DATAGRAM_LIMITS, bodyBytes: 10 };
    rejects(request('MESSAGE sip:ben@example.org SIP/2.0', { body: 'eleven char' }), 413, true, undefined, limits);
    assert.equal(parseRequest(request('MESSAGE sip:ben@example.org SIP/2.0', { body: 'ten chars!' }), limits).body.length, 10);
  });

  test('too many header lines, too long a line, too many Vias: 400', () => {
    const many = Array.from({ length: 300 }, (_, i) => `X-H${i}: ${i}`);
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: many }), 400, false, 'header lines');
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: [`Subject: ${'s'.repeat(9000)}`] }), 400, false, 'longer');
    const vias = Array.from({ length: 71 }, (_, i) => `Via: SIP/2.0/UDP hop${i}.example;branch=z9hG4bK${i}`);
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: vias }), 400, true, 'Via');
    const tight: SipLimits = { ...DEFAULT_DATAGRAM_LIMITS, headerLines: 7, viaCount: 1 };
    assert.equal(parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0'), tight).method, 'OPTIONS');
    rejects(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Subject: one too many', 'X: y'] }), 400, false, undefined, tight);
  });

  test('Max-Forwards is tolerated when absent unless required', () => {
    const bytes = request('OPTIONS sip:ben@example.org SIP/2.0', { omit: ['Max-Forwards'] });
    assert.equal(parseRequest(bytes).headers.get('Max-Forwards'), undefined);
    rejects(bytes, 400, true, 'Max-Forwards', { ...DEFAULT_DATAGRAM_LIMITS, requireMaxForwards: true });
  });

  test('adversarial long strings are parsed or refused without backtracking', () => {
    const wide: SipLimits = { ...DEFAULT_DATAGRAM_LIMITS, messageBytes: 4_000_000, headerLineBytes: 2_000_000, bodyBytes: 4_000_000 };
    const n = 500_000;
    const values = [
      '"'.repeat(n),
      '<'.repeat(n),
      `"${'\\'.repeat(n)}`,
      `<sip:a@b.example>${';x'.repeat(n / 2)}`,
      `sip:${'a'.repeat(n)}`,
      `sip:${'%'.repeat(n)}@x.example`,
      `sip:a@${'a.'.repeat(n / 2)}`,
      `sip:[${':'.repeat(n)}]`,
      `${'a '.repeat(n / 2)}<sip:a@b.example>`,
      `sip:a@b.example;${'='.repeat(n)}`,
      ','.repeat(n),
    ];
    for (const value of values) {
      for (const header of ['From', 'To', 'Contact', 'Route', 'Via', 'CSeq', 'Authorization']) {
        const bytes = request('OPTIONS sip:ben@example.org SIP/2.0', { omit: [header], extra: [`${header}: ${value}`] });
        try {
          parseSipMessage(bytes, wide);
        } catch (error) {
          assert.ok(error instanceof SipParseError && error.cause === undefined);
        }
      }
      for (const parser of [parseNameAddr, parseVia, parseAuthHeader, parseUri, parseCSeq]) {
        try {
          parser(value);
        } catch (error) {
          assert.ok(error instanceof SipParseError && error.cause === undefined);
        }
      }
    }
    const manyHeaders: SipLimits = { ...wide, headerLines: 200_000 };
    const lines = Array.from({ length: 100_000 }, () => 'Route: <sip:r.example;lr>');
    assert.equal(parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: lines }), manyHeaders).headers.size, 100_007);
  });
});

/** A response's usual headers (no Max-Forwards). */
function responseHeaders(method = 'INVITE'): string[] {
  return baseHeaders(method).filter((h) => !h.startsWith('Max-Forwards'));
}

describe('SIP torture: valid but weird (after RFC 4475 3.1.1, 3.2, 3.3, 3.4)', () => {
  test('a short tortuous INVITE (after 3.1.1.1): case, compact forms, folding, spacing, escapes', () => {
    const req = parseRequest(
      wire(
        [
          'INVITE sip:%62en@Example.ORG;unknownparam SIP/2.0',
          'tO  :',
          ' Ben  Example    <sip:ben@example.org>',
          'from   : "ann\\\\esc \\"q\\""  <sip:ann@example.net;X=Y>',
          '\t\t;tag = t-1  ;\tfoo="odd;,param"',
          'MaX-fOrWaRdS: 0069',
          'cAlL-iD: weird.1@2001:db8::3',
          'Content-length: 4',
          'cseQ: 0008',
          '  INVITE',
          'Via  : SIP  /   2.0',
          ' /UDP',
          '    192.0.2.50;BRANCH=z9hG4bK-Weird',
          'v: SIP/2.0/TCP host.example.net:5061 ; received=192.0.2.51 ;  branch=z9hG4bK-2',
          'NewFangledHeader:   newfangled value',
          ' continued newfangled value',
          'UnknownHeaderWithUnusualValue: ;;,,;;,;',
          'm: "Quoted string \\"\\"" <sip:ann@192.0.2.50:5060;transport=udp>;newparam=newvalue;secondparam;q=0.33',
        ],
        'v=0\r\n'.slice(0, 4),
      ),
    );
    assert.equal(req.uri, 'sip:%62en@Example.ORG;unknownparam');
    const uri = parseUri(req.uri);
    assert.ok(uri.kind === 'sip' && uri.user === 'ben' && uri.host === 'example.org' && uri.params.has('unknownparam'));
    const to = parseNameAddr(req.headers.get('To')!);
    assert.equal(to.displayName, 'Ben Example');
    const from = parseNameAddr(req.headers.get('From')!);
    assert.equal(from.displayName, 'ann\\esc "q"');
    assert.equal(from.params.get('tag'), 't-1');
    assert.equal(from.params.get('foo'), 'odd;,param');
    assert.equal(parseMaxForwards(req.headers.get('Max-Forwards')!), 69);
    assert.deepEqual(parseCSeq(req.headers.get('CSeq')!), { seq: 8, method: 'INVITE' });
    const vias = req.headers.getAll('Via').map(parseVia);
    assert.deepEqual(vias.map((v) => [v.transport, v.host, v.branch]), [
      ['UDP', '192.0.2.50', 'z9hG4bK-Weird'],
      ['TCP', 'host.example.net', 'z9hG4bK-2'],
    ]);
    assert.equal(req.headers.get('NewFangledHeader'), 'newfangled value continued newfangled value');
    const contact = parseContact(req.headers.get('Contact')!);
    assert.ok(contact !== '*' && contact.q === 0.33 && contact.params.get('secondparam') === null);
    assert.equal(req.body.toString(), 'v=0\r');
  });

  test('a wide range of valid characters (after 3.1.1.2): token method, UTF-8 display names and values', () => {
    const method = "!interest-Method0123456789_*+`.%'~";
    const req = parseRequest(
      wire([
        `${method} sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.org SIP/2.0`,
        'Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`\'~',
        'To: "BEL:\\\u0007 NUL:\\\u0000 DEL:\\\u007f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.org>',
        'From: token1~` token2\'+_ token3*%!.- <sip:mundane@example.com>;fromParam\'\'~+*_!.-%="работающий";tag=_token~1\'+`*%!-.',
        'Call-ID: intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{',
        `CSeq: 139122385 ${method}`,
        'Max-Forwards: 255',
        'extensionHeader-!.%*+_`\'~: 大停電',
        'Subject: Ελληνικά, 日本語 and ASCII',
      ]),
    );
    assert.equal(req.method, method);
    const uri = parseUri(req.uri);
    assert.ok(uri.kind === 'sip');
    assert.equal(uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    assert.equal(parseNameAddr(req.headers.get('To')!).displayName, 'BEL:\u0007 NUL:\u0000 DEL:\u007f');
    assert.equal(parseNameAddr(req.headers.get('From')!).params.get("fromparam''~+*_!.-%"), 'работающий');
    assert.equal(req.headers.get("extensionHeader-!.%*+_`'~"), '大停電');
  });

  test('valid % escapes in the Request-URI and To (after 3.1.1.3)', () => {
    const req = parseRequest(
      request('INVITE sip:sips%3Aben%40example.org@gw.example.net;%6c%72 SIP/2.0', {
        omit: ['To'],
        extra: ['To: <sip:%62%65n@example.org>'],
      }),
    );
    const uri = parseSipUri(req.uri);
    assert.equal(uri.user, 'sips:ben@example.org');
    assert.ok(uri.params.has('lr'));
    const to = parseNameAddr(req.headers.get('To')!);
    assert.ok(to.uri.kind === 'sip' && to.uri.user === 'ben');
  });

  test('escaped NULs in URIs (after 3.1.1.4)', () => {
    const req = parseRequest(request('REGISTER sip:example.org SIP/2.0', { omit: ['To', 'From'], extra: ['To: sip:null-%00-null@example.org', 'From: sip:null-%00%00-null@example.org;tag=n1'] }));
    const to = parseNameAddr(req.headers.get('To')!);
    assert.ok(to.uri.kind === 'sip' && to.uri.user === 'null-\u0000-null');
    const from = parseNameAddr(req.headers.get('From')!);
    assert.ok(from.uri.kind === 'sip' && from.uri.user === 'null-\u0000\u0000-null');
  });

  test('% where it is not an escape (after 3.1.1.5): in tokens, words and display names', () => {
    const req = parseRequest(
      wire([
        'RE%47ISTER sip:example.org SIP/2.0',
        'Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK-%25',
        'Max-Forwards: 70',
        'To: "%Z%45" <sip:resource@example.com>',
        'From: "%Z%45" <sip:resource@example.com>;tag=f%%1',
        'Call-ID: a%b%c',
        'CSeq: 1 RE%47ISTER',
        'Contact: <sip:alias@192.0.2.1>;%=%',
      ]),
    );
    assert.equal(req.method, 'RE%47ISTER');
    assert.equal(parseNameAddr(req.headers.get('To')!).displayName, '%Z%45');
    assert.equal(req.headers.get('Call-ID'), 'a%b%c');
  });

  test('no LWS between display name and < (after 3.1.1.6)', () => {
    const req = parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0', { omit: ['From', 'To'], extra: ['From: caller<sip:ann@example.net>;tag=323', 'To: "Ben"<sip:ben@example.org>'] }));
    assert.equal(parseNameAddr(req.headers.get('From')!).displayName, 'caller');
    assert.equal(parseNameAddr(req.headers.get('To')!).displayName, 'Ben');
  });

  test('long values in header fields (after 3.1.1.7)', () => {
    const longTag = 'T'.repeat(3000);
    const viaParams = Array.from({ length: 40 }, (_, i) => `;unknown${i}=${'v'.repeat(50)}`).join('');
    const req = parseRequest(
      request('INVITE sip:ben@example.org SIP/2.0', {
        omit: ['To', 'Via'],
        extra: [
          `To: "${'I have a long name '.repeat(20)}" <sip:${'l'.repeat(1000)}@example.org>;tag=${longTag}`,
          `Via: SIP/2.0/TCP ${'sub.'.repeat(40)}example.net${viaParams};branch=z9hG4bK-long`,
          ...Array.from({ length: 30 }, (_, i) => `Via: SIP/2.0/UDP hop${i}.example.net;received=192.0.2.${i + 1}`),
          `Unknown-Long-Name-${'x'.repeat(200)}: unknown-long-value-${'y'.repeat(3000)}`,
        ],
      }),
    );
    assert.equal(parseNameAddr(req.headers.get('To')!).params.get('tag'), longTag);
    assert.equal(req.headers.getAll('Via').length, 31);
    assert.equal(parseVia(req.headers.get('Via')!).params.size, 41);
  });

  test('extra trailing octets in a UDP datagram (after 3.1.1.8)', () => {
    const req = parseRequest(Buffer.concat([request('REGISTER sip:example.org SIP/2.0'), Buffer.from('INVITE sip:not.a.message SIP/2.0\r\n\r\n')]));
    assert.equal(req.body.length, 0);
    assert.equal(req.method, 'REGISTER');
  });

  test('semicolon-separated parameters in the URI user part (after 3.1.1.9)', () => {
    const req = parseRequest(request('OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0'));
    const uri = parseSipUri(req.uri);
    assert.equal(uri.user, 'user;par=u@example.net');
    assert.equal(uri.host, 'example.com');
    assert.equal(uri.params.size, 0);
  });

  test('varied and unknown transports in Via (after 3.1.1.10)', () => {
    const req = parseRequest(
      request('OPTIONS sip:ben@example.org SIP/2.0', {
        omit: ['Via'],
        extra: [
          'Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw',
          'Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf',
          'Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj',
          'Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en',
          'Via: SIP/2.0/ws t5.example.com;branch=z9hG4bK0a9idfnee',
        ],
      }),
    );
    assert.deepEqual(req.headers.getAll('Via').map((v) => parseVia(v).transport), ['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'WS']);
  });

  test('a multipart MIME body (after 3.1.1.11): blank lines inside the body are body', () => {
    const body = [
      '--boundary42',
      'Content-Type: application/sdp',
      '',
      'v=0',
      '',
      '--boundary42',
      'Content-Type: text/plain',
      '',
      'second part',
      '--boundary42--',
      '',
    ].join('\r\n');
    const req = parseRequest(request('MESSAGE sip:ben@example.org SIP/2.0', { extra: ['Content-Type: multipart/mixed;boundary=boundary42', 'MIME-Version: 1.0'], body }));
    assert.equal(req.body.toString(), body);
  });

  test('an unusual reason phrase (after 3.1.1.12), and an empty one (after 3.1.1.13)', () => {
    const odd = parseResponse(wire(['SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять — 素数ではない', ...responseHeaders()]));
    assert.equal(odd.reason, '= 2**3 * 5**2 но сто девяносто девять — 素数ではない');
    const empty = parseResponse(wire(['SIP/2.0 100 ', ...responseHeaders()]));
    assert.equal(empty.status, 100);
    assert.equal(empty.reason, '');
  });

  test('no branch in Via, RFC 2543 style (after 3.2.1 and 3.4.1)', () => {
    const req = parseRequest(request('INVITE sip:ben@example.org SIP/2.0', { omit: ['Via', 'From'], extra: ['Via: SIP/2.0/UDP old.example.com', 'From: sip:ann@example.net'] }));
    assert.equal(parseVia(req.headers.get('Via')!).branch, undefined);
    assert.equal(parseNameAddr(req.headers.get('From')!).params.has('tag'), false);
  });

  test('Max-Forwards of zero (after 3.3.11) parses; the proxy decides', () => {
    const req = parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0', { omit: ['Max-Forwards'], extra: ['Max-Forwards: 0'] }));
    assert.equal(parseMaxForwards(req.headers.get('Max-Forwards')!), 0);
  });

  test('known but atypical Request-URI schemes (after 3.3.3): sips and tel', () => {
    assert.equal(parseRequest(request('OPTIONS sips:ben@example.org SIP/2.0')).uri, 'sips:ben@example.org');
    assert.equal(parseRequest(request('OPTIONS tel:+1-555-0100 SIP/2.0')).uri, 'tel:+1-555-0100');
  });

  test('unknown URI schemes in header fields (after 3.3.4)', () => {
    const req = parseRequest(
      request('OPTIONS sip:ben@example.org SIP/2.0', {
        omit: ['To', 'From'],
        extra: ['To: <urn:service:sos>', 'From: <http://www.example.com/ann>;tag=h1', 'Contact: <name:ann>', 'Call-Info: <mailto:ann@example.net>'],
      }),
    );
    const to = parseNameAddr(req.headers.get('To')!);
    assert.deepEqual(to.uri, { kind: 'other', scheme: 'urn', opaque: 'service:sos' });
  });

  test('unknown Require, Proxy-Require, Content-Type and authorization scheme (after 3.3.5-3.3.7)', () => {
    const req = parseRequest(
      request('INVITE sip:ben@example.org SIP/2.0', {
        extra: ['Require: nothingSupportsThis, nothingSupportsThisEither', 'Proxy-Require: noProxiesSupportThis', 'Content-Type: application/unknownstuff', 'Authorization: NoOneKnowsThisScheme opaque-data=here'],
        body: '<stuff>',
      }),
    );
    assert.deepEqual(req.headers.getAll('Require'), ['nothingSupportsThis', 'nothingSupportsThisEither']);
    assert.equal(parseAuthHeader(req.headers.get('Authorization')!).scheme, 'NoOneKnowsThisScheme');
  });

  test('a 200 with a broadcast Via sent-by (after 3.3.10) parses', () => {
    const response = parseResponse(wire(['SIP/2.0 200 OK', 'Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK-bc', ...responseHeaders().slice(1)]));
    assert.equal(parseVia(response.headers.get('Via')!).host, '255.255.255.255');
  });

  test('REGISTER with contact and URI parameters (after 3.3.12-3.3.14), and Contact *', () => {
    const req = parseRequest(
      request('REGISTER sip:example.org SIP/2.0', {
        extra: ['Contact: sip:ann@192.0.2.4;expires=280, <sip:ann@192.0.2.4;transport=tcp;expires=5>;q=1.0'],
      }),
    );
    const [bare, bracketed] = req.headers.getAll('Contact').map(parseContact);
    assert.ok(bare !== '*' && bracketed !== '*');
    assert.equal(bare!.expires, 280);
    assert.equal(bracketed!.expires, undefined);
    assert.ok(bracketed!.uri.kind === 'sip' && bracketed!.uri.params.get('expires') === '5');
    const star = parseRequest(request('REGISTER sip:example.org SIP/2.0', { extra: ['Contact: *', 'Expires: 0'] }));
    assert.equal(parseContact(star.headers.get('Contact')!), '*');
  });

  test('a Date with an odd time zone (after 3.1.2.12) is not the parser\'s business', () => {
    assert.equal(parseRequest(request('OPTIONS sip:ben@example.org SIP/2.0', { extra: ['Date: Fri, 01 Jan 2010 16:00:00 EST'] })).method, 'OPTIONS');
  });

  test('IPv6 in the Request-URI, Via and Contact', () => {
    const req = parseRequest(
      request('OPTIONS sip:[2001:db8::9]:5070;maddr=[2001:db8::10] SIP/2.0', {
        omit: ['Via'],
        extra: ['Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK-v6;received=[2001:db8::9:255]', 'Contact: "Ann" <sip:ann@[2001:db8::9:1]:6050>'],
      }),
    );
    const uri = parseSipUri(req.uri);
    assert.equal(uri.params.get('maddr'), '[2001:db8::10]');
    assert.equal(parseVia(req.headers.get('Via')!).received, '[2001:db8::9:255]');
  });
});

describe('SIP torture: invalid (after RFC 4475 3.1.2 and 3.3)', () => {
  const line = 'INVITE sip:ben@example.org SIP/2.0';

  test('extraneous header field separators (after 3.1.2.1)', () => {
    rejects(request(line, { omit: ['From'], extra: ['From: <sip:ann@example.net>;;tag=a-1'] }), 400, true, 'From');
    rejects(request(line, { omit: ['Via'], extra: ['Via: SIP/2.0/UDP client.example.net;;branch=z9hG4bK1'] }), 400, false, 'Via');
  });

  test('Content-Length larger than the message (after 3.1.2.2)', () => {
    rejects(request(line, { extra: ['Content-Length: 9999'], body: 'v=0' }), 400, true, 'shorter');
  });

  test('negative Content-Length (after 3.1.2.3)', () => {
    rejects(request(line, { extra: ['l: -999'], body: 'v=0' }), 400, true);
  });

  test('request scalar fields with overlarge values (after 3.1.2.4)', () => {
    rejects(request(line, { omit: ['CSeq'], extra: ['CSeq: 4294967297 INVITE'] }), 400, true, 'CSeq');
    rejects(request(line, { omit: ['Max-Forwards'], extra: ['Max-Forwards: 300'] }), 400, true, 'Max-Forwards');
    rejects(request(line, { extra: ['Expires: 10000000000000000000'] }), 400, true, 'Expires');
    rejects(request(line, { extra: ['Contact: <sip:ann@192.0.2.4>;expires=280297596632815'] }), 400, true, 'Contact');
  });

  test('response scalar fields with overlarge values (after 3.1.2.5): dropped', () => {
    rejects(wire(['SIP/2.0 503 Service Unavailable', ...responseHeaders().filter((h) => !h.startsWith('CSeq')), 'CSeq: 2147483648 INVITE']), 400, false);
  });

  test('an unterminated quoted string in a display name (after 3.1.2.6)', () => {
    rejects(request(line, { omit: ['From'], extra: ['From: "Ann <sip:ann@example.net>;tag=a'] }), 400, true, 'From');
  });

  test('<> around the Request-URI (after 3.1.2.7)', () => {
    rejects(request('INVITE <sip:ben@example.org> SIP/2.0'), 400, true, 'Request-URI');
  });

  test('LWS inside the Request-URI (after 3.1.2.8), several SPs (3.1.2.9), a trailing SP (3.1.2.10)', () => {
    rejects(request('INVITE sip:ben@example.org; lr SIP/2.0', { method: 'INVITE' }), 400, true, 'request line');
    rejects(request('INVITE  sip:ben@example.org  SIP/2.0', { method: 'INVITE' }), 400, true, 'request line');
    rejects(request('INVITE sip:ben@example.org SIP/2.0 ', { method: 'INVITE' }), 400, true, 'request line');
  });

  test('escaped headers in the Request-URI (after 3.1.2.11)', () => {
    rejects(request('INVITE sip:ben@example.org?Route=%3Csip:example.com%3E SIP/2.0'), 400, true, 'Request-URI');
  });

  test('a name-addr URI with ? not in <> (after 3.1.2.13), spaces in an addr-spec (after 3.1.2.14)', () => {
    rejects(request(line, { omit: ['To'], extra: ['To: sip:ben@example.org?Subject=hi'] }), 400, true, 'To');
    rejects(request(line, { omit: ['To'], extra: ['To: <sip:ben @ example.org>'] }), 400, true, 'To');
  });

  test('non-token characters in an unquoted display name (after 3.1.2.15)', () => {
    rejects(request(line, { omit: ['From'], extra: ['From: Ann@home, Example <sip:ann@example.net>;tag=1'] }), 400, true, 'From');
  });

  test('an unknown protocol version (after 3.1.2.16): 505', () => {
    const error = rejects(request('INVITE sip:ben@example.org SIP/7.0'), 505, true);
    assert.equal(error.request?.method, 'INVITE');
  });

  test('start line and CSeq method mismatch (after 3.1.2.17 and 3.1.2.18)', () => {
    rejects(request('INVITE sip:ben@example.org SIP/2.0', { method: 'OPTIONS' }), 400, true, 'CSeq');
    rejects(request('NEWMETHOD sip:ben@example.org SIP/2.0', { method: 'INVITE' }), 400, true, 'CSeq');
    rejects(request('INVITE sip:ben@example.org SIP/2.0', { method: 'invite' }), 400, true, 'CSeq');
  });

  test('an overlarge response code (after 3.1.2.19): dropped', () => {
    rejects(wire(['SIP/2.0 4294967301 better not break the receiver', ...responseHeaders()]), 400, false);
  });

  test('missing required headers (after 3.3.1): named in the reason, unanswerable without them', () => {
    for (const name of ['Call-ID', 'From', 'To', 'CSeq', 'Via']) {
      rejects(request(line, { omit: [name] }), 400, false, name);
    }
  });

  test('an unknown Request-URI scheme (after 3.3.2): 416', () => {
    rejects(request('OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0'), 416, true, 'nobodyknowsthisscheme');
    rejects(request('OPTIONS http://example.org/x SIP/2.0'), 416, true);
  });

  test('several values in single-value fields (after 3.3.8), several Content-Lengths (after 3.3.9)', () => {
    rejects(request(line, { extra: ['To: <sip:carl@example.org>'] }), 400, true, 'To');
    rejects(request(line, { extra: ['Call-ID: second@example.net'] }), 400, true, 'Call-ID');
    rejects(request(line, { extra: ['Content-Length: 3', 'l: 4'], body: 'abcd' }), 400, true, 'Content-Length');
  });

  test('malformed URIs in the Request-URI and addresses', () => {
    rejects(request('OPTIONS sip:ben@[2001:db8::1 SIP/2.0'), 400, true);
    rejects(request('OPTIONS sip:ben@example.org:70000 SIP/2.0'), 400, true);
    rejects(request('OPTIONS sip:ben%2@example.org SIP/2.0'), 400, true);
    rejects(request(line, { omit: ['To'], extra: ['To: <sip:ben@exa_mple.org>'] }), 400, true);
  });

  test('a datagram cut before its empty line, a Call-ID with spaces, a Via port out of range', () => {
    const cut = Buffer.from(['OPTIONS sip:ben@example.org SIP/2.0', ...baseHeaders('OPTIONS')].join('\r\n'));
    rejects(cut, 400, true, 'empty line');
    rejects(request(line, { omit: ['Call-ID'], extra: ['Call-ID: two words'] }), 400, true, 'Call-ID');
    rejects(request(line, { omit: ['Via'], extra: ['Via: SIP/2.0/UDP host.example:99999;branch=z9hG4bK1'] }), 400, false);
  });

  test('a malformed request line is answered when its method is a token; garbage and an ACK are not', () => {
    rejects(request('INVITE sip:ben@example.org', { method: 'INVITE' }), 400, true, 'request line');
    rejects(request('<<garbage>> here', { method: 'INVITE' }), 400, false);
    rejects(request('ACK sip:ben@example.org SIP/3.0'), 505, false);
  });
});

describe('SIP fuzz', () => {
  const seeds = [
    request('INVITE sip:ben@example.org;transport=tcp SIP/2.0', {
      extra: ['Contact: "Ann" <sip:ann@[2001:db8::4]:5060>;expires=60;q=0.5', 'Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>', 'Authorization: Digest username="ann", realm="r", nonce="n", uri="sip:ben@example.org", response="00"'],
      body: 'v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\n',
    }),
    wire(['SIP/2.0 200 OK', 'v: SIP/2.0/UDP a.example;branch=z9hG4bK1;rport=5060;received=192.0.2.2', ...responseHeaders().slice(1), 'Subject: a', ' folded'], 'body'),
    request('REGISTER sips:example.org SIP/2.0', { extra: ['Contact: *', 'Expires: 0'] }),
  ];
  const alphabet = ['\r\n', '\r\n ', ':', ';', ',', '"', '\\', '<', '>', '%', '%4', '@', ' ', '=', '[', ']', '?', '&', '0', '9', 'SIP/2.0', 'l: 9', '\u0000', 'é', '\r\n\r\n'];

  function mutate(random: () => number, input: Buffer): Buffer {
    let bytes = Buffer.from(input);
    const rounds = 1 + Math.floor(random() * 4);
    for (let r = 0; r < rounds; r++) {
      const at = Math.floor(random() * (bytes.length + 1));
      const op = Math.floor(random() * 6);
      if (op === 0 && bytes.length > 0) {
        bytes[Math.min(at, bytes.length - 1)] = Math.floor(random() * 256);
      } else if (op === 1) {
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + 1 + Math.floor(random() * 20)))]);
      } else if (op === 2) {
        const piece = alphabet[Math.floor(random() * alphabet.length)]!;
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(piece.repeat(1 + Math.floor(random() * 3))), bytes.subarray(at)]);
      } else if (op === 3) {
        const end = Math.min(bytes.length, at + Math.floor(random() * 60));
        bytes = Buffer.concat([bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end)]);
      } else if (op === 4) {
        bytes = bytes.subarray(0, at);
      } else {
        const a = Math.floor(random() * bytes.length);
        const tmp = bytes[a];
        bytes[a] = bytes[Math.min(at, bytes.length - 1)] ?? 0;
        bytes[Math.min(at, bytes.length - 1)] = tmp ?? 0;
      }
    }
    return bytes;
  }

  test('random mutations of valid messages: a message or a SipParseError, nothing else', () => {
    const random = seededRandom(0x5eed51f);
    const statuses = new Set([400, 413, 416, 505, 513]);
    let parsed = 0;
    let refused = 0;
    for (let i = 0; i < 4000; i++) {
      const input = mutate(random, seeds[i % seeds.length]!);
      let message: SipMessage | undefined;
      try {
        message = parseSipMessage(input);
        parsed++;
      } catch (error) {
        assert.ok(error instanceof SipParseError, `mutation ${i}: ${String(error)}`);
        assert.equal(error.cause, undefined, `mutation ${i}: an internal error ${String(error.cause)}`);
        assert.ok(statuses.has(error.status), `mutation ${i}: status ${error.status}`);
        if (error.request) responseTo(error.request, error.status, error.reason, { toTag: 'f' });
        refused++;
      }
      if (message !== undefined) {
        // What parses is written back to bytes that parse and are written back the same.
        const written = serializeSipMessage(message);
        const again = parseSipMessage(written);
        assert.equal(again.kind, message.kind);
        assert.deepEqual(serializeSipMessage(again), written, `mutation ${i}: ${JSON.stringify(input.toString('latin1'))}`);
      }
      // The stream reader takes the same bytes, cut at a random place, without failing otherwise.
      const reader = new SipMessageReader();
      const cut = Math.floor(random() * (input.length + 1));
      try {
        reader.feed(input.subarray(0, cut));
        reader.feed(input.subarray(cut));
      } catch (error) {
        assert.ok(error instanceof SipParseError, `mutation ${i} (stream): ${String(error)}`);
        assert.equal(error.cause, undefined, `mutation ${i} (stream): an internal error ${String(error.cause)}`);
      }
    }
    assert.ok(parsed > 100 && refused > 100, `parsed ${parsed}, refused ${refused}`);
  });
});

describe('SIP readers memoized by value', () => {
  test('a value read again gives the same result; a malformed one is refused every time', () => {
    const value = '"Ann" <sip:ann@example.net;transport=tcp>;tag=memo-1';
    const first = parseNameAddr(value);
    assert.equal(parseNameAddr(value), first);
    assert.equal(first.params.get('tag'), 'memo-1');
    // The same text built anew (not the same string object) finds the same result.
    assert.equal(parseNameAddr(['"Ann" <sip:ann@example.net;transport=tcp>', 'tag=memo-1'].join(';')), first);
    const via = 'SIP/2.0/UDP client.example.net:5070;branch=z9hG4bK-memo;rport';
    assert.equal(parseVia(via), parseVia(via));
    assert.equal(parseVia(via).port, 5070);
    assert.equal(parseCSeq('12 BYE'), parseCSeq('12 BYE'));
    for (let i = 0; i < 3; i++) {
      assert.throws(() => parseNameAddr('<sip:ann@exa mple.net>'), SipParseError);
      assert.throws(() => parseVia('SIP/2.0/UDP bad_host;branch=z9hG4bK1'), SipParseError);
      assert.equal(isHost('bad_host'), false);
      assert.equal(isHost('host.example'), true);
    }
  });

  test('the memo holds at most two generations of its size and drops long keys', () => {
    let reads = 0;
    const memo = new Memo<string>(4, 10);
    const read = (key: string): string => {
      reads++;
      return key.toUpperCase();
    };
    for (const key of ['a', 'b', 'c', 'd']) memo.read(key, read);
    assert.equal(reads, 4);
    for (const key of ['a', 'b', 'c', 'd']) assert.equal(memo.read(key, read), key.toUpperCase());
    assert.equal(reads, 4, 'all four are kept');
    // Four more fill a new generation; the oldest four then go when a third generation starts.
    for (const key of ['e', 'f', 'g', 'h', 'i']) memo.read(key, read);
    assert.equal(reads, 9);
    memo.read('z', read);
    memo.read('a', read);
    assert.equal(reads, 11, '"a" was read again: the memo is bounded');
    const long = 'x'.repeat(11);
    memo.read(long, read);
    memo.read(long, read);
    assert.equal(reads, 13, 'a key over the limit is never kept');
  });

  test('list headers: single values, several on a line, empty ones dropped, white space trimmed', () => {
    const headers = new SipHeaders([
      ['Route', '<sip:a.example;lr>'],
      ['Route', ''],
      ['Route', ' <sip:b.example;lr> ,, <sip:c.example;lr>'],
      ['Subject', ''],
    ]);
    assert.deepEqual(headers.getAll('route'), ['<sip:a.example;lr>', '<sip:b.example;lr>', '<sip:c.example;lr>']);
    assert.deepEqual(headers.getAll('Subject'), ['']);
    const copy = headers.clone();
    copy.remove('Route');
    assert.equal(headers.count('Route'), 3, 'a clone is a copy');
    assert.equal(copy.count('ROUTE'), 0);
  });
});
