/**
 * Mail authentication (mailauth, by the author of Nodemailer):
 *
 * - DKIM signing of mail submitted by local users, with their domains' keys (dkim-keys.ts);
 *   the queue signs what it takes from them;
 * - Date and Message-ID for submitted mail that has none (RFC 5322 section 3.6);
 * - the checks of mail received from other servers: SPF, DKIM, DMARC, written into an
 *   `Authentication-Results` field (RFC 8601) and `Received-SPF` (RFC 7208 section 9.1),
 *   after removing any `Authentication-Results` that claims to be ours (RFC 8601 section 5).
 *
 * Every DNS query goes through an injectable resolver (node:dns/promises `resolve` by
 * default), bounded in time per query and per message: a query that does not answer in
 * time fails as ETIMEOUT, which the checks report as `temperror`.
 */
import { randomBytes } from 'node:crypto';
import { resolve as dnsResolve } from 'node:dns/promises';
import { authenticate, dkimSign, type DNSResolver } from 'mailauth';
import type { DomainStore } from '../store/store.js';
import { dkimKeyOf, type DkimKey } from './dkim-keys.js';
import { rfcDateInZone } from './mime/dates.js';
import { headerValue } from './mime/fields.js';
import { parseAddressList } from './mime/headers.js';
import { parseHeaderBlock } from './mime/parse.js';

// ---------------------------------------------------------------------------------------
// DNS

/**
 * A DNS look-up as node:dns/promises `resolve(name, rrtype)` does it: TXT answers are arrays
 * of strings (the character-strings of one record), MX answers `{ exchange, priority }`;
 * failures carry a `code` (ENOTFOUND, ENODATA: no such record; anything else: temporary).
 */
export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

export const systemResolver: DnsResolver = (name, rrtype) => dnsResolve(name, rrtype);

/** Per query and per message, ms. */
export const DNS_QUERY_TIMEOUT_MS = 5000;
export const DNS_MESSAGE_TIMEOUT_MS = 20_000;

function timeoutError(name: string, rrtype: string): Error {
  return Object.assign(new Error(`DNS ${rrtype} ${name}: timed out`), { code: 'ETIMEOUT' });
}

/**
 * `resolver` with a time limit on each query, and a budget for all the queries of one
 * message: once `totalMs` has passed since the first call, queries fail at once (ETIMEOUT).
 * mailauth's own limits bound the number of queries (RFC 7208: 10 look-ups, 2 void ones).
 */
export function boundedResolver(resolver: DnsResolver, queryMs: number, totalMs: number): DnsResolver {
  let deadline: number | undefined;
  return (name, rrtype) => {
    const now = Date.now();
    deadline ??= now + totalMs;
    const left = Math.min(queryMs, deadline - now);
    if (left <= 0) return Promise.reject(timeoutError(name, rrtype));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(timeoutError(name, rrtype)), left);
      timer.unref();
      resolver(name, rrtype).then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  };
}

// ---------------------------------------------------------------------------------------
// Header fields

interface RawField {
  /** Lower-case name. */
  name: string;
  /** Unfolded value. */
  value: string;
  /** Byte range of the whole field, its line ends included. */
  start: number;
  end: number;
}

/** The fields of the top header with their byte ranges (for removing one and keeping every other byte). */
function rawFields(raw: Buffer): RawField[] {
  const fields: RawField[] = [];
  let pos = 0;
  let current: RawField | undefined;
  while (pos < raw.length) {
    const lf = raw.indexOf(10, pos);
    const next = lf < 0 ? raw.length : lf + 1;
    const contentEnd = lf < 0 ? raw.length : lf > pos && raw[lf - 1] === 13 ? lf - 1 : lf;
    if (contentEnd === pos) break; // the empty line
    const first = raw[pos];
    if (first === 32 || first === 9) {
      if (!current) break;
      current.value += raw.toString('latin1', pos, contentEnd);
      current.end = next;
    } else {
      const colon = raw.subarray(pos, contentEnd).indexOf(58);
      if (colon <= 0) break;
      current = { name: raw.toString('latin1', pos, pos + colon).trim().toLowerCase(), value: raw.toString('latin1', pos + colon + 1, contentEnd), start: pos, end: next };
      fields.push(current);
    }
    pos = next;
  }
  return fields;
}

/** The authserv-id of an Authentication-Results value (RFC 8601 section 2.2), lower-case. */
function authservId(value: string): string {
  const withoutComments = value.replace(/\([^()]*\)/g, ' ');
  return (withoutComments.trim().split(/[\s;]/, 1)[0] ?? '').toLowerCase();
}

/**
 * The message without the `Authentication-Results` fields that claim `ours` as their
 * authserv-id (RFC 8601 section 5: only this server writes those); every other byte kept.
 */
export function removeForgedResults(raw: Buffer, ours: string): { raw: Buffer; removed: number } {
  const forged = rawFields(raw).filter((f) => f.name === 'authentication-results' && authservId(f.value) === ours.toLowerCase());
  if (forged.length === 0) return { raw, removed: 0 };
  const pieces: Buffer[] = [];
  let from = 0;
  for (const f of forged) {
    pieces.push(raw.subarray(from, f.start));
    from = f.end;
  }
  pieces.push(raw.subarray(from));
  return { raw: Buffer.concat(pieces), removed: forged.length };
}

/** A new Message-ID with its angle brackets: `<random@domain>`. */
export function newMessageId(domain: string): string {
  return `<${Date.now().toString(36)}.${randomBytes(12).toString('hex')}@${domain}>`;
}

/**
 * Date (the server's time, in its zone) and Message-ID (`<random@domain>`) prepended when
 * the message has none (RFC 5322 section 3.6: both required, or expected, of an originator);
 * the message itself is kept byte for byte.
 */
export function addDateAndMessageId(raw: Buffer, domain: string, now = new Date()): { raw: Buffer; added: string[] } {
  const names = new Set(rawFields(raw).map((f) => f.name));
  const lines: string[] = [];
  if (!names.has('date')) lines.push(`Date: ${rfcDateInZone(now, 'HostOS')}\r\n`);
  if (!names.has('message-id')) lines.push(`Message-ID: ${newMessageId(domain)}\r\n`);
  if (lines.length === 0) return { raw, added: [] };
  return { raw: Buffer.concat([Buffer.from(lines.join(''), 'latin1'), raw]), added: lines.map((l) => l.slice(0, l.indexOf(':'))) };
}

/** The domain of the (first) `From:` address, lower-case; undefined without one. */
export function fromDomain(raw: Buffer): string | undefined {
  const from = headerValue(parseHeaderBlock(raw).fields, 'From');
  const address = from === undefined ? undefined : parseAddressList(from)[0]?.address;
  const at = address?.lastIndexOf('@') ?? -1;
  if (!address || at < 0) return undefined;
  return address.slice(at + 1).toLowerCase() || undefined;
}

// ---------------------------------------------------------------------------------------
// Signing

/** The fields signed when present (`h=`). */
export const SIGNED_FIELDS = [
  'From',
  'Sender',
  'Reply-To',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'In-Reply-To',
  'References',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
];

/** The message with a `DKIM-Signature` field (relaxed/relaxed, d= the domain) prepended. */
export async function dkimSignMessage(raw: Buffer, domain: string, key: DkimKey): Promise<Buffer> {
  const signer = { signingDomain: domain, selector: key.selector, privateKey: key.privateKey, algorithm: key.algorithm };
  const result = await dkimSign(raw, {
    ...signer,
    canonicalization: 'relaxed/relaxed',
    // The t= tag, read once. Without it mailauth 4.13 computes t= (rounded, not floored) twice: once
    // in the header it hashes and again in the header it writes. About one signature in a few
    // hundred then carried a t= other than the one signed (a bad signature), or a t= up to half a
    // second in the future, which verifiers (mailauth's own among them) refuse.
    signTime: new Date(),
    // mailauth reads a colon-separated list here (an array would be ignored for its default).
    headerList: SIGNED_FIELDS.join(':') as unknown as string[],
    signatureData: [signer],
  });
  const failure = result.errors[0] as unknown;
  if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
  if (!result.signatures.trim()) throw new Error('no signature was made');
  return Buffer.concat([Buffer.from(result.signatures, 'latin1'), raw]);
}

// ---------------------------------------------------------------------------------------
// Checks of received mail

export interface InboundCheckOptions {
  /** The SMTP client's address. */
  ip: string;
  /** Its EHLO/HELO name. */
  helo: string;
  /** MAIL FROM ('' for the null sender: SPF then checks the HELO name). */
  sender: string;
  /** The authserv-id: this server's name. */
  authservId: string;
  resolver: DnsResolver;
  queryTimeoutMs?: number;
  messageTimeoutMs?: number;
}

export interface InboundCheckResult {
  spf: string;
  dkim: string;
  dmarc: string;
  /** `Received-SPF:` and `Authentication-Results:` fields, CRLF-terminated: to prepend. */
  fields: Buffer;
  /** The message without forged Authentication-Results fields. */
  raw: Buffer;
  /** Forged Authentication-Results fields removed. */
  removed: number;
  /** Why the checks themselves failed (the results are then temperror). */
  error?: string;
}

const BODY_HASH = 'body hash did not verify';

/** The result word of one of mailauth's outcomes. */
function resultOf(status: { result?: string } | undefined, none = 'none'): string {
  return status?.result ?? none;
}

/**
 * Checks SPF (MAIL FROM, or HELO for the null sender, against the client address), the DKIM
 * signatures and DMARC of a received message. Never throws: a failure of the checks
 * themselves gives `temperror` results (the message is still delivered).
 */
export async function checkInbound(message: Buffer, options: InboundCheckOptions): Promise<InboundCheckResult> {
  const { raw, removed } = removeForgedResults(message, options.authservId);
  const resolver = boundedResolver(options.resolver, options.queryTimeoutMs ?? DNS_QUERY_TIMEOUT_MS, options.messageTimeoutMs ?? DNS_MESSAGE_TIMEOUT_MS);
  try {
    const result = await authenticate(raw, {
      ip: options.ip.replace(/^::ffff:/i, ''),
      helo: options.helo || undefined,
      sender: options.sender,
      mta: options.authservId,
      resolver: resolver as DNSResolver,
      disableArc: true,
      disableBimi: true,
    });
    const signatures = result.dkim.results;
    // A body that does not match its signature's hash is a failed verification (RFC 6376
    // section 6.1.3, PERMFAIL; RFC 8601 section 2.7.1 `fail`), not `neutral` as mailauth says.
    let fields = result.headers;
    for (const s of signatures) {
      if (s.status.result === 'neutral' && s.status.comment === BODY_HASH) {
        s.status.result = 'fail';
        fields = fields.split(`dkim=neutral (${BODY_HASH})`).join(`dkim=fail (${BODY_HASH})`);
      }
    }
    const dkim = signatures.length === 0 ? 'none' : signatures.some((s) => s.status.result === 'pass') ? 'pass' : resultOf(signatures[0]!.status);
    return {
      spf: result.spf ? resultOf(result.spf.status) : 'none',
      dkim,
      dmarc: result.dmarc ? resultOf(result.dmarc.status) : 'none',
      fields: Buffer.from(fields, 'utf8'),
      raw,
      removed,
    };
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).replace(/[()\\\r\n]/g, ' ').slice(0, 200);
    const text = `Authentication-Results: ${options.authservId};\r\n spf=temperror (${reason});\r\n dkim=temperror;\r\n dmarc=temperror\r\n`;
    return { spf: 'temperror', dkim: 'temperror', dmarc: 'temperror', fields: Buffer.from(text, 'utf8'), raw, removed, error: reason };
  }
}

/**
 * What signing a message for the queue did: `raw` is what to queue (unsigned when it failed
 * or was refused).
 */
export interface SigningOutcome {
  raw: Buffer;
  domain: string;
  selector: string;
  /** Why it could not be signed. */
  error?: string;
  /**
   * Why it was not signed although its From domain has a key: the submitter may not sign
   * for that domain (the domain it may sign for, if any, is named).
   */
  refused?: string;
}

/** A domain name as compared for signing: lower case, without the root's final dot. */
function signingDomain(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * Signs mail of local users for the domain of its `From:` address when that domain has a
 * key (read from the store each time: the command line or another node may change it) and
 * is `signAs`, the domain the submitter may sign for (an authenticated user's own domain;
 * the default domain for the server's own messages). A `From:` of any other domain is not
 * signed, so that a user of one hosted domain cannot have mail pass as another's (DMARC):
 * without `signAs` nothing is signed. Undefined when there is nothing to sign with (or no
 * key to refuse); never throws.
 */
export async function signOutgoing(domains: Pick<DomainStore, 'get'>, raw: Buffer, signAs: string | undefined): Promise<SigningOutcome | undefined> {
  const from = fromDomain(raw);
  if (!from) return undefined;
  const domain = signingDomain(from);
  if (!domain) return undefined;
  let key: DkimKey | undefined;
  try {
    const record = await domains.get(domain);
    key = record ? dkimKeyOf(record.settings) : undefined;
  } catch (err) {
    return { raw, domain, selector: '', error: err instanceof Error ? err.message : String(err) };
  }
  if (!key) return undefined;
  const allowed = signAs === undefined ? '' : signingDomain(signAs);
  if (allowed !== domain) {
    return { raw, domain, selector: key.selector, refused: allowed ? `the submitter may sign for ${allowed} only` : 'the submitter may sign for no domain' };
  }
  try {
    return { raw: await dkimSignMessage(raw, domain, key), domain, selector: key.selector };
  } catch (err) {
    return { raw, domain, selector: key.selector, error: err instanceof Error ? err.message : String(err) };
  }
}
