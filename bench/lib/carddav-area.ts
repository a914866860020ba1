/**
 * The `carddav` bench area: 1,000 cards (benchCard) PUT into ximssd and into Radicale, then
 * the same addressbook-multiget of all of them timed on both with the same client.
 */
import { ensureRadicale, startRadicale } from './radicale.js';
import { mkAddressBook, putCards, timeMultiget, type DavTarget, type MultigetResult } from './carddav-bench.js';
import { PASSWORD, USER, startXimssd } from './ximssd.js';

export type CarddavResult =
  | { available: false; reason: string }
  | { available: true; ximssd: MultigetResult; ximssdPutMs: number; radicale?: MultigetResult; radicalePutMs?: number; radicaleReason?: string };

export async function carddavBench(params: { cards: number; runs: number; cpuProfileDir?: string }): Promise<CarddavResult> {
  const server = await startXimssd(params.cpuProfileDir ? { cpuProfileDir: params.cpuProfileDir } : {});
  let ximssd: MultigetResult;
  let ximssdPutMs: number;
  try {
    const target: DavTarget = { port: server.ports.http, user: USER, password: PASSWORD };
    const book = `/dav/addressbooks/${USER.split('@')[0]}/Bench/`;
    await mkAddressBook(target, book);
    const t0 = performance.now();
    const hrefs = await putCards(target, book, params.cards);
    ximssdPutMs = performance.now() - t0;
    ximssd = await timeMultiget(target, book, hrefs, params.runs);
  } finally {
    await server.stop();
  }
  const availability = await ensureRadicale();
  if (!availability.available) return { available: true, ximssd, ximssdPutMs, radicaleReason: availability.reason };
  const radicale = await startRadicale({ bench: PASSWORD });
  try {
    const target: DavTarget = { port: radicale.port, user: 'bench', password: PASSWORD };
    const book = '/bench/bench-book/';
    await mkAddressBook(target, book);
    const t0 = performance.now();
    const hrefs = await putCards(target, book, params.cards);
    const radicalePutMs = performance.now() - t0;
    const result = await timeMultiget(target, book, hrefs, params.runs);
    return { available: true, ximssd, ximssdPutMs, radicale: result, radicalePutMs };
  } finally {
    await radicale.stop();
  }
}
