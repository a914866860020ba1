/**
 * Datagrams as they cross between the SIP UDP thread and the main thread (udp-thread.ts): one
 * buffer holding them one after another, transferred rather than copied, with their lengths
 * and addresses beside it.
 */

/** A datagram with the address it came from or goes to. */
export interface Datagram {
  bytes: Uint8Array;
  host: string;
  port: number;
}

export interface UdpBatch {
  data: Uint8Array;
  lengths: Uint32Array;
  hosts: string[];
  ports: Uint16Array;
}

/** Packs datagrams into a batch; `totalBytes` is the sum of their lengths. */
export function packDatagrams(datagrams: readonly Datagram[], totalBytes: number): UdpBatch {
  const data = new Uint8Array(totalBytes);
  const lengths = new Uint32Array(datagrams.length);
  const hosts = new Array<string>(datagrams.length);
  const ports = new Uint16Array(datagrams.length);
  let at = 0;
  for (let i = 0; i < datagrams.length; i++) {
    const d = datagrams[i]!;
    data.set(d.bytes, at);
    at += d.bytes.length;
    lengths[i] = d.bytes.length;
    hosts[i] = d.host;
    ports[i] = d.port;
  }
  return { data, lengths, hosts, ports };
}

/** Each datagram of a batch, in order, as a view of the batch's buffer (no copy). */
export function forEachDatagram(batch: UdpBatch, each: (bytes: Buffer, host: string, port: number) => void): void {
  const { data, lengths, hosts, ports } = batch;
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    const length = lengths[i]!;
    each(buffer.subarray(at, at + length), hosts[i]!, ports[i]!);
    at += length;
  }
}
