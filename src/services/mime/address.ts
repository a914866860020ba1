/**
 * Strict validation of one E-mail address (recipients of sent mail, recovery addresses,
 * dataset entries). Reading address lists from headers is lenient instead: headers.ts.
 */

/**
 * Control characters, and what XML cannot carry (U+FFFE, U+FFFF, unpaired surrogates): an
 * address with one could neither travel in SMTP nor be shown to a client.
 */
const UNSAFE = /[\u0000-\u001f\u007f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The longest address accepted (RFC 5321 section 4.5.3.1.3 path limit less the brackets). */
const MAX_ADDRESS_LENGTH = 254;

// RFC 5322 addr-spec (dot-atom or quoted local part; host name or address literal), with
// non-ASCII allowed in atoms and labels (RFC 6531).
const ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~\\u00a0-\\uffff-]+";
const LOCAL_PART = `(?:${ATOM}(?:\\.${ATOM})*|"(?:[^"\\\\\\r\\n]|\\\\.)+")`;
const LABEL = '[A-Za-z0-9\\u00a0-\\uffff](?:[A-Za-z0-9\\u00a0-\\uffff-]*[A-Za-z0-9\\u00a0-\\uffff])?';
const DOMAIN_PART = `(?:${LABEL}(?:\\.${LABEL})*|\\[[^\\[\\]\\\\\\s]+\\])`;
const ADDR_SPEC = new RegExp(`^${LOCAL_PART}@${DOMAIN_PART}$`);

/**
 * Reads an E-mail address: `user@domain`, `<user@domain>` or `Real Name <user@domain>`.
 * Undefined when it is not one.
 */
export function parseMailAddress(text: string): { address: string; realName?: string } | undefined {
  let address = text.trim();
  let realName: string | undefined;
  const angle = /^([^<>]*)<([^<>]*)>$/s.exec(address);
  if (angle) {
    address = angle[2]!.trim();
    const display = angle[1]!.trim().replace(/^"(.*)"$/s, (_, inner: string) => inner.replace(/\\(.)/g, '$1'));
    if (display !== '') realName = display;
  }
  if (address.length === 0 || address.length > MAX_ADDRESS_LENGTH || UNSAFE.test(address)) return undefined;
  const at = address.lastIndexOf('@');
  if (!ADDR_SPEC.test(address) || at > 64) return undefined;
  // Host names: at most 63 characters a label (RFC 1035).
  if (!address.endsWith(']') && address.slice(at + 1).split('.').some((label) => label.length > 63)) return undefined;
  return realName === undefined ? { address } : { address, realName };
}
