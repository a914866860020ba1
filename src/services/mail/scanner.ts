/**
 * Content scans off the event loop. folderSearch with BODY/TEXT/header criteria and the
 * content filters of folders must parse and decode every message they look at: done in the
 * server's thread (even in slices), that work delays every other client by a slice at a
 * time. Here the server's thread only reads the messages from the store, in small batches,
 * and a worker thread (scan-worker.ts) decides them; while it does, other clients are
 * served. Several batches are in flight, so that the worker never waits for the store.
 */
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import type { MessageMeta } from '../../store/store.js';
import type { SearchOptions } from './search.js';
import type { ContentScope } from './searchable.js';
import { moduleWorker } from '../workers.js';

/** One message of a batch, as the worker gets it. */
export interface ScanItem {
  uid: number;
  seq: number;
  meta: MessageMeta;
  /** The stored header block, when the program needs header fields beyond the metadata. */
  header?: string;
  /** The message (its own buffer, transferred), when the body is needed. */
  raw?: Uint8Array;
}

interface JobBase {
  /** Date.now() after which the worker stops (and says so). */
  deadline: number;
  /** The scan's very first message is examined whatever the deadline. */
  examineFirst: boolean;
  items: ScanItem[];
}

export type ScanJob =
  | (JobBase & {
      kind: 'search';
      filter: string;
      options: SearchOptions;
    })
  | (JobBase & { kind: 'contains'; needle: string; scope: ContentScope });

export interface ScanRequest {
  id: number;
  job: ScanJob;
}

export type ScanReply = { id: number; results: boolean[]; stopped: boolean } | { id: number; error: string };

/** What a scan run through the worker needs from its caller. */
export interface BatchScan {
  /** Items to examine, in order. */
  readonly count: number;
  /** Reads item `i` from the store (in this thread); undefined when it is gone. */
  load(i: number): Promise<ScanItem | undefined>;
  /** The job for one batch (`first`: it holds the scan's first item). */
  job(items: ScanItem[], first: boolean): ScanJob;
  /** Takes item `i`'s answer; false stops the scan after it (enough was found). */
  take(i: number, found: boolean): boolean;
}

/**
 * A batch is sent once it holds this many messages or bytes, or once reading it has taken
 * BATCH_MS of this thread's time: reading is the scan's only work here, and it must stay
 * short enough not to delay other clients noticeably.
 */
const BATCH_ITEMS = 32;
const BATCH_BYTES = 256 * 1024;
const BATCH_MS = 0.1;
/** Batches sent to the worker and not yet answered: enough that it never waits for this thread. */
const IN_FLIGHT = 3;
/** The worker's heap: a message that decodes into too much kills the worker, never the server. */
const WORKER_HEAP_MB = 256;

interface InFlight {
  /** The scan's item index of each message in the batch. */
  indexes: number[];
  reply: Promise<{ results: boolean[]; stopped: boolean }>;
}

/** The scan worker, started on first use; scans from every session share it, batch by batch. */
export class ContentScanner {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, { resolve: (r: { results: boolean[]; stopped: boolean }) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  /**
   * Runs `scan` through the worker; resolves with the index of the first item not examined
   * (the deadline passed, `cancelled()` became true, or take() said stop), or undefined when
   * every item was examined.
   */
  async scan(scan: BatchScan, cancelled: () => boolean): Promise<number | undefined> {
    const inFlight: InFlight[] = [];
    let loaded = 0;
    const from = (i: number): number | undefined => (i < scan.count ? i : undefined);
    const send = async (): Promise<void> => {
      const first = loaded === 0;
      const items: ScanItem[] = [];
      const indexes: number[] = [];
      const transfer: ArrayBuffer[] = [];
      let bytes = 0;
      const began = performance.now();
      while (loaded < scan.count && items.length < BATCH_ITEMS && bytes < BATCH_BYTES && performance.now() - began < BATCH_MS) {
        const i = loaded++;
        const item = await scan.load(i);
        if (!item) continue;
        if (item.raw) {
          item.raw = ownBuffer(item.raw);
          transfer.push(item.raw.buffer as ArrayBuffer);
          bytes += item.raw.byteLength;
        }
        bytes += item.header?.length ?? 0;
        items.push(item);
        indexes.push(i);
      }
      if (items.length === 0) return;
      inFlight.push({ indexes, reply: this.run(scan.job(items, first), transfer) });
    };
    while (loaded < scan.count && inFlight.length < IN_FLIGHT) await send();
    while (inFlight.length > 0) {
      const batch = inFlight.shift()!;
      const { results, stopped } = await batch.reply;
      for (let k = 0; k < results.length; k++) {
        const i = batch.indexes[k]!;
        if (!scan.take(i, results[k]!)) return from(i + 1);
      }
      if (stopped || cancelled()) return from(results.length < batch.indexes.length ? batch.indexes[results.length]! : batch.indexes.at(-1)! + 1);
      // Keep batches in flight: read the next one while the worker decides the others.
      if (loaded < scan.count && inFlight.length < IN_FLIGHT) await send();
    }
    return undefined;
  }

  private run(job: ScanJob, transfer: ArrayBuffer[]): Promise<{ results: boolean[]; stopped: boolean }> {
    const worker = this.start();
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, job } satisfies ScanRequest, transfer);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = moduleWorker(import.meta.url, 'scan-worker', WORKER_HEAP_MB);
    worker.unref();
    worker.on('message', (reply: ScanReply) => {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) return;
      this.waiting.delete(reply.id);
      if ('error' in reply) waiter.reject(new Error(`content scan failed: ${reply.error}`));
      else waiter.resolve(reply);
    });
    const lost = (err: Error): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const waiter of this.waiting.values()) waiter.reject(err);
      this.waiting.clear();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the content scan worker stopped (exit code ${code})`)));
    this.worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}

/** The bytes in a buffer of their own, which can be transferred (a slice of a shared pool cannot). */
function ownBuffer(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes : new Uint8Array(bytes);
}
