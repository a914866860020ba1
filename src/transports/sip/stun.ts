/**
 * STUN keep-alives on the SIP UDP port (RFC 5626 4.4.2 and 8.2): a device with an outbound flow
 * over UDP sends STUN Binding requests to the server and learns from the answers that its NAT
 * binding is still there (and whether its public address changed). The server answers each
 * with a Binding success response carrying XOR-MAPPED-ADDRESS and FINGERPRINT (RFC 5389 15.2,
 * 15.5); it is a STUN server for nothing else, so other STUN messages are ignored.
 */
import { isIPv4 } from 'node:net';
import { crc32 } from 'node:zlib';

const MAGIC_COOKIE = 0x2112a442;
const HEADER_LENGTH = 20;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const XOR_MAPPED_ADDRESS = 0x0020;
const FINGERPRINT = 0x8028;
const FINGERPRINT_XOR = 0x5354554e;

/**
 * How many STUN answers one address gets in a window: enough for the keep-alives of many
 * devices behind one NAT (one every 25 s or so each, RFC 5626 4.4.2), not enough to make the
 * server a useful reflector for spoofed requests (each answer is about twice the request).
 */
export class StunLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly perWindow = 50,
    private readonly windowMs = 10_000,
    private readonly maxAddresses = 10_000,
  ) {}

  allow(address: string, now = Date.now()): boolean {
    let window = this.windows.get(address);
    if (!window || now - window.start >= this.windowMs) {
      this.windows.delete(address);
      if (this.windows.size >= this.maxAddresses) this.windows.delete(this.windows.keys().next().value!);
      window = { start: now, count: 0 };
      this.windows.set(address, window);
    }
    return ++window.count <= this.perWindow;
  }
}

/** Whether a datagram is a STUN message (RFC 5389 6: two zero bits, then the magic cookie). */
export function isStun(bytes: Buffer): boolean {
  return bytes.length >= HEADER_LENGTH && (bytes[0]! & 0xc0) === 0 && bytes.readUInt32BE(4) === MAGIC_COOKIE;
}

/**
 * The Binding success response to a Binding request from `address`:`port`, or undefined for a
 * message that is not a well-formed Binding request (nothing is answered then).
 */
export function bindingResponse(request: Buffer, address: string, port: number): Buffer | undefined {
  if (!isStun(request) || request.readUInt16BE(0) !== BINDING_REQUEST) return undefined;
  const length = request.readUInt16BE(2);
  if (length % 4 !== 0 || HEADER_LENGTH + length !== request.length) return undefined;
  const transactionId = request.subarray(8, 20);
  const mapped = xorMappedAddress(address, port, transactionId);
  if (!mapped) return undefined;
  const response = Buffer.alloc(HEADER_LENGTH + mapped.length + 8);
  response.writeUInt16BE(BINDING_SUCCESS, 0);
  response.writeUInt16BE(mapped.length + 8, 2);
  response.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(response, 8);
  mapped.copy(response, HEADER_LENGTH);
  // FINGERPRINT: the CRC-32 of everything before it (the length already counting it), XORed.
  const at = HEADER_LENGTH + mapped.length;
  response.writeUInt16BE(FINGERPRINT, at);
  response.writeUInt16BE(4, at + 2);
  response.writeUInt32BE((crc32(response.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0, at + 4);
  return response;
}

/** The XOR-MAPPED-ADDRESS attribute (RFC 5389 15.2) for an IPv4 or IPv6 address. */
function xorMappedAddress(address: string, port: number, transactionId: Buffer): Buffer | undefined {
  const plain = address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
  const bytes = isIPv4(plain) ? Buffer.from(plain.split('.').map(Number)) : ipv6Bytes(plain);
  if (!bytes) return undefined;
  const attribute = Buffer.alloc(4 + 4 + bytes.length);
  attribute.writeUInt16BE(XOR_MAPPED_ADDRESS, 0);
  attribute.writeUInt16BE(4 + bytes.length, 2);
  attribute[5] = bytes.length === 4 ? 0x01 : 0x02;
  attribute.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 6);
  const key = Buffer.alloc(16);
  key.writeUInt32BE(MAGIC_COOKIE, 0);
  transactionId.copy(key, 4);
  for (let i = 0; i < bytes.length; i++) attribute[8 + i] = bytes[i]! ^ key[i]!;
  return attribute;
}

/** The 16 bytes of an IPv6 address, or undefined when it is not one. */
function ipv6Bytes(address: string): Buffer | undefined {
  const halves = address.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const all = [...head, ...Array<string>(missing).fill('0'), ...tail];
  if (!all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  const bytes = Buffer.alloc(16);
  all.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), 2 * i));
  return bytes;
}
