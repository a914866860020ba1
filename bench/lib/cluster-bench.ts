/**
 * The cluster section of the bench: two ximssd nodes (child processes, each with its own data
 * directory, ports and `cluster.nodeId`) on one database of the run's PostgreSQL server
 * (durable), over loopback.
 *
 * 1. Change latency: a client on node A has INBOX open (folderOpen). Another client appends
 *    one message (or flags one), and the time from sending that request until the
 *    `folderReport mode="notify"` arrives on A's connection is one sample. The writer is on
 *    node B (across nodes: the change travels by LISTEN/NOTIFY, then A reads it from the
 *    database) or on node A (within one node), the two taking turns, one sample at a time.
 * 2. Append throughput: the same K connections × W appends in flight as the mail section,
 *    all on node A, or spread over both nodes (connection i on node A when i is even, on B
 *    when odd), into the same database. Two shapes: every connection appends into one
 *    mailbox of one account (as the mail section), or each connection into its own
 *    account's mailbox (users spread over the nodes, as a cluster serves them).
 */
import { ENGINE_LABEL } from './engines.js';
import { ErrorLog, fmt, median } from './figures.js';
import type { AppendRun } from './mail-bench.js';
import { MailCorpus, type CorpusMessage } from './mail-corpus.js';
import type { BenchPostgres } from './postgres.js';
import { cpuSeconds, meter, sleep } from './proc.js';
import { XimssClient, attr } from './ximss-client.js';
import { DOMAIN, PASSWORD, USER, startXimssd, type Ximssd } from './ximssd.js';

export interface ClusterOptions {
  postgres: BenchPostgres;
  /** Latency samples per kind (append, flag) and placement (across nodes, within one). */
  samples: number;
  connections: number;
  window: number;
  /** Messages per timed throughput run, per configuration. */
  appendCount: number;
  appendWarmup: number;
  runs: number;
  cpuProfileDir?: string;
  log: (line: string) => void;
}

export interface LatencyStats {
  samples: number;
  medianMs: number;
  p90Ms: number;
  /** Nearest rank. */
  p99Ms: number;
  minMs: number;
  maxMs: number;
  samplesMs: number[];
}

export type Placement = 'cross' | 'local';
export type ChangeKind = 'append' | 'flag';
export type Spread = 'one' | 'two';
export type Shape = 'mailbox' | 'accounts';

export type ClusterResult =
  | {
      available: true;
      database: string;
      nodes: { id: string; pid: number; ximss: number }[];
      latency: Record<ChangeKind, Partial<Record<Placement, LatencyStats>>>;
      /** Per shape, the runs with all connections on node A ('one') and spread over A and B ('two'). */
      throughput: Record<Shape, Record<Spread, AppendRun[]>>;
      /** CPU used by other processes while the latency samples were taken, in cores. */
      latencyOtherCpu: number;
      errors: string[];
    }
  | { available: false; reason: string };

const NODE_IDS = ['1', '2'] as const;
const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
const ximssAppend = (id: string, m: CorpusMessage, mailbox: string): string =>
  `<messageAppend id="${id}" targetMailbox="${xmlAttr(mailbox)}"${m.flags.length ? ` flags="${m.flags.join(',')}"` : ''}>${m.xml}</messageAppend>`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function latencyStats(samples: number[]): LatencyStats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    samples: samples.length,
    medianMs: median(sorted),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
    samplesMs: samples.map((s) => Math.round(s * 1000) / 1000),
  };
}

const isNotify = (folder: string) => (text: string): boolean =>
  text.startsWith('<folderReport') && attr(text, 'mode') === 'notify' && attr(text, 'folder') === folder;

export async function clusterBench(options: ClusterOptions): Promise<ClusterResult> {
  const { log, postgres } = options;
  const errors = new ErrorLog();
  const k = options.connections;
  const accounts = Array.from({ length: k }, (_, i) => `cluster-${i + 1}@${DOMAIN}`);
  const nodes: Ximssd[] = [];
  const clients: XimssClient[] = [];
  const connect = async (node: Ximssd, user = USER): Promise<XimssClient> => {
    const c = await XimssClient.connect(node.ports.ximss, user, PASSWORD);
    clients.push(c);
    return c;
  };
  let database: string;
  try {
    database = await postgres.createDatabase('cluster');
    // Node 1 first: it creates the schema and the accounts; node 2 finds them.
    for (const id of NODE_IDS) {
      nodes.push(
        await startXimssd({
          store: database,
          config: { cluster: { nodeId: id }, limits: { maxPendingRequests: 100_000 } },
          accounts: id === '1' ? accounts : [],
          createAccounts: id === '1',
          cpuProfileDir: options.cpuProfileDir,
        }),
      );
    }
  } catch (err) {
    for (const n of nodes) await n.stop();
    return { available: false, reason: (err as Error).message };
  }
  const [a, b] = nodes as [Ximssd, Ximssd];
  log(
    `two ${ENGINE_LABEL.postgres} nodes on ${database}: node 1 (A) pid ${a.pid} XIMSS ${a.ports.ximss}, node 2 (B) pid ${b.pid} XIMSS ${b.ports.ximss} ` +
      `(cluster.heartbeatSeconds and nodeTimeoutSeconds: the defaults)`,
  );
  const serversCpu = (): { ximssd: number; postgres: number } => ({
    ximssd: nodes.reduce((sum, n) => sum + cpuSeconds(n.pid), 0),
    postgres: postgres.cpuSeconds(),
  });
  try {
    // ---- Change latency
    const corpus = new MailCorpus('cluster');
    let next = 0;
    const watcher = await connect(a);
    const writers: Record<Placement, XimssClient> = { cross: await connect(b), local: await connect(a) };
    const fields = '<field>UID</field><field>FLAGS</field>';
    await watcher.call((id) => `<folderOpen id="${id}" folder="N" mailbox="INBOX" sortField="UID">${fields}</folderOpen>`);
    const samples: Record<ChangeKind, Record<Placement, number[]>> = { append: { cross: [], local: [] }, flag: { cross: [], local: [] } };
    /** Asynchronous messages the watcher had received at its last sync: more means a notify it was not waiting for. */
    let seen = watcher.asyncMessages;
    let strays = 0;
    const sync = async (): Promise<void> => {
      await watcher.call((id) => `<folderSync id="${id}" folder="N"/>`);
      seen = watcher.asyncMessages;
    };
    /** One change through `writer`; the time until A's watcher is told. */
    const sample = async (writer: XimssClient, request: (id: string) => string, what: string): Promise<number> => {
      if (watcher.asyncMessages !== seen) {
        // Told of something else (see the folder opens below): sync first, or this change goes untold.
        strays++;
        await sync();
      }
      const told = watcher.nextAsync(isNotify('N'), 10_000);
      const t0 = performance.now();
      const reply = writer.request(request);
      const { at } = await told.catch(async (err: Error) => {
        const r = await reply;
        throw new Error(`${what}: ${err.message}; the request was answered ${r.response}`);
      });
      const r = await reply;
      if (r.error !== undefined) throw new Error(`${what}: ${r.response}`);
      // The view tells again only after a complete sync.
      await sync();
      return at - t0;
    };
    log(
      `\nchange latency: a client on node A has INBOX open; another client appends one message (then flags one) on node B (across nodes) ` +
        `or on node A (within one node), taking turns; the time until A's folderReport mode="notify"; ` +
        `${options.samples} samples per kind and placement, one at a time, after ${Math.min(20, options.samples)} untimed ones each`,
    );
    const latencyMeter = meter(() => {
      const c = serversCpu();
      return c.ximssd + c.postgres;
    });
    const warm = Math.min(20, options.samples);
    for (let i = 0; i < warm + options.samples; i++) {
      for (const placement of ['cross', 'local'] as const) {
        const m = corpus.message(next++);
        const ms = await sample(writers[placement], (id) => ximssAppend(id, m, 'INBOX'), `append ${i + 1} on node ${placement === 'cross' ? 'B' : 'A'}`);
        if (i >= warm) samples.append[placement].push(ms);
      }
    }
    // Flag changes: the writers see the messages in a folder of their own, then turn Flagged on
    // and off (the opposite of what the message has: some were appended Flagged), one message
    // after another.
    const uids: number[] = [];
    const flagged = new Set<number>();
    for (const placement of ['cross', 'local'] as const) {
      await writers[placement].call((id) => `<folderOpen id="${id}" folder="F" mailbox="INBOX" sortField="UID"><field>UID</field><field>FLAGS</field></folderOpen>`);
    }
    const browse = await writers.cross.call((id) => `<folderBrowse id="${id}" folder="F"><index from="0" till="${2 * (warm + options.samples)}"/></folderBrowse>`);
    for (const row of browse.data) {
      const uid = Number(attr(row, 'UID'));
      if (!Number.isInteger(uid)) continue;
      uids.push(uid);
      if (/<FLAGS>[^<]*\bFlagged\b/.test(row)) flagged.add(uid);
    }
    // Opening a folder takes the Recent flags of its messages, a change the watcher is told of:
    // let that arrive, and sync, before timing.
    await sleep(1000);
    await sync();
    let u = 0;
    for (let i = 0; i < warm + options.samples; i++) {
      for (const placement of ['cross', 'local'] as const) {
        const uid = uids[u++ % uids.length]!;
        const on = !flagged.has(uid);
        if (on) flagged.add(uid);
        else flagged.delete(uid);
        const ms = await sample(
          writers[placement],
          (id) => `<messageMark id="${id}" folder="F" flags="${on ? 'Flagged' : 'Unflagged'}"><UID>${uid}</UID></messageMark>`,
          `messageMark ${i + 1} (${on ? 'Flagged' : 'Unflagged'} UID ${uid}) on node ${placement === 'cross' ? 'B' : 'A'}`,
        );
        if (i >= warm) samples.flag[placement].push(ms);
      }
    }
    const latencyOtherCpu = latencyMeter().other;
    if (strays) log(`(the watcher was told of ${strays} change(s) it was not waiting for, and synced before the next sample)`);
    const latency: Record<ChangeKind, Partial<Record<Placement, LatencyStats>>> = { append: {}, flag: {} };
    for (const kind of ['append', 'flag'] as const) {
      for (const placement of ['cross', 'local'] as const) {
        const s = latencyStats(samples[kind][placement]);
        latency[kind][placement] = s;
        log(
          `${`${kind === 'append' ? 'messageAppend' : 'messageMark'} ${placement === 'cross' ? 'on B → notify on A' : 'on A → notify on A'}`.padEnd(36)} ` +
            `median ${fmt(s.medianMs, 2).padStart(7)} ms  p90 ${fmt(s.p90Ms, 2).padStart(7)} ms  p99 ${fmt(s.p99Ms, 2).padStart(7)} ms  ` +
            `(min ${fmt(s.minMs, 2)}, max ${fmt(s.maxMs, 2)}, ${s.samples} samples)`,
        );
      }
    }
    if (latencyOtherCpu > 0.2) log(`note: other processes used ${Math.round(latencyOtherCpu * 100)}% of a core meanwhile: the latencies are disturbed`);
    for (const c of clients.splice(0)) await c.close();

    // ---- Append throughput: one node against two
    const throughput: Record<Shape, Record<Spread, AppendRun[]>> = { mailbox: { one: [], two: [] }, accounts: { one: [], two: [] } };
    const w = options.window;
    const appendCorpus = new MailCorpus('cluster-append');
    let first = 0;
    const take = (count: number): CorpusMessage[] => {
      const list = Array.from({ length: count }, (_, i) => appendCorpus.message(first + i));
      first += count;
      return list;
    };
    log(
      `\nappend throughput: ${k} connections × ${w} in flight, all on node A ("1 node") or spread over A and B ("2 nodes"); ` +
        `${fmt(options.appendWarmup)} warm-up messages, then ${options.runs} run(s) × ${fmt(options.appendCount)} messages per configuration, ` +
        `into mailboxes created empty before each run; server CPU = both nodes + PostgreSQL`,
    );
    for (const shape of ['mailbox', 'accounts'] as const) {
      log(
        shape === 'mailbox'
          ? `shape "one mailbox": every connection logged in as ${USER}, appending into one mailbox (as the mail section)`
          : `shape "K accounts": connection i logged in as ${accounts[0]} … ${accounts[k - 1]}, each appending into its own account's mailbox`,
      );
      const open = async (spread: Spread): Promise<XimssClient[]> => {
        const list: XimssClient[] = [];
        for (let i = 0; i < k; i++) {
          const node = spread === 'two' && i % 2 === 1 ? b : a;
          list.push(await connect(node, shape === 'mailbox' ? USER : accounts[i]!));
        }
        return list;
      };
      const conns: Record<Spread, XimssClient[]> = { one: await open('one'), two: await open('two') };
      const tagOf = (spread: Spread): string => (spread === 'one' ? '1 node ' : '2 nodes');
      const run = async (spread: Spread, mailbox: string, messages: CorpusMessage[]): Promise<AppendRun> => {
        const list = conns[spread];
        // The mailbox, created empty (by each account in the K-accounts shape).
        const creators = shape === 'mailbox' ? [list[0]!] : list;
        for (const c of creators) {
          const r = await c.request((id) => `<mailboxCreate id="${id}" mailbox="${mailbox}"/>`);
          if (r.error !== undefined) errors.add(`mailboxCreate: ${r.response}`);
        }
        const c0 = serversCpu();
        const done = meter(() => {
          const c = serversCpu();
          return c.ximssd + c.postgres;
        });
        let nextMessage = 0;
        let failed = 0;
        await Promise.all(
          Array.from({ length: k * w }, async (_, lane) => {
            for (let i = nextMessage++; i < messages.length; i = nextMessage++) {
              const reply = await list[lane % k]!.request((id) => ximssAppend(id, messages[i]!, mailbox));
              if (reply.error !== undefined) {
                failed++;
                errors.add(`messageAppend: ${reply.response}`);
              }
            }
          }),
        );
        const m = done();
        const c1 = serversCpu();
        const n = messages.length;
        return {
          messages: n,
          seconds: m.seconds,
          rate: n / m.seconds,
          cpuPerMessage: m.server / n,
          cpuSplit: { ximssd: (c1.ximssd - c0.ximssd) / n, postgres: (c1.postgres - c0.postgres) / n },
          otherCpu: m.other,
          errors: failed,
        };
      };
      const prefix = shape === 'mailbox' ? 'Shared' : 'Own';
      for (const spread of ['one', 'two'] as const) await run(spread, `${prefix}Warm${spread}`, take(options.appendWarmup));
      for (let r = 1; r <= options.runs; r++) {
        // The two configurations take turns; which goes first alternates from run to run.
        const order: Spread[] = r % 2 === 1 ? ['one', 'two'] : ['two', 'one'];
        const these: Partial<Record<Spread, AppendRun>> = {};
        for (const spread of order) {
          const result = await run(spread, `${prefix}${r}${spread}`, take(options.appendCount));
          throughput[shape][spread].push(result);
          these[spread] = result;
          const ratio = these.one && these.two ? `, ratio 2 nodes / 1 node ${fmt(these.two.rate / these.one.rate, 2)}` : '';
          log(
            `[cluster ${shape === 'mailbox' ? 'one mailbox' : `${k} accounts `} ${r}/${options.runs}] ${tagOf(spread)} ${fmt(result.rate).padStart(7)} msg/s  ` +
              `(${fmt(result.messages)} in ${fmt(result.seconds, 2)} s, server CPU ${fmt(result.cpuPerMessage! * 1e6)} µs/msg = ` +
              `ximssd ${fmt(result.cpuSplit!.ximssd * 1e6)} + PostgreSQL ${fmt(result.cpuSplit!.postgres * 1e6)}, ` +
              `other CPU ${Math.round(result.otherCpu * 100)}%, errors ${result.errors})${ratio}`,
          );
        }
      }
      for (const c of clients.splice(0)) await c.close();
    }
    if (errors.texts.length) for (const e of errors.texts) log(`  error seen: ${e}`);
    return {
      available: true,
      database,
      nodes: nodes.map((n, i) => ({ id: NODE_IDS[i]!, pid: n.pid, ximss: n.ports.ximss })),
      latency,
      throughput,
      latencyOtherCpu,
      errors: errors.texts,
    };
  } catch (err) {
    const reason = (err as Error).message;
    log(`cluster section stopped: ${reason}`);
    return { available: false, reason };
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const n of nodes) await n.stop();
  }
}
