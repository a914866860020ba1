/**
 * What a kind of DAV collection plugs into the core: WebDAV over File Storage (files.ts)
 * today, CardDAV over Contacts mailboxes and CalDAV later. The core authenticates, routes
 * `/dav/<prefix>/…` to the provider of that prefix, reads bodies through the XML guard and
 * writes replies; a provider resolves the rest of the path and answers the methods it supports.
 *
 * Adding one (CardDAV, say): implement DavProvider with `prefix: 'addressbooks'`, `davClasses:
 * ['addressbook']`, the methods (REPORT included) in `handle`, and `principalProperties` for
 * `{urn:ietf:params:xml:ns:carddav}addressbook-home-set`; register it in index.ts. The pieces
 * to answer with: `request.xmlBody()` (the guard), `propfindEntry`/`proppatchEntry` over
 * PropertyNodes (properties.ts), `multistatusReply`/`xmlReply`/`textReply` and `fileStatus`
 * (handler.ts), `errorXml` (xml.ts), the header parsers (headers.ts: If, Depth, Destination…).
 * FileError, HeaderError, DavBodyError and ServiceError thrown by `handle` become their statuses.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from '../../log.js';
import type { AccountRecord } from '../../store/store.js';
import type { DavElement } from './xml.js';

/** An answer: a status, headers, and a body (text, or a stream of a known length). */
export interface DavReply {
  status: number;
  headers?: Record<string, string | number>;
  body?: string | Buffer | { stream: Readable; length: number };
  /** The body's Content-Type (default for a text body: XML). */
  contentType?: string;
}

/** One request as a provider sees it, authenticated. */
export interface DavRequest {
  readonly req: IncomingMessage;
  /** Upper case. */
  readonly method: string;
  /** The authenticated account, as stored now. */
  readonly user: AccountRecord;
  readonly address: string;
  /** The raw path segments (still percent-encoded) of the request URL below `/dav/<prefix>/`. */
  readonly rawSegments: readonly string[];
  /** The same, decoded. */
  readonly segments: readonly string[];
  /** Whether the request URL ends with a slash. */
  readonly trailingSlash: boolean;
  /** The request URL's path up to and including `/dav/<prefix>` as the client wrote it. */
  readonly base: string;
  /** The XML body through the guard; undefined for an empty one (DavBodyError when malformed or too large). */
  xmlBody(): Promise<DavElement | undefined>;
  /** Whether the request carries a body (Content-Length > 0 or chunked). */
  readonly hasBody: boolean;
  readonly log: Logger;
  /** The principal URL of an account (`/dav/principals/<account>/`). */
  principalHref(account: AccountRecord): string;
}

export interface DavProvider {
  /** The path segment after /dav/ (`files`, `addressbooks`…). */
  readonly prefix: string;
  /** The methods it answers (OPTIONS and Allow). */
  readonly methods: readonly string[];
  /** Compliance classes it adds to the DAV header of OPTIONS (CardDAV: `addressbook`). */
  readonly davClasses?: readonly string[];
  /** Answers one request (errors thrown as FileError/HeaderError/DavBodyError are mapped by the core). */
  handle(request: DavRequest): Promise<DavReply>;
  /**
   * Properties this provider adds to an account's principal (CardDAV: addressbook-home-set),
   * by Clark name → inner XML.
   */
  principalProperties?(user: AccountRecord, account: AccountRecord, principalHref: (account: AccountRecord) => string): Promise<Map<string, string>>;
}
