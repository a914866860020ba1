import type { SipRequest } from './message.js';

/**
 * Why a SIP message was refused, and what to answer. `status` is the response the server
 * should send (400 malformed, 505 another SIP version, 513 too large, 416 an unsupported
 * Request-URI scheme, ...) and `reason` its reason phrase, naming what was wrong.
 *
 * A response can only be built from a request whose Via, From, To, Call-ID and CSeq were
 * read (RFC 3261 8.2.6.2); `request` is that request, headers as received, when they were.
 * Without it (a response, or a request too broken to answer) the message is dropped
 * (RFC 3261 8.2, 16.3): an error never makes the server talk to an unknown peer.
 *
 * This is the only thing the SIP message layer throws.
 */
export class SipParseError extends Error {
  /** The request as far as it was read, when it can be answered; see responseTo(). */
  request: SipRequest | undefined;

  /** Printable: control characters from the input become "?" (a CR must not reach a status line). */
  readonly reason: string;

  constructor(
    readonly status: number,
    reason: string,
  ) {
    const printable = reason.replace(/[\u0000-\u001f\u007f]/g, '?');
    super(printable);
    this.reason = printable;
    this.name = 'SipParseError';
  }

  /** Whether the server should answer with `status` (else: drop the message). */
  get answerable(): boolean {
    return this.request !== undefined;
  }
}

/**
 * What an unexpected exception inside the parser becomes, so that callers still see only
 * SipParseError; the original is kept as `cause` (tests assert there never is one).
 */
export function internalError(cause: unknown): SipParseError {
  if (cause instanceof SipParseError) return cause;
  const error = new SipParseError(400, 'Bad Request');
  error.cause = cause;
  return error;
}

/** A 400 for a malformed element: what the structured header parsers throw. */
export function malformed(reason: string): SipParseError {
  return new SipParseError(400, reason);
}
