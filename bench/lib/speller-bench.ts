/**
 * The `speller` bench area: spellerCheck throughput over XIMSS on a 10,000-word English text
 * with some misspellings, beside Debian's `hunspell` (packages hunspell and hunspell-en-us,
 * installed with apt-get when missing) checking the same text in its pipe mode (`-a`: a
 * verdict and guesses for every word, as spellerCheck gives), in one process kept running.
 *
 * Both get one warm-up pass (ximssd loads its dictionary in a worker on first use; hunspell
 * at start), then `runs` timed passes; the figure is the median words per second. ximssd runs
 * with its guess limits raised so that, like hunspell, it looks for guesses for every
 * misspelled word.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDebianPackages } from '../../test/fixtures/debian.js';
import { median } from './figures.js';
import { seededRandom } from '../../test/fixtures/random.js';
import { XimssClient } from './ximss-client.js';
import { PASSWORD, ROOT, USER, startXimssd } from './ximssd.js';

const HUNSPELL = '/usr/bin/hunspell';
const EN_US = '/usr/share/hunspell/en_US.dic';

export interface SpellerSide {
  /** Median words per second over the timed passes. */
  wordsPerSecond: number;
  /** Median milliseconds per pass. */
  ms: number;
  /** Misspelled words reported in the last pass. */
  misspelled: number;
  /** Of those, how many came with at least one guess. */
  withGuesses: number;
}

export type SpellerResult =
  | { available: false; reason: string }
  | { available: true; words: number; misspelt: number; ximssd: SpellerSide; hunspell?: SpellerSide & { version: string }; hunspellReason?: string };

/** A misspelling of `word`: two inner letters swapped, one dropped, or one doubled. */
function misspell(word: string, next: () => number): string {
  const at = 1 + Math.floor(next() * (word.length - 2));
  const kind = Math.floor(next() * 3);
  if (kind === 0 && word[at] !== word[at + 1]) return word.slice(0, at) + word[at + 1] + word[at] + word.slice(at + 2);
  if (kind === 1) return word.slice(0, at) + word.slice(at + 1);
  return word.slice(0, at) + word[at] + word.slice(at);
}

/**
 * `words` words of English (stems of the dictionary-en word list, the one ximssd uses), in
 * sentences and lines of 100 words; every `every`-th word misspelt.
 */
export function spellerText(words: number, every: number): { lines: string[]; misspelt: number } {
  const dic = readFileSync(join(ROOT, 'node_modules', 'dictionary-en', 'index.dic'), 'utf8');
  const stems = dic
    .split('\n')
    .slice(1)
    .map((line) => line.split('/')[0]!)
    .filter((w) => /^[a-z]{3,10}$/.test(w));
  const next = seededRandom(17);
  const lines: string[] = [];
  let line: string[] = [];
  let misspelt = 0;
  let sentence = 0;
  for (let i = 0; i < words; i++) {
    let word = stems[Math.floor(next() * stems.length)]!;
    if (i % every === every - 1) {
      word = misspell(word, next);
      misspelt++;
    }
    if (sentence === 0) word = word[0]!.toUpperCase() + word.slice(1);
    sentence++;
    if (sentence >= 8 + Math.floor(next() * 10)) {
      word += '.';
      sentence = 0;
    } else if (next() < 0.05) word += ',';
    line.push(word);
    if (line.length === 100) {
      lines.push(line.join(' '));
      line = [];
    }
  }
  if (line.length > 0) lines.push(line.join(' '));
  return { lines, misspelt };
}

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

async function ximssdSide(text: string, words: number, runs: number, cpuProfileDir?: string): Promise<SpellerSide> {
  const server = await startXimssd({
    config: { limits: { spellerGuessWords: 100_000, spellerGuessSeconds: 3600 } },
    ...(cpuProfileDir ? { cpuProfileDir } : {}),
  });
  try {
    const client = await XimssClient.connect(server.ports.ximss, USER, PASSWORD);
    try {
      const body = escapeXml(text);
      const times: number[] = [];
      let misspelled = 0;
      let withGuesses = 0;
      for (let pass = 0; pass <= runs; pass++) {
        const t0 = performance.now();
        const reply = await client.call((id) => `<spellerCheck id="${id}" speller="English-US">${body}</spellerCheck>`);
        const ms = performance.now() - t0;
        if (pass > 0) times.push(ms);
        misspelled = reply.data.filter((d) => d.startsWith('<spellerReport')).length;
        withGuesses = reply.data.filter((d) => d.startsWith('<spellerReport') && d.includes('<guess>')).length;
      }
      const ms = median(times);
      return { wordsPerSecond: words / (ms / 1000), ms, misspelled, withGuesses };
    } finally {
      await client.close();
    }
  } finally {
    await server.stop();
  }
}

function hunspellVersion(): string | undefined {
  if (!existsSync(HUNSPELL) || !existsSync(EN_US)) return undefined;
  const result = spawnSync(HUNSPELL, ['-v'], { encoding: 'utf8', input: '' });
  if (result.error) return undefined;
  return (result.stdout.split('\n')[0] ?? '').replace(/^@\(#\)\s*/, '').trim() || 'hunspell';
}

/** hunspell's version, installing Debian's hunspell and hunspell-en-us first when missing (test/fixtures/debian.ts). */
async function ensureHunspell(log: (line: string) => void): Promise<{ version: string } | { reason: string }> {
  if (!hunspellVersion()) log('hunspell is not installed: installing hunspell and hunspell-en-us …');
  try {
    await ensureDebianPackages(['hunspell', 'hunspell-en-us'], () => hunspellVersion() !== undefined);
  } catch (err) {
    return { reason: `hunspell cannot be had: ${(err as Error).message.split('\n').slice(0, 4).join('\n')}` };
  }
  return { version: hunspellVersion()! };
}

/**
 * One hunspell -a process: each pass writes every line (prefixed `^`, "check this line") and
 * waits for as many blank lines (the end of a line's verdicts); `&` (guesses) and `#` (none)
 * lines are the misspelled words.
 */
async function hunspellSide(lines: readonly string[], words: number, runs: number): Promise<SpellerSide> {
  const child = spawn(HUNSPELL, ['-a', '-d', EN_US.replace(/\.dic$/, '')], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LANG: 'C.UTF-8' } });
  let buffer = '';
  let waiting: (() => void) | undefined;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffer += chunk;
    waiting?.();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    // The banner line comes first: the dictionary is loaded.
    while (!buffer.includes('\n')) await new Promise<void>((resolve) => (waiting = resolve));
    buffer = buffer.slice(buffer.indexOf('\n') + 1);
    const times: number[] = [];
    let misspelled = 0;
    let withGuesses = 0;
    for (let pass = 0; pass <= runs; pass++) {
      buffer = '';
      const t0 = performance.now();
      child.stdin.write(lines.map((l) => `^${l}\n`).join(''));
      // Each input line ends with one empty output line.
      const blankLines = (): number => buffer.split('\n\n').length - 1;
      while (blankLines() < lines.length) await new Promise<void>((resolve) => (waiting = resolve));
      const ms = performance.now() - t0;
      if (pass > 0) times.push(ms);
      const out = buffer.split('\n');
      withGuesses = out.filter((l) => l.startsWith('& ')).length;
      misspelled = withGuesses + out.filter((l) => l.startsWith('# ')).length;
    }
    const ms = median(times);
    return { wordsPerSecond: words / (ms / 1000), ms, misspelled, withGuesses };
  } finally {
    child.stdin.end();
    child.kill('SIGTERM');
    await exited;
  }
}

export async function spellerBench(params: { words: number; every: number; runs: number; cpuProfileDir?: string; log?: (line: string) => void }): Promise<SpellerResult> {
  const log = params.log ?? console.log;
  if (!existsSync(join(ROOT, 'node_modules', 'dictionary-en', 'index.dic'))) return { available: false, reason: 'node_modules/dictionary-en is missing (npm ci)' };
  const { lines, misspelt } = spellerText(params.words, params.every);
  const ximssd = await ximssdSide(lines.join('\n'), params.words, params.runs, params.cpuProfileDir);
  const hunspell = await ensureHunspell(log);
  if ('reason' in hunspell) return { available: true, words: params.words, misspelt, ximssd, hunspellReason: hunspell.reason };
  const side = await hunspellSide(lines, params.words, params.runs);
  return { available: true, words: params.words, misspelt, ximssd, hunspell: { ...side, version: hunspell.version } };
}
