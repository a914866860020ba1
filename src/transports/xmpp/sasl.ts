import type { AuthService, Authenticated } from '../../services/auth.js';
import { BAD_CREDENTIALS, ServiceError } from '../../services/errors.js';
import type { ScramHash } from '../../services/passwords.js';
import { ScramError } from '../../services/scram.js';
import { el, type XmlElement } from '../../xml/element.js';

export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

/** The mechanisms, strongest first (the order clients pick from). */
const SCRAM: Record<string, ScramHash> = { 'SCRAM-SHA-256': 'SHA-256', 'SCRAM-SHA-1': 'SHA-1' };

/** A SASL failure (RFC 6120 6.5): its condition element and a text. */
export class SaslFailure extends Error {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

/** What the negotiation needs of its stream. */
export interface SaslStream {
  readonly remoteAddress: string;
  readonly secure: boolean;
  /** The domain the stream was opened to (names without a domain are in it). */
  readonly domain: string;
  write(element: XmlElement): void;
  /** Input must be read now: the client's response is awaited. */
  awaitResponse(): void;
}

/**
 * SASL on an XMPP stream (RFC 6120 6): SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, 7677),
 * and PLAIN (RFC 4616) once the stream is encrypted. Every attempt goes through
 * AuthService like the other protocols' logins (budgets per address and account, the
 * failure delay, the outcome logged). `<response/>` and `<abort/>` reach a waiting
 * exchange through `response()`, outside the stream's queue of stanzas.
 */
export class SaslNegotiation {
  private waiting: { resolve: (data: string) => void; reject: (err: Error) => void } | undefined;

  constructor(
    private readonly auth: AuthService,
    private readonly requireTls: boolean,
  ) {}

  /** The mechanisms offered on a stream, encrypted or not. */
  mechanisms(secure: boolean): string[] {
    if (!secure && this.requireTls) return [];
    return secure ? [...Object.keys(SCRAM), 'PLAIN'] : Object.keys(SCRAM);
  }

  /** Whether an exchange waits for the client's `<response/>`. */
  get awaitingResponse(): boolean {
    return this.waiting !== undefined;
  }

  /** `<response/>` or `<abort/>` while an exchange waits. */
  response(element: XmlElement): void {
    const waiting = this.waiting;
    if (!waiting) return;
    this.waiting = undefined;
    if (element.name === 'abort') return waiting.reject(new SaslFailure('aborted', 'the client aborted the exchange'));
    try {
      waiting.resolve(decodeBase64(element.text()));
    } catch (err) {
      waiting.reject(err as Error);
    }
  }

  /** The stream ended during an exchange. */
  cancel(): void {
    this.waiting?.reject(new SaslFailure('aborted', 'the stream ended'));
    this.waiting = undefined;
  }

  /** Sends a challenge and waits for the client's response (decoded). */
  private challenge(stream: SaslStream, data: string): Promise<string> {
    stream.write(el('challenge', { xmlns: NS_SASL }, data === '' ? '' : Buffer.from(data, 'utf8').toString('base64')));
    const response = new Promise<string>((resolve, reject) => (this.waiting = { resolve, reject }));
    stream.awaitResponse();
    return response;
  }

  /**
   * Runs an `<auth/>` exchange to its end: the authenticated account and the `<success/>`
   * element to send, or a SaslFailure.
   */
  async authenticate(stream: SaslStream, auth: XmlElement): Promise<{ authenticated: Authenticated; success: XmlElement }> {
    const mechanism = auth.attrs.mechanism ?? '';
    if (!this.mechanisms(true).includes(mechanism)) throw new SaslFailure('invalid-mechanism', `mechanism ${mechanism} is not offered`);
    if (!this.mechanisms(stream.secure).includes(mechanism)) throw new SaslFailure('encryption-required', `${mechanism} needs an encrypted stream: STARTTLS first`);
    try {
      // An initial response of `=` is an empty one; none at all asks for an empty challenge first.
      const text = auth.text();
      const initial = text === '' ? await this.challenge(stream, '') : decodeBase64(text);
      const hash = SCRAM[mechanism];
      if (hash) {
        const result = await this.auth.checkScram(hash, initial, stream.domain, stream.remoteAddress, (serverFirst) => this.challenge(stream, serverFirst));
        return { authenticated: result, success: el('success', { xmlns: NS_SASL }, Buffer.from(result.serverFinal, 'utf8').toString('base64')) };
      }
      const authenticated = await this.auth.checkPlain(Buffer.from(initial, 'utf8'), stream.domain, stream.remoteAddress, 'xmpp');
      return { authenticated, success: el('success', { xmlns: NS_SASL }) };
    } catch (err) {
      this.waiting = undefined;
      throw failureOf(err);
    }
  }
}

/** base64 as SASL carries it in XMPP: `=` alone is empty data; anything not base64 is incorrect-encoding. */
function decodeBase64(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '=' || trimmed === '') return '';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || trimmed.length % 4 !== 0) throw new SaslFailure('incorrect-encoding', 'the data is not base64');
  return Buffer.from(trimmed, 'base64').toString('utf8');
}

/** The failure an error of the exchange is answered with. */
function failureOf(err: unknown): SaslFailure {
  if (err instanceof SaslFailure) return err;
  if (err instanceof ScramError) return new SaslFailure(err.condition, err.message);
  if (err instanceof ServiceError) {
    if (err.message === BAD_CREDENTIALS) return new SaslFailure('not-authorized', 'wrong user name or password');
    if (err.message.startsWith('malformed')) return new SaslFailure('malformed-request', err.message);
    if (err.message.startsWith('authorization identity')) return new SaslFailure('invalid-authzid', err.message);
    // Too many attempts (from the address, on the account): try again later.
    return new SaslFailure('temporary-auth-failure', err.message);
  }
  throw err;
}

/** `<failure xmlns=sasl><condition/><text>…</text></failure>` */
export function saslFailureElement(failure: SaslFailure): XmlElement {
  return el('failure', { xmlns: NS_SASL }, el(failure.condition), el('text', { 'xml:lang': 'en' }, failure.message));
}
