/**
 * Charset decoding with sensible fallbacks. Nothing in here throws: mail in the wild names
 * charsets that do not exist, mislabels windows-1252 as iso-8859-1 and carries raw 8-bit
 * bytes in headers, and a message must still be readable.
 */
import { isUtf8 } from 'node:buffer';
import iconv from 'iconv-lite';
import libmime from 'libmime';

// libmime's charset-name normalizer (win-1251 -> windows-1251, utf8 -> UTF-8, latin1 ->
// ISO-8859-1, ...) is public on the instance but missing from @types/libmime.
const libmimeCharsets = libmime as unknown as { normalizeCharset(charset: string): string };

/** Charsets whose labels are routinely used for windows-1252 text (as WHATWG decodes them). */
const WINDOWS_1252_ALIASES = new Set(['iso-8859-1', 'iso8859-1', 'latin1', 'l1', 'cp819', 'ibm819', 'iso_8859-1', 'windows-1252', 'cp1252']);

/** Labels that promise nothing about 8-bit bytes: decide from the bytes themselves. */
const UNSPECIFIED = new Set(['', 'us-ascii', 'ascii', 'us_ascii', 'ansi_x3.4-1968', 'utf-8', 'utf8', 'unknown-8bit', 'x-unknown', 'unknown', '7bit', '8bit', 'default', 'x-user-defined']);

export function isAscii(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i]! >= 0x80) return false;
  return true;
}

/**
 * Bytes of unknown or unreliable charset: UTF-8 when they are valid UTF-8, else windows-1252.
 * UTF-8 that is only partly damaged (a truncated sequence, one stray byte) stays UTF-8 with
 * replacement characters: windows-1252 text practically never holds a valid multi-byte
 * UTF-8 sequence, so finding one decides it.
 */
function decodeGuess(buf: Buffer): string {
  if (isAscii(buf) || isUtf8(buf)) return buf.toString('utf8');
  const utf8 = buf.toString('utf8');
  if (/[\u0080-\ufffc\ufffe\uffff\ud800-\udfff]/.test(utf8)) return utf8;
  return iconv.decode(buf, 'windows-1252');
}

/** The iconv-lite name for a charset label, or undefined when neither library knows it. */
function knownCharset(label: string): string | undefined {
  const raw = label.trim().replace(/^["']|["']$/g, '').toLowerCase();
  if (!raw) return undefined;
  if (iconv.encodingExists(raw)) return raw;
  try {
    const normalized = libmimeCharsets.normalizeCharset(raw);
    if (iconv.encodingExists(normalized)) return normalized.toLowerCase();
  } catch {
    // fall through
  }
  return undefined;
}

/** The ISO-2022-JP family: iconv-lite lacks it, libmime decodes it through encoding-japanese. */
function isJis(label: string): boolean {
  return /^(iso-?2022-?jp|csiso2022jp|jis)/i.test(label);
}

/**
 * Decodes `buf` written in `charset` (a MIME charset label, possibly absent or bogus).
 * Unknown labels, us-ascii with 8-bit bytes and missing labels fall back to decodeGuess;
 * iso-8859-1 is read as its superset windows-1252.
 */
export function decodeBytes(buf: Buffer, charset?: string): string {
  const label = (charset ?? '').trim().replace(/^["']|["']$/g, '').toLowerCase();
  try {
    if (UNSPECIFIED.has(label)) return decodeGuess(buf);
    if (WINDOWS_1252_ALIASES.has(label)) return iconv.decode(buf, 'windows-1252');
    if (isJis(label)) {
      if (isAscii(buf) && buf.indexOf(0x1b) < 0) return buf.toString('latin1');
      // decodeWord runs the bytes through libmime's charset layer (encoding-japanese).
      return libmime.decodeWord(label, 'B', buf.toString('base64'));
    }
    const name = knownCharset(label);
    if (name) return iconv.decode(buf, name);
  } catch {
    // a decoder failure is treated like an unknown charset
  }
  return decodeGuess(buf);
}

/**
 * Header text is carried as a 'latin1' string: one character per raw byte, so that no
 * information is lost before we know how to decode it. This turns such a string into real
 * text: characters above 0xFF mean it is already decoded; otherwise 8-bit bytes are read as
 * UTF-8 when valid, else windows-1252.
 */
export function decodeRawHeader(value: string): string {
  let high = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c > 0xff) return value;
    if (c >= 0x80) high = true;
  }
  if (!high) return value;
  return decodeGuess(Buffer.from(value, 'latin1'));
}

/** Encodes text to `charset` for an outgoing part; undefined when the charset is unknown. */
export function encodeText(text: string, charset: string): Buffer | undefined {
  const label = charset.trim().toLowerCase();
  if (label === 'utf-8' || label === 'utf8') return Buffer.from(text, 'utf8');
  if (label === 'us-ascii' || label === 'ascii') return Buffer.from(text, 'latin1');
  const name = knownCharset(label);
  if (!name) return undefined;
  try {
    return iconv.encode(text, name);
  } catch {
    return undefined;
  }
}
