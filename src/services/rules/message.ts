/**
 * The message as rules see and change it: its header fields (parsed once per change), the
 * addresses and texts conditions test, and the header edits of Add Header and Tag Subject.
 * The bytes are never re-encoded: edits splice header lines in or out.
 */
import * as mimeFuncs from 'nodemailer/lib/mime-funcs';
import { decodeHeaderText, headerValue, headerValues, parseAddressList, parseHeaderBlock, type Address, type HeaderField } from '../mime/index.js';

/** Addresses read from one kind of field: more are ignored (bounds the work per condition). */
const MAX_ADDRESSES = 1000;
/** Soft header line length (RFC 5322 recommends 78 with CRLF). */
const LINE = 76;

function hasNonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7e) return true;
  return false;
}

/**
 * `Name: value` as header text (CRLF-terminated): RFC 2047 words for non-ASCII text, folded
 * at spaces (a continuation line starts with a space).
 */
export function formatField(name: string, value: string): string {
  const text = value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  const encoded = hasNonAscii(text) ? mimeFuncs.encodeWords(text, 'Q', 52) : text;
  let out = `${name}:`;
  let lineLength = out.length;
  for (const piece of encoded.split(' ')) {
    if (piece !== '' && lineLength > name.length + 1 && lineLength + 1 + piece.length > LINE) {
      out += '\r\n ' + piece;
      lineLength = 1 + piece.length;
    } else {
      out += ' ' + piece;
      lineLength += 1 + piece.length;
    }
  }
  return out + '\r\n';
}

/** Where one header field lies in the raw bytes: [start, end) including its line end(s). */
interface FieldSpan {
  name: string;
  start: number;
  end: number;
}

/** The byte spans of the header fields (folded lines belong to their field). */
function fieldSpans(raw: Buffer, headerEnd: number): FieldSpan[] {
  const spans: FieldSpan[] = [];
  let pos = 0;
  while (pos < headerEnd) {
    const lf = raw.indexOf(10, pos);
    const next = lf < 0 || lf >= headerEnd ? headerEnd : lf + 1;
    const first = raw[pos];
    const isBlank = raw[pos] === 13 || raw[pos] === 10;
    if (isBlank) break;
    if ((first === 32 || first === 9) && spans.length > 0) {
      spans[spans.length - 1]!.end = next;
    } else {
      const line = raw.toString('latin1', pos, next);
      const colon = line.indexOf(':');
      spans.push({ name: colon < 0 ? '' : line.slice(0, colon).trim(), start: pos, end: next });
    }
    pos = next;
  }
  return spans;
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
    const span = fieldSpans(this.bytes, this.header().end).find((s) => s.name.toLowerCase() === 'subject');
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

  /**
   * True when the Mail Rules of `account` (an address) sent this message on before: their
   * Received field is in it, forwarded copies inside it included (loop detection).
   */
  sentOnBy(account: string): boolean {
    const text = this.bytes.toString('latin1', 0, Math.min(this.bytes.length, 1024 * 1024));
    const mark = `(ximssd mail rules of <${account.toLowerCase()}>)`;
    return (text.match(/^Received: by [^\r\n]*/gim) ?? []).some((line) => line.toLowerCase().includes(mark));
  }

  /** How many Received fields the message carries, forwarded copies inside it included (loop detection). */
  hops(): number {
    const text = this.bytes.toString('latin1', 0, Math.min(this.bytes.length, 1024 * 1024));
    return (text.match(/^Received:/gim) ?? []).length;
  }
}
