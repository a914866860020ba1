/**
 * SIP's UDP socket in its own thread (src/transports/sip/udp-thread.ts, udp-worker.ts) over
 * real sockets on loopback: datagrams both ways byte for byte and in order, the port shared by
 * reads and sends (replies leave from the port requests came to, RFC 3581), a taken port
 * refused with its code, the bound on what waits for a busy main thread (dropped and counted,
 * never queued without end), a handler that throws, and close.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, test } from 'node:test';
import { UdpThreadSocket, type UdpThreadHandlers } from '../src/transports/sip/udp-thread.js';

interface Received {
  bytes: Buffer;
  host: string;
  port: number;
}

function collector(): { received: Received[]; dropped: number[]; errors: string[]; handlers: UdpThreadHandlers; waitFor(n: number): Promise<void> } {
  const received: Received[] = [];
  const dropped: number[] = [];
  const errors: string[] = [];
  let waiting: { n: number; resolve: () => void } | undefined;
  return {
    received,
    dropped,
    errors,
    handlers: {
      // Copied: a test keeps them past the batch, as the message layer keeps what it parses.
      message: (bytes, host, port) => {
        received.push({ bytes: Buffer.from(bytes), host, port });
        if (waiting && received.length >= waiting.n) waiting.resolve();
      },
      sendFailed: (count, error) => errors.push(`send failed ×${count}: ${error}`),
      dropped: (count) => dropped.push(count),
      error: (error) => errors.push(error),
    },
    waitFor: (n) =>
      received.length >= n
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`${received.length} of ${n} datagrams arrived`)), 10_000);
            waiting = {
              n,
              resolve: () => {
                clearTimeout(timer);
                resolve();
              },
            };
          }),
  };
}

const options = { host: '127.0.0.1', port: 0, family: 4 as const, bufferBytes: 1024 * 1024, maxInFlightBytes: 1024 * 1024 };

async function peer(): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return socket;
}

describe('SIP UDP thread', () => {
  test('datagrams arrive whole and in order, with the address they came from', async () => {
    const c = collector();
    const socket = await UdpThreadSocket.bind(options, c.handlers);
    const client = await peer();
    try {
      const sent = Array.from({ length: 300 }, (_, i) => Buffer.from(`OPTIONS sip:${i}@example.test SIP/2.0\r\n${'x'.repeat(i % 97)}\r\n\r\n`));
      for (const bytes of sent) client.send(bytes, socket.port, '127.0.0.1');
      await c.waitFor(sent.length);
      assert.equal(c.received.length, sent.length);
      for (let i = 0; i < sent.length; i++) {
        assert.deepEqual(c.received[i]!.bytes, sent[i], `datagram ${i}`);
        assert.equal(c.received[i]!.host, '127.0.0.1');
        assert.equal(c.received[i]!.port, client.address().port);
      }
      assert.deepEqual(c.dropped, []);
      assert.deepEqual(c.errors, []);
    } finally {
      client.close();
      await socket.close();
    }
  });

  test('sends leave from the bound port, whole and in order, to each destination', async () => {
    const c = collector();
    const socket = await UdpThreadSocket.bind(options, c.handlers);
    const a = await peer();
    const b = await peer();
    const got = new Map<dgram.Socket, { bytes: Buffer; port: number }[]>([
      [a, []],
      [b, []],
    ]);
    for (const [s, list] of got) s.on('message', (bytes, remote) => list.push({ bytes, port: remote.port }));
    try {
      const expected: Buffer[] = [];
      for (let i = 0; i < 100; i++) {
        const bytes = Buffer.from(`SIP/2.0 200 OK\r\nCSeq: ${i} OPTIONS\r\n\r\n`);
        expected.push(bytes);
        // Some in one turn of the event loop, some in the next: both batch and single sends.
        if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
        socket.send(bytes, (i % 2 === 0 ? a : b).address().port, '127.0.0.1');
      }
      const deadline = Date.now() + 10_000;
      while (got.get(a)!.length + got.get(b)!.length < expected.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(
        got.get(a)!.map((d) => d.bytes.toString()),
        expected.filter((_, i) => i % 2 === 0).map((d) => d.toString()),
      );
      assert.deepEqual(
        got.get(b)!.map((d) => d.bytes.toString()),
        expected.filter((_, i) => i % 2 === 1).map((d) => d.toString()),
      );
      for (const d of [...got.get(a)!, ...got.get(b)!]) assert.equal(d.port, socket.port, 'sent from the port that reads');
    } finally {
      a.close();
      b.close();
      await socket.close();
    }
  });

  test('a port already taken is refused with EADDRINUSE', async () => {
    const taken = await peer();
    try {
      await assert.rejects(UdpThreadSocket.bind({ ...options, port: taken.address().port }, collector().handlers), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE');
    } finally {
      taken.close();
    }
  });

  test('while the main thread is busy, what waits for it stays under its bound: the rest is dropped and counted', async () => {
    const c = collector();
    // Room for about ten of the 1,000-byte datagrams below.
    const socket = await UdpThreadSocket.bind({ ...options, maxInFlightBytes: 10_000 }, c.handlers);
    const blocked = new Int32Array(new SharedArrayBuffer(4));
    // Another thread sends while this one is blocked, as a flood meets a server busy elsewhere.
    const sender = new Worker(
      `const dgram = require('node:dgram');
       const { workerData } = require('node:worker_threads');
       const s = dgram.createSocket('udp4');
       let left = 200;
       const next = () => { if (left-- === 0) { s.close(); return; } s.send(Buffer.alloc(1000, 65), workerData.port, '127.0.0.1', next); };
       next();`,
      { eval: true, workerData: { port: socket.port } },
    );
    try {
      // Blocks this thread until the sender is done (nothing here can read meanwhile).
      await new Promise<void>((resolve) => {
        sender.once('online', () => {
          Atomics.wait(blocked, 0, 0, 1500);
          resolve();
        });
      });
      await once(sender, 'exit');
      // The report of drops comes within a second or so.
      const deadline = Date.now() + 5_000;
      while (c.dropped.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const dropped = c.dropped.reduce((a, b) => a + b, 0);
      assert.ok(dropped > 0, 'datagrams were dropped');
      assert.ok(c.received.length <= 20, `at most about the bound waited: ${c.received.length} arrived`);
      assert.ok(c.received.length + dropped <= 200);
      // Once the main thread reads again, new datagrams pass.
      const client = await peer();
      const before = c.received.length;
      client.send(Buffer.from('after'), socket.port, '127.0.0.1');
      await c.waitFor(before + 1);
      assert.equal(c.received.at(-1)!.bytes.toString(), 'after');
      client.close();
    } finally {
      await socket.close();
    }
  });

  test('a handler that throws loses its datagram only: the error is reported and the bound is given back', async () => {
    const c = collector();
    let attempts = 0;
    const throwing: UdpThreadHandlers = {
      ...c.handlers,
      message: () => {
        attempts++;
        throw new Error('boom');
      },
    };
    // Room for four of the 500-byte datagrams at once: twenty pass one after another only if each is given back.
    const socket = await UdpThreadSocket.bind({ ...options, maxInFlightBytes: 2_000 }, throwing);
    const client = await peer();
    try {
      for (let i = 0; i < 20; i++) {
        client.send(Buffer.alloc(500, 66), socket.port, '127.0.0.1');
        const deadline = Date.now() + 5_000;
        while (attempts < i + 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.equal(attempts, 20);
      assert.equal(c.errors.length, 20);
      assert.match(c.errors[0]!, /boom/);
      assert.deepEqual(c.dropped, []);
    } finally {
      client.close();
      await socket.close();
    }
  });

  test('close ends the thread; later sends are ignored and a second close resolves', async () => {
    const c = collector();
    const socket = await UdpThreadSocket.bind(options, c.handlers);
    assert.equal(socket.open, true);
    await socket.close();
    assert.equal(socket.open, false);
    socket.send(Buffer.from('late'), 9, '127.0.0.1');
    await socket.close();
    // The port is free again.
    const again = await UdpThreadSocket.bind({ ...options, port: socket.port }, c.handlers);
    await again.close();
    assert.deepEqual(c.errors, []);
  });
});
