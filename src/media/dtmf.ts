/**
 * DTMF in both of the forms a call carries it: RFC 4733 telephone-event payloads (what WebRTC
 * browsers and most SIP phones send), and tones in the audio itself, found with the Goertzel
 * algorithm (for phones that send only in-band tones, and for end-to-end tests of the audio path).
 */

/** The DTMF digits in the order of their RFC 4733 event codes, 0 to 15. */
export const DTMF_DIGITS = '0123456789*#ABCD';

/** The length of a telephone-event payload (RFC 4733 2.3): one event per packet, as senders do. */
export const TELEPHONE_EVENT_LENGTH = 4;

export interface TelephoneEvent {
  /** The event code, 0 to 255; 0 to 15 are the DTMF digits. */
  event: number;
  /** Set when the event has ended; its last packets carry the final duration. */
  end: boolean;
  /** The power level below 0 dBm0, 0 to 63 (larger is quieter). */
  volume: number;
  /** How long the event has lasted so far, in timestamp units (8000 a second for 8 kHz audio). */
  duration: number;
}

/** The digit of a DTMF event code, or `undefined` for the other events (flash, line tones). */
export function digitOfEvent(event: number): string | undefined {
  return Number.isInteger(event) && event >= 0 && event < DTMF_DIGITS.length ? DTMF_DIGITS[event] : undefined;
}

/** The event code of a digit ('0'–'9', '*', '#', 'A'–'D', letters in either case), or `undefined`. */
export function eventOfDigit(digit: string): number | undefined {
  const event = digit.length === 1 ? DTMF_DIGITS.indexOf(digit.toUpperCase()) : -1;
  return event < 0 ? undefined : event;
}

/**
 * Reads a telephone-event payload (RFC 4733 2.3): the event, then the end bit, a reserved bit
 * (ignored, as receivers must) and six bits of volume, then 16 bits of duration. Returns
 * `undefined` when the payload is too short. Only the first event is read: senders put one per packet.
 */
export function parseTelephoneEvent(payload: Uint8Array): TelephoneEvent | undefined {
  if (payload.length < TELEPHONE_EVENT_LENGTH) return undefined;
  const flags = payload[1]!;
  return {
    event: payload[0]!,
    end: (flags & 0x80) !== 0,
    volume: flags & 0x3f,
    duration: (payload[2]! << 8) | payload[3]!,
  };
}

/**
 * Writes a telephone-event payload into `target` at `offset` and returns the offset after it.
 * Throws on a field out of range (a programming error: the values are ours).
 */
export function writeTelephoneEvent(target: Uint8Array, event: TelephoneEvent, offset = 0): number {
  checkField('event', event.event, 0xff);
  checkField('volume', event.volume, 0x3f);
  checkField('duration', event.duration, 0xffff);
  if (offset < 0 || offset + TELEPHONE_EVENT_LENGTH > target.length) {
    throw new RangeError('the telephone event does not fit in the buffer');
  }
  target[offset] = event.event;
  target[offset + 1] = (event.end ? 0x80 : 0) | event.volume;
  target[offset + 2] = event.duration >> 8;
  target[offset + 3] = event.duration & 0xff;
  return offset + TELEPHONE_EVENT_LENGTH;
}

/** A new telephone-event payload. */
export function buildTelephoneEvent(event: TelephoneEvent): Uint8Array {
  const payload = new Uint8Array(TELEPHONE_EVENT_LENGTH);
  writeTelephoneEvent(payload, event);
  return payload;
}

function checkField(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`telephone event ${name} out of range: ${value}`);
  }
}

/** The keypad's row frequencies (low group) and column frequencies (high group), in Hz. */
export const ROW_FREQUENCIES = [697, 770, 852, 941] as const;
export const COLUMN_FREQUENCIES = [1209, 1336, 1477, 1633] as const;
/** The digits by row, then column: a digit is one row tone plus one column tone. */
export const KEYPAD = ['123A', '456B', '789C', '*0#D'] as const;

/**
 * The share of the block's energy each of the two tones must hold at least. Two equal tones
 * hold half each; this leaves room for a twist of about 6 dB between them (Q.24 asks receivers
 * to accept 4 to 8 dB) and for the leakage of a short block.
 */
const MIN_TONE_SHARE = 0.15;
/** The share both tones together must hold: speech, music and noise spread their energy wider. */
const MIN_PAIR_SHARE = 0.7;
/** The mean square below which a block is silence (an RMS of 100 is about -50 dBFS). */
const MIN_MEAN_SQUARE = 100 * 100;
/** The shortest block that separates neighbouring tones (about 73 Hz apart) well enough at 8 kHz. */
export const DTMF_MIN_SAMPLES = 100;

/** The Goertzel coefficients of the eight frequencies, per sample rate (the rate is nearly always 8000). */
const coefficientCache = new Map<number, Float64Array>();

/** The Goertzel coefficient of `frequency` at `sampleRate`: 2·cos(2πf/fs). */
export function goertzelCoefficient(frequency: number, sampleRate: number): number {
  return 2 * Math.cos((2 * Math.PI * frequency) / sampleRate);
}

function coefficientsFor(sampleRate: number): Float64Array {
  let coefficients = coefficientCache.get(sampleRate);
  if (!coefficients) {
    coefficients = Float64Array.from([...ROW_FREQUENCIES, ...COLUMN_FREQUENCIES], (frequency) =>
      goertzelCoefficient(frequency, sampleRate),
    );
    coefficientCache.set(sampleRate, coefficients);
  }
  return coefficients;
}

/**
 * The power of `samples` at the frequency whose coefficient is `coefficient` (the Goertzel
 * recurrence, evaluated at the exact frequency rather than a DFT bin), scaled so that a pure
 * tone at that frequency gives the block's whole energy.
 */
export function goertzelEnergy(samples: Int16Array, coefficient: number): number {
  let previous = 0;
  let beforePrevious = 0;
  for (let i = 0; i < samples.length; i++) {
    const current = samples[i]! + coefficient * previous - beforePrevious;
    beforePrevious = previous;
    previous = current;
  }
  const power = previous * previous + beforePrevious * beforePrevious - coefficient * previous * beforePrevious;
  // |X|² of a tone of amplitude a over n samples is about (n·a/2)², its energy n·a²/2.
  return (2 * power) / samples.length;
}

/**
 * The DTMF digit present in a block of 16-bit linear samples, or `undefined` when there is none:
 * the strongest row tone and the strongest column tone must each hold a good share of the
 * block's energy and together nearly all of it. Blocks of 205 samples (25.6 ms at 8 kHz) are the
 * classic choice; fewer than DTMF_MIN_SAMPLES give `undefined`. One block is one decision: the
 * caller debounces (a digit is a run of blocks with the same answer, ended by a block without).
 */
export function detectDtmf(samples: Int16Array, sampleRate = 8000): string | undefined {
  if (samples.length < DTMF_MIN_SAMPLES) return undefined;
  let energy = 0;
  for (let i = 0; i < samples.length; i++) energy += samples[i]! * samples[i]!;
  if (energy < MIN_MEAN_SQUARE * samples.length) return undefined;
  const coefficients = coefficientsFor(sampleRate);
  const row = strongest(samples, coefficients, 0);
  const column = strongest(samples, coefficients, ROW_FREQUENCIES.length);
  const rowShare = row.energy / energy;
  const columnShare = column.energy / energy;
  if (rowShare < MIN_TONE_SHARE || columnShare < MIN_TONE_SHARE || rowShare + columnShare < MIN_PAIR_SHARE) {
    return undefined;
  }
  return KEYPAD[row.index]![column.index];
}

/** The strongest of the four frequencies from `first` on, by index within the group and energy. */
function strongest(samples: Int16Array, coefficients: Float64Array, first: number): { index: number; energy: number } {
  let best = { index: 0, energy: -1 };
  for (let index = 0; index < 4; index++) {
    const energy = goertzelEnergy(samples, coefficients[first + index]!);
    if (energy > best.energy) best = { index, energy };
  }
  return best;
}
