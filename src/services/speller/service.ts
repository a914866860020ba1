/**
 * spellerList and spellerCheck, protocol-independent. The checking runs in one worker
 * thread per process (worker.ts), started on first use and kept (unreferenced: it never
 * holds the process up); dictionaries load there lazily, once. Requests from every session
 * queue for it one at a time; at most `pending` may wait, the next is refused, so that a
 * flood of texts holds bounded memory. A text is refused past its byte and word limits
 * before any word is checked; only the first `guessWords` distinct misspelled words of a
 * text get guesses, and only within `guessSeconds` (the costly part: nspell tries the edits
 * of a word against the dictionary), the others are reported with none.
 */
import type { Worker } from 'node:worker_threads';
import type { Logger } from '../../log.js';
import { ServiceError } from '../errors.js';
import { findSpeller, SPELLERS, type CheckLimits, type SpellerDefinition, type SpellerReport } from './checker.js';
import { moduleWorker } from '../workers.js';

export interface SpellJob {
  id: number;
  /** The speller's name (SPELLERS). */
  speller: string;
  text: string;
  glyphs: boolean;
  limits: CheckLimits;
}

export type SpellReply =
  | { id: number; reports: SpellerReport[]; checkMs: number; loadMs?: number }
  | { id: number; tooManyWords: number }
  | { id: number; error: string };

export interface SpellerLimits {
  /** UTF-8 bytes of one text. */
  textBytes: number;
  /** Words of one text. */
  words: number;
  /** Distinct misspelled words of one text that get guesses, and the time their search may take. */
  guessWords: number;
  guessSeconds: number;
  /** Texts waiting for the checker, server-wide (the one being checked included). */
  pending: number;
}

/** The worker's heap: the Russian dictionary takes about 200 MB in nspell's form. */
const WORKER_HEAP_MB = 1024;

export class SpellerService {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, { resolve: (reply: SpellReply) => void; reject: (err: Error) => void }>();
  private nextId = 0;

  constructor(private readonly log: Logger) {}

  /** The names spellerList shows. */
  list(): string[] {
    return SPELLERS.map((s) => s.name);
  }

  /** The speller a request names; absent, the one of the session's language, else the first. */
  resolve(name: string | undefined, language: string | undefined): SpellerDefinition {
    if (name === undefined || name.trim() === '') return (language !== undefined ? findSpeller(language) : undefined) ?? SPELLERS[0]!;
    const speller = findSpeller(name);
    if (!speller) throw new ServiceError(`unknown speller ${JSON.stringify(name.slice(0, 64))} (known: ${SPELLERS.map((s) => s.name).join(', ')})`);
    return speller;
  }

  /** The misspelled words of `text` (positions in bytes, or in characters with `glyphs`). */
  async check(speller: SpellerDefinition, text: string, glyphs: boolean, limits: SpellerLimits): Promise<SpellerReport[]> {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > limits.textBytes) throw new ServiceError(`the text is too large (${bytes} bytes; at most ${limits.textBytes})`);
    if (this.waiting.size >= limits.pending) {
      this.log.warn({ event: 'speller.busy', pending: this.waiting.size }, 'a spellerCheck was refused: too many texts waiting');
      throw new ServiceError('the spell checker is busy; try again later');
    }
    const reply = await this.run({ id: ++this.nextId, speller: speller.name, text, glyphs, limits: { maxWords: limits.words, guessWords: limits.guessWords, guessMs: limits.guessSeconds * 1000 } });
    if ('tooManyWords' in reply) throw new ServiceError(`the text has too many words (at most ${reply.tooManyWords})`);
    if ('error' in reply) {
      this.log.error({ event: 'speller.failed', speller: speller.name, error: reply.error }, 'spell checking failed');
      throw new ServiceError('spell checking failed');
    }
    if (reply.loadMs !== undefined) this.log.info({ event: 'speller.loaded', speller: speller.name, ms: reply.loadMs }, 'spelling dictionary loaded');
    return reply.reports;
  }

  private run(job: SpellJob): Promise<SpellReply> {
    const worker = this.start();
    return new Promise((resolve, reject) => {
      // Referenced while it has work, so that a text being checked keeps the process up.
      if (this.waiting.size === 0) worker.ref();
      this.waiting.set(job.id, { resolve, reject });
      worker.postMessage(job);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = moduleWorker(import.meta.url, 'worker', WORKER_HEAP_MB);
    worker.on('message', (reply: SpellReply) => {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      waiter.resolve(reply);
    });
    const lost = (err: Error): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      if (this.waiting.size > 0) this.log.error({ event: 'speller.worker_lost', pending: this.waiting.size, err }, 'the spell checking thread stopped');
      for (const waiter of this.waiting.values()) waiter.reject(new ServiceError('spell checking failed'));
      this.waiting.clear();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the spell checking thread stopped (exit code ${code})`)));
    // Idle, it never holds the process up; after the listeners (adding a 'message' one refs the port again).
    worker.unref();
    this.worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}

let shared: SpellerService | undefined;

/** The process's speller: one worker and one copy of each dictionary however many servers run in it. */
export function processSpeller(log: Logger): SpellerService {
  shared ??= new SpellerService(log.child({ component: 'speller' }));
  return shared;
}
