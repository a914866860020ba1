/**
 * SDP descriptors in both XIMSS presentations (src/ximss/sdp-xml.ts): the XML presentation
 * (`<sdp>`, as INTEROP.md describes what clients send and parse) to text and back, text to
 * XML and back, `<sdp>` with a text body and `<sdpText>`, static payload names, and every
 * validation error.
 *
 * The samples are written for these tests. What informed them: the SDP grammar of RFC 8866,
 * the static payload types of RFC 3551, rtcp of RFC 3605, ICE candidates of RFC 8839, DTLS
 * setup/fingerprint of RFC 8842, BUNDLE of RFC 9143, and the general shape of a browser offer.
 * Addresses are from the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
 * 2001:db8::/32).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sdpTransform from 'sdp-transform';
import { el, XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { SDP_LIMITS, SdpError, sdpFromText, sdpFromXml, sdpTextElement, sdpToText, sdpToXml, type SessionDescription } from '../src/ximss/sdp-xml.js';

/** Parses indented sample XML (the whitespace between elements is layout, not content). */
function xml(source: string): XmlElement {
  return parseXml(source.replace(/>\s+</g, '><').trim());
}

/** Text SDP from readable lines (CRLF, as on the wire). */
function sdpText(...lines: string[]): string {
  return lines.join('\r\n') + '\r\n';
}

/** XML → model → text → model → XML; the XML must come back as it was. */
function assertXmlRoundTrip(sample: XmlElement): string {
  const text = sdpToText(sdpFromXml(sample));
  assert.equal(sdpToXml(sdpFromText(text)).toString(), sample.toString());
  return text;
}

/** Text → model → XML (serialized and parsed again, as on the wire) → model → text; sdp-transform must read both texts the same. */
function assertTextRoundTrip(text: string): XmlElement {
  const element = sdpToXml(sdpFromText(text));
  const back = sdpToText(sdpFromXml(parseXml(element.toString())));
  assert.deepEqual(sdpTransform.parse(back), sdpTransform.parse(text));
  return element;
}

function assertSdpError(run: () => unknown, errorText: RegExp): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof SdpError, `expected an SdpError, got ${String(err)}`);
    assert.match(err.errorText, errorText);
    return true;
  });
}

// -----------------------------------------------------------------------------------------
// Samples in the XML presentation (attr elements in sdp-transform's order, so that they come back unchanged)

const PHONE_OFFER = `
<sdp origUser="deskphone" sessionID="73001" sessionVersion="1" origIP="[192.0.2.10]" name="call" ip="[192.0.2.10]">
  <media media="audio" protocol="RTP/AVP" ip="[192.0.2.10]:40000" direction="sendrecv">
    <codec id="0" name="PCMU/8000"/>
    <codec id="8" name="PCMA/8000"/>
    <codec id="101" name="telephone-event/8000"/>
    <attr name="fmtp">101 0-15</attr>
    <attr name="ptime">20</attr>
  </media>
</sdp>`;

const FINGERPRINT = 'sha-256 ' + Array.from({ length: 32 }, (_, i) => ((i * 37 + 11) % 256).toString(16).toUpperCase().padStart(2, '0')).join(':');

const WEBRTC_OFFER = `
<sdp origUser="-" sessionID="5186920346215477" sessionVersion="2" origIP="[127.0.0.1]">
  <attr name="group">BUNDLE 0 1</attr>
  <attr name="webrtc">yes</attr>
  <media media="audio" protocol="UDP/TLS/RTP/SAVPF" ip="[198.51.100.7]:51200" rtcp="[0.0.0.0]:9" direction="sendrecv">
    <codec id="111" name="opus/48000/2"/>
    <codec id="9" name="G722/8000"/>
    <codec id="0" name="PCMU/8000"/>
    <codec id="8" name="PCMA/8000"/>
    <codec id="126" name="telephone-event/8000"/>
    <attr name="fmtp">111 minptime=10;useinbandfec=1</attr>
    <attr name="rtcp-fb">111 transport-cc</attr>
    <attr name="extmap">1 urn:ietf:params:rtp-hdrext:ssrc-audio-level</attr>
    <attr name="setup">actpass</attr>
    <attr name="mid">0</attr>
    <attr name="msid">strm-a trk-a</attr>
    <attr name="ice-ufrag">Qx7b</attr>
    <attr name="ice-pwd">w3Lm9Rz0Tq2Yc8Vn4Kd6Pj1H</attr>
    <attr name="fingerprint">${FINGERPRINT}</attr>
    <attr name="candidate">2846113312 1 udp 2122260223 198.51.100.7 51200 typ host generation 0</attr>
    <attr name="candidate">1739412081 1 udp 1686052607 203.0.113.44 51200 typ srflx raddr 198.51.100.7 rport 51200 generation 0</attr>
    <attr name="ice-options">trickle</attr>
    <attr name="ssrc">3735928559 cname:k3Jx0pQ</attr>
    <attr name="ssrc">3735928559 msid:strm-a trk-a</attr>
    <attr name="rtcp-mux"/>
    <attr name="rtcp-rsize"/>
  </media>
  <media media="video" protocol="UDP/TLS/RTP/SAVPF" ip="[198.51.100.7]:51200" rtcp="[0.0.0.0]:9" direction="sendrecv">
    <codec id="96" name="VP8/90000"/>
    <codec id="97" name="rtx/90000"/>
    <attr name="fmtp">97 apt=96</attr>
    <attr name="rtcp-fb">96 nack</attr>
    <attr name="rtcp-fb">96 nack pli</attr>
    <attr name="rtcp-fb">96 ccm fir</attr>
    <attr name="setup">actpass</attr>
    <attr name="mid">1</attr>
    <attr name="ice-ufrag">Qx7b</attr>
    <attr name="ice-pwd">w3Lm9Rz0Tq2Yc8Vn4Kd6Pj1H</attr>
    <attr name="fingerprint">${FINGERPRINT}</attr>
    <attr name="ssrc">19088743 cname:k3Jx0pQ</attr>
    <attr name="ssrc">2309737967 cname:k3Jx0pQ</attr>
    <attr name="ssrc-group">FID 19088743 2309737967</attr>
    <attr name="rtcp-mux"/>
    <attr name="rtcp-rsize"/>
  </media>
</sdp>`;

const IPV6_OFFER = `
<sdp origUser="softphone" sessionID="90210" sessionVersion="7" origIP="[2001:db8::a]">
  <media media="audio" protocol="RTP/AVP" ip="[2001:db8::a]:30000" rtcp="[2001:db8::a]:30001" direction="sendrecv">
    <codec id="9" name="G722/8000"/>
    <codec id="101" name="telephone-event/8000"/>
    <attr name="fmtp">101 0-16</attr>
  </media>
  <media media="video" protocol="RTP/AVP" ip="[2001:db8::b]:30002" direction="recvonly">
    <codec id="99" name="H264/90000"/>
    <attr name="fmtp">99 profile-level-id=42e01f;packetization-mode=1</attr>
  </media>
</sdp>`;

function holdOffer(direction: string, sessionVersion: number): string {
  return `
<sdp origUser="deskphone" sessionID="73001" sessionVersion="${sessionVersion}" origIP="[192.0.2.10]">
  <media media="audio" protocol="RTP/AVP" ip="[192.0.2.10]:40000" direction="${direction}">
    <codec id="8" name="PCMA/8000"/>
    <codec id="101" name="telephone-event/8000"/>
    <attr name="fmtp">101 0-15</attr>
  </media>
</sdp>`;
}

/** An answer taking the audio and refusing the video (RFC 3264: port 0, formats kept). */
const REJECTED_VIDEO_ANSWER = `
<sdp origUser="gateway" sessionID="4242" sessionVersion="1" origIP="[203.0.113.5]">
  <media media="audio" protocol="RTP/AVP" ip="[203.0.113.5]:20000" direction="sendrecv">
    <codec id="0" name="PCMU/8000"/>
  </media>
  <media media="video" protocol="RTP/AVP" ip="[203.0.113.5]:0" direction="inactive">
    <codec id="31" name="H261/90000"/>
  </media>
</sdp>`;

// -----------------------------------------------------------------------------------------

describe('XML presentation → text → XML', () => {
  test('an RTP/AVP G.711 phone offer with telephone-event', () => {
    const text = assertXmlRoundTrip(xml(PHONE_OFFER));
    assert.match(text, /^o=deskphone 73001 1 IN IP4 192\.0\.2\.10\r$/m);
    assert.match(text, /^s=call\r$/m);
    assert.match(text, /^c=IN IP4 192\.0\.2\.10\r$/m);
    assert.match(text, /^m=audio 40000 RTP\/AVP 0 8 101\r$/m);
    assert.match(text, /^a=rtpmap:101 telephone-event\/8000\r$/m);
    assert.match(text, /^a=sendrecv\r$/m);
    const model = sdpFromXml(xml(PHONE_OFFER));
    assert.deepEqual(
      model.media[0]!.rtp.map((r) => [r.payload, r.codec, r.rate]),
      [
        [0, 'PCMU', 8000],
        [8, 'PCMA', 8000],
        [101, 'telephone-event', 8000],
      ],
    );
    assert.equal(model.media[0]!.ptime, 20);
  });

  test('a WebRTC offer: BUNDLE, ICE candidates, DTLS fingerprint and setup, mid, rtcp-mux, ssrc, opus fmtp', () => {
    const text = assertXmlRoundTrip(xml(WEBRTC_OFFER));
    assert.match(text, /^a=group:BUNDLE 0 1\r$/m);
    assert.match(text, /^m=audio 51200 UDP\/TLS\/RTP\/SAVPF 111 9 0 8 126\r$/m);
    assert.match(text, /^c=IN IP4 198\.51\.100\.7\r$/m);
    assert.match(text, /^a=rtcp:9 IN IP4 0\.0\.0\.0\r$/m);
    const model = sdpFromXml(xml(WEBRTC_OFFER));
    assert.deepEqual(model.groups, [{ type: 'BUNDLE', mids: '0 1' }]);
    const [audio, video] = model.media;
    assert.equal(audio!.setup, 'actpass');
    assert.equal(audio!.fingerprint?.type, 'sha-256');
    assert.equal(audio!.candidates?.length, 2);
    assert.equal(audio!.candidates?.[1]?.type, 'srflx');
    assert.equal(audio!.rtcpMux, 'rtcp-mux');
    assert.deepEqual(audio!.fmtp, [{ payload: 111, config: 'minptime=10;useinbandfec=1' }]);
    assert.deepEqual(
      audio!.rtp.find((r) => r.payload === 111),
      { payload: 111, codec: 'opus', rate: 48000, encoding: 2 },
    );
    assert.equal(video!.ssrcGroups?.[0]?.semantics, 'FID');
    assert.equal(String(video!.mid), '1');
    // An attribute sdp-transform does not know is kept as it came.
    assert.deepEqual(model.invalid, [{ value: 'webrtc:yes' }]);
  });

  test('IPv6 addresses in ip, rtcp and origIP', () => {
    const text = assertXmlRoundTrip(xml(IPV6_OFFER));
    assert.match(text, /^o=softphone 90210 7 IN IP6 2001:db8::a\r$/m);
    assert.match(text, /^c=IN IP6 2001:db8::a\r$/m);
    assert.match(text, /^c=IN IP6 2001:db8::b\r$/m);
    assert.match(text, /^a=rtcp:30001 IN IP6 2001:db8::a\r$/m);
    assert.match(text, /^a=recvonly\r$/m);
  });

  test('hold: sendonly, then inactive', () => {
    for (const [direction, version] of [
      ['sendonly', 2],
      ['inactive', 3],
    ] as const) {
      const text = assertXmlRoundTrip(xml(holdOffer(direction, version)));
      assert.match(text, new RegExp(`^a=${direction}\\r$`, 'm'));
      assert.equal(sdpFromXml(xml(holdOffer(direction, version))).media[0]!.direction, direction);
    }
  });

  test('a rejected media line (port 0) keeps its format', () => {
    const text = assertXmlRoundTrip(xml(REJECTED_VIDEO_ANSWER));
    assert.match(text, /^m=video 0 RTP\/AVP 31\r$/m);
    assert.equal(sdpFromXml(xml(REJECTED_VIDEO_ANSWER)).media[1]!.port, 0);
  });

  test('the INTEROP.md shape: session attributes before and after the media, no sessionID', () => {
    const model = sdpFromXml(
      xml(`
<sdp origUser="-" sessionVersion="2" origIP="[127.0.0.1]">
  <attr name="group">BUNDLE audio</attr>
  <media media="audio" protocol="RTP/SAVPF" ip="[10.0.0.5]:50739" rtcp="[0.0.0.0]:9" direction="sendrecv">
    <codec id="0" name="PCMU/8000"/><codec id="8" name="PCMA/8000"/><codec id="126" name="telephone-event/8000"/>
    <attr name="mid">audio</attr>
  </media>
  <attr name="webrtc">yes</attr>
</sdp>`),
    );
    assert.equal(String(model.origin.sessionId), '0');
    assert.deepEqual(model.groups, [{ type: 'BUNDLE', mids: 'audio' }]);
    assert.deepEqual(model.invalid, [{ value: 'webrtc:yes' }]);
    assert.equal(model.media[0]!.mid, 'audio');
  });

  test('a direction or rtcp given as attr elements is read when the XML attribute is absent, and not doubled', () => {
    const model = sdpFromXml(
      xml(`
<sdp origIP="[192.0.2.1]">
  <media media="audio" protocol="RTP/AVP" ip="[192.0.2.1]:4000">
    <codec id="0"/>
    <attr name="sendonly"/>
    <attr name="rtcp">4001</attr>
  </media>
</sdp>`),
    );
    assert.equal(model.media[0]!.direction, 'sendonly');
    assert.equal(model.media[0]!.rtcp?.port, 4001);
    assert.equal(sdpToText(model).match(/^a=sendonly/gm)?.length, 1);
    // Both given: the XML attribute wins.
    const both = sdpFromXml(xml('<sdp><media media="audio" protocol="RTP/AVP" ip="[192.0.2.1]:4000" direction="inactive"><codec id="0"/><attr name="sendonly"/></media></sdp>'));
    assert.equal(both.media[0]!.direction, 'inactive');
    assert.equal(both.origin.address, '192.0.2.1');
    // Neither: the session's direction, else sendrecv.
    const media = '<media media="audio" protocol="RTP/AVP" ip="[192.0.2.1]:4000"><codec id="0"/></media>';
    assert.equal(sdpFromXml(xml(`<sdp><attr name="recvonly"/>${media}</sdp>`)).media[0]!.direction, 'recvonly');
    assert.equal(sdpFromXml(xml(`<sdp>${media}</sdp>`)).media[0]!.direction, 'sendrecv');
  });
});

describe('text → XML presentation → text', () => {
  test('a phone answer with a session-level address', () => {
    const element = assertTextRoundTrip(
      sdpText(
        'v=0',
        'o=pbx 8812 8813 IN IP4 192.0.2.77',
        's=-',
        'c=IN IP4 192.0.2.77',
        't=0 0',
        'm=audio 16384 RTP/AVP 8 101',
        'a=rtpmap:8 PCMA/8000',
        'a=rtpmap:101 telephone-event/8000',
        'a=fmtp:101 0-15',
        'a=ptime:20',
        'a=sendrecv',
      ),
    );
    assert.equal(element.attr('ip'), '[192.0.2.77]');
    const media = element.element('media')!;
    assert.equal(media.attr('ip'), '[192.0.2.77]:16384');
    assert.equal(media.attr('direction'), 'sendrecv');
    assert.deepEqual(
      media.elements('codec').map((c) => c.attrs),
      [
        { id: '8', name: 'PCMA/8000' },
        { id: '101', name: 'telephone-event/8000' },
      ],
    );
    assert.deepEqual(
      media.elements('attr').map((a) => [a.attr('name'), a.text()]),
      [
        ['fmtp', '101 0-15'],
        ['ptime', '20'],
      ],
    );
  });

  test('a WebRTC answer', () => {
    const element = assertTextRoundTrip(
      sdpText(
        'v=0',
        'o=- 3141592653589793 1 IN IP4 127.0.0.1',
        's=-',
        't=0 0',
        'a=group:BUNDLE 0',
        'a=msid-semantic: WMS *',
        'm=audio 9 UDP/TLS/RTP/SAVPF 111 126',
        'c=IN IP4 0.0.0.0',
        'a=rtcp:9 IN IP4 0.0.0.0',
        'a=rtpmap:111 opus/48000/2',
        'a=rtpmap:126 telephone-event/8000',
        'a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1',
        'a=ice-ufrag:Zr4q',
        'a=ice-pwd:9nB2kLx7Hc0Qw5Ey3Ra8Mv6T',
        `a=fingerprint:${FINGERPRINT}`,
        'a=setup:active',
        'a=mid:0',
        'a=sendrecv',
        'a=candidate:1 1 udp 2130706431 203.0.113.90 40404 typ host',
        'a=end-of-candidates',
        'a=ssrc:287454020 cname:ximssd',
        'a=rtcp-mux',
      ),
    );
    const media = element.element('media')!;
    assert.equal(media.attr('ip'), '[0.0.0.0]:9');
    assert.equal(media.attr('rtcp'), '[0.0.0.0]:9');
    const names = media.elements('attr').map((a) => a.attr('name'));
    for (const name of ['fmtp', 'setup', 'mid', 'ice-ufrag', 'ice-pwd', 'fingerprint', 'candidate', 'end-of-candidates', 'ssrc', 'rtcp-mux']) assert.ok(names.includes(name), name);
    assert.ok(!names.includes('rtpmap') && !names.includes('sendrecv') && !names.includes('rtcp'), 'rtpmap, direction and rtcp are XML attributes, not attr elements');
  });

  test('IPv6 with an explicit rtcp address, on hold', () => {
    const element = assertTextRoundTrip(
      sdpText(
        'v=0',
        'o=softphone 600 601 IN IP6 2001:db8::1:2',
        's=-',
        't=0 0',
        'm=audio 49152 RTP/AVP 0',
        'c=IN IP6 2001:db8::1:2',
        'a=rtpmap:0 PCMU/8000',
        'a=rtcp:49153 IN IP6 2001:db8::1:3',
        'a=sendonly',
      ),
    );
    const media = element.element('media')!;
    assert.equal(media.attr('ip'), '[2001:db8::1:2]:49152');
    assert.equal(media.attr('rtcp'), '[2001:db8::1:3]:49153');
    assert.equal(media.attr('direction'), 'sendonly');
  });

  test('static payload types without rtpmap are named per RFC 3551, and written back with one', () => {
    const text = sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.9', 's=-', 'c=IN IP4 192.0.2.9', 't=0 0', 'm=audio 5004 RTP/AVP 0 8 9 18 13');
    const element = sdpToXml(sdpFromText(text));
    const media = element.element('media')!;
    assert.deepEqual(
      media.elements('codec').map((c) => c.attr('name')),
      ['PCMU/8000', 'PCMA/8000', 'G722/8000', 'G729/8000', 'CN/8000'],
    );
    assert.equal(media.attr('direction'), 'sendrecv', 'no direction line means sendrecv');
    const back = sdpTransform.parse(sdpToText(sdpFromXml(element)));
    assert.equal(back.media[0]!.payloads, '0 8 9 18 13');
    assert.deepEqual(
      back.media[0]!.rtp.map((r) => r.payload),
      [0, 8, 9, 18, 13],
    );
  });

  test('a dynamic payload type without rtpmap stays unnamed', () => {
    const element = sdpToXml(sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.9', 's=-', 'c=IN IP4 192.0.2.9', 't=0 0', 'm=audio 5004 RTP/AVP 98')));
    assert.deepEqual(element.element('media')!.element('codec')!.attrs, { id: '98' });
  });

  test('a session-level direction becomes each media direction', () => {
    const element = sdpToXml(sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.9', 's=-', 'c=IN IP4 192.0.2.9', 't=0 0', 'a=inactive', 'm=audio 5004 RTP/AVP 0', 'm=video 5006 RTP/AVP 31', 'a=recvonly')));
    assert.deepEqual(
      element.elements('media').map((m) => m.attr('direction')),
      ['inactive', 'recvonly'],
    );
    assert.equal(element.elements('attr').length, 0);
  });

  test('a non-RTP media (a data channel) carries its format token', () => {
    const element = assertTextRoundTrip(
      sdpText('v=0', 'o=- 5 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'c=IN IP4 0.0.0.0', 'a=mid:2', 'a=sendrecv', 'a=sctp-port:5000'),
    );
    assert.deepEqual(element.element('media')!.element('codec')!.attrs, { id: 'webrtc-datachannel' });
  });

  test('a model built by the engine, without rtp or fmtp lists, still converts', () => {
    const built = {
      version: 0,
      origin: { username: 'ximssd', sessionId: 1, sessionVersion: 1, netType: 'IN', ipVer: 4, address: '203.0.113.1' },
      name: '-',
      timing: { start: 0, stop: 0 },
      media: [{ type: 'audio', port: 30000, protocol: 'RTP/AVP', payloads: '0 8', connection: { version: 4, ip: '203.0.113.1' } }],
    } as unknown as SessionDescription;
    const element = sdpToXml(built);
    assert.deepEqual(
      element.element('media')!.elements('codec').map((c) => c.attr('name')),
      ['PCMU/8000', 'PCMA/8000'],
    );
    assert.match(sdpToText(built), /^m=audio 30000 RTP\/AVP 0 8\r$/m);
  });

  test('converting does not change the model it is given', () => {
    const model = sdpFromXml(xml(WEBRTC_OFFER));
    const copy = structuredClone(model);
    sdpToText(model);
    sdpToXml(model);
    sdpTextElement(model);
    assert.deepEqual(model, copy);
  });
});

describe('<sdp> with a text body and <sdpText>', () => {
  const TEXT = sdpText('v=0', 'o=browser 77 1 IN IP4 198.51.100.20', 's=-', 'c=IN IP4 198.51.100.20', 't=0 0', 'm=audio 61000 RTP/AVP 0 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv');

  test('an <sdp> element whose body is SDP text', () => {
    const model = sdpFromXml(el('sdp', undefined, TEXT));
    assert.equal(model.origin.username, 'browser');
    assert.equal(model.media[0]!.port, 61000);
    assert.deepEqual(model, sdpFromText(TEXT));
  });

  test('the same through the XML parser, with LF line ends', () => {
    const model = sdpFromXml(parseXml(`<sdp>${TEXT.replace(/\r\n/g, '\n')}</sdp>`));
    assert.equal(model.media[0]!.connection, undefined);
    assert.equal(model.connection?.ip, '198.51.100.20');
  });

  test('<sdpText> both ways', () => {
    const model = sdpFromXml(parseXml(`<sdpText>${TEXT}</sdpText>`));
    const element = sdpTextElement(model);
    assert.equal(element.name, 'sdpText');
    assert.equal(element.text(), sdpToText(model));
    assert.deepEqual(sdpTransform.parse(element.text()), sdpTransform.parse(TEXT));
    assert.deepEqual(sdpFromXml(parseXml(element.toString())), model);
  });
});

describe('validation', () => {
  /** A one-media descriptor with the media element's XML attributes and children replaced. */
  function withMedia(attrs: string, children = '<codec id="0" name="PCMU/8000"/>'): XmlElement {
    return xml(`<sdp origIP="[192.0.2.1]"><media ${attrs}>${children}</media></sdp>`);
  }
  const AUDIO = 'media="audio" protocol="RTP/AVP"';

  test('a media without ip', () => {
    assertSdpError(() => sdpFromXml(withMedia(AUDIO)), /media 1 ip: missing/);
  });

  test('malformed ip', () => {
    for (const ip of ['192.0.2.1:4000', '[192.0.2.1]', '[192.0.2.1]:', '[example.com]:4000', '[192.0.2.300]:4000', '[2001:db8::1:4000', '[192.0.2.1]:4000x', '[]:4000']) {
      assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="${ip}"`)), /media 1 ip: (malformed|no port|".*" is not an IPv4 or IPv6 address)/);
    }
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000" rtcp="9"`)), /media 1 rtcp: malformed/);
    assertSdpError(() => sdpFromXml(xml('<sdp origIP="192.0.2.1"/>')), /origIP: malformed/);
    assertSdpError(() => sdpFromXml(xml('<sdp ip="[nowhere]"/>')), /sdp ip: "nowhere" is not an IPv4 or IPv6 address/);
  });

  test('a port out of range', () => {
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:65536"`)), /port 65536 out of range/);
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000" rtcp="[192.0.2.1]:99999"`)), /rtcp: port 99999 out of range/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP4 192.0.2.1', 't=0 0', 'm=audio 70000 RTP/AVP 0')), /media 1: port 70000 out of range/);
  });

  test('a media without codecs', () => {
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, '<attr name="ptime">20</attr>')), /media 1: no codecs/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP4 192.0.2.1', 't=0 0', 'm=audio 4000 RTP/AVP')), /media 1: no codecs/);
  });

  test('an unknown direction', () => {
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000" direction="sideways"`)), /media 1: unknown direction "sideways"/);
  });

  test('non-numeric or out-of-range payload ids', () => {
    for (const id of ['pcmu', '', '-1', '128', '1.5', '0x1']) {
      assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, `<codec id="${id}"/>`)), /codec id ".*" is not a payload type/);
    }
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, '<codec/>')), /codec id "" is not a payload type/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP4 192.0.2.1', 't=0 0', 'm=audio 4000 RTP/AVP 0 pcma')), /codec id "pcma" is not a payload type/);
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, '<codec id="0"/><codec id="0"/>')), /codec id 0 is given twice/);
  });

  test('a malformed codec name', () => {
    for (const name of ['opus', 'opus/fast', 'op us/48000', 'opus/48000/2/1']) {
      assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, `<codec id="111" name="${name}"/>`)), /codec 111 has a malformed name/);
    }
  });

  test('malformed session fields, media type and protocol', () => {
    assertSdpError(() => sdpFromXml(xml('<sdp sessionID="abc"/>')), /malformed sessionID/);
    assertSdpError(() => sdpFromXml(xml('<sdp sessionVersion="1.0"/>')), /malformed sessionVersion/);
    assertSdpError(() => sdpFromXml(xml('<sdp origUser="two words"/>')), /malformed origUser/);
    assertSdpError(() => sdpFromXml(withMedia('protocol="RTP/AVP" ip="[192.0.2.1]:4000"')), /media 1: no media type/);
    assertSdpError(() => sdpFromXml(withMedia('media="audio video" protocol="RTP/AVP" ip="[192.0.2.1]:4000"')), /media 1: malformed media/);
    assertSdpError(() => sdpFromXml(withMedia('media="audio" ip="[192.0.2.1]:4000"')), /media 1: no protocol/);
    assertSdpError(() => sdpFromXml(withMedia('media="audio" protocol="RTP AVP" ip="[192.0.2.1]:4000"')), /media 1: malformed protocol/);
  });

  test('attributes: no name, a malformed name, a line break (no SDP line can be forged)', () => {
    assertSdpError(() => sdpFromXml(xml('<sdp><attr>x</attr></sdp>')), /session: an attr has no name/);
    assertSdpError(() => sdpFromXml(xml('<sdp><attr name="a b">x</attr></sdp>')), /session: malformed attr name "a b"/);
    assertSdpError(() => sdpFromXml(xml('<sdp><attr name="x:y">1</attr></sdp>')), /malformed attr name/);
    const forged = el('sdp', { origIP: '[192.0.2.1]' }, el('attr', { name: 'tool' }, 'x\r\nm=audio 1 RTP/AVP 0'));
    assertSdpError(() => sdpFromXml(forged), /session: attr tool has a line break/);
    assertSdpError(() => sdpFromXml(el('sdp', { name: 'a\nb' })), /sdp: name has a line break/);
  });

  test('too many elements', () => {
    const media = '<media media="audio" protocol="RTP/AVP" ip="[192.0.2.1]:4000"><codec id="0"/></media>';
    assertSdpError(() => sdpFromXml(xml(`<sdp>${media.repeat(SDP_LIMITS.media + 1)}</sdp>`)), /too many media \(at most 32\)/);
    assert.equal(sdpFromXml(xml(`<sdp>${media.repeat(SDP_LIMITS.media)}</sdp>`)).media.length, SDP_LIMITS.media);

    const codecs = Array.from({ length: SDP_LIMITS.codecsPerMedia + 1 }, (_, i) => `<codec id="${i + 32}"/>`).join('');
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, codecs)), /media 1: too many codecs \(at most 64\)/);

    const attrs = '<attr name="x-note">n</attr>'.repeat(SDP_LIMITS.attributesPerLevel + 1);
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, '<codec id="0"/>' + attrs)), /media 1: too many attributes \(at most 256\)/);
    assertSdpError(() => sdpFromXml(xml(`<sdp>${attrs}</sdp>`)), /too many session attributes \(at most 256\)/);

    assertSdpError(() => sdpFromXml(xml(`<sdp>${'<junk/>'.repeat(SDP_LIMITS.childElements + 1)}</sdp>`)), /too many elements in <sdp>/);

    const manyMedia = sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP4 192.0.2.1', 't=0 0', ...Array.from({ length: 33 }, () => 'm=audio 4000 RTP/AVP 0'));
    assertSdpError(() => sdpFromText(manyMedia), /too many media/);
  });

  test('over-long values and texts', () => {
    const long = 'x'.repeat(SDP_LIMITS.attributeValue + 1);
    assertSdpError(() => sdpFromXml(withMedia(`${AUDIO} ip="[192.0.2.1]:4000"`, `<codec id="0"/><attr name="x-note">${long}</attr>`)), /media 1: attr x-note is too long/);
    assertSdpError(() => sdpFromXml(xml(`<sdp><attr name="${'n'.repeat(SDP_LIMITS.attributeName + 1)}"/></sdp>`)), /attr name is too long/);
    assertSdpError(() => sdpFromXml(xml(`<sdp origUser="${'u'.repeat(SDP_LIMITS.field + 1)}"/>`)), /origUser is too long/);
    assertSdpError(() => sdpFromText('v=0\r\n' + 'a=x\r\n'.repeat(SDP_LIMITS.textChars / 5)), /longer than 65536 characters/);
    assertSdpError(() => sdpFromText('\n'.repeat(SDP_LIMITS.textLines)), /more than 4096 lines/);
    assertSdpError(() => sdpFromXml(el('sdpText', undefined, 'v=0\r\n'.repeat(20000))), /longer than/);
  });

  test('text: no origin, a media without an address, a bad address', () => {
    assertSdpError(() => sdpFromText('hello'), /no valid o= line/);
    assertSdpError(() => sdpFromText(''), /no valid o= line/);
    assertSdpError(() => sdpFromXml(xml('<sdpText/>')), /no valid o= line/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 't=0 0', 'm=audio 4000 RTP/AVP 0')), /media 1: no address \(c= line\)/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP4 media.example', 't=0 0', 'm=audio 4000 RTP/AVP 0')), /session: address "media.example" is not an IPv4 or IPv6 address/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 192.0.2.1', 's=-', 'c=IN IP6 192.0.2.1', 't=0 0')), /address 192\.0\.2\.1 is not IP6/);
    assertSdpError(() => sdpFromText(sdpText('v=0', 'o=- 1 1 IN IP4 host.example', 's=-', 't=0 0')), /origin address "host.example"/);
  });

  test('another element than <sdp> or <sdpText>', () => {
    assertSdpError(() => sdpFromXml(xml('<callStart/>')), /expected <sdp> or <sdpText>, not <callStart>/);
  });

  test('a model the engine built badly is refused before it is written', () => {
    const model = sdpFromXml(xml(PHONE_OFFER));
    const forged: SessionDescription = { ...model, name: 'x\r\na=evil' };
    assertSdpError(() => sdpToText(forged), /name has a line break/);
    assertSdpError(() => sdpToXml(forged), /name has a line break/);
    const noAddress: SessionDescription = structuredClone(model);
    delete noAddress.connection;
    assertSdpError(() => sdpToXml(noAddress), /media 1: no address/);
    const badDirection = structuredClone(model) as unknown as { media: { direction: string }[] };
    badDirection.media[0]!.direction = 'both';
    assertSdpError(() => sdpTextElement(badDirection as unknown as SessionDescription), /media 1: unknown direction "both"/);
  });

  test('SdpError is what the XIMSS layer answers with', () => {
    const err = new SdpError('media 1: no codecs');
    assert.equal(err.errorText, 'invalid SDP: media 1: no codecs');
    assert.equal(err.message, err.errorText);
  });

  test('damaged samples never throw anything but SdpError', () => {
    const badValues = ['', ' ', 'x', '[', ']', '[]', '[::1]', '[::1]:', '[::1]:65536', '[1.2.3.4]:-1', '-1', '999', 'a\nb', 'sendrecv ', '0 0', 'ÿ', '[1.2.3.4]:1e3'];
    const samples = [PHONE_OFFER, WEBRTC_OFFER, IPV6_OFFER, REJECTED_VIDEO_ANSWER];
    let tried = 0;
    for (const sample of samples) {
      const root = xml(sample);
      const elements: XmlElement[] = [];
      const walk = (e: XmlElement): void => {
        elements.push(e);
        e.elements().forEach(walk);
      };
      walk(root);
      for (const target of elements) {
        for (const name of [...Object.keys(target.attrs), 'ip', 'id']) {
          for (const value of badValues) {
            const original = target.attrs[name];
            target.attrs[name] = value;
            tried++;
            try {
              const model = sdpFromXml(root);
              // Whatever is accepted must write out and read back.
              sdpFromXml(sdpToXml(model));
              sdpFromText(sdpToText(model));
            } catch (err) {
              assert.ok(err instanceof SdpError, `${name}="${value}" on <${target.name}>: ${String(err)}`);
            } finally {
              if (original === undefined) delete target.attrs[name];
              else target.attrs[name] = original;
            }
          }
        }
      }
    }
    assert.ok(tried > 1000);

    // Text: each line of a sample dropped or mangled in turn.
    const text = sdpToText(sdpFromXml(xml(WEBRTC_OFFER))).split('\r\n');
    for (let i = 0; i < text.length; i++) {
      for (const replacement of [undefined, 'm=', 'c=IN IP4', 'o=', 'a=rtcp:x', 'a=candidate:', 'm=audio x RTP/AVP 0', 'c=IN IP9 1.2.3.4']) {
        const lines = [...text];
        if (replacement === undefined) lines.splice(i, 1);
        else lines[i] = replacement;
        try {
          sdpToXml(sdpFromText(lines.join('\r\n')));
        } catch (err) {
          assert.ok(err instanceof SdpError, `line ${i} → ${String(replacement)}: ${String(err)}`);
        }
      }
    }
  });
});
