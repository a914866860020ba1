/**
 * SDP descriptors in both XIMSS presentations: native text in `<sdpText>`, and the "XML
 * presentation" in `<sdp>` that the spec names but never defines (INTEROP.md, "Signaling: the
 * XML presentation of SDP", has what clients send and parse).
 *
 * The model is sdp-transform's `SessionDescription`, unchanged: the call engine and the WebRTC
 * media gateway get the same structured object whichever presentation a client chose, and
 * it is the shape mediasoup-style code already reads (`media[].rtp`, `fmtp`, `candidates`,
 * `fingerprint`, `setup`, `direction`…). sdp-transform does all the SDP text work:
 *
 * - XML → model: the `<sdp>` element is written out as SDP text line by line (its `attr`
 *   elements are `a=` lines already) and sdp-transform parses that text, so every attribute
 *   it knows lands in its typed field and the others are kept verbatim in `invalid`.
 * - model → XML: sdp-transform writes the `a=` lines (its canonical order, which is the order
 *   of the `attr` elements produced); the fields the XML carries as XML attributes (address,
 *   port, rtcp, direction, rtpmap) are taken from the model directly.
 *
 * Every input is validated (addresses, ports, payload ids, directions, counts and lengths)
 * and refused with an `SdpError`, whose message the XIMSS layer answers with; nothing else
 * is thrown on bad input. The limits also keep a hostile descriptor from costing much.
 *
 * Not carried by the XML presentation (dropped on the way to XML): `i=`, `u=`, `e=`, `p=`,
 * `b=`, `r=`, `z=` lines and an `m=` port count (`m=video 5000/2`). A session-level
 * direction becomes the default of each media's `direction`.
 */
import { isIP } from 'node:net';
import sdpTransform, { type MediaDescription, type SessionDescription } from 'sdp-transform';
import { el, XmlElement } from '../xml/element.js';
import { ServiceError } from '../services/errors.js';

export type { MediaDescription, SessionDescription };

/** A descriptor the server cannot use; the message is the XIMSS `errorText`. */
export class SdpError extends ServiceError {
  override name = 'SdpError';

  constructor(message: string) {
    super(`invalid SDP: ${message}`, 500);
  }

  get errorText(): string {
    return this.message;
  }
}

/** Bounds on one descriptor, in either presentation (a WebRTC offer uses a small part of each). */
export const SDP_LIMITS = Object.freeze({
  media: 32,
  codecsPerMedia: 64,
  /** `attr` elements (`a=` lines) at the session level, and in each media. */
  attributesPerLevel: 256,
  /** Child elements of `<sdp>` or of one `<media>`, of whatever name. */
  childElements: 1024,
  attributeName: 64,
  /** One attribute value; the longest real ones (ssrc, fingerprint, candidates) are far shorter. */
  attributeValue: 4096,
  /** Other XML attribute values (user, ids, names, addresses). */
  field: 256,
  /** SDP text in `<sdpText>` or an `<sdp>` body. */
  textChars: 65536,
  textLines: 4096,
});

export const DIRECTIONS = ['sendrecv', 'sendonly', 'recvonly', 'inactive'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** The static RTP payload types of RFC 3551 (tables 4 and 5), named as an rtpmap would name them. */
export const STATIC_PAYLOAD_TYPES: ReadonlyMap<number, string> = new Map([
  [0, 'PCMU/8000'],
  [3, 'GSM/8000'],
  [4, 'G723/8000'],
  [5, 'DVI4/8000'],
  [6, 'DVI4/16000'],
  [7, 'LPC/8000'],
  [8, 'PCMA/8000'],
  [9, 'G722/8000'],
  [10, 'L16/44100/2'],
  [11, 'L16/44100'],
  [12, 'QCELP/8000'],
  [13, 'CN/8000'],
  [14, 'MPA/90000'],
  [15, 'G728/8000'],
  [16, 'DVI4/11025'],
  [17, 'DVI4/22050'],
  [18, 'G729/8000'],
  [25, 'CelB/90000'],
  [26, 'JPEG/90000'],
  [28, 'nv/90000'],
  [31, 'H261/90000'],
  [32, 'MPV/90000'],
  [33, 'MP2T/90000'],
  [34, 'H263/90000'],
]);

// -----------------------------------------------------------------------------------------
// Small grammar pieces, as strict as sdp-transform's own line grammar needs them to be

/** sdp-transform's m= grammar reads the media type as `\w*` and the protocol as `[\w/]*`. */
const MEDIA_TYPE = /^\w+$/;
const PROTOCOL = /^\w+(?:\/\w+)*$/;
/** A token of RFC 8866 (attribute names, user name): visible ASCII but no separators that matter here. */
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$/;
const DIGITS = /^\d+$/;
/** `[ip]` or `[ip]:port`: brackets always, so that IPv4 and IPv6 read the same way. */
const BRACKETED = /^\[([^\]]*)\](?::(\d{1,5}))?$/;
/** An rtpmap encoding: name/clock rate[/channels] (RFC 8866 6.6). */
const CODEC_NAME = /^[\w\-.]+\/\d+(?:\/\d+)?$/;
/** No line breaks (they would start new SDP lines) and no NUL. */
const LINE_BREAK = /[\r\n\0]/;

/** Protocols whose formats are RTP payload types (numbers 0–127). */
function isRtpProtocol(protocol: string): boolean {
  return /(?:^|\/)RTP(?:\/|$)/.test(protocol);
}

interface Address {
  ip: string;
  version: 4 | 6;
  port: number | undefined;
}

/** Reads `[ip]` or `[ip]:port`; `what` names the field in the error. */
function readAddress(value: string | undefined, what: string, needPort: boolean): Address {
  if (value === undefined || value === '') throw new SdpError(`${what}: missing (expected [ip]${needPort ? ':port' : ''})`);
  if (value.length > SDP_LIMITS.field) throw new SdpError(`${what}: too long`);
  const match = BRACKETED.exec(value);
  if (!match) throw new SdpError(`${what}: malformed "${value}" (expected [ip]${needPort ? ':port' : ''})`);
  const ip = match[1]!;
  const version = isIP(ip);
  if (version !== 4 && version !== 6) throw new SdpError(`${what}: "${ip}" is not an IPv4 or IPv6 address`);
  if (match[2] === undefined) {
    if (needPort) throw new SdpError(`${what}: no port in "${value}" (expected [ip]:port)`);
    return { ip, version, port: undefined };
  }
  return { ip, version, port: readPort(match[2], what) };
}

function readPort(text: string, what: string): number {
  const port = Number(text);
  if (!DIGITS.test(text) || port > 65535) throw new SdpError(`${what}: port ${text} out of range (0–65535)`);
  return port;
}

function bracketed(ip: string, port?: number): string {
  return port === undefined ? `[${ip}]` : `[${ip}]:${port}`;
}

/** An optional XML attribute as a single-line field of bounded length. */
function field(element: XmlElement, name: string, what: string, pattern?: RegExp): string | undefined {
  const value = element.attr(name);
  if (value === undefined) return undefined;
  if (value.length > SDP_LIMITS.field) throw new SdpError(`${what}: ${name} is too long`);
  if (LINE_BREAK.test(value)) throw new SdpError(`${what}: ${name} has a line break`);
  if (pattern && !pattern.test(value)) throw new SdpError(`${what}: malformed ${name} "${value}"`);
  return value;
}

// -----------------------------------------------------------------------------------------
// XML → model

/**
 * Reads a descriptor from `<sdp>` in the XML presentation, from `<sdp>` whose body is SDP text
 * (some clients' signalBind), or from `<sdpText>`.
 */
export function sdpFromXml(element: XmlElement): SessionDescription {
  if (element.name === 'sdpText') return sdpFromText(element.text());
  if (element.name !== 'sdp') throw new SdpError(`expected <sdp> or <sdpText>, not <${element.name}>`);
  const children = element.elements();
  if (children.length === 0 && element.text().trim() !== '') return sdpFromText(element.text());
  if (children.length > SDP_LIMITS.childElements) throw new SdpError('too many elements in <sdp>');
  return parseText(xmlToText(element, children), 'xml');
}

/** The SDP text an `<sdp>` element stands for: v, o, s, c, t, session a= lines, then each media. */
function xmlToText(sdp: XmlElement, children: XmlElement[]): string {
  const lines: string[] = ['v=0'];
  const sessionAddress = sdp.attr('ip') === undefined ? undefined : readAddress(sdp.attr('ip'), 'sdp ip', false);
  const mediaElements = children.filter((c) => c.name === 'media');
  if (mediaElements.length > SDP_LIMITS.media) throw new SdpError(`too many media (at most ${SDP_LIMITS.media})`);

  // A client that names no origin address gets the first one it gave elsewhere.
  let origin: Address | undefined;
  if (sdp.attr('origIP') !== undefined) origin = readAddress(sdp.attr('origIP'), 'origIP', false);
  else if (sessionAddress) origin = sessionAddress;
  else if (mediaElements[0]?.attr('ip') !== undefined) origin = readAddress(mediaElements[0].attr('ip'), 'media 1 ip', true);
  origin ??= { ip: '0.0.0.0', version: 4, port: undefined };

  const user = field(sdp, 'origUser', 'sdp', TOKEN) ?? '-';
  const sessionId = field(sdp, 'sessionID', 'sdp', DIGITS) ?? '0';
  const sessionVersion = field(sdp, 'sessionVersion', 'sdp', DIGITS) ?? '0';
  lines.push(`o=${user} ${sessionId} ${sessionVersion} IN IP${origin.version} ${origin.ip}`);
  lines.push(`s=${field(sdp, 'name', 'sdp') ?? '-'}`);
  if (sessionAddress) lines.push(`c=IN IP${sessionAddress.version} ${sessionAddress.ip}`);
  lines.push('t=0 0');

  const sessionAttrs = children.filter((c) => c.name === 'attr');
  if (sessionAttrs.length > SDP_LIMITS.attributesPerLevel) throw new SdpError(`too many session attributes (at most ${SDP_LIMITS.attributesPerLevel})`);
  for (const attr of sessionAttrs) lines.push(attributeLine(attr, 'session'));

  // A direction given at the session level (an attr element there) is what a media without one has.
  const sessionDirection = sessionAttrs.map((a) => a.attr('name') ?? '').find(isDirection) ?? 'sendrecv';
  mediaElements.forEach((media, index) => lines.push(...mediaLines(media, `media ${index + 1}`, sessionAddress, sessionDirection)));
  return lines.join('\r\n') + '\r\n';
}

/** One `<attr name="…">value</attr>` as an `a=` line: `a=name:value`, or `a=name` when empty. */
function attributeLine(attr: XmlElement, where: string): string {
  const name = attr.attr('name');
  if (name === undefined || name === '') throw new SdpError(`${where}: an attr has no name`);
  if (name.length > SDP_LIMITS.attributeName) throw new SdpError(`${where}: attr name is too long`);
  if (!TOKEN.test(name)) throw new SdpError(`${where}: malformed attr name "${name}"`);
  const value = attr.text();
  if (value.length > SDP_LIMITS.attributeValue) throw new SdpError(`${where}: attr ${name} is too long`);
  if (LINE_BREAK.test(value)) throw new SdpError(`${where}: attr ${name} has a line break`);
  return value === '' ? `a=${name}` : `a=${name}:${value}`;
}

function mediaLines(media: XmlElement, what: string, sessionAddress: Address | undefined, sessionDirection: Direction): string[] {
  const children = media.elements();
  if (children.length > SDP_LIMITS.childElements) throw new SdpError(`${what}: too many elements`);
  const type = field(media, 'media', what, MEDIA_TYPE);
  if (type === undefined) throw new SdpError(`${what}: no media type`);
  const protocol = field(media, 'protocol', what, PROTOCOL);
  if (protocol === undefined) throw new SdpError(`${what}: no protocol`);
  const address = readAddress(media.attr('ip'), `${what} ip`, true);
  const direction = media.attr('direction');
  if (direction !== undefined && !isDirection(direction)) throw new SdpError(`${what}: unknown direction "${direction}"`);

  const codecs = children.filter((c) => c.name === 'codec');
  if (codecs.length === 0) throw new SdpError(`${what}: no codecs`);
  if (codecs.length > SDP_LIMITS.codecsPerMedia) throw new SdpError(`${what}: too many codecs (at most ${SDP_LIMITS.codecsPerMedia})`);
  const rtp = isRtpProtocol(protocol);
  const ids: string[] = [];
  const rtpmaps: string[] = [];
  for (const codec of codecs) {
    const id = codec.attr('id') ?? '';
    if (rtp ? !isPayloadType(id) : !TOKEN.test(id) || id.length > SDP_LIMITS.field) {
      throw new SdpError(`${what}: codec id "${id}" is not ${rtp ? 'a payload type (0–127)' : 'a format token'}`);
    }
    if (ids.includes(id)) throw new SdpError(`${what}: codec id ${id} is given twice`);
    ids.push(id);
    const name = codec.attr('name');
    if (name === undefined || name === '') continue;
    if (!rtp) throw new SdpError(`${what}: codec ${id} has a name but ${protocol} is not RTP`);
    if (name.length > SDP_LIMITS.field || !CODEC_NAME.test(name)) throw new SdpError(`${what}: codec ${id} has a malformed name "${name}" (expected name/rate[/channels])`);
    rtpmaps.push(`a=rtpmap:${id} ${name}`);
  }

  const attrs = children.filter((c) => c.name === 'attr');
  if (attrs.length > SDP_LIMITS.attributesPerLevel) throw new SdpError(`${what}: too many attributes (at most ${SDP_LIMITS.attributesPerLevel})`);
  const lines = [`m=${type} ${address.port} ${protocol} ${ids.join(' ')}`];
  // The session's c= line already says it (sdpToXml repeats it in each media's ip).
  if (address.ip !== sessionAddress?.ip) lines.push(`c=IN IP${address.version} ${address.ip}`);
  const rtcp = media.attr('rtcp');
  if (rtcp !== undefined) {
    const rtcpAddress = readAddress(rtcp, `${what} rtcp`, true);
    lines.push(`a=rtcp:${rtcpAddress.port} IN IP${rtcpAddress.version} ${rtcpAddress.ip}`);
  }
  lines.push(...rtpmaps);
  // The XML attributes win over attr elements saying the same (a direction, rtcp, a codec's rtpmap).
  let directionFromAttr: string | undefined;
  for (const attr of attrs) {
    const line = attributeLine(attr, what);
    const name = attr.attr('name')!;
    if (isDirection(name)) {
      directionFromAttr ??= name;
      continue;
    }
    if (name === 'rtcp' && rtcp !== undefined) continue;
    if (name === 'rtpmap' && rtpmaps.some((m) => m.startsWith(`a=rtpmap:${attr.text().split(' ')[0]} `))) continue;
    lines.push(line);
  }
  lines.push(`a=${direction ?? directionFromAttr ?? sessionDirection}`);
  return lines;
}

function isDirection(value: string): value is Direction {
  return (DIRECTIONS as readonly string[]).includes(value);
}

function isPayloadType(id: string): boolean {
  return /^\d{1,3}$/.test(id) && Number(id) <= 127;
}

// -----------------------------------------------------------------------------------------
// Text ↔ model

/** Parses SDP text (through sdp-transform) and validates what it describes. */
export function sdpFromText(text: string): SessionDescription {
  if (text.length > SDP_LIMITS.textChars) throw new SdpError(`longer than ${SDP_LIMITS.textChars} characters`);
  // Counting line breaks bounds what the parser will do before it starts.
  let lines = 1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
  if (lines > SDP_LIMITS.textLines) throw new SdpError(`more than ${SDP_LIMITS.textLines} lines`);
  return parseText(text, 'text');
}

/** Text made from XML is bounded by the element limits already; it skips the text limits. */
function parseText(text: string, from: 'text' | 'xml'): SessionDescription {
  let description: SessionDescription;
  try {
    description = sdpTransform.parse(text);
  } catch (err) {
    throw new SdpError(`unreadable (${err instanceof Error ? err.message : String(err)})`);
  }
  validateDescription(description, from);
  return description;
}

/** SDP text (CRLF line ends) for a descriptor; the descriptor is not changed. */
export function sdpToText(description: SessionDescription): string {
  validateDescription(description, 'text');
  // sdp-transform's writer fills in defaults on the object it is given.
  return sdpTransform.write(structuredClone(description));
}

/** `<sdpText>` with the descriptor in native text, for sessions bound with sdpText. */
export function sdpTextElement(description: SessionDescription): XmlElement {
  return el('sdpText', undefined, sdpToText(description));
}

/**
 * What the server relies on in every descriptor, however it arrived: an origin, at most
 * SDP_LIMITS.media media, each with a type, a port, a protocol, 1–64 formats (payload types
 * for RTP), an address (its own c= or the session's), a known direction; no line breaks
 * in any value (they would forge lines when written out).
 */
function validateDescription(description: SessionDescription, from: 'text' | 'xml'): void {
  const origin = description.origin as SessionDescription['origin'] | undefined;
  if (!origin) throw new SdpError(from === 'text' ? 'no valid o= line' : 'malformed origin');
  if (!isIP(String(origin.address)) || (origin.ipVer !== 4 && origin.ipVer !== 6)) throw new SdpError(`origin address "${origin.address}" is not an IPv4 or IPv6 address`);
  checkNoLineBreaks(description, 'description', 0);
  const media = description.media as MediaDescription[] | undefined;
  if (!Array.isArray(media)) throw new SdpError('no media list');
  if (media.length > SDP_LIMITS.media) throw new SdpError(`too many media (at most ${SDP_LIMITS.media})`);
  if (description.connection) checkConnection(description.connection, 'session');
  if (description.direction !== undefined && !isDirection(description.direction)) throw new SdpError(`unknown session direction "${description.direction}"`);
  media.forEach((m, index) => {
    const what = `media ${index + 1}`;
    if (typeof m.type !== 'string' || !MEDIA_TYPE.test(m.type)) throw new SdpError(`${what}: malformed media type`);
    if (typeof m.protocol !== 'string' || !PROTOCOL.test(m.protocol)) throw new SdpError(`${what}: malformed protocol`);
    if (!Number.isInteger(m.port) || m.port < 0 || m.port > 65535) throw new SdpError(`${what}: port ${m.port} out of range (0–65535)`);
    const formats = String(m.payloads ?? '').split(' ').filter((f) => f !== '');
    if (formats.length === 0) throw new SdpError(`${what}: no codecs`);
    if (formats.length > SDP_LIMITS.codecsPerMedia) throw new SdpError(`${what}: too many codecs (at most ${SDP_LIMITS.codecsPerMedia})`);
    if (isRtpProtocol(m.protocol)) {
      const bad = formats.find((f) => !isPayloadType(f));
      if (bad !== undefined) throw new SdpError(`${what}: codec id "${bad}" is not a payload type (0–127)`);
    }
    const connection = m.connection ?? description.connection;
    if (!connection) throw new SdpError(`${what}: no address (c= line)`);
    checkConnection(connection, what);
    if (m.direction !== undefined && !isDirection(m.direction)) throw new SdpError(`${what}: unknown direction "${m.direction}"`);
    if (m.rtcp) {
      if (!Number.isInteger(m.rtcp.port) || m.rtcp.port < 0 || m.rtcp.port > 65535) throw new SdpError(`${what}: rtcp port ${m.rtcp.port} out of range (0–65535)`);
      if (m.rtcp.address !== undefined && !isIP(String(m.rtcp.address))) throw new SdpError(`${what}: rtcp address "${m.rtcp.address}" is not an IPv4 or IPv6 address`);
    }
  });
}

function checkConnection(connection: { version: number; ip: string }, what: string): void {
  const version = isIP(String(connection.ip));
  if (version === 0) throw new SdpError(`${what}: address "${connection.ip}" is not an IPv4 or IPv6 address`);
  if (version !== connection.version) throw new SdpError(`${what}: address ${connection.ip} is not IP${connection.version}`);
}

/** Walks the model (a tree of plain objects, arrays and scalars) for strings that would break lines. */
function checkNoLineBreaks(value: unknown, path: string, depth: number): void {
  if (depth > 8) throw new SdpError('nested too deeply');
  if (typeof value === 'string') {
    if (LINE_BREAK.test(value)) throw new SdpError(`${path} has a line break`);
  } else if (Array.isArray(value)) {
    for (const item of value) checkNoLineBreaks(item, path, depth + 1);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) checkNoLineBreaks(item, key, depth + 1);
  }
}

// -----------------------------------------------------------------------------------------
// Model → XML

/** The fields the XML carries itself (not as `attr` elements), per level. */
const SESSION_FIELDS_NOT_ATTRS = ['version', 'origin', 'name', 'timing', 'connection', 'media', 'direction', 'description', 'uri', 'email', 'phone', 'timezones', 'repeats', 'bandwidth'] as const;
const MEDIA_FIELDS_NOT_ATTRS = ['type', 'port', 'numPorts', 'protocol', 'payloads', 'rtp', 'connection', 'rtcp', 'direction', 'description', 'bandwidth'] as const;

/**
 * `<sdp>` in the XML presentation clients parse: `[ip]:port` addresses, a `codec` per format
 * (named by its rtpmap, or by RFC 3551 for a static payload type), the direction (the media's,
 * else the session's, else sendrecv), every other `a=` line as an `attr` in sdp-transform's order.
 */
export function sdpToXml(description: SessionDescription): XmlElement {
  validateDescription(description, 'text');
  const { origin } = description;
  const name = description.name;
  const sdp = el('sdp', {
    origUser: origin.username,
    sessionID: String(origin.sessionId),
    sessionVersion: String(origin.sessionVersion),
    origIP: bracketed(String(origin.address)),
    name: name === undefined || name === '-' ? undefined : name,
    ip: description.connection ? bracketed(description.connection.ip) : undefined,
  });
  for (const attr of attributeElements(sessionAttributeLines(description))) sdp.append(attr);
  for (const media of description.media) sdp.append(mediaToXml(media, description));
  return sdp;
}

function mediaToXml(media: MediaDescription, session: SessionDescription): XmlElement {
  // validateDescription has made sure one of the two is there.
  const connection = (media.connection ?? session.connection)!;
  const rtcp = media.rtcp ? bracketed(media.rtcp.address === undefined ? connection.ip : String(media.rtcp.address), media.rtcp.port) : undefined;
  const element = el('media', {
    media: media.type,
    protocol: media.protocol,
    ip: bracketed(connection.ip, media.port),
    rtcp,
    direction: media.direction ?? session.direction ?? 'sendrecv',
  });
  const rtp = isRtpProtocol(media.protocol);
  for (const format of String(media.payloads ?? '').split(' ')) {
    if (format === '') continue;
    element.append(el('codec', { id: format, name: rtp ? codecName(media, Number(format)) : undefined }));
  }
  for (const attr of attributeElements(mediaAttributeLines(media))) element.append(attr);
  return element;
}

function codecName(media: MediaDescription, payload: number): string | undefined {
  // A model the engine builds may leave out the rtpmap list its type calls required.
  const map = (media.rtp as MediaDescription['rtp'] | undefined)?.find((r) => r.payload === payload);
  if (!map) return STATIC_PAYLOAD_TYPES.get(payload);
  return map.codec + (map.rate === undefined ? '' : `/${map.rate}`) + (map.encoding === undefined ? '' : `/${map.encoding}`);
}

/** The a= lines of the session level, as sdp-transform writes them, but for what the XML carries itself. */
function sessionAttributeLines(description: SessionDescription): string[] {
  const rest: Record<string, unknown> = { ...description };
  for (const key of SESSION_FIELDS_NOT_ATTRS) delete rest[key];
  return attributeLinesOf(sdpTransform.write({ ...(rest as object), media: [] } as unknown as SessionDescription));
}

function mediaAttributeLines(media: MediaDescription): string[] {
  const rest: Record<string, unknown> = { ...media };
  for (const key of MEDIA_FIELDS_NOT_ATTRS) delete rest[key];
  // The writer wants an m= line to hang the media's a= lines on; only the a= lines are kept.
  const probe = { ...rest, type: 'x', port: 0, protocol: 'x', payloads: '', rtp: [] } as unknown as MediaDescription;
  return attributeLinesOf(sdpTransform.write({ media: [structuredClone(probe)] } as unknown as SessionDescription));
}

function attributeLinesOf(text: string): string[] {
  return text.split('\r\n').filter((line) => line.startsWith('a='));
}

/** `a=name:value` → `<attr name="name">value</attr>`; `a=flag` → `<attr name="flag"/>`. */
function attributeElements(lines: string[]): XmlElement[] {
  return lines.map((line) => {
    const body = line.slice(2);
    const colon = body.indexOf(':');
    return colon === -1 ? el('attr', { name: body }) : el('attr', { name: body.slice(0, colon) }, body.slice(colon + 1));
  });
}
