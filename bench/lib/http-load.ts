/**
 * XIMSS over HTTP: several sessions, each logged in with `POST /XIMSSLogin/` and then
 * posting `/Session/<urlID>/sync?reqSeq=N` batches of noops back to back (one request in
 * flight per session, as clients do), over a keep-alive connection per session.
 */
import http from 'node:http';
import { cpuSeconds, meter, sleep } from './proc.js';

export interface HttpBatchOptions {
  port: number;
  sessions: number;
  /** Noops per sync request. */
  batch: number;
  warmupMs: number;
  durationMs: number;
  user: string;
  password: string;
  serverPid?: number;
}

export type HttpBatchResult =
  | { available: false; reason: string }
  | {
      available: true;
      /** Noops answered per second. */
      rate: number;
      /** Sync requests per second. */
      requestRate: number;
      seconds: number;
      errors: number;
      serverCpu: number | undefined;
      clientCpu: number;
      otherCpu: number;
    };

interface Reply {
  status: number;
  body: string;
}

function post(agent: http.Agent, port: number, path: string, body: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path,
        agent,
        headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer to POST ${path} within 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Logs in over HTTP; the urlID, or why the binding is not usable. */
export async function httpLogin(agent: http.Agent, port: number, user: string, password: string): Promise<{ urlID: string } | { reason: string }> {
  const query = new URLSearchParams({ userName: user, password, errorAsXML: '1', DisableIPWatch: '1' });
  let reply: Reply;
  try {
    reply = await post(agent, port, `/XIMSSLogin/?${query}`, '');
  } catch (err) {
    return { reason: (err as Error).message };
  }
  const urlID = reply.body.match(/<session\b[^>]*\surlID="([^"]+)"/)?.[1];
  if (reply.status !== 200 || !urlID) {
    return { reason: `login answered HTTP ${reply.status}: ${reply.body.trim().slice(0, 160)}` };
  }
  return { urlID };
}

class SyncSession {
  noops = 0;
  requests = 0;
  errors = 0;
  private reqSeq = 0;
  private nextId = 1;
  private running = true;
  private checked = 0;
  done: Promise<void> | undefined;

  constructor(
    private readonly agent: http.Agent,
    private readonly port: number,
    private readonly urlID: string,
    private readonly batch: number,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  stop(): Promise<void> {
    this.running = false;
    return this.done ?? Promise.resolve();
  }

  /** Ends the session with `bye` (errors ignored: this is only tidying up). */
  async bye(): Promise<void> {
    const path = `/Session/${this.urlID}/sync?reqSeq=${++this.reqSeq}`;
    await post(this.agent, this.port, path, '<XIMSS><bye id="bye"/></XIMSS>').catch(() => undefined);
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const first = this.nextId;
      let body = '<XIMSS>';
      for (let i = 0; i < this.batch; i++) body += '<noop id="' + this.nextId++ + '"/>';
      body += '</XIMSS>';
      let reply: Reply;
      try {
        reply = await post(this.agent, this.port, `/Session/${this.urlID}/sync?reqSeq=${++this.reqSeq}`, body);
      } catch (err) {
        this.errors++;
        if (this.errors <= 3) console.error(`  sync failed: ${(err as Error).message}`);
        await sleep(100);
        continue;
      }
      let count = 0;
      let at = reply.body.indexOf('<response');
      while (at >= 0) {
        count++;
        at = reply.body.indexOf('<response', at + 9);
      }
      let ok = reply.status === 200 && count === this.batch && !reply.body.includes('errorText');
      if (ok && this.checked < 20) {
        // The first batches are checked in full: every id, in order, nothing else.
        this.checked++;
        let expected = '<XIMSS>';
        for (let id = first; id < first + this.batch; id++) expected += `<response id="${id}"/>`;
        ok = reply.body.trim() === expected + '</XIMSS>';
      }
      if (!ok) {
        this.errors++;
        if (this.errors <= 3) console.error(`  unexpected sync reply (HTTP ${reply.status}): ${reply.body.slice(0, 200)}`);
        if (reply.status === 550 || reply.status >= 500) {
          await sleep(100);
        }
        continue;
      }
      this.noops += count;
      this.requests++;
    }
  }
}

export async function httpSyncBatches(options: HttpBatchOptions): Promise<HttpBatchResult> {
  const agents = Array.from({ length: options.sessions }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  try {
    const sessions: SyncSession[] = [];
    for (const agent of agents) {
      const login = await httpLogin(agent, options.port, options.user, options.password);
      if ('reason' in login) return { available: false, reason: login.reason };
      sessions.push(new SyncSession(agent, options.port, login.urlID, options.batch));
    }
    for (const s of sessions) s.start();
    const totals = (): [number, number] => [sessions.reduce((n, s) => n + s.noops, 0), sessions.reduce((n, s) => n + s.requests, 0)];
    await sleep(options.warmupMs);
    const [n0, q0] = totals();
    const serverPid = options.serverPid;
    const done = meter(() => (serverPid ? cpuSeconds(serverPid) : 0));
    await sleep(options.durationMs);
    const [n1, q1] = totals();
    const cpu = done();
    await Promise.all(sessions.map((s) => s.stop()));
    const errors = sessions.reduce((n, s) => n + s.errors, 0);
    const seconds = cpu.seconds;
    if (n1 === n0) return { available: false, reason: `no sync request succeeded (${errors} errors)` };
    // Leave politely: the sessions end rather than waiting for their idle time-out.
    await Promise.all(sessions.map((s) => s.bye()));
    return {
      available: true,
      rate: (n1 - n0) / seconds,
      requestRate: (q1 - q0) / seconds,
      seconds,
      errors,
      serverCpu: serverPid ? cpu.server / seconds : undefined,
      clientCpu: cpu.client / seconds,
      otherCpu: cpu.other,
    };
  } finally {
    for (const agent of agents) agent.destroy();
  }
}
