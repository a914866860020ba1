/**
 * Voice activity detection per 20 ms frame, for the mixers' started-speaking / stopped-speaking
 * events (Rayo's `<started-speaking/>` and `<stopped-speaking/>`) and the recorder's silence
 * timeouts.
 *
 * An energy detector with an adaptive noise floor, the classic scheme of telephone VADs
 * (ITU-T G.729 Annex B and the ETSI AMR VAD use richer features; for "who is talking in a
 * conference" energy against the line's own noise is what matters): a frame is active when its
 * level is a margin (12 dB) above the noise floor and above an absolute minimum (−55 dBm0). The
 * floor follows the quieter frames quickly and creeps up slowly otherwise (so steady noise —
 * a fan, a hum — is learnt, while speech is not); a level that stays within ±3 dB for two
 * seconds is taken for noise at once (speech rises and falls with its syllables by far more; a
 * step in the line's noise is learnt in two seconds, not twenty). Speech starts after a few active
 * frames in a row (onset, 40 ms) and stops after a hangover of inactive frames (400 ms), so the
 * pauses between words do not make events. No allocation per frame.
 */

export type VadTransition = 'started' | 'stopped';

export interface VadOptions {
  /** How far above the noise floor a frame must be to count as voice, in dB; 12 unless given. */
  marginDb?: number;
  /** The quietest level that can be voice, in dB relative to full-scale sine power (≈ dBm0 − 3); −58 unless given. */
  minLevelDb?: number;
  /** Consecutive active frames before speech starts; 2 unless given. */
  onsetFrames?: number;
  /** Consecutive inactive frames before speech stops; 20 (400 ms of 20 ms frames) unless given. */
  hangoverFrames?: number;
  /** How fast the floor rises while the level is above it, in dB a frame; 0.02 (1 dB a second) unless given. */
  riseDbPerFrame?: number;
}

/** The mean square of a full-scale sine (peak 32767): the 0 dB reference of the levels. */
const FULL_SCALE_POWER = (32767 * 32767) / 2;

/** How steady a level must stay, and how long (frames), to be taken for noise whatever its height. */
const STABLE_DB = 3;
const STABLE_FRAMES = 100;

/** The loudest level the first frame heard may have to be taken for the line's noise (speech is louder). */
const FIRST_FLOOR_MAX_DB = -40;

/** Level in dB of a mean square. */
function levelDb(meanSquare: number): number {
  return 10 * Math.log10(meanSquare / FULL_SCALE_POWER + 1e-12);
}

export class VoiceActivityDetector {
  private readonly margin: number;
  private readonly minLevel: number;
  private readonly onset: number;
  private readonly hangover: number;
  private readonly rise: number;
  /** The noise floor, in dB; starts low and finds the line's level within the first frames. */
  private floor: number;
  private floorKnown = false;
  private active = 0;
  private inactive = 0;
  private talking = false;
  private lastLevel = -120;
  /** The level a stationary stretch started at, and how many frames it has stayed within STABLE_DB of it. */
  private stableLevel = -120;
  private stableFrames = 0;

  constructor(options: VadOptions = {}) {
    this.margin = options.marginDb ?? 12;
    this.minLevel = options.minLevelDb ?? -58;
    this.onset = Math.max(1, options.onsetFrames ?? 2);
    this.hangover = Math.max(1, options.hangoverFrames ?? 20);
    this.rise = options.riseDbPerFrame ?? 0.02;
    this.floor = this.minLevel - this.margin;
  }

  /** Whether speech is going on (between a 'started' and a 'stopped'). */
  get speaking(): boolean {
    return this.talking;
  }

  /** The last frame's level and the noise floor, in dB (for diagnostics and tests). */
  get level(): number {
    return this.lastLevel;
  }
  get noiseFloor(): number {
    return this.floor;
  }

  /** Takes the next frame; returns 'started' or 'stopped' when speech begins or ends with it. */
  process(frame: Int16Array): VadTransition | undefined {
    let sum = 0;
    for (let i = 0; i < frame.length; i++) sum += frame[i]! * frame[i]!;
    return this.processLevel(frame.length ? levelDb(sum / frame.length) : -120);
  }

  /** As `process`, for a frame that is missing (late or lost): silence. */
  processSilence(): VadTransition | undefined {
    return this.processLevel(-120);
  }

  private processLevel(level: number): VadTransition | undefined {
    this.lastLevel = level;
    if (Math.abs(level - this.stableLevel) <= STABLE_DB) {
      if (++this.stableFrames >= STABLE_FRAMES && level > -100) this.floor = Math.max(this.floor, this.stableLevel - STABLE_DB);
    } else {
      this.stableLevel = level;
      this.stableFrames = 0;
    }
    const voice = level >= this.minLevel && level >= this.floor + this.margin;
    // The floor: down at once to a quieter frame, up slowly otherwise (not at all for digital silence).
    if (level > -100) {
      // The first frame heard sets the floor only when it could be line noise (not above
      // FIRST_FLOOR_MAX_DB): a call whose first sound is speech (after digital silence, say) must
      // not learn that speech as its floor.
      if ((!this.floorKnown && level <= FIRST_FLOOR_MAX_DB) || level < this.floor) {
        this.floor = this.floorKnown ? (this.floor + level) / 2 : level;
        this.floorKnown = true;
      } else this.floor += this.rise;
    }
    if (voice) {
      this.inactive = 0;
      if (!this.talking && ++this.active >= this.onset) {
        this.talking = true;
        return 'started';
      }
    } else {
      this.active = 0;
      if (this.talking && ++this.inactive >= this.hangover) {
        this.talking = false;
        this.inactive = 0;
        return 'stopped';
      }
    }
    return undefined;
  }
}
