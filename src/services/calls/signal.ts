import { xmlSafe } from '../../xml/element.js';

/**
 * The signals the two sides of a call exchange through the call engine, whatever protocol
 * each side speaks (XIMSS signaling, SIP, later Rayo). They follow SIP's offer/answer model
 * (RFC 3261 13–14, RFC 3264, RFC 6337) so that a SIP binding maps them one to one, and they
 * are plain JSON: a signal for a leg on another cluster node travels on the bus unchanged.
 *
 * Offer/answer, as the engine keeps it:
 * - `invite` carries an offer or nothing; when it carries nothing, the callee's first `progress`
 *   or `answer` with a description carries the offer (`offer: true`) and the caller's `ack`
 *   carries the answer.
 * - `update` with a description is a new offer, answered by `updated` (a description, or a
 *   `code` refusing it); `update` without one asks the other side for an offer, which comes in
 *   `updated` (`offer: true`) and is answered by `ack`.
 * - A side acknowledges nothing else: what needs no answer is not answered (the SIP binding
 *   sends its ACKs and PRACKs itself).
 */

/** Someone taking part in a call: an address (user@domain, a SIP URI, a phone number) and a real name. */
export interface Party {
  address: string;
  name?: string;
}

/** An SDP description in native text (each binding converts its own presentation). */
export type SdpText = string;

/**
 * The media a side speaks: WebRTC (ICE, DTLS-SRTP) or plain RTP. An invite says the caller's
 * when its binding knows it (a browser's callStart media="WebRTC", a phone over UDP), so that
 * a call without an offer can be anchored too (media-bridge.ts).
 */
export type MediaFlavour = 'webrtc' | 'rtp';

export type Signal =
  /** A new call for the receiving side (sent to a target, see CallTarget). */
  | {
      kind: 'invite';
      callId: string;
      from: Party;
      to: Party;
      sdp?: SdpText;
      transferredBy?: string;
      suppl?: Record<string, string>;
      /** Extension headers (`X-…`) carried end to end: SIP headers, Rayo's offer and dial headers. */
      headers?: [string, string][];
      media?: MediaFlavour;
      nat?: boolean;
      callerAccountId?: number;
    }
  /** The leg for a new call exists (as SIP's 100 Trying): the call learns where it is. */
  | { kind: 'trying' }
  /** The callee is being alerted (an early dialog `tag`), with early media or an offer. */
  | { kind: 'progress'; tag: string; sdp?: SdpText; offer?: boolean }
  /** The callee answered; `headers`: extension headers for the caller's 200 (a Rayo answer's). */
  | { kind: 'answer'; tag: string; sdp?: SdpText; offer?: boolean; peer?: Party; headers?: [string, string][] }
  /** The callee refused the call (a SIP status code, 3xx–6xx), with extension headers for the refusal. */
  | { kind: 'reject'; code: number; reason?: string; headers?: [string, string][] }
  /** The callee sends the call elsewhere; with `fork`, it keeps ringing as well. */
  | { kind: 'redirect'; targets: string[]; fork?: boolean }
  /** The caller gave up, or another device answered. */
  | { kind: 'cancel'; reason?: string; headers?: [string, string][] }
  /** The answer to an offer that came in progress/answer/updated; `code` when the offer is refused. */
  | { kind: 'ack'; tag?: string; sdp?: SdpText; code?: number; reason?: string }
  /** A new offer (hold, resume, a new media object); without `sdp`, a request for an offer. */
  | { kind: 'update'; tag?: string; sdp?: SdpText }
  /** The outcome of an `update`: an answer, an offer (when one was asked for), or a refusal. */
  | { kind: 'updated'; tag?: string; sdp?: SdpText; offer?: boolean; code?: number; reason?: string }
  /** The established call ends (with extension headers for the BYE: a Rayo hangup's). */
  | { kind: 'bye'; code?: number; reason?: string; headers?: [string, string][] }
  /** DTMF digits (0-9, *, #, A-D) for the other side; `op` names it for its `result`. */
  | { kind: 'dtmf'; digits: string; op?: string }
  /** An INFO body for the other side (`method` MESSAGE: an instant message within the call, as Rayo's call-bound messages). */
  | { kind: 'info'; contentType: string; body: string; op?: string; method?: 'MESSAGE' }
  /** How a `dtmf` or `info` went (no code: delivered). */
  | { kind: 'result'; op: string; code?: number; reason?: string }
  /** The other side is now someone else (a transfer). */
  | { kind: 'transferred'; peer: Party; callId?: string }
  /** The addressed leg does not exist (any more). */
  | { kind: 'gone' };

export type SignalKind = Signal['kind'];

/** How many extension headers a call carries, and how long each value may be. */
export const MAX_EXTENSION_HEADERS = 32;
export const MAX_EXTENSION_HEADER_VALUE = 1024;

/**
 * The extension headers worth carrying from one binding to another: `X-` names (RFC 6648's
 * old convention that PBXs and Rayo applications still use), values without line breaks, at
 * most MAX_EXTENSION_HEADERS of them. Undefined when none is left.
 */
export function extensionHeaders(headers: Iterable<readonly [string, string]>): [string, string][] | undefined {
  const kept: [string, string][] = [];
  for (const [name, value] of headers) {
    if (kept.length >= MAX_EXTENSION_HEADERS) break;
    // Values go into XML too (Rayo's offer): nothing XML 1.0 cannot carry, no control characters but tab.
    if (!/^X-[A-Za-z0-9!%'*+._`~-]{1,64}$/i.test(name) || value.length > MAX_EXTENSION_HEADER_VALUE || /[\u0000-\u0008\u000A-\u001F\u007F]/.test(value) || xmlSafe(value) !== value) continue;
    kept.push([name, value]);
  }
  return kept.length > 0 ? kept : undefined;
}

/**
 * Where a new call may be delivered: a XIMSS session bound on some node, the account's Rayo
 * clients, or a SIP device
 * registered to the account (its Contact, the flow that reaches it, and the node that holds
 * that flow; a datagram flow is reached from any node), or another domain's SIP server or a
 * trunk (the Request-URI and the first hop).
 */
export type CallTarget =
  | { kind: 'ximss'; node: string; accountId: number; resource: string }
  /** The account's Rayo clients (XEP-0327): a call held on `node`, offered to them there. */
  | { kind: 'rayo'; node: string; accountId: number }
  /** A real-time application (src/services/apps/): a task of `program` for the account, started on `node` with the call. */
  | { kind: 'app'; node: string; accountId: number; program: string }
  | {
      kind: 'sip';
      node: string;
      /** The account whose device it is; absent for another domain's server or a trunk. */
      accountId?: number;
      /** The address-of-record (user@domain), or the number called. */
      aor: string;
      contact: string;
      /** Path headers of the registration (RFC 3327): the first hops toward the device. */
      path: string[];
      /** The device is behind NAT (its Contact is a private address its REGISTER did not come from): its media is anchored. */
      nat?: boolean;
      flow: { transport: string; host: string; port: number; flow: string | null };
    };

/** The most meaningful of several final refusals (RFC 3261 16.7 step 6, simplified): 6xx, then busy, then the lowest class. */
export function bestRefusal(codes: readonly number[]): number {
  if (codes.length === 0) return 480;
  const global = codes.find((c) => c >= 600);
  if (global !== undefined) return global;
  if (codes.includes(486)) return 486;
  if (codes.includes(600)) return 600;
  return [...codes].sort((a, b) => Math.floor(a / 100) - Math.floor(b / 100) || (a === 408 ? 1 : 0) - (b === 408 ? 1 : 0))[0]!;
}

/** A short reason for a code when none was given. */
export function reasonOf(code: number): string {
  return REASONS[code] ?? (code >= 600 ? 'declined' : code >= 500 ? 'server error' : 'call failed');
}

const REASONS: Record<number, string> = {
  404: 'not found',
  408: 'no answer',
  480: 'temporarily unavailable',
  481: 'the call is gone',
  486: 'busy here',
  487: 'cancelled',
  488: 'not acceptable here',
  491: 'an update is in progress',
  500: 'server error',
  503: 'service unavailable',
  600: 'busy everywhere',
  603: 'declined',
  604: 'does not exist anywhere',
};
