import { Worker } from 'node:worker_threads';

/**
 * A worker thread running the module `name` beside `base` (the caller's import.meta.url): the
 * compiled `<name>.js` when the server runs from dist/; when it runs from its TypeScript sources
 * (the tests, through tsx), the worker registers tsx first, since loader hooks do not reach
 * worker threads. `heapMb` bounds the worker's heap: what overflows it kills the worker, never
 * the server. `workerData` reaches the worker as worker_threads' `workerData`.
 */
export function moduleWorker(base: string, name: string, heapMb: number, workerData?: unknown): Worker {
  const options = { resourceLimits: { maxOldGenerationSizeMb: heapMb }, ...(workerData === undefined ? {} : { workerData }) };
  if (!base.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, base), options);
  const source = JSON.stringify(new URL(`./${name}.ts`, base).href);
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${source}); });`, { ...options, eval: true });
}
