/**
 * The message as rules see and change it: its header fields (parsed once per change), the
 * addresses and texts conditions test, and the header edits of Add Header and Tag Subject.
 * The bytes are never re-encoded: edits splice header lines in or out.
 */
import { decodeHeaderText, headerValue, headerValues, parseAddressList, parseHeaderBlock, type Address, type HeaderField } from '../mime/index.js';
import { unstructuredField } from '../mime/compose.js';
import { headerFieldSpans } from '../mime/outgoing.js';

/** Addresses read from one kind of field: more are ignored (bounds the work per condition). */
const MAX_ADDRESSES = 1000;
/** `Name: value` as header text (CRLF-terminated): RFC 2047 words for non-ASCII text, folded at spaces. */
function formatField(name: string, value: string): string {
  return unstructuredField(name, value) + '\r\n';
}

export class RuleMessage {
  private parsed: { fields: HeaderField[]; end: number } | undefined;

  constructor(private bytes: Buffer) {}

  get raw(): Buffer {
    return this.bytes;
  }

  get size(): number {
    return this.bytes.length;
  }

  private header(): { fields: HeaderField[]; end: number } {
    this.parsed ??= parseHeaderBlock(this.bytes);
    return this.parsed;
  }

  get fields(): readonly HeaderField[] {
    return this.header().fields;
  }

  /** The first value of a field, undecoded; undefined when absent. */
  value(name: string): string | undefined {
    return headerValue(this.fields, name);
  }

  /** Every value of a field, decoded into text. */
  texts(name: string): string[] {
    return headerValues(this.fields, name).map((v) => decodeHeaderText(v).replace(/\s+/g, ' ').trim());
  }

  /** The decoded Subject ('' when there is none). */
  subject(): string {
    return this.texts('Subject')[0] ?? '';
  }

  /** The Message-ID as written, with its angle brackets ('' when there is none). */
  messageId(): string {
    const value = this.value('Message-ID')?.trim() ?? '';
    const m = /<[^<>\s]+>/.exec(value);
    return m ? m[0] : value;
  }

  /** The addresses of every field named so (all To fields, say). */
  addresses(...names: string[]): Address[] {
    const out: Address[] = [];
    for (const name of names) {
      for (const value of headerValues(this.fields, name)) {
        for (const a of parseAddressList(value)) {
          if (out.length >= MAX_ADDRESSES) return out;
          out.push(a);
        }
      }
    }
    return out;
  }

  /** Adds header fields at the top (each a `Name: value` pair). */
  prependFields(fields: readonly [string, string][]): void {
    const text = fields.map(([name, value]) => formatField(name, value)).join('');
    this.replaceBytes(Buffer.concat([Buffer.from(text, 'utf8'), this.bytes]));
  }

  /** Puts `tag` before the Subject (added when there is none); a Subject already tagged is left alone. */
  tagSubject(tag: string): void {
    const subject = this.subject();
    if (subject.toLowerCase().startsWith(tag.toLowerCase())) return;
    const line = Buffer.from(formatField('Subject', subject === '' ? tag : `${tag} ${subject}`), 'utf8');
    const span = headerFieldSpans(this.bytes, this.header().end).find((s) => s.name.toLowerCase() === 'subject');
    if (!span) {
      this.replaceBytes(Buffer.concat([line, this.bytes]));
      return;
    }
    this.replaceBytes(Buffer.concat([this.bytes.subarray(0, span.start), line, this.bytes.subarray(span.end)]));
  }

  private replaceBytes(bytes: Buffer): void {
    this.bytes = bytes;
    this.parsed = undefined;
  }

  /** The first MB as text, searched for Received fields (loop detection). */
  private leadingText(): string {
    return this.bytes.toString('latin1', 0, Math.min(this.bytes.length, 1024 * 1024));
  }

  /**
   * True when the Mail Rules of `account` (an address) sent this message on before: their
   * Received field is in it, forwarded copies inside it included (loop detection).
   */
  sentOnBy(account: string): boolean {
    const mark = `(ximssd mail rules of <${account.toLowerCase()}>)`;
    return (this.leadingText().match(/^Received: by [^\r\n]*/gim) ?? []).some((line) => line.toLowerCase().includes(mark));
  }

  /** How many Received fields the message carries, forwarded copies inside it included (loop detection). */
  hops(): number {
    return (this.leadingText().match(/^Received:/gim) ?? []).length;
  }
}
