/**
 * The callers' media of the `rayo` bench area, run as a process of its own (so that its timing
 * is not disturbed by the bench's event loop): one UDP socket on 127.0.0.1, named in the SDP of
 * every call SIPp places (bench/sip/uac-rayo.xml). It follows SIPp's `<log>` file; for each
 * "uac CALL c=IN IP4 IP m=audio PORT" line (the server's answer: the Rayo call's media
 * endpoint) it sends a 20 ms PCMU stream of silence to IP:PORT, as a phone does, and listens to
 * what comes back from that port.
 *
 * The first loud frame from a call's endpoint is the start of a prompt the Rayo client
 * started: its time (the onset) is what the command latency is measured to. `digitDelayMs`
 * later the caller keys its digits — the call's SIPp number, 4 digits, so that the match the
 * client gets names the SIPp call it belongs to — as RFC 4733 telephone-events (payload type
 * 101, as offered): each key 4 packets of growing duration, then its end packet three times,
 * then 60 ms of audio before the next key, on the stream's own sequence and timestamps. From
 * the last key on (the match may complete the prompt at its first packet, and the client start
 * the next one at once), the next loud frame is the onset of the call's next prompt.
 *
 * Lines on stdin (JSON): {"tail": FILE} · {"status": true} → prints {"status": STREAMS} ·
 * {"report": true} → prints {"report": RayoEndpointReport}. It prints "RTP PORT N" once
 * bound, and exits when stdin closes. Times are on the wall clock at the resolution of
 * performance.now(), shared with the bench (another process).
 */
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { buildTelephoneEvent, eventOfDigit } from '../../src/media/dtmf.js';
import { decodeUlaw } from '../../src/media/g711.js';
import { writeRtpHeader } from '../../src/media/rtp.js';
import { MediaTargetTails, PACKET_INTERVAL_MS, PCMU_PAYLOAD_BYTES } from './sip-rtp.js';

/** What the endpoint saw of one call. */
export interface RayoCallReport {
  /** SIPp's call number (the digits the caller keyed, modulo 10000). */
  call: number;
  /** The server's media port of the call. */
  port: number;
  /** When the first loud frame of each prompt arrived (shared clock, ms). */
  onsets: number[];
  /** Times the caller keyed its digits. */
  keyed: number;
  /** Frames received from the call, and loud ones among them. */
  received: number;
  loud: number;
  sent: number;
}

export interface RayoEndpointReport {
  calls: RayoCallReport[];
  /** CPU this process used since it started, in shares of a core. */
  endpointCpu: number;
}

/** The digits a SIPp call keys: its number, 4 digits. */
export const digitsOfCall = (call: number): string => String(call % 10_000).padStart(4, '0');

const TELEPHONE_EVENT_PT = 101;
/** Ticks per key: 4 event packets (the last tick sends the end three times), then 3 of audio. */
const KEY_TICKS = 8;
/** Mean square of a frame above which it is loud (as test/rayo.test.ts counts the prompt's frames). */
const LOUD = 200 * 200;

const clock = (): number => performance.timeOrigin + performance.now();

const digitDelayMs = Number(process.argv[2] ?? 1200);
if (!(digitDelayMs >= 0)) throw new Error('usage: rayo-endpoint.ts [DIGIT_DELAY_MS]');

interface Stream {
  call: number;
  host: string;
  port: number;
  ssrc: number;
  /** The index of the next 20 ms frame (the RTP timestamp is index × 160). */
  index: number;
  sequence: number;
  due: number;
  /** The frame index the first key starts at, once the prompt was heard. */
  keysFrom?: number;
  /** The next prompt's keys, when it was heard before these were all sent. */
  nextKeysFrom?: number;
  /** Whether a loud frame now starts a prompt: at first, and from the last key of the previous one on (its match may come then). */
  listening: boolean;
  report: RayoCallReport;
}

const BUFFER_BYTES = 4 * 1024 * 1024;
const socket = await new Promise<dgram.Socket>((resolve) => {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: BUFFER_BYTES, sendBufferSize: BUFFER_BYTES });
  s.bind(0, '127.0.0.1', () => resolve(s));
});

const streams = new Map<number, Stream>();
const byPort = new Map<number, Stream>();
const silence = Buffer.alloc(PCMU_PAYLOAD_BYTES, 0xff);

function addStream(call: number, host: string, port: number): void {
  if (streams.has(call)) return;
  const stream: Stream = {
    call,
    host,
    port,
    ssrc: (0x6000_0000 + call) >>> 0,
    index: 0,
    sequence: Math.floor(Math.random() * 0x8000),
    // Spread the streams over the 20 ms period instead of sending them all at once.
    due: clock() + Math.random() * PACKET_INTERVAL_MS,
    listening: true,
    report: { call, port, onsets: [], keyed: 0, received: 0, loud: 0, sent: 0 },
  };
  streams.set(call, stream);
  byPort.set(port, stream);
}

// --- following SIPp's log file ---
const tails = new MediaTargetTails((target) => {
  if (target.side === 'uac') addStream(target.call, target.host, target.port);
});
setInterval(() => tails.poll(), 50);

// --- sending ---
function packet(s: Stream, payloadType: number, timestamp: number, payload: Uint8Array, marker = false): Buffer {
  const out = Buffer.alloc(12 + payload.length);
  writeRtpHeader(out, { payloadType, sequence: s.sequence, timestamp: timestamp >>> 0, ssrc: s.ssrc, marker });
  s.sequence = (s.sequence + 1) & 0xffff;
  out.set(payload, 12);
  return out;
}

function sendFrame(s: Stream): void {
  const k = s.keysFrom === undefined ? -1 : s.index - s.keysFrom;
  const digits = digitsOfCall(s.call);
  const key = k >= 0 ? Math.floor(k / KEY_TICKS) : -1;
  const phase = k >= 0 ? k % KEY_TICKS : -1;
  if (key >= 0 && key < digits.length && phase <= 4) {
    if (key === 0 && phase === 0) s.report.keyed++;
    if (key === digits.length - 1 && phase === 0) s.listening = true;
    const event = eventOfDigit(digits[key]!)!;
    const timestamp = (s.keysFrom! + key * KEY_TICKS) * PCMU_PAYLOAD_BYTES;
    if (phase < 4) {
      socket.send(packet(s, TELEPHONE_EVENT_PT, timestamp, buildTelephoneEvent({ event, end: false, volume: 10, duration: (phase + 1) * PCMU_PAYLOAD_BYTES }), phase === 0), s.port, s.host);
    } else {
      for (let i = 0; i < 3; i++) socket.send(packet(s, TELEPHONE_EVENT_PT, timestamp, buildTelephoneEvent({ event, end: true, volume: 10, duration: 5 * PCMU_PAYLOAD_BYTES })), s.port, s.host);
    }
  } else {
    socket.send(packet(s, 0, s.index * PCMU_PAYLOAD_BYTES, silence), s.port, s.host);
    // The keys sent: on to the next prompt's, if it was heard already.
    if (key >= digits.length) {
      s.keysFrom = s.nextKeysFrom;
      s.nextKeysFrom = undefined;
    }
  }
  s.report.sent++;
}

function send(): void {
  const now = clock();
  for (const s of streams.values()) {
    while (s.due <= now) {
      sendFrame(s);
      s.index++;
      s.due += PACKET_INTERVAL_MS;
      // A sender that fell far behind (a stall) skips ahead rather than bursting, as a phone
      // would: the frames of the stall are lost, and the RTP timestamps go on with the time
      // (the receiver's jitter buffer places packets by them). Never inside or across a key's
      // events, which are sent whole.
      const behind = Math.floor((now - s.due) / PACKET_INTERVAL_MS);
      if (behind > 5) {
        let skip = behind;
        if (s.keysFrom !== undefined) skip = s.index >= s.keysFrom ? 0 : Math.min(skip, s.keysFrom - s.index);
        s.index += skip;
        s.due += skip * PACKET_INTERVAL_MS;
      }
    }
  }
}
setInterval(send, 2);

// --- receiving: the prompt's onset ---
const samples = new Int16Array(PCMU_PAYLOAD_BYTES);
socket.on('message', (data, from) => {
  const s = byPort.get(from.port);
  if (!s || data.length < 12 + PCMU_PAYLOAD_BYTES || data[0]! >> 6 !== 2 || (data[1]! & 0x7f) !== 0) return;
  const at = clock();
  s.report.received++;
  const header = 12 + 4 * (data[0]! & 0x0f);
  if (data.length < header + PCMU_PAYLOAD_BYTES) return;
  decodeUlaw(new Uint8Array(data.buffer, data.byteOffset + header, PCMU_PAYLOAD_BYTES), samples);
  let energy = 0;
  for (const v of samples) energy += v * v;
  if (energy / samples.length <= LOUD) return;
  s.report.loud++;
  if (s.listening) {
    s.listening = false;
    s.report.onsets.push(at);
    const from = s.index + Math.ceil(digitDelayMs / PACKET_INTERVAL_MS);
    if (s.keysFrom === undefined) s.keysFrom = from;
    else s.nextKeysFrom = from;
  }
});

const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value)}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as { tail?: string; status?: boolean; report?: boolean };
  if (command.tail !== undefined) tails.follow(command.tail);
  if (command.status) {
    tails.poll();
    print({ status: streams.size });
  }
  if (command.report) {
    const cpu = process.cpuUsage();
    const report: RayoEndpointReport = { calls: [...streams.values()].map((s) => s.report), endpointCpu: (cpu.user + cpu.system) / 1e6 / (process.uptime() || 1) };
    print({ report });
  }
});
process.stdin.on('end', () => process.exit(0));

process.stdout.write(`RTP PORT ${socket.address().port}\n`);
