/**
 * The CardDAV figure of issue 12: an addressbook-multiget REPORT (RFC 6352 8.7) of every card
 * of a 1,000-card address book, timed on ximssd and on Radicale with the same cards, the same
 * client (one keep-alive connection, Basic authentication) and the same request.
 */
import http from 'node:http';
import { median } from './figures.js';

export interface DavTarget {
  port: number;
  user: string;
  password: string;
}

export interface DavReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One request on the shared keep-alive connection. */
export function davRequest(target: DavTarget, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<DavReply> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port: target.port,
        method,
        path,
        agent,
        headers: {
          Authorization: `Basic ${Buffer.from(`${target.user}:${target.password}`).toString('base64')}`,
          ...(body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}),
          ...headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** A vCard 3.0 card as address books hold them: name, two addresses, two phones, an address, a note. */
export function benchCard(i: number): { uid: string; text: string } {
  const uid = `bench-card-${String(i).padStart(5, '0')}`;
  const text = [
    'BEGIN:VCARD',
    'VERSION:3.0',
    `UID:${uid}`,
    `FN:Person ${i} Example`,
    `N:Example;Person ${i};;;`,
    `EMAIL;TYPE=INTERNET,WORK:person${i}@work.example.com`,
    `EMAIL;TYPE=INTERNET,HOME:person${i}@home.example.org`,
    `TEL;TYPE=WORK,VOICE:+1 555 010 ${String(i % 10_000).padStart(4, '0')}`,
    `TEL;TYPE=CELL:+1 555 020 ${String(i % 10_000).padStart(4, '0')}`,
    `ADR;TYPE=WORK:;;${i} Main Street;Springfield;IL;62701;USA`,
    'ORG:Example Corporation;Research',
    `NOTE:Card number ${i}\\, made for the CardDAV benchmark.`,
    'END:VCARD',
    '',
  ].join('\r\n');
  return { uid, text };
}

/** Stores the cards by PUT (If-None-Match: *) into the collection; their hrefs. */
export async function putCards(target: DavTarget, collection: string, count: number): Promise<string[]> {
  const hrefs: string[] = [];
  for (let i = 0; i < count; i++) {
    const card = benchCard(i);
    const href = `${collection}${card.uid}.vcf`;
    const reply = await davRequest(target, 'PUT', href, card.text, { 'Content-Type': 'text/vcard; charset=utf-8', 'If-None-Match': '*' });
    if (reply.status !== 201 && reply.status !== 204) throw new Error(`PUT ${href}: HTTP ${reply.status} ${reply.body.toString('utf8').slice(0, 300)}`);
    hrefs.push(href);
  }
  return hrefs;
}

export function multigetBody(hrefs: readonly string[]): string {
  return (
    '<?xml version="1.0" encoding="utf-8"?>\n' +
    '<C:addressbook-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">' +
    '<D:prop><D:getetag/><C:address-data/></D:prop>' +
    hrefs.map((href) => `<D:href>${href}</D:href>`).join('') +
    '</C:addressbook-multiget>'
  );
}

export interface MultigetResult {
  /** Median milliseconds of one REPORT. */
  ms: number;
  /** Cards in the reply (each must carry its address-data). */
  cards: number;
  bytes: number;
}

/** Times the multiget `iterations` times (after one warm-up) and checks every card came back. */
export async function timeMultiget(target: DavTarget, collection: string, hrefs: readonly string[], iterations: number): Promise<MultigetResult> {
  const body = multigetBody(hrefs);
  const headers = { 'Content-Type': 'application/xml; charset=utf-8', Depth: '1' };
  const once = async (): Promise<{ ms: number; reply: DavReply }> => {
    const t0 = performance.now();
    const reply = await davRequest(target, 'REPORT', collection, body, headers);
    return { ms: performance.now() - t0, reply };
  };
  const warm = await once();
  if (warm.reply.status !== 207) throw new Error(`REPORT ${collection}: HTTP ${warm.reply.status} ${warm.reply.body.toString('utf8').slice(0, 300)}`);
  const cards = (warm.reply.body.toString('utf8').match(/BEGIN:VCARD/g) ?? []).length;
  if (cards !== hrefs.length) throw new Error(`REPORT ${collection}: ${cards} cards came back of ${hrefs.length}`);
  const times: number[] = [];
  for (let i = 0; i < iterations; i++) times.push((await once()).ms);
  return { ms: median(times), cards, bytes: warm.reply.body.length };
}

/** Radicale's way to make an address book: an extended MKCOL (RFC 5689) with the addressbook resource type. */
export async function mkAddressBook(target: DavTarget, collection: string): Promise<void> {
  const body =
    '<?xml version="1.0" encoding="utf-8"?>\n' +
    '<D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop>' +
    '<D:resourcetype><D:collection/><C:addressbook/></D:resourcetype><D:displayname>Bench</D:displayname>' +
    '</D:prop></D:set></D:mkcol>';
  const reply = await davRequest(target, 'MKCOL', collection, body, { 'Content-Type': 'application/xml; charset=utf-8' });
  if (reply.status !== 201) throw new Error(`MKCOL ${collection}: HTTP ${reply.status} ${reply.body.toString('utf8').slice(0, 300)}`);
}
