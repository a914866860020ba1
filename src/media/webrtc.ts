/**
 * The WebRTC side of an anchored call, on werift (a TypeScript WebRTC stack): ICE (werift's
 * ICE-lite mode: the server has a public address and answers the browser's checks), DTLS-SRTP
 * and rtcp-mux, audio only. Decrypted RTP goes to the relay as packets; the relay's packets go
 * out encrypted.
 *
 * Codecs: G.711 μ-law and A-law and telephone-event. werift neither encodes nor decodes Opus,
 * so Opus is never offered or accepted; a browser that offers it gets an answer without it.
 * Other m-lines (video, data channels, a second audio) are refused with port 0 in the answer.
 *
 * What werift does its own way, and how we live with it:
 * - RTCRtpSender.sendRtp rewrites every packet's payload type to the negotiated codec's, which
 *   would turn telephone-event into noise; we encrypt through the sender's DTLS transport
 *   directly, with the sender's SSRC (the one in our SDP) and the payload type the relay chose.
 *   Sender reports are then not sent; browsers do not need them for G.711.
 * - RTCP is terminated here (werift sends receiver reports); it is not relayed, since the SSRCs
 *   on the two sides differ.
 * - werift wants a port range, not a port, for ICE (`icePortRange` refuses min = max): it gets
 *   an even/odd pair from the allocator and binds the first free port of it.
 * - werift allocates several objects per packet (SRTP, parsing); that, not the relay, bounds how
 *   many WebRTC calls a core anchors. Measure before promising 250.
 */
import sdpTransform, { type MediaDescription, type SessionDescription } from 'sdp-transform';
import { RTCPeerConnection, RTCRtpCodecParameters, RtpPacket, type MediaStreamTrack, type RTCRtpTransceiver } from 'werift';
import { newCounters, type MediaDirection, type MediaPort, type RelayCodec } from './relay.js';

/** The codecs we offer to a browser, by their usual (static or common dynamic) payload types. */
export const WEBRTC_CODECS: readonly { codec: RelayCodec; payloadType: number }[] = [
  { codec: 'PCMU', payloadType: 0 },
  { codec: 'PCMA', payloadType: 8 },
  { codec: 'telephone-event', payloadType: 101 },
];

function codecParameters(codec: RelayCodec, payloadType: number): RTCRtpCodecParameters {
  return new RTCRtpCodecParameters({
    mimeType: `audio/${codec}`,
    clockRate: 8000,
    channels: 1,
    payloadType,
    ...(codec === 'telephone-event' ? { parameters: '0-16' } : {}),
  });
}

export interface WebRtcPortOptions {
  /** The local address to bind (an interface of this host). */
  bindAddress: string;
  /** The address browsers reach us at, put in our ICE candidate (a 1:1 NAT maps it to bindAddress). */
  publicAddress: string;
  /** Two consecutive ports reserved for this port (see the note on icePortRange above). */
  portPair: number;
  /** The codecs to offer or accept, in order of preference (default WEBRTC_CODECS). */
  codecs?: readonly { codec: RelayCodec; payloadType: number }[];
}

/** How long gathering our own (host) candidates may take; it is local, so a few seconds is a fault. */
const GATHERING_TIMEOUT_MS = 5000;

export class WebRtcPort implements MediaPort {
  onRtp: ((packet: Buffer) => void) | undefined;
  onRtcp: ((packet: Buffer) => void) | undefined;
  readonly counters = newCounters();
  private readonly pc: RTCPeerConnection;
  private transceiver: RTCRtpTransceiver | undefined;
  private readonly subscribedTracks = new WeakSet<object>();
  private closed = false;
  /** The browser's last offer as it came, and which of its m-lines we anchor. */
  private lastOffer: { original: SessionDescription; keptIndex: number } | undefined;

  constructor(private readonly options: WebRtcPortOptions) {
    const codecs = options.codecs ?? WEBRTC_CODECS;
    this.pc = new RTCPeerConnection({
      iceLite: true,
      iceUseIpv6: options.bindAddress.includes(':'),
      iceUseIpv4: !options.bindAddress.includes(':'),
      icePortRange: [options.portPair, options.portPair + 1],
      iceInterfaceAddresses: options.bindAddress.includes(':') ? { udp6: options.bindAddress } : { udp4: options.bindAddress },
      iceAdditionalHostAddresses: [options.bindAddress],
      codecs: { audio: codecs.map(({ codec, payloadType }) => codecParameters(codec, payloadType)), video: [] },
      headerExtensions: { audio: [], video: [] },
      bundlePolicy: 'max-bundle',
    });
    this.pc.onTrack.subscribe((track) => this.listen(track));
  }

  private listen(track: MediaStreamTrack): void {
    if (this.subscribedTracks.has(track)) return;
    this.subscribedTracks.add(track);
    track.onReceiveRtp.subscribe((rtp) => {
      // werift hands a parsed packet; the relay wants the wire form (one more allocation, see above).
      const packet = rtp.serialize();
      this.counters.packetsIn++;
      this.counters.bytesIn += packet.length;
      this.onRtp?.(packet);
    });
  }

  /** The browser offers: applies its offer (refused m-lines are marked in our answer later). */
  async acceptOffer(sdp: string): Promise<void> {
    // werift fails a whole negotiation over an m-line it has no codec for (video, say), and does
    // not reject m-lines itself: it sees the audio alone, and createAnswer puts the others back refused.
    const { offer, original, keptIndex } = audioOnly(sdp);
    this.lastOffer = { original, keptIndex };
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer });
    this.transceiver = this.pc.getTransceivers().find((t) => t.kind === 'audio') ?? this.transceiver;
    if (!this.transceiver) throw new Error('the WebRTC offer has no audio');
  }

  /** Our answer to the browser's offer; `direction` is the media direction we (the far side) want. */
  async createAnswer(direction: MediaDirection): Promise<string> {
    this.transceiver!.setDirection(direction);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    const answer = await this.finishLocalDescription();
    return this.lastOffer ? withRefusedMedia(answer, this.lastOffer.original, this.lastOffer.keptIndex) : answer;
  }

  /** Our offer to a browser (first offer or re-offer). */
  async createOffer(direction: MediaDirection): Promise<string> {
    if (!this.transceiver) this.transceiver = this.pc.addTransceiver('audio', { direction });
    else this.transceiver.setDirection(direction);
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return this.finishLocalDescription();
  }

  /** The browser answers our offer. */
  async acceptAnswer(sdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
  }

  /** Forgets an offer not answered (ours or the browser's): the negotiated session stands. */
  async rollback(): Promise<void> {
    try {
      if (this.pc.signalingState === 'have-remote-offer') await this.pc.setRemoteDescription({ type: 'rollback', sdp: '' });
      else if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
    } catch {
      // werift could not roll back: the next offer renegotiates from where it is.
    }
  }

  /** Waits for our candidates, then returns our description with only the public one. */
  private async finishLocalDescription(): Promise<string> {
    if (this.pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('ICE gathering did not complete')), GATHERING_TIMEOUT_MS);
        const { unSubscribe } = this.pc.iceGatheringStateChange.subscribe((state) => {
          if (state !== 'complete') return;
          clearTimeout(timer);
          unSubscribe();
          resolve();
        });
      });
    }
    const local = this.pc.localDescription;
    if (!local) throw new Error('werift produced no local description');
    const sdp = publicCandidatesOnly(local.sdp, this.options.bindAddress, this.options.publicAddress);
    if (!sdpTransform.parse(sdp).media.some((media) => media.port !== 0 && (media.candidates ?? []).length > 0)) {
      // werift could not bind its port, or found no interface with our address: a browser could not reach us.
      throw new Error(`no ICE candidate on ${this.options.bindAddress} (ports ${this.options.portPair}-${this.options.portPair + 1})`);
    }
    return sdp;
  }

  sendRtp(packet: Buffer): void {
    const transceiver = this.transceiver;
    if (this.closed || !transceiver) return;
    const dtls = transceiver.sender.dtlsTransport;
    if (!dtls || dtls.state !== 'connected') return;
    const rtp = RtpPacket.deSerialize(packet);
    rtp.header.ssrc = transceiver.sender.ssrc;
    rtp.header.extension = false;
    rtp.header.extensions = [];
    this.counters.packetsOut++;
    this.counters.bytesOut += packet.length;
    void dtls.sendRtp(rtp.payload, rtp.header).catch(() => undefined);
  }

  sendRtcp(): void {
    // Terminated here: werift reports on its own SSRCs (see the module comment).
  }

  /** 'connected' once ICE and DTLS are up. */
  get connectionState(): string {
    return this.pc.connectionState;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onRtp = undefined;
    await this.pc.close();
  }
}

/**
 * Keeps, in every m-line, only the host candidates on `bindAddress` or `publicAddress`, rewritten
 * to `publicAddress`; werift also gathers on other interfaces, which a browser must not try.
 */
export function publicCandidatesOnly(sdp: string, bindAddress: string, publicAddress: string): string {
  const session = sdpTransform.parse(sdp);
  for (const media of session.media) {
    // werift writes a=ice-lite per m-line; RFC 8839 5.3 puts it at the session level.
    // (sdp-transform parses it at either level, but types it only at the session's.)
    const mediaLevel = media as { icelite?: 'ice-lite' };
    if (mediaLevel.icelite) {
      session.icelite = mediaLevel.icelite;
      delete mediaLevel.icelite;
    }
    const kept = (media.candidates ?? []).filter(
      (candidate) => candidate.transport.toLowerCase() === 'udp' && (candidate.ip === bindAddress || candidate.ip === publicAddress),
    );
    media.candidates = kept.map((candidate) => ({ ...candidate, ip: publicAddress }));
    if (media.port !== 0 && kept[0]) {
      media.port = kept[0].port;
      media.connection = { version: publicAddress.includes(':') ? 6 : 4, ip: publicAddress };
    }
  }
  return sdpTransform.write(session);
}

/**
 * The offer with only its first audio m-line (with a port), the BUNDLE group reduced to it; the
 * offer as it came; and that m-line's index. Throws when there is no such audio.
 */
export function audioOnly(sdp: string): { offer: string; original: SessionDescription; keptIndex: number } {
  const original = sdpTransform.parse(sdp);
  const keptIndex = original.media.findIndex((media) => media.type === 'audio' && media.port !== 0);
  if (keptIndex < 0) throw new Error('the WebRTC offer has no audio');
  const kept = original.media[keptIndex]!;
  const keptMid = kept.mid === undefined ? undefined : String(kept.mid);
  const reduced: SessionDescription = {
    ...original,
    media: [kept],
    groups: (original.groups ?? [])
      .map((group) => ({ ...group, mids: String(group.mids).split(' ').filter((mid) => mid === keptMid).join(' ') }))
      .filter((group) => group.mids !== ''),
  };
  return { offer: sdpTransform.write(reduced), original, keptIndex };
}

/**
 * werift's answer to the audio-only offer, with the offer's other m-lines put back in their
 * places refused: port 0, no candidates, and out of the BUNDLE group (RFC 8843 7.3.3).
 */
export function withRefusedMedia(answer: string, original: SessionDescription, keptIndex: number): string {
  const session = sdpTransform.parse(answer);
  const audio = session.media[0];
  if (!audio || original.media.length === 1) return answer;
  session.media = original.media.map((media, index): MediaDescription =>
    index === keptIndex
      ? audio
      : {
          type: media.type,
          port: 0,
          protocol: media.protocol,
          // The offer's formats, described as offered (RFC 3264 6: a refused stream still lists one).
          payloads: String(media.payloads ?? ''),
          rtp: media.rtp,
          fmtp: media.fmtp,
          ...(media.mid === undefined ? {} : { mid: media.mid }),
          direction: 'inactive',
          // Not needed for a rejected m-line, but some stacks (aiortc) check every m-line for them (and rtcp-mux).
          ...credentialsOf(audio),
        },
  );
  return sdpTransform.write(session);
}

function credentialsOf(media: MediaDescription): Partial<MediaDescription> {
  const { iceUfrag, icePwd, fingerprint, setup, rtcpMux } = media;
  return {
    ...(rtcpMux === undefined ? {} : { rtcpMux }),
    ...(iceUfrag === undefined ? {} : { iceUfrag }),
    ...(icePwd === undefined ? {} : { icePwd }),
    ...(fingerprint === undefined ? {} : { fingerprint }),
    ...(setup === undefined ? {} : { setup }),
  };
}
