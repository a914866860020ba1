import { DtmfDetector } from '../../media/dtmf-detector.js';
import type { AudioSource, PlayResult } from '../../media/endpoint.js';
import { SessionLimitError } from '../../media/ports.js';
import type { Port, PortAddress } from './router.js';
import type { Party, Signal } from './signal.js';

/** The media of a call the server takes part in: its own end of the call's RTP (src/media/endpoint.ts). */
export interface PartyMedia {
  /** Our answer to the other party's offer. */
  answer(offerSdp: string): Promise<string>;
  /** An offer of ours (a call we place). */
  offer(): Promise<string>;
  /** The other party's answer to our offer. */
  accept(answerSdp: string): Promise<void>;
  /** Each DTMF key the other party presses as an RFC 4733 event, once. */
  onDigit(listener: (digit: string) => void): () => void;
  /** Each 20 ms frame of the other party's audio (8 kHz linear). */
  onAudio(listener: (frame: Int16Array) => void): () => void;
  /** Whether RFC 4733 events were negotiated (else keys come as tones in the audio). */
  readonly telephoneEvents: boolean;
  /** Plays frames to the other party, replacing what played. */
  play(source: AudioSource): Promise<PlayResult>;
  stop(): void;
  close(): Promise<void>;
}

/** How a call of the server's ended (the reasons Rayo's `end` event names). */
export type PartyEndReason = 'hungup' | 'hangup-command' | 'timeout' | 'busy' | 'rejected' | 'error';

/** What the call tells whoever drives it (Rayo turns it into presence for the controlling parties; an application's task hears it). */
export interface MediaPartyEvents {
  ringing(call: MediaParty): void;
  /** A call we placed was answered (with the extension headers of the answer, when any). */
  answered(call: MediaParty, headers?: [string, string][]): void;
  /** The call is over (the service forgets it and tells whoever was offered it or controls it). */
  ended(call: MediaParty, reason: PartyEndReason, code?: number, headers?: [string, string][]): void;
}

export type MediaPartyState = 'offered' | 'accepted' | 'answering' | 'dialing' | 'ringing' | 'answered' | 'ended';

/**
 * A call the server itself takes part in, as a leg of the call engine: its media ends in a
 * MediaEndpoint, and someone else decides what happens — a Rayo client (src/transports/xmpp/rayo/)
 * or a real-time application's task (src/services/apps/). An incoming call waits to be accepted
 * or answered; a call placed (dial) is one whose caller is this leg. Commands become signals
 * here, and signals become the events its driver hears (ringing, answered, ended).
 */
export class MediaParty implements Port {
  readonly address: PortAddress;
  state: MediaPartyState;
  /** Who drives the call from its accept, answer or dial: a Rayo client's full JID, a task's handle. */
  controller: string | undefined;
  /** The other side of the call (the call engine's port). */
  private peer: PortAddress | undefined;
  /** The offer of an incoming call (none: ours goes in the answer, theirs comes in the ack). */
  private readonly offerSdp: string | undefined;
  private readonly tag: string;
  private media: PartyMedia | undefined;
  /** Who hears the keys the other party presses (components), and their media subscriptions. */
  private readonly digitListeners = new Set<(digit: string) => void>();
  /** The media's RFC 4733 events, heard once for the call. */
  private mediaDigits: (() => void) | undefined;
  private stopInBand: (() => void) | undefined;
  /** What plays when no component does, and how many component plays are under way. */
  private background: AudioSource | undefined;
  private componentPlays = 0;
  /** Who hears the frames the server plays (recordings). */
  private readonly sentListeners = new Set<(frame: Int16Array) => void>();

  constructor(
    private readonly router: { open(port: Port): PortAddress; send(to: PortAddress, signal: Signal, from: PortAddress): void; release(address: PortAddress): void },
    readonly id: string,
    readonly accountId: number,
    /** The caller and the called, as the offer shows them (URIs). */
    readonly from: Party,
    readonly to: Party,
    private readonly openMedia: () => PartyMedia,
    private readonly events: MediaPartyEvents,
    incoming?: { peer: PortAddress; sdp: string | undefined },
  ) {
    this.address = router.open(this);
    this.tag = id;
    if (incoming) {
      this.state = 'offered';
      this.peer = incoming.peer;
      this.offerSdp = incoming.sdp;
      this.signal({ kind: 'trying' });
    } else {
      this.state = 'dialing';
      this.offerSdp = undefined;
    }
  }

  get ended(): boolean {
    return this.state === 'ended';
  }

  /**
   * Each key the other party presses, once: in the media (RFC 4733 events or in-band tones, heard
   * by the media endpoint) or signaled (XIMSS callSendDTMF, SIP INFO). Returns the unsubscriber.
   */
  onDigit(listener: (digit: string) => void): () => void {
    this.digitListeners.add(listener);
    this.attachDigits();
    return () => {
      this.digitListeners.delete(listener);
      if (this.digitListeners.size === 0) this.stopInBand?.();
    };
  }

  /** Each key to every listener, over a copy (a listener may leave, or another join, on a key). */
  private digit(digit: string): void {
    for (const listener of [...this.digitListeners]) listener(digit);
  }

  /** Hears the media's RFC 4733 events once for the call, and in-band keys while someone listens. */
  private attachDigits(): void {
    if (!this.media) return;
    this.mediaDigits ??= this.media.onDigit((digit) => this.digit(digit));
    if (this.digitListeners.size > 0) this.listenInBand();
  }

  /**
   * Keys in the audio itself, for a party that did not take RFC 4733 events (as Asterisk does,
   * in-band detection runs only then: a phone that sends both would be heard twice). Runs while
   * someone listens for keys.
   */
  private listenInBand(): void {
    const media = this.media;
    if (!media || media.telephoneEvents || this.stopInBand) return;
    const detector = new DtmfDetector();
    const off = media.onAudio((frame) => {
      const digit = detector.push(frame);
      if (digit !== undefined) this.digit(digit);
    });
    this.stopInBand = () => {
      off();
      this.stopInBand = undefined;
    };
  }

  /**
   * Plays to the other party (components), over what it hears otherwise (a join's audio, which
   * comes back when the last component's play ends); 'stopped' when the call has no media.
   * Recorders hear each frame (onSent).
   */
  play(source: AudioSource): Promise<PlayResult> {
    const media = this.answeredMedia;
    if (!media) return Promise.resolve('stopped');
    this.componentPlays++;
    return media.play(this.heard(source)).then((result) => {
      this.componentPlays--;
      if (this.componentPlays === 0 && this.background && !this.ended) void media.play(this.heard(this.background));
      return result;
    });
  }

  /** A source whose frames the recorders of what the other party hears get too. */
  private heard(source: AudioSource): AudioSource {
    const listeners = this.sentListeners;
    return {
      next: () => {
        const frame = source.next();
        if (frame !== undefined) for (const listener of listeners) listener(frame);
        return frame;
      },
    };
  }

  /** Each frame the server plays to the other party (record components of direction recv or duplex). */
  onSent(listener: (frame: Int16Array) => void): () => void {
    this.sentListeners.add(listener);
    return () => this.sentListeners.delete(listener);
  }

  stopPlaying(): void {
    this.media?.stop();
  }

  /** What the other party hears when no component plays (a join or mixer's audio; undefined: silence). */
  setBackground(source: AudioSource | undefined): void {
    this.background = source;
    const media = this.answeredMedia;
    if (!media || this.componentPlays > 0) return;
    if (source) void media.play(this.heard(source));
    else media.stop();
  }

  /** Each 20 ms frame of the other party's audio (joins and mixers hear it). */
  onAudio(listener: (frame: Int16Array) => void): () => void {
    return this.answeredMedia?.onAudio(listener) ?? (() => {});
  }

  /** The call's media once it is answered (what components play into and hear). */
  get answeredMedia(): PartyMedia | undefined {
    return this.state === 'answered' ? this.media : undefined;
  }

  // --- commands (the service has checked who sends them) ---

  /** accept: the call rings at the caller's end (180). */
  accept(controller: string): void {
    this.controller = controller;
    if (this.state !== 'offered') return;
    this.state = 'accepted';
    this.signal({ kind: 'progress', tag: this.tag });
  }

  /**
   * answer: media answered, 200 to the caller. Resolves once the answer is sent; when the media
   * cannot be answered (no G.711 offered, the media session limit) the caller is refused (488 or
   * 503), the call ends (`error`) and the error is thrown for the command's reply.
   */
  async answer(controller: string, headers?: [string, string][]): Promise<void> {
    this.controller = controller;
    if (this.state !== 'offered' && this.state !== 'accepted') return;
    this.state = 'answering';
    try {
      const media = (this.media ??= this.openMedia());
      this.attachDigits();
      // A call without an offer: ours goes in the answer, the caller's answer comes in its ack.
      const sdp = this.offerSdp !== undefined ? await media.answer(this.offerSdp) : await media.offer();
      if (this.ended) return;
      this.state = 'answered';
      this.signal({ kind: 'answer', tag: this.tag, sdp, ...(this.offerSdp === undefined && { offer: true }), ...(headers && { headers }) });
    } catch (err) {
      if (!this.ended) {
        const limit = err instanceof SessionLimitError;
        this.signal({ kind: 'reject', code: limit ? 503 : 488, reason: limit ? 'no media session is free' : 'the media could not be answered' });
        this.finish('error', limit ? 503 : 488);
      }
      throw err;
    }
  }

  /** reject: the call is refused with the SIP code of the reason (and extension headers for the refusal). */
  reject(code: number, reason: string, headers?: [string, string][]): void {
    if (this.state !== 'offered' && this.state !== 'accepted') return;
    this.signal({ kind: 'reject', code, reason, ...(headers && { headers }) });
    this.finish('rejected', code);
  }

  /** redirect: the caller is sent to another address (302). */
  redirect(to: string): void {
    if (this.state !== 'offered' && this.state !== 'accepted') return;
    this.signal({ kind: 'redirect', targets: [to] });
    this.finish('hangup-command');
  }

  /** hangup: the call ends, whatever its state (with extension headers for the BYE or the refusal). */
  hangup(headers?: [string, string][]): void {
    if (this.ended) return;
    const extra = headers && { headers };
    if (this.state === 'answered') this.signal({ kind: 'bye', ...extra });
    else if (this.state === 'dialing' || this.state === 'ringing') this.signal({ kind: 'cancel', reason: 'hung up by the application', ...extra });
    else this.signal({ kind: 'reject', code: 480, reason: 'hung up by the application', ...extra });
    this.finish('hangup-command');
  }

  /** A text message to the other party within the call (SIP MESSAGE in its dialog; XIMSS callInfo). */
  message(text: string): void {
    if (this.state === 'answered') this.signal({ kind: 'info', contentType: 'text/plain', body: text, method: 'MESSAGE' });
  }

  /** A call we place: our offer, then the call engine's port where its signals go. */
  async dialOffer(): Promise<string> {
    this.media = this.openMedia();
    this.attachDigits();
    return this.media.offer();
  }

  /** The call placed by dial: where the call engine's side of it is. */
  dialed(peer: PortAddress): void {
    this.peer = peer;
  }

  /** No answer in time (dial's timeout). */
  timeout(): void {
    if (this.state !== 'dialing' && this.state !== 'ringing') return;
    this.signal({ kind: 'cancel', reason: 'no answer in time' });
    this.finish('timeout');
  }

  // --- signals from the other side ---

  receive(signal: Signal, from: PortAddress): void {
    if (this.ended) {
      if (signal.kind === 'answer') this.router.send(from, { kind: 'bye', reason: 'the call is over' }, this.address);
      return;
    }
    switch (signal.kind) {
      case 'trying':
        this.peer = from;
        return;
      case 'progress':
        this.peer = from;
        if (this.state === 'dialing') {
          this.state = 'ringing';
          this.events.ringing(this);
        }
        return;
      case 'answer':
        this.peer = from;
        if (this.state !== 'dialing' && this.state !== 'ringing') return;
        this.answered(signal.sdp, signal.offer === true, signal.headers).catch(() => this.failMedia());
        return;
      case 'reject':
        this.finish(endReasonOf(signal.code), signal.code, signal.headers);
        return;
      case 'cancel':
        this.finish(/time|answer/i.test(signal.reason ?? '') ? 'timeout' : 'hungup', undefined, signal.headers);
        return;
      case 'bye':
        this.finish('hungup', signal.code, signal.headers);
        return;
      case 'gone':
        this.finish('error');
        return;
      case 'ack':
        if (signal.sdp !== undefined && this.media) void this.media.accept(signal.sdp).catch(() => this.failMedia());
        return;
      case 'update':
        // Re-offers (hold, resume) are not taken yet: refused as SIP does with 488.
        this.signal({ kind: 'updated', tag: signal.tag, code: 488, reason: 'the media server does not take new offers' });
        return;
      case 'dtmf':
        for (const digit of signal.digits) this.digit(digit);
        if (signal.op) this.signal({ kind: 'result', op: signal.op });
        return;
      case 'info':
        if (signal.op) this.signal({ kind: 'result', op: signal.op, code: 501, reason: 'INFO is not taken by the media server' });
        return;
      default:
        return;
    }
  }

  private async answered(sdp: string | undefined, offer: boolean, headers: [string, string][] | undefined): Promise<void> {
    try {
      if (sdp === undefined) throw new Error('the answer has no SDP');
      if (offer) {
        const answer = await this.media!.answer(sdp);
        this.signal({ kind: 'ack', tag: this.tag, sdp: answer });
      } else await this.media!.accept(sdp);
    } catch {
      this.failMedia();
      return;
    }
    if (this.ended) return;
    this.state = 'answered';
    this.events.answered(this, headers);
  }

  private failMedia(): void {
    if (this.ended) return;
    if (this.state === 'answered') this.signal({ kind: 'bye', code: 488, reason: 'the media could not be set up' });
    else this.signal({ kind: 'cancel', reason: 'the media could not be set up' });
    this.finish('error');
  }

  private signal(signal: Signal): void {
    if (this.peer) this.router.send(this.peer, signal, this.address);
  }

  private finish(reason: PartyEndReason, code?: number, headers?: [string, string][]): void {
    if (this.ended) return;
    this.state = 'ended';
    this.router.release(this.address);
    void this.media?.close().catch(() => {});
    this.events.ended(this, reason, code, headers);
  }
}

/** The end reason of a refusal (a SIP status code). */
function endReasonOf(code: number): PartyEndReason {
  if (code === 486 || code === 600) return 'busy';
  if (code === 408 || code === 480 || code === 487) return 'timeout';
  if (code === 603 || code === 403) return 'rejected';
  return 'error';
}
