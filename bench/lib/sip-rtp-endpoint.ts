/**
 * The RTP endpoint of the `media` bench area, run as a process of its own (so that its
 * timing is not disturbed by the bench's event loop): two UDP sockets on 127.0.0.1, A for the
 * callers' side and B for the called side, named in the SDP of the SIPp scenarios
 * (bench/sip/uac-media.xml offers A, uas-media.xml answers B). It follows the SIPp `<log>`
 * files it is told about; for each "uac CALL IP PORT" line it sends a 20 ms G.711 stream
 * from A to IP:PORT, for each "uas …" line one from B, and it receives on both.
 *
 * Lines on stdin (JSON): {"tail": FILE} · {"status": true} → prints {"status": {uac, uas}} ·
 * {"window": true} starts a measurement window · {"report": GRACE_MS} ends it, waits
 * GRACE_MS for the packets in flight, prints {"report": MediaWindowReport}. It prints
 * "RTP PORTS A B" once bound, and exits when stdin closes.
 */
import dgram from 'node:dgram';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { JitterMeter, PACKET_INTERVAL_MS, parseMediaTarget, readProbe, rtpPacket, summarizeWindow, type MediaTarget } from './sip-rtp.js';

interface Stream {
  id: number;
  socket: dgram.Socket;
  host: string;
  port: number;
  ssrc: number;
  next: number;
  due: number;
}

const BUFFER_BYTES = 4 * 1024 * 1024;
const open = (): Promise<dgram.Socket> =>
  new Promise((resolve) => {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: BUFFER_BYTES, sendBufferSize: BUFFER_BYTES });
    socket.bind(0, '127.0.0.1', () => resolve(socket));
  });
const [caller, callee] = await Promise.all([open(), open()]);

const streams = new Map<number, Stream>();
const counts = { uac: 0, uas: 0 };
/** Streams are numbered by side and SIPp call number: callers even, called parties odd. */
const streamId = (t: MediaTarget): number => 2 * t.call + (t.side === 'uas' ? 1 : 0);

function addTarget(t: MediaTarget): void {
  const id = streamId(t);
  if (streams.has(id)) return;
  counts[t.side]++;
  // Spread the streams over the 20 ms period instead of sending them all at once.
  const due = performance.now() + Math.random() * PACKET_INTERVAL_MS;
  streams.set(id, { id, socket: t.side === 'uac' ? caller : callee, host: t.host, port: t.port, ssrc: (0x5000_0000 + id) >>> 0, next: 0, due });
}

// --- following SIPp's log files ---
const tails: { file: string; offset: number; rest: string }[] = [];
function pollTails(): void {
  for (const tail of tails) {
    let size: number;
    try {
      size = statSync(tail.file).size;
    } catch {
      continue; // not written yet
    }
    if (size <= tail.offset) continue;
    const fd = openSync(tail.file, 'r');
    const chunk = Buffer.alloc(size - tail.offset);
    readSync(fd, chunk, 0, chunk.length, tail.offset);
    closeSync(fd);
    tail.offset = size;
    const lines = (tail.rest + chunk.toString('utf8')).split('\n');
    tail.rest = lines.pop() ?? '';
    for (const line of lines) {
      const target = parseMediaTarget(line);
      if (target) addTarget(target);
    }
  }
}
setInterval(pollTails, 50);

// --- the measurement window ---
let windowStart = Infinity;
let windowEnd = Infinity;
let sentInWindow = 0;
let meters = new Map<number, JitterMeter>();
let transits: number[] = [];
let seen = new Set<number>();
let duplicates = 0;
let foreign = 0;
let cpuAtStart = process.cpuUsage();

// --- sending: every stream every 20 ms, each at its own phase ---
function send(): void {
  const now = performance.now();
  for (const s of streams.values()) {
    while (s.due <= now) {
      const sentAt = performance.now();
      s.socket.send(rtpPacket({ stream: s.id, index: s.next, sentAt }, s.ssrc), s.port, s.host);
      if (sentAt >= windowStart && sentAt <= windowEnd) sentInWindow++;
      s.next++;
      s.due += PACKET_INTERVAL_MS;
      // A sender that fell far behind (a stall) skips ahead rather than bursting: a burst is not what a phone sends.
      if (now - s.due > 5 * PACKET_INTERVAL_MS) s.due = now;
    }
  }
}
setInterval(send, 2);

function receive(packet: Buffer): void {
  const arrivedAt = performance.now();
  const probe = readProbe(packet);
  if (!probe) {
    foreign++;
    return;
  }
  if (probe.sentAt < windowStart || probe.sentAt > windowEnd) return;
  const key = probe.stream * 2 ** 22 + (probe.index % 2 ** 22);
  if (seen.has(key)) {
    duplicates++;
    return;
  }
  seen.add(key);
  let meter = meters.get(probe.stream);
  if (!meter) meters.set(probe.stream, (meter = new JitterMeter()));
  meter.add(probe.sentAt, arrivedAt);
  transits.push(arrivedAt - probe.sentAt);
}
caller.on('message', receive);
callee.on('message', receive);

const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value)}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as { tail?: string; status?: boolean; window?: boolean; report?: number };
  if (command.tail !== undefined) tails.push({ file: command.tail, offset: 0, rest: '' });
  if (command.status) {
    pollTails();
    print({ status: { ...counts } });
  }
  if (command.window) {
    windowStart = performance.now();
    windowEnd = Infinity;
    sentInWindow = 0;
    meters = new Map();
    transits = [];
    seen = new Set();
    duplicates = 0;
    foreign = 0;
    cpuAtStart = process.cpuUsage();
  }
  if (command.report !== undefined) {
    windowEnd = performance.now();
    const cpu = process.cpuUsage(cpuAtStart);
    const seconds = (windowEnd - windowStart) / 1000;
    const active = new Set([...streams.values()].filter((s) => s.next > 0).map((s) => s.id)).size;
    setTimeout(() => {
      print({ report: summarizeWindow(sentInWindow, meters.values(), transits, { streams: active, duplicates, foreign, endpointCpu: (cpu.user + cpu.system) / 1e6 / seconds }) });
    }, command.report);
  }
});
process.stdin.on('end', () => process.exit(0));

process.stdout.write(`RTP PORTS ${caller.address().port} ${callee.address().port}\n`);
