/**
 * The media endpoint: the server itself as a party of a call's media, for Rayo and the
 * server-side applications. It answers (or makes) the SDP offer of one call leg, in either flavour
 * the gateway knows — plain RTP/AVP (a UdpRtpPort) or WebRTC (a WebRtcPort: ICE-lite and
 * DTLS-SRTP on werift) — and then sends and receives 8 kHz audio in 20 ms frames:
 *
 *   const endpoint = gateway.openEndpoint(callId);
 *   const answer = await endpoint.answer(offerFromCaller);   // MediaNegotiationError → 488
 *   endpoint.onAudio((frame) => recorder.write(frame));     // 160 samples, every 20 ms
 *   endpoint.onDigit((digit) => collector.push(digit));
 *   await endpoint.play(prompt);                            // any AudioSource
 *   await endpoint.sendDigits('19#');
 *   await endpoint.close();
 *
 * Timing comes from the process's one frame clock (frame-clock.ts): each tick, every endpoint
 * sends its next frame and plays out one frame of its jitter buffer (jitter-buffer.ts).
 *
 * Decisions:
 * - Codecs: the first of PCMU and PCMA the offer lists, with the offer's payload type; we
 *   offer PCMU (0), PCMA (8) and telephone-event (101). telephone-event is answered when
 *   offered. We receive both G.711 laws whatever we send.
 * - With nothing playing we send silence (the default, `idleAudio: 'silence'`): many phones and
 *   NATs want a continuous stream. `idleAudio: 'none'` sends nothing between sources instead.
 * - The marker bit is set on the first packet of a source, after a pause in sending (hold, idle
 *   without comfort silence) and after DTMF events. SSRC, sequence and timestamp continue across
 *   sources; the timestamp advances 160 a tick whatever is sent.
 * - Hold: a peer that stops receiving (sendonly, inactive, c=0.0.0.0) stops our sending, and the
 *   source playing pauses where it is; a peer that stops sending stops our receiving.
 * - DTMF out: RFC 4733 events when telephone-event was negotiated (five packets 20 ms apart,
 *   then the end packet three times, then 60 ms of pause), else in-band tones (100 ms of the
 *   two sines, 60 ms of silence); audio pauses meanwhile.
 * - DTMF in: onDigit once per event, at its first end packet (dedup by RTP timestamp; an event
 *   whose ends were all lost is reported at the next event or 200 ms later). The event's packets
 *   take their place in the jitter buffer as silence; retransmitted ends take none.
 * - Received packets are expected to carry 20 ms (160 samples, as our SDP asks with a=ptime:20);
 *   a shorter payload is padded with silence, a longer one cut to 160 samples.
 * - Frames given to onAudio listeners are one buffer reused every tick: copy what you keep.
 */
import sdpTransform, { type MediaDescription, type SessionDescription } from 'sdp-transform';
import type { Logger } from '../log.js';
import { FrameClock, sharedFrameClock, type FrameSubscriber } from './frame-clock.js';
import { AUDIO, EMPTY, JitterBuffer, LOST, NO_AUDIO, SKIP, type JitterBufferOptions, type JitterBufferStats } from './jitter-buffer.js';
import { eventOfDigit, digitOfEvent, parseTelephoneEvent, TELEPHONE_EVENT_LENGTH, writeTelephoneEvent } from './dtmf.js';
import { alawFromLinear, alawToLinear, ulawFromLinear, ulawToLinear } from './g711.js';
import { flavourOf, MediaNegotiationError, setPlainRemote, sideMediaOf, type Flavour } from './gateway.js';
import type { PortAllocator } from './ports.js';
import { receives, sends, UdpRtpPort, type MediaDirection, type PortCounters, type RelayCodec, type SideMedia } from './relay.js';
import { RTP_FIXED_HEADER_LENGTH, writeRtpHeader } from './rtp.js';
import { WEBRTC_CODECS, WebRtcPort } from './webrtc.js';
import { randomInt } from 'node:crypto';

export { MediaNegotiationError };

/** 20 ms at 8 kHz. */
export const FRAME_SAMPLES = 160;

/** Audio to send: 160-sample frames of 16-bit linear audio at 8 kHz, `undefined` once finished. */
export interface AudioSource {
  next(): Int16Array | undefined;
}

/** How a play() ended: the source ran out, it was stopped (stop, another play, close), or its next() threw. */
export type PlayResult = 'finished' | 'stopped' | 'failed';

export interface MediaEndpointOptions {
  /** The address put in our SDP and ICE candidates. */
  publicAddress: string;
  /** The local address to bind (default publicAddress). */
  bindAddress?: string;
  /** Where our ports come from (the gateway's, through MediaGateway.openEndpoint). */
  ports: PortAllocator;
  /** Default: the process's shared clock. */
  clock?: FrameClock;
  /** What to send while nothing plays (default 'silence'). */
  idleAudio?: 'silence' | 'none';
  jitter?: JitterBufferOptions;
  log?: Logger;
  /** A name for logs. */
  id?: string;
  /** Called once when closed, with the final stats (the gateway's bookkeeping). */
  onClosed?: (stats: EndpointStats) => void;
}

export interface EndpointStats extends PortCounters {
  flavour: Flavour | undefined;
  codec: 'PCMU' | 'PCMA' | undefined;
  /** Our direction as negotiated. */
  direction: MediaDirection;
  /** From the jitter buffer: packets never received in time, too late, duplicated. */
  lost: number;
  late: number;
  duplicates: number;
  /** Frames dropped unplayed to keep the receive latency down (see jitter-buffer.ts). */
  trimmed: number;
  /** Frame clock ticks this endpoint got late (see frame-clock.ts). */
  lateFrames: number;
  /** Send failures and listener errors (logged). */
  errors: number;
  digitsIn: number;
  digitsOut: number;
}

/** What each received payload type is. */
const NONE = 0;
const PCMU = 1;
const PCMA = 2;
const EVENT = 3;

/** DTMF out: event packets (20 ms apart), end packets (sent together), pause ticks. */
const EVENT_TICKS = 5;
const END_PACKETS = 3;
const PAUSE_TICKS = 3;
const TONE_AMPLITUDE = 7000;
/** Frames without event packets after which an event whose end never came is reported. */
const EVENT_TIMEOUT_TICKS = 10;
const KEYPAD_ROWS = [697, 770, 852, 941] as const;
const KEYPAD_COLUMNS = [1209, 1336, 1477, 1633] as const;

/** How many packet buffers are used in turn (a send is done long before one comes round again). */
const PACKET_POOL = 4;
const BIND_ATTEMPTS = 8;

interface DigitJob {
  events: number[];
  /** The digit being sent, and the tick within it (1-based). */
  index: number;
  tick: number;
  eventTimestamp: number;
  done: () => void;
}

interface Negotiated {
  codec: 'PCMU' | 'PCMA';
  payloadType: number;
  /** telephone-event's payload type, or -1. */
  eventPayloadType: number;
}

export class MediaEndpoint implements FrameSubscriber {
  readonly id: string;
  private readonly clock: FrameClock;
  private readonly log: Logger | undefined;
  private readonly bindAddress: string;
  private flavourValue: Flavour | undefined;
  private port: UdpRtpPort | WebRtcPort | undefined;
  private readonly reserved: number[] = [];
  private negotiated: Negotiated | undefined;
  private directionValue: MediaDirection = 'inactive';
  /** The direction we want (a re-offer of ours for hold narrows it). */
  private localDirection: MediaDirection = 'sendrecv';
  private offerPending = false;
  private readonly origin = { sessionId: randomInt(2 ** 31), version: 0 };
  private subscribed = false;
  private closing: Promise<void> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  // Sending.
  private readonly ssrc = randomInt(0x1_0000_0000);
  private sequence = randomInt(0x1_0000);
  private timestamp = randomInt(0x1_0000_0000);
  private marker = true;
  private source: AudioSource | undefined;
  private sourceDone: ((result: PlayResult) => void) | undefined;
  private readonly digitJobs: DigitJob[] = [];
  private readonly packets: Buffer[] = [];
  private packetIndex = 0;
  private readonly outFrame = new Int16Array(FRAME_SAMPLES);
  private readonly silence = new Int16Array(FRAME_SAMPLES);
  private toneSample = 0;

  // Receiving.
  private readonly jitter: JitterBuffer;
  private readonly receiveTable = new Uint8Array(128);
  private readonly inFrame = new Int16Array(FRAME_SAMPLES);
  /** The RFC 4733 event being received: its timestamp and code, and whether it was reported. */
  private eventTimestamp = -1;
  private eventCode = -1;
  private eventReported = true;
  private eventIdleTicks = 0;
  /** The timestamps of the last events ended (their retransmitted ends are ignored). */
  private readonly endedEvents = new Float64Array(4).fill(-1);
  private endedIndex = 0;
  private readonly audioListeners: ((frame: Int16Array) => void)[] = [];
  private readonly digitListeners: ((digit: string) => void)[] = [];

  private readonly counts = { lateFrames: 0, errors: 0, digitsIn: 0, digitsOut: 0, dropped: 0 };

  constructor(private readonly options: MediaEndpointOptions) {
    this.id = options.id ?? `endpoint-${this.ssrc.toString(16)}`;
    this.clock = options.clock ?? sharedFrameClock;
    this.log = options.log;
    this.bindAddress = options.bindAddress ?? options.publicAddress;
    this.jitter = new JitterBuffer(options.jitter);
    for (let i = 0; i < PACKET_POOL; i++) this.packets.push(Buffer.alloc(RTP_FIXED_HEADER_LENGTH + FRAME_SAMPLES));
  }

  get flavour(): Flavour | undefined {
    return this.flavourValue;
  }

  /** Our media direction as negotiated ('inactive' before). */
  get direction(): MediaDirection {
    return this.directionValue;
  }

  /** Whether the peer takes and sends RFC 4733 telephone-events (else DTMF is in-band tones). */
  get telephoneEvents(): boolean {
    return (this.negotiated?.eventPayloadType ?? -1) >= 0;
  }

  /** The codec we send, once negotiated. */
  get codec(): 'PCMU' | 'PCMA' | undefined {
    return this.negotiated?.codec;
  }

  /** Our local port (RTP's), once bound. */
  get localPort(): number | undefined {
    return this.reserved[0];
  }

  /** For WebRTC: the peer connection's state ('connected' once ICE and DTLS are up). */
  get connectionState(): string | undefined {
    return this.port instanceof WebRtcPort ? this.port.connectionState : undefined;
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(task);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private checkOpen(): void {
    if (this.closing) throw new Error(`media endpoint ${this.id} is closed`);
  }

  // ---- Negotiation ---------------------------------------------------------------------------

  /**
   * Answers the peer's offer (the first or a re-offer: hold, resume, a new address). Throws
   * MediaNegotiationError when it has no audio, no G.711, plain RTP other than RTP/AVP(F), or
   * changes flavour.
   */
  answer(offerSdp: string): Promise<string> {
    return this.serialize(async () => {
      this.checkOpen();
      const offer = sdpTransform.parse(offerSdp);
      const flavour = flavourOf(offerSdp);
      this.checkFlavour(flavour);
      const index = audioIndexOf(offer);
      if (index < 0) throw new MediaNegotiationError('the offer has no audio');
      const protocol = offer.media[index]!.protocol;
      if (flavour === 'rtp' && !/^RTP\/AVPF?$/i.test(protocol)) {
        throw new MediaNegotiationError(`the offer's audio uses ${protocol}; plain RTP must be offered as RTP/AVP`);
      }
      const offered = sideMediaOf(offer, index);
      const choice = choose(offered, 'offer');
      const direction = narrow(reverse(offered.direction), this.localDirection);
      this.offerPending = false;
      if (flavour === 'rtp') {
        const port = await this.plainPort();
        setPlainRemote(port, offer, index);
        this.configure(choice, offered, direction);
        return this.writePlainAnswer(port, offer, index, choice, direction);
      }
      const port = this.webRtcPort(codecsFor(choice));
      await port.acceptOffer(offerSdp);
      const answer = await port.createAnswer(direction);
      const final = sdpTransform.parse(answer);
      const finalIndex = audioIndexOf(final);
      if (finalIndex < 0) throw new MediaNegotiationError('the WebRTC answer has no audio');
      const answered = sideMediaOf(final, finalIndex);
      this.configure(choose(answered, 'answer'), answered, direction);
      return answer;
    });
  }

  /**
   * Our offer (the first, or a re-offer: `direction` 'sendonly' or 'inactive' holds, 'sendrecv'
   * resumes). `flavour` is needed for the first only (default plain RTP). `accept` its answer.
   */
  offer(options: { flavour?: Flavour; direction?: MediaDirection } = {}): Promise<string> {
    return this.serialize(async () => {
      this.checkOpen();
      const flavour = this.flavourValue ?? options.flavour ?? 'rtp';
      this.checkFlavour(options.flavour ?? flavour);
      this.localDirection = options.direction ?? 'sendrecv';
      let sdp: string;
      if (flavour === 'rtp') sdp = this.writePlainOffer(await this.plainPort(), this.localDirection);
      else sdp = await this.webRtcPort(WEBRTC_CODECS).createOffer(this.localDirection);
      this.offerPending = true;
      return sdp;
    });
  }

  /** The peer's answer to our offer. Throws MediaNegotiationError when it took no G.711 audio. */
  accept(answerSdp: string): Promise<void> {
    return this.serialize(async () => {
      this.checkOpen();
      if (!this.offerPending || !this.port) throw new MediaNegotiationError('no offer of ours is waiting for an answer');
      this.offerPending = false;
      const answer = sdpTransform.parse(answerSdp);
      const index = audioIndexOf(answer);
      if (index < 0) throw new MediaNegotiationError('the answer refused our audio');
      const answered = sideMediaOf(answer, index);
      const choice = choose(answered, 'answer');
      if (this.port instanceof WebRtcPort) await this.port.acceptAnswer(answerSdp);
      else setPlainRemote(this.port, answer, index);
      this.configure(choice, answered, narrow(reverse(answered.direction), this.localDirection));
    });
  }

  private checkFlavour(flavour: Flavour): void {
    if (this.flavourValue && this.flavourValue !== flavour) {
      throw new MediaNegotiationError(`media endpoint ${this.id} was ${this.flavourValue} and now gets ${flavour}`);
    }
  }

  private async plainPort(): Promise<UdpRtpPort> {
    if (this.port instanceof UdpRtpPort) return this.port;
    for (let attempt = 1; ; attempt++) {
      const rtpPort = this.options.ports.allocatePair();
      let port: UdpRtpPort;
      try {
        port = await UdpRtpPort.bind(this.bindAddress, rtpPort, rtpPort + 1);
      } catch (error) {
        // Held by another process: set aside, so the next attempt gets another pair.
        this.options.ports.setAside(rtpPort);
        this.options.ports.setAside(rtpPort + 1);
        if (this.closing || attempt >= BIND_ATTEMPTS) throw error;
        continue;
      }
      if (this.closing) {
        await port.close();
        this.options.ports.release(rtpPort);
        this.options.ports.release(rtpPort + 1);
        throw new Error(`media endpoint ${this.id} is closed`);
      }
      this.attach(port, 'rtp', [rtpPort, rtpPort + 1]);
      return port;
    }
  }

  private webRtcPort(codecs: readonly { codec: RelayCodec; payloadType: number }[]): WebRtcPort {
    if (this.port instanceof WebRtcPort) return this.port;
    // werift binds the first free port of the pair itself (see webrtc.ts).
    const pair = this.options.ports.allocatePair();
    const port = new WebRtcPort({ bindAddress: this.bindAddress, publicAddress: this.options.publicAddress, portPair: pair, codecs });
    this.attach(port, 'webrtc', [pair, pair + 1]);
    return port;
  }

  private attach(port: UdpRtpPort | WebRtcPort, flavour: Flavour, reserved: number[]): void {
    this.port = port;
    this.flavourValue = flavour;
    this.reserved.push(...reserved);
    port.onRtp = (packet) => this.receive(packet);
  }

  /** Applies a negotiation: what we send, what we take, which way media flows. */
  private configure(choice: Negotiated, peer: SideMedia, direction: MediaDirection): void {
    const wasSending = sends(this.directionValue);
    this.negotiated = choice;
    this.directionValue = direction;
    this.receiveTable.fill(NONE);
    for (const [payloadType, codec] of peer.payloadTypes) {
      this.receiveTable[payloadType] = codec === 'PCMU' ? PCMU : codec === 'PCMA' ? PCMA : EVENT;
    }
    if (sends(direction) && !wasSending) this.marker = true;
    const active = direction !== 'inactive';
    if (active && !this.subscribed) {
      this.clock.subscribe(this);
      this.subscribed = true;
    } else if (!active && this.subscribed) {
      this.clock.unsubscribe(this);
      this.subscribed = false;
    }
    this.log?.debug({ event: 'media.endpoint.configured', endpoint: this.id, codec: choice.codec, direction }, 'media endpoint negotiated');
  }

  private writePlainOffer(port: UdpRtpPort, direction: MediaDirection): string {
    const offered = new Map<number, RelayCodec>(WEBRTC_CODECS.map(({ codec, payloadType }) => [payloadType, codec]));
    return this.writePlain([audioLine(port.rtpPort, offered, direction, undefined)]);
  }

  private writePlainAnswer(port: UdpRtpPort, offer: SessionDescription, index: number, choice: Negotiated, direction: MediaDirection): string {
    const ours = new Map<number, RelayCodec>([[choice.payloadType, choice.codec]]);
    if (choice.eventPayloadType >= 0) ours.set(choice.eventPayloadType, 'telephone-event');
    const eventFmtp = offer.media[index]!.fmtp.find((entry) => entry.payload === choice.eventPayloadType)?.config;
    return this.writePlain(
      offer.media.map((media, i): MediaDescription =>
        i === index
          ? audioLine(port.rtpPort, ours, direction, eventFmtp)
          : { type: media.type, port: 0, protocol: media.protocol, payloads: String(media.payloads ?? '0'), rtp: [], fmtp: [] },
      ),
    );
  }

  private writePlain(media: MediaDescription[]): string {
    const address = this.options.publicAddress;
    const ipVer = address.includes(':') ? 6 : 4;
    this.origin.version++;
    return sdpTransform.write({
      version: 0,
      origin: { username: 'ximssd', sessionId: this.origin.sessionId, sessionVersion: this.origin.version, netType: 'IN', ipVer, address },
      name: '-',
      timing: { start: 0, stop: 0 },
      connection: { version: ipVer, ip: address },
      media,
    });
  }

  // ---- Listeners -----------------------------------------------------------------------------

  /** Each received frame (160 samples; silence for a lost packet). The buffer is reused: copy to keep. Returns the remover. */
  onAudio(listener: (frame: Int16Array) => void): () => void {
    this.audioListeners.push(listener);
    return () => removeFrom(this.audioListeners, listener);
  }

  /** Each DTMF digit received as RFC 4733 events, once per event. Returns the remover. */
  onDigit(listener: (digit: string) => void): () => void {
    this.digitListeners.push(listener);
    return () => removeFrom(this.digitListeners, listener);
  }

  // ---- Sending -------------------------------------------------------------------------------

  /**
   * Plays `source` from its next frame, replacing what played (which resolves 'stopped').
   * Resolves 'finished' when the source ends, 'stopped' on stop(), another play() or close().
   */
  play(source: AudioSource): Promise<PlayResult> {
    this.finishSource('stopped');
    if (this.closing) return Promise.resolve('stopped');
    this.source = source;
    this.marker = true;
    return new Promise((resolve) => (this.sourceDone = resolve));
  }

  /** Stops what plays (silence, or nothing, follows). */
  stop(): void {
    this.finishSource('stopped');
  }

  /** Whether a source is playing. */
  get playing(): boolean {
    return this.source !== undefined;
  }

  private finishSource(result: PlayResult): void {
    const done = this.sourceDone;
    this.source = undefined;
    this.sourceDone = undefined;
    done?.(result);
  }

  /**
   * Sends DTMF digits (0-9, *, #, A-D): RFC 4733 events when telephone-event was negotiated,
   * else in-band tones; audio pauses meanwhile. Queued behind digits still being sent; resolves
   * once sent (or when the endpoint closes). Rejects at once for a character that is no digit,
   * or before media was negotiated.
   */
  sendDigits(digits: string): Promise<void> {
    const events: number[] = [];
    for (const digit of digits) {
      const event = eventOfDigit(digit);
      if (event === undefined) return Promise.reject(new RangeError(`not a DTMF digit: ${JSON.stringify(digit)}`));
      events.push(event);
    }
    if (this.closing) return Promise.reject(new Error(`media endpoint ${this.id} is closed`));
    if (!this.negotiated) return Promise.reject(new Error(`media endpoint ${this.id} has no negotiated media yet`));
    if (events.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.digitJobs.push({ events, index: 0, tick: 0, eventTimestamp: 0, done: resolve }));
  }

  /** The frame clock's tick: plays out one received frame, sends one. */
  onFrame(late: boolean): void {
    if (late) this.counts.lateFrames++;
    if (receives(this.directionValue)) this.playout();
    if (sends(this.directionValue)) this.sendTick();
    else this.timestamp = (this.timestamp + FRAME_SAMPLES) >>> 0;
  }

  private sendTick(): void {
    const negotiated = this.negotiated!;
    const job = this.digitJobs[0];
    if (job) this.sendDigitTick(job, negotiated);
    else {
      let frame: Int16Array | undefined;
      if (this.source) {
        try {
          frame = this.source.next();
          if (frame === undefined) this.finishSource('finished');
        } catch (error) {
          this.failed('media.endpoint.source', error);
          this.finishSource('failed');
        }
      }
      if (frame === undefined && this.options.idleAudio !== 'none') frame = this.silence;
      if (frame === undefined) this.marker = true;
      else this.sendAudio(frame, negotiated);
    }
    this.timestamp = (this.timestamp + FRAME_SAMPLES) >>> 0;
  }

  private nextPacket(): Buffer {
    const packet = this.packets[this.packetIndex]!;
    this.packetIndex = (this.packetIndex + 1) % PACKET_POOL;
    return packet;
  }

  private sendAudio(frame: Int16Array, negotiated: Negotiated): void {
    const packet = this.nextPacket();
    this.sequence = (this.sequence + 1) & 0xffff;
    writeRtpHeader(packet, { marker: this.marker, payloadType: negotiated.payloadType, sequence: this.sequence, timestamp: this.timestamp, ssrc: this.ssrc });
    this.marker = false;
    const n = Math.min(frame.length, FRAME_SAMPLES);
    const offset = RTP_FIXED_HEADER_LENGTH;
    if (negotiated.codec === 'PCMU') {
      for (let i = 0; i < n; i++) packet[offset + i] = ulawFromLinear(frame[i]!);
      if (n < FRAME_SAMPLES) packet.fill(0xff, offset + n); // μ-law silence
    } else {
      for (let i = 0; i < n; i++) packet[offset + i] = alawFromLinear(frame[i]!);
      if (n < FRAME_SAMPLES) packet.fill(0xd5, offset + n); // A-law silence
    }
    this.transmit(packet);
  }

  private sendDigitTick(job: DigitJob, negotiated: Negotiated): void {
    job.tick++;
    const event = job.events[job.index]!;
    if (job.tick === 1) job.eventTimestamp = this.timestamp;
    if (negotiated.eventPayloadType >= 0) {
      if (job.tick <= EVENT_TICKS) this.sendEvent(negotiated.eventPayloadType, event, job, false, job.tick * FRAME_SAMPLES);
      else if (job.tick === EVENT_TICKS + 1) {
        for (let i = 0; i < END_PACKETS; i++) this.sendEvent(negotiated.eventPayloadType, event, job, true, EVENT_TICKS * FRAME_SAMPLES);
        this.counts.digitsOut++;
      } else if (this.options.idleAudio !== 'none') this.sendAudio(this.silence, negotiated);
    } else if (job.tick <= EVENT_TICKS) {
      this.sendAudio(this.tone(event), negotiated);
      if (job.tick === EVENT_TICKS) this.counts.digitsOut++;
    } else if (this.options.idleAudio !== 'none') this.sendAudio(this.silence, negotiated);
    // RFC 4733: 5 event ticks, 1 for the ends, then the pause; in-band: 5 tone ticks, then the pause.
    const ticks = EVENT_TICKS + (negotiated.eventPayloadType >= 0 ? 1 : 0) + PAUSE_TICKS;
    if (job.tick >= ticks) {
      job.tick = 0;
      this.toneSample = 0;
      if (++job.index === job.events.length) {
        this.digitJobs.shift();
        this.marker = true;
        job.done();
      }
    }
  }

  private sendEvent(payloadType: number, event: number, job: DigitJob, end: boolean, duration: number): void {
    const packet = this.nextPacket();
    this.sequence = (this.sequence + 1) & 0xffff;
    writeRtpHeader(packet, { marker: job.tick === 1, payloadType, sequence: this.sequence, timestamp: job.eventTimestamp, ssrc: this.ssrc });
    writeTelephoneEvent(packet, { event, end, volume: 10, duration }, RTP_FIXED_HEADER_LENGTH);
    this.transmit(packet.subarray(0, RTP_FIXED_HEADER_LENGTH + TELEPHONE_EVENT_LENGTH));
  }

  /** The next 20 ms of a digit's two tones (in-band DTMF), into the reused frame. */
  private tone(event: number): Int16Array {
    const digit = digitOfEvent(event)!;
    const position = '123A456B789C*0#D'.indexOf(digit);
    const low = KEYPAD_ROWS[position >> 2]!;
    const high = KEYPAD_COLUMNS[position & 3]!;
    const frame = this.outFrame;
    for (let i = 0; i < FRAME_SAMPLES; i++) {
      const t = (this.toneSample + i) / 8000;
      frame[i] = Math.round(TONE_AMPLITUDE * (Math.sin(2 * Math.PI * low * t) + Math.sin(2 * Math.PI * high * t)));
    }
    this.toneSample += FRAME_SAMPLES;
    return frame;
  }

  private transmit(packet: Buffer): void {
    try {
      this.port?.sendRtp(packet);
    } catch (error) {
      this.failed('media.endpoint.send', error);
    }
  }

  private failed(event: string, error: unknown): void {
    this.counts.errors++;
    // The first failure at warn, the rest at debug: a dead socket must not flood the log 50 times a second.
    const level = this.counts.errors === 1 ? 'warn' : 'debug';
    this.log?.[level]({ event, endpoint: this.id, err: error instanceof Error ? error.message : String(error) }, 'media endpoint error');
  }

  // ---- Receiving -----------------------------------------------------------------------------

  private receive(packet: Buffer): void {
    if (!receives(this.directionValue) || packet.length < RTP_FIXED_HEADER_LENGTH || packet[0]! >> 6 !== 2) {
      this.counts.dropped++;
      return;
    }
    const payloadType = packet[1]! & 0x7f;
    const kind = this.receiveTable[payloadType]!;
    const start = payloadStart(packet);
    const end = start < 0 ? -1 : payloadEnd(packet, start);
    if (kind === NONE || start < 0) {
      this.counts.dropped++;
      return;
    }
    const sequence = packet.readUInt16BE(2);
    const timestamp = packet.readUInt32BE(4);
    const ssrc = packet.readUInt32BE(8);
    if (kind !== EVENT) {
      this.jitter.push(ssrc, sequence, timestamp, payloadType, AUDIO, packet, start, end);
      return;
    }
    const event = parseTelephoneEvent(packet.subarray(start, end));
    if (!event) {
      this.counts.dropped++;
      return;
    }
    const entry = this.receiveEvent(timestamp, event.event, event.end);
    this.jitter.push(ssrc, sequence, timestamp, payloadType, entry);
  }

  /**
   * One RFC 4733 packet: the digit is reported at the event's first end packet; the other end
   * packets (retransmitted, or late) take no time in the jitter buffer. An event whose end
   * packets were all lost is reported when the next event starts, or after EVENT_TIMEOUT_TICKS
   * without event packets.
   */
  private receiveEvent(timestamp: number, code: number, end: boolean): typeof NO_AUDIO | typeof SKIP {
    this.eventIdleTicks = 0;
    if (this.endedEvents.includes(timestamp)) return SKIP;
    if (timestamp !== this.eventTimestamp) {
      if (!this.eventReported) this.reportDigit(this.eventCode);
      this.eventTimestamp = timestamp;
      this.eventCode = code;
      this.eventReported = false;
    }
    if (end) {
      this.reportDigit(code);
      this.eventReported = true;
      this.endedEvents[this.endedIndex] = timestamp;
      this.endedIndex = (this.endedIndex + 1) % this.endedEvents.length;
    }
    return NO_AUDIO;
  }

  private reportDigit(code: number): void {
    const digit = digitOfEvent(code);
    if (digit === undefined) return;
    this.counts.digitsIn++;
    for (const listener of this.digitListeners) this.call(listener, digit);
  }

  private playout(): void {
    if (!this.eventReported && ++this.eventIdleTicks > EVENT_TIMEOUT_TICKS) {
      this.reportDigit(this.eventCode);
      this.eventReported = true;
    }
    const slot = this.jitter.pop();
    if (slot === EMPTY) return;
    const frame = this.inFrame;
    if (slot === LOST || slot.kind !== AUDIO) frame.fill(0);
    else {
      const n = Math.min(slot.length, FRAME_SAMPLES);
      const data = slot.data;
      if (this.receiveTable[slot.payloadType] === PCMA) for (let i = 0; i < n; i++) frame[i] = alawToLinear(data[i]!);
      else for (let i = 0; i < n; i++) frame[i] = ulawToLinear(data[i]!);
      if (n < FRAME_SAMPLES) frame.fill(0, n);
    }
    for (const listener of this.audioListeners) this.call(listener, frame);
  }

  private call<T>(listener: (value: T) => void, value: T): void {
    try {
      listener(value);
    } catch (error) {
      this.failed('media.endpoint.listener', error);
    }
  }

  // ---- Stats and close -----------------------------------------------------------------------

  stats(): EndpointStats {
    const counters = this.port?.counters;
    const jitter: JitterBufferStats = this.jitter.stats();
    return {
      packetsIn: counters?.packetsIn ?? 0,
      bytesIn: counters?.bytesIn ?? 0,
      packetsOut: counters?.packetsOut ?? 0,
      bytesOut: counters?.bytesOut ?? 0,
      dropped: (counters?.dropped ?? 0) + this.counts.dropped,
      flavour: this.flavourValue,
      codec: this.negotiated?.codec,
      direction: this.directionValue,
      lost: jitter.lost,
      late: jitter.late,
      duplicates: jitter.duplicates,
      trimmed: jitter.trimmed,
      lateFrames: this.counts.lateFrames,
      errors: this.counts.errors,
      digitsIn: this.counts.digitsIn,
      digitsOut: this.counts.digitsOut,
    };
  }

  /** Stops the media, closes the sockets and frees the ports. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.queue.then(async () => {
      if (this.subscribed) this.clock.unsubscribe(this);
      this.subscribed = false;
      this.directionValue = 'inactive';
      this.finishSource('stopped');
      for (const job of this.digitJobs.splice(0)) job.done();
      this.audioListeners.length = 0;
      this.digitListeners.length = 0;
      try {
        await this.port?.close();
      } catch (error) {
        this.failed('media.endpoint.close', error);
      }
      for (const port of this.reserved.splice(0)) this.options.ports.release(port);
      this.options.onClosed?.(this.stats());
    });
    return this.closing;
  }
}

function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}

function audioIndexOf(session: SessionDescription): number {
  return session.media.findIndex((media) => media.type === 'audio' && media.port !== 0);
}

/** The first G.711 codec `media` lists, and its telephone-event; MediaNegotiationError without G.711. */
function choose(media: SideMedia, what: 'offer' | 'answer'): Negotiated {
  let choice: { codec: 'PCMU' | 'PCMA'; payloadType: number } | undefined;
  let eventPayloadType = -1;
  for (const [payloadType, codec] of media.payloadTypes) {
    if (!choice && (codec === 'PCMU' || codec === 'PCMA')) choice = { codec, payloadType };
    if (codec === 'telephone-event' && eventPayloadType < 0) eventPayloadType = payloadType;
  }
  if (!choice) throw new MediaNegotiationError(`the ${what} has no G.711 audio (PCMU or PCMA)`);
  return { ...choice, eventPayloadType };
}

/** The codecs our WebRTC port accepts for an offer: the chosen law and telephone-event, with the offer's numbers. */
function codecsFor(choice: Negotiated): { codec: RelayCodec; payloadType: number }[] {
  const codecs: { codec: RelayCodec; payloadType: number }[] = [{ codec: choice.codec, payloadType: choice.payloadType }];
  if (choice.eventPayloadType >= 0) codecs.push({ codec: 'telephone-event', payloadType: choice.eventPayloadType });
  return codecs;
}

/** Our direction for the peer's: what it sends we receive, and the reverse. */
function reverse(direction: MediaDirection): MediaDirection {
  return direction === 'sendonly' ? 'recvonly' : direction === 'recvonly' ? 'sendonly' : direction;
}

/** The direction allowed by both. */
function narrow(a: MediaDirection, b: MediaDirection): MediaDirection {
  const send = sends(a) && sends(b);
  const receive = receives(a) && receives(b);
  return send && receive ? 'sendrecv' : send ? 'sendonly' : receive ? 'recvonly' : 'inactive';
}

function audioLine(port: number, codecs: ReadonlyMap<number, RelayCodec>, direction: MediaDirection, eventFmtp: string | undefined): MediaDescription {
  const list = [...codecs];
  return {
    type: 'audio',
    port,
    protocol: 'RTP/AVP',
    payloads: list.map(([payloadType]) => payloadType).join(' '),
    rtp: list.map(([payload, codec]) => ({ payload, codec, rate: 8000 })),
    fmtp: list.filter(([, codec]) => codec === 'telephone-event').map(([payload]) => ({ payload, config: eventFmtp ?? '0-16' })),
    ptime: 20,
    direction,
  };
}

/** Where the payload starts (after CSRCs and extension), or -1 for a malformed packet. */
function payloadStart(packet: Buffer): number {
  let offset = RTP_FIXED_HEADER_LENGTH + 4 * (packet[0]! & 0x0f);
  if ((packet[0]! & 0x10) !== 0) {
    if (packet.length < offset + 4) return -1;
    offset += 4 + 4 * packet.readUInt16BE(offset + 2);
  }
  return offset <= packet.length ? offset : -1;
}

/** Where the payload ends (before padding). */
function payloadEnd(packet: Buffer, start: number): number {
  if ((packet[0]! & 0x20) === 0) return packet.length;
  const padding = packet[packet.length - 1]!;
  return padding > 0 && padding <= packet.length - start ? packet.length - padding : start;
}
