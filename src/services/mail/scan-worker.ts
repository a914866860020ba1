/**
 * The content scan worker: runs the CPU-heavy part of folderSearch (BODY, TEXT, header
 * searches) and of folders' content filters — MIME parsing, charset and HTML decoding,
 * matching — off the server's event loop. The server's thread reads the messages from the
 * store and sends them here in small batches (scanner.ts); this thread never touches the
 * store. Each batch stops at its deadline.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { DeadlineError } from '../slices.js';
import { parseSearch } from './search.js';
import { containsText, searchable } from './searchable.js';
import type { ScanJob, ScanReply, ScanRequest } from './scanner.js';

// Scans are background work: on Linux a thread has a priority of its own, and this one
// yields the CPU to the server's thread (which answers everyone else) whenever both want it.
try {
  setPriority(10);
} catch {
  // not permitted here: the scan runs at the server's priority
}

function run(job: ScanJob): { results: boolean[]; stopped: boolean } {
  const results: boolean[] = [];
  const check = (): void => {
    if (Date.now() >= job.deadline) throw new DeadlineError();
  };
  // Compiled again for each batch: microseconds, against the batch's decoding.
  const program = job.kind === 'search' ? parseSearch(job.filter, job.options) : undefined;
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
      if (err instanceof DeadlineError) return { results, stopped: true };
      throw err;
    }
  }
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
