/**
 * The SIP message layer (RFC 3261 7, 18.3, 20, 25): requests and responses as data, parsed
 * from datagrams and WebSocket frames (parseSipMessage) or from a byte stream
 * (SipMessageReader), and written back (serializeSipMessage, responseTo). Transports,
 * transactions and the registrar build on this module; it does no I/O.
 *
 * Parsing is strict where a proxy must rely on a value (the start line, Via, From, To,
 * Call-ID, CSeq, Max-Forwards, Content-Length, Contact, Expires) and keeps everything else as
 * received: unknown methods and headers pass through. Every failure is a SipParseError naming
 * the response to send; nothing else is thrown, and every step is linear in the input.
 */
import { isAscii } from 'node:buffer';
import { SipParseError, internalError, malformed } from './error.js';
import {
  SipHeaders,
  isCallId,
  parseCSeq,
  parseContact,
  parseContentLength,
  parseExpires,
  parseMaxForwards,
  parseVia,
} from './headers.js';
import { isDigits, isToken, trimLws } from './lexer.js';
import { clip, parseNameAddr, parseUri, uriScheme } from './uri.js';

export { SipParseError } from './error.js';

export const SIP_VERSION = 'SIP/2.0';

interface SipMessageBase {
  headers: SipHeaders;
  body: Buffer;
}

export interface SipRequest extends SipMessageBase {
  kind: 'request';
  /** As written: methods are case-sensitive, unknown ones kept. */
  method: string;
  /** The Request-URI as written (parseUri() reads it). */
  uri: string;
  version: typeof SIP_VERSION;
}

export interface SipResponse extends SipMessageBase {
  kind: 'response';
  /** 100..699. */
  status: number;
  /** Possibly empty; UTF-8. */
  reason: string;
  version: typeof SIP_VERSION;
}

export type SipMessage = SipRequest | SipResponse;

/**
 * What one message may hold. Crossing `messageBytes` answers 513 (Message Too Large),
 * `bodyBytes` 413 (Request Entity Too Large, the body-specific code of RFC 3261 21.4.11),
 * the others 400.
 */
export interface SipLimits {
  /** The whole message: start line, headers and body. */
  messageBytes: number;
  /** Header lines, continuation lines included. */
  headerLines: number;
  /** Bytes of one line (start line, header or continuation line). */
  headerLineBytes: number;
  /** Via values (a request carries one per hop it took). */
  viaCount: number;
  bodyBytes: number;
  /**
   * Refuse a request without Max-Forwards. RFC 3261 8.1.1.6 requires it of clients, but a
   * proxy may add one (16.6 step 3), so by default its absence is tolerated.
   */
  requireMaxForwards: boolean;
}

/** For UDP datagrams and WebSocket frames: an IP datagram's largest payload. */
export const DEFAULT_DATAGRAM_LIMITS: Readonly<SipLimits> = Object.freeze({
  messageBytes: 65_535,
  headerLines: 256,
  headerLineBytes: 8_192,
  viaCount: 70,
  bodyBytes: 65_535,
  requireMaxForwards: false,
});

/** For TCP and TLS streams: larger bodies (a MESSAGE, a long SDP) but a bounded buffer. */
export const DEFAULT_STREAM_LIMITS: Readonly<SipLimits> = Object.freeze({
  ...DEFAULT_DATAGRAM_LIMITS,
  messageBytes: 262_144,
  bodyBytes: 196_608,
});

/** Headers a request must carry (RFC 3261 8.1.1) and a response too, bar Max-Forwards. */
const MANDATORY = ['Via', 'From', 'To', 'Call-ID', 'CSeq'] as const;
/** Headers that may appear once only (after RFC 4475 3.3.8). */
const SINGLE = ['From', 'To', 'Call-ID', 'CSeq', 'Max-Forwards', 'Content-Type', 'Expires'] as const;

/**
 * Collects a message's lines as they arrive: where each line is, up to the empty line that
 * ends the head. Lines end in CRLF (a bare LF is tolerated). Incremental, so that a stream
 * fed a byte at a time is scanned once.
 */
class HeadScanner {
  /** [start, end) of each line, terminator excluded. */
  readonly lines: Array<[number, number]> = [];
  private pos: number;
  private lineStart: number;
  /** The offset of the body once the empty line was seen. */
  bodyStart: number | undefined;

  constructor(
    private readonly limits: SipLimits,
    start: number,
  ) {
    this.pos = start;
    this.lineStart = start;
  }

  /** Scans `buf` up to `end`; true once the head is complete. */
  scan(buf: Buffer, end: number): boolean {
    while (this.pos < end) {
      const newline = buf.indexOf(0x0a, this.pos);
      if (newline < 0 || newline >= end) {
        this.pos = end;
        this.checkLineLength(end - this.lineStart);
        return false;
      }
      const lineEnd = newline > this.lineStart && buf[newline - 1] === 0x0d ? newline - 1 : newline;
      this.checkLineLength(lineEnd - this.lineStart);
      this.pos = newline + 1;
      if (lineEnd === this.lineStart) {
        this.bodyStart = this.pos;
        return true;
      }
      this.lines.push([this.lineStart, lineEnd]);
      this.lineStart = this.pos;
      // The start line is not a header line.
      if (this.lines.length > this.limits.headerLines + 1) {
        throw new SipParseError(400, `More than ${this.limits.headerLines} header lines`);
      }
    }
    return false;
  }

  /** Takes what follows the last line end as a line of its own (a datagram cut short). */
  takeRest(end: number): void {
    if (end > this.lineStart) this.lines.push([this.lineStart, end]);
    this.lineStart = end;
    this.pos = end;
  }

  /** The bytes scanned moved `by` to the front of their buffer. */
  shift(by: number): void {
    this.pos -= by;
    this.lineStart -= by;
    for (const line of this.lines) {
      line[0] -= by;
      line[1] -= by;
    }
  }

  private checkLineLength(length: number): void {
    if (length > this.limits.headerLineBytes) {
      throw new SipParseError(400, `A header line longer than ${this.limits.headerLineBytes} bytes`);
    }
  }
}

/**
 * A message head read from its lines. Problems that still leave a message to answer are kept
 * (the first one found) rather than thrown, so that the error can carry the request.
 */
class HeadReader {
  message: SipMessage | undefined;
  problem: SipParseError | undefined;

  constructor(private readonly limits: SipLimits) {}

  note(error: SipParseError): void {
    this.problem ??= error;
  }

  /** Throws the first problem, with the request when it can be answered. */
  fail(error: SipParseError | undefined = this.problem): never {
    const problem = error ?? new SipParseError(400, 'Bad Request');
    if (this.message?.kind === 'request' && problem.request === undefined && answerable(this.message)) {
      problem.request = this.message;
    }
    throw problem;
  }

  read(buf: Buffer, lines: ReadonlyArray<[number, number]>): SipMessage {
    const first = lines[0];
    if (first === undefined) throw new SipParseError(400, 'An empty message');
    // A head of ASCII alone (the usual case) is decoded once and its lines sliced from it; UTF-8
    // (a display name, a reason phrase) is decoded line by line.
    const headStart = first[0];
    const headEnd = lines[lines.length - 1]![1];
    const text = isAscii(buf.subarray(headStart, headEnd)) ? buf.toString('latin1', headStart, headEnd) : undefined;
    const lineAt = (start: number, end: number): string =>
      text === undefined ? buf.toString('utf8', start, end) : text.slice(start - headStart, end - headStart);
    const headers = new SipHeaders();
    this.message = this.startLine(lineAt(first[0], first[1]), headers);
    let name: string | undefined;
    let value = '';
    const flush = (): void => {
      if (name !== undefined) headers.add(name, trimLws(value));
    };
    for (let i = 1; i < lines.length; i++) {
      const [start, end] = lines[i]!;
      const line = lineAt(start, end);
      const c = line.charCodeAt(0);
      if (c === 0x20 || c === 0x09) {
        // LWS: a continuation of the previous header's value, the fold becoming one space.
        if (name === undefined) {
          this.note(malformed('A continuation line before any header'));
          continue;
        }
        value += ` ${trimLws(line)}`;
        continue;
      }
      flush();
      name = undefined;
      const colon = line.indexOf(':');
      const rawName = colon < 0 ? '' : trimLws(line.slice(0, colon));
      if (!isToken(rawName)) {
        this.note(malformed(`A malformed header line "${clip(line)}"`));
        continue;
      }
      name = rawName;
      value = line.slice(colon + 1);
    }
    flush();
    let controlIn: string | undefined;
    headers.forEach((headerName, headerValue) => {
      if (controlIn === undefined && hasControlCharacter(headerValue)) controlIn = headerName;
    });
    if (controlIn !== undefined) this.note(malformed(`A control character in the ${controlIn} header`));
    return this.message;
  }

  private startLine(line: string, headers: SipHeaders): SipMessage {
    const body = Buffer.alloc(0);
    if (line.length >= 4 && line.slice(0, 4).toUpperCase() === 'SIP/') {
      // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
      const space = line.indexOf(' ');
      const version = space < 0 ? line : line.slice(0, space);
      const rest = space < 0 ? '' : line.slice(space + 1);
      const codeText = rest.slice(0, 3);
      const response: SipResponse = { kind: 'response', status: 0, reason: '', version: SIP_VERSION, headers, body };
      this.checkVersion(version);
      // A missing SP before an empty reason is tolerated: nothing is lost.
      if (!isDigits(codeText) || (rest.length > 3 && rest.charAt(3) !== ' ')) {
        this.note(malformed(`A malformed status line "${clip(line)}"`));
        return response;
      }
      response.status = Number(codeText);
      response.reason = rest.slice(4);
      if (response.status < 100 || response.status > 699) this.note(malformed(`The status code ${codeText} is out of range`));
      if (hasControlCharacter(response.reason)) this.note(malformed('A control character in the reason phrase'));
      return response;
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces (after RFC 4475
    // 3.1.2.9 and 3.1.2.10: extra or trailing spaces are malformed).
    const parts = line.split(' ');
    const request: SipRequest = {
      kind: 'request',
      method: parts[0] ?? '',
      uri: parts[1] ?? '',
      version: SIP_VERSION,
      headers,
      body,
    };
    if (parts.length !== 3 || !isToken(request.method)) {
      this.note(malformed(`A malformed request line "${clip(line)}"`));
      return request;
    }
    this.checkVersion(parts[2]!);
    const scheme = uriScheme(request.uri);
    if (scheme === undefined) {
      this.note(malformed(`A malformed Request-URI "${clip(request.uri)}"`));
    } else if (scheme !== 'sip' && scheme !== 'sips' && scheme !== 'tel') {
      this.note(new SipParseError(416, `Unsupported URI Scheme ${clip(scheme)}`));
    } else {
      try {
        const uri = parseUri(request.uri);
        // No headers in a Request-URI (RFC 3261 19.1.1; after RFC 4475 3.1.2.11).
        if (uri.kind === 'sip' && uri.headers.length > 0) this.note(malformed('Headers in the Request-URI'));
      } catch (error) {
        this.note(rethrown(error, 'Request-URI'));
      }
    }
    return request;
  }

  /** SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, case-insensitive; only 2.0 is spoken. */
  private checkVersion(version: string): void {
    if (version.toUpperCase() === SIP_VERSION) return;
    const numbers = version.slice(4).split('.');
    if (version.slice(0, 4).toUpperCase() === 'SIP/' && numbers.length === 2 && numbers.every(isDigits)) {
      this.note(new SipParseError(505, 'Version Not Supported'));
    } else this.note(malformed(`A malformed SIP version "${clip(version)}"`));
  }

  /** The checks that need every header: presence, uniqueness, and the structured ones. */
  validate(message: SipMessage): void {
    const { headers } = message;
    for (const name of MANDATORY) {
      if (!headers.has(name)) this.note(malformed(`Missing ${name} header`));
    }
    if (message.kind === 'request' && this.limits.requireMaxForwards && !headers.has('Max-Forwards')) {
      this.note(malformed('Missing Max-Forwards header'));
    }
    for (const name of SINGLE) {
      if (headers.count(name) > 1) this.note(malformed(`More than one ${name} header`));
    }
    const vias = headers.getAll('Via');
    if (vias.length > this.limits.viaCount) this.note(malformed(`More than ${this.limits.viaCount} Via headers`));
    this.check(() => {
      for (const via of vias) parseVia(via);
    }, 'Via');
    for (const name of ['From', 'To'] as const) {
      const value = headers.get(name);
      if (value !== undefined) this.check(() => parseNameAddr(value), name);
    }
    const callId = headers.get('Call-ID');
    if (callId !== undefined && !isCallId(callId)) this.note(malformed(`A malformed Call-ID "${clip(callId)}"`));
    const cseq = headers.get('CSeq');
    if (cseq !== undefined) {
      this.check(() => {
        const { method } = parseCSeq(cseq);
        if (message.kind === 'request' && method !== message.method) {
          throw malformed(`The CSeq method ${clip(method)} is not the request's ${clip(message.method)}`);
        }
      }, 'CSeq');
    }
    const maxForwards = headers.get('Max-Forwards');
    if (maxForwards !== undefined) this.check(() => parseMaxForwards(maxForwards), 'Max-Forwards');
    const expires = headers.get('Expires');
    if (expires !== undefined) this.check(() => parseExpires(expires), 'Expires');
    this.check(() => {
      const contacts = headers.getAll('Contact');
      for (const contact of contacts) {
        if (parseContact(contact) === '*' && contacts.length > 1) throw malformed('Contact "*" among other contacts');
      }
    }, 'Contact');
  }

  private check(run: () => unknown, header: string): void {
    try {
      run();
    } catch (error) {
      this.note(rethrown(error, `${header} header`));
    }
  }
}

/** Whether a request carries what a response to it copies (RFC 3261 8.2.6.2). */
function answerable(request: SipRequest): boolean {
  if (!isToken(request.method) || request.method === 'ACK') return false;
  const { headers } = request;
  if (!MANDATORY.every((name) => headers.has(name))) return false;
  const topVia = headers.getAll('Via')[0];
  if (topVia === undefined) return false;
  try {
    parseVia(topVia);
    return true;
  } catch {
    return false;
  }
}

/** A SipParseError from a structured reader, its reason saying where; anything else becomes a 400. */
function rethrown(error: unknown, where: string): SipParseError {
  if (error instanceof SipParseError) return new SipParseError(error.status, `Bad ${where}: ${error.reason}`);
  return internalError(error);
}

/**
 * TEXT-UTF8 and LWS only: control characters (bar tab) have no place in a header or reason,
 * except escaped in a quoted string (quoted-pair takes any but CR and LF).
 */
function hasControlCharacter(text: string): boolean {
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) inQuotes = !inQuotes;
    else if (inQuotes && c === 0x5c) {
      const next = text.charCodeAt(i + 1);
      if (next === 0x0d || next === 0x0a) return true;
      i++;
    } else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

/** The Content-Length header, or undefined when absent; a bad or conflicting one is noted. */
function contentLength(head: HeadReader, headers: SipHeaders): number | undefined {
  const values = headers.getAll('Content-Length');
  if (values.length === 0) return undefined;
  try {
    const lengths = values.map(parseContentLength);
    // Several equal values say one thing; different ones make the framing a guess (RFC 4475 3.3.9).
    if (lengths.some((n) => n !== lengths[0])) throw malformed('Content-Length headers that disagree');
    return lengths[0];
  } catch (error) {
    head.note(rethrown(error, 'Content-Length header'));
    return undefined;
  }
}

/** Offset of the first byte that is not CR or LF (what may come before a start line, RFC 3261 7.5). */
function skipLineEnds(buf: Buffer, from: number, end: number): number {
  let i = from;
  while (i < end && (buf[i] === 0x0d || buf[i] === 0x0a)) i++;
  return i;
}

function tooLarge(limits: SipLimits): SipParseError {
  return new SipParseError(513, `Message Too Large (more than ${limits.messageBytes} bytes)`);
}

function bodyTooLarge(limits: SipLimits): SipParseError {
  return new SipParseError(413, `Request Entity Too Large (a body over ${limits.bodyBytes} bytes)`);
}

/**
 * One complete message: a UDP datagram or a WebSocket frame (RFC 7118). Without
 * Content-Length the body is the rest of the datagram; with it, octets beyond it are dropped
 * (RFC 3261 18.3) and fewer than it is an error.
 */
export function parseSipMessage(bytes: Buffer, limits: SipLimits = DEFAULT_DATAGRAM_LIMITS): SipMessage {
  const head = new HeadReader(limits);
  try {
    if (bytes.length > limits.messageBytes) head.note(tooLarge(limits));
    const start = skipLineEnds(bytes, 0, bytes.length);
    const scanner = new HeadScanner(limits, start);
    // A datagram without its empty line is cut short: what there is of it is still read,
    // to see whether it can be answered.
    const complete = scanner.scan(bytes, bytes.length);
    if (!complete) {
      scanner.takeRest(bytes.length);
      if (scanner.lines.length === 0) throw malformed('No start line');
      head.note(malformed('No empty line after the headers'));
    }
    const message = head.read(bytes, scanner.lines);
    head.validate(message);
    const bodyStart = scanner.bodyStart ?? bytes.length;
    const available = bytes.length - bodyStart;
    const declared = contentLength(head, message.headers);
    if (declared !== undefined && declared > available) {
      head.note(malformed(`A body shorter than its Content-Length (${available} < ${declared})`));
    }
    const length = declared ?? available;
    if (length > limits.bodyBytes) head.note(bodyTooLarge(limits));
    if (head.problem) head.fail();
    message.body = Buffer.from(bytes.subarray(bodyStart, bodyStart + Math.min(length, available)));
    return message;
  } catch (error) {
    return head.fail(internalError(error));
  }
}

/** What a stream holds besides messages: RFC 5626 keep-alives. */
export type SipStreamItem =
  | { type: 'message'; message: SipMessage }
  /** A double CRLF between messages: answer it with a pong (a single CRLF). */
  | { type: 'ping' }
  /** A single CRLF between messages: the answer to our ping. */
  | { type: 'pong' };

/**
 * Messages out of a TCP or TLS byte stream, framed by Content-Length (mandatory on streams,
 * RFC 3261 18.3). CRLFs between messages are keep-alives (RFC 5626 4.4.1), reported as pings
 * (CRLFCRLF) and pongs (CRLF). A ping whose halves arrive in two reads is reported as a pong
 * then a ping.
 *
 * After a SipParseError the stream has lost its framing: the reader refuses further input and
 * the transport closes the connection (after answering, when the error allows it).
 */
export class SipMessageReader {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  private head: HeadScanner | undefined;
  private pending: { message: SipMessage; bodyStart: number; length: number } | undefined;
  private broken: SipParseError | undefined;
  /** A lone CRLF ended the last read: if the next read starts with one, together they were a ping. */
  private loneCrlf = false;

  constructor(private readonly limits: SipLimits = DEFAULT_STREAM_LIMITS) {}

  /** Bytes held for a message not yet complete. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Takes a chunk; returns what it completed, in order. */
  feed(chunk: Buffer): SipStreamItem[] {
    if (this.broken) throw this.broken;
    this.append(chunk);
    const items: SipStreamItem[] = [];
    try {
      for (;;) {
        const item = this.next();
        if (item === undefined) break;
        items.push(item);
      }
    } catch (error) {
      this.broken = internalError(error);
      throw this.broken;
    }
    this.compact();
    return items;
  }

  private next(): SipStreamItem | undefined {
    if (this.head === undefined && this.pending === undefined) {
      const keepAlive = this.keepAlive();
      if (keepAlive === 'wait') return undefined;
      if (keepAlive !== undefined) return keepAlive;
      if (this.start === this.end) return undefined;
      this.head = new HeadScanner(this.limits, this.start);
    }
    if (this.head !== undefined) {
      const complete = this.head.scan(this.buf, this.end);
      if (!complete) {
        if (this.end - this.start > this.limits.messageBytes) throw tooLarge(this.limits);
        return undefined;
      }
      const reader = new HeadReader(this.limits);
      const bodyStart = this.head.bodyStart!;
      const message = reader.read(this.buf, this.head.lines);
      // The lines are views of the buffer: nothing may move it until they are read.
      this.head = undefined;
      reader.validate(message);
      const length = contentLength(reader, message.headers);
      if (length === undefined && reader.problem === undefined) {
        reader.note(malformed('Missing Content-Length header (required on a stream)'));
      }
      if (length !== undefined && length > this.limits.bodyBytes) reader.note(bodyTooLarge(this.limits));
      if (length !== undefined && bodyStart - this.start + length > this.limits.messageBytes) {
        reader.note(tooLarge(this.limits));
      }
      if (reader.problem) reader.fail();
      this.pending = { message, bodyStart, length: length! };
    }
    const pending = this.pending!;
    if (this.end - pending.bodyStart < pending.length) return undefined;
    pending.message.body = Buffer.from(this.buf.subarray(pending.bodyStart, pending.bodyStart + pending.length));
    this.start = pending.bodyStart + pending.length;
    this.pending = undefined;
    this.loneCrlf = false;
    return { type: 'message', message: pending.message };
  }

  /**
   * A keep-alive at the front of the buffer, consumed; 'wait' when the bytes there may still
   * become one; undefined when a message starts there.
   */
  private keepAlive(): SipStreamItem | 'wait' | undefined {
    const b = this.buf;
    // A stray LF between messages is skipped.
    while (this.start < this.end && b[this.start] === 0x0a) this.start++;
    const s = this.start;
    const left = this.end - s;
    if (left === 0) return 'wait';
    if (b[s] !== 0x0d) return undefined;
    if (left === 1) return 'wait';
    if (b[s + 1] !== 0x0a) return undefined;
    if (this.loneCrlf) {
      this.loneCrlf = false;
      this.start += 2;
      return { type: 'ping' };
    }
    if (left >= 4 && b[s + 2] === 0x0d && b[s + 3] === 0x0a) {
      this.start += 4;
      return { type: 'ping' };
    }
    if (left === 3 && b[s + 2] === 0x0d) return 'wait';
    this.start += 2;
    this.loneCrlf = left === 2;
    return { type: 'pong' };
  }

  private append(chunk: Buffer): void {
    if (this.end + chunk.length > this.buf.length) {
      // The live bytes move to the front, into a buffer twice as large when they must: appending
      // costs linear time overall, however small the chunks.
      const live = this.end - this.start;
      const target =
        live + chunk.length <= this.buf.length
          ? this.buf
          : Buffer.allocUnsafe(Math.max(live + chunk.length, this.buf.length * 2, 4096));
      this.buf.copy(target, 0, this.start, this.end);
      this.buf = target;
      const shift = this.start;
      this.start = 0;
      this.end = live;
      this.head?.shift(shift);
      if (this.pending) this.pending.bodyStart -= shift;
    }
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
  }

  /** Between messages, the buffer starts over. */
  private compact(): void {
    if (this.head === undefined && this.pending === undefined && this.start === this.end) {
      this.start = 0;
      this.end = 0;
      if (this.buf.length > 65_536) this.buf = Buffer.alloc(0);
    }
  }
}

/**
 * The bytes of a message: CRLF line ends, headers in their stored order and long names, and
 * Content-Length set to the body's real length (added last when the message had none).
 */
export function serializeSipMessage(message: SipMessage): Buffer {
  const startLine =
    message.kind === 'request'
      ? `${message.method} ${message.uri} ${SIP_VERSION}`
      : `${SIP_VERSION} ${message.status} ${message.reason}`;
  if (hasLineBreak(startLine)) throw new SipParseError(500, 'A line break in the start line');
  const lines = [startLine];
  let lengthWritten = false;
  message.headers.forEach((name, value) => {
    // Values come from parsing (never a CR or LF) or from code: one with a line break would
    // smuggle in a header of its own.
    if (hasLineBreak(name) || hasLineBreak(value)) throw new SipParseError(500, `A line break in the ${name} header`);
    if (name === 'Content-Length') {
      if (lengthWritten) return;
      lengthWritten = true;
      lines.push(`Content-Length: ${message.body.length}`);
    } else lines.push(`${name}: ${value}`);
  });
  if (!lengthWritten) lines.push(`Content-Length: ${message.body.length}`);
  const head = `${lines.join('\r\n')}\r\n\r\n`;
  if (message.body.length === 0) return Buffer.from(head, 'utf8');
  const headBytes = Buffer.byteLength(head, 'utf8');
  const bytes = Buffer.allocUnsafe(headBytes + message.body.length);
  bytes.write(head, 0, 'utf8');
  message.body.copy(bytes, headBytes);
  return bytes;
}

function hasLineBreak(text: string): boolean {
  return text.includes('\r') || text.includes('\n');
}

/** Reason phrases of RFC 3261 21 and the codes a proxy and registrar send most. */
export const REASON_PHRASES: Readonly<Record<number, string>> = Object.freeze({
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  200: 'OK',
  202: 'Accepted',
  300: 'Multiple Choices',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  305: 'Use Proxy',
  380: 'Alternative Service',
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  410: 'Gone',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  421: 'Extension Required',
  423: 'Interval Too Brief',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  485: 'Ambiguous',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  491: 'Request Pending',
  493: 'Undecipherable',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
});

export interface ResponseOptions {
  /** A tag to add to To when it has none (RFC 3261 8.2.6.2: every response but a 100 to a dialog-less request). */
  toTag?: string;
}

/**
 * A response to `request` (RFC 3261 8.2.6): its Via headers (all, in order), From, To (tagged
 * when asked and not yet), Call-ID and CSeq copied, and Timestamp for a 100 (8.2.6.1); no body.
 * Works on the request a SipParseError carries too.
 */
export function responseTo(
  request: SipRequest,
  status: number,
  reason: string = REASON_PHRASES[status] ?? '',
  options: ResponseOptions = {},
): SipResponse {
  const headers = new SipHeaders();
  request.headers.forEach((name, value) => {
    if (name === 'Via') headers.add(name, value);
  });
  for (const name of ['From', 'To', 'Call-ID', 'CSeq'] as const) {
    const value = request.headers.get(name);
    if (value === undefined) continue;
    headers.add(name, name === 'To' && options.toTag !== undefined ? withTag(value, options.toTag) : value);
  }
  const timestamp = request.headers.get('Timestamp');
  if (status === 100 && timestamp !== undefined) headers.add('Timestamp', timestamp);
  return { kind: 'response', status, reason, version: SIP_VERSION, headers, body: Buffer.alloc(0) };
}

function withTag(to: string, tag: string): string {
  try {
    if (parseNameAddr(to).params.has('tag')) return to;
  } catch {
    // An unreadable To is copied as it is, tagged: the peer matches on what it sent.
  }
  return `${to};tag=${tag}`;
}
