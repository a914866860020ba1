/**
 * The SIP UDP socket's own thread (see udp-thread.ts): binds the port, and moves datagrams
 * between the socket and the main thread in batches — what one turn of this thread's event loop
 * read goes up in one message, and what the main thread sent in one of its turns comes down in
 * one — so that the system calls of a busy SIP port, and the kernel's loopback delivery that a
 * send runs, take this thread's time instead of the main thread's.
 */
import dgram from 'node:dgram';
import { parentPort, workerData } from 'node:worker_threads';
import { forEachDatagram, packDatagrams, type Datagram } from './udp-batch.js';
import type { UdpThreadCommand, UdpThreadEvent, UdpThreadOptions } from './udp-thread.js';

const options = workerData as UdpThreadOptions;
/** Bytes sent up and not yet handled by the main thread (it subtracts what it has handled). */
const inFlight = new Int32Array(options.inFlight);
const port = parentPort!;
const post = (event: UdpThreadEvent, transfer: ArrayBuffer[] = []): void => port.postMessage(event, transfer);

const socket = dgram.createSocket({
  type: options.family === 6 ? 'udp6' : 'udp4',
  reuseAddr: false,
  recvBufferSize: options.bufferBytes,
  sendBufferSize: options.bufferBytes,
});

/** Datagrams read since the last batch went up, and their bytes. */
let incoming: Datagram[] = [];
let incomingBytes = 0;
let scheduled = false;
/** Datagrams dropped because the main thread is that far behind, since the last report. */
let dropped = 0;
/** Send failures since the last report (reported at most once a second, with the last reason). */
let sendFailures = 0;
let lastFailure = '';
let reporting: NodeJS.Timeout | undefined;

function flushIncoming(): void {
  scheduled = false;
  const batch = incoming;
  incoming = [];
  const packed = packDatagrams(batch, incomingBytes);
  Atomics.add(inFlight, 0, incomingBytes);
  incomingBytes = 0;
  post({ kind: 'datagrams', batch: packed }, [packed.data.buffer as ArrayBuffer]);
}

function failed(err: Error | null): void {
  if (!err) return;
  sendFailures++;
  lastFailure = err.message;
  report();
}

/** Sends the counts of failed sends and dropped datagrams, at most once a second. */
function report(): void {
  reporting ??= setTimeout(() => {
    reporting = undefined;
    if (sendFailures > 0) post({ kind: 'sendFailed', count: sendFailures, error: lastFailure });
    if (dropped > 0) post({ kind: 'dropped', count: dropped });
    sendFailures = 0;
    dropped = 0;
  }, 1000);
}

socket.on('message', (bytes, remote) => {
  // The main thread is this far behind: what the kernel's buffer would have dropped is dropped
  // here (UDP peers retransmit), rather than queued without bound between the threads.
  if (Atomics.load(inFlight, 0) + incomingBytes + bytes.length > options.maxInFlightBytes) {
    dropped++;
    report();
    return;
  }
  incomingBytes += bytes.length;
  incoming.push({ bytes, host: remote.address, port: remote.port });
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushIncoming);
  }
});
port.on('message', (command: UdpThreadCommand) => {
  if (command.kind === 'send') {
    forEachDatagram(command.batch, (bytes, host, remotePort) => socket.send(bytes, remotePort, host, failed));
  } else if (command.kind === 'close') {
    socket.close(() => {
      if (reporting) clearTimeout(reporting);
      port.close();
    });
  }
});

socket.once('error', (err: NodeJS.ErrnoException) => post({ kind: 'bindFailed', error: err.message, ...(err.code ? { code: err.code } : {}) }));
socket.bind(options.port, options.host, () => {
  socket.removeAllListeners('error');
  socket.on('error', (err) => post({ kind: 'error', error: err.message }));
  post({ kind: 'bound', port: socket.address().port });
});
