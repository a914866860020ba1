/**
 * Which transaction a SIP message belongs to (RFC 3261 17.1.3 and 17.2.3), and the two
 * requests a transaction builds from another (the ACK of 17.1.1.3, the CANCEL of 9.1). Pure
 * functions of messages; the transaction layer (transactions.ts) keys its maps with them.
 *
 * Keys are strings joined with a newline, which no header value holds (the message layer
 * refuses line breaks), so that two different tuples never make one key.
 */
import { BRANCH_COOKIE, SipHeaders, parseCSeq, parseVia, type Via } from './headers.js';
import { SIP_VERSION, type SipRequest, type SipResponse } from './message.js';
import { parseNameAddr } from './uri.js';
import { randomId } from '../../services/ids.js';

/** A fresh branch: the magic cookie, then 96 random bits as token characters (base64url is a token). */
export function newBranch(): string {
  return `${BRANCH_COOKIE}${randomId(12, 'base64url')}`;
}

/** A fresh tag for To or From (RFC 3261 19.3: at least 32 random bits; we take 64). */
export function newTag(): string {
  return randomId(8);
}

/** The top Via, read; undefined when missing or unreadable (such a message belongs to no transaction). */
export function topVia(headers: SipHeaders): Via | undefined {
  const value = headers.getAll('Via')[0];
  if (value === undefined) return undefined;
  try {
    return parseVia(value);
  } catch {
    return undefined;
  }
}

/** The CSeq number and method, or undefined when unreadable. */
function cseqOf(headers: SipHeaders): { seq: number; method: string } | undefined {
  const value = headers.get('CSeq');
  if (value === undefined) return undefined;
  try {
    return parseCSeq(value);
  } catch {
    return undefined;
  }
}

/** The `tag` parameter of From or To ('' when there is none), or undefined when the header is unreadable. */
export function tagOf(headers: SipHeaders, name: 'From' | 'To'): string | undefined {
  const value = headers.get(name);
  if (value === undefined) return undefined;
  try {
    return parseNameAddr(value).params.get('tag') ?? '';
  } catch {
    return undefined;
  }
}

/** Whether a branch identifies its transaction on its own (RFC 3261 8.1.1.7). */
export function hasCookie(branch: string | undefined): branch is string {
  return branch !== undefined && branch.startsWith(BRANCH_COOKIE);
}

/**
 * The key of the client transaction a response belongs to (17.1.3): the top Via's branch and
 * the CSeq method. A response to a CANCEL thus never reaches the INVITE with the same branch.
 */
export function clientKeyOfResponse(response: SipResponse): string | undefined {
  const via = topVia(response.headers);
  const cseq = cseqOf(response.headers);
  if (via?.branch === undefined || cseq === undefined) return undefined;
  return clientKey(via.branch, cseq.method);
}

export function clientKey(branch: string, method: string): string {
  return ['c', branch, method].join('\n');
}

/**
 * sent-by as compared: the host in lower case and the port, the transport's default port when
 * none is written (so that `host` and `host:5060` over UDP are one sender).
 */
function sentBy(via: Via): string {
  const defaultPort = via.transport === 'TLS' || via.transport === 'WSS' ? 5061 : 5060;
  return `${via.host.toLowerCase()}:${via.port ?? defaultPort}`;
}

/**
 * The key of the server transaction a request belongs to (17.2.3). With the magic cookie:
 * branch, sent-by and method, an ACK taking INVITE's (it belongs to the INVITE's transaction).
 * Without it (RFC 2543 peers): the Request-URI, To tag, From tag, Call-ID, CSeq and the top
 * Via as a whole; an ACK then matches by legacyAckKey() instead, since its To carries the tag of
 * our response. `method` replaces the request's own: a CANCEL finds its INVITE with 'INVITE'.
 *
 * The RFC 2543 comparisons are of the text as received: a retransmission is a copy of the
 * first, and RFC 3261 asks no more of equality here than it did of the old peers.
 */
export function serverKey(request: SipRequest, method: string = request.method): string | undefined {
  const via = topVia(request.headers);
  if (via === undefined) return undefined;
  const keyMethod = method === 'ACK' ? 'INVITE' : method;
  if (hasCookie(via.branch)) return ['s', via.branch, sentBy(via), keyMethod].join('\n');
  const cseq = cseqOf(request.headers);
  const toTag = tagOf(request.headers, 'To');
  const fromTag = tagOf(request.headers, 'From');
  const callId = request.headers.get('Call-ID');
  if (cseq === undefined || toTag === undefined || fromTag === undefined || callId === undefined) return undefined;
  return ['l', request.uri, toTag, fromTag, callId, cseq.seq, keyMethod, request.headers.getAll('Via')[0]].join('\n');
}

/**
 * For an RFC 2543 ACK (no cookie): the Request-URI, From tag, Call-ID, CSeq number and top Via
 * of the ACK, and its To tag. An INVITE server transaction registers the same key built from
 * its request and the To tag of the final response it sent (ackKeyOfInvite); the two meet
 * when the ACK acknowledges that response.
 */
export function legacyAckKey(ack: SipRequest): string | undefined {
  const toTag = tagOf(ack.headers, 'To');
  return toTag === undefined ? undefined : ackKey(ack, toTag);
}

/** The legacy ACK key an INVITE server transaction expects once it answered `response`. */
export function ackKeyOfInvite(invite: SipRequest, response: SipResponse): string | undefined {
  const toTag = tagOf(response.headers, 'To');
  return toTag === undefined ? undefined : ackKey(invite, toTag);
}

function ackKey(request: SipRequest, toTag: string): string | undefined {
  const cseq = cseqOf(request.headers);
  const fromTag = tagOf(request.headers, 'From');
  const callId = request.headers.get('Call-ID');
  if (cseq === undefined || fromTag === undefined || callId === undefined) return undefined;
  return ['a', request.uri, toTag, fromTag, callId, cseq.seq, request.headers.getAll('Via')[0]].join('\n');
}

/**
 * The ACK a client INVITE transaction sends for a non-2xx final response (17.1.1.3): the
 * INVITE's Request-URI, Call-ID, From and CSeq number, its top Via only (same branch), its
 * Route headers; To from the response (it carries the server's tag); no body.
 */
export function ackForNonSuccess(invite: SipRequest, response: SipResponse): SipRequest {
  const headers = new SipHeaders();
  const via = invite.headers.getAll('Via')[0];
  if (via !== undefined) headers.add('Via', via);
  for (const route of invite.headers.getAll('Route')) headers.add('Route', route);
  headers.add('Max-Forwards', '70');
  copy(invite.headers, headers, 'From');
  copy(response.headers, headers, 'To');
  copy(invite.headers, headers, 'Call-ID');
  const cseq = cseqOf(invite.headers);
  if (cseq !== undefined) headers.add('CSeq', `${cseq.seq} ACK`);
  return { kind: 'request', method: 'ACK', uri: invite.uri, version: SIP_VERSION, headers, body: Buffer.alloc(0) };
}

/**
 * The CANCEL of a request (9.1): the same Request-URI, Call-ID, From, To and CSeq number, the
 * method CANCEL, only the top Via (so that it has the same branch and is matched to the
 * request by the server), the Route headers; no body.
 */
export function cancelFor(request: SipRequest): SipRequest {
  const headers = new SipHeaders();
  const via = request.headers.getAll('Via')[0];
  if (via !== undefined) headers.add('Via', via);
  for (const route of request.headers.getAll('Route')) headers.add('Route', route);
  headers.add('Max-Forwards', '70');
  for (const name of ['From', 'To', 'Call-ID'] as const) copy(request.headers, headers, name);
  const cseq = cseqOf(request.headers);
  if (cseq !== undefined) headers.add('CSeq', `${cseq.seq} CANCEL`);
  return { kind: 'request', method: 'CANCEL', uri: request.uri, version: SIP_VERSION, headers, body: Buffer.alloc(0) };
}

function copy(from: SipHeaders, to: SipHeaders, name: string): void {
  const value = from.get(name);
  if (value !== undefined) to.add(name, value);
}
