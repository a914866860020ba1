/**
 * The spell checking thread: loads each dictionary the first time it is asked for (the
 * Russian one takes seconds and some 200 MB: never on the server's event loop) and keeps it
 * for the life of the process; checks one text at a time (checker.ts).
 */
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import nspell from 'nspell';
import { check, SPELLERS, TooManyWords, type Dictionary } from './checker.js';
import type { SpellJob, SpellReply } from './service.js';

const loaded = new Map<string, Promise<Dictionary>>();

async function load(dictionary: (typeof SPELLERS)[number]['dictionary']): Promise<{ dict: Dictionary; loadMs?: number }> {
  let pending = loaded.get(dictionary);
  if (pending) return { dict: await pending };
  const began = performance.now();
  pending = (async () => {
    const module = dictionary === 'dictionary-en' ? await import('dictionary-en') : await import('dictionary-ru');
    const { aff, dic } = module.default;
    return nspell({ aff: Buffer.from(aff.buffer, aff.byteOffset, aff.byteLength), dic: Buffer.from(dic.buffer, dic.byteOffset, dic.byteLength) });
  })();
  loaded.set(dictionary, pending);
  try {
    const dict = await pending;
    return { dict, loadMs: Math.round(performance.now() - began) };
  } catch (err) {
    loaded.delete(dictionary);
    throw err;
  }
}

async function run(job: SpellJob): Promise<SpellReply> {
  const speller = SPELLERS.find((s) => s.name === job.speller);
  if (!speller) return { id: job.id, error: `no speller ${job.speller}` };
  const { dict, loadMs } = await load(speller.dictionary);
  const began = performance.now();
  try {
    const reports = check(job.text, speller, dict, job.glyphs, job.limits);
    return { id: job.id, reports, checkMs: performance.now() - began, ...(loadMs !== undefined ? { loadMs } : {}) };
  } catch (err) {
    if (err instanceof TooManyWords) return { id: job.id, tooManyWords: err.limit };
    throw err;
  }
}

parentPort!.on('message', (job: SpellJob) => {
  run(job).then(
    (reply) => parentPort!.postMessage(reply),
    (err: unknown) => parentPort!.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) } satisfies SpellReply),
  );
});
