/**
 * One RTP endpoint of the `media` bench area, run as a process of its own (so that its timing
 * is not disturbed by the bench's event loop), one for each side of the calls:
 * `sip-rtp-endpoint.ts uac` is the callers' media, `… uas` the called party's. Each has one
 * UDP socket on 127.0.0.1, named in its side's SDP (bench/sip/uac-media.xml offers it,
 * uas-media.xml answers with it). It follows its side's SIPp `<log>` file; for each "uac
 * CALL c=IN IP4 IP m=audio PORT" line (or "uas …") it sends a 20 ms G.711 stream from its
 * socket to IP:PORT, and it receives what the other side sends it.
 *
 * Lines on stdin (JSON): {"tail": FILE} · {"status": true} → prints {"status": STREAMS} ·
 * {"window": T0, "end": T1} sets the measurement window (packets sent from T0 to T1) ·
 * {"report": true} (after T1 and some grace for the packets in flight) prints {"report":
 * MediaWindowReport}. T0 and T1 are on the shared clock below, chosen by the bench ahead of
 * time, so that both endpoints count exactly the same packets. It prints
 * "RTP PORT N" once bound, and exits when stdin closes.
 */
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { JitterMeter, MediaTargetTails, PACKET_INTERVAL_MS, readProbe, rtpPacket, summarizeWindow, TransitHistogram, type MediaTarget } from './sip-rtp.js';

interface Stream {
  id: number;
  host: string;
  port: number;
  ssrc: number;
  next: number;
  due: number;
}

/**
 * The clock of the probes and windows: the wall clock at the resolution of performance.now()
 * (performance.now() alone starts at each process's start, and the two endpoints and the
 * bench are three processes).
 */
const clock = (): number => performance.timeOrigin + performance.now();

const side = process.argv[2];
if (side !== 'uac' && side !== 'uas') throw new Error('usage: sip-rtp-endpoint.ts uac|uas');
const BUFFER_BYTES = 4 * 1024 * 1024;
const socket = await new Promise<dgram.Socket>((resolve) => {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: BUFFER_BYTES, sendBufferSize: BUFFER_BYTES });
  s.bind(0, '127.0.0.1', () => resolve(s));
});

const streams = new Map<number, Stream>();
/** Streams are numbered by side and SIPp call number: callers even, called parties odd. */
const streamId = (t: MediaTarget): number => 2 * t.call + (t.side === 'uas' ? 1 : 0);

function addTarget(t: MediaTarget): void {
  const id = streamId(t);
  if (t.side !== side || streams.has(id)) return;
  // Spread the streams over the 20 ms period instead of sending them all at once.
  const due = clock() + Math.random() * PACKET_INTERVAL_MS;
  streams.set(id, { id, host: t.host, port: t.port, ssrc: (0x5000_0000 + id) >>> 0, next: 0, due });
}

// --- following SIPp's log files ---
const tails = new MediaTargetTails(addTarget);
setInterval(() => tails.poll(), 50);

// --- the measurement window ---
let windowStart = Infinity;
let windowEnd = Infinity;
let sentInWindow = 0;
let meters = new Map<number, JitterMeter>();
let transits = new TransitHistogram();
let foreign = 0;
let cpuAtStart = process.cpuUsage();
let cpuSince = clock();

// --- sending: every stream every 20 ms, each at its own phase ---
function send(): void {
  const now = clock();
  for (const s of streams.values()) {
    while (s.due <= now) {
      const sentAt = clock();
      socket.send(rtpPacket({ stream: s.id, index: s.next, sentAt }, s.ssrc), s.port, s.host);
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
  const arrivedAt = clock();
  const probe = readProbe(packet);
  if (!probe) {
    foreign++;
    return;
  }
  if (probe.sentAt < windowStart || probe.sentAt > windowEnd) return;
  let meter = meters.get(probe.stream);
  if (!meter) meters.set(probe.stream, (meter = new JitterMeter()));
  if (meter.add(probe.index, probe.sentAt, arrivedAt)) transits.add(arrivedAt - probe.sentAt);
}
socket.on('message', receive);

const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value)}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as { tail?: string; status?: boolean; window?: number; end?: number; report?: boolean };
  if (command.tail !== undefined) tails.follow(command.tail);
  if (command.status) {
    tails.poll();
    print({ status: streams.size });
  }
  if (command.window !== undefined && command.end !== undefined) {
    windowStart = command.window;
    windowEnd = command.end;
    sentInWindow = 0;
    meters = new Map();
    transits = new TransitHistogram();
    foreign = 0;
    cpuAtStart = process.cpuUsage();
    cpuSince = clock();
  }
  if (command.report) {
    const cpu = process.cpuUsage(cpuAtStart);
    const seconds = (clock() - cpuSince) / 1000;
    const active = [...streams.values()].filter((s) => s.next > 0).length;
    print({ report: summarizeWindow(sentInWindow, meters.values(), transits, { streams: active, foreign, endpointCpu: (cpu.user + cpu.system) / 1e6 / seconds }) });
  }
});
process.stdin.on('end', () => process.exit(0));

process.stdout.write(`RTP PORT ${socket.address().port}\n`);
