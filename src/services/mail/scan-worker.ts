/**
 * The content scan worker: runs the CPU-heavy part of folderSearch (BODY, TEXT, header
 * searches) and of folders' content filters — MIME parsing, charset and HTML decoding,
 * matching — off the server's event loop. The server's thread reads the messages from the
 * store and sends them here in small batches (scanner.ts); this thread never touches the
 * store. Each batch stops at its deadline.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { parseSearch, type SearchProgram } from './search.js';
import { containsText, searchable } from './searchable.js';
import type { ScanJob, ScanReply, ScanRequest } from './scanner.js';

class Expired extends Error {}

// Scans are background work: on Linux a thread has a priority of its own, and this one
// yields the CPU to the server's thread (which answers everyone else) whenever both want it.
try {
  setPriority(10);
} catch {
  // not permitted here: the scan runs at the server's priority
}

/** Compiled programs of the searches under way (a search sends several batches). */
const programs = new Map<string, SearchProgram>();

function run(job: ScanJob): { results: boolean[]; stopped: boolean } {
  const results: boolean[] = [];
  const check = (): void => {
    if (Date.now() >= job.deadline) throw new Expired();
  };
  let program: SearchProgram | undefined;
  if (job.kind === 'search') {
    program = programs.get(job.searchId);
    if (!program) {
      program = parseSearch(job.filter, job.options);
      programs.set(job.searchId, program);
      if (programs.size > 64) programs.delete(programs.keys().next().value!);
    }
  }
  for (let i = 0; i < job.items.length; i++) {
    // The first message of a search is always examined: a client going on from `next` progresses.
    const guarded = !(i === 0 && job.examineFirst);
    if (guarded && Date.now() >= job.deadline) return { results, stopped: true };
    const item = job.items[i]!;
    const raw = item.raw ? Buffer.from(item.raw.buffer, item.raw.byteOffset, item.raw.byteLength) : undefined;
    try {
      if (job.kind === 'search') results.push(program!.matches(searchable(item.meta, item.seq, item.header, raw, guarded ? check : undefined)));
      else results.push(raw !== undefined && containsText(raw, job.needle, job.scope, guarded ? check : undefined));
    } catch (err) {
      if (err instanceof Expired) return { results, stopped: true };
      throw err;
    }
  }
  if (job.kind === 'search' && job.last) programs.delete(job.searchId);
  return { results, stopped: false };
}

parentPort!.on('message', ({ id, job }: ScanRequest) => {
  let reply: ScanReply;
  try {
    reply = { id, ...run(job) };
  } catch (err) {
    reply = { id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(reply);
});
