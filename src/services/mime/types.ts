import type { XmlElement } from '../../xml/element.js';

/** One header field as written: `value` is unfolded but not decoded (see parse.ts). */
export interface HeaderField {
  name: string;
  value: string;
}

/**
 * One node of a message's MIME structure. Offsets point into the raw message buffer;
 * nothing is copied: headers = raw[headerStart, bodyStart), body = raw[bodyStart, end).
 */
export interface MimePart {
  /** '' for the top part; '01', '02-01', ... otherwise (see parse.ts for the scheme). */
  partID: string;
  headerStart: number;
  bodyStart: number;
  end: number;
  headers: HeaderField[];
  /** Lower case. */
  type: string;
  subtype: string;
  /** Content-Type parameters, names in lower case, values decoded (RFC 2231 and RFC 2047). */
  params: Record<string, string>;
  charset?: string;
  /** Content-Disposition value in lower case, without parameters. */
  disposition?: string;
  dispositionParams: Record<string, string>;
  /** Content-Transfer-Encoding, lower case; '7bit' when absent. */
  encoding: string;
  /** Content-ID without the angle brackets. */
  contentID?: string;
  description?: string;
  location?: string;
  /** Content-Class without the 'urn:' and 'content-classes:' prefixes. */
  contentClass?: string;
  children: MimePart[];
  /** For message/rfc822 (and message/global): the enclosed message's top part. */
  message?: MimePart;
  problems?: string[];
}

export interface Address {
  address: string;
  realName?: string;
}

/** What a resolver hands back for an uploaded file or a stored file. */
export interface ResolvedFile {
  data: Buffer;
  type?: string;
  subtype?: string;
  charset?: string;
  fileName?: string;
}

/** The raw text behind a copyMIME element: a whole message, or one part (headers + body). */
export interface CopiedMime {
  raw: Buffer;
  wholeMessage: boolean;
}

/**
 * Where the composer gets data it does not have: the session's uploaded file set, the
 * account's file storage and stored messages. Methods may throw a ServiceError, which the
 * composer lets through.
 */
export interface PartResolver {
  upload(uploadID: string): Promise<ResolvedFile>;
  file(fileName: string): Promise<ResolvedFile>;
  copyMIME(element: XmlElement): Promise<CopiedMime>;
}
