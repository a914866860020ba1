/**
 * The pre-login flood of the attack section (bench/lib/attack.ts), run as its own process so
 * that its work never delays the bench process, which times the well-behaved client.
 *
 * K attackers, each in a loop: connect (from `address`, never logging in), send one hostile
 * message as fast as the socket takes it (writes of 64 KiB, waiting for 'drain'), and
 * reconnect as soon as the server cuts the connection. Each attacker alternates two shapes:
 *   nested: `<noop id="1">` + `<a>` repeated up to `nestedBytes` (about 10 MB), then a zero byte;
 *   flat:   `<noop id="1">` + `<a/>` repeated up to `flatBytes` (64 KiB), `</noop>`, a zero byte.
 * A connection is "cut" when the server ends or resets it. The first text the server sends
 * on a connection (up to its zero byte) is counted by content.
 *
 *   node --import tsx bench/prelogin-flood.ts '{"port":N,"address":"127.0.0.2","attackers":8,
 *        "nestedBytes":10485760,"flatBytes":65536}'
 *
 * Prints `FLOOD STARTED`, then floods until a line `stop` arrives on stdin, then prints
 * `FLOOD RESULT <json>` (FloodResult) and exits. It also exits when its stdin closes.
 */
import net from 'node:net';

export interface FloodConfig {
  port: number;
  address: string;
  attackers: number;
  nestedBytes: number;
  flatBytes: number;
}

export interface ShapeCounters {
  /** Connections established. */
  connections: number;
  /** Messages begun (their first bytes written). */
  messagesStarted: number;
  /** Messages written to their end (the zero byte) before the connection was cut. */
  messagesCompleted: number;
  /** Bytes the server read (socket.bytesWritten on the client side, summed). */
  bytesSent: number;
  /** Connections the server ended or reset. */
  cutByServer: number;
  /** Connections that had to be closed by the attacker (no cut within 10 s of the message's end). */
  stalled: number;
  /** The server's first message on a connection, by text (up to 200 characters). */
  answers: Record<string, number>;
  /** From the connection's establishment to the server's cut, milliseconds: median and max. */
  cutMedianMs: number | null;
  cutMaxMs: number | null;
}

export interface FloodResult {
  seconds: number;
  shapes: { nested: ShapeCounters; flat: ShapeCounters };
  /** Connection attempts that failed before connecting, by error code. */
  connectErrors: Record<string, number>;
}

type Shape = 'nested' | 'flat';
const CHUNK = 64 * 1024;
const STALL_MS = 10_000;

function payload(shape: Shape, bytes: number): Buffer {
  const head = '<noop id="1">';
  if (shape === 'nested') return Buffer.from(head + '<a>'.repeat(Math.floor((bytes - head.length - 1) / 3)) + '\0');
  const tail = '</noop>\0';
  return Buffer.from(head + '<a/>'.repeat(Math.floor((bytes - head.length - tail.length) / 4)) + tail);
}

function main(): void {
  const config = JSON.parse(process.argv[2] ?? '{}') as FloodConfig;
  const payloads: Record<Shape, Buffer> = { nested: payload('nested', config.nestedBytes), flat: payload('flat', config.flatBytes) };
  const counters = (): ShapeCounters & { cutTimes: number[] } => ({
    connections: 0,
    messagesStarted: 0,
    messagesCompleted: 0,
    bytesSent: 0,
    cutByServer: 0,
    stalled: 0,
    answers: {},
    cutMedianMs: null,
    cutMaxMs: null,
    cutTimes: [],
  });
  const stats = { nested: counters(), flat: counters() };
  const connectErrors: Record<string, number> = {};
  const live = new Set<net.Socket>();
  let running = true;
  const began = performance.now();

  /** One connection with one message; resolves when it is closed. */
  const attempt = (shape: Shape): Promise<void> =>
    new Promise((resolve) => {
      const s = stats[shape];
      const data = payloads[shape];
      const socket = net.connect({ port: config.port, host: '127.0.0.1', localAddress: config.address });
      live.add(socket);
      socket.setNoDelay(true);
      let connectedAt: number | undefined;
      let answer = '';
      let answered = false;
      let stallTimer: NodeJS.Timeout | undefined;
      let onDrain: (() => void) | undefined;
      let wasCut = false;
      const cut = (): void => {
        if (connectedAt !== undefined && !wasCut && running) {
          wasCut = true;
          s.cutByServer++;
          s.cutTimes.push(performance.now() - connectedAt);
        }
        socket.destroy();
      };
      socket.on('connect', () => {
        connectedAt = performance.now();
        s.connections++;
        s.messagesStarted++;
        void (async () => {
          for (let at = 0; at < data.length && !socket.destroyed; at += CHUNK) {
            if (!socket.write(data.subarray(at, at + CHUNK))) {
              await new Promise<void>((wake) => {
                onDrain = wake;
                socket.once('drain', wake);
              });
              onDrain = undefined;
            }
          }
          if (socket.destroyed) return;
          s.messagesCompleted++;
          stallTimer = setTimeout(() => {
            s.stalled++;
            socket.destroy();
          }, STALL_MS);
        })();
      });
      socket.on('data', (chunk: Buffer) => {
        if (answered) return;
        answer += chunk.toString('utf8');
        const zero = answer.indexOf('\0');
        if (zero >= 0 || answer.length > 200) {
          answered = true;
          const text = answer.slice(0, zero >= 0 ? zero : 200);
          s.answers[text] = (s.answers[text] ?? 0) + 1;
        }
      });
      socket.on('end', cut);
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (connectedAt === undefined) {
          const code = err.code ?? err.message;
          connectErrors[code] = (connectErrors[code] ?? 0) + 1;
          socket.destroy();
        } else cut();
      });
      socket.on('close', () => {
        clearTimeout(stallTimer);
        onDrain?.();
        s.bytesSent += socket.bytesWritten;
        live.delete(socket);
        resolve();
      });
    });

  const attacker = async (k: number): Promise<void> => {
    for (let n = k; running; n++) {
      await attempt(n % 2 === 0 ? 'nested' : 'flat');
      // After a failed connect (e.g. the listener's backlog is full), do not spin.
      if (running && connectErrorsTotal() > 0 && n % 64 === 0) await new Promise((r) => setTimeout(r, 1));
    }
  };
  const connectErrorsTotal = (): number => Object.values(connectErrors).reduce((a, b) => a + b, 0);
  const all = Promise.all(Array.from({ length: config.attackers }, (_, k) => attacker(k)));
  console.log('FLOOD STARTED');

  const finish = async (): Promise<void> => {
    if (!running) return;
    running = false;
    const seconds = (performance.now() - began) / 1000;
    for (const socket of live) socket.destroy();
    await all;
    const shapes = {} as FloodResult['shapes'];
    for (const shape of ['nested', 'flat'] as const) {
      const { cutTimes, ...rest } = stats[shape];
      const sorted = cutTimes.sort((a, b) => a - b);
      shapes[shape] = {
        ...rest,
        cutMedianMs: sorted.length ? sorted[sorted.length >> 1]! : null,
        cutMaxMs: sorted.length ? sorted[sorted.length - 1]! : null,
      };
    }
    const result: FloodResult = { seconds, shapes, connectErrors };
    process.stdout.write(`FLOOD RESULT ${JSON.stringify(result)}\n`, () => process.exit(0));
  };
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (text: string) => {
    input += text;
    if (input.includes('stop\n')) void finish();
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

main();
